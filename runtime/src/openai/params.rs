//! Every check of an OpenAI request in one place: wire fields in, a typed plan out.
//!
//! Statuses: a request that cannot be understood (no prompt, malformed messages, token
//! ids outside the vocabulary) is 400; a generation parameter this server does not
//! accept (`max_tokens ≤ 0`, `n ≠ 1`, out-of-range sampling values, `logprobs`, tools)
//! is 422 naming the parameter.

use modelplane_generate::sampling::SamplingParams;
use modelplane_generate::text::ChatMessage;
use serde_json::Value;

use super::ApiError;
use super::wire::{
    ChatUnsupported, CompletionUnsupported, GenerationFields, MaxTokens, MessageContent, Prompt,
    Stop, WireMessage,
};
use crate::error::InferError;
use crate::serve::GenerateInput;

/// Most stop sequences in one request (OpenAI's limit).
pub const MAX_STOP_SEQUENCES: usize = 4;

/// The validated generation settings of one request.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// Most tokens to generate as requested; `None`: the endpoint's default.
    pub max_tokens: Option<u32>,
    /// Sampler settings, already validated.
    pub sampling: SamplingParams,
    /// Stop sequences (never emitted).
    pub stop: Vec<String>,
    /// Answer as server-sent events.
    pub stream: bool,
    /// With `stream`: end with a usage chunk.
    pub include_usage: bool,
}

impl Generation {
    /// The engine's input for `prompt`, carried in the request field `prompt_field`.
    pub fn input(&self, prompt: Vec<u32>, prompt_field: &'static str) -> GenerateInput {
        GenerateInput {
            prompt,
            max_tokens: self.max_tokens,
            sampling: self.sampling.clone(),
            stop: self.stop.clone(),
            prompt_field,
        }
    }
}

/// A completion prompt: text to encode, or token ids as given.
#[derive(Clone, Debug, PartialEq)]
pub enum PromptInput {
    /// Encoded with the model's tokenizer (special tokens as its post-processor adds).
    Text(String),
    /// Used as is.
    Tokens(Vec<u32>),
}

/// Checks the shared generation fields; `max_tokens` is the endpoint's effective
/// token limit and the field that set it.
pub fn generation(
    fields: &GenerationFields,
    max_tokens: MaxTokens,
) -> Result<Generation, ApiError> {
    if let Some(n) = fields.n.filter(|n| *n != 1) {
        return Err(ApiError::invalid_param(
            "n",
            format!("only n = 1 is supported, got {n}"),
        ));
    }
    for (param, value) in [
        ("frequency_penalty", fields.frequency_penalty),
        ("presence_penalty", fields.presence_penalty),
    ] {
        if value.is_some_and(|v| v != 0.0) {
            return Err(ApiError::invalid_param(
                param,
                format!("{param} is not supported; use repetition_penalty (1.0 = off)"),
            ));
        }
    }
    if is_set(fields.logit_bias.as_ref()) {
        return Err(ApiError::invalid_param(
            "logit_bias",
            "logit_bias is not supported",
        ));
    }
    let stream = fields.stream.unwrap_or(false);
    if fields.stream_options.is_some() && !stream {
        return Err(ApiError::bad_field(
            "stream_options",
            "stream_options is only allowed when stream is true",
        ));
    }
    let sampling = sampling(fields)?;
    Ok(Generation {
        max_tokens: max_tokens
            .map(|(param, value)| positive_max_tokens(param, value))
            .transpose()?,
        sampling,
        stop: stop_sequences(fields.stop.as_ref())?,
        stream,
        include_usage: fields
            .stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage),
    })
}

/// Sampler settings with OpenAI's defaults (temperature 1, top_p 1), validated.
fn sampling(fields: &GenerationFields) -> Result<SamplingParams, ApiError> {
    let top_k = match fields.top_k {
        None | Some(0 | -1) => None,
        Some(k) => Some(u32::try_from(k).map_err(|_| {
            ApiError::invalid_param(
                "top_k",
                format!("top_k must be a positive count (0 or -1 = off), got {k}"),
            )
        })?),
    };
    let params = SamplingParams {
        temperature: fields.temperature.unwrap_or(1.0),
        top_k,
        top_p: fields.top_p.unwrap_or(1.0),
        repetition_penalty: fields.repetition_penalty.unwrap_or(1.0),
        // The seed's bits as they are: -1 and u64::MAX seed the same generator.
        seed: fields.seed.map(|seed| seed as u64),
    };
    params
        .validate()
        .map_err(|err| ApiError::from(InferError::from(err)))?;
    Ok(params)
}

fn positive_max_tokens(param: &'static str, value: i64) -> Result<u32, ApiError> {
    u32::try_from(value)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| {
            let bound = if value < 1 {
                "at least 1".to_owned()
            } else {
                format!("at most {}", u32::MAX)
            };
            ApiError::invalid_param(param, format!("{param} must be {bound}, got {value}"))
        })
}

fn stop_sequences(stop: Option<&Stop>) -> Result<Vec<String>, ApiError> {
    let stops = match stop {
        None => Vec::new(),
        Some(Stop::One(one)) => vec![one.clone()],
        Some(Stop::Many(many)) => many.clone(),
    };
    if stops.len() > MAX_STOP_SEQUENCES {
        return Err(ApiError::invalid_param(
            "stop",
            format!(
                "at most {MAX_STOP_SEQUENCES} stop sequences are allowed, got {}",
                stops.len()
            ),
        ));
    }
    if stops.iter().any(String::is_empty) {
        return Err(ApiError::invalid_param(
            "stop",
            "stop sequences must not be empty",
        ));
    }
    Ok(stops)
}

/// Refuses completion fields this server does not implement.
pub fn completion_supported(fields: &CompletionUnsupported) -> Result<(), ApiError> {
    if is_set(fields.logprobs.as_ref()) {
        return Err(unsupported("logprobs"));
    }
    if fields.echo == Some(true) {
        return Err(unsupported("echo"));
    }
    if fields.best_of.is_some_and(|b| b != 1) {
        return Err(unsupported("best_of"));
    }
    if fields.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(unsupported("suffix"));
    }
    Ok(())
}

/// Refuses chat fields this server does not implement.
pub fn chat_supported(fields: &ChatUnsupported) -> Result<(), ApiError> {
    if fields
        .logprobs
        .as_ref()
        .is_some_and(|v| v != &Value::Bool(false))
    {
        return Err(unsupported("logprobs"));
    }
    let refused = [
        ("top_logprobs", &fields.top_logprobs),
        ("tools", &fields.tools),
        ("functions", &fields.functions),
    ];
    if let Some((param, _)) = refused.iter().find(|(_, v)| is_set(v.as_ref())) {
        return Err(unsupported(param));
    }
    if let Some(choice) = &fields.tool_choice
        && !matches!(choice, Value::Null)
        && choice != "none"
    {
        return Err(unsupported("tool_choice"));
    }
    if let Some(format) = &fields.response_format
        && !matches!(format, Value::Null)
        && format.get("type").and_then(Value::as_str) != Some("text")
    {
        return Err(unsupported("response_format"));
    }
    Ok(())
}

fn unsupported(param: &str) -> ApiError {
    ApiError::invalid_param(param, format!("{param} is not supported by this server"))
}

/// Whether an optional raw field carries something (not absent, null, `{}` or `[]`).
fn is_set(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Object(map)) => !map.is_empty(),
        Some(Value::Array(list)) => !list.is_empty(),
        Some(_) => true,
    }
}

/// The one prompt of a completion request, token ids checked against the vocabulary.
pub fn completion_prompt(prompt: Prompt, vocab_size: u32) -> Result<PromptInput, InferError> {
    let input = match prompt {
        Prompt::Text(text) => PromptInput::Text(text),
        Prompt::Tokens(ids) => PromptInput::Tokens(token_ids(&ids, vocab_size)?),
        Prompt::Texts(mut texts) if texts.len() == 1 => PromptInput::Text(texts.remove(0)),
        Prompt::TokenLists(lists) if lists.len() == 1 => {
            PromptInput::Tokens(token_ids(&lists[0], vocab_size)?)
        }
        Prompt::Texts(texts) => return Err(one_prompt(texts.len())),
        Prompt::TokenLists(lists) => return Err(one_prompt(lists.len())),
    };
    let empty = match &input {
        PromptInput::Text(text) => text.is_empty(),
        PromptInput::Tokens(ids) => ids.is_empty(),
    };
    if empty {
        return Err(bad_prompt("the prompt is empty".to_owned()));
    }
    Ok(input)
}

fn one_prompt(got: usize) -> InferError {
    bad_prompt(format!(
        "exactly one prompt per request is supported, got {got}"
    ))
}

fn bad_prompt(message: String) -> InferError {
    InferError::BadField {
        param: "prompt",
        message,
    }
}

fn token_ids(ids: &[i64], vocab_size: u32) -> Result<Vec<u32>, InferError> {
    ids.iter()
        .map(|&id| {
            u32::try_from(id)
                .ok()
                .filter(|id| *id < vocab_size)
                .ok_or_else(|| {
                    bad_prompt(format!(
                        "token id {id} is outside the vocabulary (0..{vocab_size})"
                    ))
                })
        })
        .collect()
}

/// Chat messages as the chat template takes them; text parts are joined by newlines.
pub fn chat_messages(messages: Vec<WireMessage>) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::bad_field(
            "messages",
            "messages must not be empty",
        ));
    }
    messages
        .into_iter()
        .enumerate()
        .map(|(index, message)| chat_message(index, message))
        .collect()
}

fn chat_message(index: usize, message: WireMessage) -> Result<ChatMessage, ApiError> {
    let field = format!("messages[{index}]");
    let bad = |message: String| ApiError::bad_field(&field, message);
    let role = match message.role.as_str() {
        "system" | "developer" => "system",
        "user" => "user",
        "assistant" => "assistant",
        other => {
            return Err(bad(format!(
                "{field}.role {other:?} is not supported (system, developer, user, assistant)"
            )));
        }
    };
    if is_set(message.tool_calls.as_ref()) {
        return Err(bad(format!("{field}.tool_calls: tools are not supported")));
    }
    let content = match message.content {
        None => return Err(bad(format!("{field}.content is missing"))),
        Some(MessageContent::Text(text)) => text,
        Some(MessageContent::Parts(parts)) => {
            let texts = parts
                .into_iter()
                .enumerate()
                .map(|(i, part)| match part.text {
                    Some(text) if part.kind == "text" => Ok(text),
                    _ => Err(bad(format!(
                        "{field}.content[{i}]: only text parts are supported, got type {:?}",
                        part.kind
                    ))),
                });
            texts.collect::<Result<Vec<_>, _>>()?.join("\n")
        }
    };
    Ok(ChatMessage {
        role: role.to_owned(),
        content,
    })
}

#[cfg(test)]
#[path = "params_tests.rs"]
mod tests;
