//! The circuit breaker of one version: the pure state machine. The path asks it
//! whether a request may go to the version ([`Breaker::admit`]) and tells it how the
//! request ended ([`Breaker::observe`]); both take the model's current
//! [`BreakerConfig`] (thresholds change without a reload) and the time, and hand back
//! any [`Transition`] for the caller to count and log.
//!
//! Closed, outcomes fill a sliding window of [`BUCKETS`] buckets. A bucket that slides
//! out of the window is folded into the version's baseline: a failure share over the
//! requests before the window, each older bucket weighing less. The breaker opens when
//! the window's share reaches `errorPercent`, or `baselineFactor` times the baseline
//! and at least `minErrorPercent`. Opening discards the window (an incident is not
//! part of the baseline). Open, after `openFor` × 2^(reopens) (at most `maxOpenFor`), it
//! half-opens: `probes` requests go through; all succeed and it closes with a fresh
//! window; one fails and it opens again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use modelplane_config::BreakerConfig;

/// Buckets of the sliding window.
pub const BUCKETS: usize = 10;

/// How much a bucket older than the window still weighs in the baseline, per bucket
/// of age: the baseline forgets over about four windows.
const BASELINE_DECAY: f64 = 1.0 - 1.0 / (4 * BUCKETS) as f64;

/// Where the breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Requests go to the version.
    Closed,
    /// Requests go down the fallback chain.
    Open,
    /// A few probes go to the version; the rest down the fallback chain.
    HalfOpen,
}

impl Phase {
    /// The value of the `modelplane_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::HalfOpen => 1,
            Self::Open => 2,
        }
    }
}

/// What the breaker lets a request do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go to the version, counted in the window.
    Closed,
    /// Go to the version as one of the half-open probes.
    Probe,
    /// Do not go to the version; it is tried again after `retry_after`.
    Open {
        /// Until the breaker half-opens (zero: it is half-open, its probes taken).
        retry_after: Duration,
    },
}

/// How a request that went to the version ended, for the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered.
    Success,
    /// The model failed or the request timed out.
    Failure,
    /// Neither: refused for its input, its budget or load, or cancelled.
    Neutral,
}

/// Why the breaker opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenReason {
    /// The window's failure share reached `errorPercent`.
    ErrorRate,
    /// It reached `baselineFactor` times the version's baseline.
    Baseline,
    /// A half-open probe failed.
    Probe,
}

impl OpenReason {
    /// The `reason` label of `modelplane_breaker_opened_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ErrorRate => "error_rate",
            Self::Baseline => "baseline",
            Self::Probe => "probe",
        }
    }
}

/// A change of phase, for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Transition {
    /// Closed or half-open → open.
    Opened {
        /// Why.
        reason: OpenReason,
        /// The window's failure share then (0-1; 1 for a failed probe).
        share: f64,
        /// Requests in the window then.
        requests: u64,
        /// The baseline share then, when known.
        baseline: Option<f64>,
        /// How long it stays open.
        open_for: Duration,
    },
    /// Open → half-open.
    HalfOpened,
    /// Half-open → closed.
    Closed,
}

impl Transition {
    /// The phase it moved to.
    pub fn phase(&self) -> Phase {
        match self {
            Self::Opened { .. } => Phase::Open,
            Self::HalfOpened => Phase::HalfOpen,
            Self::Closed => Phase::Closed,
        }
    }
}

/// The breaker of one version.
#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    phase: PhaseState,
    window: Window,
    baseline: Baseline,
    /// Opens since it last closed: each doubles the time open.
    reopens: u32,
}

#[derive(Debug, Default)]
enum PhaseState {
    #[default]
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        probing: u32,
        passed: u32,
    },
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    ok: u64,
    failed: u64,
}

/// The ring of buckets; `head` is the current one, begun at `head_start`.
#[derive(Debug, Default)]
struct Window {
    buckets: [Bucket; BUCKETS],
    head: usize,
    head_start: Option<Instant>,
}

/// Decayed counts of the requests before the window.
#[derive(Debug, Default)]
struct Baseline {
    failed: f64,
    total: f64,
}

impl Baseline {
    fn fold(&mut self, bucket: Bucket) {
        self.failed = self.failed * BASELINE_DECAY + bucket.failed as f64;
        self.total = self.total * BASELINE_DECAY + (bucket.ok + bucket.failed) as f64;
    }

    /// The share, once it rests on at least `min_requests` requests' worth.
    fn share(&self, min_requests: u32) -> Option<f64> {
        (self.total >= f64::from(min_requests)).then(|| self.failed / self.total)
    }
}

impl Window {
    /// Moves the head to the bucket `now` falls in; buckets that slide out are folded
    /// into `baseline`.
    fn advance(&mut self, now: Instant, bucket_len: Duration, baseline: &mut Baseline) {
        let Some(start) = self.head_start else {
            self.head_start = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(start);
        let steps = (elapsed.as_nanos() / bucket_len.as_nanos().max(1)).min(u128::from(u32::MAX));
        if steps == 0 {
            return;
        }
        for _ in 0..steps.min(BUCKETS as u128) {
            self.head = (self.head + 1) % BUCKETS;
            baseline.fold(std::mem::take(&mut self.buckets[self.head]));
        }
        // Buckets past a whole window of silence count as empty ones.
        for _ in BUCKETS as u128..steps.min(4 * BUCKETS as u128) {
            baseline.fold(Bucket::default());
        }
        self.head_start = Some(if steps >= BUCKETS as u128 {
            now
        } else {
            start + bucket_len * steps as u32
        });
    }

    fn totals(&self) -> Bucket {
        self.buckets
            .iter()
            .fold(Bucket::default(), |sum, b| Bucket {
                ok: sum.ok + b.ok,
                failed: sum.failed + b.failed,
            })
    }

    fn clear(&mut self, now: Instant) {
        *self = Self {
            head_start: Some(now),
            ..Self::default()
        };
    }
}

impl Breaker {
    /// Where it stands at `now` (open turns half-open once its time is up).
    pub fn phase(&self, now: Instant) -> Phase {
        match self.lock().phase {
            PhaseState::Closed => Phase::Closed,
            PhaseState::Open { until } if until > now => Phase::Open,
            PhaseState::Open { .. } | PhaseState::HalfOpen { .. } => Phase::HalfOpen,
        }
    }

    /// Whether a request at `now` may go to the version.
    pub fn admit(&self, config: &BreakerConfig, now: Instant) -> (Admission, Option<Transition>) {
        let mut state = self.lock();
        let mut transition = None;
        if let PhaseState::Open { until } = state.phase {
            if until > now {
                return (
                    Admission::Open {
                        retry_after: until - now,
                    },
                    None,
                );
            }
            state.phase = PhaseState::HalfOpen {
                probing: 0,
                passed: 0,
            };
            transition = Some(Transition::HalfOpened);
        }
        let admission = match &mut state.phase {
            PhaseState::Closed => Admission::Closed,
            PhaseState::HalfOpen { probing, passed } if *probing + *passed < config.probes => {
                *probing += 1;
                Admission::Probe
            }
            PhaseState::HalfOpen { .. } | PhaseState::Open { .. } => Admission::Open {
                retry_after: Duration::ZERO,
            },
        };
        (admission, transition)
    }

    /// Counts how a request the breaker admitted (`admission`) ended at `now`.
    pub fn observe(
        &self,
        config: &BreakerConfig,
        admission: Admission,
        outcome: Outcome,
        now: Instant,
    ) -> Option<Transition> {
        let mut state = self.lock();
        match admission {
            Admission::Open { .. } => None,
            Admission::Probe => state.probed(config, outcome, now),
            Admission::Closed => state.counted(config, outcome, now),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent at every await-free step: a panic elsewhere
        // cannot leave it half-written.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    fn counted(
        &mut self,
        config: &BreakerConfig,
        outcome: Outcome,
        now: Instant,
    ) -> Option<Transition> {
        // Requests admitted before it opened, ending after, count for nothing.
        if !matches!(self.phase, PhaseState::Closed) || outcome == Outcome::Neutral {
            return None;
        }
        let bucket_len = config.window.get() / BUCKETS as u32;
        self.window.advance(now, bucket_len, &mut self.baseline);
        let head = &mut self.window.buckets[self.window.head];
        match outcome {
            Outcome::Success => {
                head.ok += 1;
                return None;
            }
            Outcome::Failure => head.failed += 1,
            Outcome::Neutral => return None,
        }
        let totals = self.window.totals();
        let requests = totals.ok + totals.failed;
        if requests < u64::from(config.min_requests) {
            return None;
        }
        let share = totals.failed as f64 / requests as f64;
        let baseline = self.baseline.share(config.min_requests);
        let percent = share * 100.0;
        let reason = if percent >= f64::from(config.error_percent) {
            OpenReason::ErrorRate
        } else if config.baseline_factor > 0
            && percent >= f64::from(config.min_error_percent)
            && baseline.is_some_and(|b| share >= f64::from(config.baseline_factor) * b)
        {
            OpenReason::Baseline
        } else {
            return None;
        };
        Some(self.open(config, reason, share, requests, baseline, now))
    }

    fn probed(
        &mut self,
        config: &BreakerConfig,
        outcome: Outcome,
        now: Instant,
    ) -> Option<Transition> {
        let PhaseState::HalfOpen { probing, passed } = &mut self.phase else {
            return None;
        };
        *probing = probing.saturating_sub(1);
        match outcome {
            Outcome::Neutral => None,
            Outcome::Success => {
                *passed += 1;
                if *passed < config.probes {
                    return None;
                }
                self.phase = PhaseState::Closed;
                self.reopens = 0;
                self.window.clear(now);
                Some(Transition::Closed)
            }
            Outcome::Failure => {
                self.reopens = self.reopens.saturating_add(1);
                let baseline = self.baseline.share(config.min_requests);
                Some(self.open(config, OpenReason::Probe, 1.0, 1, baseline, now))
            }
        }
    }

    fn open(
        &mut self,
        config: &BreakerConfig,
        reason: OpenReason,
        share: f64,
        requests: u64,
        baseline: Option<f64>,
        now: Instant,
    ) -> Transition {
        let open_for = config
            .open_for
            .get()
            .saturating_mul(1 << self.reopens.min(20))
            .min(config.max_open_for.get());
        self.phase = PhaseState::Open {
            until: now + open_for,
        };
        self.window.clear(now);
        Transition::Opened {
            reason,
            share,
            requests,
            baseline,
            open_for,
        }
    }
}

#[cfg(test)]
#[path = "breaker_tests.rs"]
mod tests;
