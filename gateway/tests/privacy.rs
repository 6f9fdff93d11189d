//! Privacy: a canary phrase written in a conversation is found nowhere after it closes: not in
//! any log line (at trace level), not in the store, not in any file the gateway wrote.
//! Its own test binary, because it installs the process-wide log subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tsunagu::auth::Role;
use tsunagu::config::Settings;
use tsunagu::Application;
use ulid::Ulid;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(base: &str, path: &str, cookie: Option<&str>) -> Ws {
    let mut req = format!("{}{}", base.replace("http", "ws"), path)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("origin", base.parse().unwrap());
    if let Some(c) = cookie {
        req.headers_mut().insert("cookie", c.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

async fn until(ws: &mut Ws, pred: impl Fn(&Value) -> bool) -> Value {
    loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
            .await
            .expect("frame in time")
            .expect("socket open")
            .expect("frame ok");
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if pred(&v) {
                return v;
            }
        }
    }
}

fn id() -> String {
    Ulid::new().to_string()
}

/// The process-wide log capture, at trace level (installed once for both tests).
fn logs() -> Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let sink = logs.clone();
        tsunagu::telemetry::init("trace", false, move || sink.clone());
        logs
    })
    .clone()
}

#[tokio::test]
async fn a_canary_phrase_is_found_nowhere_after_the_conversation_closes() {
    canary_found_nowhere_after_close(None).await;
}

/// A redis-server of this test's own, on a free port, without persistence; stopped on drop.
struct RedisServer {
    port: u16,
    child: std::process::Child,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        RedisServer { port, child }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every key under `prefix` with everything it holds, read by type (not `DUMP`, whose
/// compression could hide a phrase).
async fn redis_contents(port: u16, prefix: &str) -> Vec<(String, String)> {
    use redis::AsyncCommands;
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys = Vec::new();
    {
        let mut iter: redis::AsyncIter<String> = c.scan_match(format!("{prefix}:*")).await.unwrap();
        while let Some(k) = iter.next_item().await {
            keys.push(k.unwrap());
        }
    }
    let mut out = Vec::new();
    for k in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&k)
            .query_async(&mut c)
            .await
            .unwrap();
        let content = match kind.as_str() {
            "string" => c.get::<_, String>(&k).await.unwrap_or_default(),
            "hash" => format!(
                "{:?}",
                c.hgetall::<_, Vec<(String, String)>>(&k).await.unwrap()
            ),
            "set" => format!("{:?}", c.smembers::<_, Vec<String>>(&k).await.unwrap()),
            "stream" => format!(
                "{:?}",
                redis::cmd("XRANGE")
                    .arg(&k)
                    .arg("-")
                    .arg("+")
                    .query_async::<redis::Value>(&mut c)
                    .await
                    .unwrap()
            ),
            other => format!("(a {other})"),
        };
        out.push((k, content));
    }
    out
}

#[tokio::test]
async fn with_redis_a_canary_phrase_is_found_nowhere_after_the_conversation_closes() {
    let redis = RedisServer::start();
    canary_found_nowhere_after_close(Some(redis.port)).await;
}

async fn canary_found_nowhere_after_close(redis_port: Option<u16>) {
    let logs = logs();

    let dir = std::env::temp_dir().join(format!("tsunagu-privacy-{}", Ulid::new()));
    let mut settings = Settings::for_tests();
    settings.auth.users_file = dir.join("users.json").display().to_string();
    let prefix = format!("privacy{}", Ulid::new());
    if let Some(port) = redis_port {
        settings.store.url = Some(format!("redis://127.0.0.1:{port}/"));
        settings.store.key_prefix = prefix.clone();
    }
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let server = tokio::spawn(app.run_until_stopped());

    state
        .accounts
        .add_user("sakura", "Sakura", Role::Operator, "long enough password")
        .unwrap();
    let (_, token) = state
        .accounts
        .login("sakura", "long enough password")
        .await
        .unwrap();
    let cookie = format!("tsunagu_session={token}");

    let canary_visitor = format!("canary-visitor-{}", Ulid::new());
    let canary_operator = format!("canary-operator-{}", Ulid::new());
    let canary_note = format!("canary-note-{}", Ulid::new());

    let mut op = connect(&base, "/ws/operator", Some(&cookie)).await;
    send(&mut op, json!({"type":"hello","v":1,"id":id()})).await;
    until(&mut op, |v| v["type"] == "welcome").await;

    let mut visitor = connect(&base, "/ws/visitor", None).await;
    send(
        &mut visitor,
        json!({"type":"hello","v":1,"id":id(),"start":{"lang":"ja"}}),
    )
    .await;
    let welcome = until(&mut visitor, |v| v["type"] == "welcome").await;
    let conversation = welcome["conversation"].as_str().unwrap().to_owned();
    // A channel identifier as a connector would hold it (here a caller's number).
    let fake_number = format!("+8190{}", &Ulid::new().0.to_string()[..8]);
    let conv_ulid: Ulid = conversation.parse().unwrap();
    state
        .engine
        .set_channel_ref(conv_ulid, format!("voice:CAfake:{fake_number}"));

    send(&mut op, json!({"type":"take_next","id":id()})).await;
    until(&mut op, |v| v["type"] == "conversation").await;
    send(
        &mut visitor,
        json!({"type":"send","id":id(),"text":canary_visitor}),
    )
    .await;
    until(&mut op, |v| {
        v["type"] == "event" && v["event"]["text"] == canary_visitor.as_str()
    })
    .await;
    send(
        &mut op,
        json!({"type":"send","id":id(),"conversation":conversation,"text":canary_operator}),
    )
    .await;
    until(&mut visitor, |v| {
        v["type"] == "event" && v["event"]["text"] == canary_operator.as_str()
    })
    .await;
    // An over-long message containing the canary, and a malformed frame containing it.
    send(
        &mut visitor,
        json!({"type":"send","id":id(),"text":format!("{canary_visitor}{}", "x".repeat(4001))}),
    )
    .await;
    until(&mut visitor, |v| v["type"] == "error").await;
    visitor
        .send(Message::text(format!("{{not json {canary_visitor}")))
        .await
        .unwrap();
    until(&mut visitor, |v| v["type"] == "error").await;
    // A handover note back to the queue, then another take.
    send(&mut op, json!({"type":"transfer","id":id(),"conversation":conversation,"to":null,"note":canary_note})).await;
    until(&mut op, |v| v["type"] == "removed").await;
    send(&mut op, json!({"type":"take_next","id":id()})).await;
    until(&mut op, |v| v["type"] == "conversation").await;

    send(
        &mut op,
        json!({"type":"end","id":id(),"conversation":conversation}),
    )
    .await;
    until(&mut visitor, |v| {
        v["type"] == "event" && v["event"]["kind"] == "ended"
    })
    .await;
    send(
        &mut op,
        json!({"type":"wrap_up","id":id(),"conversation":conversation,"category":"other"}),
    )
    .await;
    until(&mut op, |v| v["type"] == "removed").await;

    // Nothing in the store, and the channel identifier is gone from memory.
    assert!(state.engine.store.conversations().await.unwrap().is_empty());
    assert_eq!(state.engine.channel_ref(conv_ulid), None);
    let conv_id: Ulid = conversation.parse().unwrap();
    assert!(state
        .engine
        .store
        .read_log(conv_id, 0)
        .await
        .unwrap()
        .is_empty());
    state.shutdown.cancel();
    let _ = server.await;

    // Nothing in Redis: no key of the conversation, no value holding a canary.
    if let Some(port) = redis_port {
        let contents = redis_contents(port, &prefix).await;
        assert!(!contents.is_empty(), "the gateway did use this Redis");
        for (key, content) in &contents {
            assert!(
                !key.contains(&conversation),
                "{key} is left of the conversation"
            );
            for canary in [
                &canary_visitor,
                &canary_operator,
                &canary_note,
                &fake_number,
            ] {
                assert!(!content.contains(canary.as_str()), "{key} holds {canary}");
            }
        }
    }

    // Nothing in the logs, at trace level; the logs did record the conversation by id.
    // (Both tests share the capture; each checks its own canaries.)
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains(&conversation),
        "logs carry the conversation id"
    );
    for canary in [
        &canary_visitor,
        &canary_operator,
        &canary_note,
        &fake_number,
    ] {
        assert!(
            !text.contains(canary.as_str()),
            "canary {canary} found in logs"
        );
    }
    if let Some(line) = text.lines().find(|l| l.contains("127.0.0.1:")) {
        panic!("client address in logs: {line}");
    }
    // Nothing in any file the gateway wrote.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let content = String::from_utf8_lossy(&bytes);
        for canary in [
            &canary_visitor,
            &canary_operator,
            &canary_note,
            &fake_number,
        ] {
            assert!(!content.contains(canary.as_str()));
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn in_a_flagged_conversation_the_canary_is_only_inside_the_encrypted_record() {
    let logs = logs();
    let dir = std::env::temp_dir().join(format!("tsunagu-privacy-flag-{}", Ulid::new()));
    let mut settings = Settings::for_tests();
    settings.auth.users_file = dir.join("users.json").display().to_string();
    settings.escalation.key = Some("7f".repeat(32).into());
    settings.escalation.dir = dir.join("escalations").display().to_string();
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let server = tokio::spawn(app.run_until_stopped());
    state
        .accounts
        .add_user("sakura", "Sakura", Role::Operator, "long enough password")
        .unwrap();
    let (_, token) = state
        .accounts
        .login("sakura", "long enough password")
        .await
        .unwrap();
    let cookie = format!("tsunagu_session={token}");
    let canary = format!("canary-flagged-{}", Ulid::new());
    let reason = format!("canary-reason-{}", Ulid::new());

    let mut op = connect(&base, "/ws/operator", Some(&cookie)).await;
    send(&mut op, json!({"type":"hello","v":1,"id":id()})).await;
    until(&mut op, |v| v["type"] == "welcome").await;
    let mut visitor = connect(&base, "/ws/visitor", None).await;
    send(
        &mut visitor,
        json!({"type":"hello","v":1,"id":id(),"start":{"lang":"ja"}}),
    )
    .await;
    let conversation = until(&mut visitor, |v| v["type"] == "welcome").await["conversation"]
        .as_str()
        .unwrap()
        .to_owned();
    // The LINE user id a connector would hold as the route back.
    let fake_line_id = format!("U{}", Ulid::new().to_string().to_lowercase());
    let conv_ulid: Ulid = conversation.parse().unwrap();
    state
        .engine
        .set_channel_ref(conv_ulid, format!("line:npo1:{fake_line_id}"));
    send(&mut op, json!({"type":"take_next","id":id()})).await;
    until(&mut op, |v| v["type"] == "conversation").await;
    send(&mut visitor, json!({"type":"send","id":id(),"text":canary})).await;
    until(&mut op, |v| {
        v["type"] == "event" && v["event"]["text"] == canary.as_str()
    })
    .await;
    send(&mut op, json!({"type":"flag","id":id(),"conversation":conversation,"category":"self_harm","reason":reason})).await;
    until(&mut op, |v| {
        v["type"] == "conversation" && v["conversation"]["emergency"]["open"] == true
    })
    .await;
    send(
        &mut op,
        json!({"type":"end","id":id(),"conversation":conversation}),
    )
    .await;
    send(
        &mut op,
        json!({"type":"wrap_up","id":id(),"conversation":conversation,"category":"other"}),
    )
    .await;
    until(&mut op, |v| v["type"] == "removed").await;

    // Inside the record (decrypted by a coordinator's read) …
    let esc = state.engine.escalations.clone().unwrap();
    let list = esc.list(&tsunagu::escalation::Actor::system()).unwrap();
    let record = esc
        .read(list[0].id, &tsunagu::escalation::Actor::system())
        .unwrap();
    assert!(record.transcript.iter().any(|t| t.text == canary));
    assert!(record.flags.iter().any(|f| f.reason == reason));
    assert!(
        record
            .channel_ref
            .as_deref()
            .is_some_and(|r| r.ends_with(&fake_line_id)),
        "the route back to the person is kept in the record"
    );
    assert_eq!(state.engine.channel_ref(conv_ulid), None, "and only there");
    // … and nowhere else: not the store, not the logs, not in plaintext in any file.
    assert!(state.engine.store.conversations().await.unwrap().is_empty());
    state.shutdown.cancel();
    let _ = server.await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(!text.contains(&canary), "canary in logs");
    assert!(!text.contains(&reason), "flag reason in logs");
    assert!(!text.contains(&fake_line_id), "LINE user id in logs");
    let mut files = 0;
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            files += 1;
            let content = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            assert!(
                !content.contains(&canary),
                "canary in plaintext in {}",
                path.display()
            );
            assert!(
                !content.contains(&reason),
                "reason in plaintext in {}",
                path.display()
            );
            assert!(
                !content.contains(&fake_line_id),
                "LINE user id in plaintext in {}",
                path.display()
            );
        }
    }
    assert!(files >= 2, "the record and the audit trail were written");
    std::fs::remove_dir_all(dir).unwrap();
}
