//! Server-side alerts across nodes (issue 21, item 2): two nodes on one Redis both see the
//! empty night, and it is announced once, not twice.

use std::time::{Duration, Instant};

use super::node::{http, Node};
use super::redis::RedisServer;
use super::serial;
use super::setup::{nodes, prefix, redis_env, with};

/// A metric's value on a node's `/metrics`, summed over the lines that start with `series`.
async fn metric(node: &Node, series: &str) -> f64 {
    let body = http()
        .get(format!("{}/metrics", node.base))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .unwrap();
    body.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn two_nodes_on_one_redis_both_show_an_empty_night_and_announce_it_once() {
    let _g = serial().await;
    let redis = RedisServer::start().await;
    let env = with(
        redis_env(&redis.url(), &prefix()),
        &[("TSUNAGU_ALERTS__CHECK_MS", "200")],
    );
    let ns = nodes(2, &env).await;
    // Nobody is on duty: both nodes see it within a few evaluations.
    let start = Instant::now();
    loop {
        let a = metric(&ns[0], "tsunagu_alerts_active{kind=\"nobody_on_duty\"}").await;
        let b = metric(&ns[1], "tsunagu_alerts_active{kind=\"nobody_on_duty\"}").await;
        if a == 1.0 && b == 1.0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "both nodes see the empty night"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Many evaluations later, on both nodes together: one announcement.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let series = "tsunagu_alerts_raised_total{kind=\"nobody_on_duty\"";
    let a = metric(&ns[0], series).await;
    let b = metric(&ns[1], series).await;
    assert_eq!(
        a + b,
        1.0,
        "announced once across the nodes (a: {a}, b: {b})"
    );
}
