//! The example models (examples/make_models.py) served together: each sample input,
//! sent as binary tensor data, comes back as the outputs PyTorch computed.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models")
}

fn manifest() -> serde_json::Value {
    let path = examples().join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run .venv/bin/python examples/make_models.py",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("manifest is JSON")
}

/// Tensor models of the manifest (generation models are served by a later runtime).
fn tensor_models(manifest: &serde_json::Value) -> Vec<&serde_json::Value> {
    let models = manifest["models"].as_array().expect("models");
    models.iter().filter(|m| m["task"] != "generate").collect()
}

fn config(models: &[&serde_json::Value]) -> String {
    let mut names: Vec<&str> = models
        .iter()
        .map(|m| m["name"].as_str().expect("name"))
        .collect();
    names.dedup();
    let mut yaml =
        "server: {http: '127.0.0.1:0', grpc: '127.0.0.1:0', intraOpThreads: 1}\nmodels:\n"
            .to_owned();
    for name in names {
        yaml += &format!("- name: {name}\n  batching: {{maxBatchSize: 8}}\n  versions:\n");
        for model in models.iter().filter(|m| m["name"] == name) {
            let path = examples()
                .join(model["path"].as_str().expect("path"))
                .join("model.pt");
            yaml += &format!(
                "  - version: '{}'\n    source: {{path: '{}'}}\n",
                model["version"].as_str().expect("version"),
                path.display()
            );
        }
    }
    yaml
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect()
}

async fn check_sample(base: &str, model: &serde_json::Value) {
    let dir = examples().join(model["path"].as_str().expect("path"));
    let sample = &model["sample"];
    let mut inputs = Vec::new();
    let mut binary = Vec::new();
    for input in sample["inputs"].as_array().expect("inputs") {
        let bytes =
            std::fs::read(dir.join(input["file"].as_str().expect("file"))).expect("sample input");
        inputs.push(serde_json::json!({"name": input["name"], "datatype": input["datatype"], "shape": input["shape"],
            "parameters": {"binary_data_size": bytes.len()}}));
        binary.extend(bytes);
    }
    let header = serde_json::json!({"inputs": inputs, "parameters": {"binary_data_output": true}})
        .to_string();
    let mut body = header.clone().into_bytes();
    body.extend(binary);
    let (name, version) = (
        model["name"].as_str().expect("name"),
        model["version"].as_str().expect("version"),
    );
    let response = reqwest::Client::new()
        .post(format!("{base}/v2/models/{name}/versions/{version}/infer"))
        .header("Inference-Header-Content-Length", header.len())
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "{name}/{version}");
    let split: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("len");
    let bytes = response.bytes().await.expect("body");
    let json: serde_json::Value = serde_json::from_slice(&bytes[..split]).expect("json");
    let mut offset = split;
    for output in json["outputs"].as_array().expect("outputs") {
        let size = output["parameters"]["binary_data_size"]
            .as_u64()
            .expect("binary size") as usize;
        let got = f32s(&bytes[offset..offset + size]);
        offset += size;
        let expected_spec = sample["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .find(|o| o["name"] == output["name"]);
        let Some(expected_spec) = expected_spec else {
            continue;
        };
        assert_eq!(output["shape"], expected_spec["shape"], "{name}/{version}");
        let expected = f32s(
            &std::fs::read(dir.join(expected_spec["file"].as_str().expect("file")))
                .expect("sample output"),
        );
        let worst = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-4,
            "{name}/{version} output {} differs by {worst}",
            output["name"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_models_reproduce_their_pytorch_samples() {
    let manifest = manifest();
    let models = tensor_models(&manifest);
    assert!(
        models.len() >= 4,
        "expected the mlp, classifier and minilm examples"
    );
    let running = start_inline(&config(&models)).await;
    let base = format!("http://{}", running.http_addr);
    for model in &models {
        check_sample(&base, model).await;
    }
    running.shutdown().await;
}
