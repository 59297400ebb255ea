//! `qtool run` end to end on the bundled tiny_cnn example: one calibration gives qdq, qlinear and
//! integer outputs; running the same file twice gives byte-identical models, report and manifest
//! (apart from its timing section); the outputs load and run; the input is never overwritten; bad
//! pipeline files fail with an error naming the line and key, never a panic.

mod common;
use common::{ok, qtool};
use std::path::Path;

fn pipeline(dir: &Path) -> std::path::PathBuf {
    let ex = qtool_testkit::workspace_root().join("examples/tiny_cnn");
    let text = format!(
        "model: {ex}/model.onnx
output_dir: out
data:
  calibration:
    path: {ex}/calib.npy
  evaluation:
    path: {ex}/eval.npy
calibration:
  method: entropy
  save_stats: calib.stats
outputs:
  - format: qdq
    path: tiny.qdq.onnx
  - format: qlinear
    path: tiny.qlinear.onnx
  - format: integer
    path: tiny.integer.onnx
report:
  html: report.html
  json: report.json
",
        ex = ex.display()
    );
    let p = dir.join("pipeline.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The manifest without its timing section.
fn manifest_body(bytes: &[u8]) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    assert!(v["timing"].is_object(), "the manifest has a timing section");
    v.as_object_mut().unwrap().remove("timing");
    v
}

#[test]
fn run_writes_every_format_from_one_calibration_deterministically() {
    let ex = qtool_testkit::workspace_root().join("examples/tiny_cnn");
    let model_before = std::fs::read(ex.join("model.onnx")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path());
    let ps = p.to_str().unwrap();
    let summary = ok(&["run", ps, "--threads", "1"]);
    for f in [
        "tiny.qdq.onnx",
        "tiny.qlinear.onnx",
        "tiny.integer.onnx",
        "SQNR dB",
        "top-1",
    ] {
        assert!(summary.contains(f), "{summary}");
    }
    let out = dir.path().join("out");
    let first = files(&out);
    let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "calib.stats",
            "manifest.json",
            "report.html",
            "report.json",
            "tiny.integer.onnx",
            "tiny.qdq.onnx",
            "tiny.qlinear.onnx"
        ]
    );

    // One calibration: 32 samples, recorded once; every output has its hash and metrics.
    let m = manifest_body(&std::fs::read(out.join("manifest.json")).unwrap());
    assert_eq!(m["schema"], "qtool.run-manifest");
    assert_eq!(m["calibration"]["samples"], 32);
    assert_eq!(m["calibration"]["source"], "data");
    assert_eq!(m["parameters"]["calibration"]["method"], "entropy");
    assert_eq!(m["parameters"]["quantization"]["per_channel"], true);
    assert_eq!(m["outputs"].as_array().unwrap().len(), 3);
    for o in m["outputs"].as_array().unwrap() {
        assert_eq!(o["sha256"].as_str().unwrap().len(), 64);
        let sqnr = o["metrics"]["sqnr_db"].as_f64().unwrap();
        assert!(sqnr > 20.0, "{o}");
        assert!(o["quantized_nodes"].as_u64().unwrap() > 0);
    }
    // The qlinear output records what each rewrite became: the Gemm as a 1x1 QLinearConv
    // between Reshapes (standard ops only), nothing skipped.
    let ql = &m["outputs"][1]["passes"][1];
    assert_eq!(ql["pass"], "qdq_to_qlinear");
    let whats: Vec<&str> = ql["rewritten"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["what"].as_str().unwrap())
        .collect();
    assert!(
        whats.contains(&"became Reshape + QLinearConv (1x1) + Reshape"),
        "{ql}"
    );
    assert!(whats.contains(&"became QLinearConv"), "{ql}");
    assert_eq!(ql["skipped"].as_array().unwrap().len(), 0, "{ql}");

    // The same file again (with a different thread count): byte-identical outputs.
    ok(&["run", ps, "--quiet", "--threads", "2"]);
    let second = files(&out);
    for ((n1, b1), (n2, b2)) in first.iter().zip(&second) {
        assert_eq!(n1, n2);
        if n1 == "manifest.json" {
            assert_eq!(manifest_body(b1), manifest_body(b2));
        } else {
            assert!(b1 == b2, "{n1} differs between two runs");
        }
    }

    // The outputs load and run.
    for f in ["tiny.qdq.onnx", "tiny.qlinear.onnx", "tiny.integer.onnx"] {
        let o = dir.path().join(format!("exec-{f}"));
        ok(&[
            "exec",
            out.join(f).to_str().unwrap(),
            "-i",
            ex.join("eval.npy").to_str().unwrap(),
            "-o",
            o.to_str().unwrap(),
        ]);
        assert!(std::fs::read_dir(&o).unwrap().count() > 0);
    }

    // Reusing the saved statistics gives the same models.
    let reuse = std::fs::read_to_string(&p)
        .unwrap()
        .replace("  save_stats: calib.stats\n", "  stats: out/calib.stats\n")
        .replace(
            &format!("  calibration:\n    path: {}/calib.npy\n", ex.display()),
            "",
        );
    assert!(!reuse.contains("calib.npy"), "{reuse}");
    let p2 = dir.path().join("reuse.yaml");
    std::fs::write(&p2, reuse).unwrap();
    let out2 = dir.path().join("out2");
    ok(&[
        "run",
        p2.to_str().unwrap(),
        "-q",
        "--output-dir",
        out2.to_str().unwrap(),
    ]);
    for f in ["tiny.qdq.onnx", "tiny.qlinear.onnx", "tiny.integer.onnx"] {
        assert!(
            std::fs::read(out.join(f)).unwrap() == std::fs::read(out2.join(f)).unwrap(),
            "{f}: statistics reuse changed the model"
        );
    }

    // The input was never touched.
    assert_eq!(std::fs::read(ex.join("model.onnx")).unwrap(), model_before);
}

#[test]
fn bad_pipelines_fail_cleanly_naming_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path());
    let good = std::fs::read_to_string(&p).unwrap();
    let model = qtool_testkit::workspace_root().join("examples/tiny_cnn/model.onnx");
    let cases: Vec<(String, &str)> = vec![
        (
            good.replace("method: entropy", "method: [entropy]"),
            "pipeline.yaml:9:11: calibration.method",
        ),
        (
            good.replace("method: entropy", "methd: entropy"),
            "did you mean `method`",
        ),
        (
            good.replace("model.onnx", "missing.onnx"),
            "pipeline.yaml:1:8: model: no such file",
        ),
        (
            good.replace("  save_stats: calib.stats", " save_stats: calib.stats"),
            "pipeline.yaml:10:",
        ),
        (
            good.replace("path: tiny.qdq.onnx", &format!("path: {}", model.display())),
            "outputs[0].path",
        ),
        ("[1, 2".into(), "pipeline.yaml:"),
        ("{}".into(), "missing required key `model`"),
    ];
    for (text, want) in cases {
        std::fs::write(&p, &text).unwrap();
        let out = qtool(&["run", p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}\n{err}");
        assert!(err.contains(want), "wanted '{want}' in: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            !dir.path().join("out").exists(),
            "nothing is written on error"
        );
    }
    // A pipeline file that does not exist.
    let out = qtool(&["run", dir.path().join("none.yaml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("none.yaml"));
}

#[test]
fn run_help_is_complete() {
    let h = ok(&["run", "--help"]);
    for w in [
        "PIPELINE",
        "--output-dir",
        "--threads",
        "--quiet",
        "--check",
        "docs/pipeline.md",
    ] {
        assert!(h.contains(w), "{w} missing from:\n{h}");
    }
    assert!(ok(&["--help"]).contains("run"));
}
