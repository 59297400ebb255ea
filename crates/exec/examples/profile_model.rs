//! Profiles one ONNX model in the executor: `profile_model MODEL INPUTS.npz THREADS RUNS` prints the
//! median wall time per run and the per-op-type / slowest-node profile (without the CLI's crates).

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 5 {
        return Err("usage: profile_model MODEL INPUTS.npz THREADS RUNS".into());
    }
    let model = qtool_onnx::load(&a[1])?;
    let inputs = qtool_data::load_npz(std::path::Path::new(&a[2]))?;
    let threads: usize = a[3].parse()?;
    let runs: usize = a[4].parse()?;
    let exec = qtool_exec::Executor::new(
        &model,
        qtool_exec::ExecOptions {
            threads: Some(threads),
        },
    )?;
    for _ in 0..3 {
        exec.run(inputs.clone())?;
    }
    let mut times = Vec::new();
    for _ in 0..runs {
        let i = inputs.clone();
        let t0 = Instant::now();
        exec.run(i)?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|x, y| x.total_cmp(y));
    println!("median {:.3} ms, min {:.3} ms", times[runs / 2], times[0]);
    if std::env::var_os("NOPROF").is_none() {
        let (_, p) = exec.run_profiled(inputs, runs)?;
        println!("{p}");
    }
    Ok(())
}
