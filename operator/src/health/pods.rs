//! Problems the runtime pods report in their status, in the words a user can act on.

use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod};

/// Exit status with which modelplane-runtime reports that a model failed to load.
pub const MODEL_LOAD_FAILED_EXIT_CODE: i32 = 3;

/// A problem seen on a pod, with the reason and message used in conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodProblem {
    /// CamelCase condition reason.
    pub reason: &'static str,
    /// What happened and where, for `kubectl describe`.
    pub message: String,
}

/// The most important problem among `pods` (terminating pods are ignored).
///
/// Order: the model failing to load, then image pulls, then scheduling, then
/// other crash loops and container config errors.
pub fn worst_problem(pods: &[Pod]) -> Option<PodProblem> {
    let mut problems: Vec<(u8, PodProblem)> = pods
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter_map(pod_problem)
        .collect();
    problems.sort_by_key(|(rank, _)| *rank);
    problems.into_iter().next().map(|(_, problem)| problem)
}

fn pod_problem(pod: &Pod) -> Option<(u8, PodProblem)> {
    let name = pod.metadata.name.as_deref().unwrap_or("<unnamed>");
    let status = pod.status.as_ref()?;
    let containers = status.container_statuses.iter().flatten();
    let from_containers = containers
        .filter_map(|c| container_problem(name, c))
        .min_by_key(|(rank, _)| *rank);
    from_containers.or_else(|| unschedulable(name, pod))
}

fn container_problem(pod: &str, container: &ContainerStatus) -> Option<(u8, PodProblem)> {
    let terminated = container
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .or_else(|| container.state.as_ref().and_then(|s| s.terminated.as_ref()));
    if let Some(terminated) = terminated.filter(|t| t.exit_code == MODEL_LOAD_FAILED_EXIT_CODE) {
        let detail = terminated
            .message
            .as_deref()
            .unwrap_or("see the pod's logs")
            .trim();
        let message = format!("pod {pod}: the runtime could not load the model: {detail}");
        return Some((
            0,
            PodProblem {
                reason: "ModelLoadFailed",
                message,
            },
        ));
    }
    let waiting = container.state.as_ref()?.waiting.as_ref()?;
    let detail = waiting.message.as_deref().unwrap_or_default();
    let (rank, reason, message) = match waiting.reason.as_deref()? {
        "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" | "ErrImageNeverPull" => (
            1,
            "ImagePullBackOff",
            format!(
                "pod {pod} cannot pull image {}: {detail}; check spec.runtime.image and the registry credentials",
                container.image
            ),
        ),
        "CrashLoopBackOff" => {
            let last = terminated.map_or_else(|| detail.to_owned(), describe_exit);
            let message = format!(
                "pod {pod}: container {} keeps crashing ({last})",
                container.name
            );
            (3, "CrashLoopBackOff", message)
        }
        "CreateContainerConfigError" | "CreateContainerError" => (
            4,
            "CreateContainerConfigError",
            format!("pod {pod}: {detail}"),
        ),
        _ => return None,
    };
    Some((rank, PodProblem { reason, message }))
}

fn describe_exit(terminated: &ContainerStateTerminated) -> String {
    let message = terminated.message.as_deref().unwrap_or_default().trim();
    if message.is_empty() {
        format!("last exit code {}", terminated.exit_code)
    } else {
        format!("last exit code {}: {message}", terminated.exit_code)
    }
}

fn unschedulable(pod: &str, pods: &Pod) -> Option<(u8, PodProblem)> {
    let condition = pods
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    if condition.reason.as_deref() != Some("Unschedulable") {
        return None;
    }
    let detail = condition.message.as_deref().unwrap_or_default();
    let problem = if detail.contains("nvidia.com/gpu") {
        PodProblem {
            reason: "InsufficientGPU",
            message: format!(
                "pod {pod} cannot be scheduled: no node has a free nvidia.com/gpu ({detail}); add GPU nodes or lower spec.runtime.replicas / resources.gpu"
            ),
        }
    } else {
        PodProblem {
            reason: "Unschedulable",
            message: format!("pod {pod} cannot be scheduled: {detail}"),
        }
    };
    Some((2, problem))
}

/// Digest of the image the runtime pods actually run (`sha256:…`), from a ready pod.
pub fn running_image_digest(pods: &[Pod], container: &str) -> Option<String> {
    pods.iter()
        .filter_map(|pod| pod.status.as_ref())
        .flat_map(|status| status.container_statuses.iter().flatten())
        .filter(|c| c.name == container && c.ready)
        .find_map(|c| {
            c.image_id
                .rsplit_once('@')
                .map(|(_, digest)| digest.to_owned())
        })
}
