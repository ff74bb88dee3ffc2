//! Add, Sub, Mul, Div, Pow and Sum with ONNX multidirectional broadcasting,
//! and [`elementwise`], the machinery they share with the comparisons,
//! the logical ops and Where: the output's dims and each input's strides
//! (0 along broadcast axes) are uniforms; inputs of the output's own shape
//! take a flat `vec4` path.

use super::{numel, Bind, Grid, Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;
use crate::program::{ProgramKey, ProgramSource, Uniform, FLAT_INDEX};
use byob_tensor::DataType;

const MAX_RANK: usize = 8;

/// The broadcast shape of `shapes`, or why there is none.
pub(crate) fn broadcast(shapes: &[&[usize]]) -> Result<Vec<usize>, String> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    (0..rank)
        .map(|axis| {
            let dims = shapes.iter().map(|s| if axis + s.len() >= rank { s[axis + s.len() - rank] } else { 1 });
            dims.clone().try_fold(1, |acc, d| match (acc, d) {
                (a, 1) => Ok(a),
                (1, d) => Ok(d),
                (a, d) if a == d => Ok(a),
                _ => Err(format!("shapes {shapes:?} do not broadcast (axis {axis}: {:?})", dims.clone().collect::<Vec<_>>())),
            })
        })
        .collect()
}

/// Element strides of `shape` read as `out` (right-aligned), 0 where it
/// broadcasts.
pub(crate) fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; out.len()];
    let mut stride = 1;
    for (i, &d) in shape.iter().enumerate().rev() {
        let axis = out.len() - shape.len() + i;
        strides[axis] = if d == 1 { 0 } else { stride };
        stride *= d;
    }
    strides
}

const POW: &str = "
fn powf(a: f32, b: f32) -> f32 {
    // ONNX Pow is real-valued: a negative base takes integer exponents.
    if (b == 0.0) { return 1.0; }
    if (a == 0.0) { return select(bitcast<f32>(0x7f800000u), 0.0, b > 0.0); }
    let r = pow(abs(a), b);
    if (a < 0.0) {
        if (fract(b) != 0.0) { return bitcast<f32>(0x7fc00000u); }
        if (fract(b * 0.5) != 0.0) { return -r; }
    }
    return r;
}
fn pow4(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(powf(a.x, b.x), powf(a.y, b.y), powf(a.z, b.z), powf(a.w, b.w));
}
";

pub(crate) fn build(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let op = spec.node.op_type.as_str();
    let count = if op == "Sum" { spec.node.inputs.len() } else { 2 };
    if count == 0 {
        return Err(spec.error("Sum needs at least one input"));
    }
    let combined = match op {
        "Add" => "a0 + a1".to_string(),
        "Sub" => "a0 - a1".to_string(),
        "Mul" => "a0 * a1".to_string(),
        "Div" => "a0 / a1".to_string(),
        "Pow" => "pow_t(a0, a1)".to_string(),
        _ => (0..count).map(|i| format!("a{i}")).collect::<Vec<_>>().join(" + "),
    };
    let types = vec![Scalar::F32; count];
    elementwise(ctx, spec, &types, Scalar::F32, &combined)
}

/// A WGSL element type of the GPU's tensors: float32 data, or booleans as
/// 0u/1u (WGSL has no 1-byte storage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scalar {
    F32,
    U32,
}

impl Scalar {
    fn wgsl(self, vec4: bool) -> &'static str {
        match (self, vec4) {
            (Self::F32, false) => "f32",
            (Self::F32, true) => "vec4<f32>",
            (Self::U32, false) => "u32",
            (Self::U32, true) => "vec4<u32>",
        }
    }

    /// The scalar holding a GPU tensor of `dtype`.
    pub fn of(dtype: DataType) -> Self {
        if dtype == DataType::F32 {
            Self::F32
        } else {
            Self::U32
        }
    }
}

/// One output of type `out` computed from `types.len()` broadcast inputs
/// by `combined`, a WGSL expression of `a0`, `a1`... (each a scalar, or
/// a `vec4` on the flat path; `I0`, `I1`... name their types, `O` the
/// output's, `pow_t` is ONNX's Pow of either).
pub(crate) fn elementwise(ctx: &GpuContext, spec: &KernelSpec<'_>, types: &[Scalar], out: Scalar, combined: &str) -> Result<Kernel, GpuError> {
    let op = spec.node.op_type.as_str();
    let count = types.len();
    let shapes: Vec<&[usize]> = (0..count).map(|i| spec.input(i)).collect::<Result<_, _>>()?;
    let max_inputs = ctx.limits().max_storage_buffers_per_shader_stage as usize - 1;
    if count > max_inputs {
        return Err(spec.error(format!("{count} inputs; this GPU binds at most {max_inputs}")));
    }
    let out_type = out;
    let out = broadcast(&shapes).map_err(|e| spec.error(e))?;
    if out.len() > MAX_RANK {
        return Err(spec.error(format!("rank {} exceeds the GPU kernel's {MAX_RANK}", out.len())));
    }
    let n = numel(&out);
    for (i, &t) in types.iter().enumerate() {
        let dtype = spec.dtype(i);
        if Scalar::of(dtype) != t || !super::on_gpu(dtype) {
            return Err(spec.error(format!("input {i} is {dtype}; the GPU kernel reads {}", if t == Scalar::F32 { "float32" } else { "bool" })));
        }
    }
    let dtype = if out_type == Scalar::F32 { DataType::F32 } else { DataType::Bool };
    let mut kernel = spec.kernel(vec![out.clone()]).typed(vec![dtype]);
    if n == 0 {
        return Ok(kernel);
    }
    let flat = shapes.iter().all(|s| *s == out.as_slice()) && n.is_multiple_of(4);
    let hint = format!("{types:?}->{out_type:?}:{combined}:{}", if flat { "vec4".to_string() } else { format!("rank{}", out.len()) });
    let key = ProgramKey::new("broadcast", hint).with_input(DataType::F32, out.len());
    let program = ctx.programs().get_or_compile(ctx, key, || source(types, out_type, combined, out.len(), flat))?;
    let invocations = if flat { n / 4 } else { n };
    let mut uniform = Uniform::default().vec8(&out, 1);
    for s in &shapes {
        uniform = uniform.vec8(&broadcast_strides(s, &out), 0);
    }
    let uniform = uniform.u32(invocations).create(ctx, op);
    let binds = (0..count).map(Bind::Input).chain([Bind::Output(0)]).collect();
    kernel.step(program, uniform, binds, Grid::Flat { invocations: invocations as u64, size: 64 });
    Ok(kernel)
}

fn source(types: &[Scalar], out: Scalar, combined: &str, rank: usize, flat: bool) -> ProgramSource {
    let count = types.len();
    let pow = if flat { "fn pow_t(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> { return pow4(a, b); }" } else { "fn pow_t(a: f32, b: f32) -> f32 { return powf(a, b); }" };
    let bindings: String = types.iter().enumerate().map(|(i, t)| format!("alias I{i} = {};\n@group(0) @binding({i}) var<storage, read_write> x{i}: array<I{i}>;\n", t.wgsl(flat))).collect();
    let (offsets, loads) = if flat {
        (String::new(), (0..count).map(|i| format!("    let a{i} = x{i}[i];\n")).collect::<String>())
    } else {
        // Walk the output index from the innermost axis, summing each
        // input's strided offset.
        let declare: String = (0..count).map(|i| format!("    var o{i} = 0u;\n")).collect();
        let accumulate: String = (0..count).map(|i| format!("        o{i} += c * p.strides[{}u + axis / 4u][axis % 4u];\n", 2 * i)).collect();
        (
            format!("{declare}    var rest = i;\n    for (var d = 0u; d < {rank}u; d++) {{\n        let axis = {rank}u - 1u - d;\n        let size = p.dims[axis / 4u][axis % 4u];\n        let c = rest % size;\n        rest = rest / size;\n{accumulate}    }}\n"),
            (0..count).map(|i| format!("    let a{i} = x{i}[o{i}];\n")).collect(),
        )
    };
    let wgsl = format!(
        "alias O = {out_ty};
{bindings}@group(0) @binding({count}) var<storage, read_write> y: array<O>;
struct Params {{ dims: array<vec4<u32>, 2>, strides: array<vec4<u32>, {strides}>, n: u32 }}
@group(0) @binding({uniform}) var<uniform> p: Params;
{FLAT_INDEX}{POW}{pow}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {{
    let i = flat_index(wid, nwg, lid, 64u);
    if (i >= p.n) {{ return; }}
{offsets}{loads}    y[i] = {combined};
}}
",
        strides = 2 * count,
        uniform = count + 1,
        out_ty = out.wgsl(flat)
    );
    ProgramSource { wgsl, storage: count as u32 + 1 }
}
