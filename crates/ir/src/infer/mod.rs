//! Shape and type inference: gives every value a dtype and, once the graph inputs are fixed, a static
//! shape, evaluating small shape subgraphs (Shape → Gather → Concat → Reshape, ...) on the way.
//!
//! [`infer_shapes`] walks the nodes in topological order and applies one rule per op (ONNX semantics,
//! opsets 7–21, attribute and input forms alike). Rules live in one module per op family; the
//! dispatch `match` on [`Op`] is below. Contradictions (a Conv channel mismatch, shapes that do not
//! broadcast, a Reshape that changes the element count, ...) are errors naming the node; values that
//! stay unknown (opaque ops, data-dependent sizes) are listed in the [`InferReport`].

mod conv;
mod dims;
mod elementwise;
mod gather;
mod linalg;
mod norm;
mod quant;
mod reduce;
mod resample;
mod rnn;
mod shape_ops;
mod value;

#[cfg(test)]
mod tests;

use crate::graph::{Graph, Node, NodeId, ValueId};
use crate::model::Model;
use crate::ops::{Op, normalize_domain};
use crate::types::{DimValue, Fact};
use qtool_tensor::DType;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use value::KVal;

/// The newest opset whose rules are implemented (used when a model imports no opset for a domain).
pub const LATEST_ONNX_OPSET: i64 = 21;

/// An inference failure: the model contradicts itself or the given input shapes.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InferError {
    /// A node whose inputs contradict its op (the message says how).
    #[error("node '{node}' ({op}): {message}")]
    Node {
        node: String,
        op: String,
        message: String,
    },
    /// An input shape was given for a name that is not a (non-initializer) graph input.
    #[error("a shape was given for '{0}', which is not a graph input")]
    NotAnInput(String),
    /// A given input shape contradicts the declared one (rank or a fixed dimension).
    #[error("input '{name}': the given shape {given:?} does not fit its declared shape {declared}")]
    InputMismatch {
        name: String,
        given: Vec<usize>,
        declared: String,
    },
    /// The graph has a cycle.
    #[error("the graph has a cycle through node '{0}'")]
    Cycle(String),
}

/// A value inference could not make fully static (unknown dtype, rank or some dimension).
#[derive(Clone, Debug, PartialEq)]
pub struct Unresolved {
    pub value: String,
    /// The producing node (`None` for graph inputs and outer-scope values).
    pub node: Option<String>,
    /// The producing node's op type.
    pub op: Option<String>,
    /// What inference knows about it.
    pub fact: Fact,
    pub reason: String,
}

/// A declared type (value_info or graph output) that disagrees with the inferred one.
#[derive(Clone, Debug, PartialEq)]
pub struct DeclMismatch {
    pub value: String,
    pub declared: Fact,
    pub inferred: Fact,
}

/// What [`infer_shapes`] found besides the facts it wrote.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct InferReport {
    /// Values left without a static dtype and shape, with the reason.
    pub unresolved: Vec<Unresolved>,
    /// Declared types that disagree with inference (inference wins). Only collected when no input
    /// shapes were given, since overriding inputs makes declared intermediate types stale.
    pub mismatches: Vec<DeclMismatch>,
    /// Number of values whose known contents were computed (constants and shape data).
    pub known_values: usize,
    /// Number of nodes visited.
    pub nodes: usize,
}

impl InferReport {
    /// True when every value got a static dtype and shape.
    pub fn is_complete(&self) -> bool {
        self.unresolved.is_empty()
    }
}

fn fmt_fact(f: &Fact) -> String {
    let dt = f.dtype.map(|d| d.short_name()).unwrap_or("?");
    match &f.shape {
        Some(s) => format!("{dt}{}", dims::fmt_dims(s)),
        None => format!("{dt}[..]"),
    }
}

impl fmt::Display for InferReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} nodes, {} values with known contents, {} unresolved",
            self.nodes,
            self.known_values,
            self.unresolved.len()
        )?;
        for u in &self.unresolved {
            let by = match (&u.node, &u.op) {
                (Some(n), Some(o)) => format!(" (from '{n}' {o})"),
                _ => String::new(),
            };
            writeln!(f, "  {} {}{}: {}", u.value, fmt_fact(&u.fact), by, u.reason)?;
        }
        for m in &self.mismatches {
            writeln!(
                f,
                "  declared {} as {}, inferred {}",
                m.value,
                fmt_fact(&m.declared),
                fmt_fact(&m.inferred)
            )?;
        }
        Ok(())
    }
}

/// Infers the dtype and shape of every value of the main graph, writing [`crate::Value::fact`].
///
/// `input_shapes` fixes the shapes of graph inputs (overriding symbolic dimensions; a fixed declared
/// dimension must agree). With an empty list the declared input types are used and symbolic
/// dimensions are propagated where the rules can. Declared value_info and output types fill in what
/// inference cannot tell (e.g. outputs of opaque ops).
pub fn infer_shapes(
    model: &mut Model,
    input_shapes: &[(String, Vec<usize>)],
) -> Result<InferReport, InferError> {
    let imports: Vec<(String, Option<i64>)> = model
        .opset_import
        .iter()
        .map(|o| {
            (
                normalize_domain(o.domain.as_deref().unwrap_or("")).to_string(),
                o.version,
            )
        })
        .collect();
    let opset_of = |domain: &str| -> i64 {
        let d = normalize_domain(domain);
        imports
            .iter()
            .find(|(x, _)| x == d)
            .and_then(|(_, v)| *v)
            .unwrap_or(if d.is_empty() { LATEST_ONNX_OPSET } else { 1 })
    };
    let g = &mut model.graph;
    let overriding = !input_shapes.is_empty();
    let mut st = State::default();

    // Graph inputs.
    let mut given: HashMap<&str, &[usize]> = HashMap::new();
    for (name, shape) in input_shapes {
        let ok = g
            .find_value(name)
            .is_some_and(|v| g.is_graph_input(v) && g.initializer(v).is_none());
        if !ok {
            return Err(InferError::NotAnInput(name.clone()));
        }
        given.insert(name.as_str(), shape.as_slice());
    }
    let inputs: Vec<(ValueId, Option<Fact>)> = g
        .inputs
        .iter()
        .map(|(v, info)| (*v, info.ty.as_ref().map(Fact::from_type)))
        .collect();
    for (v, declared) in inputs {
        if g.initializer(v).is_some() {
            continue;
        }
        let mut fact = declared.unwrap_or_else(|| g.value(v).fact.clone());
        if let Some(shape) = given.get(g.value_name(v)) {
            if let Some(ds) = &fact.shape {
                let fits = ds.len() == shape.len()
                    && ds
                        .iter()
                        .zip(shape.iter())
                        .all(|(d, &s)| dims::compatible(d, &DimValue::Known(s as i64)));
                if !fits {
                    return Err(InferError::InputMismatch {
                        name: g.value_name(v).to_string(),
                        given: shape.to_vec(),
                        declared: dims::fmt_dims(ds),
                    });
                }
            }
            fact.shape = Some(dims::known(shape));
        }
        g.value_mut(v).fact = fact;
    }
    // Initializers.
    let inits: Vec<ValueId> = g.initializers.clone();
    for v in inits {
        let Some(t) = g.initializer(v) else { continue };
        let fact = Fact {
            dtype: Some(t.dtype),
            shape: Some(t.dims.iter().map(|&d| DimValue::Known(d)).collect()),
        };
        if let Some(kv) = KVal::from_data(t) {
            st.known.insert(v, kv);
        }
        g.value_mut(v).fact = fact;
    }

    // Declared types of node outputs (value_info and graph outputs).
    let mut declared: HashMap<ValueId, Fact> = HashMap::new();
    for (v, info) in g.value_info.iter().chain(&g.outputs) {
        if let Some(ty) = &info.ty {
            declared.entry(*v).or_insert_with(|| Fact::from_type(ty));
        }
    }

    let order = topo_order(g)?;
    let mut report = InferReport {
        nodes: order.len(),
        ..Default::default()
    };
    for n in order {
        let node = g.node(n);
        let domain = node.domain.clone().unwrap_or_default();
        let cx = Cx {
            g,
            node,
            opset: opset_of(&domain),
            st: &st,
        };
        let out = dispatch(&cx).map_err(|message| InferError::Node {
            node: node.display_name(n),
            op: node.op().op_type().to_string(),
            message,
        })?;
        let reason_inputs = first_nonstatic_input(g, node);
        let outputs: Vec<Option<ValueId>> = node.outputs().to_vec();
        let node_name = node.display_name(n);
        let op_name = match node.op() {
            Op::Opaque(o) if !o.domain.is_empty() => format!("{}:{}", o.domain, o.op_type),
            op => op.op_type().to_string(),
        };
        let Out {
            facts,
            vals,
            syms,
            reason,
        } = out;
        for (slot, v) in outputs.iter().enumerate() {
            let Some(v) = *v else { continue };
            let inferred = facts.get(slot).cloned().unwrap_or_default();
            let mut val = vals.get(slot).cloned().flatten();
            let sym = syms.get(slot).cloned().flatten();
            if val.is_none()
                && let Some(s) = &sym
                && let Some(ints) = dims::static_dims(s)
            {
                let dt = inferred
                    .dtype
                    .filter(|d| !d.is_float())
                    .unwrap_or(DType::I64);
                let shape = if inferred.shape.as_ref().is_some_and(|s| s.is_empty()) {
                    vec![]
                } else {
                    vec![ints.len()]
                };
                val = KVal::ints(dt, shape, ints.into_iter().map(|x| x as i64).collect());
            }
            let mut fact = match &val {
                Some(kv) => kv.fact(),
                None => inferred,
            };
            if let Some(d) = declared.get(&v) {
                if !overriding && conflicts(&fact, d) {
                    report.mismatches.push(DeclMismatch {
                        value: g.value_name(v).to_string(),
                        declared: d.clone(),
                        inferred: fact.clone(),
                    });
                }
                fact = fill_from_declared(fact, d, !overriding);
            }
            if !is_static(&fact) {
                let why = reason
                    .clone()
                    .or_else(|| reason_inputs.clone())
                    .unwrap_or_else(|| {
                        if fact.dtype.is_none() {
                            "the element type could not be inferred".to_string()
                        } else {
                            "symbolic dimensions (give the graph input shapes to make them static)"
                                .to_string()
                        }
                    });
                report.unresolved.push(Unresolved {
                    value: g.value_name(v).to_string(),
                    node: Some(node_name.clone()),
                    op: Some(op_name.clone()),
                    fact: fact.clone(),
                    reason: why,
                });
            }
            if let Some(kv) = val {
                st.known.insert(v, kv);
            } else if let Some(s) = sym {
                st.sym.insert(v, s);
            }
            g.value_mut(v).fact = fact;
        }
    }
    // Graph inputs that stay non-static.
    let mut input_entries = Vec::new();
    for (v, _) in &g.inputs {
        let fact = &g.value(*v).fact;
        if g.initializer(*v).is_none() && !is_static(fact) {
            input_entries.push(Unresolved {
                value: g.value_name(*v).to_string(),
                node: None,
                op: None,
                fact: fact.clone(),
                reason: "graph input without a static declared shape (none given)".to_string(),
            });
        }
    }
    input_entries.append(&mut report.unresolved);
    report.unresolved = input_entries;
    report.known_values = st.known.len();
    Ok(report)
}

fn is_static(f: &Fact) -> bool {
    f.dtype.is_some() && f.static_shape().is_some()
}

fn conflicts(inferred: &Fact, declared: &Fact) -> bool {
    if let (Some(a), Some(b)) = (inferred.dtype, declared.dtype)
        && a != b
    {
        return true;
    }
    match (&inferred.shape, &declared.shape) {
        (Some(a), Some(b)) => {
            a.len() != b.len() || a.iter().zip(b).any(|(x, y)| !dims::compatible(x, y))
        }
        _ => false,
    }
}

/// Fills what inference left open from a declared type (fixed dimensions only when `known_ok`).
fn fill_from_declared(mut fact: Fact, declared: &Fact, known_ok: bool) -> Fact {
    if fact.dtype.is_none() {
        fact.dtype = declared.dtype;
    }
    match (&mut fact.shape, &declared.shape) {
        (None, Some(d)) => {
            let d = d
                .iter()
                .map(|x| {
                    if known_ok || !matches!(x, DimValue::Known(_)) {
                        x.clone()
                    } else {
                        DimValue::Unknown
                    }
                })
                .collect();
            fact.shape = Some(d);
        }
        (Some(s), Some(d)) if s.len() == d.len() => {
            for (x, y) in s.iter_mut().zip(d) {
                if matches!(x, DimValue::Unknown) && (known_ok || !matches!(y, DimValue::Known(_)))
                {
                    *x = y.clone();
                }
            }
        }
        _ => {}
    }
    fact
}

fn first_nonstatic_input(g: &Graph, node: &Node) -> Option<String> {
    node.inputs()
        .iter()
        .flatten()
        .find(|v| !is_static(&g.value(**v).fact))
        .map(|v| format!("input '{}' is not static", g.value_name(*v)))
}

/// The nodes in a topological order (the graph's order wherever it is valid).
fn topo_order(g: &Graph) -> Result<Vec<NodeId>, InferError> {
    let ids = g.node_ids();
    let pos: HashMap<NodeId, usize> = ids.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut pending: HashMap<NodeId, usize> = HashMap::new();
    for &n in ids {
        let node = g.node(n);
        let deps = node
            .inputs()
            .iter()
            .flatten()
            .chain(node.implicit_inputs())
            .filter(|v| {
                g.value(**v)
                    .producer()
                    .is_some_and(|(p, _)| p != n && pos.contains_key(&p))
            })
            .count();
        pending.insert(n, deps);
    }
    let mut ready: BTreeSet<(usize, NodeId)> = pending
        .iter()
        .filter(|(_, c)| **c == 0)
        .map(|(n, _)| (pos[n], *n))
        .collect();
    let mut out = Vec::with_capacity(ids.len());
    while let Some(first) = ready.pop_first() {
        let n = first.1;
        out.push(n);
        for v in g.node(n).outputs().iter().flatten() {
            for (u, _) in g.value(*v).uses() {
                if let Some(c) = pending.get_mut(u)
                    && *c > 0
                {
                    *c -= 1;
                    if *c == 0 {
                        ready.insert((pos[u], *u));
                    }
                }
            }
        }
    }
    if out.len() != ids.len() {
        let stuck = ids
            .iter()
            .find(|n| !out.contains(n))
            .expect("a node is stuck");
        return Err(InferError::Cycle(g.node(*stuck).display_name(*stuck)));
    }
    Ok(out)
}

// ------------------------------------------------------------------ rule plumbing

#[derive(Default)]
struct State {
    known: HashMap<ValueId, KVal>,
    /// Integer vectors (or scalars) whose elements are dimensions, some symbolic (Shape outputs).
    sym: HashMap<ValueId, Vec<DimValue>>,
}

/// What a rule sees: the node, its inputs' facts and known contents, and the opset.
pub(crate) struct Cx<'a> {
    pub g: &'a Graph,
    pub node: &'a Node,
    /// The imported version of the node's domain.
    pub opset: i64,
    st: &'a State,
}

impl<'a> Cx<'a> {
    pub(crate) fn input(&self, i: usize) -> Option<ValueId> {
        self.node.input(i)
    }
    pub(crate) fn has(&self, i: usize) -> bool {
        self.input(i).is_some()
    }
    pub(crate) fn n_in(&self) -> usize {
        self.node.inputs().len()
    }
    pub(crate) fn n_out(&self) -> usize {
        self.node.outputs().len()
    }
    pub(crate) fn fact(&self, i: usize) -> Fact {
        self.input(i)
            .map(|v| self.g.value(v).fact.clone())
            .unwrap_or_default()
    }
    pub(crate) fn dtype(&self, i: usize) -> Option<DType> {
        self.input(i).and_then(|v| self.g.value(v).fact.dtype)
    }
    pub(crate) fn shape(&self, i: usize) -> Option<&'a [DimValue]> {
        self.input(i)
            .and_then(|v| self.g.value(v).fact.shape.as_deref())
    }
    pub(crate) fn rank(&self, i: usize) -> Option<usize> {
        self.shape(i).map(|s| s.len())
    }
    pub(crate) fn name(&self, i: usize) -> &'a str {
        self.input(i)
            .map(|v| self.g.value_name(v))
            .unwrap_or("<absent>")
    }
    /// The known contents of input `i`.
    pub(crate) fn val(&self, i: usize) -> Option<&'a KVal> {
        self.input(i).and_then(|v| self.st.known.get(&v))
    }
    pub(crate) fn ints(&self, i: usize) -> Option<Vec<i64>> {
        self.val(i).map(|k| k.i64s())
    }
    pub(crate) fn floats(&self, i: usize) -> Option<Vec<f64>> {
        self.val(i).map(|k| k.f64s())
    }
    /// Input `i` as a list of dimensions (known ints, or the symbolic data of a shape vector).
    pub(crate) fn sym(&self, i: usize) -> Option<Vec<DimValue>> {
        if let Some(k) = self.val(i) {
            return k.as_dims();
        }
        self.input(i).and_then(|v| self.st.sym.get(&v).cloned())
    }
    /// Input `i` is present and not known to be empty (ONNX's way of skipping optional inputs).
    pub(crate) fn present(&self, i: usize) -> bool {
        self.has(i)
            && !self
                .shape(i)
                .is_some_and(|s| s.iter().any(|d| matches!(d, DimValue::Known(0))))
    }
}

/// A rule's result: one fact per output, optionally known contents and a reason for unknowns.
#[derive(Default)]
pub(crate) struct Out {
    pub facts: Vec<Fact>,
    pub vals: Vec<Option<KVal>>,
    pub syms: Vec<Option<Vec<DimValue>>>,
    pub reason: Option<String>,
}

impl Out {
    pub(crate) fn one(f: Fact) -> Out {
        Out {
            facts: vec![f],
            ..Default::default()
        }
    }
    pub(crate) fn many(fs: Vec<Fact>) -> Out {
        Out {
            facts: fs,
            ..Default::default()
        }
    }
    /// Sets the known contents of output 0 (its fact follows from them).
    pub(crate) fn with_val(mut self, v: Option<KVal>) -> Out {
        if let Some(v) = v {
            if self.facts.is_empty() {
                self.facts.push(Fact::default());
            }
            self.facts[0] = v.fact();
            self.vals = vec![Some(v)];
        }
        self
    }
    pub(crate) fn with_sym(mut self, s: Option<Vec<DimValue>>) -> Out {
        self.syms = vec![s];
        self
    }
    pub(crate) fn because(mut self, r: impl Into<String>) -> Out {
        self.reason = Some(r.into());
        self
    }
}

/// A fact from parts.
pub(crate) fn fact(dtype: Option<DType>, shape: Option<Vec<DimValue>>) -> Fact {
    Fact { dtype, shape }
}

pub(crate) type R = Result<Out, String>;

/// Reads an ONNX dtype code attribute.
pub(crate) fn dtype_attr(code: i64, what: &str) -> Result<DType, String> {
    DType::from_code(code as i32)
        .ok_or_else(|| format!("{what} {code} is not a known element type"))
}

fn dispatch(cx: &Cx) -> R {
    use Op::*;
    match cx.node.op() {
        Conv(o) => conv::conv(cx, o),
        ConvTranspose(o) => conv::conv_transpose(cx, o),
        MaxPool(o) => conv::max_pool(cx, o),
        AveragePool(o) => conv::average_pool(cx, o),
        GlobalAveragePool(_) | GlobalMaxPool(_) => conv::global_pool(cx, 0, false),
        Gemm(o) => linalg::gemm(cx, o),
        MatMul(_) => linalg::matmul(cx, None),
        Einsum(o) => linalg::einsum(cx, o),
        BatchNormalization(_) => norm::batch_norm(cx),
        LayerNormalization(o) => norm::layer_norm(cx, o),
        InstanceNormalization(_) => norm::channel_norm(cx),
        GroupNormalization(_) => norm::channel_norm(cx),
        Lrn(_) => elementwise::same(cx),
        Relu(_) | LeakyRelu(_) | Elu(_) | Selu(_) | Gelu(_) | Sigmoid(_) | HardSigmoid(_)
        | HardSwish(_) | Softplus(_) | Tanh(_) | Erf(_) | Exp(_) | Log(_) | Sqrt(_)
        | Reciprocal(_) | Neg(_) | Abs(_) | Floor(_) | Ceil(_) | Round(_) | Sign(_) | Sin(_)
        | Cos(_) | Not(_) | Identity(_) => elementwise::unary(cx),
        Softmax(o) => elementwise::softmax(cx, o.axis),
        LogSoftmax(o) => elementwise::softmax(cx, o.axis),
        Clip(_) => elementwise::clip(cx),
        PRelu(_) => elementwise::prelu(cx),
        IsNaN(_) | IsInf(_) => elementwise::to_bool(cx),
        Add(_) | Sub(_) | Mul(_) | Div(_) | Mod(_) | Pow(_) => elementwise::arith(cx),
        Equal(_) | Less(_) | LessOrEqual(_) | Greater(_) | GreaterOrEqual(_) | And(_) | Or(_)
        | Xor(_) => elementwise::compare(cx),
        Max(_) | Min(_) | Sum(_) | Mean(_) => elementwise::variadic(cx),
        Where(_) => elementwise::where_(cx),
        Cast(o) => elementwise::cast(cx, o),
        CastLike(_) => elementwise::cast_like(cx),
        Dropout(_) => elementwise::dropout(cx),
        Trilu(_) | CumSum(_) => elementwise::same(cx),
        ReduceMean(o) => reduce::reduce(
            cx,
            o.axes.as_deref(),
            o.keepdims,
            o.noop_with_empty_axes,
            18,
        ),
        ReduceSum(o) => reduce::reduce(
            cx,
            o.axes.as_deref(),
            o.keepdims,
            o.noop_with_empty_axes,
            13,
        ),
        ReduceMax(o) => reduce::reduce(
            cx,
            o.axes.as_deref(),
            o.keepdims,
            o.noop_with_empty_axes,
            18,
        ),
        ReduceMin(o) => reduce::reduce(
            cx,
            o.axes.as_deref(),
            o.keepdims,
            o.noop_with_empty_axes,
            18,
        ),
        ReduceProd(o) => reduce::reduce(
            cx,
            o.axes.as_deref(),
            o.keepdims,
            o.noop_with_empty_axes,
            18,
        ),
        ReduceL1(o) => reduce::reduce(
            cx,
            o.axes.as_deref(),
            o.keepdims,
            o.noop_with_empty_axes,
            18,
        ),
        ReduceL2(o) => reduce::reduce(
            cx,
            o.axes.as_deref(),
            o.keepdims,
            o.noop_with_empty_axes,
            18,
        ),
        ReduceSumSquare(o) => reduce::reduce(
            cx,
            o.axes.as_deref(),
            o.keepdims,
            o.noop_with_empty_axes,
            18,
        ),
        ReduceLogSumExp(o) => reduce::reduce(
            cx,
            o.axes.as_deref(),
            o.keepdims,
            o.noop_with_empty_axes,
            18,
        ),
        ArgMax(o) => reduce::arg(cx, o.axis, o.keepdims),
        ArgMin(o) => reduce::arg(cx, o.axis, o.keepdims),
        TopK(o) => reduce::topk(cx, o),
        Resize(o) => resample::resize(cx, o),
        Upsample(o) => resample::upsample(cx, o),
        DepthToSpace(o) => resample::depth_to_space(cx, o.blocksize),
        SpaceToDepth(o) => resample::space_to_depth(cx, o.blocksize),
        Concat(o) => shape_ops::concat(cx, o.axis),
        Split(o) => shape_ops::split(cx, o),
        Slice(o) => shape_ops::slice(cx, o),
        Reshape(o) => shape_ops::reshape(cx, o),
        Transpose(o) => shape_ops::transpose(cx, o),
        Squeeze(o) => shape_ops::squeeze(cx, o),
        Unsqueeze(o) => shape_ops::unsqueeze(cx, o),
        Flatten(o) => shape_ops::flatten(cx, o),
        Expand(_) => shape_ops::expand(cx),
        Tile(_) => shape_ops::tile(cx),
        Pad(o) => shape_ops::pad(cx, o),
        Shape(o) => shape_ops::shape(cx, o),
        Size(_) => shape_ops::size(cx),
        Constant(o) => shape_ops::constant(cx, o),
        ConstantOfShape(o) => shape_ops::constant_of_shape(cx, o),
        Range(_) => shape_ops::range(cx),
        Gather(o) => gather::gather(cx, o.axis),
        GatherElements(_) => gather::gather_elements(cx),
        GatherND(o) => gather::gather_nd(cx, o.batch_dims),
        ScatterND(_) | ScatterElements(_) => elementwise::same(cx),
        NonZero(_) => gather::nonzero(cx),
        OneHot(o) => gather::one_hot(cx, o.axis),
        Lstm(o) => rnn::lstm(cx, o),
        Gru(o) => rnn::gru(cx, o),
        QuantizeLinear(o) => quant::quantize_linear(cx, o),
        DequantizeLinear(o) => quant::dequantize_linear(cx, o),
        DynamicQuantizeLinear(_) => quant::dynamic_quantize_linear(cx),
        QLinearConv(o) => quant::qlinear_conv(cx, o),
        ConvInteger(o) => quant::conv_integer(cx, o),
        MatMulInteger(_) => linalg::matmul(cx, Some(DType::I32)),
        QLinearMatMul(_) => quant::qlinear_matmul(cx),
        QLinearAdd(_) | QLinearMul(_) => quant::qlinear_binary(cx),
        QLinearGlobalAveragePool(o) => quant::qlinear_global_pool(cx, o),
        QLinearAveragePool(o) => quant::qlinear_average_pool(cx, o),
        QLinearConcat(o) => quant::qlinear_concat(cx, o),
        QLinearSigmoid(_) | QLinearLeakyRelu(_) | QLinearSoftmax(_) => quant::qlinear_unary(cx),
        QGemm(o) => quant::qgemm(cx, o),
        DynamicQuantizeMatMul(_) => quant::dynamic_quantize_matmul(cx),
        MatMulIntegerToFloat(_) => quant::matmul_integer_to_float(cx),
        Opaque(o) => {
            let what = if o.domain.is_empty() {
                o.op_type.clone()
            } else {
                format!("{}:{}", o.domain, o.op_type)
            };
            let why = match &o.reason {
                Some(r) => format!("op '{what}' is opaque ({r})"),
                None => format!("op '{what}' is opaque to inference"),
            };
            Ok(Out::many(vec![Fact::default(); cx.n_out()]).because(why))
        }
    }
}
