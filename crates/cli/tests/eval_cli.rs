//! `qtool eval` end to end on the bundled example: the printed table, the JSON and the HTML report,
//! accuracy with labels, the help text, and clear errors (never a panic) on bad input.

mod common;
use common::{fails_with, ok, p};
use std::path::Path;

#[test]
fn eval_prints_the_table_and_writes_json_and_html() {
    let ex = qtool_testkit::workspace_root().join("examples/tiny_cnn");
    let dir = tempfile::tempdir().unwrap();
    let model = ex.join("model.onnx");
    let data = ex.join("eval.npy");
    let q = dir.path().join("tiny.integer.onnx");
    ok(&[
        "quantize",
        &p(&model),
        "--data",
        &p(&ex.join("calib.npy")),
        "--format",
        "integer",
        "-o",
        &p(&q),
    ]);
    // Labels: the FP32 model's own predictions, so its accuracy is 100% and the quantized
    // model's accuracy equals its top-1 agreement.
    let exec = fp32_predictions(&model, &data);
    let labels = dir.path().join("labels.npy");
    std::fs::write(
        &labels,
        qtool_data::npy::npy_bytes(&qtool_tensor::Tensor::from_vec(&[exec.len()], exec).unwrap())
            .unwrap(),
    )
    .unwrap();

    let json = dir.path().join("eval.json");
    let html = dir.path().join("eval.html");
    let table = ok(&[
        "eval",
        &p(&model),
        &p(&q),
        "--data",
        &p(&data),
        "--labels",
        &p(&labels),
        "--json",
        &p(&json),
        "--html",
        &p(&html),
        "--threads",
        "1",
    ]);
    assert!(table.contains("qops-integer"), "{table}");
    assert!(table.contains("on 8 samples"), "{table}");
    assert!(table.contains("prob"), "{table}");
    assert!(table.contains("100.00%"), "{table}");
    assert!(table.contains("worst of"), "{table}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["schema"], "qtool.eval/1");
    assert_eq!(r["samples"], 8);
    let c = &r["outputs"][0]["classifier"];
    assert_eq!(c["accuracy_reference"], 1.0);
    assert_eq!(c["accuracy_candidate"], c["top1_agreement"]);
    let layers = r["layers"].as_array().unwrap();
    assert!(layers.len() >= 5);
    let sq: Vec<f64> = layers
        .iter()
        .filter_map(|l| l["sqnr_db"].as_f64())
        .collect();
    assert!(sq.windows(2).all(|w| w[0] <= w[1]), "{sq:?}");
    // At most 10 layers are printed by default.
    let printed = table
        .lines()
        .skip_while(|l| !l.contains("worst of"))
        .count();
    assert!(printed <= 12, "{table}");

    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("id=\"per-layer-sqnr-0\""));
    // The data JSON sits next to the page.
    let data_json = dir.path().join("eval.report.json");
    assert!(
        data_json.exists(),
        "eval.json is the --json file, so eval.report.json"
    );

    // Same inputs, same bytes.
    let json2 = dir.path().join("eval2.json");
    ok(&[
        "eval",
        &p(&model),
        &p(&q),
        "--data",
        &p(&data),
        "--labels",
        &p(&labels),
        "--json",
        &p(&json2),
    ]);
    assert_eq!(
        std::fs::read(&json).unwrap(),
        std::fs::read(&json2).unwrap()
    );

    // --samples and --outputs-only.
    let t = ok(&[
        "eval",
        &p(&model),
        &p(&q),
        "--data",
        &p(&data),
        "--samples",
        "3",
        "--outputs-only",
    ]);
    assert!(t.contains("on 3 samples") && !t.contains("worst of"), "{t}");
}

/// The FP32 model's arg-max class of every evaluation sample.
fn fp32_predictions(model: &Path, data: &Path) -> Vec<i64> {
    let dir = tempfile::tempdir().unwrap();
    ok(&["exec", &p(model), "-i", &p(data), "-o", &p(dir.path())]);
    let prob = qtool_data::load_npy(&dir.path().join("prob.npy")).unwrap();
    let v = prob.to_f64_vec().unwrap();
    v.chunks(10)
        .map(|r| {
            let mut best = 0;
            for (i, &x) in r.iter().enumerate() {
                if x > r[best] {
                    best = i;
                }
            }
            best as i64
        })
        .collect()
}

#[test]
fn eval_help_is_complete() {
    let h = ok(&["eval", "--help"]);
    for opt in [
        "REFERENCE",
        "CANDIDATE",
        "--data",
        "--labels",
        "--samples",
        "--json",
        "--html",
        "--threads",
        "--outputs-only",
        "--worst",
    ] {
        assert!(h.contains(opt), "{opt} missing from:\n{h}");
    }
    assert!(ok(&["--help"]).contains("eval"));
}

#[test]
fn bad_input_gives_clear_errors() {
    let ex = qtool_testkit::workspace_root().join("examples/tiny_cnn");
    let dir = tempfile::tempdir().unwrap();
    let model = p(&ex.join("model.onnx"));
    let data = p(&ex.join("eval.npy"));
    fails_with(
        &["eval", &model, &model, "--data", "/nonexistent/x.npy"],
        "no such file",
    );
    fails_with(
        &["eval", &model, "/nonexistent/q.onnx", "--data", &data],
        "cannot load candidate model",
    );
    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"not a model").unwrap();
    fails_with(
        &["eval", &model, &p(&garbage), "--data", &data],
        "cannot load candidate model",
    );
    let labels = dir.path().join("labels.npy");
    std::fs::write(
        &labels,
        qtool_data::npy::npy_bytes(
            &qtool_tensor::Tensor::from_vec(&[3], vec![1i64, 2, 3]).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    fails_with(
        &[
            "eval",
            &model,
            &model,
            "--data",
            &data,
            "--labels",
            &p(&labels),
        ],
        "3 entries",
    );
    fails_with(
        &["eval", &model, &model, "--data", &data, "--json", &model],
        "refusing to overwrite",
    );
    fails_with(&["eval", &model, &model], "--data");
}
