//! LayerNormalization and RMSNormalization (opset 23): each row, the axes
//! from `axis` on, normalised by one workgroup of 64 that reduces its mean
//! and then its mean squared deviation (two passes: no cancellation
//! between a sum of squares and a squared mean) through workgroup memory,
//! then scales (and shifts) every element. RMSNormalization takes a mean
//! of 0. Scale and bias may broadcast along the row's leading axes (their
//! shape, less leading ones, a suffix of the row's), so element j of a
//! row reads them at j modulo their length; other broadcasts stay on the
//! CPU. LayerNormalization's Mean and InvStdDev outputs, when asked for,
//! are written by each row's first invocation.

use super::{indexable, numel, Bind, Grid, Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;
use crate::program::{ProgramKey, ProgramSource, Uniform, FLAT_INDEX, SUM_OR_MAX, WORKGROUP_TREE};

const NORMALIZE: &str = "
struct Params { rows: u32, len: u32, scale_len: u32, bias_len: u32, epsilon: f32 }
@group(0) @binding(BINDING_UNIFORM) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = flat_index(wid, nwg, 0u, 1u);
    if (row >= p.rows) { return; }
    let base = row * p.len;
    var mean = 0.0;
    if (CENTRED) {
        var s = 0.0;
        for (var j = lid; j < p.len; j += 64u) { s += x[base + j]; }
        mean = tree(lid, s, false) / f32(p.len);
    }
    var q = 0.0;
    for (var j = lid; j < p.len; j += 64u) {
        let d = x[base + j] - mean;
        q += d * d;
    }
    let inv = 1.0 / sqrt(tree(lid, q, false) / f32(p.len) + p.epsilon);
    for (var j = lid; j < p.len; j += 64u) {
        y[base + j] = (x[base + j] - mean) * inv * scale[j % p.scale_len]SHIFT;
    }
    STATS
}
";

/// The length of a scale or bias of `shape` read along a row of `row`:
/// its shape less leading ones must be a suffix of the row's.
fn affine_len(spec: &KernelSpec<'_>, i: usize, shape: &[usize], row: &[usize]) -> Result<usize, GpuError> {
    let own = &shape[shape.iter().take_while(|&&d| d == 1).count()..];
    if own.len() > row.len() || row[row.len() - own.len()..] != *own {
        return Err(spec.error(format!("input {i} {shape:?} broadcasts along rows of {row:?} in a way the GPU kernel does not read")));
    }
    Ok(numel(own))
}

pub(crate) fn build(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let rms = spec.node.op_type == "RMSNormalization";
    let x = spec.input(0)?;
    indexable(spec, &[])?;
    let rank = x.len() as i64;
    let a = spec.attrs();
    let at = spec.attr(a.int("axis", -1))?;
    if !(-rank..rank).contains(&at) {
        return Err(spec.error(format!("attribute \"axis\" {at} is out of range for rank {rank}")));
    }
    let axis = at.rem_euclid(rank) as usize;
    let epsilon = spec.attr(a.float("epsilon", 1e-5))?;
    let row = &x[axis..];
    let scale_len = affine_len(spec, 1, spec.input(1)?, row)?;
    let bias = if rms { None } else { spec.optional(2).map(|b| affine_len(spec, 2, b, row)).transpose()? };
    let stats = !rms && spec.node.outputs.iter().skip(1).any(|o| !o.is_empty());
    let (rows, len) = (numel(&x[..axis]), numel(row));
    let mut stats_shape = x[..axis].to_vec();
    stats_shape.resize(x.len(), 1);
    let outputs = if stats { vec![x.to_vec(), stats_shape.clone(), stats_shape] } else { vec![x.to_vec()] };
    let mut kernel = spec.kernel(outputs);
    if rows == 0 {
        return Ok(kernel);
    }
    if len == 0 {
        return Err(spec.error(format!("rows of {x:?} from axis {axis} are empty")));
    }
    let hint = format!("{}{}{}", if rms { "rms" } else { "layer" }, if bias.is_some() { ":bias" } else { "" }, if stats { ":stats" } else { "" });
    let key = ProgramKey::new("normalize", hint);
    let program = ctx.programs().get_or_compile(ctx, key, || source(rms, bias.is_some(), stats))?;
    let uniform = Uniform::default().u32(rows).u32(len).u32(scale_len).u32(bias.unwrap_or(1)).f32(epsilon).create(ctx, &spec.node.op_type);
    let mut binds = vec![Bind::Input(0), Bind::Input(1)];
    binds.extend(bias.map(|_| Bind::Input(2)));
    binds.push(Bind::Output(0));
    if stats {
        binds.extend([Bind::Output(1), Bind::Output(2)]);
    }
    kernel.step(program, uniform, binds, Grid::Flat { invocations: rows as u64, size: 1 });
    Ok(kernel)
}

fn source(rms: bool, bias: bool, stats: bool) -> ProgramSource {
    let mut names = vec!["x", "scale"];
    names.extend(bias.then_some("bias"));
    names.push("y");
    if stats {
        names.extend(["mean_out", "inv_out"]);
    }
    let bindings: String = names.iter().enumerate().map(|(i, n)| format!("@group(0) @binding({i}) var<storage, read_write> {n}: array<f32>;\n")).collect();
    let wgsl = NORMALIZE
        .replace("BINDING_UNIFORM", &names.len().to_string())
        .replace("CENTRED", if rms { "false" } else { "true" })
        .replace("SHIFT", if bias { " + bias[j % p.bias_len]" } else { "" })
        .replace("STATS", if stats { "if (lid == 0u) { mean_out[row] = mean; inv_out[row] = inv; }" } else { "" });
    ProgramSource { wgsl: format!("{bindings}{FLAT_INDEX}{WORKGROUP_TREE}{SUM_OR_MAX}{wgsl}"), storage: names.len() as u32 }
}
