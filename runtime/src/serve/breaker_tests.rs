use std::time::{Duration, Instant};

use modelplane_config::BreakerConfig;

use super::*;

/// A 10 s window (1 s buckets), 10 requests to decide, opens at 50 % or 5× the
/// baseline (at least 10 %), 2 s open doubling up to 5 s, 2 probes.
fn config() -> BreakerConfig {
    BreakerConfig {
        window: Duration::from_secs(10).into(),
        min_requests: 10,
        error_percent: 50,
        baseline_factor: 5,
        min_error_percent: 10,
        open_for: Duration::from_secs(2).into(),
        max_open_for: Duration::from_secs(5).into(),
        probes: 2,
    }
}

/// Sends `ok` successes and `failed` failures at `at`, all admitted while closed;
/// the transitions they caused.
fn send(breaker: &Breaker, at: Instant, ok: u32, failed: u32) -> Vec<Transition> {
    let config = config();
    let mut seen = Vec::new();
    for outcome in std::iter::repeat_n(Outcome::Success, ok as usize)
        .chain(std::iter::repeat_n(Outcome::Failure, failed as usize))
    {
        let (admission, _) = breaker.admit(&config, at);
        if admission == Admission::Closed {
            seen.extend(breaker.observe(&config, admission, outcome, at));
        }
    }
    seen
}

fn opened(transitions: &[Transition]) -> Option<OpenReason> {
    transitions.iter().find_map(|t| match t {
        Transition::Opened { reason, .. } => Some(*reason),
        _ => None,
    })
}

#[test]
fn it_opens_at_the_error_rate_only_once_the_window_holds_enough_requests() {
    let (breaker, t0) = (Breaker::default(), Instant::now());
    // Nine failures: all failed, but too few to decide.
    assert_eq!(send(&breaker, t0, 0, 9), []);
    assert_eq!(breaker.phase(t0), Phase::Closed);
    let seen = send(&breaker, t0, 0, 1);
    let [
        Transition::Opened {
            reason,
            share,
            requests,
            open_for,
            ..
        },
    ] = seen[..]
    else {
        panic!("one open: {seen:?}")
    };
    assert_eq!((reason, share, requests), (OpenReason::ErrorRate, 1.0, 10));
    assert_eq!(open_for, Duration::from_secs(2));
    assert_eq!(breaker.phase(t0), Phase::Open);
    let (admission, _) = breaker.admit(&config(), t0 + Duration::from_millis(500));
    assert_eq!(
        admission,
        Admission::Open {
            retry_after: Duration::from_millis(1500)
        }
    );
}

#[test]
fn a_share_below_the_error_rate_keeps_it_closed() {
    let (breaker, t0) = (Breaker::default(), Instant::now());
    // 49 % failures over the window, no baseline yet: only the absolute rule applies.
    assert_eq!(send(&breaker, t0, 51, 49), []);
    assert_eq!(breaker.phase(t0), Phase::Closed);
}

#[test]
fn half_open_probes_close_it_and_a_failed_probe_reopens_it_for_twice_as_long() {
    let (breaker, t0) = (Breaker::default(), Instant::now());
    let config = config();
    send(&breaker, t0, 0, 10);
    // Open for 2 s; then two probes, the third request still falls back.
    let t1 = t0 + Duration::from_secs(2);
    assert_eq!(breaker.phase(t1), Phase::HalfOpen);
    assert_eq!(
        breaker.admit(&config, t1),
        (Admission::Probe, Some(Transition::HalfOpened))
    );
    assert_eq!(breaker.admit(&config, t1), (Admission::Probe, None));
    assert_eq!(
        breaker.admit(&config, t1).0,
        Admission::Open {
            retry_after: Duration::ZERO
        }
    );
    // One probe fails: open again, for 4 s.
    let failed = breaker.observe(&config, Admission::Probe, Outcome::Failure, t1);
    assert!(
        matches!(failed, Some(Transition::Opened { reason: OpenReason::Probe, open_for, .. }) if open_for == Duration::from_secs(4)),
        "{failed:?}"
    );
    // The other probe ends after it reopened: it counts for nothing.
    assert_eq!(
        breaker.observe(&config, Admission::Probe, Outcome::Success, t1),
        None
    );
    // Fails again: 8 s, capped at 5 s.
    let t2 = t1 + Duration::from_secs(4);
    assert_eq!(breaker.admit(&config, t2).0, Admission::Probe);
    let capped = breaker.observe(&config, Admission::Probe, Outcome::Failure, t2);
    assert!(
        matches!(capped, Some(Transition::Opened { open_for, .. }) if open_for == Duration::from_secs(5)),
        "{capped:?}"
    );
    // Both probes pass: closed, with a fresh window.
    let t3 = t2 + Duration::from_secs(5);
    for _ in 0..2 {
        assert_eq!(breaker.admit(&config, t3).0, Admission::Probe);
    }
    assert_eq!(
        breaker.observe(&config, Admission::Probe, Outcome::Success, t3),
        None
    );
    assert_eq!(
        breaker.observe(&config, Admission::Probe, Outcome::Success, t3),
        Some(Transition::Closed)
    );
    assert_eq!(breaker.phase(t3), Phase::Closed);
    assert_eq!(send(&breaker, t3, 0, 9), [], "the window starts afresh");
    // And the next open is 2 s again: closing forgot the reopens.
    let seen = send(&breaker, t3, 0, 1);
    assert!(
        matches!(seen[..], [Transition::Opened { open_for, .. }] if open_for == Duration::from_secs(2)),
        "{seen:?}"
    );
}

#[test]
fn a_cancelled_probe_gives_its_slot_back_and_neutral_outcomes_do_not_count() {
    let (breaker, t0) = (Breaker::default(), Instant::now());
    let config = config();
    // Bad requests, budgets and cancellations are not the model failing.
    for _ in 0..50 {
        let (admission, _) = breaker.admit(&config, t0);
        assert_eq!(
            breaker.observe(&config, admission, Outcome::Neutral, t0),
            None
        );
    }
    assert_eq!(breaker.phase(t0), Phase::Closed);
    send(&breaker, t0, 0, 10);
    let t1 = t0 + Duration::from_secs(2);
    assert_eq!(breaker.admit(&config, t1).0, Admission::Probe);
    assert_eq!(breaker.admit(&config, t1).0, Admission::Probe);
    breaker.observe(&config, Admission::Probe, Outcome::Neutral, t1);
    assert_eq!(
        breaker.admit(&config, t1).0,
        Admission::Probe,
        "slot given back"
    );
}

#[test]
fn a_request_admitted_before_it_opened_counts_for_nothing_when_it_ends() {
    let (breaker, t0) = (Breaker::default(), Instant::now());
    let config = config();
    let (early, _) = breaker.admit(&config, t0);
    assert_eq!(early, Admission::Closed);
    send(&breaker, t0, 0, 10);
    assert_eq!(breaker.observe(&config, early, Outcome::Failure, t0), None);
    assert_eq!(breaker.phase(t0), Phase::Open);
}

#[test]
fn old_failures_slide_out_of_the_window() {
    let (breaker, t0) = (Breaker::default(), Instant::now());
    // Nine failures, then 10 s later one more: the nine slid out, one in ten is not 50 %.
    send(&breaker, t0, 0, 9);
    let later = t0 + Duration::from_secs(10);
    assert_eq!(send(&breaker, later, 9, 1), []);
    assert_eq!(breaker.phase(later), Phase::Closed);
}

#[test]
fn it_opens_relative_to_the_versions_own_baseline() {
    // A version that fails 8 % of requests, steadily, for 40 s: its baseline is 8 %.
    let noisy = Breaker::default();
    let t0 = Instant::now();
    for second in 0..40 {
        let at = t0 + Duration::from_secs(second);
        assert_eq!(send(&noisy, at, 23, 2), [], "its usual noise at {second}s");
    }
    // After a quiet window: 30 % is below errorPercent and below 5 × 8 %.
    let t1 = t0 + Duration::from_secs(50);
    assert_eq!(send(&noisy, t1, 7, 3), []);
    // Up to 40 % is not: it opens on the baseline rule, below errorPercent.
    let seen = send(&noisy, t1, 2, 7);
    assert_eq!(opened(&seen), Some(OpenReason::Baseline), "{seen:?}");
    let Some(Transition::Opened {
        baseline, share, ..
    }) = seen.first()
    else {
        panic!("{seen:?}")
    };
    assert!(*share < 0.5, "{share}");
    let baseline = baseline.expect("a baseline");
    assert!((0.07..0.09).contains(&baseline), "{baseline}");

    // A version that never fails opens at 12 % (at least minErrorPercent)...
    let clean = Breaker::default();
    for second in 0..40 {
        send(&clean, t0 + Duration::from_secs(second), 25, 0);
    }
    let seen = send(&clean, t1, 22, 3);
    assert_eq!(opened(&seen), Some(OpenReason::Baseline), "{seen:?}");

    // ...unless baselineFactor is 0: then only errorPercent opens it.
    let mut absolute = config();
    absolute.baseline_factor = 0;
    let strict = Breaker::default();
    let mut outcomes = Vec::new();
    for second in 0..40 {
        outcomes.push((t0 + Duration::from_secs(second), Outcome::Success, 25));
    }
    outcomes.push((t1, Outcome::Success, 22));
    outcomes.push((t1, Outcome::Failure, 3));
    for (at, outcome, times) in outcomes {
        for _ in 0..times {
            let (admission, _) = strict.admit(&absolute, at);
            assert_eq!(strict.observe(&absolute, admission, outcome, at), None);
        }
    }
    assert_eq!(strict.phase(t1), Phase::Closed);
}
