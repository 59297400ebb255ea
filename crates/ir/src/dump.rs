//! A deterministic, readable text form of a graph: the substrate of snapshot tests, CLI output and
//! e2e expectations. Stable order (the graph's node order), fixed number formatting.

use crate::attr::{AttrValue, TensorBytes, TensorData};
use crate::graph::{Graph, ValueId};
use crate::types::{DimValue, Fact};
use std::fmt::Write;

fn fmt_fact(f: &Fact) -> String {
    let dt = f
        .dtype
        .map(|d| d.short_name().to_string())
        .unwrap_or_else(|| "?".into());
    match &f.shape {
        None => format!("{dt}[..]"),
        Some(s) => {
            let dims: Vec<String> = s
                .iter()
                .map(|d| match d {
                    DimValue::Known(v) => v.to_string(),
                    DimValue::Param(p) => p.clone(),
                    DimValue::Unknown => "?".into(),
                })
                .collect();
            format!("{dt}[{}]", dims.join(","))
        }
    }
}

fn fmt_f32(x: f32) -> String {
    if x == x.trunc() && x.abs() < 1e7 {
        format!("{x:.1}")
    } else {
        format!("{x:.6e}")
    }
}

/// Short description of a stored tensor; small ones show their values.
pub fn fmt_tensor(t: &TensorData) -> String {
    let dims: Vec<String> = t.dims.iter().map(|d| d.to_string()).collect();
    let head = format!("{}[{}]", t.dtype.short_name(), dims.join(","));
    if t.numel() <= 8
        && let Ok(rt) = t.to_tensor()
    {
        if let Some(v) = rt.to_f64_vec() {
            let vals: Vec<String> = v
                .iter()
                .map(|x| {
                    if t.dtype.is_float() {
                        fmt_f32(*x as f32)
                    } else {
                        format!("{x}")
                    }
                })
                .collect();
            return format!("{head}{{{}}}", vals.join(","));
        }
        if let TensorBytes::Strings(s) = &t.data {
            let vals: Vec<String> = s
                .iter()
                .map(|x| format!("{:?}", String::from_utf8_lossy(x)))
                .collect();
            return format!("{head}{{{}}}", vals.join(","));
        }
    }
    head
}

fn fmt_attr(v: &AttrValue) -> String {
    match v {
        AttrValue::Float(x) => fmt_f32(*x),
        AttrValue::Int(x) => x.to_string(),
        AttrValue::String(s) => format!("{:?}", String::from_utf8_lossy(s)),
        AttrValue::Tensor(t) => fmt_tensor(t),
        AttrValue::Graph(g) => format!("<graph {} nodes>", g.node_count()),
        AttrValue::SparseTensor(_) => "<sparse tensor>".into(),
        AttrValue::TypeProto(_) => "<type>".into(),
        AttrValue::Floats(v) => format!(
            "[{}]",
            v.iter().map(|x| fmt_f32(*x)).collect::<Vec<_>>().join(",")
        ),
        AttrValue::Ints(v) => format!(
            "[{}]",
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        AttrValue::Strings(v) => {
            format!(
                "[{}]",
                v.iter()
                    .map(|x| format!("{:?}", String::from_utf8_lossy(x)))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
        AttrValue::Tensors(v) => format!("<{} tensors>", v.len()),
        AttrValue::Graphs(v) => format!("<{} graphs>", v.len()),
        AttrValue::SparseTensors(v) => format!("<{} sparse tensors>", v.len()),
        AttrValue::TypeProtos(v) => format!("<{} types>", v.len()),
        AttrValue::None => "<ref>".into(),
    }
}

impl Graph {
    fn vname(&self, v: Option<ValueId>) -> String {
        v.map(|v| self.value_name(v).to_string())
            .unwrap_or_else(|| "_".into())
    }

    /// The deterministic text dump.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "graph {:?}", self.name.as_deref().unwrap_or(""));
        for (v, _) in &self.inputs {
            if self.initializer(*v).is_none() {
                let _ = writeln!(
                    s,
                    "  input  {}: {}",
                    self.value_name(*v),
                    fmt_fact(&self.value(*v).fact)
                );
            }
        }
        for v in &self.initializers {
            let t = self.initializer(*v).expect("listed initializer has data");
            let _ = writeln!(s, "  init   {}: {}", self.value_name(*v), fmt_tensor(t));
        }
        for (id, n) in self.nodes() {
            let ins: Vec<String> = n.inputs().iter().map(|v| self.vname(*v)).collect();
            let outs: Vec<String> = n.outputs().iter().map(|v| self.vname(*v)).collect();
            let dom = match n.op().domain() {
                "" => String::new(),
                d => format!("{d}::"),
            };
            let _ = write!(
                s,
                "  {}{} {:?} ({}) -> ({})",
                dom,
                n.op().op_type(),
                n.display_name(id),
                ins.join(", "),
                outs.join(", ")
            );
            if !n.attrs().is_empty() {
                let attrs: Vec<String> = n
                    .attrs()
                    .iter()
                    .map(|a| format!("{}={}", a.name, fmt_attr(&a.value)))
                    .collect();
                let _ = write!(s, " {{{}}}", attrs.join(", "));
            }
            s.push('\n');
        }
        for (v, _) in &self.outputs {
            let _ = writeln!(
                s,
                "  output {}: {}",
                self.value_name(*v),
                fmt_fact(&self.value(*v).fact)
            );
        }
        s
    }
}
