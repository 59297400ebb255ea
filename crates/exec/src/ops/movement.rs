//! Data movement and shape ops: Concat, Split, Slice, Reshape, Transpose, Squeeze, Unsqueeze, Flatten,
//! Expand, Tile, Pad, the Gather and Scatter family, Shape, Size, Constant, ConstantOfShape, Range,
//! NonZero, OneHot and Trilu. All of them work on every native element type unless ONNX restricts it.

use super::OpCtx;
use crate::error::OpError;
use crate::util::{
    Num, arr, bad_type, broadcast_shapes, elems, int_scalar, ints, norm_axes, norm_axis, opt, req,
    strides_of, wrap,
};
use crate::{bail, num_dispatch};
use ndarray::{ArrayD, Axis, IxDyn, Slice};
use qtool_ir::Op;
use qtool_tensor::{Element, Tensor, dispatch_tensor};

type R = Result<Vec<Tensor>, OpError>;

/// Runs `$body` with `$a` bound to the inner array of any native tensor; packed tensors are an error.
macro_rules! any {
    ($t:expr, $a:ident => $body:expr) => {
        dispatch_tensor!($t, $a => $body, p => bail!("{} tensors are not supported by this op", p.dtype))
    };
}

pub(crate) fn eval(op: &Op, cx: &OpCtx, inputs: &[Option<&Tensor>]) -> Option<R> {
    let one = |r: Result<Tensor, OpError>| r.map(|t| vec![t]);
    Some(match op {
        Op::Concat(o) => one(concat(o.axis, inputs)),
        Op::Split(o) => split(o, cx, inputs),
        Op::Slice(o) => one(slice(o, cx, inputs)),
        Op::Reshape(o) => one(reshape(o.allowzero.unwrap_or(0) != 0, inputs)),
        Op::Transpose(o) => one(transpose(o.perm.as_deref(), inputs)),
        Op::Squeeze(o) => one(squeeze(o.axes.as_deref(), cx, inputs)),
        Op::Unsqueeze(o) => one(unsqueeze(o.axes.as_deref(), cx, inputs)),
        Op::Flatten(o) => one(flatten(o.axis.unwrap_or(1), inputs)),
        Op::Expand(_) => one(expand(inputs)),
        Op::Tile(_) => one(tile(inputs)),
        Op::Pad(o) => one(pad(o, cx, inputs)),
        Op::Gather(o) => one(gather(o.axis.unwrap_or(0), inputs)),
        Op::GatherElements(o) => one(gather_elements(o.axis.unwrap_or(0), inputs)),
        Op::GatherND(o) => one(gather_nd(o.batch_dims.unwrap_or(0), inputs)),
        Op::ScatterND(o) => one(scatter_nd(o.reduction.as_deref(), inputs)),
        Op::ScatterElements(o) => one(scatter_elements(
            o.axis.unwrap_or(0),
            o.reduction.as_deref(),
            inputs,
        )),
        Op::Shape(o) => one(shape(o.start, o.end, inputs)),
        Op::Size(_) => one(req(inputs, 0, "data").map(|t| Tensor::scalar(t.len() as i64))),
        Op::Constant(o) => one(constant(o)),
        Op::ConstantOfShape(o) => one(constant_of_shape(o, inputs)),
        Op::Range(_) => one(range(inputs)),
        Op::NonZero(_) => one(non_zero(inputs)),
        Op::OneHot(o) => one(one_hot(o.axis.unwrap_or(-1), inputs)),
        Op::Trilu(o) => one(trilu(o.upper.unwrap_or(1) != 0, inputs)),
        _ => return None,
    })
}

/// Views `t` as an array of `T` (the element type of the op's first data input).
fn same<'a, T: Element>(t: &'a Tensor, op: &str) -> Result<&'a ArrayD<T>, OpError> {
    T::view(t).ok_or_else(|| {
        OpError(format!(
            "{op}: expected {} inputs, got {}",
            T::DTYPE,
            t.dtype()
        ))
    })
}

/// Calls `f(out_index, out_linear)` for every index of `shape`, in row-major order.
fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    let n: usize = shape.iter().product();
    if n == 0 {
        return;
    }
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..n {
        f(&idx);
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// An index value normalised against `dim` (negative counts from the end).
fn index_in(i: i64, dim: usize, op: &str) -> Result<usize, OpError> {
    let j = if i < 0 { i + dim as i64 } else { i };
    if j < 0 || j >= dim as i64 {
        bail!("{op}: index {i} is out of bounds for a dimension of size {dim}");
    }
    Ok(j as usize)
}

// ------------------------------------------------------------------ concat / split / slice

fn concat(axis: Option<i64>, inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let ts: Vec<&Tensor> = inputs.iter().flatten().copied().collect();
    let Some(first) = ts.first() else {
        bail!("Concat needs at least one input")
    };
    let Some(axis) = axis else {
        bail!("Concat needs the 'axis' attribute")
    };
    let ax = norm_axis(axis, first.rank())?;
    // `_first` only selects the element type.
    fn go<T: Element>(_first: &ArrayD<T>, ts: &[&Tensor], ax: usize) -> Result<Tensor, OpError> {
        let views = ts
            .iter()
            .map(|t| same::<T>(t, "Concat").map(|a| a.view()))
            .collect::<Result<Vec<_>, _>>()?;
        let r = ndarray::concatenate(Axis(ax), &views).map_err(|e| {
            OpError(format!(
                "Concat: shapes {:?} do not agree off axis {ax}: {e}",
                ts.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>()
            ))
        })?;
        Ok(wrap(r))
    }
    any!(*first, a => go(a, &ts, ax))
}

fn split(o: &qtool_ir::ops::Split, cx: &OpCtx, inputs: &[Option<&Tensor>]) -> R {
    let x = req(inputs, 0, "input")?;
    let ax = norm_axis(o.axis.unwrap_or(0), x.rank())?;
    let dim = x.shape()[ax];
    let sizes: Vec<usize> = match (cx.opset >= 13, opt(inputs, 1), &o.split) {
        (true, Some(s), _) => ints(s, "split")?
            .iter()
            .map(|&v| v.max(0) as usize)
            .collect(),
        (false, _, Some(s)) => s.iter().map(|&v| v.max(0) as usize).collect(),
        _ => {
            let n = o.num_outputs.map(|n| n as usize).unwrap_or(cx.n_outputs);
            if n == 0 {
                bail!("Split: zero outputs");
            }
            if o.num_outputs.is_some() {
                let chunk = dim.div_ceil(n);
                (0..n)
                    .map(|i| chunk.min(dim.saturating_sub(i * chunk)))
                    .collect()
            } else {
                if dim % n != 0 {
                    bail!("Split: dimension {dim} is not divisible into {n} equal parts");
                }
                vec![dim / n; n]
            }
        }
    };
    if sizes.iter().sum::<usize>() != dim {
        bail!("Split: split sizes {sizes:?} do not add up to dimension {dim}");
    }
    fn go<T: Element>(a: &ArrayD<T>, ax: usize, sizes: &[usize]) -> Vec<Tensor> {
        let mut start = 0;
        sizes
            .iter()
            .map(|&s| {
                let v = a.slice_axis(Axis(ax), Slice::from(start..start + s));
                start += s;
                wrap(v.to_owned())
            })
            .collect()
    }
    Ok(any!(x, a => go(a, ax, &sizes)))
}

fn slice(
    o: &qtool_ir::ops::Slice,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "data")?;
    let r = x.rank();
    let (starts, ends, axes, steps) = if cx.opset < 10 {
        let Some(s) = o.starts.clone() else {
            bail!("Slice needs 'starts'")
        };
        let Some(e) = o.ends.clone() else {
            bail!("Slice needs 'ends'")
        };
        (s, e, o.axes.clone(), None)
    } else {
        (
            ints(req(inputs, 1, "starts")?, "starts")?,
            ints(req(inputs, 2, "ends")?, "ends")?,
            opt(inputs, 3).map(|t| ints(t, "axes")).transpose()?,
            opt(inputs, 4).map(|t| ints(t, "steps")).transpose()?,
        )
    };
    if starts.len() != ends.len() {
        bail!(
            "Slice: starts ({}) and ends ({}) differ in length",
            starts.len(),
            ends.len()
        );
    }
    let axes = match axes {
        Some(a) => norm_axes(&a, r)?,
        None => (0..starts.len()).collect(),
    };
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if axes.len() != starts.len() || steps.len() != starts.len() {
        bail!("Slice: starts, ends, axes and steps must have the same length");
    }
    let mut sl: Vec<Slice> = x.shape().iter().map(|&d| Slice::from(0..d)).collect();
    for i in 0..axes.len() {
        let d = x.shape()[axes[i]] as i128;
        let step = steps[i] as i128;
        if step == 0 {
            bail!("Slice: step must not be 0");
        }
        let (mut s, mut e) = (starts[i] as i128, ends[i] as i128);
        if s < 0 {
            s += d;
        }
        if e < 0 {
            e += d;
        }
        sl[axes[i]] = if step > 0 {
            let (s, e) = (s.clamp(0, d), e.clamp(0, d));
            if e <= s {
                Slice::new(0, Some(0), 1)
            } else {
                Slice::new(s as isize, Some(e as isize), step as isize)
            }
        } else {
            let (s, e) = (s.clamp(0, d - 1), e.clamp(-1, d - 1));
            if e >= s {
                Slice::new(0, Some(0), 1)
            } else {
                Slice::new((e + 1) as isize, Some((s + 1) as isize), step as isize)
            }
        };
    }
    Ok(any!(x, a => wrap(a.slice_each_axis(|ad| sl[ad.axis.index()]).to_owned())))
}

// ------------------------------------------------------------------ reshaping

fn reshaped(x: &Tensor, shape: &[usize]) -> Result<Tensor, OpError> {
    if shape.iter().product::<usize>() != x.len() {
        bail!(
            "cannot reshape {:?} ({} elements) to {shape:?}",
            x.shape(),
            x.len()
        );
    }
    Ok(any!(x, a => wrap(arr(shape, elems(a).into_owned()))))
}

fn reshape(allowzero: bool, inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "data")?;
    let spec = ints(req(inputs, 1, "shape")?, "shape")?;
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            -1 => {
                if infer.replace(i).is_some() {
                    bail!("Reshape: more than one -1 in {spec:?}");
                }
                out.push(1);
            }
            0 if !allowzero => {
                let Some(&v) = x.shape().get(i) else {
                    bail!("Reshape: 0 at position {i} of {spec:?} has no input dimension to copy")
                };
                out.push(v);
            }
            d if d < 0 => bail!("Reshape: invalid dimension {d} in {spec:?}"),
            d => out.push(d as usize),
        }
    }
    if let Some(i) = infer {
        let known: usize = out
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, d)| *d)
            .product();
        if known == 0 || x.len() % known != 0 {
            bail!(
                "Reshape: cannot infer the -1 dimension of {spec:?} for input shape {:?}",
                x.shape()
            );
        }
        out[i] = x.len() / known;
    }
    reshaped(x, &out)
}

fn transpose(perm: Option<&[i64]>, inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "data")?;
    let r = x.rank();
    let perm: Vec<usize> = match perm {
        Some(p) => norm_axes(p, r)?,
        None => (0..r).rev().collect(),
    };
    if perm.len() != r {
        bail!("Transpose: perm {perm:?} does not match rank {r}");
    }
    Ok(any!(x, a => wrap(a.view().permuted_axes(IxDyn(&perm)).as_standard_layout().into_owned())))
}

fn axes_arg(
    attr: Option<&[i64]>,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
) -> Result<Option<Vec<i64>>, OpError> {
    if cx.opset >= 13 {
        opt(inputs, 1).map(|t| ints(t, "axes")).transpose()
    } else {
        Ok(attr.map(|a| a.to_vec()))
    }
}

fn squeeze(
    attr: Option<&[i64]>,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "data")?;
    let shape = x.shape();
    let out: Vec<usize> = match axes_arg(attr, cx, inputs)? {
        Some(axes) => {
            let axes = norm_axes(&axes, shape.len())?;
            for &a in &axes {
                if shape[a] != 1 {
                    bail!("Squeeze: axis {a} of shape {shape:?} is not 1");
                }
            }
            shape
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, d)| *d)
                .collect()
        }
        None => shape.iter().copied().filter(|&d| d != 1).collect(),
    };
    reshaped(x, &out)
}

fn unsqueeze(
    attr: Option<&[i64]>,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "data")?;
    let Some(axes) = axes_arg(attr, cx, inputs)? else {
        bail!("Unsqueeze needs axes")
    };
    let r = x.rank() + axes.len();
    let axes = norm_axes(&axes, r)?;
    let mut it = x.shape().iter();
    let out: Vec<usize> = (0..r)
        .map(|i| {
            if axes.contains(&i) {
                1
            } else {
                *it.next().expect("rank adds up")
            }
        })
        .collect();
    reshaped(x, &out)
}

fn flatten(axis: i64, inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "input")?;
    let r = x.rank() as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a > r {
        bail!("Flatten: axis {axis} is out of range for rank {r}");
    }
    let a = a as usize;
    let outer: usize = x.shape()[..a].iter().product();
    let inner: usize = x.shape()[a..].iter().product();
    reshaped(x, &[outer, inner])
}

fn expand(inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "input")?;
    let s = ints(req(inputs, 1, "shape")?, "shape")?;
    if s.iter().any(|&d| d < 0) {
        bail!("Expand: negative dimension in {s:?}");
    }
    let s: Vec<usize> = s.iter().map(|&d| d as usize).collect();
    let out = broadcast_shapes(x.shape(), &s)?;
    Ok(any!(x, a => wrap(a.broadcast(IxDyn(&out)).expect("broadcast checked").to_owned())))
}

fn tile(inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "input")?;
    let reps = ints(req(inputs, 1, "repeats")?, "repeats")?;
    if reps.len() != x.rank() || reps.iter().any(|&r| r < 0) {
        bail!(
            "Tile: repeats {reps:?} must hold one non-negative value per axis of {:?}",
            x.shape()
        );
    }
    let out: Vec<usize> = x
        .shape()
        .iter()
        .zip(&reps)
        .map(|(&d, &r)| d * r as usize)
        .collect();
    fn go<T: Element>(a: &ArrayD<T>, out: &[usize]) -> Tensor {
        let src = elems(a);
        let st = strides_of(a.shape());
        let mut v = Vec::with_capacity(out.iter().product());
        for_each_index(out, |idx| {
            let off: usize = idx
                .iter()
                .zip(a.shape())
                .zip(&st)
                .map(|((&i, &d), &s)| (i % d) * s)
                .sum();
            v.push(src[off].clone());
        });
        wrap(arr(out, v))
    }
    Ok(any!(x, a => go(a, &out)))
}

#[derive(Clone, Copy, PartialEq)]
enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

fn pad(o: &qtool_ir::ops::Pad, cx: &OpCtx, inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "data")?;
    let r = x.rank();
    let mode = match o.mode.as_deref().unwrap_or("constant") {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        m => bail!("Pad: unknown mode '{m}'"),
    };
    let (raw, value): (Vec<i64>, Option<Tensor>) = if cx.opset < 11 {
        let Some(p) = o.pads.clone() else {
            bail!("Pad needs 'pads'")
        };
        let v = o.value.unwrap_or(0.0);
        (
            p,
            Some(super::elementwise::cast(&Tensor::scalar(v), x.dtype())?),
        )
    } else {
        (
            ints(req(inputs, 1, "pads")?, "pads")?,
            opt(inputs, 2).cloned(),
        )
    };
    let axes = match opt(inputs, 3) {
        Some(t) => norm_axes(&ints(t, "axes")?, r)?,
        None => (0..r).collect(),
    };
    if raw.len() != 2 * axes.len() {
        bail!("Pad: {} pads given for {} axes", raw.len(), axes.len());
    }
    let (mut begin, mut end) = (vec![0i64; r], vec![0i64; r]);
    for (i, &a) in axes.iter().enumerate() {
        begin[a] = raw[i];
        end[a] = raw[i + axes.len()];
    }
    let mut out = Vec::with_capacity(r);
    for i in 0..r {
        let d = x.shape()[i] as i64 + begin[i] + end[i];
        if d < 0 {
            bail!(
                "Pad: pads {raw:?} make axis {i} of {:?} negative",
                x.shape()
            );
        }
        if mode != PadMode::Constant && x.shape()[i] == 0 && d > 0 {
            bail!("Pad: cannot pad an empty axis in non-constant mode");
        }
        out.push(d as usize);
    }
    fn go<T: Element>(
        a: &ArrayD<T>,
        out: &[usize],
        begin: &[i64],
        mode: PadMode,
        value: Option<&Tensor>,
    ) -> Result<Tensor, OpError> {
        let fill = match value {
            Some(v) => {
                let va = same::<T>(v, "Pad (constant_value)")?;
                va.iter().next().cloned().unwrap_or_default()
            }
            None => T::default(),
        };
        let src = elems(a);
        let st = strides_of(a.shape());
        let shape = a.shape();
        let mut v = Vec::with_capacity(out.iter().product());
        for_each_index(out, |idx| {
            let mut off = 0usize;
            for k in 0..idx.len() {
                let d = shape[k] as i64;
                let mut s = idx[k] as i64 - begin[k];
                if s < 0 || s >= d {
                    s = match mode {
                        PadMode::Constant => {
                            v.push(fill.clone());
                            return;
                        }
                        PadMode::Edge => s.clamp(0, d - 1),
                        PadMode::Wrap => s.rem_euclid(d),
                        PadMode::Reflect => {
                            if d == 1 {
                                0
                            } else {
                                let p = 2 * (d - 1);
                                let m = s.rem_euclid(p);
                                if m >= d { p - m } else { m }
                            }
                        }
                    };
                }
                off += s as usize * st[k];
            }
            v.push(src[off].clone());
        });
        Ok(wrap(arr(out, v)))
    }
    any!(x, a => go(a, &out, &begin, mode, value.as_ref()))
}

// ------------------------------------------------------------------ gather / scatter

fn gather(axis: i64, inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "data")?;
    let it = req(inputs, 1, "indices")?;
    let ax = norm_axis(axis, x.rank())?;
    let dim = x.shape()[ax];
    let idx = ints(it, "indices")?
        .into_iter()
        .map(|i| index_in(i, dim, "Gather"))
        .collect::<Result<Vec<_>, _>>()?;
    let outer: usize = x.shape()[..ax].iter().product();
    let inner: usize = x.shape()[ax + 1..].iter().product();
    let mut out_shape = x.shape()[..ax].to_vec();
    out_shape.extend_from_slice(it.shape());
    out_shape.extend_from_slice(&x.shape()[ax + 1..]);
    fn go<T: Element>(
        a: &ArrayD<T>,
        idx: &[usize],
        outer: usize,
        dim: usize,
        inner: usize,
        out: &[usize],
    ) -> Tensor {
        let src = elems(a);
        let mut v = Vec::with_capacity(outer * idx.len() * inner);
        for o in 0..outer {
            for &i in idx {
                let b = (o * dim + i) * inner;
                v.extend_from_slice(&src[b..b + inner]);
            }
        }
        wrap(arr(out, v))
    }
    Ok(any!(x, a => go(a, &idx, outer, dim, inner, &out_shape)))
}

fn gather_elements(axis: i64, inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "data")?;
    let it = req(inputs, 1, "indices")?;
    let ax = norm_axis(axis, x.rank())?;
    if it.rank() != x.rank() {
        bail!(
            "GatherElements: indices rank {} differs from data rank {}",
            it.rank(),
            x.rank()
        );
    }
    let idx = ints(it, "indices")?;
    let dim = x.shape()[ax];
    let st = strides_of(x.shape());
    let mut offs = Vec::with_capacity(idx.len());
    let mut k = 0;
    let mut err = None;
    for_each_index(it.shape(), |pos| {
        let mut off = 0;
        for (d, &p) in pos.iter().enumerate() {
            let p = if d == ax {
                match index_in(idx[k], dim, "GatherElements") {
                    Ok(v) => v,
                    Err(e) => {
                        err.get_or_insert(e);
                        0
                    }
                }
            } else {
                p
            };
            off += p * st[d];
        }
        offs.push(off);
        k += 1;
    });
    if let Some(e) = err {
        return Err(e);
    }
    if it
        .shape()
        .iter()
        .enumerate()
        .any(|(d, &s)| d != ax && s > x.shape()[d])
    {
        bail!(
            "GatherElements: indices shape {:?} exceeds data shape {:?}",
            it.shape(),
            x.shape()
        );
    }
    fn go<T: Element>(a: &ArrayD<T>, offs: &[usize], shape: &[usize]) -> Tensor {
        let src = elems(a);
        wrap(arr(shape, offs.iter().map(|&o| src[o].clone()).collect()))
    }
    Ok(any!(x, a => go(a, &offs, it.shape())))
}

/// For ND indexing: the flat offset of every index tuple (last axis of `indices`) into `shape`.
fn nd_offsets(idx: &[i64], k: usize, shape: &[usize], op: &str) -> Result<Vec<usize>, OpError> {
    let st = strides_of(shape);
    idx.chunks(k.max(1))
        .map(|tuple| {
            let mut off = 0;
            for (j, &i) in tuple.iter().enumerate().take(k) {
                off += index_in(i, shape[j], op)? * st[j];
            }
            Ok(off)
        })
        .collect()
}

fn gather_nd(batch_dims: i64, inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "data")?;
    let it = req(inputs, 1, "indices")?;
    let b = batch_dims.max(0) as usize;
    let (ds, is) = (x.shape(), it.shape());
    let q = is.len();
    if q == 0 || b >= q || b > ds.len() {
        bail!("GatherND: bad ranks (data {ds:?}, indices {is:?}, batch_dims {b})");
    }
    let k = is[q - 1];
    if b + k > ds.len() || ds[..b] != is[..b] {
        bail!("GatherND: indices {is:?} do not fit data {ds:?} with batch_dims {b}");
    }
    let idx = ints(it, "indices")?;
    let batches: usize = ds[..b].iter().product();
    let data_batch: usize = ds[b..].iter().product();
    let chunk: usize = ds[b + k..].iter().product();
    let per_batch = (idx.len() / k.max(1)).checked_div(batches).unwrap_or(0);
    let offs = nd_offsets(&idx, k, &ds[b..], "GatherND")?;
    let mut out_shape = is[..q - 1].to_vec();
    out_shape.extend_from_slice(&ds[b + k..]);
    fn go<T: Element>(
        a: &ArrayD<T>,
        offs: &[usize],
        per_batch: usize,
        data_batch: usize,
        chunk: usize,
        out: &[usize],
    ) -> Tensor {
        let src = elems(a);
        let mut v = Vec::with_capacity(offs.len() * chunk);
        for (m, &o) in offs.iter().enumerate() {
            let base = m.checked_div(per_batch).unwrap_or(0) * data_batch + o;
            v.extend_from_slice(&src[base..base + chunk]);
        }
        wrap(arr(out, v))
    }
    Ok(any!(x, a => go(a, &offs, per_batch, data_batch, chunk, &out_shape)))
}

#[derive(Clone, Copy)]
enum Reduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

fn reduction(r: Option<&str>) -> Result<Reduction, OpError> {
    Ok(match r.unwrap_or("none") {
        "none" => Reduction::None,
        "add" => Reduction::Add,
        "mul" => Reduction::Mul,
        "max" => Reduction::Max,
        "min" => Reduction::Min,
        o => bail!("unknown reduction '{o}'"),
    })
}

/// Writes `upd[i]` into `out[offs(i)]` (combined by the reduction), for any element type when the
/// reduction is `none` and for numeric types otherwise.
fn scatter(
    x: &Tensor,
    upd: &Tensor,
    red: Reduction,
    op: &str,
    target: impl Fn(usize) -> usize,
) -> Result<Tensor, OpError> {
    if x.dtype() != upd.dtype() {
        bail!("{op}: updates are {}, data is {}", upd.dtype(), x.dtype());
    }
    fn plain<T: Element>(a: &ArrayD<T>, u: &Tensor, target: &dyn Fn(usize) -> usize) -> Tensor {
        let mut v = elems(a).into_owned();
        for (i, x) in elems(u.view::<T>().expect("dtype checked"))
            .iter()
            .enumerate()
        {
            v[target(i)] = x.clone();
        }
        wrap(arr(a.shape(), v))
    }
    fn num<T: Num>(
        a: &ArrayD<T>,
        u: &Tensor,
        red: Reduction,
        target: &dyn Fn(usize) -> usize,
    ) -> Tensor {
        let mut v = elems(a).into_owned();
        for (i, &x) in elems(u.view::<T>().expect("dtype checked"))
            .iter()
            .enumerate()
        {
            let t = &mut v[target(i)];
            *t = match red {
                Reduction::None => x,
                Reduction::Add => t.add(x),
                Reduction::Mul => t.mul(x),
                Reduction::Max => t.max_nan(x),
                Reduction::Min => t.min_nan(x),
            };
        }
        wrap(arr(a.shape(), v))
    }
    Ok(match red {
        Reduction::None => any!(x, a => plain(a, upd, &target)),
        _ => num_dispatch!(x, a => num(a, upd, red, &target), return Err(bad_type(op, x))),
    })
}

fn scatter_nd(red: Option<&str>, inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "data")?;
    let it = req(inputs, 1, "indices")?;
    let upd = req(inputs, 2, "updates")?;
    let (ds, is) = (x.shape(), it.shape());
    let q = is.len();
    let k = *is
        .last()
        .ok_or_else(|| OpError("ScatterND: indices must have rank >= 1".into()))?;
    if k > ds.len() {
        bail!(
            "ScatterND: index tuples of length {k} for data of rank {}",
            ds.len()
        );
    }
    let mut want = is[..q - 1].to_vec();
    want.extend_from_slice(&ds[k..]);
    if upd.shape() != want.as_slice() {
        bail!(
            "ScatterND: updates shape {:?}, expected {want:?}",
            upd.shape()
        );
    }
    let offs = nd_offsets(&ints(it, "indices")?, k, ds, "ScatterND")?;
    let chunk: usize = ds[k..].iter().product();
    scatter(x, upd, reduction(red)?, "ScatterND", |i| {
        offs[i / chunk.max(1)] + i % chunk.max(1)
    })
}

fn scatter_elements(
    axis: i64,
    red: Option<&str>,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "data")?;
    let it = req(inputs, 1, "indices")?;
    let upd = req(inputs, 2, "updates")?;
    let ax = norm_axis(axis, x.rank())?;
    if it.shape() != upd.shape() || it.rank() != x.rank() {
        bail!(
            "ScatterElements: indices {:?} and updates {:?} must have one shape of data's rank {}",
            it.shape(),
            upd.shape(),
            x.rank()
        );
    }
    let idx = ints(it, "indices")?;
    let st = strides_of(x.shape());
    let mut offs = Vec::with_capacity(idx.len());
    let mut k = 0;
    let mut err = None;
    for_each_index(it.shape(), |pos| {
        let mut off = 0;
        for (d, &p) in pos.iter().enumerate() {
            let p = if d == ax {
                index_in(idx[k], x.shape()[ax], "ScatterElements").unwrap_or_else(|e| {
                    err.get_or_insert(e);
                    0
                })
            } else {
                p
            };
            off += p * st[d];
        }
        offs.push(off);
        k += 1;
    });
    if let Some(e) = err {
        return Err(e);
    }
    scatter(x, upd, reduction(red)?, "ScatterElements", |i| offs[i])
}

// ------------------------------------------------------------------ shapes and constants

fn shape(
    start: Option<i64>,
    end: Option<i64>,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "data")?;
    let r = x.rank() as i64;
    let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (s, e) = (clampi(start.unwrap_or(0)), clampi(end.unwrap_or(r)));
    let v: Vec<i64> = if e > s {
        x.shape()[s..e].iter().map(|&d| d as i64).collect()
    } else {
        vec![]
    };
    Ok(Tensor::from_vec(&[v.len()], v)?)
}

fn constant(o: &qtool_ir::ops::Constant) -> Result<Tensor, OpError> {
    if let Some(v) = &o.value {
        return Ok(v.to_tensor()?);
    }
    if let Some(v) = o.value_float {
        return Ok(Tensor::scalar(v));
    }
    if let Some(v) = &o.value_floats {
        return Ok(Tensor::from_vec(&[v.len()], v.clone())?);
    }
    if let Some(v) = o.value_int {
        return Ok(Tensor::scalar(v));
    }
    if let Some(v) = &o.value_ints {
        return Ok(Tensor::from_vec(&[v.len()], v.clone())?);
    }
    if let Some(v) = &o.value_string {
        return Ok(Tensor::scalar(v.clone()));
    }
    if let Some(v) = &o.value_strings {
        return Ok(Tensor::from_vec(&[v.len()], v.clone())?);
    }
    bail!("Constant has no value attribute")
}

fn constant_of_shape(
    o: &qtool_ir::ops::ConstantOfShape,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor, OpError> {
    let s = ints(req(inputs, 0, "input")?, "shape")?;
    if s.iter().any(|&d| d < 0) {
        bail!("ConstantOfShape: negative dimension in {s:?}");
    }
    let shape: Vec<usize> = s.iter().map(|&d| d as usize).collect();
    let value = match &o.value {
        Some(v) => v.to_tensor()?,
        None => Tensor::scalar(0f32),
    };
    if value.len() != 1 {
        bail!(
            "ConstantOfShape: value must hold one element, got shape {:?}",
            value.shape()
        );
    }
    Ok(
        any!(&value, a => wrap(ArrayD::from_elem(IxDyn(&shape), a.iter().next().cloned().expect("one element")))),
    )
}

fn range(inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let (s, l, d) = (
        req(inputs, 0, "start")?,
        req(inputs, 1, "limit")?,
        req(inputs, 2, "delta")?,
    );
    if s.dtype() != l.dtype() || s.dtype() != d.dtype() {
        bail!("Range: start, limit and delta must have one type");
    }
    fn go<T: Num>(s: &ArrayD<T>, l: &Tensor, d: &Tensor) -> Result<Tensor, OpError> {
        let one = |a: &ArrayD<T>| {
            a.iter()
                .next()
                .copied()
                .ok_or_else(|| OpError("Range: empty scalar".into()))
        };
        let (s, l, d) = (one(s)?, one(l.view::<T>()?)?, one(d.view::<T>()?)?);
        if d == T::zero() {
            bail!("Range: delta must not be 0");
        }
        let n = ((l.to_f64() - s.to_f64()) / d.to_f64()).ceil().max(0.0) as usize;
        let mut v = Vec::with_capacity(n);
        let mut x = s;
        for _ in 0..n {
            v.push(x);
            x = x.add(d);
        }
        Ok(wrap(arr(&[n], v)))
    }
    num_dispatch!(s, a => go(a, l, d), Err(bad_type("Range", s)))
}

fn non_zero(inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "X")?;
    let shape: Vec<usize> = if x.rank() == 0 {
        vec![1]
    } else {
        x.shape().to_vec()
    };
    let flags: Vec<bool> = match x {
        Tensor::Bool(a) => a.iter().copied().collect(),
        other => {
            num_dispatch!(other, a => a.iter().map(|v| v.to_f64() != 0.0).collect(), return Err(bad_type("NonZero", x)))
        }
    };
    let nz: Vec<usize> = flags
        .iter()
        .enumerate()
        .filter(|(_, f)| **f)
        .map(|(i, _)| i)
        .collect();
    let r = shape.len();
    let st = strides_of(&shape);
    let mut v = vec![0i64; r * nz.len()];
    for (j, &i) in nz.iter().enumerate() {
        for k in 0..r {
            v[k * nz.len() + j] = ((i / st[k]) % shape[k]) as i64;
        }
    }
    Ok(Tensor::from_vec(&[r, nz.len()], v)?)
}

fn one_hot(axis: i64, inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let it = req(inputs, 0, "indices")?;
    let dt = req(inputs, 1, "depth")?;
    let vals = req(inputs, 2, "values")?;
    let depth = dt
        .to_f64_vec()
        .and_then(|v| v.first().copied())
        .ok_or_else(|| bad_type("OneHot (depth)", dt))? as i64;
    if depth < 1 {
        bail!("OneHot: depth must be positive, got {depth}");
    }
    if vals.len() != 2 {
        bail!(
            "OneHot: values must hold [off, on], got shape {:?}",
            vals.shape()
        );
    }
    let idx = it
        .to_f64_vec()
        .ok_or_else(|| bad_type("OneHot (indices)", it))?;
    let r = it.rank();
    let ax = norm_axis(axis, r + 1)?;
    let outer: usize = it.shape()[..ax].iter().product();
    let inner: usize = it.shape()[ax..].iter().product();
    let mut out_shape = it.shape()[..ax].to_vec();
    out_shape.push(depth as usize);
    out_shape.extend_from_slice(&it.shape()[ax..]);
    fn go<T: Element>(
        v: &ArrayD<T>,
        idx: &[f64],
        depth: i64,
        outer: usize,
        inner: usize,
        out: &[usize],
    ) -> Tensor {
        let off = v.iter().next().expect("two values").clone();
        let on = v.iter().nth(1).expect("two values").clone();
        let mut o = vec![off; outer * depth as usize * inner];
        for a in 0..outer {
            for i in 0..inner {
                let mut k = idx[a * inner + i] as i64;
                if k < 0 {
                    k += depth;
                }
                if (0..depth).contains(&k) {
                    o[(a * depth as usize + k as usize) * inner + i] = on.clone();
                }
            }
        }
        wrap(arr(out, o))
    }
    Ok(any!(vals, a => go(a, &idx, depth, outer, inner, &out_shape)))
}

fn trilu(upper: bool, inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "input")?;
    let k = opt(inputs, 1)
        .map(|t| int_scalar(t, "k"))
        .transpose()?
        .unwrap_or(0);
    let r = x.rank();
    if r < 2 {
        bail!("Trilu needs rank >= 2, got {:?}", x.shape());
    }
    let (rows, cols) = (x.shape()[r - 2], x.shape()[r - 1]);
    fn go<T: Element>(a: &ArrayD<T>, rows: usize, cols: usize, k: i64, upper: bool) -> Tensor {
        let mut v = elems(a).into_owned();
        for (p, e) in v.iter_mut().enumerate() {
            let (i, j) = (((p / cols) % rows) as i64, (p % cols) as i64);
            let keep = if upper { j - i >= k } else { j - i <= k };
            if !keep {
                *e = T::default();
            }
        }
        wrap(arr(a.shape(), v))
    }
    if rows == 0 || cols == 0 {
        return Ok(x.clone());
    }
    Ok(any!(x, a => go(a, rows, cols, k, upper)))
}
