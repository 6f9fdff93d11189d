//! One side of a conversation that behaves as the widget and the console do when things break:
//! it sends one message at a time and waits for the `ack`; on `unavailable` it retries with the
//! same client id; when its socket dies it reconnects to another live node and resumes from the
//! last seq it holds, then sends the unacknowledged message again with the same id. It keeps
//! everything it received, so a test can count what arrived once, twice or never.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::client::{id, Operator, Visitor, Ws};
use super::node::Node;

#[derive(Clone)]
pub enum Side {
    Visitor { token: String },
    Operator { username: String, cookie: String },
}

pub struct Party {
    pub name: String,
    pub side: Side,
    pub conversation: String,
    pub ws: Option<Ws>,
    /// Index of the node the socket is on.
    pub node: usize,
    /// Highest seq received.
    pub last_seq: u64,
    /// Client ids of this party's messages that were acknowledged, in order, with their seq.
    pub acked: Vec<(String, u64)>,
    /// Every chat message event received: (seq, from, client id), in arrival order.
    pub received: Vec<(u64, String, String)>,
    /// Every event seq received, in arrival order (a repeat is a duplicate delivery).
    pub seqs: Vec<u64>,
    /// Times the socket was lost, and when the first ack after each loss came.
    pub lost_at: Vec<Instant>,
    pub resumed_at: Vec<Instant>,
    /// Acknowledgement times, to find the longest gap.
    pub ack_times: Vec<Instant>,
    /// The node each acknowledgement came from (beside `ack_times`).
    pub ack_nodes: Vec<usize>,
    /// Client ids of every message this party began to send, in order (acknowledged or not).
    pub attempted: Vec<String>,
    /// The close code of each socket lost (`None`: no close frame, or given up by the party).
    pub close_codes: Vec<Option<u16>>,
    pub unavailable: usize,
    pub reconnects: usize,
    /// Non-message events (joins, leaves, ended) received.
    pub other_events: Vec<Value>,
    /// Drop the socket right after sending message number n (0-based), before its ack: the
    /// message must then be sent again with the same id after the resume.
    pub drop_after_send: Option<usize>,
    /// How long to wait for the answer to a send before taking the socket as dead (3 s).
    pub reply_within: Duration,
    sent: usize,
    awaiting_resume: bool,
}

/// The nodes a party may use; a killed node is skipped.
pub type Nodes = Arc<Vec<Node>>;

impl Party {
    pub fn visitor(name: &str, v: Visitor, node: usize) -> Party {
        Self::new(
            name,
            Side::Visitor { token: v.token },
            v.conversation,
            v.ws,
            node,
        )
    }

    pub fn operator(name: &str, op: Operator, conversation: &str, node: usize) -> Party {
        Self::new(
            name,
            Side::Operator {
                username: op.username,
                cookie: op.cookie,
            },
            conversation.to_owned(),
            op.ws,
            node,
        )
    }

    fn new(name: &str, side: Side, conversation: String, mut ws: Ws, node: usize) -> Party {
        let mut p = Party {
            name: name.to_owned(),
            side,
            conversation,
            ws: None,
            node,
            last_seq: 0,
            acked: Vec::new(),
            received: Vec::new(),
            seqs: Vec::new(),
            lost_at: Vec::new(),
            resumed_at: Vec::new(),
            ack_times: Vec::new(),
            ack_nodes: Vec::new(),
            attempted: Vec::new(),
            close_codes: Vec::new(),
            unavailable: 0,
            reconnects: 0,
            other_events: Vec::new(),
            drop_after_send: None,
            reply_within: Duration::from_secs(3),
            sent: 0,
            awaiting_resume: false,
        };
        // What arrived before the party took over (joins, the first messages).
        let earlier: Vec<Value> = std::mem::take(&mut ws.log);
        ws.backlog.clear();
        for f in &earlier {
            p.record(f);
        }
        p.ws = Some(ws);
        p
    }

    pub fn is_visitor(&self) -> bool {
        matches!(self.side, Side::Visitor { .. })
    }

    fn record(&mut self, f: &Value) {
        if f["type"] != "event" || f["conversation"] != self.conversation.as_str() {
            return;
        }
        let seq = f["seq"].as_u64().unwrap_or(0);
        self.seqs.push(seq);
        self.last_seq = self.last_seq.max(seq);
        let e = &f["event"];
        if e["kind"] == "message" {
            self.received.push((
                seq,
                e["from"].as_str().unwrap_or("").to_owned(),
                e["id"].as_str().unwrap_or("").to_owned(),
            ));
        } else {
            self.other_events.push(e.clone());
        }
    }

    fn lose(&mut self) {
        if let Some(mut ws) = self.ws.take() {
            // What arrived before the loss (a close frame among it) and was not read yet.
            for f in ws.drain() {
                self.record(&f);
            }
            self.close_codes.push(ws.closed.flatten());
            self.lost_at.push(Instant::now());
            self.awaiting_resume = true;
        }
    }

    /// Connects to the next live node (after the current one) and resumes.
    pub async fn reconnect(&mut self, nodes: &Nodes, deadline: Instant) -> anyhow::Result<()> {
        loop {
            if Instant::now() > deadline {
                bail!("{}: could not reconnect before the deadline", self.name);
            }
            for step in 1..=nodes.len() {
                let i = (self.node + step) % nodes.len();
                if !nodes[i].is_running() {
                    continue;
                }
                let attempt = match &self.side {
                    Side::Visitor { token } => {
                        Visitor::resume(&nodes[i], token, Some(self.last_seq))
                            .await
                            .map(|(ws, _)| ws)
                    }
                    Side::Operator { username, cookie } => Operator::open(
                        &nodes[i],
                        username,
                        cookie,
                        json!({ self.conversation.clone(): self.last_seq }),
                        false,
                    )
                    .await
                    .map(|op| op.ws),
                };
                match attempt {
                    Ok(mut ws) => {
                        let early: Vec<Value> = ws.backlog.drain(..).collect();
                        for f in &early {
                            self.record(f);
                        }
                        self.ws = Some(ws);
                        self.node = i;
                        self.reconnects += 1;
                        return Ok(());
                    }
                    Err(e) => {
                        let msg = format!("{e:#}");
                        // A conversation that is gone will not come back: say so at once.
                        if msg.contains("not_found") {
                            bail!("{}: resume refused: {msg}", self.name);
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends one chat message and returns its seq once acknowledged, retrying (same client id)
    /// through `unavailable`, time-outs and lost sockets until `deadline`.
    pub async fn send(
        &mut self,
        nodes: &Nodes,
        text: &str,
        deadline: Instant,
    ) -> anyhow::Result<u64> {
        let cid = id();
        self.attempted.push(cid.clone());
        loop {
            if Instant::now() > deadline {
                bail!(
                    "{}: message {cid} not acknowledged before the deadline",
                    self.name
                );
            }
            if self.ws.is_none() {
                self.reconnect(nodes, deadline).await?;
            }
            let mut frame = json!({"type":"send","id":cid,"text":text});
            if !self.is_visitor() {
                frame["conversation"] = json!(self.conversation);
            }
            let ws = self.ws.as_mut().context("socket")?;
            if ws.send(frame).await.is_err() {
                self.lose();
                continue;
            }
            if self.drop_after_send == Some(self.sent) {
                self.drop_after_send = None;
                self.lose();
                continue;
            }
            match self.reply(&cid, self.reply_within).await {
                Reply::Ack(seq) => {
                    let now = Instant::now();
                    if self.awaiting_resume {
                        self.resumed_at.push(now);
                        self.awaiting_resume = false;
                    }
                    self.acked.push((cid, seq));
                    self.sent += 1;
                    self.ack_times.push(now);
                    self.ack_nodes.push(self.node);
                    return Ok(seq);
                }
                Reply::Unavailable => {
                    self.unavailable += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Reply::Error(e) => bail!("{}: send refused: {e}", self.name),
                Reply::Lost => self.lose(),
            }
        }
    }

    async fn reply(&mut self, cid: &str, within: Duration) -> Reply {
        let until = Instant::now() + within;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let Some(ws) = self.ws.as_mut() else {
                return Reply::Lost;
            };
            if left.is_zero() {
                // No answer: take the socket as dead (a half-open connection to a dead node).
                return Reply::Lost;
            }
            match ws.recv(left).await {
                Ok(Some(f)) => {
                    if (f["type"] == "ack" || f["type"] == "error") && f["id"] == cid {
                        if f["type"] == "ack" {
                            return Reply::Ack(f["seq"].as_u64().unwrap_or(0));
                        }
                        if f["code"] == "unavailable" {
                            return Reply::Unavailable;
                        }
                        return Reply::Error(f);
                    }
                    self.record(&f);
                }
                Ok(None) => {}
                Err(_) => return Reply::Lost,
            }
        }
    }

    /// Reads (reconnecting if needed) until `done(self)` or `within` runs out.
    pub async fn pump_until(
        &mut self,
        nodes: &Nodes,
        within: Duration,
        done: impl Fn(&Party) -> bool,
    ) -> anyhow::Result<()> {
        let until = Instant::now() + within;
        while !done(self) {
            if Instant::now() > until {
                bail!("{}: timed out", self.name);
            }
            if self.ws.is_none() {
                self.reconnect(nodes, until).await?;
            }
            let ws = self.ws.as_mut().context("socket")?;
            match ws.recv(Duration::from_millis(100)).await {
                Ok(Some(f)) => self.record(&f),
                Ok(None) => {}
                Err(_) => self.lose(),
            }
        }
        Ok(())
    }

    /// How many times each client id of a message from `from` arrived.
    pub fn arrivals(&self, from: &str) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for (_, f, cid) in &self.received {
            if f == from {
                *m.entry(cid.clone()).or_insert(0) += 1;
            }
        }
        m
    }

    /// The longest time between two acknowledgements.
    pub fn longest_gap(&self) -> Duration {
        self.ack_times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }
}

enum Reply {
    Ack(u64),
    Unavailable,
    Error(Value),
    Lost,
}

/// Delivery figures for messages from `sender` to `receiver`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Delivery {
    pub checked: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub out_of_order: usize,
}

impl std::ops::AddAssign for Delivery {
    fn add_assign(&mut self, o: Delivery) {
        self.checked += o.checked;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.out_of_order += o.out_of_order;
    }
}

/// Every message `sender` saw acknowledged must be in `receiver`'s log exactly once, and in the
/// order of the acks. Repeated event seqs at the receiver also count as duplicates.
pub fn delivery(sender: &Party, receiver: &Party) -> Delivery {
    let from = if sender.is_visitor() {
        "visitor"
    } else {
        "operator"
    };
    let arrivals = receiver.arrivals(from);
    let mut d = Delivery {
        checked: sender.acked.len(),
        ..Delivery::default()
    };
    for (cid, _) in &sender.acked {
        match arrivals.get(cid).copied().unwrap_or(0) {
            0 => d.lost += 1,
            1 => {}
            n => d.duplicated += n - 1,
        }
    }
    let order: Vec<&String> = {
        let mut seen = std::collections::HashSet::new();
        receiver
            .received
            .iter()
            .filter(|(_, f, _)| f == from)
            .map(|(_, _, c)| c)
            .filter(|c| seen.insert(*c))
            .collect()
    };
    let acked: Vec<&String> = sender.acked.iter().map(|(c, _)| c).collect();
    let got: Vec<&String> = order.into_iter().filter(|c| acked.contains(c)).collect();
    let expected: Vec<&String> = acked.iter().copied().filter(|c| got.contains(c)).collect();
    d.out_of_order = got.iter().zip(&expected).filter(|(a, b)| a != b).count();
    d
}

/// Event seqs a party received more than once (each repeat counted).
pub fn repeated_seqs(p: &Party) -> usize {
    let mut seen = std::collections::HashSet::new();
    p.seqs.iter().filter(|s| !seen.insert(**s)).count()
}
