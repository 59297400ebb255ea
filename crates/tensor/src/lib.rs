//! qtool's leaf crate: element types, the runtime tensor, and the one quantization arithmetic.

mod dtype;
pub mod quant;
mod tensor;

pub use dtype::DType;
pub use half::{bf16, f16};
pub use tensor::{Element, PackedTensor, Tensor, TensorError, checked_numel, shape_from_dims};
