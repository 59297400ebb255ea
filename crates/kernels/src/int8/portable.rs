//! The portable int8 path: plain Rust, 4x16 tiles on the byte layout.

use super::QOut;
use super::block::{Block, Kernel, run_block};
use super::pack::{Layout, dom};

pub(crate) const LAYOUT: Layout = Layout {
    mr: 4,
    nr: 16,
    wide: false,
};

/// The always-available path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Portable;

impl Kernel for Portable {
    const LAYOUT: Layout = LAYOUT;
    fn block<O: QOut, const RU: bool>(self, b: &mut Block<'_, '_, '_, O>) {
        run_block(LAYOUT, b, |r, v, acc| {
            kernel::<RU>(r.len() / LAYOUT.r_panel(1), r, v, acc)
        });
    }
}

/// `acc[i][j] += sum_k r[i][k] * v[k][j]` (wrapping); `RU`: the R bytes are u8 (and the V bytes i8), else the
/// reverse.
#[inline(always)]
fn kernel<const RU: bool>(k4: usize, r: &[u8], v: &[u8], acc: &mut [i32]) {
    const MR: usize = LAYOUT.mr;
    const NR: usize = LAYOUT.nr;
    let acc = &mut acc[..MR * NR];
    for (rg, vg) in r.chunks_exact(MR * 4).zip(v.chunks_exact(NR * 4)).take(k4) {
        for (i, row) in acc.chunks_exact_mut(NR).enumerate() {
            let ri: [i32; 4] = std::array::from_fn(|t| dom(rg[4 * i + t], !RU));
            for (a, vj) in row.iter_mut().zip(vg.chunks_exact(4)) {
                let s = ri[0] * dom(vj[0], RU)
                    + ri[1] * dom(vj[1], RU)
                    + ri[2] * dom(vj[2], RU)
                    + ri[3] * dom(vj[3], RU);
                *a = a.wrapping_add(s);
            }
        }
    }
}
