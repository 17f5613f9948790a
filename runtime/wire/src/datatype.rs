//! The Open Inference Protocol datatype table: every datatype, its wire name and its
//! element size, in one place.

use std::fmt;
use std::str::FromStr;

/// An Open Inference Protocol tensor datatype.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `BOOL`, one byte per element.
    Bool,
    /// `UINT8`
    Uint8,
    /// `UINT16`
    Uint16,
    /// `UINT32`
    Uint32,
    /// `UINT64`
    Uint64,
    /// `INT8`
    Int8,
    /// `INT16`
    Int16,
    /// `INT32`
    Int32,
    /// `INT64`
    Int64,
    /// `FP16`, IEEE half precision.
    Fp16,
    /// `FP32`
    Fp32,
    /// `FP64`
    Fp64,
    /// `BF16`, bfloat16.
    Bf16,
    /// `BYTES`, length-prefixed byte strings.
    Bytes,
}

/// A datatype name that is not in the protocol's table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown datatype {name:?}")]
pub struct UnknownDataType {
    /// The name as given.
    pub name: String,
}

impl DataType {
    /// Every datatype, in the protocol's order.
    pub const ALL: [Self; 14] = [
        Self::Bool,
        Self::Uint8,
        Self::Uint16,
        Self::Uint32,
        Self::Uint64,
        Self::Int8,
        Self::Int16,
        Self::Int32,
        Self::Int64,
        Self::Fp16,
        Self::Fp32,
        Self::Fp64,
        Self::Bf16,
        Self::Bytes,
    ];

    /// Parses the exact wire name (`FP32`, `INT64`, ...); `None` for anything else.
    ///
    /// For a typed error that names the input, use [`str::parse`] ([`FromStr`]).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// The wire name, e.g. `FP32`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::Uint8 => "UINT8",
            Self::Uint16 => "UINT16",
            Self::Uint32 => "UINT32",
            Self::Uint64 => "UINT64",
            Self::Int8 => "INT8",
            Self::Int16 => "INT16",
            Self::Int32 => "INT32",
            Self::Int64 => "INT64",
            Self::Fp16 => "FP16",
            Self::Fp32 => "FP32",
            Self::Fp64 => "FP64",
            Self::Bf16 => "BF16",
            Self::Bytes => "BYTES",
        }
    }

    /// Bytes per element; `None` for the variable-size `BYTES`.
    pub fn size(self) -> Option<usize> {
        match self {
            Self::Bool | Self::Uint8 | Self::Int8 => Some(1),
            Self::Uint16 | Self::Int16 | Self::Fp16 | Self::Bf16 => Some(2),
            Self::Uint32 | Self::Int32 | Self::Fp32 => Some(4),
            Self::Uint64 | Self::Int64 | Self::Fp64 => Some(8),
            Self::Bytes => None,
        }
    }

    /// Bytes a dense tensor of `shape` takes; `None` for `BYTES`, a negative
    /// dimension, or a length that overflows `u64`.
    pub fn byte_len(self, shape: &[i64]) -> Option<u64> {
        let size = u64::try_from(self.size()?).ok()?;
        crate::element_count(shape)?.checked_mul(size)
    }
}

impl FromStr for DataType {
    type Err = UnknownDataType;

    /// Parses the exact wire name; the error names the input.
    fn from_str(name: &str) -> Result<Self, UnknownDataType> {
        Self::parse(name).ok_or_else(|| UnknownDataType {
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The protocol's table, written out once more so that a change to it is a
    /// deliberate edit in two places.
    const TABLE: [(DataType, &str, Option<usize>); 14] = [
        (DataType::Bool, "BOOL", Some(1)),
        (DataType::Uint8, "UINT8", Some(1)),
        (DataType::Uint16, "UINT16", Some(2)),
        (DataType::Uint32, "UINT32", Some(4)),
        (DataType::Uint64, "UINT64", Some(8)),
        (DataType::Int8, "INT8", Some(1)),
        (DataType::Int16, "INT16", Some(2)),
        (DataType::Int32, "INT32", Some(4)),
        (DataType::Int64, "INT64", Some(8)),
        (DataType::Fp16, "FP16", Some(2)),
        (DataType::Fp32, "FP32", Some(4)),
        (DataType::Fp64, "FP64", Some(8)),
        (DataType::Bf16, "BF16", Some(2)),
        (DataType::Bytes, "BYTES", None),
    ];

    #[test]
    fn table_lists_every_datatype_once_in_protocol_order() {
        let listed: Vec<DataType> = TABLE.iter().map(|(d, _, _)| *d).collect();
        assert_eq!(listed, DataType::ALL);
    }

    #[test]
    fn wire_names_and_sizes_are_pinned() {
        for (datatype, name, size) in TABLE {
            assert_eq!(datatype.as_str(), name);
            assert_eq!(datatype.to_string(), name);
            assert_eq!(datatype.size(), size, "{name}");
        }
    }

    #[test]
    fn every_datatype_round_trips_by_name() {
        for datatype in DataType::ALL {
            assert_eq!(DataType::parse(datatype.as_str()), Some(datatype));
            assert_eq!(datatype.as_str().parse::<DataType>(), Ok(datatype));
        }
    }

    #[test]
    fn names_outside_the_table_are_refused_with_the_input_named() {
        for name in ["fp32", "FLOAT", "", " FP32", "FP32 ", "TYPE_FP32", "STRING"] {
            assert_eq!(DataType::parse(name), None, "{name:?}");
            let err = name.parse::<DataType>().unwrap_err();
            assert_eq!(err, UnknownDataType { name: name.into() });
            assert_eq!(err.to_string(), format!("unknown datatype {name:?}"));
        }
    }

    #[test]
    fn byte_len_multiplies_elements_by_element_size() {
        let cases: [(DataType, &[i64], Option<u64>); 8] = [
            (DataType::Fp32, &[2, 3], Some(24)),
            (DataType::Int64, &[2, 2], Some(32)),
            (DataType::Bool, &[5], Some(5)),
            (DataType::Fp16, &[], Some(2)),
            (DataType::Bf16, &[0, 7], Some(0)),
            (DataType::Fp32, &[-1, 3], None),
            (DataType::Bytes, &[4], None),
            (DataType::Fp64, &[1 << 31, 1 << 31], None),
        ];
        for (datatype, shape, expected) in cases {
            assert_eq!(datatype.byte_len(shape), expected, "{datatype} {shape:?}");
        }
    }
}
