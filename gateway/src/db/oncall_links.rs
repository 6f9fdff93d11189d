//! A coordinator's own LINE account for alerts: one-time link codes (`oncall_link_codes`, only
//! the code's hash kept) and the links they make (`oncall_line_links`: the LINE channel and the
//! LINE user id sealed by the LINE connector; this file never sees it in plaintext). Every link
//! and unlink is audited in `alert_audit` in the same transaction.

use sqlx::Row;
use ulid::Ulid;

use super::alerts::{insert_audit, AlertAuditRow};
use super::claim::{millis, to_i64, ulid};
use super::{Db, DbError};

/// A linked LINE account: the channel it wrote to and its sealed user id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineLinkRow {
    pub account_id: Ulid,
    pub channel_id: String,
    pub sealed_user: Vec<u8>,
    pub linked_at: u64,
}

impl Db {
    /// Keeps a new link code's hash for `account` (audited), unless the account made
    /// `max_per_hour` codes in the hour before `now`: then `false` and nothing is written.
    pub async fn insert_link_code(
        &self,
        code_hash: &str,
        account: Ulid,
        now: u64,
        expires_at: u64,
        max_per_hour: u32,
        audit: &AlertAuditRow,
    ) -> Result<bool, DbError> {
        let mut tx = self.pool().begin().await?;
        let recent: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM oncall_link_codes WHERE account_id = $1 AND created_at > $2",
        )
        .bind(account.to_string())
        .bind(to_i64(now.saturating_sub(3_600_000)))
        .fetch_one(&mut *tx)
        .await?;
        if recent >= i64::from(max_per_hour) {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO oncall_link_codes (code_hash, account_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(code_hash.to_owned())
        .bind(account.to_string())
        .bind(to_i64(now))
        .bind(to_i64(expires_at))
        .execute(&mut *tx)
        .await?;
        insert_audit(audit).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Uses a link code (once, before it expires): gives the account it was made for.
    pub async fn use_link_code(&self, code_hash: &str, now: u64) -> Result<Option<Ulid>, DbError> {
        let row = sqlx::query(
            "UPDATE oncall_link_codes SET used_at = $1 \
             WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING account_id",
        )
        .bind(to_i64(now))
        .bind(code_hash.to_owned())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            let id: String = r.try_get("account_id")?;
            ulid(&id, "an account id")
        })
        .transpose()
    }

    /// Links (or re-links) an account's LINE user, audited, in one transaction. Codes of the
    /// account still unused are spent with it.
    pub async fn set_line_link(
        &self,
        l: &LineLinkRow,
        audit: &AlertAuditRow,
    ) -> Result<(), DbError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM oncall_line_links WHERE account_id = $1")
            .bind(l.account_id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO oncall_line_links (account_id, channel_id, sealed_user, linked_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(l.account_id.to_string())
        .bind(l.channel_id.clone())
        .bind(l.sealed_user.clone())
        .bind(to_i64(l.linked_at))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE oncall_link_codes SET used_at = $1 WHERE account_id = $2 AND used_at IS NULL",
        )
        .bind(to_i64(l.linked_at))
        .bind(l.account_id.to_string())
        .execute(&mut *tx)
        .await?;
        insert_audit(audit).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// An account's LINE link, if any.
    pub async fn line_link(&self, account: Ulid) -> Result<Option<LineLinkRow>, DbError> {
        let row = sqlx::query(
            "SELECT account_id, channel_id, sealed_user, linked_at FROM oncall_line_links \
             WHERE account_id = $1",
        )
        .bind(account.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            let id: String = r.try_get("account_id")?;
            Ok(LineLinkRow {
                account_id: ulid(&id, "an account id")?,
                channel_id: r.try_get("channel_id")?,
                sealed_user: r.try_get("sealed_user")?,
                linked_at: millis(r.try_get("linked_at")?).unwrap_or(0),
            })
        })
        .transpose()
    }

    /// The accounts with a LINE link (for the coordinator view: linked or not, no more).
    pub async fn line_linked_accounts(&self) -> Result<Vec<Ulid>, DbError> {
        let rows = sqlx::query("SELECT account_id FROM oncall_line_links ORDER BY account_id")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("account_id")?;
                ulid(&id, "an account id")
            })
            .collect()
    }

    /// Removes an account's LINE link (audited); `false` if there was none.
    pub async fn delete_line_link(
        &self,
        account: Ulid,
        audit: &AlertAuditRow,
    ) -> Result<bool, DbError> {
        self.delete_audited(
            "DELETE FROM oncall_line_links WHERE account_id = $1",
            account,
            audit,
        )
        .await
    }
}
