//! The WebGPU execution provider: byob-tensor's session hands it each
//! maximal run of nodes it supports, and it compiles the run into one
//! [`GpuSubgraph`](crate::subgraph) whose values stay on the GPU between
//! nodes and cross to the host only at the run's edges.

use crate::context::GpuContext;
use crate::error::GpuError;
use crate::device_tensor::{self, WebGpuDevice};
use crate::kernels::{self, GpuSlice};
use byob_tensor::model::Node;
use byob_tensor::ops::{Fact, Op, OpError};
use byob_tensor::provider::Subgraph;
use byob_tensor::{DataType, Device, DeviceTensor, ExecutionProvider, Layout, Tensor};
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
    /// Subgraph inputs written from host memory, all time (an input bound
    /// on the GPU is copied on the device and not counted).
    pub host_uploads: u64,
    /// Read-backs of subgraph outputs to host memory, all time: one per
    /// run with any output on the host (outputs left on the GPU need none).
    pub host_downloads: u64,
}

/// State shared by the provider and every subgraph it compiled.
pub(crate) struct Shared {
    pub ctx: Arc<GpuContext>,
    pub runs: AtomicU64,
    pub last_run_allocations: AtomicU64,
    pub lower_bound: AtomicU64,
    pub planned: AtomicU64,
    pub uploads: AtomicU64,
    pub downloads: AtomicU64,
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
        Self { shared: Arc::new(Shared { ctx, runs: zero(), last_run_allocations: zero(), lower_bound: zero(), planned: zero(), uploads: zero(), downloads: zero(), held: zero(), peak: zero() }) }
    }

    /// A provider on the caller's device and queue (see
    /// [`GpuContext::with_device`]): sessions on it read and write the
    /// caller's buffers.
    pub fn with_device(adapter: &wgpu::Adapter, device: wgpu::Device, queue: wgpu::Queue) -> Result<Self, GpuError> {
        Ok(Self::with_context(Arc::new(GpuContext::with_device(adapter, device, queue)?)))
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.shared.ctx
    }

    /// The provider's device, for outputs left on the GPU
    /// ([`IoBinding::keep_output_on_device`]): it allocates their buffers.
    ///
    /// [`IoBinding::keep_output_on_device`]: byob_tensor::IoBinding::keep_output_on_device
    pub fn device(&self) -> Arc<dyn Device> {
        Arc::new(WebGpuDevice { ctx: Arc::clone(&self.shared.ctx) })
    }

    /// A float32 tensor of `shape` in the caller's `buffer` from byte
    /// `offset`, to bind as a session's input or output
    /// ([`IoBinding::bind_input_on_device`],
    /// [`IoBinding::bind_output_on_device`]). The buffer must be on this
    /// provider's device, have `COPY_SRC | COPY_DST` usage (the provider
    /// copies between it and its arenas on the GPU) and a 4-byte aligned
    /// offset. Sessions of this provider (or of its clones) read it;
    /// another provider's refuse it, even on the same device.
    ///
    /// [`IoBinding::bind_input_on_device`]: byob_tensor::IoBinding::bind_input_on_device
    /// [`IoBinding::bind_output_on_device`]: byob_tensor::IoBinding::bind_output_on_device
    pub fn wrap_buffer(&self, buffer: &wgpu::Buffer, offset: u64, shape: &[usize]) -> Result<DeviceTensor, GpuError> {
        let size = kernels::bytes(shape);
        let wrapped = device_tensor::wrap(&self.shared.ctx, buffer, offset, size)?;
        DeviceTensor::new(DataType::F32, shape.to_vec(), Arc::new(wrapped)).map_err(|e| GpuError::Validation { what: "binding a caller's GPU buffer".into(), message: e.to_string() })
    }

    /// The GPU buffer and byte range of a device tensor of this provider's
    /// (an output left on the GPU), for the caller's own passes and copies.
    pub fn buffer_of(tensor: &DeviceTensor) -> Option<GpuSlice<'_>> {
        device_tensor::gpu_buffer(tensor).map(|b| GpuSlice { size: tensor.bytes(), ..b.slice() })
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
            host_uploads: load(&s.uploads),
            host_downloads: load(&s.downloads),
        }
    }
}

impl ExecutionProvider for WebGpuProvider {
    fn name(&self) -> &'static str {
        "webgpu"
    }

    /// A GPU kernel exists, the data is float32 or bool (other types only as
    /// constants read when building, like Reshape's shape), and, when every input's
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
        // float32 or bool.
        let read_on_gpu = |f: &Fact| f.dtype == DataType::F32 || f.dtype == DataType::Bool && kernels::reads_bool(node);
        let types_on_gpu = inputs.is_empty() || (0..node.inputs.len()).filter(|&i| present(i)).all(|i| fact(i).is_some_and(|f| read_on_gpu(f) || f.value.is_some()));
        if !types_on_gpu {
            return false;
        }
        // A value the kernel needs when built (Resize's f32 scales, say)
        // that only the run tells would fail the run: the CPU takes it.
        let unknown_constant = !inputs.is_empty() && kernels::constant_inputs(node, opset).iter().any(|&i| present(i) && fact(i).is_none_or(|f| f.value.is_none()));
        if unknown_constant || !inputs.is_empty() && !kernels::placeable(node, inputs) {
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
        // A weight too large to bind whole is split into column blocks when
        // the subgraph is compiled (see `split`).
        let weight_splits = || crate::split::splittable(node, fact(1), fact(2), crate::subgraph::max_binding(ctx));
        let oversized: Vec<usize> = (0..shapes.len()).filter(|&i| !fits(&shapes[i])).collect();
        if !(oversized.is_empty() || oversized == [1] && weight_splits()) {
            return false;
        }
        let values: Vec<Option<&Tensor>> = (0..node.inputs.len()).map(|i| fact(i).and_then(|f| f.value.as_ref())).collect();
        let dtypes: Vec<DataType> = (0..node.inputs.len()).map(|i| fact(i).map_or(DataType::F32, |f| f.dtype)).collect();
        kernels::create_typed_kernel(ctx, node, opset, &shapes, &dtypes, &values).is_ok_and(|kernel| kernel.output_shapes().iter().all(fits))
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
