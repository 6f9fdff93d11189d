//! A steady chat between parties (`cluster/party.rs`: one message at a time, retried with the
//! same client id through `unavailable`, lost sockets and reconnects to another node), and the
//! history each scenario hands to the checker, with the stored log read back at the end.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde_json::Value;

use super::client::{is_event, Operator, Visitor, WAIT};
use super::history::{History, Received, Sent};
use super::party::{Nodes, Party};

/// Conversation k: the person on node `visitor_node(k)`, operator `op{first_op + k}` on
/// `operator_node(k)`, taken and joined.
pub async fn pairs(
    ns: &Nodes,
    count: usize,
    first_op: usize,
    visitor_node: impl Fn(usize) -> usize,
    operator_node: impl Fn(usize) -> usize,
) -> anyhow::Result<Vec<(Party, Party)>> {
    let mut out = Vec::new();
    for k in 0..count {
        let (vn, on) = (visitor_node(k), operator_node(k));
        let mut v = Visitor::start(&ns[vn], "ja").await?;
        let name = format!("op{}", first_op + k);
        let mut op = Operator::connect(&ns[on], &ns[on], &name, true).await?;
        let conv = op.take_one().await?;
        ensure!(
            conv == v.conversation,
            "took {conv}, not {}",
            v.conversation
        );
        v.ws.expect("operator_joined", WAIT, |f| is_event(f, "operator_joined"))
            .await?;
        out.push((
            Party::visitor(&format!("visitor{k}@{}", ns[vn].name), v, vn),
            Party::operator(&format!("{name}@{}", ns[on].name), op, &conv, on),
        ));
    }
    Ok(out)
}

/// Each party sends `count` messages, one at a time, `gap` apart, every one retried until
/// acknowledged or `deadline`.
pub async fn run_chatter(
    ps: Vec<(Party, Party)>,
    ns: &Nodes,
    count: usize,
    gap: Duration,
    deadline: Instant,
) -> anyhow::Result<Vec<(Party, Party)>> {
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
    let tasks: Vec<_> = ps
        .into_iter()
        .map(|(v, o)| {
            (
                tokio::spawn(chatter(v, ns.clone(), count, gap, deadline)),
                tokio::spawn(chatter(o, ns.clone(), count, gap, deadline)),
            )
        })
        .collect();
    let mut out = Vec::new();
    for (v, o) in tasks {
        out.push((v.await??, o.await??));
    }
    Ok(out)
}

/// Lets both sides read until each holds every acknowledged message of the conversation (its
/// own included: the sender gets its message back as an event too), or `within` passes.
pub async fn settle(ps: Vec<(Party, Party)>, ns: &Nodes, within: Duration) -> Vec<(Party, Party)> {
    let tasks: Vec<_> = ps
        .into_iter()
        .map(|(mut v, mut o)| {
            let ns = ns.clone();
            tokio::spawn(async move {
                let want: Vec<String> = v
                    .acked
                    .iter()
                    .chain(&o.acked)
                    .map(|(c, _)| c.clone())
                    .collect();
                let has = |p: &Party| {
                    let got: std::collections::HashSet<&String> =
                        p.received.iter().map(|(_, _, c)| c).collect();
                    want.iter().all(|c| got.contains(c))
                };
                let _ = v.pump_until(&ns, within, has).await;
                let _ = o.pump_until(&ns, within, has).await;
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

/// The conversation's messages as stored: a fresh resume from seq 0 on `node` (superseding the
/// person's socket), read up to the log's end as the welcome gives it.
pub async fn read_back(
    node: &super::node::Node,
    token: &str,
    conversation: &str,
) -> anyhow::Result<Vec<(u64, String)>> {
    let (mut ws, welcome) = Visitor::resume(node, token, Some(0)).await?;
    let end = welcome["last_seq"].as_u64().context("welcome.last_seq")?;
    let conv = conversation.to_owned();
    ws.pump_until("the whole log", WAIT, move |log: &[Value]| {
        log.iter()
            .any(|f| f["type"] == "event" && f["conversation"] == conv.as_str() && f["seq"] == end)
            || end == 0
    })
    .await?;
    Ok(ws
        .log
        .iter()
        .filter(|f| f["type"] == "event" && f["conversation"] == conversation)
        .filter(|f| f["event"]["kind"] == "message")
        .map(|f| {
            (
                f["seq"].as_u64().unwrap_or(0),
                f["event"]["id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect())
}

/// One conversation's history from its two parties (and the stored log, if read back).
pub fn history(v: &Party, o: &Party, stored: Option<Vec<(u64, String)>>) -> History {
    let sent = |p: &Party| Sent {
        attempted: p.attempted.clone(),
        acked: p.acked.clone(),
    };
    let received = |p: &Party| Received {
        messages: p
            .received
            .iter()
            .map(|(seq, _, id)| (*seq, id.clone()))
            .collect(),
        event_seqs: p.seqs.clone(),
    };
    History {
        senders: vec![sent(v), sent(o)],
        receivers: vec![received(v), received(o)],
        stored,
    }
}

/// Events that would mean a conversation was disturbed (ended, or its operator taken away).
pub fn disturbances(ps: &[(Party, Party)]) -> Vec<String> {
    ps.iter()
        .flat_map(|(v, o)| [v, o])
        .flat_map(|p| {
            p.other_events
                .iter()
                .filter(|e| e["kind"] == "ended" || e["kind"] == "operator_left")
                .map(move |e| format!("{}: {e}", p.name))
        })
        .collect()
}
