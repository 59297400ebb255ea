//! ONNX Runtime's histograms collected by qtool (`StatsConfig::ort_bins`, `qtool_calib::ort_hist`)
//! against numpy itself, bin for bin and edge for edge, on adversarial float32 data: values on
//! every bin edge and one ulp either side of it, ±threshold, zeros of both signs, denormals (and a
//! denormal range numpy refuses), a single value, all values equal, NaN mixed in, asymmetric
//! ranges, and large random sets split into several observations; and numpy's float32 `np.sum`
//! (pairwise, used by ORT's entropy search) against `np_sum_f32`. The reference is
//! `tests/np_histogram.py` run with the reference venv (numpy 2.4.6).

use qtool_calib::ort_hist::{OrtHistKind, np_linspace_f32};
use qtool_calib::ranges::np_sum_f32;
use qtool_calib::{CalibStats, StatsConfig};
use qtool_tensor::Tensor;
use qtool_testkit::Rng;
use serde_json::Value;
use std::path::PathBuf;

fn next_up(x: f32) -> f32 {
    if x == 0.0 {
        f32::from_bits(1)
    } else if x > 0.0 {
        f32::from_bits(x.to_bits() + 1)
    } else {
        f32::from_bits(x.to_bits() - 1)
    }
}

fn next_down(x: f32) -> f32 {
    -next_up(-x)
}

/// Every edge of `n` bins over `[-t, t]` (numpy's layout) and its neighbours one ulp away.
fn on_edges(t: f32, n: usize) -> Vec<f32> {
    let mut v = Vec::new();
    for e in np_linspace_f32(-t, t, n) {
        v.extend([e, next_up(e), next_down(e)]);
    }
    v.retain(|x| x.abs() <= t);
    v
}

/// (name, bins, values)
fn cases() -> Vec<(String, usize, Vec<f32>)> {
    let mut r = Rng::new(77);
    let mut gauss = |n: usize, s: f64| -> Vec<f32> {
        (0..n)
            .map(|_| {
                let u1 = (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                let u2 = (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                (s * (-2.0 * (1.0 - u1).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos())
                    as f32
            })
            .collect()
    };
    let mut c: Vec<(String, usize, Vec<f32>)> = Vec::new();
    for (t, n) in [
        (1.0f32, 2048usize),
        (3.7e-3, 2048),
        (6.02e4, 2048),
        (1.1, 7),
        (0.1, 3),
        (1e-38, 256),
    ] {
        let mut v = on_edges(t, n);
        v.extend([t, -t, 0.0, -0.0]);
        c.push((format!("edges_{t:e}"), n, v));
    }
    // The |x| layout's own edges (over [min|x|, max|x|]) and their neighbours.
    {
        let (lo, hi) = (0.013f32, 5.3f32);
        let mut v = Vec::new();
        for e in np_linspace_f32(lo, hi, 2048) {
            for x in [e, next_up(e), next_down(e)] {
                if (lo..=hi).contains(&x) {
                    v.extend([x, -x]);
                }
            }
        }
        c.push(("abs_edges".into(), 2048, v));
    }
    c.push(("zeros".into(), 2048, vec![0.0, -0.0, 0.0]));
    c.push(("single".into(), 2048, vec![2.5]));
    c.push(("all_equal".into(), 2048, vec![-1.25; 1000]));
    c.push(("one_bin".into(), 1, vec![-1.0, 0.5, 1.0]));
    c.push((
        "denormals".into(),
        2048,
        vec![
            1e-38,
            -1e-38,
            f32::from_bits(1),
            -f32::from_bits(1),
            f32::from_bits(0x7f_ffff),
            0.0,
            -0.0,
            5e-39,
        ],
    ));
    // A denormal range: 2048 increasing edges do not exist (numpy refuses, ORT fails); 4 do.
    let tiny = vec![f32::from_bits(3), -f32::from_bits(2), f32::from_bits(1)];
    c.push(("tiny_range".into(), 2048, tiny.clone()));
    c.push(("tiny_range_4".into(), 4, tiny));
    let mut nan = gauss(5000, 2.0);
    for i in (0..nan.len()).step_by(97) {
        nan[i] = f32::NAN;
    }
    c.push(("with_nan".into(), 2048, nan));
    let mut asym = gauss(20000, 0.5);
    asym.extend([-3.0, 1.5]);
    c.push(("asymmetric".into(), 2048, asym));
    c.push(("gauss_big".into(), 2048, gauss(300_000, 1.7)));
    c.push(("gauss_256".into(), 256, gauss(50_000, 0.01)));
    c
}

/// qtool's ORT histograms of `vals`, observed in `parts` slices (the driver's two passes).
fn qtool_hists(vals: &[f32], bins: usize, parts: usize) -> CalibStats {
    let mut s = CalibStats::new(StatsConfig {
        ort_bins: Some(bins as u32),
        ..StatsConfig::default()
    });
    let chunk = vals.len().div_ceil(parts).max(1);
    let tensors: Vec<Tensor> = vals
        .chunks(chunk)
        .map(|c| Tensor::from_vec(&[c.len()], c.to_vec()).unwrap())
        .collect();
    for t in &tensors {
        s.observe("x", t).unwrap();
    }
    let ts = s.tensors.get_mut("x").unwrap();
    ts.start_ort_histograms(bins as u32);
    for t in &tensors {
        ts.observe_ort(t);
    }
    s
}

#[test]
fn ort_histograms_equal_numpys() {
    let Some(python) = qtool_testkit::reference_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    for (name, bins, vals) in &cases {
        let t = Tensor::from_vec(&[vals.len()], vals.clone()).unwrap();
        let mut fh = std::fs::File::create(dir.path().join(format!("{name}__{bins}.npy"))).unwrap();
        qtool_data::npy::write_npy(&t, &mut fh).unwrap();
    }
    let out = dir.path().join("out.json");
    let st = std::process::Command::new(&python)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/np_histogram.py"))
        .arg(dir.path())
        .arg(&out)
        .output()
        .expect("python runs");
    assert!(
        st.status.success(),
        "np_histogram.py failed:\n{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let want: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (name, bins, vals) in &cases {
        let w = &want[format!("{name}__{bins}")];
        let finite: Vec<f32> = vals.iter().copied().filter(|x| x.is_finite()).collect();
        let sum = np_sum_f32(&finite).to_bits();
        if sum as u64 != w["sum"].as_u64().unwrap() {
            problems.push(format!(
                "{name}: np.sum {:e}, qtool's np_sum_f32 {:e}",
                f32::from_bits(w["sum"].as_u64().unwrap() as u32),
                f32::from_bits(sum)
            ));
        }
        for parts in [1, 3] {
            let s = qtool_hists(vals, *bins, parts);
            let ts = &s.tensors["x"];
            for (kind, got) in [
                (OrtHistKind::Value, &ts.ort_value),
                (OrtHistKind::Abs, &ts.ort_abs),
            ] {
                let key = match kind {
                    OrtHistKind::Value => "value",
                    OrtHistKind::Abs => "abs",
                };
                let w = &w[key];
                match (got, w.is_null()) {
                    (None, true) => checked += 1,
                    (Some(_), true) => problems.push(format!(
                        "{name} {key}: numpy refuses the layout, qtool made one"
                    )),
                    (None, false) => {
                        problems.push(format!("{name} {key}: numpy made a histogram, qtool none"))
                    }
                    (Some(h), false) => {
                        let counts: Vec<u64> = w["counts"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|v| v.as_u64().unwrap())
                            .collect();
                        let edges: Vec<u32> = w["edges"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|v| v.as_u64().unwrap() as u32)
                            .collect();
                        let ours: Vec<u32> = h.edges().iter().map(|e| e.to_bits()).collect();
                        if ours != edges {
                            let k = ours.iter().zip(&edges).position(|(a, b)| a != b);
                            problems.push(format!(
                                "{name} {key}: edges differ (first at {k:?}; {} and {} edges)",
                                ours.len(),
                                edges.len()
                            ));
                        } else if h.counts != counts {
                            let k = h.counts.iter().zip(&counts).position(|(a, b)| a != b);
                            problems.push(format!(
                                "{name} {key} ({parts} parts): counts differ (first at bin {k:?})"
                            ));
                        } else {
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(checked, cases.len() * 2 * 2);
}
