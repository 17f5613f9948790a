//! Tensor data as JSON numbers: decoded straight into little-endian bytes (nested
//! arrays flattened, no intermediate `Value` tree) and encoded back from bytes.

use std::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeSeq, Serializer};

use crate::tensor::DataType;

/// Decodes a JSON array (possibly nested) of `datatype` elements into bytes,
/// refusing more than `max_elements` elements.
pub fn decode(json: &str, datatype: DataType, max_elements: u64) -> Result<(Vec<u8>, u64), String> {
    let capacity = (max_elements as usize).min(1 << 20) * datatype.size().unwrap_or(1);
    let mut sink = Sink {
        datatype,
        out: Vec::with_capacity(capacity),
        count: 0,
        max_elements,
    };
    let mut deserializer = serde_json::Deserializer::from_str(json);
    (&mut sink)
        .deserialize(&mut deserializer)
        .map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    Ok((sink.out, sink.count))
}

struct Sink {
    datatype: DataType,
    out: Vec<u8>,
    count: u64,
    max_elements: u64,
}

#[derive(Clone, Copy)]
enum Scalar {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(v) => write!(f, "{v}"),
            Self::Int(v) => write!(f, "{v}"),
            Self::Uint(v) => write!(f, "{v}"),
            Self::Float(v) => write!(f, "{v}"),
        }
    }
}

impl Scalar {
    fn integer<T: TryFrom<i64> + TryFrom<u64>>(self) -> Option<T> {
        match self {
            Self::Int(v) => T::try_from(v).ok(),
            Self::Uint(v) => T::try_from(v).ok(),
            Self::Bool(_) | Self::Float(_) => None,
        }
    }

    fn float(self) -> Option<f64> {
        match self {
            Self::Int(v) => Some(v as f64),
            Self::Uint(v) => Some(v as f64),
            Self::Float(v) => Some(v),
            Self::Bool(_) => None,
        }
    }
}

impl Sink {
    fn push(&mut self, value: Scalar) -> Result<(), String> {
        self.count += 1;
        if self.count > self.max_elements {
            return Err(format!(
                "more than the {} elements the shape holds",
                self.max_elements
            ));
        }
        let out = &mut self.out;
        let ok = match self.datatype {
            DataType::Bool => matches!(value, Scalar::Bool(_))
                .then(|| out.push(u8::from(matches!(value, Scalar::Bool(true))))),
            DataType::Uint8 => value.integer::<u8>().map(|v| out.push(v)),
            DataType::Uint16 => value.integer::<u16>().map(|v| out.extend(v.to_le_bytes())),
            DataType::Uint32 => value.integer::<u32>().map(|v| out.extend(v.to_le_bytes())),
            DataType::Uint64 => value.integer::<u64>().map(|v| out.extend(v.to_le_bytes())),
            DataType::Int8 => value.integer::<i8>().map(|v| out.extend(v.to_le_bytes())),
            DataType::Int16 => value.integer::<i16>().map(|v| out.extend(v.to_le_bytes())),
            DataType::Int32 => value.integer::<i32>().map(|v| out.extend(v.to_le_bytes())),
            DataType::Int64 => value.integer::<i64>().map(|v| out.extend(v.to_le_bytes())),
            DataType::Fp16 => value
                .float()
                .map(|v| out.extend(half::f16::from_f64(v).to_le_bytes())),
            DataType::Bf16 => value
                .float()
                .map(|v| out.extend(half::bf16::from_f64(v).to_le_bytes())),
            DataType::Fp32 => value.float().map(|v| out.extend((v as f32).to_le_bytes())),
            DataType::Fp64 => value.float().map(|v| out.extend(v.to_le_bytes())),
            DataType::Bytes => None,
        };
        ok.ok_or_else(|| format!("{value} is not a valid {} value", self.datatype))
    }
}

impl<'de> DeserializeSeed<'de> for &mut Sink {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Sink {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of {} values", self.datatype)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(&mut *self)?.is_some() {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.push(Scalar::Bool(v)).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push(Scalar::Int(v)).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push(Scalar::Uint(v)).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.push(Scalar::Float(v)).map_err(E::custom)
    }
}

/// Serializes tensor bytes as a flat JSON array of numbers (booleans for `BOOL`).
pub struct DataView<'a> {
    /// Element type of `bytes`.
    pub datatype: DataType,
    /// Little-endian element bytes.
    pub bytes: &'a [u8],
}

macro_rules! numbers {
    ($seq:expr, $bytes:expr, $ty:ty, $map:expr) => {{
        for chunk in $bytes.chunks_exact(size_of::<$ty>()) {
            let mut raw = [0u8; size_of::<$ty>()];
            raw.copy_from_slice(chunk);
            $seq.serialize_element(&$map(<$ty>::from_le_bytes(raw)))?;
        }
    }};
}

impl Serialize for DataView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let elements = self.bytes.len() / self.datatype.size().unwrap_or(1).max(1);
        let mut seq = serializer.serialize_seq(Some(elements))?;
        let bytes = self.bytes;
        match self.datatype {
            DataType::Bool => numbers!(seq, bytes, u8, |v: u8| v != 0),
            DataType::Uint8 => numbers!(seq, bytes, u8, |v| v),
            DataType::Uint16 => numbers!(seq, bytes, u16, |v| v),
            DataType::Uint32 => numbers!(seq, bytes, u32, |v| v),
            DataType::Uint64 => numbers!(seq, bytes, u64, |v| v),
            DataType::Int8 => numbers!(seq, bytes, i8, |v| v),
            DataType::Int16 => numbers!(seq, bytes, i16, |v| v),
            DataType::Int32 => numbers!(seq, bytes, i32, |v| v),
            DataType::Int64 => numbers!(seq, bytes, i64, |v| v),
            DataType::Fp16 => numbers!(seq, bytes, u16, |v| half::f16::from_bits(v).to_f32()),
            DataType::Bf16 => numbers!(seq, bytes, u16, |v| half::bf16::from_bits(v).to_f32()),
            DataType::Fp32 => numbers!(seq, bytes, f32, |v| v),
            DataType::Fp64 => numbers!(seq, bytes, f64, |v| v),
            DataType::Bytes => {}
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(datatype: DataType, bytes: &[u8]) -> String {
        serde_json::to_string(&DataView { datatype, bytes }).expect("serializes")
    }

    #[test]
    fn nested_arrays_are_flattened_row_major() {
        let (bytes, count) = decode("[[1, 2], [3, 4.5]]", DataType::Fp32, 4).expect("decodes");
        assert_eq!(count, 4);
        assert_eq!(encode(DataType::Fp32, &bytes), "[1.0,2.0,3.0,4.5]");
    }

    #[test]
    fn every_numeric_datatype_round_trips() {
        let cases = [
            (DataType::Uint8, "[0,255]"),
            (DataType::Uint16, "[0,65535]"),
            (DataType::Uint32, "[0,4294967295]"),
            (DataType::Uint64, "[0,18446744073709551615]"),
            (DataType::Int8, "[-128,127]"),
            (DataType::Int16, "[-32768,32767]"),
            (DataType::Int32, "[-2147483648,2147483647]"),
            (
                DataType::Int64,
                "[-9223372036854775808,9223372036854775807]",
            ),
            (DataType::Fp16, "[0.5,-2.0]"),
            (DataType::Bf16, "[0.5,-2.0]"),
            (DataType::Fp64, "[0.1,-2.0]"),
            (DataType::Bool, "[true,false]"),
        ];
        for (datatype, json) in cases {
            let (bytes, count) =
                decode(json, datatype, 2).unwrap_or_else(|e| panic!("{datatype}: {e}"));
            assert_eq!(count, 2);
            assert_eq!(bytes.len(), 2 * datatype.size().expect("fixed size"));
            assert_eq!(encode(datatype, &bytes), json, "{datatype}");
        }
    }

    #[test]
    fn out_of_range_and_wrong_kind_values_are_refused() {
        for (datatype, json) in [
            (DataType::Uint8, "[256]"),
            (DataType::Int8, "[-129]"),
            (DataType::Int32, "[1.5]"),
            (DataType::Uint32, "[-1]"),
            (DataType::Bool, "[1]"),
            (DataType::Fp32, "[true]"),
            (DataType::Fp32, "[\"1\"]"),
            (DataType::Fp32, "{\"a\": 1}"),
        ] {
            assert!(decode(json, datatype, 4).is_err(), "{datatype} {json}");
        }
    }

    #[test]
    fn more_elements_than_the_shape_holds_are_refused_early() {
        let err = decode("[1,2,3]", DataType::Fp32, 2).expect_err("too many");
        assert!(err.contains("more than the 2 elements"), "{err}");
    }

    #[test]
    fn a_bare_scalar_counts_as_one_element() {
        let (bytes, count) = decode("7", DataType::Int64, 1).expect("decodes");
        assert_eq!((bytes, count), (7i64.to_le_bytes().to_vec(), 1));
    }

    /// The bounded stable-Rust twin of the `json_data` fuzz target.
    #[test]
    fn random_text_decodes_or_fails_cleanly() {
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet = b"[],-+.0123456789eE truefalsnul\"{}:";
        let types = [
            DataType::Bool,
            DataType::Uint8,
            DataType::Int16,
            DataType::Int64,
            DataType::Fp16,
            DataType::Fp32,
        ];
        for _ in 0..10_000 {
            let text: String = (0..rng.usize(0..24))
                .map(|_| alphabet[rng.usize(..alphabet.len())] as char)
                .collect();
            let datatype = types[rng.usize(..types.len())];
            if let Ok((bytes, count)) = decode(&text, datatype, 8) {
                assert!(count <= 8, "{text}");
                assert_eq!(
                    bytes.len() as u64,
                    count * datatype.size().expect("fixed") as u64,
                    "{text}"
                );
            }
        }
    }
}
