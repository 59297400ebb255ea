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

/// Bytes of the L1-resident part of a blocked product: the R panels of one row chunk and one V
/// panel, over one K block (the data cache is 48 KiB; the rest holds the tile, the output rows and
/// whatever the hardware prefetches).
const L1_BLOCK_BYTES: usize = 32 * 1024;

/// Most groups of 4 k per K block.
const KC_MAX: usize = 96;

/// K and row blocking of a product of `mp` R panels by V panels over `k4` groups: `(kc, mc)`, the
/// groups per K block (balanced) and the R panels per row chunk, chosen so that `mc` R panels and
/// one V panel of `kc` groups fit [`L1_BLOCK_BYTES`]. `(k4, mp)` or more means one pass.
pub(crate) fn blocking(l: Layout, k4: usize, mp: usize) -> (usize, usize) {
    let kc = k4.div_ceil(k4.div_ceil(KC_MAX).max(1)).max(1);
    let v = l.v_panel(kc);
    let mc = (L1_BLOCK_BYTES.saturating_sub(v) / l.r_panel(kc)).max(1);
    // Balanced row chunks.
    let mc = mp.div_ceil(mp.div_ceil(mc.min(mp)).max(1)).max(1);
    (kc, mc)
}

/// The panel loops around a path's micro-kernel `kern(r, v, tile)`, which *adds* the `MR x NR`
/// product sums of the R panel slice `r` and the V panel slice `v` (both over the same groups of 4
/// k, `r.len() / (MR * group_bytes)` of them) to `tile`; then each valid tile row is corrected and
/// written. When one R row chunk and one V panel over the whole K do not fit the L1 budget
/// ([`blocking`]), K is split into blocks and the rows into chunks: for each row chunk, the tiles of
/// every V panel are accumulated block by block in a scratch buffer (the chunk's R block stays in
/// L1, each V panel slice is reused by the chunk's rows), then written. Integer addition is exact
/// and wrapping, so the split does not change any result.
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
    let tl = mr * nr;
    let (kc, mc) = blocking(l, b.k4, mp);
    if kc >= b.k4 && mc >= mp {
        let mut acc = [0i32; MAX_TILE];
        for p in 0..np {
            let vp = &b.v[p * vpl..(p + 1) * vpl];
            for q in 0..mp {
                let rp = &b.r[q * rpl..(q + 1) * rpl];
                acc[..tl].fill(0);
                kern(rp, vp, &mut acc[..tl]);
                write_tile(l, b, &acc[..tl], p, q);
            }
        }
        return;
    }
    let (rg, vg) = (l.r_panel(1), l.v_panel(1));
    for q0 in (0..mp).step_by(mc) {
        let q1 = (q0 + mc).min(mp);
        let tiles = np * (q1 - q0);
        with_ints(tiles * tl, |c| {
            c.fill(0);
            for k0 in (0..b.k4).step_by(kc) {
                let kg = kc.min(b.k4 - k0);
                for p in 0..np {
                    let vs = &b.v[p * vpl + k0 * vg..][..kg * vg];
                    for q in q0..q1 {
                        let rs = &b.r[q * rpl + k0 * rg..][..kg * rg];
                        let t = (p * (q1 - q0) + q - q0) * tl;
                        kern(rs, vs, &mut c[t..t + tl]);
                    }
                }
            }
            for p in 0..np {
                for q in q0..q1 {
                    let t = (p * (q1 - q0) + q - q0) * tl;
                    write_tile(l, b, &c[t..t + tl], p, q);
                }
            }
        });
    }
}

/// Corrects and writes the valid rows and columns of the tile of R panel `q` and V panel `p`.
#[inline(always)]
fn write_tile<O: QOut>(l: Layout, b: &mut Block<'_, '_, '_, O>, acc: &[i32], p: usize, q: usize) {
    let nr = l.nr;
    let mut row = [0i32; MAX_NR];
    let j0 = p * nr;
    let nc = nr.min(b.n - j0);
    let i0 = q * l.mr;
    for ii in 0..l.mr.min(b.m - i0) {
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

thread_local! {
    static STAGED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// This thread's staging buffer for a convolution's padded input copy (contents unspecified); give
/// it back with [`return_staged`] so that the next call reuses its pages.
pub(crate) fn take_staged() -> Vec<u8> {
    STAGED.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

/// Keeps `buf` as this thread's staging buffer (the larger of it and the one held).
pub(crate) fn return_staged(buf: Vec<u8>) {
    STAGED.with(|s| {
        let mut slot = s.borrow_mut();
        if slot.capacity() < buf.capacity() {
            *slot = buf;
        }
    });
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
