//! Pad, Tile and Expand: tensors made larger by repeating or surrounding
//! their elements.
//!
//! Pad takes its pads (and value) from attributes before opset 11 and from
//! inputs after, with opset 18's `axes` and opset 19's `wrap` mode; negative
//! pads crop. Expand broadcasts in both directions, as numpy does.

use super::axes::{fact_ints, ints, normalize_axis};
use super::binary::{broadcast_dims, broadcast_shapes};
use crate::kernels::index_map::{gather_by, gather_mapped, AxisMaps};
use super::slice::copy_mapped;
use super::{output, required, show, Attrs, Builder, Fact, Op, OpError};
use crate::model::{Dim, Node};
use crate::tensor::Tensor;
use std::collections::HashMap;

/// Pad's modes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

/// The coordinate an output position `o` of a padded axis reads.
fn padded_coordinate(mode: Mode, o: usize, begin: i64, dim: usize) -> Option<usize> {
    let c = o as i64 - begin;
    let n = dim as i64;
    if (0..n).contains(&c) {
        return Some(c as usize);
    }
    Some(match mode {
        Mode::Constant => return None,
        Mode::Edge => c.clamp(0, n - 1) as usize,
        Mode::Wrap => c.rem_euclid(n) as usize,
        Mode::Reflect if n == 1 => 0,
        Mode::Reflect => {
            let m = c.rem_euclid(2 * (n - 1));
            (if m >= n { 2 * (n - 1) - m } else { m }) as usize
        }
    })
}

#[derive(Debug)]
struct Pad {
    mode: Mode,
    /// Before opset 11: the pads and value from attributes.
    attributes: Option<(Vec<i64>, f32)>,
}

impl Pad {
    /// (begin, end) pads per axis of a rank-`rank` input.
    fn per_axis(pads: &[i64], axes: Option<super::axes::Ints>, rank: usize) -> Result<smallvec::SmallVec<[(i64, i64); 8]>, OpError> {
        let axes: super::axes::Dims = match axes {
            None => (0..rank).collect(),
            Some(axes) => axes.iter().map(|&a| normalize_axis(a, rank).ok_or_else(|| OpError::input(3, format!("axis {a} is out of range for rank {rank}")))).collect::<Result<_, _>>()?,
        };
        if pads.len() != 2 * axes.len() {
            return Err(OpError::input(1, format!("pads {} must hold a begin and an end for each of {} axes", show(pads), axes.len())));
        }
        let mut per_axis = smallvec::smallvec![(0, 0); rank];
        for (k, &a) in axes.iter().enumerate() {
            per_axis[a] = (pads[k], pads[k + axes.len()]);
        }
        Ok(per_axis)
    }

    /// The padded shape.
    fn padded_shape(&self, shape: &[usize], pads: &[(i64, i64)]) -> Result<super::axes::Dims, OpError> {
        shape
            .iter()
            .zip(pads)
            .enumerate()
            .map(|(axis, (&dim, &(begin, end)))| {
                let len = (dim as i64).checked_add(begin).and_then(|l| l.checked_add(end)).filter(|&l| l >= 0);
                let len = len.ok_or_else(|| OpError::input(1, format!("pads ({begin}, {end}) leave axis {axis} of size {dim} with a negative size")))?;
                if self.mode != Mode::Constant && dim == 0 && len > 0 {
                    return Err(OpError::input(0, format!("{:?} padding needs elements on axis {axis}, which has none", self.mode)));
                }
                Ok(len as usize)
            })
            .collect()
    }
}

impl Op for Pad {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        let rank = x.shape.len();
        let pads = match &self.attributes {
            Some((pads, _)) => Some(pads.iter().copied().collect()),
            None => fact_ints(required(inputs, 1)?, 1, "pads")?,
        };
        let axes = match inputs.get(3).copied().flatten() {
            None => Some(None),
            Some(f) => fact_ints(f, 3, "axes")?.map(Some),
        };
        let (Some(pads), Some(axes)) = (pads, axes) else { return Ok(vec![Fact::new(x.dtype, vec![Dim::Unknown; rank])]) };
        let per_axis = Self::per_axis(&pads, axes, rank)?;
        let shape = x.shape.iter().zip(per_axis).map(|(d, (b, e))| if let Dim::Known(n) = d { Dim::Known((*n as i64 + b + e).max(0) as usize) } else { Dim::Unknown }).collect();
        Ok(vec![Fact::new(x.dtype, shape)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let (pads, axes) = match &self.attributes {
            Some((pads, _)) => (pads.iter().copied().collect(), None),
            None => (ints(required(inputs, 1)?, 1, "pads")?, inputs.get(3).copied().flatten().map(|t| ints(t, 3, "axes")).transpose()?),
        };
        let per_axis = Self::per_axis(&pads, axes, x.rank())?;
        let shape = self.padded_shape(x.shape(), &per_axis)?;
        let value = inputs.get(2).copied().flatten();
        let coordinate = |axis: usize, o: usize| padded_coordinate(self.mode, o, per_axis[axis].0, x.shape()[axis]);
        let out = output(outputs, 0)?;
        crate::dispatch!(x.dtype(), T => {
            let fill = match (value, &self.attributes) {
                (Some(v), _) => *v.elements::<T>().and_then(|v| v.first()).ok_or_else(|| OpError::input(2, format!("the constant value must be one {} like the data", x.dtype())))?,
                (None, Some((_, value))) => T::from_f64(*value as f64),
                (None, None) => T::default(),
            };
            gather_by::<T>(x.elements::<T>().unwrap_or_default(), x.shape(), &shape, coordinate, fill, out.reset_as::<T>(&shape)?);
        });
        Ok(())
    }
}

/// Pad `node`'s mode and, for each axis of `shape`, its begin pad and
/// padded size. From opset 11 `pads` and `axes` are the values of inputs 1
/// and 3; before, the node's attribute is read. For providers that pad on
/// their own, so that both agree on shapes and refusals.
pub fn pad_axes(node: &Node, opset: i64, shape: &[usize], pads: Option<&[i64]>, axes: Option<&[i64]>) -> Result<(Mode, Vec<(i64, usize)>), OpError> {
    let op = pad_op(node, opset)?;
    let pads: super::axes::Ints = match (&op.attributes, pads) {
        (Some((pads, _)), _) => pads.iter().copied().collect(),
        (None, Some(pads)) => pads.iter().copied().collect(),
        (None, None) => return Err(OpError::input(1, "the pads are required")),
    };
    let per_axis = Pad::per_axis(&pads, axes.map(super::axes::Ints::from_slice), shape.len())?;
    let padded = op.padded_shape(shape, &per_axis)?;
    Ok((op.mode, per_axis.iter().zip(padded).map(|(&(begin, _), len)| (begin, len)).collect()))
}

fn pad(node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError> {
    Ok(Box::new(pad_op(node, opset)?))
}

fn pad_op(node: &Node, opset: i64) -> Result<Pad, OpError> {
    let a = Attrs(node);
    let mode = match a.string("mode", "constant")?.as_str() {
        "constant" => Mode::Constant,
        "reflect" => Mode::Reflect,
        "edge" => Mode::Edge,
        "wrap" if opset >= 19 => Mode::Wrap,
        other => return Err(OpError::attribute("mode", format!("{other:?} is not a padding mode of opset {opset}"))),
    };
    let attributes = if opset < 11 {
        let pads = a.ints(if opset < 2 { "paddings" } else { "pads" })?.ok_or_else(|| OpError::attribute("pads", "required"))?;
        Some((pads, a.float("value", 0.0)?))
    } else {
        None
    };
    Ok(Pad { mode, attributes })
}

/// Tile: the input repeated `repeats[d]` times along each axis d.
#[derive(Debug)]
struct Tile;

impl Op for Tile {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        let shape = match fact_ints(required(inputs, 1)?, 1, "repeats")? {
            Some(r) if r.len() == x.shape.len() => x.shape.iter().zip(r).map(|(d, r)| if let (Dim::Known(n), true) = (d, r >= 0) { Dim::Known(n * r as usize) } else { Dim::Unknown }).collect(),
            _ => vec![Dim::Unknown; x.shape.len()],
        };
        Ok(vec![Fact::new(x.dtype, shape)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let repeats = ints(required(inputs, 1)?, 1, "repeats")?;
        if repeats.len() != x.rank() || repeats.iter().any(|&r| r < 0) {
            return Err(OpError::input(1, format!("repeats {} must hold one count of at least 0 per axis of {}", show(&repeats), show(x.shape()))));
        }
        let mut maps = AxisMaps::new();
        for (&dim, &r) in x.shape().iter().zip(&repeats) {
            let len = dim.checked_mul(r as usize).ok_or_else(|| OpError::input(1, format!("repeats {} make a tensor too large to exist", show(&repeats))))?;
            crate::tensor::element_count(&[len], x.dtype())?;
            maps.push((0..len).map(|o| Some(o % dim)).collect());
        }
        copy_mapped(x, &maps, output(outputs, 0)?)
    }
}

/// Expand: the input broadcast with a shape, in both directions.
#[derive(Debug)]
struct Expand;

impl Op for Expand {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        let shape = required(inputs, 1)?;
        let dims = match fact_ints(shape, 1, "shape")? {
            Some(s) => broadcast_dims(&x.shape, &s.iter().map(|&d| if d >= 0 { Dim::Known(d as usize) } else { Dim::Unknown }).collect::<Vec<_>>())?,
            None => match shape.shape.first() {
                Some(Dim::Known(n)) => vec![Dim::Unknown; x.shape.len().max(*n)],
                _ => return Ok(vec![]),
            },
        };
        Ok(vec![Fact::new(x.dtype, dims)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let target = ints(required(inputs, 1)?, 1, "shape")?;
        let target: Vec<usize> = target.iter().map(|&d| usize::try_from(d).map_err(|_| OpError::input(1, format!("shape {} has a negative dimension", show(&target))))).collect::<Result<_, _>>()?;
        let shape = broadcast_shapes(x.shape(), &target)?;
        let mut padded = vec![1; shape.len() - x.rank()];
        padded.extend_from_slice(x.shape());
        let maps: AxisMaps = padded.iter().zip(&shape).map(|(&d, &n)| (0..n).map(|o| Some(if d == 1 { 0 } else { o })).collect()).collect();
        let out = output(outputs, 0)?;
        crate::dispatch!(x.dtype(), T => gather_mapped::<T>(x.elements::<T>().unwrap_or_default(), &padded, &maps, T::default(), out.reset_as::<T>(&shape)?));
        Ok(())
    }
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("Pad", pad);
    ops.insert("Tile", |_, _| Ok(Box::new(Tile)));
    ops.insert("Expand", |_, _| Ok(Box::new(Expand)));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// numpy.pad's modes on [1, 2, 3] with pads (4, 2).
    #[test]
    fn modes_match_numpy_pad() {
        let coordinates = |mode| (0..9).map(|o| padded_coordinate(mode, o, 4, 3)).collect::<Vec<_>>();
        let c = |v: &[usize]| v.iter().map(|&x| Some(x)).collect::<Vec<_>>();
        // np.pad([1,2,3], (4,2), 'reflect') == [1,2,3,2,1,2,3,2,1]
        assert_eq!(coordinates(Mode::Reflect), c(&[0, 1, 2, 1, 0, 1, 2, 1, 0]));
        // 'edge' == [1,1,1,1,1,2,3,3,3]; 'wrap' == [3,1,2,3,1,2,3,1,2]
        assert_eq!(coordinates(Mode::Edge), c(&[0, 0, 0, 0, 0, 1, 2, 2, 2]));
        assert_eq!(coordinates(Mode::Wrap), c(&[2, 0, 1, 2, 0, 1, 2, 0, 1]));
        assert_eq!(coordinates(Mode::Constant)[3..7], [None, Some(0), Some(1), Some(2)]);
    }
}
