//! x86_64 SIMD int8 paths. Each path is a zero-sized token that can only be built on a CPU with its
//! features (`is_x86_feature_detected!`), so the safe [`Kernel`](super::block::Kernel) methods may
//! call its `#[target_feature]` functions. The output stages and packing are the generic (safe)
//! code, inlined into those functions so that LLVM vectorizes them for the path's features.
//! All `unsafe` of the int8 kernels lives in this module.

mod avx2;
mod avx512vnni;
mod avxvnni;

pub(crate) use avx2::{Avx2, LAYOUT as AVX2_LAYOUT};
pub(crate) use avx512vnni::{Avx512Vnni, LAYOUT as AVX512VNNI_LAYOUT};
pub(crate) use avxvnni::{AvxVnni, LAYOUT as AVXVNNI_LAYOUT};
