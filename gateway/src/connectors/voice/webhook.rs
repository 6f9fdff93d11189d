//! The provider's webhooks. Every request is checked first: its `X-Twilio-Signature` over the
//! external URL and the form parameters (403, and only that fact is logged), before any field
//! is used. Then:
//!
//! | path | when the provider calls it | answer |
//! | --- | --- | --- |
//! | `incoming` | a call arrives (the number's "a call comes in" webhook) | greeting, privacy notice, position, hold; or other helplines and hang-up when nobody can answer or the service is overloaded |
//! | `wait` | the hold loop comes back (`<Redirect>`) | the next position announcement and hold; other helplines and hang-up past the maximum wait, with nobody on duty, or in overloaded mode |
//! | `dial-done` | the operator's leg ended (`<Dial action>`) | goodbye after a conversation; back on hold if the operator did not answer |
//! | `status` | the call's status changed (the number's "call status changes" webhook) | 204; a finished call ends its conversation (abandoned if it was still waiting) |
//!
//! A callback repeated by the provider is harmless: a known call is not started twice, and the
//! engine calls carry client ids derived from the call SID and the event.
//!
//! Any node answers any of them: the call's conversation comes from the store (by the keyed
//! hash of the call SID), its phase and times from its shared record, and a node that had a
//! webhook of a call follows it ([`call::follow`]), ready to take the call's lease over.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::record::Change;
use super::twiml::Words;
use super::{call, client_id, signature, CallLink, Phase, Voice};
use crate::conversation::{ConversationId, StateKind};
use crate::protocol::{Channel, ServerMsg};

pub const INCOMING: &str = "/connectors/voice/incoming";
pub const WAIT: &str = "/connectors/voice/wait";
pub const DIAL_DONE: &str = "/connectors/voice/dial-done";
pub const STATUS: &str = "/connectors/voice/status";

/// How long the store keeps a call's link (a backstop: it goes with the conversation).
const CALL_LINK_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// What the phone webhooks need: the connector, when it is on, and the URL prefix the provider
/// is configured with (`voice.public_url`, else `server.public_url`), if any. The routes carry
/// this as their own state, so the connector needs nothing of the application's `AppState`.
pub struct Hooks {
    pub voice: Option<Arc<Voice>>,
    pub public_url: Option<String>,
}

/// The routes of the phone connector, merged into the main router, with bodies up to `limit`
/// bytes (`voice.max_body_bytes`). When the connector is off they answer 404.
pub fn router<S>(hooks: Hooks, limit: usize) -> Router<S> {
    Router::new()
        .route(INCOMING, post(incoming))
        .route(WAIT, post(wait))
        .route(DIAL_DONE, post(dial_done))
        .route(STATUS, post(status))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(Arc::new(hooks))
}

/// A verified webhook: its parameters and the URL prefix the provider used.
struct Hook {
    voice: Arc<Voice>,
    params: Vec<(String, String)>,
    base: String,
}

impl Hook {
    fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn xml(doc: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], doc).into_response()
}

/// The URL prefix the provider called: `voice.public_url`, else `server.public_url`, else the
/// request's `Host` over plain http (private setups and tests only).
fn public_base(app: &Hooks, headers: &HeaderMap) -> Option<String> {
    if let Some(u) = app.public_url.as_ref() {
        return Some(u.trim_end_matches('/').to_owned());
    }
    let host = headers.get(header::HOST)?.to_str().ok()?;
    Some(format!("http://{host}"))
}

/// Checks the signature; the parameters are parsed only to be signed, and used only after.
fn verify(app: &Hooks, headers: &HeaderMap, uri: &Uri, body: &[u8]) -> Result<Hook, StatusCode> {
    let Some(voice) = app.voice.clone() else {
        return Err(StatusCode::NOT_FOUND);
    };
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let Some(base) = public_base(app, headers) else {
        tracing::warn!(
            path = uri.path(),
            "voice webhook refused: no public URL and no Host"
        );
        return Err(StatusCode::FORBIDDEN);
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let sig = headers.get("x-twilio-signature").map(|v| v.as_bytes());
    if !signature::verify(&voice.auth_token, &format!("{base}{path}"), &params, sig) {
        tracing::warn!(
            path = uri.path(),
            bytes = body.len(),
            signed = sig.is_some(),
            "voice webhook refused: signature does not match"
        );
        return Err(StatusCode::FORBIDDEN);
    }
    Ok(Hook {
        voice,
        params,
        base,
    })
}

fn call_sid(hook: &Hook) -> Result<String, StatusCode> {
    match hook
        .get("CallSid")
        .filter(|s| !s.is_empty() && s.len() <= 64)
    {
        Some(s) => Ok(s.to_owned()),
        None => {
            tracing::warn!("voice webhook without a CallSid");
            Err(StatusCode::BAD_REQUEST)
        }
    }
}

/// A webhook whose signature checked out and that names its call: what every handler takes.
/// Anything else is answered before the handler runs (404 with the connector off, 403 on a bad
/// signature, 400 without a call SID, the body limit's 413).
struct Verified(Hook, String);

impl FromRequest<Arc<Hooks>> for Verified {
    type Rejection = Response;

    async fn from_request(req: Request, app: &Arc<Hooks>) -> Result<Self, Response> {
        let (uri, headers) = (req.uri().clone(), req.headers().clone());
        let body = Bytes::from_request(req, app)
            .await
            .map_err(IntoResponse::into_response)?;
        let hook = verify(app, &headers, &uri, &body).map_err(IntoResponse::into_response)?;
        let sid = call_sid(&hook).map_err(IntoResponse::into_response)?;
        Ok(Verified(hook, sid))
    }
}

/// The position announcement for a waiting conversation ("connecting soon" once offered).
async fn announcement(voice: &Voice, conv: crate::conversation::ConversationId) -> String {
    match voice.engine.position_of(conv).await {
        Some(ServerMsg::QueuePosition {
            position,
            wait_minutes,
            ..
        }) => Words::position(position, wait_minutes),
        _ => Words::CONNECTING_SOON.to_owned(),
    }
}

/// Caller id for the bridge: `voice.caller_id`, else the number the caller dialled (`To`).
fn caller_id_of(hook: &Hook) -> Option<String> {
    hook.voice
        .settings
        .caller_id
        .clone()
        .or_else(|| hook.get("To").map(str::to_owned))
        .filter(|c| !c.is_empty())
}

/// The conversation of call `sid`: followed here, or linked in the store by another node.
async fn conversation_of(voice: &Voice, sid: &str) -> Option<ConversationId> {
    if let Some(link) = voice.link(sid) {
        return Some(link.conversation);
    }
    let shared = voice.engine.linked_person(&voice.call_key(sid)).await;
    shared.ok().flatten().map(|l| l.conversation)
}

/// Follows call `sid` on this node too (if it does not already), so that it can take the
/// call's lease over should the node that follows it die.
fn follow_here(hook: &Hook, sid: &str, conv: ConversationId, phase: Phase) {
    if hook.voice.link(sid).is_some() {
        return;
    }
    let Some(caller_id) = caller_id_of(hook) else {
        return;
    };
    let link = CallLink {
        conversation: conv,
        phase,
        base: hook.base.clone(),
        caller_id,
    };
    call::follow(&hook.voice, conv, sid, link, false);
}

async fn incoming(Verified(hook, sid): Verified) -> Response {
    let voice = &hook.voice;
    let docs = voice.docs();
    let wait_url = format!("{}{WAIT}", hook.base);
    // The provider retried the webhook (to this node or another): the call is already ours.
    if let Some(conv) = conversation_of(voice, &sid).await {
        tracing::info!(conversation = %conv, "voice incoming repeated");
        follow_here(&hook, &sid, conv, Phase::Waiting);
        return xml(docs.hold(None, &wait_url));
    }
    let Some(caller_id) = caller_id_of(&hook) else {
        // Without it the operator's phone would show the caller's own number.
        tracing::warn!("voice incoming without `To` and no voice.caller_id: refused");
        return StatusCode::BAD_REQUEST.into_response();
    };
    if voice.engine.is_overloaded() {
        tracing::info!(
            outcome = "overloaded",
            "voice call turned away: the service is in overloaded mode"
        );
        return xml(docs.turn_away(Words::OVERLOADED));
    }
    if voice.answerable().await == 0 {
        tracing::info!(
            outcome = "no_operator",
            "voice call turned away: nobody on duty can answer"
        );
        return xml(docs.turn_away(Words::NOBODY_ON_DUTY));
    }
    let started = voice
        .engine
        .start_conversation(
            Channel::Phone,
            Some(voice.settings.language.clone()),
            voice.settings.priority,
        )
        .await;
    let conv = match started {
        Ok((conv, _token)) => conv.id,
        Err(err) => {
            tracing::error!(
                code = err.code().as_str(),
                "voice conversation could not start"
            );
            return xml(docs.turn_away(Words::NOBODY_ON_DUTY));
        }
    };
    // The route back, kept only for an escalation record should an operator flag one.
    let from = hook.get("From").unwrap_or_default();
    voice
        .engine
        .set_channel_ref(conv, format!("voice:{sid}:{from}"));
    // Where the call is (phase, times), for every node; deleted with the conversation.
    if let Err(e) = voice.open_record(conv, voice.engine.now_ms()).await {
        tracing::warn!(conversation = %conv, error = %e, "voice call record not shared");
    }
    // Which conversation the call is in, for every node (any may get its next webhook);
    // deleted with the conversation.
    let shared = crate::store::PersonLink {
        conversation: conv,
        route: String::new(),
    };
    match voice
        .engine
        .link_person(&voice.call_key(&sid), &shared, CALL_LINK_TTL_MS)
        .await
    {
        Ok(first) if first.conversation != conv => {
            // A repeated `incoming` raced the first on another node, which linked the call
            // first: this conversation goes, and the call is followed in that one.
            let cid = client_id(&[&sid, "started-twice"]);
            let _ = voice.engine.visitor_end(conv, cid).await;
            tracing::info!(conversation = %first.conversation, "voice incoming repeated on two nodes at once");
            follow_here(&hook, &sid, first.conversation, Phase::Waiting);
            return xml(docs.hold(None, &wait_url));
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(conversation = %conv, error = %e, "voice call link not shared");
        }
    }
    let link = CallLink {
        conversation: conv,
        phase: Phase::Waiting,
        base: hook.base.clone(),
        caller_id,
    };
    call::follow(voice, conv, &sid, link, true);
    tracing::info!(conversation = %conv, "voice call queued");
    // Let routing decide now whether someone is free, so a caller an operator is being offered
    // hears 「まもなく」 rather than a place in a queue they are already leaving. (The store's
    // dispatch is one atomic step: running it here beside the dispatcher task is safe.)
    voice.engine.dispatch_once().await;
    let position = announcement(voice, conv).await;
    xml(docs.welcome(Some(position), &wait_url))
}

async fn wait(Verified(hook, sid): Verified) -> Response {
    let voice = &hook.voice;
    let docs = voice.docs();
    let wait_url = format!("{}{WAIT}", hook.base);
    let now = voice.engine.now_ms();
    let Some(conv) = conversation_of(voice, &sid).await else {
        // The conversation is over (or was never ours): end the call kindly.
        return xml(docs.goodbye());
    };
    // The hold loop came back: noted for every node's watchdog.
    let rec = match voice
        .change(conv, |r| {
            r.last_hold = now;
            true
        })
        .await
    {
        Ok(Change::Made { before }) => before,
        Ok(Change::Kept(rec)) => rec,
        Ok(Change::Missing) => {
            voice.forget(&sid, conv);
            return xml(docs.goodbye());
        }
        Err(_) => return xml(docs.hold(None, &wait_url)),
    };
    follow_here(&hook, &sid, conv, rec.phase);
    match rec.phase {
        Phase::Waiting => {}
        Phase::Bridging => {
            if now.saturating_sub(rec.bridge_at) > voice.bridge_budget_ms() {
                bridge_lost(voice, &sid, conv, rec.bridge_at, now).await;
            }
            return xml(docs.hold(Some(Words::CONNECTING_SOON), &wait_url));
        }
        Phase::Bridged => return xml(docs.hold(Some(Words::CONNECTING_SOON), &wait_url)),
        Phase::Ending => return xml(docs.goodbye()),
    }
    let state = match voice.engine.conversation(conv).await {
        Ok(Some(c)) => c.state.kind(),
        Ok(None) => {
            voice.forget(&sid, conv);
            return xml(docs.goodbye());
        }
        Err(_) => return xml(docs.hold(None, &wait_url)),
    };
    if state != StateKind::Queued {
        // Being offered, or an operator just accepted: the bridge follows.
        return xml(docs.hold(Some(Words::CONNECTING_SOON), &wait_url));
    }
    let waited_ms = now.saturating_sub(rec.waiting_since);
    let why = if waited_ms / 1000 >= voice.settings.max_wait_secs {
        Some(("max_wait", Words::TOO_LONG))
    } else if voice.engine.is_overloaded() {
        Some(("overloaded", Words::OVERLOADED))
    } else if voice.answerable().await == 0 {
        Some(("no_operator", Words::NOBODY_ON_DUTY))
    } else {
        None
    };
    if let Some((outcome, words)) = why {
        let _ = voice.move_to(conv, Phase::Ending).await;
        let result = voice
            .engine
            .visitor_end(conv, client_id(&[&sid, "turned-away"]))
            .await;
        tracing::info!(
            conversation = %conv,
            outcome,
            waited_ms,
            ended = result.is_ok(),
            "voice caller told about other helplines; call ends"
        );
        return xml(docs.turn_away(words));
    }
    let position = announcement(voice, conv).await;
    xml(docs.hold(Some(&position), &wait_url))
}

/// The hold loop still comes back past a bridge's whole retry budget: the provider never took
/// the bridge (it would have replaced the loop), so the node that claimed it died before
/// sending it. The call goes back to the queue (once: the record changes first), for the
/// operator or a colleague to accept again.
async fn bridge_lost(voice: &Voice, sid: &str, conv: ConversationId, claimed: u64, now: u64) {
    let back = voice
        .change(conv, |r| {
            r.phase == Phase::Bridging && r.bridge_at == claimed && {
                r.phase = Phase::Waiting;
                r.last_hold = now;
                true
            }
        })
        .await;
    if !back.is_ok_and(|c| c.made()) {
        return;
    }
    let holder = match voice.engine.conversation(conv).await {
        Ok(Some(c)) if c.state.kind() == StateKind::Active => c.state.operator(),
        _ => None,
    };
    let requeued = match holder {
        Some(op) => {
            let cid = client_id(&[sid, "bridge-lost", &claimed.to_string()]);
            voice
                .engine
                .transfer(op, conv, None, None, cid)
                .await
                .is_ok()
        }
        None => false,
    };
    tracing::warn!(conversation = %conv, requeued, "voice bridge never reached the provider (its node stopped); back to the queue");
}

async fn dial_done(Verified(hook, sid): Verified) -> Response {
    let voice = &hook.voice;
    let docs = voice.docs();
    let Some(conv) = conversation_of(voice, &sid).await else {
        return xml(docs.goodbye());
    };
    let dial_status = hook.get("DialCallStatus").unwrap_or_default().to_owned();
    let answered = matches!(dial_status.as_str(), "completed" | "answered");
    let now = voice.engine.now_ms();
    let changed = voice
        .change(conv, |r| {
            if r.phase == Phase::Ending {
                return false;
            }
            if answered {
                r.phase = Phase::Ending;
            } else {
                r.phase = Phase::Waiting;
                r.last_hold = now;
            }
            true
        })
        .await;
    let ending = match &changed {
        Ok(Change::Kept(_)) | Ok(Change::Missing) => true,
        _ => answered,
    };
    if ending {
        // The operator's leg ended after a conversation: say goodbye. The status callback that
        // follows ends the conversation (to the operator's wrap-up).
        tracing::info!(conversation = %conv, "voice call: operator's line ended");
        return xml(docs.goodbye());
    }
    follow_here(&hook, &sid, conv, Phase::Waiting);
    // The operator did not answer (busy, no-answer, failed, canceled): back to the queue.
    let holder = match voice.engine.conversation(conv).await {
        Ok(Some(c)) if c.state.kind() == StateKind::Active => c.state.operator(),
        _ => None,
    };
    if let Some(op) = holder {
        let cid = client_id(&[
            &sid,
            "dial-done",
            hook.get("DialCallSid").unwrap_or_default(),
        ]);
        let requeued = voice.engine.transfer(op, conv, None, None, cid).await;
        tracing::warn!(
            conversation = %conv,
            operator = %op,
            dial_status = %dial_status,
            requeued = requeued.is_ok(),
            "voice call: the operator's line did not answer; back to the queue"
        );
    }
    xml(docs.rehold(Words::NOT_ANSWERED, &format!("{}{WAIT}", hook.base)))
}

async fn status(Verified(hook, sid): Verified) -> Response {
    let voice = &hook.voice;
    let call_status = hook.get("CallStatus").unwrap_or_default().to_owned();
    if !matches!(
        call_status.as_str(),
        "completed" | "busy" | "no-answer" | "canceled" | "failed"
    ) {
        tracing::debug!(call_status = %call_status, "voice status: call still up");
        return StatusCode::NO_CONTENT.into_response();
    }
    let Some(conv) = conversation_of(voice, &sid).await else {
        tracing::debug!(call_status = %call_status, "voice status for a call no longer followed");
        return StatusCode::NO_CONTENT.into_response();
    };
    // Forget the call first: nothing may be sent to it any more (on any node: its record says
    // it is ending).
    voice.forget(&sid, conv);
    let before = match voice.move_to(conv, Phase::Ending).await {
        Ok(Change::Made { before }) | Ok(Change::Kept(before)) => Some(before),
        _ => None,
    };
    let waiting = before.as_ref().is_some_and(|r| r.phase == Phase::Waiting);
    let result = voice
        .engine
        .visitor_end(conv, client_id(&[&sid, "status-end"]))
        .await;
    let _ = voice
        .engine
        .unlink_person(&voice.call_key(&sid), conv)
        .await;
    tracing::info!(
        conversation = %conv,
        call_status = %call_status,
        waiting,
        waited_ms = before
            .filter(|_| waiting)
            .map(|r| voice.engine.now_ms().saturating_sub(r.waiting_since)),
        ended = result.is_ok(),
        "voice call finished"
    );
    StatusCode::NO_CONTENT.into_response()
}
