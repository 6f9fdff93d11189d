//! Bad input gets a clear error, and nothing stored is lost or corrupted.

use futures_util::SinkExt;
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

#[tokio::test]
async fn malformed_unknown_and_invalid_frames_get_clear_errors_and_change_nothing() {
    let app = spawn_app().await;
    let mut v = app.visitor("ja").await;
    let before = app.conversations().await;

    v.client.send_raw(Message::text("{this is not json")).await;
    assert_eq!(v.client.expect_type("error").await["code"], "bad_json");

    v.client.send_raw(Message::text("[1,2,3]")).await;
    assert_eq!(v.client.expect_type("error").await["code"], "bad_json");

    let cid = id();
    v.client.send(json!({"type":"dance","id":cid})).await;
    let e = v.client.expect_type("error").await;
    assert_eq!(e["code"], "unknown_type");
    assert_eq!(
        e["id"],
        cid.as_str(),
        "the error names the frame it answers"
    );

    v.client.send(json!({"type":"take_next","id":id()})).await;
    assert_eq!(v.client.expect_type("error").await["code"], "unknown_type");

    v.client
        .send(json!({"type":"send","id":"not-a-ulid","text":"x"}))
        .await;
    assert_eq!(v.client.expect_type("error").await["code"], "invalid");

    v.client
        .send(json!({"type":"send","id":id(),"text":"   "}))
        .await;
    assert_eq!(v.client.expect_type("error").await["code"], "invalid");

    v.client
        .send(json!({"type":"send","id":id(),"text":"あ".repeat(4001)}))
        .await;
    assert_eq!(v.client.expect_type("error").await["code"], "text_too_long");

    v.client.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    assert_eq!(v.client.expect_type("error").await["code"], "bad_frame");

    v.client
        .send(json!({"type":"hello","v":1,"id":id(),"start":{}}))
        .await;
    assert_eq!(v.client.expect_type("error").await["code"], "out_of_order");

    assert_eq!(app.conversations().await, before);
    // And the socket still works.
    v.client.send(json!({"type":"ping","id":id()})).await;
    v.client.expect_type("pong").await;
    app.stop().await;
}

#[tokio::test]
async fn a_frame_over_the_limit_closes_the_socket_with_1009() {
    let app = spawn_app().await;
    let mut v = app.visitor("ja").await;
    let huge = format!(
        r#"{{"type":"send","id":"{}","text":"{}"}}"#,
        id(),
        "x".repeat(20_000)
    );
    v.client.send_raw(Message::text(huge)).await;
    let code = v.client.expect_close().await;
    assert!(
        code == Some(1009) || code.is_none(),
        "refused as too big: {code:?}"
    );
    // The conversation is intact and resumable.
    let (_c, w) = app.resume(&v.token, Some(0)).await;
    assert_eq!(w["resumed"], true);
    app.stop().await;
}

#[tokio::test]
async fn anything_before_hello_is_out_of_order() {
    let app = spawn_app().await;
    let mut c = app.raw_visitor().await;
    c.send(json!({"type":"send","id":id(),"text":"hi"})).await;
    assert_eq!(c.expect_type("error").await["code"], "out_of_order");
    assert!(app.all_deleted().await);
    app.stop().await;
}

#[tokio::test]
async fn an_unsupported_protocol_version_is_refused_with_4002_answering_the_hellos_id() {
    let app = spawn_app().await;
    let mut c = app.raw_visitor().await;
    let hello = id();
    c.send(json!({"type":"hello","v":2,"id":hello,"start":{}}))
        .await;
    let e = c.expect_type("error").await;
    assert_eq!(e["code"], "unsupported_version");
    assert_eq!(e["id"], hello.as_str(), "the error answers the hello");
    assert_eq!(c.expect_close().await, Some(4002));
    // The operator endpoint answers the same way.
    let (_, cookie) = app
        .session("sakura", tsunagu::auth::Role::Operator, Some(2))
        .await;
    let mut console = app
        .connect("/ws/operator", Some(&app.base), Some(&cookie))
        .await
        .unwrap();
    let hello = id();
    console.send(json!({"type":"hello","v":2,"id":hello})).await;
    let e = console.expect_type("error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_str()),
        (Some("unsupported_version"), Some(hello.as_str()))
    );
    assert_eq!(console.expect_close().await, Some(4002));
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_resume_token_is_refused_with_4004_answering_the_hellos_id() {
    let app = spawn_app().await;
    let mut c = app.raw_visitor().await;
    let hello = id();
    c.send(json!({"type":"hello","v":1,"id":hello,"resume":{"token":"forged","last_seq":0}}))
        .await;
    let e = c.expect_type("error").await;
    assert_eq!(e["code"], "not_found");
    assert_eq!(e["id"], hello.as_str(), "the error answers the hello");
    assert_eq!(c.expect_close().await, Some(4004));
    app.stop().await;
}

#[tokio::test]
async fn too_many_errors_close_the_socket_with_1008() {
    let app = spawn_app().await;
    let mut v = app.visitor("ja").await;
    for _ in 0..60 {
        if v.client.ws.send(Message::text("nope")).await.is_err() {
            break;
        }
    }
    assert_eq!(v.client.expect_close().await, Some(1008));
    app.stop().await;
}

#[tokio::test]
async fn operators_cannot_act_on_conversations_that_are_not_theirs() {
    let app = spawn_app().await;
    let mut a = app.operator("sakura", 2, false).await;
    let mut b = app.operator("kai", 2, false).await;
    let _v = app.visitor("ja").await;
    let c = a.take().await;
    for (ty, extra) in [
        ("send", json!({"text":"hijack"})),
        ("end", json!({})),
        ("accept", json!({})),
        ("transfer", json!({"to": null})),
        ("help", json!({})),
    ] {
        let r = b.act(ty, &c, extra).await;
        assert_eq!(r["type"], "error", "{ty} by a stranger: {r}");
    }
    let r = b
        .act("send", &ulid::Ulid::new().to_string(), json!({"text":"x"}))
        .await;
    assert_eq!(r["code"], "not_found");
    let r = a.act("wrap_up", &c, json!({"category":"other"})).await;
    assert_eq!(r["code"], "out_of_order", "wrap-up before end");
    app.stop().await;
}

#[tokio::test]
async fn an_operator_socket_without_a_session_is_closed_with_4001() {
    let app = spawn_app().await;
    let mut c = app
        .connect("/ws/operator", Some(&app.base), None)
        .await
        .unwrap();
    assert_eq!(c.expect_close().await, Some(4001));
    let mut c = app
        .connect(
            "/ws/operator",
            Some(&app.base),
            Some("tsunagu_session=forged"),
        )
        .await
        .unwrap();
    assert_eq!(c.expect_close().await, Some(4001));
    app.stop().await;
}

#[tokio::test]
async fn a_websocket_from_an_origin_not_allowed_is_refused_before_upgrade() {
    let app =
        spawn_app_with(|s| s.server.allowed_origins = vec!["https://npo.example".into()]).await;
    for path in ["/ws/visitor", "/ws/operator"] {
        assert_eq!(
            app.connect(path, Some("https://evil.example"), None)
                .await
                .err(),
            Some(403)
        );
        assert_eq!(
            app.connect(path, Some("https://npo.example.evil.example"), None)
                .await
                .err(),
            Some(403)
        );
        assert_eq!(app.connect(path, None, None).await.err(), Some(403));
    }
    assert!(app
        .connect("/ws/visitor", Some("https://npo.example"), None)
        .await
        .is_ok());
    app.stop().await;
}

#[tokio::test]
async fn a_revoked_session_closes_the_operator_socket() {
    let app = spawn_app_with(|s| s.server.heartbeat_ms = 200).await;
    let mut op = app.operator("sakura", 2, false).await;
    let token = op.cookie.trim_start_matches("tsunagu_session=").to_owned();
    app.state.accounts.revoke(&token).await;
    assert_eq!(op.client.expect_close().await, Some(4010));
    app.stop().await;
}

/// A websocket handshake and frames written by hand over TCP, for what no client library sends.
async fn raw_websocket(app: &TestApp, path: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = app.base.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    tcp
}

#[tokio::test]
async fn an_unmasked_frame_or_text_that_is_not_utf8_closes_the_socket_with_1002_or_1007() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let masked_bad_utf8 = {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![0x81, 0x82];
        f.extend_from_slice(&mask);
        f.extend([0xe3 ^ mask[0], 0x81 ^ mask[1]]);
        f
    };
    for (frame, code) in [
        (vec![0x81, 0x02, b'h', b'i'], 1002u16),
        (masked_bad_utf8, 1007),
    ] {
        let mut tcp = raw_websocket(&app, "/ws/visitor").await;
        tcp.write_all(&frame).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got))
            .await
            .expect("the gateway closes the connection")
            .unwrap();
        assert_eq!(got[0], 0x88, "a Close frame: {got:?}");
        assert_eq!(u16::from_be_bytes([got[2], got[3]]), code);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_request_that_is_not_a_websocket_handshake_is_refused_with_400_or_426() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    let url = format!("{}/ws/visitor", app.base);
    let host = app.base.trim_start_matches("http://").to_owned();
    let plain = http
        .get(&url)
        .header("origin", format!("http://{host}"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    let old = http
        .get(&url)
        .header("origin", format!("http://{host}"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "8")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 426);
    assert_eq!(old.headers()["sec-websocket-version"], "13");
    app.stop().await;
}

#[tokio::test]
async fn an_out_of_range_client_id_is_refused_and_loses_no_later_message() {
    let app = spawn_app().await;
    let mut v = app.visitor("ja").await;
    // `P…` is past the 128 bits of a ULID: it used to be kept as `61M95…`, and the next message
    // whose real id was `61M95…` was then dropped as a retry of it.
    v.client
        .send(json!({"type":"send","id":"P1M95GDJGJ6FNKM0YF7E9F6FGW","text":"一つ目"}))
        .await;
    let e = v.client.expect_type("error").await;
    assert_eq!(e["code"], "invalid");
    v.client
        .send(json!({"type":"send","id":"61M95GDJGJ6FNKM0YF7E9F6FGW","text":"二つ目"}))
        .await;
    let ack = v.client.expect_type("ack").await;
    assert_eq!(ack["id"], "61M95GDJGJ6FNKM0YF7E9F6FGW");
    let entry = v
        .client
        .expect("the second message in the log", |f| is_event(f, "message"))
        .await;
    assert_eq!(entry["event"]["text"], "二つ目");
    assert_eq!(entry["seq"], ack["seq"]);
    app.stop().await;
}

#[tokio::test]
async fn a_lowercase_client_id_is_echoed_exactly_as_sent() {
    let app = spawn_app().await;
    let mut v = app.visitor("ja").await;
    let sent = id().to_lowercase();
    v.client
        .send(json!({"type":"send","id":sent,"text":"こんにちは"}))
        .await;
    let ack = v.client.expect_type("ack").await;
    assert_eq!(ack["id"], sent.as_str(), "the ack answers the id as sent");
    let entry = v
        .client
        .expect("the message in the log", |f| is_event(f, "message"))
        .await;
    assert_eq!(entry["event"]["id"], sent.as_str(), "so does the log entry");
    // The same id in upper case is the same id: a retry, answered with the first seq.
    v.client
        .send(json!({"type":"send","id":sent.to_uppercase(),"text":"こんにちは"}))
        .await;
    let again = v.client.expect_type("ack").await;
    assert_eq!(again["seq"], ack["seq"]);
    assert_eq!(again["id"], sent.to_uppercase().as_str());
    app.stop().await;
}
