//! Registry credentials of one object, from the Secrets `spec.runtime.imagePullSecrets` names.

use k8s_openapi::api::core::v1::Secret;
use modelplane_verify::DockerConfig;

use crate::{desired::Reference, health::Blocker};

/// Key of a `kubernetes.io/dockerconfigjson` Secret that holds the docker config.
pub const DOCKER_CONFIG_KEY: &str = ".dockerconfigjson";

/// Condition reason of a pull secret that exists but holds no usable docker config.
pub const INVALID_PULL_SECRET: &str = "InvalidPullSecret";

/// Merges the docker configs of the pull secrets `found` (each named, with the Secret if it
/// exists) in `namespace`. Where two name the same registry the one listed first wins, as
/// kubelet tries them in order. `None` when the spec names no pull secret.
pub fn pull_credentials(
    namespace: &str,
    found: Vec<(String, Option<Secret>)>,
) -> Result<Option<DockerConfig>, Blocker> {
    if found.is_empty() {
        return Ok(None);
    }
    let mut merged = DockerConfig::default();
    for (index, (name, secret)) in found.into_iter().enumerate().rev() {
        let field = format!("spec.runtime.imagePullSecrets[{index}]");
        let Some(secret) = secret else {
            return Err(Reference::Secret { name, field }.missing(namespace));
        };
        let invalid = |problem: String| Blocker {
            reason: INVALID_PULL_SECRET,
            message: format!(
                "Secret {name:?} named by {field} {problem}; make it a kubernetes.io/dockerconfigjson Secret"
            ),
        };
        let bytes = secret
            .data
            .as_ref()
            .and_then(|data| data.get(DOCKER_CONFIG_KEY))
            .ok_or_else(|| invalid(format!("has no key {DOCKER_CONFIG_KEY}")))?;
        let config = DockerConfig::from_json(&bytes.0)
            .map_err(|error| invalid(format!("holds no valid {DOCKER_CONFIG_KEY}: {error}")))?;
        merged.merge(config);
    }
    Ok(Some(merged))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use serde_json::json;

    use super::*;

    fn secret(key: &str, config: serde_json::Value) -> Option<Secret> {
        let bytes = ByteString(config.to_string().into_bytes());
        Some(Secret {
            type_: Some("kubernetes.io/dockerconfigjson".into()),
            data: Some(BTreeMap::from([(key.to_owned(), bytes)])),
            ..Secret::default()
        })
    }

    fn auths(host: &str, user: &str) -> serde_json::Value {
        json!({"auths": {host: {"username": user, "password": "p"}}})
    }

    fn user_for(config: &DockerConfig, host: &str) -> Option<String> {
        config.credentials_for(host).map(|c| c.username.clone())
    }

    #[test]
    fn no_pull_secrets_mean_no_extra_credentials() {
        assert_eq!(pull_credentials("ns", Vec::new()), Ok(None));
    }

    #[test]
    fn pull_secrets_merge_and_the_first_listed_wins() {
        let found = vec![
            (
                "a".into(),
                secret(DOCKER_CONFIG_KEY, auths("r.example", "first")),
            ),
            (
                "b".into(),
                secret(DOCKER_CONFIG_KEY, auths("r.example", "second")),
            ),
            (
                "c".into(),
                secret(DOCKER_CONFIG_KEY, auths("other.example", "third")),
            ),
        ];
        let merged = pull_credentials("ns", found).expect("valid").expect("some");
        assert_eq!(user_for(&merged, "r.example").as_deref(), Some("first"));
        assert_eq!(user_for(&merged, "other.example").as_deref(), Some("third"));
    }

    #[test]
    fn unusable_pull_secrets_are_reported_with_a_reason() {
        let cases = [
            ("missing", None, "SecretNotFound"),
            (
                "wrong key",
                secret(".dockercfg", auths("r.example", "u")),
                INVALID_PULL_SECRET,
            ),
            (
                "not a docker config",
                secret(DOCKER_CONFIG_KEY, json!(["no"])),
                INVALID_PULL_SECRET,
            ),
        ];
        for (name, secret, reason) in cases {
            let blocker = pull_credentials("ns", vec![("pull".into(), secret)]).expect_err(name);
            assert_eq!(blocker.reason, reason, "{name}");
            assert!(
                blocker.message.contains("\"pull\""),
                "{name}: {}",
                blocker.message
            );
            assert!(
                blocker.message.contains("spec.runtime.imagePullSecrets[0]"),
                "{name}: {}",
                blocker.message
            );
        }
    }
}
