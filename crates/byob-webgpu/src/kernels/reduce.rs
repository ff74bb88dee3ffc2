//! The reductions (ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd,
//! ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum, ReduceLogSumExp): one
//! workgroup per output element strides over the elements it reduces and
//! combines its 64 partial results as a tree in workgroup memory, in f32
//! (a tree keeps a long sum's rounding error near log2 of its length);
//! runs shorter than a workgroup take one invocation per output instead.
//! The kept axes, then the reduced ones, are listed with their input
//! strides in the uniform block, so one program per op serves every shape
//! and choice of axes. The axes are resolved by byob-tensor's CPU rules
//! (attribute before opset 18, 13 for ReduceSum; constant input after;
//! `noop_with_empty_axes`, whose identity is a plain copy). A reduction
//! of an empty input writes the op's identity (0, 1, ±inf, NaN for Mean).

use super::gather::fill;
use super::shape::{copy, ints_input};
use super::{indexable, numel, Bind, Grid, Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;
use crate::program::{ProgramKey, ProgramSource, Uniform, FLAT_INDEX, WORKGROUP_TREE};
use byob_tensor::ops::reduce::{reduced_axes, reduced_shape};

const MAX_RANK: usize = 8;

/// Per op: the result over no elements, the start value, each element's
/// contribution `lift(v)` (with LogSumExp's `shift`), how two partial
/// results combine, and the result from the combined `acc` of `p.count`
/// elements.
struct Variant {
    empty: f32,
    start: &'static str,
    lift: &'static str,
    combine: &'static str,
    finish: &'static str,
}

fn variant(op: &str) -> Option<Variant> {
    let sum = |empty, lift, finish| Variant { empty, start: "0.0", lift, combine: "a + b", finish };
    Some(match op {
        "ReduceSum" => sum(0.0, "v", "acc"),
        "ReduceMean" => sum(f32::NAN, "v", "acc / f32(p.count)"),
        "ReduceL1" => sum(0.0, "abs(v)", "acc"),
        "ReduceL2" => sum(0.0, "v * v", "sqrt(acc)"),
        "ReduceSumSquare" => sum(0.0, "v * v", "acc"),
        "ReduceLogSum" => sum(f32::NEG_INFINITY, "v", "log(acc)"),
        "ReduceLogSumExp" => sum(f32::NEG_INFINITY, "exp(v - shift)", "log(acc) + shift"),
        "ReduceProd" => Variant { empty: 1.0, start: "1.0", lift: "v", combine: "a * b", finish: "acc" },
        "ReduceMax" => Variant { empty: f32::NEG_INFINITY, start: "bitcast<f32>(0xff800000u)", lift: "v", combine: "extreme(a, b, true)", finish: "acc" },
        "ReduceMin" => Variant { empty: f32::INFINITY, start: "bitcast<f32>(0x7f800000u)", lift: "v", combine: "extreme(a, b, false)", finish: "acc" },
        _ => return None,
    })
}

/// What both strategies share: the bindings, NaN-aware Max and Min, and
/// the input offset of an index over a range of the axis list.
const COMMON: &str = "
struct Params { dims: array<vec4<u32>, 2>, strides: array<vec4<u32>, 2>, kept: u32, rank: u32, outputs: u32, count: u32 }
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

// Bit tests, as compilers may assume that no float is NaN.
fn is_nan(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u; }
fn is_inf(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) == 0x7f800000u; }

// Max or Min propagating NaN, as numpy and the CPU provider do.
fn extreme(a: f32, b: f32, is_max: bool) -> f32 {
    if (is_nan(a) || is_nan(b)) { return bitcast<f32>(0x7fc00000u); }
    return select(min(a, b), max(a, b), is_max);
}

// The input offset of `index` over axes first..last of the list.
fn offset(index: u32, first: u32, last: u32) -> u32 {
    var rest = index;
    var at = 0u;
    for (var axis = last; axis > first; axis--) {
        let size = p.dims[(axis - 1u) / 4u][(axis - 1u) % 4u];
        at += (rest % size) * p.strides[(axis - 1u) / 4u][(axis - 1u) % 4u];
        rest = rest / size;
    }
    return at;
}
";

/// One workgroup per output: 64 strided partial results combined as a
/// tree in workgroup memory.
const TREE: &str = "
fn combine(a: f32, b: f32) -> f32 { return COMBINE; }
fn max_of(a: f32, b: f32) -> f32 { return extreme(a, b, true); }

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let o = flat_index(wid, nwg, 0u, 1u);
    if (o >= p.outputs) { return; }
    let base = offset(o, 0u, p.kept);
    var shift = 0.0;
    if (SHIFTED) {
        var m = bitcast<f32>(0xff800000u);
        for (var r = lid; r < p.count; r += 64u) { m = extreme(m, x[base + offset(r, p.kept, p.rank)], true); }
        m = tree(lid, m, true);
        // An infinite maximum would make v - shift NaN: shift by nothing.
        shift = select(m, 0.0, is_inf(m));
    }
    var acc = START;
    for (var r = lid; r < p.count; r += 64u) {
        let v = x[base + offset(r, p.kept, p.rank)];
        let a = acc;
        let b = LIFT;
        acc = COMBINE;
    }
    acc = tree(lid, acc, false);
    if (lid == 0u) { y[o] = FINISH; }
}
";

/// One invocation per output, for runs shorter than a workgroup (which
/// would leave most of a tree's invocations idle).
const SERIAL: &str = "
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let o = flat_index(wid, nwg, lid, 64u);
    if (o >= p.outputs) { return; }
    let base = offset(o, 0u, p.kept);
    var shift = 0.0;
    if (SHIFTED) {
        var m = bitcast<f32>(0xff800000u);
        for (var r = 0u; r < p.count; r++) { m = extreme(m, x[base + offset(r, p.kept, p.rank)], true); }
        shift = select(m, 0.0, is_inf(m));
    }
    var acc = START;
    for (var r = 0u; r < p.count; r++) {
        let v = x[base + offset(r, p.kept, p.rank)];
        let a = acc;
        let b = LIFT;
        acc = COMBINE;
    }
    y[o] = FINISH;
}
";

pub(crate) fn build(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let op = spec.node.op_type.as_str();
    let v = variant(op).ok_or_else(|| spec.error("not a reduction"))?;
    let x = spec.input(0)?;
    indexable(spec, &[])?;
    let rank = x.len();
    if rank > MAX_RANK {
        return Err(spec.error(format!("rank {rank} exceeds the GPU kernel's {MAX_RANK}")));
    }
    let a = spec.attrs();
    let (keepdims, noop) = (spec.attr(a.int("keepdims", 1))? != 0, spec.attr(a.int("noop_with_empty_axes", 0))? != 0);
    let input_since = if op == "ReduceSum" { 13 } else { 18 };
    let axes = if spec.opset >= input_since && spec.optional(1).is_none() { None } else { ints_input(spec, 1, "axes")? };
    let Some(reduced) = spec.attr(reduced_axes(axes.as_deref(), rank, noop))? else {
        let mut kernel = spec.kernel(vec![x.to_vec()]);
        kernel.bind_only(&[0]);
        copy(ctx, spec, &mut kernel, numel(x))?;
        return Ok(kernel);
    };
    let out = reduced_shape(x, &reduced, keepdims);
    let mut kernel = spec.kernel(vec![out.clone()]);
    kernel.bind_only(&[0]);
    let (outputs, count) = (numel(&out), numel(x) / numel(&out).max(1));
    if outputs == 0 {
        return Ok(kernel);
    }
    if numel(x) == 0 {
        kernel.bind_only(&[]);
        fill(ctx, spec, &mut kernel, outputs, v.empty.to_bits(), 0)?;
        return Ok(kernel);
    }
    let strides = byob_tensor::kernels::row_major_strides(x);
    // Kept axes first, so that an output index walks them in order.
    let order: Vec<usize> = (0..rank).filter(|&d| !reduced[d]).chain((0..rank).filter(|&d| reduced[d])).collect();
    let dims: Vec<usize> = order.iter().map(|&d| x[d]).collect();
    let strides: Vec<usize> = order.iter().map(|&d| strides[d]).collect();
    let kept = reduced.iter().filter(|&&r| !r).count();
    let serial = count < 64;
    let key = ProgramKey::new("reduce", format!("{op}{}", if serial { ":serial" } else { "" }));
    let program = ctx.programs().get_or_compile(ctx, key, || {
        let wgsl = format!("{COMMON}{}", if serial { SERIAL.to_string() } else { format!("{WORKGROUP_TREE}{TREE}") })
            .replace("SHIFTED", if op == "ReduceLogSumExp" { "true" } else { "false" })
            .replace("START", v.start)
            .replace("LIFT", v.lift)
            .replace("COMBINE", v.combine)
            .replace("FINISH", v.finish);
        ProgramSource { wgsl: format!("{FLAT_INDEX}{wgsl}"), storage: 2 }
    })?;
    let uniform = Uniform::default().vec8(&dims, 1).vec8(&strides, 0).u32(kept).u32(rank).u32(outputs).u32(count).create(ctx, op);
    kernel.step(program, uniform, vec![Bind::Input(0), Bind::Output(0)], Grid::Flat { invocations: outputs as u64, size: if serial { 64 } else { 1 } });
    Ok(kernel)
}
