//! ONNX pooling in f32 over N-d spatial inputs `[N, C, D1, ..., Dn]`: MaxPool (with the optional
//! int64 Indices output), AveragePool (count_include_pad, dilations as in opset 19), GlobalAveragePool
//! and GlobalMaxPool. Pads are already resolved (see [`crate::resolve_auto_pad`]); `ceil_mode` drops a
//! last window that would start in the end padding, as ONNX specifies. Parallel over (N, C) planes.

use crate::error::{Result, shape_err};
use crate::spatial::{check_geometry, window_out_len};
use crate::util::{PAR_MIN_FLOPS, check_len, next_index, numel, strides_of};
use rayon::prelude::*;

/// Pooling attributes with pads already resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolParams {
    /// `kernel_shape`, one per spatial axis.
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// `[x1_begin, ..., xn_begin, x1_end, ..., xn_end]`.
    pub pads: Vec<usize>,
    pub ceil_mode: bool,
}

impl PoolParams {
    /// `kernel` with stride 1, dilation 1, no padding, floor mode.
    pub fn new(kernel: &[usize]) -> Self {
        let nd = kernel.len();
        PoolParams {
            kernel: kernel.to_vec(),
            strides: vec![1; nd],
            dilations: vec![1; nd],
            pads: vec![0; 2 * nd],
            ceil_mode: false,
        }
    }
}

/// Valid input positions of each output position along one axis.
struct AxisWindows {
    /// For each output position: the input indices the window covers inside the input.
    taps: Vec<Vec<usize>>,
    /// For each output position: how many taps lie inside the input or its pads.
    padded_count: Vec<usize>,
}

struct Geometry {
    nc: usize,
    in_sp: Vec<usize>,
    out_sp: Vec<usize>,
    in_size: usize,
    out_size: usize,
}

fn geometry(input_shape: &[usize], p: &PoolParams) -> Result<Geometry> {
    if input_shape.len() < 3 {
        return Err(shape_err!(
            "pool input must be [N, C, spatial...], got {input_shape:?}"
        ));
    }
    let nd = input_shape.len() - 2;
    if p.kernel.len() != nd {
        return Err(shape_err!(
            "kernel_shape {:?} must have {nd} entries for input {input_shape:?}",
            p.kernel
        ));
    }
    check_geometry(nd, &p.strides, &p.dilations, &p.pads)?;
    if p.kernel.contains(&0) {
        return Err(shape_err!("kernel_shape {:?} must be positive", p.kernel));
    }
    let in_sp = input_shape[2..].to_vec();
    let mut out_sp = Vec::with_capacity(nd);
    for i in 0..nd {
        out_sp.push(window_out_len(
            in_sp[i],
            p.kernel[i],
            p.strides[i],
            p.dilations[i],
            p.pads[i],
            p.pads[nd + i],
            p.ceil_mode,
        )?);
    }
    Ok(Geometry {
        nc: input_shape[0] * input_shape[1],
        in_size: numel(&in_sp)?,
        out_size: numel(&out_sp)?,
        in_sp,
        out_sp,
    })
}

fn axis_windows(geo: &Geometry, p: &PoolParams) -> Vec<AxisWindows> {
    let nd = geo.in_sp.len();
    (0..nd)
        .map(|a| {
            let (len, pb, pe) = (
                geo.in_sp[a] as isize,
                p.pads[a] as isize,
                p.pads[nd + a] as isize,
            );
            let mut taps = Vec::with_capacity(geo.out_sp[a]);
            let mut padded_count = Vec::with_capacity(geo.out_sp[a]);
            for o in 0..geo.out_sp[a] {
                let start = (o * p.strides[a]) as isize - pb;
                let idx = (0..p.kernel[a]).map(|t| start + (t * p.dilations[a]) as isize);
                taps.push(
                    idx.clone()
                        .filter(|&i| i >= 0 && i < len)
                        .map(|i| i as usize)
                        .collect(),
                );
                padded_count.push(idx.filter(|&i| i >= -pb && i < len + pe).count());
            }
            AxisWindows { taps, padded_count }
        })
        .collect()
}

/// Output shape `[N, C, O1, ..., On]` of MaxPool/AveragePool.
pub fn pool_output_shape(input_shape: &[usize], p: &PoolParams) -> Result<Vec<usize>> {
    let geo = geometry(input_shape, p)?;
    let mut s = input_shape[..2].to_vec();
    s.extend_from_slice(&geo.out_sp);
    Ok(s)
}

/// Calls `f(offset)` for every input offset of the window given by one tap list per axis.
fn for_window(taps: &[&[usize]], strides: &[usize], base: usize, f: &mut impl FnMut(usize)) {
    match taps.split_first() {
        None => f(base),
        Some((first, rest)) => {
            for &i in *first {
                for_window(rest, &strides[1..], base + i * strides[0], f);
            }
        }
    }
}

/// Runs `f(plane_index, output_plane, extra_plane)` over the (N, C) planes, in parallel when worth it.
fn for_planes<T: Send>(
    out: &mut [f32],
    extra: Option<&mut [T]>,
    plane: usize,
    work: usize,
    f: impl Fn(usize, &mut [f32], Option<&mut [T]>) + Sync + Send,
) {
    let par = work >= PAR_MIN_FLOPS && out.len() > plane;
    match (extra, par) {
        (Some(e), true) => out
            .par_chunks_mut(plane)
            .zip(e.par_chunks_mut(plane))
            .enumerate()
            .for_each(|(i, (o, e))| f(i, o, Some(e))),
        (Some(e), false) => out
            .chunks_mut(plane)
            .zip(e.chunks_mut(plane))
            .enumerate()
            .for_each(|(i, (o, e))| f(i, o, Some(e))),
        (None, true) => out
            .par_chunks_mut(plane)
            .enumerate()
            .for_each(|(i, o)| f(i, o, None)),
        (None, false) => out
            .chunks_mut(plane)
            .enumerate()
            .for_each(|(i, o)| f(i, o, None)),
    }
}

/// ONNX MaxPool. `indices`, if given, receives for each output the flattened row-major index of the
/// chosen input element in the whole input tensor (`(n * C + c) * D1 * ... * Dn + offset`), i.e.
/// ONNX's Indices with `storage_order = 0`. Padding never wins; among equal maxima the first (in
/// row-major window order) is chosen; a window lying entirely in padding gives `-inf` and index -1.
pub fn max_pool(
    input: &[f32],
    input_shape: &[usize],
    p: &PoolParams,
    out: &mut [f32],
    indices: Option<&mut [i64]>,
) -> Result<()> {
    let geo = geometry(input_shape, p)?;
    check_len("MaxPool input", input.len(), numel(input_shape)?)?;
    check_len("MaxPool output", out.len(), geo.nc * geo.out_size)?;
    if let Some(ix) = &indices {
        check_len("MaxPool indices", ix.len(), out.len())?;
    }
    if out.is_empty() {
        return Ok(());
    }
    let wins = axis_windows(&geo, p);
    let in_st = strides_of(&geo.in_sp);
    let work = out.len() * numel(&p.kernel)?;
    let want_indices = indices.is_some();
    for_planes(out, indices, geo.out_size, work, |pi, o, ix| {
        let x = &input[pi * geo.in_size..(pi + 1) * geo.in_size];
        let mut ix = ix;
        if let [wh, ww] = &wins[..] {
            // Without indices and NaN, a maximum over a rectangle is a maximum over its rows of
            // the maxima along each row: two 1-d passes instead of a walk over every window.
            if !want_indices && !x.iter().any(|v| v.is_nan()) {
                max_pool_2d_separable(x, geo.in_sp[1], wh, ww, o);
                return;
            }
            // 2-D: the same window walk without a tap list per output.
            let w = geo.in_sp[1];
            let mut j = 0;
            for th in &wh.taps {
                for tw in &ww.taps {
                    let mut best = None;
                    for &ih in th {
                        for &iw in tw {
                            keep_first_max(&mut best, x, ih * w + iw);
                        }
                    }
                    store_max(best, pi * geo.in_size, &mut o[j], ix.as_deref_mut(), j);
                    j += 1;
                }
            }
            return;
        }
        let mut oidx = vec![0usize; geo.out_sp.len()];
        for j in 0..geo.out_size {
            let taps: Vec<&[usize]> = wins
                .iter()
                .zip(&oidx)
                .map(|(w, &o)| &w.taps[o][..])
                .collect();
            let mut best = None;
            for_window(&taps, &in_st, 0, &mut |off| {
                keep_first_max(&mut best, x, off)
            });
            store_max(best, pi * geo.in_size, &mut o[j], ix.as_deref_mut(), j);
            next_index(&mut oidx, &geo.out_sp);
        }
    });
    Ok(())
}

/// One tap of a MaxPool window walk: `x[off]` replaces the best so far only when it is greater,
/// so the first maximum in walk order wins, a NaN first tap stays, and later NaNs never win.
#[inline(always)]
fn keep_first_max(best: &mut Option<(f32, usize)>, x: &[f32], off: usize) {
    let v = x[off];
    match *best {
        Some((b, _)) if v.partial_cmp(&b) != Some(std::cmp::Ordering::Greater) => {}
        _ => *best = Some((v, off)),
    }
}

/// Stores the result of a window walk as output `j`: the maximum and its index in the whole input
/// (`plane_base + offset`), or `-inf` and -1 for a window with no tap inside the input.
#[inline(always)]
fn store_max(
    best: Option<(f32, usize)>,
    plane_base: usize,
    o: &mut f32,
    ix: Option<&mut [i64]>,
    j: usize,
) {
    let (v, i) = match best {
        Some((v, off)) => (v, (plane_base + off) as i64),
        None => (f32::NEG_INFINITY, -1),
    };
    *o = v;
    if let Some(ix) = ix {
        ix[j] = i;
    }
}

/// 2-D max pooling of one NaN-free plane `x` (row length `w`) as a pass along each row and then
/// one down each column. The same values as the window walk: with no NaN the maximum is
/// associative, and among equal values (`-0.0` and `0.0`) the earliest row, then the earliest
/// column, wins, which is the walk's row-major first maximum.
fn max_pool_2d_separable(x: &[f32], w: usize, wh: &AxisWindows, ww: &AxisWindows, o: &mut [f32]) {
    let h = x.len() / w;
    let ow = ww.taps.len();
    // Row maxima: rowmax[ih * ow + j] = max of row ih over the taps of output column j.
    let mut rowmax = vec![f32::NEG_INFINITY; h * ow];
    for (row, rm) in x.chunks_exact(w).zip(rowmax.chunks_exact_mut(ow)) {
        for (r, tw) in rm.iter_mut().zip(&ww.taps) {
            let mut b = f32::NEG_INFINITY;
            for &iw in tw {
                let v = row[iw];
                if v > b {
                    b = v;
                }
            }
            *r = b;
        }
    }
    for (orow, th) in o.chunks_exact_mut(ow).zip(&wh.taps) {
        orow.fill(f32::NEG_INFINITY);
        for (t, &ih) in th.iter().enumerate() {
            let src = &rowmax[ih * ow..(ih + 1) * ow];
            if t == 0 {
                orow.copy_from_slice(src);
            } else {
                for (d, &v) in orow.iter_mut().zip(src) {
                    if v > *d {
                        *d = v;
                    }
                }
            }
        }
    }
}

/// ONNX AveragePool. The divisor counts the window taps inside the input, or with
/// `count_include_pad` the taps inside the input or its explicit pads (never the extra region
/// `ceil_mode` adds). A window with no counted tap gives NaN (0 / 0).
pub fn average_pool(
    input: &[f32],
    input_shape: &[usize],
    p: &PoolParams,
    count_include_pad: bool,
    out: &mut [f32],
) -> Result<()> {
    let geo = geometry(input_shape, p)?;
    check_len("AveragePool input", input.len(), numel(input_shape)?)?;
    check_len("AveragePool output", out.len(), geo.nc * geo.out_size)?;
    if out.is_empty() {
        return Ok(());
    }
    let wins = axis_windows(&geo, p);
    let in_st = strides_of(&geo.in_sp);
    let work = out.len() * numel(&p.kernel)?;
    for_planes::<()>(out, None, geo.out_size, work, |pi, o, _| {
        let x = &input[pi * geo.in_size..(pi + 1) * geo.in_size];
        if let [wh, ww] = &wins[..] {
            // 2-D: the same sums in the same order without a tap list per output.
            let w = geo.in_sp[1];
            let mut j = 0;
            for (th, &ch) in wh.taps.iter().zip(&wh.padded_count) {
                for (tw, &cw) in ww.taps.iter().zip(&ww.padded_count) {
                    let mut sum = 0f32;
                    for &ih in th {
                        for &iw in tw {
                            sum += x[ih * w + iw];
                        }
                    }
                    let count = if count_include_pad {
                        ch * cw
                    } else {
                        th.len() * tw.len()
                    };
                    o[j] = sum / count as f32;
                    j += 1;
                }
            }
            return;
        }
        let mut oidx = vec![0usize; geo.out_sp.len()];
        for v in o.iter_mut() {
            let taps: Vec<&[usize]> = wins
                .iter()
                .zip(&oidx)
                .map(|(w, &o)| &w.taps[o][..])
                .collect();
            let mut sum = 0f32;
            for_window(&taps, &in_st, 0, &mut |off| sum += x[off]);
            let count: usize = if count_include_pad {
                wins.iter()
                    .zip(&oidx)
                    .map(|(w, &o)| w.padded_count[o])
                    .product()
            } else {
                taps.iter().map(|t| t.len()).product()
            };
            *v = sum / count as f32;
            next_index(&mut oidx, &geo.out_sp);
        }
    });
    Ok(())
}

fn global_geometry(input_shape: &[usize], out_len: usize) -> Result<(usize, usize)> {
    if input_shape.len() < 3 {
        return Err(shape_err!(
            "global pool input must be [N, C, spatial...], got {input_shape:?}"
        ));
    }
    let nc = input_shape[0] * input_shape[1];
    check_len("global pool output", out_len, nc)?;
    Ok((nc, numel(&input_shape[2..])?))
}

/// ONNX GlobalAveragePool: output `[N, C, 1, ..., 1]` (accumulated in f64).
pub fn global_average_pool(input: &[f32], input_shape: &[usize], out: &mut [f32]) -> Result<()> {
    let (_, plane) = global_geometry(input_shape, out.len())?;
    check_len("GlobalAveragePool input", input.len(), numel(input_shape)?)?;
    if plane == 0 {
        out.fill(f32::NAN);
        return Ok(());
    }
    let f = |(o, x): (&mut f32, &[f32])| {
        *o = (x.iter().map(|&v| v as f64).sum::<f64>() / plane as f64) as f32
    };
    if input.len() >= PAR_MIN_FLOPS {
        out.par_iter_mut().zip(input.par_chunks(plane)).for_each(f);
    } else {
        out.iter_mut().zip(input.chunks(plane)).for_each(f);
    }
    Ok(())
}

/// ONNX GlobalMaxPool: output `[N, C, 1, ..., 1]`; NaN propagates like in [`max_pool`] (first wins).
pub fn global_max_pool(input: &[f32], input_shape: &[usize], out: &mut [f32]) -> Result<()> {
    let (_, plane) = global_geometry(input_shape, out.len())?;
    check_len("GlobalMaxPool input", input.len(), numel(input_shape)?)?;
    if plane == 0 {
        out.fill(f32::NEG_INFINITY);
        return Ok(());
    }
    let f = |(o, x): (&mut f32, &[f32])| {
        *o = x[1..].iter().fold(x[0], |b, &v| if v > b { v } else { b });
    };
    if input.len() >= PAR_MIN_FLOPS {
        out.par_iter_mut().zip(input.par_chunks(plane)).for_each(f);
    } else {
        out.iter_mut().zip(input.chunks(plane)).for_each(f);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iota(n: usize, from: f32) -> Vec<f32> {
        (0..n).map(|i| from + i as f32).collect()
    }

    /// The 2-D fast paths (the window walk with indices, the separable pass without) give
    /// bit-identical results (values, indices) to the general N-d walk, reached here through the
    /// same pooling with a leading spatial axis of size 1; with ties, signed zeros and NaNs.
    #[test]
    fn two_d_paths_match_the_general_walk() {
        let mut rng = crate::testutil::Rng::new(11);
        for case in 0..120 {
            let (n, c) = (rng.range(1, 2), rng.range(1, 3));
            let (h, w) = (rng.range(1, 14), rng.range(1, 14));
            let (kh, kw) = (rng.range(1, 6), rng.range(1, 6));
            let pads = vec![
                rng.range(0, kh - 1),
                rng.range(0, kw - 1),
                rng.range(0, kh - 1),
                rng.range(0, kw - 1),
            ];
            let p2 = PoolParams {
                kernel: vec![kh, kw],
                strides: vec![rng.range(1, 2), rng.range(1, 2)],
                dilations: vec![rng.range(1, 2), 1],
                pads: pads.clone(),
                ceil_mode: rng.bool(),
            };
            let p3 = PoolParams {
                kernel: vec![1, kh, kw],
                strides: vec![1, p2.strides[0], p2.strides[1]],
                dilations: vec![1, p2.dilations[0], p2.dilations[1]],
                pads: vec![0, pads[0], pads[1], 0, pads[2], pads[3]],
                ceil_mode: p2.ceil_mode,
            };
            let s2 = [n, c, h, w];
            let s3 = [n, c, 1, h, w];
            let Ok(o2) = pool_output_shape(&s2, &p2) else {
                continue;
            };
            let mut x = rng.vec(n * c * h * w);
            if case % 3 == 1 {
                // Few distinct values: ties everywhere, and zeros of both signs.
                for v in &mut x {
                    *v = (*v * 2.0).round() * 0.5;
                    if *v == 0.0 && rng.bool() {
                        *v = -0.0;
                    }
                }
            }
            if case % 5 == 0 {
                x[0] = f32::NAN;
            }
            if case % 7 == 0 {
                let i = rng.range(0, x.len() - 1);
                x[i] = f32::NAN;
            }
            let len = numel(&o2).unwrap();
            let (mut a, mut b) = (vec![0f32; len], vec![0f32; len]);
            let (mut ia, mut ib) = (vec![0i64; len], vec![0i64; len]);
            max_pool(&x, &s2, &p2, &mut a, Some(&mut ia)).unwrap();
            max_pool(&x, &s3, &p3, &mut b, Some(&mut ib)).unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "max values, case {case} {p2:?}");
            assert_eq!(ia, ib, "max indices, case {case} {p2:?}");
            max_pool(&x, &s2, &p2, &mut a, None).unwrap();
            assert_eq!(
                bits(&a),
                bits(&b),
                "max values without indices, case {case} {p2:?}"
            );
            for cip in [false, true] {
                average_pool(&x, &s2, &p2, cip, &mut a).unwrap();
                average_pool(&x, &s3, &p3, cip, &mut b).unwrap();
                // A window with no counted tap is 0 / 0: a NaN whose sign bit may differ.
                let canon = |v: &[f32]| {
                    v.iter()
                        .map(|f| if f.is_nan() { u32::MAX } else { f.to_bits() })
                        .collect::<Vec<_>>()
                };
                assert_eq!(
                    canon(&a),
                    canon(&b),
                    "average, case {case} {p2:?} cip {cip}"
                );
            }
        }
    }

    fn maxpool(x: &[f32], shape: &[usize], p: &PoolParams) -> (Vec<usize>, Vec<f32>, Vec<i64>) {
        let s = pool_output_shape(shape, p).unwrap();
        let mut o = vec![0.0; numel(&s).unwrap()];
        let mut ix = vec![0; o.len()];
        max_pool(x, shape, p, &mut o, Some(&mut ix)).unwrap();
        (s, o, ix)
    }

    fn avgpool(x: &[f32], shape: &[usize], p: &PoolParams, cip: bool) -> (Vec<usize>, Vec<f32>) {
        let s = pool_output_shape(shape, p).unwrap();
        let mut o = vec![0.0; numel(&s).unwrap()];
        average_pool(x, shape, p, cip, &mut o).unwrap();
        (s, o)
    }

    #[test]
    fn maxpool_2x2_stride_2_with_indices_over_batch_and_channels() {
        let x = iota(2 * 16, 0.0);
        let p = PoolParams {
            strides: vec![2, 2],
            ..PoolParams::new(&[2, 2])
        };
        let (s, o, ix) = maxpool(&x, &[2, 1, 4, 4], &p);
        assert_eq!(s, vec![2, 1, 2, 2]);
        assert_eq!(o, vec![5., 7., 13., 15., 21., 23., 29., 31.]);
        assert_eq!(ix, vec![5, 7, 13, 15, 21, 23, 29, 31]);
    }

    #[test]
    fn maxpool_ceil_mode_onnx_example() {
        // onnx maxpool_2d_ceil: 4x4 of 1..16, kernel 3, stride 2, ceil_mode -> [[11, 12], [15, 16]].
        let p = PoolParams {
            strides: vec![2, 2],
            ceil_mode: true,
            ..PoolParams::new(&[3, 3])
        };
        let (s, o, ix) = maxpool(&iota(16, 1.0), &[1, 1, 4, 4], &p);
        assert_eq!(s, vec![1, 1, 2, 2]);
        assert_eq!(o, vec![11., 12., 15., 16.]);
        assert_eq!(ix, vec![10, 11, 14, 15]);
        // Without ceil_mode only the first window fits.
        let p = PoolParams {
            ceil_mode: false,
            ..p
        };
        assert_eq!(maxpool(&iota(16, 1.0), &[1, 1, 4, 4], &p).1, vec![11.]);
    }

    #[test]
    fn maxpool_pads_dilation_and_ties() {
        // 1-d [3, 1, 3, 2, 5], kernel 2, dilation 2, pads 1/1: windows at -1..: taps (-1,1) (0,2) (1,3) (2,4) (3,5).
        let x = [3., 1., 3., 2., 5.];
        let p = PoolParams {
            dilations: vec![2],
            pads: vec![1, 1],
            ..PoolParams::new(&[2])
        };
        let (s, o, ix) = maxpool(&x, &[1, 1, 5], &p);
        assert_eq!(s, vec![1, 1, 5]);
        assert_eq!(o, vec![1., 3., 2., 5., 2.]);
        assert_eq!(ix, vec![1, 0, 3, 4, 3]);
        // A tie keeps the first index.
        let (_, o, ix) = maxpool(&[4., 4.], &[1, 1, 2], &PoolParams::new(&[2]));
        assert_eq!((o, ix), (vec![4.], vec![0]));
    }

    #[test]
    fn maxpool_3d() {
        let x = iota(27, 0.0);
        let p = PoolParams {
            strides: vec![2, 2, 2],
            pads: vec![0, 0, 0, 1, 1, 1],
            ..PoolParams::new(&[2, 2, 2])
        };
        let (s, o, ix) = maxpool(&x, &[1, 1, 3, 3, 3], &p);
        assert_eq!(s, vec![1, 1, 2, 2, 2]);
        assert_eq!(o, vec![13., 14., 16., 17., 22., 23., 25., 26.]);
        assert_eq!(ix, vec![13, 14, 16, 17, 22, 23, 25, 26]);
    }

    #[test]
    fn average_pool_count_include_pad_and_ceil_mode() {
        let x = [1., 2., 3., 4., 5.];
        let p = PoolParams {
            strides: vec![2],
            ceil_mode: true,
            ..PoolParams::new(&[2])
        };
        // Third window [5, <ceil region>] counts one element either way.
        assert_eq!(
            avgpool(&x, &[1, 1, 5], &p, false),
            (vec![1, 1, 3], vec![1.5, 3.5, 5.])
        );
        assert_eq!(avgpool(&x, &[1, 1, 5], &p, true).1, vec![1.5, 3.5, 5.]);
        // An explicit end pad is counted with count_include_pad.
        let p = PoolParams {
            pads: vec![0, 1],
            ..p
        };
        assert_eq!(avgpool(&x, &[1, 1, 5], &p, true).1, vec![1.5, 3.5, 2.5]);
        assert_eq!(avgpool(&x, &[1, 1, 5], &p, false).1, vec![1.5, 3.5, 5.]);
    }

    #[test]
    fn average_pool_2d_pads() {
        // onnx averagepool_2d_pads_count_include_pad: 5x5 of 1..25, kernel 3, pads 2 -> 7x7.
        let x = iota(25, 1.0);
        let p = PoolParams {
            pads: vec![2, 2, 2, 2],
            ..PoolParams::new(&[3, 3])
        };
        let (s, inc) = avgpool(&x, &[1, 1, 5, 5], &p, true);
        assert_eq!(s, vec![1, 1, 7, 7]);
        assert_eq!(&inc[..4], &[1. / 9., 3. / 9., 6. / 9., 9. / 9.]);
        assert_eq!(
            inc[7 * 3 + 3],
            (7. + 8. + 9. + 12. + 13. + 14. + 17. + 18. + 19.) / 9.
        );
        let (_, exc) = avgpool(&x, &[1, 1, 5, 5], &p, false);
        assert_eq!(&exc[..4], &[1., 1.5, 2., 3.]);
        // Dilation 2 (opset 19), 4x4 of 1..16, kernel 2: taps (0,0),(0,2),(2,0),(2,2).
        let p = PoolParams {
            dilations: vec![2, 2],
            ..PoolParams::new(&[2, 2])
        };
        let (s, o) = avgpool(&iota(16, 1.0), &[1, 1, 4, 4], &p, false);
        assert_eq!(s, vec![1, 1, 2, 2]);
        assert_eq!(o, vec![6., 7., 10., 11.]);
    }

    #[test]
    fn global_pools() {
        let x = [1., 2., 3., 4., -1., -2., -3., f32::NAN];
        let mut o = [0.0; 2];
        global_average_pool(&x[..8], &[1, 2, 2, 2], &mut o).unwrap();
        assert_eq!(o[0], 2.5);
        assert!(o[1].is_nan());
        global_max_pool(&x, &[2, 1, 4], &mut o).unwrap();
        assert_eq!(o, [4., -1.]);
        assert!(global_max_pool(&x, &[2, 1, 4], &mut [0.0; 3]).is_err());
        assert!(global_average_pool(&x, &[8], &mut o).is_err());
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(pool_output_shape(&[1, 1, 2], &PoolParams::new(&[3])).is_err());
        assert!(pool_output_shape(&[1, 1, 4], &PoolParams::new(&[2, 2])).is_err());
        assert!(
            pool_output_shape(
                &[1, 1, 4],
                &PoolParams {
                    strides: vec![0],
                    ..PoolParams::new(&[2])
                }
            )
            .is_err()
        );
        assert!(pool_output_shape(&[1, 1, 4], &PoolParams::new(&[0])).is_err());
        let mut o = vec![0.0; 3];
        assert!(
            max_pool(
                &[0.0; 4],
                &[1, 1, 4],
                &PoolParams::new(&[2]),
                &mut o,
                Some(&mut [0; 2])
            )
            .is_err()
        );
        assert!(
            average_pool(&[0.0; 3], &[1, 1, 4], &PoolParams::new(&[2]), false, &mut o).is_err()
        );
    }
}
