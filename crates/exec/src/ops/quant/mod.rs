//! The quantization op family: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, the integer
//! ops (QLinearConv, ConvInteger, MatMulInteger, QLinearMatMul) and the `com.microsoft` ops ONNX
//! Runtime's quantizer writes (QLinearAdd, QLinearMul, QLinearSigmoid, QLinearLeakyRelu,
//! QLinearGlobalAveragePool, QLinearAveragePool, QLinearConcat, QLinearSoftmax, QGemm,
//! DynamicQuantizeMatMul, MatMulIntegerToFloat).
//!
//! Every number follows qtool's integer contract (docs/numerics.md): rounding, quantization and
//! requantization are the functions of `qtool_tensor::quant`, the int8 products are the kernels of
//! `qtool_kernels::int8` (exact i32 accumulation). Requantization multipliers are computed in f32
//! exactly as ONNX Runtime computes them (named at each op).
//!
//! Ops with constant weights (QLinearConv, ConvInteger, MatMulInteger / QLinearMatMul / QGemm /
//! DynamicQuantizeMatMul / MatMulIntegerToFloat with a constant 2-D B) pack them once, when the
//! executor is built ([`prepare`]); [`eval_with`] uses the packed state when given one and packs
//! per call otherwise.

use super::{OpCtx, PrepInput, Prepared};
use crate::bail;
use crate::error::OpError;
use qtool_ir::Op;
use qtool_tensor::{DType, Element, Tensor};
use std::borrow::Cow;

mod contrib;
mod conv;
mod matmul;
mod qdq;
#[cfg(test)]
mod tests;

/// Evaluates the ops of this family (no prepared state); `None` for any other op.
pub(crate) fn eval(
    op: &Op,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
) -> Option<Result<Vec<Tensor>, OpError>> {
    eval_with(op, cx, inputs, None)
}

/// Evaluates the ops of this family with the state [`prepare`] made for this node, if any.
pub(crate) fn eval_with(
    op: &Op,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
    prepared: Option<&dyn Prepared>,
) -> Option<Result<Vec<Tensor>, OpError>> {
    Some(match op {
        Op::QuantizeLinear(o) => qdq::quantize_linear(o, cx, inputs),
        Op::DequantizeLinear(o) => qdq::dequantize_linear(o, cx, inputs),
        Op::DynamicQuantizeLinear(_) => qdq::dynamic_quantize_linear(inputs),
        Op::QLinearConv(o) => conv::qlinear_conv(o, inputs, prepared),
        Op::ConvInteger(o) => conv::conv_integer(o, inputs, prepared),
        Op::MatMulInteger(_) => matmul::matmul_integer(inputs, prepared),
        Op::QLinearMatMul(_) => matmul::qlinear_matmul(inputs, prepared),
        Op::QGemm(o) => matmul::qgemm(o, inputs, prepared),
        Op::DynamicQuantizeMatMul(_) => matmul::dynamic_quantize_matmul(inputs, prepared),
        Op::MatMulIntegerToFloat(_) => matmul::matmul_integer_to_float(inputs, prepared),
        Op::QLinearAdd(_) => contrib::qlinear_binary(inputs, contrib::Binary::Add),
        Op::QLinearMul(_) => contrib::qlinear_binary(inputs, contrib::Binary::Mul),
        Op::QLinearSigmoid(_) => contrib::qlinear_sigmoid(inputs),
        Op::QLinearLeakyRelu(o) => contrib::qlinear_leaky_relu(o, inputs),
        Op::QLinearGlobalAveragePool(o) => contrib::qlinear_global_average_pool(o, inputs),
        Op::QLinearAveragePool(o) => contrib::qlinear_average_pool(o, inputs),
        Op::QLinearConcat(o) => contrib::qlinear_concat(o, inputs),
        Op::QLinearSoftmax(o) => contrib::qlinear_softmax(o, inputs),
        _ => return None,
    })
}

/// Packs the constant weights of `op` once; `None` when the op has nothing to pack or its weights
/// are not constant (or cannot be packed: the error then surfaces when the node runs).
pub(crate) fn prepare(op: &Op, inputs: &[PrepInput<'_>]) -> Option<Box<dyn Prepared>> {
    match op {
        Op::QLinearConv(o) => conv::prepare(o.group, inputs, 3, 5),
        Op::ConvInteger(o) => conv::prepare(o.group, inputs, 1, 3),
        Op::MatMulInteger(_) => matmul::prepare(inputs, 1, 3, false),
        Op::QLinearMatMul(_) => matmul::prepare(inputs, 3, 5, false),
        Op::QGemm(o) => matmul::prepare(inputs, 3, 5, o.trans_b.unwrap_or(0) != 0),
        Op::DynamicQuantizeMatMul(_) => matmul::prepare(inputs, 1, 3, false),
        Op::MatMulIntegerToFloat(_) => matmul::prepare(inputs, 1, 5, false),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// shared helpers

/// Required input `i`.
pub(super) fn req<'a>(
    inputs: &[Option<&'a Tensor>],
    i: usize,
    what: &str,
) -> Result<&'a Tensor, OpError> {
    crate::util::req(inputs, i, what)
}

/// Optional input `i`; an empty tensor counts as absent only where the caller says so.
pub(super) fn opt<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    crate::util::opt(inputs, i)
}

/// A constant input for [`prepare`]: `Some(Some(t))` constant, `Some(None)` absent, `None` computed
/// at run time.
pub(super) fn const_input<'a>(inputs: &[PrepInput<'a>], i: usize) -> Option<Option<&'a Tensor>> {
    match inputs.get(i) {
        None | Some(PrepInput::Absent) => Some(None),
        Some(PrepInput::Const(t)) => Some(Some(*t)),
        Some(PrepInput::Runtime) => None,
    }
}

/// Float values of a scale tensor (f32, f16, bf16 or f64; f16/bf16 widen exactly to f32).
pub(super) fn floats(t: &Tensor, what: &str) -> Result<Vec<f32>, OpError> {
    match t {
        Tensor::F32(a) => Ok(crate::util::elems(a).into_owned()),
        Tensor::F16(_) | Tensor::BF16(_) | Tensor::F64(_) => Ok(t
            .to_f64_vec()
            .expect("float tensor")
            .into_iter()
            .map(|v| v as f32)
            .collect()),
        _ => bail!("{what} must be a float tensor, got {}", t.dtype()),
    }
}

/// The single value of a one-element float tensor (a per-tensor scale).
pub(super) fn scalar_f32(t: &Tensor, what: &str) -> Result<f32, OpError> {
    let v = floats(t, what)?;
    if v.len() != 1 {
        bail!(
            "{what} must hold one value (per-tensor), got shape {:?}",
            t.shape()
        );
    }
    Ok(v[0])
}

/// Integer values of a zero-point tensor as i32; an absent zero point is `[0]`.
pub(super) fn zero_points(t: Option<&Tensor>, what: &str) -> Result<Vec<i32>, OpError> {
    match t {
        None => Ok(vec![0]),
        Some(t) => match t.dtype() {
            DType::U8 | DType::I8 | DType::U16 | DType::I16 | DType::I32 => Ok(t
                .to_i64_vec()
                .expect("integer tensor")
                .into_iter()
                .map(|v| v as i32)
                .collect()),
            d => bail!("{what} must be an integer tensor, got {d}"),
        },
    }
}

/// The single zero point of an optional one-element tensor (0 when absent).
pub(super) fn scalar_zp(t: Option<&Tensor>, what: &str) -> Result<i32, OpError> {
    let v = zero_points(t, what)?;
    if v.len() != 1 {
        bail!(
            "{what} must hold one value (per-tensor), got shape {:?}",
            t.map(|t| t.shape().to_vec()).unwrap_or_default()
        );
    }
    Ok(v[0])
}

/// Checks that a per-channel parameter has 1 or `n` entries.
/// A zero-point, when given, has the element type of the data it belongs to.
pub(super) fn check_zp_type(zp: Option<&Tensor>, t: &Tensor, what: &str) -> Result<(), OpError> {
    if let Some(z) = zp
        && z.dtype() != t.dtype()
    {
        bail!(
            "{what} type {} differs from the data type {}",
            z.dtype(),
            t.dtype()
        );
    }
    Ok(())
}

pub(super) fn per_channel_len(what: &str, len: usize, n: usize) -> Result<(), OpError> {
    if len != 1 && len != n {
        bail!("{what} has {len} entries, expected 1 or {n}");
    }
    Ok(())
}

/// The row-major elements of a tensor of type `T`.
pub(super) fn data<T: Element>(t: &Tensor) -> Result<Cow<'_, [T]>, OpError> {
    Ok(crate::util::elems(t.view::<T>()?))
}

/// A tensor from a shape and row-major data.
pub(super) fn tensor<T: Element>(shape: &[usize], v: Vec<T>) -> Result<Tensor, OpError> {
    Ok(Tensor::from_vec(shape, v)?)
}

/// Element count of a shape, checked.
pub(super) fn numel(shape: &[usize]) -> Result<usize, OpError> {
    qtool_tensor::checked_numel(shape)
        .ok_or_else(|| OpError(format!("shape {shape:?} is too large")))
}

/// A kernel error as an op error.
pub(super) fn kerr(e: qtool_kernels::KernelError) -> OpError {
    OpError(e.to_string())
}

/// The `n`-th dtype check for the 8-bit ops: u8 or i8.
pub(super) fn check_8bit(t: &Tensor, what: &str) -> Result<(), OpError> {
    match t.dtype() {
        DType::U8 | DType::I8 => Ok(()),
        d => bail!("{what} must be uint8 or int8, got {d}"),
    }
}

/// Runs `$body` with `$T` bound to the Rust type of an 8-bit tensor's elements (u8 or i8).
macro_rules! with_q8 {
    ($t:expr, $T:ident => $body:expr) => {
        match $t.dtype() {
            qtool_tensor::DType::U8 => {
                type $T = u8;
                $body
            }
            qtool_tensor::DType::I8 => {
                type $T = i8;
                $body
            }
            d => $crate::bail!("expected a uint8 or int8 tensor, got {d}"),
        }
    };
}
pub(super) use with_q8;
