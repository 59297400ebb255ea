//! The integer matrix products through the int8 GEMM kernels (`qtool_kernels::qgemm`): MatMulInteger,
//! QLinearMatMul, and the `com.microsoft` QGemm, DynamicQuantizeMatMul and MatMulIntegerToFloat.
//!
//! All follow MatMul's shape rules (1-D operands promoted and the added axis removed, batch axes
//! broadcast). A 2-D B is packed once (at executor build when it is constant); a batched B is packed
//! per batch. Multipliers are computed in f32 as ONNX Runtime computes them:
//! - QLinearMatMul: `(a_scale * b_scale[n]) / y_scale` (ORT `ComputeOutputScale`);
//! - QGemm: `alpha * a_scale * b_scale[n]`, then `/ y_scale` when the output is quantized;
//! - DynamicQuantizeMatMul / MatMulIntegerToFloat: `a_scale * b_scale[n]`, then `+ bias[n]` as a
//!   separate f32 add (`OutputStage::Dequantize`).

use super::qdq::dynamic_quantize;
use super::{
    check_8bit, check_zp_type, const_input, data, floats, kerr, numel, opt, per_channel_len, req,
    scalar_f32, scalar_zp, tensor, with_q8, zero_points,
};
use crate::bail;
use crate::error::OpError;
use crate::ops::{PrepInput, Prepared};
use crate::util::broadcast_shapes;
use qtool_kernels::qgemm as kgemm;
use qtool_kernels::{OutputStage, PackedB, QOut};
use qtool_tensor::quant::{self, QInt};
use qtool_tensor::{DType, Element, Tensor};
use std::any::Any;

/// A constant 2-D `[K, N]` weight packed once.
#[derive(Debug)]
pub(super) struct PackedMat {
    packed: PackedB,
    /// The weight as given (before any transpose).
    shape: Vec<usize>,
    trans: bool,
}

impl Prepared for PackedMat {}

fn pack(b: &Tensor, zps: &[i32], trans: bool) -> Result<PackedMat, OpError> {
    check_8bit(b, "B")?;
    let &[r, c] = b.shape() else {
        bail!("internal: packing a weight of shape {:?}", b.shape());
    };
    let (k, n) = if trans { (c, r) } else { (r, c) };
    let packed = with_q8!(b, W => {
        let d = data::<W>(b)?;
        let d: std::borrow::Cow<'_, [W]> = if trans {
            let mut t = Vec::with_capacity(d.len());
            for kk in 0..k {
                for j in 0..n {
                    t.push(d[j * k + kk]);
                }
            }
            t.into()
        } else {
            d
        };
        PackedB::new::<W>(&d, &[k, n], zps).map_err(kerr)?
    });
    Ok(PackedMat {
        packed,
        shape: b.shape().to_vec(),
        trans,
    })
}

/// Packs a constant 2-D weight (input `b_idx`, zero points at `zp_idx`).
pub(super) fn prepare(
    inputs: &[PrepInput<'_>],
    b_idx: usize,
    zp_idx: usize,
    trans: bool,
) -> Option<Box<dyn Prepared>> {
    let b = const_input(inputs, b_idx)??;
    if b.rank() != 2 {
        return None;
    }
    let zp = const_input(inputs, zp_idx)?;
    if let Some(z) = zp
        && z.dtype() != b.dtype()
    {
        return None;
    }
    let zps = zero_points(zp, "b_zero_point").ok()?;
    Some(Box::new(pack(b, &zps, trans).ok()?))
}

fn prepared_of<'p>(
    prepared: Option<&'p dyn Prepared>,
    b: &Tensor,
    trans: bool,
) -> Option<&'p PackedB> {
    let p = (prepared? as &dyn Any).downcast_ref::<PackedMat>()?;
    (p.shape == b.shape() && p.trans == trans).then_some(&p.packed)
}

/// Offset of batch `i` of `out` (row-major) in an operand with batch shape `src` (right-aligned,
/// size-1 axes broadcast), in units of matrices.
fn bcast_index(mut i: usize, out: &[usize], src: &[usize]) -> usize {
    let (mut off, mut stride) = (0, 1);
    for ax in (0..out.len()).rev() {
        let oi = i % out[ax];
        i /= out[ax];
        let j = ax as isize - (out.len() - src.len()) as isize;
        if j >= 0 {
            let d = src[j as usize];
            if d != 1 {
                off += oi * stride;
            }
            stride *= d;
        }
    }
    off
}

/// `stage(A x B)` with MatMul's shape rules; returns the output shape and data. `b_zps` has 1 or N
/// entries; `prepared` is used when it matches `b` (2-D).
fn run<O: QOut + Element>(
    a: &Tensor,
    a_zp: i32,
    b: &Tensor,
    b_zps: &[i32],
    prepared: Option<&PackedB>,
    stage: &OutputStage<'_>,
) -> Result<(Vec<usize>, Vec<O>), OpError> {
    check_8bit(a, "A")?;
    check_8bit(b, "B")?;
    let (ash, bsh) = (a.shape(), b.shape());
    if ash.is_empty() || bsh.is_empty() {
        bail!("MatMul operands must have rank >= 1, got {ash:?} and {bsh:?}");
    }
    let a2: Vec<usize> = if ash.len() == 1 {
        vec![1, ash[0]]
    } else {
        ash.to_vec()
    };
    let b2: Vec<usize> = if bsh.len() == 1 {
        vec![bsh[0], 1]
    } else {
        bsh.to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (kb, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != kb {
        bail!("A {ash:?} and B {bsh:?} cannot be multiplied (K {k} vs {kb})");
    }
    per_channel_len("b_zero_point", b_zps.len(), n)?;
    let (a_batch, b_batch) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let batch = broadcast_shapes(a_batch, b_batch)?;
    let mut shape = batch.clone();
    shape.extend([m, n]);
    let total = numel(&shape)?;
    let mut out = vec![O::default(); total];
    with_q8!(a, A => {
        let ad = data::<A>(a)?;
        if b_batch.is_empty() {
            let here;
            let pb = match prepared {
                Some(p) => p,
                None => {
                    here = pack(&reshape2(b, &b2)?, b_zps, false)?.packed;
                    &here
                }
            };
            // Fold A's batch into M (B has none, so the output batch is A's).
            kgemm(&ad, &a2, a_zp, pb, stage, &mut out).map_err(kerr)?;
        } else {
            let nb = numel(&batch)?;
            let bd_t = reshape2(b, &b2)?;
            with_q8!(bd_t, B => {
                let bd = data::<B>(&bd_t)?;
                for bi in 0..nb {
                    let ao = bcast_index(bi, &batch, a_batch) * m * k;
                    let bo = bcast_index(bi, &batch, b_batch) * k * n;
                    let pb = PackedB::new::<B>(&bd[bo..bo + k * n], &[k, n], b_zps).map_err(kerr)?;
                    kgemm(&ad[ao..ao + m * k], &[m, k], a_zp, &pb, stage, &mut out[bi * m * n..(bi + 1) * m * n])
                        .map_err(kerr)?;
                }
            });
        }
    });
    // Remove the axes added for 1-D operands.
    if bsh.len() == 1 {
        shape.pop();
    }
    if ash.len() == 1 {
        let l = shape.len();
        shape.remove(l - if bsh.len() == 1 { 1 } else { 2 });
    }
    Ok((shape, out))
}

/// `t` with the shape `shape` (same elements), without copying when it already has it.
fn reshape2(t: &Tensor, shape: &[usize]) -> Result<Tensor, OpError> {
    if t.shape() == shape {
        return Ok(t.clone());
    }
    Ok(with_q8!(t, T => tensor(shape, data::<T>(t)?.into_owned())?))
}

/// MatMulInteger: `sum_k (a - a_zp[m]) * (b - b_zp[n])` in i32. `a_zero_point` may be per row (M
/// entries): computed as the product with zero point 0 minus `a_zp[m] * sum_k (b[k, n] - b_zp[n])`.
pub(super) fn matmul_integer(
    inputs: &[Option<&Tensor>],
    prepared: Option<&dyn Prepared>,
) -> Result<Vec<Tensor>, OpError> {
    let a = req(inputs, 0, "A")?;
    let b = req(inputs, 1, "B")?;
    let (a_zp_t, b_zp_t) = (opt(inputs, 2), opt(inputs, 3));
    check_zp_type(a_zp_t, a, "a_zero_point")?;
    check_zp_type(b_zp_t, b, "b_zero_point")?;
    let a_zps = zero_points(a_zp_t, "a_zero_point")?;
    let b_zps = zero_points(b_zp_t, "b_zero_point")?;
    let pre = prepared_of(prepared, b, false);
    if a_zps.len() == 1 {
        let (shape, out) = run::<i32>(a, a_zps[0], b, &b_zps, pre, &OutputStage::Raw)?;
        return Ok(vec![tensor(&shape, out)?]);
    }
    // Per-row a zero points (2-D B only).
    if b.rank() != 2 || a.rank() < 2 {
        bail!("a per-row a_zero_point needs a 2-D B and an A of rank >= 2");
    }
    let m = a.shape()[a.rank() - 2];
    if a_zps.len() != m {
        bail!(
            "a_zero_point has {} entries, expected 1 or M = {m}",
            a_zps.len()
        );
    }
    let (shape, mut out) = run::<i32>(a, 0, b, &b_zps, pre, &OutputStage::Raw)?;
    let (k, n) = (b.shape()[0], b.shape()[1]);
    let bv: Vec<i32> = b
        .to_i64_vec()
        .expect("8-bit")
        .into_iter()
        .map(|v| v as i32)
        .collect();
    let colsum: Vec<i32> = (0..n)
        .map(|j| {
            let z = b_zps[if b_zps.len() == 1 { 0 } else { j }];
            (0..k).fold(0i32, |s, kk| s.wrapping_add(bv[kk * n + j] - z))
        })
        .collect();
    for (r, row) in out.chunks_mut(n).enumerate() {
        let za = a_zps[r % m];
        for (o, &c) in row.iter_mut().zip(&colsum) {
            *o = o.wrapping_sub(za.wrapping_mul(c));
        }
    }
    Ok(vec![tensor(&shape, out)?])
}

/// QLinearMatMul: per-tensor a and y parameters, per-tensor or per-column b parameters.
pub(super) fn qlinear_matmul(
    inputs: &[Option<&Tensor>],
    prepared: Option<&dyn Prepared>,
) -> Result<Vec<Tensor>, OpError> {
    let a = req(inputs, 0, "a")?;
    let a_scale = scalar_f32(req(inputs, 1, "a_scale")?, "a_scale")?;
    let a_zp_t = opt(inputs, 2);
    let b = req(inputs, 3, "b")?;
    let b_scale = floats(req(inputs, 4, "b_scale")?, "b_scale")?;
    let b_zp_t = opt(inputs, 5);
    let y_scale = scalar_f32(req(inputs, 6, "y_scale")?, "y_scale")?;
    let y_zp_t = opt(inputs, 7);
    check_zp_type(a_zp_t, a, "a_zero_point")?;
    check_zp_type(b_zp_t, b, "b_zero_point")?;
    let a_zp = scalar_zp(a_zp_t, "a_zero_point")?;
    let b_zps = zero_points(b_zp_t, "b_zero_point")?;
    let y_zp = scalar_zp(y_zp_t, "y_zero_point")?;
    let multiplier: Vec<f32> = b_scale.iter().map(|&bs| (a_scale * bs) / y_scale).collect();
    let stage = OutputStage::Requantize {
        bias: None,
        multiplier: &multiplier,
        zero_point: y_zp,
    };
    let n = *b.shape().last().unwrap_or(&1);
    per_channel_len("b_scale", b_scale.len(), if b.rank() == 1 { 1 } else { n })?;
    let pre = prepared_of(prepared, b, false);
    let y = match y_zp_t.map_or(a.dtype(), |t| t.dtype()) {
        DType::U8 => {
            let (s, v) = run::<u8>(a, a_zp, b, &b_zps, pre, &stage)?;
            tensor(&s, v)?
        }
        DType::I8 => {
            let (s, v) = run::<i8>(a, a_zp, b, &b_zps, pre, &stage)?;
            tensor(&s, v)?
        }
        d => bail!("y_zero_point must be uint8 or int8, got {d}"),
    };
    Ok(vec![y])
}

fn transpose2<T: Copy>(v: &[T], r: usize, c: usize) -> Vec<T> {
    let mut t = Vec::with_capacity(v.len());
    for j in 0..c {
        for i in 0..r {
            t.push(v[i * c + j]);
        }
    }
    t
}

/// com.microsoft QGemm: `Y = alpha * A' B' (+ C)` with int8 A, B (transA / transB), int32 C
/// (broadcast to [M, N], added to the accumulator); float output when y_scale is absent
/// (`(acc + C) * (alpha * a_scale * b_scale[n])`), else requantized with multiplier
/// `alpha * a_scale * b_scale[n] / y_scale` (ORT's `ComputeOutputScale` order).
pub(super) fn qgemm(
    op: &qtool_ir::ops::QGemm,
    inputs: &[Option<&Tensor>],
    prepared: Option<&dyn Prepared>,
) -> Result<Vec<Tensor>, OpError> {
    let a = req(inputs, 0, "A")?;
    let a_scale = scalar_f32(req(inputs, 1, "a_scale")?, "a_scale")?;
    let a_zp_t = opt(inputs, 2);
    let b = req(inputs, 3, "B")?;
    let b_scale = floats(req(inputs, 4, "b_scale")?, "b_scale")?;
    let b_zp_t = opt(inputs, 5);
    let c = opt(inputs, 6);
    let y_scale = opt(inputs, 7)
        .map(|t| scalar_f32(t, "y_scale"))
        .transpose()?;
    let y_zp_t = opt(inputs, 8);
    check_zp_type(a_zp_t, a, "a_zero_point")?;
    check_zp_type(b_zp_t, b, "b_zero_point")?;
    let a_zp = scalar_zp(a_zp_t, "a_zero_point")?;
    let b_zps = zero_points(b_zp_t, "b_zero_point")?;
    let (ta, tb) = (op.trans_a.unwrap_or(0) != 0, op.trans_b.unwrap_or(0) != 0);
    let alpha = op.alpha.unwrap_or(1.0);
    if a.rank() != 2 || b.rank() != 2 {
        bail!(
            "QGemm needs 2-D A and B, got {:?} and {:?}",
            a.shape(),
            b.shape()
        );
    }
    check_8bit(a, "A")?;
    let a_t: Tensor;
    let a = if ta {
        let (r, cc) = (a.shape()[0], a.shape()[1]);
        a_t = with_q8!(a, T => tensor(&[cc, r], transpose2(&data::<T>(a)?, r, cc))?);
        &a_t
    } else {
        a
    };
    let (m, n) = (a.shape()[0], if tb { b.shape()[0] } else { b.shape()[1] });
    per_channel_len("b_scale", b_scale.len(), n)?;
    let here;
    let pb = match prepared_of(prepared, b, tb) {
        Some(p) => p,
        None => {
            here = pack(b, &b_zps, tb)?.packed;
            &here
        }
    };
    let mut acc = vec![0i32; m * n];
    with_q8!(a, A => kgemm(&data::<A>(a)?, a.shape(), a_zp, pb, &OutputStage::Raw, &mut acc).map_err(kerr)?);
    if let Some(c) = c {
        if c.dtype() != DType::I32 {
            bail!("C must be int32, got {}", c.dtype());
        }
        let cs = c.shape();
        let full = broadcast_shapes(cs, &[m, n])?;
        if full != [m, n] {
            bail!("C of shape {cs:?} does not broadcast to [{m}, {n}]");
        }
        let cv = c.to_vec::<i32>()?;
        let (cr, ccn) = match cs.len() {
            0 => (1, 1),
            1 => (1, cs[0]),
            _ => (cs[0], cs[1]),
        };
        for i in 0..m {
            for j in 0..n {
                let v = cv[(if cr == 1 { 0 } else { i }) * ccn + if ccn == 1 { 0 } else { j }];
                acc[i * n + j] = acc[i * n + j].wrapping_add(v);
            }
        }
    }
    let scale: Vec<f32> = b_scale
        .iter()
        .map(|&bs| {
            let s = alpha * a_scale * bs;
            match y_scale {
                Some(ys) => s / ys,
                None => s,
            }
        })
        .collect();
    let sc = |j: usize| scale[if scale.len() == 1 { 0 } else { j }];
    let y = match y_scale {
        None => {
            let v: Vec<f32> = acc
                .iter()
                .enumerate()
                .map(|(i, &x)| x as f32 * sc(i % n))
                .collect();
            tensor(&[m, n], v)?
        }
        Some(_) => {
            let y_zp = scalar_zp(y_zp_t, "y_zero_point")?;
            fn rq<T: QInt + Element>(
                acc: &[i32],
                n: usize,
                sc: impl Fn(usize) -> f32,
                zp: i32,
                m: usize,
            ) -> Result<Tensor, OpError> {
                let v: Vec<T> = acc
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| quant::requantize::<T>(x, sc(i % n), zp))
                    .collect();
                tensor(&[m, n], v)
            }
            match y_zp_t.map_or(a.dtype(), |t| t.dtype()) {
                DType::U8 => rq::<u8>(&acc, n, sc, y_zp, m)?,
                DType::I8 => rq::<i8>(&acc, n, sc, y_zp, m)?,
                d => bail!("y_zero_point must be uint8 or int8, got {d}"),
            }
        }
    };
    Ok(vec![y])
}

fn float_bias(t: Option<&Tensor>) -> Result<Option<Vec<f32>>, OpError> {
    t.map(|b| match b.dtype() {
        DType::F32 => Ok(b.to_vec::<f32>()?),
        d => bail!("bias must be float, got {d}"),
    })
    .transpose()
}

/// com.microsoft DynamicQuantizeMatMul: A (f32) quantized to uint8 as DynamicQuantizeLinear does,
/// then `(acc as f32) * (a_scale * b_scale[n]) + bias[n]`.
pub(super) fn dynamic_quantize_matmul(
    inputs: &[Option<&Tensor>],
    prepared: Option<&dyn Prepared>,
) -> Result<Vec<Tensor>, OpError> {
    let a = req(inputs, 0, "A")?;
    let b = req(inputs, 1, "B")?;
    let b_scale = floats(req(inputs, 2, "b_scale")?, "b_scale")?;
    let b_zp_t = opt(inputs, 3);
    let bias = float_bias(opt(inputs, 4))?;
    if a.dtype() != DType::F32 {
        bail!("A must be float, got {}", a.dtype());
    }
    check_zp_type(b_zp_t, b, "b_zero_point")?;
    let b_zps = zero_points(b_zp_t, "b_zero_point")?;
    let (q, p) = dynamic_quantize(&a.to_vec::<f32>()?);
    let aq = tensor(a.shape(), q)?;
    let stage = OutputStage::Dequantize {
        scale_a: p.scale,
        scale_b: &b_scale,
        bias: bias.as_deref(),
    };
    let (s, v) = run::<f32>(
        &aq,
        p.zero_point,
        b,
        &b_zps,
        prepared_of(prepared, b, false),
        &stage,
    )?;
    Ok(vec![tensor(&s, v)?])
}

/// com.microsoft MatMulIntegerToFloat: `(acc as f32) * (a_scale * b_scale[n]) + bias[n]`.
pub(super) fn matmul_integer_to_float(
    inputs: &[Option<&Tensor>],
    prepared: Option<&dyn Prepared>,
) -> Result<Vec<Tensor>, OpError> {
    let a = req(inputs, 0, "A")?;
    let b = req(inputs, 1, "B")?;
    let a_scale = scalar_f32(req(inputs, 2, "a_scale")?, "a_scale")?;
    let b_scale = floats(req(inputs, 3, "b_scale")?, "b_scale")?;
    let (a_zp_t, b_zp_t) = (opt(inputs, 4), opt(inputs, 5));
    let bias = float_bias(opt(inputs, 6))?;
    check_zp_type(a_zp_t, a, "a_zero_point")?;
    check_zp_type(b_zp_t, b, "b_zero_point")?;
    let a_zp = scalar_zp(a_zp_t, "a_zero_point")?;
    let b_zps = zero_points(b_zp_t, "b_zero_point")?;
    let stage = OutputStage::Dequantize {
        scale_a: a_scale,
        scale_b: &b_scale,
        bias: bias.as_deref(),
    };
    let (s, v) = run::<f32>(a, a_zp, b, &b_zps, prepared_of(prepared, b, false), &stage)?;
    Ok(vec![tensor(&s, v)?])
}
