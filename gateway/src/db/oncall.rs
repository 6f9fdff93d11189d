//! The on-call rota's tables: `oncall_schedule` (weekly ranges in Japan time, ordered),
//! `oncall_overrides` (someone on call for a stretch of time) and `oncall_channels` (each
//! person's optional e-mail address and webhook). Who is on call at a time is decided by the
//! `oncall` module from these rows. Every change is audited in `alert_audit` in the same
//! transaction.

use sqlx::any::AnyRow;
use sqlx::Row;
use ulid::Ulid;

use super::alerts::{insert_audit, AlertAuditRow};
use super::claim::{millis, to_i64, ulid};
use super::{Db, DbError};

/// One weekly range: `weekday` 0 (Monday) … 6 (Sunday), minutes of the day in Japan time,
/// `[start_minute, end_minute)`; `position` orders the rota (lowest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRow {
    pub id: Ulid,
    pub account_id: Ulid,
    pub weekday: u8,
    pub start_minute: u16,
    pub end_minute: u16,
    pub position: i64,
}

/// Someone on call in `[starts_at, ends_at)`, ahead of the weekly schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideRow {
    pub id: Ulid,
    pub account_id: Ulid,
    pub starts_at: u64,
    pub ends_at: u64,
    pub created_at: u64,
}

/// A person's channels; each optional.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelsRow {
    pub account_id: Ulid,
    pub email: Option<String>,
    pub webhook_url: Option<String>,
    /// `slack`, `teams` or `generic`.
    pub webhook_format: Option<String>,
    /// The name of the secret in `[alerts.webhook_secrets]`.
    pub webhook_secret_ref: Option<String>,
    /// Whether a linked LINE account is paged (the link itself is `oncall_line_links`).
    pub line_enabled: bool,
    /// The number a phone alert calls (E.164); never logged.
    pub phone: Option<String>,
    pub updated_at: u64,
}

const CHANNEL_COLUMNS: &str = "account_id, email, webhook_url, webhook_format, \
     webhook_secret_ref, line_enabled, phone, updated_at";

fn schedule_from_row(row: &AnyRow) -> Result<ScheduleRow, DbError> {
    let id: String = row.try_get("id")?;
    let account: String = row.try_get("account_id")?;
    let weekday: i64 = row.try_get("weekday")?;
    let start: i64 = row.try_get("start_minute")?;
    let end: i64 = row.try_get("end_minute")?;
    Ok(ScheduleRow {
        id: ulid(&id, "a schedule id")?,
        account_id: ulid(&account, "an account id")?,
        weekday: u8::try_from(weekday).map_err(|_| DbError::Corrupt("weekday".into()))?,
        start_minute: u16::try_from(start).map_err(|_| DbError::Corrupt("minute".into()))?,
        end_minute: u16::try_from(end).map_err(|_| DbError::Corrupt("minute".into()))?,
        position: row.try_get("position")?,
    })
}

fn override_from_row(row: &AnyRow) -> Result<OverrideRow, DbError> {
    let id: String = row.try_get("id")?;
    let account: String = row.try_get("account_id")?;
    Ok(OverrideRow {
        id: ulid(&id, "an override id")?,
        account_id: ulid(&account, "an account id")?,
        starts_at: millis(row.try_get("starts_at")?).unwrap_or(0),
        ends_at: millis(row.try_get("ends_at")?).unwrap_or(0),
        created_at: millis(row.try_get("created_at")?).unwrap_or(0),
    })
}

fn channels_from_row(row: &AnyRow) -> Result<ChannelsRow, DbError> {
    let account: String = row.try_get("account_id")?;
    Ok(ChannelsRow {
        account_id: ulid(&account, "an account id")?,
        email: row.try_get("email")?,
        webhook_url: row.try_get("webhook_url")?,
        webhook_format: row.try_get("webhook_format")?,
        webhook_secret_ref: row.try_get("webhook_secret_ref")?,
        line_enabled: row.try_get::<i64, _>("line_enabled")? != 0,
        phone: row.try_get("phone")?,
        updated_at: millis(row.try_get("updated_at")?).unwrap_or(0),
    })
}

impl Db {
    /// The weekly schedule, in rota order.
    pub async fn oncall_schedule(&self) -> Result<Vec<ScheduleRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, account_id, weekday, start_minute, end_minute, position \
             FROM oncall_schedule ORDER BY position, weekday, start_minute, id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    /// Replaces the whole weekly schedule and audits it, in one transaction.
    pub async fn replace_oncall_schedule(
        &self,
        rows: &[ScheduleRow],
        audit: &AlertAuditRow,
    ) -> Result<(), DbError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM oncall_schedule")
            .execute(&mut *tx)
            .await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO oncall_schedule (id, account_id, weekday, start_minute, end_minute, position) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(r.id.to_string())
            .bind(r.account_id.to_string())
            .bind(i64::from(r.weekday))
            .bind(i64::from(r.start_minute))
            .bind(i64::from(r.end_minute))
            .bind(r.position)
            .execute(&mut *tx)
            .await?;
        }
        insert_audit(audit).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Overrides that have not ended by `now`, earliest first.
    pub async fn oncall_overrides(&self, now: u64) -> Result<Vec<OverrideRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, account_id, starts_at, ends_at, created_at FROM oncall_overrides \
             WHERE ends_at > $1 ORDER BY starts_at, id",
        )
        .bind(to_i64(now))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(override_from_row).collect()
    }

    pub async fn insert_oncall_override(
        &self,
        o: &OverrideRow,
        audit: &AlertAuditRow,
    ) -> Result<(), DbError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO oncall_overrides (id, account_id, starts_at, ends_at, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(o.id.to_string())
        .bind(o.account_id.to_string())
        .bind(to_i64(o.starts_at))
        .bind(to_i64(o.ends_at))
        .bind(to_i64(o.created_at))
        .execute(&mut *tx)
        .await?;
        insert_audit(audit).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes an override; `false` if there was none (nothing audited).
    pub async fn delete_oncall_override(
        &self,
        id: Ulid,
        audit: &AlertAuditRow,
    ) -> Result<bool, DbError> {
        self.delete_audited("DELETE FROM oncall_overrides WHERE id = $1", id, audit)
            .await
    }

    /// Runs `delete` (one row, by the id in `$1`) and audits it, in one transaction; `false`
    /// (nothing audited) if there was no such row.
    pub(super) async fn delete_audited(
        &self,
        delete: &str,
        id: Ulid,
        audit: &AlertAuditRow,
    ) -> Result<bool, DbError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(delete)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_audit(audit).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Everyone's channels.
    pub async fn oncall_channels(&self) -> Result<Vec<ChannelsRow>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANNEL_COLUMNS} FROM oncall_channels ORDER BY account_id"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(channels_from_row).collect()
    }

    /// One person's channels, if set.
    pub async fn oncall_channels_of(&self, account: Ulid) -> Result<Option<ChannelsRow>, DbError> {
        let row = sqlx::query(&format!(
            "SELECT {CHANNEL_COLUMNS} FROM oncall_channels WHERE account_id = $1"
        ))
        .bind(account.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(channels_from_row).transpose()
    }

    /// Sets a person's channels (replacing what was there) and audits it.
    pub async fn set_oncall_channels(
        &self,
        c: &ChannelsRow,
        audit: &AlertAuditRow,
    ) -> Result<(), DbError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM oncall_channels WHERE account_id = $1")
            .bind(c.account_id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO oncall_channels (account_id, email, webhook_url, webhook_format, \
             webhook_secret_ref, line_enabled, phone, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(c.account_id.to_string())
        .bind(c.email.clone())
        .bind(c.webhook_url.clone())
        .bind(c.webhook_format.clone())
        .bind(c.webhook_secret_ref.clone())
        .bind(i64::from(c.line_enabled))
        .bind(c.phone.clone())
        .bind(to_i64(c.updated_at))
        .execute(&mut *tx)
        .await?;
        insert_audit(audit).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
