//! Resize (opsets 10 to 19+) and Upsample (opsets 7 and 9).
//!
//! The output shape comes from the kernels crate's `resize_output_shape` (scales or sizes, `axes`,
//! `keep_aspect_ratio_policy`). Nearest mode is an index gather implemented here for every element
//! type, following ONNX Runtime's rules exactly (f32 coordinates, opset-10 / Upsample "simple"
//! rounding, `tf_half_pixel_for_nn`, identity on axes with scale 1, extrapolation under
//! `tf_crop_and_resize`). Linear and cubic modes use the kernels crate's f32 `resize` (f64, f16 and
//! bf16 through f32), `antialias` included (the ONNX reference's filter: edge-clamped taps).

use super::{f32_data, f32_tensor, from_f32, kerr, numel, opt, opt_nonempty, req, to_f32};
use crate::bail;
use crate::error::OpError;
use crate::ops::OpCtx;
use ndarray::{ArrayD, IxDyn};
use qtool_ir::ops;
use qtool_kernels::{
    CoordinateTransform, KeepAspectRatioPolicy, NearestMode, ResizeMode, ResizeParams,
};
use qtool_tensor::{DType, Element, Tensor, bf16, f16};

/// How a fractional source coordinate becomes an index in nearest mode.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Nearest {
    /// Opset 10 Resize and Upsample: truncate when upsampling, ceil when downsampling.
    Simple,
    Mode(NearestMode),
}

/// Everything the op needs after reading attributes and inputs.
struct Plan {
    mode: ResizeMode,
    /// The coordinate transformation mode name (kept as a string: `tf_half_pixel_for_nn` is not a
    /// kernels variant).
    ct: String,
    nearest: Nearest,
    cubic_coeff_a: f32,
    exclude_outside: bool,
    extrapolation_value: f32,
    scales: Vec<f32>,
    roi: Vec<f32>,
    out_shape: Vec<usize>,
    /// Opset 18 `antialias` (the spec applies it to linear and cubic only; nearest ignores it).
    antialias: bool,
}

pub(super) fn resize(
    op: &ops::Resize,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0, "X")?;
    let rank = x.rank();
    let opset = cx.opset;
    let mode: ResizeMode = op
        .mode
        .as_deref()
        .unwrap_or("nearest")
        .parse()
        .map_err(kerr)?;
    let ct = if opset >= 11 {
        op.coordinate_transformation_mode
            .clone()
            .unwrap_or_else(|| "half_pixel".into())
    } else {
        "asymmetric".into()
    };
    let nearest = if opset >= 11 {
        Nearest::Mode(
            op.nearest_mode
                .as_deref()
                .unwrap_or("round_prefer_floor")
                .parse()
                .map_err(kerr)?,
        )
    } else {
        Nearest::Simple
    };
    let (roi_t, scales_t, sizes_t) = if opset >= 11 {
        (
            opt_nonempty(inputs, 1),
            opt_nonempty(inputs, 2),
            opt_nonempty(inputs, 3),
        )
    } else {
        (None, opt(inputs, 1), None)
    };
    let axes = if opset >= 18 {
        op.axes.clone().filter(|a| !a.is_empty())
    } else {
        None
    };
    let policy: KeepAspectRatioPolicy = if opset >= 18 {
        op.keep_aspect_ratio_policy
            .as_deref()
            .unwrap_or("stretch")
            .parse()
            .map_err(kerr)?
    } else {
        KeepAspectRatioPolicy::Stretch
    };
    let scales: Option<Vec<f32>> = scales_t.map(|s| {
        s.to_f64_vec()
            .unwrap_or_default()
            .into_iter()
            .map(|v| v as f32)
            .collect()
    });
    let sizes: Option<Vec<i64>> = match sizes_t {
        Some(s) => match s.to_i64_vec() {
            Some(v) => Some(v),
            None => bail!("sizes must be an integer tensor, got {}", s.dtype()),
        },
        None => None,
    };
    if scales.is_some() && sizes.is_some() {
        bail!("only one of scales and sizes may be given");
    }
    if scales.is_none() && sizes.is_none() {
        bail!("one of scales and sizes must be given");
    }
    if axes.is_none() {
        let n = scales
            .as_ref()
            .map_or_else(|| sizes.as_ref().map_or(0, Vec::len), Vec::len);
        if n != rank {
            bail!("scales/sizes have {n} entries, the input has rank {rank}");
        }
    }
    let shape = qtool_kernels::resize_output_shape(
        x.shape(),
        scales.as_deref(),
        sizes.as_deref(),
        axes.as_deref(),
        policy,
    )
    .map_err(kerr)?;
    let mut roi = Vec::new();
    if ct == "tf_crop_and_resize"
        && let Some(r) = roi_t
    {
        let r: Vec<f32> = r
            .to_f64_vec()
            .unwrap_or_default()
            .into_iter()
            .map(|v| v as f32)
            .collect();
        match &axes {
            Some(ax) if r.len() == 2 * ax.len() => {
                roi = [vec![0.0; rank], vec![1.0; rank]].concat();
                for (i, &a) in ax.iter().enumerate() {
                    let a = super::norm_axis(a, rank, "axes")?;
                    roi[a] = r[i];
                    roi[rank + a] = r[ax.len() + i];
                }
            }
            _ if r.len() == 2 * rank => roi = r,
            _ => bail!("roi has {} entries, expected {}", r.len(), 2 * rank),
        }
    }
    let plan = Plan {
        mode,
        ct,
        nearest,
        cubic_coeff_a: op.cubic_coeff_a.unwrap_or(-0.75),
        exclude_outside: op.exclude_outside.unwrap_or(0) != 0,
        extrapolation_value: op.extrapolation_value.unwrap_or(0.0),
        scales: shape.scales,
        roi,
        out_shape: shape.output_shape,
        antialias: opset >= 18 && op.antialias.unwrap_or(0) != 0,
    };
    run(x, &plan)
}

pub(super) fn upsample(
    op: &ops::Upsample,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0, "X")?;
    // opset 7 has a scales attribute, opset 9 a scales input
    let scales: Vec<f32> = match (opt(inputs, 1), &op.scales) {
        (Some(s), _) => s
            .to_f64_vec()
            .unwrap_or_default()
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        (None, Some(s)) => s.clone(),
        (None, None) => {
            bail!("Upsample needs scales (an attribute before opset 9, an input from opset 9)")
        }
    };
    if scales.len() != x.rank() {
        bail!(
            "scales {scales:?} must have one entry per input dim ({})",
            x.rank()
        );
    }
    if scales.iter().any(|&s| s.is_nan() || s < 1.0) {
        bail!("Upsample scales {scales:?} must be >= 1");
    }
    let mode = match op.mode.as_deref().unwrap_or("nearest") {
        "nearest" => ResizeMode::Nearest,
        "linear" | "bilinear" => ResizeMode::Linear,
        m => bail!("unknown Upsample mode {m:?}"),
    };
    let shape = qtool_kernels::resize_output_shape(
        x.shape(),
        Some(&scales),
        None,
        None,
        KeepAspectRatioPolicy::Stretch,
    )
    .map_err(kerr)?;
    let plan = Plan {
        mode,
        ct: "asymmetric".into(),
        nearest: Nearest::Simple,
        cubic_coeff_a: -0.75,
        exclude_outside: false,
        extrapolation_value: 0.0,
        scales: shape.scales,
        roi: Vec::new(),
        out_shape: shape.output_shape,
        antialias: false,
    };
    run(x, &plan)
}

fn run(x: &Tensor, plan: &Plan) -> Result<Vec<Tensor>, OpError> {
    if plan.out_shape == x.shape() {
        // ONNX Runtime copies the input when no dim changes
        return Ok(vec![x.clone()]);
    }
    if plan.out_shape.contains(&0) {
        return Ok(vec![Tensor::zeros(x.dtype(), &plan.out_shape)?]);
    }
    if x.is_empty() {
        bail!("cannot resize an empty input to shape {:?}", plan.out_shape);
    }
    match plan.mode {
        ResizeMode::Nearest => Ok(vec![nearest(x, plan)?]),
        _ => {
            let ct: CoordinateTransform = match plan.ct.parse() {
                Ok(c) => c,
                Err(_) if plan.ct == "tf_half_pixel_for_nn" => bail!(
                    "coordinate_transformation_mode tf_half_pixel_for_nn is only supported with mode nearest"
                ),
                Err(e) => return Err(kerr(e)),
            };
            let p = ResizeParams {
                mode: plan.mode,
                coordinate_transform: ct,
                nearest_mode: NearestMode::RoundPreferFloor,
                cubic_coeff_a: plan.cubic_coeff_a,
                exclude_outside: plan.exclude_outside,
                extrapolation_value: plan.extrapolation_value,
                scales: plan.scales.clone(),
                roi: plan.roi.clone(),
                antialias: plan.antialias,
            };
            let d = x.dtype();
            let x32 = match d {
                DType::F32 => None,
                DType::F64 | DType::F16 | DType::BF16 => Some(to_f32(x)?),
                _ => bail!(
                    "Resize mode {:?} does not support element type {d}",
                    plan.mode
                ),
            };
            let xin = x32.as_ref().unwrap_or(x);
            let mut out = vec![0f32; numel(&plan.out_shape)?];
            qtool_kernels::resize(&f32_data(xin)?, x.shape(), &p, &plan.out_shape, &mut out)
                .map_err(kerr)?;
            let t = f32_tensor(&plan.out_shape, out)?;
            Ok(vec![if d == DType::F32 { t } else { from_f32(t, d)? }])
        }
    }
}

/// The source coordinate of output index `o` along one axis, in f32 as ONNX Runtime computes it.
fn original_coordinate(
    ct: &str,
    o: usize,
    scale: f32,
    len_in: usize,
    len_out: usize,
    roi: (f32, f32),
) -> Result<f32, OpError> {
    let (x, li, lo) = (o as f32, len_in as f32, len_out as f32);
    Ok(match ct {
        "half_pixel" => ((x + 0.5) / scale) - 0.5,
        "asymmetric" => x / scale,
        "pytorch_half_pixel" => {
            if lo > 1.0 {
                (x + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        "tf_half_pixel_for_nn" => (x + 0.5) / scale,
        "align_corners" => {
            if lo == 1.0 {
                0.0
            } else {
                x * (li - 1.0) / (lo - 1.0)
            }
        }
        "tf_crop_and_resize" => {
            let (s, e) = roi;
            if lo > 1.0 {
                s * (li - 1.0) + (x * (e - s) * (li - 1.0)) / (lo - 1.0)
            } else {
                (0.5 * (s as f64 + e as f64) * (li as f64 - 1.0)) as f32
            }
        }
        "half_pixel_symmetric" => {
            let output_width = scale * li;
            let adjustment = lo / output_width;
            let center = li / 2.0;
            let offset = center * (1.0 - adjustment);
            (offset as f64 + (x as f64 + 0.5) / scale as f64 - 0.5) as f32
        }
        other => bail!("unknown coordinate_transformation_mode {other:?}"),
    })
}

fn nearest_index(x: f32, rule: Nearest, downsampling: bool) -> i64 {
    match rule {
        Nearest::Simple => {
            if downsampling {
                x.ceil() as i64
            } else {
                x as i64
            }
        }
        Nearest::Mode(NearestMode::RoundPreferFloor) => {
            if x == (x as i64) as f32 + 0.5 {
                x.floor() as i64
            } else {
                x.round() as i64
            }
        }
        Nearest::Mode(NearestMode::RoundPreferCeil) => x.round() as i64,
        Nearest::Mode(NearestMode::Floor) => x.floor() as i64,
        Nearest::Mode(NearestMode::Ceil) => x.ceil() as i64,
    }
}

/// For each axis and output index: the source index, or -1 for the extrapolation value.
fn nearest_maps(in_shape: &[usize], plan: &Plan) -> Result<Vec<Vec<i64>>, OpError> {
    let rank = in_shape.len();
    let extrapolate = plan.ct == "tf_crop_and_resize";
    (0..rank)
        .map(|a| {
            let (li, lo, s) = (in_shape[a], plan.out_shape[a], plan.scales[a]);
            if s == 1.0 && rank > 1 && li == lo {
                return Ok((0..lo as i64).collect());
            }
            let roi = if plan.roi.is_empty() {
                (0.0, 1.0)
            } else {
                (plan.roi[a], plan.roi[rank + a])
            };
            (0..lo)
                .map(|o| {
                    let x = original_coordinate(&plan.ct, o, s, li, lo, roi)?;
                    if extrapolate && (x < 0.0 || x > (li as f32 - 1.0)) {
                        return Ok(-1);
                    }
                    Ok(nearest_index(x, plan.nearest, s < 1.0).clamp(0, li as i64 - 1))
                })
                .collect()
        })
        .collect()
}

fn gather<T: Element>(x: &ArrayD<T>, maps: &[Vec<i64>], out_shape: &[usize], fill: T) -> ArrayD<T> {
    let xs = x.as_standard_layout();
    let src = xs.as_slice().expect("standard layout");
    let rank = out_shape.len();
    let mut strides = vec![1i64; rank];
    for a in (0..rank.saturating_sub(1)).rev() {
        strides[a] = strides[a + 1] * x.shape()[a + 1] as i64;
    }
    // per-axis offsets (negative marks extrapolation)
    let offs: Vec<Vec<i64>> = maps
        .iter()
        .zip(&strides)
        .map(|(m, &s)| {
            m.iter()
                .map(|&i| if i < 0 { i64::MIN / 4 } else { i * s })
                .collect()
        })
        .collect();
    let n: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(n);
    if rank > 0 {
        // Row by row: the outer axes give a base offset, the last axis a table of offsets.
        let inner = out_shape[rank - 1];
        let last = &offs[rank - 1];
        let outer = &out_shape[..rank - 1];
        let mut idx = vec![0usize; rank - 1];
        for _ in 0..n.checked_div(inner).unwrap_or(0) {
            let base: i64 = (0..rank - 1).map(|a| offs[a][idx[a]]).sum();
            if base < 0 {
                out.extend(std::iter::repeat_n(fill.clone(), inner));
            } else {
                out.extend(last.iter().map(|&k| {
                    let off = base + k;
                    if off < 0 {
                        fill.clone()
                    } else {
                        src[off as usize].clone()
                    }
                }));
            }
            for a in (0..rank - 1).rev() {
                idx[a] += 1;
                if idx[a] < outer[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
        return ArrayD::from_shape_vec(IxDyn(out_shape), out).expect("sizes");
    }
    let mut idx = vec![0usize; rank];
    for _ in 0..n {
        let off: i64 = (0..rank).map(|a| offs[a][idx[a]]).sum();
        out.push(if off < 0 {
            fill.clone()
        } else {
            src[off as usize].clone()
        });
        for a in (0..rank).rev() {
            idx[a] += 1;
            if idx[a] < out_shape[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    ArrayD::from_shape_vec(IxDyn(out_shape), out).expect("sizes")
}

fn nearest(x: &Tensor, plan: &Plan) -> Result<Tensor, OpError> {
    let maps = nearest_maps(x.shape(), plan)?;
    let v = plan.extrapolation_value;
    let os = &plan.out_shape;
    Ok(match x {
        Tensor::F32(a) => Tensor::F32(gather(a, &maps, os, v)),
        Tensor::F64(a) => Tensor::F64(gather(a, &maps, os, v as f64)),
        Tensor::F16(a) => Tensor::F16(gather(a, &maps, os, f16::from_f32(v))),
        Tensor::BF16(a) => Tensor::BF16(gather(a, &maps, os, bf16::from_f32(v))),
        Tensor::I8(a) => Tensor::I8(gather(a, &maps, os, v as i8)),
        Tensor::U8(a) => Tensor::U8(gather(a, &maps, os, v as u8)),
        Tensor::I16(a) => Tensor::I16(gather(a, &maps, os, v as i16)),
        Tensor::U16(a) => Tensor::U16(gather(a, &maps, os, v as u16)),
        Tensor::I32(a) => Tensor::I32(gather(a, &maps, os, v as i32)),
        Tensor::U32(a) => Tensor::U32(gather(a, &maps, os, v as u32)),
        Tensor::I64(a) => Tensor::I64(gather(a, &maps, os, v as i64)),
        Tensor::U64(a) => Tensor::U64(gather(a, &maps, os, v as u64)),
        Tensor::Bool(a) => Tensor::Bool(gather(a, &maps, os, v != 0.0)),
        Tensor::String(a) => Tensor::String(gather(a, &maps, os, String::new())),
        Tensor::Packed(p) => bail!("Resize does not support element type {}", p.dtype),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use qtool_ir::ops::{Resize, Upsample};
    use qtool_tensor::Tensor;

    fn iota(n: usize) -> Vec<f32> {
        (1..=n).map(|v| v as f32).collect()
    }

    fn sc(v: &[f32]) -> Tensor {
        t(&[v.len()], v)
    }

    fn sizes(v: &[i64]) -> Tensor {
        Tensor::from_vec(&[v.len()], v.to_vec()).unwrap()
    }

    #[test]
    fn nearest_upsample_scales_and_simple_mode() {
        let x = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let want = [
            1., 1., 1., 2., 2., 2., 1., 1., 1., 2., 2., 2., 3., 3., 3., 4., 4., 4., 3., 3., 3., 4.,
            4., 4.,
        ];
        // opset 19 defaults (half_pixel, round_prefer_floor)
        let out = run(
            Resize {
                mode: Some("nearest".into()),
                ..Default::default()
            },
            19,
            1,
            &[Some(&x), None, Some(&sc(&[1., 1., 2., 3.]))],
        );
        assert_close(&out[0], &[1, 1, 4, 6], &want, 0.0);
        // Upsample opset 9 and 7
        let out = run(
            Upsample::default(),
            9,
            1,
            &[Some(&x), Some(&sc(&[1., 1., 2., 3.]))],
        );
        assert_close(&out[0], &[1, 1, 4, 6], &want, 0.0);
        let out = run(
            Upsample {
                scales: Some(vec![1., 1., 2., 3.]),
                mode: None,
            },
            7,
            1,
            &[Some(&x)],
        );
        assert_close(&out[0], &[1, 1, 4, 6], &want, 0.0);
        // opset 10 downsampling uses ceil: test_resize_downsample_nearest (opset 10)
        let x8 = t(&[1, 1, 2, 4], &iota(8));
        let out = run(
            Resize::default(),
            10,
            1,
            &[Some(&x8), Some(&sc(&[1., 1., 0.6, 0.6]))],
        );
        assert_close(&out[0], &[1, 1, 1, 2], &[1., 3.], 0.0);
        // integers go through the same gather
        let xi = Tensor::from_vec(&[1, 2], vec![5i64, 7]).unwrap();
        let out = run(
            Resize::default(),
            13,
            1,
            &[Some(&xi), None, Some(&sc(&[1., 2.]))],
        );
        assert_eq!(out[0].to_i64_vec().unwrap(), vec![5, 5, 7, 7]);
    }

    #[test]
    fn nearest_modes_and_transforms() {
        // ONNX test resize_upsample_sizes_nearest_ceil_half_pixel: 4x4 -> 8x8, row 0 maps to source
        // rows via ceil((o + 0.5) / 2 - 0.5).
        let x = t(&[1, 1, 4, 4], &iota(16));
        let op = Resize {
            coordinate_transformation_mode: Some("half_pixel".into()),
            nearest_mode: Some("ceil".into()),
            ..Default::default()
        };
        let out = run(
            op,
            13,
            1,
            &[Some(&x), None, None, Some(&sizes(&[1, 1, 8, 8]))],
        );
        let v = out[0].to_f64_vec().unwrap();
        assert_eq!(&v[..8], &[1., 2., 2., 3., 3., 4., 4., 4.]);
        // floor + align_corners: test_resize_upsample_sizes_nearest_floor_align_corners
        let op = Resize {
            coordinate_transformation_mode: Some("align_corners".into()),
            nearest_mode: Some("floor".into()),
            ..Default::default()
        };
        let out = run(
            op,
            13,
            1,
            &[Some(&x), None, None, Some(&sizes(&[1, 1, 8, 8]))],
        );
        let v = out[0].to_f64_vec().unwrap();
        assert_eq!(&v[..8], &[1., 1., 1., 2., 2., 3., 3., 4.]);
        // round_prefer_ceil + asymmetric: test_resize_upsample_sizes_nearest_round_prefer_ceil_asymmetric
        let op = Resize {
            coordinate_transformation_mode: Some("asymmetric".into()),
            nearest_mode: Some("round_prefer_ceil".into()),
            ..Default::default()
        };
        let out = run(
            op,
            13,
            1,
            &[Some(&x), None, None, Some(&sizes(&[1, 1, 8, 8]))],
        );
        let v = out[0].to_f64_vec().unwrap();
        assert_eq!(&v[..8], &[1., 2., 2., 3., 3., 4., 4., 4.]);
        // downsample sizes, half_pixel round_prefer_floor: 2x4 -> 1x3 gives [[1, 2, 4]]
        let x8 = t(&[1, 1, 2, 4], &iota(8));
        let out = run(
            Resize::default(),
            13,
            1,
            &[Some(&x8), None, None, Some(&sizes(&[1, 1, 1, 3]))],
        );
        assert_close(&out[0], &[1, 1, 1, 3], &[1., 2., 4.], 0.0);
        // tf_half_pixel_for_nn (opset 11): 4x4 -> 3x2 rows (o+0.5)/0.75 -> 0.67, 2, 3.33 -> 1, 2, 3
        let op = Resize {
            coordinate_transformation_mode: Some("tf_half_pixel_for_nn".into()),
            ..Default::default()
        };
        let out = run(
            op,
            11,
            1,
            &[
                Some(&x),
                Some(&sc(&[])),
                Some(&sc(&[])),
                Some(&sizes(&[1, 1, 3, 2])),
            ],
        );
        assert_close(&out[0], &[1, 1, 3, 2], &[6., 8., 10., 12., 14., 16.], 0.0);
    }

    #[test]
    fn linear_and_cubic_against_formulas() {
        // test_resize_upsample_scales_linear (half_pixel): 2x2 -> 4x4
        let x = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let op = Resize {
            mode: Some("linear".into()),
            ..Default::default()
        };
        let out = run(op, 13, 1, &[Some(&x), None, Some(&sc(&[1., 1., 2., 2.]))]);
        let want = [
            1., 1.25, 1.75, 2., 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3., 3.25, 3.75, 4.,
        ];
        assert_close(&out[0], &[1, 1, 4, 4], &want, 1e-6);
        // align_corners: 2x2 -> 4x4
        let op = Resize {
            mode: Some("linear".into()),
            coordinate_transformation_mode: Some("align_corners".into()),
            ..Default::default()
        };
        let out = run(op, 13, 1, &[Some(&x), None, Some(&sc(&[1., 1., 2., 2.]))]);
        let v = out[0].to_f64_vec().unwrap();
        let third = 1.0 + 1.0 / 3.0;
        assert!(
            (v[1] - third).abs() < 1e-6 && (v[4] - (1.0 + 2.0 / 3.0)).abs() < 1e-6,
            "{v:?}"
        );
        // Upsample linear (asymmetric): 1-d row 2 -> 4: [1, 1.5, 2, 2]
        let x1 = t(&[1, 2], &[1., 2.]);
        let out = run(
            Upsample {
                mode: Some("linear".into()),
                scales: None,
            },
            9,
            1,
            &[Some(&x1), Some(&sc(&[1., 2.]))],
        );
        assert_close(&out[0], &[1, 4], &[1., 1.5, 2., 2.], 1e-6);
        // cubic, asymmetric, 1-d 4 -> 8 at output 1 (x = 0.5): coefficients for s = 0.5
        let x4 = t(&[1, 4], &[1., 2., 4., 8.]);
        let op = Resize {
            mode: Some("cubic".into()),
            coordinate_transformation_mode: Some("asymmetric".into()),
            ..Default::default()
        };
        let out = run(op, 13, 1, &[Some(&x4), None, Some(&sc(&[1., 2.]))]);
        let a = -0.75f64;
        let c = |s: f64| -> [f64; 4] {
            let c1 = |x: f64| ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
            let c2 = |x: f64| ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
            [c2(s + 1.0), c1(s), c1(1.0 - s), c2(2.0 - s)]
        };
        let w = c(0.5);
        let want1 = w[0] * 1.0 + w[1] * 1.0 + w[2] * 2.0 + w[3] * 4.0; // index -1 clamps to 0
        let v = out[0].to_f64_vec().unwrap();
        assert_eq!(out[0].shape(), &[1, 8]);
        assert!(
            (v[0] - 1.0).abs() < 1e-6 && (v[1] - want1).abs() < 1e-5,
            "{v:?} {want1}"
        );
        // tf_crop_and_resize with extrapolation
        let x = t(&[1, 1, 4, 4], &iota(16));
        let roi = t(&[8], &[0., 0., 0.4, 0.6, 1., 1., 1.2, 1.7]);
        let op = Resize {
            mode: Some("linear".into()),
            coordinate_transformation_mode: Some("tf_crop_and_resize".into()),
            extrapolation_value: Some(10.0),
            ..Default::default()
        };
        let out = run(
            op,
            13,
            1,
            &[Some(&x), Some(&roi), None, Some(&sizes(&[1, 1, 3, 3]))],
        );
        let v = out[0].to_f64_vec().unwrap();
        // row 0: y = 0.4 * 3 = 1.2; x = 0.6 * 3 = 1.8, 1.8 + 1.65 = 3.45 (> 3: extrapolated)
        let y0 = 1.2f64;
        let val = |y: f64, xx: f64| 1.0 + y * 4.0 + xx;
        assert!((v[0] - val(y0, 1.8)).abs() < 1e-4 && v[2] == 10.0, "{v:?}");
    }

    #[test]
    fn sizes_axes_and_keep_aspect_ratio() {
        // test_resize_upsample_sizes_nearest_not_larger: 2x2, sizes [7, 8] on axes [2, 3] -> 7x7
        let x = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let op = Resize {
            axes: Some(vec![2, 3]),
            keep_aspect_ratio_policy: Some("not_larger".into()),
            ..Default::default()
        };
        let out = run(op, 18, 1, &[Some(&x), None, None, Some(&sizes(&[7, 8]))]);
        assert_eq!(out[0].shape(), &[1, 1, 7, 7]);
        let op = Resize {
            axes: Some(vec![2, 3]),
            keep_aspect_ratio_policy: Some("not_smaller".into()),
            ..Default::default()
        };
        let out = run(op, 18, 1, &[Some(&x), None, None, Some(&sizes(&[7, 8]))]);
        assert_eq!(out[0].shape(), &[1, 1, 8, 8]);
        // scales with axes
        let op = Resize {
            axes: Some(vec![3]),
            ..Default::default()
        };
        let out = run(op, 18, 1, &[Some(&x), None, Some(&sc(&[2.]))]);
        assert_close(
            &out[0],
            &[1, 1, 2, 4],
            &[1., 1., 2., 2., 3., 3., 4., 4.],
            0.0,
        );
        // identity resize copies; double scales/sizes are errors
        let out = run(
            Resize::default(),
            13,
            1,
            &[Some(&x), None, Some(&sc(&[1., 1., 1., 1.]))],
        );
        assert_eq!(out[0], x);
        assert!(
            run_err(
                Resize::default(),
                13,
                &[
                    Some(&x),
                    None,
                    Some(&sc(&[1., 1., 2., 2.])),
                    Some(&sizes(&[1, 1, 4, 4]))
                ]
            )
            .contains("only one")
        );
    }

    #[test]
    fn antialias_linear_downsample_by_two_hand_computed() {
        // scale 0.5, half_pixel: x = 2o + 0.5, the triangle stretched to 4 taps at 2o-1..2o+2 with
        // weights 0.25, 0.75, 0.75, 0.25 (normalised / 2), edge-clamped like the ONNX reference.
        let x = t(&[1, 1, 1, 8], &iota(8));
        let aa = |antialias| Resize {
            mode: Some("linear".into()),
            antialias: Some(antialias),
            ..Default::default()
        };
        let out = run(
            aa(1),
            18,
            1,
            &[Some(&x), None, Some(&sc(&[1., 1., 1., 0.5]))],
        );
        assert_close(&out[0], &[1, 1, 1, 4], &[1.625, 3.5, 5.5, 7.375], 1e-6);
        // Without antialias (or before opset 18) the plain 2-tap filter applies.
        let plain = [1.5, 3.5, 5.5, 7.5];
        let out = run(
            aa(0),
            18,
            1,
            &[Some(&x), None, Some(&sc(&[1., 1., 1., 0.5]))],
        );
        assert_close(&out[0], &[1, 1, 1, 4], &plain, 1e-6);
        // Upsampling is unchanged by antialias.
        let up = run(
            aa(1),
            18,
            1,
            &[Some(&x), None, Some(&sc(&[1., 1., 1., 2.]))],
        );
        let up0 = run(
            aa(0),
            18,
            1,
            &[Some(&x), None, Some(&sc(&[1., 1., 1., 2.]))],
        );
        assert_eq!(up[0], up0[0]);
    }

    #[test]
    #[allow(clippy::excessive_precision)] // expected values as printed in ONNX's test data
    fn onnx_backend_expected_values() {
        let x16 = t(&[1, 1, 4, 4], &iota(16));
        let x8 = t(&[1, 1, 2, 4], &iota(8));
        let lin = |ct: &str| Resize {
            mode: Some("linear".into()),
            coordinate_transformation_mode: Some(ct.into()),
            ..Default::default()
        };
        // resize_downsample_scales_linear
        let out = run(
            lin("half_pixel"),
            13,
            1,
            &[Some(&x8), None, Some(&sc(&[1., 1., 0.6, 0.6]))],
        );
        assert_close(&out[0], &[1, 1, 1, 2], &[2.6666665, 4.3333331], 1e-6);
        // resize_downsample_scales_linear_align_corners: ONNX's reference divides by the unfloored
        // length 4 * 0.6 = 2.4 and expects 3.142857; ONNX Runtime uses the output length 2 and gives 4
        // (the test is on ORT's list of known mismatches). We follow ORT.
        let op = lin("align_corners");
        let out = run(
            op,
            13,
            1,
            &[Some(&x8), None, Some(&sc(&[1., 1., 0.6, 0.6]))],
        );
        assert_close(&out[0], &[1, 1, 1, 2], &[1., 4.], 1e-6);
        // resize_downsample_sizes_linear_pytorch_half_pixel
        let out = run(
            lin("pytorch_half_pixel"),
            13,
            1,
            &[Some(&x16), None, None, Some(&sizes(&[1, 1, 3, 1]))],
        );
        assert_close(&out[0], &[1, 1, 3, 1], &[1.6666666, 7., 12.333333], 1e-6);
        // resize_tf_crop_and_resize
        let roi = t(&[8], &[0., 0., 0.4, 0.6, 1., 1., 0.6, 0.8]);
        let out = run(
            lin("tf_crop_and_resize"),
            13,
            1,
            &[Some(&x16), Some(&roi), None, Some(&sizes(&[1, 1, 3, 3]))],
        );
        assert_close(
            &out[0],
            &[1, 1, 3, 3],
            &[7.6000004, 7.9, 8.2, 8.8, 9.1, 9.400001, 10., 10.3, 10.6],
            1e-6,
        );
        // resize_downsample_scales_cubic
        let cubic = Resize {
            mode: Some("cubic".into()),
            ..Default::default()
        };
        let out = run(
            cubic,
            13,
            1,
            &[Some(&x16), None, Some(&sc(&[1., 1., 0.8, 0.8]))],
        );
        let want = [
            1.47119141,
            2.78125,
            4.08251953,
            6.71142578,
            8.02148438,
            9.32275391,
            11.91650391,
            13.2265625,
            14.52783203,
        ];
        assert_close(&out[0], &[1, 1, 3, 3], &want, 1e-6);
        // cubic, a = -0.5, exclude_outside, 4x4 -> 8x8 (first row; values from the spec formulas,
        // computed independently: taps outside the input get weight 0 and the rest are renormalized)
        let op = Resize {
            mode: Some("cubic".into()),
            cubic_coeff_a: Some(-0.5),
            exclude_outside: Some(1),
            ..Default::default()
        };
        let out = run(op, 13, 1, &[Some(&x16), None, Some(&sc(&[1., 1., 2., 2.]))]);
        let row: Vec<f32> = out[0].to_f64_vec().unwrap()[..8]
            .iter()
            .map(|&v| v as f32)
            .collect();
        let want = [
            0.5588235, 0.814942, 1.3569825, 1.8970588, 2.3970588, 2.9371352, 3.4791756, 3.7352941,
        ];
        assert_close(&t(&[8], &row), &[8], &want, 1e-6);
    }
}
