//! `cargo xtask interop`: runs every fetched real model in qtool and in ONNX Runtime (the pinned
//! reference venv) on the same deterministic inputs and compares the FP32 outputs (relative L2 error
//! per output, bound 1e-4). Prints a table; fails when a model exceeds the bound or cannot run.

use anyhow::{Context, Result, bail};
use qtool_exec::{ExecOptions, Executor};
use qtool_tensor::{DType, Tensor};
use std::path::Path;
use std::time::Instant;

/// The bound of the FP32 comparison (relative L2 error per output).
pub const FP32_REL_L2: f64 = 1e-4;

/// Input shapes for the real models whose declared inputs have free dimensions.
fn input_shape(model: &str, input: &str, declared: &[Option<usize>]) -> Result<Vec<usize>> {
    let fixed = |dims: &[usize]| -> Vec<usize> {
        declared
            .iter()
            .zip(dims)
            .map(|(d, f)| d.unwrap_or(*f))
            .collect()
    };
    Ok(match (model, declared.len()) {
        ("ppocrv4_det", 4) => fixed(&[1, 3, 320, 320]),
        ("ppocrv4_rec", 4) => fixed(&[1, 3, 48, 320]),
        ("ppocr_mobile_v2_cls", 4) => fixed(&[1, 3, 48, 192]),
        ("nudenet_320n", 4) => fixed(&[1, 3, 320, 320]),
        ("ddddocr_ocr_old", 4) => fixed(&[1, 1, 64, 128]),
        (_, _) if declared.iter().all(|d| d.is_some()) => {
            declared.iter().map(|d| d.unwrap()).collect()
        }
        _ => bail!(
            "no input shape known for {model}:{input} (declared {declared:?}); add it to xtask/src/interop.rs"
        ),
    })
}

/// Why a model is not compared, when qtool cannot run it by design (kept short and explicit).
pub fn excluded(model: &str) -> Option<&'static str> {
    match model {
        "ddddocr_ocr_old" => Some(
            "uses com.microsoft::DynamicQuantizeLSTM, an ONNX Runtime contrib op outside qtool's op set",
        ),
        _ => None,
    }
}

/// One model's comparison.
pub struct ModelResult {
    pub name: String,
    pub outputs: Vec<(String, f64)>,
    pub qtool_ms: f64,
}

/// How a real model's image input is made from a sample photo: file, channels, and the value mapping
/// `(pixel / 255 - mean) / std` (`raw`: the 0..255 values themselves).
struct ImageSpec {
    file: &'static str,
    channels: usize,
    mean: f32,
    std: f32,
    raw: bool,
}

fn image_spec(model: &str) -> Option<ImageSpec> {
    Some(match model {
        // PaddleOCR: detection uses ImageNet-like normalization, recognition and direction (x - 0.5) / 0.5.
        "ppocrv4_det" => ImageSpec {
            file: "page.png",
            channels: 3,
            mean: 0.45,
            std: 0.226,
            raw: false,
        },
        "ppocrv4_rec" => ImageSpec {
            file: "text.png",
            channels: 3,
            mean: 0.5,
            std: 0.5,
            raw: false,
        },
        "ppocr_mobile_v2_cls" => ImageSpec {
            file: "text.png",
            channels: 3,
            mean: 0.5,
            std: 0.5,
            raw: false,
        },
        // YOLOv8: x / 255.
        "nudenet_320n" => ImageSpec {
            file: "astronaut.png",
            channels: 3,
            mean: 0.0,
            std: 1.0,
            raw: false,
        },
        // YOLOX-style: raw pixel values.
        "ddddocr_det" => ImageSpec {
            file: "coffee.png",
            channels: 3,
            mean: 0.0,
            std: 1.0,
            raw: true,
        },
        _ => return None,
    })
}

/// The model's photo input made from another photo `file` of the sample set (int8 calibration data,
/// see `interop_int8`); `None` when the model takes no photo.
pub(crate) fn photo_tensor(
    model: &str,
    file: &'static str,
    shape: &[usize],
) -> Result<Option<Tensor>> {
    let Some(spec) = image_spec(model) else {
        return Ok(None);
    };
    image_tensor(&ImageSpec { file, ..spec }, shape).map(Some)
}

/// A real photo as an NCHW f32 tensor of `shape` ([1, C, H, W]), resized with a triangle filter.
fn image_tensor(spec: &ImageSpec, shape: &[usize]) -> Result<Tensor> {
    let dir = crate::models::ensure_images()?;
    let path = dir.join(spec.file);
    let img = image::open(&path)
        .with_context(|| format!("decoding {}", path.display()))?
        .to_rgb8();
    let (h, w) = (shape[2], shape[3]);
    let img = image::imageops::resize(
        &img,
        w as u32,
        h as u32,
        image::imageops::FilterType::Triangle,
    );
    let c = spec.channels.min(shape[1]);
    let mut data = vec![0f32; shape[1] * h * w];
    for ch in 0..shape[1] {
        for y in 0..h {
            for x in 0..w {
                let p = img.get_pixel(x as u32, y as u32)[ch.min(c - 1).min(2)] as f32;
                data[(ch * h + y) * w + x] = if spec.raw {
                    p
                } else {
                    (p / 255.0 - spec.mean) / spec.std
                };
            }
        }
    }
    Ok(Tensor::from_vec(shape, data)?)
}

/// Deterministic inputs for a model: a real photo preprocessed for it where one is known (see
/// [`image_spec`]), else uniform values in [0, 1) seeded by the input name.
pub fn make_inputs(
    model_name: &str,
    exec: &Executor,
    model: &qtool_ir::Model,
) -> Result<Vec<(String, Tensor)>> {
    let g = &model.graph;
    let mut out = Vec::new();
    for (v, info) in &g.inputs {
        if g.initializer(*v).is_some() {
            continue;
        }
        let name = g.value_name(*v).to_string();
        let t = info
            .ty
            .as_ref()
            .and_then(|t| t.as_tensor())
            .with_context(|| format!("input {name} is not a tensor"))?;
        let declared: Vec<Option<usize>> = t
            .shape
            .as_ref()
            .map(|s| {
                s.iter()
                    .map(|d| match d.value {
                        qtool_ir::DimValue::Known(k) if k > 0 => Some(k as usize),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let shape = input_shape(model_name, &name, &declared)?;
        let seed = name.bytes().fold(0xC0FFEEu64, |h, b| {
            h.wrapping_mul(31).wrapping_add(b as u64)
        });
        let mut rng = qtool_testkit::Rng::new(seed);
        let tensor = match t.elem {
            Some(DType::F32) | None
                if shape.len() == 4 && shape[0] == 1 && image_spec(model_name).is_some() =>
            {
                image_tensor(&image_spec(model_name).expect("checked"), &shape)?
            }
            Some(DType::F32) | None => rng.tensor_f32(&shape, 0.0, 1.0),
            Some(d) => bail!("input {name} has type {d}; only float inputs are generated"),
        };
        out.push((name, tensor));
    }
    let _ = exec;
    Ok(out)
}

fn compare_model(python: &Path, path: &Path, work: &Path) -> Result<ModelResult> {
    let name = path.file_stem().unwrap().to_string_lossy().to_string();
    let model = qtool_onnx::load(path)?;
    let exec = Executor::new(&model, ExecOptions { threads: None })?;
    let inputs = make_inputs(&name, &exec, &model)?;
    let in_npz = work.join(format!("{name}.in.npz"));
    let out_npz = work.join(format!("{name}.ort.npz"));
    qtool_data::npz::write_npz(&inputs, std::fs::File::create(&in_npz)?)?;
    let status = std::process::Command::new(python)
        .arg(crate::workspace_root().join("xtask/python/ort_run.py"))
        .arg(path)
        .args(["--inputs"])
        .arg(&in_npz)
        .arg("--out")
        .arg(&out_npz)
        .args(["--opt-level", "disable"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .status()?;
    if !status.success() {
        bail!("onnxruntime failed on {name}");
    }
    let t0 = Instant::now();
    let ours = exec.run(inputs)?;
    let qtool_ms = t0.elapsed().as_secs_f64() * 1e3;
    let theirs = qtool_data::load_npz(&out_npz)?;
    let mut outputs = Vec::new();
    for (oname, t) in &ours {
        let r = theirs
            .iter()
            .find(|(n, _)| n == oname)
            .with_context(|| format!("ORT gave no output {oname}"))?;
        if t.shape() != r.1.shape() {
            bail!(
                "{name}: output {oname} has shape {:?} in qtool, {:?} in ORT",
                t.shape(),
                r.1.shape()
            );
        }
        outputs.push((oname.clone(), qtool_testkit::rel_l2(t, &r.1)));
    }
    Ok(ModelResult {
        name,
        outputs,
        qtool_ms,
    })
}

pub fn interop_task(int8_only: bool, calib: bool) -> Result<()> {
    let python = crate::py::ensure_venv()?;
    let models = crate::models::ensure_models()?;
    if calib {
        return crate::interop_calib::interop_calib_task(&python, &models);
    }
    if int8_only {
        return crate::interop_int8::interop_int8_task(&python, &models);
    }
    let work = tempfile::tempdir()?;
    let mut paths: Vec<_> = std::fs::read_dir(&models)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    paths.sort();
    let mut failures = Vec::new();
    println!(
        "{:<22} {:<40} {:>12} {:>10}",
        "model", "output", "rel L2", "qtool ms"
    );
    for (i, p) in paths.iter().enumerate() {
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        eprintln!("[{}/{}] {name}", i + 1, paths.len());
        if let Some(why) = excluded(&name) {
            println!("{name:<22} excluded: {why}");
            continue;
        }
        match compare_model(&python, p, work.path()) {
            Ok(r) => {
                for (o, e) in &r.outputs {
                    let flag = if *e <= FP32_REL_L2 { "" } else { "  > bound" };
                    println!(
                        "{:<22} {:<40} {:>12.3e} {:>10.1}{flag}",
                        r.name, o, e, r.qtool_ms
                    );
                    if e.is_nan() || *e > FP32_REL_L2 {
                        failures.push(format!(
                            "{}: output {o} rel L2 {e:.3e} > {FP32_REL_L2:e}",
                            r.name
                        ));
                    }
                }
            }
            Err(e) => {
                println!("{name:<22} FAILED: {e:#}");
                failures.push(format!("{name}: {e:#}"));
            }
        }
    }
    if !failures.is_empty() {
        bail!("interop failures:\n{}", failures.join("\n"));
    }
    println!("all models within rel L2 {FP32_REL_L2:e} of ONNX Runtime");
    crate::interop_int8::interop_int8_task(&python, &models)?;
    crate::interop_passes::interop_passes_task(&python, &models)?;
    crate::interop_calib::interop_calib_task(&python, &models)
}
