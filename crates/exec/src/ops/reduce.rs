//! Reductions: ReduceMean/Sum/Max/Min/Prod/L1/L2/SumSquare/LogSumExp, ArgMax/ArgMin, TopK, CumSum.
//!
//! Float reductions accumulate in f64 (at least as accurate as ONNX Runtime's vectorised f32 sums);
//! integer reductions wrap like C++. TopK breaks ties by the lower index, as ONNX Runtime does.

use super::OpCtx;
use crate::error::OpError;
use crate::util::{Num, arr, bad_type, int_scalar, ints, norm_axes, norm_axis, opt, req, wrap};
use crate::{bail, num_dispatch};
use ndarray::{ArrayD, IxDyn};
use qtool_ir::Op;
use qtool_tensor::Tensor;
use rayon::prelude::*;

type R = Result<Vec<Tensor>, OpError>;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Mean,
    Sum,
    Max,
    Min,
    Prod,
    L1,
    L2,
    SumSquare,
    LogSumExp,
}

pub(crate) fn eval(op: &Op, cx: &OpCtx, inputs: &[Option<&Tensor>]) -> Option<R> {
    macro_rules! red {
        ($o:expr, $kind:expr, $input_from:expr) => {
            reduce_op(
                $o.axes.as_deref(),
                $o.keepdims,
                $o.noop_with_empty_axes,
                cx.opset >= $input_from,
                $kind,
                inputs,
            )
        };
    }
    let r = match op {
        Op::ReduceMean(o) => red!(o, Kind::Mean, 18),
        Op::ReduceSum(o) => red!(o, Kind::Sum, 13),
        Op::ReduceMax(o) => red!(o, Kind::Max, 18),
        Op::ReduceMin(o) => red!(o, Kind::Min, 18),
        Op::ReduceProd(o) => red!(o, Kind::Prod, 18),
        Op::ReduceL1(o) => red!(o, Kind::L1, 18),
        Op::ReduceL2(o) => red!(o, Kind::L2, 18),
        Op::ReduceSumSquare(o) => red!(o, Kind::SumSquare, 18),
        Op::ReduceLogSumExp(o) => red!(o, Kind::LogSumExp, 18),
        Op::ArgMax(o) => arg(o.axis, o.keepdims, o.select_last_index, true, inputs),
        Op::ArgMin(o) => arg(o.axis, o.keepdims, o.select_last_index, false, inputs),
        Op::TopK(o) => return Some(topk(o, cx, inputs)),
        Op::CumSum(o) => cumsum(
            o.exclusive.unwrap_or(0) != 0,
            o.reverse.unwrap_or(0) != 0,
            inputs,
        ),
        _ => return None,
    };
    Some(r.map(|t| vec![t]))
}

/// Moves `axes` to the end (keeping the order of the others) and returns the array in standard
/// layout with the row length (product of the moved dims) and the kept dims.
fn rows_last<T: Clone>(a: &ArrayD<T>, axes: &[usize]) -> (Vec<T>, usize, Vec<usize>) {
    let r = a.ndim();
    let kept: Vec<usize> = (0..r).filter(|i| !axes.contains(i)).collect();
    let mut sorted_axes = axes.to_vec();
    sorted_axes.sort_unstable();
    let order: Vec<usize> = kept.iter().chain(&sorted_axes).copied().collect();
    let p = a.view().permuted_axes(IxDyn(&order));
    let v: Vec<T> = match p.as_slice() {
        Some(s) => s.to_vec(),
        None => p.iter().cloned().collect(),
    };
    let n: usize = axes.iter().map(|&i| a.shape()[i]).product();
    (v, n, kept.iter().map(|&i| a.shape()[i]).collect())
}

fn reduce_row<T: Num>(xs: &[T], kind: Kind) -> T {
    let n = xs.len();
    if T::IS_FLOAT {
        let f = || xs.iter().map(|v| v.to_f64());
        let r = match kind {
            Kind::Sum => f().sum::<f64>(),
            Kind::Mean => f().sum::<f64>() / n as f64,
            Kind::Max => {
                return xs
                    .iter()
                    .copied()
                    .reduce(|a, b| a.max_nan(b))
                    .unwrap_or(T::from_f64(f64::NEG_INFINITY));
            }
            Kind::Min => {
                return xs
                    .iter()
                    .copied()
                    .reduce(|a, b| a.min_nan(b))
                    .unwrap_or(T::from_f64(f64::INFINITY));
            }
            Kind::Prod => f().product::<f64>(),
            Kind::L1 => f().map(f64::abs).sum::<f64>(),
            Kind::L2 => f().map(|v| v * v).sum::<f64>().sqrt(),
            Kind::SumSquare => f().map(|v| v * v).sum::<f64>(),
            Kind::LogSumExp => {
                let m = f().fold(f64::NEG_INFINITY, f64::max);
                if m.is_infinite() {
                    f().map(f64::exp).sum::<f64>().ln()
                } else {
                    m + f().map(|v| (v - m).exp()).sum::<f64>().ln()
                }
            }
        };
        T::from_f64(r)
    } else {
        let sum = |g: &dyn Fn(T) -> T| xs.iter().fold(T::zero(), |a, &b| a.add(g(b)));
        match kind {
            Kind::Sum => sum(&|v| v),
            Kind::Mean => sum(&|v| v).div(T::from_f64(n as f64)).unwrap_or(T::zero()),
            Kind::Max => xs
                .iter()
                .copied()
                .reduce(|a, b| a.max_nan(b))
                .unwrap_or(T::from_f64(f64::NEG_INFINITY)),
            Kind::Min => xs
                .iter()
                .copied()
                .reduce(|a, b| a.min_nan(b))
                .unwrap_or(T::from_f64(f64::INFINITY)),
            Kind::Prod => xs.iter().fold(T::one(), |a, &b| a.mul(b)),
            Kind::L1 => sum(&|v| v.abs()),
            Kind::L2 => T::from_f64(
                xs.iter()
                    .map(|v| v.to_f64() * v.to_f64())
                    .sum::<f64>()
                    .sqrt(),
            ),
            Kind::SumSquare => sum(&|v| v.mul(v)),
            Kind::LogSumExp => T::from_f64(xs.iter().map(|v| v.to_f64().exp()).sum::<f64>().ln()),
        }
    }
}

fn reduce_t<T: Num>(a: &ArrayD<T>, axes: &[usize], keepdims: bool, kind: Kind) -> Tensor {
    let (v, n, kept) = rows_last(a, axes);
    let rows = kept.iter().product::<usize>();
    let out: Vec<T> = if n == 0 {
        (0..rows).map(|_| reduce_row::<T>(&[], kind)).collect()
    } else if v.len() >= crate::util::PAR_THRESHOLD {
        v.par_chunks(n).map(|c| reduce_row(c, kind)).collect()
    } else {
        v.chunks(n).map(|c| reduce_row(c, kind)).collect()
    };
    let shape: Vec<usize> = if keepdims {
        a.shape()
            .iter()
            .enumerate()
            .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
            .collect()
    } else {
        kept
    };
    wrap(arr(&shape, out))
}

fn reduce_op(
    attr_axes: Option<&[i64]>,
    keepdims: Option<i64>,
    noop: Option<i64>,
    axes_from_input: bool,
    kind: Kind,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "data")?;
    let axes: Vec<i64> = if axes_from_input {
        opt(inputs, 1)
            .map(|t| ints(t, "axes"))
            .transpose()?
            .unwrap_or_default()
    } else {
        attr_axes.map(|a| a.to_vec()).unwrap_or_default()
    };
    let name = format!("Reduce{kind:?}");
    if axes.is_empty() && noop.unwrap_or(0) != 0 {
        return Ok(x.clone());
    }
    let axes = if axes.is_empty() {
        (0..x.rank()).collect()
    } else {
        norm_axes(&axes, x.rank())?
    };
    let keep = keepdims.unwrap_or(1) != 0;
    if let (Tensor::Bool(a), Kind::Max | Kind::Min) = (x, kind) {
        // Opset 20: max is "any", min is "all" (via u8: empty max is false, empty min true).
        let r = reduce_t(&a.mapv(u8::from), &axes, keep, kind);
        let Tensor::U8(r) = r else {
            unreachable!("u8 in, u8 out")
        };
        return Ok(Tensor::Bool(r.mapv(|v| v != 0)));
    }
    num_dispatch!(x, a => Ok(reduce_t(a, &axes, keep, kind)), Err(bad_type(&name, x)))
}

fn arg(
    axis: Option<i64>,
    keepdims: Option<i64>,
    last: Option<i64>,
    max: bool,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "data")?;
    let ax = norm_axis(axis.unwrap_or(0), x.rank())?;
    let keep = keepdims.unwrap_or(1) != 0;
    let last = last.unwrap_or(0) != 0;
    fn go<T: Num>(
        a: &ArrayD<T>,
        ax: usize,
        keep: bool,
        last: bool,
        max: bool,
    ) -> Result<Tensor, OpError> {
        let (v, n, kept) = rows_last(a, &[ax]);
        if n == 0 {
            bail!(
                "{}: cannot reduce an empty axis",
                if max { "ArgMax" } else { "ArgMin" }
            );
        }
        let out: Vec<i64> = v
            .chunks(n)
            .map(|c| {
                let mut best = 0;
                for i in 1..n {
                    let better = if max { c[i] > c[best] } else { c[i] < c[best] };
                    if better || (last && c[i] == c[best]) {
                        best = i;
                    }
                }
                best as i64
            })
            .collect();
        let mut shape = kept;
        if keep {
            shape.insert(ax, 1);
        }
        Ok(wrap(arr(&shape, out)))
    }
    num_dispatch!(x, a => go(a, ax, keep, last, max), Err(bad_type(if max { "ArgMax" } else { "ArgMin" }, x)))
}

fn topk(o: &qtool_ir::ops::TopK, cx: &OpCtx, inputs: &[Option<&Tensor>]) -> R {
    let x = req(inputs, 0, "X")?;
    let k = if cx.opset < 10 {
        o.k.ok_or_else(|| OpError("TopK needs the 'k' attribute".into()))?
    } else {
        int_scalar(req(inputs, 1, "K")?, "K")?
    };
    let ax = norm_axis(o.axis.unwrap_or(-1), x.rank())?;
    let largest = o.largest.unwrap_or(1) != 0;
    if k < 0 || k as usize > x.shape()[ax] {
        bail!(
            "TopK: k = {k} is out of range for axis {ax} of {:?}",
            x.shape()
        );
    }
    fn go<T: Num>(a: &ArrayD<T>, ax: usize, k: usize, largest: bool) -> Vec<Tensor> {
        let (v, n, _) = rows_last(a, &[ax]);
        let rows = v.len().checked_div(n).unwrap_or(0);
        let cmp = |x: &T, y: &T| match (x.is_nan(), y.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal),
        };
        let (mut vals, mut idxs) = (Vec::with_capacity(rows * k), Vec::with_capacity(rows * k));
        let mut order: Vec<usize> = Vec::with_capacity(n);
        for r in 0..rows {
            let c = &v[r * n..(r + 1) * n];
            order.clear();
            order.extend(0..n);
            order.sort_by(|&i, &j| {
                let o = if largest {
                    cmp(&c[j], &c[i])
                } else {
                    cmp(&c[i], &c[j])
                };
                o.then(i.cmp(&j))
            });
            for &i in &order[..k] {
                vals.push(c[i]);
                idxs.push(i as i64);
            }
        }
        // Shape with the axis moved last, then moved back.
        let r = a.ndim();
        let mut moved: Vec<usize> = (0..r).filter(|&i| i != ax).map(|i| a.shape()[i]).collect();
        moved.push(k);
        let mut back: Vec<usize> = (0..r - 1).collect();
        back.insert(ax, r - 1);
        let vals = arr(&moved, vals).permuted_axes(IxDyn(&back));
        let idxs = arr(&moved, idxs).permuted_axes(IxDyn(&back));
        vec![wrap(vals), wrap(idxs)]
    }
    num_dispatch!(x, a => Ok(go(a, ax, k as usize, largest)), Err(bad_type("TopK", x)))
}

fn cumsum(exclusive: bool, reverse: bool, inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "x")?;
    let ax = norm_axis(int_scalar(req(inputs, 1, "axis")?, "axis")?, x.rank())?;
    fn go<T: Num>(a: &ArrayD<T>, ax: usize, exclusive: bool, reverse: bool) -> Tensor {
        let src = crate::util::elems(a);
        let shape = a.shape();
        let n = shape[ax];
        let inner: usize = shape[ax + 1..].iter().product();
        let outer: usize = shape[..ax].iter().product();
        let mut out = vec![T::zero(); src.len()];
        for o in 0..outer {
            for i in 0..inner {
                let mut acc = T::zero();
                for s in 0..n {
                    let k = if reverse { n - 1 - s } else { s };
                    let p = (o * n + k) * inner + i;
                    if exclusive {
                        out[p] = acc;
                        acc = acc.add(src[p]);
                    } else {
                        acc = acc.add(src[p]);
                        out[p] = acc;
                    }
                }
            }
        }
        wrap(arr(shape, out))
    }
    num_dispatch!(x, a => Ok(go(a, ax, exclusive, reverse)), Err(bad_type("CumSum", x)))
}
