//! The one error type of a request, and how it maps to HTTP and gRPC statuses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use modelplane_generate::engine::AdmissionError;
use modelplane_generate::sampling::InvalidParam;

/// Why an inference or metadata request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InferError {
    /// The request is malformed or does not match the model's signature.
    #[error("{0}")]
    BadRequest(String),
    /// A generation parameter is out of range (`temperature`, `top_p`, `max_tokens`, ...).
    #[error("invalid {param}: {message}")]
    InvalidParameter {
        /// The parameter's wire name.
        param: String,
        /// What is wrong with its value.
        message: String,
    },
    /// No such model, or no such version of it.
    #[error("{0}")]
    NotFound(String),
    /// The body or a tensor is larger than the model's limits allow.
    #[error("{0}")]
    TooLarge(String),
    /// The model (version) exists but is not loaded.
    #[error("{0}")]
    NotReady(String),
    /// The model's queue or in-flight limit is reached.
    #[error("{0}")]
    Overloaded(String),
    /// The request's deadline passed before it was answered.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The model failed while running the request.
    #[error("{0}")]
    Internal(String),
}

impl InferError {
    /// The HTTP status this error is reported with.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::InvalidParameter { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotReady(_) | Self::Overloaded(_) | Self::DeadlineExceeded(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC status code this error is reported with.
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            Self::BadRequest(_) | Self::InvalidParameter { .. } => tonic::Code::InvalidArgument,
            Self::NotFound(_) => tonic::Code::NotFound,
            Self::TooLarge(_) | Self::Overloaded(_) => tonic::Code::ResourceExhausted,
            Self::NotReady(_) => tonic::Code::Unavailable,
            Self::DeadlineExceeded(_) => tonic::Code::DeadlineExceeded,
            Self::Internal(_) => tonic::Code::Internal,
        }
    }

    /// The `outcome` label of the request counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::InvalidParameter { .. } => "invalid_parameter",
            Self::NotFound(_) => "not_found",
            Self::TooLarge(_) => "too_large",
            Self::NotReady(_) => "not_ready",
            Self::Overloaded(_) => "overloaded",
            Self::DeadlineExceeded(_) => "deadline_exceeded",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<InvalidParam> for InferError {
    fn from(err: InvalidParam) -> Self {
        Self::InvalidParameter {
            param: err.param.to_owned(),
            message: err.message,
        }
    }
}

impl From<AdmissionError> for InferError {
    fn from(err: AdmissionError) -> Self {
        match err {
            AdmissionError::Invalid(invalid) => invalid.into(),
            AdmissionError::EmptyPrompt | AdmissionError::TooLong { .. } => {
                Self::BadRequest(err.to_string())
            }
            AdmissionError::QueueFull(_) => Self::Overloaded(err.to_string()),
            AdmissionError::Stopped => Self::NotReady(err.to_string()),
        }
    }
}

impl From<InferError> for tonic::Status {
    fn from(err: InferError) -> Self {
        tonic::Status::new(err.grpc_code(), err.to_string())
    }
}

impl IntoResponse for InferError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() });
        (self.http_status(), axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturation_and_deadlines_are_503_on_rest() {
        for err in [
            InferError::Overloaded("queue full".into()),
            InferError::DeadlineExceeded("late".into()),
            InferError::NotReady("loading".into()),
        ] {
            assert_eq!(
                err.http_status(),
                StatusCode::SERVICE_UNAVAILABLE,
                "{err:?}"
            );
        }
    }

    #[test]
    fn grpc_codes_distinguish_what_rest_folds_into_503() {
        assert_eq!(
            InferError::Overloaded(String::new()).grpc_code(),
            tonic::Code::ResourceExhausted
        );
        assert_eq!(
            InferError::DeadlineExceeded(String::new()).grpc_code(),
            tonic::Code::DeadlineExceeded
        );
        assert_eq!(
            InferError::NotReady(String::new()).grpc_code(),
            tonic::Code::Unavailable
        );
    }

    #[test]
    fn admission_refusals_keep_their_status() {
        let too_long = AdmissionError::TooLong {
            prompt: 10,
            max_tokens: 20,
            context: 16,
        };
        let invalid = AdmissionError::Invalid(InvalidParam {
            param: "top_p",
            message: "must be greater than 0".into(),
        });
        let cases = [
            (AdmissionError::EmptyPrompt, StatusCode::BAD_REQUEST),
            (too_long, StatusCode::BAD_REQUEST),
            (invalid, StatusCode::UNPROCESSABLE_ENTITY),
            (
                AdmissionError::QueueFull("64 waiting".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (AdmissionError::Stopped, StatusCode::SERVICE_UNAVAILABLE),
        ];
        for (admission, status) in cases {
            let err = InferError::from(admission.clone());
            assert_eq!(err.http_status(), status, "{admission:?}");
        }
        let err = InferError::from(AdmissionError::Invalid(InvalidParam {
            param: "top_p",
            message: "must be greater than 0".into(),
        }));
        assert_eq!(
            err,
            InferError::InvalidParameter {
                param: "top_p".into(),
                message: "must be greater than 0".into()
            }
        );
        assert_eq!(err.grpc_code(), tonic::Code::InvalidArgument);
        assert_eq!(
            InferError::from(AdmissionError::QueueFull(String::new())).grpc_code(),
            tonic::Code::ResourceExhausted
        );
    }

    #[tokio::test]
    async fn rest_body_is_an_error_object() {
        let response = InferError::NotFound("unknown model \"x\"".into()).into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        let value: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(value, serde_json::json!({"error": "unknown model \"x\""}));
    }
}
