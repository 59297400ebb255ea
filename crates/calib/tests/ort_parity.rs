//! Parity with ONNX Runtime's calibration (`onnxruntime/quantization/calibrate.py`) on fixed
//! distributions: MinMax identical; Percentile and Entropy in "ort" mode within one ORT bin.
//!
//! The data is generated here (seeded), written as .npy, and `tests/ort_reference.py` runs ORT's own
//! code on it with the reference venv. Without the venv the numbers come from
//! `tests/data/ort_reference.json`, written by the same script
//! (`QTOOL_CALIB_WRITE_REFERENCE=1 cargo test -p qtool-calib --test ort_parity` refreshes it).

use qtool_calib::{
    CalibStats, HistMode, Method, RangeSettings, StatsConfig, TensorRange, compute_ranges,
};
use qtool_tensor::Tensor;
use qtool_testkit::Rng;
use serde_json::Value;
use std::path::PathBuf;

const BATCHES: usize = 16;
const SHAPE: [usize; 4] = [1, 4, 16, 16];

fn gauss(r: &mut Rng) -> f64 {
    let u1 = (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let u2 = (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * (1.0 - u1).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// name -> [batches, 1, 4, 16, 16] values; channel c scaled by 1 + c/2.
fn cases() -> Vec<(&'static str, Vec<f32>)> {
    let n = BATCHES * SHAPE.iter().product::<usize>();
    let mut r = Rng::new(20240611);
    let mut gen_case = |f: &mut dyn FnMut(&mut Rng) -> f64| -> Vec<f32> {
        (0..n)
            .map(|i| {
                let c = (i / 256) % 4;
                (f(&mut r) * (1.0 + c as f64 * 0.5)) as f32
            })
            .collect()
    };
    vec![
        ("gauss", gen_case(&mut |r| 0.3 + gauss(r))),
        ("relu", gen_case(&mut |r| gauss(r).max(0.0))),
        (
            "heavy",
            gen_case(&mut |r| {
                let g = gauss(r);
                if r.uniform(0.0, 1.0) < 0.002 {
                    g * 40.0
                } else {
                    g
                }
            }),
        ),
        (
            "skewed",
            gen_case(&mut |r| -(1.0 - r.uniform(0.0, 1.0) as f64).ln() - 0.2),
        ),
    ]
}

fn stats_of(vals: &[f32]) -> CalibStats {
    let mut s = CalibStats::new(StatsConfig {
        histogram: true,
        bins: 16384,
        channel_axis: Some(1),
        channel_bins: 2048,
        ort_bins: None,
    });
    let per = SHAPE.iter().product::<usize>();
    for b in 0..BATCHES {
        let t = Tensor::from_vec(&SHAPE, vals[b * per..(b + 1) * per].to_vec()).unwrap();
        s.observe("x", &t).unwrap();
    }
    s
}

fn reference(dir: &std::path::Path) -> Value {
    let stored = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ort_reference.json");
    let write = std::env::var("QTOOL_CALIB_WRITE_REFERENCE").is_ok_and(|v| v == "1");
    if let Some(py) = qtool_testkit::reference_python() {
        let out = dir.join("ref.json");
        let st = std::process::Command::new(py)
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ort_reference.py"))
            .arg(dir)
            .arg(&out)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .expect("python runs");
        assert!(
            st.status.success(),
            "ort_reference.py failed:\n{}",
            String::from_utf8_lossy(&st.stderr)
        );
        let text = std::fs::read_to_string(&out).unwrap();
        if write {
            std::fs::create_dir_all(stored.parent().unwrap()).unwrap();
            std::fs::write(&stored, &text).unwrap();
        }
        serde_json::from_str(&text).unwrap()
    } else {
        eprintln!(
            "using the stored ORT reference numbers {}",
            stored.display()
        );
        serde_json::from_str(&std::fs::read_to_string(&stored).expect("stored reference")).unwrap()
    }
}

fn per_tensor(s: &CalibStats, set: &RangeSettings) -> (f32, f32) {
    match &compute_ranges(s, set).unwrap().ranges["x"] {
        TensorRange::PerTensor { min, max } => (*min, *max),
        other => panic!("{other:?}"),
    }
}

fn f(v: &Value) -> f32 {
    v.as_f64().unwrap() as f32
}

#[test]
fn ort_parity_on_fixed_distributions() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    for (name, vals) in &cases {
        let mut shape = vec![BATCHES];
        shape.extend_from_slice(&SHAPE);
        let t = Tensor::from_vec(&shape, vals.clone()).unwrap();
        let mut fh = std::fs::File::create(dir.path().join(format!("{name}.npy"))).unwrap();
        qtool_data::npy::write_npy(&t, &mut fh).unwrap();
    }
    let refs = reference(dir.path());
    let mut problems = Vec::new();
    for (name, vals) in &cases {
        let s = stats_of(vals);
        let r = &refs[*name];
        // MinMax: identical.
        for (key, sym, ma) in [
            ("minmax", false, false),
            ("minmax_sym", true, false),
            ("minmax_ma", false, true),
        ] {
            let got = per_tensor(
                &s,
                &RangeSettings {
                    method: Method::MinMax,
                    symmetric: Some(sym),
                    moving_average: ma,
                    ..Default::default()
                },
            );
            let want = (f(&r[key][0]), f(&r[key][1]));
            let ok = if ma {
                // ORT averages in float32 (numpy pairwise sums); qtool's mean is exact, then rounded.
                (got.0 - want.0).abs() <= 1e-6 * want.0.abs().max(1.0)
                    && (got.1 - want.1).abs() <= 1e-6 * want.1.abs().max(1.0)
            } else {
                got == want
            };
            eprintln!("{name:7} {key:22} qtool {got:?} ort {want:?}");
            if !ok {
                problems.push(format!("{name} {key}: qtool {got:?}, ORT {want:?}"));
            }
        }
        let pc = compute_ranges(
            &s,
            &RangeSettings {
                per_channel: true,
                ..Default::default()
            },
        )
        .unwrap();
        let TensorRange::PerChannel { min, max, axis } = &pc.ranges["x"] else {
            panic!()
        };
        assert_eq!(*axis, 1);
        let wmin: Vec<f32> = r["minmax_pc"]["min"]
            .as_array()
            .unwrap()
            .iter()
            .map(f)
            .collect();
        let wmax: Vec<f32> = r["minmax_pc"]["max"]
            .as_array()
            .unwrap()
            .iter()
            .map(f)
            .collect();
        if (min, max) != (&wmin, &wmax) {
            problems.push(format!(
                "{name} minmax per channel: qtool {min:?} {max:?}, ORT {wmin:?} {wmax:?}"
            ));
        }
        // Histogram methods: within one ORT bin.
        let mut hist_case = |key: String, set: RangeSettings| {
            let got = per_tensor(&s, &set);
            let (lo, hi, w) = (f(&r[&key][0]), f(&r[&key][1]), f(&r[&key][2]));
            let native = per_tensor(
                &s,
                &RangeSettings {
                    mode: HistMode::Qtool,
                    ..set
                },
            );
            eprintln!(
                "{name:7} {key:22} qtool-ort ({:>10.5}, {:>10.5})  ORT ({lo:>10.5}, {hi:>10.5})  bin {w:.5}  qtool-native ({:>10.5}, {:>10.5})",
                got.0, got.1, native.0, native.1
            );
            if (got.0 - lo).abs() > w * 1.0001 || (got.1 - hi).abs() > w * 1.0001 {
                problems.push(format!(
                    "{name} {key}: qtool {got:?}, ORT ({lo}, {hi}), bin width {w}"
                ));
            }
        };
        for (ps, p) in [("99.999", 99.999), ("99.9", 99.9), ("99.0", 99.0)] {
            for sym in [true, false] {
                let key = format!("percentile_{}_{ps}", if sym { "sym" } else { "asym" });
                hist_case(
                    key,
                    RangeSettings {
                        method: Method::Percentile,
                        mode: HistMode::Ort,
                        percentile: p,
                        symmetric: Some(sym),
                        num_bins: 2048,
                        ..Default::default()
                    },
                );
            }
        }
        for nb in [128, 512, 2048] {
            hist_case(
                format!("entropy_{nb}"),
                RangeSettings {
                    method: Method::Entropy,
                    mode: HistMode::Ort,
                    num_bins: nb,
                    num_quantized_bins: 128,
                    ..Default::default()
                },
            );
        }
    }
    assert!(
        problems.is_empty(),
        "differences from ORT:\n{}",
        problems.join("\n")
    );
}
