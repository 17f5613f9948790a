//! Resolving and verifying what a revision runs, behind the [`ArtifactVerifier`] seam:
//! [`RegistryVerifier`] talks to registries through `modelplane-verify`; reconcile tests
//! use an in-memory fake.
//!
//! Credentials: the operator-wide ones, plus those of the object's `imagePullSecrets`. An
//! object with pull secrets gets a registry client of its own (its bearer tokens are cached
//! per client), so one object's access never serves another's requests. The result cache is
//! shared, keyed by digest and trusted keys: a hit only says "this digest is signed by these
//! keys", and it is consulted after the object's own credentials resolved the reference —
//! an object that cannot read the artifact fails there, and its pods pull with their own
//! secrets anyway.

mod credentials;
#[cfg(test)]
pub mod fake;
mod model_files;
mod record;
mod secrets;

use futures::future::BoxFuture;
use modelplane_verify::{
    DockerConfig, Failure, FailureReason, KeySet, Mode, Reference, RegistryClient, RegistryOptions,
    Verified, Verifier, registry::RegistryError,
};

pub use credentials::pull_credentials;
pub use model_files::{delegated_model_source, model_signature};
pub use record::{
    PINNED_ANNOTATION, PinnedRevision, VerifiedCondition, inputs_hash, pinned_artifacts,
};
pub use secrets::{SpecCheck, check_spec, pull_secret_credentials, trusted_keys};

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
    /// Credentials of the object's pull secrets, which win over the operator-wide ones for
    /// this check only (`None` when the spec names none).
    pub credentials: Option<DockerConfig>,
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

/// The real verifier: a registry client with the operator-wide credentials and one result
/// cache, shared by every reconcile.
#[derive(Debug)]
pub struct RegistryVerifier {
    options: RegistryOptions,
    registry: RegistryClient,
    verifier: Verifier,
}

impl RegistryVerifier {
    /// A verifier reaching registries as `options` say, caching results in `verifier`.
    pub fn new(options: RegistryOptions, verifier: Verifier) -> Result<Self, RegistryError> {
        let registry = RegistryClient::new(options.clone())?;
        Ok(Self {
            options,
            registry,
            verifier,
        })
    }

    /// A client for one check with `extra` credentials over the operator-wide ones.
    fn client_with(&self, extra: &DockerConfig) -> Result<RegistryClient, Failure> {
        let mut options = self.options.clone();
        options.credentials.merge(extra.clone());
        RegistryClient::new(options).map_err(|error| {
            Failure::new(
                FailureReason::RegistryError,
                format!("cannot build a registry client for the pull secrets: {error}"),
            )
        })
    }

    async fn run(&self, check: &Check) -> Checked {
        let scoped;
        let registry = match &check.credentials {
            None => &self.registry,
            Some(extra) => match self.client_with(extra) {
                Ok(client) => {
                    scoped = client;
                    &scoped
                }
                Err(failure) => {
                    return Checked {
                        result: Err(failure),
                        pins: None,
                    };
                }
            },
        };
        match self.resolve_and_verify(registry, check, check.mode).await {
            Ok((pins, signed)) => Checked {
                result: Ok(signed),
                pins: Some(pins),
            },
            // Audit rolls out what failed: resolve it (without verifying) to pin it.
            Err(failure) if check.mode == Mode::Audit && !failure.is_retryable() => {
                let pins = self
                    .resolve_and_verify(registry, check, Mode::Disabled)
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
        registry: &RegistryClient,
        check: &Check,
        mode: Mode,
    ) -> Result<(Pins, Signed), Failure> {
        let image = parse(&check.image, "runtime image")?;
        let image = self
            .verifier
            .verify_image(registry, &image, &check.keys, mode)
            .await?;
        let model = match &check.model_oci {
            Some(model) => {
                let model = parse(model, "model")?;
                Some(
                    self.verifier
                        .verify_model_oci(registry, &model, &check.keys, mode)
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
