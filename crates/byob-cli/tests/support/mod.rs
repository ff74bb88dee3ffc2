//! Helpers shared by the CLI's end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `byob` binary with `args`.
pub fn byob(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_byob")).args(args).output().expect("byob runs")
}

/// The example graphs.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/graphs")
}

/// Writes `dir/name`: a float32 `.npy` file (version 1, its header padded
/// as NumPy pads it) whose header says `header_shape` (a Python tuple,
/// `(1, 3)`) and whose data are `values`, whatever they number: tests
/// craft files whose shape and data disagree.
pub fn npy(dir: &Path, name: &str, header_shape: &str, values: &[f32]) -> PathBuf {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {header_shape}, }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}
