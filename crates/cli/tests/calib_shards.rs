//! `qtool calibrate --shard I/N` + `qtool stats merge` give byte for byte the statistics file of
//! one run over all the samples (for every method's statistics, with a seeded shuffle too), the
//! ranges computed from the merged file equal those of the single run, and statistics holding ONNX
//! Runtime's histograms (`--ort`, whose layout follows each part's own extremes) are refused by the
//! merge with a message instead of being merged inexactly.

use qtool_pipeline::ir::{Graph, Model, Node, OpsetId, Type, ValueInfo, ops};
use qtool_tensor::{DType, Tensor};
use std::path::Path;
use std::process::Command;

const SHAPE: [usize; 4] = [1, 3, 8, 8];

fn model(path: &Path) {
    let mut g = Graph::new("calib_shards");
    let dims: Vec<i64> = SHAPE.iter().map(|&d| d as i64).collect();
    let x = g.add_value("x").unwrap();
    g.inputs
        .push((x, ValueInfo::of_type(Type::tensor(DType::F32, &dims))));
    let (a, y) = (g.add_value("a").unwrap(), g.add_value("y").unwrap());
    g.add_node(Node::new(ops::Relu {}, "relu"), &[Some(x)], &[Some(a)])
        .unwrap();
    g.add_node(
        Node::new(ops::Mul {}, "mul"),
        &[Some(a), Some(x)],
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

fn data(path: &Path, n: usize) {
    let mut rng = qtool_testkit::Rng::new(11);
    let per: usize = SHAPE.iter().product();
    let vals: Vec<f32> = (0..n * per)
        .map(|i| rng.uniform(-1.0, 1.0) * (1.0 + (i / per) as f32 * 0.1))
        .collect();
    let t = Tensor::from_vec(&[n, SHAPE[1], SHAPE[2], SHAPE[3]], vals).unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    qtool_data::npy::write_npy(&t, &mut f).unwrap();
}

fn qtool(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qtool"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) {
    let o = qtool(args);
    assert!(
        o.status.success(),
        "qtool {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn two_shards_merged_equal_one_run_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    model(Path::new(&p("m.onnx")));
    data(Path::new(&p("x.npy")), 9);
    for (method, extra) in [
        ("minmax", vec![]),
        ("entropy", vec![]),
        ("percentile", vec!["--seed", "3", "--samples", "7"]),
    ] {
        let run = |out: &str, shard: Option<&str>| {
            let (m, x) = (p("m.onnx"), p("x.npy"));
            let mut a = vec!["calibrate", m.as_str(), "--data", x.as_str()];
            a.extend(["--method", method, "-o", out]);
            a.extend(extra.iter().copied());
            if let Some(s) = shard {
                a.extend(["--shard", s]);
            }
            ok(&a);
        };
        let (one, s0, s1, merged) = (p("one.json"), p("s0.json"), p("s1.json"), p("merged.json"));
        run(&one, None);
        run(&s0, Some("0/2"));
        run(&s1, Some("1/2"));
        ok(&["stats", "merge", &s1, &s0, "-o", &merged]);
        assert_eq!(
            std::fs::read(&merged).unwrap(),
            std::fs::read(&one).unwrap(),
            "{method}: merged shards differ from one run"
        );
        let (r1, r2) = (p("r1.json"), p("r2.json"));
        ok(&[
            "calibrate",
            "--from-stats",
            &one,
            "--method",
            method,
            "--ranges",
            &r1,
        ]);
        ok(&[
            "calibrate",
            "--from-stats",
            &merged,
            "--method",
            method,
            "--ranges",
            &r2,
        ]);
        assert_eq!(std::fs::read(&r1).unwrap(), std::fs::read(&r2).unwrap());
    }
    // ORT's histograms: their layout follows each shard's extremes, so the merge refuses.
    let x = p("x.npy");
    let m = p("m.onnx");
    for (i, out) in [(0, p("o0.json")), (1, p("o1.json"))] {
        let shard = format!("{i}/2");
        ok(&[
            "calibrate",
            &m,
            "--data",
            &x,
            "--method",
            "entropy",
            "--ort",
            "--shard",
            &shard,
            "-o",
            &out,
        ]);
    }
    let o = qtool(&[
        "stats",
        "merge",
        &p("o0.json"),
        &p("o1.json"),
        "-o",
        &p("om.json"),
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("different layouts"), "{e}");
}
