//! The LINE test harness: the real gateway on port 0 with `[line]` pointing at a fake Messaging
//! API on loopback, webhook bodies signed and parsed by LINE's official Python SDK, and every
//! request the gateway made checked against the SDK's request models at the end of a test.
//!
//! Process-wide (one per test binary): the log capture at trace level, the environment variables
//! holding channel secrets and tokens, the Python SDK process, and the list of LINE user ids,
//! texts and tokens used by any test (none may appear in a log line).

use std::sync::{LazyLock, Mutex};

use serde_json::{json, Value};
use tsunagu::config::Settings;
use tsunagu::connectors::line::LineChannelSettings;
use ulid::Ulid;

use super::fake_api::FakeLine;
use crate::captured::Captured;
use crate::helpers::TestApp;
use crate::python::PyHelper;

// ---------------------------------------------------------------------------------------------
// Process-wide: logs, environment, secrets to look for
// ---------------------------------------------------------------------------------------------

/// A configured test channel: its id and the secret and token its environment variables hold.
#[derive(Clone)]
pub struct Chan {
    pub id: &'static str,
    pub language: &'static str,
    pub secret: String,
    pub token: String,
}

pub struct Globals {
    pub logs: Captured,
    pub chans: Vec<Chan>,
    /// Everything that must never be logged: user ids, texts, reply and read tokens, secrets.
    pub secrets: Mutex<Vec<String>>,
}

fn env_name(chan: &str, what: &str) -> String {
    format!("TSUNAGU_TEST_LINE_{}_{what}", chan.to_ascii_uppercase())
}

/// Sets up the process-wide parts once. Every test calls it first, before anything else can
/// read the environment.
pub fn globals() -> &'static Globals {
    static G: LazyLock<Globals> = LazyLock::new(|| {
        let logs = Captured::default();
        let sink = logs.clone();
        tsunagu::telemetry::init("trace", false, move || sink.clone());
        let chans: Vec<Chan> = [("npo1", "ja"), ("npo2", "en")]
            .into_iter()
            .map(|(id, language)| Chan {
                id,
                language,
                secret: format!("{id}-secret-{}", Ulid::new()),
                token: format!("{id}-token-{}", Ulid::new()),
            })
            .collect();
        for c in &chans {
            // Edition 2021: set_var is safe; done once, before any test reads the environment.
            std::env::set_var(env_name(c.id, "SECRET"), &c.secret);
            std::env::set_var(env_name(c.id, "TOKEN"), &c.token);
        }
        let secrets = chans
            .iter()
            .flat_map(|c| [c.secret.clone(), c.token.clone()])
            .collect();
        Globals {
            logs,
            chans,
            secrets: Mutex::new(secrets),
        }
    });
    &G
}

/// Everything logged so far by any test of this binary, without terminal colour codes.
pub fn logs() -> String {
    globals().logs.text()
}

/// Remembers `s` as something that must never be logged, and returns it.
pub fn never_logged(s: String) -> String {
    globals().secrets.lock().unwrap().push(s.clone());
    s
}

/// A fresh LINE user id (`U` and 32 hex digits, as LINE makes them).
pub fn new_user() -> String {
    let hex: String = (0..2).map(|_| format!("{:016x}", rand_u64())).collect();
    never_logged(format!("U{hex}"))
}

fn rand_u64() -> u64 {
    let u = Ulid::new().0;
    (u as u64) ^ ((u >> 64) as u64)
}

/// A canary text for a test: unique, and never to be logged.
pub fn canary(label: &str) -> String {
    never_logged(format!("canary-{label}-{}", Ulid::new()))
}

/// A reply token (never to be logged).
pub fn reply_token() -> String {
    never_logged(format!("rt{}", Ulid::new()))
}

// ---------------------------------------------------------------------------------------------
// The official SDK, as a helper process
// ---------------------------------------------------------------------------------------------

static SDK: PyHelper = PyHelper::new(
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/line/sdk.py"),
    "LINE SDK",
    "line-bot-sdk",
);

/// Signs `body` with `secret` through the SDK helper (which also checks that the SDK's
/// validator and parser accept it). Returns the signature and the SDK's event class names.
pub async fn sdk_sign(secret: &str, body: &str) -> (String, Vec<String>) {
    let v = SDK
        .call(json!({"op":"sign","secret":secret,"body":body}))
        .await;
    let events = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    (v["signature"].as_str().unwrap().to_owned(), events)
}

// ---------------------------------------------------------------------------------------------
// Webhook bodies
// ---------------------------------------------------------------------------------------------

/// A webhook event of `kind` from a one-to-one chat with `user`; `extra` fields are merged in.
pub fn event(kind: &str, user: &str, extra: Value) -> Value {
    let mut e = json!({
        "type": kind,
        "mode": "active",
        "timestamp": 1_763_900_000_000u64,
        "webhookEventId": Ulid::new().to_string(),
        "deliveryContext": {"isRedelivery": false},
        "source": {"type": "user", "userId": user},
    });
    merge(&mut e, extra);
    e
}

pub fn merge(target: &mut Value, extra: Value) {
    if let (Some(t), Value::Object(e)) = (target.as_object_mut(), extra) {
        for (k, v) in e {
            t.insert(k, v);
        }
    }
}

/// A text message event; returns it with its message id.
pub fn text(user: &str, text: &str, reply: Option<&str>, read: Option<&str>) -> (Value, String) {
    let id = format!("{}", 400_000_000_000_000u64 + (rand_u64() % 1_000_000_000));
    let mut message = json!({"type":"text","id":id,"text":text,"quoteToken":"q"});
    if let Some(r) = read {
        message["markAsReadToken"] = json!(r);
    }
    let mut extra = json!({"message": message});
    if let Some(r) = reply {
        extra["replyToken"] = json!(r);
    }
    (event("message", user, extra), id)
}

/// The event of `user` retracting the message `message_id`.
pub fn unsend(user: &str, message_id: &str) -> Value {
    event("unsend", user, json!({"unsend": {"messageId": message_id}}))
}

pub fn body(events: &[Value]) -> String {
    json!({"destination": format!("U{:032x}", 0xfeed_u128), "events": events}).to_string()
}

// ---------------------------------------------------------------------------------------------
// The app with a fake LINE API
// ---------------------------------------------------------------------------------------------

pub struct LineTest {
    pub app: TestApp,
    pub fake: FakeLine,
    pub http: reqwest::Client,
}

/// Settings for LINE tests: short retries and time limits, no automatic offers (operators take).
pub fn settings(fake: &FakeLine, chans: &[&Chan]) -> Settings {
    let mut s = Settings::for_tests();
    // Test operator sockets do not ping; a slow first start of the SDK helper must not make
    // them look dead (closed after three silent intervals).
    s.server.heartbeat_ms = 5_000;
    s.conversation.auto_offer = false;
    s.line.api_base = fake.base.clone();
    s.line.retry_base_ms = 20;
    s.line.retry_max_ms = 100;
    s.line.retry_attempts = 6;
    s.line.request_timeout_ms = 500;
    s.line.read_poll_ms = 30;
    s.line.channels = chans
        .iter()
        .map(|c| LineChannelSettings {
            id: c.id.to_owned(),
            secret_env: env_name(c.id, "SECRET"),
            token_env: env_name(c.id, "TOKEN"),
            language: c.language.to_owned(),
            priority: 0,
        })
        .collect();
    s
}

impl LineTest {
    /// The gateway with the `npo1` channel (Japanese).
    pub async fn start() -> LineTest {
        Self::start_with(&["npo1"], |_| {}).await
    }

    pub async fn start_with(channels: &[&str], tune: impl FnOnce(&mut Settings)) -> LineTest {
        let g = globals();
        let chans: Vec<&Chan> = g
            .chans
            .iter()
            .filter(|c| channels.contains(&c.id))
            .collect();
        // Start the SDK helper (a second or two of imports) before any socket is open.
        sdk_sign("warm-up", &body(&[])).await;
        let tokens: Vec<&str> = chans.iter().map(|c| c.token.as_str()).collect();
        let fake = FakeLine::start(&tokens).await;
        let s = settings(&fake, &chans);
        LineTest {
            app: crate::helpers::spawn_app_from(s, tune).await,
            fake,
            http: reqwest::Client::new(),
        }
    }

    pub fn chan(&self, id: &str) -> &'static Chan {
        globals().chans.iter().find(|c| c.id == id).unwrap()
    }

    pub fn webhook_url(&self, channel: &str) -> String {
        format!("{}/connectors/line/webhook/{channel}", self.app.base)
    }

    /// Posts `events` to `channel`'s webhook, signed by the SDK with the channel's secret.
    pub async fn post(&self, channel: &str, events: &[Value]) -> u16 {
        let body = body(events);
        let (sig, _) = sdk_sign(&self.chan(channel).secret, &body).await;
        self.post_raw(channel, body, Some(&sig)).await
    }

    pub async fn post_raw(&self, channel: &str, body: String, sig: Option<&str>) -> u16 {
        let mut req = self
            .http
            .post(self.webhook_url(channel))
            .header("content-type", "application/json")
            .body(body);
        if let Some(s) = sig {
            req = req.header("x-line-signature", s);
        }
        req.send().await.expect("webhook request").status().as_u16()
    }

    pub fn line(&self) -> &tsunagu::connectors::line::Line {
        self.app.state.line.as_deref().expect("LINE connector on")
    }

    /// Checks every request the gateway made with the official SDK's models, then stops.
    pub async fn finish(self) {
        let problems = self.fake.problems();
        assert!(problems.is_empty(), "fake LINE API found: {problems:?}");
        let requests = self.fake.for_sdk_check();
        if !requests.is_empty() {
            let v = SDK.call(json!({"op":"check","requests":requests})).await;
            assert_eq!(v["ok"], true, "{v}");
        }
        self.app.stop().await;
    }
}
