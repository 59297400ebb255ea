//! The interpreter: ordering, observer, freeing, input checks, unsupported ops, batching.

mod common;
use common::*;
use qtool_exec::{ExecError, ExecOptions, Executor};
use qtool_ir::{
    Dim, Graph, Model, Node, OpsetId, TensorData, TensorType, Type, TypeKind, ValueInfo, ops,
};
use qtool_tensor::{DType, Tensor};

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

fn input(g: &mut Graph, name: &str, dtype: DType, dims: Vec<Dim>) -> qtool_ir::ValueId {
    let v = g.add_value(name).unwrap();
    let ty = Type {
        kind: TypeKind::Tensor(TensorType {
            elem: Some(dtype),
            shape: Some(dims),
        }),
        denotation: None,
    };
    g.inputs.push((v, ValueInfo::of_type(ty)));
    v
}

/// x[N,2] -> Relu -> a ; a + w(init) -> b ; Constant c ; b * c -> y ; Neg(a) -> unused "dead"
fn small() -> Model {
    let mut g = Graph::new("g");
    let x = input(
        &mut g,
        "x",
        DType::F32,
        vec![Dim::param("N"), Dim::known(2)],
    );
    let w = g
        .add_initializer("w", TensorData::from_tensor(&v(vec![1f32, 2.])))
        .unwrap();
    let [a, b, c, y, dead] = ["a", "b", "c", "y", "dead"].map(|n| g.add_value(n).unwrap());
    // Added out of order on purpose: the executor sorts.
    g.add_node(
        Node::new(ops::Mul {}, "mul"),
        &[Some(b), Some(c)],
        &[Some(y)],
    )
    .unwrap();
    g.add_node(Node::new(ops::Relu {}, "relu"), &[Some(x)], &[Some(a)])
        .unwrap();
    g.add_node(
        Node::new(ops::Add {}, "add"),
        &[Some(a), Some(w)],
        &[Some(b)],
    )
    .unwrap();
    g.add_node(Node::new(ops::Neg {}, "neg"), &[Some(a)], &[Some(dead)])
        .unwrap();
    g.add_node(
        Node::new(
            ops::Constant {
                value_float: Some(10.0),
                ..Default::default()
            },
            "const",
        ),
        &[],
        &[Some(c)],
    )
    .unwrap();
    g.outputs.push((y, ValueInfo::default()));
    model(g, 17)
}

#[test]
fn runs_and_observes_every_value_in_order() {
    let ex = Executor::new(&small(), ExecOptions { threads: Some(1) }).unwrap();
    assert_eq!(ex.input_names(), vec!["x"]);
    assert_eq!(ex.output_names(), vec!["y"]);
    let x = t(&[1, 2], vec![-1f32, 3.]);
    let mut seen: Vec<(String, Vec<usize>)> = Vec::new();
    let out = ex
        .run_observed(vec![("x".into(), x)], &mut |n, t| {
            seen.push((n.to_string(), t.shape().to_vec()))
        })
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, "y");
    assert_eq!(f(&out[0].1), vec![10., 50.]);
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    // Stable topological order: relu, add, neg, const (ready from the start but later in the file), mul.
    assert_eq!(names[0], "x");
    assert_eq!(names.len(), 6);
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(
        pos("a") < pos("b") && pos("b") < pos("y") && pos("c") < pos("y") && pos("a") < pos("dead")
    );
    assert!(seen.iter().all(|(_, s)| s == &vec![1, 2] || s.is_empty()));
}

#[test]
fn values_are_freed_after_their_last_use() {
    let ex = Executor::new(&small(), ExecOptions { threads: Some(2) }).unwrap();
    assert_eq!(ex.threads(), 2);
    // `a` is read by add and neg: freed after whichever runs last; `dead` right after neg.
    let mut freed: Vec<&str> = ["relu", "add", "neg", "mul", "const"]
        .iter()
        .flat_map(|n| ex.freed_after(n).unwrap())
        .collect();
    freed.sort();
    assert_eq!(freed, vec!["a", "b", "dead", "x"]);
    assert!(ex.freed_after("neg").unwrap().contains(&"dead"));
    assert!(ex.freed_after("nope").is_none());
    let (out, st) = ex
        .run_with_stats(vec![("x".into(), t(&[3, 2], vec![1f32; 6]))])
        .unwrap();
    assert_eq!(out[0].1.shape(), &[3, 2]);
    assert_eq!(st.nodes_run, 4);
    assert_eq!(st.values_freed, 4);
    assert!(st.peak_live_values <= 3, "{st:?}");
}

#[test]
fn input_errors_name_the_input_and_shapes() {
    let ex = Executor::new(&small(), ExecOptions::default()).unwrap();
    let e = ex.run(vec![]).unwrap_err();
    assert!(matches!(&e, ExecError::MissingInput(n) if n == "x"), "{e}");
    let e = ex
        .run(vec![
            ("x".into(), t(&[1, 2], vec![0f32; 2])),
            ("z".into(), Tensor::scalar(1f32)),
        ])
        .unwrap_err();
    assert!(matches!(&e, ExecError::UnknownInput(n) if n == "z"), "{e}");
    let e = ex
        .run(vec![("x".into(), t(&[1, 3], vec![0f32; 3]))])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'x'") && e.contains("[N, 2]") && e.contains("[1, 3]"),
        "{e}"
    );
    let e = ex
        .run(vec![("x".into(), t(&[2], vec![0f32; 2]))])
        .unwrap_err()
        .to_string();
    assert!(e.contains("[N, 2]") && e.contains("[2]"), "{e}");
    let e = ex
        .run(vec![("x".into(), t(&[1, 2], vec![0i64; 2]))])
        .unwrap_err();
    assert!(
        matches!(&e, ExecError::InputMismatch { name, got_dtype: DType::I64, .. } if name == "x"),
        "{e}"
    );
    // Symbolic dims accept any size.
    assert!(
        ex.run(vec![("x".into(), t(&[7, 2], vec![0f32; 14]))])
            .is_ok()
    );
}

#[test]
fn unsupported_ops_are_reported_up_front() {
    let mut g = Graph::new("g");
    let x = input(&mut g, "x", DType::F32, vec![Dim::known(1)]);
    let y = g.add_value("y").unwrap();
    let mut n = Node::imported(Some("my.domain".into()), "Frobnicate", vec![]);
    n.name = Some("frob".into());
    g.add_node(n, &[Some(x)], &[Some(y)]).unwrap();
    g.outputs.push((y, ValueInfo::default()));
    let mut m = model(g, 17);
    m.set_opset("my.domain", 3);
    let e = Executor::new(&m, ExecOptions::default()).unwrap_err();
    match &e {
        ExecError::UnsupportedOp {
            node,
            op_type,
            domain,
            opset,
            reason,
        } => {
            assert_eq!(
                (node.as_str(), op_type.as_str(), domain.as_str(), *opset),
                ("frob", "Frobnicate", "my.domain", 3)
            );
            assert!(reason.is_some());
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("my.domain::Frobnicate"), "{e}");

    // A known op kept opaque because of an unknown attribute: the reason names it.
    let mut g = Graph::new("g");
    let x = input(&mut g, "x", DType::F32, vec![Dim::known(1)]);
    let y = g.add_value("y").unwrap();
    let attrs = vec![qtool_ir::Attribute::new(
        "bogus",
        qtool_ir::AttrValue::Int(1),
    )];
    g.add_node(Node::imported(None, "Relu", attrs), &[Some(x)], &[Some(y)])
        .unwrap();
    g.outputs.push((y, ValueInfo::default()));
    let e = Executor::new(&model(g, 13), ExecOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'#0'") && e.contains("Relu") && e.contains("opset 13") && e.contains("bogus"),
        "{e}"
    );
}

#[test]
fn op_errors_carry_node_and_op() {
    let mut g = Graph::new("g");
    let x = input(&mut g, "x", DType::F32, vec![Dim::known(4)]);
    let s = g
        .add_initializer("s", TensorData::from_tensor(&v(vec![3i64])))
        .unwrap();
    let y = g.add_value("y").unwrap();
    g.add_node(
        Node::new(ops::Reshape::default(), "bad_reshape"),
        &[Some(x), Some(s)],
        &[Some(y)],
    )
    .unwrap();
    g.outputs.push((y, ValueInfo::default()));
    let ex = Executor::new(&model(g, 17), ExecOptions::default()).unwrap();
    let e = ex.run(vec![("x".into(), v(vec![0f32; 4]))]).unwrap_err();
    assert!(
        matches!(&e, ExecError::Op { node, op_type, .. } if node == "bad_reshape" && op_type == "Reshape"),
        "{e}"
    );
}

#[test]
fn initializer_inputs_are_optional_and_overridable() {
    let mut g = Graph::new("g");
    let x = input(&mut g, "x", DType::F32, vec![Dim::known(2)]);
    let b = input(&mut g, "b", DType::F32, vec![Dim::known(2)]);
    g.set_initializer(b, TensorData::from_tensor(&v(vec![1f32, 1.])));
    let y = g.add_value("y").unwrap();
    g.add_node(
        Node::new(ops::Add {}, "add"),
        &[Some(x), Some(b)],
        &[Some(y)],
    )
    .unwrap();
    g.outputs.push((y, ValueInfo::default()));
    let ex = Executor::new(&model(g, 17), ExecOptions::default()).unwrap();
    assert_eq!(ex.input_names(), vec!["x"]);
    let out = ex.run(vec![("x".into(), v(vec![1f32, 2.]))]).unwrap();
    assert_eq!(f(&out[0].1), vec![2., 3.]);
    let out = ex
        .run(vec![
            ("x".into(), v(vec![1f32, 2.])),
            ("b".into(), v(vec![10f32, 10.])),
        ])
        .unwrap();
    assert_eq!(f(&out[0].1), vec![11., 12.]);
}

#[test]
fn run_batched_stacks_samples() {
    // x[1,3] -> ReduceSum(keepdims) -> s[1,1]; also Softmax over axis 0 (sees one sample at a time).
    let mut g = Graph::new("g");
    let x = input(&mut g, "x", DType::F32, vec![Dim::known(1), Dim::known(3)]);
    let s = g.add_value("s").unwrap();
    let p = g.add_value("p").unwrap();
    g.add_node(
        Node::new(ops::ReduceSum::default(), "sum"),
        &[Some(x)],
        &[Some(s)],
    )
    .unwrap();
    g.add_node(
        Node::new(ops::Softmax { axis: Some(0) }, "sm"),
        &[Some(x)],
        &[Some(p)],
    )
    .unwrap();
    g.outputs.push((s, ValueInfo::default()));
    g.outputs.push((p, ValueInfo::default()));
    let ex = Executor::new(&model(g, 13), ExecOptions::default()).unwrap();
    let xs = t(&[3, 3], (0..9).map(|i| i as f32).collect());
    // A plain run rejects the batch.
    assert!(ex.run(vec![("x".into(), xs.clone())]).is_err());
    let out = ex.run_batched(vec![("x".into(), xs)]).unwrap();
    assert_eq!(out[0].1.shape(), &[3, 1]);
    assert_eq!(f(&out[0].1), vec![3., 12., 21.]);
    assert_eq!(out[1].1.shape(), &[3, 3]);
    assert_eq!(f(&out[1].1), vec![1.; 9]);
    // N = 1 is a plain run.
    let out = ex
        .run_batched(vec![("x".into(), t(&[1, 3], vec![1f32, 1., 1.]))])
        .unwrap();
    assert_eq!(f(&out[0].1), vec![3.]);
}

#[test]
fn executor_is_reusable_and_shareable() {
    let ex = Executor::new(&small(), ExecOptions { threads: Some(2) }).unwrap();
    std::thread::scope(|s| {
        for i in 0..3 {
            let ex = &ex;
            s.spawn(move || {
                let out = ex
                    .run(vec![("x".into(), t(&[1, 2], vec![i as f32, 0.]))])
                    .unwrap();
                assert_eq!(f(&out[0].1), vec![(i as f32 + 1.) * 10., 20.]);
            });
        }
    });
}
