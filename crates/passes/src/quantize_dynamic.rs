//! `quantize_dynamic`: dynamic quantization. Weights are stored int8 symmetric (per output channel
//! by default, which ConvInteger and MatMulInteger both allow because a symmetric weight's
//! zero-point is 0 in every channel and the per-channel scale lives in the float rescale);
//! activations are quantized at run time by `DynamicQuantizeLinear` (uint8, asymmetric):
//!
//! - `Conv(x, W, B)` → `DynamicQuantizeLinear(x) → ConvInteger(x_q, W_q, x_zp, 0) → Cast(float) →
//!   Mul(x_scale * w_scale[c], shaped [1,M,1,..]) → Add(B, shaped [1,M,1,..])`;
//! - `MatMul(A, B)` with a constant B → `DynamicQuantizeLinear(A) → MatMulInteger(A_q, B_q, A_zp, 0)
//!   → Cast → Mul(A_scale * b_scale[n])`;
//! - `Gemm(A, B, C)` (transA = 0, B constant) → as MatMul with B stored `[K,N]` (transposed when
//!   transB = 1), `alpha` folded into the weight scale and `beta * C` added in float.
//!
//! Only standard ONNX ops are written by default. With `contrib: true`, MatMul and Gemm become ONNX
//! Runtime's `com.microsoft::DynamicQuantizeMatMul` (quantization, integer product, rescale and
//! bias in one op); Conv has no such contrib op and keeps the standard form.
//!
//! Type combinations (ONNX Runtime 1.32 CPU, checked by `cargo xtask interop`): DynamicQuantizeLinear
//! only produces uint8; ConvInteger accepts uint8 activations with uint8 or int8 weights and one
//! (scalar) weight zero-point; MatMulInteger accepts uint8/int8 × uint8/int8 with a scalar or
//! per-column B zero-point. The pass writes uint8 × int8 with scalar zero-point 0 everywhere, or
//! with `weights: u8_asymmetric` (ONNX Runtime's `weight_type=QUInt8`) uint8 × uint8: Conv weights
//! per tensor (one zero-point for ConvInteger), MatMul/Gemm weights with per-column zero-points.
//! A graph input feeding several quantized ops gets one DynamicQuantizeLinear that they share.

use crate::insert_qdq::{WeightScheme, quantize_weight, weight_params, zp_tensor};
use crate::upgrade_opset::UpgradeOpset;
use crate::util::{
    add_init, conv_integer, drop_init_if_unused, dtype_of, exclude_regexes, excluded_by, f32s,
    finish, nname, rescale_tail, tensor, udims,
};
use crate::{Pass, PassCx, PassError, PassReport};
use qtool_ir::{Graph, Model, Node, NodeId, Op, ValueId, ops};
use qtool_tensor::DType;
use regex::Regex;
use serde::Deserialize;
use std::collections::HashMap;

/// Op types `quantize_dynamic` rewrites.
const DYNAMIC_OPS: &[&str] = &["Conv", "MatMul", "Gemm"];

/// Options of `quantize_dynamic`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuantizeDynamicOptions {
    /// Weight quantization (default `i8_symmetric`). With `u8_asymmetric` (ONNX Runtime's
    /// `weight_type=QUInt8`) Conv weights are per tensor, as ConvInteger takes one weight
    /// zero-point, and MatMul/Gemm weights get a zero-point per column.
    pub weights: WeightScheme,
    /// Weights per output channel (default true); otherwise one scale per weight.
    pub per_channel: bool,
    /// Weights use one bit less of range (ONNX Runtime's `reduce_range`, for CPUs without VNNI).
    pub reduce_range: bool,
    /// Write ONNX Runtime's `com.microsoft::DynamicQuantizeMatMul` for MatMul/Gemm (default false).
    pub contrib: bool,
    /// Op types to quantize (default: Conv, MatMul, Gemm).
    pub op_types: Option<Vec<String>>,
    /// Node names to leave in float.
    pub exclude_nodes: Vec<String>,
    /// Regular expressions over node names to leave in float.
    pub exclude_regex: Vec<String>,
    /// Op types to leave in float.
    pub exclude_op_types: Vec<String>,
}

impl Default for QuantizeDynamicOptions {
    fn default() -> Self {
        QuantizeDynamicOptions {
            weights: WeightScheme::default(),
            per_channel: true,
            reduce_range: false,
            contrib: false,
            op_types: None,
            exclude_nodes: Vec::new(),
            exclude_regex: Vec::new(),
            exclude_op_types: Vec::new(),
        }
    }
}

/// The `quantize_dynamic` pass.
#[derive(Debug)]
pub struct QuantizeDynamic {
    opts: QuantizeDynamicOptions,
    regex: Vec<Regex>,
}

impl QuantizeDynamic {
    pub fn new(opts: QuantizeDynamicOptions) -> Result<Self, PassError> {
        let bad = |message: String| PassError::InvalidOptions {
            pass: "quantize_dynamic",
            message,
        };
        let regex = exclude_regexes("quantize_dynamic", &opts.exclude_regex)?;
        for t in opts.op_types.iter().flatten().chain(&opts.exclude_op_types) {
            if !DYNAMIC_OPS.contains(&t.as_str()) {
                return Err(bad(format!(
                    "op type '{t}' is not one quantize_dynamic quantizes (Conv, MatMul, Gemm)"
                )));
            }
        }
        Ok(QuantizeDynamic { opts, regex })
    }

    fn excluded(&self, node: &Node, id: NodeId) -> Option<String> {
        let t = node.op().op_type();
        if self
            .opts
            .op_types
            .as_ref()
            .is_some_and(|l| !l.iter().any(|x| x == t))
        {
            return Some("op type not selected".into());
        }
        excluded_by(
            node,
            id,
            &self.opts.exclude_nodes,
            &self.regex,
            &self.opts.exclude_op_types,
        )
    }

    fn u8_weights(&self) -> bool {
        self.opts.weights == WeightScheme::U8Asymmetric
    }
}

/// A weight stored quantized: the 8-bit initializer, its scales (one, or one per output channel),
/// and its zero-point (scalar, or one per column when asked).
#[derive(Clone)]
struct QWeight {
    q: ValueId,
    scales: Vec<f32>,
    zp: ValueId,
}

/// The run-time quantization of one float activation: `(x_q, x_scale, x_zero_point)`.
type DynQ = (ValueId, ValueId, ValueId);

/// State shared by the rewrites of one run.
#[derive(Default)]
struct Cx {
    dynq: HashMap<ValueId, DynQ>,
    weights: HashMap<(ValueId, Option<usize>, bool, bool), QWeight>,
}

/// A float activation input (not a constant, float32 or of unknown type).
fn float_activation(g: &Graph, v: Option<ValueId>, what: &str) -> Result<ValueId, String> {
    let v = v.ok_or_else(|| format!("{what} is absent"))?;
    if g.constant(v).is_some() {
        return Err(format!("{what} is a constant"));
    }
    if dtype_of(g, v).is_some_and(|d| d != DType::F32) {
        return Err(format!("{what} is not float32"));
    }
    Ok(v)
}

/// A float32 initializer: (data, shape).
fn float_weight(
    g: &Graph,
    v: Option<ValueId>,
    what: &str,
) -> Result<(Vec<f32>, Vec<usize>), String> {
    let v = v.ok_or_else(|| format!("{what} is absent"))?;
    let t = g
        .initializer(v)
        .ok_or_else(|| format!("{what} is not a constant initializer"))?;
    if t.dtype != DType::F32 {
        return Err(format!("{what} is not float32"));
    }
    let data = f32s(t).ok_or_else(|| format!("{what} cannot be read"))?;
    Ok((data, udims(t)))
}

impl QuantizeDynamic {
    /// The `DynamicQuantizeLinear` of `x`, added before node `before` the first time.
    fn dynq(&self, g: &mut Graph, cx: &mut Cx, x: ValueId, before: NodeId) -> DynQ {
        if let Some(d) = cx.dynq.get(&x) {
            return *d;
        }
        let base = g.value_name(x).to_string();
        let q = g.add_fresh_value(&format!("{base}_quantized"));
        let s = g.add_fresh_value(&format!("{base}_scale"));
        let z = g.add_fresh_value(&format!("{base}_zero_point"));
        g.value_mut(q).fact = qtool_ir::Fact {
            dtype: Some(DType::U8),
            shape: g.value(x).fact.shape.clone(),
        };
        let name = g.fresh_name(&format!("{base}_DynamicQuantizeLinear"));
        g.insert_node_before(
            before,
            Node::new(ops::DynamicQuantizeLinear {}, name),
            &[Some(x)],
            &[Some(q), Some(s), Some(z)],
        )
        .expect("fresh outputs");
        cx.dynq.insert(x, (q, s, z));
        (q, s, z)
    }

    /// Quantizes weight `w` (`data`, `shape`), per channel along `axis` when per-channel is on;
    /// `transpose` stores a 2-D weight transposed. Cached per weight.
    #[allow(clippy::too_many_arguments)]
    fn weight(
        &self,
        g: &mut Graph,
        cx: &mut Cx,
        w: ValueId,
        data: &[f32],
        shape: &[usize],
        axis: Option<usize>,
        transpose: bool,
        zp_per_channel: bool,
    ) -> QWeight {
        let key = (w, axis, transpose, zp_per_channel);
        if let Some(q) = cx.weights.get(&key) {
            return q.clone();
        }
        let (data, shape) = if transpose {
            let (r, c) = (shape[0], shape[1]);
            let mut t = vec![0f32; data.len()];
            for i in 0..r {
                for j in 0..c {
                    t[j * r + i] = data[i * c + j];
                }
            }
            (t, vec![c, r])
        } else {
            (data.to_vec(), shape.to_vec())
        };
        let scheme = self.opts.weights.scheme(self.opts.reduce_range);
        let dtype = self.opts.weights.dtype();
        let (scales, zps) = weight_params(&data, &shape, axis, scheme);
        let q = quantize_weight(&data, &shape, axis, &scales, &zps, dtype);
        let base = g.value_name(w).to_string();
        let qv = add_init(g, &format!("{base}_quantized"), q);
        let (zshape, zps): (Vec<usize>, Vec<i32>) = if zp_per_channel && scales.len() > 1 {
            (vec![scales.len()], zps)
        } else {
            // One zero-point: symmetric int8 weights have 0 in every channel; uint8 weights reach
            // here per tensor only (the callers ask for per-column zero-points otherwise).
            debug_assert!(zps.iter().all(|&z| z == zps[0]));
            (vec![], vec![zps[0]])
        };
        let zp = add_init(
            g,
            &format!("{base}_zero_point"),
            zp_tensor(dtype, &zshape, &zps),
        );
        let qw = QWeight { q: qv, scales, zp };
        cx.weights.insert(key, qw.clone());
        qw
    }

    fn conv(&self, g: &mut Graph, cx: &mut Cx, n: NodeId) -> Result<String, String> {
        let node = g.node(n);
        let Op::Conv(c) = node.op() else {
            unreachable!()
        };
        let c = c.clone();
        let x = float_activation(g, node.input(0), "input")?;
        let wv = node.input(1).ok_or("weight is absent")?;
        let (wd, ws) = float_weight(g, Some(wv), "weight")?;
        if ws.len() < 3 {
            return Err("weight has rank below 3".into());
        }
        let m = ws[0];
        let bias = match node.input(2) {
            None => None,
            Some(b) => {
                let (bd, bs) = float_weight(g, Some(b), "bias")?;
                if bs.len() != 1 || bs[0] != m {
                    return Err("bias is not one value per output channel".into());
                }
                Some((b, bd))
            }
        };
        let y = node.output(0).ok_or("no output")?;
        let base = nname(g, n);
        // ConvInteger takes one weight zero-point: uint8 weights (whose per-channel zero-points
        // differ) are quantized per tensor.
        let axis = (self.opts.per_channel && !self.u8_weights()).then_some(0);
        let qw = self.weight(g, cx, wv, &wd, &ws, axis, false, false);
        let (xq, xs, xz) = self.dynq(g, cx, x, n);
        let mut cshape = vec![1usize; ws.len()];
        cshape[1] = m;
        let (scale_shape, scales) = if qw.scales.len() == 1 {
            (vec![], qw.scales.clone())
        } else {
            (cshape.clone(), qw.scales.clone())
        };
        let wsv = add_init(
            g,
            &format!("{base}_weight_scale"),
            tensor(&scale_shape, scales),
        );
        let ci = conv_integer(c);
        let bias =
            bias.map(|(_, bd)| add_init(g, &format!("{base}_bias_reshaped"), tensor(&cshape, bd)));
        self.integer_chain(
            g,
            n,
            Node::new(ci, format!("{base}_ConvInteger")),
            &[Some(xq), Some(qw.q), Some(xz), Some(qw.zp)],
            xs,
            wsv,
            bias,
            y,
        );
        Ok(format!(
            "became DynamicQuantizeLinear + ConvInteger + float rescale, weight {}{}",
            per(&qw),
            if self.opts.per_channel && self.u8_weights() {
                " uint8 (ConvInteger takes one weight zero-point)"
            } else if self.u8_weights() {
                " uint8"
            } else {
                ""
            }
        ))
    }

    /// MatMul (`gemm` = None) or Gemm (`gemm` = Some((alpha, beta, transB))).
    fn matmul(
        &self,
        g: &mut Graph,
        cx: &mut Cx,
        n: NodeId,
        gemm: Option<(f32, f32, bool)>,
    ) -> Result<String, String> {
        let node = g.node(n);
        let a = float_activation(g, node.input(0), "input A")?;
        let bv = node.input(1).ok_or("input B is absent")?;
        let (bd, bs) = float_weight(g, Some(bv), "input B")?;
        if bs.len() < 2 {
            return Err("B has rank below 2".into());
        }
        let (alpha, beta, trans_b) = gemm.unwrap_or((1.0, 1.0, false));
        if gemm.is_some() && bs.len() != 2 {
            return Err("Gemm's B is not 2-D".into());
        }
        // C of Gemm: a constant (times beta), or a value added as is when beta is 1.
        let c = match gemm.and_then(|_| node.input(2)) {
            None => None,
            Some(cv) => match g.initializer(cv) {
                Some(t) if t.dtype == DType::F32 => {
                    let d = f32s(t).ok_or("C cannot be read")?;
                    Some(Bias::Const(udims(t), d.iter().map(|x| x * beta).collect()))
                }
                _ if beta == 1.0 => Some(Bias::Value(cv)),
                _ => return Err("C is not a float constant and beta is not 1".into()),
            },
        };
        let y = node.output(0).ok_or("no output")?;
        let base = nname(g, n);
        let n_cols = if trans_b { bs[0] } else { bs[bs.len() - 1] };
        // Per column only for a 2-D B (a batched B keeps one scale).
        let axis = (self.opts.per_channel && bs.len() == 2).then_some(bs.len() - 1);
        let zp_per_column = self.opts.contrib || self.u8_weights();
        let qw = self.weight(g, cx, bv, &bd, &bs, axis, trans_b, zp_per_column);
        let scales: Vec<f32> = qw.scales.iter().map(|s| s * alpha).collect();
        let sshape: Vec<usize> = if scales.len() == 1 {
            vec![]
        } else {
            vec![n_cols]
        };
        let wsv = add_init(g, &format!("{base}_weight_scale"), tensor(&sshape, scales));
        let what = if self.opts.contrib {
            // DynamicQuantizeMatMul(A, B, b_scale, b_zero_point, bias[N]).
            let fused_bias = match &c {
                Some(Bias::Const(s, d)) if s.len() == 1 && s[0] == n_cols => Some(d.clone()),
                Some(Bias::Const(s, d)) if s.len() == 2 && s[0] == 1 && s[1] == n_cols => {
                    Some(d.clone())
                }
                _ => None,
            };
            let bias_v = fused_bias
                .as_ref()
                .map(|d| add_init(g, &format!("{base}_bias"), tensor(&[n_cols], d.clone())));
            let rest = if fused_bias.is_some() {
                None
            } else {
                c.clone()
            };
            let dq = Node::new(
                ops::DynamicQuantizeMatMul {},
                format!("{base}_DynamicQuantizeMatMul"),
            );
            let ins = [Some(a), Some(qw.q), Some(wsv), Some(qw.zp), bias_v];
            let ins: &[Option<ValueId>] = if bias_v.is_some() { &ins } else { &ins[..4] };
            remove_node(g, n);
            match rest {
                None => {
                    g.add_node(dq, ins, &[Some(y)]).expect("freed");
                }
                Some(b) => {
                    let pre = g.add_fresh_value(&format!("{base}_matmul"));
                    g.add_node(dq, ins, &[Some(pre)]).expect("fresh");
                    let bv = b.value(g, &base);
                    g.add_node(
                        Node::new(ops::Add {}, format!("{base}_Add")),
                        &[Some(pre), Some(bv)],
                        &[Some(y)],
                    )
                    .expect("freed");
                }
            }
            "became DynamicQuantizeMatMul (com.microsoft)"
        } else {
            let (aq, as_, az) = self.dynq(g, cx, a, n);
            let bias = c.map(|b| b.value(g, &base));
            self.integer_chain(
                g,
                n,
                Node::new(ops::MatMulInteger {}, format!("{base}_MatMulInteger")),
                &[Some(aq), Some(qw.q), Some(az), Some(qw.zp)],
                as_,
                wsv,
                bias,
                y,
            );
            "became DynamicQuantizeLinear + MatMulInteger + float rescale"
        };
        let u8w = if self.u8_weights() { " uint8" } else { "" };
        Ok(format!("{what}, weight {}{u8w}", per(&qw)))
    }

    /// Replaces node `n` (writing `y`) by `int_node → Cast → Mul(x_scale * w_scale) [→ Add(bias)]`.
    #[allow(clippy::too_many_arguments)]
    fn integer_chain(
        &self,
        g: &mut Graph,
        n: NodeId,
        int_node: Node,
        ins: &[Option<ValueId>],
        x_scale: ValueId,
        w_scale: ValueId,
        bias: Option<ValueId>,
        y: ValueId,
    ) {
        let base = nname(g, n);
        let acc = g.add_fresh_value(&format!("{base}_int32"));
        g.insert_node_before(n, int_node, ins, &[Some(acc)])
            .expect("fresh");
        let accf = g.add_fresh_value(&format!("{base}_float"));
        let cast = ops::Cast {
            to: Some(DType::F32 as i64),
            ..Default::default()
        };
        g.insert_node_before(
            n,
            Node::new(cast, format!("{base}_Cast")),
            &[Some(acc)],
            &[Some(accf)],
        )
        .expect("fresh");
        let mult = g.add_fresh_value(&format!("{base}_multiplier"));
        let mn = g
            .insert_node_before(
                n,
                Node::new(ops::Mul {}, format!("{base}_scale_Mul")),
                &[Some(x_scale), Some(w_scale)],
                &[Some(mult)],
            )
            .expect("fresh");
        remove_node(g, n);
        rescale_tail(g, mn, &base, accf, mult, bias, y);
    }
}

/// Gemm's C: a constant (already times beta) or a value used as is.
#[derive(Clone)]
enum Bias {
    Const(Vec<usize>, Vec<f32>),
    Value(ValueId),
}

impl Bias {
    fn value(&self, g: &mut Graph, base: &str) -> ValueId {
        match self {
            Bias::Const(s, d) => add_init(g, &format!("{base}_bias"), tensor(s, d.clone())),
            Bias::Value(v) => *v,
        }
    }
}

/// Removes node `n` (its outputs can then be written by the replacement) and the initializers only
/// it read.
fn remove_node(g: &mut Graph, n: NodeId) {
    let ins: Vec<ValueId> = g.node(n).inputs().iter().flatten().copied().collect();
    g.remove_node(n);
    for v in ins {
        drop_init_if_unused(g, v);
    }
}

fn per(q: &QWeight) -> &'static str {
    if q.scales.len() > 1 {
        "per channel"
    } else {
        "per tensor"
    }
}

impl Pass for QuantizeDynamic {
    fn name(&self) -> &'static str {
        "quantize_dynamic"
    }

    fn run(&self, model: &mut Model, cx: &PassCx) -> Result<PassReport, PassError> {
        let mut report = PassReport::default();
        let _ = qtool_ir::infer_shapes(model, &[]);
        // DynamicQuantizeLinear needs opset 11.
        if model.onnx_opset() < 11 {
            let r = UpgradeOpset.run(model, cx).map_err(|e| PassError::Failed {
                pass: "quantize_dynamic",
                message: format!("raising the opset failed: {e}"),
            })?;
            report.extend(r);
            let _ = qtool_ir::infer_shapes(model, &[]);
        }
        let mut state = Cx::default();
        let mut any_contrib = false;
        let g = &mut model.graph;
        for n in g.node_ids().to_vec() {
            if !g.contains_node(n) {
                continue;
            }
            let node = g.node(n);
            let gemm = match node.op() {
                Op::Conv(_) | Op::MatMul(_) => None,
                Op::Gemm(gm) => Some(gm.clone()),
                _ => continue,
            };
            let name = nname(g, n);
            let op_type = node.op().op_type().to_string();
            if let Some(why) = self.excluded(node, n) {
                report.skip(name, op_type, why);
                continue;
            }
            let r = match (node.op(), gemm) {
                (Op::Conv(_), _) => self.conv(g, &mut state, n),
                (_, None) => self.matmul(g, &mut state, n, None),
                (_, Some(gm)) => {
                    if gm.trans_a.unwrap_or(0) != 0 {
                        Err("transA = 1 is not supported".to_string())
                    } else {
                        self.matmul(
                            g,
                            &mut state,
                            n,
                            Some((
                                gm.alpha.unwrap_or(1.0),
                                gm.beta.unwrap_or(1.0),
                                gm.trans_b.unwrap_or(0) != 0,
                            )),
                        )
                    }
                }
            };
            match r {
                Ok(what) => {
                    any_contrib |= what.contains("com.microsoft");
                    report.rewrite(name, what)
                }
                Err(why) => report.skip(name, op_type, why),
            }
        }
        finish(self.name(), g)?;
        if any_contrib && model.opset("com.microsoft").is_none() {
            model.set_opset("com.microsoft", 1);
        }
        Ok(report)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::*;

    /// x → Conv(+bias) → Flatten → MatMul, and the Flatten output also → Gemm(transB, C).
    pub(crate) fn float_conv_matmul_gemm() -> Model {
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
        let wg = b.init_f32(
            "wg",
            &[3, 8],
            (0..24).map(|i| (i as f32 * 0.37).sin()).collect(),
        );
        let cg = b.init_f32("cg", &[3], vec![0.5, 0.0, -0.5]);
        let gemm = ops::Gemm {
            alpha: Some(0.5),
            trans_b: Some(1),
            ..Default::default()
        };
        let z = b.node(gemm, "gemm", &[f, wg, cg], "z");
        b.output(y);
        b.output(z);
        b.model(13)
    }

    #[test]
    fn conv_matmul_gemm_become_integer_ops_with_run_time_activations() {
        let mut m = float_conv_matmul_gemm();
        let rep = run(&QuantizeDynamic::new(Default::default()).unwrap(), &mut m);
        assert_eq!(rep.rewritten.len(), 3, "{rep}");
        insta::assert_snapshot!(show(&m, &rep));
        let g = &m.graph;
        let count = |t: &str| g.nodes().filter(|(_, n)| n.op().op_type() == t).count();
        // The Flatten output feeds MatMul and Gemm through one DynamicQuantizeLinear.
        assert_eq!(count("DynamicQuantizeLinear"), 2);
        assert_eq!(count("ConvInteger"), 1);
        assert_eq!(count("MatMulInteger"), 2);
        // Gemm: B stored transposed [K, N], alpha folded into the weight scale.
        let wq = g
            .initializer(g.find_value("wg_quantized").unwrap())
            .unwrap();
        assert_eq!(wq.dims, vec![8, 3]);
        let s = crate::util::f32s(
            g.initializer(g.find_value("gemm_weight_scale").unwrap())
                .unwrap(),
        )
        .unwrap();
        let absmax0 = (0..8)
            .map(|k| (k as f32 * 0.37).sin().abs())
            .fold(0f32, f32::max);
        assert_eq!(s[0], absmax0 / 127.0 * 0.5);
    }

    #[test]
    fn contrib_uses_dynamic_quantize_matmul_and_imports_the_domain() {
        let mut m = float_conv_matmul_gemm();
        let p = QuantizeDynamic::new(QuantizeDynamicOptions {
            contrib: true,
            ..Default::default()
        })
        .unwrap();
        let rep = run(&p, &mut m);
        assert_eq!(rep.rewritten.len(), 3, "{rep}");
        insta::assert_snapshot!(show(&m, &rep));
        assert_eq!(m.opset("com.microsoft"), Some(1));
    }

    #[test]
    fn exclusions_and_per_tensor() {
        let mut m = float_conv_matmul_gemm();
        let p = QuantizeDynamic::new(QuantizeDynamicOptions {
            per_channel: false,
            exclude_nodes: vec!["matmul".into()],
            exclude_op_types: vec!["Gemm".into()],
            ..Default::default()
        })
        .unwrap();
        let rep = run(&p, &mut m);
        assert_eq!(rep.rewritten.len(), 1, "{rep}");
        assert!(rep.rewritten[0].what.ends_with("per tensor"), "{rep}");
        let reasons: Vec<&str> = rep.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(reasons, vec!["excluded by name", "excluded by op type"]);
        assert!(
            QuantizeDynamic::new(QuantizeDynamicOptions {
                exclude_op_types: vec!["Relu".into()],
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn non_constant_weight_is_skipped_with_reason() {
        let mut b = Builder::new();
        let x = b.input("x", &[2, 3]);
        let w = b.input("w", &[3, 2]);
        let y = b.node(ops::MatMul {}, "mm", &[x, w], "y");
        b.output(y);
        let mut m = b.model(13);
        let rep = run(&QuantizeDynamic::new(Default::default()).unwrap(), &mut m);
        assert!(rep.rewritten.is_empty());
        assert_eq!(
            rep.skipped[0].reason,
            "input B is not a constant initializer"
        );
    }
}
