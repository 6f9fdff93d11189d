//! One live call: the connector's stand-in for a visitor socket.
//!
//! Two tasks per call:
//! - the **follower** ([`Call`], beside the engine's [`Follower`], which registers it as the
//!   conversation's visitor and keeps its cursor). On every wake it gets the log entries after
//!   its cursor ([`Follower::deliver`], the catch-up shared with LINE): an operator joined →
//!   bridge the call to them; the operator left (requeued or transferred) → back on hold;
//!   ended → a polite hang-up if the call is still up. Once a second it also checks that a
//!   waiting call's hold loop still comes back (a lost status callback must not leave a ghost
//!   in the queue).
//! - the **sender** performs the REST calls one at a time, in order ([`super::client`]), so a
//!   slow provider delays only this call, and never the follower.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::client::Outcome;
use super::twiml::Words;
use super::webhook::{DIAL_DONE, WAIT};
use super::{client_id, CallLink, Phase, Voice};
use crate::conversation::{ConversationId, OperatorId};
use crate::engine::follower::{Entries, Follower};
use crate::engine::registry::Inbox;
use crate::engine::{Engine, Outbound};
use crate::protocol::{EndReason, EventBody, LogEntry, ServerMsg, Side};

/// A REST call for the sender.
struct Job {
    op: &'static str,
    twiml: String,
    /// For a bridge: the operator it goes to (requeued if the bridge cannot be made).
    bridge_to: Option<OperatorId>,
}

/// Registers the follower of a new call as its conversation's visitor, remembers the call and
/// starts its tasks.
pub fn spawn(voice: &Arc<Voice>, conv: ConversationId, call_sid: String, link: CallLink) {
    voice.calls().insert(call_sid.clone(), link);
    let (follower, rx, too_slow) =
        Follower::person(Arc::clone(&voice.engine), conv, voice.socket_queue);
    let (jobs, job_rx) = mpsc::unbounded_channel();
    let call = Call {
        voice: Arc::clone(voice),
        conv,
        call_sid: call_sid.clone(),
        jobs,
    };
    voice.tracker.spawn(call.run(follower, rx, too_slow));
    let sender = Sender {
        voice: Arc::clone(voice),
        conv,
        call_sid,
    };
    voice.tracker.spawn(sender.run(job_rx));
}

/// The follower task's state; its registration and cursor are the [`Follower`] beside it.
struct Call {
    voice: Arc<Voice>,
    conv: ConversationId,
    /// The provider's id of the call. Memory only; dropped with this task.
    call_sid: String,
    jobs: mpsc::UnboundedSender<Job>,
}

/// The engine's side of a call: registered as the conversation's visitor.
type CallFollower = Follower<Arc<Engine>>;

impl Call {
    async fn run(
        mut self,
        mut follower: CallFollower,
        mut rx: Inbox,
        mut too_slow: CancellationToken,
    ) {
        let span = tracing::info_span!("voice", conversation = %self.conv);
        tracing::info!(parent: &span, "voice call followed");
        let shutdown = self.voice.shutdown.clone();
        let mut watchdog = tokio::time::interval(Duration::from_secs(1));
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let ended = tokio::select! {
                out = rx.recv() => match out {
                    Some(out) => self.outbound(&mut follower, out).await,
                    None => true,
                },
                _ = too_slow.cancelled() => {
                    // Should not happen (this loop only queues jobs); if it does, a fresh
                    // handle and a catch-up read so nothing is missed.
                    tracing::warn!(parent: &span, "voice follower fell behind; re-registering");
                    (rx, too_slow) = follower.reregister(self.voice.socket_queue);
                    follower.deliver(&mut self).await
                }
                _ = watchdog.tick() => { self.check_hold_loop().await; false }
                _ = shutdown.cancelled() => true,
            };
            if ended {
                break;
            }
        }
        follower.leave();
        self.voice.forget(&self.call_sid, self.conv);
        tracing::info!(parent: &span, "voice call no longer followed");
    }

    /// Handles one item from the engine; true when the conversation ended for the caller.
    async fn outbound(&mut self, follower: &mut CallFollower, out: Outbound) -> bool {
        match out {
            Outbound::Wake(_) | Outbound::Hold(_) => follower.deliver(self).await,
            Outbound::Frame(msg) => match *msg {
                ServerMsg::Event { seq, at, event, .. } => {
                    follower
                        .deliver_live(LogEntry { seq, at, event }, self)
                        .await
                }
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
                self.gone();
                true
            }
        }
    }

    /// The store lost the conversation. A caller on hold hears why, the other helplines and
    /// goodbye, and the call ends: nothing would ever take them off hold. A call already with
    /// a counsellor (or being put through) is left up: the two are talking, and cutting a call
    /// for a fault of ours could cut someone in crisis off mid-sentence; the counsellor's
    /// console says the conversation is gone, and the call ends when either hangs up.
    fn gone(&mut self) {
        let Some(link) = self.link() else { return };
        match link.phase {
            Phase::Waiting => {
                self.voice
                    .update_link(&self.call_sid, |l| l.phase = Phase::Ending);
                let _ = self.jobs.send(Job {
                    op: "hangup",
                    twiml: self.voice.docs().turn_away(Words::LOST),
                    bridge_to: None,
                });
            }
            Phase::Bridging | Phase::Bridged => {
                tracing::warn!(conversation = %self.conv, "phone conversation gone from the store; the call with the counsellor is left up");
            }
            Phase::Ending => {}
        }
    }

    /// Handles one new log entry (the follower hands out each once, in order); true when the
    /// conversation ended.
    async fn handle_entry(&mut self, entry: LogEntry) -> bool {
        match entry.event {
            EventBody::OperatorJoined { .. } => self.bridge(entry.seq).await,
            EventBody::OperatorLeft { .. } => self.back_on_hold(),
            EventBody::Ended { by, reason } => {
                self.ended(by, reason);
                return true;
            }
            // Chat messages and retractions do not concern a call.
            _ => {}
        }
        false
    }

    fn link(&self) -> Option<CallLink> {
        self.voice.link(&self.call_sid)
    }

    /// An operator took the call: bridge it to their phone or voice client.
    async fn bridge(&mut self, seq: u64) {
        let Some(link) = self.link() else { return };
        let holder = match self.voice.engine.conversation(self.conv).await {
            Ok(Some(c)) => c.state.operator(),
            _ => None,
        };
        let Some(op) = holder else { return };
        let Some(target) = self.voice.target_of(op) else {
            tracing::error!(
                conversation = %self.conv,
                operator = %op,
                "voice call NOT bridged: the operator has no phone number or voice client; back to the queue"
            );
            let cid = client_id(&[&self.call_sid, "no-target", &seq.to_string()]);
            let _ = self
                .voice
                .engine
                .transfer(op, self.conv, None, None, cid)
                .await;
            return;
        };
        self.voice
            .update_link(&self.call_sid, |l| l.phase = Phase::Bridging);
        let action = format!("{}{DIAL_DONE}", link.base);
        let twiml = self.voice.docs().bridge(&target, &link.caller_id, &action);
        tracing::info!(conversation = %self.conv, operator = %op, "voice call: bridging to the operator");
        let _ = self.jobs.send(Job {
            op: "bridge",
            twiml,
            bridge_to: Some(op),
        });
    }

    /// The operator left (requeued, or transferred to a colleague who has yet to accept).
    fn back_on_hold(&mut self) {
        let Some(link) = self.link() else { return };
        if !matches!(link.phase, Phase::Bridging | Phase::Bridged) {
            return;
        }
        self.voice.update_link(&self.call_sid, |l| {
            l.phase = Phase::Waiting;
            l.last_hold = std::time::Instant::now();
        });
        let twiml = self
            .voice
            .docs()
            .rehold(Words::BACK_ON_HOLD, &format!("{}{WAIT}", link.base));
        let _ = self.jobs.send(Job {
            op: "hold",
            twiml,
            bridge_to: None,
        });
    }

    /// The conversation ended: if the call is still up, end it politely.
    fn ended(&mut self, by: Side, reason: EndReason) {
        let Some(link) = self.link() else { return };
        if by == Side::Visitor || link.phase == Phase::Ending {
            // The caller hung up, or was already told goodbye.
            return;
        }
        if reason == EndReason::Idle {
            // A call logs no messages, so the chat idle limit says nothing about it: the call
            // is left up for the operator to finish.
            tracing::warn!(conversation = %self.conv, "phone conversation ended for idleness; the call is left up");
            return;
        }
        self.voice
            .update_link(&self.call_sid, |l| l.phase = Phase::Ending);
        let _ = self.jobs.send(Job {
            op: "hangup",
            twiml: self.voice.docs().goodbye(),
            bridge_to: None,
        });
    }

    /// A waiting call whose hold loop stopped coming back is gone: its status callback was
    /// lost. It ends as abandoned instead of being offered to an operator.
    async fn check_hold_loop(&mut self) {
        let Some(link) = self.link() else { return };
        let limit = Duration::from_secs(self.voice.settings.hold_silence_secs);
        if link.phase != Phase::Waiting || link.last_hold.elapsed() < limit {
            return;
        }
        self.voice
            .update_link(&self.call_sid, |l| l.phase = Phase::Ending);
        let cid = client_id(&[&self.call_sid, "hold-silent"]);
        let result = self.voice.engine.visitor_end(self.conv, cid).await;
        tracing::warn!(
            conversation = %self.conv,
            silent_ms = link.last_hold.elapsed().as_millis() as u64,
            ended = result.is_ok(),
            "voice hold loop went silent; the caller is taken as gone"
        );
    }
}

/// What the follower hands a call: each new log entry once, in order.
impl Entries for Call {
    const KIND: &'static str = "voice";

    async fn entry(&mut self, entry: LogEntry) -> bool {
        self.handle_entry(entry).await
    }
}

struct Sender {
    voice: Arc<Voice>,
    conv: ConversationId,
    call_sid: String,
}

impl Sender {
    async fn run(self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = jobs.recv().await {
            if self.voice.shutdown.is_cancelled() {
                break;
            }
            self.perform(job).await;
        }
    }

    async fn perform(&self, job: Job) {
        // A call that finished meanwhile gets nothing more (its link is gone), except the
        // polite hang-up, which is sent while the call may still be up.
        let link = self.voice.link(&self.call_sid);
        if link.is_none() && job.op != "hangup" {
            tracing::debug!(conversation = %self.conv, op = job.op, "voice call over; not sent");
            return;
        }
        let outcome = self
            .voice
            .api
            .update_call(job.op, &self.call_sid, &job.twiml)
            .await;
        match outcome {
            Outcome::Done => {
                tracing::info!(conversation = %self.conv, op = job.op, "voice call updated");
                if job.bridge_to.is_some() {
                    self.voice.update_link(&self.call_sid, |l| {
                        if l.phase == Phase::Bridging {
                            l.phase = Phase::Bridged;
                        }
                    });
                }
            }
            Outcome::Rejected(status) => {
                tracing::error!(conversation = %self.conv, op = job.op, status, "voice call NOT updated: the provider refused");
                self.failed(&job, status == 404).await;
            }
            Outcome::GaveUp => {
                tracing::error!(conversation = %self.conv, op = job.op, "voice call NOT updated: retries exhausted");
                self.failed(&job, false).await;
            }
        }
    }

    /// A bridge that could not be made: the call is gone (404), so the conversation ends; or
    /// the caller is still in the hold loop, so it goes back to the queue for the next operator.
    async fn failed(&self, job: &Job, call_gone: bool) {
        let Some(op) = job.bridge_to else { return };
        if call_gone {
            self.voice.forget(&self.call_sid, self.conv);
            let cid = client_id(&[&self.call_sid, "gone"]);
            let _ = self.voice.engine.visitor_end(self.conv, cid).await;
            return;
        }
        let still_bridging = self.voice.update_link(&self.call_sid, |l| {
            if l.phase == Phase::Bridging {
                l.phase = Phase::Waiting;
            }
        });
        if still_bridging {
            let cid = client_id(&[&self.call_sid, "bridge-failed", &op.to_string()]);
            let _ = self
                .voice
                .engine
                .transfer(op, self.conv, None, None, cid)
                .await;
        }
    }
}
