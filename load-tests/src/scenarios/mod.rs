//! Scenarios (a)–(e) of the load-test issue, each against one started server, each returning
//! its measurements as JSON objects (one per row of the report). Against `gateway-redis` the
//! same code is scenario (f): clients spread over the nodes (`cluster::Layout`), and the storm
//! kills a node. Its peer `socketio-redis` is placed the same way (it has no storm).
//!
//! # Layout
//!
//! - `size`: how big a run is ([`Size`]: `smoke` for CI, `full` for the issue).
//! - `idle` (a), `steady` (b), `burst` (c), `storm` (d) and `slow` (e): one scenario each.
//! - `chat`: the conversations `steady` and `slow` share (operators on duty holding every person,
//!   open-loop writers) and one measured phase of them.
//! - `floor`: the loopback round-trip time, the physical floor's other half.
//! - Here: what several scenarios use (operators on duty, the generator's own CPU, a slope).

mod burst;
mod chat;
mod floor;
mod idle;
mod size;
mod slow;
mod steady;
mod storm;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clients::{self, OpEnd, Shared};
use crate::gateway::cpu_of;
use crate::servers::Server;

pub use burst::burst;
pub use floor::loopback_rtt;
pub use idle::idle;
pub use size::Size;
pub use slow::slow;
pub use steady::steady;
pub use storm::storm;

/// A generator whose own core is busier than this is the bottleneck: its run is discarded.
pub const GENERATOR_BOUND: f64 = 0.85;

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// CPU time of this process (the generator).
fn self_cpu() -> Duration {
    cpu_of(std::process::id())
}

fn progress(msg: &str) {
    eprintln!("  {msg}");
}

/// Least-squares slope of y over x.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return f64::NAN;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let cov: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let var: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    cov / var
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

/// `n` operators on duty, each accepting every offer and recording what it receives.
async fn on_duty(
    server: &Server,
    n: usize,
    sh: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<OpEnd>>> {
    // Nobody stalls here: the sender is dropped, the value stays false.
    let (_, stall) = watch::channel(false);
    let mut ops = Vec::new();
    for i in 0..n {
        let sock = clients::operator(server, i, true, None).await?;
        ops.push(tokio::spawn(clients::operator_loop(
            sock,
            Arc::clone(sh),
            false,
            stall.clone(),
            stop.clone(),
        )));
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line() {
        let s = slope(&[(0.0, 100.0), (10.0, 120.0), (20.0, 140.0)]);
        assert!((s - 2.0).abs() < 1e-9);
    }
}
