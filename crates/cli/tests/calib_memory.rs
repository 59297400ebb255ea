//! `qtool calibrate` runs in memory independent of the number of samples: the peak memory of the
//! process (its maximum resident set size) with 512 samples stays within 10% of that with 32.
//!
//! Each run is a child process (the built `qtool` binary). Its peak is read from the kernel's
//! high-water mark of resident memory, `VmHWM` in `/proc/PID/status`, polled every 2 ms until the
//! child exits (the mark only grows, so the last reading is the peak up to then; calibration's
//! memory is reached within the first samples and held, so the few ms after the last reading do not
//! matter). Linux only, as /proc is.

use qtool_pipeline::ir::{Graph, Model, Node, OpsetId, Type, ValueInfo, ops};
use qtool_tensor::{DType, Tensor};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Channels and spatial size of the input: 8 x 64 x 64 floats (128 KiB a sample), five activations
/// of that size per run.
const SHAPE: [usize; 4] = [1, 8, 64, 64];

fn model(path: &Path) {
    let mut g = Graph::new("calib_memory");
    let dims: Vec<i64> = SHAPE.iter().map(|&d| d as i64).collect();
    let x = g.add_value("x").unwrap();
    g.inputs
        .push((x, ValueInfo::of_type(Type::tensor(DType::F32, &dims))));
    let v = |g: &mut Graph, n: &str| g.add_value(n).unwrap();
    let (a, b, c, y) = (
        v(&mut g, "a"),
        v(&mut g, "b"),
        v(&mut g, "c"),
        v(&mut g, "y"),
    );
    g.add_node(Node::new(ops::Relu {}, "relu"), &[Some(x)], &[Some(a)])
        .unwrap();
    g.add_node(Node::new(ops::Sigmoid {}, "sig"), &[Some(x)], &[Some(b)])
        .unwrap();
    g.add_node(
        Node::new(ops::Mul {}, "mul"),
        &[Some(a), Some(b)],
        &[Some(c)],
    )
    .unwrap();
    g.add_node(
        Node::new(ops::Add {}, "add"),
        &[Some(c), Some(x)],
        &[Some(y)],
    )
    .unwrap();
    g.outputs
        .push((y, ValueInfo::of_type(Type::tensor(DType::F32, &dims))));
    let m = Model {
        ir_version: Some(8),
        opset_import: vec![OpsetId {
            domain: Some(String::new()),
            version: Some(13),
        }],
        graph: g,
        ..Default::default()
    };
    qtool_pipeline::onnx::save(&m, path, &qtool_pipeline::onnx::SaveOptions::default()).unwrap();
}

/// `n` samples of Gaussian-ish values as [n, 8, 64, 64] .npy.
fn data(path: &Path, n: usize) {
    let mut rng = qtool_testkit::Rng::new(n as u64);
    let per: usize = SHAPE.iter().product();
    let vals: Vec<f32> = (0..n * per)
        .map(|_| (0..4).map(|_| rng.uniform(-1.0, 1.0)).sum::<f32>())
        .collect();
    let t = Tensor::from_vec(&[n, SHAPE[1], SHAPE[2], SHAPE[3]], vals).unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    qtool_data::npy::write_npy(&t, &mut f).unwrap();
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `qtool calibrate` on `data` and returns the child's peak resident memory in KiB.
fn peak_kib(model: &Path, data: &Path, out: &Path) -> u64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qtool"))
        .arg("calibrate")
        .arg(model)
        .arg("--data")
        .arg(data)
        .args(["--method", "entropy", "-o"])
        .arg(out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak = 0;
    loop {
        if let Some(k) = vm_hwm_kib(child.id()) {
            peak = peak.max(k);
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "qtool calibrate failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(peak > 0, "no VmHWM reading of the child");
    peak
}

#[test]
fn peak_memory_is_flat_from_32_to_512_samples() {
    if !Path::new("/proc/self/status").exists() {
        eprintln!("no /proc: peak memory cannot be read on this system");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.onnx");
    model(&m);
    let mut peaks = Vec::new();
    for n in [32usize, 512] {
        let d = dir.path().join(format!("x{n}.npy"));
        data(&d, n);
        let out = dir.path().join(format!("stats{n}.json"));
        let p = peak_kib(&m, &d, &out);
        let stats = qtool_pipeline::calib::CalibStats::load(&out).unwrap();
        assert_eq!(stats.samples, n as u64);
        // The data file of the bigger run alone is 64 MiB: reading it whole would show.
        std::fs::remove_file(&d).unwrap();
        peaks.push(p);
    }
    eprintln!(
        "peak resident memory: 32 samples {} KiB, 512 samples {} KiB",
        peaks[0], peaks[1]
    );
    assert!(
        peaks[1] as f64 <= peaks[0] as f64 * 1.10,
        "peak memory grew from {} KiB (32 samples) to {} KiB (512 samples)",
        peaks[0],
        peaks[1]
    );
}
