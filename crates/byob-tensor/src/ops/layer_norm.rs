//! LayerNormalization (opset 17) and RMSNormalization (opset 23): each
//! row of the axes from `axis` on normalised, then scaled (and shifted),
//! with statistics accumulated in f64.

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
    /// from the right, as the operator's definition allows).
    fn spread(values: &[f32], values_shape: &[usize], shape: &[usize], index: usize) -> Result<Vec<f32>, OpError> {
        super::binary::broadcast_shapes(values_shape, shape).ok().filter(|s| s == shape).ok_or_else(|| OpError::input(index, format!("shape {values_shape:?} does not broadcast to the input's {shape:?}")))?;
        let mut out = vec![0.0; shape.iter().product()];
        broadcast_walk([values_shape], shape, |o, [i]| out[o] = values[i]);
        Ok(out)
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
        let scale = Self::spread(scale, scale_shape, shape, 1)?;
        let bias = match optional_f32_input(inputs, 2)? {
            Some((bias_shape, bias)) if !self.rms => Some(Self::spread(bias, bias_shape, shape, 2)?),
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
            for r in 0..rows {
                let xs = &x[r * row..][..row];
                let mean = if self.rms { 0.0 } else { xs.iter().map(|&v| v as f64).sum::<f64>() / row as f64 };
                let variance = xs.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / row as f64;
                let inv = 1.0 / (variance + self.epsilon as f64).sqrt();
                (means[r], inv_std[r]) = (mean as f32, inv as f32);
                for k in 0..row {
                    let at = r * row + k;
                    let normalized = (x[at] as f64 - mean) * inv * scale[at] as f64;
                    y[at] = (normalized + bias.as_ref().map_or(0.0, |b| b[at] as f64)) as f32;
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

fn normalize(rms: bool, node: &Node) -> Result<Box<dyn Op>, OpError> {
    let a = Attrs(node);
    Ok(Box::new(Normalize { rms, axis: a.int("axis", -1)?, epsilon: a.float("epsilon", 1e-5)? }))
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("LayerNormalization", |n, _| normalize(false, n));
    ops.insert("RMSNormalization", |n, _| normalize(true, n));
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
