//! Element-wise ops: unary activations and math (same shape), numpy-broadcast binary and variadic
//! ops, comparisons and logic (bool), Where, Clip, PRelu, Cast/CastLike, Dropout, with folding of
//! known values for the integer/float arithmetic shape subgraphs use.

use super::dims::{self, Shape};
use super::value::{KVal, zip_f, zip_i};
use super::{Cx, Out, R, dtype_attr, fact};
use crate::ops::{self, Op};
use crate::types::{DimValue, Fact};
use qtool_tensor::DType;

/// Output 0 has the fact of input 0.
pub(crate) fn same(cx: &Cx) -> R {
    Ok(Out::one(cx.fact(0)))
}

fn unary_fold(op: &Op, v: &KVal) -> Option<KVal> {
    let d = v.dtype;
    if v.is_float() {
        let f: fn(f64) -> f64 = match op {
            Op::Neg(_) => |x| -x,
            Op::Abs(_) => f64::abs,
            Op::Identity(_) => |x| x,
            Op::Floor(_) => f64::floor,
            Op::Ceil(_) => f64::ceil,
            Op::Round(_) => f64::round_ties_even,
            Op::Sqrt(_) => f64::sqrt,
            Op::Sign(_) => |x| {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            },
            Op::Relu(_) => |x| x.max(0.0),
            Op::Reciprocal(_) => |x| 1.0 / x,
            Op::Exp(_) => f64::exp,
            Op::Log(_) => f64::ln,
            _ => return None,
        };
        zip_f(&[v], d, |a| f(a[0]))
    } else {
        let f: fn(i64) -> i64 = match op {
            Op::Neg(_) => |x| x.wrapping_neg(),
            Op::Abs(_) => i64::wrapping_abs,
            Op::Identity(_) | Op::Floor(_) | Op::Ceil(_) | Op::Round(_) => |x| x,
            Op::Sign(_) => i64::signum,
            Op::Relu(_) => |x| x.max(0),
            Op::Not(_) => |x| (x == 0) as i64,
            _ => return None,
        };
        zip_i(&[v], d, |a| Some(f(a[0])))
    }
}

/// Unary math and activations: same dtype and shape; folds simple math on known values.
pub(crate) fn unary(cx: &Cx) -> R {
    let out = Out::one(cx.fact(0));
    if matches!(cx.node.op(), Op::Identity(_)) {
        return Ok(out.with_val(cx.val(0).cloned()).with_sym(cx.sym(0)));
    }
    Ok(out.with_val(cx.val(0).and_then(|v| unary_fold(cx.node.op(), v))))
}

/// Softmax / LogSoftmax: same fact; the axis must exist.
pub(crate) fn softmax(cx: &Cx, axis: Option<i64>) -> R {
    if let (Some(a), Some(r)) = (axis, cx.rank(0))
        && r > 0
    {
        dims::axis(a, r)?;
    }
    same(cx)
}

/// IsNaN / IsInf: bool of the input's shape.
pub(crate) fn to_bool(cx: &Cx) -> R {
    Ok(Out::one(fact(Some(DType::Bool), cx.fact(0).shape)))
}

/// Clip: same fact (min/max from attributes before opset 11, inputs after).
pub(crate) fn clip(cx: &Cx) -> R {
    let Op::Clip(c) = cx.node.op() else {
        unreachable!("dispatched on Clip")
    };
    let lo = c.min.map(|x| x as f64).or_else(|| {
        if cx.has(1) {
            cx.floats(1).and_then(|v| v.first().copied())
        } else {
            Some(f64::NEG_INFINITY)
        }
    });
    let hi = c.max.map(|x| x as f64).or_else(|| {
        if cx.has(2) {
            cx.floats(2).and_then(|v| v.first().copied())
        } else {
            Some(f64::INFINITY)
        }
    });
    let val = match (cx.val(0), lo, hi) {
        (Some(v), Some(lo), Some(hi)) => zip_f(&[v], v.dtype, |a| a[0].max(lo).min(hi)),
        _ => None,
    };
    Ok(Out::one(cx.fact(0)).with_val(val))
}

/// PRelu: the slope broadcasts (unidirectionally) to the input.
pub(crate) fn prelu(cx: &Cx) -> R {
    let shape = match (cx.shape(0), cx.shape(1)) {
        (Some(x), Some(s)) => {
            let b = dims::broadcast(x, s)?;
            if b.len() != x.len() || b.iter().zip(x).any(|(a, c)| !dims::compatible(a, c)) {
                return Err(format!(
                    "slope shape {} does not broadcast to input shape {}",
                    dims::fmt_dims(s),
                    dims::fmt_dims(x)
                ));
            }
            Some(x.to_vec())
        }
        (x, _) => x.map(|s| s.to_vec()),
    };
    Ok(Out::one(fact(cx.dtype(0), shape)))
}

fn check_same_dtype(cx: &Cx, inputs: &[usize]) -> Result<Option<DType>, String> {
    let mut seen: Option<(DType, usize)> = None;
    for &i in inputs {
        if let Some(d) = cx.dtype(i) {
            match seen {
                Some((s, j)) if s != d => {
                    return Err(format!(
                        "input '{}' is {} but input '{}' is {}",
                        cx.name(j),
                        s.onnx_name(),
                        cx.name(i),
                        d.onnx_name()
                    ));
                }
                None => seen = Some((d, i)),
                _ => {}
            }
        }
    }
    Ok(seen.map(|(d, _)| d))
}

fn bshape(cx: &Cx, inputs: &[usize]) -> Result<Option<Shape>, String> {
    let shapes: Vec<Option<&[DimValue]>> = inputs.iter().map(|&i| cx.shape(i)).collect();
    dims::broadcast_all(&shapes)
}

fn sym_binary(op: &Op, a: &[DimValue], b: &[DimValue]) -> Option<Vec<DimValue>> {
    if a.len() != b.len() && a.len() != 1 && b.len() != 1 {
        return None;
    }
    let n = a.len().max(b.len());
    let get = |s: &[DimValue], i: usize| {
        if s.len() == 1 {
            s[0].clone()
        } else {
            s[i].clone()
        }
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (x, y) = (get(a, i), get(b, i));
        out.push(match op {
            Op::Mul(_) => dims::mul(&x, &y),
            Op::Add(_) => dims::add(&x, &y),
            Op::Sub(_) => match (&x, &y) {
                (DimValue::Known(p), DimValue::Known(q)) => DimValue::Known(p - q),
                (_, DimValue::Known(0)) => x.clone(),
                _ => DimValue::Unknown,
            },
            Op::Div(_) => match (&x, &y) {
                (DimValue::Known(p), DimValue::Known(q)) if *q != 0 => DimValue::Known(p / q),
                (_, DimValue::Known(1)) => x.clone(),
                _ => DimValue::Unknown,
            },
            _ => return None,
        });
    }
    Some(out)
}

/// Add, Sub, Mul, Div, Mod, Pow.
pub(crate) fn arith(cx: &Cx) -> R {
    let op = cx.node.op();
    let dtype = if matches!(op, Op::Pow(_)) {
        cx.dtype(0)
    } else {
        check_same_dtype(cx, &[0, 1])?
    };
    let shape = bshape(cx, &[0, 1])?;
    let out = Out::one(fact(dtype, shape));
    if let (Some(a), Some(b)) = (cx.val(0), cx.val(1)) {
        let dt = dtype.unwrap_or(a.dtype);
        let v = if dt.is_float() {
            let fmod = matches!(op, Op::Mod(_));
            zip_f(&[a, b], dt, |x| match op {
                Op::Add(_) => x[0] + x[1],
                Op::Sub(_) => x[0] - x[1],
                Op::Mul(_) => x[0] * x[1],
                Op::Div(_) => x[0] / x[1],
                Op::Pow(_) => x[0].powf(x[1]),
                _ if fmod => x[0] % x[1],
                _ => f64::NAN,
            })
        } else {
            let c_fmod = matches!(op, Op::Mod(ops::Mod { fmod: Some(1) }));
            zip_i(&[a, b], dt, |x| match op {
                Op::Add(_) => Some(x[0].wrapping_add(x[1])),
                Op::Sub(_) => Some(x[0].wrapping_sub(x[1])),
                Op::Mul(_) => Some(x[0].wrapping_mul(x[1])),
                Op::Div(_) => x[0].checked_div(x[1]),
                Op::Mod(_) if c_fmod => x[0].checked_rem(x[1]),
                Op::Mod(_) => x[0].checked_rem(x[1]).map(|r| {
                    if r != 0 && (r < 0) != (x[1] < 0) {
                        r + x[1]
                    } else {
                        r
                    }
                }),
                Op::Pow(_) => u32::try_from(x[1]).ok().and_then(|e| x[0].checked_pow(e)),
                _ => None,
            })
        };
        return Ok(out.with_val(v));
    }
    if let (Some(a), Some(b)) = (cx.sym(0), cx.sym(1))
        && !dtype.is_some_and(|d| d.is_float())
    {
        return Ok(out.with_sym(sym_binary(op, &a, &b)));
    }
    Ok(out)
}

/// Comparisons and logic ops: bool of the broadcast shape.
pub(crate) fn compare(cx: &Cx) -> R {
    let op = cx.node.op();
    check_same_dtype(cx, &[0, 1])?;
    let shape = bshape(cx, &[0, 1])?;
    let out = Out::one(fact(Some(DType::Bool), shape));
    let v = match (cx.val(0), cx.val(1)) {
        (Some(a), Some(b)) if a.is_float() || b.is_float() => zip_f(&[a, b], DType::Bool, |x| {
            let r = match op {
                Op::Equal(_) => x[0] == x[1],
                Op::Less(_) => x[0] < x[1],
                Op::LessOrEqual(_) => x[0] <= x[1],
                Op::Greater(_) => x[0] > x[1],
                Op::GreaterOrEqual(_) => x[0] >= x[1],
                _ => false,
            };
            r as i64 as f64
        }),
        (Some(a), Some(b)) => zip_i(&[a, b], DType::Bool, |x| {
            Some(match op {
                Op::Equal(_) => x[0] == x[1],
                Op::Less(_) => x[0] < x[1],
                Op::LessOrEqual(_) => x[0] <= x[1],
                Op::Greater(_) => x[0] > x[1],
                Op::GreaterOrEqual(_) => x[0] >= x[1],
                Op::And(_) => x[0] != 0 && x[1] != 0,
                Op::Or(_) => x[0] != 0 || x[1] != 0,
                Op::Xor(_) => (x[0] != 0) != (x[1] != 0),
                _ => return None,
            } as i64)
        }),
        _ => None,
    };
    Ok(out.with_val(v))
}

/// Max, Min, Sum, Mean over any number of broadcast inputs.
pub(crate) fn variadic(cx: &Cx) -> R {
    let idx: Vec<usize> = (0..cx.n_in()).filter(|&i| cx.has(i)).collect();
    if idx.is_empty() {
        return Err("needs at least one input".into());
    }
    let dtype = check_same_dtype(cx, &idx)?;
    let shape = bshape(cx, &idx)?;
    let out = Out::one(fact(dtype, shape));
    let vals: Option<Vec<&KVal>> = idx.iter().map(|&i| cx.val(i)).collect();
    let v = vals.and_then(|vals| {
        let dt = dtype.unwrap_or(vals[0].dtype);
        let op = cx.node.op();
        if dt.is_float() {
            zip_f(&vals, dt, |x| match op {
                Op::Max(_) => x.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                Op::Min(_) => x.iter().copied().fold(f64::INFINITY, f64::min),
                Op::Sum(_) => x.iter().sum(),
                _ => x.iter().sum::<f64>() / x.len() as f64,
            })
        } else {
            zip_i(&vals, dt, |x| match op {
                Op::Max(_) => x.iter().copied().max(),
                Op::Min(_) => x.iter().copied().min(),
                Op::Sum(_) => Some(x.iter().sum()),
                _ => Some(x.iter().sum::<i64>() / x.len() as i64),
            })
        }
    });
    Ok(out.with_val(v))
}

/// Where(cond, x, y): broadcast of all three, dtype of x.
pub(crate) fn where_(cx: &Cx) -> R {
    if let Some(c) = cx.dtype(0)
        && c != DType::Bool
    {
        return Err(format!(
            "condition '{}' is {}, not BOOL",
            cx.name(0),
            c.onnx_name()
        ));
    }
    let dtype = check_same_dtype(cx, &[1, 2])?;
    let shape = bshape(cx, &[0, 1, 2])?;
    let out = Out::one(fact(dtype, shape));
    if let (Some(c), Some(a), Some(b)) = (cx.val(0), cx.val(1), cx.val(2)) {
        let dt = dtype.unwrap_or(a.dtype);
        let v = if dt.is_float() {
            zip_f(&[c, a, b], dt, |x| if x[0] != 0.0 { x[1] } else { x[2] })
        } else {
            zip_i(&[c, a, b], dt, |x| {
                Some(if x[0] != 0 { x[1] } else { x[2] })
            })
        };
        return Ok(out.with_val(v));
    }
    // Where over shape vectors with a known condition keeps symbolic dims.
    if let (Some(c), Some(a), Some(b)) = (cx.val(0), cx.sym(1), cx.sym(2))
        && c.shape.len() <= 1
    {
        let cv = c.i64s();
        let n = cv.len().max(a.len()).max(b.len());
        let pick = |s: &[DimValue], i: usize| s.get(if s.len() == 1 { 0 } else { i }).cloned();
        let s: Option<Vec<DimValue>> = (0..n)
            .map(|i| {
                let ci = *cv.get(if cv.len() == 1 { 0 } else { i })?;
                if ci != 0 { pick(&a, i) } else { pick(&b, i) }
            })
            .collect();
        return Ok(out.with_sym(s));
    }
    Ok(out)
}

/// Cast: dtype `to`, same shape; folds known values and keeps shape vectors symbolic.
pub(crate) fn cast(cx: &Cx, o: &ops::Cast) -> R {
    let to = dtype_attr(o.to.ok_or("attribute 'to' is missing")?, "'to'")?;
    let out = Out::one(fact(Some(to), cx.fact(0).shape));
    if let Some(v) = cx.val(0) {
        return Ok(out.with_val(v.cast(to)));
    }
    if !to.is_float() && to != DType::Bool {
        return Ok(out.with_sym(cx.sym(0)));
    }
    Ok(out)
}

/// CastLike: the dtype of input 1.
pub(crate) fn cast_like(cx: &Cx) -> R {
    let to = cx.dtype(1);
    let out = Out::one(fact(to, cx.fact(0).shape));
    Ok(match (cx.val(0), to) {
        (Some(v), Some(t)) => out.with_val(v.cast(t)),
        _ => out,
    })
}

/// Dropout: output same as input (inference), optional mask of bools (opset 10+; same dtype before).
pub(crate) fn dropout(cx: &Cx) -> R {
    let x = cx.fact(0);
    let mask_dt = if cx.opset >= 10 {
        Some(DType::Bool)
    } else {
        x.dtype
    };
    let mut out = Out::many(vec![
        x.clone(),
        Fact {
            dtype: mask_dt,
            shape: x.shape.clone(),
        },
    ]);
    out.vals = vec![cx.val(0).cloned(), None];
    out.syms = vec![cx.sym(0), None];
    if let Some(v) = &out.vals[0] {
        out.facts[0] = v.fact();
    }
    Ok(out)
}
