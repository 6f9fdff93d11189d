//! Hashing of bearer tokens (visitor resume tokens, operator session tokens) before they are
//! stored or looked up: only the hash is ever kept, so a copy of the store cannot resume anyone.
//!
//! Its own module so that the engine and `auth` share it without either importing the other.

use sha2::{Digest, Sha256};

/// SHA-256 hex of a token; only the hash is stored.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
