//! Generation over gRPC: `ModelStreamInfer` streams text chunks, the last one marked
//! final with the finish reason and usage; `ModelInfer` answers the whole text; bad
//! parameters are INVALID_ARGUMENT; a cancelled stream frees its slot.

mod common;
mod generate_support;

use std::time::Duration;

use common::*;
use generate_support::*;
use modelplane_runtime::Running;
use modelplane_runtime::protocol::grpc::pb;
use pb::infer_parameter::ParameterChoice;
use pb::model_infer_request::InferInputTensor;

fn text_request(prompt: &str, params: &[(&str, ParameterChoice)]) -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        model_name: "tiny".into(),
        id: "req-1".into(),
        inputs: vec![InferInputTensor {
            name: "text_input".into(),
            datatype: "BYTES".into(),
            shape: vec![1],
            contents: Some(pb::InferTensorContents {
                bytes_contents: vec![prompt.as_bytes().to_vec().into()],
                ..Default::default()
            }),
            ..Default::default()
        }],
        parameters: params
            .iter()
            .map(|(name, choice)| {
                let value = pb::InferParameter {
                    parameter_choice: Some(choice.clone()),
                };
                ((*name).to_owned(), value)
            })
            .collect(),
        ..Default::default()
    }
}

fn text_of(response: &pb::ModelInferResponse) -> String {
    let output = response
        .outputs
        .iter()
        .find(|o| o.name == "text_output")
        .expect("text_output");
    let contents = output.contents.as_ref().expect("contents");
    String::from_utf8(contents.bytes_contents[0].to_vec()).expect("utf-8")
}

fn param<'a>(response: &'a pb::ModelInferResponse, name: &str) -> Option<&'a ParameterChoice> {
    response.parameters.get(name)?.parameter_choice.as_ref()
}

async fn server() -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = tiny_config(
        dir.path(),
        &tiny_llama(),
        "generation: {slots: 2, context: 512}",
    );
    let running = start_inline(&yaml).await;
    (dir, running)
}

#[tokio::test]
async fn a_stream_sends_chunks_then_a_final_response_with_usage() {
    let (_dir, running) = server().await;
    let mut client = grpc_client(&running).await;
    let params = [("max_tokens", ParameterChoice::Int64Param(12))];
    let request = text_request("Once upon a time", &params);
    let outbound = futures::stream::iter(vec![request.clone()]);
    let mut responses = client
        .model_stream_infer(outbound)
        .await
        .expect("stream starts")
        .into_inner();
    let mut streamed = String::new();
    let mut last = None;
    while let Some(message) = responses.message().await.expect("message") {
        assert_eq!(message.error_message, "");
        let response = message.infer_response.expect("response");
        assert_eq!(response.id, "req-1");
        streamed.push_str(&text_of(&response));
        last = Some(response);
    }
    let last = last.expect("responses");
    assert_eq!(
        param(&last, "triton_final_response"),
        Some(&ParameterChoice::BoolParam(true))
    );
    let Some(ParameterChoice::Int64Param(completion)) = param(&last, "completion_tokens") else {
        panic!("completion_tokens missing: {last:?}");
    };
    assert!((1..=12).contains(completion), "{completion}");
    let reason = param(&last, "finish_reason");
    if *completion < 12 {
        assert_eq!(reason, Some(&ParameterChoice::StringParam("stop".into())));
    } else {
        assert_eq!(reason, Some(&ParameterChoice::StringParam("length".into())));
    }

    let unary = client
        .model_infer(request)
        .await
        .expect("unary")
        .into_inner();
    assert_eq!(
        text_of(&unary),
        streamed,
        "greedy: streamed text = whole text"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn invalid_sampling_parameters_are_invalid_argument() {
    let (_dir, running) = server().await;
    let mut client = grpc_client(&running).await;
    for (name, choice) in [
        ("temperature", ParameterChoice::DoubleParam(-0.5)),
        ("max_tokens", ParameterChoice::Int64Param(0)),
        ("top_p", ParameterChoice::DoubleParam(2.0)),
        ("bogus", ParameterChoice::BoolParam(true)),
    ] {
        let status = client
            .model_infer(text_request("Hi", &[(name, choice)]))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{name}");
        assert!(
            status.message().contains(name),
            "{name}: {}",
            status.message()
        );
    }
    let too_long = [("max_tokens", ParameterChoice::Int64Param(100_000))];
    let status = client
        .model_infer(text_request("Hi", &too_long))
        .await
        .expect_err("longer than the context");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    running.shutdown().await;
}

#[tokio::test]
async fn a_cancelled_stream_leaves_the_batch() {
    let (_dir, running) = server().await;
    let mut client = grpc_client(&running).await;
    let params = [("max_tokens", ParameterChoice::Int64Param(500))];
    let (sender, outbound) = tokio::sync::mpsc::channel(1);
    sender
        .send(text_request("Tell me a long story", &params))
        .await
        .expect("send");
    let outbound = tokio_stream_of(outbound);
    let mut responses = client
        .model_stream_infer(outbound)
        .await
        .expect("stream starts")
        .into_inner();
    responses
        .message()
        .await
        .expect("message")
        .expect("a first chunk");
    let version = serving(&running, "tiny");
    let engine = version.engine().expect("engine");
    assert_eq!(engine.stats().slots_used, 1);
    drop(responses);
    drop(sender);
    wait_until(Duration::from_secs(10), || async {
        engine.stats().slots_used == 0
    })
    .await
    .expect("the cancelled request leaves its slot");
    running.shutdown().await;
}

#[tokio::test]
async fn grpc_timeout_is_the_generations_deadline() {
    let (_dir, running) = server().await;
    let mut client = grpc_client(&running).await;
    let params = [("max_tokens", ParameterChoice::Int64Param(500))];
    let request = text_request("Tell me a long story", &params);
    let mut call = tonic::Request::new(futures::stream::iter(vec![request]));
    call.set_timeout(Duration::from_millis(150));
    let mut responses = client
        .model_stream_infer(call)
        .await
        .expect("stream starts")
        .into_inner();
    let mut last = None;
    while let Ok(Some(message)) = responses.message().await {
        last = Some(message);
    }
    let last = last.expect("responses");
    assert!(last.error_message.contains("deadline"), "{last:?}");
    let response = last.infer_response.expect("response");
    assert_eq!(
        param(&response, "triton_final_response"),
        Some(&ParameterChoice::BoolParam(true))
    );
    let version = serving(&running, "tiny");
    let engine = version.engine().expect("engine");
    wait_until(Duration::from_secs(10), || async {
        engine.stats().slots_used == 0
    })
    .await
    .expect("the expired request leaves its slot");
    running.shutdown().await;
}

/// A stream of the requests a channel receives (the client keeps its side open).
fn tokio_stream_of(
    mut receiver: tokio::sync::mpsc::Receiver<pb::ModelInferRequest>,
) -> impl futures::Stream<Item = pb::ModelInferRequest> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

#[tokio::test]
async fn rest_infer_on_a_generate_model_is_a_clear_400() {
    let (_dir, running) = server().await;
    let url = format!("http://{}/v2/models/tiny/infer", running.http_addr);
    let body = serde_json::json!({"inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["Hi"]}]});
    let (status, body) = post_json(&url, &body).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("/v1/chat/completions"),
        "the error says where to go: {body}"
    );
    let meta: serde_json::Value =
        reqwest::get(format!("http://{}/v2/models/tiny", running.http_addr))
            .await
            .expect("metadata")
            .json()
            .await
            .expect("json");
    assert_eq!(meta["inputs"][0]["name"], "text_input");
    assert_eq!(meta["inputs"][0]["datatype"], "BYTES");
    assert_eq!(meta["outputs"][0]["name"], "text_output");
    running.shutdown().await;
}
