//! NumPy `.npz` archives: a zip of `.npy` members keyed by name (stored or deflated).

use crate::DataError;
use crate::npy::{npy_bytes, read_npy};
use qtool_tensor::Tensor;
use std::io::{Read, Seek, Write};

/// Reads every array of an `.npz`, in archive order, keyed by member name without `.npy`.
pub fn read_npz(r: impl Read + Seek, what: &str) -> Result<Vec<(String, Tensor)>, DataError> {
    let bad = |msg: String| DataError::Format {
        path: what.to_string(),
        msg,
    };
    let mut z = zip::ZipArchive::new(r).map_err(|e| bad(format!("not a zip archive: {e}")))?;
    let mut out = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).map_err(|e| bad(format!("member {i}: {e}")))?;
        let name = f.name().to_string();
        let key = name.strip_suffix(".npy").unwrap_or(&name).to_string();
        let mut b = Vec::new();
        f.read_to_end(&mut b)
            .map_err(|e| bad(format!("member {name}: {e}")))?;
        out.push((key, read_npy(&b, &format!("{what}:{name}"))?));
    }
    Ok(out)
}

/// Writes arrays as an uncompressed `.npz` (as `numpy.savez`), members in the given order with a fixed
/// timestamp so the same arrays give the same bytes.
pub fn write_npz(arrays: &[(String, Tensor)], w: impl Write + Seek) -> Result<(), DataError> {
    let mut z = zip::ZipWriter::new(w);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .large_file(true);
    let err = |e: zip::result::ZipError| DataError::Unsupported(format!("writing npz: {e}"));
    for (name, t) in arrays {
        z.start_file(format!("{name}.npy"), opts).map_err(err)?;
        z.write_all(&npy_bytes(t)?).map_err(|e| DataError::Io {
            path: "<npz>".into(),
            source: e,
        })?;
    }
    z.finish().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn round_trip_and_deterministic() {
        let a = vec![
            (
                "x".to_string(),
                Tensor::from_vec(&[2], vec![1f32, 2.]).unwrap(),
            ),
            (
                "idx".to_string(),
                Tensor::from_vec(&[3], vec![1i64, 2, 3]).unwrap(),
            ),
        ];
        let mut b1 = Cursor::new(Vec::new());
        write_npz(&a, &mut b1).unwrap();
        let mut b2 = Cursor::new(Vec::new());
        write_npz(&a, &mut b2).unwrap();
        assert_eq!(b1.get_ref(), b2.get_ref());
        let back = read_npz(Cursor::new(b1.into_inner()), "t.npz").unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn garbage_is_an_error() {
        let e = read_npz(Cursor::new(b"not a zip".to_vec()), "g.npz")
            .unwrap_err()
            .to_string();
        assert!(e.contains("g.npz"), "{e}");
    }
}
