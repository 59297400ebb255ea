//! Calibration data sources: each yields samples (one model run each) as named input tensors, with
//! the file they came from for error messages. Also the sample order: a limit, a seeded
//! deterministic shuffle and shards.
//!
//! Sources: a `.npy` file (first axis = samples, for a single-input model), a directory of `.npy`
//! files (sorted by name; each file one sample, or a batch split along its first axis), an `.npz`
//! (keys = input names, first axis = samples), ONNX test-data directories
//! (`test_data_set_*/input_N.pb`; the TensorProto decoder is injected by the caller, since this
//! crate may not depend on `qtool-onnx`) and folders of images (PNG, JPEG) with a [`Preprocess`].

use crate::CalibError;
use crate::preprocess::Preprocess;
use ndarray::{Axis, Slice};
use qtool_tensor::{Element, Tensor, dispatch_tensor};
use std::path::{Path, PathBuf};

/// One model run's inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub inputs: Vec<(String, Tensor)>,
    /// Where the sample came from (file, and row range when it is part of a file).
    pub origin: String,
}

/// A source of calibration samples.
pub trait DataSource {
    /// Number of samples, when known.
    fn len(&self) -> Option<usize>;

    fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// Sample `index` (0-based); `Ok(None)` past the end. Sources with a known length accept any
    /// index below it in any order; others only count upwards from 0.
    fn get(&mut self, index: usize) -> Result<Option<Sample>, CalibError>;
}

/// Decodes an ONNX `TensorProto` (`.pb` bytes) into its name (if it has one) and tensor; supplied
/// by the caller (the pipeline crate, with `qtool-onnx`).
pub type TensorDecoder = Box<dyn Fn(&[u8]) -> Result<(Option<String>, Tensor), String>>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CalibError + '_ {
    move |e| CalibError::Io {
        path: path.display().to_string(),
        source: e,
    }
}

/// Rows `a..b` of axis 0 (the axis is kept).
fn rows(t: &Tensor, a: usize, b: usize, what: &str) -> Result<Tensor, CalibError> {
    if t.rank() == 0 {
        return Err(CalibError::Source {
            path: what.into(),
            msg: "a scalar has no sample axis".into(),
        });
    }
    Ok(
        dispatch_tensor!(t, x => Element::wrap(x.slice_axis(Axis(0), Slice::from(a..b)).to_owned()), _p => {
            return Err(CalibError::Source { path: what.into(), msg: format!("{} tensors cannot be split into samples", t.dtype()) })
        }),
    )
}

/// Sorted files of `dir` whose extension (lower-cased) is one of `exts`.
fn list_files(dir: &Path, exts: &[&str]) -> Result<Vec<PathBuf>, CalibError> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| exts.contains(&x.to_ascii_lowercase().as_str()))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// A `.npy` file whose first axis holds the samples of a single-input model; each sample is
/// `batch` rows (the axis is kept; the last sample may be shorter). A C-order file is read row by
/// row as samples are asked for (memory: one sample, whatever the file's size); a Fortran-order
/// file is read whole at open.
#[derive(Debug)]
pub struct NpySource {
    input: String,
    data: NpyData,
    batch: usize,
    origin: String,
}

#[derive(Debug)]
enum NpyData {
    Loaded(Tensor),
    Rows(NpyRows),
}

/// A C-order `.npy` file read lazily: the element type string, the shape, and where the data is.
#[derive(Debug)]
struct NpyRows {
    file: std::fs::File,
    descr: String,
    shape: Vec<usize>,
    data_start: u64,
    row_bytes: u64,
}

impl NpyRows {
    /// `None` when the file is not a plain C-order array of a size this reader understands (the
    /// whole-file reader then decides, with its own errors).
    fn open(path: &Path) -> Result<Option<NpyRows>, CalibError> {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(io(path))?;
        let mut pre = [0u8; 12];
        if f.read_exact(&mut pre).is_err() || &pre[..6] != b"\x93NUMPY" {
            return Ok(None);
        }
        let (hlen, start) = match pre[6] {
            1 => (u16::from_le_bytes([pre[8], pre[9]]) as u64, 10u64),
            2 | 3 => (
                u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]) as u64,
                12,
            ),
            _ => return Ok(None),
        };
        if hlen > 1 << 20 {
            return Ok(None);
        }
        let mut h = vec![0u8; hlen as usize];
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(start)).map_err(io(path))?;
        if f.read_exact(&mut h).is_err() {
            return Ok(None);
        }
        let h = String::from_utf8_lossy(&h).replace('"', "'");
        if !h.contains("'fortran_order': False") {
            return Ok(None);
        }
        let Some(descr) = h
            .split("'descr':")
            .nth(1)
            .and_then(|r| r.split('\'').nth(1))
            .map(str::to_string)
        else {
            return Ok(None);
        };
        let shape = npy_shape(path)?;
        let file_len = f.metadata().map_err(io(path))?.len();
        let data_start = start + hlen;
        let (Some(&n), numel) = (shape.first(), shape.iter().product::<usize>() as u64) else {
            return Ok(None);
        };
        if numel == 0 || file_len < data_start || (file_len - data_start) % numel != 0 {
            return Ok(None);
        }
        let width = (file_len - data_start) / numel;
        Ok(Some(NpyRows {
            file: f,
            descr,
            row_bytes: width * (numel / n as u64),
            shape,
            data_start,
        }))
    }

    /// Rows `a..b` as a tensor (decoded by the .npy reader from a header for just those rows).
    fn rows(&mut self, a: usize, b: usize, what: &str) -> Result<Tensor, CalibError> {
        use std::io::{Read, Seek};
        let mut shape = self.shape.clone();
        shape[0] = b - a;
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let mut header = format!(
            "{{'descr': '{}', 'fortran_order': False, 'shape': ({},), }}",
            self.descr,
            dims.join(", ")
        );
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut buf = Vec::with_capacity(10 + header.len() + (self.row_bytes as usize) * (b - a));
        buf.extend_from_slice(b"\x93NUMPY\x01\x00");
        buf.extend_from_slice(&(header.len() as u16).to_le_bytes());
        buf.extend_from_slice(header.as_bytes());
        let at = buf.len();
        buf.resize(at + self.row_bytes as usize * (b - a), 0);
        let ioerr = |e: std::io::Error| CalibError::Io {
            path: what.to_string(),
            source: e,
        };
        self.file
            .seek(std::io::SeekFrom::Start(
                self.data_start + a as u64 * self.row_bytes,
            ))
            .map_err(ioerr)?;
        self.file.read_exact(&mut buf[at..]).map_err(ioerr)?;
        Ok(qtool_data::npy::read_npy(&buf, what)?)
    }
}

impl NpySource {
    pub fn open(path: &Path, input: &str, batch: usize) -> Result<NpySource, CalibError> {
        let data = match NpyRows::open(path)? {
            Some(r) => NpyData::Rows(r),
            None => NpyData::Loaded(qtool_data::load_npy(path)?),
        };
        let rank = match &data {
            NpyData::Loaded(t) => t.rank(),
            NpyData::Rows(r) => r.shape.len(),
        };
        if rank == 0 {
            return Err(CalibError::Source {
                path: path.display().to_string(),
                msg: "a scalar array has no sample axis".into(),
            });
        }
        Ok(NpySource {
            input: input.into(),
            data,
            batch: batch.max(1),
            origin: path.display().to_string(),
        })
    }

    fn rows_total(&self) -> usize {
        match &self.data {
            NpyData::Loaded(t) => t.shape()[0],
            NpyData::Rows(r) => r.shape[0],
        }
    }
}

impl DataSource for NpySource {
    fn len(&self) -> Option<usize> {
        Some(self.rows_total().div_ceil(self.batch))
    }
    fn get(&mut self, index: usize) -> Result<Option<Sample>, CalibError> {
        let n = self.rows_total();
        let a = index * self.batch;
        if a >= n {
            return Ok(None);
        }
        let b = (a + self.batch).min(n);
        let t = match &mut self.data {
            NpyData::Loaded(t) => rows(t, a, b, &self.origin)?,
            NpyData::Rows(r) => r.rows(a, b, &self.origin)?,
        };
        Ok(Some(Sample {
            inputs: vec![(self.input.clone(), t)],
            origin: format!("{} rows {a}..{b}", self.origin),
        }))
    }
}

/// How the files of a [`NpyDirSource`] hold samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileLayout {
    /// Each file is one sample, fed as it is.
    Sample,
    /// Each file is a batch: its first axis holds samples of one row each (axis kept).
    Batch,
}

/// Reads the shape from a `.npy` header without reading the data.
fn npy_shape(path: &Path) -> Result<Vec<usize>, CalibError> {
    use std::io::Read;
    let bad = |m: &str| CalibError::Source {
        path: path.display().to_string(),
        msg: format!("not a .npy file: {m}"),
    };
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut pre = [0u8; 12];
    f.read_exact(&mut pre[..10]).map_err(|_| bad("too short"))?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(bad("no magic"));
    }
    let hlen = if pre[6] == 1 {
        u16::from_le_bytes([pre[8], pre[9]]) as usize
    } else {
        f.read_exact(&mut pre[10..12])
            .map_err(|_| bad("too short"))?;
        u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]) as usize
    };
    let mut h = vec![0u8; hlen.min(1 << 20)];
    f.read_exact(&mut h).map_err(|_| bad("truncated header"))?;
    let h = String::from_utf8_lossy(&h);
    let at = h
        .find("'shape'")
        .or_else(|| h.find("\"shape\""))
        .ok_or_else(|| bad("no shape"))?;
    let rest = &h[at..];
    let open = rest.find('(').ok_or_else(|| bad("bad shape"))?;
    let close = rest.find(')').ok_or_else(|| bad("bad shape"))?;
    rest[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| bad("bad shape"))
        })
        .collect()
}

/// A directory of `.npy` files (sorted by name) for a single-input model.
#[derive(Debug)]
pub struct NpyDirSource {
    input: String,
    files: Vec<PathBuf>,
    layout: FileLayout,
    /// Batch layout: the first sample index of each file, and the total.
    starts: Vec<usize>,
    total: usize,
    cache: Option<(usize, Tensor)>,
}

impl NpyDirSource {
    pub fn open(dir: &Path, input: &str, layout: FileLayout) -> Result<NpyDirSource, CalibError> {
        let files = list_files(dir, &["npy"])?;
        if files.is_empty() {
            return Err(CalibError::Empty(format!(
                "{}: no .npy files in the directory",
                dir.display()
            )));
        }
        let (mut starts, mut total) = (Vec::new(), files.len());
        if layout == FileLayout::Batch {
            total = 0;
            for f in &files {
                starts.push(total);
                let s = npy_shape(f)?;
                let n = *s.first().ok_or_else(|| CalibError::Source {
                    path: f.display().to_string(),
                    msg: "a scalar array has no sample axis".into(),
                })?;
                total += n;
            }
        }
        Ok(NpyDirSource {
            input: input.into(),
            files,
            layout,
            starts,
            total,
            cache: None,
        })
    }
}

impl DataSource for NpyDirSource {
    fn len(&self) -> Option<usize> {
        Some(self.total)
    }
    fn get(&mut self, index: usize) -> Result<Option<Sample>, CalibError> {
        if index >= self.total {
            return Ok(None);
        }
        let (file, row) = match self.layout {
            FileLayout::Sample => (index, None),
            FileLayout::Batch => {
                let f = self.starts.partition_point(|&s| s <= index) - 1;
                (f, Some(index - self.starts[f]))
            }
        };
        let path = &self.files[file];
        let t = match &self.cache {
            Some((i, t)) if *i == file => t.clone(),
            _ => {
                let t = qtool_data::load_npy(path)?;
                if self.layout == FileLayout::Batch {
                    self.cache = Some((file, t.clone()));
                }
                t
            }
        };
        let origin = path.display().to_string();
        Ok(Some(match row {
            None => Sample {
                inputs: vec![(self.input.clone(), t)],
                origin,
            },
            Some(r) => {
                if t.rank() == 0 || r >= t.shape()[0] {
                    return Err(CalibError::Source {
                        path: origin,
                        msg: "the file changed while reading".into(),
                    });
                }
                Sample {
                    inputs: vec![(self.input.clone(), rows(&t, r, r + 1, &origin)?)],
                    origin: format!("{origin} row {r}"),
                }
            }
        }))
    }
}

/// An `.npz` whose keys are the input names and whose arrays share their first axis (samples of
/// `batch` rows each). Read at open.
#[derive(Debug)]
pub struct NpzSource {
    arrays: Vec<(String, Tensor)>,
    n: usize,
    batch: usize,
    origin: String,
}

impl NpzSource {
    pub fn open(path: &Path, batch: usize) -> Result<NpzSource, CalibError> {
        let arrays = qtool_data::load_npz(path)?;
        let origin = path.display().to_string();
        if arrays.is_empty() {
            return Err(CalibError::Empty(format!(
                "{origin}: the archive holds no arrays"
            )));
        }
        let mut n = None;
        for (k, t) in &arrays {
            let m = *t.shape().first().ok_or_else(|| CalibError::Source {
                path: origin.clone(),
                msg: format!("array '{k}' is a scalar: no sample axis"),
            })?;
            match n {
                None => n = Some((k.clone(), m)),
                Some((ref k0, m0)) if m0 != m => {
                    return Err(CalibError::Source {
                        path: origin,
                        msg: format!(
                            "arrays '{k0}' and '{k}' hold different numbers of samples ({m0} and {m})"
                        ),
                    });
                }
                _ => {}
            }
        }
        Ok(NpzSource {
            arrays,
            n: n.map(|x| x.1).unwrap_or(0),
            batch: batch.max(1),
            origin,
        })
    }
}

impl DataSource for NpzSource {
    fn len(&self) -> Option<usize> {
        Some(self.n.div_ceil(self.batch))
    }
    fn get(&mut self, index: usize) -> Result<Option<Sample>, CalibError> {
        let a = index * self.batch;
        if a >= self.n {
            return Ok(None);
        }
        let b = (a + self.batch).min(self.n);
        let inputs = self
            .arrays
            .iter()
            .map(|(k, t)| Ok((k.clone(), rows(t, a, b, &self.origin)?)))
            .collect::<Result<_, CalibError>>()?;
        Ok(Some(Sample {
            inputs,
            origin: format!("{} rows {a}..{b}", self.origin),
        }))
    }
}

/// ONNX test-data directories: `dir` is either one `test_data_set_*` directory or a directory of
/// them (ordered by their numeric suffix); each set is one sample of its `input_N.pb` files. A
/// tensor's own name is used when it has one, else the N-th of `input_names`.
pub struct OnnxTestDataSource {
    sets: Vec<PathBuf>,
    input_names: Vec<String>,
    decoder: TensorDecoder,
}

impl std::fmt::Debug for OnnxTestDataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxTestDataSource")
            .field("sets", &self.sets)
            .finish()
    }
}

fn numeric_suffix(p: &Path, prefix: &str) -> Option<u64> {
    p.file_name()?
        .to_str()?
        .strip_prefix(prefix)?
        .split('.')
        .next()?
        .parse()
        .ok()
}

impl OnnxTestDataSource {
    pub fn open(
        dir: &Path,
        input_names: Vec<String>,
        decoder: TensorDecoder,
    ) -> Result<OnnxTestDataSource, CalibError> {
        let has_inputs = |d: &Path| {
            list_files(d, &["pb"]).map(|v| v.iter().any(|p| numeric_suffix(p, "input_").is_some()))
        };
        let sets = if has_inputs(dir)? {
            vec![dir.to_path_buf()]
        } else {
            let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
                .map_err(io(dir))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .filter_map(|p| numeric_suffix(&p, "test_data_set_").map(|n| (n, p)))
                .collect();
            v.sort();
            v.into_iter().map(|x| x.1).collect()
        };
        if sets.is_empty() {
            return Err(CalibError::Empty(format!(
                "{}: no test_data_set_* directories and no input_N.pb files",
                dir.display()
            )));
        }
        Ok(OnnxTestDataSource {
            sets,
            input_names,
            decoder,
        })
    }
}

impl DataSource for OnnxTestDataSource {
    fn len(&self) -> Option<usize> {
        Some(self.sets.len())
    }
    fn get(&mut self, index: usize) -> Result<Option<Sample>, CalibError> {
        let Some(dir) = self.sets.get(index) else {
            return Ok(None);
        };
        let mut files: Vec<(u64, PathBuf)> = list_files(dir, &["pb"])?
            .into_iter()
            .filter_map(|p| numeric_suffix(&p, "input_").map(|n| (n, p)))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(CalibError::Empty(format!(
                "{}: no input_N.pb files",
                dir.display()
            )));
        }
        let mut inputs = Vec::new();
        for (n, p) in files {
            let b = std::fs::read(&p).map_err(io(&p))?;
            let (name, t) = (self.decoder)(&b).map_err(|m| CalibError::Source {
                path: p.display().to_string(),
                msg: format!("cannot decode TensorProto: {m}"),
            })?;
            let name =
                match name.filter(|s| !s.is_empty()) {
                    Some(s) => s,
                    None => self.input_names.get(n as usize).cloned().ok_or_else(|| {
                        CalibError::Source {
                            path: p.display().to_string(),
                            msg: format!(
                                "unnamed tensor number {n}, and the model has only {} inputs",
                                self.input_names.len()
                            ),
                        }
                    })?,
                };
            inputs.push((name, t));
        }
        Ok(Some(Sample {
            inputs,
            origin: dir.display().to_string(),
        }))
    }
}

/// A folder of images (`.png`, `.jpg`, `.jpeg`, any case; other files are ignored), sorted by file
/// name, one image a sample, for the model input `input`.
#[derive(Debug)]
pub struct ImageFolderSource {
    input: String,
    files: Vec<PathBuf>,
    pre: Preprocess,
}

impl ImageFolderSource {
    pub fn open(dir: &Path, input: &str, pre: Preprocess) -> Result<ImageFolderSource, CalibError> {
        pre.validate()?;
        let files = list_files(dir, &["png", "jpg", "jpeg"])?;
        if files.is_empty() {
            return Err(CalibError::Empty(format!(
                "{}: no images (.png, .jpg, .jpeg) in the folder",
                dir.display()
            )));
        }
        Ok(ImageFolderSource {
            input: input.into(),
            files,
            pre,
        })
    }
}

impl DataSource for ImageFolderSource {
    fn len(&self) -> Option<usize> {
        Some(self.files.len())
    }
    fn get(&mut self, index: usize) -> Result<Option<Sample>, CalibError> {
        let Some(p) = self.files.get(index) else {
            return Ok(None);
        };
        let t = self.pre.apply_file(p)?;
        Ok(Some(Sample {
            inputs: vec![(self.input.clone(), t)],
            origin: p.display().to_string(),
        }))
    }
}

/// In-memory samples (for tests and for callers that build samples themselves).
impl DataSource for Vec<Sample> {
    fn len(&self) -> Option<usize> {
        Some(<[Sample]>::len(self))
    }
    fn get(&mut self, index: usize) -> Result<Option<Sample>, CalibError> {
        Ok(<[Sample]>::get(self, index).cloned())
    }
}

/// SplitMix64 (Steele, Lea and Flood 2014): the PRNG of the seeded shuffle. Fixed forever, so a
/// seed means the same order in every qtool version.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (`n > 0`), by the multiply-high method (bias below 2^-32 for any
    /// realistic `n`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// Which samples to use, in which order: shuffle (Fisher-Yates from the last position down, `j =
/// below(i + 1)` with [`SplitMix64`] seeded by `shuffle_seed`), then keep the first `limit`, then
/// keep the positions `p` with `p % shard.count == shard.index`. The shards of one order partition
/// it, so merging their statistics equals one run over all of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SampleOrder {
    pub limit: Option<usize>,
    pub shuffle_seed: Option<u64>,
    pub shard: Shard,
}

/// Process the samples at positions `p` with `p % count == index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl SampleOrder {
    pub fn validate(&self) -> Result<(), CalibError> {
        if self.shard.count == 0 || self.shard.index >= self.shard.count {
            return Err(CalibError::Settings(format!(
                "shard {} of {} does not exist",
                self.shard.index, self.shard.count
            )));
        }
        Ok(())
    }

    /// The sample indices this shard processes, for a source of `len` samples.
    pub fn indices(&self, len: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..len).collect();
        if let Some(seed) = self.shuffle_seed {
            let mut r = SplitMix64(seed);
            for i in (1..len).rev() {
                let j = r.below(i + 1);
                v.swap(i, j);
            }
        }
        v.truncate(self.limit.unwrap_or(len));
        v.into_iter()
            .enumerate()
            .filter(|(p, _)| p % self.shard.count == self.shard.index)
            .map(|x| x.1)
            .collect()
    }
}
