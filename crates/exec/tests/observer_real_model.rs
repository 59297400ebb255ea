//! The observer sees every intermediate tensor of a real model with the right names, shapes and
//! values: each node output of PP-OCR's direction classifier is compared with the same value computed
//! by ONNX Runtime (every intermediate exposed as an output; xtask/python/ort_intermediates.py).

use qtool_exec::{ExecOptions, Executor};
use std::collections::HashMap;

#[test]
fn observer_sees_every_intermediate_of_a_real_model() {
    let Some(python) = qtool_testkit::reference_python() else {
        return;
    };
    let Some(dir) = qtool_testkit::models_dir() else {
        return;
    };
    let path = dir.join("ppocr_mobile_v2_cls.onnx");
    let model = qtool_onnx::load(&path).unwrap();
    let exec = Executor::new(&model, ExecOptions { threads: Some(2) }).unwrap();
    let x = qtool_testkit::Rng::new(11).tensor_f32(&[1, 3, 48, 192], -1.0, 1.0);
    let work = tempfile::tempdir().unwrap();
    let inp = work.path().join("in.npz");
    let out = work.path().join("ort.npz");
    qtool_data::npz::write_npz(
        &[("x".to_string(), x.clone())],
        std::fs::File::create(&inp).unwrap(),
    )
    .unwrap();
    let st = qtool_testkit::python_script(&python, "ort_intermediates.py")
        .arg(&path)
        .arg("--inputs")
        .arg(&inp)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let names: Vec<String> = std::fs::read_to_string(work.path().join("ort.npz.names"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let arrays: HashMap<String, qtool_tensor::Tensor> =
        qtool_data::load_npz(&out).unwrap().into_iter().collect();

    let mut seen: Vec<(String, qtool_tensor::Tensor)> = Vec::new();
    exec.run_observed(vec![("x".into(), x)], &mut |name, t| {
        seen.push((name.to_string(), t.clone()))
    })
    .unwrap();
    let seen_map: HashMap<&str, &qtool_tensor::Tensor> =
        seen.iter().map(|(n, t)| (n.as_str(), t)).collect();
    assert_eq!(seen[0].0, "x", "graph inputs come first");
    assert!(
        names.len() > 200,
        "expected the classifier's ~250 intermediate values, got {}",
        names.len()
    );
    for (i, name) in names.iter().enumerate() {
        let ours = seen_map
            .get(name.as_str())
            .unwrap_or_else(|| panic!("the observer never saw '{name}'"));
        let theirs = &arrays[&format!("v{i}")];
        assert_eq!(ours.shape(), theirs.shape(), "shape of '{name}'");
        assert_eq!(ours.dtype(), theirs.dtype(), "dtype of '{name}'");
        if ours.dtype().is_float() {
            let e = qtool_testkit::rel_l2(ours, theirs);
            assert!(e < 1e-4, "'{name}': rel L2 {e:e} against ONNX Runtime");
        } else {
            assert_eq!(ours.to_f64_vec(), theirs.to_f64_vec(), "values of '{name}'");
        }
    }
    // Each value is observed exactly once.
    let mut names_seen: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    names_seen.sort();
    let before = names_seen.len();
    names_seen.dedup();
    assert_eq!(before, names_seen.len(), "a value was observed twice");
}
