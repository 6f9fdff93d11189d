//! Several gateway processes sharing state in Redis (issue 3): the real `gateway` binary as
//! child processes, real `redis-server` processes (standalone and a Sentinel topology), and
//! clients over real websockets. Never a mock Redis.
//!
//! Its own test binary. The tests run one at a time (`serial()`): each starts its own
//! redis-server(s) on free ports and its own nodes, and some measure time, which two cores
//! shared with another test would distort.
//!
//! Figures (kill -9 resume, latency, failover gap) are printed with `println!`: run with
//! `cargo test -p gateway --test cluster -- --nocapture` to see them.

#[path = "cluster/accounts.rs"]
mod accounts;
#[path = "cluster/alerts.rs"]
mod alerts;
#[path = "cluster/client.rs"]
mod client;
#[path = "cluster/conversation.rs"]
mod conversation;
#[path = "cluster/failures.rs"]
mod failures;
#[path = "cluster/fairness.rs"]
mod fairness;
#[path = "cluster/gone.rs"]
mod gone;
#[path = "cluster/harness_tests.rs"]
mod harness_tests;
#[path = "cluster/latency.rs"]
mod latency;
#[path = "cluster/line.rs"]
mod line;
#[allow(dead_code)]
#[path = "line/fake_api.rs"]
mod line_api;
#[path = "cluster/node.rs"]
mod node;
#[path = "cluster/party.rs"]
mod party;
#[allow(dead_code)]
#[path = "support/postgres.rs"]
mod postgres;
#[allow(dead_code)]
#[path = "support/python.rs"]
mod python;
#[path = "cluster/races.rs"]
mod races;
#[path = "cluster/redis.rs"]
mod redis;
#[path = "cluster/setup.rs"]
mod setup;
#[allow(dead_code)]
#[path = "support/smtp.rs"]
mod smtp;
#[path = "cluster/voice.rs"]
mod voice;
#[allow(dead_code)]
#[path = "voice/fake_provider.rs"]
mod voice_provider;

/// One cluster test at a time (a tokio mutex: each test has its own runtime).
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}
