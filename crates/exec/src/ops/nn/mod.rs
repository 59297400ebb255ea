//! The neural-network op family: convolution, Gemm/MatMul, normalizations, pooling, resampling and
//! depth/space rearrangement, with ONNX (as ONNX Runtime computes it) semantics.
//!
//! Float-only ops are written once in f32; f64, f16 and bf16 inputs are converted to f32 on the way in
//! and back on the way out ([`via_f32`]). MatMul and Gemm are generic over the numeric types; the
//! rearranging ops (DepthToSpace, SpaceToDepth, nearest Resize) work on any element type.

use super::{OpCtx, PrepInput, Prepared};
use crate::bail;
use crate::error::OpError;
use qtool_ir::Op;
use qtool_tensor::{DType, Element, Tensor, bf16, f16};
use std::borrow::Cow;

mod conv;
mod linalg;
mod norm;
mod pool;
mod resize;
mod space;

pub(crate) use linalg::{Num, matmul_arrays, par_gemm, split_depth};

/// Evaluates the ops of this family; `None` for any other op.
pub(crate) fn eval(
    op: &Op,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
) -> Option<Result<Vec<Tensor>, OpError>> {
    Some(match op {
        Op::MatMul(_) => linalg::matmul(cx, inputs),
        Op::Gemm(o) => linalg::gemm(o, cx, inputs),
        Op::DepthToSpace(o) => space::depth_to_space(o, inputs),
        Op::SpaceToDepth(o) => space::space_to_depth(o, inputs),
        Op::Resize(o) => resize::resize(o, cx, inputs),
        Op::Upsample(o) => resize::upsample(o, inputs),
        Op::LayerNormalization(_) => {
            // Mean / InvStdDev stay f32 for f16 / bf16 inputs (ONNX Runtime's U = float), f64 for f64
            let f64_in = inputs
                .first()
                .copied()
                .flatten()
                .is_some_and(|t| t.dtype() == DType::F64);
            via_f32(
                op,
                cx,
                inputs,
                if f64_in { usize::MAX } else { 1 },
                eval_f32,
            )
        }
        Op::MaxPool(_) | Op::GlobalMaxPool(_)
            if inputs
                .first()
                .copied()
                .flatten()
                .is_some_and(|t| matches!(t.dtype(), DType::I8 | DType::U8)) =>
        {
            int8_via_f32(op, cx, inputs)
        }
        Op::Conv(_)
        | Op::ConvTranspose(_)
        | Op::BatchNormalization(_)
        | Op::InstanceNormalization(_)
        | Op::GroupNormalization(_)
        | Op::Lrn(_)
        | Op::MaxPool(_)
        | Op::AveragePool(_)
        | Op::GlobalAveragePool(_)
        | Op::GlobalMaxPool(_) => via_f32(op, cx, inputs, usize::MAX, eval_f32),
        _ => return None,
    })
}

/// Prepared state of this family's ops with constant weights (f32 Conv); `None` for the others.
pub(crate) fn prepare(op: &Op, inputs: &[PrepInput<'_>]) -> Option<Box<dyn Prepared>> {
    match op {
        Op::Conv(o) => conv::prepare(o, inputs),
        _ => None,
    }
}

/// The ops that can run a following activation in their output stage (f32 Conv).
pub(crate) fn can_fuse(op: &Op) -> bool {
    matches!(op, Op::Conv(_))
}

/// Evaluates an op of [`can_fuse`] with its prepared state (if any) and `act` applied to its
/// output; `None` when the op or its input type has no fused path (the caller then runs the op and
/// the activation separately).
pub(crate) fn eval_fused(
    op: &Op,
    inputs: &[Option<&Tensor>],
    prepared: Option<&dyn Prepared>,
    act: qtool_kernels::Activation,
) -> Option<Result<Vec<Tensor>, OpError>> {
    let f32_in = inputs
        .first()
        .copied()
        .flatten()
        .is_some_and(|t| t.dtype() == DType::F32);
    match op {
        Op::Conv(o) if f32_in => Some(conv::conv_fused(o, inputs, prepared, act)),
        _ => None,
    }
}

/// The f32 implementations of the float-only ops.
fn eval_f32(op: &Op, cx: &OpCtx, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
    match op {
        Op::Conv(o) => conv::conv(o, inputs),
        Op::ConvTranspose(o) => conv::conv_transpose(o, inputs),
        Op::BatchNormalization(o) => norm::batch_norm(o, cx, inputs),
        Op::InstanceNormalization(o) => norm::instance_norm(o, inputs),
        Op::LayerNormalization(o) => norm::layer_norm(o, cx, inputs),
        Op::GroupNormalization(o) => norm::group_norm(o, cx, inputs),
        Op::Lrn(o) => norm::lrn(o, inputs),
        Op::MaxPool(o) => pool::max_pool(o, cx, inputs),
        Op::AveragePool(o) => pool::average_pool(o, inputs),
        Op::GlobalAveragePool(_) => pool::global_pool(inputs, false),
        Op::GlobalMaxPool(_) => pool::global_pool(inputs, true),
        _ => bail!("internal: {} is not an f32 nn op", op.op_type()),
    }
}

// ---------------------------------------------------------------------------------------------
// shared helpers (also used by the rnn and einsum families)

/// Input `i`, which the op requires.
pub(crate) fn req<'a>(
    inputs: &[Option<&'a Tensor>],
    i: usize,
    what: &str,
) -> Result<&'a Tensor, OpError> {
    match inputs.get(i).copied().flatten() {
        Some(t) => Ok(t),
        None => bail!("required input {i} ({what}) is missing"),
    }
}

/// Optional input `i` (absent when not given or out of range).
pub(crate) fn opt<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    inputs.get(i).copied().flatten()
}

/// Optional input `i`, treating an empty tensor as absent (Resize's roi/scales/sizes convention).
pub(crate) fn opt_nonempty<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    opt(inputs, i).filter(|t| !t.is_empty())
}

/// The elements of an f32 tensor, contiguous in row-major order (borrowed when already so).
pub(crate) fn f32_data(t: &Tensor) -> Result<Cow<'_, [f32]>, OpError> {
    let a = t.view::<f32>()?;
    Ok(match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    })
}

/// An f32 tensor from a shape and data.
pub(crate) fn f32_tensor(shape: &[usize], data: Vec<f32>) -> Result<Tensor, OpError> {
    Ok(Tensor::from_vec(shape, data)?)
}

/// Converts a kernel error into an op error.
pub(crate) fn kerr(e: qtool_kernels::KernelError) -> OpError {
    OpError(e.to_string())
}

/// Element count of a shape, or an error on overflow.
pub(crate) fn numel(shape: &[usize]) -> Result<usize, OpError> {
    match qtool_tensor::checked_numel(shape) {
        Some(n) => Ok(n),
        None => bail!("element count of shape {shape:?} overflows"),
    }
}

/// Normalizes a possibly negative axis against `rank`.
pub(crate) fn norm_axis(axis: i64, rank: usize, what: &str) -> Result<usize, OpError> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        bail!("{what} {axis} is out of range for rank {rank}");
    }
    Ok(if axis < 0 {
        (axis + r) as usize
    } else {
        axis as usize
    })
}

/// Wraps an array into the tensor variant of its element type.
pub(crate) fn wrap<T: Element>(a: ndarray::ArrayD<T>) -> Tensor {
    T::wrap(a)
}

/// Converts a float tensor (f64, f16, bf16) to f32.
pub(crate) fn to_f32(t: &Tensor) -> Result<Tensor, OpError> {
    let v: Vec<f32> = match t {
        Tensor::F32(a) => a.iter().copied().collect(),
        Tensor::F64(a) => a.iter().map(|&v| v as f32).collect(),
        Tensor::F16(a) => a.iter().map(|v| v.to_f32()).collect(),
        Tensor::BF16(a) => a.iter().map(|v| v.to_f32()).collect(),
        _ => bail!("expected a float tensor, got {}", t.dtype()),
    };
    f32_tensor(t.shape(), v)
}

/// Converts an f32 tensor to the float type `to` (f32, f64, f16, bf16).
pub(crate) fn from_f32(t: Tensor, to: DType) -> Result<Tensor, OpError> {
    let a = t.into_array::<f32>()?;
    Ok(match to {
        DType::F32 => Tensor::F32(a),
        DType::F64 => Tensor::F64(a.mapv(|v| v as f64)),
        DType::F16 => Tensor::F16(a.mapv(f16::from_f32)),
        DType::BF16 => Tensor::BF16(a.mapv(bf16::from_f32)),
        _ => bail!("cannot convert f32 results to {to}"),
    })
}

/// The signature of an op implementation.
pub(crate) type OpFn = fn(&Op, &OpCtx, &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError>;

/// Runs an f32 implementation on an input whose first tensor may be f64, f16 or bf16: inputs of that
/// same type are converted to f32, and the f32 outputs with index below `convert_outputs_below` are
/// converted back. Any other input type runs `f` directly (which rejects what it does not support).
pub(crate) fn via_f32(
    op: &Op,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
    convert_outputs_below: usize,
    f: OpFn,
) -> Result<Vec<Tensor>, OpError> {
    let Some(first) = inputs.first().copied().flatten() else {
        return f(op, cx, inputs);
    };
    let d = first.dtype();
    if !matches!(d, DType::F64 | DType::F16 | DType::BF16) {
        if d != DType::F32 {
            bail!("{} does not support element type {d}", op.op_type());
        }
        return f(op, cx, inputs);
    }
    let converted: Vec<Option<Tensor>> = inputs
        .iter()
        .map(|t| match t {
            Some(t) if t.dtype() == d => to_f32(t).map(Some),
            _ => Ok(None),
        })
        .collect::<Result<_, _>>()?;
    let refs: Vec<Option<&Tensor>> = inputs
        .iter()
        .zip(&converted)
        .map(|(o, c)| c.as_ref().or(*o))
        .collect();
    let outs = f(op, cx, &refs)?;
    outs.into_iter()
        .enumerate()
        .map(|(i, t)| {
            if t.dtype() == DType::F32 && i < convert_outputs_below {
                from_f32(t, d)
            } else {
                Ok(t)
            }
        })
        .collect()
}

/// MaxPool / GlobalMaxPool on int8 or uint8 (exact through f32): the values come back in the input
/// type, Indices stay int64.
fn int8_via_f32(op: &Op, cx: &OpCtx, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0, "X")?;
    let x32 = f32_tensor(
        x.shape(),
        x.to_f64_vec()
            .unwrap_or_default()
            .into_iter()
            .map(|v| v as f32)
            .collect(),
    )?;
    let mut refs = inputs.to_vec();
    refs[0] = Some(&x32);
    let mut outs = eval_f32(op, cx, &refs)?;
    let y = outs[0].view::<f32>()?;
    outs[0] = match x.dtype() {
        DType::I8 => Tensor::I8(y.mapv(|v| v as i8)),
        _ => Tensor::U8(y.mapv(|v| v as u8)),
    };
    Ok(outs)
}

/// Reads a per-spatial-axis integer attribute (strides, dilations), `default` when absent.
pub(crate) fn spatial_attr(
    v: &Option<Vec<i64>>,
    nd: usize,
    default: usize,
    what: &str,
) -> Result<Vec<usize>, OpError> {
    match v {
        None => Ok(vec![default; nd]),
        Some(v) if v.is_empty() => Ok(vec![default; nd]),
        Some(v) => {
            if v.len() != nd {
                bail!("{what} {v:?} must have {nd} entries");
            }
            v.iter()
                .map(|&x| {
                    if x >= 1 {
                        Ok(x as usize)
                    } else {
                        Err(OpError(format!("{what} {v:?} must be positive")))
                    }
                })
                .collect()
        }
    }
}

/// Reads an explicit `pads` attribute (`2 * nd` non-negative entries), zeros when absent.
pub(crate) fn pads_attr(v: &Option<Vec<i64>>, nd: usize) -> Result<Vec<usize>, OpError> {
    match v {
        None => Ok(vec![0; 2 * nd]),
        Some(v) if v.is_empty() => Ok(vec![0; 2 * nd]),
        Some(v) => {
            if v.len() != 2 * nd {
                bail!("pads {v:?} must have {} entries", 2 * nd);
            }
            v.iter()
                .map(|&x| {
                    if x >= 0 {
                        Ok(x as usize)
                    } else {
                        Err(OpError(format!("pads {v:?} must be non-negative")))
                    }
                })
                .collect()
        }
    }
}

/// Parses `auto_pad` (absent means NOTSET).
pub(crate) fn auto_pad(v: &Option<String>) -> Result<qtool_kernels::AutoPad, OpError> {
    v.as_deref().unwrap_or("NOTSET").parse().map_err(kerr)
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Shared helpers for the tests of the nn, rnn and einsum families.
    use super::*;

    /// A deterministic PRNG (xorshift64*).
    pub(crate) struct Rng(u64);

    impl Rng {
        pub(crate) fn new(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        pub(crate) fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        /// Uniform in `[lo, hi]`.
        pub(crate) fn range(&mut self, lo: usize, hi: usize) -> usize {
            lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
        }
        /// Uniform in `[-1, 1)`.
        pub(crate) fn f32(&mut self) -> f32 {
            ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
        pub(crate) fn vec(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.f32()).collect()
        }
        pub(crate) fn tensor(&mut self, shape: &[usize]) -> Tensor {
            let n = shape.iter().product();
            Tensor::from_vec(shape, self.vec(n)).unwrap()
        }
    }

    pub(crate) fn cx(opset: i64, n_outputs: usize) -> OpCtx<'static> {
        OpCtx {
            opset,
            n_outputs,
            node: "test",
            threads: 2,
        }
    }

    pub(crate) fn t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape, v.to_vec()).unwrap()
    }

    pub(crate) fn run(
        op: impl Into<Op>,
        opset: i64,
        n_outputs: usize,
        inputs: &[Option<&Tensor>],
    ) -> Vec<Tensor> {
        let op = op.into();
        crate::ops::eval(&op, &cx(opset, n_outputs), inputs)
            .expect("op not handled")
            .expect("op failed")
    }

    pub(crate) fn run_err(op: impl Into<Op>, opset: i64, inputs: &[Option<&Tensor>]) -> String {
        let op = op.into();
        match crate::ops::eval(&op, &cx(opset, 1), inputs).expect("op not handled") {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.0,
        }
    }

    #[track_caller]
    pub(crate) fn assert_close(got: &Tensor, shape: &[usize], want: &[f32], tol: f32) {
        assert_eq!(got.shape(), shape, "shape");
        let g = got.to_f64_vec().unwrap();
        assert_eq!(g.len(), want.len());
        for (i, (&a, &b)) in g.iter().zip(want).enumerate() {
            let (a, b) = (a as f32, b);
            let ok = (a.is_nan() && b.is_nan()) || (a - b).abs() <= tol * (1.0 + b.abs());
            assert!(
                ok,
                "element {i}: got {a}, want {b}\n got {g:?}\nwant {want:?}"
            );
        }
    }
}
