//! ONNX's backend test data for the WebGPU provider's tests: the shared
//! helpers of byob-tensor's suite, and where nodes were placed.

#![allow(dead_code)] // each test binary uses its own part

#[path = "../../../byob-tensor/tests/support/mod.rs"]
mod shared;

pub use shared::*;

use byob_tensor::Session;

/// The nodes `session` placed on `provider`.
pub fn placed_on(session: &Session, provider: &str) -> usize {
    session.placements().iter().filter(|p| p.provider == provider).count()
}
