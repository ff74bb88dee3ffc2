//! Normalisations: `BatchNormalization` (inference), `LRN` and `Softmax`.

use super::linalg::{f32_fact, f32_input, known};
use super::{output, Attrs, Builder, Fact, Op, OpError};
use crate::model::Node;
use crate::tensor::{DataType, Tensor};
use rayon::prelude::*;
use std::collections::HashMap;

/// Below this many elements, work stays on one thread.
const PARALLEL_ELEMENTS: usize = 1 << 15;

/// Runs `f(index, chunk)` over `chunk`-sized pieces of `y`, in parallel when
/// the whole is large.
fn chunks(y: &mut [f32], chunk: usize, threads: &rayon::ThreadPool, f: impl Fn(usize, &mut [f32]) + Sync) {
    if y.is_empty() || chunk == 0 {
        return;
    }
    if threads.current_num_threads() > 1 && y.len() >= PARALLEL_ELEMENTS && y.len() > chunk {
        // A few tasks per thread, each of whole chunks: a task per chunk
        // (a Softmax row of 256 values) cost more in hand-overs than the
        // rows' work (an attention's 1,024 rows: 0.40 ms, now 0.12).
        let count = y.len() / chunk;
        let per_task = count.div_ceil(4 * threads.current_num_threads()).max(1);
        threads.install(|| y.par_chunks_mut(per_task * chunk).enumerate().for_each(|(t, group)| group.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(t * per_task + i, c))));
    } else {
        y.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
    }
}

/// `BatchNormalization` in inference mode: `(x - mean) / sqrt(var + eps) ·
/// scale + B`, per channel (or per element of [C, D1..] for opsets before
/// 9 with `spatial = 0`). Extra outputs a node lists (running or saved mean
/// and variance, only meaningful in training) are passed through from the
/// inputs.
#[derive(Debug)]
struct BatchNorm {
    epsilon: f32,
    /// How many outputs the node lists (1 to 5).
    outputs: usize,
}

const BN_INPUTS: [&str; 5] = ["X", "scale", "B", "input_mean", "input_var"];

impl Op for BatchNorm {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = f32_fact(inputs, 0)?;
        if x.shape.len() < 2 {
            return Err(OpError::input(0, format!("X must be [N, C, D1..Dk], got rank {}", x.shape.len())));
        }
        let mut params = Vec::with_capacity(4);
        for i in 1..5 {
            let p = f32_fact(inputs, i)?;
            let per_channel = p.shape.len() == 1;
            let per_element = p.shape.len() == x.shape.len() - 1;
            if !per_channel && !per_element {
                return Err(OpError::input(i, format!("{} must be a vector of C values, got rank {}", BN_INPUTS[i], p.shape.len())));
            }
            if let (Some(a), Some(b)) = (known(&p.shape[0]), known(&x.shape[1])) {
                if a != b {
                    return Err(OpError::input(i, format!("{} has {a} values, X has {b} channels", BN_INPUTS[i])));
                }
            }
            params.push(p);
        }
        let mut facts = vec![Fact::new(DataType::F32, x.shape.clone())];
        // Extra outputs: running mean and var, then saved mean and var.
        for i in 1..self.outputs {
            facts.push(Fact::new(DataType::F32, params[if i % 2 == 1 { 2 } else { 3 }].shape.clone()));
        }
        Ok(facts)
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let (xs, x) = f32_input(inputs, 0)?;
        if xs.len() < 2 {
            return Err(OpError::input(0, format!("X must be [N, C, D1..Dk], got shape {xs:?}")));
        }
        let c = xs[1];
        let inner: usize = xs[2..].iter().product();
        let mut params = Vec::with_capacity(4);
        for i in 1..5 {
            let (ps, p) = f32_input(inputs, i)?;
            if p.len() != c && (p.len() != c * inner || ps.len() != xs.len() - 1) {
                return Err(OpError::input(i, format!("{} must hold the {c} channels' values, got shape {ps:?} for X of shape {xs:?}", BN_INPUTS[i])));
            }
            params.push((ps, p));
        }
        let per_element = params.iter().any(|(_, p)| p.len() != c);
        let len = if per_element { c * inner } else { c };
        // y = x·a + b with a = scale / sqrt(var + eps), b = B - mean·a.
        let at = |p: &[f32], j: usize| if p.len() == len { p[j] } else { p[j / inner] };
        let (a, b): (Vec<f32>, Vec<f32>) = (0..len)
            .map(|j| {
                let a = at(params[0].1, j) / (at(params[3].1, j) + self.epsilon).sqrt();
                (a, at(params[1].1, j) - at(params[2].1, j) * a)
            })
            .unzip();
        let y = output(outputs, 0)?.reset_f32(xs)?;
        if inner > 0 {
            chunks(y, inner, threads, |plane, out| {
                let src = &x[plane * inner..][..inner];
                let ch = plane % c;
                if per_element {
                    let (a, b) = (&a[ch * inner..][..inner], &b[ch * inner..][..inner]);
                    out.iter_mut().zip(src).zip(a.iter().zip(b)).for_each(|((o, &x), (&a, &b))| *o = x * a + b);
                } else {
                    let (a, b) = (a[ch], b[ch]);
                    out.iter_mut().zip(src).for_each(|(o, &x)| *o = x * a + b);
                }
            });
        }
        // Extra outputs: running mean and var, then saved mean and var.
        for i in 1..self.outputs {
            let (ps, p) = params[if i % 2 == 1 { 2 } else { 3 }];
            output(outputs, i)?.reset_f32(ps)?.copy_from_slice(p);
        }
        Ok(())
    }
}

fn batch_norm(node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError> {
    // Opset 7-8: `spatial` (0 = per-element parameters, handled by shape) and
    // `is_test` gone; 9-13: inference unless outputs 2-5 are used; 14-15:
    // `training_mode` and running-stat outputs; 15 only widened types.
    let a = Attrs(node);
    if opset >= 14 && a.int("training_mode", 0)? != 0 {
        return Err(OpError::attribute("training_mode", "training mode is not supported: byob runs inference only"));
    }
    let outputs = node.outputs.iter().rposition(|o| !o.is_empty()).map_or(1, |i| i + 1);
    if outputs > 5 {
        return Err(OpError::attribute("outputs", format!("BatchNormalization has at most 5 outputs, the node lists {outputs}")));
    }
    Ok(Box::new(BatchNorm { epsilon: a.float("epsilon", 1e-5)?, outputs }))
}

/// `LRN`: `y = x / (bias + alpha/size · Σ x²)^beta`, the sum over channels
/// `c - floor((size-1)/2) ..= c + ceil((size-1)/2)` clipped to the tensor.
#[derive(Debug)]
struct Lrn {
    alpha: f32,
    beta: f32,
    bias: f32,
    size: usize,
}

impl Op for Lrn {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = f32_fact(inputs, 0)?;
        if x.shape.len() < 2 {
            return Err(OpError::input(0, format!("X must be [N, C, D1..Dk], got rank {}", x.shape.len())));
        }
        Ok(vec![Fact::new(DataType::F32, x.shape.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let (xs, x) = f32_input(inputs, 0)?;
        if xs.len() < 2 {
            return Err(OpError::input(0, format!("X must be [N, C, D1..Dk], got shape {xs:?}")));
        }
        let c = xs[1];
        let inner: usize = xs[2..].iter().product();
        let (before, after) = ((self.size - 1) / 2, self.size / 2);
        let scale = self.alpha / self.size as f32;
        let (bias, beta) = (self.bias, self.beta);
        let y = output(outputs, 0)?.reset_f32(xs)?;
        if inner > 0 {
            // One output plane at a time: the window's sum of squares, then y.
            chunks(y, inner, threads, |plane, out| {
                let (image, ch) = (plane / c, plane % c);
                let lo = ch.saturating_sub(before);
                let hi = (ch + after).min(c - 1);
                out.fill(0.0);
                for j in lo..=hi {
                    let src = &x[(image * c + j) * inner..][..inner];
                    out.iter_mut().zip(src).for_each(|(s, &v)| *s += v * v);
                }
                let src = &x[plane * inner..][..inner];
                out.iter_mut().zip(src).for_each(|(s, &v)| {
                    let base = bias + scale * *s;
                    *s = if beta == 0.75 {
                        // base^-0.75 = 1 / (√base · ⁴√base), much cheaper than powf.
                        let r = base.sqrt();
                        v / (r * r.sqrt())
                    } else {
                        v / base.powf(beta)
                    };
                });
            });
        }
        Ok(())
    }
}

fn lrn(node: &Node, _opset: i64) -> Result<Box<dyn Op>, OpError> {
    let a = Attrs(node);
    let size = a.get("size").ok_or_else(|| OpError::attribute("size", "required"))?;
    let size = match size {
        crate::model::Attribute::Int(s) if *s > 0 => *s as usize,
        other => return Err(OpError::attribute("size", format!("must be a positive int, got {other:?}"))),
    };
    Ok(Box::new(Lrn { alpha: a.float("alpha", 1e-4)?, beta: a.float("beta", 0.75)?, bias: a.float("bias", 1.0)?, size }))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum SoftmaxKind {
    Softmax,
    /// The logarithm of the softmax, computed as `x - max - ln Σ e^(x - max)`
    /// (no logarithm of an underflowed probability).
    LogSoftmax,
    /// 1 at the first maximum, 0 elsewhere.
    Hardmax,
}

/// `Softmax`, `LogSoftmax` and `Hardmax`: before opset 13 over the input
/// flattened to 2-D at `axis` (everything from `axis` on), from 13 along
/// the one axis `axis`.
#[derive(Debug)]
struct Softmax {
    kind: SoftmaxKind,
    axis: i64,
    /// Opset 13 semantics (one axis) rather than the flattened ones.
    single_axis: bool,
}

impl Softmax {
    /// The axis in 0..rank.
    fn axis(&self, rank: usize) -> Result<usize, OpError> {
        let r = rank as i64;
        if rank == 0 || self.axis < -r || self.axis >= r {
            return Err(OpError::attribute("axis", format!("{} is out of range for an input of rank {rank}", self.axis)));
        }
        Ok(if self.axis < 0 { self.axis + r } else { self.axis } as usize)
    }
}

/// Softmax of one contiguous row, in place from `src` into `dst`.
/// Softmax over block `i` of `x`, each a [len, inner] array, compiled for
/// the widest vectors the processor has (its exponentials are most of a
/// transformer's Softmax time).
struct SoftmaxBlocks<'a> {
    x: &'a [f32],
    len: usize,
    inner: usize,
}

impl crate::kernels::microkernel::VectorLoop for SoftmaxBlocks<'_> {
    #[inline(always)]
    fn run(&self, i: usize, out: &mut [f32]) {
        let block = self.len * self.inner;
        let src = &self.x[i * block..][..block];
        if self.inner == 1 {
            softmax_row(src, out);
        } else {
            softmax_strided(src, out, self.len, self.inner);
        }
    }
}

#[inline(always)]
fn softmax_row(src: &[f32], dst: &mut [f32]) {
    // 32 running maxima, by comparison (one instruction a vector; NaN is
    // never taken, as f32::max would not take it either, and it makes its
    // row NaN through the exponentials all the same).
    let mut highest = [f32::NEG_INFINITY; 32];
    let chunks = src.chunks_exact(32);
    let mut max = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for l in 0..32 {
            if c[l] > highest[l] {
                highest[l] = c[l];
            }
        }
    }
    max = highest.iter().copied().fold(max, f32::max);
    // The exponentials in a loop of their own, which vectorises; the sum
    // in eight partial sums (one would chain every addition).
    dst.iter_mut().zip(src).for_each(|(d, &s)| *d = crate::kernels::fast_math::exp(s - max));
    let mut lanes = [0.0f32; 8];
    let chunks = dst.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for l in 0..8 {
            lanes[l] += c[l];
        }
    }
    let inv = 1.0 / (lanes.iter().sum::<f32>() + rest);
    dst.iter_mut().for_each(|d| *d *= inv);
}

/// Softmax along the middle axis of a [len, inner] block (inner > 1): the
/// loops run along `inner`, contiguous.
#[inline(always)]
fn softmax_strided(src: &[f32], dst: &mut [f32], len: usize, inner: usize) {
    let mut max = src[..inner].to_vec();
    for row in src.chunks_exact(inner).skip(1) {
        max.iter_mut().zip(row).for_each(|(m, &v)| *m = m.max(v));
    }
    let mut sum = vec![0.0f32; inner];
    for (d, s) in dst.chunks_exact_mut(inner).zip(src.chunks_exact(inner)).take(len) {
        for ((d, &s), (&m, acc)) in d.iter_mut().zip(s).zip(max.iter().zip(sum.iter_mut())) {
            *d = crate::kernels::fast_math::exp(s - m);
            *acc += *d;
        }
    }
    sum.iter_mut().for_each(|s| *s = 1.0 / *s);
    for d in dst.chunks_exact_mut(inner) {
        d.iter_mut().zip(&sum).for_each(|(d, &inv)| *d *= inv);
    }
}

/// LogSoftmax or Hardmax of one row, in place.
fn other_row(kind: SoftmaxKind, row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    match kind {
        SoftmaxKind::Hardmax => {
            let first = row.iter().position(|&v| v == max).unwrap_or(0);
            row.iter_mut().enumerate().for_each(|(k, v)| *v = if k == first { 1.0 } else { 0.0 });
        }
        _ => {
            let sum: f64 = row.iter().map(|&v| ((v - max) as f64).exp()).sum();
            let shift = max as f64 + sum.ln();
            row.iter_mut().for_each(|v| *v = (*v as f64 - shift) as f32);
        }
    }
}

impl Op for Softmax {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = f32_fact(inputs, 0)?;
        self.axis(x.shape.len())?;
        Ok(vec![Fact::new(DataType::F32, x.shape.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let (xs, x) = f32_input(inputs, 0)?;
        let axis = self.axis(xs.len())?;
        let (len, inner) = if self.single_axis { (xs[axis], xs[axis + 1..].iter().product()) } else { (xs[axis..].iter().product(), 1) };
        let block = len * inner;
        let y = output(outputs, 0)?.reset_f32(xs)?;
        if block > 0 && self.kind != SoftmaxKind::Softmax {
            let mut row = vec![0.0f32; len];
            for (o, out) in y.chunks_exact_mut(block).enumerate() {
                for i in 0..inner {
                    row.iter_mut().enumerate().for_each(|(k, r)| *r = x[o * block + k * inner + i]);
                    other_row(self.kind, &mut row);
                    row.iter().enumerate().for_each(|(k, &r)| out[k * inner + i] = r);
                }
            }
        } else if block > 0 {
            let blocks = SoftmaxBlocks { x, len, inner };
            chunks(y, block, threads, |i, out| crate::kernels::microkernel::vectorized(&blocks, i, out));
        }
        Ok(())
    }
}

fn softmax(kind: SoftmaxKind, node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError> {
    let single_axis = opset >= 13;
    let axis = Attrs(node).int("axis", if single_axis { -1 } else { 1 })?;
    Ok(Box::new(Softmax { kind, axis, single_axis }))
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("BatchNormalization", batch_norm);
    ops.insert("LRN", lrn);
    ops.insert("Softmax", |n, o| softmax(SoftmaxKind::Softmax, n, o));
    ops.insert("LogSoftmax", |n, o| softmax(SoftmaxKind::LogSoftmax, n, o));
    ops.insert("Hardmax", |n, o| softmax(SoftmaxKind::Hardmax, n, o));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{pool, values};
    use crate::model::{Attribute, Dim};

    fn node(op: &str, attrs: Vec<(&str, Attribute)>, outputs: usize) -> Node {
        Node {
            name: op.into(),
            op_type: op.into(),
            domain: String::new(),
            inputs: vec![],
            outputs: (0..outputs).map(|i| format!("y{i}")).collect(),
            attributes: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    fn close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((*g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()), "element {i}: got {g}, want {w}");
        }
    }

    fn eval(op: &dyn Op, inputs: &[Tensor], threads: usize) -> Vec<Tensor> {
        let facts: Vec<Fact> = inputs.iter().cloned().map(Fact::constant).collect();
        let fact_refs: Vec<Option<&Fact>> = facts.iter().map(Some).collect();
        let inferred = op.infer(&fact_refs).unwrap();
        let refs: Vec<Option<&Tensor>> = inputs.iter().map(Some).collect();
        let out = op.eval_new(&refs, inferred.len(), &pool(threads)).unwrap();
        for (f, t) in inferred.iter().zip(&out) {
            assert_eq!(f.concrete_shape().unwrap(), t.shape());
        }
        out
    }

    #[test]
    fn batch_norm_matches_reference() {
        for shape in [vec![2, 3, 4, 5], vec![3, 4], vec![2, 64, 16, 16], vec![1, 2, 3, 2, 2]] {
            let c = shape[1];
            let x = values(shape.iter().product(), 1);
            let scale = values(c, 2);
            let b = values(c, 3);
            let mean = values(c, 4);
            let var: Vec<f32> = values(c, 5).iter().map(|v| v.abs() + 0.1).collect();
            let eps = 1e-3;
            let inner: usize = shape[2..].iter().product();
            let want: Vec<f64> = (0..x.len())
                .map(|i| {
                    let ch = (i / inner) % c;
                    (x[i] as f64 - mean[ch] as f64) / (var[ch] as f64 + eps as f64).sqrt() * scale[ch] as f64 + b[ch] as f64
                })
                .collect();
            let op = batch_norm(&node("BatchNormalization", vec![("epsilon", Attribute::Float(eps))], 1), 15).unwrap();
            let v = |d: &Vec<f32>| Tensor::f32(vec![c], d.clone()).unwrap();
            let inputs = [Tensor::f32(shape.clone(), x.clone()).unwrap(), v(&scale), v(&b), v(&mean), v(&var)];
            for threads in [1, 2] {
                let out = eval(op.as_ref(), &inputs, threads);
                assert_eq!(out.len(), 1);
                close(out[0].as_f32().unwrap(), &want);
            }
        }
    }

    #[test]
    fn batch_norm_opsets_and_errors() {
        // Opset 7 with spatial = 0: parameters per element of [C, H, W].
        let shape = [2, 2, 3, 1];
        let x = values(12, 1);
        let p = |seed| Tensor::f32(vec![2, 3, 1], values(6, seed).iter().map(|v| v.abs() + 0.5).collect()).unwrap();
        let (scale, b, mean, var) = (p(2), p(3), p(4), p(5));
        let op = batch_norm(&node("BatchNormalization", vec![("spatial", Attribute::Int(0))], 3), 7).unwrap();
        let out = eval(op.as_ref(), &[Tensor::f32(shape.to_vec(), x.clone()).unwrap(), scale.clone(), b.clone(), mean.clone(), var.clone()], 1);
        assert_eq!(out.len(), 3);
        let f = |t: &Tensor, j: usize| t.as_f32().unwrap()[j] as f64;
        let want: Vec<f64> = (0..12).map(|i| (x[i] as f64 - f(&mean, i % 6)) / (f(&var, i % 6) + 1e-5).sqrt() * f(&scale, i % 6) + f(&b, i % 6)).collect();
        close(out[0].as_f32().unwrap(), &want);
        assert_eq!(&out[1], &mean);
        assert_eq!(&out[2], &var);
        // Training mode is refused; channel mismatches name the input.
        assert!(matches!(batch_norm(&node("BatchNormalization", vec![("training_mode", Attribute::Int(1))], 1), 14), Err(OpError::Attribute { .. })));
        let op = batch_norm(&node("BatchNormalization", vec![], 1), 15).unwrap();
        let v = |n| Tensor::f32(vec![n], vec![1.0; n]).unwrap();
        let (x, three, four) = (Tensor::f32(vec![1, 3, 2], vec![0.0; 6]).unwrap(), v(3), v(4));
        let args = [Some(&x), Some(&three), Some(&three), Some(&four), Some(&three)];
        assert!(matches!(op.eval_new(&args, 1, &pool(1)), Err(OpError::Input { index: 3, .. })));
        assert!(matches!(op.eval_new(&args[..2], 1, &pool(1)), Err(OpError::Input { index: 2, .. })));
    }

    #[test]
    fn lrn_matches_reference() {
        for (shape, size, alpha, beta, bias) in [(vec![2, 5, 3, 4], 3, 1e-2f32, 0.75f32, 1.0f32), (vec![1, 7, 2, 2], 4, 0.5, 0.6, 2.0), (vec![1, 4, 3], 5, 1.0, 0.75, 0.5), (vec![2, 32, 24, 24], 5, 1e-4, 0.75, 1.0)] {
            let x = values(shape.iter().product(), 9);
            let (c, inner) = (shape[1], shape[2..].iter().product::<usize>());
            let want: Vec<f64> = (0..x.len())
                .map(|i| {
                    let (image, ch, s) = (i / (c * inner), (i / inner) % c, i % inner);
                    let lo = ch as i64 - ((size - 1) / 2) as i64;
                    let hi = ch as i64 + (size as i64 - 1 + 1) / 2;
                    let sq: f64 = (lo.max(0)..=hi.min(c as i64 - 1)).map(|j| (x[(image * c + j as usize) * inner + s] as f64).powi(2)).sum();
                    x[i] as f64 / (bias as f64 + alpha as f64 / size as f64 * sq).powf(beta as f64)
                })
                .collect();
            let attrs = vec![("size", Attribute::Int(size as i64)), ("alpha", Attribute::Float(alpha)), ("beta", Attribute::Float(beta)), ("bias", Attribute::Float(bias))];
            let op = lrn(&node("LRN", attrs, 1), 13).unwrap();
            for threads in [1, 2] {
                close(eval(op.as_ref(), &[Tensor::f32(shape.clone(), x.clone()).unwrap()], threads)[0].as_f32().unwrap(), &want);
            }
        }
        assert!(matches!(lrn(&node("LRN", vec![], 1), 13), Err(OpError::Attribute { .. })));
    }

    /// Softmax over the given flat groups: `group(i)` names the group of
    /// element i; each group is normalised on its own.
    fn reference_softmax(x: &[f32], group: impl Fn(usize) -> usize) -> Vec<f64> {
        let mut max: HashMap<usize, f64> = HashMap::new();
        for (i, &v) in x.iter().enumerate() {
            let m = max.entry(group(i)).or_insert(f64::NEG_INFINITY);
            *m = m.max(v as f64);
        }
        let mut sum: HashMap<usize, f64> = HashMap::new();
        for (i, &v) in x.iter().enumerate() {
            *sum.entry(group(i)).or_insert(0.0) += (v as f64 - max[&group(i)]).exp();
        }
        x.iter().enumerate().map(|(i, &v)| (v as f64 - max[&group(i)]).exp() / sum[&group(i)]).collect()
    }

    #[test]
    fn softmax_matches_reference() {
        let shape = [2, 3, 4];
        // Large values: only a max-subtracting softmax stays finite.
        let x: Vec<f32> = values(24, 11).iter().map(|v| v * 200.0).collect();
        let input = || vec![Tensor::f32(shape.to_vec(), x.clone()).unwrap()];
        let cases: Vec<(i64, Option<i64>, Box<dyn Fn(usize) -> usize>)> = vec![
            // Opset 11, default axis 1: the last two axes flattened together.
            (11, None, Box::new(|i| i / 12)),
            (11, Some(2), Box::new(|i| i / 4)),
            (11, Some(0), Box::new(|_| 0)),
            (11, Some(-2), Box::new(|i| i / 12)),
            // Opset 13: one axis; default -1.
            (13, None, Box::new(|i| i / 4)),
            (13, Some(1), Box::new(|i| (i / 12) * 4 + i % 4)),
            (13, Some(0), Box::new(|i| i % 12)),
            (13, Some(-2), Box::new(|i| (i / 12) * 4 + i % 4)),
        ];
        for (opset, axis, group) in cases {
            let attrs = axis.map(|a| vec![("axis", Attribute::Int(a))]).unwrap_or_default();
            let op = softmax(SoftmaxKind::Softmax, &node("Softmax", attrs, 1), opset).unwrap();
            let want = reference_softmax(&x, group);
            for threads in [1, 2] {
                let got = eval(op.as_ref(), &input(), threads);
                close(got[0].as_f32().unwrap(), &want);
            }
        }
        // A large input for the parallel path, along a middle axis.
        let big_shape = [4, 64, 32, 8];
        let big = values(big_shape.iter().product(), 5);
        let op = softmax(SoftmaxKind::Softmax, &node("Softmax", vec![("axis", Attribute::Int(2))], 1), 13).unwrap();
        let want = reference_softmax(&big, |i| (i / (32 * 8)) * 8 + i % 8);
        close(eval(op.as_ref(), &[Tensor::f32(big_shape.to_vec(), big).unwrap()], 2)[0].as_f32().unwrap(), &want);
        let op = softmax(SoftmaxKind::Softmax, &node("Softmax", vec![("axis", Attribute::Int(3))], 1), 13).unwrap();
        assert!(matches!(op.infer(&[Some(&Fact::new(DataType::F32, vec![Dim::Unknown; 3]))]), Err(OpError::Attribute { .. })));
    }
}
