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
