//! The logs, one stream per conversation (`P:log:{id}`: entry id `{seq}-1`, the entry as JSON in
//! field `e`, so reading after a seq is one `XRANGE`), and deleting a conversation with every
//! key of it at its close (`delete.lua`).

use redis::AsyncCommands;

use super::{corrupt, RedisStore};
use crate::conversation::ConversationId;
use crate::protocol::LogEntry;
use crate::store::StoreError;

impl RedisStore {
    /// [`crate::store::Store::read_log`]: the entries after seq `after`.
    pub(super) async fn log_after(
        &self,
        id: ConversationId,
        after: u64,
    ) -> Result<Vec<LogEntry>, StoreError> {
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

    /// [`crate::store::Store::delete`]: the conversation, its log, client ids, token and index
    /// entries, in one script.
    pub(super) async fn delete_conversation(&self, id: ConversationId) -> Result<(), StoreError> {
        let mut inv = self.delete.prepare_invoke();
        inv.arg(&self.opts.key_prefix).arg(id.to_string());
        let _: i64 = self.invoke(inv).await?;
        self.delete_links(id).await
    }
}
