//! `cargo xtask bench` calibration cases: `qtool calibrate` against ONNX Runtime's static
//! quantization calibration (`onnxruntime.quantization`) on the same model and the same samples, for
//! MinMax, Percentile and Entropy (and qtool's MSE), with 32 and 128 samples, both sides using all
//! cores, in one run. Models: a ResNet-18-style model with seeded random weights
//! (`xtask/python/make_resnet18.py`, 1x3x224x224) and the real PP-OCRv4 detector at 320x320, both
//! fed crops of the sample photos with each model's preprocessing.
//!
//! Every side runs as a child process under `xtask/python/ort_calib_rusage.py`, which reaps it with
//! `wait4()` and reports its wall time and peak memory (`ru_maxrss`, the child's maximum resident
//! set size). ORT's calibration time is also taken from inside its process (calibrator API alone:
//! `create_calibrator` + `collect_data` + `compute_data`), and the whole `quantize_static` is timed
//! too. qtool's time is the whole `qtool calibrate` process (load, run, statistics, ranges, write).
//! Every process runs [`REPEATS`] times and the medians are reported. Prints a table and writes
//! `target/calib-bench/results.json`; never asserts timings.

use anyhow::{Context, Result, bail};
use qtool_tensor::Tensor;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Sample counts of every case.
const SAMPLES: [usize; 2] = [32, 128];

/// Runs of every measured process; the median of each quantity is reported (the machine the
/// benchmark runs on is usually shared).
const REPEATS: usize = 3;

/// A calibration model and how its samples are made from photos.
struct CalibModel {
    name: &'static str,
    path: PathBuf,
    /// [C, H, W] of one sample.
    chw: [usize; 3],
    mean: [f32; 3],
    std: [f32; 3],
}

/// One measured child process.
#[derive(Clone, Debug, Default)]
struct Measured {
    wall_s: f64,
    max_rss_mib: f64,
    /// User + system CPU time of the whole process.
    cpu_s: f64,
    /// ORT: the calibration's own time, from inside the process.
    inner_s: Option<f64>,
}

/// `n` crops of the sample photos (random position and scale, random horizontal flip; seeded),
/// resized to the model's input and normalized, as a [n, C, H, W] .npy.
fn write_samples(m: &CalibModel, n: usize, out: &Path) -> Result<()> {
    let dir = crate::models::ensure_images()?;
    let mut photos: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "png" || e == "jpg" || e == "jpeg")
        })
        .collect();
    photos.sort();
    if photos.is_empty() {
        bail!("no photos in {}", dir.display());
    }
    let imgs: Vec<image::RgbImage> = photos
        .iter()
        .map(|p| {
            image::open(p)
                .with_context(|| format!("decoding {}", p.display()))
                .map(|i| i.to_rgb8())
        })
        .collect::<Result<_>>()?;
    let [c, h, w] = m.chw;
    let mut rng = qtool_testkit::Rng::new(0xCA11B);
    let mut data = Vec::with_capacity(n * c * h * w);
    for i in 0..n {
        let img = &imgs[i % imgs.len()];
        let (iw, ih) = img.dimensions();
        let scale = rng.uniform(0.35, 1.0) as f64;
        let cw = ((iw as f64 * scale) as u32).clamp(8, iw);
        let ch = ((ih as f64 * scale) as u32).clamp(8, ih);
        let x0 = (rng.uniform(0.0, 1.0) as f64 * (iw - cw) as f64) as u32;
        let y0 = (rng.uniform(0.0, 1.0) as f64 * (ih - ch) as f64) as u32;
        let crop = image::imageops::crop_imm(img, x0, y0, cw, ch).to_image();
        let mut r = image::imageops::resize(
            &crop,
            w as u32,
            h as u32,
            image::imageops::FilterType::Triangle,
        );
        if rng.uniform(0.0, 1.0) < 0.5 {
            image::imageops::flip_horizontal_in_place(&mut r);
        }
        for k in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let p = r.get_pixel(x as u32, y as u32)[k.min(2)] as f32 / 255.0;
                    data.push((p - m.mean[k]) / m.std[k]);
                }
            }
        }
    }
    let t = Tensor::from_vec(&[n, c, h, w], data)?;
    let mut f = std::io::BufWriter::new(std::fs::File::create(out)?);
    qtool_data::npy::write_npy(&t, &mut f)?;
    Ok(())
}

/// The median of some values (the mean of the middle two for an even count); NaN when empty.
fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs `cmd` [`REPEATS`] times under the rusage meter; returns the medians of wall time, peak
/// memory and (from `inner`, which reads a run's stdout) the inner time.
fn measure_median(
    python: &Path,
    work: &Path,
    cmd: &[&str],
    inner: impl Fn(&str) -> Result<Option<f64>>,
) -> Result<Measured> {
    let mut runs = Vec::with_capacity(REPEATS);
    for _ in 0..REPEATS {
        let (mut m, stdout) = measure(python, work, cmd)?;
        m.inner_s = inner(&stdout)?;
        runs.push(m);
    }
    let inner: Vec<f64> = runs.iter().filter_map(|m| m.inner_s).collect();
    Ok(Measured {
        wall_s: median(runs.iter().map(|m| m.wall_s).collect()),
        max_rss_mib: median(runs.iter().map(|m| m.max_rss_mib).collect()),
        cpu_s: median(runs.iter().map(|m| m.cpu_s).collect()),
        inner_s: (!inner.is_empty()).then(|| median(inner)),
    })
}

/// Runs `cmd` under the rusage meter and returns its measurements and stdout.
fn measure(python: &Path, work: &Path, cmd: &[&str]) -> Result<(Measured, String)> {
    let out = work.join("rusage.json");
    let mut c = crate::py::script_command(python, "ort_calib_rusage.py");
    c.arg(&out).arg("--").args(cmd);
    let o = c.output().context("running ort_calib_rusage.py")?;
    let v: Value = serde_json::from_slice(&std::fs::read(&out).with_context(|| {
        format!(
            "no report from ort_calib_rusage.py: {}",
            String::from_utf8_lossy(&o.stderr)
        )
    })?)?;
    if v["status"].as_i64() != Some(0) {
        bail!(
            "{} failed (status {}): {}",
            cmd.join(" "),
            v["status"],
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok((
        Measured {
            wall_s: v["wall_s"].as_f64().unwrap_or(f64::NAN),
            max_rss_mib: v["max_rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0,
            cpu_s: v["cpu_s"].as_f64().unwrap_or(f64::NAN),
            inner_s: None,
        },
        v["stdout"].as_str().unwrap_or("").to_string(),
    ))
}

/// The release `qtool` binary, built now.
fn qtool_binary() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = std::process::Command::new(cargo)
        .current_dir(crate::workspace_root())
        .args(["build", "--release", "--quiet", "-p", "qtool"])
        .status()?;
    if !st.success() {
        bail!("building qtool failed");
    }
    Ok(crate::workspace_root().join("target/release/qtool"))
}

fn models(python: &Path, work: &Path) -> Result<Vec<CalibModel>> {
    let resnet = work.join("resnet18.onnx");
    if !resnet.exists() {
        let mut c = crate::py::script_command(python, "make_resnet18.py");
        c.arg(&resnet);
        crate::py::run(&mut c)?;
    }
    let det = crate::models::ensure_models()?.join("ppocrv4_det.onnx");
    Ok(vec![
        CalibModel {
            name: "resnet18",
            path: resnet,
            chw: [3, 224, 224],
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        },
        CalibModel {
            name: "ppocrv4_det",
            path: det,
            chw: [3, 320, 320],
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        },
    ])
}

/// Runs the calibration cases whose name (`calib/MODEL/N`) contains `filter` (all without one).
/// Returns true when a filter was given and it selected calibration cases (then the caller runs
/// nothing else).
pub fn bench_calib(python: &Path, filter: Option<&str>) -> Result<bool> {
    let work = crate::workspace_root().join("target/calib-bench");
    std::fs::create_dir_all(&work)?;
    let all = models(python, &work)?;
    let selected: Vec<(&CalibModel, usize)> = all
        .iter()
        .flat_map(|m| SAMPLES.iter().map(move |&n| (m, n)))
        .filter(|(m, n)| filter.is_none_or(|f| format!("calib/{}/{n}", m.name).contains(f)))
        .collect();
    if selected.is_empty() {
        return Ok(false);
    }
    let qtool = qtool_binary()?;
    let nmax = *SAMPLES.iter().max().expect("sample counts");
    let mut rows: Vec<Value> = Vec::new();
    println!(
        "calibration: qtool calibrate vs ONNX Runtime quantize_static (all cores each; peak = child max RSS from wait4; medians of {REPEATS} runs)"
    );
    println!(
        "{:<12} {:>4} {:<10} {:>9} {:>9} {:>10} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "model",
        "n",
        "method",
        "qtool s",
        "qtool MiB",
        "ORT cal s",
        "ORT MiB",
        "ORT q s",
        "ORT q MiB",
        "xEntropy",
        "mem/Entr"
    );
    for (m, n) in selected {
        let data = work.join(format!("{}_{nmax}.npy", m.name));
        if !data.exists() {
            eprintln!("writing {nmax} samples for {}...", m.name);
            write_samples(m, nmax, &data)?;
        }
        let mut ort: Vec<(&str, Measured, Measured)> = Vec::new();
        for method in ["minmax", "percentile", "entropy"] {
            let mut sides = Vec::new();
            for what in ["calib", "quantize"] {
                eprintln!("ORT {what} {} n={n} {method}...", m.name);
                let ort_work = work.join("ort");
                let samples = n.to_string();
                let script = crate::py::scripts_dir().join("ort_calib_bench.py");
                let meas = measure_median(
                    python,
                    &work,
                    &[
                        python.to_str().context("python path")?,
                        script.to_str().context("script path")?,
                        "--model",
                        m.path.to_str().context("model path")?,
                        "--data",
                        data.to_str().context("data path")?,
                        "--method",
                        method,
                        "--samples",
                        &samples,
                        "--what",
                        what,
                        "--work",
                        ort_work.to_str().context("work path")?,
                    ],
                    |stdout| {
                        let line: Value =
                            serde_json::from_str(stdout.lines().last().unwrap_or("{}"))
                                .context("ort_calib_bench.py output")?;
                        Ok(line["seconds"].as_f64())
                    },
                )?;
                sides.push(meas);
            }
            ort.push((method, sides[0].clone(), sides[1].clone()));
        }
        let entropy = ort
            .iter()
            .find(|o| o.0 == "entropy")
            .map(|o| o.1.clone())
            .expect("entropy measured");
        let entropy_s = entropy.inner_s.unwrap_or(entropy.wall_s);
        for method in ["minmax", "percentile", "entropy", "mse"] {
            eprintln!("qtool {} n={n} {method}...", m.name);
            let stats = work.join("qtool_stats.json");
            let ranges = work.join("qtool_ranges.json");
            let samples = n.to_string();
            let q = measure_median(
                python,
                &work,
                &[
                    qtool.to_str().context("qtool path")?,
                    "calibrate",
                    m.path.to_str().context("model path")?,
                    "--data",
                    data.to_str().context("data path")?,
                    "--samples",
                    &samples,
                    "--method",
                    method,
                    "-o",
                    stats.to_str().context("path")?,
                    "--ranges",
                    ranges.to_str().context("path")?,
                ],
                |_| Ok(None),
            )?;
            let o = ort.iter().find(|o| o.0 == method);
            let fmt =
                |v: Option<f64>, p: usize| v.map(|x| format!("{x:.p$}")).unwrap_or("-".into());
            println!(
                "{:<12} {:>4} {:<10} {:>9.2} {:>9.0} {:>10} {:>9} {:>9} {:>9} {:>10.2} {:>10.3}",
                m.name,
                n,
                method,
                q.wall_s,
                q.max_rss_mib,
                fmt(o.and_then(|o| o.1.inner_s), 2),
                fmt(o.map(|o| o.1.max_rss_mib), 0),
                fmt(o.and_then(|o| o.2.inner_s), 2),
                fmt(o.map(|o| o.2.max_rss_mib), 0),
                entropy_s / q.wall_s,
                q.max_rss_mib / entropy.max_rss_mib
            );
            rows.push(serde_json::json!({
                "model": m.name,
                "samples": n,
                "method": method,
                "qtool": {"wall_s": q.wall_s, "cpu_s": q.cpu_s, "max_rss_mib": q.max_rss_mib},
                "ort_calibrator": o.map(|o| serde_json::json!({
                    "calib_s": o.1.inner_s, "process_wall_s": o.1.wall_s, "process_cpu_s": o.1.cpu_s, "max_rss_mib": o.1.max_rss_mib})),
                "ort_quantize_static": o.map(|o| serde_json::json!({
                    "quantize_s": o.2.inner_s, "process_wall_s": o.2.wall_s, "max_rss_mib": o.2.max_rss_mib})),
                "speedup_vs_ort_entropy": entropy_s / q.wall_s,
                "memory_vs_ort_entropy": q.max_rss_mib / entropy.max_rss_mib,
            }));
        }
    }
    let out = work.join("results.json");
    std::fs::write(&out, serde_json::to_vec_pretty(&rows)?)?;
    println!(
        "xEntropy = ORT Entropy calibration time / qtool time (target >= 3); mem/Entr = qtool peak / ORT Entropy peak (target <= 0.1)"
    );
    println!("results: {}", out.display());
    Ok(filter.is_some())
}
