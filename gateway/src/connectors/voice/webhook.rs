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

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::twiml::Words;
use super::{call, client_id, signature, CallLink, Phase, Voice};
use crate::conversation::StateKind;
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

async fn incoming(Verified(hook, sid): Verified) -> Response {
    let voice = &hook.voice;
    let docs = voice.docs();
    let wait_url = format!("{}{WAIT}", hook.base);
    // The provider retried the webhook: the call is already ours.
    if let Some(link) = voice.link(&sid) {
        tracing::info!(conversation = %link.conversation, "voice incoming repeated");
        return xml(docs.hold(None, &wait_url));
    }
    let caller_id = voice
        .settings
        .caller_id
        .clone()
        .or_else(|| hook.get("To").map(str::to_owned))
        .filter(|c| !c.is_empty());
    let Some(caller_id) = caller_id else {
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
    let now = Instant::now();
    let link = CallLink {
        conversation: conv,
        phase: Phase::Waiting,
        base: hook.base.clone(),
        caller_id,
        waiting_since: now,
        last_hold: now,
    };
    // Which conversation the call is in, for every node (its status callback may reach
    // another one); deleted with the conversation.
    let shared = crate::store::PersonLink {
        conversation: conv,
        route: String::new(),
    };
    if let Err(e) = voice
        .engine
        .link_person(&voice.call_key(&sid), &shared, CALL_LINK_TTL_MS)
        .await
    {
        tracing::warn!(conversation = %conv, error = %e, "voice call link not shared");
    }
    call::spawn(voice, conv, sid, link);
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
    let now = Instant::now();
    let Some(link) = voice.link(&sid) else {
        // The conversation is over (or was never ours): end the call kindly.
        return xml(docs.goodbye());
    };
    voice.update_link(&sid, |l| l.last_hold = now);
    match link.phase {
        Phase::Waiting => {}
        Phase::Bridging | Phase::Bridged => {
            return xml(docs.hold(Some(Words::CONNECTING_SOON), &wait_url))
        }
        Phase::Ending => return xml(docs.goodbye()),
    }
    let conv = link.conversation;
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
    let waited = now.duration_since(link.waiting_since);
    let why = if waited.as_secs() >= voice.settings.max_wait_secs {
        Some(("max_wait", Words::TOO_LONG))
    } else if voice.engine.is_overloaded() {
        Some(("overloaded", Words::OVERLOADED))
    } else if voice.answerable().await == 0 {
        Some(("no_operator", Words::NOBODY_ON_DUTY))
    } else {
        None
    };
    if let Some((outcome, words)) = why {
        voice.update_link(&sid, |l| l.phase = Phase::Ending);
        let result = voice
            .engine
            .visitor_end(conv, client_id(&[&sid, "turned-away"]))
            .await;
        tracing::info!(
            conversation = %conv,
            outcome,
            waited_ms = waited.as_millis() as u64,
            ended = result.is_ok(),
            "voice caller told about other helplines; call ends"
        );
        return xml(docs.turn_away(words));
    }
    let position = announcement(voice, conv).await;
    xml(docs.hold(Some(&position), &wait_url))
}

async fn dial_done(Verified(hook, sid): Verified) -> Response {
    let voice = &hook.voice;
    let docs = voice.docs();
    let Some(link) = voice.link(&sid) else {
        return xml(docs.goodbye());
    };
    let conv = link.conversation;
    let dial_status = hook.get("DialCallStatus").unwrap_or_default().to_owned();
    if matches!(dial_status.as_str(), "completed" | "answered") || link.phase == Phase::Ending {
        // The operator's leg ended after a conversation: say goodbye. The status callback that
        // follows ends the conversation (to the operator's wrap-up).
        voice.update_link(&sid, |l| l.phase = Phase::Ending);
        tracing::info!(conversation = %conv, "voice call: operator's line ended");
        return xml(docs.goodbye());
    }
    // The operator did not answer (busy, no-answer, failed, canceled): back to the queue.
    voice.update_link(&sid, |l| l.phase = Phase::Waiting);
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
    let Some(link) = voice.link(&sid) else {
        // Followed by another node (or by none: its node died): the call's conversation ends
        // here all the same (the client id makes a repeat harmless).
        let key = voice.call_key(&sid);
        if let Ok(Some(shared)) = voice.engine.linked_person(&key).await {
            let conv = shared.conversation;
            let result = voice
                .engine
                .visitor_end(conv, client_id(&[&sid, "status-end"]))
                .await;
            let _ = voice.engine.unlink_person(&key, conv).await;
            tracing::info!(conversation = %conv, call_status = %call_status, ended = result.is_ok(), "voice call finished (followed by another node)");
            return StatusCode::NO_CONTENT.into_response();
        }
        tracing::debug!(call_status = %call_status, "voice status for a call no longer followed");
        return StatusCode::NO_CONTENT.into_response();
    };
    let conv = link.conversation;
    // Forget the call first: nothing may be sent to it any more.
    voice.forget(&sid, conv);
    let waiting = link.phase == Phase::Waiting;
    let result = voice
        .engine
        .visitor_end(conv, client_id(&[&sid, "status-end"]))
        .await;
    tracing::info!(
        conversation = %conv,
        call_status = %call_status,
        waiting,
        waited_ms = waiting.then(|| link.waiting_since.elapsed().as_millis() as u64),
        ended = result.is_ok(),
        "voice call finished"
    );
    StatusCode::NO_CONTENT.into_response()
}
