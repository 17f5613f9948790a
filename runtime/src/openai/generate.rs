//! `/v1/completions` and `/v1/chat/completions`: prompt to token ids, submit to the
//! version's engine, answer as one JSON body or as server-sent events.
//!
//! Cancellation is the engine's: the [`GenerationStream`] lives inside the handler's
//! future (non-streaming) or the response body's stream (streaming), so a client that
//! goes away drops it and the request leaves the batch.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use modelplane_config::Task;
use modelplane_generate::engine::{
    AdmissionError, EngineError, GenerateRequest, GenerationStream, StreamEvent,
};

use super::params::{self, Generation, PromptInput};
use super::response::{Chunks, Endpoint, ResponseMeta, Usage, full_response};
use super::wire::{self, ChatRequest, CompletionRequest};
use super::{ApiError, Target, off_runtime};
use crate::catalog::Version;
use crate::error::InferError;
use crate::server::AppState;

/// The SSE data that ends every stream.
const DONE: &str = "[DONE]";

/// Idle time after which a stream sends a keep-alive comment (TGI's interval).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let request: CompletionRequest = wire::parse(&body?)?;
    params::completion_supported(&request.unsupported)?;
    let plan = params::generation(&request.params, request.max_tokens())?;
    let target = Target::resolve(&state, &request.model)?;
    target.require(Task::Generate, &request.model, "/v1/completions")?;
    let engine = target.version.engine()?;
    let vocab_size = engine.shape().vocab_size;
    let prompt = match params::completion_prompt(request.prompt, vocab_size)? {
        PromptInput::Text(text) => {
            let codec = Arc::clone(engine.codec());
            off_runtime(move || codec.encode(&text, true).map_err(text_error)).await?
        }
        PromptInput::Tokens(ids) => ids,
    };
    run(&target, started, Endpoint::Completion, prompt, plan).await
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let request: ChatRequest = wire::parse(&body?)?;
    params::chat_supported(&request.unsupported)?;
    let plan = params::generation(&request.params, request.max_tokens())?;
    let messages = params::chat_messages(request.messages)?;
    let target = Target::resolve(&state, &request.model)?;
    target.require(Task::Generate, &request.model, "/v1/chat/completions")?;
    let codec = Arc::clone(target.version.engine()?.codec());
    if !codec.has_chat_template() {
        return Err(ApiError::bad_field(
            "model",
            format!(
                "model {:?} has no chat template; use /v1/completions",
                request.model
            ),
        ));
    }
    let prompt = off_runtime(move || {
        let text = codec
            .apply_chat_template(&messages, true)
            .map_err(|err| ApiError::bad_field("messages", err.to_string()))?;
        codec.encode(&text, false).map_err(text_error)
    })
    .await?;
    run(&target, started, Endpoint::Chat, prompt, plan).await
}

fn text_error(err: modelplane_generate::text::TextError) -> ApiError {
    ApiError::bad_field("prompt", err.to_string())
}

/// Submits the prompt and answers in the requested form; the request timeout counts
/// from `started`, when the request arrived.
async fn run(
    target: &Target,
    started: Instant,
    endpoint: Endpoint,
    prompt: Vec<u32>,
    plan: Generation,
) -> Result<Response, ApiError> {
    let engine = target.version.engine()?;
    let context = engine.shape().context;
    let prompt_field = match endpoint {
        Endpoint::Completion => "prompt",
        Endpoint::Chat => "messages",
    };
    let max_tokens = params::max_tokens(plan.max_tokens, prompt.len(), context, prompt_field)?;
    let request = GenerateRequest {
        prompt,
        max_tokens,
        sampling: plan.sampling,
        stop: plan.stop,
        deadline: Some(crate::limits::deadline(
            started,
            None,
            &target.config.limits,
        )),
    };
    let stream = match engine.submit(request) {
        Ok(stream) => stream,
        Err(err) => {
            let answer = refusal(&err);
            target
                .version
                .record(started, &Err::<(), _>(InferError::from(err)));
            return Err(answer);
        }
    };
    let meta = ResponseMeta::new(endpoint, target.served_id());
    let version = Arc::clone(&target.version);
    if plan.stream {
        let chunks = Chunks::new(meta, plan.include_usage);
        return Ok(sse(stream, chunks, version, started));
    }
    let result = collect(stream).await;
    version.record(started, &result);
    let (text, reason, usage) = result?;
    let body = full_response(&meta, &text, reason, usage);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The answer to a submission the engine refused; a prompt plus `max_tokens` beyond
/// the context is OpenAI's `context_length_exceeded`.
fn refusal(err: &AdmissionError) -> ApiError {
    match err {
        AdmissionError::TooLong { .. } => ApiError::context_length("max_tokens", err.to_string()),
        _ => InferError::from(err.clone()).into(),
    }
}

/// Reads a request's events to the end: its text, finish reason and usage.
async fn collect(
    mut stream: GenerationStream,
) -> Result<(String, &'static str, Usage), InferError> {
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event {
            StreamEvent::Delta { text: delta, .. } => text.push_str(&delta),
            StreamEvent::Finished { reason, usage } => {
                let usage = Usage::new(usage.prompt_tokens, usage.completion_tokens);
                return Ok((text, reason.as_str(), usage));
            }
            StreamEvent::Failed(err) => return Err(engine_error(err)),
        }
    }
    Err(ended_early())
}

fn engine_error(err: EngineError) -> InferError {
    match err {
        EngineError::DeadlineExceeded => InferError::DeadlineExceeded(
            "the request timeout passed before generation finished".into(),
        ),
        EngineError::Step(step) => InferError::Internal(format!("model step failed: {step}")),
    }
}

fn ended_early() -> InferError {
    InferError::Internal("the generation engine ended the request without finishing it".into())
}

/// A stream in flight: the engine's events, the chunk builder, and what to record.
struct Streaming {
    events: GenerationStream,
    chunks: Chunks,
    version: Arc<Version>,
    started: Instant,
}

impl Streaming {
    /// The SSE data of the next engine event(s), and whether the stream is over.
    async fn next_frames(&mut self) -> (Vec<String>, bool) {
        loop {
            let frames = frames(&self.chunks, self.events.next().await);
            if let Some(outcome) = &frames.end {
                self.version.record(self.started, outcome);
            }
            if frames.end.is_some() || !frames.data.is_empty() {
                return (frames.data, frames.end.is_some());
            }
        }
    }
}

/// What one engine event becomes on the wire.
#[derive(Debug, PartialEq)]
struct Frames {
    /// SSE data payloads, in order.
    data: Vec<String>,
    /// Set on the last event: how the request ended.
    end: Option<Result<(), InferError>>,
}

impl Frames {
    fn more(data: Vec<String>) -> Self {
        Self { data, end: None }
    }

    /// A failure after the stream started: an error object as data, then `[DONE]`.
    fn failed(err: InferError) -> Self {
        Self {
            data: vec![ApiError::from(err.clone()).body(), DONE.to_owned()],
            end: Some(Err(err)),
        }
    }
}

/// The frames of one engine event (`None`: the engine dropped the request).
fn frames(chunks: &Chunks, event: Option<StreamEvent>) -> Frames {
    match event {
        Some(StreamEvent::Delta { text, .. }) if text.is_empty() => Frames::more(Vec::new()),
        Some(StreamEvent::Delta { text, .. }) => Frames::more(vec![chunks.text(&text)]),
        Some(StreamEvent::Finished { reason, usage }) => {
            let usage = Usage::new(usage.prompt_tokens, usage.completion_tokens);
            let mut data = vec![chunks.finish(reason.as_str())];
            data.extend(chunks.usage(usage));
            data.push(DONE.to_owned());
            Frames {
                data,
                end: Some(Ok(())),
            }
        }
        Some(StreamEvent::Failed(err)) => Frames::failed(engine_error(err)),
        None => Frames::failed(ended_early()),
    }
}

/// The streaming response: the opening chunk, one chunk per text delta, the finish
/// (and usage) chunks, `[DONE]`.
fn sse(
    events: GenerationStream,
    chunks: Chunks,
    version: Arc<Version>,
    started: Instant,
) -> Response {
    let opening = futures::stream::iter(chunks.opening());
    let state = Streaming {
        events,
        chunks,
        version,
        started,
    };
    let body = futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        let (frames, done) = state.next_frames().await;
        Some((frames, (!done).then_some(state)))
    })
    .flat_map(futures::stream::iter);
    sse_response(opening.chain(body), KEEP_ALIVE)
}

/// `text/event-stream` of `data` frames, with a comment line after every `keep_alive`
/// without an event (a long prefill, a wait for a slot), so that proxies and load
/// balancers do not close an idle-looking stream; clients skip comments.
fn sse_response(
    data: impl futures::Stream<Item = String> + Send + 'static,
    keep_alive: Duration,
) -> Response {
    let events = data.map(|data| Ok::<_, Infallible>(Event::default().data(data)));
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(keep_alive))
        .into_response()
}

#[cfg(test)]
mod tests {
    use modelplane_generate::engine::{FinishReason, StepError, Usage as EngineUsage};
    use serde_json::Value;

    use super::*;

    fn chunks(include_usage: bool) -> Chunks {
        Chunks::new(
            ResponseMeta::new(Endpoint::Chat, "m:1".into()),
            include_usage,
        )
    }

    fn json(frame: &str) -> Value {
        serde_json::from_str(frame).expect("a JSON chunk")
    }

    #[test]
    fn empty_deltas_send_nothing_and_text_deltas_one_chunk() {
        let chunks = chunks(false);
        let empty = StreamEvent::Delta {
            text: String::new(),
            tokens: vec![2],
        };
        assert_eq!(frames(&chunks, Some(empty)), Frames::more(Vec::new()));
        let sent = frames(
            &chunks,
            Some(StreamEvent::Delta {
                text: "Paris".into(),
                tokens: vec![7],
            }),
        );
        assert_eq!(sent.end, None);
        assert_eq!(
            json(&sent.data[0])["choices"][0]["delta"]["content"],
            "Paris"
        );
    }

    #[test]
    fn a_finished_stream_sends_finish_then_usage_then_done() {
        let finished = StreamEvent::Finished {
            reason: FinishReason::Length,
            usage: EngineUsage {
                prompt_tokens: 4,
                completion_tokens: 3,
            },
        };
        let sent = frames(&chunks(true), Some(finished));
        assert_eq!(sent.end, Some(Ok(())));
        assert_eq!(sent.data.len(), 3);
        assert_eq!(json(&sent.data[0])["choices"][0]["finish_reason"], "length");
        assert_eq!(json(&sent.data[1])["usage"]["total_tokens"], 7);
        assert_eq!(sent.data[2], DONE);
    }

    #[tokio::test]
    async fn an_idle_stream_sends_keep_alive_comments_then_its_events() {
        let data = futures::stream::once(async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            "{}".to_owned()
        });
        let response = sse_response(data, Duration::from_millis(20));
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        let mut body = response.into_body().into_data_stream();
        let first = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("a frame before the event")
            .expect("the body goes on")
            .expect("bytes");
        assert!(first.starts_with(b":"), "{first:?}");
        let mut frames = Vec::new();
        while let Some(frame) = body.next().await {
            frames.push(frame.expect("bytes"));
        }
        assert!(
            frames.iter().any(|f| f.as_ref() == b"data: {}\n\n"),
            "{frames:?}"
        );
    }

    #[test]
    fn a_prompt_plus_max_tokens_past_the_context_is_context_length_exceeded() {
        let too_long = AdmissionError::TooLong {
            prompt: 10,
            max_tokens: 20,
            context: 16,
        };
        let err = refusal(&too_long);
        assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(err.code, Some("context_length_exceeded"));
        assert_eq!(err.param.as_deref(), Some("max_tokens"));
        let full = refusal(&AdmissionError::QueueFull("busy".into()));
        assert_eq!(full.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn a_failure_mid_stream_is_an_error_object_then_done() {
        let late = StreamEvent::Failed(EngineError::DeadlineExceeded);
        let sent = frames(&chunks(false), Some(late));
        assert!(matches!(
            sent.end,
            Some(Err(InferError::DeadlineExceeded(_)))
        ));
        assert_eq!(json(&sent.data[0])["error"]["code"], "timeout");
        assert_eq!(sent.data[1], DONE);
        let broken = StreamEvent::Failed(EngineError::Step(StepError("boom".into())));
        let sent = frames(&chunks(false), Some(broken));
        assert_eq!(json(&sent.data[0])["error"]["type"], "server_error");
        let sent = frames(&chunks(false), None);
        assert!(matches!(sent.end, Some(Err(InferError::Internal(_)))));
    }
}
