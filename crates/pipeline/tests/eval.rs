//! Tests of `qtool eval`'s library side: metrics on hand-computed tiny cases (identical models, a
//! known perturbation, labels), and the per-layer matching on the bundled example quantized by our
//! passes into each format, checked against a dequantization done here by hand.

use qtool_ir::{Fact, Graph, Model, Node, OpsetId, Type, ValueInfo, ops};
use qtool_pipeline::eval::{
    CounterpartKind, EvalReport, EvalSettings, QuantParams, evaluate, match_layers, read_labels,
};
use qtool_pipeline::quantize::{Format, QuantizeSettings, quantize};
use qtool_tensor::{DType, Tensor};
use std::path::{Path, PathBuf};

fn tiny() -> PathBuf {
    qtool_testkit::workspace_root().join("examples/tiny_cnn")
}

fn write_npy(path: &Path, t: &Tensor) {
    std::fs::write(path, qtool_data::npy::npy_bytes(t).unwrap()).unwrap();
}

/// `y = x * k` (or `x + k` with `add`), input `x` of `shape`; `k` has one element per last-axis
/// entry (or one element).
fn elementwise_model(shape: &[i64], k: &[f32], add: bool) -> Model {
    let mut g = Graph::new("g");
    let x = g.add_value("x").unwrap();
    let ty = Type::tensor(DType::F32, shape);
    g.value_mut(x).fact = Fact::from_type(&ty);
    g.inputs.push((x, ValueInfo::of_type(ty)));
    let kt = Tensor::from_vec(&[k.len()], k.to_vec()).unwrap();
    let kv = g
        .add_initializer("k", qtool_ir::TensorData::from_tensor(&kt))
        .unwrap();
    let y = g.add_value("y").unwrap();
    let node = if add {
        Node::new(ops::Add {}, "op")
    } else {
        Node::new(ops::Mul {}, "op")
    };
    g.add_node(node, &[Some(x), Some(kv)], &[Some(y)]).unwrap();
    g.outputs.push((y, ValueInfo::default()));
    Model {
        ir_version: Some(8),
        opset_import: vec![OpsetId {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: g,
        ..Default::default()
    }
}

fn eval(r: &Model, c: &Model, data: &Path, s: &EvalSettings) -> EvalReport {
    evaluate(r, c, data, s, &mut |_, _| {}).unwrap()
}

#[test]
fn identical_models_give_infinite_sqnr_and_cosine_one() {
    let m = qtool_onnx::load(tiny().join("model.onnx")).unwrap();
    let r = eval(&m, &m, &tiny().join("eval.npy"), &EvalSettings::default());
    assert_eq!(r.samples, 8);
    assert_eq!(r.outputs.len(), 1);
    let o = &r.outputs[0];
    assert_eq!(o.error.sqnr_db, f64::INFINITY);
    assert_eq!(o.error.cosine, 1.0);
    assert_eq!(o.error.max_abs_err, 0.0);
    assert_eq!(o.error.mean_abs_err, 0.0);
    assert_eq!(o.error.elements, 8 * 10);
    let c = o.classifier.as_ref().expect("[1, 10] is classifier-like");
    assert_eq!((c.classes, c.rows), (10, 8));
    assert_eq!(c.top1_agreement, 1.0);
    assert_eq!(c.top5_agreement, Some(1.0));
    assert_eq!(c.accuracy_reference, None);
    // Every value has itself as counterpart, under its own name.
    assert!(!r.layers.is_empty());
    for l in &r.layers {
        assert_eq!(l.kind, CounterpartKind::Float, "{l:?}");
        assert_eq!(l.tensor, l.counterpart);
        assert_eq!(l.error.sqnr_db, f64::INFINITY, "{}", l.tensor);
    }
    // Infinity survives the JSON round trip.
    let back: EvalReport = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(back.outputs[0].error.sqnr_db, f64::INFINITY);
    assert!(r.to_json().contains("\"sqnr_db\": \"inf\""));
}

#[test]
fn a_known_perturbation_gives_the_expected_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("x.npy");
    let mut rng = qtool_testkit::Rng::new(7);
    // 5 samples of [1, 4].
    let x = rng.tensor_f32(&[5, 4], -2.0, 2.0);
    write_npy(&data, &x);
    let xs: Vec<f64> = x.to_f64_vec().unwrap();
    let reference = elementwise_model(&[1, 4], &[1.0], false);
    // y' = 1.1 y: the error is 0.1 y, so SQNR = 10 log10(1 / 0.01) = 20 dB and cosine 1.
    let candidate = elementwise_model(&[1, 4], &[1.1], false);
    let r = eval(&reference, &candidate, &data, &EvalSettings::default());
    assert_eq!(r.samples, 5);
    let o = &r.outputs[0];
    assert!((o.error.sqnr_db - 20.0).abs() < 1e-4, "{}", o.error.sqnr_db);
    assert!((o.error.cosine - 1.0).abs() < 1e-9);
    let maxabs = xs.iter().fold(0.0f64, |a, &v| a.max(v.abs()));
    let meanabs = xs.iter().map(|v| v.abs()).sum::<f64>() / xs.len() as f64;
    assert!((o.error.max_abs_err - 0.1 * maxabs).abs() < 1e-5);
    assert!((o.error.mean_abs_err - 0.1 * meanabs).abs() < 1e-5);
    assert_eq!(o.error.elements, 20);
    // [1, 4] is classifier-like; scaling by 1.1 keeps every arg-max.
    assert_eq!(o.classifier.as_ref().unwrap().top1_agreement, 1.0);
    assert_eq!(o.classifier.as_ref().unwrap().top5_agreement, None);
    // Per layer: x is the same, y is the output.
    let y = r.layers.iter().find(|l| l.tensor == "y").unwrap();
    assert!((y.error.sqnr_db - 20.0).abs() < 1e-4);
    assert_eq!(r.layers[0].tensor, "y", "worst first");
    assert_eq!(r.layers[1].tensor, "x");
    assert_eq!(r.layers[1].error.sqnr_db, f64::INFINITY);

    // y' = -y: cosine -1, SQNR = 10 log10(1/4).
    let neg = elementwise_model(&[1, 4], &[-1.0], false);
    let r = eval(&reference, &neg, &data, &EvalSettings::default());
    assert!((r.outputs[0].error.cosine + 1.0).abs() < 1e-9);
    assert!((r.outputs[0].error.sqnr_db - 10.0 * 0.25f64.log10()).abs() < 1e-9);
}

#[test]
fn labels_give_accuracy_for_both_models_and_agreement_counts_rows() {
    let dir = tempfile::tempdir().unwrap();
    // 4 samples of [1, 6] logits; the candidate adds a bias that favours class 5 by 0.5.
    let rows: Vec<[f32; 6]> = vec![
        [3.0, 0.0, 0.0, 0.0, 0.0, 0.0], // ref 0, cand 0 (5 gets 0.5)
        [0.0, 1.0, 0.0, 0.0, 0.0, 0.8], // ref 1, cand 5 (1.3 > 1.0)
        [0.0, 0.0, 2.0, 0.0, 0.0, 0.0], // ref 2, cand 2
        [0.0, 0.0, 0.0, 0.2, 0.0, 0.0], // ref 3, cand 5
    ];
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let data = dir.path().join("x.npy");
    write_npy(&data, &Tensor::from_vec(&[4, 6], flat).unwrap());
    let labels = dir.path().join("labels.npy");
    write_npy(
        &labels,
        &Tensor::from_vec(&[4], vec![0i64, 1, 4, 5]).unwrap(),
    );
    assert_eq!(read_labels(&labels).unwrap(), vec![0, 1, 4, 5]);
    let reference = elementwise_model(&[1, 6], &[0.0; 6], true);
    let candidate = elementwise_model(&[1, 6], &[0.0, 0.0, 0.0, 0.0, 0.0, 0.5], true);
    let s = EvalSettings {
        labels: Some(labels.clone()),
        ..Default::default()
    };
    let r = eval(&reference, &candidate, &data, &s);
    let c = r.outputs[0].classifier.as_ref().unwrap();
    assert_eq!((c.classes, c.rows), (6, 4));
    assert_eq!(c.top1_agreement, 0.5);
    // Top-5 needs more than 5 classes (6 here): the reference's class ranks within the
    // candidate's first two on every row (row 1: 5, 1, ...; row 3: 5, 3, ...).
    assert_eq!(c.top5_agreement, Some(1.0));
    // Labels 0, 1, 4, 5: reference right on rows 0, 1; candidate on rows 0 and 3.
    assert_eq!(c.accuracy_reference, Some(0.5));
    assert_eq!(c.accuracy_candidate, Some(0.5));

    // Too few labels is an error naming the count; so are labels that are not class ids.
    write_npy(&labels, &Tensor::from_vec(&[3], vec![0i64, 1, 4]).unwrap());
    let e = evaluate(&reference, &candidate, &data, &s, &mut |_, _| {}).unwrap_err();
    assert!(format!("{e:#}").contains("3 entries"), "{e:#}");
    write_npy(&labels, &Tensor::from_vec(&[2], vec![0.5f32, 1.0]).unwrap());
    let e = read_labels(&labels).unwrap_err();
    assert!(
        format!("{e:#}").contains("not a non-negative integer"),
        "{e:#}"
    );
}

#[test]
fn mismatched_models_and_missing_data_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("x.npy");
    write_npy(&data, &Tensor::from_vec(&[1, 4], vec![1f32; 4]).unwrap());
    let a = elementwise_model(&[1, 4], &[1.0], false);
    let mut b = elementwise_model(&[1, 4], &[1.0], false);
    let x = b.graph.find_value("x").unwrap();
    b.graph.rename_value(x, "other").unwrap();
    let e = evaluate(&a, &b, &data, &EvalSettings::default(), &mut |_, _| {}).unwrap_err();
    assert!(format!("{e:#}").contains("different inputs"), "{e:#}");
    let e = evaluate(
        &a,
        &a,
        &dir.path().join("missing.npy"),
        &EvalSettings::default(),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("missing.npy"), "{e:#}");
}

/// Quantizes the bundled example into `format` in `dir`.
fn quantized(dir: &Path, format: Format) -> Model {
    let out = dir.join(format!("{format:?}.onnx"));
    let s = QuantizeSettings {
        format,
        ..Default::default()
    };
    quantize(
        &tiny().join("model.onnx"),
        &tiny().join("calib.npy"),
        Some(&tiny().join("eval.npy")),
        &out,
        &s,
        &mut |_, _| {},
    )
    .unwrap();
    qtool_onnx::load(&out).unwrap()
}

/// The values of every tensor of one run, by name.
fn observe_all(m: &Model, inputs: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    let x = qtool_exec::Executor::new(m, Default::default()).unwrap();
    let mut seen = Vec::new();
    x.run_observed(inputs, &mut |n, t| seen.push((n.to_string(), t.clone())))
        .unwrap();
    seen
}

fn init(m: &Model, name: &str) -> Vec<f64> {
    let g = &m.graph;
    g.constant(g.find_value(name).unwrap_or_else(|| panic!("no {name}")))
        .unwrap_or_else(|| panic!("{name} is not a constant"))
        .to_tensor()
        .unwrap()
        .to_f64_vec()
        .unwrap()
}

fn sqnr(r: &[f64], c: &[f64]) -> f64 {
    let s: f64 = r.iter().map(|x| x * x).sum();
    let e: f64 = r.iter().zip(c).map(|(x, y)| (x - y) * (x - y)).sum();
    if e == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (s / e).log10()
    }
}

#[test]
fn per_layer_matching_follows_what_our_passes_write_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let reference = qtool_onnx::load(tiny().join("model.onnx")).unwrap();
    // One sample, so the evaluation's SQNR is that of the run observed here.
    let one = dir.path().join("one.npy");
    let eval_data = qtool_data::load_npy(&tiny().join("eval.npy")).unwrap();
    let v = eval_data.to_f64_vec().unwrap();
    let first: Vec<f32> = v[..256].iter().map(|&x| x as f32).collect();
    let sample = Tensor::from_vec(&[1, 1, 16, 16], first).unwrap();
    write_npy(&one, &sample);
    let ref_vals = observe_all(&reference, vec![("x".into(), sample.clone())]);
    let ref_of = |n: &str| -> Vec<f64> {
        ref_vals
            .iter()
            .find(|(k, _)| k == n)
            .unwrap_or_else(|| panic!("reference has no {n}"))
            .1
            .to_f64_vec()
            .unwrap()
    };

    for format in [Format::Qdq, Format::Qlinear, Format::Integer] {
        let cand = quantized(dir.path(), format);
        let matches = match_layers(&reference, &cand);
        let by = |t: &str| matches.iter().find(|m| m.tensor == t);
        // The input is quantized first in every format; its DQ survives when a float op reads it
        // (QDQ), otherwise the integer tensor with the Q's scale and zero-point is used.
        let x = by("x").unwrap_or_else(|| panic!("{format:?}: x unmatched: {matches:?}"));
        match format {
            Format::Qdq => {
                assert_eq!(x.kind, CounterpartKind::Dequantized);
                assert_eq!(x.counterpart, "x_DequantizeLinear_Output");
            }
            Format::Qlinear | Format::Integer => {
                assert_eq!(x.kind, CounterpartKind::Integer, "{format:?}");
                assert_eq!(x.counterpart, "x_QuantizeLinear_Output");
            }
            Format::Dynamic => unreachable!("not in this loop"),
        }
        // The graph output is quantized too (Softmax is a quantized op): its integer tensor is
        // matched, whose dequantized value is the candidate's output itself.
        let prob = by("prob").unwrap();
        assert_eq!(
            (prob.kind, prob.counterpart.as_str()),
            (CounterpartKind::Integer, "prob_QuantizeLinear_Output"),
            "{format:?}"
        );
        // Every reference tensor that is quantized in the candidate is matched to its quantized
        // form, never to the float value before quantization.
        let cg = &cand.graph;
        for m in &matches {
            let quantized_exists = cg
                .find_value(&format!("{}_QuantizeLinear_Output", m.tensor))
                .is_some();
            if quantized_exists {
                assert_ne!(m.kind, CounterpartKind::Float, "{format:?}: {m:?}");
            }
        }

        // Manual dequantization of every integer counterpart: (q - zp) * scale with the
        // initializers the passes named <t>_scale and <t>_zero_point.
        let cand_vals = observe_all(&cand, vec![("x".into(), sample.clone())]);
        let s = EvalSettings::default();
        let r = evaluate(&reference, &cand, &one, &s, &mut |_, _| {}).unwrap();
        assert_eq!(r.samples, 1);
        assert!(r.skipped_layers.is_empty(), "{:?}", r.skipped_layers);
        let mut checked = 0;
        for m in &matches {
            let cv = &cand_vals
                .iter()
                .find(|(k, _)| *k == m.counterpart)
                .unwrap_or_else(|| panic!("{format:?}: {} not computed", m.counterpart))
                .1;
            let deq: Vec<f64> = match m.kind {
                CounterpartKind::Integer => {
                    let scale = init(&cand, &format!("{}_scale", m.tensor));
                    let zp = init(&cand, &format!("{}_zero_point", m.tensor));
                    assert_eq!((scale.len(), zp.len()), (1, 1));
                    match m.params.as_ref().unwrap() {
                        QuantParams::Const {
                            scale: s,
                            zero_point: z,
                            ..
                        } => {
                            assert_eq!(s[0] as f64, scale[0]);
                            assert_eq!(z[0] as f64, zp[0]);
                        }
                        other => panic!("{other:?}"),
                    }
                    cv.to_f64_vec()
                        .unwrap()
                        .iter()
                        .map(|&q| ((q - zp[0]) as f32 * scale[0] as f32) as f64)
                        .collect()
                }
                _ => cv.to_f64_vec().unwrap(),
            };
            let want = sqnr(&ref_of(&m.tensor), &deq);
            let got = r
                .layers
                .iter()
                .find(|l| l.tensor == m.tensor)
                .unwrap()
                .error
                .sqnr_db;
            if want.is_infinite() {
                assert_eq!(got, want);
            } else {
                assert!(
                    (got - want).abs() < 1e-6 * want.abs().max(1.0),
                    "{format:?} {}: {got} vs {want}",
                    m.tensor
                );
            }
            // Quantization loses something: every quantized tensor has a finite SQNR, and
            // plausibly high for 8 bits on this small model.
            if m.kind != CounterpartKind::Float {
                assert!(
                    got.is_finite() && got > 15.0,
                    "{format:?} {}: {got}",
                    m.tensor
                );
            }
            checked += 1;
        }
        assert!(checked >= 5, "{format:?}: only {checked} layers");
        let prob_layer = r.layers.iter().find(|l| l.tensor == "prob").unwrap();
        assert_eq!(prob_layer.error.sqnr_db, r.outputs[0].error.sqnr_db);
        // Worst first.
        for w in r.layers.windows(2) {
            assert!(w[0].error.sqnr_db <= w[1].error.sqnr_db);
        }
    }
}

#[test]
fn dynamic_quantization_is_dequantized_with_its_run_time_scale() {
    let dir = tempfile::tempdir().unwrap();
    let reference = qtool_onnx::load(tiny().join("model.onnx")).unwrap();
    let mut cand = reference.clone();
    let passes = vec![qtool_passes::build("quantize_dynamic", &serde_json::Value::Null).unwrap()];
    qtool_passes::run_passes(&passes, &mut cand, &Default::default(), true).unwrap();
    let matches = match_layers(&reference, &cand);
    let x = matches.iter().find(|m| m.tensor == "x").unwrap();
    assert_eq!(x.kind, CounterpartKind::Integer);
    assert_eq!(x.counterpart, "x_quantized");
    assert_eq!(
        x.params,
        Some(QuantParams::RunTime {
            scale: "x_scale".into(),
            zero_point: "x_zero_point".into()
        })
    );
    // One sample: the evaluation's SQNR of x is that of (q - zp) * scale computed here from the
    // values the candidate produced.
    let eval_data = qtool_data::load_npy(&tiny().join("eval.npy")).unwrap();
    let v: Vec<f32> = eval_data.to_f64_vec().unwrap()[..256]
        .iter()
        .map(|&x| x as f32)
        .collect();
    let sample = Tensor::from_vec(&[1, 1, 16, 16], v).unwrap();
    let one = dir.path().join("one.npy");
    write_npy(&one, &sample);
    let seen = observe_all(&cand, vec![("x".into(), sample.clone())]);
    let get = |n: &str| {
        seen.iter()
            .find(|(k, _)| k == n)
            .unwrap()
            .1
            .to_f64_vec()
            .unwrap()
    };
    let (q, s, z) = (get("x_quantized"), get("x_scale"), get("x_zero_point"));
    let deq: Vec<f64> = q
        .iter()
        .map(|&q| ((q - z[0]) as f32 * s[0] as f32) as f64)
        .collect();
    let want = sqnr(&sample.to_f64_vec().unwrap(), &deq);
    let r = evaluate(
        &reference,
        &cand,
        &one,
        &EvalSettings::default(),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(r.candidate_format, "dynamic");
    let got = r
        .layers
        .iter()
        .find(|l| l.tensor == "x")
        .unwrap()
        .error
        .sqnr_db;
    assert!(want.is_finite() && want > 20.0, "{want}");
    assert!((got - want).abs() < 1e-6 * want, "{got} vs {want}");
}
