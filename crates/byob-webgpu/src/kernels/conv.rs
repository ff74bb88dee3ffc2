//! Conv (1-D and 2-D, groups, strides, dilations, pads, auto_pad, optional
//! bias) as an implicit GEMM on the tiled engine, one product per image and
//! group. Shapes and attributes are checked here for both layouts; this
//! file gathers NCHW's operands, [`conv_nhwc`](super::conv_nhwc) NHWC's.
//!
//! NCHW: output channels × output positions = weights × im2col(input),
//! the im2col matrix gathered on the fly while loading B tiles. A 1×1
//! convolution without stride or pad reads the input as a plain matrix.

use super::gemm::{source, GemmShader, Operand, Tile};
use super::layout::Channels;
use super::window::{axes, Axis};
use super::{Bind, Grid, Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;
use crate::program::{ProgramKey, Uniform};
use byob_tensor::DataType;

/// The parameter block of both layouts' programs (`channels`: input
/// channels per group).
const PARAMS: &str = "
struct Params { m: u32, n: u32, k: u32, group: u32, channels: u32, in_h: u32, in_w: u32, k_h: u32, k_w: u32, out_w: u32,
                stride_h: u32, stride_w: u32, dil_h: u32, dil_w: u32, pad_t: u32, pad_l: u32, in_channels: u32, out_channels: u32 }
";

const PRELUDE: &str = "
// Batch entry z is image z / group, group z % group.
fn first_channel(z: u32) -> u32 { return (z / p.group) * p.in_channels + (z % p.group) * p.channels; }
fn a_base(z: u32) -> u32 { return (z % p.group) * p.m * p.k; }
fn b_base(z: u32) -> u32 { return first_channel(z) * p.n; }
fn out_row(z: u32, m: u32) -> u32 { return (z * p.m + m) * p.n; }
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

pub(super) const FINISH_PLAIN: &str = "fn finish(z: u32, m: u32, n: u32, v: vec4<f32>) -> vec4<f32> { return v; }";

/// Rows are output channels.
const FINISH_BIAS: &str = "
@group(0) @binding(2) var<storage, read_write> bias: array<f32>;
fn finish(z: u32, m: u32, n: u32, v: vec4<f32>) -> vec4<f32> { return v + bias[(z % p.group) * p.m + m]; }";

/// A checked convolution, whichever the layout.
pub(super) struct ConvShape {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub group: usize,
    /// Input channels per group (the weights' second axis).
    pub channels: usize,
    /// Height (a unit axis for 1-D) and width.
    pub h: Axis,
    pub w: Axis,
    pub bias: bool,
    /// 1×1 taps without stride or pad: the input is the im2col matrix.
    pub pointwise: bool,
}

impl ConvShape {
    fn check(spec: &KernelSpec<'_>, layout: Channels) -> Result<(Self, Vec<usize>), GpuError> {
        let (x, w) = (spec.input(0)?, spec.input(1)?);
        let image = layout.split(spec, x)?;
        if !(1..=2).contains(&image.spatial.len()) || w.len() != x.len() {
            return Err(spec.error(format!("input {x:?} and weights {w:?}: the GPU kernel takes 1-D or 2-D convolutions (rank 3 or 4)")));
        }
        let group = spec.attr(spec.attrs().int("group", 1))?;
        let group = usize::try_from(group).ok().filter(|&g| g > 0).ok_or_else(|| spec.error(format!("attribute \"group\" must be positive, got {group}")))?;
        let (channels, out_channels) = (image.channels, w[0]);
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
        let mut geometry = axes(spec, image.spatial, kernel, false)?;
        let out = layout.join(image.batch, out_channels, geometry.iter().map(|a| a.output));
        if geometry.len() == 1 {
            geometry.insert(0, Axis::UNIT);
        }
        let pointwise = geometry.iter().all(|a| a.kernel == 1 && a.stride == 1 && a.pad_begin == 0 && a.pad_end == 0);
        let shape = Self { batch: image.batch, in_channels: channels, out_channels, group, channels: w[1], h: geometry[0], w: geometry[1], bias: bias.is_some(), pointwise };
        Ok((shape, out))
    }

    pub fn taps(&self) -> usize {
        self.h.kernel * self.w.kernel
    }
}

/// One layout's product per batch entry: C (m×n) = A (m×k) · B (k×n).
pub(super) struct Gemm {
    pub op: &'static str,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: Operand,
    pub b: Operand,
    /// Bindings of A and B (the input is 0, the weights 1).
    pub bindings: [u32; 2],
    /// Everything the engine asks of a prelude but `Params`.
    pub prelude: String,
}

pub(crate) fn build(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let layout = Channels::of(spec);
    let (s, out) = ConvShape::check(spec, layout)?;
    let gemm = match layout {
        Channels::First => nchw(&s),
        Channels::Last => super::conv_nhwc::gemm(&s),
    };
    let mut result = spec.kernel(vec![out]);
    let batches = s.batch * s.group;
    if batches * gemm.m * gemm.n == 0 {
        return Ok(result);
    }
    let tile = Tile::for_shape(gemm.m, gemm.n);
    let groups = tile.groups(gemm.m, gemm.n, batches, ctx.limits().max_compute_workgroups_per_dimension).map_err(|e| spec.error(e))?;
    let out_vec4 = gemm.n.is_multiple_of(4);
    let storage = if s.bias { 4 } else { 3 };
    let hint = format!("{}:{}:{}:{}{}", tile.name(), gemm.a.hint(), gemm.b.hint(), if out_vec4 { "out4" } else { "out1" }, if s.bias { ":bias" } else { "" });
    let key = ProgramKey::new(gemm.op, hint).with_input(DataType::F32, 4).with_input(DataType::F32, 4);
    let prelude = format!("{PARAMS}{}", gemm.prelude);
    let [a_binding, b_binding] = gemm.bindings;
    let shader = GemmShader { tile, a: gemm.a, b: gemm.b, out_vec4, bindings: [a_binding, b_binding, storage - 1], storage, prelude: &prelude };
    let program = ctx.programs().get_or_compile(ctx, key, || source(&shader))?;
    let (h, w) = (s.h, s.w);
    let uniform = Uniform::default()
        .u32(gemm.m)
        .u32(gemm.n)
        .u32(gemm.k)
        .u32(s.group)
        .u32(s.channels)
        .u32(h.input)
        .u32(w.input)
        .u32(h.kernel)
        .u32(w.kernel)
        .u32(w.output)
        .u32(h.stride)
        .u32(w.stride)
        .u32(h.dilation)
        .u32(w.dilation)
        .u32(h.pad_begin)
        .u32(w.pad_begin)
        .u32(s.in_channels)
        .u32(s.out_channels)
        .create(ctx, "Conv");
    let mut binds = vec![Bind::Input(0), Bind::Input(1)];
    binds.extend(s.bias.then_some(Bind::Input(2)));
    binds.push(Bind::Output(0));
    result.step(program, uniform, binds, Grid::Groups(groups));
    Ok(result)
}

/// Weights (A, rows contiguous in k) times im2col of the input (B).
fn nchw(s: &ConvShape) -> Gemm {
    let (m, n, k) = (s.out_channels / s.group, s.h.output * s.w.output, s.channels * s.taps());
    let b = if s.pointwise { Operand::Dense { k_contiguous: false, vec4: n.is_multiple_of(4) } } else { Operand::Computed { k4: false } };
    let prelude = format!("{PRELUDE}{}{}", if s.pointwise { "" } else { IM2COL }, if s.bias { FINISH_BIAS } else { FINISH_PLAIN });
    Gemm { op: "conv", m, n, k, a: Operand::Dense { k_contiguous: true, vec4: k.is_multiple_of(4) }, b, bindings: [1, 0], prelude }
}
