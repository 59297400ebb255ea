//! Which constants the executor keeps as tensors: an initializer read only through prepared state
//! (a packed f32 conv weight) is dropped after packing, while one with any other reader, one that
//! is a graph output, or one a caller may override stays; the results do not change.

use qtool_exec::{ExecOptions, Executor};
use qtool_ir::{Graph, Model, Node, OpsetId, TensorData, Type, ValueInfo, ops};
use qtool_tensor::{DType, Tensor};
use qtool_testkit::{Rng, assert_allclose};

const XS: [usize; 4] = [1, 4, 9, 8];
const WS: [usize; 4] = [6, 4, 3, 3];

/// How the weight `w` of the model's convolutions is used besides being their weight.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Extra {
    /// Only the convolution(s) read it.
    None,
    /// A Mul also reads it (w * w is a second graph output).
    AlsoMul,
    /// It is also a graph output.
    Output,
    /// It is a graph input with the initializer as default (callers may override it).
    Overridable,
}

/// x -> Conv(w, b) -> y (and, with `two_convs`, x -> Conv(w) -> y2 sharing the same weight).
fn conv_model(extra: Extra, two_convs: bool) -> (Model, Tensor, Tensor) {
    let mut rng = Rng::new(11);
    let mut g = Graph::new("held");
    let x = g.add_value("x").unwrap();
    let xs: Vec<i64> = XS.iter().map(|&d| d as i64).collect();
    g.inputs
        .push((x, ValueInfo::of_type(Type::tensor(DType::F32, &xs))));
    let w = rng.tensor_f32(&WS, -0.5, 0.5);
    let b = rng.tensor_f32(&[WS[0]], -0.5, 0.5);
    let wv = g.add_initializer("w", TensorData::from_tensor(&w)).unwrap();
    if extra == Extra::Overridable {
        let ws: Vec<i64> = WS.iter().map(|&d| d as i64).collect();
        g.inputs
            .push((wv, ValueInfo::of_type(Type::tensor(DType::F32, &ws))));
    }
    let bv = g.add_initializer("b", TensorData::from_tensor(&b)).unwrap();
    let y = g.add_value("y").unwrap();
    let conv = || ops::Conv {
        pads: Some(vec![1, 1, 1, 1]),
        ..Default::default()
    };
    g.add_node(
        Node::new(conv(), "conv"),
        &[Some(x), Some(wv), Some(bv)],
        &[Some(y)],
    )
    .unwrap();
    g.outputs.push((y, ValueInfo::default()));
    if two_convs {
        let y2 = g.add_value("y2").unwrap();
        g.add_node(
            Node::new(conv(), "conv2"),
            &[Some(x), Some(wv)],
            &[Some(y2)],
        )
        .unwrap();
        g.outputs.push((y2, ValueInfo::default()));
    }
    match extra {
        Extra::AlsoMul => {
            let sq = g.add_value("w_squared").unwrap();
            g.add_node(
                Node::new(ops::Mul {}, "mul"),
                &[Some(wv), Some(wv)],
                &[Some(sq)],
            )
            .unwrap();
            g.outputs.push((sq, ValueInfo::default()));
        }
        Extra::Output => g.outputs.push((wv, ValueInfo::default())),
        Extra::None | Extra::Overridable => {}
    }
    let m = Model {
        graph: g,
        opset_import: vec![OpsetId {
            domain: None,
            version: Some(17),
        }],
        ..Default::default()
    };
    (m, rng.tensor_f32(&XS, -2.0, 2.0), w)
}

/// A direct convolution (3x3, pad 1, stride 1) of `x` with `w` plus `bias`.
fn reference_conv(x: &Tensor, w: &Tensor, bias: Option<&[f32]>) -> Vec<f32> {
    let (xd, wd) = (x.to_vec::<f32>().unwrap(), w.to_vec::<f32>().unwrap());
    let [_, c, h, wi] = XS;
    let [m, _, kh, kw] = WS;
    let mut out = vec![0f32; m * h * wi];
    for o in 0..m {
        for y in 0..h {
            for xo in 0..wi {
                let mut acc = bias.map_or(0.0, |b| b[o] as f64);
                for ci in 0..c {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let (iy, ix) = (y as i64 + ky as i64 - 1, xo as i64 + kx as i64 - 1);
                            if iy < 0 || ix < 0 || iy >= h as i64 || ix >= wi as i64 {
                                continue;
                            }
                            acc += xd[(ci * h + iy as usize) * wi + ix as usize] as f64
                                * wd[((o * c + ci) * kh + ky) * kw + kx] as f64;
                        }
                    }
                }
                out[(o * h + y) * wi + xo] = acc as f32;
            }
        }
    }
    out
}

/// `got` equals the reference within f32 accumulation-order error.
fn close(got: &Tensor, want: Vec<f32>) {
    let want = Tensor::from_vec(got.shape(), want).unwrap();
    assert_allclose(got, &want, 1e-5, 1e-5, "conv output");
}

fn bias_of(m: &Model) -> Vec<f32> {
    let g = &m.graph;
    let v = g
        .initializers
        .iter()
        .copied()
        .find(|&v| g.value_name(v) == "b")
        .unwrap();
    g.initializer(v)
        .unwrap()
        .to_tensor()
        .unwrap()
        .to_vec()
        .unwrap()
}

#[test]
fn a_weight_read_only_through_packed_state_is_not_held() {
    for two in [false, true] {
        let (m, x, w) = conv_model(Extra::None, two);
        let ex = Executor::new(&m, ExecOptions { threads: Some(2) }).unwrap();
        assert!(ex.prepared_nodes().contains(&"conv"));
        let held = ex.held_constants();
        assert!(!held.contains(&"w"), "two convs: {two}: {held:?}");
        assert!(held.contains(&"b"), "the bias is read directly: {held:?}");
        // The model can be dropped: the executor needs nothing of it any more.
        drop(m);
        let out = ex.run(vec![("x".into(), x.clone())]).unwrap();
        let bias = {
            let (m, _, _) = conv_model(Extra::None, two);
            bias_of(&m)
        };
        close(&out[0].1, reference_conv(&x, &w, Some(&bias)));
        if two {
            close(&out[1].1, reference_conv(&x, &w, None));
        }
        // An observed run (unfused) gives the same values and shows no initializer.
        let mut seen = Vec::new();
        let observed = ex
            .run_observed(vec![("x".into(), x.clone())], &mut |n, _| {
                seen.push(n.to_string())
            })
            .unwrap();
        assert_eq!(observed, out);
        assert!(!seen.iter().any(|n| n == "w" || n == "b"), "{seen:?}");
    }
}

#[test]
fn a_weight_with_other_readers_or_overridable_is_held() {
    for extra in [Extra::AlsoMul, Extra::Output, Extra::Overridable] {
        let (m, x, w) = conv_model(extra, false);
        let ex = Executor::new(&m, ExecOptions { threads: Some(1) }).unwrap();
        assert!(ex.held_constants().contains(&"w"), "{extra:?}");
        let bias = bias_of(&m);
        drop(m);
        let out = ex.run(vec![("x".into(), x.clone())]).unwrap();
        close(&out[0].1, reference_conv(&x, &w, Some(&bias)));
        match extra {
            Extra::AlsoMul => {
                let sq: Vec<f32> = w.to_vec::<f32>().unwrap().iter().map(|v| v * v).collect();
                assert_eq!(out[1].1.to_vec::<f32>().unwrap(), sq);
            }
            Extra::Output => assert_eq!(out[1].1, w),
            Extra::Overridable => {
                // Overriding the weight takes effect.
                let w2 = Tensor::from_vec(&WS, vec![0.25f32; WS.iter().product()]).unwrap();
                let out = ex
                    .run(vec![("x".into(), x.clone()), ("w".into(), w2.clone())])
                    .unwrap();
                close(&out[0].1, reference_conv(&x, &w2, Some(&bias)));
            }
            Extra::None => unreachable!(),
        }
    }
}
