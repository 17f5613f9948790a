//! How sensitive the Canary analysis is, and how fast a bad candidate loses its traffic.
//!
//! ```text
//! cargo run --release -p modelplane-operator --example canary_sensitivity
//! ```
//!
//! 1. **Smallest detected regression.** 50 requests/s, 5 % to the candidate, a 1-minute
//!    interval (150 candidate and 2,850 stable requests per interval), stable at 0.5 %
//!    errors, the default check (`errorRate`, max 1 %) at the default rule (95 %
//!    confidence, 100 samples). Errors are drawn per request (seeded, reproducible); for
//!    each candidate error rate, the share of trials in which the analysis fails the
//!    candidate within three intervals (`failureLimit: 1`), and, at the stable rate, the
//!    false rollbacks.
//! 2. **Time to weight 0.** The real rollout state machine, reconcile by reconcile as the
//!    controller requeues it, with a candidate that starts failing (20 % errors) at a
//!    random moment of step 1: the time from its first error to the reconcile that writes
//!    weight 0, against one interval.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use modelplane_api::canary::{CanaryPhase, CanarySpec, CanaryStatus, MetricResult, Verdict};
use modelplane_operator::analysis::{self, Limits, Metric, Rule, VersionSeries};
use modelplane_operator::controller::canary::progress::{
    Interval, Observed, advance, analysis_due,
};

const RPS: f64 = 50.0;
const WEIGHT: f64 = 0.05;
const INTERVAL_S: f64 = 60.0;
const STABLE_RATE: f64 = 0.005;
const TRIALS: usize = 400;

/// xorshift64*: reproducible draws without a dependency.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn binomial(&mut self, n: u64, p: f64) -> u64 {
        (0..n).filter(|_| self.uniform() < p).count() as u64
    }
}

fn series(requests: u64, errors: u64) -> VersionSeries {
    let mut series = VersionSeries::default();
    series.requests.insert("success".into(), requests - errors);
    series.requests.insert("internal".into(), errors);
    series
}

const CEILING: Limits = Limits {
    max: Some(0.01),
    max_increase: None,
};

/// Whether one interval's analysis fails a candidate with `rate`.
fn interval_fails(rng: &mut Rng, rate: f64) -> bool {
    let requests = (RPS * INTERVAL_S) as u64;
    let candidate_n = (requests as f64 * WEIGHT) as u64;
    let stable_n = requests - candidate_n;
    let stable = series(stable_n, rng.binomial(stable_n, STABLE_RATE));
    let candidate = series(candidate_n, rng.binomial(candidate_n, rate));
    let judgement = analysis::judge(
        Metric::ErrorRate,
        &CEILING,
        &stable,
        &candidate,
        &Rule::default(),
    );
    judgement.verdict == analysis::Verdict::Fail
}

/// Shares of trials rolled back within three intervals with `failureLimit` 1 and 2 (two
/// failed intervals in a row).
fn detection(rate: f64, seed: u64) -> (f64, f64) {
    let mut rng = Rng(seed);
    let (mut once, mut twice) = (0, 0);
    for _ in 0..TRIALS {
        let fails: Vec<bool> = (0..3).map(|_| interval_fails(&mut rng, rate)).collect();
        once += usize::from(fails.iter().any(|f| *f));
        twice += usize::from(fails.windows(2).any(|w| w[0] && w[1]));
    }
    (once as f64 / TRIALS as f64, twice as f64 / TRIALS as f64)
}

fn spec() -> CanarySpec {
    serde_json::from_value(serde_json::json!({
        "targetRef": {"name": "m"},
        "candidate": {"model": {"source": {"oci": "r.example/m:v2"}}},
        "steps": [{"weight": 5, "pause": "2m"}, {"weight": 50, "pause": "2m"}],
        "analysis": {"interval": "1m", "failureLimit": 1},
    }))
    .expect("spec")
}

/// Seconds from the candidate's first error to the reconcile that sets weight 0.
fn time_to_weight_zero(rng: &mut Rng) -> f64 {
    let spec = spec();
    let start: Timestamp = "2026-12-02T12:00:00Z".parse().expect("time");
    let mut now = start;
    let mut status = CanaryStatus::default();
    let mut last_analysis = start;
    // Bad from a random moment of the first step (its first two minutes).
    let bad_from = start
        .checked_add(SignedDuration::from_secs_f64(rng.uniform() * 120.0))
        .expect("time");
    let rule = Rule::default();
    for reconcile in 0..1000 {
        let due = analysis_due(&status, now);
        let analysis = due.then(|| {
            let since = status
                .step_started_at
                .as_ref()
                .map_or(last_analysis, |s| s.0.max(last_analysis));
            last_analysis = now;
            let seconds = now.duration_since(since).as_secs_f64();
            let bad = now
                .duration_since(bad_from.max(since))
                .as_secs_f64()
                .clamp(0.0, seconds);
            let share = f64::from(status.weight) / 100.0;
            let (good_n, bad_n) = (
                (RPS * share * (seconds - bad)) as u64,
                (RPS * share * bad) as u64,
            );
            let errors = rng.binomial(good_n, STABLE_RATE) + rng.binomial(bad_n, 0.2);
            let stable_n = (RPS * (1.0 - share) * seconds) as u64;
            let judgement = analysis::judge(
                Metric::ErrorRate,
                &CEILING,
                &series(stable_n, rng.binomial(stable_n, STABLE_RATE)),
                &series(good_n + bad_n, errors),
                &rule,
            );
            Interval::Judged(vec![MetricResult {
                name: "errorRate".into(),
                stable: judgement.stable,
                candidate: judgement.candidate,
                stable_samples: None,
                candidate_samples: None,
                verdict: match judgement.verdict {
                    analysis::Verdict::Pass => Verdict::Pass,
                    analysis::Verdict::Fail => Verdict::Fail,
                    analysis::Verdict::Inconclusive => Verdict::Inconclusive,
                },
                message: None,
            }])
        });
        let seen = Observed {
            now,
            quota_hold: None,
            promoted: status.phase == CanaryPhase::Promoting,
            analysis,
        };
        let next = advance(&spec, &status, reconcile == 0, &seen);
        status = next.status;
        match status.phase {
            CanaryPhase::RolledBack => return now.duration_since(bad_from).as_secs_f64(),
            CanaryPhase::Succeeded => return f64::INFINITY,
            _ => {}
        }
        now = now
            .checked_add(
                SignedDuration::try_from(next.requeue.min(Duration::from_secs(300))).expect("wait"),
            )
            .expect("time");
    }
    f64::INFINITY
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    println!(
        "analysis sensitivity: {RPS} req/s, {}% to the candidate, {INTERVAL_S}s interval, stable {:.1}% errors, errorRate max 1%, 95% confidence, minSamples 100, {TRIALS} trials",
        WEIGHT * 100.0,
        STABLE_RATE * 100.0
    );
    println!("candidate error rate  rolled back within 3 intervals: failureLimit 1 | 2");
    let mut smallest = None;
    for rate in [0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.07, 0.1] {
        let (share, twice) = detection(rate, 0x5eed ^ (rate * 1e6) as u64);
        println!(
            "{:>19.1}%  {:>6.1}% | {:>6.1}%{}",
            rate * 100.0,
            share * 100.0,
            twice * 100.0,
            if rate == STABLE_RATE {
                "  (= stable: false rollbacks)"
            } else {
                ""
            }
        );
        if share >= 0.9 && smallest.is_none() {
            smallest = Some(rate);
        }
    }
    match smallest {
        Some(rate) => println!(
            "smallest candidate error rate detected in >= 90% of trials (failureLimit 1): {:.1}% (stable {:.1}%: a regression of +{:.1} points)",
            rate * 100.0,
            STABLE_RATE * 100.0,
            (rate - STABLE_RATE) * 100.0
        ),
        None => println!("no rate up to 10% detected in >= 90% of trials"),
    }

    let mut rng = Rng(0xfeed);
    let mut times: Vec<f64> = (0..200).map(|_| time_to_weight_zero(&mut rng)).collect();
    times.sort_by(f64::total_cmp);
    println!(
        "time from the candidate's first errors (20%) to weight 0, 200 runs: p50 {:.0}s, p90 {:.0}s, max {:.0}s; one interval = {INTERVAL_S}s (ratio max/interval {:.2})",
        percentile(&times, 0.5),
        percentile(&times, 0.9),
        percentile(&times, 1.0),
        percentile(&times, 1.0) / INTERVAL_S
    );
}
