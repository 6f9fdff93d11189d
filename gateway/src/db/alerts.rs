//! The `alerts`, `alert_deliveries`, `alert_ack_tokens` and `alert_audit` tables: alerts as
//! raised, each message to each person by each channel with its delivery state, single-use
//! acknowledgement links (hashes only) and the append-only audit trail. The rules (who is paged,
//! when to retry or escalate) are the `oncall` module's; this file reads and writes rows.
//!
//! Several nodes share these rows, so every step that must happen once is one conditional
//! statement: a delivery is claimed (`claimed_until`) before it is sent, an escalation step
//! names the level it read, an acknowledgement sets `acknowledged_at` only where it is empty,
//! and a link is used with `UPDATE … WHERE used_at IS NULL … RETURNING`.

use sqlx::any::AnyRow;
use sqlx::Row;
use ulid::Ulid;

use super::claim::{millis, to_i64, ulid, AnyQuery, Claimable};
use super::{Db, DbError};

/// One row of `alerts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    pub id: Ulid,
    pub kind: String,
    pub severity: String,
    pub category: Option<String>,
    pub value: i64,
    pub waiting: i64,
    pub started_at: u64,
    pub acknowledged_at: Option<u64>,
    pub acknowledged_by: Option<Ulid>,
    pub acknowledged_name: Option<String>,
    pub acknowledged_channel: Option<String>,
    /// Escalation steps taken: 0 (the first person on the rota), 1 (the next), 2 (everyone).
    pub level: i64,
    pub next_escalation_at: Option<u64>,
}

/// One row of `alert_deliveries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub id: Ulid,
    pub alert_id: Ulid,
    pub account_id: Ulid,
    pub channel: String,
    /// `pending`, `sent`, `failed` (attempts exhausted) or `cancelled` (acknowledged first).
    pub status: String,
    pub attempts: u32,
    pub next_at: u64,
    pub sent_at: Option<u64>,
}

/// One entry of the alert audit trail: who, when, what, which alert, which channel, the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertAuditRow {
    pub at: u64,
    pub actor_id: Option<Ulid>,
    pub actor_name: String,
    pub action: String,
    pub alert_id: Option<Ulid>,
    pub channel: Option<String>,
    /// A result or a count (`sent`, `status 500`, `3 on call`); never content.
    pub detail: Option<String>,
}

impl AlertAuditRow {
    /// An entry by the system (no account).
    pub fn system(at: u64, action: &str, alert: Option<Ulid>) -> Self {
        AlertAuditRow {
            at,
            actor_id: None,
            actor_name: "system".into(),
            action: action.into(),
            alert_id: alert,
            channel: None,
            detail: None,
        }
    }
}

/// An acknowledgement link's row: for which alert and person, by which channel, and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckTokenRow {
    pub alert_id: Ulid,
    pub account_id: Ulid,
    pub channel: String,
    pub expires_at: u64,
    pub used_at: Option<u64>,
}

const ALERT_COLUMNS: &str = "id, kind, severity, category, value, waiting, \
     started_at, acknowledged_at, acknowledged_by, acknowledged_name, acknowledged_channel, \
     level, next_escalation_at";

const DELIVERY_COLUMNS: &str =
    "id, alert_id, account_id, channel, status, attempts, next_at, sent_at";

fn alert_from_row(row: &AnyRow) -> Result<AlertRow, DbError> {
    let id: String = row.try_get("id")?;
    let by: Option<String> = row.try_get("acknowledged_by")?;
    Ok(AlertRow {
        id: ulid(&id, "an alert id")?,
        kind: row.try_get("kind")?,
        severity: row.try_get("severity")?,
        category: row.try_get("category")?,
        value: row.try_get("value")?,
        waiting: row.try_get("waiting")?,
        started_at: millis(row.try_get("started_at")?).unwrap_or(0),
        acknowledged_at: millis(row.try_get("acknowledged_at")?),
        acknowledged_by: by.map(|s| ulid(&s, "an account id")).transpose()?,
        acknowledged_name: row.try_get("acknowledged_name")?,
        acknowledged_channel: row.try_get("acknowledged_channel")?,
        level: row.try_get("level")?,
        next_escalation_at: millis(row.try_get("next_escalation_at")?),
    })
}

fn delivery_from_row(row: &AnyRow) -> Result<DeliveryRow, DbError> {
    let id: String = row.try_get("id")?;
    let alert: String = row.try_get("alert_id")?;
    let account: String = row.try_get("account_id")?;
    let attempts: i64 = row.try_get("attempts")?;
    Ok(DeliveryRow {
        id: ulid(&id, "a delivery id")?,
        alert_id: ulid(&alert, "an alert id")?,
        account_id: ulid(&account, "an account id")?,
        channel: row.try_get("channel")?,
        status: row.try_get("status")?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_at: millis(row.try_get("next_at")?).unwrap_or(0),
        sent_at: millis(row.try_get("sent_at")?),
    })
}

fn audit_from_row(row: &AnyRow) -> Result<AlertAuditRow, DbError> {
    let actor: Option<String> = row.try_get("actor_id")?;
    let alert: Option<String> = row.try_get("alert_id")?;
    Ok(AlertAuditRow {
        at: millis(row.try_get("at")?).unwrap_or(0),
        actor_id: actor.map(|s| ulid(&s, "an actor id")).transpose()?,
        actor_name: row.try_get("actor_name")?,
        action: row.try_get("action")?,
        alert_id: alert.map(|s| ulid(&s, "an alert id")).transpose()?,
        channel: row.try_get("channel")?,
        detail: row.try_get("detail")?,
    })
}

pub(super) fn insert_audit(a: &AlertAuditRow) -> AnyQuery<'_> {
    sqlx::query(
        "INSERT INTO alert_audit (at, actor_id, actor_name, action, alert_id, channel, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(to_i64(a.at))
    .bind(a.actor_id.map(|i| i.to_string()))
    .bind(a.actor_name.clone())
    .bind(a.action.clone())
    .bind(a.alert_id.map(|i| i.to_string()))
    .bind(a.channel.clone())
    .bind(a.detail.clone())
}

fn insert_delivery(d: &DeliveryRow) -> AnyQuery<'_> {
    sqlx::query(
        "INSERT INTO alert_deliveries (id, alert_id, account_id, channel, status, attempts, next_at) \
         VALUES ($1, $2, $3, $4, $5, 0, $6) ON CONFLICT (alert_id, account_id, channel) DO NOTHING",
    )
    .bind(d.id.to_string())
    .bind(d.alert_id.to_string())
    .bind(d.account_id.to_string())
    .bind(d.channel.clone())
    .bind(d.status.clone())
    .bind(to_i64(d.next_at))
}

impl Db {
    /// Adds an alert with its first deliveries and audit entries, in one transaction.
    pub async fn insert_alert(
        &self,
        a: &AlertRow,
        deliveries: &[DeliveryRow],
        audit: &[AlertAuditRow],
    ) -> Result<(), DbError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO alerts (id, kind, severity, category, value, waiting, \
             started_at, level, next_escalation_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(a.id.to_string())
        .bind(a.kind.clone())
        .bind(a.severity.clone())
        .bind(a.category.clone())
        .bind(a.value)
        .bind(a.waiting)
        .bind(to_i64(a.started_at))
        .bind(a.level)
        .bind(a.next_escalation_at.map(to_i64))
        .execute(&mut *tx)
        .await?;
        for d in deliveries {
            insert_delivery(d).execute(&mut *tx).await?;
        }
        for e in audit {
            insert_audit(e).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn alert(&self, id: Ulid) -> Result<Option<AlertRow>, DbError> {
        let row = sqlx::query(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(alert_from_row).transpose()
    }

    /// The latest alerts, newest first.
    pub async fn recent_alerts(&self, limit: u32) -> Result<Vec<AlertRow>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts ORDER BY started_at DESC, id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(alert_from_row).collect()
    }

    /// Unacknowledged alerts whose next escalation step is due at `now`.
    pub async fn due_escalations(&self, now: u64, limit: u32) -> Result<Vec<AlertRow>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE acknowledged_at IS NULL \
             AND next_escalation_at IS NOT NULL AND next_escalation_at <= $1 \
             ORDER BY next_escalation_at LIMIT $2"
        ))
        .bind(to_i64(now))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(alert_from_row).collect()
    }

    /// Takes an escalation step from `level` (as read) to `level + 1`, adding its deliveries
    /// and audit entries, in one transaction; `false` (nothing written) when another node took
    /// it, or the alert was acknowledged, first.
    pub async fn escalate_alert(
        &self,
        id: Ulid,
        level: i64,
        now: u64,
        next: Option<u64>,
        deliveries: &[DeliveryRow],
        audit: &[AlertAuditRow],
    ) -> Result<bool, DbError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE alerts SET level = level + 1, next_escalation_at = $1 \
             WHERE id = $2 AND level = $3 AND acknowledged_at IS NULL \
             AND next_escalation_at IS NOT NULL AND next_escalation_at <= $4",
        )
        .bind(next.map(to_i64))
        .bind(id.to_string())
        .bind(level)
        .bind(to_i64(now))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        for d in deliveries {
            insert_delivery(d).execute(&mut *tx).await?;
        }
        for e in audit {
            insert_audit(e).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Acknowledges an alert (the first acknowledgement sticks; pending deliveries are
    /// cancelled), auditing it, in one transaction. `false` if it was already acknowledged or
    /// there is no such alert (nothing written).
    pub async fn acknowledge_alert(
        &self,
        id: Ulid,
        at: u64,
        by: Option<Ulid>,
        name: &str,
        channel: &str,
    ) -> Result<bool, DbError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE alerts SET acknowledged_at = $1, acknowledged_by = $2, acknowledged_name = $3, \
             acknowledged_channel = $4, next_escalation_at = NULL \
             WHERE id = $5 AND acknowledged_at IS NULL",
        )
        .bind(to_i64(at))
        .bind(by.map(|b| b.to_string()))
        .bind(name.to_owned())
        .bind(channel.to_owned())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE alert_deliveries SET status = 'cancelled' WHERE alert_id = $1 AND status = 'pending'",
        )
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        insert_audit(&AlertAuditRow {
            at,
            actor_id: by,
            actor_name: name.to_owned(),
            action: "alert_acknowledged".into(),
            alert_id: Some(id),
            channel: Some(channel.to_owned()),
            detail: None,
        })
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Pending deliveries due at `now` and not claimed by a node, oldest first.
    pub async fn due_alert_deliveries(
        &self,
        now: u64,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE status = 'pending' \
             AND next_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1) \
             ORDER BY next_at LIMIT $2"
        ))
        .bind(to_i64(now))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// All deliveries of an alert, in the order they were made.
    pub async fn alert_deliveries(&self, alert: Ulid) -> Result<Vec<DeliveryRow>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE alert_id = $1 ORDER BY id"
        ))
        .bind(alert.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// Claims a due delivery for `lease_ms` and counts the attempt: `false` if another node has
    /// it, it is not due, or it is no longer pending. Only the claiming node sends.
    pub async fn claim_alert_delivery(
        &self,
        id: Ulid,
        now: u64,
        lease_ms: u64,
    ) -> Result<bool, DbError> {
        const DELIVERY: Claimable = Claimable {
            table: "alert_deliveries",
            attempts: "attempts",
            due: "status = 'pending' AND next_at <= $3",
        };
        self.claim(&DELIVERY, id, now, lease_ms).await
    }

    /// The outcome of a claimed attempt, audited in the same transaction: `sent`, or failed
    /// with the next attempt at `retry_at` (`None`: attempts exhausted, `failed`).
    pub async fn finish_alert_delivery(
        &self,
        id: Ulid,
        now: u64,
        sent: bool,
        retry_at: Option<u64>,
        audit: &AlertAuditRow,
    ) -> Result<(), DbError> {
        let mut tx = self.pool().begin().await?;
        let q = match (sent, retry_at) {
            (true, _) => sqlx::query(
                "UPDATE alert_deliveries SET status = 'sent', sent_at = $1, claimed_until = NULL \
                 WHERE id = $2",
            )
            .bind(to_i64(now)),
            (false, Some(at)) => sqlx::query(
                "UPDATE alert_deliveries SET next_at = $1, claimed_until = NULL \
                 WHERE id = $2 AND status = 'pending'",
            )
            .bind(to_i64(at)),
            (false, None) => sqlx::query(
                "UPDATE alert_deliveries SET status = 'failed', claimed_until = NULL, next_at = $1 \
                 WHERE id = $2 AND status = 'pending'",
            )
            .bind(to_i64(now)),
        };
        q.bind(id.to_string()).execute(&mut *tx).await?;
        insert_audit(audit).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Keeps the hash of an acknowledgement link.
    pub async fn insert_ack_token(
        &self,
        token_hash: &str,
        row: &AckTokenRow,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO alert_ack_tokens (token_hash, alert_id, account_id, channel, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash.to_owned())
        .bind(row.alert_id.to_string())
        .bind(row.account_id.to_string())
        .bind(row.channel.clone())
        .bind(to_i64(row.expires_at))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// An acknowledgement link's row, by the hash of its token.
    pub async fn ack_token(&self, token_hash: &str) -> Result<Option<AckTokenRow>, DbError> {
        let row = sqlx::query(
            "SELECT alert_id, account_id, channel, expires_at, used_at FROM alert_ack_tokens \
             WHERE token_hash = $1",
        )
        .bind(token_hash.to_owned())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Uses a link: only one caller, before it expires, gets its row.
    pub async fn use_ack_token(
        &self,
        token_hash: &str,
        now: u64,
    ) -> Result<Option<AckTokenRow>, DbError> {
        let row = sqlx::query(
            "UPDATE alert_ack_tokens SET used_at = $1 \
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 \
             RETURNING alert_id, account_id, channel, expires_at, used_at",
        )
        .bind(to_i64(now))
        .bind(token_hash.to_owned())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    pub async fn append_alert_audit(&self, rows: &[AlertAuditRow]) -> Result<(), DbError> {
        let mut tx = self.pool().begin().await?;
        for r in rows {
            insert_audit(r).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The alert audit trail, oldest first (of one alert, or all).
    pub async fn alert_audit(
        &self,
        alert: Option<Ulid>,
        limit: u32,
    ) -> Result<Vec<AlertAuditRow>, DbError> {
        let rows = sqlx::query(
            "SELECT at, actor_id, actor_name, action, alert_id, channel, detail FROM alert_audit \
             WHERE ($1 = '' OR alert_id = $1) ORDER BY seq LIMIT $2",
        )
        .bind(alert.map(|a| a.to_string()).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(audit_from_row).collect()
    }
}

fn token_from_row(row: &AnyRow) -> Result<AckTokenRow, DbError> {
    let alert: String = row.try_get("alert_id")?;
    let account: String = row.try_get("account_id")?;
    Ok(AckTokenRow {
        alert_id: ulid(&alert, "an alert id")?,
        account_id: ulid(&account, "an account id")?,
        channel: row.try_get("channel")?,
        expires_at: millis(row.try_get("expires_at")?).unwrap_or(0),
        used_at: millis(row.try_get("used_at")?),
    })
}
