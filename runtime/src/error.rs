//! The one error type of a request below the edges. Each edge maps it to its own
//! shape: HTTP statuses in `server::status`, gRPC codes in `protocol::grpc::status`,
//! OpenAI error objects in `openai::error`.

use modelplane_generate::engine::AdmissionError;
use modelplane_generate::sampling::InvalidParam;

/// Why an inference or metadata request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InferError {
    /// The request is malformed or does not match the model's signature.
    #[error("{0}")]
    BadRequest(String),
    /// A generation parameter is out of range (`temperature`, `top_p`, `max_tokens`, ...).
    #[error("invalid {param}: {message}")]
    InvalidParameter {
        /// The parameter's wire name.
        param: String,
        /// What is wrong with its value.
        message: String,
    },
    /// A request field (`prompt`, `messages`, `model`, ...) is unusable as sent.
    #[error("{message}")]
    BadField {
        /// The field's wire name.
        param: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The prompt, or the prompt plus `max_tokens`, does not fit the model's context.
    #[error("{message}")]
    ContextLength {
        /// The field at fault (`prompt`, `messages`, `max_tokens`).
        param: &'static str,
        /// The sizes involved.
        message: String,
    },
    /// The model exists but its task does not serve this endpoint.
    #[error("{0}")]
    WrongTask(String),
    /// No such model, or no such version of it.
    #[error("{0}")]
    NotFound(String),
    /// The body or a tensor is larger than the model's limits allow.
    #[error("{0}")]
    TooLarge(String),
    /// The model (version) exists but is not loaded.
    #[error("{0}")]
    NotReady(String),
    /// The model's queue or in-flight limit is reached.
    #[error("{0}")]
    Overloaded(String),
    /// The request's deadline passed before it was answered.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The model failed while running the request.
    #[error("{0}")]
    Internal(String),
    /// The request has no usable credentials (401 with a `WWW-Authenticate` challenge).
    #[error("{message}")]
    Unauthenticated {
        /// Why, without the credential itself.
        message: String,
        /// Whether credentials were presented and refused: the challenge then carries
        /// `error="invalid_token"` (RFC 6750 §3.1); not for missing credentials or an
        /// unsupported scheme.
        invalid_token: bool,
    },
    /// The credentials are valid but grant no usable tenant (403).
    #[error("{0}")]
    Forbidden(String),
    /// The client did not send its request in time (`limits.bodyTimeout`, or the
    /// deadline passed while the body was still arriving): 408.
    #[error("{0}")]
    ClientTimeout(String),
    /// The circuit breaker of the routed version is open and no fallback hop could
    /// stand in (503 with `Retry-After`: when it half-opens).
    #[error("{message}")]
    CircuitOpen {
        /// Which version, why it opened, what was tried instead.
        message: String,
        /// When the breaker lets probes through.
        retry_after: std::time::Duration,
    },
    /// The tenant is over its request budget (429 with `Retry-After`).
    #[error("{message}")]
    RateLimited {
        /// Which budget, and by how much.
        message: String,
        /// When the budget allows the request again.
        retry_after: std::time::Duration,
    },
}

impl InferError {
    /// The `outcome` label of the request counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::BadRequest(_) | Self::BadField { .. } | Self::WrongTask(_) => "bad_request",
            Self::InvalidParameter { .. } => "invalid_parameter",
            Self::NotFound(_) => "not_found",
            Self::TooLarge(_) | Self::ContextLength { .. } => "too_large",
            Self::NotReady(_) => "not_ready",
            Self::Overloaded(_) => "overloaded",
            Self::DeadlineExceeded(_) => "deadline_exceeded",
            Self::Internal(_) => "internal",
            Self::Unauthenticated { .. } => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::RateLimited { .. } => "rate_limited",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::ClientTimeout(_) => "client_timeout",
        }
    }

    /// When a refused client may try again: a rate limit's own time, [`OVERLOAD_RETRY_AFTER`]
    /// for a request shed at a full queue or in-flight limit; nothing for the rest.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            // At least a second: a half-open breaker with its probes taken says zero.
            Self::CircuitOpen { retry_after, .. } => Some((*retry_after).max(OVERLOAD_RETRY_AFTER)),
            Self::Overloaded(_) => Some(OVERLOAD_RETRY_AFTER),
            _ => None,
        }
    }

    /// How the request's end counts for its version's circuit breaker: model
    /// failures and timeouts are failures, everything else (bad input, budgets, load,
    /// an open breaker) neither.
    pub fn breaker_outcome(&self) -> crate::serve::breaker::Outcome {
        match self {
            Self::Internal(_) | Self::DeadlineExceeded(_) => {
                crate::serve::breaker::Outcome::Failure
            }
            _ => crate::serve::breaker::Outcome::Neutral,
        }
    }

    /// [`Self::retry_after`] in whole seconds ([`retry_after_secs`]): the `Retry-After`
    /// header of every protocol.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after().map(retry_after_secs)
    }
}

/// `Retry-After` of a request shed for load (503): the smallest whole-second value. A
/// full queue drains in the time of a few batches, and a client that waits longer than
/// it must only leaves capacity unused.
pub const OVERLOAD_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The challenge of every 401: `Bearer realm="modelplane"`.
pub const BEARER_CHALLENGE: &str = "Bearer realm=\"modelplane\"";

/// The challenge of a 401 whose credentials were refused.
pub const INVALID_TOKEN_CHALLENGE: &str = "Bearer realm=\"modelplane\", error=\"invalid_token\"";

impl InferError {
    /// The `WWW-Authenticate` value of a 401.
    pub fn challenge(&self) -> Option<&'static str> {
        match self {
            Self::Unauthenticated { invalid_token, .. } => Some(if *invalid_token {
                INVALID_TOKEN_CHALLENGE
            } else {
                BEARER_CHALLENGE
            }),
            _ => None,
        }
    }
}

/// A `Retry-After` value: whole seconds, rounded up, at least 1 (`Retry-After: 0`
/// invites an immediate retry).
pub fn retry_after_secs(duration: std::time::Duration) -> u64 {
    duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0))
        .max(1)
}

impl From<InvalidParam> for InferError {
    fn from(err: InvalidParam) -> Self {
        Self::InvalidParameter {
            param: err.param.to_owned(),
            message: err.message,
        }
    }
}

impl From<AdmissionError> for InferError {
    fn from(err: AdmissionError) -> Self {
        match err {
            AdmissionError::Invalid(invalid) => invalid.into(),
            AdmissionError::EmptyPrompt => Self::BadRequest(err.to_string()),
            // A prompt plus `max_tokens` past the context: `max_tokens` is what to lower.
            AdmissionError::TooLong { .. } => Self::ContextLength {
                param: "max_tokens",
                message: err.to_string(),
            },
            AdmissionError::QueueFull(_) => Self::Overloaded(err.to_string()),
            AdmissionError::Stopped => Self::NotReady(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_refusals_keep_their_class() {
        let too_long = AdmissionError::TooLong {
            prompt: 10,
            max_tokens: 20,
            context: 16,
        };
        let cases = [
            (AdmissionError::EmptyPrompt, "bad_request"),
            (too_long, "too_large"),
            (AdmissionError::QueueFull("64 waiting".into()), "overloaded"),
            (AdmissionError::Stopped, "not_ready"),
        ];
        for (admission, label) in cases {
            assert_eq!(
                InferError::from(admission.clone()).metric_label(),
                label,
                "{admission:?}"
            );
        }
        let err = InferError::from(AdmissionError::Invalid(InvalidParam {
            param: "top_p",
            message: "must be greater than 0".into(),
        }));
        assert_eq!(
            err,
            InferError::InvalidParameter {
                param: "top_p".into(),
                message: "must be greater than 0".into()
            }
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_at_least_one() {
        let limited = |retry_after| InferError::RateLimited {
            message: "over".into(),
            retry_after,
        };
        let cases = [(0, 1), (1, 1), (999, 1), (1_000, 1), (1_001, 2), (2_500, 3)];
        for (millis, secs) in cases {
            let err = limited(std::time::Duration::from_millis(millis));
            assert_eq!(err.retry_after_secs(), Some(secs), "{millis} ms");
            assert_eq!(err.metric_label(), "rate_limited");
        }
        assert_eq!(InferError::Forbidden("no".into()).retry_after_secs(), None);
    }

    #[test]
    fn only_refused_credentials_carry_invalid_token() {
        let missing = InferError::Unauthenticated {
            message: "missing credentials".into(),
            invalid_token: false,
        };
        let refused = InferError::Unauthenticated {
            message: "unknown API key".into(),
            invalid_token: true,
        };
        assert_eq!(missing.challenge(), Some("Bearer realm=\"modelplane\""));
        assert_eq!(
            refused.challenge(),
            Some("Bearer realm=\"modelplane\", error=\"invalid_token\"")
        );
        assert_eq!(refused.metric_label(), "unauthenticated");
        assert_eq!(InferError::Forbidden("x".into()).challenge(), None);
    }
}
