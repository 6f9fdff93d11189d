//! `tsunagu-load suite`: every scenario against the gateway (memory store, and Redis mode with
//! 2-3 nodes: target `gateway-redis`, scenario (f)), the peers (and `socketio-redis`, the peer on
//! as many nodes) and the floor, in one run, targets interleaved and rounds repeated; results
//! written as JSON, Markdown and SVG.
//! Fails (non-zero exit) when correctness breaks: a message lost or duplicated in the
//! reconnect storm, an order violation or a failed arrival in the gateway's burst, a message not
//! delivered in the gateway's steady chat at smoke size.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::{json, Value};

use crate::cluster;
use crate::report;
use crate::scenarios::{self, Size};
use crate::servers::{default_peers, Bins, Target};

const SCENARIOS: [&str; 6] = ["idle", "steady", "burst", "storm", "slow", "floor"];

/// Targets when `--targets` is not given. `gateway-redis` and `socketio-redis` are left out
/// (with a warning) when `redis-server` is not installed; asked for by name, they fail instead.
const DEFAULT_TARGETS: [&str; 7] = [
    "gateway",
    "gateway-redis",
    "bun",
    "ws",
    "socketio",
    "socketio-redis",
    "relay",
];

#[derive(clap::Args, Clone)]
pub struct SuiteArgs {
    /// The full size (about 18k sessions, 1k-20k msg/s, 3 rounds); default is a smoke run.
    #[arg(long)]
    full: bool,
    /// Rounds (interleaved runs of every target); default 1 for smoke, 3 for full.
    #[arg(long)]
    rounds: Option<usize>,
    /// Targets, comma-separated: gateway, gateway-redis, gateway-baseline (with --baseline), bun, ws, socketio, socketio-redis, relay
    /// (default: all but gateway-baseline; gateway-redis and socketio-redis only if redis-server is installed).
    #[arg(long, value_delimiter = ',')]
    targets: Option<Vec<String>>,
    /// Scenarios, comma-separated: idle, steady, burst, storm, slow, floor.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "idle,steady,burst,storm,slow,floor"
    )]
    scenarios: Vec<String>,
    /// Pin every server to this core (`taskset`); run this tool on another one.
    #[arg(long)]
    server_core: Option<usize>,
    /// The gateway binary (default: `gateway` beside this binary).
    #[arg(long)]
    gateway: Option<PathBuf>,
    /// Another gateway build for the `gateway-baseline` target (e.g. the last release, built
    /// from an older commit): both builds run in the same interleaved rounds.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// The peers folder (with node_modules installed).
    #[arg(long)]
    peers: Option<PathBuf>,
    /// Where results go (a new folder per run inside it).
    #[arg(long, default_value = "load-tests/results")]
    out: PathBuf,
    /// Nodes of the `gateway-redis` target (scenario (f)) and of its peer `socketio-redis`: a
    /// redis-server of the tool's own (from PATH) and this many processes sharing it.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=3))]
    redis_nodes: u8,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Which targets a scenario runs against.
fn applies(scenario: &str, t: Target) -> bool {
    match scenario {
        "burst" | "slow" => t.has_queue(),
        // Resuming after a drop is the gateway's protocol; the peers keep no log to resume (nor
        // does socketio-redis: a killed node's people would start new conversations).
        "storm" => t.is_gateway(),
        _ => true,
    }
}

/// Correctness that must hold at any size; each failure is one line.
fn check(row: &Value, smoke: bool) -> Vec<String> {
    let mut bad = Vec::new();
    // Either store mode: the same checks hold for one node and for a Redis cluster.
    let gateway = row["target"] == "gateway"
        || row["target"] == "gateway-redis"
        || row["target"] == "gateway-baseline";
    match row["scenario"].as_str() {
        Some("storm") => {
            for k in [
                "lost",
                "duplicated",
                "visitor_duplicate_seqs",
                "visitor_seq_gaps",
                "failed",
            ] {
                if row[k].as_u64().unwrap_or(1) != 0 {
                    bad.push(format!(
                        "{} storm round {}: {k} = {}",
                        row["target"], row["round"], row[k]
                    ));
                }
            }
        }
        Some("burst") if gateway => {
            // Order is asserted where it is measured exactly: the gateway's offers carry the
            // server's arrival number and offer time (`order_check` "server"), on one node and on
            // several. The generator's estimate (from when offers reach the operators) is not
            // asserted: on 3 nodes and redis-server sharing one core the offers' delivery times
            // no longer tell the dispatch order.
            let keys: &[&str] = if row["order_check"] == "server" {
                &["order_violations", "failed"]
            } else {
                &["failed"]
            };
            for &k in keys {
                if row[k].as_u64().unwrap_or(1) != 0 {
                    bad.push(format!(
                        "{} burst round {}: {k} = {}",
                        row["target"], row["round"], row[k]
                    ));
                }
            }
        }
        Some("steady") if gateway && smoke => {
            for s in row["steps"].as_array().into_iter().flatten() {
                if s["delivered"] != s["sent"] {
                    bad.push(format!(
                        "{} steady at {}: {} of {} delivered",
                        row["target"], s["rate"], s["delivered"], s["sent"]
                    ));
                }
            }
        }
        _ => {}
    }
    bad
}

/// What a results file says about its run.
fn meta_of(
    rows: &[Value],
    size: &Size,
    args: &SuiteArgs,
    started: &str,
    load_start: &str,
    t0: Instant,
) -> Value {
    let discarded = rows
        .iter()
        .map(|r| {
            usize::from(r["discarded"] == true)
                + r["steps"]
                    .as_array()
                    .map(|s| s.iter().filter(|s| s["discarded"] == true).count())
                    .unwrap_or(0)
        })
        .sum::<usize>();
    json!({
        "started": started,
        "size": size.name,
        "rounds": size.rounds,
        "sizes": size,
        "commit": commit(),
        "load_start": load_start,
        "load_end": load_average(),
        "server_core": args.server_core,
        "redis_nodes": args.redis_nodes,
        "baseline": args.baseline.as_ref().map(|b| b.display().to_string()),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "discarded": discarded,
        "seconds": t0.elapsed().as_secs_f64(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
    })
}

pub async fn suite(args: SuiteArgs) -> anyhow::Result<()> {
    let mut size = if args.full {
        Size::full()
    } else {
        Size::smoke()
    };
    if let Some(r) = args.rounds {
        size.rounds = r;
    }
    let names: Vec<String> = match &args.targets {
        Some(t) => t.clone(),
        None => DEFAULT_TARGETS
            .iter()
            .filter(|t| {
                let redis = Target::parse(t).is_ok_and(Target::uses_redis);
                let skip = redis && cluster::redis_server_on_path().is_none();
                if skip {
                    eprintln!("suite: no redis-server on PATH: target {t} left out");
                }
                !skip
            })
            .map(|t| (*t).to_owned())
            .collect(),
    };
    let targets: Vec<Target> = names
        .iter()
        .map(|s| Target::parse(s))
        .collect::<anyhow::Result<_>>()?;
    if targets.iter().any(|t| t.uses_redis()) {
        cluster::require_redis_server()?;
    }
    for s in &args.scenarios {
        anyhow::ensure!(SCENARIOS.contains(&s.as_str()), "unknown scenario {s}");
    }
    let bins = Bins {
        gateway: args.gateway.clone().unwrap_or_else(crate::default_gateway),
        baseline: args.baseline.clone(),
        peers: args.peers.clone().unwrap_or_else(default_peers),
        server_core: args.server_core,
        redis_nodes: usize::from(args.redis_nodes),
    };
    anyhow::ensure!(
        bins.gateway.exists(),
        "no gateway binary at {} (cargo build --release -p gateway)",
        bins.gateway.display()
    );
    if targets
        .iter()
        .any(|t| !t.is_gateway() && *t != Target::Relay)
    {
        anyhow::ensure!(
            bins.peers.join("node_modules").exists(),
            "peers not installed: (cd {} && npm ci)",
            bins.peers.display()
        );
    }
    let started = now_utc();
    let dir = args.out.join(started.replace(':', ""));
    let load_start = load_average();
    eprintln!(
        "suite: {} size, {} rounds, targets {names:?}, scenarios {:?}, server core {:?}, load {load_start}",
        size.name, size.rounds, args.scenarios, args.server_core
    );
    let t0 = Instant::now();
    let mut rows: Vec<Value> = Vec::new();
    let mut failures = Vec::new();
    for scenario in &args.scenarios {
        let scenario = scenario.as_str();
        if scenario == "floor" {
            eprintln!(
                "[{:>4.0}s] floor: loopback round trip",
                t0.elapsed().as_secs_f64()
            );
            let mut row = scenarios::loopback_rtt(20_000)?;
            row["scenario"] = json!("floor");
            rows.push(row);
            continue;
        }
        for round in 1..=size.rounds {
            // Interleave: each round starts with another target.
            let mut order: Vec<Target> = targets
                .iter()
                .copied()
                .filter(|t| applies(scenario, *t))
                .collect();
            if !order.is_empty() {
                let k = (round - 1) % order.len();
                order.rotate_left(k);
            }
            for t in order {
                eprintln!(
                    "[{:>4.0}s] {scenario} round {round}/{}: {}",
                    t0.elapsed().as_secs_f64(),
                    size.rounds,
                    t.name()
                );
                let result = match scenario {
                    "idle" => scenarios::idle(&bins, t, &size).await,
                    "steady" => scenarios::steady(&bins, t, &size).await,
                    "burst" => scenarios::burst(&bins, t, &size).await,
                    "storm" => scenarios::storm(&bins, t, &size).await,
                    "slow" => scenarios::slow(&bins, t, &size).await,
                    _ => unreachable!(),
                };
                // A failed run is recorded and reported; the suite goes on with the others.
                let mut row = match result {
                    Ok(row) => row,
                    Err(e) => {
                        let msg = format!("{scenario} round {round} against {}: {e:#}", t.name());
                        eprintln!("  error: {msg}");
                        failures.push(msg.clone());
                        json!({"error": msg, "discarded": true})
                    }
                };
                row["scenario"] = json!(scenario);
                row["target"] = json!(t.name());
                row["round"] = json!(round);
                failures.extend(check(&row, !args.full));
                rows.push(row);
            }
        }
        // Write what we have after each scenario, so a long run stopped early still reports.
        let meta = meta_of(&rows, &size, &args, &started, &load_start, t0);
        report::write(&dir, &meta, &rows, &targets)?;
    }
    let meta = meta_of(&rows, &size, &args, &started, &load_start, t0);
    report::write(&dir, &meta, &rows, &targets)?;
    let md = std::fs::read_to_string(dir.join("results.md"))?;
    println!("{md}");
    println!("results: {}", dir.display());
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("FAILED: {f}");
        }
        anyhow::bail!("{} correctness check(s) failed", failures.len());
    }
    Ok(())
}
