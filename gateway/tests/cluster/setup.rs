//! Putting a cluster together: the store environment of a node and several nodes at once.

use std::time::Duration;

use futures_util::future::join_all;

use super::node::Node;

/// A key prefix of this test's own (each test also has its own redis-server).
pub fn prefix() -> String {
    format!(
        "tsunagu-test-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    )
}

/// The environment of a node in Redis mode at `url` with key prefix `prefix`.
pub fn redis_env(url: &str, prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TSUNAGU_STORE__URL", url.to_owned()),
        ("TSUNAGU_STORE__KEY_PREFIX", prefix.to_owned()),
    ]
}

/// Starts `n` nodes (named a, b, c, …) with the same environment, concurrently, and waits
/// until each is ready.
pub async fn nodes(n: usize, env: &[(&'static str, String)]) -> Vec<Node> {
    let names = ["a", "b", "c", "d", "e"];
    let nodes = join_all((0..n).map(|i| Node::start(names[i], env))).await;
    for node in &nodes {
        node.wait_ready(200, Duration::from_secs(10)).await;
    }
    nodes
}

/// `env` with extra entries appended (later entries win).
pub fn with(
    mut env: Vec<(&'static str, String)>,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

/// Median and a percentile of durations, in milliseconds.
pub fn percentile_ms(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort();
    let i = ((samples.len() - 1) as f64 * p).round() as usize;
    samples[i].as_secs_f64() * 1000.0
}
