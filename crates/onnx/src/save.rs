//! Saving a model: the external-data layout (keep, all, or automatic when the protobuf would pass
//! its 2 GB limit), and atomic writes (temp file in the destination directory, fsync, rename) that
//! never replace the input model or the external files it reads from.

use crate::error::SaveError;
use crate::export::{Exporter, ExtWrite, MARKER, Placement, Site, for_each_tensor_mut};
use crate::tensor::{location_is_contained, location_key, pairs_to_proto};
use prost::Message;
use qtool_ir::{Model, Storage, TensorBytes, TensorData};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The largest protobuf message size (2^31 - 1 bytes); bigger models need external data.
pub const PROTO_LIMIT: u64 = (1 << 31) - 1;

/// Initializers bigger than this many bytes move to external data when the model is too large.
pub const AUTO_THRESHOLD: usize = 1024;

/// Where tensor data goes on save.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ExternalPolicy {
    /// Every tensor as its storage says: external tensors are written to the file their `location`
    /// names next to the destination (offsets recomputed, entry order kept), the others inline.
    /// If the protobuf would then exceed the limit, initializers above [`AUTO_THRESHOLD`] bytes
    /// that are inline move to `<model file name>.data` (as [`ExternalPolicy::Auto`] does).
    #[default]
    Keep,
    /// Every initializer of at least `size_threshold` bytes (external ones included) goes to the
    /// file `file_name` next to the destination; everything else is inline.
    All {
        file_name: String,
        size_threshold: usize,
    },
    /// Decided by size: everything inline if the protobuf fits under the limit, otherwise every
    /// initializer above [`AUTO_THRESHOLD`] bytes goes to `<model file name>.data`.
    Auto,
}

/// Options of [`save`].
#[derive(Clone, Debug, Default)]
pub struct SaveOptions {
    /// The file the model was loaded from: saving over it, or over an external file it reads,
    /// is refused.
    pub source: Option<PathBuf>,
    pub external: ExternalPolicy,
    proto_limit: Option<u64>,
}

impl SaveOptions {
    pub fn new() -> SaveOptions {
        SaveOptions::default()
    }
    /// Sets the model's source file.
    pub fn with_source(mut self, source: impl Into<PathBuf>) -> SaveOptions {
        self.source = Some(source.into());
        self
    }
    /// Sets the external-data policy.
    pub fn with_external(mut self, policy: ExternalPolicy) -> SaveOptions {
        self.external = policy;
        self
    }
    /// Replaces the 2 GB protobuf limit (for tests of the external-data decisions).
    pub fn with_proto_limit(mut self, limit: u64) -> SaveOptions {
        self.proto_limit = Some(limit);
        self
    }
    fn limit(&self) -> u64 {
        self.proto_limit.unwrap_or(PROTO_LIMIT)
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SaveError + '_ {
    move |source| SaveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// True when both paths exist and name the same file.
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (fs::metadata(a), fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if ma.dev() == mb.dev() && ma.ino() == mb.ino() {
            return true;
        }
    }
    let _ = (&ma, &mb);
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn external_location(td: &TensorData) -> Option<&str> {
    match &td.storage {
        Storage::External(e) => Some(e.location().unwrap_or("")),
        _ => None,
    }
}

/// Tensors that may move to external data: non-string initializers.
fn movable(td: &TensorData, site: Site) -> bool {
    site == Site::Initializer && matches!(td.data, TensorBytes::Raw(_))
}

/// Size of the protobuf when the tensors `omit` selects are left out, plus their inline size.
fn estimate(model: &Model, mut place: impl FnMut(&TensorData, Site) -> Placement) -> u64 {
    let mut ex = Exporter::new(|td: &TensorData, _: &str, site: Site| place(td, site));
    let p = ex.model(model);
    p.encoded_len() as u64 + ex.omitted + 16
}

/// Saves `model` to `path` atomically, writing external data as `options` say.
pub fn save(model: &Model, path: impl AsRef<Path>, options: &SaveOptions) -> Result<(), SaveError> {
    let dest = path.as_ref();
    if dest.is_dir() {
        return Err(SaveError::IsADirectory(dest.to_path_buf()));
    }
    let Some(file_name) = dest.file_name().map(|f| f.to_string_lossy().into_owned()) else {
        return Err(SaveError::IsADirectory(dest.to_path_buf()));
    };
    let dir: PathBuf = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let Some(src) = &options.source
        && same_file(src, dest)
    {
        return Err(SaveError::SameAsSource(dest.to_path_buf()));
    }
    let limit = options.limit();
    let data_name = format!("{file_name}.data");

    // Decide the layout, then build the final message once.
    let (proto, writes) = match &options.external {
        ExternalPolicy::Keep => {
            let est = estimate(model, |td, site| match external_location(td) {
                Some(loc) if matches!(td.data, TensorBytes::Raw(_)) => {
                    Placement::External(loc.to_string())
                }
                _ if movable(td, site) && td.byte_size() > AUTO_THRESHOLD => Placement::Omit,
                _ => Placement::AsIs,
            });
            let moving = est > limit;
            if moving {
                tracing::info!(
                    estimate = est,
                    limit,
                    "the model exceeds the protobuf limit; moving large initializers to external data"
                );
            }
            build(model, |td, site| match external_location(td) {
                Some(loc) if matches!(td.data, TensorBytes::Raw(_)) => {
                    Placement::External(loc.to_string())
                }
                _ if moving && movable(td, site) && td.byte_size() > AUTO_THRESHOLD => {
                    Placement::External(data_name.clone())
                }
                _ => Placement::Inline,
            })
        }
        ExternalPolicy::Auto => {
            let est = estimate(model, |td, site| {
                if movable(td, site) && td.byte_size() > AUTO_THRESHOLD {
                    Placement::Omit
                } else {
                    Placement::Inline
                }
            });
            let moving = est > limit;
            build(model, |td, site| {
                if moving && movable(td, site) && td.byte_size() > AUTO_THRESHOLD {
                    Placement::External(data_name.clone())
                } else {
                    Placement::Inline
                }
            })
        }
        ExternalPolicy::All {
            file_name: ext_name,
            size_threshold,
        } => build(model, |td, site| {
            if movable(td, site) && td.byte_size() >= *size_threshold {
                Placement::External(ext_name.clone())
            } else {
                Placement::Inline
            }
        }),
    };
    let (proto, files) = layout(proto, writes, &file_name)?;
    let size = proto.encoded_len() as u64;
    if size > limit {
        return Err(SaveError::TooLarge { size, limit });
    }

    // Never replace the input model or an external file it reads from.
    if let Some(src) = &options.source {
        let src_dir = match src.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut src_files: Vec<PathBuf> = vec![src.clone()];
        collect_external_locations(model, &mut |loc| src_files.push(src_dir.join(loc)));
        for key in files.keys() {
            let target = dir.join(key);
            if src_files.iter().any(|s| same_file(s, &target)) {
                return Err(SaveError::WouldOverwriteSourceData { path: target });
            }
        }
    }

    // Write everything to temp files, sync, then rename (data first, the model last).
    let mut pending = Vec::new();
    for (key, chunks) in &files {
        let target = dir.join(key);
        let parent = target
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.clone());
        fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&parent).map_err(io_err(&parent))?;
        give_final_mode(tmp.as_file(), &target).map_err(io_err(&target))?;
        {
            let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
            for c in chunks {
                w.write_all(c).map_err(io_err(&target))?;
            }
            w.flush().map_err(io_err(&target))?;
        }
        tmp.as_file().sync_all().map_err(io_err(&target))?;
        pending.push((tmp, target));
    }
    let bytes = proto.encode_to_vec();
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io_err(&dir))?;
    give_final_mode(tmp.as_file(), dest).map_err(io_err(dest))?;
    tmp.write_all(&bytes).map_err(io_err(dest))?;
    tmp.as_file().sync_all().map_err(io_err(dest))?;
    for (tmp, target) in pending {
        tmp.persist(&target).map_err(|e| SaveError::Io {
            path: target.clone(),
            source: e.error,
        })?;
    }
    tmp.persist(dest).map_err(|e| SaveError::Io {
        path: dest.to_path_buf(),
        source: e.error,
    })?;
    sync_dir(&dir);
    Ok(())
}

/// Temporary files are created private (0600); before the rename, give the file the mode a plain
/// `File::create` would: the replaced file's mode when there is one, else 0644.
fn give_final_mode(file: &fs::File, dest: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dest)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644);
        file.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (file, dest);
    Ok(())
}

fn build(
    model: &Model,
    mut place: impl FnMut(&TensorData, Site) -> Placement,
) -> (qtool_onnx_proto::onnx::ModelProto, Vec<ExtWrite>) {
    let mut ex = Exporter::new(|td: &TensorData, _: &str, site: Site| place(td, site));
    let p = ex.model(model);
    (p, ex.writes)
}

type Files = BTreeMap<String, Vec<std::sync::Arc<[u8]>>>;

/// Assigns offsets in each external file (in write order), fills in the entries and replaces the
/// markers in the message. Returns the chunks of each file, keyed by normalized location.
fn layout(
    mut proto: qtool_onnx_proto::onnx::ModelProto,
    writes: Vec<ExtWrite>,
    model_file: &str,
) -> Result<(qtool_onnx_proto::onnx::ModelProto, Files), SaveError> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for w in &writes {
        if !location_is_contained(&w.location) {
            return Err(SaveError::InvalidLocation {
                tensor: w.tensor.clone(),
                location: w.location.clone(),
            });
        }
        let key = location_key(&w.location);
        if key == model_file {
            return Err(SaveError::LocationIsModel {
                tensor: w.tensor.clone(),
                location: w.location.clone(),
            });
        }
        *counts.entry(key).or_default() += 1;
    }
    let mut files: Files = BTreeMap::new();
    let mut sizes: HashMap<String, u64> = HashMap::new();
    let mut entries: Vec<Vec<(String, String)>> = Vec::with_capacity(writes.len());
    for w in writes {
        let key = location_key(&w.location);
        let offset = sizes.get(&key).copied().unwrap_or(0);
        let len = w.bytes.len() as u64;
        let shared = counts.get(&key).copied().unwrap_or(0) > 1;
        let mut e = w.entries;
        set_entry(&mut e, "offset", offset, offset != 0);
        set_entry(&mut e, "length", len, shared);
        entries.push(e);
        sizes.insert(key.clone(), offset + len);
        files.entry(key).or_default().push(w.bytes);
    }
    if let Some(g) = proto.graph.as_mut() {
        for_each_tensor_mut(g, &mut |t| {
            let Some(pos) = t
                .external_data
                .iter()
                .position(|e| e.key.as_deref() == Some(MARKER))
            else {
                return;
            };
            let idx = t
                .external_data
                .get(pos)
                .and_then(|e| e.value.as_deref())
                .and_then(|v| v.parse::<usize>().ok());
            match idx.and_then(|i| entries.get(i)) {
                Some(e) => t.external_data = pairs_to_proto(e),
                None => {
                    t.external_data.remove(pos);
                }
            }
        });
    }
    Ok((proto, files))
}

/// Updates `key` if present; adds it (at the end) when `needed`.
fn set_entry(entries: &mut Vec<(String, String)>, key: &str, value: u64, needed: bool) {
    match entries.iter_mut().find(|(k, _)| k == key) {
        Some(e) => e.1 = value.to_string(),
        None if needed => entries.push((key.to_string(), value.to_string())),
        None => {}
    }
}

/// Calls `f` with the location of every tensor with external storage.
fn collect_external_locations(model: &Model, f: &mut dyn FnMut(&str)) {
    fn graph(g: &qtool_ir::Graph, f: &mut dyn FnMut(&str)) {
        let mut visit = |td: &TensorData| {
            if let Some(loc) = external_location(td) {
                f(loc)
            }
        };
        for &v in &g.initializers {
            if let Some(td) = g.initializer(v) {
                visit(td);
            }
        }
        let mut subs: Vec<&qtool_ir::Graph> = Vec::new();
        for (_, n) in g.nodes() {
            for a in n.attrs() {
                match &a.value {
                    qtool_ir::AttrValue::Tensor(t) => visit(t),
                    qtool_ir::AttrValue::Tensors(ts) => ts.iter().for_each(&mut visit),
                    qtool_ir::AttrValue::Graph(s) => subs.push(s),
                    qtool_ir::AttrValue::Graphs(ss) => subs.extend(ss.iter()),
                    _ => {}
                }
            }
        }
        for s in subs {
            graph(s, f);
        }
    }
    graph(&model.graph, f);
}

fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;
    use qtool_onnx_proto::onnx::{GraphProto, ModelProto, TensorProto};

    fn model_with(inits: Vec<TensorProto>) -> Model {
        let p = ModelProto {
            graph: Some(GraphProto {
                initializer: inits,
                ..Default::default()
            }),
            ..Default::default()
        };
        crate::decode(&p.encode_to_vec(), None).unwrap()
    }

    #[cfg(unix)]
    #[test]
    fn saved_files_are_readable_like_plain_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        let m = model_with(Vec::new());
        save(&m, &path, &SaveOptions::default()).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode(&path),
            0o644,
            "a new model is 0644, not the temp file's 0600"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        save(&m, &path, &SaveOptions::default()).unwrap();
        assert_eq!(mode(&path), 0o640, "a replaced model keeps its mode");
    }

    #[test]
    fn estimate_is_an_upper_bound_close_to_the_real_size() {
        let inits = vec![
            TensorProto {
                name: Some("a".into()),
                data_type: Some(2),
                dims: vec![5000],
                raw_data: Some(vec![1; 5000]),
                ..Default::default()
            },
            TensorProto {
                name: Some("b".into()),
                data_type: Some(3),
                dims: vec![2000],
                int32_data: (0..2000).map(|i: i32| (i % 256) - 128).collect(),
                ..Default::default()
            },
            TensorProto {
                name: Some("c".into()),
                data_type: Some(7),
                dims: vec![300],
                int64_data: (0..300).map(|i| i * 1_000_003).collect(),
                ..Default::default()
            },
        ];
        let m = model_with(inits);
        let real = crate::encode(&m).len() as u64;
        let est = estimate(&m, |td, site| {
            if movable(td, site) {
                Placement::Omit
            } else {
                Placement::AsIs
            }
        });
        assert!(est >= real, "estimate {est} < real {real}");
        assert!(
            est - real <= 3 * 16 + 16,
            "estimate {est} too far above real {real}"
        );
    }

    #[test]
    fn entries_get_offsets_only_when_needed() {
        let mut e = vec![("location".to_string(), "w".to_string())];
        set_entry(&mut e, "offset", 0, false);
        set_entry(&mut e, "length", 8, false);
        assert_eq!(e.len(), 1);
        set_entry(&mut e, "offset", 16, true);
        set_entry(&mut e, "length", 8, true);
        assert_eq!(e[1], ("offset".to_string(), "16".to_string()));
        assert_eq!(e[2], ("length".to_string(), "8".to_string()));
    }
}
