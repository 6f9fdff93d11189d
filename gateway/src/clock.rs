//! Wall-clock time as the gateway stores it: milliseconds since the Unix epoch, read through
//! an injected [`Clock`].
//!
//! Its own module so that everything that reads the time (the engine, accounts and sessions,
//! escalation records, the start-up heartbeat) depends on this small leaf instead of on the
//! engine. Production uses [`Clock::system`]; tests use [`Clock::manual`] (moved by hand) or
//! [`Clock::tokio`] (follows tokio's clock, so under `#[tokio::test(start_paused = true)]` the
//! times the code stores move with the timers it sleeps on, and nothing waits on real time).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use crate::protocol::Millis;

/// The wait before the next attempt after `attempts` failed ones: `first`, doubled per
/// further attempt, at most `max` (the alert deliveries' and the case-system webhook's retries).
pub fn doubling_backoff(first: Millis, max: Millis, attempts: u32) -> Millis {
    let doublings = attempts.saturating_sub(1).min(32);
    first.saturating_mul(1u64 << doublings).min(max)
}

/// Milliseconds since the Unix epoch, now, from the system clock. Code that has a [`Clock`]
/// uses it instead; this is for the few places that run before one exists.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// A source of "now" in milliseconds since the Unix epoch. Cheap to clone (one `Arc` at most);
/// every clone reads the same time.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    source: Source,
}

#[derive(Clone, Debug, Default)]
enum Source {
    /// `SystemTime::now()`.
    #[default]
    System,
    /// A value set and moved by the test.
    Manual(Arc<AtomicU64>),
    /// A wall-clock instant taken at creation, plus tokio's elapsed time since then.
    Tokio {
        start_ms: Millis,
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// The system's wall clock (production).
    pub fn system() -> Self {
        Self {
            source: Source::System,
        }
    }

    /// A clock that stands still at `start_ms` until [`Clock::advance`] or [`Clock::set`] move
    /// it (tests).
    pub fn manual(start_ms: Millis) -> Self {
        Self {
            source: Source::Manual(Arc::new(AtomicU64::new(start_ms))),
        }
    }

    /// A clock that starts at the system's wall-clock time and then moves with tokio's clock
    /// (`tokio::time::Instant`): with `tokio::time::pause` it moves only when timers are
    /// advanced, in step with every `sleep` and `interval` (tests).
    pub fn tokio() -> Self {
        Self {
            source: Source::Tokio {
                start_ms: now_ms(),
                start: tokio::time::Instant::now(),
            },
        }
    }

    /// Milliseconds since the Unix epoch, now.
    pub fn now_ms(&self) -> Millis {
        match &self.source {
            Source::System => now_ms(),
            Source::Manual(ms) => ms.load(Ordering::SeqCst),
            Source::Tokio { start_ms, start } => start_ms + start.elapsed().as_millis() as Millis,
        }
    }

    /// Moves a manual clock forward by `ms`. Panics on any other clock: only tests move time.
    pub fn advance(&self, ms: Millis) {
        match &self.source {
            Source::Manual(now) => {
                now.fetch_add(ms, Ordering::SeqCst);
            }
            _ => panic!("only a manual clock can be advanced"),
        }
    }

    /// Sets a manual clock to `ms`. Panics on any other clock.
    pub fn set(&self, ms: Millis) {
        match &self.source {
            Source::Manual(now) => now.store(ms, Ordering::SeqCst),
            _ => panic!("only a manual clock can be set"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_every_clone_sees_it() {
        let clock = Clock::manual(1_000);
        let other = clock.clone();
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(250);
        assert_eq!(other.now_ms(), 1_250);
        other.set(5);
        assert_eq!(clock.now_ms(), 5);
    }

    #[test]
    fn the_system_clock_reads_the_wall_clock() {
        let before = now_ms();
        let read = Clock::system().now_ms();
        assert!(read >= before && read <= now_ms());
    }

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_with_paused_time() {
        let clock = Clock::tokio();
        let start = clock.now_ms();
        tokio::time::sleep(std::time::Duration::from_secs(3_600)).await;
        assert_eq!(clock.now_ms() - start, 3_600_000);
    }
}
