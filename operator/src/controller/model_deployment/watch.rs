//! Wiring: the watches that feed the caches and trigger reconciles.

use std::{future::Future, sync::Arc};

use futures::{Stream, StreamExt};
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
use modelplane_api::model_deployment::ModelDeployment;
use serde::de::DeserializeOwned;

use super::{KIND, error_policy, reconcile};
use crate::{
    controller::{Backoff, Cache, Context},
    desired::{Defaults, FIELD_MANAGER, MANAGED_BY_SELECTOR},
    metrics::Metrics,
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

/// A cached watch of the objects of kind `K` the operator manages.
fn cached_watch<K>(
    client: &Client,
    namespace: Option<&str>,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
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
    let stream = reflector::reflector(writer, watcher(api::<K>(client, namespace), config))
        .default_backoff()
        .touched_objects();
    (reader, stream)
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
    let stream = reflector::reflector(writer, watcher(api, config.any_semantic()))
        .default_backoff()
        .touched_objects();
    (reader, stream)
}

/// Publishes Events as `modelplane-operator`, instance = this pod.
fn recorder(client: &Client) -> Recorder {
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
    let (deployments, deployment_events) = cached_watch::<Deployment>(&client, ns);
    let (services, service_events) = cached_watch::<Service>(&client, ns);
    let (config_maps, config_map_events) = cached_watch::<ConfigMap>(&client, ns);
    let (budgets, budget_events) = cached_watch::<PodDisruptionBudget>(&client, ns);
    let (pods, pod_events) = cached_watch::<Pod>(&client, ns);
    let (namespaces, namespace_events) = namespace_watch(&client, ns);

    let controller = Controller::new(
        api::<ModelDeployment>(&client, ns),
        watcher::Config::default().any_semantic(),
    );
    let model_deployments = controller.store();
    let cache = Cache {
        deployments,
        services,
        config_maps,
        pod_disruption_budgets: budgets,
        pods,
        namespaces,
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
        .owns_stream(deployment_events)
        .owns_stream(service_events)
        .owns_stream(config_map_events)
        .owns_stream(budget_events)
        .watches_stream(pod_events, pod_owner)
        .watches_stream(namespace_events, in_namespace(model_deployments))
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

/// The ModelDeployment a runtime pod belongs to (by its instance label).
fn pod_owner(pod: Pod) -> Option<ObjectRef<ModelDeployment>> {
    let namespace = pod.metadata.namespace?;
    let name = pod.metadata.labels?.remove("app.kubernetes.io/instance")?;
    Some(ObjectRef::new(&name).within(&namespace))
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
