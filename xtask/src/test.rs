//! `cargo xtask test`: installs what the tests need (the pinned Python reference venv and the real
//! models), then runs the whole workspace's tests with the reference marked as required, so that no
//! test that needs it can silently skip.

use anyhow::{Result, bail};
use std::process::Command;

pub fn test_task(extra: &[String]) -> Result<()> {
    let python = crate::py::ensure_venv()?;
    let models = crate::models::ensure_models()?;
    let images = crate::models::ensure_images()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(crate::workspace_root())
        .args(["test", "--workspace", "--locked"])
        .args(extra)
        .env("QTOOL_REQUIRE_REFERENCE", "1")
        .env("QTOOL_PYTHON", &python)
        .env("QTOOL_MODELS_DIR", &models)
        .env("QTOOL_IMAGES_DIR", &images);
    eprintln!("xtask test: {cmd:?}");
    let status = cmd.status()?;
    if !status.success() {
        bail!("tests failed ({status})");
    }
    Ok(())
}
