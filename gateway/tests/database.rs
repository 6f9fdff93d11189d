//! The database's conformance suite: one set of checks, each an async function taking a fresh,
//! migrated [`Db`], run against both engines the gateway supports: SQLite (a file in a
//! temporary directory, as the embedded default keeps it) and PostgreSQL (a cluster of this
//! test's own, `support/postgres.rs`). Whatever the gateway stores must behave the same on
//! both; a check that passes on one engine only is a bug in the schema or the SQL.
//!
//! Each engine's test runs every check in turn, each in a database of its own, and names the
//! check that failed.

#[path = "support/postgres.rs"]
mod postgres;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use tsunagu::auth::{Accounts, AuthError, AuthSettings, Role};
use tsunagu::clock::Clock;
use tsunagu::db::{AccountRecord, DatabaseSettings, Db, DbError, Engine};
use ulid::Ulid;

type Check = fn(Db) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every check of the suite, by name.
fn checks() -> Vec<(&'static str, Check)> {
    macro_rules! checks {
        ($($name:ident),* $(,)?) => {
            vec![$((stringify!($name), (|db| Box::pin($name(db))) as Check)),*]
        };
    }
    checks![
        migrations_run_once,
        an_account_reads_back_as_written,
        ids_and_usernames_are_unique,
        the_table_refuses_an_unknown_role,
        one_first_admin_only_even_when_two_race,
        changes_reach_one_account_only,
        importing_twice_gives_the_same_rows,
        accounts_sign_in_through_the_database,
        the_setup_code_ends_when_an_admin_exists_in_the_database,
    ]
}

const PASSWORD: &str = "long enough password";

fn record(username: &str, role: &str) -> AccountRecord {
    AccountRecord {
        id: Ulid::new(),
        username: username.into(),
        display_name: format!("Name of {username}"),
        role: role.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        languages: vec!["ja".into()],
        capacity: None,
        phone: None,
        disabled_at: None,
        created_at: 1_700_000_000_000,
        last_login_at: None,
    }
}

// ---- the checks -------------------------------------------------------------------------

async fn migrations_run_once(db: Db) {
    // `fresh` already migrated: nothing left to apply, however often asked.
    assert_eq!(db.migrate().await.unwrap(), 0);
    assert_eq!(db.migrate().await.unwrap(), 0);
    assert!(db.accounts().await.unwrap().is_empty());
}

async fn an_account_reads_back_as_written(db: Db) {
    let mut a = record("sakura", "coordinator");
    a.languages = vec!["ja".into(), "en".into(), "pt-BR".into()];
    a.capacity = Some(3);
    a.phone = Some("+819012345678".into());
    a.disabled_at = Some(1_700_000_000_500);
    a.last_login_at = Some(1_700_000_000_900);
    a.display_name = "さくら 桜".into();
    db.insert_account(&a).await.unwrap();
    let b = record("kai", "operator");
    db.insert_account(&b).await.unwrap();
    assert_eq!(db.account(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        db.account_by_username("kai").await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(db.account(Ulid::new()).await.unwrap(), None);
    assert_eq!(db.account_by_username("nobody").await.unwrap(), None);
    // Oldest first, then by name.
    assert_eq!(db.accounts().await.unwrap(), vec![b, a]);
}

async fn ids_and_usernames_are_unique(db: Db) {
    let a = record("sakura", "operator");
    db.insert_account(&a).await.unwrap();
    let same_name = record("sakura", "admin");
    assert!(matches!(
        db.insert_account(&same_name).await,
        Err(DbError::Conflict)
    ));
    let mut same_id = record("kai", "operator");
    same_id.id = a.id;
    assert!(matches!(
        db.insert_account(&same_id).await,
        Err(DbError::Conflict)
    ));
    // Usernames are compared exactly, as sign-in does.
    db.insert_account(&record("Sakura", "operator"))
        .await
        .unwrap();
    assert_eq!(db.accounts().await.unwrap().len(), 2);
}

async fn the_table_refuses_an_unknown_role(db: Db) {
    assert!(db.insert_account(&record("root", "root")).await.is_err());
    assert!(db.accounts().await.unwrap().is_empty());
}

async fn one_first_admin_only_even_when_two_race(db: Db) {
    // An operator account does not end the setup; an admin does.
    db.insert_account(&record("op", "operator")).await.unwrap();
    let db = Arc::new(db);
    let racers: Vec<_> = (0..4)
        .map(|i| {
            let db = Arc::clone(&db);
            tokio::spawn(async move {
                db.insert_first_admin(&record(&format!("admin{i}"), "admin"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for r in racers {
        won += usize::from(r.await.unwrap());
    }
    assert_eq!(won, 1, "exactly one first admin");
    assert!(!db
        .insert_first_admin(&record("late", "admin"))
        .await
        .unwrap());
    let admins: Vec<_> = db
        .accounts()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.role == "admin")
        .collect();
    assert_eq!(admins.len(), 1);
}

async fn changes_reach_one_account_only(db: Db) {
    let a = record("sakura", "operator");
    let b = record("kai", "operator");
    db.insert_account(&a).await.unwrap();
    db.insert_account(&b).await.unwrap();
    let langs = vec!["en".to_string(), "ja".to_string()];
    assert!(db
        .update_account_routing(a.id, &langs, Some(4))
        .await
        .unwrap());
    assert!(db
        .update_account_phone(a.id, Some("client:sakura"))
        .await
        .unwrap());
    assert!(db.set_account_disabled(a.id, Some(10)).await.unwrap());
    // Disabled again later: the first time stays.
    assert!(db.set_account_disabled(a.id, Some(20)).await.unwrap());
    db.record_login(a.id, 30).await.unwrap();
    let got = db.account(a.id).await.unwrap().unwrap();
    assert_eq!(got.languages, langs);
    assert_eq!(got.capacity, Some(4));
    assert_eq!(got.phone.as_deref(), Some("client:sakura"));
    assert_eq!(got.disabled_at, Some(10));
    assert_eq!(got.last_login_at, Some(30));
    assert_eq!(db.account(b.id).await.unwrap(), Some(b.clone()));
    // Cleared again.
    assert!(db.update_account_routing(a.id, &langs, None).await.unwrap());
    assert!(db.update_account_phone(a.id, None).await.unwrap());
    assert!(db.set_account_disabled(a.id, None).await.unwrap());
    let got = db.account(a.id).await.unwrap().unwrap();
    assert_eq!(
        (got.capacity, got.phone, got.disabled_at),
        (None, None, None)
    );
    // No such account: nothing changed, and said so.
    let nobody = Ulid::new();
    assert!(!db
        .update_account_routing(nobody, &langs, None)
        .await
        .unwrap());
    assert!(!db.update_account_phone(nobody, None).await.unwrap());
    assert!(!db.set_account_disabled(nobody, Some(1)).await.unwrap());
}

async fn importing_twice_gives_the_same_rows(db: Db) {
    let existing = record("kai", "operator");
    db.insert_account(&existing).await.unwrap();
    let file = vec![
        record("sakura", "admin"),
        record("ren", "coordinator"),
        // Another account already holds this username.
        record("kai", "operator"),
    ];
    let first = db.import_accounts(&file).await.unwrap();
    assert_eq!((first.imported, first.present), (2, 0));
    assert_eq!(first.conflicts, vec!["kai".to_string()]);
    let rows = db.accounts().await.unwrap();
    assert_eq!(rows.len(), 3);
    let second = db.import_accounts(&file).await.unwrap();
    assert_eq!((second.imported, second.present), (0, 2));
    assert_eq!(db.accounts().await.unwrap(), rows, "the same rows");
}

async fn accounts_sign_in_through_the_database(db: Db) {
    let accounts = Arc::new(
        Accounts::open(&AuthSettings::default(), db.clone(), Clock::system())
            .await
            .unwrap(),
    );
    let u = accounts
        .add_user("sakura", "Sakura", Role::Operator, PASSWORD)
        .await
        .unwrap();
    accounts
        .set_routing(u.id, vec!["ja".into(), "en".into()], Some(2))
        .await
        .unwrap();
    accounts
        .set_phone(u.id, Some("+819012345678".into()))
        .await
        .unwrap();
    assert_eq!(
        accounts
            .add_user("sakura", "Other", Role::Operator, PASSWORD)
            .await
            .unwrap_err(),
        AuthError::Exists
    );
    let (user, token) = accounts.login("sakura", PASSWORD).await.unwrap();
    assert_eq!(user.languages, ["ja", "en"]);
    assert_eq!(user.capacity, Some(2));
    let row = db.account_by_username("sakura").await.unwrap().unwrap();
    assert!(row.password_hash.starts_with("$argon2id$"));
    assert!(row.last_login_at.is_some(), "the sign-in time is stored");
    // A second node (or a restart) on the same database sees the account and its session's
    // user; disabling there stops sign-in here at once.
    let other = Accounts::open(&AuthSettings::default(), db.clone(), Clock::system())
        .await
        .unwrap();
    assert_eq!(other.list().len(), 1);
    other.set_disabled(u.id, true).await.unwrap();
    assert!(accounts.session_user(&token).await.is_none());
    assert_eq!(
        accounts.login("sakura", PASSWORD).await.unwrap_err(),
        AuthError::BadCredentials
    );
    other.set_disabled(u.id, false).await.unwrap();
    assert!(accounts.login("sakura", PASSWORD).await.is_ok());
}

async fn the_setup_code_ends_when_an_admin_exists_in_the_database(db: Db) {
    let node_a = Accounts::open(&AuthSettings::default(), db.clone(), Clock::system())
        .await
        .unwrap();
    let node_b = Accounts::open(&AuthSettings::default(), db.clone(), Clock::system())
        .await
        .unwrap();
    let code_a = node_a.pending_setup_code().expect("no accounts: a code");
    let code_b = node_b.pending_setup_code().expect("no accounts: a code");
    node_a
        .setup(&code_a, "admin", "Admin", PASSWORD)
        .await
        .unwrap();
    assert!(node_a.pending_setup_code().is_none());
    // The other node's code no longer works either, and then is gone.
    assert_eq!(
        node_b
            .setup(&code_b, "admin2", "Admin", PASSWORD)
            .await
            .unwrap_err(),
        AuthError::SetupUnavailable
    );
    assert!(node_b.pending_setup_code().is_none());
    let rows = db.accounts().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].role, "admin");
}

// ---- the engines ------------------------------------------------------------------------

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs every check against a fresh database from `fresh`, naming the one that fails.
async fn run_suite<F, Fut>(engine: Engine, fresh: F)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Db>,
{
    for (i, (name, check)) in checks().into_iter().enumerate() {
        let db = fresh(i).await;
        assert_eq!(db.engine(), engine);
        let run = tokio::spawn(check(db.clone())).await;
        db.close().await;
        if let Err(e) = run {
            panic!("{} check `{name}` failed: {e}", engine.as_str());
        }
        eprintln!("{} check `{name}`: ok", engine.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_conformance_suite() {
    let dir = TempDir(std::env::temp_dir().join(format!("tsunagu-db-{}", Ulid::new())));
    let root = dir.0.clone();
    run_suite(Engine::Sqlite, |i| {
        // The embedded default as installed: a file under a data directory not there yet.
        let settings = DatabaseSettings {
            sqlite_path: root
                .join(format!("{i}/data/tsunagu.db"))
                .display()
                .to_string(),
            ..DatabaseSettings::default()
        };
        async move { Db::open(&settings).await.unwrap() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_conformance_suite() {
    let cluster = postgres::PgCluster::start();
    let cluster = &cluster;
    run_suite(Engine::Postgres, |i| async move {
        let url = cluster.create_database(&format!("check{i}")).await;
        Db::open(&DatabaseSettings {
            url: Some(url),
            ..DatabaseSettings::default()
        })
        .await
        .unwrap()
    })
    .await;
}

/// The embedded default on first run: the directory and file are created, in WAL mode, and
/// `gateway migrate` finds nothing more to do.
#[tokio::test]
async fn the_embedded_database_is_created_on_first_run_in_wal_mode() {
    let dir = TempDir(std::env::temp_dir().join(format!("tsunagu-db-{}", Ulid::new())));
    let path = dir.0.join("data/tsunagu.db");
    let settings = DatabaseSettings {
        sqlite_path: path.display().to_string(),
        ..DatabaseSettings::default()
    };
    let db = Db::open(&settings).await.unwrap();
    assert!(path.exists(), "created on first run");
    {
        // Password hashes: readable by the gateway's user only.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    db.close().await;
    // SQLite records WAL mode in the file's header (bytes 18 and 19 are 2).
    let header = std::fs::read(&path).unwrap();
    assert_eq!((header[18], header[19]), (2, 2), "WAL mode");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("migrate")
        .env("TSUNAGU_DATABASE__SQLITE_PATH", &path)
        .env_remove("TSUNAGU_DATABASE__URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 migration(s) applied"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `gateway import users` (the real binary) on an accounts file of an earlier version, twice:
/// the second run adds nothing, and `gateway user list` shows the accounts once.
#[tokio::test]
async fn gateway_import_users_is_idempotent() {
    let dir = TempDir(std::env::temp_dir().join(format!("tsunagu-db-{}", Ulid::new())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let file = dir.0.join("users.json");
    let hash = tsunagu::password::hash(PASSWORD).unwrap();
    let json = serde_json::json!([
        {"id": Ulid::new(), "username": "sakura", "display_name": "Sakura", "role": "admin",
         "password_hash": hash, "languages": ["ja", "en"]},
        {"id": Ulid::new(), "username": "kai", "display_name": "Kai", "role": "operator",
         "password_hash": hash, "capacity": 2},
    ]);
    std::fs::write(&file, json.to_string()).unwrap();
    let db_path = dir.0.join("tsunagu.db");
    let gateway = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(args)
            .env("TSUNAGU_DATABASE__SQLITE_PATH", &db_path)
            .env_remove("TSUNAGU_DATABASE__URL")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let file_arg = file.display().to_string();
    assert!(gateway(&["import", "users", &file_arg]).contains("2 account(s) imported"));
    let listed = gateway(&["user", "list"]);
    assert!(gateway(&["import", "users", &file_arg]).contains("0 account(s) imported"));
    assert_eq!(gateway(&["user", "list"]), listed, "the same accounts");
    assert_eq!(listed.lines().count(), 2);
    // The imported password hash signs in.
    let db = Db::open(&DatabaseSettings {
        sqlite_path: db_path.display().to_string(),
        ..DatabaseSettings::default()
    })
    .await
    .unwrap();
    let accounts = Arc::new(
        Accounts::open(&AuthSettings::default(), db.clone(), Clock::system())
            .await
            .unwrap(),
    );
    assert!(accounts.login("sakura", PASSWORD).await.is_ok());
    db.close().await;
}
