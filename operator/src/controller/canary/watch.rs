//! Wiring: the Canary watch, the ModelDeployment watch that re-reconciles the Canaries
//! targeting a ModelDeployment when it appears, changes or goes away, and the TenantQuota
//! watch that re-reconciles the runtime-image Canaries waiting for their pods' admission.

use std::{future::Future, sync::Arc};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use kube::{
    Api, Client, Resource,
    runtime::{
        Controller, WatchStreamExt,
        events::{Recorder, Reporter},
        reflector::{self, ObjectRef},
        watcher,
    },
};
use modelplane_api::{
    canary::Canary, model_deployment::ModelDeployment, tenant_quota::TenantQuota,
};

use super::{Analyzer, Context, Holds, KIND, error_policy, reconcile};
use crate::{
    controller::{Backoff, projection::strip_bookkeeping},
    desired::FIELD_MANAGER,
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

/// Runs the Canary controller over one namespace (or all) until `shutdown`.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    metrics: Arc<Metrics>,
    default_image: String,
    verifier: Arc<dyn ArtifactVerifier>,
    analyzer: Arc<Analyzer>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = namespace.as_deref();
    let (targets, writer) = reflector::store();
    let target_events = watcher(
        api::<ModelDeployment>(&client, ns),
        watcher::Config::default().any_semantic(),
    )
    .modify(strip_bookkeeping::<ModelDeployment>)
    .default_backoff()
    .reflect(writer)
    .touched_objects();
    // The quotas a runtime-image candidate's pods wait for, cached: read at every
    // reconcile before the first step, never listed.
    let (quotas, quota_writer) = reflector::store();
    let quota_events = watcher(
        Api::<TenantQuota>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(quota_writer)
    .touched_objects();
    let controller = Controller::new(
        api::<Canary>(&client, ns),
        watcher::Config::default().any_semantic(),
    );
    let canaries = controller.store();
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        metrics,
        default_image,
        verifier,
        targets,
        quotas,
        backoff: Backoff::default(),
        holds: Holds::default(),
        analyzer,
    });
    let scope = namespace.unwrap_or_else(|| "*".into());
    let waiting = canaries.clone();
    controller
        .watches_stream(target_events, move |md| {
            canaries_targeting(&canaries.state(), &md)
        })
        .watches_stream(quota_events, move |_: TenantQuota| {
            waiting_for_quota(&waiting.state())
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(%error, "controller event");
            }
            futures::future::ready(())
        })
        .await;
    tracing::info!(kind = KIND, scope = %scope, "controller stopped");
}

/// The runtime-image Canaries among `canaries` that have not started (their own pods wait
/// for a quota's admission).
pub fn waiting_for_quota(canaries: &[Arc<Canary>]) -> Vec<ObjectRef<Canary>> {
    canaries
        .iter()
        .filter(|canary| canary.spec.candidate.runtime.is_some())
        .filter(|canary| {
            canary
                .status
                .as_ref()
                .is_none_or(|status| status.step_started_at.is_none())
        })
        .map(|canary| ObjectRef::from_obj(canary.as_ref()))
        .collect()
}

/// The Canaries among `canaries` whose `spec.targetRef` names `target`.
pub fn canaries_targeting(
    canaries: &[Arc<Canary>],
    target: &ModelDeployment,
) -> Vec<ObjectRef<Canary>> {
    let namespace = target.metadata.namespace.as_deref();
    let name = target.metadata.name.as_deref();
    canaries
        .iter()
        .filter(|canary| {
            canary.metadata.namespace.as_deref() == namespace
                && Some(canary.spec.target_ref.name.as_str()) == name
        })
        .map(|canary| ObjectRef::from_obj(canary.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn canary(namespace: &str, name: &str, target: &str) -> Arc<Canary> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "Canary",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"targetRef": {"name": target},
                         "candidate": {"runtime": {"image": "r.example/runtime:2"}},
                         "steps": [{"weight": 10}]},
            }))
            .expect("canary"),
        )
    }

    #[test]
    fn a_quota_change_maps_to_the_runtime_image_canaries_not_started_yet() {
        let mut started = canary("team-a", "started", "m");
        Arc::make_mut(&mut started).status = Some(
            serde_json::from_value(
                json!({"phase": "Progressing", "stepStartedAt": "2026-12-04T08:00:00Z"}),
            )
            .expect("status"),
        );
        let mut model = canary("team-a", "model", "m");
        Arc::make_mut(&mut model).spec.candidate =
            serde_json::from_value(json!({"model": {"source": {"oci": "r.example/m:2"}}}))
                .expect("candidate");
        let canaries = [canary("team-a", "waiting", "m"), started, model];
        let names: Vec<String> = waiting_for_quota(&canaries)
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["waiting"]);
    }

    #[test]
    fn a_target_change_maps_to_the_canaries_naming_it_in_its_namespace() {
        let canaries = [
            canary("team-a", "c1", "resnet18"),
            canary("team-a", "c2", "other"),
            canary("team-b", "c3", "resnet18"),
        ];
        let target: ModelDeployment = serde_json::from_value(json!({
            "apiVersion": "serving.modelplane.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "resnet18", "namespace": "team-a"},
            "spec": {"model": {"name": "m", "task": "classify", "source": {"oci": "r.example/m:1"}}},
        }))
        .expect("md");
        let names: Vec<String> = canaries_targeting(&canaries, &target)
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["c1"]);
    }
}
