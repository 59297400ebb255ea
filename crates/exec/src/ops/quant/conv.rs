//! QLinearConv and ConvInteger through the int8 convolution kernels (`qtool_kernels::qconv`): groups,
//! depthwise, pads / `auto_pad`, strides, dilations, N-d, u8 or i8 input and weight, scalar or
//! per-output-channel weight zero points (and scales).
//!
//! QLinearConv requantizes with `OutputStage::Requantize`, the multiplier of output channel `c` being
//! `(x_scale * w_scale[c]) / y_scale` in f32: the product first, then the division, as ONNX
//! Runtime's `QLinearConv` computes `X_scale * W_scale[c] / Y_scale` (left to right). The int32 bias
//! is added to the exact accumulator before requantization (as ORT does).

use super::{
    check_8bit, check_zp_type, const_input, data, floats, kerr, numel, opt, per_channel_len, req,
    scalar_f32, scalar_zp, tensor, with_q8, zero_points,
};
use crate::bail;
use crate::error::OpError;
use crate::ops::{PrepInput, Prepared};
use qtool_kernels::{
    AutoPad, ConvParams, OutputStage, PackedConvWeights, qconv, qconv_output_shape,
};
use qtool_tensor::{DType, Tensor};
use std::any::Any;

/// A constant conv weight packed once for the node's `group`.
#[derive(Debug)]
pub(super) struct PackedConv {
    packed: PackedConvWeights,
}

impl Prepared for PackedConv {}

fn group_of(g: Option<i64>) -> Result<usize, OpError> {
    match g.unwrap_or(1) {
        g if g >= 1 => Ok(g as usize),
        g => bail!("group {g} must be positive"),
    }
}

fn pack(w: &Tensor, zps: &[i32], group: usize) -> Result<PackedConv, OpError> {
    check_8bit(w, "w")?;
    let packed = with_q8!(w, W => PackedConvWeights::new::<W>(&data::<W>(w)?, w.shape(), zps, group).map_err(kerr)?);
    Ok(PackedConv { packed })
}

/// Packs a constant weight (input `w_idx`, zero points at `zp_idx`).
pub(super) fn prepare(
    group: Option<i64>,
    inputs: &[PrepInput<'_>],
    w_idx: usize,
    zp_idx: usize,
) -> Option<Box<dyn Prepared>> {
    let w = const_input(inputs, w_idx)??;
    let zp = const_input(inputs, zp_idx)?;
    if let Some(z) = zp
        && z.dtype() != w.dtype()
    {
        return None;
    }
    let zps = zero_points(zp, "w_zero_point").ok()?;
    let p = pack(w, &zps, group_of(group).ok()?).ok()?;
    Some(Box::new(p))
}

/// The attributes shared by QLinearConv and ConvInteger.
pub(super) struct ConvAttrs<'a> {
    pub auto_pad: &'a Option<String>,
    pub dilations: &'a Option<Vec<i64>>,
    pub group: Option<i64>,
    pub kernel_shape: &'a Option<Vec<i64>>,
    pub pads: &'a Option<Vec<i64>>,
    pub strides: &'a Option<Vec<i64>>,
}

fn spatial(v: &Option<Vec<i64>>, nd: usize, what: &str) -> Result<Vec<usize>, OpError> {
    match v {
        None => Ok(vec![1; nd]),
        Some(v) if v.is_empty() => Ok(vec![1; nd]),
        Some(v) if v.len() == nd && v.iter().all(|&x| x >= 1) => {
            Ok(v.iter().map(|&x| x as usize).collect())
        }
        Some(v) => bail!("{what} {v:?} must have {nd} positive entries"),
    }
}

/// Checked conv parameters for input shape `xs` and weight shape `ws`.
pub(super) fn conv_params(
    a: &ConvAttrs<'_>,
    xs: &[usize],
    ws: &[usize],
) -> Result<ConvParams, OpError> {
    if xs.len() < 3 {
        bail!("input must be [N, C, spatial...], got shape {xs:?}");
    }
    if ws.len() != xs.len() {
        bail!("weight shape {ws:?} must have the rank of input shape {xs:?}");
    }
    let nd = xs.len() - 2;
    let kernel = &ws[2..];
    if let Some(ks) = a.kernel_shape
        && !ks.is_empty()
        && (ks.len() != nd || ks.iter().zip(kernel).any(|(&k, &w)| k != w as i64))
    {
        bail!("kernel_shape {ks:?} does not match the weight's spatial dims {kernel:?}");
    }
    let strides = spatial(a.strides, nd, "strides")?;
    let dilations = spatial(a.dilations, nd, "dilations")?;
    let explicit: Vec<usize> = match a.pads {
        None => vec![],
        Some(p) if p.is_empty() => vec![],
        Some(p) if p.len() == 2 * nd && p.iter().all(|&x| x >= 0) => {
            p.iter().map(|&x| x as usize).collect()
        }
        Some(p) => bail!("pads {p:?} must have {} non-negative entries", 2 * nd),
    };
    let ap: AutoPad = a
        .auto_pad
        .as_deref()
        .unwrap_or("NOTSET")
        .parse()
        .map_err(kerr)?;
    let pads =
        qtool_kernels::resolve_auto_pad(ap, &xs[2..], kernel, &strides, &dilations, &explicit)
            .map_err(kerr)?;
    let group = group_of(a.group)?;
    if xs[1] != ws[1] * group {
        bail!(
            "input has {} channels, the weight {ws:?} with group {group} expects {}",
            xs[1],
            ws[1] * group
        );
    }
    Ok(ConvParams {
        strides,
        dilations,
        pads,
        group,
    })
}

/// The packed weight: the prepared one, or packed now.
fn packed_weight<'p>(
    prepared: Option<&'p dyn Prepared>,
    here: &'p mut Option<PackedConv>,
    w: &Tensor,
    w_zp: Option<&Tensor>,
    group: usize,
) -> Result<&'p PackedConvWeights, OpError> {
    if let Some(p) = prepared.and_then(|p| (p as &dyn Any).downcast_ref::<PackedConv>())
        && p.packed.group() == group
        && p.packed.shape() == w.shape()
    {
        return Ok(&p.packed);
    }
    if let Some(z) = w_zp
        && z.dtype() != w.dtype()
    {
        bail!(
            "weight zero point type {} differs from the weight type {}",
            z.dtype(),
            w.dtype()
        );
    }
    let zps = zero_points(w_zp, "w_zero_point")?;
    Ok(&here.insert(pack(w, &zps, group)?).packed)
}

pub(super) fn qlinear_conv(
    op: &qtool_ir::ops::QLinearConv,
    inputs: &[Option<&Tensor>],
    prepared: Option<&dyn Prepared>,
) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0, "x")?;
    let x_scale = scalar_f32(req(inputs, 1, "x_scale")?, "x_scale")?;
    let x_zp_t = opt(inputs, 2);
    let w = req(inputs, 3, "w")?;
    let w_scale = floats(req(inputs, 4, "w_scale")?, "w_scale")?;
    let w_zp = opt(inputs, 5);
    let y_scale = scalar_f32(req(inputs, 6, "y_scale")?, "y_scale")?;
    let y_zp_t = opt(inputs, 7);
    let bias = opt(inputs, 8);
    check_8bit(x, "x")?;
    check_zp_type(x_zp_t, x, "x_zero_point")?;
    let x_zp = scalar_zp(x_zp_t, "x_zero_point")?;
    let y_zp = scalar_zp(y_zp_t, "y_zero_point")?;
    let y_dtype = y_zp_t.map_or(x.dtype(), |t| t.dtype());
    let attrs = ConvAttrs {
        auto_pad: &op.auto_pad,
        dilations: &op.dilations,
        group: op.group,
        kernel_shape: &op.kernel_shape,
        pads: &op.pads,
        strides: &op.strides,
    };
    let p = conv_params(&attrs, x.shape(), w.shape())?;
    let m = w.shape()[0];
    per_channel_len("w_scale", w_scale.len(), m)?;
    let multiplier: Vec<f32> = w_scale.iter().map(|&ws| (x_scale * ws) / y_scale).collect();
    let bias_v: Option<Vec<i32>> = match bias {
        None => None,
        Some(b) if b.dtype() == DType::I32 => {
            if b.len() != m {
                bail!(
                    "bias has {} entries, the weight has {m} output channels",
                    b.len()
                );
            }
            Some(b.to_vec::<i32>()?)
        }
        Some(b) => bail!("bias must be int32, got {}", b.dtype()),
    };
    let mut here = None;
    let pw = packed_weight(prepared, &mut here, w, w_zp, p.group)?;
    let out_shape = qconv_output_shape(x.shape(), pw, &p).map_err(kerr)?;
    let n = numel(&out_shape)?;
    let stage = OutputStage::Requantize {
        bias: bias_v.as_deref(),
        multiplier: &multiplier,
        zero_point: y_zp,
    };
    let y = with_q8!(x, X => {
        let xd = data::<X>(x)?;
        match y_dtype {
            DType::U8 => {
                let mut out = vec![0u8; n];
                qconv(&xd, x.shape(), x_zp, pw, &p, &stage, &mut out).map_err(kerr)?;
                tensor(&out_shape, out)?
            }
            DType::I8 => {
                let mut out = vec![0i8; n];
                qconv(&xd, x.shape(), x_zp, pw, &p, &stage, &mut out).map_err(kerr)?;
                tensor(&out_shape, out)?
            }
            d => bail!("y_zero_point must be uint8 or int8, got {d}"),
        }
    });
    Ok(vec![y])
}

pub(super) fn conv_integer(
    op: &qtool_ir::ops::ConvInteger,
    inputs: &[Option<&Tensor>],
    prepared: Option<&dyn Prepared>,
) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0, "x")?;
    let w = req(inputs, 1, "w")?;
    let x_zp_t = opt(inputs, 2);
    let w_zp = opt(inputs, 3);
    check_8bit(x, "x")?;
    check_zp_type(x_zp_t, x, "x_zero_point")?;
    let x_zp = scalar_zp(x_zp_t, "x_zero_point")?;
    let attrs = ConvAttrs {
        auto_pad: &op.auto_pad,
        dilations: &op.dilations,
        group: op.group,
        kernel_shape: &op.kernel_shape,
        pads: &op.pads,
        strides: &op.strides,
    };
    let p = conv_params(&attrs, x.shape(), w.shape())?;
    let mut here = None;
    let pw = packed_weight(prepared, &mut here, w, w_zp, p.group)?;
    let out_shape = qconv_output_shape(x.shape(), pw, &p).map_err(kerr)?;
    let mut out = vec![0i32; numel(&out_shape)?];
    with_q8!(x, X => {
        qconv(&data::<X>(x)?, x.shape(), x_zp, pw, &p, &OutputStage::Raw, &mut out).map_err(kerr)?
    });
    Ok(vec![tensor(&out_shape, out)?])
}
