//! The flood scenario: steady conversations with and without one flooding person.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tsunagu_protocol::{ErrorCode, EventBody, Side};

use crate::clients::login;
use crate::frames::{self, new_id, Received};
use crate::gateway::{cpu_of, Gateway};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(clap::Args, Clone)]
pub struct FloodArgs {
    /// The gateway binary (default: `gateway` beside this binary).
    #[arg(long)]
    gateway: Option<PathBuf>,
    /// Steady conversations.
    #[arg(long, default_value_t = 60)]
    visitors: usize,
    /// Operators holding them.
    #[arg(long, default_value_t = 10)]
    operators: usize,
    /// Messages per second per steady person.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Seconds of load per phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Baseline and flood phases, interleaved, this many times each.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Pin the gateway to this core (`taskset`); run this tool on another one.
    #[arg(long)]
    server_core: Option<usize>,
}

/// One phase's results.
struct Phase {
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    delivered: u64,
    sent: u64,
    flood_sent: u64,
    flood_acked: u64,
    flood_limited: u64,
    server_cpu_per_1k_ms: f64,
    generator_busy: f64,
}

async fn connect(base: &str, path: &str, cookie: Option<&str>) -> anyhow::Result<Ws> {
    let mut req = format!("{}{}", base.replacen("http", "ws", 1), path).into_client_request()?;
    req.headers_mut().insert("origin", base.parse()?);
    if let Some(c) = cookie {
        req.headers_mut().insert("cookie", c.parse()?);
    }
    Ok(tokio_tungstenite::connect_async(req).await?.0)
}

async fn send(ws: &mut Ws, frame: String) -> anyhow::Result<()> {
    ws.send(Message::text(frame)).await?;
    Ok(())
}

async fn until(
    ws: &mut Ws,
    what: &str,
    pred: impl Fn(&Received) -> bool,
) -> anyhow::Result<Received> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .with_context(|| format!("waiting for {what}"))?
            .with_context(|| format!("socket closed waiting for {what}"))??;
        if let Message::Text(t) = msg {
            // A frame of a shape not read here is skipped like one the predicate refuses.
            if let Some(v) = Received::parse(t.as_str()).filter(|v| pred(v)) {
                return Ok(v);
            }
        }
    }
}

/// A person: starts a conversation, returns the socket once welcomed.
async fn visitor(base: &str) -> anyhow::Result<Ws> {
    let mut ws = connect(base, "/ws/visitor", None).await?;
    send(&mut ws, frames::hello_start(new_id())).await?;
    until(&mut ws, "welcome", |v| matches!(v, Received::Welcome)).await?;
    Ok(ws)
}

/// The flooder starts this long before the steady people write, and both phases wait as long:
/// latency is measured while a flood is under way, not while the generator pushes its first
/// burst into the kernel's socket buffers.
const WARMUP: Duration = Duration::from_secs(1);

/// Padding so each message is about 150 bytes of JSON, like a short chat line.
const PAD: &str = "あいうえおかきくけこさしすせそたちつてと";

async fn run_phase(
    args: &FloodArgs,
    bin: &std::path::Path,
    with_flood: bool,
) -> anyhow::Result<Phase> {
    let total = args.visitors + usize::from(with_flood);
    let capacity = total.div_ceil(args.operators) as u32 + 1;
    let gw = Gateway::start(bin, args.operators, capacity, args.server_core).await?;
    let base = gw.base.clone();

    // Operators sign in and go on duty.
    let mut ops = Vec::new();
    for i in 0..args.operators {
        let cookie = login(&base, &format!("op{i}")).await?;
        let mut ws = connect(&base, "/ws/operator", Some(&cookie)).await?;
        send(&mut ws, frames::operator_hello(new_id())).await?;
        until(&mut ws, "operator welcome", |v| {
            matches!(v, Received::Welcome)
        })
        .await?;
        ops.push(ws);
    }
    // People arrive; each operator takes its share.
    let mut people = Vec::new();
    for _ in 0..total {
        people.push(visitor(&base).await?);
    }
    let per_op = total.div_ceil(args.operators);
    let mut taken = 0;
    for ws in ops.iter_mut() {
        for _ in 0..per_op {
            if taken == total {
                break;
            }
            let cid = new_id();
            send(ws, frames::take_next(cid)).await?;
            until(ws, "take_next reply", |v| v.answers() == Some(cid)).await?;
            until(ws, "conversation", |v| matches!(v, Received::Conversation)).await?;
            taken += 1;
        }
    }
    let flooder = if with_flood { people.pop() } else { None };

    // Operators receive; latency from the scheduled send time carried in the text.
    let origin = Instant::now();
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let delivered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut readers = Vec::new();
    for mut ws in ops {
        let hist = Arc::clone(&hist);
        let delivered = Arc::clone(&delivered);
        let stop = Arc::clone(&stop);
        readers.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.notified() => break,
                    msg = ws.next() => {
                        let Some(Ok(Message::Text(t))) = msg else { break };
                        let Some(Received::Event {
                            event: EventBody::Message { from: Side::Visitor, text, .. },
                        }) = Received::parse(t.as_str()) else { continue };
                        if let Some(us) = text.strip_prefix("t:").and_then(|r| r.split(':').next()).and_then(|n| n.parse::<u64>().ok()) {
                            let now = origin.elapsed().as_micros() as u64;
                            let _ = hist.lock().map(|mut h| h.record(now.saturating_sub(us).max(1)));
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            ws
        }));
    }

    let cpu_before = gw.cpu();
    let self_before = cpu_of(std::process::id());
    let wall = Instant::now();
    let duration = Duration::from_secs(args.seconds);
    let sent = Arc::new(AtomicU64::new(0));
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let mut writers = Vec::new();
    for (i, mut ws) in people.into_iter().enumerate() {
        let sent = Arc::clone(&sent);
        writers.push(tokio::spawn(async move {
            // Spread the people over one interval so they do not all write at once.
            let offset = interval.mul_f64(i as f64 / 64.0 % 1.0);
            let start = origin.elapsed() + WARMUP + offset;
            let mut k = 0u32;
            loop {
                let at = start + interval * k;
                if at >= start + duration {
                    break;
                }
                let deadline = tokio::time::Instant::from_std(origin + at);
                // Read acks while waiting for the next scheduled send.
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => break,
                        msg = ws.next() => if msg.is_none() { return ws; },
                    }
                }
                let text = format!("t:{}:{}", at.as_micros(), PAD);
                if send(&mut ws, frames::visitor_send(new_id(), text))
                    .await
                    .is_err()
                {
                    return ws;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                k += 1;
            }
            ws
        }));
    }
    let flood_counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)));
    let flood_task = flooder.map(|ws| {
        let counts = Arc::clone(&flood_counts);
        tokio::spawn(async move {
            let end = Instant::now() + WARMUP + duration;
            let (tx, mut rx) = ws.split();
            let counts_r = Arc::clone(&counts);
            let reader = tokio::spawn(async move {
                while let Some(Ok(Message::Text(t))) = rx.next().await {
                    match Received::parse(t.as_str()) {
                        Some(Received::Ack { .. }) => {
                            counts_r.1.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Received::Error {
                            code: ErrorCode::RateLimited,
                            ..
                        }) => {
                            counts_r.2.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
            });
            let mut tx = tx;
            while Instant::now() < end {
                let text = format!("f:{PAD}");
                let frame = Message::text(frames::visitor_send(new_id(), text));
                // The gateway stops reading a socket over its allowance: sends then block on
                // TCP backpressure until the phase ends.
                let deadline = tokio::time::Instant::from_std(end);
                match tokio::time::timeout_at(deadline, tx.send(frame)).await {
                    Ok(Ok(())) => {}
                    _ => break,
                }
                counts.0.fetch_add(1, Ordering::Relaxed);
                // Yield so the steady writers on this core are not starved by the flooder.
                tokio::task::yield_now().await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            reader.abort();
        })
    });
    for w in writers {
        let _ = w.await;
    }
    if let Some(f) = flood_task {
        let _ = f.await;
    }
    // Let the last messages arrive.
    let sent_n = sent.load(Ordering::Relaxed);
    let drain_until = Instant::now() + Duration::from_secs(3);
    while delivered.load(Ordering::Relaxed) < sent_n && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = wall.elapsed();
    let server_cpu = gw.cpu().saturating_sub(cpu_before);
    let self_cpu = cpu_of(std::process::id()).saturating_sub(self_before);
    stop.notify_waiters();
    for r in readers {
        r.abort();
    }
    gw.stop().await;
    let h = hist.lock().map_err(|_| anyhow::anyhow!("histogram lock"))?;
    let delivered_n = delivered.load(Ordering::Relaxed);
    let flood_sent = flood_counts.0.load(Ordering::Relaxed);
    let messages = delivered_n + flood_counts.1.load(Ordering::Relaxed);
    Ok(Phase {
        p50_us: h.value_at_quantile(0.50),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        delivered: delivered_n,
        sent: sent_n,
        flood_sent,
        flood_acked: flood_counts.1.load(Ordering::Relaxed),
        flood_limited: flood_counts.2.load(Ordering::Relaxed),
        server_cpu_per_1k_ms: server_cpu.as_secs_f64() * 1000.0 / (messages.max(1) as f64 / 1000.0),
        generator_busy: self_cpu.as_secs_f64() / elapsed.as_secs_f64(),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub async fn flood(args: FloodArgs) -> anyhow::Result<()> {
    let bin = args.gateway.clone().unwrap_or_else(crate::default_gateway);
    anyhow::ensure!(
        bin.exists(),
        "no gateway binary at {} (cargo build --release -p gateway)",
        bin.display()
    );
    println!(
        "flood: {} steady people × {} msg/s, {} operators, {} s per phase, {} rounds, server core {:?}",
        args.visitors, args.rate, args.operators, args.seconds, args.rounds, args.server_core
    );
    println!("phase     round  sent  delivered  p50 ms  p99 ms  p99.9 ms  max ms  flood sent/acked/limited  server CPU ms/1k msg  generator busy");
    let (mut base_p99, mut flood_p99) = (Vec::new(), Vec::new());
    let mut discarded = 0;
    for round in 1..=args.rounds {
        for with_flood in [false, true] {
            let p = run_phase(&args, &bin, with_flood).await?;
            let name = if with_flood { "flood" } else { "baseline" };
            let busy = p.generator_busy;
            println!(
                "{name:<9} {round:>5} {:>5} {:>10} {:>7.2} {:>7.2} {:>9.2} {:>7.2} {:>10}/{}/{} {:>21.1} {:>14.0}%",
                p.sent, p.delivered, ms(p.p50_us), ms(p.p99_us), ms(p.p999_us), ms(p.max_us),
                p.flood_sent, p.flood_acked, p.flood_limited, p.server_cpu_per_1k_ms, busy * 100.0
            );
            if busy > 0.85 {
                println!("          (discarded: the generator's core was more than 85% busy)");
                discarded += 1;
                continue;
            }
            if p.delivered < p.sent {
                bail!(
                    "{} of {} messages were not delivered",
                    p.sent - p.delivered,
                    p.sent
                );
            }
            if with_flood {
                anyhow::ensure!(
                    p.flood_limited > 0,
                    "the flooder was never told rate_limited"
                );
                flood_p99.push(ms(p.p99_us));
            } else {
                base_p99.push(ms(p.p99_us));
            }
        }
    }
    let (b, f) = (median(base_p99), median(flood_p99));
    let ratio = f / b;
    println!();
    println!(
        "median p99: baseline {b:.2} ms, with a flooder {f:.2} ms: ratio {ratio:.2} (limit 1.5){}",
        if discarded > 0 {
            format!(", {discarded} phase(s) discarded")
        } else {
            String::new()
        }
    );
    println!("verdict: {}", if ratio <= 1.5 { "PASS" } else { "FAIL" });
    Ok(())
}
