//! Op evaluation: one dispatch point that offers each op to the op-family modules in turn.
//!
//! Contract for every family module: `pub(crate) fn eval(op: &Op, cx: &OpCtx, inputs: &[Option<&Tensor>])
//! -> Option<Result<Vec<Tensor>, OpError>>` returns `None` when the op is not one of its family, else
//! the outputs (as many as the node has output slots, `cx.n_outputs`; trailing optional outputs that
//! the family does not compute may be left off only if the node does not use them).
//! `inputs[i]` is `None` for an absent optional input.

use crate::error::OpError;
use qtool_ir::Op;
use qtool_tensor::Tensor;

mod einsum;
mod elementwise;
mod movement;
mod nn;
mod quant;
mod reduce;
mod rnn;

/// What an op may know about its context.
#[derive(Clone, Copy, Debug)]
pub struct OpCtx<'a> {
    /// The model's opset for the op's domain (semantics change across opsets).
    pub opset: i64,
    /// Number of output slots of the node.
    pub n_outputs: usize,
    /// Node name, for messages.
    pub node: &'a str,
    /// Worker threads available to kernels.
    pub threads: usize,
}

/// Evaluates `op`; `None` when no family implements it.
pub fn eval(
    op: &Op,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
) -> Option<Result<Vec<Tensor>, OpError>> {
    elementwise::eval(op, cx, inputs)
        .or_else(|| movement::eval(op, cx, inputs))
        .or_else(|| reduce::eval(op, cx, inputs))
        .or_else(|| nn::eval(op, cx, inputs))
        .or_else(|| rnn::eval(op, cx, inputs))
        .or_else(|| einsum::eval(op, cx, inputs))
        .or_else(|| quant::eval(op, cx, inputs))
}

/// State an op computes once from its constant inputs when the executor is built (packed int8
/// weights), handed back to [`eval_with`] on every run. Downcast with `as &dyn Any`.
pub trait Prepared: std::any::Any + Send + Sync + std::fmt::Debug {
    /// Whether this state stands in for the constant at input `index`: when run with it, the op
    /// reads nothing of that input, so the executor need not keep the constant tensor.
    fn replaces_input(&self, _index: usize) -> bool {
        false
    }
}

/// What [`prepare`] knows about one input of a node.
#[derive(Clone, Copy, Debug)]
pub enum PrepInput<'a> {
    /// The optional input is not given.
    Absent,
    /// Computed at run time (or a graph input that a caller may override).
    Runtime,
    /// A constant (initializer or folded Constant).
    Const(&'a Tensor),
}

/// Computes the prepared state of `op` from its constant inputs, if the op has any (the int8 ops
/// and f32 Conv with constant weights); `None` otherwise. Failing to prepare is not an error: the
/// node then does all its work (and reports any problem) when it runs.
pub fn prepare(op: &Op, inputs: &[PrepInput<'_>]) -> Option<Box<dyn Prepared>> {
    quant::prepare(op, inputs).or_else(|| nn::prepare(op, inputs))
}

/// An element-wise activation that can run in a producer's output stage, with the same f32 formula
/// as the op itself (see `qtool_kernels::Activation`).
pub use qtool_kernels::Activation;

/// The [`Activation`] that computes `op` (with `inputs` as [`prepare`] sees them) exactly, if it is
/// one: Relu, LeakyRelu, Sigmoid, HardSigmoid, HardSwish, and Clip with constant scalar f32 bounds.
pub fn fusable_activation(op: &Op, opset: i64, inputs: &[PrepInput<'_>]) -> Option<Activation> {
    let bound = |i: usize| -> Option<Option<f32>> {
        match inputs.get(i) {
            None | Some(PrepInput::Absent) => Some(None),
            Some(PrepInput::Runtime) => None,
            Some(PrepInput::Const(t)) => {
                let v = t.view::<f32>().ok()?;
                (v.len() == 1).then(|| v.iter().next().copied())
            }
        }
    };
    Some(match op {
        Op::Relu(_) => Activation::Relu,
        Op::LeakyRelu(o) => Activation::LeakyRelu(o.alpha.unwrap_or(0.01)),
        Op::Sigmoid(_) => Activation::Sigmoid,
        Op::HardSigmoid(o) => {
            Activation::HardSigmoid(o.alpha.unwrap_or(0.2), o.beta.unwrap_or(0.5))
        }
        Op::HardSwish(_) => Activation::HardSwish,
        Op::Clip(o) if opset < 11 => {
            let (lo, hi) = (o.min.unwrap_or(f32::MIN), o.max.unwrap_or(f32::MAX));
            // Before opset 11, min > max gives min; the fused order gives max.
            if lo > hi {
                return None;
            }
            Activation::Clip(Some(lo), Some(hi))
        }
        Op::Clip(_) => Activation::Clip(bound(1)?, bound(2)?),
        _ => return None,
    })
}

/// Whether `op` can take a following [`Activation`] into its output stage ([`eval_fused`]).
pub fn can_fuse_activation(op: &Op) -> bool {
    nn::can_fuse(op)
}

/// Evaluates `op` (one of [`can_fuse_activation`]) followed by `act`, in one pass; `None` when this
/// input has no fused path, and the caller runs the two ops separately.
pub fn eval_fused(
    op: &Op,
    inputs: &[Option<&Tensor>],
    prepared: Option<&dyn Prepared>,
    act: Activation,
) -> Option<Result<Vec<Tensor>, OpError>> {
    nn::eval_fused(op, inputs, prepared, act)
}

/// [`eval`] with the state [`prepare`] made for this node (if any).
pub fn eval_with(
    op: &Op,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
    prepared: Option<&dyn Prepared>,
) -> Option<Result<Vec<Tensor>, OpError>> {
    match prepared {
        Some(p) => quant::eval_with(op, cx, inputs, Some(p))
            .or_else(|| nn::eval_fused(op, inputs, Some(p), Activation::Identity))
            .or_else(|| eval(op, cx, inputs)),
        None => eval(op, cx, inputs),
    }
}

/// True when some op family implements `op` (for the executor's up-front check). Keep in step with
/// the families' `eval` matches; the nn/rnn/einsum variants are listed here for their modules.
pub fn is_supported(op: &Op) -> bool {
    use Op::*;
    matches!(
        op,
        // elementwise
        Relu(_) | LeakyRelu(_) | PRelu(_) | Elu(_) | Selu(_) | Gelu(_) | Clip(_) | Sigmoid(_) | HardSigmoid(_)
            | HardSwish(_) | Softplus(_) | Tanh(_) | Erf(_) | Exp(_) | Log(_) | Sqrt(_) | Pow(_) | Reciprocal(_)
            | Neg(_) | Abs(_) | Floor(_) | Ceil(_) | Round(_) | Sign(_) | Sin(_) | Cos(_) | Softmax(_)
            | LogSoftmax(_) | Add(_) | Sub(_) | Mul(_) | Div(_) | Mod(_) | Max(_) | Min(_) | Sum(_) | Mean(_)
            | Equal(_) | Less(_) | LessOrEqual(_) | Greater(_) | GreaterOrEqual(_) | Not(_) | And(_) | Or(_)
            | Xor(_) | Where(_) | IsNaN(_) | IsInf(_) | Cast(_) | CastLike(_) | Identity(_) | Dropout(_)
            // movement
            | Concat(_) | Split(_) | Slice(_) | Reshape(_) | Transpose(_) | Squeeze(_) | Unsqueeze(_)
            | Flatten(_) | Expand(_) | Tile(_) | Pad(_) | Gather(_) | GatherElements(_) | GatherND(_)
            | ScatterND(_) | ScatterElements(_) | Shape(_) | Size(_) | Constant(_) | ConstantOfShape(_)
            | Range(_) | NonZero(_) | OneHot(_) | Trilu(_)
            // reduce
            | ReduceMean(_) | ReduceSum(_) | ReduceMax(_) | ReduceMin(_) | ReduceProd(_) | ReduceL1(_)
            | ReduceL2(_) | ReduceSumSquare(_) | ReduceLogSumExp(_) | ArgMax(_) | ArgMin(_) | TopK(_)
            | CumSum(_)
            // nn (ops/nn), rnn (ops/rnn.rs), einsum (ops/einsum.rs)
            | Conv(_) | ConvTranspose(_) | Gemm(_) | MatMul(_) | BatchNormalization(_)
            | InstanceNormalization(_) | LayerNormalization(_) | GroupNormalization(_) | Lrn(_) | MaxPool(_)
            | AveragePool(_) | GlobalAveragePool(_) | GlobalMaxPool(_) | Resize(_) | Upsample(_)
            | DepthToSpace(_) | SpaceToDepth(_) | Lstm(_) | Gru(_) | Einsum(_)
            // quant (ops/quant)
            | QuantizeLinear(_) | DequantizeLinear(_) | DynamicQuantizeLinear(_) | QLinearConv(_)
            | ConvInteger(_) | MatMulInteger(_) | QLinearMatMul(_) | QGemm(_) | DynamicQuantizeMatMul(_)
            | MatMulIntegerToFloat(_) | QLinearAdd(_) | QLinearMul(_) | QLinearSigmoid(_)
            | QLinearLeakyRelu(_) | QLinearGlobalAveragePool(_) | QLinearAveragePool(_) | QLinearConcat(_)
            | QLinearSoftmax(_)
    )
}
