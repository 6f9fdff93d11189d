//! What Redis mode adds to a message round trip, against the in-memory store: a person sends,
//! one at a time, and we time the `ack` (stored) and the operator's copy of the event
//! (delivered, across nodes over pub/sub in the cluster rows). Printed, not asserted: timings on
//! a shared two-core machine (and of a debug build) are for comparison, not for a threshold.
//!
//! While the gateway's plain-HTTP listener leaves Nagle's algorithm on (no `TCP_NODELAY` on
//! accepted sockets, `startup.rs`), a reply written right after another small frame waits for
//! the client's delayed ACK, and every row here reads about 40 ms whatever the store: that
//! is the figure to watch for when this is fixed (then well under 5 ms on loopback).

use std::time::{Duration, Instant};

use serde_json::json;

use super::client::{id, Operator, Visitor, WAIT};
use super::node::Node;
use super::redis::RedisServer;
use super::serial;
use super::setup::{nodes, percentile_ms, prefix, redis_env, with};

/// Messages per row (`LATENCY_MESSAGES` overrides; 500 gives steadier percentiles).
fn messages() -> usize {
    std::env::var("LATENCY_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

pub struct Figures {
    pub ack_ms: (f64, f64),
    pub delivered_ms: (f64, f64),
}

/// A person on `a`, an operator on `b`; `messages()` messages after a short warm-up. Returns the
/// median and 99th percentile of send→ack and send→operator-has-it.
pub async fn round_trips(a: &Node, b: &Node, operator: &str) -> anyhow::Result<Figures> {
    let mut v = Visitor::start(a, "ja").await?;
    let mut op = Operator::connect(b, b, operator, true).await?;
    let conv = op.take_one().await?;
    anyhow::ensure!(conv == v.conversation, "took another conversation");
    let (mut acks, mut deliveries) = (Vec::new(), Vec::new());
    for i in 0..(messages() + 20) {
        let cid = id();
        let t = Instant::now();
        v.ws.send(json!({"type":"send","id":cid,"text":format!("message {i}")}))
            .await?;
        let r = v.ws.reply_to(&cid, WAIT).await?;
        anyhow::ensure!(r["type"] == "ack", "send refused: {r}");
        let acked = t.elapsed();
        let c = cid.clone();
        op.ws
            .expect("the message", WAIT, move |f| {
                f["type"] == "event" && f["event"]["id"] == c.as_str()
            })
            .await?;
        let delivered = t.elapsed();
        if i >= 20 {
            acks.push(acked);
            deliveries.push(delivered);
        }
        // Keep the logs of these sockets small.
        v.ws.log.clear();
        v.ws.backlog.clear();
        op.ws.log.clear();
        op.ws.backlog.clear();
    }
    op.close(&conv).await?;
    Ok(Figures {
        ack_ms: (
            percentile_ms(&mut acks, 0.5),
            percentile_ms(&mut acks, 0.99),
        ),
        delivered_ms: (
            percentile_ms(&mut deliveries, 0.5),
            percentile_ms(&mut deliveries, 0.99),
        ),
    })
}

fn row(what: &str, f: &Figures) -> String {
    let r = format!(
        "  {what:<44} ack median {:>6.2} ms p99 {:>6.2} ms | delivered median {:>6.2} ms p99 {:>6.2} ms",
        f.ack_ms.0, f.ack_ms.1, f.delivered_ms.0, f.delivered_ms.1
    );
    println!("{r}");
    r
}

#[tokio::test]
async fn latency_of_a_message_round_trip_in_memory_redis_and_redis_with_wait_replicas() {
    let _g = serial().await;
    let mut rows = Vec::new();
    {
        let ns = nodes(1, &[]).await;
        let f = round_trips(&ns[0], &ns[0], "op5").await.unwrap();
        rows.push(row("in-memory, one node", &f));
    }
    {
        let redis = RedisServer::start().await;
        let env = redis_env(&redis.url(), &prefix());
        let ns = nodes(2, &env).await;
        let f = round_trips(&ns[0], &ns[0], "op6").await.unwrap();
        rows.push(row("redis, person and operator on one node", &f));
        let f = round_trips(&ns[0], &ns[1], "op7").await.unwrap();
        rows.push(row("redis, person on a, operator on b", &f));
    }
    {
        let primary = RedisServer::start().await;
        let port = primary.port.to_string();
        let _replica = RedisServer::start_with(&[
            "--save",
            "",
            "--appendonly",
            "no",
            "--replicaof",
            "127.0.0.1",
            &port,
        ])
        .await;
        wait_for_replica(&primary).await;
        let env = with(
            redis_env(&primary.url(), &prefix()),
            // 200 ms (the default) is exceeded now and then on two busy cores; a WAIT that
            // times out fails the step, and the test would measure that instead.
            &[
                ("TSUNAGU_STORE__WAIT_REPLICAS", "1"),
                ("TSUNAGU_STORE__WAIT_TIMEOUT_MS", "1000"),
            ],
        );
        let ns = nodes(2, &env).await;
        let f = round_trips(&ns[0], &ns[1], "op8").await.unwrap();
        rows.push(row("redis + WAIT_REPLICAS=1, person a, operator b", &f));
    }
    println!(
        "message round trip, {} messages each (debug build, loopback, 2 cores):\n{}",
        messages(),
        rows.join("\n")
    );
}

async fn wait_for_replica(primary: &RedisServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = primary.client().await.info_replication().await.unwrap();
        if info
            .iter()
            .any(|(k, v)| k.starts_with("slave") && v.contains("state=online"))
        {
            return;
        }
        assert!(Instant::now() < deadline, "replica not online: {info:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
