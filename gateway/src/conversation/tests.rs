//! Fixtures every family's tests build on (a conversation queued, offered, active, in wrap-up),
//! and the tests that cross families: terminal states refuse everything, a conversation
//! survives the JSON other stores keep it as.

use super::*;

pub(super) const T0: Millis = 1_000_000;

pub(super) fn queued() -> Conversation {
    Conversation::new(Ulid::new(), Channel::Web, Some("ja".into()), None, T0)
}

pub(super) fn op() -> OperatorId {
    Ulid::new()
}

pub(super) fn offered(to: OperatorId) -> Conversation {
    let mut c = queued();
    c.apply(
        Command::Offer {
            operator: to,
            expires_at: T0 + 30_000,
        },
        T0,
    )
    .unwrap();
    c
}

pub(super) fn active(by: OperatorId) -> Conversation {
    let mut c = queued();
    c.apply(
        Command::Take {
            operator: by,
            operator_name: "Sakura".into(),
        },
        T0 + 10,
    )
    .unwrap();
    c
}

pub(super) fn wrap_up(by: OperatorId) -> Conversation {
    let mut c = active(by);
    c.apply(Command::OperatorEnd { operator: by }, T0 + 20)
        .unwrap();
    c
}

#[test]
fn terminal_states_accept_nothing() {
    let mut closed = wrap_up(op());
    closed.apply(Command::WrapUpExpired, T0).unwrap();
    let mut abandoned = queued();
    abandoned.apply(Command::VisitorEnd, T0).unwrap();
    for c in [&mut closed, &mut abandoned] {
        let before = c.clone();
        for cmd in [
            Command::VisitorEnd,
            Command::VisitorConnected,
            Command::Take {
                operator: op(),
                operator_name: "x".into(),
            },
            Command::Message {
                from: Side::Visitor,
                operator: None,
                id: Ulid::new().into(),
                text: "hi".into(),
            },
            Command::WrapUpExpired,
        ] {
            assert!(c.apply(cmd, T0).is_err());
        }
        assert_eq!(*c, before, "a refused command changes nothing");
    }
}

#[test]
fn conversation_round_trips_through_json_for_other_stores() {
    let c = wrap_up(op());
    let json = serde_json::to_string(&c).unwrap();
    let back: Conversation = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
}
