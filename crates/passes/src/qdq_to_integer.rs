//! `qdq_to_integer`: rewrites `DQ(x) + DQ(w) → Conv` into `ConvInteger(x_q, w_q, x_zp, w_zp) →
//! Cast(float) → Mul(x_scale * w_scale[c], shaped [1,M,1,..]) → Add(float bias)`, and
//! `DQ(a) + DQ(b) → MatMul` into `MatMulInteger → Cast → Mul`. The activation's QuantizeLinear stays
//! (static activation quantization); the float bias is the dequantized int32 bias when the bias was
//! quantized, so the result equals what the DequantizeLinear gave.

use crate::qdq_to_qlinear::{Dq, consts, dq_of};
use crate::util::{add_init, conv_integer, nname, prune_from, rescale_tail, rewrite_nodes, tensor};
use crate::{Pass, PassCx, PassError, PassReport};
use qtool_ir::{Graph, Model, Node, NodeId, Op, ValueId, ops};
use qtool_tensor::DType;
use qtool_tensor::quant::dequantize;
use serde::Deserialize;

/// Options of `qdq_to_integer`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QdqToIntegerOptions {
    /// Convert MatMul to MatMulInteger (default true).
    pub matmul: bool,
}

impl Default for QdqToIntegerOptions {
    fn default() -> Self {
        QdqToIntegerOptions { matmul: true }
    }
}

/// The `qdq_to_integer` pass.
#[derive(Debug)]
pub struct QdqToInteger {
    opts: QdqToIntegerOptions,
}

impl QdqToInteger {
    pub fn new(opts: QdqToIntegerOptions) -> Result<Self, PassError> {
        Ok(QdqToInteger { opts })
    }
}

/// Checks the DQ pair shared by both rewrites; returns (x scale, w scales).
fn scales(g: &Graph, x: &Dq, w: &Dq) -> Result<(f32, Vec<f32>), String> {
    let xs = consts(g, x.scale).ok_or("input scale is not constant")?;
    if xs.len() != 1 {
        return Err("input scale is not per tensor".into());
    }
    if x.zp.is_none() || w.zp.is_none() {
        return Err("a zero-point is absent".into());
    }
    g.initializer(w.q)
        .ok_or("quantized weight is not an initializer")?;
    let ws = consts(g, w.scale).ok_or("weight scale is not constant")?;
    Ok((xs[0], ws))
}

/// The float bias values of `b`: a float constant, or a DequantizeLinear of an int32 constant.
fn float_bias(g: &Graph, b: ValueId) -> Result<Vec<f32>, String> {
    if let Some(v) = consts(g, b) {
        return Ok(v);
    }
    let d = dq_of(g, Some(b)).ok_or("bias is neither constant nor dequantized")?;
    let q = g
        .initializer(d.q)
        .and_then(crate::util::i64s)
        .ok_or("quantized bias is not constant")?;
    let s = consts(g, d.scale).ok_or("bias scale is not constant")?;
    let z = match d.zp {
        Some(z) => consts(g, z).ok_or("bias zero-point is not constant")?,
        None => vec![0.0],
    };
    let pick = |v: &[f32], i: usize| v[if v.len() == 1 { 0 } else { i }];
    Ok(q.iter()
        .enumerate()
        .map(|(i, &qv)| dequantize(qv as i32, pick(&s, i), pick(&z, i) as i32))
        .collect())
}

impl QdqToInteger {
    fn conv(&self, g: &mut Graph, n: NodeId) -> Result<String, String> {
        let node = g.node(n);
        let Op::Conv(c) = node.op() else {
            unreachable!()
        };
        let c = c.clone();
        let x = dq_of(g, node.input(0)).ok_or("input is not dequantized")?;
        let w = dq_of(g, node.input(1)).ok_or("weight is not dequantized")?;
        let (xs, ws) = scales(g, &x, &w)?;
        if ws.len() > 1 && w.axis.unwrap_or(1) != 0 {
            return Err("weight is not quantized along axis 0".into());
        }
        let wt = g.initializer(w.q).expect("checked");
        let rank = wt.dims.len();
        let m = wt.dims[0] as usize;
        let bias = node.input(2).map(|b| float_bias(g, b)).transpose()?;
        if bias.as_ref().is_some_and(|b| b.len() != m) {
            return Err("bias length is not the number of output channels".into());
        }
        let mut bshape = vec![1usize; rank];
        bshape[1] = m;
        let mult: Vec<f32> = (0..m)
            .map(|i| xs * ws[if ws.len() == 1 { 0 } else { i }])
            .collect();
        let (mult, mshape) = if ws.len() == 1 {
            (vec![mult[0]], vec![])
        } else {
            (mult, bshape.clone())
        };
        let ci = conv_integer(c);
        // ONNX Runtime's ConvInteger only takes a per-tensor weight zero-point; symmetric weights
        // have all-equal (zero) per-channel zero-points, which one scalar says exactly. Per-channel
        // uint8 zero-points differ: such a Conv stays QDQ.
        let w_zp = w.zp.map(|z| scalar_if_uniform(g, z));
        if let Some(z) = w_zp
            && g.initializer(z).is_some_and(|t| t.numel() > 1)
        {
            return Err(
                "per-channel weight zero-points differ (uint8 weights): ConvInteger takes \
                 one weight zero-point (quantize with per_tensor_u8_conv_weights or int8 weights)"
                    .into(),
            );
        }
        let ins = [Some(x.q), Some(w.q), x.zp, w_zp];
        self.chain(
            g,
            n,
            Node::new(ci, format!("{}_ConvInteger", nname(g, n))),
            &ins,
            mult,
            &mshape,
            bias.map(|b| (b, bshape)),
        );
        Ok("became ConvInteger + Cast + Mul".into())
    }

    fn matmul(&self, g: &mut Graph, n: NodeId) -> Result<String, String> {
        let node = g.node(n);
        let a = dq_of(g, node.input(0)).ok_or("input A is not dequantized")?;
        let b = dq_of(g, node.input(1)).ok_or("input B is not dequantized")?;
        let (xs, ws) = scales(g, &a, &b)?;
        let bt = g.initializer(b.q).expect("checked");
        if ws.len() > 1 && (bt.dims.len() != 2 || !matches!(b.axis, Some(1) | Some(-1))) {
            return Err("B is not per tensor nor per column of a 2-D matrix".into());
        }
        let mult: Vec<f32> = ws.iter().map(|&s| xs * s).collect();
        let mshape = if ws.len() == 1 {
            vec![]
        } else {
            vec![ws.len()]
        };
        let ins = [Some(a.q), Some(b.q), a.zp, b.zp];
        self.chain(
            g,
            n,
            Node::new(
                ops::MatMulInteger {},
                format!("{}_MatMulInteger", nname(g, n)),
            ),
            &ins,
            mult,
            &mshape,
            None,
        );
        Ok("became MatMulInteger + Cast + Mul".into())
    }

    /// `DQ(a) + DQ(B) [+ C] → Gemm` (transA = 0) into `MatMulInteger(a_q, B_q as [K, N]) → Cast →
    /// Mul(alpha * a_scale * b_scale[n]) [→ Add(beta * C)]`; B is stored transposed when transB = 1.
    fn gemm(&self, g: &mut Graph, n: NodeId, gm: ops::Gemm) -> Result<String, String> {
        if gm.trans_a.unwrap_or(0) != 0 {
            return Err("transA = 1 is not supported".into());
        }
        let node = g.node(n);
        let a = dq_of(g, node.input(0)).ok_or("input A is not dequantized")?;
        let b = dq_of(g, node.input(1)).ok_or("input B is not dequantized")?;
        let (xs, ws) = scales(g, &a, &b)?;
        let bt = g.initializer(b.q).expect("checked").clone();
        if bt.dims.len() != 2 {
            return Err("B is not 2-D".into());
        }
        let trans_b = gm.trans_b.unwrap_or(0) != 0;
        let (k, ncols) = if trans_b {
            (bt.dims[1] as usize, bt.dims[0] as usize)
        } else {
            (bt.dims[0] as usize, bt.dims[1] as usize)
        };
        if ws.len() > 1 {
            let axis = b.axis.map(|x| if x < 0 { x + 2 } else { x }).unwrap_or(1);
            if ws.len() != ncols || axis != if trans_b { 0 } else { 1 } {
                return Err("B is not per tensor nor per output column".into());
            }
        }
        let (alpha, beta) = (gm.alpha.unwrap_or(1.0), gm.beta.unwrap_or(1.0));
        let bias = match node.input(2) {
            None => None,
            Some(c) => {
                let shape = match g.constant(c) {
                    Some(t) => crate::util::udims(t),
                    None => {
                        let d = dq_of(g, Some(c)).ok_or("C is neither constant nor dequantized")?;
                        crate::util::udims(g.initializer(d.q).ok_or("quantized C is not constant")?)
                    }
                };
                let v: Vec<f32> = float_bias(g, c)?.iter().map(|x| x * beta).collect();
                Some((v, shape))
            }
        };
        let bq = if trans_b {
            let q = crate::util::i64s(&bt).ok_or("B cannot be read")?;
            let mut t = vec![0i64; q.len()];
            for r in 0..ncols {
                for c in 0..k {
                    t[c * ncols + r] = q[r * k + c];
                }
            }
            let data = match bt.dtype {
                DType::I8 => tensor(&[k, ncols], t.iter().map(|&x| x as i8).collect::<Vec<_>>()),
                DType::U8 => tensor(&[k, ncols], t.iter().map(|&x| x as u8).collect::<Vec<_>>()),
                _ => return Err("B is not 8-bit".into()),
            };
            add_init(g, &format!("{}_transposed", g.value_name(b.q)), data)
        } else {
            b.q
        };
        let mult: Vec<f32> = ws.iter().map(|&s| alpha * xs * s).collect();
        let mshape = if ws.len() == 1 {
            vec![]
        } else {
            vec![ws.len()]
        };
        let ins = [Some(a.q), Some(bq), a.zp, b.zp];
        self.chain(
            g,
            n,
            Node::new(
                ops::MatMulInteger {},
                format!("{}_MatMulInteger", nname(g, n)),
            ),
            &ins,
            mult,
            &mshape,
            bias,
        );
        Ok("became MatMulInteger + Cast + Mul (+ Add)".into())
    }

    /// Replaces node `n` by `int_node → Cast → Mul(mult) [→ Add(bias)]`, writing `n`'s output.
    fn chain(
        &self,
        g: &mut Graph,
        n: NodeId,
        int_node: Node,
        ins: &[Option<ValueId>],
        mult: Vec<f32>,
        mshape: &[usize],
        bias: Option<(Vec<f32>, Vec<usize>)>,
    ) {
        let base = nname(g, n);
        let y = g.node(n).output(0).expect("one output");
        let feeders: Vec<NodeId> = g
            .node(n)
            .inputs()
            .iter()
            .flatten()
            .filter_map(|v| g.producer(*v))
            .collect();
        let acc = g.add_fresh_value(&format!("{base}_int32"));
        g.insert_node_before(n, int_node, ins, &[Some(acc)])
            .expect("fresh");
        let accf = g.add_fresh_value(&format!("{base}_float"));
        let cast = ops::Cast {
            to: Some(DType::F32 as i64),
            ..Default::default()
        };
        let cn = g
            .insert_node_before(
                n,
                Node::new(cast, format!("{base}_Cast")),
                &[Some(acc)],
                &[Some(accf)],
            )
            .expect("fresh");
        let mv = add_init(g, &format!("{base}_multiplier"), tensor(mshape, mult));
        let bias_init =
            bias.map(|(b, s)| add_init(g, &format!("{base}_bias_float"), tensor(&s, b)));
        g.remove_node(n);
        rescale_tail(g, cn, &base, accf, mv, bias_init, y);
        for f in feeders {
            prune_from(g, f);
        }
    }
}

impl Pass for QdqToInteger {
    fn name(&self) -> &'static str {
        "qdq_to_integer"
    }

    fn run(&self, model: &mut Model, _cx: &PassCx) -> Result<PassReport, PassError> {
        rewrite_nodes(self.name(), &mut model.graph, |g, n| {
            Some(match g.node(n).op() {
                Op::Conv(_) => self.conv(g, n),
                Op::MatMul(_) if self.opts.matmul => self.matmul(g, n),
                Op::Gemm(gm) if self.opts.matmul => {
                    let gm = gm.clone();
                    self.gemm(g, n, gm)
                }
                _ => return None,
            })
        })
    }
}

/// `z` itself, or a new scalar initializer when `z` is a constant whose elements are all equal.
fn scalar_if_uniform(g: &mut Graph, z: qtool_ir::ValueId) -> qtool_ir::ValueId {
    let Some(t) = g.initializer(z) else { return z };
    if t.numel() <= 1 {
        return z;
    }
    let Some(raw) = t.raw() else { return z };
    let width = t.dtype.byte_len(1).unwrap_or(0);
    if width == 0 || t.dtype.bits() != Some(width * 8) {
        return z;
    }
    let first = raw[..width].to_vec();
    if !raw.chunks_exact(width).all(|c| c == first.as_slice()) {
        return z;
    }
    let mut scalar = t.clone();
    scalar.name = None;
    scalar.dims = Vec::new();
    scalar.data = qtool_ir::TensorBytes::Raw(first.into());
    scalar.storage = qtool_ir::Storage::Raw;
    let name = g.fresh_name(&format!("{}_scalar", g.value_name(z)));
    g.add_initializer(&name, scalar).unwrap_or(z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn conv_and_matmul_become_integer_ops() {
        let mut m = crate::qdq_to_qlinear::tests::qdq_conv_matmul();
        let rep = run(&QdqToInteger::new(Default::default()).unwrap(), &mut m);
        assert_eq!(rep.rewritten.len(), 2, "{rep}");
        insta::assert_snapshot!(show(&m, &rep));
        // The multiplier is x_scale * w_scale[c]; the float bias the dequantized int32 bias.
        let g = &m.graph;
        use qtool_tensor::quant::{QScheme, compute_scale_zp};
        let xs = compute_scale_zp(-1.0, 1.0, QScheme::U8_ASYM).scale;
        assert_eq!(xs, (2.0f64 / 255.0) as f32);
        let ws = [(0.5f64 / 127.0) as f32, (0.25f64 / 127.0) as f32];
        let mult = crate::util::f32s(
            g.initializer(g.find_value("conv_multiplier").unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(mult, vec![xs * ws[0], xs * ws[1]]);
    }
}

#[cfg(test)]
mod gemm_tests {
    use super::*;
    use crate::InsertQdqOptions;
    use crate::testing::*;

    #[test]
    fn gemm_with_trans_b_becomes_matmul_integer_with_b_transposed() {
        let mut b = Builder::new();
        let x = b.input("x", &[2, 3]);
        let w = b.init_f32(
            "w",
            &[4, 3],
            (0..12).map(|i| i as f32 / 6.0 - 1.0).collect(),
        );
        let c = b.init_f32("c", &[4], vec![0.1, 0.2, -0.3, 0.4]);
        let gm = ops::Gemm {
            trans_b: Some(1),
            ..Default::default()
        };
        let y = b.node(gm, "fc", &[x, w, c], "y");
        b.output(y);
        let mut m = b.model(13);
        insert_qdq_from(
            &mut m,
            &[("x", (-1.0, 1.0)), ("y", (-3.0, 3.0))],
            InsertQdqOptions::default(),
        );
        let wq = crate::util::i64s(
            m.graph
                .initializer(m.graph.find_value("w_quantized").unwrap())
                .unwrap(),
        )
        .unwrap();
        let rep = run(&QdqToInteger::new(Default::default()).unwrap(), &mut m);
        assert_eq!(rep.rewritten.len(), 1, "{rep}");
        let g = &m.graph;
        let t = g
            .initializer(g.find_value("w_quantized_transposed").unwrap())
            .unwrap();
        assert_eq!(t.dims, vec![3, 4]);
        let tq = crate::util::i64s(t).unwrap();
        // Element (k, n) of the stored [K, N] matrix is element (n, k) of the original [N, K].
        for n in 0..4 {
            for k in 0..3 {
                assert_eq!(tq[k * 4 + n], wq[n * 3 + k]);
            }
        }
        let ops: Vec<&str> = g.nodes().map(|(_, n)| n.op().op_type()).collect();
        assert!(
            ops.contains(&"MatMulInteger") && ops.contains(&"Add"),
            "{ops:?}"
        );
    }
}
