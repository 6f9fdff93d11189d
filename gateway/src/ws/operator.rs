//! The operator endpoint, `GET /ws/operator`: a volunteer's console. Authenticated by the
//! session cookie before anything else happens; the session is re-checked on every heartbeat so
//! a revoked or expired session closes the socket (4010).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;

use super::socket::{Socket, Upgrade};
use super::{next_inbound, Conn, Flow, Inbound};
use crate::auth::User;
use crate::conversation::ConversationId;
use crate::engine::follower::{self, Follower};
use crate::engine::{OperatorProfile, Outbound};
use crate::protocol::{
    close, validate_text, ClientId, ErrorCode, EventFrame, GoneReason, OperatorClient,
    OperatorInfo, ServerMsg, Side, MAX_NOTE_CHARS, PROTOCOL_VERSION,
};
use crate::state::AppState;

pub async fn upgrade(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    ws: Upgrade,
) -> Response {
    if !super::origin_allowed(&headers, &app.settings.server) {
        tracing::info!("operator websocket refused: origin not allowed");
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let key = app.limits.key(app.limits.client_ip(peer, &headers));
    let Some(slot) = app.limits.open_connection(key) else {
        tracing::info!("operator websocket refused: too many connections from one address");
        return (StatusCode::TOO_MANY_REQUESTS, "too many connections").into_response();
    };
    let token = jar.get(app.session_cookie()).map(|c| c.value().to_owned());
    let user = match token.as_deref() {
        Some(t) => app.accounts.session_user(t).await,
        None => None,
    };
    let tracker = app.tracker.clone();
    ws.on_upgrade(move |socket| {
        tracker.track_future(async move {
            // The address's connection slot, held for the socket's life.
            let _slot = slot;
            run(app, *socket, user.zip(token)).await
        })
    })
}

pub async fn run(app: Arc<AppState>, socket: Socket, auth: Option<(User, String)>) {
    let heartbeat = Duration::from_millis(app.settings.server.heartbeat_ms);
    let mut conn = Conn::new(socket, heartbeat, "operator");
    let Some((user, token)) = auth else {
        conn.close(close::UNAUTHENTICATED, "not signed in").await;
        return;
    };
    let engine = Arc::clone(&app.engine);
    let metrics = Arc::clone(&engine.metrics);

    // Hello first.
    let last_seqs = loop {
        let inbound =
            tokio::time::timeout(heartbeat * 3, next_inbound::<OperatorClient>(&mut conn)).await;
        let flow = match inbound {
            Err(_) => Flow::Close(close::HEARTBEAT_TIMEOUT, "no hello"),
            Ok(Inbound::Frame(OperatorClient::Hello { v, last_seqs, id })) => {
                if v != PROTOCOL_VERSION {
                    let _ = conn
                        .error(&metrics, Some(id), ErrorCode::UnsupportedVersion)
                        .await;
                    Flow::Close(close::UNSUPPORTED_VERSION, "unsupported version")
                } else {
                    break last_seqs;
                }
            }
            Ok(Inbound::Frame(other)) => {
                conn.error(&metrics, Some(other.id()), ErrorCode::OutOfOrder)
                    .await
            }
            Ok(Inbound::Bad(id, code)) => conn.error(&metrics, id, code).await,
            Ok(Inbound::Alive) => Flow::Continue,
            Ok(Inbound::TooBig) => Flow::Close(close::TOO_BIG, "frame too large"),
            Ok(Inbound::TooSlow) => Flow::Close(close::TOO_SLOW, "too slow"),
            Ok(Inbound::Broken(code)) => Flow::Close(code, "websocket protocol violation"),
            Ok(Inbound::Gone) => return,
        };
        if let Flow::Close(code, reason) = flow {
            conn.close(code, reason).await;
            return;
        }
    };

    let profile = OperatorProfile {
        id: user.id,
        name: user.display_name.clone(),
        languages: user.languages.clone(),
        capacity: user
            .capacity
            .unwrap_or(app.settings.conversation.default_capacity),
        takes_calls: user.phone.is_some(),
    };
    let span = tracing::info_span!("operator", operator = %user.id);
    let queue = app.settings.server.socket_queue;
    let (mut follower, mut rx, too_slow) = Follower::operator(&*app, user.id, queue);
    let snapshot = match engine.operator_connected(&profile).await {
        Ok(s) => s,
        Err(_) => {
            drop(follower);
            conn.close(close::GOING_AWAY, "store unavailable").await;
            return;
        }
    };
    metrics.connection("operator", 1);
    tracing::info!(parent: &span, "operator connected");

    // Conversations held: the client's last seq, or the whole log for a fresh console.
    for c in &snapshot.held {
        follower.follow(
            c.id,
            last_seqs.get(&c.id).copied().unwrap_or(0).min(c.last_seq),
        );
    }
    let offers = snapshot.offers.iter().map(|o| o.conversation).collect();
    let mut session = Session {
        app: &app,
        user: &user,
        token: &token,
        follower,
        offers,
        limiter: app.limits.per_operator_connection(),
    };
    let welcome = ServerMsg::OperatorWelcome {
        v: PROTOCOL_VERSION,
        operator: OperatorInfo {
            id: user.id,
            name: user.display_name.clone(),
            role: user.role.as_str().to_owned(),
        },
        presence: snapshot.presence,
        capacity: snapshot.capacity,
        heartbeat_ms: app.settings.server.heartbeat_ms,
        categories: app.settings.conversation.categories.clone(),
        emergency_categories: match &engine.escalations {
            Some(_) => crate::conversation::EMERGENCY_CATEGORIES
                .map(String::from)
                .to_vec(),
            None => Vec::new(),
        },
        emergency_checklist: engine
            .escalations
            .as_ref()
            .map(|e| e.checklist().to_vec())
            .unwrap_or_default(),
        conversations: snapshot.held,
        offers: snapshot.offers,
        limits: crate::protocol::Limits::default(),
    };
    conn.begin_batch();
    let mut flow = conn.send(&welcome).await;
    let held: Vec<ConversationId> = session.follower.following().collect();
    for id in held {
        if flow == Flow::Continue {
            flow = session.catch_up(&mut conn, id).await;
        }
    }
    if flow == Flow::Continue {
        if let Ok(p) = engine.presence_frame(user.id).await {
            flow = conn.send(&p).await;
        }
    }
    let mut flow = super::finish_batch(&mut session, &mut conn, &mut rx, flow).await;

    let mut tick = tokio::time::interval(heartbeat);
    tick.reset();
    while flow == Flow::Continue {
        flow = tokio::select! {
            inbound = next_inbound::<OperatorClient>(&mut conn) => {
                conn.last_seen = std::time::Instant::now();
                match inbound {
                    Inbound::Frame(msg) => {
                        conn.begin_batch();
                        let flow = session.handle(&mut conn, msg).await;
                        super::finish_batch(&mut session, &mut conn, &mut rx, flow).await
                    }
                    Inbound::Bad(cid, code) => conn.error(&metrics, cid, code).await,
                    Inbound::Alive => Flow::Continue,
                    Inbound::TooBig => Flow::Close(close::TOO_BIG, "frame too large"),
                    Inbound::TooSlow => Flow::Close(close::TOO_SLOW, "too slow"),
                    Inbound::Broken(code) => Flow::Close(code, "websocket protocol violation"),
                    Inbound::Gone => break,
                }
            }
            out = rx.recv() => match out {
                Some(out) => super::deliver(&mut session, &mut conn, &mut rx, out).await,
                None => break,
            },
            _ = tick.tick() => {
                if app.accounts.session_live(&token).await {
                    conn.heartbeat_tick().await
                } else {
                    // Sessions are lost with the store's data: the console hears which of its
                    // conversations went with them before it is signed out.
                    session.tell_gone_now(&mut conn).await;
                    Flow::Close(close::REVOKED, "session ended")
                }
            }
            _ = too_slow.cancelled() => Flow::Close(close::TOO_SLOW, "too slow"),
            _ = app.shutdown.cancelled() => Flow::Close(close::GOING_AWAY, "server shutting down"),
        };
    }
    if let Flow::Close(code, reason) = flow {
        conn.close(code, reason).await;
    }
    // Unregistered first; the operator is marked gone only if no newer socket took over.
    if session.follower.leave() {
        engine.operator_disconnected(user.id).await;
    }
    metrics.connection("operator", -1);
    tracing::info!(parent: &span, "operator disconnected");
}

struct Session<'a> {
    app: &'a AppState,
    user: &'a User,
    /// The session token, to keep the session alive while the console is in use.
    token: &'a str,
    /// This socket's registration, and the highest seq sent per conversation this operator
    /// holds.
    follower: Follower<&'a AppState, follower::Operator>,
    /// Conversations offered to this operator and not yet accepted, withdrawn or gone (for
    /// [`Outbound::Recheck`]: an offer the store lost is never withdrawn).
    offers: HashSet<ConversationId>,
    /// Messages (and typing) of this console: the visitors' rule, with the operators' own,
    /// larger allowance (`limits.operator_messages_per_minute`).
    limiter: crate::limits::ConnectionLimiter,
}

impl super::Outbox for Session<'_> {
    async fn outbound(&mut self, conn: &mut Conn, out: Outbound) -> Flow {
        Session::outbound(self, conn, out).await
    }
}

impl Session<'_> {
    async fn catch_up(&mut self, conn: &mut Conn, id: ConversationId) -> Flow {
        let Ok(entries) = self.follower.catch_up(id).await else {
            return Flow::Continue;
        };
        for entry in entries {
            let flow = conn.send(&EventFrame::new(id, &entry)).await;
            if flow != Flow::Continue {
                return flow;
            }
        }
        Flow::Continue
    }

    /// The store may have lost conversations: each one this console follows (held or offered)
    /// that the store no longer has is queued again on this socket as [`Outbound::Gone`]. Queued,
    /// not told at once: a conversation that closed normally was released (queued) before it was
    /// deleted, so its release is handled first and it is not reported as lost.
    async fn recheck(&mut self) {
        for id in self.lost().await {
            // `Gone` stays on this node: it is queued on this socket (or its successor) only.
            self.app
                .engine
                .to_operator(self.user.id, Outbound::Gone(id));
        }
    }

    /// The conversations this console follows (held or offered) that the store no longer has.
    async fn lost(&self) -> Vec<ConversationId> {
        let mut lost = Vec::new();
        for id in self.follower.following().chain(self.offers.iter().copied()) {
            if let Ok(None) = self.app.engine.conversation(id).await {
                lost.push(id);
            }
        }
        lost
    }

    /// Tells the console that conversation `id`, if it follows it, is gone, and stops following.
    async fn send_gone(&mut self, conn: &mut Conn, id: ConversationId) -> Flow {
        let held = self.follower.unfollow(id);
        let offered = self.offers.remove(&id);
        if !(held || offered) {
            return Flow::Continue;
        }
        tracing::warn!(operator = %self.user.id, conversation = %id, "conversation gone from the store; the console is told");
        conn.send(&ServerMsg::Gone {
            conversation: id,
            reason: GoneReason::Lost,
        })
        .await
    }

    /// Before the socket closes: sends `gone` for each conversation it follows that the store
    /// no longer has.
    async fn tell_gone_now(&mut self, conn: &mut Conn) {
        for id in self.lost().await {
            let _ = self.send_gone(conn, id).await;
        }
    }

    async fn outbound(&mut self, conn: &mut Conn, out: Outbound) -> Flow {
        match out {
            Outbound::Wake(id) => self.catch_up(conn, id).await,
            Outbound::Hold(id) => {
                self.offers.remove(&id);
                self.follower.follow(id, 0);
                self.catch_up(conn, id).await
            }
            Outbound::Release(id) => {
                self.follower.unfollow(id);
                Flow::Continue
            }
            Outbound::Recheck => {
                if self.app.accounts.session_live(self.token).await {
                    self.recheck().await;
                    return Flow::Continue;
                }
                // The session went with the store's data: say what was lost, then sign the
                // console out now rather than at its next heartbeat, so the operator signs in
                // again (and is known to routing again) at once.
                self.tell_gone_now(conn).await;
                Flow::Close(close::REVOKED, "session ended")
            }
            Outbound::Gone(id) => self.send_gone(conn, id).await,
            // An operator socket has its own heartbeat timer.
            Outbound::Heartbeat | Outbound::Final(_) => Flow::Continue,
            Outbound::Frame(msg) => {
                match &*msg {
                    ServerMsg::Offer(o) => {
                        self.offers.insert(o.conversation);
                    }
                    ServerMsg::OfferWithdrawn { conversation, .. } => {
                        self.offers.remove(conversation);
                    }
                    _ => {}
                }
                conn.send(&msg).await
            }
            Outbound::Json(text) => conn.send_json(&text).await,
            Outbound::Close(code, reason) => Flow::Close(code, reason),
        }
    }

    fn reply(id: ClientId, result: Result<(), impl Into<ErrorCode>>) -> ServerMsg {
        match result {
            Ok(()) => ServerMsg::Ack { id, seq: None },
            Err(code) => ServerMsg::error(Some(id), code.into()),
        }
    }

    async fn handle(&mut self, conn: &mut Conn, msg: OperatorClient) -> Flow {
        let engine = &self.app.engine;
        let op = self.user.id;
        let name = self.user.display_name.as_str();
        let reply = match msg {
            OperatorClient::Hello { id, .. } => Self::reply(id, Err(ErrorCode::OutOfOrder)),
            OperatorClient::Ping { id } => {
                self.app.accounts.touch(self.token).await;
                ServerMsg::Pong { id }
            }
            OperatorClient::Presence { id, state } => match engine.set_presence(op, state).await {
                Ok(frame) => {
                    let flow = conn.send(&ServerMsg::Ack { id, seq: None }).await;
                    if flow != Flow::Continue {
                        return flow;
                    }
                    frame
                }
                Err(code) => ServerMsg::error(Some(id), code.into()),
            },
            OperatorClient::TakeNext { id } => match engine.take_next(op, id.ulid()).await {
                Ok(_) => ServerMsg::Ack { id, seq: None },
                Err(code) => ServerMsg::error(Some(id), code.into()),
            },
            OperatorClient::Accept { id, conversation } => {
                Self::reply(id, engine.accept(op, name, conversation, id.ulid()).await)
            }
            OperatorClient::Decline { id, conversation } => {
                Self::reply(id, engine.decline(op, conversation, id.ulid()).await)
            }
            OperatorClient::Send {
                id,
                conversation,
                text,
            } => {
                if let Err(wait) = self.limiter.check() {
                    // Refused and counted with the socket's other refusals (`MAX_ERRORS`).
                    return conn.rate_limited(&engine.metrics, Some(id), wait).await;
                }
                match validate_text(&text) {
                    Err(code) => ServerMsg::error(Some(id), code),
                    Ok(text) => match engine.operator_send(op, conversation, id, text).await {
                        Ok(seq) => ServerMsg::Ack { id, seq },
                        Err(code) => ServerMsg::error(Some(id), code.into()),
                    },
                }
            }
            OperatorClient::Typing {
                conversation,
                active,
                ..
            } => {
                // Typing indicators share the message allowance; over it they are dropped.
                if self.limiter.check().is_ok() {
                    engine.operator_typing(op, conversation, active).await;
                }
                return Flow::Continue;
            }
            OperatorClient::Ack {
                conversation, seq, ..
            } => {
                if self.follower.is_following(conversation) {
                    engine.ack(conversation, Side::Operator, seq).await;
                }
                return Flow::Continue;
            }
            OperatorClient::Transfer {
                id,
                conversation,
                to,
                note,
            } => {
                let note = note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
                if note
                    .as_ref()
                    .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS)
                {
                    ServerMsg::error(Some(id), ErrorCode::TextTooLong)
                } else {
                    Self::reply(
                        id,
                        engine.transfer(op, conversation, to, note, id.ulid()).await,
                    )
                }
            }
            OperatorClient::Help { id, conversation } => {
                Self::reply(id, engine.help(op, name, conversation).await)
            }
            OperatorClient::End { id, conversation } => {
                Self::reply(id, engine.operator_end(op, conversation, id.ulid()).await)
            }
            OperatorClient::WrapUp {
                id,
                conversation,
                category,
            } => Self::reply(
                id,
                engine.wrap_up(op, conversation, category, id.ulid()).await,
            ),
            OperatorClient::Flag {
                id,
                conversation,
                category,
                reason,
            } => Self::reply(
                id,
                engine
                    .flag(
                        Some(op),
                        &crate::escalation::Actor::account(op, name),
                        conversation,
                        category,
                        reason,
                        Some(id.ulid()),
                    )
                    .await,
            ),
        };
        if let ServerMsg::Error { code, .. } = &reply {
            engine.metrics.error(code.as_str());
        }
        conn.send(&reply).await
    }
}
