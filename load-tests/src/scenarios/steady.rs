//! Scenario (b), steady chat: latency at stepped message rates, open loop.

use serde_json::{json, Value};

use super::chat::{chat, latency_json};
use super::{progress, Size};
use crate::servers::{Bins, Target};

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
