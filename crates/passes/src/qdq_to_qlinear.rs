//! `qdq_to_qlinear`: rewrites QDQ islands into standard-ONNX QOperator ops:
//! `DQ(x) + DQ(w) [+ DQ(bias int32)] → Conv → Q(y)` becomes QLinearConv and
//! `DQ(a) + DQ(b) → MatMul → Q(y)` becomes QLinearMatMul. Every other QDQ island stays a float op
//! between DequantizeLinear and QuantizeLinear (no com.microsoft ops are written). Patterns that do
//! not match exactly (e.g. a bias scale that is not `x_scale * w_scale`) are reported as skips.

use crate::util::{f32s, nname, prune_from, rewrite_nodes};
use crate::{Pass, PassCx, PassError, PassReport};
use qtool_ir::{Graph, Model, Node, NodeId, Op, ValueId, ops};
use serde::Deserialize;

/// Options of `qdq_to_qlinear`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QdqToQLinearOptions {
    /// Convert Convs with per-channel weight scales (default true). OpenVINO 2026.4 mis-reads
    /// per-channel QLinearConv; set false to keep those Convs in QDQ form.
    pub per_channel: bool,
    /// Convert MatMul to QLinearMatMul (default true).
    pub matmul: bool,
}

impl Default for QdqToQLinearOptions {
    fn default() -> Self {
        QdqToQLinearOptions {
            per_channel: true,
            matmul: true,
        }
    }
}

/// The `qdq_to_qlinear` pass.
#[derive(Debug)]
pub struct QdqToQLinear {
    opts: QdqToQLinearOptions,
}

impl QdqToQLinear {
    pub fn new(opts: QdqToQLinearOptions) -> Result<Self, PassError> {
        Ok(QdqToQLinear { opts })
    }
}

/// The parts of a DequantizeLinear producing a value.
#[derive(Clone, Debug)]
pub(crate) struct Dq {
    pub q: ValueId,
    pub scale: ValueId,
    pub zp: Option<ValueId>,
    pub axis: Option<i64>,
}

/// The DequantizeLinear producing `v`, if any.
pub(crate) fn dq_of(g: &Graph, v: Option<ValueId>) -> Option<Dq> {
    let n = g.producer(v?)?;
    let node = g.node(n);
    let Op::DequantizeLinear(d) = node.op() else {
        return None;
    };
    if node.op().domain() != ""
        || node
            .domain
            .as_deref()
            .is_some_and(|d| !d.is_empty() && d != "ai.onnx")
    {
        return None;
    }
    Some(Dq {
        q: node.input(0)?,
        scale: node.input(1)?,
        zp: node.input(2),
        axis: d.axis,
    })
}

/// Constant float contents of `v`.
pub(crate) fn consts(g: &Graph, v: ValueId) -> Option<Vec<f32>> {
    f32s(g.constant(v)?)
}

fn is_scalar(g: &Graph, v: ValueId) -> bool {
    g.constant(v).is_some_and(|t| t.numel() == 1)
}

/// The QuantizeLinear that is the only consumer of `y`: (node, scale, zero-point, output).
fn q_after(g: &Graph, y: ValueId) -> Option<(NodeId, ValueId, ValueId, ValueId)> {
    if g.is_graph_output(y) {
        return None;
    }
    let [(n, 0)] = g.value(y).uses() else {
        return None;
    };
    let node = g.node(*n);
    let Op::QuantizeLinear(_) = node.op() else {
        return None;
    };
    Some((*n, node.input(1)?, node.input(2)?, node.output(0)?))
}

impl QdqToQLinear {
    fn conv(&self, g: &mut Graph, n: NodeId) -> Result<String, String> {
        let node = g.node(n);
        let Op::Conv(c) = node.op() else {
            unreachable!()
        };
        let c = c.clone();
        let x = dq_of(g, node.input(0)).ok_or("input is not dequantized")?;
        let w = dq_of(g, node.input(1)).ok_or("weight is not dequantized")?;
        if !is_scalar(g, x.scale) {
            return Err("input scale is not per tensor".into());
        }
        let (xzp, wzp) = (
            x.zp.ok_or("input zero-point absent")?,
            w.zp.ok_or("weight zero-point absent")?,
        );
        g.initializer(w.q)
            .ok_or("quantized weight is not an initializer")?;
        let ws = consts(g, w.scale).ok_or("weight scale is not constant")?;
        let xs = consts(g, x.scale).ok_or("input scale is not constant")?[0];
        if ws.len() > 1 {
            if !self.opts.per_channel {
                return Err("per-channel weight scales (per_channel=false)".into());
            }
            if w.axis.unwrap_or(1) != 0 {
                return Err("weight is not quantized along axis 0".into());
            }
        }
        let bias = match node.input(2) {
            None => None,
            Some(b) => {
                let d = dq_of(g, Some(b)).ok_or("bias is not a DequantizeLinear of int32")?;
                let bt = g
                    .initializer(d.q)
                    .ok_or("quantized bias is not an initializer")?;
                if bt.dtype != qtool_tensor::DType::I32 {
                    return Err("bias is not int32".into());
                }
                if let Some(z) = d.zp
                    && consts(g, z)
                        .ok_or("bias zero-point is not constant")?
                        .iter()
                        .any(|&v| v != 0.0)
                {
                    return Err("bias zero-point is not 0".into());
                }
                let bs = consts(g, d.scale).ok_or("bias scale is not constant")?;
                let m = bt.numel();
                let ok = (0..m).all(|i| {
                    let want = xs
                        * ws[if ws.len() == 1 {
                            0
                        } else {
                            i.min(ws.len() - 1)
                        }];
                    bs[if bs.len() == 1 {
                        0
                    } else {
                        i.min(bs.len() - 1)
                    }] == want
                });
                if !ok {
                    return Err("bias scale is not x_scale * w_scale".into());
                }
                Some(d.q)
            }
        };
        let y = node.output(0).ok_or("no output")?;
        let (qn, ys, yzp, qout) =
            q_after(g, y).ok_or("output is not quantized by its only consumer")?;
        let qc = ops::QLinearConv {
            auto_pad: c.auto_pad,
            dilations: c.dilations,
            group: c.group,
            kernel_shape: c.kernel_shape,
            pads: c.pads,
            strides: c.strides,
        };
        let name = format!("{}_quant", nname(g, n));
        let ins = [
            Some(x.q),
            Some(x.scale),
            Some(xzp),
            Some(w.q),
            Some(w.scale),
            Some(wzp),
            Some(ys),
            Some(yzp),
            bias,
        ];
        let ins: Vec<Option<ValueId>> = if bias.is_none() {
            ins[..8].to_vec()
        } else {
            ins.to_vec()
        };
        self.replace(g, n, qn, Node::new(qc, name), &ins, qout);
        Ok("became QLinearConv".into())
    }

    fn matmul(&self, g: &mut Graph, n: NodeId) -> Result<String, String> {
        let node = g.node(n);
        let a = dq_of(g, node.input(0)).ok_or("input A is not dequantized")?;
        let b = dq_of(g, node.input(1)).ok_or("input B is not dequantized")?;
        if !is_scalar(g, a.scale) {
            return Err("A's scale is not per tensor".into());
        }
        let (azp, bzp) = (
            a.zp.ok_or("A zero-point absent")?,
            b.zp.ok_or("B zero-point absent")?,
        );
        if !is_scalar(g, b.scale) {
            let brank = g
                .constant(b.q)
                .map(|t| t.dims.len())
                .or_else(|| g.value(b.q).fact.shape.as_ref().map(|s| s.len()));
            if brank != Some(2) || !matches!(b.axis, Some(1) | Some(-1)) {
                return Err("B is not per tensor nor per column of a 2-D matrix".into());
            }
        }
        let y = node.output(0).ok_or("no output")?;
        let (qn, ys, yzp, qout) =
            q_after(g, y).ok_or("output is not quantized by its only consumer")?;
        let name = format!("{}_quant", nname(g, n));
        let ins = [
            Some(a.q),
            Some(a.scale),
            Some(azp),
            Some(b.q),
            Some(b.scale),
            Some(bzp),
            Some(ys),
            Some(yzp),
        ];
        self.replace(g, n, qn, Node::new(ops::QLinearMatMul {}, name), &ins, qout);
        Ok("became QLinearMatMul".into())
    }

    /// Puts `new` in place of node `n` and its QuantizeLinear `qn`, writing `qout`; prunes what
    /// fed only `n`.
    fn replace(
        &self,
        g: &mut Graph,
        n: NodeId,
        qn: NodeId,
        new: Node,
        ins: &[Option<ValueId>],
        qout: ValueId,
    ) {
        let feeders: Vec<NodeId> = g
            .node(n)
            .inputs()
            .iter()
            .flatten()
            .filter_map(|v| g.producer(*v))
            .collect();
        g.remove_node(qn);
        g.insert_node_before(n, new, ins, &[Some(qout)])
            .expect("qout was freed");
        g.remove_node(n);
        for f in feeders {
            prune_from(g, f);
        }
    }
}

impl Pass for QdqToQLinear {
    fn name(&self) -> &'static str {
        "qdq_to_qlinear"
    }

    fn run(&self, model: &mut Model, _cx: &PassCx) -> Result<PassReport, PassError> {
        rewrite_nodes(self.name(), &mut model.graph, |g, n| {
            let quantized_island = g.node(n).inputs().iter().any(|v| dq_of(g, *v).is_some());
            Some(match g.node(n).op() {
                Op::Conv(_) => self.conv(g, n),
                Op::MatMul(_) if self.opts.matmul => self.matmul(g, n),
                Op::Gemm(_) if quantized_island => Err("no standard-ONNX QLinear op for Gemm (QGemm is com.microsoft); kept in QDQ form".into()),
                _ => return None,
            })
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::*;
    use crate::{InsertQdq, InsertQdqOptions, PassCx, Ranges};

    pub(crate) fn qdq_conv_matmul() -> qtool_ir::Model {
        let mut b = Builder::new();
        let x = b.input("x", &[1, 1, 2, 2]);
        let w = b.init_f32("w", &[2, 1, 1, 1], vec![0.5, -0.25]);
        let bias = b.init_f32("b", &[2], vec![0.1, -0.2]);
        let c = b.node(ops::Conv::default(), "conv", &[x, w, bias], "c");
        let f = b.node(ops::Flatten { axis: Some(1) }, "flatten", &[c], "f");
        let wm = b.init_f32(
            "wm",
            &[8, 2],
            (0..16).map(|i| i as f32 / 16.0 - 0.5).collect(),
        );
        let y = b.node(ops::MatMul {}, "matmul", &[f, wm], "y");
        b.output(y);
        let mut m = b.model(13);
        let ranges: Ranges = [("x", (-1.0, 1.0)), ("c", (-0.5, 0.7)), ("y", (-2.0, 2.0))]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        run_cx(
            &InsertQdq::new(InsertQdqOptions::default()).unwrap(),
            &mut m,
            &PassCx {
                ranges: Some(&ranges),
            },
        );
        m
    }

    #[test]
    fn conv_and_matmul_become_qlinear() {
        let mut m = qdq_conv_matmul();
        let rep = run(&QdqToQLinear::new(Default::default()).unwrap(), &mut m);
        assert_eq!(rep.rewritten.len(), 2, "{rep}");
        insta::assert_snapshot!(show(&m, &rep));
    }

    #[test]
    fn wrong_bias_scale_is_skipped() {
        let mut m = qdq_conv_matmul();
        let g = &mut m.graph;
        let bs = g.find_value("b_quantized_scale").unwrap();
        let t = crate::util::tensor(&[2], vec![1.0f32, 1.0]);
        g.set_initializer(bs, t);
        let rep = run(&QdqToQLinear::new(Default::default()).unwrap(), &mut m);
        assert!(
            rep.skipped
                .iter()
                .any(|s| s.node == "conv" && s.reason.contains("bias scale")),
            "{rep}"
        );
    }

    #[test]
    fn per_channel_disabled_keeps_conv() {
        let mut m = qdq_conv_matmul();
        let rep = run(
            &QdqToQLinear::new(QdqToQLinearOptions {
                per_channel: false,
                matmul: true,
            })
            .unwrap(),
            &mut m,
        );
        assert!(rep.skipped.iter().any(|s| s.node == "conv"), "{rep}");
    }
}
