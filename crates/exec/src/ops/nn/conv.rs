//! Conv (through the kernels crate: im2col + GEMM, direct depthwise; constant weights packed once
//! at executor build, an optional fused activation) and ConvTranspose (the kernels crate's sgemm +
//! col2im), f32.

use super::{auto_pad, f32_data, f32_tensor, kerr, numel, opt, pads_attr, req, spatial_attr};
use crate::bail;
use crate::error::OpError;
use crate::ops::{PrepInput, Prepared};
use qtool_ir::ops;
use qtool_kernels::{Activation, ConvParams, ConvTransposeParams, ConvWeights};
use qtool_tensor::{DType, Tensor};
use std::any::Any;

/// A constant f32 Conv weight packed once.
#[derive(Debug)]
pub(super) struct PreparedConv {
    weights: ConvWeights,
}

impl Prepared for PreparedConv {
    /// The weight (input 1): its shape and data are in the packed form.
    fn replaces_input(&self, index: usize) -> bool {
        index == 1
    }
}

/// Packs a constant f32 weight (input 1); `None` when it is not constant or cannot be packed (the
/// node then reports any problem when it runs).
pub(super) fn prepare(op: &ops::Conv, inputs: &[PrepInput<'_>]) -> Option<Box<dyn Prepared>> {
    let PrepInput::Const(w) = inputs.get(1)? else {
        return None;
    };
    if w.dtype() != DType::F32 || w.rank() < 3 {
        return None;
    }
    let group = group_attr(op.group).ok()?;
    let wd = f32_data(w).ok()?;
    let weights = ConvWeights::new(&wd, w.shape(), group).ok()?;
    Some(Box::new(PreparedConv { weights }))
}

/// The packed weights of `prepared` when they were made from a weight of `w`'s shape.
fn prepared_of<'p>(prepared: Option<&'p dyn Prepared>, w: &Tensor) -> Option<&'p ConvWeights> {
    let p = (prepared? as &dyn Any).downcast_ref::<PreparedConv>()?;
    (p.weights.shape() == w.shape()).then_some(&p.weights)
}

/// Checks an explicit `kernel_shape` attribute against the weight's spatial dims.
fn check_kernel_shape(attr: &Option<Vec<i64>>, from_w: &[usize]) -> Result<(), OpError> {
    if let Some(ks) = attr
        && !ks.is_empty()
        && (ks.len() != from_w.len() || ks.iter().zip(from_w).any(|(&a, &b)| a != b as i64))
    {
        bail!("kernel_shape {ks:?} does not match the weight's spatial dims {from_w:?}");
    }
    Ok(())
}

fn group_attr(g: Option<i64>) -> Result<usize, OpError> {
    match g.unwrap_or(1) {
        g if g >= 1 => Ok(g as usize),
        g => bail!("group {g} must be positive"),
    }
}

pub(super) fn conv(op: &ops::Conv, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
    conv_fused(op, inputs, None, Activation::Identity)
}

/// Conv on f32 inputs with the weights `prepared` packed (if any) and `act` applied to the output.
pub(super) fn conv_fused(
    op: &ops::Conv,
    inputs: &[Option<&Tensor>],
    prepared: Option<&dyn Prepared>,
    act: Activation,
) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0, "X")?;
    // The executor drops a constant weight whose packed form replaces it: W may then be absent.
    let w = opt(inputs, 1);
    let packed = match w {
        Some(w) => prepared_of(prepared, w),
        None => prepared
            .and_then(|p| (p as &dyn Any).downcast_ref::<PreparedConv>())
            .map(|p| &p.weights),
    };
    let b = opt(inputs, 2);
    let xs = x.shape();
    let ws = match (w, packed) {
        (Some(w), _) => w.shape(),
        (None, Some(cw)) => cw.shape(),
        (None, None) => req(inputs, 1, "W")?.shape(),
    };
    if xs.len() < 3 {
        bail!("input X must be [N, C, spatial...], got shape {xs:?}");
    }
    if ws.len() != xs.len() {
        bail!("weight shape {ws:?} must have the rank of input shape {xs:?}");
    }
    let nd = xs.len() - 2;
    let kernel = &ws[2..];
    check_kernel_shape(&op.kernel_shape, kernel)?;
    let strides = spatial_attr(&op.strides, nd, 1, "strides")?;
    let dilations = spatial_attr(&op.dilations, nd, 1, "dilations")?;
    let explicit = pads_attr(&op.pads, nd)?;
    let pads = qtool_kernels::resolve_auto_pad(
        auto_pad(&op.auto_pad)?,
        &xs[2..],
        kernel,
        &strides,
        &dilations,
        &explicit,
    )
    .map_err(kerr)?;
    let p = ConvParams {
        strides,
        dilations,
        pads,
        group: group_attr(op.group)?,
    };
    let out_shape = qtool_kernels::conv_output_shape(xs, ws, &p).map_err(kerr)?;
    let xd = f32_data(x)?;
    let bd = b.map(f32_data).transpose()?;
    if let Some(bd) = &bd
        && bd.len() != ws[0]
    {
        bail!(
            "bias has {} elements, the weight has {} output channels",
            bd.len(),
            ws[0]
        );
    }
    let mut out = vec![0f32; numel(&out_shape)?];
    match packed.filter(|cw| cw.group() == p.group) {
        Some(cw) => qtool_kernels::conv_prepacked(&xd, xs, cw, bd.as_deref(), &p, act, &mut out),
        None => {
            let wd = f32_data(req(inputs, 1, "W")?)?;
            qtool_kernels::conv_with_activation(&xd, xs, &wd, ws, bd.as_deref(), &p, act, &mut out)
        }
    }
    .map_err(kerr)?;
    Ok(vec![f32_tensor(&out_shape, out)?])
}

pub(super) fn conv_transpose(
    op: &ops::ConvTranspose,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0, "X")?;
    let w = req(inputs, 1, "W")?;
    let b = opt(inputs, 2);
    let (xs, ws) = (x.shape(), w.shape());
    if xs.len() < 3 || ws.len() != xs.len() {
        bail!("input {xs:?} and weight {ws:?} must both be [N, C, spatial...] of the same rank");
    }
    let nd = xs.len() - 2;
    let kernel = &ws[2..];
    check_kernel_shape(&op.kernel_shape, kernel)?;
    let group = group_attr(op.group)?;
    let strides = spatial_attr(&op.strides, nd, 1, "strides")?;
    let dilations = spatial_attr(&op.dilations, nd, 1, "dilations")?;
    let explicit: Vec<isize> = pads_attr(&op.pads, nd)?
        .into_iter()
        .map(|p| p as isize)
        .collect();
    let output_padding = match &op.output_padding {
        Some(v) if !v.is_empty() => {
            if v.len() != nd || v.iter().any(|&p| p < 0) {
                bail!("output_padding {v:?} must have {nd} non-negative entries");
            }
            v.iter().map(|&p| p as usize).collect()
        }
        _ => vec![0; nd],
    };
    let output_shape: Option<Vec<usize>> = match &op.output_shape {
        Some(os) if !os.is_empty() => {
            let sp = if os.len() == nd {
                &os[..]
            } else if os.len() == nd + 2 {
                &os[2..]
            } else {
                bail!("output_shape {os:?} must have {nd} (or {}) entries", nd + 2)
            };
            if sp.iter().any(|&d| d <= 0) {
                bail!("output_shape {os:?} must be positive");
            }
            Some(sp.iter().map(|&d| d as usize).collect())
        }
        _ => None,
    };
    let pads = qtool_kernels::conv_transpose_pads(
        &xs[2..],
        kernel,
        &strides,
        &dilations,
        &output_padding,
        auto_pad(&op.auto_pad)?,
        output_shape.as_deref(),
        &explicit,
    )
    .map_err(kerr)?;
    let p = ConvTransposeParams {
        strides,
        dilations,
        pads,
        output_padding,
        group,
    };
    let out_shape = qtool_kernels::conv_transpose_output_shape(xs, ws, &p).map_err(kerr)?;
    let xd = f32_data(x)?;
    let wd = f32_data(w)?;
    let bd = b.map(f32_data).transpose()?;
    let mut out = vec![0f32; numel(&out_shape)?];
    qtool_kernels::conv_transpose(&xd, xs, &wd, ws, bd.as_deref(), &p, &mut out).map_err(kerr)?;
    Ok(vec![f32_tensor(&out_shape, out)?])
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use qtool_ir::ops::{Conv, ConvTranspose};

    fn row_strides(shape: &[usize]) -> Vec<usize> {
        let mut s = vec![1usize; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            s[i] = s[i + 1] * shape[i + 1];
        }
        s
    }

    fn next_index(idx: &mut [usize], shape: &[usize]) -> bool {
        for a in (0..idx.len()).rev() {
            idx[a] += 1;
            if idx[a] < shape[a] {
                return true;
            }
            idx[a] = 0;
        }
        false
    }

    /// Naive N-d convolution straight from the definition.
    fn conv_ref(
        x: &[f32],
        xs: &[usize],
        w: &[f32],
        ws: &[usize],
        b: Option<&[f32]>,
        s: &[usize],
        d: &[usize],
        p: &[usize],
        g: usize,
    ) -> (Vec<usize>, Vec<f32>) {
        let nd = xs.len() - 2;
        let out_sp: Vec<usize> = (0..nd)
            .map(|i| (xs[i + 2] + p[i] + p[nd + i] - ((ws[i + 2] - 1) * d[i] + 1)) / s[i] + 1)
            .collect();
        let (n, c, m) = (xs[0], xs[1], ws[0]);
        let (cg, mg) = (c / g, m / g);
        let mut shape = vec![n, m];
        shape.extend(&out_sp);
        let mut out = vec![0f32; shape.iter().product()];
        let xstr = row_strides(xs);
        let wstr = row_strides(ws);
        let ostr = row_strides(&shape);
        let mut oi = vec![0usize; nd];
        loop {
            for ni in 0..n {
                for mi in 0..m {
                    let gi = mi / mg;
                    let mut acc = b.map_or(0.0, |b| b[mi]) as f64;
                    for ci in 0..cg {
                        let mut ki = vec![0usize; nd];
                        loop {
                            let mut off = Some(ni * xstr[0] + (gi * cg + ci) * xstr[1]);
                            for a in 0..nd {
                                let pos = (oi[a] * s[a] + ki[a] * d[a]) as isize - p[a] as isize;
                                if pos < 0 || pos >= xs[a + 2] as isize {
                                    off = None;
                                    break;
                                }
                                off = off.map(|o| o + pos as usize * xstr[a + 2]);
                            }
                            if let Some(o) = off {
                                let mut woff = mi * wstr[0] + ci * wstr[1];
                                for a in 0..nd {
                                    woff += ki[a] * wstr[a + 2];
                                }
                                acc += (x[o] * w[woff]) as f64;
                            }
                            if !next_index(&mut ki, &ws[2..]) {
                                break;
                            }
                        }
                    }
                    let mut o = ni * ostr[0] + mi * ostr[1];
                    for a in 0..nd {
                        o += oi[a] * ostr[a + 2];
                    }
                    out[o] = acc as f32;
                }
            }
            if !next_index(&mut oi, &out_sp) {
                break;
            }
        }
        (shape, out)
    }

    #[test]
    fn conv_matches_naive_reference_on_random_shapes() {
        let mut rng = Rng::new(7);
        for case in 0..150 {
            let nd = 1 + case % 3;
            let g = if case % 4 == 0 { rng.range(2, 3) } else { 1 };
            let depthwise = case % 5 == 0;
            let cg = if depthwise { 1 } else { rng.range(1, 3) };
            let mg = rng.range(1, 3);
            let mut xs = vec![rng.range(1, 2), cg * g];
            let mut ws = vec![mg * g, cg];
            let (mut s, mut d, mut p) = (vec![], vec![], vec![0; 2 * nd]);
            for i in 0..nd {
                let k = rng.range(1, 3);
                s.push(rng.range(1, 2));
                d.push(rng.range(1, 2));
                p[i] = rng.range(0, 1);
                p[nd + i] = rng.range(0, 2);
                let eff = (k - 1) * d[i] + 1;
                xs.push(rng.range(eff, eff + 5));
                ws.push(k);
            }
            let x = rng.vec(xs.iter().product());
            let w = rng.vec(ws.iter().product());
            let b = rng.vec(ws[0]);
            let use_b = case % 2 == 0;
            let (shape, want) = conv_ref(&x, &xs, &w, &ws, use_b.then_some(&b[..]), &s, &d, &p, g);
            let op = Conv {
                strides: Some(s.iter().map(|&v| v as i64).collect()),
                dilations: Some(d.iter().map(|&v| v as i64).collect()),
                pads: Some(p.iter().map(|&v| v as i64).collect()),
                group: Some(g as i64),
                ..Default::default()
            };
            let (xt, wt, bt) = (t(&xs, &x), t(&ws, &w), t(&[ws[0]], &b));
            let out = run(op, 17, 1, &[Some(&xt), Some(&wt), use_b.then_some(&bt)]);
            assert_close(&out[0], &shape, &want, 1e-4);
        }
    }

    #[test]
    fn conv_auto_pad_same_and_valid() {
        // 1x1x5x5 input 0..25, 3x3 ones kernel, stride 2.
        let x: Vec<f32> = (0..25).map(|v| v as f32).collect();
        let xt = t(&[1, 1, 5, 5], &x);
        let wt = t(&[1, 1, 3, 3], &[1.0; 9]);
        let same = Conv {
            auto_pad: Some("SAME_UPPER".into()),
            strides: Some(vec![2, 2]),
            ..Default::default()
        };
        let out = run(same, 11, 1, &[Some(&xt), Some(&wt)]);
        // total pad 2 per axis -> 1 each side: the ONNX doc example `test_conv_with_strides_padding`
        assert_close(
            &out[0],
            &[1, 1, 3, 3],
            &[12., 27., 24., 63., 108., 81., 72., 117., 84.],
            0.0,
        );
        let valid = Conv {
            auto_pad: Some("VALID".into()),
            strides: Some(vec![2, 2]),
            ..Default::default()
        };
        let out = run(valid, 11, 1, &[Some(&xt), Some(&wt)]);
        assert_close(&out[0], &[1, 1, 2, 2], &[54., 72., 144., 162.], 0.0);
        // SAME_LOWER with an odd total puts the extra pad first: in 4, k 2, s 1 -> pads (1, 0).
        let x4 = t(&[1, 1, 4], &[1., 2., 3., 4.]);
        let w2 = t(&[1, 1, 2], &[1., 10.]);
        let lower = Conv {
            auto_pad: Some("SAME_LOWER".into()),
            ..Default::default()
        };
        let out = run(lower, 11, 1, &[Some(&x4), Some(&w2)]);
        assert_close(&out[0], &[1, 1, 4], &[10., 21., 32., 43.], 0.0);
        let upper = Conv {
            auto_pad: Some("SAME_UPPER".into()),
            ..Default::default()
        };
        let out = run(upper, 11, 1, &[Some(&x4), Some(&w2)]);
        assert_close(&out[0], &[1, 1, 4], &[21., 32., 43., 4.], 0.0);
    }

    #[test]
    fn conv_rejects_bad_inputs() {
        let xt = t(&[1, 2, 3, 3], &[0.0; 18]);
        let wt = t(&[1, 1, 2, 2], &[0.0; 4]);
        assert!(run_err(Conv::default(), 11, &[Some(&xt), Some(&wt)]).contains("input channels"));
        let wt = t(&[1, 2, 2, 2], &[0.0; 8]);
        let op = Conv {
            kernel_shape: Some(vec![3, 3]),
            ..Default::default()
        };
        assert!(run_err(op, 11, &[Some(&xt), Some(&wt)]).contains("kernel_shape"));
    }

    /// Naive transposed convolution: every input element scatters `x * w` into the output.
    fn conv_t_ref(
        x: &[f32],
        xs: &[usize],
        w: &[f32],
        ws: &[usize],
        b: Option<&[f32]>,
        s: &[usize],
        d: &[usize],
        pads: &[usize],
        out_sp: &[usize],
        g: usize,
    ) -> (Vec<usize>, Vec<f32>) {
        let nd = xs.len() - 2;
        let (n, c, mg) = (xs[0], xs[1], ws[1]);
        let cg = c / g;
        let m = mg * g;
        let mut shape = vec![n, m];
        shape.extend(out_sp);
        let ostr = row_strides(&shape);
        let xstr = row_strides(xs);
        let wstr = row_strides(ws);
        let mut out = vec![0f32; shape.iter().product()];
        for ni in 0..n {
            for mi in 0..m {
                for o in 0..ostr[1] {
                    out[ni * ostr[0] + mi * ostr[1] + o] = b.map_or(0.0, |b| b[mi]);
                }
            }
        }
        for ni in 0..n {
            for ci in 0..c {
                let gi = ci / cg;
                let mut ii = vec![0usize; nd];
                loop {
                    let mut xo = ni * xstr[0] + ci * xstr[1];
                    for a in 0..nd {
                        xo += ii[a] * xstr[a + 2];
                    }
                    for mj in 0..mg {
                        let mut ki = vec![0usize; nd];
                        loop {
                            let mut oo = Some(ni * ostr[0] + (gi * mg + mj) * ostr[1]);
                            for a in 0..nd {
                                let pos = (ii[a] * s[a] + ki[a] * d[a]) as isize - pads[a] as isize;
                                if pos < 0 || pos >= out_sp[a] as isize {
                                    oo = None;
                                    break;
                                }
                                oo = oo.map(|v| v + pos as usize * ostr[a + 2]);
                            }
                            if let Some(oo) = oo {
                                let mut wo = ci * wstr[0] + mj * wstr[1];
                                for a in 0..nd {
                                    wo += ki[a] * wstr[a + 2];
                                }
                                out[oo] += x[xo] * w[wo];
                            }
                            if !next_index(&mut ki, &ws[2..]) {
                                break;
                            }
                        }
                    }
                    if !next_index(&mut ii, &xs[2..]) {
                        break;
                    }
                }
            }
        }
        (shape, out)
    }

    #[test]
    fn conv_transpose_matches_naive_reference() {
        let mut rng = Rng::new(11);
        for case in 0..80 {
            let nd = 1 + case % 3;
            let g = if case % 3 == 0 { 2 } else { 1 };
            let cg = rng.range(1, 2);
            let mg = rng.range(1, 3);
            let mut xs = vec![rng.range(1, 2), cg * g];
            let mut ws = vec![cg * g, mg];
            let (mut s, mut d, mut p, mut op_) = (vec![], vec![], vec![0; 2 * nd], vec![]);
            for i in 0..nd {
                xs.push(rng.range(1, 4));
                ws.push(rng.range(1, 3));
                s.push(rng.range(1, 3));
                d.push(rng.range(1, 2));
                p[i] = rng.range(0, 1);
                p[nd + i] = rng.range(0, 1);
                op_.push(rng.range(0, s[i] - 1));
            }
            let out_sp: Vec<isize> = (0..nd)
                .map(|i| {
                    ((xs[i + 2] - 1) * s[i] + op_[i] + (ws[i + 2] - 1) * d[i] + 1) as isize
                        - (p[i] + p[nd + i]) as isize
                })
                .collect();
            if out_sp.iter().any(|&o| o <= 0) {
                continue;
            }
            let out_sp: Vec<usize> = out_sp.into_iter().map(|o| o as usize).collect();
            let x = rng.vec(xs.iter().product());
            let w = rng.vec(ws.iter().product());
            let b = rng.vec(mg * g);
            let (shape, want) = conv_t_ref(&x, &xs, &w, &ws, Some(&b), &s, &d, &p, &out_sp, g);
            let op = ConvTranspose {
                strides: Some(s.iter().map(|&v| v as i64).collect()),
                dilations: Some(d.iter().map(|&v| v as i64).collect()),
                pads: Some(p.iter().map(|&v| v as i64).collect()),
                output_padding: Some(op_.iter().map(|&v| v as i64).collect()),
                group: Some(g as i64),
                ..Default::default()
            };
            let (xt, wt, bt) = (t(&xs, &x), t(&ws, &w), t(&[mg * g], &b));
            let out = run(op, 17, 1, &[Some(&xt), Some(&wt), Some(&bt)]);
            assert_close(&out[0], &shape, &want, 1e-4);
        }
    }

    #[test]
    fn conv_transpose_output_shape_and_auto_pad() {
        // The ONNX doc example: X 1x1x3x3 (0..9), W 1x2x3x3 ones, strides 3x2, output_shape 10x8.
        let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let xt = t(&[1, 1, 3, 3], &x);
        let wt = t(&[1, 2, 3, 3], &[1.0; 18]);
        let op = ConvTranspose {
            strides: Some(vec![3, 2]),
            output_shape: Some(vec![10, 8]),
            ..Default::default()
        };
        let out = run(op, 11, 1, &[Some(&xt), Some(&wt)]);
        assert_eq!(out[0].shape(), &[1, 2, 10, 8]);
        let row0 = &out[0].to_f64_vec().unwrap()[..8];
        assert_eq!(row0, &[0., 0., 1., 1., 3., 2., 2., 0.]);
        // Same through output_padding 1x1 and with the 4-entry output_shape form.
        let op = ConvTranspose {
            strides: Some(vec![3, 2]),
            output_padding: Some(vec![1, 1]),
            ..Default::default()
        };
        let a = run(op, 11, 1, &[Some(&xt), Some(&wt)]);
        let op = ConvTranspose {
            strides: Some(vec![3, 2]),
            output_shape: Some(vec![1, 2, 10, 8]),
            ..Default::default()
        };
        let b = run(op, 11, 1, &[Some(&xt), Some(&wt)]);
        assert_eq!(a[0], b[0]);
        // auto_pad SAME_UPPER, strides 2: out = in * 2 = 6; total pad (3-1)*2 + 3 - 6 = 1 at the end
        // (the ONNX test `convtranspose_autopad_same`); SAME_LOWER puts it first.
        let op = ConvTranspose {
            strides: Some(vec![2, 2]),
            auto_pad: Some("SAME_UPPER".into()),
            ..Default::default()
        };
        let out = run(op, 11, 1, &[Some(&xt), Some(&wt)]);
        assert_eq!(out[0].shape(), &[1, 2, 6, 6]);
        let v = out[0].to_f64_vec().unwrap();
        assert_eq!(&v[..6], &[0., 0., 1., 1., 3., 2.]);
    }
}
