//! Errors of the executor: every one names the node (and op) it happened in where there is one.

use qtool_tensor::{DType, TensorError};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("node '{node}': op {domain_display}{op_type} (opset {opset}) is not supported by qtool's executor{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default(), domain_display = if domain.is_empty() { String::new() } else { format!("{domain}::") })]
    UnsupportedOp {
        node: String,
        op_type: String,
        domain: String,
        opset: i64,
        reason: Option<String>,
    },
    #[error("node '{node}' ({op_type}): {msg}")]
    Op {
        node: String,
        op_type: String,
        msg: String,
    },
    #[error(
        "input '{name}': expected {expected_dtype} with shape {expected_shape}, got {got_dtype} with shape {got_shape:?}"
    )]
    InputMismatch {
        name: String,
        expected_dtype: String,
        expected_shape: String,
        got_dtype: DType,
        got_shape: Vec<usize>,
    },
    #[error("input '{0}' was not given")]
    MissingInput(String),
    #[error("'{0}' is not an input of the model")]
    UnknownInput(String),
    #[error("invalid model: {0}")]
    Model(String),
    #[error(transparent)]
    Tensor(#[from] TensorError),
}

/// An error inside one op's evaluation, before the node's name is attached by the interpreter.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpError(pub String);

impl From<TensorError> for OpError {
    fn from(e: TensorError) -> Self {
        OpError(e.to_string())
    }
}

/// Shorthand for returning an [`OpError`].
#[macro_export]
macro_rules! bail {
    ($($t:tt)*) => { return Err($crate::error::OpError(format!($($t)*))) };
}
