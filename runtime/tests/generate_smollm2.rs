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

/// Greedy ids of chat `questions` (each through SmolLM2's template, which puts the same
/// system prompt first), one after another and then two at once, with prefix caching on
/// or off; and the prefix cache hits counted.
async fn chat_ids(prefix_caching: bool, questions: &[&str]) -> (Vec<Vec<u32>>, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = tiny_config(
        dir.path(),
        &smollm2(),
        &format!("generation: {{slots: 2, context: 256, prefixCaching: {prefix_caching}}}"),
    )
    .replace("intraOpThreads: 1", "intraOpThreads: 2");
    let running = start_inline(&yaml).await;
    let version = serving(&running, "tiny");
    let codec = version.text_codec().expect("a tokenizer");
    let prompts: Vec<Vec<u32>> = questions
        .iter()
        .map(|question| {
            let messages = [ChatMessage {
                role: "user".into(),
                content: (*question).into(),
            }];
            let text = codec
                .apply_chat_template(&messages, true)
                .expect("template renders");
            codec.encode(&text, false).expect("encodes")
        })
        .collect();
    let (alone, together) = prompts.split_at(prompts.len() - 2);
    let mut out = Vec::new();
    for prompt in alone {
        out.push(generate_ids(&running, "tiny", prompt, 12).await);
    }
    let (a, b) = tokio::join!(
        generate_ids(&running, "tiny", &together[0], 12),
        generate_ids(&running, "tiny", &together[1], 12)
    );
    out.extend([a, b]);
    let hits = metric(
        &running,
        "modelplane_generate_prefix_cache_hits_total{model=\"tiny\",version=\"1\"}",
    )
    .await
    .unwrap_or(0.0);
    (out, hits)
}

#[tokio::test]
async fn prefix_caching_reuses_the_system_prompt_and_changes_no_token() {
    let questions = [
        "What is the capital of France?",
        "Name a primary colour.",
        "What is two plus two?",
        "Say hello.",
        "What is the largest ocean?",
    ];
    let (cached, hits) = chat_ids(true, &questions).await;
    let (plain, no_hits) = chat_ids(false, &questions).await;
    assert_eq!(
        cached, plain,
        "the same greedy tokens with the cache on and off"
    );
    assert_eq!(no_hits, 0.0);
    // Every request after the first reuses at least the template's system prompt.
    assert!(hits >= 4.0 * 20.0, "prefix cache hits {hits}");
}
