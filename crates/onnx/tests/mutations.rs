//! Robustness on corrupt input: deterministic mutations (truncation at every prefix, bit flips,
//! byte insertions and deletions, random chunks, splices) of encoded models must never panic; every
//! error has a message; and whatever decodes re-encodes to a fixed point.

mod common;

use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        ("rich".to_string(), common::rich_model().encode_to_vec()),
        (
            "small".to_string(),
            common::model(common::graph(
                "g",
                vec![common::node(
                    "Relu",
                    "r",
                    &["x"],
                    &["y"],
                    vec![common::attr_i("k", 1)],
                )],
                vec![common::vi_f32("x", &[1, 2])],
                vec![common::vi_f32("y", &[1, 2])],
            ))
            .encode_to_vec(),
        ),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/onnx-node");
    if let Ok(rd) = std::fs::read_dir(&root) {
        let mut dirs: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        dirs.sort();
        for d in &dirs {
            if let Ok(b) = std::fs::read(d.join("model.onnx")) {
                out.push((d.file_name().unwrap().to_string_lossy().into_owned(), b));
            }
        }
    }
    out
}

#[derive(Default)]
struct Stats {
    cases: usize,
    ok: usize,
    errors: usize,
    panics: Vec<String>,
    problems: Vec<String>,
}

fn check(stats: &mut Stats, label: &str, bytes: &[u8]) {
    stats.cases += 1;
    let r = catch_unwind(AssertUnwindSafe(|| match qtool_onnx::decode(bytes, None) {
        Ok(m) => {
            let out = qtool_onnx::encode(&m);
            match qtool_onnx::decode(&out, None) {
                Ok(m2) => {
                    if qtool_onnx::encode(&m2) != out {
                        return Err("re-encoding is not a fixed point".to_string());
                    }
                    Ok(true)
                }
                Err(e) => Err(format!("the re-encoded model does not decode: {e}")),
            }
        }
        Err(e) => {
            if e.to_string().trim().is_empty() {
                return Err(format!("empty error message: {e:?}"));
            }
            Ok(false)
        }
    }));
    match r {
        Ok(Ok(true)) => stats.ok += 1,
        Ok(Ok(false)) => stats.errors += 1,
        Ok(Err(p)) => stats.problems.push(format!("{label}: {p}")),
        Err(_) => stats
            .panics
            .push(format!("{label} ({} bytes)", bytes.len())),
    }
}

#[test]
fn mutated_models_never_panic() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut stats = Stats::default();
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_0a11);
    for (name, bytes) in seeds() {
        let n = bytes.len();
        // Every prefix for small models, a sample for larger ones.
        if n <= 4096 {
            for k in 0..n {
                check(&mut stats, &format!("{name}: prefix {k}"), &bytes[..k]);
            }
        } else {
            for _ in 0..256 {
                let k = rng.random_range(0..n);
                check(&mut stats, &format!("{name}: prefix {k}"), &bytes[..k]);
            }
        }
        for i in 0..240 {
            let mut b = bytes.clone();
            let kind = i % 6;
            match kind {
                0 => {
                    // 1..4 bit flips.
                    for _ in 0..rng.random_range(1..=4) {
                        let p = rng.random_range(0..n);
                        b[p] ^= 1 << rng.random_range(0..8);
                    }
                }
                1 => {
                    // Byte insertion (often a varint continuation or a tag).
                    let p = rng.random_range(0..=n);
                    let v = [0x80u8, 0xff, 0x00, 0x08, 0x12, 0x7f, rng.random()]
                        [rng.random_range(0..7)];
                    b.insert(p, v);
                }
                2 => {
                    // Deletion of a short run.
                    let p = rng.random_range(0..n);
                    let l = rng.random_range(1..=8).min(n - p);
                    b.drain(p..p + l);
                }
                3 => {
                    // Overwrite a random chunk with random bytes.
                    let p = rng.random_range(0..n);
                    let l = rng.random_range(1..=16).min(n - p);
                    for x in &mut b[p..p + l] {
                        *x = rng.random();
                    }
                }
                4 => {
                    // Duplicate a chunk somewhere else (repeated fields, nested messages).
                    let p = rng.random_range(0..n);
                    let l = rng.random_range(1..=64).min(n - p);
                    let chunk = b[p..p + l].to_vec();
                    let q = rng.random_range(0..=b.len());
                    b.splice(q..q, chunk);
                }
                _ => {
                    // Set a byte to a boundary value (huge lengths, enum values, dims).
                    let p = rng.random_range(0..n);
                    b[p] = [0x00, 0x01, 0x63, 0x7f, 0x80, 0xfe, 0xff][rng.random_range(0..7)];
                }
            }
            check(
                &mut stats,
                &format!("{name}: mutation {i} (kind {kind})"),
                &b,
            );
        }
    }
    // Pure noise.
    for i in 0..500 {
        let l = rng.random_range(0..256);
        let b: Vec<u8> = (0..l).map(|_| rng.random()).collect();
        check(&mut stats, &format!("noise {i}"), &b);
    }
    std::panic::set_hook(prev);
    eprintln!(
        "{} cases: {} decoded, {} errors, {} panics",
        stats.cases,
        stats.ok,
        stats.errors,
        stats.panics.len()
    );
    assert!(stats.cases > 5000, "only {} cases", stats.cases);
    assert!(
        stats.panics.is_empty(),
        "{} panics, e.g.:\n{}",
        stats.panics.len(),
        stats
            .panics
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        stats.problems.is_empty(),
        "{} problems, e.g.:\n{}",
        stats.problems.len(),
        stats
            .problems
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn mutated_tensor_files_never_panic() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let t = common::f32_tensor("t", &[2, 2], &[1.0, 2.0, 3.0, 4.0]).encode_to_vec();
    let mut panics = 0;
    for i in 0..3000 {
        let mut b = t.clone();
        if i < b.len() {
            b.truncate(i);
        } else {
            let p = rng.random_range(0..b.len());
            b[p] = rng.random();
        }
        if catch_unwind(|| qtool_onnx::read_tensor_pb(&b).map(|t| qtool_onnx::write_tensor_pb(&t)))
            .is_err()
        {
            panics += 1;
        }
    }
    std::panic::set_hook(prev);
    assert_eq!(panics, 0);
}
