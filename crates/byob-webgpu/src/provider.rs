//! The WebGPU execution provider: byob-tensor's session hands it each
//! maximal run of nodes it supports, and it compiles the run into one
//! [`GpuSubgraph`](crate::subgraph) whose values stay on the GPU between
//! nodes and cross to the host only at the run's edges.

use crate::context::GpuContext;
use crate::error::GpuError;
use crate::kernels;
use byob_tensor::model::Node;
use byob_tensor::ops::{Fact, Op, OpError};
use byob_tensor::provider::Subgraph;
use byob_tensor::{DataType, ExecutionProvider, Layout, Tensor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What the provider did, cumulative over every session it served (clones
/// of one provider share them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProviderCounters {
    /// Subgraph evaluations (a session run evaluates each of its WebGPU
    /// subgraphs once).
    pub runs: u64,
    /// GPU buffers created on the provider's device, all time: constants,
    /// arenas, staging and kernel parameter blocks, at session creation
    /// included.
    pub gpu_buffer_allocations: u64,
    /// GPU buffers created during the latest subgraph evaluation (building
    /// its executable for new input shapes included). With concurrent runs
    /// it may include another run's buffers.
    pub last_run_buffer_allocations: u64,
    /// The most GPU bytes the provider's subgraphs held at once: arenas,
    /// read-back staging and constants.
    pub peak_bytes: u64,
    /// The lower bound of the latest planned executable: the most bytes of
    /// its tensors (subgraph inputs and outputs included, constants not)
    /// alive at one step.
    pub lower_bound_bytes: u64,
    /// The arena bytes of that executable, what `lower_bound_bytes` bounds.
    pub planned_bytes: u64,
    /// Compute pipelines compiled on the device.
    pub pipelines_compiled: u64,
}

/// State shared by the provider and every subgraph it compiled.
pub(crate) struct Shared {
    pub ctx: Arc<GpuContext>,
    pub runs: AtomicU64,
    pub last_run_allocations: AtomicU64,
    pub lower_bound: AtomicU64,
    pub planned: AtomicU64,
    held: AtomicU64,
    peak: AtomicU64,
}

impl Shared {
    /// Counts `bytes` as held until the returned value drops.
    pub fn hold(self: &Arc<Self>, bytes: u64) -> Held {
        let now = self.held.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
        Held { shared: Arc::clone(self), bytes }
    }
}

/// GPU bytes a subgraph or executable holds, for the peak counter.
pub(crate) struct Held {
    shared: Arc<Shared>,
    bytes: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.shared.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// The WebGPU execution provider. Cheap to clone: keep a clone to read
/// [`counters`](Self::counters) after handing one to a session.
///
/// ```no_run
/// use byob_tensor::SessionBuilder;
/// use byob_webgpu::WebGpuProvider;
/// let gpu = WebGpuProvider::new()?;
/// println!("running on {}", gpu.adapter_description());
/// let session = SessionBuilder::new().with_provider(Box::new(gpu.clone())).commit_from_file("model.onnx")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct WebGpuProvider {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WebGpuProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebGpuProvider").field("adapter", &self.adapter_description()).finish_non_exhaustive()
    }
}

impl WebGpuProvider {
    /// Opens the GPU (see [`GpuContext::new`]), blocking until it is ready.
    pub fn new() -> Result<Self, GpuError> {
        pollster::block_on(Self::new_async())
    }

    pub async fn new_async() -> Result<Self, GpuError> {
        Ok(Self::with_context(Arc::new(GpuContext::new().await?)))
    }

    /// A provider on a device that is already open.
    pub fn with_context(ctx: Arc<GpuContext>) -> Self {
        let zero = || AtomicU64::new(0);
        Self { shared: Arc::new(Shared { ctx, runs: zero(), last_run_allocations: zero(), lower_bound: zero(), planned: zero(), held: zero(), peak: zero() }) }
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.shared.ctx
    }

    /// The adapter in one line: name, backend, type and driver.
    pub fn adapter_description(&self) -> String {
        self.shared.ctx.describe()
    }

    pub fn counters(&self) -> ProviderCounters {
        let s = &self.shared;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProviderCounters {
            runs: load(&s.runs),
            gpu_buffer_allocations: s.ctx.buffers_created(),
            last_run_buffer_allocations: load(&s.last_run_allocations),
            peak_bytes: load(&s.peak),
            lower_bound_bytes: load(&s.lower_bound),
            planned_bytes: load(&s.planned),
            pipelines_compiled: s.ctx.programs().counters().compiled,
        }
    }
}

impl ExecutionProvider for WebGpuProvider {
    fn name(&self) -> &'static str {
        "webgpu"
    }

    /// A GPU kernel exists, the data is f32 (other types only as constants
    /// read when building, like Reshape's shape), and, when every input's
    /// shape is known, the kernel builds and no tensor exceeds what one
    /// binding holds: attribute combinations the GPU kernels lack (3-D
    /// Conv, MaxPool's Indices...) and tensors too large for the device go
    /// to the CPU when the session is created instead of failing a run.
    fn supports(&self, node: &Node, opset: i64, inputs: &[Option<&Fact>]) -> bool {
        if !kernels::supports(node, opset) {
            return false;
        }
        let present = |i: usize| node.inputs.get(i).is_some_and(|n| !n.is_empty());
        let fact = |i: usize| inputs.get(i).copied().flatten();
        // When anything is known (`inputs` is empty only before the graph's
        // facts exist), every element type must be: a value whose type only
        // the run tells (after a subgraph, say) may turn out not to be
        // float32.
        let float_data = inputs.is_empty() || (0..node.inputs.len()).filter(|&i| present(i)).all(|i| fact(i).is_some_and(|f| f.dtype == DataType::F32 || f.value.is_some()));
        if !float_data {
            return false;
        }
        // A value the kernel needs when built (Resize's f32 scales, say)
        // that only the run tells would fail the run: the CPU takes it.
        let unknown_constant = !inputs.is_empty() && kernels::constant_inputs(node, opset).iter().any(|&i| present(i) && fact(i).is_none_or(|f| f.value.is_none()));
        if unknown_constant {
            return false;
        }
        let shapes: Option<Vec<Vec<usize>>> = (0..node.inputs.len()).map(|i| if present(i) { fact(i).and_then(Fact::concrete_shape) } else { Some(Vec::new()) }).collect();
        let Some(shapes) = shapes else {
            // Checked again when the subgraph first runs with real shapes.
            return true;
        };
        let ctx = &self.shared.ctx;
        let limit = crate::subgraph::binding_limit(ctx);
        let fits = |shape: &Vec<usize>| kernels::bytes(shape) <= limit;
        if !shapes.iter().all(fits) {
            return false;
        }
        let values: Vec<Option<&Tensor>> = (0..node.inputs.len()).map(|i| fact(i).and_then(|f| f.value.as_ref())).collect();
        kernels::create_kernel_with_values(ctx, node, opset, &shapes, &values).is_ok_and(|kernel| kernel.output_shapes().iter().all(fits))
    }

    fn create_kernel(&self, node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError> {
        // Nodes reach the GPU only through compile().
        Err(OpError::Unsupported { op: node.op_type.clone(), opset })
    }

    fn compiles_subgraphs(&self) -> bool {
        true
    }

    fn compile(&self, subgraph: Subgraph, opset: i64) -> Result<Box<dyn Op>, OpError> {
        Ok(Box::new(crate::subgraph::GpuSubgraph::new(&self.shared, subgraph, opset)?))
    }

    /// Channels-last, as JSEP prefers: Conv's implicit GEMM then reads each
    /// tap's channels contiguously (four at a time) and writes each pixel's
    /// channels contiguously, and the session's layout pass leaves
    /// Transposes only where the layout really changes.
    fn preferred_layout(&self) -> Layout {
        Layout::Nhwc
    }
}
