//! Abuse resistance: rate limits, connection caps, lockout, revocation.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_flooding_visitor_is_told_when_to_continue_and_keeps_the_conversation() {
    let app = spawn_app_with(|s| {
        s.limits.messages_per_minute = 60;
        s.limits.message_burst = 5;
    })
    .await;
    let mut op = app.operator("sakura", 2, false).await;
    let mut flooder = app.visitor("ja").await;
    let c = op.take().await;
    let mut limited = 0;
    let mut stored = 0;
    for i in 0..8 {
        let cid = id();
        flooder
            .client
            .send(json!({"type":"send","id":cid,"text":format!("flood {i}")}))
            .await;
        let c2 = cid.clone();
        let r = flooder
            .client
            .expect("reply", move |e| {
                e["id"] == c2.as_str() && (e["type"] == "ack" || e["type"] == "error")
            })
            .await;
        if r["type"] == "error" {
            assert_eq!(r["code"], "rate_limited");
            assert!(
                r["retry_after_ms"].as_u64().unwrap() > 0,
                "says when to continue"
            );
            limited += 1;
        } else {
            stored += 1;
        }
    }
    assert!(stored >= 5, "the burst allowance goes through: {stored}");
    assert!(limited >= 1, "the flood is refused: {limited}");
    // Not cut off: after waiting, the person can write again; the operator is still there.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    flooder.say("ごめんなさい、続けます").await;
    op.say(&c, "大丈夫ですよ").await;
    // Another person is unaffected.
    let mut other = app.visitor("ja").await;
    for i in 0..5 {
        other.say(&format!("calm {i}")).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn new_conversations_per_address_are_limited_and_the_socket_stays_open() {
    let app = spawn_app_with(|s| s.limits.conversations_per_hour = 2).await;
    let _a = app.visitor("ja").await;
    let _b = app.visitor("ja").await;
    let mut c = app.raw_visitor().await;
    let cid = id();
    c.send(json!({"type":"hello","v":1,"id":cid,"start":{"lang":"ja"}}))
        .await;
    let e = c.expect_type("error").await;
    assert_eq!(e["code"], "rate_limited");
    assert_eq!(e["id"], cid.as_str());
    assert!(e["retry_after_ms"].as_u64().unwrap() > 60_000);
    c.send(json!({"type":"ping","id":id()})).await;
    c.expect_type("pong").await;
    assert_eq!(app.conversations().await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn too_many_sockets_from_one_address_are_refused() {
    let app = spawn_app_with(|s| s.limits.connections_per_address = 2).await;
    let a = app.raw_visitor().await;
    let _b = app.raw_visitor().await;
    assert_eq!(
        app.connect("/ws/visitor", Some(&app.base), None)
            .await
            .err(),
        Some(429)
    );
    a.close().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        app.connect("/ws/visitor", Some(&app.base), None)
            .await
            .is_ok(),
        "the slot is released"
    );
    app.stop().await;
}

async fn login(app: &TestApp, password: &str) -> reqwest::Response {
    app.http()
        .post(format!("{}/api/login", app.base))
        .header("origin", &app.base)
        .json(&json!({"username":"sakura","password":password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_login_brute_force_locks_the_account_out() {
    let app = spawn_app().await;
    app.add_sakura().await;
    for _ in 0..tsunagu::auth::LOCK_AFTER - 1 {
        assert_eq!(login(&app, "guess guess guess").await.status(), 401);
    }
    let r = login(&app, "guess guess guess").await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "30");
    let r = login(&app, "long enough password").await;
    assert_eq!(r.status(), 429, "locked even with the right password");
    app.stop().await;
}

#[tokio::test]
async fn login_attempts_are_limited_per_address() {
    let app = spawn_app_with(|s| {
        s.limits.logins_per_minute = 3;
        s.limits.login_burst = 3;
    })
    .await;
    for _ in 0..3 {
        assert_eq!(login(&app, "whatever it is").await.status(), 401);
    }
    let r = login(&app, "whatever it is").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    app.stop().await;
}

#[tokio::test]
async fn an_admin_revoking_a_user_closes_their_console_at_once() {
    let app = spawn_app().await;
    let mut op = app.operator("sakura", 2, false).await;
    let (_, admin) = app.session("admin", tsunagu::auth::Role::Admin, None).await;
    let revoke = format!("/api/users/{}/revoke", op.id);
    let r = app
        .request_as(reqwest::Method::POST, &admin, &revoke)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(op.client.expect_close().await, Some(4010));
    let r = app.get_as(&op.cookie, "/api/me").await;
    assert_eq!(r.status(), 401);
    // Only admins may revoke.
    let r = app
        .request_as(reqwest::Method::POST, &op.cookie, &revoke)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn webhook_floods_from_one_source_get_429() {
    let app = spawn_app_with(|s| {
        s.limits.webhooks_per_second = 1;
        s.limits.webhook_burst = 3;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = app
            .http()
            .post(format!("{}/connectors/line/webhook/none", app.base))
            .body("{}")
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(statuses[..3].iter().all(|s| *s != 429), "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    app.stop().await;
}

/// Reads frames until one answers `cid` (an ack or an error), or the socket closes.
async fn reply_to(client: &mut Client, cid: &str) -> Result<serde_json::Value, Closed> {
    if let Some(i) = client.backlog.iter().position(|v| v["id"] == cid) {
        return Ok(client.backlog.remove(i));
    }
    loop {
        let v = client.next().await?;
        if v["id"] == cid && (v["type"] == "ack" || v["type"] == "error") {
            return Ok(v);
        }
    }
}

#[tokio::test]
async fn a_hello_flood_past_the_new_conversation_limit_is_closed_after_a_bounded_number_of_refusals(
) {
    let app = spawn_app_with(|s| s.limits.conversations_per_hour = 1).await;
    let _first = app.visitor("ja").await;
    let mut flood = app.raw_visitor().await;
    let mut refused = 0;
    let code = loop {
        assert!(
            refused <= tsunagu::ws::MAX_ERRORS,
            "still open after {refused} refused hellos"
        );
        let cid = id();
        flood
            .send(json!({"type":"hello","v":1,"id":cid,"start":{"lang":"ja"}}))
            .await;
        match reply_to(&mut flood, &cid).await {
            Ok(e) => {
                assert_eq!(e["code"], "rate_limited", "{e}");
                refused += 1;
            }
            Err(Closed(code)) => break code,
        }
    };
    assert_eq!(code, Some(1008), "closed with the policy code");
    assert_eq!(refused, tsunagu::ws::MAX_ERRORS - 1);
    app.stop().await;
}

#[tokio::test]
async fn a_paced_message_flood_is_closed_after_a_bounded_number_of_refusals() {
    // One message every 50 ms, no burst: of two sent back to back the second is refused, and
    // waiting `retry_after_ms` lets the next through, so refusals never come twice in a row.
    let app = spawn_app_with(|s| {
        s.limits.messages_per_minute = 1_200;
        s.limits.message_burst = 1;
    })
    .await;
    let mut v = app.visitor("ja").await;
    let mut refused = 0;
    let mut rounds = 0;
    let code = 'flood: loop {
        rounds += 1;
        assert!(
            rounds <= 3 * tsunagu::ws::MAX_ERRORS,
            "still open after {rounds} rounds, {refused} refusals"
        );
        let ids = [id(), id()];
        for cid in &ids {
            v.client
                .send(json!({"type":"send","id":cid,"text":"paced"}))
                .await;
        }
        let mut wait = 0;
        for cid in &ids {
            match reply_to(&mut v.client, cid).await {
                Ok(r) if r["type"] == "error" => {
                    assert_eq!(r["code"], "rate_limited", "{r}");
                    wait = r["retry_after_ms"].as_u64().unwrap();
                    refused += 1;
                }
                Ok(_) => {}
                Err(Closed(code)) => break 'flood code,
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(wait + 5)).await;
    };
    assert_eq!(code, Some(1008), "closed with the policy code");
    assert!(refused < tsunagu::ws::MAX_ERRORS, "{refused} refusals");
    app.stop().await;
}

#[tokio::test]
async fn an_operator_console_is_rate_limited_with_its_own_larger_allowance() {
    let app = spawn_app_with(|s| {
        s.limits.message_burst = 2;
        s.limits.operator_messages_per_minute = 60;
        s.limits.operator_message_burst = 5;
    })
    .await;
    let _v = app.visitor("ja").await;
    let mut op = app.operator("sakura", 2, false).await;
    let c = op.take().await;
    let mut stored = 0;
    let mut limited = None;
    for i in 0..8 {
        let r = op
            .act("send", &c, json!({"text":format!("返信 {i}")}))
            .await;
        if r["type"] == "ack" {
            stored += 1;
        } else {
            limited.get_or_insert(r);
        }
    }
    assert_eq!(stored, 5, "the operators' burst, not the visitors'");
    let e = limited.expect("a flood from a console is refused");
    assert_eq!(e["code"], "rate_limited");
    assert!(e["retry_after_ms"].as_u64().unwrap() > 0, "{e}");
    app.stop().await;
}
