//! Live phone calls' shared records ([`crate::store::calls`]) in Redis:
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `P:call:{id}` | hash | `v` version, `p` phase, `s` the log seq acted on, `w` waiting since (ms), `h` the hold loop's last return (ms), `b` when the bridge was claimed (ms); `{id}` is the conversation, never the call SID; TTL renewed by each write |
//!
//! Written only over the version read (`PUT`, a script); deleted with the conversation by
//! `links.rs`' delete script.

use std::sync::LazyLock;

use redis::Script;

use super::RedisStore;
use crate::conversation::ConversationId;
use crate::store::{CallPhase, CallRecord, StoreError};

/// KEYS[1] the record; ARGV: expected version, phase, seq, waiting since, last hold, bridge
/// at, ttl ms. Returns the new version, or 0 when the stored version is not the expected one.
static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', v + 1, 'p', ARGV[2], 's', ARGV[3], 'w', ARGV[4], 'h', ARGV[5], 'b', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return v + 1
"#,
    )
});

type Fields = (
    Option<u64>,
    Option<String>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
);

impl RedisStore {
    /// [`crate::store::Store::call`].
    pub(super) async fn call_record(
        &self,
        conv: ConversationId,
    ) -> Result<Option<CallRecord>, StoreError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.key(&["call", &conv.to_string()]))
            .arg(&["v", "p", "s", "w", "h", "b"][..]);
        let (v, p, s, w, h, b): Fields = self.query_cmd(cmd).await?;
        let Some(version) = v else { return Ok(None) };
        let phase = p
            .as_deref()
            .and_then(CallPhase::parse)
            .ok_or_else(|| super::corrupt("call"))?;
        Ok(Some(CallRecord {
            phase,
            seq: s.unwrap_or(0),
            waiting_since: w.unwrap_or(0),
            last_hold: h.unwrap_or(0),
            bridge_at: b.unwrap_or(0),
            version,
        }))
    }

    /// [`crate::store::Store::put_call`].
    pub(super) async fn write_call(
        &self,
        conv: ConversationId,
        rec: &CallRecord,
        ttl_ms: u64,
    ) -> Result<Option<CallRecord>, StoreError> {
        let mut inv = PUT.prepare_invoke();
        inv.key(self.key(&["call", &conv.to_string()]))
            .arg(rec.version)
            .arg(rec.phase.as_str())
            .arg(rec.seq)
            .arg(rec.waiting_since)
            .arg(rec.last_hold)
            .arg(rec.bridge_at)
            .arg(ttl_ms.max(1));
        let version: u64 = self.invoke(inv).await?;
        Ok((version > 0).then(|| CallRecord {
            version,
            ..rec.clone()
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ulid::Ulid;

    use super::super::tests::{keys_with, store};
    use crate::conversation::Conversation;
    use crate::protocol::Channel;
    use crate::store::{calls, CallRecord, Store};

    #[tokio::test]
    async fn redis_call_records_pass_the_conformance_checks() {
        calls::conformance::run_all(store() as Arc<dyn Store>).await;
    }

    #[tokio::test]
    async fn a_call_record_expires_and_is_named_by_its_conversation() {
        let s = store();
        let prefix = s.options().key_prefix.clone();
        let c = Conversation::new(Ulid::new(), Channel::Phone, None, None, 1);
        s.create(c.clone()).await.unwrap();
        s.put_call(c.id, &CallRecord::new(5), 200).await.unwrap();
        let keys = keys_with(&prefix).await;
        assert!(
            keys.contains(&format!("{prefix}:call:{}", c.id)),
            "{keys:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert_eq!(s.call(c.id).await.unwrap(), None, "the record expired");
    }
}
