//! The `contrib: true` rewrites of `qdq_to_qlinear`: the QDQ islands that ONNX Runtime's QOperator
//! quantizer writes as com.microsoft ops (QLinearAdd, QLinearMul, QLinearGlobalAveragePool,
//! QLinearAveragePool, QLinearConcat, QLinearSigmoid, QLinearLeakyRelu, QLinearSoftmax, QGemm), and
//! data-movement ops that run on the 8-bit tensor itself when their input and output share one
//! scale and zero-point. Each rewrite checks what ONNX Runtime 1.32's CPU kernels accept (scalar
//! activation scales and zero-points, one 8-bit type per op, the attributes each kernel reads);
//! anything else is a skip with the reason.

use super::{Dq, QdqToQLinear, consts, dq_of, q_after};
use crate::qops_to_qdq::{same, zp_of_len};
use crate::util::{nname, prune_from};
use qtool_ir::{Graph, Node, NodeId, Op, ValueId, ops};
use qtool_tensor::DType;

/// What a contrib rewrite says it did (the pass imports the com.microsoft domain when one did).
pub(super) const MS: &str = "(com.microsoft)";

/// An activation input of a contrib op: a DequantizeLinear with a constant scalar scale and an
/// 8-bit scalar zero-point (ONNX Runtime's QLinear kernels take nothing else).
fn act(g: &Graph, v: Option<ValueId>, what: &str) -> Result<(Dq, DType), String> {
    let d = dq_of(g, v).ok_or_else(|| format!("{what} is not dequantized"))?;
    let s = g
        .constant(d.scale)
        .ok_or_else(|| format!("{what}'s scale is not constant"))?;
    if s.numel() != 1 {
        return Err(format!("{what}'s scale is not per tensor"));
    }
    let z =
        d.zp.ok_or_else(|| format!("{what}'s zero-point is absent"))?;
    let zt = g
        .constant(z)
        .ok_or_else(|| format!("{what}'s zero-point is not constant"))?;
    if zt.numel() != 1 {
        return Err(format!("{what}'s zero-point is not per tensor"));
    }
    let t = zt.dtype;
    if !matches!(t, DType::U8 | DType::I8) {
        return Err(format!("{what} is {t:?}, not 8-bit"));
    }
    Ok((d, t))
}

/// The output's QuantizeLinear with scalar constant parameters: (node, scale, zero-point,
/// quantized output, type).
struct Out {
    qn: NodeId,
    scale: ValueId,
    zp: ValueId,
    qout: ValueId,
    dtype: DType,
}

fn out(g: &Graph, n: NodeId) -> Result<Out, String> {
    let y = g.node(n).output(0).ok_or("no output")?;
    let (qn, scale, zp, qout) =
        q_after(g, y).ok_or("output is not quantized by its only consumer")?;
    let st = g.constant(scale).ok_or("output scale is not constant")?;
    let zt = g.constant(zp).ok_or("output zero-point is not constant")?;
    if st.numel() != 1 || zt.numel() != 1 {
        return Err("output is not quantized per tensor".into());
    }
    let dtype = zt.dtype;
    if !matches!(dtype, DType::U8 | DType::I8) {
        return Err(format!("output is {dtype:?}, not 8-bit"));
    }
    Ok(Out {
        qn,
        scale,
        zp,
        qout,
        dtype,
    })
}

fn one_type(ts: &[DType], y: DType) -> Result<(), String> {
    if ts.iter().any(|t| *t != y) {
        return Err(format!(
            "inputs ({}) and output ({y:?}) differ in 8-bit type (ONNX Runtime's kernel takes one)",
            ts.iter()
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}

/// Offers node `n` to the contrib rewrites; `None` when `n` is not an op they handle.
pub(super) fn rewrite(
    p: &QdqToQLinear,
    g: &mut Graph,
    n: NodeId,
    opset: i64,
) -> Option<Result<String, String>> {
    let r = match g.node(n).op() {
        Op::Add(_) | Op::Mul(_) => binary(p, g, n),
        Op::Sigmoid(_)
        | Op::LeakyRelu(_)
        | Op::GlobalAveragePool(_)
        | Op::AveragePool(_)
        | Op::Softmax(_) => unary(p, g, n, opset),
        Op::Concat(_) => concat(p, g, n),
        Op::Reshape(_)
        | Op::Transpose(_)
        | Op::Flatten(_)
        | Op::Squeeze(_)
        | Op::Unsqueeze(_)
        | Op::MaxPool(_)
        | Op::Slice(_)
        | Op::Gather(_) => movement(g, n, opset),
        Op::HardSigmoid(_) | Op::HardSwish(_) | Op::ConvTranspose(_) => Err(format!(
            "no com.microsoft QLinear op for {} in ONNX Runtime 1.32; kept in QDQ form",
            g.node(n).op().op_type()
        )),
        Op::Resize(_) => Err(
            "no QLinear op for Resize, and resizing the 8-bit tensor (ONNX Runtime's QOperator form) \
             interpolates and rounds unlike the QDQ model; kept in QDQ form"
                .into(),
        ),
        _ => return None,
    };
    Some(r)
}

fn binary(p: &QdqToQLinear, g: &mut Graph, n: NodeId) -> Result<String, String> {
    let node = g.node(n);
    let (a, ta) = act(g, node.input(0), "A")?;
    let (b, tb) = act(g, node.input(1), "B")?;
    let o = out(g, n)?;
    one_type(&[ta, tb], o.dtype)?;
    let (new, t): (Op, &str) = match node.op() {
        Op::Add(_) => (ops::QLinearAdd {}.into(), "QLinearAdd"),
        _ => (ops::QLinearMul {}.into(), "QLinearMul"),
    };
    let ins = [
        Some(a.q),
        Some(a.scale),
        a.zp,
        Some(b.q),
        Some(b.scale),
        b.zp,
        Some(o.scale),
        Some(o.zp),
    ];
    let name = format!("{}_quant", nname(g, n));
    p.replace(g, n, o.qn, Node::new(new, name), &ins, o.qout);
    Ok(format!("became {t} {MS}"))
}

fn unary(p: &QdqToQLinear, g: &mut Graph, n: NodeId, opset: i64) -> Result<String, String> {
    let node = g.node(n);
    let (x, tx) = act(g, node.input(0), "input")?;
    let o = out(g, n)?;
    one_type(&[tx], o.dtype)?;
    let new: Op = match node.op() {
        Op::Sigmoid(_) => ops::QLinearSigmoid {}.into(),
        Op::LeakyRelu(l) => ops::QLinearLeakyRelu {
            alpha: Some(l.alpha.unwrap_or(0.01)),
        }
        .into(),
        Op::GlobalAveragePool(_) => ops::QLinearGlobalAveragePool {
            channels_last: Some(0),
        }
        .into(),
        Op::AveragePool(a) => {
            if a.dilations
                .as_ref()
                .is_some_and(|d| d.iter().any(|&v| v != 1))
            {
                return Err("dilations != 1 (QLinearAveragePool has none)".into());
            }
            ops::QLinearAveragePool {
                auto_pad: a.auto_pad.clone(),
                ceil_mode: a.ceil_mode,
                channels_last: Some(0),
                count_include_pad: a.count_include_pad,
                kernel_shape: a.kernel_shape.clone(),
                pads: a.pads.clone(),
                strides: a.strides.clone(),
            }
            .into()
        }
        Op::Softmax(s) => {
            // ORT's QLinearSoftmax computes round(t * floor(1 / y_scale) / sum) + y_zp and caps
            // at 255 before the cast: a true quantization only for uint8, zero-point 0 and
            // 1 / y_scale an integer (ORT's own quantizer fixes y_scale = 1/256).
            let ys = consts(g, o.scale).ok_or("output scale is not constant")?[0];
            let yz = consts(g, o.zp).ok_or("output zero-point is not constant")?[0];
            let inv = 1.0 / ys;
            if o.dtype != DType::U8 || yz != 0.0 || inv != inv.floor() {
                return Err(format!(
                    "ORT's QLinearSoftmax quantizes with floor(1 / y_scale) and only as uint8 with zero-point 0; \
                     here y_scale = {ys:e} (1 / y_scale = {inv}), zero-point {yz}, {:?}",
                    o.dtype
                ));
            }
            ops::QLinearSoftmax {
                axis: Some(s.axis.unwrap_or(if opset >= 13 { -1 } else { 1 })),
                opset: Some(opset),
            }
            .into()
        }
        _ => unreachable!("dispatched on the op"),
    };
    let t = new.op_type().to_string();
    let ins = [Some(x.q), Some(x.scale), x.zp, Some(o.scale), Some(o.zp)];
    let name = format!("{}_quant", nname(g, n));
    p.replace(g, n, o.qn, Node::new(new, name), &ins, o.qout);
    Ok(format!("became {t} {MS}"))
}

fn concat(p: &QdqToQLinear, g: &mut Graph, n: NodeId) -> Result<String, String> {
    let node = g.node(n);
    let Op::Concat(c) = node.op() else {
        unreachable!("dispatched on the op")
    };
    let axis = c.axis.ok_or("Concat has no axis")?;
    let o = out(g, n)?;
    let mut ins = vec![Some(o.scale), Some(o.zp)];
    let mut types = Vec::new();
    for (i, v) in node.inputs().iter().enumerate() {
        let (x, t) = act(g, *v, &format!("input {i}"))?;
        ins.extend([Some(x.q), Some(x.scale), x.zp]);
        types.push(t);
    }
    one_type(&types, o.dtype)?;
    let name = format!("{}_quant", nname(g, n));
    p.replace(
        g,
        n,
        o.qn,
        Node::new(ops::QLinearConcat { axis: Some(axis) }, name),
        &ins,
        o.qout,
    );
    Ok(format!("became QLinearConcat {MS}"))
}

/// `DQ(x) → op → Q` with the same scale and zero-point on both sides: the op runs on `x`'s 8-bit
/// values (it only moves or selects them, so the result is what Q(op(DQ(x))) gives).
fn movement(g: &mut Graph, n: NodeId, opset: i64) -> Result<String, String> {
    let node = g.node(n);
    let (x, _) = act(g, node.input(0), "input")?;
    if let Op::MaxPool(_) = node.op()
        && opset < 12
    {
        return Err("8-bit MaxPool needs opset 12".into());
    }
    if node.outputs()[1..]
        .iter()
        .flatten()
        .any(|v| !crate::util::unused(g, *v))
    {
        return Err("a second output is used".into());
    }
    let o = out(g, n)?;
    if !same(g, Some(x.scale), Some(o.scale)) || !same(g, x.zp, Some(o.zp)) {
        return Err("output scale or zero-point differs from the input's".into());
    }
    let dq = g
        .producer(g.node(n).input(0).expect("checked"))
        .expect("DQ");
    g.remove_node(o.qn);
    g.set_input(n, 0, Some(x.q));
    g.set_output(n, 0, Some(o.qout)).expect("Q removed");
    prune_from(g, dq);
    Ok("runs on the 8-bit tensor (input and output share scale and zero-point)".into())
}

/// `DQ(a) + DQ(B) [+ DQ(C int32)] → Gemm → Q` as com.microsoft QGemm (transA, transB as given;
/// alpha 1; C int32 with scale `a_scale * b_scale[n]`, as ONNX Runtime's QGemm adds it to the
/// accumulator).
pub(super) fn qgemm(
    p: &QdqToQLinear,
    g: &mut Graph,
    n: NodeId,
    gm: &ops::Gemm,
) -> Result<String, String> {
    let node = g.node(n);
    let gp = super::gemm_parts(g, n, gm)?;
    let o = out(g, n)?;
    let (_, ta) = act(g, node.input(0), "A")?;
    if o.dtype != ta || (ta == DType::I8 && gp.b_dtype != DType::I8) {
        return Err(format!(
            "types A {ta:?}, B {:?}, Y {:?}: ONNX Runtime's QGemm takes u8/u8, u8/s8 -> u8 and s8/s8 -> s8",
            gp.b_dtype, o.dtype
        ));
    }
    let bzp = if gp.ws_len > 1 {
        Some(zp_of_len(g, gp.b.zp.expect("checked"), gp.ws_len)?)
    } else {
        gp.b.zp
    };
    let ins = [
        Some(gp.a.q),
        Some(gp.a.scale),
        gp.a.zp,
        Some(gp.b.q),
        Some(gp.b.scale),
        bzp,
        gp.bias,
        Some(o.scale),
        Some(o.zp),
    ];
    let op = ops::QGemm {
        alpha: Some(1.0),
        trans_a: Some(gm.trans_a.unwrap_or(0)),
        trans_b: Some(gm.trans_b.unwrap_or(0)),
    };
    let name = format!("{}_quant", nname(g, n));
    p.replace(g, n, o.qn, Node::new(op, name), &ins, o.qout);
    Ok(format!("became QGemm {MS}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::{QdqToQLinear, QdqToQLinearOptions};
    use crate::InsertQdqOptions;
    use crate::testing::*;
    use qtool_ir::{Model, ops};
    use qtool_tensor::DType;

    pub(crate) fn contrib_opts() -> QdqToQLinearOptions {
        QdqToQLinearOptions {
            contrib: true,
            ..Default::default()
        }
    }

    /// Conv → Sigmoid, Mul (SiLU) → MaxPool / AveragePool → Add → Concat → GlobalAveragePool →
    /// Flatten → Gemm → Softmax, quantized by `insert_qdq` (uint8 activations).
    pub(crate) fn qdq_contrib_graph() -> Model {
        let mut b = Builder::new();
        let x = b.input("x", &[1, 2, 4, 4]);
        let w = b.init_f32("w", &[2, 2, 1, 1], vec![0.5, -0.25, 0.75, 0.125]);
        let bias = b.init_f32("b", &[2], vec![0.1, -0.2]);
        let c = b.node(ops::Conv::default(), "conv", &[x, w, bias], "c");
        let s = b.node(ops::Sigmoid {}, "sigmoid", &[c], "s");
        let m = b.node(ops::Mul {}, "mul", &[c, s], "m");
        let pool = |k| ops::MaxPool {
            kernel_shape: Some(vec![k, k]),
            strides: Some(vec![k, k]),
            ..Default::default()
        };
        let mp = b.node(pool(2), "maxpool", &[m], "mp");
        let ap = b.node(
            ops::AveragePool {
                kernel_shape: Some(vec![2, 2]),
                strides: Some(vec![2, 2]),
                ..Default::default()
            },
            "avgpool",
            &[m],
            "ap",
        );
        let a = b.node(ops::Add {}, "add", &[mp, ap], "a");
        let cat = b.node(ops::Concat { axis: Some(1) }, "concat", &[a, ap], "cat");
        let gp = b.node(ops::GlobalAveragePool {}, "gap", &[cat], "gp");
        let f = b.node(ops::Flatten { axis: Some(1) }, "flatten", &[gp], "f");
        let wg = b.init_f32(
            "wg",
            &[3, 4],
            (0..12).map(|i| i as f32 / 8.0 - 0.7).collect(),
        );
        let bg = b.init_f32("bg", &[3], vec![0.05, -0.1, 0.2]);
        let y = b.node(
            ops::Gemm {
                trans_b: Some(1),
                ..Default::default()
            },
            "gemm",
            &[f, wg, bg],
            "y",
        );
        let sm = b.node(ops::Softmax { axis: Some(1) }, "softmax", &[y], "sm");
        b.output(sm);
        let mut model = b.model(13);
        insert_qdq_from(
            &mut model,
            &[
                ("x", (-1.0, 1.0)),
                ("c", (-0.8, 1.2)),
                ("s", (0.0, 0.8)),
                ("m", (-0.3, 1.0)),
                ("ap", (-0.2, 0.9)),
                ("a", (-0.4, 1.8)),
                ("cat", (-0.4, 1.8)),
                ("gp", (-0.2, 1.5)),
                ("y", (-2.0, 2.0)),
                ("sm", (0.0, 0.9)),
            ],
            InsertQdqOptions::default(),
        );
        model
    }

    #[test]
    fn contrib_islands_become_com_microsoft_ops() {
        let mut m = qdq_contrib_graph();
        let rep = run(&QdqToQLinear::new(contrib_opts()).unwrap(), &mut m);
        insta::assert_snapshot!(show(&m, &rep));
        let types: Vec<String> = m
            .graph
            .nodes()
            .map(|(_, n)| n.op().op_type().to_string())
            .collect();
        for t in [
            "QLinearConv",
            "QLinearSigmoid",
            "QLinearMul",
            "MaxPool",
            "QLinearAveragePool",
            "QLinearAdd",
            "QLinearConcat",
            "QLinearGlobalAveragePool",
            "Flatten",
            "QGemm",
        ] {
            assert!(types.iter().any(|x| x == t), "{t} missing: {types:?}");
        }
        // Only the graph input's Q and the Softmax island (with its DQ on the way in and out)
        // keep Q/DQ nodes.
        assert_eq!(types.iter().filter(|t| *t == "QuantizeLinear").count(), 2);
        assert_eq!(types.iter().filter(|t| *t == "DequantizeLinear").count(), 2);
        let sk: Vec<_> = rep.skipped.iter().map(|s| s.node.as_str()).collect();
        assert_eq!(sk, ["softmax"], "{rep}");
        assert!(
            rep.skipped[0].reason.contains("floor(1 / y_scale)"),
            "{rep}"
        );
        assert_eq!(m.opset(qtool_ir::ops::DOMAIN_MS), Some(1));
    }

    #[test]
    fn standard_mode_writes_no_contrib_op_and_gemm_becomes_a_1x1_qlinear_conv() {
        let mut m = qdq_contrib_graph();
        let rep = run(&QdqToQLinear::new(Default::default()).unwrap(), &mut m);
        assert!(
            m.graph.nodes().all(|(_, n)| n.op().domain().is_empty()),
            "{}",
            m.graph.dump()
        );
        assert_eq!(m.opset(qtool_ir::ops::DOMAIN_MS), None);
        assert!(
            rep.rewritten
                .iter()
                .any(|r| r.node == "gemm" && r.what.contains("QLinearConv (1x1)")),
            "{rep}"
        );
        insta::assert_snapshot!(show(&m, &rep));
    }

    /// `DQ(x) → op → Q` built by hand, with the given output parameters.
    fn island(
        op: impl Into<qtool_ir::Op>,
        x_zp: qtool_ir::TensorData,
        y_scale: f32,
        y_zp: qtool_ir::TensorData,
    ) -> Model {
        let mut b = Builder::new();
        let x = b.input("x", &[1, 4]);
        let xs = b.init_f32("x_scale", &[], vec![0.02]);
        let xz = b.g.add_initializer("x_zp", x_zp).unwrap();
        let xq = b.node(ops::QuantizeLinear::default(), "q_x", &[x, xs, xz], "xq");
        let xd = b.node(
            ops::DequantizeLinear::default(),
            "dq_x",
            &[xq, xs, xz],
            "xd",
        );
        let y = b.node(op, "op", &[xd], "y");
        let ys = b.init_f32("y_scale", &[], vec![y_scale]);
        let yz = b.g.add_initializer("y_zp", y_zp).unwrap();
        let yq = b.node(ops::QuantizeLinear::default(), "q_y", &[y, ys, yz], "yq");
        let yd = b.node(
            ops::DequantizeLinear::default(),
            "dq_y",
            &[yq, ys, yz],
            "yd",
        );
        b.output(yd);
        b.model(13)
    }

    fn u8zp(v: u8) -> qtool_ir::TensorData {
        crate::util::tensor(&[], vec![v])
    }
    fn i8zp(v: i8) -> qtool_ir::TensorData {
        crate::util::tensor(&[], vec![v])
    }

    #[test]
    fn leaky_relu_softmax_and_the_skips() {
        let lr = || ops::LeakyRelu { alpha: Some(0.1) };
        let p = QdqToQLinear::new(contrib_opts()).unwrap();
        let mut out = String::new();
        // Rewritten: LeakyRelu; Softmax with y_scale = 1/256, uint8, zero-point 0 (ORT's own choice).
        for (what, mut m) in [
            ("leaky_relu", island(lr(), u8zp(128), 0.01, u8zp(20))),
            (
                "softmax_1_256",
                island(
                    ops::Softmax { axis: Some(-1) },
                    u8zp(128),
                    1.0 / 256.0,
                    u8zp(0),
                ),
            ),
            // Skipped: mixed types, a Softmax scale ORT would round, a Reshape that changes scale.
            ("mixed_types", island(lr(), u8zp(128), 0.01, i8zp(0))),
            (
                "softmax_int8",
                island(
                    ops::Softmax { axis: Some(-1) },
                    i8zp(0),
                    1.0 / 256.0,
                    i8zp(-128),
                ),
            ),
            (
                "flatten_rescaled",
                island(ops::Flatten { axis: Some(1) }, u8zp(128), 0.03, u8zp(128)),
            ),
            (
                "flatten_same",
                island(ops::Flatten { axis: Some(1) }, u8zp(128), 0.02, u8zp(128)),
            ),
        ] {
            let rep = run(&p, &mut m);
            out.push_str(&format!("== {what}\n{}", show(&m, &rep)));
        }
        insta::assert_snapshot!(out);
    }

    /// Tensors by name.
    pub(crate) type Named = Vec<(String, qtool_tensor::Tensor)>;

    /// Runs `m` in qtool on `x`: every 8-bit value by name, and the outputs.
    pub(crate) fn exec(m: &Model, x: &qtool_tensor::Tensor) -> (Named, Named) {
        let ex = qtool_exec::Executor::new(m, qtool_exec::ExecOptions { threads: Some(1) })
            .unwrap_or_else(|e| panic!("{e}\n{}", m.graph.dump()));
        let mut eight = Vec::new();
        let outs = ex
            .run_observed(vec![("x".into(), x.clone())], &mut |n, t| {
                if matches!(t.dtype(), DType::U8 | DType::I8) {
                    eight.push((n.to_string(), t.clone()));
                }
            })
            .unwrap();
        (eight, outs)
    }

    fn max_abs_diff(a: &qtool_tensor::Tensor, b: &qtool_tensor::Tensor) -> f64 {
        let (a, b) = (a.to_f64_vec().unwrap(), b.to_f64_vec().unwrap());
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    /// Only a Gemm island: `Q → DQ → Gemm(+ int32 bias) → Q → DQ`, B `[K, N]` or `[N, K]`.
    pub(crate) fn qdq_gemm(trans_b: bool) -> Model {
        let mut b = Builder::new();
        let x = b.input("x", &[3, 5]);
        let mut rng = qtool_testkit::Rng::new(7);
        let w: Vec<f32> = (0..20).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let wg = b.init_f32("wg", if trans_b { &[4, 5] } else { &[5, 4] }, w);
        let bg = b.init_f32("bg", &[4], vec![0.3, -0.1, 0.05, 0.7]);
        let y = b.node(
            ops::Gemm {
                trans_b: trans_b.then_some(1),
                ..Default::default()
            },
            "gemm",
            &[x, wg, bg],
            "y",
        );
        b.output(y);
        let mut m = b.model(13);
        insert_qdq_from(
            &mut m,
            &[("x", (-1.0, 1.0)), ("y", (-3.0, 2.5))],
            InsertQdqOptions::default(),
        );
        m
    }

    #[test]
    fn gemm_as_1x1_qlinear_conv_equals_qgemm_in_qtool() {
        let mut rng = qtool_testkit::Rng::new(11);
        for trans_b in [false, true] {
            let qdq = qdq_gemm(trans_b);
            let mut std = qdq.clone();
            let rep = run(&QdqToQLinear::new(Default::default()).unwrap(), &mut std);
            assert!(
                rep.rewritten.iter().any(|r| r.what.contains("1x1")),
                "{rep}"
            );
            let mut ms = qdq.clone();
            let rep = run(&QdqToQLinear::new(contrib_opts()).unwrap(), &mut ms);
            assert!(
                rep.rewritten.iter().any(|r| r.what.contains("QGemm")),
                "{rep}"
            );
            for _ in 0..20 {
                let x = rng.tensor_f32(&[3, 5], -1.2, 1.2);
                let (_, a) = exec(&std, &x);
                let (_, b) = exec(&ms, &x);
                assert_eq!(a, b, "transB {trans_b}");
                // Against the QDQ model (float Gemm, then QuantizeLinear): 1 LSB at most.
                let (_, q) = exec(&qdq, &x);
                let d = max_abs_diff(&a[0].1, &q[0].1);
                assert!(d <= 2.5 / 127.5 * 1.0001, "transB {trans_b}: {d}");
            }
        }
    }

    #[test]
    fn contrib_model_runs_in_qtool_and_stays_close_to_the_qdq_model() {
        let qdq = qdq_contrib_graph();
        let mut ms = qdq.clone();
        run(&QdqToQLinear::new(contrib_opts()).unwrap(), &mut ms);
        let mut rng = qtool_testkit::Rng::new(3);
        let mut worst = 0f64;
        for _ in 0..20 {
            let x = rng.tensor_f32(&[1, 2, 4, 4], -1.0, 1.0);
            let (_, a) = exec(&qdq, &x);
            let (_, b) = exec(&ms, &x);
            worst = worst.max(qtool_testkit::rel_l2(&a[0].1, &b[0].1));
        }
        // Each contrib op requantizes once where QDQ rounds a float result: 1 LSB per op, which
        // moves the softmax by a few percent at most on this 10-op chain.
        assert!(worst < 5e-2, "rel L2 {worst}");
    }
}
