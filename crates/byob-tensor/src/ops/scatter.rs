//! Element-wise and N-dimensional indexing: GatherElements, ScatterElements,
//! GatherND and ScatterND (with the add, mul, max and min reductions).
//! Negative indices count from the end; an index outside its axis is an
//! error naming it.

use super::axes::normalize_axis;
use super::{output, required, Attrs, Builder, Fact, Op, OpError};
use crate::element::Element;
use crate::model::{Dim, Node};
use crate::tensor::Tensor;
use std::collections::HashMap;

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// An index into an axis of `dim`, negatives from the end.
fn checked_index(i: i64, dim: usize, input: usize) -> Result<usize, OpError> {
    let j = if i < 0 { i + dim as i64 } else { i };
    usize::try_from(j).ok().filter(|&j| j < dim).ok_or_else(|| OpError::input(input, format!("index {i} is out of range for an axis of {dim}")))
}

fn indices(t: &Tensor, input: usize) -> Result<Vec<i64>, OpError> {
    t.to_i64_vec().filter(|_| matches!(t.dtype(), crate::tensor::DataType::I64 | crate::tensor::DataType::I32)).ok_or_else(|| OpError::input(input, format!("indices must be int32 or int64, got {}", t.dtype())))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Reduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

impl Reduction {
    fn parse(node: &Node) -> Result<Self, OpError> {
        Ok(match Attrs(node).string("reduction", "none")?.as_str() {
            "none" => Self::None,
            "add" => Self::Add,
            "mul" => Self::Mul,
            "max" => Self::Max,
            "min" => Self::Min,
            other => return Err(OpError::attribute("reduction", format!("{other:?} is not none, add, mul, max or min"))),
        })
    }

    fn apply<T: Element>(self, old: T, new: T) -> T {
        match self {
            Self::None => new,
            Self::Add => T::from_f64(old.to_f64() + new.to_f64()),
            Self::Mul => T::from_f64(old.to_f64() * new.to_f64()),
            Self::Max if new > old => new,
            Self::Min if new < old => new,
            _ => old,
        }
    }
}

/// For each element of a tensor of `shape` (row-major), the flat offset in
/// a tensor of `target` shape whose coordinates match except on `axis`,
/// where `index` gives it.
fn element_offsets(shape: &[usize], target: &[usize], axis: usize, index: &[i64], input: usize) -> Result<Vec<usize>, OpError> {
    let (ts, s) = (strides(target), strides(shape));
    index
        .iter()
        .enumerate()
        .map(|(flat, &i)| {
            let mut offset = 0;
            for d in 0..shape.len() {
                let coordinate = (flat / s[d]) % shape[d];
                let c = if d == axis { checked_index(i, target[d], input)? } else { coordinate };
                if c >= target[d] {
                    return Err(OpError::input(input, format!("indices of shape {shape:?} reach past the data's {target:?}")));
                }
                offset += c * ts[d];
            }
            Ok(offset)
        })
        .collect()
}

/// GatherElements and ScatterElements along `axis`.
#[derive(Debug)]
struct Elements {
    scatter: Option<Reduction>,
    axis: i64,
}

impl Op for Elements {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let (data, index) = (required(inputs, 0)?, required(inputs, 1)?);
        let shape: Vec<Dim> = if self.scatter.is_some() { data.shape.clone() } else { index.shape.clone() };
        Ok(vec![Fact::new(data.dtype, shape)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let (data, index) = (required(inputs, 0)?, required(inputs, 1)?);
        if data.rank() != index.rank() {
            return Err(OpError::input(1, format!("indices of rank {} for data of rank {}", index.rank(), data.rank())));
        }
        let axis = normalize_axis(self.axis, data.rank()).ok_or_else(|| OpError::attribute("axis", format!("{} is out of range for rank {}", self.axis, data.rank())))?;
        let offsets = element_offsets(index.shape(), data.shape(), axis, &indices(index, 1)?, 1)?;
        let out = output(outputs, 0)?;
        match self.scatter {
            None => crate::dispatch!(data.dtype(), T => {
                let d = data.elements::<T>().unwrap_or_default();
                out.reset_as::<T>(index.shape())?.iter_mut().zip(&offsets).for_each(|(o, &at)| *o = d[at]);
            }),
            Some(reduction) => {
                let updates = required(inputs, 2)?;
                if updates.shape() != index.shape() || updates.dtype() != data.dtype() {
                    return Err(OpError::input(2, format!("updates must be {} of the indices' shape {:?}", data.dtype(), index.shape())));
                }
                out.copy_from(data.shape(), data.data())?;
                crate::dispatch!(data.dtype(), T => {
                    let (u, o) = (updates.elements::<T>().unwrap_or_default(), T::slice_mut(out.data_mut()).expect("copied"));
                    offsets.iter().zip(u).for_each(|(&at, &v)| o[at] = reduction.apply(o[at], v));
                });
            }
        }
        Ok(())
    }
}

/// GatherND and ScatterND: the last axis of `indices` addresses the
/// leading axes of the data (after `batch_dims` shared ones).
#[derive(Debug)]
struct Nd {
    scatter: Option<Reduction>,
    batch_dims: usize,
}

impl Nd {
    /// The data offsets of each addressed slice, and the slice's length.
    fn slices(&self, data: &Tensor, index: &Tensor) -> Result<(Vec<usize>, usize), OpError> {
        let (ds, is) = (data.shape(), index.shape());
        let b = self.batch_dims;
        let k = *is.last().ok_or_else(|| OpError::input(1, "indices must have rank 1 or more"))?;
        if b >= is.len() || b + k > ds.len() || ds[..b] != is[..b] {
            return Err(OpError::input(1, format!("indices {is:?} cannot address data {ds:?} with batch_dims {b}")));
        }
        let slice: usize = ds[b + k..].iter().product();
        let dstrides = strides(ds);
        let per_batch: usize = is[b..is.len() - 1].iter().product();
        let batch_size: usize = ds[b..].iter().product();
        let values = indices(index, 1)?;
        let mut offsets = Vec::with_capacity(values.len() / k.max(1));
        for (t, tuple) in values.chunks(k.max(1)).enumerate().take(is[..is.len() - 1].iter().product()) {
            // Tuples of one batch address that batch's part of the data.
            let mut offset = (t / per_batch.max(1)) * batch_size;
            for (d, &i) in tuple.iter().take(k).enumerate() {
                offset += checked_index(i, ds[b + d], 1)? * dstrides[b + d];
            }
            offsets.push(offset);
        }
        Ok((offsets, slice))
    }
}

impl Op for Nd {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let (data, index) = (required(inputs, 0)?, required(inputs, 1)?);
        if self.scatter.is_some() {
            return Ok(vec![Fact::new(data.dtype, data.shape.clone())]);
        }
        let Some(Dim::Known(k)) = index.shape.last() else { return Ok(vec![]) };
        let mut shape = index.shape[..index.shape.len() - 1].to_vec();
        shape.extend(data.shape.iter().skip(self.batch_dims + k).cloned());
        Ok(vec![Fact::new(data.dtype, shape)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let (data, index) = (required(inputs, 0)?, required(inputs, 1)?);
        let (offsets, slice) = self.slices(data, index)?;
        let out = output(outputs, 0)?;
        let k = index.shape()[index.rank() - 1];
        match self.scatter {
            None => {
                let mut shape = index.shape()[..index.rank() - 1].to_vec();
                shape.extend_from_slice(&data.shape()[self.batch_dims + k..]);
                crate::dispatch!(data.dtype(), T => {
                    let d = data.elements::<T>().unwrap_or_default();
                    let o = out.reset_as::<T>(&shape)?;
                    o.chunks_mut(slice.max(1)).zip(&offsets).for_each(|(o, &at)| o.copy_from_slice(&d[at..at + o.len()]));
                });
            }
            Some(reduction) => {
                let updates = required(inputs, 2)?;
                if updates.len() != offsets.len() * slice || updates.dtype() != data.dtype() {
                    return Err(OpError::input(2, format!("updates of shape {:?} do not fill the addressed slices", updates.shape())));
                }
                out.copy_from(data.shape(), data.data())?;
                crate::dispatch!(data.dtype(), T => {
                    let (u, o) = (updates.elements::<T>().unwrap_or_default(), T::slice_mut(out.data_mut()).expect("copied"));
                    for (&at, u) in offsets.iter().zip(u.chunks(slice.max(1))) {
                        o[at..at + u.len()].iter_mut().zip(u).for_each(|(o, &v)| *o = reduction.apply(*o, v));
                    }
                });
            }
        }
        Ok(())
    }
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("GatherElements", |n, _| Ok(Box::new(Elements { scatter: None, axis: Attrs(n).int("axis", 0)? })));
    ops.insert("ScatterElements", |n, _| Ok(Box::new(Elements { scatter: Some(Reduction::parse(n)?), axis: Attrs(n).int("axis", 0)? })));
    // Scatter (opsets 9 and 10) is ScatterElements without reductions.
    ops.insert("Scatter", |n, _| Ok(Box::new(Elements { scatter: Some(Reduction::None), axis: Attrs(n).int("axis", 0)? })));
    ops.insert("GatherND", |n, _| {
        let b = Attrs(n).int("batch_dims", 0)?;
        Ok(Box::new(Nd { scatter: None, batch_dims: usize::try_from(b).map_err(|_| OpError::attribute("batch_dims", format!("{b} is negative")))? }))
    });
    ops.insert("ScatterND", |n, _| Ok(Box::new(Nd { scatter: Some(Reduction::parse(n)?), batch_dims: 0 })));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operator definitions' examples.
    #[test]
    fn gather_elements_and_gather_nd() {
        let threads = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let data = Tensor::f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let index = Tensor::i64(vec![2, 2], vec![0, 0, 1, 0]).unwrap();
        let op = Elements { scatter: None, axis: 1 };
        assert_eq!(op.eval_new(&[Some(&data), Some(&index)], 1, &threads).unwrap()[0].as_f32().unwrap(), &[1.0, 1.0, 4.0, 3.0]);
        let index = Tensor::i64(vec![2, 1], vec![1, 0]).unwrap();
        let nd = Nd { scatter: None, batch_dims: 0 };
        assert_eq!(nd.eval_new(&[Some(&data), Some(&index)], 1, &threads).unwrap()[0].as_f32().unwrap(), &[3.0, 4.0, 1.0, 2.0]);
        let bad = Tensor::i64(vec![2, 1], vec![2, 0]).unwrap();
        assert!(nd.eval_new(&[Some(&data), Some(&bad)], 1, &threads).is_err());
    }
}
