//! The strided gather behind Slice, Pad, Expand, Tile and Split: along each
//! axis, output coordinate o reads input coordinate `start + o · step`,
//! brought back into the axis by a padding mode when it falls outside
//! (Pad's edge, reflect and wrap; Tile is a wrap). One program per mode
//! serves every shape and op, since the per-axis maps travel in the
//! uniform block. Elements move as u32 bit patterns, so the program serves
//! any 4-byte element type, not only f32. An empty input, which cannot be
//! bound, pads to the fill value alone.

use super::{indexable, numel, Bind, Grid, Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;
use crate::program::{ProgramKey, ProgramSource, Uniform, FLAT_INDEX};

pub(crate) const MAX_RANK: usize = 8;

/// What a coordinate outside its axis reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Never outside (Slice, Expand, Split): checked when building.
    Inside,
    /// The fill value, a bit pattern.
    Constant(u32),
    Edge,
    Reflect,
    Wrap,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Inside => "inside",
            Self::Constant(_) => "constant",
            Self::Edge => "edge",
            Self::Reflect => "reflect",
            Self::Wrap => "wrap",
        }
    }

    /// WGSL bringing coordinate `c` into an axis of `n` (at least 1), or
    /// -1 for the fill value.
    fn wgsl(self) -> &'static str {
        match self {
            Self::Inside => "return c;",
            Self::Constant(_) => "return select(-1, c, c >= 0 && c < n);",
            Self::Edge => "return clamp(c, 0, n - 1);",
            // WGSL's % truncates: shifted into [0, n) by hand.
            Self::Wrap => "return (c % n + n) % n;",
            Self::Reflect => "if (n == 1) { return 0; } let period = 2 * (n - 1); let m = (c % period + period) % period; return select(m, period - m, m >= n);",
        }
    }
}

/// One output axis: its size, and the input coordinate of its first
/// element and the step between consecutive ones.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AxisMap {
    pub out: usize,
    pub start: i64,
    pub step: i64,
}

const GATHER: &str = "
@group(0) @binding(0) var<storage, read_write> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;
struct Params { out_dims: array<vec4<u32>, 2>, in_dims: array<vec4<u32>, 2>, strides: array<vec4<u32>, 2>, starts: array<vec4<i32>, 2>, steps: array<vec4<i32>, 2>, rank: u32, n: u32, fill: u32 }
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if (i >= p.n) { return; }
    var rest = i;
    var offset = 0u;
    for (var d = 0u; d < p.rank; d++) {
        let axis = p.rank - 1u - d;
        let v = axis / 4u;
        let k = axis % 4u;
        let size = p.out_dims[v][k];
        let o = i32(rest % size);
        rest = rest / size;
        let c = bring_in(p.starts[v][k] + o * p.steps[v][k], i32(p.in_dims[v][k]));
        if (c < 0) { y[i] = p.fill; return; }
        offset += u32(c) * p.strides[v][k];
    }
    y[i] = x[offset];
}
";

/// `y = value` (a bit pattern) over `p.n` elements, no input read.
const FILL: &str = "
@group(0) @binding(0) var<storage, read_write> y: array<u32>;
struct Params { n: u32, value: u32 }
@group(0) @binding(1) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if (i < p.n) { y[i] = p.value; }
}
";

/// Adds a dispatch filling output `output`, of `n` elements (a count that
/// [`indexable`] admitted), with the bit pattern `value`: what a Pad or a
/// reduction of an empty input writes, which cannot bind that input (a
/// binding is never empty).
pub(crate) fn fill(ctx: &GpuContext, spec: &KernelSpec<'_>, kernel: &mut Kernel, n: usize, value: u32, output: usize) -> Result<(), GpuError> {
    if n == 0 {
        return Ok(());
    }
    let program = ctx.programs().get_or_compile(ctx, ProgramKey::new("fill", ""), || ProgramSource { wgsl: format!("{FLAT_INDEX}{FILL}"), storage: 1 })?;
    let uniform = Uniform::default().u32(n).u32(value as usize).create(ctx, &spec.node.op_type);
    kernel.step(program, uniform, vec![Bind::Output(output)], Grid::Flat { invocations: n as u64, size: 64 });
    Ok(())
}

/// Adds a dispatch writing output `output` from input 0 (of shape `x`,
/// with as many axes as `maps`) through `maps`, coordinates outside an
/// axis read through `mode`.
pub(crate) fn gather(ctx: &GpuContext, spec: &KernelSpec<'_>, kernel: &mut Kernel, x: &[usize], maps: &[AxisMap], mode: Mode, output: usize) -> Result<(), GpuError> {
    let rank = x.len();
    if rank != maps.len() {
        return Err(spec.error(format!("{} axis maps for an input of rank {rank}", maps.len())));
    }
    if rank > MAX_RANK {
        return Err(spec.error(format!("rank {rank} exceeds the GPU kernel's {MAX_RANK}")));
    }
    let out: Vec<usize> = maps.iter().map(|m| m.out).collect();
    indexable(spec, &[&out])?;
    let n = numel(&out);
    if n == 0 {
        return Ok(());
    }
    if numel(x) == 0 {
        let Mode::Constant(value) = mode else { return Err(spec.error(format!("an empty input {x:?} cannot fill an output of shape {out:?}"))) };
        kernel.bind_only(&[]);
        return fill(ctx, spec, kernel, n, value, output);
    }
    let i32_fits = |v: i64| i32::try_from(v).is_ok();
    let mut starts = Vec::with_capacity(rank);
    let mut steps = Vec::with_capacity(rank);
    for (axis, (m, &dim)) in maps.iter().zip(x).enumerate() {
        // A single coordinate needs no step (Slice's may be i64::MAX).
        let step = if m.out > 1 { m.step } else { 0 };
        let last = (m.out as i64 - 1).checked_mul(step).and_then(|s| s.checked_add(m.start));
        let fits = [m.start, step, dim as i64, m.out as i64].into_iter().all(i32_fits) && last.is_some_and(i32_fits);
        if !fits {
            return Err(spec.error(format!("axis {axis}: sizes and offsets beyond 32 bits")));
        }
        let within = |c: i64| (0..dim as i64).contains(&c);
        if mode == Mode::Inside && !(within(m.start) && last.is_some_and(within)) {
            return Err(spec.error(format!("axis {axis}: coordinates {}, {}, … of {} leave an axis of {dim}", m.start, m.start + step, m.out)));
        }
        starts.push(m.start as i32);
        steps.push(step as i32);
    }
    let strides = byob_tensor::kernels::row_major_strides(x);
    let key = ProgramKey::new("gather", mode.name());
    let program = ctx.programs().get_or_compile(ctx, key, || ProgramSource { wgsl: format!("fn bring_in(c: i32, n: i32) -> i32 {{ {} }}\n{FLAT_INDEX}{GATHER}", mode.wgsl()), storage: 2 })?;
    let fill = if let Mode::Constant(fill) = mode { fill } else { 0 };
    let uniform = Uniform::default().vec8(&out, 1).vec8(x, 1).vec8(&strides, 0).ivec8(&starts).ivec8(&steps).u32(rank).u32(n).u32(fill as usize).create(ctx, &spec.node.op_type);
    kernel.step(program, uniform, vec![Bind::Input(0), Bind::Output(output)], Grid::Flat { invocations: n as u64, size: 64 });
    Ok(())
}
