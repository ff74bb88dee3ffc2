//! Elementwise functions of one tensor, four values per invocation when the
//! length allows. `alpha` and `beta` (LeakyRelu's slope, Clip's bounds, ...)
//! are uniforms, so every value shares one program per function.

use super::{numel, Bind, Grid, Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;
use crate::program::{ProgramKey, ProgramSource, Uniform, FLAT_INDEX};
use byob_tensor::DataType;

/// The function of `v` (of type `T`, `f32` or `vec4<f32>`), with the
/// uniforms `p.alpha`, `p.beta` and, for Clip, `lo` and `hi`.
fn expression(op: &str) -> Option<&'static str> {
    Some(match op {
        "Abs" => "abs(v)",
        "Neg" => "-v",
        "Floor" => "floor(v)",
        "Ceil" => "ceil(v)",
        "Reciprocal" => "T(1.0) / v",
        "Sqrt" => "sqrt(v)",
        "Exp" => "exp(v)",
        "Log" => "log(v)",
        "Erf" => "erf(v)",
        "Sigmoid" => "T(1.0) / (T(1.0) + exp(-v))",
        "Sin" => "sin(v)",
        "Cos" => "cos(v)",
        "Tan" => "tan(v)",
        // Through atan2, as WGSL defines their accuracy: some drivers'
        // own asin and acos are off by 1e-4.
        "Asin" => "atan2(v, sqrt((T(1.0) - v) * (T(1.0) + v)))",
        "Acos" => "atan2(sqrt((T(1.0) - v) * (T(1.0) + v)), v)",
        "Atan" => "atan(v)",
        "Sinh" => "sinh(v)",
        "Cosh" => "cosh(v)",
        "Asinh" => "asinh(v)",
        "Acosh" => "acosh(v)",
        "Atanh" => "atanh(v)",
        "Tanh" => "tanh(v)",
        "Gelu" => "T(0.5) * v * (T(1.0) + erf(v * T(0.70710678118654752)))",
        // tanh's argument clamped: some drivers' tanh of a large value is
        // NaN (exp overflowing), and tanh(±10) is ±1 in f32 already.
        "GeluTanh" => "T(0.5) * v * (T(1.0) + tanh(clamp(T(0.79788456080286536) * (v + T(0.044715) * v * v * v), T(-10.0), T(10.0))))",
        "Relu" => "max(v, T(0.0))",
        "LeakyRelu" => "select(v * p.alpha, v, v >= T(0.0))",
        "Elu" => "select(p.alpha * (exp(v) - T(1.0)), v, v >= T(0.0))",
        "HardSigmoid" => "clamp(p.alpha * v + T(p.beta), T(0.0), T(1.0))",
        "ThresholdedRelu" => "select(T(0.0), v, v > T(p.alpha))",
        // ONNX clips to max last: with min > max every value becomes max.
        "Clip" => "min(max(v, T(lo)), T(hi))",
        _ => return None,
    })
}

/// WGSL has no erf: a Taylor series near 0, Abramowitz and Stegun 7.1.26
/// (absolute error below 1.5e-7) elsewhere.
const ERF: &str = "
fn erf1(x: f32) -> f32 {
    let a = abs(x);
    if (a < 0.5) {
        let s = x * x;
        return x * (1.1283791671 + s * (-0.3761263890 + s * (0.1128379167 + s * (-0.0268661707 + s * (0.0052239776 - s * 0.0008548327)))));
    }
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t;
    return sign(x) * (1.0 - poly * exp(-a * a));
}
";

pub(crate) fn build(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let a = spec.attrs();
    // Gelu's approximation picks its function.
    let op = match spec.node.op_type.as_str() {
        "Gelu" => match spec.attr(a.string("approximate", "none"))?.as_str() {
            "none" => "Gelu",
            "tanh" => "GeluTanh",
            other => return Err(spec.error(format!("attribute \"approximate\" {other:?} is neither \"none\" nor \"tanh\""))),
        },
        op => op,
    };
    let expr = expression(op).ok_or_else(|| spec.error("not an elementwise function"))?;
    let shape = spec.input(0)?;
    let (alpha, beta) = match op {
        "LeakyRelu" => (spec.attr(a.float("alpha", 0.01))?, 0.0),
        "Elu" | "ThresholdedRelu" => (spec.attr(a.float("alpha", 1.0))?, 0.0),
        "HardSigmoid" => (spec.attr(a.float("alpha", 0.2))?, spec.attr(a.float("beta", 0.5))?),
        // Before opset 11 Clip's bounds are attributes; from 11 optional inputs.
        "Clip" if spec.opset < 11 => (spec.attr(a.float("min", f32::MIN))?, spec.attr(a.float("max", f32::MAX))?),
        "Clip" => (f32::MIN, f32::MAX),
        _ => (0.0, 0.0),
    };
    // From opset 11 Clip's bounds are optional inputs: constants go into the
    // uniform, other tensors are bound.
    let mut bounds = [alpha, beta];
    let mut bound = [false, false];
    if op == "Clip" && spec.opset >= 11 {
        for (slot, i) in [1, 2].into_iter().enumerate() {
            let Some(s) = spec.optional(i) else { continue };
            if numel(s) != 1 {
                return Err(spec.error(format!("input {i} (a bound) must hold one value, its shape is {s:?}")));
            }
            match spec.value(i).map(|t| t.as_f32().map(|v| v[0])) {
                Some(Some(v)) => bounds[slot] = v,
                Some(None) => return Err(spec.error(format!("input {i} (a bound) must be f32"))),
                None => bound[slot] = true,
            }
        }
    }
    let ([alpha, beta], [lo, hi]) = (bounds, bound);
    let n = numel(shape);
    let mut kernel = spec.kernel(vec![shape.to_vec()]);
    kernel.bind_only(&[Some(0), lo.then_some(1), hi.then_some(2)].into_iter().flatten().collect::<Vec<_>>());
    if n == 0 {
        return Ok(kernel);
    }
    let vec4 = n.is_multiple_of(4);
    let hint = format!("{op}{}{}{}", if vec4 { ":vec4" } else { "" }, if lo { ":lo" } else { "" }, if hi { ":hi" } else { "" });
    let key = ProgramKey::new("unary", hint).with_input(DataType::F32, 0);
    let program = ctx.programs().get_or_compile(ctx, key, || source(expr, vec4, lo, hi))?;
    let invocations = if vec4 { n / 4 } else { n };
    let uniform = Uniform::default().u32(invocations).f32(alpha).f32(beta).create(ctx, op);
    let mut binds = vec![Bind::Input(0)];
    binds.extend(lo.then_some(Bind::Input(1)));
    binds.extend(hi.then_some(Bind::Input(2)));
    binds.push(Bind::Output(0));
    kernel.step(program, uniform, binds, Grid::Flat { invocations: invocations as u64, size: 64 });
    Ok(kernel)
}

fn source(expr: &str, vec4: bool, lo: bool, hi: bool) -> ProgramSource {
    let ty = if vec4 { "vec4<f32>" } else { "f32" };
    let erf = if vec4 { "fn erf(v: T) -> T { return T(erf1(v.x), erf1(v.y), erf1(v.z), erf1(v.w)); }" } else { "fn erf(v: T) -> T { return erf1(v); }" };
    let mut bindings = String::from("@group(0) @binding(0) var<storage, read_write> x: array<T>;\n");
    let mut next = 1;
    // Clip's bound inputs when given, else the uniforms.
    let mut bound = |name: &str, given: bool, fallback: &str| -> String {
        if given {
            bindings += &format!("@group(0) @binding({next}) var<storage, read_write> {name}_in: array<f32>;\n");
            next += 1;
            format!("let {name} = {name}_in[0];")
        } else {
            format!("let {name} = {fallback};")
        }
    };
    let (lo, hi) = (bound("lo", lo, "p.alpha"), bound("hi", hi, "p.beta"));
    let wgsl = format!(
        "alias T = {ty};
{bindings}@group(0) @binding({next}) var<storage, read_write> y: array<T>;
struct Params {{ n: u32, alpha: f32, beta: f32 }}
@group(0) @binding({uniform}) var<uniform> p: Params;
{FLAT_INDEX}{ERF}{erf}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {{
    let i = flat_index(wid, nwg, lid, 64u);
    if (i >= p.n) {{ return; }}
    {lo}
    {hi}
    let v = x[i];
    y[i] = {expr};
}}
",
        uniform = next + 1
    );
    ProgramSource { wgsl, storage: next + 1 }
}
