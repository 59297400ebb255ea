//! The quantization report: one self-contained HTML file (inline CSS and SVG charts drawn here, no
//! script, no network) and the JSON it is built from. It shows the summary (model, outputs and
//! formats, calibration, evaluation metrics), the per-layer SQNR of every output worst first, the
//! activation histograms with the chosen ranges, and what the passes excluded or skipped and why.
//! The output is a pure function of [`ReportData`]: byte-identical for the same data. Element ids
//! and classes are documented in docs/report.md.

use crate::eval::{EvalReport, LayerMetrics};
use anyhow::{Context, Result};
use qtool_calib::{CalibStats, Ranges, TensorRange};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The schema name written in [`ReportData::schema`].
pub const REPORT_SCHEMA: &str = "qtool.report/1";

/// How many of the worst layers get a bar in the per-layer chart and a histogram shown open; the
/// rest are listed in collapsed sections.
pub const WORST_SHOWN: usize = 12;

/// Bins of a histogram as drawn (the calibration histograms are grouped down to at most this).
pub const HIST_BINS: usize = 64;

const STYLE: &str = include_str!("report/style.css");

/// Everything the report shows; filled by the pipeline (or any caller) and written by
/// [`write_report`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportData {
    /// [`REPORT_SCHEMA`] (filled in by [`write_report`] when empty).
    pub schema: String,
    /// The report's heading (e.g. the pipeline's name).
    pub title: String,
    /// The FP32 model (path as given).
    pub model: String,
    /// qtool's version (`env!("CARGO_PKG_VERSION")` of the caller).
    pub qtool_version: String,
    /// A time stamp or run id to show; `None` keeps the body free of anything that changes.
    pub generated: Option<String>,
    pub calibration: Option<CalibrationSummary>,
    /// One per quantized model written.
    pub outputs: Vec<OutputSummary>,
    /// Activation histograms with their chosen ranges (see [`histograms_from_stats`]).
    pub histograms: Vec<ActivationHistogram>,
    /// Free-form remarks shown under the summary.
    pub notes: Vec<String>,
}

/// How the model was calibrated.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CalibrationSummary {
    /// The range method (minmax, percentile, entropy, mse), or where the statistics came from.
    pub method: String,
    /// The calibration data (as given).
    pub data: String,
    /// Samples folded into the statistics.
    pub samples: u64,
    /// Other chosen settings, by name.
    pub settings: BTreeMap<String, String>,
    /// Warnings of the range computation (non-finite values, tensors without range).
    pub warnings: Vec<String>,
}

/// One quantized model the run wrote.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutputSummary {
    /// The output's name in the pipeline (e.g. `qdq`).
    pub name: String,
    /// Its format (qdq, qlinear, integer, ...).
    pub format: String,
    /// Where it was written.
    pub path: String,
    /// Quantization settings of this output, by name.
    pub settings: BTreeMap<String, String>,
    /// What each pass did, in order.
    pub passes: Vec<PassSummary>,
    /// Its evaluation against the FP32 model, if it was evaluated.
    pub eval: Option<EvalReport>,
}

/// What one pass rewrote and what it skipped, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PassSummary {
    pub pass: String,
    pub rewritten: Vec<RewriteEntry>,
    pub skipped: Vec<SkipEntry>,
}

/// A node a pass rewrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewriteEntry {
    pub node: String,
    pub what: String,
}

/// A node a pass left alone (excluded by configuration, or not quantizable), and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkipEntry {
    pub node: String,
    pub op_type: String,
    pub reason: String,
}

impl PassSummary {
    /// The summary of a pass's report.
    pub fn from_report(pass: &str, r: &qtool_passes::PassReport) -> PassSummary {
        PassSummary {
            pass: pass.to_string(),
            rewritten: r
                .rewritten
                .iter()
                .map(|w| RewriteEntry {
                    node: w.node.clone(),
                    what: w.what.clone(),
                })
                .collect(),
            skipped: r
                .skipped
                .iter()
                .map(|s| SkipEntry {
                    node: s.node.clone(),
                    op_type: s.op_type.clone(),
                    reason: s.reason.clone(),
                })
                .collect(),
        }
    }

    /// Summaries of what `qtool_passes::run_passes` returns.
    pub fn from_reports<S: AsRef<str>>(
        reports: &[(S, qtool_passes::PassReport)],
    ) -> Vec<PassSummary> {
        reports
            .iter()
            .map(|(n, r)| PassSummary::from_report(n.as_ref(), r))
            .collect()
    }
}

/// The histogram of one activation and the range chosen for it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ActivationHistogram {
    pub tensor: String,
    /// Lower edge of the first bin.
    pub first_edge: f64,
    pub bin_width: f64,
    /// Values per bin.
    pub counts: Vec<u64>,
    /// The exact minimum and maximum seen.
    pub data_min: f64,
    pub data_max: f64,
    /// The chosen range (per channel: the smallest minimum and largest maximum).
    pub range_min: f64,
    pub range_max: f64,
}

/// The histograms of every tensor of `stats` that has both a histogram and a range in `ranges`,
/// sorted by name, each grouped down to at most `max_bins` bins (aligned, so zero stays an edge).
pub fn histograms_from_stats(
    stats: &CalibStats,
    ranges: &Ranges,
    max_bins: usize,
) -> Vec<ActivationHistogram> {
    let mut out = Vec::new();
    for (name, t) in &stats.tensors {
        let (Some(h), Some((lo, hi)), Some(r)) =
            (&t.all.hist, t.all.range(), ranges.ranges.get(name))
        else {
            continue;
        };
        if h.is_empty() {
            continue;
        }
        let (rmin, rmax) = match r {
            TensorRange::PerTensor { min, max } => (*min as f64, *max as f64),
            TensorRange::PerChannel { min, max, .. } => (
                min.iter().fold(f64::INFINITY, |a, &b| a.min(b as f64)),
                max.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64)),
            ),
        };
        // Aligned groups can straddle one more bin than `len / factor`: grow until it fits.
        let mut factor = h.counts.len().div_ceil(max_bins.max(1));
        let (first_edge, bin_width, counts) = loop {
            let g = h.grouped(factor);
            if g.2.len() <= max_bins.max(1) {
                break g;
            }
            factor += 1;
        };
        out.push(ActivationHistogram {
            tensor: name.clone(),
            first_edge,
            bin_width,
            counts,
            data_min: lo,
            data_max: hi,
            range_min: rmin,
            range_max: rmax,
        });
    }
    out
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(o, "&#{};", c as u32);
            }
            c => o.push(c),
        }
    }
    o
}

/// A number for display: fixed decimals, `∞`/`−∞`/`NaN` for the others.
fn num(x: f64, decimals: usize) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x == f64::INFINITY {
        "∞".into()
    } else if x == f64::NEG_INFINITY {
        "−∞".into()
    } else {
        let s = format!("{x:.decimals$}");
        // No "-0.00".
        if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
            s[1..].to_string()
        } else {
            s
        }
    }
}

/// A compact number for axis labels.
fn short(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.abs() >= 1e4 || x.abs() < 1e-2 {
        format!("{x:.2e}")
    } else {
        num(x, 3)
    }
}

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{}%", num(v * 100.0, 2)))
        .unwrap_or_else(|| "—".into())
}

/// Class of an SQNR value: below 20 dB is poor, below 30 dB is fair.
fn sqnr_class(db: f64) -> &'static str {
    if db.is_nan() || db < 20.0 {
        "low"
    } else if db < 30.0 {
        "mid"
    } else {
        "ok"
    }
}

/// The horizontal bar chart of per-layer SQNR (worst first), at most `limit` bars.
fn layer_chart(id: &str, output: &str, layers: &[LayerMetrics], limit: usize) -> String {
    let shown = &layers[..layers.len().min(limit)];
    let (label_w, bar_w, row_h, top) = (330.0, 420.0, 18.0, 24.0);
    let width = label_w + bar_w + 90.0;
    let height = top + row_h * shown.len().max(1) as f64 + 26.0;
    let finite_max = shown
        .iter()
        .map(|l| l.error.sqnr_db)
        .filter(|x| x.is_finite())
        .fold(0.0f64, f64::max);
    let scale_max = (finite_max / 10.0).ceil().max(1.0) * 10.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart per-layer-sqnr\" id=\"{id}\" data-output=\"{}\" role=\"img\" \
         xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\">\n<title>Per-layer SQNR of {}, worst first</title>\n",
        escape(output),
        escape(output)
    );
    let _ = writeln!(
        s,
        "<text x=\"{label_w}\" y=\"14\">SQNR (dB), 0 to {}</text>",
        num(scale_max, 0)
    );
    if shown.is_empty() {
        let _ = writeln!(
            s,
            "<text x=\"8\" y=\"{}\">no layers compared</text>",
            top + 12.0
        );
    }
    for (i, l) in shown.iter().enumerate() {
        let y = top + row_h * i as f64;
        let db = l.error.sqnr_db;
        let w = if db.is_finite() {
            (db.max(0.0) / scale_max * bar_w).min(bar_w)
        } else if db > 0.0 {
            bar_w
        } else {
            0.0
        };
        let name = escape(&l.tensor);
        let label: String = if l.tensor.chars().count() > 44 {
            let tail: String = l
                .tensor
                .chars()
                .rev()
                .take(43)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("…{}", escape(&tail))
        } else {
            name.clone()
        };
        let _ = writeln!(
            s,
            "<g class=\"layer\"><title>{name}: {} dB ({})</title>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{label}</text>\
             <rect class=\"bar {}\" x=\"{label_w}\" y=\"{}\" width=\"{:.1}\" height=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{}\">{}</text></g>",
            num(db, 2),
            kind_name(l),
            label_w - 6.0,
            y + 12.5,
            sqnr_class(db),
            y + 2.0,
            w,
            row_h - 4.0,
            label_w + w + 4.0,
            y + 12.5,
            num(db, 1)
        );
    }
    let axis_y = top + row_h * shown.len().max(1) as f64 + 4.0;
    let _ = writeln!(
        s,
        "<line class=\"axis\" x1=\"{label_w}\" y1=\"{top}\" x2=\"{label_w}\" y2=\"{axis_y}\"/>\n</svg>"
    );
    s
}

fn kind_name(l: &LayerMetrics) -> &'static str {
    match l.kind {
        crate::eval::CounterpartKind::Dequantized => "dequantized",
        crate::eval::CounterpartKind::Integer => "integer, dequantized here",
        crate::eval::CounterpartKind::Float => "float, same name",
    }
}

/// One histogram with the chosen range marked.
fn histogram_chart(id: &str, h: &ActivationHistogram) -> String {
    let (w, hgt, pad, bottom) = (340.0, 150.0, 8.0, 22.0);
    let n = h.counts.len().max(1);
    let lo = h.first_edge.min(h.range_min);
    let hi = (h.first_edge + h.bin_width * n as f64).max(h.range_max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let x_of = |v: f64| pad + (v - lo) / span * (w - 2.0 * pad);
    let cmax = h.counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let plot_h = hgt - bottom - pad;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart histogram\" id=\"{id}\" data-tensor=\"{}\" role=\"img\" \
         xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{hgt}\" viewBox=\"0 0 {w} {hgt}\">\n\
         <title>Histogram of {} (log counts); chosen range [{}, {}]</title>\n",
        escape(&h.tensor),
        escape(&h.tensor),
        short(h.range_min),
        short(h.range_max)
    );
    for (i, &c) in h.counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        // Log scale: activations are heavy-tailed.
        let bh = ((c as f64).ln_1p() / cmax.ln_1p() * plot_h).max(1.0);
        let x0 = x_of(h.first_edge + h.bin_width * i as f64);
        let x1 = x_of(h.first_edge + h.bin_width * (i + 1) as f64);
        let _ = writeln!(
            s,
            "<rect class=\"bin\" x=\"{x0:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{bh:.2}\"/>",
            pad + plot_h - bh,
            (x1 - x0).max(0.5)
        );
    }
    for (cls, v) in [
        ("range range-min", h.range_min),
        ("range range-max", h.range_max),
    ] {
        let x = x_of(v);
        let _ = writeln!(
            s,
            "<line class=\"{cls}\" x1=\"{x:.2}\" y1=\"{pad}\" x2=\"{x:.2}\" y2=\"{:.2}\"/>",
            pad + plot_h
        );
    }
    let _ = writeln!(
        s,
        "<line class=\"axis\" x1=\"{pad}\" y1=\"{:.2}\" x2=\"{:.2}\" y2=\"{:.2}\"/>\n\
         <text x=\"{pad}\" y=\"{:.2}\">{}</text>\n<text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\">{}</text>\n</svg>",
        pad + plot_h,
        w - pad,
        pad + plot_h,
        hgt - 6.0,
        short(lo),
        w - pad,
        hgt - 6.0,
        short(hi)
    );
    s
}

fn metric_cells(s: &mut String, e: &crate::eval::OutputMetrics) {
    let c = e.classifier.as_ref();
    let _ = write!(
        s,
        "<td class=\"num {}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td>",
        if sqnr_class(e.error.sqnr_db) == "low" {
            "bad"
        } else {
            ""
        },
        num(e.error.sqnr_db, 2),
        num(e.error.cosine, 6),
        short(e.error.max_abs_err),
        short(e.error.mean_abs_err),
        pct(c.map(|c| c.top1_agreement)),
        pct(c.and_then(|c| c.top5_agreement)),
        pct(c.and_then(|c| c.accuracy_reference)),
        pct(c.and_then(|c| c.accuracy_candidate)),
    );
}

fn settings_table(s: &mut String, m: &BTreeMap<String, String>) {
    if m.is_empty() {
        return;
    }
    s.push_str("<table class=\"settings\"><tr><th>setting</th><th>value</th></tr>\n");
    for (k, v) in m {
        let _ = writeln!(
            s,
            "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td></tr>",
            escape(k),
            escape(v)
        );
    }
    s.push_str("</table>\n");
}

fn layer_table(s: &mut String, layers: &[LayerMetrics]) {
    s.push_str(
        "<table class=\"layers\"><tr><th>#</th><th>tensor</th><th>compared with</th><th>kind</th>\
         <th>SQNR (dB)</th><th>cosine</th><th>max |err|</th><th>mean |err|</th></tr>\n",
    );
    for (i, l) in layers.iter().enumerate() {
        let _ = writeln!(
            s,
            "<tr><td class=\"num\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            i + 1,
            escape(&l.tensor),
            escape(&l.counterpart),
            kind_name(l),
            num(l.error.sqnr_db, 2),
            num(l.error.cosine, 6),
            short(l.error.max_abs_err),
            short(l.error.mean_abs_err)
        );
    }
    s.push_str("</table>\n");
}

/// The JSON of the data (pretty, final newline): what [`write_report`] writes next to the HTML.
pub fn report_json(data: &ReportData) -> String {
    let mut d = data.clone();
    if d.schema.is_empty() {
        d.schema = REPORT_SCHEMA.to_string();
    }
    let mut s = serde_json::to_string_pretty(&d).expect("report data serializes");
    s.push('\n');
    s
}

/// Renders the HTML page (deterministic: the same data gives the same bytes).
pub fn render_html(data: &ReportData) -> String {
    let mut s = String::new();
    let title = if data.title.is_empty() {
        "qtool quantization report".to_string()
    } else {
        data.title.clone()
    };
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
         <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );

    // Summary.
    s.push_str("<section id=\"summary\">\n<h2>Summary</h2>\n<table class=\"summary\">\n");
    let mut row = |k: &str, v: &str| {
        let _ = writeln!(
            s,
            "<tr><th>{k}</th><td class=\"mono\">{}</td></tr>",
            escape(v)
        );
    };
    row("model", &data.model);
    row("qtool", &data.qtool_version);
    if let Some(g) = &data.generated {
        row("generated", g);
    }
    if let Some(c) = &data.calibration {
        row("calibration method", &c.method);
        row("calibration data", &c.data);
        row("calibration samples", &c.samples.to_string());
    }
    let formats: Vec<String> = data
        .outputs
        .iter()
        .map(|o| format!("{} ({})", o.name, o.format))
        .collect();
    row("outputs", &formats.join(", "));
    s.push_str("</table>\n");
    if let Some(c) = &data.calibration {
        settings_table(&mut s, &c.settings);
        if !c.warnings.is_empty() {
            s.push_str(
                "<details class=\"calib-warnings\"><summary>Calibration warnings</summary><ul>\n",
            );
            for w in &c.warnings {
                let _ = writeln!(s, "<li>{}</li>", escape(w));
            }
            s.push_str("</ul></details>\n");
        }
    }
    if !data.notes.is_empty() {
        s.push_str("<ul class=\"notes\">\n");
        for n in &data.notes {
            let _ = writeln!(s, "<li>{}</li>", escape(n));
        }
        s.push_str("</ul>\n");
    }
    s.push_str("</section>\n");

    // Metrics per output.
    s.push_str("<section id=\"metrics\">\n<h2>Evaluation</h2>\n");
    let evaluated: Vec<&OutputSummary> = data.outputs.iter().filter(|o| o.eval.is_some()).collect();
    if evaluated.is_empty() {
        s.push_str("<p class=\"muted\">No output was evaluated.</p>\n");
    } else {
        s.push_str(
            "<p class=\"muted\">Each quantized model against the FP32 model on the same samples. \
             SQNR = 10·log10(Σref² / Σ(ref − quant)²); accuracy needs labels; top-5 needs more than 5 classes.</p>\n\
             <table class=\"metrics\"><tr><th>output</th><th>format</th><th>graph output</th><th>samples</th>\
             <th>SQNR (dB)</th><th>cosine</th><th>max |err|</th><th>mean |err|</th><th>top-1 agr.</th>\
             <th>top-5 agr.</th><th>acc. FP32</th><th>acc. quantized</th></tr>\n",
        );
        for o in &evaluated {
            let e = o.eval.as_ref().expect("filtered");
            for m in &e.outputs {
                let _ = write!(
                    s,
                    "<tr><td class=\"mono\">{}</td><td>{}</td><td class=\"mono\">{}</td><td class=\"num\">{}</td>",
                    escape(&o.name),
                    escape(&o.format),
                    escape(&m.name),
                    e.samples
                );
                metric_cells(&mut s, m);
                s.push_str("</tr>\n");
            }
        }
        s.push_str("</table>\n");
    }
    s.push_str("</section>\n");

    // Per-layer.
    s.push_str("<section id=\"per-layer\">\n<h2>Per-layer error</h2>\n");
    s.push_str(
        "<p class=\"muted\">SQNR of each FP32 tensor's counterpart in the quantized model (its \
         dequantized value), worst first; the matching rule is in docs/report.md.</p>\n",
    );
    let mut any_layers = false;
    for (k, o) in data.outputs.iter().enumerate() {
        let Some(e) = &o.eval else { continue };
        any_layers = true;
        let _ = writeln!(
            s,
            "<h3>{} <span class=\"muted\">({}, {} layers compared)</span></h3>",
            escape(&o.name),
            escape(&o.format),
            e.layers.len()
        );
        s.push_str(&layer_chart(
            &format!("per-layer-sqnr-{k}"),
            &o.name,
            &e.layers,
            WORST_SHOWN.max(30),
        ));
        let _ = writeln!(
            s,
            "<details class=\"layer-list\"><summary>All {} layers of {}</summary>",
            e.layers.len(),
            escape(&o.name)
        );
        layer_table(&mut s, &e.layers);
        if !e.skipped_layers.is_empty() {
            s.push_str("<p>Matched but not compared:</p><ul>\n");
            for sk in &e.skipped_layers {
                let _ = writeln!(
                    s,
                    "<li><code>{}</code>: {}</li>",
                    escape(&sk.tensor),
                    escape(&sk.reason)
                );
            }
            s.push_str("</ul>\n");
        }
        s.push_str("</details>\n");
    }
    if !any_layers {
        s.push_str("<p class=\"muted\">No per-layer comparison (no output was evaluated).</p>\n");
    }
    s.push_str("</section>\n");

    // Histograms: the tensors of the worst layers first (of the first evaluated output).
    s.push_str("<section id=\"histograms\">\n<h2>Activation histograms and chosen ranges</h2>\n");
    if data.histograms.is_empty() {
        s.push_str(
            "<p class=\"muted\">No histograms (the calibration kept none, e.g. minmax).</p>\n",
        );
    } else {
        s.push_str(
            "<p class=\"muted\">Calibration histograms (log counts); the red lines mark the range \
             chosen for quantization. Values outside them are clipped.</p>\n",
        );
        let mut worst: Vec<usize> = Vec::new();
        if let Some(e) = evaluated.first().and_then(|o| o.eval.as_ref()) {
            for l in &e.layers {
                if worst.len() >= WORST_SHOWN {
                    break;
                }
                if let Some(i) = data.histograms.iter().position(|h| h.tensor == l.tensor)
                    && !worst.contains(&i)
                {
                    worst.push(i);
                }
            }
        }
        if worst.is_empty() {
            worst = (0..data.histograms.len().min(WORST_SHOWN)).collect();
        }
        let figure = |s: &mut String, i: usize| {
            let h = &data.histograms[i];
            let _ = writeln!(
                s,
                "<figure>{}<figcaption><code>{}</code><br>data [{}, {}], range [{}, {}]</figcaption></figure>",
                histogram_chart(&format!("hist-{i}"), h),
                escape(&h.tensor),
                short(h.data_min),
                short(h.data_max),
                short(h.range_min),
                short(h.range_max)
            );
        };
        s.push_str("<h3>Tensors of the worst layers</h3>\n<div class=\"hist-grid\">\n");
        for &i in &worst {
            figure(&mut s, i);
        }
        s.push_str("</div>\n");
        let rest: Vec<usize> = (0..data.histograms.len())
            .filter(|i| !worst.contains(i))
            .collect();
        if !rest.is_empty() {
            let _ = writeln!(
                s,
                "<details class=\"all-histograms\"><summary>The other {} tensors</summary>\n<div class=\"hist-grid\">",
                rest.len()
            );
            for i in rest {
                figure(&mut s, i);
            }
            s.push_str("</div>\n</details>\n");
        }
    }
    s.push_str("</section>\n");

    // Excluded / skipped.
    s.push_str("<section id=\"skipped\">\n<h2>Excluded and skipped</h2>\n");
    let mut any_skip = false;
    for o in &data.outputs {
        let n: usize = o.passes.iter().map(|p| p.skipped.len()).sum();
        let rewrites: usize = o.passes.iter().map(|p| p.rewritten.len()).sum();
        let _ = writeln!(
            s,
            "<h3>{} <span class=\"muted\">({} rewrites, {} skipped)</span></h3>",
            escape(&o.name),
            rewrites,
            n
        );
        settings_table(&mut s, &o.settings);
        if o.passes.is_empty() {
            s.push_str("<p class=\"muted\">No pass information for this output.</p>\n");
        }
        if n > 0 {
            any_skip = true;
            s.push_str("<table class=\"skips\"><tr><th>pass</th><th>node</th><th>op</th><th>reason</th></tr>\n");
            for p in &o.passes {
                for sk in &p.skipped {
                    let _ = writeln!(
                        s,
                        "<tr><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td></tr>",
                        escape(&p.pass),
                        escape(&sk.node),
                        escape(&sk.op_type),
                        escape(&sk.reason)
                    );
                }
            }
            s.push_str("</table>\n");
        }
        if rewrites > 0 {
            s.push_str("<details class=\"rewrites\"><summary>Rewrites</summary><table><tr><th>pass</th><th>node</th><th>what</th></tr>\n");
            for p in &o.passes {
                for r in &p.rewritten {
                    let _ = writeln!(
                        s,
                        "<tr><td>{}</td><td class=\"mono\">{}</td><td>{}</td></tr>",
                        escape(&p.pass),
                        escape(&r.node),
                        escape(&r.what)
                    );
                }
            }
            s.push_str("</table></details>\n");
        }
    }
    if !any_skip {
        s.push_str("<p class=\"muted\">No pass skipped or excluded anything.</p>\n");
    }
    s.push_str("</section>\n");

    // The data.
    let json = report_json(data);
    let _ = write!(
        s,
        "<section id=\"data\">\n<h2>Data</h2>\n<details><summary>The JSON this report is built from</summary>\n\
         <pre class=\"json\">{}</pre>\n</details>\n\
         <script type=\"application/json\" id=\"report-data\">{}</script>\n</section>\n</body>\n</html>\n",
        escape(&json),
        json.trim_end()
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
    );
    s
}

/// Writes the HTML report and its JSON, each atomically.
pub fn write_report(data: &ReportData, html_path: &Path, json_path: &Path) -> Result<()> {
    crate::write_atomic(json_path, report_json(data).as_bytes())
        .with_context(|| format!("cannot write the report data {}", json_path.display()))?;
    crate::write_atomic(html_path, render_html(data).as_bytes())
        .with_context(|| format!("cannot write the report {}", html_path.display()))?;
    Ok(())
}

/// Reads report data written by [`write_report`] (to render it again).
pub fn read_report_json(path: &Path) -> Result<ReportData> {
    let b = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&b).with_context(|| format!("{}: not report data", path.display()))
}
