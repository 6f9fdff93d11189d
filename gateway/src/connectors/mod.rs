//! Connectors: channels other than the web widget, each turning a provider's webhooks into
//! [`crate::engine::Engine`] calls and delivering a conversation's log back out through the
//! provider's API instead of a websocket.
//!
//! - [`line`]: LINE official accounts (Messaging API), one or more channels.
//! - [`voice`]: phone calls through a telephony provider with Twilio-compatible voice webhooks.
//!
//! A connector registers itself in the [`crate::engine::Registry`] as the conversation's
//! "visitor socket", so the engine needs nothing channel-specific: it publishes `Outbound` items
//! and the connector reads the log after its cursor, exactly like `ws::visitor`.

pub mod line;
pub mod voice;

/// Sixteen bytes derived from `parts` under `domain` (SHA-256, each part length-prefixed so
/// `["a", "bc"]` and `["ab", "c"]` differ): the same provider ids always give the same bytes.
/// What the connectors' client ids and LINE's retry keys are made of, so a redelivered webhook
/// or a resent message maps to the same id.
pub(crate) fn derived_bytes(domain: &[u8], parts: &[&str]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(domain);
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b
}
