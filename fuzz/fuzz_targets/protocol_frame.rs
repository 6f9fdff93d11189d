//! The websocket frame parser: `parse_frame` for both endpoints, and `validate_text`.
//!
//! Besides "never panics", checks what the parser promises: a parsed frame re-serialises to a
//! frame that parses to the same value, carries the id its JSON carried (written back exactly as
//! it was sent), and an error's id is the frame's valid id; accepted text is trimmed, not empty and at most `MAX_TEXT_CHARS`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsunagu::protocol::{
    parse_frame, validate_text, ClientFrame, ClientId, OperatorClient, VisitorClient,
    MAX_TEXT_CHARS,
};

/// The `id` a frame's JSON object carries, as sent, if it is a valid client id.
fn readable_id(text: &str) -> Option<(ClientId, String)> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let sent = value.as_object()?.get("id")?.as_str()?;
    Some((ClientId::parse(sent).ok()?, sent.to_owned()))
}

fn check<T>(text: &str, id_of: fn(&T) -> ClientId)
where
    T: ClientFrame + serde::Serialize + PartialEq + std::fmt::Debug,
{
    match parse_frame::<T>(text) {
        Ok(frame) => {
            let (id, sent) = readable_id(text).expect("a parsed frame has a valid id");
            assert_eq!(id_of(&frame), id, "parsed id is the JSON id");
            assert_eq!(id_of(&frame).to_string(), sent, "and is written back as sent");
            let again = serde_json::to_string(&frame).expect("a parsed frame serialises");
            let back = parse_frame::<T>(&again).expect("a re-serialised frame parses");
            assert_eq!(back, frame, "round trip");
        }
        Err(e) => {
            if e.id.is_some() {
                assert_eq!(
                    e.id,
                    readable_id(text).map(|(id, _)| id),
                    "an error carries the frame's id"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check::<VisitorClient>(text, VisitorClient::id);
    check::<OperatorClient>(text, OperatorClient::id);
    if let Ok(t) = validate_text(text) {
        assert!(
            !t.is_empty() && t == t.trim(),
            "accepted text is trimmed and not empty"
        );
        assert!(
            t.chars().count() <= MAX_TEXT_CHARS,
            "accepted text is not too long"
        );
        assert!(text.contains(t.as_str()));
    }
});
