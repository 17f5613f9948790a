//! The ModelDeployments a quota governs, and the runtime-image Canaries on them (whose
//! candidate pods run beside the target's), read from the watch caches into plain
//! [`Candidate`]s for the decision.

use kube::runtime::reflector::{ObjectRef, Store};
use modelplane_api::{
    canary::{Canary, CanaryPhase},
    model_deployment::ModelDeployment,
    tenant_quota::TenantQuota,
};

use super::Context;
use crate::quota::{
    Candidate, Governs, Ineligible, Limits, QuotaScope, canary_entry_name, candidate_footprint,
    footprint, governing, ran_unlimited, resolve_tenant,
};

/// The scopes of every quota in `store`, oldest first.
pub fn scopes(store: &Store<TenantQuota>) -> Vec<QuotaScope> {
    let mut scopes: Vec<QuotaScope> = store
        .state()
        .iter()
        .filter_map(|quota| QuotaScope::of(quota))
        .collect();
    scopes.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    scopes
}

/// Every cached ModelDeployment that `this` quota governs, with its footprint under `limits`,
/// and every runtime-image Canary in flight on one of them, with its candidate pods'.
pub fn candidates(
    ctx: &Context,
    scopes: &[QuotaScope],
    this: &QuotaScope,
    limits: &Limits,
) -> Vec<Candidate> {
    let deployments = ctx
        .model_deployments
        .iter()
        .flat_map(|store| store.state())
        .filter_map(|md| candidate(ctx, scopes, this, limits, &md));
    let canaries = ctx
        .canaries
        .iter()
        .flat_map(|store| store.state())
        .filter_map(|canary| canary_candidate(ctx, scopes, this, limits, &canary));
    deployments.chain(canaries).collect()
}

/// How `this` quota governs `md`, if it does.
fn governs(
    ctx: &Context,
    scopes: &[QuotaScope],
    this: &QuotaScope,
    md: &ModelDeployment,
) -> Option<Governs> {
    let namespace = md.metadata.namespace.as_deref()?;
    let labels = ctx
        .namespaces
        .get(&ObjectRef::new(namespace))
        .and_then(|ns| ns.metadata.labels.clone());
    let (tenant, source) = resolve_tenant(&md.spec, namespace, labels.as_ref(), scopes);
    let found = governing(scopes, namespace, labels.as_ref(), (&tenant, source));
    found
        .into_iter()
        .find(|(scope, _)| scope.name == this.name)
        .map(|(_, governs)| governs)
}

fn candidate(
    ctx: &Context,
    scopes: &[QuotaScope],
    this: &QuotaScope,
    limits: &Limits,
    md: &ModelDeployment,
) -> Option<Candidate> {
    let namespace = md.metadata.namespace.as_deref()?;
    let name = md.metadata.name.as_deref()?;
    let demand = match governs(ctx, scopes, this, md)? {
        Governs::Counted => footprint(&md.spec.runtime, limits).map_err(Ineligible::Footprint),
        Governs::TenantNotAllowed(message) => Err(Ineligible::TenantNotAllowed(message)),
    };
    let generation = md.metadata.generation;
    let conditions = md
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    Some(Candidate {
        name: format!("{namespace}/{name}"),
        uid: md.metadata.uid.clone()?,
        generation: generation.unwrap_or_default(),
        created: md.metadata.creation_timestamp.as_ref().map(|t| t.0),
        demand,
        grandfathered: ran_unlimited(conditions, generation),
    })
}

/// A runtime-image Canary that has not ended, on a ModelDeployment `this` quota governs: its
/// candidate pods are admitted (or refused) like a ModelDeployment, before its first step.
fn canary_candidate(
    ctx: &Context,
    scopes: &[QuotaScope],
    this: &QuotaScope,
    limits: &Limits,
    canary: &Canary,
) -> Option<Candidate> {
    canary.spec.candidate.runtime.as_ref()?;
    let phase = canary.status.as_ref().map(|s| s.phase);
    if matches!(
        phase,
        Some(CanaryPhase::Succeeded | CanaryPhase::RolledBack | CanaryPhase::Failed)
    ) {
        return None;
    }
    let namespace = canary.metadata.namespace.as_deref()?;
    let key = ObjectRef::new(&canary.spec.target_ref.name).within(namespace);
    let target = ctx
        .model_deployments
        .iter()
        .find_map(|store| store.get(&key))?;
    let weights = canary.spec.steps.iter().map(|step| step.weight);
    let demand = match governs(ctx, scopes, this, &target)? {
        Governs::Counted => candidate_footprint(&target.spec.runtime, weights, limits)
            .map_err(Ineligible::Footprint),
        Governs::TenantNotAllowed(message) => Err(Ineligible::TenantNotAllowed(message)),
    };
    Some(Candidate {
        name: canary_entry_name(namespace, canary.metadata.name.as_deref()?),
        uid: canary.metadata.uid.clone()?,
        generation: canary.metadata.generation.unwrap_or_default(),
        created: canary.metadata.creation_timestamp.as_ref().map(|t| t.0),
        demand,
        grandfathered: false,
    })
}
