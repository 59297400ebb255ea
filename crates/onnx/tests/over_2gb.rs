//! A model whose weights exceed protobuf's 2 GB limit is saved with external data automatically, with
//! the default options and the real limit (no injected threshold), and loads back with identical
//! bytes. Uses about 2.2 GB of disk in a temporary directory, removed at the end.

use qtool_ir::{
    Graph, Model, Node, OpsetId, Storage, TensorBytes, TensorData, Type, ValueInfo, ops,
};
use qtool_tensor::DType;
use std::sync::Arc;

#[test]
fn a_model_over_2gb_is_written_with_external_data() {
    let n: usize = (1usize << 31) + (1 << 20); // 2 GiB + 1 MiB of uint8 weights
    let mut bytes = vec![0u8; n];
    for (i, b) in bytes.iter_mut().enumerate().step_by(4093) {
        *b = (i % 251) as u8;
    }
    let big = TensorData {
        name: Some("big".into()),
        dtype: DType::U8,
        dims: vec![n as i64],
        data: TensorBytes::Raw(Arc::from(bytes)),
        storage: Storage::Raw,
        doc_string: None,
        segment: None,
        metadata_props: Vec::new(),
        explicit_default_location: false,
    };
    let mut g = Graph::new("big");
    let w = g.add_initializer("big", big).unwrap();
    let y = g.add_value("y").unwrap();
    g.add_node(Node::new(ops::Identity {}, "id"), &[Some(w)], &[Some(y)])
        .unwrap();
    g.outputs
        .push((y, ValueInfo::of_type(Type::tensor(DType::U8, &[n as i64]))));
    let model = Model {
        ir_version: Some(8),
        opset_import: vec![OpsetId {
            domain: Some(String::new()),
            version: Some(13),
        }],
        graph: g,
        ..Default::default()
    };

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.onnx");
    qtool_onnx::save(&model, &path, &qtool_onnx::SaveOptions::default()).unwrap();
    let proto_len = std::fs::metadata(&path).unwrap().len();
    assert!(
        proto_len < 1 << 20,
        "the protobuf itself should be small, is {proto_len} bytes"
    );
    let data = dir.path().join("big.onnx.data");
    assert!(
        std::fs::metadata(&data).unwrap().len() >= n as u64,
        "external data file missing or short"
    );

    let back = qtool_onnx::load(&path).unwrap();
    let v = back.graph.find_value("big").unwrap();
    let t = back.graph.initializer(v).unwrap();
    assert!(
        matches!(t.storage, Storage::External(_)),
        "the big tensor is stored externally"
    );
    let original = model
        .graph
        .initializer(model.graph.find_value("big").unwrap())
        .unwrap();
    assert!(
        t.raw().unwrap() == original.raw().unwrap(),
        "bytes differ after the round trip"
    );
}
