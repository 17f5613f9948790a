//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`, with
//! the status the rest of the runtime uses for the same failure.

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use modelplane_config::Task;

use crate::error::InferError;

/// A failed OpenAI-compatible request: the HTTP status and the error object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status of the response.
    pub status: StatusCode,
    /// Human-readable reason.
    pub message: String,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// A stable machine-readable code (`model_not_found`, `invalid_value`, ...).
    pub code: Option<&'static str>,
    /// The `WWW-Authenticate` challenge of a 401.
    pub challenge: Option<&'static str>,
    /// When a 429 may be retried: sent as `Retry-After` (whole seconds, rounded up)
    /// and `retry-after-ms`.
    pub retry_after: Option<std::time::Duration>,
}

/// The millisecond `Retry-After` the OpenAI clients read before `Retry-After` itself.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

/// The body's `error` object.
#[derive(Debug, Serialize, PartialEq)]
pub struct ErrorObject<'a> {
    /// Human-readable reason.
    pub message: &'a str,
    /// OpenAI's error class (`invalid_request_error`, `server_error`, ...).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The request field at fault.
    pub param: Option<&'a str>,
    /// Machine-readable code.
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400: the request cannot be understood (malformed JSON, bad prompt or messages).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message, None, None)
    }

    /// 400 about one field.
    pub fn bad_field(param: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            message,
            Some(param.to_owned()),
            Some("invalid_value"),
        )
    }

    /// 422: a generation parameter has a value this server does not accept.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            message,
            Some(param.to_owned()),
            Some("invalid_value"),
        )
    }

    /// A request no handler answered or that axum refused before one ran (404 no such
    /// route, 405 another method, 415, ...), with no `param` or `code`.
    pub fn route(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, message, None, None)
    }

    /// 500: something failed on the server side.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message, None, None)
    }

    fn new(
        status: StatusCode,
        message: impl Into<String>,
        param: Option<String>,
        code: Option<&'static str>,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            param,
            code,
            challenge: None,
            retry_after: None,
        }
    }

    /// OpenAI's error class for this status.
    pub fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            StatusCode::SERVICE_UNAVAILABLE => "service_unavailable_error",
            status if status.is_server_error() => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// The `error` object as it is serialized.
    pub fn object(&self) -> ErrorObject<'_> {
        ErrorObject {
            message: &self.message,
            kind: self.kind(),
            param: self.param.as_deref(),
            code: self.code,
        }
    }

    /// The response headers: `WWW-Authenticate` on a 401, `Retry-After` and
    /// `retry-after-ms` (which the OpenAI clients read first) on a 429.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(challenge) = self.challenge {
            headers.insert(
                axum::http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Some(retry_after) = self.retry_after {
            let secs = crate::error::retry_after_secs(retry_after);
            headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
            let millis = u64::try_from(retry_after.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
            headers.insert(RETRY_AFTER_MS, HeaderValue::from(millis.max(1)));
        }
        headers
    }

    /// The whole body, `{"error": {...}}`, as JSON text (also an SSE event's data).
    pub fn body(&self) -> String {
        serde_json::json!({ "error": self.object() }).to_string()
    }
}

/// A task as the config file spells it.
/// 400: the model exists but its task does not serve this endpoint. OpenAI's own
/// answer for a model an endpoint does not support ("This is not a chat model ..."):
/// `invalid_request_error` on `param: model` with `code: null`; the same on every route.
pub fn wrong_task(model: &str, task: Task, endpoint: &str, needs: Task) -> InferError {
    InferError::WrongTask(format!(
        "model {model:?} has task {}; {endpoint} needs a model with task {}",
        task_name(task),
        task_name(needs)
    ))
}

fn task_name(task: Task) -> &'static str {
    match task {
        Task::Tensor => "tensor",
        Task::Classify => "classify",
        Task::Embed => "embed",
        Task::Generate => "generate",
    }
}

impl From<InferError> for ApiError {
    /// The OpenAI error of `err`, with the status and headers of the REST edge.
    fn from(err: InferError) -> Self {
        let status = crate::server::http_status(&err);
        let challenge = err.challenge();
        let retry_after = err.retry_after();
        let message = err.to_string();
        let (param, code): (Option<String>, Option<&'static str>) = match err {
            InferError::NotFound(_) => (Some("model".to_owned()), Some("model_not_found")),
            InferError::WrongTask(_) => (Some("model".to_owned()), None),
            InferError::BadField { param, .. } => (Some(param.to_owned()), Some("invalid_value")),
            InferError::ContextLength { param, .. } => {
                (Some(param.to_owned()), Some("context_length_exceeded"))
            }
            InferError::InvalidParameter { param, .. } => (Some(param), Some("invalid_value")),
            InferError::TooLarge(_) => (None, Some("request_too_large")),
            InferError::NotReady(_) => (None, Some("model_not_ready")),
            InferError::Overloaded(_) => (None, Some("overloaded")),
            InferError::CircuitOpen { .. } => (None, Some("circuit_open")),
            InferError::DeadlineExceeded(_) | InferError::ClientTimeout(_) => {
                (None, Some("timeout"))
            }
            InferError::Unauthenticated { .. } => (None, Some("invalid_api_key")),
            InferError::Forbidden(_) => (None, Some("permission_denied")),
            InferError::RateLimited { .. } => (None, Some("rate_limit_exceeded")),
            InferError::BadRequest(_) | InferError::Internal(_) => (None, None),
        };
        Self {
            challenge,
            retry_after,
            ..Self::new(status, message, param, code)
        }
    }
}

impl From<BytesRejection> for ApiError {
    /// A body that could not be read: over [`super::MAX_BODY_BYTES`] (413) or cut off.
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            let message = format!(
                "the request body is larger than the {} MiB the OpenAI endpoints accept",
                super::MAX_BODY_BYTES >> 20
            );
            return Self::new(status, message, None, Some("request_too_large"));
        }
        Self::new(status, rejection.body_text(), None, None)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.object() });
        (self.status, self.headers(), axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_models_are_404_model_not_found_on_the_model_param() {
        let err = ApiError::from(InferError::NotFound("unknown model \"x\"".into()));
        assert_eq!(err.status, StatusCode::NOT_FOUND);
        assert_eq!(err.code, Some("model_not_found"));
        assert_eq!(err.param.as_deref(), Some("model"));
        assert_eq!(err.kind(), "invalid_request_error");
    }

    #[test]
    fn a_model_of_another_task_names_its_task_and_the_one_the_endpoint_needs() {
        let err = ApiError::from(wrong_task(
            "smollm2",
            Task::Generate,
            "/v1/embeddings",
            Task::Embed,
        ));
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            err.message,
            "model \"smollm2\" has task generate; /v1/embeddings needs a model with task embed"
        );
        assert_eq!(err.param.as_deref(), Some("model"));
        assert_eq!(err.code, None);
        assert_eq!(err.kind(), "invalid_request_error");
    }

    #[test]
    fn a_prompt_past_the_context_is_context_length_exceeded_on_its_field() {
        let err = ApiError::from(InferError::ContextLength {
            param: "messages",
            message: "the prompt has 100 tokens".into(),
        });
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.code, Some("context_length_exceeded"));
        assert_eq!(err.param.as_deref(), Some("messages"));
    }

    #[test]
    fn error_classes_follow_the_status() {
        let overloaded = ApiError::from(InferError::Overloaded("queue full".into()));
        assert_eq!(overloaded.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(overloaded.kind(), "service_unavailable_error");
        assert_eq!(ApiError::internal("boom").kind(), "server_error");
        let invalid = ApiError::invalid_param("temperature", "must be ≥ 0");
        assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(invalid.kind(), "invalid_request_error");
    }

    #[test]
    fn invalid_generation_parameters_keep_their_param_name() {
        let err = ApiError::from(InferError::InvalidParameter {
            param: "top_p".into(),
            message: "must be in (0, 1]".into(),
        });
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err.param.as_deref(), Some("top_p"));
    }

    #[tokio::test]
    async fn the_body_is_openais_error_object() {
        let response = ApiError::invalid_param("n", "only n = 1 is supported").into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        let value: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            value,
            serde_json::json!({"error": {
                "message": "only n = 1 is supported",
                "type": "invalid_request_error",
                "param": "n",
                "code": "invalid_value",
            }})
        );
    }

    #[test]
    fn identity_refusals_are_openais_auth_errors() {
        let err = ApiError::from(InferError::Unauthenticated {
            message: "unknown API key".into(),
            invalid_token: true,
        });
        assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        assert_eq!(err.kind(), "authentication_error");
        assert_eq!(err.code, Some("invalid_api_key"));
        assert_eq!(
            err.headers()["www-authenticate"],
            "Bearer realm=\"modelplane\", error=\"invalid_token\""
        );
        let err = ApiError::from(InferError::Forbidden("no tenant claim".into()));
        assert_eq!(err.status, StatusCode::FORBIDDEN);
        assert_eq!(err.kind(), "permission_error");
    }

    #[tokio::test]
    async fn a_rate_limit_says_when_to_retry_in_seconds_and_milliseconds() {
        let err = ApiError::from(InferError::RateLimited {
            message: "tenant team-a is over 10 requests/s".into(),
            retry_after: std::time::Duration::from_millis(1_250),
        });
        assert_eq!(err.kind(), "rate_limit_error");
        assert_eq!(err.code, Some("rate_limit_exceeded"));
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "2");
        assert_eq!(response.headers()[RETRY_AFTER_MS], "1250");
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        let value: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(value["error"]["type"], "rate_limit_error");
    }
}
