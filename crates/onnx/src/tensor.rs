//! `TensorProto` <-> [`TensorData`]: the storage forms (raw, typed fields per the spec's rules,
//! external data) with bit-exact round trips, and the reading of external data files (only the
//! tensor's byte range, after checking the location stays inside the model's directory).

use crate::error::LoadError;
use qtool_ir::{ExternalRef, Storage, TensorBytes, TensorData};
use qtool_onnx_proto::onnx::{StringStringEntryProto, TensorProto, tensor_proto};
use qtool_tensor::DType;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// `data_location` values.
const LOC_DEFAULT: i32 = 0;
const LOC_EXTERNAL: i32 = 1;

/// The typed field of `TensorProto` that holds a dtype's elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TypedField {
    Float,
    Int32,
    String,
    Int64,
    Double,
    Uint64,
}

impl TypedField {
    fn name(self) -> &'static str {
        match self {
            TypedField::Float => "float_data",
            TypedField::Int32 => "int32_data",
            TypedField::String => "string_data",
            TypedField::Int64 => "int64_data",
            TypedField::Double => "double_data",
            TypedField::Uint64 => "uint64_data",
        }
    }
}

/// The typed field the spec assigns to `dtype`.
pub(crate) fn typed_field(dtype: DType) -> TypedField {
    match dtype {
        DType::F32 | DType::Complex64 => TypedField::Float,
        DType::F64 | DType::Complex128 => TypedField::Double,
        DType::I64 => TypedField::Int64,
        DType::U32 | DType::U64 => TypedField::Uint64,
        DType::String => TypedField::String,
        DType::I32
        | DType::I16
        | DType::I8
        | DType::U16
        | DType::U8
        | DType::Bool
        | DType::F16
        | DType::BF16
        | DType::F8E4M3FN
        | DType::F8E4M3FNUZ
        | DType::F8E5M2
        | DType::F8E5M2FNUZ
        | DType::F8E8M0
        | DType::U4
        | DType::I4
        | DType::F4E2M1
        | DType::U2
        | DType::I2
        | DType::F6E2M3
        | DType::F6E3M2 => TypedField::Int32,
    }
}

/// Bytes of the raw layout one `int32_data` entry holds for `dtype` (sub-byte types pack into one
/// byte: two 4-bit or four 2-bit elements per entry; for the 6-bit floats, whose raw layout is
/// bit-packed, each entry likewise holds one byte of that layout).
fn int32_width(dtype: DType) -> usize {
    match dtype.bits() {
        Some(b) if b >= 8 => b / 8,
        _ => 1,
    }
}

/// The canonical `int32_data` value of one little-endian chunk: sign-extended for the signed
/// integer types, zero-extended (the unsigned bit pattern) for everything else, as the spec says.
fn int32_of_chunk(dtype: DType, chunk: &[u8]) -> i32 {
    let mut b = [0u8; 4];
    for (d, s) in b.iter_mut().zip(chunk) {
        *d = *s;
    }
    let u = u32::from_le_bytes(b);
    match (dtype, chunk.len()) {
        (DType::I8, 1) => u as u8 as i8 as i32,
        (DType::I16, 2) => u as u16 as i16 as i32,
        _ => u as i32,
    }
}

/// The range of canonical `int32_data` values for `dtype`.
fn int32_range(dtype: DType) -> (i64, i64) {
    match dtype {
        DType::I32 => (i32::MIN as i64, i32::MAX as i64),
        DType::I16 => (i16::MIN as i64, i16::MAX as i64),
        DType::I8 => (i8::MIN as i64, i8::MAX as i64),
        _ => match int32_width(dtype) {
            2 => (0, u16::MAX as i64),
            _ => (0, u8::MAX as i64),
        },
    }
}

/// Element count of `dims`, rejecting negative dims and overflow.
pub(crate) fn checked_numel(dims: &[i64]) -> Result<usize, String> {
    dims.iter().try_fold(1usize, |acc, &d| {
        let d =
            usize::try_from(d).map_err(|_| format!("negative dimension {d} in dims {dims:?}"))?;
        acc.checked_mul(d)
            .ok_or_else(|| format!("dims {dims:?} overflow the element count"))
    })
}

/// Bytes of `n` elements in the raw layout, with overflow checked.
pub(crate) fn checked_byte_len(dtype: DType, n: usize) -> Result<usize, String> {
    let bits = dtype
        .bits()
        .ok_or_else(|| "STRING tensors have no fixed-width layout".to_string())?;
    n.checked_mul(bits).map(|b| b.div_ceil(8)).ok_or_else(|| {
        format!(
            "{n} elements of {} overflow the byte size",
            dtype.onnx_name()
        )
    })
}

/// Names of the typed fields that hold data.
fn nonempty_typed_fields(t: &TensorProto) -> Vec<TypedField> {
    let mut out = Vec::new();
    if !t.float_data.is_empty() {
        out.push(TypedField::Float);
    }
    if !t.int32_data.is_empty() {
        out.push(TypedField::Int32);
    }
    if !t.string_data.is_empty() {
        out.push(TypedField::String);
    }
    if !t.int64_data.is_empty() {
        out.push(TypedField::Int64);
    }
    if !t.double_data.is_empty() {
        out.push(TypedField::Double);
    }
    if !t.uint64_data.is_empty() {
        out.push(TypedField::Uint64);
    }
    out
}

fn pairs_from_proto(entries: Vec<StringStringEntryProto>) -> Vec<(String, String)> {
    entries
        .into_iter()
        .map(|e| (e.key.unwrap_or_default(), e.value.unwrap_or_default()))
        .collect()
}

pub(crate) fn pairs_to_proto(pairs: &[(String, String)]) -> Vec<StringStringEntryProto> {
    pairs
        .iter()
        .map(|(k, v)| StringStringEntryProto {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

pub(crate) fn pairs_in(entries: Vec<StringStringEntryProto>) -> Vec<(String, String)> {
    pairs_from_proto(entries)
}

/// Context for converting tensors: where external files are resolved, and a description of where
/// in the model we are (for error messages).
pub(crate) struct TensorCx<'a> {
    pub base_dir: Option<&'a Path>,
    pub context: &'a str,
}

/// Converts a `TensorProto` into [`TensorData`]. `label` names the tensor in errors (its name, or
/// a description for unnamed tensors).
pub(crate) fn tensor_from_proto(
    t: TensorProto,
    cx: &TensorCx<'_>,
    label: &str,
) -> Result<TensorData, LoadError> {
    let context = if cx.context.is_empty() {
        format!("tensor '{label}'")
    } else {
        format!("{} > tensor '{label}'", cx.context)
    };
    let invalid = |message: String| LoadError::InvalidTensor {
        context: context.clone(),
        message,
    };
    let code = t
        .data_type
        .ok_or_else(|| invalid("data_type is missing".to_string()))?;
    let dtype = DType::from_code(code).ok_or_else(|| LoadError::UnknownEnum {
        context: context.clone(),
        what: "tensor data type",
        value: code as i64,
    })?;
    let (external, explicit_default_location) = match t.data_location {
        None => (false, false),
        Some(LOC_DEFAULT) => (false, true),
        Some(LOC_EXTERNAL) => (true, false),
        Some(v) => {
            return Err(LoadError::UnknownEnum {
                context,
                what: "tensor data_location",
                value: v as i64,
            });
        }
    };
    let numel = checked_numel(&t.dims).map_err(&invalid)?;
    let typed = nonempty_typed_fields(&t);
    let TensorProto {
        dims,
        data_type: _,
        segment,
        float_data,
        int32_data,
        string_data,
        int64_data,
        name,
        doc_string,
        raw_data,
        external_data,
        data_location: _,
        double_data,
        uint64_data,
        metadata_props,
    } = t;
    if !external && !external_data.is_empty() {
        return Err(invalid(
            "has external_data entries but data_location is not EXTERNAL".to_string(),
        ));
    }
    let (data, storage) = if external {
        if raw_data.is_some() || !typed.is_empty() {
            return Err(invalid(
                "has data_location EXTERNAL but also inline data".to_string(),
            ));
        }
        if dtype == DType::String {
            return Err(invalid(
                "STRING tensors cannot use external data".to_string(),
            ));
        }
        let entries = pairs_from_proto(external_data);
        let ext = ExternalRef { entries };
        let expected = checked_byte_len(dtype, numel).map_err(&invalid)?;
        let bytes = read_external(&ext, expected, cx, &context, label)?;
        (TensorBytes::Raw(bytes.into()), Storage::External(ext))
    } else if let Some(raw) = raw_data {
        if dtype == DType::String {
            return Err(invalid("STRING tensors cannot use raw_data".to_string()));
        }
        if let Some(f) = typed.first() {
            return Err(invalid(format!("has both raw_data and {}", f.name())));
        }
        let expected = checked_byte_len(dtype, numel).map_err(&invalid)?;
        if raw.len() != expected {
            return Err(invalid(format!(
                "raw_data has {} bytes, but {} dims {:?} need {expected}",
                raw.len(),
                dtype.onnx_name(),
                dims
            )));
        }
        (TensorBytes::Raw(raw.into()), Storage::Raw)
    } else {
        let field = typed_field(dtype);
        if let Some(f) = typed.iter().find(|f| **f != field) {
            return Err(invalid(format!(
                "{} holds data, but {} tensors store theirs in {}",
                f.name(),
                dtype.onnx_name(),
                field.name()
            )));
        }
        let count_err = |got: usize, expected: usize| {
            invalid(format!(
                "{} has {got} values, but {} dims {:?} need {expected}",
                field.name(),
                dtype.onnx_name(),
                dims
            ))
        };
        let data = match field {
            TypedField::String => {
                if string_data.len() != numel {
                    return Err(count_err(string_data.len(), numel));
                }
                TensorBytes::Strings(string_data)
            }
            TypedField::Float => {
                let per = if dtype == DType::Complex64 { 2 } else { 1 };
                let want = numel
                    .checked_mul(per)
                    .ok_or_else(|| invalid("element count overflows".into()))?;
                if float_data.len() != want {
                    return Err(count_err(float_data.len(), want));
                }
                TensorBytes::Raw(
                    float_data
                        .iter()
                        .flat_map(|x| x.to_bits().to_le_bytes())
                        .collect::<Vec<u8>>()
                        .into(),
                )
            }
            TypedField::Double => {
                let per = if dtype == DType::Complex128 { 2 } else { 1 };
                let want = numel
                    .checked_mul(per)
                    .ok_or_else(|| invalid("element count overflows".into()))?;
                if double_data.len() != want {
                    return Err(count_err(double_data.len(), want));
                }
                TensorBytes::Raw(
                    double_data
                        .iter()
                        .flat_map(|x| x.to_bits().to_le_bytes())
                        .collect::<Vec<u8>>()
                        .into(),
                )
            }
            TypedField::Int64 => {
                if int64_data.len() != numel {
                    return Err(count_err(int64_data.len(), numel));
                }
                TensorBytes::Raw(
                    int64_data
                        .iter()
                        .flat_map(|x| x.to_le_bytes())
                        .collect::<Vec<u8>>()
                        .into(),
                )
            }
            TypedField::Uint64 => {
                if uint64_data.len() != numel {
                    return Err(count_err(uint64_data.len(), numel));
                }
                let mut out =
                    Vec::with_capacity(uint64_data.len() * if dtype == DType::U32 { 4 } else { 8 });
                for (i, &x) in uint64_data.iter().enumerate() {
                    if dtype == DType::U32 {
                        let v = u32::try_from(x).map_err(|_| {
                            invalid(format!("uint64_data[{i}] = {x} is out of range for UINT32"))
                        })?;
                        out.extend_from_slice(&v.to_le_bytes());
                    } else {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                }
                TensorBytes::Raw(out.into())
            }
            TypedField::Int32 => {
                let width = int32_width(dtype);
                let want = if width == 1 && dtype.bits().is_some_and(|b| b < 8) {
                    checked_byte_len(dtype, numel).map_err(&invalid)?
                } else {
                    numel
                };
                if int32_data.len() != want {
                    return Err(count_err(int32_data.len(), want));
                }
                let (lo, hi) = int32_range(dtype);
                let mut out = Vec::with_capacity(int32_data.len() * width);
                for (i, &x) in int32_data.iter().enumerate() {
                    if (x as i64) < lo || (x as i64) > hi {
                        return Err(invalid(format!(
                            "int32_data[{i}] = {x} is out of range for {} (expected {lo}..={hi})",
                            dtype.onnx_name()
                        )));
                    }
                    out.extend_from_slice(&x.to_le_bytes()[..width]);
                }
                TensorBytes::Raw(out.into())
            }
        };
        (data, Storage::Typed)
    };
    Ok(TensorData {
        name,
        dtype,
        dims,
        data,
        storage,
        doc_string,
        segment: segment.map(|s| (s.begin, s.end)),
        metadata_props: pairs_from_proto(metadata_props),
        explicit_default_location,
    })
}

/// Checks that an external-data `location` is a relative path that stays inside its directory:
/// not absolute, and without any `..` component (also rejected where it would stay inside, so that
/// a location always names one file below the directory, lexically).
pub(crate) fn location_is_contained(location: &str) -> bool {
    let p = Path::new(location);
    if location.is_empty()
        || p.is_absolute()
        || location.starts_with('/')
        || location.starts_with('\\')
    {
        return false;
    }
    let mut normal = 0usize;
    for c in p.components() {
        match c {
            Component::Normal(_) => normal += 1,
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    // Backslash-separated `..` (Windows-style locations read on Unix) must not sneak through.
    if location.split(['/', '\\']).any(|s| s == "..") {
        return false;
    }
    normal > 0
}

/// A normalized key for a relative location (`./a//b` and `a/b` are the same file).
pub(crate) fn location_key(location: &str) -> String {
    Path::new(location)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn parse_u64(ext: &ExternalRef, key: &str) -> Result<Option<u64>, String> {
    match ext.get(key) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("'{key}' entry '{v}' is not a non-negative integer")),
    }
}

/// Reads the bytes of an external tensor: seeks to `offset` and reads exactly `length` bytes
/// (the rest of the file when `length` is absent), after validating the location and the range.
fn read_external(
    ext: &ExternalRef,
    expected: usize,
    cx: &TensorCx<'_>,
    context: &str,
    label: &str,
) -> Result<Vec<u8>, LoadError> {
    let tensor = label.to_string();
    let location = ext.location().unwrap_or("").to_string();
    let Some(base) = cx.base_dir else {
        return Err(LoadError::ExternalNoBaseDir {
            context: context.to_string(),
            tensor,
            location,
        });
    };
    if !location_is_contained(&location) {
        return Err(LoadError::ExternalEscapes {
            context: context.to_string(),
            tensor,
            location,
        });
    }
    let file: PathBuf = base.join(&location);
    let bad = |message: String| LoadError::ExternalInvalid {
        context: context.to_string(),
        tensor: label.to_string(),
        file: file.clone(),
        message,
    };
    let io = |source: std::io::Error| LoadError::ExternalIo {
        context: context.to_string(),
        tensor: label.to_string(),
        file: file.clone(),
        source,
    };
    let offset = parse_u64(ext, "offset").map_err(&bad)?.unwrap_or(0);
    let length = parse_u64(ext, "length").map_err(&bad)?;
    let mut f = File::open(&file).map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(bad("the location is a directory".to_string()));
    }
    let file_len = meta.len();
    let length = match length {
        Some(l) => l,
        None => file_len.saturating_sub(offset),
    };
    if offset.checked_add(length).is_none_or(|end| end > file_len) {
        return Err(LoadError::ExternalOutOfRange {
            context: context.to_string(),
            tensor,
            file,
            offset,
            length,
            file_len,
        });
    }
    if length != expected as u64 {
        return Err(bad(format!(
            "holds {length} bytes at offset {offset}, but the tensor's type and dims need {expected}"
        )));
    }
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut buf = vec![0u8; expected];
    f.read_exact(&mut buf).map_err(io)?;
    Ok(buf)
}

/// How the exporter writes a tensor's data.
pub(crate) enum DataOut<'a> {
    /// As its storage says; `External` storage is written as a reference (entries unchanged).
    AsIs,
    /// Inline: as its storage says, except that `External` storage becomes `raw_data`.
    Inline,
    /// No data at all (the size-estimation skeleton).
    Omit,
    /// As external data with these entries (the caller writes the bytes).
    External(&'a [(String, String)]),
}

/// Converts [`TensorData`] into a `TensorProto` named `name`.
pub(crate) fn tensor_to_proto(
    td: &TensorData,
    name: Option<String>,
    out: DataOut<'_>,
) -> TensorProto {
    let mut t = TensorProto {
        dims: td.dims.clone(),
        data_type: Some(td.dtype.code()),
        segment: td
            .segment
            .map(|(begin, end)| tensor_proto::Segment { begin, end }),
        name,
        doc_string: td.doc_string.clone(),
        metadata_props: pairs_to_proto(&td.metadata_props),
        data_location: if td.explicit_default_location {
            Some(LOC_DEFAULT)
        } else {
            None
        },
        ..Default::default()
    };
    match out {
        DataOut::Omit => {}
        DataOut::External(entries) => {
            t.data_location = Some(LOC_EXTERNAL);
            t.external_data = pairs_to_proto(entries);
        }
        DataOut::AsIs | DataOut::Inline => match &td.storage {
            Storage::External(ext) if matches!(out, DataOut::AsIs) => {
                t.data_location = Some(LOC_EXTERNAL);
                t.external_data = pairs_to_proto(&ext.entries);
            }
            Storage::Raw | Storage::External(_) => match &td.data {
                TensorBytes::Raw(b) => t.raw_data = Some(b.to_vec()),
                TensorBytes::Strings(s) => t.string_data = s.clone(),
            },
            Storage::Typed => fill_typed(&mut t, td),
        },
    }
    t
}

/// Fills the typed field for `td` (falling back to `raw_data` when the bytes cannot be split into
/// whole elements, which no imported tensor has).
fn fill_typed(t: &mut TensorProto, td: &TensorData) {
    let bytes = match &td.data {
        TensorBytes::Strings(s) => {
            t.string_data = s.clone();
            return;
        }
        TensorBytes::Raw(b) => b,
    };
    let field = typed_field(td.dtype);
    let width = match field {
        TypedField::Float => 4,
        TypedField::Double | TypedField::Int64 => 8,
        TypedField::Uint64 => {
            if td.dtype == DType::U32 {
                4
            } else {
                8
            }
        }
        TypedField::Int32 => int32_width(td.dtype),
        TypedField::String => 0,
    };
    if width == 0 || bytes.len() % width != 0 {
        tracing::warn!(dtype = %td.dtype, len = bytes.len(), "tensor bytes do not split into typed elements; writing raw_data");
        t.raw_data = Some(bytes.to_vec());
        return;
    }
    let chunks = bytes.chunks_exact(width);
    match field {
        TypedField::Float => {
            t.float_data = chunks
                .map(|c| f32::from_bits(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        TypedField::Double => t.double_data = chunks.map(|c| f64::from_bits(u64_le(c))).collect(),
        TypedField::Int64 => t.int64_data = chunks.map(|c| u64_le(c) as i64).collect(),
        TypedField::Uint64 => t.uint64_data = chunks.map(u64_le).collect(),
        TypedField::Int32 => t.int32_data = chunks.map(|c| int32_of_chunk(td.dtype, c)).collect(),
        TypedField::String => {}
    }
}

/// Little-endian u64 of up to 8 bytes (zero-extended).
fn u64_le(c: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(c) {
        *d = *s;
    }
    u64::from_le_bytes(b)
}

fn varint_len(v: u64) -> usize {
    prost::encoding::encoded_len_varint(v)
}

/// Encoded size of the data field(s) `td` would have when written inline (used to decide whether
/// a model fits the protobuf limit without encoding its data).
pub(crate) fn inline_data_len(td: &TensorData) -> usize {
    let field = |payload: usize| 1 + varint_len(payload as u64) + payload;
    match (&td.data, &td.storage) {
        (TensorBytes::Strings(s), _) => s.iter().map(|x| field(x.len())).sum(),
        (TensorBytes::Raw(b), Storage::Typed) => {
            let width = match typed_field(td.dtype) {
                TypedField::Int32 => int32_width(td.dtype),
                TypedField::Int64 => 8,
                TypedField::Uint64 => {
                    if td.dtype == DType::U32 {
                        4
                    } else {
                        8
                    }
                }
                _ => return field(b.len()),
            };
            let payload: usize = b
                .chunks(width)
                .map(|c| match typed_field(td.dtype) {
                    TypedField::Int32 => varint_len(int32_of_chunk(td.dtype, c) as i64 as u64),
                    _ => varint_len(u64_le(c)),
                })
                .sum();
            field(payload)
        }
        (TensorBytes::Raw(b), _) => field(b.len()),
    }
}

/// The raw bytes of a tensor, shared.
pub(crate) fn raw_bytes(td: &TensorData) -> Option<Arc<[u8]>> {
    match &td.data {
        TensorBytes::Raw(b) => Some(b.clone()),
        TensorBytes::Strings(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert!(location_is_contained("w.bin"));
        assert!(location_is_contained("./sub/w.bin"));
        assert!(!location_is_contained("sub/../w.bin"));
        assert!(!location_is_contained("../w.bin"));
        assert!(!location_is_contained("sub/../../w.bin"));
        assert!(!location_is_contained("/etc/passwd"));
        assert!(!location_is_contained("..\\w.bin"));
        assert!(!location_is_contained(""));
        assert!(!location_is_contained("."));
        assert_eq!(location_key("./a//b"), "a/b");
    }

    #[test]
    fn int32_canonical_values() {
        assert_eq!(int32_of_chunk(DType::I8, &[0xff]), -1);
        assert_eq!(int32_of_chunk(DType::U8, &[0xff]), 255);
        assert_eq!(int32_of_chunk(DType::F16, &[0x00, 0x80]), 0x8000);
        assert_eq!(int32_of_chunk(DType::I16, &[0x00, 0x80]), -32768);
        assert_eq!(int32_of_chunk(DType::I4, &[0xf7]), 0xf7);
    }
}
