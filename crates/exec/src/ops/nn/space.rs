//! DepthToSpace (DCR and CRD) and SpaceToDepth: pure rearrangements, for every element type.

use super::req;
use crate::bail;
use crate::error::OpError;
use ndarray::{ArrayD, IxDyn};
use qtool_ir::ops;
use qtool_tensor::{Element, Tensor, dispatch_tensor};

fn blocksize(b: Option<i64>) -> Result<usize, OpError> {
    match b {
        Some(b) if b >= 1 => Ok(b as usize),
        Some(b) => bail!("blocksize {b} must be positive"),
        None => bail!("the blocksize attribute is required"),
    }
}

/// Reshapes `a` to `split`, permutes the axes by `perm` and reshapes to `out`.
fn rearrange<T: Element>(
    a: &ArrayD<T>,
    split: &[usize],
    perm: &[usize],
    out: &[usize],
) -> Result<Tensor, OpError> {
    let std = a.as_standard_layout();
    let v = std
        .view()
        .into_shape_with_order(IxDyn(split))
        .map_err(|e| OpError(e.to_string()))?;
    let p = v.permuted_axes(IxDyn(perm));
    let data: Vec<T> = p.iter().cloned().collect();
    Ok(T::wrap(
        ArrayD::from_shape_vec(IxDyn(out), data).map_err(|e| OpError(e.to_string()))?,
    ))
}

fn apply(x: &Tensor, split: &[usize], perm: &[usize], out: &[usize]) -> Result<Tensor, OpError> {
    dispatch_tensor!(x, a => rearrange(a, split, perm, out), p => bail!("element type {} is not supported", p.dtype))
}

pub(super) fn depth_to_space(
    op: &ops::DepthToSpace,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0, "input")?;
    let b = blocksize(op.blocksize)?;
    let s = x.shape();
    if s.len() != 4 {
        bail!("input must be 4-d [N, C, H, W], got shape {s:?}");
    }
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    if c % (b * b) != 0 {
        bail!("channels {c} are not divisible by blocksize^2 = {}", b * b);
    }
    let cb = c / (b * b);
    let out = [n, cb, h * b, w * b];
    let t = match op.mode.as_deref().unwrap_or("DCR") {
        "DCR" => apply(x, &[n, b, b, cb, h, w], &[0, 3, 4, 1, 5, 2], &out)?,
        "CRD" => apply(x, &[n, cb, b, b, h, w], &[0, 1, 4, 2, 5, 3], &out)?,
        m => bail!("unknown DepthToSpace mode {m:?}"),
    };
    Ok(vec![t])
}

pub(super) fn space_to_depth(
    op: &ops::SpaceToDepth,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0, "input")?;
    let b = blocksize(op.blocksize)?;
    let s = x.shape();
    if s.len() != 4 {
        bail!("input must be 4-d [N, C, H, W], got shape {s:?}");
    }
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    if h % b != 0 || w % b != 0 {
        bail!("spatial dims {h}x{w} are not divisible by blocksize {b}");
    }
    let out = [n, c * b * b, h / b, w / b];
    Ok(vec![apply(
        x,
        &[n, c, h / b, b, w / b, b],
        &[0, 3, 5, 1, 2, 4],
        &out,
    )?])
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use qtool_ir::ops::{DepthToSpace, SpaceToDepth};
    use qtool_tensor::Tensor;

    #[test]
    fn depth_to_space_dcr_crd_and_inverse() {
        // ONNX example: 1x8x2x3, blocksize 2
        let x: Vec<f32> = (0..48).map(|v| v as f32).collect();
        let xt = t(&[1, 8, 2, 3], &x);
        let out = run(
            DepthToSpace {
                blocksize: Some(2),
                mode: Some("DCR".into()),
            },
            13,
            1,
            &[Some(&xt)],
        );
        let v = out[0].to_f64_vec().unwrap();
        assert_eq!(out[0].shape(), &[1, 2, 4, 6]);
        assert_eq!(
            &v[..12],
            &[0., 12., 1., 13., 2., 14., 24., 36., 25., 37., 26., 38.]
        );
        let out = run(
            DepthToSpace {
                blocksize: Some(2),
                mode: Some("CRD".into()),
            },
            13,
            1,
            &[Some(&xt)],
        );
        let v = out[0].to_f64_vec().unwrap();
        assert_eq!(
            &v[..12],
            &[0., 6., 1., 7., 2., 8., 12., 18., 13., 19., 14., 20.]
        );
        // SpaceToDepth inverts DCR DepthToSpace
        let d2s = run(
            DepthToSpace {
                blocksize: Some(2),
                mode: None,
            },
            13,
            1,
            &[Some(&xt)],
        );
        let back = run(SpaceToDepth { blocksize: Some(2) }, 13, 1, &[Some(&d2s[0])]);
        assert_eq!(back[0], xt);
        let xi = Tensor::from_vec(&[1, 4, 1, 1], vec![1i64, 2, 3, 4]).unwrap();
        let out = run(
            DepthToSpace {
                blocksize: Some(2),
                mode: None,
            },
            13,
            1,
            &[Some(&xi)],
        );
        assert_eq!(out[0].to_i64_vec().unwrap(), vec![1, 2, 3, 4]);
        assert!(
            run_err(
                DepthToSpace {
                    blocksize: Some(3),
                    mode: None
                },
                13,
                &[Some(&xt)]
            )
            .contains("divisible")
        );
    }
}
