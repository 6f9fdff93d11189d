//! Simulated people and operators: opening their sockets on any target, and the loops they run
//! while a scenario measures (operators accept offers and time what they receive; people write
//! on an open-loop schedule).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::watch;

use tsunagu_protocol::ClientId;

use crate::frames;
use crate::gateway::PASSWORD;
use crate::net::{self, source_addr, stamp, str_field, Connect, Sock};
use crate::servers::Server;

pub type Hist = Histogram<u64>;

pub fn hist() -> Hist {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds are valid")
}

/// Padding so a chat frame is 100-200 bytes of JSON, like a short chat line.
pub const PAD: &str = "あいうえおかきくけこさしすせそたちつてと";

/// Source addresses: operators from 0, people from here on (each client its own address).
pub const VISITOR_ADDR_BASE: usize = 1000;

/// An offer as it reached an operator.
#[derive(Clone, Copy, Debug, Default)]
pub struct OfferSeen {
    /// µs since `origin` when it arrived.
    pub at_us: u64,
    /// Its `waited_ms`: how long the server says the person had been queued.
    pub waited_ms: u64,
    /// The gateway's `arrival` and `offered_at` (the peers send neither): the server's own
    /// arrival order and offer time, for an exact fairness check.
    pub order: Option<(u64, u64)>,
}

/// What every operator of a scenario records, shared between their tasks.
pub struct Shared {
    pub origin: Instant,
    pub latency: Mutex<Hist>,
    pub delivered: AtomicU64,
    /// Conversation id → its offer as an operator saw it.
    pub offers: Mutex<HashMap<String, OfferSeen>>,
    /// Client id of a person's message → how many times operators received it.
    pub ids: Option<Mutex<HashMap<String, u32>>>,
}

impl Shared {
    pub fn new(origin: Instant, track_ids: bool) -> Arc<Shared> {
        Arc::new(Shared {
            origin,
            latency: Mutex::new(hist()),
            delivered: AtomicU64::new(0),
            offers: Mutex::new(HashMap::new()),
            ids: track_ids.then(|| Mutex::new(HashMap::new())),
        })
    }

    pub fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    /// Clears the latency histogram and the delivered count (between phases).
    pub fn reset_latency(&self) {
        if let Ok(mut h) = self.latency.lock() {
            h.reset();
        }
        self.delivered.store(0, Ordering::Relaxed);
    }

    pub fn latency(&self) -> Hist {
        self.latency
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| hist())
    }
}

/// Signs an operator in (the gateway only: peers take anyone) and returns the session cookie.
pub async fn login(base: &str, user: &str) -> anyhow::Result<String> {
    let res = reqwest::Client::new()
        .post(format!("{base}/api/login"))
        .header("origin", base)
        .json(&json!({"username": user, "password": PASSWORD}))
        .send()
        .await?;
    if !res.status().is_success() {
        bail!("login {user}: {}", res.status());
    }
    let cookie = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("no session cookie")?;
    Ok(cookie.to_owned())
}

/// Operator number `i`: signed in, welcomed, and on duty if asked.
pub async fn operator(
    server: &Server,
    i: usize,
    on_duty: bool,
    recv_buffer: Option<u32>,
) -> anyhow::Result<Sock> {
    let base = server.operator_base(i);
    let cookie = if server.target.is_gateway() {
        Some(login(&base, &format!("op{i}")).await?)
    } else {
        None
    };
    let mut sock = Sock::connect(Connect {
        base: &base,
        role: "operator",
        framing: server.target.framing(),
        cookie: cookie.as_deref(),
        source: source_addr(i),
        recv_buffer,
    })
    .await?;
    sock.send(&frames::operator_hello(frames::new_id())).await?;
    sock.until("\"welcome\"").await?;
    if on_duty && server.target.has_queue() {
        sock.send(&frames::on_duty(frames::new_id())).await?;
        sock.until("\"presence\"").await?;
    }
    Ok(sock)
}

/// Opens person number `i`'s socket (no hello yet).
pub async fn visitor_socket(server: &Server, i: usize) -> anyhow::Result<Sock> {
    Sock::connect(Connect {
        base: &server.visitor_base(i),
        role: "visitor",
        framing: server.target.framing(),
        cookie: None,
        source: source_addr(VISITOR_ADDR_BASE + i),
        recv_buffer: None,
    })
    .await
}

pub fn hello_start() -> String {
    frames::hello_start(frames::new_id())
}

/// A person's open socket: the welcome frame, and the seq of the operator's join (0 if none).
pub struct Person {
    pub sock: Sock,
    pub welcome: String,
    pub last_seq: u64,
}

/// Person number `i`: connected, welcomed, and (where the target has a queue and `wait_joined`)
/// with an operator.
pub async fn visitor(server: &Server, i: usize, wait_joined: bool) -> anyhow::Result<Person> {
    let mut sock = visitor_socket(server, i).await?;
    sock.send(&hello_start()).await?;
    let welcome = sock.until("\"welcome\"").await?;
    let mut last_seq = 0;
    if wait_joined && server.target.has_queue() {
        let joined = sock.until("operator_joined").await?;
        last_seq = num_field(&joined, "seq").unwrap_or(0);
    }
    Ok(Person {
        sock,
        welcome,
        last_seq,
    })
}

/// Opens `n` people with at most `parallel` handshakes in flight, returned in `range` order.
pub async fn visitors(
    server: &Server,
    range: std::ops::Range<usize>,
    wait_joined: bool,
    parallel: usize,
) -> anyhow::Result<Vec<Person>> {
    use futures_util::StreamExt;
    futures_util::stream::iter(range)
        .map(|i| visitor(server, i, wait_joined))
        // In order: person k of the result is person number k (its node and source address).
        .buffered(parallel)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// How an operator's loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum OpEnd {
    /// Still open when the scenario stopped it.
    Open,
    /// The server closed it (or it failed).
    Closed,
}

/// An operator's loop: accepts every offer, records each person's message it receives.
/// A `slow` operator stops reading while `stall` is true (its socket's small receive buffer then
/// fills and the server must hold or drop what it cannot send).
pub async fn operator_loop(
    mut sock: Sock,
    sh: Arc<Shared>,
    slow: bool,
    mut stall: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) -> OpEnd {
    loop {
        if slow && *stall.borrow() {
            tokio::select! {
                _ = stall.changed() => continue,
                _ = stop.changed() => return OpEnd::Open,
            }
        }
        tokio::select! {
            _ = stop.changed() => return OpEnd::Open,
            _ = stall.changed(), if slow => continue,
            m = sock.recv() => match m {
                Ok(Some(t)) => {
                    if operator_frame(&mut sock, &sh, &t).await.is_err() {
                        return OpEnd::Closed;
                    }
                }
                _ => return OpEnd::Closed,
            },
        }
    }
}

async fn operator_frame(sock: &mut Sock, sh: &Shared, t: &str) -> anyhow::Result<()> {
    let person_message = (t.starts_with(r#"{"type":"event""#)
        && t.contains(r#""kind":"message""#)
        && t.contains(r#""from":"visitor""#))
        || t.starts_with(r#"{"type":"send""#);
    if person_message {
        if let Some(at) = stamp(t) {
            let now = sh.now_us();
            if let Ok(mut h) = sh.latency.lock() {
                let _ = h.record(now.saturating_sub(at).max(1));
            }
            sh.delivered.fetch_add(1, Ordering::Relaxed);
            if let (Some(ids), Some(cid)) = (&sh.ids, str_field(t, "id")) {
                if let Ok(mut m) = ids.lock() {
                    *m.entry(cid.to_owned()).or_default() += 1;
                }
            }
        }
    } else if t.starts_with(r#"{"type":"offer""#) {
        let conv = str_field(t, "conversation").context("offer without conversation")?;
        let now = sh.now_us();
        let seen = OfferSeen {
            at_us: now,
            waited_ms: net::num_field(t, "waited_ms").unwrap_or(0),
            order: net::num_field(t, "arrival").zip(net::num_field(t, "offered_at")),
        };
        if let Ok(mut m) = sh.offers.lock() {
            m.insert(conv.to_owned(), seen);
        }
        sock.send(&frames::accept(frames::new_id(), conv)?).await?;
    }
    Ok(())
}

/// A steady writer's schedule: every `interval_us` from `start_us` (µs since the origin) until
/// `end_us`, shifted by the writer's own offset so that writers do not all write at once.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plan {
    pub start_us: u64,
    pub interval_us: u64,
    pub end_us: u64,
}

/// The chat frame a person sends, carrying its scheduled send time.
pub fn chat_frame(cid: ClientId, at_us: u64) -> String {
    frames::visitor_send(cid, format!("t:{at_us}:{PAD}"))
}

/// A person writing on an open-loop schedule: each message at its scheduled time, whatever the
/// server's answers; the answers are read (so the socket never backs up) but not parsed.
pub async fn writer_loop(
    mut sock: Sock,
    origin: Instant,
    phase: f64,
    mut plan: watch::Receiver<Plan>,
    mut stop: watch::Receiver<bool>,
    sent: Arc<AtomicU64>,
) {
    let mut next: Option<(u64, Plan)> = None;
    // The wait for the next send, kept across the loop's turns (a new one only when `next`
    // changes): `clock::sleep_until` registers a deadline each time it is made.
    let wait_for = |next: &Option<(u64, Plan)>| {
        let at = match next {
            Some((at, _)) => origin + Duration::from_micros(*at),
            None => Instant::now() + Duration::from_secs(3600),
        };
        Box::pin(crate::clock::sleep_until(at))
    };
    let mut due = wait_for(&next);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            r = plan.changed() => {
                if r.is_err() { return; }
                let p = *plan.borrow();
                next = (p.interval_us > 0)
                    .then(|| (p.start_us + (p.interval_us as f64 * phase) as u64, p));
                due = wait_for(&next);
            }
            _ = &mut due => {
                let Some((at, p)) = next else {
                    due = wait_for(&next);
                    continue;
                };
                if sock.send(&chat_frame(frames::new_id(), at)).await.is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                let following = at + p.interval_us;
                next = (following < p.end_us).then_some((following, p));
                due = wait_for(&next);
            }
            m = sock.recv() => if !matches!(m, Ok(Some(_))) { return; },
        }
    }
}

/// Holds a socket open (reading, so that pings are answered) until `stop`.
pub async fn idle_loop(mut sock: Sock, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            m = sock.recv() => if !matches!(m, Ok(Some(_))) { return; },
        }
    }
}

/// The `token` and `conversation` of a visitor's welcome.
pub fn welcome_ids(welcome: &str) -> (String, String) {
    (
        str_field(welcome, "token").unwrap_or_default().to_owned(),
        str_field(welcome, "conversation")
            .unwrap_or_default()
            .to_owned(),
    )
}

pub use net::num_field;
