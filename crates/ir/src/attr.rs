//! Stored tensors (initializers and tensor attributes) and node attributes, kept losslessly: storage
//! form (raw, typed, external), presence of optional fields and documentation all survive a round trip.

use crate::Graph;
use crate::types::Type;
use qtool_tensor::{DType, Tensor, TensorError, shape_from_dims};
use std::sync::Arc;

/// A protobuf message this crate does not model, kept as its encoded bytes (sparse tensors,
/// quantization annotations, functions, training info). Only the ONNX crate decodes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opaque(pub Vec<u8>);

/// Where an external tensor's bytes live, as its `external_data` entries say.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ExternalRef {
    /// The entries in their original order (`location`, `offset`, `length`, `checksum`, ...).
    pub entries: Vec<(String, String)>,
}

impl ExternalRef {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    pub fn location(&self) -> Option<&str> {
        self.get("location")
    }
}

/// How a tensor was (or will be) serialized.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Storage {
    /// `raw_data` bytes (the default for new tensors).
    #[default]
    Raw,
    /// The typed repeated field of the element type (`float_data`, `int32_data`, ...).
    Typed,
    /// `data_location = EXTERNAL`: bytes in a file beside the model.
    External(ExternalRef),
}

/// A tensor's element data: packed little-endian bytes (ONNX `raw_data` layout) or strings.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorBytes {
    Raw(Arc<[u8]>),
    Strings(Vec<Vec<u8>>),
}

/// A stored tensor: an initializer or a tensor-valued attribute.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorData {
    /// The tensor's own `name` field (for initializers, the value's name is authoritative).
    pub name: Option<String>,
    pub dtype: DType,
    pub dims: Vec<i64>,
    pub data: TensorBytes,
    pub storage: Storage,
    pub doc_string: Option<String>,
    /// `segment` (begin, end), when present.
    pub segment: Option<(Option<i64>, Option<i64>)>,
    pub metadata_props: Vec<(String, String)>,
    /// `data_location` was written explicitly as DEFAULT.
    pub explicit_default_location: bool,
}

impl TensorData {
    /// A new raw-stored tensor from a runtime tensor.
    pub fn from_tensor(t: &Tensor) -> TensorData {
        let data = match t {
            Tensor::String(a) => {
                TensorBytes::Strings(a.iter().map(|s| s.as_bytes().to_vec()).collect())
            }
            other => TensorBytes::Raw(
                other
                    .to_le_bytes()
                    .expect("non-string tensors have bytes")
                    .into(),
            ),
        };
        TensorData {
            name: None,
            dtype: t.dtype(),
            dims: t.shape().iter().map(|&d| d as i64).collect(),
            data,
            storage: if t.dtype() == DType::String {
                Storage::Typed
            } else {
                Storage::Raw
            },
            doc_string: None,
            segment: None,
            metadata_props: Vec::new(),
            explicit_default_location: false,
        }
    }

    /// Number of elements per `dims` (negative dims count as 0).
    pub fn numel(&self) -> usize {
        self.dims.iter().map(|&d| d.max(0) as usize).product()
    }

    /// Size of the element data in bytes (strings: total string bytes).
    pub fn byte_size(&self) -> usize {
        match &self.data {
            TensorBytes::Raw(b) => b.len(),
            TensorBytes::Strings(s) => s.iter().map(|x| x.len()).sum(),
        }
    }

    /// The runtime tensor (copies the data).
    pub fn to_tensor(&self) -> Result<Tensor, TensorError> {
        let shape = shape_from_dims(&self.dims)?;
        match &self.data {
            TensorBytes::Raw(b) => Tensor::from_le_bytes(self.dtype, &shape, b),
            TensorBytes::Strings(s) => Tensor::from_vec(
                &shape,
                s.iter()
                    .map(|x| String::from_utf8_lossy(x).into_owned())
                    .collect::<Vec<String>>(),
            ),
        }
    }

    /// The raw bytes, if this is not a string tensor.
    pub fn raw(&self) -> Option<&[u8]> {
        match &self.data {
            TensorBytes::Raw(b) => Some(b),
            TensorBytes::Strings(_) => None,
        }
    }
}

/// The kind of an attribute, numbered as ONNX's `AttributeType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrKind {
    Float = 1,
    Int = 2,
    String = 3,
    Tensor = 4,
    Graph = 5,
    Floats = 6,
    Ints = 7,
    Strings = 8,
    Tensors = 9,
    Graphs = 10,
    SparseTensor = 11,
    SparseTensors = 12,
    TypeProto = 13,
    TypeProtos = 14,
}

/// An attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Float(f32),
    Int(i64),
    String(Vec<u8>),
    Tensor(TensorData),
    Graph(Box<Graph>),
    SparseTensor(Opaque),
    TypeProto(Type),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<Vec<u8>>),
    Tensors(Vec<TensorData>),
    Graphs(Vec<Graph>),
    SparseTensors(Vec<Opaque>),
    TypeProtos(Vec<Type>),
    /// No value (an attribute of a function body that refers to the caller's attribute).
    None,
}

impl AttrValue {
    pub fn kind(&self) -> Option<AttrKind> {
        Some(match self {
            AttrValue::Float(_) => AttrKind::Float,
            AttrValue::Int(_) => AttrKind::Int,
            AttrValue::String(_) => AttrKind::String,
            AttrValue::Tensor(_) => AttrKind::Tensor,
            AttrValue::Graph(_) => AttrKind::Graph,
            AttrValue::SparseTensor(_) => AttrKind::SparseTensor,
            AttrValue::TypeProto(_) => AttrKind::TypeProto,
            AttrValue::Floats(_) => AttrKind::Floats,
            AttrValue::Ints(_) => AttrKind::Ints,
            AttrValue::Strings(_) => AttrKind::Strings,
            AttrValue::Tensors(_) => AttrKind::Tensors,
            AttrValue::Graphs(_) => AttrKind::Graphs,
            AttrValue::SparseTensors(_) => AttrKind::SparseTensors,
            AttrValue::TypeProtos(_) => AttrKind::TypeProtos,
            AttrValue::None => return None,
        })
    }
}

/// A node attribute. Besides name and value it keeps what a lossless round trip needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub value: AttrValue,
    pub doc_string: Option<String>,
    /// `ref_attr_name` (inside function bodies).
    pub ref_attr_name: Option<String>,
    /// The `type` field as written (`None`: absent). New attributes set it from the value.
    pub declared_type: Option<i32>,
    /// For scalar kinds (float, int, string): whether the scalar field itself was present
    /// (a proto3 writer may omit a zero value).
    pub scalar_present: bool,
}

impl Attribute {
    /// A new attribute with the type field set from the value.
    pub fn new(name: &str, value: AttrValue) -> Attribute {
        Attribute {
            name: name.to_string(),
            declared_type: value.kind().map(|k| k as i32),
            value,
            doc_string: None,
            ref_attr_name: None,
            scalar_present: true,
        }
    }
}
