//! Reductions: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd,
//! ReduceL1, ReduceL2, ReduceLogSum, ReduceLogSumExp, ReduceSumSquare, and
//! ArgMax/ArgMin.
//!
//! The axes are an attribute before opset 13 (ReduceSum) or 18 (the
//! others) and an optional input after, with `noop_with_empty_axes`
//! choosing between the identity and a reduction over every axis when they
//! are empty. Sums accumulate in f64; Max and Min compare in the element
//! type and propagate NaN, as numpy does. A reduction over no elements
//! gives the operation's identity (0 for sums, 1 for products, -inf for
//! Max and the logarithms, +inf for Min, NaN for Mean).

use crate::kernels::sums;
use super::axes::{axes_builder, normalize_axis, unique_axes, Axes, AxesFact};
use super::{output, required, Attrs, Builder, Fact, Op, OpError};
use crate::element::Element;
use crate::model::{Dim, Node};
use crate::tensor::{DataType, Tensor};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

impl Kind {
    /// Max and Min keep the element type's values; the others compute in f64.
    fn compares(self) -> bool {
        matches!(self, Self::Max | Self::Min)
    }

    fn start(self) -> f64 {
        match self {
            Self::Prod => 1.0,
            Self::Max => f64::NEG_INFINITY,
            Self::Min => f64::INFINITY,
            _ => 0.0,
        }
    }

    #[inline]
    fn add(self, acc: f64, x: f64) -> f64 {
        match self {
            Self::Sum | Self::Mean | Self::LogSum => acc + x,
            Self::Prod => acc * x,
            Self::L1 => acc + x.abs(),
            Self::L2 | Self::SumSquare => acc + x * x,
            // LogSumExp adds exp(x - max) in a second pass.
            Self::LogSumExp => acc + x.exp(),
            Self::Max | Self::Min => unreachable!("compared in the element type"),
        }
    }

    /// Whether it is a sum of a function of each element (the contiguous
    /// fast path's kinds).
    fn sums(self) -> bool {
        matches!(self, Self::Sum | Self::Mean | Self::LogSum | Self::L1 | Self::L2 | Self::SumSquare)
    }

    /// The accumulated sum of `run`, for the kinds [`sums`](Self::sums)
    /// accepts.
    fn sum_run(self, run: &[f32]) -> f64 {
        match self {
            Self::L1 => sums::sum_by(run, f64::abs),
            Self::L2 | Self::SumSquare => sums::sum_by(run, |x| x * x),
            _ => sums::sum_by(run, |x| x),
        }
    }

    fn finish(self, acc: f64, count: usize) -> f64 {
        match self {
            Self::Mean => acc / count as f64,
            Self::L2 => acc.sqrt(),
            Self::LogSum | Self::LogSumExp => acc.ln(),
            _ => acc,
        }
    }

    fn types(self) -> &'static [DataType] {
        use DataType::*;
        match self {
            // Opset 20 added bool to Max and Min.
            Self::Max | Self::Min => &[F32, F64, I64, I32, I8, U8, Bool],
            _ => &[F32, F64, I64, I32, I8, U8],
        }
    }
}

#[derive(Debug)]
struct Reduce {
    kind: Kind,
    axes: Axes,
    keepdims: bool,
    noop_with_empty_axes: bool,
}

/// One flag per axis, on the stack for ranks up to eight.
type Flags = smallvec::SmallVec<[bool; 8]>;

/// Which axes of a rank-`rank` input are reduced, or `None` for the identity.
fn reduced(axes: Option<super::axes::Ints>, rank: usize, noop: bool, error: impl Fn(String) -> OpError) -> Result<Option<Flags>, OpError> {
    match axes {
        Some(axes) if !axes.is_empty() => {
            let axes = unique_axes(&axes, rank).map_err(error)?;
            Ok(Some((0..rank).map(|d| axes.contains(&d)).collect()))
        }
        _ if noop => Ok(None),
        _ => Ok(Some(smallvec::smallvec![true; rank])),
    }
}

/// Which axes of a rank-`rank` input a reduction over `axes` (attribute or
/// input values) reduces, or `None` for the identity (no axes with
/// `noop_with_empty_axes`). For providers that reduce on their own.
pub fn reduced_axes(axes: Option<&[i64]>, rank: usize, noop: bool) -> Result<Option<Vec<bool>>, OpError> {
    Ok(reduced(axes.map(super::axes::Ints::from_slice), rank, noop, |e| OpError::attribute("axes", e))?.map(Flags::into_vec))
}

/// The output shape of a reduction of `shape` over the `reduced` axes.
pub fn reduced_shape(shape: &[usize], reduced: &[bool], keepdims: bool) -> Vec<usize> {
    output_dims(shape, reduced, keepdims, 1).into_vec()
}

fn output_dims<D: Clone>(shape: &[D], reduced: &[bool], keepdims: bool, one: D) -> smallvec::SmallVec<[D; 8]> {
    shape.iter().zip(reduced).filter_map(|(d, &r)| if !r { Some(d.clone()) } else if keepdims { Some(one.clone()) } else { None }).collect()
}

impl Reduce {
    fn check_type(&self, dtype: DataType) -> Result<(), OpError> {
        if self.kind.types().contains(&dtype) {
            Ok(())
        } else {
            Err(OpError::input(0, format!("Reduce{:?} does not support {dtype}", self.kind)))
        }
    }
}

impl Op for Reduce {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        self.check_type(x.dtype)?;
        let axes = match self.axes.of_facts(inputs)? {
            AxesFact::Absent => None,
            AxesFact::Known(axes) => Some(axes),
            AxesFact::Count(Some(0)) => None,
            // Which axes only the run tells; with keepdims the rank stays.
            AxesFact::Count(_) if self.keepdims => return Ok(vec![Fact::new(x.dtype, vec![Dim::Unknown; x.shape.len()])]),
            AxesFact::Count(_) => return Ok(vec![]),
        };
        let shape = match reduced(axes, x.shape.len(), self.noop_with_empty_axes, |e| self.axes.error(e))? {
            None => x.shape.clone(),
            Some(r) => output_dims(&x.shape, &r, self.keepdims, Dim::Known(1)).into_vec(),
        };
        Ok(vec![Fact::new(x.dtype, shape)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        self.check_type(x.dtype())?;
        let out = output(outputs, 0)?;
        let Some(reduced) = reduced(self.axes.of_tensors(inputs)?, x.rank(), self.noop_with_empty_axes, |e| self.axes.error(e))? else {
            out.copy_from(x.shape(), x.data())?;
            return Ok(());
        };
        let shape = output_dims(x.shape(), &reduced, self.keepdims, 1);
        let walk = Walk::new(x.shape(), &reduced);
        // Trailing axes of f32 (a mean over each row, a decomposed
        // LayerNorm's): contiguous runs, summed in independent chains.
        let trailing = reduced.iter().skip_while(|&&r| !r).all(|&r| r);
        if let (true, Some(values)) = (trailing && walk.count > 0 && self.kind.sums(), x.as_f32()) {
            let out = out.reset_f32(&shape)?;
            for (o, run) in out.iter_mut().zip(values.chunks_exact(walk.count)) {
                *o = self.kind.finish(self.kind.sum_run(run), walk.count) as f32;
            }
            return Ok(());
        }
        crate::dispatch!(x.dtype(), T => reduce::<T>(self.kind, &walk, x.elements::<T>().unwrap_or_default(), out.reset_as::<T>(&shape)?));
        Ok(())
    }
}

/// For each input element in row-major order, the output element it
/// reduces into (an odometer over the input's index).
pub(crate) struct Walk {
    shape: super::axes::Dims,
    /// Output strides per input axis, 0 on reduced axes.
    strides: super::axes::Dims,
    pub(crate) outputs: usize,
    /// Input elements per output element.
    pub(crate) count: usize,
}

impl Walk {
    pub(crate) fn new(shape: &[usize], reduced: &[bool]) -> Self {
        let mut strides: super::axes::Dims = smallvec::smallvec![0; shape.len()];
        let mut acc = 1;
        for d in (0..shape.len()).rev() {
            if !reduced[d] {
                strides[d] = acc;
                acc *= shape[d];
            }
        }
        let count = shape.iter().zip(reduced).filter(|(_, &r)| r).map(|(d, _)| d).product();
        Self { shape: shape.into(), strides, outputs: acc, count }
    }

    /// Calls `f(output index, input element)` for every input element.
    pub(crate) fn each<T: Copy>(&self, x: &[T], mut f: impl FnMut(usize, T)) {
        if x.is_empty() {
            return;
        }
        let rank = self.shape.len();
        let mut index: super::axes::Dims = smallvec::smallvec![0; rank];
        let mut at = 0;
        for &v in x {
            f(at, v);
            for d in (0..rank).rev() {
                index[d] += 1;
                at += self.strides[d];
                if index[d] < self.shape[d] {
                    break;
                }
                at -= self.strides[d] * self.shape[d];
                index[d] = 0;
            }
        }
    }
}

fn reduce<T: Element>(kind: Kind, walk: &Walk, x: &[T], out: &mut [T]) {
    debug_assert_eq!(out.len(), walk.outputs);
    if kind.compares() {
        // NaN (the only value unequal to itself) wins, as in numpy.
        // On the stack for up to 16 outputs (a mean over a whole frame).
        let mut first: smallvec::SmallVec<[bool; 16]> = smallvec::smallvec![true; out.len()];
        let mut start = T::from_f64(kind.start());
        if T::DTYPE == DataType::Bool {
            start = T::from_f64(if kind == Kind::Max { 0.0 } else { 1.0 });
        }
        out.fill(start);
        walk.each(x, |o, v| {
            let acc = out[o];
            #[allow(clippy::eq_op)]
            let take = first[o] || v != v || (acc == acc && if kind == Kind::Max { v > acc } else { v < acc });
            if take {
                out[o] = v;
                first[o] = false;
            }
        });
        return;
    }
    let mut acc: smallvec::SmallVec<[f64; 16]> = smallvec::smallvec![kind.start(); out.len()];
    if kind == Kind::LogSumExp {
        let mut max = vec![f64::NEG_INFINITY; out.len()];
        walk.each(x, |o, v| max[o] = max[o].max(v.to_f64()));
        // An infinite maximum would make x - max NaN: subtract nothing there.
        max.iter_mut().filter(|m| !m.is_finite()).for_each(|m| *m = 0.0);
        walk.each(x, |o, v| acc[o] += (v.to_f64() - max[o]).exp());
        for ((o, a), m) in out.iter_mut().zip(acc).zip(max) {
            *o = T::from_f64(a.ln() + m);
        }
        return;
    }
    walk.each(x, |o, v| acc[o] = kind.add(acc[o], v.to_f64()));
    for (o, a) in out.iter_mut().zip(acc) {
        *o = T::from_f64(kind.finish(a, walk.count));
    }
}

fn reduction(kind: Kind, node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError> {
    let a = Attrs(node);
    let input_since = if kind == Kind::Sum { 13 } else { 18 };
    Ok(Box::new(Reduce {
        kind,
        axes: axes_builder(node, opset, input_since, false)?,
        keepdims: a.int("keepdims", 1)? != 0,
        noop_with_empty_axes: a.int("noop_with_empty_axes", 0)? != 0,
    }))
}

/// ArgMax and ArgMin: the int64 index of the first (or, with
/// `select_last_index`, the last) extreme along one axis.
#[derive(Debug)]
struct ArgExtreme {
    max: bool,
    axis: i64,
    keepdims: bool,
    select_last_index: bool,
}

impl ArgExtreme {
    fn axis(&self, rank: usize) -> Result<usize, OpError> {
        normalize_axis(self.axis, rank).ok_or_else(|| OpError::attribute("axis", format!("{} is out of range for rank {rank}", self.axis)))
    }

    fn reduced(&self, rank: usize) -> Result<Vec<bool>, OpError> {
        let axis = self.axis(rank)?;
        Ok((0..rank).map(|d| d == axis).collect())
    }
}

impl Op for ArgExtreme {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        if x.dtype == DataType::Bool {
            return Err(OpError::input(0, "bool has no order to take an extreme of"));
        }
        let reduced = self.reduced(x.shape.len())?;
        Ok(vec![Fact::new(DataType::I64, output_dims(&x.shape, &reduced, self.keepdims, Dim::Known(1)).into_vec())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let axis = self.axis(x.rank())?;
        if x.shape()[axis] == 0 {
            return Err(OpError::input(0, format!("axis {axis} has no elements to take an extreme of")));
        }
        let shape = output_dims(x.shape(), &self.reduced(x.rank())?, self.keepdims, 1);
        let (len, inner) = (x.shape()[axis], x.shape()[axis + 1..].iter().product::<usize>());
        let out = output(outputs, 0)?.reset_as::<i64>(&shape)?;
        crate::dispatch!(x.dtype(), T => arg_extreme::<T>(x.elements::<T>().unwrap_or_default(), len, inner, self.max, self.select_last_index, out));
        Ok(())
    }
}

fn arg_extreme<T: Element>(x: &[T], len: usize, inner: usize, max: bool, last: bool, out: &mut [i64]) {
    for (o, slot) in out.iter_mut().enumerate() {
        let (outer, i) = (o / inner, o % inner);
        let at = |k: usize| x[(outer * len + k) * inner + i];
        let mut best = 0;
        for k in 1..len {
            let (v, b) = (at(k), at(best));
            let better = if max { v > b } else { v < b };
            if better || (last && v == b) {
                best = k;
            }
        }
        *slot = best as i64;
    }
}

fn arg_extreme_builder(max: bool, node: &Node) -> Result<Box<dyn Op>, OpError> {
    let a = Attrs(node);
    Ok(Box::new(ArgExtreme { max, axis: a.int("axis", 0)?, keepdims: a.int("keepdims", 1)? != 0, select_last_index: a.int("select_last_index", 0)? != 0 }))
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("ReduceSum", |n, o| reduction(Kind::Sum, n, o));
    ops.insert("ReduceMean", |n, o| reduction(Kind::Mean, n, o));
    ops.insert("ReduceMax", |n, o| reduction(Kind::Max, n, o));
    ops.insert("ReduceMin", |n, o| reduction(Kind::Min, n, o));
    ops.insert("ReduceProd", |n, o| reduction(Kind::Prod, n, o));
    ops.insert("ReduceL1", |n, o| reduction(Kind::L1, n, o));
    ops.insert("ReduceL2", |n, o| reduction(Kind::L2, n, o));
    ops.insert("ReduceLogSum", |n, o| reduction(Kind::LogSum, n, o));
    ops.insert("ReduceLogSumExp", |n, o| reduction(Kind::LogSumExp, n, o));
    ops.insert("ReduceSumSquare", |n, o| reduction(Kind::SumSquare, n, o));
    ops.insert("ArgMax", |n, _| arg_extreme_builder(true, n));
    ops.insert("ArgMin", |n, _| arg_extreme_builder(false, n));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &dyn Op, x: Tensor, axes: Option<Tensor>) -> Tensor {
        let threads = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        op.eval_new(&[Some(&x), axes.as_ref()], 1, &threads).unwrap().remove(0)
    }

    /// ReduceMean over the middle axis of a 2×3×2 tensor, against the
    /// formula in f64.
    #[test]
    fn mean_over_a_middle_axis() {
        let x: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
        let op = Reduce { kind: Kind::Mean, axes: Axes::Attribute(Some(vec![-2])), keepdims: false, noop_with_empty_axes: false };
        let y = run(&op, Tensor::f32(vec![2, 3, 2], x.clone()).unwrap(), None);
        assert_eq!(y.shape(), &[2, 2]);
        for (o, &got) in y.as_f32().unwrap().iter().enumerate() {
            let (a, c) = (o / 2, o % 2);
            let want: f64 = (0..3).map(|b| x[a * 6 + b * 2 + c] as f64).sum::<f64>() / 3.0;
            assert!((got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    /// Max propagates NaN; an empty reduction gives the identity.
    #[test]
    fn nan_and_empty_reductions() {
        let op = Reduce { kind: Kind::Max, axes: Axes::Attribute(None), keepdims: true, noop_with_empty_axes: false };
        let y = run(&op, Tensor::f32(vec![3], vec![1.0, f32::NAN, 2.0]).unwrap(), None);
        assert!(y.as_f32().unwrap()[0].is_nan());
        let y = run(&op, Tensor::f32(vec![0, 2], vec![]).unwrap(), None);
        assert_eq!((y.shape(), y.as_f32().unwrap()), (&[1, 1][..], &[f32::NEG_INFINITY][..]));
        let prod = Reduce { kind: Kind::Prod, axes: Axes::Attribute(Some(vec![0])), keepdims: false, noop_with_empty_axes: false };
        assert_eq!(run(&prod, Tensor::f32(vec![0, 2], vec![]).unwrap(), None).as_f32().unwrap(), &[1.0, 1.0]);
    }

    #[test]
    fn arg_max_first_and_last() {
        let x = Tensor::f32(vec![2, 3], vec![1.0, 3.0, 3.0, 5.0, 5.0, 0.0]).unwrap();
        let first = ArgExtreme { max: true, axis: 1, keepdims: false, select_last_index: false };
        assert_eq!(run(&first, x.clone(), None).as_i64().unwrap(), &[1, 0]);
        let last = ArgExtreme { max: true, axis: -1, keepdims: true, select_last_index: true };
        let y = run(&last, x, None);
        assert_eq!((y.shape(), y.as_i64().unwrap()), (&[2, 1][..], &[2, 1][..]));
    }
}
