//! `modelplane-wire`: the Open Inference Protocol's tensor facts that need no libtorch —
//! the datatype table (wire names, element sizes) and the byte length of a shape.
//!
//! `modelplane-runtime` maps these datatypes to libtorch kinds; `modelplane-bench`, which
//! must not link libtorch, encodes requests with them.

pub mod datatype;
pub mod shape;

pub use datatype::{DataType, UnknownDataType};
pub use shape::element_count;
