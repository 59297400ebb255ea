//! The blocked driver shared by every path: panel loops, zero-point corrections and the output
//! stage around a path's micro-kernel, plus the [`Kernel`] trait the paths implement.

use super::conv::DwPlane;
use super::pack::{self, Layout};
use super::stage::{Chan, StageView, write_row};
use super::{QOut, QType};
use std::cell::RefCell;
use std::thread::LocalKey;

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
    /// Columns dropped between the output rows (only with `chan_is_row`); `None`: every column is
    /// written, column `j` to `out[i][j]`.
    pub wrap: Option<Wrap>,
    pub out: &'b mut [&'o mut [O]],
}

/// Block columns on a grid with gaps: block column `j` is grid column `c0 + j`, and of each
/// `period` grid columns only the first `keep` are outputs; they are written compacted, the output
/// rows starting at grid column `c0`'s output position.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wrap {
    pub c0: usize,
    pub period: usize,
    pub keep: usize,
}

impl Wrap {
    /// The output position of grid column `c` (of the next kept column if `c` is dropped).
    #[inline(always)]
    pub(crate) fn pos(&self, c: usize) -> usize {
        (c / self.period) * self.keep + (c % self.period).min(self.keep)
    }
}

/// A kernel path. Tokens of the SIMD paths exist only on CPUs that have their features, which is
/// what makes their safe methods sound.
pub(crate) trait Kernel: Copy + Send + Sync {
    const LAYOUT: Layout;
    /// Runs a block; `RU`: the R operand holds the unsigned (activation) bytes.
    fn block<O: QOut, const RU: bool>(self, b: &mut Block<'_, '_, '_, O>);

    /// [`pack::pack_v_by`], compiled for the path's features.
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
        pack::pack_v_by(Self::LAYOUT, src, k, start, n, flip, signed, out);
    }

    /// [`pack::pack_v`], compiled for the path's features.
    #[inline(always)]
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
        self.pack_v_by(src, k, |kk| kk * ld + c0, n, flip, signed, out);
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
                match b.wrap {
                    None => write_row(row, &mut b.out[i][j0..j0 + nc], &b.stage, chan),
                    Some(w) => {
                        let base = w.pos(w.c0);
                        let mut j = j0;
                        while j < j0 + nc {
                            let c = w.c0 + j;
                            let col = c % w.period;
                            let end = (j + (w.period - col)).min(j0 + nc);
                            if col < w.keep {
                                let len = (w.keep - col).min(end - j);
                                let o = w.pos(c) - base;
                                let vals = &row[j - j0..j - j0 + len];
                                write_row(vals, &mut b.out[i][o..o + len], &b.stage, chan);
                            }
                            j = end;
                        }
                    }
                }
            }
        }
    }
}

thread_local! {
    static BYTES: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static INTS: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
    static FLOATS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with the thread's scratch buffer `key` resized to `len` (contents unspecified); nested
/// calls (rayon work stealing) get a fresh buffer.
fn with_scratch<T: Copy + Default, R>(
    key: &'static LocalKey<RefCell<Vec<T>>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    let mut buf = key.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if buf.len() < len {
        buf.resize(len, T::default());
    }
    let r = f(&mut buf[..len]);
    key.with(|s| {
        let mut slot = s.borrow_mut();
        if slot.capacity() < buf.capacity() {
            *slot = buf;
        }
    });
    r
}

/// [`with_scratch`] on this thread's byte buffer.
pub(crate) fn with_bytes<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    with_scratch(&BYTES, len, f)
}

/// [`with_scratch`] on this thread's i32 buffer.
pub(crate) fn with_ints<R>(len: usize, f: impl FnOnce(&mut [i32]) -> R) -> R {
    with_scratch(&INTS, len, f)
}

/// [`with_scratch`] on this thread's f32 buffer.
pub(crate) fn with_floats<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_scratch(&FLOATS, len, f)
}
