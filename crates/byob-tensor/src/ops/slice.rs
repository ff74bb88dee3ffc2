//! Slice and Split: parts of a tensor along its axes.
//!
//! Slice's starts, ends, axes and steps are attributes before opset 10 and
//! inputs after, clamped as the operator's definition says (a start or end
//! past the axis is clamped to it; negative values count from the end).
//! Split's sizes are an attribute before opset 13 and an input after;
//! opset 18's `num_outputs` splits into chunks of the rounded-up size.

use super::axes::{fact_ints, ints, normalize_axis, Ints};
use crate::kernels::index_map::{for_each_row, gather_mapped, mapped_shape, AxisMaps, TrailingBlocks};
use crate::kernels::row_major_strides;
use super::{output, required, show, Attrs, Builder, Fact, Op, OpError};
use crate::model::{Dim, Node};
use crate::tensor::Tensor;
use std::collections::HashMap;

/// Starts, ends, axes and steps of a Slice.
#[derive(Debug)]
struct Ranges {
    starts: Ints,
    ends: Ints,
    axes: Option<Ints>,
    steps: Option<Ints>,
}

impl Ranges {
    /// What each axis keeps: its first input coordinate, the step to the
    /// next and how many (on the stack: slicing allocates nothing).
    fn strided(&self, shape: &[usize]) -> Result<Strided, OpError> {
        let rank = shape.len();
        let n = self.starts.len();
        if self.ends.len() != n || self.axes.as_ref().is_some_and(|a| a.len() != n) || self.steps.as_ref().is_some_and(|s| s.len() != n) {
            return Err(OpError::Shape(format!("starts {}, ends {}, axes and steps must have one entry per sliced axis", show(&self.starts), show(&self.ends))));
        }
        let mut kept: Strided = shape.iter().map(|&d| (0, 1, d)).collect();
        let mut seen: smallvec::SmallVec<[bool; 8]> = smallvec::smallvec![false; rank];
        for k in 0..n {
            let axis = self.axes.as_ref().map_or(k as i64, |a| a[k]);
            let a = normalize_axis(axis, rank).ok_or_else(|| OpError::Shape(format!("axis {axis} is out of range for rank {rank}")))?;
            if std::mem::replace(&mut seen[a], true) {
                return Err(OpError::Shape(format!("axis {axis} is sliced twice")));
            }
            let step = self.steps.as_ref().map_or(1, |s| s[k]);
            if step == 0 {
                return Err(OpError::Shape(format!("step 0 on axis {axis}")));
            }
            let dim = shape[a] as i64;
            let from_end = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
            let (start, end) = (from_end(self.starts[k]), from_end(self.ends[k]));
            let (start, end) = if step > 0 { (start.clamp(0, dim), end.clamp(0, dim)) } else { (start.clamp(0, dim - 1), end.clamp(-1, dim - 1)) };
            // Coordinates start, start + step, … short of end.
            let span = if step > 0 { end - start } else { start - end };
            let count = if span <= 0 { 0 } else { (span - 1) as u64 / step.unsigned_abs() + 1 };
            kept[a] = (start.max(0) as usize, step as isize, count as usize);
        }
        Ok(kept)
    }
}

/// What Slice keeps of each axis of `shape` given its starts, ends, axes
/// and steps, clamped as the operator's definition says: per axis, the
/// first input coordinate, the step to the next and how many. For
/// providers that slice on their own, so that both keep the same elements.
pub fn kept_axes(shape: &[usize], starts: &[i64], ends: &[i64], axes: Option<&[i64]>, steps: Option<&[i64]>) -> Result<Vec<(usize, isize, usize)>, OpError> {
    let ranges = Ranges { starts: Ints::from_slice(starts), ends: Ints::from_slice(ends), axes: axes.map(Ints::from_slice), steps: steps.map(Ints::from_slice) };
    Ok(ranges.strided(shape)?.into_vec())
}

/// Per axis: the first input coordinate kept, the step, how many.
type Strided = smallvec::SmallVec<[(usize, isize, usize); 8]>;

/// Output `out` from `x` keeping what `kept` describes (see
/// [`Ranges::strided`]), a row of the last axis at a time.
fn copy_strided(x: &Tensor, kept: &Strided, out: &mut Tensor) -> Result<(), OpError> {
    let shape: super::axes::Dims = kept.iter().map(|k| k.2).collect();
    crate::dispatch!(x.dtype(), T => gather_strided::<T>(x.elements::<T>().unwrap_or_default(), x.shape(), kept, &shape, out.reset_as::<T>(&shape)?));
    Ok(())
}

fn gather_strided<T: Copy>(x: &[T], shape: &[usize], kept: &Strided, out_shape: &[usize], out: &mut [T]) {
    if shape.is_empty() {
        out.iter_mut().for_each(|o| *o = x[0]);
        return;
    }
    // Trailing axes kept whole move as blocks (a Slice of [.., T, 1] along
    // T copied one value a row before: most of basic-pitch's Slice time).
    let whole = |d: usize| kept[d].0 == 0 && kept[d].1 == 1 && kept[d].2 == shape[d];
    let Some(TrailingBlocks { axis, block, view }) = TrailingBlocks::new(shape, out_shape, whole) else { return };
    let strides = row_major_strides(shape);
    let (first, step, _) = kept[axis];
    let stride = strides[axis] as isize;
    for_each_row(&view, out, |index, row| {
        // Every coordinate lies within the input: `strided` clamped them.
        let base: isize = index.iter().enumerate().map(|(d, &i)| (kept[d].0 as isize + i as isize * kept[d].1) * strides[d] as isize).sum::<isize>() + first as isize * stride;
        if step == 1 {
            row.copy_from_slice(&x[base as usize..][..row.len()]);
        } else if block == 1 {
            row.iter_mut().enumerate().for_each(|(j, o)| *o = x[(base + j as isize * step * stride) as usize]);
        } else {
            row.chunks_exact_mut(block).enumerate().for_each(|(j, o)| o.copy_from_slice(&x[(base + j as isize * step * stride) as usize..][..block]));
        }
    });
}

#[derive(Debug)]
struct Slice {
    /// Before opset 10: the starts, ends and axes from attributes.
    attributes: Option<Ranges>,
}

/// An optional list of integers read from an input, or why it could not be.
type Integers = Result<Option<Ints>, OpError>;

impl Slice {
    fn ranges(&self, mut input: impl FnMut(usize, &str) -> Integers) -> Result<Option<Ranges>, OpError> {
        if let Some(r) = &self.attributes {
            return Ok(Some(Ranges { starts: r.starts.clone(), ends: r.ends.clone(), axes: r.axes.clone(), steps: None }));
        }
        let (Some(starts), Some(ends)) = (input(1, "starts")?, input(2, "ends")?) else { return Ok(None) };
        Ok(Some(Ranges { starts, ends, axes: input(3, "axes")?, steps: input(4, "steps")? }))
    }
}

impl Op for Slice {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        let mut unknown = false;
        let ranges = self.ranges(|i, what| match inputs.get(i).copied().flatten() {
            None => Ok(None),
            Some(f) => {
                let values = fact_ints(f, i, what)?;
                unknown |= values.is_none();
                Ok(values)
            }
        })?;
        let shape = match (ranges, x.concrete_shape()) {
            (Some(r), Some(shape)) if !unknown => r.strided(&shape)?.iter().map(|k| Dim::Known(k.2)).collect(),
            _ => vec![Dim::Unknown; x.shape.len()],
        };
        Ok(vec![Fact::new(x.dtype, shape)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let ranges = self.ranges(|i, what| inputs.get(i).copied().flatten().map(|t| ints(t, i, what)).transpose())?;
        let ranges = ranges.ok_or_else(|| OpError::input(1, "starts and ends are required"))?;
        let kept = ranges.strided(x.shape())?;
        copy_strided(x, &kept, output(outputs, 0)?)
    }
}

/// Output `out` from `x` through `maps` (no fill: every coordinate maps).
pub(crate) fn copy_mapped(x: &Tensor, maps: &AxisMaps, out: &mut Tensor) -> Result<(), OpError> {
    let shape = mapped_shape(maps);
    crate::dispatch!(x.dtype(), T => gather_mapped::<T>(x.elements::<T>().unwrap_or_default(), x.shape(), maps, T::default(), out.reset_as::<T>(&shape)?));
    Ok(())
}

/// The slice of `x` at `index` along `axis`, without that axis (Scan's
/// per-step input).
pub(crate) fn take_along(x: &Tensor, axis: usize, index: usize) -> Result<Tensor, OpError> {
    let mut maps: AxisMaps = x.shape().iter().map(|&d| (0..d).map(Some).collect()).collect();
    maps[axis] = vec![Some(index)];
    let mut out = Tensor::default();
    copy_mapped(x, &maps, &mut out)?;
    let mut shape = x.shape().to_vec();
    shape.remove(axis);
    out.reshape(shape)?;
    Ok(out)
}

fn slice(node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError> {
    if opset >= 10 {
        return Ok(Box::new(Slice { attributes: None }));
    }
    let a = Attrs(node);
    let starts = a.ints("starts")?.ok_or_else(|| OpError::attribute("starts", "required"))?;
    let ends = a.ints("ends")?.ok_or_else(|| OpError::attribute("ends", "required"))?;
    Ok(Box::new(Slice { attributes: Some(Ranges { starts: starts.into(), ends: ends.into(), axes: a.ints("axes")?.map(Ints::from_vec), steps: None }) }))
}

#[derive(Debug)]
struct Split {
    axis: i64,
    outputs: usize,
    /// Before opset 13: the sizes from the attribute.
    sizes: Option<Ints>,
    /// Opset 18's `num_outputs`: chunks of the rounded-up size.
    num_outputs: Option<usize>,
}

impl Split {
    fn sizes(&self, dim: usize, given: Option<Ints>) -> Result<Vec<usize>, OpError> {
        if let Some(sizes) = given.or_else(|| self.sizes.clone()) {
            if sizes.len() != self.outputs || sizes.iter().any(|&s| s < 0) || sizes.iter().sum::<i64>() != dim as i64 {
                return Err(OpError::Shape(format!("split sizes {} do not divide a dimension of {dim} into {} outputs", show(&sizes), self.outputs)));
            }
            return Ok(sizes.into_iter().map(|s| s as usize).collect());
        }
        let n = self.num_outputs.unwrap_or(self.outputs).max(1);
        if self.num_outputs.is_none() && !dim.is_multiple_of(n) {
            return Err(OpError::Shape(format!("a dimension of {dim} does not split evenly into {n} outputs")));
        }
        let chunk = dim.div_ceil(n);
        Ok((0..n).map(|k| chunk.min(dim.saturating_sub(k * chunk))).collect())
    }

    fn axis(&self, rank: usize) -> Result<usize, OpError> {
        normalize_axis(self.axis, rank).ok_or_else(|| OpError::attribute("axis", format!("{} is out of range for rank {rank}", self.axis)))
    }
}

impl Op for Split {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        let axis = self.axis(x.shape.len())?;
        let given = match inputs.get(1).copied().flatten() {
            Some(f) => match fact_ints(f, 1, "split")? {
                Some(v) => Some(v),
                None => return Ok(vec![Fact::new(x.dtype, vec![Dim::Unknown; x.shape.len()]); self.outputs]),
            },
            None => None,
        };
        let sizes: Vec<Dim> = match &x.shape[axis] {
            Dim::Known(d) => self.sizes(*d, given)?.into_iter().map(Dim::Known).collect(),
            _ => vec![Dim::Unknown; self.outputs],
        };
        Ok(sizes
            .into_iter()
            .map(|s| {
                let mut shape = x.shape.clone();
                shape[axis] = s;
                Fact::new(x.dtype, shape)
            })
            .collect())
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let axis = self.axis(x.rank())?;
        let given = inputs.get(1).copied().flatten().map(|t| ints(t, 1, "split")).transpose()?;
        let sizes = self.sizes(x.shape()[axis], given)?;
        let mut maps: AxisMaps = x.shape().iter().map(|&d| (0..d).map(Some).collect()).collect();
        let mut offset = 0;
        for (k, &size) in sizes.iter().enumerate() {
            maps[axis] = (offset..offset + size).map(Some).collect();
            copy_mapped(x, &maps, output(outputs, k)?)?;
            offset += size;
        }
        Ok(())
    }
}

/// The axis Split `node` cuts an input of `shape` along, and its outputs'
/// sizes there; `given` holds the `split` input's values (from opset 13).
/// For providers that split on their own.
pub fn split_sizes(node: &Node, opset: i64, shape: &[usize], given: Option<&[i64]>) -> Result<(usize, Vec<usize>), OpError> {
    let split = split_op(node, opset)?;
    let axis = split.axis(shape.len())?;
    Ok((axis, split.sizes(shape[axis], given.map(Ints::from_slice))?))
}

fn split(node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError> {
    Ok(Box::new(split_op(node, opset)?))
}

fn split_op(node: &Node, opset: i64) -> Result<Split, OpError> {
    let a = Attrs(node);
    let num_outputs = if opset >= 18 { a.get("num_outputs").map(|_| a.int("num_outputs", 0)).transpose()? } else { None };
    let num_outputs = num_outputs.map(|n| usize::try_from(n).ok().filter(|&n| n == node.outputs.len()).ok_or_else(|| OpError::attribute("num_outputs", format!("{n}, but the node has {} outputs", node.outputs.len())))).transpose()?;
    Ok(Split { axis: a.int("axis", 0)?, outputs: node.outputs.len(), sizes: if opset < 13 { a.ints("split")?.map(Ints::from_vec) } else { None }, num_outputs })
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("Slice", slice);
    ops.insert("Split", split);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(starts: &[i64], ends: &[i64], axes: &[i64], steps: &[i64]) -> Ranges {
        Ranges { starts: starts.into(), ends: ends.into(), axes: Some(axes.into()), steps: Some(steps.into()) }
    }

    fn kept(strided: &Strided, axis: usize) -> Vec<usize> {
        let (first, step, len) = strided[axis];
        (0..len).map(|j| (first as isize + j as isize * step) as usize).collect()
    }

    /// The clamping rules of the operator's definition, with numpy's
    /// slicing as the reference.
    #[test]
    fn slices_clamp_like_numpy() {
        // x[1:1000] of 5, x[-1::-2] (ends at -inf), x[::-1] with INT_MAX.
        assert_eq!(kept(&ranges(&[1], &[1000], &[0], &[1]).strided(&[5]).unwrap(), 0), [1, 2, 3, 4]);
        assert_eq!(kept(&ranges(&[-1], &[i64::MIN], &[0], &[-2]).strided(&[5]).unwrap(), 0), [4, 2, 0]);
        assert_eq!(kept(&ranges(&[i64::MAX], &[-i64::MAX], &[-1], &[-1]).strided(&[3]).unwrap(), 0), [2, 1, 0]);
        assert!(kept(&ranges(&[3], &[1], &[0], &[1]).strided(&[5]).unwrap(), 0).is_empty());
        assert_eq!(kept(&ranges(&[0], &[5], &[0], &[3]).strided(&[5]).unwrap(), 0), [0, 3]);
        assert!(ranges(&[0], &[1], &[0], &[0]).strided(&[5]).is_err());
        assert!(ranges(&[0, 0], &[1, 1], &[0, -2], &[1, 1]).strided(&[5, 5]).is_err(), "axis 0 twice");
    }

    #[test]
    fn split_sizes() {
        let split = Split { axis: 0, outputs: 3, sizes: None, num_outputs: Some(3) };
        assert_eq!(split.sizes(7, None).unwrap(), [3, 3, 1]);
        let even = Split { axis: 0, outputs: 3, sizes: None, num_outputs: None };
        assert!(even.sizes(7, None).is_err());
        assert_eq!(even.sizes(7, Some(Ints::from_slice(&[2, 0, 5]))).unwrap(), [2, 0, 5]);
    }
}
