//! `remove_identity`: removes Identity nodes and inference-mode Dropout (whose mask output is unused),
//! reconnecting their consumers to their input.

use crate::util::{finish, nname, unused};
use crate::{Pass, PassCx, PassError, PassReport};
use qtool_ir::{Model, Op};
use serde::Deserialize;

/// Options of `remove_identity`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoveIdentityOptions {
    /// Also remove inference Dropout (default: true).
    pub dropout: bool,
}

impl Default for RemoveIdentityOptions {
    fn default() -> Self {
        RemoveIdentityOptions { dropout: true }
    }
}

/// The `remove_identity` pass.
#[derive(Debug)]
pub struct RemoveIdentity {
    opts: RemoveIdentityOptions,
}

impl RemoveIdentity {
    pub fn new(opts: RemoveIdentityOptions) -> Result<Self, PassError> {
        Ok(RemoveIdentity { opts })
    }
}

impl Pass for RemoveIdentity {
    fn name(&self) -> &'static str {
        "remove_identity"
    }

    fn run(&self, model: &mut Model, _cx: &PassCx) -> Result<PassReport, PassError> {
        let g = &mut model.graph;
        let mut report = PassReport::default();
        for n in g.node_ids().to_vec() {
            let node = g.node(n);
            let op_type = node.op().op_type().to_string();
            match node.op() {
                Op::Identity(_) => {}
                Op::Dropout(d) if self.opts.dropout => {
                    if d.is_test == Some(0) {
                        report.skip(nname(g, n), op_type, "Dropout in training mode (is_test=0)");
                        continue;
                    }
                    // training_mode input (opset 12+) must be absent or a constant false.
                    if let Some(t) = node.input(2) {
                        let off = g
                            .constant(t)
                            .and_then(crate::util::i64s)
                            .is_some_and(|v| v.iter().all(|x| *x == 0));
                        if !off {
                            report.skip(
                                nname(g, n),
                                op_type,
                                "training_mode is not a constant false",
                            );
                            continue;
                        }
                    }
                    if node.output(1).is_some_and(|m| !unused(g, m)) {
                        report.skip(nname(g, n), op_type, "the mask output is used");
                        continue;
                    }
                }
                _ => continue,
            }
            let (Some(x), Some(y)) = (g.node(n).input(0), g.node(n).output(0)) else {
                continue;
            };
            let name = nname(g, n);
            if g.is_graph_output(y) {
                // The graph output keeps its name: the producer of x writes y directly.
                let Some(p) = g
                    .producer(x)
                    .filter(|_| g.value(x).uses().len() == 1 && !g.is_graph_output(x))
                else {
                    report.skip(
                        name,
                        op_type,
                        "its output is a graph output and its input cannot take that name",
                    );
                    continue;
                };
                let slot = g.value(x).producer().expect("has producer").1;
                g.remove_node(n);
                g.set_output(p, slot, Some(y))
                    .map_err(|source| PassError::Graph {
                        pass: "remove_identity",
                        source,
                    })?;
                g.value_mut(y).fact = g.value(x).fact.clone();
            } else {
                g.replace_all_uses(y, x);
                g.remove_node(n);
            }
            report.rewrite(name, format!("removed {op_type}"));
        }
        finish(self.name(), g)?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use qtool_ir::ops;

    #[test]
    fn identity_and_dropout_removed() {
        let mut b = Builder::new();
        let x = b.input("x", &[1, 4]);
        let a = b.node(ops::Identity {}, "id0", &[x], "a");
        let r = b.node(ops::Relu {}, "relu", &[a], "r");
        let d = b.node_opt(ops::Dropout::default(), "drop", &[Some(r)], &["d", "mask"]);
        let y = b.node(ops::Identity {}, "id_out", &[d[0]], "y");
        b.output(y);
        let mut m = b.model(13);
        let rep = run(&RemoveIdentity::new(Default::default()).unwrap(), &mut m);
        insta::assert_snapshot!(show(&m, &rep));
    }

    #[test]
    fn identity_from_input_to_output_is_skipped() {
        let mut b = Builder::new();
        let x = b.input("x", &[1]);
        let y = b.node(ops::Identity {}, "id", &[x], "y");
        b.output(y);
        let mut m = b.model(13);
        let rep = run(&RemoveIdentity::new(Default::default()).unwrap(), &mut m);
        assert_eq!(rep.skipped.len(), 1);
        assert_eq!(m.graph.node_count(), 1);
    }
}
