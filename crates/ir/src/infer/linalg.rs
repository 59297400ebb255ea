//! Linear algebra: MatMul (numpy batch broadcasting and 1-d promotion), MatMulInteger, Gemm with
//! transA/transB and a unidirectionally broadcast C, and Einsum (the equation is parsed).

use super::dims::{self, Shape, k};
use super::{Cx, Out, R, fact};
use crate::ops;
use crate::types::DimValue;
use qtool_tensor::DType;
use std::collections::BTreeMap;

/// Shape of `a @ b` with numpy semantics.
pub(crate) fn matmul_shape(
    a: Option<&[DimValue]>,
    b: Option<&[DimValue]>,
) -> Result<Option<Shape>, String> {
    let (Some(a), Some(b)) = (a, b) else {
        return Ok(None);
    };
    if a.is_empty() || b.is_empty() {
        return Err("MatMul operands must have rank at least 1".into());
    }
    let a2: Shape = if a.len() == 1 {
        vec![k(1), a[0].clone()]
    } else {
        a.to_vec()
    };
    let b2: Shape = if b.len() == 1 {
        vec![b[0].clone(), k(1)]
    } else {
        b.to_vec()
    };
    let (ka, kb) = (&a2[a2.len() - 1], &b2[b2.len() - 2]);
    if !dims::compatible(ka, kb) {
        return Err(format!(
            "inner dimensions differ: {} @ {}",
            dims::fmt_dims(a),
            dims::fmt_dims(b)
        ));
    }
    let mut out = dims::broadcast(&a2[..a2.len() - 2], &b2[..b2.len() - 2]).map_err(|e| {
        format!(
            "batch dimensions of {} and {}: {e}",
            dims::fmt_dims(a),
            dims::fmt_dims(b)
        )
    })?;
    if a.len() > 1 {
        out.push(a2[a2.len() - 2].clone());
    }
    if b.len() > 1 {
        out.push(b2[b2.len() - 1].clone());
    }
    Ok(Some(out))
}

/// MatMul (dtype of A) and MatMulInteger (`out` = int32).
pub(crate) fn matmul(cx: &Cx, out: Option<DType>) -> R {
    let shape = matmul_shape(cx.shape(0), cx.shape(1))?;
    Ok(Out::one(fact(out.or(cx.dtype(0)), shape)))
}

/// Shape of Gemm's output: `[M, N]`, checking K and that C broadcasts to it.
pub(crate) fn gemm_shape(
    a: Option<&[DimValue]>,
    b: Option<&[DimValue]>,
    c: Option<&[DimValue]>,
    ta: bool,
    tb: bool,
) -> Result<Option<Shape>, String> {
    for (n, s) in [("A", a), ("B", b)] {
        if let Some(s) = s
            && s.len() != 2
        {
            return Err(format!(
                "{n} has shape {}, Gemm needs rank 2",
                dims::fmt_dims(s)
            ));
        }
    }
    let (m, ka) = match a {
        Some(a) if ta => (a[1].clone(), a[0].clone()),
        Some(a) => (a[0].clone(), a[1].clone()),
        None => (DimValue::Unknown, DimValue::Unknown),
    };
    let (kb, n) = match b {
        Some(b) if tb => (b[1].clone(), b[0].clone()),
        Some(b) => (b[0].clone(), b[1].clone()),
        None => (DimValue::Unknown, DimValue::Unknown),
    };
    if !dims::compatible(&ka, &kb) {
        return Err(format!(
            "inner dimensions differ: K = {} for A, {} for B",
            dims::fmt_dims(&[ka]),
            dims::fmt_dims(&[kb])
        ));
    }
    let out = vec![m, n];
    if let Some(c) = c {
        let bc = dims::broadcast(&out, c)?;
        if bc.len() != 2 || bc.iter().zip(&out).any(|(x, y)| !dims::compatible(x, y)) {
            return Err(format!(
                "C of shape {} does not broadcast to {}",
                dims::fmt_dims(c),
                dims::fmt_dims(&out)
            ));
        }
    }
    if a.is_none() && b.is_none() {
        return Ok(None);
    }
    Ok(Some(out))
}

pub(crate) fn gemm(cx: &Cx, o: &ops::Gemm) -> R {
    let c = if cx.has(2) { cx.shape(2) } else { None };
    let shape = gemm_shape(
        cx.shape(0),
        cx.shape(1),
        c,
        o.trans_a.unwrap_or(0) != 0,
        o.trans_b.unwrap_or(0) != 0,
    )?;
    Ok(Out::one(fact(cx.dtype(0).or(cx.dtype(1)), shape)))
}

enum Term {
    Letter(char),
    Ellipsis,
}

fn parse_term(t: &str) -> Result<Vec<Term>, String> {
    let mut out = Vec::new();
    let mut rest = t;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("...") {
            if out.iter().any(|x| matches!(x, Term::Ellipsis)) {
                return Err(format!("term '{t}' has two ellipses"));
            }
            out.push(Term::Ellipsis);
            rest = r;
        } else {
            let c = rest.chars().next().expect("non-empty");
            if !c.is_ascii_alphabetic() {
                return Err(format!("term '{t}' has an unexpected character '{c}'"));
            }
            out.push(Term::Letter(c));
            rest = &rest[c.len_utf8()..];
        }
    }
    Ok(out)
}

/// The output shape of an Einsum equation over the input shapes.
pub(crate) fn einsum_shape(equation: &str, inputs: &[&[DimValue]]) -> Result<Shape, String> {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let terms: Vec<Vec<Term>> = lhs.split(',').map(parse_term).collect::<Result<_, _>>()?;
    if terms.len() != inputs.len() {
        return Err(format!(
            "equation '{equation}' has {} operands but there are {} inputs",
            terms.len(),
            inputs.len()
        ));
    }
    let mut sizes: BTreeMap<char, DimValue> = BTreeMap::new();
    let mut counts: BTreeMap<char, usize> = BTreeMap::new();
    let mut ellipsis: Option<Shape> = None;
    for (term, shape) in terms.iter().zip(inputs) {
        let letters = term.iter().filter(|t| matches!(t, Term::Letter(_))).count();
        let has_ell = term.len() != letters;
        if letters > shape.len() || (!has_ell && letters != shape.len()) {
            return Err(format!(
                "operand of shape {} does not fit its term in '{equation}'",
                dims::fmt_dims(shape)
            ));
        }
        let ell_rank = shape.len() - letters;
        let mut pos = 0;
        for t in term {
            match t {
                Term::Letter(c) => {
                    let d = &shape[pos];
                    pos += 1;
                    *counts.entry(*c).or_default() += 1;
                    match sizes.get(c) {
                        None => {
                            sizes.insert(*c, d.clone());
                        }
                        Some(prev) => {
                            let merged = dims::broadcast_dim(prev, d).map_err(|_| {
                                format!(
                                    "label '{c}' has sizes {} and {}",
                                    dims::fmt_dims(std::slice::from_ref(prev)),
                                    dims::fmt_dims(std::slice::from_ref(d))
                                )
                            })?;
                            sizes.insert(*c, merged);
                        }
                    }
                }
                Term::Ellipsis => {
                    let e = &shape[pos..pos + ell_rank];
                    pos += ell_rank;
                    ellipsis = Some(match ellipsis {
                        None => e.to_vec(),
                        Some(prev) => dims::broadcast(&prev, e)?,
                    });
                }
            }
        }
    }
    let mut out = Vec::new();
    match rhs {
        Some(r) => {
            for t in parse_term(r)? {
                match t {
                    Term::Letter(c) => out.push(sizes.get(&c).cloned().ok_or_else(|| {
                        format!("output label '{c}' does not appear in the inputs")
                    })?),
                    Term::Ellipsis => out.extend(ellipsis.clone().unwrap_or_default()),
                }
            }
        }
        None => {
            out.extend(ellipsis.unwrap_or_default());
            for (c, n) in &counts {
                if *n == 1 {
                    out.push(sizes[c].clone());
                }
            }
        }
    }
    Ok(out)
}

pub(crate) fn einsum(cx: &Cx, o: &ops::Einsum) -> R {
    let eq = o
        .equation
        .as_deref()
        .ok_or("attribute 'equation' is missing")?;
    let shapes: Option<Vec<&[DimValue]>> = (0..cx.n_in()).map(|i| cx.shape(i)).collect();
    let shape = match shapes {
        Some(s) => Some(einsum_shape(eq, &s)?),
        None => None,
    };
    Ok(Out::one(fact(cx.dtype(0), shape)))
}
