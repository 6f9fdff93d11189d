//! Statistics without people: the coordinator view's snapshot, today's counts (and the metrics
//! each change of state feeds), help alerts and the wait estimate. Nothing here names a person
//! or keeps anything of a conversation's content.

use std::collections::BTreeMap;

use serde::Serialize;
use ulid::Ulid;

use super::Engine;
use crate::conversation::{ConversationId, StateKind};
use crate::metrics::Gauges;
use crate::protocol::{Millis, Presence};
use crate::store::{Applied, StoreError};

/// Days roll over at midnight Japan time (UTC+9, no daylight saving).
const JST_OFFSET_MS: u64 = 9 * 60 * 60 * 1000;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;
/// Weight of the newest closed conversation in the moving average of handling time.
const HANDLE_EWMA_ALPHA: f64 = 0.1;
/// Acknowledged alerts are dropped after an hour; at most this many alerts are kept.
const ALERT_KEEP_MS: u64 = 60 * 60 * 1000;
const MAX_ALERTS: usize = 200;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Today {
    #[serde(skip)]
    pub day: u64,
    pub started: u64,
    pub closed: u64,
    pub abandoned: u64,
}

/// Help and emergency alerts live in their own module so the cluster bus can carry them
/// without depending on the engine.
pub use crate::alert::Alert;

#[derive(Debug, Default)]
pub struct StatsState {
    pub today: Today,
    pub alerts: Vec<Alert>,
    handle_ewma_ms: Option<f64>,
}

/// Days since the epoch in Japan time: today's counters roll over at midnight JST.
pub fn jst_day(now: Millis) -> u64 {
    (now + JST_OFFSET_MS) / DAY_MS
}

impl StatsState {
    pub fn roll_day(&mut self, now: Millis) {
        let day = jst_day(now);
        if day != self.today.day {
            self.today = Today {
                day,
                ..Today::default()
            };
        }
    }

    pub fn observe_handle_time(&mut self, ms: u64) {
        let ms = ms as f64;
        self.handle_ewma_ms = Some(match self.handle_ewma_ms {
            None => ms,
            Some(avg) => avg + HANDLE_EWMA_ALPHA * (ms - avg),
        });
    }

    /// How long a conversation takes here (a moving average); `None` until one has closed.
    pub fn handle_ms(&self) -> Option<f64> {
        self.handle_ewma_ms
    }

    /// A rough wait in minutes for someone at `position` (1-based) with `on_duty_capacity`
    /// slots on duty, from how long conversations have taken here. `None` when there is nothing
    /// to base it on: nobody on duty, or no conversation has closed yet. (A made-up default of
    /// 15 minutes a conversation told a person who arrived while an operator was free, before
    /// the offer reached them, to expect about 15 minutes; saying nothing is truer, and the
    /// offer follows at once.)
    pub fn estimate_wait(&self, position: u32, on_duty_capacity: u32) -> Option<u32> {
        if on_duty_capacity == 0 {
            return None;
        }
        let handle = self.handle_ms()?;
        let rounds = position.div_ceil(on_duty_capacity) as f64;
        Some(((rounds * handle) / 60_000.0).ceil().max(1.0) as u32)
    }

    /// Keeps an alert (raised here or, with several nodes, on another node).
    pub fn raise(&mut self, alert: Alert) {
        if self.alerts.iter().any(|a| a.id == alert.id) {
            return;
        }
        let now = alert.at;
        self.alerts.retain(|a| {
            a.acknowledged_at
                .is_none_or(|at| now.saturating_sub(at) < ALERT_KEEP_MS)
        });
        if self.alerts.len() >= MAX_ALERTS {
            self.alerts.remove(0);
        }
        self.alerts.push(alert);
    }

    pub fn raise_help(
        &mut self,
        operator: &str,
        conversation: ConversationId,
        now: Millis,
    ) -> Alert {
        let alert = Alert {
            id: Ulid::new(),
            kind: "help".into(),
            operator: operator.to_owned(),
            conversation,
            category: None,
            at: now,
            acknowledged_by: None,
            acknowledged_at: None,
        };
        self.raise(alert.clone());
        alert
    }

    pub fn raise_emergency(
        &mut self,
        operator: Option<&str>,
        conversation: ConversationId,
        category: &str,
        now: Millis,
    ) -> Alert {
        let alert = Alert {
            id: Ulid::new(),
            kind: "emergency".into(),
            operator: operator.unwrap_or_default().to_owned(),
            conversation,
            category: Some(category.to_owned()),
            at: now,
            acknowledged_by: None,
            acknowledged_at: None,
        };
        self.raise(alert.clone());
        alert
    }

    /// An alert's conversation and whether it is an emergency; `None` if there is no such alert.
    pub fn alert(&self, id: Ulid) -> Option<(ConversationId, bool)> {
        let a = self.alerts.iter().find(|a| a.id == id)?;
        Some((a.conversation, a.kind == "emergency"))
    }

    /// Acknowledges an alert at `now` (the first coordinator's name sticks). Returns its
    /// conversation and whether it was an emergency; `None` if there is no such alert.
    pub fn ack_alert(&mut self, id: Ulid, by: &str, now: Millis) -> Option<(ConversationId, bool)> {
        let a = self.alerts.iter_mut().find(|a| a.id == id)?;
        if a.acknowledged_by.is_none() {
            a.acknowledged_by = Some(by.to_owned());
            a.acknowledged_at = Some(now);
        }
        Some((a.conversation, a.kind == "emergency"))
    }

    /// Who acknowledged the latest emergency alert of a conversation, if anyone.
    pub fn emergency_acknowledged_by(&self, conversation: ConversationId) -> Option<String> {
        self.alerts
            .iter()
            .rev()
            .find(|a| a.kind == "emergency" && a.conversation == conversation)
            .and_then(|a| a.acknowledged_by.clone())
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct OperatorCounts {
    pub on_duty: u32,
    pub away: u32,
    pub off_duty: u32,
    /// On duty and connected with at least one conversation.
    pub busy: u32,
    /// Free conversation slots among on-duty, connected operators.
    pub free_capacity: u32,
    /// Operators whose console is disconnected (within their grace period).
    pub disconnected: u32,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ConversationCounts {
    pub queued: u32,
    pub offered: u32,
    pub active: u32,
    pub wrap_up: u32,
}

/// What the coordinator view shows, and what `/metrics` exports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Dashboard {
    pub waiting: u32,
    pub waiting_by_channel: BTreeMap<&'static str, u32>,
    pub longest_wait_ms: u64,
    pub operators: OperatorCounts,
    pub conversations: ConversationCounts,
    pub today: Today,
    pub alerts: Vec<Alert>,
    /// Open emergencies and who is on them.
    pub emergencies: Vec<OpenEmergency>,
    /// Overloaded mode (waiting people are told about other helplines).
    pub overloaded: bool,
    /// Alert conditions holding now, decided on the server (`alerting`), most severe first.
    pub conditions: Vec<crate::alerting::ActiveAlert>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpenEmergency {
    pub conversation: ConversationId,
    pub operator: Option<String>,
    pub categories: Vec<String>,
    pub raised_at: Millis,
    pub acknowledged_by: Option<String>,
}

/// The gauges `/metrics` exports, from the same snapshot the coordinator view shows.
impl From<&Dashboard> for Gauges {
    fn from(d: &Dashboard) -> Self {
        let c = &d.conversations;
        let o = &d.operators;
        Gauges {
            waiting: d.waiting,
            longest_wait_ms: d.longest_wait_ms,
            conversations: [
                ("queued", c.queued),
                ("offered", c.offered),
                ("active", c.active),
                ("wrap_up", c.wrap_up),
            ],
            operators: [
                ("on_duty", o.on_duty),
                ("away", o.away),
                ("off_duty", o.off_duty),
                ("busy", o.busy),
                ("disconnected", o.disconnected),
            ],
            alerts_active: crate::alerting::AlertKind::CONDITIONS
                .iter()
                .map(|k| (k.as_str(), d.conditions.iter().any(|c| c.kind == *k)))
                .collect(),
            store_up: true,
            escalation_delivery_failures: 0,
            escalation_deliveries_failing: 0,
        }
    }
}

impl Engine {
    /// One consistent-enough picture of the helpline now.
    pub async fn dashboard(&self) -> Result<Dashboard, StoreError> {
        let now = self.now_ms();
        let convs = self.store.conversations().await?;
        let ops = self.store.operators().await?;
        let mut d = Dashboard {
            overloaded: self.is_overloaded(),
            ..Dashboard::default()
        };
        let mut load: BTreeMap<Ulid, u32> = BTreeMap::new();
        for c in &convs {
            match c.state.kind() {
                StateKind::Queued | StateKind::Offered => {
                    d.waiting += 1;
                    *d.waiting_by_channel.entry(c.channel.as_str()).or_default() += 1;
                    d.longest_wait_ms = d.longest_wait_ms.max(now.saturating_sub(c.queued_at));
                    if c.state.kind() == StateKind::Queued {
                        d.conversations.queued += 1;
                    } else {
                        d.conversations.offered += 1;
                    }
                }
                StateKind::Active => d.conversations.active += 1,
                StateKind::WrapUp => d.conversations.wrap_up += 1,
                _ => {}
            }
            if let Some(op) = c.state.operator() {
                let capacity = ops.iter().find(|o| o.id == op).map_or(1, |o| o.capacity);
                *load.entry(op).or_default() += c.weight_on(capacity);
            }
            if let Some(e) = c.emergency.as_ref().filter(|e| e.open) {
                d.emergencies.push(OpenEmergency {
                    conversation: c.id,
                    operator: c.operator_name.clone(),
                    categories: e.categories.clone(),
                    raised_at: e.raised_at,
                    acknowledged_by: None,
                });
            }
        }
        for o in &ops {
            match o.presence {
                Presence::OnDuty => d.operators.on_duty += 1,
                Presence::Away => d.operators.away += 1,
                Presence::OffDuty => d.operators.off_duty += 1,
            }
            if !o.connected {
                d.operators.disconnected += 1;
                continue;
            }
            let l = load.get(&o.id).copied().unwrap_or(0);
            if o.presence == Presence::OnDuty {
                if l > 0 {
                    d.operators.busy += 1;
                }
                d.operators.free_capacity += o.capacity.saturating_sub(l);
            }
        }
        let shared = self.store.today_counts(jst_day(now)).await.ok().flatten();
        let mut stats = self.stats();
        stats.roll_day(now);
        d.today = stats.today.clone();
        if let Some(counts) = shared {
            // Every node's counts, from the shared store.
            let get = |k: &str| counts.get(k).copied().unwrap_or(0);
            d.today.started = get("started");
            d.today.closed = get("closed");
            d.today.abandoned = get("abandoned");
        }
        d.alerts = stats.alerts.clone();
        for e in &mut d.emergencies {
            e.acknowledged_by = stats.emergency_acknowledged_by(e.conversation);
        }
        d.emergencies.sort_by_key(|e| e.raised_at);
        drop(stats);
        d.conditions = self.active_conditions();
        Ok(d)
    }

    /// A rough wait in minutes for someone at `position` (1-based): see
    /// [`StatsState::estimate_wait`].
    pub(crate) fn estimate_wait(&self, position: u32, on_duty_capacity: u32) -> Option<u32> {
        self.stats().estimate_wait(position, on_duty_capacity)
    }

    /// A conversation closed after an answer: counts its handling time into the store's
    /// moving average, which every node estimates waits from, and takes the average back.
    pub(super) async fn share_handle_time(&self, a: &Applied, now: Millis) {
        let closed = a.before.state.kind() != a.after.state.kind()
            && a.after.state.kind() == StateKind::Closed;
        let Some(answered) = a.after.answered_at.filter(|_| closed) else {
            return;
        };
        match self
            .store
            .observe_handle_time(now.saturating_sub(answered))
            .await
        {
            Ok(avg) => self.stats().handle_ewma_ms = Some(avg),
            Err(e) => tracing::warn!(error = %e, "could not share the handling time"),
        }
    }

    /// Takes the handling time every node shares (another node's closes move it), so every
    /// node tells a waiting person the same wait. Kept as it was if the store cannot say.
    pub(super) async fn refresh_handle_time(&self) {
        if let Ok(Some(avg)) = self.store.handle_time().await {
            self.stats().handle_ewma_ms = Some(avg);
        }
    }

    /// Counts an event of today in the shared store, if there is one.
    pub(super) async fn count_today(&self, now: Millis, event: &'static str) {
        if let Err(e) = self.store.count_today(jst_day(now), event).await {
            tracing::warn!(error = %e, event, "could not count in the shared store");
        }
    }

    /// Metrics and today's counts for a change of state; returns the counted event, if any.
    pub(super) fn record_transition(&self, a: &Applied, now: Millis) -> Option<&'static str> {
        let (before, after) = (a.before.state.kind(), a.after.state.kind());
        if before == after {
            return None;
        }
        tracing::info!(
            conversation = %a.after.id,
            from = before.as_str(),
            to = after.as_str(),
            log_entries = a.appended.len(),
            "conversation transition"
        );
        use crate::conversation::StateKind as K;
        if after == K::Active && a.before.answered_at.is_none() {
            let waited = now.saturating_sub(a.after.created_at);
            self.metrics.wait_seconds.observe(waited as f64 / 1000.0);
        }
        if after.is_terminal() {
            let mut stats = self.stats();
            stats.roll_day(now);
            match after {
                K::Closed => {
                    stats.today.closed += 1;
                    if let Some(answered) = a.after.answered_at {
                        stats.observe_handle_time(now.saturating_sub(answered));
                    }
                }
                _ => {
                    stats.today.abandoned += 1;
                    if a.after.answered_at.is_none() {
                        let waited = now.saturating_sub(a.after.created_at);
                        self.metrics
                            .abandoned_wait_seconds
                            .observe(waited as f64 / 1000.0);
                    }
                }
            }
            self.metrics.ended(after.as_str());
            return Some(if after == K::Closed {
                "closed"
            } else {
                "abandoned"
            });
        }
        None
    }
}

#[cfg(test)]
mod tests;
