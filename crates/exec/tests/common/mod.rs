//! Shared helpers of the executor's integration tests.
#![allow(dead_code)]

use qtool_exec::{OpCtx, eval};
use qtool_ir::Op;
use qtool_tensor::{Element, Tensor};

/// A tensor from a shape and data.
pub fn t<T: Element>(shape: &[usize], v: Vec<T>) -> Tensor {
    Tensor::from_vec(shape, v).unwrap()
}

/// A 1-D tensor.
pub fn v<T: Element>(v: Vec<T>) -> Tensor {
    Tensor::from_vec(&[v.len()], v).unwrap()
}

/// Evaluates `op` at `opset` with `n_out` outputs; panics on errors.
pub fn run_n(
    op: impl Into<Op>,
    opset: i64,
    inputs: &[Option<&Tensor>],
    n_out: usize,
) -> Vec<Tensor> {
    try_run_n(op, opset, inputs, n_out).unwrap_or_else(|e| panic!("{e}"))
}

pub fn try_run_n(
    op: impl Into<Op>,
    opset: i64,
    inputs: &[Option<&Tensor>],
    n_out: usize,
) -> Result<Vec<Tensor>, String> {
    let op = op.into();
    let cx = OpCtx {
        opset,
        n_outputs: n_out,
        node: "test",
        threads: 1,
    };
    eval(&op, &cx, inputs)
        .expect("op not handled")
        .map_err(|e| e.to_string())
}

/// Evaluates a one-output op on present inputs.
pub fn run(op: impl Into<Op>, opset: i64, inputs: &[&Tensor]) -> Tensor {
    let ins: Vec<Option<&Tensor>> = inputs.iter().map(|t| Some(*t)).collect();
    run_n(op, opset, &ins, 1).remove(0)
}

pub fn try_run(op: impl Into<Op>, opset: i64, inputs: &[&Tensor]) -> Result<Tensor, String> {
    let ins: Vec<Option<&Tensor>> = inputs.iter().map(|t| Some(*t)).collect();
    try_run_n(op, opset, &ins, 1).map(|mut v| v.remove(0))
}

/// f32 contents.
pub fn f(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

/// Asserts closeness (rtol 1e-5, atol 1e-6), NaN equal to NaN.
pub fn close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        let ok = (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-6 + 1e-5 * w.abs() || g == w;
        assert!(ok, "{got:?} vs {want:?}");
    }
}
