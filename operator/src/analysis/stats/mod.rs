//! The statistical verdict of one Canary metric over one analysis interval, candidate
//! against stable.
//!
//! Every decision accounts for the number of samples: a verdict is [`Verdict::Fail`]
//! only when the data show the regression at the rule's confidence, [`Verdict::Pass`]
//! only when there were enough samples and no such evidence, and
//! [`Verdict::Inconclusive`] otherwise (keep collecting). Raw thresholds alone never
//! decide.
//!
//! - Rates (`errorRate`, `emptyOutputRate`) are judged in [`rates`]: Fisher's exact
//!   one-sided test of candidate against stable, and a Wilson lower bound against `max`.
//! - Quantiles (`latencyP99`, …) are judged in [`quantiles`] from histogram deltas: the
//!   exact one-sided binomial test of the fraction of candidate observations above the
//!   threshold against `1 − q`.

pub mod distributions;
pub mod quantiles;
pub mod rates;

use std::fmt;

use super::series::VersionSeries;

pub use quantiles::{QuantileValue, histogram_quantile, observations_above};

/// A quantile of a latency distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Quantile {
    /// The median.
    P50,
    /// The 95th percentile.
    P95,
    /// The 99th percentile.
    P99,
}

impl Quantile {
    /// The quantile as a fraction: 0.5, 0.95 or 0.99.
    pub fn fraction(self) -> f64 {
        match self {
            Self::P50 => 0.5,
            Self::P95 => 0.95,
            Self::P99 => 0.99,
        }
    }

    /// `P50`, `P95` or `P99`, as in metric names.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::P50 => "P50",
            Self::P95 => "P95",
            Self::P99 => "P99",
        }
    }
}

/// A built-in Canary metric (the `name` of an entry of `spec.analysis.metrics`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Errors per judged request (see [`super::series`] for the definition).
    ErrorRate,
    /// Finished generations with no output per finished generation.
    EmptyOutputRate,
    /// A quantile of `modelplane_request_duration_seconds`.
    Latency(Quantile),
    /// A quantile of `gen_ai_server_time_to_first_token_seconds`.
    TimeToFirstToken(Quantile),
    /// A quantile of `gen_ai_server_time_per_output_token_seconds`.
    TimePerOutputToken(Quantile),
}

impl Metric {
    /// Every built-in metric.
    pub const ALL: [Metric; 11] = [
        Metric::ErrorRate,
        Metric::EmptyOutputRate,
        Metric::Latency(Quantile::P50),
        Metric::Latency(Quantile::P95),
        Metric::Latency(Quantile::P99),
        Metric::TimeToFirstToken(Quantile::P50),
        Metric::TimeToFirstToken(Quantile::P95),
        Metric::TimeToFirstToken(Quantile::P99),
        Metric::TimePerOutputToken(Quantile::P50),
        Metric::TimePerOutputToken(Quantile::P95),
        Metric::TimePerOutputToken(Quantile::P99),
    ];

    /// The metric of a spec name: `errorRate`, `emptyOutputRate`, `latencyP50|P95|P99`,
    /// `timeToFirstTokenP50|P95|P99`, `timePerOutputTokenP50|P95|P99`; `None` for any
    /// other name (e.g. `custom`).
    pub fn from_name(name: &str) -> Option<Metric> {
        Self::ALL.into_iter().find(|metric| metric.name() == name)
    }

    /// The spec name of the metric (the inverse of [`Metric::from_name`]).
    pub fn name(self) -> String {
        match self {
            Self::ErrorRate => "errorRate".into(),
            Self::EmptyOutputRate => "emptyOutputRate".into(),
            Self::Latency(q) => format!("latency{}", q.suffix()),
            Self::TimeToFirstToken(q) => format!("timeToFirstToken{}", q.suffix()),
            Self::TimePerOutputToken(q) => format!("timePerOutputToken{}", q.suffix()),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// The limits of one metric entry. Without either, the candidate must not be worse than
/// stable at all (as `max_increase: Some(0.0)`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    /// Ceiling: a ratio for rates (0.01 = 1 %), seconds for quantiles.
    pub max: Option<f64>,
    /// Tolerated increase over stable, as a fraction (0.2 = 20 %).
    pub max_increase: Option<f64>,
}

/// How sure a verdict must be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rule {
    /// Confidence of a Fail (one-sided), e.g. 0.95. Values outside [0.5, 0.999999] (or
    /// NaN) are taken as the nearest bound (NaN as 0.95).
    pub confidence: f64,
    /// Samples (judged requests, finished generations, observations) the candidate, and
    /// stable where the decision compares to it, must have for a Pass.
    pub min_samples: u64,
}

impl Default for Rule {
    /// 95 % confidence, 100 samples.
    fn default() -> Self {
        Self {
            confidence: 0.95,
            min_samples: 100,
        }
    }
}

impl Rule {
    /// The confidence, made usable (see [`Rule::confidence`]).
    fn confidence(&self) -> f64 {
        if self.confidence.is_nan() {
            0.95
        } else {
            self.confidence.clamp(0.5, 0.999_999)
        }
    }
}

/// The outcome of one metric over one interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Enough samples and no significant regression.
    Pass,
    /// A regression at the rule's confidence.
    Fail,
    /// Too few samples to tell; keep collecting (never counts as success).
    Inconclusive,
}

impl Verdict {
    /// `Pass`, `Fail` or `Inconclusive`, as written in the Canary's status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "Pass",
            Self::Fail => "Fail",
            Self::Inconclusive => "Inconclusive",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verdict with the figures behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    /// The verdict.
    pub verdict: Verdict,
    /// Stable's value (a ratio or seconds), `None` without samples.
    pub stable: Option<f64>,
    /// The candidate's value, `None` without samples.
    pub candidate: Option<f64>,
    /// Stable's samples (judged requests, finished generations or observations).
    pub stable_samples: u64,
    /// The candidate's samples.
    pub candidate_samples: u64,
    /// One sentence, with the numbers, saying why.
    pub reason: String,
}

/// Judges `metric` over one interval: `stable` and `candidate` are the interval's
/// increments (see [`super::series::delta`]).
pub fn judge(
    metric: Metric,
    limits: &Limits,
    stable: &VersionSeries,
    candidate: &VersionSeries,
    rule: &Rule,
) -> Judgement {
    let limits = Limits {
        max: limits.max.filter(|m| !m.is_nan()),
        max_increase: limits.max_increase.filter(|m| !m.is_nan()),
    };
    match metric {
        Metric::ErrorRate => rates::judge(
            rates::Counts {
                events: stable.errors(),
                trials: stable.judged_requests(),
            },
            rates::Counts {
                events: candidate.errors(),
                trials: candidate.judged_requests(),
            },
            &rates::ERROR_RATE,
            &limits,
            rule,
        ),
        Metric::EmptyOutputRate => rates::judge(
            rates::Counts {
                events: stable.empty_outputs,
                trials: stable.generations_finished(),
            },
            rates::Counts {
                events: candidate.empty_outputs,
                trials: candidate.generations_finished(),
            },
            &rates::EMPTY_OUTPUT_RATE,
            &limits,
            rule,
        ),
        Metric::Latency(q) => quantiles::judge(
            q,
            "latency",
            &stable.latency,
            &candidate.latency,
            &limits,
            rule,
        ),
        Metric::TimeToFirstToken(q) => quantiles::judge(
            q,
            "time to first token",
            &stable.time_to_first_token,
            &candidate.time_to_first_token,
            &limits,
            rule,
        ),
        Metric::TimePerOutputToken(q) => quantiles::judge(
            q,
            "time per output token",
            &stable.time_per_output_token,
            &candidate.time_per_output_token,
            &limits,
            rule,
        ),
    }
}

/// A ratio as a percentage with 2 significant decimals: `1.25 %`, `0.012 %`.
fn percent(ratio: f64) -> String {
    let p = ratio * 100.0;
    if p == 0.0 || p >= 1.0 {
        format!("{p:.2} %")
    } else {
        format!("{:.*} %", decimals(p), p)
    }
}

/// Decimals that show 2 significant digits of a number below 1.
fn decimals(x: f64) -> usize {
    let magnitude = -x.abs().log10().floor();
    (magnitude.clamp(0.0, 12.0) as usize) + 1
}

/// Seconds in a readable unit: `840 ms`, `1.25 s`, `45.0 µs`.
fn seconds(s: f64) -> String {
    if !s.is_finite() {
        format!("{s} s")
    } else if s.abs() >= 1.0 || s == 0.0 {
        format!("{} s", significant(s))
    } else if s.abs() >= 1e-3 {
        format!("{} ms", significant(s * 1e3))
    } else {
        format!("{} µs", significant(s * 1e6))
    }
}

/// Three significant digits, no needless trailing zeros beyond them.
fn significant(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// A p-value in a short form: `p = 0.031`, `p < 1e-6`.
fn p_value(p: f64) -> String {
    if p < 1e-6 {
        "p < 1e-6".into()
    } else if p < 0.001 {
        format!("p = {p:.1e}")
    } else {
        format!("p = {p:.3}")
    }
}

#[cfg(test)]
mod tests;
