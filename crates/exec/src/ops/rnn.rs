//! The recurrent op family: LSTM and GRU with ONNX semantics (as ONNX Runtime computes them) in f32
//! (f64, f16 and bf16 through f32): forward, reverse and bidirectional; optional B, sequence_lens,
//! initial_h, initial_c and P (peepholes); the activation list with alpha/beta; clip; input_forget;
//! layout 0 and 1; outputs Y, Y_h, Y_c as requested.
//!
//! Gate order in W, R and B: LSTM `i, o, f, c` (peepholes `i, o, f`), GRU `z, r, h`. Positions past a
//! batch entry's sequence length produce zeros in Y and leave the state unchanged, so Y_h / Y_c hold
//! the state after its last valid step (for the reverse direction, after step 0).

use super::OpCtx;
use super::nn::{f32_data, f32_tensor, opt, req, via_f32};
use crate::bail;
use crate::error::OpError;
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, s};
use qtool_ir::Op;
use qtool_tensor::Tensor;

pub(crate) fn eval(
    op: &Op,
    cx: &OpCtx,
    inputs: &[Option<&Tensor>],
) -> Option<Result<Vec<Tensor>, OpError>> {
    match op {
        Op::Lstm(_) | Op::Gru(_) => Some(via_f32(op, cx, inputs, usize::MAX, eval_f32)),
        _ => None,
    }
}

fn eval_f32(op: &Op, cx: &OpCtx, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
    match op {
        Op::Lstm(o) => {
            let spec = Spec::new(
                Kind::Lstm {
                    input_forget: o.input_forget.unwrap_or(0) != 0,
                },
                &o.direction,
                o.hidden_size,
                &o.activations,
                &o.activation_alpha,
                &o.activation_beta,
                o.clip,
                o.layout,
                inputs,
            )?;
            run(&spec, cx, inputs)
        }
        Op::Gru(o) => {
            let spec = Spec::new(
                Kind::Gru {
                    linear_before_reset: o.linear_before_reset.unwrap_or(0) != 0,
                },
                &o.direction,
                o.hidden_size,
                &o.activations,
                &o.activation_alpha,
                &o.activation_beta,
                o.clip,
                o.layout,
                inputs,
            )?;
            run(&spec, cx, inputs)
        }
        _ => bail!("internal: {} is not a recurrent op", op.op_type()),
    }
}

/// An activation function of the `activations` attribute.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Act {
    Sigmoid,
    Tanh,
    Relu,
    Softsign,
    Softplus,
    Affine(f32, f32),
    LeakyRelu(f32),
    ThresholdedRelu(f32),
    ScaledTanh(f32, f32),
    HardSigmoid(f32, f32),
    Elu(f32),
}

impl Act {
    fn apply(self, x: f32) -> f32 {
        match self {
            Act::Sigmoid => {
                if x >= 0.0 {
                    1.0 / (1.0 + (-x).exp())
                } else {
                    let e = x.exp();
                    e / (1.0 + e)
                }
            }
            Act::Tanh => x.tanh(),
            Act::Relu => x.max(0.0),
            Act::Softsign => x / (1.0 + x.abs()),
            Act::Softplus => (1.0 + x.exp()).ln(),
            Act::Affine(a, b) => a * x + b,
            Act::LeakyRelu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Act::ThresholdedRelu(a) => {
                if x > a {
                    x
                } else {
                    0.0
                }
            }
            Act::ScaledTanh(a, b) => a * (b * x).tanh(),
            Act::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            Act::Elu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * (x.exp() - 1.0)
                }
            }
        }
    }
}

/// Parses the activation names, consuming `alphas` / `betas` in order for the functions that take them
/// (defaults from the ONNX op definitions when the lists run out).
fn parse_activations(names: &[String], alphas: &[f32], betas: &[f32]) -> Result<Vec<Act>, OpError> {
    let (mut ai, mut bi) = (alphas.iter(), betas.iter());
    let mut alpha = |d: f32| ai.next().copied().unwrap_or(d);
    let mut beta = |d: f32| bi.next().copied().unwrap_or(d);
    names
        .iter()
        .map(|n| {
            Ok(match n.to_ascii_lowercase().as_str() {
                "sigmoid" => Act::Sigmoid,
                "tanh" => Act::Tanh,
                "relu" => Act::Relu,
                "softsign" => Act::Softsign,
                "softplus" => Act::Softplus,
                "affine" => Act::Affine(alpha(1.0), beta(0.0)),
                "leakyrelu" => Act::LeakyRelu(alpha(0.01)),
                "thresholdedrelu" => Act::ThresholdedRelu(alpha(1.0)),
                "scaledtanh" => Act::ScaledTanh(alpha(1.0), beta(1.0)),
                "hardsigmoid" => Act::HardSigmoid(alpha(0.2), beta(0.5)),
                "elu" => Act::Elu(alpha(1.0)),
                _ => bail!("unknown activation function {n:?}"),
            })
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Lstm { input_forget: bool },
    Gru { linear_before_reset: bool },
}

impl Kind {
    fn gates(self) -> usize {
        match self {
            Kind::Lstm { .. } => 4,
            Kind::Gru { .. } => 3,
        }
    }
    fn n_acts(self) -> usize {
        match self {
            Kind::Lstm { .. } => 3,
            Kind::Gru { .. } => 2,
        }
    }
}

/// The op's configuration with sizes taken from the inputs.
struct Spec {
    kind: Kind,
    /// Directions in output order: `false` forward, `true` reverse.
    dirs: Vec<bool>,
    hidden: usize,
    /// `n_acts` functions per direction.
    acts: Vec<Act>,
    clip: Option<f32>,
    batch_major: bool,
    seq: usize,
    batch: usize,
    input: usize,
}

impl Spec {
    fn new(
        kind: Kind,
        direction: &Option<String>,
        hidden_size: Option<i64>,
        activations: &Option<Vec<String>>,
        alphas: &Option<Vec<f32>>,
        betas: &Option<Vec<f32>>,
        clip: Option<f32>,
        layout: Option<i64>,
        inputs: &[Option<&Tensor>],
    ) -> Result<Spec, OpError> {
        let dirs = match direction.as_deref().unwrap_or("forward") {
            "forward" => vec![false],
            "reverse" => vec![true],
            "bidirectional" => vec![false, true],
            d => bail!("unknown direction {d:?}"),
        };
        let nd = dirs.len();
        let batch_major = match layout.unwrap_or(0) {
            0 => false,
            1 => true,
            l => bail!("layout {l} must be 0 or 1"),
        };
        let x = req(inputs, 0, "X")?;
        let w = req(inputs, 1, "W")?;
        let r = req(inputs, 2, "R")?;
        if x.rank() != 3 || w.rank() != 3 || r.rank() != 3 {
            bail!(
                "X, W and R must be 3-d, got shapes {:?}, {:?}, {:?}",
                x.shape(),
                w.shape(),
                r.shape()
            );
        }
        let (seq, batch) = if batch_major {
            (x.shape()[1], x.shape()[0])
        } else {
            (x.shape()[0], x.shape()[1])
        };
        let input = x.shape()[2];
        let hidden = match hidden_size {
            Some(h) if h >= 1 => h as usize,
            Some(h) => bail!("hidden_size {h} must be positive"),
            None => r.shape()[2],
        };
        let g = kind.gates();
        if w.shape() != [nd, g * hidden, input] {
            bail!(
                "W has shape {:?}, expected [{nd}, {}, {input}]",
                w.shape(),
                g * hidden
            );
        }
        if r.shape() != [nd, g * hidden, hidden] {
            bail!(
                "R has shape {:?}, expected [{nd}, {}, {hidden}]",
                r.shape(),
                g * hidden
            );
        }
        let names: Vec<String> = match activations {
            Some(a) if !a.is_empty() => {
                if a.len() == kind.n_acts() * nd {
                    a.clone()
                } else if a.len() == kind.n_acts() && nd == 2 {
                    [a.clone(), a.clone()].concat()
                } else {
                    bail!(
                        "activations {a:?} must list {} functions",
                        kind.n_acts() * nd
                    );
                }
            }
            _ => {
                let one: &[&str] = if kind.n_acts() == 3 {
                    &["Sigmoid", "Tanh", "Tanh"]
                } else {
                    &["Sigmoid", "Tanh"]
                };
                (0..nd)
                    .flat_map(|_| one.iter().map(|s| s.to_string()))
                    .collect()
            }
        };
        let acts = parse_activations(
            &names,
            alphas.as_deref().unwrap_or(&[]),
            betas.as_deref().unwrap_or(&[]),
        )?;
        let clip = match clip {
            Some(c) if c > 0.0 => Some(c),
            Some(c) => bail!("clip {c} must be positive"),
            None => None,
        };
        Ok(Spec {
            kind,
            dirs,
            hidden,
            acts,
            clip,
            batch_major,
            seq,
            batch,
            input,
        })
    }
}

/// Reads an optional per-direction state `[D, B, H]` (or `[B, D, H]` with layout 1) as `[D][B * H]`.
fn read_state(t: Option<&Tensor>, spec: &Spec, what: &str) -> Result<Vec<Vec<f32>>, OpError> {
    let (nd, b, h) = (spec.dirs.len(), spec.batch, spec.hidden);
    let Some(t) = t else {
        return Ok(vec![vec![0.0; b * h]; nd]);
    };
    let want: [usize; 3] = if spec.batch_major {
        [b, nd, h]
    } else {
        [nd, b, h]
    };
    if t.shape() != want {
        bail!("{what} has shape {:?}, expected {want:?}", t.shape());
    }
    let d = f32_data(t)?;
    Ok((0..nd)
        .map(|di| {
            (0..b)
                .flat_map(|bi| {
                    let off = if spec.batch_major {
                        (bi * nd + di) * h
                    } else {
                        (di * b + bi) * h
                    };
                    d[off..off + h].to_vec()
                })
                .collect()
        })
        .collect())
}

fn run(spec: &Spec, cx: &OpCtx, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
    let (nd, s, b, i, h) = (
        spec.dirs.len(),
        spec.seq,
        spec.batch,
        spec.input,
        spec.hidden,
    );
    let g = spec.kind.gates();
    let x = f32_data(req(inputs, 0, "X")?)?;
    // X as [S * B, I] (time-major rows)
    let xt: Vec<f32> = if spec.batch_major {
        let mut v = vec![0f32; s * b * i];
        for bi in 0..b {
            for t in 0..s {
                v[(t * b + bi) * i..(t * b + bi + 1) * i]
                    .copy_from_slice(&x[(bi * s + t) * i..(bi * s + t + 1) * i]);
            }
        }
        v
    } else {
        x.into_owned()
    };
    let w = f32_data(req(inputs, 1, "W")?)?;
    let r = f32_data(req(inputs, 2, "R")?)?;
    let bias = match opt(inputs, 3) {
        Some(t) => {
            if t.shape() != [nd, 2 * g * h] {
                bail!(
                    "B has shape {:?}, expected [{nd}, {}]",
                    t.shape(),
                    2 * g * h
                );
            }
            Some(f32_data(t)?)
        }
        None => None,
    };
    let seq_lens: Vec<usize> = match opt(inputs, 4) {
        Some(t) => {
            let v = t.to_i64_vec().unwrap_or_default();
            if v.len() != b || v.iter().any(|&l| l < 0 || l as usize > s) {
                bail!("sequence_lens {v:?} must have {b} entries in [0, {s}]");
            }
            v.into_iter().map(|l| l as usize).collect()
        }
        None => vec![s; b],
    };
    let h0 = read_state(opt(inputs, 5), spec, "initial_h")?;
    let is_lstm = matches!(spec.kind, Kind::Lstm { .. });
    let c0 = if is_lstm {
        read_state(opt(inputs, 6), spec, "initial_c")?
    } else {
        vec![]
    };
    let peep = match (is_lstm, opt(inputs, 7)) {
        (true, Some(t)) => {
            if t.shape() != [nd, 3 * h] {
                bail!("P has shape {:?}, expected [{nd}, {}]", t.shape(), 3 * h);
            }
            Some(f32_data(t)?)
        }
        _ => None,
    };
    let xv = ArrayView2::from_shape((s * b, i), &xt[..]).map_err(|e| OpError(e.to_string()))?;
    let mut y = vec![0f32; s * nd * b * h]; // [S, D, B, H]
    let mut yh = vec![0f32; nd * b * h];
    let mut yc = vec![0f32; nd * b * h];
    let clip = |v: f32| match spec.clip {
        Some(c) => v.clamp(-c, c),
        None => v,
    };
    for (di, &reverse) in spec.dirs.iter().enumerate() {
        let wd = ArrayView2::from_shape((g * h, i), &w[di * g * h * i..(di + 1) * g * h * i])
            .expect("shape checked");
        let rd = ArrayView2::from_shape((g * h, h), &r[di * g * h * h..(di + 1) * g * h * h])
            .expect("shape checked");
        let (wb, rb): (Vec<f32>, Vec<f32>) = match &bias {
            Some(bv) => {
                let base = di * 2 * g * h;
                (
                    bv[base..base + g * h].to_vec(),
                    bv[base + g * h..base + 2 * g * h].to_vec(),
                )
            }
            None => (vec![0.0; g * h], vec![0.0; g * h]),
        };
        let acts = &spec.acts[di * spec.kind.n_acts()..(di + 1) * spec.kind.n_acts()];
        // XW [S * B, G * H] = X W^T + Wb (+ Rb for the gates where it simply adds)
        let mut xw = Array2::<f32>::zeros((s * b, g * h));
        super::nn::par_gemm(
            1.0,
            xv,
            wd.t(),
            0.0,
            xw.view_mut(),
            super::nn::split_depth(cx.threads),
        );
        let mut add_bias = wb.clone();
        match spec.kind {
            Kind::Lstm { .. } => add_bias.iter_mut().zip(&rb).for_each(|(a, b)| *a += b),
            Kind::Gru { .. } => add_bias[..2 * h]
                .iter_mut()
                .zip(&rb[..2 * h])
                .for_each(|(a, b)| *a += b),
        }
        for mut row in xw.rows_mut() {
            row.iter_mut().zip(&add_bias).for_each(|(v, b)| *v += b);
        }
        let mut hs = h0[di].clone();
        let mut cs = if is_lstm { c0[di].clone() } else { vec![] };
        let mut hr = Array2::<f32>::zeros((b, g * h));
        let mut rh = Array2::<f32>::zeros((b, h));
        let pv = peep.as_ref().map(|p| &p[di * 3 * h..(di + 1) * 3 * h]);
        for step in 0..s {
            let t = if reverse { s - 1 - step } else { step };
            let hv = ArrayView2::from_shape((b, h), &hs[..]).expect("state size");
            general_mat_mul(1.0, &hv, &rd.t(), 0.0, &mut hr);
            let mut reset_h = vec![0f32; b * h];
            let mut zr = vec![0f32; b * 2 * h];
            for bi in 0..b {
                if t >= seq_lens[bi] {
                    continue;
                }
                let xg = xw.slice(s![t * b + bi, ..]);
                let hg = hr.slice(s![bi, ..]);
                let hp = hs[bi * h..(bi + 1) * h].to_vec();
                match spec.kind {
                    Kind::Lstm { input_forget } => {
                        let cp = cs[bi * h..(bi + 1) * h].to_vec();
                        for k in 0..h {
                            let pre = |gate: usize| xg[gate * h + k] + hg[gate * h + k];
                            let mut pi = pre(0);
                            let mut pf = pre(2);
                            if let Some(p) = pv {
                                pi += p[k] * cp[k];
                                pf += p[2 * h + k] * cp[k];
                            }
                            let ig = acts[0].apply(clip(pi));
                            let fg = if input_forget {
                                1.0 - ig
                            } else {
                                acts[0].apply(clip(pf))
                            };
                            let cc = acts[1].apply(clip(pre(3)));
                            let cn = fg * cp[k] + ig * cc;
                            let mut po = pre(1);
                            if let Some(p) = pv {
                                po += p[h + k] * cn;
                            }
                            let og = acts[0].apply(clip(po));
                            let hn = og * acts[2].apply(cn);
                            cs[bi * h + k] = cn;
                            hs[bi * h + k] = hn;
                        }
                    }
                    Kind::Gru {
                        linear_before_reset,
                    } => {
                        for k in 0..h {
                            let z = acts[0].apply(clip(xg[k] + hg[k]));
                            let rr = acts[0].apply(clip(xg[h + k] + hg[h + k]));
                            zr[bi * 2 * h + k] = z;
                            zr[bi * 2 * h + h + k] = rr;
                            reset_h[bi * h + k] = rr * hp[k];
                        }
                        if linear_before_reset {
                            for k in 0..h {
                                let (z, rr) = (zr[bi * 2 * h + k], zr[bi * 2 * h + h + k]);
                                let ht = acts[1].apply(clip(
                                    xg[2 * h + k] + rr * (hg[2 * h + k] + rb[2 * h + k]),
                                ));
                                hs[bi * h + k] = (1.0 - z) * ht + z * hp[k];
                            }
                        }
                    }
                }
            }
            if let Kind::Gru {
                linear_before_reset: false,
            } = spec.kind
            {
                // h~ = g(xw_h + (r ⊙ H) Rh^T + Rbh)
                let rv = ArrayView2::from_shape((b, h), &reset_h[..]).expect("size");
                general_mat_mul(1.0, &rv, &rd.slice(s![2 * h..3 * h, ..]).t(), 0.0, &mut rh);
                for bi in 0..b {
                    if t >= seq_lens[bi] {
                        continue;
                    }
                    for k in 0..h {
                        let z = zr[bi * 2 * h + k];
                        let ht = acts[1].apply(clip(
                            xw[[t * b + bi, 2 * h + k]] + rh[[bi, k]] + rb[2 * h + k],
                        ));
                        hs[bi * h + k] = (1.0 - z) * ht + z * hs[bi * h + k];
                    }
                }
            }
            for bi in 0..b {
                if t < seq_lens[bi] {
                    let off = ((t * nd + di) * b + bi) * h;
                    y[off..off + h].copy_from_slice(&hs[bi * h..(bi + 1) * h]);
                }
            }
        }
        yh[di * b * h..(di + 1) * b * h].copy_from_slice(&hs);
        if is_lstm {
            yc[di * b * h..(di + 1) * b * h].copy_from_slice(&cs);
        }
    }
    // outputs in the requested layout
    let (y, y_shape) = if spec.batch_major {
        let mut v = vec![0f32; y.len()];
        for t in 0..s {
            for di in 0..nd {
                for bi in 0..b {
                    let src = ((t * nd + di) * b + bi) * h;
                    let dst = ((bi * s + t) * nd + di) * h;
                    v[dst..dst + h].copy_from_slice(&y[src..src + h]);
                }
            }
        }
        (v, vec![b, s, nd, h])
    } else {
        (y, vec![s, nd, b, h])
    };
    let state = |v: Vec<f32>| -> Result<Tensor, OpError> {
        if spec.batch_major {
            let mut o = vec![0f32; v.len()];
            for di in 0..nd {
                for bi in 0..b {
                    o[(bi * nd + di) * h..(bi * nd + di + 1) * h]
                        .copy_from_slice(&v[(di * b + bi) * h..(di * b + bi + 1) * h]);
                }
            }
            f32_tensor(&[b, nd, h], o)
        } else {
            f32_tensor(&[nd, b, h], v)
        }
    };
    let mut outs = vec![f32_tensor(&y_shape, y)?];
    if cx.n_outputs > 1 {
        outs.push(state(yh)?);
    }
    if is_lstm && cx.n_outputs > 2 {
        outs.push(state(yc)?);
    }
    Ok(outs)
}

#[cfg(test)]
mod tests {
    use super::super::nn::testutil::*;
    use qtool_ir::ops::{Gru, Lstm};
    use qtool_tensor::Tensor;

    fn sig(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// Straight from the ONNX LSTM equations, one direction, time-major, f64.
    #[allow(clippy::too_many_arguments)]
    fn lstm_ref(
        x: &[f64],
        s: usize,
        b: usize,
        i: usize,
        h: usize,
        w: &[f64],
        r: &[f64],
        bias: &[f64],
        p: Option<&[f64]>,
        h0: &[f64],
        c0: &[f64],
        lens: &[usize],
        reverse: bool,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut y = vec![0.0; s * b * h];
        let (mut hs, mut cs) = (h0.to_vec(), c0.to_vec());
        for step in 0..s {
            let t = if reverse { s - 1 - step } else { step };
            for bi in 0..b {
                if t >= lens[bi] {
                    continue;
                }
                let gate = |gi: usize, k: usize| {
                    let row = gi * h + k;
                    let mut v = bias[row] + bias[4 * h + row];
                    for q in 0..i {
                        v += x[(t * b + bi) * i + q] * w[row * i + q];
                    }
                    for q in 0..h {
                        v += hs[bi * h + q] * r[row * h + q];
                    }
                    v
                };
                let mut hn = vec![0.0; h];
                let mut cn = vec![0.0; h];
                for k in 0..h {
                    let cp = cs[bi * h + k];
                    let pk = |j: usize| p.map_or(0.0, |p| p[j * h + k]);
                    let it = sig(gate(0, k) + pk(0) * cp);
                    let ft = sig(gate(2, k) + pk(2) * cp);
                    let ct = gate(3, k).tanh();
                    cn[k] = ft * cp + it * ct;
                    let ot = sig(gate(1, k) + pk(1) * cn[k]);
                    hn[k] = ot * cn[k].tanh();
                }
                hs[bi * h..(bi + 1) * h].copy_from_slice(&hn);
                cs[bi * h..(bi + 1) * h].copy_from_slice(&cn);
                y[(t * b + bi) * h..(t * b + bi + 1) * h].copy_from_slice(&hn);
            }
        }
        (y, hs, cs)
    }

    fn f64s(t: &Tensor) -> Vec<f64> {
        t.to_f64_vec().unwrap()
    }

    #[test]
    fn lstm_matches_spec_equations_all_directions_with_options() {
        let mut rng = Rng::new(21);
        let (s, b, i, h) = (4, 3, 2, 3);
        for dir in ["forward", "reverse", "bidirectional"] {
            let nd = if dir == "bidirectional" { 2 } else { 1 };
            let x = rng.tensor(&[s, b, i]);
            let w = rng.tensor(&[nd, 4 * h, i]);
            let r = rng.tensor(&[nd, 4 * h, h]);
            let bias = rng.tensor(&[nd, 8 * h]);
            let p = rng.tensor(&[nd, 3 * h]);
            let h0 = rng.tensor(&[nd, b, h]);
            let c0 = rng.tensor(&[nd, b, h]);
            let lens = Tensor::from_vec(&[b], vec![4i32, 2, 3]).unwrap();
            let op = Lstm {
                direction: Some(dir.into()),
                hidden_size: Some(h as i64),
                ..Default::default()
            };
            let out = run(
                op,
                14,
                3,
                &[
                    Some(&x),
                    Some(&w),
                    Some(&r),
                    Some(&bias),
                    Some(&lens),
                    Some(&h0),
                    Some(&c0),
                    Some(&p),
                ],
            );
            assert_eq!(out[0].shape(), &[s, nd, b, h]);
            let (xv, wv, rv, bv, pv, h0v, c0v) = (
                f64s(&x),
                f64s(&w),
                f64s(&r),
                f64s(&bias),
                f64s(&p),
                f64s(&h0),
                f64s(&c0),
            );
            let (mut want_y, mut want_h, mut want_c) = (vec![0.0; s * nd * b * h], vec![], vec![]);
            for d in 0..nd {
                let reverse = dir == "reverse" || d == 1;
                let sl = |v: &[f64], n: usize| v[d * n..(d + 1) * n].to_vec();
                let (y, hh, cc) = lstm_ref(
                    &xv,
                    s,
                    b,
                    i,
                    h,
                    &sl(&wv, 4 * h * i),
                    &sl(&rv, 4 * h * h),
                    &sl(&bv, 8 * h),
                    Some(&sl(&pv, 3 * h)),
                    &sl(&h0v, b * h),
                    &sl(&c0v, b * h),
                    &[4, 2, 3],
                    reverse,
                );
                for t in 0..s {
                    for q in 0..b * h {
                        want_y[(t * nd + d) * b * h + q] = y[t * b * h + q];
                    }
                }
                want_h.extend(hh);
                want_c.extend(cc);
            }
            let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
            assert_close(&out[0], &[s, nd, b, h], &f(want_y), 1e-5);
            assert_close(&out[1], &[nd, b, h], &f(want_h), 1e-5);
            assert_close(&out[2], &[nd, b, h], &f(want_c), 1e-5);
        }
    }

    #[test]
    fn lstm_defaults_and_layout_1() {
        // ONNX test lstm_defaults: X ones-ish [1, 3, 2]... check against the reference with zero bias
        let mut rng = Rng::new(22);
        let (s, b, i, h) = (3, 2, 2, 4);
        let x = rng.tensor(&[s, b, i]);
        let w = rng.tensor(&[1, 4 * h, i]);
        let r = rng.tensor(&[1, 4 * h, h]);
        let out = run(
            Lstm {
                hidden_size: Some(h as i64),
                ..Default::default()
            },
            14,
            2,
            &[Some(&x), Some(&w), Some(&r)],
        );
        assert_eq!(out.len(), 2);
        let (y, hh, _) = lstm_ref(
            &f64s(&x),
            s,
            b,
            i,
            h,
            &f64s(&w),
            &f64s(&r),
            &vec![0.0; 8 * h],
            None,
            &vec![0.0; b * h],
            &vec![0.0; b * h],
            &[s; 2],
            false,
        );
        let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        assert_close(&out[0], &[s, 1, b, h], &f(y.clone()), 1e-5);
        assert_close(&out[1], &[1, b, h], &f(hh.clone()), 1e-5);
        // layout 1: X [B, S, I], Y [B, S, D, H], Y_h [B, D, H]
        let xv = f64s(&x);
        let mut xb = vec![0f32; xv.len()];
        for t in 0..s {
            for bi in 0..b {
                for q in 0..i {
                    xb[(bi * s + t) * i + q] = xv[(t * b + bi) * i + q] as f32;
                }
            }
        }
        let xbt = t(&[b, s, i], &xb);
        let out = run(
            Lstm {
                layout: Some(1),
                ..Default::default()
            },
            14,
            2,
            &[Some(&xbt), Some(&w), Some(&r)],
        );
        let mut yb = vec![0f32; y.len()];
        for t in 0..s {
            for bi in 0..b {
                for k in 0..h {
                    yb[(bi * s + t) * h + k] = y[(t * b + bi) * h + k] as f32;
                }
            }
        }
        assert_close(&out[0], &[b, s, 1, h], &yb, 1e-5);
        assert_close(&out[1], &[b, 1, h], &f(hh), 1e-5);
    }

    #[test]
    fn lstm_activations_clip_and_input_forget() {
        // hidden 1, one step, X = 1, W = [wi, wo, wf, wc], R = 0: closed form
        let x = t(&[1, 1, 1], &[1.0]);
        let w = t(&[1, 4, 1], &[0.5, 2.0, -1.0, 3.0]);
        let r = t(&[1, 4, 1], &[0.0; 4]);
        let c0 = t(&[1, 1, 1], &[0.25]);
        let op = Lstm {
            activations: Some(vec![
                "HardSigmoid".into(),
                "LeakyRelu".into(),
                "Affine".into(),
            ]),
            activation_alpha: Some(vec![0.3, 0.1, 2.0]),
            activation_beta: Some(vec![0.4, 0.5]),
            clip: Some(1.5),
            input_forget: Some(1),
            ..Default::default()
        };
        let out = run(
            op,
            14,
            3,
            &[Some(&x), Some(&w), Some(&r), None, None, None, Some(&c0)],
        );
        let hs = |v: f32| (0.3 * v + 0.4f32).clamp(0.0, 1.0);
        let it = hs(0.5);
        let ft = 1.0 - it;
        let ct = 1.5; // leaky relu of clip(3.0)
        let c = ft * 0.25 + it * ct;
        let o = hs(1.5); // clip(2.0)
        let hv = o * (2.0 * c + 0.5);
        assert_close(&out[0], &[1, 1, 1, 1], &[hv], 1e-6);
        assert_close(&out[2], &[1, 1, 1], &[c], 1e-6);
    }

    /// ONNX GRU equations, one direction, f64.
    fn gru_ref(
        x: &[f64],
        s: usize,
        b: usize,
        i: usize,
        h: usize,
        w: &[f64],
        r: &[f64],
        bias: &[f64],
        h0: &[f64],
        lbr: bool,
        reverse: bool,
    ) -> (Vec<f64>, Vec<f64>) {
        let mut y = vec![0.0; s * b * h];
        let mut hs = h0.to_vec();
        for step in 0..s {
            let t = if reverse { s - 1 - step } else { step };
            for bi in 0..b {
                let xw = |gi: usize, k: usize| {
                    let row = gi * h + k;
                    bias[row]
                        + (0..i)
                            .map(|q| x[(t * b + bi) * i + q] * w[row * i + q])
                            .sum::<f64>()
                };
                let hr = |gi: usize, k: usize, hv: &[f64]| {
                    let row = gi * h + k;
                    bias[3 * h + row] + (0..h).map(|q| hv[q] * r[row * h + q]).sum::<f64>()
                };
                let hp = hs[bi * h..(bi + 1) * h].to_vec();
                let z: Vec<f64> = (0..h).map(|k| sig(xw(0, k) + hr(0, k, &hp))).collect();
                let rr: Vec<f64> = (0..h).map(|k| sig(xw(1, k) + hr(1, k, &hp))).collect();
                let rh: Vec<f64> = (0..h).map(|k| rr[k] * hp[k]).collect();
                for k in 0..h {
                    let ht = if lbr {
                        (xw(2, k) + rr[k] * hr(2, k, &hp)).tanh()
                    } else {
                        (xw(2, k) + hr(2, k, &rh)).tanh()
                    };
                    hs[bi * h + k] = (1.0 - z[k]) * ht + z[k] * hp[k];
                }
                y[(t * b + bi) * h..(t * b + bi + 1) * h]
                    .copy_from_slice(&hs[bi * h..(bi + 1) * h]);
            }
        }
        (y, hs)
    }

    #[test]
    fn gru_matches_spec_equations() {
        let mut rng = Rng::new(23);
        let (s, b, i, h) = (3, 2, 3, 4);
        for lbr in [false, true] {
            for dir in ["forward", "reverse", "bidirectional"] {
                let nd = if dir == "bidirectional" { 2 } else { 1 };
                let x = rng.tensor(&[s, b, i]);
                let w = rng.tensor(&[nd, 3 * h, i]);
                let r = rng.tensor(&[nd, 3 * h, h]);
                let bias = rng.tensor(&[nd, 6 * h]);
                let h0 = rng.tensor(&[nd, b, h]);
                let op = Gru {
                    direction: Some(dir.into()),
                    linear_before_reset: Some(lbr as i64),
                    ..Default::default()
                };
                let out = run(
                    op,
                    14,
                    2,
                    &[Some(&x), Some(&w), Some(&r), Some(&bias), None, Some(&h0)],
                );
                let (xv, wv, rv, bv, h0v) = (f64s(&x), f64s(&w), f64s(&r), f64s(&bias), f64s(&h0));
                let (mut want_y, mut want_h) = (vec![0f32; s * nd * b * h], vec![]);
                for d in 0..nd {
                    let reverse = dir == "reverse" || d == 1;
                    let sl = |v: &[f64], n: usize| v[d * n..(d + 1) * n].to_vec();
                    let (y, hh) = gru_ref(
                        &xv,
                        s,
                        b,
                        i,
                        h,
                        &sl(&wv, 3 * h * i),
                        &sl(&rv, 3 * h * h),
                        &sl(&bv, 6 * h),
                        &sl(&h0v, b * h),
                        lbr,
                        reverse,
                    );
                    for t in 0..s {
                        for q in 0..b * h {
                            want_y[(t * nd + d) * b * h + q] = y[t * b * h + q] as f32;
                        }
                    }
                    want_h.extend(hh.into_iter().map(|v| v as f32));
                }
                assert_close(&out[0], &[s, nd, b, h], &want_y, 1e-5);
                assert_close(&out[1], &[nd, b, h], &want_h, 1e-5);
            }
        }
        let x = rng.tensor(&[s, b, i]);
        let w = rng.tensor(&[1, 3 * h, i]);
        let r = rng.tensor(&[1, 3 * h, h + 1]);
        assert!(run_err(Gru::default(), 14, &[Some(&x), Some(&w), Some(&r)]).contains("shape"));
    }
}
