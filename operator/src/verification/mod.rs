//! Resolving and verifying what a revision runs, behind the [`ArtifactVerifier`] seam:
//! [`RegistryVerifier`] talks to registries through `modelplane-verify`; reconcile tests
//! use an in-memory fake.

#[cfg(test)]
pub mod fake;
mod record;

use futures::future::BoxFuture;
use modelplane_verify::{
    Failure, FailureReason, KeySet, Mode, Reference, RegistryClient, Verified, Verifier,
};

pub use record::{PINNED_ANNOTATION, PinnedRevision, inputs_hash};

/// What to resolve and verify before one revision rolls out.
#[derive(Debug, Clone)]
pub struct Check {
    /// The runtime image as the spec (or the operator default) names it.
    pub image: String,
    /// The model OCI reference, when the model comes from a registry.
    pub model_oci: Option<String>,
    /// The trusted keys (empty when the mode is `Disabled`).
    pub keys: KeySet,
    /// The effective mode.
    pub mode: Mode,
}

/// Digest-pinned references of a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pins {
    /// `registry/repo[:tag]@sha256:…` of the runtime image.
    pub image: String,
    /// `sha256:…` of the runtime image.
    pub image_digest: String,
    /// `registry/repo[:tag]@sha256:…` of the model artifact, for OCI models.
    pub model_oci: Option<String>,
    /// `sha256:…` of the model artifact, for OCI models.
    pub model_digest: Option<String>,
}

/// The result of a [`Check`].
#[derive(Debug, Clone)]
pub struct Checked {
    /// Signed by whom (`Ok`), or why not.
    pub result: Result<Signed, Failure>,
    /// What to run if the policy lets it roll out; `None` when the references could not be
    /// resolved (nothing can be pinned, so nothing can roll out).
    pub pins: Option<Pins>,
}

/// A successful check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The key that signed the image (`None` when verification is disabled).
    pub signer: Option<String>,
    /// Whether every answer came from the verification cache.
    pub from_cache: bool,
}

/// Resolves a revision's references to digests and verifies their signatures.
pub trait ArtifactVerifier: Send + Sync {
    /// Resolves and, unless the mode is `Disabled`, verifies `check`.
    fn check<'a>(&'a self, check: &'a Check) -> BoxFuture<'a, Checked>;
}

/// The real verifier: one registry client and one result cache shared by every reconcile.
#[derive(Debug)]
pub struct RegistryVerifier {
    registry: RegistryClient,
    verifier: Verifier,
}

impl RegistryVerifier {
    /// A verifier asking `registry`, caching results in `verifier`.
    pub fn new(registry: RegistryClient, verifier: Verifier) -> Self {
        Self { registry, verifier }
    }

    async fn run(&self, check: &Check) -> Checked {
        match self.resolve_and_verify(check, check.mode).await {
            Ok((pins, signed)) => Checked {
                result: Ok(signed),
                pins: Some(pins),
            },
            // Audit rolls out what failed: resolve it (without verifying) to pin it.
            Err(failure) if check.mode == Mode::Audit && !failure.is_retryable() => {
                let pins = self
                    .resolve_and_verify(check, Mode::Disabled)
                    .await
                    .ok()
                    .map(|(pins, _)| pins);
                Checked {
                    result: Err(failure),
                    pins,
                }
            }
            Err(failure) => Checked {
                result: Err(failure),
                pins: None,
            },
        }
    }

    async fn resolve_and_verify(
        &self,
        check: &Check,
        mode: Mode,
    ) -> Result<(Pins, Signed), Failure> {
        let image = parse(&check.image, "runtime image")?;
        let image = self
            .verifier
            .verify_image(&self.registry, &image, &check.keys, mode)
            .await?;
        let model = match &check.model_oci {
            Some(model) => {
                let model = parse(model, "model")?;
                Some(
                    self.verifier
                        .verify_model_oci(&self.registry, &model, &check.keys, mode)
                        .await?,
                )
            }
            None => None,
        };
        let signed = Signed {
            signer: image.signer.clone(),
            from_cache: image.from_cache && model.as_ref().is_none_or(|m| m.from_cache),
        };
        let pins = Pins {
            image: pinned(&image),
            image_digest: image.digest.to_string(),
            model_oci: model.as_ref().map(pinned),
            model_digest: model.as_ref().map(|m| m.digest.to_string()),
        };
        Ok((pins, signed))
    }
}

impl ArtifactVerifier for RegistryVerifier {
    fn check<'a>(&'a self, check: &'a Check) -> BoxFuture<'a, Checked> {
        Box::pin(self.run(check))
    }
}

fn parse(reference: &str, what: &str) -> Result<Reference, Failure> {
    reference.parse().map_err(|error| {
        Failure::new(
            FailureReason::RegistryError,
            format!("{what} reference {reference:?} is not valid: {error}"),
        )
    })
}

fn pinned(verified: &Verified) -> String {
    verified
        .pinned
        .as_ref()
        .map_or_else(|| verified.digest.to_string(), ToString::to_string)
}
