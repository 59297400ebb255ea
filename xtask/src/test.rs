//! `cargo xtask test`: installs what the tests need (the pinned Python reference venv and the real
//! models), then runs the whole workspace's tests with the reference marked as required, so that no
//! test that needs it can silently skip. [`reference_cargo_test`] is the one place that builds such a
//! `cargo test` command; the interop tasks that run a single test target use it too.

use anyhow::{Result, bail};
use std::path::Path;
use std::process::Command;

/// A `cargo test` command in the workspace root with the reference environment the tests read:
/// the reference is required (`QTOOL_REQUIRE_REFERENCE=1`: a missing one fails instead of
/// skipping), and the venv's python, the models and the sample photos are named
/// (`QTOOL_PYTHON`, `QTOOL_MODELS_DIR`, `QTOOL_IMAGES_DIR`). Callers add the test selection.
pub fn reference_cargo_test(python: &Path, models: &Path, images: &Path) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(crate::workspace_root())
        .arg("test")
        .env("QTOOL_REQUIRE_REFERENCE", "1")
        .env("QTOOL_PYTHON", python)
        .env("QTOOL_MODELS_DIR", models)
        .env("QTOOL_IMAGES_DIR", images);
    cmd
}

/// Runs one test target of one package in a release build with the reference environment, its
/// output shown (`--nocapture`); `env` adds variables. Fails with `what` when the test fails.
pub fn run_reference_test(
    python: &Path,
    models: &Path,
    package: &str,
    test: &str,
    env: &[(&str, &str)],
    what: &str,
) -> Result<()> {
    let images = crate::models::ensure_images()?;
    let mut cmd = reference_cargo_test(python, models, &images);
    cmd.args([
        "--release",
        "-p",
        package,
        "--test",
        test,
        "--",
        "--nocapture",
    ])
    .envs(env.iter().copied());
    let status = cmd.status()?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

pub fn test_task(extra: &[String]) -> Result<()> {
    let python = crate::py::ensure_venv()?;
    let models = crate::models::ensure_models()?;
    let images = crate::models::ensure_images()?;
    let mut cmd = reference_cargo_test(&python, &models, &images);
    cmd.args(["--workspace", "--locked"]).args(extra);
    eprintln!("xtask test: {cmd:?}");
    let status = cmd.status()?;
    if !status.success() {
        bail!("tests failed ({status})");
    }
    Ok(())
}
