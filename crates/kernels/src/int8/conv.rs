//! Int8 N-d convolution (NCHW) with pre-packed constant weights: a direct depthwise kernel (2-d,
//! one input channel per group, any channel multiplier), pointwise convolution as a GEMM straight
//! over the input (1x1, stride 1, no pads: no im2col), other 2-d convolutions packed straight
//! from a zero-point-padded, stride-phase-split copy of the input (no im2col buffer, see `Direct`),
//! and the other ranks through int8 im2col tiles padded with the input zero point. Per (batch, group) the product is
//! `out[mg, HW] = W[mg, Cg*K] x X[Cg*K, HW]`: the weight is the packed R operand (packed at load),
//! the input is packed into V panels one column tile at a time; rayon runs over (batch, group,
//! column tile), or over (batch, channel) planes for depthwise.

use super::block::{
    Block, Fix, Kernel, Wrap, return_staged, take_staged, with_bytes, with_floats, with_ints,
};
use super::pack::{Layout, col_sums, pack_r, packed_col_sums};
use super::stage::{Chan, OutputStage, Prepared, QOut, StageView, write_row};
use super::{KernelPath, QType, act_domain, check_zp, weight_domain, with_kernel};
use crate::conv::{ConvParams, Geometry, conv_output_shape};
use crate::error::{Result, param_err, shape_err};
use crate::util::{PAR_MIN_FLOPS, check_len, next_index, numel, strides_of, valid_range};
use qtool_tensor::quant::round_half_even_small;
use rayon::prelude::*;

/// Int8 convolution attributes: the f32 [`ConvParams`] (strides, dilations, resolved pads, group).
pub type QConvParams = ConvParams;

/// A constant conv weight `[M, C/group, k1, ..., kn]` packed once for one kernel path and one
/// `group`, with per-output-channel sums and zero points in the kernel domain.
#[derive(Clone, Debug)]
pub struct PackedConvWeights {
    path: KernelPath,
    layout: Layout,
    shape: Vec<usize>,
    group: usize,
    /// `C/group * kernel size`, the GEMM depth.
    kk: usize,
    /// Per group, `mg.div_ceil(mr)` R panels.
    data: Vec<u8>,
    group_len: usize,
    /// `sum_k w'[m][k]` (kernel domain).
    rowsum: Vec<i32>,
    /// `zw'[m]` (kernel domain).
    zw: Vec<i32>,
    any_zw: bool,
    /// `w - zw` per channel and tap, kept for depthwise weights (`C/group == 1`).
    dw: Option<Vec<i32>>,
}

impl PackedConvWeights {
    /// Packs `w` (shape `w_shape = [M, C/group, k...]`) with zero points `zero_points` (one per
    /// output channel, or one) for `group` groups, for [`KernelPath::selected`].
    pub fn new<W: QType>(
        w: &[W],
        w_shape: &[usize],
        zero_points: &[i32],
        group: usize,
    ) -> Result<Self> {
        Self::with_path(KernelPath::selected(), w, w_shape, zero_points, group)
    }

    /// [`PackedConvWeights::new`] for a given path (an `Unsupported` error if this CPU lacks it).
    pub fn with_path<W: QType>(
        path: KernelPath,
        w: &[W],
        w_shape: &[usize],
        zero_points: &[i32],
        group: usize,
    ) -> Result<Self> {
        let path = path.check()?;
        if w_shape.len() < 3 {
            return Err(shape_err!(
                "conv weight must be [M, C/group, k...], got {w_shape:?}"
            ));
        }
        check_len("qconv weight", w.len(), numel(w_shape)?)?;
        let m = w_shape[0];
        if group == 0 || !m.is_multiple_of(group) {
            return Err(param_err!(
                "group {group} must divide the {m} output channels"
            ));
        }
        if zero_points.len() != 1 && zero_points.len() != m {
            return Err(shape_err!(
                "weight zero points have {} entries, expected 1 or M = {m}",
                zero_points.len()
            ));
        }
        for &z in zero_points {
            check_zp::<W>("weight", z)?;
        }
        let zp_of = |c: usize| zero_points[if zero_points.len() == 1 { 0 } else { c }];
        let (flip, shift) = weight_domain::<W>();
        let zw: Vec<i32> = (0..m).map(|c| zp_of(c) + shift).collect();
        let kk = numel(&w_shape[1..])?;
        let mg = m / group;
        let layout = path.layout();
        let k4 = kk.div_ceil(4);
        let group_len = mg.div_ceil(layout.mr) * layout.r_panel(k4);
        let mut data = vec![0u8; group * group_len];
        let mut rowsum = vec![0i32; m];
        for g in 0..group {
            pack_r(
                layout,
                &w[g * mg * kk..(g + 1) * mg * kk],
                mg,
                kk,
                kk,
                flip,
                true,
                &mut data[g * group_len..(g + 1) * group_len],
                Some(&mut rowsum[g * mg..(g + 1) * mg]),
            );
        }
        let dw = (w_shape[1] == 1).then(|| {
            w.iter()
                .enumerate()
                .map(|(i, &v)| v.into() - zp_of(i / kk))
                .collect()
        });
        Ok(PackedConvWeights {
            path,
            layout,
            shape: w_shape.to_vec(),
            group,
            kk,
            data,
            group_len,
            rowsum,
            any_zw: zw.iter().any(|&z| z != 0),
            zw,
            dw,
        })
    }

    /// The weight shape `[M, C/group, k...]`.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// The group count the weight was packed for.
    pub fn group(&self) -> usize {
        self.group
    }
    /// The kernel path the weight was packed for.
    pub fn path(&self) -> KernelPath {
        self.path
    }
}

/// Output shape `[N, M, O1, ..., On]` (as [`crate::conv_output_shape`]).
pub fn qconv_output_shape(
    x_shape: &[usize],
    w: &PackedConvWeights,
    p: &QConvParams,
) -> Result<Vec<usize>> {
    conv_output_shape(x_shape, &w.shape, p)
}

/// Int8 convolution: `out[n, m, o] = stage(sum_{c, k} (x - x_zero_point) * (w[m] - zw[m]))`, padded
/// input positions counting as `x_zero_point` (so they contribute 0). The output channel of the
/// stage is `m`. `p.group` must equal the group the weight was packed for.
pub fn qconv<X: QType, O: QOut>(
    x: &[X],
    x_shape: &[usize],
    x_zero_point: i32,
    w: &PackedConvWeights,
    p: &QConvParams,
    stage: &OutputStage<'_>,
    out: &mut [O],
) -> Result<()> {
    if p.group != w.group {
        return Err(param_err!(
            "conv group {} differs from the group {} the weight was packed for",
            p.group,
            w.group
        ));
    }
    let geo = Geometry::new(x_shape, &w.shape, None, p)?;
    check_len("qconv input", x.len(), numel(x_shape)?)?;
    check_len(
        "qconv output",
        out.len(),
        numel(&[geo.n, geo.m, geo.out_size])?,
    )?;
    check_zp::<X>("input", x_zero_point)?;
    let prep = Prepared::new::<O>(stage, geo.m)?;
    if out.is_empty() {
        return Ok(());
    }
    with_kernel!(w.path, kern => {
        if kern_layout_ok::<_>(kern, w) {
            conv_run(kern, &geo, p, x, x_zero_point, w, &prep, out);
            Ok(())
        } else {
            Err(param_err!("packed weight layout does not match its kernel path"))
        }
    })
}

fn kern_layout_ok<K: Kernel>(_: K, w: &PackedConvWeights) -> bool {
    K::LAYOUT == w.layout
}

/// Target bytes of one packed input tile (kept in L2).
const TILE_BYTES: usize = 192 * 1024;

struct Task<'o, O> {
    ni: usize,
    gi: usize,
    p0: usize,
    p1: usize,
    rows: Vec<&'o mut [O]>,
}

fn conv_run<K: Kernel, X: QType, O: QOut>(
    kern: K,
    geo: &Geometry,
    p: &ConvParams,
    x: &[X],
    zx: i32,
    w: &PackedConvWeights,
    prep: &Prepared,
    out: &mut [O],
) {
    let threads = rayon::current_num_threads();
    let flops = geo.n * geo.m * geo.cg * geo.k_size * geo.out_size;
    let par = threads > 1 && flops >= PAR_MIN_FLOPS;
    if geo.cg == 1
        && geo.in_sp.len() == 2
        && let Some(dw) = &w.dw
    {
        depthwise(kern, geo, p, x, zx, dw, prep, out, par);
        return;
    }
    let l = K::LAYOUT;
    let (flip, shift) = act_domain::<X>();
    let zxd = zx + shift;
    let kk = w.kk;
    let k4 = kk.div_ceil(4);
    // Row constants: K zx' zw'[m] - zx' sum_k w'[m] (+ bias[m]); row factor -zw'[m].
    let kz = (kk as i32).wrapping_mul(zxd);
    let rowc: Vec<i32> = (0..geo.m)
        .map(|c| {
            let v = kz
                .wrapping_mul(w.zw[c])
                .wrapping_sub(zxd.wrapping_mul(w.rowsum[c]));
            prep.ibias.as_ref().map_or(v, |b| v.wrapping_add(b[c]))
        })
        .collect();
    let rowf: Vec<i32> = w.zw.iter().map(|z| z.wrapping_neg()).collect();
    let pointwise = geo.k_sp.iter().all(|&k| k == 1)
        && p.strides.iter().all(|&s| s == 1)
        && p.pads.iter().all(|&q| q == 0);

    let direct = (!pointwise && geo.in_sp.len() == 2).then(|| Direct::new(geo, p, x, zx, par));

    // Column tiles: a multiple of NR whose packed panels fit TILE_BYTES; smaller when the
    // (batch, group) tasks alone would not keep every thread busy. Columns are output positions,
    // or grid columns of the padded input for the direct path.
    let ncols = direct.as_ref().map_or(geo.out_size, |d| d.ncols);
    let pos = |c: usize| direct.as_ref().map_or(c, |d| d.wrap(0).pos(c));
    let mut tile = (TILE_BYTES / (k4 * l.group_bytes()).max(1) / l.nr).max(1) * l.nr;
    let ng = geo.n * geo.g;
    if par && ng < 4 * threads {
        let per = ncols.div_ceil((4 * threads).div_ceil(ng));
        tile = tile.min(per.div_ceil(l.nr).max(1) * l.nr);
    }
    let bounds: Vec<(usize, usize)> = (0..ncols)
        .step_by(tile)
        .map(|p0| (p0, (p0 + tile).min(ncols)))
        .collect();
    let nt = bounds.len();
    let mut tasks: Vec<Task<'_, O>> = Vec::with_capacity(ng * nt);
    for ni in 0..geo.n {
        for gi in 0..geo.g {
            for &(p0, p1) in &bounds {
                tasks.push(Task {
                    ni,
                    gi,
                    p0,
                    p1,
                    rows: Vec::with_capacity(geo.mg),
                });
            }
        }
    }
    let os = geo.out_size;
    for (ri, mut row) in out.chunks_mut(os).enumerate() {
        let (ni, mi) = (ri / geo.m, ri % geo.m);
        let base = (ni * geo.g + mi / geo.mg) * nt;
        for (t, &(p0, p1)) in bounds.iter().enumerate() {
            let (head, tail) = std::mem::take(&mut row).split_at_mut(pos(p1) - pos(p0));
            tasks[base + t].rows.push(head);
            row = tail;
        }
    }
    let zx_bits = X::from_i32_unchecked(zx).bits();
    let run = |t: &mut Task<'_, O>| {
        let nc = t.p1 - t.p0;
        let vlen = nc.div_ceil(l.nr) * l.v_panel(k4);
        let col_len = if pointwise || direct.is_some() {
            0
        } else {
            kk * nc
        };
        with_bytes(vlen + col_len, |buf| {
            let (vbuf, col) = buf.split_at_mut(vlen);
            let mut sums = Vec::new();
            if w.any_zw {
                sums.resize(nc, 0);
            }
            if let Some(d) = &direct {
                let xs = &d.xp[(t.ni * geo.c + t.gi * geo.cg) * d.plane..][..geo.cg * d.plane];
                kern.pack_v_by(xs, kk, |r| d.offs[r] + t.p0, nc, 0, false, vbuf);
                if w.any_zw {
                    packed_col_sums(l, vbuf, k4, nc, false, &mut sums);
                }
            } else {
                let xs = &x[(t.ni * geo.c + t.gi * geo.cg) * geo.in_size..][..geo.cg * geo.in_size];
                if pointwise {
                    kern.pack_v(xs, kk, geo.in_size, t.p0, nc, flip, false, vbuf);
                    if w.any_zw {
                        col_sums(xs, kk, geo.in_size, t.p0, nc, flip, false, &mut sums);
                    }
                } else {
                    im2col(geo, p, xs, zx_bits, col, t.p0, t.p1);
                    kern.pack_v(&*col, kk, nc, 0, nc, flip, false, vbuf);
                    if w.any_zw {
                        col_sums(&*col, kk, nc, 0, nc, flip, false, &mut sums);
                    }
                }
            }
            let r0 = t.gi * geo.mg;
            let mut blk = Block {
                k4,
                r: &w.data[t.gi * w.group_len..(t.gi + 1) * w.group_len],
                m: geo.mg,
                v: vbuf,
                n: nc,
                fix: Fix {
                    rowc: Some(&rowc[r0..r0 + geo.mg]),
                    colc: None,
                    rowf: w.any_zw.then(|| &rowf[r0..r0 + geo.mg]),
                    colf: w.any_zw.then_some(&sums[..]),
                },
                stage: prep.view(r0..r0 + geo.mg),
                chan_is_row: true,
                wrap: direct.as_ref().map(|d| d.wrap(t.p0)),
                out: &mut t.rows,
            };
            kern.block::<O, false>(&mut blk);
        });
    };
    if par && tasks.len() > 1 {
        tasks.par_iter_mut().for_each(run);
    } else {
        tasks.iter_mut().for_each(run);
    }
    if let Some(d) = direct {
        return_staged(d.xp);
    }
}

/// The input of a 2-d convolution, copied once into the kernel domain, padded with the input zero
/// point and split by stride phase, so that every im2col row is a contiguous run of it and V panels
/// are packed straight from it (no im2col buffer).
///
/// Padded plane `(n, c)` is `hp x wp` (`hp = ih + pad_top + pad_bottom`, `wp` alike); padded pixel
/// `(y, x)` is stored in sub-plane `(y % sh, x % sw)` (each `hq x lq`, `hq = hp.div_ceil(sh)`,
/// `lq = wp.div_ceil(sw)`, row-major) at `(y / sh, x / sw)`. Output `(oy, ox)` under tap
/// `(ky, kx)` reads `y = oy sh + ky dh`, `x = ox sw + kx dw`, i.e. sub-plane
/// `(ky dh % sh, kx dw % sw)` at `(oy + ky dh / sh, ox + kx dw / sw)`. With grid column
/// `j = oy * lq + ox`, the im2col row of tap `(c, ky, kx)` is therefore the run starting at
/// `offs = c * plane + sub-plane start + (ky dh / sh) lq + kx dw / sw`. The `lq - ow` grid columns at
/// the end of each grid row read elsewhere in the plane; they are computed and dropped ([`Wrap`]).
/// Every read stays in its sub-plane: the last one is at row `(oh - 1) + ky dh / sh = y / sh < hq`
/// and column `(ow - 1) + kx dw / sw = x / sw < lq` for the last output's `y < hp`, `x < wp`.
struct Direct {
    xp: Vec<u8>,
    plane: usize,
    lq: usize,
    ow: usize,
    /// Grid columns: `(oh - 1) * lq + ow`.
    ncols: usize,
    /// Start of each im2col row `r = c * k_size + ky * kw + kx` within a (batch, group).
    offs: Vec<usize>,
}

impl Direct {
    fn new<X: QType>(geo: &Geometry, p: &ConvParams, x: &[X], zx: i32, par: bool) -> Self {
        let (flip, _) = act_domain::<X>();
        let [ih, iw] = [geo.in_sp[0], geo.in_sp[1]];
        let [pt, pl, pb, pr] = [p.pads[0], p.pads[1], p.pads[2], p.pads[3]];
        let [sh, sw] = [p.strides[0], p.strides[1]];
        let (hp, wp) = (ih + pt + pb, iw + pl + pr);
        let (hq, lq) = (hp.div_ceil(sh), wp.div_ceil(sw));
        let sub = hq * lq;
        let plane = sh * sw * sub;
        let pad = X::from_i32_unchecked(zx).bits() ^ flip;
        let fill = |(i, dst): (usize, &mut [u8])| {
            let src = &x[i * geo.in_size..(i + 1) * geo.in_size];
            dst.fill(pad);
            for r in 0..ih {
                let (y, srow) = (pt + r, &src[r * iw..(r + 1) * iw]);
                for px in 0..sw {
                    let drow = &mut dst[((y % sh) * sw + px) * sub + (y / sh) * lq..][..lq];
                    // Padded column px + t sw is input column px + t sw - pl.
                    let t0 = pl.saturating_sub(px).div_ceil(sw);
                    let t1 = (pl + iw).saturating_sub(px).div_ceil(sw).min(lq);
                    if t0 >= t1 {
                        continue;
                    }
                    let c0 = px + t0 * sw - pl;
                    copy_bits(&mut drow[t0..t1], &srow[c0..], sw);
                    if flip != 0 {
                        drow[t0..t1].iter_mut().for_each(|b| *b ^= flip);
                    }
                }
            }
        };
        // The thread's reused staging buffer (no fresh pages per call); `fill` writes all of it.
        let mut xp = take_staged();
        let len = geo.n * geo.c * plane;
        if xp.len() < len {
            xp.resize(len, 0);
        }
        xp.truncate(len);
        if par {
            xp.par_chunks_mut(plane).enumerate().for_each(fill);
        } else {
            xp.chunks_mut(plane).enumerate().for_each(fill);
        }
        let [kw, dh, dw] = [geo.k_sp[1], p.dilations[0], p.dilations[1]];
        let offs = (0..geo.cg * geo.k_size)
            .map(|r| {
                let (c, t) = (r / geo.k_size, r % geo.k_size);
                let (y, x) = ((t / kw) * dh, (t % kw) * dw);
                c * plane + ((y % sh) * sw + x % sw) * sub + (y / sh) * lq + x / sw
            })
            .collect();
        let [oh, ow] = [geo.out_sp[0], geo.out_sp[1]];
        Direct {
            xp,
            plane,
            lq,
            ow,
            ncols: (oh - 1) * lq + ow,
            offs,
        }
    }

    /// The [`Wrap`] of a block starting at grid column `c0`.
    fn wrap(&self, c0: usize) -> Wrap {
        Wrap {
            c0,
            period: self.lq,
            keep: self.ow,
        }
    }
}

/// Fills `col [cg * K, p1 - p0]` (raw bits) for output positions `[p0, p1)`: row `(c, k)` holds the
/// input under kernel tap `k` for each output position, `pad` (the input zero point) in padding.
/// Only 1-d and 3-d-and-up convolutions come here: 2-d ones are packed from [`Direct`].
fn im2col<X: QType>(
    geo: &Geometry,
    p: &ConvParams,
    x: &[X],
    pad: u8,
    col: &mut [u8],
    p0: usize,
    p1: usize,
) {
    let nd = geo.in_sp.len();
    let in_strides = strides_of(&geo.in_sp);
    let last = nd - 1;
    let ow = geo.out_sp[last];
    let outer_shape = &geo.out_sp[..last];
    let s = p.strides[last];
    let width = p1 - p0;
    let mut kidx = vec![0usize; nd];
    let mut oidx = vec![0usize; last];
    for (r, dst) in col.chunks_mut(width).enumerate() {
        let c = r / geo.k_size;
        let xc = &x[c * geo.in_size..(c + 1) * geo.in_size];
        let off = (kidx[last] * p.dilations[last]) as isize - p.pads[last] as isize;
        let (lo, hi) = valid_range(ow, s, off, geo.in_sp[last]);
        let mut pos = p0;
        while pos < p1 {
            let (outer, c0) = (pos / ow, pos % ow);
            let c1 = ow.min(c0 + (p1 - pos));
            let seg = &mut dst[pos - p0..pos - p0 + (c1 - c0)];
            let mut rem = outer;
            for a in (0..last).rev() {
                oidx[a] = rem % outer_shape[a];
                rem /= outer_shape[a];
            }
            // Input offset of the outer coordinates, or None when one lies in padding.
            let mut base = Some(0usize);
            for a in 0..last {
                let i = (oidx[a] * p.strides[a] + kidx[a] * p.dilations[a]) as isize
                    - p.pads[a] as isize;
                if i < 0 || i >= geo.in_sp[a] as isize {
                    base = None;
                    break;
                }
                base = base.map(|b| b + i as usize * in_strides[a]);
            }
            match base {
                None => seg.fill(pad),
                Some(b) => {
                    let h = hi.clamp(c0, c1);
                    let l = lo.clamp(c0, h);
                    seg[..l - c0].fill(pad);
                    seg[h - c0..].fill(pad);
                    if l < h {
                        let start = (b as isize + (l * s) as isize + off) as usize;
                        copy_bits(&mut seg[l - c0..h - c0], &xc[start..], s);
                    }
                }
            }
            pos += c1 - c0;
        }
        next_index(&mut kidx, &geo.k_sp);
    }
}

/// `dst[j] = src[j * step]` as raw bits (the in-range part of an im2col row segment).
#[inline(always)]
fn copy_bits<X: QType>(dst: &mut [u8], src: &[X], step: usize) {
    if step == 1 {
        for (d, v) in dst.iter_mut().zip(src) {
            *d = v.bits();
        }
    } else {
        for (d, v) in dst.iter_mut().zip(src.iter().step_by(step)) {
            *d = v.bits();
        }
    }
}

/// Most taps a depthwise kernel may have for the exact f32 form ([`DwPlane::run_f32`]).
///
/// Bound: every factor `x - zx` and `w - zw` lies in `[-255, 255]`, so each product is an integer
/// of magnitude at most `255 * 255 = 65025 < 2^24` (exact in f32), and any partial sum of at most
/// `DW_F32_TAPS = 64` products has magnitude at most `64 * 65025 = 4161600 < 2^22`: every
/// intermediate f32 value is an integer below `2^24`, so each multiply and add is exact, in any
/// order, and the result equals the i32 sum (which cannot wrap either). Below `2^22` it is also in
/// the domain of `quant::round_half_even_small`, which converts it back to i32 exactly.
const DW_F32_TAPS: usize = 64;

/// f32 lanes the depthwise row loops work in.
const DW_LANES: usize = 16;

/// One output plane of a 2-d depthwise convolution: `x [H, W]` (one input channel), taps
/// `wts [kh * kw]` already minus the weight zero point. Kernels of at most [`DW_F32_TAPS`] taps take
/// the exact f32 form ([`DwPlane::run_f32`]); larger ones accumulate directly in i32 per output row
/// (vectorized over the output width), padding skipped (it would contribute `(zx - zx) * w = 0`).
pub(crate) struct DwPlane<'a, T, O> {
    x: &'a [T],
    hw: [usize; 2],
    k: [usize; 2],
    ohw: [usize; 2],
    s: [usize; 2],
    d: [usize; 2],
    pad: [isize; 2],
    zx: i32,
    wts: &'a [i32],
    init: i32,
    stage: StageView<'a>,
    chan: usize,
    out: &'a mut [O],
    acc: &'a mut [i32],
    /// f32 scratch of [`DwPlane::f32_len`] values when the f32 form applies.
    fx: &'a mut [f32],
}

/// Layout of the f32 input plane of [`DwPlane::run_f32`]: `(span, phase length, row length)`.
/// One output row reads `span = (ow - 1) sw + (kw - 1) dw + 1` padded input columns; they are stored
/// split by stride phase (column `u` at `(u % sw) * len + u / sw`, `len = span.div_ceil(sw)`), so
/// that every tap reads a contiguous run.
/// The output width is rounded up to [`DW_LANES`] (the extra columns read zeros or the next
/// phase and are dropped) so that every row loop runs over whole vectors.
fn dw_f32_layout(ow: usize, kw: usize, sw: usize, dw: usize) -> (usize, usize, usize) {
    let span = (ow.next_multiple_of(DW_LANES) - 1) * sw + (kw - 1) * dw + 1;
    let len = span.div_ceil(sw);
    (span, len, sw * len)
}

impl<T: QType, O: QOut> DwPlane<'_, T, O> {
    /// The f32 scratch length a plane needs: 0 unless the f32 form applies.
    fn f32_len(
        hw: [usize; 2],
        k: [usize; 2],
        ohw: [usize; 2],
        s: [usize; 2],
        d: [usize; 2],
    ) -> usize {
        if k[0] * k[1] > DW_F32_TAPS || ohw[1] == 0 {
            return 0;
        }
        let (_, _, rl) = dw_f32_layout(ohw[1], k[1], s[1], d[1]);
        hw[0] * rl
    }

    #[inline(always)]
    pub(crate) fn run(&mut self) {
        if !self.fx.is_empty() {
            self.run_f32();
        } else {
            self.run_i32();
        }
    }

    /// The exact f32 form (see [`DW_F32_TAPS`] for why it is exact): the input plane is converted
    /// once to `x - zx` in f32, padding included as 0 (it contributes `(zx - zx) * w = 0`, as in
    /// the reference), then each output row is a sum of whole-row multiply-adds over contiguous
    /// runs (vectorized over the output width, any stride, through the phase-split layout).
    #[inline(always)]
    fn run_f32(&mut self) {
        let [h, wd] = self.hw;
        let [kh, kw] = self.k;
        let [oh, ow] = self.ohw;
        let [sh, sw] = self.s;
        let [dh, dw] = self.d;
        let [ph, pw] = self.pad;
        let zx = self.zx;
        let (span, len, rl) = dw_f32_layout(ow, kw, sw, dw);
        let fp = &mut self.fx[..h * rl];
        let owp = ow.next_multiple_of(DW_LANES);
        // Padded column u is input column u - pw.
        let u0 = (pw.max(0) as usize).min(span);
        let u1 = ((pw + wd as isize).max(0) as usize).clamp(u0, span);
        let c0 = (u0 as isize - pw) as usize;
        for (i, dst) in fp.chunks_exact_mut(rl).enumerate() {
            let xr = &self.x[i * wd..(i + 1) * wd];
            if sw == 1 {
                dst[..u0].fill(0.0);
                dst[u1..].fill(0.0);
                for (d, &v) in dst[u0..u1].iter_mut().zip(&xr[c0..]) {
                    *d = (v.into() - zx) as f32;
                }
            } else {
                dst.fill(0.0);
                for u in u0..u1 {
                    dst[(u % sw) * len + u / sw] = (xr[u - u0 + c0].into() - zx) as f32;
                }
            }
        }
        let acc = &mut self.acc[..owp];
        let w3 = kw == 3 && sw == 1 && dw == 1;
        for (r, orow) in self.out.chunks_mut(ow).enumerate().take(oh) {
            // The kernel rows inside the input: (input row start in `fp`, first tap index).
            let mut taps = [(0usize, 0usize); DW_F32_TAPS];
            let mut nt = 0;
            for ki in 0..kh {
                let ih = (r * sh + ki * dh) as isize - ph;
                if ih >= 0 && ih < h as isize {
                    taps[nt] = (ih as usize * rl, ki * kw);
                    nt += 1;
                }
            }
            let taps = &taps[..nt];
            // One 16-lane chunk of the output row at a time, all its taps summed in a local
            // vector (a register), then converted straight into the i32 row.
            for (q, a) in acc.chunks_exact_mut(DW_LANES).enumerate() {
                let j = q * DW_LANES;
                let mut t = [0f32; DW_LANES];
                for &(ro, wo) in taps {
                    let wts = &self.wts[wo..wo + kw];
                    if w3 {
                        let (w0, w1, w2) = (wts[0] as f32, wts[1] as f32, wts[2] as f32);
                        let x = &fp[ro + j..ro + j + DW_LANES + 2];
                        for l in 0..DW_LANES {
                            t[l] += w0 * x[l] + w1 * x[l + 1] + w2 * x[l + 2];
                        }
                    } else {
                        for (kj, &wv) in wts.iter().enumerate() {
                            let off = kj * dw;
                            let x = &fp[ro + (off % sw) * len + off / sw + j..][..DW_LANES];
                            let wv = wv as f32;
                            for l in 0..DW_LANES {
                                t[l] += wv * x[l];
                            }
                        }
                    }
                }
                for (o, &v) in a.iter_mut().zip(&t) {
                    *o = round_half_even_small(v).wrapping_add(self.init);
                }
            }
            write_row(&acc[..ow], orow, &self.stage, Chan::Row(self.chan));
        }
    }

    /// The i32 form, for kernels of more than [`DW_F32_TAPS`] taps.
    #[inline(always)]
    fn run_i32(&mut self) {
        let [h, wd] = self.hw;
        let [kh, kw] = self.k;
        let [oh, ow] = self.ohw;
        let [sh, sw] = self.s;
        let [dh, dw] = self.d;
        let [ph, pw] = self.pad;
        let zx = self.zx;
        let acc = &mut self.acc[..ow];
        // Width-3 rows at stride 1 and dilation 1 (the common 3x3 depthwise layer): the columns whose
        // three taps all lie inside the input are accumulated in one pass per input row (one load and
        // store of the accumulator instead of three); the edge columns take the per-tap loop below.
        // The sum is the same: integer addition in a different order, wrapping like the reference.
        let fused = (kw == 3 && sw == 1 && dw == 1).then(|| {
            let lo = (pw.max(0) as usize).min(ow);
            let hi = ((wd as isize + pw - 2).max(0) as usize).min(ow).max(lo);
            (lo, hi)
        });
        for (r, orow) in self.out.chunks_mut(ow).enumerate().take(oh) {
            acc.fill(self.init);
            for ki in 0..kh {
                let ih = (r * sh + ki * dh) as isize - ph;
                if ih < 0 || ih >= h as isize {
                    continue;
                }
                let xrow = &self.x[ih as usize * wd..(ih as usize + 1) * wd];
                if let Some((lo, hi)) = fused
                    && lo < hi
                {
                    let (w0, w1, w2) =
                        (self.wts[ki * 3], self.wts[ki * 3 + 1], self.wts[ki * 3 + 2]);
                    // Input column of output column j's first tap: j - pw (>= 0 from lo on).
                    let start = (lo as isize - pw) as usize;
                    let n = hi - lo;
                    let (x0, x1, x2) = (
                        &xrow[start..start + n],
                        &xrow[start + 1..start + 1 + n],
                        &xrow[start + 2..start + 2 + n],
                    );
                    for (j, a) in acc[lo..hi].iter_mut().enumerate() {
                        let s = (x0[j].into() - zx) * w0
                            + (x1[j].into() - zx) * w1
                            + (x2[j].into() - zx) * w2;
                        *a = a.wrapping_add(s);
                    }
                    for kj in 0..3 {
                        let wv = self.wts[ki * 3 + kj];
                        let off = kj as isize - pw;
                        let (vlo, vhi) = valid_range(ow, 1, off, wd);
                        let edges = (vlo..vhi.min(lo)).chain(vlo.max(hi)..vhi);
                        for j in edges {
                            let xv = xrow[(j as isize + off) as usize];
                            acc[j] = acc[j].wrapping_add((xv.into() - zx) * wv);
                        }
                    }
                    continue;
                }
                for kj in 0..kw {
                    let wv = self.wts[ki * kw + kj];
                    let off = (kj * dw) as isize - pw;
                    let (lo, hi) = valid_range(ow, sw, off, wd);
                    if lo >= hi {
                        continue;
                    }
                    let start = ((lo * sw) as isize + off) as usize;
                    if sw == 1 {
                        let src = &xrow[start..start + (hi - lo)];
                        for (a, &xv) in acc[lo..hi].iter_mut().zip(src) {
                            *a = a.wrapping_add((xv.into() - zx) * wv);
                        }
                    } else {
                        for (j, a) in acc[lo..hi].iter_mut().enumerate() {
                            *a = a.wrapping_add((xrow[start + j * sw].into() - zx) * wv);
                        }
                    }
                }
            }
            write_row(acc, orow, &self.stage, Chan::Row(self.chan));
        }
    }
}

fn depthwise<K: Kernel, X: QType, O: QOut>(
    kern: K,
    geo: &Geometry,
    p: &ConvParams,
    x: &[X],
    zx: i32,
    dw: &[i32],
    prep: &Prepared,
    out: &mut [O],
    par: bool,
) {
    let ks = geo.k_size;
    let stage = prep.view(0..geo.m);
    let plane = |(idx, o): (usize, &mut [O])| {
        let (ni, mc) = (idx / geo.m, idx % geo.m);
        let ci = mc / geo.mg;
        let xs = &x[(ni * geo.c + ci) * geo.in_size..][..geo.in_size];
        let (hw, k, ohw) = (
            [geo.in_sp[0], geo.in_sp[1]],
            [geo.k_sp[0], geo.k_sp[1]],
            [geo.out_sp[0], geo.out_sp[1]],
        );
        let (s, d) = (
            [p.strides[0], p.strides[1]],
            [p.dilations[0], p.dilations[1]],
        );
        let flen = DwPlane::<X, O>::f32_len(hw, k, ohw, s, d);
        with_ints(geo.out_sp[1].next_multiple_of(DW_LANES), |acc| {
            with_floats(flen, |fx| {
                let mut d = DwPlane {
                    x: xs,
                    hw: [geo.in_sp[0], geo.in_sp[1]],
                    k: [geo.k_sp[0], geo.k_sp[1]],
                    ohw: [geo.out_sp[0], geo.out_sp[1]],
                    s: [p.strides[0], p.strides[1]],
                    d: [p.dilations[0], p.dilations[1]],
                    pad: [p.pads[0] as isize, p.pads[1] as isize],
                    zx,
                    wts: &dw[mc * ks..(mc + 1) * ks],
                    init: prep.ibias.as_ref().map_or(0, |b| b[mc]),
                    stage,
                    chan: mc,
                    out: o,
                    acc,
                    fx,
                };
                kern.depthwise(&mut d);
            })
        });
    };
    if par {
        out.par_chunks_mut(geo.out_size).enumerate().for_each(plane);
    } else {
        out.chunks_mut(geo.out_size).enumerate().for_each(plane);
    }
}
