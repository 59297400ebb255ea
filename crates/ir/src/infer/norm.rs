//! Normalizations: BatchNormalization (Y plus the running/saved statistics outputs of training mode
//! and old opsets), LayerNormalization (Mean and InvStdDev outputs), Instance/Group normalization.

use super::dims::{self, k};
use super::{Cx, Out, R, dtype_attr, fact};
use crate::ops;
use crate::types::{DimValue, Fact};
use qtool_tensor::DType;

pub(crate) fn batch_norm(cx: &Cx) -> R {
    let x = cx.fact(0);
    let c = x
        .shape
        .as_ref()
        .and_then(|s| s.get(1).cloned())
        .unwrap_or(DimValue::Unknown);
    for i in 1..5 {
        if let Some(s) = cx.shape(i)
            && !(s.len() == 1 && dims::compatible(&s[0], &c))
        {
            return Err(format!(
                "input '{}' has shape {} but the input has {} channels",
                cx.name(i),
                dims::fmt_dims(s),
                dims::fmt_dims(&[c])
            ));
        }
    }
    let c = cx.shape(1).map(|s| dims::merge(&s[0], &c)).unwrap_or(c);
    let stat = Fact {
        dtype: cx.dtype(3).or(x.dtype),
        shape: Some(vec![c]),
    };
    let mut facts = vec![x];
    facts.extend(std::iter::repeat_n(stat, cx.n_out().saturating_sub(1)));
    Ok(Out::many(facts))
}

pub(crate) fn layer_norm(cx: &Cx, o: &ops::LayerNormalization) -> R {
    let x = cx.fact(0);
    let stash = match o.stash_type {
        Some(t) => dtype_attr(t, "stash_type")?,
        None => DType::F32,
    };
    let stat_shape = match &x.shape {
        Some(s) => {
            let a = dims::axis(o.axis.unwrap_or(-1), s.len())?;
            Some(
                s.iter()
                    .enumerate()
                    .map(|(i, d)| if i < a { d.clone() } else { k(1) })
                    .collect(),
            )
        }
        None => None,
    };
    let stat = fact(Some(stash), stat_shape);
    Ok(Out::many(vec![x, stat.clone(), stat]))
}

/// InstanceNormalization, GroupNormalization: the output is like the input.
pub(crate) fn channel_norm(cx: &Cx) -> R {
    if let (Some(x), Some(s)) = (cx.shape(0), cx.shape(1))
        && matches!(cx.node.op(), ops::Op::InstanceNormalization(_))
        && x.len() >= 2
        && !(s.len() == 1 && dims::compatible(&s[0], &x[1]))
    {
        return Err(format!(
            "scale has shape {} but the input has {} channels",
            dims::fmt_dims(s),
            dims::fmt_dims(&x[1..2])
        ));
    }
    Ok(Out::one(cx.fact(0)))
}
