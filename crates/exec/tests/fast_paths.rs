//! The element-wise fast paths (inline loops, chunked parallel loops, Clip as a select) give exactly
//! the values of a naive per-element reference, for every broadcast pattern, sizes on both sides of
//! the parallel threshold and NaN inputs; Conv+Sigmoid+Mul (SiLU) fusion equals the ops run one by
//! one; and `Executor::run_profiled` reports every node that ran.

mod common;

use common::{f, run, t};
use qtool_exec::{ExecOptions, Executor};
use qtool_ir::{Graph, Model, Node, OpsetId, TensorData, Type, ValueInfo, ops};
use qtool_tensor::{DType, Tensor};
use qtool_testkit::Rng;

/// Row-major strides of `shape` broadcast to `out` (0 on broadcast axes).
fn bstrides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let mut s = vec![0; out.len()];
    let mut acc = 1;
    for i in (0..out.len()).rev() {
        let j = i as isize - (out.len() - shape.len()) as isize;
        if j >= 0 {
            let d = shape[j as usize];
            s[i] = if d == 1 { 0 } else { acc };
            acc *= d;
        }
    }
    s
}

fn naive(
    a: &[f32],
    sa: &[usize],
    b: &[f32],
    sb: &[usize],
    out: &[usize],
    op: fn(f32, f32) -> f32,
) -> Vec<f32> {
    let (ta, tb) = (bstrides(sa, out), bstrides(sb, out));
    let n: usize = out.iter().product();
    (0..n)
        .map(|mut i| {
            let (mut ia, mut ib) = (0, 0);
            for k in (0..out.len()).rev() {
                let c = i % out[k];
                i /= out[k];
                ia += c * ta[k];
                ib += c * tb[k];
            }
            op(a[ia], b[ib])
        })
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn broadcast_arithmetic_matches_a_naive_reference() {
    let mut rng = Rng::new(3);
    // (a, b, out): same shape, scalar, per-channel, row, both-sided and strided broadcasts; small
    // and above the parallel threshold (32768 elements).
    let cases: &[(&[usize], &[usize])] = &[
        (&[2, 3, 4], &[2, 3, 4]),
        (&[1, 48, 40, 40], &[1, 48, 40, 40]),
        (&[1, 48, 40, 40], &[]),
        (&[], &[1, 48, 40, 40]),
        (&[1, 48, 40, 40], &[48, 1, 1]),
        (&[1, 48, 40, 40], &[1, 48, 1, 1]),
        (&[1, 48, 40, 40], &[40]),
        (&[4, 1, 90], &[1, 100, 1]),
        (&[5, 1, 3, 70], &[1, 200, 1, 70]),
        (&[3, 1], &[1, 4]),
    ];
    for (sa, sb) in cases {
        let out: Vec<usize> = {
            let r = sa.len().max(sb.len());
            (0..r)
                .map(|i| {
                    let d = |s: &[usize]| (i + s.len()).checked_sub(r).map_or(1, |j| s[j]);
                    d(sa).max(d(sb))
                })
                .collect()
        };
        let na: usize = sa.iter().product();
        let nb: usize = sb.iter().product();
        let mut a: Vec<f32> = (0..na).map(|_| rng.uniform(-2.0, 2.0)).collect();
        let b: Vec<f32> = (0..nb).map(|_| rng.uniform(0.5, 2.0)).collect();
        a[0] = f32::NAN;
        let (ta, tb) = (t(sa, a.clone()), t(sb, b.clone()));
        type Case = (qtool_ir::Op, fn(f32, f32) -> f32);
        let ops: [Case; 4] = [
            (ops::Add {}.into(), |x, y| x + y),
            (ops::Sub {}.into(), |x, y| x - y),
            (ops::Mul {}.into(), |x, y| x * y),
            (ops::Div {}.into(), |x, y| x / y),
        ];
        for (op, r) in ops {
            let name = op.op_type().to_string();
            let got = run(op, 14, &[&ta, &tb]);
            assert_eq!(got.shape(), &out[..], "{name} {sa:?} {sb:?}");
            let want = naive(&a, sa, &b, sb, &out, r);
            assert_eq!(bits(&f(&got)), bits(&want), "{name} {sa:?} {sb:?}");
        }
    }
}

#[test]
fn clip_f32_keeps_nan_and_missing_bounds() {
    let mut rng = Rng::new(9);
    for n in [7usize, 70_000] {
        let mut x: Vec<f32> = (0..n).map(|_| rng.uniform(-10.0, 10.0)).collect();
        x[1] = f32::NAN;
        x[2] = f32::INFINITY;
        x[3] = f32::NEG_INFINITY;
        let xt = t(&[n], x.clone());
        let (lo, hi) = (Tensor::scalar(-1f32), Tensor::scalar(6f32));
        let ins: [(Option<&Tensor>, Option<&Tensor>); 4] = [
            (Some(&lo), Some(&hi)),
            (Some(&lo), None),
            (None, Some(&hi)),
            (None, None),
        ];
        for (l, h) in ins {
            let got = common::run_n(ops::Clip::default(), 13, &[Some(&xt), l, h], 1).remove(0);
            let (lv, hv) = (l.map(|_| -1f32), h.map(|_| 6f32));
            let want: Vec<f32> = x
                .iter()
                .map(|&v| {
                    let mut v = v;
                    if let Some(l) = lv
                        && v < l
                    {
                        v = l;
                    }
                    if let Some(h) = hv
                        && v > h
                    {
                        v = h;
                    }
                    v
                })
                .collect();
            assert_eq!(bits(&f(&got)), bits(&want), "n {n} lo {lv:?} hi {hv:?}");
        }
    }
}

fn tiny_model() -> (Model, Tensor) {
    let mut rng = Rng::new(1);
    let mut g = Graph::new("prof");
    let x = g.add_value("x").unwrap();
    g.inputs.push((
        x,
        ValueInfo::of_type(Type::tensor(DType::F32, &[1, 3, 8, 8])),
    ));
    let w = g
        .add_initializer(
            "w",
            TensorData::from_tensor(&rng.tensor_f32(&[4, 3, 3, 3], -1.0, 1.0)),
        )
        .unwrap();
    let [c, r, y] = ["c", "r", "y"].map(|n| g.add_value(n).unwrap());
    g.add_node(
        Node::new(ops::Conv::default(), "conv"),
        &[Some(x), Some(w)],
        &[Some(c)],
    )
    .unwrap();
    g.add_node(Node::new(ops::Relu {}, "relu"), &[Some(c)], &[Some(r)])
        .unwrap();
    g.add_node(
        Node::new(ops::Add {}, "add"),
        &[Some(r), Some(r)],
        &[Some(y)],
    )
    .unwrap();
    g.outputs.push((y, ValueInfo::default()));
    let m = Model {
        graph: g,
        opset_import: vec![OpsetId {
            domain: None,
            version: Some(17),
        }],
        ..Default::default()
    };
    (m, rng.tensor_f32(&[1, 3, 8, 8], -1.0, 1.0))
}

#[test]
fn profile_lists_every_node_that_ran() {
    let (m, x) = tiny_model();
    let ex = Executor::new(&m, ExecOptions { threads: Some(1) }).unwrap();
    let want = ex.run(vec![("x".into(), x.clone())]).unwrap();
    let (got, prof) = ex.run_profiled(vec![("x".into(), x)], 3).unwrap();
    assert_eq!(got, want);
    assert_eq!(prof.runs, 3);
    let nodes: Vec<(&str, &str, usize)> = prof
        .nodes
        .iter()
        .map(|n| (n.node.as_str(), n.op_type.as_str(), n.calls))
        .collect();
    // The Relu runs in the Conv's output stage and is reported with it.
    assert_eq!(nodes, vec![("conv", "Conv+Relu", 3), ("add", "Add", 3)]);
    assert_eq!(prof.nodes[0].shape, vec![1, 4, 6, 6]);
    assert!(prof.node_total() <= prof.total);
    let types: Vec<String> = prof.by_op_type().into_iter().map(|o| o.op_type).collect();
    assert_eq!(types.len(), 2);
    let table = prof.to_string();
    assert!(
        table.contains("Conv+Relu") && table.contains("slowest nodes"),
        "{table}"
    );
}

/// `x -> Conv -> c`, `s = Sigmoid(c)`, `y = Mul(c, s)` (operands in either order); with
/// `sigmoid_is_output` the Sigmoid's result is a graph output too, which forbids the fusion.
fn silu_model(swap: bool, sigmoid_is_output: bool) -> Model {
    let mut rng = Rng::new(5);
    let mut g = Graph::new("silu");
    let x = g.add_value("x").unwrap();
    g.inputs.push((
        x,
        ValueInfo::of_type(Type::tensor(DType::F32, &[1, 3, 20, 20])),
    ));
    let w = g
        .add_initializer(
            "w",
            TensorData::from_tensor(&rng.tensor_f32(&[8, 3, 3, 3], -3.0, 3.0)),
        )
        .unwrap();
    let [c, s, y] = ["c", "s", "y"].map(|n| g.add_value(n).unwrap());
    g.add_node(
        Node::new(ops::Conv::default(), "conv"),
        &[Some(x), Some(w)],
        &[Some(c)],
    )
    .unwrap();
    g.add_node(Node::new(ops::Sigmoid {}, "sig"), &[Some(c)], &[Some(s)])
        .unwrap();
    let ins = if swap {
        [Some(s), Some(c)]
    } else {
        [Some(c), Some(s)]
    };
    g.add_node(Node::new(ops::Mul {}, "mul"), &ins, &[Some(y)])
        .unwrap();
    g.outputs.push((y, ValueInfo::default()));
    if sigmoid_is_output {
        g.outputs.push((s, ValueInfo::default()));
    }
    Model {
        graph: g,
        opset_import: vec![OpsetId {
            domain: None,
            version: Some(17),
        }],
        ..Default::default()
    }
}

/// Conv+Sigmoid+Mul (SiLU) runs as one node whose output is bit-identical to the three ops run
/// one by one (an observer turns fusion off), and the sigmoid is within 3e-7 relative of f64.
#[test]
fn conv_silu_fusion_is_exact() {
    let x = Rng::new(9).tensor_f32(&[1, 3, 20, 20], -2.0, 2.0);
    for (swap, sig_out) in [(false, false), (true, false), (false, true)] {
        let m = silu_model(swap, sig_out);
        for threads in [1, 2] {
            let ex = Executor::new(
                &m,
                ExecOptions {
                    threads: Some(threads),
                },
            )
            .unwrap();
            let fused = ex.run(vec![("x".into(), x.clone())]).unwrap();
            let mut conv_out = None;
            let mut sig = None;
            let unfused = ex
                .run_observed(vec![("x".into(), x.clone())], &mut |name, t| match name {
                    "c" => conv_out = Some(f(t)),
                    "s" => sig = Some(f(t)),
                    _ => {}
                })
                .unwrap();
            assert_eq!(fused.len(), unfused.len());
            for ((na, a), (nb, b)) in fused.iter().zip(&unfused) {
                assert_eq!(na, nb);
                assert_eq!(
                    bits(&f(a)),
                    bits(&f(b)),
                    "{na}: swap {swap} sig_out {sig_out}"
                );
            }
            let (c, s) = (conv_out.unwrap(), sig.unwrap());
            let y = f(&fused[0].1);
            for i in 0..c.len() {
                let exact = 1.0 / (1.0 + (-(c[i] as f64)).exp());
                assert!(
                    ((s[i] as f64 - exact) / exact).abs() < 3e-7,
                    "sigmoid({})",
                    c[i]
                );
                assert_eq!(y[i].to_bits(), (c[i] * s[i]).to_bits());
            }
            let (_, prof) = ex.run_profiled(vec![("x".into(), x.clone())], 1).unwrap();
            let conv = prof.nodes.iter().find(|n| n.node == "conv").unwrap();
            // A Sigmoid result that is a graph output must exist on its own: no fusion.
            let want = if sig_out { "Conv" } else { "Conv+Sigmoid+Mul" };
            assert_eq!(conv.op_type, want);
        }
    }
}
