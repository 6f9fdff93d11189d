//! The phone test harness: the real gateway on port 0 with `[voice]` pointing at a fake provider
//! REST API on loopback, webhooks signed by Twilio's official Python library, and TwiML answers
//! parsed by Python's XML parser.
//!
//! Process-wide (one per test binary): the log capture at trace level, the environment variables
//! holding the provider credentials, the Python helper process, and the list of phone numbers,
//! call ids and secrets used by any test (none may appear in a log line).

use std::sync::{LazyLock, Mutex};

use serde_json::{json, Value};
use tsunagu::config::Settings;
use ulid::Ulid;

use super::fake_provider::FakeProvider;
use crate::captured::Captured;
use crate::helpers::{Operator, TestApp};
use crate::python::PyHelper;

pub const SID_ENV: &str = "TSUNAGU_TEST_VOICE_ACCOUNT_SID";
pub const TOKEN_ENV: &str = "TSUNAGU_TEST_VOICE_AUTH_TOKEN";
/// The helpline's own number (what callers dial, and the caller id operators see).
pub const HELPLINE: &str = "+81312345678";

pub struct Globals {
    pub logs: Captured,
    pub account: String,
    pub token: String,
    /// Everything that must never be logged: caller and operator numbers, call ids, secrets.
    pub secrets: Mutex<Vec<String>>,
}

pub fn globals() -> &'static Globals {
    static G: LazyLock<Globals> = LazyLock::new(|| {
        let logs = Captured::default();
        let sink = logs.clone();
        tsunagu::telemetry::init("trace", false, move || sink.clone());
        let account = format!("AC{}", hex32());
        let token = format!("tok{}", hex32());
        // Edition 2021: set_var is safe; done once, before any test reads the environment.
        std::env::set_var(SID_ENV, &account);
        std::env::set_var(TOKEN_ENV, &token);
        Globals {
            logs,
            secrets: Mutex::new(vec![token.clone()]),
            account,
            token,
        }
    });
    &G
}

fn hex32() -> String {
    format!("{:032x}", Ulid::new().0)
}

/// Everything logged so far by any test of this binary, without terminal colour codes.
pub fn logs() -> String {
    globals().logs.text()
}

pub fn never_logged(s: String) -> String {
    globals().secrets.lock().unwrap().push(s.clone());
    s
}

fn digits(n: usize) -> String {
    let u = Ulid::new().0;
    let s = format!("{:039}", u % 10u128.pow(38));
    s[s.len() - n..].to_owned()
}

/// A caller: a call id and a mobile number (neither to be logged).
pub struct Caller {
    pub sid: String,
    pub from: String,
}

pub fn new_caller() -> Caller {
    Caller {
        sid: never_logged(format!("CA{}", hex32())),
        from: never_logged(format!("+8190{}", digits(8))),
    }
}

/// An operator's phone number (not to be logged either).
pub fn operator_phone() -> String {
    never_logged(format!("+8180{}", digits(8)))
}

// ---------------------------------------------------------------------------------------------
// Twilio's library and the XML parser, as a helper process
// ---------------------------------------------------------------------------------------------

static PY: PyHelper = PyHelper::new(
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/voice/sdk.py"),
    "Twilio/XML",
    "twilio",
);

/// `X-Twilio-Signature` for a POST of `params` to `url`, computed by Twilio's library.
pub async fn twilio_sign(token: &str, url: &str, params: &[(String, String)]) -> String {
    let v = PY
        .call(json!({"op":"sign","token":token,"url":url,"params":params}))
        .await;
    v["signature"].as_str().unwrap().to_owned()
}

/// A TwiML document parsed by Python's XML parser: the verbs under `<Response>`.
pub async fn parse_twiml(xml: &str) -> Vec<Value> {
    let v = PY.call(json!({"op":"twiml","xml":xml})).await;
    v["verbs"].as_array().unwrap().clone()
}

pub fn verbs(doc: &[Value]) -> Vec<String> {
    doc.iter()
        .map(|v| v["verb"].as_str().unwrap().to_owned())
        .collect()
}

/// Everything said, joined.
pub fn said(doc: &[Value]) -> String {
    doc.iter()
        .filter(|v| v["verb"] == "Say")
        .map(|v| v["text"].as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that the document says every one of `needles`.
pub fn assert_says(doc: &[Value], needles: &[&str]) {
    let words = said(doc);
    for needle in needles {
        assert!(words.contains(needle), "{needle} not in {words}");
    }
}

/// Asserts the document's last verb (what the call does next), and returns all its verbs.
pub fn assert_ends_with(doc: &[Value], verb: &str) -> Vec<String> {
    let v = verbs(doc);
    assert_eq!(v.last().unwrap(), verb, "{v:?}");
    v
}

/// Checks what every document must be: only known verbs, every `Say` in Japanese, no recording.
pub fn check_doc(doc: &[Value]) {
    fn walk(v: &Value) {
        let verb = v["verb"].as_str().unwrap();
        assert!(
            ["Say", "Play", "Pause", "Redirect", "Dial", "Number", "Client", "Hangup"]
                .contains(&verb),
            "unexpected verb {verb}"
        );
        if verb == "Say" {
            assert_eq!(v["attrs"]["language"], "ja-JP", "{v}");
        }
        for (k, _) in v["attrs"].as_object().unwrap() {
            assert!(!k.to_ascii_lowercase().starts_with("record"), "{v}");
        }
        for c in v["children"].as_array().unwrap() {
            walk(c);
        }
    }
    for v in doc {
        walk(v);
    }
}

// ---------------------------------------------------------------------------------------------
// The app with a fake provider
// ---------------------------------------------------------------------------------------------

pub struct VoiceTest {
    pub app: TestApp,
    pub fake: FakeProvider,
    pub http: reqwest::Client,
}

/// Settings for phone tests: the fake provider, short retries, no automatic offers.
pub fn settings(fake: &FakeProvider) -> Settings {
    let mut s = Settings::for_tests();
    s.server.heartbeat_ms = 5_000;
    s.conversation.auto_offer = false;
    s.voice.enabled = true;
    s.voice.api_base = fake.base.clone();
    s.voice.account_sid_env = SID_ENV.into();
    s.voice.auth_token_env = TOKEN_ENV.into();
    s.voice.retry_base_ms = 20;
    s.voice.retry_max_ms = 100;
    s.voice.retry_attempts = 4;
    s.voice.request_timeout_ms = 1_000;
    s.voice.announce_every_secs = 5;
    s.voice.hold_silence_secs = 600;
    s
}

impl VoiceTest {
    pub async fn start() -> VoiceTest {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Settings)) -> VoiceTest {
        let g = globals();
        // Start the helper (imports take a moment) before any socket is open.
        parse_twiml("<Response/>").await;
        let fake = FakeProvider::start(&g.account, &g.token).await;
        let s = settings(&fake);
        VoiceTest {
            app: crate::helpers::spawn_app_from(s, tune).await,
            fake,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.base)
    }

    /// Posts `params` to `path`, signed by Twilio's library over `signed_url` with `token`.
    pub async fn post_signed(
        &self,
        path: &str,
        params: &[(String, String)],
        signed_url: &str,
        token: &str,
    ) -> (u16, String) {
        let sig = twilio_sign(token, signed_url, params).await;
        self.post_raw(path, params, Some(&sig)).await
    }

    /// Posts `params` to `path` as the provider would (signed with the real token and URL).
    pub async fn post(&self, path: &str, params: &[(String, String)]) -> (u16, String) {
        let url = self.url(path);
        self.post_signed(path, params, &url, &globals().token).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        params: &[(String, String)],
        sig: Option<&str>,
    ) -> (u16, String) {
        let mut req = self.http.post(self.url(path)).form(params);
        if let Some(s) = sig {
            req = req.header("x-twilio-signature", s);
        }
        let res = req.send().await.expect("webhook request");
        let status = res.status().as_u16();
        (status, res.text().await.unwrap())
    }

    /// A call arrives; returns the status and the parsed TwiML (checked for language and
    /// recording).
    pub async fn incoming(&self, c: &Caller) -> (u16, Vec<Value>) {
        let (status, body) = self
            .post("/connectors/voice/incoming", &incoming_params(c))
            .await;
        (status, self.doc(status, &body).await)
    }

    /// The hold loop comes back.
    pub async fn wait(&self, c: &Caller) -> Vec<Value> {
        let (status, body) = self
            .post("/connectors/voice/wait", &call_params(c, "in-progress"))
            .await;
        assert_eq!(status, 200, "{body}");
        self.doc(status, &body).await
    }

    pub async fn status(&self, c: &Caller, call_status: &str) -> u16 {
        self.post("/connectors/voice/status", &call_params(c, call_status))
            .await
            .0
    }

    pub async fn dial_done(&self, c: &Caller, dial_status: &str) -> Vec<Value> {
        let mut p = call_params(c, "in-progress");
        p.push(("DialCallStatus".into(), dial_status.into()));
        p.push(("DialCallSid".into(), format!("CA{}", hex32())));
        let (status, body) = self.post("/connectors/voice/dial-done", &p).await;
        assert_eq!(status, 200, "{body}");
        self.doc(status, &body).await
    }

    async fn doc(&self, status: u16, body: &str) -> Vec<Value> {
        if status != 200 {
            return Vec::new();
        }
        let doc = parse_twiml(body).await;
        check_doc(&doc);
        doc
    }

    /// An operator on duty whose calls ring at a phone number (capacity 2).
    pub async fn phone_operator(&self, name: &str) -> (Operator, String) {
        let phone = operator_phone();
        // The phone is on the account before the console connects: only operators with one are
        // offered calls.
        let (uid, cookie) = self
            .app
            .session(name, tsunagu::auth::Role::Operator, Some(2))
            .await;
        self.app
            .state
            .accounts
            .set_phone(uid.parse().unwrap(), Some(phone.clone()))
            .await
            .unwrap();
        let op = self
            .app
            .operator_with(name, &uid, &cookie, serde_json::json!({}), true)
            .await;
        (op, phone)
    }

    pub fn voice(&self) -> &tsunagu::connectors::voice::Voice {
        self.app.state.voice.as_deref().expect("voice connector on")
    }

    pub async fn finish(self) {
        let problems = self.fake.problems();
        assert!(problems.is_empty(), "fake provider found: {problems:?}");
        self.app.stop().await;
    }
}

/// What the provider posts for every callback of a call.
pub fn call_params(c: &Caller, call_status: &str) -> Vec<(String, String)> {
    let g = globals();
    [
        ("AccountSid", g.account.as_str()),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", c.sid.as_str()),
        ("CallStatus", call_status),
        ("Called", HELPLINE),
        ("Caller", c.from.as_str()),
        ("Direction", "inbound"),
        ("From", c.from.as_str()),
        ("FromCountry", "JP"),
        ("To", HELPLINE),
        ("ToCountry", "JP"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

pub fn incoming_params(c: &Caller) -> Vec<(String, String)> {
    call_params(c, "ringing")
}
