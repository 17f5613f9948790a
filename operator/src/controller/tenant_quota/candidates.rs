//! The ModelDeployments a quota governs, read from the watch caches into plain
//! [`Candidate`]s for the decision.

use kube::runtime::reflector::{ObjectRef, Store};
use modelplane_api::{model_deployment::ModelDeployment, tenant_quota::TenantQuota};

use super::Context;
use crate::quota::{
    Candidate, Governs, Ineligible, Limits, QuotaScope, footprint, governing, ran_unlimited,
    resolve_tenant,
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

/// Every cached ModelDeployment that `this` quota governs, with its footprint under `limits`.
pub fn candidates(
    ctx: &Context,
    scopes: &[QuotaScope],
    this: &QuotaScope,
    limits: &Limits,
) -> Vec<Candidate> {
    ctx.model_deployments
        .iter()
        .flat_map(|store| store.state())
        .filter_map(|md| candidate(ctx, scopes, this, limits, &md))
        .collect()
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
    let labels = ctx
        .namespaces
        .get(&ObjectRef::new(namespace))
        .and_then(|ns| ns.metadata.labels.clone());
    let (tenant, source) = resolve_tenant(&md.spec, namespace, labels.as_ref(), scopes);
    let found = governing(scopes, namespace, labels.as_ref(), (&tenant, source));
    let (_, governs) = found
        .into_iter()
        .find(|(scope, _)| scope.name == this.name)?;
    let demand = match governs {
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
