//! MatMul (numpy semantics: batched, broadcast, 1-d promotion) and Gemm. f32 goes through the kernels
//! crate (strided sgemm, rayon-parallel); the other numeric types through ndarray's GEMM (matrixmultiply
//! for f64, a plain loop for integers), split over rayon tasks when large.

use super::{f32_data, f32_tensor, from_f32, kerr, numel, opt, req, to_f32, wrap};
use crate::bail;
use crate::error::OpError;
use crate::ops::OpCtx;
use ndarray::linalg::general_mat_mul;
use ndarray::{
    Array2, ArrayD, ArrayView2, ArrayViewD, ArrayViewMut2, Axis, CowArray, Ix3, IxDyn, LinalgScalar,
};
use qtool_ir::ops;
use qtool_kernels::GemmParams;
use qtool_tensor::{DType, Element, Tensor};

/// Numeric element types MatMul, Gemm and Einsum compute in.
pub(crate) trait Num: LinalgScalar + Element + Send + Sync + PartialEq {
    fn from_f32(v: f32) -> Self;
}
macro_rules! num {
    ($($t:ty),*) => { $( impl Num for $t { fn from_f32(v: f32) -> Self { v as $t } } )* };
}
num!(f32, f64, i32, i64, u32, u64);

/// Multiply-adds below which a GEMM is not split across tasks.
const PAR_MIN: usize = 1 << 18;

/// `c = alpha * a x b + beta * c`, split recursively along the larger of M and N over rayon tasks.
pub(crate) fn par_gemm<T: Num>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    beta: T,
    mut c: ArrayViewMut2<'_, T>,
    depth: u32,
) {
    let (m, k) = a.dim();
    let n = b.dim().1;
    if depth == 0 || m.saturating_mul(n).saturating_mul(k) < PAR_MIN || (m < 32 && n < 32) {
        general_mat_mul(alpha, &a, &b, beta, &mut c);
        return;
    }
    if m >= n {
        let h = m / 2;
        let (a1, a2) = a.split_at(Axis(0), h);
        let (c1, c2) = c.split_at(Axis(0), h);
        rayon::join(
            || par_gemm(alpha, a1, b, beta, c1, depth - 1),
            || par_gemm(alpha, a2, b, beta, c2, depth - 1),
        );
    } else {
        let h = n / 2;
        let (b1, b2) = b.split_at(Axis(1), h);
        let (c1, c2) = c.split_at(Axis(1), h);
        rayon::join(
            || par_gemm(alpha, a, b1, beta, c1, depth - 1),
            || par_gemm(alpha, a, b2, beta, c2, depth - 1),
        );
    }
}

/// Split depth for `threads` workers (two tasks per worker).
pub(crate) fn split_depth(threads: usize) -> u32 {
    if threads <= 1 {
        0
    } else {
        (threads * 2).next_power_of_two().trailing_zeros()
    }
}

/// Broadcasts two batch shapes (numpy rules).
fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>, OpError> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            bail!("batch dims {a:?} and {b:?} do not broadcast");
        };
    }
    Ok(out)
}

/// A broadcast `[nb, r, c]` view of `v`, copied only when the broadcast is not a plain reshape.
fn batch3<'a, T: Num>(
    v: &'a ArrayViewD<'a, T>,
    full: &[usize],
    nb: usize,
    r: usize,
    c: usize,
) -> CowArray<'a, T, Ix3> {
    let bv = v.broadcast(IxDyn(full)).expect("broadcast checked");
    match bv.into_shape_with_order((nb, r, c)) {
        Ok(x) => CowArray::from(x),
        Err(_) => {
            let owned = v
                .broadcast(IxDyn(full))
                .expect("broadcast checked")
                .to_owned();
            CowArray::from(
                owned
                    .into_shape_with_order((nb, r, c))
                    .expect("element count"),
            )
        }
    }
}

/// Numpy matmul of two arrays (any ranks >= 1): batch dims broadcast, a 1-d operand is promoted to a
/// matrix and the promoted axis removed from the result.
pub(crate) fn matmul_arrays<T: Num>(
    a: &ArrayD<T>,
    b: &ArrayD<T>,
    threads: usize,
) -> Result<ArrayD<T>, OpError> {
    if a.ndim() == 0 || b.ndim() == 0 {
        bail!(
            "MatMul inputs must have rank >= 1, got shapes {:?} and {:?}",
            a.shape(),
            b.shape()
        );
    }
    let (a1, b1) = (a.ndim() == 1, b.ndim() == 1);
    let a = if a1 {
        a.view().insert_axis(Axis(0))
    } else {
        a.view()
    };
    let b = if b1 {
        b.view().insert_axis(Axis(1))
    } else {
        b.view()
    };
    let (ra, rb) = (a.ndim(), b.ndim());
    let (m, k) = (a.shape()[ra - 2], a.shape()[ra - 1]);
    let (k2, n) = (b.shape()[rb - 2], b.shape()[rb - 1]);
    if k != k2 {
        bail!(
            "MatMul inner dims differ: {:?} x {:?}",
            a.shape(),
            b.shape()
        );
    }
    let batch = broadcast_shapes(&a.shape()[..ra - 2], &b.shape()[..rb - 2])?;
    let nb: usize = batch.iter().product();
    let depth = split_depth(threads);
    let mut out_shape = batch.clone();
    out_shape.extend([m, n]);
    let mut out = vec![T::zero(); nb * m * n];
    if out.is_empty() {
        // nothing to compute
    } else if rb == 2 {
        // B has no batch: fold A's batch into M (one large GEMM)
        let a_std = a.as_standard_layout();
        let a2 = a_std
            .view()
            .into_shape_with_order((nb * m, k))
            .expect("contiguous");
        let b2 = b.into_dimensionality::<ndarray::Ix2>().expect("rank 2");
        let c = ArrayViewMut2::from_shape((nb * m, n), &mut out[..]).expect("sizes");
        par_gemm(T::one(), a2, b2, T::zero(), c, depth);
    } else {
        let mut a_sh = batch.clone();
        a_sh.extend([m, k]);
        let mut b_sh = batch.clone();
        b_sh.extend([k, n]);
        let a3 = batch3(&a, &a_sh, nb, m, k);
        let b3 = batch3(&b, &b_sh, nb, k, n);
        let per_task_depth = if nb >= threads { 0 } else { depth };
        let each = |(i, c): (usize, &mut [T])| {
            let cv = ArrayViewMut2::from_shape((m, n), c).expect("sizes");
            par_gemm(
                T::one(),
                a3.index_axis(Axis(0), i),
                b3.index_axis(Axis(0), i),
                T::zero(),
                cv,
                per_task_depth,
            );
        };
        if threads > 1 && nb > 1 && nb * m * n * k >= PAR_MIN {
            use rayon::prelude::*;
            out.par_chunks_mut(m * n).enumerate().for_each(each);
        } else {
            out.chunks_mut(m * n).enumerate().for_each(each);
        }
    }
    let mut res = ArrayD::from_shape_vec(IxDyn(&out_shape), out).expect("sizes");
    if b1 {
        let ax = Axis(res.ndim() - 1);
        res = res.remove_axis(ax);
    }
    if a1 {
        let ax = Axis(if b1 { res.ndim() - 1 } else { res.ndim() - 2 });
        res = res.remove_axis(ax);
    }
    Ok(res)
}

pub(super) fn matmul(cx: &OpCtx, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
    let a = req(inputs, 0, "A")?;
    let b = req(inputs, 1, "B")?;
    if a.dtype() != b.dtype() {
        bail!(
            "MatMul inputs have different element types {} and {}",
            a.dtype(),
            b.dtype()
        );
    }
    let out = match (a, b) {
        (Tensor::F32(_), Tensor::F32(_)) => {
            let shape = qtool_kernels::matmul_output_shape(a.shape(), b.shape()).map_err(kerr)?;
            let mut out = vec![0f32; numel(&shape)?];
            qtool_kernels::matmul(&f32_data(a)?, a.shape(), &f32_data(b)?, b.shape(), &mut out)
                .map_err(kerr)?;
            f32_tensor(&shape, out)?
        }
        (Tensor::F64(x), Tensor::F64(y)) => wrap(matmul_arrays(x, y, cx.threads)?),
        (Tensor::I32(x), Tensor::I32(y)) => wrap(matmul_arrays(x, y, cx.threads)?),
        (Tensor::I64(x), Tensor::I64(y)) => wrap(matmul_arrays(x, y, cx.threads)?),
        (Tensor::U32(x), Tensor::U32(y)) => wrap(matmul_arrays(x, y, cx.threads)?),
        (Tensor::U64(x), Tensor::U64(y)) => wrap(matmul_arrays(x, y, cx.threads)?),
        (Tensor::F16(_), _) | (Tensor::BF16(_), _) => {
            let r = matmul_arrays(
                to_f32(a)?.view::<f32>()?,
                to_f32(b)?.view::<f32>()?,
                cx.threads,
            )?;
            from_f32(Tensor::F32(r), a.dtype())?
        }
        _ => bail!("MatMul does not support element type {}", a.dtype()),
    };
    Ok(vec![out])
}

fn gemm_t<T: Num>(
    op: &ops::Gemm,
    cx: &OpCtx,
    a: &ArrayD<T>,
    b: &ArrayD<T>,
    c: Option<&ArrayD<T>>,
) -> Result<ArrayD<T>, OpError> {
    if a.ndim() != 2 || b.ndim() != 2 {
        bail!(
            "Gemm needs 2-d A and B, got shapes {:?} and {:?}",
            a.shape(),
            b.shape()
        );
    }
    let a2 = a
        .view()
        .into_dimensionality::<ndarray::Ix2>()
        .expect("rank 2");
    let b2 = b
        .view()
        .into_dimensionality::<ndarray::Ix2>()
        .expect("rank 2");
    let a2 = if op.trans_a.unwrap_or(0) != 0 {
        a2.reversed_axes()
    } else {
        a2
    };
    let b2 = if op.trans_b.unwrap_or(0) != 0 {
        b2.reversed_axes()
    } else {
        b2
    };
    let (m, k) = a2.dim();
    let (k2, n) = b2.dim();
    if k != k2 {
        bail!(
            "Gemm inner dims differ: A {:?} (transA {}) x B {:?} (transB {})",
            a.shape(),
            op.trans_a.unwrap_or(0),
            b.shape(),
            op.trans_b.unwrap_or(0)
        );
    }
    let alpha = T::from_f32(op.alpha.unwrap_or(1.0));
    let beta_f = op.beta.unwrap_or(1.0);
    let mut out = Array2::<T>::zeros((m, n));
    let mut beta = T::zero();
    if let Some(c) = c
        && beta_f != 0.0
    {
        let cb = match c.broadcast((m, n)) {
            Some(v) => v,
            None => bail!(
                "Gemm C of shape {:?} does not broadcast to [{m}, {n}]",
                c.shape()
            ),
        };
        out.assign(&cb);
        beta = T::from_f32(beta_f);
    }
    par_gemm(alpha, a2, b2, beta, out.view_mut(), split_depth(cx.threads));
    Ok(out.into_dyn())
}

pub(super) fn gemm(
    op: &ops::Gemm,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>, OpError> {
    let a = req(inputs, 0, "A")?;
    let b = req(inputs, 1, "B")?;
    let c = opt(inputs, 2);
    let d = a.dtype();
    if b.dtype() != d || c.is_some_and(|c| c.dtype() != d) {
        bail!("Gemm inputs must share one element type");
    }
    macro_rules! go {
        ($t:ty) => {
            wrap(gemm_t::<$t>(
                op,
                cx,
                a.view()?,
                b.view()?,
                c.map(|c| c.view::<$t>()).transpose()?,
            )?)
        };
    }
    let out = match d {
        DType::F32 => {
            let p = GemmParams {
                trans_a: op.trans_a.unwrap_or(0) != 0,
                trans_b: op.trans_b.unwrap_or(0) != 0,
                alpha: op.alpha.unwrap_or(1.0),
                beta: op.beta.unwrap_or(1.0),
            };
            let shape = qtool_kernels::gemm_output_shape(a.shape(), b.shape(), &p).map_err(kerr)?;
            let mut out = vec![0f32; numel(&shape)?];
            let cd = c.map(f32_data).transpose()?;
            let cs = c.map(|c| c.shape()).unwrap_or(&[]);
            qtool_kernels::gemm(
                &f32_data(a)?,
                a.shape(),
                &f32_data(b)?,
                b.shape(),
                cd.as_deref().map(|d| (d, cs)),
                &p,
                &mut out,
            )
            .map_err(kerr)?;
            f32_tensor(&shape, out)?
        }
        DType::F64 => go!(f64),
        DType::I32 => go!(i32),
        DType::I64 => go!(i64),
        DType::U32 => go!(u32),
        DType::U64 => go!(u64),
        DType::F16 | DType::BF16 => {
            let (a32, b32) = (to_f32(a)?, to_f32(b)?);
            let c32 = c.map(to_f32).transpose()?;
            let r = gemm_t::<f32>(
                op,
                cx,
                a32.view()?,
                b32.view()?,
                c32.as_ref().map(|c| c.view::<f32>()).transpose()?,
            )?;
            from_f32(Tensor::F32(r), d)?
        }
        _ => bail!("Gemm does not support element type {d}"),
    };
    Ok(vec![out])
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use qtool_ir::ops::{Gemm, MatMul};

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matmul_2d_and_large_parallel() {
        let mut rng = Rng::new(3);
        for &(m, k, n) in &[
            (2, 3, 4),
            (1, 5, 1),
            (130, 70, 90),
            (3, 200, 700),
            (0, 3, 2),
            (2, 0, 3),
        ] {
            let a = rng.vec(m * k);
            let b = rng.vec(k * n);
            let out = run(
                MatMul::default(),
                13,
                1,
                &[Some(&t(&[m, k], &a)), Some(&t(&[k, n], &b))],
            );
            assert_close(&out[0], &[m, n], &naive(&a, &b, m, k, n), 1e-4);
        }
    }

    #[test]
    fn matmul_batched_broadcast_and_1d() {
        let mut rng = Rng::new(4);
        // [2,1,3,4] x [3,4,5] -> [2,3,3,5]
        let a = rng.vec(2 * 3 * 4);
        let b = rng.vec(3 * 4 * 5);
        let out = run(
            MatMul::default(),
            13,
            1,
            &[Some(&t(&[2, 1, 3, 4], &a)), Some(&t(&[3, 4, 5], &b))],
        );
        let mut want = vec![];
        for i in 0..2 {
            for j in 0..3 {
                want.extend(naive(
                    &a[i * 12..(i + 1) * 12],
                    &b[j * 20..(j + 1) * 20],
                    3,
                    4,
                    5,
                ));
            }
        }
        assert_close(&out[0], &[2, 3, 3, 5], &want, 1e-5);
        // [2,3,4] x [4,5]: batch folded into M
        let a = rng.vec(24);
        let b = rng.vec(20);
        let out = run(
            MatMul::default(),
            13,
            1,
            &[Some(&t(&[2, 3, 4], &a)), Some(&t(&[4, 5], &b))],
        );
        assert_close(&out[0], &[2, 3, 5], &naive(&a, &b, 6, 4, 5), 1e-5);
        // 1-d cases
        let v = rng.vec(4);
        let out = run(
            MatMul::default(),
            13,
            1,
            &[Some(&t(&[4], &v)), Some(&t(&[4, 5], &b))],
        );
        assert_close(&out[0], &[5], &naive(&v, &b, 1, 4, 5), 1e-5);
        let out = run(
            MatMul::default(),
            13,
            1,
            &[Some(&t(&[2, 3, 4], &a)), Some(&t(&[4], &v))],
        );
        assert_close(&out[0], &[2, 3], &naive(&a, &v, 6, 4, 1), 1e-5);
        let out = run(
            MatMul::default(),
            13,
            1,
            &[Some(&t(&[4], &v)), Some(&t(&[4], &v))],
        );
        assert_close(&out[0], &[], &[v.iter().map(|x| x * x).sum()], 1e-5);
        let out = run(
            MatMul::default(),
            13,
            1,
            &[
                Some(&t(&[4], &v)),
                Some(&t(&[2, 4, 5], &[b.clone(), b.clone()].concat())),
            ],
        );
        let w = naive(&v, &b, 1, 4, 5);
        assert_close(&out[0], &[2, 5], &[w.clone(), w].concat(), 1e-5);
        // integers
        let ai = Tensor::from_vec(&[2, 2], vec![1i64, 2, 3, 4]).unwrap();
        let out = run(MatMul::default(), 13, 1, &[Some(&ai), Some(&ai)]);
        assert_eq!(out[0].to_i64_vec().unwrap(), vec![7, 10, 15, 22]);
        assert!(
            run_err(
                MatMul::default(),
                13,
                &[Some(&t(&[2, 3], &a[..6])), Some(&t(&[2, 3], &a[..6]))]
            )
            .contains("inner dims")
        );
    }

    #[test]
    fn gemm_transposes_alpha_beta_and_c_broadcast() {
        let mut rng = Rng::new(5);
        let (m, k, n) = (3, 4, 5);
        let a = rng.vec(m * k);
        let b = rng.vec(k * n);
        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect(); // [k, m]
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect(); // [n, k]
        let c = rng.vec(n);
        let base = naive(&a, &b, m, k, n);
        let want: Vec<f32> = base
            .iter()
            .enumerate()
            .map(|(i, v)| 0.5 * v + 2.0 * c[i % n])
            .collect();
        let op = Gemm {
            alpha: Some(0.5),
            beta: Some(2.0),
            trans_a: Some(1),
            trans_b: Some(1),
            ..Default::default()
        };
        let out = run(
            op,
            13,
            1,
            &[
                Some(&t(&[k, m], &at)),
                Some(&t(&[n, k], &bt)),
                Some(&t(&[n], &c)),
            ],
        );
        assert_close(&out[0], &[m, n], &want, 1e-5);
        // no C; scalar C; column C [m, 1]
        let out = run(
            Gemm::default(),
            13,
            1,
            &[Some(&t(&[m, k], &a)), Some(&t(&[k, n], &b))],
        );
        assert_close(&out[0], &[m, n], &base, 1e-5);
        let out = run(
            Gemm::default(),
            13,
            1,
            &[
                Some(&t(&[m, k], &a)),
                Some(&t(&[k, n], &b)),
                Some(&t(&[], &[1.0])),
            ],
        );
        assert_close(
            &out[0],
            &[m, n],
            &base.iter().map(|v| v + 1.0).collect::<Vec<_>>(),
            1e-5,
        );
        let col = [1.0, 2.0, 3.0];
        let out = run(
            Gemm::default(),
            13,
            1,
            &[
                Some(&t(&[m, k], &a)),
                Some(&t(&[k, n], &b)),
                Some(&t(&[m, 1], &col)),
            ],
        );
        let want: Vec<f32> = base
            .iter()
            .enumerate()
            .map(|(i, v)| v + col[i / n])
            .collect();
        assert_close(&out[0], &[m, n], &want, 1e-5);
        assert!(
            run_err(
                Gemm::default(),
                13,
                &[
                    Some(&t(&[m, k], &a)),
                    Some(&t(&[k, n], &b)),
                    Some(&t(&[2], &[1.0, 2.0]))
                ]
            )
            .contains("broadcast")
        );
    }
}
