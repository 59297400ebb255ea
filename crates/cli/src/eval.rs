//! `qtool eval`: the command-line front end of `qtool_pipeline::eval` (arguments, progress bar, the
//! printed table, and the optional JSON and HTML outputs).

use anyhow::{Context, Result, bail};
use qtool_pipeline::eval::{EvalReport, EvalSettings, evaluate_files};
use qtool_pipeline::report::{OutputSummary, ReportData, write_report};
use std::path::{Path, PathBuf};

/// Arguments of `qtool eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The reference model (usually the FP32 original).
    pub reference: PathBuf,
    /// The candidate model (quantized in any format: qdq, qlinear, integer, dynamic; or any model
    /// with the same inputs and outputs).
    pub candidate: PathBuf,
    /// Evaluation data: an .npy file (first axis = samples), an .npz (keys = input names), a
    /// directory of .npy files, ONNX test-data directories (test_data_set_*/input_N.pb), or a
    /// folder of PNG/JPEG images (resized to the model's static input size, scaled to [0, 1]).
    #[arg(long)]
    pub data: PathBuf,
    /// Class labels: an .npy of integer class ids, one per sample row ([N] or [N, 1]). Gives the
    /// accuracy of both models on every classifier-like output ([N, C] with C > 1).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Use only the first N samples of the data.
    #[arg(long)]
    pub samples: Option<usize>,
    /// Write the full evaluation (schema qtool.eval/1, see docs/report.md) as JSON to this file.
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report to this file (and the JSON it is built from next to it,
    /// same name with .json, or .report.json when that is the --json file).
    #[arg(long, value_name = "OUT")]
    pub html: Option<PathBuf>,
    /// Compare the graph outputs only (skip the per-layer comparison: faster, less memory).
    #[arg(long)]
    pub outputs_only: bool,
    /// How many of the worst layers to print (all of them are in the JSON and the HTML).
    #[arg(long, default_value_t = 10)]
    pub worst: usize,
    /// Worker threads of each model's executor (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || (a.exists() && std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok())
}

/// Formats a number for the table: fixed decimals, `inf` for identical values.
fn num(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else if x.is_nan() {
        "nan".into()
    } else if x > 0.0 {
        "inf".into()
    } else {
        "-inf".into()
    }
}

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{:.2}%", v * 100.0))
        .unwrap_or_else(|| "-".into())
}

/// The readable summary printed on stdout.
pub fn table(r: &EvalReport, worst: usize) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    // Column widths follow the longest name.
    let ow = r
        .outputs
        .iter()
        .map(|o| o.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(24);
    let tw = r
        .worst_layers(worst)
        .iter()
        .map(|l| l.tensor.chars().count())
        .max()
        .unwrap_or(0)
        .max(30);
    let _ = writeln!(
        s,
        "{} ({}) vs {} on {} samples of {}",
        r.candidate, r.candidate_format, r.reference, r.samples, r.data
    );
    let _ = writeln!(
        s,
        "  {:<ow$} {:>9} {:>10} {:>11} {:>11} {:>8} {:>8} {:>9} {:>9}",
        "output",
        "SQNR dB",
        "cosine",
        "max |err|",
        "mean |err|",
        "top-1",
        "top-5",
        "acc ref",
        "acc cand"
    );
    for o in &r.outputs {
        let c = o.classifier.as_ref();
        let _ = writeln!(
            s,
            "  {:<ow$} {:>9} {:>10} {:>11.4e} {:>11.4e} {:>8} {:>8} {:>9} {:>9}",
            o.name,
            num(o.error.sqnr_db, 2),
            num(o.error.cosine, 6),
            o.error.max_abs_err,
            o.error.mean_abs_err,
            pct(c.map(|c| c.top1_agreement)),
            pct(c.and_then(|c| c.top5_agreement)),
            pct(c.and_then(|c| c.accuracy_reference)),
            pct(c.and_then(|c| c.accuracy_candidate)),
        );
        if o.error.non_finite > 0 {
            let _ = writeln!(
                s,
                "  warning: {} element pairs of '{}' were NaN or infinite (left out)",
                o.error.non_finite, o.name
            );
        }
    }
    if !r.layers.is_empty() && worst > 0 {
        let shown = r.worst_layers(worst);
        let _ = writeln!(
            s,
            "\n{} worst of {} layers (SQNR of the candidate's dequantized value against FP32):",
            shown.len(),
            r.layers.len()
        );
        let _ = writeln!(
            s,
            "  {:<tw$} {:>9} {:>10} {:>11}  compared with",
            "tensor", "SQNR dB", "cosine", "max |err|"
        );
        for l in shown {
            let kind = match l.kind {
                qtool_pipeline::eval::CounterpartKind::Dequantized => "",
                qtool_pipeline::eval::CounterpartKind::Integer => " (integer)",
                qtool_pipeline::eval::CounterpartKind::Float => " (float)",
            };
            let _ = writeln!(
                s,
                "  {:<tw$} {:>9} {:>10} {:>11.4e}  {}{kind}",
                l.tensor,
                num(l.error.sqnr_db, 2),
                num(l.error.cosine, 6),
                l.error.max_abs_err,
                l.counterpart
            );
        }
    }
    if !r.skipped_layers.is_empty() {
        let _ = writeln!(
            s,
            "\n{} matched tensors could not be compared (see the JSON)",
            r.skipped_layers.len()
        );
    }
    s
}

/// Runs `qtool eval`.
pub fn run(a: EvalArgs) -> Result<()> {
    for out in [&a.json, &a.html].into_iter().flatten() {
        if same_file(out, &a.reference) || same_file(out, &a.candidate) {
            bail!(
                "refusing to overwrite the model {} with a report",
                out.display()
            );
        }
    }
    let settings = EvalSettings {
        samples: a.samples,
        threads: a.threads,
        labels: a.labels.clone(),
        preprocess: None,
        outputs_only: a.outputs_only,
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "evaluating {bar:30} {pos}/{len} samples {elapsed}",
        )
        .expect("valid template"),
    );
    let report = evaluate_files(
        &a.reference,
        &a.candidate,
        &a.data,
        &settings,
        &mut |done, total| {
            if let Some(t) = total {
                bar.set_length(t as u64);
            }
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    print!("{}", table(&report, a.worst));
    if let Some(j) = &a.json {
        qtool_pipeline::write_atomic(j, report.to_json().as_bytes())
            .with_context(|| format!("cannot write {}", j.display()))?;
        eprintln!("evaluation written to {}", j.display());
    }
    if let Some(h) = &a.html {
        let mut data_json = h.with_extension("json");
        if a.json.as_deref().is_some_and(|j| same_file(j, &data_json)) || same_file(h, &data_json) {
            data_json = h.with_extension("report.json");
        }
        let data = ReportData {
            title: format!(
                "qtool eval: {}",
                a.candidate
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            model: a.reference.display().to_string(),
            qtool_version: env!("CARGO_PKG_VERSION").to_string(),
            outputs: vec![OutputSummary {
                name: a
                    .candidate
                    .file_stem()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "candidate".into()),
                format: report.candidate_format.clone(),
                path: a.candidate.display().to_string(),
                eval: Some(report),
                ..OutputSummary::default()
            }],
            ..ReportData::default()
        };
        write_report(&data, h, &data_json)?;
        eprintln!(
            "report written to {} (data: {})",
            h.display(),
            data_json.display()
        );
    }
    Ok(())
}
