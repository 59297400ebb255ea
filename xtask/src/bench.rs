//! `cargo xtask bench`: qtool against ONNX Runtime, measured side by side in one run on the same
//! shapes and inputs, with 1 and 2 threads: single-op models (standard convolution shapes) and whole
//! real models. Reports medians and the ratio qtool / ORT (below 1 means qtool is faster). Never
//! asserts timings; the machine is shared and noisy.

use anyhow::{Context, Result, bail};
use qtool_exec::{ExecOptions, Executor};
use qtool_ir::{Graph, Model, Node, OpsetId, TensorData, Type, ValueInfo, ops};
use qtool_tensor::{DType, Tensor};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A benchmark case: a model file and its inputs.
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) group: &'static str,
    pub(crate) model: PathBuf,
    pub(crate) inputs: PathBuf,
    /// Multiply-accumulates of one run, when known (for GMAC/s).
    pub(crate) macs: Option<f64>,
}

/// A model, its inputs, and the multiply-accumulates of one run.
type BenchModel = (Model, Vec<(String, Tensor)>, f64);

/// A single Conv model: x [1, c, h, w] → y, weights random.
#[allow(clippy::too_many_arguments)]
fn conv_model(
    c: usize,
    m: usize,
    hw: usize,
    k: usize,
    stride: usize,
    group: usize,
    rng: &mut qtool_testkit::Rng,
) -> Result<BenchModel> {
    let pad = k / 2;
    let out_hw = (hw + 2 * pad - k) / stride + 1;
    let mut g = Graph::new("bench");
    let x = g.add_value("x")?;
    g.inputs.push((
        x,
        ValueInfo::of_type(Type::tensor(
            DType::F32,
            &[1, c as i64, hw as i64, hw as i64],
        )),
    ));
    let w = rng.tensor_f32(&[m, c / group, k, k], -0.1, 0.1);
    let b = rng.tensor_f32(&[m], -0.1, 0.1);
    let wv = g.add_initializer("w", TensorData::from_tensor(&w))?;
    let bv = g.add_initializer("b", TensorData::from_tensor(&b))?;
    let y = g.add_value("y")?;
    let conv = ops::Conv {
        group: Some(group as i64),
        kernel_shape: Some(vec![k as i64, k as i64]),
        pads: Some(vec![pad as i64; 4]),
        strides: Some(vec![stride as i64; 2]),
        ..Default::default()
    };
    g.add_node(
        Node::new(conv, "conv"),
        &[Some(x), Some(wv), Some(bv)],
        &[Some(y)],
    )?;
    g.outputs.push((
        y,
        ValueInfo::of_type(Type::tensor(
            DType::F32,
            &[1, m as i64, out_hw as i64, out_hw as i64],
        )),
    ));
    let model = Model {
        ir_version: Some(8),
        opset_import: vec![OpsetId {
            domain: Some(String::new()),
            version: Some(13),
        }],
        producer_name: Some("qtool-bench".into()),
        graph: g,
        ..Default::default()
    };
    let input = rng.tensor_f32(&[1, c, hw, hw], -1.0, 1.0);
    let macs = (m * out_hw * out_hw * (c / group) * k * k) as f64;
    Ok((model, vec![("x".into(), input)], macs))
}

fn write_case(
    dir: &Path,
    name: &str,
    group: &'static str,
    model: &Model,
    inputs: &[(String, Tensor)],
    macs: Option<f64>,
) -> Result<Case> {
    let mp = dir.join(format!("{name}.onnx"));
    let ip = dir.join(format!("{name}.npz"));
    qtool_onnx::save(model, &mp, &qtool_onnx::SaveOptions::default())?;
    qtool_data::npz::write_npz(inputs, std::fs::File::create(&ip)?)?;
    Ok(Case {
        name: name.to_string(),
        group,
        model: mp,
        inputs: ip,
        macs,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median milliseconds of qtool running the case.
pub(crate) fn time_qtool(case: &Case, threads: usize, repeat: usize) -> Result<f64> {
    let model = qtool_onnx::load(&case.model)?;
    let exec = Executor::new(
        &model,
        ExecOptions {
            threads: Some(threads),
        },
    )?;
    let inputs = qtool_data::load_npz(&case.inputs)?;
    for _ in 0..3 {
        exec.run(inputs.clone())?;
    }
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let i = inputs.clone();
        let t0 = Instant::now();
        exec.run(i)?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(times))
}

/// Median milliseconds of ORT for every case (one Python process per thread count).
pub(crate) fn time_ort(
    python: &Path,
    cases: &[Case],
    threads: usize,
    repeat: usize,
) -> Result<Vec<f64>> {
    let mut cmd = std::process::Command::new(python);
    cmd.arg(crate::workspace_root().join("xtask/python/ort_bench.py"))
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--repeat")
        .arg(repeat.to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for c in cases {
        cmd.arg(format!("{}:{}", c.model.display(), c.inputs.display()));
    }
    let out = cmd.output()?;
    if !out.status.success() {
        bail!(
            "ort_bench.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut res = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        res.push(v["median_ms"].as_f64().context("median_ms")?);
    }
    if res.len() != cases.len() {
        bail!("ort_bench.py timed {} of {} cases", res.len(), cases.len());
    }
    Ok(res)
}

pub fn bench_task(filter: Option<&str>, repeat: usize) -> Result<()> {
    if cfg!(debug_assertions) {
        // Timings of an unoptimized build mean nothing: run the same task from a release build.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.current_dir(crate::workspace_root()).args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "xtask",
            "--",
            "bench",
            "--repeat",
            &repeat.to_string(),
        ]);
        if let Some(f) = filter {
            cmd.args(["--filter", f]);
        }
        let st = cmd.status()?;
        if !st.success() {
            bail!("bench failed ({st})");
        }
        return Ok(());
    }
    let python = crate::py::ensure_venv()?;
    let models_dir = crate::models::ensure_models()?;
    if crate::bench_calib::bench_calib(&python, filter)? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let mut rng = qtool_testkit::Rng::new(7);
    let mut cases = Vec::new();
    // (name, c, m, hw, k, stride, group)
    let convs: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
        ("conv3x3_64_56", 64, 64, 56, 3, 1, 1),
        ("conv1x1_256to64_56", 256, 64, 56, 1, 1, 1),
        ("conv1x1_64to256_56", 64, 256, 56, 1, 1, 1),
        ("conv3x3_128_28", 128, 128, 28, 3, 1, 1),
        ("conv3x3_256_14", 256, 256, 14, 3, 1, 1),
        ("conv3x3_512_7", 512, 512, 7, 3, 1, 1),
        ("dw3x3_144_56", 144, 144, 56, 3, 1, 144),
        ("stem7x7s2_3to64_224", 3, 64, 224, 7, 2, 1),
    ];
    for &(name, c, m, hw, k, s, grp) in convs {
        let (model, inputs, macs) = conv_model(c, m, hw, k, s, grp, &mut rng)?;
        cases.push(write_case(
            dir.path(),
            name,
            "fp32 conv",
            &model,
            &inputs,
            Some(macs),
        )?);
    }
    let mut real: Vec<PathBuf> = std::fs::read_dir(&models_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    real.sort();
    for p in real {
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if crate::interop::excluded(&name).is_some() {
            continue;
        }
        let model = qtool_onnx::load(&p)?;
        let exec = Executor::new(&model, ExecOptions { threads: Some(1) })?;
        let inputs = crate::interop::make_inputs(&name, &exec, &model)?;
        let ip = dir.path().join(format!("{name}.npz"));
        qtool_data::npz::write_npz(&inputs, std::fs::File::create(&ip)?)?;
        cases.push(Case {
            name,
            group: "fp32 model",
            model: p.clone(),
            inputs: ip,
            macs: None,
        });
    }
    if let Some(f) = filter {
        cases.retain(|c| c.name.contains(f) || c.group.contains(f));
    }
    println!("qtool vs ONNX Runtime (median of {repeat} runs; ratio = qtool / ORT, < 1 is faster)");
    println!(
        "{:<12} {:<24} {:>3} {:>10} {:>10} {:>7} {:>12}",
        "group", "case", "thr", "qtool ms", "ORT ms", "ratio", "qtool GMAC/s"
    );
    for threads in [1usize, 2] {
        if cases.is_empty() {
            break;
        }
        eprintln!("timing ORT with {threads} thread(s)...");
        let ort = time_ort(&python, &cases, threads, repeat)?;
        for (c, o) in cases.iter().zip(ort) {
            eprintln!("timing qtool {} ({threads} thread(s))...", c.name);
            let q = time_qtool(c, threads, repeat)?;
            let gmacs = c
                .macs
                .map(|m| format!("{:.1}", m / (q * 1e-3) / 1e9))
                .unwrap_or_default();
            println!(
                "{:<12} {:<24} {:>3} {:>10.3} {:>10.3} {:>7.2} {:>12}",
                c.group,
                c.name,
                threads,
                q,
                o,
                q / o,
                gmacs
            );
        }
    }
    crate::bench_int8::bench_int8(&python, &models_dir, filter, repeat)?;
    Ok(())
}
