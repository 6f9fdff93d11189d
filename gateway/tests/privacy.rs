//! Privacy: a canary phrase written in a conversation is found nowhere after it closes: not in
//! any log line (at trace level), not in the store, not in any file the gateway wrote, and not
//! in anything the real `gateway` binary writes to stdout or stderr (logs or not).
//! Its own test binary, because it installs the process-wide log subscriber. The level is
//! forced, never taken from the environment: `telemetry::init` uses exactly the filter it is
//! given, and the binary is started with `RUST_LOG=trace` of its own.

#[allow(dead_code)]
#[path = "support/captured.rs"]
mod captured;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tsunagu::auth::Role;
use tsunagu::config::Settings;
use tsunagu::state::AppState;
use tsunagu::Application;
use ulid::Ulid;

use captured::Captured;

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

/// The app on port 0 with `settings`, and a session cookie for the operator `sakura`: its base
/// URL, state, server task and the cookie.
async fn start(
    settings: Settings,
) -> (
    String,
    Arc<AppState>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
    String,
) {
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let server = tokio::spawn(app.run_until_stopped());
    state
        .accounts
        .add_user("sakura", "Sakura", Role::Operator, "long enough password")
        .await
        .unwrap();
    let (_, token) = state
        .accounts
        .login("sakura", "long enough password")
        .await
        .unwrap();
    (base, state, server, format!("tsunagu_session={token}"))
}

/// An operator console (signed in with `cookie`, said hello) and a visitor who started a
/// conversation (said hello, welcomed): the two sockets and the conversation's id.
async fn operator_and_visitor(base: &str, cookie: &str) -> (Ws, Ws, String) {
    let mut op = connect(base, "/ws/operator", Some(cookie)).await;
    send(&mut op, json!({"type":"hello","v":1,"id":id()})).await;
    until(&mut op, |v| v["type"] == "welcome").await;

    let mut visitor = connect(base, "/ws/visitor", None).await;
    send(
        &mut visitor,
        json!({"type":"hello","v":1,"id":id(),"start":{"lang":"ja"}}),
    )
    .await;
    let welcome = until(&mut visitor, |v| v["type"] == "welcome").await;
    let conversation = welcome["conversation"].as_str().unwrap().to_owned();
    (op, visitor, conversation)
}

/// The operator takes the next person and is sent the conversation.
async fn take_next(op: &mut Ws) {
    send(op, json!({"type":"take_next","id":id()})).await;
    until(op, |v| v["type"] == "conversation").await;
}

/// The operator ends `conversation`.
async fn end(op: &mut Ws, conversation: &str) {
    send(
        op,
        json!({"type":"end","id":id(),"conversation":conversation}),
    )
    .await;
}

/// The operator wraps `conversation` up, and it is removed from the console.
async fn wrap_up(op: &mut Ws, conversation: &str) {
    send(
        op,
        json!({"type":"wrap_up","id":id(),"conversation":conversation,"category":"other"}),
    )
    .await;
    until(op, |v| v["type"] == "removed").await;
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
    settings.database.url = None;
    settings.database.sqlite_path = dir.join("tsunagu.db").display().to_string();
    let prefix = format!("privacy{}", Ulid::new());
    if let Some(port) = redis_port {
        settings.store.url = Some(format!("redis://127.0.0.1:{port}/"));
        settings.store.key_prefix = prefix.clone();
    }
    let (base, state, server, cookie) = start(settings).await;

    let canaries = Canaries::new();
    // A channel identifier as a connector would hold it (here a caller's number).
    let fake_number = format!("+8190{}", &Ulid::new().0.to_string()[..8]);
    let conversation = canary_conversation(&base, &cookie, &canaries, |conversation| {
        state
            .engine
            .set_channel_ref(conversation, format!("voice:CAfake:{fake_number}"));
    })
    .await;
    let conv_ulid: Ulid = conversation.parse().unwrap();
    let mut secrets = canaries.all().to_vec();
    secrets.push(fake_number.clone());
    // A second conversation holding a LINE user id as the LINE connector does
    // (`line:<channel>:<user id>`), with canaries of its own.
    let line_canaries = Canaries::new();
    let fake_line_user = format!("U{}", Ulid::new().0.to_string().to_lowercase());
    let line_conversation = canary_conversation(&base, &cookie, &line_canaries, |conversation| {
        state
            .engine
            .set_channel_ref(conversation, format!("line:npo1:{fake_line_user}"));
    })
    .await;
    assert_eq!(
        state.engine.channel_ref(line_conversation.parse().unwrap()),
        None
    );
    secrets.extend(line_canaries.all());
    secrets.push(fake_line_user.clone());

    // Nothing in the store, and the channel identifier is gone from memory.
    assert!(state.engine.conversations().await.unwrap().is_empty());
    assert_eq!(state.engine.channel_ref(conv_ulid), None);
    assert!(state.engine.log_of(conv_ulid).await.unwrap().is_empty());
    state.shutdown.cancel();
    let _ = server.await;

    if let Some(port) = redis_port {
        assert_redis_holds_none(port, &prefix, &conversation, &secrets).await;
    }
    // Nothing in the logs, at trace level; the logs did record the conversation by id.
    // (The tests share the capture; each checks its own canaries.)
    let text = logs.raw();
    assert_output_holds_none(&text, &conversation, &secrets, &[]);
    assert_no_file_holds(&dir, &secrets);
    let dump = dump_database(&dir.join("tsunagu.db")).await;
    assert!(dump.rows("accounts") >= 1, "the dump reads the tables");
    assert!(
        dump.rows("referral_entries") >= 8,
        "the directory's tables too"
    );
    assert!(dump.rows("settings") >= 1);
    dump.assert_holds_none(&secrets);
    assert_cli_dump_holds_none(&dir.join("tsunagu.db"), &secrets);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Every value of every column of every table of a SQLite file, as bytes (text as written,
/// blobs as stored, numbers as their text): what a plain dump of the database shows.
struct Dump {
    /// (table, column, value)
    values: Vec<(String, String, Vec<u8>)>,
    /// (table, rows)
    rows: Vec<(String, i64)>,
}

impl Dump {
    fn rows(&self, table: &str) -> i64 {
        self.rows
            .iter()
            .find(|(t, _)| t == table)
            .map(|(_, n)| *n)
            .unwrap_or_else(|| panic!("no table {table}"))
    }

    fn assert_holds_none(&self, secrets: &[String]) {
        for (table, column, value) in &self.values {
            let text = String::from_utf8_lossy(value);
            for secret in secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "{secret} in plaintext in {table}.{column}"
                );
            }
        }
    }
}

async fn dump_database(path: &Path) -> Dump {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{}?mode=ro", path.display()))
        .await
        .expect("the database file opens");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut dump = Dump {
        values: Vec::new(),
        rows: Vec::new(),
    };
    for table in tables {
        let columns: Vec<String> = sqlx::query(&format!("PRAGMA table_info(\"{table}\")"))
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("name"))
            .collect();
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{table}\""))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        dump.rows.push((table.clone(), n));
        for column in columns {
            let values: Vec<Option<Vec<u8>>> = sqlx::query_scalar(&format!(
                "SELECT CAST(\"{column}\" AS BLOB) FROM \"{table}\""
            ))
            .fetch_all(&mut conn)
            .await
            .unwrap();
            for v in values.into_iter().flatten() {
                dump.values.push((table.clone(), column.clone(), v));
            }
        }
    }
    conn.close().await.unwrap();
    dump
}

/// The plain SQL dump an operator would take (`sqlite3 <file> .dump`), when the sqlite3 CLI is
/// installed (the dump above, through sqlx, checks the same without it): no secret in it.
fn assert_cli_dump_holds_none(path: &Path, secrets: &[String]) {
    let out = match std::process::Command::new("sqlite3")
        .arg(path)
        .arg(".dump")
        .output()
    {
        Ok(out) if out.status.success() => out,
        _ => {
            eprintln!("sqlite3 CLI not available: the sqlx dump stands for it");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("CREATE TABLE referral_entries"),
        "a whole dump"
    );
    for secret in secrets {
        assert!(!text.contains(secret.as_str()), "{secret} in the SQL dump");
    }
}

/// The phrases one canary conversation writes, unique to it.
struct Canaries {
    visitor: String,
    operator: String,
    note: String,
}

impl Canaries {
    fn new() -> Canaries {
        Canaries {
            visitor: format!("canary-visitor-{}", Ulid::new()),
            operator: format!("canary-operator-{}", Ulid::new()),
            note: format!("canary-note-{}", Ulid::new()),
        }
    }

    fn all(&self) -> [String; 3] {
        [
            self.visitor.clone(),
            self.operator.clone(),
            self.note.clone(),
        ]
    }
}

/// The canary conversation, against the gateway at `base` with an operator's session `cookie`:
/// a visitor and the operator each write a canary, the visitor sends it again too long and in a
/// malformed frame, the operator hands the conversation back with a canary note, takes it again,
/// ends and wraps it up. `started` runs as soon as the conversation exists. Returns its id.
async fn canary_conversation(
    base: &str,
    cookie: &str,
    canaries: &Canaries,
    started: impl FnOnce(Ulid),
) -> String {
    let Canaries {
        visitor: canary_visitor,
        operator: canary_operator,
        note: canary_note,
    } = canaries;
    let (mut op, mut visitor, conversation) = operator_and_visitor(base, cookie).await;
    started(conversation.parse().unwrap());

    take_next(&mut op).await;
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
    take_next(&mut op).await;

    end(&mut op, &conversation).await;
    until(&mut visitor, |v| {
        v["type"] == "event" && v["event"]["kind"] == "ended"
    })
    .await;
    wrap_up(&mut op, &conversation).await;
    conversation
}

/// Nothing in Redis under `prefix`: no key of the conversation, no value holding a secret.
async fn assert_redis_holds_none(port: u16, prefix: &str, conversation: &str, secrets: &[String]) {
    let contents = redis_contents(port, prefix).await;
    assert!(!contents.is_empty(), "the gateway did use this Redis");
    for (key, content) in &contents {
        assert!(
            !key.contains(conversation),
            "{key} is left of the conversation"
        );
        for secret in secrets {
            assert!(!content.contains(secret.as_str()), "{key} holds {secret}");
        }
    }
}

/// Log or process output at trace level that names the conversation by id and holds none of
/// the secrets nor a client's address. `own` are the addresses the gateway may name (its own
/// listener, its Redis): any other `127.0.0.1:` is a client's.
fn assert_output_holds_none(text: &str, conversation: &str, secrets: &[String], own: &[String]) {
    assert!(
        text.contains(conversation),
        "the output carries the conversation id"
    );
    assert!(
        text.contains("TRACE") || text.contains("DEBUG"),
        "the output is at trace level"
    );
    for secret in secrets {
        if let Some(line) = text.lines().find(|l| l.contains(secret.as_str())) {
            panic!("{secret} found in the output: {line}");
        }
    }
    let mut masked = text.to_owned();
    for address in own {
        masked = masked.replace(address.as_str(), "(own address)");
    }
    if let Some(line) = masked.lines().find(|l| l.contains("127.0.0.1:")) {
        panic!("client address in the output: {line}");
    }
}

/// No file under `dir` (at any depth) holds a secret in plaintext; returns how many it read.
fn assert_no_file_holds(dir: &Path, secrets: &[String]) -> usize {
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            files += 1;
            let content = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            for secret in secrets {
                assert!(
                    !content.contains(secret.as_str()),
                    "{secret} in plaintext in {}",
                    path.display()
                );
            }
        }
    }
    files
}

#[tokio::test]
async fn the_real_binary_writes_no_canary_to_stdout_or_stderr_at_trace_level() {
    canary_found_nowhere_in_the_binary(None).await;
}

#[tokio::test]
async fn with_redis_the_real_binary_writes_no_canary_anywhere() {
    let redis = RedisServer::start();
    canary_found_nowhere_in_the_binary(Some(redis.port)).await;
}

/// The canary conversation through the real `gateway` binary, started with `RUST_LOG=trace`
/// whatever this test's environment holds; then its whole stdout and stderr, the Redis it used
/// and every file it wrote are searched.
async fn canary_found_nowhere_in_the_binary(redis_port: Option<u16>) {
    let dir = std::env::temp_dir().join(format!("tsunagu-privacy-bin-{}", Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let database = dir.join("tsunagu.db").display().to_string();
    let mut add = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "user",
            "add",
            "--username",
            "sakura",
            "--display-name",
            "Sakura",
        ])
        .arg("--password-stdin")
        .env("TSUNAGU_DATABASE__SQLITE_PATH", &database)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("gateway user add runs");
    add.stdin
        .take()
        .unwrap()
        .write_all(b"long enough password\n")
        .unwrap();
    assert!(add.wait().unwrap().success(), "gateway user add");

    let prefix = format!("privacy{}", Ulid::new());
    let mut env = vec![("TSUNAGU_DATABASE__SQLITE_PATH", database)];
    if let Some(port) = redis_port {
        env.push(("TSUNAGU_STORE__URL", format!("redis://127.0.0.1:{port}/")));
        env.push(("TSUNAGU_STORE__KEY_PREFIX", prefix.clone()));
    }
    let gateway = Gateway::start(&env).await;
    let base = gateway.base.clone();

    let login = reqwest::Client::new()
        .post(format!("{base}/api/login"))
        .header("origin", &base)
        .json(&json!({"username": "sakura", "password": "long enough password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200, "login");
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    let canaries = Canaries::new();
    let conversation = canary_conversation(&base, &cookie, &canaries, |_| {}).await;
    let secrets = canaries.all();
    let output = gateway.stop();

    let mut own = vec![base.trim_start_matches("http://").to_owned()];
    if let Some(port) = redis_port {
        assert_redis_holds_none(port, &prefix, &conversation, &secrets).await;
        own.push(format!("127.0.0.1:{port}"));
    }
    assert_output_holds_none(&output, &conversation, &secrets, &own);
    assert_no_file_holds(&dir, &secrets);
    std::fs::remove_dir_all(dir).unwrap();
}

/// The real `gateway` binary as a child process on a free port, at trace level, its stdout
/// and stderr each drained whole into memory by a thread; killed on drop.
struct Gateway {
    base: String,
    child: Child,
    drains: Vec<std::thread::JoinHandle<Vec<u8>>>,
}

impl Gateway {
    async fn start(env: &[(&str, String)]) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .arg("serve")
            // Forced, not inherited: the level must not depend on who runs the test.
            .env("RUST_LOG", "trace")
            .env("TSUNAGU_LOG__FILTER", "trace")
            .env("TSUNAGU_LOG__FORMAT", "pretty")
            .env("TSUNAGU_SERVER__HOST", "127.0.0.1")
            .env("TSUNAGU_SERVER__PORT", "0")
            .env("TSUNAGU_SERVER__SHUTDOWN_GRACE_MS", "1000")
            // The operator signs in with a password alone (the pledge has its own tests).
            .env("TSUNAGU_AUTH__REQUIRE_PLEDGE", "false")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the gateway binary starts");
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut tx = Some(tx);
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                let text = String::from_utf8_lossy(&line);
                if let Some(url) = text.trim().strip_prefix("Landing page") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().trim_end_matches('/').to_owned());
                    }
                }
                all.append(&mut line);
            }
            all
        });
        let err = std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = stderr.read_to_end(&mut all);
            all
        });
        let mut gateway = Gateway {
            base: String::new(),
            child,
            drains: vec![out, err],
        };
        gateway.base = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .ok()
            .and_then(Result::ok)
            .expect("the gateway printed its address");
        gateway
    }

    /// SIGTERM, a bounded wait for the exit (then SIGKILL), and the whole of stdout and
    /// stderr once both pipes have closed.
    fn stop(mut self) -> String {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
        let [out, err] = [self.drains.remove(0), self.drains.remove(0)]
            .map(|d| String::from_utf8_lossy(&d.join().unwrap()).into_owned());
        format!("{out}\n--- stderr\n{err}")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn in_a_flagged_conversation_the_canary_is_only_inside_the_encrypted_record() {
    let logs = logs();
    let dir = std::env::temp_dir().join(format!("tsunagu-privacy-flag-{}", Ulid::new()));
    let mut settings = Settings::for_tests();
    settings.database.url = None;
    settings.database.sqlite_path = dir.join("tsunagu.db").display().to_string();
    settings.escalation.key = Some("7f".repeat(32).into());
    let (base, state, server, cookie) = start(settings).await;
    let canary = format!("canary-flagged-{}", Ulid::new());
    let reason = format!("canary-reason-{}", Ulid::new());

    let (mut op, mut visitor, conversation) = operator_and_visitor(&base, &cookie).await;
    // The LINE user id a connector would hold as the route back.
    let fake_line_id = format!("U{}", Ulid::new().to_string().to_lowercase());
    let conv_ulid: Ulid = conversation.parse().unwrap();
    state
        .engine
        .set_channel_ref(conv_ulid, format!("line:npo1:{fake_line_id}"));
    take_next(&mut op).await;
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
    end(&mut op, &conversation).await;
    wrap_up(&mut op, &conversation).await;

    // Inside the record (decrypted by a coordinator's read) …
    let esc = state.engine.escalations.clone().unwrap();
    let list = esc
        .list(&tsunagu::escalation::Actor::system())
        .await
        .unwrap();
    let record = esc
        .read(list[0].id, &tsunagu::escalation::Actor::system())
        .await
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
    assert!(state.engine.conversations().await.unwrap().is_empty());
    state.shutdown.cancel();
    let _ = server.await;
    let text = logs.raw();
    let secrets = [canary, reason, fake_line_id];
    assert_output_holds_none(&text, &conversation, &secrets, &[]);
    assert_no_file_holds(&dir, &secrets);
    // The database, table by table: the record's blob and the audit trail are there, and no
    // secret is readable in any column.
    let dump = dump_database(&dir.join("tsunagu.db")).await;
    assert_eq!(dump.rows("escalation_records"), 1, "the record was written");
    assert!(
        dump.rows("escalation_audit") >= 2,
        "the list and view were audited"
    );
    dump.assert_holds_none(&secrets);
    assert_cli_dump_holds_none(&dir.join("tsunagu.db"), &secrets);
    std::fs::remove_dir_all(dir).unwrap();
}
