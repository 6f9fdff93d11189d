//! The websocket frame parser: `parse_frame` for both endpoints, and `validate_text`.
//!
//! Besides "never panics", checks what the parser promises: a parsed frame re-serialises to a
//! frame that parses to the same value, carries the id its JSON carried, and an error's id is
//! the frame's readable id; accepted text is trimmed, not empty and at most `MAX_TEXT_CHARS`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsunagu::protocol::{
    parse_frame, validate_text, ClientFrame, OperatorClient, VisitorClient, MAX_TEXT_CHARS,
};
use ulid::Ulid;

/// The `id` a frame's JSON object carries, if it is a readable ULID string.
fn readable_id(text: &str) -> Option<Ulid> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    Ulid::from_string(value.as_object()?.get("id")?.as_str()?).ok()
}

fn check<T>(text: &str, id_of: fn(&T) -> Ulid)
where
    T: ClientFrame + serde::Serialize + PartialEq + std::fmt::Debug,
{
    match parse_frame::<T>(text) {
        Ok(frame) => {
            assert_eq!(
                Some(id_of(&frame)),
                readable_id(text),
                "parsed id is the JSON id"
            );
            let again = serde_json::to_string(&frame).expect("a parsed frame serialises");
            let back = parse_frame::<T>(&again).expect("a re-serialised frame parses");
            assert_eq!(back, frame, "round trip");
        }
        Err(e) => {
            if e.id.is_some() {
                assert_eq!(e.id, readable_id(text), "an error carries the frame's id");
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
