//! Fails when `src/onnx.rs` differs from what `cargo xtask codegen` would
//! generate from `proto/onnx.proto3` (hand edits, or a schema change without
//! regenerating).
//!
//! The generation code is the xtask's own module, compiled into this test
//! through `#[path]`, so both always agree on the expected output.

#[allow(dead_code)]
#[path = "../../../xtask/src/codegen.rs"]
mod codegen;

use std::path::PathBuf;

#[test]
fn generated_bindings_match_the_schema() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root exists");
    match codegen::check(&root).expect("regenerating the ONNX bindings") {
        None => {}
        Some(drift) => panic!("{drift}"),
    }
}
