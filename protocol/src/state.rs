//! The data the server's frames carry about the service's state: a visitor's or a conversation's
//! state, the limits a client checks, who an operator is, what an operator sees of a
//! conversation (summary, emergency, transfer), offers and why they are withdrawn or removed.

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::{Channel, Millis, MAX_FRAME_BYTES, MAX_NOTE_CHARS, MAX_TEXT_CHARS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitorState {
    Queued,
    Active,
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorConvState {
    Offered,
    Active,
    WrapUp,
}

/// The limits a client checks before sending, so it can tell its user instead of being refused.
/// Both `welcome` frames carry them (the widget and the console read them from there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// [`MAX_TEXT_CHARS`]: chat text, in Unicode scalar values.
    pub max_text: usize,
    /// [`MAX_FRAME_BYTES`]: a whole frame, in bytes of UTF-8.
    pub max_frame: usize,
    /// [`MAX_NOTE_CHARS`]: a transfer's handover note or a flag's reason, in Unicode scalar values.
    pub max_note: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_text: MAX_TEXT_CHARS,
            max_frame: MAX_FRAME_BYTES,
            max_note: MAX_NOTE_CHARS,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorInfo {
    pub id: Ulid,
    pub name: String,
    pub role: String,
}

/// What an operator sees of a conversation: never an identifier of the person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationSummary {
    pub id: Ulid,
    pub state: OperatorConvState,
    pub channel: Channel,
    pub language: Option<String>,
    pub started_at: Millis,
    pub last_seq: u64,
    pub visitor_connected: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub handover_note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub emergency: Option<EmergencySummary>,
}

/// The emergency state of a conversation, as consoles show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmergencySummary {
    pub open: bool,
    pub categories: Vec<String>,
    pub raised_at: Millis,
    pub raised_by: String,
    pub acknowledged_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferInfo {
    pub from: String,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub conversation: Ulid,
    pub channel: Channel,
    pub language: Option<String>,
    pub waited_ms: u64,
    pub expires_in_ms: u64,
    pub transfer: Option<TransferInfo>,
    /// The conversation's place in the arrival order (a number the store gives each arrival,
    /// only growing; for ordering, not counting). Absent from gateways before it was added.
    #[serde(default)]
    pub arrival: u64,
    /// When the offer was made, on the server's clock (ms since the epoch).
    #[serde(default)]
    pub offered_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawReason {
    Timeout,
    Declined,
    Abandoned,
    Taken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovedReason {
    Closed,
    Transferred,
    Requeued,
}
