//! The harness on its own: redis-server start/restart/stop, the Sentinel topology and a
//! failover driven by killing the primary, and a gateway node started from the binary.

use std::time::{Duration, Instant};

use super::node::Node;
use super::redis::{wait_for_ping, RedisServer, Resp, Sentinels};
use super::serial;

#[tokio::test]
async fn a_redis_server_starts_on_a_free_port_restarts_on_the_same_port_and_stops() {
    let _g = serial().await;
    let mut r = RedisServer::start().await;
    let port = r.port;
    let mut c = r.client().await;
    c.ok(&["SET", "k", "v"]).await.unwrap();
    r.restart().await;
    assert_eq!(r.port, port);
    // Without persistence a restarted server has lost everything.
    let mut c = r.client().await;
    assert_eq!(
        c.ok(&["GET", "k"]).await.unwrap(),
        super::redis::Value::Bulk(None)
    );
    r.stop();
    assert!(
        Resp::connect(port).await.is_err()
            || wait_for_ping(port, Duration::from_millis(200))
                .await
                .is_err()
    );
}

#[tokio::test]
async fn a_durable_redis_server_keeps_acknowledged_writes_across_a_crash() {
    let _g = serial().await;
    let mut r = RedisServer::start_durable().await;
    r.client().await.ok(&["SET", "k", "v"]).await.unwrap();
    r.kill9();
    r.restart().await;
    let got = r.client().await.ok(&["GET", "k"]).await.unwrap();
    assert_eq!(got.as_str(), Some("v"));
}

#[tokio::test]
async fn sentinels_promote_the_replica_when_the_primary_is_killed() {
    let _g = serial().await;
    let mut s = Sentinels::start(2).await;
    let old = s.primary_port().await.unwrap();
    assert_eq!(old, s.primary.port);
    let mut c = s.primary.client().await;
    c.ok(&["SET", "before", "1"]).await.unwrap();
    // Let the replicas catch up before the crash.
    c.ok(&["WAIT", "2", "1000"]).await.unwrap();
    let t = Instant::now();
    let new = s.kill_primary(old).await;
    println!(
        "sentinel promotion after SIGKILL of the primary: {:?}",
        t.elapsed()
    );
    assert_ne!(new, old);
    let mut c = Resp::connect(new).await.unwrap();
    assert_eq!(c.ok(&["GET", "before"]).await.unwrap().as_str(), Some("1"));
    c.ok(&["SET", "after", "1"]).await.unwrap();
    assert!(s.url().starts_with("redis+sentinel://127.0.0.1:"));
}

#[tokio::test]
async fn a_node_starts_from_the_gateway_binary_and_answers_health_and_login() {
    let _g = serial().await;
    let n = Node::start("a", &[]).await;
    assert_eq!(n.status("/healthz").await, 200);
    n.wait_ready(200, Duration::from_secs(5)).await;
    let cookie = n.login("op0").await;
    assert!(cookie.contains('='));
    let mut op = super::client::Operator::open(&n, "op0", &cookie, serde_json::json!({}), true)
        .await
        .unwrap();
    assert_eq!(op.welcome["operator"]["role"], "operator");
    let v = super::client::Visitor::start(&n, "ja").await.unwrap();
    assert_eq!(op.take().await.unwrap().unwrap(), v.conversation);
    n.kill9();
    assert!(!n.is_running());
    assert_eq!(n.status("/healthz").await, 0);
}
