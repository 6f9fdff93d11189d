//! The visitor endpoint, `GET /ws/visitor`: a person reaching out from the widget.

use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::socket::{Socket, Upgrade};
use super::{next_inbound, Conn, Flow, Inbound};
use crate::conversation::{Conversation, ConversationId};
use crate::engine::follower::Follower;
use crate::engine::registry::Inbox;
use crate::engine::Outbound;
use crate::limits::{AddrKey, ConnectionGuard, ConnectionLimiter};
use crate::protocol::{
    close, validate_text, Channel, ErrorCode, EventBody, EventFrame, GoneReason, Limits, ServerMsg,
    Side, VisitorClient, PROTOCOL_VERSION,
};
use crate::state::AppState;

pub async fn upgrade(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: Upgrade,
) -> Response {
    if !super::origin_allowed(&headers, &app.settings.server) {
        tracing::info!("visitor websocket refused: origin not allowed");
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let key = app.limits.key(app.limits.client_ip(peer, &headers));
    let Some(slot) = app.limits.open_connection(key) else {
        tracing::info!("visitor websocket refused: too many connections from one address");
        return (StatusCode::TOO_MANY_REQUESTS, "too many connections").into_response();
    };
    let tracker = app.tracker.clone();
    // The socket's life runs in a task of its own rather than in axum's upgrade task, which
    // would carry axum's own upgrade state (~500 bytes) beside it for the socket's whole life.
    ws.on_upgrade(move |socket| async move {
        tracker.spawn(run(app, socket, key, slot));
    })
}

/// Accepts only a language tag like `ja`, `en` or `pt-BR`.
fn clean_lang(lang: Option<String>) -> Option<String> {
    lang.filter(|l| {
        (2..=12).contains(&l.len()) && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// Waits for `hello` and opens or resumes the conversation. `Err` closes the socket.
async fn handshake(
    app: &AppState,
    conn: &mut Conn,
    key: AddrKey,
) -> Result<(Conversation, String, u64, bool), (u16, &'static str)> {
    let deadline = conn.heartbeat * 3;
    loop {
        let inbound = tokio::time::timeout(deadline, next_inbound::<VisitorClient>(conn))
            .await
            .map_err(|_| (close::HEARTBEAT_TIMEOUT, "no hello"))?;
        match inbound {
            Inbound::Frame(VisitorClient::Hello {
                v,
                start,
                resume,
                id,
            }) => {
                // Errors answering a `hello` carry its id, as every error does.
                if v != PROTOCOL_VERSION {
                    let _ = conn
                        .error(&app.engine.metrics, Some(id), ErrorCode::UnsupportedVersion)
                        .await;
                    return Err((close::UNSUPPORTED_VERSION, "unsupported version"));
                }
                if let Some(resume) = resume {
                    let found = app
                        .engine
                        .resume_visitor(&resume.token)
                        .await
                        .map_err(|_| (close::GOING_AWAY, "store unavailable"))?;
                    let Some(conv) = found else {
                        let _ = conn
                            .error(&app.engine.metrics, Some(id), ErrorCode::NotFound)
                            .await;
                        return Err((close::NOT_FOUND, "conversation not found"));
                    };
                    let cursor = resume
                        .last_seq
                        .unwrap_or(conv.visitor_acked)
                        .min(conv.last_seq);
                    return Ok((conv, resume.token, cursor, true));
                }
                if let Err(wait) = app.limits.new_conversation(key) {
                    // Told when to come back; the socket stays open for the retry, but a
                    // socket that keeps asking is closed after `MAX_ERRORS` refusals.
                    let flow = conn.rate_limited(&app.engine.metrics, Some(id), wait).await;
                    if let Flow::Close(code, reason) = flow {
                        return Err((code, reason));
                    }
                    continue;
                }
                let lang = clean_lang(start.and_then(|s| s.lang));
                let (conv, token) = app
                    .engine
                    .start_visitor(Channel::Web, lang)
                    .await
                    .map_err(|_| (close::GOING_AWAY, "store unavailable"))?;
                return Ok((conv, token, 0, false));
            }
            Inbound::Frame(VisitorClient::Ping { id }) => {
                conn.last_seen = std::time::Instant::now();
                if let Flow::Close(code, reason) = conn.send(&ServerMsg::Pong { id }).await {
                    return Err((code, reason));
                }
            }
            Inbound::Frame(other) => {
                let flow = conn
                    .error(&app.engine.metrics, Some(other.id()), ErrorCode::OutOfOrder)
                    .await;
                if let Flow::Close(code, reason) = flow {
                    return Err((code, reason));
                }
            }
            Inbound::Bad(id, code) => {
                if let Flow::Close(code, reason) = conn.error(&app.engine.metrics, id, code).await {
                    return Err((code, reason));
                }
            }
            Inbound::Alive => conn.last_seen = std::time::Instant::now(),
            Inbound::TooBig => return Err((close::TOO_BIG, "frame too large")),
            Inbound::TooSlow => return Err((close::TOO_SLOW, "too slow")),
            Inbound::Broken(code) => return Err((code, "websocket protocol violation")),
            Inbound::Gone => return Err((close::NORMAL, "gone")),
        }
    }
}

/// A visitor socket's life. Split in two so that the task stays small: a waiting person's
/// socket spends its whole life in [`serve`]'s `select!`, so what runs once ([`open`]: the
/// handshake, registering, the welcome) or rarely (handling a frame, a delivery, a heartbeat)
/// is boxed and not inline in the task's future, which is as large as its largest state.
/// The socket arrives boxed for the same reason: an argument is kept in the future for its
/// whole life. Measured with massif and `-Zprint-type-sizes`: the task was ~4.4 KB per waiting
/// person with everything inline (BENCHMARKS.md).
pub async fn run(app: Arc<AppState>, socket: Box<Socket>, key: AddrKey, slot: ConnectionGuard) {
    // Held for the socket's life: the address's connection slot.
    let _slot = slot;
    // Out of its box in a block of its own: moving out of a box frees it only when the box
    // variable goes out of scope, and `socket` would have been in scope for the socket's life
    // (massif: 368 bytes of every waiting person, with tungstenite's socket).
    let socket: Socket = {
        let boxed = socket;
        *boxed
    };
    let opened = Box::pin(open(&app, socket, key)).await;
    if let Some(open) = opened {
        serve(open).await;
    }
}

/// How often the shared heartbeat pings its next slice of the visitor sockets. Every socket is
/// pinged once per `heartbeat_ms`, in `heartbeat_ms / HEARTBEAT_STEP` slices: at 15 s and
/// 18,000 waiting people, 60 pings every 50 ms rather than all of them at once (a burst of
/// pings all at once delayed the arrivals behind it).
const HEARTBEAT_STEP: Duration = Duration::from_millis(50);

/// The visitor sockets' heartbeat: one ticker for all of them, which queues
/// [`Outbound::Heartbeat`] for each in turn. A timer in every socket's task was ~150 bytes of
/// each idle waiting person (its boxed `Sleep` and the `Interval`), measured with massif; this is
/// how uWebSockets (Bun) times its sockets too. A socket that is busy meanwhile handles the tick
/// in order with its other frames.
pub fn spawn_heartbeat(app: &Arc<AppState>) {
    let app = Arc::clone(app);
    let beat = Duration::from_millis(app.settings.server.heartbeat_ms);
    let slices = (beat.as_millis() / HEARTBEAT_STEP.as_millis()).max(1) as u64;
    let every = beat / slices as u32;
    let tracker = app.tracker.clone();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset();
        let mut slice = 0;
        loop {
            tokio::select! {
                _ = app.shutdown.cancelled() => {
                    // Visitor sockets wait on their queues, not on the shutdown token.
                    app.engine.close_web_visitors(close::GOING_AWAY, "server shutting down");
                    break;
                }
                _ = tick.tick() => {
                    app.engine.heartbeat_visitors(slices, slice);
                    slice = (slice + 1) % slices;
                }
            }
        }
    });
}

/// A socket past its handshake, registered and greeted: what the loop needs. Boxed, and the
/// loop works on it in place: destructured into the loop's locals, its fields took their space
/// twice in the task (`-Zprint-type-sizes`: the loop's future was 1,008 bytes, now 216).
struct Open<'a> {
    conn: Conn,
    rx: Inbox,
    session: Session<'a>,
    flow: Flow,
    span: tracing::Span,
}

/// What woke an idle socket.
enum Event {
    /// The throttle after a refused message ran out: read again.
    Unthrottled,
    Inbound(Inbound<VisitorClient>),
    /// Something queued for this socket; `None`: every sender is gone.
    Queued(Option<Outbound>),
}

/// Hello, register, welcome, catch up, the first queue position. `None`: the socket closed.
async fn open<'a>(app: &'a Arc<AppState>, socket: Socket, key: AddrKey) -> Option<Box<Open<'a>>> {
    let heartbeat = Duration::from_millis(app.settings.server.heartbeat_ms);
    let mut conn = Conn::new(socket, heartbeat, "visitor");
    let metrics = &app.engine.metrics;
    metrics.connection("visitor", 1);
    let (conv, token, cursor, resumed) = match handshake(app, &mut conn, key).await {
        Ok(v) => v,
        Err((code, reason)) => {
            conn.close(code, reason).await;
            metrics.connection("visitor", -1);
            return None;
        }
    };
    let id = conv.id;
    let span = tracing::info_span!("visitor", conversation = %id);
    let queue = app.settings.server.socket_queue;
    let (follower, mut rx) = Follower::web_visitor(&**app, id, queue, cursor);
    if resumed {
        // A new conversation was stored connected, through this node: the step would change
        // nothing (and cost a store round trip and a step on the bus at every arrival).
        app.engine.visitor_connection(id, true).await;
    }
    tracing::info!(parent: &span, resumed, "visitor connected");

    let mut session = Session::new(follower);
    let welcome = ServerMsg::VisitorWelcome {
        v: PROTOCOL_VERSION,
        conversation: id,
        token,
        state: conv.visitor_state(),
        resumed,
        last_seq: conv.last_seq,
        heartbeat_ms: app.settings.server.heartbeat_ms,
        limits: Limits::default(),
    };
    // The welcome, the log and the position go out in one write, with anything queued since.
    conn.begin_batch();
    let flow = session.greet(&mut conn, welcome).await;
    let mut flow = super::finish_batch(&mut session, &mut conn, &mut rx, flow).await;
    // Shutdown tells registered sockets through their queues (`spawn_heartbeat`); one that
    // registered after that was sent hears it here.
    if app.shutdown.is_cancelled() {
        flow = Flow::Close(close::GOING_AWAY, "server shutting down");
    }
    Some(Box::new(Open {
        conn,
        rx,
        session,
        flow,
        span,
    }))
}

/// The connection loop: wait for an [`Event`] (inbound frames, the outbound queue, the
/// heartbeat arriving through the queue, shutdown), react to it, and at the end clean up. Only
/// the waiting is inline in the task's future; reacting is boxed, since an idle waiting person's
/// socket spends its whole life waiting.
async fn serve(mut open: Box<Open<'_>>) {
    while open.flow == Flow::Continue {
        if open.rx.fell_behind() {
            open.flow = open.too_slow();
            break;
        }
        let event = open.next_event().await;
        match Box::pin(open.react(event)).await {
            Some(flow) => open.flow = flow,
            None => break,
        }
    }
    Box::pin(open.finish()).await;
}

impl Open<'_> {
    async fn next_event(&mut self) -> Event {
        let throttled = self.session.throttled.is_some();
        tokio::select! {
            // While over the message allowance, stop reading: TCP pushes a flood back onto the
            // sender instead of costing the gateway a refusal per frame.
            _ = async { self.session.throttled.as_mut().expect("throttled").await }, if throttled => {
                Event::Unthrottled
            }
            inbound = next_inbound::<VisitorClient>(&mut self.conn), if !throttled => {
                Event::Inbound(inbound)
            }
            out = self.rx.recv() => Event::Queued(out),
        }
    }

    /// The close for a socket whose queue filled: something sent to it may have been dropped.
    /// At shutdown a full queue may have dropped the shutdown's own close.
    fn too_slow(&self) -> Flow {
        if self.session.app().shutdown.is_cancelled() {
            Flow::Close(close::GOING_AWAY, "server shutting down")
        } else {
            Flow::Close(close::TOO_SLOW, "too slow")
        }
    }

    /// What the loop does next; `None`: the peer is gone, stop without a Close frame.
    async fn react(&mut self, event: Event) -> Option<Flow> {
        let metrics = &self.session.app().engine.metrics;
        let conn = &mut self.conn;
        let flow = match event {
            Event::Unthrottled => {
                self.session.throttled = None;
                Flow::Continue
            }
            Event::Inbound(inbound) => {
                conn.last_seen = std::time::Instant::now();
                match inbound {
                    Inbound::Frame(msg) => {
                        conn.begin_batch();
                        let flow = self.session.handle(conn, msg).await;
                        super::finish_batch(&mut self.session, conn, &mut self.rx, flow).await
                    }
                    Inbound::Bad(cid, code) => conn.error(metrics, cid, code).await,
                    Inbound::Alive => Flow::Continue,
                    Inbound::TooBig => Flow::Close(close::TOO_BIG, "frame too large"),
                    Inbound::TooSlow => Flow::Close(close::TOO_SLOW, "too slow"),
                    Inbound::Broken(code) => Flow::Close(code, "websocket protocol violation"),
                    Inbound::Gone => return None,
                }
            }
            Event::Queued(Some(out)) => {
                super::deliver(&mut self.session, conn, &mut self.rx, out).await
            }
            Event::Queued(None) => return None,
        };
        Some(flow)
    }

    /// Closes the socket (unless the peer is gone), unregisters it and tells the engine.
    async fn finish(self: Box<Self>) {
        let Open {
            conn,
            session,
            flow,
            span,
            ..
        } = *self;
        let engine = &session.app().engine;
        let (id, ended) = (session.id(), session.ended);
        if let Flow::Close(code, reason) = flow {
            conn.close(code, reason).await;
        }
        // Unregistered first; the person is marked gone only if no newer socket took over.
        if session.follower.leave() && !ended {
            engine.visitor_connection(id, false).await;
        }
        engine.metrics.connection("visitor", -1);
        tracing::info!(parent: &span, "visitor disconnected");
    }
}

struct Session<'a> {
    /// This socket's registration, its conversation and its cursor (the highest seq sent to
    /// it); it holds the socket's `&AppState` too ([`Session::app`]).
    follower: Follower<&'a AppState>,
    /// True once the person's side has ended: the socket closes after the `ended` entry.
    ended: bool,
    /// Messages (and typing) per connection.
    limiter: ConnectionLimiter,
    /// Set after a refusal: the socket is not read again until it fires. Boxed and only there
    /// while throttled: a `Sleep` inline in the loop would be ~100 bytes of every idle socket.
    throttled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// Refusals in a row; past [`FLOOD_REFUSALS`] the socket is closed as a flood.
    refusals: u32,
}

/// Refused messages in a row after which a connection counts as a flood, not a person in a
/// hurry (the widget waits `retry_after_ms` before retrying, so a person never gets near it).
const FLOOD_REFUSALS: u32 = 20;

impl super::Outbox for Session<'_> {
    async fn outbound(&mut self, conn: &mut Conn, out: Outbound) -> Flow {
        Session::outbound(self, conn, out).await
    }
}

impl<'a> Session<'a> {
    fn new(follower: Follower<&'a AppState>) -> Self {
        let app = *follower.owner();
        Session {
            follower,
            ended: false,
            limiter: app.limits.per_connection(),
            throttled: None,
            refusals: 0,
        }
    }

    fn app(&self) -> &'a AppState {
        self.follower.owner()
    }

    fn id(&self) -> ConversationId {
        self.follower.conversation()
    }

    /// The first frames of a connection: the welcome, whatever the log holds after the cursor,
    /// and the queue position of a waiting person.
    async fn greet(&mut self, conn: &mut Conn, welcome: ServerMsg) -> Flow {
        let mut flow = conn.send(&welcome).await;
        if flow == Flow::Continue {
            flow = self.catch_up(conn).await;
        }
        if flow == Flow::Continue {
            if let Some(pos) = self.app().engine.waiting_position(self.id()).await {
                flow = conn.send(&pos).await;
            }
        }
        flow
    }

    /// Sends every log entry after the cursor.
    async fn catch_up(&mut self, conn: &mut Conn) -> Flow {
        let entries = match self.follower.catch_up().await {
            Ok(e) => e,
            Err(_) => return Flow::Continue,
        };
        let id = self.id();
        for entry in entries {
            let flow = self
                .send_entry(conn, &EventFrame::new(id, &entry), &entry.event)
                .await;
            if flow != Flow::Continue {
                return flow;
            }
        }
        Flow::Continue
    }

    /// Sends one entry the follower handed out (once, past the cursor).
    async fn send_entry(
        &mut self,
        conn: &mut Conn,
        msg: &impl serde::Serialize,
        event: &EventBody,
    ) -> Flow {
        let flow = conn.send(msg).await;
        if matches!(event, EventBody::Ended { .. }) {
            self.ended = true;
            return Flow::Close(close::NORMAL, "conversation ended");
        }
        flow
    }

    async fn outbound(&mut self, conn: &mut Conn, out: Outbound) -> Flow {
        match out {
            Outbound::Wake(_) | Outbound::Hold(_) => self.catch_up(conn).await,
            Outbound::Frame(msg) => match *msg {
                ServerMsg::Event {
                    conversation,
                    seq,
                    at,
                    event,
                } => {
                    if self.follower.missed_before(seq) {
                        let flow = self.catch_up(conn).await;
                        if flow != Flow::Continue {
                            return flow;
                        }
                    }
                    if !self.follower.take(seq) {
                        return Flow::Continue;
                    }
                    let msg = EventFrame {
                        conversation,
                        seq,
                        at,
                        event: &event,
                    };
                    self.send_entry(conn, &msg, &event).await
                }
                msg => conn.send(&msg).await,
            },
            Outbound::Json(text) => conn.send_json(&text).await,
            Outbound::Release(_) | Outbound::Recheck => Flow::Continue,
            Outbound::Close(code, reason) => Flow::Close(code, reason),
            Outbound::Heartbeat => conn.heartbeat_tick().await,
            Outbound::Final(entries) => {
                let id = self.id();
                for entry in entries.iter() {
                    if !self.follower.take(entry.seq) {
                        continue;
                    }
                    let flow = self
                        .send_entry(conn, &EventFrame::new(id, entry), &entry.event)
                        .await;
                    if flow != Flow::Continue {
                        return flow;
                    }
                }
                Flow::Continue
            }
            Outbound::Gone(_) => {
                // Nothing of the conversation is left to end or to mark disconnected.
                self.ended = true;
                let _ = conn
                    .send(&ServerMsg::Gone {
                        conversation: self.id(),
                        reason: GoneReason::Lost,
                    })
                    .await;
                Flow::Close(close::NOT_FOUND, "conversation gone")
            }
        }
    }

    async fn handle(&mut self, conn: &mut Conn, msg: VisitorClient) -> Flow {
        let engine = &self.app().engine;
        let conv = self.id();
        let metrics = &engine.metrics;
        match msg {
            VisitorClient::Hello { id, .. } => {
                conn.error(metrics, Some(id), ErrorCode::OutOfOrder).await
            }
            VisitorClient::Send { id, text } => {
                if let Err(wait) = self.limiter.check() {
                    self.refusals += 1;
                    if self.refusals > FLOOD_REFUSALS {
                        metrics.error(ErrorCode::RateLimited.as_str());
                        tracing::info!(conversation = %conv, "visitor socket closed for flooding");
                        return Flow::Close(close::POLICY, "flooding");
                    }
                    self.throttled = Some(Box::pin(tokio::time::sleep(wait.0)));
                    // Counted with the socket's other refusals too: a flood paced to let one
                    // message through between refusals is closed after `MAX_ERRORS` of them.
                    return conn.rate_limited(metrics, Some(id), wait).await;
                }
                self.refusals = 0;
                let text = match validate_text(&text) {
                    Ok(t) => t,
                    Err(code) => return conn.error(metrics, Some(id), code).await,
                };
                match engine.visitor_send(conv, id, text).await {
                    Ok(seq) => conn.send(&ServerMsg::Ack { id, seq }).await,
                    Err(code) => conn.error(metrics, Some(id), code).await,
                }
            }
            VisitorClient::Typing { active, .. } => {
                // Typing indicators share the message allowance; over it they are dropped.
                if self.limiter.check().is_ok() {
                    engine.visitor_typing(conv, active).await;
                }
                Flow::Continue
            }
            VisitorClient::Ack { seq, .. } => {
                engine.ack(conv, Side::Visitor, seq).await;
                Flow::Continue
            }
            VisitorClient::End { id } => match engine.visitor_end(conv, id.ulid()).await {
                Ok(()) => conn.send(&ServerMsg::Ack { id, seq: None }).await,
                Err(code) => conn.error(metrics, Some(id), code).await,
            },
            VisitorClient::Ping { id } => conn.send(&ServerMsg::Pong { id }).await,
        }
    }
}
