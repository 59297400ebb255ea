//! The `qtool` binary: a thin clap front end over `qtool-pipeline`; installs the log subscriber.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod convert;
mod eval;

mod run;

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
        /// Time every node over N runs (after one warm-up run, inputs not split into samples) and
        /// print the time per op type and the slowest nodes to stderr.
        #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "10")]
        profile: Option<usize>,
    },
    /// Collect calibration statistics of a model over a data set (one streaming pass, bounded
    /// memory), or compute activation ranges from saved statistics with --from-stats.
    ///
    /// Data: an .npy file (first axis = samples), an .npz (keys = input names), a directory of .npy
    /// files, ONNX test-data directories (test_data_set_*/input_N.pb), or a folder of PNG/JPEG images
    /// (resized to the model's static input size, scaled to [0, 1]).
    Calibrate {
        /// The FP32 ONNX model (not needed with --from-stats).
        model: Option<PathBuf>,
        /// The calibration data.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Range method: minmax, percentile, entropy or mse. Statistics files keep histograms unless
        /// the method is minmax, so one file serves every method later.
        #[arg(long, default_value = qtool_pipeline::config::DEFAULT_METHOD_NAME)]
        method: String,
        /// Keep per-channel activation statistics (axis 1) too.
        #[arg(long)]
        per_channel_activations: bool,
        /// Use at most N samples.
        #[arg(long)]
        samples: Option<usize>,
        /// Shuffle the samples with this seed (deterministic) before taking --samples.
        #[arg(long)]
        seed: Option<u64>,
        /// Process only shard I of N (I/N, e.g. 0/4); merge the shards with `qtool stats merge`.
        #[arg(long)]
        shard: Option<String>,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Write the statistics to this file.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// Read statistics from this file instead of running the model.
        #[arg(long)]
        from_stats: Option<PathBuf>,
        /// Write ranges (tensor name -> min, max) as JSON to this file.
        #[arg(long)]
        ranges: Option<PathBuf>,
        /// Compute ranges with ONNX Runtime's histogram algorithms (for parity checks). When
        /// collecting with percentile or entropy, also collects ORT's own 2048-bin histograms (a
        /// second pass over the data) so the ranges are computed on exactly ORT's histogram.
        #[arg(long)]
        ort: bool,
        /// Percentile kept by the percentile method (default 99.999).
        #[arg(long)]
        percentile: Option<f64>,
    },
    /// Compare a quantized model against its FP32 reference on a data set: per output SQNR,
    /// cosine similarity, max and mean absolute error, top-1/top-5 agreement and accuracy with
    /// --labels; and the SQNR of every FP32 tensor's counterpart in the candidate, worst first.
    ///
    /// Prints a table (per-output metrics and the worst layers); --json writes everything,
    /// --html a self-contained report. Metrics and the per-layer matching rule: docs/report.md.
    Eval(eval::EvalArgs),
    /// Quantize an FP32 model: calibrate on --data (or read saved statistics with --stats), insert
    /// Q/DQ from the ranges, convert to the format, save atomically, and print how much each output
    /// lost against FP32 (SQNR, top-1 agreement).
    ///
    /// Defaults: QDQ format, the percentile range method (99.999), weights int8 symmetric per output channel,
    /// activations uint8 asymmetric, standard ONNX ops only. The same settings as a `qtool run`
    /// pipeline file make the same model byte for byte. `--format dynamic` needs no data:
    /// activations are quantized at run time (DynamicQuantizeLinear + ConvInteger/MatMulInteger).
    Quantize {
        /// The FP32 ONNX model.
        model: PathBuf,
        /// Calibration data (.npy, .npz, a directory of .npy, ONNX test-data sets, or images).
        /// With --stats it only evaluates; --format dynamic needs none.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Evaluation data (default: --data, at most 64 samples; without either, no evaluation).
        #[arg(long)]
        eval: Option<PathBuf>,
        /// The quantized model to write (never the input).
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// qdq (QuantizeLinear/DequantizeLinear around float ops), qlinear (QLinearConv /
        /// QLinearMatMul), integer (ConvInteger / MatMulInteger + float rescale and bias, static
        /// activation ranges) or dynamic (DynamicQuantizeLinear + ConvInteger / MatMulInteger,
        /// activation ranges computed at run time: no calibration).
        #[arg(long, default_value = "qdq")]
        format: qtool_pipeline::quantize::Format,
        /// Range method: minmax, percentile, entropy or mse [default: percentile, chosen by measured
        /// fidelity on real models: docs/calibration.md]. Not for --format dynamic.
        #[arg(long)]
        method: Option<String>,
        /// Activations: u8 (asymmetric) or s8 (symmetric).
        #[arg(long, default_value = "u8")]
        activations: String,
        /// Weights: s8 (symmetric) or u8 (asymmetric, as ONNX Runtime's weight_type=QUInt8). With
        /// u8, Conv weights are per tensor in the integer and dynamic formats (ConvInteger takes
        /// one weight zero-point); s8 activations with u8 weights have no qlinear form.
        #[arg(long, default_value = "s8")]
        weights: String,
        /// One weight scale per tensor instead of per output channel.
        #[arg(long)]
        per_tensor: bool,
        /// Leave nodes whose name matches this regular expression in float. Repeatable.
        #[arg(long)]
        exclude_nodes: Vec<String>,
        /// Leave these op types in float (comma separated).
        #[arg(long, value_delimiter = ',')]
        exclude_op_types: Vec<String>,
        /// Also use ONNX Runtime's com.microsoft ops where the format has them (qlinear:
        /// QLinearAdd/Mul/Concat/GlobalAveragePool/...; dynamic: DynamicQuantizeMatMul). The output
        /// then runs in ONNX Runtime only (not OpenVINO).
        #[arg(long)]
        contrib: bool,
        /// Take the activation ranges from this statistics file (written by `qtool calibrate -o`)
        /// instead of running the model on --data; any --method works when the file has histograms.
        #[arg(long, value_name = "STATS")]
        stats: Option<PathBuf>,
        /// Use at most N calibration samples.
        #[arg(long)]
        samples: Option<usize>,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Convert a quantized model between formats (qdq, qlinear, integer; ONNX Runtime's outputs
    /// included), or a float model to dynamic quantization; saves atomically, never over the input.
    Convert(convert::ConvertArgs),
    /// Run a quantization pipeline from a YAML file: one calibration, several output formats, each
    /// evaluated against FP32, with an HTML/JSON report and a manifest (see docs/pipeline.md).
    ///
    /// Loads the FP32 model, runs the preprocessing passes, calibrates ONCE on the calibration data
    /// (or reuses a statistics file), writes every requested output (qdq, qlinear, integer,
    /// dynamic) from the same ranges, evaluates each against FP32 (SQNR per output, top-1/top-5
    /// agreement, accuracy with labels, per-layer SQNR), prints a summary table, and writes the
    /// report and a manifest (sha256 of the model, data, config and outputs; every parameter with
    /// its default filled in).
    ///
    /// Relative input paths resolve against the YAML file's directory, output paths against
    /// `output_dir` (or --output-dir). Outputs are written atomically and never over an input. The
    /// same file run twice gives byte-identical models, report and manifest (apart from the
    /// manifest's `timing` section). Errors in the file name the line, column and key, e.g.
    /// `pipeline.yaml:14:17: quantization.per_channel: invalid type: string "yes", expected a
    /// boolean`.
    Run(run::RunArgs),
    /// Operations on calibration statistics files.
    Stats {
        #[command(subcommand)]
        cmd: StatsCmd,
    },
}

#[derive(Subcommand)]
enum StatsCmd {
    /// Merge statistics of shards (exactly: the result equals one run over all the samples).
    Merge {
        /// The statistics files to merge.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The merged statistics file.
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
}

fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let (i, n) = s
        .split_once('/')
        .with_context(|| format!("--shard takes I/N, got '{s}'"))?;
    let (i, n): (usize, usize) = (
        i.trim()
            .parse()
            .with_context(|| format!("--shard: bad index '{i}'"))?,
        n.trim()
            .parse()
            .with_context(|| format!("--shard: bad count '{n}'"))?,
    );
    if n == 0 || i >= n {
        anyhow::bail!("--shard {i}/{n}: the index must be below the count");
    }
    Ok((i, n))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("QTOOL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Inspect { model, json } => {
            let m = qtool_pipeline::onnx::load(&model)
                .with_context(|| format!("cannot load model {}", model.display()))?;
            let report = qtool_pipeline::inspect(&m);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
        }
        Cmd::Calibrate {
            model,
            data,
            method,
            per_channel_activations,
            samples,
            seed,
            shard,
            threads,
            output,
            from_stats,
            ranges,
            ort,
            percentile,
        } => {
            use qtool_pipeline::calibrate as cal;
            let method = cal::parse_method(&method)?;
            let stats = match from_stats {
                Some(p) => qtool_pipeline::calib::CalibStats::load(&p)?,
                None => {
                    let model = model.context("give the MODEL to calibrate (or --from-stats)")?;
                    let data = data.context("give the calibration data with --data PATH")?;
                    if output.is_none() && ranges.is_none() {
                        anyhow::bail!("nothing to write: give -o STATS and/or --ranges OUT.json");
                    }
                    let m = qtool_pipeline::onnx::load(&model)
                        .with_context(|| format!("cannot load model {}", model.display()))?;
                    let settings = cal::CalibrateSettings {
                        histograms: method != qtool_pipeline::calib::Method::MinMax,
                        per_channel_activations,
                        samples,
                        seed,
                        shard: shard.as_deref().map(parse_shard).transpose()?,
                        threads,
                        // --ort with a histogram method: ONNX Runtime's own histograms too.
                        ort_histogram_bins: (ort
                            && matches!(
                                method,
                                qtool_pipeline::calib::Method::Percentile
                                    | qtool_pipeline::calib::Method::Entropy
                            ))
                        .then_some(qtool_pipeline::calib::RangeSettings::default().num_bins as u32),
                    };
                    let bar = indicatif::ProgressBar::new(0);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "calibrating {bar:30} {pos}/{len} samples {elapsed}",
                        )
                        .expect("valid template"),
                    );
                    let stats = cal::calibrate(m, &data, &settings, &mut |done, total| {
                        if let Some(t) = total {
                            bar.set_length(t as u64);
                        }
                        bar.set_position(done as u64);
                    })?;
                    bar.finish_and_clear();
                    if let Some(o) = &output {
                        qtool_pipeline::write_atomic(o, &stats.to_bytes())?;
                        eprintln!(
                            "statistics of {} tensors written to {}",
                            stats.tensors.len(),
                            o.display()
                        );
                    }
                    stats
                }
            };
            if let Some(r) = ranges {
                let json =
                    cal::ranges_json(&stats, method, ort, per_channel_activations, percentile)?;
                qtool_pipeline::write_atomic(&r, json.as_bytes())?;
                eprintln!("ranges written to {}", r.display());
            }
        }
        Cmd::Quantize {
            model,
            data,
            eval,
            output,
            format,
            method,
            activations,
            weights,
            per_tensor,
            exclude_nodes,
            exclude_op_types,
            contrib,
            stats,
            samples,
            threads,
        } => {
            use qtool_pipeline::quantize as qz;
            let activations_s8 = match activations.as_str() {
                "u8" => false,
                "s8" => true,
                other => anyhow::bail!("--activations takes u8 or s8, got '{other}'"),
            };
            let weights_u8 = match weights.as_str() {
                "s8" => false,
                "u8" => true,
                other => anyhow::bail!("--weights takes s8 or u8, got '{other}'"),
            };
            let settings = qz::QuantizeSettings {
                format,
                method: method
                    .as_deref()
                    .map(qtool_pipeline::calibrate::parse_method)
                    .transpose()?,
                activations_s8,
                weights_u8,
                per_tensor,
                exclude_regex: exclude_nodes,
                exclude_op_types,
                contrib,
                stats: stats.clone(),
                calib: qtool_pipeline::calibrate::CalibrateSettings {
                    samples,
                    threads,
                    ..Default::default()
                },
            };
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "calibrating {bar:30} {pos}/{len} samples {elapsed}",
                )
                .expect("valid template"),
            );
            let summary = qz::quantize_with(
                &model,
                data.as_deref(),
                eval.as_deref(),
                &output,
                &settings,
                &mut |done, total| {
                    if let Some(t) = total {
                        bar.set_length(t as u64);
                    }
                    bar.set_position(done as u64);
                },
            )?;
            bar.finish_and_clear();
            match (&stats, format) {
                (_, qz::Format::Dynamic) => {
                    println!("dynamic (no calibration); wrote {}", output.display())
                }
                (Some(st), _) => println!(
                    "ranges of {} tensors from {}; wrote {}",
                    summary.calibrated_tensors,
                    st.display(),
                    output.display()
                ),
                (None, _) => println!(
                    "calibrated {} tensors; wrote {}",
                    summary.calibrated_tensors,
                    output.display()
                ),
            }
            for (name, rewritten, skipped) in &summary.passes {
                println!("  pass {name:<20} rewrote {rewritten:>4}, skipped {skipped:>4}");
            }
            if summary.fidelity.is_empty() {
                println!("not evaluated (give --data or --eval to compare against FP32)");
                return Ok(());
            }
            println!("FP32 vs quantized on {} samples:", summary.eval_samples);
            println!(
                "  {:<24} {:>9} {:>12} {:>8}",
                "output", "SQNR dB", "max |err|", "top-1"
            );
            for f in &summary.fidelity {
                let top1 = f
                    .top1_agreement
                    .map(|a| format!("{:.1}%", a * 100.0))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "  {:<24} {:>9.2} {:>12.4e} {:>8}",
                    f.output, f.sqnr_db, f.max_abs_err, top1
                );
            }
        }
        Cmd::Run(args) => run::run(args)?,
        Cmd::Convert(args) => convert::run(args)?,
        Cmd::Eval(args) => eval::run(args)?,
        Cmd::Stats {
            cmd: StatsCmd::Merge { inputs, output },
        } => {
            let mut it = inputs.iter();
            let first = it.next().expect("clap requires one");
            let mut acc = qtool_pipeline::calib::CalibStats::load(first)?;
            for p in it {
                let s = qtool_pipeline::calib::CalibStats::load(p)?;
                acc = qtool_pipeline::calib::merge(&acc, &s)
                    .with_context(|| format!("merging {}", p.display()))?;
            }
            qtool_pipeline::write_atomic(&output, &acc.to_bytes())?;
            eprintln!("merged {} files into {}", inputs.len(), output.display());
        }
        Cmd::Exec {
            model,
            inputs,
            output_dir,
            threads,
            profile,
        } => {
            let m = qtool_pipeline::onnx::load(&model)
                .with_context(|| format!("cannot load model {}", model.display()))?;
            let (written, prof) = qtool_pipeline::exec::exec_to_dir_profiled(
                &m,
                &inputs,
                &output_dir,
                threads,
                profile.unwrap_or(0),
            )?;
            if let Some(p) = prof {
                eprint!("{p}");
            }
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
