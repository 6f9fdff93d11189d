//! The connectors' people and the shared handling time ([`crate::store::links`]) in Redis:
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `P:link:{key}` | hash | `c` the conversation, `r` the sealed route back; `{key}` is the connector's keyed hash of the person's id, never the id; TTL `store.ttl_secs`, renewed by each webhook |
//! | `P:clink:{id}` | set | the link keys of conversation `id`, so its close deletes them |
//! | `P:sent:{id}` | string | the highest log seq sent to the person (the sender's shared cursor) |
//! | `P:handle` | string | moving average of handling time (ms), for every node's wait estimate |
//!
//! Everything of a conversation goes with it ([`RedisStore::delete_links`], called by
//! `delete_conversation`), and each key carries the store's TTL as a backstop.

use std::sync::LazyLock;

use redis::Script;

use super::RedisStore;
use crate::conversation::ConversationId;
use crate::store::links::HANDLE_EWMA_ALPHA;
use crate::store::{PersonLink, StoreError};

/// ARGV: prefix, key, conversation, route, ttl ms. Links unless linked; returns {conv, route}.
static LINK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local p, k = ARGV[1], ARGV[2]
local lk = p .. ':link:' .. k
local cur = redis.call('HMGET', lk, 'c', 'r')
if not cur[1] then
  redis.call('HSET', lk, 'c', ARGV[3], 'r', ARGV[4])
  cur = {ARGV[3], ARGV[4]}
end
redis.call('PEXPIRE', lk, ARGV[5])
local set = p .. ':clink:' .. cur[1]
redis.call('SADD', set, k)
redis.call('PEXPIRE', set, ARGV[5])
return cur
"#,
    )
});

/// ARGV: prefix, key, conversation. Deletes the link if it is to that conversation.
static UNLINK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local p, k, id = ARGV[1], ARGV[2], ARGV[3]
local lk = p .. ':link:' .. k
if redis.call('HGET', lk, 'c') == id then redis.call('DEL', lk) end
redis.call('SREM', p .. ':clink:' .. id, k)
return 1
"#,
    )
});

/// ARGV: prefix, conversation. Deletes every link of the conversation, its cursor and its call
/// record (`calls`).
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local p, id = ARGV[1], ARGV[2]
local set = p .. ':clink:' .. id
for _, k in ipairs(redis.call('SMEMBERS', set)) do
  local lk = p .. ':link:' .. k
  if redis.call('HGET', lk, 'c') == id then redis.call('DEL', lk) end
end
redis.call('DEL', set, p .. ':sent:' .. id, p .. ':call:' .. id)
return 1
"#,
    )
});

/// KEYS[1] the cursor; ARGV: seq, ttl ms. Moves it forward only.
static SENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 1
"#,
    )
});

/// KEYS[1] the average; ARGV: ms, alpha. Returns the new average as a string.
static HANDLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local ms, a = tonumber(ARGV[1]), tonumber(ARGV[2])
local cur = tonumber(redis.call('GET', KEYS[1]) or '')
local nxt = ms
if cur then nxt = cur + a * (ms - cur) end
local s = string.format('%.3f', nxt)
redis.call('SET', KEYS[1], s)
return s
"#,
    )
});

/// ARGV: this node. KEYS[1] the lease: deleted if this node holds it.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"#,
    )
});

impl RedisStore {
    fn ttl_ms(&self) -> u64 {
        self.opts.ttl_secs.max(1) * 1000
    }

    /// [`crate::store::Store::link`].
    pub(super) async fn link_person(
        &self,
        key: &str,
        link: &PersonLink,
        ttl_ms: u64,
    ) -> Result<PersonLink, StoreError> {
        let mut inv = LINK.prepare_invoke();
        inv.arg(&self.opts.key_prefix)
            .arg(key)
            .arg(link.conversation.to_string())
            .arg(&link.route)
            .arg(ttl_ms.max(1));
        let (c, r): (String, String) = self.invoke(inv).await?;
        let conversation = c.parse().map_err(|_| super::corrupt("link"))?;
        Ok(PersonLink {
            conversation,
            route: r,
        })
    }

    /// [`crate::store::Store::linked`].
    pub(super) async fn person_link(&self, key: &str) -> Result<Option<PersonLink>, StoreError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.key(&["link", key])).arg("c").arg("r");
        let (c, r): (Option<String>, Option<String>) = self.query_cmd(cmd).await?;
        let Some(c) = c else { return Ok(None) };
        let conversation = c.parse().map_err(|_| super::corrupt("link"))?;
        Ok(Some(PersonLink {
            conversation,
            route: r.unwrap_or_default(),
        }))
    }

    /// [`crate::store::Store::unlink`].
    pub(super) async fn unlink_person(
        &self,
        key: &str,
        conv: ConversationId,
    ) -> Result<(), StoreError> {
        let mut inv = UNLINK.prepare_invoke();
        inv.arg(&self.opts.key_prefix)
            .arg(key)
            .arg(conv.to_string());
        let _: i64 = self.invoke(inv).await?;
        Ok(())
    }

    /// Deletes the links and the sender's cursor of a conversation (at its close).
    pub(super) async fn delete_links(&self, conv: ConversationId) -> Result<(), StoreError> {
        let mut inv = DELETE.prepare_invoke();
        inv.arg(&self.opts.key_prefix).arg(conv.to_string());
        let _: i64 = self.invoke(inv).await?;
        Ok(())
    }

    /// [`crate::store::Store::sent_through`].
    pub(super) async fn sent_cursor(&self, conv: ConversationId) -> Result<u64, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(&["sent", &conv.to_string()]));
        let v: Option<u64> = self.query_cmd(cmd).await?;
        Ok(v.unwrap_or(0))
    }

    /// [`crate::store::Store::set_sent_through`].
    pub(super) async fn move_sent_cursor(
        &self,
        conv: ConversationId,
        seq: u64,
    ) -> Result<(), StoreError> {
        let mut inv = SENT.prepare_invoke();
        inv.key(self.key(&["sent", &conv.to_string()]))
            .arg(seq)
            .arg(self.ttl_ms());
        let _: i64 = self.invoke(inv).await?;
        Ok(())
    }

    /// [`crate::store::Store::observe_handle_time`].
    pub(super) async fn observe_handle(&self, ms: u64) -> Result<f64, StoreError> {
        let mut inv = HANDLE.prepare_invoke();
        inv.key(self.key(&["handle"]))
            .arg(ms)
            .arg(HANDLE_EWMA_ALPHA);
        let s: String = self.invoke(inv).await?;
        s.parse().map_err(|_| super::corrupt("handling time"))
    }

    /// [`crate::store::Store::handle_time`].
    pub(super) async fn shared_handle(&self) -> Result<Option<f64>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(&["handle"]));
        let v: Option<String> = self.query_cmd(cmd).await?;
        v.map(|s| s.parse().map_err(|_| super::corrupt("handling time")))
            .transpose()
    }

    /// [`crate::store::Store::release`].
    pub(super) async fn release_lease(&self, task: &str) -> Result<(), StoreError> {
        let mut inv = RELEASE.prepare_invoke();
        inv.key(self.key(&["lease", task])).arg(&self.opts.node);
        let _: i64 = self.invoke(inv).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ulid::Ulid;

    use super::super::tests::{keys_with, options, store};
    use super::super::RedisStore;
    use crate::conversation::Conversation;
    use crate::protocol::Channel;
    use crate::store::{links, PersonLink, Store};

    #[tokio::test]
    async fn redis_links_pass_the_conformance_checks() {
        links::conformance::run_all(store() as Arc<dyn Store>).await;
    }

    #[tokio::test]
    async fn links_expire_and_go_at_close_and_no_key_names_the_person() {
        let s = store();
        let prefix = s.options().key_prefix.clone();
        let c = Conversation::new(Ulid::new(), Channel::Line, None, None, 1);
        s.create(c.clone()).await.unwrap();
        // What a connector gives the store: a keyed hash and a sealed route.
        let (key, route) = ("0f1e2d3c4b5a69788796a5b4c3d2e1f0", "sealed");
        let link = PersonLink {
            conversation: c.id,
            route: route.into(),
        };
        s.link(key, &link, 200).await.unwrap();
        s.set_sent_through(c.id, 2).await.unwrap();
        let keys = keys_with(&prefix).await;
        assert!(keys.contains(&format!("{prefix}:link:{key}")), "{keys:?}");
        // The TTL: gone after it.
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert_eq!(s.linked(key).await.unwrap(), None, "the link expired");
        // Deleted at close.
        s.link(key, &link, 60_000).await.unwrap();
        s.delete(c.id).await.unwrap();
        assert_eq!(s.linked(key).await.unwrap(), None);
        let left: Vec<String> = keys_with(&prefix)
            .await
            .into_iter()
            .filter(|k| k.contains(":link:") || k.contains(":clink:") || k.contains(":sent:"))
            .collect();
        assert!(left.is_empty(), "left after close: {left:?}");
    }

    #[tokio::test]
    async fn every_node_reads_the_same_handling_time_and_link() {
        let prefix = format!("t{}", Ulid::new());
        let a = RedisStore::open(options(&prefix, "a")).unwrap();
        let b = RedisStore::open(options(&prefix, "b")).unwrap();
        a.observe_handle_time(300_000).await.unwrap();
        b.observe_handle_time(100_000).await.unwrap();
        let (ha, hb) = (
            a.handle_time().await.unwrap(),
            b.handle_time().await.unwrap(),
        );
        assert_eq!(ha, hb, "one average for every node");
        assert!((ha.unwrap() - 280_000.0).abs() < 1e-3, "{ha:?}");
        let c = Ulid::new();
        let link = PersonLink {
            conversation: c,
            route: String::new(),
        };
        assert_eq!(a.link("line:k", &link, 60_000).await.unwrap(), link);
        assert_eq!(b.linked("line:k").await.unwrap(), Some(link));
        b.set_sent_through(c, 4).await.unwrap();
        assert_eq!(a.sent_through(c).await.unwrap(), 4);
    }
}
