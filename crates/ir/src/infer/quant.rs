//! Quantization ops: QuantizeLinear (output type from output_dtype, else the zero point, else
//! uint8), DequantizeLinear (output_dtype, else the scale's float type), DynamicQuantizeLinear,
//! QLinearConv, ConvInteger, MatMulInteger, QLinearMatMul, and the com.microsoft contrib ops
//! (QLinearAdd/Mul, QLinear pools, QLinearConcat, QLinear activations, QGemm,
//! DynamicQuantizeMatMul, MatMulIntegerToFloat).

use super::conv::{self, Spatial};
use super::dims;
use super::linalg;
use super::shape_ops;
use super::{Cx, Out, R, dtype_attr, fact};
use crate::ops;
use crate::types::{DimValue, Fact};
use qtool_tensor::DType;

/// Dtype of the output zero point input `i` when present, else `fallback`.
fn q_dtype(cx: &Cx, i: usize, fallback: Option<DType>) -> Option<DType> {
    if cx.has(i) {
        cx.dtype(i).or(fallback)
    } else {
        fallback
    }
}

pub(crate) fn quantize_linear(cx: &Cx, o: &ops::QuantizeLinear) -> R {
    let zp = if cx.has(2) { cx.dtype(2) } else { None };
    let attr = match o.output_dtype {
        Some(0) | None => None,
        Some(c) => Some(dtype_attr(c, "output_dtype")?),
    };
    if let (Some(a), Some(z)) = (attr, zp)
        && a != z
    {
        return Err(format!(
            "output_dtype {} disagrees with the zero point's {}",
            a.onnx_name(),
            z.onnx_name()
        ));
    }
    let dtype = attr.or(zp).unwrap_or(DType::U8);
    Ok(Out::one(fact(Some(dtype), cx.fact(0).shape)))
}

pub(crate) fn dequantize_linear(cx: &Cx, o: &ops::DequantizeLinear) -> R {
    let dtype = match o.output_dtype {
        Some(0) | None => cx.dtype(1).filter(|d| d.is_float()).unwrap_or(DType::F32),
        Some(c) => dtype_attr(c, "output_dtype")?,
    };
    Ok(Out::one(fact(Some(dtype), cx.fact(0).shape)))
}

pub(crate) fn dynamic_quantize_linear(cx: &Cx) -> R {
    Ok(Out::many(vec![
        fact(Some(DType::U8), cx.fact(0).shape),
        Fact::new(DType::F32, &[]),
        Fact::new(DType::U8, &[]),
    ]))
}

pub(crate) fn qlinear_conv(cx: &Cx, o: &ops::QLinearConv) -> R {
    let sp = Spatial {
        auto_pad: o.auto_pad.as_deref(),
        kernel: o.kernel_shape.as_deref(),
        strides: o.strides.as_deref(),
        dilations: o.dilations.as_deref(),
        pads: o.pads.as_deref(),
        ceil_mode: false,
    };
    let bias = if cx.has(8) { cx.shape(8) } else { None };
    let shape = conv::conv_shape(cx.shape(0), cx.shape(3), bias, &sp, o.group.unwrap_or(1))?;
    Ok(Out::one(fact(q_dtype(cx, 7, cx.dtype(0)), shape)))
}

pub(crate) fn conv_integer(cx: &Cx, o: &ops::ConvInteger) -> R {
    let sp = Spatial {
        auto_pad: o.auto_pad.as_deref(),
        kernel: o.kernel_shape.as_deref(),
        strides: o.strides.as_deref(),
        dilations: o.dilations.as_deref(),
        pads: o.pads.as_deref(),
        ceil_mode: false,
    };
    let shape = conv::conv_shape(cx.shape(0), cx.shape(1), None, &sp, o.group.unwrap_or(1))?;
    Ok(Out::one(fact(Some(DType::I32), shape)))
}

pub(crate) fn qlinear_matmul(cx: &Cx) -> R {
    let shape = linalg::matmul_shape(cx.shape(0), cx.shape(3))?;
    Ok(Out::one(fact(q_dtype(cx, 7, cx.dtype(0)), shape)))
}

/// QLinearAdd / QLinearMul: A (0) and B (3) broadcast; C's zero point (7) gives the type.
pub(crate) fn qlinear_binary(cx: &Cx) -> R {
    let shape = dims::broadcast_all(&[cx.shape(0), cx.shape(3)])?;
    Ok(Out::one(fact(q_dtype(cx, 7, cx.dtype(0)), shape)))
}

pub(crate) fn qlinear_global_pool(cx: &Cx, o: &ops::QLinearGlobalAveragePool) -> R {
    let shape = conv::global_shape(cx.shape(0), o.channels_last.unwrap_or(0) != 0)?;
    Ok(Out::one(fact(q_dtype(cx, 4, cx.dtype(0)), shape)))
}

pub(crate) fn qlinear_average_pool(cx: &Cx, o: &ops::QLinearAveragePool) -> R {
    let sp = Spatial {
        auto_pad: o.auto_pad.as_deref(),
        kernel: o.kernel_shape.as_deref(),
        strides: o.strides.as_deref(),
        dilations: None,
        pads: o.pads.as_deref(),
        ceil_mode: o.ceil_mode.unwrap_or(0) != 0,
    };
    let shape = conv::pool_shape(cx.shape(0), &sp, o.channels_last.unwrap_or(0) != 0)?;
    Ok(Out::one(fact(q_dtype(cx, 4, cx.dtype(0)), shape)))
}

/// QLinearConcat: inputs are (Y_scale, Y_zero_point, then X, X_scale, X_zero_point triples).
pub(crate) fn qlinear_concat(cx: &Cx, o: &ops::QLinearConcat) -> R {
    let axis = o.axis.ok_or("attribute 'axis' is missing")?;
    let xs: Vec<usize> = (2..cx.n_in()).step_by(3).filter(|&i| cx.has(i)).collect();
    if xs.is_empty() {
        return Err("needs at least one (X, scale, zero point) triple".into());
    }
    let shapes: Vec<Option<&[DimValue]>> = xs.iter().map(|&i| cx.shape(i)).collect();
    let shape = shape_ops::concat_shape(&shapes, axis)?;
    Ok(Out::one(fact(q_dtype(cx, 1, cx.dtype(xs[0])), shape)))
}

/// QLinearSigmoid / QLinearLeakyRelu / QLinearSoftmax: X (0) ... Y zero point (4).
pub(crate) fn qlinear_unary(cx: &Cx) -> R {
    Ok(Out::one(fact(
        q_dtype(cx, 4, cx.dtype(0)),
        cx.fact(0).shape,
    )))
}

/// QGemm: A (0), B (3), C (6); quantized output when y_scale (7) is given, float otherwise.
pub(crate) fn qgemm(cx: &Cx, o: &ops::QGemm) -> R {
    let c = if cx.has(6) { cx.shape(6) } else { None };
    let shape = linalg::gemm_shape(
        cx.shape(0),
        cx.shape(3),
        c,
        o.trans_a.unwrap_or(0) != 0,
        o.trans_b.unwrap_or(0) != 0,
    )?;
    let dtype = if cx.has(7) {
        q_dtype(cx, 8, cx.dtype(0))
    } else {
        Some(cx.dtype(1).filter(|d| d.is_float()).unwrap_or(DType::F32))
    };
    Ok(Out::one(fact(dtype, shape)))
}

/// DynamicQuantizeMatMul: float A (0) times quantized B (1), float output.
pub(crate) fn dynamic_quantize_matmul(cx: &Cx) -> R {
    let shape = linalg::matmul_shape(cx.shape(0), cx.shape(1))?;
    Ok(Out::one(fact(
        Some(cx.dtype(0).unwrap_or(DType::F32)),
        shape,
    )))
}

/// MatMulIntegerToFloat: integer A (0) and B (1), output of the scale's float type.
pub(crate) fn matmul_integer_to_float(cx: &Cx) -> R {
    let shape = linalg::matmul_shape(cx.shape(0), cx.shape(1))?;
    Ok(Out::one(fact(
        Some(cx.dtype(2).filter(|d| d.is_float()).unwrap_or(DType::F32)),
        shape,
    )))
}
