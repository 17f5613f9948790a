use axum::http::StatusCode;

use super::*;
use crate::openai::wire::{ChatRequest, CompletionRequest, parse};

fn completion(body: &str) -> CompletionRequest {
    parse(body.as_bytes()).expect("valid request JSON")
}

fn chat(body: &str) -> ChatRequest {
    parse(body.as_bytes()).expect("valid request JSON")
}

fn completion_generation(body: &str) -> Result<Generation, ApiError> {
    let request = completion(body);
    generation(&request.params, request.max_tokens())
}

#[test]
fn defaults_follow_openai() {
    let plan = completion_generation(r#"{"model": "m", "prompt": "x"}"#).expect("valid");
    assert_eq!(plan.max_tokens, None);
    assert_eq!(plan.sampling.temperature, 1.0);
    assert_eq!(plan.sampling.top_p, 1.0);
    assert_eq!(plan.sampling.top_k, None);
    assert_eq!(plan.sampling.repetition_penalty, 1.0);
    assert!(plan.stop.is_empty());
    assert!(!plan.stream && !plan.include_usage);
}

#[test]
fn sampling_fields_reach_the_sampler() {
    let plan = completion_generation(
        r#"{"model": "m", "prompt": "x", "temperature": 0, "top_k": 40, "top_p": 0.9,
            "repetition_penalty": 1.1, "seed": 7, "max_tokens": 12, "stop": ["a", "b"],
            "stream": true, "stream_options": {"include_usage": true}}"#,
    )
    .expect("valid");
    assert_eq!(plan.max_tokens, Some(12));
    assert_eq!(plan.sampling.temperature, 0.0);
    assert_eq!(plan.sampling.top_k, Some(40));
    assert_eq!(plan.sampling.seed, Some(7));
    assert_eq!(plan.stop, ["a", "b"]);
    assert!(plan.stream && plan.include_usage);
}

#[test]
fn max_tokens_below_one_is_422_on_max_tokens() {
    for value in ["0", "-3"] {
        let body = format!(r#"{{"model": "m", "prompt": "x", "max_tokens": {value}}}"#);
        let err = completion_generation(&body).expect_err("refused");
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err.param.as_deref(), Some("max_tokens"));
    }
}

#[test]
fn a_max_tokens_past_u32_is_422_saying_at_most() {
    let err = completion_generation(r#"{"model": "m", "prompt": "x", "max_tokens": 99999999999}"#)
        .expect_err("too many");
    assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(err.message.contains("at most"), "{}", err.message);
}

#[test]
fn chat_errors_name_max_completion_tokens_when_it_was_sent() {
    let request =
        chat(r#"{"model": "m", "messages": [], "max_completion_tokens": 0, "max_tokens": 5}"#);
    let err = generation(&request.params, request.max_tokens()).expect_err("0 tokens");
    assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err.param.as_deref(), Some("max_completion_tokens"));
    let request = chat(r#"{"model": "m", "messages": [], "max_tokens": 7}"#);
    let plan = generation(&request.params, request.max_tokens()).expect("valid");
    assert_eq!(plan.max_tokens, Some(7));
}

#[test]
fn negative_seeds_are_accepted_and_distinct() {
    let seed = |value: &str| {
        let body = format!(r#"{{"model": "m", "prompt": "x", "seed": {value}}}"#);
        completion_generation(&body)
            .expect("any int64 seed")
            .sampling
            .seed
    };
    assert_eq!(seed("-1"), Some(u64::MAX));
    assert_ne!(seed("-2"), seed("2"));
    assert_eq!(seed("42"), Some(42));
}

#[test]
fn only_one_choice_is_generated() {
    let err = completion_generation(r#"{"model": "m", "prompt": "x", "n": 2}"#).expect_err("n=2");
    assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(err.message.contains("n = 1"), "{}", err.message);
    assert!(completion_generation(r#"{"model": "m", "prompt": "x", "n": 1}"#).is_ok());
}

#[test]
fn out_of_range_sampling_values_are_422_naming_the_field() {
    for (field, value) in [("temperature", "-1"), ("top_p", "0"), ("top_k", "-5")] {
        let body = format!(r#"{{"model": "m", "prompt": "x", "{field}": {value}}}"#);
        let err = completion_generation(&body).expect_err(field);
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY, "{field}");
        assert_eq!(err.param.as_deref(), Some(field));
    }
}

#[test]
fn additive_penalties_and_bad_stops_are_refused() {
    for body in [
        r#"{"model": "m", "prompt": "x", "presence_penalty": 0.5}"#,
        r#"{"model": "m", "prompt": "x", "stop": ""}"#,
        r#"{"model": "m", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}"#,
        r#"{"model": "m", "prompt": "x", "logit_bias": {"5": 1}}"#,
    ] {
        let err = completion_generation(body).expect_err(body);
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    assert!(
        completion_generation(r#"{"model": "m", "prompt": "x", "frequency_penalty": 0}"#).is_ok()
    );
}

#[test]
fn stream_options_need_stream() {
    let err = completion_generation(
        r#"{"model": "m", "prompt": "x", "stream_options": {"include_usage": true}}"#,
    )
    .expect_err("no stream");
    assert_eq!(err.status, StatusCode::BAD_REQUEST);
}

#[test]
fn unsupported_completion_features_are_named() {
    let request = completion(r#"{"model": "m", "prompt": "x", "logprobs": 2}"#);
    let err = completion_supported(&request.unsupported).expect_err("logprobs");
    assert_eq!(err.param.as_deref(), Some("logprobs"));
    let request = completion(r#"{"model": "m", "prompt": "x", "echo": false, "best_of": 1}"#);
    assert!(completion_supported(&request.unsupported).is_ok());
}

#[test]
fn unsupported_chat_features_are_named() {
    for (field, body) in [
        ("logprobs", r#""logprobs": true"#),
        ("tools", r#""tools": [{"type": "function"}]"#),
        ("tool_choice", r#""tool_choice": "auto""#),
        (
            "response_format",
            r#""response_format": {"type": "json_object"}"#,
        ),
    ] {
        let request = chat(&format!(r#"{{"model": "m", "messages": [], {body}}}"#));
        let err = chat_supported(&request.unsupported).expect_err(field);
        assert_eq!(err.param.as_deref(), Some(field));
    }
    let request = chat(
        r#"{"model": "m", "messages": [], "logprobs": false, "tools": [], "tool_choice": "none",
            "response_format": {"type": "text"}}"#,
    );
    assert!(chat_supported(&request.unsupported).is_ok());
}

#[test]
fn one_prompt_in_any_form_and_token_ids_in_the_vocabulary() {
    let prompt = |json: &str| completion(&format!(r#"{{"model": "m", "prompt": {json}}}"#)).prompt;
    assert_eq!(
        completion_prompt(prompt(r#"["hi"]"#), 10).expect("one text"),
        PromptInput::Text("hi".into())
    );
    assert_eq!(
        completion_prompt(prompt("[[1, 9]]"), 10).expect("one id list"),
        PromptInput::Tokens(vec![1, 9])
    );
    for bad in [r#""""#, "[]", r#"["a", "b"]"#, "[1, 10]", "[-1]"] {
        let err = ApiError::from(completion_prompt(prompt(bad), 10).expect_err(bad));
        assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(err.param.as_deref(), Some("prompt"), "{bad}");
    }
}

#[test]
fn messages_become_template_messages() {
    let request = chat(
        r#"{"model": "m", "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
        ]}"#,
    );
    let messages = chat_messages(request.messages).expect("valid");
    assert_eq!(messages[0].role, "system");
    assert_eq!(messages[1].role, "user");
    assert_eq!(messages[1].content, "a\nb");
}

#[test]
fn malformed_messages_are_400_naming_the_message() {
    for (expected, messages) in [
        ("messages", "[]"),
        ("messages[0]", r#"[{"role": "wizard", "content": "x"}]"#),
        ("messages[0]", r#"[{"role": "assistant", "content": null}]"#),
        (
            "messages[1]",
            r#"[{"role": "user", "content": "x"}, {"role": "user", "content": [{"type": "image_url"}]}]"#,
        ),
    ] {
        let request = chat(&format!(r#"{{"model": "m", "messages": {messages}}}"#));
        let err = chat_messages(request.messages).expect_err(messages);
        assert_eq!(err.status, StatusCode::BAD_REQUEST, "{messages}");
        assert_eq!(err.param.as_deref(), Some(expected), "{messages}");
    }
}
