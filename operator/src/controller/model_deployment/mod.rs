//! The ModelDeployment controller: owned ConfigMap, Deployment, Service and
//! PodDisruptionBudget, and the status.
//!
//! Reconcile reads like the story it tells: check what the spec refers to,
//! compute the desired objects, write only what differs, assess, and write the
//! status only when it changed.

mod admission;
mod canary;
mod gate;
mod status;
mod sync;
mod unsupported;
mod watch;

#[cfg(test)]
mod quota_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod verify_tests;

use std::{sync::Arc, time::Duration};

use k8s_openapi::{
    api::core::v1::{PersistentVolumeClaim, Secret},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{Event, EventType},
    },
};
use modelplane_api::model_deployment::{ModelDeployment, Revision};
use serde_json::json;

use crate::{
    Error, Result,
    controller::{Context, cached},
    desired::{
        Desired, FIELD_MANAGER, Owner, RUNTIME_CONTAINER, Reference, desired_state, is_candidate,
        rebudgeted_config_map, references, rollout_hash,
    },
    health::{Blocker, Observation, assess, running_image_digest},
    quota::Verdict,
    verification::PinnedRevision,
};

pub use crate::verification::VerifiedCondition;
pub use admission::{Admittee, QuotaView, gate, quota_view, quotas, scoped};
pub use canary::{Promotion, Rollout, mark_promoted, rollout, serving_spec};
pub use gate::{Gate, HELD_RETRY, Holds, Outcome, conclude, effective_mode, held_retry};
pub use status::{
    QuotaCondition, StatusInputs, VERIFIED, change_events, condition_events, next_status,
};
pub use sync::{Change, ChangeAction};
pub use unsupported::{
    FIELDS_IGNORED, NOT_ACTED_ON, UNSUPPORTED_FIELDS, UnsupportedField, unsupported_fields,
};
pub(crate) use watch::recorder;
pub use watch::run;

/// Kind label of this controller in metrics.
pub const KIND: &str = "ModelDeployment";
/// Re-check interval of a healthy object (reads only; nothing is written if nothing changed).
const RESYNC: Duration = Duration::from_secs(300);
/// Re-check interval while a rollout is blocked on something not watched (Secrets, PVCs).
const BLOCKED_RESYNC: Duration = Duration::from_secs(30);
/// Retry interval while the watch caches are still loading.
const CACHE_SYNC_RETRY: Duration = Duration::from_secs(1);
/// Re-check interval while a TenantQuota has not decided this generation yet (its status
/// change triggers a reconcile anyway; this bounds a missed one).
const ADMISSION_PENDING_RETRY: Duration = Duration::from_secs(10);

fn key(md: &ModelDeployment) -> String {
    format!("{}/{}", md.namespace().unwrap_or_default(), md.name_any())
}

/// Reconciles one ModelDeployment; counts and times it in the metrics.
pub async fn reconcile(md: Arc<ModelDeployment>, ctx: Arc<Context>) -> Result<Action> {
    let timer = ctx.metrics.reconcile_started(KIND);
    let result = reconcile_inner(&md, &ctx).await;
    timer.finish(
        result
            .as_ref()
            .map_or_else(Error::metric_label, |_| "success"),
    );
    if result.is_ok() {
        ctx.backoff.succeeded(&key(&md));
    }
    result
}

/// The model name `md`'s fallback ModelDeployment serves, from the cache; `None` (its
/// hop left out of the chain, with a warning) while that one is not there.
fn fallback_model(
    cache: &crate::controller::Cache,
    md: &ModelDeployment,
    namespace: &str,
) -> Option<String> {
    let name = md.spec.fallback.as_ref()?.model_deployment.as_ref()?;
    let model = cached(&cache.model_deployments, namespace, name)
        .and_then(|fallback| fallback.spec.model.as_ref().map(|m| m.name.clone()));
    if model.is_none() {
        tracing::warn!(
            fallback = %name,
            "spec.fallback.modelDeployment is not a ModelDeployment serving a model in this \
             namespace: its hop is left out of the chain"
        );
    }
    model
}

/// Retries a failed reconcile with per-object exponential backoff.
pub fn error_policy(md: Arc<ModelDeployment>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(&key(&md));
    tracing::warn!(object = %key(&md), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

#[tracing::instrument(skip_all, fields(object = %key(md)))]
async fn reconcile_inner(md: &ModelDeployment, ctx: &Context) -> Result<Action> {
    if md.meta().deletion_timestamp.is_some() {
        // Owned objects carry controller ownerReferences: garbage collection removes them.
        return Ok(Action::await_change());
    }
    if !ctx.cache.is_synced() {
        return Ok(Action::requeue(CACHE_SYNC_RETRY));
    }
    let namespace = md
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let quota = quota_view(&ctx.cache, md, &namespace, &key(md));
    let rollout = rollout(md, &ctx.cache.canaries.state());
    let serving = serving_spec(&md.spec, rollout.promotion.as_ref());
    let declared = Owner::new(md, &quota.tenant)
        .ok_or(Error::MissingField("metadata.name/uid"))?
        .with_budget(quota.budget.clone())
        .with_canary(rollout.traffic.clone())
        .with_fallback_model(fallback_model(&ctx.cache, md, &namespace));
    let owner = declared.with_spec(&serving);
    let condition = QuotaCondition::of(&quota.verdict);
    let result = if quota.verdict.rolls_out() {
        converge(ctx, md, &owner, &condition, rollout.promotion.as_ref()).await
    } else {
        hold_for_quota(ctx, md, &owner, &quota.verdict, &condition).await
    };
    match result {
        Ok(action) => Ok(action),
        Err(error) => {
            report_failure(ctx, md, &owner, &error).await;
            Err(error)
        }
    }
}

/// The spec's generation may not roll out under the tenant's quota: what runs stays as it
/// is (its config only takes the tenant's current budget), and the status says why.
async fn hold_for_quota(
    ctx: &Context,
    md: &ModelDeployment,
    owner: &Owner<'_>,
    verdict: &Verdict,
    condition: &QuotaCondition,
) -> Result<Action> {
    let (_, reason, message) = verdict.condition();
    tracing::info!(reason, message, "rollout held by the tenant's quota");
    let serving = cached(
        &ctx.cache.config_maps,
        &owner.namespace,
        &owner.config_map_name(),
    );
    if let Some(config_map) = serving.and_then(|s| rebudgeted_config_map(owner, &s)) {
        let changes = sync::sync_config_map(ctx, &config_map).await?;
        publish(ctx, md, change_events(&changes, false)).await?;
    }
    let running = cached(&ctx.cache.deployments, &owner.namespace, &owner.name).is_some();
    let keeps = if running {
        "; what runs stays as it is"
    } else {
        "; nothing is rolled out"
    };
    let blocker = Blocker {
        reason,
        message: format!("{message}{keeps}"),
    };
    let obstacle = Some(Obstacle::Blocked(&blocker));
    write_status(ctx, md, owner, obstacle, None, None, Some(condition)).await?;
    let retry = match verdict {
        Verdict::Pending { .. } => ADMISSION_PENDING_RETRY,
        _ => RESYNC,
    };
    Ok(Action::requeue(retry))
}

/// Verifies, applies and assesses; any API error is returned for [`report_failure`].
async fn converge(
    ctx: &Context,
    md: &ModelDeployment,
    owner: &Owner<'_>,
    quota: &QuotaCondition,
    promotion: Option<&Promotion>,
) -> Result<Action> {
    let recorded = cached(&ctx.cache.deployments, &owner.namespace, &owner.name)
        .and_then(|deployment| PinnedRevision::read(&deployment));
    let found = look_up_references(ctx, owner).await?;
    let gate = match found.missing {
        Some(blocker) => {
            gate::blocked_by_reference(owner, recorded.as_ref(), &ctx.defaults, blocker)
        }
        None => gate::gate(ctx, &key(md), owner, recorded, &found.versions).await?,
    };
    let (blocker, applied) = match render(ctx, owner, &gate) {
        Ok((desired, mut revision)) => {
            mark_promoted(&mut revision, promotion);
            apply(ctx, md, owner, desired).await?;
            (None, Some(revision))
        }
        Err(blocker) => {
            tracing::info!(reason = blocker.reason, "rollout blocked");
            (Some(blocker), None)
        }
    };
    publish(ctx, md, gate.event.into_iter().collect()).await?;
    let obstacle = blocker.as_ref().map(Obstacle::Blocked);
    write_status(
        ctx,
        md,
        owner,
        obstacle,
        applied,
        gate.verified,
        Some(quota),
    )
    .await?;
    let resync = if blocker.is_some() {
        BLOCKED_RESYNC
    } else {
        RESYNC
    };
    Ok(Action::requeue(gate.requeue.unwrap_or(resync)))
}

/// The objects and the status revision of the pinned revision the gate lets through.
fn render(ctx: &Context, owner: &Owner<'_>, gate: &Gate) -> Result<(Desired, Revision), Blocker> {
    let Some(record) = &gate.render else {
        return Err(gate.blocker.clone().unwrap_or_else(|| Blocker {
            reason: "VerificationPending",
            message: "no verified revision to roll out yet".into(),
        }));
    };
    let spec = record.pin(owner.spec);
    let pinned = owner.with_spec(&spec);
    let mut desired = desired_state(&pinned, &ctx.defaults, record.model_signature.as_ref())?;
    record
        .write(&mut desired.deployment)
        .map_err(|error| Blocker {
            reason: "InvalidRuntimeConfig",
            message: format!("the pinned revision cannot be recorded: {error}"),
        })?;
    let revision = Revision {
        id: Some(rollout_hash(&pinned, &ctx.defaults)),
        model_digest: record.model_digest.clone(),
        image_digest: Some(record.image_digest.clone()),
        verified_at: record.verified_at.clone(),
        ..Revision::default()
    };
    Ok((desired, revision))
}

/// What the Secrets and PVCs the spec names look like now.
struct References {
    /// The first one that does not exist.
    missing: Option<Blocker>,
    /// The Secrets' names and resourceVersions: a changed key or pull secret ends a hold.
    versions: String,
}

/// Checks that every Secret and PVC the spec names exists (metadata only; contents are
/// never read here).
async fn look_up_references(ctx: &Context, owner: &Owner<'_>) -> Result<References> {
    let mut versions = Vec::new();
    for reference in references(owner.spec) {
        let found = match &reference {
            Reference::Secret { name, .. } => {
                let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
                let found = api.get_metadata_opt(name).await?;
                if let Some(secret) = &found {
                    let version = secret.metadata.resource_version.as_deref().unwrap_or("");
                    versions.push(format!("{name}@{version}"));
                }
                found.is_some()
            }
            Reference::PersistentVolumeClaim { name } => {
                let api: Api<PersistentVolumeClaim> =
                    Api::namespaced(ctx.client.clone(), &owner.namespace);
                api.get_metadata_opt(name).await?.is_some()
            }
        };
        if !found {
            return Ok(References {
                missing: Some(reference.missing(&owner.namespace)),
                versions: versions.join(","),
            });
        }
    }
    Ok(References {
        missing: None,
        versions: versions.join(","),
    })
}

/// Reports a failed reconcile where `kubectl get`/`describe` show it: `Ready=False` with
/// the reason and the API server's message (cleared by the next reconcile that succeeds),
/// and a Warning Event. Best effort: the failure itself is retried with backoff.
async fn report_failure(ctx: &Context, md: &ModelDeployment, owner: &Owner<'_>, error: &Error) {
    let blocker = Blocker {
        reason: error.condition_reason(),
        message: error.to_string(),
    };
    let obstacle = Some(Obstacle::Failed(&blocker));
    let written = write_status(ctx, md, owner, obstacle, None, None, None).await;
    if let Err(status_error) = written {
        tracing::warn!(error = %status_error, "the failure could not be written to the status");
        let warning = status::event(
            EventType::Warning,
            blocker.reason,
            blocker.message,
            "Reconcile",
        );
        if let Err(event_error) = publish(ctx, md, vec![warning]).await {
            tracing::warn!(error = %event_error, "the failure could not be published as an Event");
        }
    }
}

/// Writes what differs and publishes an Event per kind of write.
async fn apply(
    ctx: &Context,
    md: &ModelDeployment,
    owner: &Owner<'_>,
    desired: Desired,
) -> Result<()> {
    let before = cached(&ctx.cache.deployments, &owner.namespace, &owner.name);
    let template_hash = |d: &k8s_openapi::api::apps::v1::Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(crate::desired::ROLLOUT_HASH_ANNOTATION).cloned())
    };
    let rolled = before
        .as_deref()
        .is_some_and(|b| template_hash(b) != template_hash(&desired.deployment));
    let changes = sync::sync_owned(ctx, owner, desired).await?;
    publish(ctx, md, change_events(&changes, rolled)).await
}

async fn publish(ctx: &Context, md: &ModelDeployment, events: Vec<Event>) -> Result<()> {
    let reference = md.object_ref(&());
    for event in events {
        ctx.recorder.publish(&event, &reference).await?;
    }
    Ok(())
}

/// What kept the reconcile from bringing the cluster to the spec.
#[derive(Clone, Copy)]
enum Obstacle<'a> {
    /// The rollout is held (a missing Secret, a refused signature): what runs may still serve.
    Blocked(&'a Blocker),
    /// The reconcile failed: the model is not Ready whatever its pods say (what serves no
    /// longer matches the spec, or cannot be reached).
    Failed(&'a Blocker),
}

impl<'a> Obstacle<'a> {
    fn blocker(self) -> &'a Blocker {
        match self {
            Obstacle::Blocked(blocker) | Obstacle::Failed(blocker) => blocker,
        }
    }
}

/// Assesses the observed state and patches the status subresource if it changed.
async fn write_status(
    ctx: &Context,
    md: &ModelDeployment,
    owner: &Owner<'_>,
    obstacle: Option<Obstacle<'_>>,
    applied: Option<Revision>,
    verified: Option<VerifiedCondition>,
    quota: Option<&QuotaCondition>,
) -> Result<()> {
    let deployment = cached(&ctx.cache.deployments, &owner.namespace, &owner.name);
    // A runtime-image candidate's pods are the Canary's to judge, not the target's health.
    let pods: Vec<_> = ctx
        .cache
        .pods_of(&owner.namespace, &owner.name)
        .into_iter()
        .filter(|pod| !is_candidate(pod))
        .collect();
    let mut assessment = assess(&Observation {
        desired_replicas: md.spec.runtime.replicas,
        deployment: deployment.as_deref(),
        pods: &pods,
        blocker: obstacle.map(Obstacle::blocker),
    });
    if let Some(Obstacle::Failed(blocker)) = obstacle {
        status::not_ready(&mut assessment, blocker);
    }
    let current = md.status.clone().unwrap_or_default();
    let next = next_status(
        &current,
        &assessment,
        StatusInputs {
            generation: md.meta().generation,
            tenant: owner.tenant,
            service_host: owner.service_host(),
            applied,
            image_digest: running_image_digest(&pods, RUNTIME_CONTAINER),
            verified,
            unsupported: unsupported_fields(&md.spec),
            quota: quota.cloned(),
            selector: owner.selector(),
            now: Time(Timestamp::now()),
        },
    );
    if next == current {
        return Ok(());
    }
    let api: Api<ModelDeployment> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let patch = json!({
        "apiVersion": ModelDeployment::api_version(&()),
        "kind": ModelDeployment::kind(&()),
        "status": next,
    });
    api.patch_status(
        &owner.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    publish(
        ctx,
        md,
        condition_events(&current.conditions, &next.conditions),
    )
    .await
}
