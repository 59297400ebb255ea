//! External data: loading (range reads, validation of location and range), saving (files next to
//! the destination, offsets recomputed, atomic, never over the input), and the automatic move to
//! external data when the protobuf would exceed its limit (tested with a small injected limit).

mod common;

use common::*;
use prost::Message;
use qtool_ir::{Model, Storage, TensorData};
use qtool_onnx::proto::{ModelProto, TensorProto};
use qtool_onnx::{ExternalPolicy, LoadError, SaveError, SaveOptions, load, save};
use std::path::Path;

fn ext_tensor(name: &str, dims: &[i64], entries: &[(&str, &str)]) -> TensorProto {
    TensorProto {
        name: s(name),
        data_type: Some(1),
        dims: dims.to_vec(),
        data_location: Some(1),
        external_data: entries.iter().map(|(k, v)| kv(k, v)).collect(),
        ..Default::default()
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A model whose initializers and a Constant's tensor live in two external files, with gaps.
fn write_external_model(dir: &Path) -> (ModelProto, Vec<(String, Vec<u8>)>) {
    let w1 = f32_bytes(&[1.0, 2.0, 3.0, 4.0]);
    let w2 = f32_bytes(&[-1.0, f32::from_bits(0x7fc0_0abc)]);
    let c = f32_bytes(&[42.0]);
    let w3 = f32_bytes(&[9.0, 8.0, 7.0]);
    // weights.bin: w1 at 0, 48 bytes of padding, w2 at 64, c at 100.
    let mut weights = vec![0xAAu8; 128];
    weights[0..16].copy_from_slice(&w1);
    weights[64..72].copy_from_slice(&w2);
    weights[100..104].copy_from_slice(&c);
    std::fs::write(dir.join("weights.bin"), &weights).unwrap();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/other.bin"), &w3).unwrap();
    let mut g = graph(
        "g",
        vec![
            node(
                "Constant",
                "const",
                &[],
                &["c"],
                vec![qtool_onnx::proto::AttributeProto {
                    t: Some(ext_tensor(
                        "c_val",
                        &[1],
                        &[
                            ("location", "weights.bin"),
                            ("offset", "100"),
                            ("length", "4"),
                        ],
                    )),
                    ..attr("value", 4)
                }],
            ),
            node("Add", "add", &["w1", "c"], &["y"], vec![]),
        ],
        vec![],
        vec![vi_f32("y", &[4])],
    );
    g.initializer = vec![
        ext_tensor(
            "w1",
            &[4],
            &[
                ("location", "weights.bin"),
                ("offset", "0"),
                ("length", "16"),
                ("checksum", "abc"),
            ],
        ),
        ext_tensor(
            "w2",
            &[2],
            &[
                ("location", "weights.bin"),
                ("length", "8"),
                ("offset", "64"),
            ],
        ),
        ext_tensor("w3", &[3], &[("location", "./sub/other.bin")]),
        f32_tensor("inline", &[1], &[5.0]),
    ];
    let p = model(g);
    std::fs::write(dir.join("model.onnx"), p.encode_to_vec()).unwrap();
    (
        p,
        vec![
            ("w1".into(), w1),
            ("w2".into(), w2),
            ("w3".into(), w3),
            ("inline".into(), f32_bytes(&[5.0])),
        ],
    )
}

fn init<'a>(m: &'a Model, name: &str) -> &'a TensorData {
    m.graph
        .initializer(m.graph.find_value(name).unwrap())
        .unwrap()
}

fn constant_value(m: &Model) -> TensorData {
    let (_, n) = m
        .graph
        .nodes()
        .find(|(_, n)| n.op().op_type() == "Constant")
        .unwrap();
    match &n.attr("value").unwrap().value {
        qtool_ir::AttrValue::Tensor(t) => t.clone(),
        _ => panic!(),
    }
}

fn entries(p: &ModelProto, name: &str) -> Vec<(String, String)> {
    let g = p.graph.as_ref().unwrap();
    let t = g
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some(name))
        .unwrap();
    t.external_data
        .iter()
        .map(|e| (e.key.clone().unwrap(), e.value.clone().unwrap()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn load_save_reload_external() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let (_, expected) = write_external_model(src.path());
    let m = load(src.path().join("model.onnx")).unwrap();
    for (name, bytes) in &expected {
        assert_eq!(init(&m, name).raw().unwrap(), &bytes[..], "{name}");
    }
    assert!(matches!(init(&m, "w1").storage, Storage::External(_)));
    assert_eq!(constant_value(&m).raw().unwrap(), &f32_bytes(&[42.0])[..]);

    let out = dst.path().join("model.onnx");
    let opts = SaveOptions::new().with_source(src.path().join("model.onnx"));
    save(&m, &out, &opts).unwrap();
    // Files next to the destination, and no temp files left.
    let mut names: Vec<_> = std::fs::read_dir(dst.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["model.onnx", "sub", "weights.bin"]);
    // Offsets recomputed contiguously, entry order kept, absent entries added only when needed.
    let p = ModelProto::decode(&std::fs::read(&out).unwrap()[..]).unwrap();
    assert_eq!(
        entries(&p, "w1"),
        pairs(&[
            ("location", "weights.bin"),
            ("offset", "0"),
            ("length", "16"),
            ("checksum", "abc")
        ])
    );
    assert_eq!(
        entries(&p, "w2"),
        pairs(&[
            ("location", "weights.bin"),
            ("length", "8"),
            ("offset", "16")
        ])
    );
    assert_eq!(entries(&p, "w3"), pairs(&[("location", "./sub/other.bin")]));
    assert_eq!(
        std::fs::metadata(dst.path().join("weights.bin"))
            .unwrap()
            .len(),
        16 + 8 + 4
    );

    let back = load(&out).unwrap();
    for (name, bytes) in &expected {
        assert_eq!(
            init(&back, name).raw().unwrap(),
            &bytes[..],
            "{name} after reload"
        );
    }
    assert_eq!(
        constant_value(&back).raw().unwrap(),
        &f32_bytes(&[42.0])[..]
    );
    // Saving the reloaded model again gives the same files.
    let dst2 = tempfile::tempdir().unwrap();
    save(&back, dst2.path().join("model.onnx"), &SaveOptions::new()).unwrap();
    for f in ["model.onnx", "weights.bin", "sub/other.bin"] {
        assert_eq!(
            std::fs::read(dst.path().join(f)).unwrap(),
            std::fs::read(dst2.path().join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn never_overwrites_the_input() {
    let src = tempfile::tempdir().unwrap();
    write_external_model(src.path());
    let path = src.path().join("model.onnx");
    let before = std::fs::read(&path).unwrap();
    let before_w = std::fs::read(src.path().join("weights.bin")).unwrap();
    let m = load(&path).unwrap();
    let opts = SaveOptions::new().with_source(&path);
    let e = save(&m, &path, &opts).unwrap_err();
    assert!(matches!(e, SaveError::SameAsSource(_)), "{e:?}");
    // Through another spelling of the same path.
    let e = save(&m, src.path().join("sub/../model.onnx"), &opts).unwrap_err();
    assert!(matches!(e, SaveError::SameAsSource(_)), "{e:?}");
    // Another model file in the same directory would rewrite weights.bin: refused.
    let e = save(&m, src.path().join("copy.onnx"), &opts).unwrap_err();
    assert!(
        matches!(e, SaveError::WouldOverwriteSourceData { .. }),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("weights.bin") || e.to_string().contains("other.bin"),
        "{e}"
    );
    assert!(!src.path().join("copy.onnx").exists());
    // ... unless the data goes to a new file.
    let all = opts.clone().with_external(ExternalPolicy::All {
        file_name: "copy.data".into(),
        size_threshold: 0,
    });
    save(&m, src.path().join("copy.onnx"), &all).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(
        std::fs::read(src.path().join("weights.bin")).unwrap(),
        before_w
    );
    let copy = load(src.path().join("copy.onnx")).unwrap();
    assert_eq!(init(&copy, "w2").raw(), init(&m, "w2").raw());
    // A directory as destination.
    assert!(matches!(
        save(&m, src.path(), &SaveOptions::new()),
        Err(SaveError::IsADirectory(_))
    ));
}

fn single_external(dir: &Path, entries: &[(&str, &str)]) -> Result<Model, LoadError> {
    let mut g = graph("g", vec![], vec![], vec![]);
    g.initializer = vec![ext_tensor("w", &[2], entries)];
    let p = model(g);
    std::fs::write(dir.join("m.onnx"), p.encode_to_vec()).unwrap();
    load(dir.join("m.onnx"))
}

#[test]
fn external_errors_name_tensor_and_file() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(root.path().join("secret.bin"), [0u8; 8]).unwrap();
    std::fs::write(dir.join("w.bin"), [0u8; 12]).unwrap();

    let e = single_external(&dir, &[("location", "../secret.bin")]).unwrap_err();
    assert!(matches!(e, LoadError::ExternalEscapes { .. }), "{e:?}");
    assert!(
        e.to_string().contains("'w'") && e.to_string().contains("../secret.bin"),
        "{e}"
    );
    let abs = root.path().join("secret.bin").display().to_string();
    let e = single_external(&dir, &[("location", &abs)]).unwrap_err();
    assert!(matches!(e, LoadError::ExternalEscapes { .. }), "{e:?}");
    let e = single_external(&dir, &[("location", "sub/../../secret.bin")]).unwrap_err();
    assert!(matches!(e, LoadError::ExternalEscapes { .. }), "{e:?}");

    let e = single_external(&dir, &[("location", "missing.bin")]).unwrap_err();
    assert!(matches!(e, LoadError::ExternalIo { .. }), "{e:?}");
    assert!(
        e.to_string().contains("'w'") && e.to_string().contains("missing.bin"),
        "{e}"
    );

    let e = single_external(
        &dir,
        &[("location", "w.bin"), ("offset", "8"), ("length", "8")],
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            LoadError::ExternalOutOfRange {
                offset: 8,
                length: 8,
                file_len: 12,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("w.bin"));
    let e = single_external(
        &dir,
        &[
            ("location", "w.bin"),
            ("offset", "18446744073709551615"),
            ("length", "8"),
        ],
    )
    .unwrap_err();
    assert!(matches!(e, LoadError::ExternalOutOfRange { .. }), "{e:?}");
    // Whole file (12 bytes) for a 2-element f32 tensor (8 bytes).
    let e = single_external(&dir, &[("location", "w.bin")]).unwrap_err();
    assert!(matches!(e, LoadError::ExternalInvalid { .. }), "{e:?}");
    assert!(e.to_string().contains("need 8"), "{e}");
    let e = single_external(&dir, &[("location", "w.bin"), ("offset", "x")]).unwrap_err();
    assert!(matches!(e, LoadError::ExternalInvalid { .. }), "{e:?}");
    // Range within the file: fine.
    let m = single_external(
        &dir,
        &[("location", "w.bin"), ("offset", "4"), ("length", "8")],
    )
    .unwrap();
    assert_eq!(init(&m, "w").raw().unwrap().len(), 8);
    // No base directory.
    let bytes = std::fs::read(dir.join("m.onnx")).unwrap();
    let e = qtool_onnx::decode(&bytes, None).unwrap_err();
    assert!(matches!(e, LoadError::ExternalNoBaseDir { .. }), "{e:?}");
    assert!(qtool_onnx::decode(&bytes, Some(&dir)).is_ok());
}

/// A model with inline initializers of 4 KiB, 2 KiB and 512 bytes.
fn sized_model() -> ModelProto {
    let mut g = graph(
        "g",
        vec![node("Add", "a", &["big", "mid"], &["y"], vec![])],
        vec![],
        vec![vi("y", None)],
    );
    g.initializer = vec![
        raw_tensor("big", 2, &[4096], (0..4096).map(|i| i as u8).collect()),
        f32_tensor(
            "mid",
            &[512],
            &(0..512).map(|i| i as f32).collect::<Vec<_>>(),
        ),
        raw_tensor("small", 2, &[512], vec![7; 512]),
    ];
    model(g)
}

fn dir_listing(d: &Path) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn auto_external_when_over_the_limit() {
    let m = qtool_onnx::decode(&sized_model().encode_to_vec(), None).unwrap();
    let full = qtool_onnx::encode(&m).len() as u64;
    assert!(full > 6000);

    // Under the limit: everything inline (the estimate is conservative by a few bytes per tensor).
    let d = tempfile::tempdir().unwrap();
    save(
        &m,
        d.path().join("m.onnx"),
        &SaveOptions::new().with_proto_limit(full + 64),
    )
    .unwrap();
    assert_eq!(dir_listing(d.path()), ["m.onnx"]);
    assert_eq!(
        std::fs::read(d.path().join("m.onnx")).unwrap(),
        qtool_onnx::encode(&m)
    );

    // Just over: initializers above 1 KiB move to m.onnx.data; the small one stays inline.
    for policy in [ExternalPolicy::Keep, ExternalPolicy::Auto] {
        let d = tempfile::tempdir().unwrap();
        let limit = full - 1;
        save(
            &m,
            d.path().join("m.onnx"),
            &SaveOptions::new()
                .with_proto_limit(limit)
                .with_external(policy.clone()),
        )
        .unwrap();
        assert_eq!(
            dir_listing(d.path()),
            ["m.onnx", "m.onnx.data"],
            "{policy:?}"
        );
        let size = std::fs::metadata(d.path().join("m.onnx")).unwrap().len();
        assert!(size <= limit && size < 2000, "{size}");
        assert_eq!(
            std::fs::metadata(d.path().join("m.onnx.data"))
                .unwrap()
                .len(),
            4096 + 2048
        );
        let back = load(d.path().join("m.onnx")).unwrap();
        for name in ["big", "mid", "small"] {
            assert_eq!(init(&back, name).raw(), init(&m, name).raw(), "{name}");
        }
        assert!(matches!(init(&back, "big").storage, Storage::External(_)));
        assert!(matches!(init(&back, "mid").storage, Storage::External(_)));
        assert_eq!(init(&back, "small").storage, Storage::Raw);
        let p = ModelProto::decode(&std::fs::read(d.path().join("m.onnx")).unwrap()[..]).unwrap();
        assert_eq!(
            entries(&p, "big"),
            pairs(&[("location", "m.onnx.data"), ("length", "4096")])
        );
        assert_eq!(
            entries(&p, "mid"),
            pairs(&[
                ("location", "m.onnx.data"),
                ("offset", "4096"),
                ("length", "2048")
            ])
        );

        // Auto brings external data back inline when the model fits.
        if policy == ExternalPolicy::Auto {
            let d2 = tempfile::tempdir().unwrap();
            save(
                &back,
                d2.path().join("n.onnx"),
                &SaveOptions::new().with_external(ExternalPolicy::Auto),
            )
            .unwrap();
            assert_eq!(dir_listing(d2.path()), ["n.onnx"]);
            let n = load(d2.path().join("n.onnx")).unwrap();
            assert_eq!(init(&n, "big").storage, Storage::Raw);
            assert_eq!(init(&n, "big").raw(), init(&m, "big").raw());
        }
    }

    // Too small a limit even with external data.
    let d = tempfile::tempdir().unwrap();
    let e = save(
        &m,
        d.path().join("m.onnx"),
        &SaveOptions::new().with_proto_limit(100),
    )
    .unwrap_err();
    assert!(matches!(e, SaveError::TooLarge { limit: 100, .. }), "{e:?}");
    assert!(dir_listing(d.path()).is_empty());
}

#[test]
fn all_policy_with_threshold() {
    let m = qtool_onnx::decode(&sized_model().encode_to_vec(), None).unwrap();
    let d = tempfile::tempdir().unwrap();
    let policy = ExternalPolicy::All {
        file_name: "weights/all.bin".into(),
        size_threshold: 512,
    };
    save(
        &m,
        d.path().join("m.onnx"),
        &SaveOptions::new().with_external(policy),
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(d.path().join("weights/all.bin"))
            .unwrap()
            .len(),
        4096 + 2048 + 512
    );
    let back = load(d.path().join("m.onnx")).unwrap();
    for name in ["big", "mid", "small"] {
        assert!(
            matches!(init(&back, name).storage, Storage::External(_)),
            "{name}"
        );
        assert_eq!(init(&back, name).raw(), init(&m, name).raw());
    }
    // Escaping or model-named external files are refused before anything is written.
    for bad in ["../x.bin", "/tmp/x.bin", "m.onnx"] {
        let d = tempfile::tempdir().unwrap();
        let policy = ExternalPolicy::All {
            file_name: bad.into(),
            size_threshold: 0,
        };
        let e = save(
            &m,
            d.path().join("m.onnx"),
            &SaveOptions::new().with_external(policy),
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                SaveError::InvalidLocation { .. } | SaveError::LocationIsModel { .. }
            ),
            "{bad}: {e:?}"
        );
        assert!(dir_listing(d.path()).is_empty(), "{bad}");
    }
}

#[test]
fn encode_keeps_external_references() {
    let src = tempfile::tempdir().unwrap();
    let (p, _) = write_external_model(src.path());
    let m = load(src.path().join("model.onnx")).unwrap();
    // encode() writes the references as they were: the message is the original one.
    assert_eq!(ModelProto::decode(&qtool_onnx::encode(&m)[..]).unwrap(), p);
}
