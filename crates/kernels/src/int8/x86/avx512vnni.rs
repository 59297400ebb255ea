//! AVX512-VNNI path: 512-bit `vpdpbusd`, 8x32 tiles (16 zmm accumulators) on the byte layout.

use crate::int8::block::{Block, Kernel, run_block};
use crate::int8::conv::DwPlane;
use crate::int8::pack::{Layout, pack_v};
use crate::int8::{QOut, QType};
use std::arch::x86_64::*;

pub(crate) const LAYOUT: Layout = Layout {
    mr: 8,
    nr: 32,
    wide: false,
};

/// Proof that the CPU has AVX-512 F/BW/VL and AVX512-VNNI.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512Vnni(());

impl Avx512Vnni {
    pub(crate) fn new() -> Option<Self> {
        (is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni"))
        .then_some(Avx512Vnni(()))
    }
}

impl Kernel for Avx512Vnni {
    const LAYOUT: Layout = LAYOUT;
    fn block<O: QOut, const RU: bool>(self, b: &mut Block<'_, '_, '_, O>) {
        // SAFETY: an `Avx512Vnni` token exists only if the CPU has these features (see `new`).
        unsafe { block_vnni::<O, RU>(b) }
    }
    fn pack_v<T: QType>(
        self,
        src: &[T],
        k: usize,
        ld: usize,
        c0: usize,
        n: usize,
        flip: u8,
        signed: bool,
        out: &mut [u8],
    ) {
        // SAFETY: the token proves the features; the callee is safe code compiled with them.
        unsafe { pack_v_avx512(src, k, ld, c0, n, flip, signed, out) }
    }
    fn depthwise<T: QType, O: QOut>(self, d: &mut DwPlane<'_, T, O>) {
        // SAFETY: the token proves the features; the callee is safe code compiled with them.
        unsafe { dw_avx512(d) }
    }
}

#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl")]
unsafe fn pack_v_avx512<T: QType>(
    src: &[T],
    k: usize,
    ld: usize,
    c0: usize,
    n: usize,
    flip: u8,
    signed: bool,
    out: &mut [u8],
) {
    pack_v(LAYOUT, src, k, ld, c0, n, flip, signed, out);
}

#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl")]
unsafe fn dw_avx512<T: QType, O: QOut>(d: &mut DwPlane<'_, T, O>) {
    d.run();
}

#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn block_vnni<O: QOut, const RU: bool>(b: &mut Block<'_, '_, '_, O>) {
    let k4 = b.k4;
    run_block(LAYOUT, b, |r, v, acc| {
        assert!(r.len() == LAYOUT.r_panel(k4) && v.len() == LAYOUT.v_panel(k4) && acc.len() == 256);
        // SAFETY: the panel lengths are checked just above (the kernel reads exactly `k4` groups
        // of 32 R bytes and 128 V bytes, and writes 256 i32); the features are enabled by the caller.
        unsafe { kernel_8x32::<RU>(k4, r.as_ptr(), v.as_ptr(), acc.as_mut_ptr()) }
    });
}

/// `acc[i][j] = sum_g dot4(r[g][i], v[g][j])`; `RU`: the R bytes are the unsigned operand.
///
/// # Safety
/// AVX-512 F/BW and AVX512-VNNI must be available; `r` readable for `32 * k4` bytes, `v` for
/// `128 * k4`, `acc` writable for 256 i32.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn kernel_8x32<const RU: bool>(k4: usize, r: *const u8, v: *const u8, acc: *mut i32) {
    let mut c = [[_mm512_setzero_si512(); 2]; 8];
    for g in 0..k4 {
        // SAFETY: group `g` reads bytes `[128 g, 128 g + 128)` of `v` and `[32 g, 32 g + 32)` of
        // `r`, inside the ranges the caller guarantees; unaligned loads are used throughout.
        unsafe {
            let v0 = _mm512_loadu_si512(v.add(128 * g).cast());
            let v1 = _mm512_loadu_si512(v.add(128 * g + 64).cast());
            let rg = r.add(32 * g);
            for (i, ci) in c.iter_mut().enumerate() {
                let a = _mm512_set1_epi32(rg.add(4 * i).cast::<i32>().read_unaligned());
                if RU {
                    ci[0] = _mm512_dpbusd_epi32(ci[0], a, v0);
                    ci[1] = _mm512_dpbusd_epi32(ci[1], a, v1);
                } else {
                    ci[0] = _mm512_dpbusd_epi32(ci[0], v0, a);
                    ci[1] = _mm512_dpbusd_epi32(ci[1], v1, a);
                }
            }
        }
    }
    for (i, ci) in c.iter().enumerate() {
        // SAFETY: rows `i < 8` of 32 i32 lie inside the 256 i32 the caller guarantees.
        unsafe {
            _mm512_storeu_si512(acc.add(32 * i).cast(), ci[0]);
            _mm512_storeu_si512(acc.add(32 * i + 16).cast(), ci[1]);
        }
    }
}
