//! `upgrade_opset`: raises the default-domain opset of a model to 13 (what per-axis
//! QuantizeLinear/DequantizeLinear needs), converting every node whose signature changed between the
//! model's opset and 13: attributes that became inputs (Split, Squeeze, Unsqueeze, ReduceSum at 13;
//! Clip, Pad at 11; Slice, TopK at 10; Dropout's ratio at 12), Resize-10's inputs, Upsample to
//! Resize, and the Softmax/LogSoftmax axis semantics of 13. A node it cannot convert is an error that
//! names it; the model is changed only when every node converted.

use crate::util::{add_init, finish, nname, tensor};
use crate::{Pass, PassCx, PassError, PassReport};
use qtool_ir::{Graph, Model, Node, NodeId, Op, ValueId, ops};
use serde::Deserialize;

/// The opset this pass upgrades to.
pub const TARGET_OPSET: i64 = 13;
/// The oldest opset converted.
pub const OLDEST_OPSET: i64 = 7;

/// Options of `upgrade_opset`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpgradeOpsetOptions {
    /// The target opset; only 13 is supported (default 13).
    pub target: i64,
}

impl Default for UpgradeOpsetOptions {
    fn default() -> Self {
        UpgradeOpsetOptions {
            target: TARGET_OPSET,
        }
    }
}

/// The `upgrade_opset` pass.
#[derive(Debug)]
pub struct UpgradeOpset;

impl UpgradeOpset {
    pub fn new(opts: UpgradeOpsetOptions) -> Result<Self, PassError> {
        if opts.target != TARGET_OPSET {
            return Err(PassError::InvalidOptions {
                pass: "upgrade_opset",
                message: format!("target must be {TARGET_OPSET}, got {}", opts.target),
            });
        }
        Ok(UpgradeOpset)
    }
}

fn unsupported(g: &Graph, n: NodeId, reason: impl Into<String>) -> PassError {
    PassError::Unsupported {
        pass: "upgrade_opset",
        node: nname(g, n),
        op_type: g.node(n).op().op_type().to_string(),
        reason: reason.into(),
    }
}

fn const_input(g: &mut Graph, n: NodeId, slot: usize, suffix: &str, data: qtool_ir::TensorData) {
    let base = format!("{}_{suffix}", nname(g, n));
    let v = add_init(g, &base, data);
    g.set_input(n, slot, Some(v));
}

fn ints_input(g: &mut Graph, n: NodeId, slot: usize, suffix: &str, v: &[i64]) {
    const_input(g, n, slot, suffix, tensor(&[v.len()], v.to_vec()));
}

/// Converts node `n` from opset `from` to 13; returns what was done (None: nothing to do).
fn convert(g: &mut Graph, n: NodeId, from: i64) -> Result<Option<String>, PassError> {
    let node = g.node(n);
    if node.op().domain() != "" {
        return Ok(None);
    }
    if node.attrs().iter().any(|a| {
        matches!(
            a.value,
            qtool_ir::AttrValue::Graph(_) | qtool_ir::AttrValue::Graphs(_)
        )
    }) {
        return Err(unsupported(g, n, "nodes with subgraphs are not converted"));
    }
    let op = node.op().clone();
    Ok(match op {
        Op::Opaque(o) => {
            if let Some(r) = &o.reason {
                return Err(unsupported(
                    g,
                    n,
                    format!("its attributes are not understood ({r})"),
                ));
            }
            match o.op_type.as_str() {
                "Hardmax" => {
                    return Err(unsupported(g, n, "Hardmax's axis semantics changed at 13"));
                }
                "Scatter" => {
                    let attrs = g.node(n).attrs().to_vec();
                    let mut new = Node::imported(None, "ScatterElements", attrs);
                    new.name = g.node(n).name.clone();
                    g.replace_node(n, new);
                    Some("Scatter became ScatterElements".into())
                }
                _ => None,
            }
        }
        Op::Split(mut s) if from < 13 && s.split.is_some() => {
            let split = s.split.take().expect("checked");
            g.node_mut(n).set_op(s);
            ints_input(g, n, 1, "split", &split);
            Some("split attribute became an input".into())
        }
        Op::Squeeze(mut s) if from < 13 && s.axes.is_some() => {
            let axes = s.axes.take().expect("checked");
            g.node_mut(n).set_op(s);
            ints_input(g, n, 1, "axes", &axes);
            Some("axes attribute became an input".into())
        }
        Op::Unsqueeze(mut s) if from < 13 => {
            let axes = s
                .axes
                .take()
                .ok_or_else(|| unsupported(g, n, "Unsqueeze without axes"))?;
            g.node_mut(n).set_op(s);
            ints_input(g, n, 1, "axes", &axes);
            Some("axes attribute became an input".into())
        }
        Op::ReduceSum(mut s) if from < 13 && s.axes.is_some() => {
            let axes = s.axes.take().expect("checked");
            g.node_mut(n).set_op(s);
            ints_input(g, n, 1, "axes", &axes);
            Some("axes attribute became an input".into())
        }
        Op::Clip(mut c) if from < 11 => {
            let (lo, hi) = (c.min.take(), c.max.take());
            g.node_mut(n).set_op(c);
            if let Some(lo) = lo {
                const_input(g, n, 1, "min", tensor::<f32>(&[], vec![lo]));
            }
            if let Some(hi) = hi {
                const_input(g, n, 2, "max", tensor::<f32>(&[], vec![hi]));
            }
            Some("min/max attributes became inputs".into())
        }
        Op::Pad(mut p) if from < 11 => {
            let pads = p
                .pads
                .take()
                .ok_or_else(|| unsupported(g, n, "Pad without pads"))?;
            let value = p.value.take();
            g.node_mut(n).set_op(p);
            ints_input(g, n, 1, "pads", &pads);
            if let Some(v) = value {
                const_input(g, n, 2, "value", tensor::<f32>(&[], vec![v]));
            }
            Some("pads/value attributes became inputs".into())
        }
        Op::Slice(mut s) if from < 10 => {
            let starts = s
                .starts
                .take()
                .ok_or_else(|| unsupported(g, n, "Slice without starts"))?;
            let ends = s
                .ends
                .take()
                .ok_or_else(|| unsupported(g, n, "Slice without ends"))?;
            let axes = s.axes.take();
            g.node_mut(n).set_op(s);
            ints_input(g, n, 1, "starts", &starts);
            ints_input(g, n, 2, "ends", &ends);
            if let Some(a) = axes {
                ints_input(g, n, 3, "axes", &a);
            }
            Some("starts/ends/axes attributes became inputs".into())
        }
        Op::TopK(mut t) if from < 10 => {
            let k =
                t.k.take()
                    .ok_or_else(|| unsupported(g, n, "TopK without k"))?;
            g.node_mut(n).set_op(t);
            ints_input(g, n, 1, "k", &[k]);
            Some("k attribute became an input".into())
        }
        Op::Dropout(mut d) if from < 12 => {
            if d.is_test == Some(0) {
                return Err(unsupported(g, n, "training-mode Dropout (is_test=0)"));
            }
            let ratio = d.ratio.take();
            d.is_test = None;
            g.node_mut(n).set_op(d);
            if let Some(r) = ratio {
                const_input(g, n, 1, "ratio", tensor::<f32>(&[], vec![r]));
            }
            Some("ratio attribute became an input".into())
        }
        Op::BatchNormalization(mut b)
            if from < 9 && (b.spatial.is_some() || b.is_test.is_some()) =>
        {
            if b.spatial == Some(0) {
                return Err(unsupported(g, n, "spatial=0 has no opset-13 equivalent"));
            }
            if b.is_test == Some(0) {
                return Err(unsupported(
                    g,
                    n,
                    "training-mode BatchNormalization (is_test=0)",
                ));
            }
            b.spatial = None;
            b.is_test = None;
            g.node_mut(n).set_op(b);
            Some("dropped spatial/is_test".into())
        }
        Op::Gemm(mut gm) if gm.broadcast.is_some() => {
            gm.broadcast = None;
            g.node_mut(n).set_op(gm);
            Some("dropped broadcast".into())
        }
        Op::Resize(mut r) if from < 11 => {
            let nearest = r.mode.as_deref().unwrap_or("nearest") == "nearest";
            r.coordinate_transformation_mode = Some("asymmetric".into());
            if nearest {
                r.nearest_mode = Some("floor".into());
            }
            g.node_mut(n).set_op(r);
            let scales = g.node(n).input(1);
            g.set_input(n, 1, None);
            g.set_input(n, 2, scales);
            Some("Resize-10 became Resize-13 (asymmetric coordinates, empty roi)".into())
        }
        Op::Upsample(u) => {
            let mode = match u.mode.as_deref().unwrap_or("nearest") {
                "nearest" => "nearest",
                "linear" | "bilinear" => "linear",
                m => return Err(unsupported(g, n, format!("Upsample mode '{m}'"))),
            };
            let r = ops::Resize {
                mode: Some(mode.into()),
                coordinate_transformation_mode: Some("asymmetric".into()),
                nearest_mode: if mode == "nearest" {
                    Some("floor".into())
                } else {
                    None
                },
                ..Default::default()
            };
            let scales = match (&u.scales, g.node(n).input(1)) {
                (Some(s), _) => {
                    let b = format!("{}_scales", nname(g, n));
                    add_init(g, &b, tensor(&[s.len()], s.clone()))
                }
                (None, Some(v)) => v,
                (None, None) => return Err(unsupported(g, n, "Upsample without scales")),
            };
            let name = g.node(n).name.clone();
            let mut new = Node::new(r, name.unwrap_or_default());
            new.name = g.node(n).name.clone();
            g.replace_node(n, new);
            g.set_input(n, 1, None);
            g.set_input(n, 2, Some(scales));
            Some("Upsample became Resize".into())
        }
        Op::Softmax(_) | Op::LogSoftmax(_) if from < 13 => convert_softmax(g, n)?,
        _ => None,
    })
}

/// Softmax/LogSoftmax before 13 flatten the input to 2-D at `axis` (default 1); from 13 they work on
/// one axis (default -1). Same result when the axis is the last; otherwise Flatten → op → Reshape.
fn convert_softmax(g: &mut Graph, n: NodeId) -> Result<Option<String>, PassError> {
    let axis = match g.node(n).op() {
        Op::Softmax(s) => s.axis,
        Op::LogSoftmax(s) => s.axis,
        _ => unreachable!(),
    }
    .unwrap_or(1);
    let x = g
        .node(n)
        .input(0)
        .ok_or_else(|| unsupported(g, n, "no input"))?;
    let rank = g.value(x).fact.shape.as_ref().map(|s| s.len());
    let set_axis = |g: &mut Graph, a: i64| {
        let op: Op = match g.node(n).op() {
            Op::Softmax(_) => ops::Softmax { axis: Some(a) }.into(),
            _ => ops::LogSoftmax { axis: Some(a) }.into(),
        };
        g.node_mut(n).set_op(op);
    };
    if let Some(r) = rank {
        let a = if axis < 0 { axis + r as i64 } else { axis };
        if a == r as i64 - 1 {
            set_axis(g, a);
            return Ok(Some(format!("axis {a} is the last, kept as explicit axis")));
        }
    }
    let base = nname(g, n);
    let (_, flat) = crate::util::insert_before(
        g,
        n,
        ops::Flatten { axis: Some(axis) },
        &format!("{base}_flatten"),
        &[Some(x)],
        &[&format!("{base}_flat")],
    );
    let (_, shape) = crate::util::insert_before(
        g,
        n,
        ops::Shape::default(),
        &format!("{base}_shape"),
        &[Some(x)],
        &[&format!("{base}_shape")],
    );
    g.set_input(n, 0, Some(flat[0]));
    set_axis(g, 1);
    let y = g
        .node(n)
        .output(0)
        .ok_or_else(|| unsupported(g, n, "no output"))?;
    let y2 = g.add_fresh_value(&format!("{base}_2d"));
    g.set_output(n, 0, Some(y2))
        .map_err(|source| PassError::Graph {
            pass: "upgrade_opset",
            source,
        })?;
    let reshape: ValueId = y;
    g.insert_node_after(
        n,
        Node::new(ops::Reshape::default(), format!("{base}_reshape")),
        &[Some(y2), Some(shape[0])],
        &[Some(reshape)],
    )
    .map_err(|source| PassError::Graph {
        pass: "upgrade_opset",
        source,
    })?;
    Ok(Some(format!(
        "axis {axis}: wrapped in Flatten/Reshape for opset-13 semantics"
    )))
}

impl Pass for UpgradeOpset {
    fn name(&self) -> &'static str {
        "upgrade_opset"
    }

    fn run(&self, model: &mut Model, _cx: &PassCx) -> Result<PassReport, PassError> {
        let from = model.onnx_opset();
        let mut report = PassReport::default();
        if from >= TARGET_OPSET {
            return Ok(report);
        }
        if from < OLDEST_OPSET {
            return Err(PassError::Failed {
                pass: "upgrade_opset",
                message: format!(
                    "opset {from} is older than {OLDEST_OPSET}, the oldest this pass converts"
                ),
            });
        }
        // Work on a copy; the model changes only if every node converts.
        let mut m = model.clone();
        let _ = qtool_ir::infer_shapes(&mut m, &[]);
        let g = &mut m.graph;
        for n in g.node_ids().to_vec() {
            if let Some(what) = convert(g, n, from)? {
                report.rewrite(nname(g, n), what);
            }
        }
        finish(self.name(), g)?;
        m.set_opset("", TARGET_OPSET);
        if m.ir_version.is_some_and(|v| v < 7) {
            m.ir_version = Some(7);
        }
        *model = m;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn opset_11_model_converts() {
        let mut b = Builder::new();
        let x = b.input("x", &[1, 4, 2]);
        let u = b.node(
            ops::Unsqueeze {
                axes: Some(vec![0]),
            },
            "unsq",
            &[x],
            "u",
        );
        let s = b.node(
            ops::Squeeze {
                axes: Some(vec![0]),
            },
            "sq",
            &[u],
            "s",
        );
        let sp = b.node_opt(
            ops::Split {
                axis: Some(1),
                split: Some(vec![1, 3]),
                num_outputs: None,
            },
            "split",
            &[Some(s)],
            &["s0", "s1"],
        );
        let r = b.node(
            ops::ReduceSum {
                axes: Some(vec![1]),
                keepdims: Some(1),
                ..Default::default()
            },
            "rsum",
            &[sp[1]],
            "r",
        );
        let sm = b.node(ops::Softmax { axis: Some(1) }, "softmax", &[r], "sm");
        let sm2 = b.node(
            ops::Softmax { axis: Some(-1) },
            "softmax_last",
            &[sp[0]],
            "sm2",
        );
        b.output(sm);
        b.output(sm2);
        let mut m = b.model(11);
        let rep = run(&UpgradeOpset, &mut m);
        assert_eq!(m.onnx_opset(), 13);
        insta::assert_snapshot!(show(&m, &rep));
    }

    #[test]
    fn opset_9_clip_pad_slice_upsample() {
        let mut b = Builder::new();
        let x = b.input("x", &[1, 1, 2, 2]);
        let c = b.node(
            ops::Clip {
                min: Some(0.0),
                max: Some(6.0),
            },
            "clip",
            &[x],
            "c",
        );
        let p = b.node(
            ops::Pad {
                pads: Some(vec![0, 0, 1, 1, 0, 0, 1, 1]),
                ..Default::default()
            },
            "pad",
            &[c],
            "p",
        );
        let s = b.node(
            ops::Slice {
                starts: Some(vec![1]),
                ends: Some(vec![3]),
                axes: Some(vec![2]),
            },
            "slice",
            &[p],
            "s",
        );
        let u = b.node(
            ops::Upsample {
                mode: Some("nearest".into()),
                scales: Some(vec![1.0, 1.0, 2.0, 2.0]),
            },
            "up",
            &[s],
            "u",
        );
        b.output(u);
        let mut m = b.model(9);
        let rep = run(&UpgradeOpset, &mut m);
        insta::assert_snapshot!(show(&m, &rep));
    }

    #[test]
    fn refuses_unconvertible_and_leaves_model_alone() {
        let mut b = Builder::new();
        let x = b.input("x", &[2, 2]);
        let o = b.g.add_value("y").unwrap();
        let attrs = vec![qtool_ir::Attribute::new(
            "axis",
            qtool_ir::AttrValue::Int(0),
        )];
        b.g.add_node(
            Node::imported(None, "Hardmax", attrs),
            &[Some(x)],
            &[Some(o)],
        )
        .unwrap();
        b.output(o);
        let mut m = b.model(11);
        let before = m.clone();
        let e = UpgradeOpset
            .run(&mut m, &PassCx::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("Hardmax"), "{e}");
        assert_eq!(m, before);
    }
}
