//! A run of nodes compiled for the GPU, as one [`Op`] of the session: its
//! constants live on the GPU from compile time, and each set of input
//! shapes gets an [`Executable`] (kernels, planned memory, read-back
//! buffer) built on first use and reused by every later run.

use crate::context::GpuContext;
use crate::error::GpuError;
use crate::kernels;
use crate::device_tensor::{gpu_buffer, GpuBuffer, WEBGPU};
use crate::executable::{widen, Executable, Home, Loc, Sink, Source};
use crate::pool::{plan_pool, Interval};
use crate::provider::{Held, Shared};
use byob_tensor::model::{Dim, Node};
use byob_tensor::ops::{EvalFuture, Fact, Op, OpError};
use byob_tensor::provider::Subgraph;
use byob_tensor::device::{ValueMut, ValueRef};
use byob_tensor::{Data, DataType, DeviceTensor, Tensor};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

/// Constants up to this many elements keep their host values (for kernels
/// that read them when built, and for inference); larger ones, weights,
/// live on the GPU only.
const HOST_VALUE_LIMIT: usize = 64;

/// A constant of the subgraph.
pub(crate) struct Constant {
    pub shape: Vec<usize>,
    pub dtype: DataType,
    /// Where it lives on the GPU: float32 and bool constants only.
    pub gpu: Option<Loc>,
    /// The host value: small or non-f32 constants only.
    pub value: Option<Tensor>,
    /// What inference sees.
    fact: Fact,
}

/// What every executable of a subgraph is built from.
pub(crate) struct Definition {
    pub nodes: Vec<Node>,
    pub opset: i64,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub constants: HashMap<String, Constant>,
    /// The buffers holding the f32 constants.
    pub constant_buffers: Vec<wgpu::Buffer>,
    /// For errors: which subgraph this is.
    pub what: String,
}

/// The types and shapes of a subgraph's inputs, in order.
type ShapeKey = Vec<(DataType, Vec<usize>)>;

pub(crate) struct GpuSubgraph {
    shared: Arc<Shared>,
    def: Definition,
    /// Each node's CPU op, for shape inference.
    cpu_ops: Vec<Option<Box<dyn Op>>>,
    /// Executables by input shapes.
    executables: Mutex<Vec<(ShapeKey, Arc<Executable>)>>,
    _constants_held: Held,
}

impl std::fmt::Debug for GpuSubgraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuSubgraph").field("what", &self.def.what).field("inputs", &self.def.inputs).field("outputs", &self.def.outputs).finish_non_exhaustive()
    }
}

/// A GPU error as the session reports it: a lost device or exhausted
/// memory (and anything else the device said) as a device error, a kernel
/// refusing its shapes as a shape error; both name where.
pub(crate) fn op_error(error: GpuError) -> OpError {
    match error {
        GpuError::Kernel { .. } | GpuError::SizeMismatch { .. } => OpError::Shape(error.to_string()),
        other => OpError::Device(other.to_string()),
    }
}

impl GpuSubgraph {
    pub fn new(shared: &Arc<Shared>, subgraph: Subgraph, opset: i64) -> Result<Self, OpError> {
        let first = subgraph.nodes.first().ok_or_else(|| OpError::Shape("the webgpu provider was given an empty subgraph".into()))?;
        let what = format!("the webgpu subgraph of {} node(s) from node {:?} ({})", subgraph.nodes.len(), first.name, first.op_type);
        let mut constants = subgraph.constants;
        let nodes = crate::split::split_large_weights(subgraph.nodes, &mut constants, max_binding(&shared.ctx));
        let (constants, constant_buffers) = upload_constants(&shared.ctx, constants, &what).map_err(op_error)?;
        let held = constant_buffers.iter().map(wgpu::Buffer::size).sum();
        let registry = byob_tensor::ops::registry();
        let cpu_ops = nodes.iter().map(|n| registry.get(n.op_type.as_str()).and_then(|build| build(n, opset).ok())).collect();
        Ok(Self {
            shared: Arc::clone(shared),
            def: Definition { nodes, opset, inputs: subgraph.inputs, outputs: subgraph.outputs, constants, constant_buffers, what },
            cpu_ops,
            executables: Mutex::default(),
            _constants_held: shared.hold(held),
        })
    }

    /// The executable for inputs of these types and shapes, built the
    /// first time.
    fn executable(&self, inputs: &[(DataType, &[usize])]) -> Result<Arc<Executable>, GpuError> {
        let mut executables = self.executables.lock().unwrap_or_else(PoisonError::into_inner);
        let same = |key: &ShapeKey| key.iter().map(|(d, s)| (*d, s.as_slice())).eq(inputs.iter().copied());
        if let Some((_, executable)) = executables.iter().find(|(key, _)| same(key)) {
            return Ok(Arc::clone(executable));
        }
        let key: ShapeKey = inputs.iter().map(|(d, s)| (*d, s.to_vec())).collect();
        let executable = Arc::new(Executable::build(&self.shared, &self.def, &key)?);
        executables.push((key, Arc::clone(&executable)));
        Ok(executable)
    }

    async fn run(&self, inputs: &[Option<ValueRef<'_>>], outputs: &mut [ValueMut<'_>]) -> Result<(), OpError> {
        let ctx = &self.shared.ctx;
        let before = ctx.buffers_created();
        if inputs.len() != self.def.inputs.len() || outputs.len() != self.def.outputs.len() {
            let (i, o) = (self.def.inputs.len(), self.def.outputs.len());
            return Err(OpError::Shape(format!("{}: {i} inputs and {o} outputs expected, {} and {} given", self.def.what, inputs.len(), outputs.len())));
        }
        let mut sources = Vec::with_capacity(inputs.len());
        let mut shapes = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let name = &self.def.inputs[i];
            let input = input.ok_or_else(|| OpError::input(i, format!("{name:?} is missing")))?;
            let refused = |what: String| OpError::input(i, format!("{name:?}: {what}"));
            let source = match input {
                ValueRef::Host(tensor) => match tensor.data() {
                    Data::F32(values) => Source::F32(values),
                    Data::Bool(values) => Source::Bool(values),
                    other => return Err(refused(format!("the webgpu provider takes float32 and bool, got {}", other.dtype()))),
                },
                // Device tensors are float32: the GPU's bool words are not
                // the host layout a DeviceTensor promises.
                ValueRef::Device(tensor) if tensor.dtype() != DataType::F32 => return Err(refused(format!("GPU tensors are float32, not {}", tensor.dtype()))),
                ValueRef::Device(tensor) => Source::Device(self.on_this_device(tensor).ok_or_else(|| refused("a GPU tensor of another provider (wrap it with the session's)".into()))?.slice()),
            };
            sources.push(source);
            shapes.push((input.dtype(), input.shape()));
        }
        let executable = self.executable(&shapes).map_err(op_error)?;
        let mut sinks = Vec::with_capacity(outputs.len());
        for (o, output) in outputs.iter_mut().enumerate() {
            sinks.push(match output {
                ValueMut::Host(tensor) => Sink::Host(tensor),
                ValueMut::Device(slot) => {
                    let name = &self.def.outputs[o];
                    let (dtype, shape) = executable.output(o);
                    if dtype != DataType::F32 {
                        return Err(OpError::Device(format!("output {name:?} is {dtype}; only float32 outputs stay on the GPU")));
                    }
                    let tensor = slot.prepare(dtype, shape).map_err(|e| OpError::Device(format!("output {name:?}: {e}")))?;
                    let buffer = self.on_this_device(tensor).ok_or_else(|| OpError::Device(format!("output {name:?} is bound to a GPU tensor of another provider (wrap it with the session's)")))?;
                    Sink::Device(buffer.slice())
                }
            });
        }
        let result = executable.run(ctx, &self.def, &sources, &mut sinks).await.map_err(op_error);
        if let Ok(transfers) = &result {
            self.shared.uploads.fetch_add(transfers.uploads, Ordering::Relaxed);
            self.shared.downloads.fetch_add(transfers.downloads, Ordering::Relaxed);
        }
        self.shared.runs.fetch_add(1, Ordering::Relaxed);
        self.shared.last_run_allocations.store(ctx.buffers_created() - before, Ordering::Relaxed);
        result.map(drop)
    }

    /// The GPU buffer of a device tensor on this provider's device.
    fn on_this_device<'t>(&self, tensor: &'t DeviceTensor) -> Option<&'t GpuBuffer> {
        gpu_buffer(tensor).filter(|b| b.is_on(&self.shared.ctx))
    }
}

impl Op for GpuSubgraph {
    /// Chains the CPU ops' inference through the nodes; outputs are known
    /// up to the first one that cannot be inferred.
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let mut produced: HashMap<&str, Fact> = HashMap::new();
        for (node, op) in self.def.nodes.iter().zip(&self.cpu_ops) {
            let Some(op) = op else { continue };
            let out = {
                let lookup = |name: &String| -> Option<Option<&Fact>> {
                    if name.is_empty() {
                        return Some(None);
                    }
                    let input = self.def.inputs.iter().position(|n| n == name).and_then(|i| inputs.get(i).copied().flatten());
                    input.or_else(|| produced.get(name.as_str())).or_else(|| self.def.constants.get(name).map(|c| &c.fact)).map(Some)
                };
                let facts: Option<Vec<Option<&Fact>>> = node.inputs.iter().map(lookup).collect();
                match facts.map(|facts| op.infer(&facts)) {
                    Some(Ok(out)) => out,
                    _ => continue,
                }
            };
            for (name, fact) in node.outputs.iter().zip(out) {
                if !name.is_empty() {
                    produced.insert(name, fact);
                }
            }
        }
        Ok(self.def.outputs.iter().map_while(|name| produced.get(name.as_str()).cloned()).collect())
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        pollster::block_on(self.eval_async(inputs, outputs, threads))
    }

    fn waits_on_device(&self) -> bool {
        true
    }

    fn eval_async<'a>(&'a self, inputs: &'a [Option<&'a Tensor>], outputs: &'a mut [Tensor], _threads: &'a rayon::ThreadPool) -> EvalFuture<'a> {
        Box::pin(async move {
            let inputs: Vec<Option<ValueRef>> = inputs.iter().map(|t| t.map(ValueRef::Host)).collect();
            let mut outputs: Vec<ValueMut> = outputs.iter_mut().map(ValueMut::Host).collect();
            self.run(&inputs, &mut outputs).await
        })
    }

    fn device(&self) -> Option<&'static str> {
        Some(WEBGPU)
    }

    fn eval_on_device<'a, 'b: 'a>(&'a self, inputs: &'a [Option<ValueRef<'b>>], outputs: &'a mut [ValueMut<'b>], _threads: &'a rayon::ThreadPool) -> EvalFuture<'a> {
        Box::pin(self.run(inputs, outputs))
    }
}

/// Puts the f32 constants on the GPU, packed into as few buffers as the
/// device's binding size allows, at aligned offsets.
fn upload_constants(ctx: &GpuContext, constants: HashMap<String, Tensor>, what: &str) -> Result<(HashMap<String, Constant>, Vec<wgpu::Buffer>), GpuError> {
    // Float32 and bool constants, as the GPU's 32-bit words.
    let mut words: Vec<(String, Tensor)> = Vec::new();
    let mut table = HashMap::new();
    for (name, tensor) in constants {
        let small = tensor.len() <= HOST_VALUE_LIMIT || tensor.dtype() != DataType::F32;
        let dtype = tensor.dtype();
        let shape = tensor.shape().to_vec();
        let fact = if small { Fact::constant(tensor.clone()) } else { Fact::new(tensor.dtype(), shape.iter().map(|&d| Dim::Known(d)).collect()) };
        let value = small.then(|| tensor.clone());
        table.insert(name.clone(), Constant { shape, dtype, gpu: None, value, fact });
        if kernels::on_gpu(dtype) {
            words.push((name, tensor));
        }
    }
    // Sorted by name, so that a subgraph packs the same way every time.
    words.sort_by(|a, b| a.0.cmp(&b.0));
    // Constants are all alive at once: the pool planner then packs them
    // side by side, splitting into buffers at the binding size limit.
    let intervals: Vec<Interval> = words.iter().map(|(_, t)| Interval { size: 4 * t.len() as u64, lifetime: byob_tensor::Lifetime { first: 0, last: 0 } }).collect();
    let plan = plan_pool(&intervals, alignment(ctx), max_binding(ctx));
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    let buffers: Vec<wgpu::Buffer> = ctx.scoped(&format!("creating the constant buffers of {what}"), || {
        plan.arena_sizes.iter().map(|&size| ctx.create_buffer(&wgpu::BufferDescriptor { label: Some("byob-webgpu constants"), size, usage, mapped_at_creation: false })).collect()
    })?;
    ctx.scoped(&format!("uploading the constants of {what}"), || {
        for ((name, tensor), place) in words.iter().zip(&plan.placements) {
            let mut widened: Vec<u32> = Vec::new();
            let bytes: &[u8] = match tensor.data() {
                Data::F32(values) => bytemuck::cast_slice(values),
                Data::Bool(values) => {
                    widen(values, &mut widened);
                    bytemuck::cast_slice(&widened)
                }
                other => unreachable!("only float32 and bool constants are placed, not {}", other.dtype()),
            };
            if !bytes.is_empty() {
                ctx.queue().write_buffer(&buffers[place.arena], place.offset, bytes);
            }
            if let Some(c) = table.get_mut(name) {
                c.gpu = Some(Loc { home: Home::Constant(place.arena), offset: place.offset, size: bytes.len() as u64 });
            }
        }
    })?;
    Ok((table, buffers))
}

/// The device's storage binding offset alignment.
pub(crate) fn alignment(ctx: &GpuContext) -> u64 {
    u64::from(ctx.limits().min_storage_buffer_offset_alignment).max(4)
}

/// The most bytes one binding can hold: no kernel reads or writes a larger
/// tensor (the provider leaves such nodes to the CPU).
pub(crate) fn binding_limit(ctx: &GpuContext) -> u64 {
    ctx.limits().max_storage_buffer_binding_size.min(ctx.limits().max_buffer_size)
}

/// The largest arena, in whole alignment units, so that any slice of it
/// can be bound.
pub(crate) fn max_binding(ctx: &GpuContext) -> u64 {
    binding_limit(ctx) / alignment(ctx) * alignment(ctx)
}
