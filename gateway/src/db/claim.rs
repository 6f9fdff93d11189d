//! What the tables that several nodes work off share (`alert_deliveries`, `escalation_records`):
//! the conversions of times and ids between Rust and the database, the query type their
//! statement builders return, and the claim: a conditional `UPDATE` that gives one row to
//! exactly one of several nodes asking at once, for a lease, counting the attempt.

use ulid::Ulid;

use super::{Db, DbError};

/// A statement with its arguments bound, for either engine.
pub(super) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// A stored time (Unix milliseconds) back as `u64`; a negative one reads as absent.
pub(super) fn millis(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

/// A time to store: the columns are signed 64-bit.
pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored ULID; `what` names it in the error.
pub(super) fn ulid(s: &str, what: &str) -> Result<Ulid, DbError> {
    s.parse()
        .map_err(|_| DbError::Corrupt(format!("{what} is not a ULID")))
}

/// A row to claim: its table, the column counting attempts, and the SQL condition (on `$3`,
/// the time now) under which it is due.
pub(super) struct Claimable {
    pub table: &'static str,
    pub attempts: &'static str,
    pub due: &'static str,
}

impl Db {
    /// Claims row `id` until `now + lease_ms` and counts the attempt: `true` for exactly one
    /// of several nodes asking at once; `false` when it is not due or another node's claim
    /// holds.
    pub(super) async fn claim(
        &self,
        what: &Claimable,
        id: Ulid,
        now: u64,
        lease_ms: u64,
    ) -> Result<bool, DbError> {
        let sql = format!(
            "UPDATE {table} SET claimed_until = $1, {n} = {n} + 1 \
             WHERE id = $2 AND {due} AND (claimed_until IS NULL OR claimed_until <= $3)",
            table = what.table,
            n = what.attempts,
            due = what.due,
        );
        let done = sqlx::query(&sql)
            .bind(to_i64(now.saturating_add(lease_ms)))
            .bind(id.to_string())
            .bind(to_i64(now))
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
