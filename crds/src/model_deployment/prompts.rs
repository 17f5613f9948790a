//! `spec.prompts`: prompt templates whose variants are chosen per request by feature
//! flags (A/B experiments), for the `generate` task.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{HEADER_NAME_PATTERN, SHORT_TEXT_MAX};

/// Most prompts in a ModelDeployment or Canary.
pub const MAX_PROMPTS: u32 = 16;
/// Most variants of one prompt.
pub const MAX_VARIANTS: u32 = 16;
/// Most rules of one prompt.
pub const MAX_RULES: u32 = 16;
/// Longest system prompt.
pub const MAX_SYSTEM_PROMPT: u32 = 65536;

/// A named prompt template with variants; the rules choose the variant each request gets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.default in self.variants").message("default must name one of variants"))]
#[x_kube(validation = Rule::new("self.rules.all(r, (!has(r.variant) || r.variant in self.variants) && (!has(r.split) || r.split.all(v, v in self.variants)))").message("rules may only name variants defined in variants"))]
pub struct Prompt {
    /// Name of the prompt, unique within the list.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// The variants by name (e.g. `v1`, `v2`).
    #[schemars(extend("minProperties" = 1, "maxProperties" = MAX_VARIANTS))]
    pub variants: BTreeMap<String, PromptVariant>,
    /// Rules evaluated in order; the first that matches picks the variant.
    #[serde(default)]
    #[schemars(length(max = MAX_RULES))]
    pub rules: Vec<PromptRule>,
    /// The variant used when no rule matches.
    #[schemars(length(min = 1, max = 63))]
    pub default: String,
}

/// One version of a prompt.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromptVariant {
    /// System message placed before the conversation.
    #[schemars(length(max = MAX_SYSTEM_PROMPT))]
    pub system: String,
}

/// A targeting rule: `when` (optional) restricts it to matching requests; it then picks
/// either one `variant` or a weighted `split` between variants.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.variant) != has(self.split)").message("exactly one of variant or split must be set"))]
#[x_kube(validation = Rule::new("!has(self.stickyBy) || has(self.split)").message("stickyBy requires split"))]
#[x_kube(validation = Rule::new("!has(self.split) || self.split.exists(v, self.split[v] > 0)").message("split needs at least one weight above 0"))]
pub struct PromptRule {
    /// Evaluation-context attributes that must all equal the given values: `tenant` is
    /// the caller's tenant, any other key is a request header name (lowercase).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 8, "additionalProperties" = {"type": "string", "maxLength": SHORT_TEXT_MAX}))]
    pub when: BTreeMap<String, String>,
    /// The variant to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub variant: Option<String>,
    /// Relative weights of variants (e.g. `{v1: 90, v2: 10}`), each 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend(
        "minProperties" = 1,
        "maxProperties" = MAX_VARIANTS,
        "additionalProperties" = {"type": "integer", "format": "int32", "minimum": 0, "maximum": 100},
    ))]
    pub split: Option<BTreeMap<String, i32>>,
    /// Request header whose value keeps a caller on the same variant (e.g. `x-user-id`);
    /// without it each request is assigned independently.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = SHORT_TEXT_MAX), pattern(HEADER_NAME_PATTERN))]
    pub sticky_by: Option<String>,
}
