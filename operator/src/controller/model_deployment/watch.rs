//! Wiring: the watches that feed the caches and trigger reconciles.

use std::{future::Future, sync::Arc};

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Namespace, Pod, Service},
        policy::v1::PodDisruptionBudget,
    },
};
use kube::{
    Api, Client, Resource,
    runtime::{
        Controller, WatchStreamExt,
        events::{Recorder, Reporter},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use modelplane_api::{
    canary::Canary, model_deployment::ModelDeployment, tenant_quota::TenantQuota,
};
use serde::de::DeserializeOwned;

use super::{KIND, error_policy, reconcile};
use crate::{
    controller::{
        Backoff, Cache, Context, PodIndex, instance_of,
        projection::{project_namespace, project_pod, strip_bookkeeping},
    },
    desired::{Defaults, FIELD_MANAGER, MANAGED_BY_SELECTOR},
    metrics::Metrics,
    quota::{QuotaScope, resolve_tenant},
    verification::ArtifactVerifier,
};

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// A cached watch of the objects of kind `K` the operator manages; the store keeps
/// each object as `keep` leaves it. Yields the watch events after the store has them.
fn cached_watch<K>(
    client: &Client,
    namespace: Option<&str>,
    keep: fn(&mut K),
) -> (
    Store<K>,
    impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default()
        .labels(MANAGED_BY_SELECTOR)
        .any_semantic();
    let events = watcher(api::<K>(client, namespace), config)
        .modify(keep)
        .default_backoff()
        .reflect(writer);
    (reader, events)
}

/// A cached watch of the watched namespace (or all), for the tenant label.
fn namespace_watch(
    client: &Client,
    namespace: Option<&str>,
) -> (
    Store<Namespace>,
    impl Stream<Item = Result<Namespace, watcher::Error>> + Send + 'static,
) {
    let (reader, writer) = reflector::store();
    let config = match namespace {
        Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
        None => watcher::Config::default(),
    };
    let api = Api::<Namespace>::all(client.clone());
    let stream = watcher(api, config.any_semantic())
        .modify(project_namespace)
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

/// A cached watch of every TenantQuota (cluster-scoped): their records gate rollouts and
/// their budgets go into the runtime config.
fn tenant_quota_watch(
    client: &Client,
) -> (
    Store<TenantQuota>,
    impl Stream<Item = Result<TenantQuota, watcher::Error>> + Send + 'static,
) {
    let (reader, writer) = reflector::store();
    let stream = watcher(
        Api::<TenantQuota>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .modify(strip_bookkeeping::<TenantQuota>)
    .default_backoff()
    .reflect(writer)
    .touched_objects();
    (reader, stream)
}

/// A cached watch of the Canaries: their status carries the candidate and weight a target
/// renders into its runtime config.
fn canary_watch(
    client: &Client,
    namespace: Option<&str>,
) -> (
    Store<Canary>,
    impl Stream<Item = Result<Canary, watcher::Error>> + Send + 'static,
) {
    let (reader, writer) = reflector::store();
    let stream = watcher(
        api::<Canary>(client, namespace),
        watcher::Config::default().any_semantic(),
    )
    .modify(strip_bookkeeping::<Canary>)
    .default_backoff()
    .reflect(writer)
    .touched_objects();
    (reader, stream)
}

/// The ModelDeployment a Canary targets.
fn canary_target(canary: Canary) -> Option<ObjectRef<ModelDeployment>> {
    let namespace = canary.metadata.namespace.as_deref()?;
    Some(ObjectRef::new(&canary.spec.target_ref.name).within(namespace))
}

/// The ModelDeployment watch: the controller's store and its trigger stream.
fn model_deployment_watch(
    client: &Client,
    namespace: Option<&str>,
) -> (
    Store<ModelDeployment>,
    impl Stream<Item = Result<ModelDeployment, watcher::Error>> + Send + 'static,
) {
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().any_semantic();
    let stream = watcher(api::<ModelDeployment>(client, namespace), config)
        .modify(strip_bookkeeping::<ModelDeployment>)
        .reflect(writer)
        .applied_objects();
    (reader, stream)
}

/// Publishes Events as `modelplane-operator`, instance = this pod.
pub(crate) fn recorder(client: &Client) -> Recorder {
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    Recorder::new(client.clone(), reporter)
}

/// Runs the ModelDeployment controller over one namespace (or all) until `shutdown`.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    metrics: Arc<Metrics>,
    defaults: Defaults,
    verifier: Arc<dyn ArtifactVerifier>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = namespace.as_deref();
    let (deployments, deployment_events) =
        cached_watch(&client, ns, strip_bookkeeping::<Deployment>);
    let (services, service_events) = cached_watch(&client, ns, strip_bookkeeping::<Service>);
    let (config_maps, config_map_events) =
        cached_watch(&client, ns, strip_bookkeeping::<ConfigMap>);
    let (budgets, budget_events) =
        cached_watch(&client, ns, strip_bookkeeping::<PodDisruptionBudget>);
    let (pods, pod_events) = cached_watch::<Pod>(&client, ns, project_pod);
    // Fed the same events right after the store, so `pods_of` need not scan every pod.
    let pod_index = PodIndex::default();
    let pod_events = pod_events.inspect_ok({
        let pod_index = pod_index.clone();
        move |event| pod_index.apply(event)
    });
    let (namespaces, namespace_events) = namespace_watch(&client, ns);
    let (tenant_quotas, tenant_quota_events) = tenant_quota_watch(&client);
    let (canaries, canary_events) = canary_watch(&client, ns);

    let (model_deployments, model_deployment_events) = model_deployment_watch(&client, ns);
    let controller = Controller::for_stream(model_deployment_events, model_deployments.clone());
    let cache = Cache {
        deployments,
        services,
        config_maps,
        pod_disruption_budgets: budgets,
        pods,
        pod_index,
        namespaces: namespaces.clone(),
        tenant_quotas: tenant_quotas.clone(),
        canaries,
        model_deployments: model_deployments.clone(),
    };
    let ctx = Arc::new(Context {
        recorder: recorder(&client),
        client,
        metrics: metrics.clone(),
        defaults,
        cache: cache.clone(),
        backoff: Backoff::default(),
        verifier,
        holds: super::Holds::default(),
    });
    let scope = namespace.unwrap_or_else(|| "*".into());
    controller
        .owns_stream(deployment_events.touched_objects())
        .owns_stream(service_events.touched_objects())
        .owns_stream(config_map_events.touched_objects())
        .owns_stream(budget_events.touched_objects())
        .watches_stream(pod_events.touched_objects(), pod_owner)
        .watches_stream(canary_events, canary_target)
        .watches_stream(namespace_events, in_namespace(model_deployments.clone()))
        .watches_stream(
            tenant_quota_events,
            governed_by(model_deployments, namespaces, tenant_quotas),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(%error, "controller event");
            }
            record_managed(&metrics, &scope, &cache);
            futures::future::ready(())
        })
        .await;
    tracing::info!(kind = KIND, scope = %scope, "controller stopped");
}

/// Maps a Namespace to its ModelDeployments (a tenant label change re-reconciles them).
fn in_namespace(
    model_deployments: Store<ModelDeployment>,
) -> impl Fn(Namespace) -> Vec<ObjectRef<ModelDeployment>> + Send + Sync + 'static {
    move |namespace| {
        let name = namespace.metadata.name.unwrap_or_default();
        model_deployments
            .state()
            .iter()
            .filter(|md| md.metadata.namespace.as_deref() == Some(name.as_str()))
            .map(|md| ObjectRef::from_obj(md.as_ref()))
            .collect()
    }
}

/// Maps a TenantQuota (changed, or deleted) to the ModelDeployments it may govern: those in
/// the namespaces it covers and those of its tenant. Its record, ceilings or budgets changed,
/// so they are re-admitted and their runtime config re-rendered.
fn governed_by(
    model_deployments: Store<ModelDeployment>,
    namespaces: Store<Namespace>,
    tenant_quotas: Store<TenantQuota>,
) -> impl Fn(TenantQuota) -> Vec<ObjectRef<ModelDeployment>> + Send + Sync + 'static {
    move |quota| {
        let Some(changed) = QuotaScope::of(&quota) else {
            return Vec::new();
        };
        let mut scopes: Vec<QuotaScope> = tenant_quotas
            .state()
            .iter()
            .filter_map(|q| QuotaScope::of(q))
            .filter(|s| s.name != changed.name)
            .collect();
        scopes.push(changed.clone());
        model_deployments
            .state()
            .iter()
            .filter(|md| {
                let Some(namespace) = md.metadata.namespace.as_deref() else {
                    return false;
                };
                let labels = namespaces
                    .get(&ObjectRef::new(namespace))
                    .and_then(|ns| ns.metadata.labels.clone());
                changed.covers(namespace, labels.as_ref())
                    || resolve_tenant(&md.spec, namespace, labels.as_ref(), &scopes).0
                        == changed.tenant
            })
            .map(|md| ObjectRef::from_obj(md.as_ref()))
            .collect()
    }
}

/// The ModelDeployment a runtime pod belongs to (by its instance label).
fn pod_owner(pod: Pod) -> Option<ObjectRef<ModelDeployment>> {
    let name = instance_of(&pod)?;
    Some(ObjectRef::new(name).within(pod.metadata.namespace.as_deref()?))
}

fn record_managed(metrics: &Metrics, scope: &str, cache: &Cache) {
    metrics.set_objects_managed("Deployment", scope, cache.deployments.len());
    metrics.set_objects_managed("Service", scope, cache.services.len());
    metrics.set_objects_managed("ConfigMap", scope, cache.config_maps.len());
    metrics.set_objects_managed(
        "PodDisruptionBudget",
        scope,
        cache.pod_disruption_budgets.len(),
    );
}
