//! Compiled compute programs, cached by what their WGSL depends on, and the
//! plumbing every kernel shares: the bind group layout, uniform parameter
//! blocks, and dispatch sizes folded to fit the device's limits.
//!
//! A program's WGSL depends only on the op, an attribute hint (a variant
//! such as "vec4" or "transposed B") and input properties (type, rank);
//! shapes and attribute values travel in a uniform block, so one pipeline
//! serves every shape of a model and of later models.

use crate::context::GpuContext;
use crate::error::GpuError;
use crate::kernels::GpuSlice;
use byob_tensor::DataType;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// What a program's WGSL depends on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProgramKey {
    pub op: &'static str,
    /// The variant, from attributes and shape properties (divisibility).
    pub hint: String,
    /// Type and rank of each input the WGSL depends on.
    pub inputs: Vec<(DataType, usize)>,
}

impl ProgramKey {
    pub fn new(op: &'static str, hint: impl Into<String>) -> Self {
        Self { op, hint: hint.into(), inputs: Vec::new() }
    }

    pub fn with_input(mut self, dtype: DataType, rank: usize) -> Self {
        self.inputs.push((dtype, rank));
        self
    }
}

/// A program's WGSL and the shape of its bindings: `storage` storage
/// buffers at bindings `0..storage` (inputs, then outputs), then a uniform
/// block.
pub struct ProgramSource {
    pub wgsl: String,
    pub storage: u32,
}

/// A compiled program.
#[derive(Debug)]
pub struct Program {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    storage: u32,
}

impl Program {
    /// Binds the storage slices (inputs, then outputs) and the uniform.
    pub fn bind(&self, ctx: &GpuContext, storage: &[GpuSlice<'_>], uniform: &wgpu::Buffer) -> wgpu::BindGroup {
        debug_assert_eq!(storage.len(), self.storage as usize, "binding count");
        let entries: Vec<wgpu::BindGroupEntry> = storage
            .iter()
            .enumerate()
            .map(|(i, s)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: s.buffer, offset: s.offset, size: wgpu::BufferSize::new(s.size) }),
            })
            .chain(std::iter::once(wgpu::BindGroupEntry { binding: self.storage, resource: uniform.as_entire_binding() }))
            .collect();
        ctx.device().create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &self.layout, entries: &entries })
    }
}

/// How many programs were compiled and how often the cache answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramCounters {
    pub compiled: u64,
    pub hits: u64,
}

/// Programs by key, for one device.
#[derive(Default)]
pub struct ProgramCache {
    programs: Mutex<HashMap<ProgramKey, Arc<Program>>>,
    compiled: AtomicU64,
    hits: AtomicU64,
}

impl ProgramCache {
    /// The program for `key`, compiled from `source()` the first time.
    pub fn get_or_compile(&self, ctx: &GpuContext, key: ProgramKey, source: impl FnOnce() -> ProgramSource) -> Result<Arc<Program>, GpuError> {
        let mut programs = self.programs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(program) = programs.get(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Arc::clone(program));
        }
        let source = source();
        let what = format!("compiling the {} program ({})", key.op, key.hint);
        let program = ctx.scoped(&what, || compile(ctx.device(), key.op, &source))?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        let program = Arc::new(program);
        programs.insert(key, Arc::clone(&program));
        Ok(program)
    }

    pub fn counters(&self) -> ProgramCounters {
        ProgramCounters { compiled: self.compiled.load(Ordering::Relaxed), hits: self.hits.load(Ordering::Relaxed) }
    }
}

fn compile(device: &wgpu::Device, label: &str, source: &ProgramSource) -> Program {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(label), source: wgpu::ShaderSource::Wgsl(source.wgsl.as_str().into()) });
    // Every storage binding is read-write, inputs included: pooled tensors
    // share buffers, and WebGPU forbids one buffer in a dispatch as both
    // read-only and writable storage, even at disjoint ranges.
    let storage = wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Storage { read_only: false }, has_dynamic_offset: false, min_binding_size: None };
    let uniform = wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: false, min_binding_size: None };
    let entries: Vec<wgpu::BindGroupLayoutEntry> = (0..=source.storage)
        .map(|binding| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: if binding < source.storage { storage } else { uniform },
            count: None,
        })
        .collect();
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(label), entries: &entries });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor { label: Some(label), bind_group_layouts: &[Some(&layout)], immediate_size: 0 });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: Some(&pipeline_layout),
        module: &module,
        entry_point: Some("main"),
        // Every kernel writes its workgroup memory before reading it.
        compilation_options: wgpu::PipelineCompilationOptions { constants: &[], zero_initialize_workgroup_memory: false },
        cache: None,
    });
    Program { pipeline, layout, storage: source.storage }
}

/// WGSL for `tree(lid, value, is_max)`: the values of a 64-invocation
/// workgroup combined through workgroup memory and returned to every
/// invocation, by `max_of(a, b)` when `is_max`, else by `combine(a, b)`
/// (the kernel defines both).
pub(crate) const WORKGROUP_TREE: &str = "
var<workgroup> partial: array<f32, 64>;
fn tree(lid: u32, value: f32, is_max: bool) -> f32 {
    partial[lid] = value;
    for (var half = 32u; half > 0u; half /= 2u) {
        workgroupBarrier();
        if (lid < half) {
            let a = partial[lid];
            let b = partial[lid + half];
            partial[lid] = select(combine(a, b), max_of(a, b), is_max);
        }
    }
    workgroupBarrier();
    let total = partial[0];
    workgroupBarrier();
    return total;
}
";

/// [`WORKGROUP_TREE`]'s two combinations for sums and maxima.
pub(crate) const SUM_OR_MAX: &str = "
fn combine(a: f32, b: f32) -> f32 { return a + b; }
fn max_of(a: f32, b: f32) -> f32 { return max(a, b); }
";

/// WGSL for a flat invocation index over a dispatch folded by
/// [`fold_groups`]; kernels declare `main` with these builtins.
pub(crate) const FLAT_INDEX: &str = "
fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, size: u32) -> u32 {
    return ((wid.z * nwg.y + wid.y) * nwg.x + wid.x) * size + lid;
}
";

/// Workgroups `[x, y, z]` covering `groups` when one dimension holds at
/// most `limit`: shaders recover the flat index with `flat_index` and skip
/// the few surplus invocations.
pub fn fold_groups(groups: u64, limit: u32) -> Result<[u32; 3], GpuError> {
    let limit = u64::from(limit.max(1));
    let fold = |n: u64| -> (u64, u64) {
        let outer = n.div_ceil(limit);
        (n.div_ceil(outer.max(1)), outer)
    };
    let (x, rest) = fold(groups);
    if rest <= limit {
        return Ok([x as u32, rest.max(1) as u32, 1]);
    }
    let (y, z) = fold(rest);
    if z > limit {
        return Err(GpuError::Validation { what: "dispatching".into(), message: format!("{groups} workgroups exceed the device's {limit}³ grid") });
    }
    Ok([x as u32, y as u32, z as u32])
}

/// A uniform block built field by field in WGSL's layout: `vec4<u32>`
/// fields first (16-byte aligned), then 4-byte scalars.
#[derive(Default)]
pub(crate) struct Uniform(Vec<u32>);

impl Uniform {
    pub fn vec4(mut self, v: [u32; 4]) -> Self {
        assert!(self.0.len().is_multiple_of(4), "vec4 fields come before scalars");
        self.0.extend_from_slice(&v);
        self
    }

    /// Up to eight values as two `vec4<u32>`, padded with `fill`.
    pub fn vec8(self, v: &[usize], fill: u32) -> Self {
        let mut a = [fill; 8];
        for (slot, &x) in a.iter_mut().zip(v) {
            *slot = x as u32;
        }
        self.vec4([a[0], a[1], a[2], a[3]]).vec4([a[4], a[5], a[6], a[7]])
    }

    /// Up to eight signed values as two `vec4<i32>`, padded with zeros.
    pub fn ivec8(self, v: &[i32]) -> Self {
        let mut a = [0u32; 8];
        for (slot, &x) in a.iter_mut().zip(v) {
            *slot = x as u32;
        }
        self.vec4([a[0], a[1], a[2], a[3]]).vec4([a[4], a[5], a[6], a[7]])
    }

    pub fn u32(mut self, v: usize) -> Self {
        self.0.push(v as u32);
        self
    }

    pub fn i32(mut self, v: i32) -> Self {
        self.0.push(v as u32);
        self
    }

    pub fn f32(mut self, v: f32) -> Self {
        self.0.push(v.to_bits());
        self
    }

    /// The buffer, created once when a kernel is built.
    pub fn create(mut self, ctx: &GpuContext, label: &str) -> wgpu::Buffer {
        self.0.resize(self.0.len().div_ceil(4).max(1) * 4, 0);
        ctx.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents: bytemuck::cast_slice(&self.0), usage: wgpu::BufferUsages::UNIFORM })
    }
}

#[cfg(test)]
mod tests {
    use super::fold_groups;

    #[test]
    fn folding_covers_every_group_within_the_limit() {
        for (groups, limit) in [(1, 65535), (65535, 65535), (65536, 65535), (1_000_000, 65535), (70, 8), (500, 8), (512, 8)] {
            let [x, y, z] = fold_groups(groups, limit).unwrap();
            assert!(x <= limit && y <= limit && z <= limit, "{groups} over {limit}: {x} {y} {z}");
            let total = u64::from(x) * u64::from(y) * u64::from(z);
            assert!(total >= groups && total < 2 * groups, "{groups} over {limit}: {x} {y} {z}");
        }
        assert!(fold_groups(513, 8).is_err() && fold_groups(600, 8).is_err());
    }
}
