//! Slow, obvious int8 reference kernels (nested loops, wrapping i32 accumulation): the test oracles
//! of the fast paths. They compute `sum_k (a - za) * (b - zb)` exactly as written.

use super::{QType, check_zp};
use crate::conv::{ConvParams, Geometry};
use crate::error::{Result, param_err, shape_err};
use crate::util::{check_len, next_index, numel, strides_of};

fn zp_at(zps: &[i32], c: usize) -> i32 {
    zps[if zps.len() == 1 { 0 } else { c }]
}

fn check_zps<T: QType>(what: &str, zps: &[i32], channels: usize) -> Result<()> {
    if zps.len() != 1 && zps.len() != channels {
        return Err(shape_err!(
            "{what} zero points have {} entries, expected 1 or {channels}",
            zps.len()
        ));
    }
    zps.iter().try_for_each(|&z| check_zp::<T>(what, z))
}

/// `out[.., m, n] = sum_k (a[.., m, k] - za) * (b[k, n] - zb[n])` in wrapping i32, for `a` of shape
/// `[..., M, K]` (or `[K]`), `b` of shape `[K, N]` and `zb` with one entry per column or one.
pub fn qgemm_reference<A: QType, B: QType>(
    a: &[A],
    a_shape: &[usize],
    za: i32,
    b: &[B],
    b_shape: &[usize],
    zb: &[i32],
    out: &mut [i32],
) -> Result<()> {
    let Some((&k, lead)) = a_shape.split_last() else {
        return Err(shape_err!("activation must have rank >= 1"));
    };
    let &[kb, n] = b_shape else {
        return Err(shape_err!("weight must be [K, N], got {b_shape:?}"));
    };
    if kb != k {
        return Err(shape_err!(
            "K differs: activation {a_shape:?}, weight {b_shape:?}"
        ));
    }
    let m = numel(lead)?;
    check_len("activation", a.len(), m * k)?;
    check_len("weight", b.len(), k * n)?;
    check_len("output", out.len(), m * n)?;
    check_zp::<A>("activation", za)?;
    check_zps::<B>("weight", zb, n)?;
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0i32;
            for kk in 0..k {
                let av: i32 = a[i * k + kk].into();
                let bv: i32 = b[kk * n + j].into();
                acc = acc.wrapping_add((av - za) * (bv - zp_at(zb, j)));
            }
            out[i * n + j] = acc;
        }
    }
    Ok(())
}

/// ONNX ConvInteger: `out[n, m, o] = sum_{c, k} (x - zx) * (w[m, c, k] - zw[m])` in wrapping i32,
/// every N-d geometry (groups, pads, strides, dilations); a padded position reads `zx`.
pub fn qconv_reference<X: QType, W: QType>(
    x: &[X],
    x_shape: &[usize],
    zx: i32,
    w: &[W],
    w_shape: &[usize],
    zw: &[i32],
    p: &ConvParams,
    out: &mut [i32],
) -> Result<()> {
    let geo = Geometry::new(x_shape, w_shape, None, p)?;
    check_len("input", x.len(), numel(x_shape)?)?;
    check_len("weight", w.len(), numel(w_shape)?)?;
    check_len("output", out.len(), geo.n * geo.m * geo.out_size)?;
    check_zp::<X>("input", zx)?;
    check_zps::<W>("weight", zw, geo.m)?;
    let nd = geo.in_sp.len();
    let in_st = strides_of(&geo.in_sp);
    let mut o_i = 0;
    for n in 0..geo.n {
        for m in 0..geo.m {
            let g = m / geo.mg;
            let mut oidx = vec![0usize; nd];
            for _ in 0..geo.out_size {
                let mut acc = 0i32;
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
                        let xv: i32 = match off {
                            Some(off) => x[(n * geo.c + c) * geo.in_size + off].into(),
                            None => zx,
                        };
                        let wv: i32 = w[(m * geo.cg + cl) * geo.k_size + kf].into();
                        acc = acc.wrapping_add((xv - zx) * (wv - zp_at(zw, m)));
                        next_index(&mut kidx, &geo.k_sp);
                    }
                }
                out[o_i] = acc;
                o_i += 1;
                next_index(&mut oidx, &geo.out_sp);
            }
        }
    }
    Ok(())
}

/// 2-d depthwise ConvInteger (`group == C`, weight `[C * mult, 1, kh, kw]`): output channel `m`
/// reads input channel `m / mult` only. Direct loops, independent of [`qconv_reference`].
pub fn depthwise_reference<X: QType, W: QType>(
    x: &[X],
    x_shape: &[usize],
    zx: i32,
    w: &[W],
    w_shape: &[usize],
    zw: &[i32],
    p: &ConvParams,
    out: &mut [i32],
) -> Result<()> {
    let geo = Geometry::new(x_shape, w_shape, None, p)?;
    if geo.cg != 1 || geo.in_sp.len() != 2 {
        return Err(param_err!(
            "depthwise_reference needs a 2-d conv with one input channel per group"
        ));
    }
    check_len("input", x.len(), numel(x_shape)?)?;
    check_len("weight", w.len(), numel(w_shape)?)?;
    check_len("output", out.len(), geo.n * geo.m * geo.out_size)?;
    check_zp::<X>("input", zx)?;
    check_zps::<W>("weight", zw, geo.m)?;
    let (h, wd) = (geo.in_sp[0] as isize, geo.in_sp[1] as isize);
    let (kh, kw) = (geo.k_sp[0], geo.k_sp[1]);
    let (oh, ow) = (geo.out_sp[0], geo.out_sp[1]);
    for n in 0..geo.n {
        for m in 0..geo.m {
            let c = m / geo.mg;
            let plane = &x[(n * geo.c + c) * geo.in_size..][..geo.in_size];
            for r in 0..oh {
                for q in 0..ow {
                    let mut acc = 0i32;
                    for i in 0..kh {
                        for j in 0..kw {
                            let y = (r * p.strides[0] + i * p.dilations[0]) as isize
                                - p.pads[0] as isize;
                            let z = (q * p.strides[1] + j * p.dilations[1]) as isize
                                - p.pads[1] as isize;
                            let xv: i32 = if y >= 0 && y < h && z >= 0 && z < wd {
                                plane[(y * wd + z) as usize].into()
                            } else {
                                zx
                            };
                            let wv: i32 = w[m * kh * kw + i * kw + j].into();
                            acc = acc.wrapping_add((xv - zx) * (wv - zp_at(zw, m)));
                        }
                    }
                    out[((n * geo.m + m) * oh + r) * ow + q] = acc;
                }
            }
        }
    }
    Ok(())
}
