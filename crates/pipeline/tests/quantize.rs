//! `qtool quantize` (the library call) is a one-output `qtool run`: the same settings written as a
//! pipeline file give the same model byte for byte (defaults included); weights kept in Constant
//! nodes (as Paddle exports them) are folded and quantized like initializer weights; dynamic
//! quantization needs no data; `contrib` reaches the conversion pass; saved statistics give the
//! same model as calibrating on the data they came from; bad arguments give clear errors; uint8
//! weights (`--weights u8`) reach every format.

use qtool_pipeline::quantize::{Format, QuantizeSettings, quantize};
use qtool_tensor::Tensor;
use std::path::{Path, PathBuf};

fn example(file: &str) -> PathBuf {
    qtool_testkit::workspace_root()
        .join("examples/tiny_cnn")
        .join(file)
}

fn settings(format: Format) -> QuantizeSettings {
    QuantizeSettings {
        format,
        ..Default::default()
    }
}

fn run_model(model: &Path, inputs: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    let m = qtool_pipeline::onnx::load(model).unwrap();
    let ex = qtool_exec::Executor::new(&m, qtool_exec::ExecOptions { threads: Some(1) }).unwrap();
    ex.run(inputs.to_vec()).unwrap()
}

/// The first evaluation sample, fed to the example's input.
fn eval_sample() -> Vec<(String, Tensor)> {
    let m = qtool_pipeline::onnx::load(example("model.onnx")).unwrap();
    let g = &m.graph;
    let input = g.value_name(g.runtime_inputs()[0]).to_string();
    let all = qtool_data::npy::read_npy(&std::fs::read(example("eval.npy")).unwrap(), "eval.npy")
        .unwrap();
    let shape = all.shape().to_vec();
    let per: usize = shape[1..].iter().product();
    let data: Vec<f32> = all.to_f64_vec().unwrap()[..per]
        .iter()
        .map(|v| *v as f32)
        .collect();
    let mut one = shape.clone();
    one[0] = 1;
    vec![(input, Tensor::from_vec(&one, data).unwrap())]
}

/// Runs the pipeline file `yaml` (`qtool run`) and asserts its one output is byte for byte the
/// model `direct` (written by `qtool quantize` from the same settings).
fn assert_run_writes(yaml: &Path, direct: &Path, what: &str) {
    let p = qtool_pipeline::config::load(yaml, &Default::default()).unwrap();
    let r = qtool_pipeline::run::run(&p, &Default::default(), &mut |_, _, _| {}).unwrap();
    assert_eq!(
        std::fs::read(direct).unwrap(),
        std::fs::read(&r.outputs[0].path).unwrap(),
        "{what}: quantize and run wrote different models"
    );
}

#[test]
fn quantize_writes_what_run_writes_from_the_same_settings() {
    let dir = tempfile::tempdir().unwrap();
    for format in [Format::Qdq, Format::Qlinear, Format::Integer] {
        let direct = dir.path().join(format!("direct.{}.onnx", format.name()));
        let summary = quantize(
            &example("model.onnx"),
            &example("calib.npy"),
            Some(&example("eval.npy")),
            &direct,
            &settings(format),
            &mut |_, _| {},
        )
        .unwrap();
        let names: Vec<&str> = summary.passes.iter().map(|p| p.0.as_str()).collect();
        let mut want = vec![
            "remove_identity",
            "fold_constants",
            "fold_batchnorm",
            "insert_qdq",
        ];
        if let Some(p) = match format {
            Format::Qdq => None,
            Format::Qlinear => Some("qdq_to_qlinear"),
            Format::Integer => Some("qdq_to_integer"),
            Format::Dynamic => unreachable!("not in this loop"),
        } {
            want.push(p);
        }
        want.push("eliminate_dead_code");
        assert_eq!(names, want);
        assert_eq!(summary.eval_samples, 8);
        assert!(summary.calibrated_tensors > 0);
        assert!(!summary.fidelity.is_empty());
        assert!(summary.fidelity.iter().all(|f| f.sqnr_db > 10.0));

        let yaml = dir.path().join(format!("{}.yaml", format.name()));
        std::fs::write(
            &yaml,
            format!(
                "model: {}\ndata:\n  calibration:\n    path: {}\n  evaluation:\n    path: {}\n\
                 outputs:\n  - format: {}\n    path: run.{}.onnx\n",
                example("model.onnx").display(),
                example("calib.npy").display(),
                example("eval.npy").display(),
                format.name(),
                format.name(),
            ),
        )
        .unwrap();
        assert_run_writes(&yaml, &direct, format.name());
    }
}

/// Moves every weight (initializer of rank >= 2) into a Constant node, as Paddle exports do.
const TO_CONSTANTS: &str = r#"
import sys, onnx
from onnx import helper, numpy_helper
m = onnx.load(sys.argv[1])
g = m.graph
keep, consts = [], []
for t in g.initializer:
    if len(t.dims) >= 2:
        consts.append(helper.make_node("Constant", [], [t.name], name=t.name + "_const", value=t))
    else:
        keep.append(t)
del g.initializer[:]
g.initializer.extend(keep)
nodes = consts + list(g.node)
del g.node[:]
g.node.extend(nodes)
onnx.checker.check_model(m, full_check=True)
onnx.save(m, sys.argv[2])
print(len(consts))
"#;

#[test]
fn constant_node_weights_are_quantized_like_initializers() {
    let Some(python) = qtool_testkit::reference_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let consts = dir.path().join("constants.onnx");
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(TO_CONSTANTS)
        .arg(example("model.onnx"))
        .arg(&consts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let moved: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(moved >= 3, "the example has Conv and Gemm weights");
    let m = qtool_pipeline::onnx::load(&consts).unwrap();
    assert_eq!(
        m.graph
            .nodes()
            .filter(|(_, n)| matches!(n.op(), qtool_pipeline::ir::Op::Constant(_)))
            .count(),
        moved
    );

    let s = settings(Format::Qdq);
    let (a, b) = (dir.path().join("a.onnx"), dir.path().join("b.onnx"));
    quantize(
        &example("model.onnx"),
        &example("calib.npy"),
        None,
        &a,
        &s,
        &mut |_, _| {},
    )
    .unwrap();
    let summary = quantize(&consts, &example("calib.npy"), None, &b, &s, &mut |_, _| {}).unwrap();
    let folded = summary
        .passes
        .iter()
        .find(|p| p.0 == "fold_constants")
        .unwrap();
    assert!(folded.1 >= moved, "fold_constants rewrote {}", folded.1);

    // The same quantized weights: no Constant node left, as many int8 initializers, and the same
    // outputs bit for bit.
    let qb = qtool_pipeline::onnx::load(&b).unwrap();
    let qa = qtool_pipeline::onnx::load(&a).unwrap();
    assert!(
        !qb.graph
            .nodes()
            .any(|(_, n)| matches!(n.op(), qtool_pipeline::ir::Op::Constant(_)))
    );
    let int8 = |m: &qtool_pipeline::ir::Model| {
        m.graph
            .value_ids()
            .filter_map(|v| m.graph.initializer(v))
            .filter(|t| t.dtype == qtool_tensor::DType::I8)
            .count()
    };
    assert_eq!(int8(&qa), int8(&qb));
    assert!(int8(&qb) >= moved);
    let x = eval_sample();
    assert_eq!(run_model(&a, &x), run_model(&b, &x));
}

#[test]
fn bad_arguments_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(Format::Qdq);
    let e = quantize(
        &dir.path().join("missing.onnx"),
        &example("calib.npy"),
        None,
        &dir.path().join("o.onnx"),
        &s,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("missing.onnx"), "{e:#}");
    let e = quantize(
        &example("model.onnx"),
        &dir.path().join("nodata.npy"),
        None,
        &dir.path().join("o.onnx"),
        &s,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("nodata.npy"), "{e:#}");
    // Never over the input model.
    let copy = dir.path().join("m.onnx");
    std::fs::copy(example("model.onnx"), &copy).unwrap();
    let e = quantize(
        &copy,
        &example("calib.npy"),
        None,
        &copy,
        &s,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("refusing to overwrite"), "{e:#}");
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(example("model.onnx")).unwrap()
    );
    // A bad exclusion pattern.
    let e = quantize(
        &example("model.onnx"),
        &example("calib.npy"),
        None,
        &dir.path().join("o.onnx"),
        &QuantizeSettings {
            exclude_regex: vec!["(".into()],
            ..settings(Format::Qdq)
        },
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("("), "{e:#}");
}

/// The op types of a model (`domain::op_type` outside the default domain).
fn op_types(path: &Path) -> Vec<String> {
    let m = qtool_pipeline::onnx::load(path).unwrap();
    qtool_pipeline::inspect(&m).ops.into_keys().collect()
}

#[test]
fn dynamic_needs_no_data_and_refuses_calibration_settings() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dyn.onnx");
    let s = settings(Format::Dynamic);
    let summary = qtool_pipeline::quantize::quantize_with(
        &example("model.onnx"),
        None,
        None,
        &out,
        &s,
        &mut |_, _| panic!("dynamic quantization does not calibrate"),
    )
    .unwrap();
    assert_eq!(summary.calibrated_tensors, 0);
    assert!(summary.fidelity.is_empty(), "no data, no evaluation");
    assert!(summary.passes.iter().any(|p| p.0 == "quantize_dynamic"));
    let ops = op_types(&out);
    assert!(ops.iter().any(|o| o == "DynamicQuantizeLinear"), "{ops:?}");
    assert!(ops.iter().any(|o| o == "ConvInteger"), "{ops:?}");
    assert!(!ops.iter().any(|o| o == "QuantizeLinear"), "{ops:?}");

    // With evaluation data it is compared against FP32; op-type exclusions reach the dynamic pass.
    let out2 = dir.path().join("dyn2.onnx");
    let summary = quantize(
        &example("model.onnx"),
        &example("calib.npy"),
        Some(&example("eval.npy")),
        &out2,
        &QuantizeSettings {
            exclude_op_types: vec!["Conv".into()],
            ..settings(Format::Dynamic)
        },
        &mut |_, _| {},
    )
    .unwrap();
    assert!(!summary.fidelity.is_empty());
    assert!(summary.fidelity.iter().all(|f| f.sqnr_db > 10.0));
    let ops = op_types(&out2);
    assert!(!ops.iter().any(|o| o == "ConvInteger"), "{ops:?}");
    assert!(ops.iter().any(|o| o == "Conv"), "{ops:?}");
    assert!(ops.iter().any(|o| o == "MatMulInteger"), "{ops:?}");

    // Settings dynamic quantization would ignore are refused.
    for (bad, what) in [
        (
            QuantizeSettings {
                method: Some(qtool_pipeline::calib::Method::Entropy),
                ..settings(Format::Dynamic)
            },
            "--method",
        ),
        (
            QuantizeSettings {
                activations_s8: true,
                ..settings(Format::Dynamic)
            },
            "--activations",
        ),
        (
            QuantizeSettings {
                stats: Some(dir.path().join("any.stats")),
                ..settings(Format::Dynamic)
            },
            "--stats",
        ),
    ] {
        let e = qtool_pipeline::quantize::quantize_with(
            &example("model.onnx"),
            None,
            None,
            &dir.path().join("x.onnx"),
            &bad,
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains(what), "{what}: {e:#}");
    }
    // A static format without data or statistics names both ways out.
    let e = qtool_pipeline::quantize::quantize_with(
        &example("model.onnx"),
        None,
        None,
        &dir.path().join("x.onnx"),
        &settings(Format::Qdq),
        &mut |_, _| {},
    )
    .unwrap_err();
    let m = format!("{e:#}");
    assert!(m.contains("--data") && m.contains("--stats"), "{m}");
}

#[test]
fn contrib_reaches_the_conversion() {
    let dir = tempfile::tempdir().unwrap();
    // Dynamic: MatMul/Gemm become ONNX Runtime's DynamicQuantizeMatMul.
    let out = dir.path().join("dyn_contrib.onnx");
    quantize(
        &example("model.onnx"),
        &example("calib.npy"),
        None,
        &out,
        &QuantizeSettings {
            contrib: true,
            ..settings(Format::Dynamic)
        },
        &mut |_, _| {},
    )
    .unwrap();
    let ops = op_types(&out);
    assert!(
        ops.iter()
            .any(|o| o == "com.microsoft::DynamicQuantizeMatMul"),
        "{ops:?}"
    );
    let text = qtool_pipeline::quantize::pipeline_yaml(
        &example("model.onnx"),
        Some(&example("calib.npy")),
        None,
        &out,
        &QuantizeSettings {
            contrib: true,
            ..settings(Format::Qlinear)
        },
    )
    .unwrap();
    assert!(text.contains("contrib: true"), "{text}");
    // QDQ has no contrib variant: a clear error, nothing written.
    let qdq = dir.path().join("qdq_contrib.onnx");
    let e = quantize(
        &example("model.onnx"),
        &example("calib.npy"),
        None,
        &qdq,
        &QuantizeSettings {
            contrib: true,
            ..settings(Format::Qdq)
        },
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("contrib"), "{e:#}");
    assert!(!qdq.exists());
    // qlinear: the com.microsoft ops are written, and `qtool quantize` writes what `qtool run`
    // writes from the same settings.
    let ql = dir.path().join("ql_contrib.onnx");
    quantize(
        &example("model.onnx"),
        &example("calib.npy"),
        None,
        &ql,
        &QuantizeSettings {
            contrib: true,
            ..settings(Format::Qlinear)
        },
        &mut |_, _| {},
    )
    .unwrap_or_else(|e| panic!("qlinear + contrib: {e:#}"));
    let yaml = dir.path().join("ql.yaml");
    std::fs::write(
        &yaml,
        format!(
            "model: {}\ndata:\n  calibration:\n    path: {}\n\
             outputs:\n  - format: qlinear\n    contrib: true\n    path: run.onnx\n",
            example("model.onnx").display(),
            example("calib.npy").display(),
        ),
    )
    .unwrap();
    assert_run_writes(&yaml, &ql, "qlinear + contrib");
    let ops = op_types(&ql);
    let ms: Vec<&String> = ops
        .iter()
        .filter(|o| o.starts_with("com.microsoft::"))
        .collect();
    assert!(
        ms.iter()
            .any(|o| *o == "com.microsoft::QGemm" || o.starts_with("com.microsoft::QLinear")),
        "contrib: true wrote no com.microsoft QLinear op: {ops:?}"
    );
    let m = qtool_pipeline::onnx::load(&ql).unwrap();
    assert_eq!(m.opset(qtool_pipeline::ir::ops::DOMAIN_MS), Some(1));
}

#[test]
fn saved_statistics_give_the_model_their_data_gives() {
    let dir = tempfile::tempdir().unwrap();
    // The statistics of a calibration over the example's data (histograms kept).
    let yaml = dir.path().join("stats.yaml");
    std::fs::write(
        &yaml,
        format!(
            "model: {}\ndata:\n  calibration:\n    path: {}\n\
             calibration:\n  method: entropy\n  save_stats: calib.stats\n\
             outputs:\n  - format: qdq\n    path: unused.onnx\nevaluation:\n  enabled: false\n",
            example("model.onnx").display(),
            example("calib.npy").display(),
        ),
    )
    .unwrap();
    let p = qtool_pipeline::config::load(&yaml, &Default::default()).unwrap();
    qtool_pipeline::run::run(&p, &Default::default(), &mut |_, _, _| {}).unwrap();
    let stats = dir.path().join("calib.stats");
    assert!(stats.is_file());

    for method in [
        qtool_pipeline::calib::Method::MinMax,
        qtool_pipeline::calib::Method::Percentile,
        qtool_pipeline::calib::Method::Entropy,
        qtool_pipeline::calib::Method::Mse,
    ] {
        let s = QuantizeSettings {
            method: Some(method),
            ..settings(Format::Qdq)
        };
        let from_data = dir.path().join(format!("data_{method:?}.onnx"));
        quantize(
            &example("model.onnx"),
            &example("calib.npy"),
            None,
            &from_data,
            &s,
            &mut |_, _| {},
        )
        .unwrap();
        // No data at all: nothing runs the model, nothing evaluates.
        let from_stats = dir.path().join(format!("stats_{method:?}.onnx"));
        let summary = qtool_pipeline::quantize::quantize_with(
            &example("model.onnx"),
            None,
            None,
            &from_stats,
            &QuantizeSettings {
                stats: Some(stats.clone()),
                ..s.clone()
            },
            &mut |_, _| panic!("statistics given: no calibration run"),
        )
        .unwrap();
        assert!(summary.calibrated_tensors > 0);
        assert!(summary.fidelity.is_empty());
        assert_eq!(
            std::fs::read(&from_data).unwrap(),
            std::fs::read(&from_stats).unwrap(),
            "{method:?}: statistics and data gave different models"
        );
    }
    // With --data next to --stats, the data only evaluates.
    let summary = qtool_pipeline::quantize::quantize_with(
        &example("model.onnx"),
        Some(&example("eval.npy")),
        None,
        &dir.path().join("eval.onnx"),
        &QuantizeSettings {
            stats: Some(stats.clone()),
            ..settings(Format::Integer)
        },
        &mut |_, _| panic!("statistics given: no calibration run"),
    )
    .unwrap();
    assert_eq!(summary.eval_samples, 8);
    assert!(summary.fidelity.iter().all(|f| f.sqnr_db > 10.0));

    // Statistics of another model, and a file that is no statistics file: clear errors.
    let other = dir.path().join("other.stats");
    let oyaml = dir.path().join("other.yaml");
    std::fs::write(
        &oyaml,
        format!(
            "model: {}\ndata:\n  calibration:\n    path: {}\n\
             calibration:\n  save_stats: other.stats\n\
             outputs:\n  - format: qdq\n    path: unused2.onnx\nevaluation:\n  enabled: false\n",
            qtool_testkit::workspace_root()
                .join("examples/digits/model.onnx")
                .display(),
            qtool_testkit::workspace_root()
                .join("examples/digits/calib.npy")
                .display(),
        ),
    )
    .unwrap();
    let p = qtool_pipeline::config::load(&oyaml, &Default::default()).unwrap();
    qtool_pipeline::run::run(&p, &Default::default(), &mut |_, _, _| {}).unwrap();
    let e = qtool_pipeline::quantize::quantize_with(
        &example("model.onnx"),
        None,
        None,
        &dir.path().join("x.onnx"),
        &QuantizeSettings {
            stats: Some(other),
            ..settings(Format::Qdq)
        },
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("not of this model"), "{e:#}");
    let e = qtool_pipeline::quantize::quantize_with(
        &example("model.onnx"),
        None,
        None,
        &dir.path().join("x.onnx"),
        &QuantizeSettings {
            stats: Some(example("calib.npy")),
            ..settings(Format::Qdq)
        },
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("calib.npy"), "{e:#}");
    assert!(!dir.path().join("x.onnx").exists());
}

/// For every node reading a constant 8-bit weight (DequantizeLinear, QLinearConv, QLinearMatMul,
/// ConvInteger, MatMulInteger): its op type, and the dtype and length of the weight's zero-point.
fn weight_zero_points(path: &Path) -> Vec<(String, qtool_tensor::DType, usize)> {
    let m = qtool_pipeline::onnx::load(path).unwrap();
    let g = &m.graph;
    let mut out = Vec::new();
    for (_, n) in g.nodes() {
        let (w, z) = match n.op().op_type() {
            "DequantizeLinear" => (0, 2),
            "ConvInteger" | "MatMulInteger" => (1, 3),
            "QLinearConv" | "QLinearMatMul" => (3, 5),
            _ => continue,
        };
        let (Some(w), Some(z)) = (n.input(w), n.input(z)) else {
            continue;
        };
        let (Some(wt), Some(zt)) = (g.initializer(w), g.initializer(z)) else {
            continue;
        };
        if matches!(wt.dtype, qtool_tensor::DType::U8 | qtool_tensor::DType::I8) {
            out.push((n.op().op_type().to_string(), zt.dtype, zt.numel()));
        }
    }
    out
}

/// `weights: u8_asymmetric` (`--weights u8`) reaches every format: the stored weights and their
/// zero-points are uint8; per channel in QDQ and QLinear (QLinearConv takes per-channel
/// zero-points), one zero-point per ConvInteger (the integer and dynamic formats quantize Conv
/// weights per tensor, reported by the pass); `qtool quantize` writes what `qtool run` writes from
/// `quantization.weights: u8_asymmetric`; int8 activations with uint8 weights have no qlinear
/// form and are refused by name.
#[test]
fn u8_weights_reach_every_format() {
    let dir = tempfile::tempdir().unwrap();
    for format in [
        Format::Qdq,
        Format::Qlinear,
        Format::Integer,
        Format::Dynamic,
    ] {
        let out = dir.path().join(format!("u8.{}.onnx", format.name()));
        let summary = quantize(
            &example("model.onnx"),
            &example("calib.npy"),
            Some(&example("eval.npy")),
            &out,
            &QuantizeSettings {
                weights_u8: true,
                ..settings(format)
            },
            &mut |_, _| {},
        )
        .unwrap_or_else(|e| panic!("{}: {e:#}", format.name()));
        assert!(
            summary.fidelity.iter().all(|f| f.sqnr_db > 10.0),
            "{}: {:?}",
            format.name(),
            summary.fidelity
        );
        let zps = weight_zero_points(&out);
        assert!(!zps.is_empty(), "{}", format.name());
        for (op, dt, n) in &zps {
            assert_eq!(*dt, qtool_tensor::DType::U8, "{}: {op}", format.name());
            if op == "ConvInteger" {
                assert_eq!(*n, 1, "{}: ConvInteger takes one zero-point", format.name());
            }
        }
        if matches!(format, Format::Qdq | Format::Qlinear) {
            assert!(
                zps.iter().any(|(_, _, n)| *n > 1),
                "{}: {zps:?}",
                format.name()
            );
        }
        if format == Format::Dynamic {
            continue;
        }
        let yaml = dir.path().join(format!("u8.{}.yaml", format.name()));
        std::fs::write(
            &yaml,
            format!(
                "model: {}\ndata:\n  calibration:\n    path: {}\n\
                 quantization:\n  weights: u8_asymmetric\n\
                 outputs:\n  - format: {}\n    path: run.u8.{}.onnx\n",
                example("model.onnx").display(),
                example("calib.npy").display(),
                format.name(),
                format.name(),
            ),
        )
        .unwrap();
        assert_run_writes(&yaml, &out, format.name());
    }
    let e = quantize(
        &example("model.onnx"),
        &example("calib.npy"),
        None,
        &dir.path().join("s8u8.onnx"),
        &QuantizeSettings {
            weights_u8: true,
            activations_s8: true,
            ..settings(Format::Qlinear)
        },
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("int8 x uint8"), "{e:#}");
    let yaml = dir.path().join("s8u8.yaml");
    std::fs::write(
        &yaml,
        format!(
            "model: {}\ndata:\n  calibration:\n    path: {}\n\
             quantization:\n  activations: i8_symmetric\n  weights: u8_asymmetric\n\
             outputs:\n  - format: qdq\n    path: a.onnx\n  - format: qlinear\n    path: b.onnx\n",
            example("model.onnx").display(),
            example("calib.npy").display(),
        ),
    )
    .unwrap();
    let e = qtool_pipeline::config::load(&yaml, &Default::default()).unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("outputs[1].format") && e.contains("int8 x uint8"),
        "{e}"
    );
}
