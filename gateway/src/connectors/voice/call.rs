//! One live call: the connector's stand-in for a visitor socket.
//!
//! Two tasks per call on each node that follows it:
//! - the **follower** ([`Call`], beside the engine's [`Follower`], which registers it as the
//!   conversation's visitor and keeps its cursor). On every wake it gets the log entries after
//!   its cursor ([`Follower::deliver`], the catch-up shared with LINE): an operator joined →
//!   bridge the call to them; the operator left (requeued or transferred) → back on hold;
//!   ended → a polite hang-up if the call is still up. Once a second it also checks that a
//!   waiting call's hold loop still comes back (a lost status callback must not leave a ghost
//!   in the queue).
//! - the **sender** performs the REST calls one at a time, in order ([`super::client`]), so a
//!   slow provider delays only this call, and never the follower.
//!
//! Several nodes: every node that has had a webhook of the call follows it (the call SID comes
//! with each webhook, and lives only in this node's memory), but only the holder of the call's
//! lease ([`super::call_lease`], renewed every [`CALL_LEASE_RENEW_MS`]) acts on the log; the
//! others follow to notice the end, and to be ready. Every act is first written to the call's
//! shared record ([`crate::store::CallRecord`]) over the version read, and only the node whose
//! write won sends the request: the record's `seq` says which log entries were acted on, so a
//! node that takes the lease over (its holder died) acts only on the entries after it, and a
//! bridge is claimed in the record before it is sent, so it is sent at most once per accept
//! (the provider's "update a call" is not idempotent: a second one would ring the operator
//! again). A bridge whose node died between the claim and the provider taking it is noticed by
//! the hold loop still coming back ([`super::webhook`]), and the call goes back to the queue.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::client::Outcome;
use super::record::Change;
use super::twiml::Words;
use super::webhook::{DIAL_DONE, WAIT};
use super::{call_lease, client_id, CallLink, Phase, Voice, CALL_LEASE_MS, CALL_LEASE_RENEW_MS};
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

/// Follows a call on this node, unless it does already: registers the follower as its
/// conversation's visitor, remembers the call and starts its tasks. `started_here`: this node
/// answered the call's `incoming` (the person is connected through it already).
pub fn follow(
    voice: &Arc<Voice>,
    conv: ConversationId,
    call_sid: &str,
    link: CallLink,
    started_here: bool,
) {
    {
        let mut calls = voice.calls();
        if calls.contains_key(call_sid) {
            return;
        }
        calls.insert(call_sid.to_owned(), link.clone());
    }
    let (follower, rx, too_slow) =
        Follower::person(Arc::clone(&voice.engine), conv, voice.socket_queue);
    let (jobs, job_rx) = mpsc::unbounded_channel();
    let call = Call {
        voice: Arc::clone(voice),
        conv,
        call_sid: call_sid.to_owned(),
        base: link.base,
        caller_id: link.caller_id,
        jobs,
        leader: false,
        started_here,
        missing: 0,
    };
    voice.tracker.spawn(call.run(follower, rx, too_slow));
    let sender = Sender {
        voice: Arc::clone(voice),
        conv,
        call_sid: call_sid.to_owned(),
    };
    voice.tracker.spawn(sender.run(job_rx));
}

/// The follower task's state; its registration and cursor are the [`Follower`] beside it.
struct Call {
    voice: Arc<Voice>,
    conv: ConversationId,
    /// The provider's id of the call. Memory only; dropped with this task.
    call_sid: String,
    base: String,
    caller_id: String,
    jobs: mpsc::UnboundedSender<Job>,
    /// This node holds the call's lease: it acts on the log.
    leader: bool,
    /// This node answered `incoming` and has not yet taken the lease.
    started_here: bool,
    /// Ticks in a row that found no record.
    missing: u8,
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
        let mut watchdog = tokio::time::interval(Duration::from_millis(CALL_LEASE_RENEW_MS));
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The lease first (the interval's first tick is now): whether this node acts is known
        // before anything from the engine is handled.
        watchdog.tick().await;
        let mut ended = self.tick(&mut follower).await;
        while !ended {
            ended = tokio::select! {
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
                _ = watchdog.tick() => self.tick(&mut follower).await,
                _ = shutdown.cancelled() => true,
            };
        }
        follower.leave();
        self.voice.forget(&self.call_sid, self.conv);
        if self.leader {
            let _ = self.voice.engine.release(&call_lease(self.conv)).await;
        }
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
                if !self.leader && self.started_here {
                    // The loss came before this node's first tick took the call's lease (the
                    // call had just been answered here): take it now, or nobody would tell the
                    // caller on hold.
                    self.leader = self
                        .voice
                        .engine
                        .lead(&call_lease(self.conv), CALL_LEASE_MS)
                        .await
                        .unwrap_or(false);
                }
                self.gone();
                true
            }
        }
    }

    /// Once a second: the call's record (none: the conversation went), the lease (renewed,
    /// or taken if its holder stopped renewing it: then the log after the record's `seq` is
    /// acted on), and the hold loop. True when the call is no longer to be followed.
    async fn tick(&mut self, follower: &mut CallFollower) -> bool {
        let rec = match self.voice.record(self.conv).await {
            Ok(Some(rec)) => rec,
            Ok(None) => {
                // The conversation went: its end (or the store's loss) reaches this follower
                // through the engine; if it never does, stop following after a few seconds.
                self.missing += 1;
                return self.missing >= 3;
            }
            // The store cannot be reached: nothing can be decided now.
            Err(_) => return false,
        };
        self.missing = 0;
        let engine = &self.voice.engine;
        let held = engine
            .lead(&call_lease(self.conv), CALL_LEASE_MS)
            .await
            .unwrap_or(false);
        if !held {
            if self.leader {
                tracing::warn!(conversation = %self.conv, "voice call lease lost; another node follows the call");
                self.leader = false;
            }
            return false;
        }
        if !self.leader {
            self.leader = true;
            if !std::mem::take(&mut self.started_here) {
                tracing::info!(conversation = %self.conv, seq = rec.seq, phase = rec.phase.as_str(), "voice call lease taken; this node follows the call");
                // The caller is reached through this node now: if the node before died, the
                // nodes' reaper must not take the caller for gone with it.
                engine.visitor_connection(self.conv, true).await;
            }
            follower.set_cursor(rec.seq);
            if follower.deliver(self).await {
                return true;
            }
        }
        self.check_hold_loop(rec.last_hold).await;
        false
    }

    /// The store lost the conversation. A caller on hold hears why, the other helplines and
    /// goodbye, and the call ends: nothing would ever take them off hold. A call already with
    /// a counsellor (or being put through) is left up: the two are talking, and cutting a call
    /// for a fault of ours could cut someone in crisis off mid-sentence; the counsellor's
    /// console says the conversation is gone, and the call ends when either hangs up. Only
    /// the lease holder acts, by the phase it last knew (the record went with the rest).
    fn gone(&mut self) {
        if !self.leader {
            return;
        }
        let Some(link) = self.link() else { return };
        match link.phase {
            Phase::Waiting => {
                self.voice.note_phase(self.conv, Phase::Ending);
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
        if !self.leader {
            // Another node acts on the log: only notice the end.
            return matches!(entry.event, EventBody::Ended { .. });
        }
        match entry.event {
            EventBody::OperatorJoined { .. } => self.bridge(entry.seq).await,
            EventBody::OperatorLeft { .. } => self.back_on_hold(entry.seq).await,
            EventBody::Ended { by, reason } => {
                self.ended(entry.seq, by, reason).await;
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

    /// An operator took the call: claim the bridge in the record (once per accept, whichever
    /// node acts), then bridge it to their phone or voice client.
    async fn bridge(&mut self, seq: u64) {
        let holder = match self.voice.engine.conversation(self.conv).await {
            Ok(Some(c)) => c.state.operator(),
            _ => None,
        };
        let Some(op) = holder else { return };
        let Some(target) = self.voice.target_of(op) else {
            let acted = self
                .voice
                .change(self.conv, |r| {
                    r.seq < seq && {
                        r.seq = seq;
                        true
                    }
                })
                .await;
            if !acted.is_ok_and(|c| c.made()) {
                return;
            }
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
        let now = self.voice.engine.now_ms();
        let claimed = self
            .voice
            .change(self.conv, |r| {
                if r.seq >= seq || r.phase == Phase::Ending {
                    return false;
                }
                r.seq = seq;
                r.phase = Phase::Bridging;
                r.bridge_at = now;
                true
            })
            .await;
        match claimed {
            Ok(c) if c.made() => {}
            Ok(_) => {
                tracing::debug!(conversation = %self.conv, seq, "voice bridge claimed before; not sent again");
                return;
            }
            Err(e) => {
                // Not claimed, so not sent: the hold loop goes on, and the operator can requeue.
                tracing::error!(conversation = %self.conv, error = %e, "voice call NOT bridged: its record could not be written");
                return;
            }
        }
        let action = format!("{}{DIAL_DONE}", self.base);
        let twiml = self.voice.docs().bridge(&target, &self.caller_id, &action);
        tracing::info!(conversation = %self.conv, operator = %op, "voice call: bridging to the operator");
        let _ = self.jobs.send(Job {
            op: "bridge",
            twiml,
            bridge_to: Some(op),
        });
    }

    /// The operator left (requeued, or transferred to a colleague who has yet to accept).
    async fn back_on_hold(&mut self, seq: u64) {
        let now = self.voice.engine.now_ms();
        let changed = self
            .voice
            .change(self.conv, |r| {
                if r.seq >= seq {
                    return false;
                }
                r.seq = seq;
                if matches!(r.phase, Phase::Bridging | Phase::Bridged) {
                    r.phase = Phase::Waiting;
                    r.last_hold = now;
                }
                true
            })
            .await;
        let Ok(Change::Made { before }) = changed else {
            return;
        };
        if !matches!(before.phase, Phase::Bridging | Phase::Bridged) {
            return;
        }
        let twiml = self
            .voice
            .docs()
            .rehold(Words::BACK_ON_HOLD, &format!("{}{WAIT}", self.base));
        let _ = self.jobs.send(Job {
            op: "hold",
            twiml,
            bridge_to: None,
        });
    }

    /// The conversation ended: if the call is still up, end it politely.
    async fn ended(&mut self, seq: u64, by: Side, reason: EndReason) {
        if by == Side::Visitor {
            // The caller hung up.
            return;
        }
        if reason == EndReason::Idle {
            // A call logs no messages, so the chat idle limit says nothing about it: the call
            // is left up for the operator to finish.
            tracing::warn!(conversation = %self.conv, "phone conversation ended for idleness; the call is left up");
            return;
        }
        let changed = self
            .voice
            .change(self.conv, |r| {
                if r.seq >= seq || r.phase == Phase::Ending {
                    return false;
                }
                r.seq = seq;
                r.phase = Phase::Ending;
                true
            })
            .await;
        let hang_up = match changed {
            Ok(Change::Made { .. }) => true,
            // Ended and deleted at once (abandoned while waiting): by what this node knew.
            Ok(Change::Missing) => self.link().is_some_and(|l| l.phase != Phase::Ending),
            // Already told goodbye, or the store cannot be reached.
            _ => false,
        };
        if !hang_up {
            return;
        }
        self.voice.note_phase(self.conv, Phase::Ending);
        let _ = self.jobs.send(Job {
            op: "hangup",
            twiml: self.voice.docs().goodbye(),
            bridge_to: None,
        });
    }

    /// A waiting call whose hold loop stopped coming back (on any node) is gone: its status
    /// callback was lost. It ends as abandoned instead of being offered to an operator.
    async fn check_hold_loop(&mut self, last_hold: u64) {
        let limit = self.voice.settings.hold_silence_secs * 1000;
        let now = self.voice.engine.now_ms();
        if now.saturating_sub(last_hold) < limit {
            return;
        }
        let changed = self
            .voice
            .change(self.conv, |r| {
                let silent = now.saturating_sub(r.last_hold) >= limit;
                if r.phase != Phase::Waiting || !silent {
                    return false;
                }
                r.phase = Phase::Ending;
                true
            })
            .await;
        if !changed.is_ok_and(|c| c.made()) {
            return;
        }
        let cid = client_id(&[&self.call_sid, "hold-silent"]);
        let result = self.voice.engine.visitor_end(self.conv, cid).await;
        tracing::warn!(
            conversation = %self.conv,
            silent_ms = now.saturating_sub(last_hold),
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

    /// Whether the call is still to be sent anything but the polite hang-up: followed here,
    /// and not ending (its status callback may have reached another node).
    async fn still_up(&self) -> bool {
        if self.voice.link(&self.call_sid).is_none() {
            return false;
        }
        !matches!(self.voice.record(self.conv).await, Ok(Some(r)) if r.phase == Phase::Ending)
    }

    async fn perform(&self, job: Job) {
        // A call that finished meanwhile gets nothing more, except the polite hang-up, which
        // is sent while the call may still be up.
        if job.op != "hangup" && !self.still_up().await {
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
                    let _ = self
                        .voice
                        .change(self.conv, |r| {
                            r.phase == Phase::Bridging && {
                                r.phase = Phase::Bridged;
                                true
                            }
                        })
                        .await;
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
            let _ = self.voice.move_to(self.conv, Phase::Ending).await;
            let cid = client_id(&[&self.call_sid, "gone"]);
            let _ = self.voice.engine.visitor_end(self.conv, cid).await;
            return;
        }
        let now = self.voice.engine.now_ms();
        let back = self
            .voice
            .change(self.conv, |r| {
                r.phase == Phase::Bridging && {
                    r.phase = Phase::Waiting;
                    r.last_hold = now;
                    true
                }
            })
            .await;
        if back.is_ok_and(|c| c.made()) {
            let cid = client_id(&[&self.call_sid, "bridge-failed", &op.to_string()]);
            let _ = self
                .voice
                .engine
                .transfer(op, self.conv, None, None, cid)
                .await;
        }
    }
}
