//! Slow, obvious reference kernels (nested loops, f64 accumulation) used as test oracles for the fast
//! paths here and available to other crates' tests. Same signatures and validation as the fast ones.

use crate::conv::{self, ConvParams};
use crate::conv_transpose::{self, ConvTransposeParams};
use crate::error::Result;
use crate::util::{check_len, next_index, numel, strides_of};

/// Reference ONNX Conv (see [`crate::conv()`]).
pub fn conv_reference(
    input: &[f32],
    input_shape: &[usize],
    weight: &[f32],
    weight_shape: &[usize],
    bias: Option<&[f32]>,
    p: &ConvParams,
    out: &mut [f32],
) -> Result<()> {
    let geo = conv::Geometry::new(input_shape, weight_shape, bias.map(<[f32]>::len), p)?;
    check_len("conv input", input.len(), numel(input_shape)?)?;
    check_len("conv weight", weight.len(), numel(weight_shape)?)?;
    check_len("conv output", out.len(), geo.n * geo.m * geo.out_size)?;
    let nd = geo.in_sp.len();
    let in_st = strides_of(&geo.in_sp);
    let mut o_i = 0;
    for n in 0..geo.n {
        for m in 0..geo.m {
            let g = m / geo.mg;
            let mut oidx = vec![0usize; nd];
            for _ in 0..geo.out_size {
                let mut acc = bias.map_or(0.0, |b| b[m] as f64);
                for cl in 0..geo.cg {
                    let c = g * geo.cg + cl;
                    let mut kidx = vec![0usize; nd];
                    for kf in 0..geo.k_size {
                        let mut off = Some(0usize);
                        for a in 0..nd {
                            let i = (oidx[a] * p.strides[a] + kidx[a] * p.dilations[a]) as isize
                                - p.pads[a] as isize;
                            if i < 0 || i >= geo.in_sp[a] as isize {
                                off = None;
                                break;
                            }
                            off = off.map(|o| o + i as usize * in_st[a]);
                        }
                        if let Some(off) = off {
                            let xv = input[(n * geo.c + c) * geo.in_size + off] as f64;
                            let wv = weight[(m * geo.cg + cl) * geo.k_size + kf] as f64;
                            acc += xv * wv;
                        }
                        next_index(&mut kidx, &geo.k_sp);
                    }
                }
                out[o_i] = acc as f32;
                o_i += 1;
                next_index(&mut oidx, &geo.out_sp);
            }
        }
    }
    Ok(())
}

/// Reference ONNX ConvTranspose (see [`crate::conv_transpose()`]): scatters every input value times
/// every weight tap to `o = i * s + k * d - pad_begin`.
pub fn conv_transpose_reference(
    input: &[f32],
    input_shape: &[usize],
    weight: &[f32],
    weight_shape: &[usize],
    bias: Option<&[f32]>,
    p: &ConvTransposeParams,
    out: &mut [f32],
) -> Result<()> {
    let geo = conv_transpose::Geometry::new(input_shape, weight_shape, bias.map(<[f32]>::len), p)?;
    check_len("conv_transpose input", input.len(), numel(input_shape)?)?;
    check_len("conv_transpose weight", weight.len(), numel(weight_shape)?)?;
    check_len(
        "conv_transpose output",
        out.len(),
        geo.n * geo.m * geo.out_size,
    )?;
    let nd = geo.in_sp.len();
    let out_st = strides_of(&geo.out_sp);
    let mut acc = vec![0f64; out.len()];
    for n in 0..geo.n {
        for c in 0..geo.c {
            let g = c / geo.cg;
            let mut iidx = vec![0usize; nd];
            for i_f in 0..geo.in_size {
                let xv = input[(n * geo.c + c) * geo.in_size + i_f] as f64;
                for ml in 0..geo.mg {
                    let m = g * geo.mg + ml;
                    let mut kidx = vec![0usize; nd];
                    for kf in 0..geo.k_size {
                        let mut off = Some(0usize);
                        for a in 0..nd {
                            let o = (iidx[a] * p.strides[a] + kidx[a] * p.dilations[a]) as isize
                                - p.pads[a];
                            if o < 0 || o >= geo.out_sp[a] as isize {
                                off = None;
                                break;
                            }
                            off = off.map(|v| v + o as usize * out_st[a]);
                        }
                        if let Some(off) = off {
                            let wv = weight[(c * geo.mg + ml) * geo.k_size + kf] as f64;
                            acc[(n * geo.m + m) * geo.out_size + off] += xv * wv;
                        }
                        next_index(&mut kidx, &geo.k_sp);
                    }
                }
                next_index(&mut iidx, &geo.in_sp);
            }
        }
    }
    for (i, (o, a)) in out.iter_mut().zip(&acc).enumerate() {
        let m = (i / geo.out_size.max(1)) % geo.m.max(1);
        *o = (a + bias.map_or(0.0, |b| b[m] as f64)) as f32;
    }
    Ok(())
}

/// Reference `C = A x B` for row-major `A [m, k]`, `B [k, n]`.
pub fn matmul_2d_reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0f64;
            for l in 0..k {
                acc += a[i * k + l] as f64 * b[l * n + j] as f64;
            }
            c[i * n + j] = acc as f32;
        }
    }
    c
}
