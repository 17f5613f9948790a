//! The answer to every request no handler answered: a path no route serves (404), a
//! route called with another method (405, keeping axum's `Allow`), and axum's own
//! rejections (plain-text or empty bodies). One layer over the whole router gives each
//! the error shape of its protocol: OpenAI's under `/v1`, `{"error": "..."}` elsewhere.

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::openai;

/// Most bytes of a plain-text rejection kept as its message.
const MAX_REJECTION_BYTES: usize = 4096;

/// `router` with every error answer in its protocol's JSON shape. The layer wraps the
/// router whole (not each route, as `Router::layer` would), so that it sees the `Allow`
/// header axum adds to a 405 outside the route's own layers.
pub fn with_error_bodies(router: Router) -> Router {
    Router::new()
        .fallback_service(router)
        .layer(middleware::from_fn(error_bodies))
}

/// Rewrites an error response without a JSON body into the protocol's error shape.
async fn error_bodies(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if !lacks_error_body(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = to_bytes(body, MAX_REJECTION_BYTES)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let allow = parts
        .headers
        .get(header::ALLOW)
        .and_then(|value| value.to_str().ok());
    let message = message(parts.status, &method, &path, allow, text);
    let body = if openai::serves(&path) {
        openai::unrouted(parts.status, &method, &path, message).body()
    } else {
        serde_json::json!({ "error": message }).to_string()
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

/// An error status whose body is empty or axum's plain text (handlers answer JSON).
fn lacks_error_body(response: &Response) -> bool {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return false;
    }
    match response.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(kind) => kind.as_bytes().starts_with(b"text/plain"),
    }
}

/// What went wrong, in words: the route or method problem, else axum's own text.
fn message(
    status: StatusCode,
    method: &Method,
    path: &str,
    allow: Option<&str>,
    text: String,
) -> String {
    match status {
        StatusCode::NOT_FOUND if text.is_empty() => format!("no such endpoint: {method} {path}"),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed: Vec<&str> = allow
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .collect();
            match allowed.as_slice() {
                [] => format!("method {method} not allowed on {path}"),
                methods => format!(
                    "method {method} not allowed on {path}; use {}",
                    methods.join(" or ")
                ),
            }
        }
        _ if !text.is_empty() => text,
        _ => format!(
            "{} ({method} {path})",
            status.canonical_reason().unwrap_or("error")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_method_names_the_methods_the_route_takes() {
        let message = message(
            StatusCode::METHOD_NOT_ALLOWED,
            &Method::GET,
            "/v2/models/m/infer",
            Some("POST"),
            String::new(),
        );
        assert_eq!(
            message,
            "method GET not allowed on /v2/models/m/infer; use POST"
        );
        let get = message_for_allow(Some("GET,HEAD"));
        assert_eq!(get, "method DELETE not allowed on /v2; use GET or HEAD");
        assert_eq!(message_for_allow(None), "method DELETE not allowed on /v2");
    }

    fn message_for_allow(allow: Option<&str>) -> String {
        message(
            StatusCode::METHOD_NOT_ALLOWED,
            &Method::DELETE,
            "/v2",
            allow,
            String::new(),
        )
    }

    #[test]
    fn axums_rejection_text_is_kept_and_an_empty_body_gets_the_status_in_words() {
        let rejection = "Expected request with `Content-Type: application/json`".to_owned();
        assert_eq!(
            message(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &Method::POST,
                "/x",
                None,
                rejection.clone()
            ),
            rejection
        );
        assert_eq!(
            message(
                StatusCode::NOT_FOUND,
                &Method::GET,
                "/nope",
                None,
                String::new()
            ),
            "no such endpoint: GET /nope"
        );
        assert_eq!(
            message(
                StatusCode::PAYLOAD_TOO_LARGE,
                &Method::POST,
                "/x",
                None,
                String::new()
            ),
            "Payload Too Large (POST /x)"
        );
    }

    #[test]
    fn only_error_responses_without_json_are_rewritten() {
        let response = |status: StatusCode, kind: Option<&'static str>| {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = status;
            if let Some(kind) = kind {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            }
            response
        };
        assert!(lacks_error_body(&response(
            StatusCode::METHOD_NOT_ALLOWED,
            None
        )));
        assert!(lacks_error_body(&response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("text/plain; charset=utf-8")
        )));
        assert!(!lacks_error_body(&response(
            StatusCode::BAD_REQUEST,
            Some("application/json")
        )));
        assert!(!lacks_error_body(&response(StatusCode::OK, None)));
        assert!(!lacks_error_body(&response(
            StatusCode::OK,
            Some("text/plain")
        )));
    }
}
