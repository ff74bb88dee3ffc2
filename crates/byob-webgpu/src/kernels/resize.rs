//! Resize and Upsample (nearest, linear and cubic; every coordinate
//! transformation mode but tf_crop_and_resize; antialiasing) as one
//! gather: each output element sums, over every combination of its
//! resized axes' taps, the product of their weights times the input there.
//! The taps (input indices and weights per output position) are
//! byob-tensor's own, computed in f64 when building, so the GPU rounds
//! nearest coordinates exactly as the CPU does, and they travel in the
//! uniform block: a fixed table of `TABLE` entries serves every shape from
//! one program, and resizes whose taps do not fit stay on the CPU.

use super::{indexable, numel, Bind, Grid, Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;
use crate::program::{ProgramKey, ProgramSource, Uniform, FLAT_INDEX};
use byob_tensor::ops::resize::axis_taps;

const MAX_RANK: usize = 8;

/// Tap pairs (index, weight) the table holds, two to a `vec4<u32>`: with
/// the header the block stays under WebGPU's guaranteed 64 KiB.
const TABLE: usize = 7936;

/// Marks an axis copied unchanged.
const UNCHANGED: u32 = u32::MAX;

const RESIZE: &str = "
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
struct Params { out_dims: array<vec4<u32>, 2>, strides: array<vec4<u32>, 2>, first: array<vec4<u32>, 2>, taps: array<vec4<u32>, 2>,
                rank: u32, n: u32, combinations: u32, table: array<vec4<u32>, TABLE_VEC4S> }
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if (i >= p.n) { return; }
    var coords: array<u32, 8>;
    var rest = i;
    for (var d = 0u; d < p.rank; d++) {
        let axis = p.rank - 1u - d;
        let size = p.out_dims[axis / 4u][axis % 4u];
        coords[axis] = rest % size;
        rest = rest / size;
    }
    var acc = 0.0;
    for (var c = 0u; c < p.combinations; c++) {
        var pick = c;
        var offset = 0u;
        var weight = 1.0;
        for (var axis = 0u; axis < p.rank; axis++) {
            let first = p.first[axis / 4u][axis % 4u];
            let stride = p.strides[axis / 4u][axis % 4u];
            if (first == 0xffffffffu) {
                offset += coords[axis] * stride;
                continue;
            }
            let count = p.taps[axis / 4u][axis % 4u];
            let e = first + coords[axis] * count + pick % count;
            pick = pick / count;
            let pair = p.table[e / 2u];
            let k = (e % 2u) * 2u;
            offset += pair[k] * stride;
            weight *= bitcast<f32>(pair[k + 1u]);
        }
        acc += weight * x[offset];
    }
    y[i] = acc;
}
";

pub(crate) fn build(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let x = spec.input(0)?;
    indexable(spec, &[])?;
    let rank = x.len();
    if rank > MAX_RANK {
        return Err(spec.error(format!("rank {rank} exceeds the GPU kernel's {MAX_RANK}")));
    }
    // The scales or sizes must be known; the roi, used only by
    // tf_crop_and_resize (refused), need not be.
    let scales_or_sizes: &[usize] = if spec.node.op_type == "Upsample" || spec.opset < 11 { &[1] } else { &[2, 3] };
    for &i in scales_or_sizes {
        if spec.optional(i).is_some_and(|s| numel(s) > 0) && spec.value(i).is_none() {
            return Err(spec.error(format!("input {i} (scales or sizes) must be a constant known when the kernel is built")));
        }
    }
    let inputs: Vec<_> = (0..spec.node.inputs.len()).map(|i| spec.value(i)).collect();
    let (out, taps) = spec.attr(axis_taps(spec.node, spec.opset, x, &inputs, TABLE))?;
    let mut kernel = spec.kernel(vec![out.clone()]);
    kernel.bind_only(&[0]);
    indexable(spec, &[&out])?;
    let n = numel(&out);
    if n == 0 {
        return Ok(kernel);
    }
    let mut table: Vec<u32> = Vec::new();
    let (mut first, mut counts) = (vec![UNCHANGED as usize; rank], vec![1; rank]);
    let mut combinations = 1usize;
    for (axis, positions) in taps.iter().enumerate() {
        let Some(positions) = positions else { continue };
        // Nearest's taps pick one neighbour: one tap of weight 1 each.
        let picks: Option<Vec<usize>> = positions.iter().map(|(indices, weights)| (weights.iter().filter(|&&w| w != 0.0).count() == 1).then(|| weights.iter().position(|&w| w == 1.0).and_then(|k| indices.get(k).copied())).flatten()).collect();
        let positions: Vec<(Vec<usize>, Vec<f64>)> = match picks {
            Some(picks) => picks.into_iter().map(|i| (vec![i], vec![1.0])).collect(),
            None => positions.clone(),
        };
        let count = positions.first().map_or(1, |(indices, _)| indices.len());
        if positions.iter().any(|(indices, weights)| indices.len() != count || weights.len() != count) {
            return Err(spec.error(format!("axis {axis}: the taps vary in number")));
        }
        first[axis] = table.len() / 2;
        counts[axis] = count;
        combinations = combinations.saturating_mul(count);
        for (indices, weights) in &positions {
            for (&index, &weight) in indices.iter().zip(weights) {
                table.extend([index as u32, (weight as f32).to_bits()]);
            }
        }
    }
    if table.len() / 2 > TABLE || combinations > 1 << 12 {
        return Err(spec.error(format!("{} taps in {combinations} combinations exceed the GPU kernel's table", table.len() / 2)));
    }
    let strides = byob_tensor::kernels::row_major_strides(x);
    let key = ProgramKey::new("resize", "");
    let program = ctx.programs().get_or_compile(ctx, key, || ProgramSource { wgsl: format!("{FLAT_INDEX}{}", RESIZE.replace("TABLE_VEC4S", &(TABLE / 2).to_string())), storage: 2 })?;
    let mut uniform = Uniform::default().vec8(&out, 1).vec8(&strides, 0).vec8(&first, 0).vec8(&counts, 1);
    // The scalars, padded to a vec4, then the table's vec4s.
    uniform = uniform.vec4([rank as u32, n as u32, combinations as u32, 0]);
    // The block must be as large as the struct, whatever the taps use.
    table.resize(2 * TABLE, 0);
    for pair in table.chunks_exact(4) {
        uniform = uniform.vec4([pair[0], pair[1], pair[2], pair[3]]);
    }
    kernel.step(program, uniform.create(ctx, "Resize"), vec![Bind::Input(0), Bind::Output(0)], Grid::Flat { invocations: n as u64, size: 64 });
    Ok(kernel)
}
