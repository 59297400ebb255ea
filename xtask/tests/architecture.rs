//! Repository rules: the crate dependency graph of docs/ARCHITECTURE.md (read from `cargo metadata`)
//! and tidiness rules every source file must follow.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Which of our crates each crate may depend on (normal and build dependencies; dev-dependencies may
/// use any crate that is not built on the crate itself).
fn allowed() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let mut m = BTreeMap::new();
    let mut put = |k: &'static str, v: &[&'static str]| {
        m.insert(k, v.iter().copied().collect::<BTreeSet<_>>());
    };
    put("qtool-tensor", &[]);
    put("qtool-onnx-proto", &[]);
    put("qtool-testkit", &["qtool-tensor"]);
    put("qtool-ir", &["qtool-tensor"]);
    put("qtool-kernels", &["qtool-tensor"]);
    put("qtool-data", &["qtool-tensor"]);
    put(
        "qtool-onnx",
        &["qtool-ir", "qtool-tensor", "qtool-onnx-proto"],
    );
    put("qtool-exec", &["qtool-ir", "qtool-tensor", "qtool-kernels"]);
    put(
        "qtool-calib",
        &["qtool-ir", "qtool-tensor", "qtool-exec", "qtool-data"],
    );
    put("qtool-passes", &["qtool-ir", "qtool-tensor"]);
    put(
        "qtool-pipeline",
        &[
            "qtool-tensor",
            "qtool-ir",
            "qtool-onnx",
            "qtool-kernels",
            "qtool-exec",
            "qtool-data",
            "qtool-calib",
            "qtool-passes",
        ],
    );
    put("qtool", &["qtool-pipeline"]);
    m
}

#[test]
fn crate_dependencies_follow_the_architecture() {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let allowed = allowed();
    let mut problems = Vec::new();
    let mut seen = 0;
    for pkg in meta["packages"].as_array().unwrap() {
        let name = pkg["name"].as_str().unwrap();
        if name == "xtask" {
            continue;
        }
        seen += 1;
        let Some(ok) = allowed.get(name) else {
            problems.push(format!(
                "crate {name} is not in the architecture table (docs/ARCHITECTURE.md and this test)"
            ));
            continue;
        };
        for dep in pkg["dependencies"].as_array().unwrap() {
            let dname = dep["name"].as_str().unwrap();
            if !dname.starts_with("qtool") {
                continue;
            }
            let kind = dep["kind"].as_str();
            if kind == Some("dev") {
                // Tests may use any crate that does not itself build on this one (e.g. the ONNX
                // loader to read test models), so no test sees a crate from above.
                if below(&allowed, dname, name) {
                    problems.push(format!(
                        "{name} has a dev-dependency on {dname}, which is built on {name}"
                    ));
                }
                continue;
            }
            if !ok.contains(dname) {
                problems.push(format!(
                    "{name} depends on {dname}, which docs/ARCHITECTURE.md does not allow"
                ));
            }
        }
    }
    assert!(seen >= 5, "expected the workspace crates, saw {seen}");
    assert!(
        problems.is_empty(),
        "architecture violations:\n{}",
        problems.join("\n")
    );
}

/// `dep` is (transitively) allowed below `krate` in the table.
fn below(allowed: &BTreeMap<&'static str, BTreeSet<&'static str>>, krate: &str, dep: &str) -> bool {
    let mut stack: Vec<&str> = allowed
        .get(krate)
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    while let Some(c) = stack.pop() {
        if c == dep {
            return true;
        }
        if seen.insert(c) {
            stack.extend(allowed.get(c).into_iter().flatten().copied());
        }
    }
    false
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn tidy_every_module_says_what_it_is_for_and_unsafe_is_explained() {
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    rust_files(&root().join("xtask"), &mut files);
    assert!(files.len() > 10);
    let mut problems = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let rel = f.strip_prefix(root()).unwrap().display().to_string();
        if rel.ends_with("onnx-proto/src/onnx.rs") {
            continue; // generated
        }
        let is_module =
            !rel.contains("/tests/") && !rel.contains("/benches/") && !rel.contains("/examples/");
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        if is_module && !first.starts_with("//!") {
            problems.push(format!(
                "{rel}: does not open with a `//!` line saying what it is for"
            ));
        }
        // The patterns are spelled in pieces so that this file does not match itself.
        let dbg_call = concat!("dbg", "!(");
        let unsafe_block = concat!("unsafe", " {");
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let code = l.split("//").next().unwrap_or("");
            if code.contains(dbg_call) {
                problems.push(format!("{rel}:{}: dbg! left in", i + 1));
            }
            if code.contains(unsafe_block) {
                let window = &lines[i.saturating_sub(6)..=i];
                if !window.iter().any(|w| w.contains("SAFETY:")) {
                    problems.push(format!(
                        "{rel}:{}: unsafe block without a `// SAFETY:` comment just above",
                        i + 1
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "tidy:\n{}", problems.join("\n"));
}
