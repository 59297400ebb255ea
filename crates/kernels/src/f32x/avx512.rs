//! AVX-512 f32 GEMM, BLIS-style: `C = alpha * A * B + beta * C` with A and B packed per call, or
//! with A packed once ([`pack_a_all`], for constant weights) and an optional per-row bias added in
//! the micro-kernel's store (`C = A * B + bias`, the same single add as filling C with the bias and
//! accumulating).
//!
//! Loops (outer to inner): K blocks of [`KC`] (A block `[M, kc]` packed into [`MR`]-row panels, alpha
//! folded in), N blocks of [`NC`] (B block `[kc, nc]` packed into [`NR`]-column panels, zero-padded to
//! a multiple of 16, kept in L2), A micro-panels (8 x kc, stay in L1), B micro-panels, and an
//! `R x (16 * NV)` micro-kernel (`R <= 8`, `NV <= 3`) holding up to 24 zmm accumulators. The N edge
//! is stored with a lane mask, the M edge uses a kernel instantiated for the exact row count.
//! After the first K block the kernel accumulates into C; the first one reads C only if `beta != 0`.

use std::arch::x86_64::*;
use std::cell::RefCell;

/// Rows of A per micro-panel (max rows of the micro-kernel).
pub(crate) const MR: usize = 8;
/// Columns of B per micro-panel (3 zmm).
pub(crate) const NR: usize = 48;
/// K block: an 8 x 256 A micro-panel is 8 KiB (L1), a 256 x 48 B micro-panel 48 KiB.
const KC: usize = 256;
/// N block: a 256 x 768 B block is 768 KiB (L2).
const NC: usize = NR * 16;

thread_local! {
    static PACK: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `C = alpha * A * B + beta * C`, `A [m, k]` at `a[i * rsa + l * csa]`, `B [k, n]` at
/// `b[l * rsb + j * csb]`, C row-major with row stride `ldc` (`beta == 0`: C is not read).
///
/// # Safety
/// The CPU must support `avx512f`; every `a[i * rsa + l * csa]` (`i < m`, `l < k`) and
/// `b[l * rsb + j * csb]` (`l < k`, `j < n`) must be readable; every `c[i * ldc + j]` (`i < m`,
/// `j < n`) must be writable and not overlap A or B, and nothing else may access those elements
/// during the call.
pub(crate) unsafe fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    beta: f32,
    c: *mut f32,
    ldc: usize,
) {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        gemm_impl(
            m,
            k,
            n,
            ASrc::Raw { a, rsa, csa, alpha },
            b,
            rsb,
            csb,
            beta,
            std::ptr::null(),
            c,
            ldc,
        )
    }
}

/// Floats of `A [m, k]` packed by [`pack_a_all`].
pub(crate) fn packed_a_len(m: usize, k: usize) -> usize {
    m.div_ceil(MR) * MR * k
}

/// Packs the whole row-major `A [m, k]` once: K block `pc` (of [`KC`]) starts at
/// `mpanels * MR * pc` and is laid out as [`pack_a`] lays out one block (alpha 1).
/// Panics if `a.len() < m * k` or `dst.len() < packed_a_len(m, k)`.
pub(crate) fn pack_a_all(m: usize, k: usize, a: &[f32], dst: &mut [f32]) {
    assert!(a.len() >= m * k && dst.len() >= packed_a_len(m, k));
    let mp = m.div_ceil(MR);
    let mut pc = 0;
    while pc < k {
        let kc = KC.min(k - pc);
        // SAFETY: rows < m, columns pc..pc + kc <= k of the row-major A are inside `a` (asserted);
        // the destination block holds mp * MR * kc floats inside `dst` (asserted).
        unsafe {
            pack_a(
                m,
                kc,
                1.0,
                a.as_ptr().add(pc),
                k as isize,
                1,
                &mut dst[mp * MR * pc..mp * MR * (pc + kc)],
            )
        };
        pc += kc;
    }
}

/// `C [m, n] = A * B + bias` (`beta == 0`) or `C += A * B` (`beta == 1`, bias must be null) with A
/// packed by [`pack_a_all`] for `m_total` rows, of which this call uses the rows of panels
/// `ip0..` (`ip0 * MR` is the first row; `m` rows from there). `bias`, when not null, holds `m`
/// floats, one per row.
///
/// # Safety
/// avx512f must be available; `pa` must be a [`pack_a_all`] buffer of `m_total` rows and `k`
/// columns (checked); B and C as for [`sgemm`]; `bias` null or `m` readable floats.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm_packed_a(
    m: usize,
    k: usize,
    n: usize,
    pa: &[f32],
    m_total: usize,
    ip0: usize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    beta: f32,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
) {
    assert!(pa.len() >= packed_a_len(m_total, k) && ip0 * MR + m <= m_total);
    let src = ASrc::Packed {
        pa: pa.as_ptr(),
        mp_total: m_total.div_ceil(MR),
        ip0,
    };
    // SAFETY: forwarded from this function's contract.
    unsafe { gemm_impl(m, k, n, src, b, rsb, csb, beta, bias, c, ldc) }
}

/// Where the A blocks come from.
#[derive(Clone, Copy)]
enum ASrc {
    /// Strided A, packed per K block into the thread's buffer (alpha folded in).
    Raw {
        a: *const f32,
        rsa: isize,
        csa: isize,
        alpha: f32,
    },
    /// Packed once by [`pack_a_all`] (`mp_total` panels); this call starts at panel `ip0`.
    Packed {
        pa: *const f32,
        mp_total: usize,
        ip0: usize,
    },
}

/// The loops shared by [`sgemm`] and [`sgemm_packed_a`].
///
/// # Safety
/// As the two callers; `bias` null or `m` readable floats.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_impl(
    m: usize,
    k: usize,
    n: usize,
    asrc: ASrc,
    b: *const f32,
    rsb: isize,
    csb: isize,
    beta: f32,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    // beta other than 0 and 1 (or 1 with a bias) scales C and adds the bias up front.
    if k == 0 || (beta != 0.0 && (beta != 1.0 || !bias.is_null())) {
        for i in 0..m {
            // SAFETY: `bias` holds m floats when not null (contract).
            let bi = if bias.is_null() {
                0.0
            } else {
                unsafe { *bias.add(i) }
            };
            for j in 0..n {
                // SAFETY: (i, j) is inside the C view the caller guarantees writable.
                unsafe {
                    let p = c.add(i * ldc + j);
                    *p = if beta == 0.0 { bi } else { beta * *p + bi };
                }
            }
        }
        if k == 0 {
            return;
        }
    }
    let mut bufs = PACK.with(|p| std::mem::take(&mut *p.borrow_mut()));
    let (pa, pb) = &mut bufs;
    let mpanels = m.div_ceil(MR);
    let kc_max = KC.min(k);
    let a_len = mpanels * MR * kc_max;
    let b_len = NC.min(n).div_ceil(16) * 16 * kc_max;
    if matches!(asrc, ASrc::Raw { .. }) && pa.len() < a_len {
        pa.resize(a_len, 0.0);
    }
    if pb.len() < b_len {
        pb.resize(b_len, 0.0);
    }
    // When C is read (beta != 0), the bias, if any, is already in it (pre-pass above).
    let first_reads_c = beta != 0.0;
    let mut pc = 0;
    while pc < k {
        let kc = KC.min(k - pc);
        let a_block: *const f32 = match asrc {
            ASrc::Raw { a, rsa, csa, alpha } => {
                // SAFETY: rows < m and columns pc..pc + kc < k of A are readable (caller); `pa`
                // holds mpanels * MR * kc floats.
                unsafe { pack_a(m, kc, alpha, a.offset(pc as isize * csa), rsa, csa, pa) };
                pa.as_ptr()
            }
            // SAFETY: block pc of a pack_a_all buffer starts at mp_total * MR * pc, and panel ip0
            // of it at ip0 * MR * kc more (caller's contract on `pa`).
            ASrc::Packed { pa, mp_total, ip0 } => unsafe {
                pa.add(mp_total * MR * pc + ip0 * MR * kc)
            },
        };
        let accumulate = pc > 0 || first_reads_c;
        // The bias enters once, in the first K block's store (when C is not read there).
        let bias_here = if pc == 0 && !first_reads_c {
            bias
        } else {
            std::ptr::null()
        };
        let mut jc = 0;
        while jc < n {
            let nc = NC.min(n - jc);
            // SAFETY: rows pc..pc + kc < k and columns jc..jc + nc <= n of B are readable; `pb`
            // holds round_up(nc, 16) * kc floats.
            unsafe {
                pack_b(
                    kc,
                    nc,
                    b.offset(pc as isize * rsb + jc as isize * csb),
                    rsb,
                    csb,
                    pb,
                )
            };
            for ip in 0..mpanels {
                let rows = MR.min(m - ip * MR);
                // SAFETY: panel ip of this block is inside the packed A (see above).
                let ap = unsafe { a_block.add(ip * MR * kc) };
                let bp_row = if bias_here.is_null() {
                    std::ptr::null()
                } else {
                    // SAFETY: rows ip * MR.. < m of the bias are readable (contract).
                    unsafe { bias_here.add(ip * MR) }
                };
                let mut j0 = 0;
                while j0 < nc {
                    let w = NR.min(nc - j0);
                    let nv = w.div_ceil(16);
                    let tail = w - (nv - 1) * 16;
                    let mask: __mmask16 = if tail == 16 {
                        0xFFFF
                    } else {
                        (1u16 << tail) - 1
                    };
                    let bp = pb[j0 * kc..].as_ptr();
                    // SAFETY: the kernel writes rows ip*MR..ip*MR + rows < m and columns
                    // jc + j0..jc + j0 + w <= n of C (the masked last vector covers only `tail`
                    // columns); it reads kc * MR floats of the A panel from ap and kc * nv * 16 of
                    // `pb` from bp, which were packed above; `bp_row` is null or `rows` readable
                    // floats; avx512f is available (caller).
                    unsafe {
                        let cp = c.add(ip * MR * ldc + jc + j0);
                        micro(rows, nv, kc, ap, bp, cp, ldc, mask, accumulate, bp_row);
                    }
                    j0 += w;
                }
            }
            jc += nc;
        }
        pc += kc;
    }
    PACK.with(|p| {
        let mut slot = p.borrow_mut();
        if slot.0.capacity() < bufs.0.capacity() || slot.1.capacity() < bufs.1.capacity() {
            *slot = bufs;
        }
    });
}

/// Packs `alpha * A[.., 0..kc]` into MR-row panels: panel `ip`, step `l`, row `r` at
/// `dst[(ip * kc + l) * MR + r]`, rows past `m` zero.
///
/// # Safety
/// `a[i * rsa + l * csa]` must be readable for `i < m`, `l < kc`.
unsafe fn pack_a(
    m: usize,
    kc: usize,
    alpha: f32,
    a: *const f32,
    rsa: isize,
    csa: isize,
    dst: &mut [f32],
) {
    for (ip, panel) in dst[..m.div_ceil(MR) * MR * kc]
        .chunks_exact_mut(MR * kc)
        .enumerate()
    {
        let rows = MR.min(m - ip * MR);
        if rows == MR && csa == 1 {
            // SAFETY: rows ip * MR..ip * MR + MR < m each hold kc contiguous readable floats.
            let src: [&[f32]; MR] = std::array::from_fn(|r| unsafe {
                std::slice::from_raw_parts(a.offset((ip * MR + r) as isize * rsa), kc)
            });
            for (l, d) in panel.chunks_exact_mut(MR).enumerate() {
                for r in 0..MR {
                    d[r] = alpha * src[r][l];
                }
            }
            continue;
        }
        for (l, d) in panel.chunks_exact_mut(MR).enumerate() {
            for (r, v) in d.iter_mut().enumerate() {
                *v = if r < rows {
                    // SAFETY: row ip * MR + r < m and column l < kc are inside A (caller).
                    alpha * unsafe { *a.offset((ip * MR + r) as isize * rsa + l as isize * csa) }
                } else {
                    0.0
                };
            }
        }
    }
}

/// Packs `B [kc, nc]` into NR-column panels: panel starting at column `j0` (width `w`, padded to
/// `wp = round_up(w, 16)`) holds step `l`, column `j` at `dst[j0 * kc + l * wp + j]`, padding zero.
///
/// # Safety
/// `b[l * rsb + j * csb]` must be readable for `l < kc`, `j < nc`.
unsafe fn pack_b(kc: usize, nc: usize, b: *const f32, rsb: isize, csb: isize, dst: &mut [f32]) {
    let mut j0 = 0;
    while j0 < nc {
        let w = NR.min(nc - j0);
        let wp = w.div_ceil(16) * 16;
        let panel = &mut dst[j0 * kc..j0 * kc + kc * wp];
        for (l, d) in panel.chunks_exact_mut(wp).enumerate() {
            let src = b.wrapping_offset(l as isize * rsb + j0 as isize * csb);
            if csb == 1 {
                // SAFETY: columns j0..j0 + w of row l are contiguous and readable (caller).
                let s = unsafe { std::slice::from_raw_parts(src, w) };
                d[..w].copy_from_slice(s);
            } else {
                for (j, v) in d[..w].iter_mut().enumerate() {
                    // SAFETY: row l < kc, column j0 + j < nc is readable (caller).
                    *v = unsafe { *src.offset(j as isize * csb) };
                }
            }
            d[w..].fill(0.0);
        }
        j0 += w;
    }
}

/// Calls the micro-kernel instantiated for `rows` (1..=8) and `nv` (1..=3).
///
/// # Safety
/// As [`kernel`].
#[inline]
unsafe fn micro(
    rows: usize,
    nv: usize,
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    mask: __mmask16,
    acc: bool,
    bias: *const f32,
) {
    macro_rules! go {
        ($($r:literal),*) => {
            match (rows, nv) {
                $(
                    ($r, 1) => kernel::<$r, 1>(kc, a, b, c, ldc, mask, acc, bias),
                    ($r, 2) => kernel::<$r, 2>(kc, a, b, c, ldc, mask, acc, bias),
                    ($r, 3) => kernel::<$r, 3>(kc, a, b, c, ldc, mask, acc, bias),
                )*
                _ => unreachable!("micro-kernel {rows}x{nv}"),
            }
        };
    }
    // SAFETY: forwarded from this function's contract.
    unsafe { go!(1, 2, 3, 4, 5, 6, 7, 8) }
}

/// `C[0..R, 0..16 * NV] (+)= Apanel * Bpanel` over `kc` steps; the last vector of each row is
/// loaded/stored under `mask`. Without `accumulate`, a non-null `bias` adds `bias[i]` to row `i`.
///
/// # Safety
/// avx512f must be available; `a` must hold `kc * MR` floats, `b` `kc * NV * 16`; `c[i * ldc + j]`
/// must be writable for `i < R` and every `j` of the first `NV - 1` vectors plus the lanes of
/// `mask` in the last one; `bias` null or `R` readable floats.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const R: usize, const NV: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    mask: __mmask16,
    accumulate: bool,
    bias: *const f32,
) {
    let mut acc = [[_mm512_setzero_ps(); NV]; R];
    let mut bv = [_mm512_setzero_ps(); NV];
    for l in 0..kc {
        // SAFETY: step l < kc of the packed panels is inside `a` / `b` (contract).
        unsafe {
            let bl = b.add(l * NV * 16);
            for v in 0..NV {
                bv[v] = _mm512_loadu_ps(bl.add(v * 16));
            }
            let al = a.add(l * MR);
            for i in 0..R {
                let av = _mm512_set1_ps(*al.add(i));
                for v in 0..NV {
                    acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
                }
            }
        }
    }
    for i in 0..R {
        // SAFETY: `bias` is null or holds R floats (contract).
        let bi = (!accumulate && !bias.is_null()).then(|| unsafe { _mm512_set1_ps(*bias.add(i)) });
        for v in 0..NV {
            // SAFETY: row i < R, vector v: full vectors are writable for v < NV - 1, the last one
            // only under `mask`, and masked loads/stores do not touch masked-off lanes (contract).
            unsafe {
                let p = c.add(i * ldc + v * 16);
                let mut r = acc[i][v];
                if let Some(bv) = bi {
                    r = _mm512_add_ps(r, bv);
                }
                if v + 1 < NV {
                    if accumulate {
                        r = _mm512_add_ps(r, _mm512_loadu_ps(p));
                    }
                    _mm512_storeu_ps(p, r);
                } else {
                    if accumulate {
                        r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(mask, p));
                    }
                    _mm512_mask_storeu_ps(p, mask, r);
                }
            }
        }
    }
}

/// One output row of a stride-1, dilation-1 convolution with a 3-wide kernel, for output columns
/// `[lo, hi)` whose three taps all lie inside the input: `out[o] += sum over (row, w) in rows of
/// w[0] * row[o - pw] + w[1] * row[o - pw + 1] + w[2] * row[o - pw + 2]`.
///
/// Panics (before touching memory) if a tap of `[lo, hi)` falls outside a row or `hi > out.len()`.
/// The caller must have checked [`super::avx512_available`]; this asserts it too.
pub(crate) fn conv3_row_s1(
    rows: &[(&[f32], [f32; 3])],
    out: &mut [f32],
    lo: usize,
    hi: usize,
    pw: usize,
) {
    if lo >= hi {
        return;
    }
    assert!(lo >= pw && hi <= out.len(), "conv3_row_s1: output range");
    for (r, _) in rows {
        assert!(hi - pw + 2 <= r.len(), "conv3_row_s1: input row too short");
    }
    assert!(super::avx512_available());
    // SAFETY: avx512f is available (asserted); the asserts above prove every index the kernel
    // touches, out[lo..hi] and row[lo - pw..hi - pw + 2], is in bounds.
    unsafe { conv3_row_s1_kernel(rows, out.as_mut_ptr(), lo, hi, pw) }
}

/// # Safety
/// avx512f available; `out[lo..hi]` writable; `row[lo - pw..hi - pw + 2]` readable for every row.
#[target_feature(enable = "avx512f")]
unsafe fn conv3_row_s1_kernel(
    rows: &[(&[f32], [f32; 3])],
    out: *mut f32,
    lo: usize,
    hi: usize,
    pw: usize,
) {
    let mut o = lo;
    while o < hi {
        let len = 16.min(hi - o);
        let mask: __mmask16 = if len == 16 { 0xFFFF } else { (1u16 << len) - 1 };
        // SAFETY: lanes o..o + len < hi of `out`, and of each row lanes o - pw + t..o - pw + t + len
        // <= hi - pw + 2 for t < 3, all in bounds (contract); masked-off lanes are not accessed.
        unsafe {
            let mut acc = _mm512_maskz_loadu_ps(mask, out.add(o));
            for (row, w) in rows {
                let x = row.as_ptr().add(o - pw);
                acc = _mm512_fmadd_ps(_mm512_set1_ps(w[0]), _mm512_maskz_loadu_ps(mask, x), acc);
                acc = _mm512_fmadd_ps(
                    _mm512_set1_ps(w[1]),
                    _mm512_maskz_loadu_ps(mask, x.add(1)),
                    acc,
                );
                acc = _mm512_fmadd_ps(
                    _mm512_set1_ps(w[2]),
                    _mm512_maskz_loadu_ps(mask, x.add(2)),
                    acc,
                );
            }
            _mm512_mask_storeu_ps(out.add(o), mask, acc);
        }
        o += len;
    }
}
