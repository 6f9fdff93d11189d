//! Scenario (e), slow consumers: what operators who stop reading cost everyone else.

use std::time::Duration;

use serde_json::{json, Value};

use super::chat::{chat, latency_json};
use super::{progress, Size};
use crate::clients::OpEnd;
use crate::servers::{Bins, Target};

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
