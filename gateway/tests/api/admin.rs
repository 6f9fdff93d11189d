//! The admin screen's accounts API (issue 20, item 3): every change by an admin only, audited
//! with who, what, whom and when (never a password); one-time passwords changed at the first
//! sign-in; second factors (TOTP, RFC 6238) with codes computed here at a manual clock's time,
//! a code never accepted twice, recovery codes once each; the confidentiality pledge.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use tsunagu::auth::Role;
use tsunagu::clock::Clock;

use crate::helpers::*;

/// RFC 6238 (SHA-1, 6 digits, 30 s) computed here from the base32 secret, independently of
/// the gateway's own code.
fn totp(secret: &str, now_ms: u64) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut acc, mut key) = (0u32, 0u64, Vec::new());
    for c in secret.trim_end_matches('=').bytes() {
        let v = alphabet.iter().position(|&a| a == c).expect("base32") as u64;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            key.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    let counter = (now_ms / 1000 / 30).to_be_bytes();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&key).unwrap();
    mac.update(&counter);
    let h = mac.finalize().into_bytes();
    let off = (h[19] & 0xf) as usize;
    let n = u32::from_be_bytes([h[off] & 0x7f, h[off + 1], h[off + 2], h[off + 3]]);
    format!("{:06}", n % 1_000_000)
}

/// An app whose sign-ins have every step production has (second factor for coordinators and
/// admins, the pledge), on `clock`.
async fn strict_app(clock: Clock) -> TestApp {
    spawn_app_with_clock(clock, |s| {
        s.limits.logins_per_minute = 1_000;
        s.limits.login_burst = 1_000;
        let d = tsunagu::auth::AuthSettings::default();
        s.auth.require_totp_for = d.require_totp_for;
        s.auth.require_pledge = true;
        s.auth.pledge_text = "Everything heard here stays here.".into();
    })
    .await
}

async fn login(app: &TestApp, username: &str, password: &str) -> (u16, Value, Option<String>) {
    let res = app
        .http()
        .post(format!("{}/api/login", app.base))
        .header("origin", &app.base)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    answer(res).await
}

async fn step(app: &TestApp, pending: &str, mut body: Value) -> (u16, Value, Option<String>) {
    body["pending"] = json!(pending);
    let res = app
        .http()
        .post(format!("{}/api/login/step", app.base))
        .header("origin", &app.base)
        .json(&body)
        .send()
        .await
        .unwrap();
    answer(res).await
}

/// Status, body and the session cookie if one was set.
async fn answer(res: reqwest::Response) -> (u16, Value, Option<String>) {
    let status = res.status().as_u16();
    let cookie = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap().to_owned());
    (status, res.json().await.unwrap_or(Value::Null), cookie)
}

async fn admin_post(app: &TestApp, cookie: &str, path: &str, body: Value) -> (u16, Value) {
    let res = app.post_as(cookie, path, body).await;
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

/// Signs `username` in with the one-time password `otp`, choosing `password`: the session
/// cookie.
async fn new_password(app: &TestApp, username: &str, otp: &str, password: &str) -> String {
    let (_, first, _) = login(app, username, otp).await;
    assert_eq!(first["step"], "change_password");
    let pending = first["pending"].as_str().unwrap();
    let (status, _, cookie) = step(app, pending, json!({"new_password": password})).await;
    assert_eq!(status, 200);
    cookie.expect("a session")
}

/// A six-digit code that is not `code`.
fn other_than(code: &str) -> &'static str {
    if code == "123456" {
        "654321"
    } else {
        "123456"
    }
}

/// The admin `root`, signed in over HTTP with every step (enrolment, pledge): its session
/// cookie and TOTP secret.
async fn enrolled_admin(app: &TestApp, clock: &Clock) -> (String, String) {
    app.state
        .accounts
        .add_user("root", "Root", Role::Admin, PASSWORD)
        .await
        .unwrap();
    let (_, first, _) = login(app, "root", PASSWORD).await;
    assert_eq!(first["step"], "totp_enrol");
    let pending = first["pending"].as_str().unwrap().to_owned();
    let secret = first["enrolment"]["secret"].as_str().unwrap().to_owned();
    let code = totp(&secret, clock.now_ms());
    let (_, next, _) = step(app, &pending, json!({"code": code})).await;
    assert_eq!(next["step"], "pledge");
    let (status, _, cookie) = step(app, &pending, json!({"accept_pledge": true})).await;
    assert_eq!(status, 200);
    (cookie.unwrap(), secret)
}

#[tokio::test]
async fn an_admin_adds_changes_disables_and_deletes_accounts_and_each_change_is_audited() {
    let app = spawn_app_with(|s| {
        s.limits.logins_per_minute = 1_000;
        s.limits.login_burst = 1_000;
    })
    .await;
    let (admin_id, admin) = app.session("boss", Role::Admin, None).await;
    // Added with a one-time password, shown once.
    let (status, added) = admin_post(
        &app,
        &admin,
        "/api/admin/accounts",
        json!({"username": "hana", "display_name": "Hana", "role": "operator", "languages": ["ja", "en"]}),
    )
    .await;
    assert_eq!(status, 201, "{added}");
    let otp = added["one_time_password"].as_str().unwrap().to_owned();
    let id = added["id"].as_str().unwrap().to_owned();
    // The one-time password opens no session: the account chooses its own first.
    let (status, first, cookie) = login(&app, "hana", &otp).await;
    assert_eq!(
        (status, first["step"].as_str(), cookie),
        (200, Some("change_password"), None)
    );
    let pending = first["pending"].as_str().unwrap();
    let (status, refused, _) = step(&app, pending, json!({"new_password": otp})).await;
    assert_eq!((status, refused["error"].as_str()), (400, Some("invalid")));
    let (status, me, cookie) = step(
        &app,
        pending,
        json!({"new_password": "hana's own password"}),
    )
    .await;
    assert_eq!((status, me["username"].as_str()), (200, Some("hana")));
    let cookie = cookie.expect("a session at last");
    // The one-time password is gone.
    assert!(
        login(&app, "hana", &otp).await.0 == 401,
        "the one-time password is gone"
    );

    // The list shows the account without its hash.
    let list = app.get_json_as(&admin, "/api/admin/accounts").await;
    let hana = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(hana["languages"], json!(["ja", "en"]));
    assert_eq!(hana["one_time_password"], json!(false));
    assert!(!list.to_string().contains("argon2"));

    let base = format!("/api/admin/accounts/{id}");
    let ok = |r: (u16, Value)| assert_eq!(r.0, 200, "{}", r.1);
    ok(admin_post(
        &app,
        &admin,
        &format!("{base}/languages"),
        json!({"languages": ["en"], "capacity": 2}),
    )
    .await);
    ok(admin_post(
        &app,
        &admin,
        &format!("{base}/phone"),
        json!({"phone": "+819012345678"}),
    )
    .await);
    ok(admin_post(
        &app,
        &admin,
        &format!("{base}/role"),
        json!({"role": "coordinator"}),
    )
    .await);
    assert_eq!(
        app.get_as(&cookie, "/api/me").await.status(),
        401,
        "a new role signs in again"
    );
    ok(admin_post(
        &app,
        &admin,
        &format!("{base}/role"),
        json!({"role": "operator"}),
    )
    .await);
    let (_, reset) = admin_post(&app, &admin, &format!("{base}/reset-password"), json!({})).await;
    let otp2 = reset["one_time_password"].as_str().unwrap().to_owned();

    // Disabling ends the open console (4010) and every later sign-in.
    let cookie = new_password(&app, "hana", &otp2, "hana's second password").await;
    let mut console = app
        .operator_with("hana", &id, &cookie, json!({}), false)
        .await;
    ok(admin_post(&app, &admin, &format!("{base}/disable"), json!({})).await);
    assert_eq!(console.client.expect_close().await, Some(4010));
    assert_eq!(app.get_as(&cookie, "/api/me").await.status(), 401);
    assert_eq!(login(&app, "hana", "hana's second password").await.0, 401);
    ok(admin_post(&app, &admin, &format!("{base}/enable"), json!({})).await);
    let (_, _, cookie) = login(&app, "hana", "hana's second password").await;
    let cookie = cookie.expect("enabled again");
    let (_, ended) = admin_post(&app, &admin, &format!("{base}/end-sessions"), json!({})).await;
    assert_eq!(ended["revoked"], 1);
    assert_eq!(app.get_as(&cookie, "/api/me").await.status(), 401);
    // An admin cannot lock themselves out.
    let own = format!("/api/admin/accounts/{admin_id}/disable");
    assert_eq!(admin_post(&app, &admin, &own, json!({})).await.0, 400);
    let res = app
        .request_as(reqwest::Method::DELETE, &admin, &base)
        .header("origin", &app.base)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(app.state.accounts.user(id.parse().unwrap()).is_none());

    // The trail: who did what to whom, when, newest first; never a password.
    let trail = app.get_json_as(&admin, "/api/admin/audit").await;
    let actions: Vec<(&str, &str, &str)> = trail
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(e["at"].as_u64().unwrap() > 0);
            (
                e["action"].as_str().unwrap(),
                e["actor_id"].as_str().unwrap_or("-"),
                e["target_id"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    let by_admin = |a: &'static str| (a, admin_id.as_str(), id.as_str());
    let expected = [
        by_admin("account_deleted"),
        by_admin("sessions_ended"),
        by_admin("account_enabled"),
        by_admin("account_disabled"),
        ("password_changed", id.as_str(), id.as_str()),
        by_admin("password_reset"),
        by_admin("role_set"),
        by_admin("role_set"),
        by_admin("phone_set"),
        by_admin("languages_set"),
        ("password_changed", id.as_str(), id.as_str()),
        by_admin("account_added"),
    ];
    assert_eq!(actions, expected);
    let text = trail.to_string();
    for secret in [
        otp.as_str(),
        otp2.as_str(),
        "hana's own password",
        "+819012345678",
    ] {
        assert!(!text.contains(secret), "the audit trail holds no secret");
    }
}

#[tokio::test]
async fn only_admins_reach_the_accounts_api() {
    let app = spawn_app().await;
    let coord = app.coordinator().await;
    assert_eq!(
        app.get_as(&coord, "/api/admin/accounts").await.status(),
        403
    );
    assert_eq!(app.get("/api/admin/accounts").await.status(), 401);
    let (status, _) = admin_post(
        &app,
        &coord,
        "/api/admin/accounts",
        json!({"username": "x", "display_name": "X", "role": "admin"}),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(app.get_as(&coord, "/api/admin/audit").await.status(), 403);
}

#[tokio::test]
async fn a_coordinator_enrols_a_second_factor_and_then_signs_in_with_codes_each_used_once() {
    let clock = Clock::manual(1_800_000_000_000);
    let app = strict_app(clock.clone()).await;
    app.state
        .accounts
        .add_user("kai", "Kai", Role::Coordinator, PASSWORD)
        .await
        .unwrap();
    // No session before the authenticator is enrolled.
    let (status, first, cookie) = login(&app, "kai", PASSWORD).await;
    assert_eq!((status, cookie), (200, None));
    assert_eq!(first["step"], "totp_enrol");
    let pending = first["pending"].as_str().unwrap().to_owned();
    let secret = first["enrolment"]["secret"].as_str().unwrap().to_owned();
    assert!(first["enrolment"]["uri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/Tsunagu:kai?"));
    let code = totp(&secret, clock.now_ms());
    let (status, wrong, _) = step(&app, &pending, json!({"code": other_than(&code)})).await;
    assert_eq!((status, wrong["error"].as_str()), (401, Some("bad_code")));
    let (status, enrolled, cookie) = step(&app, &pending, json!({"code": code})).await;
    assert_eq!(status, 200, "{enrolled}");
    assert_eq!(cookie, None, "the pledge is still to come");
    let codes: Vec<String> = enrolled["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    assert_eq!(enrolled["step"], "pledge");
    assert_eq!(enrolled["pledge_text"], "Everything heard here stays here.");
    let (status, _, cookie) = step(&app, &pending, json!({"accept_pledge": false})).await;
    assert_eq!((status, cookie), (400, None));
    let (status, me, cookie) = step(&app, &pending, json!({"accept_pledge": true})).await;
    assert_eq!((status, me["username"].as_str()), (200, Some("kai")));
    assert!(cookie.is_some());
    // The pending sign-in was used up.
    let (status, gone, _) = step(&app, &pending, json!({"accept_pledge": true})).await;
    assert_eq!(
        (status, gone["error"].as_str()),
        (401, Some("sign_in_expired"))
    );

    // Next sign-in: the code that enrolled is not accepted again (same time step) ...
    let (_, again, _) = login(&app, "kai", PASSWORD).await;
    assert_eq!(again["step"], "totp", "the pledge is not asked twice");
    let pending = again["pending"].as_str().unwrap().to_owned();
    let (status, replay, _) = step(&app, &pending, json!({"code": code})).await;
    assert_eq!((status, replay["error"].as_str()), (401, Some("bad_code")));
    // ... the next step's code is.
    clock.advance(30_000);
    let code = totp(&secret, clock.now_ms());
    let (status, _, cookie) = step(&app, &pending, json!({"code": code})).await;
    assert_eq!(status, 200);
    assert!(cookie.is_some());
    // A code from another sign-in at the same time step is refused too.
    let (_, again, _) = login(&app, "kai", PASSWORD).await;
    let pending = again["pending"].as_str().unwrap().to_owned();
    assert_eq!(step(&app, &pending, json!({"code": code})).await.0, 401);

    // A recovery code signs in once, typed in any case.
    let typed = codes[3].to_lowercase();
    let (status, _, cookie) = step(&app, &pending, json!({"recovery_code": typed})).await;
    assert_eq!(status, 200);
    assert!(cookie.is_some());
    let (_, again, _) = login(&app, "kai", PASSWORD).await;
    let pending = again["pending"].as_str().unwrap().to_owned();
    let (status, used, _) = step(&app, &pending, json!({"recovery_code": codes[3]})).await;
    assert_eq!((status, used["error"].as_str()), (401, Some("bad_code")));
    let status = app.get_json_as(&cookie.unwrap(), "/api/me/totp").await;
    assert_eq!(status, json!({"enabled": true, "recovery_codes_left": 9}));

    // Audited, without the codes or the secret.
    clock.advance(30_000);
    let (admin, _) = enrolled_admin(&app, &clock).await;
    let trail = app
        .get_json_as(&admin, "/api/admin/audit")
        .await
        .to_string();
    for action in ["totp_enrolled", "pledge_acknowledged", "recovery_code_used"] {
        assert!(trail.contains(action), "{action} in {trail}");
    }
    assert!(!trail.contains(&secret) && !trail.contains(&codes[3]));
}

#[tokio::test]
async fn wrong_codes_lock_the_second_step_like_wrong_passwords() {
    let clock = Clock::manual(1_800_000_000_000);
    let app = strict_app(clock.clone()).await;
    let (_, secret) = enrolled_admin(&app, &clock).await;
    let (_, first, _) = login(&app, "root", PASSWORD).await;
    assert_eq!(first["step"], "totp");
    let pending = first["pending"].as_str().unwrap().to_owned();
    let right = totp(&secret, clock.now_ms() + 20_000);
    let wrong = other_than(&right);
    let mut last = 0;
    for _ in 0..tsunagu::auth::LOCK_AFTER {
        last = step(&app, &pending, json!({"code": wrong})).await.0;
    }
    assert_eq!(last, 429, "locked after repeated wrong codes");
    // Even the right code waits out the lock (30 s the first time) ...
    clock.advance(20_000);
    assert_eq!(step(&app, &pending, json!({"code": right})).await.0, 429);
    // ... and is taken after it.
    clock.advance(30_000);
    let right = totp(&secret, clock.now_ms());
    assert_eq!(step(&app, &pending, json!({"code": right})).await.0, 200);
}
