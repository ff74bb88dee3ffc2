//! Matrix products: `MatMul` (numpy semantics) and `Gemm`, both on the
//! `gemm` crate's SIMD kernels, threaded on the session's pool.
//!
//! [`sgemm`] is the one safe entry point to `gemm::gemm` in the crate; Conv
//! uses it too. The small input helpers here are shared by the other
//! numeric operator modules (conv, pool, norm).

use super::{output, required, Attrs, Builder, Fact, Op, OpError};
use crate::model::{Dim, Node};
use crate::tensor::{DataType, Tensor};
use rayon::prelude::*;
use std::collections::HashMap;

/// Input `index` as float elements, with its shape.
pub(crate) fn f32_input<'a>(inputs: &[Option<&'a Tensor>], index: usize) -> Result<(&'a [usize], &'a [f32]), OpError> {
    let t = required(inputs, index)?;
    let data = t.as_f32().ok_or_else(|| OpError::input(index, format!("expected float, got {}", t.dtype())))?;
    Ok((t.shape(), data))
}

/// Optional input `index` as float elements, with its shape.
pub(crate) fn optional_f32_input<'a>(inputs: &[Option<&'a Tensor>], index: usize) -> Result<Option<(&'a [usize], &'a [f32])>, OpError> {
    match inputs.get(index).copied().flatten() {
        None => Ok(None),
        Some(_) => f32_input(inputs, index).map(Some),
    }
}

/// Input fact `index`, which must be float.
pub(crate) fn f32_fact<'a>(inputs: &[Option<&'a Fact>], index: usize) -> Result<&'a Fact, OpError> {
    let f = required(inputs, index)?;
    if f.dtype != DataType::F32 {
        return Err(OpError::input(index, format!("expected float, got {}", f.dtype)));
    }
    Ok(f)
}

/// Optional input fact `index`, which must be float when present.
pub(crate) fn optional_f32_fact<'a>(inputs: &[Option<&'a Fact>], index: usize) -> Result<Option<&'a Fact>, OpError> {
    match inputs.get(index).copied().flatten() {
        None => Ok(None),
        Some(_) => f32_fact(inputs, index).map(Some),
    }
}

/// The value of a dimension when it is known.
pub(crate) fn known(d: &Dim) -> Option<usize> {
    match d {
        Dim::Known(n) => Some(*n),
        _ => None,
    }
}

/// `dst = alpha·op(A)·op(B) + (dst if accumulate else 0)`, all row-major:
/// `op(A)` is `m×k` (stored `k×m` when `trans_a`), `op(B)` is `k×n`
/// (stored `n×k` when `trans_b`), `dst` is `m×n` and contiguous.
///
/// With `pool`, gemm splits the product over the pool's threads (it runs
/// single-threaded below its own work threshold); without, it runs on the
/// calling thread (for use inside an already parallel loop).
///
/// # Panics
///
/// When a slice is shorter than its matrix: callers size them from
/// validated shapes, so this is an internal invariant.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    trans_a: bool,
    b: &[f32],
    trans_b: bool,
    dst: &mut [f32],
    alpha: f32,
    accumulate: bool,
    pool: Option<&rayon::ThreadPool>,
) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && dst.len() >= m * n,
        "sgemm: {m}x{k} · {k}x{n} with slices of {}, {} and {} elements",
        a.len(),
        b.len(),
        dst.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    if n <= THIN_COLUMNS && !trans_a {
        return thin_product(m, n, k, a, b, trans_b, dst, alpha, accumulate, pool);
    }
    // Element (i, p) of op(A) lies at i·a_rs + p·a_cs; likewise for B and dst.
    let (a_rs, a_cs) = if trans_a { (1, m as isize) } else { (k as isize, 1) };
    let (b_rs, b_cs) = if trans_b { (1, k as isize) } else { (n as isize, 1) };
    let threads = pool.map_or(1, |p| p.current_num_threads());
    let mut run = move |parallelism: gemm::Parallelism| {
        // SAFETY: `gemm::gemm` reads op(A) at offsets i·a_rs + p·a_cs for
        // i < m, p < k: without transposition the largest is (m-1)·k + k-1 =
        // m·k - 1, with it (k-1)·m + m-1 = m·k - 1, both < a.len() (asserted
        // above); op(B) likewise reaches at most k·n - 1 < b.len(). It reads
        // and writes dst at i·n + j ≤ m·n - 1 < dst.len(). The three
        // pointers come from live slices: `dst` is a unique borrow, so it
        // cannot alias `a` or `b`, and nothing else touches them during the
        // call. All strides are positive and fit in isize because the slices'
        // lengths do. T = f32 is one of the types gemm supports (it panics on
        // others). m, n, k > 0 here. `read_dst` is only set when dst holds
        // initialised values the caller wants accumulated (always the case
        // for a `&mut [f32]`).
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                n as isize,
                accumulate,
                a.as_ptr(),
                a_cs,
                a_rs,
                b.as_ptr(),
                b_cs,
                b_rs,
                1.0,
                alpha,
                false,
                false,
                false,
                parallelism,
            )
        }
    };
    match pool {
        // gemm splits its work with rayon's *current* pool: install ours.
        Some(p) if threads > 1 => p.install(|| run(gemm::Parallelism::Rayon(threads))),
        _ => run(gemm::Parallelism::None),
    }
}

/// Products with at most this many columns (a convolution over a few
/// frames, a recurrent cell's matrix-vector products) are dot products of
/// A's rows: gemm's packing of its panels costs more than such a product's
/// arithmetic (measured on Silero VAD, whose convolutions see 1 to 4
/// frames per call).
pub(crate) const THIN_COLUMNS: usize = 8;

/// Below this many elements of A, a thin product stays on one thread.
const THIN_PARALLEL: usize = 1 << 16;

/// Rows of `dst` from the same rows of A and the `n` rows of `Bᵀ`.
struct ThinRows<'a> {
    a: &'a [f32],
    b_t: &'a [f32],
    k: usize,
    n: usize,
    alpha: f32,
    accumulate: bool,
}

/// Rows of A that a thin product takes at a time.
const THIN_BLOCK: usize = 4;
const _: () = assert!(THIN_BLOCK <= THIN_COLUMNS);

impl ThinRows<'_> {
    fn store(&self, o: &mut f32, sum: f32) {
        let sum = self.alpha * sum;
        *o = if self.accumulate { *o + sum } else { sum };
    }

    /// Block `b` of [`THIN_BLOCK`] rows (fewer at the end), into `out`.
    fn run(&self, b: usize, out: &mut [f32]) {
        let (k, n) = (self.k, self.n);
        let rows = out.len() / n;
        let a = &self.a[b * THIN_BLOCK * k..][..rows * k];
        let mut sums = [0.0f32; THIN_COLUMNS];
        if n >= 4 {
            // Each row against the columns, four at a time.
            for (row, out) in a.chunks_exact(k).zip(out.chunks_mut(n)) {
                crate::kernels::microkernel::dots(row, self.b_t, &mut sums[..n]);
                out.iter_mut().zip(&sums).for_each(|(o, &sum)| self.store(o, sum));
            }
        } else {
            // Fewer columns than a pass takes: each column against the
            // block's rows, which then share the column's loads.
            for j in 0..n {
                crate::kernels::microkernel::dots(&self.b_t[j * k..][..k], a, &mut sums[..rows]);
                sums[..rows].iter().enumerate().for_each(|(r, &sum)| self.store(&mut out[r * n + j], sum));
            }
        }
    }
}

/// [`sgemm`] for `n ≤ THIN_COLUMNS`, A not transposed.
#[allow(clippy::too_many_arguments)]
fn thin_product(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], trans_b: bool, dst: &mut [f32], alpha: f32, accumulate: bool, pool: Option<&rayon::ThreadPool>) {
    // Bᵀ's rows are B's columns: B itself when it is stored transposed or
    // is one column.
    let run = |b_t: &[f32], dst: &mut [f32]| {
        let rows = ThinRows { a, b_t, k, n, alpha, accumulate };
        let dst = &mut dst[..m * n];
        match pool {
            Some(p) if p.current_num_threads() > 1 && m * k >= THIN_PARALLEL => p.install(|| dst.par_chunks_mut(THIN_BLOCK * n).enumerate().for_each(|(b, out)| rows.run(b, out))),
            _ => dst.chunks_mut(THIN_BLOCK * n).enumerate().for_each(|(b, out)| rows.run(b, out)),
        }
    };
    if trans_b || n == 1 {
        run(&b[..k * n], dst);
    } else {
        crate::kernels::scratch::with_transposed(k * n, |transposed| {
            for (j, row) in transposed.chunks_mut(k).enumerate() {
                row.iter_mut().enumerate().for_each(|(p, t)| *t = b[p * n + j]);
            }
            run(transposed, dst);
        });
    }
}

/// Products smaller than this (m·n·k) run one per thread when there are
/// several in a batch, rather than one after another, each split.
const SMALL_PRODUCT: usize = 1 << 21;

/// Broadcasts two batch shapes (numpy rules).
fn broadcast_batch(a: &[usize], b: &[usize]) -> Result<Vec<usize>, OpError> {
    let rank = a.len().max(b.len());
    let pad = |s: &[usize], i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
    (0..rank)
        .map(|i| match (pad(a, i), pad(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            (x, y) => Err(OpError::Shape(format!("MatMul: batch dimensions {a:?} (input 0) and {b:?} (input 1) do not broadcast ({x} vs {y})"))),
        })
        .collect()
}

/// Broadcasts two batch shapes of dimensions that may be unknown.
fn broadcast_batch_dims(a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>, OpError> {
    let rank = a.len().max(b.len());
    let one = Dim::Known(1);
    let pad = |s: &'_ [Dim], i: usize| if i + s.len() >= rank { s[i + s.len() - rank].clone() } else { one.clone() };
    (0..rank)
        .map(|i| match (pad(a, i), pad(b, i)) {
            (x, y) if x == y => Ok(x),
            (Dim::Known(1), y) => Ok(y),
            (x, Dim::Known(1)) => Ok(x),
            (Dim::Known(x), Dim::Known(y)) => Err(OpError::Shape(format!("MatMul: batch dimensions do not broadcast ({x} vs {y})"))),
            // A known dimension other than 1 wins over an unknown one, which
            // must be 1 or equal to it.
            (Dim::Known(x), _) | (_, Dim::Known(x)) => Ok(Dim::Known(x)),
            _ => Ok(Dim::Unknown),
        })
        .collect()
}

/// `MatMul`: numpy's matmul for floats.
#[derive(Debug)]
struct MatMul;

impl Op for MatMul {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let a = f32_fact(inputs, 0)?;
        let b = f32_fact(inputs, 1)?;
        if a.shape.is_empty() {
            return Err(OpError::input(0, "MatMul needs at least one dimension, got a scalar"));
        }
        if b.shape.is_empty() {
            return Err(OpError::input(1, "MatMul needs at least one dimension, got a scalar"));
        }
        let (ra, rb) = (a.shape.len(), b.shape.len());
        let ka = &a.shape[ra - 1];
        let kb = if rb == 1 { &b.shape[0] } else { &b.shape[rb - 2] };
        if let (Some(x), Some(y)) = (known(ka), known(kb)) {
            if x != y {
                return Err(OpError::Shape(format!("MatMul: inner dimensions differ: input 0 has {x} columns, input 1 has {y} rows")));
            }
        }
        let a_batch = if ra > 2 { &a.shape[..ra - 2] } else { &[] };
        let b_batch = if rb > 2 { &b.shape[..rb - 2] } else { &[] };
        let mut shape = broadcast_batch_dims(a_batch, b_batch)?;
        if ra > 1 {
            shape.push(a.shape[ra - 2].clone());
        }
        if rb > 1 {
            shape.push(b.shape[rb - 1].clone());
        }
        Ok(vec![Fact::new(DataType::F32, shape)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let (sa, a) = f32_input(inputs, 0)?;
        let (sb, b) = f32_input(inputs, 1)?;
        if sa.is_empty() {
            return Err(OpError::input(0, "MatMul needs at least one dimension, got a scalar"));
        }
        if sb.is_empty() {
            return Err(OpError::input(1, "MatMul needs at least one dimension, got a scalar"));
        }
        // 1-D operands: a vector [k] is a row [1, k] on the left and a
        // column [k, 1] on the right; the added dimension is dropped after.
        let (ra, rb) = (sa.len(), sb.len());
        let (m, k) = if ra == 1 { (1, sa[0]) } else { (sa[ra - 2], sa[ra - 1]) };
        let (kb, n) = if rb == 1 { (sb[0], 1) } else { (sb[rb - 2], sb[rb - 1]) };
        if k != kb {
            return Err(OpError::Shape(format!("MatMul: inner dimensions differ: input 0 {sa:?} has {k} columns, input 1 {sb:?} has {kb} rows")));
        }
        let a_batch = if ra > 2 { &sa[..ra - 2] } else { &[] };
        let b_batch = if rb > 2 { &sb[..rb - 2] } else { &[] };
        let batch = broadcast_batch(a_batch, b_batch)?;
        let mut out_shape = batch.clone();
        if ra > 1 {
            out_shape.push(m);
        }
        if rb > 1 {
            out_shape.push(n);
        }
        let batches: usize = batch.iter().product();
        let out = output(outputs, 0)?.reset_f32(&out_shape)?;
        if out.is_empty() {
            return Ok(());
        }
        if b_batch.iter().all(|&d| d == 1) {
            // B is one matrix for every batch: stack A's batches into one
            // tall product, (batches·m)×k · k×n.
            sgemm(batches * m, n, k, a, false, b, false, out, 1.0, false, Some(threads));
            return Ok(());
        }
        // Matrix offsets of each output batch in A and B (0 stride where broadcast).
        let offsets = |shape: &[usize], size: usize| -> Vec<usize> {
            let rank = batch.len();
            let padded: Vec<usize> = std::iter::repeat_n(1, rank - shape.len()).chain(shape.iter().copied()).collect();
            let mut strides = vec![0; rank];
            let mut s = size;
            for i in (0..rank).rev() {
                strides[i] = if padded[i] == 1 { 0 } else { s };
                s *= padded[i];
            }
            let mut index = vec![0; rank];
            let mut result = Vec::with_capacity(batches);
            for _ in 0..batches {
                result.push(index.iter().zip(&strides).map(|(i, s)| i * s).sum());
                for d in (0..rank).rev() {
                    index[d] += 1;
                    if index[d] < batch[d] {
                        break;
                    }
                    index[d] = 0;
                }
            }
            result
        };
        let (a_off, b_off) = (offsets(a_batch, m * k), offsets(b_batch, k * n));
        let product = |(i, dst): (usize, &mut [f32]), pool: Option<&rayon::ThreadPool>| {
            sgemm(m, n, k, &a[a_off[i]..a_off[i] + m * k], false, &b[b_off[i]..b_off[i] + k * n], false, dst, 1.0, false, pool)
        };
        let t = threads.current_num_threads();
        if t > 1 && batches >= t && m * n * k < SMALL_PRODUCT {
            threads.install(|| out.par_chunks_mut(m * n).enumerate().for_each(|job| product(job, None)));
        } else {
            out.chunks_mut(m * n).enumerate().for_each(|job| product(job, Some(threads)));
        }
        Ok(())
    }
}

/// `Gemm`: `alpha·op(A)·op(B) + beta·C`, C broadcast to (M, N).
#[derive(Debug)]
struct Gemm {
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
}

impl Gemm {
    /// (rows, columns) of C after padding its shape to rank 2, checked
    /// against (M, N).
    fn c_dims<T: Clone + PartialEq + std::fmt::Debug>(c: &[T], one: T, mn: [&T; 2], fits: impl Fn(&T, &T) -> bool) -> Result<[T; 2], OpError> {
        if c.len() > 2 {
            return Err(OpError::input(2, format!("C must have rank 0 to 2, got shape {c:?}")));
        }
        let padded: Vec<T> = std::iter::repeat_n(one, 2 - c.len()).chain(c.iter().cloned()).collect();
        for (d, target) in padded.iter().zip(mn) {
            if !fits(d, target) {
                return Err(OpError::input(2, format!("C of shape {c:?} does not broadcast to (M, N) = ({:?}, {:?})", mn[0], mn[1])));
            }
        }
        Ok([padded[0].clone(), padded[1].clone()])
    }
}

impl Op for Gemm {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let a = f32_fact(inputs, 0)?;
        let b = f32_fact(inputs, 1)?;
        let c = optional_f32_fact(inputs, 2)?;
        if a.shape.len() != 2 {
            return Err(OpError::input(0, format!("Gemm's A must be a matrix, got rank {}", a.shape.len())));
        }
        if b.shape.len() != 2 {
            return Err(OpError::input(1, format!("Gemm's B must be a matrix, got rank {}", b.shape.len())));
        }
        let (m, ka) = if self.trans_a { (&a.shape[1], &a.shape[0]) } else { (&a.shape[0], &a.shape[1]) };
        let (kb, n) = if self.trans_b { (&b.shape[1], &b.shape[0]) } else { (&b.shape[0], &b.shape[1]) };
        if let (Some(x), Some(y)) = (known(ka), known(kb)) {
            if x != y {
                return Err(OpError::Shape(format!("Gemm: inner dimensions differ: op(A) has {x} columns, op(B) has {y} rows")));
            }
        }
        if let Some(c) = c {
            let fits = |d: &Dim, t: &Dim| match (known(d), known(t)) {
                (Some(1), _) => true,
                (Some(x), Some(y)) => x == y,
                _ => true,
            };
            Self::c_dims(&c.shape, Dim::Known(1), [m, n], fits)?;
        }
        Ok(vec![Fact::new(DataType::F32, vec![m.clone(), n.clone()])])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let (sa, a) = f32_input(inputs, 0)?;
        let (sb, b) = f32_input(inputs, 1)?;
        let c = optional_f32_input(inputs, 2)?;
        if sa.len() != 2 {
            return Err(OpError::input(0, format!("Gemm's A must be a matrix, got shape {sa:?}")));
        }
        if sb.len() != 2 {
            return Err(OpError::input(1, format!("Gemm's B must be a matrix, got shape {sb:?}")));
        }
        let (m, k) = if self.trans_a { (sa[1], sa[0]) } else { (sa[0], sa[1]) };
        let (kb, n) = if self.trans_b { (sb[1], sb[0]) } else { (sb[0], sb[1]) };
        if k != kb {
            return Err(OpError::Shape(format!("Gemm: inner dimensions differ: op(A) is {m}x{k}, op(B) is {kb}x{n}")));
        }
        let out = output(outputs, 0)?.reset_f32(&[m, n])?;
        let mut accumulate = false;
        if let Some((sc, c)) = c {
            let [cm, cn] = Self::c_dims(sc, 1, [&m, &n], |d, t| *d == 1 || d == t)?;
            if self.beta != 0.0 && !out.is_empty() {
                accumulate = true;
                let beta = self.beta;
                for (i, row) in out.chunks_mut(n).enumerate() {
                    let c_row = &c[if cm == 1 { 0 } else { i * cn }..][..cn];
                    if cn == 1 {
                        row.fill(beta * c_row[0]);
                    } else {
                        row.iter_mut().zip(c_row).for_each(|(o, &c)| *o = beta * c);
                    }
                }
            }
        }
        sgemm(m, n, k, a, self.trans_a, b, self.trans_b, out, self.alpha, accumulate, Some(threads));
        Ok(())
    }
}

fn gemm_op(node: &Node, _opset: i64) -> Result<Box<dyn Op>, OpError> {
    // Opsets 7-21 share these attributes; C became optional in 11 (treated
    // as optional throughout), and opset 6's `broadcast` is implied since 7.
    let a = Attrs(node);
    let flag = |name: &str| -> Result<bool, OpError> {
        match a.int(name, 0)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(OpError::attribute(name, format!("must be 0 or 1, got {v}"))),
        }
    };
    Ok(Box::new(Gemm { alpha: a.float("alpha", 1.0)?, beta: a.float("beta", 1.0)?, trans_a: flag("transA")?, trans_b: flag("transB")? }))
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("MatMul", |_, _| Ok(Box::new(MatMul)));
    ops.insert("Gemm", gemm_op);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{pool, values};
    use crate::model::Attribute;

    fn node(op: &str, attrs: Vec<(&str, Attribute)>) -> Node {
        Node {
            name: op.into(),
            op_type: op.into(),
            domain: String::new(),
            inputs: vec![],
            outputs: vec!["y".into()],
            attributes: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    fn run(op: &dyn Op, inputs: &[Option<Tensor>], threads: usize) -> Result<Tensor, OpError> {
        let refs: Vec<Option<&Tensor>> = inputs.iter().map(Option::as_ref).collect();
        let facts: Vec<Option<Fact>> = inputs.iter().map(|t| t.as_ref().map(|t| Fact::new(t.dtype(), t.shape().iter().map(|&d| Dim::Known(d)).collect()))).collect();
        let fact_refs: Vec<Option<&Fact>> = facts.iter().map(Option::as_ref).collect();
        let inferred = op.infer(&fact_refs)?;
        let out = op.eval_new(&refs, 1, &pool(threads))?.remove(0);
        assert_eq!(inferred[0].concrete_shape().unwrap(), out.shape(), "inferred shape");
        Ok(out)
    }

    fn close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((*g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()), "element {i}: got {g}, want {w}");
        }
    }

    /// Naive numpy matmul in f64 on shapes of rank ≥ 1.
    fn reference_matmul(sa: &[usize], a: &[f32], sb: &[usize], b: &[f32]) -> (Vec<usize>, Vec<f64>) {
        let (mut sa2, mut sb2) = (sa.to_vec(), sb.to_vec());
        if sa.len() == 1 {
            sa2.insert(0, 1);
        }
        if sb.len() == 1 {
            sb2.push(1);
        }
        let rank = sa2.len().max(sb2.len());
        while sa2.len() < rank {
            sa2.insert(0, 1);
        }
        while sb2.len() < rank {
            sb2.insert(0, 1);
        }
        let (m, k, n) = (sa2[rank - 2], sa2[rank - 1], sb2[rank - 1]);
        let batch: Vec<usize> = (0..rank - 2).map(|i| sa2[i].max(sb2[i])).collect();
        let total: usize = batch.iter().product();
        let mut out = Vec::new();
        for t in 0..total {
            // Decompose t into a batch index, then locate it in A and B.
            let mut idx = vec![0; batch.len()];
            let mut r = t;
            for d in (0..batch.len()).rev() {
                idx[d] = r % batch[d];
                r /= batch[d];
            }
            let flat = |shape: &[usize]| idx.iter().enumerate().fold(0, |acc, (d, &i)| acc * shape[d] + if shape[d] == 1 { 0 } else { i });
            let (ao, bo) = (flat(&sa2) * m * k, flat(&sb2) * k * n);
            for i in 0..m {
                for j in 0..n {
                    out.push((0..k).map(|p| a[ao + i * k + p] as f64 * b[bo + p * n + j] as f64).sum());
                }
            }
        }
        let mut shape = batch;
        if sa.len() > 1 {
            shape.push(m);
        }
        if sb.len() > 1 {
            shape.push(n);
        }
        (shape, out)
    }

    #[test]
    fn matmul_matches_reference() {
        let op = MatMul;
        let cases: &[(&[usize], &[usize])] = &[
            (&[3, 4], &[4, 5]),
            (&[4], &[4, 5]),
            (&[3, 4], &[4]),
            (&[4], &[4]),
            (&[2, 3, 4], &[4, 5]),
            (&[2, 1, 3, 4], &[5, 4, 6]),
            (&[1, 3, 4], &[2, 4, 6]),
            (&[7, 2, 3], &[7, 3, 2]),
            (&[65, 70], &[70, 81]),
            (&[3, 33, 40], &[3, 40, 17]),
            (&[0, 4], &[4, 5]),
            (&[3, 0], &[0, 5]),
        ];
        for (i, (sa, sb)) in cases.iter().enumerate() {
            let a = values(sa.iter().product(), i as u64);
            let b = values(sb.iter().product(), 100 + i as u64);
            let (shape, want) = reference_matmul(sa, &a, sb, &b);
            for threads in [1, 2] {
                let got = run(&op, &[Some(Tensor::f32(sa.to_vec(), a.clone()).unwrap()), Some(Tensor::f32(sb.to_vec(), b.clone()).unwrap())], threads).unwrap();
                assert_eq!(got.shape(), &shape[..], "case {sa:?} x {sb:?}");
                close(got.as_f32().unwrap(), &want);
            }
        }
    }

    #[test]
    fn thin_products_match_reference() {
        // Columns up to THIN_COLUMNS take the dot-product path; depths
        // around the vector widths (16, 64) exercise its remainders.
        for n in [1, 2, 3, 4, 5, THIN_COLUMNS] {
            for k in [1, 15, 16, 17, 64, 79, 200] {
                let m = 9;
                let (a, b, start) = (values(m * k, 3), values(k * n, 4), values(m * n, 5));
                let b_t: Vec<f32> = (0..n).flat_map(|j| (0..k).map(|p| b[p * n + j]).collect::<Vec<_>>()).collect();
                for (trans_b, stored) in [(false, &b), (true, &b_t)] {
                    for accumulate in [false, true] {
                        let mut dst = start.clone();
                        sgemm(m, n, k, &a, false, stored, trans_b, &mut dst, 0.5, accumulate, Some(&pool(2)));
                        let want: Vec<f64> = (0..m * n)
                            .map(|o| {
                                let (i, j) = (o / n, o % n);
                                let sum: f64 = (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum();
                                0.5 * sum + if accumulate { start[o] as f64 } else { 0.0 }
                            })
                            .collect();
                        close(&dst, &want);
                    }
                }
            }
        }
    }

    #[test]
    fn matmul_errors_and_dims() {
        let op = MatMul;
        let t = |s: &[usize]| Some(Tensor::f32(s.to_vec(), vec![0.0; s.iter().product()]).unwrap());
        assert!(matches!(run(&op, &[t(&[3, 4]), t(&[5, 6])], 1), Err(OpError::Shape(_))));
        assert!(matches!(run(&op, &[t(&[2, 3, 4]), t(&[3, 4, 6])], 1), Err(OpError::Shape(_))));
        assert!(matches!(run(&op, &[t(&[]), t(&[3])], 1), Err(OpError::Input { index: 0, .. })));
        let ints = Some(Tensor::i64(vec![2, 2], vec![1, 2, 3, 4]).unwrap());
        assert!(matches!(op.eval_new(&[ints.as_ref(), t(&[2, 2]).as_ref()], 1, &pool(1)), Err(OpError::Input { index: 0, .. })));
        let a = Fact::new(DataType::F32, vec![Dim::Symbolic("b".into()), Dim::Unknown, Dim::Known(4)]);
        let b = Fact::new(DataType::F32, vec![Dim::Known(4), Dim::Known(8)]);
        let out = op.infer(&[Some(&a), Some(&b)]).unwrap();
        assert_eq!(out[0].shape, vec![Dim::Symbolic("b".into()), Dim::Unknown, Dim::Known(8)]);
    }

    /// Naive Gemm in f64.
    #[allow(clippy::too_many_arguments)]
    fn reference_gemm(m: usize, n: usize, k: usize, a: &[f32], ta: bool, b: &[f32], tb: bool, c: Option<(&[usize], &[f32])>, alpha: f64, beta: f64) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] } as f64;
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] } as f64;
                    s += av * bv;
                }
                let cv = match c {
                    None => 0.0,
                    Some((shape, c)) => {
                        let s2: Vec<usize> = std::iter::repeat_n(1, 2 - shape.len()).chain(shape.iter().copied()).collect();
                        c[(if s2[0] == 1 { 0 } else { i }) * s2[1] + if s2[1] == 1 { 0 } else { j }] as f64
                    }
                };
                out[i * n + j] = alpha * s + beta * cv;
            }
        }
        out
    }

    #[test]
    fn gemm_matches_reference() {
        let (m, n, k) = (13, 17, 29);
        let c_shapes: &[Option<&[usize]>] = &[None, Some(&[]), Some(&[n]), Some(&[1, n]), Some(&[m, 1]), Some(&[m, n])];
        let mut seed = 0;
        for &ta in &[false, true] {
            for &tb in &[false, true] {
                for c_shape in c_shapes {
                    for &(alpha, beta) in &[(1.0f32, 1.0f32), (0.5, -2.0), (2.0, 0.0)] {
                        seed += 1;
                        let a = values(m * k, seed);
                        let b = values(k * n, seed + 1000);
                        let c = c_shape.map(|s| (s, values(s.iter().product(), seed + 2000)));
                        let node = node(
                            "Gemm",
                            vec![
                                ("alpha", Attribute::Float(alpha)),
                                ("beta", Attribute::Float(beta)),
                                ("transA", Attribute::Int(ta as i64)),
                                ("transB", Attribute::Int(tb as i64)),
                            ],
                        );
                        let op = gemm_op(&node, 13).unwrap();
                        let sa = if ta { vec![k, m] } else { vec![m, k] };
                        let sb = if tb { vec![n, k] } else { vec![k, n] };
                        let inputs = [
                            Some(Tensor::f32(sa, a.clone()).unwrap()),
                            Some(Tensor::f32(sb, b.clone()).unwrap()),
                            c.as_ref().map(|(s, c)| Tensor::f32(s.to_vec(), c.clone()).unwrap()),
                        ];
                        let want = reference_gemm(m, n, k, &a, ta, &b, tb, c.as_ref().map(|(s, c)| (*s, &c[..])), alpha as f64, beta as f64);
                        for threads in [1, 2] {
                            let got = run(op.as_ref(), &inputs, threads).unwrap();
                            assert_eq!(got.shape(), &[m, n]);
                            close(got.as_f32().unwrap(), &want);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn gemm_large_parallel_and_errors() {
        let (m, n, k) = (150, 130, 140);
        let a = values(m * k, 1);
        let b = values(k * n, 2);
        let op = gemm_op(&node("Gemm", vec![]), 11).unwrap();
        let got = run(op.as_ref(), &[Some(Tensor::f32(vec![m, k], a.clone()).unwrap()), Some(Tensor::f32(vec![k, n], b.clone()).unwrap())], 2).unwrap();
        close(got.as_f32().unwrap(), &reference_gemm(m, n, k, &a, false, &b, false, None, 1.0, 0.0));
        let t = |s: &[usize]| Some(Tensor::f32(s.to_vec(), vec![0.0; s.iter().product()]).unwrap());
        assert!(matches!(run(op.as_ref(), &[t(&[2, 3]), t(&[4, 5])], 1), Err(OpError::Shape(_))));
        assert!(matches!(run(op.as_ref(), &[t(&[2, 3]), t(&[3, 5]), t(&[3, 5])], 1), Err(OpError::Input { index: 2, .. })));
        assert!(matches!(run(op.as_ref(), &[t(&[2, 3, 1]), t(&[3, 5])], 1), Err(OpError::Input { index: 0, .. })));
        assert!(matches!(gemm_op(&node("Gemm", vec![("transA", Attribute::Int(2))]), 13), Err(OpError::Attribute { .. })));
    }
}
