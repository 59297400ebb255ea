//! Test helpers: a small deterministic PRNG and approximate comparison.

/// xorshift64* — deterministic, dependency-free.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `[lo, hi]`.
    pub(crate) fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
    pub(crate) fn bool(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
    /// Uniform in `[-1, 1)`.
    pub(crate) fn f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub(crate) fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }
}

/// Asserts `|a - b| <= atol + rtol * |b|` elementwise (NaN only equals NaN).
#[track_caller]
pub(crate) fn assert_close(got: &[f32], want: &[f32], atol: f32, rtol: f32, ctx: &str) {
    assert_eq!(got.len(), want.len(), "length differs: {ctx}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= atol + rtol * w.abs();
        assert!(ok, "element {i}: got {g}, want {w} ({ctx})");
    }
}
