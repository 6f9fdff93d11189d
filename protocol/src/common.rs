//! The constants and small types every other part of the protocol shares: the version, the size
//! limits, timestamps, and who (side, channel, presence) a frame speaks of.

use serde::{Deserialize, Serialize};

/// The protocol version clients send in `hello.v`.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest websocket frame or message accepted, in bytes. Well under 64 KiB: a chat message of
/// 4 000 Japanese characters is 12 000 bytes of UTF-8, plus the JSON around it.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;
/// Largest chat text, in Unicode scalar values.
pub const MAX_TEXT_CHARS: usize = 4_000;
/// Largest handover note, in Unicode scalar values.
pub const MAX_NOTE_CHARS: usize = 500;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// Which side of a conversation something came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Visitor,
    Operator,
    System,
}

/// The channel a conversation arrived by. Only `web` exists in the core; LINE and phone
/// connectors add theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Web,
    Line,
    Phone,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Line => "line",
            Channel::Phone => "phone",
        }
    }
}

/// Operator presence as the operator sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    OnDuty,
    Away,
    OffDuty,
}
