//! `ModelDeployment.status`, written only by the operator.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{MAX_PROMPTS, ModelSource, Prompt};
use crate::condition::Condition;

/// Condition types of a ModelDeployment.
pub mod condition_types {
    /// All replicas of the current revision serve.
    pub const READY: &str = "Ready";
    /// The runtime image and model artifact signatures verified.
    pub const VERIFIED: &str = "Verified";
    /// The tenant's quota admits this deployment.
    pub const QUOTA_ADMITTED: &str = "QuotaAdmitted";
    /// A new revision is rolling out.
    pub const PROGRESSING: &str = "Progressing";
    /// Serving, but impaired (circuit breaker open, fallback in use, replicas missing).
    pub const DEGRADED: &str = "Degraded";
    /// The spec sets fields the operator accepts but does not act on yet.
    pub const FIELDS_IGNORED: &str = "FieldsIgnored";
}

/// Observed state of a ModelDeployment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Verified`, `QuotaAdmitted`, `Progressing`, `Degraded` and `FieldsIgnored`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The tenant this deployment is charged to (after defaulting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Runtime pods that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Runtime pods that are ready to serve.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the runtime pods (`key=value,...`), for the scale subresource: a
    /// HorizontalPodAutoscaler reads the pods' metrics through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Where to send requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
    /// The revision now serving: what was verified and pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<Revision>,
}

/// In-cluster addresses of the runtime Service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// HTTP base URL (Open Inference Protocol `/v2` and OpenAI `/v1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// gRPC address `host:port` (`inference.GRPCInferenceService`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<String>,
}

/// A verified, digest-pinned revision.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    /// Short identifier of the revision, shown by `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Digest (`sha256:…`) of the model artifact now serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_digest: Option<String>,
    /// Digest (`sha256:…`) of the runtime image now serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// When the signatures of this revision were verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<Time>,
    /// Set when a Canary promoted this revision: the Canary's name. The spec still
    /// names the old version; commit `modelSource`, `image` and `prompts` below to Git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_by: Option<String>,
    /// The model source serving, when it differs from `spec.model.source` (after a promotion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_source: Option<ModelSource>,
    /// The runtime image serving, when it differs from `spec.runtime.image` (after a promotion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The `metadata.generation` a promotion applies to: while the spec stays at this
    /// generation the promoted revision serves; a newer spec replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_generation: Option<i64>,
    /// The prompts serving, when they differ from `spec.prompts` (after a promotion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_PROMPTS))]
    pub prompts: Option<Vec<Prompt>>,
}
