//! `cargo xtask interop`, int8 part: ONNX Runtime's own quantizer (`quantize_static` in QDQ and
//! QOperator formats, per-tensor and per-channel, and `quantize_dynamic` with int8 and uint8 weights,
//! xtask/python/ort_quantize_real.py) quantizes each fetched real model, calibrated on real photos;
//! qtool and ORT (graph optimizations off, so ORT runs exactly the written graph) then run every
//! quantized model on the same photo, and every intermediate value is compared: 8-bit tensors
//! element by element (exact, or off by the LSBs the contract of docs/numerics.md explains), float
//! outputs by relative L2 error.

use anyhow::{Context, Result, bail};
use qtool_exec::{ExecOptions, Executor};
use qtool_tensor::{DType, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Photos used as calibration data (never the photo the comparison runs on, see `interop::image_spec`).
const CALIB_PHOTOS: [&str; 4] = [
    "chelsea.png",
    "camera.png",
    "rocket.jpg",
    "motorcycle_left.png",
];

/// How one quantized model compared.
pub struct VariantResult {
    /// 8-bit intermediate tensors compared.
    pub int_tensors: usize,
    /// Of those, bit-exact.
    pub int_exact: usize,
    /// Elements compared / elements that differ, over all 8-bit tensors.
    pub int_elems: usize,
    pub int_off: usize,
    /// Largest difference in LSBs, and the first value showing a difference (in execution order).
    pub max_lsb: i64,
    pub first_off: Option<String>,
    /// Worst relative L2 error of a float graph output.
    pub out_rel_l2: f64,
}

/// The bounds one quantized format is held to (see docs/numerics.md, "Interop with ONNX Runtime's
/// quantized models").
pub struct Bounds {
    /// Float graph outputs, relative L2 error.
    pub out_rel_l2: f64,
    /// Largest fraction of 8-bit elements allowed to differ.
    pub off_fraction: f64,
    /// Largest difference in LSBs allowed (None: only the fraction and the float outputs are bound).
    pub max_lsb: Option<i64>,
}

/// The bounds per variant (docs/numerics.md, "ONNX Runtime's quantized models"). In QOperator models
/// every op between QuantizeLinear and DequantizeLinear is an integer op, exact in both runtimes; the
/// only differences are rounding ties of float steps (the float internals of com.microsoft QLinearAdd /
/// QLinearMul / QLinearSigmoid / QLinearSoftmax), 1 LSB where they arise, at most 2 one op later. In
/// QDQ and dynamic models the layers run in float between quantization steps (QDQ: Conv/MatMul in
/// float; dynamic: everything after each ConvInteger/MatMulInteger), so a last-ulp difference of a
/// float sum that lands on a rounding tie moves one 8-bit value by 1 LSB, and that difference travels
/// and grows through every following layer: the fraction of differing elements and the float
/// outputs are bound, not the LSB count.
pub fn bounds(variant: &str) -> Bounds {
    if variant.starts_with("qop") {
        Bounds {
            out_rel_l2: 1e-2,
            off_fraction: 1e-4,
            max_lsb: Some(2),
        }
    } else {
        Bounds {
            out_rel_l2: 5e-2,
            off_fraction: 2e-1,
            max_lsb: None,
        }
    }
}

/// Writes the model's calibration photos to `path` (one array per input, the samples concatenated on
/// the batch axis: the layout both ort_quantize_real.py and `qtool quantize --data` read).
pub fn write_calibration(name: &str, eval_inputs: &[(String, Tensor)], path: &Path) -> Result<()> {
    let mut arrays = Vec::new();
    for (input, t) in eval_inputs {
        let mut samples = Vec::new();
        for photo in CALIB_PHOTOS {
            match crate::interop::photo_tensor(name, photo, t.shape())? {
                Some(s) => samples.push(s),
                // Not a photo model: seeded uniform values like the evaluation input.
                None => samples.push(
                    qtool_testkit::Rng::new(samples.len() as u64 + 1).tensor_f32(
                        t.shape(),
                        0.0,
                        1.0,
                    ),
                ),
            }
        }
        // Samples concatenated on the batch axis (the models take a batch of 1).
        let mut shape = t.shape().to_vec();
        shape[0] *= samples.len();
        let mut data = Vec::new();
        for s in &samples {
            data.extend(
                s.to_f64_vec()
                    .context("a numeric input")?
                    .into_iter()
                    .map(|v| v as f32),
            );
        }
        arrays.push((input.clone(), Tensor::from_vec(&shape, data)?));
    }
    qtool_data::npz::write_npz(&arrays, std::fs::File::create(path)?)?;
    Ok(())
}

/// What ORT's quantizer did: the variants it wrote (name, path) and those it could not (name, why).
pub type Quantized = (Vec<(String, PathBuf)>, Vec<(String, String)>);

/// Runs ORT's quantizer on `model`.
pub fn ort_quantize(
    python: &Path,
    model: &Path,
    calib: &Path,
    out_dir: &Path,
    variants: Option<&str>,
) -> Result<Quantized> {
    let mut cmd = crate::py::script_command(python, "ort_quantize_real.py");
    cmd.arg(model)
        .arg("--calib")
        .arg(calib)
        .arg("--out-dir")
        .arg(out_dir);
    if let Some(v) = variants {
        cmd.args(["--variants", v]);
    }
    let out = cmd.output()?;
    if !out.status.success() {
        bail!(
            "ort_quantize_real.py failed on {}: {}",
            model.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let variant = v["variant"].as_str().context("variant")?.to_string();
        if v["ok"].as_bool() == Some(true) {
            ok.push((variant, PathBuf::from(v["path"].as_str().context("path")?)));
        } else {
            failed.push((variant, v["error"].as_str().unwrap_or("?").to_string()));
        }
    }
    Ok((ok, failed))
}

fn is_8bit(d: DType) -> bool {
    matches!(d, DType::U8 | DType::I8)
}

/// Runs `model` in qtool and in ORT (every intermediate exposed) on `inputs` and compares.
pub fn compare_quantized(
    python: &Path,
    model_path: &Path,
    inputs: &[(String, Tensor)],
    work: &Path,
) -> Result<VariantResult> {
    let model = qtool_onnx::load(model_path)?;
    let exec = Executor::new(&model, ExecOptions { threads: Some(2) })
        .context("qtool cannot build the model")?;
    let stem = model_path
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let in_npz = work.join(format!("{stem}.in.npz"));
    let out_npz = work.join(format!("{stem}.ort.npz"));
    qtool_data::npz::write_npz(inputs, std::fs::File::create(&in_npz)?)?;
    let st = crate::py::script_command(python, "ort_intermediates.py")
        .arg(model_path)
        .arg("--inputs")
        .arg(&in_npz)
        .arg("--out")
        .arg(&out_npz)
        .status()?;
    if !st.success() {
        bail!("onnxruntime failed on {stem}");
    }
    let names: Vec<String> = std::fs::read_to_string(work.join(format!("{stem}.ort.npz.names")))?
        .lines()
        .map(str::to_string)
        .collect();
    let mut theirs: HashMap<String, Tensor> = qtool_data::load_npz(&out_npz)?.into_iter().collect();
    let mut ours: HashMap<String, Tensor> = HashMap::new();
    let outputs = exec
        .run_observed(inputs.to_vec(), &mut |n, t| {
            ours.insert(n.to_string(), t.clone());
        })
        .context("qtool failed to run the model")?;
    let mut r = VariantResult {
        int_tensors: 0,
        int_exact: 0,
        int_elems: 0,
        int_off: 0,
        max_lsb: 0,
        first_off: None,
        out_rel_l2: 0.0,
    };
    for (i, name) in names.iter().enumerate() {
        let t = theirs
            .remove(&format!("v{i}"))
            .with_context(|| format!("ORT wrote no value {name}"))?;
        let Some(o) = ours.get(name) else {
            bail!("qtool never produced '{name}'");
        };
        if o.shape() != t.shape() || o.dtype() != t.dtype() {
            bail!(
                "'{name}': qtool {:?} {:?}, ORT {:?} {:?}",
                o.dtype(),
                o.shape(),
                t.dtype(),
                t.shape()
            );
        }
        if !is_8bit(o.dtype()) {
            continue;
        }
        let (a, b) = (
            o.to_f64_vec().context("8-bit")?,
            t.to_f64_vec().context("8-bit")?,
        );
        let mut off = 0usize;
        let mut max = 0i64;
        for (x, y) in a.iter().zip(&b) {
            let d = (*x as i64 - *y as i64).abs();
            if d != 0 {
                off += 1;
                max = max.max(d);
            }
        }
        r.int_tensors += 1;
        r.int_elems += a.len();
        r.int_off += off;
        if off == 0 {
            r.int_exact += 1;
        } else if r.first_off.is_none() {
            r.first_off = Some(name.clone());
        }
        r.max_lsb = r.max_lsb.max(max);
    }
    let ort_out = {
        let out2 = work.join(format!("{stem}.ort_out.npz"));
        let st = crate::py::script_command(python, "ort_run.py")
            .arg(model_path)
            .arg("--inputs")
            .arg(&in_npz)
            .arg("--out")
            .arg(&out2)
            .args(["--opt-level", "disable"])
            .stderr(std::process::Stdio::null())
            .status()?;
        if !st.success() {
            bail!("onnxruntime failed on {stem}");
        }
        qtool_data::load_npz(&out2)?
    };
    for (oname, t) in &outputs {
        let (_, rt) = ort_out
            .iter()
            .find(|(n, _)| n == oname)
            .with_context(|| format!("ORT gave no output {oname}"))?;
        if t.dtype().is_float() {
            r.out_rel_l2 = r.out_rel_l2.max(qtool_testkit::rel_l2(t, rt));
        }
    }
    Ok(r)
}

/// Checks one result against its bounds: `None` if within, else why not.
pub fn check(variant: &str, r: &VariantResult) -> Option<String> {
    let b = bounds(variant);
    let frac = r.int_off as f64 / r.int_elems.max(1) as f64;
    let mut why = Vec::new();
    if r.out_rel_l2.is_nan() || r.out_rel_l2 > b.out_rel_l2 {
        why.push(format!(
            "output rel L2 {:.2e} > {:.0e}",
            r.out_rel_l2, b.out_rel_l2
        ));
    }
    if frac > b.off_fraction {
        why.push(format!(
            "{frac:.2e} of 8-bit elements differ (> {:.0e})",
            b.off_fraction
        ));
    }
    if let Some(m) = b.max_lsb
        && r.max_lsb > m
    {
        why.push(format!(
            "an 8-bit value differs by {} LSB (> {m})",
            r.max_lsb
        ));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// Quantizes one real model with ORT in every variant and compares each in qtool and ORT (prints a
/// row per variant; failures are pushed to `failures`).
fn interop_model(
    python: &Path,
    p: &Path,
    name: &str,
    work: &Path,
    failures: &mut Vec<String>,
) -> Result<()> {
    let model = qtool_onnx::load(p)?;
    let exec = Executor::new(&model, ExecOptions { threads: Some(1) })?;
    let inputs = crate::interop::make_inputs(name, &exec, &model)?;
    let calib = work.join(format!("{name}.calib.npz"));
    write_calibration(name, &inputs, &calib)?;
    eprintln!("quantizing {name} with ONNX Runtime...");
    let (ok, failed) = ort_quantize(python, p, &calib, work, None)?;
    for (v, e) in failed {
        let short: String = e.lines().next().unwrap_or("").chars().take(100).collect();
        println!("{name:<22} {v:<12} not compared: {short}");
    }
    for (v, path) in ok {
        match compare_quantized(python, &path, &inputs, work) {
            Ok(r) => {
                let verdict = check(&v, &r);
                println!(
                    "{:<22} {:<12} {:>14} {:>12} {:>8} {:>11.2e}  {}",
                    name,
                    v,
                    format!("{}/{}", r.int_exact, r.int_tensors),
                    format!("{}/{}", r.int_off, r.int_elems),
                    r.max_lsb,
                    r.out_rel_l2,
                    verdict.as_deref().unwrap_or("ok")
                );
                if let Some(w) = verdict {
                    failures.push(format!(
                        "{name} {v}: {w} (first differing value: {})",
                        r.first_off.as_deref().unwrap_or("-")
                    ));
                }
            }
            Err(e) => {
                println!("{name:<22} {v:<12} FAILED: {e:#}");
                failures.push(format!("{name} {v}: {e:#}"));
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    Ok(())
}

pub fn interop_int8_task(python: &Path, models: &Path) -> Result<()> {
    let work = tempfile::tempdir()?;
    let mut paths: Vec<_> = std::fs::read_dir(models)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    paths.sort();
    println!();
    println!(
        "ONNX Runtime's quantized models (quantize_static / quantize_dynamic) in qtool vs ORT"
    );
    println!(
        "{:<22} {:<12} {:>14} {:>12} {:>8} {:>11}  verdict",
        "model", "variant", "8-bit exact", "elems off", "max LSB", "out rel L2"
    );
    let mut failures = Vec::new();
    for p in &paths {
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if let Some(why) = crate::interop::excluded(&name) {
            println!("{name:<22} excluded: {why}");
            continue;
        }
        let res = interop_model(python, p, &name, work.path(), &mut failures);
        if let Err(e) = res {
            println!("{name:<22} FAILED: {e:#}");
            failures.push(format!("{name}: {e:#}"));
        }
    }
    if !failures.is_empty() {
        bail!("int8 interop failures:\n{}", failures.join("\n"));
    }
    println!("every ORT-quantized model runs in qtool within its bounds");
    Ok(())
}
