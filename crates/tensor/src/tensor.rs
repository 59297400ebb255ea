//! The runtime tensor: an n-dimensional array of one element type, as the executor and kernels see it.

use crate::DType;
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};

/// Errors building or converting tensors.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TensorError {
    #[error("{dtype} tensor of shape {shape:?} needs {expected} bytes of data, got {got}")]
    ByteLength {
        dtype: DType,
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },
    #[error("shape {shape:?} holds {expected} elements, got {got}")]
    ElementCount {
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },
    #[error("expected a {expected} tensor, got {got}")]
    DType { expected: DType, got: DType },
    #[error("a dimension is negative or too large in shape {0:?}")]
    BadShape(Vec<i64>),
}

/// A tensor whose element type has no native Rust array here (float8, int4, complex, ...): kept as
/// the packed little-endian bytes of ONNX's `raw_data` layout.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// A runtime tensor. Shapes are dynamic; data is owned and in standard (row-major) layout after any
/// constructor of this crate.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    F16(ArrayD<f16>),
    BF16(ArrayD<bf16>),
    I8(ArrayD<i8>),
    U8(ArrayD<u8>),
    I16(ArrayD<i16>),
    U16(ArrayD<u16>),
    I32(ArrayD<i32>),
    U32(ArrayD<u32>),
    I64(ArrayD<i64>),
    U64(ArrayD<u64>),
    Bool(ArrayD<bool>),
    String(ArrayD<String>),
    Packed(PackedTensor),
}

/// Runs `$body` with `$a` bound to the inner array of any native variant; `$packed` for packed ones.
#[macro_export]
macro_rules! dispatch_tensor {
    ($t:expr, $a:ident => $body:expr, $p:ident => $packed:expr) => {
        match $t {
            $crate::Tensor::F32($a) => $body,
            $crate::Tensor::F64($a) => $body,
            $crate::Tensor::F16($a) => $body,
            $crate::Tensor::BF16($a) => $body,
            $crate::Tensor::I8($a) => $body,
            $crate::Tensor::U8($a) => $body,
            $crate::Tensor::I16($a) => $body,
            $crate::Tensor::U16($a) => $body,
            $crate::Tensor::I32($a) => $body,
            $crate::Tensor::U32($a) => $body,
            $crate::Tensor::I64($a) => $body,
            $crate::Tensor::U64($a) => $body,
            $crate::Tensor::Bool($a) => $body,
            $crate::Tensor::String($a) => $body,
            $crate::Tensor::Packed($p) => $packed,
        }
    };
}

/// Element types with a native array variant in [`Tensor`].
pub trait Element: Clone + Default + Send + Sync + 'static {
    const DTYPE: DType;
    fn wrap(a: ArrayD<Self>) -> Tensor;
    fn view(t: &Tensor) -> Option<&ArrayD<Self>>;
    fn view_mut(t: &mut Tensor) -> Option<&mut ArrayD<Self>>;
    fn unwrap(t: Tensor) -> Result<ArrayD<Self>, Tensor>;
}

macro_rules! element {
    ($t:ty, $v:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$v;
            fn wrap(a: ArrayD<Self>) -> Tensor {
                Tensor::$v(a)
            }
            fn view(t: &Tensor) -> Option<&ArrayD<Self>> {
                if let Tensor::$v(a) = t { Some(a) } else { None }
            }
            fn view_mut(t: &mut Tensor) -> Option<&mut ArrayD<Self>> {
                if let Tensor::$v(a) = t { Some(a) } else { None }
            }
            fn unwrap(t: Tensor) -> Result<ArrayD<Self>, Tensor> {
                if let Tensor::$v(a) = t { Ok(a) } else { Err(t) }
            }
        }
    };
}
element!(f32, F32);
element!(f64, F64);
element!(f16, F16);
element!(bf16, BF16);
element!(i8, I8);
element!(u8, U8);
element!(i16, I16);
element!(u16, U16);
element!(i32, I32);
element!(u32, U32);
element!(i64, I64);
element!(u64, U64);
element!(bool, Bool);
element!(String, String);

/// Converts ONNX dims (i64) to a runtime shape.
pub fn shape_from_dims(dims: &[i64]) -> Result<Vec<usize>, TensorError> {
    dims.iter()
        .map(|&d| usize::try_from(d).map_err(|_| TensorError::BadShape(dims.to_vec())))
        .collect()
}

/// Number of elements of a shape, or `None` on overflow.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl Tensor {
    /// Builds a tensor from a shape and a flat row-major vector.
    pub fn from_vec<T: Element>(shape: &[usize], data: Vec<T>) -> Result<Tensor, TensorError> {
        let expected = checked_numel(shape)
            .ok_or_else(|| TensorError::BadShape(shape.iter().map(|&d| d as i64).collect()))?;
        if expected != data.len() {
            return Err(TensorError::ElementCount {
                shape: shape.to_vec(),
                expected,
                got: data.len(),
            });
        }
        Ok(T::wrap(
            ArrayD::from_shape_vec(IxDyn(shape), data).expect("length checked above"),
        ))
    }

    /// A 0-d tensor holding one value.
    pub fn scalar<T: Element>(v: T) -> Tensor {
        T::wrap(ArrayD::from_elem(IxDyn(&[]), v))
    }

    /// A tensor of `shape` filled with the zero of `dtype` (empty string, false, 0).
    pub fn zeros(dtype: DType, shape: &[usize]) -> Result<Tensor, TensorError> {
        let n = checked_numel(shape)
            .ok_or_else(|| TensorError::BadShape(shape.iter().map(|&d| d as i64).collect()))?;
        let len = dtype.byte_len(n).unwrap_or(0);
        Tensor::from_le_bytes(dtype, shape, &vec![0u8; len]).or_else(|_| {
            Ok(Tensor::String(ArrayD::from_elem(
                IxDyn(shape),
                String::new(),
            )))
        })
    }

    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::F64(_) => DType::F64,
            Tensor::F16(_) => DType::F16,
            Tensor::BF16(_) => DType::BF16,
            Tensor::I8(_) => DType::I8,
            Tensor::U8(_) => DType::U8,
            Tensor::I16(_) => DType::I16,
            Tensor::U16(_) => DType::U16,
            Tensor::I32(_) => DType::I32,
            Tensor::U32(_) => DType::U32,
            Tensor::I64(_) => DType::I64,
            Tensor::U64(_) => DType::U64,
            Tensor::Bool(_) => DType::Bool,
            Tensor::String(_) => DType::String,
            Tensor::Packed(p) => p.dtype,
        }
    }

    pub fn shape(&self) -> &[usize] {
        dispatch_tensor!(self, a => a.shape(), p => &p.shape)
    }

    pub fn rank(&self) -> usize {
        self.shape().len()
    }

    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The inner array, if the element type is `T`.
    pub fn view<T: Element>(&self) -> Result<&ArrayD<T>, TensorError> {
        T::view(self).ok_or(TensorError::DType {
            expected: T::DTYPE,
            got: self.dtype(),
        })
    }

    pub fn view_mut<T: Element>(&mut self) -> Result<&mut ArrayD<T>, TensorError> {
        let got = self.dtype();
        T::view_mut(self).ok_or(TensorError::DType {
            expected: T::DTYPE,
            got,
        })
    }

    pub fn into_array<T: Element>(self) -> Result<ArrayD<T>, TensorError> {
        T::unwrap(self).map_err(|t| TensorError::DType {
            expected: T::DTYPE,
            got: t.dtype(),
        })
    }

    /// Contiguous row-major elements (copies only when the array is not in standard layout).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>, TensorError> {
        let a = self.view::<T>()?;
        Ok(match a.as_slice() {
            Some(s) => s.to_vec(),
            None => a.iter().cloned().collect(),
        })
    }

    /// Reads ONNX's packed little-endian `raw_data` layout. Strings have no such layout.
    pub fn from_le_bytes(
        dtype: DType,
        shape: &[usize],
        bytes: &[u8],
    ) -> Result<Tensor, TensorError> {
        let n = checked_numel(shape)
            .ok_or_else(|| TensorError::BadShape(shape.iter().map(|&d| d as i64).collect()))?;
        let Some(expected) = dtype.byte_len(n) else {
            return Err(TensorError::DType {
                expected: DType::U8,
                got: dtype,
            });
        };
        if bytes.len() != expected {
            return Err(TensorError::ByteLength {
                dtype,
                shape: shape.to_vec(),
                expected,
                got: bytes.len(),
            });
        }
        macro_rules! read {
            ($t:ty, $w:expr) => {{
                let v: Vec<$t> = bytes
                    .chunks_exact($w)
                    .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk width")))
                    .collect();
                Tensor::from_vec(shape, v)?
            }};
        }
        Ok(match dtype {
            DType::F32 => read!(f32, 4),
            DType::F64 => read!(f64, 8),
            DType::F16 => read!(f16, 2),
            DType::BF16 => read!(bf16, 2),
            DType::I8 => read!(i8, 1),
            DType::U8 => read!(u8, 1),
            DType::I16 => read!(i16, 2),
            DType::U16 => read!(u16, 2),
            DType::I32 => read!(i32, 4),
            DType::U32 => read!(u32, 4),
            DType::I64 => read!(i64, 8),
            DType::U64 => read!(u64, 8),
            DType::Bool => {
                Tensor::from_vec(shape, bytes.iter().map(|&b| b != 0).collect::<Vec<bool>>())?
            }
            _ => Tensor::Packed(PackedTensor {
                dtype,
                shape: shape.to_vec(),
                bytes: bytes.to_vec(),
            }),
        })
    }

    /// Writes ONNX's packed little-endian `raw_data` layout. `None` for strings.
    pub fn to_le_bytes(&self) -> Option<Vec<u8>> {
        macro_rules! write {
            ($a:expr) => {{
                let mut out = Vec::with_capacity(
                    $a.len()
                        * std::mem::size_of_val(&$a.iter().next().copied().unwrap_or_default()),
                );
                for v in $a.iter() {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                out
            }};
        }
        Some(match self {
            Tensor::F32(a) => write!(a),
            Tensor::F64(a) => write!(a),
            Tensor::F16(a) => write!(a),
            Tensor::BF16(a) => write!(a),
            Tensor::I8(a) => write!(a),
            Tensor::U8(a) => a.iter().copied().collect(),
            Tensor::I16(a) => write!(a),
            Tensor::U16(a) => write!(a),
            Tensor::I32(a) => write!(a),
            Tensor::U32(a) => write!(a),
            Tensor::I64(a) => write!(a),
            Tensor::U64(a) => write!(a),
            Tensor::Bool(a) => a.iter().map(|&b| b as u8).collect(),
            Tensor::String(_) => return None,
            Tensor::Packed(p) => p.bytes.clone(),
        })
    }

    /// Values converted to f64, for comparisons and statistics (`None` for strings and packed types).
    pub fn to_f64_vec(&self) -> Option<Vec<f64>> {
        Some(match self {
            Tensor::F32(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::F64(a) => a.iter().copied().collect(),
            Tensor::F16(a) => a.iter().map(|v| v.to_f64()).collect(),
            Tensor::BF16(a) => a.iter().map(|v| v.to_f64()).collect(),
            Tensor::I8(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::U8(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::I16(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::U16(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::I32(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::U32(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::I64(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::U64(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::Bool(a) => a.iter().map(|&v| v as u8 as f64).collect(),
            Tensor::String(_) | Tensor::Packed(_) => return None,
        })
    }

    /// Integer values as i64 (for shape-like tensors: Reshape shapes, Slice starts, axes, ...).
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        Some(match self {
            Tensor::I64(a) => a.iter().copied().collect(),
            Tensor::I32(a) => a.iter().map(|&v| v as i64).collect(),
            Tensor::I8(a) => a.iter().map(|&v| v as i64).collect(),
            Tensor::U8(a) => a.iter().map(|&v| v as i64).collect(),
            Tensor::I16(a) => a.iter().map(|&v| v as i64).collect(),
            Tensor::U16(a) => a.iter().map(|&v| v as i64).collect(),
            Tensor::U32(a) => a.iter().map(|&v| v as i64).collect(),
            Tensor::U64(a) => a.iter().map(|&v| v as i64).collect(),
            Tensor::Bool(a) => a.iter().map(|&v| v as i64).collect(),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn le_bytes_round_trip_every_native_type() {
        for d in DType::ALL {
            if d == DType::String {
                continue;
            }
            let n = 6;
            let len = d.byte_len(n).unwrap();
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    if d == DType::Bool {
                        (i % 2) as u8
                    } else {
                        (i * 37 + 1) as u8
                    }
                })
                .collect();
            let t = Tensor::from_le_bytes(d, &[2, 3], &bytes).unwrap();
            assert_eq!(t.dtype(), d);
            assert_eq!(t.shape(), &[2, 3]);
            assert_eq!(t.to_le_bytes().unwrap(), bytes, "{d}");
        }
    }

    #[test]
    fn wrong_byte_length_is_an_error() {
        let e = Tensor::from_le_bytes(DType::F32, &[2], &[0; 7]).unwrap_err();
        assert!(e.to_string().contains("needs 8 bytes"), "{e}");
    }

    #[test]
    fn from_vec_checks_count() {
        assert!(Tensor::from_vec(&[2, 2], vec![1f32, 2., 3.]).is_err());
        let t = Tensor::from_vec(&[2, 2], vec![1f32, 2., 3., 4.]).unwrap();
        assert_eq!(t.to_vec::<f32>().unwrap(), vec![1., 2., 3., 4.]);
        assert!(t.view::<i64>().is_err());
    }
}
