//! `qtool eval`: compares a reference (FP32) model and a candidate (quantized in any format: QDQ,
//! QLinear ops, integer ops, dynamic) on the samples of a data set. Per graph output: SQNR, cosine
//! similarity, maximum and mean absolute error, top-1/top-5 agreement for classifier-like outputs and
//! accuracy against labels; per layer: the SQNR of every FP32 tensor's (dequantized) counterpart in
//! the candidate, ranked worst first. Streaming: only running sums are kept across samples.
//!
//! # Matching a reference tensor `t` to its counterpart in the candidate
//! The rule follows the names our passes (and ONNX Runtime's quantizer) write; the first that applies
//! wins:
//! 1. `t_DequantizeLinear_Output`, produced by a DequantizeLinear: the dequantized activation
//!    (kind `dequantized`).
//! 2. `t_QuantizeLinear_Output` or `t_quantized` (ONNX Runtime's dynamic and QOperator naming), a
//!    non-constant integer tensor: dequantized here as `(q - zero_point) * scale` with the scale and
//!    zero-point of the node that produced it (QuantizeLinear inputs 1 and 2; QLinearConv,
//!    QLinearMatMul inputs 6 and 7; DynamicQuantizeLinear outputs 1 and 2; other QLinear ops their
//!    last two inputs... only when those are named `t_scale`/`t_zero_point`), or of a DequantizeLinear
//!    that reads it (kind `integer`).
//! 3. `t` itself, when the candidate computes a value of that name that is not a constant (kind
//!    `float`: an op left in float, or a graph output, which our passes keep under its name).
//!
//! Graph inputs count as tensors (their quantization is the first loss). Weights are not part of
//! the per-layer list (they are no run-time values).

use crate::calibrate::open_source;
use anyhow::{Context, Result, bail};
use qtool_calib::Preprocess;
use qtool_exec::{ExecOptions, Executor};
use qtool_ir::{Graph, Model, Op, ValueId};
use qtool_tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The schema name written in [`EvalReport::schema`].
pub const EVAL_SCHEMA: &str = "qtool.eval/1";

/// Serializes non-finite f64 as the strings `"inf"`, `"-inf"` and `"nan"` (JSON has no such
/// numbers), and reads them back.
pub mod f64_lossless {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Num(f64),
        Str(String),
    }

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        if x.is_finite() {
            s.serialize_f64(*x)
        } else if x.is_nan() {
            s.serialize_str("nan")
        } else if *x > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Num(x) => Ok(x),
            Repr::Str(s) => match s.as_str() {
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                "nan" => Ok(f64::NAN),
                other => Err(serde::de::Error::custom(format!(
                    "expected a number, \"inf\", \"-inf\" or \"nan\", got \"{other}\""
                ))),
            },
        }
    }

    /// The same for `Option<f64>` (`null` for `None`).
    pub mod option {
        use super::*;
        pub fn serialize<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
            match x {
                Some(v) => super::serialize(v, s),
                None => s.serialize_none(),
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
            match Option::<Repr>::deserialize(d)? {
                None => Ok(None),
                Some(Repr::Num(x)) => Ok(Some(x)),
                Some(Repr::Str(s)) => match s.as_str() {
                    "inf" => Ok(Some(f64::INFINITY)),
                    "-inf" => Ok(Some(f64::NEG_INFINITY)),
                    "nan" => Ok(Some(f64::NAN)),
                    other => Err(serde::de::Error::custom(format!(
                        "expected a number, \"inf\", \"-inf\" or \"nan\", got \"{other}\""
                    ))),
                },
            }
        }
    }
}

/// How to evaluate.
#[derive(Clone, Debug, Default)]
pub struct EvalSettings {
    /// Use at most this many samples of the data (the first ones).
    pub samples: Option<usize>,
    /// Worker threads of each executor (default: every core).
    pub threads: Option<usize>,
    /// An `.npy` of integer class ids, one per sample row of the classifier outputs (see
    /// [`read_labels`]); gives accuracy for both models.
    pub labels: Option<PathBuf>,
    /// Image preprocessing, for a folder of images (default: resize to the model's input, [0, 1]).
    pub preprocess: Option<Preprocess>,
    /// Skip the per-layer comparison (outputs only; one plain run per model and sample).
    pub outputs_only: bool,
}

/// Error statistics of a candidate tensor against its reference, over every sample.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorMetrics {
    /// Elements compared (pairs where both values are finite).
    pub elements: u64,
    /// Pairs where either value is NaN or infinite (left out of everything else).
    pub non_finite: u64,
    /// `10 log10(Σ ref² / Σ (ref − cand)²)` in dB; `inf` when identical.
    #[serde(with = "f64_lossless")]
    pub sqnr_db: f64,
    /// `Σ ref·cand / sqrt(Σ ref² · Σ cand²)`; 1 when both are all zeros, 0 when only one is.
    #[serde(with = "f64_lossless")]
    pub cosine: f64,
    #[serde(with = "f64_lossless")]
    pub max_abs_err: f64,
    #[serde(with = "f64_lossless")]
    pub mean_abs_err: f64,
}

/// Agreement and accuracy of a classifier-like output (see [`OutputMetrics::classifier`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassifierMetrics {
    /// Classes (the size of axis 1).
    pub classes: usize,
    /// Rows compared (samples × batch).
    pub rows: u64,
    /// Share of rows whose arg-max is the same in both models.
    pub top1_agreement: f64,
    /// Share of rows where the reference's arg-max is among the candidate's 5 largest (only with
    /// more than 5 classes).
    pub top5_agreement: Option<f64>,
    /// Share of rows whose reference arg-max equals the label (with labels).
    pub accuracy_reference: Option<f64>,
    /// Share of rows whose candidate arg-max equals the label (with labels).
    pub accuracy_candidate: Option<f64>,
}

/// Metrics of one graph output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputMetrics {
    /// The reference's output name.
    pub name: String,
    /// The candidate's output it was compared with (the same name unless matched by position).
    pub candidate_name: String,
    #[serde(flatten)]
    pub error: ErrorMetrics,
    /// For classifier-like outputs: shape `[N, C, 1, ..., 1]` with `C > 1` (any number of trailing
    /// ones, usually none).
    pub classifier: Option<ClassifierMetrics>,
}

/// How a layer's counterpart was found (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CounterpartKind {
    /// The output of the DequantizeLinear of the tensor.
    Dequantized,
    /// An integer tensor, dequantized with its scale and zero-point.
    Integer,
    /// A float tensor of the same name.
    Float,
}

/// Where the scale and zero-point of an integer counterpart come from.
#[derive(Clone, Debug, PartialEq)]
pub enum QuantParams {
    /// Constants of the model: scale and zero-point per element of `axis` (one value: per tensor).
    Const {
        scale: Vec<f32>,
        zero_point: Vec<i32>,
        axis: Option<usize>,
    },
    /// Values computed at run time (DynamicQuantizeLinear): their names.
    RunTime { scale: String, zero_point: String },
}

/// One reference tensor and its counterpart in the candidate (from [`match_layers`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerMatch {
    /// The reference tensor's name.
    pub tensor: String,
    /// The candidate value compared with it.
    pub counterpart: String,
    pub kind: CounterpartKind,
    /// For [`CounterpartKind::Integer`].
    pub params: Option<QuantParams>,
}

/// Metrics of one reference tensor against its counterpart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerMetrics {
    pub tensor: String,
    pub counterpart: String,
    pub kind: CounterpartKind,
    /// Position of the tensor in the reference's execution order (0 = first value seen).
    pub order: usize,
    #[serde(flatten)]
    pub error: ErrorMetrics,
}

/// A reference tensor with a counterpart that could not be compared, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSkip {
    pub tensor: String,
    pub reason: String,
}

/// The result of [`evaluate`] (JSON schema [`EVAL_SCHEMA`], see docs/report.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub schema: String,
    /// The reference model (as given).
    pub reference: String,
    /// The candidate model (as given).
    pub candidate: String,
    /// The candidate's quantization format (as `qtool inspect` names it).
    pub candidate_format: String,
    /// The data (as given).
    pub data: String,
    /// The labels file, if any.
    pub labels: Option<String>,
    /// Samples (model runs) evaluated.
    pub samples: usize,
    pub outputs: Vec<OutputMetrics>,
    /// Per-layer comparison, worst SQNR first (ties by name); empty with `outputs_only`.
    pub layers: Vec<LayerMetrics>,
    /// Matched tensors that could not be compared (shape or type mismatch), sorted by name.
    pub skipped_layers: Vec<LayerSkip>,
}

impl EvalReport {
    /// Pretty JSON with a final newline (deterministic).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("eval report serializes");
        s.push('\n');
        s
    }

    /// The `n` worst layers (the list is sorted worst first).
    pub fn worst_layers(&self, n: usize) -> &[LayerMetrics] {
        &self.layers[..n.min(self.layers.len())]
    }
}

/// Running sums of one compared tensor.
#[derive(Clone, Debug, Default)]
struct Acc {
    n: u64,
    non_finite: u64,
    sig: f64,
    cand: f64,
    dot: f64,
    err: f64,
    abs: f64,
    max: f64,
}

impl Acc {
    fn add(&mut self, r: &[f32], c: &[f32]) {
        for (&x, &y) in r.iter().zip(c) {
            if !x.is_finite() || !y.is_finite() {
                self.non_finite += 1;
                continue;
            }
            let (x, y) = (x as f64, y as f64);
            let d = x - y;
            self.n += 1;
            self.sig += x * x;
            self.cand += y * y;
            self.dot += x * y;
            self.err += d * d;
            self.abs += d.abs();
            self.max = self.max.max(d.abs());
        }
    }

    fn metrics(&self) -> ErrorMetrics {
        let sqnr_db = if self.err == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (self.sig / self.err).log10()
        };
        let cosine = match (self.sig == 0.0, self.cand == 0.0) {
            (true, true) => 1.0,
            (true, false) | (false, true) => 0.0,
            // Identical values: exactly 1 (the quotient of the square roots may round to 1 - ulp).
            _ if self.err == 0.0 => 1.0,
            _ => (self.dot / (self.sig.sqrt() * self.cand.sqrt())).clamp(-1.0, 1.0),
        };
        ErrorMetrics {
            elements: self.n,
            non_finite: self.non_finite,
            sqnr_db,
            cosine,
            max_abs_err: self.max,
            mean_abs_err: if self.n == 0 {
                0.0
            } else {
                self.abs / self.n as f64
            },
        }
    }
}

/// Running counts of a classifier-like output.
#[derive(Clone, Debug, Default)]
struct ClassAcc {
    classes: usize,
    rows: u64,
    top1: u64,
    top5: u64,
    correct_ref: u64,
    correct_cand: u64,
}

/// Index of the largest value (ties: the lowest index; NaN never wins).
fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] || (v[best].is_nan() && !x.is_nan()) {
            best = i;
        }
    }
    best
}

/// Rank of entry `k` in `v` sorted descending (ties: lower index first).
fn rank_of(v: &[f32], k: usize) -> usize {
    let x = v[k];
    v.iter()
        .enumerate()
        .filter(|&(i, &y)| y > x || (y == x && i < k) || (x.is_nan() && !y.is_nan()))
        .count()
}

/// The number of classes if `shape` is classifier-like: `[N, C, 1, ..., 1]` with `C > 1`.
pub fn classifier_classes(shape: &[usize]) -> Option<usize> {
    (shape.len() >= 2 && shape[1] > 1 && shape[2..].iter().all(|&d| d == 1)).then(|| shape[1])
}

/// Reads labels: an `.npy` of integer class ids (any integer type, or floats holding whole numbers),
/// shape `[N]` or `[N, 1]`.
pub fn read_labels(path: &Path) -> Result<Vec<i64>> {
    let t = qtool_data::load_npy(path)
        .with_context(|| format!("cannot read labels {}", path.display()))?;
    let shape = t.shape().to_vec();
    if !(shape.len() == 1 || (shape.len() == 2 && shape[1] == 1)) {
        bail!(
            "{}: labels must have shape [N] or [N, 1], not {shape:?}",
            path.display()
        );
    }
    if !(t.dtype().is_float() || t.dtype().int_range().is_some()) {
        bail!(
            "{}: labels must be integer class ids, not {}",
            path.display(),
            t.dtype()
        );
    }
    let v = t
        .to_f64_vec()
        .with_context(|| format!("{}: labels are not numbers", path.display()))?;
    v.iter()
        .enumerate()
        .map(|(i, &x)| {
            if x.fract() == 0.0 && (0.0..9.0e15).contains(&x) {
                Ok(x as i64)
            } else {
                bail!(
                    "{}: label {i} is {x}, not a non-negative integer class id",
                    path.display()
                )
            }
        })
        .collect()
}

fn float_values(t: &Tensor) -> Option<Vec<f32>> {
    if !t.dtype().is_float() {
        return None;
    }
    Some(match t {
        Tensor::F32(a) => a.iter().copied().collect(),
        other => other.to_f64_vec()?.into_iter().map(|x| x as f32).collect(),
    })
}

fn const_values(g: &Graph, v: ValueId) -> Option<Vec<f64>> {
    g.constant(v)?.to_tensor().ok()?.to_f64_vec()
}

/// Scale and zero-point (as values of the candidate graph) of integer tensor `q`.
fn params_of(g: &Graph, q: ValueId) -> Option<(ValueId, Option<ValueId>, Option<i64>)> {
    if let Some(p) = g.producer(q) {
        let node = g.node(p);
        match node.op() {
            Op::QuantizeLinear(ql) => return Some((node.input(1)?, node.input(2), ql.axis)),
            Op::QLinearConv(_) | Op::QLinearMatMul(_) => {
                return Some((node.input(6)?, node.input(7), None));
            }
            Op::DynamicQuantizeLinear(_) => return Some((node.output(1)?, node.output(2), None)),
            _ => {}
        }
    }
    for c in g.consumers(q) {
        let node = g.node(c);
        if let Op::DequantizeLinear(d) = node.op()
            && node.input(0) == Some(q)
        {
            return Some((node.input(1)?, node.input(2), d.axis));
        }
    }
    None
}

/// Finds the counterpart of every non-constant reference value in the candidate (the rule of the
/// module docs), in the reference's node order (graph inputs first).
pub fn match_layers(reference: &Model, candidate: &Model) -> Vec<LayerMatch> {
    let (rg, cg) = (&reference.graph, &candidate.graph);
    let mut names: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for v in rg.runtime_inputs() {
        let n = rg.value_name(v).to_string();
        if seen.insert(n.clone()) {
            names.push(n);
        }
    }
    for (_, node) in rg.nodes() {
        for v in node.outputs().iter().flatten() {
            if rg.constant(*v).is_some() {
                continue;
            }
            let n = rg.value_name(*v).to_string();
            if !n.is_empty() && seen.insert(n.clone()) {
                names.push(n);
            }
        }
    }
    let computed = |v: ValueId| cg.constant(v).is_none();
    let mut out = Vec::new();
    for t in names {
        let dq = cg
            .find_value(&format!("{t}_DequantizeLinear_Output"))
            .filter(|&v| {
                computed(v)
                    && cg
                        .producer(v)
                        .is_some_and(|p| matches!(cg.node(p).op(), Op::DequantizeLinear(_)))
            });
        if let Some(v) = dq {
            out.push(LayerMatch {
                tensor: t,
                counterpart: cg.value_name(v).to_string(),
                kind: CounterpartKind::Dequantized,
                params: None,
            });
            continue;
        }
        let int = [
            format!("{t}_QuantizeLinear_Output"),
            format!("{t}_quantized"),
        ]
        .iter()
        .filter_map(|n| cg.find_value(n))
        .find(|&v| computed(v) && (cg.producer(v).is_some() || cg.is_graph_input(v)));
        if let Some(q) = int
            && let Some((s, z, axis)) = params_of(cg, q)
        {
            let params = match (const_values(cg, s), z.map(|z| const_values(cg, z))) {
                (Some(sv), None) => Some(QuantParams::Const {
                    zero_point: vec![0; sv.len()],
                    scale: sv.iter().map(|&x| x as f32).collect(),
                    axis: axis.map(|a| a.max(0) as usize),
                }),
                (Some(sv), Some(Some(zv))) if zv.len() == sv.len() => Some(QuantParams::Const {
                    scale: sv.iter().map(|&x| x as f32).collect(),
                    zero_point: zv.iter().map(|&x| x as i32).collect(),
                    axis: axis.map(|a| a.max(0) as usize),
                }),
                (None, Some(None)) => Some(QuantParams::RunTime {
                    scale: cg.value_name(s).to_string(),
                    zero_point: cg.value_name(z.expect("some")).to_string(),
                }),
                _ => None,
            };
            if let Some(params) = params {
                out.push(LayerMatch {
                    tensor: t,
                    counterpart: cg.value_name(q).to_string(),
                    kind: CounterpartKind::Integer,
                    params: Some(params),
                });
                continue;
            }
        }
        if let Some(v) = cg
            .find_value(&t)
            .filter(|&v| computed(v) && (cg.producer(v).is_some() || cg.is_graph_input(v)))
        {
            out.push(LayerMatch {
                tensor: t,
                counterpart: cg.value_name(v).to_string(),
                kind: CounterpartKind::Float,
                params: None,
            });
        }
    }
    out
}

/// Dequantizes an integer tensor with per-tensor or per-axis parameters.
pub fn dequantize_tensor(
    t: &Tensor,
    scale: &[f32],
    zero_point: &[i32],
    axis: Option<usize>,
) -> Result<Vec<f32>, String> {
    if t.dtype().is_float() || t.dtype().int_range().is_none() {
        return Err(format!("{} is not an integer type", t.dtype()));
    }
    let q = t.to_f64_vec().ok_or("not numeric")?;
    if scale.is_empty() || scale.len() != zero_point.len() {
        return Err("scale and zero-point lengths differ".into());
    }
    if scale.len() == 1 {
        return Ok(q
            .iter()
            .map(|&v| qtool_tensor::quant::dequantize(v as i32, scale[0], zero_point[0]))
            .collect());
    }
    let shape = t.shape();
    let ax = axis.unwrap_or(1);
    if ax >= shape.len() || shape[ax] != scale.len() {
        return Err(format!(
            "{} per-axis scales do not fit axis {ax} of shape {shape:?}",
            scale.len()
        ));
    }
    let inner: usize = shape[ax + 1..].iter().product();
    let c = shape[ax];
    Ok(q.iter()
        .enumerate()
        .map(|(i, &v)| {
            let k = (i / inner.max(1)) % c;
            qtool_tensor::quant::dequantize(v as i32, scale[k], zero_point[k])
        })
        .collect())
}

fn scalars(t: &Tensor) -> Option<Vec<f64>> {
    t.to_f64_vec()
}

/// State of one layer during the run.
struct LayerState {
    m: LayerMatch,
    order: usize,
    acc: Acc,
    skip: Option<String>,
}

/// Loads both models and runs [`evaluate`].
pub fn evaluate_files(
    reference: &Path,
    candidate: &Path,
    data: &Path,
    s: &EvalSettings,
    progress: &mut dyn FnMut(usize, Option<usize>),
) -> Result<EvalReport> {
    let r = qtool_onnx::load(reference)
        .with_context(|| format!("cannot load reference model {}", reference.display()))?;
    let c = qtool_onnx::load(candidate)
        .with_context(|| format!("cannot load candidate model {}", candidate.display()))?;
    let mut rep = evaluate(&r, &c, data, s, progress)?;
    rep.reference = reference.display().to_string();
    rep.candidate = candidate.display().to_string();
    Ok(rep)
}

/// Compares `candidate` against `reference` on the samples of `data` (any source of
/// [`crate::calibrate::open_source`]). `progress(done, total)` after every sample. The report's
/// `reference` and `candidate` fields are the models' graph names (see [`evaluate_files`]).
pub fn evaluate(
    reference: &Model,
    candidate: &Model,
    data: &Path,
    s: &EvalSettings,
    progress: &mut dyn FnMut(usize, Option<usize>),
) -> Result<EvalReport> {
    let opts = ExecOptions { threads: s.threads };
    let rx = Executor::new(reference, opts.clone()).context("cannot prepare the reference")?;
    let cx = Executor::new(candidate, opts).context("cannot prepare the candidate")?;
    let (rin, cin) = (rx.input_names(), cx.input_names());
    if rin != cin {
        bail!(
            "the models take different inputs: reference ({}), candidate ({})",
            rin.join(", "),
            cin.join(", ")
        );
    }
    // Outputs: by name, else by position.
    let (routs, couts) = (rx.output_names(), cx.output_names());
    let out_pairs: Vec<(String, String)> = if routs.iter().all(|o| couts.contains(o)) {
        routs
            .iter()
            .map(|o| (o.to_string(), o.to_string()))
            .collect()
    } else if routs.len() == couts.len() {
        tracing::warn!(
            "output names differ ({} vs {}); comparing by position",
            routs.join(", "),
            couts.join(", ")
        );
        routs
            .iter()
            .zip(&couts)
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    } else {
        bail!(
            "the models have different outputs: reference ({}), candidate ({})",
            routs.join(", "),
            couts.join(", ")
        );
    };
    let labels = s.labels.as_deref().map(read_labels).transpose()?;

    let mut layers: Vec<LayerState> = if s.outputs_only {
        Vec::new()
    } else {
        match_layers(reference, candidate)
            .into_iter()
            .enumerate()
            .map(|(order, m)| LayerState {
                m,
                order,
                acc: Acc::default(),
                skip: None,
            })
            .collect()
    };
    let by_ref: HashMap<String, usize> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| (l.m.tensor.clone(), i))
        .collect();
    let mut by_cand: HashMap<String, Vec<usize>> = HashMap::new();
    let mut runtime_params: HashMap<String, ()> = HashMap::new();
    for (i, l) in layers.iter().enumerate() {
        by_cand.entry(l.m.counterpart.clone()).or_default().push(i);
        if let Some(QuantParams::RunTime { scale, zero_point }) = &l.m.params {
            runtime_params.insert(scale.clone(), ());
            runtime_params.insert(zero_point.clone(), ());
        }
    }

    let mut source = open_source(reference, &rx, data, s.preprocess.clone())?;
    let total = match (source.len(), s.samples) {
        (Some(n), Some(l)) => Some(n.min(l)),
        (n, l) => n.or(l),
    };
    let mut out_acc: Vec<Acc> = vec![Acc::default(); out_pairs.len()];
    let mut cls_acc: Vec<Option<ClassAcc>> = vec![None; out_pairs.len()];
    let mut not_classifier = vec![false; out_pairs.len()];
    let mut label_row = 0usize;
    let mut done = 0usize;
    while s.samples.is_none_or(|l| done < l) {
        let Some(sample) = source.get(done)? else {
            break;
        };
        let origin = sample.origin.clone();
        // Reference: keep the matched values of this sample only.
        let mut refs: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
        let rout = if layers.is_empty() {
            rx.run(sample.inputs.clone())
        } else {
            rx.run_observed(sample.inputs.clone(), &mut |name, t| {
                if by_ref.contains_key(name)
                    && let Some(v) = float_values(t)
                {
                    refs.insert(name.to_string(), (t.shape().to_vec(), v));
                }
            })
        }
        .with_context(|| format!("reference failed on sample {done} ({origin})"))?;
        // Candidate: compare as the counterparts appear.
        let mut pending: Vec<(usize, Tensor)> = Vec::new();
        let mut params: HashMap<String, Vec<f64>> = HashMap::new();
        let per_layer = !layers.is_empty();
        let cout = {
            let mut compare = |i: usize, t: &Tensor, params: &HashMap<String, Vec<f64>>| -> bool {
                let l = &mut layers[i];
                if l.skip.is_some() {
                    return true;
                }
                let Some((rshape, rv)) = refs.get(&l.m.tensor) else {
                    return true;
                };
                let cv: Result<Vec<f32>, String> = match &l.m.params {
                    None => float_values(t).ok_or_else(|| format!("counterpart is {}", t.dtype())),
                    Some(QuantParams::Const {
                        scale,
                        zero_point,
                        axis,
                    }) => dequantize_tensor(t, scale, zero_point, *axis),
                    Some(QuantParams::RunTime { scale, zero_point }) => {
                        match (params.get(scale), params.get(zero_point)) {
                            (Some(sv), Some(zv)) => {
                                let sv: Vec<f32> = sv.iter().map(|&x| x as f32).collect();
                                let zv: Vec<i32> = zv.iter().map(|&x| x as i32).collect();
                                dequantize_tensor(t, &sv, &zv, None)
                            }
                            _ => return false,
                        }
                    }
                };
                match cv {
                    Err(e) => l.skip = Some(format!("cannot dequantize {}: {e}", l.m.counterpart)),
                    Ok(cv) if cv.len() != rv.len() => {
                        l.skip = Some(format!(
                            "shapes differ: reference {:?}, candidate {:?}",
                            rshape,
                            t.shape()
                        ))
                    }
                    Ok(cv) => l.acc.add(rv, &cv),
                }
                true
            };
            let res = if !per_layer {
                cx.run(sample.inputs)
            } else {
                cx.run_observed(sample.inputs, &mut |name, t| {
                    if runtime_params.contains_key(name)
                        && let Some(v) = scalars(t)
                    {
                        params.insert(name.to_string(), v);
                        let waiting = std::mem::take(&mut pending);
                        for (i, t) in waiting {
                            if !compare(i, &t, &params) {
                                pending.push((i, t));
                            }
                        }
                    }
                    if let Some(idx) = by_cand.get(name) {
                        for &i in idx {
                            if !compare(i, t, &params) {
                                pending.push((i, t.clone()));
                            }
                        }
                    }
                })
            };
            res.with_context(|| format!("candidate failed on sample {done} ({origin})"))?
        };
        drop(refs);

        // Outputs.
        for (k, (rn, cn)) in out_pairs.iter().enumerate() {
            let r = rout.iter().find(|(n, _)| n == rn).map(|(_, t)| t);
            let c = cout.iter().find(|(n, _)| n == cn).map(|(_, t)| t);
            let (Some(r), Some(c)) = (r, c) else {
                bail!("output '{rn}' missing on sample {done}");
            };
            let (Some(rv), Some(cv)) = (float_values(r), float_values(c)) else {
                bail!(
                    "output '{rn}': only float outputs can be compared (reference {}, candidate {})",
                    r.dtype(),
                    c.dtype()
                );
            };
            if r.shape() != c.shape() {
                bail!(
                    "output '{rn}' on sample {done}: shapes differ (reference {:?}, candidate {:?})",
                    r.shape(),
                    c.shape()
                );
            }
            out_acc[k].add(&rv, &cv);
            match classifier_classes(r.shape()) {
                Some(classes) if !not_classifier[k] => {
                    let ca = cls_acc[k].get_or_insert_with(|| ClassAcc {
                        classes,
                        ..ClassAcc::default()
                    });
                    if ca.classes != classes {
                        not_classifier[k] = true;
                        continue;
                    }
                    for (row, (ra, cb)) in rv.chunks(classes).zip(cv.chunks(classes)).enumerate() {
                        let (ta, tb) = (argmax(ra), argmax(cb));
                        ca.rows += 1;
                        ca.top1 += (ta == tb) as u64;
                        ca.top5 += (rank_of(cb, ta) < 5) as u64;
                        if let Some(lab) = &labels {
                            let idx = label_row + row;
                            let Some(&want) = lab.get(idx) else {
                                bail!(
                                    "the labels have {} entries, but the data has more rows (sample {done})",
                                    lab.len()
                                );
                            };
                            ca.correct_ref += (ta as i64 == want) as u64;
                            ca.correct_cand += (tb as i64 == want) as u64;
                        }
                    }
                }
                _ => not_classifier[k] = true,
            }
        }
        // Label rows advance by the batch of the first classifier output.
        let rows = out_pairs
            .iter()
            .enumerate()
            .find(|(k, _)| !not_classifier[*k])
            .and_then(|(k, (rn, _))| {
                let r = rout.iter().find(|(n, _)| n == rn)?;
                Some(r.1.len() / cls_acc[k].as_ref()?.classes)
            })
            .unwrap_or(1);
        label_row += rows;
        done += 1;
        progress(done, total);
    }
    if done == 0 {
        bail!("{}: no samples to evaluate", data.display());
    }
    if let Some(lab) = &labels {
        if not_classifier.iter().all(|&x| x) {
            bail!(
                "labels were given, but no output is classifier-like ([N, C] with C > 1): {}",
                routs.join(", ")
            );
        }
        if s.samples.is_none() && lab.len() != label_row {
            bail!(
                "the labels have {} entries but the data has {label_row} rows",
                lab.len()
            );
        }
    }

    let outputs = out_pairs
        .iter()
        .enumerate()
        .map(|(k, (rn, cn))| OutputMetrics {
            name: rn.clone(),
            candidate_name: cn.clone(),
            error: out_acc[k].metrics(),
            classifier: cls_acc[k].as_ref().filter(|_| !not_classifier[k]).map(|c| {
                let share = |x: u64| x as f64 / c.rows.max(1) as f64;
                ClassifierMetrics {
                    classes: c.classes,
                    rows: c.rows,
                    top1_agreement: share(c.top1),
                    top5_agreement: (c.classes > 5).then(|| share(c.top5)),
                    accuracy_reference: labels.as_ref().map(|_| share(c.correct_ref)),
                    accuracy_candidate: labels.as_ref().map(|_| share(c.correct_cand)),
                }
            }),
        })
        .collect();

    let mut skipped_layers = Vec::new();
    let mut layer_metrics = Vec::new();
    for l in layers {
        if let Some(reason) = l.skip {
            skipped_layers.push(LayerSkip {
                tensor: l.m.tensor,
                reason,
            });
        } else if l.acc.n + l.acc.non_finite > 0 {
            layer_metrics.push(LayerMetrics {
                tensor: l.m.tensor,
                counterpart: l.m.counterpart,
                kind: l.m.kind,
                order: l.order,
                error: l.acc.metrics(),
            });
        }
    }
    layer_metrics.sort_by(|a, b| {
        let key = |x: f64| if x.is_nan() { f64::INFINITY } else { x };
        key(a.error.sqnr_db)
            .total_cmp(&key(b.error.sqnr_db))
            .then_with(|| a.tensor.cmp(&b.tensor))
    });
    skipped_layers.sort_by(|a, b| a.tensor.cmp(&b.tensor));
    let graph_name = |m: &Model| m.graph.name.clone().unwrap_or_default();
    Ok(EvalReport {
        schema: EVAL_SCHEMA.to_string(),
        reference: graph_name(reference),
        candidate: graph_name(candidate),
        candidate_format: format_name(candidate),
        data: data.display().to_string(),
        labels: s.labels.as_ref().map(|p| p.display().to_string()),
        samples: done,
        outputs,
        layers: layer_metrics,
        skipped_layers,
    })
}

/// The quantization format of a model, as `qtool inspect` names it (`float`, `qdq`, ...).
pub fn format_name(m: &Model) -> String {
    serde_json::to_value(crate::inspect(m).quantization.format)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Metrics of a value compared per key, for callers that have their own tensors.
pub fn compare_values(reference: &[f32], candidate: &[f32]) -> ErrorMetrics {
    let mut a = Acc::default();
    a.add(reference, candidate);
    a.metrics()
}
