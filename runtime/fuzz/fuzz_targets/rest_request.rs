//! Fuzzes the REST inference request parser (JSON and binary tensor data).
//!
//! The first input byte picks the mode: even bytes send the rest as a plain JSON body;
//! odd bytes take the next two bytes as `Inference-Header-Content-Length` and the rest
//! as a JSON header followed by binary tensor data. The parser must never panic and
//! may only fail with client errors.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use modelplane_config::Limits;
use modelplane_runtime::InferError;
use modelplane_runtime::model::{Signature, TensorSpec};
use modelplane_runtime::protocol::rest::parse_request;
use modelplane_runtime::tensor::DataType;

fn signature() -> Signature {
    let spec = |name: &str, datatype, shape: Vec<i64>| TensorSpec {
        name: name.into(),
        datatype,
        shape,
    };
    Signature {
        inputs: vec![
            spec("x", DataType::Fp32, vec![-1, 4]),
            spec("ids", DataType::Int64, vec![-1, -1]),
        ],
        outputs: vec![spec("y", DataType::Fp32, vec![-1, 4])],
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_elements: 4096,
        ..Limits::default()
    };
    let (header, body) = if mode % 2 == 1 && rest.len() >= 2 {
        (
            Some(u16::from_le_bytes([rest[0], rest[1]]).to_string()),
            &rest[2..],
        )
    } else {
        (None, rest)
    };
    let body = Bytes::copy_from_slice(body);
    match parse_request(
        &body,
        header.as_deref(),
        &signature(),
        &limits,
        mode & 2 == 2,
    ) {
        Ok(_) | Err(InferError::BadRequest(_) | InferError::TooLarge(_)) => {}
        Err(other) => panic!("parser produced a non-client error: {other:?}"),
    }
});
