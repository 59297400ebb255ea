//! Tests of `insert_qdq`: snapshots of small graphs and the numbers against the worked examples of
//! ../shared/docs/numerics.md.

use super::*;
use crate::Ranges;
use crate::testing::*;
use qtool_tensor::quant::ScaleZp;

fn ranges(r: &[(&str, (f32, f32))]) -> Ranges {
    r.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn qdq(opts: InsertQdqOptions, m: &mut Model, r: &Ranges) -> PassReport {
    run_cx(
        &InsertQdq::new(opts).unwrap(),
        m,
        &PassCx { ranges: Some(r) },
    )
}

fn init(m: &Model, name: &str) -> Vec<f32> {
    let g = &m.graph;
    f32s(
        g.initializer(g.find_value(name).unwrap_or_else(|| panic!("no {name}")))
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn numerics_doc_example_u8_asym_and_i8_sym() {
    // (rmin, rmax) = (-1, 3): uint8 asym (64, 4/255); int8 sym (0, 3/127).
    for (act, zp, scale) in [
        (
            ActivationScheme::U8Asymmetric,
            64.0,
            (4.0f64 / 255.0) as f32,
        ),
        (ActivationScheme::I8Symmetric, 0.0, (3.0f64 / 127.0) as f32),
    ] {
        let mut b = Builder::new();
        let x = b.input("x", &[1, 4]);
        let y = b.node(ops::Sigmoid {}, "sig", &[x], "y");
        b.output(y);
        let mut m = b.model(13);
        qdq(
            InsertQdqOptions {
                activations: act,
                ..Default::default()
            },
            &mut m,
            &ranges(&[("x", (-1.0, 3.0)), ("y", (0.0, 1.0))]),
        );
        assert_eq!(init(&m, "x_zero_point"), vec![zp]);
        assert_eq!(init(&m, "x_scale"), vec![scale]);
    }
}

#[test]
fn bias_weight_scale_adjustment_matches_hand_computation() {
    // x_s * w_s = 1e-9 is below 1.0001 * 2 * 1000 / (2^32 - 2), so w_s grows by the ratio.
    let xs = 1e-4f32;
    let mut ws = [1e-5f32, 1.0];
    let changed = bias_weight_scale_adjust(xs, &mut ws, &[1000.0, 1000.0]);
    assert!(changed);
    let smallest = 1.0001 * 2000.0 / 4294967294.0f64;
    let want = (1e-5f32 as f64 * (smallest / (1e-4f32 as f64 * 1e-5f32 as f64))) as f32;
    assert_eq!(ws[0], want);
    assert_eq!(ws[1], 1.0, "large enough scales are left alone");
    // The bias now fits: |q| just under i32::MAX / 1.0001.
    let q = quantize_bias(1000.0, xs * ws[0]);
    assert!(q < i32::MAX && q > 2_147_000_000 / 2, "{q}");
    // Per tensor: max |b| over the whole bias.
    let mut one = [1e-5f32];
    assert!(bias_weight_scale_adjust(xs, &mut one, &[10.0, -1000.0]));
    assert_eq!(one[0], want);
    // Without the adjustment the bias would saturate.
    assert_eq!(quantize_bias(1000.0, xs * 1e-5), i32::MAX);
}

/// uint8 asymmetric weights as ONNX Runtime's `quantize_data(w, UINT8, symmetric=False)` gives
/// them (values taken from onnxruntime 1.32): channel [0.5, -0.1] → zero-point 43, scale
/// 0.6 / 255, q [255, 0]; channel [-0.25, 0.2] → 142, 0.45 / 255, [0, 255]; with reduce_range
/// ([0, 127]) channel 0 → 21, 0.6 / 127, [127, 0].
#[test]
fn weight_params_per_channel_u8_asymmetric_as_onnx_runtime() {
    let w = [0.5, -0.1, -0.25, 0.2];
    let scheme = WeightScheme::U8Asymmetric.scheme(false);
    let (s, z) = weight_params(&w, &[2, 2], Some(0), scheme);
    assert_eq!(s, vec![(0.6f64 / 255.0) as f32, (0.45f64 / 255.0) as f32]);
    assert_eq!(z, vec![43, 142]);
    let q = quantize_weight(&w, &[2, 2], Some(0), &s, &z, DType::U8);
    assert_eq!(q, tensor(&[2, 2], vec![255u8, 0, 0, 255]));
    let (s, z) = weight_params(&w[..2], &[2], None, WeightScheme::U8Asymmetric.scheme(true));
    assert_eq!((s, z.clone()), (vec![(0.6f64 / 127.0) as f32], vec![21]));
}

#[test]
fn weight_params_per_channel_symmetric() {
    // Channel 0 max |w| = 0.5, channel 1 = 0.25; int8 symmetric uses [-127, 127].
    let (s, z) = weight_params(&[0.5, -0.1, -0.25, 0.2], &[2, 2], Some(0), QScheme::I8_SYM);
    assert_eq!(s, vec![(0.5f64 / 127.0) as f32, (0.25f64 / 127.0) as f32]);
    assert_eq!(z, vec![0, 0]);
    let q = quantize_weight(
        &[0.5, -0.1, -0.25, 0.2],
        &[2, 2],
        Some(0),
        &s,
        &z,
        DType::I8,
    );
    // -0.1 / (0.5/127) = -25.4 -> -25; 0.2 / (0.25/127) = 101.6 -> 102.
    assert_eq!(q, tensor(&[2, 2], vec![127i8, -25, -127, 102]));
    // Per tensor: one scale from max |w| = 0.5.
    let (s, _) = weight_params(&[0.5, -0.1, -0.25, 0.2], &[2, 2], None, QScheme::I8_SYM);
    assert_eq!(s, vec![(0.5f64 / 127.0) as f32]);
    let p = compute_scale_zp(-1.0, 3.0, QScheme::U8_ASYM);
    assert_eq!(
        p,
        ScaleZp {
            scale: (4.0f64 / 255.0) as f32,
            zero_point: 64
        }
    );
}

fn conv_relu_reshape_matmul() -> (Model, Ranges) {
    let mut b = Builder::new();
    let x = b.input("x", &[1, 1, 2, 2]);
    let w = b.init_f32("w", &[2, 1, 1, 1], vec![0.5, -0.25]);
    let bias = b.init_f32("b", &[2], vec![0.1, -0.2]);
    let c = b.node(ops::Conv::default(), "conv", &[x, w, bias], "c");
    let r = b.node(ops::Relu {}, "relu", &[c], "r");
    let shape = b.init_i64("shape", &[2], vec![1, 8]);
    let f = b.node(ops::Reshape::default(), "reshape", &[r, shape], "f");
    let wm = b.init_f32(
        "wm",
        &[8, 2],
        (0..16).map(|i| i as f32 / 16.0 - 0.5).collect(),
    );
    let y = b.node(ops::MatMul {}, "matmul", &[f, wm], "y");
    let s = b.node(ops::Softmax { axis: Some(-1) }, "softmax", &[y], "s");
    b.output(s);
    (
        b.model(13),
        ranges(&[
            ("x", (-1.0, 1.0)),
            ("c", (-0.5, 0.7)),
            ("r", (0.0, 0.7)),
            ("y", (-2.0, 2.0)),
            ("s", (0.0, 1.0)),
        ]),
    )
}

#[test]
fn conv_relu_reshape_matmul_snapshot() {
    let (mut m, r) = conv_relu_reshape_matmul();
    let rep = qdq(InsertQdqOptions::default(), &mut m, &r);
    insta::assert_snapshot!(show(&m, &rep));
    // The Relu was absorbed (uint8 with range (0, 0.7) has zero-point 0): Conv writes r.
    assert!(m.graph.nodes().all(|(_, n)| !matches!(n.op(), Op::Relu(_))));
    // The reshape output keeps the Relu output's parameters.
    assert_eq!(init(&m, "f_scale"), init(&m, "r_scale"));
    assert_eq!(init(&m, "r_zero_point"), vec![0.0]);
    // Bias int32 with scale x_s * w_s[c].
    let xs = init(&m, "x_scale")[0];
    let ws = init(&m, "w_scale");
    assert_eq!(init(&m, "b_quantized_scale"), vec![xs * ws[0], xs * ws[1]]);
    let qb = init(&m, "b_quantized");
    assert_eq!(
        qb,
        vec![
            quantize_bias(0.1, xs * ws[0]) as f32,
            quantize_bias(-0.2, xs * ws[1]) as f32
        ]
    );
    // MatMul weight [8, 2]: per column (axis 1).
    assert_eq!(init(&m, "wm_scale").len(), 2);
}

#[test]
fn i8_symmetric_keeps_relu_and_per_tensor_weights() {
    let (mut m, r) = conv_relu_reshape_matmul();
    let opts = InsertQdqOptions {
        activations: ActivationScheme::I8Symmetric,
        per_channel: false,
        ..Default::default()
    };
    let rep = qdq(opts, &mut m, &r);
    assert!(
        m.graph.nodes().any(|(_, n)| matches!(n.op(), Op::Relu(_))),
        "{rep}"
    );
    assert_eq!(init(&m, "w_scale").len(), 1);
    assert!(
        rep.skipped.iter().any(|s| s.node == "reshape"),
        "the reshape input (Relu output) is float: {rep}"
    );
}

#[test]
fn exclusions_missing_ranges_and_shared_pairs() {
    let mut b = Builder::new();
    let x = b.input("x", &[1, 4]);
    let a = b.node(ops::Sigmoid {}, "sig_a", &[x], "a");
    let c = b.node(ops::Sigmoid {}, "sig_b", &[x], "c");
    let d = b.node(ops::HardSwish {}, "skip_me", &[x], "d");
    let e = b.node(ops::Softmax::default(), "soft", &[x], "e");
    let f = b.node(ops::Add {}, "add", &[a, c], "f");
    for v in [d, e, f] {
        b.output(v);
    }
    let mut m = b.model(13);
    let opts = InsertQdqOptions {
        exclude_regex: vec!["^skip".into()],
        exclude_op_types: vec!["Add".into()],
        ..Default::default()
    };
    let rep = qdq(
        opts,
        &mut m,
        &ranges(&[("x", (-1.0, 1.0)), ("a", (0.0, 1.0)), ("c", (0.0, 1.0))]),
    );
    insta::assert_snapshot!(show(&m, &rep));
    let qs = m
        .graph
        .nodes()
        .filter(|(_, n)| matches!(n.op(), Op::QuantizeLinear(_)))
        .count();
    assert_eq!(qs, 3, "x once (shared by both Sigmoids), a, c");
}

#[test]
fn options_are_strict() {
    let e = crate::build("insert_qdq", &serde_json::json!({"activation": "u8"}))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("unknown field"), "{e}");
    let e = crate::build("insert_qdq", &serde_json::json!({"exclude_regex": ["("]}))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("exclude_regex"), "{e}");
    let e = crate::build(
        "insert_qdq",
        &serde_json::json!({"overrides": {"x": {"min": 0.0}}}),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("override 'x'"), "{e}");
    crate::build(
        "insert_qdq",
        &serde_json::json!({"activations": "i8_symmetric", "per_channel": false}),
    )
    .unwrap();
    let names: Vec<&str> = crate::registry().iter().map(|(n, _)| *n).collect();
    assert_eq!(names.len(), 10);
    for n in names {
        crate::build(n, &serde_json::Value::Null).unwrap();
    }
    assert!(crate::build("nope", &serde_json::Value::Null).is_err());
}

#[test]
fn overrides_fix_parameters() {
    let mut b = Builder::new();
    let x = b.input("x", &[1, 4]);
    let y = b.node(ops::Sigmoid {}, "sig", &[x], "y");
    b.output(y);
    let mut m = b.model(13);
    let mut overrides = BTreeMap::new();
    overrides.insert(
        "x".to_string(),
        TensorOverride {
            scale: Some(0.5),
            zero_point: Some(10),
            ..Default::default()
        },
    );
    overrides.insert(
        "y".to_string(),
        TensorOverride {
            min: Some(0.0),
            max: Some(2.0),
            ..Default::default()
        },
    );
    qdq(
        InsertQdqOptions {
            overrides,
            ..Default::default()
        },
        &mut m,
        &Ranges::new(),
    );
    assert_eq!(init(&m, "x_scale"), vec![0.5]);
    assert_eq!(init(&m, "x_zero_point"), vec![10.0]);
    assert_eq!(init(&m, "y_scale"), vec![(2.0f64 / 255.0) as f32]);
    // The graph output keeps its name: the DequantizeLinear writes `y`.
    let yv = m.graph.find_value("y").unwrap();
    assert!(matches!(
        m.graph.node(m.graph.producer(yv).unwrap()).op(),
        Op::DequantizeLinear(_)
    ));
}

#[test]
fn opset_11_per_channel_raises_opset() {
    let mut b = Builder::new();
    let x = b.input("x", &[1, 1, 2, 2]);
    let w = b.init_f32("w", &[2, 1, 1, 1], vec![0.5, -0.25]);
    let c = b.node(ops::Conv::default(), "conv", &[x, w], "c");
    let u = b.node(
        ops::Unsqueeze {
            axes: Some(vec![0]),
        },
        "unsq",
        &[c],
        "u",
    );
    b.output(u);
    let mut m = b.model(11);
    let rep = qdq(
        InsertQdqOptions::default(),
        &mut m,
        &ranges(&[("x", (-1.0, 1.0)), ("c", (-1.0, 1.0))]),
    );
    assert_eq!(m.onnx_opset(), 13, "{rep}");
    insta::assert_snapshot!(show(&m, &rep));
}

#[test]
fn clip_0_6_absorbed_and_gemm_trans_b_per_row() {
    let mut b = Builder::new();
    let x = b.input("x", &[1, 3]);
    let w = b.init_f32("w", &[2, 3], vec![0.1, 0.2, 0.3, -0.4, 0.5, -0.6]);
    let bias = b.init_f32("b", &[2], vec![0.01, 0.02]);
    let gm = b.node(
        ops::Gemm {
            trans_b: Some(1),
            ..Default::default()
        },
        "gemm",
        &[x, w, bias],
        "g",
    );
    let lo = b.init_f32("lo", &[], vec![0.0]);
    let hi = b.init_f32("hi", &[], vec![6.0]);
    let c = b.node(ops::Clip::default(), "clip", &[gm, lo, hi], "c");
    b.output(c);
    let mut m = b.model(13);
    let rep = qdq(
        InsertQdqOptions::default(),
        &mut m,
        &ranges(&[("x", (-1.0, 1.0)), ("g", (-3.0, 9.0)), ("c", (0.0, 6.0))]),
    );
    assert!(
        rep.rewritten
            .iter()
            .any(|r| r.node == "clip" && r.what.contains("absorbed")),
        "{rep}"
    );
    assert!(
        m.graph
            .find_value("lo")
            .is_none_or(|v| m.graph.initializer(v).is_none())
    );
    // transB=1: weight [N=2, K=3], one scale per row (axis 0): max |w| 0.3 and 0.6.
    assert_eq!(
        init(&m, "w_scale"),
        vec![(0.3f64 / 127.0) as f32, (0.6f64 / 127.0) as f32]
    );
    assert_eq!(init(&m, "c_scale"), vec![(6.0f64 / 255.0) as f32]);
    // A Clip(0, 6) whose range is wider than [0, 6] is kept.
    let mut b = Builder::new();
    let x = b.input("x", &[1, 3]);
    let w = b.init_f32("w", &[3, 2], vec![0.1; 6]);
    let y = b.node(ops::MatMul {}, "mm", &[x, w], "y");
    let lo = b.init_f32("lo", &[], vec![0.0]);
    let hi = b.init_f32("hi", &[], vec![6.0]);
    let c = b.node(ops::Clip::default(), "clip", &[y, lo, hi], "c");
    b.output(c);
    let mut m = b.model(13);
    qdq(
        InsertQdqOptions::default(),
        &mut m,
        &ranges(&[("x", (-1.0, 1.0)), ("y", (-3.0, 9.0)), ("c", (0.0, 8.0))]),
    );
    assert!(m.graph.nodes().any(|(_, n)| matches!(n.op(), Op::Clip(_))));
}

#[test]
fn full_pipeline_from_registry_validates_after_every_pass() {
    let mut b = Builder::new();
    let x = b.input("x", &[1, 1, 2, 2]);
    let w = b.init_f32("w", &[2, 1, 1, 1], vec![0.5, -0.25]);
    let c = b.node(ops::Conv::default(), "conv", &[x, w], "c");
    let gamma = b.init_f32("gamma", &[2], vec![1.0, 2.0]);
    let beta = b.init_f32("beta", &[2], vec![0.1, 0.2]);
    let mean = b.init_f32("mean", &[2], vec![0.0, 0.5]);
    let var = b.init_f32("var", &[2], vec![1.0, 4.0]);
    let bn = b.node(
        ops::BatchNormalization::default(),
        "bn",
        &[c, gamma, beta, mean, var],
        "bn_out",
    );
    let i = b.node(ops::Identity {}, "id", &[bn], "i");
    let r = b.node(ops::Relu {}, "relu", &[i], "r");
    let dead = b.node(ops::Sigmoid {}, "dead", &[r], "dead_out");
    let _ = dead;
    let s = b.node(ops::Shape::default(), "shape", &[r], "s");
    let f = b.node(ops::Reshape::default(), "reshape", &[r, s], "f");
    b.output(f);
    let mut m = b.model(13);
    let names = [
        "fold_constants",
        "fold_batchnorm",
        "remove_identity",
        "eliminate_dead_code",
        "insert_qdq",
        "qdq_to_qlinear",
    ];
    let passes: Vec<Box<dyn Pass>> = names
        .iter()
        .map(|n| crate::build(n, &serde_json::Value::Null).unwrap())
        .collect();
    let rg = ranges(&[
        ("x", (-1.0, 1.0)),
        ("bn_out", (-1.0, 2.0)),
        ("r", (0.0, 2.0)),
    ]);
    let reports = crate::run_passes(&passes, &mut m, &PassCx { ranges: Some(&rg) }, true).unwrap();
    let text: String = reports
        .iter()
        .map(|(n, r)| format!("## {n}\n{r}"))
        .collect();
    insta::assert_snapshot!(format!("{}\n{}", m.graph.dump(), text));
}
