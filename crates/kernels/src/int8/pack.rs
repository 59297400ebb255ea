//! Packed operand layouts of the int8 micro-kernels.
//!
//! A micro-kernel multiplies an `MR`-row panel of the *R* operand (broadcast) by an `NR`-column panel
//! of the *V* operand (vector loads) into an `MR x NR` i32 tile. K is padded with zeros to a multiple
//! of 4. Byte layouts (`wide == false`, the VNNI and portable paths) store, per group of 4 k, each
//! lane's 4 consecutive k bytes together (`vpdpbusd` sums 4 adjacent byte products per i32 lane):
//! panel byte `((k / 4) * width + lane) * 4 + k % 4`. The wide layout (AVX2) stores i16 pairs of
//! consecutive k (`vpmaddwd` sums 2 adjacent i16 products): panel bytes
//! `((k / 2) * width + lane) * 4 + (k % 2) * 2`, little-endian i16. Values are stored in the kernel
//! domain (activations as u8, weights as i8; see the module docs of `int8`).

use super::QType;
use super::block::MAX_NR;

/// Tile and element layout of one kernel path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Rows of the R operand per panel.
    pub mr: usize,
    /// Columns of the V operand per panel.
    pub nr: usize,
    /// i16 pairs (AVX2) instead of byte quads.
    pub wide: bool,
}

impl Layout {
    /// Bytes one lane occupies per group of 4 k.
    pub(crate) const fn group_bytes(self) -> usize {
        if self.wide { 8 } else { 4 }
    }
    /// Bytes of one R panel for `k4` groups of 4 k.
    pub(crate) const fn r_panel(self, k4: usize) -> usize {
        self.mr * k4 * self.group_bytes()
    }
    /// Bytes of one V panel for `k4` groups of 4 k.
    pub(crate) const fn v_panel(self, k4: usize) -> usize {
        self.nr * k4 * self.group_bytes()
    }
}

/// The value of a kernel-domain byte.
#[inline(always)]
pub(crate) fn dom(b: u8, signed: bool) -> i32 {
    if signed { b as i8 as i32 } else { b as i32 }
}

#[inline(always)]
fn wide_bits(b: u8, signed: bool) -> u32 {
    dom(b, signed) as i16 as u16 as u32
}

/// Packs the `rows x k` matrix `src` (row stride `ld`) into R panels in `out` (length
/// `rows.div_ceil(mr) * r_panel(k4)`), each byte XOR `flip`; `signed` says how the resulting bytes
/// are read (for widening). If `sums` is given, it receives each row's kernel-domain sum.
pub(crate) fn pack_r<T: QType>(
    l: Layout,
    src: &[T],
    rows: usize,
    k: usize,
    ld: usize,
    flip: u8,
    signed: bool,
    out: &mut [u8],
    mut sums: Option<&mut [i32]>,
) {
    let k4 = k.div_ceil(4);
    let pl = l.r_panel(k4);
    out.fill(0);
    for i in 0..rows {
        let (q, ii) = (i / l.mr, i % l.mr);
        let panel = &mut out[q * pl..(q + 1) * pl];
        let row = &src[i * ld..i * ld + k];
        if l.wide {
            for (s, pair) in row.chunks(2).enumerate() {
                let off = (s * l.mr + ii) * 4;
                for (t, &x) in pair.iter().enumerate() {
                    let v = wide_bits(x.bits() ^ flip, signed) as u16;
                    panel[off + 2 * t..off + 2 * t + 2].copy_from_slice(&v.to_le_bytes());
                }
            }
        } else {
            let groups = panel
                .chunks_exact_mut(l.mr * 4)
                .map(|g| &mut g[ii * 4..ii * 4 + 4]);
            for (dst, quad) in groups.zip(row.chunks(4)) {
                for (d, &x) in dst.iter_mut().zip(quad) {
                    *d = x.bits() ^ flip;
                }
            }
        }
        if let Some(s) = sums.as_deref_mut() {
            s[i] = row.iter().fold(0i32, |acc, &x| {
                acc.wrapping_add(dom(x.bits() ^ flip, signed))
            });
        }
    }
}

/// Packs columns `[c0, c0 + n)` of the `k x ld` matrix `src` into V panels in `out` (length
/// `n.div_ceil(nr) * v_panel(k4)`), each byte XOR `flip`, read as `signed` for widening.
#[inline(always)]
pub(crate) fn pack_v<T: QType>(
    l: Layout,
    src: &[T],
    k: usize,
    ld: usize,
    c0: usize,
    n: usize,
    flip: u8,
    signed: bool,
    out: &mut [u8],
) {
    pack_v_by(l, src, k, |kk| kk * ld + c0, n, flip, signed, out);
}

/// [`pack_v`] for rows anywhere in `src`: row `kk < k` is `src[start(kk)..start(kk) + n]`.
#[inline(always)]
pub(crate) fn pack_v_by<T: QType>(
    l: Layout,
    src: &[T],
    k: usize,
    start: impl Fn(usize) -> usize,
    n: usize,
    flip: u8,
    signed: bool,
    out: &mut [u8],
) {
    let k4 = k.div_ceil(4);
    let np = n.div_ceil(l.nr);
    let pl = l.v_panel(k4);
    let nr = l.nr;
    let row = |kk: usize| -> Option<&[T]> { (kk < k).then(|| &src[start(kk)..start(kk) + n]) };
    if !l.wide {
        for g in 0..k4 {
            let rows = [row(4 * g), row(4 * g + 1), row(4 * g + 2), row(4 * g + 3)];
            for p in 0..np {
                let j0 = p * nr;
                let w = nr.min(n - j0);
                let dst = &mut out[p * pl + g * nr * 4..p * pl + (g + 1) * nr * 4];
                if let [Some(a), Some(b), Some(c), Some(d)] = rows {
                    let (a, b, c, d) = (
                        &a[j0..j0 + w],
                        &b[j0..j0 + w],
                        &c[j0..j0 + w],
                        &d[j0..j0 + w],
                    );
                    // Composed in u32 lanes first (vectorizes), then stored.
                    let mut tmp = [0u32; MAX_NR];
                    for (j, t) in tmp[..w].iter_mut().enumerate() {
                        *t = (a[j].bits() ^ flip) as u32
                            | ((b[j].bits() ^ flip) as u32) << 8
                            | ((c[j].bits() ^ flip) as u32) << 16
                            | ((d[j].bits() ^ flip) as u32) << 24;
                    }
                    store_u32(&mut dst[..4 * w], &tmp[..w]);
                } else {
                    for (t, r) in rows.iter().enumerate() {
                        for j in 0..w {
                            dst[4 * j + t] = r.map_or(0, |r| r[j0 + j].bits() ^ flip);
                        }
                    }
                }
                dst[4 * w..].fill(0);
            }
        }
    } else {
        for s in 0..2 * k4 {
            let (ra, rb) = (row(2 * s), row(2 * s + 1));
            for p in 0..np {
                let j0 = p * nr;
                let w = nr.min(n - j0);
                let dst = &mut out[p * pl + s * nr * 4..p * pl + (s + 1) * nr * 4];
                if let (Some(a), Some(b)) = (ra, rb) {
                    let (a, b) = (&a[j0..j0 + w], &b[j0..j0 + w]);
                    let mut tmp = [0u32; MAX_NR];
                    for (j, t) in tmp[..w].iter_mut().enumerate() {
                        *t = wide_bits(a[j].bits() ^ flip, signed)
                            | (wide_bits(b[j].bits() ^ flip, signed) << 16);
                    }
                    store_u32(&mut dst[..4 * w], &tmp[..w]);
                } else {
                    for (j, o) in dst[..4 * w].chunks_exact_mut(4).enumerate() {
                        let lo = ra.map_or(0, |r| wide_bits(r[j0 + j].bits() ^ flip, signed));
                        let hi = rb.map_or(0, |r| wide_bits(r[j0 + j].bits() ^ flip, signed));
                        o.copy_from_slice(&(lo | (hi << 16)).to_le_bytes());
                    }
                }
                dst[4 * w..].fill(0);
            }
        }
    }
}

/// Stores `src` little-endian into `dst` (`4 * src.len()` bytes).
#[inline(always)]
fn store_u32(dst: &mut [u8], src: &[u32]) {
    for (o, t) in dst.chunks_exact_mut(4).zip(src) {
        o.copy_from_slice(&t.to_le_bytes());
    }
}

/// Kernel-domain sums of columns `[c0, c0 + n)` over the `k` rows of `src` (row stride `ld`).
#[inline(always)]
pub(crate) fn col_sums<T: QType>(
    src: &[T],
    k: usize,
    ld: usize,
    c0: usize,
    n: usize,
    flip: u8,
    signed: bool,
    sums: &mut [i32],
) {
    sums.fill(0);
    for kk in 0..k {
        let r = &src[kk * ld + c0..kk * ld + c0 + n];
        for (s, &x) in sums.iter_mut().zip(r) {
            *s = s.wrapping_add(dom(x.bits() ^ flip, signed));
        }
    }
}

/// Kernel-domain sums of the first `n` columns packed in the V panels `v` (as [`pack_v_by`] wrote
/// them, `k4` groups of 4 k), read as `signed`. Padding bytes and rows are 0 and add nothing.
pub(crate) fn packed_col_sums(
    l: Layout,
    v: &[u8],
    k4: usize,
    n: usize,
    signed: bool,
    sums: &mut [i32],
) {
    let (nr, pl) = (l.nr, l.v_panel(k4));
    for (p, dst) in sums[..n].chunks_mut(nr).enumerate() {
        let mut acc = [0i32; MAX_NR];
        for cell in v[p * pl..(p + 1) * pl].chunks_exact(nr * 4) {
            for (a, b) in acc[..nr].iter_mut().zip(cell.chunks_exact(4)) {
                let s = if l.wide {
                    i16::from_le_bytes([b[0], b[1]]) as i32
                        + i16::from_le_bytes([b[2], b[3]]) as i32
                } else {
                    dom(b[0], signed) + dom(b[1], signed) + dom(b[2], signed) + dom(b[3], signed)
                };
                *a = a.wrapping_add(s);
            }
        }
        dst.copy_from_slice(&acc[..dst.len()]);
    }
}
