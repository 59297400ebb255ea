//! The Python reference environment: `<workspace>/.venv` with the pins of `xtask/python/requirements.txt`.
//!
//! qtool itself never uses Python; onnx, onnxruntime, numpy and openvino are only the independent
//! reference that tests compare against. The venv is (re)installed only when the pins change: a stamp
//! file inside it records the SHA-256 of the requirements file it was installed from.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Name of the stamp file inside the venv.
const STAMP: &str = "qtool-requirements.sha256";

/// The directory of the Python scripts (`xtask/python`).
pub fn scripts_dir() -> PathBuf {
    crate::workspace_root().join("xtask").join("python")
}

/// The requirements file with the pinned versions.
pub fn requirements_file() -> PathBuf {
    scripts_dir().join("requirements.txt")
}

/// The venv directory at the workspace root.
pub fn venv_dir() -> PathBuf {
    crate::workspace_root().join(".venv")
}

/// The python executable inside a venv.
fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// Lower-case hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs a command, failing with its command line when it does not exit successfully.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Makes sure `.venv` exists with the pinned requirements installed, and returns its python executable.
pub fn ensure_venv() -> Result<PathBuf> {
    let req = requirements_file();
    let req_bytes = std::fs::read(&req).with_context(|| format!("reading {}", req.display()))?;
    let want = sha256_hex(&req_bytes);
    let venv = venv_dir();
    let python = venv_python(&venv);
    let stamp = venv.join(STAMP);

    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == want) {
        return Ok(python);
    }

    if !python.exists() {
        let base = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        eprintln!(
            "xtask: creating {} with {}",
            venv.display(),
            base.to_string_lossy()
        );
        run(Command::new(&base).arg("-m").arg("venv").arg(&venv))
            .context("creating the venv (is python3 with the venv module installed?)")?;
    }
    // A changed or missing stamp: (re)install. Remove the stamp first so that an interrupted
    // install is retried next time.
    let _ = std::fs::remove_file(&stamp);
    eprintln!(
        "xtask: installing {} into {} (this takes a few minutes the first time)",
        req.display(),
        venv.display()
    );
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "-q",
            "-r",
        ])
        .arg(&req))
    .context("pip install of the pinned requirements")?;
    std::fs::write(&stamp, format!("{want}\n"))
        .with_context(|| format!("writing {}", stamp.display()))?;
    eprintln!("xtask: venv ready ({})", python.display());
    Ok(python)
}

/// A command that runs `script` (relative to `xtask/python`) with the venv's python, from the workspace root.
pub fn script_command(python: &Path, script: &str) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg(scripts_dir().join(script))
        .current_dir(crate::workspace_root());
    // Keep the reference tools quiet and offline.
    cmd.env("PYTHONHASHSEED", "0")
        .env("OPENVINO_TELEMETRY_OPT_OUT", "1")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

/// `cargo xtask venv`: ensures the venv and prints its python path on stdout.
pub fn venv_task() -> Result<()> {
    let python = ensure_venv()?;
    println!("{}", python.display());
    Ok(())
}
