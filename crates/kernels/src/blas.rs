//! The one safe wrapper around `matrixmultiply::sgemm` (bounds-checked strides), plus a rayon-parallel
//! variant that splits the output into disjoint row or column tiles, and [`PackedA`]: a constant left
//! operand packed once for the selected kernel, multiplied into a tile with a fused per-row bias.
//! This is the only `unsafe` outside SIMD code: matrixmultiply's API takes raw pointers.

use crate::f32x::{self, F32Kernel};
use crate::util::PAR_MIN_FLOPS;
use rayon::prelude::*;

/// A strided matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    pub(crate) fn row_major(data: &'a [f32], cols: usize) -> Self {
        Mat {
            data,
            rs: cols,
            cs: 1,
        }
    }
    /// The view of a row-major `[cols, rows]` buffer as its transpose `[rows, cols]`.
    pub(crate) fn transposed(data: &'a [f32], stored_cols: usize) -> Self {
        Mat {
            data,
            rs: 1,
            cs: stored_cols,
        }
    }
}

fn max_index(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    (rows - 1) * rs + (cols - 1) * cs
}

/// matrixmultiply's `sgemm` signature, run by the kernel [`f32x::selected`] picks (C column stride
/// must be 1).
///
/// # Safety
/// As `matrixmultiply::sgemm`: every addressed element of A and B readable, of C writable and not
/// aliasing A or B.
unsafe fn raw_sgemm(
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
    rsc: isize,
    csc: isize,
) {
    debug_assert!(csc == 1 && rsc >= 0);
    // SAFETY: forwarded from this function's contract.
    unsafe {
        raw_sgemm_with(
            f32x::selected(),
            m,
            k,
            n,
            alpha,
            a,
            rsa,
            csa,
            b,
            rsb,
            csb,
            beta,
            c,
            rsc,
            csc,
        )
    }
}

/// [`raw_sgemm`] with an explicit kernel.
///
/// # Safety
/// As [`raw_sgemm`]; `F32Kernel::Avx512` additionally needs [`f32x::avx512_available`].
unsafe fn raw_sgemm_with(
    kernel: F32Kernel,
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
    rsc: isize,
    csc: isize,
) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        F32Kernel::Avx512 if csc == 1 => {
            // SAFETY: the caller's contract covers A, B and C (row stride rsc >= 0, unit column
            // stride) and the avx512f requirement.
            unsafe {
                f32x::avx512::sgemm(
                    m,
                    k,
                    n,
                    alpha,
                    a,
                    rsa,
                    csa,
                    b,
                    rsb,
                    csb,
                    beta,
                    c,
                    rsc as usize,
                )
            }
        }
        // SAFETY: the caller's contract is matrixmultiply's.
        _ => unsafe {
            matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        },
    }
}

/// [`sgemm`] through an explicit kernel (tests compare both paths).
#[cfg(test)]
pub(crate) fn sgemm_with(
    kernel: F32Kernel,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: Mat<'_>,
    b: Mat<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    if m == 0 || n == 0 || k == 0 {
        return sgemm(m, k, n, alpha, a, b, beta, c, ldc);
    }
    assert!(max_index(m, n, ldc, 1) < c.len());
    assert!(max_index(m, k, a.rs, a.cs) < a.data.len());
    assert!(max_index(k, n, b.rs, b.cs) < b.data.len());
    assert!(kernel == F32Kernel::Portable || f32x::avx512_available());
    // SAFETY: views bounds-checked above, C uniquely borrowed, avx512 availability asserted.
    unsafe {
        raw_sgemm_with(
            kernel,
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        )
    }
}

/// `C = alpha * A * B + beta * C` with `A: m x k`, `B: k x n`, `C: m x n` row-major with row stride
/// `ldc` (`beta == 0` means C is not read). Panics only on an internal bug (out-of-bounds view).
pub(crate) fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: Mat<'_>,
    b: Mat<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        max_index(m, n, ldc, 1) < c.len(),
        "sgemm: C view out of bounds"
    );
    if k == 0 {
        for i in 0..m {
            for v in &mut c[i * ldc..i * ldc + n] {
                *v = if beta == 0.0 { 0.0 } else { beta * *v };
            }
        }
        return;
    }
    assert!(
        max_index(m, k, a.rs, a.cs) < a.data.len(),
        "sgemm: A view out of bounds"
    );
    assert!(
        max_index(k, n, b.rs, b.cs) < b.data.len(),
        "sgemm: B view out of bounds"
    );
    // SAFETY: the three asserts above prove every element the views address is inside its slice; C is
    // a unique borrow so it does not alias A or B; all strides fit isize because they index slices.
    unsafe {
        raw_sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        )
    }
}

struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint column ranges of one C buffer to rayon tasks (see `par_sgemm`).
unsafe impl Send for SendPtr {}
// SAFETY: as above; the pointer itself is only read.
unsafe impl Sync for SendPtr {}

/// [`sgemm`], split over rayon tasks along the larger of M and N when the problem is big enough.
pub(crate) fn par_sgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: Mat<'_>,
    b: Mat<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    let threads = rayon::current_num_threads();
    let flops = m.saturating_mul(n).saturating_mul(k.max(1));
    if threads <= 1 || flops < 4 * PAR_MIN_FLOPS || m == 0 || n == 0 {
        return sgemm(m, k, n, alpha, a, b, beta, c, ldc);
    }
    // Tiles are multiples of 16 (a multiple of matrixmultiply's register blocks).
    let tiles = |len: usize| -> usize { (len.div_ceil(threads * 2)).div_ceil(16) * 16 };
    if m >= n || n < 64 {
        let rows = tiles(m);
        if rows >= m {
            return sgemm(m, k, n, alpha, a, b, beta, c, ldc);
        }
        assert!(
            max_index(m, n, ldc, 1) < c.len(),
            "par_sgemm: C view out of bounds"
        );
        c.par_chunks_mut(rows * ldc)
            .enumerate()
            .for_each(|(t, ct)| {
                let r0 = t * rows;
                let mr = rows.min(m - r0);
                let at = Mat {
                    data: &a.data[r0 * a.rs..],
                    rs: a.rs,
                    cs: a.cs,
                };
                sgemm(mr, k, n, alpha, at, b, beta, ct, ldc);
            });
    } else {
        let cols = tiles(n);
        if cols >= n {
            return sgemm(m, k, n, alpha, a, b, beta, c, ldc);
        }
        assert!(
            max_index(m, n, ldc, 1) < c.len(),
            "par_sgemm: C view out of bounds"
        );
        if k > 0 {
            assert!(
                max_index(m, k, a.rs, a.cs) < a.data.len(),
                "par_sgemm: A view out of bounds"
            );
            assert!(
                max_index(k, n, b.rs, b.cs) < b.data.len(),
                "par_sgemm: B view out of bounds"
            );
        }
        let cptr = SendPtr(c.as_mut_ptr());
        let cptr = &cptr;
        (0..n.div_ceil(cols)).into_par_iter().for_each(|t| {
            let j0 = t * cols;
            let nc = cols.min(n - j0);
            // SAFETY: C was checked to hold the full m x n view with row stride ldc and is borrowed
            // uniquely for this call; tasks write disjoint column ranges [j0, j0 + nc), so no element
            // is written by two tasks, and `c` outlives the parallel loop.
            unsafe {
                let c0 = cptr.0.add(j0);
                if k == 0 {
                    for i in 0..m {
                        for j in 0..nc {
                            let p = c0.add(i * ldc + j);
                            *p = if beta == 0.0 { 0.0 } else { beta * *p };
                        }
                    }
                } else {
                    raw_sgemm(
                        m,
                        k,
                        nc,
                        alpha,
                        a.data.as_ptr(),
                        a.rs as isize,
                        a.cs as isize,
                        b.data.as_ptr().add(j0 * b.cs),
                        b.rs as isize,
                        b.cs as isize,
                        beta,
                        c0,
                        ldc as isize,
                        1,
                    );
                }
            }
        });
    }
}

/// Columns `[j0, j0 + n)` of a row-major C (`m` rows, row stride `ldc`), handed to one task of
/// [`for_col_tiles`]; tiles of one call never overlap.
pub(crate) struct ColTile {
    ptr: *mut f32,
    m: usize,
    n: usize,
    ldc: usize,
}

// SAFETY: a ColTile is the exclusive handle to its column range of a buffer that is uniquely
// borrowed by `for_col_tiles` for the whole parallel loop; no two tiles share an element.
unsafe impl Send for ColTile {}

impl ColTile {
    /// Applies `f` to each row of the tile (a slice of its `n` columns).
    pub(crate) fn for_each_row(&mut self, mut f: impl FnMut(usize, &mut [f32])) {
        for i in 0..self.m {
            // SAFETY: row i < m of this tile is n contiguous floats inside the buffer given to
            // `for_col_tiles` / `for_row_tiles` (checked there), owned by this tile alone.
            let row = unsafe { std::slice::from_raw_parts_mut(self.ptr.add(i * self.ldc), self.n) };
            f(i, row);
        }
    }

    /// `tile = A[row0..row0 + m] x B [k, n] + bias` (bias per row of the tile; none means 0), with
    /// `A` packed once. `row0` must be a multiple of [`PackedA::row_align`].
    pub(crate) fn gemm_packed(
        &mut self,
        a: &PackedA,
        row0: usize,
        b: Mat<'_>,
        bias: Option<&[f32]>,
    ) {
        let (m, n, k) = (self.m, self.n, a.k);
        if m == 0 || n == 0 {
            return;
        }
        assert!(
            row0 + m <= a.m && row0.is_multiple_of(a.row_align()),
            "gemm_packed: rows {row0}..{} of {}",
            row0 + m,
            a.m
        );
        if let Some(b) = bias {
            assert!(b.len() >= m, "gemm_packed: bias too short");
        }
        if k > 0 {
            assert!(
                max_index(k, n, b.rs, b.cs) < b.data.len(),
                "gemm_packed: B view out of bounds"
            );
        }
        match &a.store {
            #[cfg(target_arch = "x86_64")]
            AStore::Avx512(pa) => {
                // SAFETY: `pa` is the pack_a_all buffer of a.m x k (built in `PackedA::new_with`,
                // only when avx512f is available); rows row0..row0 + m are inside it and row0 is
                // panel-aligned (asserted); B is bounds-checked above; the C tile (m rows of n
                // columns at stride ldc) belongs to this tile alone (checked by its constructor);
                // the bias holds m floats (asserted).
                unsafe {
                    f32x::avx512::sgemm_packed_a(
                        m,
                        k,
                        n,
                        pa,
                        a.m,
                        row0 / f32x::avx512::MR,
                        b.data.as_ptr(),
                        b.rs as isize,
                        b.cs as isize,
                        0.0,
                        bias.map_or(std::ptr::null(), <[f32]>::as_ptr),
                        self.ptr,
                        self.ldc,
                    )
                }
            }
            AStore::Raw(ra) => {
                let beta = match bias {
                    Some(bv) => {
                        self.for_each_row(|i, row| row.fill(bv[i]));
                        1.0
                    }
                    None => 0.0,
                };
                let av = Mat::row_major(&ra[row0 * k..], k);
                self.sgemm(k, 1.0, av, b, beta);
            }
        }
    }

    /// `tile = alpha * A [m, k] x B [k, n] + beta * tile` (`beta == 0`: tile not read).
    pub(crate) fn sgemm(&mut self, k: usize, alpha: f32, a: Mat<'_>, b: Mat<'_>, beta: f32) {
        let (m, n) = (self.m, self.n);
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            for i in 0..m {
                for j in 0..n {
                    // SAFETY: (i, j) is inside this tile, which `for_col_tiles` bounds-checked.
                    unsafe {
                        let p = self.ptr.add(i * self.ldc + j);
                        *p = if beta == 0.0 { 0.0 } else { beta * *p };
                    }
                }
            }
            return;
        }
        assert!(
            max_index(m, k, a.rs, a.cs) < a.data.len(),
            "ColTile::sgemm: A view out of bounds"
        );
        assert!(
            max_index(k, n, b.rs, b.cs) < b.data.len(),
            "ColTile::sgemm: B view out of bounds"
        );
        // SAFETY: A and B views are bounds-checked above; the C view (m rows of n columns at row
        // stride ldc from ptr) lies inside the buffer given to `for_col_tiles` (checked there) and
        // belongs to this tile alone.
        unsafe {
            raw_sgemm(
                m,
                k,
                n,
                alpha,
                a.data.as_ptr(),
                a.rs as isize,
                a.cs as isize,
                b.data.as_ptr(),
                b.rs as isize,
                b.cs as isize,
                beta,
                self.ptr,
                self.ldc as isize,
                1,
            )
        }
    }
}

/// A constant row-major `A [m, k]` prepared once for the kernel [`f32x::selected`] picks: packed
/// into the AVX-512 GEMM's panel layout, or kept row-major for the portable sgemm.
#[derive(Clone, Debug)]
pub(crate) struct PackedA {
    m: usize,
    k: usize,
    store: AStore,
}

#[derive(Clone, Debug)]
enum AStore {
    /// Row-major, for matrixmultiply.
    Raw(Vec<f32>),
    /// `f32x::avx512::pack_a_all` layout.
    #[cfg(target_arch = "x86_64")]
    Avx512(Vec<f32>),
}

impl PackedA {
    /// Packs row-major `a [m, k]` for `kernel` (panics if `a.len() < m * k`; an internal bug).
    pub(crate) fn new_with(kernel: F32Kernel, a: &[f32], m: usize, k: usize) -> Self {
        assert!(
            a.len() >= m * k,
            "PackedA: {} floats for [{m}, {k}]",
            a.len()
        );
        let store = match kernel {
            #[cfg(target_arch = "x86_64")]
            F32Kernel::Avx512 if f32x::avx512_available() => {
                let mut d = vec![0f32; f32x::avx512::packed_a_len(m, k)];
                f32x::avx512::pack_a_all(m, k, a, &mut d);
                AStore::Avx512(d)
            }
            _ => AStore::Raw(a[..m * k].to_vec()),
        };
        PackedA { m, k, store }
    }

    /// Rows of A.
    pub(crate) fn rows(&self) -> usize {
        self.m
    }

    /// Row tiles handed to [`ColTile::gemm_packed`] must start at a multiple of this.
    pub(crate) fn row_align(&self) -> usize {
        match self.store {
            AStore::Raw(_) => 1,
            #[cfg(target_arch = "x86_64")]
            AStore::Avx512(_) => f32x::avx512::MR,
        }
    }
}

/// Splits the `n` columns of C (`m` rows, row stride `ldc`) into tiles of `tile` columns and calls
/// `f(j0, j1, tile)` for each, in parallel over rayon when `par`.
pub(crate) fn for_col_tiles(
    c: &mut [f32],
    m: usize,
    n: usize,
    ldc: usize,
    tile: usize,
    par: bool,
    f: impl Fn(usize, usize, &mut ColTile) + Sync + Send,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        tile > 0 && max_index(m, n, ldc, 1) < c.len(),
        "for_col_tiles: C view out of bounds"
    );
    let base = SendPtr(c.as_mut_ptr());
    let base = &base;
    let run = |t: usize| {
        let j0 = t * tile;
        let j1 = (j0 + tile).min(n);
        // SAFETY: j0 < n, so the offset stays inside `c` (checked above).
        let ptr = unsafe { base.0.add(j0) };
        f(
            j0,
            j1,
            &mut ColTile {
                ptr,
                m,
                n: j1 - j0,
                ldc,
            },
        );
    };
    let tiles = n.div_ceil(tile);
    if par && tiles > 1 {
        (0..tiles).into_par_iter().for_each(run);
    } else {
        (0..tiles).for_each(run);
    }
}

/// Splits the `m` rows of C (`n` columns, row stride `ldc`) into tiles of `rows` rows and calls
/// `f(i0, i1, tile)` for each, in parallel over rayon when `par`.
pub(crate) fn for_row_tiles(
    c: &mut [f32],
    m: usize,
    n: usize,
    ldc: usize,
    rows: usize,
    par: bool,
    f: impl Fn(usize, usize, &mut ColTile) + Sync + Send,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        rows > 0 && max_index(m, n, ldc, 1) < c.len(),
        "for_row_tiles: C view out of bounds"
    );
    let base = SendPtr(c.as_mut_ptr());
    let base = &base;
    let run = |t: usize| {
        let i0 = t * rows;
        let i1 = (i0 + rows).min(m);
        // SAFETY: i0 < m, so the offset stays inside `c` (checked above).
        let ptr = unsafe { base.0.add(i0 * ldc) };
        f(
            i0,
            i1,
            &mut ColTile {
                ptr,
                m: i1 - i0,
                n,
                ldc,
            },
        );
    };
    let tiles = m.div_ceil(rows);
    if par && tiles > 1 {
        (0..tiles).into_par_iter().for_each(run);
    } else {
        (0..tiles).for_each(run);
    }
}
