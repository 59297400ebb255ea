//! `cargo xtask interop --calib`: calibration parity with ONNX Runtime on every real model qtool can
//! run, on the sample photos (MinMax identical or explained by the executors' activations,
//! Percentile and Entropy in "ort" mode within one ORT bin, Entropy with ORT's 2048-bin search).
//! The check itself is the test crates/calib/tests/ort_real_models.rs (with
//! xtask/python/ort_calib_ranges.py), which CI runs on two models under `cargo xtask test`; this
//! task runs it on the full set (`QTOOL_CALIB_PARITY_FULL=1`) in a release build and shows its
//! table.

use anyhow::{Result, bail};
use std::path::Path;
use std::process::Command;

pub fn interop_calib_task(python: &Path, models: &Path) -> Result<()> {
    let images = crate::models::ensure_images()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(crate::workspace_root())
        .args([
            "test",
            "--release",
            "-p",
            "qtool-calib",
            "--test",
            "ort_real_models",
            "--",
            "--nocapture",
        ])
        .env("QTOOL_REQUIRE_REFERENCE", "1")
        .env("QTOOL_CALIB_PARITY_FULL", "1")
        .env("QTOOL_PYTHON", python)
        .env("QTOOL_MODELS_DIR", models)
        .env("QTOOL_IMAGES_DIR", &images);
    println!();
    println!("calibration ranges against ONNX Runtime's calibrators (MinMax, Percentile, Entropy)");
    let status = cmd.status()?;
    if !status.success() {
        bail!("calibration parity check failed ({status})");
    }
    Ok(())
}
