//! The TenantQuota controller: the one place admissions are decided and recorded.
//!
//! Reconcile: read the quota, the ModelDeployments it governs and its record (all from
//! watch caches), confirm that entries whose ModelDeployment vanished from the cache are
//! really gone, decide ([`crate::quota::decide`], pure), and write the status only when it
//! changed — with the resourceVersion the decision was made from as a precondition, so a
//! decision made from a stale record (a concurrent reconcile, a second operator during a
//! leader change) fails with 409 and is made again from the fresh one. The
//! ModelDeployment controller rolls out only what the record admits.

mod candidates;
mod status;
mod watch;

#[cfg(test)]
mod concurrency_tests;
#[cfg(test)]
mod tests;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use k8s_openapi::{
    api::core::v1::Namespace, apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::Action,
        events::Recorder,
        reflector::{ObjectRef, Store},
    },
};
use modelplane_api::{
    canary::Canary, model_deployment::ModelDeployment, tenant_quota::TenantQuota,
};
use serde_json::json;

use crate::{
    Error, Result,
    controller::Backoff,
    desired::FIELD_MANAGER,
    metrics::Metrics,
    quota::{Entry, Limits, QuotaScope, Resource as QuotaResource, decide, is_canary_entry},
};

pub use candidates::{candidates, scopes};
pub use status::{events, next_status};
pub use watch::run;

/// Kind label of this controller in metrics.
pub const KIND: &str = "TenantQuota";
/// Re-check interval of a settled quota (reads the caches only).
const RESYNC: Duration = Duration::from_secs(300);
/// Retry after a write lost to a concurrent one (409): decide again from the fresh record.
const CONFLICT_RETRY: Duration = Duration::from_millis(500);
/// Retry interval while the watch caches are still loading.
const CACHE_SYNC_RETRY: Duration = Duration::from_secs(1);

/// What every TenantQuota reconcile gets.
pub struct Context {
    /// API client for the status, existence checks and Events.
    pub client: Client,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// Every TenantQuota (to scope namespaces between quotas).
    pub quotas: Store<TenantQuota>,
    /// The ModelDeployments of each watched namespace (or of all), projected for admission.
    pub model_deployments: Vec<Store<ModelDeployment>>,
    /// The Canaries of each watched namespace (or of all): a runtime-image candidate's pods
    /// are admitted too.
    pub canaries: Vec<Store<Canary>>,
    /// Every namespace, for labels and selectors.
    pub namespaces: Store<Namespace>,
    /// Retry delays.
    pub backoff: Backoff,
}

impl Context {
    fn is_synced(&self) -> bool {
        fn ready<K: kube::runtime::reflector::Lookup + Clone + 'static>(store: &Store<K>) -> bool
        where
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            futures::FutureExt::now_or_never(store.wait_until_ready()).is_some_and(|r| r.is_ok())
        }
        ready(&self.quotas)
            && ready(&self.namespaces)
            && self.model_deployments.iter().all(ready)
            && self.canaries.iter().all(ready)
    }
}

/// Reconciles one TenantQuota; counts and times it in the metrics.
pub async fn reconcile(quota: Arc<TenantQuota>, ctx: Arc<Context>) -> Result<Action> {
    let timer = ctx.metrics.reconcile_started(KIND);
    let result = reconcile_inner(&quota, &ctx).await;
    timer.finish(
        result
            .as_ref()
            .map_or_else(Error::metric_label, |_| "success"),
    );
    if result.is_ok() {
        ctx.backoff.succeeded(&quota.name_any());
    }
    result
}

/// Retries a failed reconcile with per-object exponential backoff.
pub fn error_policy(quota: Arc<TenantQuota>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(&quota.name_any());
    tracing::warn!(quota = %quota.name_any(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

#[tracing::instrument(skip_all, fields(quota = %quota.name_any()))]
async fn reconcile_inner(quota: &TenantQuota, ctx: &Context) -> Result<Action> {
    if quota.meta().deletion_timestamp.is_some() {
        if let Some(this) = QuotaScope::of(quota) {
            let resources = QuotaResource::ALL.map(QuotaResource::field);
            ctx.metrics
                .forget_quota(&this.name, &this.tenant, &resources);
        }
        return Ok(Action::await_change());
    }
    if !ctx.is_synced() {
        return Ok(Action::requeue(CACHE_SYNC_RETRY));
    }
    let this = QuotaScope::of(quota).ok_or(Error::MissingField("metadata.name"))?;
    let current = quota.status.clone().unwrap_or_default();
    let now = Time(Timestamp::now());
    let limits = match Limits::from_hard(&quota.spec.hard) {
        Ok(limits) => limits,
        Err(error) => {
            let next = status::invalid(quota, &current, &this, &error.to_string(), &now);
            write_status(ctx, quota, &current, next).await?;
            return Ok(Action::requeue(RESYNC));
        }
    };
    let scopes = scopes(&ctx.quotas);
    let found = candidates(ctx, &scopes, &this, &limits);
    let record = read_record(&current);
    let departed = departed(ctx, &record, &found).await?;
    let decision = decide(&limits, &record, &found, &departed);
    publish_usage(ctx, &this, &limits, &decision);
    let next = next_status(quota, &current, &this, &limits, &decision, &now);
    write_status(ctx, quota, &current, next).await
}

/// Sets the quota's used and hard gauges from the decision.
fn publish_usage(
    ctx: &Context,
    this: &QuotaScope,
    limits: &Limits,
    decision: &crate::quota::Decision,
) {
    let scale = |resource: QuotaResource, amount: u128| {
        // CPU and memory are counted in thousandths (millicores, millibytes); the gauges
        // are in cores and bytes.
        let amount = amount as f64;
        match resource {
            QuotaResource::Cpu | QuotaResource::Memory => amount / 1000.0,
            _ => amount,
        }
    };
    let amounts: Vec<(&str, f64, Option<f64>)> = QuotaResource::ALL
        .iter()
        .map(|&resource| {
            (
                resource.field(),
                scale(resource, decision.used.get(resource)),
                limits.get(resource).map(|hard| scale(resource, hard)),
            )
        })
        .collect();
    ctx.metrics.set_quota(&this.name, &this.tenant, &amounts);
}

/// The record in `status`; an entry that does not parse (never written so) is dropped.
fn read_record(status: &modelplane_api::TenantQuotaStatus) -> Vec<Entry> {
    status
        .admissions
        .iter()
        .filter_map(|admission| {
            let entry = Entry::read(admission);
            if entry.is_none() {
                tracing::warn!(entry = %admission.name, "dropping an admission entry that does not parse");
            }
            entry
        })
        .collect()
}

/// The uids of recorded ModelDeployments that are gone or no longer governed by this quota.
/// One missing from the caches is looked up: a cache that has not seen a new ModelDeployment
/// yet must not release its admission.
async fn departed(
    ctx: &Context,
    record: &[Entry],
    found: &[crate::quota::Candidate],
) -> Result<BTreeSet<String>> {
    let mut departed = BTreeSet::new();
    for entry in record {
        if found.iter().any(|c| c.uid == entry.uid) {
            continue;
        }
        // A Canary's candidate pods: no longer a candidate means it ended, was deleted or
        // no longer changes the image (the Canary caches are synced, and a Canary not yet
        // seen holds no entry).
        if is_canary_entry(&entry.name) {
            departed.insert(entry.uid.clone());
            continue;
        }
        let Some((namespace, name)) = entry.name.split_once('/') else {
            departed.insert(entry.uid.clone());
            continue;
        };
        // In the cache but not a candidate: governed elsewhere now, or recreated under
        // another uid. Either way this entry is released.
        if cached(ctx, namespace, name) {
            departed.insert(entry.uid.clone());
            continue;
        }
        let api: Api<ModelDeployment> = Api::namespaced(ctx.client.clone(), namespace);
        let uid = match api.get_metadata_opt(name).await {
            Ok(found) => found.and_then(|md| md.metadata.uid),
            // Not allowed to look (outside the watched namespaces): keep it.
            Err(kube::Error::Api(status)) if status.code == 403 => continue,
            Err(error) => return Err(error.into()),
        };
        if uid.as_deref() != Some(entry.uid.as_str()) {
            departed.insert(entry.uid.clone());
        }
    }
    Ok(departed)
}

fn cached(ctx: &Context, namespace: &str, name: &str) -> bool {
    let key = ObjectRef::new(name).within(namespace);
    ctx.model_deployments
        .iter()
        .any(|store| store.get(&key).is_some())
}

/// Writes `next` if it differs from `current`, with the resourceVersion of `quota` as a
/// precondition, then publishes the Events of what changed. A lost race (409) is retried
/// soon from the fresh record; nothing is published for it.
async fn write_status(
    ctx: &Context,
    quota: &TenantQuota,
    current: &modelplane_api::TenantQuotaStatus,
    next: modelplane_api::TenantQuotaStatus,
) -> Result<Action> {
    if &next == current {
        return Ok(Action::requeue(RESYNC));
    }
    let name = quota.name_any();
    let version = quota
        .metadata
        .resource_version
        .clone()
        .ok_or(Error::MissingField("metadata.resourceVersion"))?;
    let patch = json!({
        "apiVersion": TenantQuota::api_version(&()),
        "kind": TenantQuota::kind(&()),
        "metadata": {"name": name, "resourceVersion": version},
        "status": next,
    });
    let api: Api<TenantQuota> = Api::all(ctx.client.clone());
    let written = api
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await;
    match written {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {
            tracing::debug!(%version, "the record changed since it was read; deciding again");
            return Ok(Action::requeue(CONFLICT_RETRY));
        }
        Err(error) => return Err(error.into()),
    }
    let reference = quota.object_ref(&());
    for event in events(current, &next) {
        // Best effort: the decision is in the status; an Event that cannot be written
        // (e.g. no Event permission in `default`, where cluster-scoped objects' Events go)
        // must not fail the reconcile and rewrite it.
        if let Err(error) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(%error, reason = %event.reason, "could not publish a TenantQuota Event");
        }
    }
    Ok(Action::requeue(RESYNC))
}
