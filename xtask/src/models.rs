//! `cargo xtask models`: fetches real ONNX models shipped inside PyPI wheels into `.cache/models/`.
//!
//! The only source is pip (`pip download --no-deps` of a pinned wheel); no model hub, no other URL.
//! Each model is pinned by the wheel (package + version), its path inside the wheel and its SHA-256.
//! Models whose files already exist with the pinned SHA-256 are not downloaded again.
//! `.cache/models/manifest.json` lists them all.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One model inside a wheel.
struct Model {
    /// File stem in `.cache/models/`.
    name: &'static str,
    /// Path inside the wheel.
    path_in_wheel: &'static str,
    /// Lower-case hex SHA-256 of the extracted file.
    sha256: &'static str,
    /// Size in bytes.
    size: u64,
    /// What it is, for people reading the manifest.
    description: &'static str,
}

/// A pinned wheel and the models taken from it.
struct Wheel {
    package: &'static str,
    version: &'static str,
    models: &'static [Model],
}

const WHEELS: &[Wheel] = &[
    Wheel {
        package: "rapidocr-onnxruntime",
        version: "1.4.4",
        models: &[
            Model {
                name: "ppocrv4_det",
                path_in_wheel: "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                sha256: "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
                size: 4_745_517,
                description: "PP-OCRv4 text detection (DB, MobileNetV3 backbone), opset 12",
            },
            Model {
                name: "ppocrv4_rec",
                path_in_wheel: "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
                sha256: "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
                size: 10_857_958,
                description: "PP-OCRv4 text recognition (SVTR-LCNet, CTC), opset 12",
            },
            Model {
                name: "ppocr_mobile_v2_cls",
                path_in_wheel: "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                sha256: "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
                size: 585_532,
                description: "PP-OCR mobile v2.0 text direction classifier (MobileNetV3), opset 11",
            },
        ],
    },
    Wheel {
        package: "nudenet",
        version: "3.4.2",
        models: &[Model {
            name: "nudenet_320n",
            path_in_wheel: "nudenet/320n.onnx",
            sha256: "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f",
            size: 12_150_158,
            description: "YOLOv8n object detector (320 input, dynamic shape), opset 17",
        }],
    },
    Wheel {
        package: "ddddocr",
        version: "1.6.1",
        models: &[
            Model {
                name: "ddddocr_det",
                path_in_wheel: "ddddocr/common_det.onnx",
                sha256: "6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6",
                size: 20_127_694,
                description: "YOLOX-style detector, static 1x3x416x416, opset 11",
            },
            Model {
                name: "ddddocr_ocr_old",
                path_in_wheel: "ddddocr/common_old.onnx",
                sha256: "b8f2ad9cbc1f2e3922a6cb9459e30824e7e2467f3fb4fd61420640e34ea0bf68",
                size: 13_606_051,
                description: "CNN+LSTM OCR already dynamically quantized (ConvInteger, \
                              com.microsoft::DynamicQuantizeLSTM), opset 12",
            },
        ],
    },
];

#[derive(Serialize)]
struct ManifestEntry {
    name: &'static str,
    file: String,
    package: &'static str,
    version: &'static str,
    path_in_wheel: &'static str,
    sha256: &'static str,
    size: u64,
    description: &'static str,
}

#[derive(Serialize)]
struct Manifest {
    source: &'static str,
    models: Vec<ManifestEntry>,
}

/// The cache directory `.cache/models` at the workspace root.
pub fn models_dir() -> PathBuf {
    crate::workspace_root().join(".cache").join("models")
}

fn file_matches(path: &Path, sha256: &str) -> bool {
    std::fs::read(path).is_ok_and(|bytes| crate::py::sha256_hex(&bytes) == sha256)
}

/// The wheel of `package==version` in `dir`, if pip already put it there.
fn find_wheel(dir: &Path, package: &str, version: &str) -> Option<PathBuf> {
    let prefix = format!("{}-{}-", package.replace('-', "_"), version);
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

fn fetch_wheel(python: &Path, dir: &Path, wheel: &Wheel) -> Result<PathBuf> {
    if let Some(path) = find_wheel(dir, wheel.package, wheel.version) {
        return Ok(path);
    }
    eprintln!("xtask: pip download {}=={}", wheel.package, wheel.version);
    crate::py::run(
        std::process::Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--no-input",
            ])
            .args(["--disable-pip-version-check", "-q", "-d"])
            .arg(dir)
            .arg(format!("{}=={}", wheel.package, wheel.version)),
    )?;
    find_wheel(dir, wheel.package, wheel.version).with_context(|| {
        format!(
            "pip did not leave a wheel of {}=={} in {}",
            wheel.package,
            wheel.version,
            dir.display()
        )
    })
}

fn extract(wheel_path: &Path, model: &Model, dest: &Path) -> Result<()> {
    extract_file(
        wheel_path,
        model.path_in_wheel,
        model.sha256,
        model.size,
        dest,
    )
}

/// Extracts one pinned file of a wheel to `dest` (atomically), checking its SHA-256 and size.
fn extract_file(
    wheel_path: &Path,
    path_in_wheel: &str,
    sha256: &str,
    size: u64,
    dest: &Path,
) -> Result<()> {
    struct Pin<'a> {
        path_in_wheel: &'a str,
        sha256: &'a str,
        size: u64,
    }
    let model = Pin {
        path_in_wheel,
        sha256,
        size,
    };
    let file = std::fs::File::open(wheel_path)
        .with_context(|| format!("opening {}", wheel_path.display()))?;
    let mut archive =
        zip::ZipArchive::new(file).with_context(|| format!("reading {}", wheel_path.display()))?;
    let mut entry = archive
        .by_name(model.path_in_wheel)
        .with_context(|| format!("{} has no {}", wheel_path.display(), model.path_in_wheel))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut bytes)?;
    let got = crate::py::sha256_hex(&bytes);
    if got != model.sha256 || bytes.len() as u64 != model.size {
        bail!(
            "{} in {}: sha256 {got} ({} bytes), pinned {} ({} bytes)",
            model.path_in_wheel,
            wheel_path.display(),
            bytes.len(),
            model.sha256,
            model.size
        );
    }
    let tmp = dest.with_extension("part");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dest)?;
    Ok(())
}

/// Makes sure every pinned model is in `.cache/models/` and returns that directory.
pub fn ensure_models() -> Result<PathBuf> {
    let dir = models_dir();
    let wheels_dir = dir.join("wheels");
    std::fs::create_dir_all(&wheels_dir)?;
    let mut python: Option<PathBuf> = None;
    let mut entries = Vec::new();
    for wheel in WHEELS {
        let missing: Vec<&Model> = wheel
            .models
            .iter()
            .filter(|m| !file_matches(&dir.join(format!("{}.onnx", m.name)), m.sha256))
            .collect();
        if missing.is_empty() {
            eprintln!(
                "xtask: {}=={}: models up to date",
                wheel.package, wheel.version
            );
        } else {
            let py = match &python {
                Some(p) => p.clone(),
                None => python.insert(crate::py::ensure_venv()?).clone(),
            };
            let wheel_path = fetch_wheel(&py, &wheels_dir, wheel)?;
            for model in missing {
                let dest = dir.join(format!("{}.onnx", model.name));
                eprintln!(
                    "xtask: extracting {} -> {}",
                    model.path_in_wheel,
                    dest.display()
                );
                extract(&wheel_path, model, &dest)?;
            }
        }
        for m in wheel.models {
            entries.push(ManifestEntry {
                name: m.name,
                file: format!("{}.onnx", m.name),
                package: wheel.package,
                version: wheel.version,
                path_in_wheel: m.path_in_wheel,
                sha256: m.sha256,
                size: m.size,
                description: m.description,
            });
        }
    }
    let manifest = Manifest {
        source: "PyPI wheels via `pip download --no-deps` (cargo xtask models)",
        models: entries,
    };
    let text = serde_json::to_string_pretty(&manifest)? + "\n";
    std::fs::write(dir.join("manifest.json"), text)?;
    Ok(dir)
}

/// `cargo xtask models`.
pub fn models_task() -> Result<()> {
    let images = ensure_images()?;
    println!("{}", images.display());
    let dir = ensure_models()?;
    for wheel in WHEELS {
        for m in wheel.models {
            println!("{}", dir.join(format!("{}.onnx", m.name)).display());
        }
    }
    Ok(())
}

/// Real photos for calibration and evaluation: scikit-image's sample images, taken from its wheel
/// the same way as the models (pinned version and SHA-256; nothing else is installed).
const IMAGE_PACKAGE: (&str, &str) = ("scikit-image", "0.26.0");
/// (file name, SHA-256, size) of `skimage/data/<file>`.
const IMAGES: &[(&str, &str, u64)] = &[
    (
        "page.png",
        "341a6f0a61557662b02734a9b6e56ec33a915b2c41886b97509dedf2a43b47a3",
        47_679,
    ),
    (
        "text.png",
        "bd84aa3a6e3c9887850d45d606c96b2e59433fbef50338570b63c319e668e6d1",
        42_704,
    ),
    (
        "astronaut.png",
        "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        791_555,
    ),
    (
        "coffee.png",
        "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
        466_706,
    ),
    (
        "chelsea.png",
        "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
        240_512,
    ),
    (
        "camera.png",
        "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
        139_512,
    ),
    (
        "rocket.jpg",
        "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
        112_525,
    ),
    (
        "motorcycle_left.png",
        "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
        644_701,
    ),
];

/// The directory of sample images, `.cache/images`.
pub fn images_dir() -> PathBuf {
    crate::workspace_root().join(".cache").join("images")
}

/// Makes sure the pinned sample images are in `.cache/images/` and returns that directory.
pub fn ensure_images() -> Result<PathBuf> {
    let dir = images_dir();
    std::fs::create_dir_all(&dir)?;
    let missing: Vec<_> = IMAGES
        .iter()
        .filter(|(f, sha, _)| !file_matches(&dir.join(f), sha))
        .collect();
    if missing.is_empty() {
        eprintln!(
            "xtask: {}=={}: images up to date",
            IMAGE_PACKAGE.0, IMAGE_PACKAGE.1
        );
        return Ok(dir);
    }
    let python = crate::py::ensure_venv()?;
    let wheels_dir = models_dir().join("wheels");
    std::fs::create_dir_all(&wheels_dir)?;
    let wheel = Wheel {
        package: IMAGE_PACKAGE.0,
        version: IMAGE_PACKAGE.1,
        models: &[],
    };
    let wheel_path = fetch_wheel(&python, &wheels_dir, &wheel)?;
    for (f, sha, size) in missing {
        eprintln!(
            "xtask: extracting skimage/data/{f} -> {}",
            dir.join(f).display()
        );
        extract_file(
            &wheel_path,
            &format!("skimage/data/{f}"),
            sha,
            *size,
            &dir.join(f),
        )?;
    }
    Ok(dir)
}
