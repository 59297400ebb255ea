//! `qtool run PIPELINE.yaml`: loads the pipeline file, runs it with progress bars for calibration and
//! evaluation (unless quiet), and prints the summary table and where everything was written.

use anyhow::Result;
use qtool_pipeline::config::{self, LoadOptions};
use qtool_pipeline::run::{self as pipeline_run, RunOptions, Stage};
use std::path::PathBuf;

/// Arguments of `qtool run`.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Run a quantization pipeline described by a YAML file (docs/pipeline.md): load the FP32 \
model, run the preprocessing passes, calibrate ONCE on the calibration data (or reuse a statistics file), \
write every requested output (qdq, qlinear, integer, dynamic) from the same ranges, evaluate each against \
FP32 (SQNR per output, top-1 agreement, accuracy with labels, per-layer SQNR), and write the HTML/JSON \
report and a manifest (sha256 of the model, data, config and outputs; every parameter with its default).\n\n\
Relative input paths resolve against the YAML file's directory, output paths against `output_dir`. \
Outputs are written atomically and never over an input. The same file run twice gives byte-identical \
models, report and manifest (apart from the manifest's `timing` section).\n\n\
Errors in the file name the line, column and key, e.g.\n  \
pipeline.yaml:14:17: quantization.per_channel: invalid type: string \"yes\", expected a boolean"
)]
pub struct RunArgs {
    /// The pipeline file (YAML; see docs/pipeline.md for every key).
    pub pipeline: PathBuf,
    /// Write the outputs, report, statistics and manifest under this directory instead of the
    /// file's `output_dir` (relative output paths are resolved against it).
    #[arg(long, short = 'o')]
    pub output_dir: Option<PathBuf>,
    /// Worker threads of the executors (default: all cores). Results do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bars and no summary table (errors and warnings are still printed).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Only parse and check the pipeline file (paths, passes, options), then exit.
    #[arg(long)]
    pub check: bool,
}

/// Runs `qtool run`.
pub fn run(a: RunArgs) -> Result<()> {
    let p = config::load(
        &a.pipeline,
        &LoadOptions {
            output_dir: a.output_dir.clone(),
        },
    )?;
    if a.check {
        if !a.quiet {
            println!(
                "{}: ok ({} output{})",
                a.pipeline.display(),
                p.outputs.len(),
                if p.outputs.len() == 1 { "" } else { "s" }
            );
        }
        return Ok(());
    }
    let bar = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(0)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:<40} {bar:30} {pos}/{len} samples {elapsed}")
            .expect("valid template"),
    );
    let mut current = String::new();
    let result = pipeline_run::run(
        &p,
        &RunOptions { threads: a.threads },
        &mut |stage, done, total| {
            let msg = match stage {
                Stage::Calibrate => "calibrating".to_string(),
                Stage::Evaluate(o) => format!("evaluating {o}"),
            };
            if msg != current {
                bar.reset();
                bar.set_message(msg.clone());
                current = msg;
            }
            if let Some(t) = total {
                bar.set_length(t as u64);
            }
            bar.set_position(done as u64);
        },
    );
    bar.finish_and_clear();
    let r = result?;
    if a.quiet {
        return Ok(());
    }
    if let Some(c) = &r.calibration {
        println!(
            "calibration: {} samples, {} tensors, {} ranges ({})",
            c.samples,
            c.tensors,
            c.ranges,
            if c.source == "stats" {
                "statistics reused"
            } else {
                "collected"
            }
        );
    }
    if r.eval_samples > 0 {
        println!("evaluated against FP32 on {} samples", r.eval_samples);
    }
    print!("{}", r.summary_table());
    for (what, path) in [("report", &r.report_html), ("report data", &r.report_json)] {
        if let Some(p) = path {
            println!("{what}: {}", p.display());
        }
    }
    println!("manifest: {}", r.manifest_path.display());
    Ok(())
}
