//! Reading what a check needs from the object's namespace: the trusted keys of
//! `spec.verification.keys` and the credentials of `spec.runtime.imagePullSecrets`. Shared
//! by the ModelDeployment gate and the Canary check.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use modelplane_api::{model_deployment::ModelDeploymentSpec, runtime_config::TrustedKey};
use modelplane_verify::{DockerConfig, Failure, KeySet, load_keys};

use super::pull_credentials;
use crate::{Result, health::Blocker};

/// The PEM keys named by `spec.verification.keys`, read from Secrets in `namespace`: parsed,
/// and as text (for the runtime, which verifies HTTP and PVC model files with them).
pub async fn trusted_keys(
    client: &Client,
    namespace: &str,
    spec: &ModelDeploymentSpec,
) -> Result<Result<(KeySet, Vec<TrustedKey>), Failure>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut entries = Vec::new();
    for key in spec.verification.iter().flat_map(|v| &v.keys) {
        let secret = api.get_opt(&key.secret_ref.name).await?;
        let pem = secret
            .and_then(|s| s.data)
            .and_then(|data| data.get(&key.secret_ref.key).map(|bytes| bytes.0.clone()));
        entries.push((
            format!("{}/{}", key.secret_ref.name, key.secret_ref.key),
            pem,
        ));
    }
    let trusted = entries
        .iter()
        .filter_map(|(name, pem)| {
            let pem = String::from_utf8(pem.clone()?).ok()?;
            Some(TrustedKey {
                name: name.clone(),
                pem,
            })
        })
        .collect();
    Ok(load_keys(entries).map(|keys| (keys, trusted)))
}

/// The credentials of the Secrets `spec.runtime.imagePullSecrets` names in `namespace`,
/// merged; a missing or unusable one is the [`Blocker`] to report.
pub async fn pull_secret_credentials(
    client: &Client,
    namespace: &str,
    spec: &ModelDeploymentSpec,
) -> Result<Result<Option<DockerConfig>, Blocker>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut found = Vec::new();
    for secret in &spec.runtime.image_pull_secrets {
        found.push((secret.name.clone(), api.get_opt(&secret.name).await?));
    }
    Ok(pull_credentials(namespace, found))
}
