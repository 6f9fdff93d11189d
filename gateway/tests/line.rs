//! The LINE connector end to end: the real gateway, webhook bodies signed and parsed by LINE's
//! official Python SDK, a fake Messaging API on loopback that checks every request (and whose
//! recorded requests the SDK parses again at the end of each test), and an operator on the real
//! console websocket.
//!
//! Its own test binary: it installs the process-wide log subscriber at trace level, and one test
//! checks that no LINE user id, text, reply token or secret used by any test is in the logs.

#[path = "support/captured.rs"]
mod captured;
#[path = "line/fake_api.rs"]
mod fake_api;
#[path = "line/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;
#[path = "support/python.rs"]
mod python;

use std::time::Duration;

use fake_api::{Plan, LOADING, MARK_READ, PUSH, REPLY};
use harness::*;
use helpers::is_event;
use serde_json::json;
use tsunagu::protocol::Channel;

const JOINED: &str = "相談員がつながりました";
const CLOSING_HELPLINE: &str = "よりそいホットライン 0120-279-338（24時間）";

/// A LINE person writes their first message; an operator takes the conversation and sees it.
/// Returns the operator, the conversation id and the message's log seq, once "someone is here
/// now" has reached the person (so later pushes are the test's own).
async fn person_with_operator(
    t: &LineTest,
    user: &str,
    text: &str,
) -> (helpers::Operator, String, u64) {
    let mut op = t
        .app
        .operator(&format!("op-{}", ulid::Ulid::new()), 2, true)
        .await;
    let (ev, _) = harness::text(user, text, Some(&reply_token()), None);
    assert_eq!(t.post("npo1", &[ev]).await, 200);
    t.app
        .wait_conversations("a LINE conversation", |c| c.len() == 1)
        .await;
    let conv = op.take().await;
    let want = text.to_owned();
    let first = op
        .client
        .expect("the person's message", move |v| {
            is_event(v, "message") && v["event"]["text"] == want.as_str()
        })
        .await;
    let who = user.to_owned();
    t.fake
        .wait_for("someone-is-here notice", |_| {
            t.fake.pushed_to(&who).iter().any(|m| m.contains(JOINED))
        })
        .await;
    (op, conv, first["seq"].as_u64().unwrap())
}

#[tokio::test]
async fn webhook_signatures_are_checked_over_the_raw_body_before_parsing() {
    let t = LineTest::start().await;
    let user = new_user();
    let (ev, _) = harness::text(&user, &canary("sig"), None, None);
    let body = body(&[ev]);
    let secret = t.chan("npo1").secret.clone();
    let (good, sdk_events) = sdk_sign(&secret, &body).await;
    assert_eq!(sdk_events, ["MessageEvent"]);

    let tampered = body.replacen("canary-", "canary_", 1);
    assert_eq!(t.post_raw("npo1", tampered, Some(&good)).await, 401);
    let (wrong, _) = sdk_sign("not-the-channel-secret", &body).await;
    assert_eq!(t.post_raw("npo1", body.clone(), Some(&wrong)).await, 401);
    assert_eq!(t.post_raw("npo1", body.clone(), None).await, 401);
    assert_eq!(
        t.post_raw("npo1", body.clone(), Some("bm90IGEgc2lnbmF0dXJl"))
            .await,
        401
    );
    assert_eq!(
        t.post_raw("no-such-channel", body.clone(), Some(&good))
            .await,
        404
    );
    // Correctly signed but not a webhook body: refused after the signature, never before.
    let junk = "{not json".to_owned();
    let junk_sig = tsunagu::connectors::line::signature::sign(
        &secrecy::SecretString::from(secret.clone()),
        junk.as_bytes(),
    );
    assert_eq!(t.post_raw("npo1", junk, Some(&junk_sig)).await, 400);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        t.app.conversations().await.is_empty(),
        "nothing refused got in"
    );

    assert_eq!(t.post_raw("npo1", body, Some(&good)).await, 200);
    let convs = t
        .app
        .wait_conversations("the signed message's conversation", |c| c.len() == 1)
        .await;
    assert_eq!(convs[0].channel, Channel::Line);
    assert_eq!(convs[0].language.as_deref(), Some("ja"));
    t.finish().await;
}

#[tokio::test]
async fn connectivity_checks_unknown_and_standby_events_and_oversized_bodies() {
    let t = LineTest::start_with(&["npo1"], |s| s.line.max_body_bytes = 8 * 1024).await;
    let user = new_user();
    // LINE's "Verify" button sends no events.
    assert_eq!(t.post("npo1", &[]).await, 200);
    // An event type the connector does not handle, and a message in standby mode.
    let unknown = event(
        "videoPlayComplete",
        &user,
        json!({"replyToken": reply_token(), "videoPlayComplete": {"trackingId": "t1"}}),
    );
    let (mut standby, _) = harness::text(&user, &canary("standby"), Some(&reply_token()), None);
    standby["mode"] = json!("standby");
    assert_eq!(t.post("npo1", &[unknown, standby]).await, 200);
    // Too big: refused before anything is read.
    let (big, _) = harness::text(&user, &"あ".repeat(5_000), None, None);
    let big = body(&[big]);
    let sig = tsunagu::connectors::line::signature::sign(
        &secrecy::SecretString::from(t.chan("npo1").secret.clone()),
        big.as_bytes(),
    );
    assert_eq!(t.post_raw("npo1", big, Some(&sig)).await, 413);

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(t.app.conversations().await.is_empty());
    assert!(t.fake.requests().is_empty(), "nothing was sent to LINE");
    t.finish().await;
}

#[tokio::test]
async fn a_follow_is_greeted_by_reply_with_the_privacy_notice() {
    let t = LineTest::start().await;
    let user = new_user();
    let rt = reply_token();
    let follow = event(
        "follow",
        &user,
        json!({"replyToken": rt, "follow": {"isUnblocked": false}}),
    );
    assert_eq!(t.post("npo1", &[follow]).await, 200);
    t.fake
        .wait_for("greeting", |_| !t.fake.replied_with(&rt).is_empty())
        .await;
    let greeting = t.fake.replied_with(&rt).join("\n");
    for needle in [
        "名前を言わずに",
        "相談が終わると消去され",
        "命や体に危険があると相談員が判断したとき",
    ] {
        assert!(greeting.contains(needle), "greeting lacks {needle}");
    }
    assert!(
        t.app.conversations().await.is_empty(),
        "a follow alone does not queue anyone"
    );
    assert!(t.fake.pushed_to(&user).is_empty());
    t.finish().await;
}

#[tokio::test]
async fn text_flows_both_ways_between_line_and_the_operator_console() {
    let t = LineTest::start().await;
    let mut op = t.app.operator("sakura", 2, true).await;
    let user = new_user();
    let first = canary("first");
    let (rt1, read1) = (
        reply_token(),
        never_logged(format!("read-{}", ulid::Ulid::new())),
    );
    let (ev, _) = harness::text(&user, &first, Some(&rt1), Some(&read1));
    assert_eq!(t.post("npo1", &[ev]).await, 200);

    // The opening notices go by the message's reply token: received, then the queue position.
    t.fake
        .wait_for("opening reply", |_| !t.fake.replied_with(&rt1).is_empty())
        .await;
    let opening = t.fake.replied_with(&rt1);
    assert!(
        opening[0].contains("メッセージを受け取りました"),
        "{opening:?}"
    );
    assert!(opening[1].contains("いま 1 番目です"), "{opening:?}");

    // The operator takes the person and reads their message; the person hears someone is here.
    let conv = op.take().await;
    let want = first.clone();
    let msg = op
        .client
        .expect("the person's message", move |v| {
            is_event(v, "message") && v["event"]["text"] == want.as_str()
        })
        .await;
    assert_eq!(msg["event"]["from"], "visitor");
    let u = user.clone();
    t.fake
        .wait_for("someone is here now", |_| {
            t.fake.pushed_to(&u).iter().any(|m| m.contains(JOINED))
        })
        .await;

    // Typing shows LINE's loading indicator.
    op.client
        .send(json!({"type":"typing","id":helpers::id(),"conversation":conv,"active":true}))
        .await;
    let u = user.clone();
    t.fake
        .wait_for("loading indicator", move |r| {
            r.iter()
                .any(|r| r.path == LOADING && r.body["chatId"] == u.as_str())
        })
        .await;

    // The operator's answer is pushed to the person.
    let answer = canary("answer");
    op.say(&conv, &answer).await;
    let u = user.clone();
    t.fake
        .wait_for("the answer", |_| t.fake.pushed_to(&u).contains(&answer))
        .await;

    // When the operator has seen the message, LINE marks it read (既読).
    assert!(!t.fake.requests().iter().any(|r| r.path == MARK_READ));
    op.client
        .send(json!({"type":"ack","id":helpers::id(),"conversation":conv,"seq":msg["seq"]}))
        .await;
    let r1 = read1.clone();
    t.fake
        .wait_for("mark as read", move |r| {
            r.iter()
                .any(|r| r.path == MARK_READ && r.body["markAsReadToken"] == r1.as_str())
        })
        .await;

    // A second message leaves a fresh reply token, which the closing message uses.
    let (second, rt2) = (canary("second"), reply_token());
    let (ev, _) = harness::text(&user, &second, Some(&rt2), None);
    assert_eq!(t.post("npo1", &[ev]).await, 200);
    let want = second.clone();
    op.client
        .expect("the second message", move |v| {
            is_event(v, "message") && v["event"]["text"] == want.as_str()
        })
        .await;
    assert_eq!(op.act("end", &conv, json!({})).await["type"], "ack");
    t.fake
        .wait_for("closing message", |_| {
            t.fake
                .replied_with(&rt2)
                .iter()
                .any(|m| m.contains(CLOSING_HELPLINE))
        })
        .await;
    let closing = t.fake.replied_with(&rt2).join("\n");
    for needle in ["#いのちSOS 0120-061-338", "救急・消防 119", "警察 110"] {
        assert!(closing.contains(needle), "closing lacks {needle}");
    }

    // Once the person's side ended, the LINE user id is forgotten.
    let conv_id: ulid::Ulid = conv.parse().unwrap();
    let line = t.line();
    for _ in 0..200 {
        if line.live() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(line.live(), 0);
    assert_eq!(
        op.act("wrap_up", &conv, json!({"category":"other"})).await["type"],
        "ack"
    );
    t.app.wait_conversations("deletion", |c| c.is_empty()).await;
    assert!(t.app.state.engine.channel_ref(conv_id).is_none());
    // Every push carried the person's id, and nothing was pushed twice.
    let pushes: Vec<_> = t
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path == PUSH)
        .collect();
    assert!(pushes.iter().all(|p| p.body["to"] == user.as_str()));
    let keys: std::collections::HashSet<_> = pushes.iter().map(|p| p.retry_key.clone()).collect();
    assert_eq!(keys.len(), pushes.len(), "one retry key per message");
    t.finish().await;
}

#[tokio::test]
async fn a_line_user_and_a_widget_visitor_wait_in_one_queue() {
    let t = LineTest::start().await;
    let visitor = t.app.visitor("ja").await;
    let user = new_user();
    let rt = reply_token();
    let (ev, _) = harness::text(&user, &canary("queue"), Some(&rt), None);
    assert_eq!(t.post("npo1", &[ev]).await, 200);
    t.fake
        .wait_for("opening reply", |_| !t.fake.replied_with(&rt).is_empty())
        .await;
    assert!(
        t.fake.replied_with(&rt)[1].contains("いま 2 番目です"),
        "the LINE person is behind the widget visitor"
    );
    let mut op = t.app.operator("hana", 2, true).await;
    let first = op.take().await;
    let second = op.take().await;
    assert_eq!(
        first, visitor.conversation,
        "oldest first, whatever the channel"
    );
    let convs = t.app.conversations().await;
    let line_conv = convs.iter().find(|c| c.channel == Channel::Line).unwrap();
    assert_eq!(second, line_conv.id.to_string());
    t.finish().await;
}

/// Thirty people in one webhook arrive within a millisecond or two of each other: each is told
/// a place of their own, and together the places are 1 to 30 (they were told repeated and
/// skipped places when the queue broke same-millisecond ties by random conversation id).
#[tokio::test]
async fn thirty_people_in_one_webhook_are_told_thirty_different_places() {
    let t = LineTest::start().await;
    let tokens: Vec<String> = (0..30).map(|_| reply_token()).collect();
    let events: Vec<serde_json::Value> = tokens
        .iter()
        .map(|rt| harness::text(&new_user(), &canary("together"), Some(rt), None).0)
        .collect();
    assert_eq!(t.post("npo1", &events).await, 200);
    t.fake
        .wait_for("thirty opening replies", |_| {
            tokens.iter().all(|rt| t.fake.replied_with(rt).len() >= 2)
        })
        .await;
    let mut places: Vec<u32> = tokens
        .iter()
        .map(|rt| {
            let told = t.fake.replied_with(rt)[1].clone();
            let after = told.split("いま ").nth(1).expect("a place");
            after
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("a place in {told:?}"))
        })
        .collect();
    places.sort_unstable();
    assert_eq!(
        places,
        (1..=30).collect::<Vec<u32>>(),
        "no place told twice, none skipped"
    );
    t.finish().await;
}

#[tokio::test]
async fn redelivered_events_are_applied_once() {
    let t = LineTest::start().await;
    let user = new_user();
    let text = canary("redelivered");
    let rt = reply_token();
    let (ev, message_id) = harness::text(&user, &text, Some(&rt), None);
    assert_eq!(t.post("npo1", std::slice::from_ref(&ev)).await, 200);
    // LINE redelivers the same event…
    let mut again = ev.clone();
    again["deliveryContext"]["isRedelivery"] = json!(true);
    assert_eq!(t.post("npo1", &[again]).await, 200);
    // …and the same message arrives under another event id (as after a gateway restart).
    let mut other = ev.clone();
    other["webhookEventId"] = json!(ulid::Ulid::new().to_string());
    assert_eq!(other["message"]["id"], message_id.as_str());
    assert_eq!(t.post("npo1", &[other]).await, 200);

    let convs = t
        .app
        .wait_conversations("one conversation", |c| c.len() == 1)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = t.app.state.engine.log_of(convs[0].id).await.unwrap();
    let copies = log
        .iter()
        .filter(|e| matches!(&e.event, tsunagu::protocol::EventBody::Message { text: t, .. } if *t == text))
        .count();
    assert_eq!(copies, 1, "the message is stored once");
    assert_eq!(t.app.conversations().await.len(), 1);
    let replies = t.fake.requests().iter().filter(|r| r.path == REPLY).count();
    assert_eq!(replies, 1, "the person is greeted once");
    t.finish().await;
}

#[tokio::test]
async fn an_operator_reply_reaches_line_exactly_once_through_500_429_and_dropped_connections() {
    let t = LineTest::start().await;
    let user = new_user();
    let (mut op, conv, _) = person_with_operator(&t, &user, &canary("retry")).await;

    // 500, a dropped connection, 429, then LINE accepts but the answer never arrives (the
    // client times out); the next attempt with the same retry key gets 409: delivered once.
    t.fake.plan(
        PUSH,
        &[
            Plan::Status(500),
            Plan::Drop,
            Plan::Status(429),
            Plan::AcceptThenStall,
        ],
    );
    let (a, b) = (canary("a"), canary("b"));
    op.say(&conv, &a).await;
    op.say(&conv, &b).await;
    let u = user.clone();
    t.fake
        .wait_for("both messages", |_| t.fake.pushed_to(&u).contains(&b))
        .await;
    let attempts: Vec<_> = t
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path == PUSH && r.texts().contains(&a))
        .collect();
    let statuses: Vec<u16> = attempts.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 0, 429, 200, 409]);
    let key = attempts[0].retry_key.clone().unwrap();
    assert!(attempts
        .iter()
        .all(|r| r.retry_key.as_deref() == Some(key.as_str())));
    let pushed = t.fake.pushed_to(&user);
    assert_eq!(
        pushed.iter().filter(|m| **m == a).count(),
        1,
        "exactly once"
    );
    let (ia, ib) = (
        pushed.iter().position(|m| *m == a).unwrap(),
        pushed.iter().position(|m| *m == b).unwrap(),
    );
    assert!(ia < ib, "in order");

    // A 409 on the first attempt means an earlier one was accepted: no retry, next message on.
    t.fake.plan(PUSH, &[Plan::Status(409)]);
    let (c, d) = (canary("c"), canary("d"));
    op.say(&conv, &c).await;
    op.say(&conv, &d).await;
    let u = user.clone();
    t.fake
        .wait_for("the message after the 409", |_| {
            t.fake.pushed_to(&u).contains(&d)
        })
        .await;
    let c_attempts = t
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == PUSH && r.texts().contains(&c))
        .count();
    assert_eq!(c_attempts, 1);
    t.finish().await;
}

#[tokio::test]
async fn an_operator_message_outlasts_a_line_outage_longer_than_the_retry_budget() {
    // Two attempts per request would be the whole budget of a notice: the outage below is six
    // times longer, and the operator's message must still arrive, once, in order.
    let t = LineTest::start_with(&["npo1"], |s| s.line.retry_attempts = 2).await;
    let user = new_user();
    let (mut op, conv, _) = person_with_operator(&t, &user, &canary("outage")).await;
    t.fake.plan(PUSH, &[Plan::Status(503); 12]);
    let (kept, next) = (canary("kept"), canary("next"));
    op.say(&conv, &kept).await;
    op.say(&conv, &next).await;
    let u = user.clone();
    t.fake
        .wait_for("both messages after the outage", |_| {
            t.fake.pushed_to(&u).contains(&next)
        })
        .await;
    let attempts: Vec<_> = t
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path == PUSH && r.texts().contains(&kept))
        .collect();
    let statuses: Vec<u16> = attempts.iter().map(|r| r.status).collect();
    let mut want = vec![503u16; 12];
    want.push(200);
    assert_eq!(statuses, want);
    let key = attempts[0].retry_key.clone().unwrap();
    assert!(attempts
        .iter()
        .all(|r| r.retry_key.as_deref() == Some(key.as_str())));
    let pushed = t.fake.pushed_to(&user);
    assert_eq!(pushed.iter().filter(|m| **m == kept).count(), 1, "once");
    assert_eq!(pushed.iter().filter(|m| **m == next).count(), 1, "once");
    let (ik, inx) = (
        pushed.iter().position(|m| *m == kept).unwrap(),
        pushed.iter().position(|m| *m == next).unwrap(),
    );
    assert!(ik < inx, "in order");
    // The later message waited: its only attempt came after the outage.
    let next_attempts: Vec<u16> = t
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == PUSH && r.texts().contains(&next))
        .map(|r| r.status)
        .collect();
    assert_eq!(next_attempts, [200]);
    t.finish().await;
}

#[tokio::test]
async fn a_message_line_refuses_is_reported_to_the_operator_by_id_and_the_next_one_still_goes() {
    let t = LineTest::start().await;
    let user = new_user();
    let (mut op, conv, _) = person_with_operator(&t, &user, &canary("refused")).await;
    t.fake.plan(PUSH, &[Plan::Status(400)]);
    let (refused, next) = (canary("refused"), canary("next"));
    let ack = op.act("send", &conv, json!({"text": refused})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let cid = ack["id"].as_str().unwrap().to_owned();
    let refused_seq = ack["seq"].as_u64().unwrap();
    let want = cid.clone();
    let err = op
        .client
        .expect("the error frame for the refused message", move |v| {
            v["type"] == "error" && v["id"] == want.as_str()
        })
        .await;
    assert_eq!(err["code"], "unavailable", "{err}");
    assert_eq!(err["message"], "LINE did not accept this message", "{err}");
    // Not retried: a refusal cannot succeed by trying again.
    let refused_attempts = t
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == PUSH && r.texts().contains(&refused))
        .count();
    assert_eq!(refused_attempts, 1);
    op.say(&conv, &next).await;
    let u = user.clone();
    t.fake
        .wait_for("the next message", |_| t.fake.pushed_to(&u).contains(&next))
        .await;
    assert!(!t.fake.pushed_to(&user).contains(&refused));
    let logs = logs();
    let line = logs
        .lines()
        .find(|l| l.contains("NOT delivered to LINE") && l.contains(&conv))
        .expect("the refusal is logged with the conversation id");
    assert!(line.contains(&format!("seq={refused_seq}")), "{line}");
    assert!(line.contains("status=400"), "{line}");
    t.finish().await;
}

#[tokio::test]
async fn unfollow_ends_the_conversation_and_nothing_more_is_sent() {
    let t = LineTest::start().await;
    let user = new_user();
    let (mut op, conv, _) = person_with_operator(&t, &user, &canary("unfollow")).await;
    let pushes_before = t.fake.pushed_to(&user).len();
    assert_eq!(
        t.post("npo1", &[event("unfollow", &user, json!({}))]).await,
        200
    );
    let ended = op.client.expect("ended", |v| is_event(v, "ended")).await;
    assert_eq!(ended["event"]["by"], "visitor");
    let late = op
        .act("send", &conv, json!({"text": "after the end"}))
        .await;
    assert_eq!(late["type"], "error", "{late}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The operator's send after the end was refused by the engine, and LINE got nothing more.
    assert_eq!(t.fake.pushed_to(&user).len(), pushes_before);
    assert_eq!(t.line().live(), 0);
    t.finish().await;
}

#[tokio::test]
async fn unsend_retracts_the_message_from_the_operators_view() {
    let t = LineTest::start().await;
    let user = new_user();
    let mut op = t.app.operator("kaito", 2, true).await;
    let text = canary("unsend");
    let (ev, message_id) = harness::text(&user, &text, None, None);
    assert_eq!(t.post("npo1", &[ev]).await, 200);
    t.app
        .wait_conversations("conversation", |c| c.len() == 1)
        .await;
    op.take().await;
    let want = text.clone();
    let msg = op
        .client
        .expect("the message", move |v| {
            is_event(v, "message") && v["event"]["text"] == want.as_str()
        })
        .await;
    assert_eq!(t.post("npo1", &[unsend(&user, &message_id)]).await, 200);
    let retracted = op
        .client
        .expect("retracted", |v| is_event(v, "retracted"))
        .await;
    assert_eq!(retracted["event"]["id"], msg["event"]["id"]);
    t.finish().await;
}

#[tokio::test]
async fn group_and_room_chats_get_a_polite_reply_and_no_conversation() {
    let t = LineTest::start().await;
    let user = new_user();
    let group = format!("C{:032x}", 0xabc_u128);
    let (rt1, rt2, rt3) = (reply_token(), reply_token(), reply_token());
    let join = json!({
        "type": "join", "mode": "active", "timestamp": 1, "replyToken": rt1,
        "webhookEventId": ulid::Ulid::new().to_string(),
        "deliveryContext": {"isRedelivery": false},
        "source": {"type": "group", "groupId": group},
    });
    let (mut in_group, _) = harness::text(&user, &canary("group"), Some(&rt2), None);
    in_group["source"] = json!({"type": "group", "groupId": group, "userId": user});
    let (mut in_room, _) = harness::text(&user, &canary("room"), Some(&rt3), None);
    in_room["source"] =
        json!({"type": "room", "roomId": format!("R{:032x}", 0xdef_u128), "userId": user});
    assert_eq!(t.post("npo1", &[join, in_group]).await, 200);
    assert_eq!(t.post("npo1", &[in_room]).await, 200);
    t.fake
        .wait_for("group and room notices", |_| {
            !t.fake.replied_with(&rt1).is_empty() && !t.fake.replied_with(&rt3).is_empty()
        })
        .await;
    assert!(t.fake.replied_with(&rt1)[0].contains("1対1のトーク"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        t.fake.replied_with(&rt2).is_empty(),
        "a group is told once, not on every message"
    );
    assert!(t.app.conversations().await.is_empty());
    assert!(t.fake.requests().iter().all(|r| r.path == REPLY));
    t.finish().await;
}

#[tokio::test]
async fn stickers_and_images_become_a_placeholder_and_the_person_is_told_once() {
    let t = LineTest::start().await;
    let user = new_user();
    let rt1 = reply_token();
    let sticker = event(
        "message",
        &user,
        json!({"replyToken": rt1, "message": {"type":"sticker","id":"100001","packageId":"446",
            "stickerId":"1988","stickerResourceType":"STATIC","quoteToken":"q"}}),
    );
    assert_eq!(t.post("npo1", &[sticker]).await, 200);
    t.fake
        .wait_for("opening reply", |_| !t.fake.replied_with(&rt1).is_empty())
        .await;
    let opening = t.fake.replied_with(&rt1);
    assert!(
        opening.iter().any(|m| m.contains("文字のメッセージだけ")),
        "{opening:?}"
    );
    let mut op = t.app.operator("ren", 2, true).await;
    op.take().await;
    op.client
        .expect("sticker placeholder", |v| {
            is_event(v, "message")
                && v["event"]["text"]
                    .as_str()
                    .is_some_and(|s| s.contains("スタンプ"))
        })
        .await;
    let rt2 = reply_token();
    let image = event(
        "message",
        &user,
        json!({"replyToken": rt2, "message": {"type":"image","id":"100002",
            "contentProvider":{"type":"line"},"quoteToken":"q"}}),
    );
    assert_eq!(t.post("npo1", &[image]).await, 200);
    op.client
        .expect("image placeholder", |v| {
            is_event(v, "message")
                && v["event"]["text"]
                    .as_str()
                    .is_some_and(|s| s.contains("画像"))
        })
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        t.fake.replied_with(&rt2).is_empty(),
        "told once per conversation"
    );
    t.finish().await;
}

#[tokio::test]
async fn a_postback_end_closes_the_conversation_with_the_helplines_by_reply() {
    let t = LineTest::start().await;
    let user = new_user();
    let (mut op, _conv, _) = person_with_operator(&t, &user, &canary("postback")).await;
    let rt = reply_token();
    let end = event(
        "postback",
        &user,
        json!({"replyToken": rt, "postback": {"data": "action=end"}}),
    );
    assert_eq!(t.post("npo1", &[end]).await, 200);
    op.client.expect("ended", |v| is_event(v, "ended")).await;
    t.fake
        .wait_for("closing by reply", |_| {
            t.fake
                .replied_with(&rt)
                .iter()
                .any(|m| m.contains(CLOSING_HELPLINE))
        })
        .await;
    t.finish().await;
}

/// Issue 20, item 5: the closing message lists the directory's entries marked for closing
/// messages, as an admin last edited them (not compiled-in text).
#[tokio::test]
async fn the_closing_message_lists_a_directory_entry_an_admin_edited() {
    let t = LineTest::start().await;
    t.app
        .admin_edits_entry("inochi-sos", "編集した相談窓口", "0120-111-222")
        .await;
    let user = new_user();
    let (mut op, conv, _) = person_with_operator(&t, &user, &canary("edited entry")).await;
    assert_eq!(op.act("end", &conv, json!({})).await["type"], "ack");
    let sent = |want: &str| {
        t.fake
            .requests()
            .iter()
            .any(|r| r.body.to_string().contains(want))
    };
    t.fake
        .wait_for("the closing message", |_| {
            sent("編集した相談窓口 0120-111-222（24時間）")
        })
        .await;
    assert!(!sent("#いのちSOS"), "the entry's old name is gone");
    assert!(sent(CLOSING_HELPLINE), "the other entries are still listed");
    t.finish().await;
}

#[tokio::test]
async fn each_channel_has_its_own_secret_token_language_and_priority() {
    let t = LineTest::start_with(&["npo1", "npo2"], |s| {
        for c in &mut s.line.channels {
            if c.id == "npo2" {
                c.priority = 3;
            }
        }
    })
    .await;
    let user = new_user();
    let (ev, _) = harness::text(&user, &canary("npo2"), None, None);
    let b = body(&[ev]);
    let (sig1, _) = sdk_sign(&t.chan("npo1").secret, &b).await;
    assert_eq!(
        t.post_raw("npo2", b, Some(&sig1)).await,
        401,
        "another channel's secret"
    );

    let (rt_en, rt_ja) = (reply_token(), reply_token());
    let (en, _) = harness::text(&user, &canary("en"), Some(&rt_en), None);
    assert_eq!(t.post("npo2", &[en]).await, 200);
    let (ja, _) = harness::text(&user, &canary("ja"), Some(&rt_ja), None);
    assert_eq!(t.post("npo1", &[ja]).await, 200);
    t.fake
        .wait_for("both openings", |_| {
            !t.fake.replied_with(&rt_en).is_empty() && !t.fake.replied_with(&rt_ja).is_empty()
        })
        .await;
    assert!(t.fake.replied_with(&rt_en)[1].starts_with("You are number"));
    assert!(t.fake.replied_with(&rt_ja)[1].starts_with("いま"));
    let auth = |rt: &str| -> Option<String> {
        t.fake
            .requests()
            .into_iter()
            .find(|r| r.path == REPLY && r.body["replyToken"] == rt)
            .and_then(|r| r.authorization)
    };
    assert_eq!(
        auth(&rt_en),
        Some(format!("Bearer {}", t.chan("npo2").token))
    );
    assert_eq!(
        auth(&rt_ja),
        Some(format!("Bearer {}", t.chan("npo1").token))
    );
    let convs = t
        .app
        .wait_conversations("two conversations", |c| c.len() == 2)
        .await;
    let mut langs: Vec<_> = convs.iter().filter_map(|c| c.language.clone()).collect();
    langs.sort();
    assert_eq!(
        langs,
        ["en", "ja"],
        "one conversation per channel, in its language"
    );
    for c in &convs {
        let expected = if c.language.as_deref() == Some("en") {
            3
        } else {
            0
        };
        assert_eq!(c.priority, expected, "the channel's queue priority");
    }
    t.finish().await;
}

#[tokio::test]
async fn a_channel_without_its_secret_is_a_startup_error() {
    let g = globals();
    let fake = fake_api::FakeLine::start(&[]).await;
    let mut s = settings(&fake, &[&g.chans[0]]);
    s.line.channels[0].secret_env = "TSUNAGU_TEST_LINE_NEVER_SET_SECRET".into();
    let err = tsunagu::Application::build(s).await.err().expect("refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("TSUNAGU_TEST_LINE_NEVER_SET_SECRET"), "{msg}");
    assert!(!fake.token_known("anything"));
}

#[tokio::test]
async fn no_line_user_id_text_or_token_appears_in_any_log_line() {
    let t = LineTest::start().await;
    let user = new_user();
    let secret_text = canary("logs");
    let (mut op, conv, seq) = person_with_operator(&t, &user, &secret_text).await;
    let read = never_logged(format!("read-{}", ulid::Ulid::new()));
    let (ev, message_id) =
        harness::text(&user, &canary("logs-2"), Some(&reply_token()), Some(&read));
    assert_eq!(t.post("npo1", &[ev]).await, 200);
    op.client
        .send(json!({"type":"typing","id":helpers::id(),"conversation":conv,"active":true}))
        .await;
    op.say(&conv, &canary("logs-answer")).await;
    op.client
        .send(json!({"type":"ack","id":helpers::id(),"conversation":conv,"seq":seq + 10}))
        .await;
    assert_eq!(t.post("npo1", &[unsend(&user, &message_id)]).await, 200);
    // A refused body containing a canary is not logged either.
    let (bad, _) = harness::text(&user, &canary("refused"), None, None);
    assert_eq!(t.post_raw("npo1", body(&[bad]), Some("AAAA")).await, 401);
    op.client
        .expect("retracted", |v| is_event(v, "retracted"))
        .await;
    assert_eq!(op.act("end", &conv, json!({})).await["type"], "ack");
    t.fake
        .wait_for("closing", |_| {
            t.fake
                .delivered_texts()
                .iter()
                .any(|m| m.contains(CLOSING_HELPLINE))
        })
        .await;
    t.finish().await;

    let g = globals();
    let logs = logs();
    assert!(
        logs.contains(&conv),
        "the logs do carry the conversation id"
    );
    assert!(logs.contains("LINE webhook refused"), "and the refusal");
    let never: Vec<String> = g.secrets.lock().unwrap().clone();
    assert!(never.len() > 5);
    for s in never {
        if let Some(line) = logs.lines().find(|l| l.contains(s.as_str())) {
            panic!("{s} found in a log line: {line}");
        }
    }
}

/// Issue 17, item 14: the store lost the conversation (what a Redis restart without
/// persistence does; here the conversation is deleted without an `ended` entry and the engine
/// told to check, as it is when it notices the loss). The person gets a push in the channel's
/// language saying so, how to start again and other helplines; the operator's console gets
/// `gone`; and the person's next message starts a new conversation.
#[tokio::test]
async fn a_conversation_the_store_lost_is_explained_to_the_person_and_their_next_message_starts_anew(
) {
    let t = LineTest::start().await;
    let mut op = t.app.operator("lost-op", 2, true).await;
    let user = new_user();
    let (ev, _) = harness::text(
        &user,
        &canary("before the loss"),
        Some(&reply_token()),
        None,
    );
    assert_eq!(t.post("npo1", &[ev]).await, 200);
    let conv = op.take().await;
    let u = user.clone();
    t.fake
        .wait_for("someone is here now", |_| {
            t.fake.pushed_to(&u).iter().any(|m| m.contains(JOINED))
        })
        .await;

    let id: ulid::Ulid = conv.parse().unwrap();
    t.app.state.engine.lose_from_store(id).await.unwrap();
    t.app.state.engine.tell_gone().await;

    let u = user.clone();
    t.fake
        .wait_for("the loss explained", |_| {
            t.fake
                .pushed_to(&u)
                .iter()
                .any(|m| m.contains("続けられなくなりました"))
        })
        .await;
    let told = t.fake.pushed_to(&user).join("\n");
    for needle in [
        "もう一度メッセージを送って",
        "よりそいホットライン 0120-279-338",
        "救急・消防 119",
    ] {
        assert!(told.contains(needle), "the notice lacks {needle}: {told}");
    }
    let c = conv.clone();
    let gone = op
        .client
        .expect("gone", move |v| {
            v["type"] == "gone" && v["conversation"] == c.as_str()
        })
        .await;
    assert_eq!(gone["reason"], "lost");
    for _ in 0..200 {
        if t.line().live() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(t.line().live(), 0, "the person is no longer followed");

    let (ev, _) = harness::text(&user, &canary("after the loss"), Some(&reply_token()), None);
    assert_eq!(t.post("npo1", &[ev]).await, 200);
    let convs = t
        .app
        .wait_conversations("a new conversation", |c| c.len() == 1)
        .await;
    assert_ne!(convs[0].id, id, "a new conversation, not the lost one");
    t.finish().await;
}
