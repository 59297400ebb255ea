//! ONNX Runtime's own quantized models run in qtool and match ORT: PP-OCR's direction classifier is
//! quantized by ORT's `quantize_static` (QDQ and QOperator, per-tensor and per-channel) and
//! `quantize_dynamic` (int8 and uint8 weights), calibrated on real photos
//! (xtask/python/ort_quantize_real.py); each model then runs in qtool and in ORT (graph
//! optimizations off) on another photo and every 8-bit intermediate value and float output is
//! compared, within the bounds docs/numerics.md states ("ONNX Runtime's quantized models").
//! `cargo xtask interop` does the same for every fetched real model.

use qtool_exec::{ExecOptions, Executor};
use qtool_tensor::{DType, Tensor};
use std::collections::HashMap;
use std::path::Path;

const MODEL: &str = "ppocr_mobile_v2_cls";
const SHAPE: [usize; 4] = [1, 3, 48, 192];

fn images_dir() -> std::path::PathBuf {
    qtool_testkit::workspace_root().join(".cache/images")
}

/// A photo of the sample set as the classifier's input: resized to 48x192, `(p / 255 - 0.5) / 0.5`.
fn photo(file: &str) -> Vec<f32> {
    let img = image::open(images_dir().join(file))
        .unwrap_or_else(|e| panic!("decoding {file}: {e} (run `cargo xtask models`)"))
        .to_rgb8();
    let (h, w) = (SHAPE[2], SHAPE[3]);
    let img = image::imageops::resize(
        &img,
        w as u32,
        h as u32,
        image::imageops::FilterType::Triangle,
    );
    let mut data = vec![0f32; 3 * h * w];
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let p = img.get_pixel(x as u32, y as u32)[c] as f32;
                data[(c * h + y) * w + x] = (p / 255.0 - 0.5) / 0.5;
            }
        }
    }
    data
}

struct Compared {
    int_elems: usize,
    int_off: usize,
    max_lsb: i64,
    out_rel_l2: f64,
}

fn compare(python: &Path, model: &Path, x: &Tensor, work: &Path) -> Compared {
    let q = qtool_onnx::load(model).unwrap();
    let exec = Executor::new(&q, ExecOptions { threads: Some(2) })
        .unwrap_or_else(|e| panic!("qtool cannot build {}: {e}", model.display()));
    let inp = work.join("in.npz");
    let out = work.join("ort.npz");
    qtool_data::npz::write_npz(
        &[("x".to_string(), x.clone())],
        std::fs::File::create(&inp).unwrap(),
    )
    .unwrap();
    let st = qtool_testkit::python_script(python, "ort_intermediates.py")
        .arg(model)
        .arg("--inputs")
        .arg(&inp)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success(), "ORT failed on {}", model.display());
    let names: Vec<String> = std::fs::read_to_string(work.join("ort.npz.names"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let theirs: HashMap<String, Tensor> = qtool_data::load_npz(&out).unwrap().into_iter().collect();
    let mut ours: HashMap<String, Tensor> = HashMap::new();
    let outputs = exec
        .run_observed(vec![("x".into(), x.clone())], &mut |n, t| {
            ours.insert(n.to_string(), t.clone());
        })
        .unwrap_or_else(|e| panic!("qtool failed on {}: {e}", model.display()));
    let mut r = Compared {
        int_elems: 0,
        int_off: 0,
        max_lsb: 0,
        out_rel_l2: 0.0,
    };
    for (i, name) in names.iter().enumerate() {
        let t = &theirs[&format!("v{i}")];
        let o = ours
            .get(name)
            .unwrap_or_else(|| panic!("qtool never produced '{name}'"));
        assert_eq!(o.shape(), t.shape(), "shape of '{name}'");
        assert_eq!(o.dtype(), t.dtype(), "type of '{name}'");
        if matches!(o.dtype(), DType::U8 | DType::I8) {
            let (a, b) = (o.to_f64_vec().unwrap(), t.to_f64_vec().unwrap());
            r.int_elems += a.len();
            for (x, y) in a.iter().zip(&b) {
                let d = (*x as i64 - *y as i64).abs();
                if d != 0 {
                    r.int_off += 1;
                    r.max_lsb = r.max_lsb.max(d);
                }
            }
        }
        if let Some((_, ot)) = outputs.iter().find(|(n, _)| n == name)
            && ot.dtype().is_float()
        {
            r.out_rel_l2 = r.out_rel_l2.max(qtool_testkit::rel_l2(ot, t));
        }
    }
    assert!(r.int_elems > 0, "{} has no 8-bit values", model.display());
    r
}

#[test]
fn ort_quantized_models_run_in_qtool_and_match_ort() {
    let Some(python) = qtool_testkit::reference_python() else {
        return;
    };
    let Some(dir) = qtool_testkit::models_dir() else {
        return;
    };
    if !images_dir().join("text.png").exists() {
        assert!(
            !qtool_testkit::reference_required(),
            "the sample photos are missing (run `cargo xtask models`)"
        );
        return;
    }
    let src = dir.join(format!("{MODEL}.onnx"));
    let work = tempfile::tempdir().unwrap();
    // Calibration: four photos concatenated on the batch axis; evaluation: the text photo.
    let calib: Vec<f32> = [
        "chelsea.png",
        "camera.png",
        "rocket.jpg",
        "motorcycle_left.png",
    ]
    .iter()
    .flat_map(|f| photo(f))
    .collect();
    let calib = Tensor::from_vec(&[4, SHAPE[1], SHAPE[2], SHAPE[3]], calib).unwrap();
    let calib_path = work.path().join("calib.npz");
    qtool_data::npz::write_npz(
        &[("x".to_string(), calib)],
        std::fs::File::create(&calib_path).unwrap(),
    )
    .unwrap();
    let x = Tensor::from_vec(&SHAPE, photo("text.png")).unwrap();
    let out = qtool_testkit::python_script(&python, "ort_quantize_real.py")
        .arg(&src)
        .arg("--calib")
        .arg(&calib_path)
        .arg("--out-dir")
        .arg(work.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let variant = v["variant"].as_str().unwrap();
        assert_eq!(
            v["ok"], true,
            "ORT could not quantize {MODEL} as {variant}: {}",
            v["error"]
        );
        let path = v["path"].as_str().unwrap();
        let r = compare(&python, Path::new(path), &x, work.path());
        let frac = r.int_off as f64 / r.int_elems as f64;
        eprintln!(
            "{variant}: {} of {} 8-bit elements differ (max {} LSB), output rel L2 {:.2e}",
            r.int_off, r.int_elems, r.max_lsb, r.out_rel_l2
        );
        let (rel, off, lsb) = bounds(variant);
        assert!(
            r.out_rel_l2 <= rel,
            "{variant}: output rel L2 {:.3e} > {rel:e}",
            r.out_rel_l2
        );
        assert!(
            frac <= off,
            "{variant}: {frac:.3e} of the 8-bit elements differ (> {off:e})"
        );
        if let Some(l) = lsb {
            assert!(
                r.max_lsb <= l,
                "{variant}: an 8-bit value differs by {} LSB",
                r.max_lsb
            );
        }
        // On this model the QOperator graphs (integer ops only between the first QuantizeLinear and
        // the last DequantizeLinear) agree bit for bit; keep it that way.
        if variant.starts_with("qop") {
            assert_eq!(r.int_off, 0, "{variant}: 8-bit values differ from ORT");
        }
        seen += 1;
    }
    assert_eq!(seen, 6, "every variant was quantized and compared");
}

/// (output rel L2, fraction of 8-bit elements that may differ, max LSB) per variant; the same
/// bounds as `cargo xtask interop` (xtask/src/interop_int8.rs), explained in docs/numerics.md.
fn bounds(variant: &str) -> (f64, f64, Option<i64>) {
    if variant.starts_with("qop") {
        (1e-2, 1e-4, Some(2))
    } else {
        (5e-2, 2e-1, None)
    }
}
