//! `tsunagu-load`: drives a real gateway process over its real protocol, and the same scenarios
//! against the peers a helpline would otherwise build on, and reports latency percentiles
//! (hdrhistogram), memory and CPU, as ratios within one run.
//!
//! - `suite`: scenarios (a)-(f) of the load-test issue against the gateway (memory store, and
//!   Redis mode with 2-3 nodes: `cluster.rs`), the peers in `load-tests/peers/` (Socket.IO, ws,
//!   Bun) and the raw relay (the floor); see `suite.rs`.
//! - `flood`: one flooding person against many steady conversations (security issue).
//! - `exhaust`: the gateway's memory under a ping flood and an idle-connection flood.
//! - `relay`: the raw relay server itself (started by `suite`).
//! - `report`: writes a run's Markdown and plots again from its `results.json`.

mod clients;
mod clock;
mod cluster;
mod exhaust;
mod frames;
mod gateway;
mod net;
mod relay;
mod report;
mod scenario;
mod scenarios;
mod servers;
mod suite;

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(name = "tsunagu-load", about = "Tsunagu load tests and benchmarks")]
enum Cli {
    /// Every scenario against the gateway, the peers and the floor (load-test issue).
    Suite(suite::SuiteArgs),
    /// One flooding person against many steady conversations (issue: security, flood test).
    Flood(scenario::FloodArgs),
    /// The gateway's RSS under a ping flood or an idle-connection flood (issue 17).
    Exhaust(exhaust::ExhaustArgs),
    /// Runs the raw relay server (the physical floor); prints `listening http://…`.
    Relay,
    /// Writes a run's results.md and plots again from its results.json.
    Report {
        /// The run's folder (load-tests/results/<time>).
        dir: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli {
        Cli::Relay => return relay::run(),
        Cli::Report { dir } => return report::rewrite(dir),
        _ => {}
    }
    reserve_descriptor_table();
    // One worker: the generator is pinned to one core and must not compete with the server.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    // Everything on the one worker: `block_on`'s future runs on the main thread, which would
    // then compete with the worker for the generator's core.
    rt.block_on(async {
        tokio::spawn(async move {
            match cli {
                Cli::Suite(args) => suite::suite(args).await,
                Cli::Flood(args) => scenario::flood(args).await,
                Cli::Exhaust(args) => exhaust::exhaust(args).await,
                Cli::Relay | Cli::Report { .. } => Ok(()),
            }
        })
        .await?
    })
}

/// Grows the kernel's descriptor table to the open-files limit now, while the process has one
/// thread, as the gateway does (`tsunagu::startup::reserve_descriptor_table`, which says why).
/// Without it the generator stopped for 10-25 ms at each doubling (256, 512, 1,024, ...
/// descriptors), and the arrivals scheduled meanwhile went out in one clump: that showed up as
/// every server's assignment latency.
fn reserve_descriptor_table() {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(65_536)
        .clamp(1, 65_536);
    if let (Ok(null), Ok(top)) = (std::fs::File::open("/dev/null"), i32::try_from(limit - 1)) {
        // Dropped (closed) at once: only the table's new size stays.
        let _ = rustix::io::fcntl_dupfd_cloexec(&null, top);
    }
}

/// The gateway binary next to this one (`target/release/gateway`).
pub fn default_gateway() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("gateway")))
        .unwrap_or_else(|| PathBuf::from("target/release/gateway"))
}
