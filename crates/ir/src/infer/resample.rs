//! Resampling: Resize (opset 10 `scales` input; 11+ roi/scales/sizes; 18+ `axes` and
//! keep_aspect_ratio_policy), Upsample (scales attribute in 7–8, input in 9), DepthToSpace and
//! SpaceToDepth.

use super::dims::{self, Shape, k, kv};
use super::{Cx, Out, R, fact};
use crate::ops;
use crate::types::DimValue;

fn by_scales(input: &[DimValue], axes: &[usize], scales: &[f64]) -> Result<Shape, String> {
    let mut out = input.to_vec();
    for (&a, &s) in axes.iter().zip(scales) {
        if s.is_nan() || s <= 0.0 {
            return Err(format!("scale {s} for axis {a} is not positive"));
        }
        out[a] = match kv(&input[a]) {
            Some(d) => k((d as f64 * s).floor() as i64),
            None if s == 1.0 => input[a].clone(),
            None => DimValue::Unknown,
        };
    }
    Ok(out)
}

pub(crate) fn resize(cx: &Cx, o: &ops::Resize) -> R {
    let dtype = cx.dtype(0);
    let Some(x) = cx.shape(0) else {
        return Ok(Out::one(fact(dtype, None)));
    };
    let r = x.len();
    let axes: Vec<usize> = match &o.axes {
        Some(a) => dims::axes(a, r)?,
        None => (0..r).collect(),
    };
    let (scales_i, sizes_i) = if cx.opset < 11 {
        (1, None)
    } else {
        (2, Some(3))
    };
    let check_len = |what: &str, n: usize| -> Result<(), String> {
        if n != axes.len() {
            return Err(format!(
                "{what} has {n} entries but {} axes are resized",
                axes.len()
            ));
        }
        Ok(())
    };
    if let Some(si) = sizes_i
        && cx.present(si)
    {
        let Some(sizes) = cx.sym(si) else {
            return Ok(Out::one(fact(dtype, Some(dims::unknown_dims(r))))
                .because(format!("sizes '{}' are not known", cx.name(si))));
        };
        check_len("sizes", sizes.len())?;
        let policy = o.keep_aspect_ratio_policy.as_deref().unwrap_or("stretch");
        let mut out = x.to_vec();
        match policy {
            "stretch" => {
                for (&a, s) in axes.iter().zip(&sizes) {
                    out[a] = s.clone();
                }
            }
            "not_larger" | "not_smaller" => {
                let ins: Option<Vec<i64>> = axes.iter().map(|&a| kv(&x[a])).collect();
                let outs: Option<Vec<i64>> = sizes.iter().map(kv).collect();
                match (ins, outs) {
                    (Some(ins), Some(outs)) => {
                        let ratios = ins.iter().zip(&outs).map(|(&i, &o)| o as f64 / i as f64);
                        let scale = if policy == "not_larger" {
                            ratios.fold(f64::INFINITY, f64::min)
                        } else {
                            ratios.fold(0.0, f64::max)
                        };
                        for (&a, &i) in axes.iter().zip(&ins) {
                            out[a] = k((scale * i as f64).round() as i64);
                        }
                    }
                    _ => {
                        for &a in &axes {
                            out[a] = DimValue::Unknown;
                        }
                    }
                }
            }
            other => {
                return Err(format!(
                    "keep_aspect_ratio_policy '{other}' is not stretch, not_larger or not_smaller"
                ));
            }
        }
        return Ok(Out::one(fact(dtype, Some(out))));
    }
    if cx.present(scales_i) {
        let Some(scales) = cx.floats(scales_i) else {
            return Ok(Out::one(fact(dtype, Some(dims::unknown_dims(r))))
                .because(format!("scales '{}' are not known", cx.name(scales_i))));
        };
        check_len("scales", scales.len())?;
        return Ok(Out::one(fact(dtype, Some(by_scales(x, &axes, &scales)?))));
    }
    Err("neither scales nor sizes is given".into())
}

pub(crate) fn upsample(cx: &Cx, o: &ops::Upsample) -> R {
    let dtype = cx.dtype(0);
    let Some(x) = cx.shape(0) else {
        return Ok(Out::one(fact(dtype, None)));
    };
    let scales: Vec<f64> = match &o.scales {
        Some(s) => s.iter().map(|&v| v as f64).collect(),
        None => match cx.floats(1) {
            Some(s) => s,
            None if cx.has(1) => {
                return Ok(Out::one(fact(dtype, Some(dims::unknown_dims(x.len()))))
                    .because(format!("scales '{}' are not known", cx.name(1))));
            }
            None => return Err("scales are missing".into()),
        },
    };
    if scales.len() != x.len() {
        return Err(format!(
            "{} scales for an input of rank {}",
            scales.len(),
            x.len()
        ));
    }
    let axes: Vec<usize> = (0..x.len()).collect();
    Ok(Out::one(fact(dtype, Some(by_scales(x, &axes, &scales)?))))
}

fn block<'a>(cx: &Cx<'a>, blocksize: Option<i64>) -> Result<Option<(&'a [DimValue], i64)>, String> {
    let b = blocksize.ok_or("attribute 'blocksize' is missing")?;
    if b <= 0 {
        return Err(format!("blocksize {b} is not positive"));
    }
    match cx.shape(0) {
        Some(x) if x.len() != 4 => Err(format!("input shape {} is not 4-d", dims::fmt_dims(x))),
        Some(x) => Ok(Some((x, b))),
        None => Ok(None),
    }
}

pub(crate) fn depth_to_space(cx: &Cx, blocksize: Option<i64>) -> R {
    let shape = match block(cx, blocksize)? {
        Some((x, b)) => Some(vec![
            x[0].clone(),
            dims::div_exact(&x[1], b * b, "channels")?,
            dims::scale(&x[2], b),
            dims::scale(&x[3], b),
        ]),
        None => None,
    };
    Ok(Out::one(fact(cx.dtype(0), shape)))
}

pub(crate) fn space_to_depth(cx: &Cx, blocksize: Option<i64>) -> R {
    let shape = match block(cx, blocksize)? {
        Some((x, b)) => Some(vec![
            x[0].clone(),
            dims::scale(&x[1], b * b),
            dims::div_exact(&x[2], b, "height")?,
            dims::div_exact(&x[3], b, "width")?,
        ]),
        None => None,
    };
    Ok(Out::one(fact(cx.dtype(0), shape)))
}
