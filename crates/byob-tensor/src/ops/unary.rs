//! Elementwise operators of one input: the activation and math functions.

use super::{output, required, Attrs, Builder, Fact, Op, OpError};
use crate::model::Node;
use crate::element::Element;
use crate::tensor::{Data, DataType, Tensor};
use rayon::prelude::*;
use std::collections::HashMap;

/// A float function of one float, with its attributes captured.
#[derive(Debug, Clone, Copy)]
enum Function {
    Abs,
    Neg,
    Floor,
    Ceil,
    Reciprocal,
    Sqrt,
    Exp,
    Log,
    Erf,
    Sigmoid,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Asinh,
    Acosh,
    Atanh,
    Tanh,
    Relu,
    LeakyRelu { alpha: f32 },
    Elu { alpha: f32 },
    HardSigmoid { alpha: f32, beta: f32 },
    ThresholdedRelu { alpha: f32 },
    Clip { min: f32, max: f32 },
    Softplus,
    Softsign,
    Selu { alpha: f32, gamma: f32 },
    Celu { alpha: f32 },
    Gelu,
    GeluTanh,
    Mish,
    HardSwish,
    Shrink { bias: f32, lambd: f32 },
    Sign,
    Round,
    Swish { alpha: f32 },
}

/// The float types the functions compute in: f32 and f64 (half floats
/// compute in f32).
trait Real: num_traits::Float + Send + Sync {
    fn erf(self) -> Self;
    fn of(v: f32) -> Self {
        Self::from(v).expect("f32 converts to any float")
    }
    /// Halves to even, as numpy and ONNX round.
    fn round_even(self) -> Self;
}

impl Real for f32 {
    fn erf(self) -> Self {
        crate::kernels::fast_math::erf(self)
    }
    fn round_even(self) -> Self {
        self.round_ties_even()
    }
}

impl Real for f64 {
    fn erf(self) -> Self {
        libm::erf(self)
    }
    fn round_even(self) -> Self {
        self.round_ties_even()
    }
}

/// ln(1 + e^x) without overflow for large x.
fn softplus<F: Real>(x: F) -> F {
    if x > F::of(20.0) {
        x
    } else {
        x.exp().ln_1p()
    }
}

impl Function {
    #[inline]
    fn apply<F: Real>(self, x: F) -> F {
        let (zero, one, half) = (F::zero(), F::one(), F::of(0.5));
        match self {
            Self::Abs => x.abs(),
            Self::Neg => -x,
            Self::Floor => x.floor(),
            Self::Ceil => x.ceil(),
            Self::Reciprocal => x.recip(),
            Self::Sqrt => x.sqrt(),
            Self::Exp => x.exp(),
            Self::Log => x.ln(),
            Self::Erf => x.erf(),
            Self::Sigmoid => {
                // Stable for large |x|.
                if x >= zero {
                    one / (one + (-x).exp())
                } else {
                    let e = x.exp();
                    e / (one + e)
                }
            }
            Self::Sin => x.sin(),
            Self::Cos => x.cos(),
            Self::Tan => x.tan(),
            Self::Asin => x.asin(),
            Self::Acos => x.acos(),
            Self::Atan => x.atan(),
            Self::Sinh => x.sinh(),
            Self::Cosh => x.cosh(),
            Self::Asinh => x.asinh(),
            Self::Acosh => x.acosh(),
            Self::Atanh => x.atanh(),
            Self::Tanh => x.tanh(),
            Self::Relu => x.max(zero),
            Self::LeakyRelu { alpha } => {
                if x < zero {
                    F::of(alpha) * x
                } else {
                    x
                }
            }
            Self::Elu { alpha } => {
                if x < zero {
                    F::of(alpha) * (x.exp() - one)
                } else {
                    x
                }
            }
            Self::HardSigmoid { alpha, beta } => (F::of(alpha) * x + F::of(beta)).max(zero).min(one),
            Self::ThresholdedRelu { alpha } => {
                if x > F::of(alpha) {
                    x
                } else {
                    zero
                }
            }
            Self::Clip { min, max } => x.max(F::of(min)).min(F::of(max)),
            Self::Softplus => softplus(x),
            Self::Softsign => x / (one + x.abs()),
            Self::Selu { alpha, gamma } => F::of(gamma) * if x > zero { x } else { F::of(alpha) * (x.exp() - one) },
            Self::Celu { alpha } => {
                let alpha = F::of(alpha);
                x.max(zero) + (alpha * ((x / alpha).exp() - one)).min(zero)
            }
            Self::Gelu => half * x * (one + (x / F::of(std::f32::consts::SQRT_2)).erf()),
            Self::GeluTanh => {
                let c = F::of((2.0 / std::f64::consts::PI).sqrt() as f32);
                half * x * (one + (c * (x + F::of(0.044715) * x * x * x)).tanh())
            }
            Self::Mish => x * softplus(x).tanh(),
            Self::HardSwish => x * (x / F::of(6.0) + half).max(zero).min(one),
            Self::Shrink { bias, lambd } => {
                if x < -F::of(lambd) {
                    x + F::of(bias)
                } else if x > F::of(lambd) {
                    x - F::of(bias)
                } else {
                    zero
                }
            }
            Self::Sign => {
                if x > zero {
                    one
                } else if x < zero {
                    -one
                } else {
                    x
                }
            }
            Self::Round => x.round_even(),
            Self::Swish { alpha } => x * Self::Sigmoid.apply(F::of(alpha) * x),
        }
    }
}

impl Function {
    /// `apply` over a slice, with the cheap functions in loops of their own
    /// so that each compiles to vector code (one `match` per slice, not per
    /// element).
    fn map(self, input: &[f32], out: &mut [f32]) {
        macro_rules! each {
            ($f:expr) => {
                out.iter_mut().zip(input).for_each(|(o, &x)| *o = $f(x))
            };
        }
        match self {
            Self::Relu => each!(|x: f32| x.max(0.0)),
            Self::Abs => each!(|x: f32| x.abs()),
            Self::Neg => each!(|x: f32| -x),
            Self::Clip { min, max } => each!(|x: f32| x.max(min).min(max)),
            Self::LeakyRelu { alpha } => each!(|x: f32| if x < 0.0 { alpha * x } else { x }),
            Self::Sqrt => each!(|x: f32| x.sqrt()),
            Self::Erf => each!(crate::kernels::fast_math::erf),
            Self::Gelu => each!(|x: f32| 0.5 * x * (1.0 + crate::kernels::fast_math::erf(x * std::f32::consts::FRAC_1_SQRT_2))),
            other => each!(|x| other.apply(x)),
        }
    }
}

#[derive(Debug)]
struct Unary {
    function: Function,
}

/// Elements per parallel task: below this, splitting costs more than it saves.
const CHUNK: usize = 1 << 14;

impl Function {
    /// The function on integers, for those defined there (Abs, Neg, Sign,
    /// Relu; wrapping at the type's ends as ONNX Runtime does).
    fn on_integers(self) -> Option<fn(i64) -> i64> {
        Some(match self {
            Self::Abs => i64::wrapping_abs,
            Self::Neg => i64::wrapping_neg,
            Self::Sign => i64::signum,
            Self::Relu => |x| x.max(0),
            _ => return None,
        })
    }

    fn check(self, dtype: DataType) -> Result<(), OpError> {
        let float = matches!(dtype, DataType::F32 | DataType::F64 | DataType::F16);
        if float || (dtype != DataType::Bool && self.on_integers().is_some()) {
            Ok(())
        } else {
            Err(OpError::input(0, format!("expected a float type, got {dtype}")))
        }
    }
}

impl Op for Unary {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        self.function.check(x.dtype)?;
        Ok(vec![Fact::new(x.dtype, x.shape.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        self.function.check(x.dtype())?;
        let f = self.function;
        let out = output(outputs, 0)?;
        match x.data() {
            Data::F32(input) => {
                let out = out.reset_f32(x.shape())?;
                if input.len() >= 2 * CHUNK && threads.current_num_threads() > 1 {
                    threads.install(|| out.par_chunks_mut(CHUNK).zip(input.par_chunks(CHUNK)).for_each(|(o, i)| f.map(i, o)));
                } else {
                    f.map(input, out);
                }
            }
            Data::F64(input) => out.reset_as::<f64>(x.shape())?.iter_mut().zip(input).for_each(|(o, &v)| *o = f.apply(v)),
            Data::F16(input) => out.reset_as::<half::f16>(x.shape())?.iter_mut().zip(input).for_each(|(o, &v)| *o = half::f16::from_f32(f.apply(v.to_f32()))),
            _ => {
                let g = f.on_integers().expect("checked");
                crate::dispatch!(x.dtype(), T => {
                    let input = x.elements::<T>().unwrap_or_default();
                    out.reset_as::<T>(x.shape())?.iter_mut().zip(input).for_each(|(o, &v)| *o = T::from_i64(g(v.to_i64())));
                });
            }
        }
        Ok(())
    }
}

/// `Not` on booleans.
#[derive(Debug)]
struct Not;

impl Op for Not {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        if x.dtype != DataType::Bool {
            return Err(OpError::input(0, format!("expected bool, got {}", x.dtype)));
        }
        Ok(vec![Fact::new(DataType::Bool, x.shape.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let Data::Bool(v) = x.data() else { return Err(OpError::input(0, "expected bool")) };
        let Data::Bool(out) = output(outputs, 0)?.reset(DataType::Bool, x.shape())? else { unreachable!("reset to bool") };
        out.iter_mut().zip(v).for_each(|(o, b)| *o = !b);
        Ok(())
    }
}

/// IsNaN and IsInf: which floats are NaN, or infinite of the chosen signs.
#[derive(Debug)]
struct Classify {
    nan: bool,
    negative_inf: bool,
    positive_inf: bool,
}

impl Classify {
    fn test(&self, x: f64) -> bool {
        (self.nan && x.is_nan()) || (self.negative_inf && x == f64::NEG_INFINITY) || (self.positive_inf && x == f64::INFINITY)
    }
}

impl Op for Classify {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        if !matches!(x.dtype, DataType::F32 | DataType::F64 | DataType::F16) {
            return Err(OpError::input(0, format!("expected a float type, got {}", x.dtype)));
        }
        Ok(vec![Fact::new(DataType::Bool, x.shape.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let out = output(outputs, 0)?.reset_as::<bool>(x.shape())?;
        match x.data() {
            Data::F32(v) => out.iter_mut().zip(v).for_each(|(o, &v)| *o = self.test(v as f64)),
            Data::F64(v) => out.iter_mut().zip(v).for_each(|(o, &v)| *o = self.test(v)),
            Data::F16(v) => out.iter_mut().zip(v).for_each(|(o, &v)| *o = self.test(v.to_f64())),
            other => return Err(OpError::input(0, format!("expected a float type, got {}", other.dtype()))),
        }
        Ok(())
    }
}

fn simple(function: Function) -> Result<Box<dyn Op>, OpError> {
    Ok(Box::new(Unary { function }))
}

fn clip(node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError> {
    if opset < 11 {
        let a = Attrs(node);
        return simple(Function::Clip { min: a.float("min", f32::MIN)?, max: a.float("max", f32::MAX)? });
    }
    // Opset 11+: min and max are optional inputs, read at run time.
    Ok(Box::new(ClipInputs))
}

#[derive(Debug)]
struct ClipInputs;

/// Optional bound `index` of a Clip on `T` elements: one element of the
/// input's type.
fn bound<T: Element>(inputs: &[Option<&Tensor>], index: usize) -> Result<Option<T>, OpError> {
    match inputs.get(index).copied().flatten() {
        None => Ok(None),
        Some(t) => match t.elements::<T>() {
            Some([v]) => Ok(Some(*v)),
            _ => Err(OpError::input(index, format!("expected one {} like the input, got shape {:?} of {}", T::DTYPE, t.shape(), t.dtype()))),
        },
    }
}

/// Clip of any numeric type (NaN passes through).
fn clip_elements<T: Element>(x: &[T], lo: Option<T>, hi: Option<T>, out: &mut [T]) {
    out.iter_mut().zip(x).for_each(|(o, &v)| {
        *o = match (lo, hi) {
            (Some(lo), _) if v < lo => lo,
            (_, Some(hi)) if v > hi => hi,
            _ => v,
        }
    });
}

impl Op for ClipInputs {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        if x.dtype == DataType::Bool {
            return Err(OpError::input(0, "Clip does not take bool"));
        }
        Ok(vec![Fact::new(x.dtype, x.shape.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        if x.dtype() == DataType::F32 {
            // The vectorised float loop.
            let (lo, hi) = (bound::<f32>(inputs, 1)?, bound::<f32>(inputs, 2)?);
            let function = Function::Clip { min: lo.unwrap_or(f32::MIN), max: hi.unwrap_or(f32::MAX) };
            return Unary { function }.eval(&inputs[..1], outputs, threads);
        }
        let out = output(outputs, 0)?;
        crate::dispatch!(x.dtype(), T => clip_elements::<T>(x.elements::<T>().unwrap_or_default(), bound::<T>(inputs, 1)?, bound::<T>(inputs, 2)?, out.reset_as::<T>(x.shape())?));
        Ok(())
    }
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    macro_rules! plain {
        ($($name:literal => $f:expr),* $(,)?) => {
            $( ops.insert($name, |_, _| simple($f)); )*
        };
    }
    plain! {
        "Abs" => Function::Abs, "Neg" => Function::Neg, "Floor" => Function::Floor, "Ceil" => Function::Ceil,
        "Reciprocal" => Function::Reciprocal, "Sqrt" => Function::Sqrt, "Exp" => Function::Exp, "Log" => Function::Log,
        "Erf" => Function::Erf, "Sigmoid" => Function::Sigmoid, "Sin" => Function::Sin, "Cos" => Function::Cos,
        "Tan" => Function::Tan, "Asin" => Function::Asin, "Acos" => Function::Acos, "Atan" => Function::Atan,
        "Sinh" => Function::Sinh, "Cosh" => Function::Cosh, "Asinh" => Function::Asinh, "Acosh" => Function::Acosh,
        "Atanh" => Function::Atanh, "Tanh" => Function::Tanh, "Relu" => Function::Relu,
    }
    ops.insert("LeakyRelu", |n, _| simple(Function::LeakyRelu { alpha: Attrs(n).float("alpha", 0.01)? }));
    ops.insert("Elu", |n, _| simple(Function::Elu { alpha: Attrs(n).float("alpha", 1.0)? }));
    ops.insert("HardSigmoid", |n, _| {
        let a = Attrs(n);
        simple(Function::HardSigmoid { alpha: a.float("alpha", 0.2)?, beta: a.float("beta", 0.5)? })
    });
    ops.insert("ThresholdedRelu", |n, _| simple(Function::ThresholdedRelu { alpha: Attrs(n).float("alpha", 1.0)? }));
    ops.insert("Clip", clip);
    plain! { "Softplus" => Function::Softplus, "Softsign" => Function::Softsign, "Mish" => Function::Mish, "HardSwish" => Function::HardSwish, "Sign" => Function::Sign, "Round" => Function::Round }
    ops.insert("Selu", |n, _| {
        let a = Attrs(n);
        simple(Function::Selu { alpha: a.float("alpha", 1.673_263_2)?, gamma: a.float("gamma", 1.050_701)? })
    });
    ops.insert("Celu", |n, _| simple(Function::Celu { alpha: Attrs(n).float("alpha", 1.0)? }));
    ops.insert("Gelu", |n, _| match Attrs(n).string("approximate", "none")?.as_str() {
        "none" => simple(Function::Gelu),
        "tanh" => simple(Function::GeluTanh),
        other => Err(OpError::attribute("approximate", format!("{other:?} is neither \"none\" nor \"tanh\""))),
    });
    ops.insert("Shrink", |n, _| {
        let a = Attrs(n);
        simple(Function::Shrink { bias: a.float("bias", 0.0)?, lambd: a.float("lambd", 0.5)? })
    });
    ops.insert("Swish", |n, _| simple(Function::Swish { alpha: Attrs(n).float("alpha", 1.0)? }));
    ops.insert("IsNaN", |_, _| Ok(Box::new(Classify { nan: true, negative_inf: false, positive_inf: false })));
    ops.insert("IsInf", |n, _| {
        let a = Attrs(n);
        Ok(Box::new(Classify { nan: false, negative_inf: a.int("detect_negative", 1)? != 0, positive_inf: a.int("detect_positive", 1)? != 0 }))
    });
    ops.insert("Not", |_, _| Ok(Box::new(Not)));
}

