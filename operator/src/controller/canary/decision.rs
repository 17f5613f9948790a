//! The Canary's decisions as pure functions: what to check, what a check means, the status
//! to write and the Events to publish. No I/O here; `mod.rs` runs the plan.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::{Event, EventType};
use modelplane_api::{
    canary::{CanaryPhase, CanarySpec, CanaryStatus, CandidateRevision, condition_types},
    condition::{Condition, ConditionStatus, find_condition, merge_conditions},
    model_deployment::ModelDeploymentSpec,
};

use super::{
    candidate::{NotApplicable, candidate_spec},
    progress::{self, Advance, Progressing},
};
use crate::{controller::model_deployment::Outcome, verification::inputs_hash};

/// `Verified` reason while a check runs.
pub const VERIFYING: &str = "Verifying";
/// `Progressing` reason of an admitted candidate before its rollout decides anything.
pub const ADMITTED: &str = "Admitted";
/// `Progressing` reason of a candidate refused under `Enforce`.
pub const VERIFICATION_FAILED: &str = "VerificationFailed";
/// Reason of a target that does not exist.
pub const TARGET_NOT_FOUND: &str = "TargetNotFound";
/// Reason of a candidate that cannot apply to its target.
pub const CANDIDATE_NOT_APPLICABLE: &str = "CandidateNotApplicable";
/// `Progressing` reason after `spec.abort`.
pub const ABORTED: &str = "Aborted";

/// A `Verified` condition's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// CamelCase reason.
    pub reason: String,
    /// What was verified, or what failed.
    pub message: String,
}

/// What a reconcile concluded about a canary; the status follows from it.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// The target ModelDeployment does not exist (yet).
    TargetNotFound {
        /// `spec.targetRef.name`.
        target: String,
    },
    /// The candidate cannot apply to the target.
    NotApplicable(NotApplicable),
    /// `spec.abort` is set.
    Aborted,
    /// A check of the candidate revision resolved from `inputs` is running.
    Verifying {
        /// The revision's inputs hash.
        inputs: String,
    },
    /// The candidate may get traffic: verified, verification disabled, or failed under `Audit`.
    Admitted {
        /// The pinned revision.
        record: CandidateRevision,
        /// Its `Verified` condition.
        verified: Verification,
    },
    /// The candidate was refused: it gets no traffic.
    Refused {
        /// The revision's inputs hash and the keys it was checked against (no pins).
        record: CandidateRevision,
        /// Why.
        verified: Verification,
        /// Whether the failure may pass by itself (checked again with backoff).
        retry: bool,
    },
}

/// What the reconcile should do before writing the status.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Nothing to resolve or verify: report this.
    Report(Finding),
    /// Resolve and verify `spec`.
    Verify {
        /// The candidate revision.
        spec: Box<ModelDeploymentSpec>,
        /// Its inputs hash.
        inputs: String,
        /// The refusal the status already records for these inputs, if any: a re-check, so no
        /// `Verifying` phase is written first and a hold may defer it.
        refused: Option<Finding>,
    },
}

/// Decides what a reconcile must do for `canary`, given its target's spec (if it exists) and
/// the current status. A candidate already admitted for the same inputs is never re-checked.
pub fn plan(
    canary: &CanarySpec,
    target: Option<&ModelDeploymentSpec>,
    status: &CanaryStatus,
    default_image: &str,
) -> Plan {
    // An abort after promotion changes nothing: the target serves the candidate already.
    if canary.abort && status.phase != CanaryPhase::Succeeded {
        return Plan::Report(Finding::Aborted);
    }
    let Some(target) = target else {
        return Plan::Report(Finding::TargetNotFound {
            target: canary.target_ref.name.clone(),
        });
    };
    let spec = match candidate_spec(target, &canary.candidate) {
        Ok(spec) => spec,
        Err(problem) => return Plan::Report(Finding::NotApplicable(problem)),
    };
    let inputs = inputs_hash(&spec, default_image);
    let recorded = recorded_finding(status).filter(|finding| match finding {
        Finding::Admitted { record, .. } | Finding::Refused { record, .. } => {
            record.inputs == inputs
        }
        _ => false,
    });
    match recorded {
        Some(admitted @ Finding::Admitted { .. }) => Plan::Report(admitted),
        refused => Plan::Verify {
            spec: Box::new(spec),
            inputs,
            refused,
        },
    }
}

/// The verdict the status records, rebuilt from its candidate record and `Verified` condition.
fn recorded_finding(status: &CanaryStatus) -> Option<Finding> {
    let record = status.candidate.clone()?;
    let condition = find_condition(&status.conditions, condition_types::VERIFIED)?;
    if condition.reason == VERIFYING {
        return None;
    }
    let verified = Verification {
        status: condition.status,
        reason: condition.reason.clone(),
        message: condition.message.clone(),
    };
    Some(if record.image.is_some() {
        Finding::Admitted { record, verified }
    } else {
        Finding::Refused {
            record,
            verified,
            retry: status.phase == CanaryPhase::Verifying,
        }
    })
}

/// What the gate's [`Outcome`] for the revision `inputs` means for the canary; `keys` are the
/// fingerprints of the keys it was checked against.
pub fn finding_of(outcome: Outcome, inputs: &str, keys: Vec<String>) -> Finding {
    let verified = Verification {
        status: outcome.verified.status,
        reason: outcome.verified.reason.to_owned(),
        message: outcome.verified.message,
    };
    match outcome.render {
        Some(pinned) => Finding::Admitted {
            record: CandidateRevision {
                inputs: inputs.to_owned(),
                image: Some(pinned.image),
                image_digest: Some(pinned.image_digest),
                model_source: pinned.model_source,
                model_digest: pinned.model_digest,
                verified_at: pinned.verified_at,
                keys,
            },
            verified,
        },
        None => Finding::Refused {
            record: CandidateRevision {
                inputs: inputs.to_owned(),
                keys,
                ..CandidateRevision::default()
            },
            verified,
            retry: outcome.retry,
        },
    }
}

/// The status that reports `finding` (and, for an admitted candidate, the rollout's
/// `advance`), observed at `generation`; transition times of conditions that did not flip and
/// other condition types are kept. A candidate that is not admitted gets no traffic.
pub fn next_status(
    current: &CanaryStatus,
    finding: &Finding,
    advance: Option<&Advance>,
    generation: Option<i64>,
    now: &Time,
) -> CanaryStatus {
    let (mut phase, mut progressing) = phase_of(finding);
    let verified = verified_of(finding);
    let traffic = match (finding, advance) {
        (Finding::Admitted { .. }, Some(advance)) => {
            phase = advance.status.phase;
            progressing = advance
                .progressing
                .as_ref()
                .map(
                    |Progressing {
                         status,
                         reason,
                         message,
                     }| { (*status, (*reason).to_owned(), message.clone()) },
                )
                .or_else(|| kept(current, condition_types::PROGRESSING))
                .unwrap_or(progressing);
            advance.status.clone()
        }
        _ => without_traffic(current),
    };
    let condition = |type_: &str, (status, reason, message): (ConditionStatus, String, String)| {
        Condition::new(type_, status, reason, message, generation, now.clone())
    };
    let mut ours = vec![condition(condition_types::PROGRESSING, progressing)];
    if let Some(analysis) = advance.and_then(|a| a.analysis.clone()) {
        ours.push(condition(condition_types::ANALYSIS_PASSING, analysis));
    }
    if let Some(verified) = verified {
        ours.insert(0, condition(condition_types::VERIFIED, verified));
    }
    let replaced: Vec<String> = ours.iter().map(|c| c.type_.clone()).collect();
    let others = current
        .conditions
        .iter()
        .filter(|c| !replaced.contains(&c.type_))
        .cloned();
    let candidate = match finding {
        Finding::Admitted { record, .. } | Finding::Refused { record, .. } => Some(record.clone()),
        Finding::Verifying { inputs } => Some(CandidateRevision {
            inputs: inputs.clone(),
            ..CandidateRevision::default()
        }),
        // The candidate revision is derived from the target: without one, nothing stands.
        Finding::TargetNotFound { .. } | Finding::NotApplicable(_) => None,
        Finding::Aborted => current.candidate.clone(),
    };
    CanaryStatus {
        observed_generation: generation,
        conditions: merge_conditions(
            &current.conditions,
            ours.into_iter().chain(others).collect(),
        ),
        phase,
        candidate,
        ..traffic
    }
}

/// A condition of `current` as (status, reason, message).
fn kept(current: &CanaryStatus, type_: &str) -> Option<ConditionContent> {
    find_condition(&current.conditions, type_)
        .map(|c| (c.status, c.reason.clone(), c.message.clone()))
}

/// `current` with no traffic on the candidate (the last analysis stays for the record).
fn without_traffic(current: &CanaryStatus) -> CanaryStatus {
    CanaryStatus {
        weight: 0,
        step_started_at: None,
        next_analysis_at: None,
        ..current.clone()
    }
}

type ConditionContent = (ConditionStatus, String, String);

fn phase_of(finding: &Finding) -> (CanaryPhase, ConditionContent) {
    let not = |reason: &str, message: String| (ConditionStatus::False, reason.to_owned(), message);
    match finding {
        Finding::TargetNotFound { target } => (
            CanaryPhase::Pending,
            not(
                TARGET_NOT_FOUND,
                format!("ModelDeployment {target:?} does not exist in this namespace; the candidate is checked once it does"),
            ),
        ),
        Finding::NotApplicable(problem) => (
            CanaryPhase::Failed,
            not(CANDIDATE_NOT_APPLICABLE, problem.to_string()),
        ),
        Finding::Aborted => (
            CanaryPhase::RolledBack,
            not(
                ABORTED,
                "spec.abort is set: the candidate gets no traffic and the stable revision serves every request".into(),
            ),
        ),
        Finding::Verifying { .. } => (
            CanaryPhase::Verifying,
            (ConditionStatus::True, VERIFYING.into(), "resolving and verifying the candidate's runtime image and model".into()),
        ),
        Finding::Refused { verified, retry: true, .. } => (
            CanaryPhase::Verifying,
            (ConditionStatus::True, VERIFYING.into(), format!("verification is retried with backoff: {}", verified.message)),
        ),
        Finding::Refused { .. } => (
            CanaryPhase::Failed,
            not(
                VERIFICATION_FAILED,
                "the candidate failed verification under Enforce and gets no traffic; publish a valid signature or change the candidate (it is checked again periodically)".into(),
            ),
        ),
        Finding::Admitted { record, .. } => (
            CanaryPhase::Pending,
            (
                ConditionStatus::True,
                ADMITTED.into(),
                format!("the candidate is admitted ({})", pinned_summary(record)),
            ),
        ),
    }
}

fn verified_of(finding: &Finding) -> Option<ConditionContent> {
    match finding {
        Finding::TargetNotFound { .. } => Some((
            ConditionStatus::Unknown,
            TARGET_NOT_FOUND.into(),
            "the candidate revision depends on the target's spec".into(),
        )),
        Finding::NotApplicable(problem) => Some((
            ConditionStatus::Unknown,
            CANDIDATE_NOT_APPLICABLE.into(),
            problem.to_string(),
        )),
        Finding::Aborted => None,
        Finding::Verifying { .. } => Some((
            ConditionStatus::Unknown,
            VERIFYING.into(),
            "resolving tags to digests and verifying signatures".into(),
        )),
        Finding::Admitted { verified, .. } | Finding::Refused { verified, .. } => Some((
            verified.status,
            verified.reason.clone(),
            verified.message.clone(),
        )),
    }
}

fn pinned_summary(record: &CandidateRevision) -> String {
    let mut summary = format!(
        "image {}",
        record.image_digest.as_deref().unwrap_or("unknown")
    );
    if let Some(model) = &record.model_digest {
        summary.push_str(&format!(", model {model}"));
    }
    summary
}

use crate::controller::event;

/// Events for what changed between `before` and `after`: a verification verdict (for a new
/// candidate, or a different one for the same candidate) and a change of `Progressing`.
pub fn events(before: &CanaryStatus, after: &CanaryStatus) -> Vec<Event> {
    let mut events = Vec::new();
    let changed = |type_: &str| {
        let old = find_condition(&before.conditions, type_);
        let new = find_condition(&after.conditions, type_)?;
        old.is_none_or(|o| o.status != new.status || o.reason != new.reason)
            .then_some(new)
    };
    let new_inputs =
        before.candidate.as_ref().map(|c| &c.inputs) != after.candidate.as_ref().map(|c| &c.inputs);
    let verified = find_condition(&after.conditions, condition_types::VERIFIED)
        .filter(|_| new_inputs)
        .or_else(|| changed(condition_types::VERIFIED));
    if let Some(event) = verified.and_then(|c| verification_event(c, after.phase)) {
        events.push(event);
    }
    if let Some(progressing) = changed(condition_types::PROGRESSING) {
        let type_ = match progressing.reason.as_str() {
            // The verification Event tells these.
            VERIFYING | VERIFICATION_FAILED => None,
            TARGET_NOT_FOUND
            | CANDIDATE_NOT_APPLICABLE
            | progress::ANALYSIS_FAILED
            | progress::INCONCLUSIVE_LIMIT
            | progress::METRICS_UNAVAILABLE
            | progress::INVALID_SPEC
            | progress::QUOTA_NOT_ADMITTED
            | progress::NOT_SPLITTABLE => Some(EventType::Warning),
            _ => Some(EventType::Normal),
        };
        if let Some(type_) = type_ {
            let note = progressing.message.clone();
            events.push(event(type_, &progressing.reason, note, "Canary"));
        }
    }
    let stepped = before.step != after.step || before.step_started_at != after.step_started_at;
    if stepped && after.step_started_at.is_some() && after.phase == CanaryPhase::Progressing {
        // One action per step: the event recorder folds Events of one action and reason into
        // a series that keeps the first note, which would hide every later step.
        events.push(event(
            EventType::Normal,
            "StepStarted",
            format!("step {}: weight {}%", after.step + 1, after.weight),
            &format!("Step{}", after.step + 1),
        ));
    }
    let analysed = before.last_analysis.as_ref().map(|a| &a.time)
        != after.last_analysis.as_ref().map(|a| &a.time);
    if let (true, Some(analysis)) = (
        analysed,
        find_condition(&after.conditions, condition_types::ANALYSIS_PASSING),
    ) {
        let type_ = match analysis.status {
            ConditionStatus::False => EventType::Warning,
            _ => EventType::Normal,
        };
        let reason = format!("Analysis{}", analysis.reason);
        events.push(event(type_, &reason, analysis.message.clone(), "Analyze"));
    }
    events
}

fn verification_event(verified: &Condition, phase: CanaryPhase) -> Option<Event> {
    let message = &verified.message;
    match (verified.status, phase) {
        (ConditionStatus::True, _) => Some(event(
            EventType::Normal,
            "Verified",
            format!("candidate {message}"),
            "Verify",
        )),
        (ConditionStatus::False, CanaryPhase::Verifying) => Some(event(
            EventType::Warning,
            &verified.reason,
            format!("candidate not verified yet, retrying with backoff: {message}"),
            "Verify",
        )),
        (ConditionStatus::False, CanaryPhase::Failed) => Some(event(
            EventType::Warning,
            &verified.reason,
            format!("candidate refused, it gets no traffic: {message}"),
            "Verify",
        )),
        // Any other phase follows an admission (Audit mode).
        (ConditionStatus::False, _) => Some(event(
            EventType::Warning,
            &verified.reason,
            format!("audit mode, candidate admitted unverified: {message}"),
            "Verify",
        )),
        (ConditionStatus::Unknown, _) => None,
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
