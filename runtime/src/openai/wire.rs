//! Request bodies of the OpenAI-compatible endpoints, as clients send them.
//!
//! Numbers that must be checked (max_tokens, n, top_k) are read as signed integers so
//! that a negative value reaches validation and gets a 422 naming the field, not a
//! generic JSON error. Fields OpenAI defines that this server does not implement are
//! kept as raw values so that validation can refuse them by name; fields that change
//! nothing here (`user`, `metadata`, ...) are ignored like any unknown field.

use serde::Deserialize;
use serde_json::Value;

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    /// `name` or `name:version`.
    pub model: String,
    /// Text, a list of one text, token ids, or a list of one token-id list.
    pub prompt: Prompt,
    /// Generation parameters shared with chat.
    #[serde(flatten)]
    pub params: GenerationFields,
    /// Completion-only fields this server refuses when set.
    #[serde(flatten)]
    pub unsupported: CompletionUnsupported,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// `name` or `name:version`.
    pub model: String,
    /// The conversation, rendered with the model's chat template.
    pub messages: Vec<WireMessage>,
    /// OpenAI's newer name for `max_tokens`.
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
    /// Generation parameters shared with completions.
    #[serde(flatten)]
    pub params: GenerationFields,
    /// Chat-only fields this server refuses when set.
    #[serde(flatten)]
    pub unsupported: ChatUnsupported,
}

/// A requested token limit and the field it came from (errors name that field).
pub type MaxTokens = Option<(&'static str, i64)>;

impl CompletionRequest {
    /// `max_tokens`.
    pub fn max_tokens(&self) -> MaxTokens {
        self.params.max_tokens.map(|value| ("max_tokens", value))
    }
}

impl ChatRequest {
    /// `max_completion_tokens`, else `max_tokens` (OpenAI's older name).
    pub fn max_tokens(&self) -> MaxTokens {
        self.max_completion_tokens
            .map(|value| ("max_completion_tokens", value))
            .or_else(|| self.params.max_tokens.map(|value| ("max_tokens", value)))
    }
}

/// A completion prompt in any of OpenAI's forms.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Prompt {
    /// One text.
    Text(String),
    /// Several texts (only one is accepted).
    Texts(Vec<String>),
    /// Token ids.
    Tokens(Vec<i64>),
    /// Several token-id lists (only one is accepted).
    TokenLists(Vec<Vec<i64>>),
}

/// One chat message.
#[derive(Debug, Deserialize)]
pub struct WireMessage {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    /// Text, or a list of content parts; absent or null only with tool calls.
    #[serde(default)]
    pub content: Option<MessageContent>,
    /// Tool calls (refused: this server has no tool support).
    #[serde(default)]
    pub tool_calls: Option<Value>,
}

/// A message's content: a string or OpenAI's array of content parts.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts; only `{"type": "text", "text": ...}` is supported.
    Parts(Vec<ContentPart>),
}

/// One part of an array-form content.
#[derive(Debug, Deserialize, PartialEq)]
pub struct ContentPart {
    /// `text` (others, such as `image_url`, are refused).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default)]
    pub text: Option<String>,
}

/// Generation parameters common to completions and chat.
#[derive(Debug, Default, Deserialize)]
pub struct GenerationFields {
    /// Most tokens to generate.
    #[serde(default)]
    pub max_tokens: Option<i64>,
    /// Sampling temperature; 0 is greedy.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass; 1 is off.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Extension: keep the k most likely tokens; 0 or -1 is off.
    #[serde(default)]
    pub top_k: Option<i64>,
    /// Extension: Hugging Face repetition penalty; 1 is off.
    #[serde(default)]
    pub repetition_penalty: Option<f32>,
    /// Seed of the sampler: any 64-bit integer, negative ones included (OpenAI's
    /// and vLLM's range).
    #[serde(default)]
    pub seed: Option<i64>,
    /// Stop sequences.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Choices to generate (only 1).
    #[serde(default)]
    pub n: Option<i64>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// OpenAI's additive penalties: only 0 is accepted (use `repetition_penalty`).
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    /// See `frequency_penalty`.
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    /// Refused when set.
    #[serde(default)]
    pub logit_bias: Option<Value>,
}

/// `stop`: one string or a list.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Stop {
    /// One stop sequence.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct StreamOptions {
    /// Send a last chunk with the usage and no choices.
    #[serde(default)]
    pub include_usage: bool,
}

/// Completion fields that this server does not implement.
#[derive(Debug, Default, Deserialize)]
pub struct CompletionUnsupported {
    /// Token log probabilities (an integer for completions).
    #[serde(default)]
    pub logprobs: Option<Value>,
    /// Echo the prompt.
    #[serde(default)]
    pub echo: Option<bool>,
    /// Server-side best-of.
    #[serde(default)]
    pub best_of: Option<i64>,
    /// Insertion suffix.
    #[serde(default)]
    pub suffix: Option<String>,
}

/// Chat fields that this server does not implement.
#[derive(Debug, Default, Deserialize)]
pub struct ChatUnsupported {
    /// Token log probabilities (a boolean for chat).
    #[serde(default)]
    pub logprobs: Option<Value>,
    /// Alternatives per token.
    #[serde(default)]
    pub top_logprobs: Option<Value>,
    /// Tool definitions.
    #[serde(default)]
    pub tools: Option<Value>,
    /// Tool selection.
    #[serde(default)]
    pub tool_choice: Option<Value>,
    /// Legacy function definitions.
    #[serde(default)]
    pub functions: Option<Value>,
    /// Structured output (`{"type": "text"}` is accepted).
    #[serde(default)]
    pub response_format: Option<Value>,
}

/// `POST /v1/embeddings`.
#[derive(Debug, Deserialize)]
pub struct EmbeddingRequest {
    /// `name` or `name:version`.
    pub model: String,
    /// One text or a list of texts.
    pub input: EmbeddingInput,
    /// `float` (default) or `base64`.
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Must equal the model's embedding size when set.
    #[serde(default)]
    pub dimensions: Option<i64>,
}

/// Embedding input in any of OpenAI's forms.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One text.
    Text(String),
    /// Several texts, embedded as one batch.
    Texts(Vec<String>),
    /// Token ids (refused: send text).
    Tokens(Vec<i64>),
    /// Several token-id lists (refused: send text).
    TokenLists(Vec<Vec<i64>>),
}

/// Parses a JSON body; a body that does not fit the request type is a 400 that says why.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, super::ApiError> {
    serde_json::from_slice(body)
        .map_err(|err| super::ApiError::bad_request(format!("malformed request body: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_parse_in_every_openai_form() {
        let parse_prompt = |json: &str| -> Prompt {
            let body = format!(r#"{{"model": "m", "prompt": {json}}}"#);
            parse::<CompletionRequest>(body.as_bytes())
                .expect("parses")
                .prompt
        };
        assert_eq!(parse_prompt(r#""hi""#), Prompt::Text("hi".into()));
        assert_eq!(parse_prompt(r#"["hi"]"#), Prompt::Texts(vec!["hi".into()]));
        assert_eq!(parse_prompt("[1, 2]"), Prompt::Tokens(vec![1, 2]));
        assert_eq!(
            parse_prompt("[[1, 2]]"),
            Prompt::TokenLists(vec![vec![1, 2]])
        );
    }

    #[test]
    fn chat_content_is_a_string_or_text_parts() {
        let body = r#"{"model": "m", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]}
        ], "max_completion_tokens": 5, "top_k": -1, "stop": "x"}"#;
        let request: ChatRequest = parse(body.as_bytes()).expect("parses");
        assert_eq!(
            request.messages[0].content,
            Some(MessageContent::Text("be brief".into()))
        );
        let Some(MessageContent::Parts(parts)) = &request.messages[1].content else {
            panic!("array content must parse as parts");
        };
        assert_eq!(parts[0].text.as_deref(), Some("hi"));
        assert_eq!(request.max_completion_tokens, Some(5));
        assert_eq!(request.params.top_k, Some(-1));
        assert_eq!(request.params.stop, Some(Stop::One("x".into())));
    }

    #[test]
    fn malformed_bodies_are_400_with_the_reason() {
        let err = parse::<ChatRequest>(br#"{"model": "m", "messages": [{"content": "hi"}]}"#)
            .expect_err("a message without a role is malformed");
        assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(err.message.contains("role"), "{}", err.message);
        assert!(parse::<ChatRequest>(b"{not json").is_err());
    }

    #[test]
    fn unsupported_fields_are_kept_for_validation() {
        let body = br#"{"model": "m", "prompt": "x", "logprobs": 3, "echo": true}"#;
        let request: CompletionRequest = parse(body).expect("parses");
        assert_eq!(request.unsupported.logprobs, Some(Value::from(3)));
        assert_eq!(request.unsupported.echo, Some(true));
    }

    #[test]
    fn embedding_input_is_one_text_or_many() {
        let request: EmbeddingRequest =
            parse(br#"{"model": "m", "input": ["a", "b"], "encoding_format": "base64"}"#)
                .expect("parses");
        assert_eq!(
            request.input,
            EmbeddingInput::Texts(vec!["a".into(), "b".into()])
        );
        assert_eq!(request.encoding_format.as_deref(), Some("base64"));
    }
}
