//! Fuzzes the JSON tensor data decoder: any text and datatype must decode or fail
//! cleanly, never panic, and never produce more elements than allowed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelplane_runtime::protocol::json_data::decode;
use modelplane_runtime::tensor::DataType;

const TYPES: [&str; 13] = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
    "FP32", "FP64", "BF16",
];

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let Some(datatype) = DataType::parse(TYPES[usize::from(choice) % TYPES.len()]) else {
        return;
    };
    if let Ok((bytes, count)) = decode(text, datatype, 64) {
        assert!(count <= 64);
        assert_eq!(
            bytes.len() as u64,
            count * datatype.size().unwrap_or(0) as u64
        );
    }
});
