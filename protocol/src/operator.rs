//! The frames an operator client (the console) sends: presence, offers, chat in a conversation,
//! transfer, help, end, wrap-up and emergency flags. Conversation ids are checked strictly
//! (see [`crate::client_id`]).
//!
//! Serialised (by the load tests, or any client in Rust) without the optional fields that are
//! absent, so a frame built here is the frame a browser client sends.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::client_id::strict;
use crate::{ClientFrame, ClientId, Presence};

/// Everything an operator client may send.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OperatorClient {
    Hello {
        v: u32,
        id: ClientId,
        #[serde(
            default,
            deserialize_with = "strict::keys",
            skip_serializing_if = "HashMap::is_empty"
        )]
        last_seqs: HashMap<Ulid, u64>,
    },
    Presence {
        id: ClientId,
        state: Presence,
    },
    TakeNext {
        id: ClientId,
    },
    Accept {
        id: ClientId,
        #[serde(deserialize_with = "strict::ulid")]
        conversation: Ulid,
    },
    Decline {
        id: ClientId,
        #[serde(deserialize_with = "strict::ulid")]
        conversation: Ulid,
    },
    Send {
        id: ClientId,
        #[serde(deserialize_with = "strict::ulid")]
        conversation: Ulid,
        text: String,
    },
    Typing {
        id: ClientId,
        #[serde(deserialize_with = "strict::ulid")]
        conversation: Ulid,
        active: bool,
    },
    Ack {
        id: ClientId,
        #[serde(deserialize_with = "strict::ulid")]
        conversation: Ulid,
        seq: u64,
    },
    Transfer {
        id: ClientId,
        #[serde(deserialize_with = "strict::ulid")]
        conversation: Ulid,
        #[serde(
            default,
            deserialize_with = "strict::option",
            skip_serializing_if = "Option::is_none"
        )]
        to: Option<Ulid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    Help {
        id: ClientId,
        #[serde(deserialize_with = "strict::ulid")]
        conversation: Ulid,
    },
    End {
        id: ClientId,
        #[serde(deserialize_with = "strict::ulid")]
        conversation: Ulid,
    },
    WrapUp {
        id: ClientId,
        #[serde(deserialize_with = "strict::ulid")]
        conversation: Ulid,
        category: String,
    },
    /// Records an emergency flag (or adds to it).
    Flag {
        id: ClientId,
        #[serde(deserialize_with = "strict::ulid")]
        conversation: Ulid,
        category: String,
        reason: String,
    },
    Ping {
        id: ClientId,
    },
}

impl OperatorClient {
    const TYPES: &'static [&'static str] = &[
        "hello",
        "presence",
        "take_next",
        "accept",
        "decline",
        "send",
        "typing",
        "ack",
        "transfer",
        "help",
        "end",
        "wrap_up",
        "flag",
        "ping",
    ];

    pub fn id(&self) -> ClientId {
        use OperatorClient::*;
        match self {
            Hello { id, .. }
            | Presence { id, .. }
            | TakeNext { id }
            | Accept { id, .. }
            | Decline { id, .. }
            | Send { id, .. }
            | Typing { id, .. }
            | Ack { id, .. }
            | Transfer { id, .. }
            | Help { id, .. }
            | End { id, .. }
            | WrapUp { id, .. }
            | Flag { id, .. }
            | Ping { id } => *id,
        }
    }
}

impl ClientFrame for OperatorClient {
    fn known_types() -> &'static [&'static str] {
        Self::TYPES
    }
}
