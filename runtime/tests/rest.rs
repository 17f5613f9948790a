//! The REST protocol end to end against an in-process server on 127.0.0.1.

mod common;

use common::*;
use modelplane_runtime::Running;

async fn server() -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("affine/1/model.pt");
    make_affine_models(&[(&path, 2.0)]);
    let yaml = affine_config(&path, "limits: {maxBodyBytes: 4096, maxElements: 256}");
    let running = start_inline(&yaml).await;
    (dir, running)
}

#[tokio::test]
async fn health_and_metadata_follow_the_protocol() {
    let (_dir, running) = server().await;
    let base = format!("http://{}", running.http_addr);
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/affine/ready",
        "/v2/models/affine/versions/1/ready",
    ] {
        let status = reqwest::get(format!("{base}{path}"))
            .await
            .expect("get")
            .status();
        assert_eq!(status, 200, "{path}");
    }
    let server: serde_json::Value = reqwest::get(format!("{base}/v2"))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(server["name"], "modelplane-runtime");
    assert!(
        server["extensions"]
            .as_array()
            .expect("list")
            .contains(&"binary_tensor_data".into())
    );
    let model: serde_json::Value = reqwest::get(format!("{base}/v2/models/affine"))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(model["versions"], serde_json::json!(["1"]));
    assert_eq!(
        model["inputs"],
        serde_json::json!([{"name": "x", "datatype": "FP32", "shape": [-1, 4]}])
    );
    assert_eq!(
        model["outputs"][1],
        serde_json::json!({"name": "s", "datatype": "FP32", "shape": [-1]})
    );
    running.shutdown().await;
}

#[tokio::test]
async fn json_infer_returns_every_output() {
    let (_dir, running) = server().await;
    let rows = [[1.0, 2.0, 3.0, 4.0], [0.5, 0.0, -1.0, 2.0]];
    let mut body = json_body(&rows);
    body["id"] = "req-7".into();
    let (status, response) = post_json(
        &format!("http://{}/v2/models/affine/infer", running.http_addr),
        &body,
    )
    .await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["id"], "req-7");
    assert_eq!(response["model_version"], "1");
    assert_eq!(output_f32(&response, "y"), affine(&rows, 2.0));
    assert_eq!(output_f32(&response, "s"), [10.0, 1.5]);
    running.shutdown().await;
}

#[tokio::test]
async fn binary_infer_round_trips_raw_bytes() {
    let (_dir, running) = server().await;
    let rows = [[1.0f32, 2.0, 3.0, 4.0]];
    let header = serde_json::json!({
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}],
        "outputs": [{"name": "y", "parameters": {"binary_data": true}}, {"name": "s"}]
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend(rows.iter().flatten().flat_map(|v| v.to_le_bytes()));
    let response = reqwest::Client::new()
        .post(format!(
            "http://{}/v2/models/affine/versions/1/infer",
            running.http_addr
        ))
        .header("Inference-Header-Content-Length", header.len())
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let split: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("length");
    let bytes = response.bytes().await.expect("body");
    let json: serde_json::Value = serde_json::from_slice(&bytes[..split]).expect("json header");
    assert_eq!(json["outputs"][0]["parameters"]["binary_data_size"], 16);
    assert_eq!(
        output_f32(
            &serde_json::json!({"outputs": [json["outputs"][1].clone()]}),
            "s"
        ),
        [10.0]
    );
    let y: Vec<f32> = bytes[split..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    assert_eq!(y, affine(&rows, 2.0));
    running.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_clear_client_errors_and_the_server_keeps_serving() {
    let (_dir, running) = server().await;
    let base = format!("http://{}", running.http_addr);
    let infer = format!("{base}/v2/models/affine/infer");
    let client = reqwest::Client::new();
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        ("wrong shape", client.post(&infer).json(&serde_json::json!({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})), 400, "shape"),
        ("wrong dtype", client.post(&infer).json(&serde_json::json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4]}]})), 400, "datatype"),
        ("missing input", client.post(&infer).json(&serde_json::json!({"inputs": []})), 400, "missing input"),
        ("malformed json", client.post(&infer).body("{\"inputs\": ["), 400, "malformed"),
        ("truncated binary", client.post(&infer).header("Inference-Header-Content-Length", "94").body(format!("{:<94}", r#"{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}"#) + "short"), 400, "truncated"),
        ("oversize body", client.post(&infer).body(vec![b' '; 5000]), 413, "limit"),
        ("too many elements", client.post(&infer).json(&serde_json::json!({"inputs": [{"name": "x", "shape": [100, 4], "datatype": "FP32", "parameters": {"binary_data_size": 1600}}]})), 413, "elements"),
        ("unknown model", client.post(format!("{base}/v2/models/nope/infer")).json(&json_body(&[[0.0; 4]])), 404, "unknown model"),
        ("unknown version", client.post(format!("{base}/v2/models/affine/versions/9/infer")).json(&json_body(&[[0.0; 4]])), 404, "no version"),
    ];
    for (what, request, status, message) in cases {
        let response = request.send().await.expect("request");
        assert_eq!(response.status().as_u16(), status, "{what}");
        let body: serde_json::Value = response.json().await.expect("error body is JSON");
        let error = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no error field in {body}"));
        assert!(error.contains(message), "{what}: {error}");
    }
    let (status, response) = post_json(&infer, &json_body(&[[1.0, 1.0, 1.0, 1.0]])).await;
    assert_eq!(status, 200, "still serving after bad input: {response}");
    let bad_requests = metric(
        &running,
        r#"modelplane_requests_total{model="affine",version="1",tenant="anonymous",outcome="bad_request"}"#,
    )
    .await;
    assert_eq!(bad_requests, Some(5.0));
    running.shutdown().await;
}
