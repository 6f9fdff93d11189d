//! A fake telephony provider REST API on loopback (Twilio-compatible "update a call" and "create
//! a call"). It checks HTTP basic auth and the form body, records every request, and can be told
//! to fail the next requests with a status (429, 503, 404, …).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine as _;
use tokio::sync::Notify;

/// One request the gateway made.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub call_sid: String,
    pub twiml: String,
    pub status: u16,
}

/// One call the gateway asked the provider to place (the alert tests' calls; the phone tests
/// place none).
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub struct Created {
    pub to: String,
    pub from: String,
    /// Where the provider fetches the call's TwiML (POST, signed).
    pub url: String,
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    created: Vec<Created>,
    plan: VecDeque<u16>,
    problems: Vec<String>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
    account: String,
    token: String,
}

pub struct FakeProvider {
    pub base: String,
    shared: Shared,
}

impl FakeProvider {
    pub async fn start(account: &str, token: &str) -> FakeProvider {
        let shared = Shared {
            inner: Arc::default(),
            changed: Arc::default(),
            account: account.to_owned(),
            token: token.to_owned(),
        };
        let app = axum::Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/Calls.json",
                axum::routing::post(create_call),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Calls/{call}",
                axum::routing::post(update_call),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeProvider { base, shared }
    }

    /// The next requests are answered with these statuses, in order, and not applied.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.shared.inner.lock().unwrap().plan.extend(statuses);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.inner.lock().unwrap().requests.clone()
    }

    /// Requests for `call_sid` that the fake accepted (2xx).
    pub fn applied(&self, call_sid: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.call_sid == call_sid && r.status == 200)
            .collect()
    }

    /// The calls the gateway placed (create requests), in order.
    #[allow(dead_code)]
    pub fn created(&self) -> Vec<Created> {
        self.shared.inner.lock().unwrap().created.clone()
    }

    pub fn problems(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().problems.clone()
    }

    /// Waits (up to 10 s) until `pred` holds.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&FakeProvider) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.shared.changed.notified();
            if pred(self) {
                return;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}: {:?}",
                self.requests()
            );
            let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), notified).await;
        }
    }
}

/// What every request must carry: the account's basic auth, on the account's path.
fn check_auth(s: &Shared, account: &str, headers: &HeaderMap, what: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", s.account, s.token))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        problems.push(format!("bad or missing basic auth on {what}"));
    }
    if account != s.account {
        problems.push(format!("wrong account {account}"));
    }
    problems
}

/// Refuses any request that asks for a recording.
fn no_recording(form: &[(String, String)]) -> Vec<String> {
    form.iter()
        .filter(|(k, v)| {
            k.eq_ignore_ascii_case("record") || v.to_ascii_lowercase().contains("<record")
        })
        .map(|(k, v)| format!("asked for a recording: {k}={v}"))
        .collect()
}

/// `POST …/Calls.json`: places a call (recorded; its TwiML is fetched by the test).
async fn create_call(
    State(s): State<Shared>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let mut problems = check_auth(&s, &account, &headers, "a call create");
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let created = Created {
        to: field("To"),
        from: field("From"),
        url: field("Url"),
        status: 0,
    };
    if !created.to.starts_with('+') || !created.from.starts_with('+') {
        problems.push("To and From must be E.164 numbers".into());
    }
    if !created.url.starts_with("http") || !matches!(field("Method").as_str(), "" | "POST") {
        problems.push(format!(
            "a call needs a TwiML Url fetched by POST: {form:?}"
        ));
    }
    problems.extend(no_recording(&form));
    let status = {
        let mut inner = s.inner.lock().unwrap();
        let status = inner.plan.pop_front().unwrap_or(201);
        inner.problems.extend(problems);
        inner.created.push(Created { status, ..created });
        status
    };
    s.changed.notify_waiters();
    let sid = format!("CA{:032x}", ulid::Ulid::new().0);
    let body = serde_json::json!({"sid": sid, "status": "queued"});
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

async fn update_call(
    State(s): State<Shared>,
    Path((account, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let mut problems = check_auth(&s, &account, &headers, &call);
    let Some(call_sid) = call.strip_suffix(".json") else {
        problems.push(format!("path without .json: {call}"));
        return StatusCode::NOT_FOUND.into_response();
    };
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let twiml = form
        .iter()
        .find(|(k, _)| k == "Twiml")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    if twiml.is_empty() {
        problems.push(format!("no Twiml field: {form:?}"));
    }
    problems.extend(no_recording(&form));
    let status = {
        let mut inner = s.inner.lock().unwrap();
        let status = inner.plan.pop_front().unwrap_or(200);
        inner.problems.extend(problems);
        inner.requests.push(Recorded {
            call_sid: call_sid.to_owned(),
            twiml,
            status,
        });
        status
    };
    s.changed.notify_waiters();
    let body = serde_json::json!({"sid": call_sid, "status": "in-progress"});
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}
