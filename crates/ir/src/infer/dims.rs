//! Dimension arithmetic over known, symbolic and unknown sizes: numpy broadcasting, axis
//! normalization, products, and formatting for messages.

use crate::types::DimValue;

/// A (possibly symbolic) shape.
pub(crate) type Shape = Vec<DimValue>;

/// A known dimension.
pub(crate) fn k(v: i64) -> DimValue {
    DimValue::Known(v)
}

/// The value of a known dimension.
pub(crate) fn kv(d: &DimValue) -> Option<i64> {
    match d {
        DimValue::Known(v) => Some(*v),
        _ => None,
    }
}

/// A shape of known dimensions.
pub(crate) fn known(s: &[usize]) -> Shape {
    s.iter().map(|&d| k(d as i64)).collect()
}

/// A shape of `rank` unknown dimensions.
pub(crate) fn unknown_dims(rank: usize) -> Shape {
    vec![DimValue::Unknown; rank]
}

/// The static sizes, if every dimension is known and non-negative.
pub(crate) fn static_dims(s: &[DimValue]) -> Option<Vec<usize>> {
    s.iter()
        .map(|d| kv(d).filter(|v| *v >= 0).map(|v| v as usize))
        .collect()
}

/// `[1,3,?,batch]`, for messages.
pub(crate) fn fmt_dims(s: &[DimValue]) -> String {
    let parts: Vec<String> = s
        .iter()
        .map(|d| match d {
            DimValue::Known(v) => v.to_string(),
            DimValue::Param(p) => p.clone(),
            DimValue::Unknown => "?".into(),
        })
        .collect();
    format!("[{}]", parts.join(","))
}

/// Normalizes a possibly negative axis against `rank`.
pub(crate) fn axis(a: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    if a < -r || a >= r {
        return Err(format!("axis {a} is out of range for rank {rank}"));
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

/// Normalizes a list of axes (no duplicates allowed).
pub(crate) fn axes(list: &[i64], rank: usize) -> Result<Vec<usize>, String> {
    let mut out = Vec::with_capacity(list.len());
    for &a in list {
        let x = axis(a, rank)?;
        if out.contains(&x) {
            return Err(format!("axis {a} is repeated in {list:?}"));
        }
        out.push(x);
    }
    Ok(out)
}

/// False only when both dimensions are known and differ.
pub(crate) fn compatible(a: &DimValue, b: &DimValue) -> bool {
    !matches!((a, b), (DimValue::Known(x), DimValue::Known(y)) if x != y)
}

/// The more informative of two dimensions that must be equal (known over symbolic over unknown).
pub(crate) fn merge(a: &DimValue, b: &DimValue) -> DimValue {
    match (a, b) {
        (DimValue::Known(_), _) => a.clone(),
        (_, DimValue::Known(_)) => b.clone(),
        (DimValue::Param(_), _) => a.clone(),
        _ => b.clone(),
    }
}

/// One dimension of a numpy broadcast.
pub(crate) fn broadcast_dim(a: &DimValue, b: &DimValue) -> Result<DimValue, String> {
    use DimValue::*;
    Ok(match (a, b) {
        (Known(x), Known(y)) => {
            if x == y || *y == 1 {
                a.clone()
            } else if *x == 1 {
                b.clone()
            } else {
                return Err(format!("dimensions {x} and {y} do not broadcast"));
            }
        }
        (Known(1), _) => b.clone(),
        (_, Known(1)) => a.clone(),
        (Known(_), _) => a.clone(),
        (_, Known(_)) => b.clone(),
        (Param(p), Param(q)) if p == q => a.clone(),
        _ => Unknown,
    })
}

/// Numpy (multidirectional) broadcasting of two shapes.
pub(crate) fn broadcast(a: &[DimValue], b: &[DimValue]) -> Result<Shape, String> {
    let r = a.len().max(b.len());
    let mut out = Vec::with_capacity(r);
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r].clone()
        } else {
            k(1)
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r].clone()
        } else {
            k(1)
        };
        out.push(broadcast_dim(&da, &db).map_err(|e| {
            format!(
                "shapes {} and {} do not broadcast: {e}",
                fmt_dims(a),
                fmt_dims(b)
            )
        })?);
    }
    Ok(out)
}

/// Numpy broadcasting of several shapes (`None` when one of them has an unknown rank).
pub(crate) fn broadcast_all(shapes: &[Option<&[DimValue]>]) -> Result<Option<Shape>, String> {
    let mut acc: Shape = Vec::new();
    for s in shapes {
        let Some(s) = s else { return Ok(None) };
        acc = broadcast(&acc, s)?;
    }
    Ok(Some(acc))
}

/// Product of dimensions: known if all are, the single symbolic factor if the rest are 1.
pub(crate) fn product(dims: &[DimValue]) -> DimValue {
    dims.iter().fold(k(1), |acc, d| mul(&acc, d))
}

pub(crate) fn mul(a: &DimValue, b: &DimValue) -> DimValue {
    match (a, b) {
        (DimValue::Known(x), DimValue::Known(y)) => k(x * y),
        (DimValue::Known(1), _) => b.clone(),
        (_, DimValue::Known(1)) => a.clone(),
        (DimValue::Known(0), _) | (_, DimValue::Known(0)) => k(0),
        _ => DimValue::Unknown,
    }
}

pub(crate) fn add(a: &DimValue, b: &DimValue) -> DimValue {
    match (a, b) {
        (DimValue::Known(x), DimValue::Known(y)) => k(x + y),
        (DimValue::Known(0), _) => b.clone(),
        (_, DimValue::Known(0)) => a.clone(),
        _ => DimValue::Unknown,
    }
}

/// `a / b` for a dimension known to be divisible (symbolic when dividing by 1).
pub(crate) fn div_exact(a: &DimValue, b: i64, what: &str) -> Result<DimValue, String> {
    match a {
        DimValue::Known(x) => {
            if b == 0 || x % b != 0 {
                Err(format!("{what}: {x} is not divisible by {b}"))
            } else {
                Ok(k(x / b))
            }
        }
        _ if b == 1 => Ok(a.clone()),
        _ => Ok(DimValue::Unknown),
    }
}

/// A dimension scaled by a known factor.
pub(crate) fn scale(a: &DimValue, f: i64) -> DimValue {
    mul(a, &k(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_rules() {
        let p = DimValue::Param("n".into());
        assert_eq!(broadcast(&[k(3), k(1)], &[k(4)]).unwrap(), vec![k(3), k(4)]);
        assert_eq!(
            broadcast(&[p.clone(), k(1)], &[k(1), k(5)]).unwrap(),
            vec![p.clone(), k(5)]
        );
        assert_eq!(
            broadcast(std::slice::from_ref(&p), &[k(7)]).unwrap(),
            vec![k(7)]
        );
        assert_eq!(
            broadcast(std::slice::from_ref(&p), &[DimValue::Param("m".into())]).unwrap(),
            vec![DimValue::Unknown]
        );
        assert!(broadcast(&[k(3)], &[k(4)]).is_err());
        assert_eq!(axis(-1, 4).unwrap(), 3);
        assert!(axis(4, 4).is_err());
        assert_eq!(product(&[k(2), p.clone()]), DimValue::Unknown);
        assert_eq!(product(&[k(1), p.clone()]), p);
    }
}
