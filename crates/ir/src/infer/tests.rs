//! Tests of shape inference: small graphs per op family built with the IR API.

use super::*;
use crate::attr::TensorData;
use crate::ops;
use crate::types::{Dim, TensorType, Type, TypeKind, ValueInfo};
use qtool_tensor::Tensor;

struct B {
    m: Model,
}

fn tensor_type(dt: DType, dims: &str) -> Type {
    let shape = dims
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|d| match d {
            "?" => Dim {
                value: DimValue::Unknown,
                denotation: None,
            },
            _ => match d.parse::<i64>() {
                Ok(v) => Dim::known(v),
                Err(_) => Dim::param(d),
            },
        })
        .collect();
    Type {
        kind: TypeKind::Tensor(TensorType {
            elem: Some(dt),
            shape: Some(shape),
        }),
        denotation: None,
    }
}

impl B {
    fn new(opset: i64) -> B {
        let mut m = Model {
            graph: Graph::new("g"),
            ..Default::default()
        };
        m.set_opset("", opset);
        m.set_opset("com.microsoft", 1);
        B { m }
    }
    fn g(&mut self) -> &mut Graph {
        &mut self.m.graph
    }
    /// A graph input; `dims` like `"N,3,224,224"` (numbers known, names symbolic, `?` unknown).
    fn input(&mut self, name: &str, dt: DType, dims: &str) -> &mut Self {
        let v = self.g().add_value(name).unwrap();
        self.g()
            .inputs
            .push((v, ValueInfo::of_type(tensor_type(dt, dims))));
        self
    }
    fn init(&mut self, name: &str, t: Tensor) -> &mut Self {
        let v = self.g().value_or_add(name);
        self.g().set_initializer(v, TensorData::from_tensor(&t));
        self
    }
    fn ints(&mut self, name: &str, v: &[i64]) -> &mut Self {
        self.init(name, Tensor::from_vec(&[v.len()], v.to_vec()).unwrap())
    }
    fn floats(&mut self, name: &str, v: &[f32]) -> &mut Self {
        self.init(name, Tensor::from_vec(&[v.len()], v.to_vec()).unwrap())
    }
    fn zeros(&mut self, name: &str, dt: DType, shape: &[usize]) -> &mut Self {
        self.init(name, Tensor::zeros(dt, shape).unwrap())
    }
    /// A node; `""` marks an absent input or output.
    fn node(
        &mut self,
        op: impl Into<Op>,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
    ) -> &mut Self {
        let g = self.g();
        let ins: Vec<Option<ValueId>> = inputs
            .iter()
            .map(|n| {
                if n.is_empty() {
                    None
                } else {
                    Some(g.value_or_add(n))
                }
            })
            .collect();
        let outs: Vec<Option<ValueId>> = outputs
            .iter()
            .map(|n| {
                if n.is_empty() {
                    None
                } else {
                    Some(g.value_or_add(n))
                }
            })
            .collect();
        g.add_node(Node::new(op, name), &ins, &outs).unwrap();
        self
    }
    fn output(&mut self, name: &str) -> &mut Self {
        let v = self.g().value_or_add(name);
        self.g().outputs.push((v, ValueInfo::default()));
        self
    }
    fn run(&mut self, shapes: &[(&str, &[usize])]) -> InferReport {
        self.try_run(shapes).unwrap_or_else(|e| panic!("{e}"))
    }
    fn try_run(&mut self, shapes: &[(&str, &[usize])]) -> Result<InferReport, InferError> {
        let s: Vec<(String, Vec<usize>)> = shapes
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_vec()))
            .collect();
        infer_shapes(&mut self.m, &s)
    }
    fn fact(&self, name: &str) -> Fact {
        self.m
            .graph
            .value(self.m.graph.find_value(name).unwrap())
            .fact
            .clone()
    }
    fn shape(&self, name: &str) -> Vec<usize> {
        let f = self.fact(name);
        f.static_shape()
            .unwrap_or_else(|| panic!("'{name}' is not static: {f:?}"))
    }
    fn dtype(&self, name: &str) -> DType {
        self.fact(name)
            .dtype
            .unwrap_or_else(|| panic!("'{name}' has no dtype"))
    }
    fn dims(&self, name: &str) -> String {
        dims::fmt_dims(self.fact(name).shape.as_deref().unwrap())
    }
}

fn err_of(r: Result<InferReport, InferError>) -> String {
    r.expect_err("expected an inference error").to_string()
}

// ------------------------------------------------------------------ element-wise

#[test]
fn elementwise_broadcast_compare_where_cast() {
    let mut b = B::new(17);
    b.input("x", DType::F32, "2,3,1")
        .input("y", DType::F32, "4");
    b.node(ops::Add {}, "add", &["x", "y"], &["s"])
        .node(ops::Relu {}, "relu", &["s"], &["r"])
        .node(ops::Less {}, "less", &["r", "y"], &["c"])
        .node(ops::Where {}, "where", &["c", "x", "r"], &["w"])
        .node(
            ops::Cast {
                to: Some(DType::F16 as i64),
                ..Default::default()
            },
            "cast",
            &["w"],
            &["h"],
        )
        .node(ops::Max {}, "max", &["x", "y", "s"], &["m"])
        .node(ops::IsNaN {}, "isnan", &["m"], &["n"]);
    let rep = b.run(&[]);
    assert!(rep.is_complete(), "{rep}");
    assert_eq!(b.shape("s"), vec![2, 3, 4]);
    assert_eq!(b.dtype("c"), DType::Bool);
    assert_eq!(b.shape("w"), vec![2, 3, 4]);
    assert_eq!((b.dtype("h"), b.shape("h")), (DType::F16, vec![2, 3, 4]));
    assert_eq!(b.shape("m"), vec![2, 3, 4]);
    assert_eq!(b.dtype("n"), DType::Bool);
}

#[test]
fn incompatible_broadcast_names_the_node() {
    let mut b = B::new(17);
    b.input("x", DType::F32, "2,3").input("y", DType::F32, "4");
    b.node(ops::Mul {}, "the_mul", &["x", "y"], &["z"]);
    let e = err_of(b.try_run(&[]));
    assert!(
        e.contains("the_mul") && e.contains("Mul") && e.contains("broadcast"),
        "{e}"
    );
}

#[test]
fn symbolic_dims_propagate_through_broadcast() {
    let mut b = B::new(17);
    b.input("x", DType::F32, "N,1,8")
        .input("y", DType::F32, "5,1");
    b.node(ops::Sub {}, "sub", &["x", "y"], &["z"]);
    let rep = b.run(&[]);
    assert_eq!(b.dims("z"), "[N,5,8]");
    assert!(rep.unresolved.iter().any(|u| u.value == "z"));
    b.run(&[("x", &[3, 1, 8])]);
    assert_eq!(b.shape("z"), vec![3, 5, 8]);
}

// ------------------------------------------------------------------ conv and pooling

#[test]
fn conv_same_upper_stride_2_and_group() {
    let mut b = B::new(13);
    b.input("x", DType::F32, "N,3,H,W")
        .zeros("w", DType::F32, &[32, 3, 7, 7])
        .zeros("bias", DType::F32, &[32]);
    b.zeros("dw", DType::F32, &[32, 1, 3, 3]);
    b.node(
        ops::Conv {
            auto_pad: Some("SAME_UPPER".into()),
            strides: Some(vec![2, 2]),
            ..Default::default()
        },
        "conv1",
        &["x", "w", "bias"],
        &["c1"],
    );
    b.node(
        ops::Conv {
            group: Some(32),
            pads: Some(vec![1, 1, 1, 1]),
            dilations: Some(vec![2, 2]),
            ..Default::default()
        },
        "dw",
        &["c1", "dw"],
        &["c2"],
    );
    b.node(
        ops::Conv {
            auto_pad: Some("VALID".into()),
            kernel_shape: Some(vec![3, 3]),
            strides: Some(vec![2, 2]),
            group: Some(32),
            ..Default::default()
        },
        "valid",
        &["c1", "dw"],
        &["c3"],
    );
    b.run(&[("x", &[1, 3, 224, 224])]);
    assert_eq!(b.shape("c1"), vec![1, 32, 112, 112]);
    // dilation 2: effective kernel 5, pads 1+1: 112 + 2 - 5 + 1 = 110
    assert_eq!(b.shape("c2"), vec![1, 32, 110, 110]);
    assert_eq!(b.shape("c3"), vec![1, 32, 55, 55]);
    // Odd input with SAME_UPPER: ceil(225 / 2) = 113.
    b.run(&[("x", &[2, 3, 225, 225])]);
    assert_eq!(b.shape("c1"), vec![2, 32, 113, 113]);
}

#[test]
fn conv_channel_mismatch_is_an_error_naming_the_node() {
    let mut b = B::new(13);
    b.input("x", DType::F32, "1,4,8,8")
        .zeros("w", DType::F32, &[8, 3, 3, 3]);
    b.node(ops::Conv::default(), "bad_conv", &["x", "w"], &["y"]);
    let e = err_of(b.try_run(&[]));
    assert!(
        e.contains("'bad_conv'") && e.contains("Conv") && e.contains("channel"),
        "{e}"
    );
}

#[test]
fn conv_transpose_output_size() {
    let mut b = B::new(13);
    b.input("x", DType::F32, "1,16,10,10")
        .zeros("w", DType::F32, &[16, 8, 4, 4]);
    b.node(
        ops::ConvTranspose {
            strides: Some(vec![2, 2]),
            pads: Some(vec![1, 1, 1, 1]),
            ..Default::default()
        },
        "up",
        &["x", "w"],
        &["y"],
    );
    b.node(
        ops::ConvTranspose {
            strides: Some(vec![2, 2]),
            output_padding: Some(vec![1, 1]),
            group: Some(2),
            ..Default::default()
        },
        "up2",
        &["x", "zeros16"],
        &["y2"],
    );
    b.zeros("zeros16", DType::F32, &[16, 4, 3, 3]);
    b.node(
        ops::ConvTranspose {
            auto_pad: Some("SAME_UPPER".into()),
            strides: Some(vec![2, 2]),
            ..Default::default()
        },
        "up3",
        &["x", "w"],
        &["y3"],
    );
    b.node(
        ops::ConvTranspose {
            output_shape: Some(vec![21, 21]),
            strides: Some(vec![2, 2]),
            ..Default::default()
        },
        "up4",
        &["x", "w"],
        &["y4"],
    );
    b.run(&[]);
    // 2 * 9 + 4 - 2 = 20
    assert_eq!(b.shape("y"), vec![1, 8, 20, 20]);
    // 2 * 9 + 1 + 3 = 22, channels 4 * 2
    assert_eq!(b.shape("y2"), vec![1, 8, 22, 22]);
    assert_eq!(b.shape("y3"), vec![1, 8, 20, 20]);
    assert_eq!(b.shape("y4"), vec![1, 8, 21, 21]);
}

#[test]
fn pooling_ceil_mode_indices_and_global() {
    let mut b = B::new(12);
    b.input("x", DType::F32, "1,64,112,112");
    let mp = |ceil| ops::MaxPool {
        kernel_shape: Some(vec![3, 3]),
        strides: Some(vec![2, 2]),
        ceil_mode: Some(ceil),
        ..Default::default()
    };
    b.node(mp(1), "pool_ceil", &["x"], &["p", "idx"]);
    b.node(mp(0), "pool_floor", &["x"], &["q"]);
    b.node(
        ops::AveragePool {
            kernel_shape: Some(vec![2, 2]),
            strides: Some(vec![2, 2]),
            pads: Some(vec![1, 1, 1, 1]),
            ceil_mode: Some(1),
            ..Default::default()
        },
        "avg",
        &["p"],
        &["a"],
    );
    b.node(ops::GlobalAveragePool {}, "gap", &["a"], &["g"]);
    b.run(&[]);
    assert_eq!(b.shape("p"), vec![1, 64, 56, 56]);
    assert_eq!(
        (b.dtype("idx"), b.shape("idx")),
        (DType::I64, vec![1, 64, 56, 56])
    );
    assert_eq!(b.shape("q"), vec![1, 64, 55, 55]);
    // 56 + 2 - 2 = 56 → ceil(56/2)+1 = 29, but the last window would start at 56 >= 56 + 1? no → 29
    assert_eq!(b.shape("a"), vec![1, 64, 29, 29]);
    assert_eq!(b.shape("g"), vec![1, 64, 1, 1]);
}

#[test]
fn ceil_mode_drops_a_window_starting_in_the_end_padding() {
    let mut b = B::new(12);
    b.input("x", DType::F32, "1,1,5,5");
    b.node(
        ops::MaxPool {
            kernel_shape: Some(vec![2, 2]),
            strides: Some(vec![2, 2]),
            pads: Some(vec![0, 0, 1, 1]),
            ceil_mode: Some(1),
            ..Default::default()
        },
        "pool",
        &["x"],
        &["y"],
    );
    b.run(&[]);
    // total = 5 + 1 - 2 = 4: ceil(4/2)+1 = 3; the third window starts at 4 < 5: kept.
    assert_eq!(b.shape("y"), vec![1, 1, 3, 3]);
}

// ------------------------------------------------------------------ shape subgraphs

fn shape_subgraph(opset: i64) -> B {
    let mut b = B::new(opset);
    b.input("x", DType::F32, "N,3,4,5");
    b.ints("minus1", &[-1]).ints("ax0", &[0]);
    // A 0-d index.
    b.init("i0", Tensor::scalar(0i64));
    b.node(ops::Shape::default(), "shape", &["x"], &["s"]).node(
        ops::Gather { axis: Some(0) },
        "gather",
        &["s", "i0"],
        &["n"],
    );
    if opset >= 13 {
        b.node(ops::Unsqueeze::default(), "unsq", &["n", "ax0"], &["n1"]);
    } else {
        b.node(
            ops::Unsqueeze {
                axes: Some(vec![0]),
            },
            "unsq",
            &["n"],
            &["n1"],
        );
    }
    b.node(
        ops::Concat { axis: Some(0) },
        "concat",
        &["n1", "minus1"],
        &["target"],
    )
    .node(ops::Reshape::default(), "reshape", &["x", "target"], &["y"])
    .output("y");
    b
}

#[test]
fn shape_subgraph_gives_a_static_reshape() {
    for opset in [11, 13, 17] {
        let mut b = shape_subgraph(opset);
        let rep = b.run(&[("x", &[2, 3, 4, 5])]);
        assert!(rep.is_complete(), "opset {opset}: {rep}");
        assert_eq!(b.shape("y"), vec![2, 60], "opset {opset}");
        assert_eq!(b.shape("target"), vec![2]);
        assert_eq!(b.dtype("target"), DType::I64);
        assert!(rep.known_values >= 4);
    }
}

#[test]
fn shape_subgraph_keeps_symbolic_dims() {
    let mut b = shape_subgraph(13);
    let rep = b.run(&[]);
    assert_eq!(b.dims("y"), "[N,60]");
    let u: Vec<&str> = rep.unresolved.iter().map(|u| u.value.as_str()).collect();
    assert!(u.contains(&"x") && u.contains(&"y"), "{rep}");
}

#[test]
fn shape_arithmetic_folds() {
    let mut b = B::new(17);
    b.input("x", DType::F32, "1,3,32,48");
    b.ints("two", &[2]).ints("s23", &[2]).ints("e4", &[4]);
    b.node(
        ops::Shape {
            start: Some(2),
            ..Default::default()
        },
        "hw_shape",
        &["x"],
        &["hw"],
    )
    .node(ops::Mul {}, "mul", &["hw", "two"], &["hw2"])
    .node(
        ops::Cast {
            to: Some(DType::F32 as i64),
            ..Default::default()
        },
        "castf",
        &["hw2"],
        &["hwf"],
    )
    .node(ops::Div {}, "div", &["hwf", "fl2"], &["half"])
    .node(
        ops::Cast {
            to: Some(DType::I64 as i64),
            ..Default::default()
        },
        "casti",
        &["half"],
        &["hwi"],
    )
    .node(ops::Shape::default(), "full", &["x"], &["sh"])
    .node(
        ops::Slice::default(),
        "slice",
        &["sh", "s23", "e4"],
        &["hw_again"],
    )
    .node(ops::Equal {}, "eq", &["hwi", "hw_again"], &["same"])
    .node(ops::Where {}, "where", &["same", "hw2", "hwi"], &["chosen"])
    .node(
        ops::ConstantOfShape::default(),
        "cos",
        &["chosen"],
        &["zeros"],
    )
    .node(
        ops::ReduceProd {
            keepdims: Some(0),
            ..Default::default()
        },
        "numel",
        &["sh"],
        &["n"],
    )
    .node(ops::Range {}, "range", &["r0", "n", "r1"], &["ar"]);
    b.floats("fl2", &[2.0]);
    b.init("r0", Tensor::scalar(0i64))
        .init("r1", Tensor::scalar(8i64));
    let rep = b.run(&[]);
    assert!(rep.is_complete(), "{rep}");
    assert_eq!(b.shape("zeros"), vec![64, 96]);
    assert_eq!(b.dtype("zeros"), DType::F32);
    assert_eq!(b.shape("n"), Vec::<usize>::new());
    // Range(0, 4608, 8) = 576 elements.
    assert_eq!(b.shape("ar"), vec![576]);
}

#[test]
fn reshape_element_count_mismatch_is_an_error() {
    let mut b = B::new(13);
    b.input("x", DType::F32, "2,3,4").ints("t", &[5, 5]);
    b.node(ops::Reshape::default(), "bad_reshape", &["x", "t"], &["y"]);
    let e = err_of(b.try_run(&[]));
    assert!(
        e.contains("bad_reshape") && e.contains("Reshape") && e.contains("24"),
        "{e}"
    );
    let mut b = B::new(13);
    b.input("x", DType::F32, "2,3,4").ints("t", &[5, -1]);
    b.node(ops::Reshape::default(), "bad_minus1", &["x", "t"], &["y"]);
    assert!(err_of(b.try_run(&[])).contains("bad_minus1"));
}

#[test]
fn reshape_zero_copies_and_allowzero() {
    let mut b = B::new(14);
    b.input("x", DType::F32, "B,6,4")
        .ints("t", &[0, 0, 2, -1])
        .ints("t0", &[0, 24]);
    b.node(ops::Reshape::default(), "r1", &["x", "t"], &["y"]);
    b.run(&[]);
    assert_eq!(b.dims("y"), "[B,6,2,2]");
    b.run(&[("x", &[3, 6, 4])]);
    assert_eq!(b.shape("y"), vec![3, 6, 2, 2]);
}

#[test]
fn expand_tile_pad_transpose_flatten() {
    let mut b = B::new(13);
    b.input("x", DType::F32, "3,1,5");
    b.ints("eshape", &[2, 1, 4, 1])
        .ints("reps", &[2, 3, 1])
        .ints("pads", &[0, 1, 2, 0, 1, 2]);
    b.node(ops::Expand {}, "expand", &["x", "eshape"], &["e"])
        .node(ops::Tile {}, "tile", &["x", "reps"], &["t"])
        .node(ops::Pad::default(), "pad", &["x", "pads"], &["p"])
        .node(ops::Transpose::default(), "tr", &["x"], &["tr"])
        .node(
            ops::Transpose {
                perm: Some(vec![0, 2, 1]),
            },
            "tr2",
            &["x"],
            &["tr2"],
        )
        .node(ops::Flatten::default(), "fl", &["e"], &["f"])
        .node(ops::Flatten { axis: Some(-1) }, "fl2", &["e"], &["f2"]);
    b.run(&[]);
    assert_eq!(b.shape("e"), vec![2, 3, 4, 5]);
    assert_eq!(b.shape("t"), vec![6, 3, 5]);
    assert_eq!(b.shape("p"), vec![3, 3, 9]);
    assert_eq!(b.shape("tr"), vec![5, 1, 3]);
    assert_eq!(b.shape("tr2"), vec![3, 5, 1]);
    assert_eq!(b.shape("f"), vec![2, 60]);
    assert_eq!(b.shape("f2"), vec![24, 5]);
}

#[test]
fn pad_attribute_form_before_opset_11() {
    let mut b = B::new(9);
    b.input("x", DType::F32, "1,3,8,8");
    b.node(
        ops::Pad {
            pads: Some(vec![0, 0, 1, 2, 0, 0, 1, 2]),
            ..Default::default()
        },
        "pad",
        &["x"],
        &["y"],
    );
    b.run(&[]);
    assert_eq!(b.shape("y"), vec![1, 3, 10, 12]);
}

#[test]
fn slice_attribute_and_input_forms() {
    let mut b = B::new(9);
    b.input("x", DType::F32, "10,20");
    b.node(
        ops::Slice {
            starts: Some(vec![1, 0]),
            ends: Some(vec![1000, -5]),
            axes: None,
        },
        "sl",
        &["x"],
        &["y"],
    );
    b.run(&[]);
    assert_eq!(b.shape("y"), vec![9, 15]);

    let mut b = B::new(13);
    b.input("x", DType::F32, "10,20");
    b.ints("st", &[-1, 2])
        .ints("en", &[i64::MIN, 100])
        .ints("ax", &[0, -1])
        .ints("sp", &[-2, 3]);
    b.node(
        ops::Slice::default(),
        "sl",
        &["x", "st", "en", "ax", "sp"],
        &["y"],
    );
    b.run(&[]);
    // axis 0: from 9 down to the start by 2 → 5; axis 1: 2..20 by 3 → 6
    assert_eq!(b.shape("y"), vec![5, 6]);
}

#[test]
fn squeeze_unsqueeze_both_forms() {
    let mut b = B::new(11);
    b.input("x", DType::F32, "1,3,1,5");
    b.node(
        ops::Squeeze {
            axes: Some(vec![0, -2]),
        },
        "sq",
        &["x"],
        &["a"],
    )
    .node(ops::Squeeze::default(), "sq_all", &["x"], &["b"])
    .node(
        ops::Unsqueeze {
            axes: Some(vec![0, 3]),
        },
        "unsq",
        &["a"],
        &["c"],
    );
    b.run(&[]);
    assert_eq!(b.shape("a"), vec![3, 5]);
    assert_eq!(b.shape("b"), vec![3, 5]);
    assert_eq!(b.shape("c"), vec![1, 3, 5, 1]);

    let mut b = B::new(13);
    b.input("x", DType::F32, "1,3,1,5")
        .ints("ax", &[2])
        .ints("uax", &[-1]);
    b.node(ops::Squeeze::default(), "sq", &["x", "ax"], &["a"])
        .node(ops::Unsqueeze::default(), "unsq", &["a", "uax"], &["c"]);
    b.run(&[]);
    assert_eq!(b.shape("a"), vec![1, 3, 5]);
    assert_eq!(b.shape("c"), vec![1, 3, 5, 1]);

    let mut b = B::new(13);
    b.input("x", DType::F32, "2,3").ints("ax", &[1]);
    b.node(ops::Squeeze::default(), "bad_squeeze", &["x", "ax"], &["a"]);
    assert!(err_of(b.try_run(&[])).contains("bad_squeeze"));
}

#[test]
fn concat_negative_axis_and_mismatch() {
    let mut b = B::new(13);
    b.input("a", DType::F32, "2,3,4")
        .input("b", DType::F32, "2,3,6");
    b.node(ops::Concat { axis: Some(-1) }, "cat", &["a", "b"], &["c"]);
    b.run(&[]);
    assert_eq!(b.shape("c"), vec![2, 3, 10]);
    let mut b = B::new(13);
    b.input("a", DType::F32, "2,3,4")
        .input("b", DType::F32, "2,5,6");
    b.node(
        ops::Concat { axis: Some(2) },
        "bad_cat",
        &["a", "b"],
        &["c"],
    );
    assert!(err_of(b.try_run(&[])).contains("bad_cat"));
}

#[test]
fn split_forms() {
    // num_outputs (opset 18): 10 → 4, 4, 2
    let mut b = B::new(18);
    b.input("x", DType::F32, "2,10");
    b.node(
        ops::Split {
            axis: Some(1),
            num_outputs: Some(3),
            ..Default::default()
        },
        "split",
        &["x"],
        &["a", "b", "c"],
    );
    b.run(&[]);
    assert_eq!(
        (b.shape("a"), b.shape("b"), b.shape("c")),
        (vec![2, 4], vec![2, 4], vec![2, 2])
    );
    // split input (13+)
    let mut b = B::new(13);
    b.input("x", DType::F32, "2,10").ints("sp", &[3, 7]);
    b.node(
        ops::Split {
            axis: Some(-1),
            ..Default::default()
        },
        "split",
        &["x", "sp"],
        &["a", "b"],
    );
    b.run(&[]);
    assert_eq!((b.shape("a"), b.shape("b")), (vec![2, 3], vec![2, 7]));
    // split attribute (< 13) and equal split
    let mut b = B::new(11);
    b.input("x", DType::F32, "6,4");
    b.node(
        ops::Split {
            split: Some(vec![1, 5]),
            ..Default::default()
        },
        "s1",
        &["x"],
        &["a", "b"],
    );
    b.node(ops::Split::default(), "s2", &["x"], &["c", "d", "e"]);
    b.run(&[]);
    assert_eq!(
        (b.shape("a"), b.shape("b"), b.shape("e")),
        (vec![1, 4], vec![5, 4], vec![2, 4])
    );
    // bad sums
    let mut b = B::new(11);
    b.input("x", DType::F32, "6,4");
    b.node(
        ops::Split {
            split: Some(vec![1, 4]),
            ..Default::default()
        },
        "bad_split",
        &["x"],
        &["a", "b"],
    );
    assert!(err_of(b.try_run(&[])).contains("bad_split"));
}

#[test]
fn constants_of_every_form() {
    let mut b = B::new(13);
    b.node(
        ops::Constant {
            value_ints: Some(vec![1, 2, 3]),
            ..Default::default()
        },
        "c1",
        &[],
        &["a"],
    )
    .node(
        ops::Constant {
            value_float: Some(1.5),
            ..Default::default()
        },
        "c2",
        &[],
        &["f"],
    )
    .node(
        ops::Constant {
            value: Some(TensorData::from_tensor(
                &Tensor::from_vec(&[2], vec![4i64, 6]).unwrap(),
            )),
            ..Default::default()
        },
        "c3",
        &[],
        &["t"],
    )
    .node(
        ops::ConstantOfShape {
            value: Some(TensorData::from_tensor(
                &Tensor::from_vec(&[1], vec![7i32]).unwrap(),
            )),
        },
        "cos",
        &["t"],
        &["z"],
    )
    .node(ops::Size {}, "size", &["z"], &["n"]);
    let rep = b.run(&[]);
    assert!(rep.is_complete(), "{rep}");
    assert_eq!(b.shape("a"), vec![3]);
    assert_eq!((b.dtype("f"), b.shape("f")), (DType::F32, vec![]));
    assert_eq!((b.dtype("z"), b.shape("z")), (DType::I32, vec![4, 6]));
    assert_eq!(b.dtype("n"), DType::I64);
}

// ------------------------------------------------------------------ resampling

#[test]
fn resize_by_scales_and_by_sizes() {
    let mut b = B::new(13);
    b.input("x", DType::F32, "1,3,20,30");
    b.floats("scales", &[1.0, 1.0, 2.0, 0.5])
        .ints("sizes", &[1, 3, 64, 48])
        .floats("roi", &[]);
    b.node(
        ops::Resize {
            mode: Some("nearest".into()),
            ..Default::default()
        },
        "r_scales",
        &["x", "", "scales"],
        &["a"],
    )
    .node(
        ops::Resize::default(),
        "r_sizes",
        &["x", "roi", "", "sizes"],
        &["b"],
    )
    .node(
        ops::Resize::default(),
        "r_empty_scales",
        &["x", "roi", "roi", "sizes"],
        &["c"],
    );
    b.run(&[]);
    assert_eq!(b.shape("a"), vec![1, 3, 40, 15]);
    assert_eq!(b.shape("b"), vec![1, 3, 64, 48]);
    assert_eq!(b.shape("c"), vec![1, 3, 64, 48]);
}

#[test]
fn resize_axes_and_keep_aspect_ratio() {
    let mut b = B::new(18);
    b.input("x", DType::F32, "1,3,20,30")
        .ints("sizes", &[40, 40]);
    b.node(
        ops::Resize {
            axes: Some(vec![2, 3]),
            keep_aspect_ratio_policy: Some("not_larger".into()),
            ..Default::default()
        },
        "r",
        &["x", "", "", "sizes"],
        &["a"],
    );
    b.node(
        ops::Resize {
            axes: Some(vec![2, 3]),
            keep_aspect_ratio_policy: Some("not_smaller".into()),
            ..Default::default()
        },
        "r2",
        &["x", "", "", "sizes"],
        &["b"],
    );
    b.run(&[]);
    // not_larger: scale = min(2, 4/3) → 27, 40; not_smaller: scale 2 → 40, 60
    assert_eq!(b.shape("a"), vec![1, 3, 27, 40]);
    assert_eq!(b.shape("b"), vec![1, 3, 40, 60]);
}

#[test]
fn resize_opset10_and_upsample() {
    let mut b = B::new(10);
    b.input("x", DType::F32, "1,3,8,8")
        .floats("scales", &[1.0, 1.0, 2.0, 2.0]);
    b.node(ops::Resize::default(), "r", &["x", "scales"], &["a"]);
    b.node(ops::Upsample::default(), "u9", &["x", "scales"], &["b"]);
    b.run(&[]);
    assert_eq!(b.shape("a"), vec![1, 3, 16, 16]);
    assert_eq!(b.shape("b"), vec![1, 3, 16, 16]);
    let mut b = B::new(7);
    b.input("x", DType::F32, "1,3,8,8");
    b.node(
        ops::Upsample {
            scales: Some(vec![1.0, 1.0, 3.0, 3.0]),
            ..Default::default()
        },
        "u7",
        &["x"],
        &["b"],
    );
    b.run(&[]);
    assert_eq!(b.shape("b"), vec![1, 3, 24, 24]);
}

#[test]
fn depth_space() {
    let mut b = B::new(13);
    b.input("x", DType::F32, "1,16,4,6");
    b.node(
        ops::DepthToSpace {
            blocksize: Some(2),
            ..Default::default()
        },
        "d2s",
        &["x"],
        &["a"],
    )
    .node(
        ops::SpaceToDepth { blocksize: Some(2) },
        "s2d",
        &["x"],
        &["b"],
    );
    b.run(&[]);
    assert_eq!(b.shape("a"), vec![1, 4, 8, 12]);
    assert_eq!(b.shape("b"), vec![1, 64, 2, 3]);
}

// ------------------------------------------------------------------ linear algebra and norms

#[test]
fn matmul_gemm_einsum() {
    let mut b = B::new(13);
    b.input("a", DType::F32, "2,1,5,4")
        .input("b", DType::F32, "3,4,6")
        .input("v", DType::F32, "4");
    b.input("m", DType::F32, "8,16")
        .zeros("w", DType::F32, &[10, 16])
        .zeros("c", DType::F32, &[10]);
    b.node(ops::MatMul {}, "mm", &["a", "b"], &["ab"])
        .node(ops::MatMul {}, "mv", &["a", "v"], &["av"])
        .node(ops::MatMul {}, "vm", &["v", "b"], &["vb"])
        .node(
            ops::Gemm {
                trans_b: Some(1),
                ..Default::default()
            },
            "gemm",
            &["m", "w", "c"],
            &["g"],
        )
        .node(
            ops::Einsum {
                equation: Some("bij,bjk->bik".into()),
            },
            "ein",
            &["b", "bt"],
            &["e"],
        )
        .node(
            ops::Einsum {
                equation: Some("...ij,jk".into()),
            },
            "ein2",
            &["a", "k46"],
            &["e2"],
        );
    b.zeros("bt", DType::F32, &[3, 6, 2])
        .zeros("k46", DType::F32, &[4, 6]);
    b.run(&[]);
    assert_eq!(b.shape("ab"), vec![2, 3, 5, 6]);
    assert_eq!(b.shape("av"), vec![2, 1, 5]);
    assert_eq!(b.shape("vb"), vec![3, 6]);
    assert_eq!(b.shape("g"), vec![8, 10]);
    assert_eq!(b.shape("e"), vec![3, 4, 2]);
    assert_eq!(b.shape("e2"), vec![2, 1, 5, 6]);

    let mut b = B::new(13);
    b.input("m", DType::F32, "8,16")
        .zeros("w", DType::F32, &[10, 16]);
    b.node(ops::Gemm::default(), "bad_gemm", &["m", "w"], &["g"]);
    assert!(err_of(b.try_run(&[])).contains("bad_gemm"));
}

#[test]
fn normalizations() {
    let mut b = B::new(17);
    b.input("x", DType::F32, "2,8,5,5");
    for n in ["s", "bb", "mean", "var"] {
        b.zeros(n, DType::F32, &[8]);
    }
    b.node(
        ops::BatchNormalization::default(),
        "bn",
        &["x", "s", "bb", "mean", "var"],
        &["y"],
    )
    .node(
        ops::BatchNormalization {
            training_mode: Some(1),
            ..Default::default()
        },
        "bn_train",
        &["x", "s", "bb", "mean", "var"],
        &["y2", "rm", "rv"],
    )
    .node(
        ops::LayerNormalization {
            axis: Some(-2),
            ..Default::default()
        },
        "ln",
        &["x", "s5", "b5"],
        &["l", "lm", "lis"],
    )
    .node(
        ops::InstanceNormalization::default(),
        "in",
        &["x", "s", "bb"],
        &["i"],
    );
    b.zeros("s5", DType::F32, &[5, 5])
        .zeros("b5", DType::F32, &[5, 5]);
    b.run(&[]);
    assert_eq!(b.shape("y"), vec![2, 8, 5, 5]);
    assert_eq!(b.shape("rm"), vec![8]);
    assert_eq!(b.shape("lm"), vec![2, 8, 1, 1]);
    assert_eq!(b.shape("i"), vec![2, 8, 5, 5]);

    let mut b = B::new(17);
    b.input("x", DType::F32, "2,8,5,5")
        .zeros("s", DType::F32, &[4]);
    b.node(
        ops::BatchNormalization::default(),
        "bad_bn",
        &["x", "s", "s", "s", "s"],
        &["y"],
    );
    assert!(err_of(b.try_run(&[])).contains("bad_bn"));
}

// ------------------------------------------------------------------ reductions

#[test]
fn reduce_forms_argmax_topk() {
    let mut b = B::new(13);
    b.input("x", DType::F32, "2,3,4")
        .ints("axes", &[1])
        .ints("k", &[2]);
    b.node(ops::ReduceSum::default(), "rs", &["x", "axes"], &["a"])
        .node(
            ops::ReduceMean {
                axes: Some(vec![-1]),
                keepdims: Some(0),
                ..Default::default()
            },
            "rm",
            &["x"],
            &["m"],
        )
        .node(
            ops::ReduceMax {
                keepdims: Some(0),
                ..Default::default()
            },
            "rmax",
            &["x"],
            &["all"],
        )
        .node(
            ops::ArgMax {
                axis: Some(2),
                keepdims: Some(0),
                ..Default::default()
            },
            "am",
            &["x"],
            &["idx"],
        )
        .node(ops::TopK::default(), "topk", &["x", "k"], &["tv", "ti"])
        .node(ops::CumSum::default(), "cs", &["x", "axes"], &["cum"]);
    b.run(&[]);
    assert_eq!(b.shape("a"), vec![2, 1, 4]);
    assert_eq!(b.shape("m"), vec![2, 3]);
    assert_eq!(b.shape("all"), Vec::<usize>::new());
    assert_eq!((b.dtype("idx"), b.shape("idx")), (DType::I64, vec![2, 3]));
    assert_eq!(b.shape("tv"), vec![2, 3, 2]);
    assert_eq!(b.dtype("ti"), DType::I64);
    assert_eq!(b.shape("cum"), vec![2, 3, 4]);

    // ReduceSum with noop_with_empty_axes and no axes input is the identity.
    let mut b = B::new(18);
    b.input("x", DType::F32, "2,3");
    b.node(
        ops::ReduceL2 {
            noop_with_empty_axes: Some(1),
            ..Default::default()
        },
        "noop",
        &["x"],
        &["y"],
    );
    b.node(
        ops::TopK {
            k: Some(1),
            ..Default::default()
        },
        "topk1",
        &["x"],
        &["tv", "ti"],
    );
    b.run(&[]);
    assert_eq!(b.shape("y"), vec![2, 3]);
    assert_eq!(b.shape("tv"), vec![2, 1]);
}

// ------------------------------------------------------------------ gather and friends

#[test]
fn gathers_nonzero_onehot() {
    let mut b = B::new(13);
    b.input("x", DType::F32, "5,6,7")
        .input("ii", DType::I64, "2,3")
        .input("ge", DType::I64, "5,6,2")
        .input("nd", DType::I64, "4,2");
    b.node(ops::Gather { axis: Some(1) }, "g", &["x", "ii"], &["a"])
        .node(ops::GatherElements::default(), "ge", &["x", "ge"], &["b"])
        .node(ops::GatherND::default(), "gnd", &["x", "nd"], &["c"])
        .node(ops::NonZero {}, "nz", &["x"], &["nzv"])
        .node(
            ops::OneHot::default(),
            "oh",
            &["ii", "depth", "vals"],
            &["oh"],
        )
        .node(ops::ScatterND::default(), "snd", &["x", "nd", "c"], &["s"]);
    b.init("depth", Tensor::scalar(10i64))
        .floats("vals", &[0.0, 1.0]);
    let rep = b.run(&[]);
    assert_eq!(b.shape("a"), vec![5, 2, 3, 7]);
    assert_eq!(b.shape("b"), vec![5, 6, 2]);
    assert_eq!(b.shape("c"), vec![4, 7]);
    assert_eq!(b.dims("nzv"), "[3,?]");
    assert_eq!(b.shape("oh"), vec![2, 3, 10]);
    assert_eq!(b.shape("s"), vec![5, 6, 7]);
    let u = rep
        .unresolved
        .iter()
        .find(|u| u.value == "nzv")
        .expect("NonZero output is reported");
    assert!(u.reason.contains("data"), "{}", u.reason);
}

#[test]
fn gather_index_out_of_range_is_an_error() {
    let mut b = B::new(13);
    b.input("x", DType::F32, "5,6").ints("i", &[6]);
    b.node(
        ops::Gather { axis: Some(1) },
        "bad_gather",
        &["x", "i"],
        &["y"],
    );
    assert!(err_of(b.try_run(&[])).contains("bad_gather"));
}

// ------------------------------------------------------------------ recurrent

#[test]
fn lstm_bidirectional_and_gru_layout() {
    let mut b = B::new(14);
    b.input("x", DType::F32, "T,2,8")
        .zeros("w", DType::F32, &[2, 64, 8])
        .zeros("r", DType::F32, &[2, 64, 16]);
    b.node(
        ops::Lstm {
            direction: Some("bidirectional".into()),
            hidden_size: Some(16),
            ..Default::default()
        },
        "lstm",
        &["x", "w", "r"],
        &["y", "yh", "yc"],
    );
    b.run(&[("x", &[5, 2, 8])]);
    assert_eq!(b.shape("y"), vec![5, 2, 2, 16]);
    assert_eq!(b.shape("yh"), vec![2, 2, 16]);
    assert_eq!(b.shape("yc"), vec![2, 2, 16]);

    let mut b = B::new(14);
    b.input("x", DType::F32, "3,7,8")
        .zeros("w", DType::F32, &[1, 48, 8])
        .zeros("r", DType::F32, &[1, 48, 16]);
    b.node(
        ops::Gru {
            layout: Some(1),
            ..Default::default()
        },
        "gru",
        &["x", "w", "r"],
        &["y", "yh"],
    );
    b.run(&[]);
    assert_eq!(b.shape("y"), vec![3, 7, 1, 16]);
    assert_eq!(b.shape("yh"), vec![3, 1, 16]);

    let mut b = B::new(14);
    b.input("x", DType::F32, "5,2,8")
        .zeros("w", DType::F32, &[1, 64, 8])
        .zeros("r", DType::F32, &[1, 64, 16]);
    b.node(
        ops::Lstm {
            direction: Some("bidirectional".into()),
            ..Default::default()
        },
        "bad_lstm",
        &["x", "w", "r"],
        &["y"],
    );
    assert!(err_of(b.try_run(&[])).contains("bad_lstm"));
}

// ------------------------------------------------------------------ quantization

#[test]
fn quantization_ops() {
    let mut b = B::new(13);
    b.input("x", DType::F32, "1,3,8,8");
    b.init("s", Tensor::scalar(0.1f32))
        .init("zp_i8", Tensor::scalar(0i8))
        .init("zp_u8", Tensor::scalar(0u8));
    b.zeros("wq", DType::I8, &[4, 3, 3, 3])
        .zeros("bq", DType::I32, &[4]);
    b.node(
        ops::QuantizeLinear::default(),
        "q_i8",
        &["x", "s", "zp_i8"],
        &["xq8"],
    )
    .node(
        ops::QuantizeLinear::default(),
        "q_default",
        &["x", "s"],
        &["xqu"],
    )
    .node(
        ops::DequantizeLinear::default(),
        "dq",
        &["xq8", "s", "zp_i8"],
        &["xd"],
    )
    .node(
        ops::DynamicQuantizeLinear {},
        "dql",
        &["x"],
        &["dy", "dys", "dyz"],
    )
    .node(
        ops::QLinearConv {
            pads: Some(vec![1, 1, 1, 1]),
            ..Default::default()
        },
        "qconv",
        &["xqu", "s", "zp_u8", "wq", "s", "zp_i8", "s", "zp_u8", "bq"],
        &["qc"],
    )
    .node(
        ops::ConvInteger::default(),
        "convint",
        &["xqu", "wq"],
        &["ci"],
    )
    .node(ops::MatMulInteger {}, "mmi", &["xqu", "m8"], &["mi"])
    .node(
        ops::QLinearMatMul {},
        "qmm",
        &["xqu", "s", "zp_u8", "m8", "s", "zp_i8", "s", "zp_i8"],
        &["qm"],
    )
    .node(
        ops::QLinearAdd {},
        "qadd",
        &["qc", "s", "zp_u8", "qc", "s", "zp_u8", "s", "zp_u8"],
        &["qa"],
    )
    .node(
        ops::QLinearGlobalAveragePool::default(),
        "qgap",
        &["qa", "s", "zp_u8", "s", "zp_u8"],
        &["qg"],
    )
    .node(
        ops::QLinearAveragePool {
            kernel_shape: Some(vec![2, 2]),
            strides: Some(vec![2, 2]),
            ..Default::default()
        },
        "qap",
        &["qa", "s", "zp_u8", "s", "zp_u8"],
        &["qp"],
    )
    .node(
        ops::QLinearConcat { axis: Some(1) },
        "qcat",
        &["s", "zp_u8", "qc", "s", "zp_u8", "qa", "s", "zp_u8"],
        &["qcat"],
    )
    .node(
        ops::QLinearSigmoid {},
        "qsig",
        &["qcat", "s", "zp_u8", "s", "zp_u8"],
        &["qs"],
    )
    .node(
        ops::QGemm::default(),
        "qgemm",
        &["g8", "s", "zp_u8", "g8t", "s", "zp_i8", "", "s", "zp_u8"],
        &["qgm"],
    )
    .node(
        ops::QGemm::default(),
        "qgemm_f",
        &["g8", "s", "zp_u8", "g8t", "s", "zp_i8"],
        &["qgf"],
    )
    .node(
        ops::DynamicQuantizeMatMul {},
        "dqmm",
        &["x", "m8", "s", "zp_i8"],
        &["dm"],
    )
    .node(
        ops::MatMulIntegerToFloat {},
        "mitf",
        &["xqu", "m8", "s", "s"],
        &["mf"],
    );
    b.zeros("m8", DType::I8, &[8, 5])
        .zeros("g8", DType::U8, &[4, 6])
        .zeros("g8t", DType::I8, &[6, 2]);
    let rep = b.run(&[]);
    assert!(rep.is_complete(), "{rep}");
    assert_eq!(
        (b.dtype("xq8"), b.shape("xq8")),
        (DType::I8, vec![1, 3, 8, 8])
    );
    assert_eq!(b.dtype("xqu"), DType::U8);
    assert_eq!(b.dtype("xd"), DType::F32);
    assert_eq!(
        (b.dtype("dy"), b.shape("dys"), b.dtype("dyz")),
        (DType::U8, vec![], DType::U8)
    );
    assert_eq!(
        (b.dtype("qc"), b.shape("qc")),
        (DType::U8, vec![1, 4, 8, 8])
    );
    assert_eq!(
        (b.dtype("ci"), b.shape("ci")),
        (DType::I32, vec![1, 4, 6, 6])
    );
    assert_eq!(
        (b.dtype("mi"), b.shape("mi")),
        (DType::I32, vec![1, 3, 8, 5])
    );
    assert_eq!(
        (b.dtype("qm"), b.shape("qm")),
        (DType::I8, vec![1, 3, 8, 5])
    );
    assert_eq!(b.shape("qg"), vec![1, 4, 1, 1]);
    assert_eq!(b.shape("qp"), vec![1, 4, 4, 4]);
    assert_eq!(b.shape("qcat"), vec![1, 8, 8, 8]);
    assert_eq!(b.shape("qs"), vec![1, 8, 8, 8]);
    assert_eq!((b.dtype("qgm"), b.shape("qgm")), (DType::U8, vec![4, 2]));
    assert_eq!(b.dtype("qgf"), DType::F32);
    assert_eq!(
        (b.dtype("dm"), b.shape("dm")),
        (DType::F32, vec![1, 3, 8, 5])
    );
    assert_eq!(b.dtype("mf"), DType::F32);
}

#[test]
fn quantize_output_dtype_attribute() {
    let mut b = B::new(21);
    b.input("x", DType::F32, "4")
        .init("s", Tensor::scalar(0.1f32));
    b.node(
        ops::QuantizeLinear {
            output_dtype: Some(DType::I16 as i64),
            ..Default::default()
        },
        "q",
        &["x", "s"],
        &["y"],
    );
    b.node(
        ops::DequantizeLinear {
            output_dtype: Some(DType::F16 as i64),
            ..Default::default()
        },
        "dq",
        &["y", "s"],
        &["z"],
    );
    b.run(&[]);
    assert_eq!(b.dtype("y"), DType::I16);
    assert_eq!(b.dtype("z"), DType::F16);
}

// ------------------------------------------------------------------ report, declared types, errors

#[test]
fn opaque_ops_are_reported_and_declared_types_fill_in() {
    let mut b = B::new(13);
    b.input("x", DType::F32, "1,4");
    let y = b.g().add_value("y").unwrap();
    let z = b.g().add_value("z").unwrap();
    let x = b.m.graph.find_value("x").unwrap();
    let custom = Node::imported(Some("my.domain".into()), "Custom", vec![]);
    b.g().add_node(custom, &[Some(x)], &[Some(y)]).unwrap();
    let custom2 = Node::imported(Some("my.domain".into()), "Other", vec![]);
    b.g().add_node(custom2, &[Some(x)], &[Some(z)]).unwrap();
    b.g()
        .value_info
        .push((y, ValueInfo::of_type(tensor_type(DType::F32, "1,8"))));
    b.node(ops::Relu {}, "relu", &["y"], &["ry"])
        .node(ops::Relu {}, "relu2", &["z"], &["rz"]);
    let rep = b.run(&[]);
    assert_eq!(b.shape("ry"), vec![1, 8]);
    let z_entry = rep
        .unresolved
        .iter()
        .find(|u| u.value == "z")
        .expect("z is unresolved");
    assert!(
        z_entry.reason.contains("opaque") && z_entry.reason.contains("my.domain:Other"),
        "{}",
        z_entry.reason
    );
    let rz = rep
        .unresolved
        .iter()
        .find(|u| u.value == "rz")
        .expect("rz is unresolved");
    assert!(rz.reason.contains("'z'"), "{}", rz.reason);
    assert!(!rep.is_complete());
    assert!(rep.to_string().contains("my.domain:Other"));
}

#[test]
fn input_shape_errors() {
    let mut b = B::new(13);
    b.input("x", DType::F32, "N,3").zeros("w", DType::F32, &[3]);
    b.node(ops::Relu {}, "relu", &["x"], &["y"]);
    assert_eq!(
        b.try_run(&[("nope", &[1, 3])]),
        Err(InferError::NotAnInput("nope".into()))
    );
    assert_eq!(
        b.try_run(&[("w", &[3])]),
        Err(InferError::NotAnInput("w".into()))
    );
    assert!(matches!(
        b.try_run(&[("x", &[1, 4])]),
        Err(InferError::InputMismatch { .. })
    ));
    assert!(matches!(
        b.try_run(&[("x", &[1, 3, 1])]),
        Err(InferError::InputMismatch { .. })
    ));
    b.run(&[("x", &[7, 3])]);
    assert_eq!(b.shape("y"), vec![7, 3]);
}

#[test]
fn nodes_out_of_order_are_visited_topologically() {
    let mut b = B::new(13);
    b.input("x", DType::F32, "2,3");
    b.node(ops::Relu {}, "second", &["a"], &["b"])
        .node(ops::Neg {}, "first", &["x"], &["a"]);
    b.run(&[]);
    assert_eq!(b.shape("b"), vec![2, 3]);
}

#[test]
fn declared_mismatch_is_reported_without_overrides() {
    let mut b = B::new(13);
    b.input("x", DType::F32, "2,3");
    b.node(ops::Relu {}, "relu", &["x"], &["y"]);
    let y = b.m.graph.find_value("y").unwrap();
    b.g()
        .outputs
        .push((y, ValueInfo::of_type(tensor_type(DType::F32, "2,4"))));
    let rep = b.run(&[]);
    assert_eq!(rep.mismatches.len(), 1);
    assert_eq!(b.shape("y"), vec![2, 3]);
}
