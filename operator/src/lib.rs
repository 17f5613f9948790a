//! modelplane-operator: reconciles ModelDeployments into modelplane-runtime pods.
//!
//! Layout: `desired/` computes the owned objects and `health` the status, both
//! pure functions over plain data; `drift` decides whether anything must be
//! written; `controller/` holds one file per controller and is the only place
//! that talks to the API server, together with `leader` (Lease election).

pub mod cli;
pub mod controller;
pub mod desired;
pub mod drift;
pub mod health;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod rbac;
pub mod run;
pub mod telemetry;
pub mod verification;

#[cfg(test)]
mod fixtures;

/// Why a reconcile failed; every variant is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// An object could not be turned into JSON.
    #[error("failed to serialize {kind}: {source}")]
    Serialize {
        /// Kind of the object being serialized.
        kind: &'static str,
        /// The serializer's error.
        source: serde_json::Error,
    },
    /// The object handed to reconcile lacks a field the API server always sets.
    #[error("object is missing {0}")]
    MissingField(&'static str),
}

impl Error {
    /// Low-cardinality label for the `outcome` of the reconcile metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) => "api_error",
            Error::Kube(_) => "kube_client",
            Error::Serialize { .. } => "serialize",
            Error::MissingField(_) => "missing_field",
        }
    }
}

/// Result of reconcile steps.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_low_cardinality_metric_labels() {
        let api = Error::Kube(kube::Error::Api(Box::new(
            kube::core::Status::failure("boom", "InternalError").with_code(500),
        )));
        assert_eq!(api.metric_label(), "api_error");
        assert_eq!(
            Error::MissingField("metadata.uid").metric_label(),
            "missing_field"
        );
    }
}
