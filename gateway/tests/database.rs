//! The database's conformance suite: one set of checks, each an async function taking a fresh,
//! migrated [`Db`], run against both engines the gateway supports: SQLite (a file in a
//! temporary directory, as the embedded default keeps it) and PostgreSQL (a cluster of this
//! test's own, `support/postgres.rs`). Whatever the gateway stores must behave the same on
//! both; a check that passes on one engine only is a bug in the schema or the SQL.
//!
//! Each engine's test runs every check in turn, each in a database of its own, and names the
//! check that failed.

#[path = "database/alerts.rs"]
mod alerts;
#[path = "support/postgres.rs"]
mod postgres;

#[path = "database/directory.rs"]
mod directory;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use tsunagu::auth::{Accounts, AuthError, AuthSettings, Role};
use tsunagu::clock::Clock;
use tsunagu::conversation::Conversation;
use tsunagu::db::{
    AccountAuditRow, AccountRecord, AuditRow, ChallengeRow, DatabaseSettings, Db, DbError, Engine,
};
use tsunagu::escalation::{Actor, EscalationSettings, Escalations, FlagEntry};
use tsunagu::protocol::{Channel, EventBody, LogEntry, Side};
use ulid::Ulid;

use directory::*;

type Check = fn(Db) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every check of the suite, by name.
fn checks() -> Vec<(&'static str, Check)> {
    macro_rules! checks {
        ($($name:path),* $(,)?) => {
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
        an_escalation_record_reads_back_and_decrypts,
        the_retention_sweep_on_two_handles_deletes_a_record_once,
        a_delivery_is_claimed_by_one_of_two_handles,
        audit_entries_are_appended_in_order_and_never_changed,
        importing_an_escalation_directory_twice_gives_the_same_rows,
        a_totp_step_and_a_recovery_code_are_used_once_across_two_handles,
        a_pending_sign_in_expires_and_is_used_once,
        the_account_audit_trail_is_append_only_and_outlives_the_account,
        the_directory_is_seeded_once_with_every_entry_to_verify,
        an_edit_on_one_node_reaches_the_other_and_is_audited,
        a_csv_import_with_one_bad_row_writes_nothing,
        entries_take_the_order_given_and_an_incomplete_order_is_refused,
        runtime_settings_override_the_defaults_on_every_node,
        the_admin_audit_trail_is_append_only,
        alerts::an_alert_is_delivered_escalated_and_acknowledged_once_across_two_handles,
        alerts::an_acknowledgement_link_is_used_once_and_not_after_it_expires,
        alerts::the_rota_reads_back_and_the_alert_audit_is_append_only,
        alerts::a_line_link_code_is_used_once_and_a_link_reads_back_sealed_as_written,
    ]
}

const PASSWORD: &str = "long enough password";

/// Sign-ins by password alone: these checks are about the database, not the sign-in's steps
/// (tests/api/admin.rs has those).
fn password_only() -> AuthSettings {
    AuthSettings {
        require_totp_for: Vec::new(),
        require_pledge: false,
        ..AuthSettings::default()
    }
}

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
        Accounts::open(&password_only(), db.clone(), Clock::system())
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
    let other = Accounts::open(&password_only(), db.clone(), Clock::system())
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
    let node_a = Accounts::open(&password_only(), db.clone(), Clock::system())
        .await
        .unwrap();
    let node_b = Accounts::open(&password_only(), db.clone(), Clock::system())
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

// ---- escalation records and their audit trail -------------------------------------------

const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// A record store in `db` (another "node" when called twice), on a manual clock at 1.7e12,
/// keeping records 60 s.
fn escalations(db: &Db, tune: impl FnOnce(&mut EscalationSettings)) -> Escalations {
    let mut cfg = EscalationSettings {
        key: Some(KEY.into()),
        retention_ms: 60_000,
        ..EscalationSettings::default()
    };
    tune(&mut cfg);
    Escalations::open(&cfg, db.clone(), Clock::manual(1_700_000_000_000))
        .unwrap()
        .unwrap()
}

/// A record for a fresh web conversation, whose transcript holds `text`; returns its id.
async fn flagged(esc: &Escalations, text: &str) -> Ulid {
    let conv = Conversation::new(Ulid::new(), Channel::Web, None, None, 0);
    let id = Ulid::new();
    let flag = FlagEntry {
        id: None,
        category: "self_harm".into(),
        reason: "reason".into(),
        by: "Sakura".into(),
        by_id: Some(Ulid::new()),
        at: 1,
    };
    let log = [LogEntry {
        seq: 1,
        at: 1,
        event: EventBody::Message {
            from: Side::Visitor,
            id: Ulid::new().into(),
            text: text.into(),
            operator: None,
        },
    }];
    esc.create(&conv, id, Some("U-line-id".into()), flag, &log)
        .await
        .unwrap();
    id
}

/// A second handle on the same database (a second node's pool).
async fn second_handle(db: &Db) -> Db {
    db.reopen().await.unwrap()
}

async fn an_escalation_record_reads_back_and_decrypts(db: Db) {
    let esc = escalations(&db, |_| {});
    let id = flagged(&esc, "canary-in-the-record").await;
    let row = db.escalation(id).await.unwrap().expect("stored");
    assert_eq!(&row.sealed[..4], b"TSG1", "sealed as before");
    assert!(!String::from_utf8_lossy(&row.sealed).contains("canary"));
    assert_eq!(row.expires_at, 1_700_000_060_000);
    assert_eq!((row.closed_at, row.delivered_at), (None, None));
    esc.update(id, |r| r.closed = true).await.unwrap();
    let rec = esc.read(id, &Actor::system()).await.unwrap();
    assert_eq!(rec.transcript[0].text, "canary-in-the-record");
    assert_eq!(rec.channel_ref.as_deref(), Some("U-line-id"));
    assert!(rec.closed);
    let row = db.escalation(id).await.unwrap().unwrap();
    assert_eq!(row.version, 2, "one rewrite");
    assert!(row.closed_at.is_some());
    // Another key reads nothing.
    let other = escalations(&db, |c| c.key = Some("ff".repeat(32).into()));
    assert!(other.read(id, &Actor::system()).await.is_err());
    // A rewrite based on an older version changes nothing.
    assert!(!db
        .replace_escalation(id, 1, b"stale".to_vec(), 0, None)
        .await
        .unwrap());
    assert!(esc.read(id, &Actor::system()).await.is_ok());
}

async fn the_retention_sweep_on_two_handles_deletes_a_record_once(db: Db) {
    let other = second_handle(&db).await;
    let node_a = escalations(&db, |_| {});
    let node_b = escalations(&other, |_| {});
    let expired: Vec<Ulid> = {
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(flagged(&node_a, &format!("record {i}")).await);
        }
        ids
    };
    let later = escalations(&db, |c| c.retention_ms = 3_600_000);
    let kept = flagged(&later, "kept").await;
    let now = 1_700_000_061_000;
    let (a, b) = tokio::join!(node_a.sweep(now), node_b.sweep(now));
    assert_eq!(a.unwrap() + b.unwrap(), 5, "each record deleted once");
    assert!(db.escalation(kept).await.unwrap().is_some());
    let trail = db.audit_trail().await.unwrap();
    for id in &expired {
        assert_eq!(
            trail
                .iter()
                .filter(|e| e.action == "expired" && e.record_id == Some(*id))
                .count(),
            1,
            "audited once"
        );
        assert!(db.escalation(*id).await.unwrap().is_none());
    }
    other.close().await;
}

async fn a_delivery_is_claimed_by_one_of_two_handles(db: Db) {
    let other = second_handle(&db).await;
    let esc = escalations(&db, |_| {});
    let open = flagged(&esc, "still open").await;
    let id = flagged(&esc, "closed").await;
    esc.update(id, |r| r.closed = true).await.unwrap();
    let now = 1_700_000_001_000;
    // Only closed, undelivered records are due.
    assert_eq!(db.due_deliveries(now).await.unwrap(), vec![id]);
    assert!(!db.claim_delivery(open, now, 1_000).await.unwrap());
    let (a, b) = tokio::join!(
        db.claim_delivery(id, now, 1_000),
        other.claim_delivery(id, now, 1_000)
    );
    assert_eq!(u8::from(a.unwrap()) + u8::from(b.unwrap()), 1, "one claim");
    assert!(db.due_deliveries(now).await.unwrap().is_empty(), "claimed");
    // The claimant failed: not due until the backoff passes, then claimable again.
    db.delivery_failed(id, now + 500).await.unwrap();
    assert!(!other.claim_delivery(id, now + 100, 1_000).await.unwrap());
    assert!(other.claim_delivery(id, now + 500, 1_000).await.unwrap());
    // A claim whose node vanished lapses.
    assert!(!db.claim_delivery(id, now + 1_000, 1_000).await.unwrap());
    assert!(db.claim_delivery(id, now + 1_500, 1_000).await.unwrap());
    assert_eq!(
        db.escalation(id).await.unwrap().unwrap().delivery_attempts,
        3
    );
    db.delivery_succeeded(id, now + 1_600, false).await.unwrap();
    let row = db.escalation(id).await.unwrap().unwrap();
    assert_eq!(row.delivered_at, Some(now + 1_600));
    assert!(!other.claim_delivery(id, now + 10_000, 1_000).await.unwrap());
    assert!(db.due_deliveries(now + 10_000).await.unwrap().is_empty());
    let trail = db.audit_trail().await.unwrap();
    assert_eq!(trail.iter().filter(|e| e.action == "delivered").count(), 1);
    // Delivered and deleted: audited both ways, gone.
    let gone = flagged(&esc, "to be deleted").await;
    esc.update(gone, |r| r.closed = true).await.unwrap();
    assert!(db.claim_delivery(gone, now, 1_000).await.unwrap());
    db.delivery_succeeded(gone, now, true).await.unwrap();
    assert!(db.escalation(gone).await.unwrap().is_none());
    assert!(db
        .audit_trail()
        .await
        .unwrap()
        .iter()
        .any(|e| e.action == "deleted_after_delivery" && e.record_id == Some(gone)));
    other.close().await;
}

async fn audit_entries_are_appended_in_order_and_never_changed(db: Db) {
    let entry = |at: u64, action: &str| AuditRow {
        at,
        actor_id: Some(Ulid::new()),
        actor_name: "コーディネーター".into(),
        action: action.into(),
        record_id: Some(Ulid::new()),
    };
    // Out of time order on purpose: the trail keeps the order of writing.
    let written = vec![entry(30, "list"), entry(10, "view"), entry(20, "view")];
    for e in &written {
        db.append_audit(e).await.unwrap();
    }
    let system = AuditRow {
        at: 40,
        actor_id: None,
        actor_name: "system".into(),
        action: "expired".into(),
        record_id: None,
    };
    db.append_audit(&system).await.unwrap();
    let mut expected = written.clone();
    expected.push(system);
    assert_eq!(db.audit_trail().await.unwrap(), expected);
    // The table refuses changes and deletions, whoever asks.
    assert!(db
        .execute_raw("UPDATE escalation_audit SET action = 'nothing'")
        .await
        .is_err());
    assert!(db
        .execute_raw("DELETE FROM escalation_audit")
        .await
        .is_err());
    assert_eq!(db.audit_trail().await.unwrap(), expected, "unchanged");
}

async fn a_totp_step_and_a_recovery_code_are_used_once_across_two_handles(db: Db) {
    let a = record("kai", "coordinator");
    db.insert_account(&a).await.unwrap();
    let other = second_handle(&db).await;
    // No secret yet: no step can be used.
    assert!(!db.use_totp_step(a.id, 100).await.unwrap());
    let codes = vec!["h1".to_owned(), "h2".to_owned()];
    assert!(db
        .enable_totp(a.id, "JBSWY3DPEHPK3PXP", 5, 100, &codes)
        .await
        .unwrap());
    let sec = db.account_security(a.id).await.unwrap().unwrap();
    assert_eq!(sec.totp_secret.as_deref(), Some("JBSWY3DPEHPK3PXP"));
    // The enrolling step and earlier ones are spent; the next one is taken by one handle.
    assert!(!db.use_totp_step(a.id, 100).await.unwrap());
    let (x, y) = tokio::join!(db.use_totp_step(a.id, 101), other.use_totp_step(a.id, 101));
    assert!(x.unwrap() ^ y.unwrap(), "exactly one handle used step 101");
    assert!(!db.use_totp_step(a.id, 99).await.unwrap());
    let (x, y) = tokio::join!(
        db.use_recovery_code(a.id, "h1", 7),
        other.use_recovery_code(a.id, "h1", 7)
    );
    assert!(x.unwrap() ^ y.unwrap(), "exactly one handle used the code");
    assert!(!db.use_recovery_code(a.id, "nope", 7).await.unwrap());
    assert_eq!(db.recovery_codes_left(a.id).await.unwrap(), 1);
    // A reset clears the secret and the codes.
    assert!(db.clear_totp(a.id).await.unwrap());
    assert_eq!(db.recovery_codes_left(a.id).await.unwrap(), 0);
    assert!(db
        .account_security(a.id)
        .await
        .unwrap()
        .unwrap()
        .totp_secret
        .is_none());
    other.close().await;
}

async fn a_pending_sign_in_expires_and_is_used_once(db: Db) {
    let a = record("hana", "operator");
    db.insert_account(&a).await.unwrap();
    let c = ChallengeRow {
        token_hash: "t1".into(),
        account_id: a.id,
        created_at: 1_000,
        expires_at: 2_000,
        second_factor_at: None,
        enrol_secret: Some("SECRET".into()),
    };
    db.insert_challenge(&c).await.unwrap();
    assert_eq!(db.challenge("t1", 1_500).await.unwrap(), Some(c.clone()));
    assert_eq!(db.challenge("t1", 2_000).await.unwrap(), None, "expired");
    db.update_challenge("t1", Some(1_600), None).await.unwrap();
    let now = db.challenge("t1", 1_700).await.unwrap().unwrap();
    assert_eq!(
        (now.second_factor_at, now.enrol_secret),
        (Some(1_600), None)
    );
    assert!(db.delete_challenge("t1").await.unwrap());
    assert!(!db.delete_challenge("t1").await.unwrap(), "used once");
    // Deleting the account deletes its pending sign-ins.
    db.insert_challenge(&ChallengeRow {
        token_hash: "t2".into(),
        ..c
    })
    .await
    .unwrap();
    assert!(db.delete_account(a.id).await.unwrap());
    assert_eq!(db.challenge("t2", 1_500).await.unwrap(), None);
}

async fn the_account_audit_trail_is_append_only_and_outlives_the_account(db: Db) {
    let a = record("mika", "operator");
    db.insert_account(&a).await.unwrap();
    let admin = Ulid::new();
    let entry = |at: u64, action: &str| AccountAuditRow {
        at,
        actor_id: Some(admin),
        action: action.into(),
        target_id: Some(a.id),
        detail: None,
    };
    for e in [entry(1, "account_added"), entry(2, "account_deleted")] {
        db.append_account_audit(&e).await.unwrap();
    }
    assert!(db.delete_account(a.id).await.unwrap());
    let trail = db.account_audit(10).await.unwrap();
    assert_eq!(
        trail,
        vec![entry(2, "account_deleted"), entry(1, "account_added")]
    );
    assert_eq!(db.account_audit(1).await.unwrap().len(), 1);
    assert!(db
        .execute_raw("UPDATE account_audit SET action = 'nothing'")
        .await
        .is_err());
    assert!(db.execute_raw("DELETE FROM account_audit").await.is_err());
    assert_eq!(db.account_audit(10).await.unwrap(), trail, "unchanged");
}

async fn importing_an_escalation_directory_twice_gives_the_same_rows(db: Db) {
    // A directory as an earlier version wrote it: sealed records named `<expiry>-<id>.rec`
    // and `audit.jsonl`. Sealed here by a store with the same key, then copied out.
    let source = second_handle(&db).await;
    let scratch = escalations(&source, |_| {});
    let dir = std::env::temp_dir().join(format!("tsunagu-import-{}", Ulid::new()));
    let _cleanup = TempDir(dir.clone());
    std::fs::create_dir_all(&dir).unwrap();
    let mut ids = Vec::new();
    for text in ["first canary", "second canary"] {
        let id = flagged(&scratch, text).await;
        let row = source.escalation(id).await.unwrap().unwrap();
        std::fs::write(
            dir.join(format!("{:013}-{id}.rec", row.expires_at)),
            &row.sealed,
        )
        .unwrap();
        source.delete_escalation(id).await.unwrap();
        ids.push(id);
    }
    let actor = Ulid::new();
    let line = |action: &str, record: &Ulid| {
        serde_json::json!({"at": 5, "actor": "Kai", "actor_id": actor, "action": action,
                           "record": record})
        .to_string()
    };
    // Two identical lines: both kept, as the file had them.
    let trail = [
        line("view", &ids[0]),
        line("view", &ids[0]),
        line("list", &ids[1]),
    ]
    .join("\n");
    std::fs::write(dir.join("audit.jsonl"), trail + "\n").unwrap();
    std::fs::write(dir.join("9999999999999-not-a-ulid.rec"), b"junk").unwrap();
    source.close().await;

    let esc = escalations(&db, |_| {});
    let first = esc.import_dir(&dir).await.unwrap();
    assert_eq!(
        (
            first.done.imported,
            first.done.present,
            first.done.audit_imported
        ),
        (2, 0, 3)
    );
    assert_eq!(first.unreadable.len(), 1);
    let rows = db.escalations().await.unwrap();
    let audit = db.audit_trail().await.unwrap();
    let second = esc.import_dir(&dir).await.unwrap();
    assert_eq!(
        (
            second.done.imported,
            second.done.present,
            second.done.audit_imported
        ),
        (0, 2, 0)
    );
    assert_eq!(db.escalations().await.unwrap(), rows, "the same records");
    assert_eq!(db.audit_trail().await.unwrap(), audit, "the same trail");
    // Records still decrypt, with their content.
    for (id, text) in ids.iter().zip(["first canary", "second canary"]) {
        let rec = esc.read(*id, &Actor::system()).await.unwrap();
        assert_eq!(rec.transcript[0].text, text);
    }
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
        Accounts::open(&password_only(), db.clone(), Clock::system())
            .await
            .unwrap(),
    );
    assert!(accounts.login("sakura", PASSWORD).await.is_ok());
    db.close().await;
}
