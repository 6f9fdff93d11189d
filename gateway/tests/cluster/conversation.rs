//! A conversation across nodes: a person on node A, an operator on node B (signed in on A),
//! both ways, in order; and what is left in Redis once it closes.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde_json::json;

use super::client::{events_of, id, is_event, message_ids, Operator, Visitor, Ws, WAIT};
use super::node::Node;
use super::redis::RedisServer;
use super::serial;
use super::setup::{nodes, prefix, redis_env};

/// Sends one chat message (visitor: `conversation` None) and waits for its ack; returns the
/// client id and seq.
pub async fn say(
    ws: &mut Ws,
    conversation: Option<&str>,
    text: &str,
) -> anyhow::Result<(String, u64)> {
    let cid = id();
    let mut frame = json!({"type":"send","id":cid,"text":text});
    if let Some(c) = conversation {
        frame["conversation"] = json!(c);
    }
    ws.send(frame).await?;
    let r = ws.reply_to(&cid, WAIT).await?;
    ensure!(r["type"] == "ack", "send refused: {r}");
    Ok((cid, r["seq"].as_u64().context("ack.seq")?))
}

/// Waits until `ws` has received the messages with these client ids.
pub async fn wait_for_ids(ws: &mut Ws, conversation: &str, ids: &[String]) -> anyhow::Result<()> {
    let conv = conversation.to_owned();
    let want = ids.to_vec();
    ws.pump_until("messages", WAIT, move |log| {
        let got = message_ids(log, &conv);
        want.iter().all(|i| got.contains(i))
    })
    .await
}

/// A person on `a` and an operator on `b` (signed in on `a`): 10 messages each way taking
/// turns, then 10 each way at once; both sides must see the same log, 1..n without gaps or
/// repeats, each side's messages in the order it sent them. Returns both and the conversation.
pub async fn converse(a: &Node, b: &Node, operator: &str) -> anyhow::Result<(Visitor, Operator)> {
    let mut v = Visitor::start(a, "ja").await?;
    let mut op = Operator::connect(a, b, operator, true).await?;
    let taken = op.take_one().await?;
    ensure!(
        taken == v.conversation,
        "took {taken}, expected {}",
        v.conversation
    );
    v.ws.expect("operator_joined", WAIT, |f| is_event(f, "operator_joined"))
        .await?;
    let conv = v.conversation.clone();
    let (mut from_v, mut from_o) = (Vec::new(), Vec::new());
    for i in 0..10 {
        let (cid, _) = say(&mut v.ws, None, &format!("visitor {i}")).await?;
        wait_for_ids(&mut op.ws, &conv, std::slice::from_ref(&cid)).await?;
        from_v.push(cid);
        let (cid, _) = say(&mut op.ws, Some(&conv), &format!("operator {i}")).await?;
        wait_for_ids(&mut v.ws, &conv, std::slice::from_ref(&cid)).await?;
        from_o.push(cid);
    }
    let (rv, ro) = tokio::join!(
        async {
            let mut ids = Vec::new();
            for i in 0..10 {
                ids.push(say(&mut v.ws, None, &format!("visitor burst {i}")).await?.0);
            }
            anyhow::Ok(ids)
        },
        async {
            let mut ids = Vec::new();
            for i in 0..10 {
                ids.push(
                    say(&mut op.ws, Some(&conv), &format!("operator burst {i}"))
                        .await?
                        .0,
                );
            }
            anyhow::Ok(ids)
        }
    );
    from_v.extend(rv?);
    from_o.extend(ro?);
    let all: Vec<String> = from_v.iter().chain(&from_o).cloned().collect();
    wait_for_ids(&mut v.ws, &conv, &all).await?;
    wait_for_ids(&mut op.ws, &conv, &all).await?;

    let seen_v = events_of(&v.ws.log, &conv);
    let seen_o = events_of(&op.ws.log, &conv);
    let seqs = |s: &[(u64, serde_json::Value)]| s.iter().map(|(q, _)| *q).collect::<Vec<_>>();
    let n = seen_v.len() as u64;
    ensure!(
        seqs(&seen_v) == (1..=n).collect::<Vec<_>>(),
        "visitor's log is not 1..{n}: {:?}",
        seqs(&seen_v)
    );
    ensure!(
        seqs(&seen_o) == seqs(&seen_v),
        "operator's log differs from the visitor's: {:?} vs {:?}",
        seqs(&seen_o),
        seqs(&seen_v)
    );
    for ((_, ev), (_, eo)) in seen_v.iter().zip(&seen_o) {
        ensure!(
            ev["kind"] == eo["kind"] && ev["id"] == eo["id"],
            "entries differ: {ev} vs {eo}"
        );
    }
    let order = message_ids(&v.ws.log, &conv);
    for sent in [&from_v, &from_o] {
        let got: Vec<&String> = order.iter().filter(|i| sent.contains(i)).collect();
        ensure!(
            got == sent.iter().collect::<Vec<_>>(),
            "messages out of order: sent {sent:?}, got {got:?}"
        );
    }
    Ok((v, op))
}

#[tokio::test]
async fn two_nodes_a_visitor_on_node_a_and_an_operator_on_node_b_converse_both_ways_in_order() {
    let _g = serial().await;
    let redis = RedisServer::start().await;
    let ns = nodes(2, &redis_env(&redis.url(), &prefix())).await;
    converse(&ns[0], &ns[1], "op0").await.unwrap();
}

/// The same checks on one in-memory node: the control for the test above.
#[tokio::test]
async fn one_in_memory_node_passes_the_same_conversation_checks() {
    let _g = serial().await;
    let ns = nodes(1, &[]).await;
    converse(&ns[0], &ns[0], "op0").await.unwrap();
}

/// After a conversation closes, nothing of it is left in Redis: no key whose name contains its
/// id, no value containing its id, and no value containing a canary phrase written in it by
/// either side. Every key the gateways wrote starts with their prefix.
#[tokio::test]
async fn ephemeral_after_a_conversation_closes_scan_finds_no_key_of_it_and_no_canary() {
    let _g = serial().await;
    let redis = RedisServer::start().await;
    let pre = prefix();
    let ns = nodes(2, &redis_env(&redis.url(), &pre)).await;
    let (mut v, mut op) = converse(&ns[0], &ns[1], "op1").await.unwrap();
    let conv = v.conversation.clone();
    let canary = format!("canary-{}", ulid::Ulid::new());
    let (c1, _) = say(&mut v.ws, None, &format!("visitor says {canary}"))
        .await
        .unwrap();
    let (c2, _) = say(&mut op.ws, Some(&conv), &format!("operator says {canary}"))
        .await
        .unwrap();
    wait_for_ids(&mut op.ws, &conv, &[c1.clone(), c2.clone()])
        .await
        .unwrap();
    wait_for_ids(&mut v.ws, &conv, &[c1, c2]).await.unwrap();
    // While it lives the canary is in Redis (else this test would prove nothing).
    let mut r = redis.client().await;
    let live = leftovers(&mut r, &conv, &canary, &v.token).await.unwrap();
    assert!(
        !live.is_empty(),
        "the live conversation left no trace in Redis at all: is the store in use?"
    );
    op.close(&conv).await.unwrap();
    v.ws.expect("ended", WAIT, |f| is_event(f, "ended"))
        .await
        .unwrap();
    // Deletion happens at close, not by expiry later: allow only the time a close takes.
    let deadline = Instant::now() + Duration::from_secs(3);
    let left = loop {
        let left = leftovers(&mut r, &conv, &canary, &v.token).await.unwrap();
        if left.is_empty() || Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        left.is_empty(),
        "after close, keys still hold the conversation {conv} or the canary: {left:#?}"
    );
    let foreign: Vec<String> = r
        .scan("*")
        .await
        .unwrap()
        .into_iter()
        .filter(|k| !k.starts_with(&pre))
        .collect();
    assert!(
        foreign.is_empty(),
        "keys outside the prefix {pre}: {foreign:?}"
    );
}

/// Keys (of the whole server: it is this test's own) whose name contains `conv`, or whose
/// content contains `conv`, the canary or the visitor's resume token; with the reason.
async fn leftovers(
    r: &mut super::redis::Resp,
    conv: &str,
    canary: &str,
    token: &str,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    // Conversation ids are ULIDs; a store may write them in either case.
    let needles = [
        conv.to_owned(),
        conv.to_lowercase(),
        canary.to_owned(),
        token.to_owned(),
    ];
    for key in r.scan("*").await? {
        if key.contains(conv) || key.contains(&conv.to_lowercase()) {
            out.push(format!("{key}: name contains the conversation id"));
            continue;
        }
        let content = match r.contents(&key).await {
            Ok(c) => c,
            Err(e) => bail!("reading {key}: {e}"),
        };
        for part in &content {
            let text = String::from_utf8_lossy(part);
            if let Some(n) = needles.iter().find(|n| text.contains(n.as_str())) {
                let what = if n == canary {
                    "the canary"
                } else if n == token {
                    "the resume token"
                } else {
                    "the conversation id"
                };
                out.push(format!("{key}: content contains {what}"));
                break;
            }
        }
    }
    Ok(out)
}
