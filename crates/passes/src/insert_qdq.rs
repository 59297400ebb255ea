//! `insert_qdq`: static QDQ quantization. Puts QuantizeLinear → DequantizeLinear pairs on the
//! activations around the quantizable ops (scale and zero-point from calibration ranges), stores
//! weights quantized (int8 symmetric, or uint8 asymmetric on request; per output channel by
//! default) behind a DequantizeLinear, and biases as int32 with scale `x_scale * w_scale[c]`, after
//! ONNX Runtime's weight-scale adjustment that keeps the bias inside int32.
//!
//! Which tensors get quantized follows ONNX Runtime's QDQ quantizer: the inputs and outputs of the
//! compute ops (Conv, ConvTranspose, Gemm, MatMul, Add, Mul, Concat, AveragePool, GlobalAveragePool,
//! Resize, Sigmoid, HardSigmoid, HardSwish, Softmax); data-movement ops (Reshape, Transpose, Flatten,
//! Squeeze, Unsqueeze, MaxPool, Slice, Split, Gather) whose input is already quantized give their
//! outputs the input's parameters. Each tensor gets one Q/DQ pair that all its consumers share. A
//! Relu or Clip right after a compute op is removed when the quantized range of its output already
//! clips as it would (e.g. uint8 with a Relu range `(0, m)` has zero-point 0).
//! All numbers come from `qtool_tensor::quant`.

use crate::upgrade_opset::{TARGET_OPSET, UpgradeOpset};
use crate::util::{
    add_init, drop_init_if_unused, exclude_regexes, excluded_by, f32s, finish, nname, tensor, udims,
};
use crate::{Pass, PassCx, PassError, PassReport};
use qtool_ir::{Fact, Graph, Model, Node, NodeId, Op, TensorData, ValueId, ops};
use qtool_tensor::DType;
use qtool_tensor::quant::{QScheme, compute_scale_zp, quantize_bias, quantize_to_range};
use regex::Regex;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// How activations are quantized.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ActivationScheme {
    /// uint8, asymmetric (ONNX Runtime's default).
    #[default]
    U8Asymmetric,
    /// int8, symmetric (zero-point 0, range [-127, 127]).
    I8Symmetric,
}

impl ActivationScheme {
    fn scheme(self) -> QScheme {
        match self {
            ActivationScheme::U8Asymmetric => QScheme::U8_ASYM,
            ActivationScheme::I8Symmetric => QScheme::I8_SYM,
        }
    }
    fn dtype(self) -> DType {
        match self {
            ActivationScheme::U8Asymmetric => DType::U8,
            ActivationScheme::I8Symmetric => DType::I8,
        }
    }
}

/// How weights are stored.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WeightScheme {
    /// int8, symmetric (zero-point 0, range [-127, 127]; ONNX Runtime's `weight_type=QInt8`).
    #[default]
    I8Symmetric,
    /// uint8, asymmetric (range [0, 255], zero-point from each channel's range; ONNX Runtime's
    /// `weight_type=QUInt8`).
    U8Asymmetric,
}

impl WeightScheme {
    /// The integer mapping, with ONNX Runtime's `reduce_range` when asked.
    pub fn scheme(self, reduce_range: bool) -> QScheme {
        let base = match self {
            WeightScheme::I8Symmetric => QScheme::I8_SYM,
            WeightScheme::U8Asymmetric => QScheme::U8_ASYM,
        };
        QScheme {
            reduce_range,
            ..base
        }
    }
    /// The stored element type.
    pub fn dtype(self) -> DType {
        match self {
            WeightScheme::I8Symmetric => DType::I8,
            WeightScheme::U8Asymmetric => DType::U8,
        }
    }
}

/// A per-tensor override: either a range (`min` and `max`) or fixed parameters (`scale` and
/// `zero_point`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TensorOverride {
    pub min: Option<f32>,
    pub max: Option<f32>,
    pub scale: Option<f32>,
    pub zero_point: Option<i32>,
}

/// Options of `insert_qdq`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InsertQdqOptions {
    /// Activation quantization (default `u8_asymmetric`).
    pub activations: ActivationScheme,
    /// Weight quantization (default `i8_symmetric`).
    pub weights: WeightScheme,
    /// Weights per output channel (default true); otherwise one scale per weight.
    pub per_channel: bool,
    /// With `u8_asymmetric` weights, Conv weights get one scale and zero-point (per tensor) even
    /// when `per_channel` is on (default false): ConvInteger takes a single weight zero-point, and
    /// per-channel uint8 zero-points differ. Each such Conv is reported.
    pub per_tensor_u8_conv_weights: bool,
    /// Weights use one bit less of range (ONNX Runtime's `reduce_range`; default false).
    pub reduce_range: bool,
    /// Quantize Conv/ConvTranspose/Gemm biases to int32 (default true).
    pub quantize_bias: bool,
    /// Enlarge weight scales so the int32 bias cannot overflow, as ONNX Runtime does (default true;
    /// like ONNX Runtime, only for symmetric int8 weights, whose zero-points are all 0).
    pub adjust_weight_scale_for_bias: bool,
    /// Remove Relu/Clip after a compute op when the output quantization clips the same (default true).
    pub absorb_activations: bool,
    /// Op types to quantize (default: all supported).
    pub op_types: Option<Vec<String>>,
    /// Node names to leave in float.
    pub exclude_nodes: Vec<String>,
    /// Regular expressions over node names to leave in float.
    pub exclude_regex: Vec<String>,
    /// Op types to leave in float.
    pub exclude_op_types: Vec<String>,
    /// Per-tensor overrides, by tensor name.
    pub overrides: BTreeMap<String, TensorOverride>,
}

impl Default for InsertQdqOptions {
    fn default() -> Self {
        InsertQdqOptions {
            activations: ActivationScheme::default(),
            weights: WeightScheme::default(),
            per_channel: true,
            per_tensor_u8_conv_weights: false,
            reduce_range: false,
            quantize_bias: true,
            adjust_weight_scale_for_bias: true,
            absorb_activations: true,
            op_types: None,
            exclude_nodes: Vec::new(),
            exclude_regex: Vec::new(),
            exclude_op_types: Vec::new(),
            overrides: BTreeMap::new(),
        }
    }
}

/// Compute ops (their own output range) and data-movement ops (output keeps the input's parameters).
const COMPUTE_OPS: &[&str] = &[
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "Add",
    "Mul",
    "Concat",
    "AveragePool",
    "GlobalAveragePool",
    "Resize",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Softmax",
];
const MOVEMENT_OPS: &[&str] = &[
    "Reshape",
    "Transpose",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "MaxPool",
    "Slice",
    "Split",
    "Gather",
];

/// The `insert_qdq` pass.
#[derive(Debug)]
pub struct InsertQdq {
    opts: InsertQdqOptions,
    regex: Vec<Regex>,
}

impl InsertQdq {
    pub fn new(opts: InsertQdqOptions) -> Result<Self, PassError> {
        let bad = |message: String| PassError::InvalidOptions {
            pass: "insert_qdq",
            message,
        };
        let regex = exclude_regexes("insert_qdq", &opts.exclude_regex)?;
        for t in opts.op_types.iter().flatten().chain(&opts.exclude_op_types) {
            if !COMPUTE_OPS.contains(&t.as_str())
                && !MOVEMENT_OPS.contains(&t.as_str())
                && !matches!(t.as_str(), "Relu" | "Clip")
            {
                return Err(bad(format!(
                    "op type '{t}' is not one insert_qdq quantizes"
                )));
            }
        }
        for (name, o) in &opts.overrides {
            let range = o.min.is_some() || o.max.is_some();
            let fixed = o.scale.is_some() || o.zero_point.is_some();
            if range == fixed
                || (range && (o.min.is_none() || o.max.is_none()))
                || (fixed && (o.scale.is_none() || o.zero_point.is_none()))
            {
                return Err(bad(format!(
                    "override '{name}': give either min and max, or scale and zero_point"
                )));
            }
            if o.scale.is_some_and(|s| !(s > 0.0 && s.is_finite())) {
                return Err(bad(format!("override '{name}': scale must be positive")));
            }
            if let Some(zp) = o.zero_point {
                let (lo, hi) = opts.activations.dtype().int_range().expect("integer type");
                if (zp as i64) < lo || (zp as i64) > hi {
                    return Err(bad(format!(
                        "override '{name}': zero_point {zp} is outside the activation type"
                    )));
                }
            }
        }
        Ok(InsertQdq { opts, regex })
    }

    fn act_params_for(&self, name: &str, ranges: &crate::Ranges) -> Option<QP> {
        let dtype = self.opts.activations.dtype();
        if let Some(o) = self.opts.overrides.get(name) {
            if let (Some(scale), Some(zp)) = (o.scale, o.zero_point) {
                return Some(QP { scale, zp, dtype });
            }
            if let (Some(lo), Some(hi)) = (o.min, o.max) {
                return Some(QP::from_range(lo, hi, self.opts.activations));
            }
        }
        ranges
            .get(name)
            .map(|&(lo, hi)| QP::from_range(lo, hi, self.opts.activations))
    }

    fn excluded(&self, node: &Node, id: NodeId) -> Option<String> {
        excluded_by(
            node,
            id,
            &self.opts.exclude_nodes,
            &self.regex,
            &self.opts.exclude_op_types,
        )
    }

    fn selected(&self, op_type: &str) -> bool {
        self.opts
            .op_types
            .as_ref()
            .is_none_or(|l| l.iter().any(|x| x == op_type))
    }

    fn weight_scheme(&self) -> QScheme {
        self.opts.weights.scheme(self.opts.reduce_range)
    }
}

/// Quantization parameters of one activation tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
struct QP {
    scale: f32,
    zp: i32,
    dtype: DType,
}

impl QP {
    fn from_range(lo: f32, hi: f32, a: ActivationScheme) -> QP {
        let p = compute_scale_zp(lo, hi, a.scheme());
        QP {
            scale: p.scale,
            zp: p.zero_point,
            dtype: a.dtype(),
        }
    }
    /// The real interval the quantized type can represent.
    fn real_range(&self) -> (f32, f32) {
        let (lo, hi) = self.dtype.int_range().expect("integer type");
        (
            (lo as i32 - self.zp) as f32 * self.scale,
            (hi as i32 - self.zp) as f32 * self.scale,
        )
    }
}

pub(crate) fn zp_tensor(dtype: DType, shape: &[usize], zps: &[i32]) -> TensorData {
    match dtype {
        DType::U8 => tensor(shape, zps.iter().map(|&z| z as u8).collect::<Vec<_>>()),
        DType::I8 => tensor(shape, zps.iter().map(|&z| z as i8).collect::<Vec<_>>()),
        _ => tensor(shape, zps.to_vec()),
    }
}

/// ONNX Runtime's `_adjust_weight_scale_for_int32_bias`: where `x_scale * w_scale` (f64) is below
/// `1.0001 * 2 * max|b| / (2^32 - 2)`, the weight scale is multiplied by the ratio so the quantized
/// bias fits int32. Per tensor (`w_scales.len() == 1`) `max|b|` is over the whole bias; per channel
/// it is `|b[c]|`. Returns whether any scale changed.
pub fn bias_weight_scale_adjust(x_scale: f32, w_scales: &mut [f32], bias: &[f32]) -> bool {
    let qrange = i32::MAX as f64 - (i32::MIN as f64 + 1.0);
    let mut changed = false;
    let per_tensor = w_scales.len() == 1;
    for (c, ws) in w_scales.iter_mut().enumerate() {
        let absmax = if per_tensor {
            bias.iter().fold(0f64, |m, &b| m.max((b as f64).abs()))
        } else {
            (bias.get(c).copied().unwrap_or(0.0) as f64).abs()
        };
        let smallest = 1.0001 * (2.0 * absmax) / qrange;
        let cand = x_scale as f64 * *ws as f64;
        if cand < smallest && cand > 0.0 {
            *ws = (*ws as f64 * (smallest / cand)) as f32;
            changed = true;
        }
    }
    changed
}

/// Per-channel (or per-tensor when `axis` is None) scales and zero-points of a weight.
pub(crate) fn weight_params(
    w: &[f32],
    shape: &[usize],
    axis: Option<usize>,
    scheme: QScheme,
) -> (Vec<f32>, Vec<i32>) {
    let (n, inner) = match axis {
        Some(a) => (shape[a], shape[a + 1..].iter().product::<usize>()),
        None => (1, w.len().max(1)),
    };
    let mut lo = vec![f32::INFINITY; n];
    let mut hi = vec![f32::NEG_INFINITY; n];
    for (i, &x) in w.iter().enumerate() {
        let c = (i / inner) % n;
        lo[c] = lo[c].min(x);
        hi[c] = hi[c].max(x);
    }
    let ps: Vec<_> = (0..n)
        .map(|c| compute_scale_zp(lo[c].min(0.0), hi[c].max(0.0), scheme))
        .collect();
    (
        ps.iter().map(|p| p.scale).collect(),
        ps.iter().map(|p| p.zero_point).collect(),
    )
}

/// The weight quantized to `dtype` (int8 or uint8; values clipped to the type's range, as ONNX
/// Runtime's QuantizeLinear does), stored with `shape`.
pub(crate) fn quantize_weight(
    w: &[f32],
    shape: &[usize],
    axis: Option<usize>,
    scales: &[f32],
    zps: &[i32],
    dtype: DType,
) -> TensorData {
    let (n, inner) = match axis {
        Some(a) => (shape[a], shape[a + 1..].iter().product::<usize>()),
        None => (1, w.len().max(1)),
    };
    let (lo, hi) = dtype.int_range().expect("integer weight type");
    let q: Vec<i32> = w
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let c = (i / inner) % n;
            quantize_to_range(x, scales[c], zps[c], lo as i32, hi as i32)
        })
        .collect();
    zp_tensor(dtype, shape, &q)
}

/// How a node's inputs are treated.
enum Kind {
    Compute {
        acts: Vec<usize>,
        weight: Option<(usize, Option<usize>)>,
        bias: Option<usize>,
    },
    Movement,
}

fn is_float(g: &Graph, v: ValueId) -> bool {
    crate::util::dtype_of(g, v).is_none_or(|d| d == DType::F32)
}

struct WeightJob {
    node: NodeId,
    slot: usize,
    axis: Option<usize>,
    bias: Option<usize>,
    x: ValueId,
    /// Per tensor although per channel was asked (`per_tensor_u8_conv_weights`).
    one_zp: bool,
}

impl Pass for InsertQdq {
    fn name(&self) -> &'static str {
        "insert_qdq"
    }

    fn run(&self, model: &mut Model, cx: &PassCx) -> Result<PassReport, PassError> {
        let ranges = cx.ranges.ok_or(PassError::Failed {
            pass: "insert_qdq",
            message: "no calibration ranges were given".into(),
        })?;
        let mut report = PassReport::default();
        let _ = qtool_ir::infer_shapes(model, &[]);
        // Q/DQ need opset 10, per-axis DequantizeLinear 13.
        let from = model.onnx_opset();
        let has_weights = model.graph.nodes().any(|(_, n)| {
            matches!(
                n.op(),
                Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm(_) | Op::MatMul(_)
            ) && n
                .input(1)
                .is_some_and(|w| model.graph.initializer(w).is_some())
        });
        if from < 10 || (self.opts.per_channel && has_weights && from < TARGET_OPSET) {
            let r = UpgradeOpset.run(model, cx).map_err(|e| PassError::Failed {
                pass: "insert_qdq",
                message: format!("raising the opset to {TARGET_OPSET} failed: {e}"),
            })?;
            report.extend(r);
            let _ = qtool_ir::infer_shapes(model, &[]);
        }
        let g = &mut model.graph;

        // ---- plan
        let mut params: HashMap<ValueId, QP> = HashMap::new();
        let mut order: Vec<ValueId> = Vec::new();
        let mut const_acts: Vec<(NodeId, usize, ValueId)> = Vec::new();
        let mut weights: Vec<WeightJob> = Vec::new();
        let mut absorbed: HashSet<NodeId> = HashSet::new();
        let mut absorbs: Vec<(NodeId, NodeId, ValueId)> = Vec::new();
        let mut mark = |params: &mut HashMap<ValueId, QP>, v: ValueId, p: QP| {
            if let std::collections::hash_map::Entry::Vacant(e) = params.entry(v) {
                e.insert(p);
                order.push(v);
            }
        };
        for n in g.node_ids().to_vec() {
            if absorbed.contains(&n) {
                continue;
            }
            let node = g.node(n);
            let op_type = node.op().op_type().to_string();
            let name = nname(g, n);
            let kind = match node.op() {
                Op::Conv(_) => Kind::Compute {
                    acts: vec![0],
                    weight: Some((1, Some(0))),
                    bias: Some(2),
                },
                Op::ConvTranspose(c) => {
                    let axis = if c.group.unwrap_or(1) == 1 {
                        Some(1)
                    } else {
                        None
                    };
                    Kind::Compute {
                        acts: vec![0],
                        weight: Some((1, axis)),
                        bias: Some(2),
                    }
                }
                Op::Gemm(gm) => {
                    let unit = gm.alpha.unwrap_or(1.0) == 1.0 && gm.beta.unwrap_or(1.0) == 1.0;
                    let axis = if gm.trans_b.unwrap_or(0) == 1 { 0 } else { 1 };
                    Kind::Compute {
                        acts: vec![0],
                        weight: Some((1, Some(axis))),
                        bias: if unit { Some(2) } else { None },
                    }
                }
                Op::MatMul(_) => {
                    let w = node.input(1).and_then(|w| g.initializer(w));
                    match w {
                        Some(t) if t.dims.len() >= 2 => Kind::Compute {
                            acts: vec![0],
                            weight: Some((1, Some(t.dims.len() - 1))),
                            bias: None,
                        },
                        _ => Kind::Compute {
                            acts: vec![0, 1],
                            weight: None,
                            bias: None,
                        },
                    }
                }
                Op::Add(_) | Op::Mul(_) => Kind::Compute {
                    acts: vec![0, 1],
                    weight: None,
                    bias: None,
                },
                Op::Concat(_) => Kind::Compute {
                    acts: (0..node.inputs().len()).collect(),
                    weight: None,
                    bias: None,
                },
                Op::AveragePool(_)
                | Op::GlobalAveragePool(_)
                | Op::Resize(_)
                | Op::Sigmoid(_)
                | Op::HardSigmoid(_)
                | Op::HardSwish(_)
                | Op::Softmax(_) => Kind::Compute {
                    acts: vec![0],
                    weight: None,
                    bias: None,
                },
                Op::Reshape(_)
                | Op::Transpose(_)
                | Op::Flatten(_)
                | Op::Squeeze(_)
                | Op::Unsqueeze(_)
                | Op::MaxPool(_)
                | Op::Slice(_)
                | Op::Split(_)
                | Op::Gather(_) => Kind::Movement,
                _ => continue,
            };
            if !self.selected(&op_type) {
                continue;
            }
            if let Some(why) = self.excluded(node, n) {
                report.skip(name, op_type, why);
                continue;
            }
            match kind {
                Kind::Movement => {
                    let Some(x) = node.input(0) else { continue };
                    let Some(p) = params.get(&x).copied() else {
                        report.skip(
                            name,
                            op_type,
                            format!("its input '{}' is not quantized", g.value_name(x)),
                        );
                        continue;
                    };
                    let outs: Vec<ValueId> = node
                        .outputs()
                        .iter()
                        .flatten()
                        .copied()
                        .filter(|&o| is_float(g, o))
                        .collect();
                    let outs = if matches!(node.op(), Op::MaxPool(_)) {
                        outs.into_iter().take(1).collect()
                    } else {
                        outs
                    };
                    for o in outs {
                        mark(&mut params, o, p);
                    }
                    report.rewrite(name, "output keeps the input's quantization");
                }
                Kind::Compute { acts, weight, bias } => {
                    let mut new: Vec<(ValueId, QP)> = Vec::new();
                    let mut consts: Vec<(usize, ValueId)> = Vec::new();
                    let mut why: Option<String> = None;
                    let mut act_slots = acts.clone();
                    let mut wjob = None;
                    if let Some((ws, axis)) = weight {
                        match node.input(ws) {
                            Some(w) if g.initializer(w).is_some_and(|t| t.dtype == DType::F32) => {
                                let one_zp = self.opts.per_tensor_u8_conv_weights
                                    && self.opts.weights == WeightScheme::U8Asymmetric
                                    && matches!(node.op(), Op::Conv(_));
                                let axis = if self.opts.per_channel && !one_zp {
                                    axis
                                } else {
                                    None
                                };
                                let b = bias.filter(|_| self.opts.quantize_bias).filter(|&b| {
                                    node.input(b)
                                        .and_then(|bv| g.initializer(bv))
                                        .is_some_and(|t| t.dtype == DType::F32 && t.dims.len() == 1)
                                });
                                wjob = Some(WeightJob {
                                    node: n,
                                    slot: ws,
                                    axis,
                                    bias: b,
                                    x: node.input(0).unwrap_or(w),
                                    one_zp: one_zp && self.opts.per_channel,
                                });
                            }
                            Some(_) => act_slots.push(ws),
                            None => {}
                        }
                    }
                    for &slot in &act_slots {
                        let Some(v) = node.input(slot) else { continue };
                        if !is_float(g, v) {
                            why = Some(format!("input '{}' is not float32", g.value_name(v)));
                            break;
                        }
                        if g.constant(v).is_some() {
                            consts.push((slot, v));
                        } else if params.contains_key(&v) || new.iter().any(|(x, _)| *x == v) {
                        } else if let Some(p) = self.act_params_for(g.value_name(v), ranges) {
                            new.push((v, p));
                        } else {
                            why = Some(format!(
                                "no calibration range for input '{}'",
                                g.value_name(v)
                            ));
                            break;
                        }
                    }
                    let y = node.output(0);
                    let mut target = None;
                    if why.is_none() {
                        match y {
                            Some(y) if is_float(g, y) => {
                                // A following Relu/Clip whose clipping the output quantization already does.
                                let mut out = (y, None);
                                if self.opts.absorb_activations
                                    && let [(a, 0)] = g.value(y).uses()
                                    && !g.is_graph_output(y)
                                    && let Some(r) = self.absorbable(g, *a, ranges)
                                {
                                    out = (r.0, Some((*a, r.1)));
                                }
                                match out
                                    .1
                                    .map(|(_, p)| p)
                                    .or_else(|| self.act_params_for(g.value_name(out.0), ranges))
                                {
                                    Some(p) => target = Some((out.0, p, out.1.map(|(a, _)| a))),
                                    None => {
                                        why = Some(format!(
                                            "no calibration range for output '{}'",
                                            g.value_name(y)
                                        ))
                                    }
                                }
                            }
                            _ => why = Some("its output is not float32".into()),
                        }
                    }
                    if let Some(w) = why {
                        report.skip(name, op_type, w);
                        continue;
                    }
                    let (t, tp, absorb) = target.expect("set when no reason");
                    for (v, p) in new {
                        mark(&mut params, v, p);
                    }
                    for (slot, v) in consts {
                        const_acts.push((n, slot, v));
                    }
                    mark(&mut params, t, tp);
                    let mut what = "quantized (QDQ)".to_string();
                    if let Some(w) = wjob {
                        what.push_str(match w.axis {
                            Some(_) => ", weight per channel",
                            None => ", weight per tensor",
                        });
                        if self.opts.weights == WeightScheme::U8Asymmetric {
                            what.push_str(" uint8");
                        }
                        if w.one_zp {
                            what.push_str(
                                " (ConvInteger takes one weight zero-point; per_tensor_u8_conv_weights)",
                            );
                        }
                        if w.bias.is_some() {
                            what.push_str(", bias int32");
                        }
                        weights.push(w);
                    }
                    if let Some(a) = absorb {
                        absorbed.insert(a);
                        absorbs.push((n, a, t));
                        report.rewrite(
                            nname(g, a),
                            format!("absorbed into the output quantization of '{name}'"),
                        );
                    }
                    report.rewrite(name, what);
                }
            }
        }

        // ---- apply: absorbed activations first, so the compute op writes their output.
        for (p, a, r) in absorbs {
            let extra: Vec<ValueId> = g
                .node(a)
                .inputs()
                .iter()
                .skip(1)
                .flatten()
                .copied()
                .collect();
            g.remove_node(a);
            g.set_output(p, 0, Some(r))
                .map_err(|source| PassError::Graph {
                    pass: "insert_qdq",
                    source,
                })?;
            for v in extra {
                drop_init_if_unused(g, v);
            }
        }
        for v in order {
            let p = params[&v];
            insert_pair(g, v, p);
        }
        let mut const_done: HashMap<ValueId, ValueId> = HashMap::new();
        for (n, slot, v) in const_acts {
            let dq = match const_done.get(&v) {
                Some(d) => *d,
                None => {
                    let t = g.constant(v).expect("constant").clone();
                    let data = f32s(&t).unwrap_or_default();
                    let (lo, hi) = data
                        .iter()
                        .fold((0f32, 0f32), |(a, b), &x| (a.min(x), b.max(x)));
                    let p = self
                        .act_params_for(g.value_name(v), &BTreeMap::new())
                        .unwrap_or_else(|| QP::from_range(lo, hi, self.opts.activations));
                    let q: Vec<i32> = data
                        .iter()
                        .map(|&x| {
                            qtool_tensor::quant::quantize_to_range(
                                x,
                                p.scale,
                                p.zp,
                                p.dtype.int_range().expect("int").0 as i32,
                                p.dtype.int_range().expect("int").1 as i32,
                            )
                        })
                        .collect();
                    let d = add_dq_weight(
                        g,
                        v,
                        zp_tensor(p.dtype, &udims(&t), &q),
                        &[p.scale],
                        &[p.zp],
                        p.dtype,
                        None,
                        n,
                    );
                    const_done.insert(v, d);
                    d
                }
            };
            g.set_input(n, slot, Some(dq));
            drop_init_if_unused(g, v);
        }
        let mut cache: Vec<(ValueId, Option<usize>, Vec<u32>, ValueId)> = Vec::new();
        for job in weights {
            let w = g.node(job.node).input(job.slot).expect("planned");
            let wt = g.initializer(w).expect("planned").clone();
            let shape = udims(&wt);
            let data = f32s(&wt).unwrap_or_default();
            let (mut scales, zps) = weight_params(&data, &shape, job.axis, self.weight_scheme());
            let bias = job
                .bias
                .and_then(|b| g.node(job.node).input(b))
                .and_then(|b| Some((b, f32s(g.initializer(b)?)?)));
            let x_scale = params.get(&job.x).map(|p| p.scale);
            let bias = bias.filter(|(_, bd)| {
                x_scale.is_some() && (scales.len() == 1 || bd.len() == scales.len())
            });
            if let (Some((_, bd)), Some(xs)) = (&bias, x_scale)
                && self.opts.adjust_weight_scale_for_bias
                && self.opts.weights == WeightScheme::I8Symmetric
            {
                bias_weight_scale_adjust(xs, &mut scales, bd);
            }
            let key: Vec<u32> = scales.iter().map(|s| s.to_bits()).collect();
            let dq = match cache
                .iter()
                .find(|(v, a, k, _)| *v == w && *a == job.axis && *k == key)
            {
                Some(c) => c.3,
                None => {
                    let dtype = self.opts.weights.dtype();
                    let q = quantize_weight(&data, &shape, job.axis, &scales, &zps, dtype);
                    let d = add_dq_weight(g, w, q, &scales, &zps, dtype, job.axis, job.node);
                    cache.push((w, job.axis, key, d));
                    d
                }
            };
            g.set_input(job.node, job.slot, Some(dq));
            drop_init_if_unused(g, w);
            if let (Some((bv, bd)), Some(xs)) = (bias, x_scale) {
                let bscales: Vec<f32> = scales.iter().map(|&s| xs * s).collect();
                let qb: Vec<i32> = bd
                    .iter()
                    .enumerate()
                    .map(|(c, &b)| {
                        quantize_bias(b, bscales[if bscales.len() == 1 { 0 } else { c }])
                    })
                    .collect();
                let axis = if bscales.len() > 1 { Some(0) } else { None };
                let zeros = vec![0; bscales.len()];
                let d = add_dq_weight(
                    g,
                    bv,
                    tensor(&[qb.len()], qb),
                    &bscales,
                    &zeros,
                    DType::I32,
                    axis,
                    job.node,
                );
                g.set_input(job.node, job.bias.expect("bias slot"), Some(d));
                drop_init_if_unused(g, bv);
            }
        }
        finish(self.name(), g)?;
        Ok(report)
    }
}

impl InsertQdq {
    /// If node `a` is a Relu or Clip whose output quantization clips as it does, its output and
    /// that output's parameters.
    fn absorbable(&self, g: &Graph, a: NodeId, ranges: &crate::Ranges) -> Option<(ValueId, QP)> {
        let node = g.node(a);
        if self.excluded(node, a).is_some() {
            return None;
        }
        let scalar = |i: usize| {
            node.input(i)
                .and_then(|v| g.constant(v))
                .and_then(f32s)
                .and_then(|v| v.first().copied())
        };
        let (lo, hi) = match node.op() {
            Op::Relu(_) => (0.0, f32::INFINITY),
            Op::Clip(c) => (
                c.min.or_else(|| scalar(1)).unwrap_or(f32::NEG_INFINITY),
                c.max.or_else(|| scalar(2)).unwrap_or(f32::INFINITY),
            ),
            _ => return None,
        };
        let r = node.output(0)?;
        let p = self.act_params_for(g.value_name(r), ranges)?;
        let (qlo, qhi) = p.real_range();
        let tol = p.scale / 2.0;
        (qlo >= lo - tol && qhi <= hi + tol).then_some((r, p))
    }
}

/// Inserts one QuantizeLinear → DequantizeLinear pair on activation `t`; every consumer reads the
/// DequantizeLinear output. A graph output keeps its name (the pair's output takes it).
fn insert_pair(g: &mut Graph, t: ValueId, p: QP) {
    let base = g.value_name(t).to_string();
    let scale = add_init(
        g,
        &format!("{base}_scale"),
        tensor::<f32>(&[], vec![p.scale]),
    );
    let zp = add_init(
        g,
        &format!("{base}_zero_point"),
        zp_tensor(p.dtype, &[], &[p.zp]),
    );
    let q_out = g.add_fresh_value(&format!("{base}_QuantizeLinear_Output"));
    let dq_out = g.add_fresh_value(&format!("{base}_DequantizeLinear_Output"));
    let fact = g.value(t).fact.clone();
    g.value_mut(q_out).fact = Fact {
        dtype: Some(p.dtype),
        shape: fact.shape.clone(),
    };
    g.value_mut(dq_out).fact = fact;
    g.replace_all_uses(t, dq_out);
    let qn = Node::new(
        ops::QuantizeLinear::default(),
        format!("{base}_QuantizeLinear"),
    );
    let dqn = Node::new(
        ops::DequantizeLinear::default(),
        format!("{base}_DequantizeLinear"),
    );
    let qi = [Some(t), Some(scale), Some(zp)];
    let di = [Some(q_out), Some(scale), Some(zp)];
    match g.producer(t) {
        Some(prod) => {
            let q = g
                .insert_node_after(prod, qn, &qi, &[Some(q_out)])
                .expect("fresh");
            g.insert_node_after(q, dqn, &di, &[Some(dq_out)])
                .expect("fresh");
        }
        None => {
            let anchor = g
                .consumers(dq_out)
                .first()
                .copied()
                .or_else(|| g.node_ids().first().copied());
            match anchor {
                Some(a) => {
                    g.insert_node_before(a, qn, &qi, &[Some(q_out)])
                        .expect("fresh");
                    g.insert_node_before(a, dqn, &di, &[Some(dq_out)])
                        .expect("fresh");
                }
                None => {
                    g.add_node(qn, &qi, &[Some(q_out)]).expect("fresh");
                    g.add_node(dqn, &di, &[Some(dq_out)]).expect("fresh");
                }
            }
        }
    }
    // A graph output keeps its name; one that is also a graph input stays the float input.
    if g.is_graph_output(t) && !g.is_graph_input(t) {
        g.replace_graph_output(t, dq_out);
        let renamed = g.fresh_name(&format!("{base}_QuantizeLinear_Input"));
        g.rename_value(t, &renamed).expect("fresh");
        g.rename_value(dq_out, &base).expect("freed");
    }
}

/// Stores `q` as an initializer `<w>_quantized` with its scale and zero-point, and adds a
/// DequantizeLinear (per `axis` when given) just before node `before`; returns its output.
fn add_dq_weight(
    g: &mut Graph,
    w: ValueId,
    q: TensorData,
    scales: &[f32],
    zps: &[i32],
    dtype: DType,
    axis: Option<usize>,
    before: NodeId,
) -> ValueId {
    let base = g.value_name(w).to_string();
    let fact = g.value(w).fact.clone();
    let (sfx_s, sfx_z) = if dtype == DType::I32 {
        ("_quantized_scale", "_quantized_zero_point")
    } else {
        ("_scale", "_zero_point")
    };
    let qv = add_init(g, &format!("{base}_quantized"), q);
    let shape: Vec<usize> = if axis.is_some() {
        vec![scales.len()]
    } else {
        vec![]
    };
    let s = add_init(
        g,
        &format!("{base}{sfx_s}"),
        tensor(&shape, scales.to_vec()),
    );
    let z = add_init(g, &format!("{base}{sfx_z}"), zp_tensor(dtype, &shape, zps));
    let out = g.add_fresh_value(&format!("{base}_DequantizeLinear_Output"));
    g.value_mut(out).fact = Fact {
        dtype: Some(DType::F32),
        shape: fact.shape,
    };
    let op = ops::DequantizeLinear {
        axis: axis.map(|a| a as i64),
        ..Default::default()
    };
    g.insert_node_before(
        before,
        Node::new(op, format!("{base}_DequantizeLinear")),
        &[Some(qv), Some(s), Some(z)],
        &[Some(out)],
    )
    .expect("fresh");
    out
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_u8;
