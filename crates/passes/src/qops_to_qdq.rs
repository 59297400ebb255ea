//! `qops_to_qdq`: the way back from operator-oriented quantization to QDQ, for tools that only read
//! QDQ. Each quantized op becomes `DequantizeLinear` on its inputs → the float op →
//! `QuantizeLinear` on its output, with the same scales and zero-points:
//!
//! - `QLinearConv` → `DQ(x), DQ(w) [, DQ(bias int32, scale x_scale * w_scale)] → Conv → Q(y)`;
//! - `QLinearMatMul` → `DQ(a), DQ(b) → MatMul → Q(y)`;
//! - the 1x1 QLinearConv form of a Gemm that `qdq_to_qlinear` writes (`Reshape(a, [0, 0, 1, 1]) →
//!   QLinearConv → Reshape([0, 0])`) → `DQ(a), DQ(W as [N, K]) [, DQ(bias)] → Gemm(transB = 1) → Q`;
//! - `ConvInteger → Cast → Mul(m) [→ Add(b)]`, as `qdq_to_integer` and ONNX Runtime write it, with
//!   `x` quantized by a static QuantizeLinear of scale `s` → `DQ(x), DQ(w, scale m / s)
//!   [, DQ(round(b / m) int32, scale m)] → Conv`; the weight scale is chosen so that `s * w_scale`
//!   gives `m` again bit for bit, so converting back with `qdq_to_integer` restores the same numbers;
//! - `MatMulInteger → Cast → Mul(m)` likewise → `DQ(a), DQ(b) → MatMul`;
//! - ONNX Runtime's com.microsoft `QLinearAdd`, `QLinearMul`, `QLinearSigmoid`,
//!   `QLinearLeakyRelu`, `QLinearSoftmax`, `QLinearGlobalAveragePool`, `QLinearAveragePool` and
//!   `QLinearConcat` → DQ → the standard op → Q, and `QGemm` → `DQ(a), DQ(B) [, DQ(C int32, scale
//!   alpha * a_scale * b_scale[n])] → Gemm [→ Q]`.
//!
//! Dynamic quantization (`DynamicQuantizeLinear`, `DynamicQuantizeMatMul`) has no static scale and
//! cannot be written as QDQ: such nodes are reported as skips and left as they are.
//! One DequantizeLinear is shared by every consumer of the same quantized tensor with the same
//! parameters (an existing one is reused).

use crate::qdq_to_qlinear::consts;
use crate::util::{add_init, drop_init_if_unused, nname, prune_from, rewrite_nodes, tensor};
use crate::{Pass, PassCx, PassError, PassReport};
use qtool_ir::{Graph, Model, Node, NodeId, Op, TensorData, ValueId, ops};
use qtool_tensor::DType;
use qtool_tensor::quant::dequantize;
use serde::Deserialize;

/// Options of `qops_to_qdq`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QopsToQdqOptions {
    /// Also convert ONNX Runtime's com.microsoft QLinear ops (default true).
    pub contrib: bool,
}

impl Default for QopsToQdqOptions {
    fn default() -> Self {
        QopsToQdqOptions { contrib: true }
    }
}

/// The `qops_to_qdq` pass.
#[derive(Debug)]
pub struct QopsToQdq {
    opts: QopsToQdqOptions,
}

impl QopsToQdq {
    pub fn new(opts: QopsToQdqOptions) -> Result<Self, PassError> {
        Ok(QopsToQdq { opts })
    }
}

/// One quantized input: (quantized value, scale, zero-point).
type QIn = (ValueId, ValueId, Option<ValueId>);

fn input(g: &Graph, n: NodeId, i: usize, what: &str) -> Result<ValueId, String> {
    g.node(n)
        .input(i)
        .ok_or_else(|| format!("{what} is absent"))
}

/// The same value, or two constants with equal contents.
pub(crate) fn same(g: &Graph, a: Option<ValueId>, b: Option<ValueId>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) if a == b => true,
        (Some(a), Some(b)) => match (g.constant(a), g.constant(b)) {
            (Some(x), Some(y)) => {
                x.dtype == y.dtype
                    && x.numel() == y.numel()
                    && crate::util::i64s(x).is_some()
                    && crate::util::i64s(x) == crate::util::i64s(y)
                    || (x.dtype == y.dtype
                        && x.dtype == DType::F32
                        && crate::util::f32s(x) == crate::util::f32s(y))
            }
            _ => false,
        },
        _ => false,
    }
}

/// A zero-point of `n` elements: `z` itself when it already has them, else its (uniform) value
/// repeated, as a new initializer.
pub(crate) fn zp_of_len(g: &mut Graph, z: ValueId, n: usize) -> Result<ValueId, String> {
    let t = g.constant(z).ok_or("zero-point is not constant")?.clone();
    if t.numel() == n && (n == 1 || t.dims.len() == 1) {
        return Ok(z);
    }
    if t.numel() != 1 {
        return Err("zero-point length does not match the scales".into());
    }
    let v = crate::util::i64s(&t).ok_or("zero-point cannot be read")?[0];
    let e: TensorData = match t.dtype {
        DType::U8 => tensor(&[n], vec![v as u8; n]),
        DType::I8 => tensor(&[n], vec![v as i8; n]),
        DType::U16 => tensor(&[n], vec![v as u16; n]),
        DType::I16 => tensor(&[n], vec![v as i16; n]),
        DType::I32 => tensor(&[n], vec![v as i32; n]),
        d => return Err(format!("zero-point type {d:?} is not supported")),
    };
    let base = format!("{}_per_channel", g.value_name(z));
    Ok(add_init(g, &base, e))
}

/// The weight scale `w` with `s * w == m` in f32 (searched around `m / s`), and whether one was found.
fn recover_scale(m: f32, s: f32) -> (f32, bool) {
    let w = m / s;
    let mut cand = w;
    for _ in 0..4 {
        if s * cand == m {
            return (cand, true);
        }
        cand = cand.next_up();
    }
    let mut cand = w.next_down();
    for _ in 0..4 {
        if s * cand == m {
            return (cand, true);
        }
        cand = cand.next_down();
    }
    (w, false)
}

impl QopsToQdq {
    /// A DequantizeLinear of `q`: an existing one with the same parameters, or a new one before `before`.
    fn dq(&self, g: &mut Graph, (q, s, z): QIn, axis: Option<i64>, before: NodeId) -> ValueId {
        for c in g.consumers(q) {
            let node = g.node(c);
            if let Op::DequantizeLinear(d) = node.op()
                && d.axis.unwrap_or(1) == axis.unwrap_or(1)
                && node.input(0) == Some(q)
                && same(g, node.input(1), Some(s))
                && same(g, node.input(2), z)
                && let Some(o) = node.output(0)
            {
                return o;
            }
        }
        let base = g.value_name(q).to_string();
        let out = g.add_fresh_value(&format!("{base}_DequantizeLinear_Output"));
        g.value_mut(out).fact = qtool_ir::Fact {
            dtype: Some(DType::F32),
            shape: g.value(q).fact.shape.clone(),
        };
        let name = g.fresh_name(&format!("{base}_DequantizeLinear"));
        let op = ops::DequantizeLinear {
            axis,
            ..Default::default()
        };
        let ins = [Some(q), Some(s), z];
        let ins: &[Option<ValueId>] = if z.is_some() { &ins } else { &ins[..2] };
        g.insert_node_before(before, Node::new(op, name), ins, &[Some(out)])
            .expect("fresh");
        out
    }

    /// Replaces the QOp `n` (writing the quantized `qout`) by `float_op(dq inputs) → Q(ys, yzp) → qout`.
    fn island(
        &self,
        g: &mut Graph,
        n: NodeId,
        float_op: Op,
        ins: &[Option<ValueId>],
        ys: ValueId,
        yzp: Option<ValueId>,
    ) -> Result<(), String> {
        let qout = g.node(n).output(0).ok_or("no output")?;
        let base = nname(g, n);
        let y = g.add_fresh_value(&format!("{base}_output"));
        let f = g
            .insert_node_before(
                n,
                Node::new(float_op, format!("{base}_float")),
                ins,
                &[Some(y)],
            )
            .expect("fresh");
        // Detach `n` first and prune what it read only after the QuantizeLinear reads `ys`.
        let old_ins: Vec<ValueId> = g.node(n).inputs().iter().flatten().copied().collect();
        g.remove_node(n);
        let qins = [Some(y), Some(ys), yzp];
        let qins: &[Option<ValueId>] = if yzp.is_some() { &qins } else { &qins[..2] };
        let qname = g.fresh_name(&format!("{base}_QuantizeLinear"));
        g.insert_node_after(
            f,
            Node::new(ops::QuantizeLinear::default(), qname),
            qins,
            &[Some(qout)],
        )
        .expect("freed");
        for v in old_ins {
            match g.producer(v) {
                Some(p) => prune_from(g, p),
                None => drop_init_if_unused(g, v),
            }
        }
        Ok(())
    }

    fn qlinear_conv(&self, g: &mut Graph, n: NodeId) -> Result<String, String> {
        let Op::QLinearConv(c) = g.node(n).op() else {
            unreachable!()
        };
        let c = c.clone();
        let gemm = gemm_form(g, n);
        let x: QIn = (
            match gemm {
                Some((_, a, _)) => a,
                None => input(g, n, 0, "x")?,
            },
            input(g, n, 1, "x_scale")?,
            g.node(n).input(2),
        );
        let wq = input(g, n, 3, "w")?;
        let ws = input(g, n, 4, "w_scale")?;
        let wzp = input(g, n, 5, "w_zero_point")?;
        let ys = input(g, n, 6, "y_scale")?;
        let yzp = g.node(n).input(7);
        let wsv = consts(g, ws).ok_or("weight scale is not constant")?;
        let bias = g.node(n).input(8);
        let bias_scale = match bias {
            None => None,
            Some(_) => {
                let xs =
                    consts(g, x.1).ok_or("x_scale is not constant (needed for the bias scale)")?;
                if xs.len() != 1 {
                    return Err("x_scale is not a scalar".into());
                }
                Some(wsv.iter().map(|&w| xs[0] * w).collect::<Vec<f32>>())
            }
        };
        let per_channel = wsv.len() > 1;
        let wzp = if per_channel {
            zp_of_len(g, wzp, wsv.len())?
        } else {
            wzp
        };
        let axis = per_channel.then_some(0);
        // The Gemm form keeps B as [N, K] (Gemm with transB = 1).
        let wq = match gemm {
            Some(_) => {
                let mut t = g.constant(wq).ok_or("weight is not constant")?.clone();
                t.dims.truncate(2);
                let base = format!("{}_2d", g.value_name(wq));
                add_init(g, &base, t)
            }
            None => wq,
        };
        let dx = self.dq(g, x, None, n);
        let dw = self.dq(g, (wq, ws, Some(wzp)), axis, n);
        let db = match (bias, bias_scale) {
            (Some(b), Some(bs)) => {
                let base = g.value_name(b).to_string();
                let shape: Vec<usize> = if per_channel { vec![bs.len()] } else { vec![] };
                let zeros = vec![0i32; shape.iter().product()];
                let s = add_init(g, &format!("{base}_scale"), tensor(&shape, bs));
                let z = add_init(g, &format!("{base}_zero_point"), tensor(&shape, zeros));
                Some(self.dq(g, (b, s, Some(z)), axis, n))
            }
            _ => None,
        };
        let ins = [Some(dx), Some(dw), db];
        let ins: &[Option<ValueId>] = if db.is_some() { &ins } else { &ins[..2] };
        if let Some((_, _, ry)) = gemm {
            // Reshape → QLinearConv (1x1) → Reshape, as qdq_to_qlinear writes a Gemm.
            let out = g.node(ry).output(0).ok_or("Reshape has no output")?;
            remove_plain(g, ry);
            g.set_output(n, 0, Some(out)).map_err(|e| e.to_string())?;
            let gemm = ops::Gemm {
                trans_b: Some(1),
                ..Default::default()
            };
            self.island(g, n, gemm.into(), ins, ys, yzp)?;
            return Ok("became DQ + Gemm + Q (the 1x1 QLinearConv form of a Gemm)".into());
        }
        let conv = ops::Conv {
            auto_pad: c.auto_pad,
            dilations: c.dilations,
            group: c.group,
            kernel_shape: c.kernel_shape,
            pads: c.pads,
            strides: c.strides,
        };
        self.island(g, n, conv.into(), ins, ys, yzp)?;
        Ok("became DQ + Conv + Q".into())
    }

    fn qlinear_matmul(&self, g: &mut Graph, n: NodeId) -> Result<String, String> {
        let a: QIn = (
            input(g, n, 0, "a")?,
            input(g, n, 1, "a_scale")?,
            g.node(n).input(2),
        );
        let bq = input(g, n, 3, "b")?;
        let bs = input(g, n, 4, "b_scale")?;
        let bzp = g.node(n).input(5);
        let ys = input(g, n, 6, "y_scale")?;
        let yzp = g.node(n).input(7);
        let ns = g
            .constant(bs)
            .map(|t| t.numel())
            .ok_or("b_scale is not constant")?;
        let (axis, bzp) = if ns > 1 {
            let rank = g
                .constant(bq)
                .map(|t| t.dims.len())
                .or_else(|| g.value(bq).fact.shape.as_ref().map(|s| s.len()))
                .ok_or("rank of B unknown")?;
            let z = match bzp {
                Some(z) => Some(zp_of_len(g, z, ns)?),
                None => None,
            };
            (Some(rank as i64 - 1), z)
        } else {
            (None, bzp)
        };
        let da = self.dq(g, a, None, n);
        let db = self.dq(g, (bq, bs, bzp), axis, n);
        self.island(g, n, ops::MatMul {}.into(), &[Some(da), Some(db)], ys, yzp)?;
        Ok("became DQ + MatMul + Q".into())
    }

    /// `ConvInteger`/`MatMulInteger` followed by `Cast → Mul(m) [→ Add(b)]`.
    fn integer(&self, g: &mut Graph, n: NodeId) -> Result<String, String> {
        let is_conv = matches!(g.node(n).op(), Op::ConvInteger(_));
        let xq = input(g, n, 0, "input")?;
        let wq = input(g, n, 1, "weight")?;
        let xzp = g.node(n).input(2);
        let wzp = g.node(n).input(3);
        let wt = g.constant(wq).ok_or("weight is not constant")?.clone();
        // The activation: a static QuantizeLinear with a constant scalar scale.
        let xp = g
            .producer(xq)
            .ok_or("input is not produced by a QuantizeLinear")?;
        let (xs, qzp) = match g.node(xp).op() {
            Op::QuantizeLinear(_) => (
                g.node(xp).input(1).ok_or("QuantizeLinear has no scale")?,
                g.node(xp).input(2),
            ),
            Op::DynamicQuantizeLinear(_) => {
                return Err(
                    "activation is quantized at run time (dynamic); QDQ has no form for it".into(),
                );
            }
            _ => return Err("input is not produced by a QuantizeLinear".into()),
        };
        if !same(g, xzp, qzp) {
            return Err("input zero-point differs from its QuantizeLinear's".into());
        }
        let xsv = consts(g, xs).ok_or("input scale is not constant")?;
        if xsv.len() != 1 {
            return Err("input scale is not a scalar".into());
        }
        let xsv = xsv[0];
        // Cast → Mul(m) chain.
        let acc = g.node(n).output(0).ok_or("no output")?;
        let sole = |g: &Graph, v: ValueId| -> Option<NodeId> {
            match g.value(v).uses() {
                [(c, _)] if !g.is_graph_output(v) => Some(*c),
                _ => None,
            }
        };
        let cast = sole(g, acc).ok_or("output is not read by one Cast")?;
        let Op::Cast(cop) = g.node(cast).op() else {
            return Err("output is not read by one Cast".into());
        };
        if cop.to != Some(DType::F32 as i64) {
            return Err("Cast is not to float".into());
        }
        let accf = g.node(cast).output(0).ok_or("Cast has no output")?;
        let mul = sole(g, accf).ok_or("Cast output is not read by one Mul")?;
        if !matches!(g.node(mul).op(), Op::Mul(_)) {
            return Err("Cast output is not read by one Mul".into());
        }
        let other = g
            .node(mul)
            .inputs()
            .iter()
            .flatten()
            .copied()
            .find(|v| *v != accf)
            .ok_or("Mul has no multiplier")?;
        let mt = g
            .constant(other)
            .ok_or("multiplier is not constant")?
            .clone();
        let m = consts(g, other).ok_or("multiplier cannot be read")?;
        let y_mul = g.node(mul).output(0).ok_or("Mul has no output")?;
        let out_ch = if is_conv {
            wt.dims[0] as usize
        } else {
            *wt.dims.last().ok_or("weight is a scalar")? as usize
        };
        // The multiplier must be one value, or one per output channel along the channel axis.
        if m.len() != 1 {
            let nontrivial: Vec<usize> = mt
                .dims
                .iter()
                .enumerate()
                .filter(|(_, d)| **d != 1)
                .map(|(i, _)| i)
                .collect();
            let ok = m.len() == out_ch
                && match nontrivial.as_slice() {
                    [i] if is_conv => *i == 1 && mt.dims.len() >= 3,
                    [i] => *i == mt.dims.len() - 1,
                    _ => false,
                };
            if !ok {
                return Err("multiplier is not per tensor nor per output channel".into());
            }
        }
        let (wsv, exact): (Vec<f32>, Vec<bool>) =
            m.iter().map(|&mv| recover_scale(mv, xsv)).unzip();
        // A bias Add right after (Conv only), folded into the Conv bias when it converts exactly.
        let mut add = None;
        let mut qbias = None;
        if is_conv
            && let Some(a) = sole(g, y_mul)
            && matches!(g.node(a).op(), Op::Add(_))
            && let Some(bv) = g
                .node(a)
                .inputs()
                .iter()
                .flatten()
                .copied()
                .find(|v| *v != y_mul)
            && let Some(bt) = g.constant(bv)
            && let Some(b) = crate::util::f32s(bt)
            && b.len() == out_ch
            && bt.dims.iter().filter(|d| **d != 1).count() <= 1
            && (bt.dims.len() == 1 || (bt.dims.len() >= 3 && bt.dims[1] as usize == out_ch))
        {
            let mc = |c: usize| m[if m.len() == 1 { 0 } else { c }];
            let q: Vec<i32> = b
                .iter()
                .enumerate()
                .map(|(c, &bf)| (bf as f64 / mc(c) as f64).round() as i32)
                .collect();
            let round_trips = q
                .iter()
                .enumerate()
                .all(|(c, &qv)| dequantize(qv, mc(c), 0).to_bits() == b[c].to_bits());
            if round_trips {
                add = Some(a);
                qbias = Some(q);
            }
        }
        let base = nname(g, n);
        let per_channel = wsv.len() > 1;
        let sshape: Vec<usize> = if per_channel { vec![wsv.len()] } else { vec![] };
        let axis = per_channel.then(|| if is_conv { 0 } else { wt.dims.len() as i64 - 1 });
        let ws = add_init(
            g,
            &format!("{}_scale", g.value_name(wq)),
            tensor(&sshape, wsv),
        );
        let wzp = match wzp {
            Some(z) if per_channel => Some(zp_of_len(g, z, sshape[0])?),
            Some(z) => Some(z),
            None => None,
        };
        let dx = self.dq(g, (xq, xs, xzp), None, n);
        let dw = self.dq(g, (wq, ws, wzp), axis, n);
        let db = match qbias {
            Some(q) => {
                let bname = format!("{base}_bias_quantized");
                let len = q.len();
                let bq = add_init(g, &bname, tensor(&[len], q));
                let bs = add_init(g, &format!("{bname}_scale"), tensor(&sshape, m.clone()));
                let bz = add_init(
                    g,
                    &format!("{bname}_zero_point"),
                    tensor(&sshape, vec![0i32; sshape.iter().product()]),
                );
                Some(self.dq(g, (bq, bs, Some(bz)), axis, n))
            }
            None => None,
        };
        let y = match add {
            Some(a) => g.node(a).output(0).ok_or("Add has no output")?,
            None => y_mul,
        };
        let float_op: Op = match g.node(n).op() {
            Op::ConvInteger(c) => ops::Conv {
                auto_pad: c.auto_pad.clone(),
                dilations: c.dilations.clone(),
                group: c.group,
                kernel_shape: c.kernel_shape.clone(),
                pads: c.pads.clone(),
                strides: c.strides.clone(),
            }
            .into(),
            _ => ops::MatMul {}.into(),
        };
        for r in [add, Some(mul), Some(cast)].into_iter().flatten() {
            remove_plain(g, r);
        }
        let ins = [Some(dx), Some(dw), db];
        let ins: &[Option<ValueId>] = if db.is_some() { &ins } else { &ins[..2] };
        let name = format!("{base}_float");
        g.insert_node_before(n, Node::new(float_op, name), ins, &[Some(y)])
            .expect("freed");
        remove(g, n);
        let mut what = format!(
            "became DQ + {} (weight scale = multiplier / input scale{})",
            if is_conv { "Conv" } else { "MatMul" },
            if exact.iter().all(|e| *e) {
                ", exact"
            } else {
                ", not exactly representable"
            }
        );
        if add.is_some() {
            what.push_str(", bias int32");
        }
        Ok(what)
    }

    /// com.microsoft QGemm → `DQ(a), DQ(B) [, DQ(C int32, scale alpha * a_scale * b_scale[n])] →
    /// Gemm(alpha, transA, transB) [→ Q(y)]` (QGemm adds C to the int32 accumulator before
    /// scaling by `alpha * a_scale * b_scale[n]`, so that is C's real value; a QGemm without
    /// y_scale has a float output and gets no QuantizeLinear).
    fn qgemm(&self, g: &mut Graph, n: NodeId) -> Result<String, String> {
        let Op::QGemm(o) = g.node(n).op() else {
            unreachable!()
        };
        let o = o.clone();
        let alpha = o.alpha.unwrap_or(1.0);
        let trans_b = o.trans_b.unwrap_or(0) != 0;
        let a: QIn = (
            input(g, n, 0, "A")?,
            input(g, n, 1, "a_scale")?,
            g.node(n).input(2),
        );
        let bq = input(g, n, 3, "B")?;
        let bs = input(g, n, 4, "b_scale")?;
        let bzp = g.node(n).input(5);
        let c = g.node(n).input(6);
        let ys = g.node(n).input(7);
        let yzp = g.node(n).input(8);
        let bsv = consts(g, bs).ok_or("b_scale is not constant")?;
        let per_col = bsv.len() > 1;
        let axis = per_col.then_some(if trans_b { 0 } else { 1 });
        let bzp = match bzp {
            Some(z) if per_col => Some(zp_of_len(g, z, bsv.len())?),
            z => z,
        };
        let dc = match c {
            None => None,
            Some(cv) => {
                let ct = g.constant(cv).ok_or("C is not constant")?;
                if ct.dtype != DType::I32 {
                    return Err("C is not int32".into());
                }
                let asv = consts(g, a.1).ok_or("a_scale is not constant")?;
                if asv.len() != 1 {
                    return Err("a_scale is not a scalar".into());
                }
                let cdims = ct.dims.clone();
                let n_c = ct.numel();
                // One scale per C element along its last axis (per column), or one for all.
                let cs: Vec<f32> = bsv.iter().map(|&b| alpha * asv[0] * b).collect();
                let (cs, caxis) = if cs.len() == 1 {
                    (cs, None)
                } else if cdims.len() == 1 && n_c == cs.len() {
                    (cs, Some(0))
                } else {
                    return Err("C's shape does not follow the per-column B scales".into());
                };
                let base = g.value_name(cv).to_string();
                let shape: Vec<usize> = if cs.len() == 1 {
                    vec![]
                } else {
                    vec![cs.len()]
                };
                let zeros = vec![0i32; shape.iter().product()];
                let s = add_init(g, &format!("{base}_scale"), tensor(&shape, cs));
                let z = add_init(g, &format!("{base}_zero_point"), tensor(&shape, zeros));
                Some(self.dq(g, (cv, s, Some(z)), caxis, n))
            }
        };
        let da = self.dq(g, a, None, n);
        let db = self.dq(g, (bq, bs, bzp), axis, n);
        let gemm = ops::Gemm {
            alpha: (alpha != 1.0).then_some(alpha),
            trans_a: o.trans_a.filter(|&t| t != 0),
            trans_b: o.trans_b.filter(|&t| t != 0),
            ..Default::default()
        };
        let ins = [Some(da), Some(db), dc];
        let ins: &[Option<ValueId>] = if dc.is_some() { &ins } else { &ins[..2] };
        match ys {
            Some(ys) => {
                self.island(g, n, gemm.into(), ins, ys, yzp)?;
                Ok("became DQ + Gemm + Q".into())
            }
            None => {
                let out = g.node(n).output(0).ok_or("no output")?;
                let name = format!("{}_float", nname(g, n));
                remove(g, n);
                let anchor = g.producer(da).expect("DQ just made");
                g.insert_node_after(anchor, Node::new(gemm, name), ins, &[Some(out)])
                    .expect("freed");
                Ok("became DQ + Gemm (float output)".into())
            }
        }
    }

    /// The com.microsoft QLinear ops with a standard float counterpart.
    fn contrib(&self, g: &mut Graph, n: NodeId, opset: i64) -> Result<String, String> {
        let node = g.node(n);
        let inp = |i: usize| node.input(i);
        let req = |i: usize| node.input(i).ok_or_else(|| format!("input {i} is absent"));
        // (quantized inputs, float op, y scale, y zero-point)
        let (qins, op, ys, yzp): (Vec<QIn>, Op, ValueId, Option<ValueId>) = match node.op() {
            Op::QLinearAdd(_) | Op::QLinearMul(_) => {
                let op: Op = if matches!(node.op(), Op::QLinearAdd(_)) {
                    ops::Add {}.into()
                } else {
                    ops::Mul {}.into()
                };
                (
                    vec![(req(0)?, req(1)?, inp(2)), (req(3)?, req(4)?, inp(5))],
                    op,
                    req(6)?,
                    inp(7),
                )
            }
            Op::QLinearSigmoid(_) => (
                vec![(req(0)?, req(1)?, inp(2))],
                ops::Sigmoid {}.into(),
                req(3)?,
                inp(4),
            ),
            Op::QLinearLeakyRelu(o) => (
                vec![(req(0)?, req(1)?, inp(2))],
                ops::LeakyRelu { alpha: o.alpha }.into(),
                req(3)?,
                inp(4),
            ),
            Op::QLinearGlobalAveragePool(o) => {
                if o.channels_last.unwrap_or(0) != 0 {
                    return Err("channels_last = 1 has no standard counterpart".into());
                }
                (
                    vec![(req(0)?, req(1)?, inp(2))],
                    ops::GlobalAveragePool {}.into(),
                    req(3)?,
                    inp(4),
                )
            }
            Op::QLinearAveragePool(o) => {
                if o.channels_last.unwrap_or(0) != 0 {
                    return Err("channels_last = 1 has no standard counterpart".into());
                }
                (
                    vec![(req(0)?, req(1)?, inp(2))],
                    ops::AveragePool {
                        auto_pad: o.auto_pad.clone(),
                        ceil_mode: o.ceil_mode,
                        count_include_pad: o.count_include_pad,
                        kernel_shape: o.kernel_shape.clone(),
                        pads: o.pads.clone(),
                        strides: o.strides.clone(),
                        ..Default::default()
                    }
                    .into(),
                    req(3)?,
                    inp(4),
                )
            }
            Op::QLinearSoftmax(o) => {
                let model_new = opset >= 13;
                let op_new = o.opset.unwrap_or(opset) >= 13;
                if model_new != op_new {
                    return Err(format!(
                        "QLinearSoftmax follows opset {} Softmax semantics, the model imports opset {}",
                        o.opset.unwrap_or(opset),
                        opset
                    ));
                }
                (
                    vec![(req(0)?, req(1)?, inp(2))],
                    ops::Softmax { axis: o.axis }.into(),
                    req(3)?,
                    inp(4),
                )
            }
            Op::QLinearConcat(o) => {
                let k = node.inputs().len();
                if k < 5 || !(k - 2).is_multiple_of(3) {
                    return Err(
                        "inputs are not (Y_scale, Y_zero_point, (X, scale, zero-point)...)".into(),
                    );
                }
                let mut v = Vec::new();
                for i in (2..k).step_by(3) {
                    v.push((req(i)?, req(i + 1)?, inp(i + 2)));
                }
                (v, ops::Concat { axis: o.axis }.into(), req(0)?, inp(1))
            }
            _ => unreachable!(),
        };
        let ins: Vec<Option<ValueId>> = qins
            .into_iter()
            .map(|q| Some(self.dq(g, q, None, n)))
            .collect();
        let t = op.op_type().to_string();
        self.island(g, n, op, &ins, ys, yzp)?;
        Ok(format!("became DQ + {t} + Q"))
    }
}

/// Constant int64 contents of `v`.
fn const_i64s(g: &Graph, v: Option<ValueId>) -> Option<Vec<i64>> {
    crate::util::i64s(g.constant(v?)?)
}

/// The 1x1 QLinearConv form of a Gemm (`qdq_to_qlinear`): `Reshape(a, [0, 0, 1, 1]) →
/// QLinearConv(1x1, weights [N, K, 1, 1]) → Reshape([0, 0])` with nothing else reading the
/// intermediate values; returns (first Reshape, `a`, last Reshape).
fn gemm_form(g: &Graph, n: NodeId) -> Option<(NodeId, ValueId, NodeId)> {
    let node = g.node(n);
    let Op::QLinearConv(c) = node.op() else {
        return None;
    };
    let ones = |v: &Option<Vec<i64>>| v.as_ref().is_none_or(|v| v.iter().all(|&x| x == 1));
    if c.kernel_shape.as_deref().is_some_and(|k| k != [1, 1])
        || c.group.unwrap_or(1) != 1
        || c.auto_pad.as_deref().is_some_and(|a| a != "NOTSET")
        || c.pads.as_ref().is_some_and(|p| p.iter().any(|&x| x != 0))
        || !ones(&c.strides)
        || !ones(&c.dilations)
    {
        return None;
    }
    let w = g.constant(node.input(3)?)?;
    if w.dims.len() != 4 || w.dims[2..] != [1, 1] {
        return None;
    }
    let x4 = node.input(0)?;
    let ra = g.producer(x4)?;
    if !matches!(g.node(ra).op(), Op::Reshape(_))
        || const_i64s(g, g.node(ra).input(1))? != [0, 0, 1, 1]
        || g.value(x4).uses().len() != 1
        || g.is_graph_output(x4)
    {
        return None;
    }
    let y4 = node.output(0)?;
    let [(ry, 0)] = g.value(y4).uses() else {
        return None;
    };
    if g.is_graph_output(y4)
        || !matches!(g.node(*ry).op(), Op::Reshape(_))
        || const_i64s(g, g.node(*ry).input(1))? != [0, 0]
    {
        return None;
    }
    Some((ra, g.node(ra).input(0)?, *ry))
}

/// Removes node `n` and what only it read (dangling producers, unused initializers).
fn remove(g: &mut Graph, n: NodeId) {
    let ins: Vec<ValueId> = g.node(n).inputs().iter().flatten().copied().collect();
    g.remove_node(n);
    for v in ins {
        match g.producer(v) {
            Some(p) => prune_from(g, p),
            None => drop_init_if_unused(g, v),
        }
    }
}

/// Removes node `n` and the initializers only it read (its producers are left alone).
fn remove_plain(g: &mut Graph, n: NodeId) {
    let ins: Vec<ValueId> = g.node(n).inputs().iter().flatten().copied().collect();
    g.remove_node(n);
    for v in ins {
        drop_init_if_unused(g, v);
    }
}

impl Pass for QopsToQdq {
    fn name(&self) -> &'static str {
        "qops_to_qdq"
    }

    fn run(&self, model: &mut Model, _cx: &PassCx) -> Result<PassReport, PassError> {
        let opset = model.onnx_opset();
        rewrite_nodes(self.name(), &mut model.graph, |g, n| {
            Some(match g.node(n).op() {
                Op::QLinearConv(_) => self.qlinear_conv(g, n),
                Op::QLinearMatMul(_) => self.qlinear_matmul(g, n),
                Op::ConvInteger(_) | Op::MatMulInteger(_) => self.integer(g, n),
                Op::QLinearAdd(_)
                | Op::QLinearMul(_)
                | Op::QLinearSigmoid(_)
                | Op::QLinearLeakyRelu(_)
                | Op::QLinearGlobalAveragePool(_)
                | Op::QLinearAveragePool(_)
                | Op::QLinearConcat(_)
                | Op::QLinearSoftmax(_)
                    if self.opts.contrib =>
                {
                    self.contrib(g, n, opset)
                }
                Op::DynamicQuantizeMatMul(_) | Op::MatMulIntegerToFloat(_) => Err(
                    "activation is quantized at run time (dynamic); QDQ has no form for it".into(),
                ),
                Op::QGemm(_) if self.opts.contrib => self.qgemm(g, n),
                _ => return None,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use crate::{QdqToInteger, QdqToQLinear};

    /// The op types in graph order and each initializer's contents, without names.
    type Init = (DType, Vec<i64>, Vec<i64>, Vec<u32>);

    fn shape_of(m: &Model) -> (Vec<String>, Vec<Init>) {
        let g = &m.graph;
        let ops = g
            .nodes()
            .map(|(_, n)| n.op().op_type().to_string())
            .collect();
        let mut inits: Vec<_> = g
            .initializers
            .iter()
            .map(|v| {
                let t = g.initializer(*v).unwrap();
                let f = crate::util::f32s(t).unwrap();
                (
                    t.dtype,
                    t.dims.clone(),
                    crate::util::i64s(t).unwrap_or_default(),
                    f.iter().map(|x| x.to_bits()).collect(),
                )
            })
            .collect();
        inits.sort();
        (ops, inits)
    }

    #[test]
    fn qlinear_back_to_qdq_is_the_original_graph_up_to_names() {
        let orig = crate::qdq_to_qlinear::tests::qdq_conv_matmul();
        let mut m = orig.clone();
        run(&QdqToQLinear::new(Default::default()).unwrap(), &mut m);
        let rep = run(&QopsToQdq::new(Default::default()).unwrap(), &mut m);
        assert_eq!(rep.rewritten.len(), 2, "{rep}");
        insta::assert_snapshot!(show(&m, &rep));
        assert_eq!(shape_of(&m), shape_of(&orig));
    }

    #[test]
    fn integer_back_to_qdq_is_the_original_graph_up_to_names() {
        let orig = crate::qdq_to_qlinear::tests::qdq_conv_matmul();
        let mut m = orig.clone();
        run(&QdqToInteger::new(Default::default()).unwrap(), &mut m);
        let rep = run(&QopsToQdq::new(Default::default()).unwrap(), &mut m);
        assert_eq!(rep.rewritten.len(), 2, "{rep}");
        assert!(
            rep.rewritten.iter().all(|r| r.what.contains("exact")),
            "{rep}"
        );
        insta::assert_snapshot!(show(&m, &rep));
        assert_eq!(shape_of(&m), shape_of(&orig));
    }

    #[test]
    fn contrib_back_to_qdq_computes_what_the_qdq_model_computes() {
        use crate::qdq_to_qlinear::contrib::tests::{contrib_opts, exec, qdq_contrib_graph};
        let orig = qdq_contrib_graph();
        let mut m = orig.clone();
        run(&QdqToQLinear::new(contrib_opts()).unwrap(), &mut m);
        let rep = run(&QopsToQdq::new(Default::default()).unwrap(), &mut m);
        insta::assert_snapshot!(show(&m, &rep));
        assert!(rep.skipped.is_empty(), "{rep}");
        assert!(
            m.graph.nodes().all(|(_, n)| n.op().domain().is_empty()),
            "{}",
            m.graph.dump()
        );
        // MaxPool and Flatten stay on the 8-bit tensor (between a Q and a DQ); the values are the
        // same as the original's DQ → op → Q with one scale.
        let mut rng = qtool_testkit::Rng::new(5);
        for _ in 0..10 {
            let x = rng.tensor_f32(&[1, 2, 4, 4], -1.0, 1.0);
            assert_eq!(exec(&orig, &x).1, exec(&m, &x).1);
        }
    }

    #[test]
    fn gemm_forms_back_to_qdq_are_the_original_graph_up_to_names() {
        use crate::qdq_to_qlinear::contrib::tests::{contrib_opts, exec, qdq_gemm};
        let mut rng = qtool_testkit::Rng::new(9);
        for (trans_b, contrib) in [(true, false), (true, true), (false, true), (false, false)] {
            let orig = qdq_gemm(trans_b);
            let mut m = orig.clone();
            let opts = if contrib {
                contrib_opts()
            } else {
                Default::default()
            };
            run(&QdqToQLinear::new(opts).unwrap(), &mut m);
            let rep = run(&QopsToQdq::new(Default::default()).unwrap(), &mut m);
            assert_eq!(rep.rewritten.len(), 1, "{rep}");
            if trans_b || contrib {
                // The 1x1 form comes back as Gemm with transB = 1 (B as [N, K]).
                assert_eq!(shape_of(&m), shape_of(&orig), "{}", m.graph.dump());
            }
            for _ in 0..10 {
                let x = rng.tensor_f32(&[3, 5], -1.2, 1.2);
                assert_eq!(exec(&orig, &x).1, exec(&m, &x).1);
            }
            if trans_b && !contrib {
                insta::assert_snapshot!(show(&m, &rep));
            }
        }
    }

    #[test]
    fn dynamic_is_skipped_with_reason() {
        let mut m = crate::quantize_dynamic::tests::float_conv_matmul_gemm();
        run(
            &crate::QuantizeDynamic::new(Default::default()).unwrap(),
            &mut m,
        );
        let rep = run(&QopsToQdq::new(Default::default()).unwrap(), &mut m);
        assert!(rep.rewritten.is_empty());
        assert_eq!(rep.skipped.len(), 3, "{rep}");
        assert!(rep.skipped.iter().all(|s| s.reason.contains("run time")));
    }

    #[test]
    fn weight_scale_recovery_is_exact_when_possible() {
        for (m, s) in [
            (3.087849e-5f32, 7.843138e-3f32),
            (1.0e-3, 3.0e-2),
            (0.1, 0.7),
        ] {
            let (w, exact) = recover_scale(m, s);
            assert!(exact);
            assert_eq!(s * w, m);
        }
    }
}
