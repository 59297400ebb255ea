//! Tests of the HTML report: every section and chart is there with its documented id, names are
//! escaped, the output is deterministic, and the JSON written next to it reads back.

use qtool_calib::{CalibStats, Method, RangeSettings, StatsConfig, compute_ranges};
use qtool_pipeline::eval::{
    ClassifierMetrics, CounterpartKind, EVAL_SCHEMA, ErrorMetrics, EvalReport, LayerMetrics,
    LayerSkip, OutputMetrics,
};
use qtool_pipeline::report::{
    CalibrationSummary, OutputSummary, PassSummary, REPORT_SCHEMA, ReportData, SkipEntry,
    histograms_from_stats, read_report_json, render_html, write_report,
};
use qtool_tensor::Tensor;

const EVIL: &str = "conv<script>alert(\"x\")</script>&'";

fn err(sqnr: f64) -> ErrorMetrics {
    ErrorMetrics {
        elements: 100,
        non_finite: 0,
        sqnr_db: sqnr,
        cosine: 0.999,
        max_abs_err: 0.5,
        mean_abs_err: 0.01,
    }
}

fn eval_report(n_layers: usize) -> EvalReport {
    let mut layers: Vec<LayerMetrics> = (0..n_layers)
        .map(|i| LayerMetrics {
            tensor: if i == 0 {
                EVIL.to_string()
            } else {
                format!("layer{i:03}")
            },
            counterpart: format!("layer{i:03}_DequantizeLinear_Output"),
            kind: CounterpartKind::Dequantized,
            order: i,
            error: err(10.0 + i as f64),
        })
        .collect();
    layers.push(LayerMetrics {
        tensor: "input".into(),
        counterpart: "input".into(),
        kind: CounterpartKind::Float,
        order: n_layers,
        error: err(f64::INFINITY),
    });
    EvalReport {
        schema: EVAL_SCHEMA.into(),
        reference: "model.onnx".into(),
        candidate: "model.qdq.onnx".into(),
        candidate_format: "qdq".into(),
        data: "eval.npy".into(),
        labels: Some("labels.npy".into()),
        samples: 8,
        outputs: vec![OutputMetrics {
            name: "prob".into(),
            candidate_name: "prob".into(),
            error: err(31.5),
            classifier: Some(ClassifierMetrics {
                classes: 10,
                rows: 8,
                top1_agreement: 1.0,
                top5_agreement: Some(1.0),
                accuracy_reference: Some(0.875),
                accuracy_candidate: Some(0.75),
            }),
        }],
        layers,
        skipped_layers: vec![LayerSkip {
            tensor: "odd".into(),
            reason: "shapes differ".into(),
        }],
    }
}

fn data(n_layers: usize) -> ReportData {
    let mut stats = CalibStats::new(StatsConfig {
        histogram: true,
        ..StatsConfig::default()
    });
    let vals: Vec<f32> = (0..1000).map(|i| (i as f32 - 300.0) / 100.0).collect();
    for name in ["layer001", EVIL, "zzz"] {
        stats
            .observe(name, &Tensor::from_vec(&[1000], vals.clone()).unwrap())
            .unwrap();
    }
    let ranges = compute_ranges(
        &stats,
        &RangeSettings {
            method: Method::MinMax,
            ..RangeSettings::default()
        },
    )
    .unwrap();
    ReportData {
        title: "tiny <cnn>".into(),
        model: "model.onnx".into(),
        qtool_version: "0.1.0".into(),
        calibration: Some(CalibrationSummary {
            method: "entropy".into(),
            data: "calib.npy".into(),
            samples: 32,
            ..Default::default()
        }),
        outputs: vec![
            OutputSummary {
                name: "qdq".into(),
                format: "qdq".into(),
                path: "out/model.qdq.onnx".into(),
                passes: vec![PassSummary {
                    pass: "insert_qdq".into(),
                    rewritten: vec![],
                    skipped: vec![SkipEntry {
                        node: EVIL.into(),
                        op_type: "Conv".into(),
                        reason: "excluded by regex 'conv<'".into(),
                    }],
                }],
                eval: Some(eval_report(n_layers)),
                ..Default::default()
            },
            OutputSummary {
                name: "integer".into(),
                format: "integer".into(),
                path: "out/model.int.onnx".into(),
                eval: Some(eval_report(3)),
                ..Default::default()
            },
        ],
        histograms: histograms_from_stats(&stats, &ranges, 64),
        ..Default::default()
    }
}

#[test]
fn every_section_and_chart_is_there() {
    let html = render_html(&data(5));
    for id in [
        "id=\"summary\"",
        "id=\"metrics\"",
        "id=\"per-layer\"",
        "id=\"histograms\"",
        "id=\"skipped\"",
        "id=\"data\"",
        "id=\"report-data\"",
        "<svg class=\"chart per-layer-sqnr\" id=\"per-layer-sqnr-0\"",
        "<svg class=\"chart per-layer-sqnr\" id=\"per-layer-sqnr-1\"",
        "<svg class=\"chart histogram\" id=\"hist-0\"",
        "<svg class=\"chart histogram\" id=\"hist-2\"",
        "class=\"range range-min\"",
        "class=\"range range-max\"",
    ] {
        assert!(html.contains(id), "missing {id}");
    }
    // The metrics are shown: accuracy of both models, SQNR, the skip reason.
    assert!(html.contains("87.50%") && html.contains("75.00%"));
    assert!(html.contains("31.50"));
    assert!(html.contains("excluded by regex"));
    // Self-contained: no external resources.
    for bad in [
        "src=\"http",
        "href=\"http",
        "<link",
        "<script src",
        "@import",
    ] {
        assert!(!html.contains(bad), "{bad}");
    }
    // Exactly one script element, the JSON data.
    assert_eq!(html.matches("<script").count(), 1);
}

#[test]
fn names_are_escaped() {
    let html = render_html(&data(5));
    assert!(!html.contains("<script>alert"));
    assert!(html.contains("conv&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"));
    assert!(html.contains("tiny &lt;cnn&gt;"));
    // The embedded JSON cannot close its script element.
    let start = html.find("id=\"report-data\">").unwrap();
    let body = &html[start..];
    let end = body.find("</script>").unwrap();
    assert!(!body[..end].contains('<'));
}

#[test]
fn output_is_deterministic_and_the_json_reads_back() {
    let d = data(40);
    assert_eq!(render_html(&d), render_html(&d.clone()));
    let dir = tempfile::tempdir().unwrap();
    let (h1, j1) = (dir.path().join("a.html"), dir.path().join("a.json"));
    let (h2, j2) = (dir.path().join("b.html"), dir.path().join("b.json"));
    write_report(&d, &h1, &j1).unwrap();
    write_report(&d, &h2, &j2).unwrap();
    assert_eq!(std::fs::read(&h1).unwrap(), std::fs::read(&h2).unwrap());
    assert_eq!(std::fs::read(&j1).unwrap(), std::fs::read(&j2).unwrap());
    let back = read_report_json(&j1).unwrap();
    assert_eq!(back.schema, REPORT_SCHEMA);
    let mut want = d.clone();
    want.schema = REPORT_SCHEMA.into();
    assert_eq!(back, want, "inf SQNR and every field survive the JSON");
    // Re-rendering from the JSON gives the same page.
    assert_eq!(render_html(&back), std::fs::read_to_string(&h1).unwrap());
    // Many layers: the chart holds 30 bars, the table all of them.
    let html = std::fs::read_to_string(&h1).unwrap();
    let chart_start = html.find("id=\"per-layer-sqnr-0\"").unwrap();
    let chart = &html[chart_start..chart_start + html[chart_start..].find("</svg>").unwrap()];
    assert_eq!(chart.matches("<g class=\"layer\">").count(), 30);
    assert!(html.contains("All 41 layers"));
    // No time stamp unless given.
    let mut stamped = d.clone();
    stamped.generated = Some("2026-11-27 run 7".into());
    assert!(render_html(&stamped).contains("2026-11-27 run 7"));
}

#[test]
fn histograms_keep_every_count_and_mark_the_range() {
    let d = data(3);
    assert_eq!(d.histograms.len(), 3);
    let h = &d.histograms[0];
    assert!(h.counts.len() <= 64, "{}", h.counts.len());
    assert_eq!(h.counts.iter().sum::<u64>(), 1000);
    assert_eq!((h.data_min, h.data_max), (-3.0, 6.99f32 as f64));
    assert_eq!((h.range_min, h.range_max), (-3.0, 6.99f32 as f64));
    // Zero stays a bin edge.
    let k = -h.first_edge / h.bin_width;
    assert_eq!(k, k.round());
}
