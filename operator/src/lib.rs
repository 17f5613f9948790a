//! modelplane-operator: reconciles ModelDeployments into modelplane-runtime pods.
//!
//! Layout: `desired/` computes the owned objects and `health` the status, both
//! pure functions over plain data; `quota` decides TenantQuota admissions, also
//! pure; `drift` decides whether anything must be written; `controller/` holds one file per controller and is the only place
//! that talks to the API server, together with `leader` (Lease election).

pub mod analysis;
pub mod cli;
pub mod controller;
pub mod desired;
pub mod drift;
pub mod health;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod quota;
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
    /// The API server refused to create, update or delete an owned object.
    #[error("{action} {kind} {name} failed: {}", api_message(.source))]
    Apply {
        /// What was attempted: `apply` or `delete`.
        action: &'static str,
        /// Kind of the object.
        kind: String,
        /// Its name.
        name: String,
        /// The API server's answer.
        source: Box<kube::Error>,
    },
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

/// What the API server said, without the client's wrapping.
fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

impl Error {
    /// Low-cardinality label for the `outcome` of the reconcile metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) | Error::Apply { .. } => "api_error",
            Error::Kube(_) => "kube_client",
            Error::Serialize { .. } => "serialize",
            Error::MissingField(_) => "missing_field",
        }
    }

    /// CamelCase reason for the `Ready=False` condition and Warning Event that report this
    /// error on the object whose reconcile hit it.
    pub fn condition_reason(&self) -> &'static str {
        let (source, applying) = match self {
            Error::Kube(source) => (source, false),
            Error::Apply { source, .. } => (source.as_ref(), true),
            _ => return "ReconcileError",
        };
        match source {
            kube::Error::Api(status) => match status.code {
                403 if status.message.contains("exceeded quota") => "NamespaceQuotaExceeded",
                403 => "Forbidden",
                409 => "Conflict",
                422 | 400 if applying => "ApplyRefused",
                429 => "TooManyRequests",
                _ if applying => "ApplyFailed",
                _ => "ApiRequestFailed",
            },
            _ => "ApiUnreachable",
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

    fn refused(code: u16, message: &str) -> Error {
        Error::Apply {
            action: "apply",
            kind: "Service".into(),
            name: "m".into(),
            source: Box::new(kube::Error::Api(Box::new(
                kube::core::Status::failure(message, "").with_code(code),
            ))),
        }
    }

    #[test]
    fn refused_writes_name_the_object_and_carry_the_api_servers_words() {
        let error = refused(500, "failed to allocate a serviceIP: range is full");
        assert_eq!(error.condition_reason(), "ApplyFailed");
        assert_eq!(
            error.to_string(),
            "apply Service m failed: failed to allocate a serviceIP: range is full (500)"
        );
        let quota = refused(403, "exceeded quota: compute, requested: pods=1");
        assert_eq!(quota.condition_reason(), "NamespaceQuotaExceeded");
        assert_eq!(refused(403, "forbidden").condition_reason(), "Forbidden");
        assert_eq!(refused(409, "conflict").condition_reason(), "Conflict");
        assert_eq!(refused(422, "invalid").condition_reason(), "ApplyRefused");
    }
}
