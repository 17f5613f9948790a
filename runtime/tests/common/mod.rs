//! Shared fixtures: tiny TorchScript models made with the project's PyTorch, a server
//! started in-process on 127.0.0.1 ephemeral ports, and small clients.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use modelplane_config::RuntimeConfig;
use modelplane_runtime::protocol::grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use modelplane_runtime::{ConfigSource, Running};

/// The project's virtualenv Python (with torch).
pub fn python() -> PathBuf {
    let venv = std::env::var_os("MODELPLANE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv"));
    venv.join("bin/python")
}

const MAKE_AFFINE: &str = r#"
import sys, torch
class Affine(torch.nn.Module):
    def __init__(self, k: float):
        super().__init__()
        self.k = k
    def forward(self, x):
        return x * self.k + 1.0, x.sum(dim=1)
for path, k in zip(sys.argv[1::2], sys.argv[2::2]):
    torch.jit.script(Affine(float(k))).save(path)
"#;

const SIGNATURE: &str = r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}],
"outputs":[{"name":"y","datatype":"FP32","shape":[-1,4]},{"name":"s","datatype":"FP32","shape":[-1]}]}"#;

/// Writes TorchScript "affine" models (`y = x * k + 1`, `s = x.sum(1)`, input `x`
/// FP32 `[-1, 4]`) to each path, with a `signature.json` beside each.
pub fn make_affine_models(models: &[(&Path, f32)]) {
    // TorchScript compiles from source files, so the script cannot be passed with `-c`.
    let first = models.first().expect("at least one model").0;
    let script = first
        .parent()
        .and_then(Path::parent)
        .expect("model in a version dir")
        .join("make_affine.py");
    std::fs::create_dir_all(script.parent().expect("parent")).expect("script dir");
    write_models(&script, MAKE_AFFINE, models);
    for (path, _) in models {
        std::fs::write(
            path.parent().expect("parent").join("signature.json"),
            SIGNATURE,
        )
        .expect("signature");
    }
}

/// A config serving the affine model at `path` as `affine`, version `1`, on ephemeral ports.
pub fn affine_config(path: &Path, extra_model_yaml: &str) -> String {
    format!(
        "server: {{http: '127.0.0.1:0', grpc: '127.0.0.1:0', watchInterval: 100ms, cacheDir: '{cache}'}}
models:
- name: affine
  {extra_model_yaml}
  versions:
  - version: '1'
    source: {{path: '{path}'}}
",
        cache = path.parent().expect("parent").join("cache").display(),
        path = path.display()
    )
}

/// Starts a server from YAML text and waits until it is ready.
pub async fn start_inline(yaml: &str) -> Running {
    let config = RuntimeConfig::from_yaml(yaml).expect("valid test config");
    let running = modelplane_runtime::start(ConfigSource::Inline(Box::new(config)))
        .await
        .expect("server starts");
    wait_ready(&running).await;
    running
}

/// Starts a server from a config file (watched) and waits until it is ready.
pub async fn start_file(path: &Path) -> Running {
    let running = modelplane_runtime::start(ConfigSource::File(path.to_owned()))
        .await
        .expect("server starts");
    wait_ready(&running).await;
    running
}

/// Waits (bounded) until the server reports ready.
pub async fn wait_ready(running: &Running) {
    let url = format!("http://{}/v2/health/ready", running.http_addr);
    wait_until(Duration::from_secs(60), || async {
        reqwest::get(&url)
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await
    .expect("server ready within 60s");
}

/// Polls `check` every 50 ms until it is true or `limit` passes.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("condition not met within {limit:?}"))
}

/// A JSON infer body for input `x` with the given rows of 4 values.
pub fn json_body(rows: &[[f32; 4]]) -> serde_json::Value {
    let data: Vec<f32> = rows.iter().flatten().copied().collect();
    serde_json::json!({"inputs": [{"name": "x", "shape": [rows.len(), 4], "datatype": "FP32", "data": data}]})
}

/// POSTs a JSON body and returns status and parsed body.
pub async fn post_json(url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// The `y` output of an affine model: `x * k + 1`.
pub fn affine(rows: &[[f32; 4]], k: f32) -> Vec<f32> {
    rows.iter().flatten().map(|v| v * k + 1.0).collect()
}

/// Reads `data` of the output named `name` as f32s.
pub fn output_f32(body: &serde_json::Value, name: &str) -> Vec<f32> {
    let outputs = body["outputs"].as_array().expect("outputs");
    let output = outputs
        .iter()
        .find(|o| o["name"] == name)
        .expect("named output");
    output["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect()
}

/// A gRPC client for the running server.
pub async fn grpc_client(
    running: &Running,
) -> GrpcInferenceServiceClient<tonic::transport::Channel> {
    GrpcInferenceServiceClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .expect("gRPC connects")
}

/// The value of a metric sample line, e.g. `modelplane_batch_size_count{model="affine",version="1"}`.
pub async fn metric(running: &Running, sample: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{}/metrics", running.http_addr))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
}

/// Writes the TorchScript-making `source` to `script` and runs it with the venv's Python,
/// once, for every `(path, k)` of `models` (TorchScript compiles from files, not `-c`).
pub fn write_models(script: &Path, source: &str, models: &[(&Path, f32)]) {
    std::fs::write(script, source).expect("write script");
    let mut command = Command::new(python());
    command.arg(script);
    for (path, k) in models {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("model dir");
        command.arg(path).arg(k.to_string());
    }
    let output = command
        .output()
        .expect("run the venv python (scripts/setup.sh makes it)");
    assert!(
        output.status.success(),
        "making models failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
