//! The engine: the helpline's behaviour, between the sockets and the store.
//!
//! Sockets and connectors call one method per client action; the methods are grouped by who
//! acts: the person (`visitor.rs`), the operator (`operator.rs`), the coordinator and emergency
//! flags (`coordinator.rs`), and the system's own timers ([`timers`]). Each action asks the
//! [`Store`] for one atomic step (`Engine::apply`, here) and hands the result to
//! [`Engine::publish`] (`publish.rs`), the one place that decides who must hear about a change
//! and that deletes a conversation when it ends. Statistics for the coordinator view and metrics
//! are in [`stats`]; refusals are an [`EngineError`] (`error.rs`). This file holds the
//! [`Engine`] itself, its construction, and the helpers every part shares.

mod access;
mod alerting;
mod coordinator;
mod error;
pub mod follower;
mod operator;
mod people;
mod publish;
pub mod registry;
mod runtime;
mod settings;
pub mod stats;
pub mod store_watch;
pub mod timers;
mod visitor;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use ulid::Ulid;

use crate::clock::Clock;
use crate::cluster::{BusMsg, BusSender};
use crate::conversation::{Command, Conversation, ConversationId, OperatorId};
use crate::escalation::Escalations;
use crate::metrics::Metrics;
use crate::protocol::{ConversationSummary, Millis, Offer, Presence, WithdrawReason};
use crate::store::{Applied, Store};
pub use error::EngineError;
pub use registry::{Handle, Outbound, Registry};
pub use settings::ConversationSettings;
use stats::StatsState;

// Re-exported so that `engine::hash_token` keeps working; modules below the engine import it
// from `token` (see ARCHITECTURE.md, "Module dependencies").
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
    /// Where "now" comes from (the system's clock in production, a manual or tokio one in tests).
    clock: Clock,
    /// Woken when the queue or an operator's capacity may allow a new offer.
    dispatch: Notify,
    /// Set by a wake from this node (not from the bus): if another node is the dispatcher,
    /// the wake is passed to it over the bus ([`crate::cluster::BusMsg::Dispatch`]).
    dispatch_local: AtomicBool,
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
    /// The heartbeat's outcomes: whether this node is cut off from the store long enough for
    /// its clients to be sent elsewhere (only the heartbeat task locks it, never across await).
    store_watch: Mutex<store_watch::StoreWatch>,
    /// Thresholds of the server-side alerts (`[alerts]`).
    alert_cfg: crate::alerting::AlertSettings,
    /// The alert conditions holding now, as this node evaluated them last.
    conditions: Mutex<crate::alerting::Conditions>,
    /// The thin-staff threshold in force: `[alerts] min_on_duty`, or an admin's runtime
    /// setting (`runtime.rs`).
    min_on_duty: std::sync::atomic::AtomicU32,
    /// The referral directory (closing messages' helplines, runtime settings); `None` in tests
    /// that build an engine alone (the built-in seed's helplines are used).
    directory: Option<Arc<crate::directory::Directory>>,
    /// Alert delivery to the people on call (`crate::oncall`); `None` in engines without a
    /// database (unit tests).
    pub oncall: Option<Arc<crate::oncall::Oncall>>,
}

/// How many recent operator-level client ids are remembered per operator.
const RECENT_IDS: usize = 64;

fn new_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The reason an operator who loses an offer through `cmd` is given.
fn withdrawn_by(cmd: &Command) -> WithdrawReason {
    match cmd {
        Command::Accept { .. } => WithdrawReason::Taken,
        Command::Decline { .. } => WithdrawReason::Declined,
        Command::VisitorEnd => WithdrawReason::Abandoned,
        _ => WithdrawReason::Timeout,
    }
}

/// The operator whose load `cmd` changes, who gets their presence frame again after it.
fn load_changed_by(cmd: &Command) -> Option<OperatorId> {
    match cmd {
        Command::Accept { operator, .. }
        | Command::Requeue { operator }
        | Command::WrapUp { operator, .. } => Some(*operator),
        Command::Transfer { from, .. } => Some(*from),
        _ => None,
    }
}

impl Engine {
    /// An engine on the system's clock; see [`Engine::with_clock`].
    pub fn new(store: Arc<dyn Store>, cfg: ConversationSettings, metrics: Arc<Metrics>) -> Self {
        store.index_deadlines(cfg.deadlines());
        Engine {
            store,
            registry: Registry::default(),
            metrics,
            cfg,
            clock: Clock::system(),
            dispatch: Notify::new(),
            dispatch_local: AtomicBool::new(false),
            stats: Mutex::new(StatsState::default()),
            recent: Mutex::new(HashMap::new()),
            channel_refs: Mutex::new(HashMap::new()),
            escalations: None,
            overloaded: AtomicBool::new(false),
            bus: None,
            store_watch: Mutex::new(store_watch::StoreWatch::default()),
            alert_cfg: crate::alerting::AlertSettings::default(),
            conditions: Mutex::new(crate::alerting::Conditions::default()),
            min_on_duty: std::sync::atomic::AtomicU32::new(
                crate::alerting::AlertSettings::default().min_on_duty,
            ),
            directory: None,
            oncall: None,
        }
    }

    /// Reads the time from `clock` (startup passes `AppState`'s; tests a manual or tokio one).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Shares this engine's changes with other gateway nodes (Redis store).
    pub fn with_bus(mut self, bus: BusSender) -> Self {
        self.bus = Some(bus);
        self
    }

    pub fn with_alerts(mut self, cfg: crate::alerting::AlertSettings) -> Self {
        self.min_on_duty = std::sync::atomic::AtomicU32::new(cfg.min_on_duty);
        self.alert_cfg = cfg;
        self
    }

    /// How often alert conditions are evaluated.
    pub fn alert_check_ms(&self) -> u64 {
        self.alert_cfg.check_ms
    }

    /// Pages the people on call when an alert is announced.
    pub fn with_oncall(mut self, oncall: Arc<crate::oncall::Oncall>) -> Self {
        self.oncall = Some(oncall);
        self
    }

    pub fn with_escalations(mut self, escalations: Option<Arc<Escalations>>) -> Self {
        self.escalations = escalations;
        self
    }

    /// Milliseconds since the Unix epoch, now, from the engine's clock.
    pub fn now_ms(&self) -> Millis {
        self.clock.now_ms()
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

    fn stats(&self) -> std::sync::MutexGuard<'_, StatsState> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the dispatcher to look for offers to make.
    pub fn wake_dispatch(&self) {
        self.dispatch_local
            .store(true, std::sync::atomic::Ordering::Release);
        self.dispatch.notify_one();
    }

    /// [`Engine::wake_dispatch`] for a step every node hears of (published on the bus, or
    /// heard from it): the dispatcher, on whichever node, is woken by the step itself, so the
    /// wake is not passed on.
    fn wake_dispatch_here(&self) {
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

    /// One step a person or an operator takes: applies `cmd` to the conversation in the store
    /// (once per `client_id`), publishes what it did, and sends the operator whose load it
    /// changed their presence frame again.
    async fn apply(
        &self,
        id: ConversationId,
        cmd: Command,
        client_id: Option<Ulid>,
    ) -> Result<Applied, EngineError> {
        let withdrawn = withdrawn_by(&cmd);
        let load_changed = load_changed_by(&cmd);
        let applied = self.store.apply(id, cmd, client_id, self.now_ms()).await?;
        self.publish(&applied, withdrawn).await;
        if let Some(op) = load_changed {
            self.send_presence(op).await;
        }
        Ok(applied)
    }

    fn seq_of(a: &Applied) -> Option<u64> {
        match a.duplicate {
            Some(seq) => seq,
            None => a.appended.last().map(|e| e.seq),
        }
    }
}

/// The cluster bus hands what other nodes publish to the engine through this.
impl crate::cluster::Notify for Engine {
    fn on_bus(&self, msg: BusMsg) {
        Engine::on_bus(self, msg)
    }

    fn wants(&self, to: &crate::cluster::Audience) -> bool {
        if self.registry.has_visitor(to.conversation)
            || to
                .operators
                .iter()
                .any(|op| self.registry.has_operator(*op))
        {
            return true;
        }
        if to.dispatch {
            self.wake_dispatch_here();
        }
        false
    }

    async fn wake_local_sockets(&self) {
        Engine::wake_local_sockets(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Channel;
    use crate::store::MemoryStore;

    fn engine(clock: &Clock) -> Engine {
        Engine::new(
            Arc::new(MemoryStore::new()),
            ConversationSettings::default(),
            Arc::new(Metrics::new()),
        )
        .with_clock(clock.clone())
    }

    #[tokio::test]
    async fn the_engine_reads_the_time_from_its_clock() {
        let clock = Clock::manual(1_000_000);
        let engine = engine(&clock);
        let (conv, _) = engine.start_visitor(Channel::Web, None).await.unwrap();
        assert_eq!(conv.created_at, 1_000_000);
        clock.advance(5_000);
        engine
            .visitor_send(conv.id, Ulid::new(), "hello".into())
            .await
            .unwrap();
        let stored = engine.store.get(conv.id).await.unwrap().unwrap();
        assert_eq!(stored.last_activity, 1_005_000);
    }

    #[tokio::test]
    async fn a_step_on_a_conversation_that_does_not_exist_is_not_found() {
        let engine = engine(&Clock::manual(0));
        let err = engine.visitor_end(Ulid::new(), Ulid::new()).await;
        assert!(matches!(err, Err(EngineError::NotFound)), "{err:?}");
    }

    #[test]
    fn each_step_names_who_loses_an_offer_and_whose_load_changes() {
        let op = Ulid::new();
        let accept = Command::Accept {
            operator: op,
            operator_name: "A".into(),
        };
        assert_eq!(withdrawn_by(&accept), WithdrawReason::Taken);
        assert_eq!(load_changed_by(&accept), Some(op));
        let decline = Command::Decline { operator: op };
        assert_eq!(withdrawn_by(&decline), WithdrawReason::Declined);
        assert_eq!(load_changed_by(&decline), None);
        assert_eq!(
            withdrawn_by(&Command::VisitorEnd),
            WithdrawReason::Abandoned
        );
        assert_eq!(
            load_changed_by(&Command::Requeue { operator: op }),
            Some(op)
        );
    }
}
