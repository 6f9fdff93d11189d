//! How big a suite run is: the number of people, operators, rates and durations of each scenario.

/// Sizes of one suite run: `smoke` fits CI; `full` is the size.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Size {
    pub name: &'static str,
    pub rounds: usize,
    pub idle_sessions: usize,
    pub idle_steps: usize,
    pub idle_operators: usize,
    pub idle_secs: f64,
    pub steady_visitors: usize,
    pub steady_operators: usize,
    pub rates: Vec<f64>,
    pub step_secs: f64,
    pub burst_visitors: usize,
    pub burst_rate: f64,
    pub burst_operators: usize,
    pub storm_sessions: usize,
    pub storm_operators: usize,
    pub storm_rate: f64,
    pub slow_visitors: usize,
    pub slow_operators: usize,
    pub slow_slow: usize,
    pub slow_rate: f64,
    pub slow_secs: f64,
}

impl Size {
    pub fn smoke() -> Size {
        Size {
            name: "smoke",
            rounds: 1,
            idle_sessions: 400,
            idle_steps: 2,
            idle_operators: 5,
            idle_secs: 1.0,
            steady_visitors: 40,
            steady_operators: 4,
            rates: vec![200.0, 1000.0],
            step_secs: 1.5,
            burst_visitors: 300,
            burst_rate: 1000.0,
            burst_operators: 10,
            storm_sessions: 300,
            storm_operators: 5,
            storm_rate: 150.0,
            slow_visitors: 40,
            slow_operators: 5,
            slow_slow: 1,
            slow_rate: 400.0,
            slow_secs: 2.0,
        }
    }

    pub fn full() -> Size {
        Size {
            name: "full",
            rounds: 3,
            idle_sessions: 18_000,
            idle_steps: 4,
            idle_operators: 100,
            idle_secs: 5.0,
            steady_visitors: 500,
            steady_operators: 10,
            rates: vec![1000.0, 5000.0, 10_000.0, 20_000.0],
            step_secs: 3.0,
            burst_visitors: 5000,
            burst_rate: 2000.0,
            burst_operators: 100,
            storm_sessions: 18_000,
            storm_operators: 100,
            storm_rate: 1000.0,
            slow_visitors: 400,
            slow_operators: 20,
            slow_slow: 4,
            slow_rate: 2000.0,
            slow_secs: 8.0,
        }
    }
}
