//! Bringing the owned objects to their desired state with the fewest writes.

use std::{fmt::Debug, sync::Arc};

use k8s_openapi::{NamespaceResourceScope, api::core::v1::ConfigMap};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::{
    Error, Result,
    controller::{Context, cached},
    desired::{CandidateWorkload, Desired, FIELD_MANAGER, Owner},
    drift::{Verdict, compare, stamp},
};

/// One write the reconcile made to an owned object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Kind of the object, e.g. `Deployment`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Why it was written.
    pub action: ChangeAction,
}

/// Why an owned object was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeAction {
    /// It did not exist.
    Created,
    /// Our desired state for it changed.
    Updated,
    /// Someone changed the field at this path; it was reverted.
    Reverted(String),
    /// It is no longer wanted.
    Deleted,
}

/// Applies every owned object that is missing, outdated or drifted; returns the writes made.
pub async fn sync_owned(ctx: &Context, owner: &Owner<'_>, desired: Desired) -> Result<Vec<Change>> {
    let ns = owner.namespace.as_str();
    let cache = &ctx.cache;
    let mut changes = Vec::new();
    let config_map = cached(&cache.config_maps, ns, &owner.config_map_name());
    changes.extend(apply_if_needed(ctx, &desired.config_map, config_map).await?);
    let deployment = cached(&cache.deployments, ns, &owner.name);
    changes.extend(apply_if_needed(ctx, &desired.deployment, deployment).await?);
    let service = cached(&cache.services, ns, &owner.name);
    changes.extend(apply_if_needed(ctx, &desired.service, service).await?);
    let budget = cached(&cache.pod_disruption_budgets, ns, &owner.name);
    match desired.pod_disruption_budget {
        Some(wanted) => changes.extend(apply_if_needed(ctx, &wanted, budget).await?),
        None => changes.extend(delete_owned(ctx, owner, budget).await?),
    }
    // Boxed: one more state in this future would overflow a debug build's test stack.
    changes.extend(Box::pin(sync_candidate(ctx, owner, desired.candidate)).await?);
    Ok(changes)
}

/// Applies a runtime-image candidate's Deployment and config, or deletes them once no
/// candidate runs (a rollback takes its pods away at once).
async fn sync_candidate(
    ctx: &Context,
    owner: &Owner<'_>,
    candidate: Option<CandidateWorkload>,
) -> Result<Vec<Change>> {
    let ns = owner.namespace.as_str();
    let cache = &ctx.cache;
    let track = owner.candidate(owner.spec);
    let deployment = cached(&cache.deployments, ns, &track.workload_name());
    let config_map = cached(&cache.config_maps, ns, &track.config_map_name());
    let mut changes = Vec::new();
    match candidate {
        Some(wanted) => {
            // The config first: the new pods start with it.
            changes.extend(apply_if_needed(ctx, &wanted.config_map, config_map).await?);
            changes.extend(apply_if_needed(ctx, &wanted.deployment, deployment).await?);
        }
        None => {
            changes.extend(delete_owned(ctx, owner, deployment).await?);
            changes.extend(delete_owned(ctx, owner, config_map).await?);
        }
    }
    Ok(changes)
}

/// Applies the runtime ConfigMap alone (a held rollout whose config takes a new budget).
pub async fn sync_config_map(ctx: &Context, desired: &ConfigMap) -> Result<Vec<Change>> {
    let namespace = desired
        .metadata
        .namespace
        .as_deref()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = desired.name_any();
    let observed = cached(&ctx.cache.config_maps, namespace, &name);
    Ok(apply_if_needed(ctx, desired, observed)
        .await?
        .into_iter()
        .collect())
}

fn to_json<K: Serialize>(object: &K) -> Result<Value> {
    serde_json::to_value(object).map_err(|source| Error::Serialize {
        kind: std::any::type_name::<K>(),
        source,
    })
}

/// Server-side applies `desired` unless the cached `observed` already matches it.
async fn apply_if_needed<K>(
    ctx: &Context,
    desired: &K,
    observed: Option<Arc<K>>,
) -> Result<Option<Change>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let mut wanted = to_json(desired)?;
    stamp(&mut wanted).map_err(|source| Error::Serialize {
        kind: "stamp",
        source,
    })?;
    let observed = observed.map(|o| to_json(o.as_ref())).transpose()?;
    let action = match compare(&wanted, observed.as_ref()) {
        Verdict::InSync => return Ok(None),
        Verdict::Missing => ChangeAction::Created,
        Verdict::Outdated => ChangeAction::Updated,
        Verdict::Drifted { path } => ChangeAction::Reverted(path),
    };
    let name = desired.name_any();
    let namespace = desired
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&wanted),
    )
    .await
    .map_err(|source| Error::Apply {
        action: "apply",
        kind: K::kind(&()).into_owned(),
        name: name.clone(),
        source: Box::new(source),
    })?;
    tracing::info!(kind = %K::kind(&()), %name, ?action, "applied owned object");
    Ok(Some(Change {
        kind: K::kind(&()).into_owned(),
        name,
        action,
    }))
}

/// Deletes `observed` (a PodDisruptionBudget once replicas drop to one, a candidate's
/// objects once no candidate runs), only if the ModelDeployment controls it.
async fn delete_owned<K>(
    ctx: &Context,
    owner: &Owner<'_>,
    observed: Option<Arc<K>>,
) -> Result<Option<Change>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + Debug,
{
    let Some(observed) = observed else {
        return Ok(None);
    };
    let ours = observed
        .owner_references()
        .iter()
        .any(|r| r.controller == Some(true) && r.kind == "ModelDeployment" && r.name == owner.name);
    if !ours {
        return Ok(None);
    }
    let name = observed.name_any();
    let kind = K::kind(&()).into_owned();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {}
        // Gone already (the cache lags a delete by one event).
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
        Err(source) => {
            return Err(Error::Apply {
                action: "delete",
                kind,
                name,
                source: Box::new(source),
            });
        }
    }
    tracing::info!(%kind, %name, "deleted owned object");
    Ok(Some(Change {
        kind,
        name,
        action: ChangeAction::Deleted,
    }))
}
