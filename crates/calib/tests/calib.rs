//! Calibration: exact merges, range methods, per-channel, NaN handling, data sources, image
//! preprocessing and the driver.

use qtool_calib::source::FileLayout;
use qtool_calib::*;
use qtool_exec::{ExecOptions, Executor};
use qtool_ir::{Dim, Graph, Model, Node, OpsetId, TensorType, Type, TypeKind, ValueInfo, ops};
use qtool_tensor::quant::{QScheme, compute_scale_zp, dequantize, quantize_to_range};
use qtool_tensor::{DType, Tensor};
use qtool_testkit::Rng;
use std::path::Path;

fn gauss(r: &mut Rng) -> f32 {
    let u1 = (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let u2 = (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    ((-2.0 * (1.0 - u1).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

fn tensor(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::from_vec(shape, v).unwrap()
}

fn cfg(axis: Option<i64>) -> StatsConfig {
    StatsConfig {
        histogram: true,
        bins: 512,
        channel_axis: axis,
        channel_bins: 128,
        ort_bins: None,
    }
}

/// Batches of a few tensors with different ranges (growing over time, so histograms re-bin).
fn batches(n: usize) -> Vec<Vec<(String, Tensor)>> {
    let mut r = Rng::new(7);
    (0..n)
        .map(|b| {
            let grow = 1.0 + b as f32 * 0.7;
            let a: Vec<f32> = (0..2 * 3 * 5).map(|_| gauss(&mut r) * grow).collect();
            let mut c: Vec<f32> = (0..40).map(|_| r.uniform(0.0, 3.0) * grow).collect();
            if b == 3 {
                c[5] = f32::NAN;
                c[6] = f32::INFINITY;
            }
            vec![
                ("a".to_string(), tensor(&[2, 3, 5], a)),
                ("c".to_string(), tensor(&[1, 40], c)),
            ]
        })
        .collect()
}

fn observe_all(cfg: &StatsConfig, bs: &[Vec<(String, Tensor)>]) -> CalibStats {
    let mut s = CalibStats::new(cfg.clone());
    for b in bs {
        for (n, t) in b {
            s.observe(n, t).unwrap();
        }
        s.samples += 1;
    }
    s
}

#[test]
fn two_shards_merged_equal_one_run_byte_for_byte() {
    for axis in [None, Some(1), Some(-1)] {
        let c = cfg(axis);
        let bs = batches(9);
        let one = observe_all(&c, &bs);
        let even: Vec<_> = bs.iter().step_by(2).cloned().collect();
        let odd: Vec<_> = bs.iter().skip(1).step_by(2).cloned().collect();
        let (e, o) = (observe_all(&c, &even), observe_all(&c, &odd));
        let m = merge(&e, &o).unwrap();
        assert_eq!(m.to_bytes(), one.to_bytes(), "axis {axis:?}");
        assert_eq!(
            merge(&o, &e).unwrap().to_bytes(),
            one.to_bytes(),
            "commutative"
        );
        // Three shards, both groupings.
        let parts: Vec<CalibStats> = (0..3)
            .map(|k| {
                observe_all(
                    &c,
                    &bs.iter().skip(k).step_by(3).cloned().collect::<Vec<_>>(),
                )
            })
            .collect();
        let l = merge(&merge(&parts[0], &parts[1]).unwrap(), &parts[2]).unwrap();
        let r = merge(&parts[0], &merge(&parts[1], &parts[2]).unwrap()).unwrap();
        assert_eq!(l.to_bytes(), one.to_bytes());
        assert_eq!(r.to_bytes(), one.to_bytes());
        // The file round-trips exactly.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stats.json");
        one.save(&p).unwrap();
        let back = CalibStats::load(&p).unwrap();
        assert_eq!(back, one);
        assert_eq!(back.to_bytes(), one.to_bytes());
        // Ranges from the merged statistics equal those of the single run, for every method.
        for method in [
            Method::MinMax,
            Method::Percentile,
            Method::Entropy,
            Method::Mse,
        ] {
            for mode in [HistMode::Qtool, HistMode::Ort] {
                let set = RangeSettings {
                    method,
                    mode,
                    per_channel: axis.is_some(),
                    num_bins: 256,
                    num_quantized_bins: 16,
                    ..Default::default()
                };
                assert_eq!(
                    compute_ranges(&m, &set).unwrap(),
                    compute_ranges(&one, &set).unwrap()
                );
            }
        }
    }
}

#[test]
fn merge_refuses_different_settings_and_layouts() {
    let bs = batches(2);
    let a = observe_all(&cfg(None), &bs);
    let b = observe_all(
        &StatsConfig {
            bins: 1024,
            ..cfg(None)
        },
        &bs,
    );
    assert!(
        merge(&a, &b)
            .unwrap_err()
            .to_string()
            .contains("different settings")
    );
    let e = CalibStats::from_bytes(b"{\"format\":\"other\"}", "x.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("x.json") && e.contains("not a qtool calibration statistics file"),
        "{e}"
    );
    let mut bad = a.to_bytes();
    let s = String::from_utf8(bad.clone())
        .unwrap()
        .replace("\"version\":1", "\"version\":99");
    bad = s.into_bytes();
    assert!(
        CalibStats::from_bytes(&bad, "y.json")
            .unwrap_err()
            .to_string()
            .contains("version 99")
    );
}

#[test]
fn nan_and_inf_are_counted_and_excluded() {
    let mut s = CalibStats::new(cfg(Some(0)));
    let t = tensor(
        &[2, 3],
        vec![1.0, f32::NAN, -2.0, f32::INFINITY, f32::NEG_INFINITY, 0.5],
    );
    s.observe("t", &t).unwrap();
    let ts = &s.tensors["t"];
    assert_eq!((ts.nan, ts.pos_inf, ts.neg_inf, ts.all.count), (1, 1, 1, 3));
    assert_eq!(ts.all.range(), Some((-2.0, 1.0)));
    assert_eq!(ts.all.hist.as_ref().unwrap().total(), 3);
    let pc = ts.per_channel.as_ref().unwrap();
    assert_eq!(pc.channels[0].range(), Some((-2.0, 1.0)));
    assert_eq!(pc.channels[1].range(), Some((0.5, 0.5)));
    let r = compute_ranges(&s, &RangeSettings::default()).unwrap();
    assert_eq!(
        r.ranges["t"],
        TensorRange::PerTensor {
            min: -2.0,
            max: 1.0
        }
    );
    assert!(
        r.warnings[0].contains("1 NaN, 1 +Inf, 1 -Inf"),
        "{:?}",
        r.warnings
    );
    assert_eq!(s.non_finite_report(), vec![("t".to_string(), 1, 1, 1)]);
    // All-NaN: no range, a warning, no panic.
    let mut s = CalibStats::new(cfg(None));
    s.observe("n", &tensor(&[2], vec![f32::NAN, f32::NAN]))
        .unwrap();
    for method in [
        Method::MinMax,
        Method::Percentile,
        Method::Entropy,
        Method::Mse,
    ] {
        let r = compute_ranges(
            &s,
            &RangeSettings {
                method,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(r.ranges.is_empty());
        assert!(r.warnings.iter().any(|w| w.contains("no finite values")));
    }
}

#[test]
fn per_channel_ranges_on_any_axis() {
    let mut r = Rng::new(3);
    let mut s = CalibStats::new(cfg(Some(-1)));
    let mut want_min = [f32::INFINITY; 3];
    let mut want_max = [f32::NEG_INFINITY; 3];
    for _ in 0..4 {
        let v: Vec<f32> = (0..2 * 5 * 3)
            .map(|i| gauss(&mut r) * (1 + i % 3) as f32)
            .collect();
        for (i, &x) in v.iter().enumerate() {
            want_min[i % 3] = want_min[i % 3].min(x);
            want_max[i % 3] = want_max[i % 3].max(x);
        }
        s.observe("x", &tensor(&[2, 5, 3], v)).unwrap();
    }
    let got = compute_ranges(
        &s,
        &RangeSettings {
            per_channel: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        got.ranges["x"],
        TensorRange::PerChannel {
            min: want_min.to_vec(),
            max: want_max.to_vec(),
            axis: 2
        }
    );
    // Per-channel histogram methods work too.
    let p = compute_ranges(
        &s,
        &RangeSettings {
            method: Method::Percentile,
            percentile: 100.0,
            per_channel: true,
            ..Default::default()
        },
    )
    .unwrap();
    let TensorRange::PerChannel { min, max, .. } = &p.ranges["x"] else {
        panic!()
    };
    for c in 0..3 {
        assert!(min[c] >= want_min[c] && max[c] <= want_max[c]);
        let a = want_min[c].abs().max(want_max[c]);
        assert_eq!(max[c].max(-min[c]), a, "percentile 100 keeps everything");
    }
    // JSON form: arrays per channel.
    let j: serde_json::Value = serde_json::from_str(&got.to_json()).unwrap();
    assert_eq!(j["x"]["min"].as_array().unwrap().len(), 3);
    assert_eq!(j["x"]["axis"], 2);
    // A channel count that changes is an error naming the tensor.
    let e = s
        .observe("x", &tensor(&[1, 4], vec![0.0; 4]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("'x'") && e.contains("channels"), "{e}");
}

fn quant_mse(vals: &[f32], lo: f32, hi: f32, scheme: QScheme) -> f64 {
    let sz = compute_scale_zp(lo, hi, scheme);
    let r = scheme.range();
    vals.iter()
        .map(|&x| {
            let q = quantize_to_range(x, sz.scale, sz.zero_point, r.qmin, r.qmax);
            let d = dequantize(q, sz.scale, sz.zero_point) as f64 - x as f64;
            d * d
        })
        .sum::<f64>()
        / vals.len() as f64
}

#[test]
fn mse_beats_minmax_on_heavy_tails() {
    // Laplace samples (inverse CDF): the extremes of 100k samples sit far out in the tail.
    let mut r = Rng::new(11);
    let vals: Vec<f32> = (0..100_000)
        .map(|_| {
            let u = (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            (-u.signum() * (1.0 - 2.0 * u.abs()).ln()) as f32
        })
        .collect();
    let mut s = CalibStats::new(StatsConfig::default());
    for c in vals.chunks(1000) {
        s.observe("x", &tensor(&[c.len()], c.to_vec())).unwrap();
    }
    let range = |set: RangeSettings| match compute_ranges(&s, &set).unwrap().ranges["x"] {
        TensorRange::PerTensor { min, max } => (min, max),
        _ => panic!(),
    };
    let mm = range(RangeSettings::default());
    let mse = range(RangeSettings {
        method: Method::Mse,
        ..Default::default()
    });
    let (e_mm, e_mse) = (
        quant_mse(&vals, mm.0, mm.1, QScheme::U8_ASYM),
        quant_mse(&vals, mse.0, mse.1, QScheme::U8_ASYM),
    );
    eprintln!("uint8 asymmetric: minmax {mm:?} error {e_mm:.4e}; mse {mse:?} error {e_mse:.4e}");
    assert!(mse.0 > mm.0 && mse.1 < mm.1, "MSE clips both tails");
    assert!(
        e_mse < 0.95 * e_mm,
        "MSE range error {e_mse} vs min/max {e_mm}"
    );
    // Symmetric int8: the search for (-t, t) against the symmetric min/max range.
    let mm_sym = range(RangeSettings {
        symmetric: Some(true),
        ..Default::default()
    });
    let mse_sym = range(RangeSettings {
        method: Method::Mse,
        symmetric: Some(true),
        qmin: -127,
        qmax: 127,
        ..Default::default()
    });
    let (e_mm, e_sym) = (
        quant_mse(&vals, mm_sym.0, mm_sym.1, QScheme::I8_SYM),
        quant_mse(&vals, mse_sym.0, mse_sym.1, QScheme::I8_SYM),
    );
    eprintln!(
        "int8 symmetric: minmax {mm_sym:?} error {e_mm:.4e}; mse {mse_sym:?} error {e_sym:.4e}"
    );
    assert!(
        e_sym < 0.95 * e_mm,
        "symmetric MSE range error {e_sym} vs min/max {e_mm}"
    );
    // And the other histogram methods give ranges inside min/max.
    for method in [Method::Percentile, Method::Entropy] {
        for mode in [HistMode::Qtool, HistMode::Ort] {
            let (lo, hi) = range(RangeSettings {
                method,
                mode,
                ..Default::default()
            });
            assert!(
                lo >= mm.0 && hi <= mm.1 && lo < 0.0 && hi > 0.0,
                "{method:?} {mode:?}: {lo} {hi}"
            );
        }
    }
}

#[test]
fn qtool_percentile_reaches_the_percentile() {
    // 1000 values 1..=1000 (and their negatives): the 99th percentile of |x| is about 990.
    let v: Vec<f32> = (1..=1000).flat_map(|i| [i as f32, -(i as f32)]).collect();
    let mut s = CalibStats::new(StatsConfig {
        bins: 4096,
        ..StatsConfig::default()
    });
    s.observe("x", &tensor(&[v.len()], v)).unwrap();
    let r = compute_ranges(
        &s,
        &RangeSettings {
            method: Method::Percentile,
            percentile: 99.0,
            ..Default::default()
        },
    )
    .unwrap();
    let TensorRange::PerTensor { min, max } = r.ranges["x"] else {
        panic!()
    };
    assert_eq!(min, -max);
    assert!((990.0..=991.0).contains(&max), "{max}");
    let r = compute_ranges(
        &s,
        &RangeSettings {
            method: Method::Percentile,
            percentile: 98.0,
            symmetric: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    let TensorRange::PerTensor { min, max } = r.ranges["x"] else {
        panic!()
    };
    // 1% of 2000 values on each side: below -981 and above 980 (bin width 0.5).
    assert!(
        (-981.5..=-980.5).contains(&min) && (980.0..=981.0).contains(&max),
        "{min} {max}"
    );
    assert!(
        compute_ranges(
            &s,
            &RangeSettings {
                percentile: 101.0,
                ..Default::default()
            }
        )
        .is_err()
    );
    // Without histograms, histogram methods say what is missing.
    let mut s = CalibStats::new(StatsConfig {
        histogram: false,
        ..StatsConfig::default()
    });
    s.observe("x", &tensor(&[2], vec![1.0, 2.0])).unwrap();
    let e = compute_ranges(
        &s,
        &RangeSettings {
            method: Method::Entropy,
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("'x'") && e.contains("histogram"), "{e}");
}

#[test]
fn moving_average_is_the_mean_of_batch_ranges() {
    let mut s = CalibStats::new(cfg(None));
    s.observe("x", &tensor(&[2], vec![-1.0, 1.0])).unwrap();
    s.observe("x", &tensor(&[2], vec![-3.0, 5.0])).unwrap();
    let r = compute_ranges(
        &s,
        &RangeSettings {
            moving_average: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        r.ranges["x"],
        TensorRange::PerTensor {
            min: -2.0,
            max: 3.0
        }
    );
    let r = compute_ranges(
        &s,
        &RangeSettings {
            symmetric: Some(true),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        r.ranges["x"],
        TensorRange::PerTensor {
            min: -5.0,
            max: 5.0
        }
    );
    assert_eq!(
        r.to_json(),
        "{\n  \"x\": {\n    \"min\": -5.0,\n    \"max\": 5.0\n  }\n}"
    );
}

// ------------------------------------------------------------------------------ data sources

fn write_npy(path: &Path, t: &Tensor) {
    let mut f = std::fs::File::create(path).unwrap();
    qtool_data::npy::write_npy(t, &mut f).unwrap();
}

#[test]
fn npy_npz_and_directory_sources() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data: Vec<f32> = (0..5 * 2).map(|i| i as f32).collect();
    write_npy(&d.join("all.npy"), &tensor(&[5, 2], data.clone()));
    let mut s = NpySource::open(&d.join("all.npy"), "x", 2).unwrap();
    assert_eq!(s.len(), Some(3));
    let last = s.get(2).unwrap().unwrap();
    assert_eq!(last.inputs[0].1, tensor(&[1, 2], vec![8.0, 9.0]));
    assert!(last.origin.contains("all.npy rows 4..5"));
    assert!(s.get(3).unwrap().is_none());

    // A directory of batches, sorted by name.
    let bd = d.join("batches");
    std::fs::create_dir(&bd).unwrap();
    write_npy(&bd.join("b.npy"), &tensor(&[1, 2], vec![10.0, 11.0]));
    write_npy(
        &bd.join("a.npy"),
        &tensor(&[2, 2], vec![0.0, 1.0, 2.0, 3.0]),
    );
    std::fs::write(bd.join("notes.txt"), "ignored").unwrap();
    let mut s = NpyDirSource::open(&bd, "x", FileLayout::Batch).unwrap();
    assert_eq!(s.len(), Some(3));
    assert_eq!(
        s.get(1).unwrap().unwrap().inputs[0].1,
        tensor(&[1, 2], vec![2.0, 3.0])
    );
    assert_eq!(
        s.get(2).unwrap().unwrap().inputs[0].1,
        tensor(&[1, 2], vec![10.0, 11.0])
    );
    let mut s = NpyDirSource::open(&bd, "x", FileLayout::Sample).unwrap();
    assert_eq!(s.len(), Some(2));
    assert_eq!(s.get(0).unwrap().unwrap().inputs[0].1.shape(), &[2, 2]);

    // npz: keys are inputs.
    let arrays = vec![
        ("x".to_string(), tensor(&[3, 2], vec![0.0; 6])),
        ("m".to_string(), tensor(&[3], vec![1.0, 2.0, 3.0])),
    ];
    let f = std::fs::File::create(d.join("s.npz")).unwrap();
    qtool_data::npz::write_npz(&arrays, f).unwrap();
    let mut s = NpzSource::open(&d.join("s.npz"), 1).unwrap();
    assert_eq!(s.len(), Some(3));
    let smp = s.get(1).unwrap().unwrap();
    assert_eq!(smp.inputs[1], ("m".to_string(), tensor(&[1], vec![2.0])));
    let bad = vec![
        ("x".to_string(), tensor(&[3, 2], vec![0.0; 6])),
        ("m".to_string(), tensor(&[2], vec![1.0, 2.0])),
    ];
    let f = std::fs::File::create(d.join("bad.npz")).unwrap();
    qtool_data::npz::write_npz(&bad, f).unwrap();
    let e = NpzSource::open(&d.join("bad.npz"), 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.npz") && e.contains("different numbers of samples"),
        "{e}"
    );

    // Errors name the file or folder.
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = NpyDirSource::open(&empty, "x", FileLayout::Sample)
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty") && e.contains("no .npy files"), "{e}");
    std::fs::write(d.join("junk.npy"), b"not numpy").unwrap();
    let e = NpySource::open(&d.join("junk.npy"), "x", 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("junk.npy"), "{e}");
}

#[test]
fn onnx_test_data_directories_use_the_injected_decoder() {
    let dir = tempfile::tempdir().unwrap();
    for set in [0, 1, 10, 2] {
        let sd = dir.path().join(format!("test_data_set_{set}"));
        std::fs::create_dir(&sd).unwrap();
        std::fs::write(sd.join("input_0.pb"), [set as u8]).unwrap();
        std::fs::write(sd.join("input_1.pb"), [100 + set as u8]).unwrap();
        std::fs::write(sd.join("output_0.pb"), [0u8]).unwrap();
    }
    // A toy decoder: one byte -> a scalar; byte >= 100 carries its own name.
    let dec: TensorDecoder = Box::new(|b: &[u8]| {
        let name = if b[0] >= 100 {
            Some("named".to_string())
        } else {
            None
        };
        Ok((name, Tensor::from_vec(&[1], vec![b[0] as f32]).unwrap()))
    });
    let mut s = OnnxTestDataSource::open(dir.path(), vec!["a".into(), "b".into()], dec).unwrap();
    assert_eq!(s.len(), Some(4));
    let order: Vec<f32> = (0..4)
        .map(|i| {
            s.get(i).unwrap().unwrap().inputs[0]
                .1
                .to_vec::<f32>()
                .unwrap()[0]
        })
        .collect();
    assert_eq!(
        order,
        vec![0.0, 1.0, 2.0, 10.0],
        "numeric order of the sets"
    );
    let smp = s.get(0).unwrap().unwrap();
    assert_eq!(smp.inputs[0].0, "a");
    assert_eq!(smp.inputs[1].0, "named");
    // A single set directory works too; decoder errors name the file.
    let bad: TensorDecoder = Box::new(|_| Err("truncated".into()));
    let mut s =
        OnnxTestDataSource::open(&dir.path().join("test_data_set_1"), vec!["a".into()], bad)
            .unwrap();
    let e = s.get(0).unwrap_err().to_string();
    assert!(e.contains("input_0.pb") && e.contains("truncated"), "{e}");
}

#[test]
fn sample_order_limit_shuffle_shards() {
    let all = SampleOrder::default().indices(10);
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    let sh = SampleOrder {
        shuffle_seed: Some(42),
        ..Default::default()
    };
    let a = sh.indices(10);
    assert_eq!(a, sh.indices(10), "deterministic");
    assert_ne!(a, all);
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, all, "a permutation");
    let lim = SampleOrder {
        limit: Some(7),
        shuffle_seed: Some(42),
        ..Default::default()
    };
    assert_eq!(lim.indices(10), a[..7].to_vec());
    let mut union: Vec<usize> = (0..3)
        .flat_map(|i| {
            SampleOrder {
                shard: Shard { index: i, count: 3 },
                ..lim.clone()
            }
            .indices(10)
        })
        .collect();
    union.sort();
    let mut want = a[..7].to_vec();
    want.sort();
    assert_eq!(union, want, "shards partition the selection");
    assert!(
        SampleOrder {
            shard: Shard { index: 3, count: 3 },
            ..Default::default()
        }
        .validate()
        .is_err()
    );
}

// ------------------------------------------------------------------------------ images

fn png(path: &Path, w: u32, h: u32, rgb: Vec<u8>) {
    image::RgbImage::from_raw(w, h, rgb)
        .unwrap()
        .save(path)
        .unwrap();
}

#[test]
fn image_preprocessing_is_declared_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.png");
    // 2x1 image: red, then (0, 128, 255).
    png(&p, 2, 1, vec![255, 0, 0, 0, 128, 255]);
    let pre = Preprocess {
        scale: 1.0,
        mean: vec![0.0],
        std: vec![1.0],
        ..Default::default()
    };
    let t = pre.apply_file(&p).unwrap();
    assert_eq!(t.shape(), &[1, 3, 1, 2]);
    assert_eq!(
        t.to_vec::<f32>().unwrap(),
        vec![255.0, 0.0, 0.0, 128.0, 0.0, 255.0]
    );
    // BGR, NHWC, mean/std per output channel, no batch axis.
    let pre = Preprocess {
        scale: 1.0 / 255.0,
        mean: vec![0.5, 0.0, 0.0],
        std: vec![0.5, 1.0, 2.0],
        channel_order: ChannelOrder::Bgr,
        layout: Layout::Nhwc,
        batch_axis: false,
        ..Default::default()
    };
    let t = pre.apply_file(&p).unwrap();
    assert_eq!(t.shape(), &[1, 2, 3]);
    let v = t.to_vec::<f32>().unwrap();
    let want = [
        (0.0 - 0.5) / 0.5,
        0.0,
        0.5,
        (1.0 - 0.5) / 0.5,
        128.0 / 255.0,
        0.0,
    ];
    for (g, w) in v.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{v:?}");
    }
    // Bilinear resize with half-pixel centres: 2x1 -> 4x1 gives 0.25/0.75 blends inside.
    let pre = Preprocess {
        scale: 1.0,
        grayscale: true,
        resize: Resize::Exact {
            height: 1,
            width: 4,
        },
        ..Default::default()
    };
    let q = dir.path().join("g.png");
    image::GrayImage::from_raw(2, 1, vec![0, 200])
        .unwrap()
        .save(&q)
        .unwrap();
    let t = pre.apply_file(&q).unwrap();
    assert_eq!(t.shape(), &[1, 1, 1, 4]);
    assert_eq!(t.to_vec::<f32>().unwrap(), vec![0.0, 50.0, 150.0, 200.0]);
    // Shorter side then centre crop; same bytes, same tensor bits.
    let mut r = Rng::new(5);
    let rgb: Vec<u8> = (0..6 * 4 * 3).map(|_| r.int(0, 255) as u8).collect();
    let big = dir.path().join("big.png");
    png(&big, 6, 4, rgb);
    let pre = Preprocess {
        resize: Resize::ShorterSide { size: 8 },
        center_crop: Some([6, 6]),
        ..Default::default()
    };
    let t1 = pre.apply_file(&big).unwrap();
    assert_eq!(t1.shape(), &[1, 3, 6, 6]);
    let t2 = pre
        .apply_bytes(&std::fs::read(&big).unwrap(), "same")
        .unwrap();
    assert_eq!(t1.to_le_bytes(), t2.to_le_bytes());
    // Errors name the file; crop larger than the image; bad settings.
    let bad = dir.path().join("broken.png");
    std::fs::write(&bad, b"\x89PNG not really").unwrap();
    let e = pre.apply_file(&bad).unwrap_err().to_string();
    assert!(
        e.contains("broken.png") && e.contains("cannot decode"),
        "{e}"
    );
    let e = Preprocess {
        center_crop: Some([10, 10]),
        ..Default::default()
    }
    .apply_file(&p)
    .unwrap_err()
    .to_string();
    assert!(e.contains("a.png") && e.contains("larger"), "{e}");
    assert!(
        Preprocess {
            mean: vec![0.0, 1.0],
            ..Default::default()
        }
        .validate()
        .is_err()
    );
}

#[test]
fn image_folder_source() {
    let dir = tempfile::tempdir().unwrap();
    let e = ImageFolderSource::open(dir.path(), "img", Preprocess::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&dir.path().display().to_string()) && e.contains("no images"),
        "{e}"
    );
    png(&dir.path().join("b.PNG"), 1, 1, vec![1, 2, 3]);
    png(&dir.path().join("a.png"), 1, 1, vec![4, 5, 6]);
    image::RgbImage::from_raw(1, 1, vec![7, 8, 9])
        .unwrap()
        .save(dir.path().join("c.jpg"))
        .unwrap();
    std::fs::write(dir.path().join("readme.txt"), "x").unwrap();
    let pre = Preprocess {
        scale: 1.0,
        ..Default::default()
    };
    let mut s = ImageFolderSource::open(dir.path(), "img", pre).unwrap();
    assert_eq!(s.len(), Some(3));
    let first = s.get(0).unwrap().unwrap();
    assert!(first.origin.ends_with("a.png"));
    assert_eq!(
        first.inputs[0].1.to_vec::<f32>().unwrap(),
        vec![4.0, 5.0, 6.0]
    );
    assert_eq!(
        s.get(2).unwrap().unwrap().inputs[0].1.shape(),
        &[1, 3, 1, 1],
        "jpeg decodes"
    );
}

// ------------------------------------------------------------------------------ driver

fn model() -> Model {
    // x[1, 2, 4] -> Relu -> r ; r * x -> y ; Shape(x) -> s (int64, never calibrated)
    let mut g = Graph::new("g");
    let x = g.add_value("x").unwrap();
    let ty = Type {
        kind: TypeKind::Tensor(TensorType {
            elem: Some(DType::F32),
            shape: Some(vec![Dim::known(1), Dim::known(2), Dim::known(4)]),
        }),
        denotation: None,
    };
    g.inputs.push((x, ValueInfo::of_type(ty)));
    let [r, y, s] = ["r", "y", "s"].map(|n| g.add_value(n).unwrap());
    g.add_node(Node::new(ops::Relu {}, "relu"), &[Some(x)], &[Some(r)])
        .unwrap();
    g.add_node(
        Node::new(ops::Mul {}, "mul"),
        &[Some(r), Some(x)],
        &[Some(y)],
    )
    .unwrap();
    g.add_node(
        Node::new(ops::Shape::default(), "shape"),
        &[Some(x)],
        &[Some(s)],
    )
    .unwrap();
    g.outputs.push((y, ValueInfo::default()));
    g.outputs.push((s, ValueInfo::default()));
    Model {
        graph: g,
        opset_import: vec![OpsetId {
            domain: None,
            version: Some(17),
        }],
        ..Default::default()
    }
}

fn samples(n: usize) -> Vec<Sample> {
    let mut r = Rng::new(99);
    (0..n)
        .map(|i| {
            let mut v: Vec<f32> = (0..8).map(|_| gauss(&mut r) * (1.0 + i as f32)).collect();
            if i == 4 {
                v[0] = f32::NAN;
            }
            Sample {
                inputs: vec![("x".into(), tensor(&[1, 2, 4], v))],
                origin: format!("sample{i}.npy"),
            }
        })
        .collect()
}

#[test]
fn driver_collects_float_activations_and_shards_merge_exactly() {
    let exec = Executor::new(&model(), ExecOptions { threads: Some(1) }).unwrap();
    let opts = CalibOptions {
        stats: cfg(Some(1)),
        ..Default::default()
    };
    let mut calls = Vec::new();
    let full = calibrate(&exec, &mut samples(7), &opts, &mut |d, t| {
        calls.push((d, t))
    })
    .unwrap();
    assert_eq!(calls.last(), Some(&(7, Some(7))));
    assert_eq!(full.samples, 7);
    assert_eq!(
        full.tensors.keys().collect::<Vec<_>>(),
        vec!["r", "x", "y"],
        "float values only"
    );
    assert_eq!(full.tensors["x"].nan, 1, "NaN inputs are counted");
    assert!(
        full.tensors["y"].nan >= 1,
        "and propagate to activations, counted there too"
    );
    assert_eq!(
        full.tensors["x"].shape,
        Some(vec![Some(1), Some(2), Some(4)])
    );
    let shards: Vec<CalibStats> = (0..3)
        .map(|i| {
            let o = CalibOptions {
                order: SampleOrder {
                    shard: Shard { index: i, count: 3 },
                    ..Default::default()
                },
                ..opts.clone()
            };
            calibrate(&exec, &mut samples(7), &o, &mut |_, _| {}).unwrap()
        })
        .collect();
    let merged = merge(&merge(&shards[0], &shards[2]).unwrap(), &shards[1]).unwrap();
    assert_eq!(merged.to_bytes(), full.to_bytes());

    // Selection by name, exclusion, unknown names.
    let o = CalibOptions {
        tensors: TensorSelection::Names(vec!["r".into()]),
        ..opts.clone()
    };
    let s = calibrate(&exec, &mut samples(2), &o, &mut |_, _| {}).unwrap();
    assert_eq!(s.tensors.keys().collect::<Vec<_>>(), vec!["r"]);
    let o = CalibOptions {
        exclude: vec!["x".into()],
        ..opts.clone()
    };
    assert!(
        !calibrate(&exec, &mut samples(2), &o, &mut |_, _| {})
            .unwrap()
            .tensors
            .contains_key("x")
    );
    let o = CalibOptions {
        tensors: TensorSelection::Names(vec!["nope".into()]),
        ..opts.clone()
    };
    let e = calibrate(&exec, &mut samples(2), &o, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn driver_errors_name_the_sample() {
    let exec = Executor::new(&model(), ExecOptions { threads: Some(1) }).unwrap();
    let opts = CalibOptions::default();
    let mut bad = vec![Sample {
        inputs: vec![("x".into(), tensor(&[1, 3, 4], vec![0.0; 12]))],
        origin: "data/bad_shape.npy".into(),
    }];
    let e = calibrate(&exec, &mut bad, &opts, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("data/bad_shape.npy") && e.contains("'x'"), "{e}");
    let mut bad = vec![Sample {
        inputs: vec![(
            "x".into(),
            Tensor::from_vec(&[1, 2, 4], vec![0i64; 8]).unwrap(),
        )],
        origin: "data/ints.npy".into(),
    }];
    let e = calibrate(&exec, &mut bad, &opts, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("data/ints.npy"), "{e}");
    let e = calibrate(&exec, &mut Vec::<Sample>::new(), &opts, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("no samples"), "{e}");
}

#[test]
fn driver_collects_onnx_runtime_histograms_in_a_second_pass() {
    let exec = Executor::new(&model(), ExecOptions { threads: Some(1) }).unwrap();
    let opts = CalibOptions {
        stats: StatsConfig {
            ort_bins: Some(64),
            ..cfg(None)
        },
        ..Default::default()
    };
    let mut calls = Vec::new();
    let full = calibrate(&exec, &mut samples(7), &opts, &mut |d, t| {
        calls.push((d, t))
    })
    .unwrap();
    assert_eq!(calls.len(), 14, "progress counts both passes");
    for (name, t) in &full.tensors {
        let v = t.ort_value.as_ref().expect("value histogram");
        let a = t.ort_abs.as_ref().expect("abs histogram");
        assert_eq!(v.counts.len(), 64);
        // Every finite value of the first pass lands in both histograms (the executor is
        // deterministic, so the second pass sees the same values and the same extremes).
        assert_eq!(v.counts.iter().sum::<u64>(), t.all.count, "{name}");
        assert_eq!(a.counts.iter().sum::<u64>(), t.all.count, "{name}");
        let (min, max) = t.all.range().unwrap();
        let tt = (min as f32).abs().max((max as f32).abs());
        assert_eq!((v.first, v.last), (-tt, tt), "{name}");
        assert_eq!(a.last, tt, "{name}");
    }
    // A shuffled order fills the same histograms.
    let shuffled = calibrate(
        &exec,
        &mut samples(7),
        &CalibOptions {
            order: SampleOrder {
                shuffle_seed: Some(5),
                ..Default::default()
            },
            ..opts.clone()
        },
        &mut |_, _| {},
    )
    .unwrap();
    for (name, t) in &full.tensors {
        assert_eq!(t.ort_value, shuffled.tensors[name].ort_value, "{name}");
        assert_eq!(t.ort_abs, shuffled.tensors[name].ort_abs, "{name}");
    }
    // The "ort" mode computes on exactly these histograms.
    let y = &full.tensors["y"];
    let v = y.ort_value.as_ref().unwrap();
    let (lo, hi) = ranges::ort_entropy_f32(&v.counts, &v.edges(), 16);
    let (min, max) = y.all.range().unwrap();
    let want = (
        if (lo as f64) < (min as f32 as f64) {
            min
        } else {
            lo as f64
        } as f32,
        if (hi as f64) > (max as f32 as f64) {
            max
        } else {
            hi as f64
        } as f32,
    );
    let got = compute_ranges(
        &full,
        &RangeSettings {
            method: Method::Entropy,
            mode: HistMode::Ort,
            num_bins: 64,
            num_quantized_bins: 16,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        got.ranges["y"],
        TensorRange::PerTensor {
            min: want.0,
            max: want.1
        }
    );
    // Statistics with the same layouts merge (counts add); shards, whose extremes differ, are
    // refused with an explanation rather than merged inexactly.
    let twice = merge(&full, &full).unwrap();
    assert_eq!(
        twice.tensors["y"].ort_value.as_ref().unwrap().counts,
        v.counts.iter().map(|c| 2 * c).collect::<Vec<_>>()
    );
    let shard = |i| {
        calibrate(
            &exec,
            &mut samples(7),
            &CalibOptions {
                order: SampleOrder {
                    shard: Shard { index: i, count: 2 },
                    ..Default::default()
                },
                ..opts.clone()
            },
            &mut |_, _| {},
        )
        .unwrap()
    };
    let e = merge(&shard(0), &shard(1)).unwrap_err().to_string();
    assert!(e.contains("different layouts"), "{e}");
    // Such statistics still give every other range, and the file round-trips.
    let back = CalibStats::from_bytes(&full.to_bytes(), "mem").unwrap();
    assert_eq!(back, full);
}
