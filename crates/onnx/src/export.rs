//! [`Model`] -> `ModelProto`: the inverse of the import. Where each tensor's data goes (inline as
//! its storage says, omitted for size estimation, or into an external file) is decided by a
//! placement callback, so that the same walk serves `encode` and `save`.

use crate::tensor::{DataOut, inline_data_len, pairs_to_proto, raw_bytes, tensor_to_proto};
use prost::Message;
use qtool_ir::{
    AttrValue, Attribute, Dim, DimValue, Graph, Model, Node, NodeId, Opaque, TensorData, Type,
    TypeKind, ValueInfo,
};
use qtool_onnx_proto::onnx::{
    AttributeProto, FunctionProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    SparseTensorProto, TensorAnnotation, TensorProto, TensorShapeProto, TrainingInfoProto,
    TypeProto, ValueInfoProto, type_proto,
};
use std::sync::Arc;

/// Where in the model a tensor sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Site {
    Initializer,
    Attribute,
}

/// Where a tensor's data goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// As its storage says (an `External` storage is written as a reference only).
    AsIs,
    /// Inline: as its storage says, but `External` storage becomes `raw_data`.
    Inline,
    /// Left out (size estimation); its inline size is added to [`Exporter::omitted`].
    Omit,
    /// Into the external file `location` (relative to the destination directory).
    External(String),
}

/// An external-data chunk to write: the tensor's bytes into `location`.
pub(crate) struct ExtWrite {
    pub location: String,
    pub tensor: String,
    pub bytes: Arc<[u8]>,
    /// The entries as they will be written, before offset/length are filled in.
    pub entries: Vec<(String, String)>,
}

/// The key of the temporary entry that ties a `TensorProto` to its [`ExtWrite`].
pub(crate) const MARKER: &str = "__qtool_external_write";

pub(crate) struct Exporter<F: FnMut(&TensorData, &str, Site) -> Placement> {
    place: F,
    pub writes: Vec<ExtWrite>,
    /// Inline data bytes of omitted tensors (with slack for length prefixes).
    pub omitted: u64,
}

/// Converts a model with every tensor written as its storage says (external tensors as references).
pub fn model_to_proto(model: &Model) -> ModelProto {
    Exporter::new(|_: &TensorData, _: &str, _: Site| Placement::AsIs).model(model)
}

/// Decodes an opaque message kept by the import; a corrupt one (never produced by the import) is
/// dropped with a warning rather than failing the export.
fn decode_opaque<M: Message + Default>(o: &Opaque, what: &str) -> Option<M> {
    match M::decode(&o.0[..]) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(what, error = %e, "dropping an opaque part that does not decode");
            None
        }
    }
}

impl<F: FnMut(&TensorData, &str, Site) -> Placement> Exporter<F> {
    pub(crate) fn new(place: F) -> Exporter<F> {
        Exporter {
            place,
            writes: Vec::new(),
            omitted: 0,
        }
    }

    pub(crate) fn model(&mut self, m: &Model) -> ModelProto {
        let mut p = ModelProto {
            ir_version: m.ir_version,
            opset_import: m
                .opset_import
                .iter()
                .map(|o| OperatorSetIdProto {
                    domain: o.domain.clone(),
                    version: o.version,
                })
                .collect(),
            producer_name: m.producer_name.clone(),
            producer_version: m.producer_version.clone(),
            domain: m.domain.clone(),
            model_version: m.model_version,
            doc_string: m.doc_string.clone(),
            graph: Some(self.graph(&m.graph)),
            metadata_props: pairs_to_proto(&m.metadata_props),
            training_info: m
                .training_info
                .iter()
                .filter_map(|t| decode_opaque::<TrainingInfoProto>(t, "training_info"))
                .collect(),
            functions: m
                .functions
                .iter()
                .filter_map(|f| decode_opaque::<FunctionProto>(&f.encoded, "function"))
                .collect(),
            configuration: Vec::new(),
        };
        for e in &m.extra {
            if let Err(err) = p.merge(&e.0[..]) {
                tracing::warn!(error = %err, "dropping an extra ModelProto part that does not decode");
            }
        }
        p
    }

    fn graph(&mut self, g: &Graph) -> GraphProto {
        let vi = |list: &[(qtool_ir::ValueId, ValueInfo)]| -> Vec<ValueInfoProto> {
            list.iter()
                .map(|(v, info)| value_info(g.value_name(*v), info))
                .collect()
        };
        let input = vi(&g.inputs);
        let output = vi(&g.outputs);
        let value_info = vi(&g.value_info);
        let mut initializer = Vec::with_capacity(g.initializers.len());
        for &v in &g.initializers {
            if let Some(td) = g.initializer(v) {
                initializer.push(self.tensor(
                    td,
                    Some(g.value_name(v).to_string()),
                    Site::Initializer,
                ));
            }
        }
        let node = g
            .node_ids()
            .iter()
            .map(|&n| self.node(g, n, g.node(n)))
            .collect();
        GraphProto {
            node,
            name: g.name.clone(),
            initializer,
            sparse_initializer: g
                .sparse_initializers
                .iter()
                .filter_map(|s| decode_opaque::<SparseTensorProto>(s, "sparse_initializer"))
                .collect(),
            doc_string: g.doc_string.clone(),
            input,
            output,
            value_info,
            quantization_annotation: g
                .quantization_annotation
                .iter()
                .filter_map(|q| decode_opaque::<TensorAnnotation>(q, "quantization_annotation"))
                .collect(),
            metadata_props: pairs_to_proto(&g.metadata_props),
        }
    }

    fn node(&mut self, g: &Graph, _id: NodeId, n: &Node) -> NodeProto {
        let name_of = |v: &Option<qtool_ir::ValueId>| {
            v.map(|v| g.value_name(v).to_string()).unwrap_or_default()
        };
        let mut p = NodeProto {
            input: n.inputs().iter().map(name_of).collect(),
            output: n.outputs().iter().map(name_of).collect(),
            name: n.name.clone(),
            op_type: Some(n.op().op_type().to_string()),
            domain: n.domain.clone(),
            overload: n.overload.clone(),
            attribute: n.attrs().iter().map(|a| self.attribute(a)).collect(),
            doc_string: n.doc_string.clone(),
            metadata_props: pairs_to_proto(&n.metadata_props),
            device_configurations: Vec::new(),
        };
        for e in &n.extra {
            if let Err(err) = p.merge(&e.0[..]) {
                tracing::warn!(error = %err, "dropping an extra NodeProto part that does not decode");
            }
        }
        p
    }

    fn attribute(&mut self, a: &Attribute) -> AttributeProto {
        let mut p = AttributeProto {
            name: Some(a.name.clone()),
            ref_attr_name: a.ref_attr_name.clone(),
            doc_string: a.doc_string.clone(),
            r#type: a.declared_type,
            ..Default::default()
        };
        match &a.value {
            AttrValue::Float(x) => p.f = a.scalar_present.then_some(*x),
            AttrValue::Int(x) => p.i = a.scalar_present.then_some(*x),
            AttrValue::String(x) => p.s = a.scalar_present.then(|| x.clone()),
            AttrValue::Tensor(t) => p.t = Some(self.tensor(t, t.name.clone(), Site::Attribute)),
            AttrValue::Graph(g) => p.g = Some(self.graph(g)),
            AttrValue::SparseTensor(s) => {
                p.sparse_tensor = decode_opaque(s, "sparse tensor attribute")
            }
            AttrValue::TypeProto(t) => p.tp = Some(type_to_proto(t)),
            AttrValue::Floats(x) => p.floats = x.clone(),
            AttrValue::Ints(x) => p.ints = x.clone(),
            AttrValue::Strings(x) => p.strings = x.clone(),
            AttrValue::Tensors(ts) => {
                p.tensors = ts
                    .iter()
                    .map(|t| self.tensor(t, t.name.clone(), Site::Attribute))
                    .collect()
            }
            AttrValue::Graphs(gs) => p.graphs = gs.iter().map(|g| self.graph(g)).collect(),
            AttrValue::SparseTensors(ss) => {
                p.sparse_tensors = ss
                    .iter()
                    .filter_map(|s| decode_opaque(s, "sparse tensor attribute"))
                    .collect()
            }
            AttrValue::TypeProtos(ts) => p.type_protos = ts.iter().map(type_to_proto).collect(),
            AttrValue::None => {}
        }
        p
    }

    fn tensor(&mut self, td: &TensorData, name: Option<String>, site: Site) -> TensorProto {
        let label = name.clone().unwrap_or_default();
        match (self.place)(td, &label, site) {
            Placement::AsIs => tensor_to_proto(td, name, DataOut::AsIs),
            Placement::Inline => tensor_to_proto(td, name, DataOut::Inline),
            Placement::Omit => {
                self.omitted += inline_data_len(td) as u64 + 16;
                tensor_to_proto(td, name, DataOut::Omit)
            }
            Placement::External(location) => {
                let Some(bytes) = raw_bytes(td) else {
                    return tensor_to_proto(td, name, DataOut::AsIs);
                };
                let mut entries: Vec<(String, String)> = match &td.storage {
                    qtool_ir::Storage::External(ext) => ext.entries.clone(),
                    _ => Vec::new(),
                };
                match entries.iter_mut().find(|(k, _)| k == "location") {
                    Some(e) => e.1 = location.clone(),
                    None => entries.insert(0, ("location".to_string(), location.clone())),
                }
                let index = self.writes.len();
                let mut marked = entries.clone();
                marked.push((MARKER.to_string(), index.to_string()));
                self.writes.push(ExtWrite {
                    location,
                    tensor: label,
                    bytes,
                    entries,
                });
                tensor_to_proto(td, name, DataOut::External(&marked))
            }
        }
    }
}

fn value_info(name: &str, info: &ValueInfo) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: info.ty.as_ref().map(type_to_proto),
        doc_string: info.doc_string.clone(),
        metadata_props: pairs_to_proto(&info.metadata_props),
    }
}

fn elem_code(e: Option<qtool_tensor::DType>) -> Option<i32> {
    // An unset element type is written as UNDEFINED (0), as ONNX's helpers do.
    Some(e.map(|d| d.code()).unwrap_or(0))
}

fn shape_to_proto(s: &[Dim]) -> TensorShapeProto {
    use qtool_onnx_proto::onnx::tensor_shape_proto::{Dimension, dimension::Value};
    TensorShapeProto {
        dim: s
            .iter()
            .map(|d| Dimension {
                denotation: d.denotation.clone(),
                value: match &d.value {
                    DimValue::Known(v) => Some(Value::DimValue(*v)),
                    DimValue::Param(p) => Some(Value::DimParam(p.clone())),
                    DimValue::Unknown => None,
                },
            })
            .collect(),
    }
}

pub(crate) fn type_to_proto(t: &Type) -> TypeProto {
    let boxed = |t: &Option<Box<Type>>| t.as_deref().map(|t| Box::new(type_to_proto(t)));
    let value = match &t.kind {
        TypeKind::Unset => None,
        TypeKind::Tensor(tt) => Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: elem_code(tt.elem),
            shape: tt.shape.as_deref().map(shape_to_proto),
        })),
        TypeKind::SparseTensor(tt) => Some(type_proto::Value::SparseTensorType(
            type_proto::SparseTensor {
                elem_type: elem_code(tt.elem),
                shape: tt.shape.as_deref().map(shape_to_proto),
            },
        )),
        TypeKind::Sequence(e) => Some(type_proto::Value::SequenceType(Box::new(
            type_proto::Sequence {
                elem_type: boxed(e),
            },
        ))),
        TypeKind::Optional(e) => Some(type_proto::Value::OptionalType(Box::new(
            type_proto::Optional {
                elem_type: boxed(e),
            },
        ))),
        TypeKind::Map { key, value } => {
            Some(type_proto::Value::MapType(Box::new(type_proto::Map {
                key_type: elem_code(*key),
                value_type: boxed(value),
            })))
        }
    };
    TypeProto {
        denotation: t.denotation.clone(),
        value,
    }
}

/// Visits every `TensorProto` of a graph that can carry external data (initializers and tensor
/// attributes, recursively through subgraphs).
pub(crate) fn for_each_tensor_mut(g: &mut GraphProto, f: &mut dyn FnMut(&mut TensorProto)) {
    for t in &mut g.initializer {
        f(t);
    }
    for n in &mut g.node {
        for a in &mut n.attribute {
            if let Some(t) = &mut a.t {
                f(t);
            }
            for t in &mut a.tensors {
                f(t);
            }
            if let Some(sub) = &mut a.g {
                for_each_tensor_mut(sub, f);
            }
            for sub in &mut a.graphs {
                for_each_tensor_mut(sub, f);
            }
        }
    }
}
