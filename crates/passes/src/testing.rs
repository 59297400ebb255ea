//! Test helpers: a tiny graph builder over the IR API and a runner that validates the graph after
//! every pass.

use crate::{Pass, PassCx, PassReport};
use qtool_ir::{Graph, Model, Node, Op, OpsetId, Type, ValueId, ValueInfo};
use qtool_tensor::DType;

/// Builds small graphs for tests.
pub(crate) struct Builder {
    pub g: Graph,
}

impl Builder {
    pub fn new() -> Builder {
        Builder { g: Graph::new("g") }
    }
    pub fn input(&mut self, name: &str, shape: &[i64]) -> ValueId {
        let v = self.g.add_value(name).unwrap();
        let ty = Type::tensor(DType::F32, shape);
        self.g.value_mut(v).fact = qtool_ir::Fact::from_type(&ty);
        self.g.inputs.push((v, ValueInfo::of_type(ty)));
        v
    }
    pub fn init_f32(&mut self, name: &str, shape: &[usize], data: Vec<f32>) -> ValueId {
        self.g
            .add_initializer(name, crate::util::tensor(shape, data))
            .unwrap()
    }
    pub fn init_i64(&mut self, name: &str, shape: &[usize], data: Vec<i64>) -> ValueId {
        self.g
            .add_initializer(name, crate::util::tensor(shape, data))
            .unwrap()
    }
    pub fn node(
        &mut self,
        op: impl Into<Op>,
        name: &str,
        inputs: &[ValueId],
        out: &str,
    ) -> ValueId {
        let o = self.g.add_value(out).unwrap();
        let ins: Vec<Option<ValueId>> = inputs.iter().map(|v| Some(*v)).collect();
        self.g
            .add_node(Node::new(op, name), &ins, &[Some(o)])
            .unwrap();
        o
    }
    pub fn node_opt(
        &mut self,
        op: impl Into<Op>,
        name: &str,
        inputs: &[Option<ValueId>],
        outs: &[&str],
    ) -> Vec<ValueId> {
        let o: Vec<ValueId> = outs.iter().map(|n| self.g.add_value(n).unwrap()).collect();
        let oo: Vec<Option<ValueId>> = o.iter().map(|v| Some(*v)).collect();
        self.g.add_node(Node::new(op, name), inputs, &oo).unwrap();
        o
    }
    pub fn output(&mut self, v: ValueId) {
        self.g.outputs.push((v, ValueInfo::default()));
    }
    pub fn model(self, opset: i64) -> Model {
        Model {
            ir_version: Some(8),
            opset_import: vec![OpsetId {
                domain: Some(String::new()),
                version: Some(opset),
            }],
            graph: self.g,
            ..Default::default()
        }
    }
}

/// Runs a pass with no context and checks the graph is valid afterwards.
pub(crate) fn run(p: &dyn Pass, m: &mut Model) -> PassReport {
    run_cx(p, m, &PassCx::default())
}

/// Runs a pass and checks the graph is valid afterwards.
pub(crate) fn run_cx(p: &dyn Pass, m: &mut Model, cx: &PassCx) -> PassReport {
    let r = p
        .run(m, cx)
        .unwrap_or_else(|e| panic!("{} failed: {e}", p.name()));
    m.graph.validate().unwrap_or_else(|e| {
        panic!(
            "{} left an invalid graph: {e}\n{}",
            p.name(),
            m.graph.dump()
        )
    });
    r
}

/// The dump followed by the report, for snapshots.
pub(crate) fn show(m: &Model, r: &PassReport) -> String {
    format!("opset {}\n{}--\n{}", m.onnx_opset(), m.graph.dump(), r)
}

/// Quantizes `m` with `insert_qdq` (options `opts`) from these ranges (tensor name → (min, max)),
/// checking the graph afterwards.
pub(crate) fn insert_qdq_from(
    m: &mut Model,
    ranges: &[(&str, (f32, f32))],
    opts: crate::InsertQdqOptions,
) -> PassReport {
    let ranges: crate::Ranges = ranges.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    run_cx(
        &crate::InsertQdq::new(opts).unwrap(),
        m,
        &PassCx {
            ranges: Some(&ranges),
        },
    )
}
