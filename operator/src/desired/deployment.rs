//! The runtime Deployment.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment},
        core::v1::{
            Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
            HTTPGetAction, LocalObjectReference, PersistentVolumeClaimVolumeSource,
            PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
            SeccompProfile, SecurityContext, Toleration, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity, apis::meta::v1::LabelSelector, util::intstr::IntOrString,
    },
};
use kube::api::ObjectMeta;
use modelplane_api::model_deployment::{Device, LocalSecretRef, ModelSpec, RuntimeResources};
use serde::Serialize;

use super::{
    Defaults, GRPC_PORT, HTTP_PORT, Owner, RUNTIME_CONTAINER,
    config::{CACHE_DIR, CONFIG_DIR, CONFIG_FILE, MODEL_DIR},
};

/// Pod-template annotation whose change rolls the runtime pods.
pub const ROLLOUT_HASH_ANNOTATION: &str = "modelplane.io/rollout-hash";
/// Resource name of an NVIDIA GPU.
const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// Unprivileged user and group the runtime runs as.
const RUNTIME_UID: i64 = 65532;

/// What must restart the pods when it changes. Batching, limits and (later)
/// canary weights are hot-reloaded from the ConfigMap and stay out of it. So are
/// `imagePullSecrets`: kubelet reads them only when it pulls, so nothing in a running
/// pod depends on them. (They are still in the pod template, whose change the
/// Deployment controller rolls out by itself; this hash is what the operator adds.)
#[derive(Serialize)]
struct RolloutInputs<'a> {
    image: &'a str,
    model: Option<&'a ModelSpec>,
    device: Device,
    resources: Option<&'a RuntimeResources>,
}

/// Hash of everything whose change must roll the runtime pods.
pub fn rollout_hash(owner: &Owner<'_>, defaults: &Defaults) -> String {
    let runtime = &owner.spec.runtime;
    let inputs = RolloutInputs {
        image: image(owner, defaults),
        model: owner.spec.model.as_ref(),
        device: runtime.device,
        resources: runtime.resources.as_ref(),
    };
    crate::drift::hash_of(&inputs).unwrap_or_default()
}

fn image<'a>(owner: &'a Owner<'_>, defaults: &'a Defaults) -> &'a str {
    owner
        .spec
        .runtime
        .image
        .as_deref()
        .unwrap_or(&defaults.runtime_image)
}

/// The Deployment running modelplane-runtime (the stable pods, or a runtime-image candidate's).
pub fn deployment(owner: &Owner<'_>, defaults: &Defaults) -> Deployment {
    let cuda = owner.spec.runtime.device == Device::Cuda;
    Deployment {
        metadata: owner.metadata(owner.workload_name()),
        spec: Some(DeploymentSpec {
            replicas: Some(owner.spec.runtime.replicas),
            selector: LabelSelector {
                match_labels: Some(owner.pod_selector_labels()),
                ..LabelSelector::default()
            },
            strategy: Some(strategy(cuda)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(owner.pod_labels()),
                    annotations: Some(pod_annotations(rollout_hash(owner, defaults))),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(owner, defaults, cuda)),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// CPU pods surge one extra pod so capacity never dips; GPU pods replace one at
/// a time instead, because a spare GPU for the surge pod rarely exists.
fn strategy(cuda: bool) -> DeploymentStrategy {
    let (surge, unavailable) = if cuda { (0, 1) } else { (1, 0) };
    DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(surge)),
            max_unavailable: Some(IntOrString::Int(unavailable)),
        }),
    }
}

fn pod_annotations(rollout_hash: String) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("prometheus.io/scrape".into(), "true".into()),
        ("prometheus.io/port".into(), HTTP_PORT.to_string()),
        ("prometheus.io/path".into(), "/metrics".into()),
        (ROLLOUT_HASH_ANNOTATION.into(), rollout_hash),
    ])
}

fn pod_spec(owner: &Owner<'_>, defaults: &Defaults, cuda: bool) -> PodSpec {
    PodSpec {
        containers: vec![container(owner, defaults, cuda)],
        image_pull_secrets: image_pull_secrets(&owner.spec.runtime.image_pull_secrets),
        volumes: Some(volumes(owner)),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUNTIME_UID),
            run_as_group: Some(RUNTIME_UID),
            fs_group: Some(RUNTIME_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        // The runtime never talks to the API server.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        // The runtime drains for up to 30s (its shutdownGrace) before exiting.
        termination_grace_period_seconds: Some(40),
        tolerations: cuda.then(|| {
            vec![Toleration {
                key: Some(GPU_RESOURCE.into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Toleration::default()
            }]
        }),
        ..PodSpec::default()
    }
}

/// The pod's `imagePullSecrets`: the Secrets `spec.runtime.imagePullSecrets` names, in order.
pub fn image_pull_secrets(secrets: &[LocalSecretRef]) -> Option<Vec<LocalObjectReference>> {
    (!secrets.is_empty()).then(|| {
        secrets
            .iter()
            .map(|secret| LocalObjectReference {
                name: secret.name.clone(),
            })
            .collect()
    })
}

fn container(owner: &Owner<'_>, defaults: &Defaults, cuda: bool) -> Container {
    Container {
        name: RUNTIME_CONTAINER.into(),
        image: Some(image(owner, defaults).to_owned()),
        args: Some(vec![
            "serve".into(),
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_FILE}"),
        ]),
        ports: Some(vec![port("http", HTTP_PORT), port("grpc", GRPC_PORT)]),
        resources: resources(owner.spec.runtime.resources.as_ref(), cuda),
        // Loading a large model can take minutes; liveness waits for startup.
        startup_probe: Some(probe("/v2/health/live", 5, 120)),
        liveness_probe: Some(probe("/v2/health/live", 10, 3)),
        readiness_probe: Some(probe("/v2/health/ready", 5, 2)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        // A model that fails to load is reported through the termination message.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(volume_mounts(owner)),
        ..Container::default()
    }
}

fn port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn probe(path: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

/// Requests equal limits (Guaranteed QoS when cpu and memory are both set);
/// `cuda` adds `nvidia.com/gpu`, one unless the spec says otherwise.
fn resources(spec: Option<&RuntimeResources>, cuda: bool) -> Option<ResourceRequirements> {
    let mut amounts = BTreeMap::new();
    if let Some(spec) = spec {
        if let Some(cpu) = &spec.cpu {
            amounts.insert("cpu".to_owned(), Quantity(cpu.clone()));
        }
        if let Some(memory) = &spec.memory {
            amounts.insert("memory".to_owned(), Quantity(memory.clone()));
        }
    }
    if cuda {
        let gpus = spec.and_then(|s| s.gpu).unwrap_or(1);
        amounts.insert(GPU_RESOURCE.to_owned(), Quantity(gpus.to_string()));
    }
    (!amounts.is_empty()).then(|| ResourceRequirements {
        requests: Some(amounts.clone()),
        limits: Some(amounts),
        ..ResourceRequirements::default()
    })
}

fn volumes(owner: &Owner<'_>) -> Vec<Volume> {
    let empty_dir = |name: &str| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    };
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            // A whole-directory mount (no subPath), so config edits reach the pod.
            config_map: Some(ConfigMapVolumeSource {
                name: owner.config_map_name(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        empty_dir("model-cache"),
        empty_dir("tmp"),
    ];
    if let Some(pvc) = owner
        .spec
        .model
        .as_ref()
        .and_then(|m| m.source.pvc.as_ref())
    {
        volumes.push(Volume {
            name: "models".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: pvc.claim_name.clone(),
                read_only: Some(true),
            }),
            ..Volume::default()
        });
    }
    volumes
}

fn volume_mounts(owner: &Owner<'_>) -> Vec<VolumeMount> {
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    };
    let mut mounts = vec![
        mount("config", CONFIG_DIR, true),
        mount("model-cache", CACHE_DIR, false),
        mount("tmp", "/tmp", false),
    ];
    if owner
        .spec
        .model
        .as_ref()
        .is_some_and(|m| m.source.pvc.is_some())
    {
        mounts.push(mount("models", MODEL_DIR, true));
    }
    mounts
}
