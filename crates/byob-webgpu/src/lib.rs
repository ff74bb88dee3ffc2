//! # byob-webgpu
//!
//! The GPU side of byob's WebGPU execution provider, on [`wgpu`]: what ONNX
//! Runtime Web's JSEP does in TypeScript, in Rust and for native GPUs (on
//! machines without one, Mesa's software Vulkan driver, lavapipe).
//!
//! - [`GpuContext`]: the adapter, device and queue; errors captured in
//!   scopes, a lost device remembered, mappings driven by a polling thread.
//! - [`GpuDataManager`]: tensor data by [`BufferId`] with JSEP's operations
//!   (create, upload, memcpy, get, release, download,
//!   refresh_pending_buffers), buffer reuse, shared downloads, external
//!   buffers (IO binding) and counters.
//! - [`pool`]: liveness-planned placement of intermediates into a few large
//!   buffers at aligned offsets.
//! - [`ProgramCache`]: compute pipelines keyed by op, attribute hint and
//!   input properties; shapes travel as uniforms.
//! - [`create_kernel`]: a [`GpuKernel`] for an ONNX node, encoded into a
//!   compute pass over [`GpuSlice`]s.
//! - [`WebGpuProvider`]: the execution provider for byob-tensor's session.
//!   It compiles each run of nodes it takes into one op whose values stay
//!   on the GPU: constants uploaded once, and per set of input shapes an
//!   executable with its kernels, its tensors planned into arenas, and a
//!   read-back buffer, so that steady-state runs create no GPU buffers.
//!
//! ```no_run
//! use byob_webgpu::{GpuContext, GpuDataManager};
//! use std::sync::Arc;
//! let ctx = Arc::new(pollster::block_on(GpuContext::new())?);
//! let data = GpuDataManager::new(Arc::clone(&ctx));
//! let id = data.create(16)?;
//! data.upload(id, bytemuck::cast_slice(&[1.0f32, 2.0, 3.0, 4.0]))?;
//! let bytes = pollster::block_on(data.download(id))?;
//! # Ok::<(), byob_webgpu::GpuError>(())
//! ```

#![forbid(unsafe_code)]

mod context;
mod data_manager;
mod device_tensor;
mod error;
mod executable;
pub mod kernels;
pub mod pool;
mod program;
mod provider;
mod split;
mod subgraph;
mod sync;

pub use context::GpuContext;
pub use data_manager::{normalized_size, BufferId, DataCounters, Download, GpuDataManager, UploadPath, STAGING_THRESHOLD};
pub use error::GpuError;
pub use kernels::{create_kernel, create_kernel_with_values, create_typed_kernel, on_gpu, supports, BoundKernel, GpuKernel, GpuSlice};
pub use pool::{lower_bound, plan_pool, Interval, Placement, PoolPlan};
pub use program::{fold_groups, Program, ProgramCache, ProgramCounters, ProgramKey, ProgramSource};
pub use provider::{ProviderCounters, WebGpuProvider};
