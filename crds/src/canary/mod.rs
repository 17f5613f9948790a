//! `Canary`: "move this ModelDeployment to a new version step by step, and roll back if it is worse".

mod analysis;
mod status;

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use analysis::{
    Analysis, BUILTIN_METRICS, InconclusivePolicy, MAX_METRICS, MAX_QUERY, MetricCheck,
    MetricSource, PrometheusQuery, Threshold, ThresholdError, ThresholdValue,
};
pub use status::{
    AnalysisResult, CanaryPhase, CanaryStatus, CandidateRevision, MetricResult, Promotion,
    SpecChange, Verdict, condition_types,
};

use crate::model_deployment::{MAX_PROMPTS, ModelFormat, ModelSource, Prompt, TokenizerRef};
use crate::schema::{
    DNS_LABEL_MAX, DNS_LABEL_PATTERN, DNS_SUBDOMAIN_MAX, DNS_SUBDOMAIN_PATTERN, OCI_REFERENCE_MAX,
    OCI_REFERENCE_PATTERN, SHORT_TEXT_MAX,
};
use crate::units::{DURATION_PATTERN, MAX_UNIT_STRING, TIME_OF_DAY_PATTERN};

/// Most steps of a Canary.
pub const MAX_STEPS: usize = 10;
/// Most match rules of a Canary.
pub const MAX_MATCH_RULES: u32 = 8;
/// An HTTP header name in lower case (gRPC metadata keys are lower case too).
pub const HEADER_NAME_PATTERN: &str = r"^[a-z0-9!#$%&'*+.^_`|~-]+$";

/// The CEL rule on `spec.steps`: each weight is below the next one. Kubernetes CEL has
/// no index ranges, so the pairwise comparison is written out for every position up to
/// [`MAX_STEPS`].
pub fn steps_increasing_rule() -> String {
    (1..MAX_STEPS)
        .map(|i| {
            format!(
                "(size(self) <= {i} || self[{}].weight < self[{i}].weight)",
                i - 1
            )
        })
        .collect::<Vec<_>>()
        .join(" && ")
}

/// The CEL rule on `spec`: a runtime-image candidate is split by replica count, behind the
/// Service's load balancing, so no rule can pick its requests and no header keeps a user on it.
pub const REPLICA_SPLIT_RULE: &str = "!has(self.candidate.runtime) || ((!has(self.match) || size(self.match) == 0) && !has(self.stickyBy))";
/// The message of [`REPLICA_SPLIT_RULE`].
pub const REPLICA_SPLIT_MESSAGE: &str = "spec.match and spec.stickyBy need a candidate without spec.candidate.runtime: a new runtime image runs as a second Deployment weighted by replica count, which cannot route by header or tenant or keep a user on one version";

/// Desired rollout of a new version of a ModelDeployment.
// Every printer column repeats `type_ = ...`, which clippy mistakes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "serving.modelplane.io",
    version = "v1alpha1",
    kind = "Canary",
    namespaced,
    status = "CanaryStatus",
    shortname = "canary",
    category = "modelplane",
    doc = "A step-by-step rollout of a new model, image or prompt version of a ModelDeployment."
)]
#[kube(printcolumn(
    name = "Phase",
    type_ = "string",
    json_path = ".status.phase",
    description = "Rollout phase"
))]
#[kube(printcolumn(
    name = "Weight",
    type_ = "integer",
    json_path = ".status.weight",
    description = "Percent of traffic on the candidate"
))]
#[kube(printcolumn(
    name = "Step",
    type_ = "integer",
    json_path = ".status.step",
    description = "Index of the current step"
))]
#[kube(printcolumn(
    name = "Age",
    type_ = "date",
    json_path = ".metadata.creationTimestamp"
))]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(REPLICA_SPLIT_RULE).message(REPLICA_SPLIT_MESSAGE))]
pub struct CanarySpec {
    /// The ModelDeployment (same namespace) to move to the candidate.
    pub target_ref: TargetRef,
    /// What changes: the candidate's model source, runtime image and/or prompts.
    pub candidate: Candidate,
    /// Traffic weights to walk through, strictly increasing; after the last step passes, the candidate is promoted.
    #[schemars(length(min = 1, max = MAX_STEPS))]
    #[x_kube(validation = Rule::new(steps_increasing_rule()).message("spec.steps[*].weight must be strictly increasing"))]
    pub steps: Vec<CanaryStep>,
    /// Requests always sent to the candidate, whatever the weight.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_MATCH_RULES))]
    pub match_: Vec<CanaryMatch>,
    /// A request header (e.g. `x-user-id`) whose value keeps a user on one version: the
    /// same value always gets the same version at a given weight, on every pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), pattern(HEADER_NAME_PATTERN))]
    pub sticky_by: Option<String>,
    /// Only advance (or promote) inside this daily time window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// How the candidate is judged.
    #[serde(default)]
    pub analysis: Analysis,
    /// Hold at the current step.
    #[serde(default)]
    pub paused: bool,
    /// Roll back to stable now.
    #[serde(default)]
    pub abort: bool,
}

/// A ModelDeployment in the Canary's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// Name of the ModelDeployment.
    #[schemars(length(max = DNS_SUBDOMAIN_MAX), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

/// The new version; fields left unset stay as in the target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.model) || has(self.runtime) || has(self.prompts)").message("candidate must change model, runtime or prompts"))]
pub struct Candidate {
    /// The candidate model; loaded side by side with stable in each runtime pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<CandidateModel>,
    /// The candidate runtime; a new image runs as a second Deployment behind the same
    /// Service, weighted by replica count (coarse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<CandidateRuntime>,
    /// Candidate prompts replacing the target's `spec.prompts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_PROMPTS))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub prompts: Option<Vec<Prompt>>,
}

/// A candidate model version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CandidateModel {
    /// Where the candidate model file comes from: exactly one of `oci`, `http` or `pvc`.
    pub source: ModelSource,
    /// File format of the candidate; the target's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ModelFormat>,
    /// Tokenizer of the candidate; the target's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<TokenizerRef>,
}

/// A candidate runtime version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CandidateRuntime {
    /// Container image of the candidate runtime.
    #[schemars(length(max = OCI_REFERENCE_MAX), pattern(OCI_REFERENCE_PATTERN))]
    pub image: String,
}

/// One step of a rollout.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Percent of traffic sent to the candidate, 0–100.
    #[schemars(range(min = 0, max = 100))]
    pub weight: i32,
    /// How long to hold this step (analyses keep running) before advancing (a duration, e.g. `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_UNIT_STRING), pattern(DURATION_PATTERN))]
    pub pause: Option<String>,
}

/// Requests that always go to the candidate: all given fields must match.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.headers) && size(self.headers) > 0) || (has(self.tenants) && size(self.tenants) > 0)").message("match needs headers or tenants"))]
pub struct CanaryMatch {
    /// Request headers that must have exactly these values (e.g. `x-canary: "true"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 8, "additionalProperties" = {"type": "string", "maxLength": SHORT_TEXT_MAX}))]
    pub headers: BTreeMap<String, String>,
    /// Tenants whose requests all go to the candidate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = DNS_LABEL_MAX), pattern(DNS_LABEL_PATTERN)))]
    pub tenants: Vec<String>,
}

/// A daily time window.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// Start, `HH:MM` (24-hour).
    #[schemars(pattern(TIME_OF_DAY_PATTERN))]
    pub start: String,
    /// End, `HH:MM` (24-hour); earlier than `start` means the window spans midnight.
    #[schemars(pattern(TIME_OF_DAY_PATTERN))]
    pub end: String,
    /// IANA time zone of `start` and `end` (e.g. `Europe/Berlin`).
    #[serde(default = "default_time_zone")]
    #[schemars(
        length(min = 1, max = 64),
        pattern(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")
    )]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}
