//! When an open loop sends its requests: a fixed rate with Poisson or evenly
//! spaced arrivals, independent of how fast the server answers.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How the gaps between arrivals are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrivals {
    /// Exponentially distributed gaps (a Poisson process), mean `1 / rate`.
    Poisson,
    /// Every gap exactly `1 / rate`.
    Uniform,
}

/// An endless sequence of send times, as offsets from the start of the run.
#[derive(Debug)]
pub struct Schedule {
    arrivals: Arrivals,
    mean_gap_s: f64,
    next_s: f64,
    rng: StdRng,
}

impl Schedule {
    /// A schedule of `rate` requests per second; `seed` makes Poisson gaps
    /// reproducible. `rate` must be positive and finite.
    pub fn new(arrivals: Arrivals, rate: f64, seed: u64) -> Self {
        Self {
            arrivals,
            mean_gap_s: 1.0 / rate,
            next_s: 0.0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn gap_s(&mut self) -> f64 {
        match self.arrivals {
            Arrivals::Uniform => self.mean_gap_s,
            Arrivals::Poisson => {
                // 1 - U lies in (0, 1], so the logarithm is finite.
                let u: f64 = self.rng.r#gen();
                -(1.0 - u).ln() * self.mean_gap_s
            }
        }
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let at = self.next_s;
        self.next_s += self.gap_s();
        Some(Duration::from_secs_f64(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_arrivals_are_evenly_spaced_from_zero() {
        let times: Vec<Duration> = Schedule::new(Arrivals::Uniform, 4.0, 0).take(4).collect();
        let millis: Vec<u128> = times.iter().map(Duration::as_millis).collect();
        assert_eq!(millis, vec![0, 250, 500, 750]);
    }

    #[test]
    fn poisson_arrivals_average_the_rate() {
        let rate = 1000.0;
        let n = 20_000;
        let last = Schedule::new(Arrivals::Poisson, rate, 42).nth(n).unwrap();
        let observed = n as f64 / last.as_secs_f64();
        assert!(
            (observed - rate).abs() / rate < 0.03,
            "observed {observed} req/s"
        );
    }

    #[test]
    fn poisson_gaps_vary_and_never_go_backwards() {
        let times: Vec<Duration> = Schedule::new(Arrivals::Poisson, 100.0, 1)
            .take(500)
            .collect();
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        let shortest = gaps.iter().min().unwrap();
        let longest = gaps.iter().max().unwrap();
        // Exponential gaps with mean 10 ms: some far shorter, some far longer.
        assert!(*shortest < Duration::from_millis(1), "{shortest:?}");
        assert!(*longest > Duration::from_millis(30), "{longest:?}");
    }

    #[test]
    fn same_seed_gives_the_same_schedule() {
        let a: Vec<Duration> = Schedule::new(Arrivals::Poisson, 50.0, 9).take(10).collect();
        let b: Vec<Duration> = Schedule::new(Arrivals::Poisson, 50.0, 9).take(10).collect();
        assert_eq!(a, b);
    }
}
