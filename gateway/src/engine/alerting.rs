//! The engine's side of server-side alerts (`crate::alerting`): evaluating conditions from the
//! dashboard snapshot on every node, announcing each episode once across the cluster, and
//! announcing the events raised at once (an emergency flag, a help request).
//!
//! Every node evaluates (its coordinator view shows what holds); only the holder of the
//! store's `alerts` lease announces a condition, and only after taking the episode's shared key
//! (`SET NX`), which it deletes when the condition clears: a node that takes the lease over in
//! the middle of an episode finds the key taken and stays quiet. The store being unreachable is
//! a fact of one node, announced by that node. Announcing is a log line at warn and a metric
//! today; the delivery channels of issue 21 hang off [`Engine::announce`].

use crate::alerting::{episode_key, ActiveAlert, AlertKind, Observation, Staffing, Transition};
use crate::conversation::ConversationId;

use super::Engine;

/// The lease that decides which node announces conditions.
const LEASE: &str = "alerts";

impl Engine {
    /// The conditions holding now, as this node last evaluated them.
    pub fn active_conditions(&self) -> Vec<ActiveAlert> {
        self.conditions().active()
    }

    fn conditions(&self) -> std::sync::MutexGuard<'_, crate::alerting::Conditions> {
        self.conditions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Evaluates the alert conditions now and announces what began (once per episode across
    /// the cluster); returns the changes this node saw.
    pub async fn check_alerts(&self) -> Vec<Transition> {
        let now = self.now_ms();
        let staffing = match self.dashboard().await {
            Ok(d) => Some(Staffing {
                on_duty: d.operators.on_duty,
                waiting: d.waiting,
                longest_wait_ms: d.longest_wait_ms,
                overloaded: d.overloaded,
            }),
            Err(_) => None,
        };
        let live_nodes = if self.alert_cfg.expected_nodes > 0 && staffing.is_some() {
            self.store.live_nodes().await.ok().flatten()
        } else {
            None
        };
        let obs = Observation {
            live_nodes,
            store_reachable: staffing.is_some(),
            staffing,
            failing_deliveries: self
                .escalations
                .as_ref()
                .map_or(0, |e| e.failing_deliveries()),
        };
        let cfg = crate::alerting::AlertSettings {
            min_on_duty: self.min_on_duty(),
            ..self.alert_cfg.clone()
        };
        let changes = self.conditions().evaluate(&cfg, &obs, now);
        if changes.is_empty() {
            return changes;
        }
        let leader: bool = self
            .store
            .lead(LEASE, self.alert_cfg.check_ms.saturating_mul(3))
            .await
            .unwrap_or_default();
        for t in &changes {
            match t {
                Transition::Raised(a) if a.kind.is_local() => {
                    self.announce(
                        a.kind,
                        None,
                        None,
                        None,
                        a.value,
                        obs.staffing.map(|s| s.waiting),
                    )
                    .await
                }
                Transition::Raised(a) if leader => {
                    match self
                        .store
                        .claim_episode(&episode_key(a.kind), self.alert_cfg.episode_ttl_ms)
                        .await
                    {
                        Ok(true) => {
                            self.announce(
                                a.kind,
                                None,
                                None,
                                None,
                                a.value,
                                obs.staffing.map(|s| s.waiting),
                            )
                            .await
                        }
                        Ok(false) => {
                            tracing::debug!(alert = a.kind.as_str(), "episode already announced")
                        }
                        Err(e) => {
                            tracing::warn!(alert = a.kind.as_str(), error = %e, "could not take the episode key; announcing")
                        }
                    }
                }
                Transition::Raised(_) => {}
                Transition::Cleared { kind, since, at } => {
                    if leader && !kind.is_local() {
                        if let Err(e) = self.store.end_episode(&episode_key(*kind)).await {
                            tracing::warn!(alert = kind.as_str(), error = %e, "could not end the episode key");
                        }
                    }
                    tracing::info!(
                        alert = kind.as_str(),
                        lasted_ms = at.saturating_sub(*since),
                        "alert cleared"
                    );
                }
            }
        }
        changes
    }

    /// An emergency flag was raised on `conv`: announced at once, once per escalation record
    /// (a retry, a second flag on the same conversation or a concurrent one adds nothing).
    pub(super) async fn alert_emergency(
        &self,
        alert: ulid::Ulid,
        conv: ConversationId,
        record: ulid::Ulid,
        category: &str,
    ) {
        let first = self
            .store
            .claim_episode(
                &format!("emergency:{record}"),
                self.alert_cfg.episode_ttl_ms,
            )
            .await
            .unwrap_or(true);
        if first {
            self.announce(
                AlertKind::Emergency,
                Some(alert),
                Some(conv),
                Some(category),
                1,
                None,
            )
            .await;
        }
    }

    /// Announces an alert: a log line at warn with its kind, severity, the conversation's id
    /// (for the link to the console) and category where there are, and the count; never
    /// content, a LINE id or a phone number. With alert delivery (`crate::oncall`), the alert is
    /// recorded under `id` (the coordinator view's alert id for help and emergencies, so one
    /// acknowledgement covers both) and paged to the people on call, with how many wait
    /// (`waiting`, read from the queue when not given).
    pub(super) async fn announce(
        &self,
        kind: AlertKind,
        id: Option<ulid::Ulid>,
        conv: Option<ConversationId>,
        category: Option<&str>,
        value: u64,
        waiting: Option<u32>,
    ) {
        let severity = kind.severity().as_str();
        self.metrics.alert_raised(kind.as_str(), severity);
        tracing::warn!(
            alert = kind.as_str(),
            severity,
            conversation = conv.map(|c| c.to_string()),
            category,
            value,
            "alert raised"
        );
        let Some(oncall) = self.oncall.clone() else {
            return;
        };
        let waiting = match waiting {
            Some(w) => w,
            None => self.store.queue_places(&[]).await.map_or(0, |p| p.len),
        };
        let alert = crate::oncall::NewAlert {
            // (Not `unwrap_or_default`: a ULID's default is the nil id.)
            id: match id {
                Some(id) => id,
                None => ulid::Ulid::new(),
            },
            kind,
            category: category.map(str::to_owned),
            value,
            waiting,
        };
        tokio::spawn(async move { oncall.raise(alert).await });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::alerting::{AlertKind, AlertSettings, Transition};
    use crate::clock::Clock;
    use crate::engine::{ConversationSettings, Engine};
    use crate::metrics::Metrics;
    use crate::store::{MemoryStore, Store};

    fn raised(t: &[Transition]) -> Vec<AlertKind> {
        t.iter()
            .filter_map(|t| match t {
                Transition::Raised(a) => Some(a.kind),
                _ => None,
            })
            .collect()
    }

    fn announced(m: &Metrics, kind: &str) -> bool {
        m.render(crate::metrics::Gauges::default())
            .lines()
            .any(|l| {
                l.starts_with("tsunagu_alerts_raised_total{")
                    && l.contains(kind)
                    && l.ends_with(" 1")
            })
    }

    /// Two engines on one store (as two nodes on one Redis, with the memory store's episode
    /// keys): both show the empty night, one announces it; when it ends and begins again, it
    /// is announced again, once.
    #[tokio::test]
    async fn two_engines_on_one_store_show_an_episode_on_both_and_announce_it_once() {
        let clock = Clock::manual(1_796_580_000_000);
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let node = || {
            let m = Arc::new(Metrics::new());
            let e = Engine::new(
                Arc::clone(&store),
                ConversationSettings::default(),
                Arc::clone(&m),
            )
            .with_clock(clock.clone())
            .with_alerts(AlertSettings::default());
            (e, m)
        };
        let (a, ma) = node();
        let (b, mb) = node();
        assert_eq!(
            raised(&a.check_alerts().await),
            vec![AlertKind::NobodyOnDuty]
        );
        assert_eq!(
            raised(&b.check_alerts().await),
            vec![AlertKind::NobodyOnDuty]
        );
        assert_eq!(
            b.dashboard().await.unwrap().conditions[0].kind,
            AlertKind::NobodyOnDuty
        );
        assert!(announced(&ma, "nobody_on_duty"));
        assert!(
            !announced(&mb, "nobody_on_duty"),
            "the second node stays quiet"
        );
        for _ in 0..10 {
            clock.advance(2_000);
            assert!(a.check_alerts().await.is_empty());
            assert!(b.check_alerts().await.is_empty());
        }
        assert!(announced(&ma, "nobody_on_duty"), "still once");
    }
}
