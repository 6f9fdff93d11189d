//! Test harness: spawn the real app on port 0 and drive it over real websockets and HTTP.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tsunagu::auth::Role;
use tsunagu::config::Settings;
use tsunagu::conversation::Conversation;
use tsunagu::state::AppState;
use tsunagu::Application;
use ulid::Ulid;

/// How long a test waits for an expected frame before failing.
pub const WAIT: Duration = Duration::from_secs(5);

/// The password of every account the tests create.
pub const PASSWORD: &str = "long enough password";

pub struct TestApp {
    pub base: String,
    pub ws_base: String,
    pub state: Arc<AppState>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tune: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with_clock(tsunagu::clock::Clock::system(), tune).await
}

/// [`spawn_app_with`], the app reading the time from `clock` (a manual one moves only when the
/// test says).
pub async fn spawn_app_with_clock(
    clock: tsunagu::clock::Clock,
    tune: impl FnOnce(&mut Settings),
) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        tsunagu::telemetry::init("debug", false, std::io::stdout);
    }
    let mut settings = Settings::for_tests();
    // The same suite runs against the Redis store when the test script names a Redis (each app
    // under its own key prefix, so tests running at once share nothing).
    if let Ok(url) = std::env::var("TSUNAGU_TEST_REDIS_URL") {
        settings.store.url = Some(url);
        settings.store.key_prefix = format!("test{}", Ulid::new());
    }
    tune(&mut settings);
    let app = Application::build_with_clock(settings, clock)
        .await
        .expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let ws_base = format!("ws://127.0.0.1:{}", app.port());
    let state = app.state();
    let task = tokio::spawn(app.run_until_stopped());
    TestApp {
        base,
        ws_base,
        state,
        task,
    }
}

/// The app with exactly `settings` (not even the Redis store the test script may name), then
/// `tune`.
#[allow(dead_code)] // the LINE and phone harnesses' (this file is theirs too)
pub async fn spawn_app_from(settings: Settings, tune: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(move |target| {
        *target = settings;
        tune(target);
    })
    .await
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A websocket client that speaks JSON frames.
pub struct Client {
    pub ws: Ws,
    /// Frames received but not yet consumed by a `recv_*` helper.
    pub backlog: Vec<Value>,
}

/// The socket closed (with this close code, if it sent one).
#[derive(Debug)]
#[allow(dead_code)]
pub struct Closed(pub Option<u16>);

impl Client {
    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::text(v.to_string()))
            .await
            .expect("send frame");
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.expect("send raw frame");
    }

    /// The next JSON frame, or the close code if the socket closed.
    pub async fn next(&mut self) -> Result<Value, Closed> {
        if !self.backlog.is_empty() {
            return Ok(self.backlog.remove(0));
        }
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Ok(serde_json::from_str(t.as_str()).expect("server sends JSON"))
                }
                Some(Ok(Message::Close(frame))) => {
                    let _ = self.ws.flush().await;
                    return Err(Closed(frame.map(|f| u16::from(f.code))));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(Closed(None)),
            }
        }
    }

    /// Waits for the first frame matching `pred`; others are kept in the backlog.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i);
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = tokio::time::timeout(left, self.ws.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("timed out waiting for {what}; backlog: {:?}", self.backlog)
                });
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if pred(&v) {
                        return v;
                    }
                    self.backlog.push(v);
                }
                Some(Ok(Message::Close(f))) => panic!(
                    "socket closed ({:?}) while waiting for {what}; backlog: {:?}",
                    f.map(|f| u16::from(f.code)),
                    self.backlog
                ),
                Some(Ok(_)) => {}
                other => panic!("socket failed while waiting for {what}: {other:?}"),
            }
        }
    }

    pub async fn expect_type(&mut self, ty: &str) -> Value {
        let t = ty.to_owned();
        self.expect(ty, move |v| v["type"] == t).await
    }

    /// Waits until the server closes the socket and returns the close code.
    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for close")
            {
                Some(Ok(Message::Close(f))) => {
                    // Send the answer to the Close now, as a browser does, so that the
                    // server's socket ends at once instead of lingering for it.
                    let _ = self.ws.flush().await;
                    return f.map(|f| u16::from(f.code));
                }
                Some(Ok(Message::Text(t))) => {
                    self.backlog.push(serde_json::from_str(t.as_str()).unwrap())
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Cuts the TCP connection without a close handshake (a network drop).
    pub fn cut(self) {
        drop(self.ws);
    }

    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
    }
}

pub fn id() -> String {
    Ulid::new().to_string()
}

/// An event frame carrying a log entry of `kind`.
pub fn is_event(v: &Value, kind: &str) -> bool {
    v["type"] == "event" && v["event"]["kind"] == kind
}

pub struct Visitor {
    pub client: Client,
    pub conversation: String,
    pub token: String,
}

pub struct Operator {
    pub client: Client,
    pub id: String,
    pub cookie: String,
}

impl TestApp {
    pub async fn connect(
        &self,
        path: &str,
        origin: Option<&str>,
        cookie: Option<&str>,
    ) -> Result<Client, u16> {
        let mut req = format!("{}{}", self.ws_base, path)
            .into_client_request()
            .unwrap();
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        if let Some(c) = cookie {
            req.headers_mut().insert("cookie", c.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(Client {
                ws,
                backlog: Vec::new(),
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
            Err(e) => panic!("connect failed: {e}"),
        }
    }

    /// A visitor socket that has said nothing yet.
    pub async fn raw_visitor(&self) -> Client {
        self.connect("/ws/visitor", Some(&self.base), None)
            .await
            .expect("visitor socket opens")
    }

    /// A person starting a conversation.
    pub async fn visitor(&self, lang: &str) -> Visitor {
        let mut client = self.raw_visitor().await;
        client
            .send(json!({"type":"hello","v":1,"id":id(),"start":{"lang":lang}}))
            .await;
        let w = client.expect_type("welcome").await;
        Visitor {
            conversation: w["conversation"].as_str().unwrap().to_owned(),
            token: w["token"].as_str().unwrap().to_owned(),
            client,
        }
    }

    /// The same person coming back after a drop.
    pub async fn resume(&self, token: &str, last_seq: Option<u64>) -> (Client, Value) {
        let mut client = self.raw_visitor().await;
        client
            .send(json!({"type":"hello","v":1,"id":id(),"resume":{"token":token,"last_seq":last_seq}}))
            .await;
        let w = client.expect_type("welcome").await;
        (client, w)
    }

    /// Creates an account and returns a session cookie for it (without the HTTP login, which
    /// has its own tests).
    pub async fn session(
        &self,
        username: &str,
        role: Role,
        capacity: Option<u32>,
    ) -> (String, String) {
        let accounts = &self.state.accounts;
        let user = match accounts.list().into_iter().find(|u| u.username == username) {
            Some(u) => u,
            None => {
                let u = accounts
                    .add_user(username, &format!("Op {username}"), role, PASSWORD)
                    .await
                    .unwrap();
                accounts
                    .set_routing(u.id, vec!["ja".into(), "en".into()], capacity)
                    .await
                    .unwrap();
                u
            }
        };
        let (_, token) = accounts.login(username, PASSWORD).await.unwrap();
        (user.id.to_string(), format!("tsunagu_session={token}"))
    }

    /// A coordinator's session cookie (the account `coord`, created on first use).
    pub async fn coordinator(&self) -> String {
        self.session("coord", Role::Coordinator, None).await.1
    }

    /// The operator account `sakura` ("Sakura"), without signing in.
    pub async fn add_sakura(&self) {
        self.state
            .accounts
            .add_user("sakura", "Sakura", Role::Operator, PASSWORD)
            .await
            .unwrap();
    }

    /// An operator console, signed in and said hello; `on_duty` sets presence.
    pub async fn operator(&self, username: &str, capacity: u32, on_duty: bool) -> Operator {
        let (uid, cookie) = self.session(username, Role::Operator, Some(capacity)).await;
        self.operator_with(username, &uid, &cookie, json!({}), on_duty)
            .await
    }

    pub async fn operator_with(
        &self,
        _username: &str,
        uid: &str,
        cookie: &str,
        last_seqs: Value,
        on_duty: bool,
    ) -> Operator {
        let mut client = self
            .connect("/ws/operator", Some(&self.base), Some(cookie))
            .await
            .expect("operator socket opens");
        client
            .send(json!({"type":"hello","v":1,"id":id(),"last_seqs":last_seqs}))
            .await;
        client.expect_type("welcome").await;
        let mut op = Operator {
            client,
            id: uid.to_owned(),
            cookie: cookie.to_owned(),
        };
        if on_duty {
            op.presence("on_duty").await;
        }
        op
    }

    /// The address the app listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    /// A request to `path` as the session `cookie`; a POST carries the app's own origin, as the
    /// console's do.
    pub fn request_as(
        &self,
        method: reqwest::Method,
        cookie: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let post = method == reqwest::Method::POST;
        let req = self
            .http()
            .request(method, format!("{}{path}", self.base))
            .header("cookie", cookie);
        if post {
            req.header("origin", &self.base)
        } else {
            req
        }
    }

    /// GET `path` without a session.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    /// GET `path` without a session, as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).await.json().await.unwrap()
    }

    /// GET `path` as the session `cookie`.
    pub async fn get_as(&self, cookie: &str, path: &str) -> reqwest::Response {
        self.request_as(reqwest::Method::GET, cookie, path)
            .send()
            .await
            .unwrap()
    }

    /// GET `path` as the session `cookie`, as JSON.
    pub async fn get_json_as(&self, cookie: &str, path: &str) -> Value {
        self.get_as(cookie, path).await.json().await.unwrap()
    }

    /// POST the JSON `body` to `path` as the session `cookie`, from the app's own origin.
    pub async fn post_as(&self, cookie: &str, path: &str, body: Value) -> reqwest::Response {
        self.request_as(reqwest::Method::POST, cookie, path)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// PUT the JSON `body` to `path` as the session `cookie`, from the app's own origin.
    pub async fn put_as(&self, cookie: &str, path: &str, body: Value) -> reqwest::Response {
        self.http()
            .put(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .header("origin", &self.base)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// An admin's session cookie (the account `admin`, created on first use).
    pub async fn admin(&self) -> String {
        self.session("admin", Role::Admin, None).await.1
    }

    /// An admin edits the directory entry `id` through the admin API: named `name`, number
    /// `phone`, open 24 hours, listed in closing messages in Japanese. Returns it as stored.
    pub async fn admin_edits_entry(&self, id: &str, name: &str, phone: &str) -> Value {
        let admin = self.admin().await;
        let r = self
            .put_as(
                &admin,
                &format!("/api/admin/directory/{id}"),
                json!({
                    "name": name, "phone": phone, "hours": "24h", "hours_note": "24時間",
                    "topics": ["テスト"], "languages": ["ja"], "for_closing": true,
                    "verified": true,
                }),
            )
            .await;
        assert_eq!(r.status(), 200, "the admin's edit is accepted");
        r.json().await.unwrap()
    }

    /// Live conversations in the store.
    pub async fn conversations(&self) -> Vec<Conversation> {
        self.state.engine.conversations().await.unwrap()
    }

    /// Whether every conversation is deleted within a few seconds: a step's frames reach the
    /// sockets before the node that applied it deletes what it ended.
    pub async fn all_deleted(&self) -> bool {
        for _ in 0..200 {
            if self.conversations().await.is_empty() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        false
    }

    /// The stored conversation `id` (which must be there).
    pub async fn stored(&self, id: &str) -> Conversation {
        self.state
            .engine
            .conversation(id.parse().unwrap())
            .await
            .unwrap()
            .expect("the conversation is stored")
    }

    /// Waits (up to 10 s) until `pred` holds over the store's conversations.
    #[allow(dead_code)] // the LINE and phone tests' (this file is theirs too)
    pub async fn wait_conversations(
        &self,
        what: &str,
        pred: impl Fn(&[Conversation]) -> bool,
    ) -> Vec<Conversation> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let c = self.conversations().await;
            if pred(&c) {
                return c;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn stop(self) {
        self.state.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

impl Operator {
    pub async fn presence(&mut self, state: &str) {
        let cid = id();
        self.client
            .send(json!({"type":"presence","id":cid,"state":state}))
            .await;
        self.client
            .expect("presence ack", move |v| {
                v["type"] == "ack" && v["id"] == cid
            })
            .await;
    }

    /// Sends a conversation-scoped action and returns the server's ack or error for it.
    pub async fn act(&mut self, ty: &str, conversation: &str, extra: Value) -> Value {
        let cid = id();
        let mut msg = json!({"type":ty,"id":cid,"conversation":conversation});
        if let (Some(m), Some(e)) = (msg.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                m.insert(k.clone(), v.clone());
            }
        }
        self.client.send(msg).await;
        self.client
            .expect("reply", move |v| {
                (v["type"] == "ack" || v["type"] == "error") && v["id"] == cid
            })
            .await
    }

    pub async fn take_next(&mut self) -> Value {
        let cid = id();
        self.client.send(json!({"type":"take_next","id":cid})).await;
        self.client
            .expect("take_next reply", move |v| {
                (v["type"] == "ack" || v["type"] == "error") && v["id"] == cid
            })
            .await
    }

    pub async fn expect_offer(&mut self) -> String {
        let offer = self.client.expect_type("offer").await;
        offer["conversation"].as_str().unwrap().to_owned()
    }

    /// Takes the next person and waits for their conversation summary.
    pub async fn take(&mut self) -> String {
        let reply = self.take_next().await;
        assert_eq!(reply["type"], "ack", "take_next: {reply}");
        let c = self.client.expect_type("conversation").await;
        c["conversation"]["id"].as_str().unwrap().to_owned()
    }

    pub async fn say(&mut self, conversation: &str, text: &str) -> u64 {
        let r = self.act("send", conversation, json!({"text":text})).await;
        assert_eq!(r["type"], "ack", "operator send: {r}");
        r["seq"].as_u64().unwrap()
    }
}

impl Visitor {
    pub async fn say(&mut self, text: &str) -> u64 {
        let cid = id();
        self.client
            .send(json!({"type":"send","id":cid,"text":text}))
            .await;
        let r = self
            .client
            .expect("send ack", move |v| {
                (v["type"] == "ack" || v["type"] == "error") && v["id"] == cid
            })
            .await;
        assert_eq!(r["type"], "ack", "visitor send: {r}");
        r["seq"].as_u64().unwrap()
    }
}
