//! Quantiles (`latencyP99`, `timeToFirstTokenP95`, …) from histogram deltas.
//!
//! The value reported is estimated as Prometheus's `histogram_quantile` does (linear
//! interpolation inside the bucket that holds the rank; a quantile in the `+Inf` bucket
//! is reported as the highest finite bound, and the reason says so).
//!
//! The decision does not compare estimates. With a threshold `T`, the quantile `q`
//! exceeds `T` exactly when more than a fraction `1 − q` of the observations lie above
//! `T`. The candidate's observations above `T` are counted (interpolated within the
//! bucket that holds `T`, rounded down) and the exact one-sided binomial test decides
//! whether their fraction is significantly greater than `1 − q` at the rule's
//! confidence. Thresholds, each a separate way to fail:
//!
//! - `max`, and
//! - stable's estimated quantile × (1 + `maxIncrease`) (with no limit at all, stable's
//!   quantile itself), once stable has `min_samples` observations and its quantile is
//!   below its highest finite bound (else that threshold is not set, and the verdict is at
//!   best Inconclusive). Stable's estimate is taken as exact: with stable's usual larger
//!   share its noise is small beside the candidate's, and `maxIncrease` absorbs it.
//!
//! When `T` is beyond the highest finite bound, the observations in the `+Inf` bucket
//! may lie on either side of it: a Fail needs the test to succeed counting none of them
//! above `T`; when it would succeed only counting them all, the histogram cannot tell and
//! the metric is Inconclusive.
//!
//! A Pass needs `min_samples` candidate observations (and stable ones for the
//! `maxIncrease` threshold) and no Fail.

use super::distributions::binomial_upper_tail;
use super::{Judgement, Limits, Quantile, Rule, Verdict, p_value, percent, seconds};
use crate::analysis::series::Histogram;

/// A quantile estimated from a histogram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantileValue {
    /// The estimate, in the histogram's unit.
    pub value: f64,
    /// The quantile lies in the `+Inf` bucket: `value` is the highest finite bound, a
    /// lower bound of the true quantile.
    pub above_range: bool,
}

/// The `q` quantile of `histogram`, as Prometheus's `histogram_quantile(q, …)`; `None`
/// without observations or without any finite bucket.
pub fn histogram_quantile(q: f64, histogram: &Histogram) -> Option<QuantileValue> {
    let buckets = &histogram.buckets;
    let total = histogram.observations();
    if total == 0 || buckets.len() < 2 || q.is_nan() {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let index = buckets
        .iter()
        .position(|(_, cumulative)| *cumulative as f64 >= rank)
        .unwrap_or(buckets.len() - 1);
    if index == buckets.len() - 1 {
        return Some(QuantileValue {
            value: buckets[buckets.len() - 2].0,
            above_range: true,
        });
    }
    let (end, cumulative) = buckets[index];
    if index == 0 && end <= 0.0 {
        return Some(QuantileValue {
            value: end,
            above_range: false,
        });
    }
    let (start, before) = if index == 0 {
        (0.0, 0)
    } else {
        buckets[index - 1]
    };
    let in_bucket = cumulative.saturating_sub(before) as f64;
    let value = if in_bucket > 0.0 {
        start + (end - start) * ((rank - before as f64) / in_bucket)
    } else {
        end
    };
    Some(QuantileValue {
        value,
        above_range: false,
    })
}

/// Observations of `histogram` above `threshold`, interpolated linearly within the bucket
/// that holds it: `(low, high)`, equal unless `threshold` is beyond the highest finite
/// bound, where the `+Inf` bucket's observations may be on either side (`low` counts
/// none of them above, `high` all).
pub fn observations_above(histogram: &Histogram, threshold: f64) -> (f64, f64) {
    let total = histogram.observations() as f64;
    let buckets = &histogram.buckets;
    let Some(index) = buckets.iter().position(|(bound, _)| *bound >= threshold) else {
        return (0.0, 0.0);
    };
    let (end, cumulative) = buckets[index];
    let (start, before) = if index == 0 {
        (0.0_f64.min(end), 0)
    } else {
        buckets[index - 1]
    };
    if end == f64::INFINITY {
        let above_range = total - before as f64;
        return (0.0, above_range);
    }
    let fraction = if end > start {
        ((threshold - start) / (end - start)).clamp(0.0, 1.0)
    } else {
        1.0
    };
    let below = before as f64 + cumulative.saturating_sub(before) as f64 * fraction;
    let above = (total - below).max(0.0);
    (above, above)
}

/// The test of one threshold.
struct Test {
    /// `max 500 ms` or `stable + 20 % = 480 ms`.
    words: String,
    /// Observations above, rounded down (`low` and `high`, see [`observations_above`]).
    above: (u64, u64),
    /// p-values for `above.0` and `above.1`.
    p: (f64, f64),
}

impl Test {
    fn new(histogram: &Histogram, q: Quantile, threshold: f64, words: String) -> Self {
        let n = histogram.observations();
        let (low, high) = observations_above(histogram, threshold);
        let above = (low.floor() as u64, high.floor() as u64);
        let tail = 1.0 - q.fraction();
        Self {
            words,
            above,
            p: (
                binomial_upper_tail(above.0, n, tail),
                binomial_upper_tail(above.1, n, tail),
            ),
        }
    }

    fn share(&self, n: u64) -> String {
        percent(self.above.0 as f64 / n.max(1) as f64)
    }
}

/// Judges a quantile (see the module documentation); `what` names the distribution in
/// the reason (`latency`).
pub fn judge(
    q: Quantile,
    what: &str,
    stable: &Histogram,
    candidate: &Histogram,
    limits: &Limits,
    rule: &Rule,
) -> Judgement {
    let confidence = rule.confidence();
    let alpha = 1.0 - confidence;
    let estimate_s = histogram_quantile(q.fraction(), stable);
    let estimate_c = histogram_quantile(q.fraction(), candidate);
    let (n_s, n_c) = (stable.observations(), candidate.observations());
    let label = format!("{what} {}", q.suffix().to_lowercase());
    let judgement = |verdict, reason| Judgement {
        verdict,
        stable: estimate_s.map(|e| e.value),
        candidate: estimate_c.map(|e| e.value),
        stable_samples: n_s,
        candidate_samples: n_c,
        reason,
    };
    let stable_words = describe(estimate_s, n_s);
    let Some(candidate_value) = estimate_c else {
        return judgement(
            Verdict::Inconclusive,
            format!("no candidate {what} observations yet (stable {label} {stable_words})"),
        );
    };
    let candidate_words = describe(Some(candidate_value), n_c);
    let tail = percent(1.0 - q.fraction());

    let mut tests = Vec::new();
    if let Some(max) = limits.max {
        tests.push(Test::new(
            candidate,
            q,
            max,
            format!("max {}", seconds(max)),
        ));
    }
    let increase = match (limits.max, limits.max_increase) {
        (_, Some(increase)) => Some(increase.max(0.0)),
        (None, None) => Some(0.0),
        (Some(_), None) => None,
    };
    // Whether the stable-relative threshold could be set.
    let mut stable_missing = None;
    if let Some(increase) = increase {
        match estimate_s {
            Some(s) if !s.above_range && n_s >= rule.min_samples.max(1) => {
                let threshold = s.value * (1.0 + increase);
                let words = format!(
                    "stable {} + {} = {}",
                    seconds(s.value),
                    percent(increase),
                    seconds(threshold)
                );
                tests.push(Test::new(candidate, q, threshold, words));
            }
            Some(s) if s.above_range => {
                stable_missing = Some(format!(
                    "stable's {label} is above its highest bucket bound {}",
                    seconds(s.value)
                ));
            }
            _ => {
                stable_missing = Some(format!(
                    "only {n_s} stable observations of the {} required",
                    rule.min_samples
                ));
            }
        }
    }

    if let Some(failed) = tests.iter().find(|t| t.p.0 < alpha) {
        return judgement(
            Verdict::Fail,
            format!(
                "candidate {label} {candidate_words} is above {}: {} of its observations exceed it, significantly more than {tail} (binomial one-sided {}; stable {stable_words})",
                failed.words,
                failed.share(n_c),
                p_value(failed.p.0),
            ),
        );
    }
    if let Some(unclear) = tests.iter().find(|t| t.p.1 < alpha) {
        return judgement(
            Verdict::Inconclusive,
            format!(
                "candidate {label} {candidate_words}: {} is beyond the highest finite bucket bound, so the histogram cannot tell whether the {} observations in its +Inf bucket exceed it",
                unclear.words,
                unclear.above.1 - unclear.above.0,
            ),
        );
    }
    if let Some(missing) = stable_missing {
        return judgement(
            Verdict::Inconclusive,
            format!(
                "cannot compare to stable: {missing}; candidate {label} {candidate_words}, stable {stable_words}"
            ),
        );
    }
    if n_c < rule.min_samples {
        return judgement(
            Verdict::Inconclusive,
            format!(
                "only {n_c} candidate observations of the {} required; candidate {label} {candidate_words}, stable {stable_words}",
                rule.min_samples
            ),
        );
    }
    let checked = tests
        .iter()
        .map(|t| {
            format!(
                "{} ({} above it, {})",
                t.words,
                t.share(n_c),
                p_value(t.p.0)
            )
        })
        .collect::<Vec<_>>()
        .join(" nor ");
    judgement(
        Verdict::Pass,
        format!(
            "candidate {label} {candidate_words} is not significantly above {checked}; stable {stable_words}"
        ),
    )
}

/// `840 ms (1200 observations)`, with a note when the quantile is in the +Inf bucket.
fn describe(estimate: Option<QuantileValue>, n: u64) -> String {
    match estimate {
        None => format!("unknown ({n} observations)"),
        Some(QuantileValue {
            value,
            above_range: false,
        }) => format!("{} ({n} observations)", seconds(value)),
        Some(QuantileValue {
            value,
            above_range: true,
        }) => format!(
            "above the highest bucket bound {} (reported as {}; {n} observations)",
            seconds(value),
            seconds(value)
        ),
    }
}
