//! The `qtool` binary: a thin clap front end over `qtool-pipeline`; installs the log subscriber.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "qtool",
    version,
    about = "Quantize FP32 ONNX models to INT8 (QDQ and operator formats), check them and run them.",
    long_about = "qtool turns FP32 ONNX models into INT8 models and runs them, with exact, documented integer \
semantics. Logs go to stderr; set QTOOL_LOG (e.g. QTOOL_LOG=debug or QTOOL_LOG=qtool_exec=trace) to see more."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Summarize a model: IR version, opsets, producer, inputs and outputs, op histogram, parameters,
    /// where the weights are stored, and the quantization format (float, qdq, qops-qlinear,
    /// qops-integer, dynamic, mixed).
    Inspect {
        /// The ONNX model file.
        model: PathBuf,
        /// Print the stable JSON report (schema `qtool.inspect/1`, see docs/inspect.md) instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("QTOOL_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Inspect { model, json } => {
            let m = qtool_pipeline::onnx::load(&model).with_context(|| format!("cannot load model {}", model.display()))?;
            let report = qtool_pipeline::inspect(&m);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
