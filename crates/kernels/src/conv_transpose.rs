//! ONNX `ConvTranspose` in f32 for N-d spatial inputs: `col = W^T x X` by sgemm, then col2im
//! scatter-add, plus the spec's pads/output-shape resolution (`output_shape`, `auto_pad`).
//!
//! Layouts: input `[N, C, D1, ..., Dn]`, weight `[C, M / group, k1, ..., kn]`, optional bias `[M]`,
//! output `[N, M, O1, ..., On]` with `Oi = si * (Di - 1) + output_padding_i + (ki - 1) * di + 1 -
//! pad_begin_i - pad_end_i`. Pads are signed here: resolving an explicit `output_shape` can give a
//! negative pad (ONNX's reference then grows the output, like `output_padding`).

use crate::blas::{Mat, par_sgemm, sgemm};
use crate::error::{Result, param_err, shape_err};
use crate::spatial::{AutoPad, effective_kernel};
use crate::util::{
    PAR_MIN_FLOPS, check_len, next_index, numel, strides_of, valid_range, with_scratch,
};
use rayon::prelude::*;

/// ConvTranspose attributes with pads already resolved (see [`conv_transpose_pads`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvTransposeParams {
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// `[x1_begin, ..., xn_begin, x1_end, ..., xn_end]`; may be negative (see module docs).
    pub pads: Vec<isize>,
    pub output_padding: Vec<usize>,
    pub group: usize,
}

impl ConvTransposeParams {
    /// Defaults for `spatial_rank` axes: stride 1, dilation 1, no padding, one group.
    pub fn new(spatial_rank: usize) -> Self {
        ConvTransposeParams {
            strides: vec![1; spatial_rank],
            dilations: vec![1; spatial_rank],
            pads: vec![0; 2 * spatial_rank],
            output_padding: vec![0; spatial_rank],
            group: 1,
        }
    }
}

/// Resolves ConvTranspose pads per the ONNX spec. With `output_shape` (spatial dims only), or with
/// `auto_pad` SAME_* (then the output is `in * stride`), `total = s * (in - 1) + output_padding +
/// (k - 1) * d + 1 - out`; SAME_UPPER puts `floor(total / 2)` at the beginning, anything else puts it at
/// the end (floor division, as ONNX's reference, so a negative total gives a negative pad).
/// Otherwise VALID gives zeros and NOTSET `explicit_pads` (empty = zeros).
pub fn conv_transpose_pads(
    input_spatial: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
    output_padding: &[usize],
    auto_pad: AutoPad,
    output_shape: Option<&[usize]>,
    explicit_pads: &[isize],
) -> Result<Vec<isize>> {
    let nd = input_spatial.len();
    if kernel.len() != nd
        || strides.len() != nd
        || dilations.len() != nd
        || output_padding.len() != nd
    {
        return Err(param_err!(
            "kernel {kernel:?}, strides {strides:?}, dilations {dilations:?}, output_padding {output_padding:?} must each have {nd} entries"
        ));
    }
    let target: Option<Vec<usize>> = match (output_shape, auto_pad) {
        (Some(o), _) => {
            if o.len() != nd {
                return Err(shape_err!(
                    "output_shape {o:?} must list the {nd} spatial dims"
                ));
            }
            Some(o.to_vec())
        }
        (None, AutoPad::SameUpper | AutoPad::SameLower) => Some(
            input_spatial
                .iter()
                .zip(strides)
                .map(|(&i, &s)| i * s)
                .collect(),
        ),
        (None, AutoPad::Valid) => return Ok(vec![0; 2 * nd]),
        (None, AutoPad::NotSet) => {
            return match explicit_pads.len() {
                0 => Ok(vec![0; 2 * nd]),
                l if l == 2 * nd => Ok(explicit_pads.to_vec()),
                _ => Err(param_err!(
                    "pads {explicit_pads:?} must have {} entries",
                    2 * nd
                )),
            };
        }
    };
    let target = target.unwrap_or_default();
    let mut pads = vec![0isize; 2 * nd];
    for i in 0..nd {
        let natural = strides[i] * input_spatial[i].saturating_sub(1)
            + output_padding[i]
            + effective_kernel(kernel[i], dilations[i]);
        let total = natural as isize - target[i] as isize;
        let half = total.div_euclid(2);
        let (b, e) = if auto_pad == AutoPad::SameUpper {
            (half, total - half)
        } else {
            (total - half, half)
        };
        pads[i] = b;
        pads[nd + i] = e;
    }
    Ok(pads)
}

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
        p: &ConvTransposeParams,
    ) -> Result<Self> {
        if input_shape.len() < 3 || weight_shape.len() != input_shape.len() {
            return Err(shape_err!(
                "conv_transpose input [N, C, spatial...] {input_shape:?} and weight {weight_shape:?} must have the same rank >= 3"
            ));
        }
        let nd = input_shape.len() - 2;
        if p.strides.len() != nd
            || p.dilations.len() != nd
            || p.pads.len() != 2 * nd
            || p.output_padding.len() != nd
        {
            return Err(param_err!(
                "conv_transpose parameters must have {nd} entries per axis (pads {}): {p:?}",
                2 * nd
            ));
        }
        if p.strides.contains(&0) || p.dilations.contains(&0) {
            return Err(param_err!("strides and dilations must be positive: {p:?}"));
        }
        let (n, c, g) = (input_shape[0], input_shape[1], p.group);
        if g == 0 || c % g != 0 || weight_shape[0] != c {
            return Err(param_err!(
                "group {g} must divide input channels {c}, which weight {weight_shape:?} must start with"
            ));
        }
        let (mg, m) = (weight_shape[1], weight_shape[1] * g);
        if let Some(b) = bias_len
            && b != m
        {
            return Err(shape_err!(
                "bias has {b} elements, the output has {m} channels"
            ));
        }
        let in_sp = input_shape[2..].to_vec();
        let k_sp = weight_shape[2..].to_vec();
        let mut out_sp = Vec::with_capacity(nd);
        for i in 0..nd {
            let natural = p.strides[i] * in_sp[i].saturating_sub(1)
                + p.output_padding[i]
                + effective_kernel(k_sp[i], p.dilations[i]);
            let o = natural as isize - p.pads[i] - p.pads[nd + i];
            if o < 0 {
                return Err(shape_err!(
                    "conv_transpose output length {o} on axis {i} is negative ({p:?})"
                ));
            }
            out_sp.push(o as usize);
        }
        Ok(Geometry {
            n,
            c,
            m,
            g,
            cg: c / g,
            mg,
            in_size: numel(&in_sp)?,
            k_size: numel(&k_sp)?,
            out_size: numel(&out_sp)?,
            in_sp,
            k_sp,
            out_sp,
        })
    }
}

/// Output shape `[N, M, O1, ..., On]` (see module docs).
pub fn conv_transpose_output_shape(
    input_shape: &[usize],
    weight_shape: &[usize],
    p: &ConvTransposeParams,
) -> Result<Vec<usize>> {
    let geo = Geometry::new(input_shape, weight_shape, None, p)?;
    let mut s = vec![geo.n, geo.m];
    s.extend_from_slice(&geo.out_sp);
    Ok(s)
}

/// ONNX ConvTranspose, writing `out` of shape [`conv_transpose_output_shape`].
pub fn conv_transpose(
    input: &[f32],
    input_shape: &[usize],
    weight: &[f32],
    weight_shape: &[usize],
    bias: Option<&[f32]>,
    p: &ConvTransposeParams,
    out: &mut [f32],
) -> Result<()> {
    let geo = Geometry::new(input_shape, weight_shape, bias.map(<[f32]>::len), p)?;
    check_len("conv_transpose input", input.len(), numel(input_shape)?)?;
    check_len("conv_transpose weight", weight.len(), numel(weight_shape)?)?;
    check_len(
        "conv_transpose output",
        out.len(),
        numel(&[geo.n, geo.m, geo.out_size])?,
    )?;
    if out.is_empty() {
        return Ok(());
    }
    let tasks = geo.n * geo.g;
    let flops = geo.m * geo.cg * geo.k_size * geo.in_size;
    let parallel = tasks > 1 && flops * geo.n >= PAR_MIN_FLOPS;
    let inner_par = tasks < rayon::current_num_threads() && flops >= PAR_MIN_FLOPS;
    let run = |i: usize, o: &mut [f32]| {
        let (ni, gi) = (i / geo.g, i % geo.g);
        let x0 = (ni * geo.c + gi * geo.cg) * geo.in_size;
        let x = &input[x0..x0 + geo.cg * geo.in_size];
        let wlen = geo.cg * geo.mg * geo.k_size;
        let w = &weight[gi * wlen..(gi + 1) * wlen];
        let b = bias.map(|b| &b[gi * geo.mg..(gi + 1) * geo.mg]);
        task(&geo, p, x, w, b, o, inner_par);
    };
    let chunk = geo.mg * geo.out_size;
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

fn task(
    geo: &Geometry,
    p: &ConvTransposeParams,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    par: bool,
) {
    let rows = geo.mg * geo.k_size;
    with_scratch(rows * geo.in_size, |col| {
        // col [mg * K, in_size] = W_g^T [mg * K, cg] x X_g [cg, in_size].
        let a = Mat::transposed(w, rows);
        let b = Mat::row_major(x, geo.in_size);
        if par {
            par_sgemm(rows, geo.cg, geo.in_size, 1.0, a, b, 0.0, col, geo.in_size);
        } else {
            sgemm(rows, geo.cg, geo.in_size, 1.0, a, b, 0.0, col, geo.in_size);
        }
        let plane = |(mi, o): (usize, &mut [f32])| {
            o.fill(bias.map_or(0.0, |b| b[mi]));
            col2im_plane(
                geo,
                p,
                &col[mi * geo.k_size * geo.in_size..(mi + 1) * geo.k_size * geo.in_size],
                o,
            );
        };
        if par {
            out.par_chunks_mut(geo.out_size).enumerate().for_each(plane);
        } else {
            out.chunks_mut(geo.out_size).enumerate().for_each(plane);
        }
    });
}

/// Scatter-adds the `K` rows of one output channel (`col [K, in_size]`) into its output plane.
fn col2im_plane(geo: &Geometry, p: &ConvTransposeParams, col: &[f32], out: &mut [f32]) {
    let nd = geo.in_sp.len();
    let last = nd - 1;
    let out_strides = strides_of(&geo.out_sp);
    let iw = geo.in_sp[last];
    if geo.in_size == 0 {
        return;
    }
    let s = p.strides[last];
    let mut kidx = vec![0usize; nd];
    for row in col.chunks(geo.in_size) {
        let off = (kidx[last] * p.dilations[last]) as isize - p.pads[last];
        let (lo, hi) = valid_range(iw, s, off, geo.out_sp[last]);
        let mut iidx = vec![0usize; last];
        for seg in row.chunks(iw) {
            let mut base = Some(0usize);
            for a in 0..last {
                let o = (iidx[a] * p.strides[a] + kidx[a] * p.dilations[a]) as isize - p.pads[a];
                if o < 0 || o >= geo.out_sp[a] as isize {
                    base = None;
                    break;
                }
                base = base.map(|b| b + o as usize * out_strides[a]);
            }
            if let Some(b) = base
                && lo < hi
            {
                let start = (b as isize + (lo * s) as isize + off) as usize;
                if s == 1 {
                    for (o, &v) in out[start..start + (hi - lo)].iter_mut().zip(&seg[lo..hi]) {
                        *o += v;
                    }
                } else {
                    for (j, &v) in seg[lo..hi].iter().enumerate() {
                        out[start + j * s] += v;
                    }
                }
            }
            next_index(&mut iidx, &geo.in_sp[..last]);
        }
        next_index(&mut kidx, &geo.k_sp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::conv_transpose_reference;
    use crate::testutil::{Rng, assert_close};

    fn run(
        x: &[f32],
        xs: &[usize],
        w: &[f32],
        ws: &[usize],
        b: Option<&[f32]>,
        p: &ConvTransposeParams,
    ) -> (Vec<usize>, Vec<f32>) {
        let shape = conv_transpose_output_shape(xs, ws, p).unwrap();
        let mut out = vec![f32::NAN; numel(&shape).unwrap()];
        conv_transpose(x, xs, w, ws, b, p, &mut out).unwrap();
        (shape, out)
    }

    #[test]
    fn onnx_doc_example() {
        let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let w = vec![1.0; 18];
        let (shape, out) = run(
            &x,
            &[1, 1, 3, 3],
            &w,
            &[1, 2, 3, 3],
            None,
            &ConvTransposeParams::new(2),
        );
        assert_eq!(shape, vec![1, 2, 5, 5]);
        let plane = [
            0., 1., 3., 3., 2., 3., 8., 15., 12., 7., 9., 21., 36., 27., 15., 9., 20., 33., 24.,
            13., 6., 13., 21., 15., 8.,
        ];
        assert_eq!(&out[..25], &plane);
        assert_eq!(&out[25..], &plane);
    }

    #[test]
    fn output_shape_resolution_matches_output_padding() {
        // ONNX's convtranspose_output_shape case: strides [3, 2], output_shape [10, 8] resolves to
        // pads [0, 0, -1, -1], the same result as output_padding [1, 1].
        let pads = conv_transpose_pads(
            &[3, 3],
            &[3, 3],
            &[3, 2],
            &[1, 1],
            &[0, 0],
            AutoPad::NotSet,
            Some(&[10, 8]),
            &[],
        )
        .unwrap();
        assert_eq!(pads, vec![0, 0, -1, -1]);
        let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let w = vec![1.0; 18];
        let a = ConvTransposeParams {
            strides: vec![3, 2],
            pads,
            ..ConvTransposeParams::new(2)
        };
        let b = ConvTransposeParams {
            strides: vec![3, 2],
            output_padding: vec![1, 1],
            ..ConvTransposeParams::new(2)
        };
        let (sa, oa) = run(&x, &[1, 1, 3, 3], &w, &[1, 2, 3, 3], None, &a);
        let (sb, ob) = run(&x, &[1, 1, 3, 3], &w, &[1, 2, 3, 3], None, &b);
        assert_eq!(sa, vec![1, 2, 10, 8]);
        assert_eq!((sa, oa), (sb, ob));
        // SAME_UPPER: output in * stride; total 1 goes to the end.
        let p = conv_transpose_pads(
            &[3, 3],
            &[3, 3],
            &[2, 2],
            &[1, 1],
            &[0, 0],
            AutoPad::SameUpper,
            None,
            &[],
        )
        .unwrap();
        assert_eq!(p, vec![0, 0, 1, 1]);
        let p = conv_transpose_pads(
            &[3, 3],
            &[3, 3],
            &[2, 2],
            &[1, 1],
            &[0, 0],
            AutoPad::SameLower,
            None,
            &[],
        )
        .unwrap();
        assert_eq!(p, vec![1, 1, 0, 0]);
    }

    #[test]
    fn random_shapes_match_reference() {
        let mut rng = Rng::new(7);
        for nd in 1..=3 {
            for _ in 0..100 {
                let g = rng.range(1, 3);
                let (cg, mg) = (rng.range(1, 3), rng.range(1, 3));
                let mut p = ConvTransposeParams::new(nd);
                p.group = g;
                let mut xs = vec![rng.range(1, 2), cg * g];
                let mut ws = vec![cg * g, mg];
                for i in 0..nd {
                    let k = rng.range(1, 3);
                    p.strides[i] = rng.range(1, 3);
                    p.dilations[i] = rng.range(1, 2);
                    p.output_padding[i] = rng.range(0, p.strides[i] - 1);
                    p.pads[i] = rng.range(0, 2) as isize - if rng.range(0, 4) == 0 { 1 } else { 0 };
                    p.pads[nd + i] = rng.range(0, 1) as isize;
                    xs.push(rng.range(1, if nd == 3 { 4 } else { 7 }));
                    ws.push(k);
                }
                let Ok(shape) = conv_transpose_output_shape(&xs, &ws, &p) else {
                    continue;
                };
                let x = rng.vec(numel(&xs).unwrap());
                let w = rng.vec(numel(&ws).unwrap());
                let b = rng.bool().then(|| rng.vec(mg * g));
                let (_, got) = run(&x, &xs, &w, &ws, b.as_deref(), &p);
                let mut want = vec![0.0; numel(&shape).unwrap()];
                conv_transpose_reference(&x, &xs, &w, &ws, b.as_deref(), &p, &mut want).unwrap();
                assert_close(&got, &want, 1e-4, 1e-4, &format!("{xs:?} {ws:?} {p:?}"));
            }
        }
    }

    #[test]
    fn large_single_task_matches_reference() {
        let mut rng = Rng::new(8);
        let (xs, ws) = ([1, 24, 17, 19], [24, 20, 4, 4]);
        let p = ConvTransposeParams {
            strides: vec![2, 2],
            pads: vec![1, 1, 1, 1],
            ..ConvTransposeParams::new(2)
        };
        let x = rng.vec(numel(&xs).unwrap());
        let w = rng.vec(numel(&ws).unwrap());
        let b = rng.vec(20);
        let (shape, got) = run(&x, &xs, &w, &ws, Some(&b), &p);
        let mut want = vec![0.0; numel(&shape).unwrap()];
        conv_transpose_reference(&x, &xs, &w, &ws, Some(&b), &p, &mut want).unwrap();
        assert_close(&got, &want, 1e-4, 1e-4, "large");
    }

    #[test]
    fn bad_parameters_are_errors() {
        let p = ConvTransposeParams::new(2);
        let mut out = vec![0.0; 8];
        assert!(
            conv_transpose(
                &[0.0; 4],
                &[1, 1, 2, 2],
                &[0.0; 2],
                &[2, 1, 1, 1],
                None,
                &p,
                &mut out
            )
            .is_err()
        );
        let neg = ConvTransposeParams {
            pads: vec![3, 0, 3, 0],
            ..ConvTransposeParams::new(2)
        };
        assert!(conv_transpose_output_shape(&[1, 1, 2, 2], &[1, 1, 1, 1], &neg).is_err());
        assert!(
            conv_transpose_pads(
                &[3],
                &[3],
                &[1],
                &[1],
                &[0],
                AutoPad::NotSet,
                Some(&[3, 3]),
                &[]
            )
            .is_err()
        );
    }
}
