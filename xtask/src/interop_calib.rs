//! `cargo xtask interop --calib`: calibration parity with ONNX Runtime on every real model qtool can
//! run, on the sample photos (MinMax identical or explained by the executors' activations,
//! Percentile and Entropy in "ort" mode within one ORT bin, Entropy with ORT's 2048-bin search).
//! The check itself is the test crates/calib/tests/ort_real_models.rs (with
//! xtask/python/ort_calib_ranges.py), which CI runs on two models under `cargo xtask test`; this
//! task runs it on the full set (`QTOOL_CALIB_PARITY_FULL=1`) in a release build and shows its
//! table.

use anyhow::Result;
use std::path::Path;

pub fn interop_calib_task(python: &Path, models: &Path) -> Result<()> {
    println!();
    println!("calibration ranges against ONNX Runtime's calibrators (MinMax, Percentile, Entropy)");
    crate::test::run_reference_test(
        python,
        models,
        "qtool-calib",
        "ort_real_models",
        &[("QTOOL_CALIB_PARITY_FULL", "1")],
        "calibration parity check",
    )
}
