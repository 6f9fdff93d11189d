//! `POST /connectors/line/webhook/{channel}`: LINE's webhook for one channel.
//!
//! The story of one request: find the channel (404), check `x-line-signature` over the raw
//! body in constant time (401, and only that fact is logged), parse (400), drop events already
//! seen (`webhookEventId`), queue the rest for the inbound worker, answer 200. Nothing slow
//! happens before the answer: LINE wants it within 2 seconds. An empty `events` array is LINE's
//! connectivity check and gets 200 like any other.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

use super::events::{Callback, Event};
use super::{signature, Line};

/// The routes of the LINE connector, merged into the main router, with bodies up to `limit`
/// bytes (`line.max_body_bytes`). Without configured channels (`line` is `None`) every channel
/// path answers 404. The routes carry their own state, so the connector needs nothing of the
/// application's `AppState`.
pub fn router<S>(line: Option<Arc<Line>>, limit: usize) -> Router<S> {
    Router::new()
        .route(
            "/connectors/line/webhook/{channel}",
            post(webhook).layer(DefaultBodyLimit::max(limit)),
        )
        .with_state(line)
}

async fn webhook(
    State(line): State<Option<Arc<Line>>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    match line.as_ref() {
        Some(line) => line.receive(
            &channel,
            headers.get("x-line-signature").map(|v| v.as_bytes()),
            &body,
        ),
        None => StatusCode::NOT_FOUND,
    }
}

impl Line {
    /// Handles one webhook request; returns the status to answer.
    pub fn receive(&self, channel: &str, sig: Option<&[u8]>, body: &[u8]) -> StatusCode {
        let Some(ch) = self.channel(channel) else {
            tracing::warn!(bytes = body.len(), "LINE webhook for an unknown channel");
            return StatusCode::NOT_FOUND;
        };
        if !signature::verify(&ch.secret, body, sig) {
            tracing::warn!(
                channel = %ch.id,
                bytes = body.len(),
                signed = sig.is_some(),
                "LINE webhook refused: signature does not match"
            );
            return StatusCode::UNAUTHORIZED;
        }
        let callback: Callback = match serde_json::from_slice(body) {
            Ok(c) => c,
            Err(_) => {
                tracing::warn!(channel = %ch.id, bytes = body.len(), "LINE webhook body is not a callback object");
                return StatusCode::BAD_REQUEST;
            }
        };
        let total = callback.events.len();
        let (mut queued, mut duplicates, mut unreadable) = (0, 0, 0);
        for value in callback.events {
            let Some(event) = Event::parse(value) else {
                unreadable += 1;
                continue;
            };
            if self
                .seen
                .check_and_insert(&[&ch.id, &event.webhook_event_id])
            {
                duplicates += 1;
                continue;
            }
            if self.inbound.send((Arc::clone(ch), event)).is_ok() {
                queued += 1;
            }
        }
        tracing::info!(
            channel = %ch.id,
            bytes = body.len(),
            events = total,
            queued,
            duplicates,
            unreadable,
            "LINE webhook accepted"
        );
        StatusCode::OK
    }
}
