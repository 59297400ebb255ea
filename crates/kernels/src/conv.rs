//! ONNX `Conv` in f32 for 1-d, 2-d, 3-d (any N-d) spatial inputs: im2col + GEMM, a pointwise path that
//! skips im2col, and a direct kernel for 2-d depthwise convolution (one input channel per group).
//!
//! Layouts: input `[N, C, D1, ..., Dn]`, weight `[M, C / group, k1, ..., kn]`, optional bias `[M]`,
//! output `[N, M, O1, ..., On]`, all flat row-major `f32` slices; pads are already resolved (see
//! [`crate::resolve_auto_pad`]). Work is split over rayon tasks by (batch, group) and, for a single
//! large task, over output tiles of the GEMM (column tiles, or row tiles when the output is narrow).
//! im2col fills one cache-sized column tile at a time in a per-thread scratch buffer reused across
//! calls, and the GEMM multiplies it straight into that tile of the output.
//!
//! The weights are packed for the GEMM once: per call by [`conv`], or once for many calls by
//! [`ConvWeights::new`] and [`conv_prepacked`]. The bias is added in the GEMM's store and an
//! optional [`Activation`] is applied to each output tile right after it is computed, with the same
//! scalar formula as the standalone op, so fusing changes no result.

use crate::blas::{ColTile, Mat, PackedA, for_col_tiles, for_row_tiles};
use crate::error::{Result, param_err, shape_err};
use crate::f32x::{self, F32Kernel};
use crate::spatial::{check_geometry, window_out_len};
use crate::util::{
    PAR_MIN_FLOPS, check_len, next_index, numel, strides_of, valid_range, with_scratch,
};
use rayon::prelude::*;

/// Conv attributes with pads already resolved. The kernel shape comes from the weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvParams {
    /// One per spatial axis, positive.
    pub strides: Vec<usize>,
    /// One per spatial axis, positive.
    pub dilations: Vec<usize>,
    /// `[x1_begin, ..., xn_begin, x1_end, ..., xn_end]`.
    pub pads: Vec<usize>,
    /// Number of groups; divides C and M.
    pub group: usize,
}

impl ConvParams {
    /// Defaults for `spatial_rank` axes: stride 1, dilation 1, no padding, one group.
    pub fn new(spatial_rank: usize) -> Self {
        ConvParams {
            strides: vec![1; spatial_rank],
            dilations: vec![1; spatial_rank],
            pads: vec![0; 2 * spatial_rank],
            group: 1,
        }
    }
}

/// Checked sizes of one convolution.
#[derive(Clone, Debug)]
pub(crate) struct Geometry {
    pub n: usize,
    pub c: usize,
    pub m: usize,
    pub g: usize,
    pub cg: usize,
    pub mg: usize,
    pub in_sp: Vec<usize>,
    pub k_sp: Vec<usize>,
    pub out_sp: Vec<usize>,
    pub in_size: usize,
    pub k_size: usize,
    pub out_size: usize,
}

impl Geometry {
    pub(crate) fn new(
        input_shape: &[usize],
        weight_shape: &[usize],
        bias_len: Option<usize>,
        p: &ConvParams,
    ) -> Result<Self> {
        if input_shape.len() < 3 {
            return Err(shape_err!(
                "conv input must be [N, C, spatial...], got {input_shape:?}"
            ));
        }
        if weight_shape.len() != input_shape.len() {
            return Err(shape_err!(
                "conv weight {weight_shape:?} must have the rank of input {input_shape:?}"
            ));
        }
        let nd = input_shape.len() - 2;
        check_geometry(nd, &p.strides, &p.dilations, &p.pads)?;
        let (n, c, m) = (input_shape[0], input_shape[1], weight_shape[0]);
        let g = p.group;
        if g == 0 || c % g != 0 || m % g != 0 {
            return Err(param_err!(
                "group {g} must divide input channels {c} and output channels {m}"
            ));
        }
        if weight_shape[1] != c / g {
            return Err(shape_err!(
                "weight {weight_shape:?} needs C/group = {} input channels (input {input_shape:?}, group {g})",
                c / g
            ));
        }
        if let Some(b) = bias_len
            && b != m
        {
            return Err(shape_err!(
                "bias has {b} elements, weight {weight_shape:?} has {m} output channels"
            ));
        }
        let in_sp = input_shape[2..].to_vec();
        let k_sp = weight_shape[2..].to_vec();
        let mut out_sp = Vec::with_capacity(nd);
        for i in 0..nd {
            out_sp.push(window_out_len(
                in_sp[i],
                k_sp[i],
                p.strides[i],
                p.dilations[i],
                p.pads[i],
                p.pads[nd + i],
                false,
            )?);
        }
        Ok(Geometry {
            n,
            c,
            m,
            g,
            cg: c / g,
            mg: m / g,
            in_size: numel(&in_sp)?,
            k_size: numel(&k_sp)?,
            out_size: numel(&out_sp)?,
            in_sp,
            k_sp,
            out_sp,
        })
    }
}

/// Output shape `[N, M, O1, ..., On]` with `Oi = floor((Di + pads - ((ki - 1) * di + 1)) / si) + 1`.
pub fn conv_output_shape(
    input_shape: &[usize],
    weight_shape: &[usize],
    p: &ConvParams,
) -> Result<Vec<usize>> {
    let geo = Geometry::new(input_shape, weight_shape, None, p)?;
    let mut s = vec![geo.n, geo.m];
    s.extend_from_slice(&geo.out_sp);
    Ok(s)
}

/// An element-wise activation applied to a convolution's output as it is produced. Each formula is
/// the one of the standalone ONNX op in f32 (and the executor's), so `conv` then the op and the
/// fused call give identical results.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Activation {
    /// No activation.
    #[default]
    Identity,
    /// `if x < 0 { 0 } else { x }` (NaN stays NaN).
    Relu,
    /// `if x >= 0 { x } else { alpha * x }`.
    LeakyRelu(f32),
    /// `x < min -> min`, then `x > max -> max` (opset 11+ order; bounds optional).
    Clip(Option<f32>, Option<f32>),
    /// `1 / (1 + exp(-x))`, with the vectorized `exp` of `f32x::vmath` (within 3e-7 relative of
    /// the exact value).
    Sigmoid,
    /// `x * sigmoid(x)` (SiLU / Swish: a Sigmoid and a Mul of its input by its output), with
    /// [`Activation::Sigmoid`]'s sigmoid.
    Silu,
    /// `clamp(alpha * x + beta, 0, 1)`.
    HardSigmoid(f32, f32),
    /// `x * clamp(x / 6 + 0.5, 0, 1)` with `1 / 6` rounded to f32 first.
    HardSwish,
}

impl Activation {
    /// Applies the activation in place.
    pub fn apply(self, xs: &mut [f32]) {
        match self {
            Activation::Identity => {}
            Activation::Relu => {
                for x in xs {
                    if *x < 0.0 {
                        *x = 0.0;
                    }
                }
            }
            Activation::LeakyRelu(alpha) => {
                for x in xs {
                    if *x < 0.0 {
                        *x *= alpha;
                    }
                }
            }
            Activation::Clip(lo, hi) => {
                for x in xs {
                    if let Some(l) = lo
                        && *x < l
                    {
                        *x = l;
                    }
                    if let Some(h) = hi
                        && *x > h
                    {
                        *x = h;
                    }
                }
            }
            Activation::Sigmoid => crate::f32x::vmath::sigmoid(xs),
            Activation::Silu => crate::f32x::vmath::silu(xs),
            Activation::HardSigmoid(alpha, beta) => {
                for x in xs {
                    *x = (alpha * *x + beta).clamp(0.0, 1.0);
                }
            }
            Activation::HardSwish => {
                let alpha = (1.0f64 / 6.0) as f32;
                for x in xs {
                    *x *= (alpha * *x + 0.5).clamp(0.0, 1.0);
                }
            }
        }
    }
}

/// Conv weights prepared once for [`conv_prepacked`]: packed per group for the GEMM, or kept as
/// given for the direct depthwise kernel.
#[derive(Clone, Debug)]
pub struct ConvWeights {
    shape: Vec<usize>,
    group: usize,
    store: WeightStore,
}

#[derive(Clone, Debug)]
enum WeightStore {
    /// 2-d depthwise (one input channel per group): the direct kernel reads the weights as given.
    Direct(Vec<f32>),
    /// One packed `[M / group, C / group * K]` GEMM operand per group.
    Packed(Vec<PackedA>),
}

/// Whether the direct depthwise kernel runs for this weight shape.
fn is_direct(weight_shape: &[usize]) -> bool {
    weight_shape.len() == 4 && weight_shape[1] == 1
}

impl ConvWeights {
    /// Packs `weight [M, C / group, k...]` for `group` groups.
    pub fn new(weight: &[f32], weight_shape: &[usize], group: usize) -> Result<Self> {
        if weight_shape.len() < 3 {
            return Err(shape_err!(
                "conv weight must be [M, C/group, k...], got {weight_shape:?}"
            ));
        }
        check_len("conv weight", weight.len(), numel(weight_shape)?)?;
        let m = weight_shape[0];
        if group == 0 || !m.is_multiple_of(group) {
            return Err(param_err!(
                "group {group} must divide the {m} output channels"
            ));
        }
        let store = if is_direct(weight_shape) {
            WeightStore::Direct(weight.to_vec())
        } else {
            WeightStore::Packed(pack_groups(f32x::selected(), weight, weight_shape, group)?)
        };
        Ok(ConvWeights {
            shape: weight_shape.to_vec(),
            group,
            store,
        })
    }

    /// [`ConvWeights::new`] for an explicit f32 kernel (tests compare both).
    #[cfg(test)]
    pub(crate) fn new_with(
        kernel: F32Kernel,
        weight: &[f32],
        weight_shape: &[usize],
        group: usize,
    ) -> Result<Self> {
        let mut w = Self::new(weight, weight_shape, group)?;
        if let WeightStore::Packed(_) = w.store {
            w.store = WeightStore::Packed(pack_groups(kernel, weight, weight_shape, group)?);
        }
        Ok(w)
    }

    /// The weight shape these were packed from.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The group count these were packed for.
    pub fn group(&self) -> usize {
        self.group
    }
}

fn pack_groups(
    kernel: F32Kernel,
    weight: &[f32],
    weight_shape: &[usize],
    group: usize,
) -> Result<Vec<PackedA>> {
    let mg = weight_shape[0] / group;
    let kk = numel(&weight_shape[1..])?;
    Ok((0..group)
        .map(|gi| PackedA::new_with(kernel, &weight[gi * mg * kk..(gi + 1) * mg * kk], mg, kk))
        .collect())
}

/// The weights of one call: as given (packed per call) or prepared.
enum Weights<'a> {
    Direct(&'a [f32]),
    Packed(&'a [PackedA]),
}

/// [`conv`] with weights prepared by [`ConvWeights::new`] and an activation applied to the output
/// (`Activation::Identity` for none). `weights` must have been packed with `p.group`.
pub fn conv_prepacked(
    input: &[f32],
    input_shape: &[usize],
    weights: &ConvWeights,
    bias: Option<&[f32]>,
    p: &ConvParams,
    act: Activation,
    out: &mut [f32],
) -> Result<()> {
    if weights.group != p.group {
        return Err(param_err!(
            "conv weights were packed for {} groups, the call has {}",
            weights.group,
            p.group
        ));
    }
    let w = match &weights.store {
        WeightStore::Direct(d) => Weights::Direct(d),
        WeightStore::Packed(g) => Weights::Packed(g),
    };
    conv_impl(input, input_shape, w, &weights.shape, bias, p, act, out)
}

/// [`conv`] followed by `act` on the output, fused.
#[allow(clippy::too_many_arguments)]
pub fn conv_with_activation(
    input: &[f32],
    input_shape: &[usize],
    weight: &[f32],
    weight_shape: &[usize],
    bias: Option<&[f32]>,
    p: &ConvParams,
    act: Activation,
    out: &mut [f32],
) -> Result<()> {
    check_len("conv weight", weight.len(), numel(weight_shape)?)?;
    if is_direct(weight_shape) {
        return conv_impl(
            input,
            input_shape,
            Weights::Direct(weight),
            weight_shape,
            bias,
            p,
            act,
            out,
        );
    }
    // Check the geometry before packing, so bad parameters fail before any work.
    Geometry::new(input_shape, weight_shape, bias.map(<[f32]>::len), p)?;
    let packed = pack_groups(f32x::selected(), weight, weight_shape, p.group)?;
    conv_impl(
        input,
        input_shape,
        Weights::Packed(&packed),
        weight_shape,
        bias,
        p,
        act,
        out,
    )
}

/// ONNX Conv: `out = conv(input, weight) + bias`, writing `out` of shape [`conv_output_shape`].
pub fn conv(
    input: &[f32],
    input_shape: &[usize],
    weight: &[f32],
    weight_shape: &[usize],
    bias: Option<&[f32]>,
    p: &ConvParams,
    out: &mut [f32],
) -> Result<()> {
    conv_with_activation(
        input,
        input_shape,
        weight,
        weight_shape,
        bias,
        p,
        Activation::Identity,
        out,
    )
}

#[allow(clippy::too_many_arguments)]
fn conv_impl(
    input: &[f32],
    input_shape: &[usize],
    weights: Weights<'_>,
    weight_shape: &[usize],
    bias: Option<&[f32]>,
    p: &ConvParams,
    act: Activation,
    out: &mut [f32],
) -> Result<()> {
    let geo = Geometry::new(input_shape, weight_shape, bias.map(<[f32]>::len), p)?;
    check_len("conv input", input.len(), numel(input_shape)?)?;
    check_len(
        "conv output",
        out.len(),
        numel(&[geo.n, geo.m, geo.out_size])?,
    )?;
    if out.is_empty() {
        return Ok(());
    }
    let chunk = geo.mg * geo.out_size;
    let tasks = geo.n * geo.g;
    let flops = geo.m * geo.cg * geo.k_size * geo.out_size;
    let parallel = tasks > 1 && flops * geo.n >= PAR_MIN_FLOPS;
    // A single task (or fewer tasks than threads) parallelises inside instead.
    let inner_par = tasks < rayon::current_num_threads() && flops >= PAR_MIN_FLOPS;
    let run = |i: usize, o: &mut [f32]| {
        let (ni, gi) = (i / geo.g, i % geo.g);
        let x0 = (ni * geo.c + gi * geo.cg) * geo.in_size;
        let x = &input[x0..x0 + geo.cg * geo.in_size];
        let b = bias.map(|b| &b[gi * geo.mg..(gi + 1) * geo.mg]);
        match weights {
            Weights::Direct(w) => {
                let ksz = geo.k_size;
                let w = &w[gi * geo.mg * ksz..(gi + 1) * geo.mg * ksz];
                depthwise_task(&geo, p, x, w, b, act, o, inner_par);
            }
            Weights::Packed(groups) => conv_task(&geo, p, x, &groups[gi], b, act, o, inner_par),
        }
    };
    if parallel {
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, o)| run(i, o));
    } else {
        out.chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, o)| run(i, o));
    }
    Ok(())
}

/// One (batch, group) of a 2-d depthwise convolution: one direct plane per output channel.
#[allow(clippy::too_many_arguments)]
fn depthwise_task(
    geo: &Geometry,
    p: &ConvParams,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
    par: bool,
) {
    let ksz = geo.k_size;
    let each = |(j, o): (usize, &mut [f32])| {
        depthwise_2d(
            geo,
            p,
            x,
            &w[j * ksz..(j + 1) * ksz],
            bias.map_or(0.0, |b| b[j]),
            o,
        );
        act.apply(o);
    };
    if par {
        out.par_chunks_mut(geo.out_size).enumerate().for_each(each);
    } else {
        out.chunks_mut(geo.out_size).enumerate().for_each(each);
    }
}

/// One (batch, group): `out [mg, out_size] = act(w [mg, cg * K] x col [cg * K, out_size] + bias)`.
#[allow(clippy::too_many_arguments)]
fn conv_task(
    geo: &Geometry,
    p: &ConvParams,
    x: &[f32],
    a: &PackedA,
    bias: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
    par: bool,
) {
    let kk = geo.cg * geo.k_size;
    let n = geo.out_size;
    let mg = geo.mg;
    debug_assert_eq!(a.rows(), mg);
    let pointwise = geo.k_sp.iter().all(|&k| k == 1)
        && p.strides.iter().all(|&s| s == 1)
        && p.pads.iter().all(|&q| q == 0);
    let threads = rayon::current_num_threads();
    // Column tile: im2col'd columns sized so the buffer stays in L2; a pointwise conv reads the
    // input in place and tiles only to apply the activation while the tile is in cache.
    let mut tile = if pointwise {
        POINTWISE_TILE
    } else {
        (COL_TILE_FLOATS / kk.max(1)).max(64).div_ceil(16) * 16
    };
    let finish = |ct: &mut ColTile| {
        if act != Activation::Identity {
            ct.for_each_row(|_, row| act.apply(row));
        }
    };
    if par && n <= tile && mg >= 2 * threads * a.row_align() {
        // Narrow output (late layers: few positions, many channels): one column panel shared by
        // every task, split over rows of the weights.
        let rows = mg.div_ceil(2 * threads).div_ceil(a.row_align()).max(1) * a.row_align();
        let mut run_rows = |b: Mat<'_>| {
            for_row_tiles(out, mg, n, n, rows, true, |i0, i1, ct| {
                ct.gemm_packed(a, i0, b, bias.map(|bv| &bv[i0..i1]));
                finish(ct);
            });
        };
        if pointwise {
            run_rows(Mat::row_major(x, n));
        } else {
            with_scratch(kk * n, |col| {
                im2col(geo, p, x, col, 0, n);
                run_rows(Mat::row_major(col, n));
            });
        }
        return;
    }
    if par {
        let per_thread = n.div_ceil(2 * threads).div_ceil(16) * 16;
        tile = tile.min(per_thread.max(16));
    }
    for_col_tiles(out, mg, n, n, tile, par, |j0, j1, ct| {
        if pointwise {
            ct.gemm_packed(a, 0, Mat::row_major(&x[j0..], n), bias);
        } else {
            with_scratch(kk * (j1 - j0), |col| {
                im2col(geo, p, x, col, j0, j1);
                ct.gemm_packed(a, 0, Mat::row_major(col, j1 - j0), bias);
            });
        }
        finish(ct);
    });
}

/// Columns per tile of a pointwise conv (the GEMM packs B in blocks of this many columns).
const POINTWISE_TILE: usize = 768;

/// Target size (in floats) of one im2col tile: 512 KiB (measured best for a 3x3 64-channel conv).
const COL_TILE_FLOATS: usize = 128 * 1024;

/// Fills `col [cg * K, p1 - p0]` for output positions `[p0, p1)`: row `(c, k)` holds the input value
/// under kernel tap `k` for each output position (0 in padding).
fn im2col(geo: &Geometry, p: &ConvParams, x: &[f32], col: &mut [f32], p0: usize, p1: usize) {
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
                None => seg.fill(0.0),
                Some(b) => {
                    let h = hi.clamp(c0, c1);
                    let l = lo.clamp(c0, h);
                    seg[..l - c0].fill(0.0);
                    seg[h - c0..].fill(0.0);
                    if l < h {
                        let start = (b as isize + (l * s) as isize + off) as usize;
                        let dst = &mut seg[l - c0..h - c0];
                        if s == 1 {
                            dst.copy_from_slice(&xc[start..start + (h - l)]);
                        } else {
                            for (j, v) in dst.iter_mut().enumerate() {
                                *v = xc[start + j * s];
                            }
                        }
                    }
                }
            }
            pos += c1 - c0;
        }
        next_index(&mut kidx, &geo.k_sp);
    }
}

/// Direct 2-d convolution of one input plane with one kernel (`x [H, W]`, `w [kh, kw]`).
fn depthwise_2d(geo: &Geometry, p: &ConvParams, x: &[f32], w: &[f32], bias: f32, out: &mut [f32]) {
    let (h, wd) = (geo.in_sp[0], geo.in_sp[1]);
    let (kh, kw) = (geo.k_sp[0], geo.k_sp[1]);
    let (oh, ow) = (geo.out_sp[0], geo.out_sp[1]);
    let (sh, sw) = (p.strides[0], p.strides[1]);
    let (dh, dw) = (p.dilations[0], p.dilations[1]);
    let (ph, pw) = (p.pads[0] as isize, p.pads[1] as isize);
    out.fill(bias);
    // AVX-512 path for 3-wide, stride-1, dilation-1 rows: interior columns [c_lo, c_hi) (all three
    // taps inside the input) run vectorised, the border columns use the scalar loop below.
    let (mut c_lo, mut c_hi) = (0, 0);
    if kw == 3 && sw == 1 && dw == 1 && kh <= 3 && f32x::selected() == F32Kernel::Avx512 {
        let pwu = p.pads[1];
        c_lo = pwu.min(ow);
        c_hi = (wd + pwu).saturating_sub(2).min(ow).max(c_lo);
    }
    for (r, orow) in out.chunks_mut(ow).enumerate().take(oh) {
        #[cfg(target_arch = "x86_64")]
        if c_lo < c_hi {
            let mut rows: [(&[f32], [f32; 3]); 3] = [(&[], [0.0; 3]); 3];
            let mut nrows = 0;
            for ki in 0..kh {
                let ih = (r * sh + ki * dh) as isize - ph;
                if ih >= 0 && ih < h as isize {
                    let ih = ih as usize;
                    rows[nrows] = (
                        &x[ih * wd..(ih + 1) * wd],
                        [w[ki * 3], w[ki * 3 + 1], w[ki * 3 + 2]],
                    );
                    nrows += 1;
                }
            }
            f32x::avx512::conv3_row_s1(&rows[..nrows], orow, c_lo, c_hi, p.pads[1]);
        }
        for ki in 0..kh {
            let ih = (r * sh + ki * dh) as isize - ph;
            if ih < 0 || ih >= h as isize {
                continue;
            }
            let xrow = &x[ih as usize * wd..(ih as usize + 1) * wd];
            for kj in 0..kw {
                let wv = w[ki * kw + kj];
                let off = (kj * dw) as isize - pw;
                let (lo, hi) = valid_range(ow, sw, off, wd);
                if lo >= hi {
                    continue;
                }
                let start = ((lo * sw) as isize + off) as usize;
                if sw == 1 {
                    // Columns [c_lo, c_hi) were done by the vector path (empty when not taken).
                    let parts = if c_lo < c_hi {
                        [(lo, hi.min(c_lo).max(lo)), (c_hi.max(lo).min(hi), hi)]
                    } else {
                        [(lo, hi), (hi, hi)]
                    };
                    for (a, b) in parts {
                        let xs = &xrow[start + (a - lo)..start + (b - lo)];
                        for (o, &xv) in orow[a..b].iter_mut().zip(xs) {
                            *o += wv * xv;
                        }
                    }
                } else {
                    for (j, o) in orow[lo..hi].iter_mut().enumerate() {
                        *o += wv * xrow[start + j * sw];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::conv_reference;
    use crate::testutil::{Rng, assert_close};

    #[derive(Debug)]
    struct Case {
        input_shape: Vec<usize>,
        weight_shape: Vec<usize>,
        bias: bool,
        p: ConvParams,
    }

    fn check(rng: &mut Rng, case: &Case) {
        let x = rng.vec(numel(&case.input_shape).unwrap());
        let w = rng.vec(numel(&case.weight_shape).unwrap());
        let b = case.bias.then(|| rng.vec(case.weight_shape[0]));
        let shape = conv_output_shape(&case.input_shape, &case.weight_shape, &case.p).unwrap();
        let mut got = vec![f32::NAN; numel(&shape).unwrap()];
        conv(
            &x,
            &case.input_shape,
            &w,
            &case.weight_shape,
            b.as_deref(),
            &case.p,
            &mut got,
        )
        .unwrap();
        let mut want = vec![0.0; got.len()];
        conv_reference(
            &x,
            &case.input_shape,
            &w,
            &case.weight_shape,
            b.as_deref(),
            &case.p,
            &mut want,
        )
        .unwrap();
        let ctx = format!(
            "input {:?} weight {:?} {:?}",
            case.input_shape, case.weight_shape, case.p
        );
        assert_close(&got, &want, 1e-4, 1e-4, &ctx);
    }

    /// Every fast path against the reference: packed once (both f32 kernels) or per call, with each
    /// activation fused, on random shapes with odd sizes, padding, strides, groups and dilation.
    #[test]
    fn prepacked_and_fused_activation_match_reference_then_op() {
        let mut kernels = vec![F32Kernel::Portable];
        if f32x::avx512_available() {
            kernels.push(F32Kernel::Avx512);
        }
        let acts = [
            Activation::Identity,
            Activation::Relu,
            Activation::LeakyRelu(0.1),
            Activation::Clip(Some(-0.5), Some(0.5)),
            Activation::Clip(None, Some(0.25)),
            Activation::Sigmoid,
            Activation::HardSigmoid(0.2, 0.5),
            Activation::HardSwish,
            Activation::Silu,
        ];
        let mut rng = Rng::new(17);
        for it in 0..160 {
            let nd = 1 + it % 3;
            let case = random_case(&mut rng, nd, it % 5 == 0);
            let act = acts[it % acts.len()];
            let x = rng.vec(numel(&case.input_shape).unwrap());
            let w = rng.vec(numel(&case.weight_shape).unwrap());
            let b = case.bias.then(|| rng.vec(case.weight_shape[0]));
            let shape = conv_output_shape(&case.input_shape, &case.weight_shape, &case.p).unwrap();
            let mut want = vec![0.0; numel(&shape).unwrap()];
            conv_reference(
                &x,
                &case.input_shape,
                &w,
                &case.weight_shape,
                b.as_deref(),
                &case.p,
                &mut want,
            )
            .unwrap();
            act.apply(&mut want);
            // Unfused: conv, then the activation; fused must be bit-identical to it.
            let mut unfused = vec![f32::NAN; want.len()];
            conv(
                &x,
                &case.input_shape,
                &w,
                &case.weight_shape,
                b.as_deref(),
                &case.p,
                &mut unfused,
            )
            .unwrap();
            act.apply(&mut unfused);
            let ctx = format!("{case:?} {act:?}");
            assert_close(&unfused, &want, 1e-4, 1e-4, &ctx);
            for &kernel in &kernels {
                let cw =
                    ConvWeights::new_with(kernel, &w, &case.weight_shape, case.p.group).unwrap();
                let mut got = vec![f32::NAN; want.len()];
                conv_prepacked(
                    &x,
                    &case.input_shape,
                    &cw,
                    b.as_deref(),
                    &case.p,
                    act,
                    &mut got,
                )
                .unwrap();
                if kernel == f32x::selected() {
                    assert_eq!(got, unfused, "fused differs from unfused: {ctx}");
                }
                assert_close(&got, &want, 1e-4, 1e-4, &format!("{kernel:?} {ctx}"));
            }
        }
    }

    #[test]
    fn prepacked_large_single_task_tiles_rows_and_columns() {
        // Wide outputs take column tiles, narrow ones with many channels row tiles (in parallel
        // when the pool has threads); 1x1 takes the pointwise path.
        let mut rng = Rng::new(23);
        let shapes = [
            (vec![1, 24, 9, 9], vec![80, 24, 3, 3], vec![1, 1, 1, 1]),
            (vec![1, 40, 5, 4], vec![72, 40, 3, 3], vec![1, 0, 1, 2]),
            (vec![1, 64, 33, 31], vec![20, 64, 1, 1], vec![0, 0, 0, 0]),
            (vec![1, 96, 6, 6], vec![130, 96, 1, 1], vec![0, 0, 0, 0]),
            (vec![1, 16, 40, 37], vec![24, 16, 3, 3], vec![1, 1, 1, 1]),
        ];
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for (xs, ws, pads) in shapes {
            let p = ConvParams {
                pads,
                ..ConvParams::new(2)
            };
            let x = rng.vec(numel(&xs).unwrap());
            let w = rng.vec(numel(&ws).unwrap());
            let b = rng.vec(ws[0]);
            let shape = conv_output_shape(&xs, &ws, &p).unwrap();
            let mut want = vec![0.0; numel(&shape).unwrap()];
            conv_reference(&x, &xs, &w, &ws, Some(&b), &p, &mut want).unwrap();
            Activation::Relu.apply(&mut want);
            let cw = ConvWeights::new(&w, &ws, 1).unwrap();
            let mut got = vec![f32::NAN; want.len()];
            pool.install(|| {
                conv_prepacked(&x, &xs, &cw, Some(&b), &p, Activation::Relu, &mut got).unwrap()
            });
            assert_close(&got, &want, 1e-4, 1e-4, &format!("{xs:?} {ws:?}"));
        }
    }

    #[test]
    fn prepacked_weights_check_their_call() {
        let w = vec![0.5; 2 * 2 * 3 * 3];
        let cw = ConvWeights::new(&w, &[2, 2, 3, 3], 1).unwrap();
        assert_eq!(cw.shape(), &[2, 2, 3, 3]);
        let x = vec![1.0; 2 * 4 * 4];
        let mut out = vec![0.0; 2 * 2 * 2];
        let p = ConvParams::new(2);
        conv_prepacked(
            &x,
            &[1, 2, 4, 4],
            &cw,
            None,
            &p,
            Activation::Identity,
            &mut out,
        )
        .unwrap();
        assert!(out.iter().all(|&v| (v - 9.0).abs() < 1e-6));
        // Wrong group count, wrong input channels, bad weight length: errors, not panics.
        let bad = ConvParams {
            group: 2,
            ..ConvParams::new(2)
        };
        assert!(
            conv_prepacked(
                &x,
                &[1, 2, 4, 4],
                &cw,
                None,
                &bad,
                Activation::Relu,
                &mut out
            )
            .is_err()
        );
        assert!(
            conv_prepacked(&x, &[1, 1, 8, 4], &cw, None, &p, Activation::Relu, &mut out).is_err()
        );
        assert!(ConvWeights::new(&w[1..], &[2, 2, 3, 3], 1).is_err());
        assert!(ConvWeights::new(&w, &[2, 2, 3, 3], 0).is_err());
    }

    #[test]
    fn depthwise_3_wide_stride_1_rows() {
        // The AVX-512 row path (when selected): widths around the 16-lane vector, all pads and
        // kernel heights up to 3, dilated rows.
        let mut rng = Rng::new(99);
        for wd in [1, 2, 3, 5, 15, 16, 17, 18, 33, 40] {
            for (pl, pr) in [(0, 0), (1, 1), (2, 0), (0, 2), (3, 3)] {
                for kh in 1..=3 {
                    let mut p = ConvParams::new(2);
                    p.group = 3;
                    p.pads = vec![1, pl, 1, pr];
                    p.dilations = vec![rng.range(1, 2), 1];
                    if wd + pl + pr < 3 {
                        continue;
                    }
                    let case = Case {
                        input_shape: vec![1, 3, 5, wd],
                        weight_shape: vec![6, 1, kh, 3],
                        bias: rng.bool(),
                        p,
                    };
                    check(&mut rng, &case);
                }
            }
        }
    }

    fn random_case(rng: &mut Rng, nd: usize, depthwise: bool) -> Case {
        let group = if depthwise {
            rng.range(1, 4)
        } else if rng.bool() {
            1
        } else {
            rng.range(1, 3)
        };
        let cg = if depthwise { 1 } else { rng.range(1, 3) };
        let mg = rng.range(1, 3);
        let mut p = ConvParams::new(nd);
        p.group = group;
        let mut input_shape = vec![rng.range(1, 2), cg * group];
        let mut weight_shape = vec![mg * group, cg];
        for i in 0..nd {
            let k = rng.range(1, 3);
            p.strides[i] = rng.range(1, 3);
            p.dilations[i] = rng.range(1, 2);
            p.pads[i] = rng.range(0, 2);
            p.pads[nd + i] = rng.range(0, 2);
            let eff = (k - 1) * p.dilations[i] + 1;
            let min_in = eff.saturating_sub(p.pads[i] + p.pads[nd + i]).max(1);
            let max_len = if nd == 3 { 6 } else { 11 };
            input_shape.push(rng.range(min_in, max_len.max(min_in)));
            weight_shape.push(k);
        }
        Case {
            input_shape,
            weight_shape,
            bias: rng.bool(),
            p,
        }
    }

    #[test]
    fn random_shapes_match_reference_1d_2d_3d() {
        let mut rng = Rng::new(1);
        for nd in 1..=3 {
            for _ in 0..120 {
                let case = random_case(&mut rng, nd, false);
                check(&mut rng, &case);
            }
        }
    }

    #[test]
    fn depthwise_and_channel_multiplier_match_reference() {
        let mut rng = Rng::new(2);
        for nd in 1..=3 {
            for _ in 0..80 {
                let case = random_case(&mut rng, nd, true);
                check(&mut rng, &case);
            }
        }
    }

    #[test]
    fn pointwise_and_large_cases_match_reference() {
        let mut rng = Rng::new(3);
        // 1x1 stride 1 no pad skips im2col; a large single task takes the parallel gemm and im2col.
        let cases = [
            Case {
                input_shape: vec![2, 5, 7, 9],
                weight_shape: vec![6, 5, 1, 1],
                bias: true,
                p: ConvParams::new(2),
            },
            Case {
                input_shape: vec![1, 16, 20, 23],
                weight_shape: vec![40, 16, 3, 3],
                bias: true,
                p: ConvParams {
                    pads: vec![1, 1, 1, 1],
                    ..ConvParams::new(2)
                },
            },
            Case {
                input_shape: vec![1, 8, 40, 40],
                weight_shape: vec![8, 8, 1, 1],
                bias: false,
                p: ConvParams::new(2),
            },
            Case {
                input_shape: vec![1, 32, 30, 30],
                weight_shape: vec![32, 1, 3, 3],
                bias: true,
                p: ConvParams {
                    pads: vec![1, 1, 1, 1],
                    group: 32,
                    ..ConvParams::new(2)
                },
            },
            Case {
                input_shape: vec![1, 3, 64, 64],
                weight_shape: vec![8, 3, 3, 3],
                bias: false,
                p: ConvParams {
                    strides: vec![2, 2],
                    pads: vec![1, 1, 0, 0],
                    ..ConvParams::new(2)
                },
            },
        ];
        for c in &cases {
            check(&mut rng, c);
        }
    }

    #[test]
    fn hand_computed_2d() {
        // 3x3 input 1..9, 2x2 ones kernel, pads 1 at the beginning only.
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let w = vec![1.0; 4];
        let p = ConvParams {
            pads: vec![1, 1, 0, 0],
            ..ConvParams::new(2)
        };
        let shape = conv_output_shape(&[1, 1, 3, 3], &[1, 1, 2, 2], &p).unwrap();
        assert_eq!(shape, vec![1, 1, 3, 3]);
        let mut out = vec![0.0; 9];
        conv(
            &x,
            &[1, 1, 3, 3],
            &w,
            &[1, 1, 2, 2],
            Some(&[0.5]),
            &p,
            &mut out,
        )
        .unwrap();
        let want = [1.0, 3.0, 5.0, 5.0, 12.0, 16.0, 11.0, 24.0, 28.0].map(|v| v + 0.5);
        assert_eq!(out, want);
    }

    #[test]
    fn bad_parameters_are_errors() {
        let p = ConvParams::new(2);
        let mut out = vec![0.0; 4];
        let x = vec![0.0; 9];
        assert!(
            conv(
                &x,
                &[1, 1, 3, 3],
                &[0.0; 4],
                &[1, 1, 2, 2],
                None,
                &p,
                &mut out
            )
            .is_ok()
        );
        assert!(
            conv(
                &x,
                &[1, 1, 3, 3],
                &[0.0; 4],
                &[1, 1, 2, 2],
                None,
                &p,
                &mut out[..3]
            )
            .is_err()
        );
        assert!(
            conv(
                &x,
                &[1, 1, 3, 3],
                &[0.0; 8],
                &[1, 2, 2, 2],
                None,
                &p,
                &mut out
            )
            .is_err()
        );
        assert!(
            conv(
                &x,
                &[1, 1, 3, 3],
                &[0.0; 4],
                &[1, 1, 2, 2],
                Some(&[0.0, 1.0]),
                &p,
                &mut out
            )
            .is_err()
        );
        assert!(
            conv(
                &x,
                &[1, 1, 3, 3],
                &[0.0; 16],
                &[1, 1, 4, 4],
                None,
                &p,
                &mut out
            )
            .is_err()
        );
        let bad = ConvParams {
            group: 2,
            ..ConvParams::new(2)
        };
        assert!(
            conv(
                &x,
                &[1, 1, 3, 3],
                &[0.0; 4],
                &[1, 1, 2, 2],
                None,
                &bad,
                &mut out
            )
            .is_err()
        );
        let bad = ConvParams {
            strides: vec![0, 1],
            ..ConvParams::new(2)
        };
        assert!(
            conv(
                &x,
                &[1, 1, 3, 3],
                &[0.0; 4],
                &[1, 1, 2, 2],
                None,
                &bad,
                &mut out
            )
            .is_err()
        );
        assert!(
            conv(
                &x,
                &[1, 1, 3, 3],
                &[0.0; 4],
                &[1, 1, 2, 2],
                None,
                &ConvParams::new(1),
                &mut out
            )
            .is_err()
        );
    }
}
