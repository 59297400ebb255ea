//! Calibration statistics: per tensor (and optionally per channel) counts, exact min/max, NaN/Inf
//! counts, exact sums of per-batch minima/maxima and a mergeable histogram. [`CalibStats`] is both
//! the streaming observer (fold one tensor at a time into it) and the file format (deterministic
//! JSON); [`merge`] combines two of them exactly.

use crate::CalibError;
use crate::exact::ExactSum;
use crate::hist::Histogram;
use crate::ort_hist::{NpHistogram, OrtHistKind};
use qtool_tensor::{DType, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The `format` field of a statistics file.
pub const STATS_FORMAT: &str = "qtool.calib-stats";
/// The current statistics file version.
pub const STATS_VERSION: u32 = 1;

/// What the observers collect. Two statistics can only be merged when their configs are equal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsConfig {
    /// Keep a histogram per tensor (needed by Percentile, Entropy and MSE; MinMax needs none).
    pub histogram: bool,
    /// Bin budget of a per-tensor histogram (memory: 8 bytes a bin). The default, 16384, keeps the
    /// histogram at least 4x finer than ORT's 2048-bin layout, which the "ort" mode re-bins onto.
    pub bins: u32,
    /// Also keep statistics per channel along this axis (negative counts from the end). Tensors of
    /// too small a rank get no per-channel statistics.
    pub channel_axis: Option<i64>,
    /// Bin budget of each per-channel histogram.
    pub channel_bins: u32,
    /// Also collect ONNX Runtime's own histograms of every float32 tensor, bit for bit
    /// ([`crate::ort_hist`]), with this many bins: the "ort" mode's Percentile and Entropy then
    /// run on exactly ORT's histogram. Their layout depends on the data's extremes, so the driver
    /// makes a second pass over the data; such statistics merge only where the layouts agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ort_bins: Option<u32>,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            histogram: true,
            bins: 16384,
            channel_axis: None,
            channel_bins: 2048,
            ort_bins: None,
        }
    }
}

/// Statistics of one stream of values (a tensor, or one channel of it). Only finite values count.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Finite values seen.
    pub count: u64,
    /// Exact minimum and maximum of the finite values (`-0.0 < 0.0`), `None` before any.
    pub min: Option<F64>,
    pub max: Option<F64>,
    /// Smallest `|x|` (ORT's absolute-value histogram starts there).
    pub min_abs: Option<F64>,
    /// Batches with at least one finite value, and the exact sums of their minima and maxima (as
    /// f32): the "moving average" of ORT's MinMax calibrator is their mean.
    pub batches: u64,
    pub batch_min_sum: ExactSum,
    pub batch_max_sum: ExactSum,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hist: Option<Histogram>,
}

/// An f64 compared and stored exactly (total order, so `-0.0 < 0.0`); serialized as a JSON number.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct F64(pub f64);

impl PartialEq for F64 {
    fn eq(&self, o: &Self) -> bool {
        self.0.to_bits() == o.0.to_bits()
    }
}
impl Eq for F64 {}

fn tmin(a: Option<F64>, b: Option<F64>) -> Option<F64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.0.total_cmp(&x.0).is_lt() { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

fn tmax(a: Option<F64>, b: Option<F64>) -> Option<F64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.0.total_cmp(&x.0).is_gt() { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Per-batch aggregate of finite values.
#[derive(Clone, Copy, Debug, Default)]
struct BatchAgg {
    count: u64,
    min: Option<F64>,
    max: Option<F64>,
    min_abs: Option<F64>,
}

impl BatchAgg {
    fn push(&mut self, x: f64) {
        self.count += 1;
        self.min = tmin(self.min, Some(F64(x)));
        self.max = tmax(self.max, Some(F64(x)));
        self.min_abs = tmin(self.min_abs, Some(F64(x.abs())));
    }
}

/// Order key of an f32: compares like `f32::total_cmp` (so `-0.0 < 0.0`) as an i32. Its own inverse.
fn order_key(x: f32) -> i32 {
    let b = x.to_bits() as i32;
    b ^ ((b >> 31) & 0x7fff_ffff)
}

fn from_key(k: i32) -> f32 {
    f32::from_bits(order_key(f32::from_bits(k as u32)).cast_unsigned())
}

/// Min/max (total order), smallest `|x|` and number of non-finite values of a slice, in integer
/// arithmetic the compiler vectorizes: `(min key, max key, min |x| bits, non-finite)`.
type Reduced = (i32, i32, u32, u64);

fn reduce_chunk(xs: &[f32]) -> Reduced {
    let (mut lo, mut hi, mut amin, mut bad) = (i32::MAX, i32::MIN, u32::MAX, 0u64);
    for &x in xs {
        let bits = x.to_bits();
        let k = order_key(x);
        lo = lo.min(k);
        hi = hi.max(k);
        amin = amin.min(bits & 0x7fff_ffff);
        bad += ((bits & 0x7f80_0000) == 0x7f80_0000) as u64;
    }
    (lo, hi, amin, bad)
}

fn combine(a: Reduced, b: Reduced) -> Reduced {
    (a.0.min(b.0), a.1.max(b.1), a.2.min(b.2), a.3 + b.3)
}

fn reduce_f32(xs: &[f32]) -> Reduced {
    use rayon::prelude::*;
    if xs.len() < crate::hist::PAR_MIN {
        return reduce_chunk(xs);
    }
    xs.par_chunks(crate::hist::PAR_CHUNK)
        .map(reduce_chunk)
        .reduce(|| (i32::MAX, i32::MIN, u32::MAX, 0), combine)
}

/// The batch aggregate of an all-finite f32 slice, or `None` when it holds NaN or Inf (then the
/// element-wise path counts them).
fn finite_agg_f32(xs: &[f32]) -> Option<BatchAgg> {
    if xs.is_empty() {
        return Some(BatchAgg::default());
    }
    let (lo, hi, amin, bad) = reduce_f32(xs);
    (bad == 0).then(|| BatchAgg {
        count: xs.len() as u64,
        min: Some(F64(from_key(lo) as f64)),
        max: Some(F64(from_key(hi) as f64)),
        min_abs: Some(F64(f32::from_bits(amin) as f64)),
    })
}

impl BatchAgg {
    fn merge(&mut self, o: &BatchAgg) {
        self.count += o.count;
        self.min = tmin(self.min, o.min);
        self.max = tmax(self.max, o.max);
        self.min_abs = tmin(self.min_abs, o.min_abs);
    }
}

impl Summary {
    fn absorb(&mut self, b: &BatchAgg) {
        if b.count == 0 {
            return;
        }
        self.count += b.count;
        self.min = tmin(self.min, b.min);
        self.max = tmax(self.max, b.max);
        self.min_abs = tmin(self.min_abs, b.min_abs);
        self.batches += 1;
        self.batch_min_sum
            .add_f32(b.min.expect("count > 0").0 as f32);
        self.batch_max_sum
            .add_f32(b.max.expect("count > 0").0 as f32);
    }

    /// The exact range `(min, max)` of the finite values, if any.
    pub fn range(&self) -> Option<(f64, f64)> {
        Some((self.min?.0, self.max?.0))
    }

    /// Mean of the per-batch minima and maxima (ORT's `moving_average` MinMax within one
    /// `collect_data` call), if any batch had finite values.
    pub fn batch_mean_range(&self) -> Option<(f64, f64)> {
        if self.batches == 0 {
            return None;
        }
        let n = self.batches as f64;
        Some((
            self.batch_min_sum.to_f64() / n,
            self.batch_max_sum.to_f64() / n,
        ))
    }

    fn merge(&mut self, o: &Summary, bins: u32) {
        self.count += o.count;
        self.min = tmin(self.min, o.min);
        self.max = tmax(self.max, o.max);
        self.min_abs = tmin(self.min_abs, o.min_abs);
        self.batches += o.batches;
        self.batch_min_sum.merge(&o.batch_min_sum);
        self.batch_max_sum.merge(&o.batch_max_sum);
        let range = self.range();
        match (&mut self.hist, &o.hist) {
            (Some(a), Some(b)) => {
                if let Some((lo, hi)) = range {
                    a.merge(b, lo, hi, bins);
                }
            }
            (None, Some(b)) => self.hist = Some(b.clone()),
            _ => {}
        }
    }
}

/// Per-channel statistics of a tensor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelStats {
    /// The channel axis (non-negative).
    pub axis: usize,
    pub channels: Vec<Summary>,
}

/// Statistics of one tensor over every batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorStats {
    /// ONNX element type name (`FLOAT`, `FLOAT16`, ...).
    pub dtype: String,
    /// The shape seen: a dimension that varied between batches is `null`; `null` altogether when
    /// the rank varied.
    pub shape: Option<Vec<Option<u64>>>,
    /// Batches (observations) of this tensor.
    pub batches: u64,
    /// Non-finite values, excluded from everything else.
    pub nan: u64,
    pub pos_inf: u64,
    pub neg_inf: u64,
    /// Statistics of all finite values.
    pub all: Summary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_channel: Option<ChannelStats>,
    /// ONNX Runtime's value histogram (`collect_value`), when collected ([`StatsConfig::ort_bins`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ort_value: Option<NpHistogram>,
    /// ONNX Runtime's absolute-value histogram (`collect_absolute_value`), when collected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ort_abs: Option<NpHistogram>,
}

/// Calls `f` on every element of a float tensor as f64 (row-major), or returns `None` for other
/// element types.
fn float_values(t: &Tensor) -> Option<Box<dyn Iterator<Item = f64> + '_>> {
    Some(match t {
        Tensor::F32(a) => Box::new(a.iter().map(|&v| v as f64)),
        Tensor::F64(a) => Box::new(a.iter().copied()),
        Tensor::F16(a) => Box::new(a.iter().map(|v| v.to_f64())),
        Tensor::BF16(a) => Box::new(a.iter().map(|v| v.to_f64())),
        _ => return None,
    })
}

fn merge_shape(
    a: &Option<Vec<Option<u64>>>,
    b: &Option<Vec<Option<u64>>>,
) -> Option<Vec<Option<u64>>> {
    match (a, b) {
        (Some(x), Some(y)) if x.len() == y.len() => Some(
            x.iter()
                .zip(y)
                .map(|(p, q)| if p == q { *p } else { None })
                .collect(),
        ),
        _ => None,
    }
}

impl TensorStats {
    fn new(t: &Tensor) -> TensorStats {
        TensorStats {
            dtype: t.dtype().onnx_name().to_string(),
            shape: Some(t.shape().iter().map(|&d| Some(d as u64)).collect()),
            batches: 0,
            nan: 0,
            pos_inf: 0,
            neg_inf: 0,
            all: Summary::default(),
            per_channel: None,
            ort_value: None,
            ort_abs: None,
        }
    }

    /// Folds one observation of the tensor into the statistics.
    pub fn observe(&mut self, name: &str, t: &Tensor, cfg: &StatsConfig) -> Result<(), CalibError> {
        let err = |msg: String| CalibError::Tensor {
            tensor: name.to_string(),
            msg,
        };
        if t.dtype().onnx_name() != self.dtype {
            return Err(err(format!(
                "element type changed from {} to {}",
                self.dtype,
                t.dtype().onnx_name()
            )));
        }
        let Some(values) = float_values(t) else {
            return Err(err(format!(
                "only float tensors can be calibrated, this one is {}",
                t.dtype()
            )));
        };
        let shape: Vec<Option<u64>> = t.shape().iter().map(|&d| Some(d as u64)).collect();
        self.shape = if self.batches == 0 {
            Some(shape)
        } else {
            merge_shape(&self.shape, &Some(shape))
        };
        self.batches += 1;

        // Per-channel layout.
        let chan = match cfg.channel_axis {
            Some(ax) => {
                let r = t.rank() as i64;
                let a = if ax < 0 { ax + r } else { ax };
                if a >= 0 && a < r {
                    Some(a as usize)
                } else {
                    None
                }
            }
            None => None,
        };
        let chan = match (chan, &self.per_channel) {
            (Some(a), Some(pc)) if pc.axis != a || pc.channels.len() != t.shape()[a] => {
                return Err(err(format!(
                    "per-channel statistics: axis {a} with {} channels, earlier batches had axis {} with {}",
                    t.shape()[a],
                    pc.axis,
                    pc.channels.len()
                )));
            }
            (None, Some(pc)) => {
                return Err(err(format!(
                    "per-channel statistics on axis {}: a batch of rank {} has no such axis",
                    pc.axis,
                    t.rank()
                )));
            }
            (Some(a), None) if self.batches > 1 => {
                return Err(err(format!(
                    "per-channel statistics: earlier batches had no axis {a}"
                )));
            }
            (c, _) => c,
        };
        let (nch, inner) = match chan {
            Some(a) => (
                t.shape()[a],
                t.shape()[a + 1..].iter().product::<usize>().max(1),
            ),
            None => (1, 1),
        };

        // Fast path: a contiguous all-finite f32 tensor (reductions in integer arithmetic, in
        // parallel for big tensors; histograms counted in parallel chunks).
        if let Tensor::F32(a) = t
            && let Some(xs) = a.as_slice()
            && let Some(agg) = finite_agg_f32(xs)
        {
            let outer = if chan.is_some() {
                xs.len() / (nch * inner).max(1)
            } else {
                0
            };
            let block = |o: usize, c: usize| &xs[(o * nch + c) * inner..(o * nch + c + 1) * inner];
            let mut cagg = vec![BatchAgg::default(); if chan.is_some() { nch } else { 0 }];
            for (c, b) in cagg.iter_mut().enumerate() {
                for o in 0..outer {
                    b.merge(&finite_agg_f32(block(o, c)).expect("all finite"));
                }
            }
            self.all.absorb(&agg);
            if let Some(a) = chan {
                let pc = self.per_channel.get_or_insert_with(|| ChannelStats {
                    axis: a,
                    channels: vec![Summary::default(); nch],
                });
                for (s, b) in pc.channels.iter_mut().zip(&cagg) {
                    s.absorb(b);
                }
            }
            if cfg.histogram && agg.count > 0 {
                let (lo, hi) = self.all.range().expect("finite values seen");
                self.all
                    .hist
                    .get_or_insert_with(Histogram::default)
                    .add_f32(xs, lo, hi, cfg.bins);
                if let Some(pc) = &mut self.per_channel {
                    for (c, s) in pc.channels.iter_mut().enumerate() {
                        if let Some((lo, hi)) = s.range()
                            && outer * inner > 0
                        {
                            let h = s.hist.get_or_insert_with(Histogram::default);
                            if outer == 1 {
                                h.add_f32(block(0, c), lo, hi, cfg.channel_bins);
                            } else {
                                h.add(
                                    (0..outer).flat_map(|o| block(o, c).iter().map(|&v| v as f64)),
                                    lo,
                                    hi,
                                    cfg.channel_bins,
                                );
                            }
                        }
                    }
                }
            }
            return Ok(());
        }

        // Pass 1: counts and ranges.
        let mut agg = BatchAgg::default();
        let mut cagg = vec![BatchAgg::default(); if chan.is_some() { nch } else { 0 }];
        for (i, x) in values.enumerate() {
            if x.is_nan() {
                self.nan += 1;
            } else if x == f64::INFINITY {
                self.pos_inf += 1;
            } else if x == f64::NEG_INFINITY {
                self.neg_inf += 1;
            } else {
                agg.push(x);
                if chan.is_some() {
                    cagg[(i / inner) % nch].push(x);
                }
            }
        }
        self.all.absorb(&agg);
        if let Some(a) = chan {
            let pc = self.per_channel.get_or_insert_with(|| ChannelStats {
                axis: a,
                channels: vec![Summary::default(); nch],
            });
            for (s, b) in pc.channels.iter_mut().zip(&cagg) {
                s.absorb(b);
            }
        }

        // Pass 2: histograms, now that the ranges including this batch are known.
        if cfg.histogram && agg.count > 0 {
            let (lo, hi) = self.all.range().expect("finite values seen");
            let h = self.all.hist.get_or_insert_with(Histogram::default);
            h.add(
                float_values(t).expect("float").filter(|x| x.is_finite()),
                lo,
                hi,
                cfg.bins,
            );
            if let Some(pc) = &mut self.per_channel {
                // One pass over the tensor per channel would be slow for big tensors: collect the
                // values of each channel of this batch first (memory: one copy of the batch).
                let mut per: Vec<Vec<f64>> = cagg
                    .iter()
                    .map(|b| Vec::with_capacity(b.count as usize))
                    .collect();
                for (i, x) in float_values(t).expect("float").enumerate() {
                    if x.is_finite() {
                        per[(i / inner) % nch].push(x);
                    }
                }
                for (s, vals) in pc.channels.iter_mut().zip(per) {
                    if let Some((lo, hi)) = s.range()
                        && !vals.is_empty()
                    {
                        s.hist.get_or_insert_with(Histogram::default).add(
                            vals.into_iter(),
                            lo,
                            hi,
                            cfg.channel_bins,
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Merges another tensor's statistics (same tensor, other batches).
    pub fn merge(
        &mut self,
        name: &str,
        o: &TensorStats,
        cfg: &StatsConfig,
    ) -> Result<(), CalibError> {
        let err = |msg: String| CalibError::Merge(format!("tensor '{name}': {msg}"));
        if self.dtype != o.dtype {
            return Err(err(format!(
                "element types differ ({} and {})",
                self.dtype, o.dtype
            )));
        }
        match (&mut self.per_channel, &o.per_channel) {
            (Some(a), Some(b)) => {
                if a.axis != b.axis || a.channels.len() != b.channels.len() {
                    return Err(err(format!(
                        "per-channel layouts differ (axis {} with {} channels, axis {} with {})",
                        a.axis,
                        a.channels.len(),
                        b.axis,
                        b.channels.len()
                    )));
                }
                for (x, y) in a.channels.iter_mut().zip(&b.channels) {
                    x.merge(y, cfg.channel_bins);
                }
            }
            (None, None) => {}
            _ => return Err(err("only one side has per-channel statistics".into())),
        }
        self.shape = merge_shape(&self.shape, &o.shape);
        self.batches += o.batches;
        self.nan += o.nan;
        self.pos_inf += o.pos_inf;
        self.neg_inf += o.neg_inf;
        self.all.merge(&o.all, cfg.bins);
        for (mine, theirs, what) in [
            (&mut self.ort_value, &o.ort_value, "value"),
            (&mut self.ort_abs, &o.ort_abs, "absolute-value"),
        ] {
            let merged = match (mine.as_mut(), theirs) {
                (None, None) => true,
                (Some(a), Some(b)) => a.merge(b),
                _ => false,
            };
            if !merged {
                {
                    return Err(err(format!(
                        "ONNX Runtime's {what} histograms have different layouts (their range is \
                         set by each part's own min/max, as in ORT): such statistics cannot be \
                         merged; collect them in one run, or merge statistics without ORT histograms"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Sets up ONNX Runtime's empty histograms from the extremes seen so far (the first pass):
    /// `bins` bins of values over `[-T, T]` and of `|x|` over `[min|x|, max|x|]`. Only float32
    /// tensors with finite values get them (ORT's float16 arithmetic is not reproduced), and only
    /// where numpy accepts the layout.
    pub fn start_ort_histograms(&mut self, bins: u32) {
        self.ort_value = None;
        self.ort_abs = None;
        if self.dtype != "FLOAT" {
            return;
        }
        let (Some((min, max)), Some(amin)) = (self.all.range(), self.all.min_abs) else {
            return;
        };
        let (min, max) = (min as f32, max as f32);
        let t = min.abs().max(max.abs());
        let n = bins as usize;
        self.ort_value = NpHistogram::new(OrtHistKind::Value, -t, t, n);
        self.ort_abs = NpHistogram::new(OrtHistKind::Abs, amin.0 as f32, t, n);
    }

    /// Folds one observation into ONNX Runtime's histograms (the second pass); other element
    /// types and tensors without such histograms are left alone.
    pub fn observe_ort(&mut self, t: &Tensor) {
        let Tensor::F32(a) = t else { return };
        if self.ort_value.is_none() && self.ort_abs.is_none() {
            return;
        }
        let owned;
        let xs: &[f32] = match a.as_slice() {
            Some(xs) => xs,
            None => {
                owned = a.iter().copied().collect::<Vec<f32>>();
                &owned
            }
        };
        for h in [&mut self.ort_value, &mut self.ort_abs]
            .into_iter()
            .flatten()
        {
            h.add(xs);
        }
    }

    /// Non-finite values seen.
    pub fn non_finite(&self) -> u64 {
        self.nan + self.pos_inf + self.neg_inf
    }
}

/// Statistics of every calibrated tensor: the observer state and the statistics file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibStats {
    /// Always [`STATS_FORMAT`].
    pub format: String,
    /// Always [`STATS_VERSION`] when written by this version.
    pub version: u32,
    pub config: StatsConfig,
    /// Samples (model runs) folded in.
    pub samples: u64,
    /// Per tensor, sorted by name.
    pub tensors: BTreeMap<String, TensorStats>,
}

impl CalibStats {
    pub fn new(config: StatsConfig) -> CalibStats {
        CalibStats {
            format: STATS_FORMAT.into(),
            version: STATS_VERSION,
            config,
            samples: 0,
            tensors: BTreeMap::new(),
        }
    }

    /// Folds one observation of tensor `name` into the statistics (the tensor can be dropped
    /// afterwards: memory stays O(tensors x bins)).
    pub fn observe(&mut self, name: &str, t: &Tensor) -> Result<(), CalibError> {
        if !is_calibratable(t.dtype()) {
            return Err(CalibError::Tensor {
                tensor: name.to_string(),
                msg: format!(
                    "only float tensors can be calibrated, this one is {}",
                    t.dtype()
                ),
            });
        }
        let cfg = self.config.clone();
        let s = self
            .tensors
            .entry(name.to_string())
            .or_insert_with(|| TensorStats::new(t));
        s.observe(name, t, &cfg)
    }

    /// Deterministic bytes of the statistics file (compact JSON and a newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("statistics serialize");
        v.push(b'\n');
        v
    }

    /// Reads a statistics file's bytes; `what` names it in errors.
    pub fn from_bytes(b: &[u8], what: &str) -> Result<CalibStats, CalibError> {
        let bad = |msg: String| CalibError::StatsFile {
            path: what.to_string(),
            msg,
        };
        let v: serde_json::Value =
            serde_json::from_slice(b).map_err(|e| bad(format!("not JSON: {e}")))?;
        if v.get("format").and_then(|f| f.as_str()) != Some(STATS_FORMAT) {
            return Err(bad(format!(
                "not a qtool calibration statistics file (no \"format\": \"{STATS_FORMAT}\")"
            )));
        }
        let ver = v.get("version").and_then(|f| f.as_u64()).unwrap_or(0);
        if ver != STATS_VERSION as u64 {
            return Err(bad(format!(
                "version {ver} is not supported (this qtool reads version {STATS_VERSION})"
            )));
        }
        serde_json::from_value(v).map_err(|e| bad(e.to_string()))
    }

    pub fn save(&self, path: &Path) -> Result<(), CalibError> {
        std::fs::write(path, self.to_bytes()).map_err(|e| CalibError::Io {
            path: path.display().to_string(),
            source: e,
        })
    }

    pub fn load(path: &Path) -> Result<CalibStats, CalibError> {
        let b = std::fs::read(path).map_err(|e| CalibError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        CalibStats::from_bytes(&b, &path.display().to_string())
    }

    /// Tensors with NaN or infinite values, with (nan, +inf, -inf) counts.
    pub fn non_finite_report(&self) -> Vec<(String, u64, u64, u64)> {
        self.tensors
            .iter()
            .filter(|(_, s)| s.non_finite() > 0)
            .map(|(n, s)| (n.clone(), s.nan, s.pos_inf, s.neg_inf))
            .collect()
    }
}

/// Merges two statistics of the same model and config (e.g. two shards). Exact, commutative and
/// associative: merging shards gives byte-identical files to a single run over all samples.
pub fn merge(a: &CalibStats, b: &CalibStats) -> Result<CalibStats, CalibError> {
    if a.config != b.config {
        return Err(CalibError::Merge(format!(
            "the statistics were collected with different settings ({:?} and {:?})",
            a.config, b.config
        )));
    }
    let mut out = a.clone();
    out.samples += b.samples;
    for (name, s) in &b.tensors {
        match out.tensors.get_mut(name) {
            Some(t) => t.merge(name, s, &a.config)?,
            None => {
                out.tensors.insert(name.clone(), s.clone());
            }
        }
    }
    Ok(out)
}

/// True for the element types the observers accept.
pub fn is_calibratable(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
}
