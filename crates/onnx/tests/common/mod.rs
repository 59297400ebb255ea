//! Builders for prost ONNX messages used by the tests, and the lossless round-trip check.
#![allow(dead_code)]

use prost::Message;
use qtool_onnx::proto::{
    AttributeProto, DeviceConfigurationProto, FunctionProto, GraphProto, ModelProto,
    NodeDeviceConfigurationProto, NodeProto, OperatorSetIdProto, SparseTensorProto,
    StringStringEntryProto, TensorAnnotation, TensorProto, TensorShapeProto, TrainingInfoProto,
    TypeProto, ValueInfoProto, tensor_proto, tensor_shape_proto, type_proto,
};

pub fn s(x: &str) -> Option<String> {
    Some(x.to_string())
}

pub fn kv(k: &str, v: &str) -> StringStringEntryProto {
    StringStringEntryProto {
        key: s(k),
        value: s(v),
    }
}

pub fn raw_tensor(name: &str, dtype: i32, dims: &[i64], raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: s(name),
        data_type: Some(dtype),
        dims: dims.to_vec(),
        raw_data: Some(raw),
        ..Default::default()
    }
}

pub fn f32_tensor(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    TensorProto {
        name: s(name),
        data_type: Some(1),
        dims: dims.to_vec(),
        float_data: v.to_vec(),
        ..Default::default()
    }
}

pub fn i64_tensor(name: &str, dims: &[i64], v: &[i64]) -> TensorProto {
    TensorProto {
        name: s(name),
        data_type: Some(7),
        dims: dims.to_vec(),
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

pub fn dim_v(v: i64) -> tensor_shape_proto::Dimension {
    tensor_shape_proto::Dimension {
        denotation: None,
        value: Some(tensor_shape_proto::dimension::Value::DimValue(v)),
    }
}

pub fn dim_p(p: &str, den: Option<&str>) -> tensor_shape_proto::Dimension {
    tensor_shape_proto::Dimension {
        denotation: den.map(str::to_string),
        value: Some(tensor_shape_proto::dimension::Value::DimParam(
            p.to_string(),
        )),
    }
}

pub fn tensor_type(elem: i32, dims: Option<Vec<tensor_shape_proto::Dimension>>) -> TypeProto {
    TypeProto {
        denotation: None,
        value: Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: Some(elem),
            shape: dims.map(|dim| TensorShapeProto { dim }),
        })),
    }
}

pub fn vi(name: &str, ty: Option<TypeProto>) -> ValueInfoProto {
    ValueInfoProto {
        name: s(name),
        r#type: ty,
        doc_string: None,
        metadata_props: vec![],
    }
}

pub fn vi_f32(name: &str, dims: &[i64]) -> ValueInfoProto {
    vi(
        name,
        Some(tensor_type(
            1,
            Some(dims.iter().map(|&d| dim_v(d)).collect()),
        )),
    )
}

pub fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|x| x.to_string()).collect(),
        output: outputs.iter().map(|x| x.to_string()).collect(),
        name: s(name),
        op_type: s(op),
        attribute: attrs,
        ..Default::default()
    }
}

pub fn attr(name: &str, ty: i32) -> AttributeProto {
    AttributeProto {
        name: s(name),
        r#type: Some(ty),
        ..Default::default()
    }
}
pub fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        i: Some(v),
        ..attr(name, 2)
    }
}
pub fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        f: Some(v),
        ..attr(name, 1)
    }
}
pub fn attr_s(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        s: Some(v.as_bytes().to_vec()),
        ..attr(name, 3)
    }
}
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: v.to_vec(),
        ..attr(name, 7)
    }
}
pub fn attr_g(name: &str, g: GraphProto) -> AttributeProto {
    AttributeProto {
        g: Some(g),
        ..attr(name, 5)
    }
}

pub fn graph(
    name: &str,
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
) -> GraphProto {
    GraphProto {
        name: s(name),
        node: nodes,
        input: inputs,
        output: outputs,
        ..Default::default()
    }
}

pub fn model(g: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: Some(10),
        opset_import: vec![OperatorSetIdProto {
            domain: s(""),
            version: Some(21),
        }],
        graph: Some(g),
        ..Default::default()
    }
}

/// A model exercising every part of the schema the converter handles.
pub fn rich_model() -> ModelProto {
    // Every attribute kind on one custom-domain node.
    let sub_for_attr = graph(
        "attr_sub",
        vec![node("Identity", "id", &["x"], &["ai"], vec![])],
        vec![],
        vec![vi("ai", None)],
    );
    let sparse = SparseTensorProto {
        values: Some(f32_tensor("sp", &[2], &[1.0, 2.0])),
        indices: Some(i64_tensor("", &[2], &[0, 3])),
        dims: vec![4],
    };
    let all_kinds = vec![
        attr_f("f", 0.5),
        attr_i("i", -3),
        attr_s("s", "hello"),
        AttributeProto {
            t: Some(f32_tensor("t", &[2], &[1.0, -0.0])),
            ..attr("t", 4)
        },
        attr_g("g", sub_for_attr),
        AttributeProto {
            sparse_tensor: Some(sparse.clone()),
            ..attr("sparse", 11)
        },
        AttributeProto {
            tp: Some(tensor_type(10, Some(vec![dim_p("n", Some("DATA_BATCH"))]))),
            ..attr("tp", 13)
        },
        AttributeProto {
            floats: vec![1.0, f32::INFINITY, -0.0],
            ..attr("floats", 6)
        },
        attr_ints("ints", &[1, -2, i64::MAX]),
        AttributeProto {
            strings: vec![b"a".to_vec(), vec![0xff, 0x00]],
            ..attr("strings", 8)
        },
        AttributeProto {
            tensors: vec![
                i64_tensor("t0", &[1], &[5]),
                raw_tensor("t1", 3, &[2], vec![0x80, 0x7f]),
            ],
            ..attr("tensors", 9)
        },
        AttributeProto {
            graphs: vec![
                graph("g0", vec![], vec![], vec![]),
                graph("g1", vec![], vec![vi_f32("q", &[1])], vec![vi("q", None)]),
            ],
            ..attr("graphs", 10)
        },
        AttributeProto {
            sparse_tensors: vec![sparse.clone()],
            ..attr("sparse_tensors", 12)
        },
        AttributeProto {
            type_protos: vec![tensor_type(1, None), TypeProto::default()],
            ..attr("type_protos", 14)
        },
        // Scalar declared but absent (proto3 writer omitting a zero).
        attr("zero_int", 2),
        // No type field (IR v1 style): inferred from the present field.
        AttributeProto {
            name: s("untyped"),
            f: Some(2.0),
            ..Default::default()
        },
        // A reference to a function attribute, with UNDEFINED type and a doc string.
        AttributeProto {
            name: s("ref"),
            ref_attr_name: s("outer_attr"),
            r#type: Some(0),
            doc_string: s("doc of ref"),
            ..Default::default()
        },
        // Empty lists with a declared type.
        attr("empty_ints", 7),
    ];
    let custom = NodeProto {
        domain: s("my.domain"),
        overload: s("v2"),
        doc_string: s("node doc"),
        metadata_props: vec![kv("nk", "nv")],
        device_configurations: vec![NodeDeviceConfigurationProto {
            configuration_id: s("cfg"),
            sharding_spec: vec![],
            pipeline_stage: Some(1),
        }],
        ..node("Custom", "custom", &["x", "", "w"], &["c", ""], all_kinds)
    };

    // If with branches capturing outer values; then_branch holds a Loop whose body captures `w`
    // from the main graph (transitively).
    let loop_body = graph(
        "loop_body",
        vec![
            node("Add", "body_add", &["acc", "w"], &["acc_out"], vec![]),
            node("Identity", "body_cond", &["cond_in"], &["cond_out"], vec![]),
        ],
        vec![
            vi("iter", Some(tensor_type(7, Some(vec![])))),
            vi("cond_in", Some(tensor_type(9, Some(vec![])))),
            vi("acc", None),
        ],
        vec![vi("cond_out", None), vi("acc_out", None)],
    );
    let then_branch = GraphProto {
        initializer: vec![f32_tensor("then_k", &[], &[3.0])],
        ..graph(
            "then",
            vec![node(
                "Loop",
                "loop",
                &["trip", "cond0", "y"],
                &["then_out"],
                vec![attr_g("body", loop_body)],
            )],
            vec![],
            vec![vi("then_out", None)],
        )
    };
    let else_branch = graph("else", vec![], vec![], vec![vi("y", None)]);
    let if_node = node(
        "If",
        "if",
        &["cond"],
        &["z"],
        vec![
            attr_g("then_branch", then_branch),
            attr_g("else_branch", else_branch),
        ],
    );

    let seq_ty = TypeProto {
        denotation: s("SEQ"),
        value: Some(type_proto::Value::SequenceType(Box::new(
            type_proto::Sequence {
                elem_type: Some(Box::new(tensor_type(1, None))),
            },
        ))),
    };
    let map_ty = TypeProto {
        denotation: None,
        value: Some(type_proto::Value::MapType(Box::new(type_proto::Map {
            key_type: Some(8),
            value_type: Some(Box::new(seq_ty.clone())),
        }))),
    };
    let opt_ty = TypeProto {
        denotation: None,
        value: Some(type_proto::Value::OptionalType(Box::new(
            type_proto::Optional {
                elem_type: Some(Box::new(tensor_type(7, None))),
            },
        ))),
    };
    let sparse_ty = TypeProto {
        denotation: None,
        value: Some(type_proto::Value::SparseTensorType(
            type_proto::SparseTensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto {
                    dim: vec![dim_v(4), tensor_shape_proto::Dimension::default()],
                }),
            },
        )),
    };
    let x_ty = TypeProto {
        denotation: s("TENSOR"),
        ..tensor_type(
            1,
            Some(vec![
                dim_p("batch", Some("DATA_BATCH")),
                dim_v(3),
                tensor_shape_proto::Dimension {
                    denotation: s("DATA_FEATURE"),
                    value: None,
                },
            ]),
        )
    };
    let main = GraphProto {
        name: s("main"),
        doc_string: s("graph doc"),
        node: vec![
            node("Relu", "relu", &["x"], &["y"], vec![]),
            NodeProto {
                domain: s(""),
                ..node(
                    "Conv",
                    "conv",
                    &["x4", "w4", ""],
                    &["conv_out"],
                    vec![attr_ints("strides", &[1, 1]), attr_i("group", 1)],
                )
            },
            custom,
            if_node,
        ],
        initializer: vec![
            f32_tensor("w", &[3], &[1.0, 2.0, 3.0]),
            raw_tensor("w4", 1, &[1, 1, 1, 1], 1.5f32.to_le_bytes().to_vec()),
            TensorProto {
                doc_string: s("tensor doc"),
                segment: Some(tensor_proto::Segment {
                    begin: Some(0),
                    end: None,
                }),
                metadata_props: vec![kv("tk", "tv")],
                data_location: Some(0),
                ..i64_tensor("trip", &[], &[4])
            },
            raw_tensor("cond0", 9, &[], vec![1]),
            // An initializer that is also a graph input.
            f32_tensor("x4", &[1, 1, 1, 1], &[0.25]),
        ],
        sparse_initializer: vec![sparse],
        input: vec![
            ValueInfoProto {
                doc_string: s("input doc"),
                metadata_props: vec![kv("ik", "iv")],
                ..vi("x", Some(x_ty))
            },
            vi("cond", Some(tensor_type(9, Some(vec![])))),
            vi(
                "x4",
                Some(tensor_type(
                    1,
                    Some(vec![dim_v(1), dim_v(1), dim_v(1), dim_v(1)]),
                )),
            ),
            vi("seq_in", Some(seq_ty)),
            vi("map_in", Some(map_ty)),
            vi("opt_in", Some(opt_ty)),
            vi("sparse_in", Some(sparse_ty)),
            vi("untyped_in", Some(TypeProto::default())),
            vi("undef_elem", Some(tensor_type(0, None))),
        ],
        output: vec![
            vi("y", Some(tensor_type(1, None))),
            vi("z", None),
            vi("c", None),
            vi("conv_out", None),
        ],
        value_info: vec![vi_f32("only_info", &[2])],
        quantization_annotation: vec![TensorAnnotation {
            tensor_name: s("y"),
            quant_parameter_tensor_names: vec![
                kv("SCALE_TENSOR", "s"),
                kv("ZERO_POINT_TENSOR", "zp"),
            ],
        }],
        metadata_props: vec![kv("gk", "gv")],
    };
    let function = FunctionProto {
        name: s("MyFn"),
        domain: s("my.domain"),
        overload: s("v2"),
        input: vec!["a".into()],
        output: vec!["b".into()],
        attribute: vec!["outer_attr".into()],
        node: vec![node("Relu", "fr", &["a"], &["b"], vec![])],
        opset_import: vec![OperatorSetIdProto {
            domain: s(""),
            version: Some(21),
        }],
        ..Default::default()
    };
    ModelProto {
        ir_version: Some(10),
        opset_import: vec![
            OperatorSetIdProto {
                domain: s(""),
                version: Some(21),
            },
            OperatorSetIdProto {
                domain: None,
                version: Some(1),
            },
            OperatorSetIdProto {
                domain: s("my.domain"),
                version: None,
            },
        ],
        producer_name: s("qtool-tests"),
        producer_version: s("0.1"),
        domain: s("ai.qtool"),
        model_version: Some(7),
        doc_string: s("model doc"),
        graph: Some(main),
        metadata_props: vec![kv("mk", "mv"), kv("mk", "dup")],
        training_info: vec![TrainingInfoProto {
            initialization: Some(graph("init", vec![], vec![], vec![])),
            algorithm: None,
            initialization_binding: vec![kv("a", "b")],
            update_binding: vec![],
        }],
        functions: vec![function],
        configuration: vec![
            DeviceConfigurationProto {
                name: s("dev"),
                num_devices: Some(2),
                device: vec!["cpu0".into(), "cpu1".into()],
            },
            DeviceConfigurationProto {
                name: s("dev2"),
                num_devices: None,
                device: vec![],
            },
        ],
    }
}

/// decode -> encode -> decode: the re-decoded message equals the original one, and encoding is a
/// fixed point (bytes equal, which also covers NaN payloads that `==` cannot compare).
pub fn assert_lossless(p: &ModelProto) {
    let bytes = p.encode_to_vec();
    let m = qtool_onnx::decode(&bytes, None).unwrap_or_else(|e| panic!("decode failed: {e}"));
    let out = qtool_onnx::encode(&m);
    let back = ModelProto::decode(&out[..]).expect("re-decode");
    if !has_nan(p) {
        assert_eq!(
            &back, p,
            "the re-decoded ModelProto differs from the original"
        );
    }
    assert_eq!(out, bytes, "the re-encoded bytes differ");
    // A second pass is a fixed point too.
    let m2 = qtool_onnx::decode(&out, None).expect("second decode");
    assert_eq!(qtool_onnx::encode(&m2), out);
}

fn has_nan(p: &ModelProto) -> bool {
    format!("{p:?}").contains("NaN")
}
