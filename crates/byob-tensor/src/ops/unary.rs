//! Elementwise operators of one input: the activation and math functions.

use super::{output, required, Attrs, Builder, Fact, Op, OpError};
use crate::model::Node;
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

/// ln(1 + e^x) without overflow for large x.
fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        (x as f64).exp().ln_1p() as f32
    }
}

impl Function {
    #[inline]
    fn apply(self, x: f32) -> f32 {
        match self {
            Self::Abs => x.abs(),
            Self::Neg => -x,
            Self::Floor => x.floor(),
            Self::Ceil => x.ceil(),
            Self::Reciprocal => 1.0 / x,
            Self::Sqrt => x.sqrt(),
            Self::Exp => x.exp(),
            Self::Log => x.ln(),
            Self::Erf => libm::erf(x as f64) as f32,
            Self::Sigmoid => {
                // Stable for large |x|.
                if x >= 0.0 {
                    1.0 / (1.0 + (-x).exp())
                } else {
                    let e = x.exp();
                    e / (1.0 + e)
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
            Self::Relu => x.max(0.0),
            Self::LeakyRelu { alpha } => {
                if x < 0.0 {
                    alpha * x
                } else {
                    x
                }
            }
            Self::Elu { alpha } => {
                if x < 0.0 {
                    alpha * (x.exp() - 1.0)
                } else {
                    x
                }
            }
            Self::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Self::ThresholdedRelu { alpha } => {
                if x > alpha {
                    x
                } else {
                    0.0
                }
            }
            Self::Clip { min, max } => x.max(min).min(max),
            Self::Softplus => softplus(x),
            Self::Softsign => x / (1.0 + x.abs()),
            Self::Selu { alpha, gamma } => gamma * if x > 0.0 { x } else { alpha * (x.exp() - 1.0) },
            Self::Celu { alpha } => x.max(0.0) + (alpha * ((x / alpha).exp() - 1.0)).min(0.0),
            Self::Gelu => (0.5 * x as f64 * (1.0 + libm::erf(x as f64 / std::f64::consts::SQRT_2))) as f32,
            Self::GeluTanh => {
                let x = x as f64;
                (0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())) as f32
            }
            Self::Mish => x * softplus(x).tanh(),
            Self::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Self::Shrink { bias, lambd } => {
                if x < -lambd {
                    x + bias
                } else if x > lambd {
                    x - bias
                } else {
                    0.0
                }
            }
            Self::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    x
                }
            }
            // Halves to even, as numpy and ONNX round.
            Self::Round => x.round_ties_even(),
            Self::Swish { alpha } => x * Self::Sigmoid.apply(alpha * x),
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

impl Op for Unary {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        if x.dtype != DataType::F32 {
            return Err(OpError::input(0, format!("expected float, got {}", x.dtype)));
        }
        Ok(vec![Fact::new(DataType::F32, x.shape.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let input = x.as_f32().ok_or_else(|| OpError::input(0, "expected float"))?;
        let out = output(outputs, 0)?.reset_f32(x.shape())?;
        let f = self.function;
        if input.len() >= 2 * CHUNK {
            threads.install(|| out.par_chunks_mut(CHUNK).zip(input.par_chunks(CHUNK)).for_each(|(o, i)| f.map(i, o)));
        } else {
            f.map(input, out);
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
        if !matches!(x.dtype, DataType::F32 | DataType::F64) {
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

fn scalar(inputs: &[Option<&Tensor>], index: usize, default: f32) -> Result<f32, OpError> {
    match inputs.get(index).copied().flatten() {
        None => Ok(default),
        Some(t) => match t.as_f32() {
            Some([v]) => Ok(*v),
            _ => Err(OpError::input(index, format!("expected a float scalar, got shape {:?} of {}", t.shape(), t.dtype()))),
        },
    }
}

impl Op for ClipInputs {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        Unary { function: Function::Relu }.infer(&inputs[..1])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let function = Function::Clip { min: scalar(inputs, 1, f32::MIN)?, max: scalar(inputs, 2, f32::MAX)? };
        Unary { function }.eval(&inputs[..1], outputs, threads)
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
