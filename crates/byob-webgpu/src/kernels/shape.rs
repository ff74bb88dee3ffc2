//! Data movement: Transpose (a strided gather), the view ops (Reshape,
//! Flatten, Squeeze, Unsqueeze, Identity, Dropout: the bytes unchanged, so
//! a caller may alias them; encoded, they copy) and Concat (one copy per
//! input into its stripe of the output).

use super::{numel, Bind, Grid, Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;
use crate::program::{ProgramKey, ProgramSource, Uniform, FLAT_INDEX};
use byob_tensor::DataType;

const MAX_RANK: usize = 8;

/// `y = x` over `p.n` elements of type T (`u32` or `vec4<u32>`: any 32-bit
/// element, its bits unchanged).
const COPY: &str = "
@group(0) @binding(0) var<storage, read_write> x: array<T>;
@group(0) @binding(1) var<storage, read_write> y: array<T>;
struct Params { n: u32 }
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if (i < p.n) { y[i] = x[i]; }
}
";

/// Output element i reads the input at the strides of its permuted axes.
const TRANSPOSE: &str = "
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
struct Params { dims: array<vec4<u32>, 2>, strides: array<vec4<u32>, 2>, rank: u32, n: u32 }
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if (i >= p.n) { return; }
    var rest = i;
    var offset = 0u;
    for (var d = 0u; d < p.rank; d++) {
        let axis = p.rank - 1u - d;
        let size = p.dims[axis / 4u][axis % 4u];
        offset += (rest % size) * p.strides[axis / 4u][axis % 4u];
        rest = rest / size;
    }
    y[i] = x[offset];
}
";

/// Input element i goes to row i / inner_in of the output, at `offset`.
const CONCAT: &str = "
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
struct Params { n: u32, inner_in: u32, inner_out: u32, offset: u32 }
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, 64u);
    if (i < p.n) { y[(i / p.inner_in) * p.inner_out + p.offset + i % p.inner_in] = x[i]; }
}
";

/// An axis attribute in [-rank, rank) made non-negative.
fn axis(spec: &KernelSpec<'_>, value: i64, rank: usize) -> Result<usize, GpuError> {
    let r = rank as i64;
    if !(-r..r).contains(&value) {
        return Err(spec.error(format!("axis {value} is out of range for rank {rank}")));
    }
    Ok(value.rem_euclid(r) as usize)
}

pub(crate) fn transpose(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let x = spec.input(0)?;
    let rank = x.len();
    if rank > MAX_RANK {
        return Err(spec.error(format!("rank {rank} exceeds the GPU kernel's {MAX_RANK}")));
    }
    let perm: Vec<usize> = match spec.attr(spec.attrs().ints("perm"))? {
        None => (0..rank).rev().collect(),
        Some(p) => p.iter().map(|&a| usize::try_from(a).ok().filter(|&a| a < rank)).collect::<Option<_>>().ok_or_else(|| spec.error(format!("attribute \"perm\" {p:?} is not a permutation of 0..{rank}")))?,
    };
    let mut seen = perm.clone();
    seen.sort_unstable();
    if seen != (0..rank).collect::<Vec<_>>() {
        return Err(spec.error(format!("attribute \"perm\" {perm:?} is not a permutation of 0..{rank}")));
    }
    let strides = byob_tensor::kernels::row_major_strides(x);
    let out: Vec<usize> = perm.iter().map(|&a| x[a]).collect();
    let permuted: Vec<usize> = perm.iter().map(|&a| strides[a]).collect();
    let n = numel(&out);
    let mut kernel = spec.kernel(vec![out.clone()]);
    if n == 0 {
        return Ok(kernel);
    }
    let key = ProgramKey::new("transpose", "").with_input(DataType::F32, rank);
    let program = ctx.programs().get_or_compile(ctx, key, || ProgramSource { wgsl: format!("{FLAT_INDEX}{TRANSPOSE}"), storage: 2 })?;
    let uniform = Uniform::default().vec8(&out, 1).vec8(&permuted, 0).u32(rank).u32(n).create(ctx, "Transpose");
    kernel.step(program, uniform, vec![Bind::Input(0), Bind::Output(0)], Grid::Flat { invocations: n as u64, size: 64 });
    Ok(kernel)
}

/// The integer values of constant input `i`, or of the attribute `name`
/// (before the opset that moved it to an input).
pub(super) fn ints_input(spec: &KernelSpec<'_>, i: usize, name: &str) -> Result<Option<Vec<i64>>, GpuError> {
    if spec.optional(i).is_none() {
        return spec.attr(spec.attrs().ints(name));
    }
    let tensor = spec.value(i).ok_or_else(|| spec.error(format!("input {i} ({name}) must be a constant known when the kernel is built")))?;
    tensor.to_i64_vec().map(Some).ok_or_else(|| spec.error(format!("input {i} ({name}) must hold integers")))
}

/// The output shape of a view op.
fn view_shape(spec: &KernelSpec<'_>, x: &[usize]) -> Result<Vec<usize>, GpuError> {
    let a = spec.attrs();
    let rank = x.len();
    Ok(match spec.node.op_type.as_str() {
        "Reshape" => {
            let target = ints_input(spec, 1, "shape")?.ok_or_else(|| spec.error("the target shape (input 1) is missing"))?;
            let allow_zero = spec.attr(a.int("allowzero", 0))? != 0;
            let mut out: Vec<usize> = Vec::with_capacity(target.len());
            let mut infer = None;
            for (i, &d) in target.iter().enumerate() {
                out.push(match d {
                    -1 if infer.is_none() => {
                        infer = Some(i);
                        1
                    }
                    0 if !allow_zero => *x.get(i).ok_or_else(|| spec.error(format!("shape {target:?}: 0 at {i} copies a dimension the input {x:?} lacks")))?,
                    d if d >= 0 => d as usize,
                    _ => return Err(spec.error(format!("shape {target:?}: invalid dimension {d}"))),
                });
            }
            let (total, known) = (numel(x), numel(&out));
            if let Some(i) = infer {
                if known == 0 || total % known != 0 {
                    return Err(spec.error(format!("cannot reshape {x:?} to {target:?}")));
                }
                out[i] = total / known;
            }
            out
        }
        "Flatten" => {
            let at = spec.attr(a.int("axis", 1))?;
            let at = if at == rank as i64 { rank } else { axis(spec, at, rank.max(1))? };
            vec![numel(&x[..at]), numel(&x[at..])]
        }
        "Squeeze" => match ints_input(spec, 1, "axes")? {
            None => x.iter().copied().filter(|&d| d != 1).collect(),
            Some(axes) => {
                let axes: Vec<usize> = axes.iter().map(|&v| axis(spec, v, rank)).collect::<Result<_, _>>()?;
                if let Some(&bad) = axes.iter().find(|&&a| x[a] != 1) {
                    return Err(spec.error(format!("cannot squeeze axis {bad} of {x:?}: its size is not 1")));
                }
                x.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect()
            }
        },
        "Unsqueeze" => {
            let axes = ints_input(spec, 1, "axes")?.ok_or_else(|| spec.error("the axes are missing"))?;
            let out_rank = rank + axes.len();
            let mut axes: Vec<usize> = axes.iter().map(|&v| axis(spec, v, out_rank)).collect::<Result<_, _>>()?;
            axes.sort_unstable();
            if axes.windows(2).any(|w| w[0] == w[1]) {
                return Err(spec.error(format!("repeated axes {axes:?}")));
            }
            let mut dims = x.iter().copied();
            (0..out_rank).map(|i| if axes.contains(&i) { 1 } else { dims.next().unwrap_or(1) }).collect()
        }
        "Dropout" if spec.node.outputs.get(1).is_some_and(|o| !o.is_empty()) => return Err(spec.error("Dropout's mask output has no GPU kernel")),
        _ => x.to_vec(),
    })
}

pub(crate) fn view(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let x = spec.input(0)?;
    let out = view_shape(spec, x)?;
    if numel(&out) != numel(x) {
        return Err(spec.error(format!("{x:?} holds {} values, the output {out:?} {}", numel(x), numel(&out))));
    }
    // Any type: a view moves no value, its copy moves 32-bit words.
    let mut kernel = spec.moving_kernel(vec![out])?;
    // The shape inputs are read when building, never bound.
    kernel.bind_only(&[0]);
    copy(ctx, spec, &mut kernel, numel(x))?;
    Ok(kernel.aliasing(0))
}

/// Adds a dispatch copying the `n` elements of input 0 to output 0.
pub(super) fn copy(ctx: &GpuContext, spec: &KernelSpec<'_>, kernel: &mut Kernel, n: usize) -> Result<(), GpuError> {
    if n == 0 {
        return Ok(());
    }
    let vec4 = n.is_multiple_of(4);
    let key = ProgramKey::new("copy", if vec4 { "vec4" } else { "" });
    let program = ctx.programs().get_or_compile(ctx, key, || ProgramSource { wgsl: format!("alias T = {};\n{FLAT_INDEX}{COPY}", if vec4 { "vec4<u32>" } else { "u32" }), storage: 2 })?;
    let invocations = if vec4 { n / 4 } else { n };
    let uniform = Uniform::default().u32(invocations).create(ctx, &spec.node.op_type);
    kernel.step(program, uniform, vec![Bind::Input(0), Bind::Output(0)], Grid::Flat { invocations: invocations as u64, size: 64 });
    Ok(())
}

pub(crate) fn concat(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let inputs: Vec<&[usize]> = (0..spec.node.inputs.len()).map(|i| spec.input(i)).collect::<Result<_, _>>()?;
    let first = *inputs.first().ok_or_else(|| spec.error("Concat needs at least one input"))?;
    let at = axis(spec, spec.attr(spec.attrs().int("axis", i64::MIN))?, first.len()).map_err(|_| spec.error(format!("attribute \"axis\" is missing or out of range for rank {}", first.len())))?;
    for (i, s) in inputs.iter().enumerate() {
        let same = s.len() == first.len() && s.iter().zip(first).enumerate().all(|(a, (x, y))| a == at || x == y);
        if !same {
            return Err(spec.error(format!("input {i} {s:?} does not fit input 0 {first:?} along axis {at}")));
        }
    }
    let mut out = first.to_vec();
    out[at] = inputs.iter().map(|s| s[at]).sum();
    let inner = numel(&first[at + 1..]);
    let mut kernel = spec.kernel(vec![out.clone()]);
    let key = ProgramKey::new("concat", "");
    let program = ctx.programs().get_or_compile(ctx, key, || ProgramSource { wgsl: format!("{FLAT_INDEX}{CONCAT}"), storage: 2 })?;
    let mut offset = 0;
    for (i, s) in inputs.iter().enumerate() {
        let n = numel(s);
        if n > 0 {
            let uniform = Uniform::default().u32(n).u32(s[at] * inner).u32(out[at] * inner).u32(offset).create(ctx, "Concat");
            kernel.step(std::sync::Arc::clone(&program), uniform, vec![Bind::Input(i), Bind::Output(0)], Grid::Flat { invocations: n as u64, size: 64 });
        }
        offset += s[at] * inner;
    }
    // Empty inputs are never bound (a binding cannot be empty).
    let bound: Vec<usize> = inputs.iter().enumerate().filter(|(_, s)| numel(s) > 0).map(|(i, _)| i).collect();
    kernel.bind_only(&bound);
    Ok(kernel)
}
