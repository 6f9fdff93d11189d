//! Scenario (c), arrival burst: how fast people arriving together are offered to operators, and
//! whether in the order they arrived (exactly, from the server's arrival numbers, or estimated).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;

use super::{ms, on_duty, progress, self_cpu, Size, GENERATOR_BOUND};
use crate::clients::{self, hist, welcome_ids, Shared};
use crate::servers::{Bins, Server, Target};

/// (c) Arrival burst: `burst_visitors` people arrive at `burst_rate` a second (open loop)
/// against `burst_operators` on duty. Time from a person's hello to the offer reaching an
/// operator, and to the person seeing the operator join; order violations.
pub async fn burst(bins: &Bins, target: Target, size: &Size) -> anyhow::Result<Value> {
    let n = size.burst_visitors;
    let ops_n = size.burst_operators;
    let capacity = (n.div_ceil(ops_n) + 2) as u32;
    let server = Arc::new(Server::start(target, bins, ops_n, capacity, &[]).await?);
    let origin = Instant::now();
    let sh = Shared::new(origin, false);
    let (stop_tx, stop) = watch::channel(false);
    let ops = on_duty(&server, ops_n, &sh, &stop).await?;
    let start = origin.elapsed() + Duration::from_millis(500);
    let (cpu0, self0, t0) = (server.cpu(), self_cpu(), Instant::now());
    let mut people = Vec::new();
    for i in 0..n {
        let at = start + Duration::from_secs_f64(i as f64 / size.burst_rate);
        let server = Arc::clone(&server);
        let mut stop = stop.clone();
        people.push(tokio::spawn(async move {
            // The clock thread, not tokio's 1 ms timer: that one let arrivals out in pairs on
            // its ticks, up to 1.8 ms late (`clock.rs`).
            crate::clock::sleep_until(origin + at).await;
            let woke = origin.elapsed().as_micros() as u64;
            let mut sock = clients::visitor_socket(&server, i).await?;
            let hello = origin.elapsed().as_micros() as u64;
            sock.send(&clients::hello_start()).await?;
            let welcome = sock.until("\"welcome\"").await?;
            let welcomed = origin.elapsed().as_micros() as u64;
            sock.until("operator_joined").await?;
            let joined = origin.elapsed().as_micros() as u64;
            let (_, conv) = welcome_ids(&welcome);
            // Hold the conversation open until the end of the scenario.
            tokio::spawn(async move {
                let _ = stop.changed().await;
                drop(sock);
            });
            anyhow::Ok((conv, hello, welcomed, joined, (at.as_micros() as u64, woke)))
        }));
    }
    let mut arrivals = Vec::new();
    let mut failed = 0;
    for p in people {
        match p.await {
            Ok(Ok(a)) => arrivals.push(a),
            _ => failed += 1,
        }
    }
    let wall = t0.elapsed();
    let server_cpu = server.cpu() - cpu0;
    let busy = (self_cpu() - self0).as_secs_f64() / wall.as_secs_f64();
    let offers = sh.offers.lock().map(|m| m.clone()).unwrap_or_default();
    let (mut to_offer, mut to_join) = (hist(), hist());
    // The server's own view: the `waited_ms` it puts in each offer (queued to offered, whole
    // ms of its clock, so 0 is under 1 ms and 1 is anything under 2 ms).
    let mut waits: Vec<u64> = Vec::with_capacity(arrivals.len());
    let mut order = Vec::new();
    let mut server_order = Vec::new();
    for (conv, hello, _welcomed, joined, _) in &arrivals {
        let _ = to_join.record(joined.saturating_sub(*hello).max(1));
        if let Some(o) = offers.get(conv) {
            let _ = to_offer.record(o.at_us.saturating_sub(*hello).max(1));
            waits.push(o.waited_ms);
            // When the server queued it, on this clock: the offer's arrival less the wait the
            // server reports (ms resolution). The generator's own view of arrival order
            // (welcome received) is skewed when a busy server delays some welcomes.
            order.push((o.at_us.saturating_sub(o.waited_ms * 1000), o.at_us));
            server_order.extend(o.order);
        }
    }
    // Exact where the server says it (the gateway's `arrival` and `offered_at` in each offer):
    // people offered after someone who arrived later had been. Otherwise (the peers) an
    // estimate from when offers reached the operators; 10 ms: `waited_ms` has ms resolution,
    // and each offer's queued time is estimated from its arrival, so the jitter of delivering
    // offers (several ms on a loaded 2-core machine, the generator one thread for thousands of
    // sockets; with several nodes, the hop over the bus) enters it; a queue served out of order
    // while people wait shows far beyond it.
    let exact = !server_order.is_empty() && server_order.len() == order.len();
    let violations = if exact {
        offered_out_of_order(&server_order)
    } else {
        order_violations(&order, 10_000)
    };
    // For finding where slow assignments come from: every arrival's (hello, offer, joined) in
    // µs since the origin and the wait the server reported in its offer (ms), one per line, to the file this names.
    if let Some(path) = std::env::var_os("TSUNAGU_LOAD_BURST_DUMP") {
        let mut out = String::new();
        for (conv, hello, _, joined, (at, woke)) in &arrivals {
            let o = offers.get(conv).copied().unwrap_or_default();
            let (off, waited_ms) = (o.at_us, o.waited_ms);
            out.push_str(&format!("{hello} {off} {joined} {waited_ms} {at} {woke}\n"));
        }
        let _ = std::fs::write(path, out);
    }
    let _ = stop_tx.send(true);
    for o in ops {
        let _ = o.await;
    }
    if let Ok(s) = Arc::try_unwrap(server) {
        s.stop().await;
    }
    progress(&format!(
        "{}: {} arrivals at {}/s: offer p99 {:.2} ms, joined p99 {:.2} ms, {violations} order violations, {failed} failed",
        target.name(),
        arrivals.len(),
        size.burst_rate,
        ms(to_offer.value_at_quantile(0.99)),
        ms(to_join.value_at_quantile(0.99))
    ));
    Ok(json!({
        "arrivals": n,
        "rate": size.burst_rate,
        "operators": ops_n,
        "assigned": arrivals.len(),
        "failed": failed,
        "offer_p50_ms": ms(to_offer.value_at_quantile(0.5)),
        "offer_p99_ms": ms(to_offer.value_at_quantile(0.99)),
        "offer_max_ms": ms(to_offer.max()),
        "joined_p50_ms": ms(to_join.value_at_quantile(0.5)),
        "joined_p99_ms": ms(to_join.value_at_quantile(0.99)),
        "joined_max_ms": ms(to_join.max()),
        "order_violations": violations,
        "order_check": if exact { "server" } else { "estimate" },
        "server_wait_p99_ms": quantile(&mut waits, 0.99),
        "server_wait_under_1ms_pct": if waits.is_empty() {
            Value::Null
        } else {
            json!(waits.iter().filter(|w| **w == 0).count() as f64 / waits.len() as f64 * 100.0)
        },
        "server_cpu_pct": server_cpu.as_secs_f64() / wall.as_secs_f64() * 100.0,
        "generator_busy_pct": busy * 100.0,
        "discarded": busy > GENERATOR_BOUND,
    }))
}

/// The `q` quantile of `values` (sorted here), `None` when there are none.
fn quantile(values: &mut [u64], q: f64) -> Option<u64> {
    values.sort_unstable();
    let last = values.len().checked_sub(1)?;
    values.get(((last as f64) * q).round() as usize).copied()
}

/// People offered before someone who arrived earlier: `order` holds (arrival number, offered
/// at) per person as the server gave them. A person counts when anyone with a smaller arrival
/// number was offered strictly later (offers made in one step share their time).
pub fn offered_out_of_order(order: &[(u64, u64)]) -> usize {
    let mut by_arrival = order.to_vec();
    by_arrival.sort_unstable();
    // In arrival order, the latest offer of those who arrived before each person.
    let mut latest_before = 0u64;
    let mut violations = 0;
    for (_, offered) in by_arrival {
        if latest_before > offered {
            violations += 1;
        }
        latest_before = latest_before.max(offered);
    }
    violations
}

/// People offered while someone queued more than `tolerance_us` before them was still waiting
/// for an offer. `order` holds (queued at, offered at) per person.
pub fn order_violations(order: &[(u64, u64)], tolerance_us: u64) -> usize {
    let mut by_offer: Vec<(u64, u64, usize)> = order
        .iter()
        .enumerate()
        .map(|(i, (q, o))| (*o, *q, i))
        .collect();
    by_offer.sort_unstable();
    let mut waiting: BTreeSet<(u64, usize)> = order
        .iter()
        .enumerate()
        .map(|(i, (q, _))| (*q, i))
        .collect();
    let mut violations = 0;
    for (_, queued, i) in by_offer {
        waiting.remove(&(queued, i));
        if let Some((earliest, _)) = waiting.first() {
            if earliest + tolerance_us < queued {
                violations += 1;
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_in_arrival_order_or_in_one_step_are_not_out_of_order() {
        // (arrival, offered at): three offered together, then two more later.
        let order = [(1, 10), (2, 10), (3, 10), (4, 12), (5, 15)];
        assert_eq!(offered_out_of_order(&order), 0);
    }

    #[test]
    fn people_offered_before_an_earlier_arrival_are_out_of_order() {
        // 3 and 4 were offered (at 11, 12) while 2, who arrived before them, waited until 20.
        let order = [(4, 12), (1, 10), (2, 20), (3, 11), (5, 21)];
        assert_eq!(offered_out_of_order(&order), 2);
    }

    #[test]
    fn order_violations_count_people_offered_past_an_earlier_one() {
        // In order: none.
        assert_eq!(
            order_violations(&[(0, 10), (5000, 20), (9000, 30)], 1000),
            0
        );
        // The third queued person offered before the first: one violation.
        assert_eq!(
            order_violations(&[(0, 30), (5000, 40), (9000, 10)], 1000),
            1
        );
        // Within the tolerance it is not a violation.
        assert_eq!(order_violations(&[(0, 30), (500, 10)], 1000), 0);
    }
}
