//! Results of a suite: medians over rounds, ratios of the gateway against each peer, the
//! targets of the load-test issue, and the files: `results.json`, `results.md`, `latency.svg`,
//! `memory.svg`.
//!
//! # Layout
//!
//! - `summary`: the rows of every round into medians per target, ratios and the targets.
//! - `markdown`: `results.md`, a table per scenario, from the summary (storm and floor rows as
//!   they are).
//! - `chart`: the SVG line charts (`latency.svg`, `memory.svg`).
//! - Here: writing the files of a run, and writing them again from its `results.json`.

mod chart;
mod markdown;
mod summary;

use std::path::Path;

use serde_json::{json, Value};

use crate::servers::Target;
use chart::line_chart;
use markdown::markdown;
use summary::{rows, steady_steps, summarise};

/// Writes results.md, latency.svg and memory.svg again from a run's results.json.
pub fn rewrite(dir: &Path) -> anyhow::Result<()> {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("results.json"))?)?;
    let rows = doc["rows"].as_array().cloned().unwrap_or_default();
    let mut targets: Vec<Target> = Vec::new();
    for r in &rows {
        if let Some(t) = r["target"].as_str().and_then(|t| Target::parse(t).ok()) {
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
    }
    write(dir, &doc["meta"], &rows, &targets)?;
    Ok(())
}

/// Writes results.json, results.md, latency.svg and memory.svg into `dir`.
pub fn write(dir: &Path, meta: &Value, all: &[Value], targets: &[Target]) -> anyhow::Result<Value> {
    std::fs::create_dir_all(dir)?;
    let summary = summarise(all, targets);
    let doc = json!({"meta": meta, "summary": summary, "rows": all});
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&doc)?,
    )?;
    std::fs::write(
        dir.join("results.md"),
        markdown(meta, all, &summary, targets),
    )?;
    let latency: Vec<(String, Vec<(f64, f64)>)> = targets
        .iter()
        .map(|t| (t.name().to_owned(), steady_steps(all, *t, "p99_ms")))
        .filter(|(_, p)| !p.is_empty())
        .collect();
    std::fs::write(
        dir.join("latency.svg"),
        line_chart(
            "p99 latency against rate (median of rounds)",
            "messages per second",
            "p99 latency (ms, log scale)",
            &latency,
            true,
        ),
    )?;
    let memory: Vec<(String, Vec<(f64, f64)>)> = targets
        .iter()
        .filter_map(|t| {
            // The round with the median slope.
            let mut idle = rows(all, "idle", *t);
            idle.sort_by(|a, b| {
                a["bytes_per_session"]
                    .as_f64()
                    .unwrap_or(0.0)
                    .total_cmp(&b["bytes_per_session"].as_f64().unwrap_or(0.0))
            });
            let r = idle.get(idle.len() / 2)?;
            let p = r["rss_points"]
                .as_array()?
                .iter()
                .filter_map(|v| Some((v[0].as_f64()?, v[1].as_f64()? / 1e6)))
                .collect();
            Some((t.name().to_owned(), p))
        })
        .collect();
    std::fs::write(
        dir.join("memory.svg"),
        line_chart(
            "server memory against waiting sessions",
            "waiting people",
            "RSS (MB)",
            &memory,
            false,
        ),
    )?;
    Ok(summary)
}
