//! Data movement and shape ops: Shape, Size, Reshape, Flatten, Squeeze/Unsqueeze (axes attribute
//! before opset 13, input after), Transpose, Concat, Split (split attribute / input / num_outputs),
//! Slice (attributes before opset 10, inputs after), Expand, Tile, Pad (attributes before opset 11),
//! Constant, ConstantOfShape and Range. These carry the shape subgraphs, so they fold known values
//! and keep shape vectors with symbolic entries.

use super::dims::{self, Shape, k, kv};
use super::value::{self, KData, KVal, strides};
use super::{Cx, Out, R, fact};
use crate::attr::TensorData;
use crate::ops;
use crate::types::{DimValue, Fact};
use qtool_tensor::DType;

/// Concatenated shape along `axis` (negative allowed); `None` entries have an unknown rank.
pub(crate) fn concat_shape(
    shapes: &[Option<&[DimValue]>],
    axis: i64,
) -> Result<Option<Shape>, String> {
    let Some(first) = shapes.iter().flatten().next() else {
        return Ok(None);
    };
    let r = first.len();
    let a = dims::axis(axis, r)?;
    let mut out: Shape = first.to_vec();
    let mut sum = k(0);
    for s in shapes {
        let Some(s) = s else {
            sum = DimValue::Unknown;
            continue;
        };
        if s.len() != r {
            return Err(format!(
                "inputs have different ranks: {} and {}",
                dims::fmt_dims(first),
                dims::fmt_dims(s)
            ));
        }
        for i in 0..r {
            if i == a {
                continue;
            }
            if !dims::compatible(&out[i], &s[i]) {
                return Err(format!(
                    "shapes {} and {} differ outside the concatenation axis {a}",
                    dims::fmt_dims(first),
                    dims::fmt_dims(s)
                ));
            }
            out[i] = dims::merge(&out[i], &s[i]);
        }
        sum = dims::add(&sum, &s[a]);
    }
    out[a] = sum;
    Ok(Some(out))
}

pub(crate) fn concat(cx: &Cx, axis: Option<i64>) -> R {
    let axis = axis.ok_or("attribute 'axis' is missing")?;
    let idx: Vec<usize> = (0..cx.n_in()).filter(|&i| cx.has(i)).collect();
    if idx.is_empty() {
        return Err("needs at least one input".into());
    }
    let shapes: Vec<Option<&[DimValue]>> = idx.iter().map(|&i| cx.shape(i)).collect();
    let dtype = idx.iter().find_map(|&i| cx.dtype(i));
    let shape = concat_shape(&shapes, axis)?;
    let out = Out::one(fact(dtype, shape.clone()));
    let vals: Option<Vec<&KVal>> = idx.iter().map(|&i| cx.val(i)).collect();
    if let (Some(vals), Some(s)) = (vals, &shape) {
        let a = dims::axis(axis, s.len())?;
        return Ok(out.with_val(value::concat(&vals, a, dtype.unwrap_or(DType::I64))));
    }
    if shape.as_ref().is_some_and(|s| s.len() == 1) {
        let syms: Option<Vec<Vec<DimValue>>> = idx.iter().map(|&i| cx.sym(i)).collect();
        return Ok(out.with_sym(syms.map(|s| s.concat())));
    }
    Ok(out)
}

/// Start (clamped) and length of a slice of a dimension of size `dim`.
fn slice_range(dim: i64, start: i64, end: i64, step: i64) -> Result<(i64, i64), String> {
    if step == 0 {
        return Err("slice step is 0".into());
    }
    let mut s = if start < 0 {
        start.saturating_add(dim)
    } else {
        start
    };
    let mut e = if end < 0 {
        end.saturating_add(dim)
    } else {
        end
    };
    if step > 0 {
        s = s.clamp(0, dim);
        e = e.clamp(0, dim);
        Ok((s, ((e - s) + step - 1).div_euclid(step).max(0)))
    } else {
        s = s.clamp(-1, dim - 1);
        e = e.clamp(-1, dim - 1);
        Ok((s, ((s - e) + (-step) - 1).div_euclid(-step).max(0)))
    }
}

pub(crate) fn split(cx: &Cx, o: &ops::Split) -> R {
    let n = cx.n_out();
    let dtype = cx.dtype(0);
    let Some(x) = cx.shape(0) else {
        return Ok(Out::many(vec![fact(dtype, None); n]));
    };
    let a = dims::axis(o.axis.unwrap_or(0), x.len())?;
    let d = x[a].clone();
    let sizes: Option<Vec<i64>> = if let Some(s) = &o.split {
        Some(s.clone())
    } else if cx.present(1) {
        cx.ints(1)
    } else if let Some(m) = o.num_outputs {
        if m as usize != n {
            return Err(format!("num_outputs is {m} but the node has {n} outputs"));
        }
        kv(&d).map(|dv| {
            let chunk = (dv + m - 1) / m;
            (0..m)
                .map(|i| {
                    if i < m - 1 {
                        chunk
                    } else {
                        dv - chunk * (m - 1)
                    }
                })
                .collect()
        })
    } else {
        match kv(&d) {
            Some(dv) if dv % n as i64 != 0 => {
                return Err(format!(
                    "dimension {dv} of axis {a} does not split evenly into {n} outputs"
                ));
            }
            Some(dv) => Some(vec![dv / n as i64; n]),
            None => None,
        }
    };
    let Some(sizes) = sizes else {
        let mut s = x.to_vec();
        s[a] = DimValue::Unknown;
        return Ok(Out::many(vec![fact(dtype, Some(s)); n]));
    };
    if sizes.len() != n {
        return Err(format!(
            "split has {} entries but the node has {n} outputs",
            sizes.len()
        ));
    }
    if sizes.iter().any(|&s| s < 0) {
        return Err(format!(
            "split sizes {sizes:?} have a negative entry (axis {a} has size {})",
            dims::fmt_dims(&[d])
        ));
    }
    if let Some(dv) = kv(&d)
        && sizes.iter().sum::<i64>() != dv
    {
        return Err(format!(
            "split sizes {sizes:?} do not add up to {dv}, the size of axis {a}"
        ));
    }
    let mut out = Out::default();
    let xs = cx.val(0);
    let sym = if x.len() == 1 { cx.sym(0) } else { None };
    let mut off = 0usize;
    for &s in &sizes {
        let mut shape = x.to_vec();
        shape[a] = k(s);
        out.facts.push(fact(dtype, Some(shape)));
        let v = xs.and_then(|v| {
            let mut os = v.shape.clone();
            os[a] = s as usize;
            let st = strides(&v.shape);
            v.gather_by(os, |idx| {
                Some(
                    idx.iter()
                        .enumerate()
                        .map(|(i, &j)| if i == a { (j + off) * st[i] } else { j * st[i] })
                        .sum(),
                )
            })
        });
        if let Some(v) = &v {
            *out.facts.last_mut().expect("pushed") = v.fact();
        }
        out.vals.push(v);
        out.syms.push(
            sym.as_ref()
                .and_then(|sy| sy.get(off..off + s as usize).map(|x| x.to_vec())),
        );
        off += s as usize;
    }
    Ok(out)
}

pub(crate) fn slice(cx: &Cx, o: &ops::Slice) -> R {
    let dtype = cx.dtype(0);
    let Some(x) = cx.shape(0) else {
        return Ok(Out::one(fact(dtype, None)));
    };
    let r = x.len();
    let attr_form = o.starts.is_some() || o.ends.is_some();
    type Ints = Option<Vec<i64>>;
    let (starts, ends, axes, steps): (Ints, Ints, Ints, Ints) =
        if attr_form {
            (
                o.starts.clone(),
                o.ends.clone(),
                Some(o.axes.clone().unwrap_or_else(|| {
                    (0..o.starts.as_ref().map_or(0, |s| s.len()) as i64).collect()
                })),
                None,
            )
        } else {
            let axes = if cx.present(3) {
                cx.ints(3)
            } else {
                cx.ints(1).map(|s| (0..s.len() as i64).collect())
            };
            let steps = if cx.present(4) {
                cx.ints(4)
            } else {
                cx.ints(1).map(|s| vec![1; s.len()])
            };
            (cx.ints(1), cx.ints(2), axes, steps)
        };
    let (Some(starts), Some(ends), Some(axes)) = (starts, ends, axes) else {
        let mut s = x.to_vec();
        match &o
            .axes
            .clone()
            .or_else(|| if cx.present(3) { cx.ints(3) } else { None })
        {
            Some(a) => {
                for i in dims::axes(a, r)? {
                    s[i] = DimValue::Unknown;
                }
            }
            None => s = dims::unknown_dims(r),
        }
        return Ok(Out::one(fact(dtype, Some(s))).because("the slice bounds are not known"));
    };
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if starts.len() != ends.len() || starts.len() != axes.len() || starts.len() != steps.len() {
        return Err(format!(
            "starts {starts:?}, ends {ends:?}, axes {axes:?} and steps {steps:?} differ in length"
        ));
    }
    let axes = dims::axes(&axes, r)?;
    let mut out = x.to_vec();
    let mut ranges: Vec<(usize, i64, i64)> = Vec::new(); // (axis, start, step)
    for (j, &a) in axes.iter().enumerate() {
        let (s, e, st) = (starts[j], ends[j], steps[j]);
        match kv(&x[a]) {
            Some(dim) => {
                let (s0, len) = slice_range(dim, s, e, st)?;
                out[a] = k(len);
                ranges.push((a, s0, st));
            }
            None if st == 1 && s == 0 && e >= i32::MAX as i64 => {}
            None => out[a] = DimValue::Unknown,
        }
    }
    let res = Out::one(fact(dtype, Some(out.clone())));
    if let (Some(v), Some(os)) = (cx.val(0), dims::static_dims(&out)) {
        let st = strides(&v.shape);
        let val = v.gather_by(os, |idx| {
            let mut src = 0usize;
            for (i, &j) in idx.iter().enumerate() {
                let p = match ranges.iter().find(|(a, ..)| *a == i) {
                    Some(&(_, s0, step)) => s0 + j as i64 * step,
                    None => j as i64,
                };
                src += usize::try_from(p).ok()? * st[i];
            }
            Some(src)
        });
        return Ok(res.with_val(val));
    }
    if r == 1
        && let (Some(sy), Some(&(_, s0, step))) = (cx.sym(0), ranges.first())
        && let Some(len) = kv(&out[0])
    {
        let picked: Option<Vec<DimValue>> = (0..len)
            .map(|j| {
                usize::try_from(s0 + j * step)
                    .ok()
                    .and_then(|p| sy.get(p).cloned())
            })
            .collect();
        return Ok(res.with_sym(picked));
    }
    Ok(res)
}

/// Resolves Reshape's `-1` from the input shape (known and symbolic factors).
fn infer_minus_one(input: &[DimValue], others: &[DimValue]) -> Result<DimValue, String> {
    let factors = |s: &[DimValue]| -> Option<(i64, Vec<String>)> {
        let mut known = 1i64;
        let mut params = Vec::new();
        for d in s {
            match d {
                DimValue::Known(v) => known = known.checked_mul(*v)?,
                DimValue::Param(p) => params.push(p.clone()),
                DimValue::Unknown => return None,
            }
        }
        Some((known, params))
    };
    let (Some((ik, mut ip)), Some((ok, op))) = (factors(input), factors(others)) else {
        return Ok(DimValue::Unknown);
    };
    for p in &op {
        match ip.iter().position(|x| x == p) {
            Some(i) => {
                ip.remove(i);
            }
            None => return Ok(DimValue::Unknown),
        }
    }
    if ok == 0 {
        return Ok(if ik == 0 {
            DimValue::Unknown
        } else {
            return Err(format!(
                "cannot infer -1: the other target dimensions multiply to 0 but the input has {ik} elements"
            ));
        });
    }
    match ip.len() {
        0 if ik % ok == 0 => Ok(k(ik / ok)),
        0 => Err(format!(
            "cannot reshape {} elements into a shape with {ok} elements per -1 entry",
            ik
        )),
        1 if ik == ok => Ok(DimValue::Param(ip[0].clone())),
        _ => Ok(DimValue::Unknown),
    }
}

pub(crate) fn reshape(cx: &Cx, o: &ops::Reshape) -> R {
    let dtype = cx.dtype(0);
    let Some(target) = cx.sym(1) else {
        let s = cx
            .shape(1)
            .and_then(|s| s.first())
            .and_then(kv)
            .map(|n| dims::unknown_dims(n as usize));
        return Ok(Out::one(fact(dtype, s))
            .because(format!("the target shape '{}' is not known", cx.name(1))));
    };
    let allowzero = o.allowzero.unwrap_or(0) != 0;
    let x = cx.shape(0);
    let mut out: Shape = Vec::with_capacity(target.len());
    let mut minus: Option<usize> = None;
    for (i, d) in target.iter().enumerate() {
        match d {
            DimValue::Known(0) if !allowzero => match x {
                Some(x) if i < x.len() => out.push(x[i].clone()),
                Some(x) => {
                    return Err(format!(
                        "target shape has 0 at position {i} but the input {} has rank {}",
                        dims::fmt_dims(x),
                        x.len()
                    ));
                }
                None => out.push(DimValue::Unknown),
            },
            DimValue::Known(-1) => {
                if minus.is_some() {
                    return Err(format!(
                        "target shape {} has more than one -1",
                        dims::fmt_dims(&target)
                    ));
                }
                minus = Some(i);
                out.push(DimValue::Unknown);
            }
            DimValue::Known(v) if *v < -1 => {
                return Err(format!(
                    "target shape {} has the invalid entry {v}",
                    dims::fmt_dims(&target)
                ));
            }
            other => out.push(other.clone()),
        }
    }
    if let Some(x) = x {
        if let Some(m) = minus {
            let others: Shape = out
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != m)
                .map(|(_, d)| d.clone())
                .collect();
            out[m] = infer_minus_one(x, &others).map_err(|e| {
                format!(
                    "reshaping {} to {}: {e}",
                    dims::fmt_dims(x),
                    dims::fmt_dims(&target)
                )
            })?;
        } else if let (Some(a), Some(b)) = (dims::static_dims(x), dims::static_dims(&out)) {
            let (na, nb): (usize, usize) = (a.iter().product(), b.iter().product());
            if na != nb {
                return Err(format!(
                    "cannot reshape {} ({na} elements) to {} ({nb} elements)",
                    dims::fmt_dims(x),
                    dims::fmt_dims(&out)
                ));
            }
        }
    }
    let res = Out::one(fact(dtype, Some(out.clone())));
    if let (Some(v), Some(s)) = (cx.val(0), dims::static_dims(&out)) {
        return Ok(res.with_val(v.reshape(s)));
    }
    if out.len() <= 1 && x.is_some_and(|x| x.len() <= 1) {
        return Ok(res.with_sym(cx.sym(0)));
    }
    Ok(res)
}

pub(crate) fn transpose(cx: &Cx, o: &ops::Transpose) -> R {
    let dtype = cx.dtype(0);
    let Some(x) = cx.shape(0) else {
        return Ok(Out::one(fact(dtype, None)));
    };
    let r = x.len();
    let perm: Vec<usize> = match &o.perm {
        Some(p) => {
            let mut seen = vec![false; r];
            let mut out = Vec::with_capacity(r);
            for &a in p {
                let ok = a >= 0 && (a as usize) < r && !seen[a as usize];
                if !ok || p.len() != r {
                    return Err(format!("perm {p:?} is not a permutation of the {r} axes"));
                }
                seen[a as usize] = true;
                out.push(a as usize);
            }
            out
        }
        None => (0..r).rev().collect(),
    };
    let shape: Shape = perm.iter().map(|&p| x[p].clone()).collect();
    let val = cx.val(0).and_then(|v| {
        let st = strides(&v.shape);
        let os: Vec<usize> = perm.iter().map(|&p| v.shape[p]).collect();
        v.gather_by(os, |idx| {
            Some(idx.iter().enumerate().map(|(i, &j)| j * st[perm[i]]).sum())
        })
    });
    Ok(Out::one(fact(dtype, Some(shape))).with_val(val))
}

/// Axes of Squeeze/Unsqueeze: the attribute (before opset 13) or input 1. `Err(())`: not known.
fn axes_of(cx: &Cx, attr: &Option<Vec<i64>>) -> Result<Option<Vec<i64>>, ()> {
    match attr {
        Some(a) => Ok(Some(a.clone())),
        None if cx.has(1) => cx.ints(1).map(Some).ok_or(()),
        None => Ok(None),
    }
}

pub(crate) fn squeeze(cx: &Cx, o: &ops::Squeeze) -> R {
    let dtype = cx.dtype(0);
    let Some(x) = cx.shape(0) else {
        return Ok(Out::one(fact(dtype, None)));
    };
    let Ok(axes) = axes_of(cx, &o.axes) else {
        return Ok(Out::one(fact(dtype, None))
            .because(format!("the axes input '{}' is not known", cx.name(1))));
    };
    let drop: Vec<usize> = match axes {
        Some(a) => {
            let a = dims::axes(&a, x.len())?;
            for &i in &a {
                if let Some(d) = kv(&x[i])
                    && d != 1
                {
                    return Err(format!(
                        "cannot squeeze axis {i} of size {d} (input {})",
                        dims::fmt_dims(x)
                    ));
                }
            }
            a
        }
        None => {
            if x.iter().any(|d| kv(d).is_none()) {
                return Ok(Out::one(fact(dtype, None))
                    .because("Squeeze without axes over symbolic dimensions"));
            }
            (0..x.len()).filter(|&i| kv(&x[i]) == Some(1)).collect()
        }
    };
    let shape: Shape = x
        .iter()
        .enumerate()
        .filter(|(i, _)| !drop.contains(i))
        .map(|(_, d)| d.clone())
        .collect();
    let val = match (cx.val(0), dims::static_dims(&shape)) {
        (Some(v), Some(s)) => v.reshape(s),
        _ => None,
    };
    let sym = if shape.len() <= 1 { cx.sym(0) } else { None };
    Ok(Out::one(fact(dtype, Some(shape)))
        .with_val(val)
        .with_sym(sym))
}

pub(crate) fn unsqueeze(cx: &Cx, o: &ops::Unsqueeze) -> R {
    let dtype = cx.dtype(0);
    let Ok(axes) = axes_of(cx, &o.axes) else {
        return Ok(Out::one(fact(dtype, None))
            .because(format!("the axes input '{}' is not known", cx.name(1))));
    };
    let axes = axes.ok_or("axes are missing")?;
    let Some(x) = cx.shape(0) else {
        return Ok(Out::one(fact(dtype, None)));
    };
    let r = x.len() + axes.len();
    let ins = dims::axes(&axes, r)?;
    let mut src = x.iter();
    let shape: Shape = (0..r)
        .map(|i| {
            if ins.contains(&i) {
                k(1)
            } else {
                src.next().cloned().unwrap_or(DimValue::Unknown)
            }
        })
        .collect();
    let val = match (cx.val(0), dims::static_dims(&shape)) {
        (Some(v), Some(s)) => v.reshape(s),
        _ => None,
    };
    let sym = if shape.len() <= 1 { cx.sym(0) } else { None };
    Ok(Out::one(fact(dtype, Some(shape)))
        .with_val(val)
        .with_sym(sym))
}

pub(crate) fn flatten(cx: &Cx, o: &ops::Flatten) -> R {
    let dtype = cx.dtype(0);
    let Some(x) = cx.shape(0) else {
        return Ok(Out::one(fact(dtype, None)));
    };
    let r = x.len() as i64;
    let a = o.axis.unwrap_or(1);
    if a < -r || a > r {
        return Err(format!("axis {a} is out of range for rank {r}"));
    }
    let a = if a < 0 { a + r } else { a } as usize;
    let shape = vec![dims::product(&x[..a]), dims::product(&x[a..])];
    let val = match (cx.val(0), dims::static_dims(&shape)) {
        (Some(v), Some(s)) => v.reshape(s),
        _ => None,
    };
    Ok(Out::one(fact(dtype, Some(shape))).with_val(val))
}

/// Broadcasts a known value to a static shape.
fn broadcast_val(v: &KVal, to: Vec<usize>) -> Option<KVal> {
    let st = strides(&v.shape);
    let off = to.len().checked_sub(v.shape.len())?;
    let shape = v.shape.clone();
    v.gather_by(to, |idx| {
        Some(
            shape
                .iter()
                .enumerate()
                .map(|(i, &d)| if d == 1 { 0 } else { idx[i + off] * st[i] })
                .sum(),
        )
    })
}

pub(crate) fn expand(cx: &Cx) -> R {
    let dtype = cx.dtype(0);
    let Some(target) = cx.sym(1) else {
        let s = match (
            cx.shape(0),
            cx.shape(1).and_then(|s| s.first()).and_then(kv),
        ) {
            (Some(x), Some(n)) => Some(dims::unknown_dims(x.len().max(n as usize))),
            _ => None,
        };
        return Ok(Out::one(fact(dtype, s))
            .because(format!("the target shape '{}' is not known", cx.name(1))));
    };
    let Some(x) = cx.shape(0) else {
        return Ok(Out::one(fact(dtype, None)));
    };
    let shape = dims::broadcast(x, &target)?;
    let val = match (cx.val(0), dims::static_dims(&shape)) {
        (Some(v), Some(s)) => broadcast_val(v, s),
        _ => None,
    };
    Ok(Out::one(fact(dtype, Some(shape))).with_val(val))
}

pub(crate) fn tile(cx: &Cx) -> R {
    let dtype = cx.dtype(0);
    let Some(x) = cx.shape(0) else {
        return Ok(Out::one(fact(dtype, None)));
    };
    let Some(reps) = cx.ints(1) else {
        return Ok(Out::one(fact(dtype, Some(dims::unknown_dims(x.len()))))
            .because(format!("repeats '{}' are not known", cx.name(1))));
    };
    if reps.len() != x.len() || reps.iter().any(|&r| r < 0) {
        return Err(format!(
            "repeats {reps:?} do not fit an input of shape {}",
            dims::fmt_dims(x)
        ));
    }
    let shape: Shape = x
        .iter()
        .zip(&reps)
        .map(|(d, &r)| dims::scale(d, r))
        .collect();
    let val = match (cx.val(0), dims::static_dims(&shape)) {
        (Some(v), Some(s)) => {
            let st = strides(&v.shape);
            let vs = v.shape.clone();
            v.gather_by(s, |idx| {
                Some(
                    idx.iter()
                        .enumerate()
                        .map(|(i, &j)| (j % vs[i].max(1)) * st[i])
                        .sum(),
                )
            })
        }
        _ => None,
    };
    Ok(Out::one(fact(dtype, Some(shape))).with_val(val))
}

pub(crate) fn pad(cx: &Cx, o: &ops::Pad) -> R {
    let dtype = cx.dtype(0);
    let Some(x) = cx.shape(0) else {
        return Ok(Out::one(fact(dtype, None)));
    };
    let r = x.len();
    let pads = match &o.pads {
        Some(p) => Some(p.clone()),
        None => cx.ints(1),
    };
    let axes: Vec<usize> = if cx.present(3) {
        match cx.ints(3) {
            Some(a) => dims::axes(&a, r)?,
            None => {
                return Ok(Out::one(fact(dtype, Some(dims::unknown_dims(r))))
                    .because("the pad axes are not known"));
            }
        }
    } else {
        (0..r).collect()
    };
    let Some(pads) = pads else {
        let mut s = x.to_vec();
        for &a in &axes {
            s[a] = DimValue::Unknown;
        }
        return Ok(
            Out::one(fact(dtype, Some(s))).because(format!("pads '{}' are not known", cx.name(1)))
        );
    };
    let n = axes.len();
    if pads.len() != 2 * n {
        return Err(format!(
            "pads {pads:?} should have {} entries (2 per padded axis)",
            2 * n
        ));
    }
    let mut out = x.to_vec();
    for (j, &a) in axes.iter().enumerate() {
        let total = pads[j] + pads[j + n];
        out[a] = match kv(&x[a]) {
            Some(d) if d + total < 0 => {
                return Err(format!("pads {pads:?} make axis {a} of size {d} negative"));
            }
            Some(d) => k(d + total),
            None if total == 0 => x[a].clone(),
            None => DimValue::Unknown,
        };
    }
    Ok(Out::one(fact(dtype, Some(out))))
}

pub(crate) fn shape(cx: &Cx, o: &ops::Shape) -> R {
    let Some(x) = cx.shape(0) else {
        return Ok(
            Out::one(fact(Some(DType::I64), Some(vec![DimValue::Unknown])))
                .because(format!("the rank of '{}' is not known", cx.name(0))),
        );
    };
    let r = x.len() as i64;
    let norm = |v: i64| if v < 0 { (v + r).clamp(0, r) } else { v.clamp(0, r) } as usize;
    let s = norm(o.start.unwrap_or(0));
    let e = norm(o.end.unwrap_or(r));
    let dims: Vec<DimValue> = if s < e { x[s..e].to_vec() } else { Vec::new() };
    Ok(Out::one(fact(Some(DType::I64), Some(vec![k(dims.len() as i64)]))).with_sym(Some(dims)))
}

pub(crate) fn size(cx: &Cx) -> R {
    let out = Out::one(Fact::new(DType::I64, &[]));
    let n = cx.shape(0).map(dims::product).and_then(|d| kv(&d));
    Ok(out.with_val(n.and_then(|n| KVal::ints(DType::I64, vec![], vec![n]))))
}

fn data_fact(t: &TensorData) -> Fact {
    Fact {
        dtype: Some(t.dtype),
        shape: Some(t.dims.iter().map(|&d| k(d)).collect()),
    }
}

pub(crate) fn constant(_cx: &Cx, o: &ops::Constant) -> R {
    if let Some(t) = &o.value {
        return Ok(Out::one(data_fact(t)).with_val(KVal::from_data(t)));
    }
    if let Some(v) = o.value_float {
        return Ok(Out::default().with_val(KVal::new(
            DType::F32,
            vec![],
            KData::F(vec![v as f64]),
        )));
    }
    if let Some(v) = &o.value_floats {
        return Ok(
            Out::one(Fact::new(DType::F32, &[v.len()])).with_val(KVal::new(
                DType::F32,
                vec![v.len()],
                KData::F(v.iter().map(|&x| x as f64).collect()),
            )),
        );
    }
    if let Some(v) = o.value_int {
        return Ok(Out::default().with_val(KVal::ints(DType::I64, vec![], vec![v])));
    }
    if let Some(v) = &o.value_ints {
        return Ok(Out::one(Fact::new(DType::I64, &[v.len()])).with_val(KVal::vec_i64(v.clone())));
    }
    if o.value_string.is_some() {
        return Ok(Out::one(Fact::new(DType::String, &[])));
    }
    if let Some(v) = &o.value_strings {
        return Ok(Out::one(Fact::new(DType::String, &[v.len()])));
    }
    Err("has no value attribute (sparse_value is not supported)".into())
}

pub(crate) fn constant_of_shape(cx: &Cx, o: &ops::ConstantOfShape) -> R {
    let (dtype, fill) = match &o.value {
        Some(t) => (t.dtype, KVal::from_data(t)),
        None => (
            DType::F32,
            KVal::new(DType::F32, vec![1], KData::F(vec![0.0])),
        ),
    };
    let Some(target) = cx.sym(0) else {
        let s = cx
            .shape(0)
            .and_then(|s| s.first())
            .and_then(kv)
            .map(|n| dims::unknown_dims(n as usize));
        return Ok(Out::one(fact(Some(dtype), s))
            .because(format!("the shape input '{}' is not known", cx.name(0))));
    };
    if let Some(d) = target.iter().find_map(|d| kv(d).filter(|v| *v < 0)) {
        return Err(format!(
            "shape {} has the negative dimension {d}",
            dims::fmt_dims(&target)
        ));
    }
    let val = match (dims::static_dims(&target), fill) {
        (Some(s), Some(f)) if f.len() == 1 => {
            let n: usize = s.iter().product();
            match f.data {
                KData::I(v) => KVal::new(dtype, s, KData::I(vec![v[0]; n])),
                KData::F(v) => KVal::new(dtype, s, KData::F(vec![v[0]; n])),
            }
        }
        _ => None,
    };
    Ok(Out::one(fact(Some(dtype), Some(target))).with_val(val))
}

pub(crate) fn range(cx: &Cx) -> R {
    let dtype = cx.dtype(0).or(cx.dtype(1)).or(cx.dtype(2));
    for i in 0..3 {
        if let Some(s) = cx.shape(i)
            && !s.is_empty()
            && !(s.len() == 1 && kv(&s[0]) == Some(1))
        {
            return Err(format!(
                "input '{}' of shape {} is not a scalar",
                cx.name(i),
                dims::fmt_dims(s)
            ));
        }
    }
    let unknown = || {
        Out::one(fact(dtype, Some(vec![DimValue::Unknown])))
            .because("the range bounds are not known")
    };
    let (Some(s), Some(l), Some(d)) = (cx.val(0), cx.val(1), cx.val(2)) else {
        return Ok(unknown());
    };
    let dt = dtype.unwrap_or(s.dtype);
    if dt.is_float() {
        let (s, l, d) = (s.f64s()[0], l.f64s()[0], d.f64s()[0]);
        if d == 0.0 {
            return Err("delta is 0".into());
        }
        let n = ((l - s) / d).ceil().max(0.0) as usize;
        if n > value::MAX_KNOWN {
            return Ok(Out::one(Fact::new(dt, &[n])));
        }
        let v = KVal::new(
            dt,
            vec![n],
            KData::F((0..n).map(|i| s + i as f64 * d).collect()),
        );
        Ok(Out::one(Fact::new(dt, &[n])).with_val(v))
    } else {
        let (s, l, d) = (s.i64s()[0], l.i64s()[0], d.i64s()[0]);
        if d == 0 {
            return Err("delta is 0".into());
        }
        let n = ((l - s) as f64 / d as f64).ceil().max(0.0) as usize;
        if n > value::MAX_KNOWN {
            return Ok(Out::one(Fact::new(dt, &[n])));
        }
        let v = KVal::new(
            dt,
            vec![n],
            KData::I((0..n as i64).map(|i| s + i * d).collect()),
        );
        Ok(Out::one(Fact::new(dt, &[n])).with_val(v))
    }
}
