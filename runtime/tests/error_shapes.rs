//! Every error answer has its protocol's JSON shape: a model of the wrong task on an
//! OpenAI endpoint, a wrong method (405 with `Allow`), an unknown route (404) and axum's
//! own rejections; OpenAI's `{"error": {...}}` under `/v1`, `{"error": "..."}` elsewhere.

mod common;
mod generate_support;

use common::*;
use modelplane_runtime::Running;
use serde_json::{Value, json};

/// The tensor model `affine` alone.
async fn affine_server() -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("affine/1/model.pt");
    make_affine_models(&[(&path, 2.0)]);
    let running = start_inline(&affine_config(&path, "")).await;
    (dir, running)
}

/// A request and its answer: status, `Allow`, `Content-Type` and the parsed body.
struct Answer {
    status: u16,
    allow: Option<String>,
    content_type: Option<String>,
    body: Value,
}

async fn send(method: reqwest::Method, url: &str, body: Option<&Value>) -> Answer {
    let client = reqwest::Client::new();
    let request = client.request(method, url);
    let request = match body {
        Some(body) => request.json(body),
        None => request,
    };
    let response = request.send().await.expect("request");
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_owned())
    };
    let (allow, content_type) = (
        header(reqwest::header::ALLOW),
        header(reqwest::header::CONTENT_TYPE),
    );
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        allow,
        content_type,
        body,
    }
}

#[tokio::test]
async fn a_model_of_another_task_gets_one_error_on_every_openai_endpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let affine = dir.path().join("affine/1/model.pt");
    make_affine_models(&[(&affine, 2.0)]);
    let yaml = format!(
        "server: {{http: '127.0.0.1:0', grpc: '127.0.0.1:0', cacheDir: '{cache}', intraOpThreads: 1}}
models:
- name: affine
  versions: [{{version: '1', source: {{path: '{affine}'}}}}]
- name: tiny
  task: generate
  versions: [{{version: '1', source: {{path: '{tiny}'}}}}]
",
        cache = dir.path().join("cache").display(),
        affine = affine.display(),
        tiny = generate_support::tiny_llama().display(),
    );
    let running = start_inline(&yaml).await;
    let base = format!("http://{}", running.http_addr);
    let chat =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let cases = [
        (
            "/v1/embeddings",
            json!({"model": "tiny", "input": "hi"}),
            "tiny",
            "generate",
            "embed",
        ),
        (
            "/v1/embeddings",
            json!({"model": "affine", "input": "hi"}),
            "affine",
            "tensor",
            "embed",
        ),
        (
            "/v1/chat/completions",
            chat("affine"),
            "affine",
            "tensor",
            "generate",
        ),
        (
            "/v1/completions",
            json!({"model": "affine", "prompt": "hi"}),
            "affine",
            "tensor",
            "generate",
        ),
    ];
    for (path, body, model, task, needs) in cases {
        let answer = send(reqwest::Method::POST, &format!("{base}{path}"), Some(&body)).await;
        assert_eq!(answer.status, 400, "{path} {model}: {:?}", answer.body);
        assert_eq!(
            answer.body,
            json!({"error": {
                "message": format!("model \"{model}\" has task {task}; {path} needs a model with task {needs}"),
                "type": "invalid_request_error",
                "param": "model",
                "code": null,
            }}),
            "{path} {model}"
        );
    }
    running.shutdown().await;
}

#[tokio::test]
async fn a_wrong_method_is_405_with_allow_and_a_body_that_names_the_method() {
    let (_dir, running) = affine_server().await;
    let base = format!("http://{}", running.http_addr);

    let chat = send(
        reqwest::Method::GET,
        &format!("{base}/v1/chat/completions"),
        None,
    )
    .await;
    assert_eq!(chat.status, 405);
    assert_eq!(chat.allow.as_deref(), Some("POST"));
    assert_eq!(chat.content_type.as_deref(), Some("application/json"));
    let error = &chat.body["error"];
    assert_eq!(error["type"], "invalid_request_error", "{:?}", chat.body);
    let message = error["message"].as_str().expect("OpenAI error object");
    assert!(
        message.starts_with("method GET not allowed on /v1/chat/completions; use POST"),
        "{message}"
    );
    assert_eq!(error["code"], Value::Null);

    for (method, path, allow) in [
        (reqwest::Method::GET, "/v2/models/affine/infer", "POST"),
        (
            reqwest::Method::PUT,
            "/v2/models/affine/versions/1/infer",
            "POST",
        ),
        (reqwest::Method::POST, "/v2/health/live", "GET,HEAD"),
    ] {
        let answer = send(method.clone(), &format!("{base}{path}"), None).await;
        assert_eq!(answer.status, 405, "{method} {path}");
        assert_eq!(answer.allow.as_deref(), Some(allow), "{method} {path}");
        let uses = allow.replace(',', " or ");
        assert_eq!(
            answer.body,
            json!({"error": format!("method {method} not allowed on {path}; use {uses}")}),
        );
    }
    running.shutdown().await;
}

#[tokio::test]
async fn unknown_routes_and_axum_rejections_answer_in_their_protocols_shape() {
    let (_dir, running) = affine_server().await;
    let base = format!("http://{}", running.http_addr);

    let oip = send(reqwest::Method::GET, &format!("{base}/v2/nope"), None).await;
    assert_eq!(oip.status, 404);
    assert_eq!(oip.body, json!({"error": "no such endpoint: GET /v2/nope"}));

    let openai = send(reqwest::Method::POST, &format!("{base}/v1/responses"), None).await;
    assert_eq!(openai.status, 404);
    let message = openai.body["error"]["message"]
        .as_str()
        .expect("OpenAI shape");
    assert!(
        message.starts_with("Invalid URL (POST /v1/responses)"),
        "{message}"
    );

    // A path segment that is not UTF-8 once decoded: axum's `Path` rejection (400, text).
    let rejected = send(
        reqwest::Method::GET,
        &format!("{base}/v2/models/%FF/ready"),
        None,
    )
    .await;
    assert_eq!(rejected.status, 400);
    assert_eq!(rejected.content_type.as_deref(), Some("application/json"));
    let message = rejected.body["error"]
        .as_str()
        .expect("{\"error\": \"...\"}");
    assert!(!message.is_empty());
    let rejected = send(reqwest::Method::GET, &format!("{base}/v1/models/%FF"), None).await;
    assert_eq!(rejected.status, 400);
    assert_eq!(
        rejected.body["error"]["type"], "invalid_request_error",
        "{:?}",
        rejected.body
    );

    // Handlers' own JSON errors pass through untouched.
    let unknown = send(
        reqwest::Method::GET,
        &format!("{base}/v2/models/nope"),
        None,
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.body["error"]
            .as_str()
            .is_some_and(|m| m.contains("nope"))
    );
    running.shutdown().await;
}
