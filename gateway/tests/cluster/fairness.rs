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

/// Offers received: (conversation, its arrival number, when it was offered on the server's
/// clock), both as the offer says. The server's own order, not when offers reached operators
/// through different nodes and sockets.
type Offers = Arc<Mutex<Vec<(String, u64, u64)>>>;

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
                let (Some(arrival), Some(at)) = (f["arrival"].as_u64(), f["offered_at"].as_u64())
                else {
                    bail!(
                        "{}: an offer without its arrival number and time: {f}",
                        op.username
                    );
                };
                offers.lock().unwrap().push((conv.clone(), arrival, at));
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

/// People offered before someone who arrived earlier: anyone who arrived before them (by the
/// people's own order) and was offered strictly later on the server's clock (offers made in one
/// step share their time). Also: arrival numbers follow the order people arrived in.
fn violations(arrival: &[String], offers: &[(String, u64, u64)]) -> Vec<String> {
    let find = |c: &str| {
        offers
            .iter()
            .find(|(o, _, _)| o == c)
            .map(|(_, n, t)| (*n, *t))
    };
    let mut out = Vec::new();
    // Of those who arrived before: the last arrival number, the latest offer time and whose.
    let (mut prev_number, mut latest) = (None, None);
    for (i, person) in arrival.iter().enumerate() {
        let Some((number, at)) = find(person) else {
            out.push(format!("#{i} never offered"));
            continue;
        };
        if prev_number.is_some_and(|n| n >= number) {
            out.push(format!("#{i} numbered {number}, not after {prev_number:?}"));
        }
        if let Some((j, t)) = latest.filter(|(_, t)| *t > at) {
            out.push(format!(
                "#{i} offered at {at}, before #{j} who arrived earlier (at {t})"
            ));
        }
        prev_number = Some(number);
        if latest.is_none_or(|(_, t)| at > t) {
            latest = Some((i, at));
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
    let mut ids: Vec<&String> = offers.iter().map(|(c, _, _)| c).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), PEOPLE, "everyone offered exactly once");
}
