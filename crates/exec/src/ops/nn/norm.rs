//! Normalizations in f32 (statistics accumulated in f64): BatchNormalization (inference),
//! InstanceNormalization, LayerNormalization, GroupNormalization (opset 18 per-group and opset 21
//! per-channel scale/bias) and LRN.

use super::{f32_data, f32_tensor, norm_axis, numel, opt, req};
use crate::bail;
use crate::error::OpError;
use crate::ops::OpCtx;
use ndarray::IxDyn;
use qtool_ir::ops;
use qtool_tensor::Tensor;
use rayon::prelude::*;

const DEFAULT_EPS: f32 = 1e-5;

/// Mean and population variance of a slice, in f64.
fn mean_var(v: &[f32]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

/// A per-channel parameter vector of exactly `len` elements.
fn channel_param(t: &Tensor, len: usize, what: &str) -> Result<Vec<f32>, OpError> {
    let d = f32_data(t)?;
    if d.len() != len {
        bail!(
            "{what} has {} elements (shape {:?}), expected {len}",
            d.len(),
            t.shape()
        );
    }
    Ok(d.into_owned())
}

pub(super) fn batch_norm(
    op: &ops::BatchNormalization,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>, OpError> {
    if op.training_mode.unwrap_or(0) != 0 {
        bail!("BatchNormalization with training_mode=1 is not supported (inference only)");
    }
    if cx.opset < 7 && op.is_test == Some(0) && cx.n_outputs > 1 {
        bail!(
            "BatchNormalization in training mode (is_test=0 with statistics outputs) is not supported"
        );
    }
    let x = req(inputs, 0, "X")?;
    let xs = x.shape();
    if xs.len() < 2 {
        bail!("input X must be [N, C, ...], got shape {xs:?}");
    }
    let c = xs[1];
    let inner = numel(&xs[2..])?;
    let eps = op.epsilon.unwrap_or(DEFAULT_EPS) as f64;
    let params: Vec<Vec<f32>> = (1..5)
        .map(|i| {
            f32_data(req(inputs, i, ["scale", "B", "mean", "var"][i - 1])?).map(|d| d.into_owned())
        })
        .collect::<Result<_, _>>()?;
    // spatial=0 (opset < 9) gives parameters per (C, D1, ...) element instead of per channel.
    let per = params[0].len();
    if per != c && per != c * inner {
        bail!(
            "scale has {per} elements; expected {c} (per channel) or {} (per C x spatial element)",
            c * inner
        );
    }
    if params.iter().any(|p| p.len() != per) {
        bail!("scale, B, mean and var must have the same number of elements");
    }
    let (a, b): (Vec<f32>, Vec<f32>) = (0..per)
        .map(|i| {
            let inv = 1.0 / (params[3][i] as f64 + eps).sqrt();
            let a = params[0][i] as f64 * inv;
            (
                a as f32,
                (params[1][i] as f64 - params[2][i] as f64 * a) as f32,
            )
        })
        .unzip();
    let xd = f32_data(x)?;
    let mut out = vec![0f32; xd.len()];
    let plane = inner.max(1);
    for (i, (o, xv)) in out.chunks_mut(plane).zip(xd.chunks(plane)).enumerate() {
        let ch = i % c.max(1);
        if per == c {
            let (av, bv) = (a[ch], b[ch]);
            for (o, &v) in o.iter_mut().zip(xv) {
                *o = v * av + bv;
            }
        } else {
            let base = ch * inner;
            for (j, (o, &v)) in o.iter_mut().zip(xv).enumerate() {
                *o = v * a[base + j] + b[base + j];
            }
        }
    }
    Ok(vec![f32_tensor(xs, out)?])
}

pub(super) fn instance_norm(
    op: &ops::InstanceNormalization,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0, "input")?;
    let xs = x.shape();
    if xs.len() < 3 {
        bail!("input must be [N, C, D1, ...], got shape {xs:?}");
    }
    let c = xs[1];
    let scale = channel_param(req(inputs, 1, "scale")?, c, "scale")?;
    let bias = channel_param(req(inputs, 2, "B")?, c, "B")?;
    let eps = op.epsilon.unwrap_or(DEFAULT_EPS) as f64;
    let inner = numel(&xs[2..])?;
    let xd = f32_data(x)?;
    let mut out = vec![0f32; xd.len()];
    if inner > 0 {
        out.par_chunks_mut(inner)
            .zip(xd.par_chunks(inner))
            .enumerate()
            .for_each(|(i, (o, xv))| {
                let ch = i % c;
                let (mean, var) = mean_var(xv);
                let a = scale[ch] as f64 / (var + eps).sqrt();
                let b = bias[ch] as f64;
                for (o, &v) in o.iter_mut().zip(xv) {
                    *o = ((v as f64 - mean) * a + b) as f32;
                }
            });
    }
    Ok(vec![f32_tensor(xs, out)?])
}

/// `t` broadcast (numpy rules) to `shape`, flattened.
fn broadcast_to(t: &Tensor, shape: &[usize], what: &str) -> Result<Vec<f32>, OpError> {
    let a = t.view::<f32>()?;
    match a.broadcast(IxDyn(shape)) {
        Some(v) => Ok(v.iter().copied().collect()),
        None => bail!(
            "{what} of shape {:?} does not broadcast to {shape:?}",
            t.shape()
        ),
    }
}

pub(super) fn layer_norm(
    op: &ops::LayerNormalization,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0, "X")?;
    let xs = x.shape();
    let axis = norm_axis(op.axis.unwrap_or(-1), xs.len(), "axis")?;
    let eps = op.epsilon.unwrap_or(DEFAULT_EPS) as f64;
    let inner = numel(&xs[axis..])?;
    let outer = numel(&xs[..axis])?;
    let scale = broadcast_to(req(inputs, 1, "Scale")?, &xs[axis..], "Scale")?;
    let bias = opt(inputs, 2)
        .map(|b| broadcast_to(b, &xs[axis..], "B"))
        .transpose()?;
    let xd = f32_data(x)?;
    let mut out = vec![0f32; xd.len()];
    let mut means = vec![0f32; outer];
    let mut inv_stds = vec![0f32; outer];
    if inner > 0 {
        out.par_chunks_mut(inner)
            .zip(xd.par_chunks(inner))
            .zip(means.par_iter_mut().zip(inv_stds.par_iter_mut()))
            .for_each(|((o, xv), (m, is))| {
                let (mean, var) = mean_var(xv);
                let inv = 1.0 / (var + eps).sqrt();
                for (j, (o, &v)) in o.iter_mut().zip(xv).enumerate() {
                    let n = (v as f64 - mean) * inv;
                    let y = n * scale[j] as f64 + bias.as_ref().map_or(0.0, |b| b[j] as f64);
                    *o = y as f32;
                }
                *m = mean as f32;
                *is = inv as f32;
            });
    }
    let mut outs = vec![f32_tensor(xs, out)?];
    if cx.n_outputs > 1 {
        let mut stat_shape = xs[..axis].to_vec();
        stat_shape.resize(xs.len(), 1);
        outs.push(f32_tensor(&stat_shape, means)?);
        if cx.n_outputs > 2 {
            outs.push(f32_tensor(&stat_shape, inv_stds)?);
        }
    }
    Ok(outs)
}

pub(super) fn group_norm(
    op: &ops::GroupNormalization,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0, "X")?;
    let xs = x.shape();
    if xs.len() < 2 {
        bail!("input X must be [N, C, ...], got shape {xs:?}");
    }
    let c = xs[1];
    let g = match op.num_groups {
        Some(g) if g >= 1 && c % g as usize == 0 => g as usize,
        Some(g) => bail!("num_groups {g} must be positive and divide the {c} channels"),
        None => bail!("GroupNormalization needs the num_groups attribute"),
    };
    let scale = f32_data(req(inputs, 1, "scale")?)?.into_owned();
    let bias = f32_data(req(inputs, 2, "bias")?)?.into_owned();
    // Opset 18 has one scale/bias per group, opset 21 one per channel; the parameter length decides
    // (both readings agree when C == num_groups).
    let per_channel = if scale.len() == c && bias.len() == c {
        true
    } else if scale.len() == g && bias.len() == g {
        false
    } else {
        let want = if cx.opset >= 21 { c } else { g };
        bail!(
            "scale and bias must have {want} elements, got {} and {}",
            scale.len(),
            bias.len()
        );
    };
    let eps = op.epsilon.unwrap_or(DEFAULT_EPS) as f64;
    let inner = numel(&xs[2..])?;
    let cg = c / g;
    let chunk = cg * inner;
    let xd = f32_data(x)?;
    let mut out = vec![0f32; xd.len()];
    if chunk > 0 {
        out.par_chunks_mut(chunk)
            .zip(xd.par_chunks(chunk))
            .enumerate()
            .for_each(|(i, (o, xv))| {
                let gi = i % g;
                let (mean, var) = mean_var(xv);
                let inv = 1.0 / (var + eps).sqrt();
                for (j, (o, &v)) in o.iter_mut().zip(xv).enumerate() {
                    let k = if per_channel {
                        gi * cg + j / inner.max(1)
                    } else {
                        gi
                    };
                    *o = ((v as f64 - mean) * inv * scale[k] as f64 + bias[k] as f64) as f32;
                }
            });
    }
    Ok(vec![f32_tensor(xs, out)?])
}

pub(super) fn lrn(op: &ops::Lrn, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0, "X")?;
    let xs = x.shape();
    if xs.len() < 2 {
        bail!("input X must be [N, C, ...], got shape {xs:?}");
    }
    let size = match op.size {
        Some(s) if s >= 1 => s as usize,
        Some(s) => bail!("size {s} must be positive"),
        None => bail!("LRN needs the size attribute"),
    };
    let alpha = op.alpha.unwrap_or(1e-4);
    let beta = op.beta.unwrap_or(0.75);
    let bias = op.bias.unwrap_or(1.0);
    let (n, c) = (xs[0], xs[1]);
    let inner = numel(&xs[2..])?;
    let xd = f32_data(x)?;
    let mut out = vec![0f32; xd.len()];
    let (lo, hi) = ((size - 1) / 2, (size - 1).div_ceil(2));
    for ni in 0..n {
        for ci in 0..c {
            let c0 = ci.saturating_sub(lo);
            let c1 = (ci + hi).min(c - 1);
            for p in 0..inner {
                let mut sq = 0f32;
                for cj in c0..=c1 {
                    let v = xd[(ni * c + cj) * inner + p];
                    sq += v * v;
                }
                let i = (ni * c + ci) * inner + p;
                out[i] = xd[i] / (bias + alpha / size as f32 * sq).powf(beta);
            }
        }
    }
    Ok(vec![f32_tensor(xs, out)?])
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use qtool_ir::ops::{
        BatchNormalization, GroupNormalization, InstanceNormalization, LayerNormalization, Lrn,
    };

    #[test]
    fn batch_norm_inference() {
        let x = t(&[1, 2, 1, 3], &[-1., 0., 1., 2., 3., 4.]);
        let s = t(&[2], &[1.0, 1.5]);
        let b = t(&[2], &[0.0, 1.0]);
        let m = t(&[2], &[0.0, 3.0]);
        let v = t(&[2], &[1.0, 1.5]);
        let out = run(
            BatchNormalization::default(),
            15,
            1,
            &[Some(&x), Some(&s), Some(&b), Some(&m), Some(&v)],
        );
        let f = |x: f32, s: f32, b: f32, m: f32, v: f32| s * (x - m) / (v + 1e-5f32).sqrt() + b;
        let want: Vec<f32> = [-1., 0., 1.]
            .iter()
            .map(|&x| f(x, 1.0, 0.0, 0.0, 1.0))
            .chain([2., 3., 4.].iter().map(|&x| f(x, 1.5, 1.0, 3.0, 1.5)))
            .collect();
        assert_close(&out[0], &[1, 2, 1, 3], &want, 1e-6);
        let train = BatchNormalization {
            training_mode: Some(1),
            ..Default::default()
        };
        assert!(
            run_err(
                train,
                15,
                &[Some(&x), Some(&s), Some(&b), Some(&m), Some(&v)]
            )
            .contains("training_mode")
        );
        // rank 2 input, f64
        let x64 = qtool_tensor::Tensor::from_vec(&[2, 2], vec![1.0f64, 2.0, 3.0, 4.0]).unwrap();
        let p = |v: [f64; 2]| qtool_tensor::Tensor::from_vec(&[2], v.to_vec()).unwrap();
        let out = run(
            BatchNormalization {
                epsilon: Some(0.0),
                ..Default::default()
            },
            9,
            1,
            &[
                Some(&x64),
                Some(&p([2., 1.])),
                Some(&p([1., 0.])),
                Some(&p([1., 2.])),
                Some(&p([4., 1.])),
            ],
        );
        assert_eq!(out[0].dtype(), qtool_tensor::DType::F64);
        assert_close(&out[0], &[2, 2], &[1.0, 0.0, 3.0, 2.0], 1e-6);
    }

    #[test]
    fn instance_norm_per_channel_stats() {
        let x = t(&[1, 2, 4], &[1., 2., 3., 4., 10., 10., 10., 10.]);
        let out = run(
            InstanceNormalization { epsilon: Some(0.0) },
            6,
            1,
            &[
                Some(&x),
                Some(&t(&[2], &[2., 1.])),
                Some(&t(&[2], &[0., 5.])),
            ],
        );
        let sd = 1.25f32.sqrt();
        let want = [
            -1.5 / sd * 2.,
            -0.5 / sd * 2.,
            0.5 / sd * 2.,
            1.5 / sd * 2.,
            f32::NAN,
            f32::NAN,
            f32::NAN,
            f32::NAN,
        ];
        assert_close(&out[0], &[1, 2, 4], &want, 1e-6);
    }

    #[test]
    fn layer_norm_axis_and_stat_outputs() {
        let mut rng = Rng::new(9);
        let x = rng.tensor(&[2, 3, 4]);
        let xv = x.to_f64_vec().unwrap();
        let scale = rng.tensor(&[3, 4]);
        let bias = rng.tensor(&[4]);
        let op = LayerNormalization {
            axis: Some(1),
            ..Default::default()
        };
        let out = run(op, 17, 3, &[Some(&x), Some(&scale), Some(&bias)]);
        let (sv, bv) = (scale.to_f64_vec().unwrap(), bias.to_f64_vec().unwrap());
        let mut want = vec![];
        let (mut means, mut invs) = (vec![], vec![]);
        for i in 0..2 {
            let row = &xv[i * 12..(i + 1) * 12];
            let mean = row.iter().sum::<f64>() / 12.0;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 12.0;
            let inv = 1.0 / (var + 1e-5).sqrt();
            for j in 0..12 {
                want.push(((row[j] - mean) * inv * sv[j] + bv[j % 4]) as f32);
            }
            means.push(mean as f32);
            invs.push(inv as f32);
        }
        assert_close(&out[0], &[2, 3, 4], &want, 1e-5);
        assert_close(&out[1], &[2, 1, 1], &means, 1e-6);
        assert_close(&out[2], &[2, 1, 1], &invs, 1e-5);
        // default axis -1 with only Y requested
        let out = run(
            LayerNormalization::default(),
            17,
            1,
            &[Some(&x), Some(&t(&[4], &[1.0; 4]))],
        );
        assert_eq!(out.len(), 1);
        let row = &xv[..4];
        let mean = row.iter().sum::<f64>() / 4.0;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 4.0;
        let y0 = ((row[0] - mean) / (var + 1e-5).sqrt()) as f32;
        assert!((out[0].to_f64_vec().unwrap()[0] as f32 - y0).abs() < 1e-5);
    }

    #[test]
    fn group_norm_per_group_and_per_channel() {
        // N=1, C=4, 2 spatial; groups of 2 channels.
        let xv = [1., 2., 3., 4., 5., 6., 7., 9.];
        let x = t(&[1, 4, 2], &xv);
        let stats = |v: &[f32]| {
            let m = v.iter().sum::<f32>() / v.len() as f32;
            let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / v.len() as f32;
            (m, 1.0 / (var + 1e-5).sqrt())
        };
        let (m0, i0) = stats(&xv[..4]);
        let (m1, i1) = stats(&xv[4..]);
        let norm: Vec<f32> = xv
            .iter()
            .enumerate()
            .map(|(k, &v)| if k < 4 { (v - m0) * i0 } else { (v - m1) * i1 })
            .collect();
        let op = GroupNormalization {
            num_groups: Some(2),
            ..Default::default()
        };
        // opset 18: scale/bias per group
        let out = run(
            op.clone(),
            18,
            1,
            &[
                Some(&x),
                Some(&t(&[2], &[2., 3.])),
                Some(&t(&[2], &[1., -1.])),
            ],
        );
        let want: Vec<f32> = norm
            .iter()
            .enumerate()
            .map(|(k, v)| if k < 4 { v * 2. + 1. } else { v * 3. - 1. })
            .collect();
        assert_close(&out[0], &[1, 4, 2], &want, 1e-5);
        // opset 21: scale/bias per channel
        let sc = [1., 2., 3., 4.];
        let bi = [0., 1., 2., 3.];
        let out = run(
            op.clone(),
            21,
            1,
            &[Some(&x), Some(&t(&[4], &sc)), Some(&t(&[4], &bi))],
        );
        let want: Vec<f32> = norm
            .iter()
            .enumerate()
            .map(|(k, v)| v * sc[k / 2] + bi[k / 2])
            .collect();
        assert_close(&out[0], &[1, 4, 2], &want, 1e-5);
        assert!(
            run_err(
                op,
                21,
                &[Some(&x), Some(&t(&[3], &[1.; 3])), Some(&t(&[3], &[1.; 3]))]
            )
            .contains("4 elements")
        );
    }

    #[test]
    fn lrn_matches_formula() {
        let mut rng = Rng::new(2);
        let x = rng.tensor(&[1, 5, 2]);
        let xv = x.to_f64_vec().unwrap();
        let op = Lrn {
            size: Some(3),
            alpha: Some(0.1),
            beta: Some(0.5),
            bias: Some(2.0),
        };
        let out = run(op, 13, 1, &[Some(&x)]);
        let mut want = vec![];
        for c in 0..5usize {
            for p in 0..2 {
                let sq: f64 = (c.saturating_sub(1)..=(c + 1).min(4))
                    .map(|k| xv[k * 2 + p].powi(2))
                    .sum();
                want.push((xv[c * 2 + p] / (2.0 + 0.1 / 3.0 * sq).powf(0.5)) as f32);
            }
        }
        assert_close(&out[0], &[1, 5, 2], &want, 1e-5);
    }
}
