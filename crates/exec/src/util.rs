//! Helpers shared by the op families: input access, axis normalisation, numpy broadcasting, a fast
//! strided binary kernel, and the small numeric traits (`Num`, `Float`) the generic kernels use.

use crate::error::OpError;
use ndarray::{ArrayD, IxDyn};
use qtool_tensor::{Element, Tensor, bf16, f16};
use rayon::prelude::*;
use std::borrow::Cow;

/// Element count above which element-wise kernels split work across the rayon pool.
pub(crate) const PAR_THRESHOLD: usize = 1 << 15;

/// Required input `i`.
pub(crate) fn req<'a>(
    inputs: &[Option<&'a Tensor>],
    i: usize,
    what: &str,
) -> Result<&'a Tensor, OpError> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| OpError(format!("missing required input {i} ({what})")))
}

/// Optional input `i` (absent or not given).
pub(crate) fn opt<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    inputs.get(i).copied().flatten()
}

/// Integer values of a shape-like tensor.
pub(crate) fn ints(t: &Tensor, what: &str) -> Result<Vec<i64>, OpError> {
    t.to_i64_vec().ok_or_else(|| {
        OpError(format!(
            "{what} must be an integer tensor, got {}",
            t.dtype()
        ))
    })
}

/// The single value of a one-element integer tensor.
pub(crate) fn int_scalar(t: &Tensor, what: &str) -> Result<i64, OpError> {
    let v = ints(t, what)?;
    if v.len() != 1 {
        return Err(OpError(format!(
            "{what} must hold one value, got shape {:?}",
            t.shape()
        )));
    }
    Ok(v[0])
}

/// Normalises a possibly negative axis against `rank`.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(OpError(format!(
            "axis {axis} is out of range for rank {rank}"
        )));
    }
    Ok(a as usize)
}

/// Normalises a list of axes (each must be unique).
pub(crate) fn norm_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, OpError> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = norm_axis(a, rank)?;
        if out.contains(&n) {
            return Err(OpError(format!("axis {a} is repeated in {axes:?}")));
        }
        out.push(n);
    }
    Ok(out)
}

/// Numpy multidirectional broadcasting of two shapes.
pub(crate) fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>, OpError> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = if da == db {
            da
        } else if da == 1 {
            db
        } else if db == 1 {
            da
        } else {
            return Err(OpError(format!(
                "shapes {a:?} and {b:?} cannot be broadcast together"
            )));
        };
    }
    Ok(out)
}

/// The elements of a tensor's array in row-major order, borrowed when already contiguous.
pub(crate) fn elems<T: Clone>(a: &ArrayD<T>) -> Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().cloned().collect()),
    }
}

/// Builds an array from a shape and matching row-major data.
pub(crate) fn arr<T>(shape: &[usize], v: Vec<T>) -> ArrayD<T> {
    ArrayD::from_shape_vec(IxDyn(shape), v).expect("kernel produced a buffer of the wrong length")
}

/// Wraps an array as a tensor, making its layout standard (row-major).
pub(crate) fn wrap<T: Element>(a: ArrayD<T>) -> Tensor {
    if a.is_standard_layout() {
        T::wrap(a)
    } else {
        T::wrap(a.as_standard_layout().into_owned())
    }
}

/// Elements per parallel work item of an element-wise kernel over `n` elements, or `None` when the
/// work is better done inline on the current thread (small input, or a single-thread pool: rayon's
/// per-element collect is far slower than a plain loop, which the compiler vectorizes).
fn par_chunk(n: usize) -> Option<usize> {
    let threads = rayon::current_num_threads();
    (threads > 1 && n >= PAR_THRESHOLD).then(|| (n.div_ceil(threads * 4)).max(4096))
}

/// Applies `f` to a copy of `a`'s f32 elements, in place, in chunks (in parallel for large inputs):
/// for slice kernels such as `qtool_kernels::Activation::apply`.
pub(crate) fn map_f32_slices(a: &ArrayD<f32>, f: impl Fn(&mut [f32]) + Sync + Send) -> ArrayD<f32> {
    let mut v = elems(a).into_owned();
    match par_chunk(v.len()) {
        Some(c) => v.par_chunks_mut(c).for_each(&f),
        None => f(&mut v),
    }
    arr(a.shape(), v)
}

/// Maps every element (in parallel for large inputs).
pub(crate) fn map_vec<A: Sync, O: Send + Clone + Default>(
    xs: &[A],
    f: impl Fn(&A) -> O + Sync + Send,
) -> Vec<O> {
    match par_chunk(xs.len()) {
        Some(c) => {
            let mut out = vec![O::default(); xs.len()];
            out.par_chunks_mut(c)
                .zip(xs.par_chunks(c))
                .for_each(|(o, x)| {
                    for (o, x) in o.iter_mut().zip(x) {
                        *o = f(x);
                    }
                });
            out
        }
        None => xs.iter().map(f).collect(),
    }
}

/// Maps an array element-wise into a new array of the same shape.
pub(crate) fn map_arr<A: Clone + Sync, O: Send + Clone + Default>(
    a: &ArrayD<A>,
    f: impl Fn(&A) -> O + Sync + Send,
) -> ArrayD<O> {
    let v = map_vec(&elems(a), f);
    arr(a.shape(), v)
}

/// Element-wise binary op with numpy broadcasting. Same-shape, scalar and channel/row broadcasts all
/// run as tight loops over contiguous runs (dimensions are coalesced; broadcast operands have stride 0).
pub(crate) fn broadcast_binary<A: Clone + Sync, B: Clone + Sync, O: Send + Clone + Default>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: impl Fn(&A, &B) -> O + Sync + Send,
) -> Result<ArrayD<O>, OpError> {
    let out_shape = broadcast_shapes(a.shape(), b.shape())?;
    let av = elems(a);
    let bv = elems(b);
    let v = binary_kernel(&av, a.shape(), &bv, b.shape(), &out_shape, &f);
    Ok(arr(&out_shape, v))
}

fn bcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let r = out.len();
    let mut s = vec![0; r];
    let mut acc = 1;
    for i in (0..r).rev() {
        let j = i as isize - (r - shape.len()) as isize;
        if j >= 0 {
            let d = shape[j as usize];
            s[i] = if d == 1 { 0 } else { acc };
            acc *= d;
        }
    }
    s
}

/// Coalesces dimensions of `out` where both operands' strides are compatible; drops size-1 dims.
fn coalesce(out: &[usize], sa: &[usize], sb: &[usize]) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let (mut d, mut a, mut b): (Vec<usize>, Vec<usize>, Vec<usize>) = (vec![], vec![], vec![]);
    for i in 0..out.len() {
        if out[i] == 1 {
            continue;
        }
        if let (Some(&pd), Some(&pa), Some(&pb)) = (d.last(), a.last(), b.last()) {
            let _ = pd;
            if pa == sa[i] * out[i] && pb == sb[i] * out[i] {
                let l = d.len() - 1;
                d[l] *= out[i];
                a[l] = sa[i];
                b[l] = sb[i];
                continue;
            }
        }
        d.push(out[i]);
        a.push(sa[i]);
        b.push(sb[i]);
    }
    (d, a, b)
}

fn binary_kernel<A: Clone + Sync, B: Clone + Sync, O: Send + Clone + Default>(
    av: &[A],
    ash: &[usize],
    bv: &[B],
    bsh: &[usize],
    out_shape: &[usize],
    f: &(impl Fn(&A, &B) -> O + Sync + Send),
) -> Vec<O> {
    let n: usize = out_shape.iter().product();
    if n == 0 {
        return Vec::new();
    }
    // Fast paths: same shape, scalar operand.
    if ash == bsh {
        return match par_chunk(n) {
            Some(c) => {
                let mut out = vec![O::default(); n];
                out.par_chunks_mut(c)
                    .zip(av.par_chunks(c).zip(bv.par_chunks(c)))
                    .for_each(|(o, (a, b))| {
                        for ((o, x), y) in o.iter_mut().zip(a).zip(b) {
                            *o = f(x, y);
                        }
                    });
                out
            }
            None => av.iter().zip(bv).map(|(x, y)| f(x, y)).collect(),
        };
    }
    if bv.len() == 1 && av.len() == n {
        let y = &bv[0];
        return map_vec(av, |x| f(x, y));
    }
    if av.len() == 1 && bv.len() == n {
        let x = &av[0];
        return map_vec(bv, |y| f(x, y));
    }
    let sa = bcast_strides(ash, out_shape);
    let sb = bcast_strides(bsh, out_shape);
    let (dims, sa, sb) = coalesce(out_shape, &sa, &sb);
    let r = dims.len();
    let inner = dims[r - 1];
    let (ia, ib) = (sa[r - 1], sb[r - 1]);
    let outer_dims = &dims[..r - 1];
    // Writes row `ri` (row-major over the outer dims) into `out` (`inner` elements).
    let row = |ri: usize, out: &mut [O]| {
        let (mut oa, mut ob, mut rem) = (0, 0, ri);
        for k in (0..outer_dims.len()).rev() {
            let i = rem % outer_dims[k];
            rem /= outer_dims[k];
            oa += i * sa[k];
            ob += i * sb[k];
        }
        match (ia, ib) {
            (1, 1) => {
                for ((o, x), y) in out
                    .iter_mut()
                    .zip(&av[oa..oa + inner])
                    .zip(&bv[ob..ob + inner])
                {
                    *o = f(x, y);
                }
            }
            (1, 0) => {
                let y = &bv[ob];
                for (o, x) in out.iter_mut().zip(&av[oa..oa + inner]) {
                    *o = f(x, y);
                }
            }
            (0, 1) => {
                let x = &av[oa];
                for (o, y) in out.iter_mut().zip(&bv[ob..ob + inner]) {
                    *o = f(x, y);
                }
            }
            _ => {
                for (j, o) in out.iter_mut().enumerate() {
                    *o = f(&av[oa + j * ia], &bv[ob + j * ib]);
                }
            }
        }
    };
    let mut out = vec![O::default(); n];
    match par_chunk(n) {
        Some(c) if n / inner > 1 => {
            // Whole rows per work item.
            let rows_per = c.div_ceil(inner).max(1);
            out.par_chunks_mut(rows_per * inner)
                .enumerate()
                .for_each(|(ci, o)| {
                    for (k, o) in o.chunks_mut(inner).enumerate() {
                        row(ci * rows_per + k, o);
                    }
                });
        }
        _ => {
            for (ri, o) in out.chunks_mut(inner).enumerate() {
                row(ri, o);
            }
        }
    }
    out
}

/// Numeric element types (every native tensor type except bool and string).
pub(crate) trait Num: Element + Copy + PartialOrd + Send + Sync + std::fmt::Debug {
    const IS_FLOAT: bool;
    fn zero() -> Self;
    fn one() -> Self;
    fn to_f64(self) -> f64;
    /// Conversion from f64 (`as` semantics for integers: truncation, saturating).
    fn from_f64(v: f64) -> Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// Division; `None` for an integer division by zero. Integers truncate toward zero.
    fn div(self, o: Self) -> Option<Self>;
    /// Remainder: `fmod` = C fmod (sign of the dividend), else Python mod (sign of the divisor).
    fn rem(self, o: Self, fmod: bool) -> Option<Self>;
    fn neg(self) -> Self;
    fn abs(self) -> Self;
    fn is_nan(self) -> bool;
    /// -1, 0 or 1 (NaN stays NaN).
    fn sign(self) -> Self;
    /// Max that propagates NaN.
    fn max_nan(self, o: Self) -> Self {
        if self.is_nan() || o.is_nan() {
            if self.is_nan() { self } else { o }
        } else if o > self {
            o
        } else {
            self
        }
    }
    /// Min that propagates NaN.
    fn min_nan(self, o: Self) -> Self {
        if self.is_nan() || o.is_nan() {
            if self.is_nan() { self } else { o }
        } else if o < self {
            o
        } else {
            self
        }
    }
}

macro_rules! num_int {
    ($($t:ty, $signed:expr);*) => {$(
        impl Num for $t {
            const IS_FLOAT: bool = false;
            fn zero() -> Self { 0 }
            fn one() -> Self { 1 }
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self { v as $t }
            fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            fn sub(self, o: Self) -> Self { self.wrapping_sub(o) }
            fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            fn div(self, o: Self) -> Option<Self> { if o == 0 { None } else { Some(self.wrapping_div(o)) } }
            fn rem(self, o: Self, fmod: bool) -> Option<Self> {
                if o == 0 { return None; }
                let r = self.wrapping_rem(o);
                #[allow(unused_comparisons)]
                let fix = !fmod && r != 0 && ((r < 0) != (o < 0));
                Some(if fix { r.wrapping_add(o) } else { r })
            }
            #[allow(clippy::unnecessary_cast)]
            fn neg(self) -> Self { (0 as $t).wrapping_sub(self) }
            #[allow(unused_comparisons)]
            fn abs(self) -> Self { if $signed && self < 0 { self.neg() } else { self } }
            fn is_nan(self) -> bool { false }
            #[allow(unused_comparisons)]
            fn sign(self) -> Self { if self > 0 { 1 } else if self == 0 { 0 } else { (0 as $t).wrapping_sub(1) } }
        }
    )*};
}
num_int!(i8, true; u8, false; i16, true; u16, false; i32, true; u32, false; i64, true; u64, false);

macro_rules! num_float {
    ($($t:ty);*) => {$(
        impl Num for $t {
            const IS_FLOAT: bool = true;
            fn zero() -> Self { 0.0 }
            fn one() -> Self { 1.0 }
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self { v as $t }
            fn add(self, o: Self) -> Self { self + o }
            fn sub(self, o: Self) -> Self { self - o }
            fn mul(self, o: Self) -> Self { self * o }
            fn div(self, o: Self) -> Option<Self> { Some(self / o) }
            fn rem(self, o: Self, fmod: bool) -> Option<Self> {
                let r = self % o;
                Some(if !fmod && r != 0.0 && ((r < 0.0) != (o < 0.0)) { r + o } else { r })
            }
            fn neg(self) -> Self { -self }
            fn abs(self) -> Self { self.abs() }
            fn is_nan(self) -> bool { self.is_nan() }
            fn sign(self) -> Self { if self > 0.0 { 1.0 } else if self < 0.0 { -1.0 } else { self } }
        }
    )*};
}
num_float!(f32; f64);

macro_rules! num_half {
    ($($t:ty);*) => {$(
        impl Num for $t {
            const IS_FLOAT: bool = true;
            fn zero() -> Self { <$t>::ZERO }
            fn one() -> Self { <$t>::ONE }
            fn to_f64(self) -> f64 { self.to_f64() }
            fn from_f64(v: f64) -> Self { <$t>::from_f64(v) }
            fn add(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() + o.to_f32()) }
            fn sub(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() - o.to_f32()) }
            fn mul(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() * o.to_f32()) }
            fn div(self, o: Self) -> Option<Self> { Some(<$t>::from_f32(self.to_f32() / o.to_f32())) }
            fn rem(self, o: Self, fmod: bool) -> Option<Self> { self.to_f32().rem(o.to_f32(), fmod).map(<$t>::from_f32) }
            fn neg(self) -> Self { -self }
            fn abs(self) -> Self { <$t>::from_f32(self.to_f32().abs()) }
            fn is_nan(self) -> bool { self.is_nan() }
            fn sign(self) -> Self { <$t>::from_f32(Num::sign(self.to_f32())) }
        }
    )*};
}
num_half!(f16; bf16);

/// Floating-point element types: math is done in f32 (f32, f16, bf16) or f64 (f64).
pub(crate) trait Float: Num {
    fn to_f32(self) -> f32;
    fn from_f32(v: f32) -> Self;
}
impl Float for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(v: f32) -> Self {
        v
    }
}
impl Float for f64 {
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn from_f32(v: f32) -> Self {
        v as f64
    }
}
impl Float for f16 {
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
}
impl Float for bf16 {
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
}

/// Dispatches over the numeric tensor variants, binding the inner array to `$a` (generic over
/// [`Num`] in `$body`); `$other` runs for bool, string and packed tensors.
#[macro_export]
#[doc(hidden)]
macro_rules! num_dispatch {
    ($t:expr, $a:ident => $body:expr, $other:expr) => {
        match $t {
            qtool_tensor::Tensor::F32($a) => $body,
            qtool_tensor::Tensor::F64($a) => $body,
            qtool_tensor::Tensor::F16($a) => $body,
            qtool_tensor::Tensor::BF16($a) => $body,
            qtool_tensor::Tensor::I8($a) => $body,
            qtool_tensor::Tensor::U8($a) => $body,
            qtool_tensor::Tensor::I16($a) => $body,
            qtool_tensor::Tensor::U16($a) => $body,
            qtool_tensor::Tensor::I32($a) => $body,
            qtool_tensor::Tensor::U32($a) => $body,
            qtool_tensor::Tensor::I64($a) => $body,
            qtool_tensor::Tensor::U64($a) => $body,
            _ => $other,
        }
    };
}

/// Like [`num_dispatch`] for the floating-point variants (generic over [`Float`]).
#[macro_export]
#[doc(hidden)]
macro_rules! float_dispatch {
    ($t:expr, $a:ident => $body:expr, $other:expr) => {
        match $t {
            qtool_tensor::Tensor::F32($a) => $body,
            qtool_tensor::Tensor::F64($a) => $body,
            qtool_tensor::Tensor::F16($a) => $body,
            qtool_tensor::Tensor::BF16($a) => $body,
            _ => $other,
        }
    };
}

/// Dispatches a pair of tensors of the same numeric type.
#[macro_export]
#[doc(hidden)]
macro_rules! num_dispatch2 {
    ($x:expr, $y:expr, $a:ident, $b:ident => $body:expr, $other:expr) => {
        match ($x, $y) {
            (qtool_tensor::Tensor::F32($a), qtool_tensor::Tensor::F32($b)) => $body,
            (qtool_tensor::Tensor::F64($a), qtool_tensor::Tensor::F64($b)) => $body,
            (qtool_tensor::Tensor::F16($a), qtool_tensor::Tensor::F16($b)) => $body,
            (qtool_tensor::Tensor::BF16($a), qtool_tensor::Tensor::BF16($b)) => $body,
            (qtool_tensor::Tensor::I8($a), qtool_tensor::Tensor::I8($b)) => $body,
            (qtool_tensor::Tensor::U8($a), qtool_tensor::Tensor::U8($b)) => $body,
            (qtool_tensor::Tensor::I16($a), qtool_tensor::Tensor::I16($b)) => $body,
            (qtool_tensor::Tensor::U16($a), qtool_tensor::Tensor::U16($b)) => $body,
            (qtool_tensor::Tensor::I32($a), qtool_tensor::Tensor::I32($b)) => $body,
            (qtool_tensor::Tensor::U32($a), qtool_tensor::Tensor::U32($b)) => $body,
            (qtool_tensor::Tensor::I64($a), qtool_tensor::Tensor::I64($b)) => $body,
            (qtool_tensor::Tensor::U64($a), qtool_tensor::Tensor::U64($b)) => $body,
            _ => $other,
        }
    };
}

/// Error for an op given a tensor type it does not accept.
pub(crate) fn bad_type(op: &str, t: &Tensor) -> OpError {
    OpError(format!("{op} does not support {} tensors", t.dtype()))
}

/// Error for binary ops given two different element types.
pub(crate) fn mismatch(op: &str, a: &Tensor, b: &Tensor) -> OpError {
    if a.dtype() == b.dtype() {
        bad_type(op, a)
    } else {
        OpError(format!(
            "{op}: inputs have different element types {} and {}",
            a.dtype(),
            b.dtype()
        ))
    }
}

/// The contiguous strides of a shape.
pub(crate) fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}
