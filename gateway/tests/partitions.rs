//! Partitions, not only crashes (issue 19): gateway nodes cut off from Redis or from their
//! clients, lossy and slow client links, and a Sentinel failover while a node is cut off. Real
//! `gateway` and `redis-server` processes; one node runs in a network namespace made by the
//! test (`partitions/net.rs`: veth pairs, 10.x addresses on the veths only, removed on drop),
//! and faults are switched on its links. Every scenario's sends, acks and deliveries go to the
//! history checker (`partitions/history.rs`), which must count no message lost, acknowledged
//! and lost, duplicated, reordered or diverged.
//!
//! Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) for `ip netns`; where the kernel or sandbox
//! refuses namespaces each test prints `SKIPPED …` and passes. nftables (`nft`) is used for cuts
//! and loss when present; without it cuts poison neighbour entries and the loss part is
//! skipped (said in the output). Run with `-- --nocapture` to see the figures.
//!
//! The harness (nodes, clients, Redis, parties) is the cluster tests' own.

#[path = "partitions/chat.rs"]
mod chat;
#[allow(dead_code)]
#[path = "cluster/client.rs"]
mod client;
#[path = "partitions/history.rs"]
mod history;
#[path = "partitions/net.rs"]
mod net;
#[allow(dead_code)]
#[path = "cluster/node.rs"]
mod node;
#[allow(dead_code)]
#[path = "cluster/party.rs"]
mod party;
#[allow(dead_code)]
#[path = "cluster/redis.rs"]
mod redis;
#[path = "partitions/relay.rs"]
mod relay;
#[path = "partitions/scenarios.rs"]
mod scenarios;
#[allow(dead_code)]
#[path = "cluster/setup.rs"]
mod setup;

/// One scenario at a time: each starts its own Redis, nodes and namespace, and measures time.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}
