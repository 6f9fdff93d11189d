//! Background work: timers (offer timeouts, grace periods, idle and maximum length, wrap-up),
//! the dispatcher that makes offers, queue-position updates, and the alert conditions'
//! evaluation (`engine::alerting`).
//!
//! Every timer is a deadline stored in the conversation or operator record and checked on each
//! tick; the store's atomic `apply` re-checks the state, so a timer firing twice (or on two nodes)
//! changes nothing the second time.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::store_watch::{self, Verdict};
use super::{Engine, Outbound};
use crate::clock::Clock;
use crate::conversation::{Command, ConversationId, State};
use crate::protocol::{close, Millis, ServerMsg, WithdrawReason};

/// How often waiting people get their position (when it changed).
const POSITION_INTERVAL: Duration = Duration::from_secs(1);
/// Due conversations the sweep reads at once, and batches per tick at most.
const SWEEP_BATCH: usize = 512;
const SWEEP_BATCHES: usize = 8;
/// How often a node renews its heartbeat in a shared store and looks for nodes that stopped.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// Starts the background tasks on `tracker`; they stop when `shutdown` is cancelled.
pub fn spawn(engine: Arc<Engine>, shutdown: CancellationToken, tracker: &TaskTracker) {
    let e = Arc::clone(&engine);
    let s = shutdown.clone();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(e.cfg.tick_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = s.cancelled() => break,
                _ = tick.tick() => {
                    let started = std::time::Instant::now();
                    e.sweep(e.now_ms()).await;
                    tracing::debug!(took_us = started.elapsed().as_micros() as u64, "swept");
                    e.dispatch_once().await;
                }
                _ = e.dispatch.notified() => e.dispatch_once().await,
            }
        }
    });
    let e = Arc::clone(&engine);
    let s = shutdown.clone();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = s.cancelled() => break,
                _ = tick.tick() => e.heartbeat(e.now_ms()).await,
            }
        }
    });
    let e = Arc::clone(&engine);
    let s = shutdown.clone();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(e.alert_check_ms().max(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = s.cancelled() => break,
                _ = tick.tick() => { e.check_alerts().await; }
            }
        }
    });
    if engine.bus.is_some() {
        // A shared store: this node alone may be cut off from it (see `store_watch`).
        let e = Arc::clone(&engine);
        let s = shutdown.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(store_watch::PROBE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = s.cancelled() => break,
                    _ = tick.tick() => e.watch_store().await,
                }
            }
        });
    }
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(POSITION_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: HashMap<ConversationId, (u32, Option<u32>, bool)> = HashMap::new();
        let mut last_load = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => engine.send_positions(&mut last, &mut last_load).await,
            }
        }
    });
}

/// Deletes escalation records past retention and retries webhook deliveries, at the time
/// `clock` reads.
pub fn spawn_escalation_sweeper(
    escalations: Arc<crate::escalation::Escalations>,
    every: Duration,
    clock: Clock,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) {
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    let now = clock.now_ms();
                    if let Err(e) = escalations.sweep(now).await {
                        tracing::warn!(error = %e, "escalation retention sweep failed; will retry");
                    }
                    escalations.deliver_pending(now).await;
                }
            }
        }
    });
}

impl Engine {
    /// Makes whatever offers routing allows now, if this node is the dispatcher.
    ///
    /// With several nodes one dispatches at a time, under the store's `dispatch` lease: offers
    /// then go out in queue order and no two nodes plan against the same free places (their
    /// commits would fail and be retried, each retry reading the queue again). A node that
    /// does not hold the lease passes a wake of its own (an arrival, a place freed) to the
    /// dispatcher over the bus; if the dispatcher stops, another node takes the lease over at
    /// its next tick after the lease lapses.
    pub async fn dispatch_once(&self) {
        if !self.cfg.auto_offer {
            return;
        }
        let local = self.dispatch_local.swap(false, Ordering::AcqRel);
        let started = std::time::Instant::now();
        match self.store.lead("dispatch", self.lease_ms()).await {
            Ok(true) => {}
            Ok(false) => {
                if local {
                    if let Some(bus) = &self.bus {
                        bus.send(crate::cluster::BusMsg::Dispatch);
                    }
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "dispatch could not take its lease");
                return;
            }
        }
        match self
            .store
            .dispatch(
                self.now_ms(),
                self.cfg.offer_timeout_ms,
                self.cfg.language_fallback_ms,
            )
            .await
        {
            Ok(offers) => {
                tracing::debug!(
                    offers = offers.len(),
                    took_us = started.elapsed().as_micros() as u64,
                    "dispatched"
                );
                for a in offers {
                    tracing::info!(conversation = %a.after.id, operator = ?a.after.state.operator(), "offer made");
                    self.publish(&a, WithdrawReason::Timeout).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "dispatch failed"),
        }
    }

    /// How long the sweep's and the dispatcher's leases last unrenewed: a few ticks, at least
    /// a second (renewed every tick by the node that holds it).
    fn lease_ms(&self) -> u64 {
        (self.cfg.tick_ms * 8).max(1_000)
    }

    /// The command a conversation's deadlines call for at `now`, if any.
    fn due(&self, c: &crate::conversation::Conversation, now: Millis) -> Option<Command> {
        self.cfg.deadlines().due(c, now)
    }

    /// Renews this node's heartbeat (shared store) and treats the people and operators of
    /// nodes that stopped as disconnected: their grace periods start now.
    pub async fn heartbeat(&self, now: Millis) {
        match self.store.heartbeat(now).await {
            Ok(steps) => {
                for a in steps {
                    tracing::info!(conversation = %a.after.id, "person of a stopped node: disconnected");
                    self.publish(&a, WithdrawReason::Timeout).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
        match self.store.lost_data().await {
            Ok(false) => {}
            Ok(true) => {
                tracing::error!(
                    "the store lost its data (restarted without persistence, flushed, or failed \
                     over to an empty replica); telling everyone whose conversation is gone"
                );
                self.tell_gone().await;
            }
            Err(e) => tracing::debug!(error = %e, "could not check the store's marker"),
        }
    }

    /// Pings the shared store (within [`store_watch::PROBE_TIMEOUT`]) and, once it has not
    /// answered for [`store_watch::CUTOFF_MS`], closes every websocket of this node with 1001
    /// so its clients resume on a node that can serve them (see [`store_watch`]).
    pub async fn watch_store(&self) {
        let reached = matches!(
            tokio::time::timeout(store_watch::PROBE_TIMEOUT, self.store.ping()).await,
            Ok(Ok(()))
        );
        let now = self.now_ms();
        let verdict = {
            let mut watch = self.store_watch.lock().unwrap_or_else(|e| e.into_inner());
            if reached {
                watch.reached(now);
                return;
            }
            watch.failed(now)
        };
        if let Verdict::GoElsewhere { first } = verdict {
            if first {
                tracing::warn!(
                    cutoff_ms = store_watch::CUTOFF_MS,
                    "the store has been unreachable past the cutoff: closing every websocket \
                     with 1001 so its client resumes on a node that can serve it"
                );
            }
            self.registry
                .close_visitors(close::GOING_AWAY, "store unreachable");
            self.registry
                .close_operators(close::GOING_AWAY, "store unreachable");
        }
    }

    /// Fires every deadline that has passed.
    pub async fn sweep(&self, now: Millis) {
        // With several nodes one sweeps at a time; if it stops, another takes over within
        // the lease (a few ticks). Each step is re-checked by the store, so an overlap at a
        // hand-over changes nothing twice.
        match self.store.lead("sweep", self.lease_ms()).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "sweep could not take its lease");
                return;
            }
        }
        // From the store's deadline index: only what is due, a batch at a time (what a step
        // fired has a later deadline then, or none). A batch that stays full (steps failing,
        // the store unavailable) waits for the next tick.
        let deadlines = self.cfg.deadlines();
        for _ in 0..SWEEP_BATCHES {
            let convs = match self
                .store
                .due_conversations(&deadlines, now, SWEEP_BATCH)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "sweep could not read conversations");
                    return;
                }
            };
            let full = convs.len() >= SWEEP_BATCH;
            for c in convs {
                if let Some(cmd) = self.due(&c, now) {
                    let withdrawn = WithdrawReason::Timeout;
                    if let Ok(a) = self.store.apply(c.id, cmd, None, now).await {
                        self.publish(&a, withdrawn).await;
                    }
                }
            }
            if !full {
                break;
            }
        }
        let Ok(ops) = self.store.operators().await else {
            return;
        };
        for op in ops {
            let gone = !op.connected
                && op
                    .disconnected_since
                    .is_some_and(|t| now.saturating_sub(t) >= self.cfg.operator_grace_ms);
            if !gone {
                continue;
            }
            let Ok(held) = self.store.held_by(op.id).await else {
                continue;
            };
            for c in held {
                let cmd = match c.state {
                    State::Active { .. } => Command::Requeue { operator: op.id },
                    State::Offered { .. } => Command::Decline { operator: op.id },
                    State::WrapUp { .. } => Command::WrapUpExpired,
                    _ => continue,
                };
                if let Ok(a) = self.store.apply(c.id, cmd, None, now).await {
                    tracing::info!(conversation = %c.id, operator = %op.id, "operator gone past grace: conversation returned");
                    self.publish(&a, WithdrawReason::Timeout).await;
                }
            }
        }
    }

    /// Sends queue positions to waiting people whose position (or wait, or the overloaded mode)
    /// changed, and queue load to operators.
    async fn send_positions(
        &self,
        last: &mut HashMap<ConversationId, (u32, Option<u32>, bool)>,
        last_load: &mut Option<(u32, u64)>,
    ) {
        // Only this node's people: their ranks, not the whole queue.
        let ids = self.registry.visitor_ids();
        let Ok(queue) = self.store.queue_places(&ids).await else {
            return;
        };
        self.refresh_handle_time().await;
        let Ok(on_duty) = self.store.on_duty().await else {
            return;
        };
        let now = self.now_ms();
        let overloaded = self.is_overloaded();
        let mut seen = HashMap::with_capacity(last.len());
        for (id, position) in ids.iter().zip(&queue.places) {
            let Some(position) = *position else {
                continue;
            };
            let wait = self.estimate_wait(position, on_duty.capacity);
            seen.insert(*id, (position, wait, overloaded));
            if last.get(id) != Some(&(position, wait, overloaded)) {
                self.registry.to_visitor(
                    *id,
                    Outbound::frame(ServerMsg::QueuePosition {
                        position,
                        wait_minutes: wait,
                        operators_on_duty: on_duty.operators,
                        overloaded,
                    }),
                );
            }
        }
        *last = seen;
        let longest = queue.oldest.map(|t| now.saturating_sub(t)).unwrap_or(0);
        // Longest wait changes every tick; resend when the count changes or every 10 s of wait.
        let load = (queue.len, longest / 10_000);
        if *last_load != Some(load) {
            *last_load = Some(load);
            for op in self.registry.operator_ids() {
                self.registry.to_operator(
                    op,
                    Outbound::frame(ServerMsg::QueueLoad {
                        waiting: load.0,
                        longest_wait_ms: longest,
                    }),
                );
            }
        }
    }

    /// What a person who has just (re)connected is told about their wait: their queue position,
    /// or, if an operator is being offered them at this moment, that they are first. (The offer
    /// can be made between their `hello` and this answer, the sooner the faster the dispatcher.)
    pub async fn waiting_position(&self, id: ConversationId) -> Option<ServerMsg> {
        if let Some(pos) = self.position_of(id).await {
            return Some(pos);
        }
        let conv = self.store.get(id).await.ok()??;
        if !matches!(conv.state, State::Offered { .. }) {
            return None;
        }
        let on_duty = self.store.on_duty().await.ok()?;
        Some(ServerMsg::QueuePosition {
            position: 1,
            wait_minutes: Some(0),
            operators_on_duty: on_duty.operators,
            overloaded: self.is_overloaded(),
        })
    }

    /// Position and wait for one waiting conversation (sent right after `welcome`).
    pub async fn position_of(&self, id: ConversationId) -> Option<ServerMsg> {
        let (position, _) = self.store.queue_position(id).await.ok()??;
        let on_duty = self.store.on_duty().await.ok()?;
        Some(ServerMsg::QueuePosition {
            position,
            wait_minutes: self.estimate_wait(position, on_duty.capacity),
            operators_on_duty: on_duty.operators,
            overloaded: self.is_overloaded(),
        })
    }
}
