//! The graph: values, nodes, initializers and graph I/O in one arena, with def-use kept up to date by
//! the rewrite API (insert, replace, remove nodes; replace uses), topological ordering and validation.

use crate::attr::{Attribute, Opaque, TensorData};
use crate::ops::Op;
use crate::types::{Fact, ValueInfo};
use std::collections::HashMap;
use std::fmt;

/// Index of a value in its graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// Index of a node in its graph (stable across removals of other nodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}
impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// A named value: graph input, initializer, node output, or a name captured from an enclosing graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub name: String,
    /// What shape inference (or the import of declared types) knows.
    pub fact: Fact,
    /// The initializer data, if this value is one.
    pub init: Option<TensorData>,
    /// Defined in an enclosing graph (subgraphs only).
    pub outer: bool,
    producer: Option<(NodeId, usize)>,
    uses: Vec<(NodeId, usize)>,
}

impl Value {
    /// The node and output slot producing this value.
    pub fn producer(&self) -> Option<(NodeId, usize)> {
        self.producer
    }
    /// The nodes and input slots consuming this value (implicit subgraph uses have slot `usize::MAX`).
    pub fn uses(&self) -> &[(NodeId, usize)] {
        &self.uses
    }
}

/// A node. Its attributes as written are kept in `attrs` (the source of truth for export); `op` is the
/// typed view. Change the op with [`Node::set_op`], which rewrites `attrs` from it.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: Option<String>,
    /// The domain as written (`None`: absent).
    pub domain: Option<String>,
    op: Op,
    attrs: Vec<Attribute>,
    pub(crate) inputs: Vec<Option<ValueId>>,
    pub(crate) outputs: Vec<Option<ValueId>>,
    /// Values of this graph used inside the node's subgraphs (If/Loop/Scan bodies).
    pub(crate) implicit_inputs: Vec<ValueId>,
    pub doc_string: Option<String>,
    pub overload: Option<String>,
    pub metadata_props: Vec<(String, String)>,
    /// Other NodeProto fields kept encoded (device configurations and the like).
    pub extra: Vec<Opaque>,
}

impl Node {
    /// A new node for `op`; its attributes are generated from the op.
    pub fn new(op: impl Into<Op>, name: impl Into<String>) -> Node {
        let op = op.into();
        let domain = match op.domain() {
            "" => None,
            d => Some(d.to_string()),
        };
        Node {
            name: Some(name.into()),
            domain,
            attrs: op.to_attrs(),
            op,
            inputs: Vec::new(),
            outputs: Vec::new(),
            implicit_inputs: Vec::new(),
            doc_string: None,
            overload: None,
            metadata_props: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// A node as imported: the typed op parsed from `attrs`, which are kept verbatim.
    pub fn imported(domain: Option<String>, op_type: &str, attrs: Vec<Attribute>) -> Node {
        let op = Op::parse(domain.as_deref().unwrap_or(""), op_type, &attrs);
        Node {
            name: None,
            domain,
            op,
            attrs,
            inputs: Vec::new(),
            outputs: Vec::new(),
            implicit_inputs: Vec::new(),
            doc_string: None,
            overload: None,
            metadata_props: Vec::new(),
            extra: Vec::new(),
        }
    }

    pub fn op(&self) -> &Op {
        &self.op
    }
    /// Replaces the op; the attributes are regenerated from it.
    pub fn set_op(&mut self, op: impl Into<Op>) {
        self.op = op.into();
        self.attrs = self.op.to_attrs();
    }
    /// The attributes as they will be written.
    pub fn attrs(&self) -> &[Attribute] {
        &self.attrs
    }
    pub fn attr(&self, name: &str) -> Option<&Attribute> {
        self.attrs.iter().find(|a| a.name == name)
    }
    pub fn inputs(&self) -> &[Option<ValueId>] {
        &self.inputs
    }
    pub fn outputs(&self) -> &[Option<ValueId>] {
        &self.outputs
    }
    /// Input `i` if present (absent optional inputs are `None`).
    pub fn input(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }
    pub fn output(&self, i: usize) -> Option<ValueId> {
        self.outputs.get(i).copied().flatten()
    }
    pub fn implicit_inputs(&self) -> &[ValueId] {
        &self.implicit_inputs
    }
    /// The node's name or, when it has none, `#<id>`.
    pub fn display_name(&self, id: NodeId) -> String {
        match &self.name {
            Some(n) if !n.is_empty() => n.clone(),
            _ => format!("#{}", id.0),
        }
    }
}

/// Errors of the rewrite API and of validation.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GraphError {
    #[error("value name '{0}' is already used in this graph")]
    DuplicateName(String),
    #[error("value '{value}' is produced by both node '{first}' and node '{second}'")]
    TwoProducers {
        value: String,
        first: String,
        second: String,
    },
    #[error(
        "node '{node}' reads '{value}', which is neither a graph input, an initializer, nor produced by an earlier node"
    )]
    Undefined { node: String, value: String },
    #[error("graph output '{0}' is never defined")]
    UndefinedOutput(String),
    #[error("the graph has a cycle through node '{0}'")]
    Cycle(String),
    #[error("inconsistent graph: {0}")]
    Inconsistent(String),
}

/// A graph (the main graph or a subgraph).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Graph {
    pub name: Option<String>,
    pub doc_string: Option<String>,
    values: Vec<Value>,
    nodes: Vec<Option<Node>>,
    order: Vec<NodeId>,
    by_name: HashMap<String, ValueId>,
    /// Graph inputs with their declared info, in order.
    pub inputs: Vec<(ValueId, ValueInfo)>,
    /// Graph outputs with their declared info, in order.
    pub outputs: Vec<(ValueId, ValueInfo)>,
    /// `value_info` entries, in order.
    pub value_info: Vec<(ValueId, ValueInfo)>,
    /// Initializers in their stored order (the data sits in [`Value::init`]).
    pub initializers: Vec<ValueId>,
    pub sparse_initializers: Vec<Opaque>,
    pub quantization_annotation: Vec<Opaque>,
    pub metadata_props: Vec<(String, String)>,
}

impl Graph {
    pub fn new(name: &str) -> Graph {
        Graph {
            name: Some(name.to_string()),
            ..Default::default()
        }
    }

    // ---------------------------------------------------------------- values

    /// Adds a value with a unique name.
    pub fn add_value(&mut self, name: &str) -> Result<ValueId, GraphError> {
        if self.by_name.contains_key(name) {
            return Err(GraphError::DuplicateName(name.to_string()));
        }
        let id = ValueId(self.values.len() as u32);
        self.values.push(Value {
            name: name.to_string(),
            fact: Fact::default(),
            init: None,
            outer: false,
            producer: None,
            uses: Vec::new(),
        });
        self.by_name.insert(name.to_string(), id);
        Ok(id)
    }

    /// The value named `name`, creating it if needed.
    pub fn value_or_add(&mut self, name: &str) -> ValueId {
        match self.by_name.get(name) {
            Some(&v) => v,
            None => self.add_value(name).expect("name checked above"),
        }
    }

    /// A name not used in this graph, built from `base`.
    pub fn fresh_name(&self, base: &str) -> String {
        if !self.by_name.contains_key(base) {
            return base.to_string();
        }
        (1..)
            .map(|i| format!("{base}_{i}"))
            .find(|n| !self.by_name.contains_key(n))
            .expect("infinite")
    }

    /// Adds a value with a fresh name derived from `base`.
    pub fn add_fresh_value(&mut self, base: &str) -> ValueId {
        let n = self.fresh_name(base);
        self.add_value(&n).expect("fresh")
    }

    /// Adds an initializer (appended to the initializer list).
    pub fn add_initializer(&mut self, name: &str, data: TensorData) -> Result<ValueId, GraphError> {
        let v = self.add_value(name)?;
        self.set_initializer(v, data);
        Ok(v)
    }

    /// Makes `v` an initializer with `data` (appended to the list if it was not one).
    pub fn set_initializer(&mut self, v: ValueId, data: TensorData) {
        if self.values[v.0 as usize].init.is_none() {
            self.initializers.push(v);
        }
        self.values[v.0 as usize].fact = Fact {
            dtype: Some(data.dtype),
            shape: Some(
                data.dims
                    .iter()
                    .map(|&d| crate::DimValue::Known(d))
                    .collect(),
            ),
        };
        self.values[v.0 as usize].init = Some(data);
    }

    /// Renames a value (the new name must be unused).
    pub fn rename_value(&mut self, v: ValueId, name: &str) -> Result<(), GraphError> {
        if self.by_name.contains_key(name) {
            return Err(GraphError::DuplicateName(name.to_string()));
        }
        let old = std::mem::replace(&mut self.values[v.0 as usize].name, name.to_string());
        self.by_name.remove(&old);
        self.by_name.insert(name.to_string(), v);
        Ok(())
    }

    pub fn value(&self, v: ValueId) -> &Value {
        &self.values[v.0 as usize]
    }
    pub fn value_mut(&mut self, v: ValueId) -> &mut Value {
        &mut self.values[v.0 as usize]
    }
    pub fn value_name(&self, v: ValueId) -> &str {
        &self.values[v.0 as usize].name
    }
    pub fn find_value(&self, name: &str) -> Option<ValueId> {
        self.by_name.get(name).copied()
    }
    /// All value ids (including values no longer referenced).
    pub fn value_ids(&self) -> impl Iterator<Item = ValueId> + '_ {
        (0..self.values.len() as u32).map(ValueId)
    }

    /// The initializer data of `v`, if it is one.
    pub fn initializer(&self, v: ValueId) -> Option<&TensorData> {
        self.values[v.0 as usize].init.as_ref()
    }

    /// Constant data of `v`: an initializer, or the `value` of a `Constant` node producing it.
    pub fn constant(&self, v: ValueId) -> Option<&TensorData> {
        if let Some(t) = self.initializer(v) {
            return Some(t);
        }
        let (n, _) = self.value(v).producer?;
        match self.node(n).op() {
            Op::Constant(c) => c.value.as_ref(),
            _ => None,
        }
    }

    pub fn is_graph_input(&self, v: ValueId) -> bool {
        self.inputs.iter().any(|(i, _)| *i == v)
    }
    pub fn is_graph_output(&self, v: ValueId) -> bool {
        self.outputs.iter().any(|(i, _)| *i == v)
    }
    /// Graph inputs that are not also initializers (the inputs a caller must feed).
    pub fn runtime_inputs(&self) -> Vec<ValueId> {
        self.inputs
            .iter()
            .map(|(v, _)| *v)
            .filter(|v| self.initializer(*v).is_none())
            .collect()
    }

    /// The declared info of `v` from the input, output or value_info lists (first found).
    pub fn declared_info(&self, v: ValueId) -> Option<&ValueInfo> {
        self.inputs
            .iter()
            .chain(&self.outputs)
            .chain(&self.value_info)
            .find(|(i, _)| *i == v)
            .map(|(_, info)| info)
    }

    // ---------------------------------------------------------------- nodes

    pub fn node(&self, n: NodeId) -> &Node {
        self.nodes[n.0 as usize].as_ref().expect("node was removed")
    }
    /// Mutable access to a node's non-connection fields (connections change through the graph API).
    pub fn node_mut(&mut self, n: NodeId) -> &mut Node {
        self.nodes[n.0 as usize].as_mut().expect("node was removed")
    }
    pub fn contains_node(&self, n: NodeId) -> bool {
        self.nodes.get(n.0 as usize).is_some_and(|x| x.is_some())
    }
    /// Nodes in their current order (topological after [`Graph::topo_sort`] or a valid import).
    pub fn node_ids(&self) -> &[NodeId] {
        &self.order
    }
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> + '_ {
        self.order.iter().map(|&n| (n, self.node(n)))
    }
    pub fn node_count(&self) -> usize {
        self.order.len()
    }

    /// Appends a node with its connections. Outputs must not already have a producer.
    pub fn add_node(
        &mut self,
        node: Node,
        inputs: &[Option<ValueId>],
        outputs: &[Option<ValueId>],
    ) -> Result<NodeId, GraphError> {
        let id = NodeId(self.nodes.len() as u32);
        self.attach(id, node, inputs, outputs, &[])?;
        self.order.push(id);
        Ok(id)
    }

    /// Appends a node that also uses values of this graph inside its subgraphs.
    pub fn add_node_with_implicit(
        &mut self,
        node: Node,
        inputs: &[Option<ValueId>],
        outputs: &[Option<ValueId>],
        implicit: &[ValueId],
    ) -> Result<NodeId, GraphError> {
        let id = NodeId(self.nodes.len() as u32);
        self.attach(id, node, inputs, outputs, implicit)?;
        self.order.push(id);
        Ok(id)
    }

    /// Inserts a node just before `anchor` in the order.
    pub fn insert_node_before(
        &mut self,
        anchor: NodeId,
        node: Node,
        inputs: &[Option<ValueId>],
        outputs: &[Option<ValueId>],
    ) -> Result<NodeId, GraphError> {
        let id = NodeId(self.nodes.len() as u32);
        self.attach(id, node, inputs, outputs, &[])?;
        let pos = self
            .order
            .iter()
            .position(|&n| n == anchor)
            .unwrap_or(self.order.len());
        self.order.insert(pos, id);
        Ok(id)
    }

    /// Inserts a node just after `anchor` in the order.
    pub fn insert_node_after(
        &mut self,
        anchor: NodeId,
        node: Node,
        inputs: &[Option<ValueId>],
        outputs: &[Option<ValueId>],
    ) -> Result<NodeId, GraphError> {
        let id = NodeId(self.nodes.len() as u32);
        self.attach(id, node, inputs, outputs, &[])?;
        let pos = self
            .order
            .iter()
            .position(|&n| n == anchor)
            .map(|p| p + 1)
            .unwrap_or(self.order.len());
        self.order.insert(pos, id);
        Ok(id)
    }

    fn attach(
        &mut self,
        id: NodeId,
        mut node: Node,
        inputs: &[Option<ValueId>],
        outputs: &[Option<ValueId>],
        implicit: &[ValueId],
    ) -> Result<(), GraphError> {
        for (slot, o) in outputs.iter().enumerate() {
            if let Some(o) = o
                && let Some((p, _)) = self.values[o.0 as usize].producer
            {
                let _ = slot;
                return Err(GraphError::TwoProducers {
                    value: self.value_name(*o).to_string(),
                    first: self.node(p).display_name(p),
                    second: node.display_name(id),
                });
            }
        }
        for (slot, o) in outputs.iter().enumerate() {
            if let Some(o) = o {
                self.values[o.0 as usize].producer = Some((id, slot));
            }
        }
        for (slot, i) in inputs.iter().enumerate() {
            if let Some(i) = i {
                self.values[i.0 as usize].uses.push((id, slot));
            }
        }
        for i in implicit {
            self.values[i.0 as usize].uses.push((id, usize::MAX));
        }
        node.inputs = inputs.to_vec();
        node.outputs = outputs.to_vec();
        node.implicit_inputs = implicit.to_vec();
        self.nodes.push(Some(node));
        debug_assert_eq!(self.nodes.len() - 1, id.0 as usize);
        Ok(())
    }

    /// Removes a node; its outputs lose their producer (and stay as values).
    pub fn remove_node(&mut self, n: NodeId) -> Node {
        let node = self.nodes[n.0 as usize].take().expect("node was removed");
        for v in node.inputs.iter().flatten().chain(&node.implicit_inputs) {
            self.values[v.0 as usize].uses.retain(|(u, _)| *u != n);
        }
        for v in node.outputs.iter().flatten() {
            self.values[v.0 as usize].producer = None;
        }
        self.order.retain(|&x| x != n);
        node
    }

    /// Points input `slot` of node `n` at `v` (or makes it absent).
    pub fn set_input(&mut self, n: NodeId, slot: usize, v: Option<ValueId>) {
        let old = {
            let node = self.nodes[n.0 as usize].as_mut().expect("node was removed");
            if node.inputs.len() <= slot {
                node.inputs.resize(slot + 1, None);
            }
            std::mem::replace(&mut node.inputs[slot], v)
        };
        if let Some(o) = old {
            let uses = &mut self.values[o.0 as usize].uses;
            if let Some(p) = uses.iter().position(|u| *u == (n, slot)) {
                uses.remove(p);
            }
        }
        if let Some(v) = v {
            self.values[v.0 as usize].uses.push((n, slot));
        }
    }

    /// Points output `slot` of node `n` at `v`; `v` must have no other producer.
    pub fn set_output(
        &mut self,
        n: NodeId,
        slot: usize,
        v: Option<ValueId>,
    ) -> Result<(), GraphError> {
        if let Some(v) = v
            && let Some((p, s)) = self.values[v.0 as usize].producer
            && (p, s) != (n, slot)
        {
            return Err(GraphError::TwoProducers {
                value: self.value_name(v).to_string(),
                first: self.node(p).display_name(p),
                second: self.node(n).display_name(n),
            });
        }
        let old = {
            let node = self.nodes[n.0 as usize].as_mut().expect("node was removed");
            if node.outputs.len() <= slot {
                node.outputs.resize(slot + 1, None);
            }
            std::mem::replace(&mut node.outputs[slot], v)
        };
        if let Some(o) = old {
            self.values[o.0 as usize].producer = None;
        }
        if let Some(v) = v {
            self.values[v.0 as usize].producer = Some((n, slot));
        }
        Ok(())
    }

    /// Makes every node input reading `old` read `new` instead (graph outputs are left alone; use
    /// [`Graph::replace_graph_output`] for those).
    pub fn replace_all_uses(&mut self, old: ValueId, new: ValueId) {
        if old == new {
            return;
        }
        let uses = std::mem::take(&mut self.values[old.0 as usize].uses);
        for (n, slot) in uses {
            let node = self.nodes[n.0 as usize]
                .as_mut()
                .expect("use of a removed node");
            if slot == usize::MAX {
                for i in node.implicit_inputs.iter_mut().filter(|i| **i == old) {
                    *i = new;
                }
            } else {
                node.inputs[slot] = Some(new);
            }
            self.values[new.0 as usize].uses.push((n, slot));
        }
    }

    /// Replaces graph output `old` by `new` (keeping its declared info).
    pub fn replace_graph_output(&mut self, old: ValueId, new: ValueId) {
        for (v, _) in self.outputs.iter_mut().filter(|(v, _)| *v == old) {
            *v = new;
        }
    }

    /// Replaces node `n` by `node`, keeping its position and connections.
    pub fn replace_node(&mut self, n: NodeId, mut node: Node) -> Node {
        let slot = self.nodes[n.0 as usize].as_mut().expect("node was removed");
        node.inputs = std::mem::take(&mut slot.inputs);
        node.outputs = std::mem::take(&mut slot.outputs);
        node.implicit_inputs = std::mem::take(&mut slot.implicit_inputs);
        let mut old = std::mem::replace(slot, node);
        old.inputs = slot.inputs.clone();
        old.outputs = slot.outputs.clone();
        old
    }

    // ---------------------------------------------------------------- order and checks

    /// Re-orders nodes topologically, keeping the current order wherever it is already valid
    /// (a stable Kahn sort), so a valid model keeps its node order exactly.
    pub fn topo_sort(&mut self) -> Result<(), GraphError> {
        let pos: HashMap<NodeId, usize> = self
            .order
            .iter()
            .enumerate()
            .map(|(i, &n)| (n, i))
            .collect();
        let mut pending: HashMap<NodeId, usize> = HashMap::new();
        for &n in &self.order {
            let node = self.node(n);
            let deps = node
                .inputs
                .iter()
                .flatten()
                .chain(&node.implicit_inputs)
                .filter(|v| {
                    self.values[v.0 as usize]
                        .producer
                        .is_some_and(|(p, _)| p != n)
                })
                .count();
            pending.insert(n, deps);
        }
        let mut ready: std::collections::BTreeSet<(usize, NodeId)> = pending
            .iter()
            .filter(|(_, c)| **c == 0)
            .map(|(n, _)| (pos[n], *n))
            .collect();
        let mut out = Vec::with_capacity(self.order.len());
        while let Some(first) = ready.iter().next().copied() {
            ready.remove(&first);
            let n = first.1;
            out.push(n);
            for v in self.node(n).outputs.iter().flatten() {
                for (u, _) in &self.values[v.0 as usize].uses {
                    if let Some(c) = pending.get_mut(u) {
                        *c -= 1;
                        if *c == 0 {
                            ready.insert((pos[u], *u));
                        }
                    }
                }
            }
        }
        if out.len() != self.order.len() {
            let stuck = self
                .order
                .iter()
                .find(|n| !out.contains(n))
                .expect("some node is stuck");
            return Err(GraphError::Cycle(self.node(*stuck).display_name(*stuck)));
        }
        self.order = out;
        Ok(())
    }

    /// Checks the graph's invariants: every read value is defined before use (graph input,
    /// initializer, outer-scope value or an earlier node's output), one producer per value, graph
    /// outputs defined, and def-use records consistent with the nodes.
    pub fn validate(&self) -> Result<(), GraphError> {
        let mut defined: Vec<bool> = self
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| v.init.is_some() || v.outer || self.is_graph_input(ValueId(i as u32)))
            .collect();
        for &n in &self.order {
            let node = self.node(n);
            for v in node.inputs.iter().flatten().chain(&node.implicit_inputs) {
                if !defined[v.0 as usize] {
                    return Err(GraphError::Undefined {
                        node: node.display_name(n),
                        value: self.value_name(*v).to_string(),
                    });
                }
            }
            for (slot, v) in node.outputs.iter().enumerate() {
                if let Some(v) = v {
                    if self.values[v.0 as usize].producer != Some((n, slot)) {
                        return Err(GraphError::Inconsistent(format!(
                            "value '{}' does not record node '{}' as its producer",
                            self.value_name(*v),
                            node.display_name(n)
                        )));
                    }
                    defined[v.0 as usize] = true;
                }
            }
            for (slot, v) in node.inputs.iter().enumerate() {
                if let Some(v) = v
                    && !self.values[v.0 as usize].uses.contains(&(n, slot))
                {
                    return Err(GraphError::Inconsistent(format!(
                        "value '{}' does not record its use by node '{}'",
                        self.value_name(*v),
                        node.display_name(n)
                    )));
                }
            }
        }
        for (v, _) in &self.outputs {
            if !defined[v.0 as usize] {
                return Err(GraphError::UndefinedOutput(self.value_name(*v).to_string()));
            }
        }
        for (i, v) in self.values.iter().enumerate() {
            if let Some((p, _)) = v.producer
                && !self.contains_node(p)
            {
                return Err(GraphError::Inconsistent(format!(
                    "value '{}' names a removed producer",
                    v.name
                )));
            }
            for (u, _) in &v.uses {
                if !self.contains_node(*u) {
                    return Err(GraphError::Inconsistent(format!(
                        "value '{}' (v{i}) is used by a removed node",
                        v.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Nodes consuming `v` (each once, in graph order).
    pub fn consumers(&self, v: ValueId) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = self.values[v.0 as usize]
            .uses
            .iter()
            .map(|(n, _)| *n)
            .collect();
        out.sort_by_key(|n| self.order.iter().position(|x| x == n));
        out.dedup();
        out
    }

    /// The node producing `v`, if any.
    pub fn producer(&self, v: ValueId) -> Option<NodeId> {
        self.values[v.0 as usize].producer.map(|(n, _)| n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Add, Relu};

    fn small() -> (Graph, [ValueId; 4], [NodeId; 2]) {
        let mut g = Graph::new("g");
        let x = g.add_value("x").unwrap();
        g.inputs.push((x, ValueInfo::default()));
        let a = g.add_value("a").unwrap();
        let b = g.add_value("b").unwrap();
        let y = g.add_value("y").unwrap();
        let n1 = g
            .add_node(Node::new(Relu {}, "r"), &[Some(x)], &[Some(a)])
            .unwrap();
        let n2 = g
            .add_node(Node::new(Add {}, "add"), &[Some(a), Some(x)], &[Some(b)])
            .unwrap();
        g.outputs.push((b, ValueInfo::default()));
        (g, [x, a, b, y], [n1, n2])
    }

    #[test]
    fn build_and_validate() {
        let (g, [x, a, ..], [n1, n2]) = small();
        g.validate().unwrap();
        assert_eq!(g.consumers(x), vec![n1, n2]);
        assert_eq!(g.producer(a), Some(n1));
    }

    #[test]
    fn two_producers_rejected() {
        let (mut g, [x, a, ..], _) = small();
        let e = g
            .add_node(Node::new(Relu {}, "r2"), &[Some(x)], &[Some(a)])
            .unwrap_err();
        assert!(matches!(e, GraphError::TwoProducers { .. }));
    }

    #[test]
    fn replace_uses_and_remove() {
        let (mut g, [x, a, b, _], [n1, n2]) = small();
        g.replace_all_uses(a, x);
        assert_eq!(g.node(n2).inputs(), &[Some(x), Some(x)]);
        g.remove_node(n1);
        g.validate().unwrap();
        assert!(g.value(a).producer().is_none());
        assert_eq!(g.producer(b), Some(n2));
    }

    #[test]
    fn topo_sort_fixes_order_and_keeps_valid_order() {
        let (mut g, [x, a, _, _], [n1, n2]) = small();
        let before = g.node_ids().to_vec();
        g.topo_sort().unwrap();
        assert_eq!(g.node_ids(), &before[..]);
        // Insert a node that feeds `a`'s consumer, placed last: sorting moves it up.
        let c = g.add_value("c").unwrap();
        let n3 = g
            .add_node(Node::new(Relu {}, "late"), &[Some(x)], &[Some(c)])
            .unwrap();
        g.set_input(n2, 1, Some(c));
        assert!(g.validate().is_err());
        g.topo_sort().unwrap();
        g.validate().unwrap();
        assert_eq!(g.node_ids(), &[n1, n3, n2]);
        let _ = a;
    }

    #[test]
    fn cycle_detected() {
        let (mut g, [_, a, b, _], [n1, _]) = small();
        g.set_input(n1, 0, Some(b));
        assert!(matches!(g.topo_sort(), Err(GraphError::Cycle(_))));
        let _ = a;
    }

    #[test]
    fn undefined_input_named() {
        let (mut g, [_, _, _, y], [_, n2]) = small();
        g.set_input(n2, 0, Some(y));
        let e = g.validate().unwrap_err().to_string();
        assert!(e.contains("'add'") && e.contains("'y'"), "{e}");
    }
}
