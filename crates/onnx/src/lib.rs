//! ONNX import and export: `ModelProto` <-> [`qtool_ir::Model`], losslessly (what the IR does not
//! model is kept encoded and written back), with external data read at load (only each tensor's
//! byte range, from files inside the model's directory) and written at save (atomically, never over
//! the input). This is the only crate of qtool that knows protobuf.
//!
//! Entry points: [`load`] / [`decode`] and [`save`] / [`encode`] for models, [`read_tensor_pb`] /
//! [`write_tensor_pb`] for single tensors (ONNX test-data `input_N.pb` files).

mod error;
mod export;
mod import;
mod save;
mod tensor;

pub use error::{LoadError, SaveError};
pub use export::model_to_proto;
pub use import::model_from_proto;
pub use save::{AUTO_THRESHOLD, ExternalPolicy, PROTO_LIMIT, SaveOptions, save};

use prost::Message;
use qtool_ir::{Model, TensorData};
use qtool_onnx_proto::onnx::{ModelProto, TensorProto};
use std::path::Path;

/// The prost types this crate converts from and to (for tests and tools that need the raw messages).
pub use qtool_onnx_proto::onnx as proto;

/// Loads a model file; external data is read from files next to it.
pub fn load(path: impl AsRef<Path>) -> Result<Model, LoadError> {
    let path = path.as_ref();
    let io = |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_dir() {
        return Err(LoadError::IsADirectory(path.to_path_buf()));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    decode_as(&bytes, Some(base), &format!("'{}'", path.display()))
}

/// Decodes a model from its protobuf bytes. External data is resolved against `base_dir`; without
/// one, a model with external data is an error.
pub fn decode(bytes: &[u8], base_dir: Option<&Path>) -> Result<Model, LoadError> {
    decode_as(bytes, base_dir, "the model")
}

fn decode_as(bytes: &[u8], base_dir: Option<&Path>, what: &str) -> Result<Model, LoadError> {
    let proto = ModelProto::decode(bytes).map_err(|source| LoadError::Decode {
        what: what.to_string(),
        source,
    })?;
    model_from_proto(proto, base_dir)
}

/// Encodes a model. Tensors with external storage are written as references to their files (use
/// [`save`] to write the files too).
pub fn encode(model: &Model) -> Vec<u8> {
    model_to_proto(model).encode_to_vec()
}

/// Reads a single serialized `TensorProto` (an ONNX test-data `input_N.pb` file).
pub fn read_tensor_pb(bytes: &[u8]) -> Result<TensorData, LoadError> {
    let t = TensorProto::decode(bytes).map_err(|source| LoadError::Decode {
        what: "the tensor".to_string(),
        source,
    })?;
    let label = t.name.clone().unwrap_or_default();
    tensor::tensor_from_proto(
        t,
        &tensor::TensorCx {
            base_dir: None,
            context: "",
        },
        &label,
    )
}

/// Serializes a single tensor as a `TensorProto` (as its storage says; external storage is written
/// as a reference).
pub fn write_tensor_pb(t: &TensorData) -> Vec<u8> {
    tensor::tensor_to_proto(t, t.name.clone(), tensor::DataOut::AsIs).encode_to_vec()
}
