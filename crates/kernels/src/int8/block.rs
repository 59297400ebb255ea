//! The blocked driver shared by every path: panel loops, zero-point corrections and the output
//! stage around a path's micro-kernel, plus the [`Kernel`] trait the paths implement.

use super::conv::DwPlane;
use super::pack::{self, Layout};
use super::stage::{Chan, StageView, write_row};
use super::{QOut, QType};
use std::cell::RefCell;

/// Largest `MR * NR` and `NR` of any path.
pub(crate) const MAX_TILE: usize = 8 * 32;
pub(crate) const MAX_NR: usize = 32;

/// Integer correction terms: element `(i, j)` gets `rowc[i] + colc[j] + rowf[i] * colf[j]`
/// (wrapping; absent terms are 0). Indices are block-local.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Fix<'a> {
    pub rowc: Option<&'a [i32]>,
    pub colc: Option<&'a [i32]>,
    pub rowf: Option<&'a [i32]>,
    pub colf: Option<&'a [i32]>,
}

/// One block of work: `m` rows of packed R panels times `n` columns of packed V panels, written to
/// `out[i][j]` (each row slice holds this block's `n` columns).
pub(crate) struct Block<'a, 'b, 'o, O> {
    pub k4: usize,
    pub r: &'a [u8],
    pub m: usize,
    pub v: &'a [u8],
    pub n: usize,
    pub fix: Fix<'a>,
    pub stage: StageView<'a>,
    /// The output channel is the row (conv) rather than the column (GEMM).
    pub chan_is_row: bool,
    pub out: &'b mut [&'o mut [O]],
}

/// A kernel path. Tokens of the SIMD paths exist only on CPUs that have their features, which is
/// what makes their safe methods sound.
pub(crate) trait Kernel: Copy + Send + Sync {
    const LAYOUT: Layout;
    /// Runs a block; `RU`: the R operand holds the unsigned (activation) bytes.
    fn block<O: QOut, const RU: bool>(self, b: &mut Block<'_, '_, '_, O>);

    /// [`pack::pack_v`], compiled for the path's features.
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
        pack::pack_v(Self::LAYOUT, src, k, ld, c0, n, flip, signed, out);
    }

    /// One depthwise output plane, compiled for the path's features.
    fn depthwise<T: QType, O: QOut>(self, d: &mut DwPlane<'_, T, O>) {
        d.run();
    }
}

/// Applies the correction terms to one row of a tile (`i`: block row, `j0`: block column).
#[inline(always)]
fn fix_row(row: &mut [i32], f: &Fix<'_>, i: usize, j0: usize) {
    let n = row.len();
    let rc = f.rowc.map_or(0, |r| r[i]);
    if let Some(cc) = f.colc {
        for (v, &c) in row.iter_mut().zip(&cc[j0..j0 + n]) {
            *v = v.wrapping_add(c).wrapping_add(rc);
        }
    } else if rc != 0 {
        for v in row.iter_mut() {
            *v = v.wrapping_add(rc);
        }
    }
    if let (Some(rf), Some(cf)) = (f.rowf, f.colf) {
        let a = rf[i];
        if a != 0 {
            for (v, &c) in row.iter_mut().zip(&cf[j0..j0 + n]) {
                *v = v.wrapping_add(a.wrapping_mul(c));
            }
        }
    }
}

/// The panel loops: for each V panel (kept in L1), for each R panel, `kern(r_panel, v_panel, tile)`
/// computes the raw `MR x NR` product sums, then each valid tile row is corrected and written.
#[inline(always)]
pub(crate) fn run_block<O: QOut>(
    l: Layout,
    b: &mut Block<'_, '_, '_, O>,
    mut kern: impl FnMut(&[u8], &[u8], &mut [i32]),
) {
    let (mr, nr) = (l.mr, l.nr);
    let rpl = l.r_panel(b.k4);
    let vpl = l.v_panel(b.k4);
    let (np, mp) = (b.n.div_ceil(nr), b.m.div_ceil(mr));
    assert!(
        b.r.len() >= mp * rpl && b.v.len() >= np * vpl && b.out.len() == b.m,
        "int8 block: packed operands or output rows too short"
    );
    let mut acc = [0i32; MAX_TILE];
    let mut row = [0i32; MAX_NR];
    for p in 0..np {
        let vp = &b.v[p * vpl..(p + 1) * vpl];
        let j0 = p * nr;
        let nc = nr.min(b.n - j0);
        for q in 0..mp {
            let rp = &b.r[q * rpl..(q + 1) * rpl];
            kern(rp, vp, &mut acc[..mr * nr]);
            let i0 = q * mr;
            for ii in 0..mr.min(b.m - i0) {
                let i = i0 + ii;
                let row = &mut row[..nc];
                row.copy_from_slice(&acc[ii * nr..ii * nr + nc]);
                fix_row(row, &b.fix, i, j0);
                let chan = if b.chan_is_row {
                    Chan::Row(i)
                } else {
                    Chan::Cols(j0)
                };
                write_row(row, &mut b.out[i][j0..j0 + nc], &b.stage, chan);
            }
        }
    }
}

thread_local! {
    static BYTES: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static INTS: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's byte scratch buffer resized to `len` (contents unspecified); nested
/// calls (rayon work stealing) get a fresh buffer.
pub(crate) fn with_bytes<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    let mut buf = BYTES.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let r = f(&mut buf[..len]);
    BYTES.with(|s| {
        let mut slot = s.borrow_mut();
        if slot.capacity() < buf.capacity() {
            *slot = buf;
        }
    });
    r
}

/// [`with_bytes`] for i32.
pub(crate) fn with_ints<R>(len: usize, f: impl FnOnce(&mut [i32]) -> R) -> R {
    let mut buf = INTS.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let r = f(&mut buf[..len]);
    INTS.with(|s| {
        let mut slot = s.borrow_mut();
        if slot.capacity() < buf.capacity() {
            *slot = buf;
        }
    });
    r
}
