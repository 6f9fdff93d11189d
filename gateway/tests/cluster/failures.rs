//! Things breaking under a running service: a node killed with SIGKILL mid-conversation, the
//! Redis server restarted, the Sentinel primary killed. Gateways are never restarted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde_json::json;

use super::client::{id, Operator, Visitor, WAIT};
use super::conversation::{say, wait_for_ids};
use super::party::{delivery, repeated_seqs, Delivery, Nodes, Party};
use super::redis::{RedisServer, Sentinels};
use super::serial;
use super::setup::{nodes, percentile_ms, prefix, redis_env, with};

/// Sets up `pairs` conversations: person k on node `visitor_node(k)`, operator `op{10+k}` on
/// node `operator_node(k)` (signed in there), taken and joined. Returns the parties in pairs.
async fn pairs(
    ns: &Nodes,
    pairs: usize,
    visitor_node: impl Fn(usize) -> usize,
    operator_node: impl Fn(usize) -> usize,
) -> anyhow::Result<Vec<(Party, Party)>> {
    let mut out = Vec::new();
    for k in 0..pairs {
        let (vn, on) = (visitor_node(k), operator_node(k));
        let mut v = Visitor::start(&ns[vn], "ja").await?;
        let mut op = Operator::connect(&ns[on], &ns[on], &format!("op{}", 10 + k), true).await?;
        let conv = op.take_one().await?;
        ensure!(
            conv == v.conversation,
            "took {conv}, not {}",
            v.conversation
        );
        v.ws.expect("operator_joined", WAIT, |f| {
            super::client::is_event(f, "operator_joined")
        })
        .await?;
        out.push((
            Party::visitor(&format!("visitor{k}@{vn}"), v, vn),
            Party::operator(&format!("op{}@{on}", 10 + k), op, &conv, on),
        ));
    }
    Ok(out)
}

/// Each party sends `count` messages, one at a time, `gap` apart.
async fn chatter(
    mut p: Party,
    ns: Nodes,
    count: usize,
    gap: Duration,
    deadline: Instant,
) -> anyhow::Result<Party> {
    for i in 0..count {
        p.send(&ns, &format!("{} {i}", p.name), deadline).await?;
        tokio::time::sleep(gap).await;
    }
    Ok(p)
}

/// Runs every party's chatter concurrently; returns them in pairs again.
async fn run_chatter(
    ps: Vec<(Party, Party)>,
    ns: &Nodes,
    count: usize,
    gap: Duration,
    deadline: Instant,
) -> anyhow::Result<Vec<(Party, Party)>> {
    let tasks: Vec<_> = ps
        .into_iter()
        .map(|(v, o)| {
            let (n1, n2) = (ns.clone(), ns.clone());
            (
                tokio::spawn(chatter(v, n1, count, gap, deadline)),
                tokio::spawn(chatter(o, n2, count, gap, deadline)),
            )
        })
        .collect();
    let mut out = Vec::new();
    for (v, o) in tasks {
        out.push((v.await??, o.await??));
    }
    Ok(out)
}

/// Lets every party read until it holds everything its peer saw acknowledged (or `within`).
async fn settle(ps: Vec<(Party, Party)>, ns: &Nodes, within: Duration) -> Vec<(Party, Party)> {
    let tasks: Vec<_> = ps
        .into_iter()
        .map(|(mut v, mut o)| {
            let ns = ns.clone();
            tokio::spawn(async move {
                let want_v: Vec<String> = o.acked.iter().map(|(c, _)| c.clone()).collect();
                let want_o: Vec<String> = v.acked.iter().map(|(c, _)| c.clone()).collect();
                let has = |want: Vec<String>| {
                    move |p: &Party| {
                        let got: std::collections::HashSet<&String> =
                            p.received.iter().map(|(_, _, c)| c).collect();
                        want.iter().all(|c| got.contains(c))
                    }
                };
                let _ = v.pump_until(&ns, within, has(want_v)).await;
                let _ = o.pump_until(&ns, within, has(want_o)).await;
                (v, o)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("settle task"));
    }
    out
}

fn tally(ps: &[(Party, Party)]) -> (Delivery, usize) {
    let mut d = Delivery::default();
    let mut repeats = 0;
    for (v, o) in ps {
        d += delivery(v, o);
        d += delivery(o, v);
        repeats += repeated_seqs(v) + repeated_seqs(o);
    }
    (d, repeats)
}

fn fail_env() -> Vec<(&'static str, &'static str)> {
    vec![
        // Short enough that the test outlives them: a conversation whose people came back on
        // another node must not be ended or requeued when the dead node's sockets are noticed.
        ("TSUNAGU_CONVERSATION__VISITOR_GRACE_MS", "3000"),
        ("TSUNAGU_CONVERSATION__OPERATOR_GRACE_MS", "3000"),
        ("TSUNAGU_CONVERSATION__AUTO_OFFER", "false"),
    ]
}

/// Node A is killed with SIGKILL while six conversations run across three nodes (people and
/// operators on A among them). Clients on A reconnect to another node and resume with
/// `last_seq`, re-sending their unacknowledged message with the same id. Every message whose
/// sender saw an `ack` must arrive exactly once, in order; the conversations must still be
/// alive after the dead node's sockets are noticed and the grace periods have passed.
#[tokio::test]
async fn kill_9_of_a_node_mid_conversation_loses_and_duplicates_nothing_acknowledged() {
    let _g = serial().await;
    let redis = RedisServer::start().await;
    let env = with(redis_env(&redis.url(), &prefix()), &fail_env());
    let ns: Nodes = Arc::new(nodes(3, &env).await);
    let ps = pairs(&ns, 6, |k| k % 3, |k| (k + 1) % 3).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let killer = {
        let ns = ns.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            let at = Instant::now();
            ns[0].kill9();
            at
        })
    };
    let ps = run_chatter(ps, &ns, 60, Duration::from_millis(15), deadline)
        .await
        .unwrap();
    let killed_at = killer.await.unwrap();
    let ps = settle(ps, &ns, Duration::from_secs(10)).await;
    let (d, repeats) = tally(&ps);
    let mut resume: Vec<Duration> = ps
        .iter()
        .flat_map(|(v, o)| [v, o])
        .flat_map(|p| p.resumed_at.first().map(|t| *t - killed_at))
        .collect();
    let moved = resume.len();
    let reconnects: usize = ps.iter().map(|(v, o)| v.reconnects + o.reconnects).sum();
    println!(
        "kill -9 of node a: messages checked {}, lost {}, duplicated {}, out of order {}, \
         repeated seqs {repeats}; {moved} clients resumed on another node ({reconnects} \
         reconnects); time from kill to first ack after resume: median {:.0} ms, max {:.0} ms",
        d.checked,
        d.lost,
        d.duplicated,
        d.out_of_order,
        percentile_ms(&mut resume, 0.5),
        percentile_ms(&mut resume, 1.0),
    );
    assert!(
        moved >= 4,
        "expected the clients of node a to move, got {moved}"
    );
    assert_eq!(
        (d.lost, d.duplicated, d.out_of_order, repeats),
        (0, 0, 0, 0)
    );

    // Past the dead node's detection (its heartbeat key lives 6 s) and the grace periods
    // (3 s), every conversation still works.
    let wait = (killed_at + Duration::from_secs(12)).saturating_duration_since(Instant::now());
    tokio::time::sleep(wait).await;
    let ps = run_chatter(
        ps,
        &ns,
        1,
        Duration::ZERO,
        Instant::now() + Duration::from_secs(15),
    )
    .await
    .unwrap();
    let ps = settle(ps, &ns, Duration::from_secs(5)).await;
    let (d2, repeats2) = tally(&ps);
    assert_eq!(
        (d2.lost, d2.duplicated, d2.out_of_order, repeats2),
        (0, 0, 0, 0)
    );
    for (v, o) in &ps {
        for p in [v, o] {
            let ends: Vec<_> = p
                .other_events
                .iter()
                .filter(|e| e["kind"] == "ended" || e["kind"] == "operator_left")
                .collect();
            assert!(
                ends.is_empty(),
                "{}: conversation disturbed: {ends:?}",
                p.name
            );
        }
    }
}

/// The Redis server is stopped while a conversation runs across two nodes, then started again
/// on the same port; the gateways are not restarted.
///
/// What the test asserts, decided: a redis-server without persistence comes back empty, and
/// every live conversation would be gone with its data (people get `not_found` on resume and
/// start again): that is Redis losing data, not something a gateway can repair, so this test
/// runs Redis as docs/operations.md recommends for a single server, with
/// `--appendonly yes --appendfsync always`. Then: while Redis is down `/readyz` answers 503 on
/// every node and a `send` gets `unavailable`; once it is back, `/readyz` answers 200, the same
/// client ids are applied exactly once, cross-node delivery works again (pub/sub resubscribed),
/// nothing acknowledged before the outage is lost, and a new person can be served.
#[tokio::test]
async fn a_redis_restart_refuses_sends_as_unavailable_then_recovers_without_restarting_gateways() {
    let _g = serial().await;
    let mut redis = RedisServer::start_durable().await;
    let ns = nodes(2, &redis_env(&redis.url(), &prefix())).await;
    let pids: Vec<u32> = ns.iter().map(|n| n.pid).collect();
    let (mut v, mut op) = super::conversation::converse(&ns[0], &ns[1], "op2")
        .await
        .unwrap();
    let conv = v.conversation.clone();
    let (before, _) = say(&mut v.ws, None, "before the outage").await.unwrap();

    let down_at = Instant::now();
    redis.stop();
    for n in &ns {
        n.wait_ready(503, Duration::from_secs(10)).await;
    }
    let not_ready = down_at.elapsed();
    let (vid, oid) = (id(), id());
    // The frames the clients retry after the outage, with the same ids.
    let v_send = json!({"type":"send","id":vid,"text":"during the outage"});
    let op_send =
        json!({"type":"send","id":oid,"conversation":conv,"text":"operator during the outage"});
    v.ws.send(v_send.clone()).await.unwrap();
    let r = v.ws.reply_to(&vid, Duration::from_secs(15)).await.unwrap();
    assert_eq!(
        r["code"], "unavailable",
        "visitor send while Redis is down: {r}"
    );
    op.ws.send(op_send.clone()).await.unwrap();
    let r = op.ws.reply_to(&oid, Duration::from_secs(15)).await.unwrap();
    assert_eq!(
        r["code"], "unavailable",
        "operator send while Redis is down: {r}"
    );

    let up_at = Instant::now();
    redis.restart().await;
    for n in &ns {
        n.wait_ready(200, Duration::from_secs(20)).await;
    }
    let ready = up_at.elapsed();
    // Retry with the same ids (twice: idempotent).
    let mut seqs = Vec::new();
    for _ in 0..2 {
        v.ws.send(v_send.clone()).await.unwrap();
        let r = v.ws.reply_to(&vid, Duration::from_secs(10)).await.unwrap();
        assert_eq!(r["type"], "ack", "visitor retry after the outage: {r}");
        seqs.push(r["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs[0], seqs[1], "a retry with the same id got another seq");
    op.ws.send(op_send).await.unwrap();
    let r = op.ws.reply_to(&oid, Duration::from_secs(10)).await.unwrap();
    assert_eq!(r["type"], "ack", "operator retry after the outage: {r}");
    wait_for_ids(
        &mut op.ws,
        &conv,
        &[before.clone(), vid.clone(), oid.clone()],
    )
    .await
    .unwrap();
    wait_for_ids(&mut v.ws, &conv, &[vid.clone(), oid.clone()])
        .await
        .unwrap();
    // Nothing twice: each id once in each log.
    for (who, log) in [("visitor", &v.ws.log), ("operator", &op.ws.log)] {
        let ids = super::client::message_ids(log, &conv);
        for c in [&vid, &oid] {
            assert_eq!(
                ids.iter().filter(|i| *i == c).count(),
                1,
                "{who} saw {c} not once"
            );
        }
    }
    // Nothing acknowledged before the outage is lost: a fresh resume from 0 gets it all.
    let (mut ws, w) = Visitor::resume(&ns[1], &v.token, Some(0)).await.unwrap();
    assert_eq!(w["resumed"], true, "{w}");
    wait_for_ids(&mut ws, &conv, &[before, vid, oid])
        .await
        .unwrap();
    // The service goes on: someone new on node b, taken by an operator on node a.
    let v2 = Visitor::start(&ns[1], "ja").await.unwrap();
    let mut op2 = Operator::connect(&ns[0], &ns[0], "op3", true)
        .await
        .unwrap();
    assert_eq!(op2.take().await.unwrap().unwrap(), v2.conversation);
    for (n, pid) in ns.iter().zip(pids) {
        assert!(n.is_running() && n.pid == pid, "node {} restarted", n.name);
    }
    println!(
        "redis restart: every node not ready {:.0} ms after the stop; ready again {:.0} ms \
         after the start",
        not_ready.as_secs_f64() * 1000.0,
        ready.as_secs_f64() * 1000.0
    );
}

/// Sentinel: the primary is killed (SIGKILL) while two conversations run across two nodes with
/// `WAIT_REPLICAS=1`; the sentinels promote a replica and the gateways keep serving without a
/// restart. Measures the gap (longest time between two acks, and kill to first ack after); no
/// acknowledged message may be lost or doubled.
#[tokio::test]
async fn sentinel_failover_the_gateways_keep_serving_after_the_replica_is_promoted() {
    let _g = serial().await;
    // Two replicas, so that after the failover the new primary still has one for WAIT.
    let mut s = Sentinels::start(2).await;
    let env = with(
        redis_env(&s.url(), &prefix()),
        &[
            ("TSUNAGU_STORE__WAIT_REPLICAS", "1"),
            // Above the default 200 ms: two busy cores sometimes need more (see latency.rs).
            ("TSUNAGU_STORE__WAIT_TIMEOUT_MS", "1000"),
        ],
    );
    let ns: Nodes = Arc::new(nodes(2, &env).await);
    let pids: Vec<u32> = ns.iter().map(|n| n.pid).collect();
    let ps = pairs(&ns, 2, |k| k % 2, |k| (k + 1) % 2).await.unwrap();
    let old = s.primary_port().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Enough messages to run well past the promotion (about 2-3 s after the kill).
    let chat = tokio::spawn({
        let ns = ns.clone();
        async move { run_chatter(ps, &ns, 150, Duration::from_millis(30), deadline).await }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let killed_at = Instant::now();
    let new = s.kill_primary(old).await;
    let promoted = killed_at.elapsed();
    let ps = chat.await.unwrap().context("chatter").unwrap();
    let ps = settle(ps, &ns, Duration::from_secs(10)).await;
    let (d, repeats) = tally(&ps);
    let gap = ps
        .iter()
        .flat_map(|(v, o)| [v.longest_gap(), o.longest_gap()])
        .max()
        .unwrap_or_default();
    let mut first_after: Vec<Duration> = ps
        .iter()
        .flat_map(|(v, o)| [v, o])
        .filter_map(|p| {
            p.ack_times
                .iter()
                .find(|t| **t > killed_at)
                .map(|t| *t - killed_at)
        })
        .collect();
    let unavailable: usize = ps.iter().map(|(v, o)| v.unavailable + o.unavailable).sum();
    let reconnects: usize = ps.iter().map(|(v, o)| v.reconnects + o.reconnects).sum();
    println!(
        "sentinel failover (primary {old} killed, {new} promoted after {:.0} ms): longest gap \
         between acks {:.0} ms; kill to first ack: median {:.0} ms, max {:.0} ms; \
         unavailable replies {unavailable}; reconnects {reconnects}; messages checked {}, \
         lost {}, duplicated {}, out of order {}, repeated seqs {repeats}",
        promoted.as_secs_f64() * 1000.0,
        gap.as_secs_f64() * 1000.0,
        percentile_ms(&mut first_after, 0.5),
        percentile_ms(&mut first_after, 1.0),
        d.checked,
        d.lost,
        d.duplicated,
        d.out_of_order,
    );
    assert_eq!(
        (d.lost, d.duplicated, d.out_of_order, repeats),
        (0, 0, 0, 0)
    );
    for (n, pid) in ns.iter().zip(pids) {
        assert!(n.is_running() && n.pid == pid, "node {} restarted", n.name);
        n.wait_ready(200, Duration::from_secs(5)).await;
    }
    // New work after the failover, across nodes.
    let v = Visitor::start(&ns[0], "ja").await.unwrap();
    let mut op = Operator::connect(&ns[1], &ns[1], "op4", true)
        .await
        .unwrap();
    assert_eq!(op.take().await.unwrap().unwrap(), v.conversation);
    drop(s);
}

/// The control for the tests above, on one in-memory node: every client drops its socket right
/// after sending a message (before the ack), reconnects, resumes from its last seq and sends
/// the message again with the same id. Nothing acknowledged may be lost or doubled.
#[tokio::test]
async fn one_in_memory_node_clients_that_drop_before_the_ack_resume_and_lose_nothing() {
    let _g = serial().await;
    let ns: Nodes = Arc::new(nodes(1, &with(Vec::new(), &fail_env())).await);
    let mut ps = pairs(&ns, 3, |_| 0, |_| 0).await.unwrap();
    for (k, (v, o)) in ps.iter_mut().enumerate() {
        v.drop_after_send = Some(5 + k);
        o.drop_after_send = Some(9 + k);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let ps = run_chatter(ps, &ns, 20, Duration::from_millis(5), deadline)
        .await
        .unwrap();
    let ps = settle(ps, &ns, Duration::from_secs(5)).await;
    let (d, repeats) = tally(&ps);
    let reconnects: usize = ps.iter().map(|(v, o)| v.reconnects + o.reconnects).sum();
    println!(
        "drops before the ack (one in-memory node): checked {}, lost {}, duplicated {}, out of \
         order {}, repeated seqs {repeats}, reconnects {reconnects}",
        d.checked, d.lost, d.duplicated, d.out_of_order
    );
    assert_eq!(reconnects, 6);
    assert_eq!(d.checked, 120);
    assert_eq!(
        (d.lost, d.duplicated, d.out_of_order, repeats),
        (0, 0, 0, 0)
    );
}

/// The other half of losing a node: those who were on it and do not come back. Their node's
/// heartbeat expires, they are taken as disconnected, and the grace periods apply: the person's
/// conversation ends as `visitor_gone` for the operator on the surviving node, and the
/// operator's conversation goes back to the queue (the person sees `operator_left`, requeued),
/// where a colleague on the surviving node takes it.
#[tokio::test]
async fn kill_9_of_a_node_those_who_do_not_come_back_are_taken_as_gone_after_the_grace_period() {
    let _g = serial().await;
    let redis = RedisServer::start().await;
    let env = with(redis_env(&redis.url(), &prefix()), &fail_env());
    let ns = nodes(2, &env).await;
    // Person on a (will vanish) with an operator on b.
    let _gone = Visitor::start(&ns[0], "ja").await.unwrap();
    let mut op_b = Operator::connect(&ns[1], &ns[1], "op20", true)
        .await
        .unwrap();
    let c1 = op_b.take().await.unwrap().unwrap();
    // Person on b with an operator on a (will vanish).
    let mut stays = Visitor::start(&ns[1], "ja").await.unwrap();
    let mut op_a = Operator::connect(&ns[0], &ns[0], "op21", true)
        .await
        .unwrap();
    let c2 = op_a.take().await.unwrap().unwrap();
    assert_eq!(c2, stays.conversation);
    stays
        .ws
        .expect("operator_joined", WAIT, |f| {
            super::client::is_event(f, "operator_joined")
        })
        .await
        .unwrap();
    let killed = Instant::now();
    ns[0].kill9();
    // 6 s heartbeat expiry + 3 s grace + the timer tick, with room to spare.
    let within = Duration::from_secs(20);
    let c = c1.clone();
    let ended = op_b
        .ws
        .expect("visitor_gone", within, move |f| {
            f["type"] == "event" && f["conversation"] == c.as_str() && f["event"]["kind"] == "ended"
        })
        .await
        .unwrap();
    let visitor_gone_after = killed.elapsed();
    assert_eq!(ended["event"]["reason"], "visitor_gone", "{ended}");
    let left = stays
        .ws
        .expect("operator_left", within, |f| {
            super::client::is_event(f, "operator_left")
        })
        .await
        .unwrap();
    let requeued_after = killed.elapsed();
    assert_eq!(left["event"]["reason"], "requeued", "{left}");
    let mut colleague = Operator::connect(&ns[1], &ns[1], "op22", true)
        .await
        .unwrap();
    assert_eq!(colleague.take().await.unwrap().unwrap(), c2);
    println!(
        "kill -9, nobody comes back (heartbeat expiry 6 s, grace 3 s): person taken as gone \
         after {:.1} s, operator's conversation requeued after {:.1} s",
        visitor_gone_after.as_secs_f64(),
        requeued_after.as_secs_f64()
    );
}
