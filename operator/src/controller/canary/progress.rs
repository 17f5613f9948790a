//! The rollout of an admitted candidate, as a pure state machine: which step, which weight,
//! what an analysis means, when to advance, roll back or promote. No I/O here: the
//! reconcile reads the metrics and the target, and writes what [`advance`] returns.
//!
//! ```text
//!  (verified, quota admitted) ─► Progressing step 0 ──pause over, last analysis Pass──► step 1 … ─► Promoting ─► Succeeded
//!        │ outside window / paused        │ failureLimit consecutive Fail, metric errors,
//!        ▼                                ▼ Inconclusive at the limit with onInconclusive: Fail, abort
//!      Paused (weight kept)           RolledBack (weight 0)
//! ```

use std::time::Duration;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use modelplane_api::{
    canary::{
        AnalysisResult, CanaryPhase, CanarySpec, CanaryStatus, InconclusivePolicy, MetricResult,
        Verdict,
    },
    condition::ConditionStatus,
    units::parse_duration,
};

use super::window;

/// `Progressing` reason while the steps advance.
pub const STEPPING: &str = "Stepping";
/// `Progressing` reason while `spec.paused` holds the canary.
pub const PAUSED_BY_SPEC: &str = "PausedBySpec";
/// `Progressing` reason outside `spec.window`.
pub const OUTSIDE_WINDOW: &str = "OutsideWindow";
/// `Progressing` reason while analyses stay Inconclusive under `onInconclusive: Hold`.
pub const INCONCLUSIVE: &str = "Inconclusive";
/// `Progressing` reason while the target's quota does not admit it.
pub const QUOTA_NOT_ADMITTED: &str = "QuotaNotAdmitted";
/// `Progressing` reason while the target serves the candidate as its revision.
pub const PROMOTING: &str = "Promoting";
/// `Progressing` reason once promoted.
pub const PROMOTED: &str = "Promoted";
/// `Progressing` reason of a rollback by analysis.
pub const ANALYSIS_FAILED: &str = "AnalysisFailed";
/// `Progressing` reason of a rollback after too many Inconclusive analyses.
pub const INCONCLUSIVE_LIMIT: &str = "InconclusiveLimit";
/// `Progressing` reason of a rollback after too many unreadable metrics.
pub const METRICS_UNAVAILABLE: &str = "MetricsUnavailable";
/// `Progressing` reason of a spec the rollout cannot follow (a bad window or duration).
pub const INVALID_SPEC: &str = "InvalidSpec";
/// `Progressing` reason of a candidate no split serves (it changes the prompts): verified
/// and pinned, it gets no traffic.
pub const NOT_SPLITTABLE: &str = "CandidateNotSplittable";

/// Longest wait between two reconciles of a canary in flight.
const MAX_WAIT: Duration = Duration::from_secs(300);
/// Shortest wait between two reconciles of a canary in flight.
const MIN_WAIT: Duration = Duration::from_secs(1);
/// Wait while the first step is held (quota, pause, window).
pub(crate) const HOLD_WAIT: Duration = Duration::from_secs(60);
/// Wait while the target takes the candidate in as its revision.
const PROMOTION_WAIT: Duration = Duration::from_secs(5);

/// The result of one analysis interval, as the reconcile read it.
#[derive(Debug, Clone, PartialEq)]
pub enum Interval {
    /// Every metric judged.
    Judged(Vec<MetricResult>),
    /// The metrics could not be read; why.
    SourceError(String),
    /// The first reading after a start or an operator restart: nothing to compare yet.
    Baseline,
}

/// What the reconcile observed besides the canary itself.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Now.
    pub now: Timestamp,
    /// Why the quota does not admit the candidate yet (the target's `QuotaAdmitted` is False,
    /// or a runtime-image candidate's own pods are refused or not decided yet); `None` when
    /// it does. Only the first step waits for it.
    pub quota_hold: Option<String>,
    /// Whether the target now serves the candidate as its revision (promotion done).
    pub promoted: bool,
    /// The analysis run in this reconcile, if one was due ([`analysis_due`]).
    pub analysis: Option<Interval>,
}

/// The `Progressing` condition's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progressing {
    /// True while the rollout moves or holds, False once it ended.
    pub status: ConditionStatus,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What is happening, with the numbers.
    pub message: String,
}

/// The next state of a rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct Advance {
    /// The status with the traffic fields (phase, step, weight, counters, analysis) updated.
    pub status: CanaryStatus,
    /// The `Progressing` condition; `None`: keep the one the status has (an ended rollout).
    pub progressing: Option<Progressing>,
    /// The `AnalysisPassing` condition, when an analysis was judged.
    pub analysis: Option<(ConditionStatus, String, String)>,
    /// When to reconcile again.
    pub requeue: Duration,
}

/// Whether an analysis is due now: the candidate gets traffic and the next analysis time
/// has come (or none is set).
pub fn analysis_due(status: &CanaryStatus, now: Timestamp) -> bool {
    gets_traffic(status)
        && status
            .next_analysis_at
            .as_ref()
            .is_none_or(|at| at.0 <= now)
}

/// Whether the canary's status sends traffic to the candidate: a step has started and the
/// rollout has not ended.
pub fn gets_traffic(status: &CanaryStatus) -> bool {
    status.step_started_at.is_some()
        && matches!(
            status.phase,
            CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::Promoting
        )
}

/// The spec's durations, read once.
struct Timing {
    interval: Duration,
    pauses: Vec<Duration>,
}

fn timing(spec: &CanarySpec) -> Result<Timing, String> {
    let interval = parse_duration(&spec.analysis.interval)
        .map_err(|e| format!("spec.analysis.interval: {e}"))?;
    if interval.is_zero() {
        return Err("spec.analysis.interval must be longer than 0s".into());
    }
    let pauses = spec
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            step.pause
                .as_deref()
                .map_or(Ok(Duration::ZERO), parse_duration)
                .map_err(|e| format!("spec.steps[{i}].pause: {e}"))
        })
        .collect::<Result<_, _>>()?;
    Ok(Timing { interval, pauses })
}

/// Moves an admitted candidate's rollout on by one reconcile. `status` is the current status
/// (its candidate record already the admitted one); `fresh` is true when the candidate record
/// is new (a new candidate starts from step 0).
pub fn advance(spec: &CanarySpec, status: &CanaryStatus, fresh: bool, seen: &Observed) -> Advance {
    let mut next = status.clone();
    if fresh || !started(status.phase) {
        reset(&mut next);
    }
    let timing = match timing(spec) {
        Ok(timing) => timing,
        Err(message) => return invalid(next, message),
    };
    let window = match spec.window.as_ref().map(|w| window::inside(w, seen.now)) {
        Some(Err(error)) => return invalid(next, error.to_string()),
        Some(Ok(inside)) => inside,
        None => true,
    };
    match next.phase {
        // An ended rollout stays as it ended, its condition untouched.
        CanaryPhase::Succeeded | CanaryPhase::RolledBack => {
            return Advance {
                status: next,
                progressing: None,
                analysis: None,
                requeue: MAX_WAIT,
            };
        }
        CanaryPhase::Promoting => return promoting(spec, next, seen),
        _ => {}
    }
    if let Some(what) = unsplittable(spec) {
        next.phase = CanaryPhase::Pending;
        next.weight = 0;
        next.step_started_at = None;
        next.next_analysis_at = None;
        let message = format!(
            "the candidate changes {what}: this version splits traffic between two models in one runtime or between two runtime images' Deployments, not between prompt sets, so it is verified and pinned but gets no traffic"
        );
        return held(next, NOT_SPLITTABLE, message, MAX_WAIT);
    }
    if next.step_started_at.is_none() {
        return start(spec, next, seen, window, &timing);
    }
    let mut verdict = None;
    if let Some(interval) = &seen.analysis {
        next.next_analysis_at = Some(at(seen.now, timing.interval));
        match judge(spec, &mut next, interval, seen.now) {
            Judged::RolledBack(reason, message) => return rolled_back(next, reason, message),
            Judged::Verdict(v, condition) => verdict = Some((v, condition)),
            Judged::Nothing => {}
        }
    }
    let analysis = verdict.as_ref().map(|(_, condition)| condition.clone());
    let mut advance = hold_or_step(spec, next, seen, window, &timing);
    advance.analysis = analysis;
    advance
}

/// What a candidate changes that no split can serve, if anything: a model candidate is
/// split in the runtime, a runtime-image candidate by replicas; prompts are not split yet.
fn unsplittable(spec: &CanarySpec) -> Option<&'static str> {
    let candidate = &spec.candidate;
    match (&candidate.model, &candidate.runtime, &candidate.prompts) {
        (_, _, Some(_)) => Some("the prompts"),
        (None, None, None) => Some("nothing"),
        _ => None,
    }
}

/// What one interval's analysis did to the counters.
enum Judged {
    /// The rollout ends.
    RolledBack(&'static str, String),
    /// The interval's verdict and the `AnalysisPassing` condition it gives.
    Verdict(Verdict, (ConditionStatus, String, String)),
    /// Nothing to judge (a baseline).
    Nothing,
}

fn judge(
    spec: &CanarySpec,
    next: &mut CanaryStatus,
    interval: &Interval,
    now: Timestamp,
) -> Judged {
    let analysis = &spec.analysis;
    let metrics = match interval {
        Interval::Baseline => return Judged::Nothing,
        Interval::SourceError(error) => {
            next.metric_errors += 1;
            if next.metric_errors >= analysis.metric_error_limit {
                return Judged::RolledBack(
                    METRICS_UNAVAILABLE,
                    format!(
                        "the metrics could not be read {} times in a row (metricErrorLimit {}): {error}",
                        next.metric_errors, analysis.metric_error_limit
                    ),
                );
            }
            return Judged::Verdict(
                Verdict::Inconclusive,
                (
                    ConditionStatus::Unknown,
                    METRICS_UNAVAILABLE.into(),
                    format!(
                        "the metrics could not be read ({} of {} allowed in a row): {error}",
                        next.metric_errors, analysis.metric_error_limit
                    ),
                ),
            );
        }
        Interval::Judged(metrics) => metrics,
    };
    next.metric_errors = 0;
    let verdict = overall(metrics);
    next.last_analysis = Some(AnalysisResult {
        time: Time(now),
        verdict: Some(verdict),
        metrics: metrics.clone(),
    });
    let summary = summary(metrics);
    match verdict {
        Verdict::Pass => {
            next.failed_checks = 0;
            next.inconclusive_checks = 0;
            Judged::Verdict(verdict, (ConditionStatus::True, "Passed".into(), summary))
        }
        Verdict::Fail => {
            next.failed_checks += 1;
            next.inconclusive_checks = 0;
            if next.failed_checks >= analysis.failure_limit {
                return Judged::RolledBack(
                    ANALYSIS_FAILED,
                    format!(
                        "the analysis failed {} times in a row (failureLimit {}): {}",
                        next.failed_checks,
                        analysis.failure_limit,
                        failing(metrics)
                    ),
                );
            }
            Judged::Verdict(
                verdict,
                (
                    ConditionStatus::False,
                    "Failed".into(),
                    format!(
                        "failed {} of {} allowed in a row: {}",
                        next.failed_checks,
                        analysis.failure_limit,
                        failing(metrics)
                    ),
                ),
            )
        }
        Verdict::Inconclusive => {
            next.inconclusive_checks += 1;
            let at_limit = next.inconclusive_checks >= analysis.inconclusive_limit;
            if at_limit && analysis.on_inconclusive == InconclusivePolicy::Fail {
                return Judged::RolledBack(
                    INCONCLUSIVE_LIMIT,
                    format!(
                        "{} analyses in a row were inconclusive (inconclusiveLimit {}, onInconclusive Fail): {summary}",
                        next.inconclusive_checks, analysis.inconclusive_limit
                    ),
                );
            }
            Judged::Verdict(
                verdict,
                (
                    ConditionStatus::Unknown,
                    INCONCLUSIVE.into(),
                    format!(
                        "too few samples to judge ({} in a row): {summary}",
                        next.inconclusive_checks
                    ),
                ),
            )
        }
    }
}

/// Fail if any metric failed, else Inconclusive if any was (or there are none), else Pass.
pub fn overall(metrics: &[MetricResult]) -> Verdict {
    if metrics.iter().any(|m| m.verdict == Verdict::Fail) {
        Verdict::Fail
    } else if metrics.is_empty() || metrics.iter().any(|m| m.verdict == Verdict::Inconclusive) {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    }
}

/// The first step: only with the quota's admission, inside the window and not paused.
fn start(
    spec: &CanarySpec,
    mut next: CanaryStatus,
    seen: &Observed,
    window: bool,
    timing: &Timing,
) -> Advance {
    let hold = |next: CanaryStatus, phase, reason, message| {
        held(CanaryStatus { phase, ..next }, reason, message, HOLD_WAIT)
    };
    if let Some(why) = &seen.quota_hold {
        return hold(
            next,
            CanaryPhase::Pending,
            QUOTA_NOT_ADMITTED,
            format!("{why}: the candidate gets no traffic until the tenant's quota admits it"),
        );
    }
    if spec.paused {
        return hold(
            next,
            CanaryPhase::Paused,
            PAUSED_BY_SPEC,
            "spec.paused is set: the first step starts when it is cleared".into(),
        );
    }
    if !window {
        return hold(
            next,
            CanaryPhase::Paused,
            OUTSIDE_WINDOW,
            format!(
                "outside spec.window ({}): the first step starts inside it",
                window_text(spec)
            ),
        );
    }
    enter_step(spec, &mut next, 0, seen.now, timing);
    stepping(spec, next, seen.now, timing)
}

/// A running rollout: hold (paused, window, inconclusive), stay, step on or promote.
fn hold_or_step(
    spec: &CanarySpec,
    mut next: CanaryStatus,
    seen: &Observed,
    window: bool,
    timing: &Timing,
) -> Advance {
    let holding_inconclusive = spec.analysis.on_inconclusive == InconclusivePolicy::Hold
        && next.inconclusive_checks >= spec.analysis.inconclusive_limit;
    let hold = if spec.paused {
        Some((PAUSED_BY_SPEC, "spec.paused is set".to_owned()))
    } else if holding_inconclusive {
        Some((
            INCONCLUSIVE,
            format!(
                "{} analyses in a row were inconclusive (inconclusiveLimit {}): held at this step, still collecting",
                next.inconclusive_checks, spec.analysis.inconclusive_limit
            ),
        ))
    } else if !window {
        Some((
            OUTSIDE_WINDOW,
            format!("outside spec.window ({})", window_text(spec)),
        ))
    } else {
        None
    };
    if let Some((reason, why)) = hold {
        next.phase = CanaryPhase::Paused;
        let message = format!(
            "{why}; step {} of {} holds at weight {}%, analyses go on",
            next.step + 1,
            spec.steps.len(),
            next.weight
        );
        let requeue = wait(&next, seen.now, timing);
        return held(next, reason, message, requeue);
    }
    next.phase = CanaryPhase::Progressing;
    if step_done(&next, seen.now, timing) {
        let following = usize::try_from(next.step).unwrap_or(0) + 1;
        if following >= spec.steps.len() {
            next.phase = CanaryPhase::Promoting;
            return promoting(spec, next, seen);
        }
        enter_step(spec, &mut next, following, seen.now, timing);
    }
    stepping(spec, next, seen.now, timing)
}

/// `status` with `Progressing` = `condition` for `reason`, looked at again after `requeue`.
fn reported(
    status: CanaryStatus,
    condition: ConditionStatus,
    reason: &'static str,
    message: String,
    requeue: Duration,
) -> Advance {
    Advance {
        status,
        progressing: Some(Progressing {
            status: condition,
            reason,
            message,
        }),
        analysis: None,
        requeue,
    }
}

/// A rollout that moves or holds (`Progressing=True`).
fn held(status: CanaryStatus, reason: &'static str, message: String, requeue: Duration) -> Advance {
    reported(status, ConditionStatus::True, reason, message, requeue)
}

/// A step in progress: the weight applies until the next look.
fn stepping(spec: &CanarySpec, next: CanaryStatus, now: Timestamp, timing: &Timing) -> Advance {
    let (message, requeue) = (step_message(spec, &next), wait(&next, now, timing));
    held(next, STEPPING, message, requeue)
}

/// Whether the current step may end: its pause is over and an analysis judged during it
/// (after it started) passed (the last one).
fn step_done(status: &CanaryStatus, now: Timestamp, timing: &Timing) -> bool {
    let Some(started) = status.step_started_at.as_ref() else {
        return false;
    };
    let pause = usize::try_from(status.step)
        .ok()
        .and_then(|i| timing.pauses.get(i))
        .copied()
        .unwrap_or_default();
    // Strictly after the start: the analysis that ended the previous step is stamped with
    // the instant this one started, and it judged the previous weight.
    let passed = status
        .last_analysis
        .as_ref()
        .is_some_and(|a| a.verdict == Some(Verdict::Pass) && a.time.0 > started.0);
    passed && at(started.0, pause).0 <= now
}

fn enter_step(
    spec: &CanarySpec,
    next: &mut CanaryStatus,
    step: usize,
    now: Timestamp,
    timing: &Timing,
) {
    next.phase = CanaryPhase::Progressing;
    next.step = i32::try_from(step).unwrap_or(i32::MAX);
    next.weight = spec.steps.get(step).map_or(0, |s| s.weight);
    next.step_started_at = Some(Time(now));
    next.next_analysis_at = Some(at(now, timing.interval));
}

/// The target takes the candidate in as its revision; then the rollout has succeeded.
fn promoting(spec: &CanarySpec, mut next: CanaryStatus, seen: &Observed) -> Advance {
    if seen.promoted {
        next.phase = CanaryPhase::Succeeded;
        next.weight = 100;
        next.next_analysis_at = None;
        return ended(next, PROMOTED, promoted_message(spec));
    }
    next.phase = CanaryPhase::Promoting;
    let message = format!(
        "every step passed; ModelDeployment {} is taking the candidate in as its served revision",
        spec.target_ref.name
    );
    held(next, PROMOTING, message, PROMOTION_WAIT)
}

fn rolled_back(mut next: CanaryStatus, reason: &'static str, message: String) -> Advance {
    let from = next.weight;
    next.phase = CanaryPhase::RolledBack;
    next.weight = 0;
    next.next_analysis_at = None;
    let message = format!(
        "rolled back from weight {from}% at step {}: {message}; stable serves every request (change spec.candidate, or re-create the Canary, to try again)",
        next.step + 1
    );
    ended(next, reason, message)
}

/// A rollout that ended (`Progressing=False`).
fn ended(status: CanaryStatus, reason: &'static str, message: String) -> Advance {
    reported(status, ConditionStatus::False, reason, message, MAX_WAIT)
}

fn invalid(mut next: CanaryStatus, message: String) -> Advance {
    next.phase = CanaryPhase::Failed;
    next.weight = 0;
    next.next_analysis_at = None;
    next.step_started_at = None;
    ended(
        next,
        INVALID_SPEC,
        format!("{message}; the candidate gets no traffic"),
    )
}

/// Forgets the traffic state of an earlier rollout (a new candidate starts over).
fn reset(status: &mut CanaryStatus) {
    status.phase = CanaryPhase::Pending;
    status.step = 0;
    status.weight = 0;
    status.step_started_at = None;
    status.next_analysis_at = None;
    status.failed_checks = 0;
    status.inconclusive_checks = 0;
    status.metric_errors = 0;
    status.last_analysis = None;
    status.promotion = None;
}

fn started(phase: CanaryPhase) -> bool {
    matches!(
        phase,
        CanaryPhase::Progressing
            | CanaryPhase::Paused
            | CanaryPhase::Promoting
            | CanaryPhase::Succeeded
            | CanaryPhase::RolledBack
    )
}

/// When to look again: the next analysis, the end of the step's pause, at most [`MAX_WAIT`].
fn wait(status: &CanaryStatus, now: Timestamp, timing: &Timing) -> Duration {
    let until = |at: &Time| Duration::try_from(at.0.duration_since(now)).unwrap_or(Duration::ZERO);
    let analysis = status.next_analysis_at.as_ref().map(until);
    let pause_end = status.step_started_at.as_ref().map(|started| {
        let pause = usize::try_from(status.step)
            .ok()
            .and_then(|i| timing.pauses.get(i))
            .copied()
            .unwrap_or_default();
        until(&at(started.0, pause))
    });
    [analysis, pause_end]
        .into_iter()
        .flatten()
        .filter(|d| !d.is_zero())
        .min()
        .unwrap_or(timing.interval)
        .clamp(MIN_WAIT, MAX_WAIT)
}

fn at(from: Timestamp, after: Duration) -> Time {
    let span = k8s_openapi::jiff::SignedDuration::try_from(after).unwrap_or_default();
    Time(from.checked_add(span).unwrap_or(from))
}

fn step_message(spec: &CanarySpec, status: &CanaryStatus) -> String {
    let (step, steps, weight) = (status.step + 1, spec.steps.len(), status.weight);
    if spec.candidate.runtime.is_some() {
        return format!(
            "step {step} of {steps}: weight {weight}%, served by the candidate's own Deployment with the replica count nearest that share of the pods (coarse: the Service balances connections, not requests)"
        );
    }
    format!("step {step} of {steps}: {weight}% of requests go to the candidate")
}

fn promoted_message(spec: &CanarySpec) -> String {
    format!(
        "the candidate is ModelDeployment {}'s served revision; commit status.promotion.changes to its spec in Git",
        spec.target_ref.name
    )
}

fn window_text(spec: &CanarySpec) -> String {
    spec.window.as_ref().map_or_else(String::new, |w| {
        format!("{}-{} {}", w.start, w.end, w.time_zone)
    })
}

/// One line per metric: name, verdict, values and samples.
fn summary(metrics: &[MetricResult]) -> String {
    if metrics.is_empty() {
        return "no metrics".into();
    }
    metrics.iter().map(describe).collect::<Vec<_>>().join("; ")
}

fn failing(metrics: &[MetricResult]) -> String {
    let failed: Vec<String> = metrics
        .iter()
        .filter(|m| m.verdict == Verdict::Fail)
        .map(describe)
        .collect();
    failed.join("; ")
}

fn describe(metric: &MetricResult) -> String {
    let value = |v: Option<f64>, n: Option<i64>| match (v, n) {
        (Some(v), Some(n)) => format!("{v:.4} (n={n})"),
        (Some(v), None) => format!("{v:.4}"),
        (None, Some(n)) => format!("none (n={n})"),
        (None, None) => "none".into(),
    };
    format!(
        "{} {:?}: candidate {} vs stable {}{}",
        metric.name,
        metric.verdict,
        value(metric.candidate, metric.candidate_samples),
        value(metric.stable, metric.stable_samples),
        metric
            .message
            .as_deref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default()
    )
}

#[cfg(test)]
#[path = "progress_tests.rs"]
mod tests;
