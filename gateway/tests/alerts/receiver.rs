//! A webhook receiver on loopback (axum): it checks each delivery's signature and timestamp as
//! an organisation's receiver would (HMAC-SHA256 over `"<timestamp>.<body>"`, computed here
//! with `hmac` and `sha2`, not the gateway's function), records it, and answers with the
//! statuses it is told to (then 200).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub body: Value,
    pub raw: String,
    /// `Some(true)`: signed and the signature and timestamp check out.
    pub signature_ok: Option<bool>,
    pub delivery_id: String,
    pub alert_id: String,
}

#[derive(Default)]
struct Inner {
    got: Vec<Delivery>,
    /// Statuses to answer before answering 200.
    plan: VecDeque<u16>,
}

#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    secret: Arc<Vec<u8>>,
    /// How far a timestamp may be from the (gateway's) clock: the tests' manual clock sits
    /// at a fixed day, so the receiver is told what "now" is.
    now_s: Arc<Mutex<u64>>,
    pub base: String,
}

fn verify(secret: &[u8], headers: &HeaderMap, body: &[u8], now_s: u64) -> Option<bool> {
    let sig = headers.get("x-tsunagu-signature")?.to_str().ok()?;
    let ts: u64 = headers
        .get("x-tsunagu-timestamp")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    let want = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    Some(sig == want && ts.abs_diff(now_s) <= 300)
}

async fn hook(
    State(r): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now_s = *r.now_s.lock().unwrap();
    let d = Delivery {
        path: uri.path().to_owned(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw: String::from_utf8_lossy(&body).into_owned(),
        signature_ok: verify(&r.secret, &headers, &body, now_s),
        delivery_id: header(&headers, "x-tsunagu-delivery"),
        alert_id: header(&headers, "x-tsunagu-alert"),
    };
    let mut inner = r.inner.lock().unwrap();
    inner.got.push(d);
    let status = inner.plan.pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

impl Receiver {
    pub async fn start(secret: &str, now_ms: u64) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            inner: Arc::default(),
            secret: Arc::new(secret.as_bytes().to_vec()),
            now_s: Arc::new(Mutex::new(now_ms / 1000)),
            base: format!("http://{}", listener.local_addr().unwrap()),
        };
        let app = Router::new()
            .route("/{*path}", post(hook))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    /// The next answers (then 200).
    pub fn answer(&self, statuses: &[u16]) {
        self.inner.lock().unwrap().plan.extend(statuses);
    }

    pub fn set_now(&self, now_ms: u64) {
        *self.now_s.lock().unwrap() = now_ms / 1000;
    }

    pub fn got(&self) -> Vec<Delivery> {
        self.inner.lock().unwrap().got.clone()
    }

    /// Waits until at least `n` deliveries arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Delivery> {
        let start = Instant::now();
        loop {
            let g = self.got();
            if g.len() >= n {
                return g;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{n} webhook deliveries arrive (have {})",
                g.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
