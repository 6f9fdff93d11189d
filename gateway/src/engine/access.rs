//! What the rest of the gateway may read of the engine's store and ask of its registry: the
//! store and the registry themselves are private to the engine (callers outside it go through
//! these methods, or through a [`super::follower::Follower`] for a live endpoint).
//!
//! Reads here are plain reads of the store, for callers that decide something from the current
//! state (a readiness probe, the coordinators' list, a connector looking up who holds a call).
//! Anything that changes a conversation goes through the engine's actions, never around them.

use crate::conversation::{Conversation, ConversationId};
use crate::protocol::LogEntry;
use crate::store::{OperatorRecord, StoreError};

use super::{Engine, Outbound};

impl Engine {
    /// Whether the store answers (the readiness probe).
    pub async fn store_ready(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    /// A live conversation as stored; `None` if the store does not have it (it ended, or the
    /// store lost it).
    pub async fn conversation(
        &self,
        id: ConversationId,
    ) -> Result<Option<Conversation>, StoreError> {
        self.store.get(id).await
    }

    /// Every live conversation.
    pub async fn conversations(&self) -> Result<Vec<Conversation>, StoreError> {
        self.store.conversations().await
    }

    /// The waiting conversations, in the order they will be offered.
    pub async fn queue(&self) -> Result<Vec<Conversation>, StoreError> {
        self.store.queue().await
    }

    /// A live conversation's whole log, oldest first.
    pub async fn log_of(&self, id: ConversationId) -> Result<Vec<LogEntry>, StoreError> {
        self.store.read_log(id, 0).await
    }

    /// Every operator the store knows, with their presence and connection.
    pub async fn operators(&self) -> Result<Vec<OperatorRecord>, StoreError> {
        self.store.operators().await
    }

    /// Tells every web visitor socket of this process to close with `code` (at shutdown: they
    /// wait on their queues, not on the shutdown token; see [`super::Registry::close_visitors`]).
    pub fn close_web_visitors(&self, code: u16, reason: &'static str) {
        self.registry.close_visitors(code, reason);
    }

    /// Queues the heartbeat for one slice (`slice` of `slices`) of this process's visitor
    /// sockets (the shared ticker of `ws::visitor`).
    pub fn heartbeat_visitors(&self, slices: u64, slice: u64) {
        self.registry
            .to_visitor_slice(slices, slice, &Outbound::Heartbeat);
    }

    /// Deletes a conversation from the store and tells nobody: what a store that lost its data
    /// looks like to the engine. For tests of [`Engine::tell_gone`]; never called by the
    /// gateway itself.
    #[doc(hidden)]
    pub async fn lose_from_store(&self, id: ConversationId) -> Result<(), StoreError> {
        self.store.delete(id).await
    }
}
