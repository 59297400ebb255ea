//! Value types as ONNX declares them (tensor, sparse tensor, sequence, map, optional) with symbolic
//! dimensions, kept losslessly (denotations included), and the inferred facts of shape inference.

use qtool_tensor::DType;

/// One dimension of a declared shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DimValue {
    /// A fixed size.
    Known(i64),
    /// A named symbolic size (`dim_param`), e.g. `batch`.
    Param(String),
    /// Neither value nor name given.
    Unknown,
}

/// A declared dimension with its optional denotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dim {
    pub value: DimValue,
    pub denotation: Option<String>,
}

impl Dim {
    pub fn known(v: i64) -> Dim {
        Dim {
            value: DimValue::Known(v),
            denotation: None,
        }
    }
    pub fn param(p: &str) -> Dim {
        Dim {
            value: DimValue::Param(p.to_string()),
            denotation: None,
        }
    }
}

/// Element type and optional shape of a tensor type (absent shape = unknown rank).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TensorType {
    /// `None` when the element type is not set (UNDEFINED).
    pub elem: Option<DType>,
    pub shape: Option<Vec<Dim>>,
}

/// What kind of value a type describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeKind {
    Tensor(TensorType),
    SparseTensor(TensorType),
    Sequence(Option<Box<Type>>),
    Map {
        key: Option<DType>,
        value: Option<Box<Type>>,
    },
    Optional(Option<Box<Type>>),
    /// No `value` was set in the type.
    Unset,
}

/// A declared ONNX type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Type {
    pub kind: TypeKind,
    pub denotation: Option<String>,
}

impl Type {
    /// A tensor type with a fully known shape.
    pub fn tensor(elem: DType, shape: &[i64]) -> Type {
        Type {
            kind: TypeKind::Tensor(TensorType {
                elem: Some(elem),
                shape: Some(shape.iter().map(|&d| Dim::known(d)).collect()),
            }),
            denotation: None,
        }
    }

    /// The tensor type, if this is a (dense) tensor.
    pub fn as_tensor(&self) -> Option<&TensorType> {
        match &self.kind {
            TypeKind::Tensor(t) => Some(t),
            _ => None,
        }
    }
}

/// A declared value: its type plus documentation, as in a `ValueInfoProto`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ValueInfo {
    pub ty: Option<Type>,
    pub doc_string: Option<String>,
    pub metadata_props: Vec<(String, String)>,
}

impl ValueInfo {
    pub fn of_type(ty: Type) -> ValueInfo {
        ValueInfo {
            ty: Some(ty),
            ..Default::default()
        }
    }
}

/// What shape inference knows about a value at run time: element type and dimensions.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Fact {
    pub dtype: Option<DType>,
    /// `None`: unknown rank.
    pub shape: Option<Vec<DimValue>>,
}

impl Fact {
    pub fn new(dtype: DType, shape: &[usize]) -> Fact {
        Fact {
            dtype: Some(dtype),
            shape: Some(shape.iter().map(|&d| DimValue::Known(d as i64)).collect()),
        }
    }

    /// The static shape, if every dimension is known.
    pub fn static_shape(&self) -> Option<Vec<usize>> {
        self.shape
            .as_ref()?
            .iter()
            .map(|d| match d {
                DimValue::Known(v) if *v >= 0 => Some(*v as usize),
                _ => None,
            })
            .collect()
    }

    /// Builds the fact a declared tensor type gives.
    pub fn from_type(ty: &Type) -> Fact {
        match ty.as_tensor() {
            Some(t) => Fact {
                dtype: t.elem,
                shape: t
                    .shape
                    .as_ref()
                    .map(|s| s.iter().map(|d| d.value.clone()).collect()),
            },
            None => Fact::default(),
        }
    }
}
