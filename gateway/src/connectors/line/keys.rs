//! The name a LINE person goes by in the shared store: a keyed hash of (channel, LINE user id),
//! HMAC-SHA-256 under the channel secret. Every node has the channel secret already (it checks
//! webhook signatures with it), so every node computes the same name for the same person, and
//! the store (Redis, its backups, anyone who reads its keys) never holds the LINE user id: from
//! the name alone the id cannot be found without the secret.
//!
//! Rotating a channel secret changes every name: a person in a conversation at that moment
//! starts a new conversation with their next message (the old one ends by its idle timeout).

use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;

use super::ChannelCtx;

/// `line:{hex}`: the store key of the person `user` on channel `ch`.
pub fn person_key(ch: &ChannelCtx, user: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(ch.secret.expose_secret().as_bytes())
        .expect("HMAC takes a key of any length");
    for part in ["tsunagu/line/person", &ch.id, user] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    format!("line:{}", hex::encode(mac.finalize().into_bytes()))
}

/// The lease a conversation's sender holds (`P:lease:line:{conversation}`).
pub fn sender_lease(conv: crate::conversation::ConversationId) -> String {
    format!("line:{conv}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn ch(id: &str, secret: &str) -> ChannelCtx {
        ChannelCtx {
            id: id.into(),
            secret: SecretString::from(secret.to_owned()),
            token: SecretString::from("t".to_owned()),
            language: "ja".into(),
            priority: 0,
        }
    }

    #[test]
    fn the_key_is_stable_keyed_and_never_holds_the_user_id() {
        let user = "U4af4980629e6d2b5c1b8b3a5e1f0c2d1";
        let a = person_key(&ch("main", "s1"), user);
        assert_eq!(a, person_key(&ch("main", "s1"), user), "same on every node");
        assert_ne!(
            a,
            person_key(&ch("main", "s2"), user),
            "keyed by the secret"
        );
        assert_ne!(a, person_key(&ch("other", "s1"), user), "per channel");
        assert_ne!(a, person_key(&ch("main", "s1"), "U0"), "per person");
        assert!(!a.contains(user) && !a.to_lowercase().contains(&user[1..9]));
        assert_eq!(a.len(), "line:".len() + 64);
    }
}
