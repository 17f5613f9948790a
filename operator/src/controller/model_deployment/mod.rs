//! The ModelDeployment controller: owned ConfigMap, Deployment, Service and
//! PodDisruptionBudget, and the status.
//!
//! Reconcile reads like the story it tells: check what the spec refers to,
//! compute the desired objects, write only what differs, assess, and write the
//! status only when it changed.

mod gate;
mod status;
mod sync;
mod watch;

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
    runtime::{controller::Action, events::Event},
};
use modelplane_api::model_deployment::{ModelDeployment, Revision};
use serde_json::json;

use crate::{
    Error, Result,
    controller::{Context, cached},
    desired::{
        Desired, FIELD_MANAGER, Owner, RUNTIME_CONTAINER, Reference, desired_state, references,
        rollout_hash, tenant_of,
    },
    health::{Blocker, Observation, assess, running_image_digest},
    verification::PinnedRevision,
};

pub use gate::{Gate, HELD_RETRY, Holds, Outcome, VerifiedCondition, conclude, effective_mode};
pub use status::{StatusInputs, VERIFIED, change_events, condition_events, next_status};
pub use sync::{Change, ChangeAction};
pub use watch::run;

/// Kind label of this controller in metrics.
pub const KIND: &str = "ModelDeployment";
/// Re-check interval of a healthy object (reads only; nothing is written if nothing changed).
const RESYNC: Duration = Duration::from_secs(300);
/// Re-check interval while a rollout is blocked on something not watched (Secrets, PVCs).
const BLOCKED_RESYNC: Duration = Duration::from_secs(30);
/// Retry interval while the watch caches are still loading.
const CACHE_SYNC_RETRY: Duration = Duration::from_secs(1);

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
    let labels = ctx.cache.namespace_labels(&namespace);
    let tenant = tenant_of(&md.spec, &namespace, labels.as_ref());
    let owner = Owner::new(md, &tenant).ok_or(Error::MissingField("metadata.name/uid"))?;

    let recorded = cached(&ctx.cache.deployments, &namespace, &owner.name)
        .and_then(|deployment| PinnedRevision::read(&deployment));
    let gate = match missing_reference(ctx, &owner).await? {
        Some(blocker) => Gate::blocked(blocker),
        None => gate::gate(ctx, &key(md), &owner, recorded).await?,
    };
    let (blocker, applied) = match render(ctx, &owner, &gate) {
        Ok((desired, revision)) => {
            apply(ctx, md, &owner, desired).await?;
            (None, Some(revision))
        }
        Err(blocker) => {
            tracing::info!(reason = blocker.reason, "rollout blocked");
            (Some(blocker), None)
        }
    };
    publish(ctx, md, gate.event.into_iter().collect()).await?;
    write_status(ctx, md, &owner, blocker.as_ref(), applied, gate.verified).await?;
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

/// The first Secret or PVC the spec names that does not exist.
async fn missing_reference(ctx: &Context, owner: &Owner<'_>) -> Result<Option<Blocker>> {
    for reference in references(owner.spec) {
        let exists = match &reference {
            Reference::Secret { name, .. } => {
                let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
                api.get_metadata_opt(name).await?.is_some()
            }
            Reference::PersistentVolumeClaim { name } => {
                let api: Api<PersistentVolumeClaim> =
                    Api::namespaced(ctx.client.clone(), &owner.namespace);
                api.get_metadata_opt(name).await?.is_some()
            }
        };
        if !exists {
            return Ok(Some(reference.missing(&owner.namespace)));
        }
    }
    Ok(None)
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

/// Assesses the observed state and patches the status subresource if it changed.
async fn write_status(
    ctx: &Context,
    md: &ModelDeployment,
    owner: &Owner<'_>,
    blocker: Option<&Blocker>,
    applied: Option<Revision>,
    verified: Option<VerifiedCondition>,
) -> Result<()> {
    let deployment = cached(&ctx.cache.deployments, &owner.namespace, &owner.name);
    let pods = ctx.cache.pods_of(&owner.namespace, &owner.name);
    let assessment = assess(&Observation {
        desired_replicas: md.spec.runtime.replicas,
        deployment: deployment.as_deref(),
        pods: &pods,
        blocker,
    });
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
