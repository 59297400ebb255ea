//! The mergeable histogram: bins of width 2^e aligned to multiples of the width (so zero is always
//! an edge), u64 counts, and a width that is a pure function of the data's range. Two histograms
//! of any split of the same values merge into exactly the histogram of all of them.
//!
//! # Canonical form
//! For values with (exact) range `[lo, hi]` and a bin budget `B`, the width exponent `e` is the
//! smallest integer with
//! - `floor(hi / 2^e) - floor(lo / 2^e) + 1 <= B` (the range fits in `B` bins), and
//! - `e >= ilogb(max(|lo|, |hi|)) - 40` and `e >= -960` (bin indices stay small integers; bins finer
//!   than this carry no information for f32 data anyway).
//!
//! Both conditions only get harder as the range grows, so the width of a stream only ever grows,
//! and only by powers of two: re-binning from `2^e` to `2^(e+d)` maps bin `k` to `k >> d`, which is
//! exactly the bin the value would have had. Bin `k` covers `[k * 2^e, (k+1) * 2^e)`; the counts
//! cover bins `floor(lo / 2^e) ..= floor(hi / 2^e)`. Hence the histogram of a set of values does not
//! depend on the order or the grouping in which they arrived.

use serde::{Deserialize, Serialize};

/// Smallest width exponent.
const E_FLOOR: i32 = -960;
/// At most this many bits of bin index beyond the magnitude of the data.
const INDEX_BITS: i32 = 40;

/// A histogram in canonical form (see the module docs). `counts` is empty when no value was added.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// log2 of the bin width.
    pub exp: i32,
    /// Index of the first bin: it covers `[start * 2^exp, (start + 1) * 2^exp)`.
    pub start: i64,
    /// Values per bin.
    pub counts: Vec<u64>,
}

fn ilogb(x: f64) -> i32 {
    // x finite, > 0
    let bits = x.to_bits();
    let e = ((bits >> 52) & 0x7ff) as i32;
    if e == 0 { -1023 } else { e - 1023 }
}

/// `2^-e` as f64 (e in the canonical range, so this neither overflows nor underflows).
fn inv_width(e: i32) -> f64 {
    2f64.powi(-e)
}

fn index(x: f64, e: i32) -> i64 {
    (x * inv_width(e)).floor() as i64
}

/// The canonical width exponent for the range `[lo, hi]` and `max_bins` bins.
pub fn canonical_exp(lo: f64, hi: f64, max_bins: u32) -> i32 {
    let mag = lo.abs().max(hi.abs());
    let mut e = E_FLOOR;
    if mag > 0.0 {
        e = e.max(ilogb(mag) - INDEX_BITS);
    }
    let span = hi - lo;
    if span > 0.0 {
        // span / 2^e <= B is necessary: start from a lower bound of the answer.
        let b_bits = 32 - (max_bins.max(1) - 1).leading_zeros() as i32; // ceil(log2(B))
        e = e.max(ilogb(span) - b_bits - 1);
    }
    while index(hi, e) - index(lo, e) + 1 > max_bins.max(1) as i64 {
        e += 1;
    }
    e
}

impl Histogram {
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Bin width.
    pub fn width(&self) -> f64 {
        2f64.powi(self.exp)
    }

    /// Lower edge of bin number `i` of `counts`.
    pub fn edge(&self, i: usize) -> f64 {
        (self.start + i as i64) as f64 * self.width()
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Re-bins to width `2^e` (`e >= self.exp`) covering `[lo, hi]` (which contains every value).
    fn rebin(&mut self, e: i32, lo: f64, hi: f64) {
        let (first, last) = (index(lo, e), index(hi, e));
        if e == self.exp
            && !self.counts.is_empty()
            && first == self.start
            && last == self.start + self.counts.len() as i64 - 1
        {
            // Same width, same bins: nothing to move (the common case once the range settles).
            return;
        }
        let mut out = vec![0u64; (last - first + 1) as usize];
        if !self.counts.is_empty() {
            let d = (e - self.exp) as u32;
            for (i, &c) in self.counts.iter().enumerate() {
                if c != 0 {
                    let k = (self.start + i as i64) >> d;
                    out[(k - first) as usize] += c;
                }
            }
        }
        self.exp = e;
        self.start = first;
        self.counts = out;
    }

    /// Adds finite values, given the exact range `[lo, hi]` of everything added so far including
    /// them (the caller keeps that range).
    pub fn add(&mut self, values: impl Iterator<Item = f64>, lo: f64, hi: f64, max_bins: u32) {
        let mut e = canonical_exp(lo, hi, max_bins);
        if self.counts.is_empty() {
            self.exp = e;
        }
        e = e.max(self.exp);
        self.rebin(e, lo, hi);
        let s = inv_width(e);
        let n = self.counts.len() as i64;
        for x in values {
            let k = (x * s).floor() as i64 - self.start;
            debug_assert!((0..n).contains(&k), "value {x} outside the declared range");
            self.counts[k.clamp(0, n - 1) as usize] += 1;
        }
    }

    /// Adds finite f32 values like [`Histogram::add`] (the same bins, bit for bit), counting in
    /// parallel chunks when there are many.
    pub fn add_f32(&mut self, xs: &[f32], lo: f64, hi: f64, max_bins: u32) {
        let mut e = canonical_exp(lo, hi, max_bins);
        if self.counts.is_empty() {
            self.exp = e;
        }
        e = e.max(self.exp);
        self.rebin(e, lo, hi);
        let s = inv_width(e);
        let (start, n) = (self.start, self.counts.len());
        let count = |acc: &mut [u64], chunk: &[f32]| {
            for &x in chunk {
                let y = x as f64 * s;
                // floor(y) without a libm call: truncate, then step down for negative fractions.
                let t = y as i64;
                let k = t - ((t as f64) > y) as i64 - start;
                debug_assert!(
                    (0..n as i64).contains(&k),
                    "value {x} outside the declared range"
                );
                acc[k.clamp(0, n as i64 - 1) as usize] += 1;
            }
        };
        if xs.len() < PAR_MIN {
            count(&mut self.counts, xs);
            return;
        }
        use rayon::prelude::*;
        // One contiguous part per worker (at least PAR_CHUNK values each): every part needs its
        // own n-bin count array, zeroed and summed afterwards, which for small parts (many per
        // worker) cost as much as the counting itself.
        let part = xs
            .len()
            .div_ceil(rayon::current_num_threads().max(1))
            .max(PAR_CHUNK);
        let total = xs
            .par_chunks(part)
            .map(|chunk| {
                let mut acc = vec![0u64; n];
                count(&mut acc, chunk);
                acc
            })
            .reduce_with(|mut a, b| {
                for (x, y) in a.iter_mut().zip(&b) {
                    *x += y;
                }
                a
            });
        if let Some(t) = total {
            for (x, y) in self.counts.iter_mut().zip(&t) {
                *x += y;
            }
        }
    }

    /// Merges `other` (its values lie in the combined range `[lo, hi]`).
    pub fn merge(&mut self, other: &Histogram, lo: f64, hi: f64, max_bins: u32) {
        if other.is_empty() {
            return;
        }
        let mut o = other.clone();
        if self.counts.is_empty() {
            self.exp = other.exp;
        }
        let e = canonical_exp(lo, hi, max_bins).max(self.exp).max(other.exp);
        self.rebin(e, lo, hi);
        o.rebin(e, lo, hi);
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
    }

    /// Sums groups of `factor` adjacent bins, aligned so that bin edges stay multiples of the new
    /// width `factor * 2^exp` (zero stays an edge). Returns (first edge, new width, counts).
    pub fn grouped(&self, factor: usize) -> (f64, f64, Vec<u64>) {
        let f = factor.max(1) as i64;
        let first = self.start.div_euclid(f);
        let last = (self.start + self.counts.len() as i64 - 1).div_euclid(f);
        let mut out = vec![0u64; (last - first + 1).max(0) as usize];
        for (i, &c) in self.counts.iter().enumerate() {
            out[((self.start + i as i64).div_euclid(f) - first) as usize] += c;
        }
        let w = self.width() * f as f64;
        (first as f64 * w, w, out)
    }

    /// The histogram of `|x|`: bin `j` covers `(j w, (j+1) w]` for the negative values and
    /// `[j w, (j+1) w)` for the others, counts from `j = 0`. The width `w` is this histogram's width
    /// times the smallest power of two that keeps the result within [`FOLDED_MAX_BINS`] bins (a narrow
    /// range far from zero would otherwise need billions of empty bins down to zero). Returns
    /// `(w, counts)`.
    pub fn folded_abs(&self) -> (f64, Vec<u64>) {
        let last = self.start + self.counts.len() as i64 - 1;
        let jmax = [self.start, last]
            .iter()
            .map(|&k| if k >= 0 { k } else { -k - 1 })
            .max()
            .unwrap_or(0) as u64;
        let mut shift = 0u32;
        while (jmax >> shift) + 1 > FOLDED_MAX_BINS as u64 {
            shift += 1;
        }
        let mut out: Vec<u64> = vec![
            0;
            if self.counts.is_empty() {
                0
            } else {
                (jmax >> shift) as usize + 1
            }
        ];
        for (i, &c) in self.counts.iter().enumerate() {
            let k = self.start + i as i64;
            let j = (if k >= 0 { k } else { -k - 1 }) as u64 >> shift;
            out[j as usize] += c;
        }
        (self.width() * (1u64 << shift) as f64, out)
    }
}

/// Below this many values a histogram update runs on the calling thread.
pub const PAR_MIN: usize = 1 << 16;
/// Values per parallel work item.
pub const PAR_CHUNK: usize = 1 << 15;

/// Most bins [`Histogram::folded_abs`] returns.
pub const FOLDED_MAX_BINS: usize = 1 << 16;

#[cfg(test)]
mod tests {
    use super::*;

    fn build(vals: &[f64], b: u32) -> Histogram {
        let mut h = Histogram::default();
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for &v in vals {
            lo = lo.min(v);
            hi = hi.max(v);
            h.add(std::iter::once(v), lo, hi, b);
        }
        h
    }

    #[test]
    fn streaming_equals_batch_and_merge() {
        let vals: Vec<f64> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f64 * 0.37 - 100.0)
            .collect();
        let one = build(&vals, 64);
        let mut all = Histogram::default();
        let lo = vals.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        all.add(vals.iter().copied(), lo, hi, 64);
        assert_eq!(one, all);
        let a = build(&vals[..300], 64);
        let mut b = build(&vals[300..], 64);
        b.merge(&a, lo, hi, 64);
        assert_eq!(b, all);
        assert!(all.counts.len() <= 64);
        assert_eq!(all.total(), 1000);
    }

    /// The parallel f32 path counts exactly like the element-wise one, streamed or at once.
    #[test]
    fn add_f32_equals_add() {
        let vals: Vec<f32> = (0..3 * PAR_MIN + 17)
            .map(|i| ((i as u64 * 2654435761) % 100_003) as f32 * 1e-3 - 37.5)
            .collect();
        let (lo, hi) = vals
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v as f64), b.max(v as f64))
            });
        let mut slow = Histogram::default();
        slow.add(vals.iter().map(|&v| v as f64), lo, hi, 2048);
        let mut fast = Histogram::default();
        fast.add_f32(&vals, lo, hi, 2048);
        assert_eq!(fast, slow);
        // Streamed in two parts whose ranges differ (re-binning in between).
        let (a, b) = vals.split_at(PAR_MIN + 5);
        let (alo, ahi) = a
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(x, y), &v| {
                (x.min(v as f64), y.max(v as f64))
            });
        let mut two = Histogram::default();
        two.add_f32(a, alo, ahi, 2048);
        two.add_f32(b, lo, hi, 2048);
        assert_eq!(two, slow);
        assert_eq!(slow.total(), vals.len() as u64);
    }

    #[test]
    fn zero_is_an_edge_and_fold_works() {
        let h = build(&[-1.5, -0.25, 0.0, 0.5, 1.0], 16);
        assert_eq!(h.width(), 0.25);
        assert_eq!(h.start, -6);
        assert_eq!(h.folded_abs(), (0.25, vec![2, 0, 1, 0, 1, 1]));
    }

    /// A narrow range far from zero (a constant-valued tensor) folds into a bounded number of bins
    /// instead of one bin per width step down to zero.
    #[test]
    fn fold_of_a_narrow_far_range_is_bounded() {
        let h = build(&[5.0, 5.0, 5.0 + 1e-6], 2048);
        let (w, counts) = h.folded_abs();
        assert!(counts.len() <= FOLDED_MAX_BINS, "{}", counts.len());
        assert_eq!(counts.iter().sum::<u64>(), 3);
        let j = counts.iter().position(|&c| c > 0).unwrap();
        assert!((j as f64 * w..(j + 1) as f64 * w).contains(&5.0));
        let neg = build(&[-7.0, -7.0], 2048);
        let (w, counts) = neg.folded_abs();
        let j = counts.iter().position(|&c| c > 0).unwrap();
        assert!(j as f64 * w <= 7.0 && 7.0 <= (j + 1) as f64 * w);
    }
}
