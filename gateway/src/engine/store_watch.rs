//! Whether this node has been cut off from the shared store for long enough that its clients
//! must go elsewhere (issue 19: partitions).
//!
//! A node that cannot reach Redis acknowledges nothing (every step is a write to Redis), but
//! its sockets would stay open and its people would keep retrying `unavailable` on a node that
//! cannot serve them, while the other nodes, which can, take this node's heartbeat
//! ([`crate::store::redis::NODE_TTL_SECS`], 6 s) for expired and start its people's grace
//! periods (after which a person still retrying here would find their conversation ended). So
//! each node with a shared store pings it every [`PROBE_INTERVAL`], each ping given at most
//! [`PROBE_TIMEOUT`], and once no ping has been answered for [`CUTOFF_MS`] the engine closes its
//! websockets with 1001 ("reconnect to another node and resume"); the load balancer, seeing
//! `/readyz` answer 503, sends them to a node that can serve them. A probe of its own, not the
//! heartbeat: a heartbeat that reaps a stopped node's people can take long on a healthy store,
//! and one against an unreachable store can hang for several time-outs in a row (8 s measured).
//! The rule itself is a plain, tested function of the probes' outcomes and the time.

use std::time::Duration;

use crate::protocol::Millis;

/// How often the store is probed (one `PING`).
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// A probe not answered within this counts as failed (the store's own response time-out is
/// 2 s, and a reconnect can add its connect time-out).
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

/// How long the store may stay unanswered before the clients are told to go elsewhere: half a
/// node's heartbeat lifetime, so they have moved before the other nodes take this node for
/// dead, and longer than a Sentinel failover's usual gap with a short
/// `down-after-milliseconds` (about 2.3 s measured), so a failover that every node sees alike
/// does not usually move everyone (if it does, they resume on a node, losing nothing).
pub const CUTOFF_MS: Millis = 3_000;

/// What to do after a failed heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not long enough yet: keep the sockets (sends are refused as `unavailable`).
    Hold,
    /// Close every websocket with 1001; `first` the first time since the store was last
    /// reached (to log the change once).
    GoElsewhere { first: bool },
}

/// The probes' recent history.
#[derive(Debug, Default)]
pub struct StoreWatch {
    /// When a probe last reached the store; before the first success, the first failure.
    last_ok: Option<Millis>,
    /// Whether the clients were told since the store was last reached.
    told: bool,
}

impl StoreWatch {
    /// A probe that reached the store at `now`.
    pub fn reached(&mut self, now: Millis) {
        self.last_ok = Some(now);
        self.told = false;
    }

    /// A probe that failed (or timed out), noticed at `now`.
    pub fn failed(&mut self, now: Millis) -> Verdict {
        let since = *self.last_ok.get_or_insert(now);
        if now.saturating_sub(since) < CUTOFF_MS {
            return Verdict::Hold;
        }
        let first = !self.told;
        self.told = true;
        Verdict::GoElsewhere { first }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_told_to_go_elsewhere_only_after_the_store_was_unreachable_for_the_cutoff() {
        let mut w = StoreWatch::default();
        w.reached(10_000);
        assert_eq!(w.failed(11_000), Verdict::Hold);
        assert_eq!(w.failed(12_999), Verdict::Hold);
        assert_eq!(w.failed(13_000), Verdict::GoElsewhere { first: true });
        assert_eq!(w.failed(14_000), Verdict::GoElsewhere { first: false });
        // Reached again: the clock starts over.
        w.reached(15_000);
        assert_eq!(w.failed(16_000), Verdict::Hold);
        assert_eq!(w.failed(18_500), Verdict::GoElsewhere { first: true });
    }

    #[test]
    fn a_store_never_reached_counts_from_the_first_failure() {
        let mut w = StoreWatch::default();
        assert_eq!(w.failed(50_000), Verdict::Hold);
        assert_eq!(w.failed(52_000), Verdict::Hold);
        assert_eq!(w.failed(53_000), Verdict::GoElsewhere { first: true });
    }
}
