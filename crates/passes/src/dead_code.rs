//! `eliminate_dead_code`: removes nodes none of whose outputs reach a graph output, then the
//! initializers and value_info entries nothing refers to any more.

use crate::util::{drop_init_if_unused, finish, nname, unused};
use crate::{Pass, PassCx, PassError, PassReport};
use qtool_ir::{Model, ValueId};
use serde::Deserialize;

/// Options of `eliminate_dead_code`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EliminateDeadCodeOptions {
    /// Keep unused initializers (default: false, they are removed).
    pub keep_initializers: bool,
}

/// The `eliminate_dead_code` pass.
#[derive(Debug)]
pub struct EliminateDeadCode {
    opts: EliminateDeadCodeOptions,
}

impl EliminateDeadCode {
    pub fn new(opts: EliminateDeadCodeOptions) -> Result<Self, PassError> {
        Ok(EliminateDeadCode { opts })
    }
}

impl Pass for EliminateDeadCode {
    fn name(&self) -> &'static str {
        "eliminate_dead_code"
    }

    fn run(&self, model: &mut Model, _cx: &PassCx) -> Result<PassReport, PassError> {
        let g = &mut model.graph;
        let mut report = PassReport::default();
        loop {
            let dead: Vec<_> = g
                .node_ids()
                .iter()
                .rev()
                .copied()
                .filter(|&n| g.node(n).outputs().iter().flatten().all(|v| unused(g, *v)))
                .collect();
            if dead.is_empty() {
                break;
            }
            for n in dead {
                report.rewrite(
                    nname(g, n),
                    format!("removed unused {}", g.node(n).op().op_type()),
                );
                g.remove_node(n);
            }
        }
        if !self.opts.keep_initializers {
            for v in g.initializers.clone() {
                if unused(g, v) && !g.is_graph_input(v) {
                    report.rewrite(g.value_name(v).to_string(), "removed unused initializer");
                    drop_init_if_unused(g, v);
                }
            }
        }
        let live = |g: &qtool_ir::Graph, v: ValueId| {
            g.producer(v).is_some() || g.initializer(v).is_some() || g.is_graph_input(v)
        };
        let keep: Vec<bool> = g.value_info.iter().map(|(v, _)| live(g, *v)).collect();
        let mut it = keep.into_iter();
        g.value_info.retain(|_| it.next().unwrap_or(true));
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
    fn removes_unused_chain_and_initializer() {
        let mut b = Builder::new();
        let x = b.input("x", &[1, 4]);
        let w = b.init_f32("w", &[1, 4], vec![1.0; 4]);
        let y = b.node(ops::Relu {}, "r", &[x], "y");
        let d = b.node(ops::Add {}, "dead_add", &[x, w], "d");
        let _ = b.node(ops::Relu {}, "dead_relu", &[d], "d2");
        b.output(y);
        let mut m = b.model(13);
        let r = run(&EliminateDeadCode::new(Default::default()).unwrap(), &mut m);
        assert_eq!(r.rewritten.len(), 3, "{r}");
        insta::assert_snapshot!(m.graph.dump());
    }
}
