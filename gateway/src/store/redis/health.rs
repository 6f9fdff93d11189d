//! The nodes' health: each node's heartbeat (`P:node:{node}`, listed in `P:nodes`) and the
//! reaping of nodes whose heartbeat expired (their people and operators count as
//! disconnected); the `P:epoch` marker whose disappearance says Redis lost its data; and the
//! lease script ([`LEASE`]).

use std::time::Duration;

use redis::AsyncCommands;
use ulid::Ulid;

use super::RedisStore;
use crate::conversation::Command;
use crate::protocol::Millis;
use crate::store::{Applied, ApplyError, OperatorUpdate, StoreError};

/// A node that has not renewed its heartbeat for this long is taken for dead.
pub const NODE_TTL_SECS: u64 = 6;

/// Takes or renews a lease: KEYS[1] the lease, ARGV[1] this node, ARGV[2] its length in ms.
pub(super) const LEASE: &str = r#"
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

impl RedisStore {
    /// [`crate::store::Store::lost_data`]: writes the marker if there is none (a fresh Redis,
    /// or one that lost its data) and reads it back, in one round trip: a marker other than the
    /// one read last time means the data it stood beside is gone. Every node finds this out
    /// for itself, once.
    pub(super) async fn epoch_changed(&self) -> Result<bool, StoreError> {
        let key = self.key(&["epoch"]);
        let candidate = Ulid::new().to_string();
        let mut pipe = redis::pipe();
        pipe.set_nx(&key, &candidate).ignore().get(&key);
        let (current,): (Option<String>,) = self.query(pipe).await?;
        let Some(current) = current else {
            // Flushed between the two commands: the next call writes it again.
            return Ok(false);
        };
        let mut seen = self.epoch.lock().unwrap_or_else(|e| e.into_inner());
        let lost = seen.as_ref().is_some_and(|s| *s != current);
        *seen = Some(current);
        Ok(lost)
    }

    /// [`crate::store::Store::heartbeat`]: renews this node's heartbeat, and once it has been
    /// steady for a node TTL, disconnects the people and operators of nodes whose heartbeat
    /// has expired (once: the node is then forgotten).
    pub(super) async fn beat(&self, now: Millis) -> Result<Vec<Applied>, StoreError> {
        let beat = self.key(&["node", &self.opts.node]);
        let (nodes, me) = (self.key(&["nodes"]), self.opts.node.clone());
        let mut pipe = redis::pipe();
        pipe.sadd(&nodes, &me)
            .ignore()
            .set_ex(&beat, now, NODE_TTL_SECS)
            .ignore();
        let beaten = self.query::<()>(pipe).await;
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

    /// [`crate::store::Store::live_nodes`]: the known nodes whose heartbeat has not expired
    /// (this one included once it has beaten).
    pub(super) async fn count_live_nodes(&self) -> Result<u32, StoreError> {
        let known = self.members(self.key(&["nodes"])).await?;
        let dead = self.dead_among(known.clone()).await?;
        Ok(u32::try_from(known.len() - dead.len()).unwrap_or(u32::MAX))
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
