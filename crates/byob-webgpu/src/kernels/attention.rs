//! Attention (opsets 23 and 24) without a past: scaled dot-product
//! attention over 4-D [batch, heads, sequence, head size] or 3-D [batch,
//! sequence, hidden] inputs, with grouped key/value heads, `scale`,
//! `softcap`, causal masking and a boolean or additive mask broadcast from
//! the right (keys past its last axis masked). One workgroup per query
//! row: its scores sit in workgroup memory, so each key's dot product is
//! computed once, then the row's maximum and sum go through the workgroup
//! tree and each invocation sums its share of the output's columns. A
//! past key/value, the present or QK outputs and `nonpad_kv_seqlen` stay on
//! the CPU.

use super::{indexable, numel, Bind, Grid, Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;
use crate::program::{ProgramKey, ProgramSource, Uniform, FLAT_INDEX, SUM_OR_MAX, WORKGROUP_TREE};
use byob_tensor::model::{Dim, Node};
use byob_tensor::ops::{Attrs, Fact};
use byob_tensor::DataType;

/// Keys one row's scores hold in workgroup memory (8 KiB of f32).
const MAX_KEYS: usize = 2048;

const ATTENTION: &str = "
struct Params {
    q: vec4<u32>, k: vec4<u32>, v: vec4<u32>, y: vec4<u32>, mask: vec4<u32>,
    heads: u32, queries: u32, keys: u32, size: u32, value_size: u32, group: u32, mask_keys: u32, causal: u32, rows: u32, scale: f32, softcap: f32,
}
@group(0) @binding(BINDING_UNIFORM) var<uniform> p: Params;
var<workgroup> scores: array<f32, MAX_KEYS>;

// A mask word (0 or 1) masks where 0; a float mask is added.
fn masked(score: f32, b: u32, h: u32, s: u32, t: u32) -> f32 {
    if (!HAS_MASK) { return score; }
    if (t >= p.mask_keys) { return bitcast<f32>(0xff800000u); }
    let at = b * p.mask.x + h * p.mask.y + s * p.mask.z + t * p.mask.w;
    MASK_APPLY
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = flat_index(wid, nwg, 0u, 1u);
    if (row >= p.rows) { return; }
    let s = row % p.queries;
    let h = (row / p.queries) % p.heads;
    let b = row / (p.queries * p.heads);
    let kh = h / p.group;
    let q0 = b * p.q.x + h * p.q.y + s * p.q.z;
    var m = bitcast<f32>(0xff800000u);
    for (var t = lid; t < p.keys; t += 64u) {
        let k0 = b * p.k.x + kh * p.k.y + t * p.k.z;
        var dot = 0.0;
        for (var j = 0u; j < p.size; j++) { dot += q[q0 + j] * k[k0 + j]; }
        var score = dot * p.scale;
        // Clamped: some drivers' tanh is NaN for large arguments.
        if (p.softcap > 0.0) { score = p.softcap * tanh(clamp(score / p.softcap, -10.0, 10.0)); }
        score = masked(score, b, h, s, t);
        if (p.causal != 0u && t > s) { score = bitcast<f32>(0xff800000u); }
        scores[t] = score;
        m = max(m, score);
    }
    m = tree(lid, m, true);
    var total = 0.0;
    for (var t = lid; t < p.keys; t += 64u) {
        let e = exp(scores[t] - m);
        scores[t] = e;
        total += e;
    }
    total = tree(lid, total, false);
    let y0 = b * p.y.x + h * p.y.y + s * p.y.z;
    for (var j = lid; j < p.value_size; j += 64u) {
        var acc = 0.0;
        for (var t = 0u; t < p.keys; t++) { acc += scores[t] * v[b * p.v.x + kh * p.v.y + t * p.v.z + j]; }
        y[y0 + j] = acc / total;
    }
}
";

/// A 3-D or 4-D input as (batch, heads, sequence, size) and its element
/// strides for batch, head and sequence position.
fn heads(spec: &KernelSpec<'_>, i: usize, heads: Option<usize>) -> Result<([usize; 4], [usize; 3]), GpuError> {
    match *spec.input(i)? {
        [b, h, s, d] => Ok(([b, h, s, d], [h * s * d, s * d, d])),
        [b, s, hidden] => {
            let h = heads.filter(|&h| h > 0 && hidden % h == 0).ok_or_else(|| spec.error(format!("input {i}: 3-D inputs need q_num_heads and kv_num_heads dividing the hidden size {hidden}")))?;
            let d = hidden / h;
            Ok(([b, h, s, d], [s * hidden, d, hidden]))
        }
        ref other => Err(spec.error(format!("input {i}: expected rank 3 or 4, got shape {other:?}"))),
    }
}

/// What can be told before the shapes are: no past, present or QK
/// outputs, heads named for 3-D inputs, and a key length known to fit the
/// workgroup's scores (a prompt longer than that would fail the run, not
/// go to the CPU).
pub(crate) fn placeable(node: &Node, inputs: &[Option<&Fact>]) -> bool {
    let present = |i: usize| node.inputs.get(i).is_some_and(|n| !n.is_empty());
    if [4, 5, 6].into_iter().any(present) || node.outputs.iter().skip(1).any(|o| !o.is_empty()) {
        return false;
    }
    let shape = |i: usize| inputs.get(i).copied().flatten().map(|f| f.shape.as_slice());
    let (Some(q), Some(k)) = (shape(0), shape(1)) else { return false };
    let heads_named = q.len() != 3 || Attrs(node).get("q_num_heads").is_some();
    let keys = match k.len() {
        4 => k.get(2),
        3 => k.get(1),
        _ => None,
    };
    heads_named && matches!(keys, Some(Dim::Known(n)) if *n <= MAX_KEYS)
}

pub(crate) fn build(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let a = spec.attrs();
    if let Some(i) = (0..3).find(|&i| spec.dtype(i) != DataType::F32) {
        return Err(spec.error(format!("input {i} is {}; the GPU kernel reads float32", spec.dtype(i))));
    }
    if [4, 5, 6].into_iter().any(|i| spec.optional(i).is_some()) {
        return Err(spec.error("a past key or value, or nonpad_kv_seqlen, has no GPU kernel"));
    }
    if spec.node.outputs.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(spec.error("the present key and value and the QK output have no GPU kernel"));
    }
    let count = |name: &str| -> Result<Option<usize>, GpuError> {
        a.get(name).map(|_| spec.attr(a.int(name, 0))).transpose()?.map(|n| usize::try_from(n).map_err(|_| spec.error(format!("attribute {name:?} is {n}")))).transpose()
    };
    let q_heads = count("q_num_heads")?;
    let kv_heads = count("kv_num_heads")?.or(q_heads);
    let ([b, qh, qs, d], q_strides) = heads(spec, 0, q_heads)?;
    let ([kb, kh, keys, kd], k_strides) = heads(spec, 1, kv_heads)?;
    let ([vb, vh, vt, vd], v_strides) = heads(spec, 2, kv_heads)?;
    if kb != b || vb != b || kd != d || vt != keys || vh != kh || kh == 0 || qh % kh != 0 {
        return Err(spec.error(format!("query {:?}, key {:?} and value {:?} do not fit together", [b, qh, qs, d], [kb, kh, keys, kd], [vb, vh, vt, vd])));
    }
    if keys > MAX_KEYS {
        return Err(spec.error(format!("{keys} keys exceed the {MAX_KEYS} one workgroup's scores hold")));
    }
    let scale = match a.get("scale") {
        Some(_) => spec.attr(a.float("scale", 1.0))?,
        None => 1.0 / (d as f32).sqrt(),
    };
    let causal = spec.attr(a.int("is_causal", 0))? != 0;
    let softcap = spec.attr(a.float("softcap", 0.0))?;
    // The mask's strides over [batch, heads, query, key], right-aligned,
    // 0 along axes it broadcasts.
    let mask = match spec.optional(3) {
        None => None,
        Some(shape) if shape.len() > 4 => return Err(spec.error(format!("a mask of rank {}", shape.len()))),
        Some(shape) => {
            let mut dims = vec![1; 4 - shape.len()];
            dims.extend_from_slice(shape);
            let broadcasts = |axis: usize, to: usize| dims[axis] == 1 || dims[axis] == to;
            if dims[3] > keys || !(broadcasts(0, b) && broadcasts(1, qh) && broadcasts(2, qs)) {
                return Err(spec.error(format!("a mask of shape {shape:?} for {b} batches, {qh} heads, {qs} queries and {keys} keys")));
            }
            let strides = byob_tensor::kernels::row_major_strides(&dims);
            let broadcast = |axis: usize| if dims[axis] == 1 { 0 } else { strides[axis] };
            let dtype = spec.dtype(3);
            if !matches!(dtype, DataType::F32 | DataType::Bool) {
                return Err(spec.error(format!("a {dtype} mask has no GPU kernel")));
            }
            Some((dtype, [broadcast(0), broadcast(1), broadcast(2), broadcast(3)], dims[3]))
        }
    };
    let (y_shape, y_strides) = if spec.input(0)?.len() == 3 { (vec![b, qs, qh * vd], [qs * qh * vd, vd, qh * vd]) } else { (vec![b, qh, qs, vd], [qh * qs * vd, qs * vd, vd]) };
    indexable(spec, &[&y_shape])?;
    let mut kernel = spec.kernel(vec![y_shape.clone()]).typed(vec![DataType::F32]);
    let rows = b * qh * qs;
    if numel(&y_shape) == 0 {
        return Ok(kernel);
    }
    if keys == 0 {
        return Err(spec.error("attention over no keys"));
    }
    let mask_kind = mask.map(|(dtype, _, _)| dtype);
    let mut names = vec!["q", "k", "v"];
    names.extend(mask_kind.map(|_| "mask"));
    names.push("y");
    let storage = names.len();
    let key = ProgramKey::new("attention", format!("{mask_kind:?}"));
    let program = ctx.programs().get_or_compile(ctx, key, || {
        let bindings: String = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("@group(0) @binding({i}) var<storage, read_write> {n}: array<{}>;\n", if *n == "mask" && mask_kind == Some(DataType::Bool) { "u32" } else { "f32" }))
            .collect();
        let apply = match mask_kind {
            Some(DataType::Bool) => "return select(bitcast<f32>(0xff800000u), score, mask[at] != 0u);",
            Some(_) => "return score + mask[at];",
            None => "return score;",
        };
        let wgsl = ATTENTION
            .replace("BINDING_UNIFORM", &storage.to_string())
            .replace("MAX_KEYS", &MAX_KEYS.to_string())
            .replace("HAS_MASK", if mask.is_some() { "true" } else { "false" })
            .replace("MASK_APPLY", apply);
        ProgramSource { wgsl: format!("{bindings}{FLAT_INDEX}{WORKGROUP_TREE}{SUM_OR_MAX}{wgsl}"), storage: storage as u32 }
    })?;
    let vec = |s: [usize; 3]| [s[0] as u32, s[1] as u32, s[2] as u32, 0];
    let (mask_strides, mask_keys) = mask.map_or(([0; 4], 0), |(_, s, t)| (s.map(|v| v as u32), t));
    let uniform = Uniform::default()
        .vec4(vec(q_strides))
        .vec4(vec(k_strides))
        .vec4(vec(v_strides))
        .vec4(vec(y_strides))
        .vec4(mask_strides)
        .u32(qh)
        .u32(qs)
        .u32(keys)
        .u32(d)
        .u32(vd)
        .u32(qh / kh)
        .u32(mask_keys)
        .u32(usize::from(causal))
        .u32(rows)
        .f32(scale)
        .f32(softcap)
        .create(ctx, "Attention");
    let mut binds: Vec<Bind> = (0..3).map(Bind::Input).collect();
    binds.extend(mask.map(|_| Bind::Input(3)));
    binds.push(Bind::Output(0));
    kernel.step(program, uniform, binds, Grid::Flat { invocations: rows as u64, size: 1 });
    Ok(kernel)
}
