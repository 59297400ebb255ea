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
    /// Run a model (FP32 or quantized) on input tensors and write each output as OUTPUT_NAME.npy.
    ///
    /// Inputs come from .npy files (for a model with a fixed batch of 1, the first axis may hold N
    /// samples: they run one by one and the outputs are stacked again), .npz files (keys are input
    /// names) or ONNX TensorProto .pb files.
    Exec {
        /// The ONNX model file.
        model: PathBuf,
        /// An input: NAME=FILE, or FILE alone for a single-input model or an .npz. Repeatable.
        #[arg(long = "input", short = 'i', required = true)]
        inputs: Vec<qtool_pipeline::exec::InputArg>,
        /// Directory for the outputs (created if missing).
        #[arg(long, short = 'o')]
        output_dir: PathBuf,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
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
        Cmd::Exec { model, inputs, output_dir, threads } => {
            let m = qtool_pipeline::onnx::load(&model).with_context(|| format!("cannot load model {}", model.display()))?;
            let written = qtool_pipeline::exec::exec_to_dir(&m, &inputs, &output_dir, threads)?;
            for p in written {
                println!("{}", p.display());
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
