//! Strict fairness on several nodes (issue 19): people arriving one after another on three
//! nodes in turn, while operators on every node accept and close, are offered in the order
//! they arrived. One node dispatches at a time (the store's `dispatch` lease), so no node
//! offers someone while someone who arrived earlier still waits for a free operator.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use super::client::{Operator, Visitor};
use super::redis::RedisServer;
use super::serial;
use super::setup::{nodes, prefix, redis_env, with};

const PEOPLE: usize = 60;
const OPERATORS: usize = 4;
/// Offers reach operators through different nodes and sockets: an offer received this much
/// after a later person's is not counted against the order.
const TOLERANCE: Duration = Duration::from_millis(100);

/// Offers received, in the order each operator task saw them: (conversation, when).
type Offers = Arc<Mutex<Vec<(String, Instant)>>>;

/// Accepts every offer; once everyone has arrived, closes what it holds, one after each
/// accept and then the rest, so that places free up one at a time while people wait.
async fn operate(
    mut op: Operator,
    offers: Offers,
    arrived: Arc<AtomicBool>,
    offered: Arc<AtomicUsize>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut held: Vec<String> = Vec::new();
    while offered.load(Ordering::SeqCst) < PEOPLE {
        if Instant::now() > deadline {
            bail!("{}: not every person was offered", op.username);
        }
        let mut new = Vec::new();
        if let Some(f) = op.ws.recv(Duration::from_millis(20)).await? {
            if f["type"] == "offer" {
                let conv = f["conversation"].as_str().unwrap_or("").to_owned();
                offers.lock().unwrap().push((conv.clone(), Instant::now()));
                offered.fetch_add(1, Ordering::SeqCst);
                new.push(conv);
            }
        }
        for conv in new {
            let r = op.act("accept", &conv, json!({})).await?;
            if r["type"] != "ack" {
                bail!("{}: accept {conv}: {r}", op.username);
            }
            held.push(conv);
        }
        if arrived.load(Ordering::SeqCst) && !held.is_empty() {
            let conv = held.remove(0);
            op.close(&conv).await?;
        }
    }
    Ok(())
}

/// People offered while someone who arrived before them waited more than [`TOLERANCE`]
/// longer for their own offer.
fn violations(arrival: &[String], offers: &[(String, Instant)]) -> Vec<String> {
    let at = |c: &str| offers.iter().find(|(o, _)| o == c).map(|(_, t)| *t);
    let mut out = Vec::new();
    for (i, later) in arrival.iter().enumerate() {
        let Some(t_later) = at(later) else { continue };
        for earlier in &arrival[..i] {
            match at(earlier) {
                Some(t) if t <= t_later + TOLERANCE => {}
                t => out.push(format!(
                    "#{i} offered {:?} before an earlier arrival ({:?} later)",
                    t_later,
                    t.map(|t| t - t_later)
                )),
            }
        }
    }
    out
}

#[tokio::test]
async fn three_nodes_offer_a_burst_of_arrivals_in_arrival_order() {
    let _g = serial().await;
    let redis = RedisServer::start().await;
    let env = with(
        redis_env(&redis.url(), &prefix()),
        &[
            ("TSUNAGU_CONVERSATION__AUTO_OFFER", "true"),
            ("TSUNAGU_CONVERSATION__OFFER_TIMEOUT_MS", "60000"),
        ],
    );
    let ns = nodes(3, &env).await;
    let offers: Offers = Arc::default();
    let arrived = Arc::new(AtomicBool::new(false));
    let offered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..OPERATORS {
        let op = Operator::connect(&ns[0], &ns[i % 3], &format!("op{i}"), true)
            .await
            .unwrap();
        tasks.push(tokio::spawn(operate(
            op,
            Arc::clone(&offers),
            Arc::clone(&arrived),
            Arc::clone(&offered),
        )));
    }
    // One after another (each stored before the next starts), on the three nodes in turn.
    let mut people = Vec::new();
    for i in 0..PEOPLE {
        people.push(Visitor::start(&ns[i % 3], "ja").await.unwrap());
    }
    arrived.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let arrival: Vec<String> = people.iter().map(|p| p.conversation.clone()).collect();
    let offers = offers.lock().unwrap().clone();
    let found = violations(&arrival, &offers);
    assert!(
        found.is_empty(),
        "{} order violations: {:?}",
        found.len(),
        &found[..found.len().min(10)]
    );
    let mut ids: Vec<&String> = offers.iter().map(|(c, _)| c).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), PEOPLE, "everyone offered exactly once");
}
