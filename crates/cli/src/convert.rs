//! `qtool convert`: the command-line front end of `qtool_pipeline::convert` (argument parsing and
//! the printed summary).

use anyhow::Result;
use clap::Args;
use qtool_pipeline::convert::{ConvertSettings, Target, convert};
use std::path::PathBuf;

/// Arguments of `qtool convert`.
#[derive(Args)]
pub struct ConvertArgs {
    /// The quantized ONNX model (QDQ, QLinear or integer ops, e.g. ONNX Runtime's output), or a
    /// float model for --to dynamic.
    model: PathBuf,
    /// qdq, qlinear (QLinearConv/QLinearMatMul), integer (ConvInteger/MatMulInteger + float bias),
    /// or dynamic (from a float model: weights int8, activations quantized at run time).
    #[arg(long)]
    to: Target,
    /// Allow ONNX Runtime's com.microsoft ops (dynamic: DynamicQuantizeMatMul for MatMul/Gemm;
    /// qlinear: QLinearAdd/Mul/Concat/Sigmoid/..., QGemm).
    #[arg(long)]
    contrib: bool,
    /// The model to write (never the input).
    #[arg(short = 'o', long)]
    output: PathBuf,
}

/// Runs `qtool convert`.
pub fn run(a: ConvertArgs) -> Result<()> {
    let s = convert(
        &a.model,
        &a.output,
        &ConvertSettings {
            to: a.to,
            contrib: a.contrib,
        },
    )?;
    println!(
        "{} ({:?}) -> {} ({:?})",
        a.model.display(),
        s.from,
        a.output.display(),
        s.result
    );
    if s.passes.is_empty() {
        println!("  already {}: written unchanged", a.to);
    }
    for (name, rep) in &s.passes {
        println!(
            "  pass {name:<20} rewrote {:>4}, skipped {:>4}",
            rep.rewritten.len(),
            rep.skipped.len()
        );
        for sk in &rep.skipped {
            println!("    skipped {} ({}): {}", sk.node, sk.op_type, sk.reason);
        }
    }
    Ok(())
}
