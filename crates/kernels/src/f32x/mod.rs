//! Run-time selection of the f32 GEMM kernel used by [`crate::blas`]: our own AVX-512 GEMM
//! ([`avx512`]) when the CPU has `avx512f`, otherwise matrixmultiply's portable sgemm.
//!
//! `QTOOL_F32_KERNEL=portable|avx512` (read once, on first use) forces a path for tests and
//! benchmarks; asking for `avx512` on a CPU without it falls back to `portable`.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
pub(crate) mod vmath;

use std::sync::OnceLock;

/// Which f32 GEMM implementation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum F32Kernel {
    /// matrixmultiply's sgemm (any CPU).
    Portable,
    /// [`avx512`]: BLIS-style packing and an 8x48 zmm FMA micro-kernel.
    Avx512,
}

/// Whether this CPU can run [`F32Kernel::Avx512`].
pub(crate) fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The kernel chosen for this process (CPU detection, overridable by `QTOOL_F32_KERNEL`).
pub(crate) fn selected() -> F32Kernel {
    static SEL: OnceLock<F32Kernel> = OnceLock::new();
    *SEL.get_or_init(|| {
        let want = std::env::var("QTOOL_F32_KERNEL").unwrap_or_default();
        match want.trim().to_ascii_lowercase().as_str() {
            "portable" => F32Kernel::Portable,
            "avx512" | "" if avx512_available() => F32Kernel::Avx512,
            "avx512" => {
                tracing::warn!(
                    "QTOOL_F32_KERNEL=avx512 but this CPU lacks avx512f; using portable"
                );
                F32Kernel::Portable
            }
            "" => F32Kernel::Portable,
            other => {
                tracing::warn!("unknown QTOOL_F32_KERNEL={other:?}; using automatic selection");
                if avx512_available() {
                    F32Kernel::Avx512
                } else {
                    F32Kernel::Portable
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blas::{Mat, sgemm_with};
    use crate::reference::matmul_2d_reference;
    use crate::testutil::{Rng, assert_close};

    fn kernels() -> Vec<F32Kernel> {
        let mut k = vec![F32Kernel::Portable];
        if avx512_available() {
            k.push(F32Kernel::Avx512);
        }
        k
    }

    fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut t = vec![0.0; x.len()];
        for i in 0..rows {
            for j in 0..cols {
                t[j * rows + i] = x[i * cols + j];
            }
        }
        t
    }

    /// Runs one random `m x k x n` problem (random transposes, alpha, beta, padded ldc) on `kernel`.
    fn check(rng: &mut Rng, kernel: F32Kernel, m: usize, k: usize, n: usize) {
        let a = rng.vec(m * k);
        let b = rng.vec(k * n);
        let (ta, tb) = (rng.bool(), rng.bool());
        let at = transpose(&a, m, k);
        let bt = transpose(&b, k, n);
        let av = if ta {
            Mat::transposed(&at, m)
        } else {
            Mat::row_major(&a, k)
        };
        let bv = if tb {
            Mat::transposed(&bt, k)
        } else {
            Mat::row_major(&b, n)
        };
        let alpha = [1.0, 0.5, -2.0][rng.range(0, 2)];
        let beta = [0.0, 1.0, 0.25][rng.range(0, 2)];
        let ldc = n + rng.range(0, 3);
        let c0 = rng.vec(m * ldc);
        let mut c = c0.clone();
        sgemm_with(kernel, m, k, n, alpha, av, bv, beta, &mut c, ldc);
        let ab = matmul_2d_reference(&a, &b, m, k, n);
        // Absolute slack for cancellation: |sum| can be far below sum |a||b| ~ k / 4.
        let atol = 2e-6 * (k as f32).max(1.0);
        let mut want = c0.clone();
        for i in 0..m {
            for j in 0..n {
                let old = if beta == 0.0 {
                    0.0
                } else {
                    beta * c0[i * ldc + j]
                };
                want[i * ldc + j] = alpha * ab[i * n + j] + old;
            }
        }
        let ctx = format!("{kernel:?} m={m} k={k} n={n} ta={ta} tb={tb} alpha={alpha} beta={beta}");
        assert_close(&c, &want, atol, 1e-5, &ctx);
    }

    #[test]
    fn sgemm_random_shapes_both_kernels() {
        let mut rng = Rng::new(7);
        for kernel in kernels() {
            for _ in 0..60 {
                let (m, k, n) = (rng.range(1, 300), rng.range(1, 300), rng.range(1, 300));
                check(&mut rng, kernel, m, k, n);
            }
        }
    }

    #[test]
    fn sgemm_edges_both_kernels() {
        let mut rng = Rng::new(11);
        let sizes = [
            1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 47, 48, 49, 97, 255, 256, 257,
        ];
        for kernel in kernels() {
            for &m in &[1, 3, 8, 9, 17] {
                for &n in &sizes {
                    check(&mut rng, kernel, m, [1, 5, 256, 257][n % 4], n);
                }
            }
            for &k in &[1, 2, 255, 256, 257, 513] {
                check(&mut rng, kernel, 13, k, 50);
            }
            // More than one N block (NC = 768 columns).
            check(&mut rng, kernel, 9, 20, 1700);
        }
    }

    #[test]
    fn sgemm_k_zero_scales_c() {
        for kernel in kernels() {
            let mut c = vec![2.0f32; 6];
            let e: [f32; 0] = [];
            // k == 0 goes through `sgemm`'s own early return; this just checks both agree.
            sgemm_with(
                kernel,
                2,
                0,
                3,
                1.0,
                Mat::row_major(&e, 0),
                Mat::row_major(&e, 3),
                0.5,
                &mut c,
                3,
            );
            assert_eq!(c, vec![1.0; 6]);
        }
    }
}
