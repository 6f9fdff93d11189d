//! The embedded default store: all state in this process, behind one `std::sync::Mutex`.
//!
//! Every trait method takes the lock once, does its whole step and releases it; no lock is held
//! across an `.await` (there is none inside). Indexes (queue order, who holds what, token to
//! conversation) are maintained in [`Inner::commit`], the one place a conversation changes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use ulid::Ulid;

use super::{
    Applied, ApplyError, CallRecord, OnDuty, OperatorRecord, OperatorUpdate, PersonLink, Store,
    StoreError,
};
use crate::conversation::{Command, Conversation, ConversationId, OperatorId, QueueKey, State};
use crate::protocol::{LogEntry, Millis};
use crate::routing::{self, OperatorSlot};

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// The connectors' people and the shared statistics ([`super::links`]).
    links: super::links::MemoryLinks,
    calls: super::calls::MemoryCalls,
    /// Alert episodes taken ([`Store::claim_episode`]).
    episodes: Mutex<std::collections::HashSet<String>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug in this file; the state it protects is
        // still consistent at every statement boundary that can panic, so keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Entry {
    conv: Conversation,
    log: Vec<LogEntry>,
    /// Client ids already applied, with the seq their first application answered with.
    client_ids: HashMap<Ulid, Option<u64>>,
}

/// An operator's held conversations, summed so that their load does not depend on the capacity
/// (a phone call weighs the whole capacity, whatever it is when asked).
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
struct Load {
    /// Weights of the non-phone conversations.
    weights: u32,
    /// Phone calls held.
    calls: u32,
    /// Conversations offered and not yet answered.
    offers: u32,
}

/// Everything of a conversation that the queue, holder, load and token indexes read: when
/// a step leaves it unchanged, the indexes stay true without being touched.
fn indexed(conv: &Conversation) -> impl PartialEq + '_ {
    (
        &conv.state,
        conv.token_hash.as_deref(),
        conv.weight,
        conv.channel,
        (conv.state == State::Queued).then(|| conv.queue_key()),
    )
}

impl Load {
    fn change(&mut self, conv: &Conversation, add: bool) {
        let (w, c, o) = (
            if conv.channel == crate::protocol::Channel::Phone {
                0
            } else {
                conv.weight
            },
            u32::from(conv.channel == crate::protocol::Channel::Phone),
            u32::from(matches!(conv.state, State::Offered { .. })),
        );
        if add {
            self.weights += w;
            self.calls += c;
            self.offers += o;
        } else {
            self.weights = self.weights.saturating_sub(w);
            self.calls = self.calls.saturating_sub(c);
            self.offers = self.offers.saturating_sub(o);
        }
    }
}

type TokenKey = [u8; 32];

/// The index key of a token hash: its bytes when it is SHA-256 in hex, as
/// `engine::hash_token` makes them; any other string is hashed, so it still has a key of its own.
fn token_key(token_hash: &str) -> TokenKey {
    let mut key = [0; 32];
    if hex::decode_to_slice(token_hash, &mut key).is_err() {
        key = Sha256::digest(token_hash.as_bytes()).into();
    }
    key
}

struct Inner {
    /// Boxed: the table keeps spare slots (up to half of them at a doubling), and an inline
    /// entry (~450 B) made each spare slot as large; boxed, a slot is 24 B.
    conversations: HashMap<ConversationId, Box<Entry>>,
    queue: BTreeMap<QueueKey, ConversationId>,
    held: HashMap<OperatorId, HashSet<ConversationId>>,
    /// What each operator's held conversations add up to, kept with `held`: the dispatcher
    /// reads every operator's load on every arrival and accept, and summing their conversations
    /// each time cost O(conversations held) per wake (5,000 in the load tests' burst).
    loads: HashMap<OperatorId, Load>,
    /// Keyed by the hash's 32 bytes, not its 64 hex characters: one entry per waiting person,
    /// and a `String` key is a heap allocation of its own.
    tokens: HashMap<TokenKey, ConversationId>,
    operators: HashMap<OperatorId, OperatorRecord>,
    /// The last arrival number given ([`Conversation::arrival`]): taken under the lock, so
    /// queue order is the order in which arrivals were stored.
    arrivals: u64,
}

impl Default for Inner {
    fn default() -> Self {
        // The two tables with an entry per person start at their full size: see
        // [`super::PRESIZED_SESSIONS`].
        Inner {
            conversations: HashMap::with_capacity(super::PRESIZED_SESSIONS),
            queue: BTreeMap::new(),
            held: HashMap::new(),
            loads: HashMap::new(),
            tokens: HashMap::with_capacity(super::PRESIZED_SESSIONS),
            operators: HashMap::new(),
            arrivals: 0,
        }
    }
}

/// Gives a conversation that has (re)entered the queue the next arrival number.
fn number(arrivals: &mut u64, conv: &mut Conversation) {
    if conv.needs_arrival() {
        *arrivals += 1;
        conv.arrival = *arrivals;
    }
}

impl Inner {
    fn index_add(&mut self, conv: &Conversation) {
        if conv.state == State::Queued {
            self.queue.insert(conv.queue_key(), conv.id);
        }
        if let Some(op) = conv.state.operator() {
            if self.held.entry(op).or_default().insert(conv.id) {
                self.loads.entry(op).or_default().change(conv, true);
            }
        }
        if let Some(t) = &conv.token_hash {
            self.tokens.insert(token_key(t), conv.id);
        }
    }

    fn index_remove(&mut self, conv: &Conversation) {
        if conv.state == State::Queued {
            self.queue.remove(&conv.queue_key());
        }
        if let Some(op) = conv.state.operator() {
            if let Some(set) = self.held.get_mut(&op) {
                if set.remove(&conv.id) {
                    if let Some(load) = self.loads.get_mut(&op) {
                        load.change(conv, false);
                    }
                }
                if set.is_empty() {
                    self.held.remove(&op);
                    self.loads.remove(&op);
                }
            }
        }
        if let Some(t) = &conv.token_hash {
            self.tokens.remove(&token_key(t));
        }
    }

    /// Applies a command to one conversation and keeps every index true.
    fn commit(
        &mut self,
        id: ConversationId,
        cmd: Command,
        client_id: Option<Ulid>,
        now: Millis,
    ) -> Result<Applied, ApplyError> {
        let entry = self
            .conversations
            .get_mut(&id)
            .ok_or(ApplyError::NotFound)?;
        if let Some(cid) = client_id {
            if let Some(seq) = entry.client_ids.get(&cid) {
                return Ok(Applied {
                    before: entry.conv.clone(),
                    after: entry.conv.clone(),
                    appended: vec![],
                    duplicate: Some(*seq),
                });
            }
        }
        // A refusal returns here, before anything changed. From here on nothing can fail.
        let (mut after, appended) = super::advance(&entry.conv, cmd, now)?;
        number(&mut self.arrivals, &mut after);
        entry.log.extend(appended.iter().cloned());
        if let Some(cid) = client_id {
            entry.client_ids.insert(cid, appended.last().map(|e| e.seq));
        }
        // The stored copy becomes `after` and the old one is handed back as `before`: two
        // copies of the conversation per step, not three (every message is a step).
        let before = std::mem::replace(&mut entry.conv, after.clone());
        // Most steps are messages, which change nothing the indexes hold: skip them.
        if indexed(&before) != indexed(&after) {
            self.index_remove(&before);
            self.index_add(&after);
        }
        Ok(Applied {
            before,
            after,
            appended,
            duplicate: None,
        })
    }

    /// An operator's load on their capacity, and whether an offer to them is pending.
    fn load_of(&self, rec: &OperatorRecord) -> (u32, bool) {
        let l = self.loads.get(&rec.id).copied().unwrap_or_default();
        let summed = (l.weights + l.calls * rec.capacity.max(1), l.offers > 0);
        // Every test (debug build) checks the running sums against summing what is held.
        #[cfg(debug_assertions)]
        {
            let held = self.held.get(&rec.id).into_iter().flatten();
            let walked = super::slot_of(
                rec,
                held.filter_map(|id| self.conversations.get(id).map(|e| &e.conv)),
            );
            debug_assert_eq!(summed, (walked.load, walked.has_offer));
        }
        summed
    }

    fn slot<'a>(&self, rec: &'a OperatorRecord) -> OperatorSlot<'a> {
        let (load, has_offer) = self.load_of(rec);
        super::slot_with(rec, load, has_offer)
    }

    fn queued(&self) -> impl Iterator<Item = &Conversation> {
        self.queue
            .values()
            .filter_map(|id| self.conversations.get(id).map(|e| &e.conv))
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn claim_episode(&self, key: &str, _ttl_ms: u64) -> Result<bool, StoreError> {
        let mut e = self.episodes.lock().unwrap_or_else(|e| e.into_inner());
        Ok(e.insert(key.to_owned()))
    }

    async fn end_episode(&self, key: &str) -> Result<(), StoreError> {
        let mut e = self.episodes.lock().unwrap_or_else(|e| e.into_inner());
        e.remove(key);
        Ok(())
    }

    async fn link(
        &self,
        key: &str,
        link: &PersonLink,
        _ttl_ms: u64,
    ) -> Result<PersonLink, StoreError> {
        Ok(self.links.link(key, link))
    }

    async fn linked(&self, key: &str) -> Result<Option<PersonLink>, StoreError> {
        Ok(self.links.linked(key))
    }

    async fn unlink(&self, key: &str, conv: ConversationId) -> Result<(), StoreError> {
        self.links.unlink(key, conv);
        Ok(())
    }

    async fn sent_through(&self, conv: ConversationId) -> Result<u64, StoreError> {
        Ok(self.links.sent_through(conv))
    }

    async fn set_sent_through(&self, conv: ConversationId, seq: u64) -> Result<(), StoreError> {
        self.links.set_sent_through(conv, seq);
        Ok(())
    }

    async fn call(&self, conv: ConversationId) -> Result<Option<CallRecord>, StoreError> {
        Ok(self.calls.get(conv))
    }

    async fn put_call(
        &self,
        conv: ConversationId,
        rec: &CallRecord,
        _ttl_ms: u64,
    ) -> Result<Option<CallRecord>, StoreError> {
        Ok(self.calls.put(conv, rec))
    }

    async fn observe_handle_time(&self, ms: u64) -> Result<f64, StoreError> {
        Ok(self.links.observe_handle_time(ms))
    }

    async fn handle_time(&self) -> Result<Option<f64>, StoreError> {
        Ok(self.links.handle_time())
    }

    async fn create(&self, mut conv: Conversation) -> Result<(), StoreError> {
        let mut inner = self.lock();
        number(&mut inner.arrivals, &mut conv);
        inner.index_add(&conv);
        inner.conversations.insert(
            conv.id,
            Box::new(Entry {
                conv,
                log: Vec::new(),
                client_ids: HashMap::new(),
            }),
        );
        Ok(())
    }

    async fn get(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        Ok(self.lock().conversations.get(&id).map(|e| e.conv.clone()))
    }

    async fn find_by_token(&self, token_hash: &str) -> Result<Option<Conversation>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .tokens
            .get(&token_key(token_hash))
            .and_then(|id| inner.conversations.get(id))
            .map(|e| e.conv.clone()))
    }

    async fn apply(
        &self,
        id: ConversationId,
        cmd: Command,
        client_id: Option<Ulid>,
        now: Millis,
    ) -> Result<Applied, ApplyError> {
        self.lock().commit(id, cmd, client_id, now)
    }

    async fn read_log(&self, id: ConversationId, after: u64) -> Result<Vec<LogEntry>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .conversations
            .get(&id)
            .map(|e| {
                let start = usize::try_from(after)
                    .unwrap_or(usize::MAX)
                    .min(e.log.len());
                e.log[start..].to_vec()
            })
            .unwrap_or_default())
    }

    async fn delete(&self, id: ConversationId) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if let Some(entry) = inner.conversations.remove(&id) {
            inner.index_remove(&entry.conv);
        }
        drop(inner);
        self.links.forget(id);
        self.calls.forget(id);
        Ok(())
    }

    async fn conversations(&self) -> Result<Vec<Conversation>, StoreError> {
        Ok(self
            .lock()
            .conversations
            .values()
            .map(|e| e.conv.clone())
            .collect())
    }

    async fn conversations_where(
        &self,
        pick: &(dyn for<'c> Fn(&'c Conversation) -> bool + Send + Sync),
    ) -> Result<Vec<Conversation>, StoreError> {
        Ok(self
            .lock()
            .conversations
            .values()
            .filter(|e| pick(&e.conv))
            .map(|e| e.conv.clone())
            .collect())
    }

    async fn held_by(&self, operator: OperatorId) -> Result<Vec<Conversation>, StoreError> {
        let inner = self.lock();
        let mut convs: Vec<Conversation> = inner
            .held
            .get(&operator)
            .into_iter()
            .flatten()
            .filter_map(|id| inner.conversations.get(id).map(|e| e.conv.clone()))
            .collect();
        convs.sort_by_key(|c| c.id);
        Ok(convs)
    }

    async fn queue(&self) -> Result<Vec<Conversation>, StoreError> {
        Ok(self.lock().queued().cloned().collect())
    }

    async fn queue_position(&self, id: ConversationId) -> Result<Option<(u32, u32)>, StoreError> {
        let inner = self.lock();
        let Some(entry) = inner.conversations.get(&id) else {
            return Ok(None);
        };
        if entry.conv.state != State::Queued {
            return Ok(None);
        }
        let ahead = inner.queue.range(..entry.conv.queue_key()).count();
        Ok(Some((ahead as u32 + 1, inner.queue.len() as u32)))
    }

    async fn queue_brief(&self) -> Result<Vec<(ConversationId, Millis)>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .queue
            .values()
            .filter_map(|id| inner.conversations.get(id).map(|e| (*id, e.conv.queued_at)))
            .collect())
    }

    async fn put_operator(&self, record: OperatorRecord) -> Result<(), StoreError> {
        self.lock().operators.insert(record.id, record);
        Ok(())
    }

    async fn update_operator(
        &self,
        id: OperatorId,
        update: OperatorUpdate,
    ) -> Result<Option<OperatorRecord>, StoreError> {
        let mut inner = self.lock();
        let Some(rec) = inner.operators.get_mut(&id) else {
            return Ok(None);
        };
        match update {
            OperatorUpdate::Presence(p) => rec.presence = p,
            OperatorUpdate::Connected => {
                rec.connected = true;
                rec.disconnected_since = None;
            }
            OperatorUpdate::Disconnected { at } => {
                rec.connected = false;
                rec.disconnected_since = Some(at);
            }
        }
        Ok(Some(rec.clone()))
    }

    async fn operators(&self) -> Result<Vec<OperatorRecord>, StoreError> {
        let mut ops: Vec<_> = self.lock().operators.values().cloned().collect();
        ops.sort_by_key(|o| o.id);
        Ok(ops)
    }

    async fn operator_load(
        &self,
        id: OperatorId,
    ) -> Result<Option<(OperatorRecord, u32)>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .operators
            .get(&id)
            .map(|rec| (rec.clone(), inner.load_of(rec).0)))
    }

    async fn on_duty(&self) -> Result<OnDuty, StoreError> {
        Ok(OnDuty::of(self.lock().operators.values()))
    }

    async fn dispatch(
        &self,
        now: Millis,
        offer_ms: u64,
        language_fallback_ms: u64,
    ) -> Result<Vec<Applied>, StoreError> {
        let mut inner = self.lock();
        let mut slots: Vec<OperatorSlot> =
            inner.operators.values().map(|r| inner.slot(r)).collect();
        if !slots.iter().any(|s| !s.has_offer && s.load < s.capacity) {
            return Ok(vec![]);
        }
        let plan = routing::plan(inner.queued(), &mut slots, now, language_fallback_ms);
        let mut applied = Vec::with_capacity(plan.len());
        for (conv, operator) in plan {
            let cmd = Command::Offer {
                operator,
                expires_at: now + offer_ms,
            };
            if let Ok(a) = inner.commit(conv, cmd, None, now) {
                if let Some(rec) = inner.operators.get_mut(&operator) {
                    rec.last_assigned = now;
                }
                applied.push(a);
            }
        }
        Ok(applied)
    }

    async fn take_next(
        &self,
        operator: OperatorId,
        now: Millis,
        language_fallback_ms: u64,
    ) -> Result<Option<Applied>, ApplyError> {
        let mut inner = self.lock();
        let Some(rec) = inner.operators.get(&operator).cloned() else {
            return Ok(None);
        };
        let slot = inner.slot(&rec);
        let Some(conv) = routing::next_for(inner.queued(), &slot, now, language_fallback_ms) else {
            return Ok(None);
        };
        let cmd = Command::Take {
            operator,
            operator_name: rec.name.clone(),
        };
        let applied = inner.commit(conv, cmd, None, now)?;
        if let Some(rec) = inner.operators.get_mut(&operator) {
            rec.last_assigned = now;
        }
        Ok(Some(applied))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;
    use std::sync::Arc;

    #[tokio::test]
    async fn memory_store_passes_the_conformance_suite() {
        conformance::run_all(|| Arc::new(MemoryStore::new()) as Arc<dyn Store>).await;
    }
}
