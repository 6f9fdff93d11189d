//! `X-Twilio-Signature`: base64 of HMAC-SHA1, keyed with the auth token, over the full URL the
//! provider called followed by every POST parameter's name and value, sorted by name (and, for
//! a repeated name, by value). Checked in constant time before any field is used.
//!
//! Like Twilio's own validators, the URL is tried as given and with its default port toggled
//! (`https://host/…` and `https://host:443/…`), because the provider may sign either form.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha1::Sha1;
use subtle::ConstantTimeEq;

type HmacSha1 = Hmac<Sha1>;

/// The string that is signed: the URL, then each name and value, sorted, repeated values once.
fn signed_text(url: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // Byte order of UTF-8 is code point order, which is how the reference validators sort.
    pairs.sort_unstable();
    pairs.dedup();
    let mut s = String::with_capacity(url.len() + 64 * pairs.len());
    s.push_str(url);
    for (k, v) in pairs {
        s.push_str(k);
        s.push_str(v);
    }
    s
}

fn mac(token: &SecretString, text: &str) -> Vec<u8> {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = HmacSha1::new_from_slice(token.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(text.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The signature the provider sends for a POST to `url` with `params` (tests use it too).
pub fn sign(token: &SecretString, url: &str, params: &[(String, String)]) -> String {
    base64::engine::general_purpose::STANDARD.encode(mac(token, &signed_text(url, params)))
}

/// `url` with its default port added if absent, or removed if present.
fn toggled_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host_end = authority.rfind(']').unwrap_or(0);
    match authority[host_end..].rfind(':').map(|i| i + host_end) {
        Some(i) if &authority[i + 1..] == default => {
            Some(format!("{scheme}://{}{path}", &authority[..i]))
        }
        Some(_) => None,
        None => Some(format!("{scheme}://{authority}:{default}{path}")),
    }
}

/// True if `header` is a valid signature of a POST to `url` with `params` under `token`.
/// A header that is not base64 of 20 bytes is simply false.
pub fn verify(
    token: &SecretString,
    url: &str,
    params: &[(String, String)],
    header: Option<&[u8]>,
) -> bool {
    let Some(header) = header else {
        return false;
    };
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(header.trim_ascii()) else {
        return false;
    };
    let check = |u: &str| {
        let expected = mac(token, &signed_text(u, params));
        given.len() == expected.len() && bool::from(expected.as_slice().ct_eq(&given))
    };
    // Both forms are always computed, so timing does not tell which one matched.
    let first = check(url);
    let second = toggled_port(url).is_some_and(|u| check(&u));
    first | second
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn params(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn twilios_documented_example_matches() {
        // Twilio's documented example (auth token 12345); the value is also what the official
        // `twilio` package's RequestValidator computes.
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let p = params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(
            sign(&token("12345"), url, &p),
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        );
        let sig = sign(&token("12345"), url, &p);
        assert!(verify(&token("12345"), url, &p, Some(sig.as_bytes())));
    }

    #[test]
    fn anything_changed_fails() {
        let url = "https://h.example/connectors/voice/incoming";
        let p = params(&[("CallSid", "CA1"), ("From", "+819012345678")]);
        let sig = sign(&token("t"), url, &p);
        assert!(verify(&token("t"), url, &p, Some(sig.as_bytes())));
        assert!(!verify(&token("u"), url, &p, Some(sig.as_bytes())));
        assert!(!verify(
            &token("t"),
            "https://h.example/other",
            &p,
            Some(sig.as_bytes())
        ));
        let tampered = params(&[("CallSid", "CA1"), ("From", "+819012345679")]);
        assert!(!verify(&token("t"), url, &tampered, Some(sig.as_bytes())));
        assert!(!verify(&token("t"), url, &p, None));
        assert!(!verify(&token("t"), url, &p, Some(b"not base64!")));
        assert!(!verify(&token("t"), url, &p, Some(b"AAAA")));
    }

    #[test]
    fn order_of_parameters_does_not_matter_and_the_default_port_is_optional() {
        let p = params(&[("b", "2"), ("a", "1")]);
        let q = params(&[("a", "1"), ("b", "2")]);
        let sig = sign(&token("t"), "https://h.example:443/x", &p);
        assert!(verify(
            &token("t"),
            "https://h.example/x",
            &q,
            Some(sig.as_bytes())
        ));
        assert_eq!(toggled_port("http://h:80/x").as_deref(), Some("http://h/x"));
        assert_eq!(toggled_port("http://h:8080/x"), None);
        assert_eq!(
            toggled_port("https://[::1]/x").as_deref(),
            Some("https://[::1]:443/x")
        );
    }
}
