//! The errors of loading and saving models. Every message names what it is about: the file, and
//! where in the model (graph, node, attribute, tensor) the problem sits.

use std::path::PathBuf;

/// Why a model (or a tensor file) could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading a file failed.
    #[error("cannot read '{path}': {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The path names a directory.
    #[error("'{0}' is a directory, not an ONNX file")]
    IsADirectory(PathBuf),
    /// The bytes are not a valid protobuf message of the expected kind (truncated, corrupt, or not
    /// an ONNX file at all).
    #[error("{what} is not a valid ONNX protobuf message (truncated or corrupt?): {source}")]
    Decode {
        what: String,
        #[source]
        source: prost::DecodeError,
    },
    /// The model has no `graph`.
    #[error("the model has no graph")]
    MissingGraph,
    /// An enum field holds a value this crate does not know.
    #[error("{context}: unknown {what} {value}")]
    UnknownEnum {
        context: String,
        what: &'static str,
        value: i64,
    },
    /// A tensor's data does not agree with its type and dims, or mixes storage forms.
    #[error("{context}: {message}")]
    InvalidTensor { context: String, message: String },
    /// Something else in the model is malformed (a node without op type, a value without name,
    /// a duplicate graph input, an attribute without its value, ...).
    #[error("{context}: {message}")]
    Invalid { context: String, message: String },
    /// A tensor has external data but the model was decoded from bytes without a base directory.
    #[error(
        "{context}: tensor '{tensor}' has external data but no base directory was given to resolve '{location}'"
    )]
    ExternalNoBaseDir {
        context: String,
        tensor: String,
        location: String,
    },
    /// An external-data `location` is absolute or leaves the model's directory.
    #[error(
        "{context}: tensor '{tensor}': external data location '{location}' escapes the model's directory"
    )]
    ExternalEscapes {
        context: String,
        tensor: String,
        location: String,
    },
    /// The external data file cannot be opened or read.
    #[error("{context}: tensor '{tensor}': cannot read external data file '{file}': {source}")]
    ExternalIo {
        context: String,
        tensor: String,
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The `offset`/`length` entries point outside the external file.
    #[error(
        "{context}: tensor '{tensor}': external data range offset {offset} length {length} lies outside '{file}' ({file_len} bytes)"
    )]
    ExternalOutOfRange {
        context: String,
        tensor: String,
        file: PathBuf,
        offset: u64,
        length: u64,
        file_len: u64,
    },
    /// The external data length does not match the tensor's type and dims, or an entry is malformed.
    #[error("{context}: tensor '{tensor}': external data in '{file}': {message}")]
    ExternalInvalid {
        context: String,
        tensor: String,
        file: PathBuf,
        message: String,
    },
    /// Building the graph failed (e.g. two nodes produce the same value).
    #[error("{context}: {source}")]
    Graph {
        context: String,
        #[source]
        source: qtool_ir::GraphError,
    },
}

/// Why a model could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// Writing, syncing or renaming a file failed.
    #[error("cannot write '{path}': {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The destination is a directory.
    #[error("'{0}' is a directory; give a file name to save the model to")]
    IsADirectory(PathBuf),
    /// The destination is the model's source file; qtool never overwrites its input.
    #[error("refusing to overwrite the input model '{0}'; save to another path")]
    SameAsSource(PathBuf),
    /// An external data file to write is (or would replace) one the input model reads its data from.
    #[error(
        "refusing to overwrite '{path}', which the input model reads external data from; save to another directory or choose another external file name"
    )]
    WouldOverwriteSourceData { path: PathBuf },
    /// An external-data location to write is absolute or leaves the destination directory.
    #[error(
        "tensor '{tensor}': external data location '{location}' is absolute or escapes the destination directory"
    )]
    InvalidLocation { tensor: String, location: String },
    /// An external data file would be the model file itself.
    #[error("tensor '{tensor}': external data location '{location}' is the model file itself")]
    LocationIsModel { tensor: String, location: String },
    /// Even with initializers moved to external data, the protobuf exceeds the 2 GB limit.
    #[error(
        "the encoded model is {size} bytes, over the protobuf limit of {limit} bytes, even with initializers in external data"
    )]
    TooLarge { size: u64, limit: u64 },
}
