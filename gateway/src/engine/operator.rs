//! What an operator does: connect and disconnect, presence, take the next person, accept or
//! decline an offer, send and type, transfer to a colleague or back to the queue, end and wrap
//! up.

use std::sync::Arc;

use ulid::Ulid;

use super::{Engine, EngineError, OperatorProfile, OperatorSnapshot, Outbound};
use crate::conversation::{Command, ConversationId, OperatorId, State};
use crate::protocol::{ClientId, Presence, ServerMsg, Side, WithdrawReason};
use crate::store::{OperatorRecord, OperatorUpdate};

impl Engine {
    /// Registers an operator's console connection and returns what their console must show.
    pub async fn operator_connected(
        &self,
        profile: &OperatorProfile,
    ) -> Result<OperatorSnapshot, EngineError> {
        let existing = self
            .store
            .update_operator(profile.id, OperatorUpdate::Connected)
            .await?;
        let record = match existing {
            Some(mut rec) => {
                rec.name = profile.name.clone();
                rec.languages = profile.languages.clone();
                rec.capacity = profile.capacity;
                rec.takes_calls = profile.takes_calls;
                rec
            }
            None => OperatorRecord {
                id: profile.id,
                name: profile.name.clone(),
                languages: profile.languages.clone(),
                capacity: profile.capacity,
                presence: Presence::OffDuty,
                connected: true,
                disconnected_since: None,
                last_assigned: 0,
                takes_calls: profile.takes_calls,
            },
        };
        self.store.put_operator(record.clone()).await?;
        let now = self.now_ms();
        let held = self.store.held_by(profile.id).await?;
        let offers = held.iter().filter_map(|c| self.offer_of(c, now)).collect();
        let held = held
            .iter()
            .filter(|c| !matches!(c.state, State::Offered { .. }))
            .filter_map(|c| self.summary_of(c))
            .collect();
        self.wake_dispatch();
        Ok(OperatorSnapshot {
            presence: record.presence,
            capacity: record.capacity,
            held,
            offers,
        })
    }

    pub async fn operator_disconnected(&self, op: OperatorId) {
        let _ = self
            .store
            .update_operator(op, OperatorUpdate::Disconnected { at: self.now_ms() })
            .await;
    }

    /// Sets presence; returns the `presence` frame for the operator.
    pub async fn set_presence(
        &self,
        op: OperatorId,
        presence: Presence,
    ) -> Result<ServerMsg, EngineError> {
        self.store
            .update_operator(op, OperatorUpdate::Presence(presence))
            .await?
            .ok_or(EngineError::NotFound)?;
        tracing::info!(operator = %op, presence = ?presence, "presence changed");
        self.wake_dispatch();
        self.presence_frame(op).await
    }

    pub async fn presence_frame(&self, op: OperatorId) -> Result<ServerMsg, EngineError> {
        let (rec, load) = self
            .store
            .operator_load(op)
            .await?
            .ok_or(EngineError::NotFound)?;
        Ok(ServerMsg::Presence {
            state: rec.presence,
            load,
            capacity: rec.capacity,
        })
    }

    /// Queues an operator's presence frame (their load changed) on their sockets. Queued, not
    /// spawned: it goes out in the same write as the reply and the conversation frames of the
    /// step that changed the load.
    pub(super) async fn send_presence(&self, op: OperatorId) {
        if let Ok(frame) = self.presence_frame(op).await {
            self.to_operator(op, Outbound::frame(frame));
        }
    }

    pub async fn take_next(
        self: &Arc<Self>,
        op: OperatorId,
        client_id: Ulid,
    ) -> Result<Option<ConversationId>, EngineError> {
        if self.seen(op, client_id).await {
            return Ok(None);
        }
        let held = self.store.held_by(op).await?;
        let rec = self
            .store
            .operators()
            .await?
            .into_iter()
            .find(|o| o.id == op)
            .ok_or(EngineError::NotFound)?;
        if held.iter().map(|c| c.weight_on(rec.capacity)).sum::<u32>() >= rec.capacity {
            return Err(EngineError::AtCapacity);
        }
        let taken = self
            .store
            .take_next(op, self.now_ms(), self.cfg.language_fallback_ms)
            .await?;
        match taken {
            Some(a) => {
                self.publish(&a, WithdrawReason::Taken).await;
                self.send_presence(op).await;
                Ok(Some(a.after.id))
            }
            None => Ok(None),
        }
    }

    pub async fn accept(
        self: &Arc<Self>,
        op: OperatorId,
        name: &str,
        conv: ConversationId,
        client_id: Ulid,
    ) -> Result<(), EngineError> {
        let cmd = Command::Accept {
            operator: op,
            operator_name: name.to_owned(),
        };
        self.apply(conv, cmd, Some(client_id)).await?;
        Ok(())
    }

    pub async fn decline(
        &self,
        op: OperatorId,
        conv: ConversationId,
        client_id: Ulid,
    ) -> Result<(), EngineError> {
        let cmd = Command::Decline { operator: op };
        self.apply(conv, cmd, Some(client_id)).await?;
        Ok(())
    }

    pub async fn operator_send(
        &self,
        op: OperatorId,
        conv: ConversationId,
        client_id: impl Into<ClientId>,
        text: String,
    ) -> Result<Option<u64>, EngineError> {
        self.store_message(conv, Side::Operator, Some(op), client_id.into(), text)
            .await
    }

    pub async fn operator_typing(&self, op: OperatorId, conv: ConversationId, active: bool) {
        if let Ok(Some(c)) = self.store.get(conv).await {
            if c.state == (State::Active { operator: op }) {
                self.to_visitor(
                    conv,
                    Outbound::frame(ServerMsg::Typing {
                        conversation: None,
                        from: Side::Operator,
                        active,
                    }),
                );
            }
        }
    }

    pub async fn transfer(
        self: &Arc<Self>,
        op: OperatorId,
        conv: ConversationId,
        to: Option<OperatorId>,
        note: Option<String>,
        client_id: Ulid,
    ) -> Result<(), EngineError> {
        let cmd = match to {
            None => Command::Requeue { operator: op },
            Some(to) => {
                let target = self
                    .store
                    .operators()
                    .await?
                    .into_iter()
                    .find(|o| o.id == to && o.connected && o.presence == Presence::OnDuty)
                    .ok_or(EngineError::NotFound)?;
                // The colleague must have room for it (a chat never lands on someone on a call).
                let this = self.store.get(conv).await?.ok_or(EngineError::NotFound)?;
                let load: u32 = self
                    .store
                    .held_by(target.id)
                    .await?
                    .iter()
                    .map(|c| c.weight_on(target.capacity))
                    .sum();
                if load + this.weight_on(target.capacity) > target.capacity {
                    return Err(EngineError::AtCapacity);
                }
                Command::Transfer {
                    from: op,
                    to: target.id,
                    note,
                    expires_at: self.now_ms() + self.cfg.offer_timeout_ms,
                }
            }
        };
        self.apply(conv, cmd, Some(client_id)).await?;
        Ok(())
    }

    pub async fn operator_end(
        &self,
        op: OperatorId,
        conv: ConversationId,
        client_id: Ulid,
    ) -> Result<(), EngineError> {
        let cmd = Command::OperatorEnd { operator: op };
        self.apply(conv, cmd, Some(client_id)).await?;
        Ok(())
    }

    pub async fn wrap_up(
        self: &Arc<Self>,
        op: OperatorId,
        conv: ConversationId,
        category: String,
        client_id: Ulid,
    ) -> Result<(), EngineError> {
        if !self.cfg.categories.contains(&category) {
            return Err(EngineError::UnknownCategory);
        }
        let cmd = Command::WrapUp {
            operator: op,
            category,
        };
        self.apply(conv, cmd, Some(client_id)).await?;
        Ok(())
    }

    /// On-duty, connected colleagues of `op`, for transfer.
    pub async fn colleagues(&self, op: OperatorId) -> Result<Vec<serde_json::Value>, EngineError> {
        let ops = self.store.operators().await?;
        let convs = self.store.conversations().await?;
        Ok(ops
            .into_iter()
            .filter(|o| o.id != op && o.connected && o.presence == Presence::OnDuty)
            .map(|o| {
                let load: u32 = convs
                    .iter()
                    .filter(|c| c.state.operator() == Some(o.id))
                    .map(|c| c.weight_on(o.capacity))
                    .sum();
                serde_json::json!({
                    "id": o.id, "name": o.name, "state": o.presence,
                    "load": load, "capacity": o.capacity,
                })
            })
            .collect())
    }
}
