//! What the watch caches keep of each object: what the decisions read, not the
//! API server's bookkeeping.
//!
//! Owned objects (Deployments, Services, ConfigMaps, PodDisruptionBudgets) and
//! ModelDeployments keep everything but `metadata.managedFields` and kubectl's
//! last-applied copy: drift detection compares every field the operator applies,
//! and the operator never applies those two (it applies server-side, and
//! [`crate::drift`] ignores fields the desired object lacks). Pods keep only what
//! [`crate::health`] reads; namespaces only their labels; the TenantQuota controller's
//! copies of ModelDeployments only what admission reads. A decision that starts
//! reading another field must add it here — `tests/cache_projection.rs` checks
//! the decisions on projected objects against the same decisions on whole ones.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerStatus, Namespace, Pod, PodStatus};
use kube::{Resource, api::ObjectMeta};
use modelplane_api::model_deployment::{
    ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus, RuntimeSpec,
    condition_types::QUOTA_ADMITTED,
};

use super::cache::INSTANCE_LABEL;

/// Annotation in which client-side `kubectl apply` keeps a copy of the whole object.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops `metadata.managedFields` and the last-applied annotation, which no
/// decision reads and which are often the largest part of an object.
pub fn strip_bookkeeping<K: Resource>(object: &mut K) {
    let metadata = object.meta_mut();
    metadata.managed_fields = None;
    if let Some(annotations) = metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

/// Keeps of a runtime pod what the health decisions read: its name, namespace,
/// instance label and deletion mark, its conditions, and per container the
/// name, image, image ID, readiness and current and last state.
pub fn project_pod(pod: &mut Pod) {
    let metadata = std::mem::take(&mut pod.metadata);
    let instance = metadata
        .labels
        .and_then(|mut labels| labels.remove_entry(INSTANCE_LABEL));
    pod.metadata = ObjectMeta {
        name: metadata.name,
        namespace: metadata.namespace,
        resource_version: metadata.resource_version,
        deletion_timestamp: metadata.deletion_timestamp,
        labels: instance.map(|(key, value)| BTreeMap::from([(key, value)])),
        ..ObjectMeta::default()
    };
    pod.spec = None;
    pod.status = pod.status.take().map(|status| PodStatus {
        conditions: status.conditions,
        container_statuses: status
            .container_statuses
            .map(|containers| containers.into_iter().map(project_container).collect()),
        ..PodStatus::default()
    });
}

fn project_container(container: ContainerStatus) -> ContainerStatus {
    ContainerStatus {
        name: container.name,
        image: container.image,
        image_id: container.image_id,
        ready: container.ready,
        state: container.state,
        last_state: container.last_state,
        ..ContainerStatus::default()
    }
}

/// Keeps of a ModelDeployment what the TenantQuota controller reads: identity, generation
/// and age, `spec.tenant`, the pods' count and resources, and the `QuotaAdmitted` condition.
pub fn project_for_quota(md: &mut ModelDeployment) {
    let metadata = std::mem::take(&mut md.metadata);
    md.metadata = ObjectMeta {
        name: metadata.name,
        namespace: metadata.namespace,
        uid: metadata.uid,
        generation: metadata.generation,
        resource_version: metadata.resource_version,
        creation_timestamp: metadata.creation_timestamp,
        deletion_timestamp: metadata.deletion_timestamp,
        ..ObjectMeta::default()
    };
    let spec = std::mem::replace(
        &mut md.spec,
        ModelDeploymentSpec {
            tenant: None,
            model: None,
            runtime: RuntimeSpec::default(),
            verification: None,
            fallback: None,
            redaction: None,
            pipeline: None,
            prompts: Vec::new(),
        },
    );
    md.spec.tenant = spec.tenant;
    md.spec.runtime = RuntimeSpec {
        replicas: spec.runtime.replicas,
        device: spec.runtime.device,
        resources: spec.runtime.resources,
        ..RuntimeSpec::default()
    };
    md.status = md.status.take().map(|status| ModelDeploymentStatus {
        conditions: status
            .conditions
            .into_iter()
            .filter(|c| c.type_ == QUOTA_ADMITTED)
            .collect(),
        ..ModelDeploymentStatus::default()
    });
}

/// Keeps of a namespace its name and labels (the tenant label is all that is read).
pub fn project_namespace(namespace: &mut Namespace) {
    let metadata = std::mem::take(&mut namespace.metadata);
    namespace.metadata = ObjectMeta {
        name: metadata.name,
        resource_version: metadata.resource_version,
        labels: metadata.labels,
        ..ObjectMeta::default()
    };
    namespace.spec = None;
    namespace.status = None;
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::Deployment;
    use serde_json::json;

    use super::*;

    #[test]
    fn bookkeeping_goes_and_every_other_annotation_stays() {
        let mut deployment: Deployment = serde_json::from_value(json!({
            "metadata": {
                "name": "m", "namespace": "a", "labels": {"x": "1"},
                "annotations": {LAST_APPLIED_ANNOTATION: "{\"big\": true}", "modelplane.io/applied-hash": "h"},
                "managedFields": [{"manager": "modelplane-operator", "operation": "Apply",
                                   "fieldsV1": {"f:spec": {"f:replicas": {}}}}],
            },
            "spec": {"replicas": 2, "selector": {}, "template": {}},
        }))
        .expect("deployment");
        let before = deployment.clone();
        strip_bookkeeping(&mut deployment);
        assert_eq!(deployment.metadata.managed_fields, None);
        assert_eq!(
            deployment.metadata.annotations,
            Some(BTreeMap::from([(
                "modelplane.io/applied-hash".to_owned(),
                "h".to_owned()
            )]))
        );
        assert_eq!(deployment.metadata.labels, before.metadata.labels);
        assert_eq!(deployment.spec, before.spec);
    }

    #[test]
    fn a_projected_pod_keeps_what_health_reads_and_nothing_else() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "m-1", "namespace": "a", "uid": "u", "resourceVersion": "9",
                         "deletionTimestamp": "2026-12-01T00:00:00Z",
                         "labels": {INSTANCE_LABEL: "m", "pod-template-hash": "5d9f"},
                         "annotations": {"prometheus.io/scrape": "true"},
                         "managedFields": [{"manager": "kubelet"}]},
            "spec": {"containers": [{"name": "runtime", "image": "r"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                       "conditions": [{"type": "PodScheduled", "status": "True"}],
                       "containerStatuses": [{"name": "runtime", "image": "r", "imageID": "r@sha256:ab",
                                              "ready": true, "restartCount": 2, "containerID": "containerd://c",
                                              "state": {"running": {}},
                                              "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}]},
        }))
        .expect("pod");
        project_pod(&mut pod);
        let expected: Pod = serde_json::from_value(json!({
            "metadata": {"name": "m-1", "namespace": "a", "resourceVersion": "9",
                         "deletionTimestamp": "2026-12-01T00:00:00Z",
                         "labels": {INSTANCE_LABEL: "m"}},
            "status": {"conditions": [{"type": "PodScheduled", "status": "True"}],
                       "containerStatuses": [{"name": "runtime", "image": "r", "imageID": "r@sha256:ab",
                                              "ready": true, "restartCount": 0, "state": {"running": {}}}]},
        }))
        .expect("expected pod");
        assert_eq!(pod, expected);
    }

    #[test]
    fn a_projected_namespace_keeps_name_and_labels() {
        let mut namespace: Namespace = serde_json::from_value(json!({
            "metadata": {"name": "a", "labels": {"modelplane.io/tenant": "t"},
                         "annotations": {LAST_APPLIED_ANNOTATION: "{}"}, "managedFields": [{"manager": "kubectl"}]},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }))
        .expect("namespace");
        project_namespace(&mut namespace);
        let expected: Namespace = serde_json::from_value(json!({
            "metadata": {"name": "a", "labels": {"modelplane.io/tenant": "t"}},
        }))
        .expect("expected namespace");
        assert_eq!(namespace, expected);
    }
}
