//! A fake LINE Messaging API on loopback. It checks every request (bearer token, JSON shape of
//! the operations the connector uses, retry key format), records it, and behaves like LINE where
//! it matters: an accepted retry key answers 409 afterwards, a reply token works once. A test
//! can script failures per operation: a status (429, 500, 409, …), or a stall past the client's
//! time limit, before or after accepting the request.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::Notify;

/// What the fake does with the next request of one operation.
#[derive(Debug, Clone, Copy)]
pub enum Plan {
    /// Answer with this status without accepting anything.
    Status(u16),
    /// Accept the request (the message is delivered), then never answer in time: the client
    /// sees a network error although LINE got it.
    AcceptThenStall,
    /// Drop the connection without answering (and without accepting anything).
    Drop,
}

/// One request the gateway made.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub authorization: Option<String>,
    pub retry_key: Option<String>,
    pub body: Value,
    /// The status answered; 0 when the connection was dropped.
    pub status: u16,
    /// Whether this request delivered something to a person (first accepted push or reply).
    pub delivered: bool,
}

impl Recorded {
    pub fn texts(&self) -> Vec<String> {
        self.body["messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|m| m["text"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    plans: HashMap<String, VecDeque<Plan>>,
    accepted_keys: HashSet<String>,
    used_reply_tokens: HashSet<String>,
    problems: Vec<String>,
}

pub struct FakeLine {
    pub base: String,
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
    tokens: Arc<HashSet<String>>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
    tokens: Arc<HashSet<String>>,
}

pub const PUSH: &str = "/v2/bot/message/push";
pub const REPLY: &str = "/v2/bot/message/reply";
pub const LOADING: &str = "/v2/bot/chat/loading/start";
pub const MARK_READ: &str = "/v2/bot/chat/markAsRead";

/// How long a stalled answer takes: well past the gateway's request time limit in tests.
const STALL: Duration = Duration::from_secs(3);

impl FakeLine {
    /// Starts the fake; requests must carry one of `tokens` as bearer token.
    pub async fn start(tokens: &[&str]) -> FakeLine {
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner::default())),
            changed: Arc::new(Notify::new()),
            tokens: Arc::new(tokens.iter().map(|t| t.to_string()).collect()),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeLine {
            base,
            inner: shared.inner,
            changed: shared.changed,
            tokens: shared.tokens,
        }
    }

    /// Scripts the next answers to requests on `path`.
    pub fn plan(&self, path: &str, plans: &[Plan]) {
        let mut inner = self.inner.lock().unwrap();
        inner
            .plans
            .entry(path.to_owned())
            .or_default()
            .extend(plans.iter().copied());
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Problems found in requests (wrong token, bad body, bad retry key): must stay empty.
    pub fn problems(&self) -> Vec<String> {
        self.inner.lock().unwrap().problems.clone()
    }

    /// Texts delivered to LINE user `user` by push, in order (each delivery once).
    pub fn pushed_to(&self, user: &str) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|r| r.path == PUSH && r.delivered && r.body["to"] == user)
            .flat_map(|r| r.texts())
            .collect()
    }

    /// Every text delivered to anyone, by push or reply.
    pub fn delivered_texts(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|r| r.delivered)
            .flat_map(|r| r.texts())
            .collect()
    }

    /// Texts delivered through reply token `token`.
    pub fn replied_with(&self, token: &str) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|r| r.path == REPLY && r.delivered && r.body["replyToken"] == token)
            .flat_map(|r| r.texts())
            .collect()
    }

    /// Waits until `pred` holds over the recorded requests.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Recorded]) -> bool) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.changed.notified();
            let reqs = self.requests();
            if pred(&reqs) {
                return reqs;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                let paths: Vec<_> = reqs.iter().map(|r| (&r.path, r.status)).collect();
                panic!("fake LINE API: timed out waiting for {what}; requests: {paths:?}");
            }
            let _ = tokio::time::timeout(left, notified).await;
        }
    }

    /// Every request as the SDK helper's `check` takes it.
    pub fn for_sdk_check(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .map(|r| {
                json!({"path": r.path, "authorization": r.authorization,
                       "retry_key": r.retry_key, "body": r.body})
            })
            .collect()
    }

    pub fn token_known(&self, t: &str) -> bool {
        self.tokens.contains(t)
    }
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A non-empty string.
fn filled(v: &Value) -> bool {
    v.as_str().is_some_and(|t| !t.is_empty())
}

/// Checks a body against the parts of `messaging-api.yml` the connector uses.
fn spec_problems(path: &str, body: &Value, retry_key: Option<&str>) -> Vec<String> {
    let mut p = Vec::new();
    let text_messages = |p: &mut Vec<String>| match body["messages"].as_array() {
        Some(m) if (1..=5).contains(&m.len()) => {
            for msg in m {
                let len = msg["text"].as_str().map(|t| t.chars().count()).unwrap_or(0);
                if msg["type"] != "text" || !(1..=5000).contains(&len) {
                    p.push(format!("{path}: bad text message"));
                }
            }
        }
        _ => p.push(format!("{path}: messages must be 1 to 5")),
    };
    match path {
        PUSH => {
            if !filled(&body["to"]) {
                p.push("push: no `to`".into());
            }
            text_messages(&mut p);
            match retry_key {
                Some(k) if is_uuid(k) => {}
                Some(_) => p.push("push: retry key is not a UUID".into()),
                None => p.push("push: no X-Line-Retry-Key".into()),
            }
        }
        REPLY => {
            if !filled(&body["replyToken"]) {
                p.push("reply: no replyToken".into());
            }
            text_messages(&mut p);
        }
        LOADING => {
            if !filled(&body["chatId"]) {
                p.push("loading: no chatId".into());
            }
            if let Some(s) = body.get("loadingSeconds") {
                let ok = s
                    .as_u64()
                    .is_some_and(|s| (5..=60).contains(&s) && s % 5 == 0);
                if !ok {
                    p.push("loading: bad loadingSeconds".into());
                }
            }
        }
        MARK_READ => {
            if !filled(&body["markAsReadToken"]) {
                p.push("markAsRead: no markAsReadToken".into());
            }
        }
        other => p.push(format!("unexpected path {other}")),
    }
    p
}

async fn handle(State(s): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let retry_key = headers
        .get("x-line-retry-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let json_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);

    let mut problems = spec_problems(&path, &body, retry_key.as_deref());
    let bearer_ok = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| s.tokens.contains(t));
    if !bearer_ok {
        problems.push(format!("{path}: unknown bearer token"));
    }
    if !json_type {
        problems.push(format!("{path}: not application/json"));
    }

    let (status, stall, drop) = {
        let mut inner = s.inner.lock().unwrap();
        let plan = inner.plans.get_mut(&path).and_then(|q| q.pop_front());
        let (status, delivered, stall, drop) = if !problems.is_empty() {
            inner.problems.extend(problems);
            (if bearer_ok { 400 } else { 401 }, false, false, false)
        } else {
            match plan {
                Some(Plan::Status(code)) => (code, false, false, false),
                Some(Plan::Drop) => (0, false, false, true),
                Some(Plan::AcceptThenStall) => {
                    let fresh = accept(&mut inner, &path, &body, retry_key.as_deref());
                    (200, fresh, true, false)
                }
                None => {
                    if path == PUSH
                        && retry_key
                            .as_deref()
                            .is_some_and(|k| inner.accepted_keys.contains(k))
                    {
                        (409, false, false, false)
                    } else if path == REPLY
                        && inner
                            .used_reply_tokens
                            .contains(body["replyToken"].as_str().unwrap_or_default())
                    {
                        (400, false, false, false)
                    } else {
                        let fresh = accept(&mut inner, &path, &body, retry_key.as_deref());
                        (if path == LOADING { 202 } else { 200 }, fresh, false, false)
                    }
                }
            }
        };
        inner.requests.push(Recorded {
            path: path.clone(),
            authorization,
            retry_key,
            body,
            status,
            delivered,
        });
        (status, stall, drop)
    };
    s.changed.notify_waiters();
    if drop {
        // Unwinding out of the handler ends the connection's task: the socket closes with no
        // response, as a dropped connection does. `resume_unwind` skips the panic message.
        std::panic::resume_unwind(Box::new("planned connection drop"));
    }
    if stall {
        tokio::time::sleep(STALL).await;
    }
    let code = StatusCode::from_u16(status).unwrap();
    match (status, path.as_str()) {
        (200, PUSH) | (200, REPLY) => (
            code,
            Json(
                json!({"sentMessages":[{"id":"461230966842064897","quoteToken":"IStG5h1Tz7b..."}]}),
            ),
        )
            .into_response(),
        (200..=299, _) => (code, Json(json!({}))).into_response(),
        _ => (code, Json(json!({"message":"fake LINE API error"}))).into_response(),
    }
}

/// Accepts a push or reply: true if it is a new delivery.
fn accept(inner: &mut Inner, path: &str, body: &Value, retry_key: Option<&str>) -> bool {
    match path {
        PUSH => retry_key.is_none_or(|k| inner.accepted_keys.insert(k.to_owned())),
        REPLY => inner
            .used_reply_tokens
            .insert(body["replyToken"].as_str().unwrap_or_default().to_owned()),
        _ => true,
    }
}
