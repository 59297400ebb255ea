//! Calibration parity with ONNX Runtime on the fetched real models and the sample photos: qtool's
//! statistics (collected through its executor) against ORT's own calibrators
//! (`create_calibrator` + `collect_data` + `compute_data`, `xtask/python/ort_calib_ranges.py`) on
//! the very same input tensors (qtool's image preprocessing makes them; ORT reads them from an .npz).
//!
//! - MinMax: every tensor ORT calibrates must have exactly ORT's range. ORT computes on its own
//!   activations and qtool on its executor's, which agree to ~1e-6 relative but not bit for bit, so
//!   an extreme value can move by a few ulps. A tensor whose range differs is accepted only when
//!   (a) ORT's activations of that tensor (dumped from ORT) reproduce ORT's range and qtool's
//!   reproduce qtool's, so each side's calibration is exact on its own activations, and (b) the
//!   activation that decides the range differs between the two executors by at most
//!   [`ACT_TOL`] x the tensor's largest magnitude. Each such tensor is printed with the evidence.
//! - Percentile and Entropy in "ort" mode: within one of ORT's histogram bins of ORT's thresholds
//!   (plus 4 f32 ulps of the threshold: ORT's bin edges move with the range, see above).
//! - Entropy's search itself: run on ORT's own histogram (written by the script), qtool's search
//!   must give exactly ORT's thresholds for every tensor. Where qtool's threshold (from its own
//!   histogram re-binned onto ORT's layout) is more than a bin from ORT's, it is accepted only as a
//!   near-tie: on ORT's histogram its KL divergence is within [`ENTROPY_TIE`] of ORT's minimum.
//!
//! By default (CI) two models x the 8 photos, Entropy with 256 histogram bins (ORT's Python search
//! costs ~0.1 s a tensor at 2048 bins). `QTOOL_CALIB_PARITY_FULL=1` (used by
//! `cargo xtask interop --calib`) runs every model qtool can run, Entropy with 2048 bins.

use qtool_calib::ranges::{ort_entropy_divergences, ort_entropy_f32};
use qtool_calib::{
    CalibOptions, CalibStats, DataSource, HistMode, ImageFolderSource, Method, Preprocess,
    RangeSettings, Resize, Sample, StatsConfig, TensorRange, calibrate, compute_ranges,
};
use qtool_exec::{ExecOptions, Executor};
use qtool_tensor::Tensor;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Largest accepted difference between qtool's and ORT's activation at the element that decides
/// a MinMax range, relative to the tensor's largest magnitude (the executors agree to ~1e-6).
const ACT_TOL: f64 = 1e-4;

struct Case {
    model: &'static str,
    height: usize,
    width: usize,
    scale: f32,
    mean: Vec<f32>,
    std: Vec<f32>,
}

fn cases(full: bool) -> Vec<Case> {
    let c = |model, height, width, scale, mean: &[f32], std: &[f32]| Case {
        model,
        height,
        width,
        scale,
        mean: mean.to_vec(),
        std: std.to_vec(),
    };
    let paddle = [0.5f32];
    let mut v = vec![
        c(
            "ppocr_mobile_v2_cls",
            48,
            192,
            1.0 / 255.0,
            &paddle,
            &paddle,
        ),
        c("nudenet_320n", 320, 320, 1.0 / 255.0, &[0.0], &[1.0]),
    ];
    if full {
        v.extend([
            c("ppocrv4_rec", 48, 320, 1.0 / 255.0, &paddle, &paddle),
            c(
                "ppocrv4_det",
                320,
                320,
                1.0 / 255.0,
                &[0.485, 0.456, 0.406],
                &[0.229, 0.224, 0.225],
            ),
            // YOLOX-style: raw 0..255 values.
            c("ddddocr_det", 416, 416, 1.0, &[0.0], &[1.0]),
        ]);
    }
    v
}

/// The one graph input of a model that is not an initializer.
fn input_name(model: &qtool_ir::Model) -> String {
    let g = &model.graph;
    let names: Vec<String> = g
        .inputs
        .iter()
        .filter(|(v, _)| g.initializer(*v).is_none())
        .map(|(v, _)| g.value_name(*v).to_string())
        .collect();
    assert_eq!(names.len(), 1, "one image input expected: {names:?}");
    names[0].clone()
}

fn per_tensor(r: &TensorRange) -> (f32, f32) {
    match r {
        TensorRange::PerTensor { min, max } => (*min, *max),
        other => panic!("per-tensor range expected, got {other:?}"),
    }
}

/// A number of the script's JSON; non-finite ones arrive as the strings of [`parse_python_json`].
fn f(v: &Value) -> f32 {
    match v.as_str() {
        Some("inf") => f32::INFINITY,
        Some("-inf") => f32::NEG_INFINITY,
        Some("nan") => f32::NAN,
        _ => v.as_f64().expect("number") as f32,
    }
}

/// Python's `json.dump` writes non-finite floats as the bare words `Infinity`, `-Infinity` and
/// `NaN`, which are not JSON; they become the strings "inf", "-inf" and "nan" ([`f`] reads them).
/// ORT's MinMax range of an empty tensor (a Resize `roi` of 0 elements, say) is (inf, -inf).
fn parse_python_json(text: &str) -> Value {
    let fixed = text
        .replace("-Infinity", "\"-inf\"")
        .replace("Infinity", "\"inf\"")
        .replace("NaN", "\"nan\"");
    serde_json::from_str(&fixed).expect("the script's JSON")
}

/// Each sample's values of the named tensors, from qtool's executor.
fn qtool_activations(
    exec: &Executor,
    samples: &[Sample],
    names: &BTreeSet<String>,
) -> BTreeMap<String, Vec<Vec<f32>>> {
    let mut out: BTreeMap<String, Vec<Vec<f32>>> = BTreeMap::new();
    for s in samples {
        let mut obs = |name: &str, t: &Tensor| {
            if names.contains(name) {
                out.entry(name.to_string())
                    .or_default()
                    .push(t.to_vec::<f32>().expect("f32 activation"));
            }
        };
        exec.run_observed(s.inputs.clone(), &mut obs).unwrap();
    }
    out
}

/// (sample, element, value) of the extreme (min when `lowest`) of per-sample values.
fn extreme(per_sample: &[Vec<f32>], lowest: bool) -> (usize, usize, f32) {
    let mut best: Option<(usize, usize, f32)> = None;
    for (s, vals) in per_sample.iter().enumerate() {
        for (k, &v) in vals.iter().enumerate() {
            if !v.is_finite() {
                continue;
            }
            let better = match best {
                None => true,
                Some((_, _, b)) => {
                    if lowest {
                        v < b
                    } else {
                        v > b
                    }
                }
            };
            if better {
                best = Some((s, k, v));
            }
        }
    }
    best.expect("finite values")
}

struct MinMaxDiff {
    tensor: String,
    qtool: (f32, f32),
    ort: (f32, f32),
}

/// Checks every MinMax difference against both executors' activations; returns the problems and
/// prints the evidence.
fn explain_minmax(
    python: &Path,
    model_path: &Path,
    npz: &Path,
    work: &Path,
    exec: &Executor,
    samples: &[Sample],
    diffs: &[MinMaxDiff],
) -> Vec<String> {
    let mut problems = Vec::new();
    if diffs.is_empty() {
        return problems;
    }
    let names: BTreeSet<String> = diffs.iter().map(|d| d.tensor.clone()).collect();
    let names_file = work.join("names.txt");
    std::fs::write(
        &names_file,
        names.iter().cloned().collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    let dump = work.join("ort_dump.npz");
    let st = qtool_testkit::python_script(python, "ort_calib_ranges.py")
        .arg("dump")
        .arg(model_path)
        .arg(npz)
        .arg(&names_file)
        .arg(&dump)
        .output()
        .expect("python runs");
    assert!(
        st.status.success(),
        "ort_calib_ranges.py dump failed:\n{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let mut ort: BTreeMap<String, Vec<Vec<f32>>> = BTreeMap::new();
    let mut arrays = qtool_data::load_npz(&dump).unwrap();
    arrays.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, t) in arrays {
        let (_, name) = key.split_once("__").expect("key");
        ort.entry(name.to_string())
            .or_default()
            .push(t.to_vec::<f32>().unwrap());
    }
    let ours = qtool_activations(exec, samples, &names);
    for d in diffs {
        let (q, o) = (&ours[&d.tensor], &ort[&d.tensor]);
        let mag = q
            .iter()
            .flatten()
            .chain(o.iter().flatten())
            .filter(|v| v.is_finite())
            .fold(0f64, |m, &v| m.max((v as f64).abs()))
            .max(f64::MIN_POSITIVE);
        for (lowest, qv, ov) in [(true, d.qtool.0, d.ort.0), (false, d.qtool.1, d.ort.1)] {
            if qv == ov {
                continue;
            }
            let (qs, qk, qx) = extreme(q, lowest);
            let (os, ok, ox) = extreme(o, lowest);
            let side = if lowest { "min" } else { "max" };
            // Each tool's range is exact on its own activations.
            if qx != qv || ox != ov {
                problems.push(format!(
                    "{} {side}: ranges not reproduced by the activations (qtool range {qv:e}, its activations {qx:e}; ORT range {ov:e}, its activations {ox:e})",
                    d.tensor
                ));
                continue;
            }
            // The deciding elements: ORT's extreme as qtool computed it, qtool's as ORT did.
            let q_at_o = q[os][ok];
            let o_at_q = o[qs][qk];
            let dev =
                ((q_at_o as f64 - ox as f64).abs()).max((o_at_q as f64 - qx as f64).abs()) / mag;
            eprintln!(
                "  {} {side}: qtool {qv:e} (sample {qs} element {qk}; ORT has {o_at_q:e} there), ORT {ov:e} (sample {os} element {ok}; qtool has {q_at_o:e} there); activation difference {dev:.2e} of max|x| {mag:.3e}",
                d.tensor
            );
            if dev > ACT_TOL {
                problems.push(format!(
                    "{} {side}: qtool {qv:e}, ORT {ov:e}: the activations differ by {dev:.2e} of max|x| (> {ACT_TOL:e})",
                    d.tensor
                ));
            }
        }
    }
    problems
}

/// The summary of one model: (tensors compared, MinMax exact, MinMax differing but explained,
/// worst Percentile / Entropy difference in ORT bins).
struct Summary {
    tensors: usize,
    minmax_exact: usize,
    minmax_explained: usize,
    worst_percentile_bins: f64,
    worst_entropy_bins: f64,
    /// Tensors whose ORT histogram gives ORT's thresholds under qtool's search.
    entropy_search_exact: usize,
    /// Entropy thresholds more than a bin from ORT's, but as good by ORT's own objective.
    entropy_near_ties: usize,
    /// Tensors whose ORT value histogram qtool collected with exactly ORT's counts and edges.
    hist_identical: usize,
}

/// ORT's entropy histogram of a tensor (counts, edges, the data's min and max).
struct OrtHist {
    counts: Vec<u64>,
    edges: Vec<f32>,
    min: f32,
    max: f32,
}

/// Largest accepted relative excess of the KL divergence, on ORT's own histogram, of qtool's
/// entropy threshold over ORT's minimum when the two thresholds are more than a bin apart: the
/// search's objective is nearly flat there, and the fine bins that straddle ORT's edges (the only
/// difference between the histograms) decide between nearly equal minima.
const ENTROPY_TIE: f64 = 2e-2;

/// `(KL(qtool's window) - KL(ORT's best)) / KL(ORT's best)` on ORT's histogram, qtool's window
/// being the candidate whose thresholds are nearest qtool's.
fn kl_gap(h: &OrtHist, (qlo, qhi): (f32, f32)) -> f64 {
    let nq = 128;
    let divs = ort_entropy_divergences(&h.counts, nq);
    let nb = h.counts.len();
    let zero = nb / 2;
    let best = divs.iter().cloned().fold(f64::INFINITY, f64::min);
    let near = (0..divs.len())
        .min_by(|&a, &b| {
            let dist = |k: usize| {
                let i = nq / 2 + k;
                let (lo, hi) = (h.edges[zero - i], h.edges[(zero + i + 1).min(nb)]);
                (lo.max(h.min) - qlo).abs() as f64 + (hi.min(h.max) - qhi).abs() as f64
            };
            dist(a).total_cmp(&dist(b))
        })
        .expect("candidates");
    (divs[near] - best) / best.abs().max(f64::MIN_POSITIVE)
}

fn check_model(
    python: &Path,
    models: &Path,
    images: &Path,
    case: &Case,
    entropy_bins: usize,
    work: &Path,
) -> (Summary, Vec<String>) {
    let model_path = models.join(format!("{}.onnx", case.model));
    let model = qtool_onnx::load(&model_path).unwrap();
    let exec = Executor::new(&model, ExecOptions { threads: None }).unwrap();
    let input = input_name(&model);
    let pre = Preprocess {
        resize: Resize::Exact {
            height: case.height,
            width: case.width,
        },
        scale: case.scale,
        mean: case.mean.clone(),
        std: case.std.clone(),
        ..Default::default()
    };
    let mut src = ImageFolderSource::open(images, &input, pre).unwrap();
    let n = src.len().unwrap();
    let samples: Vec<Sample> = (0..n).map(|i| src.get(i).unwrap().unwrap()).collect();
    let npz = work.join(format!("{}.npz", case.model));
    let arrays: Vec<(String, Tensor)> = samples
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            s.inputs
                .iter()
                .map(move |(name, t)| (format!("{i:05}__{name}"), t.clone()))
        })
        .collect();
    qtool_data::npz::write_npz(&arrays, std::fs::File::create(&npz).unwrap()).unwrap();

    // "ort" mode statistics: ORT's own histograms collected in a second pass, with the bins of
    // the entropy run (and, when that is not 2048, a second collection for Percentile's 2048).
    let collect = |ort_bins: u32| -> CalibStats {
        let mut source = samples.clone();
        calibrate(
            &exec,
            &mut source,
            &CalibOptions {
                stats: StatsConfig {
                    ort_bins: Some(ort_bins),
                    ..StatsConfig::default()
                },
                ..Default::default()
            },
            &mut |_, _| {},
        )
        .unwrap()
    };
    let stats = collect(entropy_bins as u32);
    let pct_stats = if entropy_bins == 2048 {
        None
    } else {
        Some(collect(2048))
    };

    let out = work.join(format!("{}.ort.json", case.model));
    let hists_path = work.join(format!("{}.ort_hists.npz", case.model));
    let st = qtool_testkit::python_script(python, "ort_calib_ranges.py")
        .arg("ranges")
        .arg(&model_path)
        .arg(&npz)
        .arg(&out)
        .args(["--entropy-bins", &entropy_bins.to_string()])
        .arg("--entropy-hists")
        .arg(&hists_path)
        .output()
        .expect("python runs");
    assert!(
        st.status.success(),
        "ort_calib_ranges.py failed on {}:\n{}",
        case.model,
        String::from_utf8_lossy(&st.stderr)
    );
    let ort = parse_python_json(&std::fs::read_to_string(&out).unwrap());

    let mut problems = Vec::new();
    let ort_tensors: Vec<String> = ort["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let missing: Vec<&String> = ort_tensors
        .iter()
        .filter(|t| !stats.tensors.contains_key(*t))
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{}: tensors ORT calibrates that qtool did not observe: {missing:?}",
            case.model
        ));
    }

    // ORT's own entropy histograms, by tensor name.
    let mut ort_hists: BTreeMap<String, OrtHist> = BTreeMap::new();
    let arrays: BTreeMap<String, Tensor> = qtool_data::load_npz(&hists_path)
        .unwrap()
        .into_iter()
        .collect();
    for (idx, t) in ort_tensors.iter().enumerate() {
        if let (Some(h), Some(e), Some(m)) = (
            arrays.get(&format!("h{idx:05}")),
            arrays.get(&format!("e{idx:05}")),
            arrays.get(&format!("m{idx:05}")),
        ) {
            let m = m.to_vec::<f32>().unwrap();
            ort_hists.insert(
                t.clone(),
                OrtHist {
                    counts: h
                        .to_vec::<i64>()
                        .unwrap()
                        .into_iter()
                        .map(|c| c as u64)
                        .collect(),
                    edges: e.to_vec::<f32>().unwrap(),
                    min: m[0],
                    max: m[1],
                },
            );
        }
    }
    // qtool's entropy search on ORT's own histograms must give ORT's thresholds exactly.
    let mut search_exact = 0;
    let mut hist_identical = 0;
    for (t, h) in &ort_hists {
        if let Some(q) = stats.tensors.get(t).and_then(|s| s.ort_value.as_ref())
            && q.counts == h.counts
            && q.edges() == h.edges
        {
            hist_identical += 1;
        }
        let (mut lo, mut hi) = ort_entropy_f32(&h.counts, &h.edges, 128);
        if lo < h.min {
            lo = h.min;
        }
        if hi > h.max {
            hi = h.max;
        }
        let o = &ort["entropy"][t];
        let want = (f(&o[0]), f(&o[1]));
        if (lo, hi) == want {
            search_exact += 1;
        } else {
            problems.push(format!(
                "{} entropy {t}: qtool's search on ORT's own histogram gives ({lo:e}, {hi:e}), ORT ({:e}, {:e})",
                case.model, want.0, want.1
            ));
        }
    }

    let ranges = |set: RangeSettings| {
        let st = if set.method == Method::Percentile {
            pct_stats.as_ref().unwrap_or(&stats)
        } else {
            &stats
        };
        compute_ranges(st, &set).unwrap().ranges
    };
    let minmax = ranges(RangeSettings::default());
    let mut diffs = Vec::new();
    let mut exact = 0;
    let mut empty = 0;
    for t in &ort_tensors {
        let Some(o) = ort["minmax"].get(t) else {
            continue;
        };
        let o = (f(&o[0]), f(&o[1]));
        // A tensor without values: ORT's range is (inf, -inf), qtool gives none (and says so).
        let no_values = stats.tensors.get(t).is_some_and(|s| s.all.count == 0);
        if o == (f32::INFINITY, f32::NEG_INFINITY) {
            if no_values && !minmax.contains_key(t) {
                empty += 1;
            } else {
                problems.push(format!(
                    "{} minmax {t}: ORT saw no values, qtool {:?}",
                    case.model,
                    minmax.get(t)
                ));
            }
            continue;
        }
        let Some(q) = minmax.get(t) else {
            problems.push(format!(
                "{} minmax {t}: ORT ({:e}, {:e}), qtool no range",
                case.model, o.0, o.1
            ));
            continue;
        };
        let q = per_tensor(q);
        if q == o {
            exact += 1;
        } else {
            diffs.push(MinMaxDiff {
                tensor: t.clone(),
                qtool: q,
                ort: o,
            });
        }
    }
    eprintln!(
        "{}: {} tensors, MinMax identical on {exact}, differing on {}, without values on {empty}",
        case.model,
        ort_tensors.len(),
        diffs.len()
    );
    let explain = explain_minmax(python, &model_path, &npz, work, &exec, &samples, &diffs);
    problems.extend(explain.iter().map(|p| format!("{}: {p}", case.model)));

    let mut worst = [0f64; 2];
    let mut near_ties = 0;
    for (i, (key, set)) in [
        (
            "percentile",
            RangeSettings {
                method: Method::Percentile,
                mode: HistMode::Ort,
                num_bins: 2048,
                percentile: 99.999,
                ..Default::default()
            },
        ),
        (
            "entropy",
            RangeSettings {
                method: Method::Entropy,
                mode: HistMode::Ort,
                num_bins: entropy_bins,
                num_quantized_bins: 128,
                ..Default::default()
            },
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let ours = ranges(set);
        for t in &ort_tensors {
            let (Some(q), Some(o)) = (ours.get(t), ort[key].get(t)) else {
                continue;
            };
            let (qlo, qhi) = per_tensor(q);
            let (lo, hi, w) = (f(&o[0]), f(&o[1]), f(&o[2]) as f64);
            let d = ((qlo as f64 - lo as f64).abs()).max((qhi as f64 - hi as f64).abs());
            let bins = if w > 0.0 {
                d / w
            } else if d == 0.0 {
                0.0
            } else {
                f64::INFINITY
            };
            worst[i] = worst[i].max(bins);
            // One bin, plus the f32 rounding of thresholds computed from slightly different edges
            // (ORT's [-T, T] layout moves with T, which the activations can move by an ulp).
            let mag = [qlo, qhi, lo, hi].iter().fold(0f32, |m, v| m.max(v.abs()));
            let ulp = (f32::from_bits(mag.to_bits() + 1) - mag) as f64;
            if d > w * 1.0001 + 4.0 * ulp {
                if key == "entropy"
                    && let Some(gap) = ort_hists.get(t).map(|h| kl_gap(h, (qlo, qhi)))
                    && gap <= ENTROPY_TIE
                {
                    eprintln!(
                        "  {t} entropy: qtool ({qlo:e}, {qhi:e}), ORT ({lo:e}, {hi:e}), {bins:.1} bins apart; on ORT's own histogram qtool's threshold has a KL divergence {gap:.2e} (relative) above ORT's minimum: a near-tie"
                    );
                    near_ties += 1;
                    continue;
                }
                let gap = ort_hists
                    .get(t)
                    .filter(|_| key == "entropy")
                    .map(|h| {
                        format!(
                            "; KL on ORT's histogram {:.2e} above its minimum",
                            kl_gap(h, (qlo, qhi))
                        )
                    })
                    .unwrap_or_default();
                problems.push(format!(
                    "{} {key} {t}: qtool ({qlo:e}, {qhi:e}), ORT ({lo:e}, {hi:e}), bin width {w:e}: {bins:.2} bins apart{gap}",
                    case.model
                ));
            }
        }
    }
    (
        Summary {
            tensors: ort_tensors.len(),
            minmax_exact: exact,
            minmax_explained: diffs.len(),
            worst_percentile_bins: worst[0],
            worst_entropy_bins: worst[1],
            entropy_search_exact: search_exact,
            entropy_near_ties: near_ties,
            hist_identical,
        },
        problems,
    )
}

#[test]
fn calibration_matches_onnx_runtime_on_real_models() {
    let (Some(python), Some(models)) = (
        qtool_testkit::reference_python(),
        qtool_testkit::models_dir(),
    ) else {
        return;
    };
    let images: PathBuf = std::env::var_os("QTOOL_IMAGES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| qtool_testkit::workspace_root().join(".cache/images"));
    if !images.is_dir() {
        assert!(
            !qtool_testkit::reference_required(),
            "{} is missing, and QTOOL_REQUIRE_REFERENCE=1: run `cargo xtask models`",
            images.display()
        );
        eprintln!("SKIP: {} is missing", images.display());
        return;
    }
    let full = std::env::var("QTOOL_CALIB_PARITY_FULL").is_ok_and(|v| v == "1");
    // QTOOL_CALIB_PARITY_MODELS=a,b: only these models of the set (to re-check some of them).
    let only: Option<Vec<String>> = std::env::var("QTOOL_CALIB_PARITY_MODELS")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let entropy_bins = if full { 2048 } else { 256 };
    let work = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    let mut table = Vec::new();
    for case in cases(full)
        .into_iter()
        .filter(|c| only.as_ref().is_none_or(|o| o.iter().any(|m| m == c.model)))
    {
        let (s, p) = check_model(&python, &models, &images, &case, entropy_bins, work.path());
        table.push((case.model, s));
        problems.extend(p);
    }
    println!(
        "{:<22} {:>8} {:>13} {:>17} {:>14} {:>14} {:>15} {:>14} {:>14}",
        "model",
        "tensors",
        "minmax exact",
        "minmax act.diff",
        "pctl max bins",
        format!("entr{entropy_bins} bins"),
        "entr near-ties",
        "search exact",
        "hist identical"
    );
    for (m, s) in &table {
        println!(
            "{m:<22} {:>8} {:>13} {:>17} {:>14.3} {:>14.3} {:>15} {:>14} {:>14}",
            s.tensors,
            s.minmax_exact,
            s.minmax_explained,
            s.worst_percentile_bins,
            s.worst_entropy_bins,
            s.entropy_near_ties,
            format!("{}/{}", s.entropy_search_exact, s.tensors),
            format!("{}/{}", s.hist_identical, s.tensors)
        );
    }
    assert!(
        problems.is_empty(),
        "differences from ONNX Runtime:\n{}",
        problems.join("\n")
    );
}
