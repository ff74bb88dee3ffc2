//! Softmax: one workgroup per row, reducing the row's maximum and then its
//! sum of exponentials through workgroup memory. Before opset 13 the input
//! is read as a matrix flattened at `axis` (default 1) and each of its rows
//! normalised; from 13 only along `axis` (default -1), elements of one row
//! `inner` apart.

use super::{numel, Bind, Grid, Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;
use crate::program::{ProgramKey, ProgramSource, Uniform, FLAT_INDEX, SUM_OR_MAX, WORKGROUP_TREE};
use byob_tensor::DataType;

const SOFTMAX: &str = "
struct Params { rows: u32, len: u32, inner: u32 }
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

fn at(row: u32, j: u32) -> u32 {
    return ((row / p.inner) * p.len + j) * p.inner + row % p.inner;
}


@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = flat_index(wid, nwg, 0u, 1u);
    if (row >= p.rows) { return; }
    var m = bitcast<f32>(0xff800000u);
    for (var j = lid; j < p.len; j += 64u) { m = max(m, x[at(row, j)]); }
    m = tree(lid, m, true);
    var s = 0.0;
    for (var j = lid; j < p.len; j += 64u) { s += exp(x[at(row, j)] - m); }
    s = tree(lid, s, false);
    for (var j = lid; j < p.len; j += 64u) { y[at(row, j)] = exp(x[at(row, j)] - m) / s; }
}
";

pub(crate) fn build(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let x = spec.input(0)?;
    let rank = x.len() as i64;
    let legacy = spec.opset < 13;
    let axis = spec.attr(spec.attrs().int("axis", if legacy { 1 } else { -1 }))?;
    let valid = if legacy { -rank..=rank } else { -rank..=rank - 1 };
    if rank == 0 || !valid.contains(&axis) {
        return Err(spec.error(format!("attribute \"axis\" {axis} is out of range for rank {rank}")));
    }
    let axis = if axis < 0 { (axis + rank) as usize } else { axis as usize };
    let (outer, len, inner) = if legacy { (numel(&x[..axis]), numel(&x[axis..]), 1) } else { (numel(&x[..axis]), x[axis], numel(&x[axis + 1..])) };
    let mut kernel = spec.kernel(vec![x.to_vec()]);
    if outer * len * inner == 0 {
        return Ok(kernel);
    }
    let key = ProgramKey::new("softmax", "").with_input(DataType::F32, x.len());
    let program = ctx.programs().get_or_compile(ctx, key, || ProgramSource { wgsl: format!("{FLAT_INDEX}{WORKGROUP_TREE}{SUM_OR_MAX}{SOFTMAX}"), storage: 2 })?;
    let uniform = Uniform::default().u32(outer * inner).u32(len).u32(inner).create(ctx, "Softmax");
    kernel.step(program, uniform, vec![Bind::Input(0), Bind::Output(0)], Grid::Flat { invocations: (outer * inner) as u64, size: 1 });
    Ok(kernel)
}
