//! The organisation's lasting data, in one schema on two engines (issue 20).
//!
//! SQLite is the embedded default: a file under the data directory (`data/tsunagu.db`), created
//! on first run, in WAL mode, so a fresh clone needs nothing installed. PostgreSQL serves
//! several nodes (`TSUNAGU_DATABASE__URL=postgres://…`). Both are reached through sqlx's `Any`
//! driver with SQL checked at run time (nothing needs a database to compile), written once in
//! the dialect both engines accept: `$1` placeholders, `BIGINT`/`INTEGER` Unix milliseconds for
//! times, `TEXT` for the rest, no booleans (a flag is the time it was set, or NULL).
//!
//! What it owns: the connection pool ([`Db`]), the versioned migrations (one folder per engine,
//! `gateway/migrations/{sqlite,postgres}`, compiled in and run at start-up and by
//! `gateway migrate`), and the tables' queries, one file per table:
//! - `accounts`: operator accounts (the `auth` module keeps the rules; this file only stores);
//! - `account_security`: one-time passwords, TOTP, recovery codes, the pledge acknowledged and
//!   sign-ins waiting for their next step; `account_audit`: the trail of changes to accounts;
//! - `escalations`: encrypted escalation records (sealed by the `escalation` module, whose key
//!   never reaches the database), their retention and delivery state, and the append-only
//!   audit trail;
//! - `directory`: the referral directory, canned phrases, runtime settings an admin may change,
//!   and the admin audit trail (the `directory` module keeps the rules).
//!
//! What never goes here: anything of a conversation (text, LINE user ids, phone numbers of
//! people who reach out). Those stay in memory or Redis and end with the conversation; the one
//! exception is an emergency flag's record, and it is stored only encrypted.

mod account_audit;
mod account_security;
mod accounts;
mod alerts;
mod claim;
mod directory;
mod escalations;
mod migrations;
mod oncall;
mod oncall_links;

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

pub use account_audit::AccountAuditRow;
pub use account_security::{AccountSecurity, ChallengeRow};
pub use accounts::{AccountRecord, ImportOutcome};
pub use alerts::{AckTokenRow, AlertAuditRow, AlertRow, DeliveryRow};
pub use directory::{AdminAudit, PhraseRecord, ReferralRecord, SettingRecord, DIRECTORY_REVISION};
pub use escalations::{AuditRow, EscalationImport, SealedRecord};
pub use oncall::{ChannelsRow, OverrideRow, ScheduleRow};
pub use oncall_links::LineLinkRow;

/// `[database]` in the configuration. Owned here; `config` assembles it into `Settings`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    /// Unset: the embedded SQLite file at `sqlite_path`. `postgres://user:pass@host/db` for
    /// PostgreSQL (several nodes share it); `sqlite:<path>` for another SQLite file; `memory` for
    /// a database that lives as long as the process (tests).
    pub url: Option<String>,
    /// The embedded database file when `url` is unset (its directory is created if missing).
    pub sqlite_path: String,
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long an operation waits for a free connection (and SQLite for a lock) before it
    /// fails as unavailable.
    pub acquire_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: None,
            sqlite_path: "data/tsunagu.db".into(),
            // Accounts are read at sign-in and written by admins: a few connections are plenty.
            max_connections: 8,
            acquire_timeout_ms: 5_000,
        }
    }
}

/// Which engine a [`Db`] talks to, where their SQL differs (migrations, locks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database configuration: {0}")]
    Config(String),
    /// The database could not be reached or refused the operation.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A unique key (an account's username or id) is taken.
    #[error("already exists")]
    Conflict,
    /// A row the schema allows but this version cannot read (a value out of range).
    #[error("unreadable row: {0}")]
    Corrupt(String),
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => DbError::Conflict,
            _ => DbError::Unavailable(e),
        }
    }
}

/// The database handle: a connection pool (cheap to clone, shared by everything that needs it).
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    engine: Engine,
    /// What the pool was opened on, so that [`Db::reopen`] reaches the same database.
    url: String,
    memory: bool,
    settings: DatabaseSettings,
}

/// Names the engine only: the URL may carry a password.
impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("engine", &self.engine).finish()
    }
}

impl Db {
    /// Opens the database `settings` name (creating the SQLite file and its directory on first
    /// run), without running migrations: see [`Db::migrate`], or [`Db::open`] for both.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let (url, engine, memory) = resolve(settings)?;
        Db::pool_on(url, engine, memory, settings).await
    }

    /// A second pool on the same database (as a second node has): for tests of what several
    /// nodes do at once.
    pub async fn reopen(&self) -> Result<Db, DbError> {
        Db::pool_on(self.url.clone(), self.engine, self.memory, &self.settings).await
    }

    /// Runs one SQL statement as given, outside any of the gateway's own queries; returns the
    /// rows it changed. For tests (a fault injected) and maintenance; never with input from
    /// a request.
    pub async fn execute_raw(&self, sql: &str) -> Result<u64, DbError> {
        Ok(sqlx::raw_sql(sql)
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    async fn pool_on(
        url: String,
        engine: Engine,
        memory: bool,
        settings: &DatabaseSettings,
    ) -> Result<Db, DbError> {
        let mut opts = AnyPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms));
        if memory {
            // An in-memory database ends with its last connection: keep one open for good.
            opts = opts
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        if engine == Engine::Sqlite {
            let busy_ms = settings.acquire_timeout_ms;
            // In-process: a connection is either there or not, no network to test it over.
            opts = opts
                .test_before_acquire(false)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        use sqlx::Executor as _;
                        // WAL: readers never wait for the writer, and the CLI can add an account
                        // while the gateway runs. The journal mode is stored in the file; the rest
                        // is per connection.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute(format!("PRAGMA busy_timeout = {busy_ms}").as_str())
                            .await?;
                        Ok(())
                    })
                });
        }
        let pool = opts.connect(&url).await.map_err(DbError::Unavailable)?;
        Ok(Db {
            pool,
            engine,
            url,
            memory,
            settings: settings.clone(),
        })
    }

    /// [`Db::connect`], then brings the schema up to date.
    pub async fn open(settings: &DatabaseSettings) -> Result<Db, DbError> {
        let db = Db::connect(settings).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Applies the migrations this version has and the database lacks; returns how many. A
    /// database migrated by a newer version (a migration this one does not know) is refused.
    pub async fn migrate(&self) -> Result<usize, DbError> {
        migrations::run(self).await
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes every connection (a SQLite file is then complete on disk, WAL checkpointed).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The URL to connect to, its engine, and whether it is an in-memory database.
fn resolve(settings: &DatabaseSettings) -> Result<(String, Engine, bool), DbError> {
    let url = settings.url.as_deref().map(str::trim).unwrap_or("");
    if url == "memory" {
        // Named, so that every connection of the pool opens the same database; unique, so
        // that two gateways in one process (tests) do not share one.
        let name = ulid::Ulid::new();
        return Ok((
            format!("sqlite:file:tsunagu-{name}?mode=memory&cache=shared"),
            Engine::Sqlite,
            true,
        ));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((url.to_owned(), Engine::Postgres, false));
    }
    let path = if url.is_empty() {
        settings.sqlite_path.as_str()
    } else if let Some(p) = url.strip_prefix("sqlite:") {
        p.trim_start_matches("//")
    } else {
        return Err(DbError::Config(
            "database.url must be postgres://…, sqlite:<path> or memory".into(),
        ));
    };
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() {
        return Err(DbError::Config("database.sqlite_path is empty".into()));
    }
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| DbError::Config(format!("creating {}: {e}", dir.display())))?;
    }
    create_private(Path::new(path))
        .map_err(|e| DbError::Config(format!("creating {path}: {e}")))?;
    Ok((format!("sqlite:{path}?mode=rwc"), Engine::Sqlite, false))
}

/// Creates the SQLite file, empty, readable by this user only (it holds password hashes), if it
/// does not exist; SQLite gives its WAL and shared-memory files the same permissions.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The database named in `url` with credentials hidden, for logs and messages.
pub fn describe(settings: &DatabaseSettings) -> String {
    match settings.url.as_deref().map(str::trim) {
        Some("memory") => "in-memory SQLite".into(),
        Some(u) if u.starts_with("postgres") => "PostgreSQL".into(),
        Some(u) if !u.is_empty() => format!("SQLite at {}", u.trim_start_matches("sqlite:")),
        _ => format!("SQLite at {}", settings.sqlite_path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: Option<&str>) -> DatabaseSettings {
        DatabaseSettings {
            url: url.map(str::to_owned),
            sqlite_path: std::env::temp_dir()
                .join(format!("tsunagu-resolve-{}/tsunagu.db", ulid::Ulid::new()))
                .display()
                .to_string(),
            ..DatabaseSettings::default()
        }
    }

    #[test]
    fn the_url_names_the_engine_and_never_shows_credentials() {
        let pg = with_url(Some("postgres://u:secret@db.example/tsunagu"));
        assert_eq!(resolve(&pg).unwrap().1, Engine::Postgres);
        assert!(!describe(&pg).contains("secret"));
        let mem = resolve(&with_url(Some("memory"))).unwrap();
        assert_eq!((mem.1, mem.2), (Engine::Sqlite, true));
        assert!(resolve(&with_url(Some("mysql://x/y"))).is_err());
        // Unset: the embedded file, created (private) with its directory.
        let embedded = with_url(None);
        let (url, engine, memory) = resolve(&embedded).unwrap();
        assert_eq!((engine, memory), (Engine::Sqlite, false));
        assert!(url.ends_with("?mode=rwc"));
        let path = Path::new(&embedded.sqlite_path);
        assert!(path.exists());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
