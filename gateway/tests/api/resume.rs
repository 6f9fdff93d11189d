//! Nothing lost, nothing twice, in order: across cuts, reconnects and retries.

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

#[tokio::test]
async fn a_visitor_cut_in_the_middle_of_a_stream_resumes_with_nothing_lost_or_duplicated() {
    let app = spawn_app().await;
    let mut op = app.operator("sakura", 2, false).await;
    let mut v = app.visitor("ja").await;
    let c = op.take().await;
    // seq 1 is operator_joined; then 60 messages.
    let sender = tokio::spawn(async move {
        for i in 0..60 {
            op.say(&c, &format!("message {i}")).await;
        }
        op
    });
    let mut seen = Vec::new();
    while seen.len() < 20 {
        let e = v.client.next().await.expect("stream continues");
        if e["type"] == "event" {
            seen.push(e["seq"].as_u64().unwrap());
        }
    }
    let last = *seen.last().unwrap();
    v.client
        .send(json!({"type":"ack","id":id(),"seq":last}))
        .await;
    let token = v.token.clone();
    v.client.cut();
    let _op = sender.await.unwrap();

    let (mut back, w) = app.resume(&token, Some(last)).await;
    assert_eq!(w["resumed"], true);
    assert_eq!(w["last_seq"], 61);
    while *seen.last().unwrap() < 61 {
        let e = back.next().await.expect("replay continues");
        if e["type"] == "event" {
            seen.push(e["seq"].as_u64().unwrap());
        }
    }
    let expected: Vec<u64> = (1..=61).collect();
    assert_eq!(seen, expected, "every entry exactly once, in order");
    app.stop().await;
}

#[tokio::test]
async fn without_a_last_seq_the_replay_starts_after_the_last_acknowledged_entry() {
    let app = spawn_app().await;
    let mut op = app.operator("sakura", 2, false).await;
    let mut v = app.visitor("ja").await;
    let c = op.take().await;
    op.say(&c, "one").await;
    v.client.expect("seq 2", |e| e["seq"] == 2).await;
    v.client.send(json!({"type":"ack","id":id(),"seq":2})).await;
    // Let the ack land before the cut.
    v.client.send(json!({"type":"ping","id":id()})).await;
    v.client.expect_type("pong").await;
    let token = v.token.clone();
    v.client.cut();
    op.say(&c, "two").await;
    let (mut back, _) = app.resume(&token, None).await;
    let first = back
        .expect("first replayed event", |e| e["type"] == "event")
        .await;
    assert_eq!(first["seq"], 3);
    assert_eq!(first["event"]["text"], "two");
    app.stop().await;
}

#[tokio::test]
async fn a_retried_send_with_the_same_client_id_is_stored_once() {
    let app = spawn_app().await;
    let mut op = app.operator("sakura", 2, false).await;
    let mut v = app.visitor("ja").await;
    let c = op.take().await;
    let cid = id();
    let frame = json!({"type":"send","id":cid,"text":"once only"});
    v.client.send(frame.clone()).await;
    let token = v.token.clone();
    // The connection drops before the ack is read; the widget retries on a new socket.
    v.client.cut();
    let (mut back, _) = app.resume(&token, Some(0)).await;
    back.send(frame).await;
    let c2 = cid.clone();
    let ack = back
        .expect("ack of the retry", move |e| {
            e["type"] == "ack" && e["id"] == c2
        })
        .await;
    assert_eq!(ack["seq"], 2);
    let id: ulid::Ulid = c.parse().unwrap();
    let log = app.state.engine.log_of(id).await.unwrap();
    let copies = log
        .iter()
        .filter(|e| matches!(&e.event, tsunagu::protocol::EventBody::Message { text, .. } if text == "once only"))
        .count();
    assert_eq!(copies, 1);
    let m = op
        .client
        .expect("the message", |e| is_event(e, "message"))
        .await;
    assert_eq!(m["seq"], 2);
    app.stop().await;
}

#[tokio::test]
async fn a_reload_resumes_the_same_conversation_with_the_whole_transcript() {
    let app = spawn_app().await;
    let mut op = app.operator("sakura", 2, false).await;
    let mut v = app.visitor("ja").await;
    let c = op.take().await;
    v.say("first").await;
    op.say(&c, "second").await;
    let token = v.token.clone();
    v.client.close().await;
    let (mut back, w) = app.resume(&token, Some(0)).await;
    assert_eq!(w["conversation"], c.as_str());
    assert_eq!(w["state"], "active");
    for seq in 1..=3 {
        let e = back.expect("replayed", |e| e["type"] == "event").await;
        assert_eq!(e["seq"], seq);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_second_socket_for_the_same_conversation_supersedes_the_first() {
    let app = spawn_app().await;
    let mut v = app.visitor("ja").await;
    let (_second, _) = app.resume(&v.token, Some(0)).await;
    assert_eq!(v.client.expect_close().await, Some(4009));
    app.stop().await;
}

#[tokio::test]
async fn a_visitor_answering_the_shared_heartbeat_stays_connected_and_is_pinged_every_beat() {
    let app = spawn_app_with(|s| s.server.heartbeat_ms = 120).await;
    let mut v = app.visitor("ja").await;
    // Keep reading (tungstenite answers each ping with a pong while polled) for ten beats.
    let mut pings = 0;
    let until = tokio::time::Instant::now() + std::time::Duration::from_millis(1200);
    while let Ok(frame) = tokio::time::timeout_at(until, v.client.ws.next()).await {
        match frame {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Close(f))) => panic!("closed while answering pings: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("socket failed: {e}"),
            None => panic!("socket ended while answering pings"),
        }
    }
    assert!(
        (6..=12).contains(&pings),
        "one ping per 120 ms beat over 1.2 s, got {pings}"
    );
    // Still open: a ping from the client is answered.
    v.client.send(json!({"type": "ping", "id": id()})).await;
    v.client.expect_type("pong").await;
    app.stop().await;
}

#[tokio::test]
async fn a_silent_socket_is_closed_by_the_heartbeat() {
    let app = spawn_app_with(|s| s.server.heartbeat_ms = 150).await;
    let mut v = app.visitor("ja").await;
    // tungstenite answers pings automatically only while it is polled; stop polling.
    let started = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    assert_eq!(
        v.client.expect_close().await,
        Some(4008),
        "closed for silence, with the heartbeat's code"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    app.stop().await;
}
