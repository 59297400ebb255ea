//! Unit tests of the quantization ops: hand-checked values, rounding ties, saturation, and a property
//! test of QLinearConv / QLinearMatMul against the kernels' reference oracles plus
//! `quant::requantize`.

use super::*;
use crate::ops::OpCtx;
use qtool_ir::ops;
use qtool_kernels::ConvParams;
use qtool_kernels::int8::reference::{qconv_reference, qgemm_reference};
use qtool_tensor::quant;

fn cx(opset: i64, n_outputs: usize) -> OpCtx<'static> {
    OpCtx {
        opset,
        n_outputs,
        node: "test",
        threads: 1,
    }
}

fn run(op: impl Into<Op>, opset: i64, inputs: &[Option<&Tensor>]) -> Vec<Tensor> {
    let op = op.into();
    eval(&op, &cx(opset, 3), inputs)
        .expect("quant op")
        .unwrap_or_else(|e| panic!("{e}"))
}

fn run_err(op: impl Into<Op>, opset: i64, inputs: &[Option<&Tensor>]) -> String {
    let op = op.into();
    eval(&op, &cx(opset, 1), inputs)
        .expect("quant op")
        .expect_err("should fail")
        .to_string()
}

fn t<T: Element>(shape: &[usize], v: Vec<T>) -> Tensor {
    Tensor::from_vec(shape, v).unwrap()
}

/// A deterministic xorshift PRNG.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i64
    }
    fn f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
}

#[test]
fn quantize_linear_rounds_ties_to_even_and_saturates() {
    // x / 1 with ties: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0, -1.5 -> -2; saturation at both ends.
    let x = t(
        &[8],
        vec![0.5f32, 1.5, 2.5, -0.5, -1.5, 300.0, -300.0, f32::NAN],
    );
    let y = run(
        ops::QuantizeLinear::default(),
        13,
        &[
            Some(&x),
            Some(&Tensor::scalar(1f32)),
            Some(&Tensor::scalar(0i8)),
        ],
    );
    assert_eq!(
        y[0].to_vec::<i8>().unwrap(),
        vec![0, 2, 2, 0, -2, 127, -128, 0]
    );
    // uint8 with zero point 10: 2.5 + 10 -> 12, -20 -> 0 (saturated), NaN -> zero point.
    let x = t(&[3], vec![2.5f32, -20.0, f32::NAN]);
    let y = run(
        ops::QuantizeLinear::default(),
        13,
        &[
            Some(&x),
            Some(&Tensor::scalar(1f32)),
            Some(&Tensor::scalar(10u8)),
        ],
    );
    assert_eq!(y[0].to_vec::<u8>().unwrap(), vec![12, 0, 10]);
    // No zero point: uint8; output_dtype int16 without zero point.
    let y = run(
        ops::QuantizeLinear::default(),
        13,
        &[
            Some(&t(&[2], vec![3.0f32, -1.0])),
            Some(&Tensor::scalar(2f32)),
        ],
    );
    assert_eq!(y[0].to_vec::<u8>().unwrap(), vec![2, 0]); // 1.5 -> 2, -0.5 -> 0
    let op = ops::QuantizeLinear {
        output_dtype: Some(DType::I16.code() as i64),
        ..Default::default()
    };
    let y = run(
        op,
        21,
        &[
            Some(&t(&[2], vec![1e6f32, -7.5])),
            Some(&Tensor::scalar(1f32)),
        ],
    );
    assert_eq!(y[0].to_vec::<i16>().unwrap(), vec![32767, -8]);
}

#[test]
fn quantize_linear_per_axis_negative_axis_and_blocked() {
    let x = t(&[2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let s = t(&[3], vec![1.0f32, 2.0, 4.0]);
    let z = t(&[3], vec![0u8, 10, 20]);
    let op = ops::QuantizeLinear {
        axis: Some(-1),
        ..Default::default()
    };
    let y = run(op, 13, &[Some(&x), Some(&s), Some(&z)]);
    // col 0: x/1; col 1: x/2 + 10 (1.0 -> 11, 2.5 -> 12); col 2: x/4 + 20 (0.75 -> 21, 1.5 -> 22)
    assert_eq!(y[0].to_vec::<u8>().unwrap(), vec![1, 11, 21, 4, 12, 22]);
    // Blocked along axis 1 with block 2: scale [2, 2].
    let x = t(&[2, 4], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let s = t(&[2, 2], vec![1.0f32, 2.0, 4.0, 8.0]);
    let op = ops::QuantizeLinear {
        axis: Some(1),
        block_size: Some(2),
        ..Default::default()
    };
    let y = run(
        op,
        21,
        &[Some(&x), Some(&s), Some(&t(&[2, 2], vec![0i8; 4]))],
    );
    // 1/1, 2/1, 3/2=1.5->2, 4/2=2, 5/4=1.25->1, 6/4=1.5->2, 7/8->1, 8/8=1
    assert_eq!(y[0].to_vec::<i8>().unwrap(), vec![1, 2, 2, 2, 1, 2, 1, 1]);
    // Per-axis needs opset 13.
    let e = run_err(
        ops::QuantizeLinear::default(),
        10,
        &[
            Some(&t(&[2, 3], vec![0f32; 6])),
            Some(&t(&[3], vec![1f32; 3])),
        ],
    );
    assert!(e.contains("per-tensor"), "{e}");
}

#[test]
fn dequantize_linear_types_axis_and_int32() {
    let x = t(&[4], vec![0u8, 3, 128, 255]);
    let y = run(
        ops::DequantizeLinear::default(),
        13,
        &[
            Some(&x),
            Some(&Tensor::scalar(2f32)),
            Some(&Tensor::scalar(128u8)),
        ],
    );
    assert_eq!(
        y[0].to_vec::<f32>().unwrap(),
        vec![-256.0, -250.0, 0.0, 254.0]
    );
    let x = t(&[2], vec![-32768i16, 32767]);
    let y = run(
        ops::DequantizeLinear::default(),
        21,
        &[
            Some(&x),
            Some(&Tensor::scalar(0.5f32)),
            Some(&Tensor::scalar(-1i16)),
        ],
    );
    assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![-16383.5, 16384.0]);
    let x = t(&[2], vec![1_000_000i32, -3]);
    let y = run(
        ops::DequantizeLinear::default(),
        13,
        &[Some(&x), Some(&Tensor::scalar(0.25f32))],
    );
    assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![250_000.0, -0.75]);
    let x = t(&[2, 2], vec![1i8, 2, 3, 4]);
    let op = ops::DequantizeLinear {
        axis: Some(0),
        ..Default::default()
    };
    let y = run(
        op,
        13,
        &[
            Some(&x),
            Some(&t(&[2], vec![1f32, 10.0])),
            Some(&t(&[2], vec![1i8, -1])),
        ],
    );
    assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![0.0, 1.0, 40.0, 50.0]);
    // f16 scale gives an f16 output.
    let y = run(
        ops::DequantizeLinear::default(),
        21,
        &[
            Some(&t(&[1], vec![3u8])),
            Some(&Tensor::scalar(qtool_tensor::f16::from_f32(0.5))),
        ],
    );
    assert_eq!(y[0].dtype(), DType::F16);
}

#[test]
fn dynamic_quantize_linear_matches_the_onnx_example() {
    let x = t(&[6], vec![0.0f32, 2.0, -3.0, -2.5, 1.34, 0.5]);
    let y = run(ops::DynamicQuantizeLinear::default(), 11, &[Some(&x)]);
    assert_eq!(
        y[0].to_vec::<u8>().unwrap(),
        vec![153, 255, 0, 26, 221, 179]
    );
    assert_eq!(y[1].to_vec::<f32>().unwrap(), vec![5.0 / 255.0]);
    assert_eq!(y[2].to_vec::<u8>().unwrap(), vec![153]);
    // All zeros: scale 0, zero point 0, everything 0.
    let y = run(
        ops::DynamicQuantizeLinear::default(),
        11,
        &[Some(&t(&[3], vec![0f32; 3]))],
    );
    assert_eq!(y[0].to_vec::<u8>().unwrap(), vec![0, 0, 0]);
    assert_eq!(y[2].to_vec::<u8>().unwrap(), vec![0]);
}

#[test]
fn qlinear_matmul_hand_checked_with_ties() {
    // a = [[1, 2]] (zp 0), b = [[1], [2]] (zp 0): acc = 5. Multiplier 0.5 -> 2.5 -> 2 (even);
    // multiplier 1.5 -> 7.5 -> 8 (even); y zp 3 shifts after rounding.
    let a = t(&[1, 2], vec![1u8, 2]);
    let b = t(&[2, 1], vec![1u8, 2]);
    for (ys, want) in [(2.0f32, 2u8 + 3), (1.0 / 1.5, 8 + 3)] {
        let y = run(
            ops::QLinearMatMul::default(),
            10,
            &[
                Some(&a),
                Some(&Tensor::scalar(1f32)),
                Some(&Tensor::scalar(0u8)),
                Some(&b),
                Some(&Tensor::scalar(1f32)),
                Some(&Tensor::scalar(0u8)),
                Some(&Tensor::scalar(ys)),
                Some(&Tensor::scalar(3u8)),
            ],
        );
        let m = (1f32 * 1f32) / ys;
        assert_eq!(
            y[0].to_vec::<u8>().unwrap(),
            vec![quant::requantize::<u8>(5, m, 3)]
        );
        assert_eq!(y[0].to_vec::<u8>().unwrap(), vec![want]);
    }
}

#[test]
fn matmul_integer_zero_points_per_row_and_column() {
    // The ONNX example.
    let a = t(&[4, 3], vec![11u8, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0]);
    let b = t(&[3, 2], vec![1u8, 4, 2, 5, 3, 6]);
    let y = run(
        ops::MatMulInteger::default(),
        10,
        &[
            Some(&a),
            Some(&b),
            Some(&t(&[1], vec![12u8])),
            Some(&t(&[1], vec![0u8])),
        ],
    );
    assert_eq!(
        y[0].to_vec::<i32>().unwrap(),
        vec![-38, -83, -44, -98, -50, -113, -56, -128]
    );
    // Per-row a zero points and per-column b zero points against the definition.
    let za = [1i32, 2, 3, 4];
    let zb = [1i32, 2];
    let y = run(
        ops::MatMulInteger::default(),
        10,
        &[
            Some(&a),
            Some(&b),
            Some(&t(&[4], vec![1u8, 2, 3, 4])),
            Some(&t(&[2], vec![1u8, 2])),
        ],
    );
    let (av, bv) = (a.to_vec::<u8>().unwrap(), b.to_vec::<u8>().unwrap());
    let mut want = vec![];
    for i in 0..4 {
        for j in 0..2 {
            want.push(
                (0..3)
                    .map(|k| (av[i * 3 + k] as i32 - za[i]) * (bv[k * 2 + j] as i32 - zb[j]))
                    .sum::<i32>(),
            );
        }
    }
    assert_eq!(y[0].to_vec::<i32>().unwrap(), want);
    // 1-D A and batched B broadcast.
    let a1 = t(&[3], vec![1i8, -2, 3]);
    let b3 = t(&[2, 3, 1], vec![1i8, 1, 1, 2, 2, 2]);
    let y = run(ops::MatMulInteger::default(), 10, &[Some(&a1), Some(&b3)]);
    assert_eq!(y[0].shape(), &[2, 1]);
    assert_eq!(y[0].to_vec::<i32>().unwrap(), vec![2, 4]);
}

#[test]
fn conv_integer_onnx_example_with_padding() {
    let x = t(&[1, 1, 3, 3], vec![2u8, 3, 4, 5, 6, 7, 8, 9, 10]);
    let w = t(&[1, 1, 2, 2], vec![1u8, 1, 1, 1]);
    let op = ops::ConvInteger {
        pads: Some(vec![1, 1, 1, 1]),
        ..Default::default()
    };
    let y = run(op, 10, &[Some(&x), Some(&w), Some(&Tensor::scalar(1u8))]);
    assert_eq!(y[0].shape(), &[1, 1, 4, 4]);
    assert_eq!(
        y[0].to_vec::<i32>().unwrap(),
        vec![1, 3, 5, 3, 5, 12, 16, 9, 11, 24, 28, 15, 7, 15, 17, 9]
    );
}

fn conv_ref(x: &Tensor, zx: i32, w: &Tensor, zw: &[i32], p: &ConvParams, n: usize) -> Vec<i32> {
    let mut out = vec![0; n];
    match (x.dtype(), w.dtype()) {
        (DType::U8, DType::I8) => qconv_reference(
            &x.to_vec::<u8>().unwrap(),
            x.shape(),
            zx,
            &w.to_vec::<i8>().unwrap(),
            w.shape(),
            zw,
            p,
            &mut out,
        ),
        (DType::U8, DType::U8) => qconv_reference(
            &x.to_vec::<u8>().unwrap(),
            x.shape(),
            zx,
            &w.to_vec::<u8>().unwrap(),
            w.shape(),
            zw,
            p,
            &mut out,
        ),
        (DType::I8, DType::I8) => qconv_reference(
            &x.to_vec::<i8>().unwrap(),
            x.shape(),
            zx,
            &w.to_vec::<i8>().unwrap(),
            w.shape(),
            zw,
            p,
            &mut out,
        ),
        _ => qconv_reference(
            &x.to_vec::<i8>().unwrap(),
            x.shape(),
            zx,
            &w.to_vec::<u8>().unwrap(),
            w.shape(),
            zw,
            p,
            &mut out,
        ),
    }
    .unwrap();
    out
}

fn rand_q(rng: &mut Rng, dt: DType, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    if dt == DType::U8 {
        t(shape, (0..n).map(|_| rng.int(0, 255) as u8).collect())
    } else {
        t(shape, (0..n).map(|_| rng.int(-128, 127) as i8).collect())
    }
}

fn zp_t(dt: DType, v: &[i32], scalar: bool) -> Tensor {
    let shape: Vec<usize> = if scalar { vec![] } else { vec![v.len()] };
    if dt == DType::U8 {
        t(&shape, v.iter().map(|&z| z as u8).collect())
    } else {
        t(&shape, v.iter().map(|&z| z as i8).collect())
    }
}

fn rand_zp(rng: &mut Rng, dt: DType) -> i32 {
    if dt == DType::U8 {
        rng.int(0, 255) as i32
    } else {
        rng.int(-128, 127) as i32
    }
}

/// Property: QLinearConv == requantize(qconv_reference + bias, (x_s * w_s[c]) / y_s, y_zp) on random
/// shapes (groups, depthwise, strides, dilations, pads, per-channel, every type pair), with and
/// without prepared (packed-once) weights.
#[test]
fn qlinear_conv_matches_reference_plus_requantize() {
    let mut rng = Rng(0x5eed_1234_abcd);
    for case in 0..60 {
        let nd = if case % 7 == 6 { 1 } else { 2 };
        let group = [1, 1, 2, 3][case % 4];
        let depthwise = case % 5 == 4;
        let cg = if depthwise { 1 } else { rng.int(1, 4) as usize };
        let c = cg * group;
        let mg = rng.int(1, 3) as usize;
        let m = mg * group;
        let k: Vec<usize> = (0..nd).map(|_| rng.int(1, 3) as usize).collect();
        let strides: Vec<usize> = (0..nd).map(|_| rng.int(1, 2) as usize).collect();
        let dil: Vec<usize> = (0..nd).map(|_| rng.int(1, 2) as usize).collect();
        let pads: Vec<usize> = (0..2 * nd).map(|_| rng.int(0, 2) as usize).collect();
        let sp: Vec<usize> = (0..nd)
            .map(|a| (k[a] - 1) * dil[a] + 1 + rng.int(0, 6) as usize)
            .collect();
        let xshape = [vec![rng.int(1, 2) as usize, c], sp].concat();
        let wshape = [vec![m, cg], k.clone()].concat();
        let (xd, wd) = [
            (DType::U8, DType::I8),
            (DType::U8, DType::U8),
            (DType::I8, DType::I8),
            (DType::I8, DType::U8),
        ][case % 4];
        let per_channel = case % 3 != 0;
        let nch = if per_channel { m } else { 1 };
        let x = rand_q(&mut rng, xd, &xshape);
        let w = rand_q(&mut rng, wd, &wshape);
        let zx = rand_zp(&mut rng, xd);
        let zw: Vec<i32> = (0..nch).map(|_| rand_zp(&mut rng, wd)).collect();
        let xs = rng.f32(0.01, 0.05);
        let ws: Vec<f32> = (0..nch).map(|_| rng.f32(0.001, 0.01)).collect();
        let ys = xs * ws[0] * rng.f32(2.0, 30.0);
        let zy = rand_zp(&mut rng, xd);
        let bias: Vec<i32> = (0..m).map(|_| rng.int(-500, 500) as i32).collect();
        let p = ConvParams {
            strides: strides.clone(),
            dilations: dil.clone(),
            pads: pads.clone(),
            group,
        };
        let out_shape = qtool_kernels::conv_output_shape(&xshape, &wshape, &p).unwrap();
        let n: usize = out_shape.iter().product();
        let acc = conv_ref(&x, zx, &w, &zw, &p, n);
        let osz: usize = out_shape[2..].iter().product();
        let want: Vec<i64> = acc
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                let ch = (i / osz) % m;
                let mult = (xs * ws[if nch == 1 { 0 } else { ch }]) / ys;
                let v = a.wrapping_add(bias[ch]);
                if xd == DType::U8 {
                    quant::requantize::<u8>(v, mult, zy) as i64
                } else {
                    quant::requantize::<i8>(v, mult, zy) as i64
                }
            })
            .collect();
        let op = ops::QLinearConv {
            strides: Some(strides.iter().map(|&v| v as i64).collect()),
            dilations: Some(dil.iter().map(|&v| v as i64).collect()),
            pads: Some(pads.iter().map(|&v| v as i64).collect()),
            group: Some(group as i64),
            ..Default::default()
        };
        let (xs_t, zx_t, ws_t, zw_t, ys_t, zy_t, b_t) = (
            Tensor::scalar(xs),
            zp_t(xd, &[zx], true),
            if per_channel {
                t(&[m], ws.clone())
            } else {
                Tensor::scalar(ws[0])
            },
            zp_t(wd, &zw, !per_channel),
            Tensor::scalar(ys),
            zp_t(xd, &[zy], true),
            t(&[m], bias.clone()),
        );
        let ins = [
            Some(&x),
            Some(&xs_t),
            Some(&zx_t),
            Some(&w),
            Some(&ws_t),
            Some(&zw_t),
            Some(&ys_t),
            Some(&zy_t),
            Some(&b_t),
        ];
        let op: Op = op.into();
        let y = eval(&op, &cx(13, 1), &ins)
            .unwrap()
            .unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert_eq!(y[0].shape(), &out_shape[..], "case {case}");
        assert_eq!(y[0].to_i64_vec().unwrap(), want, "case {case}");
        // Prepared (packed once) gives the same.
        let pins: Vec<PrepInput<'_>> = ins
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if i == 0 {
                    PrepInput::Runtime
                } else {
                    PrepInput::Const(t.unwrap())
                }
            })
            .collect();
        let prep = prepare(&op, &pins).expect("a constant weight is packed");
        let y2 = eval_with(&op, &cx(13, 1), &ins, Some(prep.as_ref()))
            .unwrap()
            .unwrap();
        assert_eq!(y2[0], y[0], "case {case} (prepared)");
    }
}

/// Property: QLinearMatMul == requantize(qgemm_reference, (a_s * b_s[n]) / y_s, y_zp), per-tensor and
/// per-column b parameters, with and without prepared weights.
#[test]
fn qlinear_matmul_matches_reference_plus_requantize() {
    let mut rng = Rng(0xfeed_beef_0042);
    for case in 0..40 {
        let (m, k, n) = (
            rng.int(1, 9) as usize,
            rng.int(1, 70) as usize,
            rng.int(1, 40) as usize,
        );
        let (ad, bd) = [
            (DType::U8, DType::I8),
            (DType::U8, DType::U8),
            (DType::I8, DType::I8),
        ][case % 3];
        let per_col = case % 2 == 0;
        let nz = if per_col { n } else { 1 };
        let a = rand_q(&mut rng, ad, &[m, k]);
        let b = rand_q(&mut rng, bd, &[k, n]);
        let za = rand_zp(&mut rng, ad);
        let zb: Vec<i32> = (0..nz).map(|_| rand_zp(&mut rng, bd)).collect();
        let as_ = rng.f32(0.01, 0.05);
        let bs: Vec<f32> = (0..nz).map(|_| rng.f32(0.001, 0.01)).collect();
        let ys = as_ * bs[0] * rng.f32(2.0, 20.0);
        let zy = rand_zp(&mut rng, ad);
        let mut acc = vec![0i32; m * n];
        match (ad, bd) {
            (DType::U8, DType::I8) => qgemm_reference(
                &a.to_vec::<u8>().unwrap(),
                &[m, k],
                za,
                &b.to_vec::<i8>().unwrap(),
                &[k, n],
                &zb,
                &mut acc,
            ),
            (DType::U8, _) => qgemm_reference(
                &a.to_vec::<u8>().unwrap(),
                &[m, k],
                za,
                &b.to_vec::<u8>().unwrap(),
                &[k, n],
                &zb,
                &mut acc,
            ),
            _ => qgemm_reference(
                &a.to_vec::<i8>().unwrap(),
                &[m, k],
                za,
                &b.to_vec::<i8>().unwrap(),
                &[k, n],
                &zb,
                &mut acc,
            ),
        }
        .unwrap();
        let want: Vec<i64> = acc
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let mult = (as_ * bs[if nz == 1 { 0 } else { i % n }]) / ys;
                if ad == DType::U8 {
                    quant::requantize::<u8>(v, mult, zy) as i64
                } else {
                    quant::requantize::<i8>(v, mult, zy) as i64
                }
            })
            .collect();
        let (as_t, za_t, bs_t, zb_t, ys_t, zy_t) = (
            Tensor::scalar(as_),
            zp_t(ad, &[za], true),
            if per_col {
                t(&[n], bs.clone())
            } else {
                Tensor::scalar(bs[0])
            },
            zp_t(bd, &zb, !per_col),
            Tensor::scalar(ys),
            zp_t(ad, &[zy], true),
        );
        let ins = [
            Some(&a),
            Some(&as_t),
            Some(&za_t),
            Some(&b),
            Some(&bs_t),
            Some(&zb_t),
            Some(&ys_t),
            Some(&zy_t),
        ];
        let op: Op = ops::QLinearMatMul::default().into();
        let y = eval(&op, &cx(13, 1), &ins).unwrap().unwrap();
        assert_eq!(y[0].to_i64_vec().unwrap(), want, "case {case}");
        let pins: Vec<PrepInput<'_>> = ins
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if i == 0 {
                    PrepInput::Runtime
                } else {
                    PrepInput::Const(t.unwrap())
                }
            })
            .collect();
        let prep = prepare(&op, &pins).expect("packed");
        let y2 = eval_with(&op, &cx(13, 1), &ins, Some(prep.as_ref()))
            .unwrap()
            .unwrap();
        assert_eq!(y2[0], y[0], "case {case} (prepared)");
    }
}

#[test]
fn prepare_needs_constant_weights() {
    let w = t(&[2, 1, 1, 1], vec![1i8, 2]);
    let op: Op = ops::ConvInteger::default().into();
    assert!(prepare(&op, &[PrepInput::Runtime, PrepInput::Const(&w)]).is_some());
    assert!(prepare(&op, &[PrepInput::Runtime, PrepInput::Runtime]).is_none());
    // A run-time zero point prevents packing (it is part of the packed weight).
    assert!(
        prepare(
            &op,
            &[
                PrepInput::Runtime,
                PrepInput::Const(&w),
                PrepInput::Absent,
                PrepInput::Runtime
            ]
        )
        .is_none()
    );
    // Not a packing op.
    assert!(prepare(&ops::QLinearAdd::default().into(), &[PrepInput::Const(&w)]).is_none());
}

#[test]
fn qlinear_add_and_mul_hand_checked() {
    let q = |v: Vec<u8>| t(&[v.len()], v);
    let one = Tensor::scalar(1f32);
    let half = Tensor::scalar(0.5f32);
    let z0 = Tensor::scalar(0u8);
    // (a + b) with scales 0.5, 0.5 -> 1: (1 + 2) * 0.5 = 1.5 -> 2 (even); (1 + 0) * 0.5 = 0.5 -> 0.
    let y = run(
        ops::QLinearAdd::default(),
        1,
        &[
            Some(&q(vec![1, 1, 200])),
            Some(&half),
            Some(&z0),
            Some(&q(vec![2, 0, 255])),
            Some(&half),
            Some(&z0),
            Some(&one),
            Some(&z0),
        ],
    );
    assert_eq!(y[0].to_vec::<u8>().unwrap(), vec![2, 0, 228]);
    // (a * b) * 0.25: 2 * 3 * 0.25 = 1.5 -> 2; 1 * 2 * 0.25 = 0.5 -> 0; saturation at 255.
    let y = run(
        ops::QLinearMul::default(),
        1,
        &[
            Some(&q(vec![2, 1, 255])),
            Some(&half),
            Some(&z0),
            Some(&q(vec![3, 2, 255])),
            Some(&half),
            Some(&z0),
            Some(&one),
            Some(&z0),
        ],
    );
    assert_eq!(y[0].to_vec::<u8>().unwrap(), vec![2, 0, 255]);
}

#[test]
fn qlinear_global_average_pool_and_concat() {
    // mean of [1, 2, 3, 4] with x zp 0, scales 1 -> 2.5 -> 2 (even).
    let x = t(&[1, 1, 2, 2], vec![1u8, 2, 3, 4]);
    let one = Tensor::scalar(1f32);
    let z0 = Tensor::scalar(0u8);
    let y = run(
        ops::QLinearGlobalAveragePool::default(),
        1,
        &[Some(&x), Some(&one), Some(&z0), Some(&one), Some(&z0)],
    );
    assert_eq!(y[0].shape(), &[1, 1, 1, 1]);
    assert_eq!(y[0].to_vec::<u8>().unwrap(), vec![2]);
    // Concat: input 0 already at the output parameters, input 1 requantized (scale 2 -> 1).
    let a = t(&[1, 2], vec![5u8, 6]);
    let b = t(&[1, 1], vec![7u8]);
    let op = ops::QLinearConcat { axis: Some(1) };
    let two = Tensor::scalar(2f32);
    let y = run(
        op,
        1,
        &[
            Some(&one),
            Some(&z0),
            Some(&a),
            Some(&one),
            Some(&z0),
            Some(&b),
            Some(&two),
            Some(&z0),
        ],
    );
    assert_eq!(y[0].to_vec::<u8>().unwrap(), vec![5, 6, 14]);
}
