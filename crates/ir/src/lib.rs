//! qtool's graph IR: a model and its graph of typed ops over named values, with the rewrite API that
//! passes use, validation, and a deterministic text dump. Knows nothing of protobuf or files.

mod attr;
mod dump;
mod graph;
pub mod infer;
mod model;
pub mod ops;
mod types;

pub use attr::{
    AttrKind, AttrValue, Attribute, ExternalRef, Opaque, Storage, TensorBytes, TensorData,
};
pub use dump::fmt_tensor;
pub use graph::{Graph, GraphError, Node, NodeId, Value, ValueId};
pub use infer::{InferError, InferReport, infer_shapes};
pub use model::{FunctionInfo, Model, OpsetId};
pub use ops::Op;
pub use types::{Dim, DimValue, Fact, TensorType, Type, TypeKind, ValueInfo};
