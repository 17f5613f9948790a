//! The Canary controller. No candidate ever gets traffic unverified: the candidate revision
//! (the target's spec with the candidate's model source or runtime image) is resolved to
//! digests and verified with the target's keys, mode and pull secrets, exactly like a
//! ModelDeployment rollout, and the pinned digests are recorded in `status.candidate`.
//!
//! An admitted candidate then rolls out ([`progress`]): each step's weight goes into the
//! Canary's status, the target's ModelDeployment controller renders the candidate beside
//! stable with that weight into its runtime config (every runtime pod routes by it, see
//! `modelplane_config::CanaryConfig`), and every `analysis.interval` the candidate is
//! judged against stable ([`analyze`]). Promotion asks the target to serve the candidate as
//! its revision; the Canary succeeds once it does.
//!
//! Reconcile: plan (pure, [`plan`]), verify if the plan says so, advance the rollout (pure,
//! [`advance`], after reading the metrics if an analysis is due), write the status only
//! when it changed, publish an Event per decision.

pub(crate) mod analyze;
mod candidate;
mod check;
mod decision;
pub mod progress;
mod watch;
mod window;

#[cfg(test)]
mod tests;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::core::v1::Namespace, apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{controller::Action, events::Recorder, reflector::Store},
};
use modelplane_api::{
    canary::{
        Canary, CanaryPhase, CanaryStatus, CandidateRevision, MetricResult, Promotion, SpecChange,
        Verdict,
    },
    condition::{ConditionStatus, find_condition},
    model_deployment::{ModelDeployment, condition_types as md_conditions},
    tenant_quota::TenantQuota,
};
use serde_json::json;

use crate::{
    Error, Result,
    controller::{
        Backoff, cached,
        model_deployment::{Admittee, gate, held_retry, scoped},
    },
    desired::FIELD_MANAGER,
    metrics::Metrics,
    quota::{Verdict as QuotaVerdict, canary_entry_name},
    verification::ArtifactVerifier,
};

pub use analyze::{Analyzer, Subject};
pub use candidate::{NotApplicable, candidate_spec};
pub use check::Holds;
pub use decision::{
    ABORTED, ADMITTED, CANDIDATE_NOT_APPLICABLE, Finding, Plan, TARGET_NOT_FOUND,
    VERIFICATION_FAILED, VERIFYING, Verification, events, finding_of, next_status, plan,
};
pub use progress::{Advance, Interval, Observed, advance, analysis_due, gets_traffic, overall};
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
    /// Every TenantQuota, from a watch (a runtime-image candidate's pods need admission).
    pub quotas: Store<TenantQuota>,
    /// Retry delays after failed reconciles and unreachable registries.
    pub backoff: Backoff,
    /// Candidates refused recently, not re-checked until their hold ends.
    pub holds: Holds,
    /// Reads and judges the candidate's metrics.
    pub analyzer: Arc<Analyzer>,
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
        ctx.analyzer.forget(&key(canary));
        ctx.metrics
            .forget_canary(&canary.namespace().unwrap_or_default(), &canary.name_any());
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
                        current = write_status(ctx, canary, &current, &verifying, None).await?;
                    }
                    let finding = check::verify(ctx, &namespace, &spec, &inputs).await?;
                    let delay = hold_after(ctx, &key(canary), &inputs, &finding);
                    (finding, delay)
                }
            }
        }
    };
    let advance = match &finding {
        Finding::Admitted { record, .. } => {
            Some(roll(ctx, canary, target.as_deref(), &current, record).await)
        }
        _ => {
            ctx.analyzer.forget(&key(canary));
            None
        }
    };
    let written = write_status(ctx, canary, &current, &finding, advance.as_ref()).await?;
    ctx.metrics.set_canary(
        &namespace,
        &canary.name_any(),
        phase_name(written.phase),
        written.weight,
    );
    let requeue = [requeue, advance.map(|a| a.requeue)]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(RESYNC);
    Ok(Action::requeue(requeue))
}

/// One reconcile of an admitted candidate's rollout: read what it depends on (the target,
/// the metrics when an analysis is due), then [`advance`].
async fn roll(
    ctx: &Context,
    canary: &Canary,
    target: Option<&ModelDeployment>,
    current: &CanaryStatus,
    record: &CandidateRevision,
) -> Advance {
    let now = Timestamp::now();
    let fresh = current.candidate.as_ref().map(|c| &c.inputs) != Some(&record.inputs);
    let quota_hold = match target {
        // Only the first step waits for the quota.
        Some(target) if current.step_started_at.is_none() || fresh => {
            quota_hold(ctx, canary, target).await
        }
        _ => None,
    };
    let due = !fresh && current.phase != CanaryPhase::Promoting && analysis_due(current, now);
    let analysis = match (due, target) {
        (true, Some(target)) => Some(run_analysis(ctx, canary, target).await),
        _ => None,
    };
    if let Some(Interval::Judged(results)) = &analysis {
        let namespace = canary.namespace().unwrap_or_default();
        for result in results {
            let verdict = format!("{:?}", result.verdict);
            ctx.metrics
                .count_verdict(&namespace, &canary.name_any(), &result.name, &verdict);
        }
    }
    let seen = Observed {
        now,
        quota_hold,
        promoted: target.is_some_and(|t| promoted(canary, t, record)),
        analysis,
    };
    let mut advance = advance(&canary.spec, current, fresh, &seen);
    if advance.status.phase == CanaryPhase::Succeeded && current.phase != CanaryPhase::Succeeded {
        advance.status.promotion = Some(promotion(canary, target, now));
    }
    let stepped = advance.status.step_started_at != current.step_started_at;
    if let (true, Some(target)) = (stepped && gets_traffic(&advance.status), target) {
        // The next interval is compared with what the pods count from here.
        if let Some(subject) = subject(canary, target, None) {
            ctx.analyzer
                .baseline(&ctx.client, &canary.spec, &subject)
                .await;
        }
    }
    advance
}

/// Why the quota does not admit the candidate yet, if it does not: the target's
/// `QuotaAdmitted` is False, or (a runtime-image candidate, whose own pods the TenantQuota
/// controller admits like a ModelDeployment) its pods are refused or not decided yet. Read
/// from the quota cache; the namespace's labels from the API (only before the first step).
async fn quota_hold(ctx: &Context, canary: &Canary, target: &ModelDeployment) -> Option<String> {
    let refused = target
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, md_conditions::QUOTA_ADMITTED))
        .is_some_and(|c| c.status == ConditionStatus::False);
    if refused {
        return Some("the target's QuotaAdmitted is False".into());
    }
    canary.spec.candidate.runtime.as_ref()?;
    let synced = futures::FutureExt::now_or_never(ctx.quotas.wait_until_ready())
        .is_some_and(|ready| ready.is_ok());
    if !synced {
        // An empty cache would read as "not limited".
        return Some("the TenantQuotas are still being read".into());
    }
    let namespace = canary.namespace()?;
    let labels = match Api::<Namespace>::all(ctx.client.clone())
        .get_opt(&namespace)
        .await
    {
        Ok(found) => found.and_then(|ns| ns.metadata.labels),
        Err(error) => return Some(format!("namespace {namespace} cannot be read: {error}")),
    };
    let key = canary_entry_name(&namespace, &canary.name_any());
    let subject = Admittee {
        key: &key,
        uid: canary.metadata.uid.as_deref().unwrap_or_default(),
        generation: canary.metadata.generation.unwrap_or_default(),
        current: None,
    };
    let (_, verdict) = gate(
        &scoped(ctx.quotas.state()),
        &target.spec,
        &namespace,
        labels.as_ref(),
        &subject,
    );
    match verdict {
        QuotaVerdict::NotLimited { .. } | QuotaVerdict::Admitted { .. } => None,
        QuotaVerdict::Refused { message, .. } | QuotaVerdict::Pending { message } => Some(format!(
            "the candidate's own pods (a second Deployment beside the target's): {message}"
        )),
    }
}

/// Reads the metrics of the interval that ends now and judges them.
async fn run_analysis(ctx: &Context, canary: &Canary, target: &ModelDeployment) -> Interval {
    let namespace = canary.namespace().unwrap_or_default();
    let versions = match analyze::versions(&ctx.client, &namespace, &target.name_any()).await {
        Ok(versions) => versions,
        Err(error) => {
            return Interval::SourceError(format!(
                "reading the runtime config of ModelDeployment {}: {error}",
                target.name_any()
            ));
        }
    };
    match subject(canary, target, versions) {
        Some(subject) if !subject.candidate.is_empty() => {
            ctx.analyzer
                .analyze(&ctx.client, &canary.spec, &subject)
                .await
        }
        _ => Interval::Judged(vec![MetricResult {
            name: "traffic".into(),
            stable: None,
            candidate: None,
            stable_samples: None,
            candidate_samples: None,
            verdict: Verdict::Inconclusive,
            message: Some(format!(
                "the runtime config of ModelDeployment {} does not route to the candidate yet",
                target.name_any()
            )),
        }]),
    }
}

/// What the analysis reads: the target's model and, once its runtime config routes to the
/// candidate, the stable and candidate version labels.
fn subject(
    canary: &Canary,
    target: &ModelDeployment,
    versions: Option<(String, String, String)>,
) -> Option<Subject> {
    let model = target.spec.model.as_ref()?.name.clone();
    let (model, stable, candidate) = versions.unwrap_or((model, String::new(), String::new()));
    Some(Subject {
        key: key(canary),
        namespace: canary.namespace()?,
        target: target.name_any(),
        model,
        stable,
        candidate,
    })
}

/// Whether `target` serves this canary's candidate as its revision at its current generation.
fn promoted(canary: &Canary, target: &ModelDeployment, record: &CandidateRevision) -> bool {
    let Some(revision) = target.status.as_ref().and_then(|s| s.revision.as_ref()) else {
        return false;
    };
    revision.promoted_by.as_deref() == Some(canary.name_any().as_str())
        && revision.promoted_generation == target.metadata.generation
        && (record.model_digest.is_none() || revision.model_digest == record.model_digest)
}

/// The promotion record: when, at which target generation, and what to commit to Git.
fn promotion(canary: &Canary, target: Option<&ModelDeployment>, now: Timestamp) -> Promotion {
    let candidate = &canary.spec.candidate;
    let json = |value: serde_json::Result<String>| value.unwrap_or_default();
    let mut changes = Vec::new();
    if let Some(model) = &candidate.model {
        changes.push(SpecChange {
            field: "spec.model.source".into(),
            value: json(serde_json::to_string(&model.source)),
        });
        if let Some(format) = &model.format {
            changes.push(SpecChange {
                field: "spec.model.format".into(),
                value: json(serde_json::to_string(format)),
            });
        }
        if let Some(tokenizer) = &model.tokenizer {
            changes.push(SpecChange {
                field: "spec.model.tokenizer".into(),
                value: json(serde_json::to_string(tokenizer)),
            });
        }
    }
    if let Some(runtime) = &candidate.runtime {
        changes.push(SpecChange {
            field: "spec.runtime.image".into(),
            value: json(serde_json::to_string(&runtime.image)),
        });
    }
    if let Some(prompts) = &candidate.prompts {
        changes.push(SpecChange {
            field: "spec.prompts".into(),
            value: json(serde_json::to_string(prompts)),
        });
    }
    Promotion {
        time: Some(Time(now)),
        target_generation: target.and_then(|t| t.metadata.generation),
        changes,
    }
}

fn phase_name(phase: CanaryPhase) -> &'static str {
    match phase {
        CanaryPhase::Pending => "Pending",
        CanaryPhase::Verifying => "Verifying",
        CanaryPhase::Progressing => "Progressing",
        CanaryPhase::Paused => "Paused",
        CanaryPhase::Promoting => "Promoting",
        CanaryPhase::Succeeded => "Succeeded",
        CanaryPhase::RolledBack => "RolledBack",
        CanaryPhase::Failed => "Failed",
    }
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
    advance: Option<&Advance>,
) -> Result<CanaryStatus> {
    let now = Time(Timestamp::now());
    let next = next_status(current, finding, advance, canary.meta().generation, &now);
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
