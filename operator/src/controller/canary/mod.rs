//! The Canary controller, first stage: candidate verification. No candidate ever gets
//! traffic unverified: the candidate revision (the target's spec with the candidate's model
//! source or runtime image) is resolved to digests and verified with the target's keys, mode
//! and pull secrets, exactly like a ModelDeployment rollout, and the pinned digests are
//! recorded in `status.candidate`.
//!
//! Traffic shifting, analysis and promotion are not implemented yet: an admitted candidate
//! stays `Pending` with `Progressing=False`, reason `TrafficShiftingUnavailable`.
//!
//! Reconcile: plan (pure, [`plan`]), verify if the plan says so, write the status
//! only when it changed, publish an Event per decision.

mod candidate;
mod check;
mod decision;
mod watch;

#[cfg(test)]
mod tests;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{controller::Action, events::Recorder, reflector::Store},
};
use modelplane_api::{
    canary::{Canary, CanaryStatus},
    model_deployment::ModelDeployment,
};
use serde_json::json;

use crate::{
    Error, Result,
    controller::{Backoff, cached, model_deployment::held_retry},
    desired::FIELD_MANAGER,
    metrics::Metrics,
    verification::ArtifactVerifier,
};

pub use candidate::{NotApplicable, candidate_spec};
pub use check::Holds;
pub use decision::{
    ABORTED, CANDIDATE_NOT_APPLICABLE, Finding, Plan, TARGET_NOT_FOUND,
    TRAFFIC_SHIFTING_UNAVAILABLE, VERIFICATION_FAILED, VERIFYING, Verification, events, finding_of,
    next_status, plan,
};
pub use watch::{canaries_targeting, run};

/// Kind label of this controller in metrics.
pub const KIND: &str = "Canary";
/// Re-check interval of a settled Canary (reads the watch cache only).
const RESYNC: Duration = Duration::from_secs(300);
/// Re-check interval of a candidate refused for a Secret problem (Secrets are not watched).
const SECRET_RETRY: Duration = Duration::from_secs(30);
/// Retry interval while the target cache is still loading.
const CACHE_SYNC_RETRY: Duration = Duration::from_secs(1);
/// Refusals a Secret change fixes, so they are re-checked sooner.
const SECRET_REASONS: [&str; 3] = ["SecretNotFound", "InvalidPullSecret", "KeyMissing"];

/// What every Canary reconcile gets.
pub struct Context {
    /// API client for Secrets, status and Events.
    pub client: Client,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// Runtime image of a target that names none.
    pub default_image: String,
    /// Resolves and verifies candidate revisions (shared with the ModelDeployment controller,
    /// and so is its result cache).
    pub verifier: Arc<dyn ArtifactVerifier>,
    /// The ModelDeployments a Canary may target, from a watch.
    pub targets: Store<ModelDeployment>,
    /// Retry delays after failed reconciles and unreachable registries.
    pub backoff: Backoff,
    /// Candidates refused recently, not re-checked until their hold ends.
    pub holds: Holds,
}

fn key(canary: &Canary) -> String {
    format!(
        "{}/{}",
        canary.namespace().unwrap_or_default(),
        canary.name_any()
    )
}

/// Reconciles one Canary; counts and times it in the metrics.
pub async fn reconcile(canary: Arc<Canary>, ctx: Arc<Context>) -> Result<Action> {
    let timer = ctx.metrics.reconcile_started(KIND);
    let result = reconcile_inner(&canary, &ctx).await;
    timer.finish(
        result
            .as_ref()
            .map_or_else(Error::metric_label, |_| "success"),
    );
    if result.is_ok() {
        ctx.backoff.succeeded(&key(&canary));
    }
    result
}

/// Retries a failed reconcile with per-object exponential backoff.
pub fn error_policy(canary: Arc<Canary>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(&key(&canary));
    tracing::warn!(object = %key(&canary), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

#[tracing::instrument(skip_all, fields(object = %key(canary)))]
async fn reconcile_inner(canary: &Canary, ctx: &Context) -> Result<Action> {
    if canary.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if futures::FutureExt::now_or_never(ctx.targets.wait_until_ready()).is_none_or(|r| r.is_err()) {
        return Ok(Action::requeue(CACHE_SYNC_RETRY));
    }
    let namespace = canary
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let target = cached(&ctx.targets, &namespace, &canary.spec.target_ref.name);
    let mut current = canary.status.clone().unwrap_or_default();
    let plan = plan(
        &canary.spec,
        target.as_ref().map(|t| &t.spec),
        &current,
        &ctx.default_image,
    );
    let (finding, requeue) = match plan {
        Plan::Report(finding) => (finding, None),
        Plan::Verify {
            spec,
            inputs,
            refused,
        } => {
            let held = ctx.holds.remaining(&key(canary), &inputs, Instant::now());
            match (refused, held) {
                (Some(refused), Some(remaining)) => (refused, Some(remaining)),
                (refused, _) => {
                    if refused.is_none() {
                        let verifying = Finding::Verifying {
                            inputs: inputs.clone(),
                        };
                        current = write_status(ctx, canary, &current, &verifying).await?;
                    }
                    let finding = check::verify(ctx, &namespace, &spec, &inputs).await?;
                    let delay = hold_after(ctx, &key(canary), &inputs, &finding);
                    (finding, delay)
                }
            }
        }
    };
    write_status(ctx, canary, &current, &finding).await?;
    Ok(Action::requeue(requeue.unwrap_or(RESYNC)))
}

/// Holds a refused candidate until its next check and returns the delay; releases an admitted one.
fn hold_after(ctx: &Context, key: &str, inputs: &str, finding: &Finding) -> Option<Duration> {
    let registry_key = format!("{key}#registry");
    let Finding::Refused {
        verified, retry, ..
    } = finding
    else {
        ctx.holds.release(key);
        ctx.backoff.succeeded(&registry_key);
        return None;
    };
    let delay = if *retry {
        ctx.backoff.failed(&registry_key)
    } else if SECRET_REASONS.contains(&verified.reason.as_str()) {
        SECRET_RETRY
    } else {
        held_retry(ctx.backoff.failed(&registry_key))
    };
    ctx.holds.hold(key, inputs, delay);
    Some(delay)
}

/// Applies the status reporting `finding` if it differs from `current`, then its Events;
/// returns the status now in effect.
async fn write_status(
    ctx: &Context,
    canary: &Canary,
    current: &CanaryStatus,
    finding: &Finding,
) -> Result<CanaryStatus> {
    let now = Time(Timestamp::now());
    let next = next_status(current, finding, canary.meta().generation, &now);
    if &next == current {
        return Ok(next);
    }
    let namespace = canary
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<Canary> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = json!({
        "apiVersion": Canary::api_version(&()),
        "kind": Canary::kind(&()),
        "status": next,
    });
    api.patch_status(
        &canary.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    let reference = canary.object_ref(&());
    for event in events(current, &next) {
        ctx.recorder.publish(&event, &reference).await?;
    }
    Ok(next)
}
