//! The OpenAI-compatible API: `/v1/models`, `/v1/completions`, `/v1/chat/completions`
//! (server-sent events with `stream: true`) and `/v1/embeddings`.
//!
//! A request is parsed ([`wire`]), checked into a typed plan ([`params`]), resolved to
//! a serving version, then handed to the version's generation engine ([`generate`]) or
//! its tensor executor ([`embeddings`]); bodies and chunks are built by [`response`].
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

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use modelplane_config::{ModelConfig, Task};

pub use error::ApiError;

use crate::catalog::{Catalog, Version};
use crate::server::AppState;

/// The largest request body of the `/v1` routes (413 above): the model is only known
/// once the body is parsed, so the models' own `maxBodyBytes` cannot apply.
pub const MAX_BODY_BYTES: usize = 2 << 20;

/// The routes of the API, for the "Invalid URL" answers.
const ROUTES: &str = "GET /v1/models, GET /v1/models/{model}, POST /v1/completions, \
                      POST /v1/chat/completions, POST /v1/embeddings";

/// The `/v1` routes. Unknown `/v1/...` paths, other methods and axum's rejections are
/// answered in OpenAI's error shape by the server's one error layer ([`unrouted`]).
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/models", get(models::list))
        .route("/v1/models/{model}", get(models::retrieve))
        .route("/v1/completions", post(generate::completions))
        .route("/v1/chat/completions", post(generate::chat_completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
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
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| ApiError::internal(format!("preparing the input failed: {err}")))?
}

/// The version a request's `model` names, with its model's current config.
struct Target {
    config: Arc<ModelConfig>,
    version: Arc<Version>,
}

impl Target {
    /// Resolves `model`: a model name (its default serving version, as `/v2` does) or
    /// `name:version`.
    fn resolve(state: &AppState, model: &str) -> Result<Self, ApiError> {
        let catalog = state.catalog.load();
        let (name, version) = split_model(model, |name| catalog.models.contains_key(name));
        let (entry, version) = Catalog::resolve(&catalog, name, version)?;
        Ok(Self {
            config: Arc::clone(&entry.config),
            version,
        })
    }

    /// `Ok` when the model's task is `needs`, else the one wrong-task error of every
    /// endpoint; `model` is the request's `model` and `endpoint` the route.
    fn require(&self, needs: Task, model: &str, endpoint: &str) -> Result<(), ApiError> {
        if self.config.task == needs {
            return Ok(());
        }
        Err(ApiError::wrong_task(
            model,
            self.config.task,
            endpoint,
            needs,
        ))
    }

    /// The id responses report: `name:version`.
    fn served_id(&self) -> String {
        model_id(&self.version.model, &self.version.label)
    }
}

/// The wire id of a version.
fn model_id(model: &str, version: &str) -> String {
    format!("{model}:{version}")
}

/// Splits `name:version`; a string that is itself a model name is never split.
fn split_model(model: &str, is_model: impl Fn(&str) -> bool) -> (&str, Option<&str>) {
    if is_model(model) {
        return (model, None);
    }
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
        let known = |name: &str| ["smollm2", "odd:name"].contains(&name);
        assert_eq!(split_model("smollm2", known), ("smollm2", None));
        assert_eq!(split_model("smollm2:2", known), ("smollm2", Some("2")));
        assert_eq!(split_model("odd:name", known), ("odd:name", None));
        assert_eq!(split_model("unknown", known), ("unknown", None));
        assert_eq!(split_model("trailing:", known), ("trailing:", None));
    }
}
