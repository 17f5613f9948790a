//! The verification flow: resolve, fetch signatures, verify, check content, cache, measure.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cache::{CachedResult, VerificationCache};
use crate::cosign::{self, SignatureLayer};
use crate::digest::Digest;
use crate::keys::{KeySet, PublicKey};
use crate::metrics::{Artifact, Metrics};
use crate::model_signing;
use crate::outcome::{Failure, FailureReason, Verified};
use crate::policy::Mode;
use crate::reference::Reference;
use crate::registry::RegistryClient;

/// Verifies images and models before they roll out; shares one result cache and metrics.
#[derive(Debug)]
pub struct Verifier {
    cache: VerificationCache,
    metrics: Option<Metrics>,
}

impl Verifier {
    /// A verifier caching successful results for `cache_ttl`, recording into `metrics` if given.
    pub fn new(cache_ttl: Duration, metrics: Option<Metrics>) -> Self {
        Self {
            cache: VerificationCache::new(cache_ttl),
            metrics,
        }
    }

    /// Resolves `reference` to the digest that will run and, unless `mode` is `Disabled`,
    /// verifies its cosign signature against `keys`.
    pub async fn verify_image(
        &self,
        registry: &RegistryClient,
        reference: &Reference,
        keys: &KeySet,
        mode: Mode,
    ) -> Result<Verified, Failure> {
        let start = Instant::now();
        let result = self
            .verify_oci(registry, reference, keys, mode, Artifact::Image)
            .await;
        self.record(Artifact::Image, &result, start.elapsed());
        result
    }

    /// Like [`Verifier::verify_image`] for a model OCI artifact, and also streams every layer
    /// through sha256 against the signed manifest (a tampered layer fails here, not in the pod).
    pub async fn verify_model_oci(
        &self,
        registry: &RegistryClient,
        reference: &Reference,
        keys: &KeySet,
        mode: Mode,
    ) -> Result<Verified, Failure> {
        let start = Instant::now();
        let result = self
            .verify_oci(registry, reference, keys, mode, Artifact::ModelOci)
            .await;
        self.record(Artifact::ModelOci, &result, start.elapsed());
        result
    }

    /// Verifies a model-signing bundle against `keys` and the model at `path` (file or
    /// directory) against the bundle. `extra_ignores` are model-relative paths to skip (e.g.
    /// where the bundle lives). Hashing runs on the blocking pool.
    pub async fn verify_model_files(
        &self,
        path: PathBuf,
        bundle: Vec<u8>,
        keys: &KeySet,
        extra_ignores: Vec<String>,
    ) -> Result<Verified, Failure> {
        let start = Instant::now();
        let result = if keys.is_empty() {
            Err(no_keys())
        } else {
            let keys = keys.clone();
            tokio::task::spawn_blocking(move || {
                model_signing::verify_model_files(&path, &bundle, &keys, &extra_ignores)
            })
            .await
            .map_err(|e| {
                let message = format!("model verification task did not finish: {e}");
                Failure::new(FailureReason::RegistryUnreachable, message)
            })
            .and_then(|r| r.map_err(Failure::from))
            .map(|signed| Verified {
                digest: signed.root_digest,
                pinned: None,
                signer: Some(signed.key),
                from_cache: false,
            })
        };
        self.record(Artifact::ModelFiles, &result, start.elapsed());
        result
    }

    async fn verify_oci(
        &self,
        registry: &RegistryClient,
        reference: &Reference,
        keys: &KeySet,
        mode: Mode,
        artifact: Artifact,
    ) -> Result<Verified, Failure> {
        let digest = resolve_pinned(registry, reference).await?;
        let pinned = reference.with_digest(digest.clone());
        let verified = |signer: Option<String>, from_cache: bool| Verified {
            digest: digest.clone(),
            pinned: Some(pinned.clone()),
            signer,
            from_cache,
        };
        if mode == Mode::Disabled {
            return Ok(verified(None, false));
        }
        if keys.is_empty() {
            return Err(no_keys());
        }
        let fingerprint = keys.fingerprint();
        if let Some(hit) = self.cache.get(&digest, &fingerprint, Instant::now()) {
            return Ok(verified(Some(hit.signer), true));
        }
        let signature = verify_cosign(registry, &pinned, &digest, keys).await?;
        if artifact == Artifact::ModelOci {
            check_layers(registry, &pinned, &digest).await?;
        }
        tracing::info!(
            reference = %pinned,
            key = %signature.key,
            signed_reference = %signature.docker_reference,
            "signature verified"
        );
        self.cache.insert(
            digest.clone(),
            fingerprint,
            CachedResult {
                signer: signature.key.clone(),
            },
            Instant::now(),
        );
        Ok(verified(Some(signature.key), false))
    }

    fn record(&self, artifact: Artifact, result: &Result<Verified, Failure>, elapsed: Duration) {
        let (label, from_cache) = match result {
            Ok(verified) if verified.signer.is_none() => ("Disabled", false),
            Ok(verified) => ("Verified", verified.from_cache),
            Err(failure) => {
                tracing::warn!(artifact = artifact.as_str(), reason = %failure.reason, message = %failure.message, "verification failed");
                (failure.reason.as_str(), false)
            }
        };
        if let Some(metrics) = &self.metrics {
            metrics.record(artifact, label, from_cache, elapsed);
        }
    }
}

/// Loads the trusted keys named by a ModelDeployment: `(name, Some(pem))` for each key found,
/// `(name, None)` for a Secret or Secret key that does not exist.
pub fn load_keys<I>(entries: I) -> Result<KeySet, Failure>
where
    I: IntoIterator<Item = (String, Option<Vec<u8>>)>,
{
    let mut keys = Vec::new();
    for (name, pem) in entries {
        let pem = pem.ok_or_else(|| {
            Failure::new(
                FailureReason::KeyMissing,
                format!("key {name} does not exist"),
            )
        })?;
        keys.push(PublicKey::from_pem(&name, &pem)?);
    }
    if keys.is_empty() {
        return Err(no_keys());
    }
    Ok(KeySet::new(keys))
}

fn no_keys() -> Failure {
    Failure::new(
        FailureReason::KeyMissing,
        "no verification key is configured",
    )
}

/// The digest that will run: the pinned digest, checked against the tag when both are given
/// (a tag that moved away from the pinned digest is refused), else the tag's current digest.
async fn resolve_pinned(
    registry: &RegistryClient,
    reference: &Reference,
) -> Result<Digest, Failure> {
    match (reference.tag(), reference.digest()) {
        (Some(tag), Some(pinned)) => {
            let tagged = reference
                .with_tag(tag)
                .map_err(|e| Failure::new(FailureReason::RegistryError, e.to_string()))?;
            let now = registry.resolve(&tagged).await?;
            if &now != pinned {
                return Err(Failure::new(
                    FailureReason::TagMoved,
                    format!("tag {tag} now points to {now}, not the pinned {pinned}"),
                ));
            }
            Ok(now)
        }
        (_, Some(pinned)) => Ok(pinned.clone()),
        (_, None) => Ok(registry.resolve(reference).await?),
    }
}

/// Fetches the cosign signatures of `digest` (tag `sha256-<hex>.sig`) and verifies them.
async fn verify_cosign(
    registry: &RegistryClient,
    pinned: &Reference,
    digest: &Digest,
    keys: &KeySet,
) -> Result<cosign::CosignSignature, Failure> {
    let tag = digest.cosign_signature_tag();
    let Some((_, manifest)) = registry.manifest_at_tag(pinned, &tag).await? else {
        return Err(Failure::new(
            FailureReason::NoSignature,
            format!("no signature {}:{tag}", pinned.repository()),
        ));
    };
    let mut layers = Vec::new();
    for pending in cosign::signature_layers(&manifest) {
        let payload = registry.small_blob(pinned, &pending.payload_digest).await?;
        layers.push(SignatureLayer {
            payload,
            signature: pending.signature,
        });
    }
    Ok(cosign::verify_layers(&layers, keys, digest)?)
}

/// Streams the config and every layer of the (signed) manifest through sha256.
async fn check_layers(
    registry: &RegistryClient,
    pinned: &Reference,
    digest: &Digest,
) -> Result<(), Failure> {
    let manifest = registry.manifest(pinned, digest).await?;
    if manifest.is_index() {
        return Err(Failure::new(
            FailureReason::RegistryError,
            format!("model artifact {pinned} is an index, expected one manifest"),
        ));
    }
    for descriptor in manifest.config.iter().chain(&manifest.layers) {
        let layer = descriptor.digest().map_err(|e| {
            Failure::new(FailureReason::TamperedLayer, format!("layer digest: {e}"))
        })?;
        let size = registry.check_blob(pinned, &layer).await?;
        if size != descriptor.size {
            return Err(Failure::new(
                FailureReason::TamperedLayer,
                format!(
                    "layer {layer} is {size} bytes, the manifest says {}",
                    descriptor.size
                ),
            ));
        }
    }
    Ok(())
}
