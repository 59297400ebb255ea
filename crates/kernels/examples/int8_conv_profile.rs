//! Profiles the int8 convolution and GEMM kernels on the ResNet benchmark shapes: GMAC/s of each
//! whole call and of the forced paths, single-threaded by default (`RAYON_NUM_THREADS` to change).
//! Run: `cargo run --release -p qtool-kernels --example int8_conv_profile [FILTER] [REPS]`.

use qtool_kernels::int8::{
    KernelPath, OutputStage, PackedB, PackedConvWeights, QConvParams, qconv, qconv_output_shape,
    qgemm,
};
use std::time::Instant;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Median seconds of `reps` runs of `f` (after one warm-up).
fn median(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[t.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let filter = args.get(1).cloned().unwrap_or_default();
    let reps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    if std::env::var("RAYON_NUM_THREADS").is_err() {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build_global()
            .expect("rayon pool");
    }
    let path = KernelPath::selected();
    println!(
        "path {}, {} thread(s)",
        path.name(),
        rayon::current_num_threads()
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // (name, cin, cout, hw, k, stride, group)
    let convs = [
        ("conv3x3_64_56", 64, 64, 56, 3, 1, 1),
        ("conv1x1_256_64_56", 256, 64, 56, 1, 1, 1),
        ("conv3x3_128_28", 128, 128, 28, 3, 1, 1),
        ("conv3x3_512_7", 512, 512, 7, 3, 1, 1),
        ("dw3x3_144_56", 144, 144, 56, 3, 1, 144),
        ("stem7x7_s2", 3, 64, 224, 7, 2, 1),
    ];
    for (name, cin, cout, hw, k, s, g) in convs {
        if !name.contains(&filter) {
            continue;
        }
        let x = rng.bytes(cin * hw * hw);
        let w: Vec<i8> = rng
            .bytes(cout * cin / g * k * k)
            .into_iter()
            .map(|b| b as i8)
            .collect();
        let pw =
            PackedConvWeights::with_path(path, &w, &[cout, cin / g, k, k], &[0], g).expect("pack");
        let p = QConvParams {
            strides: vec![s; 2],
            dilations: vec![1; 2],
            pads: vec![k / 2; 4],
            group: g,
        };
        let xs = [1, cin, hw, hw];
        let os = qconv_output_shape(&xs, &pw, &p).expect("shape");
        let n: usize = os.iter().product();
        let macs = (n * cin / g * k * k) as f64;
        let mult = vec![0.001f32; cout];
        let bias = vec![100i32; cout];
        let stage = OutputStage::Requantize {
            bias: Some(&bias),
            multiplier: &mult,
            zero_point: 128,
        };
        let mut out = vec![0u8; n];
        let t = median(reps, || {
            qconv(&x, &xs, 120, &pw, &p, &stage, &mut out).expect("qconv")
        });
        let mut raw = vec![0i32; n];
        let tr = median(reps, || {
            qconv(&x, &xs, 120, &pw, &p, &OutputStage::Raw, &mut raw).expect("qconv")
        });
        println!(
            "{name:20} requant {:8.3} ms {:7.1} GMAC/s | raw i32 {:8.3} ms {:7.1} GMAC/s",
            t * 1e3,
            macs / t / 1e9,
            tr * 1e3,
            macs / tr / 1e9
        );
    }
    for (name, m, k, n) in [
        ("matmul_128_768_768", 128, 768, 768),
        ("matmul_128_768_3072", 128, 768, 3072),
    ] {
        if !name.contains(&filter) {
            continue;
        }
        let a = rng.bytes(m * k);
        let b: Vec<i8> = rng.bytes(k * n).into_iter().map(|b| b as i8).collect();
        let pb = PackedB::with_path(path, &b, &[k, n], &[0]).expect("pack");
        let mult = vec![0.001f32; n];
        let stage = OutputStage::Requantize {
            bias: None,
            multiplier: &mult,
            zero_point: 128,
        };
        let mut out = vec![0u8; m * n];
        let t = median(reps, || {
            qgemm(&a, &[m, k], 120, &pb, &stage, &mut out).expect("qgemm")
        });
        let mut raw = vec![0i32; m * n];
        let tr = median(reps, || {
            qgemm(&a, &[m, k], 120, &pb, &OutputStage::Raw, &mut raw).expect("qgemm")
        });
        let macs = (m * k * n) as f64;
        println!(
            "{name:20} requant {:8.3} ms {:7.1} GMAC/s | raw i32 {:8.3} ms {:7.1} GMAC/s",
            t * 1e3,
            macs / t / 1e9,
            tr * 1e3,
            macs / tr / 1e9
        );
    }
}
