//! What the connectors share through the store about their people (the engine's store is
//! private, so they reach it here): person → conversation links, the per-conversation sender
//! lease and the sender's shared cursor ([`crate::store::links`]), a phone call's shared record
//! ([`crate::store::calls`]).

use super::Engine;
use crate::conversation::ConversationId;
use crate::store::{CallRecord, PersonLink, StoreError};

impl Engine {
    /// [`crate::store::Store::link`].
    pub async fn link_person(
        &self,
        key: &str,
        link: &PersonLink,
        ttl_ms: u64,
    ) -> Result<PersonLink, StoreError> {
        self.store.link(key, link, ttl_ms).await
    }

    /// [`crate::store::Store::linked`].
    pub async fn linked_person(&self, key: &str) -> Result<Option<PersonLink>, StoreError> {
        self.store.linked(key).await
    }

    /// [`crate::store::Store::unlink`].
    pub async fn unlink_person(&self, key: &str, conv: ConversationId) -> Result<(), StoreError> {
        self.store.unlink(key, conv).await
    }

    /// Whether this node holds (or has now taken) the lease on `task` for `ttl_ms`
    /// ([`crate::store::Store::lead`]).
    pub async fn lead(&self, task: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        self.store.lead(task, ttl_ms).await
    }

    /// Gives up the lease on `task` ([`crate::store::Store::release`]).
    pub async fn release(&self, task: &str) -> Result<(), StoreError> {
        self.store.release(task).await
    }

    /// [`crate::store::Store::sent_through`].
    pub async fn sent_through(&self, conv: ConversationId) -> Result<u64, StoreError> {
        self.store.sent_through(conv).await
    }

    /// [`crate::store::Store::set_sent_through`].
    pub async fn set_sent_through(&self, conv: ConversationId, seq: u64) -> Result<(), StoreError> {
        self.store.set_sent_through(conv, seq).await
    }

    /// [`crate::store::Store::call`].
    pub async fn call_record(
        &self,
        conv: ConversationId,
    ) -> Result<Option<CallRecord>, StoreError> {
        self.store.call(conv).await
    }

    /// [`crate::store::Store::put_call`].
    pub async fn put_call(
        &self,
        conv: ConversationId,
        rec: &CallRecord,
        ttl_ms: u64,
    ) -> Result<Option<CallRecord>, StoreError> {
        self.store.put_call(conv, rec, ttl_ms).await
    }
}
