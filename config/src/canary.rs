//! A model's canary: a candidate version served beside the stable (default) one, which
//! the runtime routes part of the model's traffic to ([`CanaryConfig`]).
//!
//! The runtime decides per request that names no version: a [`MatchRule`] that matches
//! sends it to the candidate; else, when `stickyBy` names a header the request carries,
//! a fixed hash of that header's value does (the same value gets the same version on
//! every pod, and raising the weight only moves values to the candidate); else the
//! weight does, exactly: of every 100 such requests, `weight` go to the candidate.
//! A request that names a version gets that version. Changing any of it reloads no model.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, ModelConfig, is_tenant_name};

/// The part of a model's traffic that goes to a candidate version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryConfig {
    /// The candidate's version label: one of the model's versions, not its default one
    /// (the default version is the stable one).
    pub candidate: String,
    /// Percent (0-100) of the requests no rule matched that go to the candidate.
    #[serde(default)]
    pub weight: u32,
    /// Requests any of these rules matches go to the candidate, whatever the weight.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<MatchRule>,
    /// A request header (a user id, say): requests that carry it keep one version per
    /// value, chosen by a fixed hash of the value against the weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_by: Option<String>,
}

/// Requests that always go to the candidate: those whose headers all equal `headers`
/// and (when `tenants` is given) whose tenant is one of `tenants`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchRule {
    /// Header name (case-insensitive) to the exact value it must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Tenants (as identity maps requests to them) the rule is for; empty: any tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
}

/// Longest header name a rule may name.
const MAX_HEADER_NAME: usize = 256;

/// Whether `name` is an HTTP field name (an RFC 9110 token of at most 256 bytes), as
/// header rules need.
pub fn is_header_name(name: &str) -> bool {
    (1..=MAX_HEADER_NAME).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Whether a request header can carry `value` as the runtime reads it: visible ASCII,
/// spaces and tabs, none leading or trailing (HTTP drops those).
fn is_matchable_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        && value.trim_matches([' ', '\t']).len() == value.len()
}

impl CanaryConfig {
    /// Checks the canary of `model`: its candidate, weight, rules and sticky header.
    pub(crate) fn validate(&self, model: &ModelConfig) -> Result<(), ConfigError> {
        let invalid = |field: String, reason: String| ConfigError::InvalidCanary {
            model: model.name.clone(),
            field,
            reason,
        };
        let candidate = &self.candidate;
        if !model.versions.iter().any(|v| v.version == *candidate) {
            return Err(invalid(
                "candidate".into(),
                format!("{candidate:?} is not a version of model {}", model.name),
            ));
        }
        if model.default_version() == Some(candidate.as_str()) {
            let unset = if model.default_version.is_none() {
                " (defaultVersion is unset, so the last listed version is the default: \
                 set defaultVersion to the stable version)"
            } else {
                ""
            };
            return Err(invalid(
                "candidate".into(),
                format!(
                    "{candidate:?} is the model's default version, the stable one; the \
                     candidate must be another version{unset}"
                ),
            ));
        }
        if self.weight > 100 {
            return Err(invalid(
                "weight".into(),
                format!("{} is not a percentage (0-100)", self.weight),
            ));
        }
        for (index, rule) in self.rules.iter().enumerate() {
            rule.validate()
                .map_err(|(field, reason)| invalid(format!("match[{index}]{field}"), reason))?;
        }
        match &self.sticky_by {
            Some(header) if !is_header_name(header) => Err(invalid(
                "stickyBy".into(),
                format!("{header:?} is not a header name"),
            )),
            _ => Ok(()),
        }
    }
}

impl MatchRule {
    /// Checks one rule; the error names the field below the rule (`.headers`, ...).
    fn validate(&self) -> Result<(), (String, String)> {
        if self.headers.is_empty() && self.tenants.is_empty() {
            return Err((
                String::new(),
                "the rule names no headers and no tenants (it would match every request)".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (name, value) in &self.headers {
            if !is_header_name(name) {
                return Err((".headers".into(), format!("{name:?} is not a header name")));
            }
            if !names.insert(name.to_ascii_lowercase()) {
                return Err((
                    ".headers".into(),
                    format!("{name:?} is named twice (header names are case-insensitive)"),
                ));
            }
            if !is_matchable_value(value) {
                return Err((
                    format!(".headers.{name}"),
                    format!(
                        "{value:?} can never match: use visible ASCII and spaces, none \
                         leading or trailing"
                    ),
                ));
            }
        }
        match self.tenants.iter().find(|tenant| !is_tenant_name(tenant)) {
            Some(tenant) => Err((
                ".tenants".into(),
                format!("{tenant:?} is not a tenant name"),
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{ConfigError, RuntimeConfig};

    /// A model `m` with versions v1 (the default) and v2, and `canary` as its canary.
    fn with_canary(canary: &str) -> Result<RuntimeConfig, ConfigError> {
        RuntimeConfig::from_yaml(&format!(
            "models:
- name: m
  defaultVersion: v1
  versions:
  - {{version: v1, source: {{path: /m/1/model.pt}}}}
  - {{version: v2, source: {{path: /m/2/model.pt}}}}
  canary: {canary}
"
        ))
    }

    #[test]
    fn a_canary_parses_renders_and_parses_back() {
        let config = with_canary(
            "{candidate: v2, weight: 5, stickyBy: x-user-id, \
             match: [{headers: {x-canary: 'true'}, tenants: [beta]}, {tenants: [qa]}]}",
        )
        .expect("valid");
        let canary = config.models[0].canary.as_ref().expect("a canary");
        assert_eq!((canary.candidate.as_str(), canary.weight), ("v2", 5));
        assert_eq!(canary.sticky_by.as_deref(), Some("x-user-id"));
        assert_eq!(canary.rules.len(), 2);
        assert_eq!(canary.rules[0].headers["x-canary"], "true");
        assert_eq!(canary.rules[1].tenants, ["qa"]);
        let text = config.to_yaml().expect("renders");
        assert!(text.contains("stickyBy: x-user-id"), "{text}");
        assert!(text.contains("match:"), "{text}");
        assert_eq!(
            RuntimeConfig::from_yaml(&text).expect("parses back"),
            config
        );
    }

    #[test]
    fn a_model_without_a_canary_renders_none_and_the_weight_defaults_to_zero() {
        let config = with_canary("{candidate: v2}").expect("valid");
        assert_eq!(config.models[0].canary.as_ref().map(|c| c.weight), Some(0));
        let mut plain = config.clone();
        plain.models[0].canary = None;
        let text = plain.to_yaml().expect("renders");
        assert!(!text.contains("canary"), "{text}");
    }

    #[test]
    fn a_malformed_canary_is_refused_naming_the_field() {
        let cases = [
            (
                "{candidate: v9, weight: 5}",
                r#"models[m].canary.candidate: "v9" is not a version of model m"#,
            ),
            (
                "{candidate: v1, weight: 5}",
                r#"models[m].canary.candidate: "v1" is the model's default version"#,
            ),
            (
                "{candidate: v2, weight: 101}",
                "models[m].canary.weight: 101 is not a percentage (0-100)",
            ),
            (
                "{candidate: v2, match: [{headers: {}, tenants: []}]}",
                "models[m].canary.match[0]: the rule names no headers and no tenants",
            ),
            (
                "{candidate: v2, match: [{tenants: [a]}, {}]}",
                "models[m].canary.match[1]: the rule names no headers",
            ),
            (
                "{candidate: v2, match: [{headers: {'x canary': 'true'}}]}",
                r#"models[m].canary.match[0].headers: "x canary" is not a header name"#,
            ),
            (
                "{candidate: v2, match: [{headers: {'x-a:': 'true'}}]}",
                r#"models[m].canary.match[0].headers: "x-a:" is not a header name"#,
            ),
            (
                "{candidate: v2, match: [{headers: {X-Canary: a, x-canary: b}}]}",
                "is named twice (header names are case-insensitive)",
            ),
            (
                "{candidate: v2, match: [{headers: {x-canary: ' true'}}]}",
                r#"models[m].canary.match[0].headers.x-canary: " true" can never match"#,
            ),
            (
                "{candidate: v2, match: [{headers: {x-canary: \"caf\\u00e9\"}}]}",
                "models[m].canary.match[0].headers.x-canary:",
            ),
            (
                "{candidate: v2, match: [{tenants: [Beta_Testers]}]}",
                r#"models[m].canary.match[0].tenants: "Beta_Testers" is not a tenant name"#,
            ),
            (
                "{candidate: v2, stickyBy: 'x user'}",
                r#"models[m].canary.stickyBy: "x user" is not a header name"#,
            ),
            (
                "{candidate: v2, stickyBy: ''}",
                r#"models[m].canary.stickyBy: "" is not a header name"#,
            ),
        ];
        for (canary, expected) in cases {
            let err = with_canary(canary).expect_err(canary);
            assert!(
                matches!(err, ConfigError::InvalidCanary { .. }),
                "{canary}: {err:?}"
            );
            let message = err.to_string();
            assert!(message.contains(expected), "{canary}: {message}");
        }
    }

    #[test]
    fn the_default_version_when_unset_is_the_last_listed_and_cannot_be_the_candidate() {
        let err = RuntimeConfig::from_yaml(
            "models: [{name: m, versions: [{version: v1, source: {path: /a}}, \
             {version: v2, source: {path: /b}}], canary: {candidate: v2, weight: 5}}]",
        )
        .expect_err("v2 is the default");
        assert!(
            err.to_string()
                .contains("set defaultVersion to the stable version"),
            "{err}"
        );
    }

    #[test]
    fn unknown_canary_fields_and_negative_weights_are_refused() {
        for (canary, expected) in [
            ("{candidate: v2, steps: [5]}", "steps"),
            ("{candidate: v2, weight: -1}", "weight"),
            ("{candidate: v2, match: [{header: {a: b}}]}", "header"),
        ] {
            let err = with_canary(canary).expect_err(canary);
            assert!(err.to_string().contains(expected), "{canary}: {err}");
        }
    }
}
