//! BatchNormalization for inference: each channel scaled and shifted by
//! its statistics, y = (x - mean) · scale / sqrt(var + epsilon) + B, with
//! the channel axis second (NCHW) or last (NHWC).

use super::layout::Channels;
use super::{numel, Bind, Grid, Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;
use crate::program::{ProgramKey, ProgramSource, Uniform, FLAT_INDEX};
use byob_tensor::DataType;

const BATCH_NORM: &str = "
struct Params { n: u32, channels: u32, inner: u32, epsilon: f32 }
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> scale: array<f32>;
@group(0) @binding(2) var<storage, read_write> shift: array<f32>;
@group(0) @binding(3) var<storage, read_write> mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> variance: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if (i >= p.n) { return; }
    let c = (i / p.inner) % p.channels;
    y[i] = (x[i] - mean[c]) * scale[c] / sqrt(variance[c] + p.epsilon) + shift[c];
}
";

pub(crate) fn batch_norm(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let x = spec.input(0)?;
    let image = Channels::of(spec).split(spec, x)?;
    if spec.attr(spec.attrs().int("training_mode", 0))? != 0 || spec.node.outputs.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(spec.error("training mode (running statistics outputs) has no GPU kernel"));
    }
    let channels = image.channels;
    for (i, name) in [(1, "scale"), (2, "B"), (3, "mean"), (4, "var")] {
        let s = spec.input(i)?;
        if s != [channels] {
            return Err(spec.error(format!("input {i} ({name}) {s:?} should be [{channels}]")));
        }
    }
    let epsilon = spec.attr(spec.attrs().float("epsilon", 1e-5))?;
    let n = numel(x);
    let mut kernel = spec.kernel(vec![x.to_vec()]);
    if n == 0 {
        return Ok(kernel);
    }
    let key = ProgramKey::new("batch_norm", "").with_input(DataType::F32, x.len());
    let program = ctx.programs().get_or_compile(ctx, key, || ProgramSource { wgsl: format!("{FLAT_INDEX}{BATCH_NORM}"), storage: 6 })?;
    let uniform = Uniform::default().u32(n).u32(channels).u32(image.channel_stride).f32(epsilon).create(ctx, "BatchNormalization");
    kernel.step(program, uniform, (0..5).map(Bind::Input).chain([Bind::Output(0)]).collect(), Grid::Flat { invocations: n as u64, size: 64 });
    Ok(kernel)
}
