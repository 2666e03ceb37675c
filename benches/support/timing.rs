//! Timing helpers of the micro-benchmarks (`benches/neural.rs`, `benches/denoise.rs`), included
//! with `#[path]`.

use std::time::{Duration, Instant};

/// Median of `runs` timings of `f`, after a warm-up of a tenth as many calls.
pub fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..runs.div_ceil(10) {
        f();
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}
