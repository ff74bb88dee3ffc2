//! A subgraph built for one set of input shapes: kernels with static
//! shapes, every tensor (inputs and outputs included) placed by a liveness
//! plan into a few arena buffers, the kernels bound to their slices, and
//! one mappable buffer the outputs are read back through. Built once; a
//! run then writes the inputs into their arena slots, records every kernel
//! into one compute pass, copies the outputs to the read-back buffer,
//! submits, and awaits the mapping: it creates no GPU buffer (nor bind
//! group) at all.
//!
//! View ops (Reshape, Flatten, Squeeze, ...) dispatch nothing: their
//! output is their input's slice, which lives as long as either is used.

use crate::context::GpuContext;
use crate::error::GpuError;
use crate::kernels::{bytes, create_typed_kernel, BoundKernel, GpuKernel, GpuSlice};
use crate::pool::{lower_bound, plan_pool, Interval};
use crate::provider::{Held, Shared};
use crate::subgraph::{alignment, binding_limit, max_binding, Definition};
use crate::sync::{AsyncLock, Signal};
use byob_tensor::model::Node;
use byob_tensor::{Data, DataType, Lifetime, Tensor};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Which buffer a tensor lives in.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Home {
    Arena(usize),
    Constant(usize),
}

/// Where a tensor lives: a buffer and a byte range in it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Loc {
    pub home: Home,
    pub offset: u64,
    pub size: u64,
}

/// Where a run's input comes from: host values written into its arena
/// slot (booleans widened to words), or a GPU buffer copied there on the
/// device.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Source<'a> {
    F32(&'a [f32]),
    Bool(&'a [bool]),
    Device(GpuSlice<'a>),
}

/// Booleans as the GPU holds them: one `u32` word each, 0 or 1.
pub(crate) fn widen(values: &[bool], into: &mut Vec<u32>) {
    into.clear();
    into.extend(values.iter().map(|&b| u32::from(b)));
}

/// Float32 values from the bytes of a mapped buffer.
pub(crate) fn read_f32(into: &mut [f32], bytes: &[u8]) {
    for (value, b) in into.iter_mut().zip(bytes.chunks_exact(4)) {
        *value = f32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// Where a run's output goes: read back into a host tensor, or copied on
/// the device into a GPU buffer.
#[derive(Debug)]
pub(crate) enum Sink<'a> {
    Host(&'a mut Tensor),
    Device(GpuSlice<'a>),
}

/// A kernel bound to the slices its inputs and outputs live in.
struct Step {
    bound: BoundKernel,
    /// Owns the parameter blocks the bind groups read.
    _kernel: Box<dyn GpuKernel>,
}

/// A subgraph output: where it lives, its shape, and where it lands in the
/// read-back buffer.
struct Output {
    loc: Loc,
    shape: Vec<usize>,
    dtype: DataType,
    staging_offset: u64,
}

/// Host transfers of one run: input tensors written from the host, and
/// read-backs of outputs (one mapping for all of a run's host outputs).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Transfers {
    pub uploads: u64,
    pub downloads: u64,
}

pub(crate) struct Executable {
    steps: Vec<Step>,
    arenas: Vec<wgpu::Buffer>,
    inputs: Vec<Loc>,
    outputs: Vec<Output>,
    staging: wgpu::Buffer,
    /// Runs take turns: they share the arenas and the read-back buffer.
    turn: AsyncLock,
    /// The mapping of a run that was dropped before reading it back.
    pending: Mutex<Option<Arc<Signal>>>,
    /// Boolean inputs widened to the GPU's `u32`s before writing.
    widened: Mutex<Vec<u32>>,
    _held: Held,
}

/// A value while building: its shape, the value whose storage it uses
/// (itself, or the input a view op aliases), and for storage owners the
/// steps from its producer to its last reader.
struct Value {
    shape: Vec<usize>,
    dtype: DataType,
    root: usize,
    lifetime: Lifetime,
    constant: Option<Loc>,
}

/// A kernel while building, with the values it reads and writes.
struct Planned<'a> {
    node: &'a Node,
    kernel: Box<dyn GpuKernel>,
    inputs: Vec<Option<usize>>,
    outputs: Vec<usize>,
}

fn buffer<'a>(arenas: &'a [wgpu::Buffer], def: &'a Definition, home: Home) -> &'a wgpu::Buffer {
    match home {
        Home::Arena(a) => &arenas[a],
        Home::Constant(c) => &def.constant_buffers[c],
    }
}

fn slice<'a>(arenas: &'a [wgpu::Buffer], def: &'a Definition, loc: Loc) -> GpuSlice<'a> {
    GpuSlice { buffer: buffer(arenas, def, loc.home), offset: loc.offset, size: loc.size }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Executable {
    pub fn build(shared: &Arc<Shared>, def: &Definition, inputs: &[(DataType, Vec<usize>)]) -> Result<Self, GpuError> {
        let ctx = &shared.ctx;
        let internal = |message: String| GpuError::Internal { what: format!("building {}", def.what), message };
        let mut values: Vec<Value> = Vec::new();
        let mut by_name: HashMap<&str, usize> = HashMap::new();
        for (name, (dtype, shape)) in def.inputs.iter().zip(inputs) {
            by_name.insert(name, values.len());
            values.push(Value { shape: shape.clone(), dtype: *dtype, root: values.len(), lifetime: Lifetime { first: 0, last: 0 }, constant: None });
        }
        // Kernels in node order.
        let mut planned: Vec<Planned> = Vec::new();
        for (s, node) in def.nodes.iter().enumerate() {
            let mut ids = Vec::with_capacity(node.inputs.len());
            for name in &node.inputs {
                if name.is_empty() {
                    ids.push(None);
                    continue;
                }
                let id = match by_name.get(name.as_str()) {
                    Some(&id) => id,
                    None => {
                        let c = def.constants.get(name).ok_or_else(|| internal(format!("node {:?} reads {name:?}, which is neither an input, a constant nor produced before", node.name)))?;
                        by_name.insert(name, values.len());
                        values.push(Value { shape: c.shape.clone(), dtype: c.dtype, root: values.len(), lifetime: Lifetime { first: 0, last: 0 }, constant: c.gpu });
                        values.len() - 1
                    }
                };
                ids.push(Some(id));
            }
            let input_shapes: Vec<Vec<usize>> = ids.iter().map(|id| id.map_or_else(Vec::new, |id| values[id].shape.clone())).collect();
            let input_dtypes: Vec<DataType> = ids.iter().map(|id| id.map_or(DataType::F32, |id| values[id].dtype)).collect();
            let input_values: Vec<Option<&Tensor>> = node.inputs.iter().map(|n| def.constants.get(n).and_then(|c| c.value.as_ref())).collect();
            let kernel = create_typed_kernel(ctx, node, def.opset, &input_shapes, &input_dtypes, &input_values)?;
            for &id in ids.iter().flatten() {
                let root = values[id].root;
                values[root].lifetime.last = s;
            }
            let alias = kernel.aliases();
            let mut outputs = Vec::with_capacity(kernel.output_shapes().len());
            for (j, (shape, &dtype)) in kernel.output_shapes().iter().zip(kernel.output_dtypes()).enumerate() {
                let id = values.len();
                let root = match alias {
                    Some(a) if j == 0 => values[ids.get(a).copied().flatten().ok_or_else(|| internal(format!("node {:?} aliases its missing input {a}", node.name)))?].root,
                    _ => id,
                };
                values.push(Value { shape: shape.clone(), dtype, root, lifetime: Lifetime { first: s, last: s }, constant: None });
                if let Some(name) = node.outputs.get(j).filter(|n| !n.is_empty()) {
                    by_name.insert(name, id);
                }
                outputs.push(id);
            }
            if let Some(name) = node.outputs.iter().skip(outputs.len()).find(|n| !n.is_empty()) {
                return Err(internal(format!("node {:?}: its GPU kernel does not produce output {name:?}", node.name)));
            }
            if alias.is_none() {
                planned.push(Planned { node, kernel, inputs: ids, outputs });
            }
        }
        let end = def.nodes.len();
        let mut output_ids = Vec::with_capacity(def.outputs.len());
        for name in &def.outputs {
            let id = *by_name.get(name.as_str()).ok_or_else(|| internal(format!("output {name:?} is not produced")))?;
            let root = values[id].root;
            values[root].lifetime.last = end;
            output_ids.push(id);
        }

        // Every tensor that owns storage and is not a constant goes into
        // the arenas.
        let owners: Vec<usize> = (0..values.len()).filter(|&v| values[v].root == v && values[v].constant.is_none()).collect();
        // Sizes past what one binding holds (crafted shapes saturate to
        // u64::MAX) are refused before the planner adds them up.
        let limit = binding_limit(ctx);
        if let Some(&v) = owners.iter().find(|&&v| bytes(&values[v].shape) > limit) {
            let message = format!("a value of shape {:?} needs {} bytes, more than the {limit} the device binds at once", values[v].shape, bytes(&values[v].shape));
            return Err(GpuError::Validation { what: format!("planning the memory of {}", def.what), message });
        }
        let intervals: Vec<Interval> = owners.iter().map(|&v| Interval { size: bytes(&values[v].shape), lifetime: values[v].lifetime }).collect();
        let plan = plan_pool(&intervals, alignment(ctx), max_binding(ctx));
        let mut locs: Vec<Option<Loc>> = values.iter().map(|v| v.constant).collect();
        for (&v, place) in owners.iter().zip(&plan.placements) {
            locs[v] = Some(Loc { home: Home::Arena(place.arena), offset: place.offset, size: bytes(&values[v].shape) });
        }
        // A view's slice is its root's, with the view's own size.
        let loc = |id: usize| -> Result<Loc, GpuError> {
            let root = locs[values[id].root].ok_or_else(|| internal(format!("a non-float32 constant is read as data (value {id})")))?;
            Ok(Loc { size: bytes(&values[id].shape), ..root })
        };
        let mut placed = Vec::with_capacity(planned.len());
        for Planned { node, kernel, inputs, outputs } in planned {
            let inputs: Vec<Option<Loc>> = inputs.iter().map(|id| id.map(loc).transpose()).collect::<Result<_, _>>()?;
            let outputs: Vec<Loc> = outputs.into_iter().map(loc).collect::<Result<_, _>>()?;
            if let Some(big) = inputs.iter().flatten().chain(&outputs).find(|l| l.size > limit) {
                let what = format!("a tensor of {} bytes exceeds the {limit} bytes the device binds at once", big.size);
                return Err(GpuError::Kernel { node: node.name.clone(), op: node.op_type.clone(), what });
            }
            placed.push((kernel, inputs, outputs));
        }
        let inputs = (0..def.inputs.len()).map(loc).collect::<Result<_, _>>()?;
        let mut staging_size = 0;
        let mut outputs = Vec::with_capacity(output_ids.len());
        for id in output_ids {
            let loc = loc(id)?;
            outputs.push(Output { loc, shape: values[id].shape.clone(), dtype: values[id].dtype, staging_offset: staging_size });
            staging_size += loc.size;
        }

        let what = format!("creating the buffers of {}", def.what);
        let (arenas, staging) = ctx.scoped(&what, || {
            let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
            let arenas: Vec<wgpu::Buffer> = plan.arena_sizes.iter().map(|&size| ctx.create_buffer(&wgpu::BufferDescriptor { label: Some("byob-webgpu arena"), size, usage, mapped_at_creation: false })).collect();
            let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
            let staging = ctx.create_buffer(&wgpu::BufferDescriptor { label: Some("byob-webgpu read-back"), size: staging_size.max(4), usage, mapped_at_creation: false });
            (arenas, staging)
        })?;
        let steps = ctx.scoped(&format!("binding the kernels of {}", def.what), || {
            placed
                .into_iter()
                .map(|(kernel, inputs, outputs)| {
                    let inputs: Vec<Option<GpuSlice>> = inputs.iter().map(|l| l.map(|l| slice(&arenas, def, l))).collect();
                    let outputs: Vec<GpuSlice> = outputs.iter().map(|&l| slice(&arenas, def, l)).collect();
                    Ok(Step { bound: kernel.bind(ctx, &inputs, &outputs)?, _kernel: kernel })
                })
                .collect::<Result<Vec<_>, GpuError>>()
        })??;
        shared.lower_bound.store(lower_bound(&intervals), Ordering::Relaxed);
        shared.planned.store(plan.total_size(), Ordering::Relaxed);
        let held = shared.hold(plan.total_size() + staging.size());
        Ok(Self { steps, arenas, inputs, outputs, staging, turn: AsyncLock::default(), pending: Mutex::default(), widened: Mutex::default(), _held: held })
    }

    /// The type and shape of output `o`, fixed when this was built.
    pub fn output(&self, o: usize) -> (DataType, &[usize]) {
        (self.outputs[o].dtype, &self.outputs[o].shape)
    }

    /// Runs with `inputs` (the subgraph's, in order, of the shapes this was
    /// built for) and writes the outputs into `outputs`. Returns the host
    /// transfers it made (inputs written, read-backs mapped). A run whose
    /// outputs all stay on the GPU returns once its work is submitted:
    /// later work on the queue sees its results.
    pub async fn run(&self, ctx: &GpuContext, def: &Definition, inputs: &[Source<'_>], outputs: &mut [Sink<'_>]) -> Result<Transfers, GpuError> {
        let _turn = self.turn.lock().await;
        // A run dropped mid-way left the read-back buffer mapping.
        let dropped = lock(&self.pending).take();
        if let Some(signal) = dropped {
            if signal.wait().await.is_ok() {
                self.staging.unmap();
            }
        }
        let host_outputs = outputs.iter().filter(|o| matches!(o, Sink::Host(_))).count();
        let mut transfers = ctx.scoped(&format!("running {}", def.what), || self.submit(ctx, def, inputs, outputs))?;
        if host_outputs == 0 {
            return Ok(transfers);
        }
        transfers.downloads = 1;
        let signal = Arc::new(Signal::default());
        *lock(&self.pending) = Some(Arc::clone(&signal));
        let mapped = Arc::clone(&signal);
        ctx.map_read(&self.staging, self.staging.size(), move |result| mapped.set(result.map_err(|e| e.to_string())));
        let result = signal.wait().await;
        *lock(&self.pending) = None;
        if let Err(message) = result {
            ctx.check()?;
            return Err(GpuError::Internal { what: format!("reading back the outputs of {}", def.what), message });
        }
        let read = self.read(outputs, def);
        self.staging.unmap();
        read.map(|()| transfers)
    }

    /// Writes the host inputs, records the device inputs' copies, every
    /// kernel and the outputs' copies, and submits.
    fn submit(&self, ctx: &GpuContext, def: &Definition, inputs: &[Source<'_>], outputs: &[Sink<'_>]) -> Transfers {
        let mut transfers = Transfers::default();
        let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("byob-webgpu run") });
        for (loc, input) in self.inputs.iter().zip(inputs) {
            if loc.size == 0 {
                continue;
            }
            let arena = buffer(&self.arenas, def, loc.home);
            match *input {
                Source::F32(values) => ctx.queue().write_buffer(arena, loc.offset, bytemuck::cast_slice(values)),
                Source::Bool(values) => {
                    let mut widened = lock(&self.widened);
                    widen(values, &mut widened);
                    ctx.queue().write_buffer(arena, loc.offset, bytemuck::cast_slice(&widened));
                }
                Source::Device(from) => encoder.copy_buffer_to_buffer(from.buffer, from.offset, arena, loc.offset, loc.size),
            }
            transfers.uploads += u64::from(!matches!(input, Source::Device(_)));
        }
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("byob-webgpu subgraph"), timestamp_writes: None });
            for step in &self.steps {
                step.bound.record(&mut pass);
            }
        }
        for (output, sink) in self.outputs.iter().zip(outputs).filter(|(o, _)| o.loc.size > 0) {
            let arena = buffer(&self.arenas, def, output.loc.home);
            match sink {
                Sink::Host(_) => encoder.copy_buffer_to_buffer(arena, output.loc.offset, &self.staging, output.staging_offset, output.loc.size),
                Sink::Device(to) => encoder.copy_buffer_to_buffer(arena, output.loc.offset, to.buffer, to.offset, output.loc.size),
            }
        }
        ctx.queue().submit([encoder.finish()]);
        transfers
    }

    /// Copies the mapped read-back buffer into the output tensors, reusing
    /// their storage.
    fn read(&self, outputs: &mut [Sink<'_>], def: &Definition) -> Result<(), GpuError> {
        let view = self.staging.get_mapped_range(..).map_err(|e| GpuError::Internal { what: format!("reading back the outputs of {}", def.what), message: e.to_string() })?;
        for (output, sink) in self.outputs.iter().zip(outputs) {
            let Sink::Host(tensor) = sink else { continue };
            let start = output.staging_offset as usize;
            let bytes = &view[start..start + output.loc.size as usize];
            let data = tensor.reset(output.dtype, &output.shape).map_err(|e| GpuError::Internal { what: format!("reading back the outputs of {}", def.what), message: e.to_string() })?;
            match data {
                Data::Bool(values) => values.iter_mut().zip(bytes.chunks_exact(4)).for_each(|(v, b)| *v = b != [0; 4]),
                Data::F32(values) => read_f32(values, bytes),
                other => return Err(GpuError::Internal { what: format!("reading back the outputs of {}", def.what), message: format!("{} has no GPU representation", other.dtype()) }),
            }
        }
        Ok(())
    }
}
