//! Writing: every change of conversations and operator records goes through `commit.lua`,
//! which checks each version it is given (for offers and takes also the operator's load
//! version) and writes nothing if one moved on; a step is then read and tried again
//! ([`RedisStore::apply_step`]). With `store.wait_replicas` a message is acknowledged only once
//! replicated (`WAIT`).

use ulid::Ulid;

use super::queue::queue_score;
use super::{contended, corrupt, RedisStore, ATTEMPTS};
use crate::conversation::{Command, Conversation, ConversationId, State};
use crate::protocol::Presence;
use crate::protocol::{LogEntry, Millis};
use crate::store::{advance, Applied, ApplyError, OperatorRecord, StoreError};

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Written,
    /// A conversation's version (or its client ids) moved on.
    ConversationMoved,
    /// An operator's record or load moved on.
    OperatorMoved,
}

/// One conversation write of a commit.
pub(super) struct ConvWrite<'a> {
    pub(super) expect: u64,
    pub(super) conv: &'a Conversation,
    /// `None` keeps the stored node; `Some("")` clears it.
    pub(super) node: Option<&'a str>,
    pub(super) client: Option<(Ulid, Option<u64>)>,
    pub(super) entries: &'a [LogEntry],
}

/// One operator write of a commit.
pub(super) struct OpWrite<'a> {
    pub(super) expect: u64,
    /// Checked for offers and takes: nobody else gave or took a conversation of theirs meanwhile.
    pub(super) expect_load: Option<u64>,
    pub(super) rec: &'a OperatorRecord,
    pub(super) node: Option<&'a str>,
}

/// What the holder of `conv` holds of it, for the running sums on their record: the weight
/// if it is not a call, 1 if it is a call (weighed on their capacity when read), 1 if it is an
/// offer; all 0 when nobody holds it.
pub(super) fn held_share(conv: &Conversation) -> (u32, u32, u32) {
    if conv.state.operator().is_none() {
        return (0, 0, 0);
    }
    let call = conv.channel == crate::protocol::Channel::Phone;
    (
        if call { 0 } else { conv.weight },
        u32::from(call),
        u32::from(matches!(conv.state, State::Offered { .. })),
    )
}

impl RedisStore {
    /// Writes conversations and operator records if every version still holds.
    /// `Ok(false)`: something moved on; read again.
    pub(super) async fn commit(
        &self,
        convs: &[ConvWrite<'_>],
        ops: &[OpWrite<'_>],
    ) -> Result<bool, StoreError> {
        Ok(self.commit_outcome(convs, ops).await? == Outcome::Written)
    }

    /// [`Self::commit`], saying what moved on when nothing was written.
    pub(super) async fn commit_outcome(
        &self,
        convs: &[ConvWrite<'_>],
        ops: &[OpWrite<'_>],
    ) -> Result<Outcome, StoreError> {
        Ok(self.commit_numbered(convs, ops).await?.0)
    }

    /// [`Self::commit_outcome`], with the arrival numbers `commit.lua` gave the conversations
    /// that entered the queue ([`Conversation::needs_arrival`]), in the order of `convs`.
    async fn commit_numbered(
        &self,
        convs: &[ConvWrite<'_>],
        ops: &[OpWrite<'_>],
    ) -> Result<(Outcome, Vec<u64>), StoreError> {
        let mut inv = self.commit.prepare_invoke();
        inv.arg(&self.opts.key_prefix)
            .arg(self.opts.ttl_secs)
            .arg(convs.len())
            .arg(ops.len());
        for w in convs {
            let json = serde_json::to_string(w.conv).map_err(|_| corrupt("conversation"))?;
            let holder = w
                .conv
                .state
                .operator()
                .map(|o| o.to_string())
                .unwrap_or_default();
            let (cid, cseq) = match w.client {
                Some((id, seq)) => (
                    id.to_string(),
                    seq.map(|s| s.to_string()).unwrap_or_default(),
                ),
                None => (String::new(), String::new()),
            };
            let queued = w.conv.state == State::Queued;
            inv.arg(w.conv.id.to_string())
                .arg(w.expect)
                .arg(json)
                .arg(w.conv.token_hash.clone().unwrap_or_default())
                .arg(holder)
                .arg(if queued {
                    queue_score(w.conv).to_string()
                } else {
                    String::new()
                })
                .arg(if w.conv.needs_arrival() { "1" } else { "0" })
                .arg(if queued {
                    w.conv.queued_at.to_string()
                } else {
                    String::new()
                })
                .arg(w.node.unwrap_or("-"))
                .arg(cid)
                .arg(cseq);
            let (hw, hp, ho) = held_share(w.conv);
            inv.arg(hw)
                .arg(hp)
                .arg(ho)
                .arg(self.deadline_arg(w.conv))
                .arg(w.entries.len());
            for e in w.entries {
                let json = serde_json::to_string(e).map_err(|_| corrupt("log entry"))?;
                inv.arg(e.seq).arg(json);
            }
        }
        for w in ops {
            let json = serde_json::to_string(w.rec).map_err(|_| corrupt("operator record"))?;
            inv.arg(w.rec.id.to_string())
                .arg(w.expect)
                .arg(w.expect_load.map(|l| l.to_string()).unwrap_or_default())
                .arg(json)
                .arg(w.node.unwrap_or("-"))
                .arg(if w.rec.connected && w.rec.presence == Presence::OnDuty {
                    w.rec.capacity.to_string()
                } else {
                    String::new()
                });
        }
        let reply: Vec<u64> = self.invoke(inv).await?;
        let outcome = match reply.first() {
            Some(1) => Outcome::Written,
            Some(2) => Outcome::OperatorMoved,
            _ => Outcome::ConversationMoved,
        };
        Ok((outcome, reply.into_iter().skip(1).collect()))
    }

    /// With `wait_replicas` set: returns only once that many replicas have this connection's
    /// writes, or reports the store unavailable (the caller's retry is then idempotent).
    async fn replicated(&self) -> Result<(), StoreError> {
        let want = self.opts.wait_replicas;
        if want == 0 {
            return Ok(());
        }
        let timeout = self.opts.wait_timeout_ms;
        let mut wait = redis::cmd("WAIT");
        wait.arg(want).arg(timeout);
        let got: u32 = self.query_cmd(wait).await?;
        if got < want {
            tracing::warn!(
                replicas = got,
                wanted = want,
                "write not replicated in time"
            );
            return Err(StoreError::Unavailable("not replicated in time".into()));
        }
        Ok(())
    }

    /// The node the change attributes the person's connection to.
    fn node_after(&self, cmd: &Command) -> Option<&str> {
        match cmd {
            Command::VisitorConnected => Some(&self.opts.node),
            Command::VisitorDisconnected => Some(""),
            _ => None,
        }
    }

    /// Applies `cmd` to one conversation, optimistically. `only_if_node`: apply only while the
    /// person is attributed to that node (used to disconnect the people of a dead node).
    pub(super) async fn apply_step(
        &self,
        id: ConversationId,
        cmd: Command,
        client_id: Option<Ulid>,
        now: Millis,
        only_if_node: Option<&str>,
    ) -> Result<Applied, ApplyError> {
        // A message is acknowledged to its sender only once replicated (`wait_replicas`); other
        // steps are not waited for (their retries would not re-announce them).
        let is_message = matches!(cmd, Command::Message { .. });
        for attempt in 0..ATTEMPTS {
            // The conversation and whether the client id was applied already: one round trip.
            let (loaded, seen) = self.load_seen(id, client_id).await?;
            let loaded = loaded.ok_or(ApplyError::NotFound)?;
            if let Some(seq) = seen {
                if is_message {
                    self.replicated().await?;
                }
                return Ok(Applied {
                    before: loaded.conv.clone(),
                    after: loaded.conv,
                    appended: vec![],
                    duplicate: Some(seq.parse().ok()),
                });
            }
            if let Some(node) = only_if_node {
                if loaded.node != node {
                    return Err(ApplyError::Refused(
                        crate::conversation::TransitionError::NotYours,
                    ));
                }
            }
            if matches!(cmd, Command::VisitorDisconnected)
                && only_if_node.is_none()
                && !loaded.node.is_empty()
                && loaded.node != self.opts.node
            {
                // The person has reconnected through another node since: this node's socket
                // closing says nothing about them.
                return Err(ApplyError::Refused(
                    crate::conversation::TransitionError::NotYours,
                ));
            }
            let before = loaded.conv;
            let (mut after, appended) = advance(&before, cmd.clone(), now)?;
            let write = ConvWrite {
                expect: loaded.version,
                conv: &after,
                node: self.node_after(&cmd),
                client: client_id.map(|c| (c, appended.last().map(|e| e.seq))),
                entries: &appended,
            };
            let (outcome, arrivals) = self.commit_numbered(&[write], &[]).await?;
            if outcome == Outcome::Written {
                if let Some(&a) = arrivals.first() {
                    after.arrival = a;
                }
                if is_message {
                    self.replicated().await?;
                }
                return Ok(Applied {
                    before,
                    after,
                    appended,
                    duplicate: None,
                });
            }
            Self::back_off(attempt).await;
        }
        Err(contended().into())
    }

    /// [`crate::store::Store::create`].
    pub(super) async fn create_conversation(&self, conv: Conversation) -> Result<(), StoreError> {
        // Attributed to this node from the start, so that if it dies before the person's socket
        // says more, the conversation is still taken as disconnected and its grace runs.
        let write = ConvWrite {
            expect: 0,
            conv: &conv,
            node: conv.visitor_connected.then_some(self.opts.node.as_str()),
            client: None,
            entries: &[],
        };
        if !self.commit(&[write], &[]).await? {
            return Err(StoreError::Unavailable(
                "conversation id already taken".into(),
            ));
        }
        // Not waited for: a conversation lost in a failover is started again by its person,
        // and a creation refused after it was written would leave a person nobody is talking to.
        Ok(())
    }
}
