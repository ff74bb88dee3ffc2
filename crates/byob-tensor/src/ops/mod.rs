//! Operators: one module per family, each registering its builders in a
//! plain function. A builder reads the node's attributes (handling opset
//! differences itself) and returns an [`Op`] that infers output types and
//! shapes and evaluates on the CPU.

use crate::device::{ValueMut, ValueRef};
use crate::model::{Attribute, Dim, Node};
use crate::tensor::{DataType, Tensor, TensorError};
use std::collections::HashMap;

pub mod arity;
mod axes;
pub(crate) use axes::normalize_axis;
pub mod attention;
pub mod binary;
pub mod einsum;
pub mod grid;
pub mod rearrange;
pub mod streaming;
pub mod quantize;
pub mod conv_transpose;
pub mod resize;
pub mod signal;
pub mod recurrent;
pub mod loss;
pub mod scatter;
pub mod generate;
pub mod sample_norm;
pub mod select;
pub mod slice;
pub mod extend;
pub mod cast;
pub mod compare;
pub mod shape;
pub mod unary;
pub mod linalg;
pub mod conv;
pub mod window;
pub mod pool;
pub mod norm;
pub mod reduce;
pub(crate) mod channels_last;
pub mod packed;
mod concat_convs;
mod shuffle;
pub(crate) mod pool_nhwc;

/// What is known about a value before running: its type, its shape (some
/// dimensions may be unknown), and its contents when it is a constant.
#[derive(Clone, Debug, PartialEq)]
pub struct Fact {
    pub dtype: DataType,
    pub shape: Vec<Dim>,
    pub value: Option<Tensor>,
    /// Whether the value is a constant of the graph, known when a provider
    /// compiles it even where `value` leaves large contents (weights) out.
    pub constant: bool,
}

impl Fact {
    pub fn new(dtype: DataType, shape: Vec<Dim>) -> Self {
        Self { dtype, shape, value: None, constant: false }
    }

    /// The fact of a known tensor (a constant).
    pub fn constant(tensor: Tensor) -> Self {
        Self { dtype: tensor.dtype(), shape: tensor.shape().iter().map(|&d| Dim::Known(d)).collect(), value: Some(tensor), constant: true }
    }

    /// The fact of a constant whose contents are left out (a weight).
    pub fn constant_shape(dtype: DataType, shape: &[usize]) -> Self {
        Self { constant: true, ..Self::new(dtype, shape.iter().map(|&d| Dim::Known(d)).collect()) }
    }

    /// The shape when every dimension is known.
    pub fn concrete_shape(&self) -> Option<Vec<usize>> {
        self.shape.iter().map(|d| if let Dim::Known(n) = d { Some(*n) } else { None }).collect()
    }
}

/// Why an operator could not be built or run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    #[error("operator {op} (opset {opset}) is not supported")]
    Unsupported { op: String, opset: i64 },
    #[error("attribute {name:?}: {what}")]
    Attribute { name: String, what: String },
    #[error("input {index}: {what}")]
    Input { index: usize, what: String },
    #[error("{0}")]
    Shape(String),
    /// Inputs or outputs outside the operator's schema.
    #[error("{0}")]
    Arity(String),
    /// A subgraph (If's branch, Loop's or Scan's body) could not be
    /// prepared or run: which, and why.
    #[error("subgraph {0}")]
    Subgraph(String),
    /// The device failed (lost, out of memory): the session must be
    /// rebuilt before it can run on it again.
    #[error("device error: {0}")]
    Device(String),
    /// An output too large to exist, or memory the system refused.
    #[error(transparent)]
    Tensor(#[from] TensorError),
}

impl OpError {
    pub fn input(index: usize, what: impl Into<String>) -> Self {
        Self::Input { index, what: what.into() }
    }

    pub fn attribute(name: &str, what: impl Into<String>) -> Self {
        Self::Attribute { name: name.to_string(), what: what.into() }
    }
}

/// An operator ready to run.
pub trait Op: Send + Sync + std::fmt::Debug {
    /// Output facts from input facts (`None` for an omitted optional input).
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError>;

    /// Computes the outputs into `outputs`, one per node output: buffers the
    /// session lends from its memory plan (or the caller's, through IO
    /// binding). A kernel sizes each with [`Tensor::reset`] and writes every
    /// element, so a planned buffer of the right size is reused without
    /// allocating. Kernels check their inputs and return errors, never
    /// panic.
    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError>;

    /// An input whose tensor output 0 may take over, values and all, once
    /// nothing else reads it: the session then passes that input as absent
    /// and lends its tensor, with its shape and values, as output 0, and
    /// the kernel computes over it in place (a shortcut added where it
    /// lies). A kernel that declares one runs either way.
    fn in_place_input(&self) -> Option<usize> {
        None
    }

    /// Whether the kernel waits on a device: the session's async run then
    /// awaits [`eval_async`](Self::eval_async) instead of calling `eval`.
    fn waits_on_device(&self) -> bool {
        false
    }

    /// [`eval`](Self::eval) as a future that holds no thread while a device
    /// works. Kernels that compute on the calling thread keep this default.
    fn eval_async<'a>(&'a self, inputs: &'a [Option<&'a Tensor>], outputs: &'a mut [Tensor], threads: &'a rayon::ThreadPool) -> EvalFuture<'a> {
        Box::pin(std::future::ready(self.eval(inputs, outputs, threads)))
    }

    /// The provider whose device tensors
    /// [`eval_on_device`](Self::eval_on_device) reads and writes directly:
    /// a subgraph compiled for a device. The session then hands it the
    /// graph inputs and outputs bound on that device instead of host
    /// copies.
    fn device(&self) -> Option<&'static str> {
        None
    }

    /// [`eval_async`](Self::eval_async) with inputs and outputs that may
    /// live on [`device`](Self::device)'s device. Only called on ops that
    /// name a device.
    fn eval_on_device<'a, 'b: 'a>(&'a self, inputs: &'a [Option<ValueRef<'b>>], outputs: &'a mut [ValueMut<'b>], threads: &'a rayon::ThreadPool) -> EvalFuture<'a> {
        let _ = (inputs, outputs, threads);
        Box::pin(std::future::ready(Err(OpError::Device("this operator reads no device tensors".into()))))
    }

    /// [`eval`](Self::eval) into `outputs` new tensors: for constant
    /// folding and tests.
    fn eval_new(&self, inputs: &[Option<&Tensor>], outputs: usize, threads: &rayon::ThreadPool) -> Result<Vec<Tensor>, OpError> {
        self.eval_limited(inputs, outputs, threads, usize::MAX)
    }

    /// [`eval_new`](Self::eval_new) with outputs of at most `max_bytes`
    /// each: constant folding under the session's tensor limit.
    fn eval_limited(&self, inputs: &[Option<&Tensor>], outputs: usize, threads: &rayon::ThreadPool, max_bytes: usize) -> Result<Vec<Tensor>, OpError> {
        let mut results = vec![Tensor::with_max_bytes(max_bytes); outputs];
        self.eval(inputs, &mut results, threads)?;
        Ok(results)
    }
}

/// A float input (f16, f32 or f64) as f64 values, for the operators that
/// compute in f64 whatever their element type (attention, signal, grid,
/// streaming).
pub(crate) fn f64_values(t: &Tensor, index: usize) -> Result<Vec<f64>, OpError> {
    match t.dtype() {
        DataType::F32 | DataType::F64 | DataType::F16 => Ok(crate::dispatch!(t.dtype(), T => t.elements::<T>().unwrap_or_default().iter().map(|v| v.to_f64()).collect())),
        other => Err(OpError::input(index, format!("expected a float type, got {other}"))),
    }
}

/// Writes f64 `values` into `out` as `dtype`, shaped `shape`.
pub(crate) fn write_f64(out: &mut Tensor, dtype: DataType, shape: &[usize], values: &[f64]) -> Result<(), OpError> {
    crate::dispatch!(dtype, T => out.reset_as::<T>(shape)?.iter_mut().zip(values).for_each(|(o, &v)| *o = T::from_f64(v)));
    Ok(())
}

/// Output `index`, which the node must have.
pub fn output(outputs: &mut [Tensor], index: usize) -> Result<&mut Tensor, OpError> {
    let count = outputs.len();
    outputs.get_mut(index).ok_or_else(|| OpError::Shape(format!("the kernel writes output {index} but the node has {count}")))
}

/// The future of [`Op::eval_async`].
pub type EvalFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), OpError>> + Send + 'a>>;

/// Builds an operator from a node at an opset version.
pub type Builder = fn(node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError>;

/// Every operator byob runs on the CPU, by op type.
pub fn registry() -> HashMap<&'static str, Builder> {
    let mut ops = HashMap::new();
    unary::register(&mut ops);
    linalg::register(&mut ops);
    conv::register(&mut ops);
    pool::register(&mut ops);
    norm::register(&mut ops);
    binary::register(&mut ops);
    shape::register(&mut ops);
    packed::register(&mut ops);
    reduce::register(&mut ops);
    compare::register(&mut ops);
    cast::register(&mut ops);
    slice::register(&mut ops);
    extend::register(&mut ops);
    generate::register(&mut ops);
    sample_norm::register(&mut ops);
    select::register(&mut ops);
    loss::register(&mut ops);
    scatter::register(&mut ops);
    recurrent::register(&mut ops);
    signal::register(&mut ops);
    attention::register(&mut ops);
    resize::register(&mut ops);
    conv_transpose::register(&mut ops);
    quantize::register(&mut ops);
    streaming::register(&mut ops);
    rearrange::register(&mut ops);
    grid::register(&mut ops);
    einsum::register(&mut ops);
    ops
}

/// Attribute accessors with errors that name the attribute.
pub struct Attrs<'a>(pub &'a Node);

impl Attrs<'_> {
    pub fn get(&self, name: &str) -> Option<&Attribute> {
        self.0.attributes.get(name)
    }

    pub fn float(&self, name: &str, default: f32) -> Result<f32, OpError> {
        match self.get(name) {
            None => Ok(default),
            Some(Attribute::Float(v)) => Ok(*v),
            Some(other) => Err(OpError::attribute(name, format!("expected a float, got {other:?}"))),
        }
    }

    /// The activation a fusion pass put into the node (`activation`):
    /// whether it is a Relu (absent: none).
    pub fn fused_relu(&self) -> Result<bool, OpError> {
        match self.string("activation", "")?.as_str() {
            "" => Ok(false),
            "Relu" => Ok(true),
            other => Err(OpError::attribute("activation", format!("{other:?} is not an activation byob fuses"))),
        }
    }

    pub fn int(&self, name: &str, default: i64) -> Result<i64, OpError> {
        match self.get(name) {
            None => Ok(default),
            Some(Attribute::Int(v)) => Ok(*v),
            Some(other) => Err(OpError::attribute(name, format!("expected an int, got {other:?}"))),
        }
    }

    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(Attribute::Ints(v)) => Ok(Some(v.clone())),
            Some(other) => Err(OpError::attribute(name, format!("expected ints, got {other:?}"))),
        }
    }

    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(Attribute::Floats(v)) => Ok(Some(v.clone())),
            Some(other) => Err(OpError::attribute(name, format!("expected floats, got {other:?}"))),
        }
    }

    pub fn string(&self, name: &str, default: &str) -> Result<String, OpError> {
        match self.get(name) {
            None => Ok(default.to_string()),
            Some(Attribute::String(v)) => Ok(v.clone()),
            Some(other) => Err(OpError::attribute(name, format!("expected a string, got {other:?}"))),
        }
    }

    pub fn tensor(&self, name: &str) -> Result<Option<&Tensor>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(Attribute::Tensor(t)) => Ok(Some(t)),
            Some(other) => Err(OpError::attribute(name, format!("expected a tensor, got {other:?}"))),
        }
    }
}

/// A shape or list for messages: `[2, 3]`.
pub(crate) fn show<T: std::fmt::Display>(items: &[T]) -> String {
    format!("[{}]", items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
}

/// Input `index`, which the op requires.
pub fn required<'a, T>(inputs: &[Option<&'a T>], index: usize) -> Result<&'a T, OpError> {
    inputs.get(index).copied().flatten().ok_or_else(|| OpError::input(index, "missing"))
}
