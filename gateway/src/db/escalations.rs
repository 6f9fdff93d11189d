//! The `escalation_records` and `escalation_audit` tables: encrypted escalation records as
//! stored, their retention and delivery state, and the append-only audit trail. The rules
//! (what a record holds, the key, when to deliver) are the `escalation` module's; this file
//! only reads and writes rows, and never sees a key or a plaintext record.
//!
//! Where several nodes share the database, each step that must happen once is one conditional
//! statement: a rewrite names the version it read (a stale one changes nothing), the retention
//! sweep deletes with `DELETE … RETURNING` (only the node whose statement returned a row audits
//! and counts it), and a delivery is claimed with a conditional `UPDATE` before it is sent.

use sqlx::any::AnyRow;
use sqlx::Row;
use ulid::Ulid;

use super::claim::{millis, to_i64, ulid, AnyQuery, Claimable};
use super::{Db, DbError};

/// One row of `escalation_records`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    pub id: Ulid,
    /// Magic, nonce and ciphertext, exactly as the record was sealed.
    pub sealed: Vec<u8>,
    /// Bumped by every rewrite ([`Db::replace_escalation`]).
    pub version: i64,
    pub created_at: u64,
    pub expires_at: u64,
    pub closed_at: Option<u64>,
    pub delivered_at: Option<u64>,
    pub delivery_attempts: u32,
    pub next_attempt_at: Option<u64>,
}

/// One entry of the audit trail: who did what to which record, when. No content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub at: u64,
    /// The account that acted; `None` for the system.
    pub actor_id: Option<Ulid>,
    /// The name shown for the actor at the time.
    pub actor_name: String,
    pub action: String,
    pub record_id: Option<Ulid>,
}

/// What [`Db::import_escalations`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EscalationImport {
    /// Records added.
    pub imported: usize,
    /// Records the database already held: left as they are.
    pub present: usize,
    /// Audit entries added.
    pub audit_imported: usize,
}

const RECORD_COLUMNS: &str = "id, sealed, version, created_at, expires_at, closed_at, \
                              delivered_at, delivery_attempts, next_attempt_at";

fn record_from_row(row: &AnyRow) -> Result<SealedRecord, DbError> {
    let id: String = row.try_get("id")?;
    let attempts: i64 = row.try_get("delivery_attempts")?;
    Ok(SealedRecord {
        id: ulid(&id, "a record id")?,
        sealed: row.try_get("sealed")?,
        version: row.try_get("version")?,
        created_at: millis(row.try_get("created_at")?).unwrap_or(0),
        expires_at: millis(row.try_get("expires_at")?).unwrap_or(0),
        closed_at: millis(row.try_get("closed_at")?),
        delivered_at: millis(row.try_get("delivered_at")?),
        delivery_attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt_at: millis(row.try_get("next_attempt_at")?),
    })
}

fn audit_from_row(row: &AnyRow) -> Result<AuditRow, DbError> {
    let actor_id: Option<String> = row.try_get("actor_id")?;
    let record_id: Option<String> = row.try_get("record_id")?;
    Ok(AuditRow {
        at: millis(row.try_get("at")?).unwrap_or(0),
        actor_id: actor_id.map(|s| ulid(&s, "an actor id")).transpose()?,
        actor_name: row.try_get("actor_name")?,
        action: row.try_get("action")?,
        record_id: record_id.map(|s| ulid(&s, "a record id")).transpose()?,
    })
}

const INSERT_AUDIT: &str =
    "INSERT INTO escalation_audit (at, actor_id, actor_name, action, record_id) \
     VALUES ($1, $2, $3, $4, $5)";

fn insert_audit(a: &AuditRow) -> AnyQuery<'_> {
    sqlx::query(INSERT_AUDIT)
        .bind(to_i64(a.at))
        .bind(a.actor_id.map(|i| i.to_string()))
        .bind(a.actor_name.clone())
        .bind(a.action.clone())
        .bind(a.record_id.map(|i| i.to_string()))
}

const INSERT_RECORD: &str = "INSERT INTO escalation_records \
     (id, sealed, version, created_at, expires_at, closed_at, delivered_at) \
     VALUES ($1, $2, 1, $3, $4, $5, $6)";

fn insert_record(r: &SealedRecord) -> AnyQuery<'_> {
    sqlx::query(INSERT_RECORD)
        .bind(r.id.to_string())
        .bind(r.sealed.clone())
        .bind(to_i64(r.created_at))
        .bind(to_i64(r.expires_at))
        .bind(r.closed_at.map(to_i64))
        .bind(r.delivered_at.map(to_i64))
}

impl Db {
    /// Adds a record (version 1); [`DbError::Conflict`] if its id is taken.
    pub async fn insert_escalation(&self, r: &SealedRecord) -> Result<(), DbError> {
        insert_record(r).execute(self.pool()).await?;
        Ok(())
    }

    pub async fn escalation(&self, id: Ulid) -> Result<Option<SealedRecord>, DbError> {
        let row = sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM escalation_records WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// Every record, newest first.
    pub async fn escalations(&self) -> Result<Vec<SealedRecord>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM escalation_records ORDER BY created_at DESC, id DESC"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Rewrites a record read at `version`: `false` (nothing changed) if it has been rewritten
    /// since, or is gone. The closing time, once set, stays.
    pub async fn replace_escalation(
        &self,
        id: Ulid,
        version: i64,
        sealed: Vec<u8>,
        expires_at: u64,
        closed_at: Option<u64>,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE escalation_records SET sealed = $1, version = version + 1, expires_at = $2, \
             closed_at = COALESCE(closed_at, $3) WHERE id = $4 AND version = $5",
        )
        .bind(sealed)
        .bind(to_i64(expires_at))
        .bind(closed_at.map(to_i64))
        .bind(id.to_string())
        .bind(version)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes a record; `false` if there was none.
    pub async fn delete_escalation(&self, id: Ulid) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM escalation_records WHERE id = $1")
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes every record expired at `now` and audits each deletion (`expired`, by the
    /// system), in one transaction: a deletion the trail cannot show is not made. Returns the
    /// records this call deleted; a record another node's sweep deleted first is not among
    /// them, so each deletion is audited once.
    pub async fn sweep_escalations(&self, now: u64) -> Result<Vec<Ulid>, DbError> {
        let mut tx = self.pool().begin().await?;
        let rows =
            sqlx::query("DELETE FROM escalation_records WHERE expires_at <= $1 RETURNING id")
                .bind(to_i64(now))
                .fetch_all(&mut *tx)
                .await?;
        let mut deleted = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            let id = ulid(&id, "a record id")?;
            let entry = AuditRow {
                at: now,
                actor_id: None,
                actor_name: "system".into(),
                action: "expired".into(),
                record_id: Some(id),
            };
            insert_audit(&entry).execute(&mut *tx).await?;
            deleted.push(id);
        }
        tx.commit().await?;
        Ok(deleted)
    }

    /// Closed, undelivered records whose next delivery attempt is due at `now` and that no
    /// node holds a claim on.
    pub async fn due_deliveries(&self, now: u64) -> Result<Vec<Ulid>, DbError> {
        let rows = sqlx::query(
            "SELECT id FROM escalation_records WHERE closed_at IS NOT NULL \
             AND delivered_at IS NULL \
             AND (next_attempt_at IS NULL OR next_attempt_at <= $1) \
             AND (claimed_until IS NULL OR claimed_until <= $1) ORDER BY created_at",
        )
        .bind(to_i64(now))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                ulid(&id, "a record id")
            })
            .collect()
    }

    /// Claims record `id`'s delivery until `now + lease_ms`, counting the attempt: `true` for
    /// exactly one of several nodes asking at once. `false`: delivered already, not due, gone,
    /// or another node's claim holds.
    pub async fn claim_delivery(&self, id: Ulid, now: u64, lease_ms: u64) -> Result<bool, DbError> {
        const RECORD: Claimable = Claimable {
            table: "escalation_records",
            attempts: "delivery_attempts",
            due: "closed_at IS NOT NULL AND delivered_at IS NULL \
                  AND (next_attempt_at IS NULL OR next_attempt_at <= $3)",
        };
        self.claim(&RECORD, id, now, lease_ms).await
    }

    /// A claimed delivery was acknowledged: audited (`delivered`) and marked delivered, or
    /// (`delete`) audited again (`deleted_after_delivery`) and deleted, in one transaction. An
    /// error leaves the record pending: it is delivered (same id) and audited again later.
    pub async fn delivery_succeeded(
        &self,
        id: Ulid,
        now: u64,
        delete: bool,
    ) -> Result<(), DbError> {
        let entry = |action: &str| AuditRow {
            at: now,
            actor_id: None,
            actor_name: "system".into(),
            action: action.into(),
            record_id: Some(id),
        };
        let mut tx = self.pool().begin().await?;
        insert_audit(&entry("delivered")).execute(&mut *tx).await?;
        if delete {
            insert_audit(&entry("deleted_after_delivery"))
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM escalation_records WHERE id = $1")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query(
                "UPDATE escalation_records SET delivered_at = $1, claimed_until = NULL, \
                 next_attempt_at = NULL WHERE id = $2",
            )
            .bind(to_i64(now))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A claimed delivery failed: the claim ends and the next attempt waits until `next_at`.
    pub async fn delivery_failed(&self, id: Ulid, next_at: u64) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE escalation_records SET claimed_until = NULL, next_attempt_at = $1 \
             WHERE id = $2",
        )
        .bind(to_i64(next_at))
        .bind(id.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Appends an entry to the audit trail.
    pub async fn append_audit(&self, entry: &AuditRow) -> Result<(), DbError> {
        insert_audit(entry).execute(self.pool()).await?;
        Ok(())
    }

    /// The audit trail, in the order it was written.
    pub async fn audit_trail(&self) -> Result<Vec<AuditRow>, DbError> {
        let rows = sqlx::query(
            "SELECT at, actor_id, actor_name, action, record_id FROM escalation_audit ORDER BY seq",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(audit_from_row).collect()
    }

    /// Adds the records the database lacks (a record id already there is left as it is, and
    /// each record added is audited `imported`) and the audit entries it lacks (the k-th of
    /// identical entries is added when the trail holds fewer than k), in one transaction.
    /// Importing the same directory twice changes nothing the second time.
    pub async fn import_escalations(
        &self,
        records: &[SealedRecord],
        audit: &[AuditRow],
        now: u64,
    ) -> Result<EscalationImport, DbError> {
        let mut out = EscalationImport::default();
        let mut tx = self.pool().begin().await?;
        let mut seen: Vec<(&AuditRow, i64)> = Vec::new();
        for a in audit {
            let k = match seen.iter_mut().find(|(b, _)| *b == a) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    seen.push((a, 1));
                    1
                }
            };
            let held: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM escalation_audit WHERE at = $1 AND actor_name = $2 \
                 AND action = $3 AND COALESCE(actor_id, '') = $4 AND COALESCE(record_id, '') = $5",
            )
            .bind(to_i64(a.at))
            .bind(a.actor_name.clone())
            .bind(a.action.clone())
            .bind(a.actor_id.map(|i| i.to_string()).unwrap_or_default())
            .bind(a.record_id.map(|i| i.to_string()).unwrap_or_default())
            .fetch_one(&mut *tx)
            .await?;
            if held < k {
                insert_audit(a).execute(&mut *tx).await?;
                out.audit_imported += 1;
            }
        }
        for r in records {
            let held: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM escalation_records WHERE id = $1")
                    .bind(r.id.to_string())
                    .fetch_one(&mut *tx)
                    .await?;
            if held > 0 {
                out.present += 1;
                continue;
            }
            insert_record(r).execute(&mut *tx).await?;
            let entry = AuditRow {
                at: now,
                actor_id: None,
                actor_name: "system".into(),
                action: "imported".into(),
                record_id: Some(r.id),
            };
            insert_audit(&entry).execute(&mut *tx).await?;
            out.imported += 1;
        }
        tx.commit().await?;
        Ok(out)
    }
}
