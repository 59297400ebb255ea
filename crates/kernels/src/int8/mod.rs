//! Int8 compute: integer GEMM and convolution with exact i32 accumulation, the kernels behind
//! `MatMulInteger`, `ConvInteger`, `QLinearMatMul` and `QLinearConv`.
//!
//! # API
//! - [`PackedB`] packs a constant `[K, N]` weight (u8 or i8, per-column or scalar zero points) once, at
//!   model load; [`qgemm`] multiplies an activation `[..., M, K]` (u8 or i8, scalar zero point) by it.
//! - [`PackedConvWeights`] packs a constant `[M, C/group, k1, ..., kn]` weight (per-output-channel or
//!   scalar zero points) for a given `group`; [`qconv`] runs an N-d convolution over an NCHW input with
//!   [`QConvParams`] (the f32 [`crate::ConvParams`]: strides, dilations, resolved pads, group; resolve
//!   `auto_pad` with [`crate::resolve_auto_pad`]). Depthwise (2-d, one input channel per group, any
//!   channel multiplier; exact f32 accumulation up to 64 taps), pointwise (1x1, stride 1, no pads: no
//!   im2col), other 2-d convolutions (packed straight from a padded, stride-phase-split input copy)
//!   and the im2col case (other ranks) are chosen automatically.
//! - The [`OutputStage`] says what is written: raw i32 accumulators ([`OutputStage::Raw`], output
//!   `&mut [i32]`), requantized u8/i8 ([`OutputStage::Requantize`], exactly
//!   [`qtool_tensor::quant::requantize`] of `acc + bias[c]` with per-channel multipliers), or f32
//!   ([`OutputStage::Dequantize`]: `(acc as f32) * (scale_a * scale_b[c])`, then `+ bias[c]` as a
//!   separate f32 add; the scale product is one f32 multiply computed first, as ORT's
//!   `ConvInteger -> Cast -> Mul(x_scale * w_scale) -> Add(bias)` graph does; no FMA).
//! - [`reference`] holds the slow, obvious oracles ([`reference::qgemm_reference`],
//!   [`reference::qconv_reference`], [`reference::depthwise_reference`]).
//!
//! Zero points are `i32` but must lie in their element type's range; bad shapes or parameters return
//! [`crate::KernelError`], nothing panics on them.
//!
//! # Exactness and the type algebra
//! Every path computes `acc = sum_k (a_k - za) * (b_k - zb)` in i32, with wrapping arithmetic: when the
//! true sum fits in i32 (always, for `K < 33000`) it is exact, and otherwise every path (and the
//! reference) agrees modulo 2^32. The inner kernels only ever see *u8 activations × i8 weights*:
//! - an i8 activation becomes `a' = a + 128` (the bit pattern XOR 0x80) with `za' = za + 128`;
//! - a u8 weight becomes `b' = b - 128` (XOR 0x80) with `zb' = zb - 128`;
//!
//! and `(a' - za') * (b' - zb') = (a - za) * (b - zb)`, so the four combinations u8×i8, u8×u8, i8×i8 and
//! i8×u8 share one kernel. The kernel computes the pure product sum `S = sum a' b'`, and
//! `acc = S - zb' * sum_k a' - za' * sum_k b' + K * za' * zb'`. The weight sums (`sum_k b'` per output
//! channel) are computed when packing; the activation sums only when some `zb' != 0`. Zero padding of
//! K to a multiple of 4 adds 0 to every sum; conv padding is filled with the input zero point, which
//! is included in the activation sums, so it contributes `(za - za) * (b - zb) = 0`.
//!
//! # Kernel paths
//! Chosen at run time ([`KernelPath::selected`]): AVX512-VNNI (`vpdpbusd` on 512 bits, 8x32 tiles),
//! AVX-VNNI (`vpdpbusd` on 256 bits, 6x16), AVX2 (6x16, see below) and a portable path (4x16) that is
//! always present. `QTOOL_INT8_KERNEL=portable|avx2|avxvnni|avx512vnni` forces one (read once; an
//! unavailable or unknown value logs a warning and falls back to the best available). The path is
//! fixed when weights are packed (the packed layout belongs to the path); `*_with_path` constructors
//! force one (tests, benchmarks).
//!
//! AVX2 exactness: `vpmaddubsw` sums two u8×i8 products into a *saturating* i16 (255·(-128)·2 does
//! not fit), so the AVX2 path does not use it. It packs both operands widened to i16 (activations
//! zero-extended into [0, 255], weights sign-extended into [-128, 127]) and multiplies with `vpmaddwd`,
//! which sums two i16×i16 products into an i32: each product is at most 255·128 = 32640 in
//! magnitude, the pair at most 65280, so nothing saturates or wraps (`vpmaddwd` only overflows for
//! (-32768)²·2); the i32 accumulation is a wrapping `vpaddd` like the reference. It issues the same
//! number of multiply µops per MAC as the `vpmaddubsw + vpmaddwd(1)` sequence.
//!
//! The output stages are the scalar contract (`requantize`, the f32 formula) compiled inside the
//! SIMD paths' `#[target_feature]` functions, so LLVM vectorizes the very same operations
//! (`cvtdq2ps`, `mulps`, `max/min`, `roundps(nearest)`, saturating convert): bit-identical by
//! construction, and tested against the scalar functions on every path.

mod block;
mod conv;
mod gemm;
mod pack;
mod portable;
pub mod reference;
mod stage;
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests;

pub use conv::{PackedConvWeights, QConvParams, qconv, qconv_output_shape};
pub use gemm::{PackedB, qgemm, qgemm_output_shape};
pub use stage::{OutputStage, QOut};

use crate::error::{KernelError, Result};
use qtool_tensor::quant::QInt;
use std::sync::OnceLock;

mod private {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for i8 {}
    impl Sealed for i32 {}
    impl Sealed for f32 {}
}

/// An 8-bit quantized element type: `u8` or `i8`.
pub trait QType: QInt + private::Sealed + Default {
    /// `true` for i8.
    const SIGNED: bool;
    /// The raw bit pattern.
    fn bits(self) -> u8;
}

impl QType for u8 {
    const SIGNED: bool = false;
    #[inline(always)]
    fn bits(self) -> u8 {
        self
    }
}

impl QType for i8 {
    const SIGNED: bool = true;
    #[inline(always)]
    fn bits(self) -> u8 {
        self as u8
    }
}

/// XOR mask turning an activation of type `T` into the kernels' u8 domain, and the zero-point shift.
pub(crate) fn act_domain<T: QType>() -> (u8, i32) {
    if T::SIGNED { (0x80, 128) } else { (0, 0) }
}

/// XOR mask turning a weight of type `T` into the kernels' i8 domain, and the zero-point shift.
pub(crate) fn weight_domain<T: QType>() -> (u8, i32) {
    if T::SIGNED { (0, 0) } else { (0x80, -128) }
}

/// Checks that a zero point lies in `T`'s range.
pub(crate) fn check_zp<T: QInt>(what: &str, zp: i32) -> Result<()> {
    if (T::QMIN..=T::QMAX).contains(&zp) {
        Ok(())
    } else {
        Err(KernelError::Param(format!(
            "{what} zero point {zp} is outside [{}, {}]",
            T::QMIN,
            T::QMAX
        )))
    }
}

/// The micro-kernel family an int8 computation runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelPath {
    /// Plain Rust, always available.
    Portable,
    /// AVX2: i16-widened operands and `vpmaddwd` (exact).
    Avx2,
    /// AVX-VNNI: 256-bit `vpdpbusd`.
    AvxVnni,
    /// AVX512-VNNI: 512-bit `vpdpbusd`.
    Avx512Vnni,
}

impl KernelPath {
    /// Every path, fastest first.
    pub const ALL: [KernelPath; 4] = [
        KernelPath::Avx512Vnni,
        KernelPath::AvxVnni,
        KernelPath::Avx2,
        KernelPath::Portable,
    ];

    /// The name `QTOOL_INT8_KERNEL` uses.
    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Portable => "portable",
            KernelPath::Avx2 => "avx2",
            KernelPath::AvxVnni => "avxvnni",
            KernelPath::Avx512Vnni => "avx512vnni",
        }
    }

    /// Parses a `QTOOL_INT8_KERNEL` value.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s.trim())
    }

    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            KernelPath::Portable => true,
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2 => x86::Avx2::new().is_some(),
            #[cfg(target_arch = "x86_64")]
            KernelPath::AvxVnni => x86::AvxVnni::new().is_some(),
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx512Vnni => x86::Avx512Vnni::new().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest path this CPU runs.
    pub fn best() -> Self {
        Self::ALL
            .into_iter()
            .find(|p| p.is_available())
            .unwrap_or(KernelPath::Portable)
    }

    /// The path used by the plain constructors: `QTOOL_INT8_KERNEL` if set and available, else
    /// [`KernelPath::best`]. Read once per process.
    pub fn selected() -> Self {
        static SELECTED: OnceLock<KernelPath> = OnceLock::new();
        *SELECTED
            .get_or_init(|| resolve_env_choice(std::env::var("QTOOL_INT8_KERNEL").ok().as_deref()))
    }

    pub(crate) fn layout(self) -> pack::Layout {
        match self {
            KernelPath::Portable => portable::LAYOUT,
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2 => x86::AVX2_LAYOUT,
            #[cfg(target_arch = "x86_64")]
            KernelPath::AvxVnni => x86::AVXVNNI_LAYOUT,
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx512Vnni => x86::AVX512VNNI_LAYOUT,
            #[cfg(not(target_arch = "x86_64"))]
            _ => portable::LAYOUT,
        }
    }

    /// `Ok(self)` if available, else an `Unsupported` error.
    pub(crate) fn check(self) -> Result<Self> {
        if self.is_available() {
            Ok(self)
        } else {
            Err(KernelError::Unsupported(format!(
                "int8 kernel path {} is not available on this CPU",
                self.name()
            )))
        }
    }
}

/// The choice for a `QTOOL_INT8_KERNEL` value (`None`: unset).
pub(crate) fn resolve_env_choice(value: Option<&str>) -> KernelPath {
    let best = KernelPath::best();
    let Some(v) = value.filter(|v| !v.trim().is_empty()) else {
        return best;
    };
    match KernelPath::from_name(v) {
        Some(p) if p.is_available() => p,
        Some(p) => {
            tracing::warn!(
                "QTOOL_INT8_KERNEL={v}: path {} is not available on this CPU, using {}",
                p.name(),
                best.name()
            );
            best
        }
        None => {
            tracing::warn!(
                "QTOOL_INT8_KERNEL={v}: unknown (expected portable, avx2, avxvnni or avx512vnni), using {}",
                best.name()
            );
            best
        }
    }
}

/// Runs `$body` with `$k` bound to the kernel token of `$path` (erroring if unavailable).
macro_rules! with_kernel {
    ($path:expr, $k:ident => $body:expr) => {{
        match $path {
            $crate::int8::KernelPath::Portable => {
                let $k = $crate::int8::portable::Portable;
                $body
            }
            #[cfg(target_arch = "x86_64")]
            $crate::int8::KernelPath::Avx2 => {
                let $k = $crate::int8::x86::Avx2::new().ok_or_else(|| {
                    $crate::error::KernelError::Unsupported("AVX2 not available".into())
                })?;
                $body
            }
            #[cfg(target_arch = "x86_64")]
            $crate::int8::KernelPath::AvxVnni => {
                let $k = $crate::int8::x86::AvxVnni::new().ok_or_else(|| {
                    $crate::error::KernelError::Unsupported("AVX-VNNI not available".into())
                })?;
                $body
            }
            #[cfg(target_arch = "x86_64")]
            $crate::int8::KernelPath::Avx512Vnni => {
                let $k = $crate::int8::x86::Avx512Vnni::new().ok_or_else(|| {
                    $crate::error::KernelError::Unsupported("AVX512-VNNI not available".into())
                })?;
                $body
            }
            #[cfg(not(target_arch = "x86_64"))]
            p => {
                return Err($crate::error::KernelError::Unsupported(format!(
                    "int8 kernel path {} needs x86_64",
                    p.name()
                )));
            }
        }
    }};
}
pub(crate) use with_kernel;
