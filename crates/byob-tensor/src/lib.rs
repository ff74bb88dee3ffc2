//! # byob-tensor
//!
//! ONNX inference: model loading (protobuf via prost), an IR with shape and
//! type inference, execution providers with a CPU provider, and a session
//! API shaped like ONNX Runtime's.

pub mod model;
pub mod ops;
pub mod proto;
pub mod provider;
pub mod session;
pub mod tensor;

pub use model::{Dim, Model, ModelError, Node, ValueInfo};
pub use provider::{CpuProvider, ExecutionProvider};
pub use session::{OptimizationLevel, RunError, Session, SessionBuilder, SessionError};
pub use tensor::{Data, DataType, Tensor};
