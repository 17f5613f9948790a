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
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use modelplane_config::Task;

use super::params::{self, Generation as Plan, PromptInput};
use super::response::{Chunks, Endpoint, ResponseMeta, Usage, full_response};
use super::wire::{self, ChatRequest, CompletionRequest};
use super::{ApiError, off_runtime, require, served_id};
use crate::error::InferError;
use crate::serve::{Event, Generation};
use crate::server::AppState;

/// The SSE data that ends every stream.
const DONE: &str = "[DONE]";

/// Idle time after which a stream sends a keep-alive comment (TGI's interval).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let request: CompletionRequest = wire::parse(&body?)?;
    params::completion_supported(&request.unsupported)?;
    let plan = params::generation(&request.params, request.max_tokens())?;
    let call = super::start(&state, &request.model, headers, started)?
        .check(|target| require(target, Task::Generate, &request.model, "/v1/completions"))?;
    let generation = call
        .generate(async |target| {
            let engine = target.version.engine()?;
            let ids = match params::completion_prompt(request.prompt, engine.shape().vocab_size)? {
                PromptInput::Text(text) => {
                    let codec = Arc::clone(engine.codec());
                    off_runtime(move || codec.encode(&text, true).map_err(text_error)).await?
                }
                PromptInput::Tokens(ids) => ids,
            };
            Ok(plan.input(ids, "prompt"))
        })
        .await?;
    Ok(respond(generation, Endpoint::Completion, &plan).await?)
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let request: ChatRequest = wire::parse(&body?)?;
    params::chat_supported(&request.unsupported)?;
    let plan = params::generation(&request.params, request.max_tokens())?;
    let messages = params::chat_messages(request.messages)?;
    let call = super::start(&state, &request.model, headers, started)?.check(|target| {
        require(
            target,
            Task::Generate,
            &request.model,
            "/v1/chat/completions",
        )
    })?;
    let model = request.model;
    let generation = call
        .generate(async |target| {
            let engine = target.version.engine()?;
            let codec = Arc::clone(engine.codec());
            if !codec.has_chat_template() {
                return Err(InferError::BadField {
                    param: "model",
                    message: format!("model {model:?} has no chat template; use /v1/completions"),
                });
            }
            let ids = off_runtime(move || {
                let text = codec.apply_chat_template(&messages, true).map_err(|err| {
                    InferError::BadField {
                        param: "messages",
                        message: err.to_string(),
                    }
                })?;
                codec.encode(&text, false).map_err(text_error)
            })
            .await?;
            Ok(plan.input(ids, "messages"))
        })
        .await?;
    Ok(respond(generation, Endpoint::Chat, &plan).await?)
}

fn text_error(err: modelplane_generate::text::TextError) -> InferError {
    InferError::BadField {
        param: "prompt",
        message: err.to_string(),
    }
}

/// Answers an admitted generation in the requested form: one JSON body, or
/// server-sent events.
async fn respond(
    generation: Generation,
    endpoint: Endpoint,
    plan: &Plan,
) -> Result<Response, InferError> {
    let meta = ResponseMeta::new(endpoint, served_id(generation.target()));
    if plan.stream {
        let chunks = Chunks::new(meta, plan.include_usage);
        return Ok(sse(generation, chunks));
    }
    let done = generation.collect().await?;
    let usage = Usage::new(done.usage.prompt_tokens, done.usage.completion_tokens);
    let body = full_response(&meta, &done.text, done.reason.as_str(), usage);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// What one generation event becomes on the wire: SSE data payloads, in order, and
/// whether the stream is over.
fn frames(chunks: &Chunks, event: Event) -> (Vec<String>, bool) {
    match event {
        Event::Text(text) => (vec![chunks.text(&text)], false),
        Event::Finished { reason, usage } => {
            let usage = Usage::new(usage.prompt_tokens, usage.completion_tokens);
            let mut data = vec![chunks.finish(reason.as_str())];
            data.extend(chunks.usage(usage));
            data.push(DONE.to_owned());
            (data, true)
        }
        // A failure after the stream started: an error object as data, then `[DONE]`.
        Event::Failed(err) => (vec![ApiError::from(err).body(), DONE.to_owned()], true),
    }
}

/// The streaming response: the opening chunk, one chunk per text delta, the finish
/// (and usage) chunks, `[DONE]`. Dropping the body (the client left) cancels the
/// generation.
fn sse(generation: Generation, chunks: Chunks) -> Response {
    let opening = futures::stream::iter(chunks.opening());
    let body = futures::stream::unfold(Some((generation, chunks)), |state| async move {
        let (mut generation, chunks) = state?;
        let event = generation.next().await?;
        let (frames, done) = frames(&chunks, event);
        Some((frames, (!done).then_some((generation, chunks))))
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
    let events = data.map(|data| Ok::<_, Infallible>(SseEvent::default().data(data)));
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(keep_alive))
        .into_response()
}

#[cfg(test)]
mod tests {
    use modelplane_generate::engine::{FinishReason, Usage as EngineUsage};
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
    fn a_text_event_is_one_chunk() {
        let (data, done) = frames(&chunks(false), Event::Text("Paris".into()));
        assert!(!done);
        assert_eq!(json(&data[0])["choices"][0]["delta"]["content"], "Paris");
    }

    #[test]
    fn a_finished_stream_sends_finish_then_usage_then_done() {
        let finished = Event::Finished {
            reason: FinishReason::Length,
            usage: EngineUsage {
                prompt_tokens: 4,
                completion_tokens: 3,
            },
        };
        let (data, done) = frames(&chunks(true), finished);
        assert!(done);
        assert_eq!(data.len(), 3);
        assert_eq!(json(&data[0])["choices"][0]["finish_reason"], "length");
        assert_eq!(json(&data[1])["usage"]["total_tokens"], 7);
        assert_eq!(data[2], DONE);
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
    fn a_failure_mid_stream_is_an_error_object_then_done() {
        let late = Event::Failed(InferError::DeadlineExceeded("late".into()));
        let (data, done) = frames(&chunks(false), late);
        assert!(done);
        assert_eq!(json(&data[0])["error"]["code"], "timeout");
        assert_eq!(data[1], DONE);
        let broken = Event::Failed(InferError::Internal("boom".into()));
        let (data, _) = frames(&chunks(false), broken);
        assert_eq!(json(&data[0])["error"]["type"], "server_error");
    }
}
