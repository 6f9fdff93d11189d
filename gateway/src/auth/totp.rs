//! Second factors: RFC 6238 time-based codes (SHA-1, 6 digits, 30-second steps, the step
//! before and after accepted for clock drift) through the `totp-rs` crate, and recovery codes.
//!
//! A code is matched to its time step here; whether that step may still be used (later than
//! the last one accepted: no replay) is decided by the database in one statement
//! ([`crate::db::Db::use_totp_step`]). Recovery codes are random (50 bits each), shown once and
//! stored only as SHA-256 of the account id and the code; each works once.

use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret, TOTP};
use ulid::Ulid;

/// Seconds per time step.
pub const STEP_SECS: u64 = 30;
/// Recovery codes given at enrolment.
pub const RECOVERY_CODES: usize = 10;

/// A new random secret (160 bits, as RFC 4226 recommends), base32 without padding.
pub fn new_secret() -> String {
    let bytes: [u8; 20] = rand::random();
    Secret::Raw(bytes.to_vec()).to_encoded().to_string()
}

fn totp(secret: &str, issuer: &str, account: &str) -> Option<TOTP> {
    let bytes = Secret::Encoded(secret.to_owned()).to_bytes().ok()?;
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        STEP_SECS,
        bytes,
        Some(issuer.to_owned()),
        account.to_owned(),
    )
    .ok()
}

/// Whether `secret` is a usable secret (base32 of at least 128 bits).
pub fn valid_secret(secret: &str) -> bool {
    totp(secret, "x", "x").is_some()
}

/// The `otpauth://` URI an authenticator app reads (as a QR code or pasted).
pub fn uri(secret: &str, issuer: &str, account: &str) -> Option<String> {
    Some(totp(secret, issuer, account)?.get_url())
}

/// The time step whose code `code` is at `now_ms`, looking at the step before, the step now
/// and the step after; `None` if it matches none.
pub fn matching_step(secret: &str, code: &str, now_ms: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret, "x", "x")?;
    let now = now_ms / 1000 / STEP_SECS;
    let mut found = None;
    // Every candidate is compared (in constant time), whichever matches.
    for step in [now.saturating_sub(1), now, now + 1] {
        let expected = t.generate(step * STEP_SECS);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// The code for `secret` at `now_ms` (tests).
#[cfg(test)]
pub fn code_at(secret: &str, now_ms: u64) -> Option<String> {
    Some(totp(secret, "x", "x")?.generate(now_ms / 1000))
}

/// `n` new recovery codes, `XXXXX-XXXXX` in Crockford base32.
pub fn new_recovery_codes(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let u = Ulid::new().to_string();
            // The last 16 characters of a ULID are random (80 bits); 10 of them are taken.
            format!("{}-{}", &u[16..21], &u[21..26])
        })
        .collect()
}

/// What is stored for a recovery code of `account`: SHA-256 (hex) of the id and the code as
/// typed in any case, with or without its dash or spaces.
pub fn recovery_hash(account: Ulid, code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    crate::token::hash_token(&format!("{account}:{normal}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_matches_its_step_and_its_neighbours_only() {
        let s = new_secret();
        let t = 1_700_000_000_000;
        let code = code_at(&s, t).unwrap();
        let step = t / 1000 / STEP_SECS;
        assert_eq!(matching_step(&s, &code, t), Some(step));
        assert_eq!(matching_step(&s, &code, t + 30_000), Some(step));
        assert_eq!(matching_step(&s, &code, t + 90_000), None);
        assert_eq!(matching_step(&s, "12345", t), None);
    }

    #[test]
    fn the_rfc_6238_test_vector_gives_its_code() {
        // RFC 6238, appendix B: the SHA-1 secret "12345678901234567890" at T = 59 s gives
        // 94287082 in 8 digits, so 287082 in 6.
        let secret = Secret::Raw(b"12345678901234567890".to_vec())
            .to_encoded()
            .to_string();
        assert_eq!(code_at(&secret, 59_000).unwrap(), "287082");
    }

    #[test]
    fn recovery_codes_hash_the_same_however_they_are_typed() {
        let id = Ulid::new();
        let code = &new_recovery_codes(1)[0];
        let typed = code.to_lowercase().replace('-', " ");
        assert_eq!(recovery_hash(id, code), recovery_hash(id, &typed));
        assert_ne!(recovery_hash(id, code), recovery_hash(Ulid::new(), code));
    }
}
