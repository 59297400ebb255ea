//! Graph passes over qtool's IR: the [`Pass`] trait, its report (rewrites and skips are data, not
//! errors), the one [`registry`] table that names every pass with its strict options, and the passes
//! themselves, one module each.
//!
//! Passes never read files or environment variables: everything they need comes in through their
//! options (deserialized strictly, unknown keys rejected) and the [`PassCx`] (e.g. calibration ranges).

mod dead_code;
mod fold_batchnorm;
mod fold_constants;
mod insert_qdq;
mod qdq_to_integer;
mod qdq_to_qlinear;
mod qops_to_qdq;
mod quantize_dynamic;
mod remove_identity;
mod upgrade_opset;
mod util;

#[cfg(test)]
mod testing;

pub use dead_code::{EliminateDeadCode, EliminateDeadCodeOptions};
pub use fold_batchnorm::{FoldBatchNorm, FoldBatchNormOptions};
pub use fold_constants::{FoldConstants, FoldConstantsOptions};
pub use insert_qdq::{
    ActivationScheme, InsertQdq, InsertQdqOptions, TensorOverride, WeightScheme,
    bias_weight_scale_adjust,
};
pub use qdq_to_integer::{QdqToInteger, QdqToIntegerOptions};
pub use qdq_to_qlinear::{QdqToQLinear, QdqToQLinearOptions};
pub use qops_to_qdq::{QopsToQdq, QopsToQdqOptions};
pub use quantize_dynamic::{QuantizeDynamic, QuantizeDynamicOptions};
pub use remove_identity::{RemoveIdentity, RemoveIdentityOptions};
pub use upgrade_opset::{UpgradeOpset, UpgradeOpsetOptions};

use qtool_ir::{GraphError, Model};
use std::collections::BTreeMap;
use std::fmt;

/// Calibrated real ranges `(min, max)` of activation tensors, by tensor name (what the calibration
/// crate produces). Per-channel activation ranges are not modelled yet.
pub type Ranges = BTreeMap<String, (f32, f32)>;

/// What a pass sees besides the model and its own options.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassCx<'a> {
    /// Calibration ranges (needed by `insert_qdq`).
    pub ranges: Option<&'a Ranges>,
}

/// One node a pass rewrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrite {
    /// The node's name (or `#<id>` when it has none).
    pub node: String,
    /// What was done, in words.
    pub what: String,
}

/// One node a pass looked at and left alone, with why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    pub node: String,
    pub op_type: String,
    pub reason: String,
}

/// What a pass did: rewrites and skips, as data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub rewritten: Vec<Rewrite>,
    pub skipped: Vec<Skip>,
}

impl PassReport {
    pub(crate) fn rewrite(&mut self, node: impl Into<String>, what: impl Into<String>) {
        self.rewritten.push(Rewrite {
            node: node.into(),
            what: what.into(),
        });
    }
    pub(crate) fn skip(
        &mut self,
        node: impl Into<String>,
        op_type: impl Into<String>,
        reason: impl Into<String>,
    ) {
        self.skipped.push(Skip {
            node: node.into(),
            op_type: op_type.into(),
            reason: reason.into(),
        });
    }
    /// Appends another report (e.g. of a pass run from inside this one).
    pub fn extend(&mut self, other: PassReport) {
        self.rewritten.extend(other.rewritten);
        self.skipped.extend(other.skipped);
    }
}

impl fmt::Display for PassReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.rewritten {
            writeln!(f, "rewrote {}: {}", r.node, r.what)?;
        }
        for s in &self.skipped {
            writeln!(f, "skipped {} ({}): {}", s.node, s.op_type, s.reason)?;
        }
        Ok(())
    }
}

/// Errors of passes: bad configuration, or a model the pass refuses to change (it is then left as it
/// was or the caller must discard it; passes never leave an invalid graph behind on success).
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("unknown pass '{0}'")]
    UnknownPass(String),
    #[error("pass '{pass}': invalid options: {message}")]
    InvalidOptions { pass: &'static str, message: String },
    #[error("pass '{pass}': cannot convert node '{node}' ({op_type}): {reason}")]
    Unsupported {
        pass: &'static str,
        node: String,
        op_type: String,
        reason: String,
    },
    #[error("pass '{pass}': {message}")]
    Failed { pass: &'static str, message: String },
    #[error("pass '{pass}': graph error: {source}")]
    Graph {
        pass: &'static str,
        #[source]
        source: GraphError,
    },
}

/// A graph pass.
pub trait Pass {
    /// The pass's name as in the [`registry`].
    fn name(&self) -> &'static str;
    /// Runs the pass on `model`. On success the graph is valid (topologically ordered).
    fn run(&self, model: &mut Model, cx: &PassCx) -> Result<PassReport, PassError>;
}

/// Builds a pass from its options (`null` means all defaults).
pub type PassFactory = fn(&serde_json::Value) -> Result<Box<dyn Pass>, PassError>;

fn options<T: serde::de::DeserializeOwned + Default>(
    pass: &'static str,
    v: &serde_json::Value,
) -> Result<T, PassError> {
    if v.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(v.clone()).map_err(|e| PassError::InvalidOptions {
        pass,
        message: e.to_string(),
    })
}

macro_rules! registry_table {
    ($( $name:literal => $pass:ident ( $opts:ident ) ),* $(,)?) => {
        /// Every pass, by name, with the function that builds it from its options.
        pub fn registry() -> &'static [(&'static str, PassFactory)] {
            &[ $( ($name, |v| Ok(Box::new($pass::new(options::<$opts>($name, v)?)?) as Box<dyn Pass>)), )* ]
        }
    };
}

registry_table! {
    "fold_constants" => FoldConstants(FoldConstantsOptions),
    "fold_batchnorm" => FoldBatchNorm(FoldBatchNormOptions),
    "remove_identity" => RemoveIdentity(RemoveIdentityOptions),
    "eliminate_dead_code" => EliminateDeadCode(EliminateDeadCodeOptions),
    "upgrade_opset" => UpgradeOpset(UpgradeOpsetOptions),
    "insert_qdq" => InsertQdq(InsertQdqOptions),
    "qdq_to_qlinear" => QdqToQLinear(QdqToQLinearOptions),
    "qdq_to_integer" => QdqToInteger(QdqToIntegerOptions),
    "quantize_dynamic" => QuantizeDynamic(QuantizeDynamicOptions),
    "qops_to_qdq" => QopsToQdq(QopsToQdqOptions),
}

/// Builds the pass named `name` from its options (`null` for the defaults).
pub fn build(name: &str, options: &serde_json::Value) -> Result<Box<dyn Pass>, PassError> {
    let (_, f) = registry()
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| PassError::UnknownPass(name.to_string()))?;
    f(options)
}

/// Runs passes in order, validating the graph after each one when `validate` is set.
pub fn run_passes(
    passes: &[Box<dyn Pass>],
    model: &mut Model,
    cx: &PassCx,
    validate: bool,
) -> Result<Vec<(&'static str, PassReport)>, PassError> {
    let mut out = Vec::new();
    for p in passes {
        let r = p.run(model, cx)?;
        if validate {
            model.graph.validate().map_err(|source| PassError::Graph {
                pass: p.name(),
                source,
            })?;
        }
        out.push((p.name(), r));
    }
    Ok(out)
}
