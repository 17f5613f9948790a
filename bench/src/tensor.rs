//! The input tensor a run sends: its datatype, shape and little-endian bytes.

use std::path::Path;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Error;

pub use modelplane_wire::DataType;

/// Parses a datatype name as the flags and model metadata give it, in any case.
///
/// `BYTES` is refused: its elements have no fixed size, and the models this tool
/// measures take numeric tensors.
pub fn parse_datatype(name: &str) -> Result<DataType, Error> {
    DataType::ALL
        .into_iter()
        .find(|d| d.size().is_some() && d.as_str().eq_ignore_ascii_case(name))
        .ok_or_else(|| Error::UnknownDatatype(name.to_owned()))
}

/// One named input tensor, its elements stored row-major and little-endian.
#[derive(Debug, Clone, PartialEq)]
pub struct InputTensor {
    /// Input name as the model metadata gives it.
    pub name: String,
    /// Element type.
    pub datatype: DataType,
    /// Dimensions; all non-negative.
    pub shape: Vec<i64>,
    /// `datatype.byte_len(shape)` bytes; never `BYTES`.
    pub data: Bytes,
}

impl InputTensor {
    /// Builds a tensor from raw bytes, checking that they fill the shape exactly.
    pub fn from_bytes(
        name: String,
        datatype: DataType,
        shape: Vec<i64>,
        data: Bytes,
    ) -> Result<Self, Error> {
        let expected = byte_len(datatype, &shape)?;
        if data.len() != expected {
            return Err(Error::InputSize {
                shape,
                datatype,
                expected,
                actual: data.len(),
            });
        }
        Ok(Self {
            name,
            datatype,
            shape,
            data,
        })
    }

    /// Reads raw little-endian elements from a file.
    pub fn from_file(
        name: String,
        datatype: DataType,
        shape: Vec<i64>,
        path: &Path,
    ) -> Result<Self, Error> {
        let data = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes(name, datatype, shape, data.into())
    }

    /// Fills a tensor with reproducible random values: floats in [-1, 1),
    /// integers in [0, 10), booleans 0/1.
    pub fn random(
        name: String,
        datatype: DataType,
        shape: Vec<i64>,
        seed: u64,
    ) -> Result<Self, Error> {
        let capacity = byte_len(datatype, &shape)?;
        let count = element_count(&shape)?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut data = Vec::with_capacity(capacity);
        for _ in 0..count {
            push_random(&mut data, datatype, &mut rng);
        }
        Self::from_bytes(name, datatype, shape, data.into())
    }

    /// Size of the first dimension: the rows one request carries.
    pub fn rows(&self) -> u64 {
        self.shape
            .first()
            .map_or(1, |rows| u64::try_from(*rows).unwrap_or(0))
    }
}

fn push_random(out: &mut Vec<u8>, datatype: DataType, rng: &mut StdRng) {
    let small: u8 = rng.gen_range(0..10);
    let float: f64 = rng.gen_range(-1.0..1.0);
    match datatype {
        DataType::Bool => out.push(small % 2),
        DataType::Uint8 => out.push(small),
        DataType::Int8 => out.extend_from_slice(&(small as i8).to_le_bytes()),
        DataType::Uint16 => out.extend_from_slice(&u16::from(small).to_le_bytes()),
        DataType::Int16 => out.extend_from_slice(&i16::from(small).to_le_bytes()),
        DataType::Uint32 => out.extend_from_slice(&u32::from(small).to_le_bytes()),
        DataType::Int32 => out.extend_from_slice(&i32::from(small).to_le_bytes()),
        DataType::Uint64 => out.extend_from_slice(&u64::from(small).to_le_bytes()),
        DataType::Int64 => out.extend_from_slice(&i64::from(small).to_le_bytes()),
        DataType::Fp16 => out.extend_from_slice(&half::f16::from_f64(float).to_le_bytes()),
        DataType::Bf16 => out.extend_from_slice(&half::bf16::from_f64(float).to_le_bytes()),
        DataType::Fp32 => out.extend_from_slice(&(float as f32).to_le_bytes()),
        DataType::Fp64 => out.extend_from_slice(&float.to_le_bytes()),
        // `byte_len` refuses BYTES before any element is made.
        DataType::Bytes => {}
    }
}

/// Number of elements of a shape; negative dimensions and overflow are rejected.
pub fn element_count(shape: &[i64]) -> Result<usize, Error> {
    modelplane_wire::element_count(shape)
        .and_then(|count| usize::try_from(count).ok())
        .ok_or_else(|| Error::BadShape(shape.to_vec()))
}

/// Bytes a tensor of `shape` takes; `BYTES`, negative dimensions and overflow are
/// rejected.
fn byte_len(datatype: DataType, shape: &[i64]) -> Result<usize, Error> {
    if datatype.size().is_none() {
        return Err(Error::UnknownDatatype(datatype.to_string()));
    }
    datatype
        .byte_len(shape)
        .and_then(|len| usize::try_from(len).ok())
        .ok_or_else(|| Error::BadShape(shape.to_vec()))
}

/// Parses a shape written as `1,3,64,64`.
pub fn parse_shape(text: &str) -> Result<Vec<i64>, Error> {
    text.split(',')
        .map(|dim| {
            dim.trim()
                .parse::<i64>()
                .map_err(|_| Error::ShapeSyntax(text.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datatype_names_parse_in_any_case_except_bytes() {
        for dtype in DataType::ALL {
            let name = dtype.as_str();
            if dtype == DataType::Bytes {
                continue;
            }
            assert_eq!(parse_datatype(name).unwrap(), dtype);
            assert_eq!(parse_datatype(&name.to_lowercase()).unwrap(), dtype);
        }
        assert_eq!(parse_datatype("fp32").unwrap(), DataType::Fp32);
        for name in ["BYTES", "bytes", "FLOAT", ""] {
            assert!(
                matches!(parse_datatype(name), Err(Error::UnknownDatatype(n)) if n == name),
                "{name:?}"
            );
        }
    }

    #[test]
    fn random_tensor_fills_the_shape_and_is_reproducible() {
        let a = InputTensor::random("x".into(), DataType::Fp16, vec![2, 3], 7).unwrap();
        let b = InputTensor::random("x".into(), DataType::Fp16, vec![2, 3], 7).unwrap();
        let c = InputTensor::random("x".into(), DataType::Fp16, vec![2, 3], 8).unwrap();
        assert_eq!(a.data.len(), 12);
        assert_eq!(a, b);
        assert_ne!(a.data, c.data);
        assert_eq!(a.rows(), 2);
    }

    #[test]
    fn random_floats_stay_in_unit_range() {
        let t = InputTensor::random("x".into(), DataType::Fp32, vec![1000], 1).unwrap();
        for chunk in t.data.chunks_exact(4) {
            let v = f32::from_le_bytes(chunk.try_into().unwrap());
            assert!((-1.0..1.0).contains(&v), "{v}");
        }
    }

    #[test]
    fn bytes_that_do_not_fill_the_shape_are_rejected() {
        let err = InputTensor::from_bytes(
            "x".into(),
            DataType::Int64,
            vec![2, 2],
            Bytes::from(vec![0; 31]),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            Error::InputSize {
                expected: 32,
                actual: 31,
                ..
            }
        ));
    }

    #[test]
    fn bytes_tensors_and_overflowing_shapes_are_rejected() {
        assert!(matches!(
            InputTensor::from_bytes("x".into(), DataType::Bytes, vec![1], Bytes::new()),
            Err(Error::UnknownDatatype(_))
        ));
        assert!(matches!(
            InputTensor::random("x".into(), DataType::Bytes, vec![1], 0),
            Err(Error::UnknownDatatype(_))
        ));
        assert!(matches!(
            InputTensor::from_bytes(
                "x".into(),
                DataType::Fp64,
                vec![1 << 31, 1 << 31],
                Bytes::new()
            ),
            Err(Error::BadShape(_))
        ));
    }

    #[test]
    fn negative_dimensions_are_rejected() {
        assert!(matches!(element_count(&[-1, 4]), Err(Error::BadShape(_))));
        assert_eq!(element_count(&[]).unwrap(), 1);
        assert_eq!(element_count(&[3, 0]).unwrap(), 0);
    }

    #[test]
    fn shapes_parse_from_comma_lists() {
        assert_eq!(parse_shape("1, 3,64,64").unwrap(), vec![1, 3, 64, 64]);
        assert!(matches!(parse_shape("1,x"), Err(Error::ShapeSyntax(_))));
    }
}
