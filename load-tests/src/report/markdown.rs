//! `results.md`: the run's conditions, then a table per scenario from the summary (the storm and
//! floor rows as they are), the ratios and the targets met.

use std::fmt::Write as _;

use serde_json::Value;

use crate::servers::Target;

/// A count, or a dash when there is none.
fn count(v: &Value) -> String {
    v.as_u64().map_or_else(|| "–".to_owned(), |n| n.to_string())
}

fn f(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "–".to_owned(),
    }
}

/// Markdown tables of a summary (and the storm and floor rows as they are).
pub fn markdown(meta: &Value, all: &[Value], summary: &Value, targets: &[Target]) -> String {
    let mut md = String::new();
    let per = &summary["per_target"];
    let _ = writeln!(
        md,
        "Run: {} ({} size, {} rounds), commit {}, load average at start {}, at end {}.\n",
        meta["started"].as_str().unwrap_or(""),
        meta["size"].as_str().unwrap_or(""),
        meta["rounds"],
        meta["commit"].as_str().unwrap_or(""),
        meta["load_start"].as_str().unwrap_or(""),
        meta["load_end"].as_str().unwrap_or("")
    );
    let _ = writeln!(md, "Medians over rounds; runs with the generator's core over 85% busy are discarded ({} discarded).\n", meta["discarded"]);
    if targets.contains(&Target::GatewayBaseline) {
        let _ = writeln!(md, "`gateway-baseline`: the gateway built from {} (memory store), run in the same interleaved rounds as `gateway` (this commit's build).\n", meta["baseline"].as_str().unwrap_or("another build"));
    }
    if targets.contains(&Target::GatewayRedis) {
        let _ = writeln!(md, "`gateway-redis`: {} gateway nodes sharing one redis-server (all on the server core); its CPU and RSS are the sum over the nodes and redis-server. Steady and slow: every person on one node, operators on the others; idle, burst and storm: people spread over the nodes, operators off the first node (the one the storm kills).\n", meta["redis_nodes"].as_u64().unwrap_or(3));
    }
    if targets.contains(&Target::SocketIoRedis) {
        let _ = writeln!(md, "`socketio-redis`: the Socket.IO peer on {} Node.js processes sharing one redis-server (Socket.IO's Redis adapter; the queue and operators' free capacity in Redis, changed by Lua scripts), all on the server core, clients placed on the nodes as for `gateway-redis`; its CPU and RSS are the sum over the processes and redis-server. Its ratios are against `gateway-redis`. No storm: it keeps no log to resume from.\n", meta["redis_nodes"].as_u64().unwrap_or(3));
    }

    let _ = writeln!(md, "### (a) Idle capacity\n");
    let _ = writeln!(
        md,
        "| target | memory per waiting person (RSS slope) | RSS at top | idle CPU |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | ---: |");
    for t in targets {
        let p = &per[t.name()];
        let _ = writeln!(
            md,
            "| {} | {} KB | {} MB | {} % |",
            t.name(),
            f(p["idle_bytes_per_session"].as_f64().map(|b| b / 1000.0), 2),
            f(p["idle_rss_top_mb"].as_f64(), 1),
            f(p["idle_cpu_pct"].as_f64(), 2)
        );
    }

    let _ = writeln!(
        md,
        "\n### (b) Steady chat, open loop (latency from the scheduled send time)\n"
    );
    let _ = writeln!(
        md,
        "| target | rate msg/s | p50 ms | p99 ms | p99.9 ms | max ms | server CPU ms per 1k msg |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for t in targets {
        let p = &per[t.name()];
        let series = |k: &str| -> Vec<(f64, f64)> {
            p[k].as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| Some((v[0].as_f64()?, v[1].as_f64()?)))
                .collect()
        };
        let (p50, p99, p999, max, cpu) = (
            series("steady_p50_ms"),
            series("steady_p99_ms"),
            series("steady_p999_ms"),
            series("steady_max_ms"),
            series("steady_cpu_ms_per_1k"),
        );
        for (i, (rate, v)) in p99.iter().enumerate() {
            let get = |s: &[(f64, f64)]| s.get(i).map(|x| x.1);
            let _ = writeln!(
                md,
                "| {} | {rate:.0} | {} | {v:.2} | {} | {} | {} |",
                t.name(),
                f(get(&p50), 2),
                f(get(&p999), 2),
                f(get(&max), 2),
                f(get(&cpu), 1)
            );
        }
    }
    let _ = writeln!(md, "\n| target | highest rate with p99 < 5 ms |");
    let _ = writeln!(md, "| --- | ---: |");
    for t in targets {
        let _ = writeln!(
            md,
            "| {} | {} msg/s |",
            t.name(),
            f(per[t.name()]["max_rate_p99_under_5ms"].as_f64(), 0)
        );
    }

    let _ = writeln!(md, "\n### (c) Arrival burst (time from hello to the offer at an operator, and to the person seeing the operator join)\n");
    let _ = writeln!(md, "Server wait: the `waited_ms` each offer carries (queued to offered on the server's clock, whole ms: 0 is under 1 ms, 1 under 2 ms). Order violations: people offered while someone who arrived earlier was offered later; exact for the gateway (the `arrival` number and `offered_at` in its offers), estimated for the peers from when offers reached the operators less their `waited_ms` (10 ms tolerance).\n");
    let _ = writeln!(md, "| target | offer p50 ms | offer p99 ms | joined p50 ms | joined p99 ms | server wait p99 ms | server wait under 1 ms | order violations |");
    let _ = writeln!(
        md,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for t in targets.iter().filter(|t| t.has_queue()) {
        let p = &per[t.name()];
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} % | {} |",
            t.name(),
            f(p["burst_offer_p50_ms"].as_f64(), 2),
            f(p["burst_offer_p99_ms"].as_f64(), 2),
            f(p["burst_joined_p50_ms"].as_f64(), 2),
            f(p["burst_joined_p99_ms"].as_f64(), 2),
            f(p["burst_server_wait_p99_ms"].as_f64(), 0),
            f(p["burst_server_wait_under_1ms_pct"].as_f64(), 1),
            p["burst_order_violations"]
        );
    }

    let _ = writeln!(md, "\n### (d) Reconnect storm (gateway: every connection dropped at once), (f) a node killed (gateway-redis: kill -9 of one node, its people resume on the others)\n");
    let _ = writeln!(md, "| target | round | nodes | sessions | resumed | all resumed after | resume p50 / p99 | messages | lost | duplicated | failed |");
    let _ = writeln!(
        md,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in all.iter().filter(|r| r["scenario"] == "storm") {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} ms | {} / {} ms | {} | {} | {} | {} |",
            r["target"].as_str().unwrap_or("gateway"),
            r["round"],
            r["nodes"].as_u64().unwrap_or(1),
            r["sessions"],
            r["resumed"],
            f(r["all_resumed_ms"].as_f64(), 0),
            f(r["resume_p50_ms"].as_f64(), 0),
            f(r["resume_p99_ms"].as_f64(), 0),
            r["messages"],
            r["lost"],
            r["duplicated"].as_u64().unwrap_or(0)
                + r["visitor_duplicate_seqs"].as_u64().unwrap_or(0),
            r["failed"]
        );
    }

    let _ = writeln!(
        md,
        "\n### (e) Slow consumers (some operators stop reading)\n"
    );
    let _ = writeln!(md, "| target | others' p99 before | others' p99 stalled | RSS growth | slow sockets closed by the server |");
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: |");
    for t in targets.iter().filter(|t| t.has_queue()) {
        let p = &per[t.name()];
        let _ = writeln!(
            md,
            "| {} | {} ms | {} ms | {} MB | {} |",
            t.name(),
            f(p["slow_baseline_p99_ms"].as_f64(), 2),
            f(p["slow_stalled_p99_ms"].as_f64(), 2),
            f(p["slow_rss_growth_mb"].as_f64(), 1),
            p["slow_closed_by_server"]
        );
    }

    if let Some(rtt) = all.iter().find(|r| r["scenario"] == "floor") {
        let _ = writeln!(md, "\n### Floor\n");
        let _ = writeln!(md, "Loopback TCP round trip (150 bytes): p50 {} µs, p99 {} µs. The raw relay (`relay` rows above) is the least CPU per message a websocket relay spends here.",
            rtt["p50_us"], rtt["p99_us"]);
    }

    let _ = writeln!(md, "\n### Ratios (gateway against each peer) and targets\n");
    let _ = writeln!(md, "Each peer against the gateway run the same way: one process against `gateway`, several nodes against `gateway-redis`.\n");
    let _ = writeln!(md, "| peer | against | memory per session, peer ÷ gateway | p99 at 5k msg/s, gateway ÷ peer | CPU per 1k msg at 5k, peer ÷ gateway | rate at p99 < 5 ms, gateway ÷ peer | burst offer p99, gateway ÷ peer | burst order violations, gateway / peer |");
    let _ = writeln!(
        md,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for (name, r) in summary["ratios"].as_object().into_iter().flatten() {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} | {} | {} / {} |",
            r["against"].as_str().unwrap_or("gateway"),
            f(r["memory_per_session_peer_over_gateway"].as_f64(), 2),
            f(r["p99_at_5k_gateway_over_peer"].as_f64(), 2),
            f(r["cpu_per_1k_at_5k_peer_over_gateway"].as_f64(), 2),
            f(r["max_rate_gateway_over_peer"].as_f64(), 2),
            f(r["burst_offer_p99_gateway_over_peer"].as_f64(), 2),
            count(&r["burst_order_violations_gateway"]),
            count(&r["burst_order_violations_peer"])
        );
    }
    let _ = writeln!(md);
    for (name, v) in summary["targets"].as_object().into_iter().flatten() {
        let verdict = match v.as_bool() {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        let _ = writeln!(md, "- {}: **{verdict}**", name.replace('_', " "));
    }
    md
}
