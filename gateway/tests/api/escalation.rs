//! Emergency flags and escalation records: the one path to retention, and its guards.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

/// A 32-byte test key; real keys come from the environment, never the repository.
const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

async fn flagging_app(tune: impl FnOnce(&mut tsunagu::config::Settings)) -> TestApp {
    flagging_app_with_clock(tsunagu::clock::Clock::system(), tune).await
}

/// [`flagging_app`] reading the time from `clock`.
async fn flagging_app_with_clock(
    clock: tsunagu::clock::Clock,
    tune: impl FnOnce(&mut tsunagu::config::Settings),
) -> TestApp {
    spawn_app_with_clock(clock, move |s| {
        s.escalation.key = Some(KEY.into());
        s.escalation.sweep_ms = 50;
        tune(s);
    })
    .await
}

/// The app's database (the test settings' in-memory SQLite).
fn database(app: &TestApp) -> tsunagu::db::Db {
    app.state.engine.escalations.as_ref().unwrap().db().clone()
}

/// The database fails for writes to `table` (a real error from SQLite, raised by a trigger).
async fn break_writes(app: &TestApp, table: &str) {
    let db = database(app);
    for op in ["INSERT", "UPDATE"] {
        db.execute_raw(&format!(
            "CREATE TRIGGER test_fail_{op}_{table} BEFORE {op} ON {table} \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        ))
        .await
        .unwrap();
    }
}

/// The database takes writes to `table` again.
async fn mend_writes(app: &TestApp, table: &str) {
    let db = database(app);
    for op in ["INSERT", "UPDATE"] {
        db.execute_raw(&format!("DROP TRIGGER test_fail_{op}_{table}"))
            .await
            .unwrap();
    }
}

/// Whether any stored record or audit entry holds `needle` in plaintext.
async fn database_contains(app: &TestApp, needle: &str) -> bool {
    let db = database(app);
    let records = db.escalations().await.unwrap();
    let trail = db.audit_trail().await.unwrap();
    records
        .iter()
        .any(|r| String::from_utf8_lossy(&r.sealed).contains(needle))
        || trail.iter().any(|a| format!("{a:?}").contains(needle))
}

#[tokio::test]
async fn without_a_key_flagging_is_not_enabled() {
    let app = spawn_app().await;
    let (uid, cookie) = app
        .session("sakura", tsunagu::auth::Role::Operator, Some(2))
        .await;
    let mut client = app
        .connect("/ws/operator", Some(&app.base), Some(&cookie))
        .await
        .unwrap();
    client.send(json!({"type":"hello","v":1,"id":id()})).await;
    let w = client.expect_type("welcome").await;
    assert_eq!(w["emergency_categories"], json!([]));
    let mut op = Operator {
        client,
        id: uid,
        cookie,
    };
    let _v = app.visitor("ja").await;
    let c = op.take().await;
    let r = op
        .act("flag", &c, json!({"category":"self_harm","reason":"x"}))
        .await;
    assert_eq!(r["code"], "not_enabled");
    app.stop().await;
}

/// Issue 17, item 19: with flagging off (the first-run default) the API says so up front in
/// `/api/me`, and the escalation and audit endpoints answer `not_enabled`, not a bare 404 the
/// coordinator view took for a failure to retry.
#[tokio::test]
async fn with_flagging_off_the_api_says_so_and_records_and_audit_answer_not_enabled() {
    let app = spawn_app().await;
    let (_, cookie) = app.session("admin", tsunagu::auth::Role::Admin, None).await;
    let me: Value = app.get_json_as(&cookie, "/api/me").await;
    assert_eq!(me["flagging"], false, "{me}");
    for path in ["/api/escalations", "/api/audit"] {
        let r = app.get_as(&cookie, path).await;
        assert_eq!(r.status(), 404, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "not_enabled", "{path}: {body}");
    }
    app.stop().await;

    let app = flagging_app(|_| {}).await;
    let (_, cookie) = app.session("admin", tsunagu::auth::Role::Admin, None).await;
    let me: Value = app.get_json_as(&cookie, "/api/me").await;
    assert_eq!(me["flagging"], true, "{me}");
    assert_eq!(app.get_as(&cookie, "/api/escalations").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn an_operator_flag_alerts_coordinators_and_keeps_an_encrypted_record_only_they_can_read() {
    let app = flagging_app(|_| {}).await;
    let mut op = app.operator("sakura", 2, false).await;
    let mut v = app.visitor("ja").await;
    let c = op.take().await;
    let before = format!("canary-before-{}", ulid::Ulid::new());
    v.say(&before).await;

    // Bad flags are refused and change nothing.
    let r = op
        .act("flag", &c, json!({"category":"gossip","reason":"x"}))
        .await;
    assert_eq!(r["code"], "invalid");
    let r = op
        .act("flag", &c, json!({"category":"self_harm","reason":"  "}))
        .await;
    assert_eq!(r["code"], "invalid");

    let r = op
        .act(
            "flag",
            &c,
            json!({"category":"self_harm","reason":"死にたいと話している"}),
        )
        .await;
    assert_eq!(r["type"], "ack", "{r}");
    let s = op
        .client
        .expect("flagged summary", |e| {
            e["type"] == "conversation" && e["conversation"]["emergency"]["open"] == true
        })
        .await;
    assert_eq!(
        s["conversation"]["emergency"]["categories"],
        json!(["self_harm"])
    );

    // The coordinators see it at once, with who is on it.
    let coord = app.coordinator().await;
    let d: Value = app.get_json_as(&coord, "/api/dashboard").await;
    let alert = d["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "emergency")
        .expect("emergency alert")
        .clone();
    assert_eq!(alert["category"], "self_harm");
    assert_eq!(alert["operator"], "Op sakura");
    assert_eq!(d["emergencies"][0]["operator"], "Op sakura");
    let r = app
        .post_as(
            &coord,
            &format!("/api/alerts/{}/ack", alert["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let s = op
        .client
        .expect("acknowledged summary", |e| {
            e["type"] == "conversation"
                && e["conversation"]["emergency"]["acknowledged_by"] == "Op coord"
        })
        .await;
    assert_eq!(s["conversation"]["id"], c.as_str());

    // The conversation goes on; the record follows it.
    let after = format!("canary-after-{}", ulid::Ulid::new());
    v.say(&after).await;
    let r = op
        .act(
            "flag",
            &c,
            json!({"category":"medical","reason":"薬を多く飲んだと言っている"}),
        )
        .await;
    assert_eq!(r["type"], "ack");

    // Operators cannot read records; coordinators can, and every read is audited.
    assert_eq!(
        app.get_as(&op.cookie, "/api/escalations").await.status(),
        403
    );
    let list: Value = app.get_json_as(&coord, "/api/escalations").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["categories"], json!(["self_harm", "medical"]));
    let rid = list[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get_as(&op.cookie, &format!("/api/escalations/{rid}"))
            .await
            .status(),
        403
    );
    let rec: Value = app
        .get_json_as(&coord, &format!("/api/escalations/{rid}"))
        .await;
    let texts: Vec<&str> = rec["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert!(
        texts.contains(&before.as_str()),
        "transcript so far: {texts:?}"
    );
    assert!(
        texts.contains(&after.as_str()),
        "and from then on: {texts:?}"
    );
    assert!(rec["actions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["action"] == "alert_acknowledged"));
    let (_, admin) = app.session("admin", tsunagu::auth::Role::Admin, None).await;
    assert_eq!(
        app.get_as(&coord, "/api/audit").await.status(),
        403,
        "the audit trail is for admins"
    );
    let trail: Value = app.get_json_as(&admin, "/api/audit").await;
    assert!(trail
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["action"] == "view"
            && a["record"] == rid.as_str()
            && a["actor"].as_str().unwrap().contains("coord")));

    // Never in plaintext in the database.
    for canary in [&before, &after] {
        assert!(
            !database_contains(&app, canary).await,
            "{canary} in plaintext in the database"
        );
    }

    // Close: the record is complete, the conversation gone, the operator offered a pause.
    op.act("end", &c, json!({})).await;
    op.act("wrap_up", &c, json!({"category":"health"})).await;
    let removed = op.client.expect_type("removed").await;
    assert_eq!(removed["suggest_pause"], true);
    assert!(app.all_deleted().await);
    let rec: Value = app
        .get_json_as(&coord, &format!("/api/escalations/{rid}"))
        .await;
    assert_eq!(rec["closed"], true);
    app.stop().await;
}

#[tokio::test]
async fn an_open_emergency_is_never_idle_closed_until_a_coordinator_clears_it() {
    // On a manual clock: the idle limit passes when the test moves time on; a second, unflagged
    // conversation shows when the engine's timer has looked at the new time.
    let clock = tsunagu::clock::Clock::manual(tsunagu::clock::now_ms());
    let app = flagging_app_with_clock(clock.clone(), |s| s.conversation.idle_limit_ms = 300).await;
    let mut op = app.operator("sakura", 2, false).await;
    let _v = app.visitor("ja").await;
    let _witness = app.visitor("ja").await;
    let c = op.take().await;
    let w = op.take().await;
    op.act(
        "flag",
        &c,
        json!({"category":"abuse_dv","reason":"家で暴力を受けている"}),
    )
    .await;
    clock.advance(900);
    op.client
        .expect("the unflagged conversation idle-closed", |e| {
            e["type"] == "conversation"
                && e["conversation"]["id"] == w.as_str()
                && e["conversation"]["state"] == "wrap_up"
        })
        .await;
    let conv = app.stored(&c).await;
    assert_eq!(
        conv.state.kind(),
        tsunagu::conversation::StateKind::Active,
        "not idle-closed"
    );

    let coord = app.coordinator().await;
    let r = app
        .post_as(
            &coord,
            &format!("/api/conversations/{c}/flag/clear"),
            json!({"reason":""}),
        )
        .await;
    assert_eq!(r.status(), 400, "clearing needs a reason");
    let r = app
        .post_as(
            &coord,
            &format!("/api/conversations/{c}/flag/clear"),
            json!({"reason":"安全が確認できた"}),
        )
        .await;
    assert_eq!(r.status(), 204);
    clock.advance(900);
    op.client
        .expect("idle end after clearing", |e| {
            e["type"] == "conversation" && e["conversation"]["state"] == "wrap_up"
        })
        .await;
    app.stop().await;
}

#[tokio::test]
async fn a_coordinator_can_raise_a_flag_on_any_live_conversation() {
    let app = flagging_app(|_| {}).await;
    let v = app.visitor("ja").await;
    let coord = app.coordinator().await;
    let (_, oper) = app
        .session("sakura", tsunagu::auth::Role::Operator, None)
        .await;
    let list: Value = app.get_json_as(&coord, "/api/conversations").await;
    assert_eq!(list[0]["id"], v.conversation.as_str());
    assert!(list[0].get("token").is_none() && !list.to_string().contains(&v.token));
    let path = format!("/api/conversations/{}/flag", v.conversation);
    assert_eq!(
        app.post_as(&oper, &path, json!({"category":"crime","reason":"x"}))
            .await
            .status(),
        403
    );
    let r = app
        .http()
        .post(format!("{}{path}", app.base))
        .header("cookie", &coord)
        .header("origin", "https://evil.example")
        .json(&json!({"category":"crime","reason":"x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "cross-site requests refused");
    assert_eq!(
        app.post_as(
            &coord,
            &path,
            json!({"category":"crime","reason":"脅されている"})
        )
        .await
        .status(),
        204
    );
    let list: Value = app.get_json_as(&coord, "/api/conversations").await;
    assert_eq!(list[0]["emergency"]["open"], true);
    app.stop().await;
}

#[tokio::test]
async fn a_record_is_deleted_when_its_retention_ends() {
    // On a manual clock: the record expires when the test moves time on, however slowly the
    // machine gets there.
    let clock = tsunagu::clock::Clock::manual(tsunagu::clock::now_ms());
    let app = flagging_app_with_clock(clock.clone(), |s| s.escalation.retention_ms = 400).await;
    let mut op = app.operator("sakura", 2, false).await;
    let _v = app.visitor("ja").await;
    let c = op.take().await;
    op.act("flag", &c, json!({"category":"other","reason":"心配"}))
        .await;
    let coord = app.coordinator().await;
    let list: Value = app.get_json_as(&coord, "/api/escalations").await;
    let rid = list[0]["id"].as_str().unwrap().to_owned();
    clock.advance(800);
    // The sweeper looks every 50 ms (real time): give it up to 10 s to come round.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = app
            .get_as(&coord, &format!("/api/escalations/{rid}"))
            .await
            .status();
        if status == 404 || tokio::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 404);
    assert!(database(&app).escalations().await.unwrap().is_empty());
    let (_, admin) = app.session("admin", tsunagu::auth::Role::Admin, None).await;
    let trail: Value = app.get_json_as(&admin, "/api/audit").await;
    assert!(trail
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["action"] == "expired" && a["record"] == rid.as_str()));
    app.stop().await;
}

/// A fake case system: fails the first `fail` deliveries with 500, then records and accepts.
async fn case_system(
    fail: usize,
) -> (
    String,
    tokio::sync::mpsc::Receiver<(axum::http::HeaderMap, String)>,
) {
    use axum::routing::post;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let count = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let tx = tx.clone();
            let count = Arc::clone(&count);
            async move {
                if count.fetch_add(1, Ordering::SeqCst) < fail {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                let _ = tx.send((headers, body)).await;
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

/// Checks the signature with Python's own hmac module: an independent implementation.
fn python_verifies(secret: &str, timestamp: &str, body: &str, signature: &str) -> bool {
    let script = "import hmac,hashlib,sys\nsecret,ts,sig=sys.argv[1],sys.argv[2],sys.argv[3]\nbody=sys.stdin.buffer.read()\nmac=hmac.new(secret.encode(),ts.encode()+b'.'+body,hashlib.sha256).hexdigest()\nsys.exit(0 if hmac.compare_digest('v1='+mac,sig) else 1)\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, secret, timestamp, signature])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    child.wait().unwrap().success()
}

#[tokio::test]
async fn a_closed_record_is_delivered_signed_to_the_case_system_with_retries_then_removed() {
    let (url, mut received) = case_system(2).await;
    let app = flagging_app(move |s| {
        s.escalation.webhook_url = Some(url);
        s.escalation.webhook_secret = Some("case-system-secret".into());
        s.escalation.delete_after_delivery = true;
        s.escalation.webhook_backoff_ms = 50;
    })
    .await;
    let mut op = app.operator("sakura", 2, false).await;
    let mut v = app.visitor("ja").await;
    let c = op.take().await;
    v.say("助けてほしい").await;
    op.act("flag", &c, json!({"category":"self_harm","reason":"危険"}))
        .await;
    op.act("end", &c, json!({})).await;
    op.act("wrap_up", &c, json!({"category":"health"})).await;

    // The delivery at the flag (item 5 of issue 21) may come first; this test is about the
    // completed record.
    let (headers, body) = loop {
        let (headers, body) = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .expect("delivered in time")
            .unwrap();
        if headers["x-tsunagu-stage"] == "closed" {
            break (headers, body);
        }
    };
    let ts = headers["x-tsunagu-timestamp"].to_str().unwrap();
    let sig = headers["x-tsunagu-signature"].to_str().unwrap();
    assert!(
        python_verifies("case-system-secret", ts, &body, sig),
        "signature checks out independently"
    );
    assert!(!python_verifies("wrong-secret", ts, &body, sig));
    assert!(!python_verifies(
        "case-system-secret",
        ts,
        &body.replace("助けて", "たすけて"),
        sig
    ));
    let rec: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rec["conversation"], c.as_str());
    assert_eq!(rec["closed"], true);
    assert_eq!(rec["transcript"][0]["text"], "助けてほしい");

    // Removed locally once acknowledged, and the trail says so.
    let mut gone = false;
    for _ in 0..50 {
        if database(&app).escalations().await.unwrap().is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "record removed after delivery");
    let trail = app
        .state
        .engine
        .escalations
        .as_ref()
        .unwrap()
        .audit_trail()
        .await
        .unwrap();
    assert!(trail.iter().any(|a| a.action == "delivered"));
    app.stop().await;
}

/// Issue 21, item 5: the record reaches the case system when the flag is raised (open, the
/// transcript so far), and again at the close, complete, under the same record id.
#[tokio::test]
async fn a_record_is_delivered_when_the_flag_is_raised_and_again_complete_at_the_close() {
    let (url, mut received) = case_system(1).await;
    let app = flagging_app(move |s| {
        s.escalation.webhook_url = Some(url);
        s.escalation.webhook_secret = Some("case-system-secret".into());
        s.escalation.webhook_backoff_ms = 50;
        s.escalation.sweep_ms = 50;
    })
    .await;
    let mut op = app.operator("sakura", 2, false).await;
    let mut v = app.visitor("ja").await;
    let c = op.take().await;
    v.say("助けてほしい").await;
    op.act("flag", &c, json!({"category":"self_harm","reason":"危険"}))
        .await;

    // The first attempt fails (500): retried while the record is open.
    let (headers, body) = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("delivered at the flag")
        .unwrap();
    assert_eq!(headers["x-tsunagu-stage"], "raised");
    let ts = headers["x-tsunagu-timestamp"].to_str().unwrap();
    let sig = headers["x-tsunagu-signature"].to_str().unwrap();
    assert!(python_verifies("case-system-secret", ts, &body, sig));
    let rec: Value = serde_json::from_str(&body).unwrap();
    let id = rec["id"].as_str().unwrap().to_owned();
    assert_eq!(headers["x-tsunagu-record"], id.as_str());
    assert_eq!(rec["closed"], false);
    assert_eq!(rec["flags"][0]["category"], "self_harm");
    assert_eq!(rec["transcript"][0]["text"], "助けてほしい");
    let esc = app.state.engine.escalations.as_ref().unwrap();
    assert!(
        esc.delivery_failures() >= 1,
        "the failed attempt is counted"
    );

    v.say("いま家にいる").await;
    op.act("end", &c, json!({})).await;
    op.act("wrap_up", &c, json!({"category":"health"})).await;
    let (headers, body) = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("delivered at the close")
        .unwrap();
    assert_eq!(headers["x-tsunagu-stage"], "closed");
    assert_eq!(headers["x-tsunagu-record"], id.as_str());
    let rec: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rec["closed"], true);
    assert!(body.contains("いま家にいる"), "the completed transcript");
    // The gateway audits once the case system has answered, just after it received the body.
    let mut audited = false;
    for _ in 0..50 {
        let trail = esc.audit_trail().await.unwrap();
        if trail.iter().any(|a| a.action == "delivered") {
            assert!(trail.iter().any(|a| a.action == "delivered_at_flag"));
            audited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(audited, "both deliveries audited");
    assert_eq!(esc.failing_deliveries(), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_flag_whose_record_cannot_be_written_is_refused_and_its_retry_is_recorded_once() {
    let app = flagging_app(|_| {}).await;
    let mut op = app.operator("sakura", 2, false).await;
    let _v = app.visitor("ja").await;
    let c = op.take().await;
    // The database fails.
    break_writes(&app, "escalation_records").await;
    let cid = id();
    let frame =
        json!({"type":"flag","id":cid,"conversation":c,"category":"self_harm","reason":"危険"});
    op.client.send(frame.clone()).await;
    let c1 = cid.clone();
    let r = op
        .client
        .expect("flag reply", move |e| e["id"] == c1.as_str())
        .await;
    assert_eq!(r["code"], "unavailable", "{r}");
    let conv = app.stored(&c).await;
    assert!(
        conv.emergency.is_none(),
        "nothing stored when the record could not be written"
    );

    // The database is back; the console retries with the same id.
    mend_writes(&app, "escalation_records").await;
    op.client.send(frame.clone()).await;
    let c2 = cid.clone();
    let r = op
        .client
        .expect("retry reply", move |e| {
            e["id"] == c2.as_str() && e["type"] == "ack"
        })
        .await;
    assert_eq!(r["type"], "ack");
    // A second retry (the ack was lost) changes nothing.
    op.client.send(frame).await;
    let c3 = cid.clone();
    op.client
        .expect("second retry reply", move |e| {
            e["id"] == c3.as_str() && e["type"] == "ack"
        })
        .await;
    let esc = app.state.engine.escalations.clone().unwrap();
    let list = esc
        .list(&tsunagu::escalation::Actor::system())
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        esc.read(list[0].id, &tsunagu::escalation::Actor::system())
            .await
            .unwrap()
            .flags
            .len(),
        1,
        "recorded once"
    );
    let d = app.state.engine.dashboard().await.unwrap();
    assert_eq!(
        d.alerts.iter().filter(|a| a.kind == "emergency").count(),
        1,
        "alerted once"
    );
    app.stop().await;
}

/// A coordinator with this display name, signed in: (account id, cookie).
async fn coordinator_named(app: &TestApp, username: &str, name: &str) -> (String, String) {
    let accounts = &app.state.accounts;
    let u = accounts
        .add_user(username, name, tsunagu::auth::Role::Coordinator, PASSWORD)
        .await
        .unwrap();
    let (_, token) = accounts.login(username, PASSWORD).await.unwrap();
    (u.id.to_string(), format!("tsunagu_session={token}"))
}

/// A live conversation flagged by a coordinator; returns its record id.
async fn flagged_record(app: &TestApp, coord: &str, conversation: &str) -> String {
    let path = format!("/api/conversations/{conversation}/flag");
    let r = app
        .post_as(
            coord,
            &path,
            json!({"category":"crime","reason":"脅されている"}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let conv = app.stored(conversation).await;
    conv.emergency.unwrap().record.to_string()
}

#[tokio::test]
async fn the_audit_trail_names_each_actor_by_account_and_shows_the_name() {
    let app = flagging_app(|_| {}).await;
    let v = app.visitor("ja").await;
    // Two coordinators with the same display name.
    let (id_a, coord_a) = coordinator_named(&app, "kai.a", "Kai").await;
    let (id_b, coord_b) = coordinator_named(&app, "kai.b", "Kai").await;
    let rid = flagged_record(&app, &coord_a, &v.conversation).await;
    let path = format!("/api/escalations/{rid}");
    assert_eq!(app.get_as(&coord_b, &path).await.status(), 200);
    let (_, admin) = app.session("admin", tsunagu::auth::Role::Admin, None).await;
    let trail: Value = app.get_json_as(&admin, "/api/audit").await;
    let view = trail
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "view")
        .expect("the view is audited");
    assert_eq!(view["actor_id"], id_b.as_str(), "{view}");
    assert!(view["actor"].as_str().unwrap().contains("Kai"), "{view}");
    // The record's own actions name the account too.
    let rec: Value = app.get_json_as(&coord_b, &path).await;
    assert_eq!(rec["flags"][0]["by_id"], id_a.as_str(), "{rec}");
    assert_eq!(rec["actions"][0]["actor_id"], id_a.as_str(), "{rec}");
    app.stop().await;
}

#[tokio::test]
async fn a_list_or_view_whose_audit_entry_cannot_be_written_is_refused() {
    let app = flagging_app(|_| {}).await;
    let v = app.visitor("ja").await;
    let coord = app.coordinator().await;
    let rid = flagged_record(&app, &coord, &v.conversation).await;
    // The audit trail cannot be appended to.
    break_writes(&app, "escalation_audit").await;
    assert_eq!(
        app.get_as(&coord, "/api/escalations").await.status(),
        503,
        "a list the trail cannot show"
    );
    let r = app.get_as(&coord, &format!("/api/escalations/{rid}")).await;
    assert_eq!(r.status(), 503, "a view the trail cannot show");
    assert!(!r.text().await.unwrap().contains("脅されている"));
    // Back: reads work again and are audited.
    mend_writes(&app, "escalation_audit").await;
    assert_eq!(
        app.get_as(&coord, &format!("/api/escalations/{rid}"))
            .await
            .status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn a_clearing_whose_record_cannot_be_written_is_refused() {
    let app = flagging_app(|_| {}).await;
    let v = app.visitor("ja").await;
    let coord = app.coordinator().await;
    flagged_record(&app, &coord, &v.conversation).await;
    // The database fails.
    break_writes(&app, "escalation_records").await;
    let clear = format!("/api/conversations/{}/flag/clear", v.conversation);
    let r = app
        .post_as(&coord, &clear, json!({"reason":"safe now"}))
        .await;
    assert_eq!(r.status(), 503);
    let conv = app.stored(&v.conversation).await;
    assert!(
        conv.emergency.unwrap().open,
        "not cleared when the record could not say so"
    );
    mend_writes(&app, "escalation_records").await;
    let r = app
        .post_as(&coord, &clear, json!({"reason":"safe now"}))
        .await;
    assert_eq!(r.status(), 204);
    app.stop().await;
}

#[tokio::test]
async fn an_acknowledgement_whose_record_cannot_be_written_is_refused() {
    let app = flagging_app(|_| {}).await;
    let v = app.visitor("ja").await;
    let coord = app.coordinator().await;
    flagged_record(&app, &coord, &v.conversation).await;
    let alert = |app: &TestApp| {
        let engine = app.state.engine.clone();
        async move {
            let d = engine.dashboard().await.unwrap();
            d.alerts
                .into_iter()
                .find(|a| a.kind == "emergency")
                .expect("an emergency alert")
        }
    };
    let id = alert(&app).await.id;
    break_writes(&app, "escalation_records").await;
    let ack = format!("/api/alerts/{id}/ack");
    assert_eq!(app.post_as(&coord, &ack, json!({})).await.status(), 503);
    assert!(
        alert(&app).await.acknowledged_by.is_none(),
        "not acknowledged when the record could not say so"
    );
    mend_writes(&app, "escalation_records").await;
    assert_eq!(app.post_as(&coord, &ack, json!({})).await.status(), 204);
    assert!(alert(&app).await.acknowledged_by.is_some());
    app.stop().await;
}
