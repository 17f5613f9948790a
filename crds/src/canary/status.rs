//! `Canary.status`, written only by the operator.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::model_deployment::ModelSource;

/// Condition types of a Canary.
pub mod condition_types {
    /// The candidate's image and model signatures verified.
    pub const VERIFIED: &str = "Verified";
    /// The rollout is moving (not paused, finished or rolled back).
    pub const PROGRESSING: &str = "Progressing";
    /// The candidate was promoted into the target's status revision.
    pub const PROMOTED: &str = "Promoted";
}

/// Observed progress of a Canary.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Verified`, `Progressing` and `Promoted`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Where the rollout stands.
    #[serde(default)]
    pub phase: CanaryPhase,
    /// Index into `spec.steps` of the current step.
    #[serde(default)]
    pub step: i32,
    /// Percent of traffic now on the candidate.
    #[serde(default)]
    pub weight: i32,
    /// When the current step began (its `pause` counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<Time>,
    /// Consecutive failed analyses so far (rolled back at `spec.analysis.failureLimit`).
    #[serde(default)]
    pub failed_checks: i32,
    /// The most recent analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analysis: Option<AnalysisResult>,
    /// The candidate revision as last checked: what it was resolved from and, once
    /// admitted, the digests that will run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<CandidateRevision>,
}

/// The candidate revision: the target's spec with the candidate's overrides, resolved to
/// digests and checked against the target's verification keys.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CandidateRevision {
    /// Hash of what the revision is resolved from (runtime image, model source, verification
    /// policy, pull secrets); a change means the candidate is checked again.
    #[schemars(length(max = 128))]
    pub inputs: String,
    /// The runtime image pinned by digest (`registry/repo[:tag]@sha256:…`); absent until admitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,
    /// Digest of the runtime image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub image_digest: Option<String>,
    /// The model source with an OCI reference pinned by digest; absent until admitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_source: Option<ModelSource>,
    /// Digest of the model (OCI manifest digest, or the sha256 an HTTP source names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub model_digest: Option<String>,
    /// When the signatures of image and model verified; absent when they did not (Audit) or
    /// verification is disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<Time>,
    /// `sha256:<hex>` fingerprints (of the DER public key) of the keys the candidate was
    /// checked against, in the order the target lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 80)))]
    pub keys: Vec<String>,
}

/// Where a rollout stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum CanaryPhase {
    /// Not started yet: waiting for the target, or verified and waiting for traffic
    /// shifting (see the `Progressing` condition).
    #[default]
    Pending,
    /// Verifying the candidate's signatures.
    Verifying,
    /// Walking through the steps.
    Progressing,
    /// Held by `spec.paused` or outside `spec.window`.
    Paused,
    /// Writing the candidate into the target's status revision.
    Promoting,
    /// Promoted.
    Succeeded,
    /// Rolled back to stable (by analysis or `spec.abort`).
    RolledBack,
    /// Could not proceed: the candidate failed verification under `Enforce`, or it cannot
    /// apply to the target (e.g. a model candidate for a pipeline).
    Failed,
}

/// The outcome of one analysis.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisResult {
    /// When the analysis ran.
    pub time: Time,
    /// One result per metric of `spec.analysis.metrics`.
    #[serde(default)]
    pub metrics: Vec<MetricResult>,
}

/// The outcome of one metric check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    /// The metric's name.
    pub name: String,
    /// Value measured on stable (seconds for latencies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<f64>,
    /// Value measured on the candidate (seconds for latencies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<f64>,
    /// Whether the check passed.
    pub verdict: Verdict,
}

/// The result of a metric check.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Verdict {
    /// Within the threshold.
    Pass,
    /// Over the threshold.
    Fail,
    /// Not enough data to judge (counts as neither pass nor fail).
    NoData,
}
