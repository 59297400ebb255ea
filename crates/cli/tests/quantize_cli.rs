//! `qtool quantize`'s command line: `--help` names every flag and the default range method (the
//! same as `qtool calibrate`'s and the pipeline file's); `--format dynamic` runs without data;
//! `--stats` takes the statistics `qtool calibrate -o` writes and gives the model calibrating on the
//! same data gives; `--weights u8` writes uint8 weights in every format; bad flag values give clear
//! errors.

mod common;
use common::{fails, ok, p};

#[test]
fn help_names_every_flag_and_the_default_method() {
    let help = ok(&["quantize", "--help"]);
    for flag in [
        "--data",
        "--eval",
        "--output",
        "--format",
        "--method",
        "--activations",
        "--weights",
        "--per-tensor",
        "--exclude-nodes",
        "--exclude-op-types",
        "--contrib",
        "--stats",
        "--samples",
        "--threads",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    for format in ["qdq", "qlinear", "integer", "dynamic"] {
        assert!(help.contains(format), "{format} missing from:\n{help}");
    }
    let default = qtool_pipeline::config::DEFAULT_METHOD_NAME;
    assert!(
        help.contains(&format!("default: {default}")),
        "quantize --help does not give the default method {default}:\n{help}"
    );
    let cal = ok(&["calibrate", "--help"]);
    assert!(
        cal.contains(&format!("[default: {default}]")),
        "calibrate --help does not give the default method {default}:\n{cal}"
    );
}

#[test]
fn dynamic_without_data_and_stats_from_calibrate() {
    let ex = qtool_testkit::workspace_root().join("examples/tiny_cnn");
    let dir = tempfile::tempdir().unwrap();
    let model = p(&ex.join("model.onnx"));
    let calib = p(&ex.join("calib.npy"));

    let dynq = dir.path().join("dyn.onnx");
    let text = ok(&["quantize", &model, "--format", "dynamic", "-o", &p(&dynq)]);
    assert!(text.contains("dynamic (no calibration)"), "{text}");
    assert!(text.contains("not evaluated"), "{text}");
    assert!(dynq.is_file());

    // Statistics with histograms serve every method.
    let stats = dir.path().join("tiny.stats");
    ok(&[
        "calibrate",
        &model,
        "--data",
        &calib,
        "--method",
        "entropy",
        "-o",
        &p(&stats),
    ]);
    for method in ["minmax", "percentile", "entropy", "mse"] {
        let a = dir.path().join(format!("data.{method}.onnx"));
        let b = dir.path().join(format!("stats.{method}.onnx"));
        ok(&[
            "quantize",
            &model,
            "--data",
            &calib,
            "--method",
            method,
            "-o",
            &p(&a),
        ]);
        let text = ok(&[
            "quantize",
            &model,
            "--stats",
            &p(&stats),
            "--eval",
            &p(&ex.join("eval.npy")),
            "--method",
            method,
            "-o",
            &p(&b),
        ]);
        assert!(text.contains("ranges of"), "{text}");
        assert!(text.contains("SQNR"), "{text}");
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{method}: --stats from `qtool calibrate -o` and --data gave different models"
        );
    }

    // Clear errors.
    let e = fails(&["quantize", &model, "-o", &p(&dir.path().join("x.onnx"))]);
    assert!(e.contains("--data") && e.contains("--stats"), "{e}");
    let e = fails(&[
        "quantize",
        &model,
        "--format",
        "dynamic",
        "--method",
        "entropy",
        "-o",
        &p(&dir.path().join("x.onnx")),
    ]);
    assert!(e.contains("--method"), "{e}");
    let e = fails(&[
        "quantize",
        &model,
        "--data",
        &calib,
        "--format",
        "int4",
        "-o",
        &p(&dir.path().join("x.onnx")),
    ]);
    assert!(e.contains("int4") && e.contains("dynamic"), "{e}");
    let e = fails(&[
        "quantize",
        &model,
        "--data",
        &calib,
        "--format",
        "qdq",
        "--contrib",
        "-o",
        &p(&dir.path().join("x.onnx")),
    ]);
    assert!(e.contains("contrib"), "{e}");
    assert!(!dir.path().join("x.onnx").exists());
}

/// `--weights u8`: every format is written with uint8 weights (the integer format's ConvInteger
/// with one weight zero-point, reported per Conv); bad values and s8 activations with u8 weights in
/// the qlinear format are refused with the reason.
#[test]
fn weights_u8_in_every_format() {
    let ex = qtool_testkit::workspace_root().join("examples/tiny_cnn");
    let dir = tempfile::tempdir().unwrap();
    let model = p(&ex.join("model.onnx"));
    let calib = p(&ex.join("calib.npy"));
    for format in ["qdq", "qlinear", "integer", "dynamic"] {
        let out = dir.path().join(format!("u8.{format}.onnx"));
        let mut args = vec!["quantize", &model, "--weights", "u8", "--format", format];
        if format != "dynamic" {
            args.extend(["--data", &calib]);
        }
        let o = p(&out);
        args.extend(["-o", &o]);
        let text = ok(&args);
        assert!(text.contains("SQNR") || format == "dynamic", "{text}");
        let m = qtool_pipeline::onnx::load(&out).unwrap();
        let g = &m.graph;
        let eight: Vec<qtool_tensor::DType> = g
            .nodes()
            .filter(|(_, n)| {
                matches!(
                    n.op().op_type(),
                    "QLinearConv" | "ConvInteger" | "MatMulInteger" | "QLinearMatMul"
                ) || (n.op().op_type() == "DequantizeLinear"
                    && n.input(0).is_some_and(|v| g.initializer(v).is_some()))
            })
            .filter_map(|(_, n)| {
                let w = match n.op().op_type() {
                    "QLinearConv" | "QLinearMatMul" => 3,
                    "ConvInteger" | "MatMulInteger" => 1,
                    _ => 0,
                };
                g.initializer(n.input(w)?).map(|t| t.dtype)
            })
            .filter(|d| *d != qtool_tensor::DType::I32)
            .collect();
        assert!(!eight.is_empty(), "{format}");
        assert!(
            eight.iter().all(|d| *d == qtool_tensor::DType::U8),
            "{format}: {eight:?}"
        );
    }
    let e = fails(&[
        "quantize",
        &model,
        "--data",
        &calib,
        "--weights",
        "u4",
        "-o",
        &p(&dir.path().join("x.onnx")),
    ]);
    assert!(e.contains("--weights") && e.contains("u4"), "{e}");
    let e = fails(&[
        "quantize",
        &model,
        "--data",
        &calib,
        "--weights",
        "u8",
        "--activations",
        "s8",
        "--format",
        "qlinear",
        "-o",
        &p(&dir.path().join("x.onnx")),
    ]);
    assert!(e.contains("int8 x uint8"), "{e}");
    assert!(!dir.path().join("x.onnx").exists());
}
