//! AVX512-VNNI path: 512-bit `vpdpbusd`, 8x32 tiles (16 zmm accumulators) on the byte layout.

use crate::int8::block::{Block, Kernel, run_block};
use crate::int8::conv::DwPlane;
use crate::int8::pack::{Layout, pack_v_by};
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
        // SAFETY: the token proves the features; the callee is safe code compiled with them.
        unsafe { pack_v_avx512(src, k, start, n, flip, signed, out) }
    }
    fn depthwise<T: QType, O: QOut>(self, d: &mut DwPlane<'_, T, O>) {
        // SAFETY: the token proves the features; the callee is safe code compiled with them.
        unsafe { dw_avx512(d) }
    }
}

/// [`pack_v_by`] for this layout: full cells (4 present k rows, 32 columns) are interleaved with
/// byte/word unpacks (`4 x 32` source bytes become 32 lanes of 4 bytes); the others (the last k
/// group when `k % 4 != 0`, the last panel when `n % 32 != 0`) take the generic code, cell by cell.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl")]
unsafe fn pack_v_avx512<T: QType>(
    src: &[T],
    k: usize,
    start: impl Fn(usize) -> usize,
    n: usize,
    flip: u8,
    signed: bool,
    out: &mut [u8],
) {
    let nr = LAYOUT.nr;
    let k4 = k.div_ceil(4);
    let kf = k / 4;
    let nf = n / nr;
    let pl = LAYOUT.v_panel(k4);
    assert!(
        out.len() >= n.div_ceil(nr) * pl && (0..k).all(|kk| start(kk) + n <= src.len()),
        "int8 pack_v: buffers too short"
    );
    // Bytes of `src` (u8 and i8 have the same size and layout).
    let sp = src.as_ptr().cast::<u8>();
    let op = out.as_mut_ptr();
    // SAFETY: the features are enabled by this function's caller. Full cells read 32 bytes at
    // `start(4g + t) + 32p` for `t < 4`, `g < kf`, `p < nf`, ending at most at
    // `start(4g + t) + n <= src.len()` (checked above), and write 128 bytes at `p * pl + 128 g`,
    // inside `out` (checked above).
    unsafe {
        let fl = _mm256_set1_epi8(flip as i8);
        for g in 0..kf {
            let rows = [0, 1, 2, 3].map(|t| sp.add(start(4 * g + t)));
            for p in 0..nf {
                let ld32 =
                    |t: usize| _mm256_xor_si256(_mm256_loadu_si256(rows[t].add(nr * p).cast()), fl);
                let (a, b, c, d) = (ld32(0), ld32(1), ld32(2), ld32(3));
                // Per 128-bit lane: pairs (a, b) and (c, d) of columns 0-7 / 8-15, then quads.
                let ab_lo = _mm256_unpacklo_epi8(a, b);
                let ab_hi = _mm256_unpackhi_epi8(a, b);
                let cd_lo = _mm256_unpacklo_epi8(c, d);
                let cd_hi = _mm256_unpackhi_epi8(c, d);
                // Lane 0 holds columns 0-15 of the panel, lane 1 columns 16-31.
                let q0 = _mm256_unpacklo_epi16(ab_lo, cd_lo); // columns 0-3 | 16-19
                let q1 = _mm256_unpackhi_epi16(ab_lo, cd_lo); // 4-7 | 20-23
                let q2 = _mm256_unpacklo_epi16(ab_hi, cd_hi); // 8-11 | 24-27
                let q3 = _mm256_unpackhi_epi16(ab_hi, cd_hi); // 12-15 | 28-31
                let dst = op.add(p * pl + g * nr * 4);
                _mm256_storeu_si256(dst.cast(), _mm256_permute2x128_si256(q0, q1, 0x20));
                _mm256_storeu_si256(dst.add(32).cast(), _mm256_permute2x128_si256(q2, q3, 0x20));
                _mm256_storeu_si256(dst.add(64).cast(), _mm256_permute2x128_si256(q0, q1, 0x31));
                _mm256_storeu_si256(dst.add(96).cast(), _mm256_permute2x128_si256(q2, q3, 0x31));
            }
        }
    }
    // The partial cells: the last panel of every group, then the last group of every panel.
    if nf * nr < n {
        let j0 = nf * nr;
        let mut tmp = vec![0u8; LAYOUT.v_panel(k4)];
        let st = |kk: usize| start(kk) + j0;
        pack_v_by(LAYOUT, src, k, st, n - j0, flip, signed, &mut tmp);
        out[nf * pl..nf * pl + tmp.len()].copy_from_slice(&tmp);
    }
    if kf < k4 {
        let mut tmp = vec![0u8; nr * 4];
        for p in 0..nf {
            let st = |kk: usize| start(4 * kf + kk) + p * nr;
            pack_v_by(LAYOUT, src, k - 4 * kf, st, nr, flip, signed, &mut tmp);
            out[p * pl + kf * nr * 4..p * pl + (kf + 1) * nr * 4].copy_from_slice(&tmp);
        }
    }
}

#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl")]
unsafe fn dw_avx512<T: QType, O: QOut>(d: &mut DwPlane<'_, T, O>) {
    d.run();
}

#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn block_vnni<O: QOut, const RU: bool>(b: &mut Block<'_, '_, '_, O>) {
    run_block(LAYOUT, b, |r, v, acc| {
        let k4 = r.len() / LAYOUT.r_panel(1);
        assert!(r.len() == LAYOUT.r_panel(k4) && v.len() == LAYOUT.v_panel(k4) && acc.len() == 256);
        // SAFETY: the panel lengths are checked just above (the kernel reads exactly `k4` groups
        // of 32 R bytes and 128 V bytes, and reads and writes 256 i32); the features are enabled
        // by the caller.
        unsafe { kernel_8x32::<RU>(k4, r.as_ptr(), v.as_ptr(), acc.as_mut_ptr()) }
    });
}

/// `acc[i][j] += sum_g dot4(r[g][i], v[g][j])` (wrapping); `RU`: the R bytes are the unsigned
/// operand.
///
/// # Safety
/// AVX-512 F/BW and AVX512-VNNI must be available; `r` readable for `32 * k4` bytes, `v` for
/// `128 * k4`, `acc` readable and writable for 256 i32.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn kernel_8x32<const RU: bool>(k4: usize, r: *const u8, v: *const u8, acc: *mut i32) {
    // SAFETY: rows `i < 8` of 32 i32 lie inside the 256 i32 the caller guarantees.
    let mut c: [[__m512i; 2]; 8] = std::array::from_fn(|i| unsafe {
        [
            _mm512_loadu_si512(acc.add(32 * i).cast()),
            _mm512_loadu_si512(acc.add(32 * i + 16).cast()),
        ]
    });
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
