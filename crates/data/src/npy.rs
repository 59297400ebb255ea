//! NumPy `.npy` files (format versions 1.0, 2.0 and 3.0): read any little- or big-endian numeric or
//! bool array in C or Fortran order; write C-order little-endian version 1.0 (2.0 for huge headers).

use crate::DataError;
use qtool_tensor::{DType, Tensor, checked_numel};
use std::io::{Read, Write};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

fn descr_of(d: DType) -> Option<&'static str> {
    Some(match d {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::F16 => "<f2",
        DType::U8 => "|u1",
        DType::I8 => "|i1",
        DType::I16 => "<i2",
        DType::U16 => "<u2",
        DType::I32 => "<i4",
        DType::U32 => "<u4",
        DType::I64 => "<i8",
        DType::U64 => "<u8",
        DType::Bool => "|b1",
        _ => return None,
    })
}

/// (dtype, element width, big endian) of a descr string.
fn parse_descr(s: &str) -> Option<(DType, usize, bool)> {
    let (order, rest) = s.split_at(1);
    let big = match order {
        "<" | "|" | "=" => false,
        ">" => true,
        _ => return None,
    };
    Some(match rest {
        "f4" => (DType::F32, 4, big),
        "f8" => (DType::F64, 8, big),
        "f2" => (DType::F16, 2, big),
        "u1" => (DType::U8, 1, big),
        "i1" => (DType::I8, 1, big),
        "b1" => (DType::Bool, 1, big),
        "i2" => (DType::I16, 2, big),
        "u2" => (DType::U16, 2, big),
        "i4" => (DType::I32, 4, big),
        "u4" => (DType::U32, 4, big),
        "i8" => (DType::I64, 8, big),
        "u8" => (DType::U64, 8, big),
        _ => return None,
    })
}

/// Parsed `.npy` header.
#[derive(Debug, PartialEq)]
struct Header {
    descr: String,
    fortran: bool,
    shape: Vec<usize>,
}

/// Reads a Python-literal value for `key` from the header dict (string, bool or tuple of ints).
fn dict_value<'a>(h: &'a str, key: &str) -> Option<&'a str> {
    let k1 = format!("'{key}'");
    let k2 = format!("\"{key}\"");
    let at = h
        .find(&k1)
        .map(|i| i + k1.len())
        .or_else(|| h.find(&k2).map(|i| i + k2.len()))?;
    let rest = h[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else if rest.starts_with('\'') || rest.starts_with('"') {
        let q = &rest[..1];
        rest[1..].find(q)? + 2
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

fn parse_header(h: &str) -> Result<Header, String> {
    let descr = dict_value(h, "descr").ok_or("no 'descr' in header")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"').to_string();
    let fortran = match dict_value(h, "fortran_order").ok_or("no 'fortran_order' in header")? {
        "True" => true,
        "False" => false,
        other => return Err(format!("fortran_order is {other:?}")),
    };
    let shape_s = dict_value(h, "shape").ok_or("no 'shape' in header")?;
    let inner = shape_s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or("shape is not a tuple")?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| format!("bad dimension {s:?} in shape"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Header {
        descr,
        fortran,
        shape,
    })
}

/// Reads a `.npy` array from bytes. `what` names the source in errors.
pub fn read_npy(bytes: &[u8], what: &str) -> Result<Tensor, DataError> {
    let bad = |msg: String| DataError::Format {
        path: what.to_string(),
        msg,
    };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("not a .npy file (bad magic)".into()));
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("truncated header".into()));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(bad(format!("unsupported .npy format version {v}"))),
    };
    let end = start
        .checked_add(hlen)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| bad("truncated header".into()))?;
    let header =
        std::str::from_utf8(&bytes[start..end]).map_err(|_| bad("header is not text".into()))?;
    let h = parse_header(header).map_err(bad)?;
    let (dtype, width, big) = parse_descr(&h.descr).ok_or_else(|| {
        bad(format!(
            "unsupported element type {:?} (object, string or structured arrays are not tensors)",
            h.descr
        ))
    })?;
    let n = checked_numel(&h.shape).ok_or_else(|| bad("shape overflows".into()))?;
    let need = n
        .checked_mul(width)
        .ok_or_else(|| bad("shape overflows".into()))?;
    let data = &bytes[end..];
    if data.len() < need {
        return Err(bad(format!(
            "data holds {} bytes, shape {:?} of {} needs {need}",
            data.len(),
            h.shape,
            h.descr
        )));
    }
    let mut raw = data[..need].to_vec();
    if big && width > 1 {
        for c in raw.chunks_exact_mut(width) {
            c.reverse();
        }
    }
    if !h.fortran {
        return Tensor::from_le_bytes(dtype, &h.shape, &raw).map_err(|e| bad(e.to_string()));
    }
    // Fortran order: the bytes are the C-order array of the reversed shape; transpose back.
    let rev: Vec<usize> = h.shape.iter().rev().copied().collect();
    let t = Tensor::from_le_bytes(dtype, &rev, &raw).map_err(|e| bad(e.to_string()))?;
    Ok(transpose_all(t))
}

fn transpose_all(t: Tensor) -> Tensor {
    qtool_tensor::dispatch_tensor!(t,
        a => {
            let r = a.reversed_axes();
            let shape = r.shape().to_vec();
            let v: Vec<_> = r.iter().cloned().collect();
            Tensor::from_vec(&shape, v).expect("same element count")
        },
        p => Tensor::Packed(p))
}

/// Writes a tensor as `.npy` (C order, little endian).
pub fn write_npy(t: &Tensor, out: &mut impl Write) -> Result<(), DataError> {
    let descr = descr_of(t.dtype()).ok_or_else(|| {
        DataError::Unsupported(format!("cannot write {} tensors to .npy", t.dtype()))
    })?;
    let shape = match t.shape().len() {
        0 => "()".to_string(),
        1 => format!("({},)", t.shape()[0]),
        _ => format!(
            "({})",
            t.shape()
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so that the data starts at a multiple of 64 bytes, ending the header with '\n'.
    let (version, pre) = if header.len() + 11 < 65536 {
        (1u8, 10)
    } else {
        (2u8, 12)
    };
    let total = (pre + header.len() + 1).div_ceil(64) * 64;
    header.push_str(&" ".repeat(total - pre - header.len() - 1));
    header.push('\n');
    let io = |e: std::io::Error| DataError::Io {
        path: "<output>".into(),
        source: e,
    };
    out.write_all(MAGIC).map_err(io)?;
    out.write_all(&[version, 0]).map_err(io)?;
    if version == 1 {
        out.write_all(&(header.len() as u16).to_le_bytes())
            .map_err(io)?;
    } else {
        out.write_all(&(header.len() as u32).to_le_bytes())
            .map_err(io)?;
    }
    out.write_all(header.as_bytes()).map_err(io)?;
    out.write_all(&t.to_le_bytes().expect("numeric tensor"))
        .map_err(io)?;
    Ok(())
}

/// `.npy` bytes of a tensor.
pub fn npy_bytes(t: &Tensor) -> Result<Vec<u8>, DataError> {
    let mut v = Vec::new();
    write_npy(t, &mut v)?;
    Ok(v)
}

/// Reads a whole `.npy` from a reader.
pub fn read_npy_from(mut r: impl Read, what: &str) -> Result<Tensor, DataError> {
    let mut b = Vec::new();
    r.read_to_end(&mut b).map_err(|e| DataError::Io {
        path: what.into(),
        source: e,
    })?;
    read_npy(&b, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_type() {
        for d in [
            DType::F32,
            DType::F64,
            DType::F16,
            DType::U8,
            DType::I8,
            DType::I16,
            DType::U16,
            DType::I32,
            DType::U32,
            DType::I64,
            DType::U64,
            DType::Bool,
        ] {
            let n = 6;
            let bytes: Vec<u8> = (0..d.byte_len(n).unwrap())
                .map(|i| {
                    if d == DType::Bool {
                        (i % 2) as u8
                    } else {
                        (i as u8).wrapping_mul(7)
                    }
                })
                .collect();
            for shape in [vec![2usize, 3], vec![6], vec![1, 2, 3]] {
                let t = Tensor::from_le_bytes(d, &shape, &bytes).unwrap();
                let b = npy_bytes(&t).unwrap();
                assert_eq!(read_npy(&b, "t").unwrap(), t);
            }
        }
        let s = Tensor::scalar(3.5f32);
        assert_eq!(read_npy(&npy_bytes(&s).unwrap(), "s").unwrap(), s);
    }

    #[test]
    fn header_is_padded_to_64() {
        let t = Tensor::from_vec(&[2, 2], vec![1f32, 2., 3., 4.]).unwrap();
        let b = npy_bytes(&t).unwrap();
        assert!((b.len() - 16).is_multiple_of(64));
    }

    #[test]
    fn fortran_and_big_endian() {
        // A 2x3 f4 big-endian Fortran-order array [[1,2,3],[4,5,6]] stored column-major.
        let mut b = Vec::new();
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&[1, 0]);
        let mut h = "{'descr': '>f4', 'fortran_order': True, 'shape': (2, 3), }".to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        for v in [1f32, 4., 2., 5., 3., 6.] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        let t = read_npy(&b, "f").unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.to_vec::<f32>().unwrap(), vec![1., 2., 3., 4., 5., 6.]);
    }

    #[test]
    fn errors_are_clear() {
        assert!(
            read_npy(b"hello", "x.npy")
                .unwrap_err()
                .to_string()
                .contains("x.npy")
        );
        let t = Tensor::from_vec(&[4], vec![1f32, 2., 3., 4.]).unwrap();
        let b = npy_bytes(&t).unwrap();
        let e = read_npy(&b[..b.len() - 3], "y.npy")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs 16"), "{e}");
        let h = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }\n";
        let mut obj = b"\x93NUMPY\x01\x00".to_vec();
        obj.extend_from_slice(&(h.len() as u16).to_le_bytes());
        obj.extend_from_slice(h.as_bytes());
        obj.extend_from_slice(&[0; 8]);
        let e = read_npy(&obj, "o").unwrap_err().to_string();
        assert!(e.contains("unsupported element type"), "{e}");
        for cut in 0..b.len() {
            let _ = read_npy(&b[..cut], "cut");
        }
    }
}
