//! `spec.pipeline`: a DAG of models and built-in steps served as one endpoint.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{
    DNS_LABEL_MAX, DNS_LABEL_PATTERN, DNS_SUBDOMAIN_MAX, DNS_SUBDOMAIN_PATTERN, IDENTIFIER_PATTERN,
    free_form_object,
};
use crate::units::{DURATION_PATTERN, MAX_UNIT_STRING};

/// Most nodes in a pipeline.
pub const MAX_PIPELINE_NODES: u32 = 32;
/// Most edges in a pipeline.
pub const MAX_PIPELINE_EDGES: u32 = 64;

/// Pattern of an edge endpoint `node.port` (`embed.embedding`).
pub const PORT_REF_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\.[A-Za-z][A-Za-z0-9_]*$";

/// A DAG of nodes; each edge feeds an output of one node into an input of another.
/// Nodes run as soon as their inputs are ready; the runtime refuses a graph with a cycle.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.edges.all(e, self.nodes.exists(n, e.from.startsWith(n.name + '.')) && self.nodes.exists(n, e.to.startsWith(n.name + '.')))").message("every edge must start and end at a node of nodes"))]
pub struct Pipeline {
    /// The steps of the pipeline; names are unique.
    #[schemars(length(min = 1, max = MAX_PIPELINE_NODES))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub nodes: Vec<PipelineNode>,
    /// Data flow between nodes: `from` is `node.output`, `to` is `node.input`.
    #[serde(default)]
    #[schemars(length(max = MAX_PIPELINE_EDGES))]
    pub edges: Vec<PipelineEdge>,
}

/// One step of a pipeline: exactly one of `model`, `modelDeployment` or `builtin`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.model) ? 1 : 0) + (has(self.modelDeployment) ? 1 : 0) + (has(self.builtin) ? 1 : 0) == 1").message("exactly one of model, modelDeployment or builtin must be set"))]
pub struct PipelineNode {
    /// Name of the node, used in edges.
    #[schemars(length(min = 1, max = DNS_LABEL_MAX), pattern(DNS_LABEL_PATTERN))]
    pub name: String,
    /// A ModelDeployment in the same namespace whose model is loaded into this
    /// pipeline's own runtime pods and run in-process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DNS_SUBDOMAIN_MAX), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub model: Option<String>,
    /// A ModelDeployment in the same namespace called over the network (its Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DNS_SUBDOMAIN_MAX), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub model_deployment: Option<String>,
    /// A step built into the runtime, by name (e.g. `topK`); the runtime refuses unknown names at load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63), pattern(IDENTIFIER_PATTERN))]
    pub builtin: Option<String>,
    /// Arguments of a built-in step (e.g. `{k: 5}`), kept as written.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "free_form_object")]
    pub args: BTreeMap<String, serde_json::Value>,
    /// Deadline of this node (a duration, e.g. `10s`); the request's own deadline when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_UNIT_STRING), pattern(DURATION_PATTERN))]
    pub timeout: Option<String>,
}

/// A data-flow edge between two nodes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineEdge {
    /// Output of the producing node, as `node.output` (e.g. `embed.embedding`).
    #[schemars(length(max = 128), pattern(PORT_REF_PATTERN))]
    pub from: String,
    /// Input of the consuming node, as `node.input` (e.g. `search.query`).
    #[schemars(length(max = 128), pattern(PORT_REF_PATTERN))]
    pub to: String,
}
