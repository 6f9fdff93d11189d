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
//! [`FrameHeader`]; what this module adds is the buffering, the message rules (fragments,
//! control frames, masking, limits, UTF-8) and the close handshake.

use std::future::{poll_fn, Future};
use std::io::{self, Cursor};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::either::Either;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use crate::protocol::MAX_FRAME_BYTES;
use crate::server::Slot;

/// How much one read takes from the connection, into a buffer on the stack. Client frames are
/// 100-250 bytes; a larger one takes several reads.
const READ_CHUNK: usize = 4096;

/// Queued outbound bytes past which [`Socket::needs_flush`] asks for a write before more are
/// queued: a batch (a long catch-up, say) is written in pieces of about this size.
const WRITE_CHUNK: usize = 16 * 1024;

/// Bytes reserved for an empty send buffer when a frame is serialised into it: a chat event.
const TYPICAL_FRAME: usize = 384;

/// The largest control frame payload (RFC 6455 5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Header bytes left before a payload serialised in place: enough for one under 64 KiB.
const HEADER_ROOM: usize = 4;

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

/// The connection of an upgraded request, and the bytes hyper read past its end.
fn io_of(upgraded: Upgraded) -> (Io, Vec<u8>) {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => (Either::Left(parts.io.into_inner()), parts.read_buf.to_vec()),
        Err(upgraded) => (Either::Right(TokioIo::new(upgraded)), Vec::new()),
    }
}

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

    /// The next message. Pings are answered (the pong is queued and written when it can be),
    /// and so is a Close. Cancel-safe.
    ///
    /// Reads nothing while something queued is still unwritten because the peer does not
    /// read: what it sends then waits in the kernel's buffers, and TCP holds the peer back,
    /// instead of answers piling up here. If the peer has not taken it all within `drain`,
    /// this fails with [`Error::TooSlow`].
    pub async fn recv(&mut self, drain: std::time::Duration) -> Result<Message, Error> {
        poll_fn(|cx| self.poll_recv(cx, drain)).await
    }

    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        drain: std::time::Duration,
    ) -> Poll<Result<Message, Error>> {
        if self.close_received {
            return Poll::Ready(Err(Error::Closed));
        }
        // A pong or a close answer that could not be written at once goes out as soon as it
        // can: its waker is this task's.
        if self.written < self.unsent.len() {
            if let Poll::Ready(Err(e)) = self.poll_write_unsent(cx) {
                return Poll::Ready(Err(e.into()));
            }
        }
        loop {
            // Frames already received are handed out even while behind (a ping among them
            // replaces the pong not yet sent); only reading more waits.
            if let Some(message) = self.next_message(cx)? {
                return Poll::Ready(Ok(message));
            }
            if self.written < self.unsent.len() {
                // Behind: the write's waker is registered; so is the deadline's.
                let stalled = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(drain)));
                ready!(stalled.as_mut().poll(cx));
                return Poll::Ready(Err(Error::TooSlow));
            }
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut chunk);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
            if buf.filled().is_empty() {
                self.close_received = true;
                return Poll::Ready(Err(Error::Closed));
            }
            self.received.extend_from_slice(buf.filled());
        }
    }

    /// The next whole message in `received`, if there is one.
    fn next_message(&mut self, cx: &mut Context<'_>) -> Result<Option<Message>, Error> {
        while let Some((header, payload)) = self.next_frame()? {
            match header.opcode {
                OpCode::Control(control) => return self.control(control, &payload, cx).map(Some),
                OpCode::Data(Data::Continue) => {
                    let Some(partial) = self.partial.as_mut() else {
                        return Err(Error::Protocol(
                            "a continuation frame with nothing to continue",
                        ));
                    };
                    partial.payload.extend_from_slice(&payload);
                    if header.is_final {
                        let Partial { text, payload } = *self.partial.take().expect("partial");
                        return Self::message(text, payload).map(Some);
                    }
                }
                OpCode::Data(data @ (Data::Text | Data::Binary)) => {
                    if self.partial.is_some() {
                        return Err(Error::Protocol("a new message inside a fragmented one"));
                    }
                    let text = data == Data::Text;
                    if header.is_final {
                        return Self::message(text, payload).map(Some);
                    }
                    self.partial = Some(Box::new(Partial { text, payload }));
                }
                OpCode::Data(Data::Reserved(_)) => return Err(Error::Protocol("reserved opcode")),
            }
        }
        Ok(None)
    }

    fn message(text: bool, payload: Vec<u8>) -> Result<Message, Error> {
        if !text {
            return Ok(Message::Binary);
        }
        String::from_utf8(payload)
            .map(Message::Text)
            .map_err(|_| Error::NotUtf8)
    }

    /// Handles a control frame: a ping is answered, a close echoed.
    fn control(
        &mut self,
        control: Control,
        payload: &[u8],
        cx: &mut Context<'_>,
    ) -> Result<Message, Error> {
        match control {
            Control::Ping => {
                if !self.close_sent {
                    if let Some(at) = self.pong_at.take() {
                        // The previous pong has not started going out: this one replaces it.
                        self.unsent.truncate(at as usize);
                    }
                    let at = u32::try_from(self.unsent.len()).ok();
                    self.queue(OpCode::Control(Control::Pong), payload);
                    self.pong_at = at;
                    let _ = self.poll_write_unsent(cx);
                }
                Ok(Message::Ping)
            }
            Control::Pong => Ok(Message::Pong),
            Control::Close => {
                self.close_received = true;
                let code = match payload {
                    [] => None,
                    [_] => return Err(Error::Protocol("a close frame with a one-byte body")),
                    [a, b, reason @ ..] => {
                        if std::str::from_utf8(reason).is_err() {
                            return Err(Error::NotUtf8);
                        }
                        let code = u16::from_be_bytes([*a, *b]);
                        if !valid_close_code(code) {
                            return Err(Error::Protocol("an invalid close code"));
                        }
                        Some(code)
                    }
                };
                if !self.close_sent {
                    // Echo the code (RFC 6455 5.5.1); the connection ends after it.
                    let body = code.map(u16::to_be_bytes);
                    self.queue(
                        OpCode::Control(Control::Close),
                        body.as_ref().map_or(&[][..], |b| &b[..]),
                    );
                    self.close_sent = true;
                    let _ = self.poll_write_unsent(cx);
                }
                Ok(Message::Close(code))
            }
            Control::Reserved(_) => Err(Error::Protocol("reserved opcode")),
        }
    }

    /// Takes the next whole frame out of `received`, unmasked. Checks what a header alone can
    /// tell (size, mask, reserved bits) before the payload is waited for.
    fn next_frame(&mut self) -> Result<Option<(FrameHeader, Vec<u8>)>, Error> {
        if self.received.is_empty() {
            return Ok(None);
        }
        let mut cursor = Cursor::new(&self.received[..]);
        let Some((header, len)) =
            FrameHeader::parse(&mut cursor).map_err(|_| Error::Protocol("a malformed frame"))?
        else {
            return Ok(None);
        };
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(Error::Protocol("reserved bits set"));
        }
        let Some(mask) = header.mask else {
            return Err(Error::Protocol("an unmasked client frame"));
        };
        if let OpCode::Control(_) = header.opcode {
            // Refused from the header, before a large body is waited for. A control frame may
            // arrive between a message's fragments and is no part of it: it does not count
            // toward the message's limit.
            if !header.is_final || len > MAX_CONTROL_PAYLOAD {
                return Err(Error::Protocol(
                    "a control frame over 125 bytes or fragmented",
                ));
            }
        } else {
            // Only data frames count toward the message limit: what is assembled so far and
            // this frame.
            let assembled = self.partial.as_ref().map_or(0, |p| p.payload.len());
            if len > self.max_message.saturating_sub(assembled) as u64 {
                return Err(Error::TooBig);
            }
        }
        let start = cursor.position() as usize;
        let end = start + len as usize;
        if self.received.len() < end {
            return Ok(None);
        }
        let mut payload = if end == self.received.len() {
            // The usual case, one frame per read: the buffer becomes the payload.
            let mut all = std::mem::take(&mut self.received);
            all.drain(..start);
            all
        } else {
            let payload = self.received[start..end].to_vec();
            self.received.drain(..end);
            payload
        };
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i & 3];
        }
        Ok(Some((header, payload)))
    }

    /// Queues a text frame, written by the next [`Socket::flush`]. Nothing is queued after a
    /// Close.
    pub fn queue_text(&mut self, text: &str) {
        if !self.close_sent {
            self.queue(OpCode::Data(Data::Text), text.as_bytes());
        }
    }

    /// Queues a text frame whose payload `write` appends straight to the send buffer, so a
    /// frame is serialised once, in place, rather than into a `String` that is then copied.
    /// `write` must append UTF-8 (serde_json does); if it fails, nothing is queued.
    pub fn queue_text_with<E>(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.close_sent {
            return Ok(());
        }
        self.pong_at = None;
        if self.unsent.is_empty() {
            self.unsent.reserve(TYPICAL_FRAME);
        }
        // Room for the header of a payload under 64 KiB; moved or widened once the length is known.
        let start = self.unsent.len();
        self.unsent.resize(start + HEADER_ROOM, 0);
        if let Err(e) = write(&mut self.unsent) {
            self.unsent.truncate(start);
            return Err(e);
        }
        let len = self.unsent.len() - start - HEADER_ROOM;
        let header = FrameHeader {
            opcode: OpCode::Data(Data::Text),
            ..FrameHeader::default()
        };
        let mut head = [0u8; 14];
        let mut rest = &mut head[..];
        header
            .format(len as u64, &mut rest)
            .expect("a frame header fits in 14 bytes");
        let head_len = 14 - rest.len();
        let head = &head[..head_len];
        if head_len <= HEADER_ROOM {
            let payload = start + HEADER_ROOM;
            self.unsent.copy_within(payload.., start + head_len);
            self.unsent.truncate(start + head_len + len);
            self.unsent[start..start + head_len].copy_from_slice(head);
        } else {
            self.unsent
                .splice(start..start + HEADER_ROOM, head.iter().copied());
        }
        Ok(())
    }

    /// Queues a ping.
    pub fn queue_ping(&mut self) {
        if !self.close_sent {
            self.queue(OpCode::Control(Control::Ping), &[]);
        }
    }

    /// Queues a Close frame with `code` and `reason` (cut to fit a control frame); nothing
    /// more is sent after it.
    pub fn queue_close(&mut self, code: u16, reason: &str) {
        if self.close_sent {
            return;
        }
        let mut body = code.to_be_bytes().to_vec();
        let mut cut = reason.len().min(123);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        body.extend_from_slice(&reason.as_bytes()[..cut]);
        self.queue(OpCode::Control(Control::Close), &body);
        self.close_sent = true;
    }

    fn queue(&mut self, opcode: OpCode, payload: &[u8]) {
        // Whatever follows a pending pong pins it in place.
        self.pong_at = None;
        let header = FrameHeader {
            opcode,
            ..FrameHeader::default()
        };
        let len = payload.len() as u64;
        if self.unsent.is_empty() {
            self.unsent.reserve_exact(header.len(len) + payload.len());
        }
        header
            .format(len, &mut self.unsent)
            .expect("writing to a Vec cannot fail");
        self.unsent.extend_from_slice(payload);
    }

    /// True when enough is queued that it should be written before more is queued.
    pub fn needs_flush(&self) -> bool {
        self.unsent.len() - self.written >= WRITE_CHUNK
    }

    /// Writes everything queued. Cancel-safe: what was written stays written.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| {
            ready!(self.poll_write_unsent(cx))?;
            Poll::Ready(ready!(Pin::new(&mut self.io).poll_flush(cx)).map_err(Error::from))
        })
        .await
    }

    fn poll_write_unsent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.unsent.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.unsent[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
            // A pong partly written can no longer be replaced.
            if self.pong_at.is_some_and(|at| (at as usize) < self.written) {
                self.pong_at = None;
            }
        }
        // Written: give the buffer back rather than keep it for the socket's life.
        self.unsent = Vec::new();
        self.written = 0;
        self.pong_at = None;
        self.stalled = None;
        Poll::Ready(Ok(()))
    }

    /// Bytes queued and not yet written.
    pub fn unwritten(&self) -> usize {
        self.unsent.len() - self.written
    }

    /// Ends the connection's sending side (after a Close was flushed).
    pub async fn shutdown(&mut self) {
        let _ = poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)).await;
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

/// Close codes a peer may send (RFC 6455 7.4): 1000-1003, 1007-1011, and 3000-4999.
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// The websocket handshake of a request (`GET` with `Upgrade: websocket`), checked by the
/// extractor: [`Upgrade::on_upgrade`] answers it with 101 and hands the socket to a callback.
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
    /// The connection's place in the connection caps, which the socket keeps.
    slot: Option<Arc<Slot>>,
}

/// Why a request could not be upgraded; answered with 400 (426 for a missing or wrong version).
#[derive(Debug)]
pub struct UpgradeRefused(StatusCode, &'static str);

impl IntoResponse for UpgradeRefused {
    fn into_response(self) -> Response {
        let mut response = (self.0, self.1).into_response();
        if self.0 == StatusCode::UPGRADE_REQUIRED {
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        response
    }
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

impl<St: Send + Sync> FromRequestParts<St> for Upgrade {
    type Rejection = UpgradeRefused;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Self::Rejection> {
        let refuse = |why| Err(UpgradeRefused(StatusCode::BAD_REQUEST, why));
        if parts.method != Method::GET {
            return refuse("websocket requests use GET");
        }
        if !header_has_token(&parts.headers, header::CONNECTION, "upgrade")
            || !header_has_token(&parts.headers, header::UPGRADE, "websocket")
        {
            return refuse("not a websocket upgrade");
        }
        if parts
            .headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != b"13")
        {
            return Err(UpgradeRefused(
                StatusCode::UPGRADE_REQUIRED,
                "websocket version 13 required",
            ));
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return refuse("no Sec-WebSocket-Key");
        };
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return refuse("this connection cannot be upgraded");
        };
        let slot = parts.extensions.remove::<Arc<Slot>>();
        Ok(Upgrade {
            key,
            on_upgrade,
            slot,
        })
    }
}

impl Upgrade {
    /// Answers 101 and, once hyper has switched the connection over, runs `callback` with the
    /// socket (boxed: see `visitor::run`). Messages over [`MAX_FRAME_BYTES`] are refused.
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(Box<Socket>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        let slot = self.slot;
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                tracing::debug!("websocket upgrade failed");
                return;
            };
            let (io, received) = io_of(upgraded);
            let mut socket = Socket::with_received(io, received, MAX_FRAME_BYTES);
            socket._slot = slot;
            callback(Box::new(socket)).await;
        });
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::SEC_WEBSOCKET_ACCEPT,
            accept_key(self.key.as_bytes()),
        );
        response
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 4.2.2).
fn accept_key(key: &[u8]) -> HeaderValue {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    let encoded = base64::engine::general_purpose::STANDARD.encode(sha1.finalize());
    HeaderValue::from_str(&encoded).expect("base64 is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// The drain deadline of tests that do not test it.
    const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

    /// A client frame: FIN as given, masked with [`MASK`].
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
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

    fn pair() -> (Socket<DuplexStream>, DuplexStream) {
        let (server, client) = duplex(64 * 1024);
        (Socket::new(server, 1024), client)
    }

    #[test]
    fn a_frame_serialised_in_place_is_byte_for_byte_the_frame_queued_from_a_string() {
        // Around each header size: 7-bit lengths, 16-bit from 126, 64-bit from 65,536.
        for len in [0, 1, 125, 126, 127, 300, 65_535, 65_536, 70_000] {
            let text = "あ".repeat(len / 3) + &"x".repeat(len % 3);
            let (mut copied, _c1) = pair();
            let (mut in_place, _c2) = pair();
            for socket in [&mut copied, &mut in_place] {
                socket.queue_text("before");
            }
            copied.queue_text(&text);
            in_place
                .queue_text_with(|buf| {
                    buf.extend_from_slice(text.as_bytes());
                    Ok::<_, ()>(())
                })
                .unwrap();
            for socket in [&mut copied, &mut in_place] {
                socket.queue_text("after");
            }
            assert_eq!(copied.unsent, in_place.unsent, "payload of {len} bytes");
        }
    }

    #[test]
    fn a_frame_whose_serialiser_fails_leaves_nothing_queued() {
        let (mut socket, _client) = pair();
        socket.queue_text("kept");
        let before = socket.unsent.clone();
        let failed = socket.queue_text_with(|buf| {
            buf.extend_from_slice(b"half a fra");
            Err("no")
        });
        assert_eq!(failed, Err("no"));
        assert_eq!(socket.unsent, before);
    }

    #[test]
    fn the_accept_key_is_the_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[tokio::test]
    async fn several_frames_in_one_read_and_one_frame_over_several_reads_all_arrive() {
        let (mut socket, mut client) = pair();
        let mut bytes = frame(true, 1, b"first");
        bytes.extend(frame(true, 1, "二番目".as_bytes()));
        client.write_all(&bytes).await.unwrap();
        assert_eq!(
            socket.recv(DRAIN).await.unwrap(),
            Message::Text("first".into())
        );
        assert_eq!(
            socket.recv(DRAIN).await.unwrap(),
            Message::Text("二番目".into())
        );
        let third = frame(true, 1, &[b'x'; 300]);
        for piece in third.chunks(7) {
            client.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        assert_eq!(
            socket.recv(DRAIN).await.unwrap(),
            Message::Text("x".repeat(300))
        );
    }

    #[tokio::test]
    async fn a_fragmented_message_arrives_whole_with_a_ping_between_its_fragments_answered() {
        let (mut socket, mut client) = pair();
        let mut bytes = frame(false, 1, b"hel");
        bytes.extend(frame(true, 9, b"are you there"));
        bytes.extend(frame(false, 0, b"lo "));
        bytes.extend(frame(true, 0, b"there"));
        client.write_all(&bytes).await.unwrap();
        assert_eq!(socket.recv(DRAIN).await.unwrap(), Message::Ping);
        assert_eq!(
            socket.recv(DRAIN).await.unwrap(),
            Message::Text("hello there".into())
        );
        let mut pong = [0u8; 15];
        client.read_exact(&mut pong).await.unwrap();
        assert_eq!(pong[..2], [0x8a, 13]);
        assert_eq!(&pong[2..], b"are you there");
    }

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

    #[tokio::test]
    async fn protocol_violations_are_refused_with_their_reason() {
        let cases: [(Vec<u8>, &str); 6] = [
            (vec![0x81, 0x02, b'h', b'i'], "an unmasked client frame"),
            (frame(true, 0x41, b"x"), "reserved bits set"),
            (frame(true, 3, b"x"), "a malformed frame"),
            (
                frame(false, 9, b"x"),
                "a control frame over 125 bytes or fragmented",
            ),
            (
                frame(true, 0, b"x"),
                "a continuation frame with nothing to continue",
            ),
            (
                [frame(false, 1, b"a"), frame(true, 1, b"b")].concat(),
                "a new message inside a fragmented one",
            ),
        ];
        for (bytes, why) in cases {
            let (mut socket, mut client) = pair();
            client.write_all(&bytes).await.unwrap();
            match socket.recv(DRAIN).await {
                Err(Error::Protocol(reason)) => assert_eq!(reason, why),
                other => panic!("{why}: got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_refused_from_its_header_before_it_is_buffered() {
        let (mut socket, mut client) = pair();
        let big = frame(true, 1, &[b'x'; 2000]);
        client.write_all(&big[..8]).await.unwrap();
        assert!(matches!(socket.recv(DRAIN).await, Err(Error::TooBig)));
        // Fragments count together.
        let (mut socket, mut client) = pair();
        let bytes = [frame(false, 1, &[b'x'; 600]), frame(true, 0, &[b'x'; 600])].concat();
        client.write_all(&bytes).await.unwrap();
        assert!(matches!(socket.recv(DRAIN).await, Err(Error::TooBig)));
    }

    #[tokio::test]
    async fn a_control_frame_between_fragments_does_not_count_toward_the_message_limit() {
        // The limit is 1,024: 1,000 + 24 bytes of data, with a 100-byte ping between them.
        let (mut socket, mut client) = pair();
        let bytes = [
            frame(false, 1, &[b'x'; 1000]),
            frame(true, 9, &[b'p'; 100]),
            frame(true, 0, &[b'y'; 24]),
        ]
        .concat();
        client.write_all(&bytes).await.unwrap();
        assert_eq!(socket.recv(DRAIN).await.unwrap(), Message::Ping);
        let whole = "x".repeat(1000) + &"y".repeat(24);
        assert_eq!(socket.recv(DRAIN).await.unwrap(), Message::Text(whole));
        // Data still counts: one byte more is too big.
        let (mut socket, mut client) = pair();
        let bytes = [frame(false, 1, &[b'x'; 1000]), frame(true, 0, &[b'y'; 25])].concat();
        client.write_all(&bytes).await.unwrap();
        assert!(matches!(socket.recv(DRAIN).await, Err(Error::TooBig)));
    }

    #[tokio::test]
    async fn a_control_frame_announcing_more_than_125_bytes_is_refused_before_its_body() {
        let (mut socket, mut client) = pair();
        let ping = frame(true, 9, &[b'p'; 126]);
        client.write_all(&ping[..8]).await.unwrap();
        let got = tokio::time::timeout(DRAIN, socket.recv(DRAIN))
            .await
            .expect("refused from the header, not waited for");
        assert!(matches!(got, Err(Error::Protocol(_))), "{got:?}");
    }

    #[tokio::test]
    async fn a_peer_that_pings_and_never_reads_has_one_pong_queued_at_most_and_is_dropped_after_the_drain_deadline(
    ) {
        // 512 bytes each way: the server's pongs fill its direction after four.
        let (server, client) = duplex(512);
        let mut socket = Socket::new(server, 1024);
        let (_unread, mut client) = tokio::io::split(client);
        let pinger = tokio::spawn(async move {
            let ping = frame(true, 9, &[b'p'; 125]);
            let mut sent = 0u32;
            while sent < 100_000 && client.write_all(&ping).await.is_ok() {
                sent += 1;
            }
        });
        let drain = std::time::Duration::from_millis(200);
        let (mut answered, mut most_unwritten, mut most_held) = (0, 0, 0);
        let end = loop {
            let got = tokio::time::timeout(std::time::Duration::from_secs(10), socket.recv(drain))
                .await
                .expect("recv returns within the drain deadline");
            most_unwritten = most_unwritten.max(socket.unwritten());
            most_held = most_held.max(socket.buffered_capacity());
            match got {
                Ok(Message::Ping) if answered < 10_000 => answered += 1,
                other => break other,
            }
        };
        pinger.abort();
        assert!(matches!(end, Err(Error::TooSlow)), "ended with {end:?}");
        // At most the rest of a pong partly written and the latest pong (127 bytes each)
        // wait; what was read and not yet handled is one read.
        assert!(most_unwritten <= 2 * 127, "{most_unwritten} bytes queued");
        assert!(
            most_held <= 2 * 127 + 2 * READ_CHUNK,
            "{most_held} bytes held"
        );
        // Reading stopped once the pongs backed up: four fit the peer's buffer, and one read
        // (a few pings) was being handled.
        assert!(
            answered < 4 + READ_CHUNK / 131 + 2,
            "{answered} pings answered"
        );
    }

    #[tokio::test]
    async fn pings_handled_while_the_peer_is_not_reading_are_answered_by_the_latest_pong_only() {
        // Three pings arrived before the socket started (as after the upgrade); the peer's
        // buffer takes 8 bytes, so the first pong goes out in part and the rest must wait.
        let (server, mut client) = duplex(8);
        let pings = [b'1', b'2', b'3']
            .map(|n| frame(true, 9, &[n; 20]))
            .concat();
        let mut socket = Socket::with_received(server, pings, 1024);
        for _ in 0..3 {
            assert_eq!(socket.recv(DRAIN).await.unwrap(), Message::Ping);
        }
        assert_eq!(
            socket.unwritten(),
            22 - 8 + 22,
            "the rest of pong 1, then pong 3"
        );
        let mut got = vec![0u8; 44];
        let (flushed, read) = tokio::join!(socket.flush(), client.read_exact(&mut got));
        flushed.unwrap();
        read.unwrap();
        let mut expected = vec![0x8a, 20];
        expected.extend([b'1'; 20]);
        expected.extend([0x8a, 20]);
        expected.extend([b'3'; 20]);
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn text_that_is_not_utf8_is_refused() {
        let (mut socket, mut client) = pair();
        client
            .write_all(&frame(true, 1, &[0xe3, 0x81]))
            .await
            .unwrap();
        assert!(matches!(socket.recv(DRAIN).await, Err(Error::NotUtf8)));
    }

    #[tokio::test]
    async fn a_close_from_the_peer_is_echoed_and_ends_reading() {
        let (mut socket, mut client) = pair();
        client
            .write_all(&frame(true, 8, &[0x03, 0xe8, b'b', b'y', b'e']))
            .await
            .unwrap();
        assert_eq!(
            socket.recv(DRAIN).await.unwrap(),
            Message::Close(Some(1000))
        );
        assert!(matches!(socket.recv(DRAIN).await, Err(Error::Closed)));
        let mut echo = [0u8; 4];
        client.read_exact(&mut echo).await.unwrap();
        assert_eq!(echo, [0x88, 0x02, 0x03, 0xe8]);
        // Nothing is sent after a Close.
        socket.queue_text("late");
        assert_eq!(socket.buffered_capacity(), 0);
    }

    #[tokio::test]
    async fn a_close_with_an_invalid_code_is_a_protocol_violation() {
        let (mut socket, mut client) = pair();
        client
            .write_all(&frame(true, 8, &1005u16.to_be_bytes()))
            .await
            .unwrap();
        assert!(matches!(socket.recv(DRAIN).await, Err(Error::Protocol(_))));
    }

    #[tokio::test]
    async fn the_end_of_the_stream_is_closed() {
        let (mut socket, client) = pair();
        drop(client);
        assert!(matches!(socket.recv(DRAIN).await, Err(Error::Closed)));
    }

    #[tokio::test]
    async fn a_recv_dropped_halfway_through_a_frame_loses_nothing() {
        let (mut socket, mut client) = pair();
        let bytes = frame(true, 1, b"patience");
        client.write_all(&bytes[..5]).await.unwrap();
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), socket.recv(DRAIN)).await;
        assert!(waited.is_err(), "half a frame is not a message");
        client.write_all(&bytes[5..]).await.unwrap();
        assert_eq!(
            socket.recv(DRAIN).await.unwrap(),
            Message::Text("patience".into())
        );
    }

    #[tokio::test]
    async fn a_close_sent_carries_its_code_and_reason_and_ends_sending() {
        let (mut socket, mut client) = pair();
        socket.queue_close(4011, "too slow");
        socket.queue_text("after");
        socket.flush().await.unwrap();
        socket.shutdown().await;
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got[..4], [0x88, 10, 0x0f, 0xab]);
        assert_eq!(&got[4..], b"too slow");
    }
}
