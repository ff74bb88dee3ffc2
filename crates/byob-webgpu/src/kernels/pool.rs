//! MaxPool and AveragePool (1-D to 3-D; pads, strides, dilations,
//! ceil_mode, count_include_pad, auto_pad): one invocation per output,
//! folding its window. GlobalMaxPool and GlobalAveragePool: one workgroup
//! per channel plane, reducing through workgroup memory.
//!
//! Both layouts run the same programs: an output index splits into
//! (outer, pixel, channel) with `inner` channels per pixel, 1 for NCHW
//! (where "outer" is the image's channel plane) and C for NHWC (where it
//! is the image, and neighbouring invocations read neighbouring channels).

use super::layout::Channels;
use super::window::{axes, Axis};
use super::{numel, Bind, Grid, Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;
use crate::program::{ProgramKey, ProgramSource, Uniform, FLAT_INDEX};
use byob_tensor::DataType;

const WINDOW: &str = "
struct Params { input: vec4<u32>, output: vec4<u32>, kernel: vec4<u32>, stride: vec4<u32>, dilation: vec4<u32>, pad_begin: vec4<u32>, pad_end: vec4<u32>, n: u32, include_pad: u32, inner: u32 }
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if (i >= p.n) { return; }
    let channel = i % p.inner;
    let pixel = i / p.inner;
    let o = vec3<u32>((pixel / (p.output.y * p.output.z)) % p.output.x, (pixel / p.output.z) % p.output.y, pixel % p.output.z);
    let outer = pixel / (p.output.x * p.output.y * p.output.z);
    let base = outer * p.input.x * p.input.y * p.input.z;
    var acc = INIT;
    var inside = 0u;
    var padded = 0u;
    for (var a = 0u; a < p.kernel.x; a++) {
        let d = i32(o.x * p.stride.x + a * p.dilation.x) - i32(p.pad_begin.x);
        for (var b = 0u; b < p.kernel.y; b++) {
            let h = i32(o.y * p.stride.y + b * p.dilation.y) - i32(p.pad_begin.y);
            for (var c = 0u; c < p.kernel.z; c++) {
                let w = i32(o.z * p.stride.z + c * p.dilation.z) - i32(p.pad_begin.z);
                // Taps in the end pad count with count_include_pad; taps that
                // ceil_mode adds past it never do.
                let in_pads = d < i32(p.input.x + p.pad_end.x) && h < i32(p.input.y + p.pad_end.y) && w < i32(p.input.z + p.pad_end.z);
                padded += select(0u, 1u, in_pads);
                if (d >= 0 && h >= 0 && w >= 0 && d < i32(p.input.x) && h < i32(p.input.y) && w < i32(p.input.z)) {
                    let v = x[(base + (u32(d) * p.input.y + u32(h)) * p.input.z + u32(w)) * p.inner + channel];
                    acc = COMBINE;
                    inside += 1u;
                }
            }
        }
    }
    y[i] = FINISH;
}
";

const GLOBAL: &str = "
struct Params { planes: u32, size: u32, inner: u32 }
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let plane = flat_index(wid, nwg, 0u, 1u);
    // Surplus workgroups of a folded grid: uniform per workgroup, so they
    // may leave before the barriers.
    if (plane >= p.planes) { return; }
    let base = (plane / p.inner) * p.size * p.inner + plane % p.inner;
    var acc = INIT;
    for (var j = lid; j < p.size; j += 64u) {
        let v = x[base + j * p.inner];
        acc = COMBINE;
    }
    partial[lid] = acc;
    for (var half = 32u; half > 0u; half /= 2u) {
        workgroupBarrier();
        if (lid < half) {
            let v = partial[lid + half];
            acc = partial[lid];
            partial[lid] = COMBINE;
        }
    }
    if (lid == 0u) {
        let acc = partial[0];
        y[plane] = FINISH;
    }
}
";

pub(crate) fn build(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let op = spec.node.op_type.as_str();
    let x = spec.input(0)?;
    let layout = Channels::of(spec);
    let image = layout.split(spec, x)?;
    if !(1..=3).contains(&image.spatial.len()) {
        return Err(spec.error(format!("input {x:?}: the GPU kernel pools 1 to 3 spatial axes")));
    }
    if spec.node.outputs.get(1).is_some_and(|o| !o.is_empty()) {
        return Err(spec.error("MaxPool's Indices output has no GPU kernel"));
    }
    let max = op.contains("Max");
    let (init, combine) = if max { ("bitcast<f32>(0xff800000u)", "max(acc, v)") } else { ("0.0", "acc + v") };
    if op.starts_with("Global") {
        let (planes, size) = (image.batch * image.channels, numel(image.spatial));
        let mut kernel = spec.kernel(vec![layout.join(image.batch, image.channels, image.spatial.iter().map(|_| 1))]);
        if planes * size == 0 {
            return Ok(kernel);
        }
        let finish = if max { "acc".to_string() } else { "acc / f32(p.size)".to_string() };
        let key = ProgramKey::new("global_pool", op).with_input(DataType::F32, x.len());
        let program = ctx.programs().get_or_compile(ctx, key, || ProgramSource { wgsl: format!("{FLAT_INDEX}{}", GLOBAL.replace("INIT", init).replace("COMBINE", combine).replace("FINISH", &finish)), storage: 2 })?;
        let uniform = Uniform::default().u32(planes).u32(size).u32(image.pixel_stride).create(ctx, op);
        kernel.step(program, uniform, vec![Bind::Input(0), Bind::Output(0)], Grid::Flat { invocations: planes as u64, size: 1 });
        return Ok(kernel);
    }

    let shape = spec.attr(spec.attrs().ints("kernel_shape"))?.ok_or_else(|| spec.error("attribute \"kernel_shape\" is required"))?;
    let kernel_shape: Vec<usize> = shape.iter().map(|&k| usize::try_from(k).ok().filter(|&k| k > 0)).collect::<Option<_>>().ok_or_else(|| spec.error(format!("attribute \"kernel_shape\" must be positive, got {shape:?}")))?;
    if kernel_shape.len() != image.spatial.len() {
        return Err(spec.error(format!("attribute \"kernel_shape\" {shape:?} does not match the input's {} spatial axes", image.spatial.len())));
    }
    let include_pad = !max && spec.attr(spec.attrs().int("count_include_pad", 0))? != 0;
    let mut geometry = axes(spec, image.spatial, &kernel_shape, true)?;
    let out = layout.join(image.batch, image.channels, geometry.iter().map(|a| a.output));
    while geometry.len() < 3 {
        geometry.insert(0, Axis::UNIT);
    }
    let n = numel(&out);
    let mut kernel = spec.kernel(vec![out]);
    if n == 0 {
        return Ok(kernel);
    }
    let finish = if max { "acc" } else { "acc / f32(select(inside, padded, p.include_pad != 0u))" };
    let key = ProgramKey::new("pool", op).with_input(DataType::F32, x.len());
    let program = ctx.programs().get_or_compile(ctx, key, || ProgramSource { wgsl: format!("{FLAT_INDEX}{}", WINDOW.replace("INIT", init).replace("COMBINE", combine).replace("FINISH", finish)), storage: 2 })?;
    let field = |f: fn(&Axis) -> usize| [f(&geometry[0]) as u32, f(&geometry[1]) as u32, f(&geometry[2]) as u32, 0];
    let uniform = Uniform::default()
        .vec4(field(|a| a.input))
        .vec4(field(|a| a.output))
        .vec4(field(|a| a.kernel))
        .vec4(field(|a| a.stride))
        .vec4(field(|a| a.dilation))
        .vec4(field(|a| a.pad_begin))
        .vec4(field(|a| a.pad_end))
        .u32(n)
        .u32(include_pad as usize)
        .u32(image.pixel_stride)
        .create(ctx, op);
    kernel.step(program, uniform, vec![Bind::Input(0), Bind::Output(0)], Grid::Flat { invocations: n as u64, size: 64 });
    Ok(kernel)
}
