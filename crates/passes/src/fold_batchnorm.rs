//! `fold_batchnorm`: folds an inference BatchNormalization that follows a Conv, ConvTranspose or Gemm
//! into that node's weight and bias.
//!
//! The arithmetic is ONNX Runtime's Conv+BN fusion, in f32, per output channel `c`:
//! `s[c] = gamma[c] / sqrt(var[c] + eps)` (`eps` default 1e-5),
//! `W'[c, ...] = W[c, ...] * s[c]`, `b'[c] = (b[c] - mean[c]) * s[c] + beta[c]` (`b = 0` when absent).
//! For Gemm, `c` is the output column; an existing bias is first multiplied by `beta` (then `beta=1`).

use crate::util::{add_init, f32s, finish, nname, tensor, udims};
use crate::{Pass, PassCx, PassError, PassReport};
use qtool_ir::{Graph, Model, NodeId, Op, ValueId};
use serde::Deserialize;

/// Options of `fold_batchnorm`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FoldBatchNormOptions {}

/// The `fold_batchnorm` pass.
#[derive(Debug)]
pub struct FoldBatchNorm;

impl FoldBatchNorm {
    pub fn new(_opts: FoldBatchNormOptions) -> Result<Self, PassError> {
        Ok(FoldBatchNorm)
    }
}

/// Which tensor dimension of the weight holds output channels, and how.
enum Layout {
    /// Output channel = index along axis `axis` (Conv axis 0; Gemm axis 0 or 1).
    Axis(usize),
    /// ConvTranspose `[C, M/g, ...]` with `group` groups.
    ConvTranspose { group: usize, m: usize },
}

fn scale_weight(w: &mut [f32], shape: &[usize], layout: &Layout, s: &[f32]) {
    let inner_of = |axis: usize| shape[axis + 1..].iter().product::<usize>();
    match *layout {
        Layout::Axis(axis) => {
            let inner = inner_of(axis);
            let n = shape[axis];
            for (i, x) in w.iter_mut().enumerate() {
                *x *= s[(i / inner) % n];
            }
        }
        Layout::ConvTranspose { group, m } => {
            let c = shape[0];
            let mg = shape[1];
            let inner = inner_of(1);
            let cg = c / group;
            let _ = m;
            for (i, x) in w.iter_mut().enumerate() {
                let ci = i / (mg * inner);
                let j = (i / inner) % mg;
                *x *= s[(ci / cg) * mg + j];
            }
        }
    }
}

fn try_fold(g: &mut Graph, bn: NodeId) -> Result<String, String> {
    let node = g.node(bn);
    let Op::BatchNormalization(b) = node.op() else {
        unreachable!()
    };
    if b.training_mode == Some(1) || b.is_test == Some(0) {
        return Err("BatchNormalization in training mode".into());
    }
    if b.spatial == Some(0) {
        return Err("spatial=0 is not supported".into());
    }
    if node
        .outputs()
        .iter()
        .skip(1)
        .flatten()
        .any(|v| !crate::util::unused(g, *v))
    {
        return Err("its running mean/var outputs are used".into());
    }
    let eps = b.epsilon.unwrap_or(1e-5);
    let x = node.input(0).ok_or("no input")?;
    let y = node.output(0).ok_or("no output")?;
    let mut params = Vec::new();
    for i in 1..5 {
        let v = node.input(i).ok_or("missing parameter input")?;
        let t = g
            .constant(v)
            .ok_or_else(|| format!("parameter '{}' is not constant", g.value_name(v)))?;
        params.push(f32s(t).ok_or("parameter is not numeric")?);
    }
    let (gamma, beta, mean, var) = (&params[0], &params[1], &params[2], &params[3]);
    let p = g
        .producer(x)
        .ok_or("its input is not produced by a Conv, ConvTranspose or Gemm")?;
    if g.value(x).uses().len() != 1 || g.is_graph_output(x) {
        return Err(format!(
            "the output of '{}' has other consumers",
            nname(g, p)
        ));
    }
    let pnode = g.node(p);
    let wv = pnode.input(1).ok_or("producer has no weight")?;
    let wt = g
        .initializer(wv)
        .ok_or_else(|| format!("weight '{}' is not an initializer", g.value_name(wv)))?;
    if wt.dtype != qtool_tensor::DType::F32 {
        return Err("weight is not float32".into());
    }
    let wshape = udims(wt);
    let (layout, m) = match pnode.op() {
        Op::Conv(_) => (Layout::Axis(0), wshape[0]),
        Op::ConvTranspose(c) => {
            let group = c.group.unwrap_or(1).max(1) as usize;
            let m = wshape.get(1).copied().unwrap_or(0) * group;
            (Layout::ConvTranspose { group, m }, m)
        }
        Op::Gemm(gm) => {
            if wshape.len() != 2 {
                return Err("Gemm weight is not 2-D".into());
            }
            let tb = gm.trans_b.unwrap_or(0) == 1;
            if tb {
                (Layout::Axis(0), wshape[0])
            } else {
                (Layout::Axis(1), wshape[1])
            }
        }
        other => {
            return Err(format!(
                "its input is produced by {}, not a Conv, ConvTranspose or Gemm",
                other.op_type()
            ));
        }
    };
    if [gamma, beta, mean, var].iter().any(|v| v.len() != m) {
        return Err(format!(
            "parameter length does not match the {m} output channels"
        ));
    }
    let gemm_beta = match pnode.op() {
        Op::Gemm(gm) => gm.beta.unwrap_or(1.0),
        _ => 1.0,
    };
    let old_bias = match pnode.input(2) {
        Some(bv) => {
            let t = g.constant(bv).ok_or("bias is not constant")?;
            let v = f32s(t).ok_or("bias is not numeric")?;
            if v.len() == m {
                v.into_iter().map(|x| x * gemm_beta).collect()
            } else if v.len() == 1 {
                vec![v[0] * gemm_beta; m]
            } else {
                return Err("bias does not have one value per output channel".into());
            }
        }
        None => vec![0.0; m],
    };
    let s: Vec<f32> = (0..m).map(|c| gamma[c] / (var[c] + eps).sqrt()).collect();
    let mut w = f32s(wt).ok_or("weight is not numeric")?;
    scale_weight(&mut w, &wshape, &layout, &s);
    let nb: Vec<f32> = (0..m)
        .map(|c| (old_bias[c] - mean[c]) * s[c] + beta[c])
        .collect();

    // Write the weight (in place when only this node reads it) and a new bias.
    let wname = g.value_name(wv).to_string();
    let new_w = if g.value(wv).uses().len() == 1 {
        g.set_initializer(wv, tensor(&wshape, w));
        wv
    } else {
        add_init(g, &format!("{wname}_bn"), tensor(&wshape, w))
    };
    let bias_base = match g.node(p).input(2) {
        Some(bv) => format!("{}_bn", g.value_name(bv)),
        None => format!(
            "{}_bias",
            g.node(p).name.clone().unwrap_or_else(|| "conv".into())
        ),
    };
    let new_b: ValueId = add_init(g, &bias_base, tensor(&[m], nb));
    g.set_input(p, 1, Some(new_w));
    let old_b = g.node(p).input(2);
    g.set_input(p, 2, Some(new_b));
    if let Some(ob) = old_b {
        crate::util::drop_init_if_unused(g, ob);
    }
    if let Op::Gemm(gm) = g.node(p).op() {
        let mut gm = gm.clone();
        if gm.beta.is_some() {
            gm.beta = Some(1.0);
        }
        g.node_mut(p).set_op(gm);
    }
    let bn_inputs: Vec<ValueId> = g.node(bn).inputs().iter().flatten().copied().collect();
    let slot = g.value(x).producer().expect("producer").1;
    g.remove_node(bn);
    g.set_output(p, slot, Some(y)).map_err(|e| e.to_string())?;
    for v in bn_inputs.into_iter().skip(1) {
        crate::util::drop_init_if_unused(g, v);
    }
    Ok(format!("folded into '{}'", nname(g, p)))
}

impl Pass for FoldBatchNorm {
    fn name(&self) -> &'static str {
        "fold_batchnorm"
    }

    fn run(&self, model: &mut Model, _cx: &PassCx) -> Result<PassReport, PassError> {
        let g = &mut model.graph;
        let mut report = PassReport::default();
        for n in g.node_ids().to_vec() {
            if !matches!(g.node(n).op(), Op::BatchNormalization(_)) {
                continue;
            }
            let name = nname(g, n);
            match try_fold(g, n) {
                Ok(what) => report.rewrite(name, what),
                Err(reason) => report.skip(name, "BatchNormalization", reason),
            }
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

    fn bn_params(b: &mut Builder, m: usize) -> Vec<ValueId> {
        vec![
            b.init_f32("gamma", &[m], vec![2.0, 0.5]),
            b.init_f32("beta", &[m], vec![1.0, -1.0]),
            b.init_f32("mean", &[m], vec![0.5, 1.0]),
            b.init_f32("var", &[m], vec![3.0, 0.25]),
        ]
    }

    #[test]
    fn conv_bn_folds_with_exact_numbers() {
        let mut b = Builder::new();
        let x = b.input("x", &[1, 1, 2, 2]);
        let w = b.init_f32("w", &[2, 1, 1, 1], vec![1.0, 4.0]);
        let bias = b.init_f32("b", &[2], vec![0.5, 2.0]);
        let c = b.node(ops::Conv::default(), "conv", &[x, w, bias], "c");
        let mut ins = vec![c];
        ins.extend(bn_params(&mut b, 2));
        let bn = ops::BatchNormalization {
            epsilon: Some(1.0),
            ..Default::default()
        };
        let y = b.node(bn, "bn", &ins, "y");
        b.output(y);
        let mut m = b.model(13);
        let rep = run(&FoldBatchNorm, &mut m);
        // s = [2/sqrt(4), 0.5/sqrt(1.25)], W' = [1, 4*s1], b' = [(0.5-0.5)*1+1, (2-1)*s1-1].
        let s1 = 0.5f32 / 1.25f32.sqrt();
        let g = &m.graph;
        let w2 = f32s(g.initializer(g.find_value("w").unwrap()).unwrap()).unwrap();
        assert_eq!(w2, vec![1.0, 4.0 * s1]);
        let b2 = f32s(g.initializer(g.find_value("b_bn").unwrap()).unwrap()).unwrap();
        assert_eq!(b2, vec![1.0, (2.0 - 1.0) * s1 - 1.0]);
        insta::assert_snapshot!(show(&m, &rep));
    }

    #[test]
    fn conv_with_two_consumers_is_skipped() {
        let mut b = Builder::new();
        let x = b.input("x", &[1, 1, 2, 2]);
        let w = b.init_f32("w", &[2, 1, 1, 1], vec![1.0, 4.0]);
        let c = b.node(ops::Conv::default(), "conv", &[x, w], "c");
        let mut ins = vec![c];
        ins.extend(bn_params(&mut b, 2));
        let y = b.node(ops::BatchNormalization::default(), "bn", &ins, "y");
        let z = b.node(ops::Relu {}, "other", &[c], "z");
        b.output(y);
        b.output(z);
        let mut m = b.model(13);
        let rep = run(&FoldBatchNorm, &mut m);
        assert_eq!(rep.skipped.len(), 1);
        assert!(rep.skipped[0].reason.contains("other consumers"), "{rep}");
    }

    #[test]
    fn gemm_trans_b_and_conv_transpose_groups() {
        // Gemm, transB=1: weight [N=2, K=1], channel = row.
        let mut b = Builder::new();
        let x = b.input("x", &[1, 1]);
        let w = b.init_f32("w", &[2, 1], vec![1.0, 4.0]);
        let gm = ops::Gemm {
            trans_b: Some(1),
            ..Default::default()
        };
        let c = b.node(gm, "gemm", &[x, w], "c");
        let mut ins = vec![c];
        ins.extend(bn_params(&mut b, 2));
        let y = b.node(
            ops::BatchNormalization {
                epsilon: Some(1.0),
                ..Default::default()
            },
            "bn",
            &ins,
            "y",
        );
        b.output(y);
        let mut m = b.model(13);
        let rep = run(&FoldBatchNorm, &mut m);
        assert_eq!(rep.rewritten.len(), 1, "{rep}");
        let s1 = 0.5f32 / 1.25f32.sqrt();
        let w2 = f32s(
            m.graph
                .initializer(m.graph.find_value("w").unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(w2, vec![1.0, 4.0 * s1]);

        // ConvTranspose group=2: weight [C=2, M/g=1, 1, 1]; output channel of row c is c.
        let mut w = vec![1.0f32, 4.0];
        scale_weight(
            &mut w,
            &[2, 1, 1, 1],
            &Layout::ConvTranspose { group: 2, m: 2 },
            &[3.0, 5.0],
        );
        assert_eq!(w, vec![3.0, 20.0]);
        // group=1, weight [C=1, M=2]: channel = column.
        let mut w = vec![1.0f32, 4.0];
        scale_weight(
            &mut w,
            &[1, 2, 1, 1],
            &Layout::ConvTranspose { group: 1, m: 2 },
            &[3.0, 5.0],
        );
        assert_eq!(w, vec![3.0, 20.0]);
    }
}
