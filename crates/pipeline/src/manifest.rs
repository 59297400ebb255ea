//! The run manifest of `qtool run` (schema `qtool.run-manifest`, version 1): sha256 of the
//! configuration, the model, every data file (streamed) and every output; qtool's version; every
//! chosen parameter with its default filled in; what each pass rewrote and skipped, and why; the
//! metrics of each output. Everything but the `timing` section is a pure function of the inputs.

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// The schema name of the manifest.
pub const MANIFEST_SCHEMA: &str = "qtool.run-manifest";
/// The schema version of the manifest.
pub const MANIFEST_VERSION: u32 = 1;

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_reader(h: &mut Sha256, r: &mut dyn Read, what: &Path) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = r
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", what.display()))?;
        if k == 0 {
            return Ok(n);
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
}

/// The sha256 of a file's contents, read in chunks (hex).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    hash_reader(&mut h, &mut f, path)?;
    Ok(hex(&h.finalize()))
}

/// Every regular file under `dir`, as sorted relative paths with `/` separators.
fn walk(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))? {
            let e = e.with_context(|| format!("cannot read {}", d.display()))?;
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                let rel = p.strip_prefix(dir).unwrap_or(&p);
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A hashed input: a file, or a directory (its sorted file list with every file's contents:
/// for each file `relative/path`, NUL, its length as 8 little-endian bytes, its bytes).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct HashedInput {
    /// The path as written in the configuration.
    pub path: String,
    /// `file` or `directory`.
    pub kind: String,
    /// Files hashed (1 for a file).
    pub files: usize,
    pub bytes: u64,
    pub sha256: String,
}

/// Hashes a file or a directory (see [`HashedInput`]).
pub fn hash_input(display: &str, path: &Path) -> Result<HashedInput> {
    if path.is_dir() {
        let files = walk(path)?;
        let mut h = Sha256::new();
        let mut bytes = 0u64;
        for rel in &files {
            let p = path.join(rel);
            let len = std::fs::metadata(&p)
                .with_context(|| format!("cannot read {}", p.display()))?
                .len();
            h.update(rel.as_bytes());
            h.update([0u8]);
            h.update(len.to_le_bytes());
            let mut f =
                std::fs::File::open(&p).with_context(|| format!("cannot open {}", p.display()))?;
            bytes += hash_reader(&mut h, &mut f, &p)?;
        }
        Ok(HashedInput {
            path: display.to_string(),
            kind: "directory".into(),
            files: files.len(),
            bytes,
            sha256: hex(&h.finalize()),
        })
    } else {
        let mut h = Sha256::new();
        let mut f =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let bytes = hash_reader(&mut h, &mut f, path)?;
        Ok(HashedInput {
            path: display.to_string(),
            kind: "file".into(),
            files: 1,
            bytes,
            sha256: hex(&h.finalize()),
        })
    }
}

/// A data set of the run.
#[derive(Clone, Debug, Serialize)]
pub struct DataRecord {
    /// `calibration` or `evaluation`.
    pub role: String,
    #[serde(flatten)]
    pub input: HashedInput,
    pub labels: Option<HashedInput>,
}

/// A node a pass rewrote.
#[derive(Clone, Debug, Serialize)]
pub struct RewriteRecord {
    pub node: String,
    pub what: String,
}

/// A node a pass left alone, and why.
#[derive(Clone, Debug, Serialize)]
pub struct SkipRecord {
    pub node: String,
    pub op_type: String,
    pub reason: String,
}

/// What one pass did.
#[derive(Clone, Debug, Serialize)]
pub struct PassRecord {
    pub pass: String,
    pub options: serde_json::Value,
    pub rewritten: Vec<RewriteRecord>,
    pub skipped: Vec<SkipRecord>,
}

impl PassRecord {
    pub fn new(
        pass: &str,
        options: &serde_json::Value,
        r: &qtool_passes::PassReport,
    ) -> PassRecord {
        PassRecord {
            pass: pass.to_string(),
            options: options.clone(),
            rewritten: r
                .rewritten
                .iter()
                .map(|w| RewriteRecord {
                    node: w.node.clone(),
                    what: w.what.clone(),
                })
                .collect(),
            skipped: r
                .skipped
                .iter()
                .map(|s| SkipRecord {
                    node: s.node.clone(),
                    op_type: s.op_type.clone(),
                    reason: s.reason.clone(),
                })
                .collect(),
        }
    }
}

/// The calibration of the run.
#[derive(Clone, Debug, Serialize)]
pub struct CalibrationRecord {
    /// `data` (collected in this run) or `stats` (a statistics file reused).
    pub source: String,
    pub samples: u64,
    pub tensors: usize,
    pub ranges: usize,
    /// The saved statistics file (path as written) and its sha256.
    pub saved_stats: Option<OutputFile>,
    pub warnings: Vec<String>,
}

/// A file the run wrote.
#[derive(Clone, Debug, Serialize)]
pub struct OutputFile {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The evaluation metrics of one output, rounded for reading (full values are in the report JSON).
#[derive(Clone, Debug, Serialize)]
pub struct MetricsRecord {
    pub samples: usize,
    /// Lowest SQNR over the model outputs (dB; `null` when identical to FP32).
    pub sqnr_db: Option<f64>,
    pub top1_agreement: Option<f64>,
    pub top5_agreement: Option<f64>,
    pub accuracy: Option<f64>,
    pub accuracy_fp32: Option<f64>,
    /// The tensors with the lowest SQNR (worst first), when per-layer evaluation is on.
    pub worst_layers: Vec<(String, Option<f64>)>,
}

/// One output model.
#[derive(Clone, Debug, Serialize)]
pub struct OutputRecord {
    pub format: String,
    #[serde(flatten)]
    pub file: OutputFile,
    /// Nodes the quantization pass (`insert_qdq` or `quantize_dynamic`) rewrote.
    pub quantized_nodes: usize,
    /// Nodes the quantization and conversion passes skipped.
    pub skipped_nodes: usize,
    pub passes: Vec<PassRecord>,
    pub metrics: Option<MetricsRecord>,
}

/// The whole manifest.
#[derive(Clone, Debug, Serialize)]
pub struct Manifest {
    pub schema: String,
    pub version: u32,
    pub qtool_version: String,
    pub config: HashedInput,
    pub model: HashedInput,
    pub data: Vec<DataRecord>,
    pub stats: Option<HashedInput>,
    /// Every setting, with defaults filled in.
    pub parameters: serde_json::Value,
    pub preprocess: Vec<PassRecord>,
    pub calibration: Option<CalibrationRecord>,
    pub outputs: Vec<OutputRecord>,
    pub report: Vec<OutputFile>,
    /// Wall-clock seconds per stage: the only part that differs between two runs.
    pub timing: BTreeMap<String, f64>,
}

impl Manifest {
    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("manifest serializes");
        s.push('\n');
        s
    }
}

/// Rounds to `digits` significant decimals for the manifest (`None` for non-finite values).
pub fn round(x: f64, digits: i32) -> Option<f64> {
    if !x.is_finite() {
        return None;
    }
    let f = 10f64.powi(digits);
    Some((x * f).round() / f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_hash_covers_names_and_contents() {
        let d = tempfile_dir();
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("a.npy"), b"one").unwrap();
        std::fs::write(d.join("sub/b.npy"), b"two").unwrap();
        let h1 = hash_input("x", &d).unwrap();
        assert_eq!((h1.files, h1.bytes), (2, 6));
        std::fs::write(d.join("sub/b.npy"), b"tw0").unwrap();
        let h2 = hash_input("x", &d).unwrap();
        assert_ne!(h1.sha256, h2.sha256);
        std::fs::rename(d.join("sub/b.npy"), d.join("sub/c.npy")).unwrap();
        let h3 = hash_input("x", &d).unwrap();
        assert_ne!(h2.sha256, h3.sha256);
        // A file hashes like sha256 of its bytes.
        let f = hash_input("a", &d.join("a.npy")).unwrap();
        assert_eq!(
            f.sha256,
            "7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("qtool-manifest-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
