//! The voice webhook path as `connectors::voice::webhook` runs it before anything reaches the
//! engine: the form body parsed with `form_urlencoded` (as the webhook's private `verify`
//! does), `X-Twilio-Signature` verification over URL and parameters, an operator's dial target
//! (`Target::parse`), and the TwiML built from untrusted text.
//!
//! Input layout: byte 0 is the URL's length (mod 128), then the URL (lossy UTF-8); the next
//! byte is the signature header's length (mod 64), then the header; the rest is the form body.
//! Besides "never panics", checks that the parameters' own signature verifies in any order of
//! the parameters, a changed one does not, and that TwiML carrying parameter text is
//! well-formed: no markup of its own, only characters XML 1.0 allows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;
use tsunagu::connectors::voice::signature::{sign, verify};
use tsunagu::connectors::voice::twiml::{Target, Twiml};

fn take<'a>(data: &mut &'a [u8], modulo: u8) -> &'a [u8] {
    let Some((&n, rest)) = data.split_first() else {
        *data = &[];
        return &[];
    };
    let (head, tail) = rest.split_at(usize::from(n % modulo).min(rest.len()));
    *data = tail;
    head
}

/// XML 1.0 `Char`. (This target once found `twiml::esc` letting U+FFFE and U+FFFF through;
/// `twiml_text_holds_only_characters_xml_allows` in gateway/tests/properties.rs guards the fix.)
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn well_formed(doc: &str, tags: usize, quotes: usize) {
    assert!(
        doc.chars().all(xml_char),
        "TwiML holds a character XML forbids: {doc:?}"
    );
    assert_eq!(
        doc.matches('<').count(),
        tags,
        "text became markup: {doc:?}"
    );
    assert_eq!(
        doc.matches('"').count(),
        quotes,
        "text broke out of an attribute: {doc:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let url = String::from_utf8_lossy(take(&mut data, 128)).into_owned();
    let header = take(&mut data, 64);
    let body = data;
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let token = SecretString::from("fuzz-auth-token".to_owned());

    let fuzzed = verify(&token, &url, &params, Some(header));
    let good = sign(&token, &url, &params);
    assert!(
        verify(&token, &url, &params, Some(good.as_bytes())),
        "own signature verifies"
    );
    let mut reversed = params.clone();
    reversed.reverse();
    assert!(
        verify(&token, &url, &reversed, Some(good.as_bytes())),
        "order does not matter"
    );
    let mut forged = good.clone().into_bytes();
    forged[0] = if forged[0] == b'A' { b'B' } else { b'A' };
    assert!(
        !verify(&token, &url, &params, Some(&forged)),
        "a changed signature fails"
    );
    if fuzzed {
        // Only the signature for this URL, or for it with its default port toggled, passes.
        assert_ne!(header.trim_ascii(), forged.as_slice());
    }
    assert!(!verify(&token, &url, &params, None), "no signature fails");

    // `<?xml`, `<Response>`, `</Response>`; `version` and `encoding` quoted.
    let (base_tags, base_quotes) = (3, 4);
    for (name, value) in params.iter().take(8) {
        let doc = Twiml::new().say(name, value).build();
        well_formed(&doc, base_tags + 2, base_quotes + 2);
        if let Some(target) = Target::parse(value) {
            match &target {
                Target::Number(n) => {
                    let digits = n.trim().strip_prefix('+').expect("numbers start with +");
                    assert!(digits.bytes().all(|b| b.is_ascii_digit()));
                }
                Target::Client(c) => assert!(!c.is_empty() && c.len() <= 120),
            }
            let doc = Twiml::new().dial(&target, name, 20, &url).build();
            // `<Dial …>`, `</Dial>`, `<Number>`/`<Client>` and its end tag; four attributes.
            well_formed(&doc, base_tags + 4, base_quotes + 8);
        }
    }
});
