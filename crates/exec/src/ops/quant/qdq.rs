//! QuantizeLinear, DequantizeLinear (per-tensor, per-axis, blocked; 8- and 16-bit, int32 input for
//! DequantizeLinear) and DynamicQuantizeLinear.

use super::{floats, opt, req, tensor, zero_points};
use crate::bail;
use crate::error::OpError;
use crate::ops::OpCtx;
use crate::util::norm_axis;
use qtool_ir::ops;
use qtool_tensor::quant::{self, QInt};
use qtool_tensor::{DType, Tensor, bf16, f16};

/// Which scale / zero-point entry an element of the data uses.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// One for all.
    Tensor,
    /// One per index of the axis (`dim` long, `inner` elements after it).
    Axis { dim: usize, inner: usize },
    /// One per block of `bs` indices along the axis, for every other coordinate.
    Block {
        dim: usize,
        inner: usize,
        bs: usize,
        nb: usize,
    },
}

impl Layout {
    fn new(
        x: &[usize],
        s: &[usize],
        axis: Option<i64>,
        block_size: Option<i64>,
        opset: i64,
    ) -> Result<Layout, OpError> {
        let n_s: usize = s.iter().product();
        let bs = block_size.unwrap_or(0);
        if bs < 0 {
            bail!("block_size {bs} must not be negative");
        }
        if bs > 0 {
            let a = norm_axis(axis.unwrap_or(1), x.len())?;
            if s.len() != x.len() {
                bail!(
                    "blocked quantization needs a scale of the data's rank: data {x:?}, scale {s:?}"
                );
            }
            let bs = bs as usize;
            for (i, (&dx, &ds)) in x.iter().zip(s).enumerate() {
                let want = if i == a { dx.div_ceil(bs) } else { dx };
                if ds != want {
                    bail!(
                        "blocked quantization (axis {a}, block_size {bs}): scale shape {s:?} does not fit data shape {x:?}"
                    );
                }
            }
            return Ok(Layout::Block {
                dim: x[a],
                inner: x[a + 1..].iter().product(),
                bs,
                nb: s[a],
            });
        }
        if n_s == 1 && s.len() <= 1 {
            return Ok(Layout::Tensor);
        }
        if opset < 13 {
            bail!("opset {opset} supports only a per-tensor scale, got shape {s:?}");
        }
        let a = norm_axis(axis.unwrap_or(1), x.len())?;
        if s.len() != 1 || s[0] != x[a] {
            bail!(
                "per-axis scale must be 1-D with {} entries (axis {a} of {x:?}), got shape {s:?}",
                x[a]
            );
        }
        Ok(Layout::Axis {
            dim: x[a],
            inner: x[a + 1..].iter().product(),
        })
    }

    #[inline]
    fn index(&self, i: usize) -> usize {
        match *self {
            Layout::Tensor => 0,
            Layout::Axis { dim, inner } => (i / inner) % dim,
            Layout::Block { dim, inner, bs, nb } => {
                let (outer, rest) = (i / (dim * inner), i % (dim * inner));
                let (a, k) = (rest / inner, rest % inner);
                (outer * nb + a / bs) * inner + k
            }
        }
    }
}

/// Data values widened to f32 (float types exactly; int32 input as ONNX's `float(x)`).
fn to_f32(x: &Tensor, what: &str) -> Result<Vec<f32>, OpError> {
    match x.dtype() {
        DType::F32 | DType::F16 | DType::BF16 | DType::F64 => floats(x, what),
        DType::I32 => Ok(x.to_vec::<i32>()?.into_iter().map(|v| v as f32).collect()),
        d => bail!("{what} must be a float (or int32) tensor, got {d}"),
    }
}

fn check_zp_shape(zp: Option<&Tensor>, s: &Tensor) -> Result<(), OpError> {
    if let Some(z) = zp
        && z.len() != s.len()
    {
        bail!(
            "zero point shape {:?} does not match scale shape {:?}",
            z.shape(),
            s.shape()
        );
    }
    Ok(())
}

fn quantize_into<T: QInt + qtool_tensor::Element>(
    shape: &[usize],
    x: &[f32],
    s: &[f32],
    z: &[i32],
    l: Layout,
) -> Result<Tensor, OpError> {
    let zp = |j: usize| if z.len() == 1 { z[0] } else { z[j] };
    let v: Vec<T> = match l {
        Layout::Tensor => {
            let (s, z) = (s[0], z[0]);
            crate::util::map_vec(x, |&v| quant::quantize::<T>(v, s, z))
        }
        _ => x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let j = l.index(i);
                quant::quantize::<T>(v, s[j], zp(j))
            })
            .collect(),
    };
    tensor(shape, v)
}

pub(super) fn quantize_linear(
    op: &ops::QuantizeLinear,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0, "x")?;
    let s = req(inputs, 1, "y_scale")?;
    let zp = opt(inputs, 2);
    let xv = to_f32(x, "x")?;
    let sv = floats(s, "y_scale")?;
    check_zp_shape(zp, s)?;
    let attr_dtype = match op.output_dtype {
        None | Some(0) => None,
        Some(c) => Some(
            DType::from_code(c as i32)
                .ok_or_else(|| OpError(format!("unknown output_dtype {c}")))?,
        ),
    };
    let out = match (zp, attr_dtype) {
        (Some(z), Some(d)) if z.dtype() != d => bail!(
            "output_dtype {d} differs from the zero point's type {}",
            z.dtype()
        ),
        (Some(z), _) => z.dtype(),
        (None, Some(d)) => d,
        (None, None) => DType::U8,
    };
    let zv = zero_points(zp, "y_zero_point")?;
    let l = Layout::new(x.shape(), s.shape(), op.axis, op.block_size, cx.opset)?;
    let shape = x.shape();
    Ok(vec![match out {
        DType::U8 => quantize_into::<u8>(shape, &xv, &sv, &zv, l)?,
        DType::I8 => quantize_into::<i8>(shape, &xv, &sv, &zv, l)?,
        DType::U16 => quantize_into::<u16>(shape, &xv, &sv, &zv, l)?,
        DType::I16 => quantize_into::<i16>(shape, &xv, &sv, &zv, l)?,
        d => bail!("QuantizeLinear to {d} is not supported"),
    }])
}

pub(super) fn dequantize_linear(
    op: &ops::DequantizeLinear,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0, "x")?;
    let s = req(inputs, 1, "x_scale")?;
    let zp = opt(inputs, 2);
    if let Some(z) = zp
        && z.dtype() != x.dtype()
    {
        bail!(
            "zero point type {} differs from the data type {}",
            z.dtype(),
            x.dtype()
        );
    }
    let sv = floats(s, "x_scale")?;
    check_zp_shape(zp, s)?;
    let zv = zero_points(zp, "x_zero_point")?;
    let q: Vec<i32> = match x.dtype() {
        DType::U8 | DType::I8 | DType::U16 | DType::I16 => x
            .to_i64_vec()
            .expect("integer tensor")
            .into_iter()
            .map(|v| v as i32)
            .collect(),
        DType::I32 => {
            if zv.iter().any(|&z| z != 0) {
                bail!("an int32 input needs a zero point of 0");
            }
            x.to_vec::<i32>()?
        }
        d => bail!("DequantizeLinear of {d} is not supported"),
    };
    let l = Layout::new(x.shape(), s.shape(), op.axis, op.block_size, cx.opset)?;
    let zp_at = |j: usize| if zv.len() == 1 { zv[0] } else { zv[j] };
    let y: Vec<f32> = match l {
        Layout::Tensor => {
            let (s, z) = (sv[0], zv[0]);
            crate::util::map_vec(&q, |&v| quant::dequantize(v, s, z))
        }
        _ => q
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let j = l.index(i);
                quant::dequantize(v, sv[j], zp_at(j))
            })
            .collect(),
    };
    let out = match op.output_dtype {
        None | Some(0) => s.dtype(),
        Some(c) => DType::from_code(c as i32)
            .ok_or_else(|| OpError(format!("unknown output_dtype {c}")))?,
    };
    let shape = x.shape();
    Ok(vec![match out {
        DType::F32 => tensor(shape, y)?,
        DType::F16 => tensor(shape, y.into_iter().map(f16::from_f32).collect())?,
        DType::BF16 => tensor(shape, y.into_iter().map(bf16::from_f32).collect())?,
        d => bail!("DequantizeLinear to {d} is not supported"),
    }])
}

/// ONNX DynamicQuantizeLinear (uint8): parameters by `quant::dynamic_quant_params` over the data's
/// range (NaN ignored), then `quant::quantize`.
pub(super) fn dynamic_quantize_linear(inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0, "x")?;
    let xv = match x.dtype() {
        DType::F32 => x.to_vec::<f32>()?,
        d => bail!("DynamicQuantizeLinear needs a float tensor, got {d}"),
    };
    let (q, p) = dynamic_quantize(&xv);
    Ok(vec![
        tensor(x.shape(), q)?,
        Tensor::scalar(p.scale),
        Tensor::scalar(p.zero_point as u8),
    ])
}

/// Dynamic uint8 quantization of `x` (also the activation path of DynamicQuantizeMatMul).
pub(super) fn dynamic_quantize(x: &[f32]) -> (Vec<u8>, quant::ScaleZp) {
    let (lo, hi) = x
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let (lo, hi) = if lo > hi { (0.0, 0.0) } else { (lo, hi) };
    let p = quant::dynamic_quant_params(lo, hi);
    let (s, z) = (p.scale, p.zero_point);
    (
        crate::util::map_vec(x, |&v| quant::quantize::<u8>(v, s, z)),
        p,
    )
}
