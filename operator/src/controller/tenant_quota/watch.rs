//! Wiring: the TenantQuota watch, and the ModelDeployment, Canary and Namespace watches that
//! re-reconcile the quotas a change may concern.

use std::{future::Future, sync::Arc};

use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    runtime::{
        Controller, WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use modelplane_api::{
    canary::Canary, model_deployment::ModelDeployment, tenant_quota::TenantQuota,
};

use super::{Context, KIND, error_policy, reconcile};
use crate::{
    controller::{
        Backoff,
        model_deployment::recorder,
        projection::{project_for_quota, project_namespace, strip_bookkeeping},
    },
    metrics::Metrics,
    quota::{QuotaScope, resolve_tenant},
};

type Watched<K> = BoxStream<'static, Result<K, watcher::Error>>;

/// A projected ModelDeployment watch of one namespace (or all).
fn model_deployments(
    client: &Client,
    namespace: Option<&str>,
) -> (Store<ModelDeployment>, Watched<ModelDeployment>) {
    let api = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default().any_semantic())
        .modify(project_for_quota)
        .default_backoff()
        .reflect(writer)
        .touched_objects()
        .boxed();
    (reader, stream)
}

/// A Canary watch of one namespace (or all).
fn canaries(client: &Client, namespace: Option<&str>) -> (Store<Canary>, Watched<Canary>) {
    let api = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default().any_semantic())
        .modify(strip_bookkeeping::<Canary>)
        .default_backoff()
        .reflect(writer)
        .touched_objects()
        .boxed();
    (reader, stream)
}

/// Runs the TenantQuota controller over the ModelDeployments of `namespaces` (`None`: all)
/// until `shutdown`.
pub async fn run(
    client: Client,
    namespaces: Vec<Option<String>>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (stores, streams): (Vec<_>, Vec<_>) = namespaces
        .iter()
        .map(|namespace| model_deployments(&client, namespace.as_deref()))
        .unzip();
    let (canary_stores, canary_streams): (Vec<_>, Vec<_>) = namespaces
        .iter()
        .map(|namespace| canaries(&client, namespace.as_deref()))
        .unzip();
    let (namespace_store, writer) = reflector::store();
    let namespace_events = watcher(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .modify(project_namespace)
    .default_backoff()
    .reflect(writer)
    .touched_objects();
    let controller = Controller::new(
        Api::<TenantQuota>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    );
    let quotas = controller.store();
    let ctx = Arc::new(Context {
        recorder: recorder(&client),
        client,
        metrics,
        quotas: quotas.clone(),
        model_deployments: stores,
        canaries: canary_stores,
        namespaces: namespace_store.clone(),
        backoff: Backoff::default(),
    });
    let mut controller = controller.watches_stream(namespace_events, {
        let quotas = quotas.clone();
        move |_: Namespace| all_quotas(&quotas)
    });
    for stream in streams {
        let mapper = concerned_quotas(quotas.clone(), namespace_store.clone());
        controller = controller.watches_stream(stream, mapper);
    }
    // Only runtime-image candidates run pods of their own; such Canaries are few, so every
    // quota looks at each change of one.
    for stream in canary_streams {
        let quotas = quotas.clone();
        controller = controller.watches_stream(stream, move |canary: Canary| {
            match canary.spec.candidate.runtime {
                Some(_) => all_quotas(&quotas),
                None => Vec::new(),
            }
        });
    }
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(%error, "controller event");
            }
            futures::future::ready(())
        })
        .await;
    tracing::info!(kind = KIND, "controller stopped");
}

/// Every quota: a namespace's labels decide its tenant and which selectors match it, and
/// quotas are few.
fn all_quotas(quotas: &Store<TenantQuota>) -> Vec<ObjectRef<TenantQuota>> {
    quotas
        .state()
        .iter()
        .map(|q| ObjectRef::from_obj(q.as_ref()))
        .collect()
}

/// Maps a ModelDeployment (changed or deleted) to the quotas that may count it: those
/// covering its namespace and those of its tenant.
fn concerned_quotas(
    quotas: Store<TenantQuota>,
    namespaces: Store<Namespace>,
) -> impl Fn(ModelDeployment) -> Vec<ObjectRef<TenantQuota>> + Send + Sync + 'static {
    move |md| {
        let Some(namespace) = md.metadata.namespace.as_deref() else {
            return Vec::new();
        };
        let labels = namespaces
            .get(&ObjectRef::new(namespace))
            .and_then(|ns| ns.metadata.labels.clone());
        let all = quotas.state();
        let scopes: Vec<QuotaScope> = all.iter().filter_map(|q| QuotaScope::of(q)).collect();
        let (tenant, _) = resolve_tenant(&md.spec, namespace, labels.as_ref(), &scopes);
        scopes
            .iter()
            .filter(|s| s.covers(namespace, labels.as_ref()) || s.tenant == tenant)
            .map(|s| ObjectRef::new(&s.name))
            .collect()
    }
}
