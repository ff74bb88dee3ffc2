//! Tensors computed from positions: Range, EyeLike, OneHot and Trilu, and
//! the running CumSum and CumProd.

use super::axes::{ints, normalize_axis};
use super::{output, required, Attrs, Builder, Fact, Op, OpError};
use crate::model::{Dim, Node};
use crate::tensor::{DataType, Tensor};
use std::collections::HashMap;

/// One element of a scalar (or one-element) input, as f64.
fn scalar(t: &Tensor, index: usize, what: &str) -> Result<f64, OpError> {
    if t.len() != 1 {
        return Err(OpError::input(index, format!("{what} must be a scalar, got shape {:?}", t.shape())));
    }
    Ok(crate::dispatch!(t.dtype(), T => t.elements::<T>().unwrap_or_default()[0].to_f64()))
}

/// Range(start, limit, delta): `start + k * delta` while below the limit.
#[derive(Debug)]
struct Range;

/// The most elements a Range may produce: its length comes from data, and
/// a delta of 1e-300 must be an error, not an attempt to fill memory.
fn range_len(start: f64, limit: f64, delta: f64) -> Result<usize, OpError> {
    if delta == 0.0 || !delta.is_finite() || !start.is_finite() || !limit.is_finite() {
        return Err(OpError::input(2, format!("Range({start}, {limit}, {delta}) has no finite length")));
    }
    let n = ((limit - start) / delta).ceil().max(0.0);
    if n > isize::MAX as f64 {
        return Err(OpError::input(2, format!("Range({start}, {limit}, {delta}) has too many elements")));
    }
    Ok(n as usize)
}

impl Op for Range {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let start = required(inputs, 0)?;
        let known: Option<Vec<&Tensor>> = (0..3).map(|i| inputs.get(i).copied().flatten().and_then(|f| f.value.as_ref())).collect();
        let len = match known {
            Some(v) => Dim::Known(range_len(scalar(v[0], 0, "start")?, scalar(v[1], 1, "limit")?, scalar(v[2], 2, "delta")?)?),
            None => Dim::Unknown,
        };
        Ok(vec![Fact::new(start.dtype, vec![len])])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let (s, l, d) = (required(inputs, 0)?, required(inputs, 1)?, required(inputs, 2)?);
        let (start, delta) = (scalar(s, 0, "start")?, scalar(d, 2, "delta")?);
        let n = range_len(start, scalar(l, 1, "limit")?, delta)?;
        let out = output(outputs, 0)?;
        crate::dispatch!(s.dtype(), T => {
            let o = out.reset_as::<T>(&[n])?;
            if T::FLOAT {
                // Accumulated, as the operator's reference loop computes.
                let (mut v, step) = (T::from_f64(start), T::from_f64(delta));
                for x in o.iter_mut() {
                    *x = v;
                    v = T::from_f64(v.to_f64() + step.to_f64());
                }
            } else {
                o.iter_mut().enumerate().for_each(|(k, x)| *x = T::from_i64(start as i64 + k as i64 * delta as i64));
            }
        });
        Ok(())
    }
}

/// EyeLike: ones on diagonal `k` of a matrix shaped like the input.
#[derive(Debug)]
struct EyeLike {
    dtype: Option<DataType>,
    k: i64,
}

impl Op for EyeLike {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        if x.shape.len() != 2 {
            return Err(OpError::input(0, format!("EyeLike needs a matrix, got rank {}", x.shape.len())));
        }
        Ok(vec![Fact::new(self.dtype.unwrap_or(x.dtype), x.shape.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let &[rows, cols] = x.shape() else { return Err(OpError::input(0, format!("EyeLike needs a matrix, got shape {:?}", x.shape()))) };
        let out = output(outputs, 0)?;
        crate::dispatch!(self.dtype.unwrap_or(x.dtype()), T => {
            let o = out.reset_as::<T>(&[rows, cols])?;
            o.iter_mut().enumerate().for_each(|(at, v)| *v = T::from_f64(if (at % cols) as i64 - (at / cols) as i64 == self.k { 1.0 } else { 0.0 }));
        });
        Ok(())
    }
}

/// OneHot(indices, depth, [off, on]): a new axis of `depth` holding `on` at
/// each index (negative indices count from the end) and `off` elsewhere.
#[derive(Debug)]
struct OneHot {
    axis: i64,
}

impl Op for OneHot {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let (indices, values) = (required(inputs, 0)?, required(inputs, 2)?);
        let rank = indices.shape.len() + 1;
        let axis = normalize_axis(self.axis, rank).ok_or_else(|| OpError::attribute("axis", format!("{} is out of range for rank {rank}", self.axis)))?;
        let depth = match required(inputs, 1)?.value.as_ref() {
            Some(d) => Dim::Known(scalar(d, 1, "depth")? as usize),
            None => Dim::Unknown,
        };
        let mut shape = indices.shape.clone();
        shape.insert(axis, depth);
        Ok(vec![Fact::new(values.dtype, shape)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let (indices, values) = (required(inputs, 0)?, required(inputs, 2)?);
        let depth = scalar(required(inputs, 1)?, 1, "depth")?;
        if !(depth >= 1.0 && depth <= isize::MAX as f64) {
            return Err(OpError::input(1, format!("depth {depth} must be at least 1")));
        }
        let depth = depth as usize;
        if values.len() != 2 {
            return Err(OpError::input(2, format!("values must hold [off, on], got shape {:?}", values.shape())));
        }
        let rank = indices.rank() + 1;
        let axis = normalize_axis(self.axis, rank).ok_or_else(|| OpError::attribute("axis", format!("{} is out of range for rank {rank}", self.axis)))?;
        let index: Vec<f64> = crate::dispatch!(indices.dtype(), T => indices.elements::<T>().unwrap_or_default().iter().map(|v| v.to_f64()).collect());
        let mut shape = indices.shape().to_vec();
        shape.insert(axis, depth);
        let inner: usize = indices.shape()[axis..].iter().product();
        let out = output(outputs, 0)?;
        crate::dispatch!(values.dtype(), T => {
            let (off, on) = { let v = values.elements::<T>().unwrap_or_default(); (v[0], v[1]) };
            let o = out.reset_as::<T>(&shape)?;
            o.fill(off);
            for (k, &i) in index.iter().enumerate() {
                let i = if i < 0.0 { i + depth as f64 } else { i };
                if (0.0..depth as f64).contains(&i) {
                    let (outer, rest) = (k / inner, k % inner);
                    o[(outer * depth + i as usize) * inner + rest] = on;
                }
            }
        });
        Ok(())
    }
}

/// Trilu: the upper (or lower) triangle of the last two axes from diagonal
/// `k`, zeros elsewhere.
#[derive(Debug)]
struct Trilu {
    upper: bool,
}

impl Op for Trilu {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        if x.shape.len() < 2 {
            return Err(OpError::input(0, format!("Trilu needs rank 2 or more, got {}", x.shape.len())));
        }
        Ok(vec![Fact::new(x.dtype, x.shape.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        if x.rank() < 2 {
            return Err(OpError::input(0, format!("Trilu needs rank 2 or more, got shape {:?}", x.shape())));
        }
        let k = inputs.get(1).copied().flatten().map(|t| scalar(t, 1, "k")).transpose()?.unwrap_or(0.0) as i64;
        let (rows, cols) = (x.shape()[x.rank() - 2], x.shape()[x.rank() - 1]);
        let out = output(outputs, 0)?;
        crate::dispatch!(x.dtype(), T => {
            let v = x.elements::<T>().unwrap_or_default();
            let o = out.reset_as::<T>(x.shape())?;
            for (at, (o, &v)) in o.iter_mut().zip(v).enumerate() {
                let (i, j) = (((at / cols) % rows.max(1)) as i64, (at % cols) as i64);
                let keep = if self.upper { j - i >= k } else { j - i <= k };
                *o = if keep { v } else { T::default() };
            }
        });
        Ok(())
    }
}

/// CumSum and CumProd along the axis given as input 1.
#[derive(Debug)]
struct Cumulative {
    product: bool,
    exclusive: bool,
    reverse: bool,
}

impl Op for Cumulative {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        Ok(vec![Fact::new(x.dtype, x.shape.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let axis = ints(required(inputs, 1)?, 1, "axis")?;
        let &[axis] = axis.as_slice() else { return Err(OpError::input(1, "axis must be one integer")) };
        let a = normalize_axis(axis, x.rank()).ok_or_else(|| OpError::input(1, format!("axis {axis} is out of range for rank {}", x.rank())))?;
        let (len, inner) = (x.shape()[a], x.shape()[a + 1..].iter().product::<usize>());
        let out = output(outputs, 0)?;
        crate::dispatch!(x.dtype(), T => {
            let v = x.elements::<T>().unwrap_or_default();
            let o = out.reset_as::<T>(x.shape())?;
            let identity = if self.product { 1.0 } else { 0.0 };
            for outer in 0..x.len() / (len * inner).max(1) {
                for i in 0..inner {
                    let mut acc = identity;
                    for step in 0..len {
                        let k = if self.reverse { len - 1 - step } else { step };
                        let at = (outer * len + k) * inner + i;
                        let next = if self.product { acc * v[at].to_f64() } else { acc + v[at].to_f64() };
                        o[at] = T::from_f64(if self.exclusive { acc } else { next });
                        acc = next;
                    }
                }
            }
        });
        Ok(())
    }
}

fn cumulative(product: bool, node: &Node) -> Result<Box<dyn Op>, OpError> {
    let a = Attrs(node);
    Ok(Box::new(Cumulative { product, exclusive: a.int("exclusive", 0)? != 0, reverse: a.int("reverse", 0)? != 0 }))
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("Range", |_, _| Ok(Box::new(Range)));
    ops.insert("EyeLike", |n, _| {
        let a = Attrs(n);
        let dtype = match a.get("dtype") {
            None => None,
            Some(_) => {
                let code = a.int("dtype", 0)?;
                Some(i32::try_from(code).ok().and_then(DataType::from_onnx).ok_or_else(|| OpError::attribute("dtype", format!("element type {code} is not one byob carries")))?)
            }
        };
        Ok(Box::new(EyeLike { dtype, k: a.int("k", 0)? }))
    });
    ops.insert("OneHot", |n, _| Ok(Box::new(OneHot { axis: Attrs(n).int("axis", -1)? })));
    ops.insert("Trilu", |n, _| Ok(Box::new(Trilu { upper: Attrs(n).int("upper", 1)? != 0 })));
    ops.insert("CumSum", |n, _| cumulative(false, n));
    ops.insert("CumProd", |n, _| cumulative(true, n));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_lengths() {
        assert_eq!(range_len(1.0, 5.0, 2.0).unwrap(), 2);
        assert_eq!(range_len(10.0, 6.0, -3.0).unwrap(), 2);
        assert_eq!(range_len(5.0, 1.0, 1.0).unwrap(), 0);
        assert!(range_len(0.0, 1.0, 1e-300).is_err());
        assert!(range_len(0.0, 1.0, 0.0).is_err());
    }
}
