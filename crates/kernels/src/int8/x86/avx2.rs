//! AVX2 path, 6x16 tiles on the wide (i16) layout with `vpmaddwd`: exact for u8 x i8 operands,
//! because each i16 pair sum is at most 2 * 255 * 128 = 65280 in magnitude (no `vpmaddubsw`, whose
//! i16 sum saturates).

use crate::int8::block::{Block, Kernel, run_block};
use crate::int8::conv::DwPlane;
use crate::int8::pack::{Layout, pack_v_by};
use crate::int8::{QOut, QType};
use std::arch::x86_64::*;

pub(crate) const LAYOUT: Layout = Layout {
    mr: 6,
    nr: 16,
    wide: true,
};

/// Proof that the CPU has AVX2.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2(());

impl Avx2 {
    pub(crate) fn new() -> Option<Self> {
        is_x86_feature_detected!("avx2").then_some(Avx2(()))
    }
}

impl Kernel for Avx2 {
    const LAYOUT: Layout = LAYOUT;
    fn block<O: QOut, const RU: bool>(self, b: &mut Block<'_, '_, '_, O>) {
        // SAFETY: an `Avx2` token exists only if the CPU has AVX2 (checked in `new`).
        unsafe { block_avx2(b) }
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

#[target_feature(enable = "avx2")]
unsafe fn block_avx2<O: QOut>(b: &mut Block<'_, '_, '_, O>) {
    run_block(LAYOUT, b, |r, v, acc| {
        let k4 = r.len() / LAYOUT.r_panel(1);
        assert!(r.len() == LAYOUT.r_panel(k4) && v.len() == LAYOUT.v_panel(k4) && acc.len() == 96);
        // SAFETY: the panel lengths are checked just above (the kernel reads exactly `2 * k4`
        // steps of 24 R bytes and 64 V bytes, and reads and writes 96 i32); AVX2 is enabled by
        // the caller.
        unsafe { kernel_6x16(2 * k4, r.as_ptr(), v.as_ptr(), acc.as_mut_ptr()) }
    });
}

/// `acc[i][j] += sum_s madd(r[s][i], v[s][j])` (wrapping) over `steps` i16-pair steps.
///
/// # Safety
/// AVX2 must be available; `r` must be readable for `24 * steps` bytes, `v` for `64 * steps`,
/// `acc` readable and writable for 96 i32.
#[target_feature(enable = "avx2")]
unsafe fn kernel_6x16(steps: usize, r: *const u8, v: *const u8, acc: *mut i32) {
    // SAFETY: rows `i < 6` of 16 i32 lie inside the 96 i32 the caller guarantees.
    let mut c: [[__m256i; 2]; 6] = std::array::from_fn(|i| unsafe {
        [
            _mm256_loadu_si256(acc.add(16 * i).cast()),
            _mm256_loadu_si256(acc.add(16 * i + 8).cast()),
        ]
    });
    for s in 0..steps {
        // SAFETY: step `s` reads bytes `[64 s, 64 s + 64)` of `v` and `[24 s, 24 s + 24)` of `r`,
        // inside the ranges the caller guarantees; unaligned loads are used throughout.
        unsafe {
            let v0 = _mm256_loadu_si256(v.add(64 * s).cast());
            let v1 = _mm256_loadu_si256(v.add(64 * s + 32).cast());
            let rs = r.add(24 * s);
            for (i, ci) in c.iter_mut().enumerate() {
                let a = _mm256_set1_epi32(rs.add(4 * i).cast::<i32>().read_unaligned());
                ci[0] = _mm256_add_epi32(ci[0], _mm256_madd_epi16(a, v0));
                ci[1] = _mm256_add_epi32(ci[1], _mm256_madd_epi16(a, v1));
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
