//! Dev-only helpers shared by qtool's tests: where the reference Python, the fetched real models and
//! the generated test data are, seeded random data, and tolerant comparison of float tensors.
//!
//! Tests that need the Python reference environment or the real models call [`reference_python`] /
//! [`models_dir`]. Under `cargo xtask test` (which sets `QTOOL_REQUIRE_REFERENCE=1` after installing
//! both) a missing piece is a failure; under a bare `cargo test` it is a skip that says so on stderr.

use qtool_tensor::Tensor;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .and_then(Path::parent)
        .expect("crates/testkit sits two levels below the root")
        .to_path_buf()
}

/// True when tests must not skip for lack of the reference environment or models.
pub fn reference_required() -> bool {
    std::env::var("QTOOL_REQUIRE_REFERENCE").is_ok_and(|v| v == "1")
}

fn missing(what: &str) -> Option<PathBuf> {
    if reference_required() {
        panic!("{what} is missing, and QTOOL_REQUIRE_REFERENCE=1: run `cargo xtask test`");
    }
    eprintln!("SKIP: {what} is missing (run `cargo xtask test` to install it)");
    None
}

/// The reference Python (the venv made by `cargo xtask venv`): `QTOOL_PYTHON` or `<root>/.venv/bin/python`.
pub fn reference_python() -> Option<PathBuf> {
    let p = std::env::var_os("QTOOL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    if p.exists() {
        Some(p)
    } else {
        missing("the Python reference environment (.venv)")
    }
}

/// The directory of real models fetched by `cargo xtask models`: `QTOOL_MODELS_DIR` or `<root>/.cache/models`.
pub fn models_dir() -> Option<PathBuf> {
    let p = std::env::var_os("QTOOL_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache/models"));
    if p.join("manifest.json").exists() {
        Some(p)
    } else {
        missing("the real models (.cache/models)")
    }
}

/// Every `.onnx` file of the models directory, sorted.
pub fn real_models() -> Vec<PathBuf> {
    let Some(dir) = models_dir() else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A python script of `xtask/python` run with the reference python.
pub fn python_script(python: &Path, script: &str) -> Command {
    let mut c = Command::new(python);
    c.arg(workspace_root().join("xtask/python").join(script))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    c
}

/// A small, seeded, dependency-free PRNG (SplitMix64) for reproducible test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    /// Uniform integer in [lo, hi].
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as i64
    }
    /// A float tensor with uniform values in [lo, hi).
    pub fn tensor_f32(&mut self, shape: &[usize], lo: f32, hi: f32) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec(
            shape,
            (0..n).map(|_| self.uniform(lo, hi)).collect::<Vec<f32>>(),
        )
        .expect("shape and data agree")
    }
}

/// Relative L2 error `||a - b|| / max(||b||, tiny)` of two float tensors of equal shape.
pub fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    let (x, y) = (
        a.to_f64_vec().expect("numeric"),
        b.to_f64_vec().expect("numeric"),
    );
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    let num: f64 = x
        .iter()
        .zip(&y)
        .map(|(p, q)| (p - q) * (p - q))
        .sum::<f64>()
        .sqrt();
    let den: f64 = y.iter().map(|q| q * q).sum::<f64>().sqrt();
    num / den.max(1e-30)
}

/// Checks `|a - b| <= atol + rtol * |b|` element-wise (NaNs must match), like numpy's `allclose`.
pub fn assert_allclose(a: &Tensor, b: &Tensor, rtol: f64, atol: f64, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes differ");
    let (x, y) = (
        a.to_f64_vec().expect("numeric"),
        b.to_f64_vec().expect("numeric"),
    );
    for (i, (p, q)) in x.iter().zip(&y).enumerate() {
        let ok = (p.is_nan() && q.is_nan()) || p == q || (p - q).abs() <= atol + rtol * q.abs();
        assert!(
            ok,
            "{what}: element {i} differs: {p} vs {q} (rtol {rtol}, atol {atol})"
        );
    }
}
