//! A suite's rows summarised: medians over rounds per target and scenario (discarded,
//! generator-bound rows left out), the ratios of each peer against its gateway, and whether the
//! load-test issue's targets are met.

use std::collections::BTreeMap;

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
pub(super) fn rows<'a>(all: &'a [Value], scenario: &str, target: Target) -> Vec<&'a Value> {
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
pub(super) fn steady_steps(all: &[Value], target: Target, key: &str) -> Vec<(f64, f64)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::markdown::markdown;

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
}
