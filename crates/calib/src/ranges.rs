//! Ranges from statistics, with any method and settings, without running the model again:
//! MinMax, Percentile, Entropy (KL divergence, TensorRT's method as ONNX Runtime implements it) and
//! MSE (the clipping range with the smallest expected quantization error).
//!
//! Two histogram modes:
//! - [`HistMode::Qtool`] (default) works on the mergeable histogram itself (bin width a power of two,
//!   zero an edge), at its full resolution where it can. Percentile thresholds are the *upper* edge
//!   of the bin where the CDF reaches the percentile (ORT takes the lower edge, clipping one bin more
//!   than asked). Entropy runs ORT's search unchanged on the histogram regrouped exactly (whole
//!   bins summed) into about `num_bins` bins symmetric around zero, instead of ORT's `[-T, T]`
//!   layout whose edges depend on the data's maximum.
//! - [`HistMode::Ort`] reproduces ONNX Runtime's `HistogramCollector` (onnxruntime 1.2x/1.3x,
//!   `calibrate.py`) for one `collect_data` call over all samples (what `quantize_static` does):
//!   ORT's layout is `num_bins` bins over `[-T, T]`, `T = max(|min|, |max|)`, for Entropy and
//!   asymmetric Percentile, and over `[min|x|, max|x|]` of `|x|` for symmetric Percentile. When the
//!   statistics hold ORT's own histograms (collected bit for bit in a second pass,
//!   [`crate::StatsConfig::ort_bins`], [`crate::ort_hist`]) with `num_bins` bins, those are used;
//!   otherwise qtool's histogram is re-binned onto that layout (each fine bin going to the ORT bin
//!   containing its centre: the fine bins straddling an ORT edge make the difference). Then ORT's
//!   algorithms run unchanged, quirks included; Entropy's search in ORT's float32 arithmetic
//!   ([`ort_entropy_f32`]). ORT widens its histogram batch by batch when `collect_data` is called
//!   more than once; that order-dependent re-binning is not reproduced.
//!
//! MinMax is identical in both modes and equal to ORT's (`moving_average` = ORT's mean of per-batch
//! minima/maxima within one `collect_data` call; ORT's 0.01 constant only blends the results of
//! separate `collect_data` calls, which is order-dependent and not mergeable, so it is not offered).

use crate::CalibError;
use crate::hist::Histogram;
use crate::ort_hist::{OrtHistKind, np_linspace_f32, np_outer_edges};
use crate::stats::{CalibStats, Summary};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a range is computed from statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    #[default]
    MinMax,
    Percentile,
    Entropy,
    Mse,
}

/// Which histogram algorithms to use (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistMode {
    #[default]
    Qtool,
    Ort,
}

/// Settings of [`compute_ranges`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RangeSettings {
    pub method: Method,
    pub mode: HistMode,
    /// Percentile method: the percentile kept (0..=100). Default 99.999 (ORT's).
    pub percentile: f64,
    /// Histogram bins of the ORT layout (Ort mode), and the entropy search's bin budget (both
    /// modes). Default 2048 (ORT's entropy default of 128 degenerates to min/max).
    pub num_bins: usize,
    /// Entropy method: quantized bins. Default 128.
    pub num_quantized_bins: usize,
    /// Symmetric range; `None` = ORT's default for the method (true for Percentile, else false).
    pub symmetric: Option<bool>,
    /// Per-channel ranges for tensors that have per-channel statistics.
    pub per_channel: bool,
    /// MinMax: mean of the per-batch minima/maxima instead of the global ones.
    pub moving_average: bool,
    /// MSE: the integer range the error is computed for (default uint8: 0..=255).
    pub qmin: i32,
    pub qmax: i32,
}

impl Default for RangeSettings {
    fn default() -> Self {
        RangeSettings {
            method: Method::MinMax,
            mode: HistMode::Qtool,
            percentile: 99.999,
            num_bins: 2048,
            num_quantized_bins: 128,
            symmetric: None,
            per_channel: false,
            moving_average: false,
            qmin: 0,
            qmax: 255,
        }
    }
}

impl RangeSettings {
    fn symmetric(&self) -> bool {
        self.symmetric.unwrap_or(self.method == Method::Percentile)
    }

    fn validate(&self) -> Result<(), CalibError> {
        let bad = |m: String| Err(CalibError::Settings(m));
        if !(0.0..=100.0).contains(&self.percentile) {
            return bad(format!(
                "percentile must be in [0, 100], got {}",
                self.percentile
            ));
        }
        if self.num_bins < 2 {
            return bad(format!(
                "num_bins must be at least 2, got {}",
                self.num_bins
            ));
        }
        if self.num_quantized_bins < 2 {
            return bad(format!(
                "num_quantized_bins must be at least 2, got {}",
                self.num_quantized_bins
            ));
        }
        if self.qmax <= self.qmin {
            return bad(format!(
                "qmax ({}) must be above qmin ({})",
                self.qmax, self.qmin
            ));
        }
        Ok(())
    }
}

/// The range of one tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TensorRange {
    PerTensor {
        min: f32,
        max: f32,
    },
    PerChannel {
        min: Vec<f32>,
        max: Vec<f32>,
        axis: usize,
    },
}

/// Ranges of every tensor with finite values, and warnings (tensors skipped, non-finite values).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ranges {
    pub ranges: BTreeMap<String, TensorRange>,
    pub warnings: Vec<String>,
}

impl Ranges {
    /// `{"tensor": {"min": .., "max": ..}}` (per channel: arrays and the axis), sorted by name.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.ranges).expect("ranges serialize")
    }
}

/// Computes the range of every tensor of `stats`.
pub fn compute_ranges(stats: &CalibStats, s: &RangeSettings) -> Result<Ranges, CalibError> {
    s.validate()?;
    // Tensors are independent: their threshold searches run in parallel, and the results are
    // assembled in name order (the output does not depend on the scheduling).
    use rayon::prelude::*;
    let each: Vec<(&String, Vec<String>, Option<TensorRange>)> = stats
        .tensors
        .par_iter()
        .map(|(name, t)| {
            let mut warnings = Vec::new();
            let r = tensor_range(name, t, s, &mut warnings)?;
            Ok((name, warnings, r))
        })
        .collect::<Result<_, CalibError>>()?;
    let mut out = Ranges::default();
    for (name, w, r) in each {
        out.warnings.extend(w);
        if let Some(r) = r {
            out.ranges.insert(name.clone(), r);
        }
    }
    Ok(out)
}

/// The range of one tensor (`None` without finite values), pushing its warnings.
fn tensor_range(
    name: &str,
    t: &crate::stats::TensorStats,
    s: &RangeSettings,
    warnings: &mut Vec<String>,
) -> Result<Option<TensorRange>, CalibError> {
    {
        if t.non_finite() > 0 {
            warnings.push(format!(
                "tensor '{name}': {} NaN, {} +Inf, {} -Inf values were excluded",
                t.nan, t.pos_inf, t.neg_inf
            ));
        }
        let Some((lo, hi)) = summary_range_ort(&t.all, Some(t), s, name)? else {
            warnings.push(format!("tensor '{name}': no finite values, no range"));
            return Ok(None);
        };
        let r = match (&t.per_channel, s.per_channel) {
            (Some(pc), true) => {
                let (mut mins, mut maxs) = (Vec::new(), Vec::new());
                for (c, cs) in pc.channels.iter().enumerate() {
                    let (a, b) = summary_range(cs, s, &format!("{name}[channel {c}]"))?
                        .unwrap_or((0.0, 0.0));
                    mins.push(a as f32);
                    maxs.push(b as f32);
                }
                TensorRange::PerChannel {
                    min: mins,
                    max: maxs,
                    axis: pc.axis,
                }
            }
            _ => TensorRange::PerTensor {
                min: lo as f32,
                max: hi as f32,
            },
        };
        Ok(Some(r))
    }
}

/// The range of one stream of values, `None` without finite values.
pub fn summary_range(
    sum: &Summary,
    s: &RangeSettings,
    what: &str,
) -> Result<Option<(f64, f64)>, CalibError> {
    summary_range_ort(sum, None, s, what)
}

/// ONNX Runtime's histogram of `kind` with `n` bins, when `t` has it (collected with
/// [`crate::StatsConfig::ort_bins`] = `n`).
fn exact_ort_hist(
    t: Option<&crate::stats::TensorStats>,
    kind: OrtHistKind,
    n: usize,
) -> Option<(Vec<u64>, Vec<f32>)> {
    let h = match kind {
        OrtHistKind::Value => t?.ort_value.as_ref()?,
        OrtHistKind::Abs => t?.ort_abs.as_ref()?,
    };
    (h.counts.len() == n).then(|| (h.counts.clone(), h.edges()))
}

/// [`summary_range`], with the tensor's exact ORT histograms (if any) for the "ort" mode.
fn summary_range_ort(
    sum: &Summary,
    t: Option<&crate::stats::TensorStats>,
    s: &RangeSettings,
    what: &str,
) -> Result<Option<(f64, f64)>, CalibError> {
    let Some((min, max)) = sum.range() else {
        return Ok(None);
    };
    let sym = s.symmetric();
    if s.method == Method::MinMax {
        let (lo, hi) = if s.moving_average {
            sum.batch_mean_range().expect("finite values seen")
        } else {
            (min, max)
        };
        let (lo, hi) = if s.moving_average {
            (lo as f32 as f64, hi as f32 as f64)
        } else {
            (lo, hi)
        };
        return Ok(Some(if sym {
            let a = lo.abs().max(hi.abs());
            (-a, a)
        } else {
            (lo, hi)
        }));
    }
    let Some(h) = sum.hist.as_ref().filter(|h| !h.is_empty()) else {
        return Err(CalibError::Tensor {
            tensor: what.to_string(),
            msg: format!(
                "the {:?} method needs a histogram, and the statistics have none (collect with histograms on)",
                s.method
            ),
        });
    };
    let clip = |(lo, hi): (f64, f64)| (lo.max(min), hi.min(max));
    Ok(Some(match (s.method, s.mode) {
        (Method::Percentile, HistMode::Ort) => {
            let (hist, edges) = if sym {
                exact_ort_hist(t, OrtHistKind::Abs, s.num_bins)
                    .unwrap_or_else(|| ort_abs_hist(sum, h, s.num_bins))
            } else {
                exact_ort_hist(t, OrtHistKind::Value, s.num_bins)
                    .unwrap_or_else(|| ort_value_hist(sum, h, s.num_bins))
            };
            clip_f32(ort_percentile(&hist, &edges, s.percentile, sym), min, max)
        }
        (Method::Entropy, HistMode::Ort) => {
            let (hist, edges) = exact_ort_hist(t, OrtHistKind::Value, s.num_bins)
                .unwrap_or_else(|| ort_value_hist(sum, h, s.num_bins));
            clip_f32(
                ort_entropy_f32(&hist, &edges, s.num_quantized_bins),
                min,
                max,
            )
        }
        (Method::Percentile, HistMode::Qtool) => clip(qtool_percentile(sum, h, s.percentile, sym)),
        (Method::Entropy, HistMode::Qtool) => {
            clip(qtool_entropy(h, s.num_bins, s.num_quantized_bins))
        }
        (Method::Mse, _) => clip(mse_range(sum, h, sym, s.qmin, s.qmax)),
        (Method::MinMax, _) => unreachable!("handled above"),
    }))
}

/// ORT clips thresholds (f32) to the observed min/max.
fn clip_f32((lo, hi): (f32, f32), min: f64, max: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (lo as f64, hi as f64);
    if lo < min as f32 as f64 {
        lo = min;
    }
    if hi > max as f32 as f64 {
        hi = max;
    }
    (lo, hi)
}

/// numpy's `histogram` edges for `n` bins over `[lo, hi]` (degenerate ranges widened by 0.5 on
/// each side, as numpy does), as f32 like ORT's.
fn np_edges(lo: f32, hi: f32, n: usize) -> Vec<f32> {
    let (lo, hi) = np_outer_edges(lo, hi);
    np_linspace_f32(lo, hi, n)
}

/// Re-bins fine bins `(centre, count)` onto `edges` by centre.
fn rebin_by_centre(fine: impl Iterator<Item = (f64, u64)>, edges: &[f32]) -> Vec<u64> {
    let n = edges.len() - 1;
    let (lo, hi) = (edges[0] as f64, edges[n] as f64);
    let mut out = vec![0u64; n];
    for (c, cnt) in fine {
        if cnt == 0 {
            continue;
        }
        let j = ((c - lo) / (hi - lo) * n as f64).floor();
        let j = if j.is_nan() {
            0
        } else {
            (j.max(0.0) as usize).min(n - 1)
        };
        out[j] += cnt;
    }
    out
}

/// ORT's `collect_value` histogram: `n` bins over `[-T, T]`.
fn ort_value_hist(sum: &Summary, h: &Histogram, n: usize) -> (Vec<u64>, Vec<f32>) {
    let (min, max) = sum.range().expect("finite values");
    let t = (min as f32).abs().max((max as f32).abs());
    let edges = np_edges(-t, t, n);
    let fine = fine_points(
        h.counts.iter().enumerate().map(|(i, &c)| (h.edge(i), c)),
        h.width(),
        min,
        max,
    );
    (rebin_by_centre(fine.into_iter(), &edges), edges)
}

/// ORT's `collect_absolute_value` histogram: `n` bins of `|x|` over `[min|x|, max|x|]`.
fn ort_abs_hist(sum: &Summary, h: &Histogram, n: usize) -> (Vec<u64>, Vec<f32>) {
    let (min, max) = sum.range().expect("finite values");
    let amax = (min as f32).abs().max((max as f32).abs());
    let amin = sum.min_abs.expect("finite values").0 as f32;
    let edges = np_edges(amin, amax, n);
    let (w, folded) = h.folded_abs();
    let fine = fine_points(
        folded.iter().enumerate().map(|(j, &c)| (j as f64 * w, c)),
        w,
        amin as f64,
        amax as f64,
    );
    (rebin_by_centre(fine.into_iter(), &edges), edges)
}

/// Points standing for the values of fine bins `(lower edge, count)` of width `w`, whose values
/// have the exact extremes `min` and `max`: the first non-empty bin holds one value at `min`, the
/// last one value at `max`, and every other value sits at the centre of its bin's part within
/// `[min, max]`. (When ORT's bins are finer than the fine ones, e.g. a narrow range far from zero,
/// the extremes still land in ORT's first and last bins.)
fn fine_points(
    bins: impl Iterator<Item = (f64, u64)>,
    w: f64,
    min: f64,
    max: f64,
) -> Vec<(f64, u64)> {
    let nonempty: Vec<(f64, u64)> = bins.filter(|&(_, c)| c != 0).collect();
    let last = nonempty.len().saturating_sub(1);
    let mut out = Vec::with_capacity(nonempty.len() + 2);
    for (k, &(a, mut c)) in nonempty.iter().enumerate() {
        if k == 0 {
            out.push((min, 1));
            c -= 1;
        }
        if k == last && c > 0 {
            out.push((max, 1));
            c -= 1;
        }
        if c > 0 {
            let (lo, hi) = (a.max(min), (a + w).min(max));
            out.push((0.5 * (lo + hi.max(lo)), c));
        }
    }
    out
}

/// numpy `searchsorted(cdf, v)` (side left) on `cumsum(hist / total)`.
fn cdf_search(hist: &[u64], v: f64) -> usize {
    let total: u64 = hist.iter().sum();
    let mut acc = 0f64;
    for (i, &c) in hist.iter().enumerate() {
        acc += c as f64 / total as f64;
        if acc >= v {
            return i;
        }
    }
    hist.len()
}

/// ORT's `compute_percentile` (before clipping to min/max).
pub fn ort_percentile(hist: &[u64], edges: &[f32], percentile: f64, symmetric: bool) -> (f32, f32) {
    if symmetric {
        let i = cdf_search(hist, percentile / 100.0);
        (-edges[i], edges[i])
    } else {
        let cut = (100.0 - percentile) / 200.0;
        let r = cdf_search(hist, 1.0 - cut);
        let l = cdf_search(hist, cut);
        (edges[l], edges[r])
    }
}

/// ORT's `smooth_distribution` (eps 1e-4); `None` when every entry is 0 or smoothing would make an
/// entry non-positive (where ORT's asserts fail).
fn smooth(p: &[f64]) -> Option<Vec<f64>> {
    let nz = p.iter().filter(|&&v| v == 0.0).count();
    let nnz = p.len() - nz;
    if nnz == 0 {
        return None;
    }
    let eps1 = EPS * nz as f64 / nnz as f64;
    let out: Vec<f64> = p
        .iter()
        .map(|&v| if v == 0.0 { EPS } else { v - eps1 })
        .collect();
    if out.iter().any(|&v| v <= 0.0) {
        None
    } else {
        Some(out)
    }
}

/// KL(p || q) of two unnormalised positive distributions.
fn kl(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    p.iter()
        .zip(q)
        .map(|(&a, &b)| {
            let (a, b) = (a / sp, b / sq);
            a * (a / b).ln()
        })
        .sum()
}

/// ORT's smoothing constant.
const EPS: f64 = 1e-4;

/// The KL divergence of ORT's entropy search for the candidate window `hist[zero - i ..
/// min(zero + i + 1, len)]`, computed literally as ORT does (the window's distribution `p` with
/// the outliers folded into its end bins, its quantized `q`, both smoothed). O(window) with a
/// logarithm per bin: the reference for [`EntropySearch`] and its fallback.
fn candidate_kl_direct(hist: &[u64], zero: usize, i: usize, nq: usize) -> f64 {
    let nb = hist.len();
    let start = zero - i;
    let end = (zero + i + 1).min(nb);
    let sliced = &hist[start..end];
    let mut p: Vec<f64> = sliced.iter().map(|&c| c as f64).collect();
    p[0] += hist[..start].iter().sum::<u64>() as f64;
    let last = p.len() - 1;
    p[last] += hist[end..].iter().sum::<u64>() as f64;
    let nonzero: Vec<bool> = p.iter().map(|&v| v != 0.0).collect();
    let m = sliced.len() / nq;
    let mut quant = vec![0u64; nq];
    for (k, qk) in quant.iter_mut().enumerate() {
        *qk = sliced[k * m..k * m + m].iter().sum();
    }
    quant[nq - 1] += sliced[nq * m..].iter().sum::<u64>();
    let mut q = vec![0f64; p.len()];
    for k in 0..nq {
        let norm = nonzero[k * m..k * m + m].iter().filter(|&&b| b).count();
        if norm != 0 {
            // ORT assigns the float quotient into an int64 array: truncation.
            let v = (quant[k] as f64 / norm as f64).trunc();
            q[k * m..k * m + m].iter_mut().for_each(|x| *x = v);
        }
    }
    match (smooth(&p), smooth(&q)) {
        (Some(p), Some(q)) => kl(&p, &q),
        _ => f64::INFINITY,
    }
}

/// Terms of the series used by [`EntropySearch`]; exact to rounding for `u <= TAYLOR_MAX_U`.
const TAYLOR_TERMS: usize = 10;
/// Largest smoothing shift (in counts) handled by the series (`u^9 < 2e-17`).
const TAYLOR_MAX_U: f64 = 1.0 / 64.0;

/// ORT's entropy threshold search evaluated in O(num_quantized_bins) per candidate instead of
/// O(window) logarithms, with the same result as [`candidate_kl_direct`] up to rounding.
///
/// With the smoothed window `p'` (every non-zero count `c` shifted down by `e = EPS * zeros /
/// non-zeros`, zeros set to `EPS`) and the smoothed quantized `q'` (constant within each of the
/// `num_quantized_bins` chunks), `KL = (Σ p' ln p' - Σ p' ln q') / Σp' - ln Σp' + ln Σq'`:
/// - `Σ p' ln q'` needs only each chunk's sum of `p'` (prefix sums of counts and of non-zero
///   bins);
/// - `Σ (c - e) ln(c - e)` over the window's interior non-zero bins is
///   `Σ c ln c - e Σ ln c - e n + Σ_{k>=2} e^k / (k (k - 1)) Σ c^(1-k)` (the series of
///   `(1 - u) ln(1 - u)` with `u = e / c <= e`, since counts are integers >= 1), all prefix sums;
///   the two end bins (which hold the outliers) are evaluated directly. A candidate whose shift is
///   above [`TAYLOR_MAX_U`] (a window mostly of empty bins) is evaluated directly.
struct EntropySearch<'a> {
    hist: &'a [u64],
    /// Prefix sums over `hist`: counts, non-zero bins, `c ln c`, `ln c`, and `c^-k` for
    /// `k = 1..TAYLOR_TERMS` (row `k - 1`).
    count: Vec<u64>,
    nonzero: Vec<u64>,
    c_ln_c: Vec<f64>,
    ln_c: Vec<f64>,
    inv_pow: Vec<Vec<f64>>,
}

impl<'a> EntropySearch<'a> {
    fn new(hist: &'a [u64]) -> Self {
        let n = hist.len();
        let mut count = vec![0u64; n + 1];
        let mut nonzero = vec![0u64; n + 1];
        let mut c_ln_c = vec![0f64; n + 1];
        let mut ln_c = vec![0f64; n + 1];
        let mut inv_pow = vec![vec![0f64; n + 1]; TAYLOR_TERMS - 1];
        for (j, &c) in hist.iter().enumerate() {
            count[j + 1] = count[j] + c;
            nonzero[j + 1] = nonzero[j] + (c != 0) as u64;
            let (mut cl, mut l) = (0.0, 0.0);
            if c != 0 {
                let cf = c as f64;
                l = cf.ln();
                cl = cf * l;
            }
            c_ln_c[j + 1] = c_ln_c[j] + cl;
            ln_c[j + 1] = ln_c[j] + l;
            let inv = if c != 0 { 1.0 / c as f64 } else { 0.0 };
            let mut pw = 1.0;
            for row in inv_pow.iter_mut() {
                pw *= inv;
                row[j + 1] = row[j] + pw;
            }
        }
        EntropySearch {
            hist,
            count,
            nonzero,
            c_ln_c,
            ln_c,
            inv_pow,
        }
    }

    fn kl(&self, zero: usize, i: usize, nq: usize) -> f64 {
        let hist = self.hist;
        let nb = hist.len();
        let start = zero - i;
        let end = (zero + i + 1).min(nb);
        let len = end - start;
        if len < 3 {
            return candidate_kl_direct(hist, zero, i, nq);
        }
        let total = self.count[nb];
        let cnt = |a: usize, b: usize| self.count[b] - self.count[a];
        let nzc = |a: usize, b: usize| self.nonzero[b] - self.nonzero[a];
        // The window's end values, outliers included.
        let p_first = hist[start] + self.count[start];
        let p_last = hist[end - 1] + (total - self.count[end]);
        // Non-zero bins of p over the window positions [a, b) (0-based within the window).
        let nz_p = |a: usize, b: usize| -> u64 {
            if a >= b {
                return 0;
            }
            let mut n = nzc(start + a, start + b);
            if a == 0 {
                n = n - (hist[start] != 0) as u64 + (p_first != 0) as u64;
            }
            if b == len {
                n = n - (hist[end - 1] != 0) as u64 + (p_last != 0) as u64;
            }
            n
        };
        // Sum of p over window positions [a, b).
        let sum_p = |a: usize, b: usize| -> u64 {
            if a >= b {
                return 0;
            }
            let mut s = cnt(start + a, start + b);
            if a == 0 {
                s += self.count[start];
            }
            if b == len {
                s += total - self.count[end];
            }
            s
        };
        let nnz_p = nz_p(0, len);
        if nnz_p == 0 {
            return f64::INFINITY;
        }
        let zeros_p = len as u64 - nnz_p;
        let e = EPS * zeros_p as f64 / nnz_p as f64;
        // Every non-zero count is >= 1: smoothing keeps them positive unless e >= 1.
        if e >= TAYLOR_MAX_U {
            return candidate_kl_direct(hist, zero, i, nq);
        }
        // Σ p' ln p'.
        let xlnx = |x: f64| x * x.ln();
        let mut sum_plnp = zeros_p as f64 * xlnx(EPS);
        for v in [p_first, p_last] {
            if v != 0 {
                sum_plnp += xlnx(v as f64 - e);
            }
        }
        let (a, b) = (start + 1, end - 1); // interior bins
        let n_int = nzc(a, b) as f64;
        let mut interior =
            (self.c_ln_c[b] - self.c_ln_c[a]) - e * (self.ln_c[b] - self.ln_c[a]) - e * n_int;
        let mut ek = e;
        for k in 2..=TAYLOR_TERMS {
            ek *= e;
            let s = &self.inv_pow[k - 2];
            interior += ek / (k * (k - 1)) as f64 * (s[b] - s[a]);
        }
        sum_plnp += interior;
        let sp = total as f64;

        // The quantized distribution: chunk k covers window positions [k m, k m + m).
        let m = len / nq;
        let rem = len - nq * m;
        let mut zeros_q = rem as u64;
        let mut vals = Vec::with_capacity(nq);
        for k in 0..nq {
            let (ca, cb) = (k * m, k * m + m);
            let mut quant = cnt(start + ca, start + cb);
            if k == nq - 1 {
                quant += cnt(start + nq * m, end);
            }
            let norm = nz_p(ca, cb);
            let v = if norm != 0 {
                (quant as f64 / norm as f64).trunc()
            } else {
                0.0
            };
            if v == 0.0 {
                zeros_q += m as u64;
            }
            vals.push((v, ca, cb, norm));
        }
        let nnz_q = len as u64 - zeros_q;
        if nnz_q == 0 {
            return f64::INFINITY;
        }
        let eq = EPS * zeros_q as f64 / nnz_q as f64;
        let mut sq = rem as f64 * EPS;
        let mut sum_plnq = 0.0;
        for &(v, ca, cb, norm) in &vals {
            let qv = if v == 0.0 { EPS } else { v - eq };
            if qv <= 0.0 {
                return f64::INFINITY;
            }
            sq += m as f64 * qv;
            // Σ p' over the chunk: its counts, shifted by -e per non-zero and +EPS per zero bin.
            let pc = sum_p(ca, cb) as f64 - e * norm as f64 + EPS * (m as u64 - norm) as f64;
            sum_plnq += pc * qv.ln();
        }
        if rem > 0 {
            let nz = nz_p(nq * m, len);
            let pc = sum_p(nq * m, len) as f64 - e * nz as f64 + EPS * (rem as u64 - nz) as f64;
            sum_plnq += pc * EPS.ln();
        }
        (sum_plnp - sum_plnq) / sp - sp.ln() + sq.ln()
    }
}

/// The KL divergence of every candidate of ORT's entropy search on `hist`: entry `k` is the window
/// of `num_quantized_bins / 2 + k` bins on each side of the middle bin (`hist[len/2 - i ..
/// len/2 + i + 1]`). Empty when the histogram is too small for one candidate.
pub fn ort_entropy_divergences(hist: &[u64], num_quantized_bins: usize) -> Vec<f64> {
    let zero = hist.len() / 2;
    let half_q = num_quantized_bins / 2;
    if zero < half_q || num_quantized_bins == 0 {
        return Vec::new();
    }
    let search = EntropySearch::new(hist);
    (half_q..=zero)
        .map(|i| search.kl(zero, i, num_quantized_bins))
        .collect()
}

/// ORT's `get_entropy_threshold` (before clipping to min/max).
pub fn ort_entropy(hist: &[u64], edges: &[f32], num_quantized_bins: usize) -> (f32, f32) {
    let nb = hist.len();
    let zero = nb / 2;
    let half_q = num_quantized_bins / 2;
    if zero < half_q {
        // ORT fails here (an empty search); the whole histogram is the only sensible answer.
        return (edges[0], edges[nb]);
    }
    let window = |i: usize| (edges[zero - i], edges[(zero + i + 1).min(nb)]);
    let mut best = (f64::INFINITY, window(half_q));
    for (k, div) in ort_entropy_divergences(hist, num_quantized_bins)
        .into_iter()
        .enumerate()
    {
        // np.argmin: the first minimum (an all-inf search keeps the first candidate).
        if div < best.0 {
            best = (div, window(half_q + k));
        }
    }
    best.1
}

/// numpy's float32 `np.sum` of a contiguous array: pairwise summation (blocks of at most 128
/// values summed in 8 interleaved float32 accumulators, longer arrays split in halves rounded down
/// to a multiple of 8).
pub fn np_sum_f32(a: &[f32]) -> f32 {
    let n = a.len();
    if n < 8 {
        return a.iter().fold(-0.0f32, |r, &x| r + x);
    }
    if n <= 128 {
        let mut r = [0f32; 8];
        r.copy_from_slice(&a[..8]);
        let full = n - n % 8;
        let mut i = 8;
        while i < full {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[full..] {
            res += x;
        }
        return res;
    }
    let mut n2 = n / 2;
    n2 -= n2 % 8;
    np_sum_f32(&a[..n2]) + np_sum_f32(&a[n2..])
}

/// ORT's `smooth_distribution` in its float32 arithmetic: zeros become `f32(1e-4)`, every non-zero
/// `f32(c) + f32(-1e-4 * zeros / non_zeros)` (that shift computed in f64, as Python floats are).
/// `None` when every entry is 0 or an entry would not stay positive (where ORT's asserts fail).
fn smooth_f32(p: &[i64]) -> Option<Vec<f32>> {
    let nz = p.iter().filter(|&&v| v == 0).count();
    let nnz = p.len() - nz;
    if nnz == 0 {
        return None;
    }
    let eps1 = EPS * nz as f64 / nnz as f64;
    if eps1 >= 1.0 {
        return None;
    }
    let (add_zero, add_nonzero) = (EPS as f32, (-eps1) as f32);
    let out: Vec<f32> = p
        .iter()
        .map(|&v| v as f32 + if v == 0 { add_zero } else { add_nonzero })
        .collect();
    if out.iter().any(|&v| v <= 0.0) {
        None
    } else {
        Some(out)
    }
}

/// ORT's `entropy(p, q)` in float32: both normalised by their numpy sums, `Σ p ln(p / q)` summed
/// as numpy does. The one step not reproduced bit for bit is the logarithm: numpy's float32 `log`
/// (a SIMD approximation, up to a few ulps from the exact value) is replaced by the correctly
/// rounded one.
fn kl_f32(p: &[f32], q: &[f32]) -> f32 {
    let (sp, sq) = (np_sum_f32(p), np_sum_f32(q));
    let terms: Vec<f32> = p
        .iter()
        .zip(q)
        .map(|(&a, &b)| {
            let (a, b) = (1.0 * a / sp, 1.0 * b / sq);
            // ORT's `rel_entr` sets every term without `p > 0 and q > 0` to inf (its `p == 0`
            // case is overwritten by that); smoothed entries are positive anyway.
            if a > 0.0 && b > 0.0 {
                a * ((a / b) as f64).ln() as f32
            } else {
                f32::INFINITY
            }
        })
        .collect();
    np_sum_f32(&terms)
}

/// One candidate of ORT's entropy search computed as ORT does, in its float32 arithmetic: the
/// window's counts with the outliers folded into its end bins, the quantized distribution (each
/// chunk's sum over its non-zero bins assigned into an int64 array: truncated), both smoothed,
/// their KL divergence stored as float32.
fn candidate_kl_f32(hist: &[u64], zero: usize, i: usize, nq: usize) -> f32 {
    let nb = hist.len();
    let start = zero - i;
    let end = (zero + i + 1).min(nb);
    let sliced: Vec<i64> = hist[start..end].iter().map(|&c| c as i64).collect();
    let mut p = sliced.clone();
    p[0] += hist[..start].iter().sum::<u64>() as i64;
    let last = p.len() - 1;
    p[last] += hist[end..].iter().sum::<u64>() as i64;
    let m = sliced.len() / nq;
    let mut quant = vec![0i64; nq];
    for (k, qk) in quant.iter_mut().enumerate() {
        *qk = sliced[k * m..k * m + m].iter().sum();
    }
    quant[nq - 1] += sliced[nq * m..].iter().sum::<i64>();
    let mut q = vec![0i64; p.len()];
    for k in 0..nq {
        let norm = p[k * m..k * m + m].iter().filter(|&&v| v != 0).count();
        if norm != 0 {
            // numpy's true division (f64), assigned into int64: truncation.
            let v = (quant[k] as f64 / norm as f64) as i64;
            q[k * m..k * m + m].iter_mut().for_each(|x| *x = v);
        }
    }
    match (smooth_f32(&p), smooth_f32(&q)) {
        (Some(p), Some(q)) => kl_f32(&p, &q),
        _ => f32::INFINITY,
    }
}

/// ORT's `get_entropy_threshold` (before clipping to min/max) with its float32 arithmetic: every
/// candidate's KL divergence as ORT computes and stores it (float32), then `np.argmin` (the first
/// minimum, or the first NaN). O(bins) per candidate with a logarithm per bin (about 10^6 for
/// 2048 bins): the "ort" mode's search, where near-equal candidates must tie as they do in ORT.
pub fn ort_entropy_f32(hist: &[u64], edges: &[f32], num_quantized_bins: usize) -> (f32, f32) {
    let nb = hist.len();
    let zero = nb / 2;
    let half_q = num_quantized_bins / 2;
    if zero < half_q || num_quantized_bins == 0 {
        return (edges[0], edges[nb]);
    }
    let window = |i: usize| (edges[zero - i], edges[(zero + i + 1).min(nb)]);
    let divs = ort_entropy_divergences_f32(hist, num_quantized_bins);
    let mut best = 0usize;
    for (k, &d) in divs.iter().enumerate() {
        if d.is_nan() {
            best = k;
            break;
        }
        if d < divs[best] {
            best = k;
        }
    }
    window(half_q + best)
}

/// Every candidate's KL divergence of [`ort_entropy_f32`] (entry `k`: `num_quantized_bins / 2 + k`
/// bins each side of the middle bin).
pub fn ort_entropy_divergences_f32(hist: &[u64], num_quantized_bins: usize) -> Vec<f32> {
    let zero = hist.len() / 2;
    let half_q = num_quantized_bins / 2;
    if zero < half_q || num_quantized_bins == 0 {
        return Vec::new();
    }
    (half_q..=zero)
        .map(|i| candidate_kl_f32(hist, zero, i, num_quantized_bins))
        .collect()
}

/// qtool's percentile on the mergeable histogram (upper bin edges, see the module docs).
fn qtool_percentile(sum: &Summary, h: &Histogram, percentile: f64, symmetric: bool) -> (f64, f64) {
    let (min, max) = sum.range().expect("finite values");
    let total = h.total() as f64;
    let first_reaching = |counts: &[u64], target: f64| -> usize {
        let mut acc = 0u64;
        for (i, &c) in counts.iter().enumerate() {
            acc += c;
            if acc as f64 >= target {
                return i;
            }
        }
        counts.len() - 1
    };
    if symmetric {
        let (w, folded) = h.folded_abs();
        let j = first_reaching(&folded, percentile / 100.0 * total);
        let t = ((j + 1) as f64 * w).min(min.abs().max(max.abs()));
        (-t, t)
    } else {
        let cut = (100.0 - percentile) / 200.0;
        let l = first_reaching(&h.counts, cut * total);
        let r = first_reaching(&h.counts, (1.0 - cut) * total);
        (h.edge(l), h.edge(r + 1))
    }
}

/// The histogram regrouped symmetrically around zero into at most about `num_bins` bins:
/// (counts, bin width); zero is the edge in the middle.
fn symmetric_grouped(h: &Histogram, num_bins: usize) -> (Vec<u64>, f64) {
    let end = h.start + h.counts.len() as i64;
    let k = (-h.start).max(end).max(1) as usize; // native bins on each side of zero
    let f = (2 * k).div_ceil(num_bins.max(2)).max(1);
    let k = k.div_ceil(f) * f;
    let m = k / f;
    let mut out = vec![0u64; 2 * m];
    for (i, &c) in h.counts.iter().enumerate() {
        let idx = h.start + i as i64 + k as i64; // 0..2k
        out[(idx as usize) / f] += c;
    }
    (out, h.width() * f as f64)
}

/// qtool's entropy (TensorRT) search: ORT's search (its candidate windows and KL definition) on the
/// mergeable histogram regrouped exactly, symmetrically around zero, into at most about
/// `num_bins` bins (the bin edges are multiples of a power-of-two-based width, so the thresholds do
/// not depend on how the samples were split into shards).
fn qtool_entropy(h: &Histogram, num_bins: usize, nq: usize) -> (f64, f64) {
    let (hist, w) = symmetric_grouped(h, num_bins);
    let m = hist.len() / 2;
    let edges: Vec<f32> = (0..=hist.len())
        .map(|i| ((i as f64 - m as f64) * w) as f32)
        .collect();
    let (lo, hi) = ort_entropy(&hist, &edges, nq);
    (lo as f64, hi as f64)
}

/// The range in `[lo, hi]` (containing 0) minimising the expected quantization error of the
/// histogram for the integer range `qmin..=qmax`: values inside cost `step^2 / 12`, values outside
/// their squared distance to the clipping bound (each bin's values taken as uniform over the bin:
/// a bin `[a, a + w)` at distance `u = a - bound >= 0` costs `u^2 + u w + w^2 / 3` a value, summed
/// with prefix sums). Candidate bounds are the bin edges (histograms regrouped exactly to at most
/// 4096 bins of `|x|` when symmetric, 1024 signed bins otherwise) and the exact min/max.
fn mse_range(sum: &Summary, h: &Histogram, symmetric: bool, qmin: i32, qmax: i32) -> (f64, f64) {
    let (min, max) = sum.range().expect("finite values");
    let levels = (qmax - qmin) as f64;
    if symmetric {
        let (fw, folded) = h.folded_abs();
        let f = folded.len().div_ceil(4096).max(1);
        let w = fw * f as f64;
        let counts: Vec<f64> = folded
            .chunks(f)
            .map(|c| c.iter().sum::<u64>() as f64)
            .collect();
        let n = counts.len();
        // suffix sums of n, n a, n a^2 (a = lower edge)
        let (mut s0, mut s1, mut s2) = (vec![0f64; n + 1], vec![0f64; n + 1], vec![0f64; n + 1]);
        for k in (0..n).rev() {
            let a = k as f64 * w;
            s0[k] = s0[k + 1] + counts[k];
            s1[k] = s1[k + 1] + counts[k] * a;
            s2[k] = s2[k + 1] + counts[k] * a * a;
        }
        let amax = min.abs().max(max.abs());
        let total = s0[0];
        let mut best = (total * (2.0 * amax / levels).powi(2) / 12.0, amax);
        for j in (1..n).rev() {
            let t = j as f64 * w;
            if t >= amax {
                continue;
            }
            let step = 2.0 * t / levels;
            let inside = total - s0[j];
            let out = s2[j] - 2.0 * t * s1[j]
                + t * t * s0[j]
                + w * (s1[j] - t * s0[j])
                + w * w / 3.0 * s0[j];
            let err = inside * step * step / 12.0 + out;
            if err < best.0 {
                best = (err, t);
            }
        }
        (-best.1, best.1)
    } else {
        let len = h.counts.len();
        let (a0, w, counts) = h.grouped(len.div_ceil(1024).max(1));
        let counts: Vec<f64> = counts.iter().map(|&c| c as f64).collect();
        let n = counts.len();
        let edge = |e: usize| a0 + e as f64 * w;
        // prefix sums over bins < e of n, n b, n b^2 (b = upper edge); suffix sums over bins >= e
        // of n, n a, n a^2 (a = lower edge).
        let (mut p0, mut p1, mut p2) = (vec![0f64; n + 1], vec![0f64; n + 1], vec![0f64; n + 1]);
        for k in 0..n {
            let b = edge(k + 1);
            p0[k + 1] = p0[k] + counts[k];
            p1[k + 1] = p1[k] + counts[k] * b;
            p2[k + 1] = p2[k] + counts[k] * b * b;
        }
        let (mut s0, mut s1, mut s2) = (vec![0f64; n + 1], vec![0f64; n + 1], vec![0f64; n + 1]);
        for k in (0..n).rev() {
            let a = edge(k);
            s0[k] = s0[k + 1] + counts[k];
            s1[k] = s1[k + 1] + counts[k] * a;
            s2[k] = s2[k + 1] + counts[k] * a * a;
        }
        let total = p0[n];
        // (edge index, bound): index 0 / n mean "nothing clipped" with the exact min / max.
        let los: Vec<(usize, f64)> = std::iter::once((0, min))
            .chain(
                (1..n)
                    .filter(|&e| edge(e) <= 0.0 && edge(e) > min)
                    .map(|e| (e, edge(e))),
            )
            .collect();
        let his: Vec<(usize, f64)> = std::iter::once((n, max))
            .chain(
                (1..n)
                    .rev()
                    .filter(|&e| edge(e) >= 0.0 && edge(e) < max)
                    .map(|e| (e, edge(e))),
            )
            .collect();
        let mut best = (f64::INFINITY, (min, max));
        for &(el, lo) in &los {
            let below = if el == 0 {
                0.0
            } else {
                lo * lo * p0[el] - 2.0 * lo * p1[el]
                    + p2[el]
                    + w * (lo * p0[el] - p1[el])
                    + w * w / 3.0 * p0[el]
            };
            for &(eh, hi) in &his {
                let above = if eh == n {
                    0.0
                } else {
                    s2[eh] - 2.0 * hi * s1[eh]
                        + hi * hi * s0[eh]
                        + w * (s1[eh] - hi * s0[eh])
                        + w * w / 3.0 * s0[eh]
                };
                let step = (hi.max(0.0) - lo.min(0.0)) / levels;
                let inside = total
                    - (if el == 0 { 0.0 } else { p0[el] })
                    - (if eh == n { 0.0 } else { s0[eh] });
                let err = inside * step * step / 12.0 + below + above;
                if err < best.0 {
                    best = (err, (lo, hi));
                }
            }
        }
        best.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn np_edges_match_numpy_layout() {
        let e = np_edges(-1.0, 1.0, 4);
        assert_eq!(e, vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
        assert_eq!(np_edges(2.0, 2.0, 2), vec![1.5, 2.0, 2.5]);
    }

    /// The literal search (a logarithm per bin of every candidate window), as ORT runs it.
    fn ort_entropy_direct(hist: &[u64], edges: &[f32], nq: usize) -> (f32, f32) {
        let nb = hist.len();
        let zero = nb / 2;
        let half_q = nq / 2;
        let mut best = (
            f64::INFINITY,
            (edges[zero - half_q], edges[(zero + half_q + 1).min(nb)]),
        );
        for i in half_q..=zero {
            let div = candidate_kl_direct(hist, zero, i, nq);
            if div < best.0 {
                best = (div, (edges[zero - i], edges[(zero + i + 1).min(nb)]));
            }
        }
        best.1
    }

    /// The prefix-sum search gives the literal search's KL values (to rounding) and thresholds,
    /// on dense, sparse, one-sided, spiky and outlier-heavy histograms, odd and even sizes.
    #[test]
    fn fast_entropy_search_equals_the_literal_one() {
        let mut state = 0x2545F4914F6CDD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut checked = 0;
        for case in 0..60 {
            let nb = [256usize, 257, 512, 1000, 2048][case % 5];
            let nq = [128usize, 64, 128, 32, 128][case % 5];
            let kind = case / 5 % 6;
            let hist: Vec<u64> = (0..nb)
                .map(|j| {
                    let x = (j as f64 - nb as f64 / 2.0) / (nb as f64 / 8.0);
                    let r = next();
                    match kind {
                        // Gaussian-like, large counts.
                        0 => ((-x * x / 2.0).exp() * 1e6) as u64 + r % 3,
                        // Sparse: most bins empty.
                        1 => (r % 50 == 0) as u64 * (r % 1000),
                        // ReLU-like: nothing below zero, a spike at zero.
                        2 => {
                            if x < 0.0 {
                                0
                            } else if j == nb / 2 {
                                5_000_000
                            } else {
                                ((-x).exp() * 1e5) as u64
                            }
                        }
                        // Narrow core with far outliers.
                        3 => {
                            if x.abs() < 0.3 {
                                1_000_000 + r % 1000
                            } else {
                                (r % 400 == 0) as u64
                            }
                        }
                        // Small counts everywhere.
                        4 => r % 4,
                        // Uniform.
                        _ => 1000 + r % 10,
                    }
                })
                .collect();
            let edges = np_edges(-1.0, 1.0, nb);
            let search = EntropySearch::new(&hist);
            let zero = nb / 2;
            let close = |a: f64, b: f64| a == b || (a - b).abs() <= 1e-9 * b.abs() + 1e-12;
            let mut literal = Vec::new();
            for i in nq / 2..=zero {
                let (a, b) = (
                    search.kl(zero, i, nq),
                    candidate_kl_direct(&hist, zero, i, nq),
                );
                assert!(close(a, b), "case {case} window {i}: fast {a}, literal {b}");
                literal.push(b);
                checked += 1;
            }
            // The same thresholds, unless the two minima tie to rounding (flat far tails).
            let (fast, slow) = (
                ort_entropy(&hist, &edges, nq),
                ort_entropy_direct(&hist, &edges, nq),
            );
            if fast != slow {
                let div_of = |t: (f32, f32)| {
                    let k = (nq / 2..=zero)
                        .position(|i| (edges[zero - i], edges[(zero + i + 1).min(nb)]) == t)
                        .expect("a candidate");
                    literal[k]
                };
                assert!(
                    close(div_of(fast), div_of(slow)),
                    "case {case}: fast {fast:?}, literal {slow:?}"
                );
            }
        }
        assert!(checked > 10_000);
    }

    #[test]
    fn ort_entropy_with_equal_bins_is_the_whole_range() {
        let hist = vec![1u64; 128];
        let edges = np_edges(-1.0, 1.0, 128);
        // ORT's defaults (128 bins, 128 quantized bins) leave one candidate: index 0..128.
        assert_eq!(ort_entropy(&hist, &edges, 128), (-1.0, 1.0));
    }
}
