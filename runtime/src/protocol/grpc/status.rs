//! The gRPC shape of a request's error: its status code (and a `retry-after` entry).

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::error::InferError;

/// The gRPC code `err` is reported with; it tells apart what REST folds into 503.
pub fn grpc_code(err: &InferError) -> Code {
    match err {
        InferError::BadRequest(_)
        | InferError::BadField { .. }
        | InferError::ContextLength { .. }
        | InferError::WrongTask(_)
        | InferError::InvalidParameter { .. } => Code::InvalidArgument,
        InferError::NotFound(_) => Code::NotFound,
        InferError::TooLarge(_) | InferError::Overloaded(_) => Code::ResourceExhausted,
        InferError::NotReady(_) | InferError::CircuitOpen { .. } => Code::Unavailable,
        InferError::DeadlineExceeded(_) | InferError::ClientTimeout(_) => Code::DeadlineExceeded,
        InferError::Internal(_) => Code::Internal,
        InferError::Unauthenticated { .. } => Code::Unauthenticated,
        InferError::Forbidden(_) => Code::PermissionDenied,
        InferError::RateLimited { .. } => Code::ResourceExhausted,
    }
}

impl From<InferError> for Status {
    /// The status, with a `retry-after` metadata entry (whole seconds) on a rate limit or a shed request.
    fn from(err: InferError) -> Self {
        let mut status = Status::new(grpc_code(&err), err.to_string());
        if let Some(secs) = err.retry_after_secs() {
            status
                .metadata_mut()
                .insert("retry-after", MetadataValue::from(secs));
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_distinguish_what_rest_folds_into_503() {
        assert_eq!(
            grpc_code(&InferError::Overloaded(String::new())),
            Code::ResourceExhausted
        );
        assert_eq!(
            grpc_code(&InferError::DeadlineExceeded(String::new())),
            Code::DeadlineExceeded
        );
        assert_eq!(
            grpc_code(&InferError::NotReady(String::new())),
            Code::Unavailable
        );
        let field = InferError::BadField {
            param: "text_input",
            message: "not UTF-8".into(),
        };
        assert_eq!(grpc_code(&field), Code::InvalidArgument);
    }

    #[test]
    fn identity_and_budget_refusals_have_their_codes() {
        let unauthenticated = InferError::Unauthenticated {
            message: "unknown API key".into(),
            invalid_token: true,
        };
        assert_eq!(grpc_code(&unauthenticated), Code::Unauthenticated);
        assert_eq!(
            grpc_code(&InferError::Forbidden("no tenant".into())),
            Code::PermissionDenied
        );
        let status = Status::from(InferError::RateLimited {
            message: "over budget".into(),
            retry_after: std::time::Duration::from_millis(300),
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "over budget");
        let retry = status.metadata().get("retry-after").expect("retry-after");
        assert_eq!(retry.to_str().ok(), Some("1"));
    }
}
