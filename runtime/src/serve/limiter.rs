//! The adaptive concurrency limit of one version: the pure gradient limiter. The path
//! reads the limit at admission ([`Limiter::limit`]) and feeds it latency samples as
//! requests end ([`Limiter::sample`]).
//!
//! In the spirit of Envoy's adaptive concurrency filter and Netflix's
//! concurrency-limits: over each `window`, the samples' mean is the sample RTT; the
//! smallest sample RTT of the last `minRttWindows` windows is the minimum RTT (what the
//! version does uncongested); the limit moves by the gradient
//! `(minRTT × (1 + buffer)) / sampleRTT`, at most `maxChangePercent` per window, within
//! `[minLimit, maxLimit]`. Below the knee the sample RTT is the minimum and the limit
//! grows by up to the buffer each window; past it queueing raises the sample RTT and
//! the limit falls back.
//!
//! A tensor request's signal is its duration (queueing included). A generation's are its
//! time to first token and its time per output token, each against its own minimum,
//! the worse gradient winning: a long answer is not congestion, a slow step or a long
//! wait for a slot is.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use modelplane_config::AdaptiveConcurrency;

/// What a latency sample measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// A tensor request's duration.
    Request,
    /// A generation's time to first token.
    FirstToken,
    /// A generation's mean time per output token after the first.
    PerToken,
}

const SIGNALS: usize = 3;

impl Signal {
    fn index(self) -> usize {
        match self {
            Self::Request => 0,
            Self::FirstToken => 1,
            Self::PerToken => 2,
        }
    }
}

/// A new limit, for the metric and the log.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Update {
    /// The limit now.
    pub limit: usize,
    /// The gradient applied (before the change bound).
    pub gradient: f64,
}

/// The adaptive limit of one version.
#[derive(Debug)]
pub struct Limiter {
    /// The limit admission reads, without the lock.
    current: AtomicUsize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The limit with its fraction (growth at small limits adds up).
    limit: f64,
    window_start: Option<Instant>,
    sums: [(f64, u32); SIGNALS],
    /// The most requests in flight any sample of the window saw.
    busiest: usize,
    /// Sample RTTs of recent windows, per signal, newest last.
    history: [VecDeque<f64>; SIGNALS],
}

impl Limiter {
    /// A limiter starting at `config`'s initial limit, `max_in_flight` its ceiling unless
    /// the config sets one.
    pub fn new(config: &AdaptiveConcurrency, max_in_flight: u32) -> Self {
        let (min, max) = bounds(config, max_in_flight);
        let limit = f64::from(config.initial_limit.clamp(min, max));
        Self {
            current: AtomicUsize::new(limit as usize),
            state: Mutex::new(State {
                limit,
                window_start: None,
                sums: [(0.0, 0); SIGNALS],
                busiest: 0,
                history: Default::default(),
            }),
        }
    }

    /// Requests the version may have in flight now.
    pub fn limit(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// Adds a latency sample at `now`, taken with `in_flight` requests in flight; when
    /// it closes a window with enough samples, the limit moves and the new one is
    /// returned. The limit only grows in a window whose busiest moment used at least
    /// half of it: a lightly loaded version gives no evidence it could take more.
    pub fn sample(
        &self,
        config: &AdaptiveConcurrency,
        max_in_flight: u32,
        signal: Signal,
        latency: Duration,
        in_flight: usize,
        now: Instant,
    ) -> Option<Update> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let start = *state.window_start.get_or_insert(now);
        // A sample past the window's end closes it first (if it holds enough samples),
        // then counts in the next one.
        let samples: u32 = state.sums.iter().map(|(_, n)| n).sum();
        let update = (now.saturating_duration_since(start) >= config.window.get()
            && samples >= config.min_samples)
            .then(|| {
                state.window_start = Some(now);
                state.close_window(config, max_in_flight)
            });
        let sum = &mut state.sums[signal.index()];
        sum.0 += latency.as_secs_f64();
        sum.1 += 1;
        state.busiest = state.busiest.max(in_flight);
        let update = update?;
        self.current.store(update.limit, Ordering::Relaxed);
        Some(update)
    }
}

impl State {
    fn close_window(&mut self, config: &AdaptiveConcurrency, max_in_flight: u32) -> Update {
        let buffer = 1.0 + f64::from(config.buffer_percent) / 100.0;
        let mut gradient = f64::INFINITY;
        for (sum, history) in self.sums.iter_mut().zip(&mut self.history) {
            let (total, count) = std::mem::take(sum);
            if count == 0 {
                continue;
            }
            let rtt = total / f64::from(count);
            history.push_back(rtt);
            while history.len() > config.min_rtt_windows.max(1) as usize {
                history.pop_front();
            }
            let min_rtt = history.iter().copied().fold(f64::INFINITY, f64::min);
            if rtt > 0.0 {
                gradient = gradient.min(min_rtt * buffer / rtt);
            }
        }
        if !gradient.is_finite() {
            gradient = 1.0;
        }
        let step = f64::from(config.max_change_percent) / 100.0;
        let busy = (std::mem::take(&mut self.busiest) as f64) * 2.0 >= self.limit;
        let ceiling = if busy { 1.0 + step } else { 1.0 };
        let bounded = gradient.clamp(1.0 - step, ceiling);
        let (min, max) = bounds(config, max_in_flight);
        // At least one more request per window while growing: a limit of 1 grows too.
        let grown = self.limit * bounded;
        let next = if bounded > 1.0 {
            grown.max(self.limit + 1.0)
        } else {
            grown
        };
        self.limit = next.clamp(f64::from(min), f64::from(max));
        Update {
            limit: self.limit.floor() as usize,
            gradient,
        }
    }
}

fn bounds(config: &AdaptiveConcurrency, max_in_flight: u32) -> (u32, u32) {
    let max = config.max_limit.unwrap_or(max_in_flight).max(1);
    (config.min_limit.clamp(1, max), max)
}

#[cfg(test)]
#[path = "limiter_tests.rs"]
mod tests;
