//! qtool's library API: the operations the CLI offers (inspect, exec, and later the YAML pipeline),
//! built on the lower crates. Other tools can call these directly.

pub mod calibrate;
pub mod config;
pub mod convert;
pub mod eval;
pub mod exec;
pub mod inspect;
pub mod manifest;
pub mod quantize;
pub mod report;
pub mod run;

pub use inspect::{InspectReport, QuantFormat, inspect};
pub use qtool_calib as calib;
pub use qtool_ir as ir;
pub use qtool_onnx as onnx;

/// Writes a file atomically: a temporary file in the same directory, synced, then renamed.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))?;
    Ok(())
}
