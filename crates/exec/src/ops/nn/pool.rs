//! MaxPool (with the optional Indices output in either storage order), AveragePool, GlobalAveragePool
//! and GlobalMaxPool, through the kernels crate's f32 pooling.

use super::{f32_data, f32_tensor, kerr, numel, pads_attr, req, spatial_attr};
use crate::bail;
use crate::error::OpError;
use crate::ops::OpCtx;
use qtool_ir::ops;
use qtool_kernels::{AutoPad, PoolParams};
use qtool_tensor::Tensor;

/// Resolves pooling pads as ONNX Runtime does: SAME_* pad `(ceil(in / s) - 1) * s + k - in` in total
/// (undilated kernel), the odd one at the end for SAME_UPPER and at the beginning for SAME_LOWER.
fn pool_params(
    xs: &[usize],
    kernel_shape: &Option<Vec<i64>>,
    strides: &Option<Vec<i64>>,
    dilations: &Option<Vec<i64>>,
    pads: &Option<Vec<i64>>,
    auto_pad: &Option<String>,
    ceil_mode: Option<i64>,
) -> Result<PoolParams, OpError> {
    if xs.len() < 3 {
        bail!("input X must be [N, C, spatial...], got shape {xs:?}");
    }
    let nd = xs.len() - 2;
    let kernel = match kernel_shape {
        Some(k) if k.len() == nd && k.iter().all(|&v| v >= 1) => {
            k.iter().map(|&v| v as usize).collect::<Vec<_>>()
        }
        Some(k) => bail!("kernel_shape {k:?} must have {nd} positive entries"),
        None => bail!("the kernel_shape attribute is required"),
    };
    let strides = spatial_attr(strides, nd, 1, "strides")?;
    let dilations = spatial_attr(dilations, nd, 1, "dilations")?;
    let mut pads = pads_attr(pads, nd)?;
    match super::auto_pad(auto_pad)? {
        AutoPad::NotSet => {}
        AutoPad::Valid => pads.fill(0),
        mode => {
            for i in 0..nd {
                let target = xs[i + 2].div_ceil(strides[i]);
                let total = ((target as i64 - 1) * strides[i] as i64 + kernel[i] as i64
                    - xs[i + 2] as i64)
                    .max(0) as usize;
                let head = if mode == AutoPad::SameUpper {
                    total / 2
                } else {
                    total.div_ceil(2)
                };
                pads[i] = head;
                pads[nd + i] = total - head;
            }
        }
    }
    Ok(PoolParams {
        kernel,
        strides,
        dilations,
        pads,
        ceil_mode: ceil_mode.unwrap_or(0) != 0,
    })
}

pub(super) fn max_pool(
    op: &ops::MaxPool,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0, "X")?;
    let xs = x.shape();
    let p = pool_params(
        xs,
        &op.kernel_shape,
        &op.strides,
        &op.dilations,
        &op.pads,
        &op.auto_pad,
        op.ceil_mode,
    )?;
    let out_shape = qtool_kernels::pool_output_shape(xs, &p).map_err(kerr)?;
    let n_out = numel(&out_shape)?;
    let mut out = vec![0f32; n_out];
    let xd = f32_data(x)?;
    if cx.n_outputs < 2 {
        qtool_kernels::max_pool(&xd, xs, &p, &mut out, None).map_err(kerr)?;
        return Ok(vec![f32_tensor(&out_shape, out)?]);
    }
    let mut idx = vec![0i64; n_out];
    qtool_kernels::max_pool(&xd, xs, &p, &mut out, Some(&mut idx)).map_err(kerr)?;
    let storage_order = op.storage_order.unwrap_or(0);
    if storage_order == 1 {
        // column-major offsets within each spatial plane
        let sp = &xs[2..];
        let plane = numel(sp)? as i64;
        for v in idx.iter_mut().filter(|v| **v >= 0) {
            let (nc, mut off) = (*v / plane, *v % plane);
            let mut col = 0i64;
            let mut mult = 1i64;
            let mut coords = vec![0i64; sp.len()];
            for a in (0..sp.len()).rev() {
                coords[a] = off % sp[a] as i64;
                off /= sp[a] as i64;
            }
            for a in 0..sp.len() {
                col += coords[a] * mult;
                mult *= sp[a] as i64;
            }
            *v = nc * plane + col;
        }
    } else if storage_order != 0 {
        bail!("storage_order {storage_order} must be 0 or 1");
    }
    Ok(vec![
        f32_tensor(&out_shape, out)?,
        Tensor::from_vec(&out_shape, idx)?,
    ])
}

pub(super) fn average_pool(
    op: &ops::AveragePool,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0, "X")?;
    let xs = x.shape();
    let p = pool_params(
        xs,
        &op.kernel_shape,
        &op.strides,
        &op.dilations,
        &op.pads,
        &op.auto_pad,
        op.ceil_mode,
    )?;
    let out_shape = qtool_kernels::pool_output_shape(xs, &p).map_err(kerr)?;
    let mut out = vec![0f32; numel(&out_shape)?];
    let include_pad = op.count_include_pad.unwrap_or(0) != 0;
    qtool_kernels::average_pool(&f32_data(x)?, xs, &p, include_pad, &mut out).map_err(kerr)?;
    Ok(vec![f32_tensor(&out_shape, out)?])
}

pub(super) fn global_pool(inputs: &[Option<&Tensor>], max: bool) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0, "X")?;
    let xs = x.shape();
    if xs.len() < 2 {
        bail!("input X must be [N, C, ...], got shape {xs:?}");
    }
    if xs.len() == 2 {
        return Ok(vec![x.clone()]);
    }
    let mut out_shape = xs[..2].to_vec();
    out_shape.resize(xs.len(), 1);
    let mut out = vec![0f32; numel(&out_shape)?];
    let xd = f32_data(x)?;
    if max {
        qtool_kernels::global_max_pool(&xd, xs, &mut out).map_err(kerr)?;
    } else {
        qtool_kernels::global_average_pool(&xd, xs, &mut out).map_err(kerr)?;
    }
    Ok(vec![f32_tensor(&out_shape, out)?])
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use qtool_ir::ops::{AveragePool, GlobalAveragePool, GlobalMaxPool, MaxPool};

    fn iota(n: usize) -> Vec<f32> {
        (1..=n).map(|v| v as f32).collect()
    }

    #[test]
    fn max_pool_with_indices_both_storage_orders() {
        // ONNX test maxpool_with_argmax_2d_precomputed_strides: 5x5 iota, kernel 2, stride 2.
        let x = t(&[1, 1, 5, 5], &iota(25));
        let op = MaxPool {
            kernel_shape: Some(vec![2, 2]),
            strides: Some(vec![2, 2]),
            ..Default::default()
        };
        let out = run(op.clone(), 12, 2, &[Some(&x)]);
        assert_close(&out[0], &[1, 1, 2, 2], &[7., 9., 17., 19.], 0.0);
        assert_eq!(out[1].to_i64_vec().unwrap(), vec![6, 8, 16, 18]);
        let op = MaxPool {
            storage_order: Some(1),
            ..op
        };
        let out = run(op, 12, 2, &[Some(&x)]);
        assert_eq!(out[1].to_i64_vec().unwrap(), vec![6, 16, 8, 18]);
    }

    #[test]
    fn max_pool_pads_same_ceil_and_dilation() {
        let x = t(&[1, 1, 5, 5], &iota(25));
        // same_upper, kernel 3, stride 2 -> out 3x3 (pads 1,1)
        let op = MaxPool {
            kernel_shape: Some(vec![3, 3]),
            strides: Some(vec![2, 2]),
            auto_pad: Some("SAME_UPPER".into()),
            ..Default::default()
        };
        let out = run(op, 12, 1, &[Some(&x)]);
        assert_close(
            &out[0],
            &[1, 1, 3, 3],
            &[7., 9., 10., 17., 19., 20., 22., 24., 25.],
            0.0,
        );
        // ONNX maxpool_2d_same_lower: 5x5, kernel 2 -> pads (1, 0)
        let op = MaxPool {
            kernel_shape: Some(vec![2, 2]),
            auto_pad: Some("SAME_LOWER".into()),
            ..Default::default()
        };
        let out = run(op, 12, 1, &[Some(&x)]);
        let v = out[0].to_f64_vec().unwrap();
        assert_eq!(out[0].shape(), &[1, 1, 5, 5]);
        assert_eq!(&v[..6], &[1., 2., 3., 4., 5., 6.]);
        // ceil mode: 4x4 iota, kernel 3 stride 2 -> 2x2
        let x4 = t(&[1, 1, 4, 4], &iota(16));
        let op = MaxPool {
            kernel_shape: Some(vec![3, 3]),
            strides: Some(vec![2, 2]),
            ceil_mode: Some(1),
            ..Default::default()
        };
        let out = run(op, 12, 1, &[Some(&x4)]);
        assert_close(&out[0], &[1, 1, 2, 2], &[11., 12., 15., 16.], 0.0);
        // ceil mode output reduced by one (window starting past the input is dropped)
        let x2 = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let op = MaxPool {
            kernel_shape: Some(vec![1, 1]),
            strides: Some(vec![2, 2]),
            ceil_mode: Some(1),
            ..Default::default()
        };
        let out = run(op, 12, 1, &[Some(&x2)]);
        assert_close(&out[0], &[1, 1, 1, 1], &[1.], 0.0);
        // dilations 2: ONNX maxpool_2d_dilations
        let op = MaxPool {
            kernel_shape: Some(vec![2, 2]),
            dilations: Some(vec![2, 2]),
            ..Default::default()
        };
        let out = run(op, 12, 1, &[Some(&x4)]);
        assert_close(&out[0], &[1, 1, 2, 2], &[11., 12., 15., 16.], 0.0);
        // int8 max pool
        let xi = qtool_tensor::Tensor::from_vec(&[1, 1, 2, 2], vec![-3i8, 7, 5, -1]).unwrap();
        let op = MaxPool {
            kernel_shape: Some(vec![2, 2]),
            ..Default::default()
        };
        let out = run(op, 12, 1, &[Some(&xi)]);
        assert_eq!(out[0].dtype(), qtool_tensor::DType::I8);
        assert_eq!(out[0].to_i64_vec().unwrap(), vec![7]);
        assert!(run_err(MaxPool::default(), 12, &[Some(&x4)]).contains("kernel_shape"));
    }

    #[test]
    fn average_pool_count_include_pad() {
        let x = t(&[1, 1, 3, 3], &iota(9));
        let base = AveragePool {
            kernel_shape: Some(vec![2, 2]),
            pads: Some(vec![1, 1, 1, 1]),
            strides: Some(vec![2, 2]),
            ..Default::default()
        };
        let out = run(base.clone(), 19, 1, &[Some(&x)]);
        // windows: {1}, {2,3}, {4,7}, {5,6,8,9}
        assert_close(&out[0], &[1, 1, 2, 2], &[1., 2.5, 5.5, 7.], 1e-6);
        let out = run(
            AveragePool {
                count_include_pad: Some(1),
                ..base
            },
            19,
            1,
            &[Some(&x)],
        );
        assert_close(&out[0], &[1, 1, 2, 2], &[0.25, 1.25, 2.75, 7.], 1e-6);
        // 1-d same_upper
        let x1 = t(&[1, 1, 4], &[1., 2., 3., 4.]);
        let op = AveragePool {
            kernel_shape: Some(vec![2]),
            auto_pad: Some("SAME_UPPER".into()),
            ..Default::default()
        };
        let out = run(op, 19, 1, &[Some(&x1)]);
        assert_close(&out[0], &[1, 1, 4], &[1.5, 2.5, 3.5, 4.], 1e-6);
    }

    #[test]
    fn global_pools() {
        let x = t(&[1, 2, 2, 2], &[1., 2., 3., 4., -1., -2., -3., -4.]);
        let out = run(GlobalAveragePool::default(), 1, 1, &[Some(&x)]);
        assert_close(&out[0], &[1, 2, 1, 1], &[2.5, -2.5], 1e-6);
        let out = run(GlobalMaxPool::default(), 1, 1, &[Some(&x)]);
        assert_close(&out[0], &[1, 2, 1, 1], &[4., -1.], 0.0);
    }
}
