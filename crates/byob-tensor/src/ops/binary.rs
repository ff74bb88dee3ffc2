//! Elementwise operators of two or more inputs with ONNX multidirectional
//! (numpy-style) broadcasting: Add, Sub, Mul, Div, Pow and Sum.
//!
//! Opsets 7 and later broadcast implicitly; older opsets' `broadcast`/`axis`
//! attributes are accepted when they mean the same thing (suffix matching)
//! and refused when an `axis` asks for the legacy mid-shape alignment.

use super::{output, required, show, Attrs, Builder, Fact, Op, OpError};
use crate::model::{Dim, Node};
use crate::element::Element;
use crate::tensor::{Data, DataType, Tensor};
use rayon::prelude::*;
use std::collections::HashMap;

/// Outputs with more elements than this are computed in parallel.
const PARALLEL: usize = 32 * 1024;
/// Output elements per parallel task.
const CHUNK: usize = 8 * 1024;


/// One broadcast dimension from two, `None` when they conflict.
fn broadcast_dim(x: &Dim, y: &Dim) -> Option<Dim> {
    use Dim::{Known, Symbolic, Unknown};
    Some(match (x, y) {
        (Known(1), d) | (d, Known(1)) => d.clone(),
        (Known(m), Known(n)) if m == n => Known(*m),
        (Known(_), Known(_)) => return None,
        // The other side must be 1 or n: either way the result is n.
        (Known(n), _) | (_, Known(n)) => Known(*n),
        (Symbolic(s), Symbolic(t)) if s == t => Symbolic(s.clone()),
        _ => Unknown,
    })
}

/// The multidirectional broadcast of two shapes whose dimensions may be
/// symbolic or unknown; an error names both shapes when known dimensions
/// conflict.
pub fn broadcast_dims(a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>, OpError> {
    let rank = a.len().max(b.len());
    let one = Dim::Known(1);
    (0..rank)
        .map(|i| {
            let x = if i + a.len() >= rank { &a[i + a.len() - rank] } else { &one };
            let y = if i + b.len() >= rank { &b[i + b.len() - rank] } else { &one };
            broadcast_dim(x, y).ok_or_else(|| OpError::Shape(format!("cannot broadcast shapes {} and {}", show(a), show(b))))
        })
        .collect()
}

/// The multidirectional broadcast of two concrete shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<super::axes::Dims, OpError> {
    let rank = a.len().max(b.len());
    (0..rank)
        .map(|i| {
            let x = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
            let y = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
            match (x, y) {
                (1, n) | (n, 1) => Ok(n),
                (m, n) if m == n => Ok(m),
                _ => Err(OpError::Shape(format!("cannot broadcast shapes {} and {}", show(a), show(b)))),
            }
        })
        .collect()
}

/// How the elements of the two operands line up with the output.
// The general case's shapes live inline, on the stack: boxing them would
// allocate on every run.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Plan {
    /// Same shape: element i with element i.
    Zip,
    /// `a` has one element.
    ScalarA,
    /// `b` has one element.
    ScalarB,
    /// `a` has the output's shape; `b` spans a contiguous range of the
    /// output's dimensions (1 elsewhere): output element i uses
    /// `b[(i / inner) % mid]`. `inner == 1` is a row broadcast.
    BlockB { mid: usize, inner: usize },
    /// The same with the roles swapped.
    BlockA { mid: usize, inner: usize },
    /// Anything else: strides (0 on broadcast dimensions) per output axis.
    General { shape: super::axes::Dims, sa: super::axes::Dims, sb: super::axes::Dims },
}

fn padded(shape: &[usize], rank: usize) -> super::axes::Dims {
    let mut v: super::axes::Dims = smallvec::smallvec![1; rank - shape.len()];
    v.extend_from_slice(shape);
    v
}

/// `(mid, inner)` when `small` is 1 outside one contiguous range of axes
/// where it equals `out`.
fn block(small: &[usize], out: &[usize]) -> Option<(usize, usize)> {
    let first = small.iter().position(|&d| d != 1)?;
    let last = small.iter().rposition(|&d| d != 1)?;
    (small[first..=last] == out[first..=last]).then(|| (out[first..=last].iter().product(), out[last + 1..].iter().product()))
}

fn broadcast_strides(shape: &[usize]) -> super::axes::Dims {
    let mut strides: super::axes::Dims = smallvec::smallvec![0; shape.len()];
    let mut acc = 1;
    for d in (0..shape.len()).rev() {
        strides[d] = if shape[d] == 1 { 0 } else { acc };
        acc *= shape[d];
    }
    strides
}

impl Plan {
    fn new(a: &[usize], b: &[usize], out: &[usize]) -> Self {
        let (pa, pb) = (padded(a, out.len()), padded(b, out.len()));
        if pa == pb {
            return Self::Zip;
        }
        if pb.iter().product::<usize>() == 1 {
            return Self::ScalarB;
        }
        if pa.iter().product::<usize>() == 1 {
            return Self::ScalarA;
        }
        if pa[..] == *out {
            if let Some((mid, inner)) = block(&pb, out) {
                return Self::BlockB { mid, inner };
            }
        }
        if pb[..] == *out {
            if let Some((mid, inner)) = block(&pa, out) {
                return Self::BlockA { mid, inner };
            }
        }
        Self::General { shape: out.into(), sa: broadcast_strides(&pa), sb: broadcast_strides(&pb) }
    }

    /// Fills `out`, the output elements from `start` on.
    fn fill<A: Copy, B: Copy, O, F: Fn(A, B) -> O>(&self, out: &mut [O], start: usize, a: &[A], b: &[B], f: &F) {
        let n = out.len();
        match self {
            Self::Zip => out.iter_mut().zip(&a[start..start + n]).zip(&b[start..start + n]).for_each(|((o, &x), &y)| *o = f(x, y)),
            Self::ScalarA => {
                let x = a[0];
                out.iter_mut().zip(&b[start..start + n]).for_each(|(o, &y)| *o = f(x, y));
            }
            Self::ScalarB => {
                let y = b[0];
                out.iter_mut().zip(&a[start..start + n]).for_each(|(o, &x)| *o = f(x, y));
            }
            Self::BlockB { mid, inner } => fill_block(out, start, a, b, *mid, *inner, f),
            Self::BlockA { mid, inner } => fill_block(out, start, b, a, *mid, *inner, |y, x| f(x, y)),
            Self::General { shape, sa, sb } => fill_general(out, start, shape, sa, sb, a, b, f),
        }
    }
}

/// `out[i] = g(full[start + i], small[((start + i) / inner) % mid])`, in runs.
fn fill_block<X: Copy, Y: Copy, O>(out: &mut [O], start: usize, full: &[X], small: &[Y], mid: usize, inner: usize, g: impl Fn(X, Y) -> O) {
    let n = out.len();
    let full = &full[start..start + n];
    let mut pos = 0;
    if inner == 1 {
        let mut m = start % mid;
        while pos < n {
            let run = (mid - m).min(n - pos);
            out[pos..pos + run].iter_mut().zip(&full[pos..pos + run]).zip(&small[m..m + run]).for_each(|((o, &x), &y)| *o = g(x, y));
            pos += run;
            m = 0;
        }
    } else {
        let (mut m, mut r) = ((start / inner) % mid, start % inner);
        while pos < n {
            let run = (inner - r).min(n - pos);
            let y = small[m];
            out[pos..pos + run].iter_mut().zip(&full[pos..pos + run]).for_each(|(o, &x)| *o = g(x, y));
            pos += run;
            r = 0;
            m += 1;
            if m == mid {
                m = 0;
            }
        }
    }
}

/// Strided walk over the output, a run along the last axis at a time.
#[allow(clippy::too_many_arguments)]
fn fill_general<A: Copy, B: Copy, O, F: Fn(A, B) -> O>(out: &mut [O], start: usize, shape: &[usize], sa: &[usize], sb: &[usize], a: &[A], b: &[B], f: &F) {
    let rank = shape.len();
    let last = rank - 1;
    let mut idx = vec![0usize; rank];
    let mut rem = start;
    for d in (0..rank).rev() {
        idx[d] = rem % shape[d];
        rem /= shape[d];
    }
    let mut ia: usize = idx.iter().zip(sa).map(|(i, s)| i * s).sum();
    let mut ib: usize = idx.iter().zip(sb).map(|(i, s)| i * s).sum();
    let (len, ta, tb) = (shape[last], sa[last], sb[last]);
    let n = out.len();
    let mut pos = 0;
    while pos < n {
        let run = (len - idx[last]).min(n - pos);
        let o = &mut out[pos..pos + run];
        match (ta, tb) {
            (1, 1) => o.iter_mut().zip(&a[ia..ia + run]).zip(&b[ib..ib + run]).for_each(|((o, &x), &y)| *o = f(x, y)),
            (1, 0) => {
                let y = b[ib];
                o.iter_mut().zip(&a[ia..ia + run]).for_each(|(o, &x)| *o = f(x, y));
            }
            (0, 1) => {
                let x = a[ia];
                o.iter_mut().zip(&b[ib..ib + run]).for_each(|(o, &y)| *o = f(x, y));
            }
            _ => o.iter_mut().enumerate().for_each(|(k, o)| *o = f(a[ia + k * ta], b[ib + k * tb])),
        }
        pos += run;
        if pos == n {
            break;
        }
        ia += run * ta;
        ib += run * tb;
        idx[last] += run;
        let mut d = last;
        while d > 0 && idx[d] == shape[d] {
            ia -= shape[d] * sa[d];
            ib -= shape[d] * sb[d];
            idx[d] = 0;
            d -= 1;
            idx[d] += 1;
            ia += sa[d];
            ib += sb[d];
        }
    }
}

/// Applies `f` elementwise with broadcasting into `out`. `out_shape` must
/// be the broadcast of the two shapes, and each slice must hold its shape's
/// element count (both hold for tensors checked with [`broadcast_shapes`]).
#[allow(clippy::too_many_arguments)]
pub fn broadcast_into<A, B, O, F>(a: &[A], a_shape: &[usize], b: &[B], b_shape: &[usize], out_shape: &[usize], out: &mut [O], threads: &rayon::ThreadPool, f: F)
where
    A: Copy + Sync,
    B: Copy + Sync,
    O: Copy + Send,
    F: Fn(A, B) -> O + Sync,
{
    if out.is_empty() {
        return;
    }
    let plan = Plan::new(a_shape, b_shape, out_shape);
    // One thread: no hand-over to it (a single-threaded session runs on
    // its caller's thread).
    if out.len() > PARALLEL && threads.current_num_threads() > 1 {
        threads.install(|| out.par_chunks_mut(CHUNK).enumerate().for_each(|(i, chunk)| plan.fill(chunk, i * CHUNK, a, b, &f)));
    } else {
        plan.fill(out, 0, a, b, &f);
    }
}

/// [`broadcast_into`] a new vector.
pub fn broadcast<A, B, O, F>(a: &[A], a_shape: &[usize], b: &[B], b_shape: &[usize], out_shape: &[usize], threads: &rayon::ThreadPool, f: F) -> Vec<O>
where
    A: Copy + Sync,
    B: Copy + Sync,
    O: Copy + Default + Send,
    F: Fn(A, B) -> O + Sync,
{
    let mut out = vec![O::default(); out_shape.iter().product()];
    broadcast_into(a, a_shape, b, b_shape, out_shape, &mut out, threads, f);
    out
}

/// Element types with the four arithmetic operations (wrapping for
/// integers, as ONNX Runtime's C++ kernels behave).
trait Arith: Copy + Default + Send + Sync {
    const INTEGER: bool;
    fn add(self, other: Self) -> Self;
    fn sub(self, other: Self) -> Self;
    fn mul(self, other: Self) -> Self;
    /// Integers truncate toward zero; the caller rules out division by zero.
    fn div(self, other: Self) -> Self;
    fn is_zero(self) -> bool;
}

macro_rules! arith_float {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            const INTEGER: bool = false;
            #[inline] fn add(self, o: Self) -> Self { self + o }
            #[inline] fn sub(self, o: Self) -> Self { self - o }
            #[inline] fn mul(self, o: Self) -> Self { self * o }
            #[inline] fn div(self, o: Self) -> Self { self / o }
            #[inline] fn is_zero(self) -> bool { self == 0.0 }
        }
    )*};
}
macro_rules! arith_int {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            const INTEGER: bool = true;
            #[inline] fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            #[inline] fn sub(self, o: Self) -> Self { self.wrapping_sub(o) }
            #[inline] fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            #[inline] fn div(self, o: Self) -> Self { self.wrapping_div(o) }
            #[inline] fn is_zero(self) -> bool { self == 0 }
        }
    )*};
}
arith_float!(f32, f64);
arith_int!(i64, i32, i16, i8, u64, u32, u16, u8);

/// Half floats compute each operation in f32 and round once.
impl Arith for half::f16 {
    const INTEGER: bool = false;
    #[inline] fn add(self, o: Self) -> Self { half::f16::from_f32(self.to_f32() + o.to_f32()) }
    #[inline] fn sub(self, o: Self) -> Self { half::f16::from_f32(self.to_f32() - o.to_f32()) }
    #[inline] fn mul(self, o: Self) -> Self { half::f16::from_f32(self.to_f32() * o.to_f32()) }
    #[inline] fn div(self, o: Self) -> Self { half::f16::from_f32(self.to_f32() / o.to_f32()) }
    #[inline] fn is_zero(self) -> bool { self.to_f32() == 0.0 }
}

/// Brain floats compute each operation in f32 and round once.
impl Arith for half::bf16 {
    const INTEGER: bool = false;
    #[inline] fn add(self, o: Self) -> Self { half::bf16::from_f32(self.to_f32() + o.to_f32()) }
    #[inline] fn sub(self, o: Self) -> Self { half::bf16::from_f32(self.to_f32() - o.to_f32()) }
    #[inline] fn mul(self, o: Self) -> Self { half::bf16::from_f32(self.to_f32() * o.to_f32()) }
    #[inline] fn div(self, o: Self) -> Self { half::bf16::from_f32(self.to_f32() / o.to_f32()) }
    #[inline] fn is_zero(self) -> bool { self.to_f32() == 0.0 }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Add,
    Sub,
    Mul,
    Div,
}

fn arithmetic_type(dtype: DataType) -> bool {
    dtype != DataType::Bool
}

#[allow(clippy::too_many_arguments)]
fn arith<T: Arith>(kind: Kind, x: &[T], xs: &[usize], y: &[T], ys: &[usize], shape: &[usize], out: &mut [T], b_index: usize, threads: &rayon::ThreadPool) -> Result<(), OpError> {
    match kind {
        Kind::Add => broadcast_into(x, xs, y, ys, shape, out, threads, T::add),
        Kind::Sub => broadcast_into(x, xs, y, ys, shape, out, threads, T::sub),
        Kind::Mul => broadcast_into(x, xs, y, ys, shape, out, threads, T::mul),
        Kind::Div => {
            if T::INTEGER && y.iter().any(|v| v.is_zero()) {
                return Err(OpError::input(b_index, "integer division by zero"));
            }
            broadcast_into(x, xs, y, ys, shape, out, threads, T::div)
        }
    }
    Ok(())
}

/// `out = a (kind) b` with broadcasting; `b_index` names `b` in errors.
fn arith_tensors(kind: Kind, a: &Tensor, b: &Tensor, b_index: usize, out: &mut Tensor, threads: &rayon::ThreadPool) -> Result<(), OpError> {
    let shape = broadcast_shapes(a.shape(), b.shape())?;
    if !arithmetic_type(a.dtype()) {
        return Err(OpError::input(0, format!("{kind:?} does not support {}", a.dtype())));
    }
    if a.dtype() != b.dtype() {
        return Err(OpError::input(b_index, format!("expected {} like input 0, got {}", a.dtype(), b.dtype())));
    }
    macro_rules! typed {
        ($($variant:ident),*) => {
            match (a.data(), b.data(), out.reset(a.dtype(), &shape)?) {
                $( (Data::$variant(x), Data::$variant(y), Data::$variant(o)) => arith(kind, x, a.shape(), y, b.shape(), &shape, o, b_index, threads), )*
                _ => unreachable!("types checked above"),
            }
        };
    }
    typed!(F32, F64, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8)
}

fn check_same_type(kind: Kind, a: &Fact, b: &Fact, b_index: usize) -> Result<(), OpError> {
    if !arithmetic_type(a.dtype) {
        return Err(OpError::input(0, format!("{kind:?} does not support {}", a.dtype)));
    }
    if a.dtype != b.dtype {
        return Err(OpError::input(b_index, format!("expected {} like input 0, got {}", a.dtype, b.dtype)));
    }
    Ok(())
}

/// Add, Sub, Mul, Div.
#[derive(Debug)]
struct Arithmetic {
    kind: Kind,
}

impl Op for Arithmetic {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let (a, b) = (required(inputs, 0)?, required(inputs, 1)?);
        check_same_type(self.kind, a, b, 1)?;
        Ok(vec![Fact::new(a.dtype, broadcast_dims(&a.shape, &b.shape)?)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let (a, b) = (required(inputs, 0)?, required(inputs, 1)?);
        arith_tensors(self.kind, a, b, 1, output(outputs, 0)?, threads)
    }
}

/// Sum of one or more inputs, broadcast together.
#[derive(Debug)]
struct Sum;

impl Op for Sum {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let first = required(inputs, 0)?;
        let mut shape = first.shape.clone();
        for i in 1..inputs.len() {
            let x = required(inputs, i)?;
            check_same_type(Kind::Add, first, x, i)?;
            shape = broadcast_dims(&shape, &x.shape)?;
        }
        if !arithmetic_type(first.dtype) {
            return Err(OpError::input(0, format!("Sum does not support {}", first.dtype)));
        }
        Ok(vec![Fact::new(first.dtype, shape)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let first = required(inputs, 0)?;
        if !arithmetic_type(first.dtype()) {
            return Err(OpError::input(0, format!("Sum does not support {}", first.dtype())));
        }
        let out = output(outputs, 0)?;
        if inputs.len() == 1 {
            *out = first.clone();
            return Ok(());
        }
        arith_tensors(Kind::Add, first, required(inputs, 1)?, 1, out, threads)?;
        // Three or more inputs: each further sum needs the running total as
        // an input, so it goes through a temporary.
        for i in 2..inputs.len() {
            let total = std::mem::take(out);
            arith_tensors(Kind::Add, &total, required(inputs, i)?, i, out, threads)?;
        }
        Ok(())
    }
}

/// Pow: a float (or, from opset 12, integer) base raised to a float or
/// integer exponent; the output has the base's type.
#[derive(Debug)]
struct Pow;

fn pow_types(base: DataType, exponent: DataType) -> Result<(), OpError> {
    if !matches!(base, DataType::F32 | DataType::F64 | DataType::I64 | DataType::I32) {
        return Err(OpError::input(0, format!("Pow needs a float or int32/int64 base, got {base}")));
    }
    if !arithmetic_type(exponent) {
        return Err(OpError::input(1, format!("Pow needs a numeric exponent, got {exponent}")));
    }
    Ok(())
}

/// Exponent elements widened to f64 (every numeric type).
fn exponent_f64(t: &Tensor) -> Option<Vec<f64>> {
    Some(match t.data() {
        Data::F32(v) => v.iter().map(|&x| x as f64).collect(),
        Data::F64(v) => v.clone(),
        _ => t.to_i64_vec()?.into_iter().map(|x| x as f64).collect(),
    })
}

/// Integer power truncated toward zero (negative exponents give 0 unless
/// the base is 1 or -1), wrapping on overflow.
fn int_pow(x: i64, y: i64) -> i64 {
    if y >= 0 {
        x.wrapping_pow(y.min(u32::MAX as i64) as u32)
    } else {
        match x {
            1 => 1,
            -1 if y % 2 == 0 => 1,
            -1 => -1,
            _ => 0,
        }
    }
}

impl Op for Pow {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let (a, b) = (required(inputs, 0)?, required(inputs, 1)?);
        pow_types(a.dtype, b.dtype)?;
        Ok(vec![Fact::new(a.dtype, broadcast_dims(&a.shape, &b.shape)?)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let (a, b) = (required(inputs, 0)?, required(inputs, 1)?);
        pow_types(a.dtype(), b.dtype())?;
        let shape = broadcast_shapes(a.shape(), b.shape())?;
        let (xs, ys) = (a.shape(), b.shape());
        let bad_exponent = || OpError::input(1, format!("Pow needs a numeric exponent, got {}", b.dtype()));
        let out = output(outputs, 0)?;
        let data = match (a.data(), b.data()) {
            (Data::F32(x), Data::F32(y)) => {
                let o = out.reset_f32(&shape)?;
                match y.as_slice() {
                    [2.0] => broadcast_into(x, xs, y, ys, &shape, o, threads, |p: f32, _| p * p),
                    [1.0] => broadcast_into(x, xs, y, ys, &shape, o, threads, |p: f32, _| p),
                    _ => broadcast_into(x, xs, y, ys, &shape, o, threads, f32::powf),
                }
                return Ok(());
            }
            // Mixed types compute in f64, as numpy's promotion does.
            (Data::F32(x), _) => {
                let y = exponent_f64(b).ok_or_else(bad_exponent)?;
                Data::F32(broadcast(x, xs, &y, ys, &shape, threads, |p, q| (p as f64).powf(q) as f32))
            }
            (Data::F64(x), _) => {
                let y = exponent_f64(b).ok_or_else(bad_exponent)?;
                Data::F64(broadcast(x, xs, &y, ys, &shape, threads, f64::powf))
            }
            (Data::I64(_) | Data::I32(_), Data::F32(_) | Data::F64(_)) => {
                let x = a.to_i64_vec().ok_or_else(|| OpError::input(0, "expected integers"))?;
                let y = exponent_f64(b).ok_or_else(bad_exponent)?;
                let z = broadcast(&x, xs, &y, ys, &shape, threads, |p, q| (p as f64).powf(q) as i64);
                int_data(a.dtype(), z)
            }
            (Data::I64(_) | Data::I32(_), _) => {
                let x = a.to_i64_vec().ok_or_else(|| OpError::input(0, "expected integers"))?;
                let y = b.to_i64_vec().ok_or_else(bad_exponent)?;
                int_data(a.dtype(), broadcast(&x, xs, &y, ys, &shape, threads, int_pow))
            }
            _ => return Err(OpError::input(0, format!("Pow needs a float or int32/int64 base, got {}", a.dtype()))),
        };
        *out = Tensor::new(shape.into_vec(), data).map_err(|e| OpError::Shape(e.to_string()))?;
        Ok(())
    }
}

/// Mod: the remainder with the divisor's sign (Python's `%`), or with
/// `fmod` the dividend's (C's `fmod`, which float inputs require).
#[derive(Debug)]
struct Mod {
    fmod: bool,
}

fn remainder<T: Element>(fmod: bool, a: &Tensor, b: &Tensor, shape: &[usize], out: &mut [T], threads: &rayon::ThreadPool) -> Result<(), OpError> {
    let (x, y) = (a.elements::<T>().unwrap_or_default(), b.elements::<T>().unwrap_or_default());
    if T::FLOAT {
        broadcast_into(x, a.shape(), y, b.shape(), shape, out, threads, |p, q| T::from_f64(p.to_f64() % q.to_f64()));
        return Ok(());
    }
    if y.iter().any(|v| v.to_i64() == 0) {
        return Err(OpError::input(1, "integer modulo by zero"));
    }
    broadcast_into(x, a.shape(), y, b.shape(), shape, out, threads, |p, q| {
        let (p, q) = (p.to_i64() as i128, q.to_i64() as i128);
        T::from_i64(if fmod { p % q } else { p.rem_euclid(q) - if q < 0 && p.rem_euclid(q) != 0 { -q } else { 0 } } as i64)
    });
    Ok(())
}

impl Op for Mod {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let (a, b) = (required(inputs, 0)?, required(inputs, 1)?);
        self.check(a.dtype, b.dtype)?;
        Ok(vec![Fact::new(a.dtype, broadcast_dims(&a.shape, &b.shape)?)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let (a, b) = (required(inputs, 0)?, required(inputs, 1)?);
        self.check(a.dtype(), b.dtype())?;
        let shape = broadcast_shapes(a.shape(), b.shape())?;
        let out = output(outputs, 0)?;
        crate::dispatch!(a.dtype(), T => remainder::<T>(self.fmod, a, b, &shape, out.reset_as::<T>(&shape)?, threads))
    }
}

impl Mod {
    fn check(&self, a: DataType, b: DataType) -> Result<(), OpError> {
        if a != b {
            return Err(OpError::input(1, format!("expected {a} like input 0, got {b}")));
        }
        let float = matches!(a, DataType::F32 | DataType::F64 | DataType::F16);
        if a == DataType::Bool || (float && !self.fmod) {
            return Err(OpError::input(0, format!("Mod of {a} needs fmod=1")));
        }
        Ok(())
    }
}

/// PRelu: `x` where positive, `slope · x` elsewhere, the slope broadcast
/// to `x`'s shape.
#[derive(Debug)]
struct PRelu;

impl Op for PRelu {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let (x, slope) = (required(inputs, 0)?, required(inputs, 1)?);
        if x.dtype != slope.dtype || x.dtype == DataType::Bool {
            return Err(OpError::input(1, format!("slope of {} for {}", slope.dtype, x.dtype)));
        }
        Ok(vec![Fact::new(x.dtype, x.shape.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let (x, slope) = (required(inputs, 0)?, required(inputs, 1)?);
        if x.dtype() != slope.dtype() || broadcast_shapes(x.shape(), slope.shape())?[..] != *x.shape() {
            return Err(OpError::input(1, format!("slope {} {:?} does not broadcast to {} {:?}", slope.dtype(), slope.shape(), x.dtype(), x.shape())));
        }
        let out = output(outputs, 0)?;
        crate::dispatch!(x.dtype(), T => {
            let o = out.reset_as::<T>(x.shape())?;
            broadcast_into(x.elements::<T>().unwrap_or_default(), x.shape(), slope.elements::<T>().unwrap_or_default(), slope.shape(), x.shape(), o, threads, |v, a| if v.to_f64() < 0.0 { T::from_f64(v.to_f64() * a.to_f64()) } else { v });
        });
        Ok(())
    }
}

/// i64 results narrowed back to the base's integer type (wrapping).
fn int_data(dtype: DataType, values: Vec<i64>) -> Data {
    match dtype {
        DataType::I32 => Data::I32(values.into_iter().map(|v| v as i32).collect()),
        _ => Data::I64(values),
    }
}

/// Opsets before 7 broadcast only with `broadcast=1`, by suffix matching
/// or from `axis`; suffix matching is a special case of numpy broadcasting,
/// the `axis` form is not.
fn check_legacy(node: &Node, opset: i64) -> Result<(), OpError> {
    let a = Attrs(node);
    if opset < 7 && a.int("broadcast", 0)? != 0 && a.get("axis").is_some() {
        return Err(OpError::attribute("axis", format!("legacy broadcasting along an axis (opset {opset} < 7) is not supported")));
    }
    Ok(())
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    fn arithmetic(kind: Kind, node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError> {
        check_legacy(node, opset)?;
        Ok(Box::new(Arithmetic { kind }))
    }
    ops.insert("Add", |n, o| arithmetic(Kind::Add, n, o));
    ops.insert("Sub", |n, o| arithmetic(Kind::Sub, n, o));
    ops.insert("Mul", |n, o| arithmetic(Kind::Mul, n, o));
    ops.insert("Div", |n, o| arithmetic(Kind::Div, n, o));
    ops.insert("Pow", |n, o| {
        check_legacy(n, o)?;
        Ok(Box::new(Pow))
    });
    ops.insert("Sum", |_, _| Ok(Box::new(Sum)));
    ops.insert("PRelu", |_, _| Ok(Box::new(PRelu)));
    ops.insert("Mod", |n, _| Ok(Box::new(Mod { fmod: Attrs(n).int("fmod", 0)? != 0 })));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Attribute;

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap()
    }

    fn f32t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::f32(shape.to_vec(), v.to_vec()).unwrap()
    }

    fn node(op: &str, attributes: Vec<(&str, Attribute)>) -> Node {
        Node {
            name: op.to_string(),
            op_type: op.to_string(),
            domain: String::new(),
            inputs: vec![],
            outputs: vec!["y".into()],
            attributes: attributes.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    fn run(op: &str, inputs: &[&Tensor]) -> Result<Tensor, OpError> {
        let ops = {
            let mut m = HashMap::new();
            register(&mut m);
            m
        };
        let op = ops[op](&node(op, vec![]), 17)?;
        let args: Vec<Option<&Tensor>> = inputs.iter().map(|t| Some(*t)).collect();
        let facts: Vec<Fact> = inputs.iter().map(|t| Fact::new(t.dtype(), t.shape().iter().map(|&d| Dim::Known(d)).collect())).collect();
        let fact_refs: Vec<Option<&Fact>> = facts.iter().map(Some).collect();
        let inferred = op.infer(&fact_refs)?;
        let out = op.eval_new(&args, 1, &pool())?.remove(0);
        assert_eq!(inferred[0].concrete_shape().as_deref(), Some(out.shape()), "inferred shape");
        assert_eq!(inferred[0].dtype, out.dtype());
        Ok(out)
    }

    #[test]
    fn add_row_broadcast() {
        let a = f32t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let b = f32t(&[3], &[10., 20., 30.]);
        let y = run("Add", &[&a, &b]).unwrap();
        assert_eq!(y.shape(), &[2, 3]);
        assert_eq!(y.as_f32().unwrap(), &[11., 22., 33., 14., 25., 36.]);
        // Row on the left: b - a.
        let y = run("Sub", &[&b, &a]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[9., 18., 27., 6., 15., 24.]);
    }

    #[test]
    fn mul_two_way_broadcast() {
        // [2,1,3] * [4,1] -> [2,4,3]: out[i][j][k] = a[i][0][k] * b[j][0].
        let a = f32t(&[2, 1, 3], &[1., 2., 3., 4., 5., 6.]);
        let b = f32t(&[4, 1], &[1., 2., 3., 4.]);
        let y = run("Mul", &[&a, &b]).unwrap();
        assert_eq!(y.shape(), &[2, 4, 3]);
        #[rustfmt::skip]
        let expected = [
            1., 2., 3., 2., 4., 6., 3., 6., 9., 4., 8., 12.,
            4., 5., 6., 8., 10., 12., 12., 15., 18., 16., 20., 24.,
        ];
        assert_eq!(y.as_f32().unwrap(), &expected);
    }

    #[test]
    fn scalar_and_channel_broadcast() {
        let ten = Tensor::scalar_f32(10.);
        let v = f32t(&[3], &[1., 2., 3.]);
        assert_eq!(run("Sub", &[&ten, &v]).unwrap().as_f32().unwrap(), &[9., 8., 7.]);
        assert_eq!(run("Div", &[&v, &f32t(&[1], &[2.])]).unwrap().as_f32().unwrap(), &[0.5, 1., 1.5]);
        // Per-channel bias: [2,3,2] + [3,1].
        let x = f32t(&[2, 3, 2], &(0..12).map(|i| i as f32).collect::<Vec<_>>());
        let bias = f32t(&[3, 1], &[100., 200., 300.]);
        let y = run("Add", &[&x, &bias]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[100., 101., 202., 203., 304., 305., 106., 107., 208., 209., 310., 311.]);
    }

    #[test]
    fn integers() {
        let a = Tensor::i64(vec![2], vec![-7, 7]).unwrap();
        let b = Tensor::i64(vec![2], vec![2, -2]).unwrap();
        assert_eq!(run("Div", &[&a, &b]).unwrap().as_i64().unwrap(), &[-3, -3]);
        assert_eq!(run("Mul", &[&a, &b]).unwrap().as_i64().unwrap(), &[-14, -14]);
        let zero = Tensor::i64(vec![], vec![0]).unwrap();
        let err = run("Div", &[&a, &zero]).unwrap_err();
        assert!(err.to_string().contains("division by zero"), "{err}");
        let i32s = Tensor::new(vec![2], Data::I32(vec![3, 4])).unwrap();
        assert_eq!(run("Add", &[&i32s, &i32s]).unwrap().data(), &Data::I32(vec![6, 8]));
        // Mixed types are refused, naming the input.
        let err = run("Add", &[&a, &f32t(&[1], &[1.])]).unwrap_err();
        assert_eq!(err, OpError::input(1, "expected int64 like input 0, got float"));
    }

    #[test]
    fn pow() {
        let x = f32t(&[2], &[2., 3.]);
        let three = Tensor::i64(vec![1], vec![3]).unwrap();
        assert_eq!(run("Pow", &[&x, &three]).unwrap().as_f32().unwrap(), &[8., 27.]);
        let half = f32t(&[], &[0.5]);
        assert_eq!(run("Pow", &[&f32t(&[2], &[4., 9.]), &half]).unwrap().as_f32().unwrap(), &[2., 3.]);
        assert_eq!(run("Pow", &[&x, &f32t(&[], &[2.])]).unwrap().as_f32().unwrap(), &[4., 9.]);
        let ints = Tensor::i64(vec![3], vec![2, -3, 5]).unwrap();
        assert_eq!(run("Pow", &[&ints, &Tensor::i64(vec![], vec![2]).unwrap()]).unwrap().as_i64().unwrap(), &[4, 9, 25]);
    }

    #[test]
    fn sum_variadic() {
        let a = f32t(&[2], &[1., 2.]);
        let b = f32t(&[2, 1], &[10., 20.]);
        let c = Tensor::scalar_f32(100.);
        let y = run("Sum", &[&a, &b, &c]).unwrap();
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(y.as_f32().unwrap(), &[111., 112., 121., 122.]);
        assert_eq!(run("Sum", &[&a]).unwrap(), a);
    }

    #[test]
    fn shape_inference_and_errors() {
        let n = Dim::Symbolic("N".into());
        assert_eq!(broadcast_dims(&[n.clone(), Dim::Known(3)], &[Dim::Known(3)]).unwrap(), vec![n.clone(), Dim::Known(3)]);
        assert_eq!(broadcast_dims(&[n.clone(), Dim::Known(1)], &[Dim::Known(4), Dim::Unknown]).unwrap(), vec![Dim::Known(4), Dim::Unknown]);
        assert_eq!(broadcast_dims(&[n.clone()], &[Dim::Symbolic("M".into())]).unwrap(), vec![Dim::Unknown]);
        let err = broadcast_dims(&[Dim::Known(2), Dim::Known(3)], &[Dim::Known(4)]).unwrap_err();
        assert_eq!(err.to_string(), "cannot broadcast shapes [2, 3] and [4]");
        let err = run("Add", &[&f32t(&[2, 3], &[0.; 6]), &f32t(&[2], &[0.; 2])]).unwrap_err();
        assert!(err.to_string().contains("[2, 3] and [2]"), "{err}");
        assert!(node_with_legacy_axis().is_err());
    }

    fn node_with_legacy_axis() -> Result<Box<dyn Op>, OpError> {
        let mut ops = HashMap::new();
        register(&mut ops);
        ops["Add"](&node("Add", vec![("broadcast", Attribute::Int(1)), ("axis", Attribute::Int(1))]), 6)
    }

    /// Reference broadcasting by index arithmetic.
    fn naive(a: &[f32], sa: &[usize], b: &[f32], sb: &[usize]) -> (Vec<usize>, Vec<f32>) {
        let out = broadcast_shapes(sa, sb).unwrap();
        let (pa, pb) = (padded(sa, out.len()), padded(sb, out.len()));
        let n: usize = out.iter().product();
        let values = (0..n)
            .map(|mut i| {
                let (mut ia, mut ib, mut ma, mut mb) = (0, 0, 1, 1);
                for d in (0..out.len()).rev() {
                    let k = i % out[d];
                    i /= out[d];
                    ia += (k % pa[d]) * ma;
                    ib += (k % pb[d]) * mb;
                    ma *= pa[d];
                    mb *= pb[d];
                }
                a[ia] * 1000.0 + b[ib]
            })
            .collect();
        (out.to_vec(), values)
    }

    #[test]
    fn every_plan_matches_reference_serial_and_parallel() {
        let cases: &[(&[usize], &[usize])] = &[
            (&[3, 4], &[3, 4]),
            (&[], &[5]),
            (&[5], &[1, 1]),
            (&[2, 3, 4], &[4]),
            (&[4], &[2, 3, 4]),
            (&[2, 3, 4], &[3, 1]),
            (&[3, 1], &[2, 3, 4]),
            (&[2, 1, 3], &[4, 1]),
            (&[2, 3, 1], &[1, 3, 5]),
            (&[0, 3], &[3]),
            // Parallel sizes (> 32k outputs), chunk boundaries inside rows.
            (&[300, 203], &[203]),
            (&[203], &[300, 203]),
            (&[7, 97, 61], &[97, 1]),
            (&[7, 1, 61], &[97, 1]),
            (&[40000], &[1]),
            (&[33000], &[33000]),
        ];
        let pool = pool();
        for (sa, sb) in cases {
            let na: usize = sa.iter().product();
            let nb: usize = sb.iter().product();
            let a: Vec<f32> = (0..na).map(|i| (i % 1000) as f32).collect();
            let b: Vec<f32> = (0..nb).map(|i| (i % 997) as f32).collect();
            let (shape, expected) = naive(&a, sa, &b, sb);
            let got = broadcast(&a, sa, &b, sb, &shape, &pool, |x, y| x * 1000.0 + y);
            assert_eq!(got, expected, "{sa:?} with {sb:?}");
        }
    }
}
