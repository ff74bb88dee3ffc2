//! Comparisons, selections and bit operations, with multidirectional
//! broadcasting: Equal, Less, LessOrEqual, Greater, GreaterOrEqual (bool
//! results), And, Or, Xor, Where, the variadic Max, Min and Mean, and
//! BitwiseAnd, BitwiseOr, BitwiseXor, BitwiseNot and BitShift on integers.

use super::binary::{broadcast_dims, broadcast_into, broadcast_shapes};
use super::{output, required, Builder, Fact, Op, OpError};
use crate::element::Element;
use crate::model::Dim;
use crate::tensor::{DataType, Tensor};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Comparison {
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    And,
    Or,
    Xor,
}

impl Comparison {
    fn check(self, a: DataType, b: DataType) -> Result<(), OpError> {
        if a != b {
            return Err(OpError::input(1, format!("expected {a} like input 0, got {b}")));
        }
        let takes = match self {
            Self::And | Self::Or | Self::Xor => a == DataType::Bool,
            Self::Equal => true,
            _ => a != DataType::Bool,
        };
        if !takes {
            return Err(OpError::input(0, format!("{self:?} does not take {a}")));
        }
        Ok(())
    }
}

fn compare<T: Element>(kind: Comparison, a: &Tensor, b: &Tensor, shape: &[usize], out: &mut [bool], threads: &rayon::ThreadPool) {
    let (x, y) = (a.elements::<T>().unwrap_or_default(), b.elements::<T>().unwrap_or_default());
    let (xs, ys) = (a.shape(), b.shape());
    match kind {
        Comparison::Equal => broadcast_into(x, xs, y, ys, shape, out, threads, |p, q| p == q),
        Comparison::Less => broadcast_into(x, xs, y, ys, shape, out, threads, |p, q| p < q),
        Comparison::LessOrEqual => broadcast_into(x, xs, y, ys, shape, out, threads, |p, q| p <= q),
        Comparison::Greater => broadcast_into(x, xs, y, ys, shape, out, threads, |p, q| p > q),
        Comparison::GreaterOrEqual => broadcast_into(x, xs, y, ys, shape, out, threads, |p, q| p >= q),
        // Bool inputs, checked: `!=` of bools is exclusive or.
        Comparison::And => broadcast_into(x, xs, y, ys, shape, out, threads, |p, q| p.to_f64() != 0.0 && q.to_f64() != 0.0),
        Comparison::Or => broadcast_into(x, xs, y, ys, shape, out, threads, |p, q| p.to_f64() != 0.0 || q.to_f64() != 0.0),
        Comparison::Xor => broadcast_into(x, xs, y, ys, shape, out, threads, |p, q| p != q),
    }
}

#[derive(Debug)]
struct Compare {
    kind: Comparison,
}

impl Op for Compare {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let (a, b) = (required(inputs, 0)?, required(inputs, 1)?);
        self.kind.check(a.dtype, b.dtype)?;
        Ok(vec![Fact::new(DataType::Bool, broadcast_dims(&a.shape, &b.shape)?)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let (a, b) = (required(inputs, 0)?, required(inputs, 1)?);
        self.kind.check(a.dtype(), b.dtype())?;
        let shape = broadcast_shapes(a.shape(), b.shape())?;
        let out = output(outputs, 0)?.reset_as::<bool>(&shape)?;
        crate::dispatch!(a.dtype(), T => compare::<T>(self.kind, a, b, &shape, out, threads));
        Ok(())
    }
}

/// Strides of `shape` right-aligned to the rank `rank`, 0 on axes of size 1
/// (where the input is broadcast).
fn aligned_strides(shape: &[usize], rank: usize) -> Vec<usize> {
    let mut strides = vec![0; rank];
    let mut acc = 1;
    for (k, &d) in shape.iter().enumerate().rev() {
        strides[rank - shape.len() + k] = if d == 1 { 0 } else { acc };
        acc *= d;
    }
    strides
}

/// Calls `f(output index, input offsets)` for each element of `out_shape`,
/// with the offset of the element each broadcast input contributes.
pub(crate) fn broadcast_walk<const N: usize>(shapes: [&[usize]; N], out_shape: &[usize], mut f: impl FnMut(usize, [usize; N])) {
    broadcast_rows(shapes, out_shape, |o, starts, steps, len| {
        let mut at = starts;
        for k in 0..len {
            f(o + k, at);
            for (a, s) in at.iter_mut().zip(steps) {
                *a += s;
            }
        }
    });
}

/// Calls `f(output index, input offsets, input steps, length)` for each
/// row of `out_shape`'s last axis: the row's first output element, where
/// each input's contribution to it starts, and how far each moves per
/// element (0 where broadcast). The carry over the outer axes runs once a
/// row, and a caller may run the row as one vectorised loop.
pub(crate) fn broadcast_rows<const N: usize>(shapes: [&[usize]; N], out_shape: &[usize], mut f: impl FnMut(usize, [usize; N], [usize; N], usize)) {
    let total: usize = out_shape.iter().product();
    if total == 0 {
        return;
    }
    let rank = out_shape.len();
    if rank == 0 {
        return f(0, [0; N], [0; N], 1);
    }
    let strides: Vec<Vec<usize>> = shapes.iter().map(|s| aligned_strides(s, rank)).collect();
    let (row, outer) = (out_shape[rank - 1], rank - 1);
    let step: [usize; N] = std::array::from_fn(|k| strides[k][outer]);
    let mut index = vec![0usize; outer];
    let mut at = [0usize; N];
    let mut o = 0;
    while o < total {
        f(o, at, step, row);
        o += row;
        for d in (0..outer).rev() {
            index[d] += 1;
            for (a, s) in at.iter_mut().zip(&strides) {
                *a += s[d];
            }
            if index[d] < out_shape[d] {
                break;
            }
            for (a, s) in at.iter_mut().zip(&strides) {
                *a -= s[d] * out_shape[d];
            }
            index[d] = 0;
        }
    }
}

/// Where(condition, x, y): x where the condition holds, y elsewhere.
#[derive(Debug)]
struct Where;

impl Op for Where {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let (c, x, y) = (required(inputs, 0)?, required(inputs, 1)?, required(inputs, 2)?);
        if c.dtype != DataType::Bool {
            return Err(OpError::input(0, format!("the condition must be bool, got {}", c.dtype)));
        }
        if x.dtype != y.dtype {
            return Err(OpError::input(2, format!("expected {} like input 1, got {}", x.dtype, y.dtype)));
        }
        Ok(vec![Fact::new(x.dtype, broadcast_dims(&broadcast_dims(&c.shape, &x.shape)?, &y.shape)?)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let (c, x, y) = (required(inputs, 0)?, required(inputs, 1)?, required(inputs, 2)?);
        let condition = c.elements::<bool>().ok_or_else(|| OpError::input(0, format!("the condition must be bool, got {}", c.dtype())))?;
        if x.dtype() != y.dtype() {
            return Err(OpError::input(2, format!("expected {} like input 1, got {}", x.dtype(), y.dtype())));
        }
        let shape = broadcast_shapes(&broadcast_shapes(c.shape(), x.shape())?, y.shape())?;
        let out = output(outputs, 0)?;
        crate::dispatch!(x.dtype(), T => {
            let (xv, yv) = (x.elements::<T>().unwrap_or_default(), y.elements::<T>().unwrap_or_default());
            let o = out.reset_as::<T>(&shape)?;
            broadcast_rows([c.shape(), x.shape(), y.shape()], &shape, |o0, [c0, x0, y0], steps, len| select_row(&mut o[o0..][..len], (condition, c0), (xv, x0), (yv, y0), steps));
        });
        Ok(())
    }
}

/// One row of Where: each output from `x` where the condition holds,
/// else from `y`, each input at its start moving by its step (0: one
/// broadcast value, 1: contiguous). Rows of contiguous or broadcast
/// inputs (an attention mask over a row of scores) run as straight loops
/// over slices, which vectorise.
fn select_row<T: Copy>(out: &mut [T], (c, c0): (&[bool], usize), (x, x0): (&[T], usize), (y, y0): (&[T], usize), steps: [usize; 3]) {
    let len = out.len();
    match steps {
        [1, 1, 1] => out.iter_mut().zip(&c[c0..][..len]).zip(&x[x0..][..len]).zip(&y[y0..][..len]).for_each(|(((o, &c), &x), &y)| *o = if c { x } else { y }),
        [1, 1, 0] => {
            let y = y[y0];
            out.iter_mut().zip(&c[c0..][..len]).zip(&x[x0..][..len]).for_each(|((o, &c), &x)| *o = if c { x } else { y });
        }
        [1, 0, 1] => {
            let x = x[x0];
            out.iter_mut().zip(&c[c0..][..len]).zip(&y[y0..][..len]).for_each(|((o, &c), &y)| *o = if c { x } else { y });
        }
        [0, _, _] if !c[c0] => out.iter_mut().enumerate().for_each(|(k, o)| *o = y[y0 + k * steps[2]]),
        [0, _, _] => out.iter_mut().enumerate().for_each(|(k, o)| *o = x[x0 + k * steps[1]]),
        [cs, xs, ys] => out.iter_mut().enumerate().for_each(|(k, o)| *o = if c[c0 + k * cs] { x[x0 + k * xs] } else { y[y0 + k * ys] }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fold {
    Max,
    Min,
    Mean,
}

/// Max, Min and Mean of one or more inputs, broadcast together. Max and
/// Min propagate NaN, as numpy's maximum and minimum do.
#[derive(Debug)]
struct Variadic {
    fold: Fold,
}

impl Variadic {
    fn check(&self, first: DataType, dtype: DataType, index: usize) -> Result<(), OpError> {
        if dtype != first {
            return Err(OpError::input(index, format!("expected {first} like input 0, got {dtype}")));
        }
        let numeric = dtype != DataType::Bool;
        let float = matches!(dtype, DataType::F32 | DataType::F64);
        if !numeric || (self.fold == Fold::Mean && !float) {
            return Err(OpError::input(index, format!("{:?} does not take {dtype}", self.fold)));
        }
        Ok(())
    }
}

fn fold<T: Element>(fold: Fold, inputs: &[&Tensor], shape: &[usize], out: &mut [T]) {
    let first = inputs[0];
    let x0 = first.elements::<T>().unwrap_or_default();
    broadcast_walk([first.shape()], shape, |o, [i]| out[o] = x0[i]);
    for x in &inputs[1..] {
        let xv = x.elements::<T>().unwrap_or_default();
        broadcast_walk([x.shape()], shape, |o, [i]| {
            let (acc, v) = (out[o], xv[i]);
            #[allow(clippy::eq_op)]
            let nan = v != v;
            out[o] = match fold {
                Fold::Max if nan || v > acc => v,
                Fold::Min if nan || v < acc => v,
                Fold::Mean => T::from_f64(acc.to_f64() + v.to_f64()),
                _ => acc,
            };
        });
    }
    if fold == Fold::Mean {
        let n = inputs.len() as f64;
        out.iter_mut().for_each(|o| *o = T::from_f64(o.to_f64() / n));
    }
}

impl Op for Variadic {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let first = required(inputs, 0)?;
        let mut shape: Vec<Dim> = first.shape.clone();
        for i in 0..inputs.len() {
            let x = required(inputs, i)?;
            self.check(first.dtype, x.dtype, i)?;
            shape = broadcast_dims(&shape, &x.shape)?;
        }
        Ok(vec![Fact::new(first.dtype, shape)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let all: Vec<&Tensor> = (0..inputs.len()).map(|i| required(inputs, i)).collect::<Result<_, _>>()?;
        let first = *all.first().ok_or_else(|| OpError::input(0, "missing"))?;
        let mut shape: super::axes::Dims = first.shape().into();
        for (i, x) in all.iter().enumerate() {
            self.check(first.dtype(), x.dtype(), i)?;
            shape = broadcast_shapes(&shape, x.shape())?;
        }
        let out = output(outputs, 0)?;
        crate::dispatch!(first.dtype(), T => fold::<T>(self.fold, &all, &shape, out.reset_as::<T>(&shape)?));
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Bits {
    And,
    Or,
    Xor,
    Not,
    ShiftLeft,
    ShiftRight,
}

/// The bitwise operators on the two's-complement bits of an integer type
/// (BitShift takes unsigned types; a shift past the width gives 0).
#[derive(Debug)]
struct Bitwise {
    op: Bits,
}

impl Bitwise {
    fn check(&self, a: DataType, b: Option<DataType>) -> Result<(), OpError> {
        let unsigned = matches!(a, DataType::U8 | DataType::U16 | DataType::U32 | DataType::U64);
        let integer = unsigned || matches!(a, DataType::I8 | DataType::I16 | DataType::I32 | DataType::I64);
        let shift = matches!(self.op, Bits::ShiftLeft | Bits::ShiftRight);
        if !(if shift { unsigned } else { integer }) {
            return Err(OpError::input(0, format!("{:?} does not take {a}", self.op)));
        }
        match b {
            Some(b) if b != a => Err(OpError::input(1, format!("expected {a} like input 0, got {b}"))),
            _ => Ok(()),
        }
    }
}

/// Bits of a value of `width` bits, as the low bits of a u64.
fn bit_op(op: Bits, x: u64, y: u64, width: u32) -> u64 {
    let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
    let shifted = |s: u64, left: bool| if s >= width as u64 { 0 } else if left { x << s } else { x >> s };
    (match op {
        Bits::And => x & y,
        Bits::Or => x | y,
        Bits::Xor => x ^ y,
        Bits::Not => !x,
        Bits::ShiftLeft => shifted(y, true),
        Bits::ShiftRight => shifted(y, false),
    }) & mask
}

fn bitwise<T: Element>(op: Bits, a: &Tensor, b: Option<&Tensor>, shape: &[usize], out: &mut [T], threads: &rayon::ThreadPool) {
    let width = (std::mem::size_of::<T>() * 8) as u32;
    let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
    let bits = |v: T| (v.to_i64() as u64) & mask;
    // Back from the low bits: sign-extended for signed types by `as`.
    let value = |u: u64| T::from_i64(u as i64);
    let x = a.elements::<T>().unwrap_or_default();
    match b {
        None => out.iter_mut().zip(x).for_each(|(o, &v)| *o = value(bit_op(op, bits(v), 0, width))),
        Some(b) => broadcast_into(x, a.shape(), b.elements::<T>().unwrap_or_default(), b.shape(), shape, out, threads, |p, q| value(bit_op(op, bits(p), bits(q), width))),
    }
}

impl Op for Bitwise {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let a = required(inputs, 0)?;
        if self.op == Bits::Not {
            self.check(a.dtype, None)?;
            return Ok(vec![Fact::new(a.dtype, a.shape.clone())]);
        }
        let b = required(inputs, 1)?;
        self.check(a.dtype, Some(b.dtype))?;
        Ok(vec![Fact::new(a.dtype, broadcast_dims(&a.shape, &b.shape)?)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let a = required(inputs, 0)?;
        let b = if self.op == Bits::Not { None } else { Some(required(inputs, 1)?) };
        self.check(a.dtype(), b.map(Tensor::dtype))?;
        let shape = match b {
            Some(b) => broadcast_shapes(a.shape(), b.shape())?,
            None => a.shape().into(),
        };
        let out = output(outputs, 0)?;
        crate::dispatch!(a.dtype(), T => bitwise::<T>(self.op, a, b, &shape, out.reset_as::<T>(&shape)?, threads));
        Ok(())
    }
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    macro_rules! comparisons {
        ($($name:literal => $kind:ident),*) => {
            $( ops.insert($name, |_, _| Ok(Box::new(Compare { kind: Comparison::$kind }))); )*
        };
    }
    comparisons!("Equal" => Equal, "Less" => Less, "LessOrEqual" => LessOrEqual, "Greater" => Greater, "GreaterOrEqual" => GreaterOrEqual, "And" => And, "Or" => Or, "Xor" => Xor);
    ops.insert("Where", |_, _| Ok(Box::new(Where)));
    ops.insert("Max", |_, _| Ok(Box::new(Variadic { fold: Fold::Max })));
    ops.insert("Min", |_, _| Ok(Box::new(Variadic { fold: Fold::Min })));
    ops.insert("Mean", |_, _| Ok(Box::new(Variadic { fold: Fold::Mean })));
    ops.insert("BitwiseAnd", |_, _| Ok(Box::new(Bitwise { op: Bits::And })));
    ops.insert("BitwiseOr", |_, _| Ok(Box::new(Bitwise { op: Bits::Or })));
    ops.insert("BitwiseXor", |_, _| Ok(Box::new(Bitwise { op: Bits::Xor })));
    ops.insert("BitwiseNot", |_, _| Ok(Box::new(Bitwise { op: Bits::Not })));
    ops.insert("BitShift", |n, _| {
        let op = match super::Attrs(n).string("direction", "")?.as_str() {
            "LEFT" => Bits::ShiftLeft,
            "RIGHT" => Bits::ShiftRight,
            other => return Err(OpError::attribute("direction", format!("{other:?} is neither \"LEFT\" nor \"RIGHT\""))),
        };
        Ok(Box::new(Bitwise { op }))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_broadcasts_each_input() {
        let mut seen = Vec::new();
        broadcast_walk([&[2, 1][..], &[3][..]], &[2, 3], |o, [a, b]| seen.push((o, a, b)));
        assert_eq!(seen, [(0, 0, 0), (1, 0, 1), (2, 0, 2), (3, 1, 0), (4, 1, 1), (5, 1, 2)]);
    }

    #[test]
    fn where_and_max_broadcast() {
        let threads = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let c = Tensor::new(vec![2, 1], crate::tensor::Data::Bool(vec![true, false])).unwrap();
        let x = Tensor::f32(vec![1, 2], vec![1.0, 2.0]).unwrap();
        let y = Tensor::f32(vec![], vec![9.0]).unwrap();
        let out = Where.eval_new(&[Some(&c), Some(&x), Some(&y)], 1, &threads).unwrap();
        assert_eq!(out[0].as_f32().unwrap(), &[1.0, 2.0, 9.0, 9.0]);
        let z = Tensor::f32(vec![2], vec![f32::NAN, 0.5]).unwrap();
        let out = Variadic { fold: Fold::Max }.eval_new(&[Some(&x), Some(&z), Some(&y)], 1, &threads).unwrap();
        let v = out[0].as_f32().unwrap();
        assert!(v[0].is_nan() && v[1] == 9.0);
    }
}
