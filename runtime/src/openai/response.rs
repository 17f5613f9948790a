//! Response bodies and stream chunks of completions and chat, as OpenAI writes them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

/// Which endpoint a response belongs to: it decides object names and choice shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/completions`: `text_completion`, choices carry `text`.
    Completion,
    /// `/v1/chat/completions`: `chat.completion[.chunk]`, choices carry a message or delta.
    Chat,
}

/// Token counts of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Tokens in the prompt (after the chat template).
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Their sum.
    pub total_tokens: u32,
}

impl Usage {
    /// Counts with their total.
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        }
    }
}

/// What every body of one request repeats: id, creation time, model.
#[derive(Clone, Debug)]
pub struct ResponseMeta {
    /// `cmpl-…` or `chatcmpl-…`, unique within the process.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The served model, `name:version`.
    pub model: String,
    /// The endpoint.
    pub endpoint: Endpoint,
}

impl ResponseMeta {
    /// A fresh id and timestamp for a request to `endpoint` served by `model`.
    pub fn new(endpoint: Endpoint, model: String) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let prefix = match endpoint {
            Endpoint::Completion => "cmpl",
            Endpoint::Chat => "chatcmpl",
        };
        let sequence = NEXT.fetch_add(1, Ordering::Relaxed);
        Self {
            id: format!("{prefix}-{:x}{sequence:06x}", now.as_micros()),
            created: now.as_secs(),
            model,
            endpoint,
        }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Completion, _) => "text_completion",
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
        }
    }
}

#[derive(Serialize)]
struct Body<'a, C> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<C>,
    #[serde(skip_serializing_if = "UsageField::is_absent")]
    usage: UsageField,
}

/// `usage`: left out, `null` (stream chunks with `include_usage`), or the counts.
enum UsageField {
    Absent,
    Null,
    Counts(Usage),
}

impl UsageField {
    fn is_absent(&self) -> bool {
        matches!(self, Self::Absent)
    }
}

impl Serialize for UsageField {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Counts(usage) => usage.serialize(serializer),
            Self::Absent | Self::Null => serializer.serialize_none(),
        }
    }
}

#[derive(Serialize)]
struct TextChoice<'a> {
    index: u32,
    text: &'a str,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct MessageChoice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct DeltaChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Plain structs of strings and integers always serialize.
    serde_json::to_string(value).unwrap_or_default()
}

/// The whole non-streamed answer.
pub fn full_response(meta: &ResponseMeta, text: &str, finish_reason: &str, usage: Usage) -> String {
    let usage = UsageField::Counts(usage);
    match meta.endpoint {
        Endpoint::Completion => to_json(&body(
            meta,
            false,
            vec![TextChoice {
                index: 0,
                text,
                logprobs: None,
                finish_reason: Some(finish_reason),
            }],
            usage,
        )),
        Endpoint::Chat => to_json(&body(
            meta,
            false,
            vec![MessageChoice {
                index: 0,
                message: Message {
                    role: "assistant",
                    content: text,
                },
                logprobs: None,
                finish_reason,
            }],
            usage,
        )),
    }
}

fn body<'a, C>(
    meta: &'a ResponseMeta,
    chunk: bool,
    choices: Vec<C>,
    usage: UsageField,
) -> Body<'a, C> {
    Body {
        id: &meta.id,
        object: meta.object(chunk),
        created: meta.created,
        model: &meta.model,
        choices,
        usage,
    }
}

/// Builds the chunks of one streamed answer, in order.
#[derive(Clone, Debug)]
pub struct Chunks {
    meta: ResponseMeta,
    include_usage: bool,
}

impl Chunks {
    /// Chunks for `meta`'s request; `include_usage` adds `usage: null` to each and a
    /// final usage chunk.
    pub fn new(meta: ResponseMeta, include_usage: bool) -> Self {
        Self {
            meta,
            include_usage,
        }
    }

    /// The chunk sent before any token: chat announces the assistant role.
    pub fn opening(&self) -> Option<String> {
        (self.meta.endpoint == Endpoint::Chat).then(|| {
            self.delta_chunk(
                Delta {
                    role: Some("assistant"),
                    content: Some(""),
                },
                None,
            )
        })
    }

    /// A chunk carrying generated text.
    pub fn text(&self, text: &str) -> String {
        self.choice_chunk(text, None)
    }

    /// The last choice chunk: no text, the finish reason.
    pub fn finish(&self, finish_reason: &str) -> String {
        self.choice_chunk("", Some(finish_reason))
    }

    /// With `include_usage`, the usage chunk that follows the finish chunk (no choices).
    pub fn usage(&self, usage: Usage) -> Option<String> {
        self.include_usage.then(|| {
            to_json(&body::<TextChoice<'_>>(
                &self.meta,
                true,
                Vec::new(),
                UsageField::Counts(usage),
            ))
        })
    }

    fn choice_chunk(&self, text: &str, finish_reason: Option<&str>) -> String {
        match self.meta.endpoint {
            Endpoint::Completion => to_json(&body(
                &self.meta,
                true,
                vec![TextChoice {
                    index: 0,
                    text,
                    logprobs: None,
                    finish_reason,
                }],
                self.null_usage(),
            )),
            Endpoint::Chat => {
                let content = (!text.is_empty()).then_some(text);
                self.delta_chunk(
                    Delta {
                        role: None,
                        content,
                    },
                    finish_reason,
                )
            }
        }
    }

    fn delta_chunk(&self, delta: Delta<'_>, finish_reason: Option<&str>) -> String {
        to_json(&body(
            &self.meta,
            true,
            vec![DeltaChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
            }],
            self.null_usage(),
        ))
    }

    fn null_usage(&self) -> UsageField {
        if self.include_usage {
            UsageField::Null
        } else {
            UsageField::Absent
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn meta(endpoint: Endpoint) -> ResponseMeta {
        ResponseMeta {
            id: "id-1".into(),
            created: 42,
            model: "m:1".into(),
            endpoint,
        }
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).expect("json")
    }

    #[test]
    fn ids_are_unique_and_prefixed_by_endpoint() {
        let a = ResponseMeta::new(Endpoint::Chat, "m".into());
        let b = ResponseMeta::new(Endpoint::Chat, "m".into());
        assert_ne!(a.id, b.id);
        assert!(a.id.starts_with("chatcmpl-"), "{}", a.id);
        assert!(
            ResponseMeta::new(Endpoint::Completion, "m".into())
                .id
                .starts_with("cmpl-")
        );
    }

    #[test]
    fn a_completion_has_text_finish_reason_and_usage() {
        let body = parse(&full_response(
            &meta(Endpoint::Completion),
            "Paris",
            "stop",
            Usage::new(5, 2),
        ));
        assert_eq!(
            body,
            json!({"id": "id-1", "object": "text_completion", "created": 42, "model": "m:1",
                   "choices": [{"index": 0, "text": "Paris", "logprobs": null, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})
        );
    }

    #[test]
    fn a_chat_completion_has_an_assistant_message() {
        let body = parse(&full_response(
            &meta(Endpoint::Chat),
            "Hi",
            "length",
            Usage::new(1, 1),
        ));
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(
            body["choices"][0]["message"],
            json!({"role": "assistant", "content": "Hi"})
        );
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        assert_eq!(body["usage"]["total_tokens"], 2);
    }

    #[test]
    fn a_chat_stream_opens_with_the_role_and_ends_with_the_finish_reason() {
        let chunks = Chunks::new(meta(Endpoint::Chat), false);
        let opening = parse(&chunks.opening().expect("chat opens"));
        assert_eq!(opening["object"], "chat.completion.chunk");
        assert_eq!(
            opening["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(opening["choices"][0]["finish_reason"], Value::Null);
        assert!(opening.get("usage").is_none());
        let text = parse(&chunks.text("Par"));
        assert_eq!(text["choices"][0]["delta"], json!({"content": "Par"}));
        let last = parse(&chunks.finish("stop"));
        assert_eq!(last["choices"][0]["delta"], json!({}));
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks.usage(Usage::new(1, 1)), None);
    }

    #[test]
    fn include_usage_nulls_usage_on_chunks_and_adds_a_usage_chunk_without_choices() {
        let chunks = Chunks::new(meta(Endpoint::Completion), true);
        assert_eq!(chunks.opening(), None);
        let text = parse(&chunks.text("a"));
        assert_eq!(text["choices"][0]["text"], "a");
        assert_eq!(text["usage"], Value::Null);
        assert!(text.as_object().expect("object").contains_key("usage"));
        let usage = parse(&chunks.usage(Usage::new(3, 4)).expect("requested"));
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(
            usage["usage"],
            json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7})
        );
        assert_eq!(usage["object"], "text_completion");
    }
}
