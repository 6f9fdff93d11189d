//! Queue order, capacity, offers that time out, operators who vanish.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn the_queue_is_served_oldest_first_and_capacity_is_respected() {
    let app = spawn_app().await;
    let v1 = app.visitor("ja").await;
    let v2 = app.visitor("ja").await;
    let v3 = app.visitor("ja").await;
    let mut op = app.operator("sakura", 2, false).await;
    assert_eq!(op.take().await, v1.conversation);
    assert_eq!(op.take().await, v2.conversation);
    let r = op.take_next().await;
    assert_eq!(
        r["code"], "capacity",
        "a third conversation exceeds capacity 2"
    );
    let mut other = app.operator("kai", 2, false).await;
    assert_eq!(other.take().await, v3.conversation);
    app.stop().await;
}

#[tokio::test]
async fn waiting_people_see_their_position_move_up() {
    let app = spawn_app().await;
    let _v1 = app.visitor("ja").await;
    let mut v2 = app.visitor("ja").await;
    v2.client
        .expect("position 2", |v| v["type"] == "queue" && v["position"] == 2)
        .await;
    let mut op = app.operator("sakura", 2, false).await;
    op.take().await;
    let q = v2
        .client
        .expect("position 1", |v| v["type"] == "queue" && v["position"] == 1)
        .await;
    assert!(q["wait_minutes"].is_null(), "nobody on duty: no estimate");
    app.stop().await;
}

#[tokio::test]
async fn offers_go_to_the_least_loaded_operator_and_respect_language() {
    let app = spawn_app().await;
    let mut ja_only = {
        let (uid, cookie) = app
            .session("ja-only", tsunagu::auth::Role::Operator, Some(2))
            .await;
        app.state
            .accounts
            .set_routing(uid.parse().unwrap(), vec!["ja".into()], Some(2))
            .await
            .unwrap();
        app.operator_with("ja-only", &uid, &cookie, json!({}), true)
            .await
    };
    let mut bilingual = app.operator("kai", 2, true).await;
    let v = app.visitor("en").await;
    let c = bilingual.expect_offer().await;
    assert_eq!(
        c, v.conversation,
        "the English speaker is offered the English conversation"
    );
    let r = ja_only.take_next().await;
    assert_eq!(r["type"], "ack");
    // Nothing suitable for ja-only in the queue: the offered one is not takeable.
    assert!(ja_only
        .client
        .backlog
        .iter()
        .all(|f| f["type"] != "conversation"));
    app.stop().await;
}

#[tokio::test]
async fn an_offer_not_accepted_in_time_moves_on_to_the_next_operator() {
    // On a manual clock: the offer lapses when the test moves time on, once the next operator
    // is there.
    let clock = tsunagu::clock::Clock::manual(tsunagu::clock::now_ms());
    let app = spawn_app_with_clock(clock.clone(), |s| s.conversation.offer_timeout_ms = 300).await;
    let mut a = app.operator("sakura", 2, true).await;
    let v = app.visitor("ja").await;
    let first = a.expect_offer().await;
    assert_eq!(first, v.conversation);
    let mut b = app.operator("kai", 2, true).await;
    clock.advance(300);
    let withdrawn = a.client.expect_type("offer_withdrawn").await;
    assert_eq!(withdrawn["reason"], "timeout");
    let second = b.expect_offer().await;
    assert_eq!(
        second, v.conversation,
        "the next operator is offered the same person"
    );
    // Accepting a lapsed offer is refused.
    let r = a.act("accept", &first, json!({})).await;
    assert_eq!(r["type"], "error");
    app.stop().await;
}

#[tokio::test]
async fn a_declined_offer_goes_to_someone_else() {
    let app = spawn_app().await;
    let mut a = app.operator("sakura", 2, true).await;
    let v = app.visitor("ja").await;
    let c = a.expect_offer().await;
    let r = a.act("decline", &c, json!({})).await;
    assert_eq!(r["type"], "ack");
    let w = a.client.expect_type("offer_withdrawn").await;
    assert_eq!(w["reason"], "declined");
    let mut b = app.operator("kai", 2, true).await;
    assert_eq!(b.expect_offer().await, v.conversation);
    app.stop().await;
}

#[tokio::test]
async fn an_operator_who_disconnects_gets_their_people_back_within_the_grace_period() {
    let app = spawn_app_with(|s| s.conversation.operator_grace_ms = 5_000).await;
    let mut op = app.operator("sakura", 2, false).await;
    let mut v = app.visitor("ja").await;
    let c = op.take().await;
    let seq = op.say(&c, "ここにいますよ").await;
    let cookie = op.cookie.clone();
    let uid = op.id.clone();
    op.client.cut();
    v.say("まだいますか").await;
    // Back within the grace period, resuming after the last seq it had.
    let mut back = app
        .operator_with("sakura", &uid, &cookie, json!({ c.clone(): seq }), false)
        .await;
    let m = back
        .client
        .expect("missed message", |e| is_event(e, "message"))
        .await;
    assert_eq!(m["event"]["text"], "まだいますか");
    assert_eq!(m["seq"], seq + 1);
    app.stop().await;
}

#[tokio::test]
async fn an_operator_gone_past_the_grace_period_has_their_conversations_requeued_at_the_front() {
    // On a manual clock: the grace runs out when the test moves time on, once the engine has
    // seen the operator go.
    let clock = tsunagu::clock::Clock::manual(tsunagu::clock::now_ms());
    let app = spawn_app_with_clock(clock.clone(), |s| s.conversation.operator_grace_ms = 300).await;
    let mut op = app.operator("sakura", 2, false).await;
    let mut v = app.visitor("ja").await;
    let c = op.take().await;
    v.say("聞いてください").await;
    clock.advance(1);
    let _later = app.visitor("ja").await;
    op.client.cut();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.state.engine.operators().await.unwrap()[0].connected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the operator's disconnect never seen"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    clock.advance(300);
    let left = v
        .client
        .expect("operator left", |e| is_event(e, "operator_left"))
        .await;
    assert_eq!(left["event"]["reason"], "requeued");
    let queue = app.state.engine.queue().await.unwrap();
    assert_eq!(
        queue[0].id.to_string(),
        c,
        "front of the queue, before the later arrival"
    );
    // The next operator gets them with their messages kept.
    let mut other = app.operator("kai", 2, false).await;
    assert_eq!(other.take().await, c);
    let m = other
        .client
        .expect("kept message", |e| is_event(e, "message"))
        .await;
    assert_eq!(m["event"]["text"], "聞いてください");
    app.stop().await;
}

#[tokio::test]
async fn a_person_who_disconnects_keeps_their_place_during_the_grace_period() {
    // On a manual clock: the grace runs when the test moves time on. A third person, cut
    // earlier and gone past the grace, shows when the engine's timer has looked at the new time.
    let clock = tsunagu::clock::Clock::manual(tsunagu::clock::now_ms());
    let app =
        spawn_app_with_clock(clock.clone(), |s| s.conversation.visitor_grace_ms = 1_500).await;
    let v1 = app.visitor("ja").await;
    clock.advance(1);
    let _v2 = app.visitor("ja").await;
    clock.advance(1);
    let witness = app.visitor("ja").await;
    let (first, earlier) = (v1.conversation.clone(), witness.conversation.clone());
    witness.client.cut();
    wait_disconnected(&app, &earlier).await;
    clock.advance(1_000);
    let token = v1.token.clone();
    v1.client.cut();
    wait_disconnected(&app, &first).await;
    clock.advance(600);
    app.wait_conversations("the earlier one abandoned past the grace", |c| {
        !c.iter().any(|c| c.id.to_string() == earlier)
    })
    .await;
    let (mut back, w) = app.resume(&token, Some(0)).await;
    assert_eq!(w["resumed"], true);
    assert_eq!(w["state"], "queued");
    let q = back.expect_type("queue").await;
    assert_eq!(q["position"], 1, "still first");
    app.stop().await;
}

#[tokio::test]
async fn a_person_gone_past_the_grace_period_is_abandoned() {
    // On a manual clock: the grace passes when the test moves time on.
    let clock = tsunagu::clock::Clock::manual(tsunagu::clock::now_ms());
    let app = spawn_app_with_clock(clock.clone(), |s| s.conversation.visitor_grace_ms = 200).await;
    let v = app.visitor("ja").await;
    let (token, conv) = (v.token.clone(), v.conversation.clone());
    v.client.cut();
    wait_disconnected(&app, &conv).await;
    clock.advance(600);
    app.wait_conversations("abandoned past the grace", |c| c.is_empty())
        .await;
    assert!(app.all_deleted().await);
    let mut c = app.raw_visitor().await;
    c.send(json!({"type":"hello","v":1,"id":id(),"resume":{"token":token}}))
        .await;
    let e = c.expect_type("error").await;
    assert_eq!(e["code"], "not_found");
    assert_eq!(c.expect_close().await, Some(4004));
    let d = app.state.engine.dashboard().await.unwrap();
    assert_eq!(d.today.abandoned, 1);
    app.stop().await;
}

/// An operator of the given routing languages and capacity, on duty.
async fn operator_speaking(app: &TestApp, name: &str, langs: &[&str], capacity: u32) -> Operator {
    let (uid, cookie) = app
        .session(name, tsunagu::auth::Role::Operator, Some(capacity))
        .await;
    app.state
        .accounts
        .set_routing(
            uid.parse().unwrap(),
            langs.iter().map(|l| l.to_string()).collect(),
            Some(capacity),
        )
        .await
        .unwrap();
    app.operator_with(name, &uid, &cookie, json!({}), true)
        .await
}

#[tokio::test]
async fn dispatch_never_offers_to_an_operator_at_capacity() {
    let app = spawn_app().await;
    // Sakura holds one person, her whole capacity.
    let mut full = operator_speaking(&app, "sakura", &["ja"], 1).await;
    let first = app.visitor("ja").await;
    assert_eq!(full.expect_offer().await, first.conversation);
    assert_eq!(
        full.act("accept", &first.conversation, json!({})).await["type"],
        "ack"
    );
    // Kai is free but does not speak Japanese: dispatch runs its plan at each arrival (an
    // operator with room is on duty), and only the capacity rule keeps the next person from
    // Sakura.
    let mut english = operator_speaking(&app, "kai", &["en"], 2).await;
    let second = app.visitor("ja").await;
    // Someone who can take them comes on duty: the offer goes there.
    let mut free = operator_speaking(&app, "hana", &["ja"], 1).await;
    assert_eq!(free.expect_offer().await, second.conversation);
    // Nothing was offered to Sakura or Kai meanwhile (a reply to a ping comes after anything
    // queued for them before it).
    for op in [&mut full, &mut english] {
        let cid = id();
        op.client.send(json!({"type":"ping","id":cid})).await;
        op.client
            .expect("pong", move |v| v["type"] == "pong" && v["id"] == cid)
            .await;
        assert!(
            op.client.backlog.iter().all(|f| f["type"] != "offer"),
            "no offer beyond capacity or language: {:?}",
            op.client.backlog
        );
    }
    app.stop().await;
}

/// Waits (bounded) until the engine has seen the visitor of conversation `id` disconnect, so
/// that their grace runs from the clock's time now.
async fn wait_disconnected(app: &TestApp, id: &str) {
    app.wait_conversations("the visitor's disconnect seen", |c| {
        c.iter()
            .any(|c| c.id.to_string() == id && !c.visitor_connected)
    })
    .await;
}
