//! `qdq_to_qlinear`: rewrites QDQ islands into QOperator ops:
//! `DQ(x) + DQ(w) [+ DQ(bias int32)] → Conv → Q(y)` becomes QLinearConv,
//! `DQ(a) + DQ(b) → MatMul → Q(y)` becomes QLinearMatMul, and a Gemm with a constant B becomes
//! `Reshape(a, [0, 0, 1, 1]) → QLinearConv (1x1, weights [N, K, 1, 1]) → Reshape([0, 0])`, which
//! keeps the int32 bias and computes exactly what ONNX Runtime's QGemm computes. By default only
//! standard ONNX ops are written and every other island stays a float op between DequantizeLinear
//! and QuantizeLinear; with `contrib: true` the islands ONNX Runtime has com.microsoft kernels for
//! become those ops ([`contrib`]). Patterns that do not match exactly (e.g. a bias scale that is not
//! `x_scale * w_scale`) are reported as skips.

pub(crate) mod contrib;

use crate::util::{add_init, f32s, nname, prune_from, rewrite_nodes, tensor};
use crate::{Pass, PassCx, PassError, PassReport};
use qtool_ir::{Graph, Model, Node, NodeId, Op, ValueId, ops};
use qtool_tensor::DType;
use serde::Deserialize;

/// Options of `qdq_to_qlinear`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QdqToQLinearOptions {
    /// Convert Convs with per-channel weight scales (default true). OpenVINO 2026.4 mis-reads
    /// per-channel QLinearConv; set false to keep those Convs in QDQ form.
    pub per_channel: bool,
    /// Convert MatMul to QLinearMatMul and Gemm to its QLinearConv form (default true).
    pub matmul: bool,
    /// Also write ONNX Runtime's com.microsoft ops (QLinearAdd/Mul/..., QGemm for Gemm) and run
    /// data-movement ops on 8-bit tensors (default false: standard ONNX ops only).
    pub contrib: bool,
}

impl Default for QdqToQLinearOptions {
    fn default() -> Self {
        QdqToQLinearOptions {
            per_channel: true,
            matmul: true,
            contrib: false,
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

/// Refuses an int8 input with a uint8 weight: ONNX Runtime 1.32 has no QLinearConv or
/// QLinearMatMul kernel for it (it refuses the model), so such an island stays QDQ.
fn kernel_types(g: &Graph, x: &Dq, w: &Dq, op: &str) -> Result<(), String> {
    let xt = x.zp.and_then(|z| crate::util::dtype_of(g, z));
    let wt = crate::util::dtype_of(g, w.q);
    if xt == Some(DType::I8) && wt == Some(DType::U8) {
        return Err(format!(
            "int8 input with uint8 weight: ONNX Runtime has no {op} kernel for int8 x uint8"
        ));
    }
    Ok(())
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

/// The parts of a quantized Gemm island both Gemm rewrites need.
pub(super) struct GemmParts {
    pub a: Dq,
    pub b: Dq,
    pub b_dtype: DType,
    /// The int32 bias (scale `a_scale * b_scale[n]`, zero-point 0), when there is one.
    pub bias: Option<ValueId>,
    /// Number of B scales (1 or N).
    pub ws_len: usize,
    pub trans_b: bool,
    pub k: usize,
    pub ncols: usize,
}

/// Checks `DQ(a) + DQ(B const) [+ DQ(C int32)] → Gemm` with alpha = 1 (and beta = 1 with C).
pub(super) fn gemm_parts(g: &Graph, n: NodeId, gm: &ops::Gemm) -> Result<GemmParts, String> {
    let node = g.node(n);
    if gm.alpha.unwrap_or(1.0) != 1.0 {
        return Err("alpha != 1".into());
    }
    let a = dq_of(g, node.input(0)).ok_or("input A is not dequantized")?;
    let b = dq_of(g, node.input(1)).ok_or("input B is not dequantized")?;
    if !is_scalar(g, a.scale) {
        return Err("A's scale is not per tensor".into());
    }
    if a.zp.is_none() || b.zp.is_none() {
        return Err("a zero-point is absent".into());
    }
    let bt = g
        .initializer(b.q)
        .ok_or("quantized B is not an initializer")?;
    if bt.dims.len() != 2 {
        return Err("B is not 2-D".into());
    }
    let b_dtype = bt.dtype;
    if !matches!(b_dtype, DType::I8 | DType::U8) {
        return Err("B is not 8-bit".into());
    }
    let trans_b = gm.trans_b.unwrap_or(0) != 0;
    let (k, ncols) = if trans_b {
        (bt.dims[1] as usize, bt.dims[0] as usize)
    } else {
        (bt.dims[0] as usize, bt.dims[1] as usize)
    };
    let xs = consts(g, a.scale).ok_or("A's scale is not constant")?[0];
    let ws = consts(g, b.scale).ok_or("B's scale is not constant")?;
    if ws.len() > 1 {
        let axis = b.axis.map(|x| if x < 0 { x + 2 } else { x }).unwrap_or(1);
        if ws.len() != ncols || axis != if trans_b { 0 } else { 1 } {
            return Err("B is not per tensor nor per output column".into());
        }
    }
    let bias = match node.input(2) {
        None => None,
        Some(c) => {
            if gm.beta.unwrap_or(1.0) != 1.0 {
                return Err("beta != 1".into());
            }
            let d = dq_of(g, Some(c)).ok_or("C is not a DequantizeLinear of int32 (float bias)")?;
            let ct = g
                .initializer(d.q)
                .ok_or("quantized C is not an initializer")?;
            if ct.dtype != DType::I32 {
                return Err("C is not int32".into());
            }
            if ct.dims.len() != 1 || ct.numel() != ncols {
                return Err("C is not one value per output column".into());
            }
            if let Some(z) = d.zp
                && consts(g, z)
                    .ok_or("C's zero-point is not constant")?
                    .iter()
                    .any(|&v| v != 0.0)
            {
                return Err("C's zero-point is not 0".into());
            }
            let cs = consts(g, d.scale).ok_or("C's scale is not constant")?;
            let pick = |v: &[f32], i: usize| v[if v.len() == 1 { 0 } else { i.min(v.len() - 1) }];
            if !(0..ncols).all(|i| pick(&cs, i) == xs * pick(&ws, i)) {
                return Err("C's scale is not a_scale * b_scale".into());
            }
            Some(d.q)
        }
    };
    Ok(GemmParts {
        a,
        b,
        b_dtype,
        bias,
        ws_len: ws.len(),
        trans_b,
        k,
        ncols,
    })
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
        kernel_types(g, &x, &w, "QLinearConv")?;
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
        kernel_types(g, &a, &b, "QLinearMatMul")?;
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

    /// `DQ(a) + DQ(B) [+ DQ(C int32)] → Gemm → Q(y)` (B constant) as standard ops:
    /// `Reshape(a_q, [0, 0, 1, 1]) → QLinearConv(1x1, W = B' as [N, K, 1, 1], bias C) →
    /// Reshape([0, 0])`. A 1x1 convolution over `[M, K, 1, 1]` is the product `A B'`; QLinearConv
    /// adds the int32 bias to the exact int32 sum and requantizes with `a_scale * b_scale[n] /
    /// y_scale`, as ONNX Runtime's QGemm (and its QDQ Gemm fusion) does.
    fn gemm(&self, g: &mut Graph, n: NodeId, gm: &ops::Gemm) -> Result<String, String> {
        if gm.trans_a.unwrap_or(0) != 0 {
            return Err("transA = 1 (the QLinearConv form reads A as [M, K])".into());
        }
        let gp = gemm_parts(g, n, gm)?;
        kernel_types(g, &gp.a, &gp.b, "QLinearConv")?;
        if gp.ws_len > 1 && !self.opts.per_channel {
            return Err("per-channel weight scales (per_channel=false)".into());
        }
        let y = g.node(n).output(0).ok_or("no output")?;
        let (qn, ys, yzp, qout) =
            q_after(g, y).ok_or("output is not quantized by its only consumer")?;
        let bt = g.initializer(gp.b.q).expect("checked").clone();
        let q = crate::util::i64s(&bt).ok_or("B cannot be read")?;
        let (k, nc) = (gp.k, gp.ncols);
        let w: Vec<i64> = if gp.trans_b {
            q
        } else {
            let mut t = vec![0i64; q.len()];
            for r in 0..k {
                for c in 0..nc {
                    t[c * k + r] = q[r * nc + c];
                }
            }
            t
        };
        let wshape = [nc, k, 1, 1];
        let wdata = match gp.b_dtype {
            DType::I8 => tensor(&wshape, w.iter().map(|&v| v as i8).collect::<Vec<_>>()),
            _ => tensor(&wshape, w.iter().map(|&v| v as u8).collect::<Vec<_>>()),
        };
        let base = nname(g, n);
        let bname = g.value_name(gp.b.q).to_string();
        let w4 = add_init(g, &format!("{bname}_1x1"), wdata);
        let s4 = add_init(
            g,
            &format!("{base}_shape_4d"),
            tensor(&[4], vec![0i64, 0, 1, 1]),
        );
        let s2 = add_init(g, &format!("{base}_shape_2d"), tensor(&[2], vec![0i64, 0]));
        let feeders: Vec<NodeId> = g
            .node(n)
            .inputs()
            .iter()
            .flatten()
            .filter_map(|v| g.producer(*v))
            .collect();
        let a4 = g.add_fresh_value(&format!("{base}_A_4d"));
        let y4 = g.add_fresh_value(&format!("{base}_Y_4d"));
        let reshape = |name: String| Node::new(ops::Reshape::default(), name);
        g.insert_node_before(
            n,
            reshape(format!("{base}_Reshape_A")),
            &[Some(gp.a.q), Some(s4)],
            &[Some(a4)],
        )
        .expect("fresh");
        let qc = ops::QLinearConv {
            kernel_shape: Some(vec![1, 1]),
            ..Default::default()
        };
        let mut ins = vec![
            Some(a4),
            Some(gp.a.scale),
            gp.a.zp,
            Some(w4),
            Some(gp.b.scale),
            gp.b.zp,
            Some(ys),
            Some(yzp),
        ];
        if gp.bias.is_some() {
            ins.push(gp.bias);
        }
        g.insert_node_before(n, Node::new(qc, format!("{base}_quant")), &ins, &[Some(y4)])
            .expect("fresh");
        g.remove_node(qn);
        g.insert_node_before(
            n,
            reshape(format!("{base}_Reshape_Y")),
            &[Some(y4), Some(s2)],
            &[Some(qout)],
        )
        .expect("qout was freed");
        g.remove_node(n);
        for f in feeders {
            prune_from(g, f);
        }
        crate::util::drop_init_if_unused(g, gp.b.q);
        Ok("became Reshape + QLinearConv (1x1) + Reshape".into())
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
        let opset = model.onnx_opset();
        let report = rewrite_nodes(self.name(), &mut model.graph, |g, n| {
            let quantized_island = g.node(n).inputs().iter().any(|v| dq_of(g, *v).is_some());
            Some(match g.node(n).op() {
                Op::Conv(_) => self.conv(g, n),
                Op::MatMul(_) if self.opts.matmul => self.matmul(g, n),
                Op::Gemm(gm) if quantized_island && self.opts.matmul => {
                    let gm = gm.clone();
                    if self.opts.contrib {
                        contrib::qgemm(self, g, n, &gm)
                    } else {
                        self.gemm(g, n, &gm)
                    }
                }
                _ if quantized_island && self.opts.contrib => {
                    return contrib::rewrite(self, g, n, opset);
                }
                _ => return None,
            })
        })?;
        if report
            .rewritten
            .iter()
            .any(|r| r.what.ends_with(contrib::MS))
            && model.opset(qtool_ir::ops::DOMAIN_MS).is_none()
        {
            model.set_opset(qtool_ir::ops::DOMAIN_MS, 1);
        }
        Ok(report)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::InsertQdqOptions;
    use crate::testing::*;

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
        insert_qdq_from(
            &mut m,
            &[("x", (-1.0, 1.0)), ("c", (-0.5, 0.7)), ("y", (-2.0, 2.0))],
            InsertQdqOptions::default(),
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
                contrib: false,
            })
            .unwrap(),
            &mut m,
        );
        assert!(rep.skipped.iter().any(|s| s.node == "conv"), "{rep}");
    }
}
