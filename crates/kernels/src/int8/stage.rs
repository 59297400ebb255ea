//! Output stages: what the kernels write from the exact i32 accumulator.

use super::private::Sealed;
use crate::error::{KernelError, Result};
use qtool_tensor::quant::{QInt, requantize, round_half_even_small};
use std::ops::Range;

/// What an int8 kernel writes for each output element, from the exact i32 accumulator
/// `acc = sum_k (a - za) * (b - zb)`. `c` is the output channel: the column of a GEMM (`N`), the
/// output channel `M` of a convolution. Per-channel slices have one entry per channel, or one entry
/// for all.
#[derive(Clone, Copy, Debug)]
pub enum OutputStage<'a> {
    /// `acc` itself (ConvInteger, MatMulInteger); the output is `&mut [i32]`.
    Raw,
    /// `qtool_tensor::quant::requantize::<T>(acc + bias[c], multiplier[c], zero_point)` (QLinearConv,
    /// QLinearMatMul), the bias added in wrapping i32; the output is `&mut [u8]` or `&mut [i8]`.
    Requantize {
        /// int32 bias, one per channel.
        bias: Option<&'a [i32]>,
        /// `x_scale * w_scale[c] / y_scale` in f32.
        multiplier: &'a [f32],
        /// Output zero point, in the output type's range.
        zero_point: i32,
    },
    /// `(acc as f32) * s[c]` with `s[c] = scale_a * scale_b[c]` (one f32 multiply, computed first),
    /// then `+ bias[c]` as a separate f32 add (no FMA); the output is `&mut [f32]`.
    Dequantize {
        /// Activation scale.
        scale_a: f32,
        /// Weight scales, one per channel or one for all.
        scale_b: &'a [f32],
        /// f32 bias, one per channel.
        bias: Option<&'a [f32]>,
    },
}

#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutKind {
    Raw,
    Requant,
    Float,
}

/// An output element type of the int8 kernels: `i32` ([`OutputStage::Raw`]), `u8`/`i8`
/// ([`OutputStage::Requantize`]) or `f32` ([`OutputStage::Dequantize`]).
pub trait QOut: Copy + Send + Sync + Default + 'static + Sealed {
    #[doc(hidden)]
    const KIND: OutKind;
    #[doc(hidden)]
    fn from_acc(v: i32) -> Self;
    #[doc(hidden)]
    fn requant(v: i32, multiplier: f32, zp: i32) -> Self;
    #[doc(hidden)]
    fn from_f32(v: f32) -> Self;
    /// `requant` for a finite multiplier, in a form LLVM vectorizes (see [`requant_row`]).
    #[doc(hidden)]
    fn requant_finite(v: i32, multiplier: f32, lo: f32, hi: f32, zp: i32) -> Self;
    #[doc(hidden)]
    fn range() -> (i32, i32);
    #[doc(hidden)]
    fn check_zp(zp: i32) -> Result<()>;
}

impl QOut for i32 {
    const KIND: OutKind = OutKind::Raw;
    #[inline(always)]
    fn from_acc(v: i32) -> Self {
        v
    }
    #[inline(always)]
    fn requant(v: i32, _: f32, _: i32) -> Self {
        v
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v as i32
    }
    #[inline(always)]
    fn requant_finite(v: i32, _: f32, _: f32, _: f32, _: i32) -> Self {
        v as Self
    }
    fn range() -> (i32, i32) {
        (0, 0)
    }
    fn check_zp(_: i32) -> Result<()> {
        Ok(())
    }
}

macro_rules! qout_int8 {
    ($t:ty) => {
        impl QOut for $t {
            const KIND: OutKind = OutKind::Requant;
            #[inline(always)]
            fn from_acc(v: i32) -> Self {
                v as $t
            }
            #[inline(always)]
            fn requant(v: i32, multiplier: f32, zp: i32) -> Self {
                requantize::<$t>(v, multiplier, zp)
            }
            #[inline(always)]
            fn from_f32(v: f32) -> Self {
                v as $t
            }
            #[inline(always)]
            fn requant_finite(v: i32, multiplier: f32, lo: f32, hi: f32, zp: i32) -> Self {
                let x = (v as f32 * multiplier).max(lo).min(hi);
                <$t>::from_i32_unchecked(round_half_even_small(x) + zp)
            }
            fn range() -> (i32, i32) {
                (<$t>::QMIN, <$t>::QMAX)
            }
            fn check_zp(zp: i32) -> Result<()> {
                super::check_zp::<$t>("output", zp)
            }
        }
    };
}
qout_int8!(u8);
qout_int8!(i8);

impl QOut for f32 {
    const KIND: OutKind = OutKind::Float;
    #[inline(always)]
    fn from_acc(v: i32) -> Self {
        v as f32
    }
    #[inline(always)]
    fn requant(v: i32, _: f32, _: i32) -> Self {
        v as f32
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
    #[inline(always)]
    fn requant_finite(v: i32, _: f32, _: f32, _: f32, _: i32) -> Self {
        v as Self
    }
    fn range() -> (i32, i32) {
        (0, 0)
    }
    fn check_zp(_: i32) -> Result<()> {
        Ok(())
    }
}

/// An [`OutputStage`] checked against the output type and expanded to one entry per channel.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// int32 bias (requantize), added to the integer correction terms.
    pub ibias: Option<Vec<i32>>,
    mult: Vec<f32>,
    /// Every multiplier is finite (the vectorized requantization applies).
    finite: bool,
    zp: i32,
    fscale: Vec<f32>,
    fbias: Option<Vec<f32>>,
}

fn per_channel<T: Copy>(what: &str, v: &[T], channels: usize, allow_one: bool) -> Result<Vec<T>> {
    if v.len() == channels {
        Ok(v.to_vec())
    } else if allow_one && v.len() == 1 {
        Ok(vec![v[0]; channels])
    } else {
        Err(KernelError::Shape(format!(
            "{what} has {} entries, expected {channels}{}",
            v.len(),
            if allow_one { " or 1" } else { "" }
        )))
    }
}

impl Prepared {
    pub(crate) fn new<O: QOut>(stage: &OutputStage<'_>, channels: usize) -> Result<Self> {
        let mut p = Prepared {
            ibias: None,
            mult: Vec::new(),
            finite: true,
            zp: 0,
            fscale: Vec::new(),
            fbias: None,
        };
        match (*stage, O::KIND) {
            (OutputStage::Raw, OutKind::Raw) => {}
            (
                OutputStage::Requantize {
                    bias,
                    multiplier,
                    zero_point,
                },
                OutKind::Requant,
            ) => {
                O::check_zp(zero_point)?;
                p.zp = zero_point;
                p.mult = per_channel("requantize multiplier", multiplier, channels, true)?;
                p.finite = p.mult.iter().all(|m| m.is_finite());
                p.ibias = bias
                    .map(|b| per_channel("int32 bias", b, channels, false))
                    .transpose()?;
            }
            (
                OutputStage::Dequantize {
                    scale_a,
                    scale_b,
                    bias,
                },
                OutKind::Float,
            ) => {
                p.fscale = per_channel("weight scale", scale_b, channels, true)?
                    .into_iter()
                    .map(|s| scale_a * s)
                    .collect();
                p.fbias = bias
                    .map(|b| per_channel("f32 bias", b, channels, false))
                    .transpose()?;
            }
            (s, k) => {
                return Err(KernelError::Param(format!(
                    "output stage {s:?} does not produce {} output ({k:?})",
                    std::any::type_name::<O>()
                )));
            }
        }
        Ok(p)
    }

    /// The per-channel parameters of channels `r`.
    pub(crate) fn view(&self, r: Range<usize>) -> StageView<'_> {
        fn sub<'v>(v: &'v [f32], r: &Range<usize>) -> &'v [f32] {
            if v.is_empty() { v } else { &v[r.clone()] }
        }
        StageView {
            mult: sub(&self.mult, &r),
            finite: self.finite,
            zp: self.zp,
            fscale: sub(&self.fscale, &r),
            fbias: self.fbias.as_deref().map(|b| &b[r.clone()]),
        }
    }
}

/// Per-channel output parameters of a range of channels.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StageView<'a> {
    mult: &'a [f32],
    finite: bool,
    zp: i32,
    fscale: &'a [f32],
    fbias: Option<&'a [f32]>,
}

/// Which channel the elements of a row belong to (indices into a [`StageView`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Chan {
    /// All elements of the row: channel `c`.
    Row(usize),
    /// Element `j` of the row: channel `c0 + j`.
    Cols(usize),
}

/// Writes one row of final i32 values through the stage.
#[inline(always)]
pub(crate) fn write_row<O: QOut>(vals: &[i32], out: &mut [O], st: &StageView<'_>, chan: Chan) {
    let n = vals.len();
    let out = &mut out[..n];
    match O::KIND {
        OutKind::Raw => {
            for (o, &v) in out.iter_mut().zip(vals) {
                *o = O::from_acc(v);
            }
        }
        OutKind::Requant => {
            let ms = match chan {
                Chan::Row(c) => std::slice::from_ref(&st.mult[c]),
                Chan::Cols(c0) => &st.mult[c0..c0 + n],
            };
            requant_row(vals, out, ms, st.zp, st.finite);
        }
        OutKind::Float => match (chan, st.fbias) {
            (Chan::Row(c), None) => {
                let s = st.fscale[c];
                for (o, &v) in out.iter_mut().zip(vals) {
                    *o = O::from_f32(v as f32 * s);
                }
            }
            (Chan::Row(c), Some(b)) => {
                let (s, b) = (st.fscale[c], b[c]);
                for (o, &v) in out.iter_mut().zip(vals) {
                    *o = O::from_f32(v as f32 * s + b);
                }
            }
            (Chan::Cols(c0), None) => {
                for ((o, &v), &s) in out.iter_mut().zip(vals).zip(&st.fscale[c0..c0 + n]) {
                    *o = O::from_f32(v as f32 * s);
                }
            }
            (Chan::Cols(c0), Some(b)) => {
                let it = out
                    .iter_mut()
                    .zip(vals)
                    .zip(&st.fscale[c0..c0 + n])
                    .zip(&b[c0..c0 + n]);
                for (((o, &v), &s), &b) in it {
                    *o = O::from_f32(v as f32 * s + b);
                }
            }
        },
    }
}

/// Requantizes a row with one multiplier (`ms.len() == 1`) or one per element.
///
/// `requantize` computes `round_half_even((acc as f32 * m).clamp(lo, hi)) as i32 + zp` with
/// `lo = qmin - zp <= hi = qmax - zp` (the zero point is checked to be in range). `f32::clamp`'s
/// assertion keeps LLVM from vectorizing it, so for a *finite* multiplier this uses
/// `max(lo).min(hi)`, which is the same value: `acc as f32 * m` is then never NaN (finite times
/// finite, at worst ±inf, which both forms map to the bound), and the only other difference, the
/// sign of a zero, vanishes in the integer conversion. The rounding is half to even, as
/// `quant::round_half_even`, computed by `quant::round_half_even_small` on the clamped value (its
/// domain, `|x| <= 2^22`, holds: `|x| <= 510`). Non-finite
/// multipliers (`finite == false`, checked once per call) go through `requantize` itself. The tests
/// compare every path with `requantize`.
#[inline(always)]
fn requant_row<O: QOut>(vals: &[i32], out: &mut [O], ms: &[f32], zp: i32, finite: bool) {
    let (qmin, qmax) = O::range();
    let (lo, hi) = ((qmin - zp) as f32, (qmax - zp) as f32);
    if finite {
        if let [m] = *ms {
            for (o, &v) in out.iter_mut().zip(vals) {
                *o = O::requant_finite(v, m, lo, hi, zp);
            }
        } else {
            for ((o, &v), &m) in out.iter_mut().zip(vals).zip(ms) {
                *o = O::requant_finite(v, m, lo, hi, zp);
            }
        }
    } else {
        for (i, (o, &v)) in out.iter_mut().zip(vals).enumerate() {
            *o = O::requant(v, ms[if ms.len() == 1 { 0 } else { i }], zp);
        }
    }
}
