//! Execution providers: who runs which node. The session gives each node to
//! the first provider in the caller's order that can run it; the CPU
//! provider takes the rest.

use crate::model::Node;
use crate::ops::channels_last::ChannelsLast;
use crate::ops::packed::PACKED_OPS;
use crate::passes::fuse::FUSED_DOMAIN;
use crate::passes::layout::{CHANNELS_LAST_OPS, NHWC_DOMAIN};
use crate::passes::pack::PACKED_DOMAIN;
use crate::ops::{self, Builder, Fact, Op, OpError};
use crate::tensor::Tensor;
use std::collections::HashMap;

/// How a provider wants image activations laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// ONNX's own [N, C, H, W].
    #[default]
    Nchw,
    /// [N, H, W, C].
    Nhwc,
}

/// A backend that runs operators.
pub trait ExecutionProvider: Send + Sync {
    fn name(&self) -> &'static str;

    /// Whether this provider can run `node` at `opset`, given what is known
    /// of its inputs (`inputs` is empty when nothing is known yet; an entry
    /// is `None` for an omitted input or one not known statically).
    fn supports(&self, node: &Node, opset: i64, inputs: &[Option<&Fact>]) -> bool;

    /// The kernel for `node` (providers that compile subgraphs need not
    /// implement it).
    fn create_kernel(&self, node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError>;

    /// Whether the provider runs whole subgraphs on a device of its own:
    /// the session then hands each maximal run of consecutive nodes it
    /// takes to [`compile`](Self::compile), so values stay on the device
    /// between those nodes and cross to the host only at the run's edges.
    fn compiles_subgraphs(&self) -> bool {
        false
    }

    /// One kernel for `subgraph`: its inputs are `subgraph.inputs` and its
    /// outputs `subgraph.outputs`, in that order, as host tensors.
    fn compile(&self, subgraph: Subgraph, opset: i64) -> Result<Box<dyn Op>, OpError> {
        let op = subgraph.nodes.first().map_or_else(String::new, |n| n.op_type.clone());
        Err(OpError::Unsupported { op, opset })
    }

    /// The activation layout its convolution and pooling kernels prefer;
    /// for [`Layout::Nhwc`] the session rewrites the nodes this provider
    /// takes (see [`crate::passes::layout`]) when it also supports their
    /// [`NHWC_DOMAIN`] variants.
    fn preferred_layout(&self) -> Layout {
        Layout::Nchw
    }
}

/// A run of consecutive nodes that one provider takes, for
/// [`ExecutionProvider::compile`].
#[derive(Clone, Debug)]
pub struct Subgraph {
    /// In an order where every value is produced before it is read.
    pub nodes: Vec<Node>,
    /// Values the nodes read from outside the run: the kernel's inputs.
    pub inputs: Vec<String>,
    /// What is known of each input before running.
    pub input_facts: Vec<Option<Fact>>,
    /// Values produced inside that the rest of the graph reads: the
    /// kernel's outputs.
    pub outputs: Vec<String>,
    /// The constants (weights, folded values) the nodes read, by name.
    pub constants: HashMap<String, Tensor>,
}

/// The CPU provider: every operator in [`ops::registry`].
pub struct CpuProvider {
    ops: HashMap<&'static str, Builder>,
    layout: Layout,
}

impl Default for CpuProvider {
    fn default() -> Self {
        let mut ops = ops::registry();
        crate::session::control_flow::register(&mut ops);
        Self { ops, layout: Layout::Nhwc }
    }
}

impl CpuProvider {
    pub fn new() -> Self {
        Self::default()
    }

    /// A CPU provider that asks for another layout than its default,
    /// channels-last (NHWC: its packed convolutions, pools and depthwise
    /// kernels run along contiguous channels); NCHW runs ONNX's layout on
    /// the generic kernels.
    pub fn with_preferred_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// The op types it runs, sorted.
    pub fn op_types(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.ops.keys().copied().filter(|op| !PACKED_OPS.contains(op)).collect();
        names.sort_unstable();
        names
    }
}

impl ExecutionProvider for CpuProvider {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn supports(&self, node: &Node, _opset: i64, _inputs: &[Option<&Fact>]) -> bool {
        let onnx = node.domain.is_empty() || node.domain == "ai.onnx";
        let channels_last = node.domain == NHWC_DOMAIN && CHANNELS_LAST_OPS.contains(&node.op_type.as_str());
        // (A fused Conv is one that carries its activation.)
        let fused = node.domain == FUSED_DOMAIN && node.op_type == "Conv" && node.attributes.contains_key("activation");
        let packed = PACKED_OPS.contains(&node.op_type.as_str());
        (packed == (node.domain == PACKED_DOMAIN)) && (onnx || channels_last || fused || packed) && self.ops.contains_key(node.op_type.as_str())
    }

    fn create_kernel(&self, node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError> {
        match self.ops.get(node.op_type.as_str()) {
            // Pools have channels-last kernels of their own; the rest (a
            // Conv whose weights are computed, BatchNormalization) runs its
            // NCHW kernel between two transposes.
            Some(build) if self.supports(node, opset, &[]) && node.domain == NHWC_DOMAIN => match ops::pool_nhwc::build(node) {
                Some(pool) => pool,
                None => Ok(Box::new(ChannelsLast::new(build(node, opset)?))),
            },
            Some(build) if self.supports(node, opset, &[]) => build(node, opset),
            _ => Err(OpError::Unsupported { op: node.op_type.clone(), opset }),
        }
    }

    fn preferred_layout(&self) -> Layout {
        self.layout
    }
}
