//! The whole conversation, and what operators can do with it.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_visitor_and_an_operator_hold_a_whole_conversation() {
    let app = spawn_app().await;
    let mut op = app.operator("sakura", 2, true).await;
    let mut v = app.visitor("ja").await;

    // The person is told where they are, and the operator is offered them.
    let q = v.client.expect_type("queue").await;
    assert_eq!(q["position"], 1);
    let offered = op.expect_offer().await;
    assert_eq!(offered, v.conversation);
    let r = op.act("accept", &offered, json!({})).await;
    assert_eq!(r["type"], "ack", "{r}");
    let summary = op.client.expect_type("conversation").await;
    assert_eq!(summary["conversation"]["state"], "active");
    assert!(
        summary["conversation"].get("token").is_none(),
        "no identifier of the person reaches the operator"
    );

    let joined = v
        .client
        .expect("operator joined", |e| is_event(e, "operator_joined"))
        .await;
    assert_eq!(joined["seq"], 1);
    assert_eq!(joined["event"]["operator"], "Op sakura");

    // Messages both ways, each with the next seq, seen by both sides.
    let s = v.say("こんにちは、聞いてほしいことがあります").await;
    assert_eq!(s, 2);
    let m = op
        .client
        .expect("visitor message", |e| {
            is_event(e, "message") && e["seq"] == 2
        })
        .await;
    assert_eq!(m["event"]["from"], "visitor");
    assert_eq!(m["event"]["text"], "こんにちは、聞いてほしいことがあります");
    let s = op.say(&offered, "話してくれてありがとう").await;
    assert_eq!(s, 3);
    let m = v
        .client
        .expect("operator message", |e| {
            is_event(e, "message") && e["seq"] == 3
        })
        .await;
    assert_eq!(m["event"]["from"], "operator");

    // Typing indicators cross over without a seq.
    v.client
        .send(json!({"type":"typing","id":id(),"active":true}))
        .await;
    let t = op.client.expect_type("typing").await;
    assert_eq!(t["from"], "visitor");
    assert_eq!(t["active"], true);
    op.client
        .send(json!({"type":"typing","id":id(),"conversation":offered,"active":true}))
        .await;
    let t = v.client.expect_type("typing").await;
    assert_eq!(t["from"], "operator");

    // The operator ends: the person sees it and their socket closes normally.
    let r = op.act("end", &offered, json!({})).await;
    assert_eq!(r["type"], "ack");
    let ended = v.client.expect("ended", |e| is_event(e, "ended")).await;
    assert_eq!(ended["event"]["by"], "operator");
    assert_eq!(v.client.expect_close().await, Some(1000));

    // Wrap-up with a category closes it, and nothing of it remains.
    let s = op
        .client
        .expect("wrap-up summary", |e| {
            e["type"] == "conversation" && e["conversation"]["state"] == "wrap_up"
        })
        .await;
    assert_eq!(s["conversation"]["id"], offered.as_str());
    let r = op
        .act("wrap_up", &offered, json!({"category":"loneliness"}))
        .await;
    assert_eq!(r["type"], "ack", "{r}");
    let removed = op.client.expect_type("removed").await;
    assert_eq!(removed["reason"], "closed");
    let id: ulid::Ulid = offered.parse().unwrap();
    assert!(app.state.engine.conversation(id).await.unwrap().is_none());
    assert!(app.state.engine.log_of(id).await.unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_wrap_up_category_must_be_one_of_the_configured_ones() {
    let app = spawn_app().await;
    let mut op = app.operator("sakura", 2, false).await;
    let _v = app.visitor("ja").await;
    let c = op.take().await;
    op.act("end", &c, json!({})).await;
    let r = op.act("wrap_up", &c, json!({"category":"gossip"})).await;
    assert_eq!(r["code"], "invalid");
    app.stop().await;
}

#[tokio::test]
async fn the_visitor_can_end_while_waiting_and_the_conversation_is_abandoned_and_deleted() {
    let app = spawn_app().await;
    let mut v = app.visitor("ja").await;
    v.client.send(json!({"type":"end","id":id()})).await;
    let ended = v.client.expect("ended", |e| is_event(e, "ended")).await;
    assert_eq!(ended["event"]["by"], "visitor");
    assert_eq!(v.client.expect_close().await, Some(1000));
    assert!(app.all_deleted().await);
    let d = app.state.engine.dashboard().await.unwrap();
    assert_eq!(d.today.abandoned, 1);
    app.stop().await;
}

#[tokio::test]
async fn an_operator_transfers_to_a_colleague_with_a_note_that_only_the_colleague_sees() {
    let app = spawn_app().await;
    let mut a = app.operator("sakura", 2, false).await;
    let mut b = app.operator("kai", 2, false).await;
    let mut v = app.visitor("ja").await;
    let c = a.take().await;
    b.presence("on_duty").await;
    v.say("学校のことで").await;
    let r = a
        .act(
            "transfer",
            &c,
            json!({"to": b.id, "note":"学校の話。ゆっくり聞いてあげて"}),
        )
        .await;
    assert_eq!(r["type"], "ack", "{r}");
    let removed = a.client.expect_type("removed").await;
    assert_eq!(removed["reason"], "transferred");
    let offer = b.client.expect_type("offer").await;
    assert_eq!(offer["transfer"]["from"], "Op sakura");
    assert_eq!(offer["transfer"]["note"], "学校の話。ゆっくり聞いてあげて");
    let left = v
        .client
        .expect("operator left", |e| is_event(e, "operator_left"))
        .await;
    assert_eq!(left["event"]["reason"], "transferred");
    assert!(
        left.to_string().find("学校の話").is_none(),
        "the note never reaches the person"
    );
    b.act("accept", &c, json!({})).await;
    let summary = b.client.expect_type("conversation").await;
    assert_eq!(
        summary["conversation"]["handover_note"],
        "学校の話。ゆっくり聞いてあげて"
    );
    // The colleague receives the whole transcript so far.
    let m = b
        .client
        .expect("earlier message", |e| is_event(e, "message"))
        .await;
    assert_eq!(m["event"]["text"], "学校のことで");
    v.client
        .expect("new operator joined", |e| {
            is_event(e, "operator_joined") && e["event"]["operator"] == "Op kai"
        })
        .await;
    app.stop().await;
}

#[tokio::test]
async fn handing_a_conversation_back_puts_it_at_the_front_of_the_queue() {
    let app = spawn_app().await;
    let mut a = app.operator("sakura", 2, false).await;
    let first = app.visitor("ja").await;
    let c = a.take().await;
    assert_eq!(c, first.conversation);
    let _second = app.visitor("ja").await;
    let r = a.act("transfer", &c, json!({"to": null})).await;
    assert_eq!(r["type"], "ack");
    let queue = app.state.engine.queue().await.unwrap();
    assert_eq!(
        queue[0].id.to_string(),
        c,
        "the handed-back person is first"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_help_request_reaches_the_coordinator_view_and_can_be_acknowledged() {
    let app = spawn_app().await;
    let mut op = app.operator("sakura", 2, false).await;
    let _v = app.visitor("ja").await;
    let c = op.take().await;
    let r = op.act("help", &c, json!({})).await;
    assert_eq!(r["type"], "ack");

    let coord = app.coordinator().await;
    let d: serde_json::Value = app.get_json_as(&coord, "/api/dashboard").await;
    let alert = &d["alerts"][0];
    assert_eq!(alert["operator"], "Op sakura");
    assert_eq!(alert["acknowledged_by"], serde_json::Value::Null);
    let ack = format!("/api/alerts/{}/ack", alert["id"].as_str().unwrap());
    let res = app
        .request_as(reqwest::Method::POST, &coord, &ack)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let d: serde_json::Value = app.get_json_as(&coord, "/api/dashboard").await;
    assert_eq!(d["alerts"][0]["acknowledged_by"], "Op coord");

    // An operator may not read the coordinator view.
    let res = app.get_as(&op.cookie, "/api/dashboard").await;
    assert_eq!(res.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn an_idle_conversation_ends_after_the_idle_limit() {
    // On a manual clock: the limit passes when the test moves time on.
    let clock = tsunagu::clock::Clock::manual(tsunagu::clock::now_ms());
    let app = spawn_app_with_clock(clock.clone(), |s| s.conversation.idle_limit_ms = 300).await;
    let mut op = app.operator("sakura", 2, false).await;
    let mut v = app.visitor("ja").await;
    let c = op.take().await;
    clock.advance(300);
    let ended = v.client.expect("idle end", |e| is_event(e, "ended")).await;
    assert_eq!(ended["event"]["reason"], "idle");
    let s = op
        .client
        .expect("wrap-up", |e| {
            e["type"] == "conversation" && e["conversation"]["state"] == "wrap_up"
        })
        .await;
    assert_eq!(s["conversation"]["id"], c.as_str());
    app.stop().await;
}

#[tokio::test]
async fn a_conversation_ends_at_the_maximum_length_even_while_people_write() {
    // On a manual clock: the length is reached when the test moves time on, just after the
    // person wrote.
    let clock = tsunagu::clock::Clock::manual(tsunagu::clock::now_ms());
    let app = spawn_app_with_clock(clock.clone(), |s| s.conversation.max_duration_ms = 400).await;
    let mut op = app.operator("sakura", 2, false).await;
    let mut v = app.visitor("ja").await;
    op.take().await;
    clock.advance(399);
    v.say("まだ話したい").await;
    clock.advance(1);
    let ended = v.client.expect("max end", |e| is_event(e, "ended")).await;
    assert_eq!(ended["event"]["reason"], "max_duration");
    app.stop().await;
}

#[tokio::test]
async fn a_wrap_up_left_open_closes_by_itself() {
    // On a manual clock: the wrap-up time passes when the test moves time on.
    let clock = tsunagu::clock::Clock::manual(tsunagu::clock::now_ms());
    let app = spawn_app_with_clock(clock.clone(), |s| s.conversation.wrap_up_ms = 300).await;
    let mut op = app.operator("sakura", 2, false).await;
    let _v = app.visitor("ja").await;
    let c = op.take().await;
    op.act("end", &c, json!({})).await;
    clock.advance(300);
    let removed = op.client.expect_type("removed").await;
    assert_eq!(removed["reason"], "closed");
    assert!(app.all_deleted().await);
    app.stop().await;
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_going_away() {
    let app = spawn_app().await;
    let mut op = app.operator("sakura", 2, true).await;
    let mut v = app.visitor("ja").await;
    app.state.shutdown.cancel();
    assert_eq!(v.client.expect_close().await, Some(1001));
    assert_eq!(op.client.expect_close().await, Some(1001));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), app.task).await;
}

#[tokio::test]
async fn an_operators_welcome_carries_the_same_limits_as_a_visitors() {
    let app = spawn_app().await;
    let (_uid, cookie) = app
        .session("sakura", tsunagu::auth::Role::Operator, Some(2))
        .await;
    let mut op = app
        .connect("/ws/operator", Some(&app.base), Some(&cookie))
        .await
        .unwrap();
    op.send(json!({"type":"hello","v":1,"id":id()})).await;
    let operator_welcome = op.expect_type("welcome").await;
    let mut visitor = app.raw_visitor().await;
    visitor
        .send(json!({"type":"hello","v":1,"id":id(),"start":{"lang":"ja"}}))
        .await;
    let visitor_welcome = visitor.expect_type("welcome").await;
    let limits = json!({"max_text":4000,"max_frame":16384,"max_note":500});
    assert_eq!(visitor_welcome["limits"], limits);
    assert_eq!(operator_welcome["limits"], limits);
    app.stop().await;
}
