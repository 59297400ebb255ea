//! Spatial geometry shared by conv and pooling: `auto_pad` resolution and output-size arithmetic,
//! following the ONNX operator spec. Pads use ONNX's layout `[x1_begin, x2_begin, ..., x1_end, ...]`.

use crate::error::{KernelError, Result, param_err, shape_err};
use std::str::FromStr;

/// ONNX `auto_pad`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AutoPad {
    /// Use the explicit `pads` attribute.
    #[default]
    NotSet,
    /// Pad so that `out = ceil(in / stride)`, the odd extra pad at the end.
    SameUpper,
    /// Pad so that `out = ceil(in / stride)`, the odd extra pad at the beginning.
    SameLower,
    /// No padding.
    Valid,
}

impl FromStr for AutoPad {
    type Err = KernelError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "NOTSET" | "" => AutoPad::NotSet,
            "SAME_UPPER" => AutoPad::SameUpper,
            "SAME_LOWER" => AutoPad::SameLower,
            "VALID" => AutoPad::Valid,
            _ => return Err(param_err!("unknown auto_pad {s:?}")),
        })
    }
}

/// Effective extent of a dilated kernel axis: `(k - 1) * d + 1`.
pub(crate) fn effective_kernel(k: usize, d: usize) -> usize {
    if k == 0 { 0 } else { (k - 1) * d + 1 }
}

/// Resolves `auto_pad` into explicit pads (length `2 * spatial rank`) for Conv and the pooling ops.
/// `explicit_pads` is used for `NOTSET` (empty means all zero). `SAME_*` gives `out = ceil(in / s)` with
/// total padding `max(0, (out - 1) * s + (k - 1) * d + 1 - in)`.
pub fn resolve_auto_pad(
    auto_pad: AutoPad,
    input_spatial: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
    explicit_pads: &[usize],
) -> Result<Vec<usize>> {
    let nd = input_spatial.len();
    if kernel.len() != nd || strides.len() != nd || dilations.len() != nd {
        return Err(param_err!(
            "kernel {kernel:?}, strides {strides:?} and dilations {dilations:?} must each have {nd} entries"
        ));
    }
    if strides.contains(&0) || dilations.contains(&0) {
        return Err(param_err!(
            "strides {strides:?} and dilations {dilations:?} must be positive"
        ));
    }
    Ok(match auto_pad {
        AutoPad::NotSet => {
            if explicit_pads.is_empty() {
                vec![0; 2 * nd]
            } else if explicit_pads.len() == 2 * nd {
                explicit_pads.to_vec()
            } else {
                return Err(param_err!(
                    "pads {explicit_pads:?} must have {} entries",
                    2 * nd
                ));
            }
        }
        AutoPad::Valid => vec![0; 2 * nd],
        AutoPad::SameUpper | AutoPad::SameLower => {
            let mut pads = vec![0; 2 * nd];
            for i in 0..nd {
                let out = input_spatial[i].div_ceil(strides[i]);
                let need =
                    out.saturating_sub(1) * strides[i] + effective_kernel(kernel[i], dilations[i]);
                let total = need.saturating_sub(input_spatial[i]);
                let small = total / 2;
                let (b, e) = if auto_pad == AutoPad::SameUpper {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                pads[i] = b;
                pads[nd + i] = e;
            }
            pads
        }
    })
}

/// Checks strides/dilations/pads lengths and positivity for `nd` spatial axes.
pub(crate) fn check_geometry(
    nd: usize,
    strides: &[usize],
    dilations: &[usize],
    pads: &[usize],
) -> Result<()> {
    if strides.len() != nd || dilations.len() != nd || pads.len() != 2 * nd {
        return Err(param_err!(
            "{nd} spatial axes need {nd} strides (got {strides:?}), {nd} dilations (got {dilations:?}) and {} pads (got {pads:?})",
            2 * nd
        ));
    }
    if strides.contains(&0) || dilations.contains(&0) {
        return Err(param_err!(
            "strides {strides:?} and dilations {dilations:?} must be positive"
        ));
    }
    Ok(())
}

/// Output length of one axis of a sliding window: `floor((in + pb + pe - eff) / s) + 1`, or with
/// `ceil_mode` the ceiling, dropping a last window that would start in the end padding (ONNX).
pub(crate) fn window_out_len(
    input: usize,
    k: usize,
    s: usize,
    d: usize,
    pb: usize,
    pe: usize,
    ceil_mode: bool,
) -> Result<usize> {
    let eff = effective_kernel(k, d);
    let padded = input + pb + pe;
    if eff > padded {
        return Err(shape_err!(
            "kernel extent {eff} (kernel {k}, dilation {d}) exceeds padded input length {padded}"
        ));
    }
    let num = padded - eff;
    let mut out = if ceil_mode {
        num.div_ceil(s) + 1
    } else {
        num / s + 1
    };
    if ceil_mode && (out - 1) * s >= input + pb {
        out -= 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_upper_and_lower_put_the_odd_pad_at_opposite_ends() {
        // in 5, k 4, s 1: total 3.
        let up = resolve_auto_pad(AutoPad::SameUpper, &[5], &[4], &[1], &[1], &[]).unwrap();
        assert_eq!(up, vec![1, 2]);
        let lo = resolve_auto_pad(AutoPad::SameLower, &[5], &[4], &[1], &[1], &[]).unwrap();
        assert_eq!(lo, vec![2, 1]);
        // in 7, k 3, s 2, d 2: out 4, need 3*2 + 5 = 11, total 4.
        let p =
            resolve_auto_pad(AutoPad::SameUpper, &[7, 4], &[3, 1], &[2, 2], &[2, 1], &[]).unwrap();
        assert_eq!(p, vec![2, 0, 2, 0]);
        assert_eq!(
            resolve_auto_pad(AutoPad::Valid, &[7], &[3], &[1], &[1], &[1, 1]).unwrap(),
            vec![0, 0]
        );
        assert_eq!(
            resolve_auto_pad(AutoPad::NotSet, &[7], &[3], &[1], &[1], &[1, 2]).unwrap(),
            vec![1, 2]
        );
        assert!(resolve_auto_pad(AutoPad::NotSet, &[7], &[3], &[1], &[1], &[1]).is_err());
        assert!(resolve_auto_pad(AutoPad::SameUpper, &[7], &[3], &[0], &[1], &[]).is_err());
        assert_eq!("SAME_LOWER".parse::<AutoPad>().unwrap(), AutoPad::SameLower);
        assert!("same".parse::<AutoPad>().is_err());
    }

    #[test]
    fn ceil_mode_drops_a_window_starting_in_end_padding() {
        assert_eq!(window_out_len(4, 3, 2, 1, 0, 0, true).unwrap(), 2);
        assert_eq!(window_out_len(4, 3, 2, 1, 0, 0, false).unwrap(), 1);
        // 4 + 1 end pad, k 2, s 2: ceil gives 3 but the third window would start at 4 (end padding).
        assert_eq!(window_out_len(4, 2, 2, 1, 0, 1, true).unwrap(), 2);
        assert_eq!(window_out_len(5, 2, 2, 1, 0, 0, true).unwrap(), 3);
        assert!(window_out_len(2, 3, 1, 1, 0, 0, false).is_err());
    }
}
