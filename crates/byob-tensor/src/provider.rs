//! Execution providers: who runs which node. The session gives each node to
//! the first provider in the caller's order that can run it; the CPU
//! provider takes the rest.

use crate::model::Node;
use crate::ops::{self, Builder, Op, OpError};
use std::collections::HashMap;

/// A backend that runs operators.
pub trait ExecutionProvider: Send + Sync {
    fn name(&self) -> &'static str;

    /// Whether this provider can run `node` at `opset`.
    fn supports(&self, node: &Node, opset: i64) -> bool;

    /// The kernel for `node`.
    fn create_kernel(&self, node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError>;
}

/// The CPU provider: every operator in [`ops::registry`].
pub struct CpuProvider {
    ops: HashMap<&'static str, Builder>,
}

impl Default for CpuProvider {
    fn default() -> Self {
        Self { ops: ops::registry() }
    }
}

impl CpuProvider {
    pub fn new() -> Self {
        Self::default()
    }

    /// The op types it runs, sorted.
    pub fn op_types(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.ops.keys().copied().collect();
        names.sort_unstable();
        names
    }
}

impl ExecutionProvider for CpuProvider {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn supports(&self, node: &Node, _opset: i64) -> bool {
        (node.domain.is_empty() || node.domain == "ai.onnx") && self.ops.contains_key(node.op_type.as_str())
    }

    fn create_kernel(&self, node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError> {
        match self.ops.get(node.op_type.as_str()) {
            Some(build) if self.supports(node, opset) => build(node, opset),
            _ => Err(OpError::Unsupported { op: node.op_type.clone(), opset }),
        }
    }
}
