//! The four scenarios. In each, node `a` runs in the test's network namespace (its clients
//! reach it over the client link, it reaches Redis over the store link) and node `b` runs
//! beside Redis; conversation 0 has its person on `a` and its operator on `b`, conversation 1
//! the other way round, so every conversation crosses the fault.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::chat::{disturbances, history, pairs, read_back, run_chatter, settle};
use super::client::{Operator, Visitor};
use super::history::Counts;
use super::net::{namespace_or_skip, Netns};
use super::node::Node;
use super::party::{Nodes, Party, Side};
use super::redis::{RedisServer, Sentinels};
use super::relay::DelayRelay;
use super::serial;
use super::setup::{prefix, redis_env, with};

/// Grace periods short enough that the tests outlive them: a conversation whose people came
/// back on another node must not be ended or requeued when `a`'s sockets are given up.
/// (Production defaults are 120 s and 60 s.)
fn grace() -> Vec<(&'static str, &'static str)> {
    vec![
        ("TSUNAGU_CONVERSATION__VISITOR_GRACE_MS", "3000"),
        ("TSUNAGU_CONVERSATION__OPERATOR_GRACE_MS", "3000"),
    ]
}

/// Starts `a` in the namespace (Redis at `a_store_url`, listening on the client link) and `b`
/// beside Redis (`b_store_url`), with `extra` on both.
async fn two_nodes(
    net: &Netns,
    a_store_url: &str,
    b_store_url: &str,
    key_prefix: &str,
    extra: &[(&'static str, &str)],
) -> (Node, Node) {
    let env_a = with(
        with(redis_env(a_store_url, key_prefix), &grace()),
        &[("TSUNAGU_SERVER__HOST", net.client_node.as_str())],
    );
    let env_a = with(env_a, extra);
    let env_b = with(with(redis_env(b_store_url, key_prefix), &grace()), extra);
    let wrapper = net.exec();
    let (a, b) = tokio::join!(
        Node::start_via("a", &env_a, &wrapper),
        Node::start("b", &env_b)
    );
    a.wait_ready(200, Duration::from_secs(15)).await;
    b.wait_ready(200, Duration::from_secs(15)).await;
    (a, b)
}

/// A standalone Redis that also listens on the store link's far end.
async fn redis_for(net: &Netns) -> RedisServer {
    RedisServer::start_with(&[
        "--save",
        "",
        "--appendonly",
        "no",
        "--bind",
        "127.0.0.1",
        &net.store_host,
    ])
    .await
}

/// The history of every conversation, with its stored log read back on `healthy`.
async fn check(ps: &[(Party, Party)], healthy: &Node) -> Counts {
    let mut total = Counts::default();
    for (v, o) in ps {
        let Side::Visitor { token } = &v.side else {
            panic!("the first party is the person");
        };
        let stored = read_back(healthy, token, &v.conversation)
            .await
            .unwrap_or_else(|e| panic!("reading back {}: {e:#}", v.conversation));
        total += history(v, o, Some(stored)).check();
    }
    total
}

/// How long after a cut is in place an ack may still arrive from the cut-off node: the answer
/// to a write Redis had made before the cut, already on its way to the client (a few ms; more
/// on two busy cores). A write not made before the cut cannot be answered at all.
const IN_FLIGHT: Duration = Duration::from_millis(250);

/// Acks that came from node `node` after `since` (a node cut off from Redis must give none).
fn acks_from(ps: &[(Party, Party)], node: usize, since: Instant) -> usize {
    ps.iter()
        .flat_map(|(v, o)| [v, o])
        .map(|p| {
            p.ack_nodes
                .iter()
                .zip(&p.ack_times)
                .filter(|(n, t)| **n == node && **t > since)
                .count()
        })
        .sum()
}

/// For the parties that were on node `a` (index 0) when the fault began: how each lost its
/// socket (close code) and how long after `at`, and when it had its next ack.
fn moves(ps: &[(Party, Party)], was_on_a: &[String], at: Instant) -> Vec<String> {
    ps.iter()
        .flat_map(|(v, o)| [v, o])
        .filter(|p| was_on_a.contains(&p.name))
        .map(|p| {
            let lost = p.lost_at.first().map(|t| t.saturating_duration_since(at));
            let next = p
                .resumed_at
                .first()
                .map(|t| t.saturating_duration_since(at));
            format!(
                "{} closed {:?} after {:?}, next ack on {} after {:?}",
                p.name,
                p.close_codes.first().copied().flatten(),
                lost.map(|d| d.as_millis()),
                p.node,
                next.map(|d| d.as_millis())
            )
        })
        .collect()
}

fn on_a(ps: &[(Party, Party)]) -> Vec<String> {
    ps.iter()
        .flat_map(|(v, o)| [v, o])
        .filter(|p| p.node == 0)
        .map(|p| p.name.clone())
        .collect()
}

fn assert_clean(what: &str, c: &Counts) {
    println!("{what}: {c}");
    assert_eq!(c.faults(), (0, 0, 0, 0, 0), "{what}: {c}");
    assert!(c.acked > 0, "{what}: nothing was acknowledged");
}

/// Node `a` loses Redis (store link cut, silently both ways) while its clients still reach it.
/// It must stop acknowledging at once (sends are refused as `unavailable`, never acked), say
/// it is not ready, and within the cutoff close its websockets with 1001 so that its people
/// and operators resume on `b`; the cut lasts past `a`'s heartbeat lifetime and the grace
/// periods, and the conversations must go on undisturbed. After the heal `a` serves again.
#[tokio::test]
async fn a_node_cut_off_from_redis_stops_acknowledging_and_sends_its_clients_elsewhere() {
    let _g = serial().await;
    let Some(net) = namespace_or_skip("partition from redis") else {
        return;
    };
    println!("partition from redis: {}", net.describe());
    let redis = redis_for(&net).await;
    let key_prefix = prefix();
    let a_url = format!("redis://{}:{}/", net.store_host, redis.port);
    // A 5 s grace: a's clients leave it within the cutoff plus the store time-outs of a request
    // in progress (4-8 s measured), and the other node takes a's people for disconnected when
    // a's heartbeat expires (6 s after the cut): the grace must cover the difference, as the
    // production defaults (120 s, 60 s) do many times over.
    let long_grace = [
        ("TSUNAGU_CONVERSATION__VISITOR_GRACE_MS", "5000"),
        ("TSUNAGU_CONVERSATION__OPERATOR_GRACE_MS", "5000"),
    ];
    let (a, b) = two_nodes(&net, &a_url, &redis.url(), &key_prefix, &long_grace).await;
    let ns: Nodes = Arc::new(vec![a, b]);
    let mut ps = pairs(&ns, 2, 0, |k| k % 2, |k| (k + 1) % 2).await.unwrap();
    // Patient clients: they leave a only when a tells them to (a send in progress when the
    // store is cut is answered `unavailable` within a store time-out, 2 s, and a's close
    // follows it).
    for (v, o) in ps.iter_mut() {
        v.reply_within = Duration::from_secs(10);
        o.reply_within = Duration::from_secs(10);
    }
    let was_on_a = on_a(&ps);
    let deadline = Instant::now() + Duration::from_secs(45);
    let chat = tokio::spawn({
        let ns = ns.clone();
        async move { run_chatter(ps, &ns, 60, Duration::from_millis(50), deadline).await }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let cut_at = Instant::now();
    net.cut_store();
    let cut_done = Instant::now();
    ns[0].wait_ready(503, Duration::from_secs(10)).await;
    let not_ready = cut_at.elapsed();
    let ps = chat.await.unwrap().expect("chatter through the cut");
    let acks_after_cut = acks_from(&ps, 0, cut_done + IN_FLIGHT);
    let unavailable: usize = ps.iter().map(|(v, o)| v.unavailable + o.unavailable).sum();
    let moved = moves(&ps, &was_on_a, cut_at);
    // Past a's heartbeat lifetime (6 s) and the grace periods (5 s), still cut off: the
    // conversations must still be alive and served by b.
    let wait = (cut_at + Duration::from_secs(13)).saturating_duration_since(Instant::now());
    tokio::time::sleep(wait).await;
    let ps = run_chatter(
        ps,
        &ns,
        3,
        Duration::ZERO,
        Instant::now() + Duration::from_secs(15),
    )
    .await
    .expect("chat after a's heartbeat expired");
    net.heal_store();
    let healed_at = Instant::now();
    ns[0].wait_ready(200, Duration::from_secs(15)).await;
    let ready_again = healed_at.elapsed();
    // a serves again: someone new on a, taken by an operator on b.
    let v = Visitor::start(&ns[0], "ja")
        .await
        .expect("a new person on a");
    let mut op = Operator::connect(&ns[1], &ns[1], "op9", true)
        .await
        .unwrap();
    assert_eq!(op.take_one().await.unwrap(), v.conversation);
    let ps = settle(ps, &ns, Duration::from_secs(10)).await;
    let counts = check(&ps, &ns[1]).await;
    println!(
        "partition from redis: a answered /readyz 503 {} ms after the cut; acks from a later than \
         {IN_FLIGHT:?} after the cut: {acks_after_cut}; `unavailable` replies: {unavailable}; moves: {moved:?}; \
         a ready again {} ms after the heal",
        not_ready.as_millis(),
        ready_again.as_millis()
    );
    assert_eq!(acks_after_cut, 0, "a node without Redis acknowledged");
    let dist = disturbances(&ps);
    assert!(dist.is_empty(), "conversations disturbed: {dist:?}");
    for name in &was_on_a {
        let p = ps
            .iter()
            .flat_map(|(v, o)| [v, o])
            .find(|p| &p.name == name)
            .unwrap();
        assert_eq!(
            p.close_codes.first().copied().flatten(),
            Some(1001),
            "{name} was not told to go elsewhere: {moved:?}"
        );
        assert_eq!(p.node, 1, "{name} did not move to b");
    }
    assert_clean("partition from redis", &counts);
}

/// Node `a` loses its clients (client link cut, silently both ways) but still reaches Redis.
/// Its clients get no answer, give up on it after 3 s and resume on `b`; `a` notices the silent
/// sockets by its heartbeat (1 s here: 3 s of silence) and drops them; that must not end or
/// requeue conversations whose people and operators are on `b` now, even after the grace.
#[tokio::test]
async fn a_node_cut_off_from_its_clients_loses_nothing_and_disturbs_no_conversation() {
    let _g = serial().await;
    let Some(net) = namespace_or_skip("partition from clients") else {
        return;
    };
    println!("partition from clients: {}", net.describe());
    let redis = redis_for(&net).await;
    let key_prefix = prefix();
    let a_url = format!("redis://{}:{}/", net.store_host, redis.port);
    let extra = [("TSUNAGU_SERVER__HEARTBEAT_MS", "1000")];
    let (a, b) = two_nodes(&net, &a_url, &redis.url(), &key_prefix, &extra).await;
    let ns: Nodes = Arc::new(vec![a, b]);
    let ps = pairs(&ns, 2, 2, |k| k % 2, |k| (k + 1) % 2).await.unwrap();
    let was_on_a = on_a(&ps);
    let deadline = Instant::now() + Duration::from_secs(45);
    let chat = tokio::spawn({
        let ns = ns.clone();
        async move { run_chatter(ps, &ns, 60, Duration::from_millis(50), deadline).await }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let cut_at = Instant::now();
    net.cut_clients();
    let ps = chat.await.unwrap().expect("chatter through the cut");
    let moved = moves(&ps, &was_on_a, cut_at);
    // a's silent sockets time out (3 × 1 s), then the grace (3 s) would run out: still cut.
    let wait = (cut_at + Duration::from_secs(10)).saturating_duration_since(Instant::now());
    tokio::time::sleep(wait).await;
    let ps = run_chatter(
        ps,
        &ns,
        3,
        Duration::ZERO,
        Instant::now() + Duration::from_secs(15),
    )
    .await
    .expect("chat after a dropped its silent sockets");
    net.heal_clients();
    ns[0].wait_ready(200, Duration::from_secs(10)).await;
    let ps = settle(ps, &ns, Duration::from_secs(10)).await;
    let counts = check(&ps, &ns[1]).await;
    let reconnects: usize = ps.iter().map(|(v, o)| v.reconnects + o.reconnects).sum();
    println!("partition from clients: moves: {moved:?}; reconnects {reconnects}");
    let dist = disturbances(&ps);
    assert!(dist.is_empty(), "conversations disturbed: {dist:?}");
    for name in &was_on_a {
        let p = ps
            .iter()
            .flat_map(|(v, o)| [v, o])
            .find(|p| &p.name == name)
            .unwrap();
        assert_eq!(p.node, 1, "{name} did not move to b: {moved:?}");
    }
    assert_clean("partition from clients", &counts);
}

/// A steady chat while node `a`'s client link drops 5 % of packets at random, both ways
/// (nftables), and every byte to and from `a`'s clients is held 100 ms each way (a relay: no
/// netem here). TCP hides the loss as retransmissions; a client whose reply takes over 3 s gives
/// up and resumes on `b`. Nothing may be lost, doubled or reordered.
#[tokio::test]
async fn a_steady_chat_over_lossy_slow_client_links_loses_and_reorders_nothing() {
    let _g = serial().await;
    let Some(net) = namespace_or_skip("lossy, slow client links") else {
        return;
    };
    let redis = redis_for(&net).await;
    let key_prefix = prefix();
    let a_url = format!("redis://{}:{}/", net.store_host, redis.port);
    let (mut a, b) = two_nodes(&net, &a_url, &redis.url(), &key_prefix, &[]).await;
    let loss = if net.can_lose {
        net.lose_on_clients(5);
        "5 % random loss both ways (nftables numgen)"
    } else {
        "NO loss (nftables unavailable: loss not emulated)"
    };
    let target: std::net::SocketAddr = a
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("a's address");
    let relay = DelayRelay::start(target, Duration::from_millis(100)).await;
    a.ws_base = format!("ws://{}", relay.addr);
    println!(
        "lossy, slow client links: {loss}; 100 ms each way by a delaying TCP relay in front of \
         a's websockets (netem is not available on every kernel); {}",
        net.describe()
    );
    let ns: Nodes = Arc::new(vec![a, b]);
    let ps = pairs(&ns, 2, 4, |k| k % 2, |k| (k + 1) % 2).await.unwrap();
    let started = Instant::now();
    let ps = run_chatter(
        ps,
        &ns,
        30,
        Duration::from_millis(20),
        Instant::now() + Duration::from_secs(50),
    )
    .await
    .expect("chatter over the lossy links");
    let took = started.elapsed();
    let ps = settle(ps, &ns, Duration::from_secs(10)).await;
    let counts = check(&ps, &ns[1]).await;
    let reconnects: usize = ps.iter().map(|(v, o)| v.reconnects + o.reconnects).sum();
    let gap = ps
        .iter()
        .flat_map(|(v, o)| [v.longest_gap(), o.longest_gap()])
        .max()
        .unwrap_or_default();
    println!(
        "lossy, slow client links: chat took {} ms; longest gap between two acks of one party \
         {} ms; reconnects {reconnects}",
        took.as_millis(),
        gap.as_millis()
    );
    let dist = disturbances(&ps);
    assert!(dist.is_empty(), "conversations disturbed: {dist:?}");
    assert_clean("lossy, slow client links", &counts);
    drop(relay);
}

/// Sentinel (a primary, two replicas, three sentinels; `WAIT_REPLICAS=1`): node `a` is cut off
/// from Redis and the sentinels, then the primary is killed and a replica promoted while `a`
/// is still cut off. `a`'s clients go to `b`, which follows the promotion; after the heal `a`
/// finds the new primary through the sentinels and serves again. Nothing acknowledged lost.
#[tokio::test]
async fn a_sentinel_failover_while_a_node_is_cut_off_loses_nothing_acknowledged() {
    let _g = serial().await;
    let Some(net) = namespace_or_skip("failover during a partition") else {
        return;
    };
    println!("failover during a partition: {}", net.describe());
    let mut s = Sentinels::start_on(2, &net.store_host).await;
    let key_prefix = prefix();
    let url = s.url_on(&net.store_host);
    let extra = [
        ("TSUNAGU_STORE__WAIT_REPLICAS", "1"),
        // Above the default 200 ms: two busy cores sometimes need more (see latency.rs).
        ("TSUNAGU_STORE__WAIT_TIMEOUT_MS", "1000"),
        // See the first scenario.
        ("TSUNAGU_CONVERSATION__VISITOR_GRACE_MS", "5000"),
        ("TSUNAGU_CONVERSATION__OPERATOR_GRACE_MS", "5000"),
    ];
    let (a, b) = two_nodes(&net, &url, &url, &key_prefix, &extra).await;
    let ns: Nodes = Arc::new(vec![a, b]);
    let ps = pairs(&ns, 2, 6, |k| k % 2, |k| (k + 1) % 2).await.unwrap();
    let was_on_a = on_a(&ps);
    let old = s.primary_port().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(50);
    let chat = tokio::spawn({
        let ns = ns.clone();
        async move { run_chatter(ps, &ns, 100, Duration::from_millis(30), deadline).await }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let cut_at = Instant::now();
    net.cut_store();
    let cut_done = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let killed_at = Instant::now();
    let new = s.kill_primary(old).await;
    let promoted = killed_at.elapsed();
    let ps = chat
        .await
        .unwrap()
        .expect("chatter through the cut and the failover");
    let acks_after_cut = acks_from(&ps, 0, cut_done + IN_FLIGHT);
    let moved = moves(&ps, &was_on_a, cut_at);
    net.heal_store();
    let healed_at = Instant::now();
    ns[0].wait_ready(200, Duration::from_secs(20)).await;
    let ready_again = healed_at.elapsed();
    // a serves again, on the new primary: someone new on a, taken by an operator on b, and a
    // few messages each way.
    let v = Visitor::start(&ns[0], "ja")
        .await
        .expect("a new person on a");
    let mut op = Operator::connect(&ns[1], &ns[1], "op12", true)
        .await
        .unwrap();
    let conv = op.take_one().await.unwrap();
    assert_eq!(conv, v.conversation);
    let fresh = vec![(
        Party::visitor("visitor-after@a", v, 0),
        Party::operator("op12@b", op, &conv, 1),
    )];
    let fresh = run_chatter(
        fresh,
        &ns,
        5,
        Duration::ZERO,
        Instant::now() + Duration::from_secs(15),
    )
    .await
    .expect("chat on a after the heal");
    let ps = settle(ps, &ns, Duration::from_secs(10)).await;
    let fresh = settle(fresh, &ns, Duration::from_secs(10)).await;
    let mut counts = check(&ps, &ns[1]).await;
    counts += check(&fresh, &ns[0]).await;
    println!(
        "failover during a partition: primary {old} killed 1 s into a's cut, {new} promoted \
         after {} ms; acks from a later than {IN_FLIGHT:?} \
         into the cut: {acks_after_cut}; moves: {moved:?}; a ready \
         again {} ms after the heal",
        promoted.as_millis(),
        ready_again.as_millis()
    );
    assert_eq!(acks_after_cut, 0, "a node without Redis acknowledged");
    let dist = disturbances(&ps);
    assert!(dist.is_empty(), "conversations disturbed: {dist:?}");
    assert_clean("failover during a partition", &counts);
}
