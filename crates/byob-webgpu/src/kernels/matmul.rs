//! MatMul (NumPy semantics: vectors promoted and dropped again, batch
//! dimensions broadcast) and Gemm (alpha·A'·B' + beta·C, A' and B'
//! optionally transposed, C broadcast to M×N), on the tiled engine.

use super::binary::{broadcast, broadcast_strides};
use super::gemm::{source, GemmShader, Operand, Tile};
use super::{numel, Bind, Grid, Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;
use crate::program::{ProgramKey, Uniform};
use byob_tensor::DataType;

/// Batch dimensions the uniform block holds.
const MAX_BATCH_RANK: usize = 4;

const PRELUDE: &str = "
struct Params { batch: vec4<u32>, a_batch: vec4<u32>, b_batch: vec4<u32>, m: u32, n: u32, k: u32, alpha: f32, beta: f32, c_m: u32, c_n: u32 }
fn batch_offset(z: u32, strides: vec4<u32>) -> u32 {
    var rest = z;
    var offset = 0u;
    for (var d = 0u; d < 4u; d++) {
        let axis = 3u - d;
        offset += (rest % p.batch[axis]) * strides[axis];
        rest = rest / p.batch[axis];
    }
    return offset;
}
fn a_base(z: u32) -> u32 { return batch_offset(z, p.a_batch); }
fn b_base(z: u32) -> u32 { return batch_offset(z, p.b_batch); }
fn out_row(z: u32, m: u32) -> u32 { return (z * p.m + m) * p.n; }
";

const FINISH_PLAIN: &str = "fn finish(z: u32, m: u32, n: u32, v: vec4<f32>) -> vec4<f32> { return p.alpha * v; }";

const FINISH_BIAS: &str = "
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
fn finish(z: u32, m: u32, n: u32, v: vec4<f32>) -> vec4<f32> {
    var r = p.alpha * v;
    for (var j = 0u; j < 4u; j++) {
        if (n + j < p.n) { r[j] += p.beta * c[m * p.c_m + (n + j) * p.c_n]; }
    }
    return r;
}";

/// `v` right-aligned into `MAX_BATCH_RANK` slots filled with `fill`.
fn right_aligned(v: &[usize], fill: u32) -> [u32; 4] {
    let mut out = [fill; MAX_BATCH_RANK];
    for (slot, &x) in out[MAX_BATCH_RANK - v.len()..].iter_mut().zip(v) {
        *slot = x as u32;
    }
    out
}

pub(crate) fn build(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let (a, b) = (spec.input(0)?, spec.input(1)?);
    if spec.node.op_type == "Gemm" {
        return gemm(ctx, spec, a, b);
    }
    if a.is_empty() || b.is_empty() {
        return Err(spec.error(format!("MatMul needs inputs of rank 1 or more, got {a:?} and {b:?}")));
    }
    // Vectors become a row of A or a column of B, then lose that axis.
    let a2: Vec<usize> = if a.len() == 1 { vec![1, a[0]] } else { a.to_vec() };
    let b2: Vec<usize> = if b.len() == 1 { vec![b[0], 1] } else { b.to_vec() };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(spec.error(format!("inner dimensions differ: A {a:?}, B {b:?}")));
    }
    let (a_batch, b_batch) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let batch = broadcast(&[a_batch, b_batch]).map_err(|e| spec.error(format!("batch dimensions: {e}")))?;
    if batch.len() > MAX_BATCH_RANK {
        return Err(spec.error(format!("{} batch dimensions; the GPU kernel takes {MAX_BATCH_RANK}", batch.len())));
    }
    let mut out = batch.clone();
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    let matrix = |s: &[usize], size: usize| broadcast_strides(s, &batch).iter().map(|&st| st * size).collect::<Vec<_>>();
    let strides = (matrix(a_batch, m * k), matrix(b_batch, k * n));
    let shader = Shape { m, n, k, batches: numel(&batch), trans_a: false, trans_b: false };
    let uniform = Uniform::default().vec4(right_aligned(&batch, 1)).vec4(right_aligned(&strides.0, 0)).vec4(right_aligned(&strides.1, 0));
    shader.kernel(ctx, spec, out, uniform.u32(m).u32(n).u32(k).f32(1.0).f32(0.0).u32(0).u32(0), false)
}

fn gemm(ctx: &GpuContext, spec: &KernelSpec<'_>, a: &[usize], b: &[usize]) -> Result<Kernel, GpuError> {
    let attrs = spec.attrs();
    let alpha = spec.attr(attrs.float("alpha", 1.0))?;
    let beta = spec.attr(attrs.float("beta", 1.0))?;
    let trans_a = spec.attr(attrs.int("transA", 0))? != 0;
    let trans_b = spec.attr(attrs.int("transB", 0))? != 0;
    if a.len() != 2 || b.len() != 2 {
        return Err(spec.error(format!("A and B must be matrices, got {a:?} and {b:?}")));
    }
    let (m, k) = if trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
    let (k2, n) = if trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
    if k != k2 {
        return Err(spec.error(format!("inner dimensions differ: A {a:?}{}, B {b:?}{}", if trans_a { " transposed" } else { "" }, if trans_b { " transposed" } else { "" })));
    }
    let c = spec.optional(2);
    let c_strides = match c {
        Some(c) if c.len() > 2 || broadcast(&[c, &[m, n]]).ok().as_deref() != Some(&[m, n][..]) => {
            return Err(spec.error(format!("C {c:?} does not broadcast to the output [{m}, {n}]")));
        }
        Some(c) => broadcast_strides(c, &[m, n]),
        None => vec![0, 0],
    };
    let shader = Shape { m, n, k, batches: 1, trans_a, trans_b };
    let uniform = Uniform::default().vec4([1; 4]).vec4([0; 4]).vec4([0; 4]);
    shader.kernel(ctx, spec, vec![m, n], uniform.u32(m).u32(n).u32(k).f32(alpha).f32(beta).u32(c_strides[0]).u32(c_strides[1]), c.is_some())
}

/// The product's geometry, which picks the program variant.
struct Shape {
    m: usize,
    n: usize,
    k: usize,
    batches: usize,
    trans_a: bool,
    trans_b: bool,
}

impl Shape {
    fn kernel(&self, ctx: &GpuContext, spec: &KernelSpec<'_>, out: Vec<usize>, uniform: Uniform, bias: bool) -> Result<Kernel, GpuError> {
        let mut kernel = spec.kernel(vec![out]);
        if self.m * self.n * self.batches == 0 {
            return Ok(kernel);
        }
        if self.k == 0 {
            // Nothing to bind A and B to: a binding cannot be empty.
            return Err(spec.error("an inner dimension of 0 has no GPU kernel"));
        }
        let tile = Tile::for_shape(self.m, self.n);
        let groups = tile.groups(self.m, self.n, self.batches, ctx.limits().max_compute_workgroups_per_dimension).map_err(|e| spec.error(e))?;
        let a = Operand::Dense { k_contiguous: !self.trans_a, vec4: if self.trans_a { self.m.is_multiple_of(4) } else { self.k.is_multiple_of(4) } };
        let b = Operand::Dense { k_contiguous: self.trans_b, vec4: if self.trans_b { self.k.is_multiple_of(4) } else { self.n.is_multiple_of(4) } };
        let out_vec4 = self.n.is_multiple_of(4);
        let storage = if bias { 4 } else { 3 };
        let hint = format!("{}:{}:{}:{}{}", tile.name(), a.hint(), b.hint(), if out_vec4 { "out4" } else { "out1" }, if bias { ":bias" } else { "" });
        let key = ProgramKey::new("gemm", hint).with_input(DataType::F32, 2).with_input(DataType::F32, 2);
        let prelude = format!("{PRELUDE}{}", if bias { FINISH_BIAS } else { FINISH_PLAIN });
        let program = ctx.programs().get_or_compile(ctx, key, || source(&GemmShader { tile, a, b, out_vec4, bindings: [0, 1, storage - 1], storage, prelude: &prelude }))?;
        let mut binds = vec![Bind::Input(0), Bind::Input(1)];
        if bias {
            binds.push(Bind::Input(2));
        }
        binds.push(Bind::Output(0));
        kernel.step(program, uniform.create(ctx, &spec.node.op_type), binds, Grid::Groups(groups));
        Ok(kernel)
    }
}
