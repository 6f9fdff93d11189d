//! [`Follower`]: one live endpoint's life in this process, the same for every kind of endpoint
//! (a person's websocket, an operator's websocket, a LINE person, a phone call).
//!
//! A follower registers the endpoint's queue in the engine's [`Registry`], keeps its cursor
//! (the highest log seq it has handled) and reads the log after the cursor (catch-up), and
//! unregisters when dropped. It is a Drop guard: an endpoint's task that ends in any way
//! (returns, panics, is cancelled at shutdown) leaves no handle behind.
//!
//! Unregistering has two parts. Taking the handle out of the registry is synchronous and is
//! what `Drop` does. Telling the store that the person or operator left (`visitor_connection`,
//! `operator_disconnected`) is async, and only right if this follower was still the registered
//! one (a newer socket for the same conversation or operator supersedes it and must not be
//! marked gone): an endpoint ends with [`Follower::leave`], which unregisters and answers
//! whether it was still registered, and then takes that step itself.
//!
//! Superseding: each handle carries a connection number unique in the process
//! ([`Handle::conn`]); the registry removes an entry only when the number matches, so an old
//! follower's `Drop` never removes its successor.
//!
//! Size: a waiting person's follower lives in its socket's state for the whole wait (see
//! ARCHITECTURE.md, Websockets). It holds what that state held before, and nothing more: the
//! owner it reaches the engine through (for a web visitor the `&AppState` the socket had
//! anyway, see [`Follower::owner`]), the conversation id, the connection number and the
//! cursor; no allocation of its own, no token (a web visitor's handle has none). The visitor
//! socket's boxed state (`ws::visitor::Open`) measured 432 bytes before and after.

use std::collections::HashMap;
use std::future::Future;

use tokio_util::sync::CancellationToken;

use super::registry::{Handle, Inbox, Registry};
use super::Engine;
use crate::conversation::{ConversationId, OperatorId};
use crate::protocol::LogEntry;
use crate::store::StoreError;

/// The connection number of a follower that has left already: `Drop` has nothing to do.
/// Real numbers count up from 0 and never get here.
const LEFT: u64 = u64::MAX;

/// What a follower follows, and so where it registers: [`Person`] (one conversation, as its
/// visitor) or [`Operator`] (the conversations an operator holds, as that operator).
pub trait Follows {
    #[doc(hidden)]
    fn register(registry: &Registry, id: ulid::Ulid, handle: Handle);
    #[doc(hidden)]
    fn unregister(registry: &Registry, id: ulid::Ulid, conn: u64) -> bool;
}

/// A person's side of one conversation (web visitor, LINE person, phone call): registered as
/// the conversation's visitor, one cursor.
#[derive(Debug, Default)]
pub struct Person {
    cursor: u64,
}

/// An operator's console: registered as the operator, one cursor per conversation they hold.
#[derive(Debug, Default)]
pub struct Operator {
    cursors: HashMap<ConversationId, u64>,
}

impl Follows for Person {
    fn register(registry: &Registry, id: ulid::Ulid, handle: Handle) {
        registry.add_visitor(id, handle);
    }
    fn unregister(registry: &Registry, id: ulid::Ulid, conn: u64) -> bool {
        registry.remove_visitor(id, conn)
    }
}

impl Follows for Operator {
    fn register(registry: &Registry, id: ulid::Ulid, handle: Handle) {
        registry.add_operator(id, handle);
    }
    fn unregister(registry: &Registry, id: ulid::Ulid, conn: u64) -> bool {
        registry.remove_operator(id, conn)
    }
}

/// One live endpoint, registered in the engine's registry until dropped (module doc).
///
/// `E` is how it reaches the engine: an `Arc<Engine>` for a task of its own (connectors), or a
/// reference to something that holds the engine (a web visitor's `&AppState`).
pub struct Follower<E: AsRef<Engine>, F: Follows = Person> {
    owner: E,
    /// The conversation (a person's follower) or the operator (an operator's).
    id: ulid::Ulid,
    /// The registered handle's connection number; [`LEFT`] once unregistered.
    conn: u64,
    follows: F,
}

impl<E: AsRef<Engine>, F: Follows> Follower<E, F> {
    fn start(owner: E, id: ulid::Ulid, handle: Handle, follows: F) -> Self {
        let conn = handle.conn;
        F::register(&owner.as_ref().registry, id, handle);
        Follower {
            owner,
            id,
            conn,
            follows,
        }
    }

    /// What this follower reaches the engine through (a web visitor's socket reads its
    /// `AppState` here rather than keeping a second reference to it).
    pub fn owner(&self) -> &E {
        &self.owner
    }

    fn engine(&self) -> &Engine {
        self.owner.as_ref()
    }

    /// Registers a fresh handle under the same id, in place of this follower's (which is told
    /// it was superseded): for an endpoint whose queue filled. Catch up after it.
    pub fn reregister(&mut self, capacity: usize) -> (Inbox, CancellationToken) {
        let (handle, inbox, too_slow) = self.engine().registry.handle(capacity);
        self.conn = handle.conn;
        F::register(&self.engine().registry, self.id, handle);
        (inbox, too_slow)
    }

    /// Unregisters now; true if this follower was still the registered one (not superseded),
    /// in which case the caller tells the engine that the person or operator left (the async
    /// part of unregistering, which `Drop` cannot do).
    pub fn leave(mut self) -> bool {
        self.unregister()
    }

    fn unregister(&mut self) -> bool {
        if self.conn == LEFT {
            return false;
        }
        let conn = std::mem::replace(&mut self.conn, LEFT);
        F::unregister(&self.owner.as_ref().registry, self.id, conn)
    }
}

impl<E: AsRef<Engine>, F: Follows> Drop for Follower<E, F> {
    fn drop(&mut self) {
        self.unregister();
    }
}

impl<E: AsRef<Engine>> Follower<E, Person> {
    /// Registers a web visitor's socket for conversation `conv`, having sent it everything up
    /// to `cursor`. No cancellation token: a web visitor's socket notices a full queue itself
    /// ([`Inbox::fell_behind`]), which saves each waiting person its ~112 bytes.
    pub fn web_visitor(
        owner: E,
        conv: ConversationId,
        capacity: usize,
        cursor: u64,
    ) -> (Self, Inbox) {
        let (handle, inbox) = owner.as_ref().registry.visitor_handle(capacity);
        let follower = Follower::start(owner, conv, handle, Person { cursor });
        (follower, inbox)
    }

    /// Registers a connector's stand-in for a person (LINE, phone) as the visitor of `conv`,
    /// from the start of its log. The token is cancelled if its queue fills.
    pub fn person(
        owner: E,
        conv: ConversationId,
        capacity: usize,
    ) -> (Self, Inbox, CancellationToken) {
        let (handle, inbox, too_slow) = owner.as_ref().registry.handle(capacity);
        let follower = Follower::start(owner, conv, handle, Person::default());
        (follower, inbox, too_slow)
    }

    /// The conversation followed.
    pub fn conversation(&self) -> ConversationId {
        self.id
    }

    /// The highest seq handled.
    pub fn cursor(&self) -> u64 {
        self.follows.cursor
    }

    /// The log entries after the cursor, in order; the cursor moves past them, so each is
    /// handed out once.
    pub async fn catch_up(&mut self) -> Result<Vec<LogEntry>, StoreError> {
        let after = self.follows.cursor;
        let mut entries = self.engine().store.read_log(self.id, after).await?;
        entries.retain(|e| e.seq > self.follows.cursor);
        if let Some(last) = entries.last() {
            self.follows.cursor = last.seq;
        }
        Ok(entries)
    }

    /// Moves the cursor to `seq`, back or forward: the next catch-up starts after it (a
    /// connector's sender that takes over from another node starts again from the start, or
    /// from what was sent).
    pub fn set_cursor(&mut self, seq: u64) {
        self.follows.cursor = seq;
    }

    /// A live entry `seq` (sent with its step rather than read from the log): true, with the
    /// cursor moved to it, if it was not handled yet.
    pub fn take(&mut self, seq: u64) -> bool {
        if seq <= self.follows.cursor {
            return false;
        }
        self.follows.cursor = seq;
        true
    }

    /// True if a live entry `seq` is not the next one: some were missed, catch up first.
    pub fn missed_before(&self, seq: u64) -> bool {
        seq > self.follows.cursor + 1
    }

    /// A connector's catch-up (LINE, phone): hands every entry after the cursor, in order, to
    /// `to`, until it says the conversation ended (true), then tells it it has caught up
    /// ([`Entries::caught_up`]). A log that cannot be read is logged and left for the next
    /// wake-up.
    pub async fn deliver<T: Entries>(&mut self, to: &mut T) -> bool {
        let entries = match self.catch_up().await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(conversation = %self.id, error = %e, "{} follower could not read the log", T::KIND);
                return false;
            }
        };
        for entry in entries {
            if to.entry(entry).await {
                return true;
            }
        }
        to.caught_up().await;
        false
    }

    /// A connector's live entry: catches up first if entries were missed, then hands it to
    /// `to` if it is new. True when the conversation ended.
    pub async fn deliver_live<T: Entries>(&mut self, entry: LogEntry, to: &mut T) -> bool {
        if self.missed_before(entry.seq) && self.deliver(to).await {
            return true;
        }
        if !self.take(entry.seq) {
            return false;
        }
        to.entry(entry).await
    }
}

impl<E: AsRef<Engine>> Follower<E, Operator> {
    /// Registers operator `op`'s console socket, following nothing yet.
    pub fn operator(owner: E, op: OperatorId, capacity: usize) -> (Self, Inbox, CancellationToken) {
        let (handle, inbox, too_slow) = owner.as_ref().registry.handle(capacity);
        let follower = Follower::start(owner, op, handle, Operator::default());
        (follower, inbox, too_slow)
    }

    /// Follows conversation `conv` from `cursor` (no change if it is followed already).
    pub fn follow(&mut self, conv: ConversationId, cursor: u64) {
        self.follows.cursors.entry(conv).or_insert(cursor);
    }

    /// Stops following `conv`; true if it was followed.
    pub fn unfollow(&mut self, conv: ConversationId) -> bool {
        self.follows.cursors.remove(&conv).is_some()
    }

    /// Whether `conv` is followed.
    pub fn is_following(&self, conv: ConversationId) -> bool {
        self.follows.cursors.contains_key(&conv)
    }

    /// The conversations followed.
    pub fn following(&self) -> impl Iterator<Item = ConversationId> + '_ {
        self.follows.cursors.keys().copied()
    }

    /// The entries of `conv` after its cursor, in order (none if it is not followed); the
    /// cursor moves past them, so each is handed out once.
    pub async fn catch_up(&mut self, conv: ConversationId) -> Result<Vec<LogEntry>, StoreError> {
        let Some(&after) = self.follows.cursors.get(&conv) else {
            return Ok(Vec::new());
        };
        let mut entries = self.engine().store.read_log(conv, after).await?;
        entries.retain(|e| e.seq > after);
        if let Some(last) = entries.last() {
            self.follows.cursors.insert(conv, last.seq);
        }
        Ok(entries)
    }
}

/// A connector's stand-in for a person that handles log entries one at a time (the LINE
/// person, the phone call): what [`Follower::deliver`] hands the entries to.
pub trait Entries: Send {
    /// Names the endpoint in logs ("LINE", "voice").
    const KIND: &'static str;
    /// Handles one new entry; true when the conversation ended for the person.
    fn entry(&mut self, entry: LogEntry) -> impl Future<Output = bool> + Send;

    /// After a catch-up that did not end the conversation (nothing by default).
    fn caught_up(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

impl AsRef<Engine> for Engine {
    fn as_ref(&self) -> &Engine {
        self
    }
}

#[cfg(test)]
mod tests;
