//! The conformance suite and Redis-only behaviour, against a real `redis-server` started on a
//! free port for this test binary.

use std::process::{Child, Command as Proc, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::AsyncCommands;

use super::queue::{arrival_of, queue_score};
use super::*;
use crate::conversation::{Conversation, State};
use crate::protocol::Presence;
use crate::store::conformance;

struct Server {
    port: u16,
    _child: Child,
}

/// Waits (up to 5 s) until something listens on `port`.
fn wait_for(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One redis-server for the unit tests of this binary; each store gets its own key prefix.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let port = free_port();
        // A watchdog shell stops the server when this test process is gone (the static is
        // never dropped).
        let script = format!(
            "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no & r=$!; \
             while kill -0 {parent} 2>/dev/null; do sleep 0.5; done; kill $r",
            parent = std::process::id()
        );
        let child = Proc::new("sh")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .spawn()
            .expect("sh runs redis-server (scripts/test.sh installs it)");
        wait_for(port);
        Server {
            port,
            _child: child,
        }
    })
}

pub(super) fn options(prefix: &str, node: &str) -> RedisOptions {
    RedisOptions {
        url: format!("redis://127.0.0.1:{}/", server().port),
        key_prefix: prefix.to_owned(),
        ttl_secs: 3600,
        wait_replicas: 0,
        wait_timeout_ms: 100,
        node: node.to_owned(),
        tls_ca_file: None,
    }
}

/// Three nodes' stores on the same keys (`prefix`), named n0 to n2.
fn three_nodes(prefix: &str) -> Vec<Arc<RedisStore>> {
    (0..3)
        .map(|i| Arc::new(RedisStore::open(options(prefix, &format!("n{i}"))).unwrap()))
        .collect()
}

pub(super) fn store() -> Arc<RedisStore> {
    Arc::new(RedisStore::open(options(&format!("t{}", Ulid::new()), "n1")).unwrap())
}

/// A plain connection to the test server, to look at or damage keys behind the store's back.
async fn raw() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", server().port)).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

pub(super) async fn keys_with(prefix: &str) -> Vec<String> {
    let mut c = raw().await;
    let mut out = Vec::new();
    let mut iter: redis::AsyncIter<String> = c.scan_match(format!("{prefix}:*")).await.unwrap();
    while let Some(k) = iter.next_item().await {
        out.push(k.unwrap());
    }
    out
}

#[tokio::test]
async fn redis_store_passes_the_conformance_suite() {
    conformance::run_all(|| store() as Arc<dyn Store>).await;
}

#[tokio::test]
async fn a_queue_written_before_the_sorted_index_still_answers_positions_and_is_mended() {
    let prefix = format!("t{}", Ulid::new());
    let store = Arc::new(RedisStore::open(options(&prefix, "n1")).unwrap());
    let convs: Vec<Conversation> = (0..5).map(|i| queued(1_700_000_000_000 + i)).collect();
    for c in &convs {
        store.create(c.clone()).await.unwrap();
    }
    assert_eq!(
        store.queue_position(convs[3].id).await.unwrap(),
        Some((4, 5)),
        "from the sorted index"
    );
    // What an older gateway left: queued conversations in `P:q` only, and an id whose
    // conversation expired.
    let mut c = raw().await;
    let _: () = c.del(format!("{prefix}:qz")).await.unwrap();
    let _: () = c
        .sadd(format!("{prefix}:q"), Ulid::new().to_string())
        .await
        .unwrap();
    assert_eq!(
        store.queue_position(convs[3].id).await.unwrap(),
        Some((4, 5)),
        "from the conversations while the index disagrees"
    );
    let brief = store.queue_brief().await.unwrap();
    assert_eq!(
        brief.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        convs.iter().map(|c| c.id).collect::<Vec<_>>()
    );
    assert_eq!(brief[2].1, convs[2].queued_at, "waits count from queued_at");
    let (zcard, scard): (u32, u32) = redis::pipe()
        .zcard(format!("{prefix}:qz"))
        .scard(format!("{prefix}:q"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(
        (zcard, scard),
        (5, 5),
        "the index is mended, the expired id dropped"
    );
    assert_eq!(
        store.queue_position(convs[0].id).await.unwrap(),
        Some((1, 5))
    );
}

#[test]
fn queue_scores_sort_as_queue_keys_do() {
    let mut a = queued(1_700_000_000_000);
    let mut b = queued(1_700_000_000_000);
    a.arrival = 1_700_000_000_007;
    b.arrival = 1_700_000_000_008;
    assert!(queue_score(&a) < queue_score(&b), "earlier arrival first");
    b.priority = 1;
    assert!(queue_score(&b) < queue_score(&a), "higher priority first");
    a.priority = 1;
    a.requeued = true;
    assert!(
        queue_score(&a) < queue_score(&b),
        "returned to the queue first"
    );
    assert_eq!(arrival_of(queue_score(&b) as f64), b.arrival);
}

/// A web conversation queued at `at`, asking no language (the conformance suite's fixture).
pub(super) fn queued(at: u64) -> Conversation {
    conformance::conv(None, at)
}

/// A conversation queued at `at` in `s`.
async fn created(s: &RedisStore, at: u64) -> ConversationId {
    let c = queued(at);
    let id = c.id;
    s.create(c).await.unwrap();
    id
}

/// An operator on duty (the conformance suite's fixture; these conversations ask no language).
pub(super) fn op(capacity: u32) -> OperatorRecord {
    conformance::operator("op", capacity)
}

#[tokio::test]
async fn racing_takes_on_several_nodes_never_share_a_conversation_or_exceed_capacity() {
    let prefix = format!("race{}", Ulid::new());
    let nodes = three_nodes(&prefix);
    for i in 0..60 {
        nodes[0].create(queued(1_000 + i)).await.unwrap();
    }
    let ops: Vec<OperatorRecord> = (0..10).map(|_| op(3)).collect();
    for o in &ops {
        nodes[0].put_operator(o.clone()).await.unwrap();
    }
    let mut tasks = Vec::new();
    for (i, o) in ops.iter().enumerate() {
        for round in 0..5 {
            let store = Arc::clone(&nodes[(i + round) % 3]);
            let id = o.id;
            tasks.push(tokio::spawn(async move {
                store.take_next(id, 2_000, 120_000).await.unwrap()
            }));
        }
    }
    let mut taken = Vec::new();
    for t in tasks {
        if let Some(a) = t.await.unwrap() {
            taken.push((a.after.id, a.after.state.operator().unwrap()));
        }
    }
    let mut ids: Vec<_> = taken.iter().map(|(c, _)| *c).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), taken.len(), "a conversation was taken twice");
    assert_eq!(taken.len(), 30, "every operator filled exactly to capacity");
    for o in &ops {
        let held = nodes[1].held_by(o.id).await.unwrap();
        assert_eq!(held.len(), 3, "operator holds exactly their capacity");
    }
    assert_eq!(nodes[2].queue().await.unwrap().len(), 30);
}

#[tokio::test]
async fn a_closed_conversation_leaves_no_key_behind() {
    let s = store();
    let prefix = s.options().key_prefix.clone();
    let id = created(&s, 1_000).await;
    let o = op(2);
    s.put_operator(o.clone()).await.unwrap();
    s.take_next(o.id, 1_100, 1).await.unwrap().unwrap();
    let canary = "canary-phrase-hinotori";
    s.apply(id, conformance::message(canary), Some(Ulid::new()), 1_200)
        .await
        .unwrap();
    assert!(keys_with(&prefix)
        .await
        .iter()
        .any(|k| k.contains(&id.to_string())));
    s.delete(id).await.unwrap();
    let left: Vec<String> = keys_with(&prefix)
        .await
        .into_iter()
        .filter(|k| k.contains(&id.to_string()) || k.contains(":tok:"))
        .collect();
    assert!(left.is_empty(), "keys left after delete: {left:?}");
    // Only operator records and counters remain, and none holds the canary.
    let mut conn = raw().await;
    for k in keys_with(&prefix).await {
        let dump: Option<Vec<u8>> = redis::cmd("DUMP")
            .arg(&k)
            .query_async(&mut conn)
            .await
            .unwrap();
        let dump = String::from_utf8_lossy(&dump.unwrap_or_default()).into_owned();
        assert!(!dump.contains(canary), "{k} holds the canary");
    }
    assert!(s.get(id).await.unwrap().is_none());
    let _ = s.held_by(o.id).await.unwrap();
}

#[tokio::test]
async fn every_key_of_a_live_conversation_has_a_ttl() {
    let s = store();
    let prefix = s.options().key_prefix.clone();
    let id = created(&s, 1_000).await;
    s.apply(id, conformance::message("hello"), Some(Ulid::new()), 1_100)
        .await
        .unwrap();
    let mut conn = raw().await;
    let keys: Vec<String> = keys_with(&prefix)
        .await
        .into_iter()
        .filter(|k| k.contains(&id.to_string()) || k.contains(":tok:"))
        .collect();
    assert_eq!(keys.len(), 4, "record, log, client ids and token: {keys:?}");
    for k in keys {
        let ttl: i64 = conn.ttl(&k).await.unwrap();
        assert!(ttl > 0, "{k} has no TTL");
    }
}

#[tokio::test]
async fn the_people_of_a_node_that_stopped_beating_are_disconnected_once() {
    let prefix = format!("beat{}", Ulid::new());
    let a = RedisStore::open(options(&prefix, "node-a")).unwrap();
    let b = RedisStore::open(options(&prefix, "node-b")).unwrap();
    a.heartbeat(1_000).await.unwrap();
    b.heartbeat(1_000).await.unwrap();
    // A node judges others only once its own heartbeats have been steady for a node TTL.
    assert!(b.heartbeat(1_500).await.unwrap().is_empty());
    *b.beating_since.lock().unwrap() =
        Some(std::time::Instant::now() - Duration::from_secs(NODE_TTL_SECS + 2));
    let c = queued(1_000);
    let id = c.id;
    a.create(c).await.unwrap();
    a.apply(id, Command::VisitorConnected, None, 1_000)
        .await
        .unwrap();
    let o = op(2);
    a.put_operator(o.clone()).await.unwrap();
    assert!(
        b.heartbeat(2_000).await.unwrap().is_empty(),
        "node a is alive"
    );
    // Node a dies: its heartbeat key goes (as it would expire).
    let mut conn = raw().await;
    let _: () = conn.del(format!("{prefix}:node:node-a")).await.unwrap();
    let steps = b.heartbeat(3_000).await.unwrap();
    assert_eq!(steps.len(), 1);
    assert!(!steps[0].after.visitor_connected);
    assert_eq!(steps[0].after.visitor_gone_since, Some(3_000));
    let rec = b.operators().await.unwrap().pop().unwrap();
    assert!(!rec.connected, "the dead node's operator is disconnected");
    assert!(b.heartbeat(4_000).await.unwrap().is_empty(), "reaped once");
    // A person who reconnected through node b is not disconnected by node a's old socket.
    b.apply(id, Command::VisitorConnected, None, 5_000)
        .await
        .unwrap();
    assert!(a
        .apply(id, Command::VisitorDisconnected, None, 5_100)
        .await
        .is_err());
    assert!(b.get(id).await.unwrap().unwrap().visitor_connected);
}

#[tokio::test]
async fn an_unreachable_redis_is_reported_unavailable_not_empty() {
    let mut o = options("down", "n1");
    o.url = format!("redis://127.0.0.1:{}/", free_port());
    let s = RedisStore::open(o).unwrap();
    assert!(matches!(s.ping().await, Err(StoreError::Unavailable(_))));
    assert!(matches!(s.queue().await, Err(StoreError::Unavailable(_))));
    assert!(matches!(
        s.apply(Ulid::new(), Command::VisitorConnected, None, 1)
            .await,
        Err(ApplyError::Store(_))
    ));
}

#[tokio::test]
async fn every_node_counts_into_the_same_day() {
    let prefix = format!("today{}", Ulid::new());
    let a = RedisStore::open(options(&prefix, "node-a")).unwrap();
    let b = RedisStore::open(options(&prefix, "node-b")).unwrap();
    a.count_today(20_000, "started").await.unwrap();
    b.count_today(20_000, "started").await.unwrap();
    b.count_today(20_000, "closed").await.unwrap();
    a.count_today(20_001, "started").await.unwrap();
    let counts = a.today_counts(20_000).await.unwrap().unwrap();
    assert_eq!(counts.get("started"), Some(&2));
    assert_eq!(counts.get("closed"), Some(&1));
    assert_eq!(counts.get("abandoned"), None);
}

/// A self-signed certificate for 127.0.0.1, as PEM (certificate, key).
fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn the_store_speaks_tls_to_redis_and_checks_the_servers_certificate() {
    crate::tls::install_crypto_provider();
    let dir = std::env::temp_dir().join(format!("tsunagu-redis-tls-{}", Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = self_signed();
    std::fs::write(dir.join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.join("key.pem"), &key).unwrap();
    let (other, _) = self_signed();
    std::fs::write(dir.join("other.pem"), &other).unwrap();
    let port = free_port();
    let mut child = Proc::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--tls-auth-clients",
            "no",
        ])
        .arg("--tls-cert-file")
        .arg(dir.join("cert.pem"))
        .arg("--tls-key-file")
        .arg(dir.join("key.pem"))
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server runs");
    wait_for(port);
    let open = |ca: &str| {
        let mut o = options(&format!("tls{}", Ulid::new()), "n1");
        o.url = format!("rediss://127.0.0.1:{port}/");
        o.tls_ca_file = Some(dir.join(ca));
        RedisStore::open(o).unwrap()
    };
    let trusted = open("cert.pem");
    trusted.ping().await.expect("TLS with the server's own CA");
    let c = queued(1_000);
    trusted.create(c.clone()).await.unwrap();
    assert_eq!(trusted.get(c.id).await.unwrap().unwrap().id, c.id);
    let untrusted = open("other.pem");
    assert!(
        untrusted.ping().await.is_err(),
        "a server whose certificate does not chain to the CA is refused"
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn one_node_at_a_time_holds_a_lease_and_another_takes_over_when_it_lapses() {
    let prefix = format!("lease{}", Ulid::new());
    let a = RedisStore::open(options(&prefix, "node-a")).unwrap();
    let b = RedisStore::open(options(&prefix, "node-b")).unwrap();
    assert!(a.lead("sweep", 300).await.unwrap());
    assert!(!b.lead("sweep", 300).await.unwrap());
    assert!(a.lead("sweep", 300).await.unwrap(), "the holder renews");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        b.lead("sweep", 300).await.unwrap(),
        "taken over after it lapsed"
    );
    assert!(!a.lead("sweep", 300).await.unwrap());
}

#[tokio::test]
async fn a_deadline_applied_by_several_nodes_at_once_fires_once() {
    let prefix = format!("timer{}", Ulid::new());
    let nodes = three_nodes(&prefix);
    let o = op(1);
    nodes[0].put_operator(o.clone()).await.unwrap();
    let c = queued(1_000);
    let id = c.id;
    nodes[0].create(c).await.unwrap();
    let offers = nodes[1].dispatch(2_000, 1_000, 120_000).await.unwrap();
    assert_eq!(offers.len(), 1);
    // The offer lapses at 3 000; every node's sweep sees it at once.
    let mut tasks = Vec::new();
    for n in &nodes {
        for _ in 0..4 {
            let n = Arc::clone(n);
            let cmd = Command::OfferExpired {
                operator: o.id,
                expires_at: 3_000,
            };
            tasks.push(tokio::spawn(
                async move { n.apply(id, cmd, None, 3_100).await },
            ));
        }
    }
    let mut fired = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            fired += 1;
        }
    }
    assert_eq!(fired, 1, "the offer timeout fired exactly once");
    let conv = nodes[2].get(id).await.unwrap().unwrap();
    assert_eq!(conv.state, State::Queued);
    assert_eq!(conv.declined_by, vec![o.id]);
}

#[tokio::test]
async fn an_operator_level_client_id_is_new_once_across_nodes() {
    let prefix = format!("seen{}", Ulid::new());
    let a = RedisStore::open(options(&prefix, "node-a")).unwrap();
    let b = RedisStore::open(options(&prefix, "node-b")).unwrap();
    let key = format!("{}:{}", Ulid::new(), Ulid::new());
    assert_eq!(a.first_time(&key).await.unwrap(), Some(true));
    assert_eq!(b.first_time(&key).await.unwrap(), Some(false));
    assert_eq!(a.first_time(&key).await.unwrap(), Some(false));
}

#[tokio::test]
async fn every_node_learns_once_that_the_store_lost_its_data_when_its_marker_vanishes() {
    let prefix = format!("epoch{}", Ulid::new());
    let a = RedisStore::open(options(&prefix, "node-a")).unwrap();
    let b = RedisStore::open(options(&prefix, "node-b")).unwrap();
    assert!(!a.lost_data().await.unwrap(), "the first look writes it");
    assert!(
        !b.lost_data().await.unwrap(),
        "a second node reads the same"
    );
    assert!(!a.lost_data().await.unwrap(), "unchanged");
    // What a restart without persistence or a FLUSHALL does to it (only this test's keys).
    let mut conn = raw().await;
    let _: () = conn.del(format!("{prefix}:epoch")).await.unwrap();
    assert!(a.lost_data().await.unwrap(), "node a sees the loss");
    assert!(b.lost_data().await.unwrap(), "node b sees it too");
    assert!(!a.lost_data().await.unwrap(), "told once");
    assert!(!b.lost_data().await.unwrap(), "told once");
}

#[tokio::test]
async fn a_lease_found_held_elsewhere_is_asked_for_again_only_after_an_eighth_of_its_length() {
    let prefix = format!("lease{}", Ulid::new());
    let a = RedisStore::open(options(&prefix, "node-a")).unwrap();
    let b = RedisStore::open(options(&prefix, "node-b")).unwrap();
    assert!(a.lead("dispatch", 800).await.unwrap());
    assert!(!b.lead("dispatch", 800).await.unwrap());
    a.release("dispatch").await.unwrap();
    assert!(
        !b.lead("dispatch", 800).await.unwrap(),
        "not asked again at once"
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(b.lead("dispatch", 800).await.unwrap(), "free, and taken");
}

#[tokio::test]
async fn the_dispatcher_sees_an_operator_record_another_node_changed_since_it_read_it() {
    let nodes = three_nodes(&format!("recs{}", Ulid::new()));
    let (dispatcher, other) = (&nodes[0], &nodes[1]);
    let o = op(2);
    other.put_operator(o.clone()).await.unwrap();
    let first = created(dispatcher, 1_000).await;
    let offers = dispatcher.dispatch(2_000, 30_000, 120_000).await.unwrap();
    assert_eq!(offers.len(), 1, "the record read and kept");
    let accept = Command::Accept {
        operator: o.id,
        operator_name: "op".into(),
    };
    other.apply(first, accept, None, 2_100).await.unwrap();
    // Away on another node: the dispatcher's copy of the record is now an old version.
    other
        .update_operator(o.id, OperatorUpdate::Presence(Presence::Away))
        .await
        .unwrap();
    let second = created(other, 3_000).await;
    let offers = dispatcher.dispatch(4_000, 30_000, 120_000).await.unwrap();
    assert!(offers.is_empty(), "nobody is offered to an operator away");
    other
        .update_operator(o.id, OperatorUpdate::Presence(Presence::OnDuty))
        .await
        .unwrap();
    let offers = dispatcher.dispatch(5_000, 30_000, 120_000).await.unwrap();
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].after.id, second);
    assert_eq!(offers[0].after.state.operator(), Some(o.id));
}
