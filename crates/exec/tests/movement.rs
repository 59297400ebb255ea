//! Data-movement and shape ops on small hand-checked cases.

mod common;
use common::*;
use qtool_ir::{TensorData, ops};
use qtool_tensor::Tensor;

fn i64s(t: &Tensor) -> Vec<i64> {
    t.to_vec::<i64>().unwrap()
}

#[test]
fn concat_and_split() {
    let a = t(&[2, 1], vec![1i64, 2]);
    let b = t(&[2, 2], vec![3i64, 4, 5, 6]);
    let c = run(ops::Concat { axis: Some(-1) }, 13, &[&a, &b]);
    assert_eq!(c.shape(), &[2, 3]);
    assert_eq!(i64s(&c), vec![1, 3, 4, 2, 5, 6]);
    assert!(try_run(ops::Concat { axis: Some(0) }, 13, &[&a, &b]).is_err());

    let x = v((1..=5).map(|i| i as f32).collect());
    // opset 13: sizes from an input.
    let s = v(vec![2i64, 3]);
    let r = run_n(ops::Split::default(), 13, &[Some(&x), Some(&s)], 2);
    assert_eq!((f(&r[0]), f(&r[1])), (vec![1., 2.], vec![3., 4., 5.]));
    // opset 11: attribute.
    let r = run_n(
        ops::Split {
            split: Some(vec![4, 1]),
            ..Default::default()
        },
        11,
        &[Some(&x)],
        2,
    );
    assert_eq!(f(&r[1]), vec![5.]);
    // opset 18: num_outputs, last chunk smaller.
    let r = run_n(
        ops::Split {
            num_outputs: Some(3),
            ..Default::default()
        },
        18,
        &[Some(&x)],
        3,
    );
    assert_eq!(r.iter().map(|t| t.len()).collect::<Vec<_>>(), vec![2, 2, 1]);
    // No sizes: equal parts by output count.
    let y = v(vec![1f32, 2., 3., 4.]);
    let r = run_n(ops::Split::default(), 13, &[Some(&y)], 2);
    assert_eq!(f(&r[1]), vec![3., 4.]);
    assert!(try_run_n(ops::Split::default(), 13, &[Some(&x)], 2).is_err());
}

#[test]
fn slice_rules() {
    let x = v((0..10).map(|i| i as i64).collect());
    let s = |st: i64, en: i64, step: Option<i64>| {
        let (st, en) = (v(vec![st]), v(vec![en]));
        let ax = v(vec![0i64]);
        let stp = step.map(|k| v(vec![k]));
        let ins = [Some(&x), Some(&st), Some(&en), Some(&ax), stp.as_ref()];
        i64s(&run_n(ops::Slice::default(), 13, &ins, 1)[0])
    };
    assert_eq!(s(-3, i64::MAX, None), vec![7, 8, 9]);
    assert_eq!(s(-1, i64::MIN, Some(-2)), vec![9, 7, 5, 3, 1]);
    assert_eq!(s(20, 0, Some(-3)), vec![9, 6, 3]);
    assert_eq!(s(5, 2, None), Vec::<i64>::new());
    assert_eq!(s(1, 100, Some(4)), vec![1, 5, 9]);
    // 2-D with axes and an old-opset attribute form.
    let m = t(&[3, 4], (0..12).map(|i| i as i64).collect());
    let st = v(vec![1i64]);
    let en = v(vec![-1i64]);
    let ax = v(vec![-1i64]);
    let r = run_n(
        ops::Slice::default(),
        13,
        &[Some(&m), Some(&st), Some(&en), Some(&ax)],
        1,
    );
    assert_eq!(r[0].shape(), &[3, 2]);
    assert_eq!(i64s(&r[0]), vec![1, 2, 5, 6, 9, 10]);
    let r = run(
        ops::Slice {
            starts: Some(vec![1, 0]),
            ends: Some(vec![2, 3]),
            axes: None,
        },
        9,
        &[&m],
    );
    assert_eq!(i64s(&r), vec![4, 5, 6]);
}

#[test]
fn reshape_family() {
    let x = t(&[2, 3, 4], (0..24).map(|i| i as f32).collect());
    let r = run(ops::Reshape::default(), 14, &[&x, &v(vec![0i64, -1])]);
    assert_eq!(r.shape(), &[2, 12]);
    let r = run(ops::Reshape::default(), 14, &[&x, &v(vec![4i64, 0, 2])]);
    assert_eq!(r.shape(), &[4, 3, 2]);
    let e = t(&[0, 3], Vec::<f32>::new());
    let r = run(
        ops::Reshape { allowzero: Some(1) },
        14,
        &[&e, &v(vec![3i64, 0])],
    );
    assert_eq!(r.shape(), &[3, 0]);
    assert!(try_run(ops::Reshape::default(), 14, &[&x, &v(vec![5i64, -1])]).is_err());

    let m = t(&[2, 3], vec![1i32, 2, 3, 4, 5, 6]);
    let tr = run(ops::Transpose::default(), 13, &[&m]);
    assert_eq!(tr.shape(), &[3, 2]);
    assert_eq!(tr.to_vec::<i32>().unwrap(), vec![1, 4, 2, 5, 3, 6]);
    let tr = run(
        ops::Transpose {
            perm: Some(vec![1, 2, 0]),
        },
        13,
        &[&x],
    );
    assert_eq!(tr.shape(), &[3, 4, 2]);
    assert_eq!(f(&tr)[..4], [0., 12., 1., 13.]);

    let s = t(&[1, 3, 1], vec![1f32, 2., 3.]);
    assert_eq!(run(ops::Squeeze::default(), 13, &[&s]).shape(), &[3]);
    assert_eq!(
        run(ops::Squeeze::default(), 13, &[&s, &v(vec![-1i64])]).shape(),
        &[1, 3]
    );
    assert_eq!(
        run(
            ops::Squeeze {
                axes: Some(vec![0])
            },
            11,
            &[&s]
        )
        .shape(),
        &[3, 1]
    );
    assert!(try_run(ops::Squeeze::default(), 13, &[&s, &v(vec![1i64])]).is_err());
    let u = v(vec![1f32, 2.]);
    assert_eq!(
        run(ops::Unsqueeze::default(), 13, &[&u, &v(vec![0i64, -1])]).shape(),
        &[1, 2, 1]
    );
    assert_eq!(
        run(
            ops::Unsqueeze {
                axes: Some(vec![1])
            },
            11,
            &[&u]
        )
        .shape(),
        &[2, 1]
    );
    assert_eq!(run(ops::Flatten::default(), 13, &[&x]).shape(), &[2, 12]);
    assert_eq!(
        run(ops::Flatten { axis: Some(0) }, 13, &[&x]).shape(),
        &[1, 24]
    );
    assert_eq!(
        run(ops::Flatten { axis: Some(-1) }, 13, &[&x]).shape(),
        &[6, 4]
    );
}

#[test]
fn expand_and_tile() {
    let x = t(&[3, 1], vec![1i64, 2, 3]);
    let e = run(ops::Expand {}, 13, &[&x, &v(vec![2i64, 1, 4])]);
    assert_eq!(e.shape(), &[2, 3, 4]);
    assert_eq!(i64s(&e)[..8], [1, 1, 1, 1, 2, 2, 2, 2]);
    let m = t(&[2, 2], vec![1i64, 2, 3, 4]);
    let r = run(ops::Tile {}, 13, &[&m, &v(vec![1i64, 2])]);
    assert_eq!(r.shape(), &[2, 4]);
    assert_eq!(i64s(&r), vec![1, 2, 1, 2, 3, 4, 3, 4]);
}

#[test]
fn pad_modes() {
    let x = v(vec![1f32, 2., 3.]);
    let pads = v(vec![2i64, 2]);
    let p = |mode: &str| {
        let o = ops::Pad {
            mode: Some(mode.into()),
            ..Default::default()
        };
        f(&run(o, 19, &[&x, &pads]))
    };
    assert_eq!(p("constant"), vec![0., 0., 1., 2., 3., 0., 0.]);
    assert_eq!(p("reflect"), vec![3., 2., 1., 2., 3., 2., 1.]);
    assert_eq!(p("edge"), vec![1., 1., 1., 2., 3., 3., 3.]);
    assert_eq!(p("wrap"), vec![2., 3., 1., 2., 3., 1., 2.]);
    // constant value input, negative pad crops.
    let r = run(
        ops::Pad::default(),
        13,
        &[&x, &v(vec![-1i64, 1]), &Tensor::scalar(9f32)],
    );
    assert_eq!(f(&r), vec![2., 3., 9.]);
    // opset 2 attributes.
    let m = t(&[1, 2], vec![1f32, 2.]);
    let r = run(
        ops::Pad {
            pads: Some(vec![0, 1, 1, 0]),
            value: Some(5.0),
            mode: None,
        },
        2,
        &[&m],
    );
    assert_eq!(r.shape(), &[2, 3]);
    assert_eq!(f(&r), vec![5., 1., 2., 5., 5., 5.]);
    // opset 18 axes input.
    let r = run_n(
        ops::Pad::default(),
        18,
        &[
            Some(&m),
            Some(&v(vec![1i64, 0])),
            None,
            Some(&v(vec![-1i64])),
        ],
        1,
    );
    assert_eq!(f(&r[0]), vec![0., 1., 2.]);
}

#[test]
fn gathers() {
    let d = t(&[3, 2], vec![1f32, 2., 3., 4., 5., 6.]);
    let g = run(
        ops::Gather::default(),
        13,
        &[&d, &t(&[2, 2], vec![0i64, 1, 1, -1])],
    );
    assert_eq!(g.shape(), &[2, 2, 2]);
    assert_eq!(f(&g), vec![1., 2., 3., 4., 3., 4., 5., 6.]);
    let g = run(
        ops::Gather { axis: Some(1) },
        13,
        &[&d, &Tensor::scalar(1i32)],
    );
    assert_eq!(g.shape(), &[3]);
    assert_eq!(f(&g), vec![2., 4., 6.]);
    assert!(
        try_run(ops::Gather::default(), 13, &[&d, &v(vec![3i64])])
            .unwrap_err()
            .contains("out of bounds")
    );

    let d = t(&[2, 2], vec![1i64, 2, 3, 4]);
    let ge = run(
        ops::GatherElements { axis: Some(1) },
        13,
        &[&d, &t(&[2, 2], vec![0i64, 0, 1, 0])],
    );
    assert_eq!(i64s(&ge), vec![1, 1, 4, 3]);

    // GatherND examples from the ONNX spec.
    let d = t(&[2, 2], vec![0i64, 1, 2, 3]);
    assert_eq!(
        i64s(&run(
            ops::GatherND::default(),
            13,
            &[&d, &t(&[2, 2], vec![0i64, 0, 1, 1])]
        )),
        vec![0, 3]
    );
    let r = run(
        ops::GatherND::default(),
        13,
        &[&d, &t(&[2, 1], vec![1i64, 0])],
    );
    assert_eq!(r.shape(), &[2, 2]);
    assert_eq!(i64s(&r), vec![2, 3, 0, 1]);
    let d3 = t(&[2, 2, 2], (0..8).map(|i| i as i64).collect());
    let r = run(
        ops::GatherND {
            batch_dims: Some(1),
        },
        13,
        &[&d3, &t(&[2, 1], vec![1i64, 0])],
    );
    assert_eq!(r.shape(), &[2, 2]);
    assert_eq!(i64s(&r), vec![2, 3, 4, 5]);
}

#[test]
fn scatters() {
    // ScatterND spec example 1.
    let d = v((1..=8).map(|i| i as f32).collect());
    let r = run(
        ops::ScatterND::default(),
        16,
        &[
            &d,
            &t(&[4, 1], vec![4i64, 3, 1, 7]),
            &v(vec![9f32, 10., 11., 12.]),
        ],
    );
    assert_eq!(f(&r), vec![1., 11., 3., 10., 9., 6., 7., 12.]);
    let r = run(
        ops::ScatterND {
            reduction: Some("add".into()),
        },
        16,
        &[&d, &t(&[2, 1], vec![0i64, 0]), &v(vec![10f32, 20.])],
    );
    assert_eq!(f(&r)[0], 31.);
    // Row updates.
    let m = t(&[2, 2], vec![0i64; 4]);
    let r = run(
        ops::ScatterND::default(),
        16,
        &[&m, &t(&[1, 1], vec![1i64]), &t(&[1, 2], vec![5i64, 6])],
    );
    assert_eq!(i64s(&r), vec![0, 0, 5, 6]);

    // ScatterElements spec example 2 and a reduction.
    let d = t(&[1, 5], vec![1f32, 2., 3., 4., 5.]);
    let idx = t(&[1, 2], vec![1i64, 3]);
    let upd = t(&[1, 2], vec![1.1f32, 2.1]);
    close(
        &f(&run(
            ops::ScatterElements {
                axis: Some(1),
                reduction: None,
            },
            16,
            &[&d, &idx, &upd],
        )),
        &[1., 1.1, 3., 2.1, 5.],
    );
    let idx = t(&[1, 2], vec![1i64, 1]);
    let r = run(
        ops::ScatterElements {
            axis: Some(1),
            reduction: Some("mul".into()),
        },
        16,
        &[&d, &idx, &upd],
    );
    close(&f(&r), &[1., 2. * 1.1 * 2.1, 3., 4., 5.]);
}

#[test]
fn shapes_and_constants() {
    let x = t(&[2, 3, 4], vec![0u8; 24]);
    assert_eq!(i64s(&run(ops::Shape::default(), 15, &[&x])), vec![2, 3, 4]);
    assert_eq!(
        i64s(&run(
            ops::Shape {
                start: Some(1),
                end: None
            },
            15,
            &[&x]
        )),
        vec![3, 4]
    );
    assert_eq!(
        i64s(&run(
            ops::Shape {
                start: Some(-2),
                end: Some(-1)
            },
            15,
            &[&x]
        )),
        vec![3]
    );
    let s = run(ops::Size {}, 13, &[&x]);
    assert_eq!((s.shape(), i64s(&s)), (&[][..], vec![24]));

    let c = run(
        ops::Constant {
            value_ints: Some(vec![1, 2]),
            ..Default::default()
        },
        13,
        &[],
    );
    assert_eq!(i64s(&c), vec![1, 2]);
    let c = run(
        ops::Constant {
            value_float: Some(1.5),
            ..Default::default()
        },
        13,
        &[],
    );
    assert_eq!((c.shape().len(), f(&c)), (0, vec![1.5]));
    let td = TensorData::from_tensor(&t(&[2], vec![7i32, 8]));
    let c = run(
        ops::Constant {
            value: Some(td.clone()),
            ..Default::default()
        },
        13,
        &[],
    );
    assert_eq!(c.to_vec::<i32>().unwrap(), vec![7, 8]);
    let c = run(
        ops::ConstantOfShape {
            value: Some(TensorData::from_tensor(&v(vec![3i32]))),
        },
        9,
        &[&v(vec![2i64, 2])],
    );
    assert_eq!(c.to_vec::<i32>().unwrap(), vec![3; 4]);
    let c = run(ops::ConstantOfShape::default(), 9, &[&v(vec![3i64])]);
    assert_eq!(f(&c), vec![0.; 3]);

    let r = run(
        ops::Range {},
        11,
        &[
            &Tensor::scalar(3i64),
            &Tensor::scalar(9i64),
            &Tensor::scalar(3i64),
        ],
    );
    assert_eq!(i64s(&r), vec![3, 6]);
    let r = run(
        ops::Range {},
        11,
        &[
            &Tensor::scalar(10i32),
            &Tensor::scalar(4i32),
            &Tensor::scalar(-2i32),
        ],
    );
    assert_eq!(r.to_vec::<i32>().unwrap(), vec![10, 8, 6]);
    let r = run(
        ops::Range {},
        11,
        &[
            &Tensor::scalar(0f32),
            &Tensor::scalar(1f32),
            &Tensor::scalar(0.25f32),
        ],
    );
    assert_eq!(f(&r), vec![0., 0.25, 0.5, 0.75]);
}

#[test]
fn nonzero_onehot_trilu() {
    let x = t(&[2, 2], vec![1f32, 0., 1., 1.]);
    let r = run(ops::NonZero {}, 13, &[&x]);
    assert_eq!(r.shape(), &[2, 3]);
    assert_eq!(i64s(&r), vec![0, 1, 1, 0, 0, 1]);

    let idx = v(vec![0i64, 2, -1, 5]);
    let vals = v(vec![0f32, 1.]);
    let r = run(
        ops::OneHot::default(),
        11,
        &[&idx, &Tensor::scalar(3i64), &vals],
    );
    assert_eq!(r.shape(), &[4, 3]);
    assert_eq!(f(&r), vec![1., 0., 0., 0., 0., 1., 0., 0., 1., 0., 0., 0.]);
    let r = run(
        ops::OneHot { axis: Some(0) },
        11,
        &[&v(vec![1i64, 0]), &Tensor::scalar(2f32), &vals],
    );
    assert_eq!(f(&r), vec![0., 1., 1., 0.]);

    let m = t(&[3, 3], (1..=9).map(|i| i as i64).collect());
    assert_eq!(
        i64s(&run(ops::Trilu::default(), 14, &[&m])),
        vec![1, 2, 3, 0, 5, 6, 0, 0, 9]
    );
    assert_eq!(
        i64s(&run(ops::Trilu { upper: Some(0) }, 14, &[&m])),
        vec![1, 0, 0, 4, 5, 0, 7, 8, 9]
    );
    assert_eq!(
        i64s(&run(
            ops::Trilu::default(),
            14,
            &[&m, &Tensor::scalar(1i64)]
        )),
        vec![0, 2, 3, 0, 0, 6, 0, 0, 0]
    );
    assert_eq!(
        i64s(&run(
            ops::Trilu { upper: Some(0) },
            14,
            &[&m, &Tensor::scalar(-1i64)]
        )),
        vec![0, 0, 0, 4, 0, 0, 7, 8, 0]
    );
}
