//! The `account_audit` table: an append-only trail of changes to accounts (who, what, which
//! account, when) by admins and by the accounts themselves (a password changed, a second factor
//! enrolled, the pledge acknowledged). `detail` says what changed in words an admin reads (a
//! role's name, languages), never a password, code, secret or phone number.

use sqlx::Row;
use ulid::Ulid;

use super::{Db, DbError};

/// One entry of the account audit trail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccountAuditRow {
    pub at: u64,
    /// The account that acted (`None`: the system, e.g. the CLI).
    pub actor_id: Option<Ulid>,
    pub action: String,
    pub target_id: Option<Ulid>,
    pub detail: Option<String>,
}

fn ulid(v: Option<String>) -> Result<Option<Ulid>, DbError> {
    v.map(|s| {
        s.parse()
            .map_err(|_| DbError::Corrupt("an audited account id is not a ULID".into()))
    })
    .transpose()
}

impl Db {
    pub async fn append_account_audit(&self, e: &AccountAuditRow) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO account_audit (at, actor_id, action, target_id, detail) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(i64::try_from(e.at).unwrap_or(i64::MAX))
        .bind(e.actor_id.map(|u| u.to_string()))
        .bind(e.action.clone())
        .bind(e.target_id.map(|u| u.to_string()))
        .bind(e.detail.clone())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The latest `limit` entries, newest first.
    pub async fn account_audit(&self, limit: u32) -> Result<Vec<AccountAuditRow>, DbError> {
        let rows = sqlx::query(
            "SELECT at, actor_id, action, target_id, detail FROM account_audit \
             ORDER BY seq DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let at: i64 = r.try_get("at")?;
                Ok(AccountAuditRow {
                    at: u64::try_from(at).unwrap_or(0),
                    actor_id: ulid(r.try_get("actor_id")?)?,
                    action: r.try_get("action")?,
                    target_id: ulid(r.try_get("target_id")?)?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }
}
