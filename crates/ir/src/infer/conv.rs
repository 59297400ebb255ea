//! Convolutions and pooling: Conv, ConvTranspose, MaxPool (with Indices), AveragePool and the global
//! pools, with auto_pad SAME_UPPER/SAME_LOWER/VALID, explicit pads, strides, dilations, ceil_mode,
//! output_padding and output_shape. The shape helpers are shared with the quantized variants.

use super::dims::{self, Shape, k, kv};
use super::{Cx, Out, R, fact};
use crate::ops;
use crate::types::{DimValue, Fact};
use qtool_tensor::DType;

/// The spatial attributes of a convolution or pooling op.
#[derive(Default)]
pub(crate) struct Spatial<'a> {
    pub auto_pad: Option<&'a str>,
    pub kernel: Option<&'a [i64]>,
    pub strides: Option<&'a [i64]>,
    pub dilations: Option<&'a [i64]>,
    pub pads: Option<&'a [i64]>,
    pub ceil_mode: bool,
}

fn at(v: Option<&[i64]>, i: usize, default: i64) -> i64 {
    v.and_then(|v| v.get(i).copied()).unwrap_or(default)
}

fn check_len(name: &str, v: Option<&[i64]>, n: usize) -> Result<(), String> {
    match v {
        Some(v) if v.len() != n => Err(format!("'{name}' has {} entries, expected {n}", v.len())),
        _ => Ok(()),
    }
}

/// Output spatial sizes of a convolution or pool over `input` with kernel `kernel`.
pub(crate) fn spatial_out(
    input: &[DimValue],
    kernel: &[i64],
    sp: &Spatial,
) -> Result<Shape, String> {
    let n = input.len();
    if kernel.len() != n {
        return Err(format!(
            "kernel has {} spatial dimensions but the input has {n}",
            kernel.len()
        ));
    }
    check_len("strides", sp.strides, n)?;
    check_len("dilations", sp.dilations, n)?;
    let auto = sp.auto_pad.unwrap_or("NOTSET");
    if matches!(auto, "NOTSET" | "") {
        check_len("pads", sp.pads, 2 * n)?;
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let kk = kernel[i];
        let s = at(sp.strides, i, 1);
        let d = at(sp.dilations, i, 1);
        if kk <= 0 || s <= 0 || d <= 0 {
            return Err(format!(
                "kernel {kk}, stride {s} and dilation {d} must be positive"
            ));
        }
        let dk = (kk - 1) * d + 1;
        let x = &input[i];
        out.push(match auto {
            "SAME_UPPER" | "SAME_LOWER" => match kv(x) {
                Some(x) => k((x + s - 1) / s),
                None if s == 1 => x.clone(),
                None => DimValue::Unknown,
            },
            "VALID" => match kv(x) {
                Some(x) if x < dk => {
                    return Err(format!(
                        "input size {x} is smaller than the (dilated) kernel {dk}"
                    ));
                }
                Some(x) => k((x - dk) / s + 1),
                None if dk == 1 && s == 1 => x.clone(),
                None => DimValue::Unknown,
            },
            "NOTSET" | "" => {
                let (pb, pe) = (at(sp.pads, i, 0), at(sp.pads, i + n, 0));
                match kv(x) {
                    Some(x) => {
                        let total = x + pb + pe - dk;
                        if total < 0 {
                            return Err(format!(
                                "padded input size {} is smaller than the (dilated) kernel {dk}",
                                x + pb + pe
                            ));
                        }
                        if sp.ceil_mode {
                            let mut o = (total + s - 1) / s + 1;
                            // The last window must start inside the input or its leading padding.
                            if (o - 1) * s >= x + pb {
                                o -= 1;
                            }
                            k(o)
                        } else {
                            k(total / s + 1)
                        }
                    }
                    None if dk == 1 && s == 1 && pb + pe == 0 => x.clone(),
                    None => DimValue::Unknown,
                }
            }
            other => {
                return Err(format!(
                    "auto_pad '{other}' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID"
                ));
            }
        });
    }
    Ok(out)
}

/// Output shape of a (possibly quantized) convolution: x `[N, C, ...]`, w `[M, C/group, k...]`.
pub(crate) fn conv_shape(
    x: Option<&[DimValue]>,
    w: Option<&[DimValue]>,
    bias: Option<&[DimValue]>,
    sp: &Spatial,
    group: i64,
) -> Result<Option<Shape>, String> {
    if group <= 0 {
        return Err(format!("group {group} must be positive"));
    }
    let rank = match (x, w) {
        (Some(x), Some(w)) if x.len() != w.len() => {
            return Err(format!(
                "input shape {} and weight shape {} differ in rank",
                dims::fmt_dims(x),
                dims::fmt_dims(w)
            ));
        }
        (Some(x), _) => x.len(),
        (None, Some(w)) => w.len(),
        (None, None) => return Ok(None),
    };
    if rank < 3 {
        return Err(format!(
            "input rank {rank} is below 3 (needs N, C and spatial dimensions)"
        ));
    }
    let m = w.map(|w| w[0].clone()).unwrap_or(DimValue::Unknown);
    if let (Some(x), Some(w)) = (x, w)
        && let (Some(c), Some(wc)) = (kv(&x[1]), kv(&w[1]))
        && c != wc * group
    {
        return Err(format!(
            "channel mismatch: input has {c} channels but the weight expects {} ({wc} per group x group {group})",
            wc * group
        ));
    }
    if let Some(mm) = kv(&m)
        && mm % group != 0
    {
        return Err(format!(
            "{mm} output channels are not divisible by group {group}"
        ));
    }
    if let Some(b) = bias {
        if b.len() != 1 {
            return Err(format!("bias shape {} is not 1-d", dims::fmt_dims(b)));
        }
        if !dims::compatible(&b[0], &m) {
            return Err(format!(
                "bias has {} elements but there are {} output channels",
                dims::fmt_dims(b),
                dims::fmt_dims(&[m])
            ));
        }
    }
    let kernel: Option<Vec<i64>> = match (sp.kernel, w) {
        (Some(ks), Some(w)) => {
            for (i, &kk) in ks.iter().enumerate() {
                if let Some(wk) = w.get(i + 2).and_then(kv)
                    && wk != kk
                {
                    return Err(format!(
                        "kernel_shape {ks:?} disagrees with weight shape {}",
                        dims::fmt_dims(w)
                    ));
                }
            }
            Some(ks.to_vec())
        }
        (Some(ks), None) => Some(ks.to_vec()),
        (None, Some(w)) => w[2..].iter().map(kv).collect(),
        (None, None) => None,
    };
    let n = x.map(|x| x[0].clone()).unwrap_or(DimValue::Unknown);
    let spatial = match (x, kernel) {
        (Some(x), Some(kernel)) => spatial_out(&x[2..], &kernel, sp)?,
        _ => dims::unknown_dims(rank - 2),
    };
    let mut out = vec![n, m];
    out.extend(spatial);
    Ok(Some(out))
}

pub(crate) fn conv(cx: &Cx, o: &ops::Conv) -> R {
    let sp = Spatial {
        auto_pad: o.auto_pad.as_deref(),
        kernel: o.kernel_shape.as_deref(),
        strides: o.strides.as_deref(),
        dilations: o.dilations.as_deref(),
        pads: o.pads.as_deref(),
        ceil_mode: false,
    };
    let bias = if cx.has(2) { cx.shape(2) } else { None };
    let shape = conv_shape(cx.shape(0), cx.shape(1), bias, &sp, o.group.unwrap_or(1))?;
    Ok(Out::one(fact(cx.dtype(0).or(cx.dtype(1)), shape)))
}

pub(crate) fn conv_transpose(cx: &Cx, o: &ops::ConvTranspose) -> R {
    let group = o.group.unwrap_or(1);
    if group <= 0 {
        return Err(format!("group {group} must be positive"));
    }
    let (x, w) = (cx.shape(0), cx.shape(1));
    let dtype = cx.dtype(0).or(cx.dtype(1));
    let rank = match (x, w) {
        (Some(x), Some(w)) if x.len() != w.len() => {
            return Err(format!(
                "input shape {} and weight shape {} differ in rank",
                dims::fmt_dims(x),
                dims::fmt_dims(w)
            ));
        }
        (Some(x), _) => x.len(),
        (None, Some(w)) => w.len(),
        (None, None) => return Ok(Out::one(fact(dtype, None))),
    };
    if rank < 3 {
        return Err(format!("input rank {rank} is below 3"));
    }
    if let (Some(x), Some(w)) = (x, w)
        && !dims::compatible(&x[1], &w[0])
    {
        return Err(format!(
            "channel mismatch: input has {} channels but the weight expects {}",
            dims::fmt_dims(&x[1..2]),
            dims::fmt_dims(&w[0..1])
        ));
    }
    let m = w
        .map(|w| dims::scale(&w[1], group))
        .unwrap_or(DimValue::Unknown);
    if cx.has(2)
        && let Some(b) = cx.shape(2)
        && (b.len() != 1 || !dims::compatible(&b[0], &m))
    {
        return Err(format!(
            "bias shape {} does not match {} output channels",
            dims::fmt_dims(b),
            dims::fmt_dims(&[m])
        ));
    }
    let n = rank - 2;
    let kernel: Option<Vec<i64>> = match (&o.kernel_shape, w) {
        (Some(ks), _) => Some(ks.clone()),
        (None, Some(w)) => w[2..].iter().map(kv).collect(),
        (None, None) => None,
    };
    let spatial: Shape = if let Some(os) = &o.output_shape {
        if os.len() < n {
            return Err(format!(
                "output_shape {os:?} has fewer than {n} spatial entries"
            ));
        }
        os[os.len() - n..].iter().map(|&d| k(d)).collect()
    } else if let (Some(x), Some(kernel)) = (x, kernel) {
        if kernel.len() != n {
            return Err(format!(
                "kernel has {} spatial dimensions but the input has {n}",
                kernel.len()
            ));
        }
        let auto = o.auto_pad.as_deref().unwrap_or("NOTSET");
        let (strides, dil, pads, opad) = (
            o.strides.as_deref(),
            o.dilations.as_deref(),
            o.pads.as_deref(),
            o.output_padding.as_deref(),
        );
        check_len("strides", strides, n)?;
        check_len("dilations", dil, n)?;
        check_len("output_padding", opad, n)?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let s = at(strides, i, 1);
            let dk = (kernel[i] - 1) * at(dil, i, 1) + 1;
            let op = at(opad, i, 0);
            out.push(match (auto, kv(&x[i + 2])) {
                ("SAME_UPPER" | "SAME_LOWER", Some(v)) => k(v * s),
                ("VALID", Some(v)) => k(s * (v - 1) + op + dk),
                ("NOTSET" | "", Some(v)) => {
                    check_len("pads", pads, 2 * n)?;
                    let o = s * (v - 1) + op + dk - at(pads, i, 0) - at(pads, i + n, 0);
                    if o <= 0 {
                        return Err(format!(
                            "output size {o} along spatial axis {i} is not positive"
                        ));
                    }
                    k(o)
                }
                ("SAME_UPPER" | "SAME_LOWER" | "VALID" | "NOTSET" | "", None) => DimValue::Unknown,
                (other, _) => {
                    return Err(format!(
                        "auto_pad '{other}' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID"
                    ));
                }
            });
        }
        out
    } else {
        dims::unknown_dims(n)
    };
    let mut out = vec![x.map(|x| x[0].clone()).unwrap_or(DimValue::Unknown), m];
    out.extend(spatial);
    Ok(Out::one(fact(dtype, Some(out))))
}

/// Output shape of a pool over x (`[N, C, ...]`, or `[N, ..., C]` when channels last).
pub(crate) fn pool_shape(
    x: Option<&[DimValue]>,
    sp: &Spatial,
    channels_last: bool,
) -> Result<Option<Shape>, String> {
    let Some(x) = x else { return Ok(None) };
    if x.len() < 3 {
        return Err(format!("input rank {} is below 3", x.len()));
    }
    let kernel = sp.kernel.ok_or("attribute 'kernel_shape' is missing")?;
    let r = x.len();
    let (sp_in, c) = if channels_last {
        (&x[1..r - 1], &x[r - 1])
    } else {
        (&x[2..], &x[1])
    };
    let spatial = spatial_out(sp_in, kernel, sp)?;
    let mut out = vec![x[0].clone()];
    if channels_last {
        out.extend(spatial);
        out.push(c.clone());
    } else {
        out.push(c.clone());
        out.extend(spatial);
    }
    Ok(Some(out))
}

pub(crate) fn max_pool(cx: &Cx, o: &ops::MaxPool) -> R {
    let sp = Spatial {
        auto_pad: o.auto_pad.as_deref(),
        kernel: o.kernel_shape.as_deref(),
        strides: o.strides.as_deref(),
        dilations: o.dilations.as_deref(),
        pads: o.pads.as_deref(),
        ceil_mode: o.ceil_mode.unwrap_or(0) != 0,
    };
    let shape = pool_shape(cx.shape(0), &sp, false)?;
    Ok(Out::many(vec![
        fact(cx.dtype(0), shape.clone()),
        fact(Some(DType::I64), shape),
    ]))
}

pub(crate) fn average_pool(cx: &Cx, o: &ops::AveragePool) -> R {
    let sp = Spatial {
        auto_pad: o.auto_pad.as_deref(),
        kernel: o.kernel_shape.as_deref(),
        strides: o.strides.as_deref(),
        dilations: o.dilations.as_deref(),
        pads: o.pads.as_deref(),
        ceil_mode: o.ceil_mode.unwrap_or(0) != 0,
    };
    Ok(Out::one(fact(
        cx.dtype(0),
        pool_shape(cx.shape(0), &sp, false)?,
    )))
}

/// Shape of a global pool of input `i`: spatial dimensions become 1.
pub(crate) fn global_shape(
    x: Option<&[DimValue]>,
    channels_last: bool,
) -> Result<Option<Shape>, String> {
    let Some(x) = x else { return Ok(None) };
    if x.len() < 2 {
        return Err(format!("input rank {} is below 2", x.len()));
    }
    let r = x.len();
    Ok(Some(
        x.iter()
            .enumerate()
            .map(|(i, d)| {
                if i == 0 || (!channels_last && i == 1) || (channels_last && i == r - 1) {
                    d.clone()
                } else {
                    k(1)
                }
            })
            .collect(),
    ))
}

pub(crate) fn global_pool(cx: &Cx, i: usize, channels_last: bool) -> R {
    Ok(Out::one(Fact {
        dtype: cx.dtype(i),
        shape: global_shape(cx.shape(i), channels_last)?,
    }))
}
