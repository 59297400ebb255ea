//! The lossless property: ModelProto -> Model -> ModelProto gives back the same message, for models
//! built to cover every attribute kind, storage form, dtype, type kind and model-level field; and
//! the structure the import builds (subgraph captures, node order, typed ops).

mod common;

use common::*;
use prost::Message;
use qtool_ir::{AttrValue, Op, Storage, TensorBytes, TypeKind};
use qtool_onnx::proto::{ModelProto, TensorProto};
use qtool_onnx::{LoadError, decode, encode, read_tensor_pb, write_tensor_pb};
use qtool_tensor::DType;

#[test]
fn rich_model_round_trips() {
    assert_lossless(&rich_model());
}

#[test]
fn rich_model_structure() {
    let m = decode(&rich_model().encode_to_vec(), None).unwrap();
    let g = &m.graph;
    assert_eq!(m.functions.len(), 1);
    assert_eq!(
        (m.functions[0].domain.as_str(), m.functions[0].name.as_str()),
        ("my.domain", "MyFn")
    );
    assert_eq!(m.functions[0].overload.as_deref(), Some("v2"));
    assert_eq!(m.training_info.len(), 1);
    assert_eq!(m.extra.len(), 2);
    assert_eq!(m.opset("ai.onnx"), Some(21));
    // Node order as written.
    let names: Vec<_> = g.nodes().map(|(_, n)| n.name.clone().unwrap()).collect();
    assert_eq!(names, ["relu", "conv", "custom", "if"]);
    // Typed ops for the op table, opaque for the custom one.
    let ops: Vec<_> = g.nodes().map(|(_, n)| n.op().clone()).collect();
    assert!(matches!(ops[0], Op::Relu(_)));
    let Op::Conv(c) = &ops[1] else {
        panic!("{:?}", ops[1])
    };
    assert_eq!(c.strides.as_deref(), Some(&[1, 1][..]));
    assert!(ops[2].is_opaque());
    assert!(ops[3].is_opaque(), "If is not in the op table");
    // Absent optional values.
    let (_, custom) = g.nodes().nth(2).unwrap();
    assert_eq!(custom.inputs().len(), 3);
    assert!(custom.inputs()[1].is_none());
    assert_eq!(custom.outputs().len(), 2);
    assert!(custom.outputs()[1].is_none());
    // The custom node's graph attribute reads `x` from the main graph.
    let implicit: Vec<_> = custom
        .implicit_inputs()
        .iter()
        .map(|v| g.value_name(*v))
        .collect();
    assert_eq!(implicit, ["x"]);
    // If captures (transitively through the Loop body) the main graph's values.
    let (_, if_node) = g.nodes().nth(3).unwrap();
    let mut implicit: Vec<_> = if_node
        .implicit_inputs()
        .iter()
        .map(|v| g.value_name(*v).to_string())
        .collect();
    implicit.sort();
    assert_eq!(implicit, ["cond0", "trip", "w", "y"]);
    let AttrValue::Graph(then_g) = &if_node.attr("then_branch").unwrap().value else {
        panic!()
    };
    for name in ["trip", "cond0", "y", "w"] {
        let v = then_g
            .find_value(name)
            .unwrap_or_else(|| panic!("{name} missing in then"));
        assert!(
            then_g.value(v).outer,
            "{name} should be outer in then_branch"
        );
    }
    assert!(!then_g.value(then_g.find_value("then_k").unwrap()).outer);
    let (_, loop_node) = then_g.nodes().next().unwrap();
    let implicit: Vec<_> = loop_node
        .implicit_inputs()
        .iter()
        .map(|v| then_g.value_name(*v))
        .collect();
    assert_eq!(implicit, ["w"]);
    let AttrValue::Graph(body) = &loop_node.attr("body").unwrap().value else {
        panic!()
    };
    assert!(body.value(body.find_value("w").unwrap()).outer);
    assert!(!body.value(body.find_value("acc").unwrap()).outer);
    then_g.validate().unwrap();
    body.validate().unwrap();
    g.validate().unwrap();
    // Attribute details.
    let a = custom.attr("zero_int").unwrap();
    assert_eq!(
        (&a.value, a.scalar_present, a.declared_type),
        (&AttrValue::Int(0), false, Some(2))
    );
    let a = custom.attr("untyped").unwrap();
    assert_eq!((&a.value, a.declared_type), (&AttrValue::Float(2.0), None));
    let a = custom.attr("ref").unwrap();
    assert_eq!(
        (&a.value, a.ref_attr_name.as_deref()),
        (&AttrValue::None, Some("outer_attr"))
    );
    // Declared types.
    let x = g.find_value("x").unwrap();
    let info = g.declared_info(x).unwrap();
    let TypeKind::Tensor(t) = &info.ty.as_ref().unwrap().kind else {
        panic!()
    };
    assert_eq!(
        t.shape.as_ref().unwrap()[0].denotation.as_deref(),
        Some("DATA_BATCH")
    );
    assert_eq!(g.value(x).fact.dtype, Some(DType::F32));
    // The initializer that is also an input.
    let x4 = g.find_value("x4").unwrap();
    assert!(g.is_graph_input(x4) && g.initializer(x4).is_some());
    let trip = g.initializer(g.find_value("trip").unwrap()).unwrap();
    assert!(trip.explicit_default_location);
    assert_eq!(trip.storage, Storage::Typed);
}

/// Elements of each dtype as (typed proto, expected raw bytes).
fn typed_case(dtype: DType) -> (TensorProto, Vec<u8>) {
    let code = dtype.code();
    let mut t = TensorProto {
        name: Some(format!("t_{}", dtype.short_name())),
        data_type: Some(code),
        ..Default::default()
    };
    let bytes: Vec<u8>;
    match dtype {
        DType::F32 => {
            let v = [
                1.5f32,
                -0.0,
                f32::from_bits(0x7fc0_1234),
                f32::NEG_INFINITY,
                f32::from_bits(1),
            ];
            t.dims = vec![5];
            t.float_data = v.to_vec();
            bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        }
        DType::Complex64 => {
            let v = [1.0f32, -2.0, -0.0, f32::from_bits(0xffc0_0001)];
            t.dims = vec![2];
            t.float_data = v.to_vec();
            bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        }
        DType::F64 => {
            let v = [
                1.5f64,
                -0.0,
                f64::from_bits(0x7ff8_0000_dead_beef),
                f64::MIN_POSITIVE,
            ];
            t.dims = vec![2, 2];
            t.double_data = v.to_vec();
            bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        }
        DType::Complex128 => {
            let v = [1.0f64, 2.0];
            t.dims = vec![1];
            t.double_data = v.to_vec();
            bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        }
        DType::I64 => {
            let v = [i64::MIN, -1, 0, i64::MAX];
            t.dims = vec![4];
            t.int64_data = v.to_vec();
            bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        }
        DType::U64 => {
            let v = [0u64, u64::MAX, 1 << 40];
            t.dims = vec![3];
            t.uint64_data = v.to_vec();
            bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        }
        DType::U32 => {
            let v = [0u64, u32::MAX as u64, 7];
            t.dims = vec![3];
            t.uint64_data = v.to_vec();
            bytes = v.iter().flat_map(|x| (*x as u32).to_le_bytes()).collect();
        }
        DType::String => {
            t.dims = vec![2];
            t.string_data = vec![b"abc".to_vec(), vec![0xff, 0]];
            bytes = Vec::new();
        }
        DType::I32 => {
            let v = [i32::MIN, -1, i32::MAX];
            t.dims = vec![3];
            t.int32_data = v.to_vec();
            bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        }
        DType::I16 => {
            let v = [i16::MIN, -1, i16::MAX];
            t.dims = vec![3];
            t.int32_data = v.iter().map(|&x| x as i32).collect();
            bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        }
        DType::I8 => {
            let v = [i8::MIN, -1, i8::MAX, 0];
            t.dims = vec![2, 2];
            t.int32_data = v.iter().map(|&x| x as i32).collect();
            bytes = v.iter().map(|x| *x as u8).collect();
        }
        DType::U16 | DType::F16 | DType::BF16 => {
            // Bit patterns, including a negative zero, a NaN with payload and an infinity.
            let v: [u16; 4] = [0x8000, 0x7e01, 0xfc00, 0x3c00];
            t.dims = vec![4];
            t.int32_data = v.iter().map(|&x| x as i32).collect();
            bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        }
        DType::U8 | DType::Bool => {
            let v: [u8; 3] = if dtype == DType::Bool {
                [1, 0, 1]
            } else {
                [0, 255, 128]
            };
            t.dims = vec![3];
            t.int32_data = v.iter().map(|&x| x as i32).collect();
            bytes = v.to_vec();
        }
        DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ | DType::F8E8M0 => {
            let v: [u8; 3] = [0x80, 0x7f, 0x01];
            t.dims = vec![3];
            t.int32_data = v.iter().map(|&x| x as i32).collect();
            bytes = v.to_vec();
        }
        DType::U4 | DType::I4 | DType::F4E2M1 => {
            // Five elements: three bytes, two per int32_data entry, the last half-filled.
            let v: [u8; 3] = [0x21, 0xf3, 0x07];
            t.dims = vec![5];
            t.int32_data = v.iter().map(|&x| x as i32).collect();
            bytes = v.to_vec();
        }
        DType::F6E2M3 | DType::F6E3M2 => {
            // Four 6-bit elements: three bytes of the bit-packed layout, one per entry.
            let v: [u8; 3] = [0xff, 0x00, 0x81];
            t.dims = vec![4];
            t.int32_data = v.iter().map(|&x| x as i32).collect();
            bytes = v.to_vec();
        }
        DType::U2 | DType::I2 => {
            // Six elements: two bytes, four per entry.
            let v: [u8; 2] = [0b11_10_01_00, 0b00_00_10_11];
            t.dims = vec![6];
            t.int32_data = v.iter().map(|&x| x as i32).collect();
            bytes = v.to_vec();
        }
    }
    (t, bytes)
}

fn model_with_initializers(inits: Vec<TensorProto>) -> ModelProto {
    let mut g = graph("g", vec![], vec![], vec![]);
    g.initializer = inits;
    model(g)
}

#[test]
fn every_dtype_typed_round_trips_bit_exactly() {
    let mut inits = Vec::new();
    for d in DType::ALL {
        let (t, bytes) = typed_case(d);
        let td = read_tensor_pb(&t.encode_to_vec()).unwrap_or_else(|e| panic!("{d}: {e}"));
        assert_eq!(td.storage, Storage::Typed, "{d}");
        match &td.data {
            TensorBytes::Raw(b) => assert_eq!(&b[..], &bytes[..], "{d}: typed -> raw bytes"),
            TensorBytes::Strings(s) => assert_eq!(s.len(), 2),
        }
        // Tensor file round trip.
        assert_eq!(
            write_tensor_pb(&td),
            t.encode_to_vec(),
            "{d}: typed tensor re-encodes identically"
        );
        inits.push(t);
    }
    assert_lossless(&model_with_initializers(inits));
}

#[test]
fn every_dtype_raw_round_trips() {
    let mut inits = Vec::new();
    for d in DType::ALL {
        if d == DType::String {
            continue;
        }
        let (t, bytes) = typed_case(d);
        let raw = raw_tensor(
            &format!("r_{}", d.short_name()),
            d.code(),
            &t.dims,
            bytes.clone(),
        );
        let td = read_tensor_pb(&raw.encode_to_vec()).unwrap_or_else(|e| panic!("{d}: {e}"));
        assert_eq!(td.storage, Storage::Raw);
        assert_eq!(td.raw().unwrap(), &bytes[..]);
        assert_eq!(write_tensor_pb(&td), raw.encode_to_vec());
        inits.push(raw);
    }
    assert_lossless(&model_with_initializers(inits));
}

#[test]
fn empty_tensors_round_trip() {
    let inits = vec![
        TensorProto {
            name: s("e_typed"),
            data_type: Some(1),
            dims: vec![0, 3],
            ..Default::default()
        },
        raw_tensor("e_raw", 1, &[0], vec![]),
        TensorProto {
            name: s("e_str"),
            data_type: Some(8),
            dims: vec![0],
            ..Default::default()
        },
    ];
    assert_lossless(&model_with_initializers(inits));
}

#[test]
fn unsorted_graph_imports_in_written_order() {
    // `b` is consumed before it is produced.
    let g = graph(
        "g",
        vec![
            node("Relu", "second", &["a"], &["out"], vec![]),
            node("Relu", "first", &["x"], &["a"], vec![]),
        ],
        vec![vi_f32("x", &[1])],
        vec![vi_f32("out", &[1])],
    );
    let p = model(g);
    assert_lossless(&p);
    let m = decode(&p.encode_to_vec(), None).unwrap();
    let names: Vec<_> = m
        .graph
        .nodes()
        .map(|(_, n)| n.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["second", "first"]);
    assert!(m.graph.validate().is_err());
}

#[test]
fn presence_of_optional_fields_survives() {
    // Everything absent.
    let mut p = ModelProto {
        graph: Some(Default::default()),
        ..Default::default()
    };
    assert_lossless(&p);
    // Empty strings present.
    p.producer_name = s("");
    p.doc_string = s("");
    p.graph.as_mut().unwrap().name = s("");
    p.graph
        .as_mut()
        .unwrap()
        .node
        .push(qtool_onnx::proto::NodeProto {
            op_type: s("Relu"),
            name: s(""),
            domain: s(""),
            doc_string: s(""),
            input: vec!["".into()],
            output: vec!["".into(), "".into()],
            ..Default::default()
        });
    assert_lossless(&p);
}

fn err_of(p: &ModelProto) -> LoadError {
    decode(&p.encode_to_vec(), None).expect_err("expected an error")
}

#[test]
fn unknown_tensor_data_type_names_the_tensor() {
    let p = model_with_initializers(vec![raw_tensor("weird", 99, &[1], vec![0])]);
    let e = err_of(&p);
    let msg = e.to_string();
    assert!(
        matches!(e, LoadError::UnknownEnum { value: 99, .. }),
        "{e:?}"
    );
    assert!(msg.contains("'weird'") && msg.contains("99"), "{msg}");
}

#[test]
fn unknown_attribute_type_names_attribute_and_node() {
    let mut a = attr_i("alpha", 1);
    a.r#type = Some(99);
    let p = model(graph(
        "g",
        vec![node("Relu", "the_node", &["x"], &["y"], vec![a])],
        vec![],
        vec![],
    ));
    let msg = err_of(&p).to_string();
    assert!(
        msg.contains("'alpha'") && msg.contains("'the_node'") && msg.contains("99"),
        "{msg}"
    );
}

#[test]
fn unknown_elem_type_and_location_are_errors() {
    let p = model(graph(
        "g",
        vec![],
        vec![vi("x", Some(tensor_type(42, None)))],
        vec![],
    ));
    let msg = err_of(&p).to_string();
    assert!(msg.contains("'x'") && msg.contains("42"), "{msg}");
    let mut t = f32_tensor("loc", &[1], &[1.0]);
    t.data_location = Some(5);
    let msg = err_of(&model_with_initializers(vec![t])).to_string();
    assert!(msg.contains("'loc'") && msg.contains('5'), "{msg}");
}

#[test]
fn inconsistent_tensors_are_errors() {
    let cases = vec![
        (
            raw_tensor("short", 1, &[2], vec![0; 7]),
            "raw_data has 7 bytes",
        ),
        (f32_tensor("count", &[3], &[1.0]), "float_data has 1 values"),
        (
            TensorProto {
                int32_data: vec![300],
                raw_data: None,
                ..raw_tensor("range", 2, &[1], vec![])
            },
            "out of range",
        ),
        (
            TensorProto {
                int64_data: vec![1],
                ..f32_tensor("mixed", &[1], &[])
            },
            "int64_data holds data",
        ),
        (
            TensorProto {
                float_data: vec![1.0],
                ..raw_tensor("both", 1, &[1], 1f32.to_le_bytes().to_vec())
            },
            "both raw_data",
        ),
        (raw_tensor("neg", 1, &[-1], vec![]), "negative dimension"),
        (
            raw_tensor("huge", 1, &[i64::MAX, i64::MAX], vec![]),
            "overflow",
        ),
        (
            TensorProto {
                name: s("nodt"),
                ..Default::default()
            },
            "data_type is missing",
        ),
        (
            raw_tensor("strraw", 8, &[1], vec![1]),
            "cannot use raw_data",
        ),
    ];
    for (t, want) in cases {
        let name = t.name.clone().unwrap();
        let msg = err_of(&model_with_initializers(vec![t])).to_string();
        assert!(
            msg.contains(want) && msg.contains(&format!("'{name}'")),
            "{name}: {msg}"
        );
    }
}

#[test]
fn structural_errors() {
    let no_graph = ModelProto::default();
    assert!(matches!(err_of(&no_graph), LoadError::MissingGraph));
    let dup = model(graph(
        "g",
        vec![
            node("Relu", "n1", &["x"], &["y"], vec![]),
            node("Relu", "n2", &["x"], &["y"], vec![]),
        ],
        vec![vi_f32("x", &[1])],
        vec![],
    ));
    let e = err_of(&dup);
    assert!(matches!(e, LoadError::Graph { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("'n1'") && msg.contains("'n2'") && msg.contains("'y'"),
        "{msg}"
    );
    let no_op = model(graph(
        "g",
        vec![qtool_onnx::proto::NodeProto::default()],
        vec![],
        vec![],
    ));
    assert!(err_of(&no_op).to_string().contains("op_type"));
    let dup_input = model(graph(
        "g",
        vec![],
        vec![vi_f32("x", &[1]), vi_f32("x", &[1])],
        vec![],
    ));
    assert!(err_of(&dup_input).to_string().contains("'x'"));
    let garbage = decode(b"\xff\xff\xff\xff\xff", None).unwrap_err();
    assert!(matches!(garbage, LoadError::Decode { .. }));
    assert!(!garbage.to_string().is_empty());
    let missing = qtool_onnx::load("/nonexistent/dir/model.onnx").unwrap_err();
    assert!(matches!(missing, LoadError::Io { .. }) && missing.to_string().contains("model.onnx"));
    let dir = qtool_onnx::load(std::env::temp_dir()).unwrap_err();
    assert!(matches!(dir, LoadError::IsADirectory(_)), "{dir:?}");
}

#[test]
fn encode_of_edited_model_is_consistent() {
    // After an edit through the IR API the export follows the IR (op attrs regenerated).
    let mut m = decode(&rich_model().encode_to_vec(), None).unwrap();
    let conv = m
        .graph
        .nodes()
        .find(|(_, n)| n.op().op_type() == "Conv")
        .map(|(id, _)| id)
        .unwrap();
    let Op::Conv(mut c) = m.graph.node(conv).op().clone() else {
        panic!()
    };
    c.group = Some(2);
    m.graph.node_mut(conv).set_op(c);
    let back = decode(&encode(&m), None).unwrap();
    let (_, n) = back
        .graph
        .nodes()
        .find(|(_, n)| n.op().op_type() == "Conv")
        .unwrap();
    let Op::Conv(c) = n.op() else { panic!() };
    assert_eq!(c.group, Some(2));
}

/// Known limitation: the IR has no opaque type kind, so `TypeProto.opaque_type` imports as an unset
/// type (with a warning) rather than failing the load.
#[test]
fn opaque_type_imports_as_unset() {
    use qtool_onnx::proto::{TypeProto, type_proto};
    let ty = TypeProto {
        denotation: None,
        value: Some(type_proto::Value::OpaqueType(type_proto::Opaque {
            domain: s("d"),
            name: s("n"),
        })),
    };
    let p = model(graph("g", vec![], vec![vi("x", Some(ty))], vec![]));
    let m = decode(&p.encode_to_vec(), None).unwrap();
    let x = m.graph.find_value("x").unwrap();
    assert_eq!(
        m.graph.declared_info(x).unwrap().ty.as_ref().unwrap().kind,
        TypeKind::Unset
    );
}
