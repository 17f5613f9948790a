//! `ModelDeployment`: "serve this model, this way".

mod fallback;
mod model;
mod pipeline;
mod policy;
mod prompts;
mod runtime;
mod status;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

pub use fallback::{
    Breaker, Fallback, FixedDatatype, FixedResponse, FixedTensor, MAX_FIXED_ELEMENTS,
    MAX_FIXED_OUTPUTS, MAX_FIXED_TEXT,
};
pub use model::{
    HttpSource, ModelFormat, ModelSource, ModelSpec, PvcSource, SignatureBundleRef, Task,
    TokenizerRef,
};
pub use pipeline::{
    MAX_PIPELINE_EDGES, MAX_PIPELINE_NODES, PORT_REF_PATTERN, Pipeline, PipelineEdge, PipelineNode,
};
pub use policy::{
    Detector, Redaction, SecretKeyRef, Verification, VerificationKey, VerificationMode,
};
pub use prompts::{
    MAX_PROMPTS, MAX_RULES, MAX_SYSTEM_PROMPT, MAX_VARIANTS, Prompt, PromptRule, PromptVariant,
};
pub use runtime::{
    AdaptiveLimit, Batching, Device, LocalSecretRef, RuntimeLimits, RuntimeResources, RuntimeSpec,
};
pub use status::{Endpoints, ModelDeploymentStatus, Revision, condition_types};

use crate::schema::{DNS_LABEL_MAX, DNS_LABEL_PATTERN};

/// Desired state of a ModelDeployment: one model (or a pipeline of models) served by
/// modelplane-runtime pods.
// Every printer column repeats `type_ = ...`, which clippy mistakes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "serving.modelplane.io",
    version = "v1alpha1",
    kind = "ModelDeployment",
    namespaced,
    status = "ModelDeploymentStatus",
    shortname = "md",
    category = "modelplane",
    doc = "A model (or pipeline of models) served by modelplane-runtime pods."
)]
// The scale subresource lets a HorizontalPodAutoscaler (or `kubectl scale`) set
// `spec.runtime.replicas`; the operator admits the new count against the tenant's quota
// like any other spec edit.
#[kube(scale(
    spec_replicas_path = ".spec.runtime.replicas",
    status_replicas_path = ".status.replicas",
    label_selector_path = ".status.selector"
))]
#[kube(printcolumn(
    name = "Ready",
    type_ = "string",
    json_path = ".status.conditions[?(@.type==\"Ready\")].status",
    description = "Whether the model is serving"
))]
#[kube(printcolumn(
    name = "Model",
    type_ = "string",
    json_path = ".spec.model.name",
    description = "Name the model is served under"
))]
#[kube(printcolumn(
    name = "Revision",
    type_ = "string",
    json_path = ".status.revision.id",
    description = "Revision now serving"
))]
#[kube(printcolumn(
    name = "Age",
    type_ = "date",
    json_path = ".metadata.creationTimestamp"
))]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.model) != has(self.pipeline)").message("exactly one of spec.model or spec.pipeline must be set"))]
#[x_kube(validation = Rule::new("!has(self.prompts) || size(self.prompts) == 0 || (has(self.model) && self.model.task == 'generate')").message("spec.prompts requires spec.model.task generate"))]
pub struct ModelDeploymentSpec {
    /// Tenant charged for this deployment; defaults to the namespace label
    /// `modelplane.io/tenant`, else the namespace name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = DNS_LABEL_MAX), pattern(DNS_LABEL_PATTERN))]
    pub tenant: Option<String>,
    /// The model to serve; exactly one of `model` or `pipeline` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSpec>,
    /// How the runtime pods run.
    #[serde(default)]
    pub runtime: RuntimeSpec,
    /// Cosign verification of the runtime image and the model artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// The circuit breaker of this model's versions and where requests go while it is
    /// open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// Redaction of personal data in responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction: Option<Redaction>,
    /// Instead of `model`: a DAG of models and built-in steps served as one endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<Pipeline>,
    /// Prompt templates with flag-driven variants (task `generate` only); names are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_PROMPTS))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub prompts: Vec<Prompt>,
}
