//! Errors of the GPU side, kept apart by what a caller can do about them:
//! no adapter (use the CPU), a lost device or exhausted memory (rebuild the
//! session), a validation error (a bug here or in the model), and misuse of
//! the data manager or a kernel (a bug in the caller).

use crate::data_manager::BufferId;

/// Why a GPU operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    #[error("no GPU adapter found ({0}); on Linux without a GPU install Mesa's software Vulkan driver: apt-get install mesa-vulkan-drivers libvulkan1")]
    NoAdapter(String),
    #[error("the GPU adapter refused to open a device: {0}")]
    RequestDevice(String),
    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),
    #[error("the GPU ran out of memory during {0}")]
    OutOfMemory(String),
    #[error("GPU validation error during {what}: {message}")]
    Validation { what: String, message: String },
    #[error("internal GPU error during {what}: {message}")]
    Internal { what: String, message: String },
    #[error("unknown GPU buffer {0} (never created, or already released)")]
    UnknownBuffer(BufferId),
    #[error("{what}: size mismatch: {expected} bytes expected, {actual} given")]
    SizeMismatch { what: String, expected: u64, actual: u64 },
    #[error("reading back GPU buffer {id}: mapping failed: {message}")]
    Map { id: BufferId, message: String },
    #[error("node {node:?} ({op}): {what}")]
    Kernel { node: String, op: String, what: String },
    #[error("{op} (opset {opset}) has no GPU kernel")]
    Unsupported { op: String, opset: i64 },
}

impl GpuError {
    /// Whether the device is unusable from now on and must be rebuilt.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::DeviceLost(_) | Self::OutOfMemory(_))
    }

    pub(crate) fn from_wgpu(error: wgpu::Error, what: &str) -> Self {
        match error {
            wgpu::Error::OutOfMemory { .. } => Self::OutOfMemory(what.to_string()),
            wgpu::Error::Validation { description, .. } => Self::Validation { what: what.to_string(), message: description },
            wgpu::Error::Internal { description, .. } => Self::Internal { what: what.to_string(), message: description },
        }
    }
}
