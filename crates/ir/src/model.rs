//! The model: a main graph with its opset imports and model-level metadata, plus the parts qtool
//! carries without interpreting (functions, training info) kept encoded.

use crate::attr::Opaque;
use crate::graph::Graph;
use crate::ops::normalize_domain;

/// An `opset_import` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpsetId {
    /// The domain as written (`None`: absent, meaning the default domain).
    pub domain: Option<String>,
    pub version: Option<i64>,
}

/// A model-local function, kept encoded; its identity is decoded for reports.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionInfo {
    pub domain: String,
    pub name: String,
    pub overload: Option<String>,
    pub encoded: Opaque,
}

/// A whole ONNX model.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Model {
    pub ir_version: Option<i64>,
    pub opset_import: Vec<OpsetId>,
    pub producer_name: Option<String>,
    pub producer_version: Option<String>,
    pub domain: Option<String>,
    pub model_version: Option<i64>,
    pub doc_string: Option<String>,
    pub graph: Graph,
    pub metadata_props: Vec<(String, String)>,
    pub functions: Vec<FunctionInfo>,
    pub training_info: Vec<Opaque>,
    /// ModelProto fields qtool does not model (e.g. device configurations), kept encoded.
    pub extra: Vec<Opaque>,
}

impl Model {
    /// The imported version of `domain` (`""` and `ai.onnx` are the same domain).
    pub fn opset(&self, domain: &str) -> Option<i64> {
        let d = normalize_domain(domain);
        self.opset_import
            .iter()
            .find(|o| normalize_domain(o.domain.as_deref().unwrap_or("")) == d)
            .and_then(|o| o.version)
    }

    /// The default-domain opset (ONNX's), or 0 if the model imports none.
    pub fn onnx_opset(&self) -> i64 {
        self.opset("").unwrap_or(0)
    }

    /// Sets the imported version of `domain`, adding the import if missing.
    pub fn set_opset(&mut self, domain: &str, version: i64) {
        let d = normalize_domain(domain);
        match self
            .opset_import
            .iter_mut()
            .find(|o| normalize_domain(o.domain.as_deref().unwrap_or("")) == d)
        {
            Some(o) => o.version = Some(version),
            None => self.opset_import.push(OpsetId {
                domain: Some(d.to_string()),
                version: Some(version),
            }),
        }
    }
}
