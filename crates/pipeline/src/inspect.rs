//! `qtool inspect`: a summary of a model (I/O, opsets, op histogram, parameters, where weights live,
//! and which quantization format it uses), as a stable JSON document and as readable text.

use qtool_ir::{DimValue, Graph, Model, Op, TypeKind, ValueInfo};
use qtool_tensor::DType;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The JSON schema identifier written in every report; bumped on incompatible changes.
pub const INSPECT_SCHEMA: &str = "qtool.inspect/1";

/// One graph input or output.
#[derive(Debug, Serialize, PartialEq)]
pub struct IoInfo {
    pub name: String,
    /// ONNX element type name (`FLOAT`, `UINT8`, ...), or the kind of a non-tensor type.
    pub dtype: String,
    /// Dimensions: numbers, symbolic names, or `null` for unknown; absent for unknown rank.
    pub shape: Option<Vec<serde_json::Value>>,
}

/// Count and bytes of stored parameters of one element type.
#[derive(Debug, Serialize, Default, PartialEq)]
pub struct ParamStats {
    pub tensors: usize,
    pub elements: u64,
    pub bytes: u64,
}

/// Where the weights of the model are stored.
#[derive(Debug, Serialize, Default, PartialEq)]
pub struct WeightPlacement {
    pub initializers: usize,
    pub constant_nodes: usize,
    pub external_tensors: usize,
}

/// The quantization format found in a model.
#[derive(Debug, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum QuantFormat {
    /// No quantization ops.
    Float,
    /// QuantizeLinear/DequantizeLinear pairs around float ops.
    Qdq,
    /// Operator-oriented with QLinear* ops (int32 bias, requantized output).
    QopsQlinear,
    /// Operator-oriented with ConvInteger/MatMulInteger and a float rescale, static activations.
    QopsInteger,
    /// Activations quantized at run time (DynamicQuantizeLinear & co).
    Dynamic,
    /// More than one of the above.
    Mixed,
}

/// Summary of the quantization found.
#[derive(Debug, Serialize, PartialEq)]
pub struct QuantSummary {
    pub format: QuantFormat,
    pub quantize_linear: usize,
    pub dequantize_linear: usize,
    pub qlinear_ops: usize,
    pub integer_ops: usize,
    pub dynamic_ops: usize,
    /// Q/DQ nodes with per-axis (per-channel) parameters.
    pub per_axis: usize,
    /// Q/DQ nodes with one scale for the whole tensor.
    pub per_tensor: usize,
    /// Zero-point element types of Q/DQ nodes and their counts.
    pub zero_point_types: BTreeMap<String, usize>,
    /// Smallest and largest constant scale found, when any.
    pub scale_min: Option<f32>,
    pub scale_max: Option<f32>,
}

/// The whole `qtool inspect` report.
#[derive(Debug, Serialize)]
pub struct InspectReport {
    pub schema: &'static str,
    pub ir_version: Option<i64>,
    /// Opset per domain (`""` for the default ONNX domain), as imported.
    pub opsets: BTreeMap<String, i64>,
    pub producer_name: Option<String>,
    pub producer_version: Option<String>,
    pub graph_name: Option<String>,
    pub inputs: Vec<IoInfo>,
    pub outputs: Vec<IoInfo>,
    pub node_count: usize,
    /// Node count per op, keyed `op_type` for the default domain and `domain::op_type` otherwise.
    pub ops: BTreeMap<String, usize>,
    /// Stored parameters per element type (initializers and Constant nodes).
    pub parameters: BTreeMap<String, ParamStats>,
    pub parameter_count: u64,
    pub parameter_bytes: u64,
    pub weights: WeightPlacement,
    pub quantization: QuantSummary,
    /// Ops qtool keeps opaque (not in its op set, or with attributes it did not understand).
    pub opaque_ops: BTreeMap<String, usize>,
    pub functions: Vec<String>,
    pub metadata: BTreeMap<String, String>,
}

fn io_info(g: &Graph, v: qtool_ir::ValueId, info: &ValueInfo) -> IoInfo {
    let name = g.value_name(v).to_string();
    let Some(ty) = &info.ty else {
        return IoInfo {
            name,
            dtype: "UNDEFINED".into(),
            shape: None,
        };
    };
    match &ty.kind {
        TypeKind::Tensor(t) => IoInfo {
            name,
            dtype: t
                .elem
                .map(|d| d.onnx_name().to_string())
                .unwrap_or_else(|| "UNDEFINED".into()),
            shape: t.shape.as_ref().map(|s| {
                s.iter()
                    .map(|d| match &d.value {
                        DimValue::Known(k) => serde_json::Value::from(*k),
                        DimValue::Param(p) => serde_json::Value::from(p.clone()),
                        DimValue::Unknown => serde_json::Value::Null,
                    })
                    .collect()
            }),
        },
        TypeKind::SparseTensor(_) => IoInfo {
            name,
            dtype: "sparse_tensor".into(),
            shape: None,
        },
        TypeKind::Sequence(_) => IoInfo {
            name,
            dtype: "sequence".into(),
            shape: None,
        },
        TypeKind::Map { .. } => IoInfo {
            name,
            dtype: "map".into(),
            shape: None,
        },
        TypeKind::Optional(_) => IoInfo {
            name,
            dtype: "optional".into(),
            shape: None,
        },
        TypeKind::Unset => IoInfo {
            name,
            dtype: "UNDEFINED".into(),
            shape: None,
        },
    }
}

/// Histogram key of an op: `op_type` in the default domain, `domain::op_type` elsewhere.
pub fn op_key(domain: &str, op_type: &str) -> String {
    match qtool_ir::ops::normalize_domain(domain) {
        "" => op_type.to_string(),
        d => format!("{d}::{op_type}"),
    }
}

fn walk_graphs<'a>(g: &'a Graph, out: &mut Vec<&'a Graph>) {
    out.push(g);
    for (_, n) in g.nodes() {
        for a in n.attrs() {
            match &a.value {
                qtool_ir::AttrValue::Graph(sub) => walk_graphs(sub, out),
                qtool_ir::AttrValue::Graphs(subs) => subs.iter().for_each(|s| walk_graphs(s, out)),
                _ => {}
            }
        }
    }
}

/// Builds the report for a model (main graph; op counts include subgraphs).
pub fn inspect(model: &Model) -> InspectReport {
    let g = &model.graph;
    let mut graphs = Vec::new();
    walk_graphs(g, &mut graphs);

    let mut ops = BTreeMap::new();
    let mut opaque_ops = BTreeMap::new();
    let mut node_count = 0;
    let mut parameters: BTreeMap<String, ParamStats> = BTreeMap::new();
    let mut weights = WeightPlacement::default();
    let add_param = |t: &qtool_ir::TensorData, parameters: &mut BTreeMap<String, ParamStats>| {
        let p = parameters
            .entry(t.dtype.onnx_name().to_string())
            .or_default();
        p.tensors += 1;
        p.elements += t.numel() as u64;
        p.bytes += t.byte_size() as u64;
    };
    let (mut q, mut dq, mut qlinear, mut integer, mut dynamic, mut per_axis, mut per_tensor) =
        (0, 0, 0, 0, 0, 0, 0);
    let mut zp_types: BTreeMap<String, usize> = BTreeMap::new();
    let (mut smin, mut smax): (Option<f32>, Option<f32>) = (None, None);

    for sub in &graphs {
        for &v in &sub.initializers {
            let t = sub.initializer(v).expect("initializer data");
            weights.initializers += 1;
            if matches!(t.storage, qtool_ir::Storage::External(_)) {
                weights.external_tensors += 1;
            }
            add_param(t, &mut parameters);
        }
        for (_, n) in sub.nodes() {
            node_count += 1;
            let op = n.op();
            let key = op_key(n.domain.as_deref().unwrap_or(""), op.op_type());
            *ops.entry(key.clone()).or_insert(0) += 1;
            if let Op::Opaque(_) = op {
                *opaque_ops.entry(key).or_insert(0) += 1;
            }
            if let Op::Constant(c) = op {
                weights.constant_nodes += 1;
                if let Some(t) = &c.value {
                    add_param(t, &mut parameters);
                }
            }
            match op {
                Op::QuantizeLinear(_) | Op::DequantizeLinear(_) => {
                    if matches!(op, Op::QuantizeLinear(_)) {
                        q += 1
                    } else {
                        dq += 1
                    }
                    let scale = n.input(1).and_then(|s| sub.constant(s));
                    match scale {
                        Some(s) if s.numel() > 1 => per_axis += 1,
                        _ => per_tensor += 1,
                    }
                    if let Some(s) = scale
                        .and_then(|s| s.to_tensor().ok())
                        .and_then(|t| t.to_f64_vec())
                    {
                        for x in s {
                            let x = x as f32;
                            smin = Some(smin.map_or(x, |m| m.min(x)));
                            smax = Some(smax.map_or(x, |m| m.max(x)));
                        }
                    }
                    let zp_type = n
                        .input(2)
                        .and_then(|z| sub.constant(z).map(|t| t.dtype))
                        .or_else(|| n.input(2).and_then(|z| sub.value(z).fact.dtype))
                        .map(|d| d.onnx_name().to_string())
                        .unwrap_or_else(|| {
                            if matches!(op, Op::QuantizeLinear(_)) {
                                DType::U8.onnx_name().into()
                            } else {
                                "none".into()
                            }
                        });
                    *zp_types.entry(zp_type).or_insert(0) += 1;
                }
                Op::QLinearConv(_)
                | Op::QLinearMatMul(_)
                | Op::QLinearAdd(_)
                | Op::QLinearMul(_)
                | Op::QLinearGlobalAveragePool(_)
                | Op::QLinearAveragePool(_)
                | Op::QLinearConcat(_)
                | Op::QLinearSigmoid(_)
                | Op::QLinearLeakyRelu(_)
                | Op::QLinearSoftmax(_)
                | Op::QGemm(_) => qlinear += 1,
                Op::ConvInteger(_) | Op::MatMulInteger(_) => integer += 1,
                Op::DynamicQuantizeLinear(_)
                | Op::DynamicQuantizeMatMul(_)
                | Op::MatMulIntegerToFloat(_) => dynamic += 1,
                _ => {}
            }
        }
    }

    // Integer ops fed by DynamicQuantizeLinear are the dynamic format, not a static QOps one.
    let static_integer = if dynamic > 0 { 0 } else { integer };
    let mut kinds = Vec::new();
    if dynamic > 0 {
        kinds.push(QuantFormat::Dynamic);
    }
    if qlinear > 0 {
        kinds.push(QuantFormat::QopsQlinear);
    }
    if static_integer > 0 {
        kinds.push(QuantFormat::QopsInteger);
    }
    // Q/DQ nodes are part of every QOps format (at its float boundaries); they make a model QDQ only
    // when no integer op consumes them.
    if kinds.is_empty() && (q > 0 || dq > 0) {
        kinds.push(QuantFormat::Qdq);
    }
    let format = match kinds.len() {
        0 => QuantFormat::Float,
        1 => kinds[0],
        _ => QuantFormat::Mixed,
    };

    let parameter_count = parameters.values().map(|p| p.elements).sum();
    let parameter_bytes = parameters.values().map(|p| p.bytes).sum();
    InspectReport {
        schema: INSPECT_SCHEMA,
        ir_version: model.ir_version,
        opsets: model
            .opset_import
            .iter()
            .map(|o| {
                (
                    qtool_ir::ops::normalize_domain(o.domain.as_deref().unwrap_or("")).to_string(),
                    o.version.unwrap_or(0),
                )
            })
            .collect(),
        producer_name: model.producer_name.clone(),
        producer_version: model.producer_version.clone(),
        graph_name: g.name.clone(),
        inputs: g
            .inputs
            .iter()
            .filter(|(v, _)| g.initializer(*v).is_none())
            .map(|(v, i)| io_info(g, *v, i))
            .collect(),
        outputs: g.outputs.iter().map(|(v, i)| io_info(g, *v, i)).collect(),
        node_count,
        ops,
        parameters,
        parameter_count,
        parameter_bytes,
        weights,
        quantization: QuantSummary {
            format,
            quantize_linear: q,
            dequantize_linear: dq,
            qlinear_ops: qlinear,
            integer_ops: integer,
            dynamic_ops: dynamic,
            per_axis,
            per_tensor,
            zero_point_types: zp_types,
            scale_min: smin,
            scale_max: smax,
        },
        opaque_ops,
        functions: model
            .functions
            .iter()
            .map(|f| op_key(&f.domain, &f.name))
            .collect(),
        metadata: model.metadata_props.iter().cloned().collect(),
    }
}

fn fmt_shape(s: &Option<Vec<serde_json::Value>>) -> String {
    match s {
        None => "[..]".into(),
        Some(d) => {
            let parts: Vec<String> = d
                .iter()
                .map(|x| match x {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => "?".into(),
                    other => other.to_string(),
                })
                .collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

fn fmt_bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

impl InspectReport {
    /// The readable text form.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let opsets: Vec<String> = self
            .opsets
            .iter()
            .map(|(d, v)| format!("{}={v}", if d.is_empty() { "ai.onnx" } else { d }))
            .collect();
        let _ = writeln!(
            s,
            "IR version   {}",
            self.ir_version.map(|v| v.to_string()).unwrap_or("-".into())
        );
        let _ = writeln!(s, "opsets       {}", opsets.join(", "));
        let producer = format!(
            "{} {}",
            self.producer_name.as_deref().unwrap_or("-"),
            self.producer_version.as_deref().unwrap_or("")
        );
        let _ = writeln!(s, "producer     {}", producer.trim_end());
        for i in &self.inputs {
            let _ = writeln!(
                s,
                "input        {}: {} {}",
                i.name,
                i.dtype,
                fmt_shape(&i.shape)
            );
        }
        for o in &self.outputs {
            let _ = writeln!(
                s,
                "output       {}: {} {}",
                o.name,
                o.dtype,
                fmt_shape(&o.shape)
            );
        }
        let _ = writeln!(
            s,
            "parameters   {} in {} ({} initializers, {} Constant nodes, {} external)",
            self.parameter_count,
            fmt_bytes(self.parameter_bytes),
            self.weights.initializers,
            self.weights.constant_nodes,
            self.weights.external_tensors
        );
        for (d, p) in &self.parameters {
            let _ = writeln!(
                s,
                "  {d:<10} {} tensors, {} elements, {}",
                p.tensors,
                p.elements,
                fmt_bytes(p.bytes)
            );
        }
        let q = &self.quantization;
        let _ = writeln!(s, "quantization {:?}", q.format);
        if q.format != QuantFormat::Float {
            let _ = writeln!(
                s,
                "  Q {} / DQ {} (per-axis {}, per-tensor {}), QLinear ops {}, integer ops {}, dynamic ops {}",
                q.quantize_linear,
                q.dequantize_linear,
                q.per_axis,
                q.per_tensor,
                q.qlinear_ops,
                q.integer_ops,
                q.dynamic_ops
            );
            if let (Some(a), Some(b)) = (q.scale_min, q.scale_max) {
                let _ = writeln!(s, "  scales in [{a:e}, {b:e}]");
            }
        }
        let _ = writeln!(s, "nodes        {}", self.node_count);
        let mut hist: Vec<(&String, &usize)> = self.ops.iter().collect();
        hist.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (k, n) in hist {
            let opaque = if self.opaque_ops.contains_key(k) {
                "  (opaque)"
            } else {
                ""
            };
            let _ = writeln!(s, "  {n:>5}  {k}{opaque}");
        }
        if !self.functions.is_empty() {
            let _ = writeln!(s, "functions    {}", self.functions.join(", "));
        }
        s
    }
}
