//! Table tests of the status derivation: one observed cluster state per case.

use k8s_openapi::api::{
    apps::v1::{Deployment, DeploymentCondition, DeploymentStatus},
    core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Pod,
        PodCondition, PodStatus,
    },
};
use kube::api::ObjectMeta;
use modelplane_api::condition::ConditionStatus;

use super::*;

fn deployment(replicas: i32, updated: i32, available: i32, progressing_reason: &str) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            generation: Some(2),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(replicas),
            updated_replicas: Some(updated),
            ready_replicas: Some(available),
            available_replicas: Some(available),
            conditions: Some(vec![DeploymentCondition {
                type_: "Progressing".into(),
                status: if progressing_reason == "ProgressDeadlineExceeded" {
                    "False"
                } else {
                    "True"
                }
                .into(),
                reason: Some(progressing_reason.into()),
                ..DeploymentCondition::default()
            }]),
            ..DeploymentStatus::default()
        }),
    }
}

fn pod(container: ContainerStatus, conditions: Vec<PodCondition>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("md-abc".into()),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            container_statuses: Some(vec![container]),
            conditions: Some(conditions),
            ..PodStatus::default()
        }),
    }
}

fn waiting(reason: &str, message: &str) -> ContainerStatus {
    ContainerStatus {
        name: "runtime".into(),
        image: "ghcr.io/modelplane/runtime:0.1.0".into(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: Some(message.into()),
            }),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    }
}

fn crashed(exit_code: i32, message: &str) -> ContainerStatus {
    ContainerStatus {
        last_state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code,
                message: Some(message.into()),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        }),
        ..waiting(
            "CrashLoopBackOff",
            "back-off 5m0s restarting failed container",
        )
    }
}

fn unschedulable(message: &str) -> Pod {
    let mut pod = pod(waiting("ContainerCreating", ""), vec![]);
    if let Some(status) = pod.status.as_mut() {
        status.container_statuses = None;
        status.conditions = Some(vec![PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some(message.into()),
            ..PodCondition::default()
        }]);
    }
    pod
}

/// (Ready, Progressing, Degraded) as (status, reason) pairs.
type Summary<'a> = [(ConditionStatus, &'a str); 3];

fn summary(observation: Observation<'_>) -> Summary<'static> {
    let assessment = assess(&observation);
    let find = |t: &str| {
        let c = assessment
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .expect("condition present");
        (c.status, c.reason)
    };
    [find(READY), find(PROGRESSING), find(DEGRADED)]
}

use ConditionStatus::{False as F, True as T};

#[test]
fn conditions_follow_the_observed_cluster_state() {
    let healthy = deployment(3, 3, 3, "NewReplicaSetAvailable");
    let starting = deployment(3, 3, 0, "ReplicaSetUpdated");
    let half_rolled = deployment(4, 2, 3, "ReplicaSetUpdated");
    let lost_pod = deployment(3, 3, 2, "NewReplicaSetAvailable");
    let stuck = deployment(1, 1, 0, "ProgressDeadlineExceeded");
    let scaled_down = deployment(0, 0, 0, "NewReplicaSetAvailable");
    let pull = [pod(waiting("ImagePullBackOff", "not found"), vec![])];
    let gpu = [unschedulable(
        "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
    )];
    let load = [pod(
        crashed(3, "model resnet18 failed to load: bad archive"),
        vec![],
    )];
    let crash = [pod(crashed(1, "panic"), vec![])];
    let none: [Pod; 0] = [];
    let secret = Blocker {
        reason: "SecretNotFound",
        message: "secret cosign-pub is missing".into(),
    };

    let cases: Vec<(&str, Observation<'_>, Summary<'_>)> = vec![
        (
            "not created yet",
            obs(3, None, &none, None),
            [(F, "Creating"), (T, "Creating"), (F, "AsExpected")],
        ),
        (
            "all ready",
            obs(3, Some(&healthy), &none, None),
            [(T, "Available"), (F, "RolloutComplete"), (F, "AsExpected")],
        ),
        (
            "pods loading the model",
            obs(3, Some(&starting), &none, None),
            [(F, "NoReplicasReady"), (T, "RollingOut"), (F, "AsExpected")],
        ),
        (
            "rolling update half way",
            obs(3, Some(&half_rolled), &none, None),
            [(T, "Available"), (T, "RollingOut"), (F, "AsExpected")],
        ),
        (
            "a pod lost after rollout",
            obs(3, Some(&lost_pod), &none, None),
            [
                (T, "Available"),
                (F, "RolloutComplete"),
                (T, "ReplicasUnavailable"),
            ],
        ),
        (
            "rollout deadline exceeded",
            obs(1, Some(&stuck), &none, None),
            [
                (F, "NoReplicasReady"),
                (F, "ProgressDeadlineExceeded"),
                (T, "ProgressDeadlineExceeded"),
            ],
        ),
        (
            "scaled to zero",
            obs(0, Some(&scaled_down), &none, None),
            [
                (F, "ScaledToZero"),
                (F, "RolloutComplete"),
                (F, "AsExpected"),
            ],
        ),
        (
            "image cannot be pulled",
            obs(3, Some(&starting), &pull, None),
            [
                (F, "ImagePullBackOff"),
                (T, "RollingOut"),
                (T, "ImagePullBackOff"),
            ],
        ),
        (
            "no free GPU",
            obs(3, Some(&starting), &gpu, None),
            [
                (F, "InsufficientGPU"),
                (T, "RollingOut"),
                (T, "InsufficientGPU"),
            ],
        ),
        (
            "model fails to load",
            obs(3, Some(&starting), &load, None),
            [
                (F, "ModelLoadFailed"),
                (T, "RollingOut"),
                (T, "ModelLoadFailed"),
            ],
        ),
        (
            "runtime crash loop",
            obs(3, Some(&starting), &crash, None),
            [
                (F, "CrashLoopBackOff"),
                (T, "RollingOut"),
                (T, "CrashLoopBackOff"),
            ],
        ),
        (
            "missing secret, nothing running",
            obs(3, None, &none, Some(&secret)),
            [
                (F, "SecretNotFound"),
                (F, "SecretNotFound"),
                (T, "SecretNotFound"),
            ],
        ),
        (
            "missing secret, old revision serving",
            obs(3, Some(&healthy), &none, Some(&secret)),
            [
                (T, "Available"),
                (F, "SecretNotFound"),
                (T, "SecretNotFound"),
            ],
        ),
    ];
    for (name, observation, expected) in cases {
        assert_eq!(summary(observation), expected, "case: {name}");
    }
}

fn obs<'a>(
    desired_replicas: i32,
    deployment: Option<&'a Deployment>,
    pods: &'a [Pod],
    blocker: Option<&'a Blocker>,
) -> Observation<'a> {
    Observation {
        desired_replicas,
        deployment,
        pods,
        blocker,
    }
}

#[test]
fn messages_name_the_pod_and_what_to_do() {
    let gpu = [unschedulable(
        "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
    )];
    let problem = worst_problem(&gpu).expect("problem");
    assert!(problem.message.contains("md-abc"), "{}", problem.message);
    assert!(
        problem.message.contains("nvidia.com/gpu"),
        "{}",
        problem.message
    );

    let load = [pod(
        crashed(3, "model resnet18 failed to load: bad archive\n"),
        vec![],
    )];
    let problem = worst_problem(&load).expect("problem");
    assert!(
        problem.message.ends_with("bad archive"),
        "{}",
        problem.message
    );
}

#[test]
fn model_load_failure_outranks_other_pod_problems() {
    let pods = [
        pod(waiting("ImagePullBackOff", "x"), vec![]),
        pod(crashed(MODEL_LOAD_FAILED_EXIT_CODE, "bad"), vec![]),
    ];
    assert_eq!(
        worst_problem(&pods).map(|p| p.reason),
        Some("ModelLoadFailed")
    );
}

#[test]
fn other_unschedulable_reasons_are_reported_verbatim() {
    let pods = [unschedulable(
        "0/3 nodes are available: 3 Insufficient memory.",
    )];
    let problem = worst_problem(&pods).expect("problem");
    assert_eq!(problem.reason, "Unschedulable");
    assert!(problem.message.contains("Insufficient memory"));
}

#[test]
fn terminating_pods_are_ignored() {
    let mut pull = pod(waiting("ImagePullBackOff", "x"), vec![]);
    pull.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    assert_eq!(worst_problem(&[pull]), None);
}

#[test]
fn image_digest_comes_from_a_ready_runtime_container() {
    let mut status = waiting("x", "y");
    status.ready = true;
    status.image_id = "ghcr.io/modelplane/runtime@sha256:abc".into();
    let pods = [pod(status.clone(), vec![])];
    assert_eq!(
        running_image_digest(&pods, "runtime").as_deref(),
        Some("sha256:abc")
    );
    status.ready = false;
    assert_eq!(
        running_image_digest(&[pod(status, vec![])], "runtime"),
        None
    );
}
