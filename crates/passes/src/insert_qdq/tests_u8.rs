//! Tests of uint8 asymmetric weights (`weights: u8_asymmetric`, ONNX Runtime's
//! `weight_type=QUInt8`) through every format: what `insert_qdq`, `qdq_to_qlinear`,
//! `qdq_to_integer`, `quantize_dynamic` and `qops_to_qdq` write (snapshots), what they refuse and
//! why, and that qtool computes the same 8-bit values in every form.

use super::*;
use crate::testing::*;
use crate::{
    QdqToInteger, QdqToQLinear, QopsToQdq, QopsToQdqOptions, QuantizeDynamic,
    QuantizeDynamicOptions,
};
use qtool_tensor::Tensor;

/// x [1, 2, 3, 3] → Conv(W [3, 2, 1, 1], bias) → Flatten → MatMul(W [27, 4]) → y, and the Flatten
/// output also → Gemm(transB = 1, W [5, 27], C) → z. Weights from a fixed seed, so the per-channel
/// uint8 zero-points differ.
fn float_model() -> Model {
    let mut rng = qtool_testkit::Rng::new(5);
    let mut v = |n: usize, lo: f32, hi: f32| (0..n).map(|_| rng.uniform(lo, hi)).collect();
    let mut b = Builder::new();
    let x = b.input("x", &[1, 2, 3, 3]);
    let w = b.init_f32("w", &[3, 2, 1, 1], v(6, -0.4, 0.9));
    let bias = b.init_f32("b", &[3], vec![0.1, -0.2, 0.05]);
    let c = b.node(ops::Conv::default(), "conv", &[x, w, bias], "c");
    let f = b.node(ops::Flatten { axis: Some(1) }, "flatten", &[c], "f");
    let wm = b.init_f32("wm", &[27, 4], v(108, -0.3, 0.5));
    let y = b.node(ops::MatMul {}, "matmul", &[f, wm], "y");
    let wg = b.init_f32("wg", &[5, 27], v(135, -0.6, 0.2));
    let cg = b.init_f32("cg", &[5], vec![0.3, -0.1, 0.0, 0.2, -0.4]);
    let gemm = ops::Gemm {
        trans_b: Some(1),
        ..Default::default()
    };
    let z = b.node(gemm, "gemm", &[f, wg, cg], "z");
    b.output(y);
    b.output(z);
    b.model(13)
}

const RANGES: &[(&str, (f32, f32))] = &[
    ("x", (-1.0, 1.0)),
    ("c", (-0.9, 1.4)),
    ("y", (-2.5, 3.0)),
    ("z", (-4.0, 2.0)),
];

fn u8_opts(activations: ActivationScheme, per_tensor_conv: bool) -> InsertQdqOptions {
    InsertQdqOptions {
        activations,
        weights: WeightScheme::U8Asymmetric,
        per_tensor_u8_conv_weights: per_tensor_conv,
        ..Default::default()
    }
}

fn qdq_model(per_tensor_conv: bool) -> (Model, PassReport) {
    let mut m = float_model();
    let r = insert_qdq_from(
        &mut m,
        RANGES,
        u8_opts(ActivationScheme::U8Asymmetric, per_tensor_conv),
    );
    (m, r)
}

fn input() -> Tensor {
    qtool_testkit::Rng::new(9).tensor_f32(&[1, 2, 3, 3], -1.0, 1.0)
}

/// qtool's run: the graph outputs (float).
fn outputs(m: &Model) -> Vec<(String, Tensor)> {
    let ex = qtool_exec::Executor::new(m, qtool_exec::ExecOptions { threads: Some(1) })
        .unwrap_or_else(|e| panic!("{e}\n{}", m.graph.dump()));
    ex.run(vec![("x".into(), input())]).unwrap()
}

/// The values of initializer `name` as i64 (any integer type) with its dtype.
fn ints(m: &Model, name: &str) -> (DType, Vec<i64>) {
    let g = &m.graph;
    let t = g
        .initializer(g.find_value(name).unwrap_or_else(|| panic!("no {name}")))
        .unwrap();
    (t.dtype, crate::util::i64s(t).unwrap())
}

fn ops_of(m: &Model) -> Vec<String> {
    m.graph
        .nodes()
        .map(|(_, n)| n.op().op_type().to_string())
        .collect()
}

#[test]
fn u8_weights_through_every_format() {
    let mut out = String::new();
    // QDQ: uint8 weights per channel with their own zero-points; biases int32 (no scale
    // adjustment: ONNX Runtime adjusts symmetric int8 weights only).
    let (qdq, rep) = qdq_model(false);
    out.push_str(&format!("== insert_qdq (u8 weights)\n{}", show(&qdq, &rep)));
    let (dt, zps) = ints(&qdq, "w_zero_point");
    assert_eq!(dt, DType::U8);
    assert_eq!(zps.len(), 3);
    assert!(zps.windows(2).any(|p| p[0] != p[1]), "{zps:?}");
    assert_eq!(ints(&qdq, "wm_quantized").0, DType::U8);
    assert_eq!(ints(&qdq, "wm_zero_point").1.len(), 4);
    assert_eq!(ints(&qdq, "wg_zero_point").1.len(), 5);

    // QLinear: QLinearConv with the per-channel uint8 zero-points (ONNX Runtime 1.32 runs them),
    // QLinearMatMul with per-column ones, the Gemm as a 1x1 QLinearConv.
    let mut ql = qdq.clone();
    let rep = run(&QdqToQLinear::new(Default::default()).unwrap(), &mut ql);
    assert!(rep.skipped.is_empty(), "{rep}");
    assert_eq!(rep.rewritten.len(), 3, "{rep}");
    out.push_str(&format!("== qdq_to_qlinear\n{}", show(&ql, &rep)));

    // Integer: a per-channel uint8 Conv weight has no ConvInteger form (one zero-point); the
    // Conv stays QDQ, reported, while MatMul and Gemm take per-column zero-points.
    let mut int = qdq.clone();
    let rep = run(&QdqToInteger::new(Default::default()).unwrap(), &mut int);
    assert_eq!(rep.skipped.len(), 1, "{rep}");
    assert_eq!(rep.skipped[0].node, "conv");
    assert!(
        rep.skipped[0].reason.contains("zero-points differ"),
        "{rep}"
    );
    assert_eq!(rep.rewritten.len(), 2, "{rep}");

    // With per_tensor_u8_conv_weights (the pipeline sets it when an integer output is asked for)
    // the Conv weight is per tensor, reported, and becomes ConvInteger with a scalar zero-point.
    let (qdq_pt, rep_pt) = qdq_model(true);
    let conv = rep_pt.rewritten.iter().find(|r| r.node == "conv").unwrap();
    assert!(
        conv.what
            .contains("weight per tensor uint8 (ConvInteger takes one"),
        "{rep_pt}"
    );
    let matmul = rep_pt
        .rewritten
        .iter()
        .find(|r| r.node == "matmul")
        .unwrap();
    assert!(matmul.what.contains("per channel uint8"), "{rep_pt}");
    assert_eq!(ints(&qdq_pt, "w_zero_point").1.len(), 1);
    let mut int = qdq_pt.clone();
    let rep = run(&QdqToInteger::new(Default::default()).unwrap(), &mut int);
    assert!(rep.skipped.is_empty(), "{rep}");
    assert_eq!(rep.rewritten.len(), 3, "{rep}");
    out.push_str(&format!(
        "== qdq_to_integer (per_tensor_u8_conv_weights)\n{}",
        show(&int, &rep)
    ));

    // Dynamic: Conv weight per tensor (ConvInteger), MatMul/Gemm per column with zero-points.
    let mut dy = float_model();
    let rep = run(
        &QuantizeDynamic::new(QuantizeDynamicOptions {
            weights: WeightScheme::U8Asymmetric,
            ..Default::default()
        })
        .unwrap(),
        &mut dy,
    );
    assert!(rep.skipped.is_empty(), "{rep}");
    out.push_str(&format!(
        "== quantize_dynamic (u8 weights)\n{}",
        show(&dy, &rep)
    ));
    let (dt, z) = ints(&dy, "wm_zero_point");
    assert_eq!((dt, z.len()), (DType::U8, 4));
    assert_eq!(ints(&dy, "w_zero_point").1.len(), 1);
    insta::assert_snapshot!(out);

    // In qtool: QLinear against its QDQ model and integer against its QDQ model agree to float
    // rounding of the requantization (docs/formats.md); back in QDQ the models are the originals.
    let max_diff = |a: &[(String, Tensor)], b: &[(String, Tensor)]| {
        a.iter()
            .zip(b)
            .map(|((_, x), (_, y))| {
                let (x, y) = (x.to_f64_vec().unwrap(), y.to_f64_vec().unwrap());
                x.iter()
                    .zip(&y)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0f64, f64::max)
            })
            .fold(0f64, f64::max)
    };
    // One output LSB: y's scale 5.5/255, z's 6/255.
    let lsb = 6.0 / 255.0 + 1e-6;
    let (q0, q1, i1) = (outputs(&qdq), outputs(&ql), outputs(&int));
    assert!(max_diff(&q0, &q1) <= lsb, "{}", max_diff(&q0, &q1));
    let e = max_diff(&outputs(&qdq_pt), &i1);
    assert!(e <= lsb, "{e}");
    for (from, orig) in [(&ql, &qdq), (&int, &qdq_pt)] {
        let mut back = from.clone();
        run(
            &QopsToQdq::new(QopsToQdqOptions::default()).unwrap(),
            &mut back,
        );
        assert_eq!(outputs(&back), outputs(orig));
    }
    // The dynamic model computes close to the float model (measured rel L2 3.3e-2 on y).
    let (f, d) = (outputs(&float_model()), outputs(&dy));
    for ((n, a), (_, b)) in f.iter().zip(&d) {
        let e = qtool_testkit::rel_l2(b, a);
        assert!(e < 6e-2, "{n}: rel L2 {e}");
    }
}

#[test]
fn int8_activations_with_u8_weights_stay_qdq_in_qlinear() {
    let mut m = float_model();
    insert_qdq_from(
        &mut m,
        RANGES,
        u8_opts(ActivationScheme::I8Symmetric, false),
    );
    let rep = run(&QdqToQLinear::new(Default::default()).unwrap(), &mut m);
    assert!(rep.rewritten.is_empty(), "{rep}");
    assert_eq!(rep.skipped.len(), 3, "{rep}");
    for s in &rep.skipped {
        assert!(s.reason.contains("int8 x uint8"), "{rep}");
    }
    assert!(!ops_of(&m).iter().any(|o| o.starts_with("QLinear")));
    // ConvInteger takes int8 x uint8 (ONNX Runtime 1.32 runs it): the integer form is written.
    let mut m = float_model();
    insert_qdq_from(&mut m, RANGES, u8_opts(ActivationScheme::I8Symmetric, true));
    let rep = run(&QdqToInteger::new(Default::default()).unwrap(), &mut m);
    assert_eq!(rep.rewritten.len(), 3, "{rep}");
}

#[test]
fn u8_weights_option_parses_and_s8_stays_the_default() {
    let o: InsertQdqOptions =
        serde_json::from_value(serde_json::json!({"weights": "u8_asymmetric"})).unwrap();
    assert_eq!(o.weights, WeightScheme::U8Asymmetric);
    assert_eq!(
        InsertQdqOptions::default().weights,
        WeightScheme::I8Symmetric
    );
    assert!(
        serde_json::from_value::<InsertQdqOptions>(serde_json::json!({"weights": "u4"})).is_err()
    );
    // Default weights are int8 with zero-points 0.
    let mut m = float_model();
    insert_qdq_from(&mut m, RANGES, InsertQdqOptions::default());
    let (dt, zps) = ints(&m, "w_zero_point");
    assert_eq!(dt, DType::I8);
    assert!(zps.iter().all(|&z| z == 0));
}
