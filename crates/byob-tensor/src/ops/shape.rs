//! Shape and data-movement operators: Shape, Reshape, Transpose, Concat,
//! Unsqueeze, Squeeze, Flatten, Gather, ConstantOfShape, Constant,
//! Identity and Dropout (inference mode).
//!
//! `infer` returns no facts at all when an output's rank cannot be known
//! before running (e.g. Squeeze without axes over unknown dimensions); the
//! session then skips inference downstream of it.

use super::{output, required, show, Attrs, Builder, Fact, Op, OpError};
use crate::model::{Dim, Node};
use super::axes::{axes_builder, fact_ints, ints, normalize_axis, unique_axes, Axes, AxesFact};
use crate::element::Element;
use crate::tensor::{Data, DataType, Tensor};
use crate::kernels::transpose::transpose_into;
use std::collections::HashMap;


/// Dims on the stack for ranks up to eight.
type DimList = smallvec::SmallVec<[Dim; 8]>;

fn known(shape: &[usize]) -> DimList {
    shape.iter().map(|&d| Dim::Known(d)).collect()
}

/// Dims that must all be known (they come from a real tensor).
fn concrete(dims: &[Dim]) -> Result<super::axes::Dims, OpError> {
    dims.iter().map(|d| if let Dim::Known(n) = d { Ok(*n) } else { Err(OpError::Shape(format!("dimension {d} is not known"))) }).collect()
}

fn tensor(shape: Vec<usize>, data: Data) -> Result<Tensor, OpError> {
    Tensor::new(shape, data).map_err(|e| OpError::Shape(e.to_string()))
}

/// Output 0 becomes `x`'s elements in `shape` (a reshape, or the identity).
fn copy(outputs: &mut [Tensor], shape: &[usize], x: &Tensor) -> Result<(), OpError> {
    output(outputs, 0)?.copy_from(shape, x.data()).map_err(|e| OpError::Shape(e.to_string()))
}

/// The product of dimensions: known when all are, the dimension itself
/// when there is one, 0 when any is 0.
fn dim_product(dims: &[Dim]) -> Dim {
    if dims.contains(&Dim::Known(0)) {
        return Dim::Known(0);
    }
    match dims {
        [one] => one.clone(),
        _ => dims.iter().try_fold(1usize, |acc, d| if let Dim::Known(n) = d { acc.checked_mul(*n) } else { None }).map_or(Dim::Unknown, Dim::Known),
    }
}

// ---------------------------------------------------------------- Shape

#[derive(Debug)]
struct Shape {
    start: i64,
    end: Option<i64>,
}

impl Shape {
    fn range(&self, rank: usize) -> (usize, usize) {
        let r = rank as i64;
        let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let (s, e) = (clamp(self.start), clamp(self.end.unwrap_or(r)));
        (s, e.max(s))
    }
}

impl Op for Shape {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        let (s, e) = self.range(x.shape.len());
        let dims = &x.shape[s..e];
        let mut fact = Fact::new(DataType::I64, vec![Dim::Known(e - s)]);
        // Known dimensions make the shape a constant, so that shape
        // computations downstream fold at session creation.
        if let Some(values) = dims.iter().map(|d| if let Dim::Known(n) = d { Some(*n as i64) } else { None }).collect::<Option<Vec<_>>>() {
            fact.value = Some(tensor(vec![e - s], Data::I64(values))?);
        }
        Ok(vec![fact])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let (s, e) = self.range(x.rank());
        let Data::I64(out) = output(outputs, 0)?.reset(DataType::I64, &[e - s])? else { unreachable!("reset to int64") };
        out.iter_mut().zip(&x.shape()[s..e]).for_each(|(o, &d)| *o = d as i64);
        Ok(())
    }
}

/// Size: the input's element count, an int64 scalar.
#[derive(Debug)]
struct Size;

impl Op for Size {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        Ok(vec![match x.concrete_shape() {
            Some(shape) => Fact::constant(Tensor::i64(vec![], vec![shape.iter().product::<usize>() as i64])?),
            None => Fact::new(DataType::I64, vec![]),
        }])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        output(outputs, 0)?.reset_as::<i64>(&[])?[0] = x.len() as i64;
        Ok(())
    }
}

fn shape(node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError> {
    let a = Attrs(node);
    if opset >= 15 {
        let end = if a.get("end").is_some() { Some(a.int("end", 0)?) } else { None };
        Ok(Box::new(Shape { start: a.int("start", 0)?, end }))
    } else {
        Ok(Box::new(Shape { start: 0, end: None }))
    }
}

// -------------------------------------------------------------- Reshape

/// The output shape of Reshape: 0 copies the input dimension (unless
/// `allowzero`), one -1 takes what is left.
fn reshape_dims(input: &[Dim], target: &[i64], allowzero: bool) -> Result<Vec<Dim>, String> {
    let fail = |why: String| format!("cannot reshape {} to {}: {why}", show(input), show(target));
    let mut out = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 => {
                if infer_at.replace(i).is_some() {
                    return Err(fail("more than one -1".into()));
                }
                out.push(Dim::Unknown);
            }
            0 if !allowzero => out.push(input.get(i).cloned().ok_or_else(|| fail(format!("shape[{i}] = 0 copies input dimension {i}, but the input has rank {}", input.len())))?),
            t if t < 0 => return Err(fail(format!("shape[{i}] = {t}; only -1 may be negative"))),
            t => out.push(Dim::Known(usize::try_from(t).map_err(|_| fail(format!("shape[{i}] = {t} is too large")))?)),
        }
    }
    if allowzero && infer_at.is_some() && target.contains(&0) {
        return Err(fail("with allowzero=1, shape cannot hold both 0 and -1".into()));
    }
    // Cancel symbolic dimensions present on both sides, then compare the
    // known products.
    let mut symbols: Vec<&Dim> = Vec::new();
    let mut total = Some(1usize);
    let mut unknown = false;
    for d in input {
        match d {
            Dim::Known(n) => total = total.and_then(|t| t.checked_mul(*n)),
            Dim::Symbolic(_) => symbols.push(d),
            Dim::Unknown => unknown = true,
        }
    }
    let mut rest = Some(1usize);
    for (i, d) in out.iter().enumerate() {
        match d {
            _ if Some(i) == infer_at => {}
            Dim::Known(n) => rest = rest.and_then(|r| r.checked_mul(*n)),
            Dim::Symbolic(_) => match symbols.iter().position(|s| *s == d) {
                Some(p) => {
                    symbols.swap_remove(p);
                }
                None => unknown = true,
            },
            Dim::Unknown => unknown = true,
        }
    }
    let (Some(total), Some(rest)) = (total, rest) else {
        return Err(fail("too many elements".into()));
    };
    if unknown || !symbols.is_empty() {
        return Ok(out);
    }
    match infer_at {
        Some(at) => {
            if rest == 0 || total % rest != 0 {
                return Err(fail(format!("{total} elements cannot be split into the known dimensions (product {rest}) and a -1")));
            }
            out[at] = Dim::Known(total / rest);
        }
        None if rest != total => return Err(fail(format!("the input has {total} elements, the shape {rest}"))),
        None => {}
    }
    Ok(out)
}

#[derive(Debug)]
struct Reshape {
    allowzero: bool,
}

impl Op for Reshape {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let (x, s) = (required(inputs, 0)?, required(inputs, 1)?);
        if s.shape.len() != 1 {
            return Err(OpError::input(1, format!("shape must be 1-D, got rank {}", s.shape.len())));
        }
        let dims = match fact_ints(s, 1, "shape")? {
            Some(target) => reshape_dims(&x.shape, &target, self.allowzero).map_err(|e| OpError::input(1, e))?,
            None => match s.shape[0] {
                Dim::Known(k) => vec![Dim::Unknown; k],
                _ => return Ok(vec![]),
            },
        };
        Ok(vec![Fact::new(x.dtype, dims)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let (x, s) = (required(inputs, 0)?, required(inputs, 1)?);
        if s.rank() != 1 {
            return Err(OpError::input(1, format!("shape must be 1-D, got shape {:?}", s.shape())));
        }
        let target = ints(s, 1, "shape")?;
        let dims = reshape_dims(&known(x.shape()), &target, self.allowzero).map_err(|e| OpError::input(1, e))?;
        copy(outputs, &concrete(&dims)?, x)
    }
}

fn reshape(node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError> {
    if opset < 5 {
        return Err(OpError::Unsupported { op: "Reshape".into(), opset });
    }
    let allowzero = opset >= 14 && Attrs(node).int("allowzero", 0)? != 0;
    Ok(Box::new(Reshape { allowzero }))
}

// ------------------------------------------------------------ Transpose

#[derive(Debug)]
struct Transpose {
    perm: Option<Vec<i64>>,
}

impl Transpose {
    fn perm(&self, rank: usize) -> Result<Vec<usize>, OpError> {
        let Some(perm) = &self.perm else { return Ok((0..rank).rev().collect()) };
        let bad = |what: String| OpError::attribute("perm", what);
        if perm.len() != rank {
            return Err(bad(format!("{} has {} entries for an input of rank {rank}", show(perm), perm.len())));
        }
        let mut seen = vec![false; rank];
        perm.iter()
            .map(|&p| match usize::try_from(p) {
                Ok(p) if p < rank && !seen[p] => {
                    seen[p] = true;
                    Ok(p)
                }
                _ => Err(bad(format!("{} is not a permutation of 0..{rank}", show(perm)))),
            })
            .collect()
    }
}

impl Op for Transpose {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        let perm = self.perm(x.shape.len())?;
        Ok(vec![Fact::new(x.dtype, perm.iter().map(|&p| x.shape[p].clone()).collect())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let perm = self.perm(x.rank())?;
        transpose_into(x, &perm, output(outputs, 0)?, threads)?;
        Ok(())
    }
}

// --------------------------------------------------------------- Concat

#[derive(Debug)]
struct Concat {
    axis: i64,
}

impl Concat {
    fn axis(&self, rank: usize) -> Result<usize, OpError> {
        normalize_axis(self.axis, rank).ok_or_else(|| OpError::attribute("axis", format!("{} is out of range for inputs of rank {rank}", self.axis)))
    }
}

impl Op for Concat {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let first = required(inputs, 0)?;
        let rank = first.shape.len();
        let axis = self.axis(rank)?;
        let mut dims = first.shape.clone();
        let mut along = vec![first.shape[axis].clone()];
        for i in 1..inputs.len() {
            let x = required(inputs, i)?;
            if x.dtype != first.dtype {
                return Err(OpError::input(i, format!("expected {} like input 0, got {}", first.dtype, x.dtype)));
            }
            if x.shape.len() != rank {
                return Err(OpError::input(i, format!("shape {} has rank {}, input 0 {} has rank {rank}", show(&x.shape), x.shape.len(), show(&first.shape))));
            }
            for (d, (have, new)) in dims.iter_mut().zip(&x.shape).enumerate() {
                if d == axis {
                    continue;
                }
                match (&*have, new) {
                    (Dim::Known(m), Dim::Known(n)) if m != n => {
                        return Err(OpError::input(i, format!("shape {} differs from input 0 {} on axis {d}, which is not the concat axis {axis}", show(&x.shape), show(&first.shape))))
                    }
                    (Dim::Known(_), _) => {}
                    (_, Dim::Known(_)) => *have = new.clone(),
                    (Dim::Symbolic(s), Dim::Symbolic(t)) if s == t => {}
                    _ => *have = Dim::Unknown,
                }
            }
            along.push(x.shape[axis].clone());
        }
        dims[axis] = along.iter().try_fold(0usize, |acc, d| if let Dim::Known(n) = d { Some(acc + n) } else { None }).map_or(Dim::Unknown, Dim::Known);
        Ok(vec![Fact::new(first.dtype, dims)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let first = required(inputs, 0)?;
        let rank = first.rank();
        let axis = self.axis(rank)?;
        let mut shape = super::axes::Dims::from_slice(first.shape());
        shape[axis] = 0;
        for i in 0..inputs.len() {
            let x = required(inputs, i)?;
            if x.dtype() != first.dtype() {
                return Err(OpError::input(i, format!("expected {} like input 0, got {}", first.dtype(), x.dtype())));
            }
            let same = x.rank() == rank && x.shape().iter().zip(first.shape()).enumerate().all(|(d, (m, n))| d == axis || m == n);
            if !same {
                return Err(OpError::input(i, format!("shape {:?} does not match input 0 {:?} outside axis {axis}", x.shape(), first.shape())));
            }
            shape[axis] += x.shape()[axis];
        }
        /// Each outer index's blocks, input after input.
        fn join<T: Element>(parts: &[Option<&Tensor>], axis: usize, out: &mut [T]) {
            let mut at = 0;
            let blocks: smallvec::SmallVec<[(&[T], usize); 8]> = parts.iter().flatten().map(|t| (T::slice(t.data()).unwrap_or_default(), t.shape()[axis..].iter().product::<usize>())).collect();
            let outer = parts[0].map_or(0, |t| t.shape()[..axis].iter().product());
            for o in 0..outer {
                for &(s, block) in &blocks {
                    // (Single values, as when joining along a last axis of
                    // size 1, without a copy call each.)
                    if block == 1 {
                        out[at] = s[o];
                    } else {
                        out[at..at + block].copy_from_slice(&s[o * block..(o + 1) * block]);
                    }
                    at += block;
                }
            }
        }
        let out = output(outputs, 0)?.reset(first.dtype(), &shape)?;
        crate::dispatch!(first.dtype(), T => join::<T>(inputs, axis, T::slice_mut(out).unwrap_or_default()));
        Ok(())
    }
}

fn concat(node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError> {
    let a = Attrs(node);
    if opset >= 4 && a.get("axis").is_none() {
        return Err(OpError::attribute("axis", "required"));
    }
    Ok(Box::new(Concat { axis: a.int("axis", 1)? }))
}

// ---------------------------------------------------- Unsqueeze, Squeeze

fn unsqueeze_dims(input: &[Dim], axes: &[i64]) -> Result<DimList, String> {
    let rank = input.len() + axes.len();
    let axes = unique_axes(axes, rank)?;
    let mut rest = input.iter();
    Ok((0..rank).map(|i| if axes.contains(&i) { Dim::Known(1) } else { rest.next().cloned().unwrap_or(Dim::Unknown) }).collect())
}

#[derive(Debug)]
struct Unsqueeze {
    axes: Axes,
}

impl Op for Unsqueeze {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        let dims = match self.axes.of_facts(inputs)? {
            AxesFact::Absent => return Err(self.axes.error("missing".into())),
            AxesFact::Known(axes) => unsqueeze_dims(&x.shape, &axes).map_err(|e| self.axes.error(e))?.into_vec(),
            AxesFact::Count(Some(k)) => vec![Dim::Unknown; x.shape.len() + k],
            AxesFact::Count(None) => return Ok(vec![]),
        };
        Ok(vec![Fact::new(x.dtype, dims)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let axes = self.axes.of_tensors(inputs)?.ok_or_else(|| self.axes.error("missing".into()))?;
        let dims = unsqueeze_dims(&known(x.shape()), &axes).map_err(|e| self.axes.error(e))?;
        copy(outputs, &concrete(&dims)?, x)
    }
}

/// Squeezed dims, `None` when the rank cannot be known yet. No axes (or
/// an empty list) removes every dimension of size 1.
fn squeeze_dims(input: &[Dim], axes: Option<&[i64]>) -> Result<Option<DimList>, String> {
    match axes {
        Some(axes) if !axes.is_empty() => {
            let axes = unique_axes(axes, input.len())?;
            for &a in &axes {
                if let Dim::Known(n) = input[a] {
                    if n != 1 {
                        return Err(format!("cannot squeeze axis {a} of shape {}: its size is {n}, not 1", show(input)));
                    }
                }
            }
            Ok(Some(input.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| d.clone()).collect()))
        }
        _ => {
            if input.iter().any(|d| !matches!(d, Dim::Known(_))) {
                return Ok(None);
            }
            Ok(Some(input.iter().filter(|d| **d != Dim::Known(1)).cloned().collect()))
        }
    }
}

#[derive(Debug)]
struct Squeeze {
    axes: Axes,
}

impl Op for Squeeze {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        let dims = match self.axes.of_facts(inputs)? {
            AxesFact::Absent => squeeze_dims(&x.shape, None),
            AxesFact::Known(axes) => squeeze_dims(&x.shape, Some(&axes)),
            AxesFact::Count(Some(k)) if k > 0 && k <= x.shape.len() => Ok(Some(smallvec::smallvec![Dim::Unknown; x.shape.len() - k])),
            AxesFact::Count(Some(k)) if k > x.shape.len() => Err(format!("{k} axes for an input of rank {}", x.shape.len())),
            AxesFact::Count(_) => Ok(None),
        }
        .map_err(|e| self.axes.error(e))?;
        Ok(dims.map(|d| vec![Fact::new(x.dtype, d.into_vec())]).unwrap_or_default())
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let axes = self.axes.of_tensors(inputs)?;
        let dims = squeeze_dims(&known(x.shape()), axes.as_deref()).map_err(|e| self.axes.error(e))?.unwrap_or_default();
        copy(outputs, &concrete(&dims)?, x)
    }
}

// -------------------------------------------------------------- Flatten

#[derive(Debug)]
struct Flatten {
    axis: i64,
}

impl Flatten {
    /// The split point, in `[-rank, rank]`.
    fn axis(&self, rank: usize) -> Result<usize, OpError> {
        let r = rank as i64;
        if !(-r..=r).contains(&self.axis) {
            return Err(OpError::attribute("axis", format!("{} is out of range for an input of rank {rank}", self.axis)));
        }
        Ok(if self.axis < 0 { self.axis + r } else { self.axis } as usize)
    }
}

impl Op for Flatten {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        let axis = self.axis(x.shape.len())?;
        Ok(vec![Fact::new(x.dtype, vec![dim_product(&x.shape[..axis]), dim_product(&x.shape[axis..])])])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let axis = self.axis(x.rank())?;
        let shape = vec![x.shape()[..axis].iter().product(), x.shape()[axis..].iter().product()];
        copy(outputs, &shape, x)
    }
}

// --------------------------------------------------------------- Gather

#[derive(Debug)]
struct Gather {
    axis: i64,
}

impl Gather {
    fn axis(&self, rank: usize) -> Result<usize, OpError> {
        if rank == 0 {
            return Err(OpError::input(0, "data must have rank 1 or more, got a scalar"));
        }
        normalize_axis(self.axis, rank).ok_or_else(|| OpError::attribute("axis", format!("{} is out of range for data of rank {rank}", self.axis)))
    }
}

/// Indices made non-negative, each checked against the axis size.
fn gather_indices(indices: &[i64], size: usize, axis: usize) -> Result<super::axes::Dims, OpError> {
    indices
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + size as i64 } else { i };
            if (0..size as i64).contains(&j) {
                Ok(j as usize)
            } else {
                Err(OpError::input(1, format!("index {i} is out of range for axis {axis} of size {size}")))
            }
        })
        .collect()
}

/// Gathers into `out` (outer × indices × inner elements).
fn gather<T: Copy>(data: &[T], shape: &[usize], axis: usize, indices: &[usize], out: &mut [T]) {
    let outer: usize = shape[..axis].iter().product();
    let size = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut rows = out.chunks_exact_mut(inner.max(1));
    for o in 0..outer {
        for &i in indices {
            let s = (o * size + i) * inner;
            if let Some(row) = rows.next() {
                row.copy_from_slice(&data[s..s + inner]);
            }
        }
    }
}

impl Op for Gather {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let (x, idx) = (required(inputs, 0)?, required(inputs, 1)?);
        let axis = self.axis(x.shape.len())?;
        if let (Some(values), Dim::Known(size)) = (fact_ints(idx, 1, "indices")?, &x.shape[axis]) {
            gather_indices(&values, *size, axis)?;
        }
        let mut dims = x.shape[..axis].to_vec();
        dims.extend(idx.shape.iter().cloned());
        dims.extend(x.shape[axis + 1..].iter().cloned());
        Ok(vec![Fact::new(x.dtype, dims)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let (x, idx) = (required(inputs, 0)?, required(inputs, 1)?);
        let axis = self.axis(x.rank())?;
        let indices = gather_indices(&ints(idx, 1, "indices")?, x.shape()[axis], axis)?;
        let mut shape = super::axes::Dims::from_slice(&x.shape()[..axis]);
        shape.extend_from_slice(idx.shape());
        shape.extend_from_slice(&x.shape()[axis + 1..]);
        let out = output(outputs, 0)?.reset(x.dtype(), &shape)?;
        crate::dispatch!(x.dtype(), T => gather::<T>(T::slice(x.data()).unwrap_or_default(), x.shape(), axis, &indices, T::slice_mut(out).unwrap_or_default()));
        Ok(())
    }
}

// ----------------------------------------------- ConstantOfShape, Constant

#[derive(Debug)]
struct ConstantOfShape {
    /// One element.
    value: Tensor,
}

impl Op for ConstantOfShape {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let s = required(inputs, 0)?;
        if s.shape.len() != 1 {
            return Err(OpError::input(0, format!("shape must be 1-D, got rank {}", s.shape.len())));
        }
        let dims = match fact_ints(s, 0, "shape")? {
            Some(values) => known(&output_shape(&values)?).into_vec(),
            None => match s.shape[0] {
                Dim::Known(k) => vec![Dim::Unknown; k],
                _ => return Ok(vec![]),
            },
        };
        Ok(vec![Fact::new(self.value.dtype(), dims)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let s = required(inputs, 0)?;
        if s.rank() != 1 {
            return Err(OpError::input(0, format!("shape must be 1-D, got shape {:?}", s.shape())));
        }
        let shape = output_shape(&ints(s, 0, "shape")?)?;
        let dtype = self.value.dtype();
        let out = output(outputs, 0)?.reset(dtype, &shape)?;
        crate::dispatch!(dtype, T => T::slice_mut(out).unwrap_or_default().fill(T::slice(self.value.data()).unwrap_or_default()[0]));
        Ok(())
    }
}

fn output_shape(values: &[i64]) -> Result<Vec<usize>, OpError> {
    let shape = values
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| OpError::input(0, format!("shape {} has a negative dimension", show(values)))))
        .collect::<Result<Vec<_>, _>>()?;
    if shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).is_none_or(|n| n > isize::MAX as usize / 8) {
        return Err(OpError::input(0, format!("shape {} has too many elements", show(values))));
    }
    Ok(shape)
}

fn constant_of_shape(node: &Node, _: i64) -> Result<Box<dyn Op>, OpError> {
    let value = match Attrs(node).tensor("value")? {
        None => Tensor::scalar_f32(0.0),
        Some(t) if t.len() == 1 => t.clone(),
        Some(t) => return Err(OpError::attribute("value", format!("must hold one element, got shape {:?}", t.shape()))),
    };
    Ok(Box::new(ConstantOfShape { value }))
}

#[derive(Debug)]
struct Constant {
    value: Tensor,
}

impl Op for Constant {
    fn infer(&self, _: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        Ok(vec![Fact::constant(self.value.clone())])
    }

    fn eval(&self, _: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        copy(outputs, self.value.shape(), &self.value)
    }
}

const CONSTANT_ATTRIBUTES: [&str; 8] = ["value", "value_float", "value_floats", "value_int", "value_ints", "value_string", "value_strings", "sparse_value"];

fn constant(node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError> {
    let a = Attrs(node);
    let present: Vec<&str> = CONSTANT_ATTRIBUTES.into_iter().filter(|n| a.get(n).is_some()).collect();
    let name = match present.as_slice() {
        [one] => *one,
        [] => return Err(OpError::attribute("value", "Constant needs one of value, value_float(s), value_int(s)")),
        [_, second, ..] => return Err(OpError::attribute(second, format!("Constant takes exactly one value attribute, got {present:?}"))),
    };
    if name != "value" && opset < 12 {
        let what = if name == "sparse_value" && opset >= 11 { "sparse constants are not supported" } else { "not defined before opset 12" };
        return Err(OpError::attribute(name, what));
    }
    let bad = |e: crate::tensor::TensorError| OpError::attribute(name, e.to_string());
    let value = match name {
        "value" => a.tensor(name)?.cloned().ok_or_else(|| OpError::attribute(name, "missing"))?,
        "value_float" => Tensor::scalar_f32(a.float(name, 0.0)?),
        "value_floats" => {
            let v = a.floats(name)?.unwrap_or_default();
            Tensor::f32(vec![v.len()], v).map_err(bad)?
        }
        "value_int" => Tensor::i64(vec![], vec![a.int(name, 0)?]).map_err(bad)?,
        "value_ints" => {
            let v = a.ints(name)?.unwrap_or_default();
            Tensor::i64(vec![v.len()], v).map_err(bad)?
        }
        other => return Err(OpError::attribute(other, "string and sparse constants are not supported")),
    };
    Ok(Box::new(Constant { value }))
}

// ---------------------------------------------------- Identity, Dropout

#[derive(Debug)]
struct Identity;

impl Op for Identity {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        Ok(vec![required(inputs, 0)?.clone()])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        copy(outputs, x.shape(), x)
    }
}

/// Dropout in inference mode: the output is the input; the mask, when
/// requested, keeps everything (bool from opset 10, the input's type
/// before). From opset 12 the ratio and `training_mode` are inputs; a true
/// training mode with a non-zero ratio is refused (byob only infers).
#[derive(Debug)]
struct Dropout {
    opset: i64,
    mask: bool,
}

impl Dropout {
    fn mask_dtype(&self, dtype: DataType) -> DataType {
        if self.opset >= 10 {
            DataType::Bool
        } else {
            dtype
        }
    }

    fn check_data(dtype: DataType) -> Result<(), OpError> {
        match dtype {
            DataType::F32 | DataType::F64 => Ok(()),
            other => Err(OpError::input(0, format!("expected float or double, got {other}"))),
        }
    }

    /// Refuses training mode with a non-zero ratio (`None`: not known yet).
    fn check_training(training: Option<bool>, ratio: Option<f64>) -> Result<(), OpError> {
        match (training, ratio) {
            (Some(true), Some(r)) if r == 0.0 => Ok(()),
            (Some(true), Some(r)) => {
                Err(OpError::input(2, format!("training_mode is true with ratio {r}: random training-mode dropout is not supported (byob runs inference)")))
            }
            _ => Ok(()),
        }
    }
}

fn scalar_f64(t: &Tensor) -> Option<f64> {
    match t.data() {
        Data::F32(v) if v.len() == 1 => Some(v[0] as f64),
        Data::F64(v) if v.len() == 1 => Some(v[0]),
        _ => None,
    }
}

fn scalar_bool(t: &Tensor) -> Option<bool> {
    match t.data() {
        Data::Bool(v) if v.len() == 1 => Some(v[0]),
        _ => None,
    }
}

impl Op for Dropout {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        Self::check_data(x.dtype)?;
        if self.opset >= 12 {
            let ratio = inputs.get(1).copied().flatten();
            let training = inputs.get(2).copied().flatten();
            if let Some(r) = ratio {
                if !matches!(r.dtype, DataType::F32 | DataType::F64) || r.concrete_shape().is_some_and(|s| s.iter().product::<usize>() != 1) {
                    return Err(OpError::input(1, format!("ratio must be a float scalar, got {} {}", r.dtype, show(&r.shape))));
                }
            }
            if let Some(t) = training {
                if t.dtype != DataType::Bool || t.concrete_shape().is_some_and(|s| s.iter().product::<usize>() != 1) {
                    return Err(OpError::input(2, format!("training_mode must be a bool scalar, got {} {}", t.dtype, show(&t.shape))));
                }
            }
            let ratio_value = match ratio {
                None => Some(0.5),
                Some(r) => r.value.as_ref().and_then(scalar_f64),
            };
            Self::check_training(training.and_then(|t| t.value.as_ref()).and_then(scalar_bool), ratio_value)?;
        }
        let mut out = vec![Fact::new(x.dtype, x.shape.clone())];
        if self.mask {
            out.push(Fact::new(self.mask_dtype(x.dtype), x.shape.clone()));
        }
        Ok(out)
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        Self::check_data(x.dtype())?;
        if self.opset >= 12 {
            let ratio = match inputs.get(1).copied().flatten() {
                None => 0.5,
                Some(r) => scalar_f64(r).ok_or_else(|| OpError::input(1, format!("ratio must be a float scalar, got {} {:?}", r.dtype(), r.shape())))?,
            };
            let training = match inputs.get(2).copied().flatten() {
                None => false,
                Some(t) => scalar_bool(t).ok_or_else(|| OpError::input(2, format!("training_mode must be a bool scalar, got {} {:?}", t.dtype(), t.shape())))?,
            };
            Self::check_training(Some(training), Some(ratio))?;
        }
        copy(outputs, x.shape(), x)?;
        if self.mask {
            match output(outputs, 1)?.reset(self.mask_dtype(x.dtype()), x.shape())? {
                Data::F64(m) => m.fill(1.0),
                Data::F32(m) => m.fill(1.0),
                Data::Bool(m) => m.fill(true),
                _ => unreachable!("masks are bool, float or double"),
            }
        }
        Ok(())
    }
}

fn dropout(node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError> {
    if opset < 12 {
        let ratio = Attrs(node).float("ratio", 0.5)?;
        if !(0.0..=1.0).contains(&ratio) {
            return Err(OpError::attribute("ratio", format!("{ratio} is not in [0, 1]")));
        }
    }
    let mask = node.outputs.get(1).is_some_and(|o| !o.is_empty());
    Ok(Box::new(Dropout { opset, mask }))
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("Shape", shape);
    ops.insert("Size", |_, _| Ok(Box::new(Size)));
    ops.insert("Reshape", reshape);
    ops.insert("Transpose", |n, _| Ok(Box::new(Transpose { perm: Attrs(n).ints("perm")? })));
    ops.insert("Concat", concat);
    ops.insert("Unsqueeze", |n, o| Ok(Box::new(Unsqueeze { axes: axes_builder(n, o, 13, true)? })));
    ops.insert("Squeeze", |n, o| Ok(Box::new(Squeeze { axes: axes_builder(n, o, 13, false)? })));
    ops.insert("Flatten", |n, _| Ok(Box::new(Flatten { axis: Attrs(n).int("axis", 1)? })));
    ops.insert("Gather", |n, _| Ok(Box::new(Gather { axis: Attrs(n).int("axis", 0)? })));
    ops.insert("ConstantOfShape", constant_of_shape);
    ops.insert("Constant", constant);
    ops.insert("Identity", |_, _| Ok(Box::new(Identity)));
    ops.insert("Dropout", dropout);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Attribute, Graph, Model, ValueInfo};
    use crate::session::SessionBuilder;

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap()
    }

    fn node(op: &str, outputs: usize, attributes: Vec<(&str, Attribute)>) -> Node {
        Node {
            name: op.to_string(),
            op_type: op.to_string(),
            domain: String::new(),
            inputs: vec![],
            outputs: (0..outputs).map(|i| format!("y{i}")).collect(),
            attributes: attributes.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    fn build(op: &str, opset: i64, outputs: usize, attributes: Vec<(&str, Attribute)>) -> Result<Box<dyn Op>, OpError> {
        let mut ops = HashMap::new();
        register(&mut ops);
        ops[op](&node(op, outputs, attributes), opset)
    }

    /// Evaluates, and checks that inference over the same (constant)
    /// inputs agrees on type and shape.
    fn run(op: &dyn Op, inputs: &[&Tensor]) -> Result<Vec<Tensor>, OpError> {
        let facts: Vec<Fact> = inputs.iter().map(|t| Fact::constant((*t).clone())).collect();
        let inferred = op.infer(&facts.iter().map(Some).collect::<Vec<_>>())?;
        let out = op.eval_new(&inputs.iter().map(|t| Some(*t)).collect::<Vec<_>>(), inferred.len().max(1), &pool())?;
        for (f, t) in inferred.iter().zip(&out) {
            assert_eq!(f.dtype, t.dtype());
            assert_eq!(f.concrete_shape().as_deref(), Some(t.shape()));
        }
        Ok(out)
    }

    fn f32t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::f32(shape.to_vec(), v.to_vec()).unwrap()
    }

    fn i64t(shape: &[usize], v: &[i64]) -> Tensor {
        Tensor::i64(shape.to_vec(), v.to_vec()).unwrap()
    }

    fn iota(shape: &[usize]) -> Tensor {
        let n = shape.iter().product::<usize>();
        f32t(shape, &(0..n).map(|i| i as f32).collect::<Vec<_>>())
    }

    #[test]
    fn reshape_zero_and_minus_one() {
        let op = build("Reshape", 13, 1, vec![]).unwrap();
        let x = iota(&[2, 3, 4]);
        let y = run(&*op, &[&x, &i64t(&[2], &[0, -1])]).unwrap().remove(0);
        assert_eq!(y.shape(), &[2, 12]);
        assert_eq!(y.data(), x.data());
        // 0 copies input dimension 1 (3): [-1, 0] -> [8, 3].
        assert_eq!(run(&*op, &[&x, &i64t(&[2], &[-1, 0])]).unwrap()[0].shape(), &[8, 3]);
        let err = run(&*op, &[&iota(&[2, 3]), &i64t(&[2], &[4, -1])]).unwrap_err();
        assert!(err.to_string().starts_with("input 1: cannot reshape [2, 3] to [4, -1]"), "{err}");
        let err = run(&*op, &[&x, &i64t(&[2], &[5, 5])]).unwrap_err();
        assert!(err.to_string().contains("the input has 24 elements, the shape 25"), "{err}");
        assert!(run(&*op, &[&x, &i64t(&[3], &[-1, -1, 2])]).is_err());
        // allowzero (opset 14+): 0 is a real zero.
        let op = build("Reshape", 14, 1, vec![("allowzero", Attribute::Int(1))]).unwrap();
        assert_eq!(run(&*op, &[&iota(&[0, 3]), &i64t(&[2], &[3, 0])]).unwrap()[0].shape(), &[3, 0]);
        // Symbolic dims cancel in inference: [N, 3, 4] -> [0, -1] is [N, 12].
        let op = build("Reshape", 13, 1, vec![]).unwrap();
        let n = Dim::Symbolic("N".into());
        let data = Fact::new(DataType::F32, vec![n.clone(), Dim::Known(3), Dim::Known(4)]);
        let shape = Fact::constant(i64t(&[2], &[0, -1]));
        let out = op.infer(&[Some(&data), Some(&shape)]).unwrap();
        assert_eq!(out[0].shape, vec![n, Dim::Known(12)]);
    }

    /// Reference transpose by index arithmetic.
    fn naive_transpose(x: &Tensor, perm: &[usize]) -> Vec<f32> {
        let shape = x.shape();
        let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        let v = x.as_f32().unwrap();
        (0..x.len())
            .map(|mut i| {
                let mut idx = vec![0; shape.len()];
                for d in (0..shape.len()).rev() {
                    idx[perm[d]] = i % out_shape[d];
                    i /= out_shape[d];
                }
                v[idx.iter().zip(shape).fold(0, |acc, (&k, &n)| acc * n + k)]
            })
            .collect()
    }

    #[test]
    fn transpose() {
        let op = build("Transpose", 13, 1, vec![]).unwrap();
        let y = run(&*op, &[&f32t(&[2, 3], &[1., 2., 3., 4., 5., 6.])]).unwrap().remove(0);
        assert_eq!(y.shape(), &[3, 2]);
        assert_eq!(y.as_f32().unwrap(), &[1., 4., 2., 5., 3., 6.]);
        // NCHW -> NHWC by hand: [1, 2, 2, 2].
        let op = build("Transpose", 13, 1, vec![("perm", Attribute::Ints(vec![0, 2, 3, 1]))]).unwrap();
        let y = run(&*op, &[&iota(&[1, 2, 2, 2])]).unwrap().remove(0);
        assert_eq!(y.shape(), &[1, 2, 2, 2]);
        assert_eq!(y.as_f32().unwrap(), &[0., 4., 1., 5., 2., 6., 3., 7.]);
        // Every permutation of a 4-D tensor (with a size-1 axis too), and
        // large ones that run in parallel.
        let shapes: [&[usize]; 3] = [&[2, 3, 4, 5], &[3, 1, 4, 2], &[2, 130, 3, 60]];
        for shape in shapes {
            let x = iota(shape);
            for a in 0..4 {
                for b in 0..4 {
                    for c in 0..4 {
                        if a == b || b == c || a == c {
                            continue;
                        }
                        let perm = [a, b, c, 6 - a - b - c];
                        let op = Transpose { perm: Some(perm.iter().map(|&p| p as i64).collect()) };
                        let y = op.eval_new(&[Some(&x)], 1, &pool()).unwrap().remove(0);
                        assert_eq!(y.as_f32().unwrap(), naive_transpose(&x, &perm), "{shape:?} {perm:?}");
                    }
                }
            }
        }
        // A large one, and large ones of a few rows (an image's colours,
        // interleaved in parallel chunks; one of them ragged).
        for shape in [[300, 170], [3, 40_001], [8, 5_000], [5, 9_000]] {
            let big = iota(&shape);
            let y = Transpose { perm: None }.eval_new(&[Some(&big)], 1, &pool()).unwrap().remove(0);
            assert_eq!(y.as_f32().unwrap(), naive_transpose(&big, &[1, 0]), "{shape:?}");
        }
        let big = iota(&[300, 170]);
        let err = Transpose { perm: Some(vec![0, 0]) }.eval_new(&[Some(&big)], 1, &pool()).unwrap_err();
        assert!(matches!(err, OpError::Attribute { ref name, .. } if name == "perm"), "{err}");
        // Other element types.
        let ints = Tensor::new(vec![2, 2], Data::Bool(vec![true, true, false, false])).unwrap();
        assert_eq!(Transpose { perm: None }.eval_new(&[Some(&ints)], 1, &pool()).unwrap()[0].data(), &Data::Bool(vec![true, false, true, false]));
    }

    #[test]
    fn gather_negative_indices() {
        let data = f32t(&[3, 2], &[1., 2., 3., 4., 5., 6.]);
        let op = build("Gather", 13, 1, vec![]).unwrap();
        let y = run(&*op, &[&data, &i64t(&[2], &[-1, 0])]).unwrap().remove(0);
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(y.as_f32().unwrap(), &[5., 6., 1., 2.]);
        // Scalar index along axis 1 (int32 indices).
        let op = build("Gather", 13, 1, vec![("axis", Attribute::Int(-1))]).unwrap();
        let idx = Tensor::new(vec![], Data::I32(vec![-1])).unwrap();
        let y = run(&*op, &[&data, &idx]).unwrap().remove(0);
        assert_eq!(y.shape(), &[3]);
        assert_eq!(y.as_f32().unwrap(), &[2., 4., 6.]);
        // 2-D indices over i64 data: shape [2, 2, 2] -> out [2, 2].
        let op = build("Gather", 13, 1, vec![]).unwrap();
        let y = run(&*op, &[&i64t(&[3], &[10, 20, 30]), &i64t(&[2, 2], &[2, 0, -2, 1])]).unwrap().remove(0);
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(y.as_i64().unwrap(), &[30, 10, 20, 20]);
        let err = run(&*op, &[&data, &i64t(&[1], &[3])]).unwrap_err();
        assert_eq!(err, OpError::input(1, "index 3 is out of range for axis 0 of size 3"));
        let err = run(&*op, &[&data, &f32t(&[1], &[0.])]).unwrap_err();
        assert!(matches!(err, OpError::Input { index: 1, .. }), "{err}");
    }

    #[test]
    fn concat_negative_axis() {
        let op = build("Concat", 13, 1, vec![("axis", Attribute::Int(-1))]).unwrap();
        let y = run(&*op, &[&f32t(&[2, 1], &[1., 2.]), &f32t(&[2, 2], &[3., 4., 5., 6.])]).unwrap().remove(0);
        assert_eq!(y.shape(), &[2, 3]);
        assert_eq!(y.as_f32().unwrap(), &[1., 3., 4., 2., 5., 6.]);
        let op = build("Concat", 13, 1, vec![("axis", Attribute::Int(0))]).unwrap();
        let y = run(&*op, &[&i64t(&[1], &[7]), &i64t(&[0], &[]), &i64t(&[2], &[8, 9])]).unwrap().remove(0);
        assert_eq!(y.as_i64().unwrap(), &[7, 8, 9]);
        let err = run(&*op, &[&f32t(&[2, 1], &[1., 2.]), &f32t(&[2, 2], &[3., 4., 5., 6.])]).unwrap_err();
        assert!(matches!(err, OpError::Input { index: 1, .. }), "{err}");
        assert!(build("Concat", 13, 1, vec![]).is_err());
    }

    #[test]
    fn shape_folds_to_a_constant() {
        let op = build("Shape", 13, 1, vec![]).unwrap();
        let fact = Fact::new(DataType::F32, vec![Dim::Known(2), Dim::Known(3)]);
        assert_eq!(op.infer(&[Some(&fact)]).unwrap()[0].value, Some(i64t(&[2], &[2, 3])));
        let symbolic = Fact::new(DataType::F32, vec![Dim::Symbolic("N".into()), Dim::Known(3)]);
        let out = op.infer(&[Some(&symbolic)]).unwrap();
        assert_eq!((out[0].value.as_ref(), &out[0].shape), (None, &vec![Dim::Known(2)]));
        // Opset 15 start/end: the known tail is still a constant.
        let op = build("Shape", 15, 1, vec![("start", Attribute::Int(-1))]).unwrap();
        assert_eq!(op.infer(&[Some(&symbolic)]).unwrap()[0].value, Some(i64t(&[1], &[3])));
        let op = build("Shape", 15, 1, vec![("start", Attribute::Int(1)), ("end", Attribute::Int(-1))]).unwrap();
        assert_eq!(run(&*op, &[&iota(&[2, 3, 4])]).unwrap()[0], i64t(&[1], &[3]));
    }

    #[test]
    fn unsqueeze_squeeze_flatten() {
        let x = f32t(&[3], &[1., 2., 3.]);
        let op = build("Unsqueeze", 11, 1, vec![("axes", Attribute::Ints(vec![0, -1]))]).unwrap();
        assert_eq!(run(&*op, &[&x]).unwrap()[0].shape(), &[1, 3, 1]);
        assert!(build("Unsqueeze", 11, 1, vec![]).is_err());
        let op = build("Unsqueeze", 13, 1, vec![]).unwrap();
        assert_eq!(run(&*op, &[&x, &i64t(&[1], &[1])]).unwrap()[0].shape(), &[3, 1]);
        assert!(run(&*op, &[&x, &i64t(&[2], &[0, 0])]).is_err());
        assert!(run(&*op, &[&x]).is_err());

        let y = f32t(&[1, 3, 1], &[1., 2., 3.]);
        let op = build("Squeeze", 11, 1, vec![]).unwrap();
        assert_eq!(run(&*op, &[&y]).unwrap()[0].shape(), &[3]);
        let op = build("Squeeze", 13, 1, vec![]).unwrap();
        assert_eq!(run(&*op, &[&y, &i64t(&[1], &[-1])]).unwrap()[0].shape(), &[1, 3]);
        let err = run(&*op, &[&y, &i64t(&[1], &[1])]).unwrap_err();
        assert!(err.to_string().contains("size is 3, not 1"), "{err}");
        // Unknown rank: no facts.
        let fact = Fact::new(DataType::F32, vec![Dim::Symbolic("N".into()), Dim::Known(3)]);
        assert!(op.infer(&[Some(&fact)]).unwrap().is_empty());

        let z = iota(&[2, 3, 4]);
        let op = build("Flatten", 13, 1, vec![("axis", Attribute::Int(2))]).unwrap();
        assert_eq!(run(&*op, &[&z]).unwrap()[0].shape(), &[6, 4]);
        let op = build("Flatten", 13, 1, vec![("axis", Attribute::Int(0))]).unwrap();
        assert_eq!(run(&*op, &[&z]).unwrap()[0].shape(), &[1, 24]);
        let op = build("Flatten", 13, 1, vec![("axis", Attribute::Int(-1))]).unwrap();
        assert_eq!(run(&*op, &[&z]).unwrap()[0].shape(), &[6, 4]);
        let op = build("Flatten", 13, 1, vec![("axis", Attribute::Int(4))]).unwrap();
        assert!(run(&*op, &[&z]).is_err());
    }

    #[test]
    fn constants_identity_dropout() {
        let op = build("ConstantOfShape", 13, 1, vec![("value", Attribute::Tensor(i64t(&[1], &[7])))]).unwrap();
        let y = run(&*op, &[&i64t(&[2], &[2, 2])]).unwrap().remove(0);
        assert_eq!(y, i64t(&[2, 2], &[7; 4]));
        let op = build("ConstantOfShape", 13, 1, vec![]).unwrap();
        assert_eq!(run(&*op, &[&i64t(&[1], &[3])]).unwrap()[0], f32t(&[3], &[0.; 3]));
        assert!(run(&*op, &[&i64t(&[1], &[-3])]).is_err());

        let op = build("Constant", 13, 1, vec![("value_ints", Attribute::Ints(vec![1, -1]))]).unwrap();
        assert_eq!(op.infer(&[]).unwrap()[0].value, Some(i64t(&[2], &[1, -1])));
        let op = build("Constant", 13, 1, vec![("value_float", Attribute::Float(2.5))]).unwrap();
        assert_eq!(op.eval_new(&[], 1, &pool()).unwrap()[0], Tensor::scalar_f32(2.5));
        assert!(build("Constant", 11, 1, vec![("value_float", Attribute::Float(2.5))]).is_err());
        assert!(build("Constant", 13, 1, vec![]).is_err());

        let x = f32t(&[2], &[1., 2.]);
        let op = build("Identity", 13, 1, vec![]).unwrap();
        assert_eq!(run(&*op, &[&x]).unwrap()[0], x);
        let op = build("Dropout", 13, 2, vec![]).unwrap();
        let out = run(&*op, &[&x]).unwrap();
        assert_eq!(out, vec![x.clone(), Tensor::new(vec![2], Data::Bool(vec![true, true])).unwrap()]);
        let training = Tensor::new(vec![], Data::Bool(vec![true])).unwrap();
        let err = run(&*op, &[&x, &Tensor::scalar_f32(0.1), &training]).unwrap_err();
        assert!(matches!(err, OpError::Input { index: 2, .. }), "{err}");
        assert_eq!(run(&*op, &[&x, &Tensor::scalar_f32(0.0), &training]).unwrap()[0], x);
        // Opset 7: ratio attribute, mask of the input's type.
        let op = build("Dropout", 7, 2, vec![("ratio", Attribute::Float(0.3))]).unwrap();
        assert_eq!(run(&*op, &[&x]).unwrap()[1], f32t(&[2], &[1., 1.]));
        let op = build("Dropout", 10, 1, vec![]).unwrap();
        assert_eq!(run(&*op, &[&x]).unwrap().len(), 1);
    }

    /// Shape -> Gather -> Unsqueeze -> Concat folds at session creation,
    /// leaving only the Reshape to run.
    #[test]
    fn shape_chain_folds_in_a_session() {
        let n = |op: &str, inputs: &[&str], output: &str, attributes: Vec<(&str, Attribute)>| Node {
            name: output.to_string(),
            op_type: op.to_string(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![output.to_string()],
            attributes: attributes.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        };
        let graph = Graph {
            nodes: vec![
                n("Shape", &["x"], "s", vec![]),
                n("Gather", &["s", "zero"], "batch", vec![]),
                n("Unsqueeze", &["batch", "axes"], "batch1", vec![]),
                n("Concat", &["batch1", "minus_one"], "target", vec![("axis", Attribute::Int(0))]),
                n("Reshape", &["x", "target"], "y", vec![]),
            ],
            inputs: vec![ValueInfo { name: "x".into(), dtype: Some(DataType::F32), shape: Some(known(&[2, 3, 4]).into_vec()) }],
            outputs: vec![ValueInfo { name: "y".into(), dtype: None, shape: None }],
            initializers: [("zero", i64t(&[], &[0])), ("axes", i64t(&[1], &[0])), ("minus_one", i64t(&[1], &[-1]))].into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        };
        let model = Model { ir_version: 8, producer: "test".into(), opsets: [(String::new(), 13)].into_iter().collect(), graph };
        let session = SessionBuilder::new().with_intra_op_threads(1).commit(model).unwrap();
        assert_eq!(session.optimizations().folded, 4);
        assert_eq!(session.placements().iter().map(|p| p.op_type.as_str()).collect::<Vec<_>>(), ["Reshape"]);
        let x = iota(&[2, 3, 4]);
        let y = session.run(vec![("x".into(), x.clone())]).unwrap().remove(0).1;
        assert_eq!(y.shape(), &[2, 12]);
        assert_eq!(y.data(), x.data());
    }
}
