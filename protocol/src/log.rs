//! A conversation's log as clients see it: the entries (messages, joins, leaves, the end, a
//! retraction), each with its sequence number, and the reasons they carry.

use serde::{Deserialize, Serialize};

use crate::{ClientId, Millis, Side};

/// One entry of a conversation's log: what both sides see, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub seq: u64,
    pub at: Millis,
    pub event: EventBody,
}

/// The body of a log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    Message {
        from: Side,
        /// The sender's client id, so the sender can match its pending message.
        id: ClientId,
        text: String,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        operator: Option<String>,
    },
    OperatorJoined {
        operator: String,
    },
    OperatorLeft {
        reason: LeftReason,
    },
    Ended {
        by: Side,
        reason: EndReason,
    },
    /// The person withdrew an earlier message (LINE's unsend): consoles hide message `id`.
    Retracted {
        id: ClientId,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftReason {
    Requeued,
    Transferred,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Ended,
    VisitorGone,
    Idle,
    MaxDuration,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Ended => "ended",
            EndReason::VisitorGone => "visitor_gone",
            EndReason::Idle => "idle",
            EndReason::MaxDuration => "max_duration",
        }
    }
}
