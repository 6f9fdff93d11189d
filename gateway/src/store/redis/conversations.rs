//! Reading conversations: one (`P:c:{id}`, `HMGET`), many (one pipeline), by resume token
//! (`P:tok:*`), and the sets that index them (`P:convs`, `P:held:{op}`), each with the version
//! its next write must check.

use redis::AsyncCommands;
use ulid::Ulid;

use super::{corrupt, RedisStore};
use crate::conversation::{Conversation, ConversationId, OperatorId};
use crate::store::StoreError;

/// A conversation as read, with what its next write must check.
#[derive(Debug, Clone)]
pub(super) struct Loaded {
    pub(super) version: u64,
    pub(super) conv: Conversation,
    /// The node the person is connected through (`""`: none).
    pub(super) node: String,
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

/// A conversation's hash as read by [`RedisStore::load`]: `None` if there is none.
fn loaded_from(row: ConvRow) -> Result<Option<Loaded>, StoreError> {
    if row.0.is_none() {
        return Ok(None);
    }
    parse_conv(row)
        .map(Some)
        .ok_or_else(|| corrupt("conversation"))
}

impl RedisStore {
    pub(super) async fn load(&self, id: ConversationId) -> Result<Option<Loaded>, StoreError> {
        let key = self.key(&["c", &id.to_string()]);
        let row: ConvRow = self
            .run(|mut c| async move { c.hmget(&key, &CONV_FIELDS).await })
            .await?;
        loaded_from(row)
    }

    /// [`Self::load`], and in the same round trip the seq client id `cid` was answered with,
    /// if a step with it was applied already (`P:cid:{id}`).
    pub(super) async fn load_seen(
        &self,
        id: ConversationId,
        cid: Option<Ulid>,
    ) -> Result<(Option<Loaded>, Option<String>), StoreError> {
        let Some(cid) = cid else {
            return Ok((self.load(id).await?, None));
        };
        let id = id.to_string();
        let mut pipe = redis::pipe();
        pipe.hmget(self.key(&["c", &id]), &CONV_FIELDS)
            .hget(self.key(&["cid", &id]), cid.to_string());
        let (row, seen): (ConvRow, Option<String>) = self.query(pipe).await?;
        Ok((loaded_from(row)?, seen))
    }

    pub(super) async fn load_many(&self, ids: &[String]) -> Result<Vec<Loaded>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hmget(self.key(&["c", id]), &CONV_FIELDS);
        }
        let rows: Vec<ConvRow> = self.query(pipe).await?;
        // Missing rows are conversations whose keys expired (the TTL backstop): skip them.
        Ok(rows.into_iter().filter_map(parse_conv).collect())
    }

    /// The members of a set.
    pub(super) async fn members(&self, key: String) -> Result<Vec<String>, StoreError> {
        self.run(|mut c| async move { c.smembers(&key).await })
            .await
    }

    /// Which of `keys` exist, in order.
    pub(super) async fn exist(
        &self,
        keys: impl Iterator<Item = String>,
    ) -> Result<Vec<bool>, StoreError> {
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.exists(k);
        }
        self.query(pipe).await
    }

    /// [`crate::store::Store::find_by_token`].
    pub(super) async fn by_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<Conversation>, StoreError> {
        let key = self.key(&["tok", token_hash]);
        let id: Option<String> = self.run(|mut c| async move { c.get(&key).await }).await?;
        let Some(id) = id.and_then(|s| s.parse::<Ulid>().ok()) else {
            return Ok(None);
        };
        Ok(self
            .load(id)
            .await?
            .map(|l| l.conv)
            .filter(|c| c.token_hash.as_deref() == Some(token_hash)))
    }

    /// Every live conversation ([`crate::store::Store::conversations`]).
    pub(super) async fn live(&self) -> Result<Vec<Conversation>, StoreError> {
        let ids = self.members(self.key(&["convs"])).await?;
        Ok(self
            .load_many(&ids)
            .await?
            .into_iter()
            .map(|l| l.conv)
            .collect())
    }

    /// [`crate::store::Store::held_by`].
    pub(super) async fn held(&self, operator: OperatorId) -> Result<Vec<Conversation>, StoreError> {
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
}
