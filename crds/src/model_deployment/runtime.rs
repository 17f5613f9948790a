//! `spec.runtime`: how the modelplane-runtime pods that serve the model run.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{
    DNS_SUBDOMAIN_MAX, DNS_SUBDOMAIN_PATTERN, OCI_REFERENCE_MAX, OCI_REFERENCE_PATTERN,
};
use crate::units::{DURATION_PATTERN, MAX_UNIT_STRING, QUANTITY_PATTERN};

/// How the runtime pods run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.device) && self.device == 'cuda') || !has(self.resources) || !has(self.resources.gpu) || self.resources.gpu == 0").message("resources.gpu requires device cuda"))]
pub struct RuntimeSpec {
    /// Container image of modelplane-runtime; the operator's configured image when unset.
    /// Tags are resolved to a digest and its signature verified before rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = OCI_REFERENCE_MAX), pattern(OCI_REFERENCE_PATTERN))]
    pub image: Option<String>,
    /// Number of runtime pods.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Where the model runs: `cpu`, or `cuda` (the pods request `nvidia.com/gpu`).
    #[serde(default)]
    pub device: Device,
    /// Compute resources of each runtime pod (requests and limits alike).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<RuntimeResources>,
    /// Dynamic batching of tensor requests.
    #[serde(default)]
    pub batching: Batching,
    /// Admission limits of each runtime pod.
    #[serde(default)]
    pub limits: RuntimeLimits,
    /// `kubernetes.io/dockerconfigjson` Secrets in this namespace with registry
    /// credentials: used by the operator to resolve and verify the image and an OCI
    /// model, and set as the pods' imagePullSecrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub image_pull_secrets: Vec<LocalSecretRef>,
}

/// A Secret in the object's own namespace, by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = DNS_SUBDOMAIN_MAX), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

impl Default for RuntimeSpec {
    fn default() -> Self {
        Self {
            image: None,
            replicas: default_replicas(),
            device: Device::default(),
            resources: None,
            batching: Batching::default(),
            limits: RuntimeLimits::default(),
            image_pull_secrets: Vec::new(),
        }
    }
}

fn default_replicas() -> i32 {
    1
}

/// The device a model runs on.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Device {
    /// The CPU, with libtorch threads sized from the pod's CPU quota.
    #[default]
    Cpu,
    /// An NVIDIA GPU.
    Cuda,
}

/// Compute resources of one runtime pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeResources {
    /// CPU as a Kubernetes quantity (`"4"`, `"500m"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_UNIT_STRING), pattern(QUANTITY_PATTERN))]
    pub cpu: Option<String>,
    /// Memory as a Kubernetes quantity (`8Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_UNIT_STRING), pattern(QUANTITY_PATTERN))]
    pub memory: Option<String>,
    /// Number of GPUs (`nvidia.com/gpu`); only with device `cuda`, where it defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 16))]
    pub gpu: Option<i32>,
}

/// Dynamic batching: requests are grouped until the batch is full or the oldest has waited `maxQueueDelay`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Batching {
    /// Largest number of requests run as one forward pass.
    #[serde(default = "default_max_batch_size")]
    #[schemars(range(min = 1, max = 4096))]
    pub max_batch_size: i32,
    /// Longest time a request waits for others to join its batch (a duration, e.g. `2ms`).
    #[serde(default = "default_max_queue_delay")]
    #[schemars(length(max = MAX_UNIT_STRING), pattern(DURATION_PATTERN))]
    pub max_queue_delay: String,
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            max_batch_size: default_max_batch_size(),
            max_queue_delay: default_max_queue_delay(),
        }
    }
}

fn default_max_batch_size() -> i32 {
    32
}

fn default_max_queue_delay() -> String {
    "2ms".to_owned()
}

/// Admission limits of one runtime pod; beyond them requests get 503.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeLimits {
    /// Most requests being executed at once.
    #[serde(default = "default_max_in_flight")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_in_flight: i32,
    /// Most requests waiting for execution; more are refused with 503.
    #[serde(default = "default_max_queue")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_queue: i32,
    /// Deadline of a request that carries none of its own (a duration, e.g. `30s`).
    #[serde(default = "default_request_timeout")]
    #[schemars(length(max = MAX_UNIT_STRING), pattern(DURATION_PATTERN))]
    pub request_timeout: String,
    /// An in-flight limit that follows measured latency, at most `maxInFlight`;
    /// unset: `maxInFlight` is the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<AdaptiveLimit>,
}

/// The adaptive in-flight limit of each runtime pod (a gradient limiter over request
/// latency; for `generate`, time to first token and per output token). Unset fields
/// take the runtime's defaults.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdaptiveLimit {
    /// The limit never goes below this (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub min_limit: Option<i32>,
    /// Nor above this (default `maxInFlight`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_limit: Option<i32>,
    /// Where it starts when a version loads (default 16, within the bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub initial_limit: Option<i32>,
    /// How often it moves (a duration; default `500ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_UNIT_STRING), pattern(DURATION_PATTERN))]
    pub window: Option<String>,
    /// Latency headroom over the minimum before it shrinks, in percent (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub buffer_percent: Option<i32>,
    /// Most it changes in one window, in percent (default 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_change_percent: Option<i32>,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        Self {
            max_in_flight: default_max_in_flight(),
            max_queue: default_max_queue(),
            request_timeout: default_request_timeout(),
            adaptive: None,
        }
    }
}

fn default_max_in_flight() -> i32 {
    256
}

fn default_max_queue() -> i32 {
    1024
}

fn default_request_timeout() -> String {
    "30s".to_owned()
}
