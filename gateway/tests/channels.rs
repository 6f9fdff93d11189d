//! Every channel in one queue: the real gateway with both a LINE channel (fake Messaging API,
//! webhooks signed by LINE's official Python SDK) and the phone connector (fake provider,
//! webhooks signed by Twilio's official Python library), plus the widget's websocket.
//!
//! Its own test binary: it reuses the LINE and phone harnesses, each of which sets up
//! process-wide parts (log capture, environment variables, a Python helper).

#[path = "support/captured.rs"]
mod captured;
#[allow(dead_code)]
#[path = "line/fake_api.rs"]
mod fake_api;
#[allow(dead_code)]
#[path = "voice/fake_provider.rs"]
mod fake_provider;
#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "line/harness.rs"]
mod line_harness;
#[path = "support/python.rs"]
mod python;
#[allow(dead_code)]
#[path = "voice/harness.rs"]
mod voice_harness;

use std::time::Duration;

use tsunagu::auth::Role;

/// An operator on duty whose calls ring at a phone number.
async fn phone_operator(app: &helpers::TestApp, name: &str) -> helpers::Operator {
    let (uid, cookie) = app.session(name, Role::Operator, Some(2)).await;
    app.state
        .accounts
        .set_phone(uid.parse().unwrap(), Some(voice_harness::operator_phone()))
        .await
        .unwrap();
    app.operator_with(name, &uid, &cookie, serde_json::json!({}), true)
        .await
}

/// The operator takes the next person; returns the conversation's channel and id.
async fn take_next(op: &mut helpers::Operator) -> (String, String) {
    let reply = op.take_next().await;
    assert_eq!(reply["type"], "ack", "take_next: {reply}");
    let c = op.client.expect_type("conversation").await;
    (
        c["conversation"]["channel"].as_str().unwrap().to_owned(),
        c["conversation"]["id"].as_str().unwrap().to_owned(),
    )
}

async fn queued(app: &helpers::TestApp) -> usize {
    app.state.engine.queue().await.unwrap().len()
}

#[tokio::test]
async fn a_caller_a_line_user_and_a_widget_visitor_wait_in_one_queue_in_arrival_order() {
    let line_globals = line_harness::globals();
    let voice_globals = voice_harness::globals();
    // Start both Python helpers before any socket is open.
    line_harness::sdk_sign("warm-up", &line_harness::body(&[])).await;
    voice_harness::parse_twiml("<Response/>").await;

    let chan = line_globals.chans.iter().find(|c| c.id == "npo1").unwrap();
    let fake_line = fake_api::FakeLine::start(&[chan.token.as_str()]).await;
    let fake_voice =
        fake_provider::FakeProvider::start(&voice_globals.account, &voice_globals.token).await;
    let mut s = voice_harness::settings(&fake_voice);
    s.line = line_harness::settings(&fake_line, &[chan]).line;
    let app = helpers::spawn_app_with(move |target| *target = s).await;
    let http = reqwest::Client::new();
    // Operators whose phone can take a call: a call takes one's whole capacity, so each takes
    // one person.
    let mut ops = Vec::new();
    for name in ["mixed-op1", "mixed-op2", "mixed-op3"] {
        ops.push(phone_operator(&app, name).await);
    }

    // 1. A call comes in.
    let caller = voice_harness::new_caller();
    let url = format!("{}/connectors/voice/incoming", app.base);
    let params = voice_harness::incoming_params(&caller);
    let sig = voice_harness::twilio_sign(&voice_globals.token, &url, &params).await;
    let res = http
        .post(&url)
        .form(&params)
        .header("x-twilio-signature", sig)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let doc = voice_harness::parse_twiml(&res.text().await.unwrap()).await;
    assert_eq!(
        voice_harness::verbs(&doc).last().map(String::as_str),
        Some("Redirect"),
        "the caller is on hold"
    );
    assert_eq!(queued(&app).await, 1);
    tokio::time::sleep(Duration::from_millis(5)).await;

    // 2. A LINE user writes (a signed text message webhook).
    let user = line_harness::new_user();
    let (ev, _) = line_harness::text(
        &user,
        &line_harness::canary("mixed"),
        Some(&line_harness::reply_token()),
        None,
    );
    let body = line_harness::body(&[ev]);
    let (sig, _) = line_harness::sdk_sign(&chan.secret, &body).await;
    let res = http
        .post(format!("{}/connectors/line/webhook/npo1", app.base))
        .header("content-type", "application/json")
        .header("x-line-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while queued(&app).await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the LINE conversation never joined the queue"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;

    // 3. A widget visitor says hello.
    let visitor = app.visitor("ja").await;
    assert_eq!(queued(&app).await, 3);

    // Served in arrival order, whatever the channel.
    let mut got = Vec::new();
    for op in &mut ops {
        got.push(take_next(op).await);
    }
    let channels: Vec<&str> = got.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(channels, ["phone", "line", "web"]);
    assert_eq!(got[2].1, visitor.conversation);
    assert_eq!(queued(&app).await, 0);

    // The call is bridged to the first operator's phone.
    fake_voice
        .wait_for("the call bridged", |f| !f.applied(&caller.sid).is_empty())
        .await;
    assert!(
        fake_voice.problems().is_empty(),
        "{:?}",
        fake_voice.problems()
    );
    assert!(
        fake_line.problems().is_empty(),
        "{:?}",
        fake_line.problems()
    );
    app.state.shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), app.task).await;
}
