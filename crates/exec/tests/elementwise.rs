//! Element-wise ops on small hand-checked cases.

mod common;
use common::*;
use qtool_ir::ops;
use qtool_tensor::{DType, Tensor, f16};

#[test]
fn activations() {
    let x = v(vec![-2f32, -0.5, 0.0, 1.0, 3.0]);
    close(&f(&run(ops::Relu {}, 17, &[&x])), &[0., 0., 0., 1., 3.]);
    close(
        &f(&run(ops::LeakyRelu { alpha: Some(0.1) }, 17, &[&x])),
        &[-0.2, -0.05, 0., 1., 3.],
    );
    close(
        &f(&run(ops::LeakyRelu::default(), 17, &[&x])),
        &[-0.02, -0.005, 0., 1., 3.],
    );
    let e = |x: f32| x.exp() - 1.0;
    close(
        &f(&run(ops::Elu::default(), 17, &[&x])),
        &[e(-2.), e(-0.5), 0., 1., 3.],
    );
    let (a, g) = (1.673_263_2f32, 1.050_701f32);
    close(
        &f(&run(ops::Selu::default(), 17, &[&x]))[..2],
        &[g * (a * (-2f32).exp() - a), g * (a * (-0.5f32).exp() - a)],
    );
    close(
        &f(&run(ops::Sigmoid {}, 17, &[&x])),
        &[0.11920292, 0.37754068, 0.5, 0.7310586, 0.95257413],
    );
    close(
        &f(&run(ops::HardSigmoid::default(), 17, &[&x])),
        &[0.1, 0.4, 0.5, 0.7, 1.0],
    );
    close(
        &f(&run(ops::HardSwish {}, 17, &[&x])),
        &[
            -2. * (0.5 - 2. / 6.0),
            -0.5 * (0.5 - 0.5 / 6.0),
            0.,
            1.0 * (1.0 / 6.0 + 0.5),
            3.,
        ],
    );
    close(
        &f(&run(ops::Softplus {}, 17, &[&x])),
        &[
            0.126928,
            0.474077,
            std::f32::consts::LN_2,
            1.3132616,
            3.0485873,
        ],
    );
    close(
        &f(&run(ops::Tanh {}, 17, &[&x]))[3..],
        &[0.7615942, 0.9950548],
    );
    // Relu on integers.
    let xi = v(vec![-3i32, 0, 4]);
    assert_eq!(
        run(ops::Relu {}, 17, &[&xi]).to_vec::<i32>().unwrap(),
        vec![0, 0, 4]
    );
}

#[test]
fn gelu_and_erf() {
    let x = v(vec![-1f32, 0.5, 1.0, 3.5]);
    close(
        &f(&run(ops::Erf {}, 13, &[&x])),
        &[-0.8427008, 0.5204999, 0.8427008, 0.999_999_3],
    );
    close(
        &f(&run(ops::Gelu::default(), 20, &[&x])),
        &[-0.15865526, 0.34573123, 0.8413447, 3.4991863],
    );
    let g = run(
        ops::Gelu {
            approximate: Some("tanh".into()),
        },
        20,
        &[&x],
    );
    close(&f(&g)[2..3], &[0.841192]);
    // f64 erf is accurate far beyond f32.
    let x64 = v(vec![0.1f64, 2.0, 4.0]);
    let r = run(ops::Erf {}, 13, &[&x64]).to_vec::<f64>().unwrap();
    for (g, w) in r.iter().zip([
        0.1124629160182849f64,
        0.9953222650189527,
        0.9999999845827421,
    ]) {
        assert!((g - w).abs() < 1e-13, "{g} vs {w}");
    }
}

#[test]
fn prelu_broadcasts_the_slope() {
    let x = t(&[1, 2, 2], vec![-1f32, 2., -3., 4.]);
    let s = t(&[2, 1], vec![0.5f32, 0.25]);
    close(
        &f(&run(ops::PRelu {}, 16, &[&x, &s])),
        &[-0.5, 2., -0.75, 4.],
    );
}

#[test]
fn clip_attrs_and_inputs() {
    let x = v(vec![-5f32, 0., 5.]);
    close(
        &f(&run(
            ops::Clip {
                min: Some(-1.0),
                max: Some(2.0),
            },
            6,
            &[&x],
        )),
        &[-1., 0., 2.],
    );
    close(
        &f(&run(
            ops::Clip {
                min: None,
                max: Some(2.0),
            },
            6,
            &[&x],
        )),
        &[-5., 0., 2.],
    );
    let lo = Tensor::scalar(-1f32);
    close(
        &f(&run(ops::Clip::default(), 13, &[&x, &lo])),
        &[-1., 0., 5.],
    );
    // max only (min absent), integers.
    let xi = v(vec![-5i64, 0, 5]);
    let hi = Tensor::scalar(1i64);
    let r = run_n(ops::Clip::default(), 13, &[Some(&xi), None, Some(&hi)], 1);
    assert_eq!(r[0].to_vec::<i64>().unwrap(), vec![-5, 0, 1]);
}

#[test]
fn unary_math() {
    let x = v(vec![0.5f32, 1.5, 2.5, -0.5, -1.5, -2.7]);
    close(
        &f(&run(ops::Round {}, 11, &[&x])),
        &[0., 2., 2., -0., -2., -3.],
    );
    close(
        &f(&run(ops::Floor {}, 13, &[&x])),
        &[0., 1., 2., -1., -2., -3.],
    );
    close(
        &f(&run(ops::Ceil {}, 13, &[&x])),
        &[1., 2., 3., -0., -1., -2.],
    );
    close(
        &f(&run(ops::Abs {}, 13, &[&x])),
        &[0.5, 1.5, 2.5, 0.5, 1.5, 2.7],
    );
    close(
        &f(&run(ops::Neg {}, 13, &[&x])),
        &[-0.5, -1.5, -2.5, 0.5, 1.5, 2.7],
    );
    close(
        &f(&run(ops::Sign {}, 13, &[&v(vec![-2f32, 0., 3.])])),
        &[-1., 0., 1.],
    );
    assert_eq!(
        run(ops::Sign {}, 13, &[&v(vec![-2i32, 0, 3])])
            .to_vec::<i32>()
            .unwrap(),
        vec![-1, 0, 1]
    );
    assert_eq!(
        run(ops::Abs {}, 13, &[&v(vec![-2i8, 3])])
            .to_vec::<i8>()
            .unwrap(),
        vec![2, 3]
    );
    let p = v(vec![1f32, 4.0]);
    close(&f(&run(ops::Sqrt {}, 13, &[&p])), &[1., 2.]);
    close(&f(&run(ops::Reciprocal {}, 13, &[&p])), &[1., 0.25]);
    close(&f(&run(ops::Log {}, 13, &[&p])), &[0., 4f32.ln()]);
    close(&f(&run(ops::Exp {}, 13, &[&p])), &[1f32.exp(), 4f32.exp()]);
    close(&f(&run(ops::Sin {}, 7, &[&p])), &[1f32.sin(), 4f32.sin()]);
    close(&f(&run(ops::Cos {}, 7, &[&p])), &[1f32.cos(), 4f32.cos()]);
    // f16 goes through f32.
    let h = v(vec![f16::from_f32(4.0)]);
    assert_eq!(
        run(ops::Sqrt {}, 13, &[&h]).to_vec::<f16>().unwrap(),
        vec![f16::from_f32(2.0)]
    );
    assert!(
        try_run(ops::Sqrt {}, 13, &[&v(vec![4i32])])
            .unwrap_err()
            .contains("i32")
    );
}

#[test]
fn arithmetic_broadcasting() {
    let a = t(&[2, 3], vec![1f32, 2., 3., 4., 5., 6.]);
    let row = v(vec![10f32, 20., 30.]);
    close(
        &f(&run(ops::Add {}, 14, &[&a, &row])),
        &[11., 22., 33., 14., 25., 36.],
    );
    let col = t(&[2, 1], vec![1f32, 2.]);
    close(
        &f(&run(ops::Mul {}, 14, &[&a, &col])),
        &[1., 2., 3., 8., 10., 12.],
    );
    let r = run(ops::Sub {}, 14, &[&col, &row]);
    assert_eq!(r.shape(), &[2, 3]);
    close(&f(&r), &[-9., -19., -29., -8., -18., -28.]);
    close(
        &f(&run(ops::Div {}, 14, &[&a, &Tensor::scalar(2f32)])),
        &[0.5, 1., 1.5, 2., 2.5, 3.],
    );
    // Channel broadcast (NCHW + C11).
    let x = t(&[1, 2, 2, 2], (0..8).map(|i| i as f32).collect());
    let b = t(&[2, 1, 1], vec![100f32, 200.]);
    close(
        &f(&run(ops::Add {}, 14, &[&x, &b])),
        &[100., 101., 102., 103., 204., 205., 206., 207.],
    );
    assert!(
        try_run(ops::Add {}, 14, &[&a, &v(vec![1f32, 2.])])
            .unwrap_err()
            .contains("broadcast")
    );
    assert!(
        try_run(ops::Add {}, 14, &[&a, &v(vec![1i64, 2, 3])])
            .unwrap_err()
            .contains("different element types")
    );
}

#[test]
fn large_broadcast_matches_naive() {
    // Big enough for the parallel paths.
    let (n, c, h, w) = (2, 8, 48, 50);
    let x: Vec<f32> = (0..n * c * h * w).map(|i| (i % 97) as f32 * 0.5).collect();
    let b: Vec<f32> = (0..c).map(|i| i as f32 - 3.0).collect();
    let xt = t(&[n, c, h, w], x.clone());
    let bt = t(&[c, 1, 1], b.clone());
    let got = f(&run(ops::Mul {}, 14, &[&xt, &bt]));
    let want: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, v)| v * b[(i / (h * w)) % c])
        .collect();
    assert_eq!(got, want);
    let same = f(&run(ops::Add {}, 14, &[&xt, &xt]));
    assert_eq!(same, x.iter().map(|v| v + v).collect::<Vec<_>>());
    let rowb = t(&[w], (0..w).map(|i| i as f32).collect());
    let got = f(&run(ops::Sub {}, 14, &[&xt, &rowb]));
    let want: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, v)| v - (i % w) as f32)
        .collect();
    assert_eq!(got, want);
    // A strided broadcast (middle axis).
    let mid = t(&[1, c, 1, w], (0..c * w).map(|i| i as f32).collect());
    let got = f(&run(ops::Add {}, 14, &[&xt, &mid]));
    let want: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, v)| v + ((i / (h * w)) % c * w + i % w) as f32)
        .collect();
    assert_eq!(got, want);
}

#[test]
fn integer_division_and_mod() {
    let a = v(vec![7i32, -7, 7, -7]);
    let b = v(vec![2i32, 2, -2, -2]);
    assert_eq!(
        run(ops::Div {}, 14, &[&a, &b]).to_vec::<i32>().unwrap(),
        vec![3, -3, -3, 3]
    );
    assert!(
        try_run(ops::Div {}, 14, &[&a, &v(vec![0i32, 1, 1, 1])])
            .unwrap_err()
            .contains("division by zero")
    );
    let a = v(vec![-7i64, 7, -7, 7]);
    let b = v(vec![3i64, -3, -3, 3]);
    assert_eq!(
        run(ops::Mod::default(), 13, &[&a, &b])
            .to_vec::<i64>()
            .unwrap(),
        vec![2, -2, -1, 1]
    );
    assert_eq!(
        run(ops::Mod { fmod: Some(1) }, 13, &[&a, &b])
            .to_vec::<i64>()
            .unwrap(),
        vec![-1, 1, -1, 1]
    );
    let fa = v(vec![5.5f32, -5.5]);
    close(
        &f(&run(
            ops::Mod { fmod: Some(1) },
            13,
            &[&fa, &Tensor::scalar(2f32)],
        )),
        &[1.5, -1.5],
    );
    assert!(try_run(ops::Mod::default(), 13, &[&fa, &Tensor::scalar(2f32)]).is_err());
    // u8 wraps like C++.
    assert_eq!(
        run(ops::Add {}, 14, &[&v(vec![250u8]), &v(vec![10u8])])
            .to_vec::<u8>()
            .unwrap(),
        vec![4]
    );
}

#[test]
fn pow_mixed_types() {
    let b = v(vec![2f32, 3.]);
    close(
        &f(&run(ops::Pow {}, 15, &[&b, &v(vec![3f32, 2.])])),
        &[8., 9.],
    );
    close(
        &f(&run(ops::Pow {}, 15, &[&b, &Tensor::scalar(2i64)])),
        &[4., 9.],
    );
    assert_eq!(
        run(
            ops::Pow {},
            15,
            &[&v(vec![2i64, 3]), &Tensor::scalar(0.5f32)]
        )
        .to_vec::<i64>()
        .unwrap(),
        vec![1, 1]
    );
    assert_eq!(
        run(ops::Pow {}, 15, &[&v(vec![2i32, 3]), &v(vec![3i32, 2])])
            .to_vec::<i32>()
            .unwrap(),
        vec![8, 9]
    );
}

#[test]
fn variadic_ops() {
    let a = v(vec![1f32, 5., f32::NAN]);
    let b = t(&[2, 1], vec![3f32, 0.]);
    let m = run(ops::Max {}, 13, &[&a, &b]);
    assert_eq!(m.shape(), &[2, 3]);
    close(&f(&m), &[3., 5., f32::NAN, 1., 5., f32::NAN]);
    close(
        &f(&run(ops::Min {}, 13, &[&a, &b])),
        &[1., 3., f32::NAN, 0., 0., f32::NAN],
    );
    let c = v(vec![1f32, 2., 3.]);
    close(&f(&run(ops::Sum {}, 13, &[&c, &c, &c])), &[3., 6., 9.]);
    close(&f(&run(ops::Sum {}, 13, &[&c])), &[1., 2., 3.]);
    close(
        &f(&run(ops::Mean {}, 13, &[&c, &v(vec![3f32, 4., 5.])])),
        &[2., 3., 4.],
    );
}

#[test]
fn comparisons_and_logic() {
    let a = v(vec![1f32, 2., f32::NAN]);
    let b = Tensor::scalar(2f32);
    let bools = |t: Tensor| t.to_vec::<bool>().unwrap();
    assert_eq!(
        bools(run(ops::Less {}, 13, &[&a, &b])),
        vec![true, false, false]
    );
    assert_eq!(
        bools(run(ops::LessOrEqual {}, 16, &[&a, &b])),
        vec![true, true, false]
    );
    assert_eq!(
        bools(run(ops::Greater {}, 13, &[&a, &b])),
        vec![false, false, false]
    );
    assert_eq!(
        bools(run(ops::GreaterOrEqual {}, 16, &[&a, &b])),
        vec![false, true, false]
    );
    assert_eq!(
        bools(run(ops::Equal {}, 13, &[&a, &b])),
        vec![false, true, false]
    );
    let s1 = v(vec!["a".to_string(), "b".to_string()]);
    let s2 = v(vec!["a".to_string(), "c".to_string()]);
    assert_eq!(
        bools(run(ops::Equal {}, 19, &[&s1, &s2])),
        vec![true, false]
    );
    let p = v(vec![true, true, false, false]);
    let q = v(vec![true, false, true, false]);
    assert_eq!(
        bools(run(ops::And {}, 7, &[&p, &q])),
        vec![true, false, false, false]
    );
    assert_eq!(
        bools(run(ops::Or {}, 7, &[&p, &q])),
        vec![true, true, true, false]
    );
    assert_eq!(
        bools(run(ops::Xor {}, 7, &[&p, &q])),
        vec![false, true, true, false]
    );
    assert_eq!(
        bools(run(ops::Not {}, 1, &[&p])),
        vec![false, false, true, true]
    );
    let c = t(&[2, 1], vec![true, false]);
    let w = run(
        ops::Where {},
        16,
        &[&c, &v(vec![1i64, 2]), &Tensor::scalar(0i64)],
    );
    assert_eq!(w.shape(), &[2, 2]);
    assert_eq!(w.to_vec::<i64>().unwrap(), vec![1, 2, 0, 0]);
    let x = v(vec![1f32, f32::NAN, f32::INFINITY, f32::NEG_INFINITY]);
    assert_eq!(
        bools(run(ops::IsNaN {}, 13, &[&x])),
        vec![false, true, false, false]
    );
    assert_eq!(
        bools(run(ops::IsInf::default(), 10, &[&x])),
        vec![false, false, true, true]
    );
    assert_eq!(
        bools(run(
            ops::IsInf {
                detect_negative: Some(0),
                detect_positive: None
            },
            10,
            &[&x]
        )),
        vec![false, false, true, false]
    );
}

#[test]
fn softmax_opsets() {
    let x = t(&[2, 3], vec![1f32, 2., 3., 1., 1., 1.]);
    let e = [1f32.exp(), 2f32.exp(), 3f32.exp()];
    let s: f32 = e.iter().sum();
    let want = [e[0] / s, e[1] / s, e[2] / s, 1. / 3., 1. / 3., 1. / 3.];
    close(&f(&run(ops::Softmax::default(), 13, &[&x])), &want);
    close(&f(&run(ops::Softmax::default(), 11, &[&x])), &want);
    let lw: Vec<f32> = want.iter().map(|v| v.ln()).collect();
    close(&f(&run(ops::LogSoftmax::default(), 13, &[&x])), &lw);
    // Opset 11 coerces to 2-D at axis 1: a [2, 1, 2] tensor normalises over the last 2 elements.
    let y = t(&[2, 1, 2], vec![0f32, 0., 1., 1.]);
    close(
        &f(&run(ops::Softmax::default(), 11, &[&y])),
        &[0.5, 0.5, 0.5, 0.5],
    );
    // Opset 13 along axis 0.
    let z = t(&[2, 2], vec![0f32, 1000., 0., 1000.]);
    close(
        &f(&run(ops::Softmax { axis: Some(0) }, 13, &[&z])),
        &[0.5, 0.5, 0.5, 0.5],
    );
    // Large values stay finite (stable).
    let big = v(vec![1000f32, 1000.]);
    close(&f(&run(ops::Softmax::default(), 13, &[&big])), &[0.5, 0.5]);
}

/// A peaked softmax over a long axis (PP-OCRv4's 6625-class head): thousands of exponentials near
/// 1e-9 must not be rounded away one by one against a sum near 1. Every output is compared, relative
/// to itself, with a float64 softmax of the same f32 logits (ORT is within 6e-6 here; an f32 running
/// sum was off by ~1e-4).
#[test]
fn softmax_long_peaked_axis_matches_f64() {
    let n = 6625;
    let logits: Vec<f32> = (0..n)
        .map(|k| {
            if k == 17 {
                12.0
            } else {
                -8.0 * ((k as f64 * 0.618_033_988_75).fract() as f32)
            }
        })
        .collect();
    let x = t(
        &[1, 2, n],
        [logits.clone(), logits.iter().map(|v| -v).collect()].concat(),
    );
    for (log, got) in [
        (false, f(&run(ops::Softmax::default(), 13, &[&x]))),
        (true, f(&run(ops::LogSoftmax::default(), 13, &[&x]))),
    ] {
        for (row, got) in got.chunks(n).enumerate() {
            let xs: Vec<f64> = x.to_vec::<f32>().unwrap()[row * n..(row + 1) * n]
                .iter()
                .map(|&v| v as f64)
                .collect();
            let m = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = xs.iter().map(|v| (v - m).exp()).sum();
            for (k, (&g, &xv)) in got.iter().zip(&xs).enumerate() {
                let want = if log {
                    xv - m - s.ln()
                } else {
                    (xv - m).exp() / s
                };
                let rel = (g as f64 - want).abs() / want.abs().max(1e-30);
                assert!(
                    // f32 rounding of `x - max` (below 32 here, so within 9.5e-7) and of exp bound
                    // what any f32 softmax can reach; the f32 running sum was off by ~1e-4.
                    rel < 3e-6,
                    "log={log} row {row} elem {k}: got {g}, want {want} (rel {rel:.2e})"
                );
            }
        }
    }
}

#[test]
fn casts() {
    let x = v(vec![1.9f32, -1.9, 3e10, f32::NAN]);
    let c = |x: &Tensor, to: DType| {
        run(
            ops::Cast {
                to: Some(to.code() as i64),
                ..Default::default()
            },
            19,
            &[x],
        )
    };
    assert_eq!(
        c(&x, DType::I32).to_vec::<i32>().unwrap(),
        vec![1, -1, i32::MIN, i32::MIN]
    );
    assert_eq!(
        c(&x, DType::I64).to_vec::<i64>().unwrap(),
        vec![1, -1, 30_000_001_024, i64::MIN]
    );
    assert_eq!(
        c(&v(vec![300f32, -1.0, 255.9]), DType::U8)
            .to_vec::<u8>()
            .unwrap(),
        vec![44, 255, 255]
    );
    assert_eq!(
        c(&v(vec![1.5f32]), DType::F16).to_vec::<f16>().unwrap(),
        vec![f16::from_f32(1.5)]
    );
    assert_eq!(
        c(&v(vec![0i64, 3]), DType::Bool).to_vec::<bool>().unwrap(),
        vec![false, true]
    );
    assert_eq!(
        c(&v(vec![true, false]), DType::F32)
            .to_vec::<f32>()
            .unwrap(),
        vec![1., 0.]
    );
    assert_eq!(
        c(&v(vec![-1i32]), DType::U32).to_vec::<u32>().unwrap(),
        vec![u32::MAX]
    );
    assert_eq!(
        c(&v(vec![" 1.5".to_string(), "-2".to_string()]), DType::F32)
            .to_vec::<f32>()
            .unwrap(),
        vec![1.5, -2.]
    );
    assert_eq!(
        c(&v(vec!["7".to_string()]), DType::I64)
            .to_vec::<i64>()
            .unwrap(),
        vec![7]
    );
    let e = try_run(
        ops::Cast {
            to: Some(DType::String.code() as i64),
            ..Default::default()
        },
        19,
        &[&x],
    )
    .unwrap_err();
    assert!(e.contains("STRING") && e.contains("not supported"), "{e}");
    let like = run(
        ops::CastLike::default(),
        15,
        &[&v(vec![2.7f64]), &Tensor::scalar(0i8)],
    );
    assert_eq!(like.to_vec::<i8>().unwrap(), vec![2]);
}

#[test]
fn identity_and_dropout() {
    let x = t(&[2], vec![1f32, 2.]);
    assert_eq!(run(ops::Identity {}, 16, &[&x]), x);
    let r = run_n(ops::Dropout::default(), 13, &[Some(&x)], 2);
    assert_eq!(r[0], x);
    assert_eq!(r[1].to_vec::<bool>().unwrap(), vec![true, true]);
}
