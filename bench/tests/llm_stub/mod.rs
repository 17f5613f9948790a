//! A fake generation server on 127.0.0.1: OpenAI streaming endpoints (SSE,
//! axum) and gRPC `ModelStreamInfer` (tonic) with fixed, known timing, so the
//! streaming load generator and its statistics are tested without a model.
//!
//! Every request is checked (stream flags, max_tokens, prompt); an answer is
//! `max_tokens` chunks, the first after [`FIRST`], the next ones [`GAP`]
//! apart, then the usage and the end. Each SSE event is written in two
//! pieces split inside its JSON, as a network may deliver it. Models:
//! `echo` (one token a chunk), `pairs` (two tokens a chunk: usage says twice
//! the chunks), `fail` (503), `truncate` (the stream ends without
//! `[DONE]`), `stall` (never sends anything).

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use modelplane_bench::proto::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use modelplane_bench::proto::infer_parameter::ParameterChoice;
use modelplane_bench::proto::model_infer_response::InferOutputTensor;
use modelplane_bench::proto::{
    InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse,
    ModelStreamInferResponse,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Status, Streaming};

/// Delay before the first chunk.
pub const FIRST: Duration = Duration::from_millis(40);
/// Delay between chunks.
pub const GAP: Duration = Duration::from_millis(10);

/// Prompts the server was sent, in arrival order.
pub type Seen = Arc<Mutex<Vec<String>>>;

/// Addresses of a running stub and the prompts it saw.
pub struct LlmStub {
    pub http_url: String,
    pub grpc_url: String,
    pub seen: Seen,
}

/// Starts both listeners on free loopback ports; they live until the test's
/// runtime shuts down.
pub async fn start() -> LlmStub {
    let seen = Seen::default();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_url = format!("http://{}", http.local_addr().unwrap());
    let app = Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .with_state(Arc::clone(&seen));
    tokio::spawn(async move { axum::serve(http, app).await });

    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_url = format!("http://{}", grpc.local_addr().unwrap());
    let service = GrpcInferenceServiceServer::new(GrpcLlm {
        seen: Arc::clone(&seen),
    });
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(grpc))
            .await
    });
    LlmStub {
        http_url,
        grpc_url,
        seen,
    }
}

/// What a checked request asks for.
struct Ask {
    model: String,
    prompt: String,
    max_tokens: u64,
}

fn check_openai(chat: bool, body: &Value) -> Result<Ask, String> {
    if body["stream"] != true || body["stream_options"]["include_usage"] != true {
        return Err("stream with include_usage expected".into());
    }
    let max_tokens = body["max_tokens"].as_u64().filter(|n| *n >= 1);
    let prompt = if chat {
        body["messages"][0]["content"].as_str()
    } else {
        body["prompt"].as_str()
    };
    match (body["model"].as_str(), prompt, max_tokens) {
        (Some(model), Some(prompt), Some(max_tokens)) if !prompt.is_empty() => Ok(Ask {
            model: model.into(),
            prompt: prompt.into(),
            max_tokens,
        }),
        _ => Err(format!("bad request {body}")),
    }
}

async fn completions(State(seen): State<Seen>, body: Bytes) -> Response {
    openai(&seen, false, &body)
}

async fn chat(State(seen): State<Seen>, body: Bytes) -> Response {
    openai(&seen, true, &body)
}

fn openai(seen: &Seen, chat: bool, body: &[u8]) -> Response {
    let ask = serde_json::from_slice(body)
        .map_err(|e| e.to_string())
        .and_then(|v| check_openai(chat, &v));
    let ask = match ask {
        Ok(ask) => ask,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    if ask.model == "fail" {
        return (StatusCode::SERVICE_UNAVAILABLE, "{\"error\":\"busy\"}").into_response();
    }
    seen.lock().unwrap().push(ask.prompt.clone());
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(4);
    tokio::spawn(sse_answer(chat, ask, tx));
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap()
}

/// Writes one event in two pieces, split inside its data.
async fn send_event(tx: &mpsc::Sender<Result<Bytes, Infallible>>, data: &str) -> bool {
    let event = format!("data: {data}\n\n");
    let (a, b) = event.split_at(event.len() / 2);
    tx.send(Ok(Bytes::from(a.to_owned()))).await.is_ok()
        && tx.send(Ok(Bytes::from(b.to_owned()))).await.is_ok()
}

async fn sse_answer(chat: bool, ask: Ask, tx: mpsc::Sender<Result<Bytes, Infallible>>) {
    if ask.model == "stall" {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return;
    }
    if chat {
        send_event(
            &tx,
            r#"{"choices":[{"index":0,"delta":{"role":"assistant"}}]}"#,
        )
        .await;
    }
    let per_chunk = if ask.model == "pairs" { 2 } else { 1 };
    let chunks = ask.max_tokens.div_ceil(per_chunk);
    for i in 0..chunks {
        tokio::time::sleep(if i == 0 { FIRST } else { GAP }).await;
        let text = format!("t{i} ");
        let chunk = if chat {
            json!({"choices": [{"index": 0, "delta": {"content": text}}]})
        } else {
            json!({"choices": [{"index": 0, "text": text}]})
        };
        if !send_event(&tx, &chunk.to_string()).await {
            return; // the client went away
        }
        if ask.model == "truncate" && i == 1 {
            return;
        }
    }
    let usage = json!({"choices": [], "usage": {
        "prompt_tokens": words(&ask.prompt), "completion_tokens": ask.max_tokens,
        "total_tokens": words(&ask.prompt) + ask.max_tokens}});
    send_event(&tx, &usage.to_string()).await;
    send_event(&tx, "[DONE]").await;
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

struct GrpcLlm {
    seen: Seen,
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ModelStreamInferResponse, Status>> + Send>>;

fn check_grpc(request: &ModelInferRequest) -> Result<Ask, Status> {
    let input = request
        .inputs
        .first()
        .filter(|i| i.name == "text_input" && i.datatype == "BYTES");
    let prompt = input
        .and_then(|i| i.contents.as_ref())
        .and_then(|c| c.bytes_contents.first())
        .and_then(|b| String::from_utf8(b.clone()).ok());
    let max_tokens = match request
        .parameters
        .get("max_tokens")
        .map(|p| &p.parameter_choice)
    {
        Some(Some(ParameterChoice::Int64Param(n))) if *n >= 1 => u64::try_from(*n).ok(),
        _ => None,
    };
    match (prompt, max_tokens) {
        (Some(prompt), Some(max_tokens)) => Ok(Ask {
            model: request.model_name.clone(),
            prompt,
            max_tokens,
        }),
        _ => Err(Status::invalid_argument(
            "text_input BYTES and max_tokens expected",
        )),
    }
}

fn message(
    text: Option<String>,
    parameters: Vec<(&str, ParameterChoice)>,
) -> ModelStreamInferResponse {
    let outputs = text
        .map(|t| InferOutputTensor {
            name: "text_output".into(),
            datatype: "BYTES".into(),
            shape: vec![1],
            contents: Some(InferTensorContents {
                bytes_contents: vec![t.into_bytes()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .into_iter()
        .collect();
    let parameters: HashMap<String, InferParameter> = parameters
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_owned(),
                InferParameter {
                    parameter_choice: Some(v),
                },
            )
        })
        .collect();
    ModelStreamInferResponse {
        error_message: String::new(),
        infer_response: Some(ModelInferResponse {
            model_name: "echo".into(),
            outputs,
            parameters,
            ..Default::default()
        }),
    }
}

async fn grpc_answer(ask: Ask, tx: mpsc::Sender<Result<ModelStreamInferResponse, Status>>) {
    for i in 0..ask.max_tokens {
        tokio::time::sleep(if i == 0 { FIRST } else { GAP }).await;
        if tx
            .send(Ok(message(Some(format!("t{i} ")), vec![])))
            .await
            .is_err()
        {
            return;
        }
    }
    let last = message(
        None,
        vec![
            ("triton_final_response", ParameterChoice::BoolParam(true)),
            (
                "prompt_tokens",
                ParameterChoice::Int64Param(words(&ask.prompt) as i64),
            ),
            (
                "completion_tokens",
                ParameterChoice::Int64Param(ask.max_tokens as i64),
            ),
        ],
    );
    let _ = tx.send(Ok(last)).await;
}

#[tonic::async_trait]
impl GrpcInferenceService for GrpcLlm {
    async fn model_stream_infer(
        &self,
        request: Request<Streaming<ModelInferRequest>>,
    ) -> Result<tonic::Response<ResponseStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("no request"))??;
        let ask = check_grpc(&first)?;
        if ask.model == "fail" {
            return Err(Status::unavailable("busy"));
        }
        self.seen.lock().unwrap().push(ask.prompt.clone());
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(grpc_answer(ask, tx));
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
