//! The calibration driver: runs the executor over a data source and folds every selected tensor
//! into [`CalibStats`] the moment the executor produces it (memory stays O(tensors x bins): no
//! activation outlives its observation).

use crate::CalibError;
use crate::source::{DataSource, SampleOrder};
use crate::stats::{CalibStats, StatsConfig, is_calibratable};
use qtool_exec::Executor;
use qtool_tensor::Tensor;
use std::collections::BTreeSet;

/// Which tensors to collect.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TensorSelection {
    /// Every float value the executor shows: graph inputs and node outputs (Constant node outputs
    /// included; initializers are not shown). Integer and bool tensors are skipped.
    #[default]
    AllFloat,
    /// Exactly these tensors (each must be produced, and be float).
    Names(Vec<String>),
}

/// Method-independent options of [`calibrate`]: what to collect, and from which samples.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CalibOptions {
    pub tensors: TensorSelection,
    /// Tensors never collected.
    pub exclude: Vec<String>,
    /// Histograms on/off, bin budgets, per-channel axis.
    pub stats: StatsConfig,
    /// Limit, seeded shuffle and shard.
    pub order: SampleOrder,
}

/// Runs `exec` on the samples of `source` chosen by `opts.order` and returns the statistics of the
/// selected tensors. `progress(done, total)` is called after every sample (`total` is `None` for a
/// source of unknown length). A wrong input (name, element type or shape) is an error naming the
/// sample's file; NaN and Inf values are counted in the statistics, not errors.
///
/// With [`StatsConfig::ort_bins`] set, a second pass runs the same samples again to fill ONNX
/// Runtime's histograms, whose layout needs the extremes of the first pass (`progress` then counts
/// the samples twice). That needs a source of known length (every built-in source has one).
pub fn calibrate(
    exec: &Executor,
    source: &mut dyn DataSource,
    opts: &CalibOptions,
    progress: &mut dyn FnMut(usize, Option<usize>),
) -> Result<CalibStats, CalibError> {
    opts.order.validate()?;
    let mut stats = CalibStats::new(opts.stats.clone());
    let wanted: Option<BTreeSet<&str>> = match &opts.tensors {
        TensorSelection::AllFloat => None,
        TensorSelection::Names(v) => Some(v.iter().map(String::as_str).collect()),
    };
    let excluded: BTreeSet<&str> = opts.exclude.iter().map(String::as_str).collect();
    let run_one =
        |stats: &mut CalibStats, sample: crate::source::Sample| -> Result<(), CalibError> {
            let mut err: Option<CalibError> = None;
            let mut observer = |name: &str, t: &Tensor| {
                if err.is_some() || excluded.contains(name) {
                    return;
                }
                let selected = match &wanted {
                    None => is_calibratable(t.dtype()),
                    Some(w) => w.contains(name),
                };
                if selected && let Err(e) = stats.observe(name, t) {
                    err = Some(e);
                }
            };
            let origin = sample.origin;
            exec.run_observed(sample.inputs, &mut observer)
                .map_err(|e| CalibError::Exec {
                    origin: origin.clone(),
                    source: Box::new(e),
                })?;
            if let Some(e) = err {
                return Err(CalibError::Source {
                    path: origin,
                    msg: e.to_string(),
                });
            }
            stats.samples += 1;
            Ok(())
        };

    if opts.stats.ort_bins.is_some() && source.len().is_none() {
        return Err(CalibError::Settings(
            "ONNX Runtime's histograms need two passes over the data, and this data source has no known length".into(),
        ));
    }
    match source.len() {
        Some(0) => return Err(CalibError::Empty("the data source holds no samples".into())),
        Some(len) => {
            let idx = opts.order.indices(len);
            let second = idx.clone();
            let total = idx.len();
            for (done, i) in idx.into_iter().enumerate() {
                let sample = source.get(i)?.ok_or_else(|| {
                    CalibError::Empty(format!("the data source ended before sample {i} of {len}"))
                })?;
                run_one(&mut stats, sample)?;
                progress(done + 1, Some(total));
            }
            if let Some(bins) = opts.stats.ort_bins {
                for t in stats.tensors.values_mut() {
                    t.start_ort_histograms(bins);
                }
                for (done, i) in second.into_iter().enumerate() {
                    let sample = source.get(i)?.ok_or_else(|| {
                        CalibError::Empty(format!(
                            "the data source ended before sample {i} of {len}"
                        ))
                    })?;
                    let origin = sample.origin;
                    let mut observer = |name: &str, t: &Tensor| {
                        if let Some(s) = stats.tensors.get_mut(name) {
                            s.observe_ort(t);
                        }
                    };
                    exec.run_observed(sample.inputs, &mut observer)
                        .map_err(|e| CalibError::Exec {
                            origin: origin.clone(),
                            source: Box::new(e),
                        })?;
                    progress(done + 1, Some(total));
                }
            }
        }
        None => {
            if opts.order.shuffle_seed.is_some() {
                return Err(CalibError::Settings(
                    "cannot shuffle a data source of unknown length".into(),
                ));
            }
            let (mut i, mut done) = (0usize, 0usize);
            while opts.order.limit.is_none_or(|l| i < l) {
                let Some(sample) = source.get(i)? else { break };
                if i % opts.order.shard.count == opts.order.shard.index {
                    run_one(&mut stats, sample)?;
                    done += 1;
                    progress(done, None);
                }
                i += 1;
            }
            if i == 0 {
                return Err(CalibError::Empty("the data source holds no samples".into()));
            }
        }
    }
    if let Some(w) = &wanted {
        let missing: Vec<&str> = w
            .iter()
            .copied()
            .filter(|n| !excluded.contains(n) && !stats.tensors.contains_key(*n))
            .collect();
        if !missing.is_empty() && stats.samples > 0 {
            return Err(CalibError::Settings(format!(
                "tensors never produced by the model: {}",
                missing.join(", ")
            )));
        }
    }
    Ok(stats)
}
