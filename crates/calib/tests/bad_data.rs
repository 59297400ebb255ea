//! Bad calibration data never panics: a wrong shape or element type, a truncated or unreadable file,
//! an empty folder or array are errors that name the file (and the input); NaN and Inf values in
//! inputs or activations are the documented treatment: counted per tensor, left out of min/max and
//! histograms, reported as warnings by `compute_ranges`, and a tensor with no finite value at all
//! gets no range (a warning, not an error).

use qtool_calib::*;
use qtool_exec::{ExecOptions, Executor};
use qtool_ir::{Dim, Graph, Model, Node, OpsetId, TensorType, Type, TypeKind, ValueInfo, ops};
use qtool_tensor::{DType, Tensor};
use std::path::Path;

/// x[1, 2, 4] -> Log -> l ; l + x -> y. Log turns negative inputs into NaN and zeros into -Inf.
fn log_model() -> Model {
    let mut g = Graph::new("g");
    let x = g.add_value("x").unwrap();
    let ty = Type {
        kind: TypeKind::Tensor(TensorType {
            elem: Some(DType::F32),
            shape: Some(vec![Dim::known(1), Dim::known(2), Dim::known(4)]),
        }),
        denotation: None,
    };
    g.inputs.push((x, ValueInfo::of_type(ty)));
    let [l, y] = ["l", "y"].map(|n| g.add_value(n).unwrap());
    g.add_node(Node::new(ops::Log {}, "log"), &[Some(x)], &[Some(l)])
        .unwrap();
    g.add_node(
        Node::new(ops::Add {}, "add"),
        &[Some(l), Some(x)],
        &[Some(y)],
    )
    .unwrap();
    g.outputs.push((y, ValueInfo::default()));
    Model {
        graph: g,
        opset_import: vec![OpsetId {
            domain: None,
            version: Some(17),
        }],
        ..Default::default()
    }
}

fn exec() -> Executor {
    Executor::new(&log_model(), ExecOptions { threads: Some(1) }).unwrap()
}

fn write_npy(path: &Path, t: &Tensor) {
    let mut f = std::fs::File::create(path).unwrap();
    qtool_data::npy::write_npy(t, &mut f).unwrap();
}

fn run(source: &mut dyn DataSource) -> Result<CalibStats, CalibError> {
    calibrate(&exec(), source, &CalibOptions::default(), &mut |_, _| {})
}

#[test]
fn wrong_shape_is_an_error_naming_the_file_and_input() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("wrong_shape.npy");
    write_npy(&p, &Tensor::from_vec(&[3, 2, 5], vec![1f32; 30]).unwrap());
    let mut s = NpySource::open(&p, "x", 1).unwrap();
    let e = run(&mut s).unwrap_err().to_string();
    assert!(e.contains("wrong_shape.npy") && e.contains("'x'"), "{e}");
}

#[test]
fn wrong_element_type_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("doubles.npy");
    write_npy(&p, &Tensor::from_vec(&[2, 2, 4], vec![1f64; 16]).unwrap());
    let mut s = NpySource::open(&p, "x", 1).unwrap();
    let e = run(&mut s).unwrap_err().to_string();
    assert!(e.contains("doubles.npy"), "{e}");
    // Integers through a directory of .npy files.
    let d = dir.path().join("ints");
    std::fs::create_dir(&d).unwrap();
    write_npy(
        &d.join("a.npy"),
        &Tensor::from_vec(&[1, 2, 4], vec![1i32; 8]).unwrap(),
    );
    let mut s = NpyDirSource::open(&d, "x", source::FileLayout::Sample).unwrap();
    let e = run(&mut s).unwrap_err().to_string();
    assert!(e.contains("a.npy"), "{e}");
}

#[test]
fn truncated_and_garbage_npy_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.npy");
    write_npy(
        &good,
        &Tensor::from_vec(&[4, 2, 4], vec![1f32; 32]).unwrap(),
    );
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.npy");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let e = match NpySource::open(&cut, "x", 1) {
        Err(e) => e.to_string(),
        Ok(mut s) => run(&mut s).unwrap_err().to_string(),
    };
    assert!(e.contains("cut.npy"), "{e}");
    let junk = dir.path().join("junk.npy");
    std::fs::write(&junk, b"this is not an array").unwrap();
    let e = NpySource::open(&junk, "x", 1).unwrap_err().to_string();
    assert!(e.contains("junk.npy"), "{e}");
}

#[test]
fn empty_sources_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    // An empty folder: no images, no .npy files.
    let e = ImageFolderSource::open(dir.path(), "x", Preprocess::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no images"), "{e}");
    let e = NpyDirSource::open(dir.path(), "x", source::FileLayout::Sample)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no .npy files"), "{e}");
    // An array with zero samples.
    let p = dir.path().join("none.npy");
    write_npy(
        &p,
        &Tensor::from_vec(&[0, 2, 4], Vec::<f32>::new()).unwrap(),
    );
    let mut s = NpySource::open(&p, "x", 1).unwrap();
    let e = run(&mut s).unwrap_err().to_string();
    assert!(e.contains("no samples"), "{e}");
}

#[test]
fn unreadable_image_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    image::RgbImage::from_raw(4, 2, vec![100; 24])
        .unwrap()
        .save(dir.path().join("a.png"))
        .unwrap();
    std::fs::write(dir.path().join("b.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    std::fs::write(dir.path().join("c.jpg"), b"").unwrap();
    let pre = Preprocess {
        resize: Resize::Exact {
            height: 2,
            width: 4,
        },
        ..Default::default()
    };
    let mut s = ImageFolderSource::open(dir.path(), "x", pre).unwrap();
    assert!(s.get(0).unwrap().is_some(), "the good image decodes");
    for (i, name) in [(1, "b.png"), (2, "c.jpg")] {
        let e = s.get(i).unwrap_err().to_string();
        assert!(e.contains(name), "{e}");
    }
}

#[test]
fn nan_and_inf_in_inputs_and_activations_are_counted_and_reported() {
    // Sample 0: a NaN and a +Inf input; sample 1: negative values (Log -> NaN) and a zero
    // (Log -> -Inf).
    let mk = |v: Vec<f32>, o: &str| Sample {
        inputs: vec![("x".into(), Tensor::from_vec(&[1, 2, 4], v).unwrap())],
        origin: o.into(),
    };
    let mut data = vec![
        mk(
            vec![f32::NAN, f32::INFINITY, 1.0, 2.0, 3.0, 4.0, 0.5, 0.25],
            "s0",
        ),
        mk(vec![-1.0, 0.0, 1.0, 2.0, -3.0, 4.0, 0.5, 0.25], "s1"),
    ];
    let stats = run(&mut data).unwrap();
    let x = &stats.tensors["x"];
    assert_eq!((x.nan, x.pos_inf, x.neg_inf), (1, 1, 0));
    assert_eq!(x.all.count, 14);
    assert_eq!(x.all.range(), Some((-3.0, 4.0)));
    let l = &stats.tensors["l"];
    // Log: NaN (1) and Inf (1) from s0, NaN for -1 and -3 and -Inf for 0 in s1.
    assert_eq!((l.nan, l.pos_inf, l.neg_inf), (3, 1, 1));
    let report = stats.non_finite_report();
    assert!(report.iter().any(|r| r.0 == "l"), "{report:?}");
    for method in [
        Method::MinMax,
        Method::Percentile,
        Method::Entropy,
        Method::Mse,
    ] {
        let r = compute_ranges(
            &stats,
            &RangeSettings {
                method,
                ..Default::default()
            },
        )
        .unwrap();
        let TensorRange::PerTensor { min, max } = r.ranges["l"] else {
            panic!("per-tensor range expected");
        };
        assert!(
            min.is_finite() && max.is_finite() && min <= max,
            "{method:?}: {min} {max}"
        );
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("'l'") && w.contains("NaN")),
            "{method:?}: {:?}",
            r.warnings
        );
    }
}

#[test]
fn a_tensor_without_finite_values_gets_no_range_and_a_warning() {
    let mut data = vec![Sample {
        inputs: vec![(
            "x".into(),
            Tensor::from_vec(&[1, 2, 4], vec![-1f32; 8]).unwrap(),
        )],
        origin: "negatives".into(),
    }];
    let stats = run(&mut data).unwrap();
    assert_eq!(stats.tensors["l"].nan, 8);
    for method in [
        Method::MinMax,
        Method::Percentile,
        Method::Entropy,
        Method::Mse,
    ] {
        let r = compute_ranges(
            &stats,
            &RangeSettings {
                method,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!r.ranges.contains_key("l"), "{method:?}");
        assert!(r.ranges.contains_key("x"), "{method:?}");
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("'l'") && w.contains("no finite")),
            "{method:?}: {:?}",
            r.warnings
        );
    }
}
