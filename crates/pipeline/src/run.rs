//! `qtool run PIPELINE.yaml`: runs a loaded [`Pipeline`]: the preprocessing passes on the FP32
//! model, ONE calibration (or a reused statistics file), then every output from the same ranges
//! (each saved atomically, never over an input), the evaluation of each output against the FP32
//! model, the report and the manifest. Deterministic: the same configuration and inputs give
//! byte-identical models, report and manifest (apart from the manifest's `timing` section).

use crate::config::{OutputFormat, Pipeline, PipelineFile, ResolvedSet};
use crate::eval::{EvalReport, EvalSettings};
use crate::manifest::{
    CalibrationRecord, DataRecord, Manifest, MetricsRecord, OutputFile, OutputRecord, PassRecord,
    hash_input, round,
};
use crate::report::{CalibrationSummary, OutputSummary, PassSummary, ReportData};
use anyhow::{Context, Result, bail};
use qtool_calib::{
    CalibOptions, CalibStats, RangeSettings, SampleOrder, Shard, StatsConfig, TensorRange,
    compute_ranges,
};
use qtool_exec::{ExecOptions, Executor};
use qtool_ir::Model;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Settings of a run that are not part of the configuration (they do not change any result).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Worker threads of the executors (default: every core).
    pub threads: Option<usize>,
}

/// A long stage, for progress reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage<'a> {
    /// Collecting calibration statistics.
    Calibrate,
    /// Evaluating the output at this path (as written in the configuration).
    Evaluate(&'a str),
}

/// Progress callback: `(stage, samples done, total if known)`, called after every sample.
pub type Progress<'a> = &'a mut dyn FnMut(Stage, usize, Option<usize>);

/// One output of a run.
#[derive(Clone, Debug)]
pub struct OutputResult {
    pub format: OutputFormat,
    /// As written in the configuration.
    pub display: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    pub quantized_nodes: usize,
    pub skipped_nodes: usize,
    pub passes: Vec<(String, serde_json::Value, qtool_passes::PassReport)>,
    pub eval: Option<EvalReport>,
}

impl OutputResult {
    /// Lowest SQNR over the model outputs (infinite when identical).
    pub fn sqnr_db(&self) -> Option<f64> {
        let e = self.eval.as_ref()?;
        e.outputs
            .iter()
            .map(|o| o.error.sqnr_db)
            .min_by(|a, b| a.total_cmp(b))
    }
    fn classifier(&self) -> Option<&crate::eval::ClassifierMetrics> {
        self.eval
            .as_ref()?
            .outputs
            .iter()
            .find_map(|o| o.classifier.as_ref())
    }
    /// Top-1 agreement with FP32 of the first classifier-like output.
    pub fn top1_agreement(&self) -> Option<f64> {
        self.classifier().map(|c| c.top1_agreement)
    }
    /// Top-5 agreement with FP32 of the first classifier-like output.
    pub fn top5_agreement(&self) -> Option<f64> {
        self.classifier().and_then(|c| c.top5_agreement)
    }
    /// Accuracy against the labels of the first classifier-like output.
    pub fn accuracy(&self) -> Option<f64> {
        self.classifier().and_then(|c| c.accuracy_candidate)
    }
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub outputs: Vec<OutputResult>,
    /// FP32 accuracy against the labels (when labelled).
    pub fp32_accuracy: Option<f64>,
    /// Samples evaluated per output.
    pub eval_samples: usize,
    pub calibration: Option<CalibrationRecord>,
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
    pub report_html: Option<PathBuf>,
    pub report_json: Option<PathBuf>,
}

impl RunResult {
    /// The summary table (one line per output), as printed by `qtool run`.
    pub fn summary_table(&self) -> String {
        let pct = |x: Option<f64>| {
            x.map(|v| format!("{:.1}%", v * 100.0))
                .unwrap_or_else(|| "-".into())
        };
        let width = self
            .outputs
            .iter()
            .map(|o| o.display.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let mut s = format!(
            "{:<width$}  {:<8} {:>10} {:>9} {:>7} {:>8} {:>7} {:>8}\n",
            "output", "format", "size", "quantized", "skipped", "SQNR dB", "top-1", "accuracy"
        );
        for o in &self.outputs {
            let sqnr = match o.sqnr_db() {
                Some(x) if x.is_finite() => format!("{x:.2}"),
                Some(_) => "inf".into(),
                None => "-".into(),
            };
            s.push_str(&format!(
                "{:<width$}  {:<8} {:>10} {:>9} {:>7} {:>8} {:>7} {:>8}\n",
                o.display,
                o.format.as_str(),
                human_size(o.bytes),
                o.quantized_nodes,
                o.skipped_nodes,
                sqnr,
                pct(o.top1_agreement()),
                pct(o.accuracy()),
            ));
        }
        if let Some(a) = self.fp32_accuracy {
            s.push_str(&format!(
                "FP32 accuracy: {} on {} labelled samples\n",
                pct(Some(a)),
                self.eval_samples
            ));
        }
        s
    }
}

/// `1.5 KiB`, `3.2 MiB`.
pub fn human_size(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut x = b as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < units.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{x:.1} {}", units[u])
    }
}

fn ensure_parent(p: &Path) -> Result<()> {
    if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    Ok(())
}

/// Builds and runs a list of passes, returning their names, options and reports.
fn run_pass_list(
    model: &mut Model,
    list: &[(String, serde_json::Value)],
    ranges: Option<&qtool_passes::Ranges>,
) -> Result<Vec<(String, serde_json::Value, qtool_passes::PassReport)>> {
    let passes = list
        .iter()
        .map(|(n, o)| qtool_passes::build(n, o))
        .collect::<Result<Vec<_>, _>>()?;
    let reports = qtool_passes::run_passes(&passes, model, &qtool_passes::PassCx { ranges }, true)?;
    Ok(list
        .iter()
        .zip(reports)
        .map(|((n, o), (_, r))| (n.clone(), o.clone(), r))
        .collect())
}

/// Collects calibration statistics of `model` over a data set.
fn collect_stats(
    model: &Model,
    set: &ResolvedSet,
    spec: &PipelineFile,
    threads: Option<usize>,
    progress: &mut dyn FnMut(usize, Option<usize>),
) -> Result<CalibStats> {
    let exec = Executor::new(model, ExecOptions { threads })?;
    let mut source =
        crate::calibrate::open_source(model, &exec, &set.path, set.preprocess.clone())?;
    let opts = CalibOptions {
        stats: StatsConfig {
            histogram: spec.calibration.method != qtool_calib::Method::MinMax,
            bins: spec.calibration.histogram_bins,
            // mode: ort with a histogram method: ONNX Runtime's own histograms (second pass).
            ort_bins: (spec.calibration.mode == qtool_calib::HistMode::Ort
                && matches!(
                    spec.calibration.method,
                    qtool_calib::Method::Percentile | qtool_calib::Method::Entropy
                ))
            .then_some(spec.calibration.num_bins as u32),
            ..StatsConfig::default()
        },
        order: SampleOrder {
            limit: set.samples,
            shuffle_seed: set.seed,
            shard: Shard { index: 0, count: 1 },
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

fn rel(p: &Pipeline, abs: &Path) -> String {
    abs.strip_prefix(&p.output_dir)
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_else(|_| abs.display().to_string())
}

/// Adds the time since `clock` to `timing[name]` (milliseconds resolution) and restarts the clock.
fn add_lap(clock: &mut Instant, name: &str, timing: &mut BTreeMap<String, f64>) {
    let t = clock.elapsed().as_secs_f64();
    *timing.entry(name.to_string()).or_insert(0.0) += (t * 1000.0).round() / 1000.0;
    *clock = Instant::now();
}

/// What [`execute`] produced: the written outputs (evaluated when the configuration asks for it)
/// and what the report and the manifest are made from.
pub(crate) struct Executed {
    pub(crate) pre_reports: Vec<(String, serde_json::Value, qtool_passes::PassReport)>,
    pub(crate) calibration: Option<CalibrationRecord>,
    pub(crate) stats_and_ranges: Option<(CalibStats, qtool_calib::Ranges)>,
    pub(crate) outputs: Vec<OutputResult>,
    pub(crate) fp32_accuracy: Option<f64>,
    pub(crate) eval_samples: usize,
    timing: BTreeMap<String, f64>,
    clock: Instant,
}

/// Runs the pipeline. Progress is reported through `progress`.
pub fn run(p: &Pipeline, opts: &RunOptions, progress: Progress) -> Result<RunResult> {
    let e = execute(p, opts, progress)?;
    finish(p, e)
}

/// The model work of a run, without the report and the manifest (`qtool quantize` is this with one
/// output): preprocessing, one calibration, every output written, each evaluated against FP32.
pub(crate) fn execute(p: &Pipeline, opts: &RunOptions, progress: Progress) -> Result<Executed> {
    let spec = &p.spec;
    let mut timing = BTreeMap::new();
    let mut clock = Instant::now();
    let mut lap =
        |name: &str, timing: &mut BTreeMap<String, f64>| add_lap(&mut clock, name, timing);

    // The FP32 model and its preprocessing.
    let original = qtool_onnx::load(&p.model)
        .with_context(|| format!("cannot load model {}", p.model.display()))?;
    let mut base = original.clone();
    let pre: Vec<(String, serde_json::Value)> = spec
        .preprocess
        .iter()
        .map(|s| (s.name.clone(), s.options.clone()))
        .collect();
    let pre_reports = run_pass_list(&mut base, &pre, None).context("preprocess passes")?;
    lap("load_and_preprocess", &mut timing);

    // One calibration for every output.
    let needs_ranges = p.outputs.iter().any(|o| o.format.needs_ranges());
    let mut calibration = None;
    let mut stats_and_ranges = None;
    if needs_ranges {
        let (stats, source) = match &p.stats {
            Some(s) => (
                CalibStats::load(s)
                    .with_context(|| format!("calibration.stats: {}", s.display()))?,
                "stats",
            ),
            None => {
                let set = p
                    .calibration_data
                    .as_ref()
                    .context("no calibration data (data.calibration)")?;
                let stats = collect_stats(&base, set, spec, opts.threads, &mut |d, t| {
                    progress(Stage::Calibrate, d, t)
                })
                .context("calibration")?;
                (stats, "data")
            }
        };
        lap("calibration", &mut timing);
        let c = &spec.calibration;
        let settings = RangeSettings {
            method: c.method,
            mode: c.mode,
            percentile: c.percentile,
            num_bins: c.num_bins,
            num_quantized_bins: c.num_quantized_bins,
            symmetric: c.symmetric,
            per_channel: false,
            moving_average: c.moving_average,
            ..RangeSettings::default()
        };
        let ranges = compute_ranges(&stats, &settings).context("computing the ranges")?;
        for w in &ranges.warnings {
            tracing::warn!("{w}");
        }
        let saved_stats = match &p.save_stats {
            Some(path) => {
                ensure_parent(path)?;
                let bytes = stats.to_bytes();
                crate::write_atomic(path, &bytes)?;
                Some(OutputFile {
                    path: rel(p, path),
                    bytes: bytes.len() as u64,
                    sha256: crate::manifest::sha256_file(path)?,
                })
            }
            None => None,
        };
        calibration = Some(CalibrationRecord {
            source: source.into(),
            samples: stats.samples,
            tensors: stats.tensors.len(),
            ranges: ranges.ranges.len(),
            saved_stats,
            warnings: ranges.warnings.clone(),
        });
        stats_and_ranges = Some((stats, ranges));
        lap("ranges", &mut timing);
    }
    let pass_ranges: Option<qtool_passes::Ranges> = stats_and_ranges.as_ref().map(|(_, r)| {
        r.ranges
            .iter()
            .filter_map(|(k, v)| match v {
                TensorRange::PerTensor { min, max } => Some((k.clone(), (*min, *max))),
                TensorRange::PerChannel { .. } => None,
            })
            .collect()
    });

    // The outputs.
    let insert = spec.quantization.insert_qdq_options();
    let extra: Vec<(String, serde_json::Value)> = spec
        .passes
        .iter()
        .map(|s| (s.name.clone(), s.options.clone()))
        .collect();
    let model_id = std::fs::canonicalize(&p.model).ok();
    let mut outputs = Vec::new();
    for o in &p.outputs {
        let mut list = Vec::new();
        match o.format {
            OutputFormat::Dynamic => list.push(("quantize_dynamic".to_string(), o.options.clone())),
            f => {
                list.push(("insert_qdq".to_string(), insert.clone()));
                if let Some(conv) = f.conversion_pass() {
                    list.push((conv.to_string(), o.options.clone()));
                }
            }
        }
        let quant_passes = list.len();
        list.extend(extra.iter().cloned());
        list.push(("eliminate_dead_code".to_string(), serde_json::Value::Null));
        let mut q = base.clone();
        let reports = run_pass_list(&mut q, &list, pass_ranges.as_ref())
            .with_context(|| format!("making {}", o.display))?;
        for (name, _, rep) in &reports {
            for sk in &rep.skipped {
                tracing::info!(
                    "{}: {name}: skipped node '{}' ({}): {}",
                    o.display,
                    sk.node,
                    sk.op_type,
                    sk.reason
                );
            }
        }
        if o.path.exists() && std::fs::canonicalize(&o.path).ok() == model_id {
            bail!(
                "refusing to overwrite the input model {}",
                p.model.display()
            );
        }
        ensure_parent(&o.path)?;
        qtool_onnx::save(
            &q,
            &o.path,
            &qtool_onnx::SaveOptions::default().with_source(&p.model),
        )
        .with_context(|| format!("cannot save {}", o.path.display()))?;
        let file = hash_input(&o.display, &o.path)?;
        outputs.push(OutputResult {
            format: o.format,
            display: o.display.clone(),
            path: o.path.clone(),
            bytes: file.bytes,
            sha256: file.sha256,
            quantized_nodes: reports[0].2.rewritten.len(),
            skipped_nodes: reports[..quant_passes]
                .iter()
                .map(|r| r.2.skipped.len())
                .sum(),
            passes: reports,
            eval: None,
        });
        lap("quantize", &mut timing);
    }

    // Evaluation of every output against the (preprocessed) FP32 model, as saved.
    let mut fp32_accuracy = None;
    let mut eval_samples = 0;
    if spec.evaluation.enabled
        && let Some(set) = &p.evaluation_data
    {
        for o in &mut outputs {
            let saved = qtool_onnx::load(&o.path)
                .with_context(|| format!("cannot load {}", o.path.display()))?;
            let settings = EvalSettings {
                samples: set.samples,
                threads: opts.threads,
                labels: set.labels.clone(),
                preprocess: set.preprocess.clone(),
                outputs_only: !spec.evaluation.per_layer,
            };
            let display = o.display.clone();
            let mut rep =
                crate::eval::evaluate(&base, &saved, &set.path, &settings, &mut |d, t| {
                    progress(Stage::Evaluate(&display), d, t)
                })
                .with_context(|| format!("evaluating {}", o.display))?;
            rep.reference = spec.model.clone();
            rep.candidate = o.display.clone();
            rep.data = spec
                .data
                .evaluation
                .as_ref()
                .map(|d| d.path.clone())
                .unwrap_or_default();
            rep.labels = spec.data.evaluation.as_ref().and_then(|d| d.labels.clone());
            eval_samples = rep.samples;
            fp32_accuracy = rep
                .outputs
                .iter()
                .find_map(|m| m.classifier.as_ref())
                .and_then(|c| c.accuracy_reference);
            o.eval = Some(rep);
        }
        lap("evaluation", &mut timing);
    }
    Ok(Executed {
        pre_reports,
        calibration,
        stats_and_ranges,
        outputs,
        fp32_accuracy,
        eval_samples,
        timing,
        clock,
    })
}

/// The report and the manifest of an executed run.
fn finish(p: &Pipeline, e: Executed) -> Result<RunResult> {
    let spec = &p.spec;
    let Executed {
        pre_reports,
        calibration,
        stats_and_ranges,
        outputs,
        fp32_accuracy,
        eval_samples,
        mut timing,
        mut clock,
    } = e;
    let mut lap =
        |name: &str, timing: &mut BTreeMap<String, f64>| add_lap(&mut clock, name, timing);

    // The report.
    let qtool_version = env!("CARGO_PKG_VERSION").to_string();
    let mut report_files = Vec::new();
    if p.report_html.is_some() || p.report_json.is_some() {
        let data = report_data(p, &outputs, calibration.as_ref(), stats_and_ranges.as_ref());
        for (path, text) in [
            (&p.report_json, crate::report::report_json(&data)),
            (&p.report_html, crate::report::render_html(&data)),
        ] {
            if let Some(path) = path {
                ensure_parent(path)?;
                crate::write_atomic(path, text.as_bytes())
                    .with_context(|| format!("cannot write the report {}", path.display()))?;
                report_files.push(OutputFile {
                    path: rel(p, path),
                    bytes: text.len() as u64,
                    sha256: crate::manifest::sha256_file(path)?,
                });
            }
        }
        lap("report", &mut timing);
    }

    // The manifest.
    let config_name = p
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut data = Vec::new();
    for (role, set, written) in [
        (
            "calibration",
            &p.calibration_data,
            spec.data.calibration.as_ref(),
        ),
        (
            "evaluation",
            &p.evaluation_data,
            spec.data.evaluation.as_ref(),
        ),
    ] {
        if let (Some(set), Some(w)) = (set, written) {
            if role == "calibration" && p.stats.is_some() {
                continue;
            }
            data.push(DataRecord {
                role: role.into(),
                input: hash_input(&w.path, &set.path)?,
                labels: match (&set.labels, &w.labels) {
                    (Some(l), Some(wl)) => Some(hash_input(wl, l)?),
                    _ => None,
                },
            });
        }
    }
    let manifest = Manifest {
        schema: crate::manifest::MANIFEST_SCHEMA.into(),
        version: crate::manifest::MANIFEST_VERSION,
        qtool_version,
        config: hash_input(&config_name, &p.file)?,
        model: hash_input(&spec.model, &p.model)?,
        data,
        stats: match (&p.stats, &spec.calibration.stats) {
            (Some(s), Some(w)) => Some(hash_input(w, s)?),
            _ => None,
        },
        parameters: serde_json::to_value(spec).context("serializing the parameters")?,
        preprocess: pre_reports
            .iter()
            .map(|(n, o, r)| PassRecord::new(n, o, r))
            .collect(),
        calibration: calibration.clone(),
        outputs: outputs
            .iter()
            .map(|o| OutputRecord {
                format: o.format.as_str().into(),
                file: OutputFile {
                    path: o.display.clone(),
                    bytes: o.bytes,
                    sha256: o.sha256.clone(),
                },
                quantized_nodes: o.quantized_nodes,
                skipped_nodes: o.skipped_nodes,
                passes: o
                    .passes
                    .iter()
                    .map(|(n, opt, r)| PassRecord::new(n, opt, r))
                    .collect(),
                metrics: o.eval.as_ref().map(|e| MetricsRecord {
                    samples: e.samples,
                    sqnr_db: o.sqnr_db().and_then(|x| round(x, 4)),
                    top1_agreement: o.top1_agreement().and_then(|x| round(x, 6)),
                    top5_agreement: o.top5_agreement().and_then(|x| round(x, 6)),
                    accuracy: o.accuracy().and_then(|x| round(x, 6)),
                    accuracy_fp32: e
                        .outputs
                        .iter()
                        .find_map(|m| m.classifier.as_ref())
                        .and_then(|c| c.accuracy_reference)
                        .and_then(|x| round(x, 6)),
                    worst_layers: e
                        .worst_layers(5)
                        .iter()
                        .map(|l| (l.tensor.clone(), round(l.error.sqnr_db, 4)))
                        .collect(),
                }),
            })
            .collect(),
        report: report_files,
        timing: BTreeMap::new(),
    };
    lap("manifest", &mut timing);
    let mut manifest = manifest;
    manifest.timing = timing;
    ensure_parent(&p.manifest)?;
    crate::write_atomic(&p.manifest, manifest.to_json().as_bytes())
        .with_context(|| format!("cannot write the manifest {}", p.manifest.display()))?;

    Ok(RunResult {
        outputs,
        fp32_accuracy,
        eval_samples,
        calibration,
        manifest_path: p.manifest.clone(),
        manifest,
        report_html: p.report_html.clone(),
        report_json: p.report_json.clone(),
    })
}

fn report_data(
    p: &Pipeline,
    outputs: &[OutputResult],
    calibration: Option<&CalibrationRecord>,
    stats_and_ranges: Option<&(CalibStats, qtool_calib::Ranges)>,
) -> ReportData {
    let spec = &p.spec;
    let c = &spec.calibration;
    let title = p
        .file
        .file_stem()
        .map(|n| format!("qtool run: {}", n.to_string_lossy()))
        .unwrap_or_default();
    let mut settings = BTreeMap::new();
    settings.insert("mode".to_string(), format!("{:?}", c.mode).to_lowercase());
    if c.method == qtool_calib::Method::Percentile {
        settings.insert("percentile".into(), c.percentile.to_string());
    }
    if c.method == qtool_calib::Method::Entropy {
        settings.insert(
            "num_quantized_bins".into(),
            c.num_quantized_bins.to_string(),
        );
    }
    if let Some(s) = c.symmetric {
        settings.insert("symmetric".into(), s.to_string());
    }
    if let Some(s) = spec.data.calibration.as_ref() {
        if let Some(n) = s.samples {
            settings.insert("samples".into(), n.to_string());
        }
        if let Some(seed) = s.seed {
            settings.insert("seed".into(), seed.to_string());
        }
    }
    let calibration = calibration.map(|cal| CalibrationSummary {
        method: match &c.stats {
            Some(s) => format!("{} (statistics from {s})", method_name(c.method)),
            None => method_name(c.method).into(),
        },
        data: spec
            .data
            .calibration
            .as_ref()
            .map(|d| d.path.clone())
            .unwrap_or_default(),
        samples: cal.samples,
        settings: settings.clone(),
        warnings: cal.warnings.clone(),
    });
    let q = &spec.quantization;
    let outs = outputs
        .iter()
        .map(|o| {
            let mut s = BTreeMap::new();
            if o.format != OutputFormat::Dynamic {
                s.insert(
                    "activations".to_string(),
                    serde_json::to_value(q.activations)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                );
            } else {
                s.insert("activations".to_string(), "dynamic uint8".to_string());
            }
            s.insert(
                "weights".into(),
                if q.per_channel {
                    "int8 symmetric, per channel".into()
                } else {
                    "int8 symmetric, per tensor".into()
                },
            );
            if q.reduce_range {
                s.insert("reduce_range".into(), "true".into());
            }
            if let Some(m) = o.passes.iter().find_map(|(n, opt, _)| {
                (n != "insert_qdq" && n != "eliminate_dead_code")
                    .then(|| opt.as_object().cloned())
                    .flatten()
            }) {
                for (k, v) in m {
                    if !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()) {
                        s.insert(k, v.to_string());
                    }
                }
            }
            OutputSummary {
                name: o.display.clone(),
                format: o.format.as_str().into(),
                path: o.display.clone(),
                settings: s,
                passes: o
                    .passes
                    .iter()
                    .map(|(n, _, r)| PassSummary::from_report(n, r))
                    .collect(),
                eval: o.eval.clone(),
            }
        })
        .collect();
    let mut notes = Vec::new();
    let ex = &q.exclude;
    if !ex.nodes.is_empty() || !ex.regex.is_empty() || !ex.op_types.is_empty() {
        notes.push(format!(
            "excluded from quantization: nodes [{}], name patterns [{}], op types [{}]",
            ex.nodes.join(", "),
            ex.regex.join(", "),
            ex.op_types.join(", ")
        ));
    }
    if !q.overrides.is_empty() {
        notes.push(format!(
            "per-tensor overrides: {}",
            q.overrides.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if let Some(e) = &spec.data.evaluation
        && e.labels.is_none()
    {
        notes.push("no labels: accuracy is not measured (top-1 agreement with FP32 is)".into());
    }
    ReportData {
        schema: String::new(),
        title,
        model: spec.model.clone(),
        qtool_version: env!("CARGO_PKG_VERSION").to_string(),
        generated: None,
        calibration,
        outputs: outs,
        histograms: stats_and_ranges
            .map(|(s, r)| crate::report::histograms_from_stats(s, r, crate::report::HIST_BINS))
            .unwrap_or_default(),
        notes,
    }
}

/// A range method's name in the pipeline file.
pub(crate) fn method_name(m: qtool_calib::Method) -> &'static str {
    match m {
        qtool_calib::Method::MinMax => "minmax",
        qtool_calib::Method::Percentile => "percentile",
        qtool_calib::Method::Entropy => "entropy",
        qtool_calib::Method::Mse => "mse",
    }
}
