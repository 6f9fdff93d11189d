//! Scenarios (a)–(e) of the load-test issue, each against one started server, each returning
//! its measurements as JSON objects (one per row of the report). Against `gateway-redis` the
//! same code is scenario (f): clients spread over the nodes (`cluster::Layout`), and the storm
//! kills a node. Its peer `socketio-redis` is placed the same way (it has no storm).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clients::{self, chat_frame, hist, num_field, welcome_ids, OpEnd, Plan, Shared};
use crate::cluster::Layout;
use crate::frames;
use crate::gateway::cpu_of;
use crate::net::{str_field, Sock};
use crate::servers::{Bins, Server, Target};

/// Sizes of one suite run: `smoke` fits CI; `full` is the issue's size.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Size {
    pub name: &'static str,
    pub rounds: usize,
    pub idle_sessions: usize,
    pub idle_steps: usize,
    pub idle_operators: usize,
    pub idle_secs: f64,
    pub steady_visitors: usize,
    pub steady_operators: usize,
    pub rates: Vec<f64>,
    pub step_secs: f64,
    pub burst_visitors: usize,
    pub burst_rate: f64,
    pub burst_operators: usize,
    pub storm_sessions: usize,
    pub storm_operators: usize,
    pub storm_rate: f64,
    pub slow_visitors: usize,
    pub slow_operators: usize,
    pub slow_slow: usize,
    pub slow_rate: f64,
    pub slow_secs: f64,
}

impl Size {
    pub fn smoke() -> Size {
        Size {
            name: "smoke",
            rounds: 1,
            idle_sessions: 400,
            idle_steps: 2,
            idle_operators: 5,
            idle_secs: 1.0,
            steady_visitors: 40,
            steady_operators: 4,
            rates: vec![200.0, 1000.0],
            step_secs: 1.5,
            burst_visitors: 300,
            burst_rate: 1000.0,
            burst_operators: 10,
            storm_sessions: 300,
            storm_operators: 5,
            storm_rate: 150.0,
            slow_visitors: 40,
            slow_operators: 5,
            slow_slow: 1,
            slow_rate: 400.0,
            slow_secs: 2.0,
        }
    }

    pub fn full() -> Size {
        Size {
            name: "full",
            rounds: 3,
            idle_sessions: 18_000,
            idle_steps: 4,
            idle_operators: 100,
            idle_secs: 5.0,
            steady_visitors: 500,
            steady_operators: 10,
            rates: vec![1000.0, 5000.0, 10_000.0, 20_000.0],
            step_secs: 3.0,
            burst_visitors: 5000,
            burst_rate: 2000.0,
            burst_operators: 100,
            storm_sessions: 18_000,
            storm_operators: 100,
            storm_rate: 1000.0,
            slow_visitors: 400,
            slow_operators: 20,
            slow_slow: 4,
            slow_rate: 2000.0,
            slow_secs: 8.0,
        }
    }
}

/// A generator whose own core is busier than this is the bottleneck: its run is discarded.
pub const GENERATOR_BOUND: f64 = 0.85;

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// CPU time of this process (the generator).
fn self_cpu() -> Duration {
    cpu_of(std::process::id())
}

fn progress(msg: &str) {
    eprintln!("  {msg}");
}

/// Least-squares slope of y over x.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return f64::NAN;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let cov: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let var: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    cov / var
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

/// (a) Idle capacity: waiting people (and operators off duty) held open; RSS at each step and
/// idle CPU at the top.
pub async fn idle(bins: &Bins, target: Target, size: &Size) -> anyhow::Result<Value> {
    let n = size.idle_sessions;
    let server = Server::start(target, bins, size.idle_operators, 2, &[]).await?;
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = Vec::new();
    for i in 0..size.idle_operators {
        let sock = clients::operator(&server, i, false, None).await?;
        tasks.push(tokio::spawn(clients::idle_loop(sock, stop.clone())));
    }
    settle().await;
    let mut points = vec![(0.0, server.rss() as f64)];
    let step = n.div_ceil(size.idle_steps);
    let mut open = 0;
    let started = Instant::now();
    while open < n {
        let upto = (open + step).min(n);
        for p in clients::visitors(&server, open..upto, false, 64).await? {
            tasks.push(tokio::spawn(clients::idle_loop(p.sock, stop.clone())));
        }
        open = upto;
        settle().await;
        let rss = server.rss();
        progress(&format!(
            "{}: {open} waiting people, RSS {:.1} MB",
            target.name(),
            rss as f64 / 1e6
        ));
        points.push((open as f64, rss as f64));
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let cpu0 = server.cpu();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(size.idle_secs)).await;
    let idle_cpu = (server.cpu() - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    let bytes_per_session = slope(&points);
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    server.stop().await;
    Ok(json!({
        "sessions": n,
        "operators": size.idle_operators,
        "rss_points": points.iter().map(|(x, y)| json!([x, y])).collect::<Vec<_>>(),
        "bytes_per_session": bytes_per_session,
        "rss_top_mb": points.last().map(|p| p.1 / 1e6),
        "idle_cpu_pct": idle_cpu * 100.0,
        "setup_secs": connect_secs,
    }))
}

/// Conversations set up for a chat scenario: operators on duty holding every person.
struct Chat {
    server: Server,
    sh: Arc<Shared>,
    stop: watch::Sender<bool>,
    stall: watch::Sender<bool>,
    plan: watch::Sender<Plan>,
    sent: Arc<AtomicU64>,
    ops: Vec<JoinHandle<OpEnd>>,
    writers: Vec<JoinHandle<()>>,
}

async fn chat(
    bins: &Bins,
    target: Target,
    visitors: usize,
    operators: usize,
    slow: usize,
) -> anyhow::Result<Chat> {
    let capacity = (visitors.div_ceil(operators) + 2) as u32;
    // Redis mode: people on one node, their operators on the others (every message crosses).
    let server = Server::start(target, bins, operators, capacity, &[])
        .await?
        .placed(Layout::Apart);
    let origin = Instant::now();
    let sh = Shared::new(origin, false);
    let (stop_tx, stop) = watch::channel(false);
    let (stall_tx, stall) = watch::channel(false);
    let (plan_tx, plan) = watch::channel(Plan::default());
    let mut ops = Vec::new();
    for i in 0..operators {
        let is_slow = i < slow;
        let buf = is_slow.then_some(4096);
        let sock = clients::operator(&server, i, true, buf).await?;
        ops.push(tokio::spawn(clients::operator_loop(
            sock,
            Arc::clone(&sh),
            is_slow,
            stall.clone(),
            stop.clone(),
        )));
    }
    let sent = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for (k, p) in clients::visitors(&server, 0..visitors, true, 32)
        .await?
        .into_iter()
        .enumerate()
    {
        writers.push(tokio::spawn(clients::writer_loop(
            p.sock,
            origin,
            k as f64 / visitors as f64,
            plan.clone(),
            stop.clone(),
            Arc::clone(&sent),
        )));
    }
    Ok(Chat {
        server,
        sh,
        stop: stop_tx,
        stall: stall_tx,
        plan: plan_tx,
        sent,
        ops,
        writers,
    })
}

struct PhaseResult {
    sent: u64,
    delivered: u64,
    hist: clients::Hist,
    server_cpu: Duration,
    generator_busy: f64,
    wall: Duration,
    rss_before: u64,
    rss_peak: u64,
    rss_after: u64,
}

impl Chat {
    /// One open-loop phase at `rate` messages a second in all, for `secs`.
    async fn phase(&self, rate: f64, secs: f64, visitors: usize) -> PhaseResult {
        self.sh.reset_latency();
        let sent0 = self.sent.load(Ordering::Relaxed);
        let interval_us = (visitors as f64 * 1e6 / rate) as u64;
        let start_us = self.sh.now_us() + 500_000;
        let end_us = start_us + (secs * 1e6) as u64;
        let rss_before = self.server.rss();
        let (cpu0, self0, t0) = (self.server.cpu(), self_cpu(), Instant::now());
        let _ = self.plan.send(Plan {
            start_us,
            interval_us,
            end_us,
        });
        let mut rss_peak = rss_before;
        // Until the schedule ends, then until everything sent arrived (at most 3 s more).
        let drain_until = Duration::from_micros(end_us) + Duration::from_secs(3);
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            rss_peak = rss_peak.max(self.server.rss());
            let now = self.sh.origin.elapsed();
            let sent = self.sent.load(Ordering::Relaxed) - sent0;
            if now >= drain_until
                || (now >= Duration::from_micros(end_us)
                    && self.sh.delivered.load(Ordering::Relaxed) >= sent)
            {
                break;
            }
        }
        let wall = t0.elapsed();
        PhaseResult {
            sent: self.sent.load(Ordering::Relaxed) - sent0,
            delivered: self.sh.delivered.load(Ordering::Relaxed),
            hist: self.sh.latency(),
            server_cpu: self.server.cpu() - cpu0,
            generator_busy: (self_cpu() - self0).as_secs_f64() / wall.as_secs_f64(),
            wall,
            rss_before,
            rss_peak,
            rss_after: self.server.rss(),
        }
    }

    async fn stop(self) -> Vec<OpEnd> {
        let _ = self.stall.send(false);
        let _ = self.stop.send(true);
        for w in self.writers {
            let _ = w.await;
        }
        let mut ends = Vec::new();
        for o in self.ops {
            ends.push(o.await.unwrap_or(OpEnd::Closed));
        }
        self.server.stop().await;
        ends
    }
}

fn latency_json(r: &PhaseResult) -> Value {
    let h = &r.hist;
    json!({
        "sent": r.sent,
        "delivered": r.delivered,
        "p50_ms": ms(h.value_at_quantile(0.5)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
        "server_cpu_ms_per_1k": r.server_cpu.as_secs_f64() * 1e3 / (r.delivered.max(1) as f64 / 1e3),
        "server_cpu_pct": r.server_cpu.as_secs_f64() / r.wall.as_secs_f64() * 100.0,
        "generator_busy_pct": r.generator_busy * 100.0,
        "discarded": r.generator_busy > GENERATOR_BOUND,
    })
}

/// (b) Steady chat at stepped rates, open loop, latency from the scheduled send time.
pub async fn steady(bins: &Bins, target: Target, size: &Size) -> anyhow::Result<Value> {
    let c = chat(bins, target, size.steady_visitors, size.steady_operators, 0).await?;
    let mut steps = Vec::new();
    for &rate in &size.rates {
        let r = c.phase(rate, size.step_secs, size.steady_visitors).await;
        let mut row = latency_json(&r);
        row["rate"] = json!(rate);
        progress(&format!(
            "{}: {rate} msg/s: p99 {:.2} ms, delivered {}/{}, server CPU {:.0} ms/1k, generator {:.0}%",
            target.name(),
            row["p99_ms"].as_f64().unwrap_or(0.0),
            r.delivered,
            r.sent,
            row["server_cpu_ms_per_1k"].as_f64().unwrap_or(0.0),
            r.generator_busy * 100.0
        ));
        steps.push(row);
    }
    c.stop().await;
    Ok(json!({
        "visitors": size.steady_visitors,
        "operators": size.steady_operators,
        "steps": steps,
    }))
}

/// (e) Slow consumers: some operators stop reading (a 4 KiB receive buffer, nothing read).
/// A baseline phase, then the same rate with the slow operators stalled.
pub async fn slow(bins: &Bins, target: Target, size: &Size) -> anyhow::Result<Value> {
    let c = chat(
        bins,
        target,
        size.slow_visitors,
        size.slow_operators,
        size.slow_slow,
    )
    .await?;
    let base = c
        .phase(size.slow_rate, size.slow_secs / 2.0, size.slow_visitors)
        .await;
    let _ = c.stall.send(true);
    let stalled = c
        .phase(size.slow_rate, size.slow_secs, size.slow_visitors)
        .await;
    // Messages to the stalled operators' conversations cannot arrive: judge the others only.
    let fast_share = (size.slow_operators - size.slow_slow) as f64 / size.slow_operators as f64;
    let rss_growth = stalled.rss_peak.saturating_sub(base.rss_before);
    // Stalled operators read again: those the server closed end, the others are still open.
    let _ = c.stall.send(false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ends = c.stop().await;
    let closed = ends[..size.slow_slow]
        .iter()
        .filter(|e| **e == OpEnd::Closed)
        .count();
    let (b, s) = (latency_json(&base), latency_json(&stalled));
    progress(&format!(
        "{}: p99 {:.2} → {:.2} ms with {} stalled operators, RSS +{:.1} MB, {} closed by the server",
        target.name(),
        b["p99_ms"].as_f64().unwrap_or(0.0),
        s["p99_ms"].as_f64().unwrap_or(0.0),
        size.slow_slow,
        rss_growth as f64 / 1e6,
        closed
    ));
    Ok(json!({
        "rate": size.slow_rate,
        "slow_operators": size.slow_slow,
        "operators": size.slow_operators,
        "baseline": b,
        "stalled": s,
        "others_delivered_share": stalled.delivered as f64 / (stalled.sent.max(1) as f64 * fast_share),
        "rss_growth_mb": rss_growth as f64 / 1e6,
        "rss_after_mb": stalled.rss_after as f64 / 1e6,
        "slow_closed_by_server": closed,
    }))
}

/// `n` operators on duty, each accepting every offer and recording what it receives.
async fn on_duty(
    server: &Server,
    n: usize,
    sh: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<OpEnd>>> {
    // Nobody stalls here: the sender is dropped, the value stays false.
    let (_, stall) = watch::channel(false);
    let mut ops = Vec::new();
    for i in 0..n {
        let sock = clients::operator(server, i, true, None).await?;
        ops.push(tokio::spawn(clients::operator_loop(
            sock,
            Arc::clone(sh),
            false,
            stall.clone(),
            stop.clone(),
        )));
    }
    Ok(ops)
}

/// (c) Arrival burst: `burst_visitors` people arrive at `burst_rate` a second (open loop)
/// against `burst_operators` on duty. Time from a person's hello to the offer reaching an
/// operator, and to the person seeing the operator join; order violations.
pub async fn burst(bins: &Bins, target: Target, size: &Size) -> anyhow::Result<Value> {
    let n = size.burst_visitors;
    let ops_n = size.burst_operators;
    let capacity = (n.div_ceil(ops_n) + 2) as u32;
    let server = Arc::new(Server::start(target, bins, ops_n, capacity, &[]).await?);
    let origin = Instant::now();
    let sh = Shared::new(origin, false);
    let (stop_tx, stop) = watch::channel(false);
    let ops = on_duty(&server, ops_n, &sh, &stop).await?;
    let start = origin.elapsed() + Duration::from_millis(500);
    let (cpu0, self0, t0) = (server.cpu(), self_cpu(), Instant::now());
    let mut people = Vec::new();
    for i in 0..n {
        let at = start + Duration::from_secs_f64(i as f64 / size.burst_rate);
        let server = Arc::clone(&server);
        let mut stop = stop.clone();
        people.push(tokio::spawn(async move {
            // The clock thread, not tokio's 1 ms timer: that one let arrivals out in pairs on
            // its ticks, up to 1.8 ms late (`clock.rs`).
            crate::clock::sleep_until(origin + at).await;
            let woke = origin.elapsed().as_micros() as u64;
            let mut sock = clients::visitor_socket(&server, i).await?;
            let hello = origin.elapsed().as_micros() as u64;
            sock.send(&clients::hello_start()).await?;
            let welcome = sock.until("\"welcome\"").await?;
            let welcomed = origin.elapsed().as_micros() as u64;
            sock.until("operator_joined").await?;
            let joined = origin.elapsed().as_micros() as u64;
            let (_, conv) = welcome_ids(&welcome);
            // Hold the conversation open until the end of the scenario.
            tokio::spawn(async move {
                let _ = stop.changed().await;
                drop(sock);
            });
            anyhow::Ok((conv, hello, welcomed, joined, (at.as_micros() as u64, woke)))
        }));
    }
    let mut arrivals = Vec::new();
    let mut failed = 0;
    for p in people {
        match p.await {
            Ok(Ok(a)) => arrivals.push(a),
            _ => failed += 1,
        }
    }
    let wall = t0.elapsed();
    let server_cpu = server.cpu() - cpu0;
    let busy = (self_cpu() - self0).as_secs_f64() / wall.as_secs_f64();
    let offers = sh.offers.lock().map(|m| m.clone()).unwrap_or_default();
    let (mut to_offer, mut to_join) = (hist(), hist());
    // The server's own view: the `waited_ms` it puts in each offer (queued to offered, whole
    // ms of its clock, so 0 is under 1 ms and 1 is anything under 2 ms).
    let mut waits: Vec<u64> = Vec::with_capacity(arrivals.len());
    let mut order = Vec::new();
    let mut server_order = Vec::new();
    for (conv, hello, _welcomed, joined, _) in &arrivals {
        let _ = to_join.record(joined.saturating_sub(*hello).max(1));
        if let Some(o) = offers.get(conv) {
            let _ = to_offer.record(o.at_us.saturating_sub(*hello).max(1));
            waits.push(o.waited_ms);
            // When the server queued it, on this clock: the offer's arrival less the wait the
            // server reports (ms resolution). The generator's own view of arrival order
            // (welcome received) is skewed when a busy server delays some welcomes.
            order.push((o.at_us.saturating_sub(o.waited_ms * 1000), o.at_us));
            server_order.extend(o.order);
        }
    }
    // Exact where the server says it (the gateway's `arrival` and `offered_at` in each offer):
    // people offered after someone who arrived later had been. Otherwise (the peers) an
    // estimate from when offers reached the operators; 10 ms: `waited_ms` has ms resolution,
    // and each offer's queued time is estimated from its arrival, so the jitter of delivering
    // offers (several ms on a loaded 2-core machine, the generator one thread for thousands of
    // sockets; with several nodes, the hop over the bus) enters it; a queue served out of order
    // while people wait shows far beyond it.
    let exact = !server_order.is_empty() && server_order.len() == order.len();
    let violations = if exact {
        offered_out_of_order(&server_order)
    } else {
        order_violations(&order, 10_000)
    };
    // For finding where slow assignments come from: every arrival's (hello, offer, joined) in
    // µs since the origin and the wait the server reported in its offer (ms), one per line, to the file this names.
    if let Some(path) = std::env::var_os("TSUNAGU_LOAD_BURST_DUMP") {
        let mut out = String::new();
        for (conv, hello, _, joined, (at, woke)) in &arrivals {
            let o = offers.get(conv).copied().unwrap_or_default();
            let (off, waited_ms) = (o.at_us, o.waited_ms);
            out.push_str(&format!("{hello} {off} {joined} {waited_ms} {at} {woke}\n"));
        }
        let _ = std::fs::write(path, out);
    }
    let _ = stop_tx.send(true);
    for o in ops {
        let _ = o.await;
    }
    if let Ok(s) = Arc::try_unwrap(server) {
        s.stop().await;
    }
    progress(&format!(
        "{}: {} arrivals at {}/s: offer p99 {:.2} ms, joined p99 {:.2} ms, {violations} order violations, {failed} failed",
        target.name(),
        arrivals.len(),
        size.burst_rate,
        ms(to_offer.value_at_quantile(0.99)),
        ms(to_join.value_at_quantile(0.99))
    ));
    Ok(json!({
        "arrivals": n,
        "rate": size.burst_rate,
        "operators": ops_n,
        "assigned": arrivals.len(),
        "failed": failed,
        "offer_p50_ms": ms(to_offer.value_at_quantile(0.5)),
        "offer_p99_ms": ms(to_offer.value_at_quantile(0.99)),
        "offer_max_ms": ms(to_offer.max()),
        "joined_p50_ms": ms(to_join.value_at_quantile(0.5)),
        "joined_p99_ms": ms(to_join.value_at_quantile(0.99)),
        "joined_max_ms": ms(to_join.max()),
        "order_violations": violations,
        "order_check": if exact { "server" } else { "estimate" },
        "server_wait_p99_ms": quantile(&mut waits, 0.99),
        "server_wait_under_1ms_pct": if waits.is_empty() {
            Value::Null
        } else {
            json!(waits.iter().filter(|w| **w == 0).count() as f64 / waits.len() as f64 * 100.0)
        },
        "server_cpu_pct": server_cpu.as_secs_f64() / wall.as_secs_f64() * 100.0,
        "generator_busy_pct": busy * 100.0,
        "discarded": busy > GENERATOR_BOUND,
    }))
}

/// The `q` quantile of `values` (sorted here), `None` when there are none.
fn quantile(values: &mut [u64], q: f64) -> Option<u64> {
    values.sort_unstable();
    let last = values.len().checked_sub(1)?;
    values.get(((last as f64) * q).round() as usize).copied()
}

/// People offered before someone who arrived earlier: `order` holds (arrival number, offered
/// at) per person as the server gave them. A person counts when anyone with a smaller arrival
/// number was offered strictly later (offers made in one step share their time).
pub fn offered_out_of_order(order: &[(u64, u64)]) -> usize {
    let mut by_arrival = order.to_vec();
    by_arrival.sort_unstable();
    // In arrival order, the latest offer of those who arrived before each person.
    let mut latest_before = 0u64;
    let mut violations = 0;
    for (_, offered) in by_arrival {
        if latest_before > offered {
            violations += 1;
        }
        latest_before = latest_before.max(offered);
    }
    violations
}

/// People offered while someone queued more than `tolerance_us` before them was still waiting
/// for an offer. `order` holds (queued at, offered at) per person.
pub fn order_violations(order: &[(u64, u64)], tolerance_us: u64) -> usize {
    let mut by_offer: Vec<(u64, u64, usize)> = order
        .iter()
        .enumerate()
        .map(|(i, (q, o))| (*o, *q, i))
        .collect();
    by_offer.sort_unstable();
    let mut waiting: BTreeSet<(u64, usize)> = order
        .iter()
        .enumerate()
        .map(|(i, (q, _))| (*q, i))
        .collect();
    let mut violations = 0;
    for (_, queued, i) in by_offer {
        waiting.remove(&(queued, i));
        if let Some((earliest, _)) = waiting.first() {
            if earliest + tolerance_us < queued {
                violations += 1;
            }
        }
    }
    violations
}

/// One person of the reconnect storm: writes on a schedule, keeps what is not acknowledged,
/// and after the storm resumes with its token and last seq and sends those again (same ids).
struct StormPerson {
    i: usize,
    /// The node of its current socket (0 unless Redis mode).
    node: usize,
    token: String,
    sock: Option<Sock>,
    last_seq: u64,
    pending: Vec<(String, String)>,
    created: Vec<String>,
    dup_seqs: u64,
    gaps: u64,
    resumed_us: Option<u64>,
    /// Reconnections after the server closed a socket (besides the storm's own).
    reconnects: u64,
}

impl StormPerson {
    fn on_frame(&mut self, t: &str) {
        if t.starts_with(r#"{"type":"ack""#) {
            if let Some(cid) = str_field(t, "id") {
                self.pending.retain(|(p, _)| p != cid);
            }
        } else if t.starts_with(r#"{"type":"event""#) {
            if let Some(seq) = num_field(t, "seq") {
                if seq <= self.last_seq {
                    self.dup_seqs += 1;
                } else {
                    if seq != self.last_seq + 1 {
                        self.gaps += 1;
                    }
                    self.last_seq = seq;
                }
            }
        }
    }

    async fn resume(&mut self, server: &Server, origin: Instant) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            self.node = server.visitor_node(self.i);
            let attempt = async {
                let mut sock = clients::visitor_socket(server, self.i).await?;
                let hello = frames::hello_resume(frames::new_id(), &self.token, self.last_seq);
                sock.send(&hello).await?;
                sock.until("\"welcome\"").await?;
                anyhow::Ok(sock)
            };
            match attempt.await {
                Ok(mut sock) => {
                    self.resumed_us = Some(origin.elapsed().as_micros() as u64);
                    for (_, frame) in &self.pending {
                        sock.send(frame).await?;
                    }
                    self.sock = Some(sock);
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// (d) Reconnect storm: `storm_sessions` people in conversations, writing; then every person's
/// connection drops at once (RST, no close frame) and all reconnect and resume together.
/// Time until all have resumed; messages lost or duplicated (must be zero).
///
/// With the memory store, killing the gateway process loses every conversation by design, so
/// on a single node the storm is every connection dropping at once (a network blip) while the
/// process lives. In Redis mode (scenario (f), `gateway-redis`) the storm is a killed node:
/// people spread over every node, operators on the others, node 0 killed with SIGKILL; its
/// people reconnect to the surviving nodes and resume there; nobody else reconnects.
pub async fn storm(bins: &Bins, target: Target, size: &Size) -> anyhow::Result<Value> {
    let n = size.storm_sessions;
    let ops_n = size.storm_operators;
    let capacity = (n.div_ceil(ops_n) + 2) as u32;
    let kill_node = target == Target::GatewayRedis;
    let server = Arc::new(Server::start(target, bins, ops_n, capacity, &[]).await?);
    let origin = Instant::now();
    let sh = Shared::new(origin, true);
    let (stop_tx, stop) = watch::channel(false);
    let ops = on_duty(&server, ops_n, &sh, &stop).await?;
    progress(&format!("storm: opening {n} conversations"));
    let opened = clients::visitors(&server, 0..n, true, 64).await?;
    progress(&format!(
        "storm: {n} conversations, gateway RSS {:.0} MB",
        server.rss() as f64 / 1e6
    ));
    let (storm_tx, storm_rx) = watch::channel(false);
    let (quiet_tx, quiet_rx) = watch::channel(false);
    let interval = Duration::from_secs_f64(n as f64 / size.storm_rate);
    let write_start = origin.elapsed() + Duration::from_millis(200);
    let written = Arc::new(AtomicU64::new(0));
    let mut people = Vec::new();
    for (k, person) in opened.into_iter().enumerate() {
        let (token, _) = welcome_ids(&person.welcome);
        let server = Arc::clone(&server);
        let (mut storm_rx, mut quiet_rx, mut stop) =
            (storm_rx.clone(), quiet_rx.clone(), stop.clone());
        let offset = interval.mul_f64(k as f64 / n as f64);
        let written = Arc::clone(&written);
        people.push(tokio::spawn(async move {
            let mut p = StormPerson {
                i: k,
                node: server.visitor_node(k),
                token,
                sock: Some(person.sock),
                last_seq: person.last_seq,
                pending: Vec::new(),
                created: Vec::new(),
                dup_seqs: 0,
                gaps: 0,
                resumed_us: None,
                reconnects: 0,
            };
            let mut next = write_start + offset;
            let mut writing = true;
            loop {
                let deadline = tokio::time::Instant::from_std(origin + next);
                let sock = p.sock.as_mut().context("no socket")?;
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = quiet_rx.changed() => writing = false,
                    _ = storm_rx.changed() => {
                        if let Some(s) = p.sock.take() {
                            s.abort();
                        }
                        p.resume(&server, origin).await?;
                    }
                    _ = tokio::time::sleep_until(deadline), if writing => {
                        let cid = frames::new_id();
                        let frame = chat_frame(cid, next.as_micros() as u64);
                        let cid = cid.to_string();
                        p.pending.push((cid.clone(), frame.clone()));
                        p.created.push(cid);
                        written.fetch_add(1, Ordering::Relaxed);
                        // A failed send is retried after the resume (it stays pending).
                        let _ = sock.send(&frame).await;
                        next += interval;
                    }
                    m = sock.recv() => match m {
                        Ok(Some(t)) => p.on_frame(&t),
                        // Closed by the server (superseded, too slow, …) or its node killed:
                        // reconnect and resume at once, as the widget does.
                        _ => {
                            p.sock = None;
                            if !(kill_node && p.node == 0) {
                                p.reconnects += 1;
                            }
                            p.resume(&server, origin).await?;
                        }
                    },
                }
            }
            anyhow::Ok(p)
        }));
    }
    // Write for a while, drop everything at once, keep writing, then go quiet and drain.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu0 = server.cpu();
    let storm_at = origin.elapsed().as_micros() as u64;
    // Who has to resume: everyone, or (Redis mode) the people of the node killed, whose
    // sockets the kernel resets.
    let expected: Vec<bool> = (0..n)
        .map(|k| !kill_node || server.visitor_node(k) == 0)
        .collect();
    let moved = expected.iter().filter(|e| **e).count();
    if kill_node {
        progress(&format!(
            "storm: kill -9 of node 0 of {} ({moved} people on it)",
            server.nodes()
        ));
        server.kill_node(0)?;
    } else {
        progress("storm: dropping every connection");
        let _ = storm_tx.send(true);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = quiet_tx.send(true);
    // Drain: until operators received every message written, at most 60 s.
    let drain_until = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let distinct = sh
            .ids
            .as_ref()
            .and_then(|m| m.lock().ok().map(|m| m.len()))
            .unwrap_or(0) as u64;
        if distinct >= written.load(Ordering::Relaxed) || Instant::now() > drain_until {
            break;
        }
    }
    // A little longer, so that late duplicates would be seen.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let server_cpu = server.cpu() - cpu0;
    let _ = stop_tx.send(true);
    let mut created = Vec::new();
    let (mut dup_seqs, mut gaps, mut pending, mut failed, mut reconnects) = (0, 0, 0, 0, 0);
    let mut resumed = hist();
    let mut last_resumed = 0;
    let mut first_error: Option<String> = None;
    for (p, expected) in people.into_iter().zip(expected) {
        match p.await {
            Ok(Ok(p)) => {
                dup_seqs += p.dup_seqs;
                gaps += p.gaps;
                pending += p.pending.len();
                reconnects += p.reconnects;
                match p.resumed_us {
                    Some(r) if expected && r >= storm_at => {
                        let _ = resumed.record(r.saturating_sub(storm_at).max(1));
                        last_resumed = last_resumed.max(r.saturating_sub(storm_at));
                    }
                    _ if expected => {
                        failed += 1;
                        first_error.get_or_insert_with(|| {
                            format!(
                                "person {} never resumed after the storm (last resume at {:?} µs, storm at {storm_at} µs, node {}, {} reconnects)",
                                p.i, p.resumed_us, p.node, p.reconnects
                            )
                        });
                    }
                    _ => {}
                }
                created.extend(p.created);
            }
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e}"));
            }
        }
    }
    for o in ops {
        let _ = o.await;
    }
    let ids: HashMap<String, u32> = sh
        .ids
        .as_ref()
        .and_then(|m| m.lock().ok().map(|m| m.clone()))
        .unwrap_or_default();
    let lost = created.iter().filter(|c| !ids.contains_key(*c)).count();
    let duplicated: u64 = ids.values().map(|&c| u64::from(c.saturating_sub(1))).sum();
    let nodes = server.nodes();
    if let Ok(s) = Arc::try_unwrap(server) {
        s.stop().await;
    }
    progress(&format!(
        "storm: all {} resumed within {:.0} ms; {} messages, {lost} lost, {duplicated} duplicated, {dup_seqs} replayed twice to people, {failed} failed",
        moved.saturating_sub(failed),
        ms(last_resumed),
        created.len()
    ));
    let mode = if kill_node {
        format!(
            "Redis, {nodes} nodes, node 0 killed (kill -9) under load; its people resumed on the others"
        )
    } else {
        "single node, every connection dropped at once (memory store)".to_owned()
    };
    Ok(json!({
        "sessions": n,
        "operators": ops_n,
        "nodes": nodes,
        "moved": moved,
        "rate": size.storm_rate,
        "messages": created.len(),
        "resumed": moved.saturating_sub(failed),
        "failed": failed,
        "all_resumed_ms": ms(last_resumed),
        "resume_p50_ms": ms(resumed.value_at_quantile(0.5)),
        "resume_p99_ms": ms(resumed.value_at_quantile(0.99)),
        "lost": lost,
        "duplicated": duplicated,
        "visitor_duplicate_seqs": dup_seqs,
        "visitor_seq_gaps": gaps,
        "unacknowledged_at_end": pending,
        "server_closed_reconnects": reconnects,
        "server_cpu_s": server_cpu.as_secs_f64(),
        "mode": mode,
        "first_error": first_error,
    }))
}

/// (3) The physical floor's other half: loopback TCP round-trip time of a 150-byte message
/// (blocking sockets, two threads), so that no runtime sits between the two ends.
pub fn loopback_rtt(count: usize) -> anyhow::Result<Value> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 150];
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut h = hist();
    let mut buf = [7u8; 150];
    for _ in 0..count {
        let t = Instant::now();
        s.write_all(&buf)?;
        s.read_exact(&mut buf)?;
        let _ = h.record((t.elapsed().as_nanos() as u64 / 1000).max(1));
    }
    drop(s);
    let _ = echo.join();
    Ok(json!({
        "round_trips": count,
        "p50_us": h.value_at_quantile(0.5),
        "p99_us": h.value_at_quantile(0.99),
        "max_us": h.max(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_in_arrival_order_or_in_one_step_are_not_out_of_order() {
        // (arrival, offered at): three offered together, then two more later.
        let order = [(1, 10), (2, 10), (3, 10), (4, 12), (5, 15)];
        assert_eq!(offered_out_of_order(&order), 0);
    }

    #[test]
    fn people_offered_before_an_earlier_arrival_are_out_of_order() {
        // 3 and 4 were offered (at 11, 12) while 2, who arrived before them, waited until 20.
        let order = [(4, 12), (1, 10), (2, 20), (3, 11), (5, 21)];
        assert_eq!(offered_out_of_order(&order), 2);
    }

    #[test]
    fn order_violations_count_people_offered_past_an_earlier_one() {
        // In order: none.
        assert_eq!(
            order_violations(&[(0, 10), (5000, 20), (9000, 30)], 1000),
            0
        );
        // The third queued person offered before the first: one violation.
        assert_eq!(
            order_violations(&[(0, 30), (5000, 40), (9000, 10)], 1000),
            1
        );
        // Within the tolerance it is not a violation.
        assert_eq!(order_violations(&[(0, 30), (500, 10)], 1000), 0);
    }

    #[test]
    fn slope_of_a_line() {
        let s = slope(&[(0.0, 100.0), (10.0, 120.0), (20.0, 140.0)]);
        assert!((s - 2.0).abs() < 1e-9);
    }
}
