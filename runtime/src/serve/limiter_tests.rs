use std::time::{Duration, Instant};

use modelplane_config::AdaptiveConcurrency;

use super::*;

const WINDOW: Duration = Duration::from_millis(100);

fn config() -> AdaptiveConcurrency {
    AdaptiveConcurrency {
        min_limit: 1,
        max_limit: None,
        initial_limit: 4,
        window: WINDOW.into(),
        min_samples: 4,
        buffer_percent: 10,
        max_change_percent: 25,
        min_rtt_windows: 20,
    }
}

/// A limiter under test with its simulated clock.
struct Sim {
    limiter: Limiter,
    config: AdaptiveConcurrency,
    max_in_flight: u32,
    clock: Instant,
}

impl Sim {
    fn new(config: AdaptiveConcurrency, max_in_flight: u32) -> Self {
        Self {
            limiter: Limiter::new(&config, max_in_flight),
            config,
            max_in_flight,
            clock: Instant::now(),
        }
    }

    /// Runs `windows` windows of a closed loop of `clients` against a server whose
    /// answer takes `latency(concurrency)` (one sample per signal); each window every
    /// request in flight ends once. The limits after each window.
    fn run(
        &mut self,
        clients: usize,
        windows: usize,
        latency: impl Fn(usize) -> Vec<(Signal, Duration)>,
    ) -> Vec<usize> {
        let mut limits = Vec::new();
        for _ in 0..windows {
            let in_flight = self.limiter.limit().min(clients);
            self.clock += WINDOW;
            for _ in 0..in_flight.max(self.config.min_samples as usize) {
                for (signal, sample) in latency(in_flight) {
                    self.limiter.sample(
                        &self.config,
                        self.max_in_flight,
                        signal,
                        sample,
                        in_flight,
                        self.clock,
                    );
                }
            }
            limits.push(self.limiter.limit());
        }
        limits
    }
}

/// 10 ms up to 8 requests at once; past that they queue: 10 ms × c / 8.
fn knee_at_8(concurrency: usize) -> Duration {
    Duration::from_micros(10_000 * concurrency.max(8) as u64 / 8)
}

#[test]
fn the_limit_converges_to_the_knee_under_four_times_the_load() {
    let mut sim = Sim::new(config(), 256);
    assert_eq!(sim.limiter.limit(), 4);
    let limits = sim.run(32, 200, |c| vec![(Signal::Request, knee_at_8(c))]);
    // It grows past 4 and settles around the knee (8, within the 10 % buffer and one
    // window's step), never near the 32 clients.
    assert!(limits[..20].iter().any(|&l| l >= 8), "{limits:?}");
    for &limit in &limits[100..] {
        assert!((7..=12).contains(&limit), "{limit} in {:?}", &limits[100..]);
    }
}

#[test]
fn each_window_changes_the_limit_by_at_most_its_bound() {
    let mut config = config();
    config.initial_limit = 100;
    let mut sim = Sim::new(config, 256);
    // A steady 10 ms, then everything ten times slower.
    sim.run(100, 10, |_| {
        vec![(Signal::Request, Duration::from_millis(10))]
    });
    let before = sim.limiter.limit();
    let limits = sim.run(1000, 3, |_| {
        vec![(Signal::Request, Duration::from_millis(100))]
    });
    // A window moves the limit when the next one begins: the first slow window shows
    // one window later, and then by at most 25 % a window.
    assert_eq!(limits[0], before, "{limits:?}");
    assert!(
        limits[1] + 1 >= before * 3 / 4,
        "{before} → {limits:?}: at most 25 % down"
    );
    assert!(
        limits[1] < before && limits[2] < limits[1],
        "{before} → {limits:?}"
    );
}

#[test]
fn a_long_generation_does_not_lower_the_limit() {
    let mut sim = Sim::new(config(), 64);
    // Steady first-token and per-token times whatever the load: answers long or short,
    // the engine is not congested; the limit climbs to its ceiling.
    let limits = sim.run(1000, 60, |_| {
        vec![
            (Signal::FirstToken, Duration::from_millis(40)),
            (Signal::PerToken, Duration::from_millis(20)),
        ]
    });
    assert_eq!(limits.last(), Some(&64), "{limits:?}");
    assert!(limits.windows(2).all(|w| w[1] >= w[0]), "{limits:?}");
}

#[test]
fn a_slower_step_per_token_lowers_the_limit_of_a_generate_model() {
    let mut sim = Sim::new(config(), 256);
    // Time to first token stays low, but each step slows past 8 sequences.
    let limits = sim.run(64, 200, |c| {
        vec![
            (Signal::FirstToken, Duration::from_millis(40)),
            (Signal::PerToken, knee_at_8(c)),
        ]
    });
    for &limit in &limits[100..] {
        assert!((7..=12).contains(&limit), "{limit}");
    }
}

#[test]
fn a_lightly_loaded_version_does_not_grow_its_limit() {
    let mut sim = Sim::new(config(), 256);
    // One client never uses half of the limit of 4: however fast, the limit stays.
    let limits = sim.run(1, 30, |_| vec![(Signal::Request, Duration::from_millis(1))]);
    assert!(limits.iter().all(|&l| l == 4), "{limits:?}");
}

#[test]
fn the_limit_stays_within_its_bounds_and_waits_for_enough_samples() {
    let mut config = config();
    config.min_limit = 3;
    config.max_limit = Some(6);
    let mut sim = Sim::new(config, 256);
    // Three samples close no window.
    for _ in 0..3 {
        let at = sim.clock + WINDOW * 2;
        let sample = Duration::from_millis(1);
        assert_eq!(
            sim.limiter
                .sample(&sim.config, 256, Signal::Request, sample, 6, at),
            None
        );
    }
    let up = sim.run(100, 30, |_| {
        vec![(Signal::Request, Duration::from_millis(1))]
    });
    assert_eq!(up.last(), Some(&6));
    let down = sim.run(100, 15, |_| vec![(Signal::Request, Duration::from_secs(1))]);
    assert_eq!(down.last(), Some(&3));
}
