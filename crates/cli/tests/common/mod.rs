//! Helpers shared by the command-line tests: run the `qtool` binary and check how it ended.
// Each test binary uses a subset of these.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `qtool` binary with `args`.
pub fn qtool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qtool"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `qtool`, asserts it succeeded, and returns its standard output.
pub fn ok(args: &[&str]) -> String {
    let out = qtool(args);
    assert!(
        out.status.success(),
        "qtool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `qtool`, asserts it failed cleanly (an error, never a panic), and returns its standard
/// error.
pub fn fails(args: &[&str]) -> String {
    let out = qtool(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "qtool {args:?} succeeded");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// As [`fails`], and the error contains `want`.
pub fn fails_with(args: &[&str], want: &str) {
    let err = fails(args);
    assert!(
        err.contains(want),
        "qtool {args:?}: expected '{want}' in: {err}"
    );
}

/// A path as a command-line argument.
pub fn p(x: &Path) -> String {
    x.to_str().unwrap().to_string()
}
