//! The Einsum op: explicit (`->`) and implicit outputs, `...` broadcasting, repeated labels within an
//! operand (diagonals, traces) and reductions, for f32, f64, i32, i64, u32, u64 (f16 and bf16 through
//! f32). Operands are contracted pairwise from left to right; each contraction is lowered to a
//! (batched, broadcast) matmul after permuting the operands to `[batch, free, contracted]` /
//! `[batch, contracted, free]`, and labels only one operand uses are summed out first.

use super::OpCtx;
use super::nn::{Num, from_f32, matmul_arrays, to_f32, wrap};
use crate::bail;
use crate::error::OpError;
use ndarray::{ArrayD, Axis, IxDyn};
use qtool_ir::{Op, ops};
use qtool_tensor::{DType, Tensor};

pub(crate) fn eval(
    op: &Op,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
) -> Option<Result<Vec<Tensor>, OpError>> {
    match op {
        Op::Einsum(o) => Some(einsum(o, cx, inputs)),
        _ => None,
    }
}

/// A label: a letter (its ASCII code) or the `j`-th broadcast dim of `...` (`256 + j`).
type Label = u32;

/// One side of the equation before `...` is expanded.
#[derive(Debug, Clone, PartialEq)]
struct Term {
    letters_before: Vec<Label>,
    /// `Some(letters after)` when the term has an ellipsis.
    ellipsis: Option<Vec<Label>>,
}

fn parse_term(s: &str) -> Result<Term, OpError> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let (before, after) = match s.find("...") {
        Some(p) => (&s[..p], Some(&s[p + 3..])),
        None => (&s[..], None),
    };
    let letters = |part: &str| -> Result<Vec<Label>, OpError> {
        part.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    Ok(c as Label)
                } else {
                    Err(OpError(format!("invalid einsum label {c:?} in term {s:?}")))
                }
            })
            .collect()
    };
    Ok(Term {
        letters_before: letters(before)?,
        ellipsis: after.map(letters).transpose()?,
    })
}

impl Term {
    fn n_letters(&self) -> usize {
        self.letters_before.len() + self.ellipsis.as_ref().map_or(0, Vec::len)
    }
    /// The labels of an operand of `rank` dims, with `ell` total broadcast dims in the equation.
    fn expand(&self, rank: usize, ell: usize) -> Result<Vec<Label>, OpError> {
        let mut v = self.letters_before.clone();
        match &self.ellipsis {
            None => {
                if rank != v.len() {
                    bail!(
                        "einsum term has {} labels, its operand has rank {rank}",
                        v.len()
                    );
                }
            }
            Some(after) => {
                let e = match rank.checked_sub(self.n_letters()) {
                    Some(e) => e,
                    None => bail!(
                        "einsum term has {} labels, its operand has rank {rank}",
                        self.n_letters()
                    ),
                };
                v.extend((ell - e..ell).map(|j| 256 + j as Label));
                v.extend(after);
            }
        }
        Ok(v)
    }
}

/// The parsed equation with every operand's labels expanded.
#[derive(Debug, PartialEq)]
struct Equation {
    inputs: Vec<Vec<Label>>,
    output: Vec<Label>,
}

fn parse_equation(eq: &str, ranks: &[usize]) -> Result<Equation, OpError> {
    let (lhs, rhs) = match eq.find("->") {
        Some(p) => (&eq[..p], Some(&eq[p + 2..])),
        None => (eq, None),
    };
    let terms: Vec<Term> = lhs.split(',').map(parse_term).collect::<Result<_, _>>()?;
    if terms.len() != ranks.len() {
        bail!(
            "equation {eq:?} has {} operands, the node has {} inputs",
            terms.len(),
            ranks.len()
        );
    }
    let ell = terms
        .iter()
        .zip(ranks)
        .filter(|(t, _)| t.ellipsis.is_some())
        .map(|(t, &r)| r.saturating_sub(t.n_letters()))
        .max()
        .unwrap_or(0);
    let inputs: Vec<Vec<Label>> = terms
        .iter()
        .zip(ranks)
        .map(|(t, &r)| t.expand(r, ell))
        .collect::<Result<_, _>>()?;
    let output = match rhs {
        Some(r) => {
            let t = parse_term(r)?;
            let out = t.expand(
                t.n_letters() + if t.ellipsis.is_some() { ell } else { 0 },
                ell,
            )?;
            for (i, l) in out.iter().enumerate() {
                if out[..i].contains(l) {
                    bail!("output label {} appears twice in {eq:?}", label_name(*l));
                }
                if !inputs.iter().any(|ls| ls.contains(l)) {
                    bail!(
                        "output label {} does not appear in any input of {eq:?}",
                        label_name(*l)
                    );
                }
            }
            out
        }
        None => {
            // implicit: broadcast dims, then the letters used exactly once, in ASCII order
            let mut out: Vec<Label> = (0..ell).map(|j| 256 + j as Label).collect();
            let mut letters: Vec<Label> = inputs
                .iter()
                .flatten()
                .copied()
                .filter(|&l| l < 256)
                .collect();
            letters.sort_unstable();
            let once: Vec<Label> = letters
                .iter()
                .copied()
                .filter(|l| letters.iter().filter(|m| *m == l).count() == 1)
                .collect();
            out.extend(once);
            out
        }
    };
    Ok(Equation { inputs, output })
}

fn label_name(l: Label) -> String {
    if l < 256 {
        (l as u8 as char).to_string()
    } else {
        format!("...[{}]", l - 256)
    }
}

/// An operand with one label per axis (no repeats).
struct Operand<T> {
    a: ArrayD<T>,
    labels: Vec<Label>,
}

/// Takes the diagonal over repeated labels, so every label appears once.
fn dedup_labels<T: Num>(a: ArrayD<T>, labels: &[Label]) -> Result<Operand<T>, OpError> {
    let mut uniq: Vec<Label> = Vec::new();
    for &l in labels {
        if !uniq.contains(&l) {
            uniq.push(l);
        }
    }
    if uniq.len() == labels.len() {
        return Ok(Operand { a, labels: uniq });
    }
    let mut shape = vec![0usize; uniq.len()];
    for (ax, l) in labels.iter().enumerate() {
        let u = uniq.iter().position(|m| m == l).expect("present");
        let d = a.shape()[ax];
        if shape[u] != 0 && shape[u] != d {
            bail!(
                "repeated label {} has different sizes {} and {d}",
                label_name(*l),
                shape[u]
            );
        }
        shape[u] = d;
    }
    // input offset = sum over input axes of idx[unique pos] * stride; fold per unique label
    let a = a.as_standard_layout().into_owned();
    let strides = a.strides().to_vec();
    let mut ustride = vec![0isize; uniq.len()];
    for (ax, l) in labels.iter().enumerate() {
        ustride[uniq.iter().position(|m| m == l).expect("present")] += strides[ax];
    }
    let src = a.as_slice().expect("standard");
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..n {
        let off: isize = idx
            .iter()
            .zip(&ustride)
            .map(|(&i, &s)| i as isize * s)
            .sum();
        out.push(src[off as usize]);
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Ok(Operand {
        a: ArrayD::from_shape_vec(IxDyn(&shape), out).expect("sizes"),
        labels: uniq,
    })
}

/// Sums out the axes whose labels are not in `keep`.
fn sum_out<T: Num>(mut o: Operand<T>, keep: &[Label]) -> Operand<T> {
    for ax in (0..o.labels.len()).rev() {
        if !keep.contains(&o.labels[ax]) {
            o.a = o.a.sum_axis(Axis(ax));
            o.labels.remove(ax);
        }
    }
    o
}

/// `o` permuted to `order` (a permutation of its labels) and broadcast to `shape`, contiguous.
fn arrange<T: Num>(o: &Operand<T>, order: &[Label], shape: &[usize]) -> ArrayD<T> {
    let perm: Vec<usize> = order
        .iter()
        .map(|l| o.labels.iter().position(|m| m == l).expect("label present"))
        .collect();
    let v = o.a.view().permuted_axes(IxDyn(&perm));
    let v = v
        .broadcast(IxDyn(shape))
        .expect("sizes agree up to broadcasting");
    v.as_standard_layout().into_owned()
}

/// Contracts two operands, keeping the labels in `keep`.
fn contract<T: Num>(
    a: Operand<T>,
    b: Operand<T>,
    keep: &[Label],
    size: &dyn Fn(Label) -> usize,
    threads: usize,
) -> Result<Operand<T>, OpError> {
    let keep_a: Vec<Label> = keep.iter().chain(&b.labels).copied().collect();
    let keep_b: Vec<Label> = keep.iter().chain(&a.labels).copied().collect();
    let a = sum_out(a, &keep_a);
    let b = sum_out(b, &keep_b);
    let batch: Vec<Label> = a
        .labels
        .iter()
        .copied()
        .filter(|l| b.labels.contains(l) && keep.contains(l))
        .collect();
    let inner: Vec<Label> = a
        .labels
        .iter()
        .copied()
        .filter(|l| b.labels.contains(l) && !keep.contains(l))
        .collect();
    let a_free: Vec<Label> = a
        .labels
        .iter()
        .copied()
        .filter(|l| !b.labels.contains(l))
        .collect();
    let b_free: Vec<Label> = b
        .labels
        .iter()
        .copied()
        .filter(|l| !a.labels.contains(l))
        .collect();
    let sizes = |ls: &[Label]| ls.iter().map(|&l| size(l)).collect::<Vec<_>>();
    let (bs, ks, ms, ns) = (sizes(&batch), sizes(&inner), sizes(&a_free), sizes(&b_free));
    let (k, m, n): (usize, usize, usize) = (
        ks.iter().product(),
        ms.iter().product(),
        ns.iter().product(),
    );
    let a_order: Vec<Label> = batch.iter().chain(&a_free).chain(&inner).copied().collect();
    let b_order: Vec<Label> = batch.iter().chain(&inner).chain(&b_free).copied().collect();
    let a_shape: Vec<usize> = bs.iter().chain(&ms).chain(&ks).copied().collect();
    let b_shape: Vec<usize> = bs.iter().chain(&ks).chain(&ns).copied().collect();
    let a3 = arrange(&a, &a_order, &a_shape);
    let b3 = arrange(&b, &b_order, &b_shape);
    let mut a_mm = bs.clone();
    a_mm.extend([m, k]);
    let mut b_mm = bs.clone();
    b_mm.extend([k, n]);
    let a3 = a3
        .into_shape_with_order(IxDyn(&a_mm))
        .map_err(|e| OpError(e.to_string()))?;
    let b3 = b3
        .into_shape_with_order(IxDyn(&b_mm))
        .map_err(|e| OpError(e.to_string()))?;
    let r = if bs.is_empty() && m * n * k == 0 {
        ArrayD::zeros(IxDyn(&[m, n]))
    } else {
        matmul_arrays(&a3, &b3, threads)?
    };
    let out_shape: Vec<usize> = bs.iter().chain(&ms).chain(&ns).copied().collect();
    let labels: Vec<Label> = batch
        .iter()
        .chain(&a_free)
        .chain(&b_free)
        .copied()
        .collect();
    let a = r
        .into_shape_with_order(IxDyn(&out_shape))
        .map_err(|e| OpError(e.to_string()))?;
    Ok(Operand { a, labels })
}

fn einsum_t<T: Num>(
    eq: &Equation,
    arrays: Vec<ArrayD<T>>,
    threads: usize,
) -> Result<ArrayD<T>, OpError> {
    // the size of every label (1 broadcasts)
    let mut sizes: Vec<(Label, usize)> = Vec::new();
    for (ls, a) in eq.inputs.iter().zip(&arrays) {
        for (&l, &d) in ls.iter().zip(a.shape()) {
            match sizes.iter_mut().find(|(m, _)| *m == l) {
                None => sizes.push((l, d)),
                Some((_, s)) if *s == d || d == 1 => {}
                Some((_, s)) if *s == 1 => *s = d,
                Some((_, s)) => bail!("label {} has sizes {s} and {d}", label_name(l)),
            }
        }
    }
    let size = |l: Label| sizes.iter().find(|(m, _)| *m == l).map_or(1, |&(_, s)| s);
    let mut ops: Vec<Operand<T>> = Vec::with_capacity(arrays.len());
    for (a, ls) in arrays.into_iter().zip(&eq.inputs) {
        ops.push(dedup_labels(a, ls)?);
    }
    // labels needed after operand i: the output's and those of operands other than i
    let needed_except = |ops: &[Operand<T>], i: usize| -> Vec<Label> {
        let mut v = eq.output.clone();
        for (j, o) in ops.iter().enumerate() {
            if j != i {
                v.extend(&o.labels);
            }
        }
        v
    };
    for i in 0..ops.len() {
        let keep = needed_except(&ops, i);
        let o = std::mem::replace(
            &mut ops[i],
            Operand {
                a: ArrayD::zeros(IxDyn(&[])),
                labels: vec![],
            },
        );
        ops[i] = sum_out(o, &keep);
    }
    let mut iter = ops.into_iter();
    let mut cur = iter.next().expect("at least one operand");
    let rest: Vec<Operand<T>> = iter.collect();
    for (j, next) in rest.iter().enumerate() {
        let mut keep = eq.output.clone();
        for later in &rest[j + 1..] {
            keep.extend(&later.labels);
        }
        let next = Operand {
            a: next.a.clone(),
            labels: next.labels.clone(),
        };
        cur = contract(cur, next, &keep, &size, threads)?;
    }
    let cur = sum_out(cur, &eq.output);
    // the output order, broadcasting dims of size 1 where another operand was larger
    let out_shape: Vec<usize> = eq.output.iter().map(|&l| size(l)).collect();
    Ok(arrange(&cur, &eq.output, &out_shape))
}

fn einsum(
    op: &ops::Einsum,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>, OpError> {
    let Some(eq) = &op.equation else {
        bail!("Einsum needs the equation attribute")
    };
    if inputs.is_empty() {
        bail!("Einsum needs at least one input");
    }
    let ts: Vec<&Tensor> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| t.ok_or_else(|| OpError(format!("Einsum input {i} is missing"))))
        .collect::<Result<_, _>>()?;
    let d = ts[0].dtype();
    if ts.iter().any(|t| t.dtype() != d) {
        bail!("Einsum inputs must share one element type");
    }
    let ranks: Vec<usize> = ts.iter().map(|t| t.rank()).collect();
    let parsed = parse_equation(eq, &ranks)?;
    macro_rules! go {
        ($t:ty) => {{
            let arrays: Vec<ArrayD<$t>> = ts
                .iter()
                .map(|t| t.view::<$t>().cloned())
                .collect::<Result<_, _>>()?;
            wrap(einsum_t::<$t>(&parsed, arrays, cx.threads)?)
        }};
    }
    let out = match d {
        DType::F32 => go!(f32),
        DType::F64 => go!(f64),
        DType::I32 => go!(i32),
        DType::I64 => go!(i64),
        DType::U32 => go!(u32),
        DType::U64 => go!(u64),
        DType::F16 | DType::BF16 => {
            let arrays: Vec<ArrayD<f32>> = ts
                .iter()
                .map(|t| to_f32(t)?.into_array::<f32>().map_err(OpError::from))
                .collect::<Result<_, _>>()?;
            from_f32(
                Tensor::F32(einsum_t::<f32>(&parsed, arrays, cx.threads)?),
                d,
            )?
        }
        _ => bail!("Einsum does not support element type {d}"),
    };
    Ok(vec![out])
}

#[cfg(test)]
mod tests {
    use super::super::nn::testutil::*;
    use super::*;
    use qtool_ir::ops::Einsum;

    /// Brute-force einsum over f64: iterate every assignment of every label.
    fn brute(eq: &str, xs: &[(&[usize], Vec<f64>)]) -> (Vec<usize>, Vec<f64>) {
        let ranks: Vec<usize> = xs.iter().map(|(s, _)| s.len()).collect();
        let p = parse_equation(eq, &ranks).unwrap();
        let mut labels: Vec<Label> = vec![];
        let mut sizes: Vec<usize> = vec![];
        for (ls, (s, _)) in p.inputs.iter().zip(xs) {
            for (&l, &d) in ls.iter().zip(s.iter()) {
                match labels.iter().position(|&m| m == l) {
                    None => {
                        labels.push(l);
                        sizes.push(d);
                    }
                    Some(i) => sizes[i] = sizes[i].max(d),
                }
            }
        }
        let out_shape: Vec<usize> = p
            .output
            .iter()
            .map(|l| sizes[labels.iter().position(|m| m == l).unwrap()])
            .collect();
        let mut out = vec![0.0; out_shape.iter().product()];
        let total: usize = sizes.iter().product();
        for flat in 0..total {
            let mut rem = flat;
            let mut val = vec![0usize; labels.len()];
            for i in (0..labels.len()).rev() {
                val[i] = rem % sizes[i];
                rem /= sizes[i];
            }
            let get = |l: Label| val[labels.iter().position(|&m| m == l).unwrap()];
            let mut prod = 1.0;
            for (ls, (s, data)) in p.inputs.iter().zip(xs) {
                let mut off = 0;
                for (&l, &d) in ls.iter().zip(s.iter()) {
                    off = off * d + if d == 1 { 0 } else { get(l) };
                }
                prod *= data[off];
            }
            let mut o = 0;
            for (&l, &d) in p.output.iter().zip(&out_shape) {
                o = o * d + get(l);
            }
            out[o] += prod;
        }
        (out_shape, out)
    }

    fn check(eq: &str, shapes: &[&[usize]], rng: &mut Rng) {
        let ts: Vec<Tensor> = shapes.iter().map(|s| rng.tensor(s)).collect();
        let data: Vec<(&[usize], Vec<f64>)> = shapes
            .iter()
            .zip(&ts)
            .map(|(s, t)| (*s, t.to_f64_vec().unwrap()))
            .collect();
        let (shape, want) = brute(eq, &data);
        let refs: Vec<Option<&Tensor>> = ts.iter().map(Some).collect();
        let out = run(
            Einsum {
                equation: Some(eq.into()),
            },
            12,
            1,
            &refs,
        );
        let want: Vec<f32> = want.into_iter().map(|v| v as f32).collect();
        assert_close(&out[0], &shape, &want, 1e-5);
    }

    #[test]
    fn einsum_matches_brute_force() {
        let mut rng = Rng::new(31);
        let cases: &[(&str, &[&[usize]])] = &[
            ("bij,bjk->bik", &[&[2, 3, 4], &[2, 4, 5]]),
            ("bhid,bhjd->bhij", &[&[2, 3, 4, 5], &[2, 3, 6, 5]]),
            ("bhij,bhjd->bhid", &[&[2, 2, 3, 4], &[2, 2, 4, 5]]),
            ("ij->ji", &[&[3, 4]]),
            ("ij,jk", &[&[3, 4], &[4, 2]]),
            ("ba", &[&[3, 4]]),
            ("ii->i", &[&[4, 4]]),
            ("ii", &[&[4, 4]]),
            ("ij->", &[&[3, 4]]),
            ("ij->i", &[&[3, 4]]),
            ("i,i", &[&[5], &[5]]),
            ("i,j->ij", &[&[3], &[4]]),
            ("...ij,...jk->...ik", &[&[2, 3, 4, 5], &[5, 2]]),
            ("...ij,...jk", &[&[2, 1, 4, 5], &[3, 5, 2]]),
            ("b...i,bi->b...", &[&[2, 3, 4], &[2, 4]]),
            ("ijk,ikl,lm->jm", &[&[2, 3, 4], &[2, 4, 5], &[5, 3]]),
            ("abc,cd->abd", &[&[2, 3, 4], &[4, 5]]),
            ("bn,anm,bm->ba", &[&[2, 3], &[4, 3, 5], &[2, 5]]),
            ("iij->j", &[&[3, 3, 2]]),
            ("i,i->i", &[&[4], &[4]]),
            ("ij,ij->ij", &[&[3, 4], &[3, 4]]),
        ];
        for (eq, shapes) in cases {
            check(eq, shapes, &mut rng);
        }
    }

    #[test]
    fn einsum_integers_implicit_order_and_errors() {
        let a = Tensor::from_vec(&[2, 2], vec![1i64, 2, 3, 4]).unwrap();
        let out = run(
            Einsum {
                equation: Some("ij,jk->ik".into()),
            },
            12,
            1,
            &[Some(&a), Some(&a)],
        );
        assert_eq!(out[0].to_i64_vec().unwrap(), vec![7, 10, 15, 22]);
        let out = run(
            Einsum {
                equation: Some("ii".into()),
            },
            12,
            1,
            &[Some(&a)],
        );
        assert_eq!(out[0].shape(), &[] as &[usize]);
        assert_eq!(out[0].to_i64_vec().unwrap(), vec![5]);
        // implicit output sorts letters: "ba" transposes
        let p = parse_equation("ba", &[2]).unwrap();
        assert_eq!(p.output, vec!['a' as Label, 'b' as Label]);
        let x = t(&[2, 3], &[0.0; 6]);
        assert!(
            run_err(
                Einsum {
                    equation: Some("ijk->i".into())
                },
                12,
                &[Some(&x)]
            )
            .contains("rank")
        );
        assert!(
            run_err(
                Einsum {
                    equation: Some("ij->k".into())
                },
                12,
                &[Some(&x)]
            )
            .contains("does not appear")
        );
        assert!(
            run_err(
                Einsum {
                    equation: Some("ij,jk->ik".into())
                },
                12,
                &[Some(&x), Some(&x)]
            )
            .contains("sizes")
        );
    }
}
