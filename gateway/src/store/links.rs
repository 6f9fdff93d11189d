//! What a connector shares about its people between gateway nodes: which conversation a person
//! of a channel is in ([`PersonLink`], keyed by a keyed hash of their id on the channel, made
//! by the connector), how far the conversation's log has been sent to them (the sender's
//! cursor), and the moving average of how long a conversation takes (for the wait estimate).
//!
//! [`MemoryLinks`] is the memory store's part (one process: a map beside the conversations,
//! cleared with them); the Redis store's is `redis/links.rs`. The behaviour both must have is
//! in [`conformance`].

use std::collections::HashMap;
use std::sync::Mutex;

use crate::conversation::ConversationId;

/// Weight of the newest closed conversation in the moving average of handling time.
pub const HANDLE_EWMA_ALPHA: f64 = 0.1;

/// A connector's person → conversation link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonLink {
    pub conversation: ConversationId,
    /// The route back to the person, sealed by the connector (so the store never holds it in
    /// the clear); empty if the connector needs none.
    pub route: String,
}

/// The next value of the moving average of handling time after a conversation of `ms`.
pub fn next_handle_ewma(avg: Option<f64>, ms: u64) -> f64 {
    let ms = ms as f64;
    match avg {
        None => ms,
        Some(avg) => avg + HANDLE_EWMA_ALPHA * (ms - avg),
    }
}

#[derive(Default)]
struct Maps {
    links: HashMap<String, PersonLink>,
    sent: HashMap<ConversationId, u64>,
    handle_ewma_ms: Option<f64>,
}

/// The memory store's links (no TTL: an entry goes when its conversation is deleted or
/// unlinked, and the process is the whole helpline).
#[derive(Default)]
pub struct MemoryLinks {
    maps: Mutex<Maps>,
}

impl MemoryLinks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn link(&self, key: &str, link: &PersonLink) -> PersonLink {
        self.lock()
            .links
            .entry(key.to_owned())
            .or_insert_with(|| link.clone())
            .clone()
    }

    pub fn linked(&self, key: &str) -> Option<PersonLink> {
        self.lock().links.get(key).cloned()
    }

    pub fn unlink(&self, key: &str, conv: ConversationId) {
        let mut m = self.lock();
        if m.links.get(key).is_some_and(|l| l.conversation == conv) {
            m.links.remove(key);
        }
    }

    pub fn sent_through(&self, conv: ConversationId) -> u64 {
        self.lock().sent.get(&conv).copied().unwrap_or(0)
    }

    pub fn set_sent_through(&self, conv: ConversationId, seq: u64) {
        let mut m = self.lock();
        let s = m.sent.entry(conv).or_insert(0);
        *s = (*s).max(seq);
    }

    pub fn observe_handle_time(&self, ms: u64) -> f64 {
        let mut m = self.lock();
        let next = next_handle_ewma(m.handle_ewma_ms, ms);
        m.handle_ewma_ms = Some(next);
        next
    }

    pub fn handle_time(&self) -> Option<f64> {
        self.lock().handle_ewma_ms
    }

    /// Everything of a deleted conversation.
    pub fn forget(&self, conv: ConversationId) {
        let mut m = self.lock();
        m.links.retain(|_, l| l.conversation != conv);
        m.sent.remove(&conv);
    }
}

/// The checks every store's links must pass (run by the memory and Redis stores' tests).
pub mod conformance {
    use std::sync::Arc;

    use ulid::Ulid;

    use super::PersonLink;
    use crate::conversation::Conversation;
    use crate::protocol::Channel;
    use crate::store::Store;

    fn link(conv: Ulid, route: &str) -> PersonLink {
        PersonLink {
            conversation: conv,
            route: route.to_owned(),
        }
    }

    pub async fn run_all(store: Arc<dyn Store>) {
        the_first_link_wins_and_unlink_only_removes_its_own(Arc::clone(&store)).await;
        delete_removes_the_links_and_cursor_of_a_conversation(Arc::clone(&store)).await;
        the_sent_cursor_only_moves_forward(Arc::clone(&store)).await;
        handling_time_is_a_shared_moving_average(store).await;
    }

    pub async fn the_first_link_wins_and_unlink_only_removes_its_own(store: Arc<dyn Store>) {
        let key = format!("k{}", Ulid::new());
        let (a, b) = (Ulid::new(), Ulid::new());
        assert_eq!(store.linked(&key).await.unwrap(), None);
        let won = store.link(&key, &link(a, "ra"), 60_000).await.unwrap();
        assert_eq!(won, link(a, "ra"), "the first link is kept");
        let lost = store.link(&key, &link(b, "rb"), 60_000).await.unwrap();
        assert_eq!(
            lost,
            link(a, "ra"),
            "a second link for the same key gets the first"
        );
        store.unlink(&key, b).await.unwrap();
        assert_eq!(
            store.linked(&key).await.unwrap(),
            Some(link(a, "ra")),
            "unlinking another conversation leaves the link"
        );
        store.unlink(&key, a).await.unwrap();
        assert_eq!(store.linked(&key).await.unwrap(), None, "unlinked");
        let again = store.link(&key, &link(b, "rb"), 60_000).await.unwrap();
        assert_eq!(again, link(b, "rb"), "after unlinking, a new link is made");
    }

    pub async fn delete_removes_the_links_and_cursor_of_a_conversation(store: Arc<dyn Store>) {
        let c = Conversation::new(Ulid::new(), Channel::Line, None, None, 1);
        store.create(c.clone()).await.unwrap();
        let key = format!("k{}", Ulid::new());
        store.link(&key, &link(c.id, "r"), 60_000).await.unwrap();
        store.set_sent_through(c.id, 3).await.unwrap();
        store.delete(c.id).await.unwrap();
        assert_eq!(
            store.linked(&key).await.unwrap(),
            None,
            "link gone at close"
        );
        assert_eq!(store.sent_through(c.id).await.unwrap(), 0, "cursor gone");
    }

    pub async fn the_sent_cursor_only_moves_forward(store: Arc<dyn Store>) {
        let c = Ulid::new();
        assert_eq!(store.sent_through(c).await.unwrap(), 0);
        store.set_sent_through(c, 5).await.unwrap();
        store.set_sent_through(c, 2).await.unwrap();
        assert_eq!(store.sent_through(c).await.unwrap(), 5);
    }

    pub async fn handling_time_is_a_shared_moving_average(store: Arc<dyn Store>) {
        assert_eq!(store.handle_time().await.unwrap(), None);
        assert_eq!(store.observe_handle_time(100_000).await.unwrap(), 100_000.0);
        let next = store.observe_handle_time(200_000).await.unwrap();
        assert!((next - 110_000.0).abs() < 1e-6, "{next}");
        assert_eq!(store.handle_time().await.unwrap(), Some(next));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::store::{MemoryStore, Store};

    #[tokio::test]
    async fn memory_links_pass_the_conformance_checks() {
        super::conformance::run_all(Arc::new(MemoryStore::new()) as Arc<dyn Store>).await;
    }
}
