//! Profiles the f32 convolution kernel on the dense 3x3 and depthwise shapes of the real models
//! (nudenet_320n, ddddocr_det, PP-OCR): median time and GMAC/s of `conv_prepacked` with the SiLU
//! output stage, single-threaded by default (`RAYON_NUM_THREADS` to change).
//! Run: `cargo run --release -p qtool-kernels --example conv_f32_profile [FILTER] [REPS]`.

use qtool_kernels::{Activation, ConvParams, ConvWeights, conv_output_shape, conv_prepacked};
use std::time::Instant;

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
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

/// (name, C, H, W, M, k, stride, group)
type Shape = (
    &'static str,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

const SHAPES: &[Shape] = &[
    ("nudenet 16->32 s2 160", 16, 160, 160, 32, 3, 2, 1),
    ("nudenet 32->32 40", 32, 40, 40, 32, 3, 1, 1),
    ("nudenet 64->64 40", 64, 40, 40, 64, 3, 1, 1),
    ("nudenet 128->64 20", 128, 20, 20, 64, 3, 1, 1),
    ("nudenet 64->64 s2 40", 64, 40, 40, 64, 3, 2, 1),
    ("ddddocr 24->48 s2 208", 24, 208, 208, 48, 3, 2, 1),
    ("ddddocr 48->48 104", 48, 104, 104, 48, 3, 1, 1),
    ("ddddocr 96->96 52", 96, 52, 52, 96, 3, 1, 1),
    ("ddddocr 192->192 26", 192, 26, 26, 192, 3, 1, 1),
    ("ddddocr 384->384 13", 384, 13, 13, 384, 3, 1, 1),
    ("resnet 64->64 56", 64, 56, 56, 64, 3, 1, 1),
    ("stem 3->64 7x7 s2 224", 3, 224, 224, 64, 7, 2, 1),
    ("dw3 s1 144x56", 144, 56, 56, 144, 3, 1, 144),
    ("dw3 s2 96x80", 96, 80, 80, 96, 3, 2, 96),
    ("dw5 s1 120x20", 120, 20, 20, 120, 5, 1, 120),
    ("dw5 s2 240x40", 240, 40, 40, 240, 5, 2, 240),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let filter = args.get(1).cloned().unwrap_or_default();
    let reps: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(20);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    };
    println!(
        "{:<26} {:>10} {:>9}  ({} thread(s), median of {reps})",
        "shape",
        "ms",
        "GMAC/s",
        rayon::current_num_threads()
    );
    for &(name, c, h, w, m, k, s, g) in SHAPES {
        if !name.contains(filter.as_str()) {
            continue;
        }
        let in_shape = [1, c, h, w];
        let w_shape = [m, c / g, k, k];
        let mut p = ConvParams::new(2);
        p.strides = vec![s, s];
        p.pads = vec![k / 2; 4];
        p.group = g;
        let x = rnd(c * h * w);
        let wt = rnd(m * (c / g) * k * k);
        let bias = rnd(m);
        let weights = ConvWeights::new(&wt, &w_shape, g).expect("weights");
        let out_shape = conv_output_shape(&in_shape, &w_shape, &p).expect("shape");
        let mut out = vec![0f32; out_shape.iter().product()];
        let t = median(reps, || {
            conv_prepacked(
                &x,
                &in_shape,
                &weights,
                Some(&bias),
                &p,
                Activation::Silu,
                &mut out,
            )
            .expect("conv");
        });
        let macs = (m * (c / g) * k * k * out_shape[2] * out_shape[3]) as f64;
        println!("{name:<26} {:>10.3} {:>9.1}", t * 1e3, macs / t / 1e9);
    }
}
