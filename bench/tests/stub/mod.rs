//! A tiny Open Inference Protocol server on 127.0.0.1 (REST with axum, gRPC
//! with tonic) that checks every request it gets, so the load generator is
//! tested without the runtime.
//!
//! Models: `mlp` (input `input__0`, FP32, shape `[-1, 4]`), `busy` (always
//! 503) and `slow` (answers after 100 ms). A request whose tensor does not
//! match its declared shape and datatype gets a 400.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use modelplane_bench::proto::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use modelplane_bench::proto::model_metadata_response::TensorMetadata;
use modelplane_bench::proto::{
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// How long the `slow` model takes.
pub const SLOW: Duration = Duration::from_millis(100);

/// Requests the stub answered with 200, by protocol.
#[derive(Debug, Default)]
pub struct Seen {
    pub rest_ok: AtomicU64,
    pub grpc_ok: AtomicU64,
}

/// Addresses of a running stub and what it saw.
pub struct Stub {
    pub rest_url: String,
    pub grpc_url: String,
    pub seen: Arc<Seen>,
}

/// Starts both listeners on free loopback ports; they live until the test's
/// runtime shuts down.
pub async fn start() -> Stub {
    let seen = Arc::new(Seen::default());
    let rest = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rest_addr = rest.local_addr().unwrap();
    let app = Router::new()
        .route("/v2/models/{model}", get(metadata))
        .route("/v2/models/{model}/infer", post(infer))
        .with_state(Arc::clone(&seen));
    tokio::spawn(async move { axum::serve(rest, app).await });

    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr: SocketAddr = grpc.local_addr().unwrap();
    let service = GrpcInferenceServiceServer::new(GrpcStub {
        seen: Arc::clone(&seen),
    });
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(grpc))
            .await
    });
    Stub {
        rest_url: format!("http://{rest_addr}"),
        grpc_url: format!("http://{grpc_addr}"),
        seen,
    }
}

async fn metadata(Path(model): Path<String>) -> Json<Value> {
    Json(json!({
        "name": model,
        "versions": ["1"],
        "platform": "pytorch_torchscript",
        "inputs": [{"name": "input__0", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "output__0", "datatype": "FP32", "shape": [-1, 2]}],
    }))
}

async fn infer(
    State(seen): State<Arc<Seen>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    if let Some(answer) = model_behaviour(&model).await {
        return answer;
    }
    let checked = match headers.get("inference-header-content-length") {
        Some(len) => check_binary(len.to_str().ok().and_then(|l| l.parse().ok()), &body),
        None => check_json(&body),
    };
    match checked {
        Ok(rows) => {
            seen.rest_ok.fetch_add(1, Ordering::Relaxed);
            let out = json!({"model_name": model, "outputs": [
                {"name": "output__0", "datatype": "FP32", "shape": [rows, 2],
                 "data": vec![0.5; usize::try_from(rows).unwrap() * 2]}]});
            (StatusCode::OK, Json(out))
        }
        Err(why) => (StatusCode::BAD_REQUEST, Json(json!({ "error": why }))),
    }
}

async fn model_behaviour(model: &str) -> Option<(StatusCode, Json<Value>)> {
    match model {
        "busy" => Some((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "queue full"})),
        )),
        "slow" => {
            tokio::time::sleep(SLOW).await;
            None
        }
        _ => None,
    }
}

/// Checks the one input against the `[-1, 4]` FP32 signature; returns its rows.
fn check_input(input: &Value) -> Result<i64, String> {
    if input["name"] != "input__0" || input["datatype"] != "FP32" {
        return Err(format!("unexpected input {input}"));
    }
    match input["shape"].as_array().map(Vec::as_slice) {
        Some([rows, cols]) if cols == 4 => rows.as_i64().ok_or("bad rows".into()),
        _ => Err(format!("bad shape {}", input["shape"])),
    }
}

fn check_json(body: &[u8]) -> Result<i64, String> {
    let request: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let input = &request["inputs"][0];
    let rows = check_input(input)?;
    let data = input["data"].as_array().ok_or("no data")?;
    let all_numbers = data.iter().all(Value::is_f64);
    if data.len() as i64 != rows * 4 || !all_numbers {
        return Err(format!("data does not fill [{rows}, 4]"));
    }
    Ok(rows)
}

fn check_binary(header_len: Option<usize>, body: &[u8]) -> Result<i64, String> {
    let header_len = header_len
        .filter(|l| *l <= body.len())
        .ok_or("bad header length")?;
    let header: Value = serde_json::from_slice(&body[..header_len]).map_err(|e| e.to_string())?;
    let input = &header["inputs"][0];
    let rows = check_input(input)?;
    let size = input["parameters"]["binary_data_size"].as_u64();
    let raw = body.len() - header_len;
    if size != Some(raw as u64) || raw as i64 != rows * 16 {
        return Err(format!("binary section of {raw} bytes for [{rows}, 4]"));
    }
    if header["parameters"]["binary_data_output"] != true {
        return Err("binary outputs not requested".into());
    }
    Ok(rows)
}

struct GrpcStub {
    seen: Arc<Seen>,
}

#[tonic::async_trait]
impl GrpcInferenceService for GrpcStub {
    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let tensor = |name: &str, cols| TensorMetadata {
            name: name.into(),
            datatype: "FP32".into(),
            shape: vec![-1, cols],
        };
        Ok(Response::new(ModelMetadataResponse {
            name: request.into_inner().name,
            versions: vec!["1".into()],
            platform: "pytorch_torchscript".into(),
            inputs: vec![tensor("input__0", 4)],
            outputs: vec![tensor("output__0", 2)],
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let request = request.into_inner();
        match request.model_name.as_str() {
            "busy" => return Err(Status::unavailable("queue full")),
            "slow" => tokio::time::sleep(SLOW).await,
            _ => {}
        }
        let input = request
            .inputs
            .first()
            .ok_or(Status::invalid_argument("no input"))?;
        let raw = request.raw_input_contents.first().map_or(0, |r| r.len());
        let rows = input.shape.first().copied().unwrap_or(0);
        if input.name != "input__0" || input.shape.len() != 2 || raw as i64 != rows * 16 {
            return Err(Status::invalid_argument(
                "tensor does not match [-1, 4] FP32",
            ));
        }
        self.seen.grpc_ok.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(ModelInferResponse {
            model_name: request.model_name,
            ..Default::default()
        }))
    }
}
