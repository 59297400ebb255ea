//! ONNX `Gemm` (transA/transB/alpha/beta, unidirectionally broadcast C) and `MatMul` (numpy semantics:
//! 1-d promotion, broadcast batch dims) in f32, all through matrixmultiply's strided sgemm: transposes
//! are strided views, never copies. Buffers are flat row-major slices with explicit shapes.

use crate::blas::{Mat, par_sgemm, sgemm};
use crate::error::{Result, shape_err};
use crate::util::{PAR_MIN_FLOPS, check_len, next_index, numel, strides_of};
use rayon::prelude::*;

/// Gemm attributes: `Y = alpha * op(A) * op(B) + beta * C`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmParams {
    pub trans_a: bool,
    pub trans_b: bool,
    pub alpha: f32,
    pub beta: f32,
}

impl Default for GemmParams {
    fn default() -> Self {
        GemmParams {
            trans_a: false,
            trans_b: false,
            alpha: 1.0,
            beta: 1.0,
        }
    }
}

fn gemm_dims(
    a_shape: &[usize],
    b_shape: &[usize],
    p: &GemmParams,
) -> Result<(usize, usize, usize)> {
    if a_shape.len() != 2 || b_shape.len() != 2 {
        return Err(shape_err!(
            "Gemm needs 2-d A and B, got {a_shape:?} and {b_shape:?}"
        ));
    }
    let (m, k) = if p.trans_a {
        (a_shape[1], a_shape[0])
    } else {
        (a_shape[0], a_shape[1])
    };
    let (k2, n) = if p.trans_b {
        (b_shape[1], b_shape[0])
    } else {
        (b_shape[0], b_shape[1])
    };
    if k != k2 {
        return Err(shape_err!(
            "Gemm inner dims differ: A {a_shape:?} (transA {}) and B {b_shape:?} (transB {})",
            p.trans_a,
            p.trans_b
        ));
    }
    Ok((m, k, n))
}

/// Output shape `[M, N]` of Gemm.
pub fn gemm_output_shape(
    a_shape: &[usize],
    b_shape: &[usize],
    p: &GemmParams,
) -> Result<Vec<usize>> {
    let (m, _, n) = gemm_dims(a_shape, b_shape, p)?;
    Ok(vec![m, n])
}

/// ONNX Gemm. `c` is `(data, shape)` with a shape unidirectionally broadcastable to `[M, N]`
/// (`[]`, `[N]`, `[1, N]`, `[M, 1]`, `[M, N]`, ...). With `beta == 0` C is not read.
pub fn gemm(
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    c: Option<(&[f32], &[usize])>,
    p: &GemmParams,
    out: &mut [f32],
) -> Result<()> {
    let (m, k, n) = gemm_dims(a_shape, b_shape, p)?;
    check_len("Gemm A", a.len(), numel(a_shape)?)?;
    check_len("Gemm B", b.len(), numel(b_shape)?)?;
    check_len("Gemm output", out.len(), m * n)?;
    let mut beta = 0.0;
    if let Some((cd, cs)) = c {
        check_len("Gemm C", cd.len(), numel(cs)?)?;
        if cs.len() > 2 {
            return Err(shape_err!("Gemm C {cs:?} has rank > 2"));
        }
        let mut full = [1usize; 2];
        full[2 - cs.len()..].copy_from_slice(cs);
        if !(full[0] == 1 || full[0] == m) || !(full[1] == 1 || full[1] == n) {
            return Err(shape_err!("Gemm C {cs:?} does not broadcast to [{m}, {n}]"));
        }
        if p.beta != 0.0 && m * n > 0 {
            beta = 1.0;
            let (rs, csd) = (
                if full[0] == 1 { 0 } else { full[1] },
                usize::from(full[1] != 1),
            );
            for (i, row) in out.chunks_mut(n).enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = p.beta * cd[i * rs + j * csd];
                }
            }
        }
    }
    if m * n == 0 {
        return Ok(());
    }
    let av = if p.trans_a {
        Mat::transposed(a, m)
    } else {
        Mat::row_major(a, k)
    };
    let bv = if p.trans_b {
        Mat::transposed(b, k)
    } else {
        Mat::row_major(b, n)
    };
    par_sgemm(m, k, n, p.alpha, av, bv, beta, out, n);
    Ok(())
}

struct MatMulDims {
    batch: Vec<usize>,
    a_batch_strides: Vec<usize>,
    b_batch_strides: Vec<usize>,
    m: usize,
    k: usize,
    n: usize,
    out_shape: Vec<usize>,
    b_has_batch: bool,
}

fn matmul_dims(a_shape: &[usize], b_shape: &[usize]) -> Result<MatMulDims> {
    if a_shape.is_empty() || b_shape.is_empty() {
        return Err(shape_err!(
            "MatMul inputs must have rank >= 1, got {a_shape:?} and {b_shape:?}"
        ));
    }
    let (m, k, a_b) = if a_shape.len() == 1 {
        (1, a_shape[0], &a_shape[..0])
    } else {
        let r = a_shape.len();
        (a_shape[r - 2], a_shape[r - 1], &a_shape[..r - 2])
    };
    let (k2, n, b_b) = if b_shape.len() == 1 {
        (b_shape[0], 1, &b_shape[..0])
    } else {
        let r = b_shape.len();
        (b_shape[r - 2], b_shape[r - 1], &b_shape[..r - 2])
    };
    if k != k2 {
        return Err(shape_err!(
            "MatMul inner dims differ: {a_shape:?} x {b_shape:?}"
        ));
    }
    let rank = a_b.len().max(b_b.len());
    let pad = |s: &[usize]| -> Vec<usize> {
        let mut v = vec![1; rank - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (pa, pb) = (pad(a_b), pad(b_b));
    let mut batch = Vec::with_capacity(rank);
    for i in 0..rank {
        batch.push(match (pa[i], pb[i]) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(shape_err!(
                    "MatMul batch dims of {a_shape:?} and {b_shape:?} do not broadcast"
                ));
            }
        });
    }
    let bstr = |p: &[usize], mat: usize| -> Vec<usize> {
        strides_of(p)
            .iter()
            .zip(p)
            .map(|(&s, &d)| if d == 1 { 0 } else { s * mat })
            .collect()
    };
    let mut out_shape = batch.clone();
    if a_shape.len() > 1 {
        out_shape.push(m);
    }
    if b_shape.len() > 1 {
        out_shape.push(n);
    }
    Ok(MatMulDims {
        a_batch_strides: bstr(&pa, m * k),
        b_batch_strides: bstr(&pb, k * n),
        b_has_batch: pb.iter().any(|&d| d != 1),
        batch,
        m,
        k,
        n,
        out_shape,
    })
}

/// Output shape of ONNX MatMul (numpy `matmul`): broadcast batch dims, then `M` unless A is 1-d, then
/// `N` unless B is 1-d.
pub fn matmul_output_shape(a_shape: &[usize], b_shape: &[usize]) -> Result<Vec<usize>> {
    Ok(matmul_dims(a_shape, b_shape)?.out_shape)
}

/// ONNX MatMul, writing `out` of shape [`matmul_output_shape`].
pub fn matmul(
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    out: &mut [f32],
) -> Result<()> {
    let d = matmul_dims(a_shape, b_shape)?;
    check_len("MatMul A", a.len(), numel(a_shape)?)?;
    check_len("MatMul B", b.len(), numel(b_shape)?)?;
    check_len("MatMul output", out.len(), numel(&d.out_shape)?)?;
    let (m, k, n) = (d.m, d.k, d.n);
    if out.is_empty() {
        return Ok(());
    }
    let nbatch = numel(&d.batch)?;
    if !d.b_has_batch {
        // Every batch of A meets the same B: one [batch * M, K] x [K, N] product.
        par_sgemm(
            nbatch * m,
            k,
            n,
            1.0,
            Mat::row_major(a, k),
            Mat::row_major(b, n),
            0.0,
            out,
            n,
        );
        return Ok(());
    }
    let offsets: Vec<(usize, usize)> = {
        let mut idx = vec![0usize; d.batch.len()];
        (0..nbatch)
            .map(|_| {
                let ao = idx.iter().zip(&d.a_batch_strides).map(|(i, s)| i * s).sum();
                let bo = idx.iter().zip(&d.b_batch_strides).map(|(i, s)| i * s).sum();
                next_index(&mut idx, &d.batch);
                (ao, bo)
            })
            .collect()
    };
    let one = |(t, o): (usize, &mut [f32]), par: bool| {
        let (ao, bo) = offsets[t];
        let av = Mat::row_major(&a[ao..ao + m * k], k);
        let bv = Mat::row_major(&b[bo..bo + k * n], n);
        if par {
            par_sgemm(m, k, n, 1.0, av, bv, 0.0, o, n);
        } else {
            sgemm(m, k, n, 1.0, av, bv, 0.0, o, n);
        }
    };
    if nbatch >= rayon::current_num_threads() && nbatch * m * n * k.max(1) >= PAR_MIN_FLOPS {
        out.par_chunks_mut(m * n)
            .enumerate()
            .for_each(|x| one(x, false));
    } else {
        out.chunks_mut(m * n).enumerate().for_each(|x| one(x, true));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::matmul_2d_reference;
    use crate::testutil::{Rng, assert_close};

    fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut t = vec![0.0; x.len()];
        for i in 0..rows {
            for j in 0..cols {
                t[j * rows + i] = x[i * cols + j];
            }
        }
        t
    }

    #[test]
    fn gemm_all_transposes_and_c_broadcasts() {
        let mut rng = Rng::new(11);
        for case in 0..200 {
            let (m, k, n) = if case % 50 == 0 {
                (70, 90, 130)
            } else {
                (rng.range(1, 9), rng.range(0, 9), rng.range(1, 9))
            };
            let p = GemmParams {
                trans_a: rng.bool(),
                trans_b: rng.bool(),
                alpha: rng.f32() * 2.0,
                beta: if rng.bool() { 0.0 } else { rng.f32() },
            };
            let a = rng.vec(m * k);
            let b = rng.vec(k * n);
            let c_shapes: [Vec<usize>; 6] =
                [vec![], vec![n], vec![1, n], vec![m, 1], vec![m, n], vec![1]];
            let cs = c_shapes[rng.range(0, 5)].clone();
            let cd = rng.vec(numel(&cs).unwrap());
            let use_c = rng.bool();
            let (a_in, a_shape) = if p.trans_a {
                (transpose(&a, m, k), vec![k, m])
            } else {
                (a.clone(), vec![m, k])
            };
            let (b_in, b_shape) = if p.trans_b {
                (transpose(&b, k, n), vec![n, k])
            } else {
                (b.clone(), vec![k, n])
            };
            assert_eq!(
                gemm_output_shape(&a_shape, &b_shape, &p).unwrap(),
                vec![m, n]
            );
            let mut out = vec![f32::NAN; m * n];
            gemm(
                &a_in,
                &a_shape,
                &b_in,
                &b_shape,
                use_c.then_some((&cd[..], &cs[..])),
                &p,
                &mut out,
            )
            .unwrap();
            let ab = matmul_2d_reference(&a, &b, m, k, n);
            let mut full = [1usize; 2];
            full[2 - cs.len()..].copy_from_slice(&cs);
            let want: Vec<f32> = (0..m * n)
                .map(|i| {
                    let (r, c) = (i / n, i % n);
                    let cv = if use_c && p.beta != 0.0 {
                        p.beta * cd[(r % full[0]) * full[1] + c % full[1]]
                    } else {
                        0.0
                    };
                    p.alpha * ab[i] + cv
                })
                .collect();
            assert_close(
                &out,
                &want,
                1e-4,
                1e-4,
                &format!("case {case}: m {m} k {k} n {n} {p:?} C {cs:?}"),
            );
        }
    }

    #[test]
    fn gemm_errors() {
        let p = GemmParams::default();
        let mut out = vec![0.0; 4];
        assert!(gemm(&[0.0; 6], &[2, 3], &[0.0; 6], &[2, 3], None, &p, &mut out).is_err());
        assert!(
            gemm(
                &[0.0; 4],
                &[2, 2],
                &[0.0; 4],
                &[2, 2],
                Some((&[0.0; 3], &[3])),
                &p,
                &mut out
            )
            .is_err()
        );
        assert!(
            gemm(
                &[0.0; 4],
                &[2, 2],
                &[0.0; 4],
                &[2, 2],
                Some((&[0.0; 2], &[2, 1, 1])),
                &p,
                &mut out
            )
            .is_err()
        );
        assert!(gemm(&[0.0; 4], &[4], &[0.0; 4], &[2, 2], None, &p, &mut out).is_err());
    }

    fn matmul_naive(
        a: &[f32],
        a_shape: &[usize],
        b: &[f32],
        b_shape: &[usize],
    ) -> (Vec<usize>, Vec<f32>) {
        // Promote to >= 2-d, broadcast by explicit index arithmetic.
        let a2: Vec<usize> = if a_shape.len() == 1 {
            vec![1, a_shape[0]]
        } else {
            a_shape.to_vec()
        };
        let b2: Vec<usize> = if b_shape.len() == 1 {
            vec![b_shape[0], 1]
        } else {
            b_shape.to_vec()
        };
        let rank = a2.len().max(b2.len());
        let pa: Vec<usize> = std::iter::repeat_n(1, rank - a2.len())
            .chain(a2.iter().copied())
            .collect();
        let pb: Vec<usize> = std::iter::repeat_n(1, rank - b2.len())
            .chain(b2.iter().copied())
            .collect();
        let batch: Vec<usize> = (0..rank - 2).map(|i| pa[i].max(pb[i])).collect();
        let (m, k, n) = (pa[rank - 2], pa[rank - 1], pb[rank - 1]);
        let nb: usize = batch.iter().product();
        let mut out = Vec::new();
        let mut idx = vec![0; batch.len()];
        for _ in 0..nb {
            let off = |p: &[usize], mat: usize| {
                let mut o = 0;
                for i in 0..batch.len() {
                    o = o * p[i] + if p[i] == 1 { 0 } else { idx[i] };
                }
                o * mat
            };
            let ao = off(&pa, m * k);
            let bo = off(&pb, k * n);
            out.extend(matmul_2d_reference(
                &a[ao..ao + m * k],
                &b[bo..bo + k * n],
                m,
                k,
                n,
            ));
            next_index(&mut idx, &batch);
        }
        let mut shape = batch;
        if a_shape.len() > 1 {
            shape.push(m);
        }
        if b_shape.len() > 1 {
            shape.push(n);
        }
        (shape, out)
    }

    #[test]
    fn matmul_broadcasting_and_1d_promotion() {
        let mut rng = Rng::new(12);
        let cases: &[(&[usize], &[usize], &[usize])] = &[
            (&[3], &[3], &[]),
            (&[2, 3, 4], &[4], &[2, 3]),
            (&[4], &[2, 4, 5], &[2, 5]),
            (&[2, 1, 3, 4], &[5, 4, 6], &[2, 5, 3, 6]),
            (&[3, 4], &[4, 5], &[3, 5]),
            (&[7, 3, 4], &[4, 5], &[7, 3, 5]),
            (&[1, 3, 4], &[6, 4, 5], &[6, 3, 5]),
            (&[6, 3, 4], &[1, 4, 5], &[6, 3, 5]),
            (&[2, 3, 0], &[0, 5], &[2, 3, 5]),
            (&[16, 33, 40], &[16, 40, 50], &[16, 33, 50]),
            (&[1, 150, 170], &[1, 170, 90], &[1, 150, 90]),
        ];
        for (as_, bs, want_shape) in cases {
            let a = rng.vec(numel(as_).unwrap());
            let b = rng.vec(numel(bs).unwrap());
            let shape = matmul_output_shape(as_, bs).unwrap();
            assert_eq!(&shape, want_shape);
            let mut out = vec![f32::NAN; numel(&shape).unwrap()];
            matmul(&a, as_, &b, bs, &mut out).unwrap();
            let (ns, want) = matmul_naive(&a, as_, &b, bs);
            assert_eq!(&ns, want_shape);
            assert_close(&out, &want, 1e-4, 1e-4, &format!("{as_:?} x {bs:?}"));
        }
        assert!(matmul_output_shape(&[2, 3, 4], &[3, 4, 5]).is_err());
        assert!(matmul_output_shape(&[3, 4], &[5, 6]).is_err());
        assert!(matmul_output_shape(&[], &[5, 6]).is_err());
        assert!(matmul(&[0.0; 3], &[3], &[0.0; 3], &[3], &mut []).is_err());
    }
}
