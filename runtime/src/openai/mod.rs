//! The OpenAI-compatible API: `/v1/models`, `/v1/completions`, `/v1/chat/completions`
//! (server-sent events with `stream: true`) and `/v1/embeddings`.
//!
//! A request is parsed ([`wire`]), checked into a typed plan ([`params`]) and handed to
//! the one request path (`crate::serve`), which routes it to a version and runs it on
//! the version's generation engine ([`generate`]) or its tensor executor
//! ([`embeddings`]); bodies and chunks are built by [`response`].
//! Errors use OpenAI's shape ([`ApiError`]). docs/openai.md is the user-facing contract.

mod embed_batch;
mod embeddings;
mod error;
mod generate;
mod models;
mod params;
mod response;
mod wire;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::{get, post};
use modelplane_config::Task;

pub use error::ApiError;

use crate::error::InferError;
use crate::serve::{self, Call, Protocol, RequestContext, Target};
use crate::server::AppState;

/// The largest request body of the `/v1` routes (413 above): the model is only known
/// once the body is parsed, so the models' own `maxBodyBytes` cannot apply.
pub const MAX_BODY_BYTES: usize = 2 << 20;

/// The routes of the API, for the "Invalid URL" answers.
const ROUTES: &str = "GET /v1/models, GET /v1/models/{model}, POST /v1/completions, \
                      POST /v1/chat/completions, POST /v1/embeddings";

/// The `/v1` routes. Unknown `/v1/...` paths, other methods and axum's rejections are
/// answered in OpenAI's error shape by the server's one error layer ([`unrouted`]).
pub fn router(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let listed = Router::new()
        .route("/v1/models", get(models::list))
        .route("/v1/models/{model}", get(models::retrieve))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(state),
            require_identity,
        ));
    Router::new()
        .merge(listed)
        .route("/v1/completions", post(generate::completions))
        .route("/v1/chat/completions", post(generate::chat_completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Refuses `/v1/models` to callers the request path would refuse, in OpenAI's shape.
async fn require_identity(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    crate::identity::require(&state, request.headers())?;
    Ok(next.run(request).await)
}

/// Whether `path` belongs to this API (and so errors on it take OpenAI's shape).
pub fn serves(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

/// The error for a `/v1` request no handler answered: a path this server does not
/// serve (404, OpenAI's "Invalid URL"), a route called with another method (405), or a
/// request axum refused; `message` says what went wrong. 404 and 405 list the routes.
pub fn unrouted(status: StatusCode, method: &Method, path: &str, message: String) -> ApiError {
    let message = match status {
        StatusCode::NOT_FOUND => {
            format!("Invalid URL ({method} {path}); this server serves {ROUTES}")
        }
        StatusCode::METHOD_NOT_ALLOWED => format!("{message}; this server serves {ROUTES}"),
        _ => message,
    };
    ApiError::route(status, message)
}

/// Runs input preparation (chat template, tokenizer) on the blocking pool: a large
/// input costs up to hundreds of milliseconds of CPU, which on an async worker would
/// stall every connection that worker serves (health probes, other streams).
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, InferError> + Send + 'static,
) -> Result<T, InferError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| InferError::Internal(format!("preparing the input failed: {err}")))?
}

/// Starts a request on the one path: `model` is a model name (its default serving
/// version, as `/v2` does) or `name:version`.
fn start(
    state: &AppState,
    model: &str,
    headers: HeaderMap,
    started: Instant,
) -> Result<Call, InferError> {
    let (name, version) = split_model(model);
    let ctx = RequestContext::new(
        Protocol::OpenAi,
        name,
        version.map(str::to_owned),
        headers,
        started,
    )?;
    serve::start(state, ctx)
}

/// `Ok` when the routed model's task is `needs`, else the one wrong-task error of
/// every endpoint; `model` is the request's `model` and `endpoint` the route.
fn require(target: &Target, needs: Task, model: &str, endpoint: &str) -> Result<(), InferError> {
    if target.config.task == needs {
        return Ok(());
    }
    Err(error::wrong_task(
        model,
        target.config.task,
        endpoint,
        needs,
    ))
}

/// The id responses report: `name:version`.
fn served_id(target: &Target) -> String {
    model_id(&target.version.model, &target.version.label)
}

/// The wire id of a version.
fn model_id(model: &str, version: &str) -> String {
    format!("{model}:{version}")
}

/// Splits `name:version`; model names cannot hold a `:` (they are URL path segments of
/// `[A-Za-z0-9._-]`), so a `:` always separates a version.
fn split_model(model: &str) -> (&str, Option<&str>) {
    match model.rsplit_once(':') {
        Some((name, version)) if !name.is_empty() && !version.is_empty() => (name, Some(version)),
        _ => (model, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_a_name_or_name_colon_version() {
        assert_eq!(split_model("smollm2"), ("smollm2", None));
        assert_eq!(split_model("smollm2:2"), ("smollm2", Some("2")));
        assert_eq!(split_model("a:b:2"), ("a:b", Some("2")));
        assert_eq!(split_model("trailing:"), ("trailing:", None));
        assert_eq!(split_model(":1"), (":1", None));
    }
}
