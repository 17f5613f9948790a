//! Fields the API accepts but the operator does not act on yet, reported in the
//! `FieldsIgnored` condition and a Warning Event so a user is never left to guess.
//!
//! The issue that implements a field deletes its entry from [`NOT_ACTED_ON`].

use modelplane_api::model_deployment::ModelDeploymentSpec;

/// A spec field the operator accepts but does not act on yet.
#[derive(Debug)]
pub struct UnsupportedField {
    /// Path of the field, e.g. `spec.redaction`.
    pub path: &'static str,
    /// What does not happen although the field asks for it.
    pub consequence: &'static str,
    /// Whether `spec` asks for it (a field set to its "off" value asks for nothing).
    is_set: fn(&ModelDeploymentSpec) -> bool,
}

/// Every field accepted but not acted on yet, in spec order.
pub const NOT_ACTED_ON: &[UnsupportedField] = &[
    UnsupportedField {
        path: "spec.redaction",
        consequence: "PII redaction is not implemented yet; responses are not redacted",
        is_set: |spec| spec.redaction.as_ref().is_some_and(|r| r.enabled),
    },
    UnsupportedField {
        path: "spec.pipeline",
        consequence: "pipelines are not served yet; nothing is rolled out (Ready=False, reason PipelineNotSupported)",
        is_set: |spec| spec.pipeline.is_some(),
    },
    UnsupportedField {
        path: "spec.prompts",
        consequence: "prompt templates are not applied yet; no variant's system prompt is added to requests",
        is_set: |spec| !spec.prompts.is_empty(),
    },
];

/// Type of the condition naming the fields of the spec that are not acted on yet.
pub use modelplane_api::model_deployment::condition_types::FIELDS_IGNORED;
/// Reason of `FieldsIgnored=True` and of its Warning Event.
pub const UNSUPPORTED_FIELDS: &str = "UnsupportedFields";

/// The fields `spec` sets that the operator does not act on yet.
pub fn unsupported_fields(spec: &ModelDeploymentSpec) -> Vec<&'static UnsupportedField> {
    NOT_ACTED_ON.iter().filter(|f| (f.is_set)(spec)).collect()
}

/// The `FieldsIgnored` message naming each of `fields`; `None` when there are none
/// (the condition is then absent).
pub fn ignored_message(fields: &[&UnsupportedField]) -> Option<String> {
    if fields.is_empty() {
        return None;
    }
    let each = fields
        .iter()
        .map(|f| format!("{} ({})", f.path, f.consequence))
        .collect::<Vec<_>>()
        .join("; ");
    Some(format!("accepted but not acted on yet: {each}"))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn spec(extra: Value) -> ModelDeploymentSpec {
        let mut spec = json!({
            "model": {"name": "lm", "task": "generate", "source": {"pvc": {"claimName": "m", "path": "lm"}}},
        });
        for (key, value) in extra.as_object().expect("object") {
            spec[key] = value.clone();
        }
        serde_json::from_value(spec).expect("spec")
    }

    fn paths(spec: &ModelDeploymentSpec) -> Vec<&'static str> {
        unsupported_fields(spec).iter().map(|f| f.path).collect()
    }

    #[test]
    fn each_field_set_is_named_and_nothing_else() {
        let prompt = json!([{"name": "p", "variants": {"v1": {"system": "s"}}, "default": "v1"}]);
        let cases: [(Value, &[&str]); 9] = [
            (json!({}), &[]),
            // Acted on: the runtime's breaker and chain.
            (json!({"fallback": {"modelDeployment": "small"}}), &[]),
            (json!({"redaction": {}}), &["spec.redaction"]),
            (
                json!({"redaction": {"enabled": true, "detectors": ["email"]}}),
                &["spec.redaction"],
            ),
            (json!({"redaction": {"enabled": false}}), &[]),
            (json!({"prompts": prompt}), &["spec.prompts"]),
            (json!({"prompts": []}), &[]),
            (
                json!({"model": null, "pipeline": {"nodes": [{"name": "a", "model": "lm"}]}}),
                &["spec.pipeline"],
            ),
            (
                json!({"fallback": {"modelDeployment": "small"}, "redaction": {}, "prompts": prompt}),
                &["spec.redaction", "spec.prompts"],
            ),
        ];
        for (extra, want) in cases {
            assert_eq!(paths(&spec(extra.clone())), want, "{extra}");
        }
    }

    #[test]
    fn the_message_names_each_field_and_what_does_not_happen() {
        assert_eq!(ignored_message(&[]), None);
        let prompt = json!([{"name": "p", "variants": {"v1": {"system": "s"}}, "default": "v1"}]);
        let fields = unsupported_fields(&spec(json!({"redaction": {}, "prompts": prompt})));
        let message = ignored_message(&fields).expect("message");
        assert_eq!(
            message,
            "accepted but not acted on yet: spec.redaction (PII redaction is not implemented \
             yet; responses are not redacted); spec.prompts (prompt templates are not applied \
             yet; no variant's system prompt is added to requests)"
        );
    }

    #[test]
    fn every_entry_names_a_spec_field_once() {
        let mut seen = std::collections::BTreeSet::new();
        for field in NOT_ACTED_ON {
            assert!(field.path.starts_with("spec."), "{}", field.path);
            assert!(seen.insert(field.path), "{} listed twice", field.path);
        }
    }
}
