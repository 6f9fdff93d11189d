//! The `accounts` table: operator accounts as stored. The rules (who may sign in, what a valid
//! username or password is, the first-run setup) are the `auth` module's; this file only reads
//! and writes rows. Roles are the words `operator`, `coordinator`, `admin`; languages a
//! comma-separated list; times Unix milliseconds.

use sqlx::any::AnyRow;
use sqlx::Row;
use ulid::Ulid;

use super::{Db, DbError, Engine};

/// One row of `accounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub id: Ulid,
    pub username: String,
    pub display_name: String,
    /// `operator`, `coordinator` or `admin` (the table refuses anything else).
    pub role: String,
    /// An argon2id PHC string; never the password.
    pub password_hash: String,
    pub languages: Vec<String>,
    pub capacity: Option<u32>,
    /// Where accepted phone calls are bridged: E.164 or `client:<identity>`.
    pub phone: Option<String>,
    /// Set while the account is disabled: when it was.
    pub disabled_at: Option<u64>,
    pub created_at: u64,
    pub last_login_at: Option<u64>,
}

/// What [`Db::import_accounts`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOutcome {
    /// Accounts added.
    pub imported: usize,
    /// Accounts whose id the database already holds: left as they are.
    pub present: usize,
    /// Usernames the database already gives another account: not imported.
    pub conflicts: Vec<String>,
}

const COLUMNS: &str = "id, username, display_name, role, password_hash, languages, capacity, \
                       phone, disabled_at, created_at, last_login_at";

fn millis(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn from_row(row: &AnyRow) -> Result<AccountRecord, DbError> {
    let id: String = row.try_get("id")?;
    let languages: String = row.try_get("languages")?;
    let capacity: Option<i64> = row.try_get("capacity")?;
    Ok(AccountRecord {
        id: id
            .parse()
            .map_err(|_| DbError::Corrupt("an account id is not a ULID".into()))?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        role: row.try_get("role")?,
        password_hash: row.try_get("password_hash")?,
        languages: languages
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        capacity: capacity.and_then(|c| u32::try_from(c).ok()),
        phone: row.try_get("phone")?,
        disabled_at: millis(row.try_get("disabled_at")?),
        created_at: millis(row.try_get("created_at")?).unwrap_or(0),
        last_login_at: millis(row.try_get("last_login_at")?),
    })
}

/// The values of [`COLUMNS`] for `a`, bound in order to `$1`…`$11` of `query`.
fn bind_all<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    a: &AccountRecord,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(a.id.to_string())
        .bind(a.username.clone())
        .bind(a.display_name.clone())
        .bind(a.role.clone())
        .bind(a.password_hash.clone())
        .bind(a.languages.join(","))
        .bind(a.capacity.map(i64::from))
        .bind(a.phone.clone())
        .bind(a.disabled_at.map(to_i64))
        .bind(to_i64(a.created_at))
        .bind(a.last_login_at.map(to_i64))
}

const PLACEHOLDERS: &str = "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11";

impl Db {
    /// Every account, oldest first.
    pub async fn accounts(&self) -> Result<Vec<AccountRecord>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM accounts ORDER BY created_at, username"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn account(&self, id: Ulid) -> Result<Option<AccountRecord>, DbError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM accounts WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn account_by_username(
        &self,
        username: &str,
    ) -> Result<Option<AccountRecord>, DbError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM accounts WHERE username = $1"
        ))
        .bind(username.to_owned())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Adds an account; [`DbError::Conflict`] if its id or username is taken.
    pub async fn insert_account(&self, a: &AccountRecord) -> Result<(), DbError> {
        let sql = format!("INSERT INTO accounts ({COLUMNS}) VALUES ({PLACEHOLDERS})");
        bind_all(sqlx::query(&sql), a).execute(self.pool()).await?;
        Ok(())
    }

    /// Adds `a` only if no admin account exists yet, in one step that two nodes cannot both
    /// pass (the first-run setup). `false`: an admin exists, nothing added.
    pub async fn insert_first_admin(&self, a: &AccountRecord) -> Result<bool, DbError> {
        let sql = format!(
            "INSERT INTO accounts ({COLUMNS}) SELECT {PLACEHOLDERS} \
             WHERE NOT EXISTS (SELECT 1 FROM accounts WHERE role = 'admin')"
        );
        let mut tx = self.pool().begin().await?;
        if self.engine == Engine::Postgres {
            // Under PostgreSQL's read committed, two transactions could each see no admin:
            // this lock (which plain reads do not wait for) lets one check-and-insert at a time.
            // SQLite runs one writing statement at a time already.
            sqlx::query("LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
        }
        let added = bind_all(sqlx::query(&sql), a)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(added == 1)
    }

    /// Sets an account's languages and capacity; `false` if there is no such account.
    pub async fn update_account_routing(
        &self,
        id: Ulid,
        languages: &[String],
        capacity: Option<u32>,
    ) -> Result<bool, DbError> {
        let done = sqlx::query("UPDATE accounts SET languages = $1, capacity = $2 WHERE id = $3")
            .bind(languages.join(","))
            .bind(capacity.map(i64::from))
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets (or clears) an account's phone identity; `false` if there is no such account.
    pub async fn update_account_phone(
        &self,
        id: Ulid,
        phone: Option<&str>,
    ) -> Result<bool, DbError> {
        let done = sqlx::query("UPDATE accounts SET phone = $1 WHERE id = $2")
            .bind(phone.map(str::to_owned))
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Disables an account as of `at`, or (`None`) enables it; `false` if there is no such
    /// account. Disabling an account already disabled keeps the first time.
    pub async fn set_account_disabled(&self, id: Ulid, at: Option<u64>) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE accounts SET disabled_at = CASE WHEN $1 IS NULL THEN NULL \
             ELSE COALESCE(disabled_at, $1) END WHERE id = $2",
        )
        .bind(at.map(to_i64))
        .bind(id.to_string())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a successful sign-in at `at`.
    pub async fn record_login(&self, id: Ulid, at: u64) -> Result<(), DbError> {
        sqlx::query("UPDATE accounts SET last_login_at = $1 WHERE id = $2")
            .bind(to_i64(at))
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Adds the accounts of `records` the database lacks, in one transaction: an id already
    /// present is left as the database has it (the database is the truth once imported), and
    /// a username another account holds is reported, not imported. Importing the same records
    /// twice changes nothing the second time.
    pub async fn import_accounts(
        &self,
        records: &[AccountRecord],
    ) -> Result<ImportOutcome, DbError> {
        let mut out = ImportOutcome::default();
        let mut tx = self.pool().begin().await?;
        let insert = format!("INSERT INTO accounts ({COLUMNS}) VALUES ({PLACEHOLDERS})");
        for a in records {
            let by_id: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE id = $1")
                .bind(a.id.to_string())
                .fetch_one(&mut *tx)
                .await?;
            if by_id > 0 {
                out.present += 1;
                continue;
            }
            let by_name: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE username = $1")
                    .bind(a.username.clone())
                    .fetch_one(&mut *tx)
                    .await?;
            if by_name > 0 {
                out.conflicts.push(a.username.clone());
                continue;
            }
            bind_all(sqlx::query(&insert), a).execute(&mut *tx).await?;
            out.imported += 1;
        }
        tx.commit().await?;
        Ok(out)
    }
}
