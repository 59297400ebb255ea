//! The error type of every kernel: bad parameters and shape mismatches, reported instead of panicking.

/// A kernel refused its arguments.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KernelError {
    /// Input shapes do not fit together (or with the parameters).
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A parameter is out of range (zero stride, group not dividing channels, ...).
    #[error("invalid parameter: {0}")]
    Param(String),
    /// A buffer has the wrong number of elements for its declared shape.
    #[error("{what} buffer holds {got} elements, its shape needs {expected}")]
    Length {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// A valid ONNX configuration this crate does not implement.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, KernelError>;

macro_rules! shape_err {
    ($($t:tt)*) => { $crate::error::KernelError::Shape(format!($($t)*)) };
}
macro_rules! param_err {
    ($($t:tt)*) => { $crate::error::KernelError::Param(format!($($t)*)) };
}
pub(crate) use {param_err, shape_err};
