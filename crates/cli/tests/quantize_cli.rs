//! `qtool quantize`'s command line: `--help` names every flag and the default range method (the
//! same as `qtool calibrate`'s and the pipeline file's); `--format dynamic` runs without data;
//! `--stats` takes the statistics `qtool calibrate -o` writes and gives the model calibrating on the
//! same data gives; bad flag values give clear errors.

use std::path::Path;
use std::process::{Command, Output};

fn qtool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qtool"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = qtool(args);
    assert!(
        out.status.success(),
        "qtool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(args: &[&str]) -> String {
    let out = qtool(args);
    assert!(!out.status.success(), "qtool {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn p(x: &Path) -> String {
    x.to_str().unwrap().to_string()
}

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
