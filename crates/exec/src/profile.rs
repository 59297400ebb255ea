//! Per-node timing of executor runs ([`crate::Executor::run_profiled`]): where the time of a model
//! goes, summed per node and per op type, printable as a table.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// Time spent in one node over the profiled runs.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeTime {
    /// Node name (as in error messages).
    pub node: String,
    /// Op type; a node that also ran a following activation in its output stage reads
    /// `Conv+Relu` and the activation node is not listed on its own.
    pub op_type: String,
    /// Output shape of the node's first output (empty when it has none).
    pub shape: Vec<usize>,
    /// Total wall time over all profiled runs.
    pub time: Duration,
    /// Times the node ran.
    pub calls: usize,
}

/// Time per op type over the profiled runs.
#[derive(Clone, Debug, PartialEq)]
pub struct OpTypeTime {
    pub op_type: String,
    pub time: Duration,
    /// Node evaluations of this op type, over all runs.
    pub calls: usize,
    /// Distinct nodes of this op type.
    pub nodes: usize,
}

/// The per-node times of one or more runs of a model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    /// Runs the times are summed over.
    pub runs: usize,
    /// Wall time of all runs, from the inputs being checked to the outputs being returned.
    pub total: Duration,
    /// One entry per node that ran, in execution order.
    pub nodes: Vec<NodeTime>,
}

impl Profile {
    /// Adds one node evaluation.
    pub(crate) fn record(
        &mut self,
        idx: usize,
        node: &str,
        op_type: &str,
        shape: &[usize],
        t: Duration,
    ) {
        if self.nodes.len() <= idx {
            self.nodes.resize_with(idx + 1, || NodeTime {
                node: String::new(),
                op_type: String::new(),
                shape: Vec::new(),
                time: Duration::ZERO,
                calls: 0,
            });
        }
        let e = &mut self.nodes[idx];
        if e.calls == 0 {
            e.node = node.to_string();
            e.op_type = op_type.to_string();
            e.shape = shape.to_vec();
        }
        e.time += t;
        e.calls += 1;
    }

    /// Drops the placeholder entries of steps that never ran (folded constants, fused activations).
    pub(crate) fn finish(&mut self) {
        self.nodes.retain(|n| n.calls > 0);
    }

    /// Time spent inside nodes (the rest of [`Profile::total`] is the executor's own overhead).
    pub fn node_total(&self) -> Duration {
        self.nodes.iter().map(|n| n.time).sum()
    }

    /// Times summed per op type, largest first.
    pub fn by_op_type(&self) -> Vec<OpTypeTime> {
        let mut m: HashMap<&str, OpTypeTime> = HashMap::new();
        for n in &self.nodes {
            let e = m.entry(&n.op_type).or_insert_with(|| OpTypeTime {
                op_type: n.op_type.clone(),
                time: Duration::ZERO,
                calls: 0,
                nodes: 0,
            });
            e.time += n.time;
            e.calls += n.calls;
            e.nodes += 1;
        }
        let mut v: Vec<OpTypeTime> = m.into_values().collect();
        v.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| a.op_type.cmp(&b.op_type)));
        v
    }

    /// The `n` slowest nodes, largest first.
    pub fn top_nodes(&self, n: usize) -> Vec<&NodeTime> {
        let mut v: Vec<&NodeTime> = self.nodes.iter().collect();
        v.sort_by_key(|n| std::cmp::Reverse(n.time));
        v.truncate(n);
        v
    }
}

fn ms(d: Duration, runs: usize) -> f64 {
    d.as_secs_f64() * 1e3 / runs.max(1) as f64
}

/// A table per op type, then the 15 slowest nodes; times are per run (averaged over the runs).
impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let runs = self.runs.max(1);
        let total = self.total.as_secs_f64().max(1e-12);
        writeln!(
            f,
            "profile: {} run(s), {:.3} ms per run, {:.3} ms of it in nodes",
            self.runs,
            ms(self.total, runs),
            ms(self.node_total(), runs)
        )?;
        writeln!(
            f,
            "{:<28} {:>10} {:>7} {:>6} {:>6}",
            "op type", "ms/run", "share", "nodes", "calls"
        )?;
        for o in self.by_op_type() {
            writeln!(
                f,
                "{:<28} {:>10.3} {:>6.1}% {:>6} {:>6}",
                o.op_type,
                ms(o.time, runs),
                100.0 * o.time.as_secs_f64() / total,
                o.nodes,
                o.calls
            )?;
        }
        writeln!(f, "slowest nodes:")?;
        writeln!(
            f,
            "{:<40} {:<20} {:>10} {:>7}  output shape",
            "node", "op type", "ms/run", "share"
        )?;
        for n in self.top_nodes(15) {
            writeln!(
                f,
                "{:<40} {:<20} {:>10.3} {:>6.1}%  {:?}",
                n.node,
                n.op_type,
                ms(n.time, runs),
                100.0 * n.time.as_secs_f64() / total,
                n.shape
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_per_op_type_and_sorts() {
        let mut p = Profile {
            runs: 2,
            total: Duration::from_millis(10),
            nodes: Vec::new(),
        };
        for _ in 0..2 {
            p.record(0, "a", "Conv", &[1, 8], Duration::from_millis(3));
            p.record(2, "c", "Add", &[1, 8], Duration::from_millis(1));
            p.record(3, "d", "Conv", &[1, 8], Duration::from_millis(1));
        }
        p.finish();
        assert_eq!(p.nodes.len(), 3);
        let t = p.by_op_type();
        assert_eq!(t[0].op_type, "Conv");
        assert_eq!(t[0].time, Duration::from_millis(8));
        assert_eq!((t[0].nodes, t[0].calls), (2, 4));
        assert_eq!(t[1].op_type, "Add");
        assert_eq!(p.top_nodes(1)[0].node, "a");
        let s = p.to_string();
        assert!(s.contains("Conv"), "{s}");
        assert!(s.contains("4.000"), "{s}"); // 8 ms over 2 runs
    }
}
