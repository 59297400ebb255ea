//! Element-wise ops: activations, unary math, numpy-broadcasting arithmetic / comparison / logic,
//! variadic Max/Min/Sum/Mean, Where, Softmax/LogSoftmax, Cast/CastLike, Identity and Dropout.
//!
//! Numerics follow ONNX Runtime's CPU provider: integer Div truncates toward zero, Mod follows
//! `fmod` (C remainder) or Python's sign-of-divisor rule, Round is half-to-even, Max/Min propagate
//! NaN, float to integer Cast truncates toward zero with x86's out-of-range behaviour (no saturation),
//! f16/bf16 math is done in f32.

use super::OpCtx;
use crate::error::OpError;
use crate::util::{
    Float, Num, bad_type, broadcast_binary, broadcast_shapes, map_arr, map_f32_slices, mismatch,
    norm_axis, opt, req, wrap,
};
use crate::{bail, float_dispatch, num_dispatch, num_dispatch2};
use ndarray::{ArrayD, IxDyn, Zip};
use qtool_ir::Op;
use qtool_tensor::{DType, Element, Tensor, bf16, f16};

type R = Result<Vec<Tensor>, OpError>;

/// Maps a float tensor element-wise; `x` is bound as f32 (f32, f16, bf16) or f64, and each
/// `[name = value]` parameter (an f64) is cast to that type first.
macro_rules! float_unary {
    ($t:expr, $name:expr, [$($p:ident = $v:expr),* $(,)?], |$x:ident| $e:expr) => {{
        #[allow(clippy::redundant_closure_call, unused_variables)]
        let r: Result<Tensor, OpError> = match $t {
            Tensor::F32(a) => {
                $(let $p = $v as f32;)*
                Ok(Tensor::F32(map_arr(a, |&$x: &f32| $e)))
            }
            Tensor::F64(a) => {
                $(let $p = $v as f64;)*
                Ok(Tensor::F64(map_arr(a, |&$x: &f64| $e)))
            }
            Tensor::F16(a) => {
                $(let $p = $v as f32;)*
                Ok(Tensor::F16(map_arr(a, |v: &f16| { let $x = v.to_f32(); f16::from_f32($e) })))
            }
            Tensor::BF16(a) => {
                $(let $p = $v as f32;)*
                Ok(Tensor::BF16(map_arr(a, |v: &bf16| { let $x = v.to_f32(); bf16::from_f32($e) })))
            }
            other => Err(bad_type($name, other)),
        };
        r
    }};
}

pub(crate) fn eval(op: &Op, cx: &OpCtx, inputs: &[Option<&Tensor>]) -> Option<R> {
    let name = op.op_type();
    let x = || req(inputs, 0, "X");
    let one = |r: Result<Tensor, OpError>| r.map(|t| vec![t]);
    Some(match op {
        Op::Relu(_) => x().and_then(|t| num_unary(t, name, UnaryNum::Relu)).map(|t| vec![t]),
        Op::LeakyRelu(o) => {
            let alpha = o.alpha.unwrap_or(0.01) as f64;
            x().and_then(|t| float_unary!(t, name, [alpha = alpha], |x| if x >= 0.0 { x } else { alpha * x })).map(|t| vec![t])
        }
        Op::PRelu(_) => one(prelu(inputs)),
        Op::Elu(o) => {
            let alpha = o.alpha.unwrap_or(1.0) as f64;
            x().and_then(|t| float_unary!(t, name, [alpha = alpha], |x| if x >= 0.0 { x } else { alpha * (x.exp() - 1.0) })).map(|t| vec![t])
        }
        Op::Selu(o) => {
            let alpha = o.alpha.unwrap_or(1.673_263_2) as f64;
            let gamma = o.gamma.unwrap_or(1.050_701) as f64;
            x().and_then(|t| {
                float_unary!(t, name, [alpha = alpha, gamma = gamma], |x| if x > 0.0 { gamma * x } else { gamma * (alpha * x.exp() - alpha) })
            })
            .map(|t| vec![t])
        }
        Op::Gelu(o) => {
            let tanh = match o.approximate.as_deref().unwrap_or("none") {
                "none" => false,
                "tanh" => true,
                other => return Some(Err(OpError(format!("Gelu: unknown approximate '{other}'")))),
            };
            x().and_then(|t| {
                if tanh {
                    float_unary!(t, name, [c = (2.0f64 / std::f64::consts::PI).sqrt()], |x| 0.5
                        * x
                        * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh()))
                } else {
                    float_unary!(t, name, [r = std::f64::consts::FRAC_1_SQRT_2], |x| 0.5 * x * (1.0 + MathExt::erf(x * r)))
                }
            })
            .map(|t| vec![t])
        }
        Op::Clip(o) => one(clip(o, cx, inputs)),
        Op::Sigmoid(_) => x()
            .and_then(|t| match t {
                // The vectorized sigmoid, which a Conv's fused Sigmoid/SiLU output stage also uses.
                Tensor::F32(a) => Ok(Tensor::F32(map_f32_slices(a, |v| {
                    qtool_kernels::Activation::Sigmoid.apply(v)
                }))),
                t => float_unary!(t, name, [], |x| sigmoid(x)),
            })
            .map(|t| vec![t]),
        Op::HardSigmoid(o) => {
            let (alpha, beta) = (o.alpha.unwrap_or(0.2) as f64, o.beta.unwrap_or(0.5) as f64);
            x().and_then(|t| float_unary!(t, name, [alpha = alpha, beta = beta], |x| (alpha * x + beta).clamp(0.0, 1.0))).map(|t| vec![t])
        }
        Op::HardSwish(_) => x()
            .and_then(|t| float_unary!(t, name, [alpha = 1.0f64 / 6.0], |x| x * (alpha * x + 0.5).clamp(0.0, 1.0)))
            .map(|t| vec![t]),
        Op::Softplus(_) => x()
            .and_then(|t| float_unary!(t, name, [], |x| if x > 0.0 { x + (-x).exp().ln_1p() } else { x.exp().ln_1p() }))
            .map(|t| vec![t]),
        Op::Tanh(_) => x().and_then(|t| float_unary!(t, name, [], |x| x.tanh())).map(|t| vec![t]),
        Op::Erf(_) => x().and_then(|t| float_unary!(t, name, [], |x| MathExt::erf(x))).map(|t| vec![t]),
        Op::Exp(_) => x().and_then(|t| float_unary!(t, name, [], |x| x.exp())).map(|t| vec![t]),
        Op::Log(_) => x().and_then(|t| float_unary!(t, name, [], |x| x.ln())).map(|t| vec![t]),
        Op::Sqrt(_) => x().and_then(|t| float_unary!(t, name, [], |x| x.sqrt())).map(|t| vec![t]),
        Op::Reciprocal(_) => x().and_then(|t| float_unary!(t, name, [], |x| 1.0 / x)).map(|t| vec![t]),
        Op::Floor(_) => x().and_then(|t| float_unary!(t, name, [], |x| x.floor())).map(|t| vec![t]),
        Op::Ceil(_) => x().and_then(|t| float_unary!(t, name, [], |x| x.ceil())).map(|t| vec![t]),
        Op::Round(_) => x().and_then(|t| float_unary!(t, name, [], |x| x.round_ties_even())).map(|t| vec![t]),
        Op::Sin(_) => x().and_then(|t| float_unary!(t, name, [], |x| x.sin())).map(|t| vec![t]),
        Op::Cos(_) => x().and_then(|t| float_unary!(t, name, [], |x| x.cos())).map(|t| vec![t]),
        Op::Neg(_) => x().and_then(|t| num_unary(t, name, UnaryNum::Neg)).map(|t| vec![t]),
        Op::Abs(_) => x().and_then(|t| num_unary(t, name, UnaryNum::Abs)).map(|t| vec![t]),
        Op::Sign(_) => x().and_then(|t| num_unary(t, name, UnaryNum::Sign)).map(|t| vec![t]),
        Op::Pow(_) => one(pow(inputs)),
        Op::Softmax(o) => one(x().and_then(|t| softmax(t, o.axis, cx.opset, false))),
        Op::LogSoftmax(o) => one(x().and_then(|t| softmax(t, o.axis, cx.opset, true))),
        Op::Add(_) => one(arith(inputs, name, Arith::Add)),
        Op::Sub(_) => one(arith(inputs, name, Arith::Sub)),
        Op::Mul(_) => one(arith(inputs, name, Arith::Mul)),
        Op::Div(_) => one(arith(inputs, name, Arith::Div)),
        Op::Mod(o) => one(arith(inputs, name, Arith::Mod(o.fmod.unwrap_or(0) != 0))),
        Op::Max(_) => one(variadic(inputs, name, Arith::Max)),
        Op::Min(_) => one(variadic(inputs, name, Arith::Min)),
        Op::Sum(_) => one(variadic(inputs, name, Arith::Add)),
        Op::Mean(_) => one(mean(inputs)),
        Op::Equal(_) => one(compare(inputs, name, |o| o == std::cmp::Ordering::Equal)),
        Op::Less(_) => one(compare(inputs, name, |o| o == std::cmp::Ordering::Less)),
        Op::LessOrEqual(_) => one(compare(inputs, name, |o| o != std::cmp::Ordering::Greater)),
        Op::Greater(_) => one(compare(inputs, name, |o| o == std::cmp::Ordering::Greater)),
        Op::GreaterOrEqual(_) => one(compare(inputs, name, |o| o != std::cmp::Ordering::Less)),
        Op::Not(_) => one(x().and_then(|t| match t {
            Tensor::Bool(a) => Ok(Tensor::Bool(map_arr(a, |v| !v))),
            other => Err(bad_type(name, other)),
        })),
        Op::And(_) => one(logical(inputs, name, |a, b| a & b)),
        Op::Or(_) => one(logical(inputs, name, |a, b| a | b)),
        Op::Xor(_) => one(logical(inputs, name, |a, b| a ^ b)),
        Op::Where(_) => one(where_op(inputs)),
        Op::IsNaN(_) => one(x().and_then(|t| {
            float_dispatch!(t, a => Ok(Tensor::Bool(map_arr(a, |v| Num::is_nan(*v)))), Err(bad_type(name, t)))
        })),
        Op::IsInf(o) => {
            let (neg, pos) = (o.detect_negative.unwrap_or(1) != 0, o.detect_positive.unwrap_or(1) != 0);
            one(x().and_then(|t| {
                float_dispatch!(t, a => Ok(Tensor::Bool(map_arr(a, |v| {
                    let f = v.to_f64();
                    f.is_infinite() && ((f > 0.0 && pos) || (f < 0.0 && neg))
                }))), Err(bad_type(name, t)))
            }))
        }
        Op::Cast(o) => one((|| {
            let Some(to) = o.to else { bail!("Cast needs the 'to' attribute") };
            let Some(dt) = DType::from_code(to as i32) else { bail!("Cast: unknown target type code {to}") };
            cast(x()?, dt)
        })()),
        Op::CastLike(_) => one((|| cast(x()?, req(inputs, 1, "target_type")?.dtype()))()),
        Op::Identity(_) => one(x().cloned()),
        Op::Dropout(_) => (|| {
            let t = x()?;
            let mut out = vec![t.clone()];
            if cx.n_outputs > 1 {
                out.push(Tensor::Bool(ArrayD::from_elem(IxDyn(t.shape()), true)));
            }
            Ok(out)
        })(),
        _ => return None,
    })
}

// ------------------------------------------------------------------ unary

/// Math the float kernels need beyond `std` (erf).
pub(crate) trait MathExt {
    fn erf(self) -> Self;
}
impl MathExt for f64 {
    fn erf(self) -> f64 {
        erf64(self)
    }
}
impl MathExt for f32 {
    fn erf(self) -> f32 {
        erf64(self as f64) as f32
    }
}

/// erf to about 1e-15: Maclaurin series for |x| < 3, a Lentz continued fraction for erfc beyond.
pub(crate) fn erf64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    let r = if ax < 3.0 {
        // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
        let x2 = ax * ax;
        let (mut term, mut sum) = (ax, ax);
        for n in 1..200 {
            term *= -x2 / n as f64;
            let t = term / (2 * n + 1) as f64;
            sum += t;
            if t.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else if ax < 6.0 {
        // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))
        let tiny = 1e-300;
        let mut f = ax;
        let (mut c, mut d) = (f, 0.0);
        for n in 1..300 {
            let a = n as f64 / 2.0;
            d = ax + a * d;
            d = if d.abs() < tiny { tiny } else { d };
            c = ax + a / c;
            c = if c.abs() < tiny { tiny } else { c };
            d = 1.0 / d;
            let delta = c * d;
            f *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        1.0 - (-ax * ax).exp() / (f * std::f64::consts::PI.sqrt())
    } else {
        1.0
    };
    if x < 0.0 { -r } else { r }
}

fn sigmoid<F: FloatOps>(x: F) -> F {
    F::one_() / (F::one_() + (-x).exp_())
}

/// Tiny shim so `sigmoid` can be written once for f32 and f64.
trait FloatOps:
    Copy + std::ops::Add<Output = Self> + std::ops::Div<Output = Self> + std::ops::Neg<Output = Self>
{
    fn one_() -> Self;
    fn exp_(self) -> Self;
}
impl FloatOps for f32 {
    fn one_() -> Self {
        1.0
    }
    fn exp_(self) -> Self {
        self.exp()
    }
}
impl FloatOps for f64 {
    fn one_() -> Self {
        1.0
    }
    fn exp_(self) -> Self {
        self.exp()
    }
}

#[derive(Clone, Copy)]
enum UnaryNum {
    Relu,
    Neg,
    Abs,
    Sign,
}

fn num_unary(t: &Tensor, name: &str, f: UnaryNum) -> Result<Tensor, OpError> {
    fn go<T: Num>(a: &ArrayD<T>, f: UnaryNum) -> Tensor {
        wrap(match f {
            UnaryNum::Relu => map_arr(a, |&x| if x < T::zero() { T::zero() } else { x }),
            UnaryNum::Neg => map_arr(a, |&x| x.neg()),
            UnaryNum::Abs => map_arr(a, |&x| x.abs()),
            UnaryNum::Sign => map_arr(a, |&x| x.sign()),
        })
    }
    num_dispatch!(t, a => Ok(go(a, f)), Err(bad_type(name, t)))
}

fn prelu(inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let (x, s) = (req(inputs, 0, "X")?, req(inputs, 1, "slope")?);
    fn go<T: Num>(a: &ArrayD<T>, s: &ArrayD<T>) -> Result<Tensor, OpError> {
        Ok(wrap(broadcast_binary(a, s, |&x, &s| {
            if x < T::zero() { x.mul(s) } else { x }
        })?))
    }
    let r = num_dispatch2!(x, s, a, b => go(a, b)?, return Err(mismatch("PRelu", x, s)));
    if r.shape() != x.shape() {
        bail!(
            "PRelu: slope of shape {:?} does not broadcast to X's shape {:?}",
            s.shape(),
            x.shape()
        );
    }
    Ok(r)
}

fn clip(
    o: &qtool_ir::ops::Clip,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor, OpError> {
    let x = req(inputs, 0, "input")?;
    if cx.opset < 11 {
        let lo = o.min.unwrap_or(f32::MIN) as f64;
        let hi = o.max.unwrap_or(f32::MAX) as f64;
        return float_unary!(x, "Clip", [lo = lo, hi = hi], |x| if x < lo {
            lo
        } else if x > hi {
            hi
        } else {
            x
        });
    }
    fn bound<T: Num>(t: Option<&Tensor>, what: &str) -> Result<Option<T>, OpError> {
        let Some(t) = t else { return Ok(None) };
        let a = t.view::<T>().map_err(|_| {
            OpError(format!(
                "Clip: {what} is {}, expected {}",
                t.dtype(),
                T::DTYPE
            ))
        })?;
        if a.len() != 1 {
            bail!("Clip: {what} must be a scalar, got shape {:?}", a.shape());
        }
        Ok(a.iter().next().copied())
    }
    fn go<T: Num>(a: &ArrayD<T>, inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
        let lo = bound::<T>(opt(inputs, 1), "min")?;
        let hi = bound::<T>(opt(inputs, 2), "max")?;
        Ok(wrap(map_arr(a, |&v| {
            let mut v = v;
            if let Some(l) = lo
                && v < l
            {
                v = l;
            }
            if let Some(h) = hi
                && v > h
            {
                v = h;
            }
            v
        })))
    }
    if let Tensor::F32(a) = x {
        // Missing bounds as infinities: the same result (NaN stays NaN), and a select the
        // compiler turns into vector min/max instead of a data-dependent branch per element.
        let lo = bound::<f32>(opt(inputs, 1), "min")?.unwrap_or(f32::NEG_INFINITY);
        let hi = bound::<f32>(opt(inputs, 2), "max")?.unwrap_or(f32::INFINITY);
        return Ok(Tensor::F32(map_arr(a, |&v| {
            let v = if v < lo { lo } else { v };
            if v > hi { hi } else { v }
        })));
    }
    num_dispatch!(x, a => go(a, inputs), Err(bad_type("Clip", x)))
}

fn pow(inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let (x, y) = (req(inputs, 0, "X")?, req(inputs, 1, "Y")?);
    // Fast path: both f32.
    if let (Tensor::F32(a), Tensor::F32(b)) = (x, y) {
        return Ok(Tensor::F32(broadcast_binary(a, b, |&x, &e| {
            if e == 2.0 { x * x } else { x.powf(e) }
        })?));
    }
    let e = y.to_f64_vec().ok_or_else(|| bad_type("Pow", y))?;
    let e = crate::util::arr(y.shape(), e);
    Ok(match x {
        Tensor::F32(a) => Tensor::F32(broadcast_binary(a, &e, |&x, &e| x.powf(e as f32))?),
        Tensor::F64(a) => Tensor::F64(broadcast_binary(a, &e, |&x, &e| x.powf(e))?),
        other => num_dispatch!(other, a => pow_any(a, &e)?, return Err(bad_type("Pow", x))),
    })
}

fn pow_any<T: Num>(a: &ArrayD<T>, e: &ArrayD<f64>) -> Result<Tensor, OpError> {
    Ok(wrap(broadcast_binary(a, e, |&x, &e| {
        T::from_f64(x.to_f64().powf(e))
    })?))
}

// ------------------------------------------------------------------ binary

#[derive(Clone, Copy)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Mod(bool),
    Max,
    Min,
}

fn arith2<T: Num>(a: &ArrayD<T>, b: &ArrayD<T>, op: Arith, name: &str) -> Result<Tensor, OpError> {
    if matches!(op, Arith::Div | Arith::Mod(_)) && !T::IS_FLOAT && b.iter().any(|&v| v == T::zero())
    {
        bail!("{name}: integer division by zero");
    }
    if let Arith::Mod(false) = op
        && T::IS_FLOAT
    {
        bail!("Mod: fmod must be 1 for floating-point inputs");
    }
    Ok(wrap(match op {
        Arith::Add => broadcast_binary(a, b, |&x, &y| x.add(y))?,
        Arith::Sub => broadcast_binary(a, b, |&x, &y| x.sub(y))?,
        Arith::Mul => broadcast_binary(a, b, |&x, &y| x.mul(y))?,
        Arith::Div => broadcast_binary(a, b, |&x, &y| x.div(y).unwrap_or(T::zero()))?,
        Arith::Mod(f) => broadcast_binary(a, b, |&x, &y| x.rem(y, f).unwrap_or(T::zero()))?,
        Arith::Max => broadcast_binary(a, b, |&x, &y| x.max_nan(y))?,
        Arith::Min => broadcast_binary(a, b, |&x, &y| x.min_nan(y))?,
    }))
}

fn arith_t(a: &Tensor, b: &Tensor, name: &str, op: Arith) -> Result<Tensor, OpError> {
    // f32 fast paths (no per-element trait dispatch).
    if let (Tensor::F32(x), Tensor::F32(y)) = (a, b) {
        let r = match op {
            Arith::Add => broadcast_binary(x, y, |&p, &q| p + q)?,
            Arith::Sub => broadcast_binary(x, y, |&p, &q| p - q)?,
            Arith::Mul => broadcast_binary(x, y, |&p, &q| p * q)?,
            Arith::Div => broadcast_binary(x, y, |&p, &q| p / q)?,
            _ => return arith2(x, y, op, name),
        };
        return Ok(Tensor::F32(r));
    }
    num_dispatch2!(a, b, x, y => arith2(x, y, op, name), Err(mismatch(name, a, b)))
}

fn arith(inputs: &[Option<&Tensor>], name: &str, op: Arith) -> Result<Tensor, OpError> {
    arith_t(req(inputs, 0, "A")?, req(inputs, 1, "B")?, name, op)
}

fn variadic(inputs: &[Option<&Tensor>], name: &str, op: Arith) -> Result<Tensor, OpError> {
    let ts: Vec<&Tensor> = inputs.iter().flatten().copied().collect();
    let Some((first, rest)) = ts.split_first() else {
        bail!("{name} needs at least one input")
    };
    let mut acc = (*first).clone();
    if rest.is_empty() {
        num_dispatch!(&acc, _a => (), return Err(bad_type(name, first)));
    }
    for t in rest {
        acc = arith_t(&acc, t, name, op)?;
    }
    Ok(acc)
}

fn mean(inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let n = inputs.iter().flatten().count();
    let s = variadic(inputs, "Mean", Arith::Add)?;
    fn go<T: Num>(a: &ArrayD<T>, n: usize) -> Tensor {
        let d = T::from_f64(n as f64);
        wrap(map_arr(a, |&x| x.div(d).unwrap_or(T::zero())))
    }
    num_dispatch!(&s, a => Ok(go(a, n)), Err(bad_type("Mean", &s)))
}

/// Dispatches a pair of tensors of the same native type (numeric, bool or string).
macro_rules! any_dispatch2 {
    ($x:expr, $y:expr, $a:ident, $b:ident => $body:expr, $other:expr) => {
        match ($x, $y) {
            (Tensor::Bool($a), Tensor::Bool($b)) => $body,
            (Tensor::String($a), Tensor::String($b)) => $body,
            (x, y) => num_dispatch2!(x, y, $a, $b => $body, $other),
        }
    };
}

fn compare(
    inputs: &[Option<&Tensor>],
    name: &str,
    f: fn(std::cmp::Ordering) -> bool,
) -> Result<Tensor, OpError> {
    let (a, b) = (req(inputs, 0, "A")?, req(inputs, 1, "B")?);
    // NaN compares unordered: every comparison is false.
    let r = any_dispatch2!(a, b, x, y => broadcast_binary(x, y, |p, q| p.partial_cmp(q).is_some_and(f))?, return Err(mismatch(name, a, b)));
    Ok(Tensor::Bool(r))
}

fn logical(
    inputs: &[Option<&Tensor>],
    name: &str,
    f: fn(bool, bool) -> bool,
) -> Result<Tensor, OpError> {
    let (a, b) = (req(inputs, 0, "A")?, req(inputs, 1, "B")?);
    match (a, b) {
        (Tensor::Bool(x), Tensor::Bool(y)) => {
            Ok(Tensor::Bool(broadcast_binary(x, y, |&p, &q| f(p, q))?))
        }
        _ => Err(mismatch(name, a, b)),
    }
}

fn where_op(inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let c = req(inputs, 0, "condition")?;
    let (x, y) = (req(inputs, 1, "X")?, req(inputs, 2, "Y")?);
    let Tensor::Bool(c) = c else {
        return Err(bad_type("Where (condition)", c));
    };
    fn go<T: Element>(c: &ArrayD<bool>, x: &ArrayD<T>, y: &ArrayD<T>) -> Result<Tensor, OpError> {
        let shape = broadcast_shapes(&broadcast_shapes(c.shape(), x.shape())?, y.shape())?;
        let sh = IxDyn(&shape);
        let (cb, xb, yb) = (
            c.broadcast(sh.clone()).expect("checked"),
            x.broadcast(sh.clone()).expect("checked"),
            y.broadcast(sh).expect("checked"),
        );
        Ok(wrap(Zip::from(&cb).and(&xb).and(&yb).map_collect(
            |&c, x, y| if c { x.clone() } else { y.clone() },
        )))
    }
    any_dispatch2!(x, y, a, b => go(c, a, b), Err(mismatch("Where", x, y)))
}

// ------------------------------------------------------------------ softmax

/// Softmax/LogSoftmax along one axis. The sum of exponentials is accumulated in `$acc` (f64 for
/// f32 data): summed in f32, the many tiny terms of a peaked softmax over a long axis (e.g. a
/// 6625-class OCR head) are rounded away one by one against a sum near 1, an error of ~1e-4
/// relative on every output, where ONNX Runtime stays near 1e-6.
macro_rules! softmax_impl {
    ($name:ident, $t:ty, $acc:ty) => {
        fn $name(x: &[$t], outer: usize, n: usize, inner: usize, log: bool) -> Vec<$t> {
            use rayon::prelude::*;
            let mut out = vec![0.0 as $t; x.len()];
            let block = n * inner;
            if block == 0 {
                return out;
            }
            let run = |o: usize, dst: &mut [$t]| {
                let src = &x[o * block..(o + 1) * block];
                for i in 0..inner {
                    let mut m = <$t>::NEG_INFINITY;
                    for k in 0..n {
                        m = m.max(src[k * inner + i]);
                    }
                    let mut sum: $acc = 0.0;
                    for k in 0..n {
                        let e = (src[k * inner + i] - m).exp();
                        if !log {
                            dst[k * inner + i] = e;
                        }
                        sum += e as $acc;
                    }
                    if log {
                        let ls = sum.ln();
                        for k in 0..n {
                            dst[k * inner + i] = ((src[k * inner + i] - m) as $acc - ls) as $t;
                        }
                    } else {
                        for k in 0..n {
                            let d = &mut dst[k * inner + i];
                            *d = (*d as $acc / sum) as $t;
                        }
                    }
                }
            };
            if x.len() >= crate::util::PAR_THRESHOLD {
                out.par_chunks_mut(block)
                    .enumerate()
                    .for_each(|(o, d)| run(o, d));
            } else {
                for (o, d) in out.chunks_mut(block).enumerate() {
                    run(o, d);
                }
            }
            let _ = outer;
            out
        }
    };
}
softmax_impl!(softmax_f32, f32, f64);
softmax_impl!(softmax_f64, f64, f64);

fn softmax(t: &Tensor, axis: Option<i64>, opset: i64, log: bool) -> Result<Tensor, OpError> {
    let shape = t.shape().to_vec();
    let name = if log { "LogSoftmax" } else { "Softmax" };
    let (outer, n, inner) = if opset < 13 {
        let ax = norm_axis(axis.unwrap_or(1), shape.len().max(1))?.min(shape.len());
        (
            shape[..ax].iter().product::<usize>(),
            shape[ax..].iter().product::<usize>(),
            1,
        )
    } else {
        let ax = norm_axis(axis.unwrap_or(-1), shape.len())?;
        (
            shape[..ax].iter().product::<usize>(),
            shape[ax],
            shape[ax + 1..].iter().product::<usize>(),
        )
    };
    fn halfway<T: Float>(a: &ArrayD<T>, f: impl Fn(&[f32]) -> Vec<f32>) -> Tensor {
        let v: Vec<f32> = a.iter().map(|x| x.to_f32()).collect();
        wrap(crate::util::arr(
            a.shape(),
            f(&v).into_iter().map(T::from_f32).collect(),
        ))
    }
    Ok(match t {
        Tensor::F32(a) => Tensor::F32(crate::util::arr(
            &shape,
            softmax_f32(&crate::util::elems(a), outer, n, inner, log),
        )),
        Tensor::F64(a) => Tensor::F64(crate::util::arr(
            &shape,
            softmax_f64(&crate::util::elems(a), outer, n, inner, log),
        )),
        Tensor::F16(a) => halfway(a, |v| softmax_f32(v, outer, n, inner, log)),
        Tensor::BF16(a) => halfway(a, |v| softmax_f32(v, outer, n, inner, log)),
        other => return Err(bad_type(name, other)),
    })
}

// ------------------------------------------------------------------ cast

/// Source side of a Cast: conversions with C++ `static_cast` semantics as ONNX Runtime gets them on
/// x86-64 (float to integer truncates; out of range and NaN give the "integer indefinite" value).
trait CastSrc: Copy + Send + Sync {
    fn c_f64(self) -> f64;
    fn c_f32(self) -> f32;
    fn c_i32(self) -> i32;
    fn c_i64(self) -> i64;
    fn c_u64(self) -> u64;
    fn c_bool(self) -> bool;
}

fn f64_to_i32(x: f64) -> i32 {
    if x > -2147483649.0 && x < 2147483648.0 {
        x as i32
    } else {
        i32::MIN
    }
}
fn f64_to_i64(x: f64) -> i64 {
    if (-9223372036854775808.0..9223372036854775808.0).contains(&x) {
        x as i64
    } else {
        i64::MIN
    }
}
fn f64_to_u64(x: f64) -> u64 {
    if (9223372036854775808.0..18446744073709551616.0).contains(&x) {
        x as u64
    } else {
        f64_to_i64(x) as u64
    }
}

macro_rules! cast_src_int {
    ($($t:ty),*) => {$(
        #[allow(clippy::unnecessary_cast)]
        impl CastSrc for $t {
            fn c_f64(self) -> f64 { self as f64 }
            fn c_f32(self) -> f32 { self as f32 }
            fn c_i32(self) -> i32 { self as i32 }
            fn c_i64(self) -> i64 { self as i64 }
            fn c_u64(self) -> u64 { self as u64 }
            fn c_bool(self) -> bool { self != 0 }
        }
    )*};
}
cast_src_int!(i8, u8, i16, u16, i32, u32, i64, u64);

macro_rules! cast_src_float {
    ($($t:ty),*) => {$(
        impl CastSrc for $t {
            fn c_f64(self) -> f64 { Num::to_f64(self) }
            fn c_f32(self) -> f32 { Float::to_f32(self) }
            fn c_i32(self) -> i32 { f64_to_i32(Num::to_f64(self)) }
            fn c_i64(self) -> i64 { f64_to_i64(Num::to_f64(self)) }
            fn c_u64(self) -> u64 { f64_to_u64(Num::to_f64(self)) }
            fn c_bool(self) -> bool { Num::to_f64(self) != 0.0 }
        }
    )*};
}
cast_src_float!(f32, f64, f16, bf16);

impl CastSrc for bool {
    fn c_f64(self) -> f64 {
        self as u8 as f64
    }
    fn c_f32(self) -> f32 {
        self as u8 as f32
    }
    fn c_i32(self) -> i32 {
        self as i32
    }
    fn c_i64(self) -> i64 {
        self as i64
    }
    fn c_u64(self) -> u64 {
        self as u64
    }
    fn c_bool(self) -> bool {
        self
    }
}

trait CastDst: Element {
    fn from_src<S: CastSrc>(s: S) -> Self;
}
macro_rules! cast_dst {
    ($($t:ty => |$s:ident| $e:expr),* $(,)?) => {$(
        impl CastDst for $t {
            fn from_src<S: CastSrc>($s: S) -> Self { $e }
        }
    )*};
}
cast_dst!(
    f32 => |s| s.c_f32(),
    f64 => |s| s.c_f64(),
    f16 => |s| f16::from_f64(s.c_f64()),
    bf16 => |s| bf16::from_f32(s.c_f32()),
    i8 => |s| s.c_i32() as i8,
    u8 => |s| s.c_i32() as u8,
    i16 => |s| s.c_i32() as i16,
    u16 => |s| s.c_i32() as u16,
    i32 => |s| s.c_i32(),
    u32 => |s| s.c_i64() as u32,
    i64 => |s| s.c_i64(),
    u64 => |s| s.c_u64(),
    bool => |s| s.c_bool(),
);

fn cast_arr<S: CastSrc + Clone, D: CastDst>(a: &ArrayD<S>) -> Tensor {
    wrap(map_arr(a, |&s| D::from_src(s)))
}

fn cast_to<S: CastSrc + Clone>(a: &ArrayD<S>, to: DType) -> Result<Tensor, OpError> {
    Ok(match to {
        DType::F32 => cast_arr::<S, f32>(a),
        DType::F64 => cast_arr::<S, f64>(a),
        DType::F16 => cast_arr::<S, f16>(a),
        DType::BF16 => cast_arr::<S, bf16>(a),
        DType::I8 => cast_arr::<S, i8>(a),
        DType::U8 => cast_arr::<S, u8>(a),
        DType::I16 => cast_arr::<S, i16>(a),
        DType::U16 => cast_arr::<S, u16>(a),
        DType::I32 => cast_arr::<S, i32>(a),
        DType::U32 => cast_arr::<S, u32>(a),
        DType::I64 => cast_arr::<S, i64>(a),
        DType::U64 => cast_arr::<S, u64>(a),
        DType::Bool => cast_arr::<S, bool>(a),
        other => bail!(
            "Cast to {} is not supported by qtool's executor",
            other.onnx_name()
        ),
    })
}

/// Casts a tensor to `to` with ONNX Runtime's semantics (strings parse as numbers; casting to
/// string and to float8/int4 types is not supported).
pub(crate) fn cast(t: &Tensor, to: DType) -> Result<Tensor, OpError> {
    if t.dtype() == to {
        return Ok(t.clone());
    }
    match t {
        Tensor::F32(a) => cast_to(a, to),
        Tensor::F64(a) => cast_to(a, to),
        Tensor::F16(a) => cast_to(a, to),
        Tensor::BF16(a) => cast_to(a, to),
        Tensor::I8(a) => cast_to(a, to),
        Tensor::U8(a) => cast_to(a, to),
        Tensor::I16(a) => cast_to(a, to),
        Tensor::U16(a) => cast_to(a, to),
        Tensor::I32(a) => cast_to(a, to),
        Tensor::U32(a) => cast_to(a, to),
        Tensor::I64(a) => cast_to(a, to),
        Tensor::U64(a) => cast_to(a, to),
        Tensor::Bool(a) => cast_to(a, to),
        Tensor::String(a) => {
            if matches!(
                to,
                DType::I8
                    | DType::U8
                    | DType::I16
                    | DType::U16
                    | DType::I32
                    | DType::U32
                    | DType::I64
                    | DType::U64
            ) && let Ok(v) = a
                .iter()
                .map(|s| s.trim().parse::<i64>())
                .collect::<Result<Vec<i64>, _>>()
            {
                return cast_to(&crate::util::arr(a.shape(), v), to);
            }
            let v = a
                .iter()
                .map(|s| {
                    let s = s.trim();
                    s.parse::<f64>()
                        .map_err(|_| OpError(format!("Cast: cannot parse '{s}' as a number")))
                })
                .collect::<Result<Vec<f64>, _>>()?;
            cast_to(&crate::util::arr(a.shape(), v), to)
        }
        Tensor::Packed(p) => bail!(
            "Cast from {} is not supported by qtool's executor",
            p.dtype.onnx_name()
        ),
    }
}
