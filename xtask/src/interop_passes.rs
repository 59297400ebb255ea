//! `cargo xtask interop`, formats part: every format qtool's passes write (QDQ, QLinear, integer,
//! dynamic, and QOps converted back to QDQ), on every fetched real model, checked with the onnx
//! checker, ONNX Runtime and OpenVINO against qtool's own execution. The check itself is the test
//! crates/cli/tests/formats_real_models.rs (with xtask/python/check_formats.py), which CI runs under
//! `cargo xtask test`; this task runs it in a release build and shows its table.

use anyhow::{Result, bail};
use std::path::Path;
use std::process::Command;

pub fn interop_passes_task(python: &Path, models: &Path) -> Result<()> {
    let images = crate::models::ensure_images()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(crate::workspace_root())
        .args([
            "test",
            "--release",
            "-p",
            "qtool",
            "--test",
            "formats_real_models",
            "--",
            "--nocapture",
        ])
        .env("QTOOL_REQUIRE_REFERENCE", "1")
        .env("QTOOL_PYTHON", python)
        .env("QTOOL_MODELS_DIR", models)
        .env("QTOOL_IMAGES_DIR", &images);
    println!();
    println!(
        "qtool's own formats (qdq, qlinear, integer, dynamic, back to qdq): checker, ORT, OpenVINO"
    );
    let status = cmd.status()?;
    if !status.success() {
        bail!("formats check failed ({status})");
    }
    Ok(())
}
