//! What an escalation record holds: the transcript, the flags and the actions taken, as stored
//! (encrypted, [`super::sealed`]) and as shown to coordinators; and how log entries extend it.

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::conversation::ConversationId;
use crate::protocol::{Channel, EventBody, LogEntry, Millis, Side};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagEntry {
    /// The client id of the flag message, so a retry is recorded once.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id: Option<Ulid>,
    pub category: String,
    pub reason: String,
    pub by: String,
    /// The account that flagged.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub by_id: Option<Ulid>,
    pub at: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub at: Millis,
    pub actor: String,
    /// The account that acted (none for the system and the person).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub actor_id: Option<Ulid>,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptEntry {
    pub seq: u64,
    pub at: Millis,
    pub from: Side,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub operator: Option<String>,
    pub text: String,
}

/// One escalation record, as stored (encrypted) and as shown to coordinators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: Ulid,
    pub conversation: ConversationId,
    pub channel: Channel,
    pub channel_ref: Option<String>,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub flags: Vec<FlagEntry>,
    pub actions: Vec<Action>,
    pub transcript: Vec<TranscriptEntry>,
    /// Highest log seq copied into the transcript.
    pub last_seq: u64,
    /// The conversation has closed: the record is complete and may be delivered.
    pub closed: bool,
    pub delivered_at: Option<Millis>,
}

/// What a list of records shows: no content.
#[derive(Debug, Clone, Serialize)]
pub struct RecordSummary {
    pub id: Ulid,
    pub conversation: ConversationId,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub categories: Vec<String>,
    /// The conversation is still live (the record is still growing).
    pub open: bool,
    pub delivered: bool,
    /// `none` (no case system configured), `pending` or `delivered`.
    pub delivery: &'static str,
}

/// Adds log entries past the record's `last_seq` to its transcript (messages) and actions
/// (joins, leaves, the end, retractions).
pub(super) fn append_entries(rec: &mut Record, entries: &[LogEntry]) {
    for e in entries {
        if e.seq <= rec.last_seq {
            continue;
        }
        rec.last_seq = e.seq;
        match &e.event {
            EventBody::Message {
                from,
                text,
                operator,
                ..
            } => rec.transcript.push(TranscriptEntry {
                seq: e.seq,
                at: e.at,
                from: *from,
                operator: operator.clone(),
                text: text.clone(),
            }),
            EventBody::OperatorJoined { operator } => rec.actions.push(Action {
                at: e.at,
                actor: operator.clone(),
                actor_id: None,
                action: "operator_joined".into(),
                detail: None,
            }),
            EventBody::OperatorLeft { reason } => rec.actions.push(Action {
                at: e.at,
                actor: "system".into(),
                actor_id: None,
                action: "operator_left".into(),
                detail: Some(format!("{reason:?}").to_lowercase()),
            }),
            EventBody::Ended { by, reason } => rec.actions.push(Action {
                at: e.at,
                actor: format!("{by:?}").to_lowercase(),
                actor_id: None,
                action: "ended".into(),
                detail: Some(reason.as_str().to_owned()),
            }),
            EventBody::Retracted { id } => rec.actions.push(Action {
                at: e.at,
                actor: "visitor".into(),
                actor_id: None,
                action: "retracted".into(),
                detail: Some(id.to_string()),
            }),
        }
    }
}
