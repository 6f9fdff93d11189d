//! Websocket endpoints for visitors ([`visitor`]) and operators ([`operator`]), and what they
//! share: the outbound half of a socket with error counting ([`Conn`]), reading typed frames,
//! and the heartbeat rules.
//!
//! A connection's life reads as one story in each endpoint's `run`: hello, register, replay what
//! was missed, then one `select!` over inbound frames, the outbound queue, the heartbeat tick and
//! shutdown, then clean-up. (The visitor's `run` is split into `open` and `serve` so that a
//! waiting person's task holds only the loop; see `visitor::run`.)

pub mod operator;
pub mod visitor;

use std::future::Future;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use ulid::Ulid;

use crate::engine::registry::{Inbox, Outbound};
use crate::metrics::Metrics;
use crate::protocol::{close, parse_frame, ClientFrame, ErrorCode, ServerMsg, MAX_FRAME_BYTES};

/// After this many refused frames on one socket, it is closed with 1008.
pub const MAX_ERRORS: u32 = 50;

/// Initial capacity of a socket's read buffer. tungstenite's default is 128 KiB, allocated up
/// front for every socket (and zero-filled on every read): most of what an idle waiting person
/// cost (~146 KB of RSS per idle visitor before, see BENCHMARKS.md); 4 KiB was still ~30% of
/// it, 512 B still 0.3 KB of 4 KB. Client frames are 100-250 bytes (`hello`, `ping`, `ack`, `send`
/// with a chat line); a larger one (up to `MAX_FRAME_BYTES`) grows the buffer to its size,
/// announced in its header. 512 → 256 cost no CPU per message in an A/B (BENCHMARKS.md).
pub const READ_BUFFER_BYTES: usize = 256;

/// Bytes of outgoing frames buffered before tungstenite writes to the socket (default 128 KiB).
/// Frames are written at once anyway ([`Conn::send`] flushes; a batch flushes at its end): this
/// only bounds how much one batch holds before it goes out.
pub const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// The websocket settings every endpoint uses: frame and message limits, buffer sizes.
pub fn configure(ws: WebSocketUpgrade) -> WebSocketUpgrade {
    ws.max_frame_size(MAX_FRAME_BYTES)
        .max_message_size(MAX_FRAME_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
}

/// What the connection loop does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Close(u16, &'static str),
}

/// One inbound event, already classified.
pub enum Inbound<T> {
    Frame(T),
    /// A frame that could not be parsed; answer with an error and go on.
    Bad(Option<Ulid>, ErrorCode),
    /// Ping/pong or other control traffic: only proves the peer is alive.
    Alive,
    /// The peer closed, or the transport failed.
    Gone,
    /// The frame was larger than the limit.
    TooBig,
}

/// Reads the next inbound event.
pub async fn next_inbound<T: ClientFrame>(stream: &mut SplitStream<WebSocket>) -> Inbound<T> {
    match stream.next().await {
        None => Inbound::Gone,
        Some(Err(e)) => {
            // tungstenite refuses an oversized frame from its header, before buffering it.
            let text = e.to_string();
            if text.contains("too long") || text.contains("too big") || text.contains("Space limit")
            {
                Inbound::TooBig
            } else {
                Inbound::Gone
            }
        }
        Some(Ok(Message::Text(text))) => match parse_frame::<T>(text.as_str()) {
            Ok(frame) => Inbound::Frame(frame),
            Err(e) => Inbound::Bad(e.id, e.code),
        },
        Some(Ok(Message::Binary(_))) => Inbound::Bad(None, ErrorCode::BadFrame),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Inbound::Alive,
        Some(Ok(Message::Close(_))) => Inbound::Gone,
    }
}

/// The sending half of a socket, with the bookkeeping every endpoint needs.
pub struct Conn {
    sink: SplitSink<WebSocket, Message>,
    /// Inside [`deliver`]: frames are buffered, and written together at its end.
    batching: bool,
    errors: u32,
    /// When the peer last sent anything; the heartbeat deadline counts from here.
    pub last_seen: Instant,
    pub heartbeat: Duration,
    kind: &'static str,
}

impl Conn {
    pub fn new(
        socket: WebSocket,
        heartbeat: Duration,
        kind: &'static str,
    ) -> (Conn, SplitStream<WebSocket>) {
        let (sink, stream) = socket.split();
        (
            Conn {
                sink,
                batching: false,
                errors: 0,
                last_seen: Instant::now(),
                heartbeat,
                kind,
            },
            stream,
        )
    }

    /// Buffers frames from now on until [`finish_batch`] (or [`deliver`]) writes them.
    pub fn begin_batch(&mut self) {
        self.batching = true;
    }

    pub async fn send(&mut self, msg: &ServerMsg) -> Flow {
        let Ok(json) = serde_json::to_string(msg) else {
            return Flow::Continue;
        };
        self.send_json(&json).await
    }

    /// Sends a frame that is already JSON.
    pub async fn send_json(&mut self, json: &str) -> Flow {
        let frame = Message::Text(Utf8Bytes::from(json));
        let sent = if self.batching {
            self.sink.feed(frame).await
        } else {
            self.sink.send(frame).await
        };
        match sent {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close(close::GOING_AWAY, "send failed"),
        }
    }

    /// Sends an error event; too many of them close the socket.
    pub async fn error(&mut self, metrics: &Metrics, id: Option<Ulid>, code: ErrorCode) -> Flow {
        metrics.error(code.as_str());
        tracing::debug!(
            kind = self.kind,
            code = code.as_str(),
            "refused a client frame"
        );
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            return Flow::Close(close::POLICY, "too many errors");
        }
        self.send(&ServerMsg::error(id, code)).await
    }

    /// The heartbeat tick: close a silent peer, else ping it.
    pub async fn heartbeat_tick(&mut self) -> Flow {
        if self.last_seen.elapsed() > self.heartbeat * 3 {
            return Flow::Close(close::HEARTBEAT_TIMEOUT, "heartbeat timeout");
        }
        match self.sink.send(Message::Ping(Default::default())).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close(close::GOING_AWAY, "send failed"),
        }
    }

    /// Sends a Close frame with `code` and ends the socket.
    pub async fn close(mut self, code: u16, reason: &'static str) {
        tracing::debug!(kind = self.kind, code, reason, "closing socket");
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.sink.send(Message::Close(Some(frame))),
        )
        .await;
        let _ = self.sink.close().await;
    }
}

/// The most queued outbound items one batch (one write) carries.
pub const BATCH: usize = 64;

/// A connection story's handling of what the engine queued for its socket.
pub trait Outbox {
    fn outbound(&mut self, conn: &mut Conn, out: Outbound) -> impl Future<Output = Flow> + Send;
}

/// Handles `first` and whatever else is already queued (up to [`BATCH`]) as one batch: the
/// frames are buffered and written with one flush at the end, instead of one write (one
/// syscall, one TCP segment) per frame. Under load a socket's queue holds several items (a wake
/// for the log, an ack, a position), and they go out together; when idle a batch is one frame,
/// written at once, so no latency is added.
pub async fn deliver<S: Outbox>(
    session: &mut S,
    conn: &mut Conn,
    rx: &mut Inbox,
    first: Outbound,
) -> Flow {
    conn.begin_batch();
    let flow = session.outbound(conn, first).await;
    finish_batch(session, conn, rx, flow).await
}

/// Ends a batch begun with [`Conn::begin_batch`]: handles whatever is queued already (up to
/// [`BATCH`] items), then writes everything buffered with one flush. After an inbound frame,
/// this sends the reply together with what the step queued for this socket (an operator's
/// accept: the reply, the conversation, its log, their new load: one write instead of four).
pub async fn finish_batch<S: Outbox>(
    session: &mut S,
    conn: &mut Conn,
    rx: &mut Inbox,
    mut flow: Flow,
) -> Flow {
    conn.batching = true;
    let mut n = 1;
    while flow == Flow::Continue && n < BATCH {
        let Some(more) = rx.try_recv() else { break };
        flow = session.outbound(conn, more).await;
        n += 1;
    }
    conn.batching = false;
    match conn.sink.flush().await {
        Ok(()) => flow,
        Err(_) if flow == Flow::Continue => Flow::Close(close::GOING_AWAY, "send failed"),
        Err(_) => flow,
    }
}

/// Checks a websocket or mutating request's `Origin` against the gateway's own origin (from the
/// `Host` header), `server.public_url` and `server.allowed_origins`. Exact matches only.
pub fn origin_allowed(
    headers: &axum::http::HeaderMap,
    settings: &crate::config::ServerSettings,
) -> bool {
    let Some(origin) = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    if settings.allowed_origins.iter().any(|o| o == origin) {
        return true;
    }
    if let Some(public) = &settings.public_url {
        if public.trim_end_matches('/') == origin {
            return true;
        }
    }
    let Some(host) = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    origin == format!("http://{host}") || origin == format!("https://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn headers(origin: &str, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("origin", origin.parse().unwrap());
        h.insert("host", host.parse().unwrap());
        h
    }

    #[test]
    fn same_origin_and_listed_origins_are_allowed_exactly() {
        let s = crate::config::ServerSettings {
            allowed_origins: vec!["https://npo.example".into()],
            ..Default::default()
        };
        assert!(origin_allowed(
            &headers("http://127.0.0.1:8080", "127.0.0.1:8080"),
            &s
        ));
        assert!(origin_allowed(&headers("https://npo.example", "gw:1"), &s));
        assert!(!origin_allowed(
            &headers("https://npo.example.evil", "gw:1"),
            &s
        ));
        assert!(!origin_allowed(
            &headers("https://evil.npo.example", "gw:1"),
            &s
        ));
        assert!(!origin_allowed(
            &headers("http://127.0.0.1:9999", "127.0.0.1:8080"),
            &s
        ));
        assert!(
            !origin_allowed(&HeaderMap::new(), &s),
            "no Origin, no websocket"
        );
    }
}
