//! The shared store: everything of [`Store`] in Redis, so that several gateway processes
//! ("nodes") serve one helpline.
//!
//! Keys, under a prefix `P` (`store.key_prefix`):
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `P:c:{id}` | hash | `v` version, `d` the conversation (JSON), `t` token hash, `h` holder, `q` queued, `n` the node the person is connected to |
//! | `P:log:{id}` | stream | the log; entry id `{seq}-1`, field `e` (JSON), so resuming from a seq is `XRANGE` |
//! | `P:cid:{id}` | hash | client ids already applied → the seq they answered with |
//! | `P:tok:{hash}` | string | resume-token hash → conversation id |
//! | `P:convs`, `P:q`, `P:held:{op}` | sets | live conversations, queued ones, those an operator holds |
//! | `P:qz` | sorted set | queued ones again, scored in queue order ([`queue_score`]): a place in the queue is `ZRANK`, the queue's ids one `ZRANGE`, without reading any conversation |
//! | `P:qt` | hash | queued ones again → when they were queued (ms), for the longest wait |
//! | `P:qw` | sorted set | queued ones again, scored by when they were queued: the longest wait is `ZRANGE 0 0` |
//! | `P:arrivals` | string | the last arrival number given ([`Conversation::arrival`]; `INCR` in `commit.lua`); the conversation's hash keeps its own as `a` |
//! | `P:o:{op}` | hash | `v` version, `d` operator record (JSON), `n` the node of their console, `l` load version (grows whenever a conversation starts or stops being held by them) |
//! | `P:ops`, `P:nodes` | sets | operator ids, gateway nodes that have beaten |
//! | `P:duty` | hash | operators on duty and connected → their capacity (`commit.lua`, with each record): who is on duty without reading every record |
//! | `P:node:{node}` | string | node heartbeat, expires after [`NODE_TTL_SECS`] |
//! | `P:seen:{op}:{id}` | string | an operator-level client id already applied (10 minutes) |
//! | `P:dl` | sorted set | conversations with a timer to come, scored by their next deadline (ms): the sweep reads only those due (`deadlines`) |
//! | `P:lease:{task}` | string | the node doing `task` (the timer sweep, the dispatcher) for now |
//! | `P:today:{day}` | hash | the day's counts (started, closed, abandoned), kept 8 days |
//! | `P:sess:{hash}`, `P:usess:{user}` | string, set | operator sessions ([`RedisSessions`]) |
//! | `P:link:{key}`, `P:clink:{id}`, `P:sent:{id}`, `P:handle` | | the connectors' people and the shared handling time (`links`) |
//! | `P:call:{id}` | hash | a live phone call's shared record (`calls`): `v` version, `p` phase, `s` seq acted on, `w` waiting since, `h` last hold, `b` bridge claimed at; deleted with conversation `id` |
//! | `P:epoch` | string | a marker the first node writes (`SET NX`, no TTL); when it vanishes or changes, Redis lost its data ([`Store::lost_data`]) |
//!
//! Every step is optimistic: read (with versions), run the same pure rules as the memory store
//! ([`crate::conversation`], [`crate::routing`]), then write with `commit.lua`, which checks every
//! version it was given (for offers and takes also the operator's load version) and writes
//! nothing if one moved on; the step is then read and tried again. So no conversation is offered
//! to two operators and no operator exceeds capacity, whichever nodes race, while steps on
//! different conversations and operators do not hold each other up. Every key of a
//! conversation carries a TTL (`store.ttl_secs`) as a backstop and is deleted by `delete.lua`
//! at close. With `store.wait_replicas` > 0 a write is acknowledged only once that many replicas
//! have it (`WAIT`), which bounds what a failover can lose.
//!
//! Parts, by what they read and write:
//! - this file: [`RedisStore`], its options and connection helpers, and [`Store`] for it, each
//!   method handing over to the part below that owns it;
//! - `conversations`: reading conversations (`P:c:*` and the sets that index them);
//! - `steps`: writing them, every write through `commit.lua` with its version checks, and
//!   `WAIT` for replicas;
//! - `deadlines`: the deadline index `P:dl` the timer sweep reads;
//! - `places`: where a node's own waiting people stand (`ZRANK` each), for their positions;
//! - `queue`: the queue's order (`P:q`, `P:qz`, `P:qt`), offers and takes;
//! - `operators`: operator records, presence and loads (`P:o:*`, `P:ops`);
//! - `logs`: the logs as streams, and deleting a conversation (`delete.lua`);
//! - `health`: node heartbeats and reaping, the `P:epoch` marker, ping;
//! - `shared`: the small facts all nodes share: leases, operator-level client ids, the day's
//!   counts;
//! - `links`: the connectors' people (keyed hashes → conversations), the senders' shared
//!   cursors, the shared handling time;
//! - `calls`: live phone calls' shared records (`P:call:{id}`, written with a version check);
//! - `conn` (one Redis or Sentinel's primary), `sessions` (operator sessions shared by nodes).

mod calls;
mod conn;
mod conversations;
mod deadlines;
mod health;
mod links;
mod logs;
mod operators;
mod places;
mod queue;
mod sessions;
mod shared;
mod steps;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, RedisResult, Script, ScriptInvocation};
use ulid::Ulid;

pub use conn::{redacted, Redis};
pub use health::NODE_TTL_SECS;
pub use sessions::RedisSessions;

use super::{
    Applied, ApplyError, CallRecord, OnDuty, OperatorRecord, OperatorUpdate, PersonLink,
    QueuePlaces, Store, StoreError,
};
use crate::conversation::{Command, Conversation, ConversationId, Deadlines, OperatorId};
use crate::protocol::{LogEntry, Millis};

/// How often an optimistic step is tried before the store reports itself unavailable.
const ATTEMPTS: usize = 64;

/// Settings of the shared store (from `store.*`).
#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub url: String,
    pub key_prefix: String,
    /// Backstop TTL of every key of a conversation, renewed by each write.
    pub ttl_secs: u64,
    /// Replicas that must have a write before it is acknowledged (0: do not wait).
    pub wait_replicas: u32,
    pub wait_timeout_ms: u64,
    /// This node's id (unique per process).
    pub node: String,
    /// PEM certificates a `rediss://` server must chain to (else the system's roots).
    pub tls_ca_file: Option<std::path::PathBuf>,
}

pub struct RedisStore {
    redis: Arc<Redis>,
    opts: RedisOptions,
    commit: Script,
    delete: Script,
    lease: Script,
    /// Since when this node's heartbeats have succeeded without a break. Other nodes are judged
    /// only after [`NODE_TTL_SECS`] of that: after an outage of Redis every node's heartbeat has
    /// expired, and each must have had the time to renew its own first.
    beating_since: std::sync::Mutex<Option<std::time::Instant>>,
    /// The store's marker as this node last read it ([`Store::lost_data`]); `None` until read.
    epoch: std::sync::Mutex<Option<String>>,
    /// The lengths the timers count ([`Store::index_deadlines`]): with them every commit keeps
    /// `P:dl`; without (a store used by no engine) the index is left alone.
    deadlines: std::sync::OnceLock<Deadlines>,
    /// The queue as [`Store::queue_places`] last read it (`places`).
    places: std::sync::Mutex<places::Cached>,
    /// When this node last renewed each lease it holds ([`Store::lead`]).
    leases: std::sync::Mutex<HashMap<String, std::time::Instant>>,
    /// When this node last found each lease held by another node ([`Store::lead`]).
    leases_elsewhere: std::sync::Mutex<HashMap<String, std::time::Instant>>,
    /// The operator ids (`P:ops`) as the dispatcher last read them: its next read asks for
    /// their records and the head of the queue in the same round trip (`operators`).
    op_ids: std::sync::Mutex<Vec<String>>,
    /// Operator records (by id) as the dispatcher last read or wrote them, with their versions:
    /// its reads ask for a record only when its version moved on (`operators`).
    op_recs: std::sync::Mutex<HashMap<String, (u64, OperatorRecord)>>,
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Unavailable(format!("unreadable {what} in redis"))
}

/// What an optimistic step says when it lost [`ATTEMPTS`] races in a row.
fn contended() -> StoreError {
    StoreError::Unavailable("too much contention".into())
}

impl RedisStore {
    /// Opens the store (connecting lazily) and loads its scripts.
    pub fn open(opts: RedisOptions) -> Result<RedisStore, StoreError> {
        let ca =
            match &opts.tls_ca_file {
                Some(path) => Some(std::fs::read(path).map_err(|e| {
                    StoreError::Unavailable(format!("reading store.tls_ca_file: {e}"))
                })?),
                None => None,
            };
        let redis = Redis::open_with_ca(&opts.url, ca).map_err(unavailable)?;
        Ok(RedisStore {
            redis: Arc::new(redis),
            opts,
            commit: Script::new(include_str!("commit.lua")),
            delete: Script::new(include_str!("delete.lua")),
            lease: Script::new(health::LEASE),
            beating_since: std::sync::Mutex::new(None),
            epoch: std::sync::Mutex::new(None),
            deadlines: std::sync::OnceLock::new(),
            leases: std::sync::Mutex::new(HashMap::new()),
            leases_elsewhere: std::sync::Mutex::new(HashMap::new()),
            op_ids: std::sync::Mutex::new(Vec::new()),
            op_recs: std::sync::Mutex::new(HashMap::new()),
            places: std::sync::Mutex::new(places::Cached::default()),
        })
    }

    /// The connection layer (shared with the cluster bus and the session store).
    pub fn redis(&self) -> Arc<Redis> {
        Arc::clone(&self.redis)
    }

    pub fn options(&self) -> &RedisOptions {
        &self.opts
    }

    /// `P:part:part...`: a key under this store's prefix.
    fn key(&self, parts: &[&str]) -> String {
        let mut k = self.opts.key_prefix.clone();
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    async fn conn(&self) -> Result<MultiplexedConnection, StoreError> {
        let r = self.redis.conn().await;
        self.redis.check(r).map_err(unavailable)
    }

    /// Runs one command (or pipeline) and notes a broken connection.
    async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let conn = self.conn().await?;
        let r = f(conn).await;
        self.redis.check(r).map_err(unavailable)
    }

    /// Runs a pipeline ([`Self::run`]).
    async fn query<T: FromRedisValue>(&self, pipe: redis::Pipeline) -> Result<T, StoreError> {
        self.run(|mut c| async move { pipe.query_async(&mut c).await })
            .await
    }

    /// Runs one command built with `redis::cmd` ([`Self::run`]).
    async fn query_cmd<T: FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StoreError> {
        self.run(|mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    /// Runs a Lua script with its arguments ([`Self::run`]).
    async fn invoke<T: FromRedisValue>(&self, inv: ScriptInvocation<'_>) -> Result<T, StoreError> {
        self.run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await
    }

    /// Waits a little before trying an optimistic step again, more after each conflict.
    async fn back_off(attempt: usize) {
        if attempt > 2 {
            let ms = (attempt as u64).min(20);
            let jitter: u64 = rand::random::<u64>() % (ms + 1);
            tokio::time::sleep(Duration::from_millis(ms / 2 + jitter)).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

/// Each method hands over to the part that owns it (named in the module doc).
#[async_trait]
impl Store for RedisStore {
    async fn create(&self, conv: Conversation) -> Result<(), StoreError> {
        self.create_conversation(conv).await
    }

    async fn get(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        Ok(self.load(id).await?.map(|l| l.conv))
    }

    async fn find_by_token(&self, token_hash: &str) -> Result<Option<Conversation>, StoreError> {
        self.by_token(token_hash).await
    }

    async fn apply(
        &self,
        id: ConversationId,
        cmd: Command,
        client_id: Option<Ulid>,
        now: Millis,
    ) -> Result<Applied, ApplyError> {
        self.apply_step(id, cmd, client_id, now, None).await
    }

    async fn read_log(&self, id: ConversationId, after: u64) -> Result<Vec<LogEntry>, StoreError> {
        self.log_after(id, after).await
    }

    async fn delete(&self, id: ConversationId) -> Result<(), StoreError> {
        self.delete_conversation(id).await
    }

    async fn conversations(&self) -> Result<Vec<Conversation>, StoreError> {
        self.live().await
    }

    async fn held_by(&self, operator: OperatorId) -> Result<Vec<Conversation>, StoreError> {
        self.held(operator).await
    }

    fn index_deadlines(&self, deadlines: Deadlines) {
        let _ = self.deadlines.set(deadlines);
    }

    async fn due_conversations(
        &self,
        deadlines: &Deadlines,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<Conversation>, StoreError> {
        if self.deadlines.get() == Some(deadlines) {
            return self.due_from_index(deadlines, now, limit).await;
        }
        // Not the lengths the index was written with: read every conversation.
        let mut due = self
            .conversations_where(&|c| deadlines.next(c).is_some_and(|t| t <= now))
            .await?;
        due.truncate(limit);
        Ok(due)
    }

    async fn queue(&self) -> Result<Vec<Conversation>, StoreError> {
        Ok(self.queued().await?.into_iter().map(|l| l.conv).collect())
    }

    async fn queue_position(&self, id: ConversationId) -> Result<Option<(u32, u32)>, StoreError> {
        self.place_in_queue(id).await
    }

    async fn queue_brief(&self) -> Result<Vec<(ConversationId, Millis)>, StoreError> {
        self.queue_waits().await
    }

    async fn queue_places(&self, ids: &[ConversationId]) -> Result<QueuePlaces, StoreError> {
        self.places_of(ids).await
    }

    async fn put_operator(&self, record: OperatorRecord) -> Result<(), StoreError> {
        self.put_op(record).await
    }

    async fn update_operator(
        &self,
        id: OperatorId,
        update: OperatorUpdate,
    ) -> Result<Option<OperatorRecord>, StoreError> {
        self.update_op(id, update, None).await
    }

    async fn on_duty(&self) -> Result<OnDuty, StoreError> {
        self.duty().await
    }

    async fn operators(&self) -> Result<Vec<OperatorRecord>, StoreError> {
        Ok(self.load_ops().await?.into_iter().map(|o| o.rec).collect())
    }

    async fn operator_load(
        &self,
        id: OperatorId,
    ) -> Result<Option<(OperatorRecord, u32)>, StoreError> {
        self.op_with_load(id).await
    }

    async fn dispatch(
        &self,
        now: Millis,
        offer_ms: u64,
        language_fallback_ms: u64,
    ) -> Result<Vec<Applied>, StoreError> {
        self.offer_queued(now, offer_ms, language_fallback_ms).await
    }

    async fn take_next(
        &self,
        operator: OperatorId,
        now: Millis,
        language_fallback_ms: u64,
    ) -> Result<Option<Applied>, ApplyError> {
        self.take_for(operator, now, language_fallback_ms).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.query_cmd(redis::cmd("PING")).await?;
        Ok(())
    }

    async fn lead(&self, task: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        self.hold_lease(task, ttl_ms).await
    }

    async fn first_time(&self, key: &str) -> Result<Option<bool>, StoreError> {
        self.seen_first(key).await
    }

    async fn claim_episode(&self, key: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        self.take_episode(key, ttl_ms).await
    }

    async fn end_episode(&self, key: &str) -> Result<(), StoreError> {
        self.drop_episode(key).await
    }

    async fn live_nodes(&self) -> Result<Option<u32>, StoreError> {
        self.count_live_nodes().await.map(Some)
    }

    async fn count_today(&self, day: u64, event: &'static str) -> Result<(), StoreError> {
        self.count_on(day, event).await
    }

    async fn today_counts(&self, day: u64) -> Result<Option<HashMap<String, u64>>, StoreError> {
        self.counts_on(day).await
    }

    async fn lost_data(&self) -> Result<bool, StoreError> {
        self.epoch_changed().await
    }

    async fn heartbeat(&self, now: Millis) -> Result<Vec<Applied>, StoreError> {
        self.beat(now).await
    }

    async fn release(&self, task: &str) -> Result<(), StoreError> {
        self.release_lease(task).await
    }

    async fn link(
        &self,
        key: &str,
        link: &PersonLink,
        ttl_ms: u64,
    ) -> Result<PersonLink, StoreError> {
        self.link_person(key, link, ttl_ms).await
    }

    async fn linked(&self, key: &str) -> Result<Option<PersonLink>, StoreError> {
        self.person_link(key).await
    }

    async fn unlink(&self, key: &str, conv: ConversationId) -> Result<(), StoreError> {
        self.unlink_person(key, conv).await
    }

    async fn sent_through(&self, conv: ConversationId) -> Result<u64, StoreError> {
        self.sent_cursor(conv).await
    }

    async fn set_sent_through(&self, conv: ConversationId, seq: u64) -> Result<(), StoreError> {
        self.move_sent_cursor(conv, seq).await
    }

    async fn observe_handle_time(&self, ms: u64) -> Result<f64, StoreError> {
        self.observe_handle(ms).await
    }

    async fn handle_time(&self) -> Result<Option<f64>, StoreError> {
        self.shared_handle().await
    }

    async fn call(&self, conv: ConversationId) -> Result<Option<CallRecord>, StoreError> {
        self.call_record(conv).await
    }

    async fn put_call(
        &self,
        conv: ConversationId,
        rec: &CallRecord,
        ttl_ms: u64,
    ) -> Result<Option<CallRecord>, StoreError> {
        self.write_call(conv, rec, ttl_ms).await
    }
}

#[cfg(test)]
mod tests;
