//! The executor packs constant int8 weights once at build time ("prepared state"), and never packs
//! a weight that a caller can override (a graph input with an initializer default).

use qtool_exec::{ExecOptions, Executor};
use qtool_ir::{
    Dim, Graph, Model, Node, OpsetId, TensorData, TensorType, Type, TypeKind, ValueInfo, ops,
};
use qtool_tensor::{DType, Tensor};

fn input(g: &mut Graph, name: &str, dtype: DType, dims: &[i64]) -> qtool_ir::ValueId {
    let v = g.value_or_add(name);
    let ty = Type {
        kind: TypeKind::Tensor(TensorType {
            elem: Some(dtype),
            shape: Some(dims.iter().map(|&d| Dim::known(d)).collect()),
        }),
        denotation: None,
    };
    g.inputs.push((v, ValueInfo::of_type(ty)));
    v
}

/// x[2,3] (u8) MatMulInteger w[3,2] (i8 initializer); `w_is_input` also lists w as a graph input.
fn model(w_is_input: bool) -> Model {
    let mut g = Graph::new("g");
    let x = input(&mut g, "x", DType::U8, &[2, 3]);
    let w = g
        .add_initializer(
            "w",
            TensorData::from_tensor(
                &Tensor::from_vec(&[3, 2], vec![1i8, -1, 2, 0, -3, 4]).unwrap(),
            ),
        )
        .unwrap();
    if w_is_input {
        input(&mut g, "w", DType::I8, &[3, 2]);
    }
    let y = g.add_value("y").unwrap();
    g.add_node(
        Node::new(ops::MatMulInteger {}, "mm"),
        &[Some(x), Some(w)],
        &[Some(y)],
    )
    .unwrap();
    g.outputs.push((y, ValueInfo::default()));
    Model {
        graph: g,
        opset_import: vec![OpsetId {
            domain: None,
            version: Some(13),
        }],
        ..Default::default()
    }
}

#[test]
fn constant_weights_are_packed_once_and_used() {
    let ex = Executor::new(&model(false), ExecOptions { threads: Some(1) }).unwrap();
    assert_eq!(ex.prepared_nodes(), vec!["mm"]);
    let x = Tensor::from_vec(&[2, 3], vec![1u8, 2, 3, 4, 5, 6]).unwrap();
    let y = ex.run(vec![("x".into(), x.clone())]).unwrap();
    // [1 2 3] x [[1 -1] [2 0] [-3 4]] = [-4 11]; [4 5 6] -> [-4 20]
    assert_eq!(y[0].1.to_vec::<i32>().unwrap(), vec![-4, 11, -4, 20]);
    // Several runs reuse the same packed weight.
    let y2 = ex.run(vec![("x".into(), x)]).unwrap();
    assert_eq!(y, y2);
}

#[test]
fn overridable_weights_are_not_packed() {
    let ex = Executor::new(&model(true), ExecOptions { threads: Some(1) }).unwrap();
    assert!(ex.prepared_nodes().is_empty());
    let x = Tensor::from_vec(&[2, 3], vec![1u8, 2, 3, 4, 5, 6]).unwrap();
    let w = Tensor::from_vec(&[3, 2], vec![1i8, 0, 0, 1, 0, 0]).unwrap();
    let y = ex.run(vec![("x".into(), x), ("w".into(), w)]).unwrap();
    assert_eq!(y[0].1.to_vec::<i32>().unwrap(), vec![1, 2, 4, 5]);
}
