//! Conv weights packed once at build and Conv + activation fusion: a fused run gives bit-identical
//! outputs to the unfused (observed) run, the observer still sees the Conv output, and nodes whose
//! Conv output has other readers, or whose weights or bounds are run-time values, are not fused.

use qtool_exec::{ExecOptions, Executor};
use qtool_ir::{Graph, Model, Node, Op, OpsetId, TensorData, Type, ValueInfo, ops};
use qtool_tensor::{DType, Tensor};
use qtool_testkit::Rng;

const XS: [usize; 4] = [1, 5, 11, 9];

fn model(g: Graph, opset: i64) -> Model {
    Model {
        graph: g,
        opset_import: vec![OpsetId {
            domain: None,
            version: Some(opset),
        }],
        ..Default::default()
    }
}

/// x -> Conv(w, b) -> c -> act(c, extra inputs...) -> y; with `also_add`, y2 = c + c as well.
/// `runtime_w` makes the weight a graph input (with the initializer as default).
fn conv_act(
    act: Op,
    act_extra: &[Tensor],
    opset: i64,
    also_add: bool,
    runtime_w: bool,
) -> (Model, Tensor) {
    let mut rng = Rng::new(5);
    let mut g = Graph::new("fusion");
    let x = g.add_value("x").unwrap();
    let xs: Vec<i64> = XS.iter().map(|&d| d as i64).collect();
    g.inputs
        .push((x, ValueInfo::of_type(Type::tensor(DType::F32, &xs))));
    let w = rng.tensor_f32(&[7, 5, 3, 3], -0.5, 0.5);
    let b = rng.tensor_f32(&[7], -0.5, 0.5);
    let wv = g.add_initializer("w", TensorData::from_tensor(&w)).unwrap();
    if runtime_w {
        g.inputs.push((
            wv,
            ValueInfo::of_type(Type::tensor(DType::F32, &[7, 5, 3, 3])),
        ));
    }
    let bv = g.add_initializer("b", TensorData::from_tensor(&b)).unwrap();
    let [c, y] = ["c", "y"].map(|n| g.add_value(n).unwrap());
    let conv = ops::Conv {
        pads: Some(vec![1, 0, 2, 1]),
        strides: Some(vec![1, 2]),
        ..Default::default()
    };
    g.add_node(
        Node::new(conv, "conv"),
        &[Some(x), Some(wv), Some(bv)],
        &[Some(c)],
    )
    .unwrap();
    let mut act_in = vec![Some(c)];
    for (i, t) in act_extra.iter().enumerate() {
        if t.is_empty() {
            act_in.push(None);
            continue;
        }
        let v = g
            .add_initializer(&format!("extra{i}"), TensorData::from_tensor(t))
            .unwrap();
        act_in.push(Some(v));
    }
    g.add_node(Node::new(act, "act"), &act_in, &[Some(y)])
        .unwrap();
    g.outputs.push((y, ValueInfo::default()));
    if also_add {
        let y2 = g.add_value("y2").unwrap();
        g.add_node(
            Node::new(ops::Add {}, "add"),
            &[Some(c), Some(c)],
            &[Some(y2)],
        )
        .unwrap();
        g.outputs.push((y2, ValueInfo::default()));
    }
    let input = rng.tensor_f32(&XS, -2.0, 2.0);
    (model(g, opset), input)
}

/// Runs unobserved (fused when possible) and observed (never fused); both must agree exactly,
/// and the observer must see the Conv output.
fn check_same(m: &Model, x: &Tensor, what: &str) -> Vec<(String, Tensor)> {
    let ex = Executor::new(m, ExecOptions { threads: Some(2) }).unwrap();
    let (fused, st_fused) = ex.run_with_stats(vec![("x".into(), x.clone())]).unwrap();
    let mut seen = Vec::new();
    let observed = ex
        .run_observed(vec![("x".into(), x.clone())], &mut |n, t| {
            seen.push((n.to_string(), t.shape().to_vec()))
        })
        .unwrap();
    assert_eq!(fused, observed, "{what}: fused and unfused runs differ");
    assert!(
        seen.iter()
            .any(|(n, s)| n == "c" && s == &vec![1, 7, 12, 4]),
        "{what}: observer did not see the conv output: {seen:?}"
    );
    assert_eq!(st_fused.nodes_run, m.graph.node_count(), "{what}");
    fused
}

fn scalar(v: f32) -> Tensor {
    Tensor::from_vec(&[], vec![v]).unwrap()
}

#[test]
fn fused_activations_equal_the_unfused_run() {
    let cases: Vec<(&str, Op, Vec<Tensor>, i64)> = vec![
        ("relu", ops::Relu {}.into(), vec![], 13),
        (
            "leaky",
            ops::LeakyRelu { alpha: Some(0.07) }.into(),
            vec![],
            13,
        ),
        ("sigmoid", ops::Sigmoid {}.into(), vec![], 13),
        (
            "hardsigmoid",
            ops::HardSigmoid {
                alpha: Some(0.3),
                beta: Some(0.4),
            }
            .into(),
            vec![],
            13,
        ),
        ("hardswish", ops::HardSwish {}.into(), vec![], 14),
        (
            "clip13",
            ops::Clip::default().into(),
            vec![scalar(-0.25), scalar(0.75)],
            13,
        ),
        (
            "clip13_max_only",
            ops::Clip::default().into(),
            vec![
                Tensor::from_vec(&[0], Vec::<f32>::new()).unwrap(),
                scalar(0.5),
            ],
            13,
        ),
        (
            "clip6",
            ops::Clip {
                min: Some(0.0),
                max: Some(6.0),
            }
            .into(),
            vec![],
            6,
        ),
    ];
    for (what, op, extra, opset) in cases {
        let (m, x) = conv_act(op, &extra, opset, false, false);
        let ex = Executor::new(&m, ExecOptions { threads: Some(1) }).unwrap();
        assert_eq!(ex.prepared_nodes(), vec!["conv"], "{what}");
        let out = check_same(&m, &x, what);
        assert_eq!(out[0].1.shape(), &[1, 7, 12, 4], "{what}");
    }
}

#[test]
fn conv_with_two_readers_or_runtime_inputs_is_not_fused_and_still_right() {
    // c feeds Relu and Add: no fusion; y2 must be 2 * c and y relu(c).
    let (m, x) = conv_act(ops::Relu {}.into(), &[], 13, true, false);
    let ex = Executor::new(&m, ExecOptions { threads: Some(2) }).unwrap();
    let mut c = None;
    let out = ex
        .run_observed(vec![("x".into(), x.clone())], &mut |n, t| {
            if n == "c" {
                c = Some(t.clone());
            }
        })
        .unwrap();
    let c = c.unwrap().to_vec::<f32>().unwrap();
    let y = out[0].1.to_vec::<f32>().unwrap();
    let y2 = out[1].1.to_vec::<f32>().unwrap();
    for i in 0..c.len() {
        assert_eq!(y[i], c[i].max(0.0));
        assert_eq!(y2[i], c[i] + c[i]);
    }
    check_same(&m, &x, "two readers");

    // A weight that callers may override is not packed; overriding it takes effect.
    let (m, x) = conv_act(ops::Relu {}.into(), &[], 13, false, true);
    let ex = Executor::new(&m, ExecOptions { threads: Some(1) }).unwrap();
    assert!(ex.prepared_nodes().is_empty());
    check_same(&m, &x, "runtime weight");
    let zero_w = Tensor::from_vec(&[7, 5, 3, 3], vec![0f32; 7 * 5 * 9]).unwrap();
    let out = ex
        .run(vec![("x".into(), x.clone()), ("w".into(), zero_w)])
        .unwrap();
    // Zero weights leave relu(bias) in every position of each channel.
    let y = out[0].1.to_vec::<f32>().unwrap();
    for ch in y.chunks(48) {
        assert!(ch.iter().all(|&v| v == ch[0] && v >= 0.0));
    }
}
