//! Normalisations over each sample's own statistics, accumulated in f64:
//! LayerNormalization (opset 17) and RMSNormalization (opset 23) over the
//! axes from `axis` on; InstanceNormalization per channel;
//! GroupNormalization per group of channels (scale and bias per group in
//! opset 18, per channel from 21); MeanVarianceNormalization over any axes;
//! LpNormalization along one axis.

use crate::kernels::sums;
use super::compare::broadcast_walk;
use super::linalg::{f32_fact, f32_input, optional_f32_input};
use super::{output, Attrs, Builder, Fact, Op, OpError};
use crate::model::{Dim, Node};
use crate::tensor::{DataType, Tensor};
use std::collections::HashMap;

#[derive(Debug)]
struct Normalize {
    /// RMSNormalization: no mean subtracted, no bias, no statistics outputs.
    rms: bool,
    axis: i64,
    epsilon: f32,
}

impl Normalize {
    fn axis(&self, rank: usize) -> Result<usize, OpError> {
        super::axes::normalize_axis(self.axis, rank).ok_or_else(|| OpError::attribute("axis", format!("{} is out of range for rank {rank}", self.axis)))
    }

    /// Values of a scale or bias for each element of `shape` (broadcast
    /// from the right, as the operator's definition allows): for one row
    /// (the normalized axes from `axis` on) when they span no leading
    /// axis, as they do in every model seen, else for the whole input.
    fn spread<'a>(values: &'a [f32], values_shape: &[usize], shape: &[usize], axis: usize, index: usize) -> Result<std::borrow::Cow<'a, [f32]>, OpError> {
        super::binary::broadcast_shapes(values_shape, shape).ok().filter(|s| s[..] == *shape).ok_or_else(|| OpError::input(index, format!("shape {values_shape:?} does not broadcast to the input's {shape:?}")))?;
        let leading = values_shape.len().saturating_sub(shape.len() - axis);
        let target = if values_shape[..leading].iter().all(|&d| d == 1) { &shape[axis..] } else { shape };
        let inner = &values_shape[leading..];
        if target == &shape[axis..] && inner == target {
            return Ok(std::borrow::Cow::Borrowed(values));
        }
        let source = if target.len() < shape.len() { inner } else { values_shape };
        let mut out = vec![0.0; target.iter().product()];
        broadcast_walk([source], target, |o, [i]| out[o] = values[i]);
        Ok(std::borrow::Cow::Owned(out))
    }
}

impl Op for Normalize {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = f32_fact(inputs, 0)?;
        let axis = self.axis(x.shape.len())?;
        let stats: Vec<Dim> = x.shape.iter().enumerate().map(|(d, dim)| if d < axis { dim.clone() } else { Dim::Known(1) }).collect();
        let outputs = if self.rms { 1 } else { 3 };
        Ok([Fact::new(DataType::F32, x.shape.clone())].into_iter().chain(std::iter::repeat_n(Fact::new(DataType::F32, stats), outputs - 1)).collect())
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let (shape, x) = f32_input(inputs, 0)?;
        let axis = self.axis(shape.len())?;
        let (scale_shape, scale) = f32_input(inputs, 1)?;
        let scale = Self::spread(scale, scale_shape, shape, axis, 1)?;
        let bias = match optional_f32_input(inputs, 2)? {
            Some((bias_shape, bias)) if !self.rms => Some(Self::spread(bias, bias_shape, shape, axis, 2)?),
            _ => None,
        };
        let row: usize = shape[axis..].iter().product();
        let rows = shape[..axis].iter().product::<usize>();
        let mut stats_shape = shape[..axis].to_vec();
        stats_shape.resize(shape.len(), 1);
        let mut means = vec![0.0f32; rows];
        let mut inv_std = vec![0.0f32; rows];
        let y = output(outputs, 0)?.reset_f32(shape)?;
        if row > 0 {
            // Scale and bias repeat every row unless they reach into the
            // leading axes (then they were spread over the whole input).
            let (scale_step, bias_step) = (if scale.len() == row { 0 } else { row }, if bias.as_ref().is_some_and(|b| b.len() == row) { 0 } else { row });
            for r in 0..rows {
                let xs = &x[r * row..][..row];
                let (mean, inv) = if self.rms { (0.0, 1.0 / (sums::sum_by(xs, |v| v * v) / row as f64 + self.epsilon as f64).sqrt()) } else { sums::mean_and_inv_std(xs, self.epsilon as f64) };
                (means[r], inv_std[r]) = (mean as f32, inv as f32);
                let (mean, inv) = (mean as f32, inv as f32);
                let ys = &mut y[r * row..][..row];
                let scale = &scale[r * scale_step..][..row];
                match &bias {
                    Some(b) => {
                        let b = &b[r * bias_step..][..row];
                        ys.iter_mut().zip(xs).zip(scale).zip(b).for_each(|(((y, &x), &s), &b)| *y = (x - mean) * inv * s + b);
                    }
                    None => ys.iter_mut().zip(xs).zip(scale).for_each(|((y, &x), &s)| *y = (x - mean) * inv * s),
                }
            }
        }
        for (k, stats) in [means, inv_std].into_iter().enumerate() {
            if let Some(out) = outputs.get_mut(k + 1) {
                out.reset_f32(&stats_shape)?.copy_from_slice(&stats);
            }
        }
        Ok(())
    }
}

/// `(x - mean) / sqrt(variance + epsilon)` over each contiguous row.
fn standardize_rows(x: &[f32], row: usize, epsilon: f64, mut each: impl FnMut(usize, usize, f64)) {
    for (r, xs) in x.chunks(row.max(1)).enumerate() {
        let (mean, inv) = sums::mean_and_inv_std(xs, epsilon);
        xs.iter().enumerate().for_each(|(k, &v)| each(r, k, (v as f64 - mean) * inv));
    }
}

/// InstanceNormalization and GroupNormalization: channels in groups
/// (one group per channel for InstanceNormalization).
#[derive(Debug)]
struct GroupNorm {
    /// `None`: one group per channel.
    groups: Option<usize>,
    epsilon: f32,
    /// Opset 18's GroupNormalization scales and shifts per group.
    per_group_affine: bool,
}

impl Op for GroupNorm {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = f32_fact(inputs, 0)?;
        Ok(vec![Fact::new(DataType::F32, x.shape.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let (shape, x) = f32_input(inputs, 0)?;
        if shape.len() < 2 {
            return Err(OpError::input(0, format!("expected [N, C, ...], got {shape:?}")));
        }
        let (channels, spatial) = (shape[1], shape[2..].iter().product::<usize>());
        let groups = self.groups.unwrap_or(channels);
        if groups == 0 || channels % groups != 0 {
            return Err(OpError::attribute("num_groups", format!("{groups} groups do not divide {channels} channels")));
        }
        let (_, scale) = f32_input(inputs, 1)?;
        let (_, bias) = f32_input(inputs, 2)?;
        let affine = if self.per_group_affine { groups } else { channels };
        if scale.len() != affine || bias.len() != affine {
            return Err(OpError::input(1, format!("scale and bias must hold {affine} values")));
        }
        let per_group = channels / groups * spatial;
        let y = output(outputs, 0)?.reset_f32(shape)?;
        standardize_rows(x, per_group, self.epsilon as f64, |r, k, v| {
            let group = r % groups;
            let a = if self.per_group_affine { group } else { group * (channels / groups) + k / spatial.max(1) };
            y[r * per_group + k] = (v * scale[a] as f64 + bias[a] as f64) as f32;
        });
        Ok(())
    }
}

/// MeanVarianceNormalization: `(x - mean) / (sqrt(E[x²] - mean²) + 1e-9)`
/// over `axes`, as the operator's function body computes it.
#[derive(Debug)]
struct MeanVariance {
    axes: Vec<i64>,
}

impl Op for MeanVariance {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = f32_fact(inputs, 0)?;
        Ok(vec![Fact::new(DataType::F32, x.shape.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let (shape, x) = f32_input(inputs, 0)?;
        let axes = super::axes::unique_axes(&self.axes, shape.len()).map_err(|e| OpError::attribute("axes", e))?;
        let reduced: Vec<bool> = (0..shape.len()).map(|d| axes.contains(&d)).collect();
        let walk = super::reduce::Walk::new(shape, &reduced);
        let (mut sum, mut squares) = (vec![0.0f64; walk.outputs], vec![0.0f64; walk.outputs]);
        walk.each(x, |o, v| {
            sum[o] += v as f64;
            squares[o] += (v as f64).powi(2);
        });
        let n = walk.count as f64;
        let y = output(outputs, 0)?.reset_f32(shape)?;
        let mut k = 0;
        walk.each(x, |o, v| {
            let mean = sum[o] / n;
            y[k] = ((v as f64 - mean) / ((squares[o] / n - mean * mean).max(0.0).sqrt() + 1e-9)) as f32;
            k += 1;
        });
        Ok(())
    }
}

/// LpNormalization: x divided by its L1 or L2 norm along `axis` (0 where
/// the norm is 0).
#[derive(Debug)]
struct LpNorm {
    axis: i64,
    p: i64,
}

impl Op for LpNorm {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = f32_fact(inputs, 0)?;
        Ok(vec![Fact::new(DataType::F32, x.shape.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let (shape, x) = f32_input(inputs, 0)?;
        let axis = super::axes::normalize_axis(self.axis, shape.len()).ok_or_else(|| OpError::attribute("axis", format!("{} is out of range for rank {}", self.axis, shape.len())))?;
        let (len, inner) = (shape[axis], shape[axis + 1..].iter().product::<usize>());
        let y = output(outputs, 0)?.reset_f32(shape)?;
        for o in 0..x.len() / (len * inner).max(1) {
            for i in 0..inner {
                let at = |j: usize| (o * len + j) * inner + i;
                let norm = match self.p {
                    1 => (0..len).map(|j| (x[at(j)] as f64).abs()).sum::<f64>(),
                    _ => (0..len).map(|j| (x[at(j)] as f64).powi(2)).sum::<f64>().sqrt(),
                };
                (0..len).for_each(|j| y[at(j)] = if norm == 0.0 { 0.0 } else { (x[at(j)] as f64 / norm) as f32 });
            }
        }
        Ok(())
    }
}

fn normalize(rms: bool, node: &Node) -> Result<Box<dyn Op>, OpError> {
    let a = Attrs(node);
    Ok(Box::new(Normalize { rms, axis: a.int("axis", -1)?, epsilon: a.float("epsilon", 1e-5)? }))
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("LayerNormalization", |n, _| normalize(false, n));
    ops.insert("RMSNormalization", |n, _| normalize(true, n));
    ops.insert("InstanceNormalization", |n, _| Ok(Box::new(GroupNorm { groups: None, epsilon: Attrs(n).float("epsilon", 1e-5)?, per_group_affine: false })));
    ops.insert("GroupNormalization", |n, opset| {
        let a = Attrs(n);
        let groups = a.int("num_groups", 0)?;
        let groups = usize::try_from(groups).ok().filter(|&g| g > 0).ok_or_else(|| OpError::attribute("num_groups", format!("{groups} must be positive")))?;
        Ok(Box::new(GroupNorm { groups: Some(groups), epsilon: a.float("epsilon", 1e-5)?, per_group_affine: opset < 21 }))
    });
    ops.insert("MeanVarianceNormalization", |n, _| Ok(Box::new(MeanVariance { axes: Attrs(n).ints("axes")?.unwrap_or_else(|| vec![0, 2, 3]) })));
    ops.insert("LpNormalization", |n, _| {
        let a = Attrs(n);
        let p = a.int("p", 2)?;
        if p != 1 && p != 2 {
            return Err(OpError::attribute("p", format!("{p} is neither 1 nor 2")));
        }
        Ok(Box::new(LpNorm { axis: a.int("axis", -1)?, p }))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row of four against the formula in f64, with the statistics.
    #[test]
    fn layer_norm_matches_the_formula() {
        let threads = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let x = Tensor::f32(vec![1, 4], vec![1.0, 2.0, 4.0, 9.0]).unwrap();
        let scale = Tensor::f32(vec![4], vec![1.0, 0.5, 2.0, 1.0]).unwrap();
        let bias = Tensor::f32(vec![1], vec![0.25]).unwrap();
        let op = Normalize { rms: false, axis: -1, epsilon: 1e-5 };
        let out = op.eval_new(&[Some(&x), Some(&scale), Some(&bias)], 3, &threads).unwrap();
        let (mean, var) = (4.0f64, (9.0 + 4.0 + 0.0 + 25.0) / 4.0);
        let inv = 1.0 / (var + 1e-5f64).sqrt();
        let want: Vec<f64> = [1.0, 2.0, 4.0, 9.0].iter().zip([1.0, 0.5, 2.0, 1.0]).map(|(v, s)| (v - mean) * inv * s + 0.25).collect();
        for (g, w) in out[0].as_f32().unwrap().iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
        }
        assert_eq!((out[1].shape(), out[1].as_f32().unwrap()), (&[1, 1][..], &[4.0][..]));
        assert!((out[2].as_f32().unwrap()[0] as f64 - inv).abs() < 1e-6);
    }
}
