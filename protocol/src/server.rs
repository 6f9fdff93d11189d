//! Everything the server sends ([`ServerMsg`]), to visitors and operators alike, and
//! [`EventFrame`], a log entry sent without copying it.

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::{
    ClientId, ConversationSummary, ErrorCode, EventBody, Limits, LogEntry, Millis, Offer,
    OperatorInfo, Presence, RemovedReason, Side, VisitorState, WithdrawReason,
};

/// Everything the server sends, to visitors and operators alike. (Serialize only: two variants
/// share the `welcome` tag and two the `queue` tag; clients tell them apart by endpoint.)
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// First answer to a visitor's `hello`.
    #[serde(rename = "welcome")]
    VisitorWelcome {
        v: u32,
        conversation: Ulid,
        token: String,
        state: VisitorState,
        resumed: bool,
        last_seq: u64,
        heartbeat_ms: u64,
        limits: Limits,
    },
    /// First answer to an operator's `hello`.
    #[serde(rename = "welcome")]
    OperatorWelcome {
        v: u32,
        operator: OperatorInfo,
        presence: Presence,
        capacity: u32,
        heartbeat_ms: u64,
        categories: Vec<String>,
        /// Empty when flagging is not enabled on this gateway.
        emergency_categories: Vec<String>,
        emergency_checklist: Vec<String>,
        conversations: Vec<ConversationSummary>,
        offers: Vec<Offer>,
        /// The same limits a visitor's welcome carries.
        limits: Limits,
    },
    /// Queue position, for a waiting visitor.
    #[serde(rename = "queue")]
    QueuePosition {
        position: u32,
        wait_minutes: Option<u32>,
        operators_on_duty: u32,
        /// The service is in overloaded mode: tell the person about other helplines (they may
        /// keep waiting).
        overloaded: bool,
    },
    /// Queue load, for operators.
    #[serde(rename = "queue")]
    QueueLoad {
        waiting: u32,
        longest_wait_ms: u64,
    },
    Event {
        conversation: Ulid,
        seq: u64,
        at: Millis,
        event: EventBody,
    },
    Typing {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        conversation: Option<Ulid>,
        from: Side,
        active: bool,
    },
    Presence {
        state: Presence,
        load: u32,
        capacity: u32,
    },
    Offer(Offer),
    OfferWithdrawn {
        conversation: Ulid,
        reason: WithdrawReason,
    },
    Conversation {
        conversation: ConversationSummary,
    },
    Removed {
        conversation: Ulid,
        reason: RemovedReason,
        /// After a flagged conversation closes: the console offers the operator a pause.
        #[serde(skip_serializing_if = "std::ops::Not::not", default)]
        suggest_pause: bool,
    },
    Ack {
        id: ClientId,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        seq: Option<u64>,
    },
    Error {
        id: Option<ClientId>,
        code: ErrorCode,
        message: String,
        /// With `rate_limited`: when the client may try again.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        retry_after_ms: Option<u64>,
    },
    Pong {
        id: ClientId,
    },
    /// The conversation no longer exists in the store, without an `ended` entry: the store lost
    /// it (a Redis restart without persistence, a flush, a failover to an empty replica). A
    /// person's socket closes with [`close::NOT_FOUND`](crate::close::NOT_FOUND) after it; an
    /// operator's console drops the conversation (or its offer) and the socket stays open.
    Gone {
        conversation: Ulid,
        reason: GoneReason,
    },
}

/// Why a conversation is [`ServerMsg::Gone`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoneReason {
    /// The store no longer has it (it lost its data).
    Lost,
}

impl ServerMsg {
    pub fn error(id: Option<ClientId>, code: ErrorCode) -> Self {
        ServerMsg::Error {
            id,
            code,
            message: code.message().to_owned(),
            retry_after_ms: None,
        }
    }

    /// `rate_limited`, saying when to try again.
    pub fn rate_limited(id: Option<ClientId>, retry_after_ms: u64) -> Self {
        ServerMsg::Error {
            id,
            code: ErrorCode::RateLimited,
            message: ErrorCode::RateLimited.message().to_owned(),
            retry_after_ms: Some(retry_after_ms),
        }
    }

    /// A log entry as an owned frame; [`EventFrame`] sends one without copying it.
    pub fn event(conversation: Ulid, entry: &LogEntry) -> Self {
        ServerMsg::Event {
            conversation,
            seq: entry.seq,
            at: entry.at,
            event: entry.event.clone(),
        }
    }
}

/// [`ServerMsg::Event`] borrowing its log entry: the same JSON, without copying the entry's
/// text for every socket it goes to (every chat message is sent as one of these, twice).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename = "event")]
pub struct EventFrame<'a> {
    pub conversation: Ulid,
    pub seq: u64,
    pub at: Millis,
    pub event: &'a EventBody,
}

impl<'a> EventFrame<'a> {
    pub fn new(conversation: Ulid, entry: &'a LogEntry) -> Self {
        EventFrame {
            conversation,
            seq: entry.seq,
            at: entry.at,
            event: &entry.event,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EndReason;

    #[test]
    fn an_event_frame_borrowing_its_entry_is_the_same_json_as_the_owned_event() {
        let entries = [
            EventBody::Message {
                from: Side::Operator,
                id: Ulid::new().into(),
                text: "ゆっくりで大丈夫ですよ \"quoted\"\n".into(),
                operator: Some("さくら".into()),
            },
            EventBody::Message {
                from: Side::Visitor,
                id: Ulid::new().into(),
                text: "眠れなくて".into(),
                operator: None,
            },
            EventBody::Ended {
                by: Side::Visitor,
                reason: EndReason::Idle,
            },
        ];
        for (i, event) in entries.into_iter().enumerate() {
            let entry = LogEntry {
                seq: i as u64 + 1,
                at: 1_764_000_000_000 + i as u64,
                event,
            };
            let conv = Ulid::new();
            assert_eq!(
                serde_json::to_string(&EventFrame::new(conv, &entry)).unwrap(),
                serde_json::to_string(&ServerMsg::event(conv, &entry)).unwrap()
            );
        }
    }

    #[test]
    fn welcome_messages_serialize_with_the_same_type_tag() {
        let v = serde_json::to_value(ServerMsg::QueueLoad {
            waiting: 1,
            longest_wait_ms: 5,
        })
        .unwrap();
        assert_eq!(v["type"], "queue");
        let e = serde_json::to_value(ServerMsg::error(None, ErrorCode::TextTooLong)).unwrap();
        assert_eq!(e["code"], "text_too_long");
    }
}
