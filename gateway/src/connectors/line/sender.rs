//! A LINE conversation's sender: performs the follower's jobs one at a time, in order, with the
//! Messaging API ([`super::client`]: retries and backoff), so a slow or failing LINE API delays
//! only this person's messages, and never the follower. Once an entry of the log is handled
//! (sent, or refused for good) it moves the conversation's shared cursor past it, from which a
//! node that takes over the sender lease goes on ([`super::person`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::client::Outcome;
use super::person::ReplyToken;
use super::{ChannelCtx, Line};
use crate::conversation::ConversationId;
use crate::engine::Outbound;
use crate::protocol::{ErrorCode, ServerMsg};

/// What the follower asks the sender to do, in order.
pub(super) enum Job {
    /// Send texts; `via_reply` allows a fresh reply token (notices), else push only (operator
    /// messages: the retry key is what makes them exactly-once).
    Send {
        texts: Vec<String>,
        key: String,
        via_reply: bool,
        reply: Option<ReplyToken>,
        what: &'static str,
        seq: Option<u64>,
        /// An operator's message: its client id. Such a push is retried while the
        /// conversation lives, and the operator is told if LINE does not take it.
        operator_msg: Option<crate::protocol::ClientId>,
    },
    FreshToken(ReplyToken),
    Loading,
    MarkRead(String),
}

pub(super) struct Sender {
    pub(super) line: Arc<Line>,
    pub(super) ch: Arc<ChannelCtx>,
    pub(super) conv: ConversationId,
    /// The LINE user id: the route back. Dropped with this task when the conversation ends.
    pub(super) user: String,
    /// The freshest unused reply token.
    pub(super) stash: Option<ReplyToken>,
    pub(super) last_loading: Option<Instant>,
    pub(super) blocked: Arc<AtomicBool>,
    /// Cancelled when the conversation is no longer followed.
    pub(super) live: CancellationToken,
    pub(super) loading_queued: Arc<AtomicBool>,
}

impl Sender {
    pub(super) async fn run(mut self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = jobs.recv().await {
            if self.line.shutdown.is_cancelled() {
                break;
            }
            let entry = match &job {
                Job::Send { seq, .. } => *seq,
                _ => None,
            };
            self.perform(job).await;
            if let Some(seq) = entry {
                if self.line.shutdown.is_cancelled() {
                    // Cut short: the node that takes over sends it.
                    break;
                }
                // Handled (sent, or refused for good): a sender that takes over starts after.
                if let Err(e) = self.line.engine.set_sent_through(self.conv, seq).await {
                    tracing::warn!(conversation = %self.conv, error = %e, "LINE sent cursor not shared");
                }
            }
        }
    }

    fn fresh(&self, t: &ReplyToken) -> bool {
        t.received.elapsed() < Duration::from_millis(self.line.settings.reply_token_ttl_ms)
    }

    async fn perform(&mut self, job: Job) {
        let api = &self.line.api;
        let token = &self.ch.token;
        match job {
            Job::FreshToken(t) => self.stash = Some(t),
            Job::Loading => {
                self.loading_queued.store(false, Ordering::SeqCst);
                let secs = self.line.settings.loading_seconds;
                // Once per half period is enough: the indicator stays up for `secs`.
                let recent = self
                    .last_loading
                    .is_some_and(|t| t.elapsed() < Duration::from_secs(u64::from(secs) / 2));
                if !recent && !self.blocked.load(Ordering::SeqCst) {
                    self.last_loading = Some(Instant::now());
                    api.loading(token, &self.user, secs).await;
                }
            }
            Job::MarkRead(mark) => {
                let outcome = api.mark_read(token, &mark).await;
                tracing::debug!(conversation = %self.conv, ok = outcome.delivered(), "LINE mark as read");
            }
            Job::Send {
                texts,
                key,
                via_reply,
                reply,
                what,
                seq,
                operator_msg,
            } => {
                if self.blocked.load(Ordering::SeqCst) {
                    tracing::info!(conversation = %self.conv, what, seq, "not sent: the person blocked the account");
                    return;
                }
                if via_reply {
                    let candidate = reply.or_else(|| self.stash.take());
                    if let Some(t) = candidate.filter(|t| self.fresh(t)) {
                        let outcome = api.reply(token, &t.value, &texts).await;
                        if outcome.delivered() {
                            tracing::info!(conversation = %self.conv, what, seq, via = "reply", "sent to LINE");
                            return;
                        }
                        // Expired or refused: fall back to push below.
                    }
                }
                let started = Instant::now();
                let outcome = match operator_msg {
                    Some(_) => {
                        api.push_until_accepted(token, &self.user, &texts, &key, &self.live)
                            .await
                    }
                    None => api.push(token, &self.user, &texts, &key).await,
                };
                let ms = started.elapsed().as_millis() as u64;
                match outcome {
                    Outcome::Delivered | Outcome::AlreadyAccepted => {
                        tracing::info!(conversation = %self.conv, what, seq, via = "push", ms, "sent to LINE")
                    }
                    Outcome::Rejected(status) => tracing::error!(
                        conversation = %self.conv, what, seq, status, ms,
                        "NOT delivered to LINE: the API refused it"
                    ),
                    Outcome::GaveUp => tracing::error!(
                        conversation = %self.conv, what, seq, ms,
                        "NOT delivered to LINE: retries exhausted"
                    ),
                }
                if let Some(id) = operator_msg {
                    if !outcome.delivered() && !self.line.shutdown.is_cancelled() {
                        self.tell_operator(id).await;
                    }
                }
            }
        }
    }

    /// Tells the operator holding the conversation that their message `id` did not reach the
    /// person: an `error` frame with its client id, which the console shows on that message.
    async fn tell_operator(&self, id: crate::protocol::ClientId) {
        let engine = &self.line.engine;
        let op = match engine.conversation(self.conv).await {
            Ok(Some(conv)) => conv.state.operator(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(conversation = %self.conv, error = %e, "could not look up the operator to tell");
                None
            }
        };
        let Some(op) = op else {
            tracing::warn!(conversation = %self.conv, "no operator holds the conversation to tell of an undelivered message");
            return;
        };
        engine.to_operator(
            op,
            Outbound::frame(ServerMsg::Error {
                id: Some(id),
                code: ErrorCode::Unavailable,
                message: "LINE did not accept this message".into(),
                retry_after_ms: None,
            }),
        );
    }
}
