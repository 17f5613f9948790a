//! The rollout as table tests over simulated metric series: each interval's requests and
//! errors are judged by the real analysis ([`super::super::analyze::builtin`]) and fed to
//! [`advance`], reconcile by reconcile, as the controller does.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use modelplane_api::canary::{CanaryPhase, CanarySpec, CanaryStatus, MetricCheck, Verdict};
use serde_json::{Value, json};

use super::*;
use crate::analysis::{Rule, VersionSeries};
use crate::controller::canary::analyze::builtin;

/// Requests per second the simulated model serves, both versions together.
const RPS: f64 = 50.0;

fn spec(extra: Value) -> CanarySpec {
    let mut spec = json!({
        "targetRef": {"name": "resnet18"},
        "candidate": {"model": {"source": {"oci": "r.example/m:v2"}}},
        "steps": [{"weight": 10, "pause": "2m"}, {"weight": 50, "pause": "2m"}],
        "analysis": {"interval": "1m", "failureLimit": 1},
    });
    merge(&mut spec, extra);
    serde_json::from_value(spec).expect("canary spec")
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                merge(into.entry(key).or_insert(Value::Null), value);
            }
        }
        (into, from) => *into = from,
    }
}

/// One interval's traffic: the error rates of stable and candidate.
#[derive(Clone, Copy, Debug)]
struct Traffic {
    rps: f64,
    stable_errors: f64,
    candidate_errors: f64,
}

const HEALTHY: Traffic = Traffic {
    rps: RPS,
    stable_errors: 0.005,
    candidate_errors: 0.005,
};

fn series(requests: f64, error_rate: f64) -> VersionSeries {
    let requests = requests.round() as u64;
    let errors = (requests as f64 * error_rate).round() as u64;
    let mut series = VersionSeries::default();
    series.requests.insert("success".into(), requests - errors);
    series.requests.insert("internal".into(), errors);
    series
}

/// What each reconcile of the simulation saw and did.
#[derive(Debug)]
struct Tick {
    at: Timestamp,
    phase: CanaryPhase,
    weight: i32,
    reason: Option<&'static str>,
    message: String,
    verdict: Option<Verdict>,
}

struct Simulation {
    spec: CanarySpec,
    status: CanaryStatus,
    now: Timestamp,
    started: Timestamp,
    quota_hold: Option<String>,
    ticks: Vec<Tick>,
    last_analysis: Option<Timestamp>,
    /// Reconcile once more at the same instant after every status change, as the watch on
    /// the Canary does after its status is written.
    echo_writes: bool,
}

impl Simulation {
    fn new(spec: CanarySpec) -> Self {
        // 12:00 UTC on a weekday.
        let now: Timestamp = "2026-12-02T12:00:00Z".parse().expect("time");
        Self {
            spec,
            status: CanaryStatus::default(),
            now,
            started: now,
            quota_hold: None,
            ticks: Vec::new(),
            last_analysis: None,
            echo_writes: false,
        }
    }

    /// One reconcile: runs the analysis when due, over the traffic since the last one.
    fn reconcile(&mut self, traffic: Traffic) -> &Tick {
        let fresh = self.ticks.is_empty();
        let analysis = analysis_due(&self.status, self.now).then(|| self.interval(traffic));
        let observed = Observed {
            now: self.now,
            quota_hold: self.quota_hold.clone(),
            promoted: self.status.phase == CanaryPhase::Promoting,
            analysis,
        };
        let mut advance = advance(&self.spec, &self.status, fresh, &observed);
        if self.echo_writes && advance.status != self.status {
            let echo = Observed {
                analysis: None,
                promoted: advance.status.phase == CanaryPhase::Promoting,
                ..observed
            };
            let again = super::advance(&self.spec, &advance.status, false, &echo);
            if again.status != advance.status {
                advance = again;
            }
        }
        let verdict = advance
            .status
            .last_analysis
            .as_ref()
            .filter(|a| a.time.0 == self.now)
            .and_then(|a| a.verdict);
        self.status = advance.status.clone();
        let progressing = advance.progressing.clone();
        self.ticks.push(Tick {
            at: self.now,
            phase: self.status.phase,
            weight: self.status.weight,
            reason: progressing.as_ref().map(|p| p.reason),
            message: progressing.map(|p| p.message).unwrap_or_default(),
            verdict,
        });
        let wait = SignedDuration::try_from(advance.requeue).expect("requeue");
        self.now = self.now.checked_add(wait).expect("time");
        self.ticks.last().expect("tick")
    }

    /// The interval since the last analysis (or the step's start), judged.
    fn interval(&mut self, traffic: Traffic) -> Interval {
        let since = self
            .last_analysis
            .into_iter()
            .chain(self.status.step_started_at.as_ref().map(|t| t.0))
            .max()
            .unwrap_or(self.now);
        self.last_analysis = Some(self.now);
        let seconds = self.now.duration_since(since).as_secs_f64();
        let requests = traffic.rps * seconds;
        let share = f64::from(self.status.weight) / 100.0;
        let stable = series(requests * (1.0 - share), traffic.stable_errors);
        let candidate = series(requests * share, traffic.candidate_errors);
        let rule = Rule {
            confidence: self.spec.analysis.confidence,
            min_samples: self.spec.analysis.min_samples as u64,
        };
        let checks: Vec<MetricCheck> = if self.spec.analysis.metrics.is_empty() {
            vec![serde_json::from_value(json!({"name": "errorRate", "max": 0.01})).expect("check")]
        } else {
            self.spec.analysis.metrics.clone()
        };
        Interval::Judged(
            checks
                .iter()
                .map(|check| builtin(check, &stable, &candidate, &rule).expect("built-in"))
                .collect(),
        )
    }

    /// Reconciles with `traffic(elapsed minutes, status)` until the rollout ends or `limit`
    /// reconciles have run.
    fn run(
        &mut self,
        limit: usize,
        traffic: impl Fn(f64, &CanaryStatus) -> Traffic,
    ) -> CanaryPhase {
        for _ in 0..limit {
            let minutes = self.now.duration_since(self.started).as_secs_f64() / 60.0;
            let t = traffic(minutes, &self.status);
            let tick = self.reconcile(t);
            if matches!(
                tick.phase,
                CanaryPhase::Succeeded | CanaryPhase::RolledBack | CanaryPhase::Failed
            ) {
                return tick.phase;
            }
        }
        self.status.phase
    }

    fn weights(&self) -> Vec<i32> {
        let mut weights: Vec<i32> = self.ticks.iter().map(|t| t.weight).collect();
        weights.dedup();
        weights
    }

    fn last(&self) -> &Tick {
        self.ticks.last().expect("a tick")
    }
}

#[test]
fn a_healthy_candidate_steps_through_and_succeeds() {
    let mut sim = Simulation::new(spec(json!({})));
    assert_eq!(sim.run(100, |_, _| HEALTHY), CanaryPhase::Succeeded);
    assert_eq!(sim.weights(), vec![10, 50, 100]);
    assert_eq!(sim.last().reason, Some(PROMOTED));
    assert!(sim.ticks.iter().any(|t| t.phase == CanaryPhase::Promoting));
    // Each step waited its 2m pause and passed an analysis before the next.
    let elapsed = sim.last().at.duration_since(sim.started);
    assert!(elapsed >= SignedDuration::from_mins(4), "{elapsed:?}");
    assert!(elapsed <= SignedDuration::from_mins(8), "{elapsed:?}");
    assert!(sim.ticks.iter().all(|t| t.verdict != Some(Verdict::Fail)));
}

#[test]
fn steps_without_pauses_each_pass_their_own_analysis() {
    let mut sim = Simulation::new(spec(json!({
        "steps": [{"weight": 10}, {"weight": 25}, {"weight": 50}],
    })));
    sim.echo_writes = true;
    assert_eq!(sim.run(100, |_, _| HEALTHY), CanaryPhase::Succeeded);
    assert_eq!(sim.weights(), vec![10, 25, 50, 100]);
    // Each weight was judged by a passing analysis of an interval it applied in.
    for weight in [10, 25, 50] {
        let judged = sim
            .ticks
            .windows(2)
            .any(|w| w[0].weight == weight && w[1].verdict == Some(Verdict::Pass));
        assert!(
            judged,
            "weight {weight} advanced without an analysis of its own"
        );
    }
}

#[test]
fn an_error_spike_at_step_two_rolls_back_within_one_interval() {
    let mut sim = Simulation::new(spec(json!({})));
    let bad = Traffic {
        candidate_errors: 0.2,
        ..HEALTHY
    };
    let phase = sim.run(
        100,
        |_, status| if status.step == 1 { bad } else { HEALTHY },
    );
    assert_eq!(phase, CanaryPhase::RolledBack);
    let last = sim.last();
    assert_eq!((last.weight, last.reason), (0, Some(ANALYSIS_FAILED)));
    // The message names the metric, both values and the sample counts.
    assert!(last.message.contains("errorRate"), "{}", last.message);
    assert!(last.message.contains("n=1500"), "{}", last.message);
    assert!(
        last.message.contains("rolled back from weight 50%"),
        "{}",
        last.message
    );
    let step_two = sim
        .ticks
        .iter()
        .find(|t| t.weight == 50)
        .expect("step two started")
        .at;
    let to_rollback = last.at.duration_since(step_two);
    assert!(
        to_rollback <= SignedDuration::from_mins(1),
        "{to_rollback:?}"
    );
    let failed = sim.status.last_analysis.as_ref().expect("analysis");
    assert_eq!(failed.verdict, Some(Verdict::Fail));
    assert_eq!(failed.metrics[0].candidate_samples, Some(1500));
    assert_eq!(failed.metrics[0].stable_samples, Some(1500));
}

#[test]
fn low_traffic_is_inconclusive_and_never_succeeds() {
    let trickle = Traffic {
        rps: 0.5,
        ..HEALTHY
    };
    // Hold (the default): held at the first step, still collecting.
    let mut sim = Simulation::new(spec(json!({"analysis": {"inconclusiveLimit": 3}})));
    assert_eq!(sim.run(60, |_, _| trickle), CanaryPhase::Paused);
    assert!(sim.ticks.iter().all(|t| t.phase != CanaryPhase::Succeeded));
    assert_eq!(sim.weights(), vec![10]);
    assert_eq!(sim.last().reason, Some(INCONCLUSIVE));
    assert!(sim.status.inconclusive_checks >= 3);
    // Fail: rolled back at the limit.
    let mut sim = Simulation::new(spec(
        json!({"analysis": {"inconclusiveLimit": 3, "onInconclusive": "Fail"}}),
    ));
    assert_eq!(sim.run(60, |_, _| trickle), CanaryPhase::RolledBack);
    assert_eq!(sim.last().reason, Some(INCONCLUSIVE_LIMIT));
    assert_eq!(sim.status.inconclusive_checks, 3);
    assert!(
        sim.last().message.contains("of the 100 required"),
        "{}",
        sim.last().message
    );
}

#[test]
fn traffic_that_returns_after_a_lull_resumes_the_rollout() {
    let trickle = Traffic {
        rps: 0.5,
        ..HEALTHY
    };
    let mut sim = Simulation::new(spec(json!({"analysis": {"inconclusiveLimit": 2}})));
    let phase = sim.run(
        100,
        |minutes, _| if minutes < 10.0 { trickle } else { HEALTHY },
    );
    assert_eq!(phase, CanaryPhase::Succeeded);
    assert!(sim.ticks.iter().any(|t| t.reason == Some(INCONCLUSIVE)));
}

#[test]
fn one_noisy_interval_does_not_roll_back_with_a_failure_limit_above_one() {
    let noisy = Traffic {
        candidate_errors: 0.1,
        ..HEALTHY
    };
    let once = |minutes: f64, _: &CanaryStatus| {
        if (1.0..2.0).contains(&minutes) {
            noisy
        } else {
            HEALTHY
        }
    };
    let mut sim = Simulation::new(spec(json!({"analysis": {"failureLimit": 2}})));
    assert_eq!(sim.run(100, once), CanaryPhase::Succeeded);
    assert_eq!(
        sim.ticks
            .iter()
            .filter(|t| t.verdict == Some(Verdict::Fail))
            .count(),
        1
    );
    assert_eq!(sim.status.failed_checks, 0);
    // The same noise with failureLimit 1 rolls back.
    let mut sim = Simulation::new(spec(json!({"analysis": {"failureLimit": 1}})));
    assert_eq!(sim.run(100, once), CanaryPhase::RolledBack);
    // Two bad intervals in a row with failureLimit 2 roll back too.
    let twice = |minutes: f64, _: &CanaryStatus| {
        if (1.0..3.0).contains(&minutes) {
            noisy
        } else {
            HEALTHY
        }
    };
    let mut sim = Simulation::new(spec(json!({"analysis": {"failureLimit": 2}})));
    assert_eq!(sim.run(100, twice), CanaryPhase::RolledBack);
    assert!(
        sim.last().message.contains("2 times in a row"),
        "{}",
        sim.last().message
    );
}

#[test]
fn pause_holds_the_step_and_resume_continues() {
    let mut sim = Simulation::new(spec(json!({})));
    for _ in 0..3 {
        sim.reconcile(HEALTHY);
    }
    let weight = sim.status.weight;
    sim.spec.paused = true;
    let tick = sim.reconcile(HEALTHY);
    assert_eq!(
        (tick.phase, tick.reason),
        (CanaryPhase::Paused, Some(PAUSED_BY_SPEC))
    );
    assert_eq!(tick.weight, weight, "the weight is kept while paused");
    for _ in 0..20 {
        sim.reconcile(HEALTHY);
    }
    assert_eq!(sim.status.weight, weight, "no step while paused");
    assert_eq!(sim.status.phase, CanaryPhase::Paused);
    sim.spec.paused = false;
    assert_eq!(sim.run(100, |_, _| HEALTHY), CanaryPhase::Succeeded);
}

#[test]
fn a_paused_canary_does_not_start() {
    let mut sim = Simulation::new(spec(json!({"paused": true})));
    let tick = sim.reconcile(HEALTHY);
    assert_eq!((tick.phase, tick.weight), (CanaryPhase::Paused, 0));
    assert!(!gets_traffic(&sim.status));
}

#[test]
fn outside_the_window_nothing_starts_or_advances() {
    // 12:00 UTC is outside 02:00-04:00 UTC.
    let window = json!({"window": {"start": "02:00", "end": "04:00", "timeZone": "UTC"}});
    let mut sim = Simulation::new(spec(window));
    let tick = sim.reconcile(HEALTHY);
    assert_eq!(
        (tick.phase, tick.reason, tick.weight),
        (CanaryPhase::Paused, Some(OUTSIDE_WINDOW), 0)
    );
    // A window that closes mid-rollout: the step holds, analyses go on.
    let mut sim = Simulation::new(spec(json!({})));
    for _ in 0..2 {
        sim.reconcile(HEALTHY);
    }
    let weight = sim.status.weight;
    sim.spec.window =
        Some(serde_json::from_value(json!({"start": "02:00", "end": "04:00"})).expect("window"));
    for _ in 0..10 {
        let tick = sim.reconcile(HEALTHY);
        assert_eq!((tick.phase, tick.weight), (CanaryPhase::Paused, weight));
        assert_eq!(tick.reason, Some(OUTSIDE_WINDOW));
    }
    // …and a failing candidate is still rolled back outside the window.
    let bad = Traffic {
        candidate_errors: 0.3,
        ..HEALTHY
    };
    assert_eq!(sim.run(10, |_, _| bad), CanaryPhase::RolledBack);
}

#[test]
fn quota_not_admitted_holds_the_candidate_without_traffic() {
    let mut sim = Simulation::new(spec(json!({})));
    sim.quota_hold =
        Some("TenantQuota team-a refused generation 1: cpu: needs 4, 2 over the quota of 6".into());
    let tick = sim.reconcile(HEALTHY);
    assert_eq!(
        (tick.phase, tick.reason, tick.weight),
        (CanaryPhase::Pending, Some(QUOTA_NOT_ADMITTED), 0)
    );
    assert!(
        tick.message.contains("2 over the quota of 6"),
        "{}",
        tick.message
    );
    sim.quota_hold = None;
    assert_eq!(sim.run(100, |_, _| HEALTHY), CanaryPhase::Succeeded);
}

#[test]
fn unreadable_metrics_have_their_own_limit() {
    let spec = spec(json!({"analysis": {"metricErrorLimit": 2}}));
    let mut status = CanaryStatus::default();
    let mut now: Timestamp = "2026-12-02T12:00:00Z".parse().expect("time");
    let observe = |now, analysis| Observed {
        now,
        quota_hold: None,
        promoted: false,
        analysis,
    };
    status = advance(&spec, &status, true, &observe(now, None)).status;
    now = now.checked_add(SignedDuration::from_mins(1)).expect("time");
    let error = || {
        Some(Interval::SourceError(
            "scraping pod p failed: connection refused".into(),
        ))
    };
    let first = advance(&spec, &status, false, &observe(now, error()));
    assert_eq!(first.status.phase, CanaryPhase::Progressing);
    assert_eq!(first.status.metric_errors, 1);
    assert_eq!(
        first.analysis.as_ref().map(|a| a.0),
        Some(ConditionStatus::Unknown)
    );
    let second = advance(&spec, &first.status, false, &observe(now, error()));
    assert_eq!(second.status.phase, CanaryPhase::RolledBack);
    assert_eq!(second.status.weight, 0);
    let message = second.progressing.expect("condition").message;
    assert!(message.contains("connection refused"), "{message}");
    // A good reading in between resets the count.
    let reset = advance(
        &spec,
        &first.status,
        false,
        &observe(now, Some(Interval::Baseline)),
    );
    assert_eq!(reset.status.metric_errors, 1, "a baseline is no reading");
}

#[test]
fn a_bad_window_or_duration_fails_without_traffic() {
    for extra in [
        json!({"window": {"start": "02:00", "end": "04:00", "timeZone": "Mars/Olympus"}}),
        json!({"analysis": {"interval": "0s"}}),
    ] {
        let mut sim = Simulation::new(spec(extra.clone()));
        let tick = sim.reconcile(HEALTHY);
        assert_eq!(
            (tick.phase, tick.weight),
            (CanaryPhase::Failed, 0),
            "{extra}"
        );
        assert_eq!(tick.reason, Some(INVALID_SPEC));
    }
}

#[test]
fn an_ended_rollout_stays_ended() {
    let mut sim = Simulation::new(spec(json!({})));
    let bad = Traffic {
        candidate_errors: 0.3,
        ..HEALTHY
    };
    assert_eq!(sim.run(100, |_, _| bad), CanaryPhase::RolledBack);
    for _ in 0..5 {
        let tick = sim.reconcile(HEALTHY);
        assert_eq!(
            (tick.phase, tick.weight, tick.reason),
            (CanaryPhase::RolledBack, 0, None)
        );
    }
    // A new candidate starts over from step one.
    let fresh = advance(
        &sim.spec,
        &sim.status,
        true,
        &Observed {
            now: sim.now,
            quota_hold: None,
            promoted: false,
            analysis: None,
        },
    );
    assert_eq!(
        (fresh.status.phase, fresh.status.weight),
        (CanaryPhase::Progressing, 10)
    );
}

#[test]
fn the_overall_verdict_is_the_worst() {
    let metric = |verdict| modelplane_api::canary::MetricResult {
        name: "m".into(),
        stable: None,
        candidate: None,
        stable_samples: None,
        candidate_samples: None,
        verdict,
        message: None,
    };
    assert_eq!(overall(&[]), Verdict::Inconclusive);
    assert_eq!(overall(&[metric(Verdict::Pass)]), Verdict::Pass);
    assert_eq!(
        overall(&[metric(Verdict::Pass), metric(Verdict::Inconclusive)]),
        Verdict::Inconclusive
    );
    assert_eq!(
        overall(&[metric(Verdict::Inconclusive), metric(Verdict::Fail)]),
        Verdict::Fail
    );
}

#[test]
fn a_prompts_candidate_is_held_without_traffic() {
    for candidate in [
        json!({"prompts": [{"name": "p", "variants": {"v1": {"system": "s"}}, "default": "v1"}]}),
        json!({"runtime": {"image": "r.example/runtime:2"}, "prompts": [{"name": "p", "variants": {"v1": {"system": "s"}}, "default": "v1"}]}),
    ] {
        let mut sim = Simulation::new(spec(json!({})));
        sim.spec.candidate = serde_json::from_value(candidate).expect("candidate");
        for _ in 0..3 {
            let tick = sim.reconcile(HEALTHY);
            assert_eq!((tick.phase, tick.weight), (CanaryPhase::Pending, 0));
            assert_eq!(tick.reason, Some(NOT_SPLITTABLE));
            assert!(tick.message.contains("prompts"), "{}", tick.message);
        }
        assert!(!gets_traffic(&sim.status));
    }
}

#[test]
fn a_runtime_image_candidate_steps_by_replicas_and_rolls_back_on_errors() {
    for candidate in [
        json!({"runtime": {"image": "r.example/runtime@sha256:1111111111111111111111111111111111111111111111111111111111111111"}}),
        json!({"model": {"source": {"oci": "r.example/m:v2"}}, "runtime": {"image": "r.example/runtime:2"}}),
    ] {
        let mut sim = Simulation::new(spec(json!({})));
        sim.spec.candidate = serde_json::from_value(candidate).expect("candidate");
        let tick = sim.reconcile(HEALTHY);
        assert_eq!(
            (tick.phase, tick.reason),
            (CanaryPhase::Progressing, Some(STEPPING))
        );
        assert!(tick.weight > 0);
        assert!(tick.message.contains("replica count"), "{}", tick.message);
        assert!(gets_traffic(&sim.status));
        let bad = Traffic {
            candidate_errors: 0.2,
            ..HEALTHY
        };
        assert_eq!(sim.run(20, |_, _| bad), CanaryPhase::RolledBack);
        assert_eq!(
            (sim.last().weight, sim.last().reason),
            (0, Some(ANALYSIS_FAILED))
        );
        assert!(!gets_traffic(&sim.status));
    }
}
