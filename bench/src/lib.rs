//! Shared helpers for resq's benchmarks: timing runs and printing median and
//! spread. Benchmarks print figures; they assert nothing and are not run in CI.

use std::time::{Duration, Instant};

/// What stops a benchmark: it prints the error and exits non-zero.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// Runs `f` `runs` times and returns each run's duration.
pub fn time_runs(runs: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect()
}

/// Median, min and max of `samples`, in the unit `per` divides into.
pub fn summary(samples: &[Duration], per: u64) -> (f64, f64, f64) {
    let mut ns: Vec<f64> = samples.iter().map(|d| d.as_nanos() as f64 / per as f64).collect();
    ns.sort_by(|a, b| a.total_cmp(b));
    let median = ns.get(ns.len() / 2).copied().unwrap_or(0.0);
    (
        median,
        ns.first().copied().unwrap_or(0.0),
        ns.last().copied().unwrap_or(0.0),
    )
}
