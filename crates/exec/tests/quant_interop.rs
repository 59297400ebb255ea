//! Interop with ONNX Runtime: random QLinearConv, ConvInteger, MatMulInteger and QLinearMatMul
//! problems (and the com.microsoft QLinear ops) run in ORT (`xtask/python/ort_run.py`) and in qtool,
//! integer outputs compared EXACTLY.
//!
//! A difference is *explained by the contract* only when it is 1 LSB on an element whose exact f32
//! value `acc * multiplier` lies within 2^-10 of a rounding tie (ORT's fused and unfused paths may
//! round such values differently, microsoft/onnxruntime#32132). The test prints the counts of
//! differing elements per op and fails on any unexplained difference.
//!
//! Needs the reference Python (`qtool_testkit::reference_python`); skips (with a note) without it.

use qtool_exec::{ExecOptions, Executor};
use qtool_ir::{
    AttrValue, Attribute, Dim, Graph, Model, Node, OpsetId, TensorData, TensorType, Type, TypeKind,
    ValueId, ValueInfo,
};
use qtool_kernels::ConvParams;
use qtool_kernels::int8::reference::qconv_reference;
use qtool_tensor::{DType, Tensor};
use qtool_testkit::Rng;
use std::path::Path;

/// What the comparison needs to explain a difference: per output element, the f32 value that was
/// rounded (`acc * multiplier` before the output zero point), or None for raw i32 outputs.
struct Problem {
    name: String,
    node: Node,
    /// (name, tensor, is_initializer)
    inputs: Vec<(String, Tensor, bool)>,
    out_dtype: DType,
    /// The value rounded for each output element (requantized ops).
    pre_round: Option<Vec<f32>>,
}

fn ty(d: DType, shape: Option<&[usize]>) -> Type {
    Type {
        kind: TypeKind::Tensor(TensorType {
            elem: Some(d),
            shape: shape.map(|s| s.iter().map(|&v| Dim::known(v as i64)).collect()),
        }),
        denotation: None,
    }
}

/// One model holding every problem as its own node.
fn build_model(problems: &[Problem]) -> Model {
    let mut g = Graph::new("interop");
    for (pi, p) in problems.iter().enumerate() {
        let mut ins: Vec<Option<ValueId>> = Vec::new();
        for (n, t, init) in &p.inputs {
            if n.is_empty() {
                ins.push(None);
                continue;
            }
            let name = format!("p{pi}_{n}");
            let v = if *init {
                g.add_initializer(&name, TensorData::from_tensor(t))
                    .unwrap()
            } else {
                let v = g.add_value(&name).unwrap();
                g.inputs
                    .push((v, ValueInfo::of_type(ty(t.dtype(), Some(t.shape())))));
                v
            };
            ins.push(Some(v));
        }
        let y = g.add_value(&format!("p{pi}_y")).unwrap();
        let mut node = p.node.clone();
        node.name = Some(format!("p{pi}_{}", p.name));
        g.add_node(node, &ins, &[Some(y)]).unwrap();
        g.outputs
            .push((y, ValueInfo::of_type(ty(p.out_dtype, None))));
    }
    Model {
        ir_version: Some(10),
        opset_import: vec![
            OpsetId {
                domain: None,
                version: Some(21),
            },
            OpsetId {
                domain: Some("com.microsoft".into()),
                version: Some(1),
            },
        ],
        graph: g,
        ..Default::default()
    }
}

fn run_ort(
    py: &Path,
    dir: &Path,
    tag: &str,
    model: &Model,
    feeds: &[(String, Tensor)],
) -> Result<Vec<(String, Tensor)>, String> {
    let mp = dir.join(format!("{tag}.onnx"));
    std::fs::write(&mp, qtool_onnx::encode(model)).unwrap();
    let ip = dir.join(format!("{tag}_in.npz"));
    qtool_data::npz::write_npz(feeds, std::fs::File::create(&ip).unwrap()).unwrap();
    let op = dir.join(format!("{tag}_out.npz"));
    let out = qtool_testkit::python_script(py, "ort_run.py")
        .arg(&mp)
        .arg("--inputs")
        .arg(&ip)
        .arg("--out")
        .arg(&op)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .join(" | "));
    }
    qtool_data::npz::read_npz(std::fs::File::open(&op).unwrap(), "ort output")
        .map_err(|e| e.to_string())
}

#[derive(Default, Debug)]
struct Tally {
    problems: usize,
    exact: usize,
    elements: usize,
    diff: usize,
    explained: usize,
}

/// Runs a set of problems in both engines and tallies the comparison. Returns false if ORT
/// rejected the model.
fn compare(
    py: &Path,
    dir: &Path,
    tag: &str,
    problems: &[Problem],
    tally: &mut Tally,
    unexplained: &mut Vec<String>,
) -> bool {
    let model = build_model(problems);
    let feeds: Vec<(String, Tensor)> = problems
        .iter()
        .enumerate()
        .flat_map(|(pi, p)| {
            p.inputs
                .iter()
                .filter(|(n, _, init)| !n.is_empty() && !init)
                .map(move |(n, t, _)| (format!("p{pi}_{n}"), t.clone()))
        })
        .collect();
    let ort = match run_ort(py, dir, tag, &model, &feeds) {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "NOTE: ONNX Runtime rejected the {tag} model ({e}); these problems are skipped"
            );
            return false;
        }
    };
    let ex = Executor::new(&model, ExecOptions { threads: Some(2) }).unwrap();
    assert!(
        !ex.prepared_nodes().is_empty() || tag.starts_with("contrib"),
        "{tag}: constant weights should be packed at build time"
    );
    let ours = ex.run(feeds).unwrap();
    for (pi, p) in problems.iter().enumerate() {
        let name = format!("p{pi}_y");
        let want = &ort.iter().find(|(n, _)| *n == name).expect("ORT output").1;
        let got = &ours
            .iter()
            .find(|(n, _)| *n == name)
            .expect("qtool output")
            .1;
        assert_eq!(got.dtype(), want.dtype(), "{tag}/{}: dtype", p.name);
        assert_eq!(got.shape(), want.shape(), "{tag}/{}: shape", p.name);
        let (g, w): (Vec<i64>, Vec<i64>) = if want.dtype() == DType::F32 {
            // Float outputs (QGemm without y_scale, DynamicQuantizeMatMul, MatMulIntegerToFloat):
            // compared bit for bit.
            let bits = |t: &Tensor| {
                t.to_vec::<f32>()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits() as i64)
                    .collect()
            };
            (bits(got), bits(want))
        } else {
            (got.to_i64_vec().unwrap(), want.to_i64_vec().unwrap())
        };
        tally.problems += 1;
        tally.elements += g.len();
        let mut nd = 0;
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            if a == b {
                continue;
            }
            nd += 1;
            let tie = p.pre_round.as_ref().is_some_and(|v| {
                let f = v[i].abs().fract();
                (f - 0.5).abs() <= 1.0 / 1024.0
            });
            if (a - b).abs() == 1 && tie {
                tally.explained += 1;
            } else {
                unexplained.push(format!(
                    "{tag}/{} element {i}: qtool {a}, ORT {b}{}",
                    p.name,
                    p.pre_round
                        .as_ref()
                        .map(|v| format!(" (value {})", v[i]))
                        .unwrap_or_default()
                ));
            }
        }
        tally.diff += nd;
        if nd == 0 {
            tally.exact += 1;
        }
    }
    true
}

fn q8(rng: &mut Rng, dt: DType, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    match dt {
        DType::U8 => {
            Tensor::from_vec(shape, (0..n).map(|_| rng.int(0, 255) as u8).collect()).unwrap()
        }
        _ => Tensor::from_vec(shape, (0..n).map(|_| rng.int(-128, 127) as i8).collect()).unwrap(),
    }
}

fn zp_tensor(dt: DType, v: &[i32], scalar: bool) -> Tensor {
    let shape: Vec<usize> = if scalar { vec![] } else { vec![v.len()] };
    match dt {
        DType::U8 => Tensor::from_vec(&shape, v.iter().map(|&x| x as u8).collect()).unwrap(),
        _ => Tensor::from_vec(&shape, v.iter().map(|&x| x as i8).collect()).unwrap(),
    }
}

fn f32s(v: &[f32], scalar: bool) -> Tensor {
    if scalar {
        Tensor::scalar(v[0])
    } else {
        Tensor::from_vec(&[v.len()], v.to_vec()).unwrap()
    }
}

fn rand_zp(rng: &mut Rng, dt: DType) -> i32 {
    match dt {
        DType::U8 => rng.int(0, 255) as i32,
        _ => rng.int(-128, 127) as i32,
    }
}

fn ints_attr(name: &str, v: &[usize]) -> Attribute {
    Attribute::new(name, AttrValue::Ints(v.iter().map(|&x| x as i64).collect()))
}

fn as_i32(t: &Tensor) -> Vec<i32> {
    t.to_i64_vec()
        .unwrap()
        .into_iter()
        .map(|v| v as i32)
        .collect()
}

/// The exact i32 accumulators of a conv via the kernels' reference oracle.
fn conv_acc(
    x: &Tensor,
    zx: i32,
    w: &Tensor,
    zw: &[i32],
    p: &ConvParams,
    out_len: usize,
) -> Vec<i32> {
    let mut out = vec![0i32; out_len];
    macro_rules! go {
        ($X:ty, $W:ty) => {
            qconv_reference::<$X, $W>(
                &x.to_vec::<$X>().unwrap(),
                x.shape(),
                zx,
                &w.to_vec::<$W>().unwrap(),
                w.shape(),
                zw,
                p,
                &mut out,
            )
            .unwrap()
        };
    }
    match (x.dtype(), w.dtype()) {
        (DType::U8, DType::U8) => go!(u8, u8),
        (DType::U8, _) => go!(u8, i8),
        (_, DType::U8) => go!(i8, u8),
        _ => go!(i8, i8),
    }
    out
}

struct ConvCase {
    x: [usize; 4],
    m: usize,
    k: [usize; 2],
    group: usize,
    stride: [usize; 2],
    pads: [usize; 4],
    dil: [usize; 2],
}

fn conv_cases() -> Vec<ConvCase> {
    let c = |x, m, k, group, stride, pads, dil| ConvCase {
        x,
        m,
        k,
        group,
        stride,
        pads,
        dil,
    };
    vec![
        c([1, 3, 8, 8], 4, [3, 3], 1, [1, 1], [1, 1, 1, 1], [1, 1]),
        c([2, 8, 9, 7], 8, [3, 3], 2, [2, 2], [1, 0, 1, 2], [1, 1]),
        c([1, 6, 10, 10], 12, [3, 3], 6, [1, 1], [1, 1, 1, 1], [1, 1]),
        c([1, 16, 5, 5], 8, [1, 1], 1, [1, 1], [0, 0, 0, 0], [1, 1]),
        c([1, 4, 12, 12], 6, [3, 3], 1, [1, 1], [2, 2, 2, 2], [2, 2]),
        c([1, 64, 8, 8], 32, [3, 3], 1, [1, 1], [1, 1, 1, 1], [1, 1]),
        c([1, 8, 11, 11], 8, [5, 5], 8, [2, 2], [2, 2, 2, 2], [1, 1]),
        c([1, 5, 7, 9], 7, [2, 3], 1, [1, 2], [0, 0, 0, 0], [1, 1]),
    ]
}

fn conv_geometry(cc: &ConvCase) -> (ConvParams, Vec<usize>, Vec<usize>) {
    let p = ConvParams {
        strides: cc.stride.to_vec(),
        dilations: cc.dil.to_vec(),
        pads: cc.pads.to_vec(),
        group: cc.group,
    };
    let w_shape = vec![cc.m, cc.x[1] / cc.group, cc.k[0], cc.k[1]];
    let out = qtool_kernels::conv_output_shape(&cc.x, &w_shape, &p).unwrap();
    (p, w_shape, out)
}

fn conv_attrs(cc: &ConvCase) -> Vec<Attribute> {
    vec![
        ints_attr("strides", &cc.stride),
        ints_attr("pads", &cc.pads),
        ints_attr("dilations", &cc.dil),
        Attribute::new("group", AttrValue::Int(cc.group as i64)),
    ]
}

fn qlinear_conv_problems(rng: &mut Rng) -> Vec<Problem> {
    let mut v = Vec::new();
    for (ci, cc) in conv_cases().iter().enumerate() {
        for (xd, wd, per_channel) in [
            (DType::U8, DType::I8, true),
            (DType::U8, DType::U8, false),
            (DType::I8, DType::I8, ci % 2 == 0),
        ] {
            let (p, w_shape, out_shape) = conv_geometry(cc);
            let x = q8(rng, xd, &cc.x);
            let w = q8(rng, wd, &w_shape);
            let nch = if per_channel { cc.m } else { 1 };
            let xs = rng.uniform(0.01, 0.05);
            let ws: Vec<f32> = (0..nch).map(|_| rng.uniform(0.001, 0.01)).collect();
            let zx = rand_zp(rng, xd);
            let zw: Vec<i32> = (0..nch)
                .map(|_| {
                    if wd == DType::I8 && per_channel {
                        0
                    } else {
                        rand_zp(rng, wd)
                    }
                })
                .collect();
            let kk = (w_shape[1] * w_shape[2] * w_shape[3]) as f32;
            let ys = xs * ws[0] * kk.sqrt() * 40.0;
            let zy = rand_zp(rng, xd);
            let bias: Vec<i32> = (0..cc.m).map(|_| rng.int(-3000, 3000) as i32).collect();
            let n_out: usize = out_shape.iter().product();
            let acc = conv_acc(&x, zx, &w, &zw, &p, n_out);
            let osz: usize = out_shape[2..].iter().product();
            let pre: Vec<f32> = acc
                .iter()
                .enumerate()
                .map(|(i, &a)| {
                    let c = (i / osz) % cc.m;
                    let m = (xs * ws[if nch == 1 { 0 } else { c }]) / ys;
                    a.wrapping_add(bias[c]) as f32 * m
                })
                .collect();
            let node = Node::imported(None, "QLinearConv", conv_attrs(cc));
            v.push(Problem {
                name: format!(
                    "qlinearconv{ci}_{xd}_{wd}{}",
                    if per_channel { "_pc" } else { "" }
                ),
                node,
                inputs: vec![
                    ("x".into(), x, false),
                    ("xs".into(), Tensor::scalar(xs), true),
                    ("zx".into(), zp_tensor(xd, &[zx], true), true),
                    ("w".into(), w, true),
                    ("ws".into(), f32s(&ws, !per_channel), true),
                    ("zw".into(), zp_tensor(wd, &zw, !per_channel), true),
                    ("ys".into(), Tensor::scalar(ys), true),
                    ("zy".into(), zp_tensor(xd, &[zy], true), true),
                    ("b".into(), Tensor::from_vec(&[cc.m], bias).unwrap(), true),
                ],
                out_dtype: xd,
                pre_round: Some(pre),
            });
        }
    }
    v
}

fn conv_integer_problems(rng: &mut Rng, padded: bool) -> Vec<Problem> {
    let mut v = Vec::new();
    for (ci, cc) in conv_cases().iter().enumerate() {
        if cc.pads.iter().any(|&p| p > 0) != padded {
            continue;
        }
        for wd in [DType::I8, DType::U8] {
            let (_, w_shape, _) = conv_geometry(cc);
            let x = q8(rng, DType::U8, &cc.x);
            let w = q8(rng, wd, &w_shape);
            let zx = rand_zp(rng, DType::U8);
            let zw = rand_zp(rng, wd);
            v.push(Problem {
                name: format!("convinteger{ci}_{wd}"),
                node: Node::imported(None, "ConvInteger", conv_attrs(cc)),
                inputs: vec![
                    ("x".into(), x, false),
                    ("w".into(), w, true),
                    ("zx".into(), zp_tensor(DType::U8, &[zx], true), true),
                    ("zw".into(), zp_tensor(wd, &[zw], true), true),
                ],
                out_dtype: DType::I32,
                pre_round: None,
            });
        }
    }
    v
}

/// (A shape, B shape) pairs with MatMul broadcasting.
fn mm_shapes() -> Vec<(Vec<usize>, Vec<usize>)> {
    vec![
        (vec![7, 33], vec![33, 19]),
        (vec![1, 256], vec![256, 64]),
        (vec![2, 3, 5, 16], vec![16, 40]),
        (vec![64, 70], vec![70, 33]),
        (vec![2, 4, 9], vec![2, 9, 6]),
        (vec![3, 1, 4, 8], vec![2, 8, 5]),
    ]
}

fn mm_acc(a: &Tensor, za: i32, b: &Tensor, zb: &[i32]) -> Vec<i32> {
    // Broadcast batches by hand (the cases above), 2-D B folded.
    let (ash, bsh) = (a.shape().to_vec(), b.shape().to_vec());
    let (m, k) = (ash[ash.len() - 2], ash[ash.len() - 1]);
    let n = bsh[bsh.len() - 1];
    let ab = &ash[..ash.len() - 2];
    let bb = &bsh[..bsh.len() - 2];
    let r = ab.len().max(bb.len());
    let pad = |s: &[usize]| [vec![1; r - s.len()], s.to_vec()].concat();
    let (pa, pb) = (pad(ab), pad(bb));
    let batch: Vec<usize> = pa.iter().zip(&pb).map(|(x, y)| *x.max(y)).collect();
    let nb: usize = batch.iter().product();
    let av = as_i32(a);
    let bv = as_i32(b);
    let mut out = vec![0i32; nb * m * n];
    for bi in 0..nb {
        let (mut rem, mut oa, mut ob, mut sa, mut sb) = (bi, 0, 0, 1, 1);
        for d in (0..r).rev() {
            let i = rem % batch[d];
            rem /= batch[d];
            if pa[d] != 1 {
                oa += i * sa;
            }
            if pb[d] != 1 {
                ob += i * sb;
            }
            sa *= pa[d];
            sb *= pb[d];
        }
        for i in 0..m {
            for j in 0..n {
                let mut s = 0i32;
                for kk in 0..k {
                    let x = av[oa * m * k + i * k + kk] - za;
                    let y = bv[ob * k * n + kk * n + j] - zb[if zb.len() == 1 { 0 } else { j }];
                    s = s.wrapping_add(x * y);
                }
                out[bi * m * n + i * n + j] = s;
            }
        }
    }
    out
}

fn matmul_problems(rng: &mut Rng, qlinear: bool) -> Vec<Problem> {
    let mut v = Vec::new();
    for (si, (ash, bsh)) in mm_shapes().into_iter().enumerate() {
        for (ad, bd, per_col) in [
            (DType::U8, DType::I8, true),
            (DType::U8, DType::U8, false),
            (DType::I8, DType::I8, si % 2 == 1),
        ] {
            // Per-column b parameters on a 2-D B only: ORT wants [..., 1, N] ones for a batched B.
            let per_col = per_col && bsh.len() == 2;
            let n = bsh[bsh.len() - 1];
            let k = bsh[bsh.len() - 2];
            let a = q8(rng, ad, &ash);
            let b = q8(rng, bd, &bsh);
            let nz = if per_col { n } else { 1 };
            let za = rand_zp(rng, ad);
            let zb: Vec<i32> = (0..nz).map(|_| rand_zp(rng, bd)).collect();
            let b_const = bsh.len() == 2;
            let acc = mm_acc(&a, za, &b, &zb);
            if !qlinear {
                v.push(Problem {
                    name: format!(
                        "matmulinteger{si}_{ad}_{bd}{}",
                        if per_col { "_pc" } else { "" }
                    ),
                    node: Node::imported(None, "MatMulInteger", vec![]),
                    inputs: vec![
                        ("a".into(), a, false),
                        ("b".into(), b, b_const),
                        ("za".into(), zp_tensor(ad, &[za], true), true),
                        ("zb".into(), zp_tensor(bd, &zb, !per_col), true),
                    ],
                    out_dtype: DType::I32,
                    pre_round: None,
                });
                continue;
            }
            let as_ = rng.uniform(0.01, 0.05);
            let bs: Vec<f32> = (0..nz).map(|_| rng.uniform(0.001, 0.01)).collect();
            let ys = as_ * bs[0] * (k as f32).sqrt() * 40.0;
            let zy = rand_zp(rng, ad);
            let pre: Vec<f32> = acc
                .iter()
                .enumerate()
                .map(|(i, &x)| x as f32 * ((as_ * bs[if nz == 1 { 0 } else { i % n }]) / ys))
                .collect();
            v.push(Problem {
                name: format!(
                    "qlinearmatmul{si}_{ad}_{bd}{}",
                    if per_col { "_pc" } else { "" }
                ),
                node: Node::imported(None, "QLinearMatMul", vec![]),
                inputs: vec![
                    ("a".into(), a, false),
                    ("as".into(), Tensor::scalar(as_), true),
                    ("za".into(), zp_tensor(ad, &[za], true), true),
                    ("b".into(), b, b_const),
                    ("bs".into(), f32s(&bs, !per_col), true),
                    ("zb".into(), zp_tensor(bd, &zb, !per_col), true),
                    ("ys".into(), Tensor::scalar(ys), true),
                    ("zy".into(), zp_tensor(ad, &[zy], true), true),
                ],
                out_dtype: ad,
                pre_round: Some(pre),
            });
        }
    }
    v
}

/// The com.microsoft QLinear ops ORT's quantizer writes (exact comparison, no tie model: their
/// formulas are ORT's own, see ops/quant/contrib.rs).
fn contrib_problems(rng: &mut Rng) -> Vec<Problem> {
    let mut v = Vec::new();
    let ms =
        |op: &str, attrs: Vec<Attribute>| Node::imported(Some("com.microsoft".into()), op, attrs);
    for dt in [DType::U8, DType::I8] {
        for (si, (sa, sb)) in [
            (vec![4, 37], vec![4, 37]),
            (vec![2, 8, 5, 5], vec![1, 8, 1, 1]),
            (vec![3, 5, 7], vec![7]),
            (vec![64], vec![1]),
            (vec![1], vec![5, 6]),
        ]
        .into_iter()
        .enumerate()
        {
            for op in ["QLinearAdd", "QLinearMul"] {
                let s: Vec<f32> = (0..3).map(|_| rng.uniform(0.005, 0.1)).collect();
                let sc = if op == "QLinearMul" {
                    s[2] * 0.05
                } else {
                    s[2]
                };
                let z: Vec<i32> = (0..3).map(|_| rand_zp(rng, dt)).collect();
                v.push(Problem {
                    name: format!("{op}{si}_{dt}"),
                    node: ms(op, vec![]),
                    inputs: vec![
                        ("a".into(), q8(rng, dt, &sa), false),
                        ("as".into(), Tensor::scalar(s[0]), true),
                        ("za".into(), zp_tensor(dt, &[z[0]], true), true),
                        ("b".into(), q8(rng, dt, &sb), false),
                        ("bs".into(), Tensor::scalar(s[1]), true),
                        ("zb".into(), zp_tensor(dt, &[z[1]], true), true),
                        ("cs".into(), Tensor::scalar(sc), true),
                        ("zc".into(), zp_tensor(dt, &[z[2]], true), true),
                    ],
                    out_dtype: dt,
                    pre_round: None,
                });
            }
        }
        for (op, attrs) in [
            ("QLinearSigmoid", vec![]),
            (
                "QLinearLeakyRelu",
                vec![Attribute::new("alpha", AttrValue::Float(0.1))],
            ),
        ] {
            for trial in 0..3 {
                let x = q8(rng, dt, &[2, 300]);
                let (xs, ys) = (
                    rng.uniform(0.01, 0.1),
                    rng.uniform(0.002, 0.01) * if trial == 0 { 0.5 } else { 1.0 },
                );
                let (zx, zy) = (rand_zp(rng, dt), rand_zp(rng, dt));
                v.push(Problem {
                    name: format!("{op}{trial}_{dt}"),
                    node: ms(op, attrs.clone()),
                    inputs: vec![
                        ("x".into(), x, false),
                        ("xs".into(), Tensor::scalar(xs), true),
                        ("zx".into(), zp_tensor(dt, &[zx], true), true),
                        ("ys".into(), Tensor::scalar(ys), true),
                        ("zy".into(), zp_tensor(dt, &[zy], true), true),
                    ],
                    out_dtype: dt,
                    pre_round: None,
                });
            }
        }
        for (ci, cl) in [0i64, 1].into_iter().enumerate() {
            let x = q8(rng, dt, &[2, 5, 6, 7]);
            let (xs, ys) = (rng.uniform(0.01, 0.1), rng.uniform(0.01, 0.1));
            let (zx, zy) = (rand_zp(rng, dt), rand_zp(rng, dt));
            v.push(Problem {
                name: format!("QLinearGlobalAveragePool{ci}_{dt}"),
                node: ms(
                    "QLinearGlobalAveragePool",
                    vec![Attribute::new("channels_last", AttrValue::Int(cl))],
                ),
                inputs: vec![
                    ("x".into(), x, false),
                    ("xs".into(), Tensor::scalar(xs), true),
                    ("zx".into(), zp_tensor(dt, &[zx], true), true),
                    ("ys".into(), Tensor::scalar(ys), true),
                    ("zy".into(), zp_tensor(dt, &[zy], true), true),
                ],
                out_dtype: dt,
                pre_round: None,
            });
        }
        for (pi, (k, s, p, cip)) in [
            ([3, 3], [1, 1], [1, 1, 1, 1], 0i64),
            ([2, 2], [2, 2], [0, 0, 0, 0], 0),
            ([3, 3], [2, 2], [1, 1, 1, 1], 1),
        ]
        .into_iter()
        .enumerate()
        {
            let x = q8(rng, dt, &[1, 3, 9, 9]);
            let (xs, ys) = (rng.uniform(0.01, 0.1), rng.uniform(0.01, 0.1));
            let (zx, zy) = (rand_zp(rng, dt), rand_zp(rng, dt));
            v.push(Problem {
                name: format!("QLinearAveragePool{pi}_{dt}"),
                node: ms(
                    "QLinearAveragePool",
                    vec![
                        ints_attr("kernel_shape", &k),
                        ints_attr("strides", &s),
                        ints_attr("pads", &p),
                        Attribute::new("count_include_pad", AttrValue::Int(cip)),
                    ],
                ),
                inputs: vec![
                    ("x".into(), x, false),
                    ("xs".into(), Tensor::scalar(xs), true),
                    ("zx".into(), zp_tensor(dt, &[zx], true), true),
                    ("ys".into(), Tensor::scalar(ys), true),
                    ("zy".into(), zp_tensor(dt, &[zy], true), true),
                ],
                out_dtype: dt,
                pre_round: None,
            });
        }
        for (gi, (m, k, n, tb, quantized)) in [
            (5, 40, 12, false, true),
            (3, 64, 20, true, true),
            (6, 30, 9, false, false),
            (4, 17, 8, true, false),
        ]
        .into_iter()
        .enumerate()
        {
            let a = q8(rng, dt, &[m, k]);
            let b = q8(rng, DType::I8, &if tb { [n, k] } else { [k, n] });
            let as_ = rng.uniform(0.01, 0.05);
            let bs: Vec<f32> = (0..n).map(|_| rng.uniform(0.001, 0.01)).collect();
            let za = rand_zp(rng, dt);
            let c: Vec<i32> = (0..n).map(|_| rng.int(-2000, 2000) as i32).collect();
            let mut inputs = vec![
                ("a".into(), a, false),
                ("as".into(), Tensor::scalar(as_), true),
                ("za".into(), zp_tensor(dt, &[za], true), true),
                ("b".into(), b, true),
                ("bs".into(), f32s(&bs, false), true),
                ("zb".into(), zp_tensor(DType::I8, &vec![0; n], false), true),
                ("c".into(), Tensor::from_vec(&[n], c).unwrap(), true),
            ];
            if quantized {
                inputs.push((
                    "ys".into(),
                    Tensor::scalar(as_ * bs[0] * (k as f32).sqrt() * 30.0),
                    true,
                ));
                inputs.push(("zy".into(), zp_tensor(dt, &[rand_zp(rng, dt)], true), true));
            }
            v.push(Problem {
                name: format!("QGemm{gi}_{dt}"),
                node: ms(
                    "QGemm",
                    vec![
                        Attribute::new("transB", AttrValue::Int(tb as i64)),
                        Attribute::new("alpha", AttrValue::Float(if gi == 1 { 0.5 } else { 1.0 })),
                    ],
                ),
                inputs,
                out_dtype: if quantized { dt } else { DType::F32 },
                pre_round: None,
            });
        }
        for (si, shape) in [vec![3, 10], vec![2, 4, 17], vec![4, 300]]
            .into_iter()
            .enumerate()
        {
            let x = q8(rng, dt, &shape);
            let xs = rng.uniform(0.02, 0.2);
            let zx = rand_zp(rng, dt);
            let (ys, zy) = if si == 0 {
                (1.0f32 / 256.0, if dt == DType::U8 { 0 } else { -128 })
            } else {
                (rng.uniform(0.003, 0.01), rand_zp(rng, dt))
            };
            v.push(Problem {
                name: format!("QLinearSoftmax{si}_{dt}"),
                node: ms(
                    "QLinearSoftmax",
                    vec![
                        Attribute::new("axis", AttrValue::Int(-1)),
                        Attribute::new("opset", AttrValue::Int(13)),
                    ],
                ),
                inputs: vec![
                    ("x".into(), x, false),
                    ("xs".into(), Tensor::scalar(xs), true),
                    ("zx".into(), zp_tensor(dt, &[zx], true), true),
                    ("ys".into(), Tensor::scalar(ys), true),
                    ("zy".into(), zp_tensor(dt, &[zy], true), true),
                ],
                out_dtype: dt,
                pre_round: None,
            });
        }
        {
            let (m, k, n) = (6, 24, 10);
            let bs: Vec<f32> = (0..n).map(|_| rng.uniform(0.001, 0.01)).collect();
            let bias: Vec<f32> = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let b = q8(rng, DType::I8, &[k, n]);
            v.push(Problem {
                name: format!("DynamicQuantizeMatMul_{dt}"),
                node: ms("DynamicQuantizeMatMul", vec![]),
                inputs: vec![
                    ("a".into(), rng.tensor_f32(&[m, k], -2.0, 3.0), false),
                    ("b".into(), b.clone(), true),
                    ("bs".into(), f32s(&bs, false), true),
                    ("zb".into(), zp_tensor(DType::I8, &vec![0; n], false), true),
                    (
                        "bias".into(),
                        Tensor::from_vec(&[n], bias.clone()).unwrap(),
                        true,
                    ),
                ],
                out_dtype: DType::F32,
                pre_round: None,
            });
            v.push(Problem {
                name: format!("MatMulIntegerToFloat_{dt}"),
                node: ms("MatMulIntegerToFloat", vec![]),
                inputs: vec![
                    ("a".into(), q8(rng, dt, &[m, k]), false),
                    ("b".into(), b, true),
                    ("as".into(), Tensor::scalar(rng.uniform(0.01, 0.05)), true),
                    ("bs".into(), f32s(&bs, false), true),
                    ("za".into(), zp_tensor(dt, &[rand_zp(rng, dt)], true), true),
                    ("zb".into(), zp_tensor(DType::I8, &vec![0; n], false), true),
                    ("bias".into(), Tensor::from_vec(&[n], bias).unwrap(), true),
                ],
                out_dtype: DType::F32,
                pre_round: None,
            });
        }
        {
            let ys = rng.uniform(0.01, 0.1);
            let zy = rand_zp(rng, dt);
            let mut inputs = vec![
                ("ys".into(), Tensor::scalar(ys), true),
                ("zy".into(), zp_tensor(dt, &[zy], true), true),
            ];
            for i in 0..3 {
                let (xs, zx) = if i == 1 {
                    (ys, zy)
                } else {
                    (rng.uniform(0.01, 0.1), rand_zp(rng, dt))
                };
                inputs.push((format!("x{i}"), q8(rng, dt, &[2, 3 + i, 4]), false));
                inputs.push((format!("xs{i}"), Tensor::scalar(xs), true));
                inputs.push((format!("zx{i}"), zp_tensor(dt, &[zx], true), true));
            }
            v.push(Problem {
                name: format!("QLinearConcat_{dt}"),
                node: ms(
                    "QLinearConcat",
                    vec![Attribute::new("axis", AttrValue::Int(1))],
                ),
                inputs,
                out_dtype: dt,
                pre_round: None,
            });
        }
    }
    v
}

#[test]
fn quantized_ops_match_onnx_runtime_exactly() {
    let Some(py) = qtool_testkit::reference_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(20240611);
    let mut unexplained = Vec::new();
    let sets: Vec<(&str, Vec<Problem>)> = vec![
        ("qlinearconv", qlinear_conv_problems(&mut rng)),
        ("convinteger", conv_integer_problems(&mut rng, false)),
        ("convinteger_padded", conv_integer_problems(&mut rng, true)),
        ("matmulinteger", matmul_problems(&mut rng, false)),
        ("qlinearmatmul", matmul_problems(&mut rng, true)),
        ("contrib", contrib_problems(&mut rng)),
    ];
    let mut per_set = Vec::new();
    for (tag, problems) in &sets {
        let mut t = Tally::default();
        if !compare(&py, dir.path(), tag, problems, &mut t, &mut unexplained) {
            // ORT's ConvInteger has rejected padding in some versions (a known ORT gap); every
            // other set must run.
            assert_eq!(
                *tag, "convinteger_padded",
                "ONNX Runtime rejected the {tag} model"
            );
            per_set.push(format!(
                "{tag:<20} skipped: ONNX Runtime rejected the model ({} problems)",
                problems.len()
            ));
            continue;
        }
        per_set.push(format!(
            "{tag:<20} {:>3} problems, {:>3} exact, {:>7} elements, {} differ ({} explained as 1-LSB ties)",
            t.problems, t.exact, t.elements, t.diff, t.explained
        ));
    }
    eprintln!("quant interop vs ONNX Runtime:");
    for l in &per_set {
        eprintln!("  {l}");
    }
    for u in unexplained.iter().take(30) {
        eprintln!("UNEXPLAINED {u}");
    }
    assert!(
        unexplained.is_empty(),
        "{} unexplained differences from ONNX Runtime",
        unexplained.len()
    );
}
