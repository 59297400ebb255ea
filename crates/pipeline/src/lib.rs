//! qtool's library API: the operations the CLI offers (inspect, exec, and later the YAML pipeline),
//! built on the lower crates. Other tools can call these directly.

pub mod inspect;

pub use inspect::{InspectReport, QuantFormat, inspect};
pub use qtool_ir as ir;
pub use qtool_onnx as onnx;
