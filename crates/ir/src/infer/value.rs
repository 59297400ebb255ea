//! Known values: small integer/bool/float tensors (constants and the computed data of shape
//! subgraphs) with the plain evaluation helpers the op rules use to fold them.

use crate::attr::TensorData;
use crate::types::{DimValue, Fact};
use qtool_tensor::{DType, bf16, f16};

/// Largest number of elements a known value may have.
pub(crate) const MAX_KNOWN: usize = 4096;

/// Element data: integers (and bools) as i64, floats as f64 (rounded to their type).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum KData {
    I(Vec<i64>),
    F(Vec<f64>),
}

impl KData {
    pub(crate) fn len(&self) -> usize {
        match self {
            KData::I(v) => v.len(),
            KData::F(v) => v.len(),
        }
    }
}

/// A tensor whose value inference knows.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct KVal {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: KData,
}

/// Element types a known value may have.
pub(crate) fn storable(d: DType) -> bool {
    matches!(
        d,
        DType::F32
            | DType::F64
            | DType::F16
            | DType::BF16
            | DType::I8
            | DType::U8
            | DType::I16
            | DType::U16
            | DType::I32
            | DType::U32
            | DType::I64
            | DType::U64
            | DType::Bool
    )
}

fn wrap_int(d: DType, v: i64) -> i64 {
    match d {
        DType::I8 => v as i8 as i64,
        DType::U8 => v as u8 as i64,
        DType::I16 => v as i16 as i64,
        DType::U16 => v as u16 as i64,
        DType::I32 => v as i32 as i64,
        DType::U32 => v as u32 as i64,
        DType::Bool => (v != 0) as i64,
        _ => v,
    }
}

fn round_float(d: DType, v: f64) -> f64 {
    match d {
        DType::F32 => v as f32 as f64,
        DType::F16 => f16::from_f64(v).to_f64(),
        DType::BF16 => bf16::from_f64(v).to_f64(),
        _ => v,
    }
}

fn float_to_int(d: DType, v: f64) -> i64 {
    if d == DType::Bool {
        return (v != 0.0) as i64;
    }
    if v.is_nan() { 0 } else { wrap_int(d, v as i64) }
}

impl KVal {
    /// A value of `dtype`; the data is converted to the representation the type needs. `None` if
    /// the type cannot be held, the data does not fit the shape, or it is too large.
    pub(crate) fn new(dtype: DType, shape: Vec<usize>, data: KData) -> Option<KVal> {
        let n: usize = shape.iter().product();
        if !storable(dtype) || n != data.len() || n > MAX_KNOWN {
            return None;
        }
        let data = if dtype.is_float() {
            KData::F(match data {
                KData::F(v) => v.into_iter().map(|x| round_float(dtype, x)).collect(),
                KData::I(v) => v
                    .into_iter()
                    .map(|x| round_float(dtype, x as f64))
                    .collect(),
            })
        } else {
            KData::I(match data {
                KData::I(v) => v.into_iter().map(|x| wrap_int(dtype, x)).collect(),
                KData::F(v) => v.into_iter().map(|x| float_to_int(dtype, x)).collect(),
            })
        };
        Some(KVal { dtype, shape, data })
    }

    pub(crate) fn ints(dtype: DType, shape: Vec<usize>, v: Vec<i64>) -> Option<KVal> {
        KVal::new(dtype, shape, KData::I(v))
    }

    /// A 1-d int64 vector.
    pub(crate) fn vec_i64(v: Vec<i64>) -> Option<KVal> {
        let n = v.len();
        KVal::ints(DType::I64, vec![n], v)
    }

    /// The value of a stored tensor, if it is small and of a numeric type.
    pub(crate) fn from_data(t: &TensorData) -> Option<KVal> {
        if t.numel() > MAX_KNOWN || !storable(t.dtype) {
            return None;
        }
        let rt = t.to_tensor().ok()?;
        let shape = rt.shape().to_vec();
        let data = if t.dtype.is_float() {
            KData::F(rt.to_f64_vec()?)
        } else {
            KData::I(rt.to_i64_vec()?)
        };
        KVal::new(t.dtype, shape, data)
    }

    pub(crate) fn len(&self) -> usize {
        self.data.len()
    }

    pub(crate) fn is_float(&self) -> bool {
        matches!(self.data, KData::F(_))
    }

    pub(crate) fn i64s(&self) -> Vec<i64> {
        match &self.data {
            KData::I(v) => v.clone(),
            KData::F(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }

    pub(crate) fn f64s(&self) -> Vec<f64> {
        match &self.data {
            KData::I(v) => v.iter().map(|&x| x as f64).collect(),
            KData::F(v) => v.clone(),
        }
    }

    pub(crate) fn fact(&self) -> Fact {
        Fact::new(self.dtype, &self.shape)
    }

    /// The value converted to another element type (ONNX Cast semantics for the held types).
    pub(crate) fn cast(&self, to: DType) -> Option<KVal> {
        KVal::new(to, self.shape.clone(), self.data.clone())
    }

    pub(crate) fn reshape(&self, shape: Vec<usize>) -> Option<KVal> {
        KVal::new(self.dtype, shape, self.data.clone())
    }

    /// A value of `out_shape` whose element at each index is this value's element at flat index
    /// `f(index)` (`None` from `f`: an index is out of range).
    pub(crate) fn gather_by(
        &self,
        out_shape: Vec<usize>,
        f: impl Fn(&[usize]) -> Option<usize>,
    ) -> Option<KVal> {
        let n: usize = out_shape.iter().product();
        if n > MAX_KNOWN {
            return None;
        }
        let mut idx = vec![0usize; out_shape.len()];
        let mut src = Vec::with_capacity(n);
        for flat in 0..n {
            unravel(flat, &out_shape, &mut idx);
            let s = f(&idx)?;
            if s >= self.len() {
                return None;
            }
            src.push(s);
        }
        let data = match &self.data {
            KData::I(v) => KData::I(src.iter().map(|&s| v[s]).collect()),
            KData::F(v) => KData::F(src.iter().map(|&s| v[s]).collect()),
        };
        KVal::new(self.dtype, out_shape, data)
    }

    /// The value as a list of dimensions (for shape vectors), if it is an integer scalar or vector.
    pub(crate) fn as_dims(&self) -> Option<Vec<DimValue>> {
        if self.shape.len() > 1 || self.is_float() {
            return None;
        }
        Some(self.i64s().into_iter().map(DimValue::Known).collect())
    }
}

/// Row-major strides of a shape.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Multi-index of a flat row-major index.
pub(crate) fn unravel(mut flat: usize, shape: &[usize], out: &mut [usize]) {
    for i in (0..shape.len()).rev() {
        let d = shape[i].max(1);
        out[i] = flat % d;
        flat /= d;
    }
}

/// Static numpy broadcasting.
pub(crate) fn broadcast_static(shapes: &[&[usize]]) -> Option<Vec<usize>> {
    let r = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; r];
    for s in shapes {
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[i + r - s.len()];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return None;
            }
        }
    }
    Some(out)
}

/// Flat index into a (broadcast) input for an output multi-index.
fn bcast_index(out_idx: &[usize], shape: &[usize], st: &[usize]) -> usize {
    let off = out_idx.len() - shape.len();
    shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if d == 1 { 0 } else { out_idx[i + off] * st[i] })
        .sum()
}

fn zip_gen<T: Copy>(
    inputs: &[&KVal],
    get: impl Fn(&KVal) -> Vec<T>,
    mut f: impl FnMut(&[T]) -> Option<T>,
) -> Option<(Vec<usize>, Vec<T>)> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|v| v.shape.as_slice()).collect();
    let out_shape = broadcast_static(&shapes)?;
    let n: usize = out_shape.iter().product();
    if n > MAX_KNOWN {
        return None;
    }
    let datas: Vec<Vec<T>> = inputs.iter().map(|v| get(v)).collect();
    let sts: Vec<Vec<usize>> = shapes.iter().map(|s| strides(s)).collect();
    let mut idx = vec![0usize; out_shape.len()];
    let mut args = Vec::with_capacity(inputs.len());
    let mut out = Vec::with_capacity(n);
    for flat in 0..n {
        unravel(flat, &out_shape, &mut idx);
        args.clear();
        for (j, d) in datas.iter().enumerate() {
            args.push(d[bcast_index(&idx, shapes[j], &sts[j])]);
        }
        out.push(f(&args)?);
    }
    Some((out_shape, out))
}

/// Element-wise integer evaluation with broadcasting.
pub(crate) fn zip_i(
    inputs: &[&KVal],
    out: DType,
    f: impl Fn(&[i64]) -> Option<i64>,
) -> Option<KVal> {
    let (shape, v) = zip_gen(inputs, |k| k.i64s(), f)?;
    KVal::new(out, shape, KData::I(v))
}

/// Element-wise float evaluation with broadcasting.
pub(crate) fn zip_f(inputs: &[&KVal], out: DType, f: impl Fn(&[f64]) -> f64) -> Option<KVal> {
    let (shape, v) = zip_gen(inputs, |k| k.f64s(), |a| Some(f(a)))?;
    KVal::new(out, shape, KData::F(v))
}

/// Concatenation of known values along `axis`.
pub(crate) fn concat(vals: &[&KVal], axis: usize, dtype: DType) -> Option<KVal> {
    let first = vals.first()?;
    let mut shape = first.shape.clone();
    if axis >= shape.len() {
        return None;
    }
    shape[axis] = vals
        .iter()
        .map(|v| v.shape.get(axis).copied().unwrap_or(0))
        .sum();
    let outer: usize = first.shape[..axis].iter().product();
    let float = vals.iter().any(|v| v.is_float()) || dtype.is_float();
    let chunks: Vec<usize> = vals
        .iter()
        .map(|v| v.shape[axis..].iter().product())
        .collect();
    let data = if float {
        let ds: Vec<Vec<f64>> = vals.iter().map(|v| v.f64s()).collect();
        let mut out = Vec::new();
        for o in 0..outer {
            for (d, &c) in ds.iter().zip(&chunks) {
                out.extend_from_slice(d.get(o * c..(o + 1) * c)?);
            }
        }
        KData::F(out)
    } else {
        let ds: Vec<Vec<i64>> = vals.iter().map(|v| v.i64s()).collect();
        let mut out = Vec::new();
        for o in 0..outer {
            for (d, &c) in ds.iter().zip(&chunks) {
                out.extend_from_slice(d.get(o * c..(o + 1) * c)?);
            }
        }
        KData::I(out)
    };
    KVal::new(dtype, shape, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_broadcasts_and_concat() {
        let a = KVal::ints(DType::I64, vec![2, 1], vec![1, 2]).unwrap();
        let b = KVal::vec_i64(vec![10, 20, 30]).unwrap();
        let s = zip_i(&[&a, &b], DType::I64, |x| Some(x[0] + x[1])).unwrap();
        assert_eq!(s.shape, vec![2, 3]);
        assert_eq!(s.i64s(), vec![11, 21, 31, 12, 22, 32]);
        let c = concat(&[&b, &b], 0, DType::I64).unwrap();
        assert_eq!(c.i64s(), vec![10, 20, 30, 10, 20, 30]);
        let t = KVal::new(DType::I32, vec![1], KData::F(vec![3.7])).unwrap();
        assert_eq!(t.i64s(), vec![3]);
    }
}
