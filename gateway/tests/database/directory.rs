//! The conformance checks of the referral directory, phrases, runtime settings and the admin
//! audit trail (migration 0004), run on both engines by `database.rs`. Two handles on one
//! database stand for two gateway nodes.

use std::sync::Arc;

use tsunagu::clock::Clock;
use tsunagu::db::Db;
use tsunagu::directory::{
    Actor, Directory, DirectoryError, DirectorySettings, ReferralInput, RuntimeSettings,
};

const DEFAULTS: RuntimeSettings = RuntimeSettings {
    overloaded: false,
    min_on_duty: 2,
};

fn admin() -> Actor {
    Actor {
        id: "01JADMIN000000000000000000".into(),
        name: "Admin".into(),
    }
}

async fn open(db: &Db) -> Arc<Directory> {
    Directory::open(
        db.clone(),
        Clock::manual(1_800_000_000_000),
        &DirectorySettings::default(),
        DEFAULTS,
    )
    .await
    .unwrap()
}

/// Another node's handle on the same database.
async fn node(db: &Db) -> Arc<Directory> {
    open(&db.reopen().await.unwrap()).await
}

fn edited(name: &str) -> ReferralInput {
    ReferralInput {
        name: name.into(),
        phone: "0120-279-338".into(),
        hours: "24h".into(),
        hours_note: "24時間".into(),
        languages: vec!["ja".into()],
        for_closing: true,
        verified: true,
        ..ReferralInput::default()
    }
}

pub async fn the_directory_is_seeded_once_with_every_entry_to_verify(db: Db) {
    let a = open(&db).await;
    let b = node(&db).await;
    let rows = db.referrals().await.unwrap();
    assert_eq!(rows.len(), 8, "seeded once though two nodes started");
    assert!(a.all_referrals().iter().all(|e| e.needs_verification));
    assert_eq!(b.all_referrals().len(), 8);
    assert!(!db.phrases().await.unwrap().is_empty());
    // Never again, even with every row changed away.
    assert!(!db.seed_directory(&rows, &[], 1).await.unwrap());
}

pub async fn an_edit_on_one_node_reaches_the_other_and_is_audited(db: Db) {
    let a = open(&db).await;
    let b = node(&db).await;
    let before = db.settings_revision().await.unwrap();
    a.put_referral(Some("yorisoi"), edited("よりそい（編集済み）"), &admin())
        .await
        .unwrap();
    assert!(db.settings_revision().await.unwrap() > before);
    assert!(!b
        .closing("ja")
        .iter()
        .any(|h| h.name == "よりそい（編集済み）"));
    assert!(b.refresh().await.unwrap(), "the other node sees the change");
    assert!(b
        .closing("ja")
        .iter()
        .any(|h| h.name == "よりそい（編集済み）"));
    assert!(!b.refresh().await.unwrap(), "and nothing more");
    let audit = a.audit_trail(10).await.unwrap();
    assert_eq!(audit[0].actor_id, admin().id);
    assert_eq!(audit[0].subject, "directory");
    assert_eq!(audit[0].action, "update");
    assert_eq!(audit[0].target_id.as_deref(), Some("yorisoi"));
    let view = b
        .all_referrals()
        .into_iter()
        .find(|e| e.entry.id == "yorisoi")
        .unwrap();
    assert!(!view.needs_verification);
    assert_eq!(view.open_now, Some(true));
    // Hidden: gone from closing messages and searches, still there for admins.
    let mut hide = edited("よりそい（編集済み）");
    hide.hidden = true;
    a.put_referral(Some("yorisoi"), hide, &admin())
        .await
        .unwrap();
    assert!(!a.closing("ja").iter().any(|h| h.number == "0120-279-338"));
    assert!(a.search("", "", "").iter().all(|e| e.entry.id != "yorisoi"));
    assert_eq!(a.audit_trail(1).await.unwrap()[0].action, "hide");
    assert!(matches!(
        a.put_referral(Some("nope"), edited("x"), &admin()).await,
        Err(DirectoryError::NotFound)
    ));
}

pub async fn a_csv_import_with_one_bad_row_writes_nothing(db: Db) {
    let a = open(&db).await;
    let before = db.referrals().await.unwrap();
    let audit_before = a.audit_trail(100).await.unwrap().len();
    let bad = "id,name,phone,hours\nyorisoi,Changed,0120-279-338,24h\n,New,0120-000-000,whenever\n";
    let e = a.import_referrals(bad, &admin()).await.unwrap_err();
    assert!(e.to_string().starts_with("line 3: hours:"), "{e}");
    assert_eq!(db.referrals().await.unwrap(), before);
    assert_eq!(a.audit_trail(100).await.unwrap().len(), audit_before);
    let good = "id,name,phone,hours,for_closing\nyorisoi,Changed,0120-279-338,24h,yes\n,New line,0120-000-000,mon-fri 09:00-17:00,no\n";
    assert_eq!(a.import_referrals(good, &admin()).await.unwrap(), 2);
    let after = db.referrals().await.unwrap();
    assert_eq!(after.len(), before.len() + 1);
    assert!(after
        .iter()
        .any(|r| r.name == "Changed" && r.id == "yorisoi"));
    let export = a.export_referrals().unwrap();
    assert!(export.contains("New line"));
    assert_eq!(a.audit_trail(1).await.unwrap()[0].action, "import");
}

pub async fn entries_take_the_order_given_and_an_incomplete_order_is_refused(db: Db) {
    let a = open(&db).await;
    let mut ids: Vec<String> = a.all_referrals().into_iter().map(|e| e.entry.id).collect();
    ids.reverse();
    a.order_referrals(&ids, &admin()).await.unwrap();
    let stored: Vec<String> = db
        .referrals()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(stored, ids);
    ids.pop();
    assert!(matches!(
        a.order_referrals(&ids, &admin()).await,
        Err(DirectoryError::Invalid(_))
    ));
}

pub async fn runtime_settings_override_the_defaults_on_every_node(db: Db) {
    let a = open(&db).await;
    let b = node(&db).await;
    assert_eq!(a.runtime(), DEFAULTS);
    let rt = a.put_runtime(Some(true), Some(3), &admin()).await.unwrap();
    assert_eq!(
        rt,
        RuntimeSettings {
            overloaded: true,
            min_on_duty: 3
        }
    );
    assert!(b.refresh().await.unwrap());
    assert_eq!(b.runtime(), rt);
    assert!(a.put_runtime(None, Some(1_000), &admin()).await.is_err());
    let audit = a.audit_trail(10).await.unwrap();
    assert!(audit
        .iter()
        .any(|e| e.subject == "setting" && e.detail.as_deref() == Some("3")));
}

pub async fn the_admin_audit_trail_is_append_only(db: Db) {
    let a = open(&db).await;
    a.put_runtime(Some(false), None, &admin()).await.unwrap();
    assert!(db
        .execute_raw("UPDATE admin_audit SET action = 'x'")
        .await
        .is_err());
    assert!(db.execute_raw("DELETE FROM admin_audit").await.is_err());
    assert_eq!(a.audit_trail(10).await.unwrap().len(), 1);
}
