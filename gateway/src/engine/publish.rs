//! Publishing: who hears about a step. [`Engine::publish`] is the one place that decides who must
//! hear about a change (the person's socket, the operator holding the conversation, the operator
//! who lost an offer, the other nodes), keeps an emergency's escalation record following the
//! log, and deletes a conversation when it ends; [`Engine::notify`] is its sockets' part, also
//! run for what other nodes publish ([`Engine::on_bus`]). After a store outage or data loss,
//! [`Engine::wake_local_sockets`] and [`Engine::tell_gone`] bring this node's sockets up to date.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{stats, Engine, Outbound};
use crate::cluster::BusMsg;
use crate::conversation::{Conversation, ConversationId, OperatorId, State};
use crate::escalation::Action;
use crate::protocol::{Millis, Offer, RemovedReason, ServerMsg, TransferInfo, WithdrawReason};
use crate::store::{Applied, OperatorUpdate};

impl Engine {
    /// Queues `out` on the operator's socket, on whichever node it is open.
    pub fn to_operator(&self, op: OperatorId, out: Outbound) {
        if let Some(bus) = &self.bus {
            if let Some(remote) = out.to_remote() {
                bus.send(BusMsg::ToOperator {
                    operator: op,
                    out: remote,
                });
            }
        }
        self.registry.to_operator(op, out);
    }

    /// Queues `out` on the conversation's person's socket, on whichever node it is open.
    pub fn to_visitor(&self, conv: ConversationId, out: Outbound) {
        if let Some(bus) = &self.bus {
            if let Some(remote) = out.to_remote() {
                bus.send(BusMsg::ToVisitor {
                    conversation: conv,
                    out: remote,
                });
            }
        }
        self.registry.to_visitor(conv, out);
    }

    /// Coordinators on every node see an alert raised on this one.
    pub(super) fn share_alert(&self, alert: stats::Alert) {
        if let Some(bus) = &self.bus {
            bus.send(BusMsg::Alert {
                alert: Box::new(alert),
            });
        }
    }

    /// What another node published.
    pub fn on_bus(&self, msg: BusMsg) {
        match msg {
            BusMsg::Applied { applied, withdrawn } => {
                self.notify(&applied, withdrawn, self.now_ms());
                if applied.before.state.kind() != applied.after.state.kind() {
                    self.wake_dispatch_here();
                }
            }
            BusMsg::ToOperator { operator, out } => self
                .registry
                .to_operator(operator, Outbound::from_remote(out)),
            BusMsg::ToVisitor { conversation, out } => self
                .registry
                .to_visitor(conversation, Outbound::from_remote(out)),
            BusMsg::Alert { alert } => self.stats().raise(*alert),
            BusMsg::AlertAcknowledged { id, by } => {
                self.stats().ack_alert(id, &by, self.now_ms());
            }
            BusMsg::Dispatch => self.wake_dispatch_here(),
            BusMsg::Overloaded { on } => {
                let was = self.overloaded.swap(on, Ordering::SeqCst);
                if was != on {
                    tracing::info!(overloaded = on, "overloaded mode switched on another node");
                }
            }
        }
    }

    /// Wakes every socket of this node, so each reads what it has not sent yet from the store
    /// (after cross-node wake-ups may have been missed), and records again that the people and
    /// operators of these sockets are connected here (after an outage of Redis, another node
    /// may have taken this one for dead).
    ///
    /// A conversation the store no longer has is gone ([`Engine::tell_gone`]): after a restart
    /// of Redis without persistence, this is where its people and operators hear of it.
    pub async fn wake_local_sockets(&self) {
        let mut gone = 0;
        for conv in self.registry.visitor_ids() {
            match self.store.get(conv).await {
                Ok(Some(c)) => {
                    if !c.visitor_connected && !c.state.is_terminal() {
                        self.visitor_connection(conv, true).await;
                    }
                }
                Ok(None) => {
                    self.gone(conv);
                    gone += 1;
                    continue;
                }
                Err(_) => {}
            }
            self.registry.to_visitor(conv, Outbound::Wake(conv));
        }
        if gone > 0 {
            tracing::warn!(
                people = gone,
                "conversations gone from the store; their people are told"
            );
        }
        for op in self.registry.operator_ids() {
            self.registry.to_operator(op, Outbound::Recheck);
            if let Ok(Some(rec)) = self
                .store
                .update_operator(op, OperatorUpdate::Connected)
                .await
            {
                tracing::debug!(operator = %rec.id, "operator connection recorded again");
            }
            if let Ok(held) = self.store.held_by(op).await {
                for c in held {
                    self.registry.to_operator(op, Outbound::Hold(c.id));
                }
            }
        }
    }

    /// Tells this node's people and operators about every conversation of theirs that the
    /// store no longer has (it lost its data: a restart without persistence, a flush, a
    /// failover to an empty replica). A person's socket gets `gone` and closes (the LINE and
    /// phone connectors say so in their own way); an operator's socket checks the conversations
    /// it follows and drops those that are gone.
    ///
    /// A conversation that ended normally is deleted only after its `ended` entry was queued
    /// for its person, so the `gone` queued here, after the store answered that it is not
    /// there, never overtakes an `ended`.
    pub async fn tell_gone(&self) {
        let mut gone = 0;
        for conv in self.registry.visitor_ids() {
            if let Ok(None) = self.store.get(conv).await {
                self.gone(conv);
                gone += 1;
            }
        }
        tracing::warn!(
            people = gone,
            "conversations gone from the store; their people are told"
        );
        for op in self.registry.operator_ids() {
            self.registry.to_operator(op, Outbound::Recheck);
        }
    }

    fn gone(&self, conv: ConversationId) {
        tracing::debug!(conversation = %conv, "conversation gone from the store");
        self.refs().remove(&conv);
        self.registry.to_visitor(conv, Outbound::Gone(conv));
    }

    pub(super) fn offer_of(&self, conv: &Conversation, now: Millis) -> Option<Offer> {
        let State::Offered {
            expires_at,
            transfer_from,
            ..
        } = &conv.state
        else {
            return None;
        };
        Some(Offer {
            conversation: conv.id,
            channel: conv.channel,
            language: conv.language.clone(),
            waited_ms: now.saturating_sub(conv.queued_at),
            expires_in_ms: expires_at.saturating_sub(now),
            transfer: transfer_from.as_ref().map(|from| TransferInfo {
                from: from.clone(),
                note: conv.handover_note.clone(),
            }),
            arrival: conv.arrival,
            offered_at: expires_at.saturating_sub(self.cfg.offer_timeout_ms),
        })
    }

    /// Tells everyone concerned about one step, and deletes the conversation if it ended.
    /// `withdrawn` is the reason given to an operator who loses an offer in this step.
    pub async fn publish(&self, a: &Applied, withdrawn: WithdrawReason) {
        if a.duplicate.is_some() {
            // A retry: the first application may not have been heard of (its answer was lost,
            // or the store refused to acknowledge it unreplicated). Waking is harmless.
            let id = a.after.id;
            self.to_visitor(id, Outbound::Wake(id));
            if let Some(op) = a.after.state.operator() {
                self.to_operator(op, Outbound::Wake(id));
            }
            return;
        }
        let now = self.now_ms();
        let id = a.after.id;
        if a.after.state.is_terminal() && self.registry.has_visitor(id) {
            // The log goes with this step: a person's socket that has not read it all yet gets
            // it whole, ahead of the step's own frames (`notify`), and sends what it lacks.
            if let Ok(log) = self.store.read_log(id, 0).await {
                self.registry.to_visitor(id, Outbound::Final(Box::new(log)));
            }
        }
        self.notify(a, withdrawn, now);
        if let Some(bus) = &self.bus {
            bus.send(BusMsg::Applied {
                applied: Box::new(a.clone()),
                withdrawn,
            });
        }
        let (before, after) = (&a.before.state, &a.after.state);

        // Statistics and metrics for what happened.
        if let Some(event) = self.record_transition(a, now) {
            self.count_today(now, event).await;
        }
        self.share_handle_time(a, now).await;
        self.escalation_follows(a, now).await;

        if after.is_terminal() {
            self.refs().remove(&id);
            if let Err(e) = self.store.delete(id).await {
                tracing::error!(conversation = %id, error = %e, "could not delete ended conversation");
            }
            tracing::info!(conversation = %id, outcome = after.kind().as_str(), "conversation deleted");
        }
        if before.kind() != after.kind() {
            // The dispatcher, wherever it runs, hears of the step itself (the bus above).
            self.wake_dispatch_here();
        }
    }

    /// The sockets' part of [`Engine::publish`]: queues on this node's sockets what a step means
    /// for them. Runs on the node that applied the step and, from the bus, on every other.
    pub fn notify(&self, a: &Applied, withdrawn: WithdrawReason, now: Millis) {
        let id = a.after.id;
        let (before, after) = (&a.before.state, &a.after.state);
        let holder = |s: &State| match s {
            State::Active { operator } | State::WrapUp { operator, .. } => Some(*operator),
            _ => None,
        };
        let (held_before, held_after) = (holder(before), holder(after));

        // Offers made and lost.
        if let State::Offered { operator, .. } = after {
            if before.operator() != Some(*operator) || before.kind() != after.kind() {
                if let Some(offer) = self.offer_of(&a.after, now) {
                    self.registry
                        .to_operator(*operator, Outbound::frame(ServerMsg::Offer(offer)));
                }
            }
        }
        if let State::Offered { operator, .. } = before {
            if after.operator() != Some(*operator) {
                let reason = if after.is_terminal() {
                    WithdrawReason::Abandoned
                } else {
                    withdrawn
                };
                self.registry.to_operator(
                    *operator,
                    Outbound::frame(ServerMsg::OfferWithdrawn {
                        conversation: id,
                        reason,
                    }),
                );
            }
        }

        // Who holds the conversation.
        if held_before != held_after {
            if let Some(op) = held_before {
                let reason = match after {
                    State::Queued => RemovedReason::Requeued,
                    State::Offered { .. } => RemovedReason::Transferred,
                    _ => RemovedReason::Closed,
                };
                self.registry.to_operator(op, Outbound::Release(id));
                self.registry.to_operator(
                    op,
                    Outbound::frame(ServerMsg::Removed {
                        conversation: id,
                        reason,
                        suggest_pause: reason == RemovedReason::Closed
                            && a.after.emergency.is_some(),
                    }),
                );
            }
            if let Some(op) = held_after {
                if let Some(summary) = self.summary_of(&a.after) {
                    self.registry.to_operator(
                        op,
                        Outbound::frame(ServerMsg::Conversation {
                            conversation: summary,
                        }),
                    );
                }
                self.registry.to_operator(op, Outbound::Hold(id));
            }
        } else if let Some(op) = held_after {
            if before.kind() != after.kind()
                || a.before.visitor_connected != a.after.visitor_connected
            {
                if let Some(summary) = self.summary_of(&a.after) {
                    self.registry.to_operator(
                        op,
                        Outbound::frame(ServerMsg::Conversation {
                            conversation: summary,
                        }),
                    );
                }
            }
            if !a.appended.is_empty() {
                self.registry.to_operator(op, Outbound::Wake(id));
            }
        }

        // The person's side.
        if after.is_terminal() {
            // The log is about to be deleted: hand the last entries over directly.
            for entry in &a.appended {
                self.registry
                    .to_visitor(id, Outbound::frame(ServerMsg::event(id, entry)));
            }
        } else if !a.appended.is_empty() {
            self.registry.to_visitor(id, Outbound::Wake(id));
        }
    }

    /// A flagged conversation's record follows everything it logs, and is completed at close.
    /// Entries another node appended (with a shared store, each node extends the record with
    /// the steps it applies) are read from the log, so the transcript has no gap.
    async fn escalation_follows(&self, a: &Applied, now: Millis) {
        let (Some(esc), Some(e)) = (&self.escalations, &a.after.emergency) else {
            return;
        };
        if let Some(first) = a.appended.first() {
            let mut entries = a.appended.clone();
            if let Ok(last) = esc.last_seq(e.record).await {
                if last + 1 < first.seq {
                    if let Ok(mut missing) = self.store.read_log(a.after.id, last).await {
                        missing.retain(|m| m.seq < first.seq);
                        missing.append(&mut entries);
                        entries = missing;
                    }
                }
            }
            if let Err(err) = esc.append_log(e.record, &entries).await {
                tracing::error!(record = %e.record, error = %err, "could not extend escalation record");
            }
        }
        if a.after.state.is_terminal() {
            let category = a.after.category.clone();
            let closed = esc
                .update(e.record, |r| {
                    r.closed = true;
                    r.actions.push(Action {
                        at: now,
                        actor: "system".into(),
                        actor_id: None,
                        action: "closed".into(),
                        detail: category.clone(),
                    });
                })
                .await;
            match closed {
                Ok(_) => {
                    let esc = Arc::clone(esc);
                    let clock = self.clock.clone();
                    tokio::spawn(async move {
                        esc.deliver_pending(clock.now_ms()).await;
                    });
                }
                Err(err) => {
                    tracing::error!(record = %e.record, error = %err, "could not close escalation record")
                }
            }
        }
    }

    /// Sends the holding operator a fresh summary of the conversation.
    pub(super) fn send_summary(&self, conv: &Conversation) {
        if let (Some(op), Some(summary)) = (conv.state.operator(), self.summary_of(conv)) {
            self.to_operator(
                op,
                Outbound::frame(ServerMsg::Conversation {
                    conversation: summary,
                }),
            );
        }
    }
}
