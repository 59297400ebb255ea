//! qtool's graph interpreter: runs an IR model on named inputs exactly like ONNX Runtime's CPU
//! provider would, with an observer hook on every value (for calibration and debugging).
//!
//! [`Executor`] compiles a [`qtool_ir::Model`] once (topological order, constants, support check,
//! last uses) and runs it many times; [`ops`] is the single op-evaluation dispatch point, also
//! usable on its own (e.g. for constant folding).

pub mod error;
mod interp;
pub mod ops;
pub mod profile;
mod util;

pub use error::{ExecError, OpError};
pub use interp::{ExecOptions, Executor, RunStats};
pub use ops::{OpCtx, PrepInput, Prepared, eval, eval_with, is_supported, prepare};
pub use profile::{NodeTime, OpTypeTime, Profile};
