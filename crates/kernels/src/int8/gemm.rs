//! Int8 GEMM with a pre-packed constant right operand: `out[M, N] = stage(A[M, K] x B[K, N])`.

use super::block::{Block, Fix, Kernel};
use super::pack::{Layout, col_sums, pack_r, pack_v};
use super::stage::{OutputStage, Prepared, QOut};
use super::{KernelPath, QType, act_domain, check_zp, weight_domain, with_kernel};
use crate::error::{Result, param_err, shape_err};
use crate::util::{PAR_MIN_FLOPS, check_len, numel};
use rayon::prelude::*;

/// A constant `[K, N]` int8 weight packed once (at model load) for one kernel path, with its
/// per-column sums and zero points in the kernel domain.
#[derive(Clone, Debug)]
pub struct PackedB {
    path: KernelPath,
    layout: Layout,
    k: usize,
    n: usize,
    data: Vec<u8>,
    /// `sum_k b'[k][j]` (kernel domain).
    colsum: Vec<i32>,
    /// `zb'[j]` (kernel domain).
    zb: Vec<i32>,
    any_zb: bool,
}

impl PackedB {
    /// Packs `b` (`[K, N]` row-major) with zero points `zero_points` (one per column, or one) for
    /// [`KernelPath::selected`].
    pub fn new<W: QType>(b: &[W], b_shape: &[usize], zero_points: &[i32]) -> Result<Self> {
        Self::with_path(KernelPath::selected(), b, b_shape, zero_points)
    }

    /// [`PackedB::new`] for a given path (an `Unsupported` error if this CPU lacks it).
    pub fn with_path<W: QType>(
        path: KernelPath,
        b: &[W],
        b_shape: &[usize],
        zero_points: &[i32],
    ) -> Result<Self> {
        let path = path.check()?;
        let &[k, n] = b_shape else {
            return Err(shape_err!(
                "packed GEMM weight must be [K, N], got {b_shape:?}"
            ));
        };
        check_len("qgemm weight", b.len(), numel(b_shape)?)?;
        if zero_points.len() != 1 && zero_points.len() != n {
            return Err(shape_err!(
                "weight zero points have {} entries, expected 1 or N = {n}",
                zero_points.len()
            ));
        }
        for &z in zero_points {
            check_zp::<W>("weight", z)?;
        }
        let (flip, shift) = weight_domain::<W>();
        let zb: Vec<i32> = (0..n)
            .map(|j| zero_points[if zero_points.len() == 1 { 0 } else { j }] + shift)
            .collect();
        let layout = path.layout();
        let k4 = k.div_ceil(4);
        let mut data = vec![0u8; n.div_ceil(layout.nr) * layout.v_panel(k4)];
        pack_v(layout, b, k, n, 0, n, flip, true, &mut data);
        let mut colsum = vec![0; n];
        col_sums(b, k, n, 0, n, flip, true, &mut colsum);
        let any_zb = zb.iter().any(|&z| z != 0);
        Ok(PackedB {
            path,
            layout,
            k,
            n,
            data,
            colsum,
            zb,
            any_zb,
        })
    }

    /// K (rows of the weight).
    pub fn k(&self) -> usize {
        self.k
    }
    /// N (columns of the weight, the output channels).
    pub fn n(&self) -> usize {
        self.n
    }
    /// The kernel path the weight was packed for.
    pub fn path(&self) -> KernelPath {
        self.path
    }
}

/// `[..., M, N]` for an activation `[..., M, K]` (or `[N]` for `[K]`).
pub fn qgemm_output_shape(a_shape: &[usize], b: &PackedB) -> Result<Vec<usize>> {
    let Some((&k, lead)) = a_shape.split_last() else {
        return Err(shape_err!("qgemm activation must have rank >= 1"));
    };
    if k != b.k {
        return Err(shape_err!(
            "activation {a_shape:?} has K = {k}, the packed weight has K = {}",
            b.k
        ));
    }
    let mut s = lead.to_vec();
    s.push(b.n);
    Ok(s)
}

/// `out = stage(sum_k (a[.., m, k] - a_zero_point) * (b[k, n] - zb[n]))` for an activation
/// `[..., M, K]` (the leading axes are folded into M), writing `out` of shape
/// [`qgemm_output_shape`]. The output channel of the stage is the column `n`.
pub fn qgemm<A: QType, O: QOut>(
    a: &[A],
    a_shape: &[usize],
    a_zero_point: i32,
    b: &PackedB,
    stage: &OutputStage<'_>,
    out: &mut [O],
) -> Result<()> {
    let out_shape = qgemm_output_shape(a_shape, b)?;
    check_len("qgemm activation", a.len(), numel(a_shape)?)?;
    check_len("qgemm output", out.len(), numel(&out_shape)?)?;
    check_zp::<A>("activation", a_zero_point)?;
    let prep = Prepared::new::<O>(stage, b.n)?;
    if out.is_empty() {
        return Ok(());
    }
    let m = numel(&a_shape[..a_shape.len() - 1])?;
    with_kernel!(b.path, kern => gemm_run(kern, a, m, a_zero_point, b, &prep, out))
}

struct Task<'o, O> {
    r0: usize,
    r1: usize,
    c0: usize,
    c1: usize,
    rows: Vec<&'o mut [O]>,
}

fn gemm_run<K: Kernel, A: QType, O: QOut>(
    kern: K,
    a: &[A],
    m: usize,
    za: i32,
    b: &PackedB,
    prep: &Prepared,
    out: &mut [O],
) -> Result<()> {
    let l = K::LAYOUT;
    if l != b.layout {
        return Err(param_err!(
            "packed weight layout does not match its kernel path"
        ));
    }
    let (k, n) = (b.k, b.n);
    let (flip, shift) = act_domain::<A>();
    let za = za + shift;
    let k4 = k.div_ceil(4);
    let (mr, nr) = (l.mr, l.nr);
    let (mp, np) = (m.div_ceil(mr), n.div_ceil(nr));
    let (rpl, vpl) = (l.r_panel(k4), l.v_panel(k4));
    let mut apack = vec![0u8; mp * rpl];
    let mut rowsum = vec![0i32; if b.any_zb { m } else { 0 }];
    pack_r(
        l,
        a,
        m,
        k,
        k,
        flip,
        false,
        &mut apack,
        b.any_zb.then_some(&mut rowsum[..]),
    );
    // acc = S - zb' sum_a' - za' sum_b' + K za' zb' (+ bias): the column terms and -zb' per column.
    let kz = (k as i32).wrapping_mul(za);
    let colc: Vec<i32> = (0..n)
        .map(|j| {
            let v = kz
                .wrapping_mul(b.zb[j])
                .wrapping_sub(za.wrapping_mul(b.colsum[j]));
            prep.ibias
                .as_ref()
                .map_or(v, |bias| v.wrapping_add(bias[j]))
        })
        .collect();
    let colf: Vec<i32> = b.zb.iter().map(|z| z.wrapping_neg()).collect();

    let threads = rayon::current_num_threads();
    let par = threads > 1 && m * n * k >= 4 * PAR_MIN_FLOPS;
    let (ncb, nrb) = if par {
        let want = 4 * threads;
        let ncb = np.min(want);
        (ncb, want.div_ceil(ncb).min(mp))
    } else {
        (1, 1)
    };
    let cb: Vec<usize> = (0..=ncb).map(|i| (np * i / ncb * nr).min(n)).collect();
    let rb: Vec<usize> = (0..=nrb).map(|i| (mp * i / nrb * mr).min(m)).collect();
    let mut tasks: Vec<Task<'_, O>> = Vec::with_capacity(ncb * nrb);
    for r in rb.windows(2) {
        for c in cb.windows(2) {
            tasks.push(Task {
                r0: r[0],
                r1: r[1],
                c0: c[0],
                c1: c[1],
                rows: Vec::new(),
            });
        }
    }
    let mut rbi = 0;
    for (i, mut row) in out.chunks_mut(n).enumerate() {
        while i >= rb[rbi + 1] {
            rbi += 1;
        }
        for (ci, c) in cb.windows(2).enumerate() {
            let (head, tail) = std::mem::take(&mut row).split_at_mut(c[1] - c[0]);
            tasks[rbi * ncb + ci].rows.push(head);
            row = tail;
        }
    }
    let run = |t: &mut Task<'_, O>| {
        if t.r0 == t.r1 || t.c0 == t.c1 {
            return;
        }
        let mut blk = Block {
            k4,
            r: &apack[t.r0 / mr * rpl..t.r1.div_ceil(mr) * rpl],
            m: t.r1 - t.r0,
            v: &b.data[t.c0 / nr * vpl..t.c1.div_ceil(nr) * vpl],
            n: t.c1 - t.c0,
            fix: Fix {
                rowc: None,
                colc: Some(&colc[t.c0..t.c1]),
                rowf: b.any_zb.then(|| &rowsum[t.r0..t.r1]),
                colf: b.any_zb.then(|| &colf[t.c0..t.c1]),
            },
            stage: prep.view(t.c0..t.c1),
            chan_is_row: false,
            wrap: None,
            out: &mut t.rows,
        };
        kern.block::<O, true>(&mut blk);
    };
    if par {
        tasks.par_iter_mut().for_each(run);
    } else {
        tasks.iter_mut().for_each(run);
    }
    Ok(())
}
