//! qtool's compute kernels: ONNX-semantics f32 convolution, transposed convolution, Gemm/MatMul,
//! pooling and Resize on flat row-major buffers, and the int8 GEMM/convolution kernels ([`int8`]).
//!
//! # Calling convention
//! Every kernel takes its inputs as `&[f32]` plus a shape (`&[usize]`, row-major, NCHW-style for the
//! spatial ops) and an explicit parameter struct, and writes into a caller-allocated `&mut [f32]`
//! whose shape the caller gets from the matching `*_output_shape` helper. Nothing here knows about a
//! graph, a node or an op name. Bad parameters (shape mismatches, wrong buffer lengths, zero strides,
//! ...) return [`KernelError`]; kernels never panic on them.
//!
//! Parallelism uses rayon (the global pool, or whatever pool the caller installs); matrixmultiply
//! runs single-threaded inside each task. [`reference`] holds slow, obvious oracles for tests.

mod blas;
pub mod conv;
pub mod conv_transpose;
mod error;
mod f32x;
pub mod gemm;
pub mod int8;
pub mod pool;
pub mod reference;
pub mod resize;
pub mod spatial;
mod util;

#[cfg(test)]
mod testutil;

pub use conv::{
    Activation, ConvParams, ConvWeights, conv, conv_output_shape, conv_prepacked,
    conv_with_activation,
};
pub use conv_transpose::{
    ConvTransposeParams, conv_transpose, conv_transpose_output_shape, conv_transpose_pads,
};
pub use error::{KernelError, Result};
pub use gemm::{GemmParams, gemm, gemm_output_shape, matmul, matmul_output_shape};
pub use int8::{
    KernelPath, OutputStage, PackedB, PackedConvWeights, QConvParams, QOut, QType, qconv,
    qconv_output_shape, qgemm, qgemm_output_shape,
};
pub use pool::{
    PoolParams, average_pool, global_average_pool, global_max_pool, max_pool, pool_output_shape,
};
pub use resize::{
    CoordinateTransform, KeepAspectRatioPolicy, NearestMode, ResizeMode, ResizeParams, ResizeShape,
    resize, resize_output_shape,
};
pub use spatial::{AutoPad, resolve_auto_pad};
