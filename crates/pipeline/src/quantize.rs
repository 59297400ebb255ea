//! `qtool quantize`: a `qtool run` with one output. The command line's settings become a pipeline
//! configuration in memory (the same defaults as a YAML file: preprocessing with Constant folding,
//! one calibration or saved statistics, insert_qdq, the conversion to the requested format; or
//! dynamic quantization of the float model), which [`crate::run`] executes: the model is saved
//! atomically and compared against FP32 (per-output SQNR and top-1 agreement). No manifest or
//! report is written.

use crate::calibrate::CalibrateSettings;
use crate::run::{RunOptions, Stage};
use anyhow::{Context, Result, bail};
use qtool_calib::Method;
use std::path::{Path, PathBuf};

/// The quantized format to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// QuantizeLinear/DequantizeLinear around float ops.
    #[default]
    Qdq,
    /// QLinearConv / QLinearMatMul with int32 bias (standard ONNX ops only).
    Qlinear,
    /// ConvInteger / MatMulInteger with the rescale and the bias in float.
    Integer,
    /// DynamicQuantizeLinear + ConvInteger / MatMulInteger: no calibration, activations quantized
    /// at run time.
    Dynamic,
}

impl Format {
    /// Every format, in the order the error messages list them.
    const ALL: [Format; 4] = [
        Format::Qdq,
        Format::Qlinear,
        Format::Integer,
        Format::Dynamic,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Qdq => "qdq",
            Format::Qlinear => "qlinear",
            Format::Integer => "integer",
            Format::Dynamic => "dynamic",
        }
    }

    /// The pass that turns a QDQ model into this format (none for QDQ itself, and none for dynamic,
    /// which is made from the float model).
    pub(crate) fn pass_from_qdq(self) -> Option<&'static str> {
        match self {
            Format::Qdq | Format::Dynamic => None,
            Format::Qlinear => Some("qdq_to_qlinear"),
            Format::Integer => Some("qdq_to_integer"),
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!("unknown format '{s}' (expected qdq, qlinear, integer or dynamic)")
            })
    }
}

/// Settings of [`quantize`].
#[derive(Clone, Debug, Default)]
pub struct QuantizeSettings {
    pub format: Format,
    /// Range method (default: the pipeline file's, [`crate::config::CalibrationConfig`]).
    pub method: Option<Method>,
    /// int8 symmetric activations instead of uint8 asymmetric.
    pub activations_s8: bool,
    /// uint8 asymmetric weights instead of int8 symmetric (ONNX Runtime's `weight_type=QUInt8`).
    pub weights_u8: bool,
    /// One weight scale per tensor instead of per output channel.
    pub per_tensor: bool,
    pub exclude_regex: Vec<String>,
    pub exclude_op_types: Vec<String>,
    /// Let the conversion write ONNX Runtime's com.microsoft ops (the output's `contrib: true`).
    pub contrib: bool,
    /// Ranges from this statistics file (`qtool calibrate -o`) instead of running the model on
    /// calibration data.
    pub stats: Option<PathBuf>,
    pub calib: CalibrateSettings,
}

/// Per-output comparison of the quantized model against the FP32 one.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OutputFidelity {
    pub output: String,
    /// Signal-to-quantization-noise ratio in dB (higher is better).
    pub sqnr_db: f64,
    pub max_abs_err: f64,
    /// Share of samples whose arg-max along the class axis agrees (classifier-like outputs only).
    pub top1_agreement: Option<f64>,
}

/// What [`quantize`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QuantizeSummary {
    pub calibrated_tensors: usize,
    /// Every pass in order (preprocessing, then the quantization passes): name, nodes rewritten,
    /// nodes skipped.
    pub passes: Vec<(String, usize, usize)>,
    pub eval_samples: usize,
    pub fidelity: Vec<OutputFidelity>,
}

/// The pipeline configuration that [`quantize`] runs, as YAML (every path absolute). Missing keys
/// take the pipeline file's defaults, so `qtool quantize` and `qtool run` make the same model from
/// the same settings. `data` calibrates (unless `s.stats` gives the statistics) and, without
/// `eval`, evaluates.
pub fn pipeline_yaml(
    model_path: &Path,
    data: Option<&Path>,
    eval: Option<&Path>,
    out: &Path,
    s: &QuantizeSettings,
) -> Result<String> {
    let abs = |p: &Path| -> Result<String> {
        let a = std::path::absolute(p).with_context(|| format!("bad path {}", p.display()))?;
        a.to_str()
            .map(str::to_string)
            .with_context(|| format!("path {} is not valid UTF-8", a.display()))
    };
    let mut data_cfg = serde_json::Map::new();
    let static_ranges = s.format != Format::Dynamic;
    if let Some(d) = data
        && static_ranges
        && s.stats.is_none()
    {
        data_cfg.insert(
            "calibration".into(),
            serde_json::json!({ "path": abs(d)?, "samples": s.calib.samples, "seed": s.calib.seed }),
        );
    }
    // Without --eval, the calibration data (or --data next to --stats): at most 64 samples.
    if let Some(e) = eval.or(data) {
        data_cfg.insert(
            "evaluation".into(),
            serde_json::json!({ "path": abs(e)?, "samples": 64 }),
        );
    }
    let mut calibration = serde_json::Map::new();
    if let Some(m) = s.method {
        calibration.insert("method".into(), crate::run::method_name(m).into());
    }
    if let Some(st) = &s.stats {
        calibration.insert("stats".into(), abs(st)?.into());
    }
    let mut output = serde_json::json!({ "format": s.format.name(), "path": abs(out)? });
    if s.contrib {
        output["contrib"] = true.into();
    }
    if s.format == Format::Dynamic && !s.exclude_op_types.is_empty() {
        // The pipeline's `quantization.exclude.op_types` is the static quantizer's; the dynamic
        // pass takes its own.
        output["options"] = serde_json::json!({ "exclude_op_types": s.exclude_op_types });
    }
    let cfg = serde_json::json!({
        "model": abs(model_path)?,
        "data": data_cfg,
        "calibration": calibration,
        "quantization": {
            "activations": if s.activations_s8 { "i8_symmetric" } else { "u8_asymmetric" },
            "weights": if s.weights_u8 { "u8_asymmetric" } else { "i8_symmetric" },
            "per_channel": !s.per_tensor,
            "exclude": { "regex": s.exclude_regex, "op_types": s.exclude_op_types },
        },
        "outputs": [ output ],
        "evaluation": { "enabled": eval.or(data).is_some(), "per_layer": false },
    });
    serde_yaml::to_string(&cfg).context("writing the pipeline configuration")
}

/// Quantizes `model_path` with calibration data `data`, writes `out`, and evaluates on `eval` (or on
/// the calibration data when `None`), at most 64 samples. `progress` sees the calibration.
pub fn quantize(
    model_path: &Path,
    data: &Path,
    eval: Option<&Path>,
    out: &Path,
    s: &QuantizeSettings,
    progress: &mut dyn FnMut(usize, Option<usize>),
) -> Result<QuantizeSummary> {
    quantize_with(model_path, Some(data), eval, out, s, progress)
}

/// [`quantize`] where the data is optional: static formats need `data` or `s.stats` (saved
/// statistics; `data` then only evaluates); dynamic quantization needs neither. The model is
/// evaluated on `eval`, else on `data`, else not at all.
pub fn quantize_with(
    model_path: &Path,
    data: Option<&Path>,
    eval: Option<&Path>,
    out: &Path,
    s: &QuantizeSettings,
    progress: &mut dyn FnMut(usize, Option<usize>),
) -> Result<QuantizeSummary> {
    // The command line's own errors first (the configuration's would name YAML keys).
    if !model_path.is_file() {
        bail!("cannot load model {}: no such file", model_path.display());
    }
    for d in data.into_iter().chain(eval) {
        if !d.exists() {
            bail!("no such data file or directory: {}", d.display());
        }
    }
    if s.format == Format::Dynamic {
        // Dynamic quantization has no calibration: refuse the settings it would silently ignore.
        if s.stats.is_some() {
            bail!(
                "--stats: dynamic quantization computes its ranges at run time and reads no statistics"
            );
        }
        if s.method.is_some() {
            bail!(
                "--method: dynamic quantization has no calibration (ranges are computed at run time)"
            );
        }
        if s.activations_s8 {
            bail!(
                "--activations s8: dynamic quantization's DynamicQuantizeLinear makes uint8 activations only"
            );
        }
    } else if s.activations_s8 && s.weights_u8 && s.format == Format::Qlinear {
        bail!(
            "--activations s8 with --weights u8 has no qlinear form: ONNX Runtime has no \
             QLinearConv/QLinearMatMul kernel for int8 x uint8 (use --activations u8 or --weights s8)"
        );
    } else if data.is_none() && s.stats.is_none() {
        bail!(
            "the {} format needs activation ranges: give calibration data (--data PATH) or saved statistics (--stats STATS)",
            s.format.name()
        );
    }
    if let Some(st) = &s.stats {
        check_stats(model_path, st)?;
    }
    if out.exists() && std::fs::canonicalize(out).ok() == std::fs::canonicalize(model_path).ok() {
        bail!(
            "refusing to overwrite the input model {}",
            model_path.display()
        );
    }
    let text = pipeline_yaml(model_path, data, eval, out, s)?;
    // The configuration is never written; relative paths do not occur in it.
    let file = std::env::current_dir()
        .unwrap_or_else(|_| PathBuf::from("."))
        .join("qtool-quantize.yaml");
    let p = crate::config::parse(&text, &file, &Default::default())
        .map_err(|e| anyhow::anyhow!("invalid quantization settings: {e}"))?;
    let e = crate::run::execute(
        &p,
        &RunOptions {
            threads: s.calib.threads,
        },
        &mut |stage, done, total| {
            if stage == Stage::Calibrate {
                progress(done, total)
            }
        },
    )?;
    let o = e.outputs.first().context("the pipeline made no output")?;
    let reports = e
        .pre_reports
        .iter()
        .chain(&o.passes)
        .map(|(n, _, r)| (n.clone(), r.rewritten.len(), r.skipped.len()));
    let fidelity = o
        .eval
        .as_ref()
        .map(|ev| {
            ev.outputs
                .iter()
                .map(|m| OutputFidelity {
                    output: m.name.clone(),
                    sqnr_db: m.error.sqnr_db,
                    max_abs_err: m.error.max_abs_err,
                    top1_agreement: m.classifier.as_ref().map(|c| c.top1_agreement),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(QuantizeSummary {
        calibrated_tensors: e.calibration.as_ref().map_or(0, |c| c.tensors),
        passes: reports.collect(),
        eval_samples: e.eval_samples,
        fidelity,
    })
}

/// Refuses a statistics file that cannot belong to the model: unreadable, or naming none of the
/// model's inputs (calibration observes every float graph input, so statistics of this model have
/// them).
fn check_stats(model_path: &Path, stats: &Path) -> Result<()> {
    let st = qtool_calib::CalibStats::load(stats)
        .with_context(|| format!("--stats {}", stats.display()))?;
    let m = crate::onnx::load(model_path)
        .with_context(|| format!("cannot load model {}", model_path.display()))?;
    let g = &m.graph;
    let inputs: Vec<&str> = g
        .runtime_inputs()
        .iter()
        .map(|&v| g.value_name(v))
        .collect();
    if !inputs.is_empty() && !inputs.iter().any(|n| st.tensors.contains_key(*n)) {
        bail!(
            "--stats {}: the statistics are not of this model (none of its inputs {} is in them; {} tensors from {} samples)",
            stats.display(),
            inputs.join(", "),
            st.tensors.len(),
            st.samples
        );
    }
    Ok(())
}
