//! Small helpers shared by the passes: reading constant data, making initializers and nodes with
//! fresh names, the float rescale tail of integer ops, the per-node rewrite loop, the exclusion
//! options, and the finishing step every pass ends with (order and validate).

use crate::PassError;
use qtool_ir::{Graph, Node, NodeId, Op, TensorData, ValueId};
use qtool_tensor::{DType, Element, Tensor};

/// Float contents of a stored tensor (any float or integer type, converted).
pub(crate) fn f32s(t: &TensorData) -> Option<Vec<f32>> {
    Some(
        t.to_tensor()
            .ok()?
            .to_f64_vec()?
            .into_iter()
            .map(|x| x as f32)
            .collect(),
    )
}

/// Integer contents of a stored tensor.
pub(crate) fn i64s(t: &TensorData) -> Option<Vec<i64>> {
    t.to_tensor().ok()?.to_i64_vec()
}

/// Dims as usize.
pub(crate) fn udims(t: &TensorData) -> Vec<usize> {
    t.dims.iter().map(|&d| d.max(0) as usize).collect()
}

/// A stored tensor from a shape and data.
pub(crate) fn tensor<T: Element>(shape: &[usize], data: Vec<T>) -> TensorData {
    TensorData::from_tensor(&Tensor::from_vec(shape, data).expect("shape matches data"))
}

/// Adds an initializer under a fresh name derived from `base`.
pub(crate) fn add_init(g: &mut Graph, base: &str, data: TensorData) -> ValueId {
    let name = g.fresh_name(base);
    g.add_initializer(&name, data).expect("fresh name")
}

/// The element type of `v`, from its initializer or inferred fact.
pub(crate) fn dtype_of(g: &Graph, v: ValueId) -> Option<DType> {
    g.initializer(v).map(|t| t.dtype).or(g.value(v).fact.dtype)
}

/// Node name for reports.
pub(crate) fn nname(g: &Graph, n: NodeId) -> String {
    g.node(n).display_name(n)
}

/// Inserts `op` just before `anchor` with fresh outputs derived from `out_base`; returns node and outputs.
pub(crate) fn insert_before(
    g: &mut Graph,
    anchor: NodeId,
    op: impl Into<Op>,
    name: &str,
    inputs: &[Option<ValueId>],
    out_base: &[&str],
) -> (NodeId, Vec<ValueId>) {
    let outs: Vec<ValueId> = out_base.iter().map(|b| g.add_fresh_value(b)).collect();
    let o: Vec<Option<ValueId>> = outs.iter().map(|v| Some(*v)).collect();
    let n = g
        .insert_node_before(anchor, Node::new(op, name), inputs, &o)
        .expect("fresh outputs");
    (n, outs)
}

/// True if `v` is read by nothing and is not a graph output.
pub(crate) fn unused(g: &Graph, v: ValueId) -> bool {
    g.value(v).uses().is_empty() && !g.is_graph_output(v)
}

/// Removes `n` if none of its outputs is used, then the same for the producers of its inputs
/// (recursively), and drops initializers left unused. Used after pattern rewrites.
pub(crate) fn prune_from(g: &mut Graph, n: NodeId) {
    let mut stack = vec![n];
    while let Some(n) = stack.pop() {
        if !g.contains_node(n) {
            continue;
        }
        if !g.node(n).outputs().iter().flatten().all(|v| unused(g, *v)) {
            continue;
        }
        let ins: Vec<ValueId> = g.node(n).inputs().iter().flatten().copied().collect();
        g.remove_node(n);
        for v in ins {
            if let Some(p) = g.producer(v) {
                stack.push(p);
            } else {
                drop_init_if_unused(g, v);
            }
        }
    }
}

/// Removes the initializer `v` if nothing reads it and it is not a graph input or output.
pub(crate) fn drop_init_if_unused(g: &mut Graph, v: ValueId) {
    if g.initializer(v).is_some() && unused(g, v) && !g.is_graph_input(v) {
        g.initializers.retain(|x| *x != v);
        g.value_mut(v).init = None;
        g.value_info.retain(|(x, _)| *x != v);
    }
}

/// Re-sorts and validates the graph: the last step of every pass.
pub(crate) fn finish(pass: &'static str, g: &mut Graph) -> Result<(), PassError> {
    g.topo_sort()
        .map_err(|source| PassError::Graph { pass, source })?;
    g.validate()
        .map_err(|source| PassError::Graph { pass, source })
}

/// The product of the dims.
pub(crate) fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Ends an integer op's float tail after node `after`: `y = acc_f * mult`, then `+ bias` when
/// there is one (Mul `{base}_Mul`, Add `{base}_Add`, the product in `{base}_scaled`).
pub(crate) fn rescale_tail(
    g: &mut Graph,
    after: NodeId,
    base: &str,
    acc_f: ValueId,
    mult: ValueId,
    bias: Option<ValueId>,
    y: ValueId,
) {
    match bias {
        None => {
            g.insert_node_after(
                after,
                Node::new(qtool_ir::ops::Mul {}, format!("{base}_Mul")),
                &[Some(acc_f), Some(mult)],
                &[Some(y)],
            )
            .expect("freed");
        }
        Some(b) => {
            let scaled = g.add_fresh_value(&format!("{base}_scaled"));
            let m = g
                .insert_node_after(
                    after,
                    Node::new(qtool_ir::ops::Mul {}, format!("{base}_Mul")),
                    &[Some(acc_f), Some(mult)],
                    &[Some(scaled)],
                )
                .expect("fresh");
            g.insert_node_after(
                m,
                Node::new(qtool_ir::ops::Add {}, format!("{base}_Add")),
                &[Some(scaled), Some(b)],
                &[Some(y)],
            )
            .expect("freed");
        }
    }
}

/// Offers every node still in the graph to `rewrite` (`None`: not a node it handles), records what
/// it rewrote or why it skipped each node, then finishes the graph as pass `pass`.
pub(crate) fn rewrite_nodes(
    pass: &'static str,
    g: &mut Graph,
    mut rewrite: impl FnMut(&mut Graph, NodeId) -> Option<Result<String, String>>,
) -> Result<crate::PassReport, PassError> {
    let mut report = crate::PassReport::default();
    for n in g.node_ids().to_vec() {
        if !g.contains_node(n) {
            continue;
        }
        let name = nname(g, n);
        let op_type = g.node(n).op().op_type().to_string();
        match rewrite(g, n) {
            None => {}
            Some(Ok(what)) => report.rewrite(name, what),
            Some(Err(why)) => report.skip(name, op_type, why),
        }
    }
    finish(pass, g)?;
    Ok(report)
}

/// Compiles the `exclude_regex` option of pass `pass`; a bad expression is an invalid option.
pub(crate) fn exclude_regexes(
    pass: &'static str,
    exprs: &[String],
) -> Result<Vec<regex::Regex>, PassError> {
    exprs
        .iter()
        .map(|r| {
            regex::Regex::new(r).map_err(|e| PassError::InvalidOptions {
                pass,
                message: format!("exclude_regex '{r}': {e}"),
            })
        })
        .collect()
}

/// Why node `id` is left in float by the `exclude_nodes`, `exclude_regex` (compiled) and
/// `exclude_op_types` options, if it is (checked in that order).
pub(crate) fn excluded_by(
    node: &Node,
    id: NodeId,
    nodes: &[String],
    regex: &[regex::Regex],
    op_types: &[String],
) -> Option<String> {
    let name = node.display_name(id);
    if nodes.contains(&name) {
        return Some("excluded by name".into());
    }
    if let Some(r) = regex.iter().find(|r| r.is_match(&name)) {
        return Some(format!("excluded by regex '{}'", r.as_str()));
    }
    if op_types.iter().any(|x| x == node.op().op_type()) {
        return Some("excluded by op type".into());
    }
    None
}

/// ConvInteger with the attributes of Conv `c`.
pub(crate) fn conv_integer(c: qtool_ir::ops::Conv) -> qtool_ir::ops::ConvInteger {
    qtool_ir::ops::ConvInteger {
        auto_pad: c.auto_pad,
        dilations: c.dilations,
        group: c.group,
        kernel_shape: c.kernel_shape,
        pads: c.pads,
        strides: c.strides,
    }
}
