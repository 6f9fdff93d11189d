//! The conversations the chat scenarios ((b) steady, (e) slow) share: operators on duty holding
//! every person, each person an open-loop writer; one measured phase at a rate, and its row.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{ms, self_cpu, GENERATOR_BOUND};
use crate::clients::{self, OpEnd, Plan, Shared};
use crate::cluster::Layout;
use crate::servers::{Bins, Server, Target};

/// Conversations set up for a chat scenario: operators on duty holding every person.
pub(super) struct Chat {
    pub(super) server: Server,
    pub(super) sh: Arc<Shared>,
    pub(super) stop: watch::Sender<bool>,
    pub(super) stall: watch::Sender<bool>,
    pub(super) plan: watch::Sender<Plan>,
    pub(super) sent: Arc<AtomicU64>,
    pub(super) ops: Vec<JoinHandle<OpEnd>>,
    pub(super) writers: Vec<JoinHandle<()>>,
}

pub(super) async fn chat(
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

pub(super) struct PhaseResult {
    pub(super) sent: u64,
    pub(super) delivered: u64,
    pub(super) hist: clients::Hist,
    pub(super) server_cpu: Duration,
    pub(super) generator_busy: f64,
    pub(super) wall: Duration,
    pub(super) rss_before: u64,
    pub(super) rss_peak: u64,
    pub(super) rss_after: u64,
}

impl Chat {
    /// One open-loop phase at `rate` messages a second in all, for `secs`.
    pub(super) async fn phase(&self, rate: f64, secs: f64, visitors: usize) -> PhaseResult {
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

    pub(super) async fn stop(self) -> Vec<OpEnd> {
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

pub(super) fn latency_json(r: &PhaseResult) -> Value {
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
