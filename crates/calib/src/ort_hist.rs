//! ONNX Runtime's calibration histograms reproduced bit for bit: numpy's `np.histogram` with an
//! integer bin count, as ORT's `HistogramCollector` calls it on float32 data (`collect_value`:
//! `num_bins` bins over `[-T, T]`, `T = max(|min|, |max|)`; `collect_absolute_value`: `num_bins`
//! bins of `|x|` over `[min|x|, max|x|]`), for one `collect_data` call over all samples.
//!
//! numpy (2.x, NEP 50) does this arithmetic in float32 when the data and the range bounds are
//! float32: the edges are `np.linspace(first, last, n + 1, dtype=float32)` (`step = (last - first)
//! / n`, `edge[i] = i * step + first`, the last edge set to `last`; when `step` underflows to 0,
//! `edge[i] = (i / n) * (last - first) + first`), a value's bin is
//! `trunc((x - first) / (last - first) * n)` (`n` itself moved to `n - 1`), then moved down one
//! bin when `x < edge[bin]` and up one when `x >= edge[bin + 1]` (except into the last bin's
//! right edge, which is inclusive). Values outside `[first, last]` (and NaN) are not counted.
//! A degenerate range (`first == last`) is widened to `[first - 0.5, last + 0.5]` (in float32).
//!
//! The layout depends on the data's extremes, so it is known only after a first pass over the
//! data (see [`crate::driver`]), and two such histograms merge only when their layouts agree.

use serde::{Deserialize, Serialize};

/// Which of ORT's two histograms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrtHistKind {
    /// `collect_value`: values over `[-T, T]` (Entropy, asymmetric Percentile).
    Value,
    /// `collect_absolute_value`: `|x|` over `[min|x|, max|x|]` (symmetric Percentile).
    Abs,
}

/// One `np.histogram(data, bins=n, range=(first, last))` of float32 data, accumulated over any
/// number of slices of the data (the counts do not depend on how the data is split).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpHistogram {
    pub kind: OrtHistKind,
    /// The outer edges numpy uses (after widening a degenerate range).
    pub first: f32,
    pub last: f32,
    pub counts: Vec<u64>,
}

impl Eq for NpHistogram {}

/// numpy's outer edges for the range `(lo, hi)`: a degenerate range is widened by 0.5 each side
/// (float32 arithmetic).
pub fn np_outer_edges(lo: f32, hi: f32) -> (f32, f32) {
    if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

/// `np.linspace(first, last, n + 1, dtype=float32)` with float32 bounds, as numpy computes it.
pub fn np_linspace_f32(first: f32, last: f32, n: usize) -> Vec<f32> {
    let delta = last - first;
    let div = n as f32;
    let step = delta / div;
    let mut out: Vec<f32> = (0..=n)
        .map(|i| {
            let y = i as f32;
            let y = if step == 0.0 {
                (y / div) * delta
            } else {
                y * step
            };
            y + first
        })
        .collect();
    if n >= 1 {
        out[n] = last;
    }
    out
}

impl NpHistogram {
    /// An empty histogram of `n` bins over `(lo, hi)` (widened when degenerate). `None` when numpy
    /// would refuse the layout (non-finite bounds, `lo > hi`, `n == 0`, or edges that are not
    /// strictly increasing: "Too many bins for data range"), where ORT's calibration fails.
    pub fn new(kind: OrtHistKind, lo: f32, hi: f32, n: usize) -> Option<NpHistogram> {
        if n == 0 || !lo.is_finite() || !hi.is_finite() || lo > hi {
            return None;
        }
        let (first, last) = np_outer_edges(lo, hi);
        let edges = np_linspace_f32(first, last, n);
        if edges.windows(2).any(|w| w[0] >= w[1]) {
            return None;
        }
        Some(NpHistogram {
            kind,
            first,
            last,
            counts: vec![0; n],
        })
    }

    /// The bin edges (`len() + 1` of them), as numpy's (and ORT's) `hist_edges`.
    pub fn edges(&self) -> Vec<f32> {
        np_linspace_f32(self.first, self.last, self.counts.len())
    }

    /// Adds values (for [`OrtHistKind::Abs`], their absolute values) with numpy's binning.
    pub fn add(&mut self, xs: &[f32]) {
        let edges = self.edges();
        let abs = self.kind == OrtHistKind::Abs;
        let (first, last) = (self.first, self.last);
        let counts = &mut self.counts;
        // Big slices are counted in parallel parts (the counts are integers: order-free).
        const PART: usize = 1 << 16;
        if xs.len() >= 2 * PART {
            use rayon::prelude::*;
            let parts: Vec<Vec<u64>> = xs
                .par_chunks(xs.len().div_ceil(rayon::current_num_threads()).max(PART))
                .map(|c| {
                    let mut local = vec![0u64; counts.len()];
                    count_into(&mut local, c, &edges, first, last, abs);
                    local
                })
                .collect();
            for p in parts {
                for (a, b) in counts.iter_mut().zip(p) {
                    *a += b;
                }
            }
        } else {
            count_into(counts, xs, &edges, first, last, abs);
        }
    }

    /// Adds another histogram of the same layout; `false` (nothing added) when the layouts differ.
    pub fn merge(&mut self, o: &NpHistogram) -> bool {
        if self.kind != o.kind
            || self.first.to_bits() != o.first.to_bits()
            || self.last.to_bits() != o.last.to_bits()
            || self.counts.len() != o.counts.len()
        {
            return false;
        }
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        true
    }
}

/// numpy's bin of `x` (already in `[first, last]`) for `n = edges.len() - 1` bins.
#[inline]
pub fn np_bin(x: f32, edges: &[f32], first: f32, last: f32) -> usize {
    let n = edges.len() - 1;
    let f = ((x - first) / (last - first)) * n as f32;
    // `astype(intp)`: truncation toward zero (f >= 0 here; NaN only from an overflowing range).
    let mut i = if f.is_nan() { 0 } else { (f as usize).min(n) };
    if i == n {
        i -= 1;
    }
    if x < edges[i] {
        i = i.saturating_sub(1);
    }
    if x >= edges[i + 1] && i != n - 1 {
        i += 1;
    }
    i
}

fn count_into(counts: &mut [u64], xs: &[f32], edges: &[f32], first: f32, last: f32, abs: bool) {
    for &x in xs {
        let x = if abs { x.abs() } else { x };
        // NaN fails both comparisons, as in numpy's `keep` mask.
        if x >= first && x <= last {
            counts[np_bin(x, edges, first, last)] += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_and_refused_layouts() {
        let h = NpHistogram::new(OrtHistKind::Value, 0.0, 0.0, 4).unwrap();
        assert_eq!((h.first, h.last), (-0.5, 0.5));
        assert!(NpHistogram::new(OrtHistKind::Value, 1.0, 0.0, 4).is_none());
        assert!(NpHistogram::new(OrtHistKind::Value, 0.0, f32::INFINITY, 4).is_none());
        // Two denormals apart cannot hold 2048 increasing edges.
        let d = f32::from_bits(2);
        assert!(NpHistogram::new(OrtHistKind::Value, -d, d, 2048).is_none());
    }

    #[test]
    fn every_value_in_range_is_counted_once_and_nan_never() {
        let mut h = NpHistogram::new(OrtHistKind::Value, -1.0, 1.0, 7).unwrap();
        let xs = [-1.0, 1.0, 0.0, -0.0, 0.3, f32::NAN, 2.0, -1.5];
        h.add(&xs);
        assert_eq!(h.counts.iter().sum::<u64>(), 5);
        // -1.0 | -0.0, 0.0 | 0.3 | 1.0 (the last bin's right edge is inclusive)
        assert_eq!(h.counts, vec![1, 0, 0, 2, 1, 0, 1]);
    }
}
