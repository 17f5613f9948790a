//! What every protocol shares about a request's limits: the generation defaults (OIP
//! gRPC and the OpenAI API alike, documented once in docs/runtime.md, "Generation
//! defaults") and the deadline of any request.

use std::time::{Duration, Instant};

use modelplane_config::Limits;
use thiserror::Error;

/// Tokens generated when a request names no maximum, on every protocol; capped at what
/// the context leaves after the prompt.
pub const DEFAULT_MAX_TOKENS: u32 = 256;

/// A prompt that fills the model's context leaves nothing to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error(
    "the prompt has {prompt_len} tokens; the model's context is {context} tokens, \
     which leaves no room to generate"
)]
pub struct NoRoom {
    /// Tokens in the prompt.
    pub prompt_len: usize,
    /// The model's context, in tokens.
    pub context: u32,
}

/// The number of tokens to generate: the request's own maximum, else
/// [`DEFAULT_MAX_TOKENS`] clamped to what the context leaves. A requested maximum is
/// kept as asked: if the prompt plus it exceed the context the engine refuses it at
/// admission, naming both.
pub fn max_tokens(requested: Option<u32>, prompt_len: usize, context: u32) -> Result<u32, NoRoom> {
    let prompt = u32::try_from(prompt_len).unwrap_or(u32::MAX);
    let left = context.saturating_sub(prompt);
    if left == 0 {
        return Err(NoRoom {
            prompt_len,
            context,
        });
    }
    Ok(requested.unwrap_or(DEFAULT_MAX_TOKENS.min(left)))
}

/// The deadline of a request that arrived at `started`: the model's
/// `limits.requestTimeout`, or the client's own timeout (`grpc-timeout`) when shorter.
pub fn deadline(started: Instant, client_timeout: Option<Duration>, limits: &Limits) -> Instant {
    let limit = limits.request_timeout.get();
    started + client_timeout.map_or(limit, |t| t.min(limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_timeout_only_shortens_the_deadline() {
        let limits = Limits::default();
        let limit = limits.request_timeout.get();
        let now = Instant::now();
        assert_eq!(deadline(now, None, &limits), now + limit);
        let short = Duration::from_millis(5);
        assert_eq!(deadline(now, Some(short), &limits), now + short);
        assert_eq!(deadline(now, Some(limit * 2), &limits), now + limit);
    }

    #[test]
    fn the_default_is_capped_by_the_context_and_a_request_is_kept() {
        assert_eq!(max_tokens(None, 10, 2048), Ok(DEFAULT_MAX_TOKENS));
        assert_eq!(max_tokens(None, 2000, 2048), Ok(48));
        assert_eq!(max_tokens(Some(5), 2000, 2048), Ok(5));
        assert_eq!(max_tokens(Some(500), 2000, 2048), Ok(500));
    }

    #[test]
    fn a_prompt_that_fills_the_context_leaves_no_room() {
        let err = max_tokens(None, 2048, 2048).expect_err("no room");
        assert_eq!(
            err.to_string(),
            "the prompt has 2048 tokens; the model's context is 2048 tokens, which leaves no room to generate"
        );
        assert!(max_tokens(Some(1), usize::MAX, 2048).is_err());
    }
}
