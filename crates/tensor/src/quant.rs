//! THE quantization arithmetic of qtool: rounding, quantize, dequantize, requantize, scale and
//! zero-point selection, bias quantization. Every other crate calls these; none re-implements them.
//!
//! The contract (see docs/numerics.md) follows ONNX and ONNX Runtime:
//! - rounding is round-half-to-even everywhere;
//! - `quantize(x) = saturate(round(x / scale) + zp)`, computed in f32, saturating to the full type range;
//! - `dequantize(q) = (q - zp) as f32 * scale`;
//! - `requantize(acc) = round(clamp(acc as f32 * multiplier, qmin - zp, qmax - zp)) + zp`
//!   (float multiplier, clamp before rounding, as ONNX Runtime's MLAS does).

/// Integer element types that quantized tensors use.
pub trait QInt: Copy + Send + Sync + 'static + Into<i32> {
    const QMIN: i32;
    const QMAX: i32;
    /// Converts an i32 that is already within `[QMIN, QMAX]`.
    fn from_i32_unchecked(v: i32) -> Self;
    /// Converts an i32, saturating to the type's range.
    fn saturate(v: i32) -> Self {
        Self::from_i32_unchecked(v.clamp(Self::QMIN, Self::QMAX))
    }
}

impl QInt for u8 {
    const QMIN: i32 = 0;
    const QMAX: i32 = 255;
    fn from_i32_unchecked(v: i32) -> Self {
        v as u8
    }
}
impl QInt for i8 {
    const QMIN: i32 = -128;
    const QMAX: i32 = 127;
    fn from_i32_unchecked(v: i32) -> Self {
        v as i8
    }
}
impl QInt for u16 {
    const QMIN: i32 = 0;
    const QMAX: i32 = 65535;
    fn from_i32_unchecked(v: i32) -> Self {
        v as u16
    }
}
impl QInt for i16 {
    const QMIN: i32 = -32768;
    const QMAX: i32 = 32767;
    fn from_i32_unchecked(v: i32) -> Self {
        v as i16
    }
}

/// Round half to even (banker's rounding), the only rounding rule in qtool.
#[inline]
pub fn round_half_even(x: f32) -> f32 {
    x.round_ties_even()
}

/// f64 variant of [`round_half_even`], used where ONNX Runtime computes in double (bias, zero-points).
#[inline]
pub fn round_half_even_f64(x: f64) -> f64 {
    x.round_ties_even()
}

/// [`round_half_even`] as an `i32`, in a form LLVM vectorizes (the saturating `as i32` of
/// `round_half_even(x) as i32` does not). Domain: `|x| <= 2^22`, where it equals
/// `round_half_even(x) as i32` exactly (tested); the int8 kernels use it on requantization values
/// clamped to an 8-bit output range (`|x| <= 510`) and on integer-valued f32 sums below `2^22`.
/// Adding `1.5 * 2^23` moves `x` into `[2^23, 2^24]`, where the f32 spacing is exactly 1, so the
/// addition itself rounds to an integer, half to even (IEEE default rounding; the offset is even, so
/// parity is kept), and the low mantissa bits hold that integer plus the offset.
#[inline(always)]
pub fn round_half_even_small(x: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    debug_assert!(x.abs() <= 4_194_304.0);
    ((x + MAGIC).to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32)
}

/// `saturate(round(x / scale) + zp)` in the range `[qmin, qmax]`, computed as ONNX Runtime does (f32).
/// NaN maps to `zp` clamped (as `nearbyintf(NaN)` cast would be undefined, we pin it down).
#[inline]
pub fn quantize_to_range(x: f32, scale: f32, zp: i32, qmin: i32, qmax: i32) -> i32 {
    let v = round_half_even(x / scale) + zp as f32;
    if v.is_nan() {
        return zp.clamp(qmin, qmax);
    }
    v.clamp(qmin as f32, qmax as f32) as i32
}

/// `saturate(round(x / scale) + zp)` into the integer type `T`.
#[inline]
pub fn quantize<T: QInt>(x: f32, scale: f32, zp: i32) -> T {
    T::from_i32_unchecked(quantize_to_range(x, scale, zp, T::QMIN, T::QMAX))
}

/// `(q - zp) * scale` in f32.
#[inline]
pub fn dequantize(q: i32, scale: f32, zp: i32) -> f32 {
    (q - zp) as f32 * scale
}

/// Requantizes an i32 accumulator (bias already added) with a float multiplier:
/// `round(clamp(acc * multiplier, qmin - zp, qmax - zp)) + zp`.
#[inline]
pub fn requantize<T: QInt>(acc: i32, multiplier: f32, zp: i32) -> T {
    let v = (acc as f32 * multiplier).clamp((T::QMIN - zp) as f32, (T::QMAX - zp) as f32);
    T::from_i32_unchecked(round_half_even(v) as i32 + zp)
}

/// The integer range a quantized tensor's parameters are computed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QRange {
    pub qmin: i32,
    pub qmax: i32,
}

/// How a range is mapped to integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct QScheme {
    /// Signed (int8-like) or unsigned target.
    pub signed: bool,
    /// Bits of the target type (8 or 16; 4 and 2 for the sub-byte types).
    pub bits: u32,
    /// Symmetric around zero.
    pub symmetric: bool,
    /// One bit fewer of range (ONNX Runtime's `reduce_range`, for weights on CPUs without VNNI).
    pub reduce_range: bool,
}

impl QScheme {
    pub const U8_ASYM: QScheme = QScheme {
        signed: false,
        bits: 8,
        symmetric: false,
        reduce_range: false,
    };
    pub const I8_SYM: QScheme = QScheme {
        signed: true,
        bits: 8,
        symmetric: true,
        reduce_range: false,
    };

    /// The `[qmin, qmax]` ONNX Runtime uses (`quant_utils.get_qmin_qmax_for_qType`).
    pub fn range(&self) -> QRange {
        let b = self.bits as i64;
        let (qmin, qmax): (i64, i64) = match (self.signed, self.reduce_range, self.symmetric) {
            (false, true, _) => (0, (1 << (b - 1)) - 1),
            (true, true, _) => (-(1 << (b - 2)), 1 << (b - 2)),
            (false, false, _) => (0, (1 << b) - 1),
            (true, false, true) => (-(1 << (b - 1)) + 1, (1 << (b - 1)) - 1),
            (true, false, false) => (-(1 << (b - 1)), (1 << (b - 1)) - 1),
        };
        QRange {
            qmin: qmin as i32,
            qmax: qmax as i32,
        }
    }
}

/// A (scale, zero-point) pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleZp {
    pub scale: f32,
    pub zero_point: i32,
}

/// Scale and zero-point for the real range `[rmin, rmax]`, exactly as ONNX Runtime's
/// `quant_utils.compute_scale_zp`: the range is widened to contain 0, made symmetric if asked, the
/// scale is computed in f64 and cast to f32, and a scale below the smallest normal f32 becomes 1 with
/// zero-point 0.
pub fn compute_scale_zp(rmin: f32, rmax: f32, scheme: QScheme) -> ScaleZp {
    let QRange { qmin, qmax } = scheme.range();
    let mut rmin = rmin.min(0.0) as f64;
    let mut rmax = rmax.max(0.0) as f64;
    if scheme.symmetric {
        let a = rmin.abs().max(rmax.abs());
        rmin = -a;
        rmax = a;
    }
    let scale = ((rmax - rmin) / (qmax - qmin) as f64) as f32;
    if scale.is_nan() || scale < f32::MIN_POSITIVE {
        return ScaleZp {
            scale: 1.0,
            zero_point: 0,
        };
    }
    let zero_point = if scheme.symmetric {
        round_half_even_f64((qmin + qmax) as f64 / 2.0) as i32
    } else {
        round_half_even_f64(qmin as f64 - rmin / scale as f64) as i32
    };
    ScaleZp { scale, zero_point }
}

/// ONNX `DynamicQuantizeLinear` parameters (uint8): `scale = (max(0,xmax) - min(0,xmin)) / 255`,
/// `zp = round(clip(-xmin / scale, 0, 255))`. A zero range gives scale 0 and zp 0, as the spec's
/// reference does not define it; qtool then quantizes everything to 0.
pub fn dynamic_quant_params(xmin: f32, xmax: f32) -> ScaleZp {
    let xmin = xmin.min(0.0);
    let xmax = xmax.max(0.0);
    let scale = (xmax - xmin) / 255.0;
    if scale == 0.0 {
        return ScaleZp {
            scale: 0.0,
            zero_point: 0,
        };
    }
    let zp = round_half_even((-xmin / scale).clamp(0.0, 255.0)) as i32;
    ScaleZp {
        scale,
        zero_point: zp,
    }
}

/// Quantizes a float bias to int32 with scale `input_scale * weight_scale` (zero-point 0), as ONNX
/// Runtime's `quantize_bias_static_impl`: computed in f64, rounded half to even, clipped to i32.
pub fn quantize_bias(b: f32, bias_scale: f32) -> i32 {
    let v = round_half_even_f64(b as f64 / bias_scale as f64);
    v.clamp(i32::MIN as f64, i32::MAX as f64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_to_even() {
        assert_eq!(round_half_even(0.5), 0.0);
        assert_eq!(round_half_even(1.5), 2.0);
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(-0.5), -0.0);
        assert_eq!(round_half_even(-1.5), -2.0);
        assert_eq!(round_half_even(-2.5), -2.0);
    }

    #[test]
    fn small_rounding_agrees_with_round_half_even_on_its_domain() {
        let check = |x: f32| {
            assert_eq!(
                round_half_even_small(x),
                round_half_even(x) as i32,
                "x = {x} ({:#x})",
                x.to_bits()
            );
        };
        // Every multiple of 2^-12 over the requantization range (|x| <= 510) and beyond.
        for i in -(600 << 12)..=(600 << 12) {
            check(i as f32 / 4096.0);
        }
        // Every tie and its neighbours up to 2^22, and the integers around powers of two.
        for k in (-(1 << 22)..(1 << 22)).step_by(997).chain(-600..600) {
            let t = k as f32 + 0.5;
            for x in [t, t.next_up(), t.next_down(), k as f32] {
                if x.abs() <= 4_194_304.0 {
                    check(x);
                }
            }
        }
        for e in 0..=22 {
            let p = (1i32 << e) as f32;
            for x in [
                p,
                -p,
                p.next_up(),
                p.next_down(),
                -p.next_up(),
                -p.next_down(),
            ] {
                if x.abs() <= 4_194_304.0 {
                    check(x);
                }
            }
        }
        // Random bit patterns with |x| <= 2^22.
        let mut s = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let x = f32::from_bits(s as u32);
            if x.is_finite() && x.abs() <= 4_194_304.0 {
                check(x);
            }
        }
    }

    #[test]
    fn quantize_saturates_and_rounds() {
        assert_eq!(quantize::<u8>(1000.0, 1.0, 0), 255);
        assert_eq!(quantize::<u8>(-1000.0, 1.0, 0), 0);
        assert_eq!(quantize::<i8>(2.5, 1.0, 0), 2);
        assert_eq!(quantize::<i8>(3.5, 1.0, 0), 4);
        assert_eq!(quantize::<i8>(-200.0, 1.0, 0), -128);
        assert_eq!(quantize::<u8>(f32::NAN, 1.0, 7), 7);
    }

    #[test]
    fn requantize_clamps_before_rounding() {
        assert_eq!(requantize::<u8>(1000, 1.0, 10), 255);
        assert_eq!(requantize::<u8>(5, 0.5, 0), 2); // 2.5 -> 2
        assert_eq!(requantize::<i8>(7, 0.5, 0), 4); // 3.5 -> 4
    }

    // The worked examples of ../shared/docs/numerics.md, for (rmin, rmax) = (-1, 3).
    #[test]
    fn scale_zp_matches_onnx_runtime_examples() {
        let u8a = compute_scale_zp(-1.0, 3.0, QScheme::U8_ASYM);
        assert_eq!(
            u8a,
            ScaleZp {
                scale: (4.0f64 / 255.0) as f32,
                zero_point: 64
            }
        );
        let i8a = compute_scale_zp(
            -1.0,
            3.0,
            QScheme {
                signed: true,
                bits: 8,
                symmetric: false,
                reduce_range: false,
            },
        );
        assert_eq!(
            i8a,
            ScaleZp {
                scale: (4.0f64 / 255.0) as f32,
                zero_point: -64
            }
        );
        let i8s = compute_scale_zp(-1.0, 3.0, QScheme::I8_SYM);
        assert_eq!(
            i8s,
            ScaleZp {
                scale: (3.0f64 / 127.0) as f32,
                zero_point: 0
            }
        );
        let u8s = compute_scale_zp(
            -1.0,
            3.0,
            QScheme {
                signed: false,
                bits: 8,
                symmetric: true,
                reduce_range: false,
            },
        );
        assert_eq!(
            u8s,
            ScaleZp {
                scale: (6.0f64 / 255.0) as f32,
                zero_point: 128
            }
        );
        let i8sr = compute_scale_zp(
            -1.0,
            3.0,
            QScheme {
                signed: true,
                bits: 8,
                symmetric: true,
                reduce_range: true,
            },
        );
        assert_eq!(
            i8sr,
            ScaleZp {
                scale: (6.0f64 / 128.0) as f32,
                zero_point: 0
            }
        );
        let u8ar = compute_scale_zp(
            -1.0,
            3.0,
            QScheme {
                signed: false,
                bits: 8,
                symmetric: false,
                reduce_range: true,
            },
        );
        assert_eq!(
            u8ar,
            ScaleZp {
                scale: (4.0f64 / 127.0) as f32,
                zero_point: 32
            }
        );
    }

    #[test]
    fn degenerate_range_gives_unit_scale() {
        assert_eq!(
            compute_scale_zp(0.0, 0.0, QScheme::U8_ASYM),
            ScaleZp {
                scale: 1.0,
                zero_point: 0
            }
        );
    }

    #[test]
    fn dynamic_params() {
        let p = dynamic_quant_params(-1.0, 3.0);
        assert_eq!(p.scale, 4.0 / 255.0);
        assert_eq!(p.zero_point, 64);
    }

    #[test]
    fn bias_quantization_clips() {
        assert_eq!(quantize_bias(1e30, 1e-10), i32::MAX);
        assert_eq!(quantize_bias(0.25, 0.1), 2); // 2.5 -> 2
    }
}
