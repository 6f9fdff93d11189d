//! Wall-clock time as the gateway stores it: milliseconds since the Unix epoch.
//!
//! Its own module so that everything that reads the time (the engine, accounts and sessions,
//! escalation records, the start-up heartbeat) depends on this small leaf instead of on the
//! engine. The clock is still read directly; injecting a `Clock` (issue 18) starts here.

pub use crate::protocol::Millis;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}
