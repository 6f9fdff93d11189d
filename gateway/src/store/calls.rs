//! A phone call's shared record ([`CallRecord`]): where the live call is (its [`CallPhase`]),
//! how far its conversation's log has been acted on, and the times the hold loop needs, so
//! that any gateway node can answer any of the call's webhooks and a node that takes the
//! call's lease over goes on where the one before stopped (`connectors::voice`).
//!
//! Keyed by the conversation (a ULID of ours, never the call SID or a number), written with a
//! version check ([`crate::store::Store::put_call`]), deleted with the conversation.
//! [`MemoryCalls`] is the memory store's part; the Redis store's is `redis/calls.rs`. The
//! behaviour both must have is in [`conformance`].

use std::collections::HashMap;
use std::sync::Mutex;

use crate::conversation::ConversationId;

/// Where a live call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallPhase {
    /// In the hold loop.
    Waiting,
    /// An operator accepted; the bridge request is claimed (sent at most once) and on its way.
    Bridging,
    /// The provider took the bridge: the call is with the operator (or ringing them).
    Bridged,
    /// The call is being ended politely; nothing more is sent.
    Ending,
}

impl CallPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            CallPhase::Waiting => "waiting",
            CallPhase::Bridging => "bridging",
            CallPhase::Bridged => "bridged",
            CallPhase::Ending => "ending",
        }
    }

    pub fn parse(s: &str) -> Option<CallPhase> {
        Some(match s {
            "waiting" => CallPhase::Waiting,
            "bridging" => CallPhase::Bridging,
            "bridged" => CallPhase::Bridged,
            "ending" => CallPhase::Ending,
            _ => return None,
        })
    }
}

/// A live call's shared facts. Times are milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub phase: CallPhase,
    /// The highest log seq of the conversation the call's leader has acted on (an operator
    /// joined, left, the end): a leader that takes over acts only on entries after it.
    pub seq: u64,
    /// Since when the caller has been waiting (for the maximum wait).
    pub waiting_since: u64,
    /// When the hold loop last came back (a loop that stops means the caller is gone).
    pub last_hold: u64,
    /// When the bridge now in [`CallPhase::Bridging`] was claimed (0: none).
    pub bridge_at: u64,
    /// The store's version of this record: 0 for one not stored yet; each write adds 1.
    pub version: u64,
}

impl CallRecord {
    /// A new call's record: waiting since `now`.
    pub fn new(now: u64) -> CallRecord {
        CallRecord {
            phase: CallPhase::Waiting,
            seq: 0,
            waiting_since: now,
            last_hold: now,
            bridge_at: 0,
            version: 0,
        }
    }
}

/// The memory store's call records (one process: gone with their conversation).
#[derive(Default)]
pub struct MemoryCalls {
    calls: Mutex<HashMap<ConversationId, CallRecord>>,
}

impl MemoryCalls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConversationId, CallRecord>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, conv: ConversationId) -> Option<CallRecord> {
        self.lock().get(&conv).cloned()
    }

    pub fn put(&self, conv: ConversationId, rec: &CallRecord) -> Option<CallRecord> {
        let mut calls = self.lock();
        let stored = calls.get(&conv).map_or(0, |r| r.version);
        if stored != rec.version {
            return None;
        }
        let written = CallRecord {
            version: stored + 1,
            ..rec.clone()
        };
        calls.insert(conv, written.clone());
        Some(written)
    }

    pub fn forget(&self, conv: ConversationId) {
        self.lock().remove(&conv);
    }
}

/// The checks every store's call records must pass (run by the memory and Redis stores' tests).
pub mod conformance {
    use std::sync::Arc;

    use ulid::Ulid;

    use super::{CallPhase, CallRecord};
    use crate::conversation::Conversation;
    use crate::protocol::Channel;
    use crate::store::Store;

    pub async fn run_all(store: Arc<dyn Store>) {
        a_call_record_is_written_only_over_the_version_it_was_read_at(Arc::clone(&store)).await;
        a_call_record_goes_with_its_conversation(store).await;
    }

    pub async fn a_call_record_is_written_only_over_the_version_it_was_read_at(
        store: Arc<dyn Store>,
    ) {
        let conv = Ulid::new();
        assert_eq!(store.call(conv).await.unwrap(), None);
        let first = store
            .put_call(conv, &CallRecord::new(1_000), 60_000)
            .await
            .unwrap()
            .expect("a new record is written");
        assert_eq!(first.version, 1);
        assert_eq!(store.call(conv).await.unwrap(), Some(first.clone()));
        assert_eq!(
            store
                .put_call(conv, &CallRecord::new(2_000), 60_000)
                .await
                .unwrap(),
            None,
            "a second new record loses to the first"
        );
        let bridging = CallRecord {
            phase: CallPhase::Bridging,
            seq: 4,
            bridge_at: 1_500,
            ..first.clone()
        };
        let second = store
            .put_call(conv, &bridging, 60_000)
            .await
            .unwrap()
            .expect("written over the version read");
        assert_eq!(second.version, 2);
        assert_eq!(second.phase, CallPhase::Bridging);
        assert_eq!((second.seq, second.bridge_at), (4, 1_500));
        assert_eq!(second.waiting_since, 1_000);
        let stale = CallRecord {
            phase: CallPhase::Ending,
            ..first
        };
        assert_eq!(
            store.put_call(conv, &stale, 60_000).await.unwrap(),
            None,
            "a write over an older version is refused"
        );
        assert_eq!(store.call(conv).await.unwrap(), Some(second));
    }

    pub async fn a_call_record_goes_with_its_conversation(store: Arc<dyn Store>) {
        let c = Conversation::new(Ulid::new(), Channel::Phone, None, None, 1);
        store.create(c.clone()).await.unwrap();
        store
            .put_call(c.id, &CallRecord::new(1_000), 60_000)
            .await
            .unwrap()
            .unwrap();
        store.delete(c.id).await.unwrap();
        assert_eq!(store.call(c.id).await.unwrap(), None, "gone at close");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::CallPhase;
    use crate::store::{MemoryStore, Store};

    #[tokio::test]
    async fn memory_call_records_pass_the_conformance_checks() {
        super::conformance::run_all(Arc::new(MemoryStore::new()) as Arc<dyn Store>).await;
    }

    #[test]
    fn every_phase_reads_back_as_written() {
        for p in [
            CallPhase::Waiting,
            CallPhase::Bridging,
            CallPhase::Bridged,
            CallPhase::Ending,
        ] {
            assert_eq!(CallPhase::parse(p.as_str()), Some(p));
        }
        assert_eq!(CallPhase::parse("x"), None);
    }
}
