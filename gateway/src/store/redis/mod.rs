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
//! | `P:arrivals` | string | the last arrival number given ([`Conversation::arrival`]; `INCR` in `commit.lua`); the conversation's hash keeps its own as `a` |
//! | `P:o:{op}` | hash | `v` version, `d` operator record (JSON), `n` the node of their console, `l` load version (grows whenever a conversation starts or stops being held by them) |
//! | `P:ops`, `P:nodes` | sets | operator ids, gateway nodes that have beaten |
//! | `P:node:{node}` | string | node heartbeat, expires after [`NODE_TTL_SECS`] |
//! | `P:seen:{op}:{id}` | string | an operator-level client id already applied (10 minutes) |
//! | `P:lease:{task}` | string | the node doing `task` (the timer sweep) for now |
//! | `P:today:{day}` | hash | the day's counts (started, closed, abandoned), kept 8 days |
//! | `P:sess:{hash}`, `P:usess:{user}` | string, set | operator sessions ([`RedisSessions`]) |
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

mod conn;
mod sessions;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, RedisResult, Script};
use ulid::Ulid;

pub use conn::{redacted, Redis};
pub use sessions::RedisSessions;

use super::{
    advance, slot_of, Applied, ApplyError, OperatorRecord, OperatorUpdate, Store, StoreError,
};
use crate::conversation::{Command, Conversation, ConversationId, OperatorId, State};
use crate::protocol::{LogEntry, Millis};
use crate::routing::{self, OperatorSlot};

/// A node that has not renewed its heartbeat for this long is taken for dead.
pub const NODE_TTL_SECS: u64 = 6;
/// Takes or renews a lease: KEYS[1] the lease, ARGV[1] this node, ARGV[2] its length in ms.
const LEASE: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

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
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Unavailable(format!("unreadable {what} in redis"))
}

/// A conversation as read, with what its next write must check.
#[derive(Debug, Clone)]
struct Loaded {
    version: u64,
    conv: Conversation,
    node: String,
}

/// An operator record as read, with its versions and console node.
#[derive(Debug, Clone)]
struct LoadedOp {
    version: u64,
    /// Grows whenever a conversation starts or stops being held by this operator.
    load_version: u64,
    rec: OperatorRecord,
    node: String,
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Written,
    /// A conversation's version (or its client ids) moved on.
    ConversationMoved,
    /// An operator's record or load moved on.
    OperatorMoved,
}

/// One conversation write of a commit.
struct ConvWrite<'a> {
    expect: u64,
    conv: &'a Conversation,
    /// `None` keeps the stored node; `Some("")` clears it.
    node: Option<&'a str>,
    client: Option<(Ulid, Option<u64>)>,
    entries: &'a [LogEntry],
}

/// Bits of a queue score below the priority and the tier: the arrival number, up to 2^42 (the
/// counter starts at the first arrival's time in ms, which reaches 2^42 in the year 2109).
const ARRIVAL_BITS: u32 = 42;

/// A queued conversation's score in `P:qz`: priority, then tier, then its arrival number, so
/// that the scores sort as [`Conversation::queue_key`] does, and no two are equal (arrival
/// numbers are unique). Exact in an `f64`: 8 + 1 + 42 bits. A conversation that has yet to be
/// numbered ([`Conversation::needs_arrival`]) is scored without its number, which
/// `commit.lua` adds.
fn queue_score(conv: &Conversation) -> u64 {
    let key = conv.queue_key();
    (u64::from(key.inverse_priority) << (ARRIVAL_BITS + 1))
        | (u64::from(key.tier) << ARRIVAL_BITS)
        | (key.arrival & ((1 << ARRIVAL_BITS) - 1))
}

/// The queued ones of `loaded`, in queue order.
fn in_queue_order(loaded: Vec<Loaded>) -> Vec<Loaded> {
    let mut q: Vec<Loaded> = loaded
        .into_iter()
        .filter(|l| l.conv.state == State::Queued)
        .collect();
    q.sort_by_key(|l| l.conv.queue_key());
    q
}

/// The arrival number a queue score holds. (A score written by an older gateway held the
/// queued-at time there instead, which is also what the counter starts from.)
fn arrival_of(score: f64) -> u64 {
    (score as u64) & ((1 << ARRIVAL_BITS) - 1)
}

/// One operator write of a commit.
struct OpWrite<'a> {
    expect: u64,
    /// Checked for offers and takes: nobody else gave or took a conversation of theirs meanwhile.
    expect_load: Option<u64>,
    rec: &'a OperatorRecord,
    node: Option<&'a str>,
}

/// A conversation's hash as read: `v`, `d`, `n` and `a`.
type ConvRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The fields of a conversation's hash that [`parse_conv`] reads.
const CONV_FIELDS: [&str; 4] = ["v", "d", "n", "a"];

fn parse_conv((version, data, node, arrival): ConvRow) -> Option<Loaded> {
    let version = version?.parse().ok()?;
    let mut conv: Conversation = serde_json::from_str(&data?).ok()?;
    match arrival.and_then(|a| a.parse().ok()) {
        // The number `commit.lua` gave when it last entered the queue (its JSON was written
        // before the number existed).
        Some(a) => conv.arrival = a,
        // Queued by an older gateway, which scored it by its queued-at time: keep its place.
        None if conv.needs_arrival() => conv.arrival = conv.queued_at.max(1),
        None => {}
    }
    Some(Loaded {
        version,
        conv,
        node: node.unwrap_or_default(),
    })
}

type OpRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn parse_op((version, data, node, load): OpRow) -> Option<LoadedOp> {
    let version = version?.parse().ok()?;
    let rec = serde_json::from_str(&data?).ok()?;
    Some(LoadedOp {
        version,
        load_version: load.and_then(|l| l.parse().ok()).unwrap_or(0),
        rec,
        node: node.unwrap_or_default(),
    })
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
            lease: Script::new(LEASE),
            beating_since: std::sync::Mutex::new(None),
            epoch: std::sync::Mutex::new(None),
        })
    }

    /// The connection layer (shared with the cluster bus and the session store).
    pub fn redis(&self) -> Arc<Redis> {
        Arc::clone(&self.redis)
    }

    pub fn options(&self) -> &RedisOptions {
        &self.opts
    }

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

    async fn load(&self, id: ConversationId) -> Result<Option<Loaded>, StoreError> {
        let key = self.key(&["c", &id.to_string()]);
        let row: ConvRow = self
            .run(|mut c| async move { c.hmget(&key, &CONV_FIELDS).await })
            .await?;
        if row.0.is_none() {
            return Ok(None);
        }
        parse_conv(row)
            .map(Some)
            .ok_or_else(|| corrupt("conversation"))
    }

    async fn load_many(&self, ids: &[String]) -> Result<Vec<Loaded>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hmget(self.key(&["c", id]), &CONV_FIELDS);
        }
        let rows: Vec<ConvRow> = self
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        // Missing rows are conversations whose keys expired (the TTL backstop): skip them.
        Ok(rows.into_iter().filter_map(parse_conv).collect())
    }

    async fn members(&self, key: String) -> Result<Vec<String>, StoreError> {
        self.run(|mut c| async move { c.smembers(&key).await })
            .await
    }

    async fn load_ops(&self) -> Result<Vec<LoadedOp>, StoreError> {
        let ids = self.members(self.key(&["ops"])).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hmget(self.key(&["o", id]), &["v", "d", "n", "l"]);
        }
        let rows: Vec<OpRow> = self
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        let mut ops: Vec<LoadedOp> = rows.into_iter().filter_map(parse_op).collect();
        ops.sort_by_key(|o| o.rec.id);
        Ok(ops)
    }

    async fn load_op(&self, id: OperatorId) -> Result<Option<LoadedOp>, StoreError> {
        let key = self.key(&["o", &id.to_string()]);
        let row: OpRow = self
            .run(|mut c| async move { c.hmget(&key, &["v", "d", "n", "l"]).await })
            .await?;
        if row.0.is_none() {
            return Ok(None);
        }
        parse_op(row)
            .map(Some)
            .ok_or_else(|| corrupt("operator record"))
    }

    /// Writes conversations and operator records if every version still holds.
    /// `Ok(false)`: something moved on; read again.
    async fn commit(
        &self,
        convs: &[ConvWrite<'_>],
        ops: &[OpWrite<'_>],
    ) -> Result<bool, StoreError> {
        Ok(self.commit_outcome(convs, ops).await? == Outcome::Written)
    }

    /// [`Self::commit`], saying what moved on when nothing was written.
    async fn commit_outcome(
        &self,
        convs: &[ConvWrite<'_>],
        ops: &[OpWrite<'_>],
    ) -> Result<Outcome, StoreError> {
        Ok(self.commit_numbered(convs, ops).await?.0)
    }

    /// [`Self::commit_outcome`], with the arrival numbers `commit.lua` gave the conversations
    /// that entered the queue ([`Conversation::needs_arrival`]), in the order of `convs`.
    async fn commit_numbered(
        &self,
        convs: &[ConvWrite<'_>],
        ops: &[OpWrite<'_>],
    ) -> Result<(Outcome, Vec<u64>), StoreError> {
        let mut inv = self.commit.prepare_invoke();
        inv.arg(&self.opts.key_prefix)
            .arg(self.opts.ttl_secs)
            .arg(convs.len())
            .arg(ops.len());
        for w in convs {
            let json = serde_json::to_string(w.conv).map_err(|_| corrupt("conversation"))?;
            let holder = w
                .conv
                .state
                .operator()
                .map(|o| o.to_string())
                .unwrap_or_default();
            let (cid, cseq) = match w.client {
                Some((id, seq)) => (
                    id.to_string(),
                    seq.map(|s| s.to_string()).unwrap_or_default(),
                ),
                None => (String::new(), String::new()),
            };
            let queued = w.conv.state == State::Queued;
            inv.arg(w.conv.id.to_string())
                .arg(w.expect)
                .arg(json)
                .arg(w.conv.token_hash.clone().unwrap_or_default())
                .arg(holder)
                .arg(if queued {
                    queue_score(w.conv).to_string()
                } else {
                    String::new()
                })
                .arg(if w.conv.needs_arrival() { "1" } else { "0" })
                .arg(if queued {
                    w.conv.queued_at.to_string()
                } else {
                    String::new()
                })
                .arg(w.node.unwrap_or("-"))
                .arg(cid)
                .arg(cseq)
                .arg(w.entries.len());
            for e in w.entries {
                let json = serde_json::to_string(e).map_err(|_| corrupt("log entry"))?;
                inv.arg(e.seq).arg(json);
            }
        }
        for w in ops {
            let json = serde_json::to_string(w.rec).map_err(|_| corrupt("operator record"))?;
            inv.arg(w.rec.id.to_string())
                .arg(w.expect)
                .arg(w.expect_load.map(|l| l.to_string()).unwrap_or_default())
                .arg(json)
                .arg(w.node.unwrap_or("-"));
        }
        let reply: Vec<u64> = self
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let outcome = match reply.first() {
            Some(1) => Outcome::Written,
            Some(2) => Outcome::OperatorMoved,
            _ => Outcome::ConversationMoved,
        };
        Ok((outcome, reply.into_iter().skip(1).collect()))
    }

    /// With `wait_replicas` set: returns only once that many replicas have this connection's
    /// writes, or reports the store unavailable (the caller's retry is then idempotent).
    async fn replicated(&self) -> Result<(), StoreError> {
        let want = self.opts.wait_replicas;
        if want == 0 {
            return Ok(());
        }
        let timeout = self.opts.wait_timeout_ms;
        let got: u32 = self
            .run(|mut c| async move {
                redis::cmd("WAIT")
                    .arg(want)
                    .arg(timeout)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        if got < want {
            tracing::warn!(
                replicas = got,
                wanted = want,
                "write not replicated in time"
            );
            return Err(StoreError::Unavailable("not replicated in time".into()));
        }
        Ok(())
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

    /// The node the change attributes the person's connection to.
    fn node_after(&self, cmd: &Command) -> Option<&str> {
        match cmd {
            Command::VisitorConnected => Some(&self.opts.node),
            Command::VisitorDisconnected => Some(""),
            _ => None,
        }
    }

    /// Applies `cmd` to one conversation, optimistically. `only_if_node`: apply only while the
    /// person is attributed to that node (used to disconnect the people of a dead node).
    async fn apply_step(
        &self,
        id: ConversationId,
        cmd: Command,
        client_id: Option<Ulid>,
        now: Millis,
        only_if_node: Option<&str>,
    ) -> Result<Applied, ApplyError> {
        let cid_key = self.key(&["cid", &id.to_string()]);
        // A message is acknowledged to its sender only once replicated (`wait_replicas`); other
        // steps are not waited for (their retries would not re-announce them).
        let is_message = matches!(cmd, Command::Message { .. });
        for attempt in 0..ATTEMPTS {
            let loaded = self.load(id).await?.ok_or(ApplyError::NotFound)?;
            if let Some(cid) = client_id {
                let key = cid_key.clone();
                let field = cid.to_string();
                let seen: Option<String> = self
                    .run(|mut c| async move { c.hget(&key, &field).await })
                    .await?;
                if let Some(seq) = seen {
                    if is_message {
                        self.replicated().await?;
                    }
                    return Ok(Applied {
                        before: loaded.conv.clone(),
                        after: loaded.conv,
                        appended: vec![],
                        duplicate: Some(seq.parse().ok()),
                    });
                }
            }
            if let Some(node) = only_if_node {
                if loaded.node != node {
                    return Err(ApplyError::Refused(
                        crate::conversation::TransitionError::NotYours,
                    ));
                }
            }
            if matches!(cmd, Command::VisitorDisconnected)
                && only_if_node.is_none()
                && !loaded.node.is_empty()
                && loaded.node != self.opts.node
            {
                // The person has reconnected through another node since: this node's socket
                // closing says nothing about them.
                return Err(ApplyError::Refused(
                    crate::conversation::TransitionError::NotYours,
                ));
            }
            let before = loaded.conv;
            let (mut after, appended) = advance(&before, cmd.clone(), now)?;
            let write = ConvWrite {
                expect: loaded.version,
                conv: &after,
                node: self.node_after(&cmd),
                client: client_id.map(|c| (c, appended.last().map(|e| e.seq))),
                entries: &appended,
            };
            let (outcome, arrivals) = self.commit_numbered(&[write], &[]).await?;
            if outcome == Outcome::Written {
                if let Some(&a) = arrivals.first() {
                    after.arrival = a;
                }
                if is_message {
                    self.replicated().await?;
                }
                return Ok(Applied {
                    before,
                    after,
                    appended,
                    duplicate: None,
                });
            }
            Self::back_off(attempt).await;
        }
        Err(StoreError::Unavailable("too much contention".into()).into())
    }

    /// Routing's view of the operators, from what is stored now.
    async fn slots<'a>(&self, ops: &'a [LoadedOp]) -> Result<Vec<OperatorSlot<'a>>, StoreError> {
        let mut held_ids: HashMap<OperatorId, Vec<String>> = HashMap::new();
        if !ops.is_empty() {
            let mut pipe = redis::pipe();
            for o in ops {
                pipe.smembers(self.key(&["held", &o.rec.id.to_string()]));
            }
            let sets: Vec<Vec<String>> = self
                .run(|mut c| async move { pipe.query_async(&mut c).await })
                .await?;
            for (o, set) in ops.iter().zip(sets) {
                held_ids.insert(o.rec.id, set);
            }
        }
        let all: Vec<String> = held_ids.values().flatten().cloned().collect();
        let held: HashMap<ConversationId, Conversation> = self
            .load_many(&all)
            .await?
            .into_iter()
            .map(|l| (l.conv.id, l.conv))
            .collect();
        Ok(ops
            .iter()
            .map(|o| {
                let mine = held_ids
                    .get(&o.rec.id)
                    .into_iter()
                    .flatten()
                    .filter_map(|id| id.parse::<Ulid>().ok().and_then(|id| held.get(&id)))
                    .filter(|c| c.state.operator() == Some(o.rec.id));
                slot_of(&o.rec, mine)
            })
            .collect())
    }

    /// Queued conversations in queue order, with their versions.
    async fn queued(&self) -> Result<Vec<Loaded>, StoreError> {
        let ids = self.members(self.key(&["q"])).await?;
        Ok(in_queue_order(self.load_many(&ids).await?))
    }

    /// Which of `keys` exist, in order.
    async fn exist(&self, keys: impl Iterator<Item = String>) -> Result<Vec<bool>, StoreError> {
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.exists(k);
        }
        self.run(|mut c| async move { pipe.query_async(&mut c).await })
            .await
    }

    /// Rebuilds `P:qz` from the queued conversations (`scored`: what it holds now), drops ids
    /// of `P:q` whose conversation is gone, and returns the queue in order.
    async fn mend_queue_index(&self, scored: &[(String, f64)]) -> Result<Vec<Loaded>, StoreError> {
        let ids = self.members(self.key(&["q"])).await?;
        let loaded = self.load_many(&ids).await?;
        let mut pipe = redis::pipe();
        // Ids whose conversation is gone (its keys expired: the TTL backstop) would keep the
        // two apart for ever. A conversation's record and its `P:q` entry are written and
        // deleted by one script, so an id without a record is never a conversation on its way.
        let found: std::collections::HashSet<String> =
            loaded.iter().map(|l| l.conv.id.to_string()).collect();
        let unloaded: Vec<&String> = ids.iter().filter(|id| !found.contains(*id)).collect();
        if !unloaded.is_empty() {
            let there = self
                .exist(unloaded.iter().map(|id| self.key(&["c", id])))
                .await?;
            for (id, _) in unloaded.iter().zip(there).filter(|(_, there)| !there) {
                pipe.srem(self.key(&["q"]), *id).ignore();
            }
        }
        let queued = in_queue_order(loaded);
        let want: HashMap<String, u64> = queued
            .iter()
            .map(|l| (l.conv.id.to_string(), queue_score(&l.conv)))
            .collect();
        for (id, _) in scored.iter().filter(|(id, _)| !want.contains_key(id)) {
            pipe.zrem(self.key(&["qz"]), id).ignore();
        }
        for (id, _) in scored.iter().filter(|(id, _)| !want.contains_key(id)) {
            pipe.hdel(self.key(&["qt"]), id).ignore();
        }
        for (id, score) in &want {
            pipe.zadd(self.key(&["qz"]), id, *score).ignore();
        }
        for l in &queued {
            pipe.hset(self.key(&["qt"]), l.conv.id.to_string(), l.conv.queued_at)
                .ignore();
        }
        self.run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await?;
        Ok(queued)
    }

    /// Operator update, optimistic; `only_if_node` as in [`Self::apply_step`].
    async fn update_op(
        &self,
        id: OperatorId,
        update: OperatorUpdate,
        only_if_node: Option<&str>,
    ) -> Result<Option<OperatorRecord>, StoreError> {
        for attempt in 0..ATTEMPTS {
            let Some(loaded) = self.load_op(id).await? else {
                return Ok(None);
            };
            if only_if_node.is_some_and(|n| n != loaded.node) {
                return Ok(None);
            }
            let mut rec = loaded.rec.clone();
            let node = match update {
                OperatorUpdate::Presence(p) => {
                    rec.presence = p;
                    None
                }
                OperatorUpdate::Connected => {
                    rec.connected = true;
                    rec.disconnected_since = None;
                    Some(self.opts.node.as_str())
                }
                OperatorUpdate::Disconnected { at } => {
                    if only_if_node.is_none()
                        && !loaded.node.is_empty()
                        && loaded.node != self.opts.node
                    {
                        // Their console is open on another node now.
                        return Ok(Some(loaded.rec));
                    }
                    rec.connected = false;
                    rec.disconnected_since = Some(at);
                    Some("")
                }
            };
            let write = OpWrite {
                expect: loaded.version,
                expect_load: None,
                rec: &rec,
                node,
            };
            if self.commit(&[], &[write]).await? {
                return Ok(Some(rec));
            }
            Self::back_off(attempt).await;
        }
        Err(StoreError::Unavailable("too much contention".into()))
    }

    /// Those of `nodes` whose heartbeat has expired.
    async fn dead_among(&self, nodes: Vec<String>) -> Result<Vec<String>, StoreError> {
        if nodes.is_empty() {
            return Ok(nodes);
        }
        let alive = self
            .exist(nodes.iter().map(|n| self.key(&["node", n])))
            .await?;
        Ok(nodes
            .into_iter()
            .zip(alive)
            .filter(|(_, a)| !a)
            .map(|(n, _)| n)
            .collect())
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn create(&self, conv: Conversation) -> Result<(), StoreError> {
        // Attributed to this node from the start, so that if it dies before the person's socket
        // says more, the conversation is still taken as disconnected and its grace runs.
        let write = ConvWrite {
            expect: 0,
            conv: &conv,
            node: conv.visitor_connected.then_some(self.opts.node.as_str()),
            client: None,
            entries: &[],
        };
        if !self.commit(&[write], &[]).await? {
            return Err(StoreError::Unavailable(
                "conversation id already taken".into(),
            ));
        }
        // Not waited for: a conversation lost in a failover is started again by its person,
        // and a creation refused after it was written would leave a person nobody is talking to.
        Ok(())
    }

    async fn get(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        Ok(self.load(id).await?.map(|l| l.conv))
    }

    async fn find_by_token(&self, token_hash: &str) -> Result<Option<Conversation>, StoreError> {
        let key = self.key(&["tok", token_hash]);
        let id: Option<String> = self.run(|mut c| async move { c.get(&key).await }).await?;
        let Some(id) = id.and_then(|s| s.parse::<Ulid>().ok()) else {
            return Ok(None);
        };
        Ok(self
            .get(id)
            .await?
            .filter(|c| c.token_hash.as_deref() == Some(token_hash)))
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
        let key = self.key(&["log", &id.to_string()]);
        let start = format!("{}-0", after.saturating_add(1));
        let reply: redis::streams::StreamRangeReply = self
            .run(|mut c| async move { c.xrange(&key, start, "+").await })
            .await?;
        let mut out = Vec::with_capacity(reply.ids.len());
        for entry in reply.ids {
            let json: String = entry.get("e").ok_or_else(|| corrupt("log entry"))?;
            out.push(serde_json::from_str(&json).map_err(|_| corrupt("log entry"))?);
        }
        Ok(out)
    }

    async fn delete(&self, id: ConversationId) -> Result<(), StoreError> {
        let mut inv = self.delete.prepare_invoke();
        inv.arg(&self.opts.key_prefix).arg(id.to_string());
        let _: i64 = self
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        Ok(())
    }

    async fn conversations(&self) -> Result<Vec<Conversation>, StoreError> {
        let ids = self.members(self.key(&["convs"])).await?;
        Ok(self
            .load_many(&ids)
            .await?
            .into_iter()
            .map(|l| l.conv)
            .collect())
    }

    async fn held_by(&self, operator: OperatorId) -> Result<Vec<Conversation>, StoreError> {
        let ids = self
            .members(self.key(&["held", &operator.to_string()]))
            .await?;
        let mut convs: Vec<Conversation> = self
            .load_many(&ids)
            .await?
            .into_iter()
            .map(|l| l.conv)
            .filter(|c| c.state.operator() == Some(operator))
            .collect();
        convs.sort_by_key(|c| c.id);
        Ok(convs)
    }

    async fn queue(&self) -> Result<Vec<Conversation>, StoreError> {
        Ok(self.queued().await?.into_iter().map(|l| l.conv).collect())
    }

    async fn queue_position(&self, id: ConversationId) -> Result<Option<(u32, u32)>, StoreError> {
        let (qz, q, member) = (self.key(&["qz"]), self.key(&["q"]), id.to_string());
        let (rank, len, queued, set_len): (Option<u32>, u32, bool, u32) = self
            .run(|mut c| async move {
                redis::pipe()
                    .zrank(&qz, &member)
                    .zcard(&qz)
                    .sismember(&q, &member)
                    .scard(&q)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        if len == set_len {
            return Ok(rank.filter(|_| queued).map(|r| (r + 1, len)));
        }
        // Conversations queued before `P:qz` existed (written by an older gateway) are only in
        // `P:q` until their next step: count from the conversations themselves meanwhile.
        let queue = self.queued().await?;
        Ok(queue
            .iter()
            .position(|l| l.conv.id == id)
            .map(|i| (i as u32 + 1, queue.len() as u32)))
    }

    async fn queue_brief(&self) -> Result<Vec<(ConversationId, Millis)>, StoreError> {
        let (qz, q, qt) = (self.key(&["qz"]), self.key(&["q"]), self.key(&["qt"]));
        let (scored, set_len): (Vec<(String, f64)>, u32) = self
            .run(|mut c| async move {
                redis::pipe()
                    .zrange_withscores(&qz, 0, -1)
                    .scard(&q)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        if scored.len() == set_len as usize {
            // When each was queued: `P:qt`, or for one queued by an older gateway (scored by
            // its queued-at time), its score.
            let since: HashMap<String, Millis> = self
                .run(|mut c| async move { c.hgetall(&qt).await })
                .await?;
            return Ok(scored
                .into_iter()
                .filter_map(|(id, score)| {
                    let at = since.get(&id).copied().unwrap_or_else(|| arrival_of(score));
                    Some((id.parse().ok()?, at))
                })
                .collect());
        }
        // `P:qz` and `P:q` disagree: conversations queued or deleted by an older gateway (before
        // `P:qz` existed, or during a rolling upgrade). Answer from the conversations, and mend
        // the index so that the next call is cheap again.
        Ok(self
            .mend_queue_index(&scored)
            .await?
            .into_iter()
            .map(|l| (l.conv.id, l.conv.queued_at))
            .collect())
    }

    async fn put_operator(&self, record: OperatorRecord) -> Result<(), StoreError> {
        for attempt in 0..ATTEMPTS {
            let current = self.load_op(record.id).await?;
            let write = OpWrite {
                expect: current.as_ref().map_or(0, |c| c.version),
                expect_load: None,
                rec: &record,
                node: Some(if record.connected {
                    &self.opts.node
                } else {
                    ""
                }),
            };
            if self.commit(&[], &[write]).await? {
                return Ok(());
            }
            Self::back_off(attempt).await;
        }
        Err(StoreError::Unavailable("too much contention".into()))
    }

    async fn update_operator(
        &self,
        id: OperatorId,
        update: OperatorUpdate,
    ) -> Result<Option<OperatorRecord>, StoreError> {
        self.update_op(id, update, None).await
    }

    async fn operators(&self) -> Result<Vec<OperatorRecord>, StoreError> {
        Ok(self.load_ops().await?.into_iter().map(|o| o.rec).collect())
    }

    async fn operator_load(
        &self,
        id: OperatorId,
    ) -> Result<Option<(OperatorRecord, u32)>, StoreError> {
        let Some(op) = self.load_op(id).await? else {
            return Ok(None);
        };
        let load = self
            .held_by(id)
            .await?
            .iter()
            .map(|c| c.weight_on(op.rec.capacity))
            .sum();
        Ok(Some((op.rec, load)))
    }

    async fn dispatch(
        &self,
        now: Millis,
        offer_ms: u64,
        language_fallback_ms: u64,
    ) -> Result<Vec<Applied>, StoreError> {
        for attempt in 0..ATTEMPTS {
            let ops = self.load_ops().await?;
            let mut slots = self.slots(&ops).await?;
            if !slots.iter().any(|s| !s.has_offer && s.load < s.capacity) {
                return Ok(vec![]);
            }
            let queued = self.queued().await?;
            if queued.is_empty() {
                return Ok(vec![]);
            }
            let plan = routing::plan(
                queued.iter().map(|l| &l.conv),
                &mut slots,
                now,
                language_fallback_ms,
            );
            if plan.is_empty() {
                return Ok(vec![]);
            }
            let by_id: HashMap<ConversationId, &Loaded> =
                queued.iter().map(|l| (l.conv.id, l)).collect();
            let mut steps = Vec::with_capacity(plan.len());
            let mut recs: HashMap<OperatorId, (&LoadedOp, OperatorRecord)> = HashMap::new();
            for (conv, operator) in plan {
                let Some(loaded) = by_id.get(&conv) else {
                    continue;
                };
                let cmd = Command::Offer {
                    operator,
                    expires_at: now + offer_ms,
                };
                let Ok((after, appended)) = advance(&loaded.conv, cmd, now) else {
                    continue;
                };
                if let Some(o) = ops.iter().find(|o| o.rec.id == operator) {
                    let entry = recs.entry(operator).or_insert_with(|| (o, o.rec.clone()));
                    entry.1.last_assigned = now;
                }
                steps.push((loaded.version, loaded.conv.clone(), after, appended));
            }
            let conv_writes: Vec<ConvWrite<'_>> = steps
                .iter()
                .map(|(version, _, after, appended)| ConvWrite {
                    expect: *version,
                    conv: after,
                    node: None,
                    client: None,
                    entries: appended,
                })
                .collect();
            let op_writes: Vec<OpWrite<'_>> = recs
                .values()
                .map(|(loaded, rec)| OpWrite {
                    expect: loaded.version,
                    expect_load: Some(loaded.load_version),
                    rec,
                    node: None,
                })
                .collect();
            if self.commit(&conv_writes, &op_writes).await? {
                return Ok(steps
                    .into_iter()
                    .map(|(_, before, after, appended)| Applied {
                        before,
                        after,
                        appended,
                        duplicate: None,
                    })
                    .collect());
            }
            Self::back_off(attempt).await;
        }
        Err(StoreError::Unavailable("too much contention".into()))
    }

    async fn take_next(
        &self,
        operator: OperatorId,
        now: Millis,
        language_fallback_ms: u64,
    ) -> Result<Option<Applied>, ApplyError> {
        let mut attempt = 0;
        while attempt < ATTEMPTS {
            let Some(op) = self.load_op(operator).await? else {
                return Ok(None);
            };
            let slot = self
                .slots(std::slice::from_ref(&op))
                .await?
                .pop()
                .ok_or_else(|| corrupt("operator record"))?;
            let mut queued = self.queued().await?;
            // Operators racing for the head of the queue: a take that loses it looks at that one
            // conversation again and goes on down the same reading, instead of reading the whole
            // queue again (at most twice per conversation read, so this ends).
            let mut lost = 0;
            while lost <= 2 * queued.len() {
                let Some(conv) = routing::next_for(
                    queued.iter().map(|l| &l.conv),
                    &slot,
                    now,
                    language_fallback_ms,
                ) else {
                    return Ok(None);
                };
                let Some(at) = queued.iter().position(|l| l.conv.id == conv) else {
                    return Ok(None);
                };
                let before = queued[at].conv.clone();
                let cmd = Command::Take {
                    operator,
                    operator_name: op.rec.name.clone(),
                };
                let (after, appended) = advance(&before, cmd, now)?;
                let mut rec = op.rec.clone();
                rec.last_assigned = now;
                let conv_write = ConvWrite {
                    expect: queued[at].version,
                    conv: &after,
                    node: None,
                    client: None,
                    entries: &appended,
                };
                let op_write = OpWrite {
                    expect: op.version,
                    expect_load: Some(op.load_version),
                    rec: &rec,
                    node: None,
                };
                match self.commit_outcome(&[conv_write], &[op_write]).await? {
                    Outcome::Written => {
                        return Ok(Some(Applied {
                            before,
                            after,
                            appended,
                            duplicate: None,
                        }))
                    }
                    Outcome::OperatorMoved => break,
                    Outcome::ConversationMoved => {
                        lost += 1;
                        match self.load(conv).await? {
                            Some(l) if l.conv.state == State::Queued => queued[at] = l,
                            _ => {
                                queued.remove(at);
                            }
                        }
                    }
                }
            }
            attempt += 1;
            Self::back_off(attempt).await;
        }
        Err(StoreError::Unavailable("too much contention".into()).into())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self
            .run(|mut c| async move { redis::cmd("PING").query_async(&mut c).await })
            .await?;
        Ok(())
    }

    async fn lead(&self, task: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let mut inv = self.lease.prepare_invoke();
        inv.key(self.key(&["lease", task]))
            .arg(&self.opts.node)
            .arg(ttl_ms.max(1));
        let held: i64 = self
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        Ok(held == 1)
    }

    async fn first_time(&self, key: &str) -> Result<Option<bool>, StoreError> {
        let key = self.key(&["seen", key]);
        let set: Option<String> = self
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(600)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(Some(set.is_some()))
    }

    async fn count_today(&self, day: u64, event: &'static str) -> Result<(), StoreError> {
        let key = self.key(&["today", &day.to_string()]);
        self.run(|mut c| async move {
            redis::pipe()
                .hincr(&key, event, 1)
                .ignore()
                .expire(&key, 8 * 24 * 3600)
                .ignore()
                .query_async(&mut c)
                .await
        })
        .await
    }

    async fn today_counts(&self, day: u64) -> Result<Option<HashMap<String, u64>>, StoreError> {
        let key = self.key(&["today", &day.to_string()]);
        let counts: HashMap<String, u64> = self
            .run(|mut c| async move { c.hgetall(&key).await })
            .await?;
        Ok(Some(counts))
    }

    /// Writes the marker if there is none (a fresh Redis, or one that lost its data) and reads
    /// it back, in one round trip: a marker other than the one read last time means the data
    /// it stood beside is gone. Every node finds this out for itself, once.
    async fn lost_data(&self) -> Result<bool, StoreError> {
        let key = self.key(&["epoch"]);
        let candidate = Ulid::new().to_string();
        let (current,): (Option<String>,) = self
            .run(|mut c| async move {
                redis::pipe()
                    .set_nx(&key, &candidate)
                    .ignore()
                    .get(&key)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let Some(current) = current else {
            // Flushed between the two commands: the next call writes it again.
            return Ok(false);
        };
        let mut seen = self.epoch.lock().unwrap_or_else(|e| e.into_inner());
        let lost = seen.as_ref().is_some_and(|s| *s != current);
        *seen = Some(current);
        Ok(lost)
    }

    async fn heartbeat(&self, now: Millis) -> Result<Vec<Applied>, StoreError> {
        let beat = self.key(&["node", &self.opts.node]);
        let (nodes, me) = (self.key(&["nodes"]), self.opts.node.clone());
        let beaten = self
            .run(|mut c| async move {
                redis::pipe()
                    .sadd(&nodes, &me)
                    .ignore()
                    .set_ex(&beat, now, NODE_TTL_SECS)
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
        let steady = {
            let mut since = self.beating_since.lock().unwrap_or_else(|e| e.into_inner());
            match (&beaten, *since) {
                (Err(_), _) => *since = None,
                (Ok(()), None) => *since = Some(std::time::Instant::now()),
                _ => {}
            }
            since.is_some_and(|t| t.elapsed() > Duration::from_secs(NODE_TTL_SECS + 1))
        };
        beaten?;
        if !steady {
            return Ok(vec![]);
        }
        // Known nodes whose heartbeat has expired; usually none, and then nothing more is read.
        let known: Vec<String> = self
            .members(self.key(&["nodes"]))
            .await?
            .into_iter()
            .filter(|n| *n != self.opts.node)
            .collect();
        let dead = self.dead_among(known).await?;
        if dead.is_empty() {
            return Ok(vec![]);
        }
        let ids = self.members(self.key(&["convs"])).await?;
        let convs = self.load_many(&ids).await?;
        let ops = self.load_ops().await?;
        let mut steps = Vec::new();
        for d in &dead {
            tracing::warn!(node = %d, "gateway node stopped; its people and operators count as disconnected");
            for l in convs.iter().filter(|l| l.node == *d) {
                match self
                    .apply_step(l.conv.id, Command::VisitorDisconnected, None, now, Some(d))
                    .await
                {
                    Ok(a) => steps.push(a),
                    Err(ApplyError::Store(e)) => return Err(e),
                    // Reconnected elsewhere meanwhile, or already ended.
                    Err(_) => {}
                }
            }
            for o in ops.iter().filter(|o| o.node == *d) {
                self.update_op(o.rec.id, OperatorUpdate::Disconnected { at: now }, Some(d))
                    .await?;
            }
            // Everything of it handled (a store error above returns early and leaves the node
            // to the next heartbeat): forget it.
            let (nodes, d) = (self.key(&["nodes"]), d.clone());
            let _: i64 = self
                .run(|mut c| async move { c.srem(&nodes, &d).await })
                .await?;
        }
        Ok(steps)
    }
}

#[cfg(test)]
mod tests;
