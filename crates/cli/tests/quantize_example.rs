//! `qtool quantize` on the bundled example, in every format: the output passes the onnx checker
//! (full_check), runs in ONNX Runtime, and ONNX Runtime's outputs equal qtool's own execution of it.

mod common;
use common::ok;
use std::path::Path;
use std::process::Command;

#[test]
fn quantized_example_runs_in_onnx_runtime_like_in_qtool() {
    let Some(python) = qtool_testkit::reference_python() else {
        return;
    };
    let root = qtool_testkit::workspace_root();
    let ex = root.join("examples/tiny_cnn");
    let dir = tempfile::tempdir().unwrap();
    let p = |x: &Path| x.to_str().unwrap().to_string();
    for format in ["qdq", "qlinear", "integer"] {
        let out = dir.path().join(format!("tiny.{format}.onnx"));
        let report = ok(&[
            "quantize",
            &p(&ex.join("model.onnx")),
            "--data",
            &p(&ex.join("calib.npy")),
            "--eval",
            &p(&ex.join("eval.npy")),
            "--method",
            "entropy",
            "--format",
            format,
            "-o",
            &p(&out),
        ]);
        assert!(report.contains("top-1"), "{report}");
        // The checker accepts it.
        let chk = Command::new(&python)
            .args(["-c", "import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            chk.status.success(),
            "{format}: onnx checker: {}",
            String::from_utf8_lossy(&chk.stderr)
        );
        // ORT and qtool agree on the evaluation samples (one sample at a time: batch 1 model).
        let x = qtool_data::load_npy(&ex.join("eval.npy")).unwrap();
        let first = x
            .view::<f32>()
            .unwrap()
            .index_axis(ndarray_axis0(), 0)
            .to_owned()
            .insert_axis(ndarray_axis0());
        let inp = dir.path().join("in.npz");
        qtool_data::npz::write_npz(
            &[("x".into(), qtool_tensor::Tensor::F32(first))],
            std::fs::File::create(&inp).unwrap(),
        )
        .unwrap();
        let ort_out = dir.path().join(format!("ort.{format}.npz"));
        let st = qtool_testkit::python_script(&python, "ort_run.py")
            .arg(&out)
            .arg("--inputs")
            .arg(&inp)
            .arg("--out")
            .arg(&ort_out)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{format}: ORT failed: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        let ours_dir = dir.path().join(format!("q.{format}"));
        ok(&["exec", &p(&out), "--input", &p(&inp), "-o", &p(&ours_dir)]);
        let ours = qtool_data::load_npy(&ours_dir.join("prob.npy")).unwrap();
        let theirs = qtool_data::load_npz(&ort_out).unwrap().remove(0).1;
        qtool_testkit::assert_allclose(
            &ours,
            &theirs,
            1e-5,
            1e-6,
            &format!("{format}: prob, qtool vs ORT"),
        );
    }
}

fn ndarray_axis0() -> ndarray::Axis {
    ndarray::Axis(0)
}
