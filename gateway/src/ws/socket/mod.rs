//! The websocket transport of both endpoints (RFC 6455, the server's side): the HTTP upgrade
//! ([`Upgrade`]) and a [`Socket`] that reads and writes frames and keeps no buffer while idle.
//!
//! Why not tungstenite's `WebSocket` (what axum's websocket is): it keeps a read buffer
//! (zero-filled on every read, so resident) and a write buffer as large as the largest batch it
//! ever wrote for the socket's whole life, and split into halves it sits behind a shared lock:
//! about 1.1 KB of every idle waiting person, 18,000 of them in the idle scenario
//! (BENCHMARKS.md). Here a read goes into a buffer on the stack, and only what is left of an
//! incomplete frame is kept; frames to send are kept only until they are written. uWebSockets
//! (Bun's server) reads the same way. Frame headers are parsed and written by tungstenite's
//! [`FrameHeader`](tungstenite::protocol::frame::FrameHeader); what this module adds is the
//! buffering, the message rules (fragments, control frames, masking, limits, UTF-8) and the
//! close handshake.
//!
//! In parts: this file has the [`Socket`] and its types; `read` takes frames in and checks
//! them (masking, control frames, fragments, the message limit, UTF-8, Close); `write` queues
//! frames, answers pings (a newer pong replaces one not yet sent) and writes; `upgrade` is the
//! [`Upgrade`] extractor and the handshake.

mod read;
mod upgrade;
mod write;

use std::io;
use std::pin::Pin;
use std::sync::Arc;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::either::Either;

use crate::server::Slot;

pub use upgrade::{Upgrade, UpgradeRefused};

/// Why reading or writing failed. Each maps to the close code the socket ends with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer closed (a Close frame or the end of the stream), or the socket was closed.
    #[error("connection closed")]
    Closed,
    #[error("connection failed: {0}")]
    Io(#[from] io::Error),
    /// A frame broke the protocol (1002).
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// What was written to the peer was not taken within the drain deadline (4011).
    #[error("peer too slow to read")]
    TooSlow,
    /// A message larger than the limit was announced (1009).
    #[error("message too big")]
    TooBig,
    /// A text message or a close reason that is not UTF-8 (1007).
    #[error("text is not UTF-8")]
    NotUtf8,
}

/// A message received.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Text(String),
    /// Binary messages are not part of the protocol; their payload is dropped.
    Binary,
    /// Already answered with a pong (or will be: a later ping's pong may replace it).
    Ping,
    Pong,
    /// The peer's Close, with its code; it has been answered.
    Close(Option<u16>),
}

/// The connection under a socket: the TCP stream itself when the gateway serves plain HTTP
/// (taken out of hyper's upgrade, which would box it), else hyper's upgraded connection (TLS).
pub type Io = Either<TcpStream, TokioIo<Upgraded>>;

/// A message that arrived in fragments, assembled so far.
struct Partial {
    text: bool,
    payload: Vec<u8>,
}

/// One websocket connection, server side. Reading ([`Socket::recv`]) and writing
/// ([`Socket::queue_text`], [`Socket::flush`]) both take `&mut self`; a connection loop selects
/// over `recv` and its other sources, which is safe because `recv` keeps all its progress in
/// the socket: a `recv` dropped before it finished loses nothing.
pub struct Socket<S = Io> {
    io: S,
    /// Received bytes not yet handed out as frames. Empty, with no allocation, between
    /// messages.
    received: Vec<u8>,
    /// A fragmented message being assembled; boxed since almost no client fragments.
    partial: Option<Box<Partial>>,
    /// Frames queued and not yet written, from `written` on. Freed once written.
    unsent: Vec<u8>,
    written: usize,
    /// Where in `unsent` the answer to the latest ping starts, while it is the last frame
    /// queued and none of it has been written: a newer ping's pong replaces it, so a peer
    /// that pings and does not read holds at most one pong here (RFC 6455 5.5.3 allows
    /// answering only the most recent ping).
    pong_at: Option<u32>,
    /// Set while [`Socket::recv`] waits for `unsent` to drain (the peer is not reading): when
    /// it fires, `recv` gives up with [`Error::TooSlow`]. Allocated only while behind.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The connection's place in the server's connection caps, held for the socket's life.
    _slot: Option<Arc<Slot>>,
    max_message: usize,
    close_received: bool,
    close_sent: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Socket<S> {
    /// A socket over `io` (already upgraded), refusing messages over `max_message` bytes.
    pub fn new(io: S, max_message: usize) -> Self {
        Self::with_received(io, Vec::new(), max_message)
    }

    /// As [`Socket::new`], with bytes that arrived before the upgrade completed.
    pub fn with_received(io: S, received: Vec<u8>, max_message: usize) -> Self {
        Socket {
            io,
            received,
            partial: None,
            unsent: Vec::new(),
            written: 0,
            pong_at: None,
            stalled: None,
            _slot: None,
            max_message,
            close_received: false,
            close_sent: false,
        }
    }

    /// Bytes held for this socket right now: what was received and not yet handed out, and
    /// what was queued and not yet written (their capacity, as allocated).
    #[cfg(test)]
    pub fn buffered_capacity(&self) -> usize {
        self.received.capacity()
            + self.unsent.capacity()
            + self.partial.as_ref().map_or(0, |p| p.payload.capacity())
    }
}

#[cfg(test)]
mod testing {
    //! What the parts' tests share: client frames and a socket over an in-memory pipe.

    use tokio::io::{duplex, DuplexStream};

    use super::Socket;

    pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// The drain deadline of tests that do not test it.
    pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

    /// A client frame: FIN as given, masked with [`MASK`].
    pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i & 3]));
        out
    }

    pub fn pair() -> (Socket<DuplexStream>, DuplexStream) {
        let (server, client) = duplex(64 * 1024);
        (Socket::new(server, 1024), client)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::testing::{frame, pair, DRAIN};
    use super::*;

    #[tokio::test]
    async fn an_idle_socket_holds_no_buffer_after_reading_and_writing() {
        let (mut socket, mut client) = pair();
        client.write_all(&frame(true, 1, b"hello")).await.unwrap();
        assert_eq!(
            socket.recv(DRAIN).await.unwrap(),
            Message::Text("hello".into())
        );
        socket.queue_text(&"welcome ".repeat(60));
        socket.queue_text("position 3");
        socket.flush().await.unwrap();
        assert_eq!(socket.buffered_capacity(), 0);
        let mut got = vec![0u8; 4 + 480 + 2 + 10];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got[..4], [0x81, 126, 0x01, 0xe0]);
        assert_eq!(&got[got.len() - 12..], b"\x81\x0aposition 3");
    }
}
