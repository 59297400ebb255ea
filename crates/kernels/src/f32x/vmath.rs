//! Vectorized f32 `exp`-based activations (Sigmoid, SiLU `x * sigmoid(x)`): one branch-free scalar
//! formula that the compiler vectorizes, compiled for AVX-512, for AVX2+FMA and for the baseline
//! target, chosen at run time. Every path gives bit-identical results (no fused multiply-adds), so
//! the op, the fused activation and every CPU agree.
//!
//! `exp(v)`: `v` clamped to `[-87, 88]` (keeps `2^n` a normal number), `n = round(v * log2 e)`,
//! `r = v - n * ln 2` in two parts (Cody-Waite), `exp(r)` by a degree-7 polynomial
//! `1 + r + r^2 * P(r)` with the classic minimax coefficients for `[-ln2/2, ln2/2]`, times `2^n`
//! built in the exponent bits. Relative error about 2 ulp over the clamped range; sigmoid within
//! 3e-7 relative (tests bound it against an f64 reference). Outside the range the clamp only
//! changes results below `1e-38` (sigmoid of `x < -88` is about `6e-39` instead of smaller).
//! NaN stays NaN (the clamp is written with comparisons that let NaN through).

const EXP_LO: f32 = -87.0;
const EXP_HI: f32 = 88.0;
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split so that `n * LN2_HI` is exact for `|n| <= 128`.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// `1.5 * 2^23`: adding it rounds to an integer (half to even) and leaves it in the low mantissa.
const ROUND_MAGIC: f32 = 12_582_912.0;
const P0: f32 = 0.5;
const P1: f32 = 1.666_666_5e-1;
const P2: f32 = 4.166_579_6e-2;
const P3: f32 = 8.333_452e-3;
const P4: f32 = 1.398_2e-3;
const P5: f32 = 1.987_569_1e-4;

/// `exp(v)` as described in the module docs (branch-free, vectorizable).
#[inline(always)]
fn exp_core(v: f32) -> f32 {
    let v = if v < EXP_LO { EXP_LO } else { v };
    let v = if v > EXP_HI { EXP_HI } else { v };
    let t = v * LOG2E + ROUND_MAGIC;
    let n = t - ROUND_MAGIC;
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let r = v - n * LN2_HI;
    let r = r - n * LN2_LO;
    let p = ((((P5 * r + P4) * r + P3) * r + P2) * r + P1) * r + P0;
    let e = (p * (r * r) + r) + 1.0;
    let scale = f32::from_bits((ni.wrapping_add(127) << 23) as u32);
    e * scale
}

/// `1 / (1 + exp(-x))`.
#[inline(always)]
fn sigmoid1(x: f32) -> f32 {
    1.0 / (1.0 + exp_core(-x))
}

/// Which activation a pass computes.
#[derive(Clone, Copy)]
enum Kind {
    Sigmoid,
    Silu,
}

#[inline(always)]
fn body(kind: Kind, xs: &mut [f32]) {
    match kind {
        Kind::Sigmoid => {
            for x in xs {
                *x = sigmoid1(*x);
            }
        }
        Kind::Silu => {
            for x in xs {
                *x *= sigmoid1(*x);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn body_avx512(kind: Kind, xs: &mut [f32]) {
    body(kind, xs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn body_avx2(kind: Kind, xs: &mut [f32]) {
    body(kind, xs)
}

/// The code paths this CPU can run (always `Portable`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    Portable,
    Avx2,
    Avx512,
}

fn best_path() -> Path {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Path::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Path::Avx2;
        }
    }
    Path::Portable
}

fn run(path: Path, kind: Kind, xs: &mut [f32]) {
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 if std::arch::is_x86_feature_detected!("avx512f") => {
            // SAFETY: the CPU supports avx512f (checked on this line).
            unsafe { body_avx512(kind, xs) }
        }
        #[cfg(target_arch = "x86_64")]
        Path::Avx2
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma") =>
        {
            // SAFETY: the CPU supports avx2 and fma (checked on these lines).
            unsafe { body_avx2(kind, xs) }
        }
        _ => body(kind, xs),
    }
}

/// `x = 1 / (1 + exp(-x))` in place, on the fastest path this CPU has.
pub(crate) fn sigmoid(xs: &mut [f32]) {
    run(best_path(), Kind::Sigmoid, xs)
}

/// `x = x * sigmoid(x)` (SiLU / Swish) in place: the product of `x` and exactly what [`sigmoid`]
/// gives, so it equals a Sigmoid followed by a Mul.
pub(crate) fn silu(xs: &mut [f32]) {
    run(best_path(), Kind::Silu, xs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;

    fn paths() -> Vec<Path> {
        let mut p = vec![Path::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                p.push(Path::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                p.push(Path::Avx512);
            }
        }
        p
    }

    fn inputs() -> Vec<f32> {
        let mut rng = Rng::new(3);
        let mut xs: Vec<f32> = (0..20_001).map(|i| -100.0 + i as f32 * 0.01).collect();
        xs.extend((0..5000).map(|_| rng.f32() * 30.0));
        xs.extend([
            0.0,
            -0.0,
            1e-30,
            -1e-30,
            87.0,
            -87.0,
            88.0,
            -88.0,
            89.0,
            -89.0,
            1e30,
            -1e30,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
        ]);
        xs
    }

    fn sigmoid64(x: f32) -> f64 {
        1.0 / (1.0 + (-(x as f64)).exp())
    }

    #[test]
    fn exp_is_within_3_ulp_over_its_range() {
        let mut worst = 0.0f64;
        for i in 0..=350_000 {
            let v = EXP_LO + (EXP_HI - EXP_LO) * i as f32 / 350_000.0;
            let want = (v as f64).exp();
            let got = exp_core(v) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(
            worst < 3.0 * f32::EPSILON as f64,
            "worst relative error {worst:e}"
        );
    }

    #[test]
    fn sigmoid_and_silu_match_f64_and_every_path_agrees() {
        let xs = inputs();
        let mut want_s = xs.clone();
        sigmoid(&mut want_s);
        let mut want_silu = xs.clone();
        silu(&mut want_silu);
        for (i, &x) in xs.iter().enumerate() {
            let exact = sigmoid64(x);
            let got = want_s[i] as f64;
            // Relative error where the value is a normal f32; below that the clamp documented in
            // the module docs applies (an absolute error under 1e-38).
            if exact > 1e-37 {
                let rel = ((got - exact) / exact).abs();
                assert!(
                    rel < 3e-7,
                    "sigmoid({x}) = {got}, want {exact} (rel {rel:e})"
                );
            } else {
                assert!(got.abs() < 1e-37, "sigmoid({x}) = {got}, want {exact}");
            }
            // SiLU is exactly x times the sigmoid.
            assert_eq!(
                want_silu[i].to_bits(),
                (x * want_s[i]).to_bits(),
                "silu({x})"
            );
        }
        assert_eq!(want_s[xs.len() - 3], 1.0, "sigmoid(+inf)");
        assert!(want_s[xs.len() - 2] < 1e-37, "sigmoid(-inf)");
        for p in paths() {
            for (kind, want) in [(Kind::Sigmoid, &want_s), (Kind::Silu, &want_silu)] {
                // Odd lengths and offsets exercise the vector loops' tails.
                for (lo, hi) in [(0, xs.len()), (1, 18), (3, 3), (5, 36)] {
                    let mut got = xs[lo..hi].to_vec();
                    run(p, kind, &mut got);
                    let w: Vec<u32> = want[lo..hi].iter().map(|v| v.to_bits()).collect();
                    let g: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                    assert_eq!(g, w, "{p:?} differs from the chosen path");
                }
            }
        }
    }

    #[test]
    fn nan_stays_nan() {
        for p in paths() {
            let mut v = vec![f32::NAN, 1.0, -f32::NAN, 2.0];
            run(p, Kind::Sigmoid, &mut v);
            assert!(v[0].is_nan() && v[2].is_nan() && !v[1].is_nan(), "{p:?}");
            let mut v = vec![f32::NAN; 33];
            run(p, Kind::Silu, &mut v);
            assert!(v.iter().all(|x| x.is_nan()), "{p:?}");
        }
    }
}
