//! The frames the load generator sends, built from the `tsunagu-protocol` crate's types (the
//! gateway's own), and the server frames it reads in full. The hot loops (`clients`, the storm)
//! still recognise server frames by their text (`net::str_field`): parsing every delivered
//! frame would load the generator, not the gateway.

use serde::{Deserialize, Serialize};
use tsunagu_protocol::{
    ClientId, ErrorCode, EventBody, OperatorClient, Presence, Resume, Start, VisitorClient,
    PROTOCOL_VERSION,
};
use ulid::Ulid;

/// A fresh client id for a frame.
pub fn new_id() -> ClientId {
    ClientId::from(Ulid::new())
}

fn to_text(frame: &impl Serialize) -> String {
    serde_json::to_string(frame).expect("a protocol frame serialises")
}

/// A person's `hello` starting a conversation in Japanese.
pub fn hello_start(id: ClientId) -> String {
    to_text(&VisitorClient::Hello {
        v: PROTOCOL_VERSION,
        id,
        start: Some(Start {
            lang: Some("ja".into()),
        }),
        resume: None,
    })
}

/// A person's `hello` resuming with its token, after `last_seq`.
pub fn hello_resume(id: ClientId, token: &str, last_seq: u64) -> String {
    to_text(&VisitorClient::Hello {
        v: PROTOCOL_VERSION,
        id,
        start: None,
        resume: Some(Resume {
            token: token.to_owned(),
            last_seq: Some(last_seq),
        }),
    })
}

/// A person's chat message.
pub fn visitor_send(id: ClientId, text: String) -> String {
    to_text(&VisitorClient::Send { id, text })
}

/// An operator console's `hello`, holding no conversations.
pub fn operator_hello(id: ClientId) -> String {
    to_text(&OperatorClient::Hello {
        v: PROTOCOL_VERSION,
        id,
        last_seqs: Default::default(),
    })
}

/// An operator going on duty.
pub fn on_duty(id: ClientId) -> String {
    to_text(&OperatorClient::Presence {
        id,
        state: Presence::OnDuty,
    })
}

/// An operator taking the next waiting person.
pub fn take_next(id: ClientId) -> String {
    to_text(&OperatorClient::TakeNext { id })
}

/// An operator accepting an offer of `conversation` (as the offer named it).
pub fn accept(id: ClientId, conversation: &str) -> anyhow::Result<String> {
    let conversation: Ulid = conversation.parse()?;
    Ok(to_text(&OperatorClient::Accept { id, conversation }))
}

/// What the flood scenario reads of the server's frames; everything else is `Other`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Received {
    Welcome,
    Conversation,
    Event {
        event: EventBody,
    },
    Ack {
        id: ClientId,
    },
    Error {
        id: Option<ClientId>,
        code: ErrorCode,
    },
    #[serde(other)]
    Other,
}

impl Received {
    /// A text frame from the server; `None` if it is not one of the protocol's.
    pub fn parse(frame: &str) -> Option<Received> {
        serde_json::from_str(frame).ok()
    }

    /// The client id the frame answers (`ack` or `error`).
    pub fn answers(&self) -> Option<ClientId> {
        match self {
            Received::Ack { id } => Some(*id),
            Received::Error { id, .. } => *id,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn value(frame: &str) -> Value {
        serde_json::from_str(frame).unwrap()
    }

    #[test]
    fn frames_built_from_the_protocol_types_are_the_frames_written_by_hand_before() {
        let id = new_id();
        let conv = Ulid::new();
        let cases = [
            (
                hello_start(id),
                json!({"type":"hello","v":1,"id":id.to_string(),"start":{"lang":"ja"}}),
            ),
            (
                hello_resume(id, "tok", 7),
                json!({"type":"hello","v":1,"id":id.to_string(),
                    "resume":{"token":"tok","last_seq":7}}),
            ),
            (
                visitor_send(id, "t:1:あ".into()),
                json!({"type":"send","id":id.to_string(),"text":"t:1:あ"}),
            ),
            (
                operator_hello(id),
                json!({"type":"hello","v":1,"id":id.to_string()}),
            ),
            (
                on_duty(id),
                json!({"type":"presence","id":id.to_string(),"state":"on_duty"}),
            ),
            (
                take_next(id),
                json!({"type":"take_next","id":id.to_string()}),
            ),
            (
                accept(id, &conv.to_string()).unwrap(),
                json!({"type":"accept","id":id.to_string(),"conversation":conv.to_string()}),
            ),
        ];
        for (built, by_hand) in cases {
            assert_eq!(value(&built), by_hand, "{built}");
            assert_eq!(
                built.len(),
                by_hand.to_string().len(),
                "same size on the wire"
            );
            assert!(built.starts_with(r#"{"type":""#), "{built}");
        }
    }

    #[test]
    fn the_server_frames_the_flood_reads_are_parsed_with_the_protocol_types() {
        let id = new_id();
        let event = r#"{"type":"event","conversation":"01JDA8YQ5R3W9X2B7C4D6E8F0G","seq":4,"at":1,"event":{"kind":"message","from":"visitor","id":"01JDA90T4X6Y8Z0A2B4C6D8E0F","text":"t:12:pad"}}"#;
        assert!(matches!(
            Received::parse(event),
            Some(Received::Event {
                event: EventBody::Message { ref text, .. }
            }) if text == "t:12:pad"
        ));
        let ack = format!(r#"{{"type":"ack","id":"{id}","seq":4}}"#);
        assert_eq!(Received::parse(&ack).unwrap().answers(), Some(id));
        let limited = format!(
            r#"{{"type":"error","id":"{id}","code":"rate_limited","message":"m","retry_after_ms":5}}"#
        );
        assert!(matches!(
            Received::parse(&limited),
            Some(Received::Error {
                code: ErrorCode::RateLimited,
                ..
            })
        ));
        assert!(matches!(
            Received::parse(r#"{"type":"queue","waiting":1,"longest_wait_ms":2}"#),
            Some(Received::Other)
        ));
        assert!(matches!(
            Received::parse(r#"{"type":"welcome","v":1,"limits":{}}"#),
            Some(Received::Welcome)
        ));
    }
}
