//! The wire protocol, version 1: every frame a visitor or operator client sends or receives.
//!
//! This crate is the single source of the JSON shapes described in `docs/protocol.md`; the
//! gateway (as `tsunagu::protocol`), its tests and the load tests all use these types, and a
//! test checks that every frame type here appears in the document. It holds wire data only and
//! depends on nothing of the gateway, so anything that speaks the protocol can use it.
//!
//! Parsing is done in two steps ([`parse_frame`]) so that a client learns *why* a frame was
//! refused (malformed JSON, an unknown type, or a bad field), never just that it was.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

pub mod client_id;

use client_id::strict;
pub use client_id::ClientId;

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

// ---------------------------------------------------------------------------------------------
// Client to server
// ---------------------------------------------------------------------------------------------
//
// Serialised (by the load tests, or any client in Rust) without the optional fields that are
// absent, so a frame built here is the frame a browser client sends.

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

/// Message types that can be parsed from a text frame.
pub trait ClientFrame: serde::de::DeserializeOwned {
    /// The `type` values this endpoint accepts.
    fn known_types() -> &'static [&'static str];
}

impl ClientFrame for VisitorClient {
    fn known_types() -> &'static [&'static str] {
        Self::TYPES
    }
}

impl ClientFrame for OperatorClient {
    fn known_types() -> &'static [&'static str] {
        Self::TYPES
    }
}

/// Why a frame could not be parsed; each maps to an error code of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: ErrorCode,
    /// The client id, when the frame had a valid one, so the error can be matched.
    pub id: Option<ClientId>,
    pub detail: &'static str,
}

/// Parses a text frame: JSON object first, then a known `type`, then the fields.
pub fn parse_frame<T: ClientFrame>(text: &str) -> Result<T, FrameError> {
    // The usual frame is well formed: parse it once, straight into its type. Only one that
    // fails takes the slow way below, which finds out what is wrong with it (and its id).
    // (Objects only: a tagged enum would also take an array with the tag first.)
    if text.trim_start().starts_with('{') {
        if let Ok(frame) = serde_json::from_str::<T>(text) {
            return Ok(frame);
        }
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| FrameError {
        code: ErrorCode::BadJson,
        id: None,
        detail: "frame is not valid JSON",
    })?;
    let Some(obj) = value.as_object() else {
        return Err(FrameError {
            code: ErrorCode::BadJson,
            id: None,
            detail: "frame is not a JSON object",
        });
    };
    let id = obj
        .get("id")
        .and_then(|v| v.as_str())
        .and_then(|s| ClientId::parse(s).ok());
    let Some(kind) = obj.get("type").and_then(|t| t.as_str()) else {
        return Err(FrameError {
            code: ErrorCode::BadJson,
            id,
            detail: "frame has no string `type`",
        });
    };
    if !T::known_types().contains(&kind) {
        return Err(FrameError {
            code: ErrorCode::UnknownType,
            id,
            detail: "unknown message type",
        });
    }
    serde_json::from_value(value).map_err(|_| FrameError {
        code: ErrorCode::Invalid,
        id,
        detail: "a field is missing or has the wrong type (ids are ULIDs, see client_id)",
    })
}

/// Checks chat text: trimmed, not empty, not longer than [`MAX_TEXT_CHARS`].
pub fn validate_text(text: &str) -> Result<String, ErrorCode> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ErrorCode::Invalid);
    }
    if trimmed.chars().count() > MAX_TEXT_CHARS {
        return Err(ErrorCode::TextTooLong);
    }
    Ok(trimmed.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Server to client
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadJson,
    BadFrame,
    UnknownType,
    Invalid,
    TextTooLong,
    OutOfOrder,
    NotFound,
    Capacity,
    UnsupportedVersion,
    Unavailable,
    RateLimited,
    NotEnabled,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::Invalid => "invalid",
            ErrorCode::TextTooLong => "text_too_long",
            ErrorCode::OutOfOrder => "out_of_order",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Capacity => "capacity",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::NotEnabled => "not_enabled",
        }
    }

    /// A short English explanation for developers; clients translate by code.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "frame is not a JSON object of a known shape",
            ErrorCode::BadFrame => "binary frames are not accepted",
            ErrorCode::UnknownType => "unknown message type",
            ErrorCode::Invalid => "a field is missing or out of range",
            ErrorCode::TextTooLong => "text is too long",
            ErrorCode::OutOfOrder => "this message is not allowed now",
            ErrorCode::NotFound => "no such conversation",
            ErrorCode::Capacity => "you are at capacity",
            ErrorCode::UnsupportedVersion => "unsupported protocol version",
            ErrorCode::Unavailable => "storage unavailable; nothing was stored, retry",
            ErrorCode::RateLimited => "too many messages; slow down",
            ErrorCode::NotEnabled => "this feature is not enabled on this gateway",
        }
    }
}

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
    /// person's socket closes with [`close::NOT_FOUND`] after it; an operator's console drops
    /// the conversation (or its offer) and the socket stays open.
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

/// Close codes beyond the standard ones; see docs/protocol.md.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the websocket protocol (an unmasked frame, a reserved opcode, ...).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message that is not UTF-8.
    pub const NOT_UTF8: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const UNAUTHENTICATED: u16 = 4001;
    pub const UNSUPPORTED_VERSION: u16 = 4002;
    /// Resume token unknown, or the conversation is gone (after a `gone` frame).
    pub const NOT_FOUND: u16 = 4004;
    pub const HEARTBEAT_TIMEOUT: u16 = 4008;
    pub const SUPERSEDED: u16 = 4009;
    pub const REVOKED: u16 = 4010;
    /// The client could not keep up with its outbound queue.
    pub const TOO_SLOW: u16 = 4011;
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_frame_parsed_in_one_pass_equals_the_frame_parsed_by_way_of_a_json_value() {
        let id = ClientId::from(Ulid::new());
        let text = format!(r#"{{"type":"send","id":"{id}","text":"こんにちは"}}"#);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let slow: VisitorClient = serde_json::from_value(value).unwrap();
        assert_eq!(parse_frame::<VisitorClient>(&text).unwrap(), slow);
        // Well-formed JSON of the wrong shape still gets its precise error and id.
        let err =
            parse_frame::<VisitorClient>(&format!(r#"{{"type":"send","id":"{id}"}}"#)).unwrap_err();
        assert_eq!((err.code, err.id), (ErrorCode::Invalid, Some(id)));
    }

    #[test]
    fn malformed_json_is_bad_json() {
        let err = parse_frame::<VisitorClient>("{not json").unwrap_err();
        assert_eq!(err.code, ErrorCode::BadJson);
        let err = parse_frame::<VisitorClient>("[1,2]").unwrap_err();
        assert_eq!(err.code, ErrorCode::BadJson);
    }

    #[test]
    fn unknown_type_is_reported_with_the_client_id() {
        let id = ClientId::from(Ulid::new());
        let err = parse_frame::<VisitorClient>(&format!(r#"{{"type":"dance","id":"{id}"}}"#))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownType);
        assert_eq!(err.id, Some(id));
    }

    #[test]
    fn operator_only_types_are_unknown_to_visitors() {
        let err = parse_frame::<VisitorClient>(&format!(
            r#"{{"type":"take_next","id":"{}"}}"#,
            Ulid::new()
        ))
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownType);
    }

    #[test]
    fn a_bad_ulid_is_invalid() {
        let err =
            parse_frame::<VisitorClient>(r#"{"type":"send","id":"nope","text":"hi"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
    }

    #[test]
    fn an_out_of_range_client_id_is_invalid_not_read_as_another() {
        // `P…` is above the 128 bits of a ULID; the `ulid` crate alone reads it as `61M95…`.
        let frame = r#"{"type":"send","id":"P1M95GDJGJ6FNKM0YF7E9F6FGW","text":"hi"}"#;
        let err = parse_frame::<VisitorClient>(frame).unwrap_err();
        assert_eq!((err.code, err.id), (ErrorCode::Invalid, None));
        let frame = r#"{"type":"accept","id":"Z1M95GDJGJ6FNKM0YF7E9F6FGW","conversation":"01M95GDJGJ6FNKM0YF7E9F6FGW"}"#;
        let err = parse_frame::<OperatorClient>(frame).unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
        // The conversation an operator names is checked the same way.
        let frame = r#"{"type":"accept","id":"01M95GDJGJ6FNKM0YF7E9F6FGW","conversation":"P1M95GDJGJ6FNKM0YF7E9F6FGW"}"#;
        let err = parse_frame::<OperatorClient>(frame).unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
        let frame = r#"{"type":"hello","v":1,"id":"01M95GDJGJ6FNKM0YF7E9F6FGW","last_seqs":{"P1M95GDJGJ6FNKM0YF7E9F6FGW":3}}"#;
        assert_eq!(
            parse_frame::<OperatorClient>(frame).unwrap_err().code,
            ErrorCode::Invalid
        );
        let frame = r#"{"type":"transfer","id":"01M95GDJGJ6FNKM0YF7E9F6FGW","conversation":"01M95GDJGJ6FNKM0YF7E9F6FGW","to":"P1M95GDJGJ6FNKM0YF7E9F6FGW"}"#;
        assert_eq!(
            parse_frame::<OperatorClient>(frame).unwrap_err().code,
            ErrorCode::Invalid
        );
        let frame = r#"{"type":"transfer","id":"01M95GDJGJ6FNKM0YF7E9F6FGW","conversation":"01m95gdjgj6fnkm0yf7e9f6fgw","to":null}"#;
        assert!(parse_frame::<OperatorClient>(frame).is_ok());
    }

    #[test]
    fn a_lowercase_client_id_is_answered_exactly_as_sent() {
        let sent = "01m95gdjgj6fnkm0yf7e9f6fgw";
        let frame = format!(r#"{{"type":"send","id":"{sent}","text":"hi"}}"#);
        let VisitorClient::Send { id, .. } = parse_frame::<VisitorClient>(&frame).unwrap() else {
            panic!("a send");
        };
        let ack = serde_json::to_value(ServerMsg::Ack { id, seq: Some(1) }).unwrap();
        assert_eq!(ack["id"], sent);
        let err = serde_json::to_value(ServerMsg::error(Some(id), ErrorCode::Invalid)).unwrap();
        assert_eq!(err["id"], sent);
    }

    #[test]
    fn a_send_frame_parses() {
        let id = ClientId::from(Ulid::new());
        let msg: VisitorClient = parse_frame(&format!(
            r#"{{"type":"send","id":"{id}","text":"こんにちは"}}"#
        ))
        .unwrap();
        assert_eq!(
            msg,
            VisitorClient::Send {
                id,
                text: "こんにちは".into()
            }
        );
    }

    #[test]
    fn text_is_trimmed_and_limited() {
        assert_eq!(validate_text("  hi "), Ok("hi".to_owned()));
        assert_eq!(validate_text("   "), Err(ErrorCode::Invalid));
        let long: String = "あ".repeat(MAX_TEXT_CHARS + 1);
        assert_eq!(validate_text(&long), Err(ErrorCode::TextTooLong));
        let max: String = "あ".repeat(MAX_TEXT_CHARS);
        assert!(validate_text(&max).is_ok());
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
