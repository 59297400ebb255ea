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
const SAMPLES_FIXED_BATCH: usize = 4;
/// Samples stacked into one batch when the model's batch dimension is free.
const SAMPLES_FREE_BATCH: usize = 64;
/// A quantized output (an integer tensor, or a float one made by a DequantizeLinear) may differ
/// from qtool's by at most this many quantization steps in every element.
const MAX_LSB: f64 = 1.0;
/// A float output that is not produced by a DequantizeLinear (e.g. the float rescale of the integer
/// format, or an excluded float tail) may differ from qtool's by at most this relative L2 error.
const MAX_REL_L2: f64 = 1e-4;
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
    /// Largest relative L2 error over the float outputs that have no step.
    max_rel_l2: Option<f64>,
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
        checks.push(serde_json::json!({"model": o.path, "samples": entries}));
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
        let (ort, ov) = agreements.get(i).cloned().unwrap_or_default();
        rows.push(Row {
            output: o.display.clone(),
            format: o.format.clone(),
            bytes: std::fs::metadata(&o.path).map(|m| m.len()).unwrap_or(0),
            sqnr: m["sqnr_db"].as_f64(),
            top1: m["top1_agreement"].as_f64(),
            accuracy: m["accuracy"].as_f64(),
            ort,
            ov,
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

/// Applies the tolerances to the checker's measurements; returns (ORT, OpenVINO) per output model.
fn judge_interop(result: &Value, problems: &mut Vec<String>) -> Vec<(Agreement, Agreement)> {
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
            for o in r["outputs"].as_array().into_iter().flatten() {
                let name = o["name"].as_str().unwrap_or("?");
                if let Some(e) = o["error"].as_str() {
                    a.problems.push(format!("{label}, output {name}: {e}"));
                    continue;
                }
                if o["nonfinite_mismatch"].as_u64().unwrap_or(0) > 0 {
                    a.problems
                        .push(format!("{label}, output {name}: non-finite values differ"));
                }
                if let Some(l) = o["max_lsb"].as_f64() {
                    a.max_lsb = Some(a.max_lsb.map_or(l, |m: f64| m.max(l)));
                    if l > MAX_LSB + 1e-3 {
                        a.problems.push(format!(
                            "{label}, output {name}: {l:.2} steps from qtool (bound {MAX_LSB}; {:.3}% of elements over one step)",
                            o["over_1lsb"].as_f64().unwrap_or(0.0) * 100.0
                        ));
                    }
                } else {
                    let r = o["rel_l2"].as_f64().unwrap_or(f64::INFINITY);
                    a.max_rel_l2 = Some(a.max_rel_l2.map_or(r, |m: f64| m.max(r)));
                    if r > MAX_REL_L2 {
                        a.problems.push(format!(
                            "{label}, output {name}: relative L2 error {r:.2e} from qtool (bound {MAX_REL_L2:.0e}; max |diff| {})",
                            o["max_abs"]
                        ));
                    }
                }
            }
            for p in &a.problems {
                problems.push(format!("{model}: {p}"));
            }
            pair.push(a);
        }
        let ov = pair.pop().unwrap_or_default();
        let ort = pair.pop().unwrap_or_default();
        out.push((ort, ov));
    }
    out
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
    fn snapshot_stems_are_file_names() {
        assert_eq!(snapshot_stem("models/a b.qdq.onnx"), "models_a_b.qdq");
    }
}
