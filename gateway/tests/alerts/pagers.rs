//! The setting of the LINE and phone channel tests: the alert world with the LINE connector
//! pointed at the fake Messaging API of the connector's tests (webhooks signed by LINE's
//! official SDK) and the phone connector pointed at the fake telephony API (requests signed by
//! Twilio's official library, TwiML parsed by Python's XML parser); the process-wide log
//! capture, so a test can check what was never logged.

use std::sync::LazyLock;

use serde_json::{json, Value};
use tsunagu::connectors::line::LineChannelSettings;
use ulid::Ulid;

use crate::captured::Captured;
use crate::fake_api::FakeLine;
use crate::fake_provider::FakeProvider;
use crate::harness::{world_with, World};
use crate::python::PyHelper;

pub const CHANNEL: &str = "npo1";
/// The organisation's number alert calls come from.
pub const HELPLINE: &str = "+81312345678";

pub struct Secrets {
    pub logs: Captured,
    pub line_secret: String,
    pub line_token: String,
    pub voice_sid: String,
    pub voice_token: String,
}

/// Once per test binary: the log capture and the connectors' credentials in the environment.
pub fn secrets() -> &'static Secrets {
    static S: LazyLock<Secrets> = LazyLock::new(|| {
        let logs = Captured::default();
        let sink = logs.clone();
        tsunagu::telemetry::init("trace", false, move || sink.clone());
        let s = Secrets {
            logs,
            line_secret: format!("line-secret-{}", Ulid::new()),
            line_token: format!("line-token-{}", Ulid::new()),
            voice_sid: format!("AC{:032x}", Ulid::new().0),
            voice_token: format!("tok{:032x}", Ulid::new().0),
        };
        // Edition 2021: set_var is safe; done once, before an app of this binary reads them.
        std::env::set_var("TSUNAGU_TEST_ALERTS_LINE_SECRET", &s.line_secret);
        std::env::set_var("TSUNAGU_TEST_ALERTS_LINE_TOKEN", &s.line_token);
        std::env::set_var("TSUNAGU_TEST_ALERTS_VOICE_SID", &s.voice_sid);
        std::env::set_var("TSUNAGU_TEST_ALERTS_VOICE_TOKEN", &s.voice_token);
        s
    });
    &S
}

/// Everything logged so far in this binary, without colour codes.
pub fn logs() -> String {
    secrets().logs.text()
}

static LINE_SDK: PyHelper = PyHelper::new(
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/line/sdk.py"),
    "LINE SDK",
    "line-bot-sdk",
);

static TWILIO: PyHelper = PyHelper::new(
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/voice/sdk.py"),
    "Twilio SDK",
    "twilio",
);

pub struct Paged {
    pub w: World,
    pub line: FakeLine,
    pub phone: FakeProvider,
    pub http: reqwest::Client,
}

/// The alert world of `people` with both connectors on.
pub async fn paged(people: usize, tune: impl FnOnce(&mut tsunagu::config::Settings)) -> Paged {
    let s = secrets();
    // The helpers' imports take a second or two: before any clock matters.
    LINE_SDK
        .call(json!({"op":"sign","secret":"warm","body":"{\"destination\":\"U0\",\"events\":[]}"}))
        .await;
    TWILIO
        .call(json!({"op":"sign","token":"t","url":"http://x/","params":[]}))
        .await;
    let line = FakeLine::start(&[s.line_token.as_str()]).await;
    let phone = FakeProvider::start(&s.voice_sid, &s.voice_token).await;
    let (line_base, phone_base) = (line.base.clone(), phone.base.clone());
    let w = world_with(people, None, move |st| {
        st.line.api_base = line_base;
        st.line.retry_base_ms = 20;
        st.line.retry_max_ms = 100;
        st.line.retry_attempts = 3;
        st.line.request_timeout_ms = 1_000;
        st.line.channels = vec![LineChannelSettings {
            id: CHANNEL.into(),
            secret_env: "TSUNAGU_TEST_ALERTS_LINE_SECRET".into(),
            token_env: "TSUNAGU_TEST_ALERTS_LINE_TOKEN".into(),
            language: "ja".into(),
            priority: 0,
        }];
        st.voice.enabled = true;
        st.voice.api_base = phone_base;
        st.voice.account_sid_env = "TSUNAGU_TEST_ALERTS_VOICE_SID".into();
        st.voice.auth_token_env = "TSUNAGU_TEST_ALERTS_VOICE_TOKEN".into();
        st.voice.retry_base_ms = 20;
        st.voice.retry_max_ms = 100;
        st.voice.retry_attempts = 3;
        st.alerts.delivery.call_from = Some(HELPLINE.into());
        tune(st);
    })
    .await;
    Paged {
        w,
        line,
        phone,
        http: reqwest::Client::new(),
    }
}

impl Paged {
    /// Posts a text message from LINE user `user` to the channel's webhook, signed by the SDK.
    pub async fn line_text(&self, user: &str, text: &str, reply_token: &str) -> u16 {
        let event = json!({
            "type": "message", "mode": "active", "timestamp": 1_763_900_000_000u64,
            "webhookEventId": Ulid::new().to_string(),
            "deliveryContext": {"isRedelivery": false},
            "source": {"type": "user", "userId": user},
            "replyToken": reply_token,
            "message": {"type": "text", "id": format!("{}", 400_000_000_000_000u64 + Ulid::new().0 as u64 % 1_000_000_000), "text": text, "quoteToken": "q"},
        });
        let body =
            json!({"destination": format!("U{:032x}", 0xfeed_u128), "events": [event]}).to_string();
        let v = LINE_SDK
            .call(json!({"op":"sign","secret":secrets().line_secret,"body":body}))
            .await;
        self.http
            .post(format!(
                "{}/connectors/line/webhook/{CHANNEL}",
                self.w.app.base
            ))
            .header("content-type", "application/json")
            .header("x-line-signature", v["signature"].as_str().unwrap())
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Person `i` asks for a LINE link code in the on-call panel: the answer (`code`,
    /// `expires_at`).
    pub async fn code_for(&self, i: usize) -> Value {
        let (_, name) = &self.w.people[i];
        let (_, cookie) = self
            .w
            .app
            .session(name, tsunagu::auth::Role::Coordinator, None)
            .await;
        let r = self
            .w
            .app
            .http()
            .post(format!("{}/api/oncall/line/code", self.w.app.base))
            .header("cookie", cookie)
            .header("origin", &self.w.app.base)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// The texts answered by reply token `token`, once the gateway has answered.
    pub async fn reply_to(&self, token: &str) -> Vec<String> {
        let reqs = self
            .line
            .wait_for("the reply", |r| {
                r.iter().any(|r| r.body["replyToken"] == token)
            })
            .await;
        reqs.iter()
            .find(|r| r.body["replyToken"] == token)
            .unwrap()
            .texts()
    }

    /// Links person `i` to a new LINE user (code sent from it) and returns that user's id.
    pub async fn link_line(&self, i: usize) -> String {
        let code = self.code_for(i).await["code"].as_str().unwrap().to_owned();
        let user = format!("U{:032x}", Ulid::new().0);
        let reply = format!("rt-{}", Ulid::new());
        assert_eq!(self.line_text(&user, &code, &reply).await, 200);
        self.reply_to(&reply).await;
        user
    }

    /// A request from the provider to `url` with form `params`, signed by Twilio's library.
    pub async fn provider_post(&self, url: &str, params: &[(&str, &str)]) -> reqwest::Response {
        let pairs: Vec<Value> = params.iter().map(|(k, v)| json!([k, v])).collect();
        let sig = TWILIO
            .call(json!({"op":"sign","token":secrets().voice_token,"url":url,"params":pairs}))
            .await;
        self.http
            .post(url)
            .header("x-twilio-signature", sig["signature"].as_str().unwrap())
            .form(params)
            .send()
            .await
            .unwrap()
    }

    /// Checks every request the gateway made to the fake Messaging API with LINE's SDK models
    /// (and the fake's own checks).
    pub async fn check_line_requests(&self) {
        let problems = self.line.problems();
        assert!(problems.is_empty(), "fake LINE API found: {problems:?}");
        let requests = self.line.for_sdk_check();
        let v = LINE_SDK
            .call(json!({"op":"check","requests":requests}))
            .await;
        assert_eq!(v["ok"], true, "{v}");
    }

    /// A TwiML document's verbs, as Python's XML parser reads them.
    pub async fn verbs(&self, xml: &str) -> Vec<Value> {
        TWILIO.call(json!({"op":"twiml","xml":xml})).await["verbs"]
            .as_array()
            .unwrap()
            .clone()
    }
}
