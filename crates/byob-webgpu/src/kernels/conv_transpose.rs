//! ConvTranspose (1-D and 2-D; groups, strides, dilations, pads,
//! output_padding, output_shape, auto_pad, optional bias) as a gather: one
//! invocation per output element sums, over its group's input channels,
//! the kernel taps whose scattered position lands on it, the input
//! position being (o + pad - tap · dilation) / stride where that divides
//! exactly. A gather writes each output once, with no atomics, and skips
//! the taps that miss. 1-D runs as 2-D with a height of one. The geometry
//! (output sizes, pads from auto_pad or output_shape) is byob-tensor's
//! CPU one, so both providers agree on shapes.

use super::{indexable, numel, Bind, Grid, Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;
use crate::program::{ProgramKey, ProgramSource, Uniform, FLAT_INDEX};
use byob_tensor::ops::conv_transpose::geometry;

const CONV_TRANSPOSE: &str = "
struct Params { n: u32, out_channels: u32, channels: u32, group_in: u32, group_out: u32, in_h: u32, in_w: u32, out_h: u32, out_w: u32,
                k_h: u32, k_w: u32, stride_h: i32, stride_w: i32, dil_h: i32, dil_w: i32, pad_t: i32, pad_l: i32 }
@group(0) @binding(BINDING_UNIFORM) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if (i >= p.n) { return; }
    let ow = i32(i % p.out_w);
    let oh = i32((i / p.out_w) % p.out_h);
    let m = (i / (p.out_w * p.out_h)) % p.out_channels;
    let image = i / (p.out_w * p.out_h * p.out_channels);
    let g = m / p.group_out;
    let mo = m % p.group_out;
    var acc = BIAS;
    for (var kh = 0u; kh < p.k_h; kh++) {
        let th = oh + p.pad_t - i32(kh) * p.dil_h;
        if (th < 0 || th % p.stride_h != 0 || th / p.stride_h >= i32(p.in_h)) { continue; }
        let ih = u32(th / p.stride_h);
        for (var kw = 0u; kw < p.k_w; kw++) {
            let tw = ow + p.pad_l - i32(kw) * p.dil_w;
            if (tw < 0 || tw % p.stride_w != 0 || tw / p.stride_w >= i32(p.in_w)) { continue; }
            let iw = u32(tw / p.stride_w);
            for (var ci = 0u; ci < p.group_in; ci++) {
                let c = g * p.group_in + ci;
                acc += x[((image * p.channels + c) * p.in_h + ih) * p.in_w + iw] * w[((c * p.group_out + mo) * p.k_h + kh) * p.k_w + kw];
            }
        }
    }
    y[i] = acc;
}
";

pub(crate) fn build(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let (xs, ws) = (spec.input(0)?, spec.input(1)?);
    indexable(spec, &[])?;
    if !(3..=4).contains(&xs.len()) || ws.len() != xs.len() {
        return Err(spec.error(format!("X {xs:?} and W {ws:?} must be [N, C, ...] and [C, M/group, ...] of one rank, with one or two spatial axes")));
    }
    let group = spec.attr(spec.attrs().int("group", 1))?;
    let (batch, channels) = (xs[0], xs[1]);
    let group = usize::try_from(group).ok().filter(|&g| g > 0 && channels % g == 0 && ws[0] == channels);
    let group = group.ok_or_else(|| spec.error(format!("W {ws:?} does not fit {channels} input channels in the attribute's groups")))?;
    let group_out = ws[1];
    let out_channels = group_out * group;
    let bias = spec.optional(2);
    if bias.is_some_and(|b| numel(b) != out_channels) {
        return Err(spec.error(format!("B must hold {out_channels} values")));
    }
    let geo = spec.attr(geometry(spec.node, &xs[2..], &ws[2..]))?;
    // 1-D as 2-D with a height of one.
    let two = |v: &[usize]| if v.len() == 1 { [1, v[0]] } else { [v[0], v[1]] };
    let two_i = |v: &[i64], one: i64| if v.len() == 1 { [one, v[0]] } else { [v[0], v[1]] };
    let (input, kernel_size, out) = (two(&xs[2..]), two(&ws[2..]), two(&geo.out));
    let (strides, dilations, pads) = (two_i(&geo.strides[..xs.len() - 2], 1), two_i(&geo.dilations[..xs.len() - 2], 1), two_i(&geo.pad_begin[..xs.len() - 2], 0));
    let mut shape = vec![batch, out_channels];
    shape.extend_from_slice(&geo.out);
    indexable(spec, &[&shape])?;
    let n = numel(&shape);
    let mut kernel = spec.kernel(vec![shape]);
    if n == 0 {
        return Ok(kernel);
    }
    if numel(xs) == 0 || numel(ws) == 0 {
        return Err(spec.error("an empty input or kernel has no GPU kernel"));
    }
    let fits = |v: i64| i32::try_from(v).is_ok();
    if !strides.iter().chain(&dilations).chain(&pads).all(|&v| fits(v)) {
        return Err(spec.error("strides, dilations or pads beyond 32 bits"));
    }
    let key = ProgramKey::new("conv_transpose", if bias.is_some() { "bias" } else { "" });
    let program = ctx.programs().get_or_compile(ctx, key, || source(bias.is_some()))?;
    let mut uniform = Uniform::default().u32(n).u32(out_channels).u32(channels).u32(channels / group).u32(group_out);
    for v in [input[0], input[1], out[0], out[1], kernel_size[0], kernel_size[1]] {
        uniform = uniform.u32(v);
    }
    for v in [strides[0], strides[1], dilations[0], dilations[1], pads[0], pads[1]] {
        uniform = uniform.i32(v as i32);
    }
    let mut binds = vec![Bind::Input(0), Bind::Input(1)];
    binds.extend(bias.map(|_| Bind::Input(2)));
    binds.push(Bind::Output(0));
    kernel.step(program, uniform.create(ctx, "ConvTranspose"), binds, Grid::Flat { invocations: n as u64, size: 64 });
    Ok(kernel)
}

fn source(bias: bool) -> ProgramSource {
    let mut names = vec!["x", "w"];
    names.extend(bias.then_some("b"));
    names.push("y");
    let bindings: String = names.iter().enumerate().map(|(i, n)| format!("@group(0) @binding({i}) var<storage, read_write> {n}: array<f32>;\n")).collect();
    let wgsl = CONV_TRANSPOSE.replace("BINDING_UNIFORM", &names.len().to_string()).replace("BIAS", if bias { "b[m]" } else { "0.0" });
    ProgramSource { wgsl: format!("{bindings}{FLAT_INDEX}{wgsl}"), storage: names.len() as u32 }
}
