//! `cargo xtask bench`, int8 part: qtool against ONNX Runtime on int8 ops and whole int8 models,
//! side by side in one run with 1 and 2 threads. Single ops (xtask/python/ort_bench_int8.py makes
//! them): QLinearConv on ResNet stage shapes, a depthwise 3x3, the 7x7 stride-2 stem, ConvInteger
//! with int8 weights, MatMulInteger and QLinearMatMul. Whole models: a ResNet-18-style CNN and real
//! models quantized to QOperator int8 both by ORT's `quantize_static` and by qtool's own passes
//! (`qtool quantize --format qlinear`), each timed in both runtimes. Prints median ms, the ratio
//! qtool / ORT, GMAC/s and the fraction of the machine's int8 peak (see [`Peak`]).

use crate::bench::{Case, time_ort, time_qtool};
use anyhow::{Context, Result, bail};
use qtool_exec::{ExecOptions, Executor};
use std::path::{Path, PathBuf};

/// Real models quantized for the whole-model rows (small and medium; the larger ones only add time).
const REAL_MODELS: [&str; 2] = ["ppocr_mobile_v2_cls", "ppocrv4_det"];

/// The int8 peak of one core: multiply-accumulates per cycle times the clock.
///
/// VNNI: `vpdpbusd` on 512 bits does 64 u8×i8 MACs; Xeon cores with two 512-bit FMA ports issue two
/// per cycle (Intel's port tables, not measured here), so 128 MACs/cycle. AMX (`tdpbusd`, when the
/// CPU has amx_int8) does 1024 MACs/cycle (16x64 by 64x16 int8 tiles in 16 cycles). The clock is the
/// `cpu MHz` /proc/cpuinfo reports (nominal for a VM; turbo may be higher, so fractions can be
/// slightly optimistic).
struct Peak {
    ghz: f64,
    amx: bool,
}

impl Peak {
    const VNNI_MACS: f64 = 128.0;
    const AMX_MACS: f64 = 1024.0;

    fn detect() -> Peak {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let ghz = info
            .lines()
            .find(|l| l.starts_with("cpu MHz"))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0.0, |mhz| mhz / 1e3);
        let amx = info
            .lines()
            .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "amx_int8"));
        Peak { ghz, amx }
    }

    /// Peak GMAC/s of `threads` cores with VNNI.
    fn vnni(&self, threads: usize) -> f64 {
        Self::VNNI_MACS * self.ghz * threads as f64
    }
}

/// Runs ort_bench_int8.py: the single-op int8 cases and the FP32 ResNet-style model.
fn make_cases(python: &Path, dir: &Path) -> Result<Vec<Case>> {
    let out = crate::py::script_command(python, "ort_bench_int8.py")
        .arg("--out-dir")
        .arg(dir)
        .output()?;
    if !out.status.success() {
        bail!(
            "ort_bench_int8.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut cases = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let s = |k: &str| -> Result<String> {
            Ok(v[k].as_str().with_context(|| k.to_string())?.to_string())
        };
        let group: &'static str = match s("group")?.as_str() {
            "int8 qlinearconv" => "int8 qconv",
            "int8 convinteger" => "int8 convint",
            "int8 matmul" => "int8 matmul",
            _ => "fp32 for int8",
        };
        cases.push(Case {
            name: s("name")?,
            group,
            model: PathBuf::from(s("model")?),
            inputs: PathBuf::from(s("inputs")?),
            macs: v["macs"].as_f64(),
        });
    }
    Ok(cases)
}

/// Builds the qtool binary (release) and returns its path.
fn qtool_binary() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = std::process::Command::new(cargo)
        .current_dir(crate::workspace_root())
        .args(["build", "--release", "--quiet", "-p", "qtool"])
        .status()?;
    if !st.success() {
        bail!("building qtool failed");
    }
    let exe = crate::workspace_root()
        .join("target/release")
        .join(format!("qtool{}", std::env::consts::EXE_SUFFIX));
    Ok(exe)
}

/// Quantizes the FP32 models (the ResNet-style one and [`REAL_MODELS`]) with ORT (QOperator,
/// per-channel) and with qtool (qlinear, per-channel), returning the whole-model cases.
fn whole_model_cases(
    python: &Path,
    models_dir: &Path,
    fp32: Vec<Case>,
    dir: &Path,
) -> Result<Vec<Case>> {
    let qtool = qtool_binary()?;
    let mut sources: Vec<(String, PathBuf, PathBuf, Option<f64>)> = fp32
        .into_iter()
        .map(|c| (c.name, c.model, c.inputs, c.macs))
        .collect();
    for name in REAL_MODELS {
        let p = models_dir.join(format!("{name}.onnx"));
        let model = qtool_onnx::load(&p)?;
        let exec = Executor::new(&model, ExecOptions { threads: Some(1) })?;
        let inputs = crate::interop::make_inputs(name, &exec, &model)?;
        let ip = dir.join(format!("{name}.npz"));
        qtool_data::npz::write_npz(&inputs, std::fs::File::create(&ip)?)?;
        sources.push((name.to_string(), p, ip, None));
    }
    let mut cases = Vec::new();
    for (name, model, inputs, macs) in sources {
        let inp = qtool_data::load_npz(&inputs)?;
        let calib = dir.join(format!("{name}.calib.npz"));
        crate::interop_int8::write_calibration(&name, &inp, &calib)?;
        eprintln!("quantizing {name} with ONNX Runtime and with qtool...");
        let (ok, failed) =
            crate::interop_int8::ort_quantize(python, &model, &calib, dir, Some("qop_channel"))?;
        for (v, e) in failed {
            eprintln!("{name}: ORT's quantizer ({v}) failed: {e}");
        }
        for (_, path) in ok {
            cases.push(Case {
                name: format!("{name}.ort_q"),
                group: "int8 model",
                model: path,
                inputs: inputs.clone(),
                macs,
            });
        }
        let ours = dir.join(format!("{name}.qtool_q.onnx"));
        let out = std::process::Command::new(&qtool)
            .arg("quantize")
            .arg(&model)
            .arg("--data")
            .arg(&calib)
            .args(["--format", "qlinear", "--method", "minmax", "-o"])
            .arg(&ours)
            .output()?;
        if out.status.success() {
            cases.push(Case {
                name: format!("{name}.qtool_q"),
                group: "int8 model",
                model: ours,
                inputs: inputs.clone(),
                macs,
            });
        } else {
            eprintln!(
                "{name}: qtool quantize failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(cases)
}

/// The int8 benchmark (see the module docs); `filter` keeps cases whose name or group contains it.
pub fn bench_int8(
    python: &Path,
    models_dir: &Path,
    filter: Option<&str>,
    repeat: usize,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let all = make_cases(python, dir.path())?;
    let (fp32, mut cases): (Vec<Case>, Vec<Case>) =
        all.into_iter().partition(|c| c.group == "fp32 for int8");
    let keep = |c: &Case| filter.is_none_or(|f| c.name.contains(f) || c.group.contains(f));
    cases.retain(keep);
    let wants_models = filter.is_none_or(|f| {
        "int8 model".contains(f)
            || "resnet18_style".contains(f)
            || REAL_MODELS.iter().any(|m| m.contains(f))
    });
    if wants_models {
        let mut whole = whole_model_cases(python, models_dir, fp32, dir.path())?;
        whole.retain(keep);
        cases.extend(whole);
    }
    if cases.is_empty() {
        return Ok(());
    }
    let peak = Peak::detect();
    println!();
    println!(
        "int8: qtool vs ONNX Runtime (median of {repeat} runs; ratio = qtool / ORT, < 1 is faster)"
    );
    println!(
        "peak = {} MACs/cycle/core (2 x 512-bit vpdpbusd, 64 MACs each; nominal, from Intel's port \
         tables) x {:.2} GHz (/proc/cpuinfo) = {:.0} GMAC/s per core{}",
        Peak::VNNI_MACS,
        peak.ghz,
        peak.vnni(1),
        if peak.amx {
            format!(
                "; this CPU also has AMX-INT8 ({} MACs/cycle/core = {:.0} GMAC/s), which ORT's MLAS \
                 uses and qtool does not",
                Peak::AMX_MACS,
                Peak::AMX_MACS * peak.ghz
            )
        } else {
            String::new()
        }
    );
    println!(
        "{:<12} {:<30} {:>3} {:>9} {:>9} {:>6} {:>8} {:>8} {:>7} {:>7}",
        "group",
        "case",
        "thr",
        "qtool ms",
        "ORT ms",
        "ratio",
        "q GMAC/s",
        "O GMAC/s",
        "q %VNNI",
        "O %VNNI"
    );
    for threads in [1usize, 2] {
        eprintln!("timing ORT (int8) with {threads} thread(s)...");
        let ort = time_ort(python, &cases, threads, repeat)?;
        for (c, o) in cases.iter().zip(ort) {
            eprintln!("timing qtool {} ({threads} thread(s))...", c.name);
            let q = match time_qtool(c, threads, repeat) {
                Ok(q) => q,
                Err(e) => {
                    println!(
                        "{:<12} {:<30} {threads:>3} FAILED in qtool: {e:#}",
                        c.group, c.name
                    );
                    continue;
                }
            };
            let (qg, og, qp, op) = match c.macs {
                Some(m) => {
                    let (qg, og) = (m / (q * 1e-3) / 1e9, m / (o * 1e-3) / 1e9);
                    let p = peak.vnni(threads);
                    (
                        format!("{qg:.1}"),
                        format!("{og:.1}"),
                        format!("{:.0}%", 100.0 * qg / p),
                        format!("{:.0}%", 100.0 * og / p),
                    )
                }
                None => Default::default(),
            };
            println!(
                "{:<12} {:<30} {:>3} {:>9.3} {:>9.3} {:>6.2} {:>8} {:>8} {:>7} {:>7}",
                c.group,
                c.name,
                threads,
                q,
                o,
                q / o,
                qg,
                og,
                qp,
                op
            );
        }
    }
    Ok(())
}
