//! The small facts all nodes share: who holds a task's lease (`P:lease:{task}`), which
//! operator-level client ids were already applied (`P:seen:*`, 10 minutes), and the day's
//! counts (`P:today:{day}`, kept 8 days).

use std::collections::HashMap;

use redis::AsyncCommands;

use super::RedisStore;
use crate::store::StoreError;

impl RedisStore {
    /// [`crate::store::Store::lead`]: takes or renews the lease of `task` for this node.
    /// A lease renewed less than a quarter of its length ago is held without asking Redis
    /// again (the dispatcher asks on every wake, in a surge thousands of times a second).
    pub(super) async fn hold_lease(&self, task: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let fresh = std::time::Duration::from_millis(ttl_ms / 4);
        let renewed = self.leases().get(task).copied();
        if renewed.is_some_and(|at| at.elapsed() < fresh) {
            return Ok(true);
        }
        // Held by another node when asked less than an eighth of its length ago: not asked
        // again yet. Every node wakes its dispatcher at every step that may free a place or fill
        // the queue, and those that do not hold the lease asked Redis each time (two lease
        // scripts per such step with three nodes); a hand-over now waits up to an eighth of the
        // lease longer than its lapse.
        let elsewhere = self.elsewhere().get(task).copied();
        if elsewhere.is_some_and(|at| at.elapsed() < fresh / 2) {
            return Ok(false);
        }
        let asked = std::time::Instant::now();
        let mut inv = self.lease.prepare_invoke();
        inv.key(self.key(&["lease", task]))
            .arg(&self.opts.node)
            .arg(ttl_ms.max(1));
        let held: i64 = self.invoke(inv).await?;
        if held == 1 {
            self.leases().insert(task.to_owned(), asked);
            self.elsewhere().remove(task);
        } else {
            self.leases().remove(task);
            self.elsewhere().insert(task.to_owned(), asked);
        }
        Ok(held == 1)
    }

    fn elsewhere(&self) -> std::sync::MutexGuard<'_, HashMap<String, std::time::Instant>> {
        self.leases_elsewhere
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<String, std::time::Instant>> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`crate::store::Store::first_time`].
    pub(super) async fn seen_first(&self, key: &str) -> Result<Option<bool>, StoreError> {
        let key = self.key(&["seen", key]);
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(1).arg("NX").arg("EX").arg(600);
        let set: Option<String> = self.query_cmd(set).await?;
        Ok(Some(set.is_some()))
    }

    /// [`crate::store::Store::claim_episode`]: `P:episode:{key}`, set if absent.
    pub(super) async fn take_episode(&self, key: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let mut set = redis::cmd("SET");
        set.arg(self.key(&["episode", key]))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms.max(1));
        let set: Option<String> = self.query_cmd(set).await?;
        Ok(set.is_some())
    }

    /// [`crate::store::Store::end_episode`].
    pub(super) async fn drop_episode(&self, key: &str) -> Result<(), StoreError> {
        let mut del = redis::cmd("DEL");
        del.arg(self.key(&["episode", key]));
        let _: i64 = self.query_cmd(del).await?;
        Ok(())
    }

    /// [`crate::store::Store::count_today`].
    pub(super) async fn count_on(&self, day: u64, event: &'static str) -> Result<(), StoreError> {
        let key = self.key(&["today", &day.to_string()]);
        let mut pipe = redis::pipe();
        pipe.hincr(&key, event, 1)
            .ignore()
            .expire(&key, 8 * 24 * 3600)
            .ignore();
        self.query(pipe).await
    }

    /// [`crate::store::Store::today_counts`].
    pub(super) async fn counts_on(
        &self,
        day: u64,
    ) -> Result<Option<HashMap<String, u64>>, StoreError> {
        let key = self.key(&["today", &day.to_string()]);
        let counts: HashMap<String, u64> = self
            .run(|mut c| async move { c.hgetall(&key).await })
            .await?;
        Ok(Some(counts))
    }
}
