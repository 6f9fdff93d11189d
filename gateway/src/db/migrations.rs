//! Versioned migrations, one folder per engine (`gateway/migrations/sqlite`,
//! `gateway/migrations/postgres`), compiled into the binary so that an installed gateway needs
//! no migration files beside it. The same version number means the same change on both
//! engines. Applied in order, each in a transaction, recorded with a checksum in sqlx's
//! `_sqlx_migrations` table; an applied migration whose text changed is refused, so a released
//! migration is never edited: a new version is added instead.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use super::{Db, DbError, Engine};

/// (version, description, SQL) for each engine, oldest first.
type Embedded = &'static [(i64, &'static str, &'static str)];

const SQLITE: Embedded = &[
    (
        1,
        "accounts",
        include_str!("../../migrations/sqlite/0001_accounts.sql"),
    ),
    (
        2,
        "escalations",
        include_str!("../../migrations/sqlite/0002_escalations.sql"),
    ),
    (
        3,
        "account security",
        include_str!("../../migrations/sqlite/0003_account_security.sql"),
    ),
    (
        4,
        "directory",
        include_str!("../../migrations/sqlite/0004_directory.sql"),
    ),
    (
        5,
        "oncall_alerts",
        include_str!("../../migrations/sqlite/0005_oncall_alerts.sql"),
    ),
    (
        6,
        "oncall_line_phone",
        include_str!("../../migrations/sqlite/0006_oncall_line_phone.sql"),
    ),
];

const POSTGRES: Embedded = &[
    (
        1,
        "accounts",
        include_str!("../../migrations/postgres/0001_accounts.sql"),
    ),
    (
        2,
        "escalations",
        include_str!("../../migrations/postgres/0002_escalations.sql"),
    ),
    (
        3,
        "account security",
        include_str!("../../migrations/postgres/0003_account_security.sql"),
    ),
    (
        4,
        "directory",
        include_str!("../../migrations/postgres/0004_directory.sql"),
    ),
    (
        5,
        "oncall_alerts",
        include_str!("../../migrations/postgres/0005_oncall_alerts.sql"),
    ),
    (
        6,
        "oncall_line_phone",
        include_str!("../../migrations/postgres/0006_oncall_line_phone.sql"),
    ),
];

/// The migrations compiled in for one engine, as sqlx's migrator reads them.
#[derive(Debug)]
struct Compiled(Embedded);

impl<'s> MigrationSource<'s> for Compiled {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        let migrations = self
            .0
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

/// Applies what is missing; returns how many migrations ran.
pub(super) async fn run(db: &Db) -> Result<usize, DbError> {
    let compiled = match db.engine {
        Engine::Sqlite => SQLITE,
        Engine::Postgres => POSTGRES,
    };
    let before = applied(db).await?;
    // Several nodes starting at once against one PostgreSQL: sqlx takes an advisory lock, so
    // one migrates and the others then find nothing to do.
    Migrator::new(Compiled(compiled))
        .await?
        .run(db.pool())
        .await?;
    let after = applied(db).await?;
    Ok(after.saturating_sub(before))
}

/// How many migrations the database records as applied (none before the first run).
async fn applied(db: &Db) -> Result<usize, DbError> {
    let exists: i64 = match db.engine {
        Engine::Sqlite => sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_one(db.pool())
        .await?,
        Engine::Postgres => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'",
            )
            .fetch_one(db.pool())
            .await?
        }
    };
    if exists == 0 {
        return Ok(0);
    }
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(db.pool())
        .await?;
    Ok(usize::try_from(n).unwrap_or(0))
}
