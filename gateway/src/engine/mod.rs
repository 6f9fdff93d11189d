//! The engine: the helpline's behaviour, between the sockets and the store.
//!
//! Sockets call one method per client action (`visitor_send`, `accept`, …). Each method asks the
//! [`Store`] for one atomic step and hands the result to [`Engine::publish`], the one place that
//! decides who must hear about a change (the visitor's socket, the operator holding the
//! conversation, the operator who lost an offer) and that deletes a conversation when it ends.
//! Background tasks ([`timers`]) fire offer timeouts, grace periods and idle limits, make offers,
//! and send queue positions. Statistics for the coordinator view and metrics are in [`stats`].

mod access;
pub mod follower;
pub mod registry;
mod settings;
pub mod stats;
pub mod timers;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use ulid::Ulid;

use crate::cluster::{BusMsg, BusSender};
use crate::conversation::{Command, Conversation, ConversationId, OperatorId, State};
use crate::escalation::{Action, Actor, Escalations, FlagEntry};
use crate::metrics::Metrics;
use crate::protocol::{
    Channel, ClientId, ConversationSummary, ErrorCode, Millis, Offer, Presence, RemovedReason,
    ServerMsg, Side, TransferInfo, WithdrawReason,
};
use crate::store::{Applied, ApplyError, OperatorRecord, OperatorUpdate, Store, StoreError};
pub use registry::{Handle, Outbound, Registry};
pub use settings::ConversationSettings;
use stats::StatsState;

// Re-exported so that `engine::now_ms` and `engine::hash_token` keep working; modules below the
// engine import them from `clock` and `token` (see ARCHITECTURE.md, "Module dependencies").
pub use crate::clock::now_ms;
pub use crate::token::hash_token;

/// An operator as the engine needs them (from their account).
#[derive(Debug, Clone)]
pub struct OperatorProfile {
    pub id: OperatorId,
    pub name: String,
    pub languages: Vec<String>,
    pub capacity: u32,
    /// Has a phone number or voice client to bridge calls to.
    pub takes_calls: bool,
}

/// What an operator's socket needs at hello.
#[derive(Debug, Clone)]
pub struct OperatorSnapshot {
    pub presence: Presence,
    pub capacity: u32,
    pub held: Vec<ConversationSummary>,
    pub offers: Vec<Offer>,
}

pub struct Engine {
    store: Arc<dyn Store>,
    registry: Registry,
    pub metrics: Arc<Metrics>,
    pub cfg: ConversationSettings,
    /// Woken when the queue or an operator's capacity may allow a new offer.
    dispatch: Notify,
    stats: Mutex<StatsState>,
    /// Recent operator-level client ids (take_next, presence), so a retry is applied once.
    recent: Mutex<HashMap<OperatorId, VecDeque<Ulid>>>,
    /// The channel identifier that routes replies to a person (a LINE user id, a caller's
    /// number), per conversation. Memory only, never logged, never shown to operators; removed
    /// when the conversation ends (an escalation record copies it first).
    channel_refs: Mutex<HashMap<ConversationId, String>>,
    /// Escalation records; `None` when flagging is not enabled.
    pub escalations: Option<Arc<Escalations>>,
    /// Overloaded mode, switched by a coordinator: waiting people are told about other
    /// helplines (and may keep waiting); new phone calls are turned away politely.
    overloaded: AtomicBool,
    /// With a shared store: tells the other gateway nodes what this one changed.
    bus: Option<BusSender>,
}

/// How many recent operator-level client ids are remembered per operator.
const RECENT_IDS: usize = 64;

fn code_of(err: &ApplyError) -> ErrorCode {
    match err {
        ApplyError::NotFound => ErrorCode::NotFound,
        ApplyError::Refused(crate::conversation::TransitionError::NotYours) => ErrorCode::NotFound,
        ApplyError::Refused(crate::conversation::TransitionError::UnknownCategory) => {
            ErrorCode::Invalid
        }
        ApplyError::Refused(_) => ErrorCode::OutOfOrder,
        ApplyError::Store(_) => ErrorCode::Unavailable,
    }
}

fn store_code(_: StoreError) -> ErrorCode {
    ErrorCode::Unavailable
}

fn new_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, cfg: ConversationSettings, metrics: Arc<Metrics>) -> Self {
        Engine {
            store,
            registry: Registry::default(),
            metrics,
            cfg,
            dispatch: Notify::new(),
            stats: Mutex::new(StatsState::default()),
            recent: Mutex::new(HashMap::new()),
            channel_refs: Mutex::new(HashMap::new()),
            escalations: None,
            overloaded: AtomicBool::new(false),
            bus: None,
        }
    }

    /// Shares this engine's changes with other gateway nodes (Redis store).
    pub fn with_bus(mut self, bus: BusSender) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Queues `out` on the operator's socket, on whichever node it is open.
    pub fn to_operator(&self, op: OperatorId, out: Outbound) {
        if let Some(bus) = &self.bus {
            if let Some(remote) = out.to_remote() {
                bus.send(BusMsg::ToOperator {
                    operator: op,
                    out: remote,
                });
            }
        }
        self.registry.to_operator(op, out);
    }

    /// Queues `out` on the conversation's person's socket, on whichever node it is open.
    pub fn to_visitor(&self, conv: ConversationId, out: Outbound) {
        if let Some(bus) = &self.bus {
            if let Some(remote) = out.to_remote() {
                bus.send(BusMsg::ToVisitor {
                    conversation: conv,
                    out: remote,
                });
            }
        }
        self.registry.to_visitor(conv, out);
    }

    /// Coordinators on every node see an alert raised on this one.
    fn share_alert(&self, alert: stats::Alert) {
        if let Some(bus) = &self.bus {
            bus.send(BusMsg::Alert {
                alert: Box::new(alert),
            });
        }
    }

    /// What another node published.
    pub fn on_bus(&self, msg: BusMsg) {
        match msg {
            BusMsg::Applied { applied, withdrawn } => {
                self.notify(&applied, withdrawn, now_ms());
                if applied.before.state.kind() != applied.after.state.kind() {
                    self.wake_dispatch();
                }
            }
            BusMsg::ToOperator { operator, out } => self
                .registry
                .to_operator(operator, Outbound::from_remote(out)),
            BusMsg::ToVisitor { conversation, out } => self
                .registry
                .to_visitor(conversation, Outbound::from_remote(out)),
            BusMsg::Alert { alert } => self.stats().raise(*alert),
            BusMsg::AlertAcknowledged { id, by } => {
                self.stats().ack_alert(id, &by);
            }
            BusMsg::Overloaded { on } => {
                let was = self.overloaded.swap(on, Ordering::SeqCst);
                if was != on {
                    tracing::info!(overloaded = on, "overloaded mode switched on another node");
                }
            }
        }
    }

    /// Wakes every socket of this node, so each reads what it has not sent yet from the store
    /// (after cross-node wake-ups may have been missed), and records again that the people and
    /// operators of these sockets are connected here (after an outage of Redis, another node
    /// may have taken this one for dead).
    ///
    /// A conversation the store no longer has is gone ([`Engine::tell_gone`]): after a restart
    /// of Redis without persistence, this is where its people and operators hear of it.
    pub async fn wake_local_sockets(&self) {
        let mut gone = 0;
        for conv in self.registry.visitor_ids() {
            match self.store.get(conv).await {
                Ok(Some(c)) => {
                    if !c.visitor_connected && !c.state.is_terminal() {
                        self.visitor_connection(conv, true).await;
                    }
                }
                Ok(None) => {
                    self.gone(conv);
                    gone += 1;
                    continue;
                }
                Err(_) => {}
            }
            self.registry.to_visitor(conv, Outbound::Wake(conv));
        }
        if gone > 0 {
            tracing::warn!(
                people = gone,
                "conversations gone from the store; their people are told"
            );
        }
        for op in self.registry.operator_ids() {
            self.registry.to_operator(op, Outbound::Recheck);
            if let Ok(Some(rec)) = self
                .store
                .update_operator(op, OperatorUpdate::Connected)
                .await
            {
                tracing::debug!(operator = %rec.id, "operator connection recorded again");
            }
            if let Ok(held) = self.store.held_by(op).await {
                for c in held {
                    self.registry.to_operator(op, Outbound::Hold(c.id));
                }
            }
        }
    }

    /// Tells this node's people and operators about every conversation of theirs that the
    /// store no longer has (it lost its data: a restart without persistence, a flush, a
    /// failover to an empty replica). A person's socket gets `gone` and closes (the LINE and
    /// phone connectors say so in their own way); an operator's socket checks the conversations
    /// it follows and drops those that are gone.
    ///
    /// A conversation that ended normally is deleted only after its `ended` entry was queued
    /// for its person, so the `gone` queued here, after the store answered that it is not
    /// there, never overtakes an `ended`.
    pub async fn tell_gone(&self) {
        let mut gone = 0;
        for conv in self.registry.visitor_ids() {
            if let Ok(None) = self.store.get(conv).await {
                self.gone(conv);
                gone += 1;
            }
        }
        tracing::warn!(
            people = gone,
            "conversations gone from the store; their people are told"
        );
        for op in self.registry.operator_ids() {
            self.registry.to_operator(op, Outbound::Recheck);
        }
    }

    fn gone(&self, conv: ConversationId) {
        tracing::debug!(conversation = %conv, "conversation gone from the store");
        self.refs().remove(&conv);
        self.registry.to_visitor(conv, Outbound::Gone(conv));
    }

    pub fn with_escalations(mut self, escalations: Option<Arc<Escalations>>) -> Self {
        self.escalations = escalations;
        self
    }

    /// What the holding operator sees of a conversation, with the emergency acknowledgement.
    pub fn summary_of(&self, conv: &Conversation) -> Option<ConversationSummary> {
        let mut summary = conv.summary()?;
        if let Some(e) = summary.emergency.as_mut() {
            e.acknowledged_by = self.stats().emergency_acknowledged_by(conv.id);
        }
        Some(summary)
    }

    fn refs(&self) -> std::sync::MutexGuard<'_, HashMap<ConversationId, String>> {
        self.channel_refs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers the channel identifier of a conversation's person (connectors call this).
    pub fn set_channel_ref(&self, conv: ConversationId, reference: String) {
        self.refs().insert(conv, reference);
    }

    pub fn channel_ref(&self, conv: ConversationId) -> Option<String> {
        self.refs().get(&conv).cloned()
    }

    /// Switches overloaded mode on or off (`by`: the coordinator's account id). Waiting people
    /// get their queue position again, with the mode, on the next position tick.
    pub fn set_overloaded(&self, on: bool, by: &str) {
        let was = self.overloaded.swap(on, Ordering::SeqCst);
        if was != on {
            tracing::info!(overloaded = on, by = %by, "overloaded mode switched");
        }
        if let Some(bus) = &self.bus {
            bus.send(BusMsg::Overloaded { on });
        }
    }

    /// Whether the service is in overloaded mode.
    pub fn is_overloaded(&self) -> bool {
        self.overloaded.load(Ordering::SeqCst)
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, StatsState> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the dispatcher to look for offers to make.
    pub fn wake_dispatch(&self) {
        self.dispatch.notify_one();
    }

    /// True if this operator-level client id was seen before (and remembers it), on any node
    /// when the store is shared (a retry after a node loss arrives at another node).
    async fn seen(&self, op: OperatorId, id: Ulid) -> bool {
        match self.store.first_time(&format!("{op}:{id}")).await {
            Ok(Some(first)) => return !first,
            Ok(None) => {}
            // Cannot tell: treat it as new (the step itself will meet the same outage).
            Err(_) => return false,
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let ids = recent.entry(op).or_default();
        if ids.contains(&id) {
            return true;
        }
        if ids.len() == RECENT_IDS {
            ids.pop_front();
        }
        ids.push_back(id);
        false
    }

    // -----------------------------------------------------------------------------------------
    // Publishing changes
    // -----------------------------------------------------------------------------------------

    fn offer_of(&self, conv: &Conversation, now: Millis) -> Option<Offer> {
        let State::Offered {
            expires_at,
            transfer_from,
            ..
        } = &conv.state
        else {
            return None;
        };
        Some(Offer {
            conversation: conv.id,
            channel: conv.channel,
            language: conv.language.clone(),
            waited_ms: now.saturating_sub(conv.queued_at),
            expires_in_ms: expires_at.saturating_sub(now),
            transfer: transfer_from.as_ref().map(|from| TransferInfo {
                from: from.clone(),
                note: conv.handover_note.clone(),
            }),
        })
    }

    /// Tells everyone concerned about one step, and deletes the conversation if it ended.
    /// `withdrawn` is the reason given to an operator who loses an offer in this step.
    pub async fn publish(&self, a: &Applied, withdrawn: WithdrawReason) {
        if a.duplicate.is_some() {
            // A retry: the first application may not have been heard of (its answer was lost,
            // or the store refused to acknowledge it unreplicated). Waking is harmless.
            let id = a.after.id;
            self.to_visitor(id, Outbound::Wake(id));
            if let Some(op) = a.after.state.operator() {
                self.to_operator(op, Outbound::Wake(id));
            }
            return;
        }
        let now = now_ms();
        self.notify(a, withdrawn, now);
        if let Some(bus) = &self.bus {
            bus.send(BusMsg::Applied {
                applied: Box::new(a.clone()),
                withdrawn,
            });
        }
        let id = a.after.id;
        let (before, after) = (&a.before.state, &a.after.state);

        // Statistics and metrics for what happened.
        if let Some(event) = self.record_transition(a, now) {
            self.count_today(now, event).await;
        }
        self.escalation_follows(a, now).await;

        if after.is_terminal() {
            self.refs().remove(&id);
            if let Err(e) = self.store.delete(id).await {
                tracing::error!(conversation = %id, error = %e, "could not delete ended conversation");
            }
            tracing::info!(conversation = %id, outcome = after.kind().as_str(), "conversation deleted");
        }
        if before.kind() != after.kind() {
            self.wake_dispatch();
        }
    }

    /// The sockets' part of [`Engine::publish`]: queues on this node's sockets what a step means
    /// for them. Runs on the node that applied the step and, from the bus, on every other.
    pub fn notify(&self, a: &Applied, withdrawn: WithdrawReason, now: Millis) {
        let id = a.after.id;
        let (before, after) = (&a.before.state, &a.after.state);
        let holder = |s: &State| match s {
            State::Active { operator } | State::WrapUp { operator, .. } => Some(*operator),
            _ => None,
        };
        let (held_before, held_after) = (holder(before), holder(after));

        // Offers made and lost.
        if let State::Offered { operator, .. } = after {
            if before.operator() != Some(*operator) || before.kind() != after.kind() {
                if let Some(offer) = self.offer_of(&a.after, now) {
                    self.registry
                        .to_operator(*operator, Outbound::frame(ServerMsg::Offer(offer)));
                }
            }
        }
        if let State::Offered { operator, .. } = before {
            if after.operator() != Some(*operator) {
                let reason = if after.is_terminal() {
                    WithdrawReason::Abandoned
                } else {
                    withdrawn
                };
                self.registry.to_operator(
                    *operator,
                    Outbound::frame(ServerMsg::OfferWithdrawn {
                        conversation: id,
                        reason,
                    }),
                );
            }
        }

        // Who holds the conversation.
        if held_before != held_after {
            if let Some(op) = held_before {
                let reason = match after {
                    State::Queued => RemovedReason::Requeued,
                    State::Offered { .. } => RemovedReason::Transferred,
                    _ => RemovedReason::Closed,
                };
                self.registry.to_operator(op, Outbound::Release(id));
                self.registry.to_operator(
                    op,
                    Outbound::frame(ServerMsg::Removed {
                        conversation: id,
                        reason,
                        suggest_pause: reason == RemovedReason::Closed
                            && a.after.emergency.is_some(),
                    }),
                );
            }
            if let Some(op) = held_after {
                if let Some(summary) = self.summary_of(&a.after) {
                    self.registry.to_operator(
                        op,
                        Outbound::frame(ServerMsg::Conversation {
                            conversation: summary,
                        }),
                    );
                }
                self.registry.to_operator(op, Outbound::Hold(id));
            }
        } else if let Some(op) = held_after {
            if before.kind() != after.kind()
                || a.before.visitor_connected != a.after.visitor_connected
            {
                if let Some(summary) = self.summary_of(&a.after) {
                    self.registry.to_operator(
                        op,
                        Outbound::frame(ServerMsg::Conversation {
                            conversation: summary,
                        }),
                    );
                }
            }
            if !a.appended.is_empty() {
                self.registry.to_operator(op, Outbound::Wake(id));
            }
        }

        // The person's side.
        if after.is_terminal() {
            // The log is about to be deleted: hand the last entries over directly.
            for entry in &a.appended {
                self.registry
                    .to_visitor(id, Outbound::frame(ServerMsg::event(id, entry)));
            }
        } else if !a.appended.is_empty() {
            self.registry.to_visitor(id, Outbound::Wake(id));
        }
    }

    /// A flagged conversation's record follows everything it logs, and is completed at close.
    /// Entries another node appended (with a shared store, each node extends the record with
    /// the steps it applies) are read from the log, so the transcript has no gap.
    async fn escalation_follows(&self, a: &Applied, now: Millis) {
        let (Some(esc), Some(e)) = (&self.escalations, &a.after.emergency) else {
            return;
        };
        if let Some(first) = a.appended.first() {
            let mut entries = a.appended.clone();
            if let Ok(last) = esc.last_seq(e.record) {
                if last + 1 < first.seq {
                    if let Ok(mut missing) = self.store.read_log(a.after.id, last).await {
                        missing.retain(|m| m.seq < first.seq);
                        missing.append(&mut entries);
                        entries = missing;
                    }
                }
            }
            if let Err(err) = esc.append_log(e.record, &entries) {
                tracing::error!(record = %e.record, error = %err, "could not extend escalation record");
            }
        }
        if a.after.state.is_terminal() {
            let category = a.after.category.clone();
            let closed = esc.update(e.record, |r| {
                r.closed = true;
                r.actions.push(Action {
                    at: now,
                    actor: "system".into(),
                    actor_id: None,
                    action: "closed".into(),
                    detail: category,
                });
            });
            match closed {
                Ok(_) => {
                    let esc = Arc::clone(esc);
                    tokio::spawn(async move {
                        esc.deliver_pending(now_ms()).await;
                    });
                }
                Err(err) => {
                    tracing::error!(record = %e.record, error = %err, "could not close escalation record")
                }
            }
        }
    }

    /// Counts an event of today in the shared store, if there is one.
    async fn count_today(&self, now: Millis, event: &'static str) {
        if let Err(e) = self.store.count_today(stats::jst_day(now), event).await {
            tracing::warn!(error = %e, event, "could not count in the shared store");
        }
    }

    /// Metrics and today's counts for a change of state; returns the counted event, if any.
    fn record_transition(&self, a: &Applied, now: Millis) -> Option<&'static str> {
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

    async fn apply(
        &self,
        id: ConversationId,
        cmd: Command,
        client_id: Option<Ulid>,
        withdrawn: WithdrawReason,
    ) -> Result<Applied, ErrorCode> {
        let applied = self
            .store
            .apply(id, cmd, client_id, now_ms())
            .await
            .map_err(|e| code_of(&e))?;
        self.publish(&applied, withdrawn).await;
        Ok(applied)
    }

    fn seq_of(a: &Applied) -> Option<u64> {
        match a.duplicate {
            Some(seq) => seq,
            None => a.appended.last().map(|e| e.seq),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Visitors
    // -----------------------------------------------------------------------------------------

    /// Starts a conversation; returns it and the resume token (only its hash is stored).
    pub async fn start_visitor(
        &self,
        channel: Channel,
        language: Option<String>,
    ) -> Result<(Conversation, String), ErrorCode> {
        self.start_conversation(channel, language, 0).await
    }

    /// Starts a conversation with a queue priority (0 is normal; higher is served first), for
    /// connectors whose channels are configured with one.
    pub async fn start_conversation(
        &self,
        channel: Channel,
        language: Option<String>,
        priority: u8,
    ) -> Result<(Conversation, String), ErrorCode> {
        let token = new_token();
        let now = now_ms();
        let mut conv = Conversation::new(
            Ulid::new(),
            channel,
            language,
            Some(hash_token(&token)),
            now,
        );
        conv.priority = priority;
        self.store.create(conv.clone()).await.map_err(store_code)?;
        {
            let mut stats = self.stats();
            stats.roll_day(now);
            stats.today.started += 1;
        }
        self.count_today(now, "started").await;
        self.metrics.started(channel.as_str());
        tracing::info!(conversation = %conv.id, channel = channel.as_str(), "conversation started");
        self.wake_dispatch();
        Ok((conv, token))
    }

    /// The live conversation a resume token opens.
    pub async fn resume_visitor(&self, token: &str) -> Result<Option<Conversation>, ErrorCode> {
        self.store
            .find_by_token(&hash_token(token))
            .await
            .map_err(store_code)
    }

    pub async fn visitor_connection(&self, id: ConversationId, connected: bool) {
        let cmd = if connected {
            Command::VisitorConnected
        } else {
            Command::VisitorDisconnected
        };
        let _ = self.apply(id, cmd, None, WithdrawReason::Timeout).await;
    }

    /// Stores a chat message from either side; returns its seq (the first one on a retry).
    async fn store_message(
        &self,
        conv: ConversationId,
        from: Side,
        operator: Option<OperatorId>,
        client_id: ClientId,
        text: String,
    ) -> Result<Option<u64>, ErrorCode> {
        let size = text.len();
        let cmd = Command::Message {
            from,
            operator,
            id: client_id,
            text,
        };
        let a = self
            .apply(conv, cmd, Some(client_id.ulid()), WithdrawReason::Timeout)
            .await?;
        if a.duplicate.is_none() {
            let sender = if from == Side::Visitor {
                "visitor"
            } else {
                "operator"
            };
            self.metrics.message(from);
            tracing::debug!(conversation = %conv, from = sender, bytes = size, "message stored");
        }
        Ok(Self::seq_of(&a))
    }

    /// Stores a message from the person. The client id is echoed in its log entry as sent (a
    /// connector's own ids are ULIDs).
    pub async fn visitor_send(
        &self,
        id: ConversationId,
        client_id: impl Into<ClientId>,
        text: String,
    ) -> Result<Option<u64>, ErrorCode> {
        self.store_message(id, Side::Visitor, None, client_id.into(), text)
            .await
    }

    pub async fn visitor_typing(&self, id: ConversationId, active: bool) {
        if let Ok(Some(conv)) = self.store.get(id).await {
            if let State::Active { operator } = conv.state {
                self.to_operator(
                    operator,
                    Outbound::frame(ServerMsg::Typing {
                        conversation: Some(id),
                        from: Side::Visitor,
                        active,
                    }),
                );
            }
        }
    }

    pub async fn ack(&self, id: ConversationId, side: Side, seq: u64) {
        let _ = self
            .store
            .apply(id, Command::Ack { side, seq }, None, now_ms())
            .await;
    }

    /// The person withdraws an earlier message (identified by its client id).
    pub async fn visitor_retract(
        &self,
        id: ConversationId,
        message: Ulid,
        client_id: Ulid,
    ) -> Result<(), ErrorCode> {
        self.apply(
            id,
            Command::VisitorRetract { id: message.into() },
            Some(client_id),
            WithdrawReason::Timeout,
        )
        .await
        .map(|_| ())
    }

    pub async fn visitor_end(&self, id: ConversationId, client_id: Ulid) -> Result<(), ErrorCode> {
        self.apply(
            id,
            Command::VisitorEnd,
            Some(client_id),
            WithdrawReason::Abandoned,
        )
        .await
        .map(|_| ())
    }

    // -----------------------------------------------------------------------------------------
    // Operators
    // -----------------------------------------------------------------------------------------

    /// Registers an operator's console connection and returns what their console must show.
    pub async fn operator_connected(
        &self,
        profile: &OperatorProfile,
    ) -> Result<OperatorSnapshot, ErrorCode> {
        let existing = self
            .store
            .update_operator(profile.id, OperatorUpdate::Connected)
            .await
            .map_err(store_code)?;
        let record = match existing {
            Some(mut rec) => {
                rec.name = profile.name.clone();
                rec.languages = profile.languages.clone();
                rec.capacity = profile.capacity;
                rec.takes_calls = profile.takes_calls;
                rec
            }
            None => OperatorRecord {
                id: profile.id,
                name: profile.name.clone(),
                languages: profile.languages.clone(),
                capacity: profile.capacity,
                presence: Presence::OffDuty,
                connected: true,
                disconnected_since: None,
                last_assigned: 0,
                takes_calls: profile.takes_calls,
            },
        };
        self.store
            .put_operator(record.clone())
            .await
            .map_err(store_code)?;
        let now = now_ms();
        let held = self.store.held_by(profile.id).await.map_err(store_code)?;
        let offers = held.iter().filter_map(|c| self.offer_of(c, now)).collect();
        let held = held
            .iter()
            .filter(|c| !matches!(c.state, State::Offered { .. }))
            .filter_map(|c| self.summary_of(c))
            .collect();
        self.wake_dispatch();
        Ok(OperatorSnapshot {
            presence: record.presence,
            capacity: record.capacity,
            held,
            offers,
        })
    }

    pub async fn operator_disconnected(&self, op: OperatorId) {
        let _ = self
            .store
            .update_operator(op, OperatorUpdate::Disconnected { at: now_ms() })
            .await;
    }

    /// Sets presence; returns the `presence` frame for the operator.
    pub async fn set_presence(
        &self,
        op: OperatorId,
        presence: Presence,
    ) -> Result<ServerMsg, ErrorCode> {
        self.store
            .update_operator(op, OperatorUpdate::Presence(presence))
            .await
            .map_err(store_code)?
            .ok_or(ErrorCode::NotFound)?;
        tracing::info!(operator = %op, presence = ?presence, "presence changed");
        self.wake_dispatch();
        self.presence_frame(op).await
    }

    pub async fn presence_frame(&self, op: OperatorId) -> Result<ServerMsg, ErrorCode> {
        let (rec, load) = self
            .store
            .operator_load(op)
            .await
            .map_err(store_code)?
            .ok_or(ErrorCode::NotFound)?;
        Ok(ServerMsg::Presence {
            state: rec.presence,
            load,
            capacity: rec.capacity,
        })
    }

    /// Queues an operator's presence frame (their load changed) on their sockets. Queued, not
    /// spawned: it goes out in the same write as the reply and the conversation frames of the
    /// step that changed the load.
    async fn send_presence(&self, op: OperatorId) {
        if let Ok(frame) = self.presence_frame(op).await {
            self.to_operator(op, Outbound::frame(frame));
        }
    }

    pub async fn take_next(
        self: &Arc<Self>,
        op: OperatorId,
        client_id: Ulid,
    ) -> Result<Option<ConversationId>, ErrorCode> {
        if self.seen(op, client_id).await {
            return Ok(None);
        }
        let held = self.store.held_by(op).await.map_err(store_code)?;
        let rec = self
            .store
            .operators()
            .await
            .map_err(store_code)?
            .into_iter()
            .find(|o| o.id == op)
            .ok_or(ErrorCode::NotFound)?;
        if held.iter().map(|c| c.weight_on(rec.capacity)).sum::<u32>() >= rec.capacity {
            return Err(ErrorCode::Capacity);
        }
        let taken = self
            .store
            .take_next(op, now_ms(), self.cfg.language_fallback_ms)
            .await
            .map_err(|e| code_of(&e))?;
        match taken {
            Some(a) => {
                self.publish(&a, WithdrawReason::Taken).await;
                self.send_presence(op).await;
                Ok(Some(a.after.id))
            }
            None => Ok(None),
        }
    }

    pub async fn accept(
        self: &Arc<Self>,
        op: OperatorId,
        name: &str,
        conv: ConversationId,
        client_id: Ulid,
    ) -> Result<(), ErrorCode> {
        let cmd = Command::Accept {
            operator: op,
            operator_name: name.to_owned(),
        };
        self.apply(conv, cmd, Some(client_id), WithdrawReason::Taken)
            .await?;
        self.send_presence(op).await;
        Ok(())
    }

    pub async fn decline(
        &self,
        op: OperatorId,
        conv: ConversationId,
        client_id: Ulid,
    ) -> Result<(), ErrorCode> {
        self.apply(
            conv,
            Command::Decline { operator: op },
            Some(client_id),
            WithdrawReason::Declined,
        )
        .await
        .map(|_| ())
    }

    pub async fn operator_send(
        &self,
        op: OperatorId,
        conv: ConversationId,
        client_id: impl Into<ClientId>,
        text: String,
    ) -> Result<Option<u64>, ErrorCode> {
        self.store_message(conv, Side::Operator, Some(op), client_id.into(), text)
            .await
    }

    pub async fn operator_typing(&self, op: OperatorId, conv: ConversationId, active: bool) {
        if let Ok(Some(c)) = self.store.get(conv).await {
            if c.state == (State::Active { operator: op }) {
                self.to_visitor(
                    conv,
                    Outbound::frame(ServerMsg::Typing {
                        conversation: None,
                        from: Side::Operator,
                        active,
                    }),
                );
            }
        }
    }

    pub async fn transfer(
        self: &Arc<Self>,
        op: OperatorId,
        conv: ConversationId,
        to: Option<OperatorId>,
        note: Option<String>,
        client_id: Ulid,
    ) -> Result<(), ErrorCode> {
        let cmd = match to {
            None => Command::Requeue { operator: op },
            Some(to) => {
                let target = self
                    .store
                    .operators()
                    .await
                    .map_err(store_code)?
                    .into_iter()
                    .find(|o| o.id == to && o.connected && o.presence == Presence::OnDuty)
                    .ok_or(ErrorCode::NotFound)?;
                // The colleague must have room for it (a chat never lands on someone on a call).
                let this = self
                    .store
                    .get(conv)
                    .await
                    .map_err(store_code)?
                    .ok_or(ErrorCode::NotFound)?;
                let load: u32 = self
                    .store
                    .held_by(target.id)
                    .await
                    .map_err(store_code)?
                    .iter()
                    .map(|c| c.weight_on(target.capacity))
                    .sum();
                if load + this.weight_on(target.capacity) > target.capacity {
                    return Err(ErrorCode::Capacity);
                }
                Command::Transfer {
                    from: op,
                    to: target.id,
                    note,
                    expires_at: now_ms() + self.cfg.offer_timeout_ms,
                }
            }
        };
        self.apply(conv, cmd, Some(client_id), WithdrawReason::Timeout)
            .await?;
        self.send_presence(op).await;
        Ok(())
    }

    pub async fn operator_end(
        &self,
        op: OperatorId,
        conv: ConversationId,
        client_id: Ulid,
    ) -> Result<(), ErrorCode> {
        self.apply(
            conv,
            Command::OperatorEnd { operator: op },
            Some(client_id),
            WithdrawReason::Timeout,
        )
        .await
        .map(|_| ())
    }

    pub async fn wrap_up(
        self: &Arc<Self>,
        op: OperatorId,
        conv: ConversationId,
        category: String,
        client_id: Ulid,
    ) -> Result<(), ErrorCode> {
        if !self.cfg.categories.contains(&category) {
            return Err(ErrorCode::Invalid);
        }
        self.apply(
            conv,
            Command::WrapUp {
                operator: op,
                category,
            },
            Some(client_id),
            WithdrawReason::Timeout,
        )
        .await?;
        self.send_presence(op).await;
        Ok(())
    }

    /// An operator asks a coordinator for help with a conversation they hold.
    pub async fn help(
        &self,
        op: OperatorId,
        name: &str,
        conv: ConversationId,
    ) -> Result<(), ErrorCode> {
        let c = self
            .store
            .get(conv)
            .await
            .map_err(store_code)?
            .ok_or(ErrorCode::NotFound)?;
        if c.state.operator() != Some(op) {
            return Err(ErrorCode::NotFound);
        }
        let alert = self.stats().raise_help(name, conv, now_ms());
        self.share_alert(alert);
        tracing::info!(operator = %op, conversation = %conv, "help requested");
        Ok(())
    }

    /// Acknowledges an alert; `Ok(false)` if there is no such alert. An emergency alert's
    /// acknowledgement is written to the escalation record first, and refused
    /// (`Unavailable`) if it cannot be: the record is the trail of who did what.
    pub async fn ack_alert(&self, alert: Ulid, by: &Actor) -> Result<bool, ErrorCode> {
        let Some((conv, emergency)) = self.stats().alert(alert) else {
            return Ok(false);
        };
        let mut summary = None;
        if emergency {
            if let Ok(Some(c)) = self.store.get(conv).await {
                if let (Some(esc), Some(e)) = (&self.escalations, &c.emergency) {
                    let written = esc.update(e.record, |r| {
                        r.actions.push(Action {
                            at: now_ms(),
                            actor: by.name.clone(),
                            actor_id: by.id,
                            action: "alert_acknowledged".into(),
                            detail: None,
                        })
                    });
                    if let Err(err) = written {
                        tracing::error!(record = %e.record, error = %err, "could not write escalation record; acknowledgement refused");
                        return Err(ErrorCode::Unavailable);
                    }
                }
                summary = Some(c);
            }
        }
        if self.stats().ack_alert(alert, &by.name).is_none() {
            return Ok(false);
        }
        if let Some(bus) = &self.bus {
            bus.send(BusMsg::AlertAcknowledged {
                id: alert,
                by: by.name.clone(),
            });
        }
        if let Some(c) = summary {
            // The operator's banner shows who acknowledged.
            self.send_summary(&c);
        }
        Ok(true)
    }

    /// Records an emergency flag (or adds to one): by the holding operator (`operator` set) or
    /// by a coordinator (`None`). Opens or extends the encrypted escalation record and alerts
    /// the coordinators.
    pub async fn flag(
        &self,
        operator: Option<OperatorId>,
        by: &Actor,
        conv: ConversationId,
        category: String,
        reason: String,
        client_id: Option<Ulid>,
    ) -> Result<(), ErrorCode> {
        let esc = self.escalations.as_ref().ok_or(ErrorCode::NotEnabled)?;
        let reason = reason.trim().to_owned();
        if reason.is_empty() {
            return Err(ErrorCode::Invalid);
        }
        if reason.chars().count() > crate::protocol::MAX_NOTE_CHARS {
            return Err(ErrorCode::TextTooLong);
        }
        let now = now_ms();
        let current = self
            .store
            .get(conv)
            .await
            .map_err(store_code)?
            .ok_or(ErrorCode::NotFound)?;
        // Check what the state machine would refuse before writing anything.
        let mut trial = current.clone();
        let record = current
            .emergency
            .as_ref()
            .map(|e| e.record)
            .unwrap_or_else(Ulid::new);
        let cmd = Command::Flag {
            operator,
            by: by.name.clone(),
            category: category.clone(),
            record,
        };
        trial
            .apply(cmd.clone(), now)
            .map_err(|e| code_of(&ApplyError::Refused(e)))?;

        // The record first: if it cannot be written, nothing is stored and the client's retry
        // (same id) tries again. Flag entries carry the client id, so a retry adds nothing twice.
        let entry = FlagEntry {
            id: client_id,
            category: category.clone(),
            reason,
            by: by.name.clone(),
            by_id: by.id,
            at: now,
        };
        let created = current.emergency.is_none();
        let written = if created {
            let log = self.store.read_log(conv, 0).await.map_err(store_code)?;
            esc.create(&current, record, self.channel_ref(conv), entry, &log)
        } else {
            esc.update(record, |r| {
                if client_id.is_some() && r.flags.iter().any(|f| f.id == client_id) {
                    return;
                }
                r.flags.push(entry);
                r.actions.push(Action {
                    at: now,
                    actor: by.name.clone(),
                    actor_id: by.id,
                    action: "flag_added".into(),
                    detail: Some(category.clone()),
                });
            })
            .map(|_| ())
        };
        if let Err(err) = written {
            tracing::error!(conversation = %conv, record = %record, error = %err, "could not write escalation record");
            return Err(ErrorCode::Unavailable);
        }
        let a = match self.store.apply(conv, cmd, client_id, now).await {
            Ok(a) => a,
            Err(e) => {
                if created {
                    esc.discard(record);
                }
                return Err(code_of(&e));
            }
        };
        if a.duplicate.is_some() {
            return Ok(());
        }
        if let Some(e) = a.after.emergency.as_ref().filter(|e| e.record != record) {
            // Someone else flagged this conversation at the same moment: keep one record.
            tracing::warn!(conversation = %conv, "concurrent first flags: merged into one record");
            if created {
                esc.discard(record);
            }
            let _ = esc.update(e.record, |r| {
                r.actions.push(Action {
                    at: now,
                    actor: by.name.clone(),
                    actor_id: by.id,
                    action: "flag_added".into(),
                    detail: Some(category.clone()),
                })
            });
        }
        let alert =
            self.stats()
                .raise_emergency(a.after.operator_name.as_deref(), conv, &category, now);
        self.share_alert(alert);
        self.metrics.emergency();
        tracing::warn!(conversation = %conv, record = %record, "emergency flagged; coordinators alerted");
        self.send_summary(&a.after);
        Ok(())
    }

    /// A coordinator clears an open emergency; the record keeps the clearing and its reason.
    /// The record first, as for a flag: a clearing the record cannot show is refused.
    pub async fn clear_flag(
        &self,
        by: &Actor,
        conv: ConversationId,
        reason: String,
    ) -> Result<(), ErrorCode> {
        let esc = self.escalations.as_ref().ok_or(ErrorCode::NotEnabled)?;
        let reason = reason.trim().to_owned();
        if reason.is_empty() {
            return Err(ErrorCode::Invalid);
        }
        if reason.chars().count() > crate::protocol::MAX_NOTE_CHARS {
            return Err(ErrorCode::TextTooLong);
        }
        let now = now_ms();
        let current = self
            .store
            .get(conv)
            .await
            .map_err(store_code)?
            .ok_or(ErrorCode::NotFound)?;
        // Check what the state machine would refuse before writing anything.
        current
            .clone()
            .apply(Command::ClearFlag, now)
            .map_err(|e| code_of(&ApplyError::Refused(e)))?;
        let record = current.emergency.as_ref().map(|e| e.record);
        let action = Action {
            at: now,
            actor: by.name.clone(),
            actor_id: by.id,
            action: "flag_cleared".into(),
            detail: Some(reason),
        };
        if let Some(record) = record {
            if let Err(err) = esc.update(record, |r| r.actions.push(action.clone())) {
                tracing::error!(conversation = %conv, record = %record, error = %err, "could not write escalation record; clearing refused");
                return Err(ErrorCode::Unavailable);
            }
        }
        let a = match self.store.apply(conv, Command::ClearFlag, None, now).await {
            Ok(a) => a,
            Err(e) => {
                // Not cleared after all: the record does not say it was.
                if let Some(record) = record {
                    let _ = esc.update(record, |r| {
                        if let Some(i) = r.actions.iter().rposition(|x| *x == action) {
                            r.actions.remove(i);
                        }
                    });
                }
                return Err(code_of(&e));
            }
        };
        tracing::info!(conversation = %conv, "emergency cleared by a coordinator");
        self.send_summary(&a.after);
        Ok(())
    }

    /// Who acknowledged the latest emergency alert of a conversation, if anyone.
    pub fn emergency_acknowledged_by(&self, conv: ConversationId) -> Option<String> {
        self.stats().emergency_acknowledged_by(conv)
    }

    /// Sends the holding operator a fresh summary of the conversation.
    fn send_summary(&self, conv: &Conversation) {
        if let (Some(op), Some(summary)) = (conv.state.operator(), self.summary_of(conv)) {
            self.to_operator(
                op,
                Outbound::frame(ServerMsg::Conversation {
                    conversation: summary,
                }),
            );
        }
    }

    /// On-duty, connected colleagues of `op`, for transfer.
    pub async fn colleagues(&self, op: OperatorId) -> Result<Vec<serde_json::Value>, ErrorCode> {
        let ops = self.store.operators().await.map_err(store_code)?;
        let convs = self.store.conversations().await.map_err(store_code)?;
        Ok(ops
            .into_iter()
            .filter(|o| o.id != op && o.connected && o.presence == Presence::OnDuty)
            .map(|o| {
                let load: u32 = convs
                    .iter()
                    .filter(|c| c.state.operator() == Some(o.id))
                    .map(|c| c.weight_on(o.capacity))
                    .sum();
                serde_json::json!({
                    "id": o.id, "name": o.name, "state": o.presence,
                    "load": load, "capacity": o.capacity,
                })
            })
            .collect())
    }
}

/// The cluster bus hands what other nodes publish to the engine through this.
impl crate::cluster::Notify for Engine {
    fn on_bus(&self, msg: BusMsg) {
        Engine::on_bus(self, msg)
    }

    async fn wake_local_sockets(&self) {
        Engine::wake_local_sockets(self).await
    }
}
