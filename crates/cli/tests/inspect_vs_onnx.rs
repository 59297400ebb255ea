//! `qtool inspect --json` on the real models reports the same op histogram, opsets and I/O as the
//! `onnx` Python package (xtask/python/onnx_inspect.py), the independent reference.

use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;

fn qtool_json(model: &std::path::Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_qtool"))
        .arg("inspect")
        .arg(model)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qtool inspect failed on {}: {}",
        model.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn reference_json(python: &std::path::Path, model: &std::path::Path) -> Value {
    let out = qtool_testkit::python_script(python, "onnx_inspect.py")
        .arg(model)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "onnx_inspect.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// I/O in a common form: (name, dtype, shape with unknown dims as "?").
fn io(v: &Value, dtype_key: &str) -> Vec<(String, String, Option<Vec<String>>)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let shape = x["shape"].as_array().map(|s| {
                s.iter()
                    .map(|d| match d {
                        Value::Null => "?".to_string(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect()
            });
            (
                x["name"].as_str().unwrap().to_string(),
                x[dtype_key].as_str().unwrap().to_string(),
                shape,
            )
        })
        .collect()
}

#[test]
fn inspect_matches_the_onnx_package_on_real_models() {
    let Some(python) = qtool_testkit::reference_python() else {
        return;
    };
    let models = qtool_testkit::real_models();
    if models.is_empty() && qtool_testkit::reference_required() {
        panic!("no real models found");
    }
    for m in &models {
        let ours = qtool_json(m);
        let theirs = reference_json(&python, m);
        let name = m.display();
        assert_eq!(ours["schema"], "qtool.inspect/1");
        assert_eq!(
            ours["ir_version"], theirs["ir_version"],
            "{name}: ir_version"
        );
        // Opsets: the reference keys the default domain as "" too.
        let ref_opsets: BTreeMap<String, i64> =
            serde_json::from_value(theirs["opset_import"].clone()).unwrap();
        let ref_opsets: BTreeMap<String, i64> = ref_opsets
            .into_iter()
            .map(|(k, v)| (if k == "ai.onnx" { String::new() } else { k }, v))
            .collect();
        let our_opsets: BTreeMap<String, i64> =
            serde_json::from_value(ours["opsets"].clone()).unwrap();
        assert_eq!(our_opsets, ref_opsets, "{name}: opsets");
        // Op histogram: the reference writes every key as "domain::op" with "ai.onnx" for the default.
        let ref_ops: BTreeMap<String, usize> =
            serde_json::from_value(theirs["op_histogram"].clone()).unwrap();
        let ref_ops: BTreeMap<String, usize> = ref_ops
            .into_iter()
            .map(|(k, v)| {
                (
                    k.strip_prefix("ai.onnx::").map(str::to_string).unwrap_or(k),
                    v,
                )
            })
            .collect();
        let our_ops: BTreeMap<String, usize> = serde_json::from_value(ours["ops"].clone()).unwrap();
        assert_eq!(our_ops, ref_ops, "{name}: op histogram");
        assert_eq!(
            ours["node_count"], theirs["num_nodes"],
            "{name}: node count"
        );
        assert_eq!(
            io(&ours["inputs"], "dtype"),
            io(&theirs["inputs"], "elem_type"),
            "{name}: inputs"
        );
        assert_eq!(
            io(&ours["outputs"], "dtype"),
            io(&theirs["outputs"], "elem_type"),
            "{name}: outputs"
        );
        assert_eq!(
            ours["producer_name"].as_str().unwrap_or(""),
            theirs["producer"]["name"].as_str().unwrap_or(""),
            "{name}: producer"
        );
    }
}

#[test]
fn inspect_reports_formats_and_errors_clearly() {
    // A directory is not a model.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_qtool"))
        .arg("inspect")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("directory"), "{err}");
    // Garbage bytes.
    let f = dir.path().join("junk.onnx");
    std::fs::write(&f, b"\x0a\xff\xff\xff\xff\x0fjunk").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_qtool"))
        .arg("inspect")
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("junk.onnx") && !err.contains("panicked"),
        "{err}"
    );
}
