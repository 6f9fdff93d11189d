//! The audit trail, the database's append-only `escalation_audit` table: who listed, viewed,
//! delivered or let expire which record, when. It holds ids and names, never content; each
//! entry names its actor by account id (display names are not unique) and shows the name
//! beside it. It fails closed: an action whose entry cannot be written is refused. The audited
//! reads ([`Escalations::list`], [`Escalations::read`]) live here too.

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::{EscalationError, Escalations, Record, RecordSummary};
use crate::db::AuditRow;
use crate::protocol::Millis;

/// Who did something: the account's id, which identifies it (display names are not unique),
/// and the name shown for it. `id` is `None` for the system and the person reaching out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actor {
    pub id: Option<Ulid>,
    pub name: String,
}

impl Actor {
    pub fn account(id: Ulid, name: impl Into<String>) -> Self {
        Actor {
            id: Some(id),
            name: name.into(),
        }
    }

    pub fn system() -> Self {
        Actor {
            id: None,
            name: "system".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    pub at: Millis,
    /// The name shown for the actor.
    pub actor: String,
    /// The account that acted (none for the system): what identifies the actor.
    #[serde(default)]
    pub actor_id: Option<Ulid>,
    pub action: String,
    pub record: Option<Ulid>,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        AuditEntry {
            at: r.at,
            actor: r.actor_name,
            actor_id: r.actor_id,
            action: r.action,
            record: r.record_id,
        }
    }
}

impl Escalations {
    /// Every readable record, without content, newest first.
    pub(super) async fn summaries(&self) -> Result<Vec<RecordSummary>, EscalationError> {
        let mut out = Vec::new();
        for row in self.db.escalations().await? {
            let Ok(rec) = self.unseal(row.id, &row.sealed) else {
                continue;
            };
            let delivered_at = rec.delivered_at.or(row.delivered_at);
            out.push(RecordSummary {
                id: rec.id,
                conversation: rec.conversation,
                created_at: rec.created_at,
                expires_at: rec.expires_at,
                categories: rec.flags.iter().map(|f| f.category.clone()).collect(),
                open: !rec.closed,
                delivered: delivered_at.is_some(),
                delivery: match (delivered_at, &self.cfg.webhook_url) {
                    (Some(_), _) => "delivered",
                    (None, Some(_)) => "pending",
                    (None, None) => "none",
                },
            });
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        Ok(out)
    }

    /// Lists records without content; recorded in the audit trail first, and refused if it
    /// cannot be.
    pub async fn list(&self, actor: &Actor) -> Result<Vec<RecordSummary>, EscalationError> {
        self.audit(actor, "list", None).await?;
        self.summaries().await
    }

    /// One record, decrypted; every read is recorded in the audit trail, and a read that
    /// cannot be recorded is refused.
    pub async fn read(&self, id: Ulid, actor: &Actor) -> Result<Record, EscalationError> {
        let rec = self.load(id).await?;
        self.audit(actor, "view", Some(id)).await?;
        tracing::info!(record = %id, "escalation record viewed");
        Ok(rec)
    }

    /// Appends an entry to the audit trail (committed before returning). The caller must not
    /// go on with the action if this fails.
    pub async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        record: Option<Ulid>,
    ) -> Result<(), EscalationError> {
        let entry = AuditRow {
            at: self.clock.now_ms(),
            actor_name: actor.name.clone(),
            actor_id: actor.id,
            action: action.to_owned(),
            record_id: record,
        };
        self.db.append_audit(&entry).await.map_err(|e| {
            tracing::error!(error = %e, action, "could not append to the audit trail; action refused");
            EscalationError::Db(e)
        })
    }

    /// The audit trail, oldest first.
    pub async fn audit_trail(&self) -> Result<Vec<AuditEntry>, EscalationError> {
        Ok(self
            .db
            .audit_trail()
            .await?
            .into_iter()
            .map(AuditEntry::from)
            .collect())
    }
}
