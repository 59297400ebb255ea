//! Reductions, ArgMax/ArgMin, TopK and CumSum on small hand-checked cases.

mod common;
use common::*;
use qtool_ir::ops;
use qtool_tensor::Tensor;

#[test]
fn reductions() {
    let x = t(&[2, 3], vec![1f32, 2., 3., 4., 5., 6.]);
    // ReduceSum takes axes as an input from opset 13.
    let r = run(
        ops::ReduceSum {
            keepdims: Some(0),
            ..Default::default()
        },
        13,
        &[&x, &v(vec![1i64])],
    );
    assert_eq!((r.shape(), f(&r)), (&[2][..], vec![6., 15.]));
    let r = run(ops::ReduceSum::default(), 13, &[&x]);
    assert_eq!((r.shape(), f(&r)), (&[1, 1][..], vec![21.]));
    let r = run(
        ops::ReduceSum {
            noop_with_empty_axes: Some(1),
            ..Default::default()
        },
        13,
        &[&x],
    );
    assert_eq!(r, x);
    let r = run(
        ops::ReduceSum {
            axes: Some(vec![0]),
            ..Default::default()
        },
        11,
        &[&x],
    );
    assert_eq!((r.shape(), f(&r)), (&[1, 3][..], vec![5., 7., 9.]));
    // The others take axes as an attribute before 18.
    let r = run(
        ops::ReduceMean {
            axes: Some(vec![-1]),
            keepdims: Some(0),
            ..Default::default()
        },
        13,
        &[&x],
    );
    assert_eq!(f(&r), vec![2., 5.]);
    let r = run(
        ops::ReduceMean {
            keepdims: Some(0),
            ..Default::default()
        },
        18,
        &[&x, &v(vec![0i64])],
    );
    assert_eq!(f(&r), vec![2.5, 3.5, 4.5]);
    assert_eq!(f(&run(ops::ReduceMax::default(), 13, &[&x])), vec![6.]);
    assert_eq!(
        f(&run(
            ops::ReduceMin {
                axes: Some(vec![1]),
                ..Default::default()
            },
            13,
            &[&x]
        )),
        vec![1., 4.]
    );
    assert_eq!(
        f(&run(
            ops::ReduceProd {
                axes: Some(vec![1]),
                ..Default::default()
            },
            13,
            &[&x]
        )),
        vec![6., 120.]
    );
    let y = v(vec![3f32, -4.]);
    assert_eq!(f(&run(ops::ReduceL1::default(), 13, &[&y])), vec![7.]);
    assert_eq!(f(&run(ops::ReduceL2::default(), 13, &[&y])), vec![5.]);
    assert_eq!(
        f(&run(ops::ReduceSumSquare::default(), 13, &[&y])),
        vec![25.]
    );
    close(
        &f(&run(
            ops::ReduceLogSumExp::default(),
            13,
            &[&v(vec![1000f32, 1000.])],
        )),
        &[1000. + std::f32::consts::LN_2],
    );
    // Integers.
    let xi = t(&[2, 2], vec![1i64, 2, 3, 4]);
    assert_eq!(
        run(ops::ReduceProd::default(), 13, &[&xi])
            .to_vec::<i64>()
            .unwrap(),
        vec![24]
    );
    assert_eq!(
        run(
            ops::ReduceMean {
                axes: Some(vec![1]),
                ..Default::default()
            },
            13,
            &[&xi]
        )
        .to_vec::<i64>()
        .unwrap(),
        vec![1, 3]
    );
    // Middle axis of a 3-D tensor.
    let z = t(&[2, 2, 2], (0..8).map(|i| i as f32).collect());
    assert_eq!(
        f(&run(
            ops::ReduceSum {
                keepdims: Some(0),
                ..Default::default()
            },
            13,
            &[&z, &v(vec![1i64])]
        )),
        vec![2., 4., 10., 12.]
    );
    assert_eq!(
        f(&run(
            ops::ReduceSum {
                keepdims: Some(0),
                ..Default::default()
            },
            13,
            &[&z, &v(vec![0i64, 2])]
        )),
        vec![10., 18.]
    );
}

#[test]
fn arg_max_min() {
    let x = t(&[2, 3], vec![1f32, 5., 5., 7., 0., 7.]);
    let r = run(
        ops::ArgMax {
            axis: Some(1),
            ..Default::default()
        },
        13,
        &[&x],
    );
    assert_eq!(
        (r.shape(), r.to_vec::<i64>().unwrap()),
        (&[2, 1][..], vec![1, 0])
    );
    let r = run(
        ops::ArgMax {
            axis: Some(1),
            select_last_index: Some(1),
            keepdims: Some(0),
        },
        13,
        &[&x],
    );
    assert_eq!(
        (r.shape(), r.to_vec::<i64>().unwrap()),
        (&[2][..], vec![2, 2])
    );
    let r = run(
        ops::ArgMin {
            axis: Some(0),
            keepdims: Some(0),
            ..Default::default()
        },
        13,
        &[&x],
    );
    assert_eq!(r.to_vec::<i64>().unwrap(), vec![0, 1, 0]);
}

#[test]
fn topk() {
    let x = v(vec![3f32, 1., 3., 2.]);
    let r = run_n(
        ops::TopK::default(),
        11,
        &[Some(&x), Some(&v(vec![2i64]))],
        2,
    );
    assert_eq!(
        (f(&r[0]), r[1].to_vec::<i64>().unwrap()),
        (vec![3., 3.], vec![0, 2])
    );
    let r = run_n(
        ops::TopK {
            largest: Some(0),
            ..Default::default()
        },
        11,
        &[Some(&x), Some(&v(vec![3i64]))],
        2,
    );
    assert_eq!(
        (f(&r[0]), r[1].to_vec::<i64>().unwrap()),
        (vec![1., 2., 3.], vec![1, 3, 0])
    );
    // Opset 1 attribute k, axis 0 of a matrix.
    let m = t(&[3, 2], vec![1i32, 6, 5, 2, 3, 4]);
    let r = run_n(
        ops::TopK {
            k: Some(2),
            axis: Some(0),
            ..Default::default()
        },
        1,
        &[Some(&m)],
        2,
    );
    assert_eq!(r[0].shape(), &[2, 2]);
    assert_eq!(r[0].to_vec::<i32>().unwrap(), vec![5, 6, 3, 4]);
    assert_eq!(r[1].to_vec::<i64>().unwrap(), vec![1, 0, 2, 2]);
    assert!(
        try_run_n(
            ops::TopK::default(),
            11,
            &[Some(&x), Some(&v(vec![5i64]))],
            2
        )
        .is_err()
    );
}

#[test]
fn cumsum() {
    let x = v(vec![1f32, 2., 3., 4., 5.]);
    let ax = Tensor::scalar(0i32);
    let c = |e: i64, r: i64| {
        f(&run(
            ops::CumSum {
                exclusive: Some(e),
                reverse: Some(r),
            },
            14,
            &[&x, &ax],
        ))
    };
    assert_eq!(c(0, 0), vec![1., 3., 6., 10., 15.]);
    assert_eq!(c(1, 0), vec![0., 1., 3., 6., 10.]);
    assert_eq!(c(0, 1), vec![15., 14., 12., 9., 5.]);
    assert_eq!(c(1, 1), vec![14., 12., 9., 5., 0.]);
    let m = t(&[2, 3], vec![1i64, 2, 3, 4, 5, 6]);
    let r = run(ops::CumSum::default(), 14, &[&m, &Tensor::scalar(1i64)]);
    assert_eq!(r.to_vec::<i64>().unwrap(), vec![1, 3, 6, 4, 9, 15]);
    let r = run(ops::CumSum::default(), 14, &[&m, &Tensor::scalar(-2i64)]);
    assert_eq!(r.to_vec::<i64>().unwrap(), vec![1, 2, 3, 5, 7, 9]);
}

#[test]
fn bool_max_min() {
    let x = t(&[2, 2], vec![true, false, false, false]);
    let r = run(
        ops::ReduceMax {
            keepdims: Some(0),
            ..Default::default()
        },
        20,
        &[&x, &v(vec![1i64])],
    );
    assert_eq!(r.to_vec::<bool>().unwrap(), vec![true, false]);
    let r = run(
        ops::ReduceMin {
            keepdims: Some(0),
            ..Default::default()
        },
        20,
        &[&x, &v(vec![0i64])],
    );
    assert_eq!(r.to_vec::<bool>().unwrap(), vec![false, false]);
}
