//! Every path against the reference, exactly, on random and extreme cases. Paths are forced through
//! the `with_path` constructors (not the environment), so tests run in parallel.

use super::reference::{depthwise_reference, qconv_reference, qgemm_reference};
use super::*;
use crate::testutil::Rng;
use qtool_tensor::quant::requantize;

/// The paths this CPU runs (printing the ones skipped).
fn paths() -> Vec<KernelPath> {
    let mut v = Vec::new();
    for p in KernelPath::ALL {
        if p.is_available() {
            v.push(p);
        } else {
            eprintln!("int8 path {} not available on this CPU: skipped", p.name());
        }
    }
    eprintln!(
        "int8 paths tested: {:?}",
        v.iter().map(|p| p.name()).collect::<Vec<_>>()
    );
    v
}

#[derive(Clone, Copy, Debug)]
enum Fill {
    Random,
    Max,
    Min,
    Alternate,
}

fn gen_vals<T: QType>(rng: &mut Rng, n: usize, fill: Fill) -> Vec<T> {
    (0..n)
        .map(|i| {
            let v = match fill {
                Fill::Random => T::QMIN + rng.range(0, (T::QMAX - T::QMIN) as usize) as i32,
                Fill::Max => T::QMAX,
                Fill::Min => T::QMIN,
                Fill::Alternate => {
                    if i % 2 == 0 {
                        T::QMAX
                    } else {
                        T::QMIN
                    }
                }
            };
            T::from_i32_unchecked(v)
        })
        .collect()
}

fn zp<T: QType>(rng: &mut Rng, fill: Fill) -> i32 {
    match fill {
        Fill::Random => T::QMIN + rng.range(0, (T::QMAX - T::QMIN) as usize) as i32,
        Fill::Max => T::QMIN,
        Fill::Min => T::QMAX,
        Fill::Alternate => {
            if rng.bool() {
                T::QMIN
            } else {
                T::QMAX
            }
        }
    }
}

fn zps<T: QType>(rng: &mut Rng, channels: usize, fill: Fill) -> Vec<i32> {
    match rng.range(0, 2) {
        0 => vec![zp::<T>(rng, fill)],
        1 => vec![0],
        _ => (0..channels).map(|_| zp::<T>(rng, fill)).collect(),
    }
}

fn fill_of(rng: &mut Rng) -> Fill {
    match rng.range(0, 9) {
        0 => Fill::Max,
        1 => Fill::Min,
        2 => Fill::Alternate,
        _ => Fill::Random,
    }
}

/// Checks the three stages of `run` (one call per stage) against `want` (raw accumulators,
/// `chan(i)` = the output channel of element `i`).
fn check_stages(
    rng: &mut Rng,
    want: &[i32],
    channels: usize,
    chan: impl Fn(usize) -> usize,
    mut run: impl FnMut(&OutputStage<'_>, StageOut<'_>) -> Result<()>,
    ctx: &str,
) {
    let mut got = vec![i32::MIN; want.len()];
    run(&OutputStage::Raw, StageOut::I32(&mut got)).unwrap();
    assert_eq!(got, want, "raw accumulators differ: {ctx}");

    let bias: Vec<i32> = (0..channels)
        .map(|_| rng.range(0, 2000) as i32 - 1000)
        .collect();
    let mult: Vec<f32> = if rng.bool() {
        vec![rng.f32().abs() * 0.01 + 1e-5]
    } else {
        (0..channels)
            .map(|_| rng.f32().abs() * 0.01 + 1e-5)
            .collect()
    };
    let use_bias = rng.bool();
    let mult_of = |c: usize| mult[if mult.len() == 1 { 0 } else { c }];
    let acc_of = |i: usize| {
        if use_bias {
            want[i].wrapping_add(bias[chan(i)])
        } else {
            want[i]
        }
    };
    let zp_u8 = rng.range(0, 255) as i32;
    let stage = OutputStage::Requantize {
        bias: use_bias.then_some(&bias[..]),
        multiplier: &mult,
        zero_point: zp_u8,
    };
    let mut q = vec![0u8; want.len()];
    run(&stage, StageOut::U8(&mut q)).unwrap();
    for (i, &g) in q.iter().enumerate() {
        let w = requantize::<u8>(acc_of(i), mult_of(chan(i)), zp_u8);
        assert_eq!(
            g,
            w,
            "u8 requantize of element {i} (acc {}): {ctx}",
            acc_of(i)
        );
    }
    let zp_i8 = rng.range(0, 255) as i32 - 128;
    let stage = OutputStage::Requantize {
        bias: use_bias.then_some(&bias[..]),
        multiplier: &mult,
        zero_point: zp_i8,
    };
    let mut q = vec![0i8; want.len()];
    run(&stage, StageOut::I8(&mut q)).unwrap();
    for (i, &g) in q.iter().enumerate() {
        let w = requantize::<i8>(acc_of(i), mult_of(chan(i)), zp_i8);
        assert_eq!(g, w, "i8 requantize of element {i}: {ctx}");
    }

    let scale_a = rng.f32().abs() * 0.1 + 1e-3;
    let scale_b: Vec<f32> = (0..channels)
        .map(|_| rng.f32().abs() * 0.1 + 1e-3)
        .collect();
    let fbias: Vec<f32> = rng.vec(channels);
    let stage = OutputStage::Dequantize {
        scale_a,
        scale_b: &scale_b,
        bias: use_bias.then_some(&fbias[..]),
    };
    let mut f = vec![f32::NAN; want.len()];
    run(&stage, StageOut::F32(&mut f)).unwrap();
    for (i, &g) in f.iter().enumerate() {
        let c = chan(i);
        let mut w = want[i] as f32 * (scale_a * scale_b[c]);
        if use_bias {
            w += fbias[c];
        }
        assert_eq!(g.to_bits(), w.to_bits(), "f32 output of element {i}: {ctx}");
    }
}

enum StageOut<'a> {
    I32(&'a mut [i32]),
    U8(&'a mut [u8]),
    I8(&'a mut [i8]),
    F32(&'a mut [f32]),
}

macro_rules! call_out {
    ($out:expr, |$o:ident| $body:expr) => {
        match $out {
            StageOut::I32($o) => $body,
            StageOut::U8($o) => $body,
            StageOut::I8($o) => $body,
            StageOut::F32($o) => $body,
        }
    };
}

fn gemm_case<A: QType, B: QType>(rng: &mut Rng, path: KernelPath, m: usize, k: usize, n: usize) {
    let fill = fill_of(rng);
    let batch = if rng.range(0, 4) == 0 {
        vec![2]
    } else {
        vec![]
    };
    let mut a_shape = batch.clone();
    a_shape.extend([m, k]);
    let a = gen_vals::<A>(rng, a_shape.iter().product(), fill);
    let b = gen_vals::<B>(rng, k * n, fill);
    let za = zp::<A>(rng, fill);
    let zb = zps::<B>(rng, n, fill);
    let mut want = vec![0i32; a.len() / k.max(1) * n];
    if k == 0 {
        want = vec![0; batch.iter().product::<usize>() * m * n];
    }
    qgemm_reference(&a, &a_shape, za, &b, &[k, n], &zb, &mut want).unwrap();
    let packed = PackedB::with_path(path, &b, &[k, n], &zb).unwrap();
    assert_eq!(
        qgemm_output_shape(&a_shape, &packed)
            .unwrap()
            .iter()
            .product::<usize>(),
        want.len()
    );
    let ctx = format!(
        "{} {}x{} a{a_shape:?} k{k} n{n} za {za} zb {zb:?} fill {fill:?}",
        path.name(),
        std::any::type_name::<A>(),
        std::any::type_name::<B>()
    );
    check_stages(
        rng,
        &want,
        n,
        |i| i % n,
        |stage, out| call_out!(out, |o| qgemm(&a, &a_shape, za, &packed, stage, o)),
        &ctx,
    );
}

#[test]
fn qgemm_matches_reference_on_every_path() {
    let mut rng = Rng::new(7);
    for path in paths() {
        for it in 0..40 {
            let (m, k, n) = (rng.range(1, 70), rng.range(1, 70), rng.range(1, 70));
            match it % 4 {
                0 => gemm_case::<u8, i8>(&mut rng, path, m, k, n),
                1 => gemm_case::<u8, u8>(&mut rng, path, m, k, n),
                2 => gemm_case::<i8, i8>(&mut rng, path, m, k, n),
                _ => gemm_case::<i8, u8>(&mut rng, path, m, k, n),
            }
        }
        // Larger, parallel, K not a multiple of 4/16/64.
        gemm_case::<u8, i8>(&mut rng, path, 67, 771, 97);
        gemm_case::<i8, u8>(&mut rng, path, 33, 130, 129);
    }
}

#[test]
fn extreme_values_are_exact_on_every_path() {
    // 255 x -128 with zero zero-points: every AVX2 i16 pair is 2 * 255 * -128 = -65280, which a
    // saturating vpmaddubsw would clamp to -32768.
    for path in paths() {
        for (k, n) in [(1, 1), (3, 5), (64, 33), (67, 70), (1000, 17)] {
            let a = vec![255u8; 9 * k];
            for bv in [-128i8, 127] {
                let b = vec![bv; k * n];
                let packed = PackedB::with_path(path, &b, &[k, n], &[0]).unwrap();
                let mut got = vec![0i32; 9 * n];
                qgemm(&a, &[9, k], 0, &packed, &OutputStage::Raw, &mut got).unwrap();
                let want = 255 * bv as i32 * k as i32;
                assert!(
                    got.iter().all(|&g| g == want),
                    "{} k {k}: {got:?} != {want}",
                    path.name()
                );
            }
            // Largest |(a - za) * (b - zb)|: (0 - 255) * (-128 - 127) for u8 x i8 with zero points.
            let a = vec![0u8; 3 * k];
            let b = vec![-128i8; k * n];
            let packed = PackedB::with_path(path, &b, &[k, n], &[127]).unwrap();
            let mut got = vec![0i32; 3 * n];
            qgemm(&a, &[3, k], 255, &packed, &OutputStage::Raw, &mut got).unwrap();
            assert!(
                got.iter().all(|&g| g == 255 * 255 * k as i32),
                "{}",
                path.name()
            );
        }
    }
}

struct ConvCase {
    x_shape: Vec<usize>,
    w_shape: Vec<usize>,
    p: QConvParams,
}

fn conv_case<X: QType, W: QType>(rng: &mut Rng, path: KernelPath, c: &ConvCase) {
    let fill = fill_of(rng);
    let x = gen_vals::<X>(rng, c.x_shape.iter().product(), fill);
    let w = gen_vals::<W>(rng, c.w_shape.iter().product(), fill);
    let zx = zp::<X>(rng, fill);
    let m = c.w_shape[0];
    let zw = zps::<W>(rng, m, fill);
    let packed = PackedConvWeights::with_path(path, &w, &c.w_shape, &zw, c.p.group).unwrap();
    let shape = qconv_output_shape(&c.x_shape, &packed, &c.p).unwrap();
    let mut want = vec![0i32; shape.iter().product()];
    qconv_reference(&x, &c.x_shape, zx, &w, &c.w_shape, &zw, &c.p, &mut want).unwrap();
    if c.w_shape[1] == 1 && c.x_shape.len() == 4 {
        let mut dw = vec![0i32; want.len()];
        depthwise_reference(&x, &c.x_shape, zx, &w, &c.w_shape, &zw, &c.p, &mut dw).unwrap();
        assert_eq!(
            dw, want,
            "depthwise reference disagrees with conv reference"
        );
    }
    let os: usize = shape[2..].iter().product();
    let ctx = format!(
        "{} {}x{} x{:?} w{:?} {:?} zx {zx} zw {zw:?} fill {fill:?}",
        path.name(),
        std::any::type_name::<X>(),
        std::any::type_name::<W>(),
        c.x_shape,
        c.w_shape,
        c.p
    );
    check_stages(
        rng,
        &want,
        m,
        |i| (i / os) % m,
        |stage, out| call_out!(out, |o| qconv(&x, &c.x_shape, zx, &packed, &c.p, stage, o)),
        &ctx,
    );
}

fn random_conv(rng: &mut Rng) -> ConvCase {
    let nd = [1, 2, 2, 2, 3][rng.range(0, 4)];
    let kind = rng.range(0, 5); // 0 depthwise, 1 pointwise, 2 grouped, else general
    let g = match kind {
        0 => rng.range(1, 6),
        2 => rng.range(2, 3),
        _ => 1,
    };
    let cg = if kind == 0 {
        1
    } else {
        rng.range(1, if nd == 3 { 3 } else { 9 })
    };
    let mg = if kind == 0 {
        rng.range(1, 3)
    } else {
        rng.range(1, 20)
    };
    let mut p = QConvParams::new(nd);
    p.group = g;
    let mut x_shape = vec![rng.range(1, 2), g * cg];
    let mut w_shape = vec![g * mg, cg];
    for a in 0..nd {
        let k = if kind == 1 { 1 } else { rng.range(1, 4) };
        if kind != 1 {
            p.strides[a] = rng.range(1, 3);
            p.dilations[a] = rng.range(1, 2);
            p.pads[a] = rng.range(0, 2);
            p.pads[nd + a] = rng.range(0, 2);
        }
        let eff = (k - 1) * p.dilations[a] + 1;
        let lo = eff.saturating_sub(p.pads[a] + p.pads[nd + a]).max(1);
        let hi = if nd == 3 {
            6
        } else if nd == 2 {
            13
        } else {
            40
        };
        x_shape.push(rng.range(lo, hi.max(lo)));
        w_shape.push(k);
    }
    ConvCase {
        x_shape,
        w_shape,
        p,
    }
}

#[test]
fn qconv_matches_reference_on_every_path() {
    let mut rng = Rng::new(11);
    for path in paths() {
        for it in 0..60 {
            let c = random_conv(&mut rng);
            match it % 4 {
                0 => conv_case::<u8, i8>(&mut rng, path, &c),
                1 => conv_case::<u8, u8>(&mut rng, path, &c),
                2 => conv_case::<i8, i8>(&mut rng, path, &c),
                _ => conv_case::<i8, u8>(&mut rng, path, &c),
            }
        }
    }
}

#[test]
fn qconv_fixed_shapes_on_every_path() {
    let mut rng = Rng::new(3);
    let mk = |x: &[usize], w: &[usize], s: usize, d: usize, pad: usize, g: usize| {
        let nd = x.len() - 2;
        let mut p = QConvParams::new(nd);
        p.strides = vec![s; nd];
        p.dilations = vec![d; nd];
        p.pads = vec![pad; 2 * nd];
        p.group = g;
        ConvCase {
            x_shape: x.to_vec(),
            w_shape: w.to_vec(),
            p,
        }
    };
    let cases = [
        mk(&[1, 16, 20, 20], &[24, 16, 3, 3], 1, 1, 1, 1), // general, padding
        mk(&[2, 7, 9, 11], &[5, 7, 1, 1], 1, 1, 0, 1),     // pointwise
        mk(&[1, 6, 9, 11], &[6, 6, 1, 1], 2, 1, 0, 1),     // 1x1 with stride: im2col
        mk(&[1, 8, 15, 14], &[8, 1, 3, 3], 2, 1, 1, 8),    // depthwise, stride 2
        mk(&[1, 4, 15, 14], &[12, 1, 5, 5], 1, 2, 3, 4),   // depthwise x3 multiplier, dilation
        mk(&[1, 6, 9, 17], &[6, 1, 3, 3], 1, 1, 1, 6),     // depthwise 3x3 fused rows, padded
        mk(&[1, 5, 7, 3], &[10, 1, 3, 3], 1, 1, 0, 5),     // depthwise 3x3 fused, one column
        mk(&[1, 3, 6, 2], &[3, 1, 3, 3], 1, 1, 2, 3),      // depthwise 3x3, no interior column
        mk(&[1, 4, 8, 40], &[4, 1, 3, 3], 1, 1, 2, 4),     // depthwise 3x3, pad 2
        mk(&[1, 12, 10, 10], &[9, 4, 3, 3], 1, 2, 2, 3),   // grouped, dilated
        mk(&[1, 3, 300], &[4, 3, 5], 3, 1, 2, 1),          // 1-d
        mk(&[1, 64, 30, 30], &[64, 64, 3, 3], 1, 1, 1, 1), // many tiles, parallel
        mk(&[1, 32, 9, 15], &[40, 32, 1, 1], 1, 1, 0, 1), // pointwise, SIMD-packed groups + tail panel
        mk(&[1, 36, 5, 71], &[8, 36, 1, 1], 1, 1, 0, 1),  // pointwise, full panels + partial one
        mk(&[1, 3, 41, 38], &[16, 3, 7, 7], 2, 1, 3, 1),  // stem-like 7x7 stride 2, K % 4 != 0
        mk(&[1, 8, 12, 70], &[20, 8, 3, 3], 1, 1, 1, 1),  // direct: grid rows over several panels
        mk(&[1, 5, 17, 23], &[9, 5, 3, 3], 2, 2, 2, 1),   // direct: stride 2 phases, dilation 2
        mk(&[1, 4, 13, 29], &[7, 4, 2, 5], 3, 1, 2, 1),   // direct: stride 3, even kernel
        mk(&[1, 16, 14, 14], &[32, 16, 1, 1], 2, 1, 0, 1), // direct: 1x1 stride 2 (downsample)
        mk(&[2, 6, 3, 1], &[4, 6, 1, 1], 1, 1, 2, 1),     // direct: one input column, wide pads
        mk(&[1, 6, 30, 33], &[6, 1, 7, 7], 2, 1, 3, 6),   // depthwise f32 form, stride 2 phases
        mk(&[1, 3, 20, 41], &[6, 1, 3, 3], 3, 2, 1, 3),   // depthwise stride 3, dilation 2
        mk(&[1, 2, 12, 21], &[2, 1, 9, 9], 1, 1, 4, 2),   // depthwise 81 taps: i32 form
        mk(&[1, 128, 6, 7], &[200, 128, 3, 3], 1, 1, 1, 1), // K blocks and row chunks
        mk(&[1, 24, 9, 58], &[24, 1, 3, 3], 1, 1, 1, 24), // depthwise, several 16-lane chunks
    ];
    for path in paths() {
        for c in &cases {
            conv_case::<u8, i8>(&mut rng, path, c);
            conv_case::<i8, u8>(&mut rng, path, c);
        }
    }
}

#[test]
fn bad_arguments_are_errors() {
    let b = vec![1i8; 12];
    assert!(PackedB::with_path(KernelPath::Portable, &b, &[3, 5], &[0]).is_err());
    assert!(PackedB::with_path(KernelPath::Portable, &b, &[3, 4], &[0, 0]).is_err());
    let packed = PackedB::with_path(KernelPath::Portable, &b, &[3, 4], &[0]).unwrap();
    let a = vec![0u8; 6];
    let mut out = vec![0i32; 8];
    assert!(qgemm(&a, &[2, 3], 0, &packed, &OutputStage::Raw, &mut out).is_ok());
    assert!(qgemm(&a, &[3, 2], 0, &packed, &OutputStage::Raw, &mut out).is_err());
    assert!(qgemm(&a, &[2, 3], 0, &packed, &OutputStage::Raw, &mut out[..7]).is_err());
    assert!(
        qgemm(
            &[0i8; 6],
            &[2, 3],
            200,
            &packed,
            &OutputStage::Raw,
            &mut out
        )
        .is_err()
    );
    let mut q = vec![0u8; 8];
    // Raw stage into u8, and an out-of-range output zero point.
    assert!(qgemm(&a, &[2, 3], 0, &packed, &OutputStage::Raw, &mut q).is_err());
    let st = OutputStage::Requantize {
        bias: None,
        multiplier: &[0.5],
        zero_point: 300,
    };
    assert!(qgemm(&a, &[2, 3], 0, &packed, &st, &mut q).is_err());
    let st = OutputStage::Requantize {
        bias: None,
        multiplier: &[0.5, 0.5],
        zero_point: 3,
    };
    assert!(qgemm(&a, &[2, 3], 0, &packed, &st, &mut q).is_err());

    let w = vec![0u8; 2 * 3 * 9];
    assert!(
        PackedConvWeights::with_path(KernelPath::Portable, &w, &[2, 3, 3, 3], &[0], 4).is_err()
    );
    let pw =
        PackedConvWeights::with_path(KernelPath::Portable, &w, &[2, 3, 3, 3], &[0], 1).unwrap();
    let x = vec![0u8; 3 * 16];
    let mut out = vec![0i32; 2 * 4];
    let mut p = QConvParams::new(2);
    assert!(qconv(&x, &[1, 3, 4, 4], 0, &pw, &p, &OutputStage::Raw, &mut out).is_ok());
    p.group = 3;
    assert!(qconv(&x, &[1, 3, 4, 4], 0, &pw, &p, &OutputStage::Raw, &mut out).is_err());
    p.group = 1;
    p.strides = vec![0, 1];
    assert!(qconv(&x, &[1, 3, 4, 4], 0, &pw, &p, &OutputStage::Raw, &mut out).is_err());
    p.strides = vec![1, 1];
    assert!(qconv(&x, &[1, 3, 2, 2], 0, &pw, &p, &OutputStage::Raw, &mut out).is_err());
}

#[test]
fn env_choice_parses_and_falls_back() {
    assert_eq!(resolve_env_choice(None), KernelPath::best());
    assert_eq!(resolve_env_choice(Some("portable")), KernelPath::Portable);
    assert_eq!(resolve_env_choice(Some("bogus")), KernelPath::best());
    for p in KernelPath::ALL {
        assert_eq!(KernelPath::from_name(p.name()), Some(p));
        let want = if p.is_available() {
            p
        } else {
            KernelPath::best()
        };
        assert_eq!(resolve_env_choice(Some(p.name())), want);
    }
}

#[test]
fn reference_small_example() {
    // a = [[1, 2], [3, 4]] (za 1), b = [[5, 6], [7, 8]] (zb [5, 0]).
    let a = [1u8, 2, 3, 4];
    let b = [5u8, 6, 7, 8];
    let mut out = [0i32; 4];
    qgemm_reference(&a, &[2, 2], 1, &b, &[2, 2], &[5, 0], &mut out).unwrap();
    // Row 1, column 0: (3 - 1) * (5 - 5) + (4 - 1) * (7 - 5) = 6.
    assert_eq!(out, [2, 8, 6, 2 * 6 + 3 * 8]);
}

#[test]
fn non_finite_and_huge_multipliers_follow_requantize() {
    let accs: Vec<i32> = vec![
        0,
        1,
        -1,
        7,
        -7,
        1 << 20,
        -(1 << 20),
        i32::MAX,
        i32::MIN,
        3,
        5,
        11,
    ];
    for path in paths() {
        let k = 1;
        let n = accs.len();
        // out[0][j] = (a - 0) * (b[j] - 0) with a = 1: the accumulators themselves (clamped to i8).
        let b: Vec<i8> = accs.iter().map(|&v| v.clamp(-128, 127) as i8).collect();
        let packed = PackedB::with_path(path, &b, &[k, n], &[0]).unwrap();
        for m in [
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e38,
            -1e38,
            0.5,
            -0.5,
            0.0,
            -0.0,
        ] {
            let mult: Vec<f32> = (0..n).map(|j| if j % 2 == 0 { m } else { 0.25 }).collect();
            for ms in [&[m][..], &mult[..]] {
                for zp in [0, 100, 255] {
                    let st = OutputStage::Requantize {
                        bias: None,
                        multiplier: ms,
                        zero_point: zp,
                    };
                    let mut q = vec![0u8; n];
                    qgemm(&[1u8], &[1, 1], 0, &packed, &st, &mut q).unwrap();
                    for j in 0..n {
                        let mj = ms[if ms.len() == 1 { 0 } else { j }];
                        let want = requantize::<u8>(b[j] as i32, mj, zp);
                        assert_eq!(q[j], want, "{} m {mj} zp {zp} acc {}", path.name(), b[j]);
                    }
                }
            }
        }
    }
}
