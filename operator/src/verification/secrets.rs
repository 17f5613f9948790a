//! Reading what a check needs from the object's namespace: the trusted keys of
//! `spec.verification.keys` and the credentials of `spec.runtime.imagePullSecrets`. Shared
//! by the ModelDeployment gate and the Canary check.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use modelplane_api::model_deployment::ModelDeploymentSpec;
use modelplane_config::TrustedKey;
use modelplane_verify::{DockerConfig, Failure, KeySet, Mode, load_keys};

use super::{ArtifactVerifier, Check, Checked, pull_credentials};
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

/// What a [`check_spec`] found: the check's result and the keys it trusted.
pub struct SpecCheck {
    /// The registry's answer (a key that could not be loaded fails it).
    pub checked: Checked,
    /// The trusted keys, parsed (empty when the mode is `Disabled` or a key failed).
    pub keys: KeySet,
    /// The same keys as PEM text, for the runtime to verify model files with.
    pub trusted: Vec<TrustedKey>,
}

/// Reads `spec`'s trusted keys (unless `mode` is `Disabled`) and runs its check: the runtime
/// image (`default_image` when the spec names none) and the OCI model. A key that cannot be
/// loaded fails the check, but the references are still resolved, so Audit can admit them.
pub async fn check_spec(
    verifier: &dyn ArtifactVerifier,
    client: &Client,
    namespace: &str,
    spec: &ModelDeploymentSpec,
    default_image: &str,
    mode: Mode,
    credentials: Option<DockerConfig>,
) -> Result<SpecCheck> {
    let (keys, trusted, key_failure) = match mode {
        Mode::Disabled => (KeySet::default(), Vec::new(), None),
        Mode::Enforce | Mode::Audit => match trusted_keys(client, namespace, spec).await? {
            Ok((keys, trusted)) => (keys, trusted, None),
            Err(failure) => (KeySet::default(), Vec::new(), Some(failure)),
        },
    };
    let request = Check {
        image: spec
            .runtime
            .image
            .clone()
            .unwrap_or_else(|| default_image.to_owned()),
        model_oci: spec.model.as_ref().and_then(|m| m.source.oci.clone()),
        keys: keys.clone(),
        mode: if key_failure.is_some() {
            Mode::Disabled
        } else {
            mode
        },
        credentials,
    };
    let mut checked = verifier.check(&request).await;
    if let Some(failure) = key_failure
        && checked.result.is_ok()
    {
        checked.result = Err(failure);
    }
    Ok(SpecCheck {
        checked,
        keys,
        trusted,
    })
}
