//! What keeps an account's sign-in safe beyond its password: the one-time-password flag, the
//! TOTP secret and the last time step used, the pledge acknowledged (columns of `accounts`),
//! the recovery codes (`account_recovery_codes`, hashes only) and the sign-ins between their
//! password and their session (`sign_in_challenges`, token hashes only). The rules are
//! `auth`'s; this file only reads and writes rows. Every check-and-use (a code's time step, a
//! recovery code) is one conditional statement, so two nodes cannot both accept the same code.

use sqlx::Row;
use ulid::Ulid;

use super::{Db, DbError};

fn millis(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The security columns of one account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountSecurity {
    /// Set while the password is one an admin gave (shown once): it must be changed.
    pub one_time_password_at: Option<u64>,
    /// The TOTP secret (base32), once enrolled.
    pub totp_secret: Option<String>,
    pub totp_enabled_at: Option<u64>,
    /// SHA-256 (hex) of the pledge text acknowledged, and when.
    pub pledge_hash: Option<String>,
    pub pledge_at: Option<u64>,
}

/// A sign-in waiting for its next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeRow {
    pub token_hash: String,
    pub account_id: Ulid,
    pub created_at: u64,
    pub expires_at: u64,
    /// The second factor was given (or enrolled) in this sign-in.
    pub second_factor_at: Option<u64>,
    /// The secret being enrolled, until confirmed with a code.
    pub enrol_secret: Option<String>,
}

const SECURITY: &str = "one_time_password_at, totp_secret, totp_enabled_at, pledge_hash, pledge_at";

fn security_of(row: &sqlx::any::AnyRow) -> Result<AccountSecurity, DbError> {
    Ok(AccountSecurity {
        one_time_password_at: millis(row.try_get("one_time_password_at")?),
        totp_secret: row.try_get("totp_secret")?,
        totp_enabled_at: millis(row.try_get("totp_enabled_at")?),
        pledge_hash: row.try_get("pledge_hash")?,
        pledge_at: millis(row.try_get("pledge_at")?),
    })
}

fn challenge_of(row: &sqlx::any::AnyRow) -> Result<ChallengeRow, DbError> {
    let id: String = row.try_get("account_id")?;
    Ok(ChallengeRow {
        token_hash: row.try_get("token_hash")?,
        account_id: id
            .parse()
            .map_err(|_| DbError::Corrupt("a challenge's account id is not a ULID".into()))?,
        created_at: millis(row.try_get("created_at")?).unwrap_or(0),
        expires_at: millis(row.try_get("expires_at")?).unwrap_or(0),
        second_factor_at: millis(row.try_get("second_factor_at")?),
        enrol_secret: row.try_get("enrol_secret")?,
    })
}

impl Db {
    /// The security columns of account `id`.
    pub async fn account_security(&self, id: Ulid) -> Result<Option<AccountSecurity>, DbError> {
        let row = sqlx::query(&format!("SELECT {SECURITY} FROM accounts WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(security_of).transpose()
    }

    /// The security columns of every account (the admin screen's list).
    pub async fn account_securities(&self) -> Result<Vec<(Ulid, AccountSecurity)>, DbError> {
        let rows = sqlx::query(&format!("SELECT id, {SECURITY} FROM accounts"))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let id = id
                    .parse()
                    .map_err(|_| DbError::Corrupt("an account id is not a ULID".into()))?;
                Ok((id, security_of(r)?))
            })
            .collect()
    }

    /// Sets a password hash; `one_time_at` marks it as one an admin gave (to be changed at
    /// the next sign-in). `false` if there is no such account.
    pub async fn set_account_password(
        &self,
        id: Ulid,
        hash: &str,
        one_time_at: Option<u64>,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE accounts SET password_hash = $1, one_time_password_at = $2 WHERE id = $3",
        )
        .bind(hash.to_owned())
        .bind(one_time_at.map(to_i64))
        .bind(id.to_string())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_account_role(&self, id: Ulid, role: &str) -> Result<bool, DbError> {
        let done = sqlx::query("UPDATE accounts SET role = $1 WHERE id = $2")
            .bind(role.to_owned())
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes an account with its recovery codes and pending sign-ins (the audit trail keeps
    /// its id). `false` if there was none.
    pub async fn delete_account(&self, id: Ulid) -> Result<bool, DbError> {
        let mut tx = self.pool().begin().await?;
        for table in ["account_recovery_codes", "sign_in_challenges"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE account_id = $1"))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM accounts WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Turns TOTP on with `secret`, replacing any recovery codes by `code_hashes`; the step
    /// `step` (the code that confirmed the enrolment) counts as used.
    pub async fn enable_totp(
        &self,
        id: Ulid,
        secret: &str,
        at: u64,
        step: u64,
        code_hashes: &[String],
    ) -> Result<bool, DbError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE accounts SET totp_secret = $1, totp_enabled_at = $2, totp_last_step = $3 \
             WHERE id = $4",
        )
        .bind(secret.to_owned())
        .bind(to_i64(at))
        .bind(to_i64(step))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM account_recovery_codes WHERE account_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        for h in code_hashes {
            sqlx::query(
                "INSERT INTO account_recovery_codes (account_id, code_hash) VALUES ($1, $2)",
            )
            .bind(id.to_string())
            .bind(h.clone())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Turns TOTP off (an admin's reset: the account enrols again at its next sign-in).
    pub async fn clear_totp(&self, id: Ulid) -> Result<bool, DbError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE accounts SET totp_secret = NULL, totp_enabled_at = NULL, \
             totp_last_step = NULL WHERE id = $1",
        )
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM account_recovery_codes WHERE account_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Uses TOTP time step `step`: `true` only if it is later than the last one used, in one
    /// statement, so the same code is accepted once on whichever node.
    pub async fn use_totp_step(&self, id: Ulid, step: u64) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE accounts SET totp_last_step = $1 WHERE id = $2 \
             AND totp_secret IS NOT NULL AND (totp_last_step IS NULL OR totp_last_step < $1)",
        )
        .bind(to_i64(step))
        .bind(id.to_string())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Uses a recovery code (by its hash): `true` only the first time.
    pub async fn use_recovery_code(&self, id: Ulid, hash: &str, at: u64) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE account_recovery_codes SET used_at = $1 \
             WHERE account_id = $2 AND code_hash = $3 AND used_at IS NULL",
        )
        .bind(to_i64(at))
        .bind(id.to_string())
        .bind(hash.to_owned())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Recovery codes of `id` not used yet.
    pub async fn recovery_codes_left(&self, id: Ulid) -> Result<u64, DbError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM account_recovery_codes WHERE account_id = $1 AND used_at IS NULL",
        )
        .bind(id.to_string())
        .fetch_one(self.pool())
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Records that `id` acknowledged the pledge whose text hashes to `hash`, at `at`.
    pub async fn set_pledge(&self, id: Ulid, hash: &str, at: u64) -> Result<bool, DbError> {
        let done =
            sqlx::query("UPDATE accounts SET pledge_hash = $1, pledge_at = $2 WHERE id = $3")
                .bind(hash.to_owned())
                .bind(to_i64(at))
                .bind(id.to_string())
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores a pending sign-in, removing those expired by `c.created_at`.
    pub async fn insert_challenge(&self, c: &ChallengeRow) -> Result<(), DbError> {
        sqlx::query("DELETE FROM sign_in_challenges WHERE expires_at <= $1")
            .bind(to_i64(c.created_at))
            .execute(self.pool())
            .await?;
        sqlx::query(
            "INSERT INTO sign_in_challenges (token_hash, account_id, created_at, expires_at, \
             second_factor_at, enrol_secret) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(c.token_hash.clone())
        .bind(c.account_id.to_string())
        .bind(to_i64(c.created_at))
        .bind(to_i64(c.expires_at))
        .bind(c.second_factor_at.map(to_i64))
        .bind(c.enrol_secret.clone())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The pending sign-in with token hash `hash`, unless expired at `now`.
    pub async fn challenge(&self, hash: &str, now: u64) -> Result<Option<ChallengeRow>, DbError> {
        let row = sqlx::query(
            "SELECT token_hash, account_id, created_at, expires_at, second_factor_at, \
             enrol_secret FROM sign_in_challenges WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(hash.to_owned())
        .bind(to_i64(now))
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(challenge_of).transpose()
    }

    /// Records a pending sign-in's progress.
    pub async fn update_challenge(
        &self,
        hash: &str,
        second_factor_at: Option<u64>,
        enrol_secret: Option<&str>,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE sign_in_challenges SET second_factor_at = $1, enrol_secret = $2 \
             WHERE token_hash = $3",
        )
        .bind(second_factor_at.map(to_i64))
        .bind(enrol_secret.map(str::to_owned))
        .bind(hash.to_owned())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Ends a pending sign-in (done, or its account changed); `true` if it was there.
    pub async fn delete_challenge(&self, hash: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM sign_in_challenges WHERE token_hash = $1")
            .bind(hash.to_owned())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends every pending sign-in of an account (disabled, reset).
    pub async fn delete_challenges_of(&self, id: Ulid) -> Result<(), DbError> {
        sqlx::query("DELETE FROM sign_in_challenges WHERE account_id = $1")
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
