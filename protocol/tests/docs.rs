//! docs/protocol.md against this crate: every frame type a client may send or the server sends,
//! every kind of log entry and every error code the crate defines is in the document. (The
//! gateway's `tests/api/docs.rs` checks the other way: that the document's examples parse.)
//!
//! Server frames are found by serialising one sample of each `ServerMsg` variant; the
//! exhaustive `match` in [`variant`] stops compiling when a variant is added, until it is given
//! a number and a sample here (and so a line in the document).

use serde_json::Value;
use tsunagu_protocol::{
    ClientFrame, ClientId, ConversationSummary, EmergencySummary, EndReason, ErrorCode, EventBody,
    GoneReason, LeftReason, Limits, Offer, OperatorClient, OperatorConvState, OperatorInfo,
    Presence, RemovedReason, ServerMsg, Side, VisitorClient, VisitorState, WithdrawReason,
};
use ulid::Ulid;

const PROTOCOL_MD: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"));

/// How many `ServerMsg` variants there are; [`variant`] numbers them `0..SERVER_VARIANTS`.
const SERVER_VARIANTS: usize = 15;

/// Each variant's number. No `_` arm: a new variant stops this compiling until it is numbered
/// (and then the test below wants a sample of it).
fn variant(msg: &ServerMsg) -> usize {
    match msg {
        ServerMsg::VisitorWelcome { .. } => 0,
        ServerMsg::OperatorWelcome { .. } => 1,
        ServerMsg::QueuePosition { .. } => 2,
        ServerMsg::QueueLoad { .. } => 3,
        ServerMsg::Event { .. } => 4,
        ServerMsg::Typing { .. } => 5,
        ServerMsg::Presence { .. } => 6,
        ServerMsg::Offer(_) => 7,
        ServerMsg::OfferWithdrawn { .. } => 8,
        ServerMsg::Conversation { .. } => 9,
        ServerMsg::Removed { .. } => 10,
        ServerMsg::Ack { .. } => 11,
        ServerMsg::Error { .. } => 12,
        ServerMsg::Pong { .. } => 13,
        ServerMsg::Gone { .. } => 14,
    }
}

/// Every error code. The `match` has no `_` arm, so a new code stops this compiling until it is
/// added to both lists.
fn error_codes() -> Vec<ErrorCode> {
    let all = [
        ErrorCode::BadJson,
        ErrorCode::BadFrame,
        ErrorCode::UnknownType,
        ErrorCode::Invalid,
        ErrorCode::TextTooLong,
        ErrorCode::OutOfOrder,
        ErrorCode::NotFound,
        ErrorCode::Capacity,
        ErrorCode::UnsupportedVersion,
        ErrorCode::Unavailable,
        ErrorCode::RateLimited,
        ErrorCode::NotEnabled,
    ];
    for code in all {
        match code {
            ErrorCode::BadJson
            | ErrorCode::BadFrame
            | ErrorCode::UnknownType
            | ErrorCode::Invalid
            | ErrorCode::TextTooLong
            | ErrorCode::OutOfOrder
            | ErrorCode::NotFound
            | ErrorCode::Capacity
            | ErrorCode::UnsupportedVersion
            | ErrorCode::Unavailable
            | ErrorCode::RateLimited
            | ErrorCode::NotEnabled => {}
        }
    }
    all.to_vec()
}

fn summary(id: Ulid) -> ConversationSummary {
    ConversationSummary {
        id,
        state: OperatorConvState::Active,
        channel: tsunagu_protocol::Channel::Web,
        language: Some("ja".into()),
        started_at: 1,
        last_seq: 1,
        visitor_connected: true,
        handover_note: None,
        emergency: Some(EmergencySummary {
            open: true,
            categories: vec!["self_harm".into()],
            raised_at: 1,
            raised_by: "Sakura".into(),
            acknowledged_by: None,
        }),
    }
}

/// One of each server frame.
fn server_samples() -> Vec<ServerMsg> {
    let (conv, id) = (Ulid::new(), ClientId::from(Ulid::new()));
    let offer = Offer {
        conversation: conv,
        channel: tsunagu_protocol::Channel::Line,
        language: None,
        waited_ms: 1,
        expires_in_ms: 1,
        transfer: None,
        arrival: 1,
        offered_at: 1,
    };
    vec![
        ServerMsg::VisitorWelcome {
            v: 1,
            conversation: conv,
            token: "t".into(),
            state: VisitorState::Queued,
            resumed: false,
            last_seq: 0,
            heartbeat_ms: 15_000,
            limits: Limits::default(),
        },
        ServerMsg::OperatorWelcome {
            v: 1,
            operator: OperatorInfo {
                id: Ulid::new(),
                name: "Sakura".into(),
                role: "operator".into(),
            },
            presence: Presence::OnDuty,
            capacity: 2,
            heartbeat_ms: 15_000,
            categories: vec![],
            emergency_categories: vec![],
            emergency_checklist: vec![],
            conversations: vec![summary(conv)],
            offers: vec![offer.clone()],
            limits: Limits::default(),
        },
        ServerMsg::QueuePosition {
            position: 1,
            wait_minutes: None,
            operators_on_duty: 0,
            overloaded: false,
        },
        ServerMsg::QueueLoad {
            waiting: 1,
            longest_wait_ms: 1,
        },
        ServerMsg::Event {
            conversation: conv,
            seq: 1,
            at: 1,
            event: EventBody::OperatorJoined {
                operator: "Sakura".into(),
            },
        },
        ServerMsg::Typing {
            conversation: None,
            from: Side::Operator,
            active: true,
        },
        ServerMsg::Presence {
            state: Presence::Away,
            load: 0,
            capacity: 2,
        },
        ServerMsg::Offer(offer),
        ServerMsg::OfferWithdrawn {
            conversation: conv,
            reason: WithdrawReason::Timeout,
        },
        ServerMsg::Conversation {
            conversation: summary(conv),
        },
        ServerMsg::Removed {
            conversation: conv,
            reason: RemovedReason::Closed,
            suggest_pause: false,
        },
        ServerMsg::Ack { id, seq: Some(1) },
        ServerMsg::error(Some(id), ErrorCode::Invalid),
        ServerMsg::Pong { id },
        ServerMsg::Gone {
            conversation: conv,
            reason: GoneReason::Lost,
        },
    ]
}

/// One of each kind of log entry. No `_` arm: a new kind must be sampled here.
fn event_samples() -> Vec<EventBody> {
    let id = ClientId::from(Ulid::new());
    let all = vec![
        EventBody::Message {
            from: Side::Visitor,
            id,
            text: "眠れなくて".into(),
            operator: None,
        },
        EventBody::OperatorJoined {
            operator: "Sakura".into(),
        },
        EventBody::OperatorLeft {
            reason: LeftReason::Requeued,
        },
        EventBody::Ended {
            by: Side::Visitor,
            reason: EndReason::Ended,
        },
        EventBody::Retracted { id },
    ];
    let mut seen = [false; 5];
    for body in &all {
        seen[match body {
            EventBody::Message { .. } => 0,
            EventBody::OperatorJoined { .. } => 1,
            EventBody::OperatorLeft { .. } => 2,
            EventBody::Ended { .. } => 3,
            EventBody::Retracted { .. } => 4,
        }] = true;
    }
    assert!(seen.iter().all(|s| *s), "a kind of log entry has no sample");
    all
}

/// The value of `key` in a serialised frame, e.g. its `type`.
fn tag(value: &Value, key: &str) -> String {
    value[key].as_str().expect("a string tag").to_owned()
}

fn documented_in_an_example(key: &str, tag: &str) -> bool {
    PROTOCOL_MD.contains(&format!(r#""{key}":"{tag}""#))
}

#[test]
fn every_frame_type_a_client_may_send_has_an_example_in_the_protocol_document() {
    let types = VisitorClient::known_types()
        .iter()
        .chain(OperatorClient::known_types());
    let missing: Vec<_> = types
        .filter(|t| !documented_in_an_example("type", t))
        .collect();
    assert!(missing.is_empty(), "not in docs/protocol.md: {missing:?}");
}

#[test]
fn every_frame_type_the_server_sends_has_an_example_in_the_protocol_document() {
    let samples = server_samples();
    let mut numbered = [false; SERVER_VARIANTS];
    for msg in &samples {
        numbered[variant(msg)] = true;
    }
    assert!(
        numbered.iter().all(|n| *n),
        "a ServerMsg variant has no sample"
    );
    let missing: Vec<_> = samples
        .iter()
        .map(|msg| tag(&serde_json::to_value(msg).unwrap(), "type"))
        .filter(|t| !documented_in_an_example("type", t))
        .collect();
    assert!(missing.is_empty(), "not in docs/protocol.md: {missing:?}");
}

#[test]
fn every_kind_of_log_entry_has_an_example_in_the_protocol_document() {
    let missing: Vec<_> = event_samples()
        .iter()
        .map(|e| tag(&serde_json::to_value(e).unwrap(), "kind"))
        .filter(|k| !documented_in_an_example("kind", k))
        .collect();
    assert!(missing.is_empty(), "not in docs/protocol.md: {missing:?}");
}

#[test]
fn every_error_code_is_in_the_protocol_documents_table() {
    let missing: Vec<_> = error_codes()
        .into_iter()
        .map(ErrorCode::as_str)
        .filter(|code| !PROTOCOL_MD.contains(&format!("| `{code}` |")))
        .collect();
    assert!(missing.is_empty(), "not in docs/protocol.md: {missing:?}");
}

#[test]
fn both_welcome_frames_carry_the_same_limits() {
    let samples = server_samples();
    let limits: Vec<_> = samples[..2]
        .iter()
        .map(|w| serde_json::to_value(w).unwrap()["limits"].clone())
        .collect();
    assert_eq!(
        limits[0],
        serde_json::to_value(Limits::default()).unwrap(),
        "visitor welcome"
    );
    assert_eq!(limits[1], limits[0], "operator welcome");
}
