//! Tensors as they travel: an Open Inference Protocol datatype, a shape and raw bytes.

use bytes::Bytes;
use tch::Kind;

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

const ALL: [DataType; 14] = [
    DataType::Bool,
    DataType::Uint8,
    DataType::Uint16,
    DataType::Uint32,
    DataType::Uint64,
    DataType::Int8,
    DataType::Int16,
    DataType::Int32,
    DataType::Int64,
    DataType::Fp16,
    DataType::Fp32,
    DataType::Fp64,
    DataType::Bf16,
    DataType::Bytes,
];

impl DataType {
    /// Parses the wire name (`FP32`, `INT64`, ...).
    pub fn parse(name: &str) -> Option<Self> {
        ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// The wire name.
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

    /// The libtorch scalar type; `None` where libtorch has no dense equivalent.
    pub fn kind(self) -> Option<Kind> {
        match self {
            Self::Bool => Some(Kind::Bool),
            Self::Uint8 => Some(Kind::Uint8),
            Self::Int8 => Some(Kind::Int8),
            Self::Int16 => Some(Kind::Int16),
            Self::Int32 => Some(Kind::Int),
            Self::Int64 => Some(Kind::Int64),
            Self::Fp16 => Some(Kind::Half),
            Self::Fp32 => Some(Kind::Float),
            Self::Fp64 => Some(Kind::Double),
            Self::Bf16 => Some(Kind::BFloat16),
            Self::Uint16 | Self::Uint32 | Self::Uint64 | Self::Bytes => None,
        }
    }

    /// The datatype of a libtorch scalar type, if it has one on the wire.
    pub fn from_kind(kind: Kind) -> Option<Self> {
        ALL.into_iter().find(|d| d.kind() == Some(kind))
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named tensor: datatype, shape and little-endian, row-major element bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorData {
    /// Tensor name on the wire.
    pub name: String,
    /// Element type.
    pub datatype: DataType,
    /// Dimensions.
    pub shape: Vec<i64>,
    /// Element bytes, exactly `element_count(shape) * datatype.size()` long.
    pub data: Bytes,
}

/// The number of elements of a shape; `None` on a negative dimension or overflow.
pub fn element_count(shape: &[i64]) -> Option<u64> {
    shape
        .iter()
        .try_fold(1u64, |acc, &dim| acc.checked_mul(u64::try_from(dim).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for datatype in ALL {
            assert_eq!(DataType::parse(datatype.as_str()), Some(datatype));
        }
        assert_eq!(DataType::parse("fp32"), None);
        assert_eq!(DataType::parse("FLOAT"), None);
    }

    #[test]
    fn element_sizes_match_libtorch() {
        for datatype in ALL {
            if let Some(kind) = datatype.kind() {
                assert_eq!(
                    datatype.size(),
                    Some(kind.elt_size_in_bytes()),
                    "{datatype}"
                );
                assert_eq!(DataType::from_kind(kind), Some(datatype));
            }
        }
    }

    #[test]
    fn element_count_rejects_negative_and_overflowing_shapes() {
        assert_eq!(element_count(&[2, 3, 4]), Some(24));
        assert_eq!(element_count(&[]), Some(1));
        assert_eq!(element_count(&[0, 5]), Some(0));
        assert_eq!(element_count(&[-1, 5]), None);
        assert_eq!(element_count(&[i64::MAX, i64::MAX]), None);
    }
}
