//! `tsunagu-load`: drives a real gateway process over its real protocol and reports latency
//! percentiles and CPU, as ratios within one run.
//!
//! Scenario `flood`: `visitors` people in active conversations, each writing `rate` messages a
//! second on an open-loop schedule; latency is measured from each message's *scheduled* send
//! time to its arrival at the operator's console. The baseline phase is compared with a phase
//! in which one more person floods as fast as the socket allows. Phases are interleaved and
//! repeated (`rounds`), each on a fresh gateway process, and medians are reported. The flooder
//! must be told `rate_limited`; the others' p99 must not rise by more than 1.5×.

mod gateway;
mod scenario;

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(name = "tsunagu-load", about = "Tsunagu load tests and benchmarks")]
enum Cli {
    /// One flooding person against many steady conversations (issue: security, flood test).
    Flood(scenario::FloodArgs),
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    match Cli::parse() {
        Cli::Flood(args) => scenario::flood(args).await,
    }
}

/// The gateway binary next to this one (`target/release/gateway`).
pub fn default_gateway() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("gateway")))
        .unwrap_or_else(|| PathBuf::from("target/release/gateway"))
}
