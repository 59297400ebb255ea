//! `qtool exec`: run a model on tensors from files (.npy, .npz, ONNX TensorProto .pb) and write each
//! output as `<output name>.npy`.

use anyhow::{Context, Result, bail};
use qtool_exec::{ExecOptions, Executor};
use qtool_ir::Model;
use qtool_tensor::Tensor;
use std::path::{Path, PathBuf};

/// One `--input` argument: `NAME=FILE`, or a bare `FILE` (for single-input models, or `.npz`).
#[derive(Clone, Debug, PartialEq)]
pub struct InputArg {
    pub name: Option<String>,
    pub path: PathBuf,
}

impl std::str::FromStr for InputArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        // A path may contain '=' too; treat "NAME=FILE" only when the part before '=' is not a path.
        match s.split_once('=') {
            Some((n, p)) if !n.is_empty() && !n.contains('/') && !p.is_empty() => Ok(InputArg {
                name: Some(n.to_string()),
                path: PathBuf::from(p),
            }),
            _ if s.is_empty() => Err("empty --input".into()),
            _ => Ok(InputArg {
                name: None,
                path: PathBuf::from(s),
            }),
        }
    }
}

fn read_tensor_file(path: &Path) -> Result<Vec<(Option<String>, Tensor)>> {
    if path.is_dir() {
        bail!(
            "{} is a directory, expected a .npy, .npz or .pb file",
            path.display()
        );
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    Ok(match ext.as_str() {
        "npy" => vec![(None, qtool_data::load_npy(path)?)],
        "npz" => qtool_data::load_npz(path)?
            .into_iter()
            .map(|(k, t)| (Some(k), t))
            .collect(),
        "pb" => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let td = qtool_onnx::read_tensor_pb(&bytes)
                .with_context(|| format!("{}: not an ONNX TensorProto", path.display()))?;
            let name = td.name.clone().filter(|n| !n.is_empty());
            let t = td
                .to_tensor()
                .with_context(|| format!("{}: bad tensor data", path.display()))?;
            vec![(name, t)]
        }
        _ => bail!(
            "{}: unknown input file type (expected .npy, .npz or .pb)",
            path.display()
        ),
    })
}

/// Resolves `--input` arguments to named tensors for `exec`.
pub fn load_inputs(exec: &Executor, args: &[InputArg]) -> Result<Vec<(String, Tensor)>> {
    let names: Vec<String> = exec.input_names().iter().map(|s| s.to_string()).collect();
    let mut out: Vec<(String, Tensor)> = Vec::new();
    for a in args {
        let tensors = read_tensor_file(&a.path)?;
        let many = tensors.len() > 1;
        for (file_name, t) in tensors {
            let name = match (&a.name, file_name) {
                (Some(n), _) if !many => n.clone(),
                (_, Some(k)) if many || a.name.is_none() && names.contains(&k) => k,
                (None, _) if names.len() == 1 => names[0].clone(),
                (None, _) => bail!(
                    "{}: the model has {} inputs ({}); say which one with --input NAME=FILE",
                    a.path.display(),
                    names.len(),
                    names.join(", ")
                ),
                (Some(n), _) => n.clone(),
            };
            if !names.contains(&name) {
                bail!(
                    "'{name}' (from {}) is not an input of the model; its inputs are: {}",
                    a.path.display(),
                    names.join(", ")
                );
            }
            if out.iter().any(|(n, _)| *n == name) {
                bail!("input '{name}' is given twice");
            }
            out.push((name, t));
        }
    }
    Ok(out)
}

/// A file name for an output: the output name with path separators and odd characters replaced.
pub fn output_file_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{s}.npy")
}

/// Runs `model` on the inputs and writes `<output>.npy` files into `out_dir` (created if needed).
/// Returns the written paths.
pub fn exec_to_dir(
    model: &Model,
    inputs: &[InputArg],
    out_dir: &Path,
    threads: Option<usize>,
) -> Result<Vec<PathBuf>> {
    exec_to_dir_profiled(model, inputs, out_dir, threads, 0).map(|(w, _)| w)
}

/// [`exec_to_dir`]; with `profile_runs > 0`, one warm-up run and then `profile_runs` timed runs
/// (unbatched), whose per-node profile is returned beside the written paths.
pub fn exec_to_dir_profiled(
    model: &Model,
    inputs: &[InputArg],
    out_dir: &Path,
    threads: Option<usize>,
    profile_runs: usize,
) -> Result<(Vec<PathBuf>, Option<qtool_exec::Profile>)> {
    let exec = Executor::new(model, ExecOptions { threads })?;
    let tensors = load_inputs(&exec, inputs)?;
    let (outputs, profile) = if profile_runs > 0 {
        exec.run(tensors.clone())?;
        let (o, p) = exec.run_profiled(tensors, profile_runs)?;
        (o, Some(p))
    } else {
        (exec.run_batched(tensors)?, None)
    };
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut written = Vec::new();
    for (name, t) in outputs {
        let path = out_dir.join(output_file_name(&name));
        let bytes = qtool_data::npy::npy_bytes(&t).with_context(|| format!("output '{name}'"))?;
        crate::write_atomic(&path, &bytes)?;
        written.push(path);
    }
    Ok((written, profile))
}
