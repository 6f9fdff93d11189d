//! The LINE webhook path as `Line::receive` runs it before anything reaches the engine:
//! `x-line-signature` verification over the raw body, the `Callback` body, each event on its
//! own with `Event::parse`, and the `webhookEventId` de-duplication.
//!
//! Input layout: the first byte is the length (mod 64) of a signature header taken from the
//! bytes after it; the rest is the request body. Besides "never panics", checks that the
//! body's own signature verifies, a forged or truncated one does not, and a second sighting of
//! an event id counts as a duplicate.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;
use tsunagu::connectors::line::dedupe::Recent;
use tsunagu::connectors::line::events::{Callback, Event};
use tsunagu::connectors::line::signature::{sign, verify};

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 64).min(rest.len());
    let (header, body) = rest.split_at(n);
    let secret = SecretString::from("fuzz-channel-secret".to_owned());

    // Signature: the fuzzed header, the right one, and the right one with a byte changed.
    let fuzzed = verify(&secret, body, Some(header));
    let good = sign(&secret, body);
    assert!(
        verify(&secret, body, Some(good.as_bytes())),
        "own signature verifies"
    );
    if fuzzed {
        // Only base64 of exactly the right MAC may pass (padding and surrounding ASCII
        // whitespace aside, which the header check trims).
        assert_eq!(
            header.trim_ascii(),
            good.as_bytes(),
            "a forged signature verified"
        );
    }
    let mut forged = good.clone().into_bytes();
    forged[0] = if forged[0] == b'A' { b'B' } else { b'A' };
    assert!(
        !verify(&secret, body, Some(&forged)),
        "a changed signature fails"
    );
    assert!(!verify(&secret, body, None), "no signature fails");

    // Parsing, exactly as the webhook handler does once the signature matched.
    let Ok(callback) = serde_json::from_slice::<Callback>(body) else {
        return;
    };
    let seen = Recent::new(Duration::from_secs(60), 64);
    for value in callback.events {
        let Some(event) = Event::parse(value) else {
            continue;
        };
        let _ = (event.is_standby(), event.is_redelivery());
        if let Some(source) = &event.source {
            let _ = (
                &source.kind,
                &source.user_id,
                &source.group_id,
                &source.room_id,
            );
        }
        if let Some(m) = &event.message {
            if let Some(text) = &m.text {
                let _ = tsunagu::protocol::validate_text(text);
            }
        }
        let key = ["channel", event.webhook_event_id.as_str()];
        let first = seen.check_and_insert(&key);
        assert!(
            seen.check_and_insert(&key),
            "a second sighting is a duplicate"
        );
        let _ = first;
    }
});
