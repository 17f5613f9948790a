//! Rates (`errorRate`, `emptyOutputRate`): events per trial, candidate against stable.
//!
//! Two ways to fail, both at the rule's confidence:
//!
//! 1. **Worse than stable.** Fisher's exact one-sided test (hypergeometric, conditional
//!    on the total events) says the candidate's rate is higher than stable's, *and* the
//!    candidate's observed rate is beyond the tolerance: above `max` when set (a
//!    candidate worse than stable but under the ceiling is tolerated) and above
//!    `stable × (1 + maxIncrease)` when set. Fisher's test is exact and conservative: it
//!    needs no normal approximation, so it behaves at zero counts and with a small
//!    candidate share (a pooled z-test would call 0/5000 vs 1/40 significant).
//!    This comparison needs `min_samples` candidate trials: conditioned on few events,
//!    Fisher's test calls a single error in 40 requests significant against a spotless
//!    stable (p = 40 / 5040), which is the noise a canary must not roll back on.
//! 2. **Above the ceiling on its own.** The candidate's one-sided Wilson lower bound is
//!    above `max`, whatever stable does; this one holds at any sample size (its bound
//!    widens as samples shrink).
//!
//! A Pass needs `min_samples` candidate trials, and as many stable trials when the
//! decision compares to stable (`maxIncrease` set, or no limit at all); anything else is
//! Inconclusive.

use super::distributions::{fisher_greater, wilson_lower};
use super::{Judgement, Limits, Rule, Verdict, p_value, percent};

/// Events and trials of one version over the interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Errors, or empty outputs.
    pub events: u64,
    /// Judged requests, or finished generations.
    pub trials: u64,
}

impl Counts {
    fn clamped(self) -> Self {
        Self {
            events: self.events.min(self.trials),
            trials: self.trials,
        }
    }

    fn rate(self) -> Option<f64> {
        (self.trials > 0).then(|| self.events as f64 / self.trials as f64)
    }

    fn describe(self) -> String {
        match self.rate() {
            Some(rate) => format!("{} ({}/{})", percent(rate), self.events, self.trials),
            None => "unknown (0 samples)".into(),
        }
    }
}

/// The words of a rate metric in reasons.
#[derive(Clone, Copy, Debug)]
pub struct Words {
    /// `error rate`.
    pub name: &'static str,
    /// `judged requests`.
    pub trials: &'static str,
}

/// The words of `errorRate`.
pub const ERROR_RATE: Words = Words {
    name: "error rate",
    trials: "judged requests",
};

/// The words of `emptyOutputRate`.
pub const EMPTY_OUTPUT_RATE: Words = Words {
    name: "empty-output rate",
    trials: "finished generations",
};

/// Judges a rate (see the module documentation).
pub fn judge(
    stable: Counts,
    candidate: Counts,
    words: &Words,
    limits: &Limits,
    rule: &Rule,
) -> Judgement {
    let (stable, candidate) = (stable.clamped(), candidate.clamped());
    let confidence = rule.confidence();
    let judgement = |verdict, reason| Judgement {
        verdict,
        stable: stable.rate(),
        candidate: candidate.rate(),
        stable_samples: stable.trials,
        candidate_samples: candidate.trials,
        reason,
    };
    let name = words.name;
    let Some(rate) = candidate.rate() else {
        return judgement(
            Verdict::Inconclusive,
            format!(
                "no {} for the candidate yet (stable {name} {})",
                words.trials,
                stable.describe()
            ),
        );
    };

    if let Some(max) = limits.max {
        let lower = wilson_lower(candidate.events as f64, candidate.trials as f64, confidence);
        if lower > max {
            return judgement(
                Verdict::Fail,
                format!(
                    "candidate {name} {} is above max {} with {} confidence (lower bound {}; stable {})",
                    candidate.describe(),
                    percent(max),
                    percent(confidence),
                    percent(lower),
                    stable.describe()
                ),
            );
        }
    }

    let tolerance = tolerance(stable, limits);
    let p = (stable.trials > 0).then(|| {
        fisher_greater(
            candidate.events,
            candidate.trials,
            stable.events,
            stable.trials,
        )
    });
    let significant = p.is_some_and(|p| p < 1.0 - confidence);
    let enough_candidate = candidate.trials >= rule.min_samples;
    if significant && enough_candidate && tolerance.as_ref().is_none_or(|t| rate > t.value) {
        let beyond = tolerance
            .as_ref()
            .map(|t| format!(" and above {}", t.words))
            .unwrap_or_default();
        return judgement(
            Verdict::Fail,
            format!(
                "candidate {name} {} is significantly above stable {} (Fisher one-sided {}){beyond}",
                candidate.describe(),
                stable.describe(),
                p_value(p.unwrap_or(1.0)),
            ),
        );
    }

    let compares = limits.max.is_none() || limits.max_increase.is_some();
    let enough_stable = !compares || stable.trials >= rule.min_samples;
    let versus = match p {
        Some(p) => format!("stable {} ({})", stable.describe(), p_value(p)),
        None => "stable (no samples)".into(),
    };
    if enough_candidate && enough_stable {
        let tolerated = match (&tolerance, significant) {
            (Some(t), true) => format!(", significantly above stable but within {}", t.words),
            _ => String::new(),
        };
        let ceiling = limits
            .max
            .map(|max| format!(" and not above max {}", percent(max)))
            .unwrap_or_default();
        let passed = if significant {
            format!(
                "candidate {name} {} vs {versus}{tolerated}",
                candidate.describe()
            )
        } else {
            format!(
                "candidate {name} {} is not significantly above {versus}{ceiling}",
                candidate.describe()
            )
        };
        return judgement(Verdict::Pass, passed);
    }
    let short = if enough_candidate {
        format!("{} stable", stable.trials)
    } else {
        format!("{} candidate", candidate.trials)
    };
    judgement(
        Verdict::Inconclusive,
        format!(
            "only {short} {} of the {} required; candidate {name} {} vs {versus}",
            words.trials,
            rule.min_samples,
            candidate.describe(),
        ),
    )
}

/// What the candidate's observed rate must exceed, besides being significantly above
/// stable, to fail.
struct Tolerance {
    value: f64,
    words: String,
}

fn tolerance(stable: Counts, limits: &Limits) -> Option<Tolerance> {
    let increase = limits.max_increase.and_then(|increase| {
        stable.rate().map(|rate| {
            let value = rate * (1.0 + increase.max(0.0));
            (
                value,
                format!(
                    "stable + {} = {}",
                    percent(increase.max(0.0)),
                    percent(value)
                ),
            )
        })
    });
    let max = limits.max.map(|max| (max, format!("max {}", percent(max))));
    match (max, increase) {
        (None, None) => None,
        (Some((value, words)), None) | (None, Some((value, words))) => {
            Some(Tolerance { value, words })
        }
        (Some(max), Some(increase)) => {
            let (value, words) = if max.0 >= increase.0 { max } else { increase };
            Some(Tolerance {
                value,
                words: format!("{words} (the larger of max and stable + maxIncrease)"),
            })
        }
    }
}
