//! # byob-tensor
//!
//! ONNX inference: model loading (protobuf via prost), an IR with shape and
//! type inference, execution providers with a CPU provider, and a session
//! API shaped like ONNX Runtime's.
//!
//! ```no_run
//! use byob_tensor::{SessionBuilder, Tensor};
//! let session = SessionBuilder::new().with_intra_op_threads(2).commit_from_file("model.onnx")?;
//! let input = Tensor::f32(vec![1, 3, 224, 224], vec![0.0; 3 * 224 * 224])?;
//! let outputs = session.run(vec![("data".into(), input)])?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod device;
pub mod model;
pub mod npy;
pub mod passes;
pub mod ops;
pub mod element;
pub mod graph;
pub mod kernels;
mod plan;
pub mod proto;
pub mod provider;
pub mod session;
pub mod tensor;
#[cfg(test)]
mod test_util;

pub use device::{Device, DeviceBuffer, DeviceError, DeviceOutput, DeviceTensor};
pub use model::{Dim, Model, ModelError, Node, Subgraph, ValueInfo, MAX_SUBGRAPH_DEPTH};
pub use provider::Layout;
pub use plan::Lifetime;
pub use provider::{CpuProvider, ExecutionProvider};
pub use session::{IoBinding, RunHandle, OptimizationLevel, Optimizations, RunError, RunStats, Session, SessionBuilder, SessionError, StepTime, DEFAULT_MAX_RUN_BYTES, DEFAULT_MAX_TENSOR_BYTES, MAX_LOOP_ITERATIONS};
pub use tensor::{Data, DataType, Tensor};
