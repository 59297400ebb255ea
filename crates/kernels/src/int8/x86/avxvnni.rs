//! AVX-VNNI path: 256-bit `vpdpbusd` (VEX encoded), 6x16 tiles on the byte layout.

use crate::int8::block::{Block, Kernel, run_block};
use crate::int8::conv::DwPlane;
use crate::int8::pack::{Layout, pack_v_by};
use crate::int8::{QOut, QType};
use std::arch::x86_64::*;

pub(crate) const LAYOUT: Layout = Layout {
    mr: 6,
    nr: 16,
    wide: false,
};

/// Proof that the CPU has AVX2 and AVX-VNNI.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AvxVnni(());

impl AvxVnni {
    pub(crate) fn new() -> Option<Self> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("avxvnni"))
            .then_some(AvxVnni(()))
    }
}

impl Kernel for AvxVnni {
    const LAYOUT: Layout = LAYOUT;
    fn block<O: QOut, const RU: bool>(self, b: &mut Block<'_, '_, '_, O>) {
        // SAFETY: an `AvxVnni` token exists only if the CPU has AVX2 and AVX-VNNI (see `new`).
        unsafe { block_vnni::<O, RU>(b) }
    }
    fn pack_v_by<T: QType>(
        self,
        src: &[T],
        k: usize,
        start: impl Fn(usize) -> usize,
        n: usize,
        flip: u8,
        signed: bool,
        out: &mut [u8],
    ) {
        // SAFETY: the token proves AVX2; the callee is safe code compiled with AVX2 enabled.
        unsafe { pack_v_avx2(src, k, start, n, flip, signed, out) }
    }
    fn depthwise<T: QType, O: QOut>(self, d: &mut DwPlane<'_, T, O>) {
        // SAFETY: the token proves AVX2; the callee is safe code compiled with AVX2 enabled.
        unsafe { dw_avx2(d) }
    }
}

#[target_feature(enable = "avx2")]
unsafe fn pack_v_avx2<T: QType>(
    src: &[T],
    k: usize,
    start: impl Fn(usize) -> usize,
    n: usize,
    flip: u8,
    signed: bool,
    out: &mut [u8],
) {
    pack_v_by(LAYOUT, src, k, start, n, flip, signed, out);
}

#[target_feature(enable = "avx2")]
unsafe fn dw_avx2<T: QType, O: QOut>(d: &mut DwPlane<'_, T, O>) {
    d.run();
}

#[target_feature(enable = "avx2,avxvnni")]
unsafe fn block_vnni<O: QOut, const RU: bool>(b: &mut Block<'_, '_, '_, O>) {
    run_block(LAYOUT, b, |r, v, acc| {
        let k4 = r.len() / LAYOUT.r_panel(1);
        assert!(r.len() == LAYOUT.r_panel(k4) && v.len() == LAYOUT.v_panel(k4) && acc.len() == 96);
        // SAFETY: the panel lengths are checked just above (the kernel reads exactly `k4` groups
        // of 24 R bytes and 64 V bytes, and reads and writes 96 i32); the features are enabled by
        // the caller.
        unsafe { kernel_6x16::<RU>(k4, r.as_ptr(), v.as_ptr(), acc.as_mut_ptr()) }
    });
}

/// `acc[i][j] += sum_g dot4(r[g][i], v[g][j])` (wrapping); `RU`: the R bytes are the unsigned
/// operand.
///
/// # Safety
/// AVX2 and AVX-VNNI must be available; `r` readable for `24 * k4` bytes, `v` for `64 * k4`, `acc`
/// readable and writable for 96 i32.
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn kernel_6x16<const RU: bool>(k4: usize, r: *const u8, v: *const u8, acc: *mut i32) {
    // SAFETY: rows `i < 6` of 16 i32 lie inside the 96 i32 the caller guarantees.
    let mut c: [[__m256i; 2]; 6] = std::array::from_fn(|i| unsafe {
        [
            _mm256_loadu_si256(acc.add(16 * i).cast()),
            _mm256_loadu_si256(acc.add(16 * i + 8).cast()),
        ]
    });
    for g in 0..k4 {
        // SAFETY: group `g` reads bytes `[64 g, 64 g + 64)` of `v` and `[24 g, 24 g + 24)` of `r`,
        // inside the ranges the caller guarantees; unaligned loads are used throughout.
        unsafe {
            let v0 = _mm256_loadu_si256(v.add(64 * g).cast());
            let v1 = _mm256_loadu_si256(v.add(64 * g + 32).cast());
            let rg = r.add(24 * g);
            for (i, ci) in c.iter_mut().enumerate() {
                let a = _mm256_set1_epi32(rg.add(4 * i).cast::<i32>().read_unaligned());
                if RU {
                    ci[0] = _mm256_dpbusd_avx_epi32(ci[0], a, v0);
                    ci[1] = _mm256_dpbusd_avx_epi32(ci[1], a, v1);
                } else {
                    ci[0] = _mm256_dpbusd_avx_epi32(ci[0], v0, a);
                    ci[1] = _mm256_dpbusd_avx_epi32(ci[1], v1, a);
                }
            }
        }
    }
    for (i, ci) in c.iter().enumerate() {
        // SAFETY: rows `i < 6` of 16 i32 lie inside the 96 i32 the caller guarantees.
        unsafe {
            _mm256_storeu_si256(acc.add(16 * i).cast(), ci[0]);
            _mm256_storeu_si256(acc.add(16 * i + 8).cast(), ci[1]);
        }
    }
}
