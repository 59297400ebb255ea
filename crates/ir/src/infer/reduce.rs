//! Reductions: Reduce* with axes as attribute (before opset 13 for ReduceSum, 18 for the others) or
//! input, keepdims and noop_with_empty_axes; ArgMax/ArgMin (int64); TopK with k as attribute (before
//! opset 10) or input. Sum/Prod/Max/Min/Mean fold on known values.

use super::dims::{self, k};
use super::value::{KData, KVal, strides, unravel};
use super::{Cx, Out, R, fact};
use crate::ops::{self, Op};
use crate::types::{DimValue, Fact};
use qtool_tensor::DType;

fn fold(op: &Op, v: &KVal, axes: &[usize], keep: bool) -> Option<KVal> {
    let r = v.shape.len();
    let out_keep: Vec<usize> = v
        .shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect();
    let n_out: usize = out_keep.iter().product();
    let ost = strides(&out_keep);
    let mut groups: Vec<Vec<f64>> = vec![Vec::new(); n_out];
    let data = v.f64s();
    let mut idx = vec![0; r];
    for (flat, &x) in data.iter().enumerate() {
        unravel(flat, &v.shape, &mut idx);
        let o: usize = (0..r)
            .map(|i| {
                if axes.contains(&i) {
                    0
                } else {
                    idx[i] * ost[i]
                }
            })
            .sum();
        groups[o].push(x);
    }
    let vals: Option<Vec<f64>> = groups
        .iter()
        .map(|g| match op {
            Op::ReduceSum(_) => Some(g.iter().sum()),
            Op::ReduceProd(_) => Some(g.iter().product()),
            Op::ReduceMax(_) => g.iter().copied().reduce(f64::max),
            Op::ReduceMin(_) => g.iter().copied().reduce(f64::min),
            Op::ReduceMean(_) if !g.is_empty() => {
                let s: f64 = g.iter().sum();
                Some(if v.is_float() {
                    s / g.len() as f64
                } else {
                    (s / g.len() as f64).trunc()
                })
            }
            _ => None,
        })
        .collect();
    let shape = if keep {
        out_keep
    } else {
        v.shape
            .iter()
            .enumerate()
            .filter(|(i, _)| !axes.contains(i))
            .map(|(_, &d)| d)
            .collect()
    };
    KVal::new(v.dtype, shape, KData::F(vals?))
}

/// Reduce* ops. `attr_axes` is the attribute form; the input form (input 1) is used when present.
pub(crate) fn reduce(
    cx: &Cx,
    attr_axes: Option<&[i64]>,
    keepdims: Option<i64>,
    noop: Option<i64>,
    _input_since: i64,
) -> R {
    let x = cx.fact(0);
    let keep = keepdims.unwrap_or(1) != 0;
    let noop = noop.unwrap_or(0) != 0;
    enum Axes {
        Unknown,
        All,
        List(Vec<i64>),
    }
    let axes = match attr_axes {
        Some(a) => Axes::List(a.to_vec()),
        None if cx.present(1) => cx.ints(1).map(Axes::List).unwrap_or(Axes::Unknown),
        None => Axes::All,
    };
    let Some(shape) = &x.shape else {
        return Ok(Out::one(fact(x.dtype, None)));
    };
    let r = shape.len();
    let axes: Vec<usize> = match axes {
        Axes::Unknown => {
            let s = if keep {
                Some(dims::unknown_dims(r))
            } else {
                None
            };
            return Ok(Out::one(fact(x.dtype, s))
                .because(format!("the axes input '{}' is not known", cx.name(1))));
        }
        Axes::List(a) if !a.is_empty() => dims::axes(&a, r)?,
        _ if noop => return Ok(Out::one(x.clone()).with_val(cx.val(0).cloned())),
        _ => (0..r).collect(),
    };
    let out: Vec<DimValue> = if keep {
        shape
            .iter()
            .enumerate()
            .map(|(i, d)| if axes.contains(&i) { k(1) } else { d.clone() })
            .collect()
    } else {
        shape
            .iter()
            .enumerate()
            .filter(|(i, _)| !axes.contains(i))
            .map(|(_, d)| d.clone())
            .collect()
    };
    let val = cx.val(0).and_then(|v| fold(cx.node.op(), v, &axes, keep));
    Ok(Out::one(fact(x.dtype, Some(out))).with_val(val))
}

/// ArgMax / ArgMin: int64 indices.
pub(crate) fn arg(cx: &Cx, axis: Option<i64>, keepdims: Option<i64>) -> R {
    let keep = keepdims.unwrap_or(1) != 0;
    let shape = match cx.shape(0) {
        Some(s) => {
            let a = dims::axis(axis.unwrap_or(0), s.len())?;
            Some(if keep {
                s.iter()
                    .enumerate()
                    .map(|(i, d)| if i == a { k(1) } else { d.clone() })
                    .collect()
            } else {
                s.iter()
                    .enumerate()
                    .filter(|(i, _)| *i != a)
                    .map(|(_, d)| d.clone())
                    .collect()
            })
        }
        None => None,
    };
    Ok(Out::one(fact(Some(DType::I64), shape)))
}

pub(crate) fn topk(cx: &Cx, o: &ops::TopK) -> R {
    let kk: Option<i64> = match o.k {
        Some(v) => Some(v),
        None => cx.ints(1).and_then(|v| v.first().copied()),
    };
    let mut reason = None;
    let shape = match cx.shape(0) {
        Some(s) => {
            let a = dims::axis(o.axis.unwrap_or(-1), s.len())?;
            if let (Some(kk), Some(d)) = (kk, dims::kv(&s[a]))
                && (kk < 0 || kk > d)
            {
                return Err(format!("k = {kk} is out of range for axis {a} of size {d}"));
            }
            if kk.is_none() {
                reason = Some(format!("k ('{}') is not known", cx.name(1)));
            }
            let mut out = s.to_vec();
            out[a] = kk.map(k).unwrap_or(DimValue::Unknown);
            Some(out)
        }
        None => None,
    };
    let mut out = Out::many(vec![
        fact(cx.dtype(0), shape.clone()),
        Fact {
            dtype: Some(DType::I64),
            shape,
        },
    ]);
    out.reason = reason;
    Ok(out)
}
