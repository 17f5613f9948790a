//! The real chat model: SmolLM2-135M-Instruct answers a question greedily, through the
//! chat template, the engine and gRPC.

mod common;
mod generate_support;

use common::*;
use generate_support::*;
use modelplane_generate::text::ChatMessage;
use modelplane_runtime::protocol::grpc::pb;

#[tokio::test]
async fn smollm2_knows_the_capital_of_france() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = tiny_config(
        dir.path(),
        &smollm2(),
        "generation: {slots: 2, context: 256}",
    )
    .replace("intraOpThreads: 1", "intraOpThreads: 2");
    let running = start_inline(&yaml).await;
    let version = serving(&running, "tiny");
    let codec = version.text_codec().expect("a tokenizer");
    let messages = [ChatMessage {
        role: "user".into(),
        content: "What is the capital of France?".into(),
    }];
    let prompt = codec
        .apply_chat_template(&messages, true)
        .expect("template renders");
    let ids = codec.encode(&prompt, false).expect("encodes");
    let output = generate_ids(&running, "tiny", &ids, 20).await;
    let answer = codec.decode(&output).expect("decodes");
    assert_eq!(answer.trim(), "The capital of France is Paris.");

    // The same answer over gRPC, as a completion of the rendered prompt.
    let mut client = grpc_client(&running).await;
    let request = pb::ModelInferRequest {
        model_name: "tiny".into(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: "text_input".into(),
            datatype: "BYTES".into(),
            shape: vec![1],
            contents: Some(pb::InferTensorContents {
                bytes_contents: vec![prompt.into_bytes().into()],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let response = client
        .model_infer(request)
        .await
        .expect("answer")
        .into_inner();
    let text = response.outputs[0]
        .contents
        .as_ref()
        .expect("contents")
        .bytes_contents[0]
        .to_vec();
    assert_eq!(
        String::from_utf8(text).expect("utf-8").trim(),
        "The capital of France is Paris."
    );
    running.shutdown().await;
}
