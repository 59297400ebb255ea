//! `fold_constants`: turns Constant nodes into initializers and evaluates small nodes whose inputs are
//! all constant (the shape-subgraph ops: Shape of a static shape, Gather, Unsqueeze, Squeeze, Concat,
//! Cast, Reshape, Identity and integer/float Add, Sub, Mul, Div). Other ops are skipped with a reason;
//! the executor is not used (the layering keeps it above this crate).

use crate::util::{finish, nname, numel, tensor};
use crate::{Pass, PassCx, PassError, PassReport};
use qtool_ir::{Model, Node, Op, TensorData, ValueId, ops};
use qtool_tensor::DType;
use serde::Deserialize;

/// Options of `fold_constants`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FoldConstantsOptions {
    /// Largest number of elements of any input or output of a node that is evaluated (default 4096).
    pub max_elements: usize,
}

impl Default for FoldConstantsOptions {
    fn default() -> Self {
        FoldConstantsOptions { max_elements: 4096 }
    }
}

/// The `fold_constants` pass.
#[derive(Debug)]
pub struct FoldConstants {
    opts: FoldConstantsOptions,
}

impl FoldConstants {
    pub fn new(opts: FoldConstantsOptions) -> Result<Self, PassError> {
        Ok(FoldConstants { opts })
    }
}

/// A small constant value: integers kept exact, floats in f64.
#[derive(Clone, Debug, PartialEq)]
struct Val {
    dtype: DType,
    shape: Vec<usize>,
    ints: Vec<i64>,
    floats: Vec<f64>,
}

fn is_int(d: DType) -> bool {
    matches!(
        d,
        DType::I64
            | DType::I32
            | DType::I16
            | DType::I8
            | DType::U8
            | DType::U16
            | DType::U32
            | DType::Bool
    )
}
fn is_flt(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F64)
}

impl Val {
    fn from_data(t: &TensorData) -> Option<Val> {
        let shape = crate::util::udims(t);
        if is_int(t.dtype) {
            Some(Val {
                dtype: t.dtype,
                shape,
                ints: crate::util::i64s(t)?,
                floats: vec![],
            })
        } else if is_flt(t.dtype) {
            Some(Val {
                dtype: t.dtype,
                shape,
                ints: vec![],
                floats: t.to_tensor().ok()?.to_f64_vec()?,
            })
        } else {
            None
        }
    }
    fn int(&self) -> bool {
        is_int(self.dtype)
    }
    fn len(&self) -> usize {
        if self.int() {
            self.ints.len()
        } else {
            self.floats.len()
        }
    }
    fn to_data(&self) -> TensorData {
        let s = &self.shape;
        match self.dtype {
            DType::I64 => tensor(s, self.ints.clone()),
            DType::I32 => tensor(s, self.ints.iter().map(|&x| x as i32).collect::<Vec<_>>()),
            DType::I16 => tensor(s, self.ints.iter().map(|&x| x as i16).collect::<Vec<_>>()),
            DType::I8 => tensor(s, self.ints.iter().map(|&x| x as i8).collect::<Vec<_>>()),
            DType::U8 => tensor(s, self.ints.iter().map(|&x| x as u8).collect::<Vec<_>>()),
            DType::U16 => tensor(s, self.ints.iter().map(|&x| x as u16).collect::<Vec<_>>()),
            DType::U32 => tensor(s, self.ints.iter().map(|&x| x as u32).collect::<Vec<_>>()),
            DType::Bool => tensor(s, self.ints.iter().map(|&x| x != 0).collect::<Vec<_>>()),
            DType::F64 => tensor(s, self.floats.clone()),
            _ => tensor(s, self.floats.iter().map(|&x| x as f32).collect::<Vec<_>>()),
        }
    }
    /// Gathers elements by flat index into a new value of `shape`.
    fn pick(&self, shape: Vec<usize>, idx: impl Iterator<Item = usize>) -> Val {
        let mut out = Val {
            dtype: self.dtype,
            shape,
            ints: vec![],
            floats: vec![],
        };
        for i in idx {
            if self.int() {
                out.ints.push(self.ints[i])
            } else {
                out.floats.push(self.floats[i])
            }
        }
        out
    }
}

fn norm_axis(a: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let x = if a < 0 { a + r } else { a };
    if x < 0 || x >= r.max(1) {
        Err(format!("axis {a} out of range for rank {rank}"))
    } else {
        Ok(x as usize)
    }
}

/// Evaluates one node; `Err` says why it was not folded.
fn eval(
    node: &Node,
    ins: &[Option<Val>],
    static_in0: Option<Vec<usize>>,
    opset: i64,
) -> Result<Vec<Val>, String> {
    let get = |i: usize| {
        ins.get(i)
            .and_then(|v| v.as_ref())
            .ok_or_else(|| format!("input {i} is not constant"))
    };
    let ints_of = |i: usize| -> Result<Vec<i64>, String> {
        let v = get(i)?;
        if v.int() {
            Ok(v.ints.clone())
        } else {
            Err("expected an integer input".into())
        }
    };
    Ok(vec![match node.op() {
        Op::Shape(s) => {
            let shape = static_in0.ok_or("the input shape is not static")?;
            let r = shape.len() as i64;
            let clampi = |x: i64| (if x < 0 { x + r } else { x }).clamp(0, r) as usize;
            let st = clampi(s.start.unwrap_or(0));
            let en = clampi(s.end.unwrap_or(r));
            let dims: Vec<i64> = shape[st..en.max(st)].iter().map(|&d| d as i64).collect();
            Val {
                dtype: DType::I64,
                shape: vec![dims.len()],
                ints: dims,
                floats: vec![],
            }
        }
        Op::Identity(_) => get(0)?.clone(),
        Op::Cast(c) => {
            let to =
                c.to.and_then(|t| DType::from_code(t as i32))
                    .ok_or("Cast without a known 'to'")?;
            let x = get(0)?;
            if !(is_int(to) || is_flt(to)) {
                return Err(format!("Cast to {to} is not evaluated"));
            }
            let mut out = Val {
                dtype: to,
                shape: x.shape.clone(),
                ints: vec![],
                floats: vec![],
            };
            match (x.int(), is_int(to)) {
                (true, true) => out.ints = x.ints.clone(),
                (true, false) => out.floats = x.ints.iter().map(|&v| v as f64).collect(),
                (false, true) => out.ints = x.floats.iter().map(|&v| v.trunc() as i64).collect(),
                (false, false) => out.floats = x.floats.clone(),
            }
            if to == DType::F32 {
                out.floats = out.floats.iter().map(|&v| v as f32 as f64).collect();
            }
            out
        }
        Op::Unsqueeze(u) => {
            let x = get(0)?;
            let axes = match &u.axes {
                Some(a) if opset < 13 => a.clone(),
                _ => ints_of(1)?,
            };
            let r = x.shape.len() + axes.len();
            let mut ax: Vec<usize> = axes
                .iter()
                .map(|&a| norm_axis(a, r))
                .collect::<Result<_, _>>()?;
            ax.sort();
            let mut shape = x.shape.clone();
            for a in ax {
                shape.insert(a, 1);
            }
            Val { shape, ..x.clone() }
        }
        Op::Squeeze(s) => {
            let x = get(0)?;
            let axes = match &s.axes {
                Some(a) if opset < 13 => Some(a.clone()),
                _ => {
                    if node.input(1).is_some() {
                        Some(ints_of(1)?)
                    } else {
                        None
                    }
                }
            };
            let r = x.shape.len();
            let drop: Vec<usize> = match axes {
                Some(a) => a
                    .iter()
                    .map(|&a| norm_axis(a, r))
                    .collect::<Result<_, _>>()?,
                None => (0..r).filter(|&i| x.shape[i] == 1).collect(),
            };
            let shape = x
                .shape
                .iter()
                .enumerate()
                .filter(|(i, _)| !drop.contains(i))
                .map(|(_, d)| *d)
                .collect();
            Val { shape, ..x.clone() }
        }
        Op::Reshape(rs) => {
            let x = get(0)?;
            let target = ints_of(1)?;
            let allowzero = rs.allowzero.unwrap_or(0) == 1;
            let mut shape: Vec<i64> = target
                .iter()
                .enumerate()
                .map(|(i, &d)| {
                    if d == 0 && !allowzero {
                        x.shape.get(i).map(|&s| s as i64).unwrap_or(0)
                    } else {
                        d
                    }
                })
                .collect();
            let known: i64 = shape.iter().filter(|&&d| d != -1).product();
            if let Some(p) = shape.iter().position(|&d| d == -1) {
                if known == 0 {
                    return Err("cannot infer -1 with a zero-sized dimension".into());
                }
                shape[p] = x.len() as i64 / known;
            }
            let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            if numel(&shape) != x.len() {
                return Err("Reshape changes the element count".into());
            }
            Val { shape, ..x.clone() }
        }
        Op::Concat(c) => {
            let vals: Vec<&Val> = (0..node.inputs().len())
                .map(get)
                .collect::<Result<_, _>>()?;
            let first = vals.first().ok_or("no inputs")?;
            let r = first.shape.len();
            let axis = norm_axis(c.axis.ok_or("Concat without axis")?, r)?;
            let outer: usize = first.shape[..axis].iter().product();
            let mut shape = first.shape.clone();
            shape[axis] = vals
                .iter()
                .map(|v| v.shape.get(axis).copied().unwrap_or(0))
                .sum();
            let mut out = Val {
                dtype: first.dtype,
                shape,
                ints: vec![],
                floats: vec![],
            };
            for o in 0..outer {
                for v in &vals {
                    if v.shape.len() != r || v.dtype != first.dtype {
                        return Err("Concat inputs differ in rank or type".into());
                    }
                    let chunk: usize = v.shape[axis..].iter().product();
                    if v.int() {
                        out.ints
                            .extend_from_slice(&v.ints[o * chunk..(o + 1) * chunk])
                    } else {
                        out.floats
                            .extend_from_slice(&v.floats[o * chunk..(o + 1) * chunk])
                    }
                }
            }
            out
        }
        Op::Gather(ga) => {
            let x = get(0)?;
            let idx = ints_of(1)?;
            let ishape = get(1)?.shape.clone();
            let r = x.shape.len();
            let axis = norm_axis(ga.axis.unwrap_or(0), r)?;
            let n = x.shape[axis] as i64;
            let outer: usize = x.shape[..axis].iter().product();
            let inner: usize = x.shape[axis + 1..].iter().product();
            let mut shape = x.shape[..axis].to_vec();
            shape.extend(&ishape);
            shape.extend(&x.shape[axis + 1..]);
            let mut flat = Vec::new();
            for o in 0..outer {
                for &i in &idx {
                    let i = if i < 0 { i + n } else { i };
                    if i < 0 || i >= n {
                        return Err(format!("Gather index {i} out of range"));
                    }
                    for k in 0..inner {
                        flat.push((o * n as usize + i as usize) * inner + k);
                    }
                }
            }
            x.pick(shape, flat.into_iter())
        }
        Op::Add(_) | Op::Sub(_) | Op::Mul(_) | Op::Div(_) => {
            let (a, b) = (get(0)?, get(1)?);
            if a.dtype != b.dtype {
                return Err("operand types differ".into());
            }
            let (shape, n) =
                if a.shape == b.shape || (b.len() == 1 && b.shape.len() <= a.shape.len()) {
                    (a.shape.clone(), a.len())
                } else if a.len() == 1 && a.shape.len() <= b.shape.len() {
                    (b.shape.clone(), b.len())
                } else {
                    return Err("only equal shapes or a scalar operand are evaluated".into());
                };
            let ia = |i: usize| if a.len() == 1 { 0 } else { i };
            let ib = |i: usize| if b.len() == 1 { 0 } else { i };
            let mut out = Val {
                dtype: a.dtype,
                shape,
                ints: vec![],
                floats: vec![],
            };
            for i in 0..n {
                if a.int() {
                    let (x, y) = (a.ints[ia(i)], b.ints[ib(i)]);
                    out.ints.push(match node.op() {
                        Op::Add(_) => x.wrapping_add(y),
                        Op::Sub(_) => x.wrapping_sub(y),
                        Op::Mul(_) => x.wrapping_mul(y),
                        _ => x.checked_div(y).ok_or("integer division by zero")?,
                    });
                } else {
                    let (x, y) = (a.floats[ia(i)], b.floats[ib(i)]);
                    let v = match node.op() {
                        Op::Add(_) => x + y,
                        Op::Sub(_) => x - y,
                        Op::Mul(_) => x * y,
                        _ => x / y,
                    };
                    // f32 results: f64 arithmetic then rounding to f32 equals f32 arithmetic for + - * /.
                    out.floats.push(if a.dtype == DType::F32 {
                        v as f32 as f64
                    } else {
                        v
                    });
                }
            }
            out
        }
        other => {
            return Err(format!(
                "{} is not evaluated by fold_constants",
                other.op_type()
            ));
        }
    }])
}

/// The tensor a Constant node holds.
fn constant_data(c: &ops::Constant) -> Option<TensorData> {
    if let Some(t) = &c.value {
        return Some(t.clone());
    }
    if let Some(x) = c.value_float {
        return Some(tensor::<f32>(&[], vec![x]));
    }
    if let Some(x) = &c.value_floats {
        return Some(tensor(&[x.len()], x.clone()));
    }
    if let Some(x) = c.value_int {
        return Some(tensor::<i64>(&[], vec![x]));
    }
    if let Some(x) = &c.value_ints {
        return Some(tensor(&[x.len()], x.clone()));
    }
    None
}

impl Pass for FoldConstants {
    fn name(&self) -> &'static str {
        "fold_constants"
    }

    fn run(&self, model: &mut Model, _cx: &PassCx) -> Result<PassReport, PassError> {
        let mut report = PassReport::default();
        // Facts give Shape its input shapes; inference failures only mean fewer folds.
        let _ = qtool_ir::infer_shapes(model, &[]);
        let opset = model.onnx_opset();
        let g = &mut model.graph;
        for n in g.node_ids().to_vec() {
            let node = g.node(n);
            let name = nname(g, n);
            let op_type = node.op().op_type().to_string();
            if let Op::Constant(c) = node.op() {
                let Some(data) = constant_data(c) else {
                    report.skip(
                        name,
                        op_type,
                        "string or sparse constants are kept as nodes",
                    );
                    continue;
                };
                let Some(out) = node.output(0) else { continue };
                g.remove_node(n);
                g.set_initializer(out, data);
                report.rewrite(name, "Constant became an initializer");
                continue;
            }
            if node.op().domain() != "" || node.op().is_opaque() || node.outputs().len() != 1 {
                continue;
            }
            let is_shape = matches!(node.op(), Op::Shape(_));
            let inputs: Vec<Option<ValueId>> = node.inputs().to_vec();
            if inputs.is_empty()
                || (!is_shape && !inputs.iter().flatten().all(|v| g.constant(*v).is_some()))
            {
                continue;
            }
            let ins: Vec<Option<Val>> = inputs
                .iter()
                .map(|v| v.and_then(|v| g.constant(v)).and_then(Val::from_data))
                .collect();
            if ins
                .iter()
                .flatten()
                .any(|v| v.len() > self.opts.max_elements)
            {
                report.skip(
                    name,
                    op_type,
                    format!("an input has more than {} elements", self.opts.max_elements),
                );
                continue;
            }
            let static0 = inputs
                .first()
                .copied()
                .flatten()
                .and_then(|v| g.value(v).fact.static_shape());
            match eval(node, &ins, static0, opset) {
                Ok(mut outs) => {
                    let v = outs.remove(0);
                    if v.len() > self.opts.max_elements {
                        report.skip(
                            name,
                            op_type,
                            format!(
                                "the result has more than {} elements",
                                self.opts.max_elements
                            ),
                        );
                        continue;
                    }
                    let out = node.output(0).expect("one output");
                    let ins_v: Vec<ValueId> = inputs.iter().flatten().copied().collect();
                    g.remove_node(n);
                    g.set_initializer(out, v.to_data());
                    for i in ins_v {
                        crate::util::drop_init_if_unused(g, i);
                    }
                    report.rewrite(name, format!("evaluated {op_type}"));
                }
                Err(reason) => report.skip(name, op_type, reason),
            }
        }
        finish(self.name(), g)?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn shape_subgraph_folds_to_a_reshape_constant() {
        let mut b = Builder::new();
        let x = b.input("x", &[2, 3, 4]);
        let s = b.node(ops::Shape::default(), "shape", &[x], "s");
        let i0 = b.init_i64("i0", &[], vec![0]);
        let d0 = b.node(ops::Gather { axis: Some(0) }, "gather", &[s, i0], "d0");
        let ax = b.init_i64("ax", &[1], vec![0]);
        let u = b.node(ops::Unsqueeze::default(), "unsq", &[d0, ax], "u");
        let c = b.node(
            ops::Constant {
                value_ints: Some(vec![-1]),
                ..Default::default()
            },
            "minus1",
            &[],
            "c",
        );
        let cat = b.node(ops::Concat { axis: Some(0) }, "concat", &[u, c], "cat");
        let y = b.node(ops::Reshape::default(), "reshape", &[x, cat], "y");
        b.output(y);
        let mut m = b.model(13);
        let rep = run(&FoldConstants::new(Default::default()).unwrap(), &mut m);
        let g = &m.graph;
        let t = g.initializer(g.find_value("cat").unwrap()).unwrap();
        assert_eq!(crate::util::i64s(t).unwrap(), vec![2, -1]);
        insta::assert_snapshot!(show(&m, &rep));
    }

    #[test]
    fn evaluator_reshape_cast_squeeze() {
        let v = Val {
            dtype: DType::I64,
            shape: vec![2, 3],
            ints: (0..6).collect(),
            floats: vec![],
        };
        let t = Val {
            dtype: DType::I64,
            shape: vec![2],
            ints: vec![3, -1],
            floats: vec![],
        };
        let r = eval(
            &Node::new(ops::Reshape::default(), "r"),
            &[Some(v.clone()), Some(t)],
            None,
            13,
        )
        .unwrap();
        assert_eq!(r[0].shape, vec![3, 2]);
        let c = eval(
            &Node::new(
                ops::Cast {
                    to: Some(1),
                    ..Default::default()
                },
                "c",
            ),
            &[Some(v.clone())],
            None,
            13,
        )
        .unwrap();
        assert_eq!(c[0].floats, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let g = Val {
            dtype: DType::I64,
            shape: vec![2],
            ints: vec![1, 0],
            floats: vec![],
        };
        let gg = eval(
            &Node::new(ops::Gather { axis: Some(1) }, "g"),
            &[Some(v), Some(g)],
            None,
            13,
        )
        .unwrap();
        assert_eq!(gg[0].shape, vec![2, 2]);
        assert_eq!(gg[0].ints, vec![1, 0, 4, 3]);
    }
}
