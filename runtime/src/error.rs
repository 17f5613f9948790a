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
        }
    }
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
}
