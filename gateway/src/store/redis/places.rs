//! Where a node's own waiting people stand ([`crate::store::Store::queue_places`]): one
//! pipeline of `ZRANK`s of `P:qz` for those ids, the queue's length, and the longest wait from
//! `P:qw`, never the whole queue. When the queue has not changed since the last answer (same
//! length, same head, no arrival numbered since) and every id asked was in it, the last answer
//! stands without asking for ranks.

use std::collections::HashMap;

use super::RedisStore;
use crate::conversation::ConversationId;
use crate::protocol::Millis;
use crate::store::{QueuePlaces, StoreError};

/// What the queue looked like: its length, its head, the last arrival number given.
type Signature = (u32, Option<String>, Option<u64>);

/// The last answer, and the queue it was read from.
#[derive(Debug, Default)]
pub(super) struct Cached {
    signature: Option<Signature>,
    places: HashMap<ConversationId, Option<u32>>,
}

impl RedisStore {
    /// [`crate::store::Store::queue_places`].
    pub(super) async fn places_of(
        &self,
        ids: &[ConversationId],
    ) -> Result<QueuePlaces, StoreError> {
        let (qz, q, qw) = (self.key(&["qz"]), self.key(&["q"]), self.key(&["qw"]));
        let mut pipe = redis::pipe();
        pipe.zcard(&qz)
            .scard(&q)
            .zcard(&qw)
            .zrange(&qz, 0, 0)
            .get(self.key(&["arrivals"]))
            .zrange_withscores(&qw, 0, 0);
        type Head = (u32, u32, u32, Vec<String>, Option<u64>, Vec<(String, f64)>);
        let (len, set_len, waits_len, head, arrivals, oldest): Head = self.query(pipe).await?;
        if len != set_len || waits_len != len {
            // Written by an older gateway (no `P:qz` or `P:qw` entry for some): the whole
            // queue, which also mends `P:qz`.
            let brief = self.queue_waits().await?;
            let at: HashMap<ConversationId, u32> = brief
                .iter()
                .enumerate()
                .map(|(i, (id, _))| (*id, i as u32 + 1))
                .collect();
            return Ok(QueuePlaces {
                places: ids.iter().map(|id| at.get(id).copied()).collect(),
                len: brief.len() as u32,
                oldest: brief.iter().map(|(_, t)| *t).min(),
            });
        }
        let oldest = oldest.first().map(|(_, t)| *t as Millis);
        let signature = (len, head.into_iter().next(), arrivals);
        {
            let cached = self.places.lock().unwrap_or_else(|e| e.into_inner());
            if cached.signature.as_ref() == Some(&signature)
                && ids.iter().all(|id| cached.places.contains_key(id))
            {
                return Ok(QueuePlaces {
                    places: ids.iter().map(|id| cached.places[id]).collect(),
                    len,
                    oldest,
                });
            }
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.zrank(&qz, id.to_string());
        }
        let ranks: Vec<Option<u32>> = if ids.is_empty() {
            Vec::new()
        } else {
            self.query(pipe).await?
        };
        let places: Vec<Option<u32>> = ranks.into_iter().map(|r| r.map(|r| r + 1)).collect();
        *self.places.lock().unwrap_or_else(|e| e.into_inner()) = Cached {
            signature: Some(signature),
            places: ids.iter().copied().zip(places.iter().copied()).collect(),
        };
        Ok(QueuePlaces {
            places,
            len,
            oldest,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::redis::tests::{queued, store};
    use crate::store::Store;

    #[tokio::test]
    async fn places_come_from_ranks_and_agree_with_the_whole_queue() {
        let s = store();
        let mut ids = Vec::new();
        for i in 0..5 {
            let c = queued(1_000 + i);
            ids.push(c.id);
            s.create(c).await.unwrap();
        }
        let stranger = ulid::Ulid::new();
        let ask = [ids[3], stranger, ids[0]];
        let p = s.queue_places(&ask).await.unwrap();
        assert_eq!(p.places, vec![Some(4), None, Some(1)]);
        assert_eq!((p.len, p.oldest), (5, Some(1_000)));
        // Asked again with nothing changed: the same answer (from the last one).
        assert_eq!(s.queue_places(&ask).await.unwrap(), p);
        // The head leaves: everyone moves up.
        s.delete(ids[0]).await.unwrap();
        let p = s.queue_places(&ask).await.unwrap();
        assert_eq!(p.places, vec![Some(3), None, None]);
        assert_eq!((p.len, p.oldest), (4, Some(1_001)));
        let brief = s.queue_brief().await.unwrap();
        assert_eq!(brief.iter().position(|(id, _)| *id == ids[3]), Some(2));
    }
}
