//! What needs a coordinator: an operator's call for help, alerts and their acknowledgement,
//! emergency flags (by the holding operator or a coordinator) and their clearing, each written
//! to the encrypted escalation record before it is applied, and overloaded mode.

use std::sync::atomic::Ordering;

use ulid::Ulid;

use super::{Engine, EngineError};
use crate::clock::Millis;
use crate::cluster::BusMsg;
use crate::conversation::{Command, Conversation, ConversationId, OperatorId};
use crate::escalation::{Action, Actor, Escalations, FlagEntry};
use crate::protocol::MAX_NOTE_CHARS;

/// The reason given for a flag or for clearing one, trimmed: refused when it is empty or longer
/// than a note may be.
fn checked_reason(reason: String) -> Result<String, EngineError> {
    let reason = reason.trim().to_owned();
    if reason.is_empty() {
        return Err(EngineError::NoReason);
    }
    if reason.chars().count() > MAX_NOTE_CHARS {
        return Err(EngineError::ReasonTooLong);
    }
    Ok(reason)
}

impl Engine {
    /// An operator asks a coordinator for help with a conversation they hold.
    pub async fn help(
        &self,
        op: OperatorId,
        name: &str,
        conv: ConversationId,
    ) -> Result<(), EngineError> {
        let c = self.store.get(conv).await?.ok_or(EngineError::NotFound)?;
        if c.state.operator() != Some(op) {
            return Err(EngineError::NotYours);
        }
        let alert = self.stats().raise_help(name, conv, self.now_ms());
        let id = alert.id;
        self.share_alert(alert);
        self.announce(
            crate::alerting::AlertKind::Help,
            Some(id),
            Some(conv),
            None,
            1,
            None,
        )
        .await;
        tracing::info!(operator = %op, conversation = %conv, "help requested");
        Ok(())
    }

    /// Acknowledges an alert; `Ok(false)` if there is no such alert. An emergency alert's
    /// acknowledgement is written to the escalation record first, and refused
    /// ([`EngineError::RecordUnavailable`]) if it cannot be: the record is the trail of who did what.
    pub async fn ack_alert(&self, alert: Ulid, by: &Actor) -> Result<bool, EngineError> {
        let Some((conv, emergency)) = self.stats().alert(alert) else {
            return Ok(false);
        };
        let mut summary = None;
        if emergency {
            if let Ok(Some(c)) = self.store.get(conv).await {
                if let (Some(esc), Some(e)) = (&self.escalations, &c.emergency) {
                    let at = self.now_ms();
                    let written = esc
                        .update(e.record, |r| {
                            r.actions.push(Action {
                                at,
                                actor: by.name.clone(),
                                actor_id: by.id,
                                action: "alert_acknowledged".into(),
                                detail: None,
                            })
                        })
                        .await;
                    if let Err(err) = written {
                        tracing::error!(record = %e.record, error = %err, "could not write escalation record; acknowledgement refused");
                        return Err(EngineError::RecordUnavailable);
                    }
                }
                summary = Some(c);
            }
        }
        if self
            .stats()
            .ack_alert(alert, &by.name, self.now_ms())
            .is_none()
        {
            return Ok(false);
        }
        if let Some(bus) = &self.bus {
            bus.send(BusMsg::AlertAcknowledged {
                id: alert,
                by: by.name.clone(),
            });
        }
        if let Some(c) = summary {
            // The operator's banner shows who acknowledged.
            self.send_summary(&c);
        }
        Ok(true)
    }

    /// What a flag and a clearing both start from: flagging must be on, the reason given, the
    /// conversation there. Gives the escalations, the checked reason, now and the conversation.
    async fn flag_step(
        &self,
        conv: ConversationId,
        reason: String,
    ) -> Result<(&Escalations, String, Millis, Conversation), EngineError> {
        let esc = self
            .escalations
            .as_ref()
            .ok_or(EngineError::FlaggingDisabled)?;
        let reason = checked_reason(reason)?;
        let now = self.now_ms();
        let current = self.store.get(conv).await?.ok_or(EngineError::NotFound)?;
        Ok((esc, reason, now, current))
    }

    /// Records an emergency flag (or adds to one): by the holding operator (`operator` set) or
    /// by a coordinator (`None`). Opens or extends the encrypted escalation record and alerts
    /// the coordinators.
    pub async fn flag(
        &self,
        operator: Option<OperatorId>,
        by: &Actor,
        conv: ConversationId,
        category: String,
        reason: String,
        client_id: Option<Ulid>,
    ) -> Result<(), EngineError> {
        let (esc, reason, now, current) = self.flag_step(conv, reason).await?;
        // Check what the state machine would refuse before writing anything.
        let mut trial = current.clone();
        let record = current
            .emergency
            .as_ref()
            .map(|e| e.record)
            .unwrap_or_else(Ulid::new);
        let cmd = Command::Flag {
            operator,
            by: by.name.clone(),
            category: category.clone(),
            record,
        };
        trial.apply(cmd.clone(), now)?;

        // The record first: if it cannot be written, nothing is stored and the client's retry
        // (same id) tries again. Flag entries carry the client id, so a retry adds nothing twice.
        let entry = FlagEntry {
            id: client_id,
            category: category.clone(),
            reason,
            by: by.name.clone(),
            by_id: by.id,
            at: now,
        };
        // What the record's trail says of this flag (and of a flag merged into another record).
        let added = Action {
            at: now,
            actor: by.name.clone(),
            actor_id: by.id,
            action: "flag_added".into(),
            detail: Some(category.clone()),
        };
        let created = current.emergency.is_none();
        let written = if created {
            let log = self.store.read_log(conv, 0).await?;
            esc.create(&current, record, self.channel_ref(conv), entry, &log)
                .await
        } else {
            esc.update(record, |r| {
                if client_id.is_some() && r.flags.iter().any(|f| f.id == client_id) {
                    return;
                }
                r.flags.push(entry.clone());
                r.actions.push(added.clone());
            })
            .await
            .map(|_| ())
        };
        if let Err(err) = written {
            tracing::error!(conversation = %conv, record = %record, error = %err, "could not write escalation record");
            return Err(EngineError::RecordUnavailable);
        }
        let a = match self.store.apply(conv, cmd, client_id, now).await {
            Ok(a) => a,
            Err(e) => {
                if created {
                    esc.discard(record).await;
                }
                return Err(e.into());
            }
        };
        if a.duplicate.is_some() {
            return Ok(());
        }
        if let Some(e) = a.after.emergency.as_ref().filter(|e| e.record != record) {
            // Someone else flagged this conversation at the same moment: keep one record.
            tracing::warn!(conversation = %conv, "concurrent first flags: merged into one record");
            if created {
                esc.discard(record).await;
            }
            let _ = esc
                .update(e.record, |r| r.actions.push(added.clone()))
                .await;
        }
        let alert =
            self.stats()
                .raise_emergency(a.after.operator_name.as_deref(), conv, &category, now);
        let alert_id = alert.id;
        self.share_alert(alert);
        self.metrics.emergency();
        let record = a.after.emergency.as_ref().map_or(record, |e| e.record);
        self.alert_emergency(alert_id, conv, record, &category)
            .await;
        if created {
            // The record goes to the case system now, and again complete at the close.
            let esc = self.escalations.clone();
            let now = self.now_ms();
            tokio::spawn(async move {
                if let Some(esc) = esc {
                    esc.deliver_raised(record, now).await;
                }
            });
        }
        tracing::warn!(conversation = %conv, record = %record, "emergency flagged; coordinators alerted");
        self.send_summary(&a.after);
        Ok(())
    }

    /// A coordinator clears an open emergency; the record keeps the clearing and its reason.
    /// The record first, as for a flag: a clearing the record cannot show is refused.
    pub async fn clear_flag(
        &self,
        by: &Actor,
        conv: ConversationId,
        reason: String,
    ) -> Result<(), EngineError> {
        let (esc, reason, now, current) = self.flag_step(conv, reason).await?;
        // Check what the state machine would refuse before writing anything.
        current.clone().apply(Command::ClearFlag, now)?;
        let record = current.emergency.as_ref().map(|e| e.record);
        let action = Action {
            at: now,
            actor: by.name.clone(),
            actor_id: by.id,
            action: "flag_cleared".into(),
            detail: Some(reason),
        };
        if let Some(record) = record {
            if let Err(err) = esc.update(record, |r| r.actions.push(action.clone())).await {
                tracing::error!(conversation = %conv, record = %record, error = %err, "could not write escalation record; clearing refused");
                return Err(EngineError::RecordUnavailable);
            }
        }
        let a = match self.store.apply(conv, Command::ClearFlag, None, now).await {
            Ok(a) => a,
            Err(e) => {
                // Not cleared after all: the record does not say it was.
                if let Some(record) = record {
                    let _ = esc
                        .update(record, |r| {
                            if let Some(i) = r.actions.iter().rposition(|x| *x == action) {
                                r.actions.remove(i);
                            }
                        })
                        .await;
                }
                return Err(e.into());
            }
        };
        tracing::info!(conversation = %conv, "emergency cleared by a coordinator");
        self.send_summary(&a.after);
        Ok(())
    }

    /// Who acknowledged the latest emergency alert of a conversation, if anyone.
    pub fn emergency_acknowledged_by(&self, conv: ConversationId) -> Option<String> {
        self.stats().emergency_acknowledged_by(conv)
    }

    /// Switches overloaded mode on or off (`by`: the coordinator's account id). Waiting people
    /// get their queue position again, with the mode, on the next position tick.
    pub fn set_overloaded(&self, on: bool, by: &str) {
        let was = self.overloaded.swap(on, Ordering::SeqCst);
        if was != on {
            tracing::info!(overloaded = on, by = %by, "overloaded mode switched");
        }
        if let Some(bus) = &self.bus {
            bus.send(BusMsg::Overloaded { on });
        }
    }

    /// Whether the service is in overloaded mode.
    pub fn is_overloaded(&self) -> bool {
        self.overloaded.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_trimmed_and_must_be_there_and_fit_in_a_note() {
        assert_eq!(checked_reason("  risk  ".into()).unwrap(), "risk");
        assert!(matches!(
            checked_reason(" \n ".into()),
            Err(EngineError::NoReason)
        ));
        let long = "x".repeat(MAX_NOTE_CHARS + 1);
        assert!(matches!(
            checked_reason(long),
            Err(EngineError::ReasonTooLong)
        ));
        assert!(checked_reason("x".repeat(MAX_NOTE_CHARS)).is_ok());
    }
}
