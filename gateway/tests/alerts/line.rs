//! A coordinator links their own LINE account with a one-time code, and an emergency flag then
//! reaches it as a LINE push with an acknowledgement link that works once; the code works once,
//! is not a conversation, and the LINE user id is in no log line and not in the database in
//! plaintext.

use std::time::Duration;

use serde_json::json;
use tsunagu::auth::Role;

use crate::fake_api::PUSH;
use crate::pagers::*;

/// A LINE user id as LINE makes them.
fn new_user() -> String {
    format!("U{:032x}", ulid::Ulid::new().0)
}

#[tokio::test]
async fn a_linked_line_account_gets_the_flag_as_a_push_whose_link_acknowledges_it_once() {
    let p = paged(1, |_| {}).await;
    p.w.rota_all_week().await;
    let code = p.code_for(0).await;
    let code = code["code"].as_str().unwrap().to_owned();
    assert!(code.starts_with("TSUNAGU-"), "{code}");
    let user = new_user();
    // Sent with other spacing and case: still the code; it starts no conversation.
    let typed = format!(" {} ", code.to_lowercase().replace('-', " "));
    assert_eq!(p.line_text(&user, &typed, "rt-link-1").await, 200);
    let reply = p.reply_to("rt-link-1").await;
    assert!(reply[0].contains("受け取ります"), "{reply:?}");
    assert_eq!(
        p.w.app.state.line.as_ref().unwrap().live(),
        0,
        "no conversation"
    );
    assert_eq!(p.w.app.state.engine.dashboard().await.unwrap().waiting, 0);
    // Used: the same code again is refused, and still no conversation.
    assert_eq!(p.line_text(&user, &code, "rt-link-2").await, 200);
    let again = p.reply_to("rt-link-2").await;
    assert!(again[0].contains("無効"), "{again:?}");
    assert_eq!(p.w.app.state.line.as_ref().unwrap().live(), 0);
    // The panel shows the link (not the LINE id).
    let overview = p.w.app.get_json_as(&p.w.coord, "/api/oncall").await;
    assert_eq!(overview["line_linked"], json!([p.w.people[0].0]));
    assert!(!overview.to_string().contains(&user));

    let _op = p.w.flag("sakura").await;
    let reqs = p
        .line
        .wait_for("the alert push", |r| {
            r.iter().any(|r| r.path == PUSH && r.delivered)
        })
        .await;
    let push = reqs.iter().find(|r| r.path == PUSH && r.delivered).unwrap();
    assert_eq!(push.body["to"], user.as_str());
    let text = push.texts().join("\n");
    for needle in [
        "緊急フラグ",
        "Emergency flag",
        "self_harm",
        "/api/alerts/ack/",
        "/coordinator",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    assert!(!text.contains(crate::harness::CANARY) && !text.contains("canary"));
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/api/alerts/ack/"))
        .unwrap()
        .to_owned();
    let post =
        |link: String| async move { reqwest::Client::new().post(link).send().await.unwrap() };
    let r = post(link.clone()).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("確認しました"));
    let alert = &p.w.alerts().await[0];
    assert_eq!(alert["acknowledged_channel"], "line_link");
    assert_eq!(post(link).await.status(), 410, "single use");
    let audit = p.w.audit().await;
    assert!(audit.iter().any(|e| e["action"] == "line_linked"));
    assert!(audit.iter().any(|e| e["action"] == "delivery_attempt"
        && e["channel"] == "line"
        && e["detail"] == "sent"));

    // Stored sealed only, and never logged.
    let db = p.w.app.state.engine.oncall.as_ref().unwrap().db();
    let link_row = db
        .line_link(p.w.people[0].0.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(!String::from_utf8_lossy(&link_row.sealed_user).contains(&user[1..12]));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let logs = logs();
    assert!(
        !logs.contains(&user) && !logs.contains(&user[1..]),
        "the LINE id is in a log line"
    );
    assert!(
        !logs.contains(&code) && !logs.contains(&code[8..]),
        "the code is in a log line"
    );

    // Unlinked: the next alert goes by no LINE push.
    let r =
        p.w.send(
            reqwest::Method::DELETE,
            &format!("/api/oncall/line/{}", p.w.people[0].0),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert!(db
        .line_link(p.w.people[0].0.parse().unwrap())
        .await
        .unwrap()
        .is_none());
    p.check_line_requests().await;
    p.w.app.stop().await;
}

#[tokio::test]
async fn link_codes_expire_are_limited_per_account_and_per_line_user() {
    let p = paged(1, |_| {}).await;
    let first = p.code_for(0).await;
    assert!(first["expires_at"].as_u64().unwrap() > p.w.clock.now_ms());
    // Expired after ten minutes.
    p.w.clock.advance(10 * 60_000 + 1);
    let user = new_user();
    assert_eq!(
        p.line_text(&user, first["code"].as_str().unwrap(), "rt-old")
            .await,
        200
    );
    let r = p.reply_to("rt-old").await;
    assert!(r[0].contains("無効"));
    // Five codes an hour per account.
    for _ in 1..5 {
        p.code_for(0).await;
    }
    let (_, name) = &p.w.people[0];
    let (_, cookie) = p.w.app.session(name, Role::Coordinator, None).await;
    let sixth =
        p.w.app
            .http()
            .post(format!("{}/api/oncall/line/code", p.w.app.base))
            .header("cookie", cookie)
            .header("origin", &p.w.app.base)
            .send()
            .await
            .unwrap();
    assert_eq!(sixth.status(), 429);
    // A LINE user guessing: after five tries, told to wait, even with a valid-looking code.
    for i in 0..6 {
        p.line_text(&user, "TSUNAGU-ABCD-EFGH", &format!("rt-guess-{i}"))
            .await;
    }
    let last = p.reply_to("rt-guess-5").await;
    assert!(last[0].contains("試行回数"), "{last:?}");
    assert_eq!(p.w.app.state.line.as_ref().unwrap().live(), 0);
    p.w.app.stop().await;
}
