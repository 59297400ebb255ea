//! Load → save is lossless, as judged independently by the `onnx` Python package: for every ONNX
//! backend node-test model and every fetched real model, `onnx.checker.check_model(full_check=True)`
//! passes on the saved model wherever it passes on the input, the two are equal as protobuf messages,
//! and every initializer's bytes are identical (xtask/python/check_roundtrip.py --pairs).

use std::io::Write;
use std::path::PathBuf;

fn node_test_models() -> Vec<PathBuf> {
    let dir = qtool_testkit::workspace_root().join("testdata/onnx-node");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("model.onnx"))
        .filter(|p| p.exists())
        .collect();
    v.sort();
    v
}

#[test]
fn round_trip_is_lossless_per_the_onnx_package() {
    let Some(python) = qtool_testkit::reference_python() else {
        return;
    };
    let mut models = node_test_models();
    assert!(
        models.len() > 600,
        "expected the generated node-test models, found {}",
        models.len()
    );
    let real = qtool_testkit::real_models();
    if qtool_testkit::reference_required() {
        assert!(
            real.len() >= 5,
            "expected the fetched real models, found {}",
            real.len()
        );
    }
    models.extend(real);

    let out = tempfile::tempdir().unwrap();
    let pairs_path = out.path().join("pairs.tsv");
    let mut pairs = std::fs::File::create(&pairs_path).unwrap();
    for (i, m) in models.iter().enumerate() {
        let model = qtool_onnx::load(m).unwrap_or_else(|e| panic!("{}: {e}", m.display()));
        let dest = out.path().join(format!("{i:04}.onnx"));
        qtool_onnx::save(
            &model,
            &dest,
            &qtool_onnx::SaveOptions::default().with_source(m),
        )
        .unwrap();
        writeln!(pairs, "{}\t{}", m.display(), dest.display()).unwrap();
    }
    drop(pairs);
    let res = qtool_testkit::python_script(&python, "check_roundtrip.py")
        .arg("--pairs")
        .arg(&pairs_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&res.stdout);
    let stderr = String::from_utf8_lossy(&res.stderr);
    println!("{stdout}");
    assert!(
        res.status.success(),
        "round trip not lossless per the onnx package:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("{} passed, 0 failed", models.len())),
        "{stdout}"
    );
}
