//! Tenancy against a real runtime on loopback: each tenant's request budget holds
//! (429 with a `Retry-After` the bucket computed, on REST, gRPC and the OpenAI API,
//! counted under the tenant's label) while another tenant is served; and on the
//! example LM a tenant flooding with long prompts cannot push another tenant's time
//! to first token past a stated bound (it would, served first come first served).

mod common;
mod generate_support;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use modelplane_runtime::Running;
use serde_json::json;

const KEY_A: &str = "sk-tenant-a-0123456789";
const KEY_B: &str = "sk-tenant-b-0123456789";

/// A runtime serving `affine` and the tiny LM (2 slots) to tenants a and b.
async fn server(dir: &Path, tenants_yaml: &str) -> Running {
    let affine = dir.join("affine/1/model.pt");
    make_affine_models(&[(&affine, 3.0)]);
    std::fs::write(dir.join("keys"), format!("a:{KEY_A}\nb:{KEY_B}\n")).expect("keys");
    let yaml = format!(
        "server: {{http: '127.0.0.1:0', grpc: '127.0.0.1:0', watchInterval: 100ms, cacheDir: '{cache}', intraOpThreads: 1}}
identity: {{apiKeys: {{file: '{keys}'}}}}
{tenants_yaml}
models:
- name: affine
  versions: [{{version: '1', source: {{path: '{affine}'}}}}]
- name: tiny
  task: generate
  generation: {{slots: 2, context: 1024, maxWaiting: 64}}
  versions: [{{version: '1', source: {{path: '{tiny}'}}}}]
",
        cache = dir.join("cache").display(),
        keys = dir.join("keys").display(),
        affine = affine.display(),
        tiny = generate_support::tiny_llama().display(),
    );
    start_inline(&yaml).await
}

async fn infer(running: &Running, key: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!(
            "http://{}/v2/models/affine/infer",
            running.http_addr
        ))
        .bearer_auth(key)
        .json(&json_body(&[[1.0, 2.0, 3.0, 4.0]]))
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn a_tenant_over_its_rate_gets_429_with_retry_after_and_the_other_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = server(
        dir.path(),
        "tenants: [{name: a, requests: {perSecond: 1, burst: 2}}, {name: b}]",
    )
    .await;
    for _ in 0..2 {
        assert_eq!(
            infer(&running, KEY_A).await.status(),
            200,
            "within the burst"
        );
    }
    let refused = infer(&running, KEY_A).await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!(
        (1..=1).contains(&retry_after),
        "one token per second: {retry_after}"
    );
    let body: serde_json::Value = refused.json().await.expect("json");
    let message = body["error"].as_str().expect("error message");
    assert!(
        message.contains("tenant \"a\"") && message.contains("1/s"),
        "{message}"
    );
    for _ in 0..5 {
        assert_eq!(
            infer(&running, KEY_B).await.status(),
            200,
            "b has no budget"
        );
    }

    // The OpenAI API and gRPC refuse the same way, from the same bucket.
    let completion = reqwest::Client::new()
        .post(format!("http://{}/v1/completions", running.http_addr))
        .bearer_auth(KEY_A)
        .json(&json!({"model": "tiny", "prompt": "hello", "max_tokens": 2}))
        .send()
        .await
        .expect("request");
    assert_eq!(completion.status(), 429);
    assert!(completion.headers().contains_key("retry-after"));
    let mut client = grpc_client(&running).await;
    let mut request = tonic::Request::new(affine_infer_request());
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {KEY_A}").parse().expect("metadata"),
    );
    let status = client.model_infer(request).await.expect_err("over budget");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(status.metadata().get("retry-after").is_some());

    let refused = metric(
        &running,
        r#"modelplane_requests_total{model="affine",version="1",tenant="a",outcome="rate_limited"}"#,
    )
    .await;
    assert_eq!(
        refused,
        Some(2.0),
        "REST and gRPC refusals are counted under a"
    );
    let served = metric(
        &running,
        r#"modelplane_requests_total{model="affine",version="1",tenant="b",outcome="success"}"#,
    )
    .await;
    assert_eq!(served, Some(5.0));
    running.shutdown().await;
}

fn affine_infer_request() -> modelplane_runtime::protocol::grpc::pb::ModelInferRequest {
    use modelplane_runtime::protocol::grpc::pb;
    pb::ModelInferRequest {
        model_name: "affine".into(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![1, 4],
            contents: Some(pb::InferTensorContents {
                fp32_contents: vec![1.0, 2.0, 3.0, 4.0],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Streams a completion and returns (time to first token, total time).
async fn stream(
    running: &Running,
    key: &str,
    prompt: &str,
    max_tokens: u32,
) -> (Duration, Duration) {
    let started = Instant::now();
    let mut response = reqwest::Client::new()
        .post(format!("http://{}/v1/completions", running.http_addr))
        .bearer_auth(key)
        .json(&json!({
            "model": "tiny", "prompt": prompt, "max_tokens": max_tokens,
            "stream": true, "temperature": 0
        }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "streamed");
    let mut first = None;
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        if first.is_none() && String::from_utf8_lossy(&chunk).contains("\"text\"") {
            first = Some(started.elapsed());
        }
    }
    (first.expect("a token arrived"), started.elapsed())
}

#[tokio::test]
async fn a_flooding_tenant_cannot_push_another_tenants_time_to_first_token_past_the_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = server(dir.path(), "tenants: [{name: a}, {name: b}]").await;
    let long_prompt = "lorem ipsum dolor sit amet ".repeat(60);
    let short_prompt = "hello there";
    // Alone: B's TTFT, and how long one of A's long requests holds a slot.
    let (b_alone, _) = stream(&running, KEY_B, short_prompt, 8).await;
    let (_, a_request) = stream(&running, KEY_A, &long_prompt, 48).await;

    // A floods: 12 long requests on 2 slots, six rounds of slot turnover.
    let flood: Vec<_> = (0..12)
        .map(|_| {
            let running_url = running.http_addr;
            let prompt = long_prompt.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let response = reqwest::Client::new()
                    .post(format!("http://{running_url}/v1/completions"))
                    .bearer_auth(KEY_A)
                    .json(&json!({"model": "tiny", "prompt": prompt, "max_tokens": 48, "temperature": 0}))
                    .send()
                    .await
                    .expect("request");
                assert_eq!(response.status(), 200);
                response.bytes().await.expect("body");
                started.elapsed()
            })
        })
        .collect();
    // Let the flood fill both slots and the queue.
    tokio::time::sleep(a_request / 4).await;
    let (b_flooded, _) = stream(&running, KEY_B, short_prompt, 8).await;
    let mut flood_done = Duration::ZERO;
    for request in flood {
        flood_done = flood_done.max(request.await.expect("joined"));
    }
    // The bound: B waits for at most one slot to turn over (one of A's requests), on
    // top of its own time alone; generously doubled for a noisy two-core machine.
    // First come first served B would wait for about six turnovers.
    let bound = b_alone + a_request * 2;
    println!(
        "b alone {b_alone:?}, a request {a_request:?}, b under the flood {b_flooded:?}, \
         bound {bound:?}, flood done after {flood_done:?}"
    );
    assert!(
        b_flooded <= bound,
        "B's TTFT {b_flooded:?} under the flood exceeds the bound {bound:?}"
    );
    assert!(
        flood_done > a_request * 4,
        "the flood really queued: it took {flood_done:?} against {a_request:?} for one"
    );
    running.shutdown().await;
}
