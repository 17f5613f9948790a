//! Call-by-call timing shared by the overhead examples.

use std::time::Instant;

/// The timings of one case, in nanoseconds.
#[derive(serde::Serialize)]
pub struct Case {
    pub name: String,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub mean_ns: f64,
}

/// Runs `call` `warmup` times untimed, then `iterations` times each timed alone.
pub fn time(name: &str, warmup: usize, iterations: usize, mut call: impl FnMut()) -> Case {
    for _ in 0..warmup {
        call();
    }
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t0 = Instant::now();
        call();
        samples.push(t0.elapsed().as_nanos() as u64);
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Case {
        name: name.to_owned(),
        p50_ns: at(0.50),
        p99_ns: at(0.99),
        mean_ns: samples.iter().sum::<u64>() as f64 / samples.len() as f64,
    }
}
