//! Conv (1-D and 2-D, NCHW, groups, strides, dilations, pads, auto_pad,
//! optional bias) as an implicit GEMM on the tiled engine: per batch entry
//! and group, output channels × output positions = weights × im2col(input),
//! with the im2col matrix gathered on the fly while loading B tiles. A 1×1
//! convolution without stride or pad reads the input as a plain matrix.

use super::gemm::{source, GemmShader, Operand, Tile};
use super::window::{axes, Axis};
use super::{Bind, Grid, Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;
use crate::program::{ProgramKey, Uniform};
use byob_tensor::DataType;

const PRELUDE: &str = "
struct Params { m: u32, n: u32, k: u32, group: u32, channels: u32, in_h: u32, in_w: u32, k_h: u32, k_w: u32, out_w: u32,
                stride_h: u32, stride_w: u32, dil_h: u32, dil_w: u32, pad_t: u32, pad_l: u32 }
// Batch entry z is image z / group, group z % group.
fn first_channel(z: u32) -> u32 { return (z / p.group) * p.group * p.channels + (z % p.group) * p.channels; }
fn a_base(z: u32) -> u32 { return (z % p.group) * p.m * p.k; }
fn b_base(z: u32) -> u32 { return first_channel(z) * p.n; }
fn out_base(z: u32) -> u32 { return z * p.m * p.n; }
";

/// B as im2col of the input, gathered while loading tiles.
const IM2COL: &str = "
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
fn load_b(z: u32, k: u32, n: u32) -> f32 {
    let taps = p.k_h * p.k_w;
    let t = k % taps;
    let ih = i32((n / p.out_w) * p.stride_h + (t / p.k_w) * p.dil_h) - i32(p.pad_t);
    let iw = i32((n % p.out_w) * p.stride_w + (t % p.k_w) * p.dil_w) - i32(p.pad_l);
    if (ih < 0 || iw < 0 || ih >= i32(p.in_h) || iw >= i32(p.in_w)) { return 0.0; }
    return x[((first_channel(z) + k / taps) * p.in_h + u32(ih)) * p.in_w + u32(iw)];
}
";

const FINISH_PLAIN: &str = "fn finish(z: u32, m: u32, n: u32, v: vec4<f32>) -> vec4<f32> { return v; }";

const FINISH_BIAS: &str = "
@group(0) @binding(2) var<storage, read_write> bias: array<f32>;
fn finish(z: u32, m: u32, n: u32, v: vec4<f32>) -> vec4<f32> { return v + bias[(z % p.group) * p.m + m]; }";

pub(crate) fn build(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let (x, w) = (spec.input(0)?, spec.input(1)?);
    if !(x.len() == 3 || x.len() == 4) || w.len() != x.len() {
        return Err(spec.error(format!("input {x:?} and weights {w:?}: the GPU kernel takes 1-D or 2-D convolutions (rank 3 or 4)")));
    }
    let group = spec.attr(spec.attrs().int("group", 1))?;
    let group = usize::try_from(group).ok().filter(|&g| g > 0).ok_or_else(|| spec.error(format!("attribute \"group\" must be positive, got {group}")))?;
    let (batch, channels, out_channels) = (x[0], x[1], w[0]);
    if channels != w[1] * group || out_channels % group != 0 {
        return Err(spec.error(format!("input {x:?}, weights {w:?}: channels do not split into {group} groups")));
    }
    let kernel = &w[2..];
    if let Some(k) = spec.attr(spec.attrs().ints("kernel_shape"))? {
        if k.iter().map(|&d| d as usize).ne(kernel.iter().copied()) {
            return Err(spec.error(format!("attribute \"kernel_shape\" {k:?} differs from the weights' {kernel:?}")));
        }
    }
    let bias = spec.optional(2);
    if let Some(b) = bias {
        if b != [out_channels] {
            return Err(spec.error(format!("bias {b:?} should be [{out_channels}]")));
        }
    }
    let mut geometry = axes(spec, &x[2..], kernel, false)?;
    if geometry.len() == 1 {
        geometry.insert(0, Axis::UNIT);
    }
    let [h, wd] = [geometry[0], geometry[1]];
    let mut out = vec![batch, out_channels];
    out.extend(geometry[2 - kernel.len()..].iter().map(|a| a.output));

    let (m, n, k) = (out_channels / group, h.output * wd.output, w[1] * h.kernel * wd.kernel);
    let mut result = spec.kernel(vec![out]);
    if batch * m * n == 0 {
        return Ok(result);
    }
    let pointwise = geometry.iter().all(|a| a.kernel == 1 && a.stride == 1 && a.pad_begin == 0 && a.pad_end == 0);
    let tile = Tile::for_shape(m, n);
    let groups = tile.groups(m, n, batch * group, ctx.limits().max_compute_workgroups_per_dimension).map_err(|e| spec.error(e))?;
    let a = Operand::Dense { k_contiguous: true, vec4: k.is_multiple_of(4) };
    let b = if pointwise { Operand::Dense { k_contiguous: false, vec4: n.is_multiple_of(4) } } else { Operand::Computed };
    let out_vec4 = n.is_multiple_of(4);
    let storage = if bias.is_some() { 4 } else { 3 };
    let hint = format!("{}:{}:{}:{}{}", tile.name(), a.hint(), b.hint(), if out_vec4 { "out4" } else { "out1" }, if bias.is_some() { ":bias" } else { "" });
    let key = ProgramKey::new("conv", hint).with_input(DataType::F32, 4).with_input(DataType::F32, 4);
    let prelude = format!("{PRELUDE}{}{}", if pointwise { "" } else { IM2COL }, if bias.is_some() { FINISH_BIAS } else { FINISH_PLAIN });
    let program = ctx.programs().get_or_compile(ctx, key, || source(&GemmShader { tile, a, b, out_vec4, bindings: [1, 0, storage - 1], storage, prelude: &prelude }))?;
    let uniform = Uniform::default()
        .u32(m)
        .u32(n)
        .u32(k)
        .u32(group)
        .u32(w[1])
        .u32(h.input)
        .u32(wd.input)
        .u32(h.kernel)
        .u32(wd.kernel)
        .u32(wd.output)
        .u32(h.stride)
        .u32(wd.stride)
        .u32(h.dilation)
        .u32(wd.dilation)
        .u32(h.pad_begin)
        .u32(wd.pad_begin)
        .create(ctx, "Conv");
    let mut binds = vec![Bind::Input(0), Bind::Input(1)];
    binds.extend(bias.map(|_| Bind::Input(2)));
    binds.push(Bind::Output(0));
    result.step(program, uniform, binds, Grid::Groups(groups));
    Ok(result)
}
