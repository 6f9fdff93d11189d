//! The live sockets of this process: which visitor socket serves which conversation, which
//! operator socket serves which operator. A plain synchronous map behind a `std::sync::Mutex`,
//! never held across an `.await`.
//!
//! Each socket owns a bounded queue ([`Outbound`]); fan-out uses `try_send`, and a socket whose
//! queue is full is closed with 4011 "too slow" instead of being waited for: cancelled through
//! its `too_slow` token, or, for a visitor socket (which has none: one less allocation for every
//! waiting person), noticed by the socket itself ([`Inbox::fell_behind`]).
//!
//! The queue is a `flume` channel rather than tokio's: tokio's bounded channel allocates its
//! first block of 32 slots when created (~1 KB per socket, measured with massif), flume's
//! queue is empty until something is queued, and an idle waiting person's socket queues nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

use crate::cluster::Remote;
use crate::conversation::{ConversationId, OperatorId};
use crate::protocol::ServerMsg;

/// What the engine asks a socket to do.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// Send this frame. Boxed: a socket's queue holds many of these, and a `ServerMsg` inline
    /// (~200 bytes) made every slot, and the queue block allocated up front, that large.
    Frame(Box<ServerMsg>),
    /// Send this frame, already serialised (a frame another gateway node sent this way).
    Json(std::sync::Arc<str>),
    /// The conversation's log grew: read what you have not sent yet and send it.
    Wake(ConversationId),
    /// The operator now holds this conversation: start sending its log from the beginning
    /// (or from what the client already has).
    Hold(ConversationId),
    /// The operator no longer holds this conversation: stop following it.
    Release(ConversationId),
    /// Close the socket with this code and reason.
    Close(u16, &'static str),
    /// The person's conversation no longer exists in the store (it lost its data): tell them
    /// ([`crate::protocol::ServerMsg::Gone`], or each connector's own words) and stop. Queued
    /// by [`crate::engine::Engine::tell_gone`] after the store answered that the conversation
    /// is not there, so an `ended` queued before its deletion is always handled first.
    Gone(ConversationId),
    /// The store may have lost conversations: an operator socket checks each conversation it
    /// follows and tells the console about those that are gone.
    Recheck,
    /// The person's conversation ended and its log is about to be deleted: here is all of it,
    /// in order. A person's socket sends what it has not sent yet (so one that fell behind
    /// still shows everything up to the end, though the log it would read is gone); queued by
    /// [`crate::engine::Engine::publish`] before the step's own frames. Boxed: queues hold
    /// many items.
    Final(Box<Vec<crate::protocol::LogEntry>>),
    /// Time for the heartbeat: ping the peer, or close it if it has been silent too long. Sent
    /// to visitor sockets by one shared ticker ([`crate::ws::visitor::spawn_heartbeat`]) instead
    /// of a timer in each socket's task; other sockets ignore it.
    Heartbeat,
}

/// Crossing nodes: the [`Remote`] form the cluster bus carries, and back.
impl Outbound {
    /// The cross-node form of this item, if it has one.
    pub fn to_remote(&self) -> Option<Remote> {
        match self {
            Outbound::Frame(msg) => serde_json::to_string(msg)
                .ok()
                .map(|json| Remote::Frame { json }),
            Outbound::Json(text) => Some(Remote::Frame {
                json: text.to_string(),
            }),
            Outbound::Wake(id) => Some(Remote::Wake { conversation: *id }),
            Outbound::Close(code, _) => Some(Remote::Close { code: *code }),
            // Which conversations an operator socket follows is decided by steps (`Applied`).
            Outbound::Hold(_) | Outbound::Release(_) => None,
            // Each node pings its own sockets, and finds for itself which of its sockets'
            // conversations the store lost.
            Outbound::Heartbeat | Outbound::Gone(_) | Outbound::Recheck => None,
            // Only for a person's socket on the node that ends the conversation; other nodes
            // hand over the step's own entries.
            Outbound::Final(_) => None,
        }
    }

    pub fn from_remote(remote: Remote) -> Outbound {
        match remote {
            Remote::Frame { json } => Outbound::Json(json.into()),
            Remote::Wake { conversation } => Outbound::Wake(conversation),
            Remote::Close { code } => Outbound::Close(code, close_reason(code)),
        }
    }
}

fn close_reason(code: u16) -> &'static str {
    match code {
        crate::protocol::close::REVOKED => "session revoked",
        _ => "closed by the service",
    }
}

impl Outbound {
    /// Queue this frame.
    pub fn frame(msg: ServerMsg) -> Outbound {
        Outbound::Frame(Box::new(msg))
    }
}

/// A registered socket.
#[derive(Debug, Clone)]
pub struct Handle {
    /// Unique per socket, so a superseded socket's clean-up does not remove its successor.
    pub conn: u64,
    pub tx: flume::Sender<Outbound>,
    /// Cancelled when the socket could not keep up; the socket closes itself with 4011. `None`
    /// for a visitor socket, which notices a full queue itself ([`Inbox::fell_behind`]).
    pub too_slow: Option<CancellationToken>,
}

impl Handle {
    /// Queues `msg`; a full queue marks the socket too slow.
    pub fn send(&self, msg: Outbound) {
        if let Err(flume::TrySendError::Full(_)) = self.tx.try_send(msg) {
            if let Some(too_slow) = &self.too_slow {
                too_slow.cancel();
            }
        }
    }
}

/// The receiving end of a socket's queue.
pub struct Inbox {
    rx: flume::Receiver<Outbound>,
    behind: bool,
}

impl Inbox {
    /// The next queued item; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Outbound> {
        let item = self.rx.recv_async().await.ok();
        self.check(item.is_some());
        item
    }

    /// An item already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        let item = self.rx.try_recv().ok();
        self.check(item.is_some());
        item
    }

    /// After taking an item: if the queue is still within one item of full, it may have been
    /// full when something was sent to it, and that was dropped. Only this socket takes items,
    /// so after a refused send the queue stays full until its next take, which sees it.
    fn check(&mut self, took: bool) {
        if took {
            let capacity = self.rx.capacity().unwrap_or(usize::MAX);
            self.behind |= self.rx.len() + 1 >= capacity;
        }
    }

    /// True once this socket's queue was (or may have been) full, so something sent to it may
    /// have been dropped: the socket closes as too slow.
    pub fn fell_behind(&self) -> bool {
        self.behind
    }
}

struct Inner {
    visitors: HashMap<ConversationId, Handle>,
    operators: HashMap<OperatorId, Handle>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            // One entry per person's socket: full size from the start, see
            // [`crate::store::PRESIZED_SESSIONS`].
            visitors: HashMap::with_capacity(crate::store::PRESIZED_SESSIONS),
            operators: HashMap::new(),
        }
    }
}

#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    next_conn: AtomicU64,
}

/// Tells the handle a new registration replaced (if any) that it was superseded.
fn tell_superseded(old: Option<Handle>) {
    if let Some(old) = old {
        old.send(Outbound::Close(
            crate::protocol::close::SUPERSEDED,
            "superseded",
        ));
    }
}

/// Removes `key`'s handle from `map` if it is still connection `conn` (not a newer one).
fn remove_conn<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Handle>, key: &K, conn: u64) -> bool {
    if map.get(key).is_some_and(|h| h.conn == conn) {
        map.remove(key);
        return true;
    }
    false
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new socket's handle, the receiving end of its queue, and the token cancelled when the
    /// queue is full.
    pub fn handle(&self, capacity: usize) -> (Handle, Inbox, CancellationToken) {
        let too_slow = CancellationToken::new();
        let (handle, inbox) = self.handle_with(capacity, Some(too_slow.clone()));
        (handle, inbox, too_slow)
    }

    /// A visitor socket's handle: no token (~112 bytes of every waiting person, and a second
    /// future for its loop to wait on). The socket checks [`Inbox::fell_behind`] instead, and
    /// is told to close at shutdown through its queue ([`Registry::close_visitors`]).
    pub fn visitor_handle(&self, capacity: usize) -> (Handle, Inbox) {
        self.handle_with(capacity, None)
    }

    fn handle_with(&self, capacity: usize, too_slow: Option<CancellationToken>) -> (Handle, Inbox) {
        let (tx, rx) = flume::bounded(capacity);
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        (Handle { conn, tx, too_slow }, Inbox { rx, behind: false })
    }

    /// Registers a visitor socket; a previous socket for the same conversation is told it was
    /// superseded.
    pub fn add_visitor(&self, conv: ConversationId, handle: Handle) {
        let old = self.lock().visitors.insert(conv, handle);
        tell_superseded(old);
    }

    pub fn remove_visitor(&self, conv: ConversationId, conn: u64) -> bool {
        remove_conn(&mut self.lock().visitors, &conv, conn)
    }

    pub fn add_operator(&self, op: OperatorId, handle: Handle) {
        let old = self.lock().operators.insert(op, handle);
        tell_superseded(old);
    }

    pub fn remove_operator(&self, op: OperatorId, conn: u64) -> bool {
        remove_conn(&mut self.lock().operators, &op, conn)
    }

    pub fn to_visitor(&self, conv: ConversationId, msg: Outbound) {
        let handle = self.lock().visitors.get(&conv).cloned();
        if let Some(h) = handle {
            h.send(msg);
        }
    }

    /// Whether this process has a socket (or connector follower) for `conv`'s person.
    pub fn has_visitor(&self, conv: ConversationId) -> bool {
        self.lock().visitors.contains_key(&conv)
    }

    /// Whether this process has a console socket of `op`.
    pub fn has_operator(&self, op: OperatorId) -> bool {
        self.lock().operators.contains_key(&op)
    }

    pub fn to_operator(&self, op: OperatorId, msg: Outbound) {
        let handle = self.lock().operators.get(&op).cloned();
        if let Some(h) = handle {
            h.send(msg);
        }
    }

    /// Queues `msg` for every visitor socket whose connection number is `slice` modulo `slices`:
    /// the shared heartbeat reaches a slice of the sockets at a time, not all at once.
    pub fn to_visitor_slice(&self, slices: u64, slice: u64, msg: &Outbound) {
        let inner = self.lock();
        for h in inner.visitors.values().filter(|h| h.conn % slices == slice) {
            h.send(msg.clone());
        }
    }

    pub fn operator_ids(&self) -> Vec<OperatorId> {
        self.lock().operators.keys().copied().collect()
    }

    pub fn visitor_ids(&self) -> Vec<ConversationId> {
        self.lock().visitors.keys().copied().collect()
    }

    pub fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.visitors.len(), inner.operators.len())
    }

    /// Tells every visitor socket without a token (the websocket ones) to close with `code`:
    /// at shutdown, which the others hear about from the shutdown token itself.
    pub fn close_visitors(&self, code: u16, reason: &'static str) {
        let handles: Vec<Handle> = {
            let inner = self.lock();
            inner
                .visitors
                .values()
                .filter(|h| h.too_slow.is_none())
                .cloned()
                .collect()
        };
        for h in handles {
            h.send(Outbound::Close(code, reason));
        }
    }

    /// Tells every operator socket of this process to close with `code` (when this node is cut
    /// off from the store: see [`super::store_watch`]).
    pub fn close_operators(&self, code: u16, reason: &'static str) {
        let handles: Vec<Handle> = self.lock().operators.values().cloned().collect();
        for h in handles {
            h.send(Outbound::Close(code, reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ulid::Ulid;

    #[test]
    fn a_superseded_socket_is_told_and_its_cleanup_keeps_the_successor() {
        let reg = Registry::default();
        let conv = Ulid::new();
        let (h1, mut rx1) = reg.visitor_handle(8);
        let (h2, _rx2) = reg.visitor_handle(8);
        let c1 = h1.conn;
        reg.add_visitor(conv, h1);
        reg.add_visitor(conv, h2);
        assert!(matches!(rx1.try_recv(), Some(Outbound::Close(4009, _))));
        assert!(
            !reg.remove_visitor(conv, c1),
            "old socket must not remove the new one"
        );
        assert_eq!(reg.counts(), (1, 0));
    }

    #[test]
    fn a_full_queue_marks_the_socket_too_slow_instead_of_blocking() {
        let reg = Registry::default();
        let (h, _rx, slow) = reg.handle(1);
        h.send(Outbound::Wake(Ulid::new()));
        assert!(!slow.is_cancelled());
        h.send(Outbound::Wake(Ulid::new()));
        assert!(slow.is_cancelled());
    }

    #[tokio::test]
    async fn a_visitor_socket_learns_it_fell_behind_when_it_next_takes_from_a_full_queue() {
        let reg = Registry::default();
        let (h, mut rx) = reg.visitor_handle(4);
        for _ in 0..2 {
            h.send(Outbound::Heartbeat);
        }
        assert!(rx.recv().await.is_some());
        assert!(rx.try_recv().is_some());
        assert!(!rx.fell_behind(), "a queue never full is not behind");
        for _ in 0..5 {
            h.send(Outbound::Heartbeat); // the fifth is refused
        }
        assert!(rx.recv().await.is_some());
        assert!(
            rx.fell_behind(),
            "the take after a refused send sees the full queue"
        );
    }

    #[test]
    fn a_node_cut_off_from_the_store_closes_every_operator_socket() {
        let reg = Registry::default();
        let (a, mut a_rx, _) = reg.handle(8);
        let (b, mut b_rx, _) = reg.handle(8);
        reg.add_operator(Ulid::new(), a);
        reg.add_operator(Ulid::new(), b);
        reg.close_operators(1001, "store unreachable");
        assert!(matches!(a_rx.try_recv(), Some(Outbound::Close(1001, _))));
        assert!(matches!(b_rx.try_recv(), Some(Outbound::Close(1001, _))));
    }

    #[test]
    fn shutdown_closes_websocket_visitors_through_their_queues_and_leaves_the_others() {
        let reg = Registry::default();
        let (web, mut web_rx) = reg.visitor_handle(8);
        let (line, mut line_rx, _slow) = reg.handle(8);
        reg.add_visitor(Ulid::new(), web);
        reg.add_visitor(Ulid::new(), line);
        reg.close_visitors(1001, "server shutting down");
        assert!(matches!(web_rx.try_recv(), Some(Outbound::Close(1001, _))));
        assert!(line_rx.try_recv().is_none());
    }
}
