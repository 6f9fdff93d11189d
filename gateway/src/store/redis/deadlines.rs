//! The deadline index `P:dl`: every conversation with a timer to come, scored by the time of
//! its next deadline ([`Deadlines::next`]), written by `commit.lua` with each step and removed
//! by `delete.lua`. The sweep reads only what is due (`ZRANGEBYSCORE -inf now LIMIT`), so its
//! work per tick follows the timers that fire, not the number of people waiting or talking.

use std::collections::HashSet;

use redis::Script;

use super::RedisStore;
use crate::conversation::{Conversation, Deadlines};
use crate::protocol::Millis;
use crate::store::StoreError;

/// Mends one entry of `P:dl` found stale (due by its score, not by its conversation: the
/// lengths changed, or a node wrote it with other settings), only if the conversation is still
/// at the version read. KEYS[1] the conversation, KEYS[2] `P:dl`; ARGV: version, id, the new
/// score ('' to drop it).
const MEND: &str = r#"
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
if ARGV[3] == '' then redis.call('ZREM', KEYS[2], ARGV[2])
else redis.call('ZADD', KEYS[2], tonumber(ARGV[3]), ARGV[2]) end
return 1
"#;

/// The score `commit.lua` writes for `conv` under `deadlines`: `''` out of the index, or the
/// time of its next deadline; `'-'` (leave the index alone) when no lengths are known.
pub(super) fn deadline_arg(deadlines: Option<&Deadlines>, conv: &Conversation) -> String {
    match deadlines {
        None => "-".into(),
        Some(d) => d.next(conv).map(|t| t.to_string()).unwrap_or_default(),
    }
}

impl RedisStore {
    /// [`deadline_arg`] with this store's lengths.
    pub(super) fn deadline_arg(&self, conv: &Conversation) -> String {
        deadline_arg(self.deadlines.get(), conv)
    }

    /// [`crate::store::Store::due_conversations`] from `P:dl`. Entries whose conversation is
    /// gone (expired keys) are dropped; entries whose score is stale are re-scored.
    pub(super) async fn due_from_index(
        &self,
        deadlines: &Deadlines,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<Conversation>, StoreError> {
        let dl = self.key(&["dl"]);
        let ids: Vec<String> = self
            .query_cmd(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&dl)
                    .arg("-inf")
                    .arg(now)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit)
                    .to_owned(),
            )
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let loaded = self.load_many(&ids).await?;
        let found: HashSet<String> = loaded.iter().map(|l| l.conv.id.to_string()).collect();
        let mut pipe = redis::pipe();
        let mut mend = false;
        for id in ids.iter().filter(|id| !found.contains(*id)) {
            // A conversation's record and its entry here are written and deleted by one
            // script: an entry without a record is one whose keys expired.
            pipe.zrem(&dl, id).ignore();
            mend = true;
        }
        let script = Script::new(MEND);
        let mut due = Vec::with_capacity(loaded.len());
        for l in loaded {
            match deadlines.next(&l.conv) {
                Some(t) if t <= now => due.push(l.conv),
                next => {
                    let id = l.conv.id.to_string();
                    let score = next.map(|t| t.to_string()).unwrap_or_default();
                    let mut inv = script.prepare_invoke();
                    inv.key(self.key(&["c", &id]))
                        .key(&dl)
                        .arg(l.version)
                        .arg(&id)
                        .arg(score);
                    let _: i64 = self.invoke(inv).await?;
                }
            }
        }
        if mend {
            self.query::<()>(pipe).await?;
        }
        Ok(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{Command, State};
    use crate::protocol::Channel;
    use crate::store::Store;
    use ulid::Ulid;

    const D: Deadlines = Deadlines {
        visitor_grace_ms: 100,
        idle_limit_ms: 1_000,
        max_duration_ms: 5_000,
        wrap_up_ms: 300,
    };

    #[test]
    fn the_index_is_left_alone_without_lengths_and_scored_by_the_next_deadline_with() {
        let mut c = Conversation::new(Ulid::new(), Channel::Web, None, None, 10);
        c.visitor_connected = true;
        assert_eq!(deadline_arg(None, &c), "-");
        assert_eq!(
            deadline_arg(Some(&D), &c),
            "",
            "nothing to come: out of the index"
        );
        c.state = State::WrapUp {
            operator: Ulid::new(),
            since: 1_000,
        };
        assert_eq!(deadline_arg(Some(&D), &c), "1300");
    }

    async fn indexed(s: &RedisStore) -> Vec<(String, f64)> {
        s.query_cmd(
            redis::cmd("ZRANGE")
                .arg(s.key(&["dl"]))
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .to_owned(),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn the_sweep_reads_only_what_is_due_and_the_index_follows_every_step() {
        let s = crate::store::redis::tests::store();
        s.index_deadlines(D);
        let mut gone = crate::store::redis::tests::queued(1_000);
        gone.visitor_connected = false;
        gone.visitor_gone_since = Some(1_000);
        let mut here = crate::store::redis::tests::queued(1_000);
        here.visitor_connected = true;
        s.create(gone.clone()).await.unwrap();
        s.create(here.clone()).await.unwrap();
        assert_eq!(
            indexed(&s).await,
            vec![(gone.id.to_string(), 1_100.0)],
            "only the one with a timer to come, at its deadline"
        );
        assert!(s.due_conversations(&D, 1_099, 10).await.unwrap().is_empty());
        let due = s.due_conversations(&D, 1_100, 10).await.unwrap();
        assert_eq!(due.iter().map(|c| c.id).collect::<Vec<_>>(), vec![gone.id]);
        // The person comes back: no deadline any more.
        s.apply(gone.id, Command::VisitorConnected, None, 1_050)
            .await
            .unwrap();
        assert!(indexed(&s).await.is_empty());
        // An offer is indexed at its expiry; deleting takes it out.
        s.put_operator(crate::store::redis::tests::op(1))
            .await
            .unwrap();
        let offers = s.dispatch(2_000, 500, 120_000).await.unwrap();
        assert_eq!(offers.len(), 1);
        let offered = offers[0].after.id;
        assert_eq!(indexed(&s).await, vec![(offered.to_string(), 2_500.0)]);
        s.delete(offered).await.unwrap();
        assert!(indexed(&s).await.is_empty());
    }

    #[tokio::test]
    async fn stale_and_orphaned_entries_are_mended_when_read() {
        let s = crate::store::redis::tests::store();
        s.index_deadlines(D);
        let mut here = crate::store::redis::tests::queued(1_000);
        here.visitor_connected = true;
        s.create(here.clone()).await.unwrap();
        let dl = s.key(&["dl"]);
        let _: () = s
            .query_cmd(
                redis::cmd("ZADD")
                    .arg(&dl)
                    .arg(5)
                    .arg(here.id.to_string())
                    .arg(6)
                    .arg(Ulid::new().to_string())
                    .to_owned(),
            )
            .await
            .unwrap();
        assert!(s.due_conversations(&D, 10, 10).await.unwrap().is_empty());
        assert!(indexed(&s).await.is_empty(), "both entries dropped");
        // Other lengths than the index's: read from the conversations themselves.
        let other = Deadlines {
            visitor_grace_ms: 0,
            ..D
        };
        let mut gone = crate::store::redis::tests::queued(1_000);
        gone.visitor_connected = false;
        gone.visitor_gone_since = Some(1_000);
        s.create(gone.clone()).await.unwrap();
        let due = s.due_conversations(&other, 1_000, 10).await.unwrap();
        assert_eq!(due.iter().map(|c| c.id).collect::<Vec<_>>(), vec![gone.id]);
    }
}
