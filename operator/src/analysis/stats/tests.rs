use super::distributions::{
    binomial_upper_tail, fisher_greater, ln_gamma, normal_quantile, wilson_lower,
};
use super::*;
use crate::analysis::series::Histogram;

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance * b.abs().max(1e-300)
}

fn requests(errors: u64, judged: u64) -> VersionSeries {
    let mut series = VersionSeries::default();
    series.requests.insert("success".into(), judged - errors);
    series.requests.insert("internal".into(), errors);
    series
}

fn error_rate(stable: (u64, u64), candidate: (u64, u64), limits: Limits) -> Judgement {
    judge(
        Metric::ErrorRate,
        &limits,
        &requests(stable.0, stable.1),
        &requests(candidate.0, candidate.1),
        &Rule::default(),
    )
}

/// The default check of a Canary without metrics: `errorRate` with max 1 %.
const CEILING: Limits = Limits {
    max: Some(0.01),
    max_increase: None,
};

#[test]
fn distributions_match_known_values() {
    // Γ(5) = 24, Γ(0.5) = √π.
    assert!(close(ln_gamma(5.0), 24f64.ln(), 1e-12));
    assert!(close(
        ln_gamma(0.5),
        std::f64::consts::PI.sqrt().ln(),
        1e-12
    ));
    assert!(close(normal_quantile(0.975), 1.959_963_985, 1e-8));
    assert!(close(normal_quantile(0.95), 1.644_853_627, 1e-8));
    assert!(close(normal_quantile(0.5).abs() + 1.0, 1.0, 1e-12));
    // P(X ≥ 1), X ~ Bin(10, 0.1) = 1 − 0.9^10.
    assert!(close(
        binomial_upper_tail(1, 10, 0.1),
        1.0 - 0.9f64.powi(10),
        1e-10
    ));
    assert_eq!(binomial_upper_tail(0, 10, 0.3), 1.0);
    assert_eq!(binomial_upper_tail(11, 10, 0.3), 0.0);
    // One event among two equal groups: it is the candidate's with probability ½.
    assert!(close(fisher_greater(1, 40, 0, 40), 0.5, 1e-12));
    assert_eq!(fisher_greater(0, 40, 1, 40), 1.0);
    // 3 of 3 events in the candidate's 10 of 20: C(10,3)/C(20,3) = 120/1140.
    assert!(close(fisher_greater(3, 10, 0, 10), 120.0 / 1140.0, 1e-10));
    // The Wilson lower bound lies below the observed rate, and nears it with more samples.
    let low = wilson_lower(5.0, 100.0, 0.95);
    assert!(0.0 < low && low < 0.05, "{low}");
    assert!(wilson_lower(50.0, 1000.0, 0.95) > low);
    assert_eq!(wilson_lower(0.0, 100.0, 0.95), 0.0);
}

#[test]
fn one_error_in_forty_is_noise_not_a_failure() {
    for limits in [Limits::default(), CEILING] {
        let judgement = error_rate((0, 40), (1, 40), limits);
        assert_eq!(judgement.verdict, Verdict::Inconclusive, "{judgement:?}");
        assert_eq!(
            (judgement.stable_samples, judgement.candidate_samples),
            (40, 40)
        );
    }
    // Even with plenty of stable traffic, 1/40 at the candidate proves nothing.
    let judgement = error_rate((0, 5000), (1, 40), CEILING);
    assert_ne!(judgement.verdict, Verdict::Fail, "{judgement:?}");
}

#[test]
fn sixty_errors_in_five_thousand_against_none_fails() {
    for limits in [Limits::default(), CEILING] {
        let judgement = error_rate((0, 5000), (60, 5000), limits);
        assert_eq!(judgement.verdict, Verdict::Fail, "{judgement:?}");
        assert_eq!(judgement.candidate, Some(60.0 / 5000.0));
        assert_eq!(judgement.stable, Some(0.0));
        assert!(judgement.reason.contains("60/5000"), "{}", judgement.reason);
    }
}

#[test]
fn a_rate_passes_only_with_enough_samples_and_no_evidence() {
    let judgement = error_rate((25, 5000), (1, 500), CEILING);
    assert_eq!(judgement.verdict, Verdict::Pass, "{judgement:?}");
    // Same rates, too few candidate requests.
    let judgement = error_rate((25, 5000), (0, 99), CEILING);
    assert_eq!(judgement.verdict, Verdict::Inconclusive, "{judgement:?}");
    assert!(
        judgement.reason.contains("99 candidate"),
        "{}",
        judgement.reason
    );
    // No candidate requests at all.
    let judgement = error_rate((25, 5000), (0, 0), CEILING);
    assert_eq!(judgement.verdict, Verdict::Inconclusive);
    assert_eq!(judgement.candidate, None);
}

#[test]
fn a_candidate_above_the_ceiling_fails_whatever_stable_does() {
    // Stable is as bad, but 5 % over 1000 requests is surely above 1 %.
    let judgement = error_rate((50, 1000), (50, 1000), CEILING);
    assert_eq!(judgement.verdict, Verdict::Fail, "{judgement:?}");
    assert!(
        judgement.reason.contains("above max"),
        "{}",
        judgement.reason
    );
}

#[test]
fn worse_than_stable_but_within_the_ceiling_is_tolerated() {
    // 0.8 % vs 0.1 % is significant, but under max 1 %.
    let judgement = error_rate((5, 5000), (40, 5000), CEILING);
    assert_eq!(judgement.verdict, Verdict::Pass, "{judgement:?}");
    // With maxIncrease 50 % the tolerance is max(1 %, 0.15 %) = 1 %: still a pass.
    let both = Limits {
        max: Some(0.01),
        max_increase: Some(0.5),
    };
    assert_eq!(
        error_rate((5, 5000), (40, 5000), both).verdict,
        Verdict::Pass
    );
    // maxIncrease alone: 0.8 % > 0.15 % and significant.
    let relative = Limits {
        max: None,
        max_increase: Some(0.5),
    };
    assert_eq!(
        error_rate((5, 5000), (40, 5000), relative).verdict,
        Verdict::Fail
    );
}

#[test]
fn unjudged_outcomes_are_left_out_of_the_rate() {
    let mut candidate = requests(0, 500);
    candidate.requests.insert("cancelled".into(), 400);
    candidate.requests.insert("rate_limited".into(), 400);
    candidate.requests.insert("deadline_exceeded".into(), 2);
    assert_eq!(candidate.judged_requests(), 502);
    assert_eq!(candidate.errors(), 2);
}

#[test]
fn empty_output_rate_reads_finished_generations() {
    let generations = |empty: u64, finished: u64| {
        let mut series = VersionSeries::default();
        series.generations.insert("stop".into(), finished / 2);
        series
            .generations
            .insert("length".into(), finished - finished / 2);
        series.generations.insert("cancelled".into(), 1000);
        series.empty_outputs = empty;
        series
    };
    let judgement = judge(
        Metric::EmptyOutputRate,
        &Limits::default(),
        &generations(2, 4000),
        &generations(80, 1000),
        &Rule::default(),
    );
    assert_eq!(judgement.verdict, Verdict::Fail, "{judgement:?}");
    assert_eq!(judgement.candidate_samples, 1000);
    assert!(judgement.reason.contains("empty-output rate"));
}

/// A latency histogram with `fast` observations at ≤ 0.1 s and `slow` at (0.5, 1] s.
fn latency(fast: u64, slow: u64) -> Histogram {
    Histogram::from_buckets(
        [
            (0.1, fast),
            (0.25, fast),
            (0.5, fast),
            (1.0, fast + slow),
            (f64::INFINITY, fast + slow),
        ],
        0.0,
        None,
    )
}

fn latency_p99(stable: Histogram, candidate: Histogram, limits: Limits) -> Judgement {
    let series = |histogram| VersionSeries {
        latency: histogram,
        ..VersionSeries::default()
    };
    judge(
        Metric::Latency(Quantile::P99),
        &limits,
        &series(stable),
        &series(candidate),
        &Rule::default(),
    )
}

const TWENTY_PERCENT: Limits = Limits {
    max: None,
    max_increase: Some(0.2),
};

#[test]
fn a_slower_candidate_quantile_fails() {
    // Stable: all fast (p99 ≈ 0.1 s); candidate: 10 % slow, so its p99 is in (0.5, 1].
    let judgement = latency_p99(latency(5000, 0), latency(900, 100), TWENTY_PERCENT);
    assert_eq!(judgement.verdict, Verdict::Fail, "{judgement:?}");
    assert!(judgement.candidate.unwrap() > 0.5);
}

#[test]
fn the_same_distribution_passes() {
    let judgement = latency_p99(latency(5000, 0), latency(1000, 0), TWENTY_PERCENT);
    assert_eq!(judgement.verdict, Verdict::Pass, "{judgement:?}");
}

#[test]
fn a_quantile_needs_enough_observations() {
    let judgement = latency_p99(latency(5000, 0), latency(30, 0), TWENTY_PERCENT);
    assert_eq!(judgement.verdict, Verdict::Inconclusive, "{judgement:?}");
    // Stable too small to compare against.
    let judgement = latency_p99(latency(20, 0), latency(1000, 0), TWENTY_PERCENT);
    assert_eq!(judgement.verdict, Verdict::Inconclusive, "{judgement:?}");
    assert!(judgement.reason.contains("stable"), "{}", judgement.reason);
    // Nothing at all for the candidate.
    let judgement = latency_p99(latency(5000, 0), Histogram::default(), TWENTY_PERCENT);
    assert_eq!(judgement.verdict, Verdict::Inconclusive);
}

#[test]
fn a_ceiling_beyond_the_buckets_cannot_be_judged_from_the_inf_bucket() {
    // All candidate observations above 1 s, in the +Inf bucket; max is 2 s.
    let above = Histogram::from_buckets([(1.0, 0), (f64::INFINITY, 1000)], 0.0, None);
    let limits = Limits {
        max: Some(2.0),
        max_increase: None,
    };
    let judgement = latency_p99(latency(5000, 0), above, limits);
    assert_eq!(judgement.verdict, Verdict::Inconclusive, "{judgement:?}");
}

#[test]
fn a_quantile_estimate_interpolates_like_prometheus() {
    let histogram =
        Histogram::from_buckets([(1.0, 50), (2.0, 100), (f64::INFINITY, 100)], 0.0, None);
    let median = histogram_quantile(0.5, &histogram).unwrap();
    assert!(
        close(median.value, 1.0, 1e-12) && !median.above_range,
        "{median:?}"
    );
    let p75 = histogram_quantile(0.75, &histogram).unwrap();
    assert!(close(p75.value, 1.5, 1e-12), "{p75:?}");
    let high = Histogram::from_buckets([(1.0, 1), (f64::INFINITY, 100)], 0.0, None);
    let p99 = histogram_quantile(0.99, &high).unwrap();
    assert!(p99.above_range && p99.value == 1.0, "{p99:?}");
    assert_eq!(histogram_quantile(0.99, &Histogram::default()), None);
}

#[test]
fn bad_limits_and_confidence_are_made_safe() {
    let nan = Limits {
        max: Some(f64::NAN),
        max_increase: Some(f64::NAN),
    };
    // NaN limits mean "no limit": compare to stable.
    assert_eq!(
        error_rate((0, 5000), (60, 5000), nan).verdict,
        Verdict::Fail
    );
    let rule = Rule {
        confidence: f64::NAN,
        min_samples: 100,
    };
    assert_eq!(rule.confidence(), 0.95);
    let rule = Rule {
        confidence: 2.0,
        min_samples: 100,
    };
    assert!(rule.confidence() < 1.0);
}

#[test]
fn metric_names_round_trip() {
    for metric in Metric::ALL {
        assert_eq!(Metric::from_name(&metric.name()), Some(metric));
    }
    assert_eq!(Metric::from_name("custom"), None);
    assert_eq!(
        Metric::from_name("latencyP99"),
        Some(Metric::Latency(Quantile::P99))
    );
}

#[test]
fn numbers_read_well_in_reasons() {
    assert_eq!(percent(0.0125), "1.25 %");
    assert_eq!(percent(0.00012), "0.012 %");
    assert_eq!(seconds(0.84), "840 ms");
    assert_eq!(seconds(1.25), "1.25 s");
    assert_eq!(seconds(0.000045), "45.0 µs");
    assert_eq!(p_value(1e-9), "p < 1e-6");
    assert_eq!(p_value(0.031), "p = 0.031");
}
