//! `cargo xtask compare`: qtool's default static QDQ quantization against the best of ONNX Runtime's
//! static QDQ configurations (quantize_static over calibration method x per-channel x activation
//! type), on the digits example and the fetched PP-OCR models, with the same calibration and
//! evaluation data for both tools, every model evaluated in ONNX Runtime, by task metric and output
//! SQNR. Prints one table per model and writes `target/compare/compare.json` (docs/compare.md).

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

/// Writes the `qtool run` pipeline that uses qtool's defaults: only the model, the calibration data
/// and one QDQ output (no method, activation type or per-channel choice: all defaults).
fn write_pipeline(p: &Prepared, dir: &Path) -> Result<PathBuf> {
    let yaml = format!(
        "# Written by `cargo xtask compare`: qtool's defaults, nothing tuned per model.\n\
         version: 1\n\
         model: {model}\n\
         output_dir: .\n\
         data:\n  calibration:\n    path: {calib}\n  evaluation:\n    path: {eval}\n\
         outputs:\n  - format: qdq\n    path: qtool.qdq.onnx\n\
         evaluation:\n  per_layer: true\n\
         report:\n  json: report.json\n",
        model = json!(p.onnx.to_string_lossy()),
        calib = json!(p.calib.to_string_lossy()),
        eval = json!(p.eval.to_string_lossy()),
    );
    let path = dir.join("pipeline.yaml");
    std::fs::write(&path, yaml)?;
    Ok(path)
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

/// Compares one model: ORT's grid, qtool's default, evaluation; prints its table and returns its JSON.
fn compare_model(python: &Path, qtool: &Path, p: &Prepared, work: &Path) -> Result<Value> {
    let dir = work.join(&p.model);
    std::fs::create_dir_all(&dir)?;
    eprintln!("compare: {}: ONNX Runtime's static configurations", p.model);
    // quant_pre_process writes a temporary `sym_shape_infer_temp.onnx` into its working
    // directory: keep it under target/compare, not in the checkout.
    let ort_dir = dir.join("ort");
    std::fs::create_dir_all(&ort_dir)?;
    let configs = json_lines(
        crate::py::script_command(python, SCRIPT)
            .current_dir(&ort_dir)
            .arg("quantize")
            .arg("--model")
            .arg(&p.onnx)
            .arg("--calib")
            .arg(&p.calib)
            .arg("--out-dir")
            .arg(dir.join("ort")),
    )?;

    eprintln!("compare: {}: qtool run (defaults)", p.model);
    let qdir = dir.join("qtool");
    std::fs::create_dir_all(&qdir)?;
    let yaml = write_pipeline(p, &qdir)?;
    crate::py::run(Command::new(qtool).arg("run").arg(&yaml).arg("--quiet"))
        .context("qtool run")?;
    let qtool_model = qdir.join("qtool.qdq.onnx");

    // Candidates: FP32, every ORT configuration that loads, qtool's default.
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
    eval.arg("--candidate")
        .arg(format!("qtool_default={}", qtool_model.display()));
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
    let (key, up) = metric_keys(&p.task)[0];
    let (metric_ok, sqnr_ok) = match best {
        None => (true, true),
        Some(b) => {
            let m = match (num(q, key), num(b, key)) {
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
            (m, num(q, "sqnr_db").is_some_and(|s| s >= best_sqnr))
        }
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
    let verdict = format!(
        "{} by {key}, {} by SQNR",
        if metric_ok {
            ">= best ORT"
        } else {
            "< best ORT"
        },
        if sqnr_ok { ">= best ORT" } else { "< best ORT" },
    );
    line(&mut t, "qtool_default", q, &verdict)?;
    print!("{t}");

    Ok(json!({
        "model": p.model,
        "task": p.task,
        "data": p.info,
        "configs": configs,
        "rows": rows,
        "best_ort": best_name,
        "qtool_model": qtool_model,
        "qtool_pipeline": yaml,
        "qtool_ge_best_ort_metric": metric_ok,
        "qtool_ge_best_ort_sqnr": sqnr_ok,
    }))
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
    println!("written: {}", out.display());
    Ok(())
}
