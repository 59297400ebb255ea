//! `cargo xtask onnx-node`: regenerates `testdata/onnx-node/` from the onnx package's backend node
//! test cases (via `xtask/python/gen_onnx_node.py` in the reference venv).

use anyhow::{Context, Result};

/// Runs the generator script; it rewrites `testdata/onnx-node/` deterministically.
pub fn onnx_node_task() -> Result<()> {
    let python = crate::py::ensure_venv()?;
    let out = crate::workspace_root().join("testdata").join("onnx-node");
    eprintln!(
        "xtask: generating ONNX node test cases into {}",
        out.display()
    );
    crate::py::run(
        crate::py::script_command(&python, "gen_onnx_node.py")
            .arg("--out")
            .arg(&out),
    )
    .context("gen_onnx_node.py")?;
    Ok(())
}
