//! `qtool convert`: converts an already-quantized model between QDQ, QLinearConv/QLinearMatMul and
//! ConvInteger/MatMulInteger with float bias (ONNX Runtime's outputs included), going through QDQ
//! (`qops_to_qdq`, then `qdq_to_qlinear` or `qdq_to_integer`); and a float model to dynamic
//! quantization, which needs no calibration. The input format is detected as `qtool inspect` does.
//! Saves atomically and never over the input.

use crate::inspect::{QuantFormat, inspect};
use crate::quantize::Format;
use anyhow::{Context, Result, bail};
use qtool_ir::Model;
use qtool_passes::PassReport;
use std::path::Path;

/// The format to convert to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// QuantizeLinear/DequantizeLinear around float ops.
    Qdq,
    /// QLinearConv / QLinearMatMul (standard ONNX ops).
    Qlinear,
    /// ConvInteger / MatMulInteger with the rescale and bias in float.
    Integer,
    /// DynamicQuantizeLinear + ConvInteger / MatMulInteger (from a float model only).
    Dynamic,
}

impl Target {
    /// The static format it names (`None` for dynamic quantization).
    fn format(self) -> Option<Format> {
        match self {
            Target::Qdq => Some(Format::Qdq),
            Target::Qlinear => Some(Format::Qlinear),
            Target::Integer => Some(Format::Integer),
            Target::Dynamic => None,
        }
    }
}

impl From<Format> for Target {
    fn from(f: Format) -> Target {
        match f {
            Format::Qdq => Target::Qdq,
            Format::Qlinear => Target::Qlinear,
            Format::Integer => Target::Integer,
            Format::Dynamic => Target::Dynamic,
        }
    }
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "dynamic" {
            return Ok(Target::Dynamic);
        }
        s.parse::<Format>().map(Target::from).map_err(|_| {
            format!("unknown format '{s}' (expected qdq, qlinear, integer or dynamic)")
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.format().map_or("dynamic", Format::name))
    }
}

/// Settings of [`convert`].
#[derive(Clone, Copy, Debug)]
pub struct ConvertSettings {
    pub to: Target,
    /// Allow ONNX Runtime's com.microsoft ops (dynamic: DynamicQuantizeMatMul).
    pub contrib: bool,
}

/// What [`convert_model`] did.
#[derive(Debug, Clone)]
pub struct ConvertSummary {
    /// The detected input format.
    pub from: QuantFormat,
    /// The format of the result as detected afterwards (differs from the target when nodes were
    /// skipped; the skips say why).
    pub result: QuantFormat,
    /// Each pass run, with its report.
    pub passes: Vec<(String, PassReport)>,
}

fn expected(t: Target) -> QuantFormat {
    match t {
        Target::Qdq => QuantFormat::Qdq,
        Target::Qlinear => QuantFormat::QopsQlinear,
        Target::Integer => QuantFormat::QopsInteger,
        Target::Dynamic => QuantFormat::Dynamic,
    }
}

/// Converts `model` in memory to `s.to`.
pub fn convert_model(model: &mut Model, s: &ConvertSettings) -> Result<ConvertSummary> {
    let from = inspect(model).quantization.format;
    if s.contrib && !matches!(s.to, Target::Dynamic | Target::Qlinear) {
        bail!(
            "--contrib applies to --to dynamic and qlinear only (qdq_to_integer writes standard ONNX ops)"
        );
    }
    let null = serde_json::Value::Null;
    let mut names: Vec<(&str, serde_json::Value)> = Vec::new();
    match (from, s.to) {
        (QuantFormat::Float, Target::Dynamic) => {
            names.push((
                "quantize_dynamic",
                serde_json::json!({ "contrib": s.contrib }),
            ));
        }
        (QuantFormat::Float, _) => bail!(
            "the model is not quantized; static formats need calibration: use `qtool quantize MODEL --data DATA --format {}`",
            s.to
        ),
        (QuantFormat::Dynamic, Target::Dynamic) => {}
        (QuantFormat::Dynamic, _) => bail!(
            "the model is dynamically quantized (activations quantized at run time): it has no static activation scales to convert to {}; quantize the float model with `qtool quantize`",
            s.to
        ),
        (_, Target::Dynamic) => bail!(
            "only a float model converts to dynamic quantization; this one is already statically quantized ({from:?})"
        ),
        (QuantFormat::Qdq, t) => push_from_qdq(&mut names, t, s.contrib),
        (_, t) => {
            names.push(("qops_to_qdq", null.clone()));
            push_from_qdq(&mut names, t, s.contrib);
        }
    }
    let mut passes_run = Vec::new();
    if !names.is_empty() {
        names.push(("eliminate_dead_code", null));
        let passes = names
            .iter()
            .map(|(n, o)| qtool_passes::build(n, o))
            .collect::<Result<Vec<_>, _>>()?;
        let reports =
            qtool_passes::run_passes(&passes, model, &qtool_passes::PassCx::default(), true)?;
        for (name, rep) in reports {
            for sk in &rep.skipped {
                tracing::info!(
                    "{name}: skipped node '{}' ({}): {}",
                    sk.node,
                    sk.op_type,
                    sk.reason
                );
            }
            passes_run.push((name.to_string(), rep));
        }
    }
    let result = inspect(model).quantization.format;
    if result != expected(s.to) {
        tracing::warn!(
            "the result is {result:?}, not only {:?}: some nodes were left as they were (see the skips)",
            expected(s.to)
        );
    }
    Ok(ConvertSummary {
        from,
        result,
        passes: passes_run,
    })
}

fn push_from_qdq(names: &mut Vec<(&str, serde_json::Value)>, t: Target, contrib: bool) {
    let format = t.format().expect("dynamic is handled by the caller");
    if let Some(pass) = format.pass_from_qdq() {
        let opts = if contrib {
            serde_json::json!({ "contrib": true })
        } else {
            serde_json::Value::Null
        };
        names.push((pass, opts));
    }
}

/// Loads `input`, converts it and saves the result atomically to `output` (never the input).
pub fn convert(input: &Path, output: &Path, s: &ConvertSettings) -> Result<ConvertSummary> {
    if output.exists() && std::fs::canonicalize(output).ok() == std::fs::canonicalize(input).ok() {
        bail!(
            "refusing to overwrite the input model {}; give another -o",
            input.display()
        );
    }
    let mut model = qtool_onnx::load(input)
        .with_context(|| format!("cannot load model {}", input.display()))?;
    let summary = convert_model(&mut model, s)?;
    qtool_onnx::save(
        &model,
        output,
        &qtool_onnx::SaveOptions::default().with_source(input),
    )
    .with_context(|| format!("cannot save {}", output.display()))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print() {
        for t in ["qdq", "qlinear", "integer", "dynamic"] {
            assert_eq!(t.parse::<Target>().unwrap().to_string(), t);
        }
        assert!("int8".parse::<Target>().is_err());
    }

    #[test]
    fn float_model_to_static_format_is_refused_with_advice() {
        let mut m = Model::default();
        let e = convert_model(
            &mut m,
            &ConvertSettings {
                to: Target::Qlinear,
                contrib: false,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("qtool quantize"), "{e}");
    }
}
