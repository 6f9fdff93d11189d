//! Cross-node wake-ups: with the Redis store, several gateway nodes serve one helpline, and a
//! change made on one node must reach the sockets held by the others.
//!
//! Every step a node applies is published on one Redis pub/sub channel ([`BusMsg::Applied`]);
//! every other node runs the socket part of the engine's `publish` for it ([`Notify::on_bus`]), so
//! an operator on node B hears about a message a person wrote on node A. Frames sent outside a
//! step (typing, presence, a revoked session) travel as [`BusMsg::ToOperator`] /
//! [`BusMsg::ToVisitor`].
//!
//! Pub/sub is only a signal: what is published while a node is not subscribed is lost. What
//! matters is in the store (log entries with their seq), so when the subscription is (re)made a
//! node wakes every socket it holds and each reads the log after its own cursor. Offers missed in
//! that gap lapse and move on, as any unanswered offer does.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alert::Alert;
use crate::conversation::{ConversationId, OperatorId};
use crate::protocol::WithdrawReason;
use crate::store::redis::Redis;
use crate::store::Applied;

/// Messages waiting to be published; beyond this they are dropped (and counted in the log).
const OUTBOX: usize = 16_384;
/// At most this many messages are published in one round trip.
const PUBLISH_BATCH: usize = 256;

/// What one node tells the others.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum BusMsg {
    /// A step this node applied: the others notify their own sockets.
    Applied {
        applied: Box<Applied>,
        withdrawn: WithdrawReason,
    },
    ToOperator {
        operator: OperatorId,
        out: Remote,
    },
    ToVisitor {
        conversation: ConversationId,
        out: Remote,
    },
    /// A coordinator switched overloaded mode.
    Overloaded {
        on: bool,
    },
    /// A help request or an emergency: coordinators on every node are alerted.
    Alert {
        alert: Box<Alert>,
    },
    AlertAcknowledged {
        id: ulid::Ulid,
        by: String,
    },
    /// Something on this node may allow an offer (an arrival, a freed place) and another node
    /// holds the dispatcher's lease: it should look.
    Dispatch,
}

/// An engine `Outbound` that can cross nodes (the engine converts both ways).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Remote {
    Frame { json: String },
    Wake { conversation: ConversationId },
    Close { code: u16 },
}

/// A message as published: who sent it, whom it is for, and the message.
#[derive(Serialize)]
struct Envelope<'a> {
    from: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<Audience>,
    msg: &'a BusMsg,
}

/// A message as received: the message itself is parsed only if this node has someone it is
/// for ([`Notify::wants`]). Every node receives every step of every conversation, and most
/// are for sockets on one other node: reading the header alone keeps a node's work for the
/// others' steps small.
#[derive(Deserialize)]
struct Received<'a> {
    from: String,
    #[serde(default)]
    to: Option<Audience>,
    #[serde(borrow)]
    msg: &'a serde_json::value::RawValue,
}

/// Whom a step is for: the sockets of its person and of the operators it concerns, and
/// whether it may free a place or fill the queue (the dispatcher, wherever it runs, looks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audience {
    #[serde(rename = "c")]
    pub conversation: ConversationId,
    #[serde(rename = "o", default)]
    pub operators: Vec<OperatorId>,
    #[serde(rename = "d", default)]
    pub dispatch: bool,
}

impl BusMsg {
    /// Whom this message is for, when that is narrower than every node (a step).
    fn audience(&self) -> Option<Audience> {
        let BusMsg::Applied { applied, .. } = self else {
            return None;
        };
        let (before, after) = (&applied.before.state, &applied.after.state);
        let mut operators: Vec<OperatorId> = before
            .operator()
            .into_iter()
            .chain(after.operator())
            .collect();
        operators.dedup();
        Some(Audience {
            conversation: applied.after.id,
            operators,
            dispatch: before.kind() != after.kind(),
        })
    }
}

/// The sending side, held by the engine.
#[derive(Clone)]
pub struct BusSender {
    tx: mpsc::Sender<BusMsg>,
}

impl BusSender {
    pub fn send(&self, msg: BusMsg) {
        if self.tx.try_send(msg).is_err() {
            tracing::warn!("cross-node outbox full; a wake-up was dropped");
        }
    }
}

/// What the bus needs from the node it serves (the engine implements it): the bus depends on
/// this, not on the engine, so the engine can hold a [`BusSender`] without a cycle.
pub trait Notify: Send + Sync + 'static {
    /// A message another node published.
    fn on_bus(&self, msg: BusMsg);
    /// Whether this node holds a socket `to` names; if not, the message is not read, and the
    /// node does only what the audience itself asks for (waking its dispatcher).
    fn wants(&self, to: &Audience) -> bool;
    /// The subscription was (re)made: whatever was published meanwhile is lost, so every local
    /// socket reads the store after its own cursor.
    fn wake_local_sockets(&self) -> impl std::future::Future<Output = ()> + Send;
}

/// The receiving and publishing side, started once the engine exists.
pub struct Bus {
    redis: Arc<Redis>,
    channel: String,
    node: String,
    rx: mpsc::Receiver<BusMsg>,
}

/// A bus for `node` on `prefix:bus`, and its sender for the engine.
pub fn bus(redis: Arc<Redis>, prefix: &str, node: &str) -> (Bus, BusSender) {
    let (tx, rx) = mpsc::channel(OUTBOX);
    (
        Bus {
            redis,
            channel: format!("{prefix}:bus"),
            node: node.to_owned(),
            rx,
        },
        BusSender { tx },
    )
}

impl Bus {
    /// Starts the publisher (in order, one connection) and the subscriber.
    pub fn spawn<N: Notify>(
        self,
        engine: Arc<N>,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) {
        let Bus {
            redis,
            channel,
            node,
            mut rx,
        } = self;
        {
            let (redis, channel, node, shutdown) = (
                Arc::clone(&redis),
                channel.clone(),
                node.clone(),
                shutdown.clone(),
            );
            tracker.spawn(async move {
                let mut batch = Vec::with_capacity(PUBLISH_BATCH);
                loop {
                    let msg = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        m = rx.recv() => match m { Some(m) => m, None => break },
                    };
                    // Whatever else is waiting goes in the same round trip, in order.
                    batch.clear();
                    batch.push(msg);
                    while batch.len() < PUBLISH_BATCH {
                        match rx.try_recv() {
                            Ok(m) => batch.push(m),
                            Err(_) => break,
                        }
                    }
                    let mut pipe = redis::pipe();
                    for msg in batch.drain(..) {
                        if let Ok(payload) = serde_json::to_string(&Envelope {
                            from: &node,
                            to: msg.audience(),
                            msg: &msg,
                        }) {
                            pipe.publish(&channel, payload).ignore();
                        }
                    }
                    let result = match redis.conn().await {
                        Ok(mut c) => pipe.query_async::<()>(&mut c).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = redis.check(result) {
                        // The receivers catch up from the store when their subscription returns.
                        tracing::warn!(error = %e, "could not publish a cross-node wake-up");
                    }
                }
            });
        }
        tracker.spawn(async move {
            let mut delay = Duration::from_millis(100);
            while !shutdown.is_cancelled() {
                match subscribe(&redis, &channel).await {
                    Ok(mut pubsub) => {
                        delay = Duration::from_millis(100);
                        tracing::info!("subscribed to cross-node wake-ups");
                        // Whatever was published while not subscribed: read it from the store.
                        engine.wake_local_sockets().await;
                        let mut stream = pubsub.on_message();
                        loop {
                            let msg = tokio::select! {
                                _ = shutdown.cancelled() => return,
                                m = stream.next() => m,
                            };
                            let Some(msg) = msg else { break };
                            let Ok(payload) = msg.get_payload::<String>() else {
                                continue;
                            };
                            let read = serde_json::from_str::<Received>(&payload).and_then(|r| {
                                if r.from == node
                                    || r.to.as_ref().is_some_and(|to| !engine.wants(to))
                                {
                                    return Ok(None);
                                }
                                serde_json::from_str::<BusMsg>(r.msg.get()).map(Some)
                            });
                            match read {
                                Ok(Some(msg)) => engine.on_bus(msg),
                                Ok(None) => {}
                                Err(_) => tracing::warn!(
                                    bytes = payload.len(),
                                    "unreadable cross-node message ignored"
                                ),
                            }
                        }
                        tracing::warn!("cross-node subscription lost; resubscribing");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot subscribe to cross-node wake-ups");
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        });
    }
}

async fn subscribe(redis: &Redis, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let client = redis.client().await?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}
