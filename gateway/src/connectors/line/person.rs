//! One LINE person's live conversation: the connector's stand-in for a visitor socket.
//!
//! Two tasks per conversation:
//! - the **follower** ([`Person`], beside the engine's [`Follower`], which registers it as
//!   the conversation's visitor and keeps its cursor). It reads promptly (so the registry
//!   never finds its queue full), gets the log entries after its cursor on every wake
//!   ([`Follower::deliver`], the catch-up shared with the phone connector), and turns what the
//!   person must hear into jobs: operator messages, "someone is here now", the closing
//!   message, the loading indicator, mark-as-read once the operator has acknowledged a message.
//! - the **sender** (`super::sender`) performs the jobs one at a time, in order, with the
//!   Messaging API (retries and backoff in [`super::client`]). A slow or failing LINE API delays only this person's
//!   messages, and never the follower.
//!
//! An operator's message is never given up while the conversation lives and the gateway runs:
//! on 429, 5xx or a network error its push is retried (same retry key, capped backoff), and the
//! jobs after it wait. Once the conversation has ended it gets the bounded budget of a notice.
//! If LINE refuses it for good (a 4xx other than 409 and 429), or it could not be delivered
//! after the end, the operator holding the conversation gets an `error` frame (`unavailable`)
//! carrying the message's client id, so the console marks that message as not delivered.
//!
//! Memory: the job queue holds at most one job per log entry of the conversation (operator
//! messages and notices, each text bounded by the engine's text limit), plus at most one
//! pending loading indicator and one mark-as-read per message of the person. The engine bounds
//! how many entries a conversation can have (message rate limits, idle and maximum duration),
//! so a LINE outage grows the queue by at most what the operator writes during it.
//!
//! Several nodes: each node that has had a webhook of the person runs both tasks, but only the
//! holder of the conversation's sender lease ([`super::keys::sender_lease`], renewed every
//! [`SENDER_LEASE_RENEW_MS`]) turns log entries into jobs; the others follow only to notice
//! the end, and to be ready. Its sender moves the shared cursor ([`Engine::sent_through`])
//! past each entry once it is handled. A node that takes the lease (its holder died) reads the
//! log from the start to know what the person heard, and sends from the shared cursor on: an
//! entry pushed but not yet counted is pushed again under the same retry key, which LINE
//! answers with 409, so it lands once. What a webhook brings (reply and mark-as-read tokens,
//! the notices it causes) is used by the node that got it, leader or not.
//!
//! The LINE user id lives only here and in the connector's map of live conversations, both in
//! memory; both forget it when the conversation ends.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

use super::client::retry_key;
use super::notices::Notices;
use super::sender::{Job, Sender};
use super::{keys, ChannelCtx, Line, SENDER_LEASE_MS, SENDER_LEASE_RENEW_MS};
use crate::conversation::ConversationId;
use crate::engine::follower::{Entries, Follower};
use crate::engine::registry::Inbox;
use crate::engine::{Engine, Outbound};
use crate::protocol::{EventBody, LeftReason, LogEntry, ServerMsg, Side};

/// A reply token and when it arrived. No `Debug`: the token must not reach a log.
pub struct ReplyToken {
    pub value: String,
    pub received: Instant,
}

impl ReplyToken {
    pub fn new(value: String) -> Self {
        ReplyToken {
            value,
            received: Instant::now(),
        }
    }
}

/// What the inbound side (webhook events) tells a conversation's follower.
pub enum Control {
    /// Notices for the person, through this reply token while fresh, else by push under the
    /// retry key made of `key`.
    Notice {
        reply: Option<ReplyToken>,
        texts: Vec<String>,
        key: String,
    },
    /// An unused reply token: the next notice may use it.
    FreshToken(ReplyToken),
    /// The person's message `seq` may be marked read with this token once the operator has
    /// acknowledged it.
    ReadToken { seq: u64, token: String },
    /// The conversation is gone without an `ended` entry reaching us: stop.
    Stop,
}

/// The connector's handle on a live conversation (kept in `Line::people`).
pub struct Link {
    pub conversation: ConversationId,
    pub ctl: mpsc::UnboundedSender<Control>,
    /// Set when the person blocked the account: nothing more can reach them.
    pub blocked: Arc<AtomicBool>,
    /// The person has been told once in this conversation that only text is read.
    pub told_text_only: bool,
    /// LINE message ids that were stored in two parts (text over the gateway's limit).
    pub split: Vec<String>,
}

/// Starts the follower and sender of a new conversation and registers the follower as its
/// visitor. Returns the link for the connector's map.
pub fn spawn(line: &Arc<Line>, ch: &Arc<ChannelCtx>, conv: ConversationId, user: String) -> Link {
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let (job_tx, job_rx) = mpsc::unbounded_channel();
    let blocked = Arc::new(AtomicBool::new(false));
    // Cancelled when the follower stops (the conversation ended, or shutdown).
    let live = CancellationToken::new();
    let loading_queued = Arc::new(AtomicBool::new(false));
    let (follower, rx, too_slow) =
        Follower::person(Arc::clone(&line.engine), conv, line.socket_queue);

    let person = Person {
        line: Arc::clone(line),
        ch: Arc::clone(ch),
        conv,
        person_key: keys::person_key(ch, &user),
        leader: false,
        replay_through: 0,
        ended: false,
        blocked: Arc::clone(&blocked),
        joined_before: false,
        pending_read: VecDeque::new(),
        jobs: job_tx,
        live: live.clone(),
        loading_queued: Arc::clone(&loading_queued),
    };
    line.tracker
        .spawn(person.run(follower, rx, too_slow, ctl_rx));
    let sender = Sender {
        line: Arc::clone(line),
        ch: Arc::clone(ch),
        conv,
        user,
        stash: None,
        last_loading: None,
        blocked: Arc::clone(&blocked),
        live,
        loading_queued,
    };
    line.tracker.spawn(sender.run(job_rx));
    Link {
        conversation: conv,
        ctl: ctl_tx,
        blocked,
        told_text_only: false,
        split: Vec::new(),
    }
}

/// The follower task's state; its registration and cursor are the [`Follower`] beside it.
struct Person {
    line: Arc<Line>,
    ch: Arc<ChannelCtx>,
    conv: ConversationId,
    /// The person's name in the store ([`keys::person_key`]), to unlink at the end.
    person_key: String,
    /// This node holds the conversation's sender lease: it sends what the log says.
    leader: bool,
    /// After taking the lease: entries up to this seq were handled by a sender before (they
    /// only tell this one what the person heard).
    replay_through: u64,
    /// The conversation ended (not only stopped being followed here, as at shutdown).
    ended: bool,
    /// Set when the person blocked the account (shared with the sender and the link).
    blocked: Arc<AtomicBool>,
    /// An operator joined before (a later join is a transfer).
    joined_before: bool,
    /// The person's messages with a mark-as-read token, oldest first, not yet marked.
    pending_read: VecDeque<(u64, String)>,
    jobs: mpsc::UnboundedSender<Job>,
    /// Cancelled when this follower stops: the sender's unlimited retries end then.
    live: CancellationToken,
    /// A loading-indicator job is queued and not yet performed (at most one at a time).
    loading_queued: Arc<AtomicBool>,
}

/// The engine's side of a LINE person: registered as the conversation's visitor.
type PersonFollower = Follower<Arc<Engine>>;

impl Person {
    async fn run(
        mut self,
        mut follower: PersonFollower,
        mut rx: Inbox,
        mut too_slow: CancellationToken,
        mut ctl: mpsc::UnboundedReceiver<Control>,
    ) {
        let span = tracing::info_span!("line", conversation = %self.conv, channel = %self.ch.id);
        tracing::info!(parent: &span, "LINE conversation followed");
        let poll = Duration::from_millis(self.line.settings.read_poll_ms.max(10));
        let shutdown = self.line.shutdown.clone();
        let mut lease = tokio::time::interval(Duration::from_millis(SENDER_LEASE_RENEW_MS));
        lease.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let ended = tokio::select! {
                // Control first: a notice queued before an engine step is sent before what
                // that step produces.
                biased;
                c = ctl.recv() => match c {
                    Some(Control::Stop) | None => break,
                    Some(c) => { self.control(c).await; false }
                },
                out = rx.recv() => match out {
                    Some(out) => self.outbound(&mut follower, out).await,
                    None => break,
                },
                _ = too_slow.cancelled() => {
                    // Should not happen (this loop only queues jobs), but if it does: a fresh
                    // handle, and a catch-up read so nothing is missed.
                    tracing::warn!(parent: &span, "LINE follower fell behind; re-registering");
                    (rx, too_slow) = follower.reregister(self.line.socket_queue);
                    self.catch_up(&mut follower).await
                }
                _ = lease.tick() => self.check_lease(&mut follower).await,
                _ = tokio::time::sleep(poll), if !self.pending_read.is_empty() => {
                    self.check_read().await;
                    false
                }
                _ = shutdown.cancelled() => break,
            };
            if ended {
                self.ended = true;
                break;
            }
        }
        self.live.cancel();
        follower.leave();
        self.line.forget(&self.ch.id, self.conv);
        if self.ended {
            // For every node: the person's next message starts a new conversation.
            let engine = &self.line.engine;
            if let Err(e) = engine.unlink_person(&self.person_key, self.conv).await {
                tracing::warn!(parent: &span, error = %e, "LINE link could not be removed");
            }
        }
        if self.leader {
            let _ = self
                .line
                .engine
                .release(&keys::sender_lease(self.conv))
                .await;
        }
        tracing::info!(parent: &span, "LINE conversation no longer followed");
    }

    async fn control(&mut self, c: Control) {
        match c {
            Control::Notice { reply, texts, key } => self.job(Job::Send {
                texts,
                key: retry_key(&[&self.conv.to_string(), &key]),
                via_reply: true,
                reply,
                what: "notice",
                seq: None,
                operator_msg: None,
            }),
            Control::FreshToken(t) => self.job(Job::FreshToken(t)),
            Control::ReadToken { seq, token } => {
                self.pending_read.push_back((seq, token));
                self.check_read().await;
            }
            Control::Stop => {}
        }
    }

    fn job(&self, job: Job) {
        // The sender only stops after the follower; a send error means shutdown.
        let _ = self.jobs.send(job);
    }

    /// Handles one item from the engine; true when the conversation ended for the person.
    async fn outbound(&mut self, follower: &mut PersonFollower, out: Outbound) -> bool {
        match out {
            Outbound::Wake(_) | Outbound::Hold(_) => self.catch_up(follower).await,
            Outbound::Frame(msg) => match *msg {
                ServerMsg::Event { seq, at, event, .. } => {
                    follower
                        .deliver_live(LogEntry { seq, at, event }, self)
                        .await
                }
                ServerMsg::Typing {
                    from: Side::Operator,
                    active: true,
                    ..
                } => {
                    // One pending indicator is enough (LINE may be slow or down meanwhile).
                    if self.leader && !self.loading_queued.swap(true, Ordering::SeqCst) {
                        self.job(Job::Loading);
                    }
                    false
                }
                // Queue positions change often; the person heard theirs when they joined.
                _ => false,
            },
            Outbound::Final(entries) => {
                for entry in *entries {
                    if follower.deliver_live(entry, self).await {
                        return true;
                    }
                }
                false
            }
            Outbound::Json(_) | Outbound::Release(_) | Outbound::Heartbeat | Outbound::Recheck => {
                false
            }
            Outbound::Close(..) => true,
            Outbound::Gone(_) => {
                // The store lost the conversation: say so, how to start again (the next
                // message starts a new one, as this follower stops), and other helplines.
                if self.leader && !self.blocked.load(Ordering::SeqCst) {
                    let notices = Notices::for_language(&self.ch.language);
                    let conv = self.conv.to_string();
                    self.job(Job::Send {
                        texts: vec![
                            notices.gone(&self.line.engine.closing_helplines(&self.ch.language))
                        ],
                        key: retry_key(&[&conv, "gone"]),
                        via_reply: true,
                        reply: None,
                        what: "notice",
                        seq: None,
                        operator_msg: None,
                    });
                }
                true
            }
        }
    }

    /// Handles every log entry after the cursor; true when the conversation ended.
    async fn catch_up(&mut self, follower: &mut PersonFollower) -> bool {
        follower.deliver(self).await
    }

    /// Renews this node's sender lease, or takes it if its holder stopped renewing it (then
    /// reads the log from the start: [`Person::replay_through`]). A store that cannot be
    /// reached counts as the lease lost. True when the conversation ended.
    async fn check_lease(&mut self, follower: &mut PersonFollower) -> bool {
        let engine = &self.line.engine;
        let task = keys::sender_lease(self.conv);
        let held = engine.lead(&task, SENDER_LEASE_MS).await.unwrap_or(false);
        if !held {
            if self.leader {
                tracing::warn!(conversation = %self.conv, "LINE sender lease lost; another node sends");
                self.leader = false;
            }
            return false;
        }
        if self.leader {
            return false;
        }
        let Ok(sent) = engine.sent_through(self.conv).await else {
            return false;
        };
        tracing::info!(conversation = %self.conv, sent, "LINE sender lease taken; this node sends");
        // The person is reached through this node now: if the node that sent before died, the
        // nodes' reaper must not take the person for gone with it.
        engine.visitor_connection(self.conv, true).await;
        self.leader = true;
        self.replay_through = sent;
        self.joined_before = false;
        follower.set_cursor(0);
        follower.deliver(self).await
    }

    /// Handles one new log entry (the follower hands out each once, in order); true when the
    /// conversation ended.
    fn handle_entry(&mut self, entry: LogEntry) -> bool {
        if !self.leader || entry.seq <= self.replay_through {
            // Another node sends (or sent) this one: only note what the person heard.
            match entry.event {
                EventBody::OperatorJoined { .. } => self.joined_before = true,
                EventBody::Ended { .. } => return true,
                _ => {}
            }
            return false;
        }
        let notices = Notices::for_language(&self.ch.language);
        let conv = self.conv.to_string();
        let seq = entry.seq.to_string();
        let notice = |text: String| Job::Send {
            texts: vec![text],
            key: retry_key(&[&conv, "entry", &seq]),
            via_reply: true,
            reply: None,
            what: "notice",
            seq: Some(entry.seq),
            operator_msg: None,
        };
        match entry.event {
            EventBody::Message {
                from: Side::Operator,
                id,
                text,
                ..
            } => self.job(Job::Send {
                texts: vec![text],
                key: retry_key(&[&conv, "entry", &seq]),
                via_reply: false,
                reply: None,
                what: "operator message",
                seq: Some(entry.seq),
                operator_msg: Some(id),
            }),
            EventBody::OperatorJoined { .. } => {
                let text = if self.joined_before {
                    notices.joined_again
                } else {
                    notices.joined
                };
                self.joined_before = true;
                self.job(notice(text.to_owned()));
            }
            EventBody::OperatorLeft {
                reason: LeftReason::Requeued,
            } => self.job(notice(notices.requeued.to_owned())),
            EventBody::Ended { .. } => {
                if !self.blocked.load(Ordering::SeqCst) {
                    let helplines = self.line.engine.closing_helplines(&self.ch.language);
                    self.job(notice(notices.closing(&helplines)));
                }
                return true;
            }
            // The person's own messages, retractions, transfers: nothing to tell them.
            _ => {}
        }
        false
    }

    /// Marks read the newest pending message the operator has acknowledged.
    async fn check_read(&mut self) {
        let acked = match self.line.engine.conversation(self.conv).await {
            Ok(Some(c)) => c.operator_acked,
            Ok(None) => {
                self.pending_read.clear();
                return;
            }
            Err(_) => return,
        };
        let mut newest = None;
        while self.pending_read.front().is_some_and(|(s, _)| *s <= acked) {
            newest = self.pending_read.pop_front();
        }
        if let Some((_, token)) = newest {
            // Marking a message read marks everything before it read too.
            self.job(Job::MarkRead(token));
        }
    }
}

/// What the follower hands a LINE person: each new log entry once, in order, and after a
/// catch-up a look at the messages waiting to be marked read.
impl Entries for Person {
    const KIND: &'static str = "LINE";

    async fn entry(&mut self, entry: LogEntry) -> bool {
        self.handle_entry(entry)
    }

    async fn caught_up(&mut self) {
        if !self.pending_read.is_empty() {
            self.check_read().await;
        }
    }
}

/// A client id for something that came from LINE, derived from LINE's own id so a redelivery
/// (or the same message seen twice) maps to the same client id and is applied once.
pub fn client_id(parts: &[&str]) -> Ulid {
    Ulid::from_bytes(crate::connectors::derived_bytes(
        b"tsunagu/line/client-id",
        parts,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_deterministic_and_distinct() {
        assert_eq!(client_id(&["c", "m1"]), client_id(&["c", "m1"]));
        assert_ne!(client_id(&["c", "m1"]), client_id(&["c", "m2"]));
        assert_ne!(client_id(&["c1", "m"]), client_id(&["c", "1m"]));
    }
}
