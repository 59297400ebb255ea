//! Small shared helpers: checked element counts, buffer-length checks, per-thread scratch buffers.

use crate::error::{KernelError, Result, shape_err};
use std::cell::RefCell;

/// Element count of `shape`, or a shape error on overflow.
pub(crate) fn numel(shape: &[usize]) -> Result<usize> {
    qtool_tensor::checked_numel(shape)
        .ok_or_else(|| shape_err!("element count of {shape:?} overflows"))
}

/// Checks that a buffer has exactly `expected` elements.
pub(crate) fn check_len(what: &'static str, got: usize, expected: usize) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(KernelError::Length {
            what,
            expected,
            got,
        })
    }
}

/// Row-major strides of `shape`.
pub(crate) fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Advances a row-major multi-index over `shape`; returns false after the last index.
pub(crate) fn next_index(idx: &mut [usize], shape: &[usize]) -> bool {
    for a in (0..idx.len()).rev() {
        idx[a] += 1;
        if idx[a] < shape[a] {
            return true;
        }
        idx[a] = 0;
    }
    false
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer resized to `len` (contents unspecified). The buffer is
/// taken out of the thread-local while `f` runs, so a nested call (rayon work stealing) just gets a
/// fresh one instead of a borrow conflict; the larger buffer is kept for the next call.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    SCRATCH.with(|s| {
        let mut slot = s.borrow_mut();
        if slot.capacity() < buf.capacity() {
            *slot = buf;
        }
    });
    r
}

/// Minimum multiply-adds before a kernel splits work across rayon tasks.
pub(crate) const PAR_MIN_FLOPS: usize = 1 << 16;

/// The valid range `[lo, hi)` of output positions `o < out_len` whose input position `o * s + off`
/// lies in `[0, in_len)`.
#[inline]
pub(crate) fn valid_range(out_len: usize, s: usize, off: isize, in_len: usize) -> (usize, usize) {
    let s_i = s as isize;
    let lo = if off >= 0 {
        0
    } else {
        ((-off) + s_i - 1) / s_i
    };
    let last = in_len as isize - 1 - off;
    let hi = if last < 0 { 0 } else { last / s_i + 1 };
    let hi = (hi as usize).min(out_len);
    let lo = (lo as usize).min(hi);
    (lo, hi)
}
