//! `cargo xtask e2e`: the end-to-end regression run. For every `testdata/e2e/<case>/pipeline.yaml`
//! it runs `qtool run` (release build), compares the deterministic parts of the result against insta
//! snapshots in `testdata/e2e/<case>/snapshots/`, checks that ONNX Runtime and OpenVINO load and
//! run every output model and agree with qtool's own execution of it, renders the HTML report in a
//! real headless browser (Debian's chromium) and checks its charts, and prints a table per case.
//! docs/e2e.md says what each case covers and how snapshots are updated.

use anyhow::{Context, Result, bail};
use qtool_ir::Model;
use qtool_tensor::Tensor;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Samples given to the interop check when the model takes a batch of one: that many runs.
const SAMPLES_FIXED_BATCH: usize = 8;
/// Samples stacked into one batch when the model's batch dimension is free.
const SAMPLES_FREE_BATCH: usize = 64;
/// A quantized output (an integer tensor, or a float one made by a DequantizeLinear) may differ
/// from qtool's by at most this many quantization steps in every element.
const MAX_LSB: f64 = 1.0;
/// A float output that is not produced by a DequantizeLinear (e.g. the float rescale of the integer
/// format, or an excluded float tail) may differ from qtool's by at most this relative L2 error.
const MAX_REL_L2: f64 = 1e-4;
/// The end-to-end bound of an output that is not within [`MAX_LSB`] / [`MAX_REL_L2`] of qtool's:
/// its relative L2 distance to qtool's may be at most this fraction of qtool's own quantization
/// error (relative L2 distance of qtool's result to the FP32 model's). On a deep network a one-step
/// rounding tie in one op (allowed by the per-op check) changes the next ops' inputs and grows; the
/// runtimes then differ by an error of the same nature as the quantization noise, and what matters
/// to a user is that qtool's measured accuracy holds for the runtime: uncorrelated errors add in
/// power, so a disagreement of 0.35x the quantization error moves the SQNR by at most
/// 10*log10(1 + 0.35^2) = 0.5 dB (docs/e2e.md). A runtime whose own error against FP32 is no larger
/// than qtool's passes too: qtool's report is conservative for it (and, by the triangle
/// inequality, it is within twice the quantization error of qtool's result).
const MAX_FRACTION_OF_QUANT_ERROR: f64 = 0.35;
/// Runtime errors that are known limitations of the pinned runtime versions, not qtool bugs: only
/// an error containing this text is excused (the table says "rejects (known)"); a runtime that
/// accepts the model is compared as usual. (runtime key, substring of its error, why.)
const KNOWN_REJECTIONS: &[(&str, &str, &str)] = &[(
    "openvino",
    "The number of dequantization scale elements",
    "OpenVINO 2026.4's ONNX frontend reads QLinearConv's per-channel w_scale against the wrong axis \
     and rejects the model; qdq_to_qlinear's `per_channel: false` keeps such Convs in QDQ form",
)];
/// How long the browser may take to load and render a report.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

/// One case: a directory of testdata/e2e with a pipeline.yaml.
struct Case {
    name: String,
    dir: PathBuf,
    yaml: PathBuf,
}

/// One runtime's agreement with qtool for one output model.
#[derive(Default, Clone)]
struct Agreement {
    /// Largest difference in quantization steps over the quantized outputs.
    max_lsb: Option<f64>,
    /// Largest relative L2 error over the float outputs that have no step, and over the outputs
    /// judged by the end-to-end bound.
    max_rel_l2: Option<f64>,
    /// Largest ratio of an output's relative L2 distance to qtool's quantization error, over the
    /// outputs judged by [`MAX_FRACTION_OF_QUANT_ERROR`].
    max_fraction: Option<f64>,
    /// What the runtime was compared with when it is not qtool's execution of the model itself.
    reference: Option<String>,
    /// Measurements printed under the table.
    notes: Vec<String>,
    /// The runtime rejected the model for a known reason ([`KNOWN_REJECTIONS`]).
    known: Option<&'static str>,
    problems: Vec<String>,
}

impl Agreement {
    fn cell(&self) -> String {
        let mut parts = Vec::new();
        if let Some(l) = self.max_lsb {
            parts.push(format!("{l:.0} LSB"));
        }
        if let Some(r) = self.max_rel_l2 {
            parts.push(format!("rel {r:.0e}"));
        }
        if let Some(f) = self.max_fraction {
            parts.push(format!("{f:.2}x q.err"));
        }
        if self.reference.is_some() {
            parts.push("float A".into());
        }
        let verdict = if !self.problems.is_empty() {
            "FAIL"
        } else if self.known.is_some() {
            "rejects (known)"
        } else {
            "ok"
        };
        if parts.is_empty() {
            verdict.to_string()
        } else {
            format!("{verdict} ({})", parts.join(", "))
        }
    }
}

/// The per-op check of one output model against ONNX Runtime: every quantized unit fed qtool's
/// own values of its inputs.
#[derive(Default, Clone)]
struct Units {
    count: usize,
    /// Largest difference in steps over the units with an integer or DequantizeLinear output, and
    /// the unit (its output) where it is.
    max_lsb: f64,
    worst: String,
    /// Largest fraction of a unit's elements that differ at all.
    max_frac: f64,
    /// Largest relative L2 error over the units with a float output without a step.
    max_rel_l2: Option<f64>,
    /// Largest difference in steps over the 8-bit tensors of the whole model run in ONNX Runtime
    /// (information: how one-step ties grow), and how many of them differ by more than one step.
    full_max_lsb: Option<f64>,
    full_over: usize,
    full_count: usize,
}

impl Units {
    fn line(&self) -> String {
        let mut s = format!(
            "{} units, max {:.0} LSB (at {}), at most {:.3}% of a unit's elements differ",
            self.count,
            self.max_lsb,
            if self.worst.is_empty() {
                "-"
            } else {
                &self.worst
            },
            self.max_frac * 100.0
        );
        if let Some(r) = self.max_rel_l2 {
            let _ = write!(s, ", float units rel {r:.1e}");
        }
        if let Some(f) = self.full_max_lsb {
            let _ = write!(
                s,
                "; whole model: {} of {} 8-bit tensors over 1 LSB, max {f:.0} LSB",
                self.full_over, self.full_count
            );
        }
        s
    }
}

/// One row of a case's table.
struct Row {
    output: String,
    format: String,
    bytes: u64,
    sqnr: Option<f64>,
    top1: Option<f64>,
    accuracy: Option<f64>,
    ort: Agreement,
    ov: Agreement,
    units: Option<Units>,
}

/// `cargo xtask e2e [--filter TEXT]`.
pub fn e2e_task(filter: Option<&str>) -> Result<()> {
    let root = crate::workspace_root();
    let cases = discover(&root.join("testdata").join("e2e"), filter)?;
    if cases.is_empty() {
        bail!(
            "no e2e case matches {:?} (cases are testdata/e2e/<case>/pipeline.yaml)",
            filter.unwrap_or("")
        );
    }
    let chromium = find_chromium()?;
    let python = crate::py::ensure_venv()?;
    let texts: Vec<String> = cases
        .iter()
        .map(|c| std::fs::read_to_string(&c.yaml).unwrap_or_default())
        .collect();
    if texts.iter().any(|t| t.contains(".cache/models")) {
        crate::models::ensure_models()?;
    }
    if texts.iter().any(|t| t.contains(".cache/images")) {
        crate::models::ensure_images()?;
    }
    if texts.iter().any(|t| t.contains(".cache/e2e/models")) {
        let out = root.join(".cache").join("e2e").join("models");
        eprintln!("e2e: writing the synthetic models into {}", out.display());
        crate::py::run(crate::py::script_command(&python, "e2e_models.py").arg(&out))
            .context("generating the synthetic e2e models")?;
    }
    let qtool = build_qtool(&root)?;
    let work = target_dir(&root).join("e2e");

    let mut failed = Vec::new();
    for case in &cases {
        eprintln!("e2e: case {} ...", case.name);
        let t = Instant::now();
        match run_case(case, &qtool, &python, &chromium, &work.join(&case.name)) {
            Ok((rows, summary, problems)) => {
                print_table(case, &rows, &summary);
                eprintln!(
                    "e2e: case {} took {:.1} s",
                    case.name,
                    t.elapsed().as_secs_f64()
                );
                if !problems.is_empty() {
                    for p in &problems {
                        println!("  FAIL: {p}");
                    }
                    failed.push(format!("{}: {}", case.name, problems.join("; ")));
                }
            }
            Err(e) => {
                println!("\ncase {}: ERROR: {e:#}", case.name);
                failed.push(format!("{}: {e:#}", case.name));
            }
        }
    }
    println!();
    if !failed.is_empty() {
        bail!(
            "{} of {} e2e cases failed:\n  {}\n(a snapshot change that is intended is accepted with INSTA_UPDATE=always; see docs/e2e.md)",
            failed.len(),
            cases.len(),
            failed.join("\n  ")
        );
    }
    println!("e2e: {} cases passed", cases.len());
    Ok(())
}

fn discover(dir: &Path, filter: Option<&str>) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        let yaml = p.join("pipeline.yaml");
        if !yaml.is_file() {
            continue;
        }
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        cases.push(Case { name, dir: p, yaml });
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

/// The headless browser: `QTOOL_CHROMIUM` or Debian's `/usr/bin/chromium`. Nothing is installed here.
fn find_chromium() -> Result<PathBuf> {
    let p = std::env::var_os("QTOOL_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !p.is_file() {
        bail!(
            "{} not found: the e2e run checks the HTML report in a real headless browser. Install \
             Debian's chromium first (`apt-get install -y chromium`), or point QTOOL_CHROMIUM at a \
             chromium binary",
            p.display()
        );
    }
    Ok(p)
}

pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
}

/// Builds the release qtool once and returns its path.
pub(crate) fn build_qtool(root: &Path) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("e2e: building qtool (release)");
    crate::py::run(Command::new(cargo).current_dir(root).args([
        "build",
        "--release",
        "--locked",
        "-p",
        "qtool",
    ]))?;
    let exe = target_dir(root)
        .join("release")
        .join(format!("qtool{}", std::env::consts::EXE_SUFFIX));
    if !exe.is_file() {
        bail!("the build did not produce {}", exe.display());
    }
    Ok(exe)
}

/// Runs a command, returning its stdout; fails with its stderr when it does not succeed.
fn output_of(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

type CaseOutcome = (Vec<Row>, String, Vec<String>);

/// One output model of a run.
struct OutputModel {
    /// The path as written in the configuration.
    display: String,
    format: String,
    path: PathBuf,
}

/// What a `qtool run` wrote, read back from its manifest (docs/pipeline.md): input paths there are
/// relative to the YAML file's directory, output paths to the output directory.
struct Run {
    manifest: Value,
    model: PathBuf,
    outputs: Vec<OutputModel>,
    report_html: Option<PathBuf>,
    report_json: Option<PathBuf>,
    /// The evaluation data (or, without one, the calibration data) and its preprocessing.
    data: PathBuf,
    preprocess: Option<qtool_pipeline::calib::Preprocess>,
}

impl Run {
    fn from_manifest(case_dir: &Path, out: &Path) -> Result<Run> {
        let path = out.join("manifest.json");
        let manifest: Value = serde_json::from_str(
            &std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("parsing {}", path.display()))?;
        let text = |v: &Value, what: &str| -> Result<String> {
            v.as_str()
                .map(str::to_string)
                .with_context(|| format!("{}: no {what}", path.display()))
        };
        let model = case_dir.join(text(&manifest["model"]["path"], "model.path")?);
        let mut outputs = Vec::new();
        for o in manifest["outputs"].as_array().into_iter().flatten() {
            let display = text(&o["path"], "outputs[].path")?;
            outputs.push(OutputModel {
                path: out.join(&display),
                format: text(&o["format"], "outputs[].format")?,
                display,
            });
        }
        let report = |ext: &str| {
            manifest["report"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["path"].as_str())
                .find(|p| p.ends_with(ext))
                .map(|p| out.join(p))
        };
        let data_params = &manifest["parameters"]["data"];
        let set = [&data_params["evaluation"], &data_params["calibration"]]
            .into_iter()
            .find(|s| s["path"].is_string())
            .with_context(|| format!("{}: the run has no data set", path.display()))?;
        let preprocess = match &set["preprocess"] {
            Value::Null => None,
            p => Some(
                serde_json::from_value(p.clone())
                    .with_context(|| format!("{}: reading the preprocessing", path.display()))?,
            ),
        };
        Ok(Run {
            model,
            report_html: report(".html"),
            report_json: report(".json"),
            data: case_dir.join(text(&set["path"], "data path")?),
            preprocess,
            outputs,
            manifest,
        })
    }
}

fn run_case(
    case: &Case,
    qtool: &Path,
    python: &Path,
    chromium: &Path,
    work: &Path,
) -> Result<CaseOutcome> {
    let root = crate::workspace_root();
    if work.exists() {
        std::fs::remove_dir_all(work).with_context(|| format!("clearing {}", work.display()))?;
    }
    let out = work.join("out");
    std::fs::create_dir_all(&out)?;
    let mut problems = Vec::new();

    // 1. qtool run, twice: the second run must give byte-identical models and report.
    let run = |dir: &Path| -> Result<String> {
        output_of(
            Command::new(qtool)
                .current_dir(&root)
                .arg("run")
                .arg(&case.yaml)
                .arg("--output-dir")
                .arg(dir)
                .env("QTOOL_LOG", "warn"),
        )
    };
    let summary = run(&out)?;
    let pipe = Run::from_manifest(&case.dir, &out)?;
    let again = work.join("again");
    run(&again)?;
    let mut produced: Vec<PathBuf> = pipe.outputs.iter().map(|o| o.path.clone()).collect();
    produced.extend(pipe.report_html.iter().cloned());
    produced.extend(pipe.report_json.iter().cloned());
    for p in &produced {
        let rel = p.strip_prefix(&out).unwrap_or(p);
        let (a, b) = (std::fs::read(p), std::fs::read(again.join(rel)));
        match (a, b) {
            (Ok(a), Ok(b)) if a == b => {}
            (Ok(_), Ok(_)) => problems.push(format!(
                "{}: a second run of the same configuration wrote different bytes",
                rel.display()
            )),
            (a, b) => problems.push(format!(
                "{}: missing after the run (first: {}, second: {})",
                rel.display(),
                a.is_ok(),
                b.is_ok()
            )),
        }
    }
    let _ = std::fs::remove_dir_all(&again);

    let manifest = &pipe.manifest;
    // 2. Snapshots.
    let snaps = case.dir.join("snapshots");
    let mut check = |name: &str, text: &str| {
        if let Err(e) = snapshot(&snaps, name, text) {
            problems.push(e);
        }
    };
    check("metrics", &metrics_text(manifest));
    let mut loaded = Vec::new();
    for o in &pipe.outputs {
        let model = qtool_onnx::load(&o.path)
            .with_context(|| format!("loading the output {}", o.path.display()))?;
        let stem = snapshot_stem(&o.display);
        check(&format!("{stem}.graph"), &round_floats(&model.graph.dump()));
        check(&format!("{stem}.params"), &params_text(&model));
        loaded.push((o, model));
    }

    // 3. Interop: ONNX Runtime and OpenVINO against qtool on the evaluation samples.
    let fp32 = qtool_onnx::load(&pipe.model)
        .with_context(|| format!("loading {}", pipe.model.display()))?;
    let samples = interop_samples(
        &fp32,
        &pipe.data,
        pipe.preprocess.clone(),
        &work.join("interop"),
    )?;
    let mut checks = Vec::new();
    for (i, (o, model)) in loaded.iter().enumerate() {
        let mut entries = Vec::new();
        for (k, input) in samples.iter().enumerate() {
            let dir = work.join("interop").join(format!("out{i}_{k}"));
            output_of(
                Command::new(qtool)
                    .arg("exec")
                    .arg(&o.path)
                    .arg("--input")
                    .arg(input)
                    .arg("-o")
                    .arg(&dir)
                    .env("QTOOL_LOG", "warn"),
            )?;
            let mut arrays = Vec::new();
            for (v, _) in &model.graph.outputs {
                let name = model.graph.value_name(*v).to_string();
                let f = dir.join(qtool_pipeline::exec::output_file_name(&name));
                let t = qtool_data::load_npy(&f)
                    .with_context(|| format!("reading qtool's output {}", f.display()))?;
                arrays.push((name, t));
            }
            let npz = work.join("interop").join(format!("qtool{i}_{k}.npz"));
            write_npz(&npz, &arrays)?;
            entries.push(serde_json::json!({"inputs": input, "qtool": npz}));
        }
        let values = dump_values(model, &samples[0], &work.join("interop"), i)?;
        checks.push(serde_json::json!({
            "model": o.path,
            "samples": entries,
            "fp32": pipe.model,
            "qtool": qtool,
            "values": values,
        }));
    }
    let spec = work.join("interop").join("spec.json");
    std::fs::write(
        &spec,
        serde_json::to_string_pretty(&serde_json::json!({ "checks": checks }))?,
    )?;
    let result_path = work.join("interop").join("result.json");
    crate::py::run(
        crate::py::script_command(python, "e2e_check.py")
            .arg(&spec)
            .arg(&result_path),
    )
    .context("the interop checker (xtask/python/e2e_check.py)")?;
    let result: Value = serde_json::from_str(&std::fs::read_to_string(&result_path)?)?;
    let agreements = judge_interop(&result, &mut problems);

    // 4. The report in a real browser.
    if let Some(html) = &pipe.report_html
        && let Err(e) = check_report_in_browser(chromium, html, pipe.report_json.as_deref(), work)
    {
        problems.push(format!("report {}: {e:#}", html.display()));
    }

    // 5. The table.
    let mut rows = Vec::new();
    let outs = manifest["outputs"].as_array().cloned().unwrap_or_default();
    for (i, (o, _)) in loaded.iter().enumerate() {
        let rec = outs.get(i).cloned().unwrap_or(Value::Null);
        let m = &rec["metrics"];
        let (ort, ov, units) = agreements.get(i).cloned().unwrap_or_default();
        rows.push(Row {
            output: o.display.clone(),
            format: o.format.clone(),
            bytes: std::fs::metadata(&o.path).map(|m| m.len()).unwrap_or(0),
            sqnr: m["sqnr_db"].as_f64(),
            top1: m["top1_agreement"].as_f64(),
            accuracy: m["accuracy"].as_f64(),
            ort,
            ov,
            units,
        });
    }
    let fp32_acc = outs
        .iter()
        .find_map(|o| o["metrics"]["accuracy_fp32"].as_f64());
    let mut head = format!(
        "{} samples checked against ONNX Runtime and OpenVINO",
        samples.len()
    );
    if let Some(a) = fp32_acc {
        let _ = write!(head, "; FP32 accuracy {:.2}%", a * 100.0);
    }
    Ok((rows, format!("{head}\n{}", indent(&summary)), problems))
}

/// The file-name stem of an output's snapshots: its path as written, `/` replaced.
fn snapshot_stem(display: &str) -> String {
    let s = display.trim_end_matches(".onnx");
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Compares `text` with `<dir>/<name>.snap` through insta; a mismatch is returned as an error
/// (insta prints the diff, and writes `.snap.new` or, with INSTA_UPDATE=always, the snapshot).
fn snapshot(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        insta::with_settings!({
            snapshot_path => dir,
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(name, text);
        });
    }));
    r.map_err(|_| format!("snapshot {name} differs (see the diff above)"))
}

/// Rounds every float printed in scientific notation by the IR dump (`1.234567e-2`) to four
/// significant digits, so that the snapshot does not depend on the last bits of a calibration.
fn round_floats(text: &str) -> String {
    let re = regex::Regex::new(r"-?\d\.\d+e-?\d+").expect("valid regex");
    re.replace_all(text, |c: &regex::Captures| {
        c[0].parse::<f64>()
            .map(|v| format!("{v:.3e}"))
            .unwrap_or_else(|_| c[0].to_string())
    })
    .into_owned()
}

/// Four significant digits.
fn sig4(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    format!("{v:.3e}")
}

/// Every initializer of a model: quantization parameters and small tensors with their values
/// (floats to four significant digits), larger ones as a summary; 8-bit tensors (quantized weights)
/// also with a hash of their bytes.
fn params_text(model: &Model) -> String {
    let g = &model.graph;
    let mut s = String::new();
    for v in &g.initializers {
        let Some(td) = g.initializer(*v) else {
            continue;
        };
        let dims: Vec<String> = td.dims.iter().map(|d| d.to_string()).collect();
        let _ = write!(
            s,
            "{}: {}[{}]",
            g.value_name(*v),
            td.dtype.short_name(),
            dims.join(",")
        );
        let vals = td.to_tensor().ok().and_then(|t| t.to_f64_vec());
        if let Some(vals) = vals {
            let float = td.dtype.is_float();
            let fmt = |x: f64| if float { sig4(x) } else { format!("{x}") };
            if vals.len() <= 64 {
                let v: Vec<String> = vals.iter().map(|x| fmt(*x)).collect();
                let _ = write!(s, " = [{}]", v.join(", "));
            } else if !vals.is_empty() {
                let min = vals.iter().cloned().fold(f64::INFINITY, f64::min);
                let max = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let _ = write!(s, " min {} max {}", fmt(min), fmt(max));
                if td.dtype.bits() == Some(8)
                    && let Some(raw) = td.raw()
                {
                    let _ = write!(s, " sha256 {}", &crate::py::sha256_hex(raw)[..16]);
                }
            }
        }
        s.push('\n');
    }
    s
}

fn fmt_opt(v: &Value, digits: usize) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.digits$}"),
        None => "-".into(),
    }
}

/// The deterministic part of a run's manifest: what was quantized and skipped (and why), and the
/// metrics rounded (SQNR to 0.1 dB, agreement and accuracy to 0.1%).
fn metrics_text(m: &Value) -> String {
    let mut s = String::new();
    if let Some(c) = m.get("calibration").filter(|c| !c.is_null()) {
        let _ = writeln!(
            s,
            "calibration: {} samples, {} tensors, {} ranges",
            c["samples"], c["tensors"], c["ranges"]
        );
    }
    for p in m["preprocess"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "preprocess {}: {} rewritten, {} skipped",
            p["pass"].as_str().unwrap_or("?"),
            p["rewritten"].as_array().map_or(0, |a| a.len()),
            p["skipped"].as_array().map_or(0, |a| a.len())
        );
    }
    for o in m["outputs"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "\noutput {} ({}): {} quantized, {} skipped",
            o["path"].as_str().unwrap_or("?"),
            o["format"].as_str().unwrap_or("?"),
            o["quantized_nodes"],
            o["skipped_nodes"]
        );
        for p in o["passes"].as_array().into_iter().flatten() {
            let _ = writeln!(
                s,
                "  pass {}: {} rewritten",
                p["pass"].as_str().unwrap_or("?"),
                p["rewritten"].as_array().map_or(0, |a| a.len())
            );
            for k in p["skipped"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    s,
                    "    skipped {} ({}): {}",
                    k["node"].as_str().unwrap_or("?"),
                    k["op_type"].as_str().unwrap_or("?"),
                    k["reason"].as_str().unwrap_or("?")
                );
            }
        }
        let me = &o["metrics"];
        if !me.is_null() {
            let pct = |v: &Value| match v.as_f64() {
                Some(x) => format!("{:.1}%", x * 100.0),
                None => "-".into(),
            };
            let _ = writeln!(
                s,
                "  metrics: {} samples, SQNR {} dB, top-1 {}, top-5 {}, accuracy {} (FP32 {})",
                me["samples"],
                fmt_opt(&me["sqnr_db"], 1),
                pct(&me["top1_agreement"]),
                pct(&me["top5_agreement"]),
                pct(&me["accuracy"]),
                pct(&me["accuracy_fp32"])
            );
        }
    }
    s
}

/// Writes `.npz` with the arrays.
fn write_npz(path: &Path, arrays: &[(String, Tensor)]) -> Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    qtool_data::npz::write_npz(arrays, f).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The interop inputs: the first samples of the evaluation set (read and preprocessed by the
/// pipeline's own data sources), as `.npz` files keyed by input name. Samples of a model whose
/// inputs have a free batch dimension are stacked into one batch.
fn interop_samples(
    fp32: &Model,
    data: &Path,
    preprocess: Option<qtool_pipeline::calib::Preprocess>,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let exec = qtool_exec::Executor::new(fp32, qtool_exec::ExecOptions::default())
        .context("preparing the FP32 model")?;
    let mut src = qtool_pipeline::calibrate::open_source(fp32, &exec, data, preprocess)
        .with_context(|| format!("opening {}", data.display()))?;
    let g = &fp32.graph;
    let free_batch = g
        .inputs
        .iter()
        .filter(|(v, _)| g.initializer(*v).is_none())
        .all(|(v, _)| {
            g.value(*v)
                .fact
                .shape
                .as_ref()
                .is_some_and(|s| !s.is_empty() && !matches!(s[0], qtool_ir::DimValue::Known(_)))
        });
    let want = if free_batch {
        SAMPLES_FREE_BATCH
    } else {
        SAMPLES_FIXED_BATCH
    };
    let mut samples = Vec::new();
    for i in 0..want {
        match src.get(i).with_context(|| format!("reading sample {i}"))? {
            Some(s) => samples.push(s.inputs),
            None => break,
        }
    }
    if samples.is_empty() {
        bail!("{}: no samples", data.display());
    }
    let batches: Vec<Vec<(String, Tensor)>> = if free_batch && samples.len() > 1 {
        let mut stacked = Vec::new();
        for (j, (name, first)) in samples[0].iter().enumerate() {
            let mut bytes = Vec::new();
            let mut rows = 0;
            for s in &samples {
                let t = &s[j].1;
                if t.shape()[1..] != first.shape()[1..] || t.dtype() != first.dtype() {
                    bail!("input {name}: samples of different shapes cannot be stacked");
                }
                rows += t.shape()[0];
                bytes.extend(t.to_le_bytes().context("a numeric input")?);
            }
            let mut shape = first.shape().to_vec();
            shape[0] = rows;
            stacked.push((
                name.clone(),
                Tensor::from_le_bytes(first.dtype(), &shape, &bytes)?,
            ));
        }
        vec![stacked]
    } else {
        samples
    };
    let mut paths = Vec::new();
    for (k, b) in batches.iter().enumerate() {
        let p = dir.join(format!("input{k}.npz"));
        write_npz(&p, b)?;
        paths.push(p);
    }
    Ok(paths)
}

/// Runs `model` in qtool's executor on the first sample of one input file, keeping the values the
/// per-op check needs (the observer sees each node's outputs; nothing is fused under an
/// observer): every integer tensor, the graph inputs and outputs, and the small tensors (the scale
/// and zero point a DynamicQuantizeLinear computes). Float activations are left out: a deep model
/// at 320x320 has gigabytes of them. Writes `values{i}.npz` (keys `v0`, `v1`, ...),
/// `values{i}.names.json` (the value names in that order) and `values{i}.inputs.npz`; returns
/// the checker's `values` entry.
fn dump_values(model: &Model, input: &Path, dir: &Path, i: usize) -> Result<Value> {
    let exec = qtool_exec::Executor::new(model, qtool_exec::ExecOptions::default())
        .context("preparing the output model in qtool's executor")?;
    let mut inputs = qtool_data::load_npz(input).with_context(|| format!("{}", input.display()))?;
    for (name, t) in &mut inputs {
        if t.shape().first().is_some_and(|n| *n > 1) {
            let mut shape = t.shape().to_vec();
            let bytes = t.to_le_bytes().context("a numeric input")?;
            let row = bytes.len() / shape[0];
            shape[0] = 1;
            *t = Tensor::from_le_bytes(t.dtype(), &shape, &bytes[..row])
                .with_context(|| format!("the first sample of input {name}"))?;
        }
    }
    let g = &model.graph;
    let ends: Vec<&str> = g
        .inputs
        .iter()
        .chain(&g.outputs)
        .map(|(v, _)| g.value_name(*v))
        .collect();
    let mut seen: Vec<(String, Tensor)> = Vec::new();
    exec.run_observed(inputs.clone(), &mut |name, t| {
        let keep = !t.dtype().is_float() || t.len() <= 64 || ends.contains(&name);
        if keep && !seen.iter().any(|(n, _)| n == name) {
            seen.push((name.to_string(), t.clone()));
        }
    })
    .context("running the output model with every value observed")?;
    let names: Vec<String> = seen.iter().map(|(n, _)| n.clone()).collect();
    let keyed: Vec<(String, Tensor)> = seen
        .into_iter()
        .enumerate()
        .map(|(k, (_, t))| (format!("v{k}"), t))
        .collect();
    let values = dir.join(format!("values{i}.npz"));
    let names_path = dir.join(format!("values{i}.names.json"));
    let inputs_path = dir.join(format!("values{i}.inputs.npz"));
    write_npz(&values, &keyed)?;
    write_npz(&inputs_path, &inputs)?;
    std::fs::write(&names_path, serde_json::to_string(&names)?)?;
    Ok(serde_json::json!({"inputs": inputs_path, "values": values, "names": names_path}))
}

/// Applies the tolerances to the checker's measurements; returns (ORT, OpenVINO, per-op check)
/// per output model.
fn judge_interop(
    result: &Value,
    problems: &mut Vec<String>,
) -> Vec<(Agreement, Agreement, Option<Units>)> {
    let mut out = Vec::new();
    for c in result["checks"].as_array().into_iter().flatten() {
        let model = Path::new(c["model"].as_str().unwrap_or("?"))
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if c["checker"].as_str() != Some("ok") {
            problems.push(format!("{model}: onnx checker: {}", c["checker"]));
        }
        if let Some(e) = c["error"].as_str() {
            problems.push(format!("{model}: {e}"));
        }
        if let Some(e) = c["fp32_error"].as_str() {
            problems.push(format!("{model}: running the FP32 model: {e}"));
        }
        let mut pair = Vec::new();
        for (key, label) in [("ort", "ONNX Runtime"), ("openvino", "OpenVINO")] {
            let mut a = Agreement::default();
            let r = &c["runtimes"][key];
            if let Some(e) = r["error"].as_str() {
                match KNOWN_REJECTIONS
                    .iter()
                    .find(|(rt, text, _)| *rt == key && e.contains(text))
                {
                    Some((_, _, why)) => {
                        eprintln!("e2e: {model}: {label} rejects it, a known limitation: {why}");
                        a.known = Some(why);
                    }
                    None => a.problems.push(format!("{label} failed: {e}")),
                }
            }
            a.reference = r["reference"].as_str().map(str::to_string);
            for o in r["outputs"].as_array().into_iter().flatten() {
                judge_output(o, label, &mut a);
            }
            // OpenVINO on DynamicQuantizeMatMul as configured by default: its own quantization of
            // A (e2e_check.py: openvino_float_a) must be no coarser than the model's.
            for d in r["default_config"].as_array().into_iter().flatten() {
                let name = d["name"].as_str().unwrap_or("?");
                let ov = d["openvino_to_float_a"].as_f64().unwrap_or(f64::INFINITY);
                let q = d["qtool_to_float_a"].as_f64().unwrap_or(0.0);
                a.notes.push(format!(
                    "{label} default config, output {name}: rel {ov:.1e} from float A (qtool's int8 A: {q:.1e}), {:.1e} from qtool",
                    d["openvino_to_qtool"].as_f64().unwrap_or(f64::NAN)
                ));
                if ov > q {
                    a.problems.push(format!(
                        "{label} (default config), output {name}: relative L2 {ov:.2e} from the float-A result, more than qtool's per-tensor int8 A ({q:.2e})"
                    ));
                }
            }
            for p in &a.problems {
                problems.push(format!("{model}: {p}"));
            }
            pair.push(a);
        }
        let units = judge_units(c, &model, problems);
        let ov = pair.pop().unwrap_or_default();
        let ort = pair.pop().unwrap_or_default();
        out.push((ort, ov, units));
    }
    out
}

/// One graph output of one runtime: within one step (quantized outputs) or [`MAX_REL_L2`] (float
/// outputs) of qtool's, or else within [`MAX_FRACTION_OF_QUANT_ERROR`] of qtool's quantization error.
fn judge_output(o: &Value, label: &str, a: &mut Agreement) {
    let name = o["name"].as_str().unwrap_or("?");
    if let Some(e) = o["error"].as_str() {
        a.problems.push(format!("{label}, output {name}: {e}"));
        return;
    }
    if o["nonfinite_mismatch"].as_u64().unwrap_or(0) > 0 {
        a.problems
            .push(format!("{label}, output {name}: non-finite values differ"));
    }
    let rel = o["rel_l2"].as_f64().unwrap_or(f64::INFINITY);
    let close = match o["max_lsb"].as_f64() {
        Some(l) => {
            a.max_lsb = Some(a.max_lsb.map_or(l, |m: f64| m.max(l)));
            l <= MAX_LSB + 1e-3
        }
        None => {
            a.max_rel_l2 = Some(a.max_rel_l2.map_or(rel, |m: f64| m.max(rel)));
            rel <= MAX_REL_L2
        }
    };
    if close {
        return;
    }
    match o["quant_rel_l2"].as_f64().filter(|q| *q > 0.0) {
        Some(q) => {
            let f = rel / q;
            a.max_fraction = Some(a.max_fraction.map_or(f, |m: f64| m.max(f)));
            if o["max_lsb"].is_f64() {
                a.max_rel_l2 = Some(a.max_rel_l2.map_or(rel, |m: f64| m.max(rel)));
            }
            // A runtime whose own error against FP32 is no larger than qtool's computes parts of
            // the graph with less rounding (OpenVINO's low-precision transformations): qtool's
            // report is then conservative for it, which is what the bound protects.
            let own = o["runtime_rel_l2_fp32"].as_f64().unwrap_or(f64::INFINITY);
            if f > MAX_FRACTION_OF_QUANT_ERROR && own <= q {
                a.notes.push(format!(
                    "{label}, output {name}: {f:.2}x qtool's quantization error from qtool, but closer to FP32 than qtool (rel {own:.2e} vs {q:.2e}): within the bound"
                ));
            } else if f > MAX_FRACTION_OF_QUANT_ERROR {
                a.problems.push(format!(
                    "{label}, output {name}: relative L2 distance {rel:.2e} from qtool is {f:.2}x qtool's quantization error {q:.2e} (bound {MAX_FRACTION_OF_QUANT_ERROR}x, or no farther from FP32 than qtool: it is {own:.2e}; {:.2} steps max, {:.3}% of elements over one step)",
                    o["max_lsb"].as_f64().unwrap_or(f64::NAN),
                    o["over_1lsb"].as_f64().unwrap_or(0.0) * 100.0
                ));
            }
        }
        None => a.problems.push(format!(
            "{label}, output {name}: {} from qtool (bound {MAX_LSB} step / relative L2 {MAX_REL_L2:.0e}), and no FP32 result to bound it by the quantization error",
            match o["max_lsb"].as_f64() {
                Some(l) => format!("{l:.2} steps"),
                None => format!("relative L2 {rel:.2e}"),
            }
        )),
    }
}

/// The per-op check: every unit within one step (integer or DequantizeLinear output) or
/// [`MAX_REL_L2`] (other float outputs) of qtool's when fed qtool's own inputs.
fn judge_units(c: &Value, model: &str, problems: &mut Vec<String>) -> Option<Units> {
    if let Some(e) = c["units_error"].as_str() {
        problems.push(format!("{model}: per-op check: {e}"));
        return None;
    }
    let rows = c["units"].as_array()?;
    let mut u = Units {
        count: rows.len(),
        ..Units::default()
    };
    for r in rows {
        let output = r["output"].as_str().unwrap_or("?");
        let ops = r["ops"]
            .as_array()
            .map(|o| {
                o.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .unwrap_or_default();
        if let Some(e) = r["error"].as_str() {
            problems.push(format!(
                "{model}: per-op check, unit {output} ({ops}): ONNX Runtime: {e}"
            ));
            continue;
        }
        match r["max_lsb"].as_f64() {
            Some(l) => {
                if l > u.max_lsb || u.worst.is_empty() && l > 0.0 {
                    u.max_lsb = l;
                    u.worst = format!("{output} ({ops})");
                }
                u.max_frac = u.max_frac.max(r["over_0lsb"].as_f64().unwrap_or(0.0));
                if l > MAX_LSB + 1e-3 {
                    problems.push(format!(
                        "{model}: per-op check, unit {output} ({ops}): {l:.2} steps from ONNX Runtime on the same inputs (bound {MAX_LSB})"
                    ));
                }
            }
            None => {
                let rel = r["rel_l2"].as_f64().unwrap_or(f64::INFINITY);
                u.max_rel_l2 = Some(u.max_rel_l2.map_or(rel, |m: f64| m.max(rel)));
                if rel > MAX_REL_L2 {
                    problems.push(format!(
                        "{model}: per-op check, unit {output} ({ops}): relative L2 error {rel:.2e} from ONNX Runtime on the same inputs (bound {MAX_REL_L2:.0e})"
                    ));
                }
            }
        }
    }
    if let Some(full) = c["intermediates"].as_array() {
        u.full_count = full.len();
        for t in full {
            let l = t["max_lsb"].as_f64().unwrap_or(0.0);
            u.full_max_lsb = Some(u.full_max_lsb.map_or(l, |m: f64| m.max(l)));
            if l > MAX_LSB + 1e-3 {
                u.full_over += 1;
            }
        }
    }
    Some(u)
}

/// Loads the report in headless chromium (`--dump-dom` after load) and checks that the rendered
/// DOM has the report's sections and one chart per chart the report's JSON calls for.
fn check_report_in_browser(
    chromium: &Path,
    html: &Path,
    json: Option<&Path>,
    work: &Path,
) -> Result<()> {
    let profile = work.join("chromium-profile");
    std::fs::create_dir_all(&profile)?;
    let abs = std::fs::canonicalize(html).with_context(|| format!("{}", html.display()))?;
    let url = format!("file://{}", abs.display());
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(&url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", chromium.display()))?;
    let mut stdout = child.stdout.take().context("chromium stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if start.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("chromium did not finish within {BROWSER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let dom = reader.join().unwrap_or_default();
    let _ = std::fs::remove_dir_all(&profile);
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        bail!("chromium failed ({status}): {err}");
    }
    std::fs::write(work.join("report.dom.html"), &dom)?;
    let data: Option<Value> = match json {
        Some(j) => Some(serde_json::from_str(&std::fs::read_to_string(j)?)?),
        None => None,
    };
    check_dom(&dom, data.as_ref())
}

/// The start tags of `<svg ...>` elements with class `chart`, as (id, class, inner markup).
fn charts(dom: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(i) = rest.find("<svg") {
        let tail = &rest[i..];
        let Some(end) = tail.find('>') else { break };
        let tag = &tail[..end];
        let attr = |name: &str| -> String {
            let key = format!(" {name}=\"");
            tag.find(&key)
                .map(|p| {
                    let v = &tag[p + key.len()..];
                    v[..v.find('"').unwrap_or(v.len())].to_string()
                })
                .unwrap_or_default()
        };
        let close = tail.find("</svg>").unwrap_or(tail.len());
        let class = attr("class");
        if class.split_whitespace().any(|c| c == "chart") {
            out.push((attr("id"), class, tail[end + 1..close].to_string()));
        }
        rest = &tail[close.max(end + 1).min(tail.len())..];
    }
    out
}

/// The report's rendered DOM: its sections, and charts that hold drawn marks.
fn check_dom(dom: &str, data: Option<&Value>) -> Result<()> {
    let mut missing = Vec::new();
    for id in ["summary", "metrics", "per-layer", "histograms", "skipped"] {
        if !dom.contains(&format!("id=\"{id}\"")) {
            missing.push(format!("section #{id}"));
        }
    }
    let found = charts(dom);
    if found.is_empty() {
        missing.push("any svg.chart".into());
    }
    for (id, class, inner) in &found {
        if id.is_empty() {
            missing.push(format!("an id on a chart of class {class:?}"));
        }
        if !(inner.contains("<rect") || inner.contains("<path") || inner.contains("<line")) {
            missing.push(format!("marks in chart #{id}"));
        }
    }
    let chart = |id: &str| found.iter().find(|(i, _, _)| i == id);
    // The charts the report's data calls for (selectors of docs/report.md).
    if let Some(d) = data {
        for (k, o) in d["outputs"].as_array().into_iter().flatten().enumerate() {
            let has_layers = o["eval"]["layers"]
                .as_array()
                .is_some_and(|l| !l.is_empty());
            if !has_layers {
                continue;
            }
            let id = format!("per-layer-sqnr-{k}");
            match chart(&id) {
                Some((_, class, inner)) => {
                    if !class.contains("per-layer-sqnr") || !inner.contains("class=\"layer\"") {
                        missing.push(format!("bars (g.layer) in svg.chart.per-layer-sqnr#{id}"));
                    }
                }
                None => missing.push(format!("svg.chart.per-layer-sqnr#{id}")),
            }
        }
        for i in 0..d["histograms"].as_array().map_or(0, |h| h.len()) {
            let id = format!("hist-{i}");
            match chart(&id) {
                Some((_, class, inner)) => {
                    for part in ["class=\"bin\"", "range-min", "range-max"] {
                        if !class.contains("histogram") || !inner.contains(part) {
                            missing.push(format!("{part} in svg.chart.histogram#{id}"));
                        }
                    }
                }
                None => missing.push(format!("svg.chart.histogram#{id}")),
            }
        }
    }
    if !missing.is_empty() {
        bail!("the rendered DOM lacks: {}", missing.join(", "));
    }
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.1}%", x * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn print_table(case: &Case, rows: &[Row], head: &str) {
    let rel = case
        .yaml
        .strip_prefix(crate::workspace_root())
        .unwrap_or(&case.yaml);
    println!("\ncase {} ({}): {head}", case.name, rel.display());
    println!(
        "  {:<28} {:<8} {:>10} {:>8} {:>7} {:>8}  {:<22} {:<22}",
        "output", "format", "size", "SQNR dB", "top-1", "accuracy", "ONNX Runtime", "OpenVINO"
    );
    for r in rows {
        println!(
            "  {:<28} {:<8} {:>10} {:>8} {:>7} {:>8}  {:<22} {:<22}",
            r.output,
            r.format,
            format!("{:.1} KiB", r.bytes as f64 / 1024.0),
            r.sqnr.map_or("-".into(), |s| format!("{s:.2}")),
            pct(r.top1),
            pct(r.accuracy),
            r.ort.cell(),
            r.ov.cell()
        );
    }
    for r in rows {
        if let Some(u) = &r.units {
            println!("  per-op vs ONNX Runtime, {}: {}", r.output, u.line());
        }
        for a in [&r.ort, &r.ov] {
            if let Some(why) = &a.reference {
                println!("  {}: compared with {why}", r.output);
            }
            for n in &a.notes {
                println!("  {}: {n}", r.output);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_rounded_to_four_digits() {
        assert_eq!(
            round_floats("init s: f32{3.921569e-3} zp 128 k=1.0 n=-1.234567e10"),
            "init s: f32{3.922e-3} zp 128 k=1.0 n=-1.235e10"
        );
    }

    #[test]
    fn charts_are_found_with_their_ids_and_marks() {
        let dom = r#"<p><svg class="chart per-layer-sqnr" id="layers-0" role="img"><rect x="1"></rect></svg>
            <svg class="icon"></svg><svg id="hist-0" class="chart histogram"><path d="M0"></path></svg></p>"#;
        let c = charts(dom);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].0, "layers-0");
        assert!(c[0].2.contains("<rect"));
        assert_eq!(c[1].0, "hist-0");
        let empty = r#"<section id="summary"></section><svg class="chart histogram" id="h"></svg>"#;
        assert!(check_dom(empty, None).is_err());
    }

    #[test]
    fn outputs_are_judged_by_steps_then_by_the_quantization_error() {
        let judge = |o: Value| {
            let mut a = Agreement::default();
            judge_output(&o, "rt", &mut a);
            a
        };
        // One step: agrees, whatever the quantization error.
        let a = judge(serde_json::json!({"name": "y", "max_lsb": 1.0, "rel_l2": 1e-3}));
        assert!(a.problems.is_empty());
        // More steps, but a small fraction of the quantization error: accumulated ties.
        let ties = serde_json::json!({"name": "y", "max_lsb": 30.0, "rel_l2": 0.01,
            "quant_rel_l2": 0.05, "runtime_rel_l2_fp32": 0.06});
        let a = judge(ties);
        assert!(a.problems.is_empty());
        assert!((a.max_fraction.unwrap() - 0.2).abs() < 1e-9);
        // Half the quantization error and farther from FP32 than qtool: fails.
        let far = serde_json::json!({"name": "y", "max_lsb": 30.0, "rel_l2": 0.025,
            "quant_rel_l2": 0.05, "runtime_rel_l2_fp32": 0.06});
        assert_eq!(judge(far).problems.len(), 1);
        // The same distance from a runtime closer to FP32 than qtool: qtool's report is
        // conservative for it.
        let closer = serde_json::json!({"name": "y", "max_lsb": 30.0, "rel_l2": 0.025,
            "quant_rel_l2": 0.05, "runtime_rel_l2_fp32": 0.03});
        assert!(judge(closer).problems.is_empty());
        // A float output without a step: 1e-4, then the same rule; without an FP32 result: fails.
        let a = judge(serde_json::json!({"name": "y", "rel_l2": 5e-5}));
        assert!(a.problems.is_empty());
        let a = judge(serde_json::json!({"name": "y", "rel_l2": 1e-3}));
        assert_eq!(a.problems.len(), 1);
    }

    #[test]
    fn a_unit_over_one_step_fails_the_per_op_check() {
        let c = serde_json::json!({"units": [
            {"output": "a", "ops": ["DequantizeLinear", "Conv", "QuantizeLinear"],
             "max_lsb": 1.0, "over_0lsb": 0.01},
            {"output": "b", "ops": ["QLinearConv"], "max_lsb": 2.0, "over_0lsb": 0.001},
            {"output": "y", "ops": ["MatMul"], "rel_l2": 1e-7},
        ], "intermediates": [{"name": "a", "max_lsb": 3.0}]});
        let mut problems = Vec::new();
        let u = judge_units(&c, "m.onnx", &mut problems).expect("units");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("unit b (QLinearConv)"));
        assert_eq!(u.count, 3);
        assert_eq!(u.max_lsb, 2.0);
        assert_eq!(u.full_over, 1);
        let mut problems = Vec::new();
        let bad = serde_json::json!({"units": [{"output": "y", "ops": ["Add"], "rel_l2": 1e-3}]});
        judge_units(&bad, "m.onnx", &mut problems);
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn snapshot_stems_are_file_names() {
        assert_eq!(snapshot_stem("models/a b.qdq.onnx"), "models_a_b.qdq");
    }
}
