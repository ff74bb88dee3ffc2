//! Selections whose output size depends on the data or on a count: TopK,
//! NonZero, Compress, Unique.

use super::axes::{ints, normalize_axis};
use super::{output, required, Attrs, Builder, Fact, Op, OpError};
use crate::element::Element;
use crate::model::Dim;
use crate::tensor::{DataType, Tensor};
use std::collections::HashMap;

/// TopK: the k largest (or smallest) elements along an axis and their
/// indices, sorted when asked (ties keep the lower index first).
#[derive(Debug)]
struct TopK {
    axis: i64,
    largest: bool,
    /// Before opset 10: k from the attribute.
    k: Option<i64>,
}

fn top_k<T: Element>(x: &[T], len: usize, inner: usize, k: usize, largest: bool, values: &mut [T], indices: &mut [i64]) {
    let outer = x.len() / (len * inner).max(1);
    let mut order: Vec<usize> = Vec::with_capacity(len);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| x[(o * len + j) * inner + i];
            order.clear();
            order.extend(0..len);
            // NaN sorts as the largest, as numpy and ONNX Runtime do.
            let key = |a: usize, b: usize| {
                let (p, q) = (at(a), at(b));
                #[allow(clippy::eq_op)]
                let ordering = match (p != p, q != q) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ => p.partial_cmp(&q).unwrap_or(std::cmp::Ordering::Equal),
                };
                if largest { ordering.reverse() } else { ordering }.then(a.cmp(&b))
            };
            order.sort_by(|&a, &b| key(a, b));
            for (r, &j) in order.iter().take(k).enumerate() {
                let out = (o * k + r) * inner + i;
                values[out] = at(j);
                indices[out] = j as i64;
            }
        }
    }
}

impl Op for TopK {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        let axis = normalize_axis(self.axis, x.shape.len()).ok_or_else(|| OpError::attribute("axis", format!("{} is out of range for rank {}", self.axis, x.shape.len())))?;
        let k = match self.k {
            Some(k) => Some(k),
            None => inputs.get(1).copied().flatten().and_then(|f| f.value.as_ref()).and_then(|t| t.to_i64_vec()).and_then(|v| v.first().copied()),
        };
        let mut shape = x.shape.clone();
        shape[axis] = k.map_or(Dim::Unknown, |k| Dim::Known(k.max(0) as usize));
        Ok(vec![Fact::new(x.dtype, shape.clone()), Fact::new(DataType::I64, shape)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let axis = normalize_axis(self.axis, x.rank()).ok_or_else(|| OpError::attribute("axis", format!("{} is out of range for rank {}", self.axis, x.rank())))?;
        let k = match self.k {
            Some(k) => k,
            None => match ints(required(inputs, 1)?, 1, "k")?.as_slice() {
                [k] => *k,
                other => return Err(OpError::input(1, format!("k must be one integer, got {other:?}"))),
            },
        };
        let len = x.shape()[axis];
        let k = usize::try_from(k).ok().filter(|&k| k <= len).ok_or_else(|| OpError::input(1, format!("k = {k} must lie in 0..={len}")))?;
        let mut shape = x.shape().to_vec();
        shape[axis] = k;
        let inner = x.shape()[axis + 1..].iter().product::<usize>();
        let [values, indices] = outputs else { return Err(OpError::Arity("TopK has two outputs".into())) };
        let indices = indices.reset_as::<i64>(&shape)?;
        crate::dispatch!(x.dtype(), T => top_k::<T>(x.elements::<T>().unwrap_or_default(), len, inner, k, self.largest, values.reset_as::<T>(&shape)?, indices));
        Ok(())
    }
}

/// NonZero: the coordinates of the nonzero elements, [rank, count].
#[derive(Debug)]
struct NonZero;

impl Op for NonZero {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        Ok(vec![Fact::new(DataType::I64, vec![Dim::Known(x.shape.len()), Dim::Unknown])])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let nonzero: Vec<usize> = crate::dispatch!(x.dtype(), T => x.elements::<T>().unwrap_or_default().iter().enumerate().filter(|(_, v)| v.to_f64() != 0.0).map(|(i, _)| i).collect());
        let (rank, count) = (x.rank(), nonzero.len());
        let out = output(outputs, 0)?.reset_as::<i64>(&[rank, count])?;
        for (n, &flat) in nonzero.iter().enumerate() {
            let mut rest = flat;
            for d in (0..rank).rev() {
                out[d * count + n] = (rest % x.shape()[d]) as i64;
                rest /= x.shape()[d];
            }
        }
        Ok(())
    }
}

/// Compress: the slices along an axis (or elements of the flattened input)
/// whose condition is true.
#[derive(Debug)]
struct Compress {
    axis: Option<i64>,
}

impl Op for Compress {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        let rank = if self.axis.is_some() { x.shape.len() } else { 1 };
        Ok(vec![Fact::new(x.dtype, vec![Dim::Unknown; rank])])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let (x, c) = (required(inputs, 0)?, required(inputs, 1)?);
        let condition = c.elements::<bool>().ok_or_else(|| OpError::input(1, format!("the condition must be bool, got {}", c.dtype())))?;
        let (shape, axis) = match self.axis {
            Some(a) => (x.shape().to_vec(), normalize_axis(a, x.rank()).ok_or_else(|| OpError::attribute("axis", format!("{a} is out of range for rank {}", x.rank())))?),
            None => (vec![x.len()], 0),
        };
        let kept: Vec<usize> = condition.iter().take(shape[axis]).enumerate().filter(|(_, &c)| c).map(|(i, _)| i).collect();
        let mut maps: crate::kernels::index_map::AxisMaps = shape.iter().map(|&d| (0..d).map(Some).collect()).collect();
        maps[axis] = kept.into_iter().map(Some).collect();
        let mut flat = x.clone();
        flat.reshape(shape)?;
        super::slice::copy_mapped(&flat, &maps, output(outputs, 0)?)
    }
}

/// Unique: the distinct elements (or slices along `axis`), sorted or in
/// order of first appearance, with where each first appears, which one
/// each input element (or slice) is, and how often each occurs.
#[derive(Debug)]
struct Unique {
    axis: Option<i64>,
    sorted: bool,
}

impl Op for Unique {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        let rank = if self.axis.is_some() { x.shape.len() } else { 1 };
        let unknown = |dtype| Fact::new(dtype, vec![Dim::Unknown; rank]);
        Ok(vec![unknown(x.dtype), Fact::new(DataType::I64, vec![Dim::Unknown]), Fact::new(DataType::I64, vec![Dim::Unknown]), Fact::new(DataType::I64, vec![Dim::Unknown])])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let (shape, axis) = match self.axis {
            Some(a) => (x.shape().to_vec(), normalize_axis(a, x.rank()).ok_or_else(|| OpError::attribute("axis", format!("{a} is out of range for rank {}", x.rank())))?),
            None => (vec![x.len()], 0),
        };
        let (len, inner) = (shape[axis], shape[axis + 1..].iter().product::<usize>());
        let outer = shape[..axis].iter().product::<usize>();
        // Slice k's elements, as f64 bit patterns compared by value.
        let values: Vec<f64> = crate::dispatch!(x.dtype(), T => x.elements::<T>().unwrap_or_default().iter().map(|v| v.to_f64()).collect());
        let slice = |k: usize| -> Vec<f64> { (0..outer).flat_map(|o| values[(o * len + k) * inner..][..inner].to_vec()).collect() };
        let slices: Vec<Vec<f64>> = (0..len).map(slice).collect();
        let mut order: Vec<usize> = Vec::new();
        let mut inverse = vec![0usize; len];
        for k in 0..len {
            match order.iter().position(|&u| slices[u] == slices[k]) {
                Some(u) => inverse[k] = u,
                None => {
                    inverse[k] = order.len();
                    order.push(k);
                }
            }
        }
        // Sorting renumbers the unique slices.
        let mut rank_of: Vec<usize> = (0..order.len()).collect();
        if self.sorted {
            let mut by_value: Vec<usize> = (0..order.len()).collect();
            by_value.sort_by(|&a, &b| slices[order[a]].partial_cmp(&slices[order[b]]).unwrap_or(std::cmp::Ordering::Equal));
            for (position, &u) in by_value.iter().enumerate() {
                rank_of[u] = position;
            }
            order = by_value.iter().map(|&u| order[u]).collect();
        }
        let counts: Vec<i64> = (0..order.len()).map(|u| inverse.iter().filter(|&&i| rank_of[i] == u).count() as i64).collect();
        let mut maps: crate::kernels::index_map::AxisMaps = shape.iter().map(|&d| (0..d).map(Some).collect()).collect();
        maps[axis] = order.iter().map(|&k| Some(k)).collect();
        let mut flat = x.clone();
        flat.reshape(shape)?;
        super::slice::copy_mapped(&flat, &maps, output(outputs, 0)?)?;
        let lists: [Vec<i64>; 3] = [order.iter().map(|&k| k as i64).collect(), inverse.iter().map(|&i| rank_of[i] as i64).collect(), counts];
        for (out, list) in outputs.iter_mut().skip(1).zip(lists) {
            out.reset_as::<i64>(&[list.len()])?.copy_from_slice(&list);
        }
        Ok(())
    }
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("Unique", |n, _| {
        let a = Attrs(n);
        Ok(Box::new(Unique { axis: a.get("axis").map(|_| a.int("axis", 0)).transpose()?, sorted: a.int("sorted", 1)? != 0 }))
    });
    ops.insert("TopK", |n, opset| {
        let a = Attrs(n);
        let k = if opset < 10 { Some(a.int("k", 0)?) } else { None };
        Ok(Box::new(TopK { axis: a.int("axis", -1)?, largest: a.int("largest", 1)? != 0, k }))
    });
    ops.insert("NonZero", |_, _| Ok(Box::new(NonZero)));
    ops.insert("Compress", |n, _| {
        let a = Attrs(n);
        Ok(Box::new(Compress { axis: a.get("axis").map(|_| a.int("axis", 0)).transpose()? }))
    });
}
