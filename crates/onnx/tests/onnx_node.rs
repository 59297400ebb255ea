//! The lossless property on real models: every `testdata/onnx-node/*/model.onnx` (when present)
//! decodes, re-encodes to a message equal to the original, and its test-data tensors round trip;
//! ops of the IR's op table import typed (any that stay opaque are reported with the reason).

use prost::Message;
use qtool_ir::{AttrValue, Graph, Op};
use qtool_onnx::proto::ModelProto;
use std::path::{Path, PathBuf};

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/onnx-node");
    let Ok(rd) = std::fs::read_dir(&root) else {
        eprintln!("no {} — skipping", root.display());
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    out.sort();
    out
}

fn has_nan(p: &ModelProto) -> bool {
    format!("{p:?}").contains("NaN")
}

/// Known ops that imported opaque, as "case: node (op): reason".
fn opaque_known(g: &Graph, case: &str, out: &mut Vec<String>) {
    for (id, n) in g.nodes() {
        if let Op::Opaque(o) = n.op() {
            let known = Op::known()
                .iter()
                .any(|(d, t)| *t == o.op_type && *d == o.domain);
            if known {
                out.push(format!(
                    "{case}: {} ({}): {}",
                    n.display_name(id),
                    o.op_type,
                    o.reason.as_deref().unwrap_or("?")
                ));
            }
        }
        for a in n.attrs() {
            match &a.value {
                AttrValue::Graph(s) => opaque_known(s, case, out),
                AttrValue::Graphs(ss) => ss.iter().for_each(|s| opaque_known(s, case, out)),
                _ => {}
            }
        }
    }
}

#[test]
fn real_models_round_trip_losslessly() {
    let cases = cases();
    let mut failures = Vec::new();
    let mut opaque = Vec::new();
    let mut tensors = 0usize;
    for dir in &cases {
        let case = dir.file_name().unwrap().to_string_lossy().into_owned();
        let path = dir.join("model.onnx");
        let bytes = std::fs::read(&path).unwrap();
        let original = ModelProto::decode(&bytes[..]).unwrap();
        let model = match qtool_onnx::load(&path) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{case}: load: {e}"));
                continue;
            }
        };
        let out = qtool_onnx::encode(&model);
        let back = ModelProto::decode(&out[..]).unwrap();
        if has_nan(&original) {
            if out != original.encode_to_vec() {
                failures.push(format!("{case}: re-encoded bytes differ"));
            }
        } else if back != original {
            failures.push(format!("{case}: re-decoded ModelProto differs"));
        }
        opaque_known(&model.graph, &case, &mut opaque);
        // Test-data tensors (input_N.pb / output_N.pb).
        for set in std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
        {
            for f in std::fs::read_dir(&set)
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.path())
            {
                if f.extension().is_some_and(|e| e == "pb") {
                    let b = std::fs::read(&f).unwrap();
                    match qtool_onnx::read_tensor_pb(&b) {
                        Ok(t) => {
                            tensors += 1;
                            let again = qtool_onnx::write_tensor_pb(&t);
                            let p1 = qtool_onnx::proto::TensorProto::decode(&b[..])
                                .unwrap()
                                .encode_to_vec();
                            if again != p1 {
                                failures
                                    .push(format!("{case}: {} does not round trip", f.display()));
                            }
                        }
                        // Sequence/optional/map test data are not TensorProtos.
                        Err(e) => eprintln!("{case}: {}: not a tensor ({e})", f.display()),
                    }
                }
            }
        }
    }
    eprintln!("{} models, {} test-data tensors", cases.len(), tensors);
    for o in &opaque {
        eprintln!("opaque known op: {o}");
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        opaque.is_empty(),
        "{} known ops imported opaque:\n{}",
        opaque.len(),
        opaque.join("\n")
    );
}
