//! Storage of everything a live helpline needs to share: conversations, the queue, operator
//! presence and each conversation's message log.
//!
//! [`Store`] is the seam between the engine and where state lives. Every method is one atomic
//! step at the domain level (apply a command to a conversation and append what it logs; plan and
//! make offers; take the next person), so an implementation can make each one a lock (memory) or
//! a transaction or Lua script (Redis) and the rules stay in [`crate::conversation`] and
//! [`crate::routing`]. [`conformance`] is the behavioural suite every implementation must pass.
//!
//! Content lives only in the log, and [`Store::delete`] removes a conversation and everything of
//! it: log, client ids, token index.

pub mod conformance;
pub mod links;
mod memory;
pub mod redis;

pub use self::redis::RedisStore;
pub use links::PersonLink;
pub use memory::MemoryStore;

use async_trait::async_trait;
use ulid::Ulid;

use crate::conversation::{
    Command, Conversation, ConversationId, Deadlines, OperatorId, TransitionError,
};
use crate::protocol::{LogEntry, Millis, Presence};

/// People one process's tables with an entry per person (the memory store's conversations and
/// tokens, the socket registry's visitors) have room for from the start: the most sockets one
/// process can hold where the open-files limit is 20,000. A table that grows doubles, and each
/// doubling moves every entry into fresh memory while its lock is held: in the load tests'
/// burst, the doublings at 1,792 and 3,584 people held up the arrivals behind them by up to
/// 5.5 ms. Paid up front instead, this is ~3.8 MB of address space (32,768 slots per table, of
/// 24, 48 and 40 bytes), of which only the tables' control bytes (~100 KB) are resident before
/// people arrive. Past it, the tables still grow.
pub const PRESIZED_SESSIONS: usize = 16_384;

/// The store could not do what was asked; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// Why [`Store::apply`] did not apply a command.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("no such conversation")]
    NotFound,
    #[error(transparent)]
    Refused(#[from] TransitionError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one atomic step did to a conversation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    pub before: Conversation,
    pub after: Conversation,
    /// Log entries the step appended, with their seq.
    pub appended: Vec<LogEntry>,
    /// Set when the client id was seen before: nothing changed, and this is the seq the first
    /// application answered with (if it logged anything).
    pub duplicate: Option<Option<u64>>,
}

/// Runs `cmd` on a copy of `before` and numbers what it logs: the part of every store's
/// `apply` that does not depend on where state lives.
pub(crate) fn advance(
    before: &Conversation,
    cmd: Command,
    now: Millis,
) -> Result<(Conversation, Vec<LogEntry>), TransitionError> {
    let mut after = before.clone();
    let outcome = after.apply(cmd, now)?;
    let mut appended = Vec::with_capacity(outcome.log.len());
    for event in outcome.log {
        after.last_seq += 1;
        appended.push(LogEntry {
            seq: after.last_seq,
            at: now,
            event,
        });
    }
    Ok((after, appended))
}

/// Routing's view of an operator: their record and the conversations they hold.
pub(crate) fn slot_of<'a>(
    rec: &OperatorRecord,
    held: impl Iterator<Item = &'a Conversation>,
) -> crate::routing::OperatorSlot<'_> {
    let mut load = 0;
    let mut has_offer = false;
    for c in held {
        load += c.weight_on(rec.capacity);
        has_offer |= matches!(c.state, crate::conversation::State::Offered { .. });
    }
    slot_with(rec, load, has_offer)
}

/// An operator's routing view from their record and what they hold already summed.
pub(crate) fn slot_with(
    rec: &OperatorRecord,
    load: u32,
    has_offer: bool,
) -> crate::routing::OperatorSlot<'_> {
    crate::routing::OperatorSlot {
        id: rec.id,
        languages: &rec.languages,
        capacity: rec.capacity,
        load,
        presence: rec.presence,
        connected: rec.connected,
        has_offer,
        last_assigned: rec.last_assigned,
        takes_calls: rec.takes_calls,
    }
}

/// An operator's presence as shared between gateway nodes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OperatorRecord {
    pub id: OperatorId,
    pub name: String,
    pub languages: Vec<String>,
    pub capacity: u32,
    pub presence: Presence,
    /// True while a console socket is open.
    pub connected: bool,
    /// When the console socket closed; the operator grace period counts from here.
    pub disconnected_since: Option<Millis>,
    pub last_assigned: Millis,
    /// Has a phone (or voice client) to bridge calls to; only such operators are offered calls.
    #[serde(default)]
    pub takes_calls: bool,
}

/// Answer of [`Store::queue_places`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueuePlaces {
    /// Per id asked, in order: its 1-based place, or `None` when it is not queued.
    pub places: Vec<Option<u32>>,
    pub len: u32,
    /// When the longest-waiting person was queued (`None`: nobody waits).
    pub oldest: Option<Millis>,
}

/// The operators who can take people now: connected and on duty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OnDuty {
    pub operators: u32,
    pub capacity: u32,
}

impl OnDuty {
    pub fn of<'a>(ops: impl Iterator<Item = &'a OperatorRecord>) -> Self {
        ops.filter(|o| o.connected && o.presence == Presence::OnDuty)
            .fold(OnDuty::default(), |d, o| OnDuty {
                operators: d.operators + 1,
                capacity: d.capacity + o.capacity,
            })
    }
}

/// A change to an operator's presence record.
#[derive(Debug, Clone, PartialEq)]
pub enum OperatorUpdate {
    Presence(Presence),
    Connected,
    Disconnected { at: Millis },
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a new conversation (normally queued).
    async fn create(&self, conv: Conversation) -> Result<(), StoreError>;
    async fn get(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError>;
    /// The live conversation whose visitor token hashes to `token_hash`.
    async fn find_by_token(&self, token_hash: &str) -> Result<Option<Conversation>, StoreError>;
    /// Applies `cmd` atomically: the state machine decides, the log grows, indexes follow.
    /// With a `client_id` seen before for this conversation, nothing changes (idempotent retry).
    async fn apply(
        &self,
        id: ConversationId,
        cmd: Command,
        client_id: Option<Ulid>,
        now: Millis,
    ) -> Result<Applied, ApplyError>;
    /// Log entries with seq greater than `after`, in order.
    async fn read_log(&self, id: ConversationId, after: u64) -> Result<Vec<LogEntry>, StoreError>;
    /// Deletes the conversation and everything of it.
    async fn delete(&self, id: ConversationId) -> Result<(), StoreError>;
    /// Every conversation that has not been deleted.
    async fn conversations(&self) -> Result<Vec<Conversation>, StoreError>;
    /// The conversations `pick` chooses, copied: the timer sweep asks every tick for the few
    /// whose deadlines have passed, and stores that can choose without copying the rest do.
    async fn conversations_where(
        &self,
        pick: &(dyn for<'c> Fn(&'c Conversation) -> bool + Send + Sync),
    ) -> Result<Vec<Conversation>, StoreError> {
        Ok(self
            .conversations()
            .await?
            .into_iter()
            .filter(|c| pick(c))
            .collect())
    }
    /// Tells the store the lengths the timers count, so that it can keep its conversations
    /// indexed by their next deadline ([`Store::due_conversations`]). The engine calls this
    /// once, when it is made; a store that keeps no index ignores it.
    fn index_deadlines(&self, _deadlines: Deadlines) {}
    /// Up to `limit` conversations with a deadline at or before `now` (by `deadlines`), for the
    /// timer sweep: stores with a deadline index read only those, not every conversation.
    async fn due_conversations(
        &self,
        deadlines: &Deadlines,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<Conversation>, StoreError> {
        let mut due = self
            .conversations_where(&|c| deadlines.next(c).is_some_and(|t| t <= now))
            .await?;
        due.truncate(limit);
        Ok(due)
    }
    /// Conversations an operator holds (offered, active, wrap-up).
    async fn held_by(&self, operator: OperatorId) -> Result<Vec<Conversation>, StoreError>;
    /// Queued conversations in queue order.
    async fn queue(&self) -> Result<Vec<Conversation>, StoreError>;
    /// Where a queued conversation stands: its 1-based position and the queue's length; `None`
    /// if it is not queued. (Asked at every arrival: stores answer it without copying the queue.)
    async fn queue_position(&self, id: ConversationId) -> Result<Option<(u32, u32)>, StoreError> {
        let queue = self.queue().await?;
        Ok(queue
            .iter()
            .position(|c| c.id == id)
            .map(|i| (i as u32 + 1, queue.len() as u32)))
    }
    /// Queued conversations' ids and when they were queued, in queue order (asked every second
    /// for queue positions: lighter than [`Store::queue`]).
    async fn queue_brief(&self) -> Result<Vec<(ConversationId, Millis)>, StoreError> {
        Ok(self
            .queue()
            .await?
            .into_iter()
            .map(|c| (c.id, c.queued_at))
            .collect())
    }
    /// The places of `ids` in the queue (1-based, `None`: not queued), the queue's length, and
    /// when its longest-waiting person was queued: what one node tells its own waiting people
    /// every second. Shared stores answer with ranks of those ids only, not the whole queue.
    async fn queue_places(&self, ids: &[ConversationId]) -> Result<QueuePlaces, StoreError> {
        let brief = self.queue_brief().await?;
        let at: std::collections::HashMap<ConversationId, u32> = brief
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (*id, i as u32 + 1))
            .collect();
        Ok(QueuePlaces {
            places: ids.iter().map(|id| at.get(id).copied()).collect(),
            len: brief.len() as u32,
            oldest: brief.iter().map(|(_, t)| *t).min(),
        })
    }
    /// Creates or replaces an operator's record.
    async fn put_operator(&self, record: OperatorRecord) -> Result<(), StoreError>;
    async fn update_operator(
        &self,
        id: OperatorId,
        update: OperatorUpdate,
    ) -> Result<Option<OperatorRecord>, StoreError>;
    async fn operators(&self) -> Result<Vec<OperatorRecord>, StoreError>;
    /// One operator's record and their load (what they hold, weighed on their capacity), for
    /// the presence frame their console gets after every change to what they hold.
    async fn operator_load(
        &self,
        id: OperatorId,
    ) -> Result<Option<(OperatorRecord, u32)>, StoreError> {
        let Some(rec) = self.operators().await?.into_iter().find(|o| o.id == id) else {
            return Ok(None);
        };
        let load = self
            .held_by(id)
            .await?
            .iter()
            .map(|c| c.weight_on(rec.capacity))
            .sum();
        Ok(Some((rec, load)))
    }
    /// How many operators are connected and on duty, and their capacities summed (told to
    /// every person who arrives, with their place in the queue).
    async fn on_duty(&self) -> Result<OnDuty, StoreError> {
        Ok(OnDuty::of(self.operators().await?.iter()))
    }
    /// Plans offers with [`crate::routing::plan`] and makes them, atomically.
    async fn dispatch(
        &self,
        now: Millis,
        offer_ms: u64,
        language_fallback_ms: u64,
    ) -> Result<Vec<Applied>, StoreError>;
    /// Gives `operator` the first queued conversation they may take, atomically.
    async fn take_next(
        &self,
        operator: OperatorId,
        now: Millis,
        language_fallback_ms: u64,
    ) -> Result<Option<Applied>, ApplyError>;
    /// Whether the store can serve requests now (for readiness).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Shared stores: tells the other gateway nodes that this one is alive, and returns the
    /// steps that mark the people and operators of nodes that stopped doing so as disconnected
    /// (their grace periods then run as if their sockets had closed). Nothing for one process.
    async fn heartbeat(&self, _now: Millis) -> Result<Vec<Applied>, StoreError> {
        Ok(Vec::new())
    }
    /// Shared stores: true when the store lost what it held since this was last asked (a
    /// restart without persistence, a flush, a failover to a replica that never had it), told
    /// by a marker key the first node writes and every node checks; each node is told once per
    /// loss. Always false for one process, whose memory is the store.
    async fn lost_data(&self) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// Shared stores: whether this node holds (or has now taken) the lease on `task` for the
    /// next `ttl_ms`, so that work every node could do (the timer sweep) is done by one at a
    /// time; when the holder stops renewing, another node takes over. Always true for one
    /// process.
    async fn lead(&self, _task: &str, _ttl_ms: u64) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Shared stores: `Some(true)` the first time `key` (an operator-level client id) is
    /// seen by any node in the last ten minutes, `Some(false)` after. `None`: not shared (the
    /// engine remembers recent ids itself).
    async fn first_time(&self, _key: &str) -> Result<Option<bool>, StoreError> {
        Ok(None)
    }
    /// Takes the shared key of an alert episode (`SET NX` with a time to live): `true` for the
    /// first node to take it, `false` while it is held. One process (the memory store) keeps
    /// the keys in memory.
    async fn claim_episode(&self, _key: &str, _ttl_ms: u64) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Ends an alert episode: its key may be taken again.
    async fn end_episode(&self, _key: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// Shared stores: how many gateway nodes are alive by their heartbeats. `None` for one
    /// process (there are no other nodes to miss).
    async fn live_nodes(&self) -> Result<Option<u32>, StoreError> {
        Ok(None)
    }
    /// Shared stores: counts one event (`started`, `closed`, `abandoned`) of a day (in days
    /// since the epoch, Japan time) for every node's statistics. Nothing for one process, whose
    /// engine counts in memory.
    async fn count_today(&self, _day: u64, _event: &'static str) -> Result<(), StoreError> {
        Ok(())
    }
    /// Shared stores: the day's counts from every node; `None` when the engine's own are all.
    async fn today_counts(
        &self,
        _day: u64,
    ) -> Result<Option<std::collections::HashMap<String, u64>>, StoreError> {
        Ok(None)
    }
    /// Shared stores: gives up the lease on `task` if this node holds it (another node may
    /// take it at once). Nothing for one process.
    async fn release(&self, _task: &str) -> Result<(), StoreError> {
        Ok(())
    }

    // A connector's people ([`links`]). `key` is the connector's keyed hash of the person's id
    // on the channel, never the id itself.

    /// Links the person `key` to `link.conversation` unless they are linked already, and
    /// returns the link that holds (so of two nodes racing, both use the first). Shared
    /// stores keep it for `ttl_ms`, renewed by every call; every store drops it when the
    /// conversation is deleted.
    async fn link(
        &self,
        key: &str,
        link: &PersonLink,
        ttl_ms: u64,
    ) -> Result<PersonLink, StoreError>;
    /// The conversation the person `key` is in, if any.
    async fn linked(&self, key: &str) -> Result<Option<PersonLink>, StoreError>;
    /// Forgets the person `key`'s link if it is to `conv` (the conversation ended).
    async fn unlink(&self, key: &str, conv: ConversationId) -> Result<(), StoreError>;
    /// The highest log seq of `conv` a connector has sent to its person (0: none), shared so
    /// that a sender that takes over from another node neither repeats nor skips.
    async fn sent_through(&self, conv: ConversationId) -> Result<u64, StoreError>;
    /// Moves [`Store::sent_through`] forward to `seq` (never back).
    async fn set_sent_through(&self, conv: ConversationId, seq: u64) -> Result<(), StoreError>;
    /// Counts a closed conversation that took `ms` from answer to close into the moving
    /// average of handling time every node estimates waits from; returns the new average.
    async fn observe_handle_time(&self, ms: u64) -> Result<f64, StoreError>;
    /// The moving average of handling time (ms); `None` until a conversation has closed.
    async fn handle_time(&self) -> Result<Option<f64>, StoreError>;
}
