//! Model signatures checked at load: a version whose config carries a `signature` block
//! (models from a path or HTTP source, signed with the OpenSSF `model_signing` tool) is
//! verified against its model-signing bundle and the trusted keys before it loads.
//!
//! Under `Enforce` a model that does not verify is not loaded, so a version already serving
//! keeps serving (the reloader's failed-load path); under `Audit` it loads, and the failure
//! is logged and counted in `modelplane_model_signature_failures_total`.

mod bundle;
mod metrics;

use std::path::{Path, PathBuf};

use modelplane_config::{BundleSource, SignatureConfig, SignatureMode, Source, VersionConfig};
use modelplane_verify::model_signing::{self, SignedModel};
use modelplane_verify::{Failure, FailureReason, KeySet, load_keys};

pub use metrics::SigningMetrics;

/// A model that did not verify under `Enforce`: the load is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "model signature not verified ({reason}): {message}; signature mode Enforce refuses to load it"
)]
pub struct SigningError {
    /// Why it did not verify (the operator's `Verified` condition reasons).
    pub reason: FailureReason,
    /// What failed, naming the file, key or bundle.
    pub message: String,
}

impl From<SigningError> for String {
    fn from(error: SigningError) -> Self {
        error.to_string()
    }
}

/// Verifies the model at `model_path` (what the source fetched: a file or a folder) as the
/// `signature` block of `version` says, records the result in `metrics`, and fails only
/// when the mode is `Enforce` and the model does not verify. Without a block, or with mode
/// `Disabled`, nothing is checked.
pub async fn check(
    model: &str,
    version: &VersionConfig,
    model_path: &Path,
    metrics: &SigningMetrics,
) -> Result<(), SigningError> {
    let Some(signature) = &version.signature else {
        return Ok(());
    };
    let mode = signature.mode;
    if mode == SignatureMode::Disabled {
        return Ok(());
    }
    let result = verify(signature, &version.source, model_path).await;
    metrics.record(model, &version.version, mode, &result);
    match result {
        Ok(signed) => {
            tracing::info!(model, version = %version.version, key = %signed.key, root = %signed.root_digest, "model signature verified");
            Ok(())
        }
        Err(failure) if mode == SignatureMode::Audit => {
            tracing::warn!(model, version = %version.version, reason = %failure.reason, message = %failure.message, "model signature not verified; audit mode loads it anyway");
            Ok(())
        }
        Err(failure) => Err(SigningError {
            reason: failure.reason,
            message: failure.message,
        }),
    }
}

/// Fetches the bundle and checks it and the model files against the trusted keys.
async fn verify(
    signature: &SignatureConfig,
    source: &Source,
    model_path: &Path,
) -> Result<SignedModel, Failure> {
    let keys = trusted_keys(signature)?;
    let location = signature.bundle_for(source).ok_or_else(|| {
        Failure::new(
            FailureReason::NoSignature,
            "no model-signing bundle location: an OCI source needs signature.bundle",
        )
    })?;
    let fetched = bundle::fetch(&location, &model_dir(model_path)).await?;
    let model_path = model_path.to_owned();
    tokio::task::spawn_blocking(move || verify_files(&model_path, &fetched, &keys))
        .await
        .map_err(|e| {
            Failure::new(
                FailureReason::RegistryUnreachable,
                format!("model verification task did not finish: {e}"),
            )
        })?
}

fn trusted_keys(signature: &SignatureConfig) -> Result<KeySet, Failure> {
    load_keys(
        signature
            .keys
            .iter()
            .map(|key| (key.name.clone(), Some(key.pem.clone().into_bytes()))),
    )
}

/// The local bundle file a version's signature check reads, for a model at `model_path`
/// (`None`: no check, or a bundle fetched over HTTP). The reloader watches it, so a model
/// re-signed in place is verified and loaded again.
pub fn local_bundle(version: &VersionConfig, model_path: &Path) -> Option<PathBuf> {
    match version.signature.as_ref()?.bundle_for(&version.source)? {
        BundleSource::Path(path) => Some(model_dir(model_path).join(path)),
        BundleSource::Http(_) => None,
    }
}

/// The folder a relative bundle path is resolved against: the model folder itself, or the
/// folder holding the model file.
fn model_dir(model_path: &Path) -> PathBuf {
    if model_path.is_dir() {
        return model_path.to_owned();
    }
    model_path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

/// Verifies the bundle, then the files it signs: the model file alone when the signer signed
/// a single file (`model_signing sign key model.pt`), else the folder that holds it.
/// Reads every file: runs on the blocking pool.
fn verify_files(
    model_path: &Path,
    fetched: &bundle::Fetched,
    keys: &KeySet,
) -> Result<SignedModel, Failure> {
    let signed = model_signing::verify_bundle(&fetched.bytes, keys)?;
    let single_file = signed.files.len() == 1 && signed.files.contains_key(".");
    let root = if model_path.is_dir() || single_file {
        model_path.to_owned()
    } else {
        model_dir(model_path)
    };
    let ignores: Vec<String> = fetched
        .local_path
        .as_deref()
        .and_then(|bundle| relative_to(bundle, &root))
        .into_iter()
        .collect();
    Ok(model_signing::verify_model_files(
        &root,
        &fetched.bytes,
        keys,
        &ignores,
    )?)
}

/// `path` relative to `root`, `/`-separated, when it lies inside `root`.
fn relative_to(path: &Path, root: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    let parts: Vec<_> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_inside_the_model_folder_is_named_relative_to_it() {
        let root = Path::new("/models/m/v3");
        assert_eq!(
            relative_to(Path::new("/models/m/v3/sig/model.sig"), root).as_deref(),
            Some("sig/model.sig")
        );
        assert_eq!(relative_to(Path::new("/models/m/model.sig"), root), None);
        assert_eq!(relative_to(root, root), None);
    }

    #[test]
    fn the_refusal_names_the_reason_and_the_mode() {
        let error = SigningError {
            reason: FailureReason::WrongKey,
            message: "model signature not made by a trusted key".into(),
        };
        let text = String::from(error);
        assert!(
            text.contains("WrongKey") && text.contains("Enforce"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn no_block_or_disabled_checks_nothing() {
        let metrics = SigningMetrics::default();
        let config = modelplane_config::RuntimeConfig::from_yaml(
            "models: [{name: m, versions: [{version: '1', source: {path: /nonexistent/model.pt}}]}]",
        )
        .expect("config");
        let mut version = config.models[0].versions[0].clone();
        assert_eq!(
            check("m", &version, Path::new("/nonexistent/model.pt"), &metrics).await,
            Ok(())
        );
        version.signature = Some(SignatureConfig {
            mode: SignatureMode::Disabled,
            keys: Vec::new(),
            bundle: None,
        });
        assert_eq!(
            check("m", &version, Path::new("/nonexistent/model.pt"), &metrics).await,
            Ok(())
        );
    }
}
