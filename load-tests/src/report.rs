//! Results of a suite: medians over rounds, ratios of the gateway against each peer, the
//! targets of the load-test issue, and the files: `results.json`, `results.md`, `latency.svg`,
//! `memory.svg`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use crate::servers::Target;

pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

/// The rows of one scenario and target, without discarded (generator-bound) ones.
fn rows<'a>(all: &'a [Value], scenario: &str, target: Target) -> Vec<&'a Value> {
    all.iter()
        .filter(|r| r["scenario"] == scenario && r["target"] == target.name())
        .collect()
}

fn med(rows: &[&Value], key: &str) -> Option<f64> {
    median(
        rows.iter()
            .filter(|r| r["discarded"] != true)
            .filter_map(|r| r[key].as_f64())
            .collect(),
    )
}

/// Median per rate of a steady row's step field.
fn steady_steps(all: &[Value], target: Target, key: &str) -> Vec<(f64, f64)> {
    let mut by_rate: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for r in rows(all, "steady", target) {
        for s in r["steps"].as_array().into_iter().flatten() {
            if s["discarded"] == true {
                continue;
            }
            if let (Some(rate), Some(v)) = (s["rate"].as_f64(), s[key].as_f64()) {
                by_rate.entry(rate as u64).or_default().push(v);
            }
        }
    }
    by_rate
        .into_iter()
        .filter_map(|(rate, v)| median(v).map(|m| (rate as f64, m)))
        .collect()
}

/// The highest stepped rate whose median p99 is under 5 ms (0 if none).
fn max_rate_under_5ms(all: &[Value], target: Target) -> f64 {
    steady_steps(all, target, "p99_ms")
        .into_iter()
        .filter(|(_, p99)| *p99 < 5.0)
        .map(|(rate, _)| rate)
        .fold(0.0, f64::max)
}

fn at_rate(points: &[(f64, f64)], rate: f64) -> Option<f64> {
    points
        .iter()
        .min_by(|a, b| (a.0 - rate).abs().total_cmp(&(b.0 - rate).abs()))
        .map(|p| p.1)
}

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

/// Medians per target for every scenario, the ratios and the targets.
pub fn summarise(all: &[Value], targets: &[Target]) -> Value {
    let mut per = serde_json::Map::new();
    for &t in targets {
        let idle = rows(all, "idle", t);
        let burst = rows(all, "burst", t);
        let slow = rows(all, "slow", t);
        let p99 = steady_steps(all, t, "p99_ms");
        let cpu = steady_steps(all, t, "server_cpu_ms_per_1k");
        let slow_p = |phase: &str| {
            median(
                slow.iter()
                    .filter_map(|r| r[phase]["p99_ms"].as_f64())
                    .collect(),
            )
        };
        per.insert(
            t.name().to_owned(),
            json!({
                "idle_bytes_per_session": med(&idle, "bytes_per_session"),
                "idle_cpu_pct": med(&idle, "idle_cpu_pct"),
                "idle_rss_top_mb": med(&idle, "rss_top_mb"),
                "steady_p50_ms": steady_steps(all, t, "p50_ms"),
                "steady_p99_ms": p99,
                "steady_p999_ms": steady_steps(all, t, "p999_ms"),
                "steady_max_ms": steady_steps(all, t, "max_ms"),
                "steady_cpu_ms_per_1k": cpu,
                "max_rate_p99_under_5ms": max_rate_under_5ms(all, t),
                "p99_at_5k_ms": at_rate(&p99, 5000.0),
                "cpu_per_1k_at_5k_ms": at_rate(&cpu, 5000.0),
                "burst_offer_p50_ms": med(&burst, "offer_p50_ms"),
                "burst_offer_p99_ms": med(&burst, "offer_p99_ms"),
                "burst_joined_p50_ms": med(&burst, "joined_p50_ms"),
                "burst_joined_p99_ms": med(&burst, "joined_p99_ms"),
                "burst_order_violations": burst.iter().filter_map(|r| r["order_violations"].as_u64()).max(),
                "burst_server_wait_p99_ms": med(&burst, "server_wait_p99_ms"),
                "burst_server_wait_under_1ms_pct": med(&burst, "server_wait_under_1ms_pct"),
                "slow_baseline_p99_ms": slow_p("baseline"),
                "slow_stalled_p99_ms": slow_p("stalled"),
                "slow_rss_growth_mb": med(&slow, "rss_growth_mb"),
                "slow_closed_by_server": slow.iter().filter_map(|r| r["slow_closed_by_server"].as_u64()).max(),
            }),
        );
    }
    let g = &per.get("gateway").cloned().unwrap_or(Value::Null);
    let mut ratios = serde_json::Map::new();
    // Ratios are against the peers: the one-process peers against the gateway (memory store),
    // socketio-redis against gateway-redis (several nodes and a Redis each). gateway-redis and
    // gateway-baseline are this gateway too: their own rows show them beside it.
    for &t in targets.iter().filter(|t| !t.is_gateway()) {
        let p = &per[t.name()];
        let reference = t.reference();
        let g = &per.get(reference.name()).cloned().unwrap_or(Value::Null);
        let div = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
            (Some(a), Some(b)) if b != 0.0 => Some(a / b),
            _ => None,
        };
        ratios.insert(
            t.name().to_owned(),
            json!({
                "against": reference.name(),
                "memory_per_session_peer_over_gateway": div(&p["idle_bytes_per_session"], &g["idle_bytes_per_session"]),
                "p99_at_5k_gateway_over_peer": div(&g["p99_at_5k_ms"], &p["p99_at_5k_ms"]),
                "cpu_per_1k_at_5k_peer_over_gateway": div(&p["cpu_per_1k_at_5k_ms"], &g["cpu_per_1k_at_5k_ms"]),
                "max_rate_gateway_over_peer": div(&g["max_rate_p99_under_5ms"], &p["max_rate_p99_under_5ms"]),
                "burst_offer_p99_gateway_over_peer": div(&g["burst_offer_p99_ms"], &p["burst_offer_p99_ms"]),
                "burst_order_violations_gateway": g["burst_order_violations"],
                "burst_order_violations_peer": p["burst_order_violations"],
            }),
        );
    }
    let bun = per.get("bun");
    let sio = per.get("socketio");
    let le = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) => Some(a <= b),
        _ => None,
    };
    let targets_met = json!({
        "memory_per_idle_visitor_at_most_bun": bun.and_then(|b| le(&g["idle_bytes_per_session"], &b["idle_bytes_per_session"])),
        "p99_at_5k_at_most_bun": bun.and_then(|b| le(&g["p99_at_5k_ms"], &b["p99_at_5k_ms"])),
        "throughput_p99_under_5ms_at_least_2x_socketio": sio.and_then(|s| match (g["max_rate_p99_under_5ms"].as_f64(), s["max_rate_p99_under_5ms"].as_f64()) {
            (Some(a), Some(b)) => Some(a >= 2.0 * b && a > 0.0),
            _ => None,
        }),
        "assignment_p99_under_1ms": g["burst_offer_p99_ms"].as_f64().map(|v| v < 1.0),
    });
    json!({"per_target": per, "ratios": ratios, "targets": targets_met})
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

const COLORS: [&str; 8] = [
    "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#7f7f7f", "#9467bd", "#8c564b", "#17becf",
];

/// A line chart as SVG: one polyline per series, a linear x axis from 0, and a y axis linear
/// from 0 or (`log_y`) logarithmic over whole decades.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    log_y: bool,
) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 440.0, 70.0, 150.0, 40.0, 50.0);
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let xmax = pts.clone().map(|p| p.0).fold(0.0, f64::max).max(1e-9) * 1.05;
    let ys = pts.map(|p| p.1).filter(|v| *v > 0.0);
    let (ylo, yhi) = if log_y {
        let lo = ys.clone().fold(f64::INFINITY, f64::min);
        let hi = ys.fold(0.0, f64::max);
        let lo = if lo.is_finite() {
            lo.log10().floor()
        } else {
            0.0
        };
        (lo, hi.max(1e-9).log10().ceil().max(lo + 1.0))
    } else {
        (0.0, ys.fold(0.0, f64::max).max(1e-9) * 1.1)
    };
    let (pw, ph) = (w - left - right, h - top - bottom);
    let x = |v: f64| left + v / xmax * pw;
    let y = |v: f64| {
        let v = if log_y { v.max(1e-9).log10() } else { v };
        top + ph - (v - ylo) / (yhi - ylo) * ph
    };
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    let _ = write!(
        s,
        r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#,
        top + ph,
        left + pw,
        top + ph,
        top + ph
    );
    for i in 0..=5 {
        let xv = xmax / 5.0 * i as f64;
        let yv = if log_y {
            10f64.powf(ylo + (yhi - ylo) / 5.0 * i as f64)
        } else {
            yhi / 5.0 * i as f64
        };
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="{}" y="{}" text-anchor="end">{}</text><line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="#eee"/>"##,
            x(xv),
            top + ph + 18.0,
            tick(xv),
            left - 6.0,
            y(yv) + 4.0,
            tick(yv),
            y(yv),
            left + pw,
            y(yv)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        left + pw / 2.0,
        h - 10.0,
        esc(x_label)
    );
    let _ = write!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#,
        top + ph / 2.0,
        top + ph / 2.0,
        esc(y_label)
    );
    for (k, (name, p)) in series.iter().enumerate() {
        let c = COLORS[k % COLORS.len()];
        let d: Vec<String> = p
            .iter()
            .map(|(a, b)| format!("{:.1},{:.1}", x(*a), y(*b)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            d.join(" ")
        );
        for (a, b) in p {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"/>"#,
                x(*a),
                y(*b)
            );
        }
        let ly = top + 14.0 + 20.0 * k as f64;
        let _ = write!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            left + pw + 12.0,
            left + pw + 36.0,
            left + pw + 42.0,
            ly + 4.0,
            esc(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn tick(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(target: &str, bytes: f64) -> Value {
        json!({"scenario": "idle", "target": target, "bytes_per_session": bytes})
    }

    fn burst(target: &str, p99: f64, violations: u64) -> Value {
        json!({"scenario": "burst", "target": target, "offer_p99_ms": p99, "order_violations": violations})
    }

    #[test]
    fn several_nodes_are_compared_with_several_nodes() {
        let rows = [
            idle("gateway", 1000.0),
            idle("gateway-redis", 2000.0),
            idle("socketio", 3000.0),
            idle("socketio-redis", 8000.0),
            burst("gateway-redis", 10.0, 1),
            burst("socketio-redis", 40.0, 5),
        ];
        let targets = [
            Target::Gateway,
            Target::GatewayRedis,
            Target::SocketIo,
            Target::SocketIoRedis,
        ];
        let s = summarise(&rows, &targets);
        let one = &s["ratios"]["socketio"];
        assert_eq!(one["against"], "gateway");
        assert_eq!(one["memory_per_session_peer_over_gateway"], 3.0);
        let many = &s["ratios"]["socketio-redis"];
        assert_eq!(many["against"], "gateway-redis");
        assert_eq!(many["memory_per_session_peer_over_gateway"], 4.0);
        assert_eq!(many["burst_offer_p99_gateway_over_peer"], 0.25);
        assert_eq!(many["burst_order_violations_gateway"], 1);
        assert_eq!(many["burst_order_violations_peer"], 5);
        // gateway-redis is the gateway: no ratio of its own.
        assert!(s["ratios"].get("gateway-redis").is_none());
        let md = markdown(&json!({}), &rows, &s, &targets);
        assert!(
            md.contains("| socketio-redis | gateway-redis | 4.00 |"),
            "{md}"
        );
    }

    #[test]
    fn targets_parse_by_name() {
        for t in Target::ALL {
            assert_eq!(Target::parse(t.name()).ok(), Some(t));
        }
        assert!(Target::SocketIoRedis.uses_redis());
        assert!(!Target::SocketIoRedis.is_gateway());
    }
}
