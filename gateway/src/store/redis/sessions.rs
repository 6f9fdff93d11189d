//! Operator sessions shared by every gateway node, so a console signed in through one node can
//! open its websocket on another. A session is `P:sess:{sha256(token)}` (JSON, expiring after
//! the idle timeout and renewed on use); `P:usess:{user}` lists a user's sessions for revoking
//! them all. The token itself is never stored.

use std::sync::Arc;

use redis::AsyncCommands;
use ulid::Ulid;

use super::Redis;
use crate::auth::{Session, SessionsError, SharedSessions};
use crate::store::StoreError;

pub struct RedisSessions {
    redis: Arc<Redis>,
    prefix: String,
}

impl RedisSessions {
    pub fn new(redis: Arc<Redis>, prefix: &str) -> Self {
        RedisSessions {
            redis,
            prefix: prefix.to_owned(),
        }
    }

    fn key(&self, hash: &str) -> String {
        format!("{}:sess:{hash}", self.prefix)
    }

    fn user_key(&self, user: Ulid) -> String {
        format!("{}:usess:{user}", self.prefix)
    }

    async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(redis::aio::MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.redis.conn().await;
        let conn = self
            .redis
            .check(conn)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let r = f(conn).await;
        self.redis
            .check(r)
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Stores (or renews) a session for `idle_ms`; the user's index lives for `max_ms`.
    pub async fn put(
        &self,
        hash: &str,
        s: &Session,
        idle_ms: u64,
        max_ms: u64,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(s)
            .map_err(|_| StoreError::Unavailable("unserialisable session".into()))?;
        let (key, user_key, hash) = (self.key(hash), self.user_key(s.user_id), hash.to_owned());
        self.run(|mut c| async move {
            redis::pipe()
                .pset_ex(&key, json, idle_ms.max(1))
                .ignore()
                .sadd(&user_key, hash)
                .ignore()
                .pexpire(&user_key, max_ms.max(1) as i64)
                .ignore()
                .query_async(&mut c)
                .await
        })
        .await
    }

    pub async fn get(&self, hash: &str) -> Result<Option<Session>, StoreError> {
        let key = self.key(hash);
        let json: Option<String> = self.run(|mut c| async move { c.get(&key).await }).await?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    pub async fn remove(&self, hash: &str) -> Result<(), StoreError> {
        let key = self.key(hash);
        self.run(|mut c| async move { c.del(&key).await }).await
    }

    /// Removes every session of `user`; returns how many were live.
    pub async fn remove_user(&self, user: Ulid) -> Result<usize, StoreError> {
        let user_key = self.user_key(user);
        let hashes: Vec<String> = {
            let k = user_key.clone();
            self.run(|mut c| async move { c.smembers(&k).await })
                .await?
        };
        let keys: Vec<String> = hashes.iter().map(|h| self.key(h)).collect();
        let removed: usize = if keys.is_empty() {
            0
        } else {
            self.run(|mut c| async move { c.del(&keys).await }).await?
        };
        self.run(|mut c| async move { c.del(&user_key).await })
            .await
            .map(|(): ()| removed)
    }
}

/// What `auth` asks of a shared session store; errors keep their message.
#[async_trait::async_trait]
impl SharedSessions for RedisSessions {
    async fn put(
        &self,
        hash: &str,
        s: &Session,
        idle_ms: u64,
        max_ms: u64,
    ) -> Result<(), SessionsError> {
        RedisSessions::put(self, hash, s, idle_ms, max_ms)
            .await
            .map_err(sessions_error)
    }

    async fn get(&self, hash: &str) -> Result<Option<Session>, SessionsError> {
        RedisSessions::get(self, hash).await.map_err(sessions_error)
    }

    async fn remove(&self, hash: &str) -> Result<(), SessionsError> {
        RedisSessions::remove(self, hash)
            .await
            .map_err(sessions_error)
    }

    async fn remove_user(&self, user: Ulid) -> Result<usize, SessionsError> {
        RedisSessions::remove_user(self, user)
            .await
            .map_err(sessions_error)
    }
}

fn sessions_error(e: StoreError) -> SessionsError {
    match e {
        StoreError::Unavailable(why) => SessionsError(why),
    }
}
