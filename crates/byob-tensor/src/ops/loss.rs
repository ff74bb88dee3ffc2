//! NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss (the former of
//! LogSoftmax over axis 1), with class weights, `ignore_index` and the
//! `none`, `sum` and `mean` reductions. Computed in f64.

use super::{output, required, Attrs, Builder, Fact, Op, OpError};
use crate::model::{Dim, Node};
use crate::tensor::{DataType, Tensor};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Reduction {
    None,
    Sum,
    Mean,
}

#[derive(Debug)]
struct Loss {
    /// SoftmaxCrossEntropyLoss: the input is scores, not log-probabilities.
    softmax: bool,
    reduction: Reduction,
    ignore_index: Option<i64>,
}

fn floats(t: &Tensor, index: usize) -> Result<Vec<f64>, OpError> {
    match t.dtype() {
        DataType::F32 | DataType::F64 | DataType::F16 => Ok(crate::dispatch!(t.dtype(), T => t.elements::<T>().unwrap_or_default().iter().map(|v| v.to_f64()).collect())),
        other => Err(OpError::input(index, format!("expected a float type, got {other}"))),
    }
}

/// Log-softmax over axis 1 of an [n, c, d] block.
fn log_softmax(x: &mut [f64], n: usize, c: usize, d: usize) {
    for i in 0..n {
        for k in 0..d {
            let at = |j: usize| (i * c + j) * d + k;
            let max = (0..c).map(|j| x[at(j)]).fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = (0..c).map(|j| (x[at(j)] - max).exp()).sum();
            let shift = max + sum.ln();
            (0..c).for_each(|j| x[at(j)] -= shift);
        }
    }
}

impl Op for Loss {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        if x.shape.len() < 2 {
            return Err(OpError::input(0, format!("expected shape [N, C, ...], got rank {}", x.shape.len())));
        }
        let mut per_element: Vec<Dim> = x.shape.clone();
        per_element.remove(1);
        let loss = if self.reduction == Reduction::None { per_element } else { vec![] };
        let mut facts = vec![Fact::new(x.dtype, loss)];
        if self.softmax {
            facts.push(Fact::new(x.dtype, x.shape.clone()));
        }
        Ok(facts)
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let (x, target) = (required(inputs, 0)?, required(inputs, 1)?);
        let shape = x.shape();
        if shape.len() < 2 {
            return Err(OpError::input(0, format!("expected shape [N, C, ...], got {shape:?}")));
        }
        let (n, c, d) = (shape[0], shape[1], shape[2..].iter().product::<usize>());
        let mut expected = shape.to_vec();
        expected.remove(1);
        if target.shape() != expected {
            return Err(OpError::input(1, format!("targets of shape {:?} do not match scores {shape:?}", target.shape())));
        }
        let labels = target.to_i64_vec().filter(|_| target.dtype() != DataType::Bool).ok_or_else(|| OpError::input(1, format!("targets must be integers, got {}", target.dtype())))?;
        let weights = inputs.get(2).copied().flatten().map(|w| floats(w, 2)).transpose()?;
        if weights.as_ref().is_some_and(|w| w.len() != c) {
            return Err(OpError::input(2, format!("weights must hold one value per class ({c})")));
        }
        let mut log_p = floats(x, 0)?;
        if self.softmax {
            log_softmax(&mut log_p, n, c, d);
        }
        let mut losses = vec![0.0f64; n * d];
        let (mut weight_sum, mut total) = (0.0f64, 0.0f64);
        for i in 0..n {
            for k in 0..d {
                let label = labels[i * d + k];
                if Some(label) == self.ignore_index {
                    continue;
                }
                let class = usize::try_from(label).ok().filter(|&l| l < c).ok_or_else(|| OpError::input(1, format!("target {label} is not a class in 0..{c}")))?;
                let w = weights.as_ref().map_or(1.0, |w| w[class]);
                let loss = -log_p[(i * c + class) * d + k] * w;
                losses[i * d + k] = loss;
                total += loss;
                weight_sum += w;
            }
        }
        let dtype = x.dtype();
        let out = output(outputs, 0)?;
        let (values, out_shape): (Vec<f64>, Vec<usize>) = match self.reduction {
            Reduction::None => (losses, expected),
            Reduction::Sum => (vec![total], vec![]),
            Reduction::Mean => (vec![total / weight_sum], vec![]),
        };
        crate::dispatch!(dtype, T => out.reset_as::<T>(&out_shape)?.iter_mut().zip(&values).for_each(|(o, &v)| *o = T::from_f64(v)));
        if self.softmax {
            if let Some(log_prob) = outputs.get_mut(1) {
                crate::dispatch!(dtype, T => log_prob.reset_as::<T>(shape)?.iter_mut().zip(&log_p).for_each(|(o, &v)| *o = T::from_f64(v)));
            }
        }
        Ok(())
    }
}

fn loss(softmax: bool, node: &Node) -> Result<Box<dyn Op>, OpError> {
    let a = Attrs(node);
    let reduction = match a.string("reduction", "mean")?.as_str() {
        "none" => Reduction::None,
        "sum" => Reduction::Sum,
        "mean" => Reduction::Mean,
        other => return Err(OpError::attribute("reduction", format!("{other:?} is not none, sum or mean"))),
    };
    let ignore_index = a.get("ignore_index").map(|_| a.int("ignore_index", 0)).transpose()?;
    Ok(Box::new(Loss { softmax, reduction, ignore_index }))
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("NegativeLogLikelihoodLoss", |n, _| loss(false, n));
    ops.insert("SoftmaxCrossEntropyLoss", |n, _| loss(true, n));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two samples of three classes, weighted mean, against the formula.
    #[test]
    fn weighted_mean_nll() {
        let threads = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let x = Tensor::f32(vec![2, 3], vec![-1.0, -2.0, -3.0, -0.5, -1.5, -2.5]).unwrap();
        let t = Tensor::i64(vec![2], vec![2, 0]).unwrap();
        let w = Tensor::f32(vec![3], vec![0.5, 1.0, 2.0]).unwrap();
        let op = Loss { softmax: false, reduction: Reduction::Mean, ignore_index: None };
        let out = op.eval_new(&[Some(&x), Some(&t), Some(&w)], 1, &threads).unwrap();
        let want = (3.0 * 2.0 + 0.5 * 0.5) / (2.0 + 0.5);
        assert!((out[0].as_f32().unwrap()[0] as f64 - want).abs() < 1e-6);
    }
}
