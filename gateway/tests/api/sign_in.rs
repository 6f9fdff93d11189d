//! Sign-in protection (issue 17, items 3, 6, 7 and 8): bounded password checks, lockout per
//! (username, address) counted atomically, the first-run setup against accounts created by the
//! CLI, and the origins a login or a websocket may come from.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;
use tsunagu::auth::LOCK_AFTER;

use crate::helpers::*;

/// Logins come through a trusted proxy (the test) on behalf of many client addresses, and the
/// per-address rate limit is out of the way.
fn behind_a_proxy(s: &mut tsunagu::config::Settings) {
    s.limits.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    s.limits.logins_per_minute = 1_000;
    s.limits.login_burst = 1_000;
}

async fn login_from(app: &TestApp, client: &str, password: &str) -> reqwest::Response {
    app.http()
        .post(format!("{}/api/login", app.base))
        .header("origin", &app.base)
        .header("x-forwarded-for", client)
        .json(&json!({"username":"sakura","password":password}))
        .send()
        .await
        .unwrap()
}

/// Polls `cond` every 10 ms for up to [`WAIT`].
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn logins_beyond_the_password_check_permits_and_queue_are_told_to_retry_later() {
    let app = spawn_app_with(|s| {
        behind_a_proxy(s);
        s.auth.hash_concurrency = 1;
        s.auth.hash_queue = 1;
    })
    .await;
    app.add_sakura().await;
    let checker = app.state.accounts.password_checker();
    // Every permit is taken (as by a check in progress) ...
    let held = checker.permit().await.unwrap();
    // ... and one login waits in the queue.
    let queued = {
        let (http, base) = (app.http(), app.base.clone());
        tokio::spawn(async move {
            http.post(format!("{base}/api/login"))
                .header("origin", &base)
                .header("x-forwarded-for", "198.51.100.1")
                .json(&json!({"username":"sakura","password":PASSWORD}))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    until("the first login queues", || checker.waiting() == 1).await;
    // Everyone else, from addresses of their own, is refused at once, not queued.
    let addresses: Vec<String> = (2..12).map(|i| format!("198.51.100.{i}")).collect();
    let others = tokio::time::timeout(
        WAIT,
        futures_util::future::join_all(addresses.iter().map(|a| login_from(&app, a, PASSWORD))),
    )
    .await
    .expect("logins beyond the queue are answered at once, not queued");
    for r in others {
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
    }
    drop(held);
    assert_eq!(queued.await.unwrap(), 200, "the queued login goes through");
    assert_eq!(
        login_from(&app, "198.51.100.20", PASSWORD).await.status(),
        200,
        "a later login is checked"
    );
    app.stop().await;
}

#[tokio::test]
async fn failures_from_other_addresses_do_not_refuse_the_owners_password() {
    let app = spawn_app_with(behind_a_proxy).await;
    app.add_sakura().await;
    for attacker in ["203.0.113.1", "203.0.113.2"] {
        for _ in 0..LOCK_AFTER - 1 {
            let r = login_from(&app, attacker, "guess guess guess").await;
            assert_eq!(r.status(), 401);
        }
        let r = login_from(&app, attacker, "guess guess guess").await;
        assert_eq!(r.status(), 429, "the attacker's address is locked");
        assert_eq!(r.headers()["retry-after"], "30");
        let r = login_from(&app, attacker, PASSWORD).await;
        assert_eq!(r.status(), 429, "even with the right password, from there");
    }
    // The owner, from an address with no failures, is slowed down but let in.
    let r = login_from(&app, "198.51.100.7", PASSWORD).await;
    assert_eq!(r.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn wrong_guesses_sent_at_once_with_the_right_password_do_not_let_it_in_past_the_limit() {
    let app = spawn_app_with(|s| {
        behind_a_proxy(s);
        // Room for every guess to wait for a check: only the lockout may refuse them.
        s.auth.hash_queue = 64;
    })
    .await;
    app.add_sakura().await;
    let attacker = "203.0.113.9";
    let key = app.state.limits.key(attacker.parse::<IpAddr>().unwrap());
    let guesses: Vec<_> = (0..29)
        .map(|_| {
            let (http, base) = (app.http(), app.base.clone());
            tokio::spawn(async move {
                http.post(format!("{base}/api/login"))
                    .header("origin", &base)
                    .header("x-forwarded-for", attacker)
                    .json(&json!({"username":"sakura","password":"guess guess guess"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    // The guesses have used the address's allowance (counted as they began, before any check
    // ended) ...
    until("the guesses are counted", || {
        app.state.accounts.login_attempts("sakura", key) >= LOCK_AFTER
    })
    .await;
    // ... so the right password, sent while they are being checked, is not checked.
    let right = login_from(&app, attacker, PASSWORD).await;
    assert_eq!(
        right.status(),
        429,
        "the right password got in past the limit"
    );
    let mut statuses = Vec::new();
    for g in guesses {
        statuses.push(g.await.unwrap());
    }
    let checked = statuses.iter().filter(|&&s| s == 401).count();
    assert!(
        checked < LOCK_AFTER as usize,
        "{checked} wrong passwords were checked: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 401 || s == 429),
        "{statuses:?}"
    );
    assert_eq!(
        login_from(&app, attacker, PASSWORD).await.status(),
        429,
        "the address is locked"
    );
    app.stop().await;
}

/// `gateway user add` (the real binary, as an installer runs it) on the SQLite database `file`.
fn cli_add_user(file: &str, username: &str, role: &str) {
    use std::io::Write;
    let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "user",
            "add",
            "--username",
            username,
            "--display-name",
            username,
        ])
        .args(["--role", role, "--password-stdin"])
        .env("TSUNAGU_DATABASE__SQLITE_PATH", file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    cli.stdin
        .take()
        .unwrap()
        .write_all(b"cli user password\n")
        .unwrap();
    assert!(cli.wait().unwrap().success(), "gateway user add {username}");
}

#[tokio::test]
async fn the_setup_code_stops_working_once_the_cli_created_an_admin_and_no_account_is_lost() {
    let dir = std::env::temp_dir().join(format!("tsunagu-setup-{}", id()));
    let database = dir.join("tsunagu.db");
    let file = database.display().to_string();
    let app = spawn_app_with(|s| {
        s.database.url = None;
        s.database.sqlite_path = file.clone();
    })
    .await;
    let code = app
        .state
        .accounts
        .pending_setup_code()
        .expect("no accounts yet: a setup code");
    // While the gateway runs, the CLI creates an admin.
    cli_add_user(&file, "root", "admin");
    let r = app
        .http()
        .post(format!("{}/api/setup", app.base))
        .header("origin", &app.base)
        .json(&json!({"code":code,"username":"admin","display_name":"Admin","password":PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "the setup code outlived the CLI's admin");
    // The CLI adds another account; a change the gateway makes then keeps it, though the
    // gateway has not read the database since.
    cli_add_user(&file, "kai", "operator");
    app.add_sakura().await;
    let db = tsunagu::db::Db::open(&tsunagu::db::DatabaseSettings {
        sqlite_path: file.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let stored = db.accounts().await.unwrap();
    let names: Vec<&str> = stored.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["root", "kai", "sakura"]);
    db.close().await;
    app.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_rebinding_page_whose_host_and_origin_agree_is_refused() {
    let app = spawn_app().await;
    app.add_sakura().await;
    let port = app.base.rsplit(':').next().unwrap();
    let evil = format!("http://evil.example:{port}");
    let r = app
        .http()
        .post(format!("{}/api/login", app.base))
        .header("host", format!("evil.example:{port}"))
        .header("origin", &evil)
        .json(&json!({"username":"sakura","password":PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "login from a rebinding page");
    for path in ["/ws/visitor", "/ws/operator"] {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("{}{path}", app.ws_base)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("host", format!("evil.example:{port}").parse().unwrap());
        req.headers_mut().insert("origin", evil.parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                assert_eq!(res.status(), 403, "{path}")
            }
            other => panic!("{path}: the upgrade was not refused: {:?}", other.is_ok()),
        }
    }
    // The gateway's own origin still works.
    let r = login_from(&app, "127.0.0.1", PASSWORD).await;
    assert_eq!(r.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn an_https_origin_is_refused_over_plain_http() {
    let app = spawn_app().await;
    app.add_sakura().await;
    let https = app.base.replacen("http://", "https://", 1);
    let r = app
        .http()
        .post(format!("{}/api/login", app.base))
        .header("origin", &https)
        .json(&json!({"username":"sakura","password":PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        app.connect("/ws/visitor", Some(&https), None).await.err(),
        Some(403)
    );
    app.stop().await;
}
