//! Encode/decode round trips of the generated ONNX messages, with a focus on
//! proto2-style field presence (`Some(0)` must not collapse into `None`).

use qtool_onnx_proto::Message;
use qtool_onnx_proto::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, Version, attribute_proto::AttributeType,
    tensor_proto::DataType, tensor_shape_proto::Dimension, tensor_shape_proto::dimension,
    type_proto,
};

fn tensor_type(elem: DataType, dims: &[Option<i64>]) -> TypeProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: d
                .map(dimension::Value::DimValue)
                .or(Some(dimension::Value::DimParam("N".into()))),
            denotation: None,
        })
        .collect();
    TypeProto {
        value: Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: Some(elem as i32),
            shape: Some(TensorShapeProto { dim }),
        })),
        denotation: None,
    }
}

fn small_model() -> ModelProto {
    let axis_zero = AttributeProto {
        name: Some("axis".into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(0),
        ..Default::default()
    };
    let node = NodeProto {
        input: vec!["x".into(), "w".into()],
        output: vec!["y".into()],
        name: Some("concat0".into()),
        op_type: Some("Concat".into()),
        domain: Some(String::new()),
        attribute: vec![axis_zero],
        ..Default::default()
    };
    let weight = TensorProto {
        dims: vec![1, 2],
        data_type: Some(DataType::Float as i32),
        name: Some("w".into()),
        raw_data: Some(
            [1.5f32, -2.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        ..Default::default()
    };
    ModelProto {
        ir_version: Some(Version::IrVersion as i64),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(21),
        }],
        producer_name: Some("qtool-test".into()),
        model_version: Some(0),
        graph: Some(GraphProto {
            node: vec![node],
            name: Some("g".into()),
            initializer: vec![weight],
            input: vec![ValueInfoProto {
                name: Some("x".into()),
                r#type: Some(tensor_type(DataType::Float, &[None, Some(2)])),
                ..Default::default()
            }],
            output: vec![ValueInfoProto {
                name: Some("y".into()),
                r#type: Some(tensor_type(DataType::Float, &[None, Some(2)])),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn model_round_trip_keeps_explicit_zero_values() {
    let model = small_model();
    let bytes = model.encode_to_vec();
    let back = ModelProto::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(back, model);
    assert_eq!(back.encode_to_vec(), bytes, "re-encoding is byte-identical");

    let graph = back.graph.as_ref().expect("graph present");
    let attr = &graph.node[0].attribute[0];
    assert_eq!(attr.i, Some(0), "an explicitly set zero stays set");
    assert_eq!(attr.f, None, "unset fields stay unset");
    assert_eq!(attr.s, None);
    assert_eq!(attr.r#type(), AttributeType::Int);
    assert_eq!(back.model_version, Some(0));
    assert_eq!(back.doc_string, None);
    assert_eq!(
        graph.node[0].domain.as_deref(),
        Some(""),
        "an explicitly empty string stays set"
    );
    assert_eq!(graph.node[0].doc_string, None);
    assert_eq!(
        DataType::try_from(graph.initializer[0].data_type()),
        Ok(DataType::Float)
    );
}

#[test]
fn set_zero_and_unset_differ_on_the_wire() {
    let set = AttributeProto {
        name: Some("axis".into()),
        i: Some(0),
        ..Default::default()
    };
    let unset = AttributeProto {
        name: Some("axis".into()),
        ..Default::default()
    };
    assert_ne!(set, unset);
    assert_ne!(set.encode_to_vec(), unset.encode_to_vec());
    assert_eq!(
        AttributeProto::decode(unset.encode_to_vec().as_slice())
            .unwrap()
            .i,
        None
    );
    // Field 3 (i), varint, value 0.
    assert!(set.encode_to_vec().ends_with(&[0x18, 0x00]));
}

#[test]
fn unpacked_lists_use_the_proto2_encoding() {
    // Upstream `ints` and `dims` are proto2 non-packed: one tag per element.
    let attr = AttributeProto {
        ints: vec![1, 2],
        ..Default::default()
    };
    assert_eq!(attr.encode_to_vec(), [0x40, 0x01, 0x40, 0x02]);
    let tensor = TensorProto {
        dims: vec![3, 4],
        ..Default::default()
    };
    assert_eq!(tensor.encode_to_vec(), [0x08, 0x03, 0x08, 0x04]);
    // Upstream `int64_data` is explicitly packed.
    let tensor = TensorProto {
        int64_data: vec![3, 4],
        ..Default::default()
    };
    assert_eq!(tensor.encode_to_vec(), [0x3a, 0x02, 0x03, 0x04]);
    // Decoders accept either encoding.
    assert_eq!(
        TensorProto::decode(&[0x0a, 0x02, 0x03, 0x04][..])
            .unwrap()
            .dims,
        [3, 4]
    );
}

#[test]
fn data_type_codes_match_the_onnx_spec() {
    let codes = [
        (DataType::Undefined, 0),
        (DataType::Float, 1),
        (DataType::Uint8, 2),
        (DataType::Int8, 3),
        (DataType::Uint16, 4),
        (DataType::Int16, 5),
        (DataType::Int32, 6),
        (DataType::Int64, 7),
        (DataType::String, 8),
        (DataType::Bool, 9),
        (DataType::Float16, 10),
        (DataType::Double, 11),
        (DataType::Uint32, 12),
        (DataType::Uint64, 13),
        (DataType::Complex64, 14),
        (DataType::Complex128, 15),
        (DataType::Bfloat16, 16),
        (DataType::Float8e4m3fn, 17),
        (DataType::Float8e4m3fnuz, 18),
        (DataType::Float8e5m2, 19),
        (DataType::Float8e5m2fnuz, 20),
        (DataType::Uint4, 21),
        (DataType::Int4, 22),
        (DataType::Float4e2m1, 23),
        (DataType::Float8e8m0, 24),
        (DataType::Uint2, 25),
        (DataType::Int2, 26),
        (DataType::Float6e2m3, 27),
        (DataType::Float6e3m2, 28),
    ];
    for (dt, code) in codes {
        assert_eq!(dt as i32, code, "{dt:?}");
        assert_eq!(DataType::try_from(code), Ok(dt));
    }
    assert_eq!(Version::IrVersion as i32, 14);
}
