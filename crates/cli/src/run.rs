//! `qtool run PIPELINE.yaml`: loads the pipeline file, runs it with progress bars for calibration and
//! evaluation (unless quiet), and prints the summary table and where everything was written.

use anyhow::Result;
use qtool_pipeline::config::{self, LoadOptions};
use qtool_pipeline::run::{self as pipeline_run, RunOptions, Stage};
use std::path::PathBuf;

/// Arguments of `qtool run`.
#[derive(clap::Args, Debug)]
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
