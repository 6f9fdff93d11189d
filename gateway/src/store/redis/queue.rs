//! The queue: its order (`P:q`, and `P:qz` scored by [`queue_score`] so that a place is one
//! `ZRANK`; `P:qt` for when each was queued), mending that index when an older gateway left it
//! behind, and the two ways a conversation leaves it: offers ([`RedisStore::offer_queued`]) and
//! takes ([`RedisStore::take_for`]), both checking the operators' load versions.

use std::collections::HashMap;

use redis::AsyncCommands;
use ulid::Ulid;

use super::conversations::Loaded;
use super::operators::LoadedOp;
use super::steps::{ConvWrite, OpWrite, Outcome};
use super::{contended, corrupt, RedisStore, ATTEMPTS};
use crate::conversation::{Command, Conversation, ConversationId, OperatorId, State};
use crate::protocol::Millis;
use crate::routing::{self, OperatorSlot};
use crate::store::{advance, slot_of, slot_with, Applied, ApplyError, OperatorRecord, StoreError};

/// Bits of a queue score below the priority and the tier: the arrival number, up to 2^42 (the
/// counter starts at the first arrival's time in ms, which reaches 2^42 in the year 2109).
const ARRIVAL_BITS: u32 = 42;

/// A queued conversation's score in `P:qz`: priority, then tier, then its arrival number, so
/// that the scores sort as [`Conversation::queue_key`] does, and no two are equal (arrival
/// numbers are unique). Exact in an `f64`: 8 + 1 + 42 bits. A conversation that has yet to be
/// numbered ([`Conversation::needs_arrival`]) is scored without its number, which
/// `commit.lua` adds.
pub(super) fn queue_score(conv: &Conversation) -> u64 {
    let key = conv.queue_key();
    (u64::from(key.inverse_priority) << (ARRIVAL_BITS + 1))
        | (u64::from(key.tier) << ARRIVAL_BITS)
        | (key.arrival & ((1 << ARRIVAL_BITS) - 1))
}

/// How many of the queue's head the dispatcher reads at once for `free` operators who can be
/// offered someone now: as many (at least 16), since each is offered one at a time; the next
/// page is read only when those at the head wait for a language or declined everyone free.
/// (Four times as many read up to four conversations a burst did not offer for each it did.)
fn head_page(free: u32) -> usize {
    (free as usize).clamp(16, 4_096)
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
pub(super) fn arrival_of(score: f64) -> u64 {
    (score as u64) & ((1 << ARRIVAL_BITS) - 1)
}

impl RedisStore {
    /// Queued conversations in queue order, with their versions.
    pub(super) async fn queued(&self) -> Result<Vec<Loaded>, StoreError> {
        let ids = self.members(self.key(&["q"])).await?;
        Ok(in_queue_order(self.load_many(&ids).await?))
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
        self.query::<()>(pipe).await?;
        Ok(queued)
    }

    /// [`crate::store::Store::queue_position`]: from the sorted index, `ZRANK`.
    pub(super) async fn place_in_queue(
        &self,
        id: ConversationId,
    ) -> Result<Option<(u32, u32)>, StoreError> {
        let (qz, q, member) = (self.key(&["qz"]), self.key(&["q"]), id.to_string());
        let mut pipe = redis::pipe();
        pipe.zrank(&qz, &member)
            .zcard(&qz)
            .sismember(&q, &member)
            .scard(&q);
        let (rank, len, queued, set_len): (Option<u32>, u32, bool, u32) = self.query(pipe).await?;
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

    /// [`crate::store::Store::queue_brief`]: the queue's ids and when each was queued, without
    /// reading any conversation while the index holds.
    pub(super) async fn queue_waits(&self) -> Result<Vec<(ConversationId, Millis)>, StoreError> {
        let (qz, q, qt) = (self.key(&["qz"]), self.key(&["q"]), self.key(&["qt"]));
        let mut pipe = redis::pipe();
        pipe.zrange_withscores(&qz, 0, -1).scard(&q);
        let (scored, set_len): (Vec<(String, f64)>, u32) = self.query(pipe).await?;
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

    /// [`crate::store::Store::dispatch`]: the offers routing makes now, written at once (with
    /// the operators' load versions checked).
    pub(super) async fn offer_queued(
        &self,
        now: Millis,
        offer_ms: u64,
        language_fallback_ms: u64,
    ) -> Result<Vec<Applied>, StoreError> {
        for attempt in 0..ATTEMPTS {
            let t0 = std::time::Instant::now();
            // The records and the head's ids in one round trip; enough ids for the most
            // operators who could be offered someone (all of them).
            let (ops, head_ids) = self.dispatch_view(|n| head_page(n as u32)).await?;
            let mut slots = self.slots(&ops).await?;
            if !slots.iter().any(|s| s.can_be_offered()) {
                return Ok(vec![]);
            }
            let t1 = t0.elapsed().as_micros() as u64;
            let (queued, plan) = self
                .plan_from_head(&mut slots, head_ids, now, language_fallback_ms)
                .await?;
            let t2 = t0.elapsed().as_micros() as u64;
            tracing::debug!(
                ops_us = t1,
                head_us = t2,
                read = queued.len(),
                planned = plan.len(),
                attempt,
                "dispatch read"
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
                // `commit.lua` wrote each record as the next version of the one read.
                self.keep_records(recs.values().map(|(read, rec)| (read.version + 1, rec)));
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
        Err(contended())
    }

    /// Plans offers reading only the head of the queue (`P:qz` in order, a page at a time):
    /// a page a few times as large as the operators who can be offered someone now (one offer
    /// each at a time), and the next only while such operators are left after the ones before
    /// (when those at the head wait for a language or declined everyone free). So a surge's
    /// work per wake follows the operators free to be offered someone, not the queue.
    async fn plan_from_head(
        &self,
        slots: &mut [OperatorSlot<'_>],
        mut head_ids: Vec<String>,
        now: Millis,
        language_fallback_ms: u64,
    ) -> Result<(Vec<Loaded>, Vec<(ConversationId, OperatorId)>), StoreError> {
        // Each operator is offered one conversation at a time: a plan makes at most one offer
        // per operator without one pending and with room.
        let offerable = slots.iter().filter(|s| s.can_be_offered()).count();
        let page = head_page(offerable as u32);
        let (mut read, mut plan) = (Vec::new(), Vec::new());
        let mut start = 0;
        loop {
            // The first page from the ids read with the records (fewer than a page: the queue
            // ends there), the next ones from `P:qz`.
            let (loaded, full) = if start == 0 {
                let full = head_ids.len() >= page;
                head_ids.truncate(page);
                (in_queue_order(self.load_many(&head_ids).await?), full)
            } else {
                self.head_page_at(start, page).await?
            };
            plan.extend(routing::plan(
                loaded.iter().map(|l| &l.conv),
                slots,
                now,
                language_fallback_ms,
            ));
            read.extend(loaded);
            if !full || !slots.iter().any(|s| s.can_be_offered()) {
                return Ok((read, plan));
            }
            start += page;
        }
    }

    /// `page` queued conversations from place `start` of `P:qz`, in queue order (loading skips
    /// any gone meanwhile; the sort keeps the order should a score be stale), and whether the
    /// page was full (more of the queue may lie behind it).
    async fn head_page_at(
        &self,
        start: usize,
        page: usize,
    ) -> Result<(Vec<Loaded>, bool), StoreError> {
        let qz = self.key(&["qz"]);
        let ids: Vec<String> = self
            .run(|mut c| {
                let qz = qz.clone();
                async move {
                    c.zrange(&qz, start as isize, (start + page - 1) as isize)
                        .await
                }
            })
            .await?;
        let full = ids.len() == page;
        Ok((in_queue_order(self.load_many(&ids).await?), full))
    }

    /// The head of the queue (`P:qz`, a page at a time) as far as the first conversation `slot`
    /// may take, and whether more of the queue lies behind what was read.
    async fn head_for(
        &self,
        slot: &OperatorSlot<'_>,
        now: Millis,
        language_fallback_ms: u64,
    ) -> Result<(Vec<Loaded>, bool), StoreError> {
        let page = head_page(0);
        let mut read = Vec::new();
        let mut start = 0;
        loop {
            let (loaded, full) = self.head_page_at(start, page).await?;
            let found = routing::next_for(
                loaded.iter().map(|l| &l.conv),
                slot,
                now,
                language_fallback_ms,
            )
            .is_some();
            read.extend(loaded);
            if found || !full {
                return Ok((read, full));
            }
            start += page;
        }
    }

    /// [`crate::store::Store::take_next`].
    pub(super) async fn take_for(
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
            let (mut queued, more) = self.head_for(&slot, now, language_fallback_ms).await?;
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
                    if more {
                        // Lost every one read to others; more of the queue lies behind.
                        break;
                    }
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
        Err(contended().into())
    }

    /// Routing's view of the operators, from what is stored now: their loads from the running
    /// sums on their records ([`LoadedOp::held`]); only for a record without them (written
    /// before they existed) from the conversations they hold.
    async fn slots<'a>(&self, ops: &'a [LoadedOp]) -> Result<Vec<OperatorSlot<'a>>, StoreError> {
        let unsummed: Vec<&LoadedOp> = ops.iter().filter(|o| o.held().is_none()).collect();
        let mut held_ids: HashMap<OperatorId, Vec<String>> = HashMap::new();
        if !unsummed.is_empty() {
            let mut pipe = redis::pipe();
            for o in &unsummed {
                pipe.smembers(self.key(&["held", &o.rec.id.to_string()]));
            }
            let sets: Vec<Vec<String>> = self.query(pipe).await?;
            for (o, set) in unsummed.iter().zip(sets) {
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
                if let Some((load, has_offer)) = o.held() {
                    return slot_with(&o.rec, load, has_offer);
                }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redis::tests::{op, queued, store};
    use crate::store::Store;

    #[test]
    fn the_head_read_at_once_follows_the_free_places_within_bounds() {
        assert_eq!(head_page(0), 16);
        assert_eq!(head_page(10), 16);
        assert_eq!(head_page(100), 100);
        assert_eq!(head_page(u32::MAX), 4_096);
    }

    #[tokio::test]
    async fn dispatch_reads_past_a_head_nobody_free_may_serve_and_keeps_queue_order() {
        let s = store();
        for i in 0..100 {
            let mut c = queued(1_000 + i);
            c.language = Some("en".into());
            s.create(c).await.unwrap();
        }
        let mut ja = Vec::new();
        for i in 0..3 {
            let mut c = queued(2_000 + i);
            c.language = Some("ja".into());
            ja.push(c.id);
            s.create(c).await.unwrap();
        }
        // Two operators speaking only Japanese: the first two Japanese speakers, in order,
        // behind a head (more than one page) that waits for English.
        for _ in 0..2 {
            let mut o = op(1);
            o.languages = vec!["ja".into()];
            s.put_operator(o).await.unwrap();
        }
        let mut offered: Vec<_> = s
            .dispatch(3_000, 30_000, 120_000)
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.after.arrival, a.after.id))
            .collect();
        offered.sort();
        let ids: Vec<_> = offered.into_iter().map(|(_, id)| id).collect();
        assert_eq!(ids, ja[..2].to_vec());
        assert_eq!(s.queue().await.unwrap().len(), 101);
    }

    /// The loads routing sees from the running sums, and from the conversations held.
    async fn both_views(s: &RedisStore) -> (Vec<(u32, bool)>, Vec<(u32, bool)>) {
        let ops = s.load_ops().await.unwrap();
        let summed = s.slots(&ops).await.unwrap();
        let summed = summed.iter().map(|o| (o.load, o.has_offer)).collect();
        let mut counted = Vec::new();
        for o in &ops {
            let held = s.held_by(o.rec.id).await.unwrap();
            let slot = slot_of(&o.rec, held.iter());
            counted.push((slot.load, slot.has_offer));
        }
        (summed, counted)
    }

    #[tokio::test]
    async fn operators_loads_from_the_running_sums_follow_offers_takes_calls_and_closes() {
        let s = store();
        let o = op(3);
        s.put_operator(o.clone()).await.unwrap();
        let mut call = queued(900);
        call.channel = crate::protocol::Channel::Phone;
        let (web, other) = (queued(1_000), queued(1_001));
        for c in [&web, &other] {
            s.create(c.clone()).await.unwrap();
        }
        let offers = s.dispatch(2_000, 30_000, 120_000).await.unwrap();
        assert_eq!(offers.len(), 1);
        let (summed, counted) = both_views(&s).await;
        assert_eq!(summed, vec![(1, true)]);
        assert_eq!(summed, counted);
        let accept = Command::Accept {
            operator: o.id,
            operator_name: "op".into(),
        };
        s.apply(web.id, accept, None, 2_100).await.unwrap();
        s.take_next(o.id, 2_200, 120_000).await.unwrap().unwrap();
        let (summed, counted) = both_views(&s).await;
        assert_eq!(summed, vec![(2, false)]);
        assert_eq!(summed, counted);
        s.apply(web.id, Command::OperatorEnd { operator: o.id }, None, 2_300)
            .await
            .unwrap();
        s.delete(other.id).await.unwrap();
        let (summed, counted) = both_views(&s).await;
        assert_eq!(summed, vec![(1, false)], "wrap-up still holds a place");
        assert_eq!(summed, counted);
        s.delete(web.id).await.unwrap();
        // A call weighs the whole capacity.
        s.create(call.clone()).await.unwrap();
        let mut taker = o.clone();
        taker.takes_calls = true;
        s.put_operator(taker).await.unwrap();
        s.take_next(o.id, 3_000, 120_000).await.unwrap().unwrap();
        let (summed, counted) = both_views(&s).await;
        assert_eq!(summed, vec![(3, false)]);
        assert_eq!(summed, counted);
    }
}
