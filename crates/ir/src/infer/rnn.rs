//! Recurrent ops: LSTM and GRU outputs Y (`[seq, num_dir, batch, hidden]`, or
//! `[batch, seq, num_dir, hidden]` with layout 1), Y_h and Y_c (`[num_dir, batch, hidden]` /
//! `[batch, num_dir, hidden]`), with checks of the weight shapes against direction and hidden_size.

use super::dims::{self, k, kv};
use super::{Cx, Out, R, fact};
use crate::ops;
use crate::types::DimValue;

fn rnn(
    cx: &Cx,
    gates: i64,
    hidden_size: Option<i64>,
    direction: Option<&str>,
    layout: Option<i64>,
    n_states: usize,
) -> R {
    let dtype = cx.dtype(0);
    let num_dir = match direction.unwrap_or("forward") {
        "forward" | "reverse" => 1,
        "bidirectional" => 2,
        other => {
            return Err(format!(
                "direction '{other}' is not forward, reverse or bidirectional"
            ));
        }
    };
    let layout = layout.unwrap_or(0);
    let (w, r) = (cx.shape(1), cx.shape(2));
    for (n, s) in [("X", cx.shape(0)), ("W", w), ("R", r)] {
        if let Some(s) = s
            && s.len() != 3
        {
            return Err(format!(
                "{n} has shape {}, expected rank 3",
                dims::fmt_dims(s)
            ));
        }
    }
    let hidden: DimValue = match hidden_size {
        Some(h) => k(h),
        None => r
            .map(|r| r[2].clone())
            .filter(|d| kv(d).is_some())
            .or_else(|| w.and_then(|w| kv(&w[1])).map(|g| k(g / gates)))
            .unwrap_or(DimValue::Unknown),
    };
    for (n, s) in [("W", w), ("R", r)] {
        if let Some(s) = s {
            if let Some(d) = kv(&s[0])
                && d != num_dir
            {
                return Err(format!(
                    "{n} has {d} directions but direction is {}",
                    direction.unwrap_or("forward")
                ));
            }
            if let (Some(g), Some(h)) = (kv(&s[1]), kv(&hidden))
                && g != gates * h
            {
                return Err(format!(
                    "{n} has {g} rows, expected {gates} x hidden_size {h}"
                ));
            }
        }
    }
    if let (Some(x), Some(w)) = (cx.shape(0), w)
        && !dims::compatible(&x[2], &w[2])
    {
        return Err(format!(
            "input size {} differs from W's {}",
            dims::fmt_dims(&x[2..3]),
            dims::fmt_dims(&w[2..3])
        ));
    }
    let (seq, batch) = match cx.shape(0) {
        Some(x) if layout == 0 => (x[0].clone(), x[1].clone()),
        Some(x) => (x[1].clone(), x[0].clone()),
        None => (DimValue::Unknown, DimValue::Unknown),
    };
    let nd = k(num_dir);
    let y = if layout == 0 {
        vec![seq, nd.clone(), batch.clone(), hidden.clone()]
    } else {
        vec![batch.clone(), seq, nd.clone(), hidden.clone()]
    };
    let state = if layout == 0 {
        vec![nd, batch, hidden]
    } else {
        vec![batch, nd, hidden]
    };
    let mut facts = vec![fact(dtype, Some(y))];
    facts.extend(std::iter::repeat_n(fact(dtype, Some(state)), n_states));
    Ok(Out::many(facts))
}

pub(crate) fn lstm(cx: &Cx, o: &ops::Lstm) -> R {
    rnn(cx, 4, o.hidden_size, o.direction.as_deref(), o.layout, 2)
}

pub(crate) fn gru(cx: &Cx, o: &ops::Gru) -> R {
    rnn(cx, 3, o.hidden_size, o.direction.as_deref(), o.layout, 1)
}
