//! Calibration for qtool: streaming, exactly mergeable statistics of a model's activations, ranges
//! from them with any method, the data sources that feed the model, and the driver.
//!
//! - [`stats`]: [`CalibStats`], the observer state and statistics file: per tensor (and per channel)
//!   exact min/max, NaN/Inf counts and a [`hist::Histogram`] whose bin width is a power of two that
//!   only grows by whole factors, so merging shards is exact ([`merge`]).
//! - [`ort_hist`]: ONNX Runtime's own histograms (numpy's float32 binning), collected in a second
//!   pass for the "ort" mode.
//! - [`ranges`]: [`compute_ranges`] with MinMax, Percentile, Entropy and MSE, in qtool's own mode or
//!   reproducing ONNX Runtime's `calibrate.py`.
//! - [`source`]: [`DataSource`]s (.npy, directory of .npy, .npz, ONNX test-data directories, image
//!   folders) and the sample order (limit, seeded shuffle, shards).
//! - [`preprocess`]: image decoding and the declared preprocessing.
//! - [`driver`]: [`calibrate`], which runs the executor over a source and folds every observed tensor
//!   into the statistics as it is produced.

pub mod driver;
pub mod exact;
pub mod hist;
pub mod ort_hist;
pub mod preprocess;
pub mod ranges;
pub mod source;
pub mod stats;

pub use driver::{CalibOptions, TensorSelection, calibrate};
pub use preprocess::{ChannelOrder, Layout, Preprocess, Resize};
pub use ranges::{HistMode, Method, RangeSettings, Ranges, TensorRange, compute_ranges};
pub use source::{
    DataSource, FileLayout, ImageFolderSource, NpyDirSource, NpySource, NpzSource,
    OnnxTestDataSource, Sample, SampleOrder, Shard, SplitMix64, TensorDecoder,
};
pub use stats::{CalibStats, StatsConfig, TensorStats, merge};

/// Errors of calibration. Every one names the file, tensor or setting it is about.
#[derive(Debug, thiserror::Error)]
pub enum CalibError {
    #[error("{path}: {msg}")]
    Source { path: String, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Data(#[from] qtool_data::DataError),
    #[error("tensor '{tensor}': {msg}")]
    Tensor { tensor: String, msg: String },
    #[error("cannot merge calibration statistics: {0}")]
    Merge(String),
    #[error("calibration statistics file {path}: {msg}")]
    StatsFile { path: String, msg: String },
    #[error("sample {origin}: {source}")]
    Exec {
        origin: String,
        source: Box<qtool_exec::ExecError>,
    },
    #[error("invalid calibration settings: {0}")]
    Settings(String),
    #[error("{0}")]
    Empty(String),
}
