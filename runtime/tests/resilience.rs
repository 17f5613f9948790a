//! Resilience on the request path: the circuit breaker and its fallback chain, on real
//! TorchScript models that fail on demand (a negative first input raises), with a
//! second runtime on loopback as the chain's `grpc` hop; and the adaptive in-flight
//! limit at admission.

mod common;
mod generate_support;

use std::path::Path;
use std::time::Duration;

use common::*;
use modelplane_runtime::Running;
use modelplane_runtime::protocol::grpc::pb;

const MAKE_FLAKY: &str = r#"
import sys, torch
class Flaky(torch.nn.Module):
    def __init__(self, k: float):
        super().__init__()
        self.k = k
    def forward(self, x):
        if bool(x[0, 0] < 0.0):
            raise RuntimeError("asked to fail")
        return x * self.k + 1.0, x.sum(dim=1)
for path, k in zip(sys.argv[1::2], sys.argv[2::2]):
    torch.jit.script(Flaky(float(k))).save(path)
"#;

const SIGNATURE: &str = r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}],
"outputs":[{"name":"y","datatype":"FP32","shape":[-1,4]},{"name":"s","datatype":"FP32","shape":[-1]}]}"#;

const GOOD: [[f32; 4]; 1] = [[1.0, 2.0, 3.0, 4.0]];
const BAD: [[f32; 4]; 1] = [[-1.0, 2.0, 3.0, 4.0]];

/// A breaker that opens after 4 requests at 50 % failures, stays open 400 ms (doubling
/// up to 2 s) and closes after 2 probes.
const BREAKER: &str = "breaker: {window: 30s, minRequests: 4, errorPercent: 50, openFor: 400ms, maxOpenFor: 2s, probes: 2}";

/// Flaky models with factor `k` at each path (and their signatures).
fn make_flaky(dir: &Path, models: &[(&str, f32)]) -> Vec<std::path::PathBuf> {
    let paths: Vec<_> = models
        .iter()
        .map(|(name, _)| dir.join(name).join("1/model.pt"))
        .collect();
    let pairs: Vec<(&Path, f32)> = paths
        .iter()
        .zip(models)
        .map(|(path, (_, k))| (path.as_path(), *k))
        .collect();
    for (path, _) in &pairs {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    }
    write_models(&dir.join("make_flaky.py"), MAKE_FLAKY, &pairs);
    for path in &paths {
        std::fs::write(path.with_file_name("signature.json"), SIGNATURE).expect("signature");
    }
    paths
}

fn server_yaml(dir: &Path, models: &str) -> String {
    format!(
        "server: {{http: '127.0.0.1:0', grpc: '127.0.0.1:0', watchInterval: 100ms, cacheDir: '{}'}}\nmodels:\n{models}",
        dir.join("cache").display()
    )
}

fn model_yaml(name: &str, path: &Path, extra: &str) -> String {
    format!(
        "- name: {name}\n  {extra}\n  versions:\n  - version: '1'\n    source: {{path: '{}'}}\n",
        path.display()
    )
}

/// Answer of one REST infer: status, the fallback header, the body.
struct Answer {
    status: u16,
    hop: Option<String>,
    retry_after: Option<String>,
    body: serde_json::Value,
}

async fn infer(running: &Running, model: &str, rows: &[[f32; 4]]) -> Answer {
    let response = reqwest::Client::new()
        .post(format!(
            "http://{}/v2/models/{model}/infer",
            running.http_addr
        ))
        .json(&json_body(rows))
        .send()
        .await
        .expect("request");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (hop, retry_after) = (header("modelplane-fallback"), header("retry-after"));
    let status = response.status().as_u16();
    let body = response.json().await.expect("JSON body");
    Answer {
        status,
        hop,
        retry_after,
        body,
    }
}

/// Sends `n` failing requests to `model` and checks each is a 500 from the model.
async fn fail(running: &Running, model: &str, n: usize) {
    for _ in 0..n {
        let answer = infer(running, model, &BAD).await;
        assert_eq!(answer.status, 500, "{}", answer.body);
    }
}

async fn breaker_state(running: &Running, model: &str) -> Option<f64> {
    metric(
        running,
        &format!("modelplane_breaker_state{{model=\"{model}\",version=\"1\"}}"),
    )
    .await
}

#[tokio::test]
async fn the_chain_is_tried_in_order_and_probes_close_the_breaker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = make_flaky(dir.path(), &[("flaky", 2.0), ("small", 5.0), ("big", 3.0)]);
    // The second runtime: the chain's `grpc` hop.
    let remote_dir = dir.path().join("remote");
    let remote = start_inline(&server_yaml(&remote_dir, &model_yaml("big", &paths[2], ""))).await;
    let chain = format!(
        "{BREAKER}
  fallback:
  - model: small
  - grpc: {{address: 'http://{}', model: big, timeout: 2s}}
  - response: {{outputs: [{{name: y, datatype: FP32, shape: [1, 4], data: [0, 0, 0, 0]}}, {{name: s, datatype: FP32, shape: [1], data: [-1]}}]}}",
        remote.grpc_addr
    );
    let yaml = server_yaml(
        dir.path(),
        &(model_yaml("flaky", &paths[0], &chain) + &model_yaml("small", &paths[1], BREAKER)),
    );
    let running = start_inline(&yaml).await;

    // Closed: the version answers; failures below the threshold keep it closed.
    let answer = infer(&running, "flaky", &GOOD).await;
    assert_eq!((answer.status, answer.hop), (200, None));
    assert_eq!(output_f32(&answer.body, "y"), affine(&GOOD, 2.0));
    fail(&running, "flaky", 1).await;
    assert_eq!(infer(&running, "flaky", &GOOD).await.status, 200);
    // 2 of 4 failed: open.
    fail(&running, "flaky", 1).await;
    assert_eq!(breaker_state(&running, "flaky").await, Some(2.0));
    assert_eq!(
        metric(
            &running,
            r#"modelplane_breaker_opened_total{model="flaky",version="1",reason="error_rate"}"#
        )
        .await,
        Some(1.0)
    );

    // Open: the first hop, a local model, serves (a failing input too: the model is not asked).
    let answer = infer(&running, "flaky", &GOOD).await;
    assert_eq!(
        (answer.status, answer.hop.as_deref()),
        (200, Some("model:small"))
    );
    assert_eq!(output_f32(&answer.body, "y"), affine(&GOOD, 5.0));
    assert_eq!(answer.body["model_name"], "small");

    // The local hop's own breaker opens (3 of 4 failed, with the one it served): the
    // next hop, the other runtime, serves.
    fail(&running, "small", 3).await;
    let answer = infer(&running, "flaky", &GOOD).await;
    assert_eq!(
        (answer.status, answer.hop.as_deref()),
        (200, Some("grpc:big"))
    );
    assert_eq!(output_f32(&answer.body, "y"), affine(&GOOD, 3.0));

    // Over gRPC too, with the hop in the response metadata.
    let mut client = grpc_client(&running).await;
    let response = client
        .model_infer(grpc_request("flaky", &GOOD))
        .await
        .expect("answered");
    assert_eq!(
        response
            .metadata()
            .get("modelplane-fallback")
            .and_then(|v| v.to_str().ok()),
        Some("grpc:big")
    );
    assert_eq!(
        f32s(&response.into_inner().raw_output_contents[0]),
        affine(&GOOD, 3.0)
    );

    // The other runtime goes away: the fixed answer stands in.
    remote.shutdown().await;
    let answer = infer(&running, "flaky", &GOOD).await;
    assert_eq!(
        (answer.status, answer.hop.as_deref()),
        (200, Some("response"))
    );
    assert_eq!(output_f32(&answer.body, "y"), [0.0; 4]);
    assert_eq!(output_f32(&answer.body, "s"), [-1.0]);
    // The request the unreachable hop failed was sent down both.
    for (hop, expected) in [("model:small", 1.0), ("grpc:big", 3.0), ("response", 1.0)] {
        let sample = format!(
            "modelplane_fallback_requests_total{{model=\"flaky\",version=\"1\",hop=\"{hop}\"}}"
        );
        assert_eq!(metric(&running, &sample).await, Some(expected), "{sample}");
    }

    // Half-open after 400 ms: a failed probe opens it again, for 800 ms.
    tokio::time::sleep(Duration::from_millis(450)).await;
    fail(&running, "flaky", 1).await;
    assert_eq!(breaker_state(&running, "flaky").await, Some(2.0));
    // Open again; the local hop's breaker has half-opened meanwhile, and its good
    // probes close it: the first hop serves again.
    let answer = infer(&running, "flaky", &GOOD).await;
    assert_eq!(answer.hop.as_deref(), Some("model:small"), "open again");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        infer(&running, "flaky", &GOOD).await.hop.as_deref(),
        Some("model:small"),
        "still open: the second time lasts twice as long"
    );
    assert_eq!(breaker_state(&running, "small").await, Some(0.0));
    // Then two good probes close it: the version answers again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..2 {
        let answer = infer(&running, "flaky", &GOOD).await;
        assert_eq!((answer.status, answer.hop), (200, None), "probe");
        assert_eq!(output_f32(&answer.body, "y"), affine(&GOOD, 2.0));
    }
    assert_eq!(breaker_state(&running, "flaky").await, Some(0.0));
    assert_eq!(infer(&running, "flaky", &GOOD).await.hop, None);
    running.shutdown().await;
}

#[tokio::test]
async fn without_a_fallback_an_open_breaker_refuses_with_503_and_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = make_flaky(dir.path(), &[("flaky", 2.0)]);
    let yaml = server_yaml(dir.path(), &model_yaml("flaky", &paths[0], BREAKER));
    let running = start_inline(&yaml).await;
    fail(&running, "flaky", 4).await;
    let answer = infer(&running, "flaky", &GOOD).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.retry_after.as_deref(), Some("1"));
    let message = answer.body["error"].as_str().expect("error");
    assert!(
        message.contains(
            r#"circuit breaker of model "flaky" version "1" is open and no fallback is configured"#
        ),
        "{message}"
    );
    let status = grpc_client(&running)
        .await
        .model_infer(grpc_request("flaky", &GOOD))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(
        metric(
            &running,
            r#"modelplane_requests_total{model="flaky",version="1",tenant="anonymous",outcome="circuit_open"}"#
        )
        .await,
        Some(2.0)
    );
    running.shutdown().await;
}

#[tokio::test]
async fn no_request_is_lost_while_the_breaker_opens_and_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = make_flaky(dir.path(), &[("flaky", 2.0), ("small", 5.0)]);
    // Opens on any failure among 4 requests, for 100 ms.
    let chain = "breaker: {minRequests: 4, errorPercent: 1, openFor: 100ms, probes: 2}
  fallback: [{model: small}]";
    let yaml = server_yaml(
        dir.path(),
        &(model_yaml("flaky", &paths[0], chain) + &model_yaml("small", &paths[1], "")),
    );
    let running = std::sync::Arc::new(start_inline(&yaml).await);
    // Good requests from 8 clients, 40 each, while failures trip the breaker over and over.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let running = std::sync::Arc::clone(&running);
            tokio::spawn(async move {
                let mut hops = Vec::new();
                for _ in 0..40 {
                    let answer = infer(&running, "flaky", &GOOD).await;
                    assert_eq!(answer.status, 200, "a good request failed: {}", answer.body);
                    let k = if answer.hop.is_some() { 5.0 } else { 2.0 };
                    assert_eq!(output_f32(&answer.body, "y"), affine(&GOOD, k));
                    hops.push(answer.hop);
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                hops
            })
        })
        .collect();
    let tripper = {
        let running = std::sync::Arc::clone(&running);
        tokio::spawn(async move {
            for _ in 0..6 {
                for _ in 0..2 {
                    let answer = infer(&running, "flaky", &BAD).await;
                    assert!(matches!(answer.status, 200 | 500), "{}", answer.body);
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };
    let mut served = (0, 0);
    for client in clients {
        for hop in client.await.expect("client") {
            if hop.is_some() {
                served.1 += 1;
            } else {
                served.0 += 1;
            }
        }
    }
    tripper.await.expect("tripper");
    assert_eq!(served.0 + served.1, 320);
    assert!(served.1 > 0, "the breaker opened at least once: {served:?}");
    if let Ok(running) = std::sync::Arc::try_unwrap(running) {
        running.shutdown().await;
    }
}

#[tokio::test]
async fn a_canary_candidates_split_traffic_goes_back_to_stable_while_its_breaker_is_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = make_flaky(dir.path(), &[("stable", 2.0), ("candidate", 7.0)]);
    let model = format!(
        "- name: flaky\n  defaultVersion: '1'\n  canary: {{candidate: '2', weight: 100}}\n  {BREAKER}\n  versions:\n  - version: '1'\n    source: {{path: '{}'}}\n  - version: '2'\n    source: {{path: '{}'}}\n",
        paths[0].display(),
        paths[1].display()
    );
    let running = start_inline(&server_yaml(dir.path(), &model)).await;
    let answer = infer(&running, "flaky", &GOOD).await;
    assert_eq!(
        output_f32(&answer.body, "y"),
        affine(&GOOD, 7.0),
        "the candidate"
    );
    // The candidate fails 3 of 4: its breaker opens; the stable one's stays closed.
    fail(&running, "flaky", 3).await;
    let answer = infer(&running, "flaky", &GOOD).await;
    assert_eq!(
        (answer.status, answer.hop.as_deref()),
        (200, Some("stable"))
    );
    assert_eq!(output_f32(&answer.body, "y"), affine(&GOOD, 2.0));
    assert_eq!(answer.body["model_version"], "1");
    // A request that names the candidate gets no stand-in.
    let named = reqwest::Client::new()
        .post(format!(
            "http://{}/v2/models/flaky/versions/2/infer",
            running.http_addr
        ))
        .json(&json_body(&GOOD))
        .send()
        .await
        .expect("request");
    assert_eq!(named.status().as_u16(), 503);
    assert_eq!(
        metric(
            &running,
            r#"modelplane_fallback_requests_total{model="flaky",version="2",hop="stable"}"#
        )
        .await,
        Some(1.0)
    );
    running.shutdown().await;
}

fn grpc_request(model: &str, rows: &[[f32; 4]]) -> pb::ModelInferRequest {
    let data: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    pb::ModelInferRequest {
        model_name: model.into(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![rows.len() as i64, 4],
            ..Default::default()
        }],
        raw_input_contents: vec![data.into()],
        ..Default::default()
    }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A generate model whose breaker opens on generations timing out answers its fixed
/// text on the OpenAI API, marked as the fallback.
#[tokio::test]
async fn a_generate_model_falls_back_to_its_fixed_text_on_the_openai_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = format!(
        "- name: chat\n  task: generate\n  generation: {{slots: 1, context: 256}}\n  breaker: {{minRequests: 2, errorPercent: 10, openFor: 1m}}\n  fallback: [{{response: {{text: 'Busy right now; try again soon.'}}}}]\n  versions:\n  - version: '1'\n    source: {{path: '{}'}}\n",
        generate_support::tiny_llama().display()
    );
    let running = start_inline(&server_yaml(dir.path(), &model)).await;
    let url = format!("http://{}/v1/completions", running.http_addr);
    // Generations with a deadline of a few milliseconds time out mid-answer (a few may
    // finish first, or miss admission): bounded, until the breaker opens.
    for _ in 0..100 {
        let response = reqwest::Client::new()
            .post(&url)
            .header("x-request-timeout", "3ms")
            .json(&serde_json::json!({"model": "chat", "prompt": "Once", "max_tokens": 200}))
            .send()
            .await
            .expect("answered");
        assert!(matches!(response.status().as_u16(), 200 | 503));
        if breaker_state(&running, "chat").await == Some(2.0) {
            break;
        }
    }
    assert_eq!(breaker_state(&running, "chat").await, Some(2.0));
    let chat = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", running.http_addr))
        .json(&serde_json::json!({"model": "chat", "messages": [{"role": "user", "content": "Hello"}]}))
        .send()
        .await
        .expect("answered");
    assert_eq!(
        chat.headers()
            .get("modelplane-fallback")
            .and_then(|v| v.to_str().ok()),
        Some("response")
    );
    let body: serde_json::Value = chat.json().await.expect("JSON");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Busy right now; try again soon."
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(
        body["usage"]["completion_tokens"].as_u64() > Some(0),
        "{body}"
    );
    running.shutdown().await;
}

/// The adaptive limit is what admission holds requests to, and a metric.
#[tokio::test]
async fn requests_past_the_adaptive_limit_are_shed_before_the_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("affine/1/model.pt");
    make_affine_models(&[(&path, 2.0)]);
    // Batches wait up to 5 s to fill: requests stay in flight while the test looks.
    let extra = "batching: {maxBatchSize: 8, maxQueueDelay: 5s}
  limits: {maxInFlight: 64, adaptive: {minLimit: 2, maxLimit: 2, initialLimit: 2}}";
    let running = std::sync::Arc::new(start_inline(&affine_config(&path, extra)).await);
    let held: Vec<_> = (0..2)
        .map(|_| {
            let running = std::sync::Arc::clone(&running);
            tokio::spawn(async move { infer(&running, "affine", &GOOD).await.status })
        })
        .collect();
    wait_until(Duration::from_secs(10), || async {
        metric(
            &running,
            r#"modelplane_in_flight{model="affine",version="1"}"#,
        )
        .await
            == Some(2.0)
    })
    .await
    .expect("two requests in flight");
    let started = std::time::Instant::now();
    let shed = infer(&running, "affine", &GOOD).await;
    assert_eq!(shed.status, 503, "{}", shed.body);
    assert_eq!(shed.retry_after.as_deref(), Some("1"));
    let message = shed.body["error"].as_str().expect("message");
    assert!(
        message.contains("2 requests already in flight (the adaptive limit, limits.adaptive)"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(1), "shed at once");
    assert_eq!(
        metric(
            &running,
            r#"modelplane_concurrency_limit{model="affine",version="1"}"#
        )
        .await,
        Some(2.0)
    );
    for request in held {
        assert_eq!(request.await.expect("held request"), 200);
    }
}

/// A client that sends its headers and then trickles (here: stalls) its body holds an
/// admitted place only until `limits.bodyTimeout`: then 408, and the place is free.
#[tokio::test]
async fn a_client_that_stalls_its_body_is_cut_off_and_gives_its_place_back() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("affine/1/model.pt");
    make_affine_models(&[(&path, 2.0)]);
    let extra = "limits: {maxInFlight: 1, bodyTimeout: 300ms}";
    let running = start_inline(&affine_config(&path, extra)).await;
    let mut slow = tokio::net::TcpStream::connect(running.http_addr)
        .await
        .expect("connects");
    let started = std::time::Instant::now();
    slow.write_all(
        b"POST /v2/models/affine/infer HTTP/1.1\r\nHost: test\r\n\
          Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"inputs\": [",
    )
    .await
    .expect("writes");
    wait_until(Duration::from_secs(5), || async {
        metric(
            &running,
            r#"modelplane_in_flight{model="affine",version="1"}"#,
        )
        .await
            == Some(1.0)
    })
    .await
    .expect("the slow request holds the only place");
    assert_eq!(
        infer(&running, "affine", &GOOD).await.status,
        503,
        "the place is held"
    );
    // Read until the JSON body is complete (or the server closes the connection).
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 1024];
        while !answer.ends_with(b"}") {
            match slow.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("answered within the timeout");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("did not arrive in time (limits.bodyTimeout 300ms"),
        "{answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    wait_until(Duration::from_secs(5), || async {
        metric(
            &running,
            r#"modelplane_in_flight{model="affine",version="1"}"#,
        )
        .await
            == Some(0.0)
    })
    .await
    .expect("the place is given back");
    let answer = infer(&running, "affine", &GOOD).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    running.shutdown().await;
}
