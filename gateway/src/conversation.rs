//! The conversation state machine: what a conversation is, and every transition it may make.
//!
//! ```text
//!            offer              accept
//!   Queued ─────────▶ Offered ─────────▶ Active ──end/idle/max/visitor left──▶ WrapUp ──wrap_up──▶ Closed
//!     ▲  ▲ ◀─decline/timeout─┘  ▲           │ │                                   │
//!     │  └──────────── requeue (operator gone, handed back) ◀──┘ │        wrap-up timeout ──▶ Closed
//!     │                          └──── transfer (targeted offer) ◀─┘
//!     │ take_next (operator pulls) ─────────────────────────▶ Active
//!     └── visitor ends or is gone past the grace period, before anyone answered ──▶ Abandoned
//! ```
//!
//! [`Conversation::apply`] is pure: it checks that a [`Command`] is allowed in the current state
//! and by this actor, changes the conversation, and returns the log entries the transition adds.
//! Stores run it atomically (under a lock in memory; inside a transaction in Redis), so every
//! store has exactly the same rules. Nothing here knows about sockets or time sources.

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::protocol::{
    Channel, ClientId, ConversationSummary, EmergencySummary, EndReason, EventBody, LeftReason,
    Millis, OperatorConvState, Side, VisitorState,
};

pub type ConversationId = Ulid;
pub type OperatorId = Ulid;

/// Where a conversation is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    Queued,
    Offered {
        operator: OperatorId,
        expires_at: Millis,
        /// Set when a colleague handed the conversation over: declining sends it to the front of
        /// the queue rather than back to its place.
        transfer_from: Option<String>,
    },
    Active {
        operator: OperatorId,
    },
    WrapUp {
        operator: OperatorId,
        since: Millis,
    },
    Closed,
    Abandoned,
}

/// The state without its data, for metrics, matching and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    Queued,
    Offered,
    Active,
    WrapUp,
    Closed,
    Abandoned,
}

impl StateKind {
    pub const ALL: [StateKind; 6] = [
        StateKind::Queued,
        StateKind::Offered,
        StateKind::Active,
        StateKind::WrapUp,
        StateKind::Closed,
        StateKind::Abandoned,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(self, StateKind::Closed | StateKind::Abandoned)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Queued => "queued",
            StateKind::Offered => "offered",
            StateKind::Active => "active",
            StateKind::WrapUp => "wrap_up",
            StateKind::Closed => "closed",
            StateKind::Abandoned => "abandoned",
        }
    }
}

impl State {
    pub fn kind(&self) -> StateKind {
        match self {
            State::Queued => StateKind::Queued,
            State::Offered { .. } => StateKind::Offered,
            State::Active { .. } => StateKind::Active,
            State::WrapUp { .. } => StateKind::WrapUp,
            State::Closed => StateKind::Closed,
            State::Abandoned => StateKind::Abandoned,
        }
    }

    /// The operator who holds this conversation (offered, active or wrapping up).
    pub fn operator(&self) -> Option<OperatorId> {
        match self {
            State::Offered { operator, .. }
            | State::Active { operator }
            | State::WrapUp { operator, .. } => Some(*operator),
            _ => None,
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, State::Closed | State::Abandoned)
    }
}

/// Where a queued conversation sorts. Lower sorts first: higher priority, then conversations
/// handed back to the queue (they go to the front), then arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QueueKey {
    /// `u8::MAX - priority`, so that higher priority sorts first.
    pub inverse_priority: u8,
    /// 0 for a conversation returned to the queue, 1 for a first-time arrival.
    pub tier: u8,
    /// [`Conversation::arrival`]: a number the store gives, unique and increasing, not a
    /// time: a millisecond timestamp ties for people who arrive together (30 people in one
    /// LINE webhook), and the tie was broken by the random conversation id.
    pub arrival: u64,
    /// Only ever decides between conversations not yet numbered (never in a store).
    pub id: ConversationId,
}

/// The emergency categories an operator or coordinator may record (DESIGN.md, principle 3).
pub const EMERGENCY_CATEGORIES: [&str; 6] = [
    "self_harm",
    "harm_to_others",
    "abuse_dv",
    "medical",
    "crime",
    "other",
];

/// An emergency flag on a conversation: the one path to escalation and retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Emergency {
    /// The escalation record this conversation writes to.
    pub record: Ulid,
    pub open: bool,
    pub categories: Vec<String>,
    pub raised_at: Millis,
    pub raised_by: String,
}

/// A conversation: its routing attributes and state. Its messages live in the store's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub channel: Channel,
    /// The language the person chose, if any.
    pub language: Option<String>,
    /// 0 is normal; higher is served first.
    pub priority: u8,
    pub created_at: Millis,
    /// When the conversation (last) entered the queue: waits are measured from here.
    pub queued_at: Millis,
    /// True once handed back to the queue: it then sorts before first-time arrivals.
    pub requeued: bool,
    /// Its place in arrival order, given by the store when the conversation enters the queue
    /// (is created, or is handed back): a per-process counter in the memory store, one atomic
    /// counter (`INCR`) in Redis, so it is strictly increasing in the order the steps were
    /// stored. 0 until the store has numbered it ([`Conversation::needs_arrival`]).
    #[serde(default)]
    pub arrival: u64,
    #[serde(flatten)]
    pub state: State,
    /// When an operator first answered; the maximum duration counts from here.
    pub answered_at: Option<Millis>,
    /// Last message from either side; the idle limit counts from here.
    pub last_activity: Millis,
    /// SHA-256 (hex) of the visitor's resume token; cleared when the visitor's side ends.
    pub token_hash: Option<String>,
    pub visitor_connected: bool,
    /// When the visitor's connection dropped; the visitor grace period counts from here.
    pub visitor_gone_since: Option<Millis>,
    /// Operators who declined or let an offer lapse since the conversation last joined the queue.
    pub declined_by: Vec<OperatorId>,
    /// A note for the receiving operator on transfer; deleted with the conversation.
    pub handover_note: Option<String>,
    /// Display name of the operator holding the conversation.
    pub operator_name: Option<String>,
    /// How much of an operator's capacity this conversation takes.
    pub weight: u32,
    /// Highest log seq so far.
    pub last_seq: u64,
    pub visitor_acked: u64,
    pub operator_acked: u64,
    /// Wrap-up category, set when closing.
    pub category: Option<String>,
    /// Set once an emergency is flagged; never removed (clearing closes it). Boxed: almost no
    /// conversation has one, and inline it was 80 of every record's 400 bytes.
    #[serde(default)]
    pub emergency: Option<Box<Emergency>>,
}

/// Something that happens to a conversation. Each names its actor, so ownership is checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// The router offers a queued conversation to an operator.
    Offer {
        operator: OperatorId,
        expires_at: Millis,
    },
    /// An operator accepts their offer.
    Accept {
        operator: OperatorId,
        operator_name: String,
    },
    /// An operator declines their offer.
    Decline {
        operator: OperatorId,
    },
    /// The offer made at `expires_at` lapsed.
    OfferExpired {
        operator: OperatorId,
        expires_at: Millis,
    },
    /// An operator takes a queued conversation directly.
    Take {
        operator: OperatorId,
        operator_name: String,
    },
    /// Back to the front of the queue: the operator handed it back, or vanished past the grace.
    Requeue {
        operator: OperatorId,
    },
    /// The holding operator hands the conversation to a colleague as a targeted offer.
    Transfer {
        from: OperatorId,
        to: OperatorId,
        note: Option<String>,
        expires_at: Millis,
    },
    /// A chat message from either side.
    Message {
        from: Side,
        operator: Option<OperatorId>,
        id: ClientId,
        text: String,
    },
    /// The person withdraws an earlier message of theirs (by its client id).
    VisitorRetract {
        id: ClientId,
    },
    /// The person ends the conversation.
    VisitorEnd,
    /// The person's connection did not come back within the grace period.
    VisitorGone,
    VisitorConnected,
    VisitorDisconnected,
    /// The holding operator ends the conversation (to wrap-up).
    OperatorEnd {
        operator: OperatorId,
    },
    /// Idle limit or maximum duration reached.
    Timeout {
        reason: EndReason,
    },
    /// The operator records the wrap-up category: closed.
    WrapUp {
        operator: OperatorId,
        category: String,
    },
    /// The wrap-up was left open too long: closed with category `other`.
    WrapUpExpired,
    /// Acknowledgement of log entries by one side.
    Ack {
        side: Side,
        seq: u64,
    },
    /// An emergency is flagged (or added to). `operator` is set when the holding operator
    /// flags, and must then hold the conversation; coordinators flag with `None`.
    Flag {
        operator: Option<OperatorId>,
        by: String,
        category: String,
        /// The record id to use if this is the first flag.
        record: Ulid,
    },
    /// A coordinator clears an open emergency.
    ClearFlag,
}

/// Why a command was refused. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("not allowed in state {0:?}")]
    NotAllowed(StateKind),
    #[error("the conversation is not this operator's")]
    NotYours,
    #[error("unknown emergency category")]
    UnknownCategory,
}

/// What a successful command did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    /// Log entries to append, in order (the store assigns their seq).
    pub log: Vec<EventBody>,
}

impl Conversation {
    pub fn new(
        id: ConversationId,
        channel: Channel,
        language: Option<String>,
        token_hash: Option<String>,
        now: Millis,
    ) -> Self {
        Conversation {
            id,
            channel,
            language,
            priority: 0,
            created_at: now,
            queued_at: now,
            requeued: false,
            arrival: 0,
            state: State::Queued,
            answered_at: None,
            last_activity: now,
            token_hash,
            visitor_connected: true,
            visitor_gone_since: None,
            declined_by: Vec::new(),
            handover_note: None,
            operator_name: None,
            weight: 1,
            last_seq: 0,
            visitor_acked: 0,
            operator_acked: 0,
            category: None,
            emergency: None,
        }
    }

    /// How much of an operator's `capacity` this conversation takes: a phone call takes all of
    /// it (an operator on the phone cannot also chat); others take their `weight`.
    pub fn weight_on(&self, capacity: u32) -> u32 {
        if self.channel == Channel::Phone {
            capacity.max(1)
        } else {
            self.weight
        }
    }

    pub fn queue_key(&self) -> QueueKey {
        QueueKey {
            inverse_priority: u8::MAX - self.priority,
            tier: if self.requeued { 0 } else { 1 },
            arrival: self.arrival,
            id: self.id,
        }
    }

    /// True when the conversation has (re)entered the queue and the store must give it the
    /// next arrival number before storing it.
    pub fn needs_arrival(&self) -> bool {
        self.state == State::Queued && self.arrival == 0
    }

    /// What the person sees.
    pub fn visitor_state(&self) -> VisitorState {
        match &self.state {
            State::Queued | State::Offered { .. } => VisitorState::Queued,
            State::Active { .. } => VisitorState::Active,
            State::WrapUp { .. } | State::Closed | State::Abandoned => VisitorState::Ended,
        }
    }

    /// What the holding operator sees. `None` if no operator holds it.
    pub fn summary(&self) -> Option<ConversationSummary> {
        let state = match self.state {
            State::Offered { .. } => OperatorConvState::Offered,
            State::Active { .. } => OperatorConvState::Active,
            State::WrapUp { .. } => OperatorConvState::WrapUp,
            _ => return None,
        };
        Some(ConversationSummary {
            id: self.id,
            state,
            channel: self.channel,
            language: self.language.clone(),
            started_at: self.created_at,
            last_seq: self.last_seq,
            visitor_connected: self.visitor_connected,
            handover_note: self.handover_note.clone(),
            emergency: self.emergency.as_ref().map(|e| EmergencySummary {
                open: e.open,
                categories: e.categories.clone(),
                raised_at: e.raised_at,
                raised_by: e.raised_by.clone(),
                acknowledged_by: None,
            }),
        })
    }

    fn requeue_front(&mut self, now: Millis) {
        self.state = State::Queued;
        self.requeued = true;
        self.queued_at = now;
        // A new place, at the back of the requeued: the store numbers it.
        self.arrival = 0;
        self.operator_name = None;
    }

    fn ended(&mut self, by: Side, reason: EndReason, now: Millis) -> Vec<EventBody> {
        // The person's side is over: their resume token no longer opens anything.
        self.token_hash = None;
        match self.state {
            State::Active { operator } => {
                self.state = State::WrapUp {
                    operator,
                    since: now,
                };
            }
            _ => self.state = State::Abandoned,
        }
        vec![EventBody::Ended { by, reason }]
    }

    /// Applies `cmd` at time `now`. On error nothing has changed.
    pub fn apply(&mut self, cmd: Command, now: Millis) -> Result<Outcome, TransitionError> {
        let kind = self.state.kind();
        let not_allowed = Err(TransitionError::NotAllowed(kind));
        let log = match cmd {
            Command::Offer {
                operator,
                expires_at,
            } => {
                if kind != StateKind::Queued {
                    return not_allowed;
                }
                self.state = State::Offered {
                    operator,
                    expires_at,
                    transfer_from: None,
                };
                vec![]
            }
            Command::Accept {
                operator,
                operator_name,
            } => {
                match &self.state {
                    State::Offered { operator: o, .. } if *o == operator => {}
                    State::Offered { .. } => return Err(TransitionError::NotYours),
                    _ => return not_allowed,
                }
                self.become_active(operator, operator_name, now)
            }
            Command::Take {
                operator,
                operator_name,
            } => {
                if kind != StateKind::Queued {
                    return not_allowed;
                }
                self.become_active(operator, operator_name, now)
            }
            Command::Decline { operator }
            | Command::OfferExpired {
                operator,
                expires_at: _,
            } => {
                let State::Offered {
                    operator: o,
                    expires_at: current,
                    transfer_from,
                } = &self.state
                else {
                    return not_allowed;
                };
                if *o != operator {
                    return Err(TransitionError::NotYours);
                }
                if let Command::OfferExpired { expires_at, .. } = cmd {
                    if expires_at != *current {
                        // A newer offer replaced the one that lapsed.
                        return not_allowed;
                    }
                }
                let was_transfer = transfer_from.is_some();
                if !self.declined_by.contains(&operator) {
                    self.declined_by.push(operator);
                }
                if was_transfer {
                    self.handover_note = None;
                    self.requeue_front(now);
                } else {
                    self.state = State::Queued;
                }
                vec![]
            }
            Command::Requeue { operator } => {
                if self.state.operator() != Some(operator)
                    || !matches!(kind, StateKind::Active | StateKind::Offered)
                {
                    return if matches!(kind, StateKind::Active | StateKind::Offered) {
                        Err(TransitionError::NotYours)
                    } else {
                        not_allowed
                    };
                }
                let was_active = kind == StateKind::Active;
                self.declined_by.clear();
                self.handover_note = None;
                self.requeue_front(now);
                if was_active {
                    vec![EventBody::OperatorLeft {
                        reason: LeftReason::Requeued,
                    }]
                } else {
                    vec![]
                }
            }
            Command::Transfer {
                from,
                to,
                note,
                expires_at,
            } => {
                match self.state {
                    State::Active { operator } if operator == from => {}
                    State::Active { .. } => return Err(TransitionError::NotYours),
                    _ => return not_allowed,
                }
                if to == from {
                    return not_allowed;
                }
                let from_name = self.operator_name.take().unwrap_or_default();
                self.state = State::Offered {
                    operator: to,
                    expires_at,
                    transfer_from: Some(from_name),
                };
                self.handover_note = note;
                self.declined_by.clear();
                vec![EventBody::OperatorLeft {
                    reason: LeftReason::Transferred,
                }]
            }
            Command::Message {
                from,
                operator,
                id,
                text,
            } => {
                let operator_name = match from {
                    Side::Visitor => {
                        if !matches!(
                            kind,
                            StateKind::Queued | StateKind::Offered | StateKind::Active
                        ) {
                            return not_allowed;
                        }
                        None
                    }
                    Side::Operator => {
                        match self.state {
                            State::Active { operator: o } if Some(o) == operator => {}
                            State::Active { .. } => return Err(TransitionError::NotYours),
                            _ => return not_allowed,
                        }
                        self.operator_name.clone()
                    }
                    Side::System => return not_allowed,
                };
                self.last_activity = now;
                vec![EventBody::Message {
                    from,
                    id,
                    text,
                    operator: operator_name,
                }]
            }
            Command::VisitorRetract { id } => {
                if !matches!(
                    kind,
                    StateKind::Queued | StateKind::Offered | StateKind::Active
                ) {
                    return not_allowed;
                }
                vec![EventBody::Retracted { id }]
            }
            Command::VisitorEnd => {
                if !matches!(
                    kind,
                    StateKind::Queued | StateKind::Offered | StateKind::Active
                ) {
                    return not_allowed;
                }
                self.ended(Side::Visitor, EndReason::Ended, now)
            }
            Command::VisitorGone => {
                if !matches!(
                    kind,
                    StateKind::Queued | StateKind::Offered | StateKind::Active
                ) || self.visitor_connected
                {
                    return not_allowed;
                }
                self.ended(Side::System, EndReason::VisitorGone, now)
            }
            Command::VisitorConnected => {
                if self.state.is_terminal() {
                    return not_allowed;
                }
                self.visitor_connected = true;
                self.visitor_gone_since = None;
                vec![]
            }
            Command::VisitorDisconnected => {
                if self.state.is_terminal() {
                    return not_allowed;
                }
                self.visitor_connected = false;
                self.visitor_gone_since = Some(now);
                vec![]
            }
            Command::OperatorEnd { operator } => {
                match self.state {
                    State::Active { operator: o } if o == operator => {}
                    State::Active { .. } => return Err(TransitionError::NotYours),
                    _ => return not_allowed,
                }
                self.ended(Side::Operator, EndReason::Ended, now)
            }
            Command::Timeout { reason } => {
                if kind != StateKind::Active {
                    return not_allowed;
                }
                self.ended(Side::System, reason, now)
            }
            Command::WrapUp { operator, category } => {
                match self.state {
                    State::WrapUp { operator: o, .. } if o == operator => {}
                    State::WrapUp { .. } => return Err(TransitionError::NotYours),
                    _ => return not_allowed,
                }
                self.category = Some(category);
                self.state = State::Closed;
                vec![]
            }
            Command::WrapUpExpired => {
                if kind != StateKind::WrapUp {
                    return not_allowed;
                }
                self.category = Some("other".to_owned());
                self.state = State::Closed;
                vec![]
            }
            Command::Flag {
                operator,
                by,
                category,
                record,
            } => {
                if !EMERGENCY_CATEGORIES.contains(&category.as_str()) {
                    return Err(TransitionError::UnknownCategory);
                }
                match operator {
                    Some(op) => match self.state {
                        State::Active { operator: o } | State::WrapUp { operator: o, .. }
                            if o == op => {}
                        State::Active { .. } | State::WrapUp { .. } => {
                            return Err(TransitionError::NotYours)
                        }
                        _ => return not_allowed,
                    },
                    None if self.state.is_terminal() => return not_allowed,
                    None => {}
                }
                let e = self.emergency.get_or_insert_with(|| {
                    Box::new(Emergency {
                        record,
                        open: true,
                        categories: Vec::new(),
                        raised_at: now,
                        raised_by: by.clone(),
                    })
                });
                if !e.open {
                    e.open = true;
                    e.raised_at = now;
                    e.raised_by = by;
                }
                if !e.categories.contains(&category) {
                    e.categories.push(category);
                }
                vec![]
            }
            Command::ClearFlag => match &mut self.emergency {
                Some(e) if e.open && !self.state.is_terminal() => {
                    e.open = false;
                    vec![]
                }
                _ => return not_allowed,
            },
            Command::Ack { side, seq } => {
                let seq = seq.min(self.last_seq);
                match side {
                    Side::Visitor => self.visitor_acked = self.visitor_acked.max(seq),
                    Side::Operator => self.operator_acked = self.operator_acked.max(seq),
                    Side::System => return not_allowed,
                }
                vec![]
            }
        };
        Ok(Outcome { log })
    }

    fn become_active(
        &mut self,
        operator: OperatorId,
        operator_name: String,
        now: Millis,
    ) -> Vec<EventBody> {
        self.state = State::Active { operator };
        self.answered_at.get_or_insert(now);
        self.last_activity = now;
        self.operator_name = Some(operator_name.clone());
        self.declined_by.clear();
        vec![EventBody::OperatorJoined {
            operator: operator_name,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_000_000;

    fn queued() -> Conversation {
        Conversation::new(Ulid::new(), Channel::Web, Some("ja".into()), None, T0)
    }

    fn op() -> OperatorId {
        Ulid::new()
    }

    fn offered(to: OperatorId) -> Conversation {
        let mut c = queued();
        c.apply(
            Command::Offer {
                operator: to,
                expires_at: T0 + 30_000,
            },
            T0,
        )
        .unwrap();
        c
    }

    fn active(by: OperatorId) -> Conversation {
        let mut c = queued();
        c.apply(
            Command::Take {
                operator: by,
                operator_name: "Sakura".into(),
            },
            T0 + 10,
        )
        .unwrap();
        c
    }

    fn wrap_up(by: OperatorId) -> Conversation {
        let mut c = active(by);
        c.apply(Command::OperatorEnd { operator: by }, T0 + 20)
            .unwrap();
        c
    }

    #[test]
    fn queued_to_offered_on_offer() {
        let o = op();
        let c = offered(o);
        assert_eq!(c.state.kind(), StateKind::Offered);
        assert_eq!(c.state.operator(), Some(o));
        assert_eq!(c.visitor_state(), VisitorState::Queued);
    }

    #[test]
    fn offered_to_active_on_accept_by_the_offered_operator_only() {
        let o = op();
        let mut c = offered(o);
        let err = c
            .apply(
                Command::Accept {
                    operator: op(),
                    operator_name: "x".into(),
                },
                T0,
            )
            .unwrap_err();
        assert_eq!(err, TransitionError::NotYours);
        let out = c
            .apply(
                Command::Accept {
                    operator: o,
                    operator_name: "Sakura".into(),
                },
                T0 + 5,
            )
            .unwrap();
        assert_eq!(c.state, State::Active { operator: o });
        assert_eq!(c.answered_at, Some(T0 + 5));
        assert_eq!(
            out.log,
            vec![EventBody::OperatorJoined {
                operator: "Sakura".into()
            }]
        );
    }

    #[test]
    fn offered_back_to_queued_on_decline_keeping_its_place() {
        let o = op();
        let mut c = offered(o);
        let key_before = c.queue_key();
        c.apply(Command::Decline { operator: o }, T0 + 100).unwrap();
        assert_eq!(c.state, State::Queued);
        assert_eq!(c.queue_key(), key_before);
        assert_eq!(c.declined_by, vec![o]);
    }

    #[test]
    fn offered_back_to_queued_when_the_offer_lapses() {
        let o = op();
        let mut c = offered(o);
        // A stale timer for an older offer does nothing.
        assert!(c
            .apply(
                Command::OfferExpired {
                    operator: o,
                    expires_at: T0
                },
                T0 + 1
            )
            .is_err());
        c.apply(
            Command::OfferExpired {
                operator: o,
                expires_at: T0 + 30_000,
            },
            T0 + 30_001,
        )
        .unwrap();
        assert_eq!(c.state, State::Queued);
    }

    #[test]
    fn queued_to_active_when_an_operator_takes_it() {
        let o = op();
        let c = active(o);
        assert_eq!(c.state, State::Active { operator: o });
        assert_eq!(c.operator_name.as_deref(), Some("Sakura"));
    }

    #[test]
    fn active_back_to_the_front_of_the_queue_on_requeue() {
        let o = op();
        let mut c = active(o);
        let out = c.apply(Command::Requeue { operator: o }, T0 + 500).unwrap();
        assert_eq!(c.state, State::Queued);
        assert!(c.requeued);
        assert_eq!(c.queue_key().tier, 0);
        assert_eq!(
            out.log,
            vec![EventBody::OperatorLeft {
                reason: LeftReason::Requeued
            }]
        );
        // A newer, first-time arrival sorts after it even though it queued earlier.
        let mut older = queued();
        older.queued_at = T0 - 1000;
        assert!(c.queue_key() < older.queue_key());
    }

    #[test]
    fn requeue_by_someone_else_is_refused() {
        let mut c = active(op());
        assert_eq!(
            c.apply(Command::Requeue { operator: op() }, T0),
            Err(TransitionError::NotYours)
        );
    }

    #[test]
    fn active_to_offered_on_transfer_and_front_of_queue_if_declined() {
        let a = op();
        let b = op();
        let mut c = active(a);
        c.apply(
            Command::Transfer {
                from: a,
                to: b,
                note: Some("talked about school".into()),
                expires_at: T0 + 60_000,
            },
            T0 + 50,
        )
        .unwrap();
        assert_eq!(c.state.kind(), StateKind::Offered);
        assert_eq!(c.state.operator(), Some(b));
        assert_eq!(c.handover_note.as_deref(), Some("talked about school"));
        c.apply(Command::Decline { operator: b }, T0 + 60).unwrap();
        assert_eq!(c.state, State::Queued);
        assert!(c.requeued);
        assert_eq!(c.handover_note, None);
    }

    #[test]
    fn transfer_to_oneself_or_from_non_owner_is_refused() {
        let a = op();
        let mut c = active(a);
        let t = |from, to| Command::Transfer {
            from,
            to,
            note: None,
            expires_at: T0,
        };
        assert!(c.apply(t(a, a), T0).is_err());
        assert_eq!(c.apply(t(op(), a), T0), Err(TransitionError::NotYours));
    }

    #[test]
    fn active_to_wrap_up_when_the_operator_ends() {
        let o = op();
        let c = wrap_up(o);
        assert_eq!(
            c.state,
            State::WrapUp {
                operator: o,
                since: T0 + 20
            }
        );
        assert_eq!(c.visitor_state(), VisitorState::Ended);
        assert_eq!(c.token_hash, None);
    }

    #[test]
    fn active_to_wrap_up_when_the_visitor_ends() {
        let o = op();
        let mut c = active(o);
        let out = c.apply(Command::VisitorEnd, T0 + 30).unwrap();
        assert_eq!(c.state.kind(), StateKind::WrapUp);
        assert_eq!(
            out.log,
            vec![EventBody::Ended {
                by: Side::Visitor,
                reason: EndReason::Ended
            }]
        );
    }

    #[test]
    fn active_to_wrap_up_on_idle_and_max_duration() {
        for reason in [EndReason::Idle, EndReason::MaxDuration] {
            let mut c = active(op());
            c.apply(Command::Timeout { reason }, T0 + 99).unwrap();
            assert_eq!(c.state.kind(), StateKind::WrapUp);
        }
        let mut q = queued();
        assert!(q
            .apply(
                Command::Timeout {
                    reason: EndReason::Idle
                },
                T0
            )
            .is_err());
    }

    #[test]
    fn wrap_up_to_closed_with_a_category() {
        let o = op();
        let mut c = wrap_up(o);
        assert_eq!(
            c.apply(
                Command::WrapUp {
                    operator: op(),
                    category: "family".into()
                },
                T0
            ),
            Err(TransitionError::NotYours)
        );
        c.apply(
            Command::WrapUp {
                operator: o,
                category: "family".into(),
            },
            T0 + 40,
        )
        .unwrap();
        assert_eq!(c.state, State::Closed);
        assert_eq!(c.category.as_deref(), Some("family"));
    }

    #[test]
    fn wrap_up_to_closed_when_left_open_too_long() {
        let mut c = wrap_up(op());
        c.apply(Command::WrapUpExpired, T0 + 1_000_000).unwrap();
        assert_eq!(c.state, State::Closed);
        assert_eq!(c.category.as_deref(), Some("other"));
    }

    #[test]
    fn queued_or_offered_to_abandoned_when_the_visitor_ends() {
        let mut q = queued();
        q.apply(Command::VisitorEnd, T0 + 1).unwrap();
        assert_eq!(q.state, State::Abandoned);
        let mut o = offered(op());
        o.apply(Command::VisitorEnd, T0 + 1).unwrap();
        assert_eq!(o.state, State::Abandoned);
    }

    #[test]
    fn queued_to_abandoned_only_when_the_visitor_is_still_gone() {
        let mut q = queued();
        assert!(
            q.apply(Command::VisitorGone, T0).is_err(),
            "still connected"
        );
        q.apply(Command::VisitorDisconnected, T0 + 1).unwrap();
        assert_eq!(q.visitor_gone_since, Some(T0 + 1));
        q.apply(Command::VisitorConnected, T0 + 2).unwrap();
        assert!(q.apply(Command::VisitorGone, T0 + 3).is_err());
        q.apply(Command::VisitorDisconnected, T0 + 4).unwrap();
        let out = q.apply(Command::VisitorGone, T0 + 5).unwrap();
        assert_eq!(q.state, State::Abandoned);
        assert_eq!(
            out.log,
            vec![EventBody::Ended {
                by: Side::System,
                reason: EndReason::VisitorGone
            }]
        );
    }

    #[test]
    fn terminal_states_accept_nothing() {
        let mut closed = wrap_up(op());
        closed.apply(Command::WrapUpExpired, T0).unwrap();
        let mut abandoned = queued();
        abandoned.apply(Command::VisitorEnd, T0).unwrap();
        for c in [&mut closed, &mut abandoned] {
            let before = c.clone();
            for cmd in [
                Command::VisitorEnd,
                Command::VisitorConnected,
                Command::Take {
                    operator: op(),
                    operator_name: "x".into(),
                },
                Command::Message {
                    from: Side::Visitor,
                    operator: None,
                    id: Ulid::new().into(),
                    text: "hi".into(),
                },
                Command::WrapUpExpired,
            ] {
                assert!(c.apply(cmd, T0).is_err());
            }
            assert_eq!(*c, before, "a refused command changes nothing");
        }
    }

    #[test]
    fn visitor_may_write_while_waiting_but_operator_only_when_active_and_owner() {
        let o = op();
        let mut c = queued();
        let msg = |from, operator| Command::Message {
            from,
            operator,
            id: Ulid::new().into(),
            text: "hello".into(),
        };
        c.apply(msg(Side::Visitor, None), T0).unwrap();
        assert!(c.apply(msg(Side::Operator, Some(o)), T0).is_err());
        c.apply(
            Command::Take {
                operator: o,
                operator_name: "Sakura".into(),
            },
            T0,
        )
        .unwrap();
        assert_eq!(
            c.apply(msg(Side::Operator, Some(op())), T0),
            Err(TransitionError::NotYours)
        );
        let out = c.apply(msg(Side::Operator, Some(o)), T0 + 7).unwrap();
        assert!(
            matches!(&out.log[0], EventBody::Message { operator: Some(n), .. } if n == "Sakura")
        );
        assert_eq!(c.last_activity, T0 + 7);
    }

    fn flag(operator: Option<OperatorId>, category: &str) -> Command {
        Command::Flag {
            operator,
            by: "Sakura".into(),
            category: category.into(),
            record: Ulid::new(),
        }
    }

    #[test]
    fn the_holding_operator_flags_an_emergency_and_can_add_to_it() {
        let o = op();
        let mut c = active(o);
        c.apply(flag(Some(o), "self_harm"), T0 + 1).unwrap();
        let record = c.emergency.as_ref().unwrap().record;
        c.apply(flag(Some(o), "medical"), T0 + 2).unwrap();
        let e = c.emergency.as_ref().unwrap();
        assert!(e.open);
        assert_eq!(e.record, record, "one record per conversation");
        assert_eq!(e.categories, vec!["self_harm", "medical"]);
        assert_eq!(e.raised_at, T0 + 1);
    }

    #[test]
    fn only_the_holder_may_flag_and_only_known_categories() {
        let o = op();
        let mut c = active(o);
        assert_eq!(
            c.apply(flag(Some(op()), "self_harm"), T0),
            Err(TransitionError::NotYours)
        );
        assert_eq!(
            c.apply(flag(Some(o), "gossip"), T0),
            Err(TransitionError::UnknownCategory)
        );
        let mut q = queued();
        assert!(q.apply(flag(Some(o), "self_harm"), T0).is_err());
        assert!(c.emergency.is_none());
    }

    #[test]
    fn a_coordinator_may_flag_any_live_conversation_and_clear_it() {
        let mut q = queued();
        q.apply(flag(None, "abuse_dv"), T0).unwrap();
        assert!(q.emergency.as_ref().unwrap().open);
        q.apply(Command::ClearFlag, T0 + 1).unwrap();
        assert!(!q.emergency.as_ref().unwrap().open);
        assert!(
            q.apply(Command::ClearFlag, T0 + 2).is_err(),
            "already clear"
        );
        q.apply(flag(None, "crime"), T0 + 3).unwrap();
        let e = q.emergency.as_ref().unwrap();
        assert!(e.open, "raised again");
        assert_eq!(e.categories, vec!["abuse_dv", "crime"]);
    }

    #[test]
    fn the_operator_may_still_flag_during_wrap_up() {
        let o = op();
        let mut c = wrap_up(o);
        c.apply(flag(Some(o), "other"), T0 + 50).unwrap();
        assert!(c.emergency.is_some());
    }

    #[test]
    fn a_person_may_retract_a_message_while_the_conversation_lives() {
        let mut c = queued();
        let id = ClientId::from(Ulid::new());
        let out = c.apply(Command::VisitorRetract { id }, T0).unwrap();
        assert_eq!(out.log, vec![EventBody::Retracted { id }]);
        c.apply(Command::VisitorEnd, T0).unwrap();
        assert!(c.apply(Command::VisitorRetract { id }, T0).is_err());
    }

    #[test]
    fn acks_never_exceed_the_log_or_go_backwards() {
        let mut c = queued();
        c.last_seq = 5;
        c.apply(
            Command::Ack {
                side: Side::Visitor,
                seq: 9,
            },
            T0,
        )
        .unwrap();
        assert_eq!(c.visitor_acked, 5);
        c.apply(
            Command::Ack {
                side: Side::Visitor,
                seq: 2,
            },
            T0,
        )
        .unwrap();
        assert_eq!(c.visitor_acked, 5);
    }

    #[test]
    fn conversation_round_trips_through_json_for_other_stores() {
        let c = wrap_up(op());
        let json = serde_json::to_string(&c).unwrap();
        let back: Conversation = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }
}
