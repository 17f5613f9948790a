//! Tensors as they travel: an Open Inference Protocol datatype, a shape and raw bytes.
//!
//! The datatype table itself lives in `modelplane-wire`, free of libtorch; this module
//! adds its libtorch side.

use bytes::Bytes;
use tch::Kind;

pub use modelplane_wire::{DataType, element_count};

/// The libtorch side of a wire datatype.
pub trait TorchKind: Sized {
    /// The libtorch scalar type; `None` where libtorch has no dense equivalent.
    fn kind(self) -> Option<Kind>;

    /// The datatype of a libtorch scalar type, if it has one on the wire.
    fn from_kind(kind: Kind) -> Option<Self>;
}

impl TorchKind for DataType {
    fn kind(self) -> Option<Kind> {
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

    fn from_kind(kind: Kind) -> Option<Self> {
        DataType::ALL.into_iter().find(|d| d.kind() == Some(kind))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_sizes_match_libtorch() {
        for datatype in DataType::ALL {
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
    fn unsigned_wide_and_bytes_datatypes_have_no_libtorch_kind() {
        let without: Vec<DataType> = DataType::ALL
            .into_iter()
            .filter(|d| d.kind().is_none())
            .collect();
        assert_eq!(
            without,
            [
                DataType::Uint16,
                DataType::Uint32,
                DataType::Uint64,
                DataType::Bytes
            ]
        );
    }
}
