//! The audit trail, `audit.jsonl` beside the records: who listed, viewed, delivered or let
//! expire which record, when. It holds ids and names, never content; each entry names its actor
//! by account id (display names are not unique) and shows the name beside it. It fails closed:
//! an action whose entry cannot be written is refused. The audited reads ([`Escalations::list`],
//! [`Escalations::read`]) live here too.

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::{EscalationError, Escalations, Record, RecordSummary};
use crate::protocol::Millis;

const AUDIT_FILE: &str = "audit.jsonl";

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

impl Escalations {
    /// Every readable record, without content, newest first.
    pub(super) fn summaries(&self) -> Vec<RecordSummary> {
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for entry in dir.filter_map(Result::ok) {
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".rec"))
                .and_then(|n| n.split_once('-'))
                .and_then(|(_, id)| Ulid::from_string(id).ok())
            else {
                continue;
            };
            let Ok(bytes) = std::fs::read(entry.path()) else {
                continue;
            };
            if let Ok(rec) = self.unseal(id, &bytes) {
                out.push(RecordSummary {
                    id: rec.id,
                    conversation: rec.conversation,
                    created_at: rec.created_at,
                    expires_at: rec.expires_at,
                    categories: rec.flags.iter().map(|f| f.category.clone()).collect(),
                    open: !rec.closed,
                    delivered: rec.delivered_at.is_some(),
                    delivery: match (rec.delivered_at, &self.cfg.webhook_url) {
                        (Some(_), _) => "delivered",
                        (None, Some(_)) => "pending",
                        (None, None) => "none",
                    },
                });
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        out
    }

    /// Lists records without content; recorded in the audit trail first, and refused if it
    /// cannot be.
    pub fn list(&self, actor: &Actor) -> Result<Vec<RecordSummary>, EscalationError> {
        self.audit(actor, "list", None)?;
        Ok(self.summaries())
    }

    /// One record, decrypted; every read is recorded in the audit trail, and a read that
    /// cannot be recorded is refused.
    pub fn read(&self, id: Ulid, actor: &Actor) -> Result<Record, EscalationError> {
        let rec = {
            let _g = self.guard();
            self.load(id)?
        };
        self.audit(actor, "view", Some(id))?;
        tracing::info!(record = %id, "escalation record viewed");
        Ok(rec)
    }

    /// Appends an entry to the audit trail (written through to the file before returning). The
    /// caller must not go on with the action if this fails.
    pub fn audit(
        &self,
        actor: &Actor,
        action: &str,
        record: Option<Ulid>,
    ) -> Result<(), EscalationError> {
        let entry = AuditEntry {
            at: self.clock.now_ms(),
            actor: actor.name.clone(),
            actor_id: actor.id,
            action: action.to_owned(),
            record,
        };
        let _g = self.guard();
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(AUDIT_FILE))?;
            let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
            line.push(b'\n');
            f.write_all(&line)?;
            f.sync_data()
        };
        write().map_err(|e| {
            tracing::error!(error = %e, action, "could not append to the audit trail; action refused");
            EscalationError::Io(e)
        })
    }

    pub fn audit_trail(&self) -> Vec<AuditEntry> {
        let _g = self.guard();
        std::fs::read_to_string(self.dir.join(AUDIT_FILE))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}
