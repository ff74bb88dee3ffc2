//! The tiled matrix-multiply engine behind MatMul, Gemm and Conv.
//!
//! A workgroup of 256 invocations computes a TM×TN tile of C = A·B for one
//! batch entry (`workgroup_id.z`): it walks K in steps of TK, staging an A
//! and a B tile in workgroup memory, and each invocation accumulates an
//! RM×RN block in registers. Tiles are stored as `vec4` along M and N, so
//! the inner step is two or four `vec4` loads per 4 to 16 `vec4` FMAs; an
//! invocation's rows and columns are spread a quad apart across the tile so
//! that neighbours read neighbouring quads (no bank conflicts). Global loads
//! are `vec4` along whichever axis is contiguous when its length is a
//! multiple of 4, and scalar (guarded) otherwise; the next K step's are
//! issued into registers before the current step's arithmetic.
//!
//! Callers supply a WGSL prelude: the `Params` struct (with `m`, `n`, `k`),
//! any extra bindings, `a_base(z)` and `b_base(z)` for dense operands
//! (element offsets of batch entry `z`), `out_row(z, m)` (the element offset
//! of row `m` of batch entry `z`'s output; its columns are contiguous),
//! `finish(z, m, n, v)` (the epilogue applied to four outputs at columns
//! `n..n+4` of row `m`), and, for a computed operand (Conv's im2col, or
//! gathered weights), `load_a(z, k, m)` / `load_b(z, k, n)`, or with `k4`
//! `load_a4(z, k, m)` / `load_b4(z, k, n)` for the four values at `k..k+4`.

/// Tile and per-invocation block sizes; (TM/RM)·(TN/RN) is always 256.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tile {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub rm: u32,
    pub rn: u32,
}

const THREADS: u32 = 256;
const SMALL: Tile = Tile { m: 64, n: 64, k: 16, rm: 4, rn: 4 };
const LARGE: Tile = Tile { m: 128, n: 128, k: 8, rm: 8, rn: 8 };

impl Tile {
    /// Large tiles reuse each loaded value twice as often but leave a
    /// small product too few workgroups to fill a GPU.
    pub fn for_shape(m: usize, n: usize) -> Self {
        if m >= 256 && n >= 256 {
            LARGE
        } else {
            SMALL
        }
    }

    pub fn name(&self) -> String {
        format!("{}x{}x{}/{}x{}", self.m, self.n, self.k, self.rm, self.rn)
    }

    /// Workgroups for an M×N output with `batches` entries.
    pub fn groups(&self, m: usize, n: usize, batches: usize, limit: u32) -> Result<[u32; 3], String> {
        let groups = [n.div_ceil(self.n as usize), m.div_ceil(self.m as usize), batches];
        if groups.iter().any(|&g| g > limit as usize) {
            return Err(format!("{groups:?} workgroups exceed the device's limit of {limit} per dimension"));
        }
        Ok(groups.map(|g| g as u32))
    }
}

/// How an operand is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operand {
    /// A dense matrix; `k_contiguous`: A stored M×K (or B stored N×K, i.e.
    /// transposed), else along M (A transposed) or N (B plain). `vec4` when
    /// the contiguous axis is a multiple of 4 long.
    Dense { k_contiguous: bool, vec4: bool },
    /// Computed by the prelude's loader, one value at a time, or with `k4`
    /// four along K (K a multiple of 4).
    Computed { k4: bool },
}

impl Operand {
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Dense { k_contiguous: true, vec4: true } => "k4",
            Self::Dense { k_contiguous: true, vec4: false } => "k1",
            Self::Dense { k_contiguous: false, vec4: true } => "o4",
            Self::Dense { k_contiguous: false, vec4: false } => "o1",
            Self::Computed { k4: false } => "fn",
            Self::Computed { k4: true } => "fn4",
        }
    }
}

/// Everything a GEMM program depends on.
pub(crate) struct GemmShader<'a> {
    pub tile: Tile,
    pub a: Operand,
    pub b: Operand,
    /// Store four outputs at once (N a multiple of 4).
    pub out_vec4: bool,
    /// Binding numbers of A, B and the output; the uniform follows the last
    /// of `storage` storage bindings.
    pub bindings: [u32; 3],
    pub storage: u32,
    pub prelude: &'a str,
}

/// WGSL moving an `outer`×TK tile of operand `x` ("a" or "b") into
/// workgroup array `tile_x`, a quad per invocation and round, in two
/// halves: `fetch` reads the tile at `k0` from global memory into registers
/// (`x_next0`, ...), `store` writes those to workgroup memory. Fetching the
/// next tile before computing on the current one hides the global reads'
/// latency behind the arithmetic. Returns (declarations, fetch, store).
fn load_tile(x: &str, operand: Operand, tile_outer: u32, tk: u32) -> (String, String, String) {
    let (outer_len, base, index) = if x == "a" { ("p.m", "a_base(z)", "m") } else { ("p.n", "b_base(z)", "n") };
    let quads_outer = tile_outer / 4;
    let origin = if x == "a" { "m0" } else { "n0" };
    let rounds = tile_outer * tk / 4 / THREADS;
    // A quad holds four values along K, or along the outer axis: where it
    // sits in the tile (lo, lk) and how it lands in workgroup memory, which
    // is vec4 along the outer axis either way.
    let along_k = matches!(operand, Operand::Dense { k_contiguous: true, .. } | Operand::Computed { k4: true });
    let (locate, store) = if along_k {
        (
            format!("let lo = q / {}u; let lk = (q % {}u) * 4u;", tk / 4, tk / 4),
            format!("for (var j = 0u; j < 4u; j++) {{ tile_{x}[(lk + j) * {quads_outer}u + lo / 4u][lo % 4u] = v[j]; }}"),
        )
    } else {
        (format!("let lk = q / {quads_outer}u; let lo = (q % {quads_outer}u) * 4u;"), format!("tile_{x}[lk * {quads_outer}u + lo / 4u] = v;"))
    };
    // The quad's values at (o, kk + j) or (o + j, kk), zero outside.
    let fetch = match operand {
        Operand::Dense { k_contiguous: true, vec4: true } => format!("if ({index} < {outer_len} && kk < p.k) {{ v = {x}[({base} + {index} * p.k + kk) / 4u]; }}"),
        Operand::Dense { k_contiguous: true, vec4: false } => format!("for (var j = 0u; j < 4u; j++) {{ if ({index} < {outer_len} && kk + j < p.k) {{ v[j] = {x}[{base} + {index} * p.k + kk + j]; }} }}"),
        Operand::Dense { k_contiguous: false, vec4: true } => format!("if ({index} < {outer_len} && kk < p.k) {{ v = {x}[({base} + kk * {outer_len} + {index}) / 4u]; }}"),
        Operand::Dense { k_contiguous: false, vec4: false } => {
            format!("for (var j = 0u; j < 4u; j++) {{ if ({index} + j < {outer_len} && kk < p.k) {{ v[j] = {x}[{base} + kk * {outer_len} + {index} + j]; }} }}")
        }
        Operand::Computed { k4: true } => format!("if ({index} < {outer_len} && kk < p.k) {{ v = load_{x}4(z, kk, {index}); }}"),
        Operand::Computed { k4: false } => format!("for (var j = 0u; j < 4u; j++) {{ if ({index} + j < {outer_len} && kk < p.k) {{ v[j] = load_{x}(z, kk, {index} + j); }} }}"),
    };
    let (mut declare, mut fetches, mut stores) = (String::new(), String::new(), String::new());
    for round in 0..rounds {
        let register = format!("{x}_next{round}");
        let q = format!("let q = lid + {}u;", round * THREADS);
        declare += &format!("    var {register} = vec4<f32>(0.0);\n");
        fetches += &format!("        {{\n            {q} {locate}\n            let {index} = {origin} + lo;\n            let kk = k0 + lk;\n            var v = vec4<f32>(0.0);\n            {fetch}\n            {register} = v;\n        }}\n");
        stores += &format!("        {{\n            {q} {locate}\n            let v = {register};\n            {store}\n        }}\n");
    }
    (declare, fetches, stores)
}

pub(crate) fn source(s: &GemmShader<'_>) -> crate::program::ProgramSource {
    let t = s.tile;
    let (tmq, tnq) = (t.m / 4, t.n / 4);
    let (tx, ty) = (t.n / t.rn, t.m / t.rm);
    let (rq, cq) = (t.rm / 4, t.rn / 4);
    let array = |operand: Operand| if matches!(operand, Operand::Dense { vec4: true, .. }) { "vec4<f32>" } else { "f32" };
    let [a_binding, b_binding, out_binding] = s.bindings;
    let declare_operand = |name: &str, binding: u32, operand: Operand| match operand {
        Operand::Computed { .. } => String::new(),
        dense => format!("@group(0) @binding({binding}) var<storage, read_write> {name}: array<{}>;", array(dense)),
    };
    let (a_decl, b_decl) = (declare_operand("a", a_binding, s.a), declare_operand("b", b_binding, s.b));
    let out_decl = format!("@group(0) @binding({out_binding}) var<storage, read_write> out: array<{}>;", if s.out_vec4 { "vec4<f32>" } else { "f32" });

    // The inner product, unrolled so the accumulators stay in registers.
    let mut declare = String::new();
    let mut step = String::new();
    for r in 0..rq {
        step += &format!("            let a{r} = tile_a[kk * {tmq}u + ty + {}u];\n", r * ty);
    }
    for c in 0..cq {
        step += &format!("            let b{c} = tile_b[kk * {tnq}u + tx + {}u];\n", c * tx);
    }
    for r in 0..rq {
        for i in 0..4 {
            for c in 0..cq {
                let acc = format!("acc{}_{c}", r * 4 + i);
                declare += &format!("    var {acc} = vec4<f32>(0.0);\n");
                step += &format!("            {acc} = fma(vec4<f32>(a{r}[{i}]), b{c}, {acc});\n");
            }
        }
    }
    let mut store = String::new();
    for r in 0..rq {
        for i in 0..4 {
            store += &format!("    {{\n        let m = m0 + (ty + {}u) * 4u + {i}u;\n        if (m < p.m) {{\n", r * ty);
            for c in 0..cq {
                let acc = format!("acc{}_{c}", r * 4 + i);
                store += &format!("            {{\n            let n = n0 + (tx + {}u) * 4u;\n            if (n < p.n) {{\n                let v = finish(z, m, n, {acc});\n", c * tx);
                store += if s.out_vec4 {
                    "                out[(out_row(z, m) + n) / 4u] = v;\n"
                } else {
                    "                for (var j = 0u; j < 4u; j++) { if (n + j < p.n) { out[out_row(z, m) + n + j] = v[j]; } }\n"
                };
                store += "            }\n            }\n";
            }
            store += "        }\n    }\n";
        }
    }
    let (declare_a, fetch_a, store_a) = load_tile("a", s.a, t.m, t.k);
    let (declare_b, fetch_b, store_b) = load_tile("b", s.b, t.n, t.k);
    let wgsl = format!(
        "{prelude}
{a_decl}
{b_decl}
{out_decl}
@group(0) @binding({uniform}) var<uniform> p: Params;
var<workgroup> tile_a: array<vec4<f32>, {a_size}>;
var<workgroup> tile_b: array<vec4<f32>, {b_size}>;

@compute @workgroup_size({THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {{
    let z = wid.z;
    let m0 = wid.y * {tm}u;
    let n0 = wid.x * {tn}u;
    let tx = lid % {tx}u;
    let ty = lid / {tx}u;
{declare}{declare_a}{declare_b}    {{
        let k0 = 0u;
{fetch_a}{fetch_b}    }}
    for (var k0 = 0u; k0 < p.k; k0 += {tk}u) {{
{store_a}{store_b}        workgroupBarrier();
        if (k0 + {tk}u < p.k) {{
            let k0 = k0 + {tk}u;
{fetch_a}{fetch_b}        }}
        for (var kk = 0u; kk < {tk}u; kk++) {{
{step}        }}
        workgroupBarrier();
    }}
{store}}}
",
        prelude = s.prelude,
        uniform = s.storage,
        a_size = t.k * tmq,
        b_size = t.k * tnq,
        tm = t.m,
        tn = t.n,
        tk = t.k,
    );
    crate::program::ProgramSource { wgsl, storage: s.storage }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgpu::naga;

    const PRELUDE: &str = "
struct Params { m: u32, n: u32, k: u32 }
fn a_base(z: u32) -> u32 { return 0u; }
fn b_base(z: u32) -> u32 { return 0u; }
fn out_row(z: u32, m: u32) -> u32 { return m * p.n; }
fn load_a(z: u32, k: u32, m: u32) -> f32 { return 1.0; }
fn load_a4(z: u32, k: u32, m: u32) -> vec4<f32> { return vec4<f32>(1.0); }
fn load_b(z: u32, k: u32, n: u32) -> f32 { return 1.0; }
fn load_b4(z: u32, k: u32, n: u32) -> vec4<f32> { return vec4<f32>(1.0); }
fn finish(z: u32, m: u32, n: u32, v: vec4<f32>) -> vec4<f32> { return v; }
";

    /// Every variant is valid WGSL, checked without a GPU.
    #[test]
    fn every_variant_validates() {
        let dense = |k_contiguous, vec4| Operand::Dense { k_contiguous, vec4 };
        let operands = [dense(true, true), dense(true, false), dense(false, true), dense(false, false), Operand::Computed { k4: true }, Operand::Computed { k4: false }];
        for tile in [SMALL, LARGE] {
            for a in operands {
                for b in operands {
                    for out_vec4 in [false, true] {
                        let source = source(&GemmShader { tile, a, b, out_vec4, bindings: [0, 1, 2], storage: 3, prelude: PRELUDE });
                        let module = naga::front::wgsl::parse_str(&source.wgsl).unwrap_or_else(|e| panic!("{}\n{}", e.emit_to_string(&source.wgsl), source.wgsl));
                        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
                            .validate(&module)
                            .unwrap_or_else(|e| panic!("{tile:?} {a:?} {b:?}: {e:?}"));
                    }
                }
            }
        }
    }
}
