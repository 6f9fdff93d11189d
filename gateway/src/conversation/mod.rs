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
//!
//! # Parts
//!
//! This file holds the types, `apply` (a dispatcher naming each command's family) and the checks
//! every family shares: `only_in` (a state guard) and `held_by` (the operator who acts must hold
//! the conversation). One file per family, by who acts, each with its tests:
//!
//! - `visitor.rs`: the person writes, retracts, acknowledges, connects, disconnects, ends.
//! - `operator.rs`: an operator accepts, declines, takes, hands back, transfers, writes,
//!   acknowledges, ends, records the wrap-up.
//! - `flag.rs`: an operator or a coordinator flags an emergency; a coordinator clears it.
//! - `system.rs`: the router offers; timers lapse offers, end idle or too long conversations,
//!   give up on a person gone past the grace period, close a wrap-up left open.
//!
//! `state.rs` has [`State`] and what each side sees of it; `queue.rs` where a waiting
//! conversation sorts; `tests.rs` the fixtures every family's tests use, and the tests that
//! cross families.

mod deadline;
mod flag;
mod operator;
mod queue;
mod state;
mod system;
#[cfg(test)]
mod tests;
mod visitor;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

pub use deadline::Deadlines;
pub use flag::{Emergency, EMERGENCY_CATEGORIES};
pub use queue::QueueKey;
pub use state::{State, StateKind};

use crate::protocol::{Channel, ClientId, EndReason, EventBody, Millis, Side};

pub type ConversationId = Ulid;
pub type OperatorId = Ulid;

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

/// What one command family's step returns: the log entries it adds, or why it was refused.
type Step = Result<Vec<EventBody>, TransitionError>;

/// Not yet terminal: the conversation still takes commands.
const LIVE: [StateKind; 4] = [
    StateKind::Queued,
    StateKind::Offered,
    StateKind::Active,
    StateKind::WrapUp,
];

/// The person's side is open (before wrap-up): they may write, retract, end.
const VISITOR_OPEN: [StateKind; 3] = [StateKind::Queued, StateKind::Offered, StateKind::Active];

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

    /// Applies `cmd` at time `now`. On error nothing has changed.
    pub fn apply(&mut self, cmd: Command, now: Millis) -> Result<Outcome, TransitionError> {
        use Command as C;
        let log = match cmd {
            // The person (visitor.rs).
            C::Message {
                from: Side::Visitor,
                id,
                text,
                ..
            } => self.visitor_message(id, text, now),
            C::VisitorRetract { id } => self.retract(id),
            C::VisitorEnd => self.visitor_end(now),
            C::VisitorConnected => self.connected(),
            C::VisitorDisconnected => self.disconnected(now),
            C::Ack {
                side: Side::Visitor,
                seq,
            } => self.visitor_ack(seq),
            // An operator (operator.rs).
            C::Accept {
                operator,
                operator_name,
            } => self.accept(operator, operator_name, now),
            C::Decline { operator } => self.decline(operator, now),
            C::Take {
                operator,
                operator_name,
            } => self.take(operator, operator_name, now),
            C::Requeue { operator } => self.requeue(operator, now),
            C::Transfer {
                from,
                to,
                note,
                expires_at,
            } => self.transfer(from, to, note, expires_at),
            C::Message {
                from: Side::Operator,
                operator,
                id,
                text,
            } => self.operator_message(operator, id, text, now),
            C::OperatorEnd { operator } => self.operator_end(operator, now),
            C::WrapUp { operator, category } => self.wrap_up(operator, category),
            C::Ack {
                side: Side::Operator,
                seq,
            } => self.operator_ack(seq),
            // An operator or a coordinator (flag.rs).
            C::Flag {
                operator,
                by,
                category,
                record,
            } => self.flag(operator, by, category, record, now),
            C::ClearFlag => self.clear_flag(),
            // The router and the timers (system.rs).
            C::Offer {
                operator,
                expires_at,
            } => self.offer(operator, expires_at),
            C::OfferExpired {
                operator,
                expires_at,
            } => self.offer_expired(operator, expires_at, now),
            C::VisitorGone => self.visitor_gone(now),
            C::Timeout { reason } => self.timeout(reason, now),
            C::WrapUpExpired => self.wrap_up_expired(),
            // Nobody writes or acknowledges as the system.
            C::Message {
                from: Side::System, ..
            }
            | C::Ack {
                side: Side::System, ..
            } => Err(self.not_allowed()),
        }?;
        Ok(Outcome { log })
    }

    /// The refusal of a command this state does not take.
    fn not_allowed(&self) -> TransitionError {
        TransitionError::NotAllowed(self.state.kind())
    }

    /// The state guard: refuses (`NotAllowed`) unless the conversation is in one of `kinds`.
    fn only_in(&self, kinds: &[StateKind]) -> Result<(), TransitionError> {
        if kinds.contains(&self.state.kind()) {
            Ok(())
        } else {
            Err(self.not_allowed())
        }
    }

    /// Who may act: refuses unless the conversation is in one of `kinds` (states with a
    /// holder: offered, active, wrap-up), then (`NotYours`) unless `operator` holds it.
    fn held_by(
        &self,
        operator: impl Into<Option<OperatorId>>,
        kinds: &[StateKind],
    ) -> Result<(), TransitionError> {
        self.only_in(kinds)?;
        if self.state.operator() == operator.into() {
            Ok(())
        } else {
            Err(TransitionError::NotYours)
        }
    }

    /// The person's side is over (by either side or a timer): active goes to wrap-up, anything
    /// before it is abandoned.
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
}
