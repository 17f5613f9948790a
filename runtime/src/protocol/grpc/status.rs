//! The gRPC shape of a request's error: its status code.

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
        InferError::NotReady(_) => Code::Unavailable,
        InferError::DeadlineExceeded(_) => Code::DeadlineExceeded,
        InferError::Internal(_) => Code::Internal,
    }
}

impl From<InferError> for Status {
    fn from(err: InferError) -> Self {
        Status::new(grpc_code(&err), err.to_string())
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
}
