//! Status of a ModelDeployment: a pure function of what the cluster shows.
//!
//! Inputs are the observed Deployment, the runtime pods and what blocked a
//! rollout, if anything; the output is the replica counts and the
//! Ready / Progressing / Degraded conditions with reasons a user can act on.

mod pods;

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use modelplane_api::condition::ConditionStatus;

pub use pods::{MODEL_LOAD_FAILED_EXIT_CODE, PodProblem, running_image_digest, worst_problem};

/// Condition type: the model is served by at least one ready replica.
pub const READY: &str = "Ready";
/// Condition type: a rollout is under way.
pub const PROGRESSING: &str = "Progressing";
/// Condition type: something needs attention.
pub const DEGRADED: &str = "Degraded";

/// Why the operator did not roll the current spec out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    /// CamelCase reason, e.g. `SecretNotFound`.
    pub reason: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Everything the status is computed from.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// `spec.runtime.replicas`.
    pub desired_replicas: i32,
    /// The owned Deployment, if it exists.
    pub deployment: Option<&'a Deployment>,
    /// The runtime pods of this ModelDeployment.
    pub pods: &'a [Pod],
    /// Why the current spec was not rolled out, if it was not.
    pub blocker: Option<&'a Blocker>,
}

/// A condition without its timestamps (those are added when it is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionState {
    /// `Ready`, `Progressing` or `Degraded`.
    pub type_: &'static str,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// CamelCase reason.
    pub reason: &'static str,
    /// Human-readable detail.
    pub message: String,
}

/// The computed status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// Pods the Deployment runs.
    pub replicas: i32,
    /// Pods that pass their readiness probe.
    pub ready_replicas: i32,
    /// Ready, Progressing and Degraded, in that order.
    pub conditions: Vec<ConditionState>,
}

fn condition(
    type_: &'static str,
    holds: bool,
    reason: &'static str,
    message: String,
) -> ConditionState {
    let status = if holds {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    ConditionState {
        type_,
        status,
        reason,
        message,
    }
}

/// Replica counts of a Deployment, all zero when it is missing.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    replicas: i32,
    updated: i32,
    ready: i32,
    available: i32,
    current_generation: bool,
    deadline_exceeded: bool,
    /// The Deployment controller reports its newest ReplicaSet fully available.
    rollout_complete: bool,
}

fn counts(deployment: Option<&Deployment>) -> Counts {
    let Some(deployment) = deployment else {
        return Counts::default();
    };
    let status = deployment.status.clone().unwrap_or_default();
    let progressing = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing");
    let reason = progressing.and_then(|c| c.reason.as_deref());
    let deadline_exceeded = reason == Some("ProgressDeadlineExceeded");
    let rollout_complete = reason == Some("NewReplicaSetAvailable");
    Counts {
        replicas: status.replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        ready: status.ready_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
        current_generation: status.observed_generation >= deployment.metadata.generation,
        deadline_exceeded,
        rollout_complete,
    }
}

/// Computes replica counts and conditions from an observation.
pub fn assess(observation: &Observation<'_>) -> Assessment {
    let desired = observation.desired_replicas;
    let counts = counts(observation.deployment);
    let problem = worst_problem(observation.pods);
    // New pods still starting count as a rollout until the Deployment controller
    // reports the ReplicaSet available; losing pods later is degradation instead.
    let rolling_out = observation.deployment.is_some()
        && (!counts.current_generation
            || counts.updated < desired
            || counts.replicas > counts.updated
            || (counts.available < desired
                && !counts.rollout_complete
                && !counts.deadline_exceeded));
    let ready = ready_condition(observation, &counts, problem.as_ref());
    let progressing = progressing_condition(observation, &counts, rolling_out);
    let degraded = degraded_condition(observation, &counts, problem, rolling_out);
    Assessment {
        replicas: counts.replicas,
        ready_replicas: counts.ready,
        conditions: vec![ready, progressing, degraded],
    }
}

fn ready_condition(
    observation: &Observation<'_>,
    counts: &Counts,
    problem: Option<&PodProblem>,
) -> ConditionState {
    let desired = observation.desired_replicas;
    if counts.available > 0 {
        let message = format!("{} of {desired} replicas ready", counts.ready);
        return condition(READY, true, "Available", message);
    }
    if observation.deployment.is_none() {
        return match observation.blocker {
            Some(blocker) => condition(READY, false, blocker.reason, blocker.message.clone()),
            None => condition(
                READY,
                false,
                "Creating",
                "creating the runtime Deployment".into(),
            ),
        };
    }
    if desired == 0 {
        return condition(
            READY,
            false,
            "ScaledToZero",
            "spec.runtime.replicas is 0".into(),
        );
    }
    match problem {
        Some(problem) => condition(READY, false, problem.reason, problem.message.clone()),
        None => condition(
            READY,
            false,
            "NoReplicasReady",
            format!("0 of {desired} replicas ready; waiting for the model to load"),
        ),
    }
}

fn progressing_condition(
    observation: &Observation<'_>,
    counts: &Counts,
    rolling_out: bool,
) -> ConditionState {
    if let Some(blocker) = observation.blocker {
        return condition(
            PROGRESSING,
            false,
            blocker.reason,
            format!("rollout blocked: {}", blocker.message),
        );
    }
    if observation.deployment.is_none() {
        return condition(
            PROGRESSING,
            true,
            "Creating",
            "creating the runtime Deployment".into(),
        );
    }
    if counts.deadline_exceeded {
        return condition(
            PROGRESSING,
            false,
            "ProgressDeadlineExceeded",
            "the rollout made no progress within its deadline".into(),
        );
    }
    if rolling_out {
        let message = format!(
            "{} of {} replicas updated, {} available",
            counts.updated, observation.desired_replicas, counts.available
        );
        return condition(PROGRESSING, true, "RollingOut", message);
    }
    condition(
        PROGRESSING,
        false,
        "RolloutComplete",
        "all replicas run the current revision".into(),
    )
}

fn degraded_condition(
    observation: &Observation<'_>,
    counts: &Counts,
    problem: Option<PodProblem>,
    rolling_out: bool,
) -> ConditionState {
    if let Some(blocker) = observation.blocker {
        return condition(DEGRADED, true, blocker.reason, blocker.message.clone());
    }
    if let Some(problem) = problem {
        return condition(DEGRADED, true, problem.reason, problem.message);
    }
    if counts.deadline_exceeded {
        return condition(
            DEGRADED,
            true,
            "ProgressDeadlineExceeded",
            "the rollout made no progress within its deadline".into(),
        );
    }
    let desired = observation.desired_replicas;
    if observation.deployment.is_some() && !rolling_out && counts.available < desired {
        let message = format!("{} of {desired} replicas available", counts.available);
        return condition(DEGRADED, true, "ReplicasUnavailable", message);
    }
    condition(DEGRADED, false, "AsExpected", String::new())
}

#[cfg(test)]
mod tests;
