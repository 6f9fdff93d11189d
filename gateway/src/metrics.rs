//! Prometheus metrics, one registry per app (no globals, so tests can run apps side by side).
//! Counters are bumped where things happen; gauges are refreshed from the dashboard snapshot at
//! scrape time. Labels are closed sets (state, channel, sender, code): never an id or any text.
//!
//! This module depends on nothing of the engine's: the engine reports to it (counters) and turns
//! its dashboard into [`Gauges`] at scrape time (`impl From<&Dashboard> for Gauges`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::protocol::Side;

type Labels = Vec<(&'static str, &'static str)>;

/// The gauges' values at one scrape, taken from the engine's dashboard snapshot.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// People waiting (queued or offered).
    pub waiting: u32,
    pub longest_wait_ms: u64,
    /// Conversations by state label (`queued`, `offered`, `active`, `wrap_up`).
    pub conversations: [(&'static str, u32); 4],
    /// Operators by state label (`on_duty`, `away`, `off_duty`, `busy`, `disconnected`).
    pub operators: [(&'static str, u32); 5],
    /// Alert conditions by kind, whether each holds now (`alerting::AlertKind`).
    pub alerts_active: Vec<(&'static str, bool)>,
    /// Whether the dashboard could be read from the store; when not, the queue and staffing
    /// gauges keep their last values and `tsunagu_store_up` is 0.
    pub store_up: bool,
    /// Failed escalation deliveries since start, and records whose delivery is failing now.
    pub escalation_delivery_failures: u64,
    pub escalation_deliveries_failing: u32,
}

pub struct Metrics {
    registry: Registry,
    queue_length: Gauge,
    longest_wait: Gauge<f64, AtomicU64>,
    conversations: Family<Labels, Gauge>,
    operators: Family<Labels, Gauge>,
    connections: Family<Labels, Gauge>,
    messages: Family<Labels, Counter>,
    /// `messages{from="visitor"}` and `{from="operator"}`, looked up once: every message
    /// counts, and a family lookup builds and hashes its labels each time.
    messages_from: [Counter; 2],
    started: Family<Labels, Counter>,
    ended: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    emergencies: Counter,
    alerts_raised: Family<Labels, Counter>,
    alerts_active: Family<Labels, Gauge>,
    store_up: Gauge,
    escalation_delivery_failures: Counter,
    escalation_deliveries_failing: Gauge,
    /// Seconds from arrival to an operator answering.
    pub wait_seconds: Histogram,
    /// Seconds people waited before leaving unanswered.
    pub abandoned_wait_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tsunagu");
        let m = Metrics {
            queue_length: Gauge::default(),
            longest_wait: Gauge::default(),
            conversations: Family::default(),
            operators: Family::default(),
            connections: Family::default(),
            messages: Family::default(),
            messages_from: Default::default(),
            started: Family::default(),
            ended: Family::default(),
            errors: Family::default(),
            emergencies: Counter::default(),
            alerts_raised: Family::default(),
            alerts_active: Family::default(),
            store_up: Gauge::default(),
            escalation_delivery_failures: Counter::default(),
            escalation_deliveries_failing: Gauge::default(),
            // 1 s … about 4.5 h in doublings.
            wait_seconds: Histogram::new(exponential_buckets(1.0, 2.0, 15)),
            abandoned_wait_seconds: Histogram::new(exponential_buckets(1.0, 2.0, 15)),
            registry: Registry::default(),
        };
        registry.register(
            "queue_length",
            "People waiting (queued or being offered)",
            m.queue_length.clone(),
        );
        registry.register(
            "queue_longest_wait_seconds",
            "Longest current wait in the queue",
            m.longest_wait.clone(),
        );
        registry.register(
            "conversations",
            "Live conversations by state",
            m.conversations.clone(),
        );
        registry.register(
            "operators",
            "Operators by presence (disconnected counted apart)",
            m.operators.clone(),
        );
        registry.register(
            "websocket_connections",
            "Open websocket connections by kind",
            m.connections.clone(),
        );
        registry.register(
            "messages",
            "Chat messages stored, by sender",
            m.messages.clone(),
        );
        registry.register(
            "conversations_started",
            "Conversations started, by channel",
            m.started.clone(),
        );
        registry.register(
            "conversations_ended",
            "Conversations ended, by outcome",
            m.ended.clone(),
        );
        registry.register(
            "errors",
            "Errors sent to clients, by code",
            m.errors.clone(),
        );
        registry.register(
            "emergency_flags",
            "Emergency flags recorded",
            m.emergencies.clone(),
        );
        registry.register(
            "alerts_raised",
            "Alert episodes announced by this node, by kind and severity",
            m.alerts_raised.clone(),
        );
        registry.register(
            "alerts_active",
            "Alert conditions holding now, by kind (1 holds, 0 not)",
            m.alerts_active.clone(),
        );
        registry.register(
            "store_up",
            "Whether this node could read the store at the last scrape (1) or not (0)",
            m.store_up.clone(),
        );
        registry.register(
            "escalation_delivery_failures",
            "Failed deliveries of escalation records to the case system",
            m.escalation_delivery_failures.clone(),
        );
        registry.register(
            "escalation_deliveries_failing",
            "Escalation records whose delivery is failing now (waiting for a retry)",
            m.escalation_deliveries_failing.clone(),
        );
        registry.register(
            "abandoned_wait_seconds",
            "Time people waited before leaving unanswered",
            m.abandoned_wait_seconds.clone(),
        );
        registry.register(
            "wait_seconds",
            "Time from arrival until an operator answered",
            m.wait_seconds.clone(),
        );
        let messages_from = ["visitor", "operator"]
            .map(|from| m.messages.get_or_create(&vec![("from", from)]).clone());
        Metrics {
            registry,
            messages_from,
            ..m
        }
    }

    pub fn message(&self, from: Side) {
        let i = match from {
            Side::Visitor => 0,
            // Only people send chat messages; a system one would count with the operators'.
            Side::Operator | Side::System => 1,
        };
        self.messages_from[i].inc();
    }

    pub fn started(&self, channel: &'static str) {
        self.started
            .get_or_create(&vec![("channel", channel)])
            .inc();
    }

    pub fn ended(&self, outcome: &'static str) {
        self.ended.get_or_create(&vec![("outcome", outcome)]).inc();
    }

    pub fn emergency(&self) {
        self.emergencies.inc();
    }

    /// An alert episode announced.
    pub fn alert_raised(&self, kind: &'static str, severity: &'static str) {
        self.alerts_raised
            .get_or_create(&vec![("kind", kind), ("severity", severity)])
            .inc();
    }

    pub fn error(&self, code: &'static str) {
        self.errors.get_or_create(&vec![("code", code)]).inc();
    }

    pub fn connection(&self, kind: &'static str, delta: i64) {
        self.connections
            .get_or_create(&vec![("kind", kind)])
            .inc_by(delta);
    }

    /// Refreshes gauges from a snapshot and renders the text exposition format.
    pub fn render(&self, snapshot: impl Into<Gauges>) -> String {
        let g = snapshot.into();
        self.store_up.set(g.store_up.into());
        if g.store_up {
            self.queue_length.set(g.waiting.into());
            self.longest_wait.set(g.longest_wait_ms as f64 / 1000.0);
            for (state, n) in g.conversations {
                self.conversations
                    .get_or_create(&vec![("state", state)])
                    .set(n.into());
            }
            for (state, n) in g.operators {
                self.operators
                    .get_or_create(&vec![("state", state)])
                    .set(n.into());
            }
        }
        for (kind, on) in g.alerts_active {
            self.alerts_active
                .get_or_create(&vec![("kind", kind)])
                .set(on.into());
        }
        // A counter only goes up: add what happened since the last scrape.
        let seen = self.escalation_delivery_failures.get();
        self.escalation_delivery_failures
            .inc_by(g.escalation_delivery_failures.saturating_sub(seen));
        self.escalation_deliveries_failing
            .set(g.escalation_deliveries_failing.into());
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
