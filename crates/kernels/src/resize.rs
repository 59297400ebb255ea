//! ONNX `Resize` (opset 11-19 semantics) in f32 on any rank: nearest (all four `nearest_mode`s),
//! N-linear and N-cubic (`cubic_coeff_a`, `exclude_outside`), with every
//! `coordinate_transformation_mode` including `tf_crop_and_resize` (roi, `extrapolation_value`) and
//! `half_pixel_symmetric`, and `antialias` (opset 18) for linear and cubic: when downsampling, the filter
//! is stretched by `1 / scale` over more input taps and its weights renormalised, as the ONNX reference
//! implementation does. The caller passes the output shape and the
//! per-axis scales; [`resize_output_shape`] computes both from `scales` or `sizes` (with `axes` and
//! `keep_aspect_ratio_policy`, opset 18). Coordinates are computed in f32, as ONNX Runtime does.
//!
//! Interpolation is separable: each axis contributes a short list of (input index, weight) taps per
//! output coordinate, and an output value is the nested weighted sum over axes (outermost axis last,
//! matching the ONNX reference's evaluation order). Axes whose input position is out of range under
//! `tf_crop_and_resize` yield `extrapolation_value`.

use crate::error::{KernelError, Result, param_err, shape_err};
use crate::util::{PAR_MIN_FLOPS, check_len, numel, strides_of};
use rayon::prelude::*;
use std::str::FromStr;

/// ONNX `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ResizeMode {
    #[default]
    Nearest,
    Linear,
    Cubic,
}

/// ONNX `coordinate_transformation_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CoordinateTransform {
    #[default]
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfCropAndResize,
}

/// ONNX `nearest_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NearestMode {
    #[default]
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// ONNX `keep_aspect_ratio_policy` (used with `sizes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeepAspectRatioPolicy {
    #[default]
    Stretch,
    NotLarger,
    NotSmaller,
}

macro_rules! from_onnx_str {
    ($t:ty, $what:literal, $($s:literal => $v:expr),* $(,)?) => {
        impl FromStr for $t {
            type Err = KernelError;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($s => Ok($v),)*
                    _ => Err(param_err!("unknown {} {s:?}", $what)),
                }
            }
        }
    };
}
from_onnx_str!(ResizeMode, "resize mode", "nearest" => ResizeMode::Nearest, "linear" => ResizeMode::Linear, "cubic" => ResizeMode::Cubic);
from_onnx_str!(CoordinateTransform, "coordinate_transformation_mode",
    "half_pixel" => CoordinateTransform::HalfPixel,
    "half_pixel_symmetric" => CoordinateTransform::HalfPixelSymmetric,
    "pytorch_half_pixel" => CoordinateTransform::PytorchHalfPixel,
    "align_corners" => CoordinateTransform::AlignCorners,
    "asymmetric" => CoordinateTransform::Asymmetric,
    "tf_crop_and_resize" => CoordinateTransform::TfCropAndResize,
);
from_onnx_str!(NearestMode, "nearest_mode",
    "round_prefer_floor" => NearestMode::RoundPreferFloor,
    "round_prefer_ceil" => NearestMode::RoundPreferCeil,
    "floor" => NearestMode::Floor,
    "ceil" => NearestMode::Ceil,
);
from_onnx_str!(KeepAspectRatioPolicy, "keep_aspect_ratio_policy",
    "stretch" => KeepAspectRatioPolicy::Stretch,
    "not_larger" => KeepAspectRatioPolicy::NotLarger,
    "not_smaller" => KeepAspectRatioPolicy::NotSmaller,
);

/// Resize attributes plus the resolved per-axis scales.
#[derive(Clone, Debug, PartialEq)]
pub struct ResizeParams {
    pub mode: ResizeMode,
    pub coordinate_transform: CoordinateTransform,
    pub nearest_mode: NearestMode,
    /// ONNX default -0.75.
    pub cubic_coeff_a: f32,
    pub exclude_outside: bool,
    pub extrapolation_value: f32,
    /// One scale per input axis (as returned by [`resize_output_shape`]).
    pub scales: Vec<f32>,
    /// `tf_crop_and_resize` only: `[start_1, ..., start_r, end_1, ..., end_r]` normalised; empty means
    /// the whole input (starts 0, ends 1).
    pub roi: Vec<f32>,
    /// `antialias = 1` (linear and cubic only): a low-pass filter of width `1 / scale` when
    /// downsampling (`scale < 1`); no effect on nearest or on upsampled axes.
    pub antialias: bool,
}

impl ResizeParams {
    /// ONNX defaults (nearest, half_pixel, round_prefer_floor, a = -0.75) with the given scales.
    pub fn new(scales: Vec<f32>) -> Self {
        ResizeParams {
            mode: ResizeMode::Nearest,
            coordinate_transform: CoordinateTransform::HalfPixel,
            nearest_mode: NearestMode::RoundPreferFloor,
            cubic_coeff_a: -0.75,
            exclude_outside: false,
            extrapolation_value: 0.0,
            scales,
            roi: Vec::new(),
            antialias: false,
        }
    }
}

/// Output shape and per-axis scales of a Resize.
#[derive(Clone, Debug, PartialEq)]
pub struct ResizeShape {
    pub output_shape: Vec<usize>,
    pub scales: Vec<f32>,
}

/// Resolves Resize's `scales` or `sizes` (exactly one, each listing the `axes`, default all axes,
/// negative allowed) into the full output shape and per-axis scales, as ONNX Runtime does:
/// from scales, `out = floor(in * scale)`; from sizes with `stretch`, `scale = size / in`; with
/// `not_larger` / `not_smaller` one scale (min / max of `size / in` over `axes`) for all listed axes and
/// `out = round(scale * in)`. Unlisted axes keep scale 1.
pub fn resize_output_shape(
    input_shape: &[usize],
    scales: Option<&[f32]>,
    sizes: Option<&[i64]>,
    axes: Option<&[i64]>,
    policy: KeepAspectRatioPolicy,
) -> Result<ResizeShape> {
    let rank = input_shape.len();
    let axes: Vec<usize> = match axes {
        None => (0..rank).collect(),
        Some(ax) => {
            let mut v = Vec::with_capacity(ax.len());
            for &a in ax {
                let n = if a < 0 { a + rank as i64 } else { a };
                if n < 0 || n >= rank as i64 || v.contains(&(n as usize)) {
                    return Err(param_err!("Resize axes {ax:?} invalid for rank {rank}"));
                }
                v.push(n as usize);
            }
            v
        }
    };
    let mut out = input_shape.to_vec();
    let mut full = vec![1f32; rank];
    match (scales, sizes) {
        (Some(s), None) => {
            if s.len() != axes.len() {
                return Err(shape_err!(
                    "Resize scales {s:?} must have {} entries",
                    axes.len()
                ));
            }
            for (&a, &sc) in axes.iter().zip(s) {
                if !(sc.is_finite() && sc > 0.0) {
                    return Err(param_err!("Resize scale {sc} must be positive"));
                }
                full[a] = sc;
                out[a] = (input_shape[a] as f32 * sc).floor() as usize;
            }
        }
        (None, Some(sz)) => {
            if sz.len() != axes.len() {
                return Err(shape_err!(
                    "Resize sizes {sz:?} must have {} entries",
                    axes.len()
                ));
            }
            for (&a, &s) in axes.iter().zip(sz) {
                if s < 0 || input_shape[a] == 0 {
                    return Err(param_err!(
                        "Resize size {s} for input dim {} is invalid",
                        input_shape[a]
                    ));
                }
            }
            let ratios: Vec<f32> = axes
                .iter()
                .zip(sz)
                .map(|(&a, &s)| s as f32 / input_shape[a] as f32)
                .collect();
            let common = match policy {
                KeepAspectRatioPolicy::Stretch => None,
                KeepAspectRatioPolicy::NotLarger => ratios.iter().copied().reduce(f32::min),
                KeepAspectRatioPolicy::NotSmaller => ratios.iter().copied().reduce(f32::max),
            };
            for (i, &a) in axes.iter().enumerate() {
                match common {
                    None => {
                        full[a] = ratios[i];
                        out[a] = sz[i] as usize;
                    }
                    Some(c) => {
                        full[a] = c;
                        out[a] = (c * input_shape[a] as f32).round() as usize;
                    }
                }
            }
        }
        _ => return Err(param_err!("Resize needs exactly one of scales and sizes")),
    }
    Ok(ResizeShape {
        output_shape: out,
        scales: full,
    })
}

/// Taps of one output coordinate along one axis.
enum Taps {
    /// Outside the input under tf_crop_and_resize.
    Extrapolate,
    /// `(input index, weight)` pairs.
    Weights(Vec<(usize, f32)>),
}

fn cubic_coeffs(r: f32, a: f32) -> [f32; 4] {
    let c1 = |x: f32| ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    let c2 = |x: f32| ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
    [c2(r + 1.0), c1(r), c1(1.0 - r), c2(2.0 - r)]
}

/// Antialiased taps (ONNX reference `_linear_coeffs_antialias` / `_cubic_coeffs_antialias`): the
/// filter is evaluated at `scale * (i - ratio)` for the input offsets `i` of its stretched support
/// around the coordinate's left neighbour and normalised to sum 1. `ratio` is in `(0, 1]`: an integer
/// coordinate counts as ratio 1 from the pixel on its left, as in the reference. Weights are computed
/// in f64 and rounded once.
fn antialias_taps(mode: ResizeMode, x: f32, scale: f32, a: f32) -> Vec<(isize, f32)> {
    let s = f64::from(scale.min(1.0));
    let fl = x.floor();
    let (base, ratio) = if x == fl {
        (fl as isize - 1, 1.0f64)
    } else {
        (fl as isize, f64::from(x - fl))
    };
    let a = f64::from(a);
    let (start, filter): (isize, &dyn Fn(f64) -> f64) = match mode {
        ResizeMode::Cubic => ((-2.0 / s).floor() as isize + 1, &|t: f64| {
            let t = t.abs();
            if t <= 1.0 {
                ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
            } else if t < 2.0 {
                ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a
            } else {
                0.0
            }
        }),
        _ => ((-1.0 / s).floor() as isize + 1, &|t: f64| {
            (1.0 - t.abs()).clamp(0.0, 1.0)
        }),
    };
    let w: Vec<(isize, f64)> = (start..2 - start)
        .map(|i| (base + i, filter(s * (i as f64 - ratio))))
        .collect();
    let sum: f64 = w.iter().map(|t| t.1).sum();
    w.into_iter()
        .map(|(i, v)| {
            (
                i,
                if sum != 0.0 {
                    (v / sum) as f32
                } else {
                    v as f32
                },
            )
        })
        .collect()
}

fn original_coordinate(
    x: usize,
    len_in: usize,
    len_out: usize,
    scale: f32,
    roi: (f32, f32),
    ct: CoordinateTransform,
) -> f32 {
    let (x, len_in_f, len_out_f) = (x as f32, len_in as f32, len_out as f32);
    match ct {
        CoordinateTransform::HalfPixel => (x + 0.5) / scale - 0.5,
        CoordinateTransform::HalfPixelSymmetric => {
            let adjustment = len_out_f / (scale * len_in_f);
            let center = len_in_f / 2.0;
            let offset = center * (1.0 - adjustment);
            offset + (x + 0.5) / scale - 0.5
        }
        CoordinateTransform::PytorchHalfPixel => {
            if len_out > 1 {
                (x + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        CoordinateTransform::AlignCorners => {
            if len_out == 1 {
                0.0
            } else {
                x * (len_in_f - 1.0) / (len_out_f - 1.0)
            }
        }
        CoordinateTransform::Asymmetric => x / scale,
        CoordinateTransform::TfCropAndResize => {
            let (s, e) = roi;
            if len_out > 1 {
                s * (len_in_f - 1.0) + x * (e - s) * (len_in_f - 1.0) / (len_out_f - 1.0)
            } else {
                0.5 * (s + e) * (len_in_f - 1.0)
            }
        }
    }
}

fn axis_taps(
    p: &ResizeParams,
    axis: usize,
    len_in: usize,
    len_out: usize,
    rank: usize,
) -> Vec<Taps> {
    let scale = p.scales[axis];
    let roi = if p.roi.is_empty() {
        (0.0, 1.0)
    } else {
        (p.roi[axis], p.roi[rank + axis])
    };
    let last = len_in as isize - 1;
    let clamp = |i: isize| i.clamp(0, last) as usize;
    (0..len_out)
        .map(|o| {
            let x = original_coordinate(o, len_in, len_out, scale, roi, p.coordinate_transform);
            if p.coordinate_transform == CoordinateTransform::TfCropAndResize
                && (x < 0.0 || x > last as f32)
            {
                return Taps::Extrapolate;
            }
            let fl = x.floor();
            let (i0, r) = (fl as isize, x - fl);
            let raw: Vec<(isize, f32)> = match p.mode {
                ResizeMode::Nearest => {
                    let up = match p.nearest_mode {
                        _ if r == 0.0 => false,
                        NearestMode::RoundPreferFloor => r > 0.5,
                        NearestMode::RoundPreferCeil => r >= 0.5,
                        NearestMode::Floor => false,
                        NearestMode::Ceil => true,
                    };
                    vec![(i0 + isize::from(up), 1.0)]
                }
                ResizeMode::Linear | ResizeMode::Cubic if p.antialias => {
                    antialias_taps(p.mode, x, scale, p.cubic_coeff_a)
                }
                ResizeMode::Linear => vec![(i0, 1.0 - r), (i0 + 1, r)],
                ResizeMode::Cubic => {
                    let c = cubic_coeffs(r, p.cubic_coeff_a);
                    (0..4).map(|t| (i0 - 1 + t as isize, c[t])).collect()
                }
            };
            let mut w: Vec<(isize, f32)> = raw;
            if p.exclude_outside && p.mode != ResizeMode::Nearest {
                for t in &mut w {
                    if t.0 < 0 || t.0 > last {
                        t.1 = 0.0;
                    }
                }
                let sum: f32 = w.iter().map(|t| t.1).sum();
                if sum != 0.0 {
                    for t in &mut w {
                        t.1 /= sum;
                    }
                }
            }
            Taps::Weights(w.into_iter().map(|(i, wt)| (clamp(i), wt)).collect())
        })
        .collect()
}

/// Nested weighted sum over axes `axis..`; `None` means some axis extrapolates.
fn interpolate(
    x: &[f32],
    taps: &[Vec<Taps>],
    strides: &[usize],
    oidx: &[usize],
    axis: usize,
    base: usize,
) -> Option<f32> {
    if axis == taps.len() {
        return Some(x[base]);
    }
    match &taps[axis][oidx[axis]] {
        Taps::Extrapolate => None,
        Taps::Weights(w) => {
            if let [(i, _)] = w[..] {
                // A single tap (nearest) copies the value exactly.
                return interpolate(x, taps, strides, oidx, axis + 1, base + i * strides[axis]);
            }
            let mut acc = 0f32;
            for &(i, wt) in w {
                acc +=
                    wt * interpolate(x, taps, strides, oidx, axis + 1, base + i * strides[axis])?;
            }
            Some(acc)
        }
    }
}

/// ONNX Resize of `input` into `out` of `output_shape` (same rank; see [`resize_output_shape`]).
pub fn resize(
    input: &[f32],
    input_shape: &[usize],
    p: &ResizeParams,
    output_shape: &[usize],
    out: &mut [f32],
) -> Result<()> {
    let rank = input_shape.len();
    if output_shape.len() != rank || p.scales.len() != rank {
        return Err(shape_err!(
            "Resize input {input_shape:?}, output {output_shape:?} and scales {:?} must have the same rank",
            p.scales
        ));
    }
    if !p.roi.is_empty() && p.roi.len() != 2 * rank {
        return Err(shape_err!(
            "Resize roi {:?} must have {} entries",
            p.roi,
            2 * rank
        ));
    }
    if p.scales.iter().any(|&s| !(s.is_finite() && s > 0.0)) {
        return Err(param_err!("Resize scales {:?} must be positive", p.scales));
    }
    check_len("Resize input", input.len(), numel(input_shape)?)?;
    check_len("Resize output", out.len(), numel(output_shape)?)?;
    if out.is_empty() {
        return Ok(());
    }
    if input.is_empty() {
        return Err(shape_err!(
            "Resize of empty input {input_shape:?} to non-empty {output_shape:?}"
        ));
    }
    let taps: Vec<Vec<Taps>> = (0..rank)
        .map(|a| axis_taps(p, a, input_shape[a], output_shape[a], rank))
        .collect();
    let strides = strides_of(input_shape);
    // Parallel over output rows (all axes but the last).
    let row = output_shape.last().copied().unwrap_or(1).max(1);
    let outer = &output_shape[..rank.saturating_sub(1)];
    // Every tap a single source element (nearest, no extrapolation): a gather through one offset
    // table per axis, the same values `interpolate` copies.
    let single: Option<Vec<Vec<usize>>> = (rank > 0)
        .then(|| {
            taps.iter()
                .zip(&strides)
                .map(|(ax, &st)| {
                    ax.iter()
                        .map(|t| match t {
                            Taps::Weights(w) if w.len() == 1 => Some(w[0].0 * st),
                            _ => None,
                        })
                        .collect::<Option<Vec<usize>>>()
                })
                .collect::<Option<Vec<_>>>()
        })
        .flatten();
    if let Some(offs) = single {
        let last = &offs[rank - 1];
        let gather_row = |(r, o): (usize, &mut [f32])| {
            let (mut base, mut rem) = (0, r);
            for a in (0..outer.len()).rev() {
                base += offs[a][rem % outer[a]];
                rem /= outer[a];
            }
            for (v, &k) in o.iter_mut().zip(last) {
                *v = input[base + k];
            }
        };
        if out.len() >= PAR_MIN_FLOPS / 4 && rayon::current_num_threads() > 1 {
            out.par_chunks_mut(row).enumerate().for_each(gather_row);
        } else {
            out.chunks_mut(row).enumerate().for_each(gather_row);
        }
        return Ok(());
    }
    let fill_row = |(r, o): (usize, &mut [f32])| {
        let mut oidx = vec![0usize; rank];
        let mut rem = r;
        for a in (0..outer.len()).rev() {
            oidx[a] = rem % outer[a];
            rem /= outer[a];
        }
        for (j, v) in o.iter_mut().enumerate() {
            if rank > 0 {
                oidx[rank - 1] = j;
            }
            *v = interpolate(input, &taps, &strides, &oidx, 0, 0).unwrap_or(p.extrapolation_value);
        }
    };
    if out.len() >= PAR_MIN_FLOPS / 4 {
        out.par_chunks_mut(row).enumerate().for_each(fill_row);
    } else {
        out.chunks_mut(row).enumerate().for_each(fill_row);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::assert_close;

    fn run(
        x: &[f32],
        shape: &[usize],
        scales: Option<&[f32]>,
        sizes: Option<&[i64]>,
        f: impl FnOnce(&mut ResizeParams),
    ) -> (Vec<usize>, Vec<f32>) {
        let rs = resize_output_shape(shape, scales, sizes, None, KeepAspectRatioPolicy::Stretch)
            .unwrap();
        let mut p = ResizeParams::new(rs.scales);
        f(&mut p);
        let mut out = vec![f32::NAN; numel(&rs.output_shape).unwrap()];
        resize(x, shape, &p, &rs.output_shape, &mut out).unwrap();
        (rs.output_shape, out)
    }

    #[test]
    fn upsample_nearest_onnx_example() {
        let (s, o) = run(
            &[1., 2., 3., 4.],
            &[1, 1, 2, 2],
            Some(&[1., 1., 2., 3.]),
            None,
            |_| {},
        );
        assert_eq!(s, vec![1, 1, 4, 6]);
        let want = [
            1., 1., 1., 2., 2., 2., 1., 1., 1., 2., 2., 2., 3., 3., 3., 4., 4., 4., 3., 3., 3., 4.,
            4., 4.,
        ];
        assert_eq!(o, want);
    }

    #[test]
    fn nearest_modes() {
        // asymmetric, scale 2 on [0, 10]: x_original = 0, 0.5, 1, 1.5.
        let x = [0., 10.];
        for (mode, want) in [
            (NearestMode::RoundPreferFloor, [0., 0., 10., 10.]),
            (NearestMode::RoundPreferCeil, [0., 10., 10., 10.]),
            (NearestMode::Floor, [0., 0., 10., 10.]),
            (NearestMode::Ceil, [0., 10., 10., 10.]),
        ] {
            let (_, o) = run(&x, &[2], Some(&[2.]), None, |p| {
                p.coordinate_transform = CoordinateTransform::Asymmetric;
                p.nearest_mode = mode;
            });
            assert_eq!(o, want, "{mode:?}");
        }
        // scale 4 asymmetric: x_original = 0.25, 0.75 -> floor mode picks 0, ceil mode 1.
        let (_, o) = run(&x, &[2], Some(&[4.]), None, |p| {
            p.coordinate_transform = CoordinateTransform::Asymmetric;
            p.nearest_mode = NearestMode::Ceil;
        });
        assert_eq!(o, [0., 10., 10., 10., 10., 10., 10., 10.]);
    }

    #[test]
    fn downsample_onnx_examples() {
        let x = [1., 2., 3., 4., 5., 6., 7., 8.];
        let (s, o) = run(&x, &[1, 1, 2, 4], Some(&[1., 1., 0.6, 0.6]), None, |_| {});
        assert_eq!((s, o), (vec![1, 1, 1, 2], vec![1., 3.]));
        let (_, o) = run(&x, &[1, 1, 2, 4], Some(&[1., 1., 0.6, 0.6]), None, |p| {
            p.mode = ResizeMode::Linear
        });
        assert_close(
            &o,
            &[2.666_666_5, 4.333_333],
            1e-6,
            1e-6,
            "downsample linear",
        );
    }

    #[test]
    fn bilinear_half_pixel_and_align_corners() {
        let x = [1., 2., 3., 4.];
        let (_, o) = run(&x, &[1, 1, 2, 2], Some(&[1., 1., 2., 2.]), None, |p| {
            p.mode = ResizeMode::Linear
        });
        let want = [
            1., 1.25, 1.75, 2., 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3., 3.25, 3.75, 4.,
        ];
        assert_close(&o, &want, 1e-6, 1e-6, "half_pixel");
        let (_, o) = run(&x, &[1, 1, 2, 2], Some(&[1., 1., 2., 2.]), None, |p| {
            p.mode = ResizeMode::Linear;
            p.coordinate_transform = CoordinateTransform::AlignCorners;
        });
        let t = 1.0 / 3.0;
        let want = [
            1.,
            1. + t,
            1. + 2. * t,
            2.,
            1. + 2. * t,
            2.,
            2. + t,
            2. + 2. * t,
            2. + t,
            2. + 2. * t,
            3.,
            3. + t,
            3.,
            3. + t,
            3. + 2. * t,
            4.,
        ];
        assert_close(&o, &want, 1e-6, 1e-6, "align_corners");
        // Trilinear on a 3-d tensor equals the product of 1-d weights: a linear function is reproduced.
        let x: Vec<f32> = (0..27)
            .map(|i| (i / 9) as f32 * 100. + ((i / 3) % 3) as f32 * 10. + (i % 3) as f32)
            .collect();
        let (s, o) = run(&x, &[3, 3, 3], None, Some(&[5, 5, 5]), |p| {
            p.mode = ResizeMode::Linear;
            p.coordinate_transform = CoordinateTransform::AlignCorners;
        });
        assert_eq!(s, vec![5, 5, 5]);
        let want: Vec<f32> = (0..125)
            .map(|i| (i / 25) as f32 * 50. + ((i / 5) % 5) as f32 * 5. + (i % 5) as f32 * 0.5)
            .collect();
        assert_close(&o, &want, 1e-4, 1e-5, "trilinear");
    }

    #[test]
    fn cubic_weights_and_exclude_outside() {
        // asymmetric scale 2: output 3 sits at x = 1.5, taps 0..3 with weights
        // [-0.09375, 0.59375, 0.59375, -0.09375] for a = -0.75.
        let x = [1., 2., 4., 8.];
        let (_, o) = run(&x, &[4], Some(&[2.]), None, |p| {
            p.mode = ResizeMode::Cubic;
            p.coordinate_transform = CoordinateTransform::Asymmetric;
        });
        assert_eq!(o[3], 2.71875);
        assert_eq!(o[2], 2.0);
        // Output 0 at x = 0: taps -1..2 with weights [0, 1, 0, 0].
        assert_eq!(o[0], 1.0);
        // At x = 0.5 the -1 tap (clamped to index 0) is excluded and the rest renormalised.
        let (_, e) = run(&x, &[4], Some(&[2.]), None, |p| {
            p.mode = ResizeMode::Cubic;
            p.coordinate_transform = CoordinateTransform::Asymmetric;
            p.exclude_outside = true;
        });
        let w = [0.59375f32, 0.59375, -0.09375];
        let s: f32 = w.iter().sum();
        assert_close(
            &e[1..2],
            &[(1. * w[0] + 2. * w[1] + 4. * w[2]) / s],
            1e-6,
            1e-6,
            "exclude_outside",
        );
        // A constant stays constant.
        let (_, c) = run(&[3.; 12], &[3, 4], Some(&[1.7, 2.3]), None, |p| {
            p.mode = ResizeMode::Cubic
        });
        assert_close(&c, &vec![3.; c.len()], 1e-5, 1e-5, "constant");
    }

    #[test]
    fn tf_crop_and_resize_extrapolation_onnx_example() {
        let x: Vec<f32> = (1..=16).map(|v| v as f32).collect();
        let rs = resize_output_shape(
            &[1, 1, 4, 4],
            None,
            Some(&[1, 1, 3, 3]),
            None,
            KeepAspectRatioPolicy::Stretch,
        )
        .unwrap();
        let mut p = ResizeParams::new(rs.scales);
        p.mode = ResizeMode::Linear;
        p.coordinate_transform = CoordinateTransform::TfCropAndResize;
        p.roi = vec![0., 0., 0.4, 0.6, 1., 1., 1.2, 1.7];
        p.extrapolation_value = 10.0;
        let mut o = vec![0.0; 9];
        resize(&x, &[1, 1, 4, 4], &p, &rs.output_shape, &mut o).unwrap();
        assert_close(
            &o,
            &[7.6000004, 10., 10., 12.400001, 10., 10., 10., 10., 10.],
            1e-5,
            1e-6,
            "tf_crop",
        );
    }

    #[test]
    fn pytorch_half_pixel_and_symmetric() {
        // Output length 1 under pytorch_half_pixel samples x = 0.
        let (_, o) = run(&[5., 7., 9.], &[3], None, Some(&[1]), |p| {
            p.mode = ResizeMode::Linear;
            p.coordinate_transform = CoordinateTransform::PytorchHalfPixel;
        });
        assert_eq!(o, vec![5.]);
        // half_pixel_symmetric equals half_pixel when in * scale is an integer.
        for ct in [
            CoordinateTransform::HalfPixel,
            CoordinateTransform::HalfPixelSymmetric,
        ] {
            let (_, o) = run(
                &[1., 2., 3., 4.],
                &[1, 1, 2, 2],
                Some(&[1., 1., 2., 2.]),
                None,
                |p| {
                    p.mode = ResizeMode::Linear;
                    p.coordinate_transform = ct;
                },
            );
            assert_close(&o[..4], &[1., 1.25, 1.75, 2.], 1e-6, 1e-6, "symmetric");
        }
        // in 4, scale 0.6 -> out 2, adjustment 2 / 2.4: x = 2 * (1 - 2/2.4) + (o + 0.5) / 0.6 - 0.5.
        let (_, o) = run(&[0., 1., 2., 3.], &[4], Some(&[0.6]), None, |p| {
            p.mode = ResizeMode::Linear;
            p.coordinate_transform = CoordinateTransform::HalfPixelSymmetric;
        });
        let off = 2.0f32 * (1.0 - 2.0 / 2.4);
        assert_close(
            &o,
            &[off + 0.5 / 0.6 - 0.5, off + 1.5 / 0.6 - 0.5],
            1e-5,
            1e-5,
            "symmetric 0.6",
        );
    }

    #[test]
    fn output_shape_helper() {
        let s = |sizes: &[i64], pol| {
            resize_output_shape(&[1, 3, 2, 2], None, Some(sizes), Some(&[2, 3]), pol).unwrap()
        };
        let nl = s(&[7, 8], KeepAspectRatioPolicy::NotLarger);
        assert_eq!(nl.output_shape, vec![1, 3, 7, 7]);
        assert_eq!(nl.scales, vec![1., 1., 3.5, 3.5]);
        assert_eq!(
            s(&[7, 8], KeepAspectRatioPolicy::NotSmaller).output_shape,
            vec![1, 3, 8, 8]
        );
        assert_eq!(
            s(&[7, 8], KeepAspectRatioPolicy::Stretch).scales,
            vec![1., 1., 3.5, 4.]
        );
        let r = resize_output_shape(
            &[1, 3, 5, 5],
            Some(&[0.5]),
            None,
            Some(&[-1]),
            KeepAspectRatioPolicy::Stretch,
        )
        .unwrap();
        assert_eq!(r.output_shape, vec![1, 3, 5, 2]);
        assert!(
            resize_output_shape(
                &[2, 2],
                Some(&[1., 1.]),
                Some(&[2, 2]),
                None,
                KeepAspectRatioPolicy::Stretch
            )
            .is_err()
        );
        assert!(
            resize_output_shape(
                &[2, 2],
                Some(&[1.]),
                None,
                None,
                KeepAspectRatioPolicy::Stretch
            )
            .is_err()
        );
        assert!(
            resize_output_shape(
                &[2, 2],
                Some(&[1., 0.]),
                None,
                None,
                KeepAspectRatioPolicy::Stretch
            )
            .is_err()
        );
        assert!(
            resize_output_shape(
                &[2, 2],
                None,
                Some(&[1]),
                Some(&[2]),
                KeepAspectRatioPolicy::Stretch
            )
            .is_err()
        );
        assert_eq!(
            "tf_crop_and_resize".parse::<CoordinateTransform>().unwrap(),
            CoordinateTransform::TfCropAndResize
        );
        assert!("bilinear".parse::<ResizeMode>().is_err());
    }
}
