//! `cargo xtask compare`: qtool's default static QDQ quantization against the best of ONNX Runtime's
//! static QDQ configurations (quantize_static over calibration method x per-channel x activation
//! type), on the digits example and the fetched PP-OCR models, with the same calibration and
//! evaluation data for both tools, every model evaluated in ONNX Runtime, by task metric and output
//! SQNR; qtool's other range methods are extra rows (what the default is chosen from). Prints one
//! table per model and a summary of qtool's methods across models, and writes
//! `target/compare/compare.json` (docs/compare.md). ONNX Runtime's grid is reused from an earlier run
//! when its inputs (model, calibration data, script, venv pins) are byte-identical.

use anyhow::{Context, Result, bail};
use qtool_tensor::Tensor;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Python side: data preparation, ONNX Runtime's quantizer grid, evaluation.
const SCRIPT: &str = "ort_static_configs.py";

/// The models compared, in table order.
const MODELS: &[&str] = &[
    "digits",
    "ppocr_mobile_v2_cls",
    "ppocrv4_rec",
    "ppocrv4_det",
];

/// qtool's range methods, each an extra row next to qtool's default.
const QTOOL_METHODS: &[&str] = &["minmax", "percentile", "entropy", "mse"];

/// Settings variants of the histogram methods (row name, method, the setting that differs from
/// qtool's default), each computed from the same saved statistics: what the defaults of the
/// percentile and the entropy search's bins are chosen from (docs/calibration.md).
const QTOOL_VARIANTS: &[(&str, &str, &str)] = &[
    ("percentile_99.99", "percentile", "percentile: 99.99"),
    ("percentile_99.9999", "percentile", "percentile: 99.9999"),
    ("entropy_bins1024", "entropy", "num_bins: 1024"),
    ("entropy_bins4096", "entropy", "num_bins: 4096"),
    ("entropy_qbins256", "entropy", "num_quantized_bins: 256"),
];

/// One model's data set as the preparation step wrote it.
struct Prepared {
    model: String,
    task: String,
    onnx: PathBuf,
    calib: PathBuf,
    eval: PathBuf,
    labels: Option<PathBuf>,
    info: Value,
}

/// Decodes every sample photo into an RGB uint8 `[H, W, 3]` `.npy` (the Python side has no image
/// decoder) and returns the directory.
fn export_photos(out: &Path) -> Result<PathBuf> {
    let images = crate::models::ensure_images()?;
    let dir = out.join("photos");
    std::fs::create_dir_all(&dir)?;
    let mut names: Vec<PathBuf> = std::fs::read_dir(&images)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "png" || x == "jpg" || x == "jpeg")
        })
        .collect();
    names.sort();
    for p in names {
        let img = image::open(&p)
            .with_context(|| format!("decoding {}", p.display()))?
            .to_rgb8();
        let (w, h) = (img.width() as usize, img.height() as usize);
        let t = Tensor::from_vec(&[h, w, 3], img.into_raw())?;
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("photo");
        let dest = dir.join(format!("{stem}.npy"));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&dest)?);
        qtool_data::npy::write_npy(&t, &mut f)
            .with_context(|| format!("writing {}", dest.display()))?;
    }
    Ok(dir)
}

/// Runs a command and returns its stdout parsed as JSON lines; fails with its stderr otherwise.
fn json_lines(cmd: &mut Command) -> Result<Vec<Value>> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", out.status);
    }
    let text = String::from_utf8(out.stdout).context("non-UTF-8 output")?;
    text.lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l).with_context(|| format!("bad JSON line: {l}")))
        .collect()
}

fn str_field(v: &Value, k: &str) -> Result<String> {
    v.get(k)
        .and_then(Value::as_str)
        .map(str::to_string)
        .with_context(|| format!("missing '{k}' in {v}"))
}

/// Writes a `qtool run` pipeline: only the model, the calibration data and one QDQ output, plus the
/// `calibration:` keys in `calibration` (none: every setting is qtool's default, no method,
/// activation type or per-channel choice). `evaluate` keeps qtool's own evaluation and report
/// (the table's numbers come from ONNX Runtime either way).
fn write_pipeline(
    p: &Prepared,
    dir: &Path,
    calibration: &[String],
    evaluate: bool,
) -> Result<PathBuf> {
    let (comment, calibration) = if calibration.is_empty() {
        ("qtool's defaults".to_string(), String::new())
    } else {
        (
            format!(
                "qtool's defaults except calibration ({})",
                calibration.join(", ")
            ),
            format!("calibration:\n  {}\n", calibration.join("\n  ")),
        )
    };
    let evaluation = if evaluate {
        "evaluation:\n  per_layer: true\nreport:\n  json: report.json\n"
    } else {
        "evaluation:\n  enabled: false\n"
    };
    let yaml = format!(
        "# Written by `cargo xtask compare`: {comment}, nothing tuned per model.\n\
         version: 1\n\
         model: {model}\n\
         output_dir: .\n\
         data:\n  calibration:\n    path: {calib}\n  evaluation:\n    path: {eval}\n\
         {calibration}\
         outputs:\n  - format: qdq\n    path: qtool.qdq.onnx\n\
         {evaluation}",
        model = json!(p.onnx.to_string_lossy()),
        calib = json!(p.calib.to_string_lossy()),
        eval = json!(p.eval.to_string_lossy()),
    );
    let path = dir.join("pipeline.yaml");
    std::fs::write(&path, yaml)?;
    Ok(path)
}

/// One qtool row: its name, its directory under `<model>/qtool/`, its `calibration:` keys.
struct QRun {
    name: String,
    dir: String,
    calibration: Vec<String>,
}

/// qtool's rows: the defaults, each range method (the percentile row also saves its histogram
/// statistics), and the settings variants computed from those statistics (no second model run).
fn qtool_runs_of(work_dir: &Path) -> Vec<QRun> {
    let mut v = vec![QRun {
        name: "qtool_default".into(),
        dir: "default".into(),
        calibration: vec![],
    }];
    for m in QTOOL_METHODS {
        let mut c = vec![format!("method: {m}")];
        if *m == "percentile" {
            c.push("save_stats: calib.stats".into());
        }
        v.push(QRun {
            name: format!("qtool_{m}"),
            dir: m.to_string(),
            calibration: c,
        });
    }
    let stats = work_dir.join("percentile").join("calib.stats");
    for (name, method, key) in QTOOL_VARIANTS {
        v.push(QRun {
            name: format!("qtool_{name}"),
            dir: name.to_string(),
            calibration: vec![
                format!("method: {method}"),
                key.to_string(),
                format!("stats: {}", json!(stats.to_string_lossy())),
            ],
        });
    }
    v
}

/// The gist of an ONNX Runtime error for a table cell: what failed and the final "Error ..." clause
/// (the full text is in the JSON).
fn short_error(err: &str) -> String {
    let head = err.split(':').next().unwrap_or(err).trim();
    let tail = err
        .rfind("Error ")
        .map(|i| err[i..].trim())
        .unwrap_or_else(|| err.trim());
    let mut s = format!("{head}: {tail}");
    if s.chars().count() > 120 {
        s = s.chars().take(117).collect::<String>() + "...";
    }
    s
}

/// A metric cell: a fraction as a percentage, else the number.
fn fmt_metric(key: &str, v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if key.ends_with("edit_distance") => format!("{x:.4}"),
        Some(x) if key.starts_with("sqnr") => format!("{x:.2}"),
        Some(x) => format!("{:.2}%", 100.0 * x),
    }
}

/// The metrics of a task in table order, each with whether higher is better; the first one is the
/// task metric that decides "best".
fn metric_keys(task: &str) -> &'static [(&'static str, bool)] {
    match task {
        "classify" => &[("accuracy", true), ("top1_agreement", true)],
        "direction" => &[("accuracy", true), ("agreement", true)],
        "ctc" => &[("string_agreement", true), ("mean_edit_distance", false)],
        "mask" => &[("mask_iou", true), ("mask_pixel_agreement", true)],
        _ => &[],
    }
}

fn num(v: &Value, k: &str) -> Option<f64> {
    v.get(k).and_then(Value::as_f64)
}

/// Whether `a` is at least as good as `b` by the task metric, then SQNR as the tie-break (a row
/// without a value is worse than one with).
fn better_or_equal(task: &str, a: &Value, b: &Value) -> std::cmp::Ordering {
    let (key, up) = metric_keys(task)[0];
    let cmp = |x: Option<f64>, y: Option<f64>, up: bool| match (x, y) {
        (Some(x), Some(y)) => {
            if up {
                x.total_cmp(&y)
            } else {
                y.total_cmp(&x)
            }
        }
        (Some(_), None) => std::cmp::Ordering::Greater,
        (None, Some(_)) => std::cmp::Ordering::Less,
        (None, None) => std::cmp::Ordering::Equal,
    };
    cmp(num(a, key), num(b, key), up).then(cmp(num(a, "sqnr_db"), num(b, "sqnr_db"), true))
}

/// ONNX Runtime's grid for one model: reused from `ort/grid.json` when the model, the calibration
/// data, the script and the venv's pins are byte-identical to the run that wrote it (and every model
/// it lists still exists), else run (slow: minutes per model) and saved.
fn ort_grid(python: &Path, p: &Prepared, ort_dir: &Path) -> Result<Vec<Value>> {
    let mut key = String::new();
    for f in [
        p.onnx.clone(),
        p.calib.clone(),
        crate::py::scripts_dir().join(SCRIPT),
        crate::py::requirements_file(),
    ] {
        let bytes = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
        key.push_str(&crate::py::sha256_hex(&bytes));
    }
    let key = crate::py::sha256_hex(key.as_bytes());
    let cache = ort_dir.join("grid.json");
    if let Ok(text) = std::fs::read_to_string(&cache)
        && let Ok(v) = serde_json::from_str::<Value>(&text)
        && v.get("key").and_then(Value::as_str) == Some(key.as_str())
        && let Some(configs) = v.get("configs").and_then(Value::as_array)
        && configs.iter().all(|c| {
            c.get("ok").and_then(Value::as_bool) != Some(true)
                || c.get("path")
                    .and_then(Value::as_str)
                    .is_some_and(|p| Path::new(p).is_file())
        })
    {
        eprintln!(
            "compare: {}: reusing ONNX Runtime's configurations from {} (same model, data, script and pins)",
            p.model,
            cache.display()
        );
        return Ok(configs.clone());
    }
    eprintln!("compare: {}: ONNX Runtime's static configurations", p.model);
    // quant_pre_process writes a temporary `sym_shape_infer_temp.onnx` into its working
    // directory: keep it under target/compare, not in the checkout.
    let configs = json_lines(
        crate::py::script_command(python, SCRIPT)
            .current_dir(ort_dir)
            .arg("quantize")
            .arg("--model")
            .arg(&p.onnx)
            .arg("--calib")
            .arg(&p.calib)
            .arg("--out-dir")
            .arg(ort_dir),
    )?;
    std::fs::write(
        &cache,
        serde_json::to_string_pretty(&json!({ "key": key, "configs": configs }))? + "\n",
    )?;
    Ok(configs)
}

/// Whether row `r` is >= `best` by the task metric, and >= the best SQNR over `ort_rows`.
fn verdict_of(task: &str, r: &Value, best: Option<&Value>, ort_rows: &[&Value]) -> (bool, bool) {
    let (key, up) = metric_keys(task)[0];
    match best {
        None => (true, true),
        Some(b) => {
            let m = match (num(r, key), num(b, key)) {
                (Some(x), Some(y)) => {
                    if up {
                        x >= y
                    } else {
                        x <= y
                    }
                }
                _ => false,
            };
            let best_sqnr = ort_rows
                .iter()
                .filter_map(|r| num(r, "sqnr_db"))
                .fold(f64::NEG_INFINITY, f64::max);
            (m, num(r, "sqnr_db").is_some_and(|s| s >= best_sqnr))
        }
    }
}

/// Compares one model: ORT's grid, qtool's default and each of qtool's range methods, evaluation;
/// prints its table and returns its JSON.
fn compare_model(python: &Path, qtool: &Path, p: &Prepared, work: &Path) -> Result<Value> {
    let dir = work.join(&p.model);
    std::fs::create_dir_all(&dir)?;
    let ort_dir = dir.join("ort");
    std::fs::create_dir_all(&ort_dir)?;
    let configs = ort_grid(python, p, &ort_dir)?;

    // qtool: the defaults, then each range method with every other setting default.
    let mut qtool_runs: Vec<(String, PathBuf, PathBuf)> = Vec::new();
    let qroot = dir.join("qtool");
    for r in qtool_runs_of(&qroot) {
        eprintln!("compare: {}: qtool run ({})", p.model, r.name);
        let qdir = qroot.join(&r.dir);
        std::fs::create_dir_all(&qdir)?;
        let yaml = write_pipeline(p, &qdir, &r.calibration, r.name == "qtool_default")?;
        crate::py::run(Command::new(qtool).arg("run").arg(&yaml).arg("--quiet"))
            .with_context(|| format!("qtool run {}", yaml.display()))?;
        qtool_runs.push((r.name, qdir.join("qtool.qdq.onnx"), yaml));
    }
    let qtool_model = qtool_runs[0].1.clone();
    // Which method the default's model is byte for byte (the table says so).
    let default_bytes = std::fs::read(&qtool_model)?;
    let mut same_as_default = Vec::new();
    for (name, path, _) in &qtool_runs[1..] {
        if std::fs::read(path)? == default_bytes {
            same_as_default.push(name.clone());
        }
    }

    // Candidates: FP32, every ORT configuration that loads, qtool's default and methods.
    let mut eval = crate::py::script_command(python, SCRIPT);
    eval.arg("evaluate")
        .arg("--task")
        .arg(&p.task)
        .arg("--fp32")
        .arg(&p.onnx)
        .arg("--eval")
        .arg(&p.eval);
    if let Some(l) = &p.labels {
        eval.arg("--labels").arg(l);
    }
    eval.arg("--candidate")
        .arg(format!("fp32={}", p.onnx.display()));
    for c in &configs {
        if c.get("ok").and_then(Value::as_bool) == Some(true) {
            eval.arg("--candidate").arg(format!(
                "{}={}",
                str_field(c, "config")?,
                str_field(c, "path")?
            ));
        }
    }
    for (name, path, _) in &qtool_runs {
        eval.arg("--candidate")
            .arg(format!("{name}={}", path.display()));
    }
    eprintln!("compare: {}: evaluating in ONNX Runtime", p.model);
    let rows = json_lines(&mut eval)?;
    let row_of = |name: &str| {
        rows.iter()
            .find(|r| r.get("candidate").and_then(Value::as_str) == Some(name))
    };

    let ort_rows: Vec<&Value> = rows
        .iter()
        .filter(|r| {
            r.get("candidate")
                .and_then(Value::as_str)
                .is_some_and(|c| c.starts_with("ort_"))
        })
        .collect();
    let best = ort_rows
        .iter()
        .copied()
        .max_by(|a, b| better_or_equal(&p.task, a, b));
    let best_name = best
        .and_then(|b| b.get("candidate"))
        .and_then(Value::as_str);
    let q = row_of("qtool_default").context("no qtool row")?;
    let (key, _) = metric_keys(&p.task)[0];
    let (metric_ok, sqnr_ok) = verdict_of(&p.task, q, best, &ort_rows);
    let verdict_text = |(m, s): (bool, bool)| {
        format!(
            "{} by {key}, {} by SQNR",
            if m { ">= best ORT" } else { "< best ORT" },
            if s { ">= best ORT" } else { "< best ORT" },
        )
    };

    // The table.
    let keys = metric_keys(&p.task);
    let mut t = String::new();
    writeln!(
        t,
        "\n{} ({}; {} calibration / {} evaluation samples)",
        p.model,
        p.task,
        p.info.get("calib_samples").unwrap_or(&Value::Null),
        p.info.get("eval_samples").unwrap_or(&Value::Null),
    )?;
    let mut header = format!("{:<34}", "config");
    for (k, _) in keys {
        write!(header, " {k:>20}")?;
    }
    write!(header, " {:>10}  note", "SQNR dB")?;
    writeln!(t, "{header}")?;
    writeln!(t, "{}", "-".repeat(header.len() + 8))?;
    let line = |t: &mut String, name: &str, r: &Value, note: &str| -> Result<()> {
        write!(t, "{name:<34}")?;
        for (k, _) in keys {
            write!(t, " {:>20}", fmt_metric(k, num(r, k)))?;
        }
        writeln!(t, " {:>10}  {note}", fmt_metric("sqnr", num(r, "sqnr_db")))?;
        Ok(())
    };
    if let Some(r) = row_of("fp32") {
        line(&mut t, "fp32", r, "reference")?;
    }
    for c in &configs {
        let name = str_field(c, "config")?;
        let mut note = String::new();
        if c.get("ort_default").and_then(Value::as_bool) == Some(true) {
            note.push_str("ORT defaults ");
        }
        if Some(name.as_str()) == best_name {
            note.push_str("<- best ORT");
        }
        match row_of(&name) {
            Some(r) if c.get("ok").and_then(Value::as_bool) == Some(true) => {
                line(&mut t, &name, r, note.trim())?
            }
            _ => {
                let err = c.get("error").and_then(Value::as_str).unwrap_or("failed");
                writeln!(t, "{name:<34} FAILED: {}", short_error(err))?;
            }
        }
    }
    if let Some(note) = configs
        .iter()
        .find_map(|c| c.get("preprocess_error").and_then(Value::as_str))
    {
        writeln!(t, "{:<34} note: {note}", "")?;
    }
    let mut methods_json = Vec::new();
    for (name, path, yaml) in &qtool_runs[1..] {
        let r = row_of(name).with_context(|| format!("no {name} row"))?;
        let v = verdict_of(&p.task, r, best, &ort_rows);
        let mut note = verdict_text(v);
        if same_as_default.contains(name) {
            note.push_str("; same model as qtool_default");
        }
        line(&mut t, name, r, &note)?;
        methods_json.push(json!({
            "method": name.trim_start_matches("qtool_"),
            "name": name,
            "model": path,
            "pipeline": yaml,
            "same_model_as_default": same_as_default.contains(name),
            "ge_best_ort_metric": v.0,
            "ge_best_ort_sqnr": v.1,
        }));
    }
    line(
        &mut t,
        "qtool_default",
        q,
        &verdict_text((metric_ok, sqnr_ok)),
    )?;
    print!("{t}");

    Ok(json!({
        "model": p.model,
        "task": p.task,
        "data": p.info,
        "configs": configs,
        "rows": rows,
        "best_ort": best_name,
        "qtool_model": qtool_model,
        "qtool_pipeline": qtool_runs[0].2,
        "qtool_default_same_model_as": same_as_default,
        "qtool_methods": methods_json,
        "qtool_ge_best_ort_metric": metric_ok,
        "qtool_ge_best_ort_sqnr": sqnr_ok,
    }))
}

/// The summary across models: for each of qtool's methods (and the default), its task metric and
/// SQNR on every model, each as the difference to the best ORT configuration.
fn print_method_summary(results: &[Value]) -> Result<()> {
    let mut t = String::new();
    writeln!(
        t,
        "\nqtool's range methods across models (task metric, SQNR dB; difference to the best ORT configuration)"
    )?;
    write!(t, "{:<20}", "method")?;
    for r in results {
        write!(t, " {:>30}", r["model"].as_str().unwrap_or("?"))?;
    }
    writeln!(t, " {:>8}", ">= all")?;
    let names: Vec<String> = qtool_runs_of(Path::new("."))
        .into_iter()
        .map(|r| r.name)
        .collect();
    for name in &names {
        let m = name.trim_start_matches("qtool_");
        write!(t, "{m:<20}")?;
        let mut all = true;
        for r in results {
            let task = r["task"].as_str().unwrap_or("");
            let (key, up) = metric_keys(task)[0];
            let rows = r["rows"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let find = |n: &str| {
                rows.iter()
                    .find(|x| x.get("candidate").and_then(Value::as_str) == Some(n))
            };
            let best = r["best_ort"].as_str().and_then(find);
            let ort_rows: Vec<&Value> = rows
                .iter()
                .filter(|x| {
                    x.get("candidate")
                        .and_then(Value::as_str)
                        .is_some_and(|c| c.starts_with("ort_"))
                })
                .collect();
            let best_sqnr = ort_rows
                .iter()
                .filter_map(|x| num(x, "sqnr_db"))
                .fold(f64::NEG_INFINITY, f64::max);
            let cell = match find(name) {
                Some(x) => {
                    let (mo, so) = verdict_of(task, x, best, &ort_rows);
                    all &= mo && so;
                    let mv = num(x, key);
                    let dm = match (mv, best.and_then(|b| num(b, key))) {
                        (Some(a), Some(b)) if up => format!("{:+.2}", 100.0 * (a - b)),
                        (Some(a), Some(b)) => format!("{:+.4}", a - b),
                        _ => "-".into(),
                    };
                    let ds = num(x, "sqnr_db")
                        .map(|s| format!("{:+.2}", s - best_sqnr))
                        .unwrap_or_else(|| "-".into());
                    format!(
                        "{} ({dm}) {} ({ds})",
                        fmt_metric(key, mv),
                        fmt_metric("sqnr", num(x, "sqnr_db"))
                    )
                }
                None => "-".into(),
            };
            write!(t, " {cell:>30}")?;
        }
        writeln!(t, " {:>8}", if all { "yes" } else { "no" })?;
    }
    print!("{t}");
    Ok(())
}

/// The tables of docs/compare.md, from the results (written to `target/compare/compare.md`).
fn markdown(results: &[Value]) -> Result<String> {
    let mut t = String::new();
    for r in results {
        let task = r["task"].as_str().unwrap_or("");
        let keys = metric_keys(task);
        let rows = r["rows"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let find = |n: &str| {
            rows.iter()
                .find(|x| x.get("candidate").and_then(Value::as_str) == Some(n))
        };
        let best = r["best_ort"].as_str();
        writeln!(
            t,
            "### {} ({} calibration / {} evaluation samples)\n",
            r["model"].as_str().unwrap_or("?"),
            r["data"]["calib_samples"],
            r["data"]["eval_samples"]
        )?;
        write!(t, "| config |")?;
        for (k, _) in keys {
            write!(t, " {k} |")?;
        }
        writeln!(t, " SQNR dB | note |")?;
        writeln!(t, "|---|{}---|---|", "---|".repeat(keys.len()))?;
        let line = |t: &mut String, name: &str, x: &Value, note: &str| -> Result<()> {
            write!(t, "| {name} |")?;
            for (k, _) in keys {
                write!(t, " {} |", fmt_metric(k, num(x, k)))?;
            }
            writeln!(t, " {} | {note} |", fmt_metric("sqnr", num(x, "sqnr_db")))?;
            Ok(())
        };
        if let Some(x) = find("fp32") {
            line(&mut t, "FP32", x, "reference")?;
        }
        for c in r["configs"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let name = str_field(c, "config")?;
            let mut note = Vec::new();
            if c.get("ort_default").and_then(Value::as_bool) == Some(true) {
                note.push("ORT defaults".to_string());
            }
            if Some(name.as_str()) == best {
                note.push("**best ORT**".into());
            }
            match find(&name) {
                Some(x) if c.get("ok").and_then(Value::as_bool) == Some(true) => {
                    line(&mut t, &name, x, &note.join(", "))?
                }
                _ => {
                    let err = c.get("error").and_then(Value::as_str).unwrap_or("failed");
                    write!(t, "| {name} |")?;
                    for _ in keys {
                        write!(t, " fails |")?;
                    }
                    writeln!(t, " - | {} |", short_error(err).replace('|', "/"))?;
                }
            }
        }
        let verdict = |m: bool, s: bool| {
            format!(
                "{} best ORT by {}, {} best ORT by SQNR",
                if m { "≥" } else { "**<**" },
                keys[0].0,
                if s { "≥" } else { "**<**" }
            )
        };
        for m in r["qtool_methods"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let name = format!("qtool_{}", m["method"].as_str().unwrap_or("?"));
            if let Some(x) = find(&name) {
                let mut note = verdict(
                    m["ge_best_ort_metric"] == Value::Bool(true),
                    m["ge_best_ort_sqnr"] == Value::Bool(true),
                );
                if m["same_model_as_default"] == Value::Bool(true) {
                    note.push_str("; same model as the default");
                }
                line(&mut t, &name, x, &note)?;
            }
        }
        if let Some(x) = find("qtool_default") {
            line(
                &mut t,
                "**qtool default**",
                x,
                &verdict(
                    r["qtool_ge_best_ort_metric"] == Value::Bool(true),
                    r["qtool_ge_best_ort_sqnr"] == Value::Bool(true),
                ),
            )?;
        }
        if let Some(note) = r["configs"].as_array().and_then(|c| {
            c.iter()
                .find_map(|c| c.get("preprocess_error").and_then(Value::as_str))
        }) {
            writeln!(t, "\nORT preprocessing: {note}")?;
        }
        writeln!(t)?;
    }
    Ok(t)
}

/// `cargo xtask compare [--filter MODEL]`.
pub fn compare_task(filter: Option<&str>) -> Result<()> {
    let root = crate::workspace_root();
    let python = crate::py::ensure_venv()?;
    let models = crate::models::ensure_models()?;
    let work = crate::e2e::target_dir(&root).join("compare");
    std::fs::create_dir_all(&work)?;
    let photos = export_photos(&work)?;
    let qtool = crate::e2e::build_qtool(&root)?;

    let chosen: Vec<&str> = MODELS
        .iter()
        .copied()
        .filter(|m| filter.is_none_or(|f| m.contains(f)))
        .collect();
    if chosen.is_empty() {
        bail!(
            "no model matches the filter (models: {})",
            MODELS.join(", ")
        );
    }
    eprintln!("compare: preparing the calibration and evaluation sets");
    let prepared = json_lines(
        crate::py::script_command(&python, SCRIPT)
            .arg("prepare")
            .arg("--photos")
            .arg(&photos)
            .arg("--models")
            .arg(&models)
            .arg("--digits")
            .arg(root.join("examples").join("digits"))
            .arg("--out")
            .arg(work.join("data"))
            .arg("--only")
            .arg(chosen.join(",")),
    )?;
    let mut prepared = prepared;
    prepared.sort_by_key(|p| {
        let m = p.get("model").and_then(Value::as_str).unwrap_or("");
        MODELS.iter().position(|x| *x == m)
    });
    let mut results = Vec::new();
    for info in prepared {
        let p = Prepared {
            model: str_field(&info, "model")?,
            task: str_field(&info, "task")?,
            onnx: str_field(&info, "onnx")?.into(),
            calib: str_field(&info, "calib")?.into(),
            eval: str_field(&info, "eval")?.into(),
            labels: info
                .get("labels")
                .and_then(Value::as_str)
                .map(PathBuf::from),
            info: info.clone(),
        };
        results.push(compare_model(&python, &qtool, &p, &work)?);
    }
    let losses: Vec<String> = results
        .iter()
        .filter(|r| {
            r["qtool_ge_best_ort_metric"] != Value::Bool(true)
                || r["qtool_ge_best_ort_sqnr"] != Value::Bool(true)
        })
        .map(|r| r["model"].as_str().unwrap_or("?").to_string())
        .collect();
    print_method_summary(&results)?;
    let out = work.join("compare.json");
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&json!({ "models": results }))? + "\n",
    )?;
    println!();
    if losses.is_empty() {
        println!("qtool's default >= the best ONNX Runtime static configuration on every model");
    } else {
        println!(
            "qtool's default is below the best ONNX Runtime configuration on: {}",
            losses.join(", ")
        );
    }
    let md = work.join("compare.md");
    std::fs::write(&md, markdown(&results)?)?;
    println!("written: {} and {}", out.display(), md.display());
    Ok(())
}
