//! Websocket endpoints for visitors ([`visitor`]) and operators ([`operator`]), and what they
//! share: the outbound half of a socket with error counting ([`Conn`]), reading typed frames,
//! and the heartbeat rules.
//!
//! A connection's life reads as one story in each endpoint's `run`: hello, register, replay what
//! was missed, then one `select!` over inbound frames, the outbound queue, the heartbeat tick and
//! shutdown, then clean-up. (The visitor's `run` is split into `open` and `serve` so that a
//! waiting person's task holds only the loop; see `visitor::run`.)

pub mod operator;
pub mod socket;
pub mod visitor;

use std::future::Future;
use std::time::{Duration, Instant};

use socket::{Message, Socket};

use crate::engine::registry::{Inbox, Outbound};
use crate::metrics::Metrics;
use crate::protocol::{close, parse_frame, ClientFrame, ClientId, ErrorCode, ServerMsg};

/// After this many refused frames on one socket, it is closed with 1008: errors and
/// `rate_limited` refusals alike (a `hello` past the new-conversation limit, a message past the
/// allowance), counted over the socket's life, never reset. A client that keeps sending what is
/// refused is closed whatever its pacing; an honest one is refused a handful of times at most
/// (the widget waits `retry_after_ms` before trying again).
pub const MAX_ERRORS: u32 = 50;

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
    Bad(Option<ClientId>, ErrorCode),
    /// Ping/pong or other control traffic: only proves the peer is alive.
    Alive,
    /// The peer closed, or the transport failed.
    Gone,
    /// The frame was larger than the limit.
    TooBig,
    /// The peer did not take what it was sent (pongs too) within the send deadline: nothing
    /// more is read from it, and it is closed with 4011.
    TooSlow,
    /// The peer broke the websocket protocol (1002), or sent text that is not UTF-8 (1007).
    Broken(u16),
}

/// Reads the next inbound event. Cancel-safe (see [`Socket::recv`]).
pub async fn next_inbound<T: ClientFrame>(conn: &mut Conn) -> Inbound<T> {
    let drain = conn.heartbeat * SEND_DEADLINE_HEARTBEATS;
    match conn.socket.recv(drain).await {
        Ok(Message::Text(text)) => match parse_frame::<T>(&text) {
            Ok(frame) => Inbound::Frame(frame),
            Err(e) => Inbound::Bad(e.id, e.code),
        },
        Ok(Message::Binary) => Inbound::Bad(None, ErrorCode::BadFrame),
        Ok(Message::Ping | Message::Pong) => Inbound::Alive,
        Ok(Message::Close(_)) | Err(socket::Error::Closed | socket::Error::Io(_)) => Inbound::Gone,
        Err(socket::Error::TooBig) => Inbound::TooBig,
        Err(socket::Error::TooSlow) => {
            tracing::debug!(
                kind = conn.kind,
                "peer took nothing before the send deadline"
            );
            Inbound::TooSlow
        }
        Err(socket::Error::Protocol(why)) => {
            tracing::debug!(kind = conn.kind, why, "websocket protocol violation");
            Inbound::Broken(close::PROTOCOL_ERROR)
        }
        Err(socket::Error::NotUtf8) => Inbound::Broken(close::NOT_UTF8),
    }
}

/// A socket, with the bookkeeping every endpoint needs.
pub struct Conn {
    socket: Socket,
    /// Inside [`deliver`]: frames are buffered, and written together at its end.
    batching: bool,
    errors: u32,
    /// When the peer last sent anything; the heartbeat deadline counts from here.
    pub last_seen: Instant,
    pub heartbeat: Duration,
    kind: &'static str,
}

impl Conn {
    pub fn new(socket: Socket, heartbeat: Duration, kind: &'static str) -> Conn {
        Conn {
            socket,
            batching: false,
            errors: 0,
            last_seen: Instant::now(),
            heartbeat,
            kind,
        }
    }

    /// Buffers frames from now on until [`finish_batch`] (or [`deliver`]) writes them.
    pub fn begin_batch(&mut self) {
        self.batching = true;
    }

    /// Sends a frame: a [`ServerMsg`], or a borrowed frame that serialises as one (see
    /// [`crate::protocol::EventFrame`]). It is serialised straight into the send buffer.
    pub async fn send(&mut self, msg: &(impl serde::Serialize + ?Sized)) -> Flow {
        let queued = self
            .socket
            .queue_text_with(|buf| serde_json::to_writer(buf, msg));
        if let Err(e) = queued {
            // Only a bug could get here (every frame type serialises); the frame is dropped.
            tracing::error!(kind = self.kind, error = %e, "a frame could not be serialised");
            return Flow::Continue;
        }
        self.sent().await
    }

    /// Sends a frame that is already JSON.
    pub async fn send_json(&mut self, json: &str) -> Flow {
        self.socket.queue_text(json);
        self.sent().await
    }

    /// After queueing: written now, or with the rest of the batch.
    async fn sent(&mut self) -> Flow {
        if self.batching && !self.socket.needs_flush() {
            return Flow::Continue;
        }
        self.flush().await
    }

    /// Writes what is queued. A peer that takes nothing for [`SEND_DEADLINE_HEARTBEATS`]
    /// heartbeats (30 s by default) is closed as too slow: without a deadline, the socket would
    /// wait on a full TCP buffer for as long as the peer kept the connection open and did not
    /// read, and its heartbeat and shutdown with it (both are handled by the same task).
    /// `Socket::flush` keeps its progress in the socket, so giving up halfway loses nothing
    /// the Close after it needs.
    async fn flush(&mut self) -> Flow {
        let deadline = self.heartbeat * SEND_DEADLINE_HEARTBEATS;
        match tokio::time::timeout(deadline, self.socket.flush()).await {
            Ok(Ok(())) => Flow::Continue,
            Ok(Err(_)) => Flow::Close(close::GOING_AWAY, "send failed"),
            Err(_) => {
                tracing::debug!(
                    kind = self.kind,
                    "peer took nothing before the send deadline"
                );
                Flow::Close(close::TOO_SLOW, "too slow")
            }
        }
    }

    /// Sends an error event; too many refusals close the socket.
    pub async fn error(
        &mut self,
        metrics: &Metrics,
        id: Option<ClientId>,
        code: impl Into<ErrorCode>,
    ) -> Flow {
        let code = code.into();
        self.refuse(metrics, &ServerMsg::error(id, code), code)
            .await
    }

    /// Sends `rate_limited` with when to try again; it counts as a refusal like any error.
    pub async fn rate_limited(
        &mut self,
        metrics: &Metrics,
        id: Option<ClientId>,
        wait: crate::limits::RetryAfter,
    ) -> Flow {
        let msg = ServerMsg::rate_limited(id, wait.millis());
        self.refuse(metrics, &msg, ErrorCode::RateLimited).await
    }

    /// Counts a refusal and sends its frame; the [`MAX_ERRORS`]th closes the socket instead.
    async fn refuse(&mut self, metrics: &Metrics, msg: &ServerMsg, code: ErrorCode) -> Flow {
        metrics.error(code.as_str());
        tracing::debug!(
            kind = self.kind,
            code = code.as_str(),
            "refused a client frame"
        );
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            return Flow::Close(close::POLICY, "too many refusals");
        }
        self.send(msg).await
    }

    /// The heartbeat tick: close a silent peer, else ping it.
    pub async fn heartbeat_tick(&mut self) -> Flow {
        if self.last_seen.elapsed() > self.heartbeat * 3 {
            return Flow::Close(close::HEARTBEAT_TIMEOUT, "heartbeat timeout");
        }
        self.socket.queue_ping();
        self.flush().await
    }

    /// Sends a Close frame with `code` and ends the socket. After its Close the socket reads
    /// (and drops) what the peer still sends, until the peer closes too or
    /// [`CLOSE_LINGER`] has passed: a socket dropped at once answers the peer's next write
    /// (a pong to a ping it had not read yet, its answer to the Close) with a TCP reset, and
    /// the reset discards what the peer had not read yet, the Close and its code with it.
    pub async fn close(mut self, code: u16, reason: &'static str) {
        tracing::debug!(kind = self.kind, code, reason, "closing socket");
        self.socket.queue_close(code, reason);
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            if self.socket.flush().await.is_ok() {
                self.socket.shutdown().await;
                while self.socket.recv(CLOSE_LINGER).await.is_ok() {}
            }
        })
        .await;
    }
}

/// The longest a closing socket waits: to write its Close, then for the peer to close too.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Heartbeats a write may wait for a peer that does not read before the socket is closed,
/// whether the write is a frame of ours or the answer to its ping (see [`Socket::recv`]).
pub const SEND_DEADLINE_HEARTBEATS: u32 = 2;

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
    let flushed = conn.flush().await;
    if flow == Flow::Continue {
        flushed
    } else {
        flow
    }
}

/// Checks a websocket or mutating request's `Origin` against the origins the gateway is
/// reached at: `server.allowed_origins`, the origin of `server.public_url`, and its own listen
/// address ([`listen_origins`]) with the scheme it serves. Exact matches only.
///
/// Never against the request's `Host` header: a DNS-rebinding page (a name of the attacker's
/// pointed at the gateway's address) sends a `Host` and an `Origin` that agree with each other
/// (issue 17, item 8); and an `https://` origin is never the gateway's own when it serves plain
/// HTTP.
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
    let Some(origin) = normalise_origin(origin) else {
        return false;
    };
    if let Some(public) = settings.public_url.as_deref().and_then(normalise_origin) {
        if public == origin {
            return true;
        }
    }
    listen_origins(settings).contains(&origin)
}

/// `scheme://host[:port]` of a URL, lower-cased, without a default port (as browsers send an
/// `Origin`); `None` if it is not an http(s) URL.
fn normalise_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    Some(format!("{scheme}://{authority}"))
}

/// The origins of the gateway's own listen address (`server.host` and the bound
/// `server.port`), with the scheme it serves (https with `tls_cert_file`). A loopback or
/// unspecified (`0.0.0.0`, `::`) listener is also reached as `localhost`, `127.0.0.1` and
/// `[::1]`.
pub fn listen_origins(settings: &crate::config::ServerSettings) -> Vec<String> {
    let scheme = if settings.tls_cert_file.is_some() {
        "https"
    } else {
        "http"
    };
    let host = settings.host.trim_start_matches('[').trim_end_matches(']');
    let mut hosts = Vec::new();
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => {
            hosts.push(match ip {
                std::net::IpAddr::V4(v4) => v4.to_string(),
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            });
            if ip.is_loopback() || ip.is_unspecified() {
                hosts.extend(["localhost", "127.0.0.1", "[::1]"].map(String::from));
            }
        }
        Err(_) => {
            hosts.push(host.to_ascii_lowercase());
            if host.eq_ignore_ascii_case("localhost") {
                hosts.extend(["127.0.0.1", "[::1]"].map(String::from));
            }
        }
    }
    hosts
        .into_iter()
        .filter_map(|h| normalise_origin(&format!("{scheme}://{h}:{}", settings.port)))
        .collect()
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

    #[test]
    fn the_host_header_never_makes_an_origin_allowed() {
        let s = crate::config::ServerSettings::default();
        // DNS rebinding: the page's name now points at the gateway; Host and Origin agree.
        assert!(!origin_allowed(
            &headers("http://evil.example:8080", "evil.example:8080"),
            &s
        ));
        assert!(!origin_allowed(
            &headers("http://evil.example", "evil.example"),
            &s
        ));
        // Over plain HTTP, an https origin is not the gateway's own.
        assert!(!origin_allowed(
            &headers("https://127.0.0.1:8080", "127.0.0.1:8080"),
            &s
        ));
        assert!(origin_allowed(
            &headers("http://localhost:8080", "localhost:8080"),
            &s
        ));
    }

    #[test]
    fn the_listen_address_and_public_url_give_the_gateways_own_origins() {
        let s = crate::config::ServerSettings {
            host: "0.0.0.0".into(),
            port: 80,
            public_url: Some("https://Chat.NPO.example:443/helpline/".into()),
            ..Default::default()
        };
        for ok in [
            "http://localhost",
            "http://127.0.0.1",
            "http://[::1]",
            "http://0.0.0.0",
            "https://chat.npo.example",
        ] {
            assert!(origin_allowed(&headers(ok, "x"), &s), "{ok}");
        }
        for no in [
            "https://localhost",
            "http://localhost:8080",
            "http://chat.npo.example",
            "http://10.0.0.5",
            "null",
        ] {
            assert!(!origin_allowed(&headers(no, "x"), &s), "{no}");
        }
        let tls = crate::config::ServerSettings {
            host: "::".into(),
            port: 8443,
            tls_cert_file: Some("cert.pem".into()),
            ..Default::default()
        };
        assert!(origin_allowed(&headers("https://[::1]:8443", "x"), &tls));
        assert!(!origin_allowed(&headers("http://[::1]:8443", "x"), &tls));
    }

    /// A connected pair over loopback with small buffers: the server's end (as the gateway
    /// holds it) and a client that never reads.
    async fn unread_pair() -> (Socket, tokio::net::TcpStream) {
        let listener = tokio::net::TcpSocket::new_v4().unwrap();
        listener.set_send_buffer_size(4096).unwrap();
        listener.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = listener.listen(1).unwrap();
        let client = tokio::net::TcpSocket::new_v4().unwrap();
        client.set_recv_buffer_size(4096).unwrap();
        let client = client
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let io = tokio_util::either::Either::Left(server);
        (Socket::new(io, crate::protocol::MAX_FRAME_BYTES), client)
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_is_closed_as_too_slow_after_the_send_deadline() {
        let (socket, _client) = unread_pair().await;
        let heartbeat = Duration::from_millis(100);
        let mut conn = Conn::new(socket, heartbeat, "test");
        let frame = "x".repeat(1000);
        let started = Instant::now();
        let (flow, sent) = tokio::time::timeout(Duration::from_secs(10), async {
            let mut flow = Flow::Continue;
            let mut sent = 0;
            while flow == Flow::Continue && sent < 100_000 {
                flow = conn.send_json(&frame).await;
                sent += 1;
            }
            (flow, sent)
        })
        .await
        .expect("the write waited with no deadline");
        assert_eq!(flow, Flow::Close(close::TOO_SLOW, "too slow"));
        assert!(
            started.elapsed() >= heartbeat * SEND_DEADLINE_HEARTBEATS,
            "it waited for the deadline"
        );
        assert!(sent < 100_000, "the buffers filled: {sent} frames");
    }

    #[tokio::test]
    async fn a_peer_that_reads_is_never_cut_off_by_the_send_deadline() {
        let (socket, mut client) = unread_pair().await;
        let mut conn = Conn::new(socket, Duration::from_millis(100), "test");
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0; 64 * 1024];
            let mut total = 0;
            while let Ok(n) = client.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                total += n;
            }
            total
        });
        let frame = "x".repeat(1000);
        for _ in 0..2_000 {
            assert_eq!(conn.send_json(&frame).await, Flow::Continue);
        }
        drop(conn);
        assert!(reader.await.unwrap() >= 2_000 * 1000);
    }
}
