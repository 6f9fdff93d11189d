//! Alert conditions decided on the server (issue 21, item 2): nobody on duty while the service
//! is open, fewer on duty than a threshold, the longest wait over a threshold, overloaded mode,
//! the shared store unreachable from this node, fewer gateway nodes alive than expected,
//! escalation deliveries failing.
//!
//! [`Conditions`] is the pure part: fed an [`Observation`] at a time read from the engine's
//! clock, it says which conditions were raised and which cleared, each once per episode (a
//! condition that stays true is not raised again; its counts are refreshed). The engine
//! (`engine::alerting`) evaluates on every node, so every node's coordinator view shows the
//! same conditions, and lets only one node announce an episode: the holder of the store's
//! `alerts` lease, which also takes a per-episode key (`SET NX`, [`crate::store::Store::claim_episode`])
//! so that a new holder does not announce an episode its predecessor already did.
//!
//! An alert carries a kind, a severity, when it began, a count and its threshold: never
//! anything of a conversation, a LINE id or a phone number.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

mod delivery;

pub use delivery::{AckTimeouts, DeliverySettings, SmtpSettings, StartTls};

/// `[alerts]` in the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AlertSettings {
    /// How often conditions are evaluated.
    pub check_ms: u64,
    /// Fewer operators on duty than this (but at least one) is `few_on_duty`.
    pub min_on_duty: u32,
    /// The longest current wait over this is `long_wait`.
    pub long_wait_ms: u64,
    /// The service's hours in Japan time, `[open_from_hour, open_until_hour)`; staffing
    /// conditions are raised only then. `0`/`24`: always open. `22`/`6` wraps past midnight.
    pub open_from_hour: u8,
    pub open_until_hour: u8,
    /// How long an episode's shared key lives at most (a node that stopped while an episode was
    /// open does not silence the condition for ever).
    pub episode_ttl_ms: u64,
    /// With a shared store: the gateway nodes that should be alive; fewer alive (by their
    /// heartbeats) for `node_down_after_ms` is `node_down`. `0`: not checked.
    pub expected_nodes: u32,
    /// How long fewer nodes than expected must be alive before it is an alert (a rolling
    /// restart's node is back within it).
    pub node_down_after_ms: u64,
    /// Paging the people on call: channels, retries, acknowledgement and escalation.
    #[serde(flatten)]
    pub delivery: DeliverySettings,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            check_ms: 2_000,
            min_on_duty: 2,
            long_wait_ms: 10 * 60_000,
            open_from_hour: 0,
            open_until_hour: 24,
            episode_ttl_ms: 24 * 60 * 60_000,
            expected_nodes: 0,
            node_down_after_ms: 30_000,
            delivery: DeliverySettings::default(),
        }
    }
}

impl AlertSettings {
    /// Whether the service is open at `now` (Japan time, UTC+9).
    pub fn is_open(&self, now: Millis) -> bool {
        let hour = (((now / 1000 + 9 * 3600) / 3600) % 24) as u8;
        let (from, until) = (self.open_from_hour, self.open_until_hour);
        if from == until || (from == 0 && until >= 24) {
            return true;
        }
        if from < until {
            (from..until).contains(&hour)
        } else {
            hour >= from || hour < until
        }
    }
}

/// How urgent an alert is. Channels and acknowledgement timeouts (later slices) go by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What an alert is about: the conditions evaluated here, and the events the engine raises
/// at once (an emergency flag, a help request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Emergency,
    Help,
    NobodyOnDuty,
    FewOnDuty,
    LongWait,
    Overloaded,
    StoreUnreachable,
    NodeDown,
    DeliveryFailing,
}

impl AlertKind {
    /// The conditions [`Conditions`] evaluates (the events are raised by the engine).
    pub const CONDITIONS: [AlertKind; 7] = [
        AlertKind::NobodyOnDuty,
        AlertKind::FewOnDuty,
        AlertKind::LongWait,
        AlertKind::Overloaded,
        AlertKind::StoreUnreachable,
        AlertKind::NodeDown,
        AlertKind::DeliveryFailing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Emergency => "emergency",
            AlertKind::Help => "help",
            AlertKind::NobodyOnDuty => "nobody_on_duty",
            AlertKind::FewOnDuty => "few_on_duty",
            AlertKind::LongWait => "long_wait",
            AlertKind::Overloaded => "overloaded",
            AlertKind::StoreUnreachable => "store_unreachable",
            AlertKind::NodeDown => "node_down",
            AlertKind::DeliveryFailing => "delivery_failing",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            AlertKind::Emergency | AlertKind::NobodyOnDuty | AlertKind::StoreUnreachable => {
                Severity::Critical
            }
            AlertKind::Help
            | AlertKind::NodeDown
            | AlertKind::FewOnDuty
            | AlertKind::LongWait
            | AlertKind::DeliveryFailing => Severity::Warning,
            AlertKind::Overloaded => Severity::Info,
        }
    }

    /// Whether one node's view decides it (the store unreachable from this node): announced by
    /// that node, with no shared key (the store is what it cannot reach).
    pub fn is_local(self) -> bool {
        self == AlertKind::StoreUnreachable
    }
}

/// The staffing and queue numbers conditions are decided on (from the dashboard snapshot).
#[derive(Debug, Clone, Copy, Default)]
pub struct Staffing {
    pub on_duty: u32,
    pub waiting: u32,
    pub longest_wait_ms: u64,
    pub overloaded: bool,
}

/// What the engine saw at one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    pub store_reachable: bool,
    /// `None` when the store could not be read: staffing conditions stay as they were.
    pub staffing: Option<Staffing>,
    /// Escalation records whose delivery to the case system is failing (waiting for a retry).
    pub failing_deliveries: u32,
    /// Gateway nodes alive by their heartbeats in the shared store; `None`: one process, or
    /// the store could not be read (the condition stays as it was).
    pub live_nodes: Option<u32>,
}

/// A condition that holds: since when, and the count it is about (on duty, the longest wait
/// in seconds, failing deliveries) with the threshold where there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveAlert {
    pub kind: AlertKind,
    pub severity: Severity,
    pub since: Millis,
    pub value: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u64>,
}

/// A change a evaluation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Raised(ActiveAlert),
    /// The condition ended; `since` is when its episode began.
    Cleared {
        kind: AlertKind,
        since: Millis,
        at: Millis,
    },
}

/// A condition that holds: its count and threshold.
type Holds = (u64, Option<u64>);

/// The conditions that hold now, each with its episode's start.
#[derive(Debug, Default)]
pub struct Conditions {
    active: BTreeMap<AlertKind, ActiveAlert>,
    /// Since when fewer nodes than expected have been alive (not yet an alert before
    /// `node_down_after_ms`).
    nodes_short_since: Option<Millis>,
}

impl Conditions {
    /// Decides each condition from `obs` at `now`: a condition that begins is raised once, one
    /// that ends is cleared, one that goes on keeps its start and takes the new count.
    pub fn evaluate(
        &mut self,
        cfg: &AlertSettings,
        obs: &Observation,
        now: Millis,
    ) -> Vec<Transition> {
        let mut holds: Vec<(AlertKind, Option<Holds>)> = Vec::new();
        holds.push((
            AlertKind::StoreUnreachable,
            (!obs.store_reachable).then_some((1, None)),
        ));
        holds.push((
            AlertKind::DeliveryFailing,
            (obs.failing_deliveries > 0).then_some((obs.failing_deliveries.into(), None)),
        ));
        if let Some(s) = obs.staffing {
            let open = cfg.is_open(now);
            holds.push((
                AlertKind::NobodyOnDuty,
                (open && s.on_duty == 0).then_some((0, None)),
            ));
            holds.push((
                AlertKind::FewOnDuty,
                (open && s.on_duty > 0 && s.on_duty < cfg.min_on_duty)
                    .then_some((s.on_duty.into(), Some(cfg.min_on_duty.into()))),
            ));
            holds.push((
                AlertKind::LongWait,
                (s.waiting > 0 && s.longest_wait_ms > cfg.long_wait_ms)
                    .then_some((s.longest_wait_ms / 1000, Some(cfg.long_wait_ms / 1000))),
            ));
            holds.push((AlertKind::Overloaded, s.overloaded.then_some((1, None))));
        }
        if let Some(live) = obs.live_nodes {
            let short = cfg.expected_nodes > 0 && live < cfg.expected_nodes;
            let since = match (short, self.nodes_short_since) {
                (false, _) => None,
                (true, None) => Some(now),
                (true, Some(t)) => Some(t),
            };
            self.nodes_short_since = since;
            let down = since.is_some_and(|t| now.saturating_sub(t) >= cfg.node_down_after_ms);
            holds.push((
                AlertKind::NodeDown,
                down.then_some((live.into(), Some(cfg.expected_nodes.into()))),
            ));
        }
        let mut out = Vec::new();
        for (kind, now_holds) in holds {
            match (self.active.get_mut(&kind), now_holds) {
                (Some(a), Some((value, threshold))) => {
                    a.value = value;
                    a.threshold = threshold;
                }
                (None, Some((value, threshold))) => {
                    let a = ActiveAlert {
                        kind,
                        severity: kind.severity(),
                        since: now,
                        value,
                        threshold,
                    };
                    self.active.insert(kind, a.clone());
                    out.push(Transition::Raised(a));
                }
                (Some(_), None) => {
                    let a = self.active.remove(&kind).expect("present");
                    out.push(Transition::Cleared {
                        kind,
                        since: a.since,
                        at: now,
                    });
                }
                (None, None) => {}
            }
        }
        out
    }

    /// The conditions that hold, most severe first.
    pub fn active(&self) -> Vec<ActiveAlert> {
        let mut v: Vec<ActiveAlert> = self.active.values().cloned().collect();
        v.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.since.cmp(&b.since)));
        v
    }
}

/// The shared key of a condition's episode (one condition has one episode at a time).
pub fn episode_key(kind: AlertKind) -> String {
    format!("alert:{}", kind.as_str())
}

#[cfg(test)]
mod tests;
