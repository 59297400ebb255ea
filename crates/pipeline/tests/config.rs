//! The pipeline file parser: malformed YAML (wrong type, unknown key, missing file, bad
//! indentation, tabs) gives errors naming the file, line and key path; relative paths resolve
//! against the file's directory; defaults are filled in; cross-field rules are checked.

use qtool_pipeline::config::{self, ConfigError, LoadOptions, OutputFormat, Pipeline};
use std::path::PathBuf;

/// A pipeline "file" in examples/tiny_cnn (it need not exist: relative paths resolve against it).
fn file() -> PathBuf {
    qtool_testkit::workspace_root().join("examples/tiny_cnn/pipeline-test.yaml")
}

fn parse(text: &str) -> Result<Pipeline, ConfigError> {
    config::parse(text, &file(), &LoadOptions::default())
}

fn err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

const GOOD: &str = "model: model.onnx
data:
  calibration:
    path: calib.npy
outputs:
  - format: qdq
    path: out/m.qdq.onnx
";

#[test]
fn minimal_file_gets_every_default() {
    let p = parse(GOOD).unwrap();
    let dir = file().parent().unwrap().to_path_buf();
    assert_eq!(p.model, dir.join("model.onnx"));
    assert_eq!(
        p.calibration_data.as_ref().unwrap().path,
        dir.join("calib.npy")
    );
    // The evaluation set defaults to the calibration set, 64 samples at most, in file order.
    let ev = p.evaluation_data.as_ref().unwrap();
    assert_eq!(
        (ev.path.clone(), ev.samples, ev.seed),
        (dir.join("calib.npy"), Some(64), None)
    );
    assert_eq!(p.outputs[0].path, dir.join("out/m.qdq.onnx"));
    assert_eq!(p.outputs[0].format, OutputFormat::Qdq);
    assert_eq!(p.manifest, dir.join("manifest.json"));
    let s = &p.spec;
    assert_eq!(s.version, 1);
    assert_eq!(s.calibration.method, qtool_pipeline::config::DEFAULT_METHOD);
    assert_eq!(s.calibration.percentile, 99.999);
    assert_eq!(s.calibration.histogram_bins, 16384);
    assert!(s.quantization.per_channel && !s.quantization.reduce_range);
    assert!(s.evaluation.enabled && s.evaluation.per_layer);
    let pre: Vec<&str> = s.preprocess.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(pre, ["remove_identity", "fold_constants", "fold_batchnorm"]);
    assert_eq!(s.output_dir.as_deref(), Some("."));
    // The filled-in configuration is what the manifest records.
    let v = serde_json::to_value(s).unwrap();
    assert_eq!(v["quantization"]["activations"], "u8_asymmetric");
    assert_eq!(v["data"]["evaluation"]["samples"], 64);
}

#[test]
fn outputs_resolve_against_output_dir_and_the_override() {
    let text = format!("output_dir: build/q\n{GOOD}report:\n  html: r.html\n");
    let p = parse(&text).unwrap();
    let dir = file().parent().unwrap().to_path_buf();
    assert_eq!(p.outputs[0].path, dir.join("build/q/out/m.qdq.onnx"));
    assert_eq!(
        p.report_html.as_deref(),
        Some(dir.join("build/q/r.html").as_path())
    );
    let p = config::parse(
        &text,
        &file(),
        &LoadOptions {
            output_dir: Some("/tmp/elsewhere".into()),
        },
    )
    .unwrap();
    assert_eq!(
        p.outputs[0].path,
        PathBuf::from("/tmp/elsewhere/out/m.qdq.onnx")
    );
    assert_eq!(p.manifest, PathBuf::from("/tmp/elsewhere/manifest.json"));
    // Inputs still resolve against the file.
    assert_eq!(p.model, dir.join("model.onnx"));
}

#[test]
fn full_schema_parses() {
    let text = "version: 1
model: model.onnx
output_dir: out
manifest: run.json
data:
  calibration:
    path: calib.npy
    samples: 16
    seed: 7
  evaluation:
    path: eval.npy
    samples: 4
preprocess:
  - remove_identity
  - {name: fold_constants, options: {max_elements: 1000}}
calibration:
  method: percentile
  mode: ort
  percentile: 99.9
  symmetric: false
  save_stats: calib.stats
quantization:
  activations: i8_symmetric
  per_channel: false
  reduce_range: true
  exclude:
    nodes: [fc]
    regex: ['^conv2']
    op_types: [Softmax]
  overrides:
    logits: {min: -8.0, max: 8.0}
passes: [eliminate_dead_code]
outputs:
  - format: qdq
    path: a.onnx
  - format: qlinear
    path: b.onnx
    options: {per_channel: false}
  - format: integer
    path: c.onnx
  - format: dynamic
    path: d.onnx
    contrib: true
evaluation:
  per_layer: false
report:
  html: report.html
  json: report.json
";
    let p = parse(text).unwrap();
    assert_eq!(p.outputs.len(), 4);
    assert_eq!(p.outputs[1].options["per_channel"], false);
    // Dynamic outputs inherit the weight settings and exclusions it understands, plus contrib.
    let d = &p.outputs[3].options;
    assert_eq!(d["contrib"], true);
    assert_eq!(d["per_channel"], false);
    assert_eq!(d["reduce_range"], true);
    assert_eq!(d["exclude_nodes"][0], "fc");
    assert!(d.get("exclude_op_types").is_none(), "{d}");
    assert_eq!(
        p.spec.calibration.mode,
        qtool_pipeline::calib::HistMode::Ort
    );
    assert_eq!(p.evaluation_data.as_ref().unwrap().samples, Some(4));
    assert_eq!(p.calibration_data.as_ref().unwrap().seed, Some(7));
}

#[test]
fn image_preprocessing_parses_with_calib_s_schema() {
    let text = format!(
        "{GOOD}data:\n  calibration:\n    path: calib.npy\n    preprocess:\n      resize: {{shorter_side: {{size: 20}}}}\n      center_crop: [16, 16]\n      mean: [0.5]\n      std: [0.25]\n      grayscale: true\n"
    )
    .replace("data:\n  calibration:\n    path: calib.npy\noutputs", "outputs");
    let p = parse(&text).unwrap();
    let pre = p.calibration_data.unwrap().preprocess.unwrap();
    assert_eq!(pre.center_crop, Some([16, 16]));
    assert!(pre.grayscale);
    // Its unknown keys are reported like the others.
    let e = err(&text.replace("grayscale: true", "grayscal: true"));
    assert!(e.to_string().contains("did you mean `grayscale`"), "{e}");
    assert_eq!(
        e.key.as_deref(),
        Some("data.calibration.preprocess.grayscal"),
        "{e}"
    );
}

fn assert_err(e: &ConfigError, line: usize, key: &str, words: &[&str]) {
    let shown = e.to_string();
    assert_eq!(e.line, Some(line), "{shown}");
    assert_eq!(e.key.as_deref(), Some(key), "{shown}");
    assert!(
        shown.contains(&format!("pipeline-test.yaml:{line}:")),
        "{shown}"
    );
    for w in words {
        assert!(shown.contains(w), "{shown} lacks {w}");
    }
}

#[test]
fn wrong_type_names_line_and_key() {
    let e = err(&format!("{GOOD}quantization:\n  per_channel: yes please\n"));
    assert_err(&e, 9, "quantization.per_channel", &["expected a boolean"]);
    assert_eq!(e.column, Some(16));
    let e = err(&GOOD.replace("path: calib.npy", "path: calib.npy\n    samples: -3"));
    assert_err(&e, 5, "data.calibration.samples", &["non-negative integer"]);
    let e = err(&GOOD.replace("path: out/m.qdq.onnx", "path: [a, b]"));
    assert_err(&e, 7, "outputs[0].path", &["invalid type"]);
}

#[test]
fn unknown_key_suggests_the_closest() {
    let e = err(&format!("{GOOD}calibration:\n  methd: entropy\n"));
    assert_err(
        &e,
        9,
        "calibration.methd",
        &["did you mean `method`", "expected one of"],
    );
    let e = err(&GOOD.replace("model:", "modell:"));
    assert_err(&e, 1, "modell", &["did you mean `model`"]);
    let e = err(&GOOD.replace("- format: qdq", "- format: qdq\n    contrb: true"));
    assert_err(&e, 7, "outputs[0].contrb", &["did you mean `contrib`"]);
    // Unknown values of enums too.
    let e = err(&GOOD.replace("format: qdq", "format: qlinar"));
    assert_err(&e, 6, "outputs[0].format", &["did you mean `qlinear`"]);
    // And unknown pass names.
    let e = err(&format!("{GOOD}preprocess:\n  - fold_batchnrm\n"));
    assert!(
        e.to_string().contains("did you mean `fold_batchnorm`"),
        "{e}"
    );
    assert_eq!(e.line, Some(9), "{e}");
}

#[test]
fn missing_file_names_the_key() {
    let e = err(&GOOD.replace("model.onnx", "modle.onnx"));
    assert_err(&e, 1, "model", &["no such file", "modle.onnx"]);
    let e = err(&GOOD.replace("calib.npy", "nope/calib.npy"));
    assert_err(&e, 4, "data.calibration.path", &["no such file"]);
    let e = err(&format!("{GOOD}calibration:\n  stats: missing.stats\n"));
    assert_err(&e, 9, "calibration.stats", &["no such file"]);
}

#[test]
fn bad_indentation_names_the_line_and_key() {
    let e = err(&GOOD.replace("    path: calib.npy", "    path: calib.npy\n   samples: 3"));
    assert_err(&e, 5, "data.calibration.samples", &["indentation"]);
    // A tab: the line, and a hint.
    let e = err(&GOOD.replace("    path: out", "\tpath: out"));
    assert_eq!(e.line, Some(7), "{e}");
    assert!(e.to_string().contains("tab"), "{e}");
}

#[test]
fn missing_required_keys() {
    let e = err("model: model.onnx\ndata:\n  calibration:\n    path: calib.npy\n");
    assert_eq!(e.key.as_deref(), Some("outputs"), "{e}");
    assert!(
        e.to_string().contains("missing required key `outputs`"),
        "{e}"
    );
    let e = err(&GOOD.replace("    path: out/m.qdq.onnx\n", ""));
    assert_eq!(e.key.as_deref(), Some("outputs[0].path"), "{e}");
    let e = err(&GOOD.replace("data:\n  calibration:\n    path: calib.npy\n", ""));
    assert!(e.to_string().contains("calibration"), "{e}");
    let e = err("");
    assert!(e.to_string().contains("empty"), "{e}");
}

#[test]
fn cross_field_rules() {
    // Outputs distinct.
    let e = err(&format!(
        "{GOOD}  - format: qlinear\n    path: ./out/../out/m.qdq.onnx\n"
    ));
    assert_err(&e, 9, "outputs[1].path", &["same path as outputs[0].path"]);
    // Never an input.
    let e = err(&GOOD.replace("out/m.qdq.onnx", "model.onnx"));
    assert_err(
        &e,
        7,
        "outputs[0].path",
        &["also an input (model)", "never overwrites"],
    );
    let e = err(&format!("{GOOD}report:\n  json: calib.npy\n"));
    assert_err(&e, 9, "report.json", &["also an input"]);
    // The manifest is an output too.
    let e = err(&format!("manifest: out/m.qdq.onnx\n{GOOD}"));
    assert!(e.to_string().contains("same path"), "{e}");
    // Schema version, values.
    let e = err(&format!("version: 2\n{GOOD}"));
    assert_err(&e, 1, "version", &["not supported"]);
    let e = err(&format!("{GOOD}calibration:\n  percentile: 120\n"));
    assert_err(&e, 9, "calibration.percentile", &["[0, 100]"]);
    let e = err(&GOOD.replace("path: calib.npy", "path: calib.npy\n    samples: 0"));
    assert_err(&e, 5, "data.calibration.samples", &["at least 1"]);
    // Options checked by the pass itself.
    let e = err(&GOOD.replace("- format: qdq", "- format: integer\n    contrib: true"));
    assert_err(&e, 7, "outputs[0].contrib", &["no contrib"]);
    let e = err(&GOOD.replace(
        "- format: qdq",
        "- format: integer\n    options: {matmull: false}",
    ));
    assert_err(&e, 7, "outputs[0].options", &["matmull"]);
    let e = err(&format!(
        "{GOOD}quantization:\n  exclude:\n    regex: ['(']\n"
    ));
    assert_err(&e, 10, "quantization.exclude.regex", &["("]);
    // The pipeline runs insert_qdq itself.
    let e = err(&format!("{GOOD}passes:\n  - insert_qdq\n"));
    assert!(e.to_string().contains("run by the pipeline"), "{e}");
    // Labels only for evaluation.
    let e = err(&GOOD.replace("path: calib.npy", "path: calib.npy\n    labels: eval.npy"));
    assert_err(&e, 5, "data.calibration.labels", &["evaluation"]);
}

#[test]
fn load_names_an_unreadable_file() {
    let e = config::load(&file(), &LoadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("pipeline-test.yaml"), "{e}");
    assert_eq!(e.line, None);
}
