//! One table of cases, put to every protocol: OIP REST with JSON and with binary
//! tensor data, OIP gRPC, and (for a generate model) gRPC and the OpenAI API. Each case
//! must end in the same outcome class everywhere: the status its protocol uses for that
//! class, and the same `outcome` label in `modelplane_requests_total` (none for a model
//! or version that does not exist: there is no version to count it against).

mod common;
mod generate_support;

use std::time::Duration;

use common::*;
use modelplane_runtime::Running;
use modelplane_runtime::protocol::grpc::pb;
use pb::infer_parameter::ParameterChoice;
use pb::model_infer_request::InferInputTensor;

/// What a case must come to, on every protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    UnknownModel,
    UnknownVersion,
    WrongShape,
    TooLarge,
    DeadlinePassed,
    Overloaded,
    Cancelled,
    Success,
}

impl Class {
    /// The HTTP status of the class on OIP REST and the OpenAI API. A generation too
    /// large for the model's context is OpenAI's 400 `context_length_exceeded`.
    fn http(self, generate: bool) -> Option<u16> {
        match self {
            Self::UnknownModel | Self::UnknownVersion => Some(404),
            Self::WrongShape => Some(400),
            Self::TooLarge if generate => Some(400),
            Self::TooLarge => Some(413),
            Self::DeadlinePassed | Self::Overloaded => Some(503),
            Self::Cancelled => None,
            Self::Success => Some(200),
        }
    }

    /// The gRPC code of the class; a prompt too long for the context is an invalid
    /// argument, as in Triton.
    fn grpc(self, generate: bool) -> Option<tonic::Code> {
        match self {
            Self::UnknownModel | Self::UnknownVersion => Some(tonic::Code::NotFound),
            Self::WrongShape => Some(tonic::Code::InvalidArgument),
            Self::TooLarge if generate => Some(tonic::Code::InvalidArgument),
            Self::TooLarge | Self::Overloaded => Some(tonic::Code::ResourceExhausted),
            Self::DeadlinePassed => Some(tonic::Code::DeadlineExceeded),
            Self::Cancelled => None,
            Self::Success => Some(tonic::Code::Ok),
        }
    }

    /// The `outcome` label the request is counted with.
    fn outcome(self) -> Option<&'static str> {
        match self {
            Self::UnknownModel | Self::UnknownVersion => None,
            Self::WrongShape => Some("bad_request"),
            Self::TooLarge => Some("too_large"),
            Self::DeadlinePassed => Some("deadline_exceeded"),
            Self::Overloaded => Some("overloaded"),
            Self::Cancelled => Some("cancelled"),
            Self::Success => Some("success"),
        }
    }
}

/// One case: the model and version it names, and the rows of its input (3 rows is
/// more than `affine`'s `maxElements` allows; a `None` row width sends a wrong shape).
struct Case {
    class: Class,
    model: &'static str,
    version: Option<&'static str>,
    rows: usize,
    width: usize,
}

const fn case(class: Class, model: &'static str, version: Option<&'static str>) -> Case {
    Case {
        class,
        model,
        version,
        rows: 1,
        width: 4,
    }
}

/// The tensor table. `affine` allows 8 elements per input; `full` admits one request
/// at a time and holds it 5 s for a batch (see [`hold`]); `late`'s request timeout has passed before any request is
/// admitted; `waits` holds a lone request 5 s for a batch, long enough to cancel it.
fn tensor_cases() -> Vec<Case> {
    vec![
        case(Class::UnknownModel, "nope", None),
        case(Class::UnknownVersion, "affine", Some("9")),
        Case {
            width: 3,
            ..case(Class::WrongShape, "affine", None)
        },
        Case {
            rows: 3,
            ..case(Class::TooLarge, "affine", None)
        },
        case(Class::DeadlinePassed, "late", None),
        case(Class::Overloaded, "full", None),
        case(Class::Cancelled, "waits", None),
        case(Class::Success, "affine", Some("1")),
    ]
}

fn config(dir: &std::path::Path, affine: &std::path::Path, tiny: &std::path::Path) -> String {
    let tensor = |name: &str, extra: &str| {
        format!(
            "- name: {name}\n  {extra}\n  versions: [{{version: '1', source: {{path: '{}'}}}}]\n",
            affine.display()
        )
    };
    let generate = |name: &str, extra: &str| {
        format!(
            "- name: {name}\n  task: generate\n  {extra}\n  versions: [{{version: '1', source: {{path: '{}'}}}}]\n",
            tiny.display()
        )
    };
    format!(
        "server: {{http: '127.0.0.1:0', grpc: '127.0.0.1:0', watchInterval: 100ms, cacheDir: '{cache}', intraOpThreads: 1}}\nmodels:\n{}{}{}{}{}{}{}",
        tensor("affine", "limits: {maxElements: 8}"),
        tensor(
            "full",
            "limits: {maxInFlight: 1}\n  batching: {maxBatchSize: 8, maxQueueDelay: 5s}"
        ),
        tensor("late", "limits: {requestTimeout: 1ns}"),
        tensor("waits", "batching: {maxBatchSize: 8, maxQueueDelay: 5s}"),
        generate("tiny", "limits: {}"),
        generate("tiny-full", "limits: {maxInFlight: 1}"),
        generate("tiny-late", "limits: {requestTimeout: 1ns}"),
        cache = dir.join("cache").display(),
    )
}

async fn server() -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().expect("tempdir");
    let affine = dir.path().join("affine/1/model.pt");
    make_affine_models(&[(&affine, 3.0)]);
    let tiny = generate_support::tiny_llama();
    let running = start_inline(&config(dir.path(), &affine, &tiny)).await;
    (dir, running)
}

/// The protocols a case is put to.
#[derive(Clone, Copy, Debug)]
enum Edge {
    RestJson,
    RestBinary,
    Grpc,
}

/// How a request ended, as the client saw it.
#[derive(Debug)]
enum Seen {
    /// Status, body, `Retry-After`.
    Http(u16, String, Option<String>),
    /// Code, message, `retry-after` metadata.
    Grpc(tonic::Code, String, Option<String>),
    /// The client gave up (and went away) before an answer.
    GaveUp,
}

/// How long a cancelled request's client waits before it goes away.
const GIVE_UP: Duration = Duration::from_millis(300);

fn values(case: &Case) -> Vec<f32> {
    (0..case.rows * case.width).map(|i| i as f32).collect()
}

async fn rest(running: &Running, edge: Edge, case: &Case) -> Seen {
    let url = match case.version {
        Some(v) => format!(
            "http://{}/v2/models/{}/versions/{v}/infer",
            running.http_addr, case.model
        ),
        None => format!(
            "http://{}/v2/models/{}/infer",
            running.http_addr, case.model
        ),
    };
    let shape = [case.rows, case.width];
    let client = reqwest::Client::new();
    let request = match edge {
        Edge::RestJson => client.post(&url).json(&serde_json::json!({
            "inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": values(case)}]
        })),
        _ => {
            let raw: Vec<u8> = values(case).iter().flat_map(|v| v.to_le_bytes()).collect();
            let header = serde_json::json!({
                "inputs": [{"name": "x", "shape": shape, "datatype": "FP32",
                            "parameters": {"binary_data_size": raw.len()}}]
            })
            .to_string();
            let mut body = header.clone().into_bytes();
            body.extend(raw);
            client
                .post(&url)
                .header("inference-header-content-length", header.len())
                .header("content-type", "application/octet-stream")
                .body(body)
        }
    };
    let request = if case.class == Class::Cancelled {
        request.timeout(GIVE_UP)
    } else {
        request
    };
    match request.send().await {
        Ok(response) => http_seen(response).await,
        Err(err) if err.is_timeout() => Seen::GaveUp,
        Err(err) => panic!("{edge:?} {}: {err}", case.model),
    }
}

async fn grpc(running: &Running, case: &Case) -> Seen {
    let mut client = grpc_client(running).await;
    let raw: Vec<u8> = values(case).iter().flat_map(|v| v.to_le_bytes()).collect();
    let request = pb::ModelInferRequest {
        model_name: case.model.into(),
        model_version: case.version.unwrap_or_default().into(),
        inputs: vec![InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![case.rows as i64, case.width as i64],
            ..Default::default()
        }],
        raw_input_contents: vec![raw.into()],
        ..Default::default()
    };
    grpc_answer(client.model_infer(request), case.class).await
}

async fn grpc_answer<T>(
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    class: Class,
) -> Seen {
    let limit = if class == Class::Cancelled {
        GIVE_UP
    } else {
        Duration::from_secs(60)
    };
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(_)) => Seen::Grpc(tonic::Code::Ok, String::new(), None),
        Ok(Err(status)) => Seen::Grpc(
            status.code(),
            status.message().to_owned(),
            status
                .metadata()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
        ),
        Err(_) => Seen::GaveUp,
    }
}

async fn http_seen(response: reqwest::Response) -> Seen {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    Seen::Http(
        status,
        response.text().await.unwrap_or_default(),
        retry_after,
    )
}

/// What an answer of `class` says in `Retry-After` (or gRPC's `retry-after`): a shed
/// request may come back in a second; nothing else names a time.
fn retry_after(class: Class) -> Option<&'static str> {
    (class == Class::Overloaded).then_some("1")
}

/// Asserts what the client saw and, where the request reached a version, that it was
/// counted once with the class's outcome.
async fn check(running: &Running, what: &str, case: &Case, before: f64, seen: Seen) {
    let class = case.class;
    let generate = case.model.starts_with("tiny");
    match (&seen, class) {
        (Seen::GaveUp, Class::Cancelled) => {}
        (Seen::Http(status, body, retry), _) => {
            assert_eq!(Some(*status), class.http(generate), "{what}: {body}");
            assert_eq!(retry.as_deref(), retry_after(class), "{what}: Retry-After");
        }
        (Seen::Grpc(code, message, retry), _) => {
            assert_eq!(Some(*code), class.grpc(generate), "{what}: {message}");
            assert_eq!(retry.as_deref(), retry_after(class), "{what}: retry-after");
        }
        (seen, class) => panic!("{what}: expected {class:?}, saw {seen:?}"),
    }
    let Some(outcome) = class.outcome() else {
        return;
    };
    let sample = counter(case.model, outcome);
    // A cancelled request is counted when the server notices the client has gone.
    let counted = wait_until(Duration::from_secs(4), || async {
        metric(running, &sample).await.unwrap_or(0.0) >= before + 1.0
    })
    .await;
    assert!(
        counted.is_ok(),
        "{what}: {sample} was not counted once more than {before}"
    );
}

fn counter(model: &str, outcome: &str) -> String {
    format!(
        "modelplane_requests_total{{model=\"{model}\",version=\"1\",tenant=\"anonymous\",outcome=\"{outcome}\"}}"
    )
}

async fn count(running: &Running, case: &Case) -> f64 {
    match case.class.outcome() {
        Some(outcome) => metric(running, &counter(case.model, outcome))
            .await
            .unwrap_or(0.0),
        None => 0.0,
    }
}

/// Occupies the one in-flight place of `model` (`full` or `tiny-full`) with a request
/// that takes seconds, until the returned task is aborted; the overloaded case runs
/// while it holds.
async fn hold(running: &Running, model: &'static str) -> tokio::task::JoinHandle<()> {
    let holder = if model == "full" {
        case(Class::Success, "full", None)
    } else {
        case(Class::Cancelled, "tiny-full", None)
    };
    let url = format!("http://{}/v1/completions", running.http_addr);
    let http = running.http_addr;
    let task = tokio::spawn(async move {
        if holder.model == "full" {
            let url = format!("http://{http}/v2/models/full/infer");
            let body = json_body(&[[1.0; 4]]);
            let _ = reqwest::Client::new().post(url).json(&body).send().await;
        } else {
            let body = serde_json::json!({"model": holder.model, "prompt": "Once", "max_tokens": 1000, "stream": true});
            if let Ok(mut response) = reqwest::Client::new().post(url).json(&body).send().await {
                while let Ok(Some(_)) = response.chunk().await {}
            }
        }
    });
    let gauge = format!("modelplane_in_flight{{model=\"{model}\",version=\"1\"}}");
    wait_until(Duration::from_secs(10), || async {
        metric(running, &gauge).await == Some(1.0)
    })
    .await
    .expect("the holding request is in flight");
    task
}

/// Runs one case on one edge: counts before, the request (with [`hold`] for the
/// overloaded case), then the check.
async fn run_case<F: Future<Output = Seen>>(
    running: &Running,
    what: &str,
    case: &Case,
    request: impl FnOnce() -> F,
) {
    let before = count(running, case).await;
    let holding = match case.class {
        Class::Overloaded => Some(hold(running, case.model).await),
        _ => None,
    };
    let seen = request().await;
    if let Some(holding) = holding {
        holding.abort();
    }
    check(running, what, case, before, seen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tensor_case_ends_the_same_on_rest_json_rest_binary_and_grpc() {
    let (_dir, running) = server().await;
    for edge in [Edge::RestJson, Edge::RestBinary, Edge::Grpc] {
        for case in tensor_cases() {
            let what = format!("{edge:?} {:?} ({})", case.class, case.model);
            run_case(&running, &what, &case, || async {
                match edge {
                    Edge::Grpc => grpc(&running, &case).await,
                    _ => rest(&running, edge, &case).await,
                }
            })
            .await;
        }
    }
    running.shutdown().await;
}

/// The generate table: `tiny` (a 1024-token context), `tiny-full` admits one request
/// at a time (held by a long stream, see [`hold`]),
/// `tiny-late`'s deadline has passed on arrival. A wrong shape is a prompt the model
/// cannot take (a token id outside the vocabulary on the OpenAI API, a tensor other
/// than `text_input` over gRPC); too large is a `max_tokens` past the context; the
/// cancelled client leaves a long stream after its first chunk.
fn generate_cases() -> Vec<Case> {
    vec![
        case(Class::UnknownModel, "nope", None),
        case(Class::UnknownVersion, "tiny", Some("9")),
        case(Class::WrongShape, "tiny", None),
        case(Class::TooLarge, "tiny", None),
        case(Class::DeadlinePassed, "tiny-late", None),
        case(Class::Overloaded, "tiny-full", None),
        case(Class::Cancelled, "tiny", None),
        case(Class::Success, "tiny", Some("1")),
    ]
}

fn max_tokens(class: Class) -> u32 {
    match class {
        Class::TooLarge => 5000,
        Class::Cancelled => 1000,
        _ => 4,
    }
}

async fn openai(running: &Running, case: &Case) -> Seen {
    let model = match case.version {
        Some(v) => format!("{}:{v}", case.model),
        None => case.model.to_owned(),
    };
    let prompt = match case.class {
        Class::WrongShape => serde_json::json!([99_999_999]),
        _ => serde_json::json!("Once upon a time"),
    };
    let stream = case.class == Class::Cancelled;
    let body = serde_json::json!({
        "model": model, "prompt": prompt, "max_tokens": max_tokens(case.class),
        "temperature": 0, "stream": stream,
    });
    let url = format!("http://{}/v1/completions", running.http_addr);
    let response = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("request");
    if !stream || response.status() != reqwest::StatusCode::OK {
        return http_seen(response).await;
    }
    let mut response = response;
    let first = response.chunk().await.expect("a first chunk");
    assert!(first.is_some(), "the stream sends its opening chunk");
    drop(response);
    Seen::GaveUp
}

async fn grpc_generate(running: &Running, case: &Case) -> Seen {
    let mut client = grpc_client(running).await;
    let name = if case.class == Class::WrongShape {
        "x"
    } else {
        "text_input"
    };
    let mut request = pb::ModelInferRequest {
        model_name: case.model.into(),
        model_version: case.version.unwrap_or_default().into(),
        inputs: vec![InferInputTensor {
            name: name.into(),
            datatype: "BYTES".into(),
            shape: vec![1],
            contents: Some(pb::InferTensorContents {
                bytes_contents: vec![b"Once upon a time".to_vec().into()],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    request.parameters.insert(
        "max_tokens".into(),
        pb::InferParameter {
            parameter_choice: Some(ParameterChoice::Int64Param(max_tokens(case.class).into())),
        },
    );
    if case.class != Class::Cancelled {
        return grpc_answer(client.model_infer(request), case.class).await;
    }
    let mut responses = client
        .model_stream_infer(futures::stream::iter([request]))
        .await
        .expect("stream opens")
        .into_inner();
    let first = responses.message().await.expect("a first chunk");
    assert!(first.is_some(), "the generation streams");
    drop(responses);
    drop(client);
    Seen::GaveUp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_generate_case_ends_the_same_on_grpc_and_the_openai_api() {
    let (_dir, running) = server().await;
    for openai_api in [false, true] {
        for case in generate_cases() {
            let edge = if openai_api { "OpenAI" } else { "gRPC" };
            let what = format!("{edge} {:?} ({})", case.class, case.model);
            run_case(&running, &what, &case, || async {
                if openai_api {
                    openai(&running, &case).await
                } else {
                    grpc_generate(&running, &case).await
                }
            })
            .await;
        }
    }
    running.shutdown().await;
}
