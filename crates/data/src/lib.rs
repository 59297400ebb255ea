//! Tensor files for qtool's inputs, outputs and calibration data: `.npy`, `.npz`, and file loading
//! helpers with errors that name the file.

pub mod npy;
pub mod npz;

use qtool_tensor::Tensor;
use std::path::Path;

/// Errors reading or writing tensor files.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Format { path: String, msg: String },
    #[error("{0}")]
    Unsupported(String),
}

/// Reads a `.npy` file.
pub fn load_npy(path: &Path) -> Result<Tensor, DataError> {
    let b = std::fs::read(path).map_err(|e| DataError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    npy::read_npy(&b, &path.display().to_string())
}

/// Reads a `.npz` file.
pub fn load_npz(path: &Path) -> Result<Vec<(String, Tensor)>, DataError> {
    let f = std::fs::File::open(path).map_err(|e| DataError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    npz::read_npz(std::io::BufReader::new(f), &path.display().to_string())
}
