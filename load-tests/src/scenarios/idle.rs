//! Scenario (a), idle capacity: how much memory and CPU a waiting person costs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;

use super::{progress, settle, slope, Size};
use crate::clients;
use crate::servers::{Bins, Server, Target};

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
