//! ONNX's backend test data (onnx 1.22.0, committed under
//! crates/byob-tensor/tests/data): reading its tensors, comparing like
//! numpy's assert_allclose, and the light models' dummy inputs. Shared by
//! byob-tensor's and byob-webgpu's test suites (the latter includes this
//! file by path).

#![allow(dead_code)] // each test binary uses its own part

pub mod conformance;

use byob_tensor::model::tensor_from_bytes;
use byob_tensor::{Data, Dim, Session, Tensor};
use std::path::{Path, PathBuf};

pub fn data_dir() -> PathBuf {
    // `..` from either crate's directory: both live in crates/.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../byob-tensor/tests/data/onnx-1.22.0")
}

/// A TensorProto file, or why it cannot be read (a type byob does not
/// carry, say).
pub fn read_tensor(path: &Path) -> Result<Tensor, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    tensor_from_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Element-wise `|a - e| <= atol + rtol * |e|` (NaNs match NaNs), or the
/// first element that is not.
pub fn close(actual: &Tensor, expected: &Tensor, rtol: f64, atol: f64) -> Result<(), String> {
    if actual.shape() != expected.shape() {
        return Err(format!("shape {:?}, expected {:?}", actual.shape(), expected.shape()));
    }
    let pairs: Vec<(f64, f64)> = match (actual.data(), expected.data()) {
        (Data::F32(a), Data::F32(e)) => a.iter().zip(e).map(|(&a, &e)| (a as f64, e as f64)).collect(),
        (Data::F64(a), Data::F64(e)) => a.iter().zip(e).map(|(&a, &e)| (a, e)).collect(),
        (Data::F16(a), Data::F16(e)) => a.iter().zip(e).map(|(&a, &e)| (a.to_f64(), e.to_f64())).collect(),
        (Data::BF16(a), Data::BF16(e)) => a.iter().zip(e).map(|(&a, &e)| (a.to_f64(), e.to_f64())).collect(),
        (a, e) if a == e => return Ok(()),
        (a, e) if a.dtype() != e.dtype() => return Err(format!("type {}, expected {}", a.dtype(), e.dtype())),
        _ => return Err("values differ".into()),
    };
    for (i, (a, e)) in pairs.into_iter().enumerate() {
        let ok = (a.is_nan() && e.is_nan()) || a == e || (a - e).abs() <= atol + rtol * e.abs();
        if !ok {
            return Err(format!("element {i}: {a}, expected {e}"));
        }
    }
    Ok(())
}

/// ONNX's runner feeds the light models `arange(n) / n` as float32 in the
/// declared shape (unknown dimensions as 1).
pub fn dummy_feeds(session: &Session) -> Vec<(String, Tensor)> {
    session
        .inputs()
        .map(|v| {
            let shape: Vec<usize> = v.shape.as_ref().map(|s| s.iter().map(|d| if let Dim::Known(n) = d { *n } else { 1 }).collect()).unwrap_or_default();
            let n: usize = shape.iter().product();
            let data = (0..n).map(|i| (i as f64 / n as f64) as f32).collect();
            (v.name.clone(), Tensor::f32(shape, data).expect("matching length"))
        })
        .collect()
}
