//! The `qtool run` pipeline file (docs/pipeline.md): strict serde structs for the YAML schema, and
//! [`load`], which parses, fills in defaults, resolves relative paths (inputs against the YAML file's
//! directory, outputs against `output_dir`) and checks cross-field rules. Every error names the file,
//! the line and column, and the key path (`quantization.per_channel`).

use qtool_calib::{HistMode, Method, Preprocess};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// The schema version this build reads.
pub const SCHEMA_VERSION: u32 = 1;

/// qtool's default range method (`calibration.method`, `qtool quantize`, `qtool calibrate`), chosen
/// by measured fidelity on real models (docs/calibration.md, "The default range method").
pub const DEFAULT_METHOD: Method = Method::Percentile;
/// [`DEFAULT_METHOD`] as written in YAML and on the command line.
pub const DEFAULT_METHOD_NAME: &str = "percentile";

/// A configuration error: where (file, line, column, key path) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The key path, e.g. `outputs[1].path`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(k) = &self.key {
            write!(f, "{k}: ")?;
        }
        f.write_str(&self.message)
    }
}

// ---------------------------------------------------------------------------------------------
// The schema.

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn default_manifest() -> String {
    "manifest.json".into()
}
fn default_preprocess() -> Vec<PassSpec> {
    vec![
        PassSpec {
            name: "remove_identity".into(),
            options: serde_json::Value::Null,
        },
        // Paddle exports keep their weights in Constant nodes: as initializers they can be quantized.
        PassSpec {
            name: "fold_constants".into(),
            options: serde_json::Value::Null,
        },
        PassSpec {
            name: "fold_batchnorm".into(),
            options: serde_json::Value::Null,
        },
    ]
}

/// The whole pipeline file, with defaults filled in after [`load`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Schema version (only 1).
    #[serde(default = "one")]
    pub version: u32,
    /// The FP32 model (input path).
    pub model: String,
    /// Base of relative output paths (default: the YAML file's directory).
    #[serde(default)]
    pub output_dir: Option<String>,
    /// The run manifest (output path).
    #[serde(default = "default_manifest")]
    pub manifest: String,
    #[serde(default)]
    pub data: DataConfig,
    /// Passes on the FP32 model before calibration.
    #[serde(default = "default_preprocess")]
    pub preprocess: Vec<PassSpec>,
    #[serde(default)]
    pub calibration: CalibrationConfig,
    #[serde(default)]
    pub quantization: QuantizationConfig,
    /// Extra passes on every output after its conversion.
    #[serde(default)]
    pub passes: Vec<PassSpec>,
    pub outputs: Vec<OutputConfig>,
    #[serde(default)]
    pub evaluation: EvaluationConfig,
    #[serde(default)]
    pub report: ReportConfig,
}

/// The calibration and evaluation sets.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    #[serde(default)]
    pub calibration: Option<DataSet>,
    #[serde(default)]
    pub evaluation: Option<DataSet>,
}

/// One data set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSet {
    /// .npy, .npz, a directory of .npy, ONNX test-data sets, or an image folder (input path).
    pub path: String,
    /// At most this many samples (default: all).
    #[serde(default)]
    pub samples: Option<usize>,
    /// Shuffle seed (default: file order).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Image preprocessing (images only).
    #[serde(default, deserialize_with = "de_preprocess")]
    pub preprocess: Option<Preprocess>,
    /// Evaluation only: one integer class per sample (input path).
    #[serde(default)]
    pub labels: Option<String>,
}

/// Reads [`Preprocess`] through a JSON value, so that its enums take the plain mapping form
/// (`resize: {exact: {height: 224, width: 224}}`) rather than YAML tags.
fn de_preprocess<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Preprocess>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    v.map(|v| serde_json::from_value(v).map_err(serde::de::Error::custom))
        .transpose()
}

/// A pass with its options: `name` or `{name: NAME, options: {...}}` in YAML.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PassSpec {
    pub name: String,
    pub options: serde_json::Value,
}

impl<'de> Deserialize<'de> for PassSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            name: String,
            #[serde(default)]
            options: serde_json::Value,
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = PassSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a pass name or a mapping {name, options}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PassSpec, E> {
                Ok(PassSpec {
                    name: v.to_string(),
                    options: serde_json::Value::Null,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, a: A) -> Result<PassSpec, A::Error> {
                let f = Full::deserialize(serde::de::value::MapAccessDeserializer::new(a))?;
                Ok(PassSpec {
                    name: f.name,
                    options: f.options,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// How ranges are obtained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrationConfig {
    pub method: Method,
    pub mode: HistMode,
    pub percentile: f64,
    pub num_bins: usize,
    pub num_quantized_bins: usize,
    pub symmetric: Option<bool>,
    pub moving_average: bool,
    /// Histogram resolution while collecting statistics.
    pub histogram_bins: u32,
    /// Reuse a statistics file (input path).
    pub stats: Option<String>,
    /// Save the collected statistics (output path).
    pub save_stats: Option<String>,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        let r = qtool_calib::RangeSettings::default();
        CalibrationConfig {
            method: DEFAULT_METHOD,
            mode: r.mode,
            percentile: r.percentile,
            num_bins: r.num_bins,
            num_quantized_bins: r.num_quantized_bins,
            symmetric: r.symmetric,
            moving_average: r.moving_average,
            histogram_bins: qtool_calib::StatsConfig::default().bins,
            stats: None,
            save_stats: None,
        }
    }
}

/// Activation type and symmetry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activations {
    #[default]
    U8Asymmetric,
    I8Symmetric,
}

/// Weight type and symmetry: int8 symmetric, or uint8 asymmetric (ONNX Runtime's
/// `weight_type=QUInt8`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weights {
    #[default]
    I8Symmetric,
    U8Asymmetric,
}

/// Nodes left in float.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Exclude {
    pub nodes: Vec<String>,
    pub regex: Vec<String>,
    pub op_types: Vec<String>,
}

/// A per-tensor override: `{min, max}` or `{scale, zero_point}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_point: Option<i32>,
}

/// What is quantized and how (the options of `insert_qdq`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuantizationConfig {
    pub activations: Activations,
    pub weights: Weights,
    pub per_channel: bool,
    pub reduce_range: bool,
    pub quantize_bias: bool,
    pub adjust_weight_scale_for_bias: bool,
    pub absorb_activations: bool,
    pub op_types: Option<Vec<String>>,
    pub exclude: Exclude,
    pub overrides: BTreeMap<String, Override>,
    /// Set when resolving: an `integer` output exists, so uint8 Conv weights are per tensor
    /// (ConvInteger takes one weight zero-point). Not a key of the file.
    #[serde(skip)]
    pub integer_output: bool,
}

impl Default for QuantizationConfig {
    fn default() -> Self {
        QuantizationConfig {
            activations: Activations::default(),
            weights: Weights::default(),
            per_channel: true,
            reduce_range: false,
            quantize_bias: true,
            adjust_weight_scale_for_bias: true,
            absorb_activations: true,
            op_types: None,
            exclude: Exclude::default(),
            overrides: BTreeMap::new(),
            integer_output: false,
        }
    }
}

impl QuantizationConfig {
    /// The options of the `insert_qdq` pass.
    pub fn insert_qdq_options(&self) -> serde_json::Value {
        serde_json::json!({
            "activations": self.activations,
            "weights": self.weights,
            "per_channel": self.per_channel,
            "per_tensor_u8_conv_weights": self.integer_output && self.weights == Weights::U8Asymmetric,
            "reduce_range": self.reduce_range,
            "quantize_bias": self.quantize_bias,
            "adjust_weight_scale_for_bias": self.adjust_weight_scale_for_bias,
            "absorb_activations": self.absorb_activations,
            "op_types": self.op_types,
            "exclude_nodes": self.exclude.nodes,
            "exclude_regex": self.exclude.regex,
            "exclude_op_types": self.exclude.op_types,
            "overrides": self.overrides,
        })
    }
}

/// The format of an output model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Qdq,
    Qlinear,
    Integer,
    Dynamic,
}

impl OutputFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Qdq => "qdq",
            OutputFormat::Qlinear => "qlinear",
            OutputFormat::Integer => "integer",
            OutputFormat::Dynamic => "dynamic",
        }
    }
    /// The pass that makes this format (from the QDQ model, or from FP32 for `dynamic`).
    pub fn conversion_pass(self) -> Option<&'static str> {
        match self {
            OutputFormat::Qdq => None,
            OutputFormat::Qlinear => Some("qdq_to_qlinear"),
            OutputFormat::Integer => Some("qdq_to_integer"),
            OutputFormat::Dynamic => Some("quantize_dynamic"),
        }
    }
    /// Whether the format is made from calibration ranges.
    pub fn needs_ranges(self) -> bool {
        self != OutputFormat::Dynamic
    }
}

/// One output model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    pub format: OutputFormat,
    /// Output path.
    pub path: String,
    /// Options of the conversion pass.
    #[serde(default)]
    pub options: serde_json::Value,
    /// Allow com.microsoft contrib ops.
    #[serde(default)]
    pub contrib: bool,
}

impl OutputConfig {
    /// The conversion pass's options: for `dynamic`, the weight settings and node exclusions of
    /// `quantization` first; then `options` (which win); then `contrib: true` when set.
    pub fn conversion_options(&self, q: &QuantizationConfig) -> serde_json::Value {
        let mut o = serde_json::Map::new();
        if self.format == OutputFormat::Dynamic {
            o.insert("weights".into(), serde_json::json!(q.weights));
            o.insert("per_channel".into(), q.per_channel.into());
            o.insert("reduce_range".into(), q.reduce_range.into());
            o.insert("exclude_nodes".into(), serde_json::json!(q.exclude.nodes));
            o.insert("exclude_regex".into(), serde_json::json!(q.exclude.regex));
            // Op-type exclusions name ops of the static quantizer; the dynamic one takes its own
            // (`options: {exclude_op_types: [...]}`).
        }
        if let Some(m) = self.options.as_object() {
            for (k, v) in m {
                o.insert(k.clone(), v.clone());
            }
        }
        if self.contrib {
            o.insert("contrib".into(), serde_json::Value::Bool(true));
        }
        if o.is_empty() && !self.options.is_object() {
            return self.options.clone();
        }
        serde_json::Value::Object(o)
    }
}

/// Evaluation against FP32.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluationConfig {
    pub enabled: bool,
    pub per_layer: bool,
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        EvaluationConfig {
            enabled: yes(),
            per_layer: true,
        }
    }
}

/// Report paths.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    pub html: Option<String>,
    pub json: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The resolved pipeline.

/// A data set with its paths resolved.
#[derive(Clone, Debug)]
pub struct ResolvedSet {
    pub path: PathBuf,
    pub samples: Option<usize>,
    pub seed: Option<u64>,
    pub preprocess: Option<Preprocess>,
    pub labels: Option<PathBuf>,
}

/// An output with its path resolved.
#[derive(Clone, Debug)]
pub struct ResolvedOutput {
    pub format: OutputFormat,
    pub path: PathBuf,
    /// The path as written in the file (relative to `output_dir`).
    pub display: String,
    pub options: serde_json::Value,
}

/// A loaded, checked pipeline.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// The YAML file.
    pub file: PathBuf,
    /// The file's text (hashed into the manifest).
    pub text: String,
    /// The configuration with every default filled in.
    pub spec: PipelineFile,
    pub base_dir: PathBuf,
    pub output_dir: PathBuf,
    pub model: PathBuf,
    pub calibration_data: Option<ResolvedSet>,
    pub evaluation_data: Option<ResolvedSet>,
    pub stats: Option<PathBuf>,
    pub save_stats: Option<PathBuf>,
    pub outputs: Vec<ResolvedOutput>,
    pub manifest: PathBuf,
    pub report_html: Option<PathBuf>,
    pub report_json: Option<PathBuf>,
}

/// What the caller may override when loading.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Replaces `output_dir` (relative to the current directory).
    pub output_dir: Option<PathBuf>,
}

/// Reads, parses and checks a pipeline file.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Pipeline, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        column: None,
        key: None,
        message: format!("cannot read the pipeline file: {e}"),
    })?;
    parse(&text, path, opts)
}

/// Parses and checks pipeline text as if read from `file` (relative paths resolve against the
/// file's directory; the file itself need not exist).
pub fn parse(text: &str, file: &Path, opts: &LoadOptions) -> Result<Pipeline, ConfigError> {
    let spec = deserialize(text, file)?;
    Resolver { text, file }.resolve(spec, opts)
}

fn deserialize(text: &str, file: &Path) -> Result<PipelineFile, ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError {
            file: file.to_path_buf(),
            line: None,
            column: None,
            key: None,
            message: "the pipeline file is empty (it needs at least `model` and `outputs`)".into(),
        });
    }
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| serde_error(text, file, e))
}

/// Removes serde_yaml's own " at line N column M" suffix.
fn strip_location(msg: &str) -> &str {
    if let Some(i) = msg.rfind(" at line ") {
        let tail = &msg[i + " at line ".len()..];
        let mut parts = tail.splitn(3, ' ');
        let (a, b, c) = (parts.next(), parts.next(), parts.next());
        if a.is_some_and(|a| a.chars().all(|c| c.is_ascii_digit()))
            && b == Some("column")
            && c.is_some_and(|c| c.chars().all(|c| c.is_ascii_digit()))
        {
            return &msg[..i];
        }
    }
    msg
}

/// Removes every " at line N column M" from a libyaml message.
fn strip_all_locations(msg: &str) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(i) = rest.find(" at line ") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + " at line ".len()..];
        let mut end = 0;
        let mut words = 0;
        for (j, c) in tail.char_indices() {
            if c == ' ' {
                words += 1;
                if words == 3 {
                    end = j;
                    break;
                }
            } else if !(c.is_ascii_digit() || (words == 1 && c.is_ascii_alphabetic())) {
                end = j;
                break;
            }
            end = j + c.len_utf8();
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The names between backticks in a serde message (`unknown field `x`, expected one of `a`, `b``).
fn backticked(msg: &str) -> Vec<&str> {
    msg.split('`').skip(1).step_by(2).collect()
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate, if close enough to be a plausible typo.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (distance(&w, &c.to_ascii_lowercase()), *c))
        .filter(|(d, c)| *d <= (c.len().max(w.len()) / 3).max(2) && *d < c.len().max(w.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn serde_error(
    text: &str,
    file: &Path,
    e: serde_path_to_error::Error<serde_yaml::Error>,
) -> ConfigError {
    let path = e.path().to_string();
    let inner = e.inner();
    let loc = inner.location().map(|l| (l.line(), l.column()));
    let full = inner.to_string();
    let mut msg = strip_location(&full).to_string();
    // serde_yaml prefixes its own copy of the path.
    for p in [path.as_str(), "?"] {
        if let Some(rest) = msg.strip_prefix(&format!("{p}: ")) {
            msg = rest.to_string();
        }
    }
    if let Some(i) = msg.find(": ")
        && msg[..i]
            .chars()
            .all(|c| c.is_alphanumeric() || "_-.[]?".contains(c))
    {
        msg = msg[i + 2..].to_string();
    }
    let mut key = (path != "." && !path.is_empty()).then(|| path.clone());
    if msg.starts_with("missing field")
        && let Some(f) = backticked(&msg).first()
    {
        let parent = key
            .as_deref()
            .map(|k| k.trim_end_matches(".?").trim_end_matches('?'));
        key = Some(match parent {
            Some(p) if !p.is_empty() => format!("{p}.{f}"),
            _ => f.to_string(),
        });
        msg = format!("missing required key `{f}`");
    }
    if msg.starts_with("unknown field") || msg.starts_with("unknown variant") {
        let names = backticked(&msg);
        if let Some((bad, expected)) = names.split_first() {
            let what = if msg.starts_with("unknown field") {
                "key"
            } else {
                "value"
            };
            let mut m = format!("unknown {what} `{bad}`");
            if let Some(s) = suggest(bad, expected) {
                m.push_str(&format!(", did you mean `{s}`?"));
            }
            if !expected.is_empty() {
                m.push_str(&format!(" (expected one of: {})", expected.join(", ")));
            } else {
                m.push_str(" (no keys are allowed here)");
            }
            if what == "key" {
                let parent = key
                    .as_deref()
                    .map(|k| k.trim_end_matches('?').trim_end_matches('.').to_string())
                    .unwrap_or_default();
                key = Some(if parent.is_empty() {
                    bad.to_string()
                } else if parent == *bad || parent.ends_with(&format!(".{bad}")) {
                    parent
                } else {
                    format!("{parent}.{bad}")
                });
            }
            msg = m;
        }
    }
    let syntax = [
        "did not find expected",
        "mapping values are not allowed",
        "found character that cannot start any token",
        "could not find expected ':'",
        "found a tab character",
        "block sequence entries are not allowed",
    ];
    if syntax.iter().any(|s| msg.contains(s)) {
        // libyaml names positions inside its message; the error's own location is given up front.
        msg = strip_all_locations(&msg);
        msg.push_str(" (bad indentation? YAML nests by spaces; tabs are not allowed)");
        // The deserializer's path is where it was, not where the text is wrong: name the key of
        // the offending line instead.
        // A line indented with a tab has no trustworthy key.
        key = loc
            .filter(|(l, _)| {
                text.lines()
                    .nth(l.saturating_sub(1))
                    .is_some_and(|t| !t[..t.len() - t.trim_start().len()].contains('\t'))
            })
            .and_then(|(l, _)| key_at(text, l));
    }
    for (from, to) in [
        ("expected usize", "expected a non-negative integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected i32", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        (
            "expected struct PipelineFile",
            "expected a mapping of pipeline keys (model, data, outputs, ...)",
        ),
    ] {
        if msg.ends_with(from) {
            msg = format!("{}{to}", &msg[..msg.len() - from.len()]);
        }
    }
    if let Some(i) = msg.find("expected struct ") {
        msg = format!("{}expected a mapping", &msg[..i]);
    }
    let (line, column) = match loc {
        Some((l, c)) => (Some(l), Some(c)),
        None => match key.as_deref().and_then(|k| locate(text, &parse_key(k))) {
            Some((l, c)) => (Some(l), Some(c)),
            None => (None, None),
        },
    };
    ConfigError {
        file: file.to_path_buf(),
        line,
        column,
        key,
        message: msg,
    }
}

// ---------------------------------------------------------------------------------------------
// Locating a key path in the text (for errors found after parsing).

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Splits `outputs[1].path` into segments.
pub fn parse_key(k: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in k.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(Seg::Key(rest[..i].to_string()));
            }
            rest = &rest[i..];
            while let Some(r) = rest.strip_prefix('[') {
                let Some(end) = r.find(']') else { break };
                if let Ok(n) = r[..end].parse() {
                    out.push(Seg::Index(n));
                }
                rest = &r[end + 1..];
            }
        } else if !rest.is_empty() {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

/// A significant line: number (1-based), indentation, content.
#[derive(Clone, Debug)]
struct Line<'a> {
    no: usize,
    indent: usize,
    text: &'a str,
}

fn key_of(text: &str) -> Option<&str> {
    let (k, _) = text.split_once(':')?;
    Some(k.trim().trim_matches(|c| c == '"' || c == '\''))
}

/// The 1-based line and column of a key path in block-style YAML (best effort: the deepest part
/// of the path that is found; flow-style `{...}` values are not entered).
pub fn locate(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let mut region: Vec<Line> = text
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let t = l.trim_start_matches(' ');
            (!t.is_empty() && !t.starts_with('#') && !t.starts_with("---")).then(|| Line {
                no: i + 1,
                indent: l.len() - t.len(),
                text: t,
            })
        })
        .collect();
    let mut best = None;
    for seg in path {
        let Some(first) = region.first() else {
            return best;
        };
        let ind = first.indent;
        match seg {
            Seg::Key(k) => {
                let Some(j) = region
                    .iter()
                    .position(|l| l.indent == ind && key_of(l.text) == Some(k.as_str()))
                else {
                    return best;
                };
                let l = region[j].clone();
                best = Some((l.no, l.indent + 1));
                let after = l.text.split_once(':').map(|x| x.1.trim()).unwrap_or("");
                if !after.is_empty() && !after.starts_with('#') {
                    // An inline value: point at it.
                    let col = l.indent + l.text.len() - l.text.split_once(':').unwrap().1.len();
                    let pad = l.text.split_once(':').unwrap().1.len()
                        - l.text.split_once(':').unwrap().1.trim_start().len();
                    best = Some((l.no, col + pad + 1));
                    region = Vec::new();
                    continue;
                }
                region = region[j + 1..]
                    .iter()
                    .take_while(|m| m.indent > ind || (m.indent == ind && m.text.starts_with("- ")))
                    .cloned()
                    .collect();
            }
            Seg::Index(n) => {
                let items: Vec<usize> = region
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.indent == ind && (l.text.starts_with("- ") || l.text == "-"))
                    .map(|(i, _)| i)
                    .collect();
                let Some(&j) = items.get(*n) else {
                    return best;
                };
                let l = region[j].clone();
                best = Some((l.no, l.indent + 1));
                let inner = l.text[1..].trim_start_matches(' ');
                let mut next = Vec::new();
                if !inner.is_empty() {
                    next.push(Line {
                        no: l.no,
                        indent: l.indent + (l.text.len() - inner.len()),
                        text: inner,
                    });
                }
                next.extend(
                    region[j + 1..]
                        .iter()
                        .take_while(|m| m.indent > ind)
                        .cloned(),
                );
                region = next;
            }
        }
    }
    best
}

/// The key path of the key on a 1-based line of block-style YAML (best effort), e.g.
/// `data.calibration.samples` or `outputs[1].path`.
pub fn key_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<Line> = text
        .lines()
        .enumerate()
        .take(line)
        .filter_map(|(i, l)| {
            let t = l.trim_start_matches([' ', '\t']);
            (!t.is_empty() && !t.starts_with('#') && !t.starts_with("---")).then(|| Line {
                no: i + 1,
                indent: l.len() - t.len(),
                text: t,
            })
        })
        .collect();
    if lines.last()?.no != line {
        return None;
    }
    let is_item = |l: &Line| l.text == "-" || l.text.starts_with("- ");
    // The key of a line and its column (after "- " for a sequence item).
    let key = |l: &Line| -> Option<(usize, String)> {
        if is_item(l) {
            let inner = l.text[1..].trim_start();
            key_of(inner).map(|k| (l.indent + l.text.len() - inner.len(), k.to_string()))
        } else {
            key_of(l.text).map(|k| (l.indent, k.to_string()))
        }
    };
    // Position of item `j` among the items of its sequence.
    let item_index = |j: usize| -> usize {
        let ind = lines[j].indent;
        lines[..j]
            .iter()
            .rev()
            .take_while(|l| l.indent > ind || (l.indent == ind && is_item(l)))
            .filter(|l| l.indent == ind)
            .count()
    };
    let mut parts: Vec<String> = Vec::new();
    let mut j = lines.len() - 1;
    // The column of the node found last (None for the line itself).
    let mut child: Option<usize> = None;
    let mut col;
    let mut seq;
    loop {
        let l = &lines[j];
        if is_item(l) {
            // "- k: v": `k` is a parent only when the node found last is nested under it (deeper
            // than `k`); otherwise that node is a sibling of `k` in the item's mapping.
            if let Some((kc, k)) = key(l)
                && child.is_none_or(|c| kc < c)
            {
                parts.push(k);
            }
            parts.push(format!("[{}]", item_index(j)));
            col = l.indent;
            seq = true;
        } else {
            if let Some((_, k)) = key(l) {
                parts.push(k);
            }
            col = l.indent;
            seq = false;
        }
        child = Some(col);
        let found = lines[..j]
            .iter()
            .rposition(|p| p.indent < col || (seq && p.indent == col && !is_item(p)));
        match found {
            Some(k) => j = k,
            None => break,
        }
    }
    parts.reverse();
    let mut s = String::new();
    for p in parts {
        if !p.starts_with('[') && !s.is_empty() {
            s.push('.');
        }
        s.push_str(&p);
    }
    (!s.is_empty()).then_some(s)
}

// ---------------------------------------------------------------------------------------------
// Resolution and cross-field checks.

struct Resolver<'a> {
    text: &'a str,
    file: &'a Path,
}

/// `a/./b/../c` → `a/c` without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// An absolute, normalized form for comparing paths (canonical when the file exists).
fn identity(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    // Canonicalize the existing parent so symlinked directories compare equal.
    let n = normalize(&abs);
    match (
        n.parent().and_then(|d| std::fs::canonicalize(d).ok()),
        n.file_name(),
    ) {
        (Some(d), Some(f)) => d.join(f),
        _ => n,
    }
}

impl Resolver<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let loc = locate(self.text, &parse_key(key));
        ConfigError {
            file: self.file.to_path_buf(),
            line: loc.map(|l| l.0),
            column: loc.map(|l| l.1),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    fn base_dir(&self) -> PathBuf {
        match self.file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    fn input(&self, key: &str, rel: &str, want_dir: Option<bool>) -> Result<PathBuf, ConfigError> {
        if rel.trim().is_empty() {
            return Err(self.err(key, "empty path"));
        }
        let p = normalize(&self.base_dir().join(rel));
        match std::fs::metadata(&p) {
            Err(_) => Err(self.err(
                key,
                format!(
                    "no such file or directory: {} (relative paths are resolved against the pipeline file's directory)",
                    p.display()
                ),
            )),
            Ok(m) if want_dir == Some(false) && m.is_dir() => {
                Err(self.err(key, format!("{} is a directory, not a file", p.display())))
            }
            Ok(_) => Ok(p),
        }
    }

    fn resolve(&self, mut spec: PipelineFile, opts: &LoadOptions) -> Result<Pipeline, ConfigError> {
        if spec.version != SCHEMA_VERSION {
            return Err(self.err(
                "version",
                format!(
                    "schema version {} is not supported (this qtool reads version {SCHEMA_VERSION})",
                    spec.version
                ),
            ));
        }
        let base_dir = self.base_dir();
        let model = self.input("model", &spec.model, Some(false))?;

        // Data sets.
        let set = |key: &str, s: &DataSet, eval: bool| -> Result<ResolvedSet, ConfigError> {
            if s.samples == Some(0) {
                return Err(self.err(&format!("{key}.samples"), "must be at least 1"));
            }
            if eval && s.seed.is_some() {
                return Err(self.err(
                    &format!("{key}.seed"),
                    "the evaluation set is read in file order (its first `samples` samples); shuffling it is not supported",
                ));
            }
            if !eval && s.labels.is_some() {
                return Err(self.err(
                    &format!("{key}.labels"),
                    "labels belong to the evaluation set (data.evaluation.labels)",
                ));
            }
            if let Some(p) = &s.preprocess {
                p.validate()
                    .map_err(|e| self.err(&format!("{key}.preprocess"), e.to_string()))?;
            }
            Ok(ResolvedSet {
                path: self.input(&format!("{key}.path"), &s.path, None)?,
                samples: s.samples,
                seed: s.seed,
                preprocess: s.preprocess.clone(),
                labels: s
                    .labels
                    .as_deref()
                    .map(|l| self.input(&format!("{key}.labels"), l, Some(false)))
                    .transpose()?,
            })
        };
        let calibration_data = spec
            .data
            .calibration
            .as_ref()
            .map(|s| set("data.calibration", s, false))
            .transpose()?;
        let evaluation_data = match &spec.data.evaluation {
            Some(s) => Some(set("data.evaluation", s, true)?),
            None => calibration_data.clone().map(|mut s| {
                s.samples = Some(s.samples.unwrap_or(64).min(64));
                s.seed = None;
                s
            }),
        };
        if spec.data.evaluation.is_none()
            && let Some(c) = &spec.data.calibration
        {
            spec.data.evaluation = Some(DataSet {
                samples: evaluation_data.as_ref().and_then(|s| s.samples),
                seed: None,
                labels: None,
                ..c.clone()
            });
        }

        // Calibration.
        let c = &spec.calibration;
        if !(0.0..=100.0).contains(&c.percentile) {
            return Err(self.err(
                "calibration.percentile",
                format!("must be in [0, 100], got {}", c.percentile),
            ));
        }
        for (k, v) in [
            ("num_bins", c.num_bins),
            ("num_quantized_bins", c.num_quantized_bins),
            ("histogram_bins", c.histogram_bins as usize),
        ] {
            if v < 2 {
                return Err(self.err(
                    &format!("calibration.{k}"),
                    format!("must be at least 2, got {v}"),
                ));
            }
        }
        let stats = c
            .stats
            .as_deref()
            .map(|s| self.input("calibration.stats", s, Some(false)))
            .transpose()?;
        if stats.is_some() && c.save_stats.is_some() {
            return Err(self.err(
                "calibration.save_stats",
                "cannot save statistics that are reused from calibration.stats",
            ));
        }
        let needs_ranges = spec.outputs.iter().any(|o| o.format.needs_ranges());
        if needs_ranges && stats.is_none() && calibration_data.is_none() {
            return Err(self.err(
                "data",
                "give the calibration data (data.calibration.path) or a statistics file (calibration.stats)",
            ));
        }

        // Passes.
        let check_pass = |key: &str, p: &PassSpec| -> Result<(), ConfigError> {
            if matches!(
                p.name.as_str(),
                "insert_qdq" | "qdq_to_qlinear" | "qdq_to_integer" | "quantize_dynamic"
            ) {
                return Err(self.err(
                    &format!("{key}.name"),
                    format!(
                        "`{}` is run by the pipeline from `quantization` and `outputs`; do not list it",
                        p.name
                    ),
                ));
            }
            match qtool_passes::build(&p.name, &p.options) {
                Ok(_) => Ok(()),
                Err(qtool_passes::PassError::UnknownPass(n)) => {
                    let names: Vec<&str> =
                        qtool_passes::registry().iter().map(|(n, _)| *n).collect();
                    let mut m = format!("unknown pass `{n}`");
                    if let Some(s) = suggest(&n, &names) {
                        m.push_str(&format!(", did you mean `{s}`?"));
                    }
                    m.push_str(&format!(" (passes: {})", names.join(", ")));
                    // A bare name is located at the list entry itself.
                    let k = if locate(self.text, &parse_key(&format!("{key}.name"))).is_some() {
                        format!("{key}.name")
                    } else {
                        key.to_string()
                    };
                    Err(self.err(&k, m))
                }
                Err(e) => Err(self.err(&format!("{key}.options"), e.to_string())),
            }
        };
        for (i, p) in spec.preprocess.iter().enumerate() {
            check_pass(&format!("preprocess[{i}]"), p)?;
        }
        for (i, p) in spec.passes.iter().enumerate() {
            check_pass(&format!("passes[{i}]"), p)?;
        }
        spec.quantization.integer_output = spec
            .outputs
            .iter()
            .any(|o| o.format == OutputFormat::Integer);
        if spec.quantization.weights == Weights::U8Asymmetric
            && spec.quantization.activations == Activations::I8Symmetric
            && let Some(i) = spec
                .outputs
                .iter()
                .position(|o| o.format == OutputFormat::Qlinear)
        {
            return Err(self.err(
                &format!("outputs[{i}].format"),
                "uint8 weights with int8 activations cannot be QLinearConv/QLinearMatMul \
                 (ONNX Runtime has no int8 x uint8 kernel for them): use u8_asymmetric \
                 activations or i8_symmetric weights",
            ));
        }
        if let Err(e) = qtool_passes::build("insert_qdq", &spec.quantization.insert_qdq_options()) {
            let msg = e.to_string();
            let msg = msg
                .strip_prefix("pass 'insert_qdq': invalid options: ")
                .unwrap_or(&msg)
                .to_string();
            let key = if msg.contains("exclude_regex") {
                "quantization.exclude.regex".to_string()
            } else if msg.contains("op type") {
                let bad = msg.split('\'').nth(1).unwrap_or("");
                if spec.quantization.exclude.op_types.iter().any(|t| t == bad) {
                    "quantization.exclude.op_types".into()
                } else {
                    "quantization.op_types".into()
                }
            } else if let Some(name) = msg
                .split("override '")
                .nth(1)
                .and_then(|r| r.split('\'').next())
            {
                format!("quantization.overrides.{name}")
            } else {
                "quantization".into()
            };
            return Err(self.err(&key, msg));
        }

        // Outputs.
        if spec.outputs.is_empty() {
            return Err(self.err("outputs", "give at least one output"));
        }
        let output_dir = match (&opts.output_dir, &spec.output_dir) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) => normalize(&base_dir.join(d)),
            (None, None) => base_dir.clone(),
        };
        // Recorded as written (or as given on the command line), not as an absolute path, so that
        // the manifest does not depend on where the files live.
        spec.output_dir = Some(match (&opts.output_dir, &spec.output_dir) {
            (Some(d), _) => d.to_string_lossy().into_owned(),
            (None, Some(d)) => d.clone(),
            (None, None) => ".".into(),
        });
        let out_path = |key: &str, rel: &str| -> Result<PathBuf, ConfigError> {
            if rel.trim().is_empty() {
                return Err(self.err(key, "empty path"));
            }
            let p = normalize(&output_dir.join(rel));
            if p.is_dir() {
                return Err(self.err(key, format!("{} is a directory", p.display())));
            }
            Ok(p)
        };
        let mut outputs = Vec::new();
        for (i, o) in spec.outputs.iter().enumerate() {
            let key = format!("outputs[{i}]");
            let path = out_path(&format!("{key}.path"), &o.path)?;
            if let Some(pass) = o.format.conversion_pass() {
                match qtool_passes::build(pass, &o.conversion_options(&spec.quantization)) {
                    Ok(_) => {}
                    Err(qtool_passes::PassError::UnknownPass(_)) => {
                        return Err(self.err(
                            &format!("{key}.format"),
                            format!(
                                "format `{}` needs the `{pass}` pass, which this build of qtool does not have",
                                o.format.as_str()
                            ),
                        ));
                    }
                    Err(e) => {
                        let m = e.to_string();
                        if o.contrib && m.contains("unknown field `contrib`") {
                            return Err(self.err(
                                &format!("{key}.contrib"),
                                format!(
                                    "format `{}` has no contrib-op variant (`{pass}` writes standard ops only)",
                                    o.format.as_str()
                                ),
                            ));
                        }
                        return Err(self.err(&format!("{key}.options"), m));
                    }
                }
            } else if !o.options.is_null() && o.options.as_object().is_none_or(|m| !m.is_empty()) {
                return Err(self.err(
                    &format!("{key}.options"),
                    "the qdq format has no conversion pass and takes no options",
                ));
            } else if o.contrib {
                return Err(self.err(
                    &format!("{key}.contrib"),
                    "the qdq format uses standard ops only",
                ));
            }
            outputs.push(ResolvedOutput {
                format: o.format,
                path,
                display: o.path.clone(),
                options: o.conversion_options(&spec.quantization),
            });
        }
        let save_stats = spec
            .calibration
            .save_stats
            .as_deref()
            .map(|s| out_path("calibration.save_stats", s))
            .transpose()?;
        let report_html = spec
            .report
            .html
            .as_deref()
            .map(|s| out_path("report.html", s))
            .transpose()?;
        let report_json = spec
            .report
            .json
            .as_deref()
            .map(|s| out_path("report.json", s))
            .transpose()?;
        let manifest = out_path("manifest", &spec.manifest)?;

        // Every output distinct, none an input.
        let mut inputs: Vec<(String, PathBuf)> = vec![
            ("model".into(), model.clone()),
            ("the pipeline file".into(), self.file.to_path_buf()),
        ];
        if let Some(s) = &stats {
            inputs.push(("calibration.stats".into(), s.clone()));
        }
        for (k, s) in [
            ("data.calibration", &calibration_data),
            ("data.evaluation", &evaluation_data),
        ] {
            if let Some(s) = s {
                inputs.push((format!("{k}.path"), s.path.clone()));
                if let Some(l) = &s.labels {
                    inputs.push((format!("{k}.labels"), l.clone()));
                }
            }
        }
        let mut written: Vec<(String, PathBuf)> = outputs
            .iter()
            .enumerate()
            .map(|(i, o)| (format!("outputs[{i}].path"), o.path.clone()))
            .collect();
        for (k, p) in [
            ("calibration.save_stats", &save_stats),
            ("report.html", &report_html),
            ("report.json", &report_json),
        ] {
            if let Some(p) = p {
                written.push((k.into(), p.clone()));
            }
        }
        written.push(("manifest".into(), manifest.clone()));
        for (i, (k, p)) in written.iter().enumerate() {
            let id = identity(p);
            if let Some((ik, _)) = inputs.iter().find(|(_, q)| identity(q) == id) {
                return Err(self.err(
                    k,
                    format!(
                        "{} is also an input ({ik}); qtool never overwrites its inputs",
                        p.display()
                    ),
                ));
            }
            if let Some((pk, _)) = written[..i].iter().find(|(_, q)| identity(q) == id) {
                return Err(self.err(k, format!("the same path as {pk} ({})", p.display())));
            }
        }

        Ok(Pipeline {
            file: self.file.to_path_buf(),
            text: self.text.to_string(),
            spec,
            base_dir,
            output_dir,
            model,
            calibration_data,
            evaluation_data,
            stats,
            save_stats,
            outputs,
            manifest,
            report_html,
            report_json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_method_name_names_the_default_method() {
        let m: Method = serde_json::from_value(DEFAULT_METHOD_NAME.into()).unwrap();
        assert_eq!(m, DEFAULT_METHOD);
        assert_eq!(CalibrationConfig::default().method, DEFAULT_METHOD);
    }

    #[test]
    fn key_paths_split() {
        assert_eq!(
            parse_key("outputs[1].path"),
            vec![
                Seg::Key("outputs".into()),
                Seg::Index(1),
                Seg::Key("path".into())
            ]
        );
    }

    #[test]
    fn locate_finds_nested_keys_and_items() {
        let t = "model: m.onnx\noutputs:\n  - format: qdq\n    path: a.onnx\n  - format: qlinear\n    path: b.onnx\nquantization:\n  per_channel: yes\n";
        assert_eq!(locate(t, &parse_key("outputs[1].path")), Some((6, 11)));
        assert_eq!(locate(t, &parse_key("outputs[0].format")), Some((3, 13)));
        assert_eq!(
            locate(t, &parse_key("quantization.per_channel")),
            Some((8, 16))
        );
        // Sequence items at the parent's indentation.
        let t2 = "outputs:\n- format: qdq\n  path: a.onnx\n";
        assert_eq!(locate(t2, &parse_key("outputs[0].path")), Some((3, 9)));
        // Missing keys give the deepest found part.
        assert_eq!(locate(t, &parse_key("quantization.exclude")), Some((7, 1)));
    }

    #[test]
    fn key_at_names_the_key_of_a_line() {
        let t = "model: m.onnx\ndata:\n  calibration:\n    path: c.npy\n   samples: 3\noutputs:\n  - format: qdq\n    path: a.onnx\n  - format: qlinear\n    options:\n      matmul: false\n";
        assert_eq!(key_at(t, 1).as_deref(), Some("model"));
        assert_eq!(key_at(t, 4).as_deref(), Some("data.calibration.path"));
        assert_eq!(key_at(t, 5).as_deref(), Some("data.calibration.samples"));
        assert_eq!(key_at(t, 7).as_deref(), Some("outputs[0].format"));
        assert_eq!(key_at(t, 8).as_deref(), Some("outputs[0].path"));
        assert_eq!(key_at(t, 9).as_deref(), Some("outputs[1].format"));
        assert_eq!(key_at(t, 11).as_deref(), Some("outputs[1].options.matmul"));
        let t2 = "outputs:\n- format: qdq\n  path: a\n- format: x\n";
        assert_eq!(key_at(t2, 3).as_deref(), Some("outputs[0].path"));
        assert_eq!(key_at(t2, 4).as_deref(), Some("outputs[1].format"));
        let t3 = "preprocess:\n  - fold_batchnorm\n  - name: fold_constants\n    options:\n      max_elements: 3\n";
        assert_eq!(key_at(t3, 2).as_deref(), Some("preprocess[0]"));
        assert_eq!(
            key_at(t3, 5).as_deref(),
            Some("preprocess[1].options.max_elements")
        );
    }

    #[test]
    fn suggestions_are_close_names_only() {
        assert_eq!(suggest("methd", &["method", "mode"]), Some("method"));
        assert_eq!(
            suggest("per_chanel", &["per_channel", "reduce_range"]),
            Some("per_channel")
        );
        assert_eq!(suggest("zzzzzz", &["method", "mode"]), None);
    }
}
