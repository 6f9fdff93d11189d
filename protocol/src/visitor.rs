//! The frames a visitor client (the widget, or a LINE or phone connector's stand-in) sends.
//!
//! Serialised (by the load tests, or any client in Rust) without the optional fields that are
//! absent, so a frame built here is the frame a browser client sends.

use serde::{Deserialize, Serialize};

use crate::{ClientFrame, ClientId};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Start {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Resume {
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
}

/// Everything a visitor client may send.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VisitorClient {
    Hello {
        v: u32,
        id: ClientId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start: Option<Start>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<Resume>,
    },
    Send {
        id: ClientId,
        text: String,
    },
    Typing {
        id: ClientId,
        active: bool,
    },
    Ack {
        id: ClientId,
        seq: u64,
    },
    End {
        id: ClientId,
    },
    Ping {
        id: ClientId,
    },
}

impl VisitorClient {
    const TYPES: &'static [&'static str] = &["hello", "send", "typing", "ack", "end", "ping"];

    pub fn id(&self) -> ClientId {
        match self {
            VisitorClient::Hello { id, .. }
            | VisitorClient::Send { id, .. }
            | VisitorClient::Typing { id, .. }
            | VisitorClient::Ack { id, .. }
            | VisitorClient::End { id }
            | VisitorClient::Ping { id } => *id,
        }
    }
}

impl ClientFrame for VisitorClient {
    fn known_types() -> &'static [&'static str] {
        Self::TYPES
    }
}
