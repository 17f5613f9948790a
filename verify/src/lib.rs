//! Signature verification for modelplane rollouts.
//!
//! Before a revision rolls out, the operator resolves its image and model references to
//! digests, checks cosign signatures (by the `sha256-<hex>.sig` tag convention) or OpenSSF
//! model-signing bundles against the keys the ModelDeployment trusts, and pins the verified
//! digests into what runs. [`decide`] turns the outcome into what to roll out and record under
//! the configured [`Mode`].
//!
//! Pure parts ([`cosign::verify_layers`], [`model_signing::verify_bundle`], [`decide`],
//! reference parsing) do no I/O; [`RegistryClient`] and [`Verifier`] do.

pub mod auth;
pub mod cache;
pub mod cosign;
pub mod digest;
pub mod keys;
pub mod manifest;
pub mod metrics;
pub mod model_signing;
pub mod outcome;
pub mod policy;
pub mod reference;
pub mod registry;
mod verifier;

#[cfg(test)]
mod test_keys;

pub use auth::{Credentials, DockerConfig};
pub use digest::Digest;
pub use keys::{KeySet, PublicKey};
pub use metrics::Metrics;
pub use outcome::{Failure, FailureReason, Verified};
pub use policy::{Decision, Mode, decide};
pub use reference::Reference;
pub use registry::{RegistryClient, RegistryOptions};
pub use verifier::{Verifier, load_keys};
