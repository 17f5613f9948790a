//! The HTTP shape of a request's error: its status, headers and `{"error": "..."}` body.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::InferError;

/// The HTTP status `err` is reported with (DESIGN.md §5: 400, 401, 403, 404, 413, 422,
/// 429, 503, 500).
pub fn http_status(err: &InferError) -> StatusCode {
    match err {
        InferError::BadRequest(_)
        | InferError::BadField { .. }
        | InferError::ContextLength { .. }
        | InferError::WrongTask(_) => StatusCode::BAD_REQUEST,
        InferError::InvalidParameter { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        InferError::NotFound(_) => StatusCode::NOT_FOUND,
        InferError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        InferError::ClientTimeout(_) => StatusCode::REQUEST_TIMEOUT,
        InferError::NotReady(_)
        | InferError::Overloaded(_)
        | InferError::DeadlineExceeded(_)
        | InferError::CircuitOpen { .. } => StatusCode::SERVICE_UNAVAILABLE,
        InferError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        InferError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
        InferError::Forbidden(_) => StatusCode::FORBIDDEN,
        InferError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
    }
}

/// The headers `err` is reported with: `WWW-Authenticate` on a 401, `Retry-After`
/// (whole seconds) on a 429, on a 503 for load and on a 503 of an open breaker.
pub fn http_headers(err: &InferError) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(challenge) = err.challenge() {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    if let Some(secs) = err.retry_after_secs() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    headers
}

impl IntoResponse for InferError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() });
        (http_status(&self), http_headers(&self), axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use modelplane_generate::engine::AdmissionError;
    use modelplane_generate::sampling::InvalidParam;

    use super::*;

    #[test]
    fn saturation_and_deadlines_are_503() {
        for err in [
            InferError::Overloaded("queue full".into()),
            InferError::DeadlineExceeded("late".into()),
            InferError::NotReady("loading".into()),
        ] {
            assert_eq!(
                http_status(&err),
                StatusCode::SERVICE_UNAVAILABLE,
                "{err:?}"
            );
        }
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
            assert_eq!(http_status(&err), status, "{admission:?}");
        }
    }

    #[tokio::test]
    async fn the_body_is_an_error_object() {
        let response = InferError::NotFound("unknown model \"x\"".into()).into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        let value: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(value, serde_json::json!({"error": "unknown model \"x\""}));
    }

    #[tokio::test]
    async fn refusals_carry_their_challenge_or_retry_after() {
        let missing = InferError::Unauthenticated {
            message: "missing credentials".into(),
            invalid_token: false,
        }
        .into_response();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            missing.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"modelplane\""
        );
        let forbidden = InferError::Forbidden("no tenant".into()).into_response();
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        assert!(forbidden.headers().get(header::WWW_AUTHENTICATE).is_none());
        let limited = InferError::RateLimited {
            message: "over budget".into(),
            retry_after: std::time::Duration::from_millis(1_200),
        }
        .into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "2");
        let body = axum::body::to_bytes(limited.into_body(), 1024)
            .await
            .expect("body");
        let value: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(value, serde_json::json!({"error": "over budget"}));
    }
}
