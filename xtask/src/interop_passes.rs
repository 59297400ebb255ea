//! `cargo xtask interop`, formats part: every format qtool's passes write (QDQ, QLinear, integer,
//! dynamic, and QOps converted back to QDQ), on every fetched real model, checked with the onnx
//! checker, ONNX Runtime and OpenVINO against qtool's own execution. The check itself is the test
//! crates/cli/tests/formats_real_models.rs (with xtask/python/check_formats.py), which CI runs under
//! `cargo xtask test`; this task runs it in a release build and shows its table.

use anyhow::Result;
use std::path::Path;

pub fn interop_passes_task(python: &Path, models: &Path) -> Result<()> {
    println!();
    println!(
        "qtool's own formats (qdq, qlinear, integer, dynamic, back to qdq): checker, ORT, OpenVINO"
    );
    crate::test::run_reference_test(
        python,
        models,
        "qtool",
        "formats_real_models",
        &[],
        "formats check",
    )
}
