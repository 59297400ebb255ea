//! `ModelProto` -> [`Model`]: every field kept (what the IR does not model is kept encoded), node
//! order as written (no sorting; a graph that is not topologically sorted still imports), subgraphs
//! converted recursively with names they capture from enclosing graphs marked `outer` and recorded
//! as implicit inputs of the owning node.

use crate::error::LoadError;
use crate::tensor::{TensorCx, pairs_in, tensor_from_proto};
use prost::Message;
use qtool_ir::{
    AttrKind, AttrValue, Attribute, Dim, DimValue, Fact, FunctionInfo, Graph, Model, Node, Opaque,
    OpsetId, TensorType, Type, TypeKind, ValueId, ValueInfo,
};
use qtool_onnx_proto::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, TensorShapeProto, TypeProto, ValueInfoProto,
    type_proto,
};
use qtool_tensor::DType;
use std::collections::HashSet;
use std::path::Path;

/// Converts a decoded `ModelProto`; external data is resolved against `base_dir`.
pub fn model_from_proto(m: ModelProto, base_dir: Option<&Path>) -> Result<Model, LoadError> {
    let mut im = Importer {
        base_dir,
        path: Vec::new(),
    };
    let ModelProto {
        ir_version,
        opset_import,
        producer_name,
        producer_version,
        domain,
        model_version,
        doc_string,
        graph,
        metadata_props,
        training_info,
        functions,
        configuration,
    } = m;
    let graph = graph.ok_or(LoadError::MissingGraph)?;
    let (graph, _) = im.graph(graph, false)?;
    let functions = functions
        .into_iter()
        .map(|f| FunctionInfo {
            domain: f.domain.clone().unwrap_or_default(),
            name: f.name.clone().unwrap_or_default(),
            overload: f.overload.clone(),
            encoded: Opaque(f.encode_to_vec()),
        })
        .collect();
    let extra = configuration
        .into_iter()
        .map(|c| {
            Opaque(
                ModelProto {
                    configuration: vec![c],
                    ..Default::default()
                }
                .encode_to_vec(),
            )
        })
        .collect();
    Ok(Model {
        ir_version,
        opset_import: opset_import
            .into_iter()
            .map(|o| OpsetId {
                domain: o.domain,
                version: o.version,
            })
            .collect(),
        producer_name,
        producer_version,
        domain,
        model_version,
        doc_string,
        graph,
        metadata_props: pairs_in(metadata_props),
        functions,
        training_info: training_info
            .into_iter()
            .map(|t| Opaque(t.encode_to_vec()))
            .collect(),
        extra,
    })
}

struct Importer<'a> {
    base_dir: Option<&'a Path>,
    /// Breadcrumbs of where we are, for error messages.
    path: Vec<String>,
}

/// Marks a name captured from an enclosing graph (or, in the main graph, a name nothing defines).
fn use_name(g: &mut Graph, name: &str, is_sub: bool, captures: &mut Vec<String>) -> ValueId {
    if let Some(v) = g.find_value(name) {
        return v;
    }
    let v = g.value_or_add(name);
    if is_sub {
        g.value_mut(v).outer = true;
        captures.push(name.to_string());
    }
    v
}

impl Importer<'_> {
    fn context(&self) -> String {
        self.path.join(" > ")
    }

    fn invalid(&self, message: impl Into<String>) -> LoadError {
        LoadError::Invalid {
            context: self.context(),
            message: message.into(),
        }
    }

    /// Imports a graph; returns it and the names it captures from enclosing graphs (subgraphs
    /// only), in first-use order.
    fn graph(&mut self, gp: GraphProto, is_sub: bool) -> Result<(Graph, Vec<String>), LoadError> {
        let GraphProto {
            node,
            name,
            initializer,
            sparse_initializer,
            doc_string,
            input,
            output,
            value_info,
            quantization_annotation,
            metadata_props,
        } = gp;
        let label = name.clone().unwrap_or_default();
        self.path.push(if is_sub {
            format!("subgraph '{label}'")
        } else {
            format!("graph '{label}'")
        });
        let r = self.graph_body(
            node,
            name,
            initializer,
            sparse_initializer,
            doc_string,
            input,
            output,
            value_info,
            quantization_annotation,
            metadata_props,
            is_sub,
        );
        self.path.pop();
        r
    }

    fn graph_body(
        &mut self,
        nodes: Vec<NodeProto>,
        name: Option<String>,
        initializer: Vec<qtool_onnx_proto::onnx::TensorProto>,
        sparse_initializer: Vec<qtool_onnx_proto::onnx::SparseTensorProto>,
        doc_string: Option<String>,
        input: Vec<ValueInfoProto>,
        output: Vec<ValueInfoProto>,
        value_info: Vec<ValueInfoProto>,
        quantization_annotation: Vec<qtool_onnx_proto::onnx::TensorAnnotation>,
        metadata_props: Vec<qtool_onnx_proto::onnx::StringStringEntryProto>,
        is_sub: bool,
    ) -> Result<(Graph, Vec<String>), LoadError> {
        let mut g = Graph::default();
        g.name = name;
        g.doc_string = doc_string;
        g.metadata_props = pairs_in(metadata_props);
        let mut captures: Vec<String> = Vec::new();

        // Graph inputs.
        for (i, vi) in input.into_iter().enumerate() {
            let (name, info) = self.value_info(vi, &format!("graph input #{i}"))?;
            let v = g
                .add_value(&name)
                .map_err(|_| self.invalid(format!("graph input '{name}' is listed twice")))?;
            set_fact(&mut g, v, &info);
            g.inputs.push((v, info));
        }
        // Initializers (an initializer may share its name with a graph input).
        for (i, t) in initializer.into_iter().enumerate() {
            let name = match t.name.as_deref() {
                Some(n) if !n.is_empty() => n.to_string(),
                _ => return Err(self.invalid(format!("initializer #{i} has no name"))),
            };
            let cx = TensorCx {
                base_dir: self.base_dir,
                context: &self.context(),
            };
            let td = tensor_from_proto(t, &cx, &name)?;
            let v = g.value_or_add(&name);
            if g.initializer(v).is_some() {
                return Err(self.invalid(format!("initializer '{name}' is listed twice")));
            }
            g.set_initializer(v, td);
        }
        // Sparse initializers define names too; they are kept encoded.
        for s in sparse_initializer {
            if let Some(n) = s.values.as_ref().and_then(|v| v.name.as_deref())
                && !n.is_empty()
            {
                g.value_or_add(n);
            }
            g.sparse_initializers.push(Opaque(s.encode_to_vec()));
        }
        g.quantization_annotation = quantization_annotation
            .into_iter()
            .map(|q| Opaque(q.encode_to_vec()))
            .collect();
        // Every node output is defined in this graph, whatever the node order.
        for n in &nodes {
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                g.value_or_add(o);
            }
        }
        for (i, n) in nodes.into_iter().enumerate() {
            self.node(&mut g, n, i, is_sub, &mut captures)?;
        }
        for (i, vi) in output.into_iter().enumerate() {
            let (name, info) = self.value_info(vi, &format!("graph output #{i}"))?;
            let v = use_name(&mut g, &name, is_sub, &mut captures);
            set_fact(&mut g, v, &info);
            g.outputs.push((v, info));
        }
        for (i, vi) in value_info.into_iter().enumerate() {
            let (name, info) = self.value_info(vi, &format!("value_info #{i}"))?;
            let v = g.value_or_add(&name);
            set_fact(&mut g, v, &info);
            g.value_info.push((v, info));
        }
        Ok((g, captures))
    }

    fn node(
        &mut self,
        g: &mut Graph,
        n: NodeProto,
        index: usize,
        is_sub: bool,
        captures: &mut Vec<String>,
    ) -> Result<(), LoadError> {
        let NodeProto {
            input,
            output,
            name,
            op_type,
            domain,
            overload,
            attribute,
            doc_string,
            metadata_props,
            device_configurations,
        } = n;
        let label = match &name {
            Some(s) if !s.is_empty() => format!("node '{s}'"),
            _ => format!("node #{index}"),
        };
        self.path
            .push(format!("{label} ({})", op_type.as_deref().unwrap_or("?")));
        let r = (|| {
            let Some(op_type) = op_type else {
                return Err(self.invalid("the node has no op_type"));
            };
            let mut attrs = Vec::with_capacity(attribute.len());
            let mut implicit_names: Vec<String> = Vec::new();
            for a in attribute {
                attrs.push(self.attribute(a, &mut implicit_names)?);
            }
            let inputs: Vec<Option<ValueId>> = input
                .iter()
                .map(|s| {
                    if s.is_empty() {
                        None
                    } else {
                        Some(use_name(g, s, is_sub, captures))
                    }
                })
                .collect();
            let outputs: Vec<Option<ValueId>> = output
                .iter()
                .map(|s| {
                    if s.is_empty() {
                        None
                    } else {
                        Some(g.value_or_add(s))
                    }
                })
                .collect();
            let mut seen = HashSet::new();
            let implicit: Vec<ValueId> = implicit_names
                .iter()
                .filter(|s| seen.insert(s.as_str()))
                .map(|s| use_name(g, s, is_sub, captures))
                .collect();
            let mut node = Node::imported(domain, &op_type, attrs);
            node.name = name;
            node.doc_string = doc_string;
            node.overload = overload;
            node.metadata_props = pairs_in(metadata_props);
            node.extra = device_configurations
                .into_iter()
                .map(|c| {
                    Opaque(
                        NodeProto {
                            device_configurations: vec![c],
                            ..Default::default()
                        }
                        .encode_to_vec(),
                    )
                })
                .collect();
            g.add_node_with_implicit(node, &inputs, &outputs, &implicit)
                .map_err(|source| LoadError::Graph {
                    context: self.context(),
                    source,
                })?;
            Ok(())
        })();
        self.path.pop();
        r
    }

    /// Converts an attribute; names its subgraphs capture are appended to `captures`.
    fn attribute(
        &mut self,
        a: AttributeProto,
        captures: &mut Vec<String>,
    ) -> Result<Attribute, LoadError> {
        let name = a.name.clone().unwrap_or_default();
        self.path.push(format!("attribute '{name}'"));
        let r = self.attribute_body(a, name, captures);
        self.path.pop();
        r
    }

    fn attribute_body(
        &mut self,
        a: AttributeProto,
        name: String,
        captures: &mut Vec<String>,
    ) -> Result<Attribute, LoadError> {
        let AttributeProto {
            name: _,
            ref_attr_name,
            doc_string,
            r#type,
            f,
            i,
            s,
            t,
            g,
            sparse_tensor,
            tp,
            floats,
            ints,
            strings,
            tensors,
            graphs,
            sparse_tensors,
            type_protos,
        } = a;
        let declared = match r#type {
            None | Some(0) => None,
            Some(k) => Some(attr_kind(k).ok_or_else(|| LoadError::UnknownEnum {
                context: self.context(),
                what: "attribute type",
                value: k as i64,
            })?),
        };
        // Without a declared type (IR v1, or UNDEFINED), the present field decides.
        let kind = declared.or({
            if f.is_some() {
                Some(AttrKind::Float)
            } else if i.is_some() {
                Some(AttrKind::Int)
            } else if s.is_some() {
                Some(AttrKind::String)
            } else if t.is_some() {
                Some(AttrKind::Tensor)
            } else if g.is_some() {
                Some(AttrKind::Graph)
            } else if sparse_tensor.is_some() {
                Some(AttrKind::SparseTensor)
            } else if tp.is_some() {
                Some(AttrKind::TypeProto)
            } else if !floats.is_empty() {
                Some(AttrKind::Floats)
            } else if !ints.is_empty() {
                Some(AttrKind::Ints)
            } else if !strings.is_empty() {
                Some(AttrKind::Strings)
            } else if !tensors.is_empty() {
                Some(AttrKind::Tensors)
            } else if !graphs.is_empty() {
                Some(AttrKind::Graphs)
            } else if !sparse_tensors.is_empty() {
                Some(AttrKind::SparseTensors)
            } else if !type_protos.is_empty() {
                Some(AttrKind::TypeProtos)
            } else {
                None
            }
        });
        let mut scalar_present = true;
        let missing =
            |what: &str| self.invalid(format!("the attribute is declared {what} but has no value"));
        let value = match kind {
            None => AttrValue::None,
            Some(AttrKind::Float) => {
                scalar_present = f.is_some();
                AttrValue::Float(f.unwrap_or(0.0))
            }
            Some(AttrKind::Int) => {
                scalar_present = i.is_some();
                AttrValue::Int(i.unwrap_or(0))
            }
            Some(AttrKind::String) => {
                scalar_present = s.is_some();
                AttrValue::String(s.unwrap_or_default())
            }
            Some(AttrKind::Tensor) => {
                let t = t.ok_or_else(|| missing("TENSOR"))?;
                let label = t
                    .name
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| format!("<attribute {name}>"));
                let cx = TensorCx {
                    base_dir: self.base_dir,
                    context: &self.context(),
                };
                AttrValue::Tensor(tensor_from_proto(t, &cx, &label)?)
            }
            Some(AttrKind::Graph) => {
                let gp = g.ok_or_else(|| missing("GRAPH"))?;
                let (sub, caps) = self.graph(gp, true)?;
                captures.extend(caps);
                AttrValue::Graph(Box::new(sub))
            }
            Some(AttrKind::SparseTensor) => AttrValue::SparseTensor(Opaque(
                sparse_tensor
                    .ok_or_else(|| missing("SPARSE_TENSOR"))?
                    .encode_to_vec(),
            )),
            Some(AttrKind::TypeProto) => {
                let tp = tp.ok_or_else(|| missing("TYPE_PROTO"))?;
                AttrValue::TypeProto(self.type_proto(tp)?)
            }
            Some(AttrKind::Floats) => AttrValue::Floats(floats),
            Some(AttrKind::Ints) => AttrValue::Ints(ints),
            Some(AttrKind::Strings) => AttrValue::Strings(strings),
            Some(AttrKind::Tensors) => {
                let cx_s = self.context();
                let cx = TensorCx {
                    base_dir: self.base_dir,
                    context: &cx_s,
                };
                let mut out = Vec::with_capacity(tensors.len());
                for (k, t) in tensors.into_iter().enumerate() {
                    let label = t
                        .name
                        .clone()
                        .filter(|n| !n.is_empty())
                        .unwrap_or_else(|| format!("<attribute {name}[{k}]>"));
                    out.push(tensor_from_proto(t, &cx, &label)?);
                }
                AttrValue::Tensors(out)
            }
            Some(AttrKind::Graphs) => {
                let mut out = Vec::with_capacity(graphs.len());
                for gp in graphs {
                    let (sub, caps) = self.graph(gp, true)?;
                    captures.extend(caps);
                    out.push(sub);
                }
                AttrValue::Graphs(out)
            }
            Some(AttrKind::SparseTensors) => AttrValue::SparseTensors(
                sparse_tensors
                    .into_iter()
                    .map(|s| Opaque(s.encode_to_vec()))
                    .collect(),
            ),
            Some(AttrKind::TypeProtos) => {
                let mut out = Vec::with_capacity(type_protos.len());
                for tp in type_protos {
                    out.push(self.type_proto(tp)?);
                }
                AttrValue::TypeProtos(out)
            }
        };
        Ok(Attribute {
            name,
            value,
            doc_string,
            ref_attr_name,
            declared_type: r#type,
            scalar_present,
        })
    }

    fn value_info(
        &mut self,
        vi: ValueInfoProto,
        what: &str,
    ) -> Result<(String, ValueInfo), LoadError> {
        let ValueInfoProto {
            name,
            r#type,
            doc_string,
            metadata_props,
        } = vi;
        let name = match name {
            Some(n) if !n.is_empty() => n,
            _ => return Err(self.invalid(format!("{what} has no name"))),
        };
        self.path.push(format!("value '{name}'"));
        let ty = r#type.map(|t| self.type_proto(t)).transpose();
        self.path.pop();
        Ok((
            name,
            ValueInfo {
                ty: ty?,
                doc_string,
                metadata_props: pairs_in(metadata_props),
            },
        ))
    }

    fn elem(&self, code: Option<i32>, what: &'static str) -> Result<Option<DType>, LoadError> {
        match code {
            None | Some(0) => Ok(None),
            Some(c) => DType::from_code(c)
                .map(Some)
                .ok_or_else(|| LoadError::UnknownEnum {
                    context: self.context(),
                    what,
                    value: c as i64,
                }),
        }
    }

    fn type_proto(&mut self, tp: TypeProto) -> Result<Type, LoadError> {
        let TypeProto { denotation, value } = tp;
        let sub =
            |im: &mut Self, t: Option<Box<TypeProto>>| -> Result<Option<Box<Type>>, LoadError> {
                t.map(|t| im.type_proto(*t).map(Box::new)).transpose()
            };
        let kind = match value {
            None => TypeKind::Unset,
            Some(type_proto::Value::TensorType(t)) => TypeKind::Tensor(TensorType {
                elem: self.elem(t.elem_type, "element type")?,
                shape: t.shape.map(shape),
            }),
            Some(type_proto::Value::SparseTensorType(t)) => TypeKind::SparseTensor(TensorType {
                elem: self.elem(t.elem_type, "element type")?,
                shape: t.shape.map(shape),
            }),
            Some(type_proto::Value::SequenceType(s)) => TypeKind::Sequence(sub(self, s.elem_type)?),
            Some(type_proto::Value::OptionalType(o)) => TypeKind::Optional(sub(self, o.elem_type)?),
            Some(type_proto::Value::MapType(m)) => TypeKind::Map {
                key: self.elem(m.key_type, "map key type")?,
                value: sub(self, m.value_type)?,
            },
            Some(type_proto::Value::OpaqueType(o)) => {
                tracing::warn!(
                    context = %self.context(),
                    domain = o.domain.as_deref().unwrap_or(""),
                    name = o.name.as_deref().unwrap_or(""),
                    "opaque types are not modeled; the type is imported as unset"
                );
                TypeKind::Unset
            }
        };
        Ok(Type { kind, denotation })
    }
}

fn shape(s: TensorShapeProto) -> Vec<Dim> {
    use qtool_onnx_proto::onnx::tensor_shape_proto::dimension::Value;
    s.dim
        .into_iter()
        .map(|d| Dim {
            value: match d.value {
                Some(Value::DimValue(v)) => DimValue::Known(v),
                Some(Value::DimParam(p)) => DimValue::Param(p),
                None => DimValue::Unknown,
            },
            denotation: d.denotation,
        })
        .collect()
}

/// Sets a value's fact from its declared type, unless something (initializer data) set it already.
fn set_fact(g: &mut Graph, v: ValueId, info: &ValueInfo) {
    if let Some(ty) = &info.ty {
        let val = g.value_mut(v);
        if val.init.is_none() && val.fact == Fact::default() {
            val.fact = Fact::from_type(ty);
        }
    }
}

fn attr_kind(k: i32) -> Option<AttrKind> {
    Some(match k {
        1 => AttrKind::Float,
        2 => AttrKind::Int,
        3 => AttrKind::String,
        4 => AttrKind::Tensor,
        5 => AttrKind::Graph,
        6 => AttrKind::Floats,
        7 => AttrKind::Ints,
        8 => AttrKind::Strings,
        9 => AttrKind::Tensors,
        10 => AttrKind::Graphs,
        11 => AttrKind::SparseTensor,
        12 => AttrKind::SparseTensors,
        13 => AttrKind::TypeProto,
        14 => AttrKind::TypeProtos,
        _ => return None,
    })
}
