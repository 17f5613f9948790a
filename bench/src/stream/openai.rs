//! OpenAI-compatible streaming: `POST /v1/completions` or
//! `/v1/chat/completions` with `stream: true` and
//! `stream_options.include_usage`, read as Server-Sent Events up to
//! `data: [DONE]`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::sse;
use crate::stream::prompts::Prompts;
use crate::stream::trace::{Piece, Trace, Usage};
use crate::stream::{Generation, StreamSample};

/// Which OpenAI endpoint a run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/completions`: the prompt as text, pieces in `choices[0].text`.
    Completions,
    /// `/v1/chat/completions`: the prompt as one user message, pieces in
    /// `choices[0].delta.content`.
    Chat,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Completions => "/v1/completions",
            Endpoint::Chat => "/v1/chat/completions",
        }
    }
}

/// The JSON body of one streaming request.
pub fn request_body(
    endpoint: Endpoint,
    model: &str,
    prompt: &str,
    generation: &Generation,
) -> Value {
    let mut body = json!({
        "model": model,
        "max_tokens": generation.max_tokens,
        "temperature": generation.temperature,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    match endpoint {
        Endpoint::Completions => body["prompt"] = json!(prompt),
        Endpoint::Chat => body["messages"] = json!([{"role": "user", "content": prompt}]),
    }
    body
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    text: Option<String>,
    delta: Option<Delta>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
}

/// What one SSE `data:` payload says: a piece, the end, or an in-stream error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Piece(Piece),
    Done,
    Error(String),
}

/// Interprets one event's data; text of every choice is concatenated (a
/// benchmark request asks for one).
pub fn parse_data(endpoint: Endpoint, data: &str) -> Result<Message, String> {
    if data.trim() == "[DONE]" {
        return Ok(Message::Done);
    }
    let chunk: Chunk = serde_json::from_str(data).map_err(|e| format!("bad chunk: {e}"))?;
    if let Some(error) = chunk.error {
        return Ok(Message::Error(error.to_string()));
    }
    let text = chunk
        .choices
        .into_iter()
        .filter_map(|c| match endpoint {
            Endpoint::Completions => c.text,
            Endpoint::Chat => c.delta.and_then(|d| d.content),
        })
        .collect();
    Ok(Message::Piece(Piece {
        text,
        usage: chunk.usage.map(|u| Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }),
        last: false,
    }))
}

/// Sends streaming requests to one endpoint; each send takes the next body.
#[derive(Debug, Clone)]
pub struct OpenAiProbe {
    http: reqwest::Client,
    url: String,
    endpoint: Endpoint,
    /// One encoded body per prompt.
    bodies: Arc<[Bytes]>,
    prompts: Prompts,
    timeout: Duration,
}

impl OpenAiProbe {
    /// Encodes one body per prompt of `generation`.
    pub fn new(
        base_url: &str,
        endpoint: Endpoint,
        model: &str,
        generation: &Generation,
        timeout: Duration,
        max_connections: usize,
        api_key: Option<&str>,
    ) -> Result<Self, crate::Error> {
        let bodies = generation
            .prompts
            .all()
            .iter()
            .map(|p| Bytes::from(request_body(endpoint, model, p, generation).to_string()))
            .collect();
        let http = crate::client::http_client(max_connections, api_key)?;
        Ok(Self {
            http,
            url: format!("{}{}", base_url.trim_end_matches('/'), endpoint.path()),
            endpoint,
            bodies,
            prompts: generation.prompts.clone(),
            timeout,
        })
    }

    /// One request, from send to `[DONE]`; a failure is labelled like the OIP
    /// client's (`"503"`, `"timeout"`, `"transport"`) or as `"stream-error"`,
    /// `"truncated"` (no `[DONE]`), `"bad-stream"`.
    pub async fn send(&self, issued: Instant) -> StreamSample {
        let body = self.bodies[self.prompts.take()].clone();
        let request = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(ACCEPT, HeaderValue::from_static("text/event-stream"))
            .body(body);
        match tokio::time::timeout(self.timeout, self.exchange(request, issued)).await {
            Ok(sample) => sample,
            Err(_) => Err("timeout".into()),
        }
    }

    async fn exchange(&self, request: reqwest::RequestBuilder, issued: Instant) -> StreamSample {
        let mut response = request.send().await.map_err(|_| "transport".to_owned())?;
        let status = response.status();
        if !status.is_success() {
            return Err(status.as_u16().to_string());
        }
        let mut trace = Trace::new(issued.into_std());
        let mut parser = sse::Parser::new();
        while let Some(bytes) = response.chunk().await.map_err(|_| "transport".to_owned())? {
            let at = std::time::Instant::now();
            let events = parser.push(&bytes).map_err(|_| "bad-stream".to_owned())?;
            for event in events {
                match parse_data(self.endpoint, &event.data).map_err(|_| "bad-stream")? {
                    Message::Piece(piece) => trace.piece(&piece, at),
                    Message::Done => return Ok(trace.finish(std::time::Instant::now())),
                    Message::Error(_) => return Err("stream-error".into()),
                }
            }
        }
        Err("truncated".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generation() -> Generation {
        Generation {
            prompts: Prompts::builtin(),
            max_tokens: 32,
            temperature: 0.0,
        }
    }

    #[test]
    fn bodies_ask_for_a_stream_with_usage() {
        let chat = request_body(Endpoint::Chat, "smollm2", "Hi", &generation());
        assert_eq!(chat["messages"], json!([{"role": "user", "content": "Hi"}]));
        assert_eq!(chat["stream"], true);
        assert_eq!(chat["stream_options"]["include_usage"], true);
        assert_eq!(chat["max_tokens"], 32);
        assert!(chat.get("prompt").is_none());
        let completion = request_body(Endpoint::Completions, "m", "Hi", &generation());
        assert_eq!(completion["prompt"], "Hi");
        assert_eq!(completion["temperature"], 0.0);
    }

    #[test]
    fn completion_text_and_chat_deltas_become_pieces() {
        let c = parse_data(
            Endpoint::Completions,
            r#"{"choices":[{"index":0,"text":"Par"}]}"#,
        );
        let d = parse_data(
            Endpoint::Chat,
            r#"{"choices":[{"index":0,"delta":{"content":"is"},"finish_reason":null}]}"#,
        );
        let text = |m: Message| match m {
            Message::Piece(p) => p.text,
            other => panic!("{other:?}"),
        };
        assert_eq!(text(c.unwrap()), "Par");
        assert_eq!(text(d.unwrap()), "is");
    }

    #[test]
    fn a_role_only_delta_is_a_piece_without_text() {
        let m = parse_data(
            Endpoint::Chat,
            r#"{"choices":[{"delta":{"role":"assistant"}}]}"#,
        );
        assert_eq!(m, Ok(Message::Piece(Piece::default())));
    }

    #[test]
    fn the_usage_chunk_carries_the_token_counts() {
        let m = parse_data(
            Endpoint::Chat,
            r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}"#,
        )
        .unwrap();
        let Message::Piece(piece) = m else {
            panic!("{m:?}")
        };
        assert_eq!(
            piece.usage,
            Some(Usage {
                prompt_tokens: 9,
                completion_tokens: 4
            })
        );
        assert!(piece.text.is_empty());
    }

    #[test]
    fn done_errors_and_garbage_are_told_apart() {
        assert_eq!(parse_data(Endpoint::Chat, "[DONE]"), Ok(Message::Done));
        let error = parse_data(Endpoint::Chat, r#"{"error":{"message":"boom"}}"#).unwrap();
        assert!(matches!(error, Message::Error(m) if m.contains("boom")));
        assert!(parse_data(Endpoint::Chat, "{not json").is_err());
    }
}
