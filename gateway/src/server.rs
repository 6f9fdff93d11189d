//! The HTTP server: accepting TCP connections, admitting them under the connection caps,
//! TLS, and serving HTTP/1.1 and HTTP/2 with hyper under timeouts, until shutdown.
//!
//! Why not `axum::serve` (or `axum_server` for TLS): it runs hyper without a timer, so nothing
//! closes a connection that never sends a request or sends its headers a byte at a time, and it
//! accepts until the process runs out of descriptors. Then `/healthz` and operators time out
//! like everyone else. Here:
//! - a connection must send a request's complete headers within
//!   `server.header_read_timeout_ms` of opening (TLS handshake included) and of its previous
//!   response; headers are capped at `server.max_header_bytes`;
//! - each address (as [`Limits::key`] counts them: an IPv6 /64 is one) may hold
//!   `limits.tcp_connections_per_address` connections; past that it is answered 429 and closed;
//! - at most `server.max_connections` connections are open (by default a little below the
//!   descriptor limit); the last `server.reserved_connections` of them serve only health
//!   checks and operators ([`reserved_path`]), everything else 503. At the cap, a new
//!   connection takes the place of the oldest one that has not sent a request yet (closed at
//!   once), so idle connections cannot hold the reserve against a health check, which sends
//!   its request as soon as it connects; with none to close, it is answered 503 and closed;
//! - a websocket keeps its connection's slot ([`Slot`], moved into the socket) until it closes.
//!
//! On shutdown the listener closes, idle connections close at once and requests in flight
//! finish; connection tasks are on the application's `TaskTracker`, so shutdown waits for them
//! within `server.shutdown_grace_ms` like for sockets.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::ServerSettings;
use crate::limits::{ConnectionGuard, Limits};

/// Descriptors kept out of `max_connections` when it is derived from the open-files limit:
/// the store's connections, the accounts and escalation files, the listener, and the
/// descriptors a connection over the cap takes while it is answered.
const DESCRIPTORS_FOR_THE_REST: u64 = 128;

/// The smallest buffer hyper accepts (it panics below 8 KiB).
const MIN_BUF: usize = 8 * 1024;

/// How long the accept loop pauses when accepting fails for want of descriptors, so it does not
/// spin; connections wait in the kernel's queue meanwhile.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The most connections served at once: `server.max_connections`, or (0) the open-files limit
/// less [`DESCRIPTORS_FOR_THE_REST`].
pub fn max_connections(settings: &ServerSettings) -> usize {
    if settings.max_connections > 0 {
        return settings.max_connections;
    }
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(65_536)
        .min(1 << 20);
    limit.saturating_sub(DESCRIPTORS_FOR_THE_REST).max(16) as usize
}

/// How many connections over `max_connections` may be open while the ones they displaced are
/// closing (each closes within a scheduler turn).
const DISPLACING: usize = 64;

/// Open connections, counted against the overall cap.
pub struct Admission {
    open: AtomicUsize,
    max: usize,
    /// Connections in the order they were admitted, to find the oldest that has sent no
    /// request when the cap is reached. Entries of closed or busy connections are dropped
    /// when it is searched, and when they could outnumber the open connections.
    waiting: Mutex<VecDeque<Weak<Slot>>>,
    /// From this many open connections on, a new one is served only for [`reserved_path`]s.
    reserved_from: usize,
    limits: Arc<Limits>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its address holds `limits.tcp_connections_per_address` already (429).
    Address,
    /// `server.max_connections` are open (503).
    Full,
}

/// One admitted connection's place in the caps, released when the last holder drops it: the
/// connection's task, its requests in flight, and a websocket upgraded from it.
pub struct Slot {
    admission: Arc<Admission>,
    _address: Option<ConnectionGuard>,
    /// Admitted into the reserve: only [`reserved_path`]s are served.
    reserve_only: bool,
    /// A request has arrived (the first-request deadline no longer applies).
    requested: AtomicBool,
    /// Told to close: a newer connection took its place before it sent a request.
    displaced: tokio::sync::Notify,
}

impl Slot {
    fn has_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub fn new(settings: &ServerSettings, limits: Arc<Limits>) -> Arc<Admission> {
        let max = max_connections(settings);
        Arc::new(Admission {
            open: AtomicUsize::new(0),
            max,
            reserved_from: max.saturating_sub(settings.reserved_connections),
            waiting: Mutex::new(VecDeque::new()),
            limits,
        })
    }

    /// Admits a connection from `peer`, or says why not. Connections from a trusted proxy
    /// count only toward the overall cap: everyone behind it shares its address.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Arc<Slot>, Refused> {
        let address = if self.limits.is_trusted_proxy(peer.ip()) {
            None
        } else {
            let key = self.limits.key(peer.ip());
            Some(self.limits.open_tcp(key).ok_or(Refused::Address)?)
        };
        let open = self.open.fetch_add(1, Ordering::AcqRel);
        if open >= self.max && (open >= self.max + DISPLACING || !self.displace_oldest_idle()) {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Full);
        }
        // From here on, dropping the slot gives the place back.
        let slot = Arc::new(Slot {
            admission: Arc::clone(self),
            _address: address,
            reserve_only: open >= self.reserved_from,
            requested: AtomicBool::new(false),
            displaced: tokio::sync::Notify::new(),
        });
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        // Amortised: entries of closed and busy connections go once they are as many as the
        // open connections.
        if waiting.len() >= 2 * open + 64 {
            waiting.retain(|w| w.upgrade().is_some_and(|s| !s.has_requested()));
        }
        waiting.push_back(Arc::downgrade(&slot));
        Ok(slot)
    }

    /// Tells the oldest open connection that has sent no request to close; false if there is
    /// none.
    fn displace_oldest_idle(&self) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(oldest) = waiting.pop_front() {
            if let Some(slot) = oldest.upgrade().filter(|s| !s.has_requested()) {
                slot.displaced.notify_one();
                return true;
            }
        }
        false
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// Paths a connection admitted into the reserve may use: health checks and metrics, and what
/// operators and coordinators need (their pages, sign-in, the API, their websocket). The
/// widget, the visitors' websocket and the connectors' webhooks wait for room.
pub fn reserved_path(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/readyz" | "/metrics" | "/setup" | "/ws/operator"
    ) || ["/console", "/coordinator", "/static/"]
        .iter()
        .any(|p| path.starts_with(p))
        || (path.starts_with("/api/") && path != "/api/widget-config")
}

/// The answer to a request over a connection admitted into the reserve, for another path.
fn reserve_refusal() -> Response<axum::body::Body> {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, "busy, try again shortly").into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// What a plain-HTTP connection refused at accept is told before it is closed.
fn refusal_bytes(why: Refused) -> &'static [u8] {
    match why {
        Refused::Address => {
            b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 5\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
        }
        Refused::Full => {
            b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 5\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
        }
    }
}

/// The server, ready to accept on a bound listener.
pub struct Server {
    pub router: Router,
    pub admission: Arc<Admission>,
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// A connection's deadline for its (first, or next) request's headers.
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    pub shutdown: CancellationToken,
    /// Connection tasks run on it; shutdown waits for them.
    pub tracker: TaskTracker,
}

impl Server {
    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        let buf = self.max_header_bytes.max(MIN_BUF);
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_buf_size(buf);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(buf).unwrap_or(u32::MAX))
            // An HTTP/2 connection that stops answering pings is closed.
            .keep_alive_interval(self.header_timeout)
            .keep_alive_timeout(self.header_timeout);
        builder
    }

    /// Accepts until shutdown, then returns (connections finish on the tracker).
    pub async fn run(self, listener: TcpListener) {
        let server = Arc::new(self);
        let builder = Arc::new(server.builder());
        loop {
            let (tcp, peer) = tokio::select! {
                _ = server.shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors (EMFILE, ENFILE) or a connection that was reset
                        // while queued: neither is the listener's end.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
            };
            let slot = match server.admission.admit(peer) {
                Ok(slot) => slot,
                Err(why) => {
                    tracing::debug!(?why, "connection refused at accept");
                    if server.tls.is_none() {
                        // A fresh socket's send buffer is empty: this does not block. Best
                        // effort; the connection is closed either way.
                        let _ = tcp.try_write(refusal_bytes(why));
                    }
                    continue;
                }
            };
            // TCP_NODELAY: every frame is a small write; with Nagle, a frame written while the
            // previous one is unacknowledged waits for the peer's delayed ACK (40 ms).
            let _ = tcp.set_nodelay(true);
            let server = Arc::clone(&server);
            let builder = Arc::clone(&builder);
            server
                .tracker
                .clone()
                .spawn(async move { server.connection(&builder, tcp, peer, slot).await });
        }
    }

    /// One connection's life: TLS if configured, then HTTP until it closes, is idle past the
    /// header deadline, or the server shuts down.
    async fn connection(
        &self,
        builder: &auto::Builder<TokioExecutor>,
        tcp: TcpStream,
        peer: SocketAddr,
        slot: Arc<Slot>,
    ) {
        let first_request = tokio::time::Instant::now() + self.header_timeout;
        match &self.tls {
            None => {
                self.http(builder, TokioIo::new(tcp), peer, slot, first_request)
                    .await
            }
            Some(tls) => {
                // The handshake counts toward the first request's deadline.
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.get_inner());
                let handshake = tokio::time::timeout_at(first_request, acceptor.accept(tcp));
                let stream = tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = slot.displaced.notified() => return,
                    done = handshake => match done {
                        Ok(Ok(stream)) => stream,
                        _ => return,
                    },
                };
                self.http(builder, TokioIo::new(stream), peer, slot, first_request)
                    .await
            }
        }
    }

    async fn http<I>(
        &self,
        builder: &auto::Builder<TokioExecutor>,
        io: I,
        peer: SocketAddr,
        slot: Arc<Slot>,
        first_request: tokio::time::Instant,
    ) where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let router = self.router.clone();
        let held = Arc::clone(&slot);
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            held.requested.store(true, Ordering::Release);
            let answer: Pin<Box<dyn Future<Output = _> + Send>> =
                if held.reserve_only && !reserved_path(request.uri().path()) {
                    Box::pin(std::future::ready(reserve_refusal()))
                } else {
                    let extensions = request.extensions_mut();
                    extensions.insert(ConnectInfo(peer));
                    extensions.insert(Arc::clone(&held));
                    let router = router.clone();
                    Box::pin(async move {
                        let response = router.oneshot(request).await;
                        response.unwrap_or_else(|never: Infallible| match never {})
                    })
                };
            async move { Ok::<_, Infallible>(answer.await) }
        });
        let connection = builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(connection);
        // HTTP/1's header deadline is hyper's; this one also covers a connection that sends
        // nothing at all (hyper waits for its first bytes to tell HTTP/1 from HTTP/2) and
        // HTTP/2's first request.
        let first = tokio::time::sleep_until(first_request);
        tokio::pin!(first);
        let mut waiting_for_first = true;
        let mut stopping = false;
        loop {
            tokio::select! {
                _ = connection.as_mut() => break,
                _ = &mut first, if waiting_for_first => {
                    if !slot.has_requested() {
                        tracing::debug!("connection closed: no request before the deadline");
                        break;
                    }
                    waiting_for_first = false;
                }
                _ = slot.displaced.notified(), if waiting_for_first => {
                    if !slot.has_requested() {
                        tracing::debug!("connection closed: displaced by a newer one at the cap");
                        break;
                    }
                }
                _ = self.shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
