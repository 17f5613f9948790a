//! REST routes: Open Inference Protocol v2 and `/metrics`. Inference handlers build a
//! `RequestContext` and hand the body to the one request path (`serve`), decoding and
//! encoding with `protocol::rest`. Requests no route takes
//! are answered by [`super::rejection`].

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};

use super::{AppState, model_metadata, server_metadata};
use crate::error::InferError;
use crate::protocol::rest::{self, HEADER_LENGTH};
use crate::serve::{self, Protocol, RequestContext, TensorRequest};

/// The REST router; `/metrics` is included when it shares the port.
pub fn router(state: Arc<AppState>, with_metrics: bool) -> Router {
    // Model metadata answers only callers the request path would serve; health and
    // readiness (server and model) stay open: probes carry no credentials.
    let described = Router::new()
        .route("/v2/models/{model}", get(model_meta))
        .route("/v2/models/{model}/versions/{version}", get(version_meta))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_identity,
        ));
    let router = Router::new()
        .route("/v2", get(server_meta))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route("/v2/models/{model}/infer", post(infer))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(version_ready),
        )
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(version_infer),
        )
        .merge(described)
        .merge(crate::openai::router(&state));
    let router = if with_metrics {
        router.merge(metrics_router())
    } else {
        router
    };
    super::rejection::with_error_bodies(router.with_state(state))
        .layer(crate::serve::notes::NotesLayer)
}

/// Refuses a metadata request whose credentials the request path would refuse.
async fn require_identity(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Result<Response, InferError> {
    crate::identity::require(&state, request.headers())?;
    Ok(next.run(request).await)
}

/// The `/metrics` route alone, for a separate metrics port.
pub fn metrics_router() -> Router<Arc<AppState>> {
    Router::new().route("/metrics", get(metrics))
}

async fn server_meta() -> Response {
    let meta = server_metadata();
    Json(serde_json::json!({ "name": meta.name, "version": meta.version, "extensions": meta.extensions })).into_response()
}

async fn live() -> StatusCode {
    StatusCode::OK
}

async fn ready(State(state): State<Arc<AppState>>) -> Result<StatusCode, InferError> {
    if state.catalog.load().ready() {
        Ok(StatusCode::OK)
    } else {
        Err(InferError::NotReady(
            "not ready: a model is still loading or has no version that loaded".into(),
        ))
    }
}

async fn model_meta(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> Result<Response, InferError> {
    metadata(&state, &model, None)
}

async fn version_meta(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response, InferError> {
    metadata(&state, &model, Some(&version))
}

fn metadata(state: &AppState, model: &str, version: Option<&str>) -> Result<Response, InferError> {
    let catalog = state.catalog.load();
    let meta = model_metadata(&catalog, model, version)?;
    Ok(Json(meta.to_json()).into_response())
}

async fn model_ready(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> Result<StatusCode, InferError> {
    readiness(&state, &model, None)
}

async fn version_ready(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Result<StatusCode, InferError> {
    readiness(&state, &model, Some(&version))
}

fn readiness(
    state: &AppState,
    model: &str,
    version: Option<&str>,
) -> Result<StatusCode, InferError> {
    state
        .catalog
        .load()
        .model(model)?
        .resolve(version)
        .map(|_| StatusCode::OK)
}

async fn infer(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, InferError> {
    run_infer(&state, model, None, headers, body).await
}

async fn version_infer(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, InferError> {
    run_infer(&state, model, Some(version), headers, body).await
}

/// Parse → context → serve → encode: the body is read and decoded once the path has
/// picked the version (its limits and signature apply).
async fn run_infer(
    state: &AppState,
    model: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, InferError> {
    let header_length = headers
        .get(HEADER_LENGTH)
        .map(|v| v.to_str().unwrap_or("invalid").to_owned());
    let declared = declared_length(&headers);
    let ctx = RequestContext::new(Protocol::Rest, model, version, headers, Instant::now())?;
    let call = serve::start(state, ctx)?;
    let response = call
        .tensor(
            async move |target| {
                let (version, limits) = (&target.version, &target.config.limits);
                let body = read_body(body, declared, limits.max_body_bytes).await?;
                let request = rest::parse_request(
                    &body,
                    header_length.as_deref(),
                    &version.signature,
                    limits,
                    version.batching,
                )?;
                let tensors = TensorRequest {
                    inputs: request.inputs,
                    rows: request.rows,
                };
                Ok((tensors, (request.id, request.outputs)))
            },
            |target, (id, outputs), tensors| {
                let version = &target.version;
                rest::encode_response(
                    &version.model,
                    &version.label,
                    id.as_deref(),
                    &tensors,
                    &outputs,
                )
            },
        )
        .await?;
    Ok(into_http(response))
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

async fn read_body(
    body: Body,
    declared: Option<u64>,
    max: u64,
) -> Result<bytes::Bytes, InferError> {
    let too_large =
        || InferError::TooLarge(format!("request body is larger than the {max}-byte limit"));
    if declared.is_some_and(|len| len > max) {
        return Err(too_large());
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        let source = err.into_inner();
        if source.is::<http_body_util::LengthLimitError>() {
            too_large()
        } else {
            InferError::BadRequest(format!("cannot read the request body: {source}"))
        }
    })
}

fn into_http(response: rest::RestResponse) -> Response {
    let mut http = Response::new(Body::from(response.body));
    let headers = http.headers_mut();
    match response.header_length {
        Some(length) => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(HEADER_LENGTH, HeaderValue::from(length));
        }
        None => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    http
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    (
        [(header::CONTENT_TYPE, content_type)],
        state.metrics.encode(),
    )
        .into_response()
}
