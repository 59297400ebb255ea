//! Indexing ops: Gather (folded on known data, also over symbolic shape vectors), GatherElements,
//! GatherND with batch_dims, NonZero (data-dependent unless its input is known) and OneHot.

use super::dims::{self, Shape, k, kv};
use super::value::{KData, KVal, strides};
use super::{Cx, Out, R, fact};
use crate::types::DimValue;
use qtool_tensor::DType;

pub(crate) fn gather(cx: &Cx, axis: Option<i64>) -> R {
    let dtype = cx.dtype(0);
    let (Some(x), Some(ind)) = (cx.shape(0), cx.shape(1)) else {
        return Ok(Out::one(fact(dtype, None)));
    };
    if x.is_empty() {
        return Err("cannot gather from a scalar".into());
    }
    let a = dims::axis(axis.unwrap_or(0), x.len())?;
    let mut shape: Shape = x[..a].to_vec();
    shape.extend_from_slice(ind);
    shape.extend_from_slice(&x[a + 1..]);
    let out = Out::one(fact(dtype, Some(shape)));
    let Some(iv) = cx.val(1) else { return Ok(out) };
    let idx = iv.i64s();
    if let Some(d) = kv(&x[a])
        && let Some(bad) = idx.iter().find(|&&i| i < -d || i >= d)
    {
        return Err(format!(
            "index {bad} is out of range for axis {a} of size {d}"
        ));
    }
    if let Some(v) = cx.val(0) {
        let d = v.shape[a] as i64;
        let st = strides(&v.shape);
        let ist = strides(&iv.shape);
        let q = iv.shape.len();
        let mut os: Vec<usize> = v.shape[..a].to_vec();
        os.extend_from_slice(&iv.shape);
        os.extend_from_slice(&v.shape[a + 1..]);
        let val = v.gather_by(os, |o| {
            let flat_i: usize = (0..q).map(|j| o[a + j] * ist[j]).sum();
            let mut p = *idx.get(flat_i)?;
            if p < 0 {
                p += d;
            }
            let mut src = 0;
            for i in 0..a {
                src += o[i] * st[i];
            }
            src += usize::try_from(p).ok()? * st[a];
            for i in a + 1..v.shape.len() {
                src += o[i - 1 + q] * st[i];
            }
            Some(src)
        });
        return Ok(out.with_val(val));
    }
    if x.len() == 1
        && iv.shape.len() <= 1
        && let Some(sy) = cx.sym(0)
    {
        let n = sy.len() as i64;
        let picked: Option<Vec<DimValue>> = idx
            .iter()
            .map(|&i| sy.get(if i < 0 { i + n } else { i } as usize).cloned())
            .collect();
        return Ok(out.with_sym(picked));
    }
    Ok(out)
}

pub(crate) fn gather_elements(cx: &Cx) -> R {
    if let (Some(x), Some(i)) = (cx.shape(0), cx.shape(1))
        && x.len() != i.len()
    {
        return Err(format!(
            "data {} and indices {} differ in rank",
            dims::fmt_dims(x),
            dims::fmt_dims(i)
        ));
    }
    Ok(Out::one(fact(cx.dtype(0), cx.fact(1).shape)))
}

pub(crate) fn gather_nd(cx: &Cx, batch_dims: Option<i64>) -> R {
    let dtype = cx.dtype(0);
    let b = batch_dims.unwrap_or(0).max(0) as usize;
    let (Some(x), Some(ind)) = (cx.shape(0), cx.shape(1)) else {
        return Ok(Out::one(fact(dtype, None)));
    };
    if ind.is_empty() {
        return Err("indices must have rank at least 1".into());
    }
    let Some(last) = kv(&ind[ind.len() - 1]) else {
        return Ok(
            Out::one(fact(dtype, None)).because("the last dimension of the indices is not known")
        );
    };
    if b + last as usize > x.len() {
        return Err(format!(
            "batch_dims {b} + index depth {last} exceed the data rank {}",
            x.len()
        ));
    }
    let mut shape: Shape = ind[..ind.len() - 1].to_vec();
    shape.extend_from_slice(&x[b + last as usize..]);
    Ok(Out::one(fact(dtype, Some(shape))))
}

pub(crate) fn nonzero(cx: &Cx) -> R {
    let r = cx.rank(0);
    if let Some(v) = cx.val(0) {
        let nz: Vec<usize> = v
            .f64s()
            .iter()
            .enumerate()
            .filter(|(_, x)| **x != 0.0)
            .map(|(i, _)| i)
            .collect();
        let st = strides(&v.shape);
        let rank = v.shape.len();
        let mut data = vec![0i64; rank * nz.len()];
        for (j, &flat) in nz.iter().enumerate() {
            let mut rem = flat;
            for i in 0..rank {
                data[i * nz.len() + j] = (rem / st[i].max(1)) as i64;
                rem %= st[i].max(1);
            }
        }
        return Ok(Out::one(fact(
            Some(DType::I64),
            Some(vec![k(rank as i64), k(nz.len() as i64)]),
        ))
        .with_val(KVal::new(DType::I64, vec![rank, nz.len()], KData::I(data))));
    }
    let shape = Some(vec![
        r.map(|r| k(r as i64)).unwrap_or(DimValue::Unknown),
        DimValue::Unknown,
    ]);
    Ok(
        Out::one(fact(Some(DType::I64), shape))
            .because("NonZero's output size depends on the data"),
    )
}

pub(crate) fn one_hot(cx: &Cx, axis: Option<i64>) -> R {
    let dtype = cx.dtype(2);
    let Some(ind) = cx.shape(0) else {
        return Ok(Out::one(fact(dtype, None)));
    };
    let r = ind.len() + 1;
    let a = dims::axis(axis.unwrap_or(-1), r)?;
    let depth = cx
        .floats(1)
        .and_then(|v| v.first().copied())
        .map(|d| k(d as i64));
    let mut shape = ind.to_vec();
    shape.insert(a, depth.clone().unwrap_or(DimValue::Unknown));
    let out = Out::one(fact(dtype, Some(shape)));
    Ok(if depth.is_none() {
        out.because(format!("depth '{}' is not known", cx.name(1)))
    } else {
        out
    })
}
