//! `qtool calibrate` and `qtool stats merge`: collect calibration statistics of a model over a data
//! set (one streaming pass, bounded memory, shardable), and turn saved statistics into ranges with
//! any method without running the model again.

use anyhow::{Context, Result, bail};
use qtool_calib::{
    CalibOptions, CalibStats, DataSource, FileLayout, HistMode, ImageFolderSource, Method,
    NpyDirSource, NpySource, NpzSource, OnnxTestDataSource, Preprocess, RangeSettings, Resize,
    SampleOrder, Shard, StatsConfig, TensorDecoder, compute_ranges,
};
use qtool_exec::{ExecOptions, Executor};
use qtool_ir::{DimValue, Model};
use std::path::Path;

/// What `qtool calibrate` collects.
#[derive(Clone, Debug, Default)]
pub struct CalibrateSettings {
    /// Keep histograms (needed by percentile, entropy and mse; minmax needs none).
    pub histograms: bool,
    /// Also keep per-channel activation statistics (axis 1).
    pub per_channel_activations: bool,
    pub samples: Option<usize>,
    pub seed: Option<u64>,
    /// (index, count)
    pub shard: Option<(usize, usize)>,
    pub threads: Option<usize>,
    /// Also collect ONNX Runtime's own histograms with this many bins (a second pass over the
    /// data; the "ort" mode's Percentile and Entropy then use exactly ORT's histogram).
    pub ort_histogram_bins: Option<u32>,
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

fn has_files(dir: &Path, pred: impl Fn(&Path) -> bool) -> Result<bool> {
    Ok(std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .any(|e| pred(&e.path())))
}

/// The static [H, W] of a model's single image input (NCHW), if declared.
fn image_hw(model: &Model, input: &str) -> Option<(usize, usize)> {
    let g = &model.graph;
    let (_, info) = g.inputs.iter().find(|(v, _)| g.value_name(*v) == input)?;
    let shape = info.ty.as_ref()?.as_tensor()?.shape.as_ref()?;
    if shape.len() != 4 {
        return None;
    }
    match (&shape[2].value, &shape[3].value) {
        (DimValue::Known(h), DimValue::Known(w)) if *h > 0 && *w > 0 => {
            Some((*h as usize, *w as usize))
        }
        _ => None,
    }
}

/// Opens a data source for `model` from a path: an `.npy` file (first axis = samples), an `.npz`
/// (keys = input names), a directory of `.npy` files (one sample each), ONNX test-data directories
/// (`test_data_set_*/input_N.pb`), or a folder of PNG/JPEG images (preprocessed by `pre`, or by
/// default resized to the model's static input size and scaled to [0, 1]).
pub fn open_source(
    model: &Model,
    exec: &Executor,
    path: &Path,
    pre: Option<Preprocess>,
) -> Result<Box<dyn DataSource>> {
    let inputs: Vec<String> = exec.input_names().iter().map(|s| s.to_string()).collect();
    let single = || -> Result<String> {
        match inputs.as_slice() {
            [one] => Ok(one.clone()),
            _ => bail!(
                "{}: the model has {} inputs ({}); use an .npz keyed by input name",
                path.display(),
                inputs.len(),
                inputs.join(", ")
            ),
        }
    };
    if !path.exists() {
        bail!("{}: no such file or directory", path.display());
    }
    if path.is_file() {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        return Ok(match ext.as_str() {
            "npy" => Box::new(NpySource::open(path, &single()?, 1)?),
            "npz" => Box::new(NpzSource::open(path, 1)?),
            _ => bail!(
                "{}: unknown data file type (expected .npy, .npz, or a directory)",
                path.display()
            ),
        });
    }
    let is_test_data = has_files(path, |p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            n.starts_with("test_data_set_") || (n.starts_with("input_") && n.ends_with(".pb"))
        })
    })?;
    if is_test_data {
        let decoder: TensorDecoder = Box::new(|bytes: &[u8]| {
            let td = qtool_onnx::read_tensor_pb(bytes).map_err(|e| e.to_string())?;
            let t = td.to_tensor().map_err(|e| e.to_string())?;
            Ok((td.name.clone().filter(|n| !n.is_empty()), t))
        });
        return Ok(Box::new(OnnxTestDataSource::open(
            path,
            inputs.clone(),
            decoder,
        )?));
    }
    if has_files(path, is_image)? {
        let input = single()?;
        let pre = match pre {
            Some(p) => p,
            None => {
                let (h, w) = image_hw(model, &input).with_context(|| {
                    format!("{}: images need a target size: the model's input '{input}' has no static [N, C, H, W] shape; give the preprocessing in a pipeline file", path.display())
                })?;
                Preprocess {
                    resize: Resize::Exact {
                        height: h,
                        width: w,
                    },
                    ..Preprocess::default()
                }
            }
        };
        return Ok(Box::new(ImageFolderSource::open(path, &input, pre)?));
    }
    if has_files(path, |p| p.extension().is_some_and(|e| e == "npy"))? {
        return Ok(Box::new(NpyDirSource::open(
            path,
            &single()?,
            FileLayout::Sample,
        )?));
    }
    bail!(
        "{}: found no .npy files, images or ONNX test-data sets in this directory",
        path.display()
    )
}

/// Runs calibration and returns the statistics. `progress(done, total)` after every sample.
///
/// Takes the model by value and drops it once the executor is built and the data source opened:
/// the executor holds what it needs (its own tensors and packed weights), so the model's
/// initializer data does not stay resident while the samples run.
pub fn calibrate(
    model: Model,
    data: &Path,
    s: &CalibrateSettings,
    progress: &mut dyn FnMut(usize, Option<usize>),
) -> Result<CalibStats> {
    let exec = Executor::new(&model, ExecOptions { threads: s.threads })?;
    let mut source = open_source(&model, &exec, data, None)?;
    drop(model);
    let (index, count) = s.shard.unwrap_or((0, 1));
    let opts = CalibOptions {
        stats: StatsConfig {
            histogram: s.histograms,
            channel_axis: s.per_channel_activations.then_some(1),
            ort_bins: s.ort_histogram_bins,
            ..StatsConfig::default()
        },
        order: SampleOrder {
            limit: s.samples,
            shuffle_seed: s.seed,
            shard: Shard { index, count },
        },
        ..CalibOptions::default()
    };
    let stats = qtool_calib::calibrate(&exec, source.as_mut(), &opts, progress)?;
    for (name, nan, pinf, ninf) in stats.non_finite_report() {
        tracing::warn!(
            "tensor '{name}': {nan} NaN, {pinf} +Inf, {ninf} -Inf values were left out of its statistics"
        );
    }
    Ok(stats)
}

/// Parses a method name.
pub fn parse_method(s: &str) -> Result<Method> {
    Ok(match s {
        "minmax" => Method::MinMax,
        "percentile" => Method::Percentile,
        "entropy" => Method::Entropy,
        "mse" => Method::Mse,
        other => bail!(
            "unknown calibration method '{other}' (expected minmax, percentile, entropy or mse)"
        ),
    })
}

/// Ranges JSON from saved statistics.
pub fn ranges_json(
    stats: &CalibStats,
    method: Method,
    ort_mode: bool,
    per_channel: bool,
    percentile: Option<f64>,
) -> Result<String> {
    let mut settings = RangeSettings {
        method,
        per_channel,
        ..RangeSettings::default()
    };
    if ort_mode {
        settings.mode = HistMode::Ort;
    }
    if let Some(p) = percentile {
        settings.percentile = p;
    }
    let r = compute_ranges(stats, &settings)?;
    for w in &r.warnings {
        tracing::warn!("{w}");
    }
    Ok(r.to_json())
}
