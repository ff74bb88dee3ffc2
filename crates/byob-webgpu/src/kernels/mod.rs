//! WGSL kernels for ONNX operators on float32 data, and booleans (stored as
//! one `u32` each, 0 or 1) where comparisons, the logical ops, Where, Cast
//! and the ops that only move data meet them. A kernel is built once per
//! node from its attributes, opset and static input shapes: attributes and
//! shapes are checked then, output shapes computed, programs fetched from
//! the cache and parameter blocks uploaded, so that encoding it later
//! allocates no GPU buffers and cannot fail on a bad attribute.
//!
//! Every family module turns a node into a `Kernel`: one or more
//! dispatches of cached programs over the node's inputs and outputs.

use crate::context::GpuContext;
use crate::error::GpuError;
use crate::program::{fold_groups, Program};
use byob_tensor::model::Node;
use byob_tensor::ops::{Attrs, OpError};
use byob_tensor::{DataType, Tensor};
use std::sync::Arc;

mod attention;
mod binary;
mod conv;
mod conv_nhwc;
mod conv_transpose;
mod expand;
mod gather;
mod gemm;
mod layer_norm;
mod layout;
mod logic;
mod matmul;
mod norm;
mod pad;
mod pool;
mod reduce;
mod resize;
mod shape;
mod slice;
mod softmax;
mod split;
mod unary;
mod window;

/// A byte range of a GPU buffer holding one tensor. Offsets must be
/// multiples of the device's `min_storage_buffer_offset_alignment`.
#[derive(Clone, Copy, Debug)]
pub struct GpuSlice<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

impl<'a> GpuSlice<'a> {
    pub fn whole(buffer: &'a wgpu::Buffer) -> Self {
        Self { buffer, offset: 0, size: buffer.size() }
    }

    fn first(self, size: u64) -> Self {
        Self { size, ..self }
    }
}

/// An ONNX node compiled for the GPU.
pub trait GpuKernel: Send + Sync + std::fmt::Debug {
    /// The shapes of the outputs, fixed when the kernel was built.
    fn output_shapes(&self) -> &[Vec<usize>];

    /// The element types of the outputs (float32 or bool).
    fn output_dtypes(&self) -> &[DataType];

    /// `Some(i)` when output 0 is input `i`'s bytes unchanged (Reshape,
    /// Flatten, Squeeze, Unsqueeze, Identity, Dropout): a caller may hand
    /// out the input's slice and skip [`encode`](Self::encode). Encoding
    /// still works and copies.
    fn aliases(&self) -> Option<usize> {
        None
    }

    /// Binds the kernel to these slices: its dispatches, ready to record
    /// any number of times. `inputs` are positional like the node's inputs,
    /// `None` for an omitted optional one; each slice must hold at least
    /// the tensor's bytes.
    fn bind(&self, ctx: &GpuContext, inputs: &[Option<GpuSlice<'_>>], outputs: &[GpuSlice<'_>]) -> Result<BoundKernel, GpuError>;

    /// Binds and records the kernel's dispatches once.
    fn encode(&self, ctx: &GpuContext, pass: &mut wgpu::ComputePass<'_>, inputs: &[Option<GpuSlice<'_>>], outputs: &[GpuSlice<'_>]) -> Result<(), GpuError> {
        self.bind(ctx, inputs, outputs)?.record(pass);
        Ok(())
    }
}

/// A kernel bound to its buffers: bind groups made and workgroup counts
/// folded once, so that recording it again costs only the commands (an
/// executable binds each kernel when it is built).
#[derive(Debug)]
pub struct BoundKernel {
    dispatches: Vec<(Arc<Program>, wgpu::BindGroup, [u32; 3])>,
}

impl BoundKernel {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        for (program, group, [x, y, z]) in &self.dispatches {
            pass.set_pipeline(&program.pipeline);
            pass.set_bind_group(0, group, &[]);
            pass.dispatch_workgroups(*x, *y, *z);
        }
    }
}

/// Whether a GPU kernel exists for this node (f32 data; Cast only to
/// float32 or bool, whatever the shapes): an ONNX op, or
/// the channels-last (`com.byob.nhwc`) variant of Conv, the pools or
/// BatchNormalization. Every opset of the supported ops is handled, so
/// `opset` does not narrow it yet.
pub fn supports(node: &Node, _opset: i64) -> bool {
    layout::known_domain(node) && builder(&node.op_type).is_some() && (node.op_type != "Cast" || logic::casts_on_gpu(node))
}

/// The inputs whose values `node`'s kernel reads when it is built (Slice's
/// starts, Pad's pads and value, Resize's scales...): unless they are known
/// constants, the node stays on the CPU, even before any shape is known.
pub fn constant_inputs(node: &Node, opset: i64) -> &'static [usize] {
    match node.op_type.as_str() {
        "Reshape" | "Expand" | "Tile" => &[1],
        "Squeeze" | "Unsqueeze" | "Split" | "ReduceSum" if opset >= 13 => &[1],
        "Slice" if opset >= 10 => &[1, 2, 3, 4],
        "Pad" if opset >= 11 => &[1, 2, 3],
        op if op.starts_with("Reduce") && opset >= 18 => &[1],
        "Resize" if opset >= 11 => &[2, 3],
        "Resize" | "Upsample" => &[1],
        _ => &[],
    }
}

/// What the facts tell before the shapes are known that rules a node out
/// of the GPU (so that a run never fails on a refusal the CPU would have
/// taken): Attention's past, outputs, heads and key length.
pub fn placeable(node: &Node, inputs: &[Option<&byob_tensor::ops::Fact>]) -> bool {
    node.op_type != "Attention" || attention::placeable(node, inputs)
}

/// Whether `node`'s kernel reads bool data (stored as `u32`s): the ops that
/// only move 32-bit words, the comparisons, logical ops, Where and Cast,
/// and Attention's mask. Every other kernel reads float32, which the provider checks from
/// the types alone before any shape is known.
pub fn reads_bool(node: &Node) -> bool {
    matches!(
        node.op_type.as_str(),
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Identity" | "Dropout" | "Slice" | "Pad" | "Expand" | "Tile" | "Split" | "Equal" | "Not" | "And" | "Or" | "Xor" | "Where" | "Cast" | "Attention"
    )
}

/// Builds the kernel for `node` given the shapes of its inputs (positional;
/// the entry of an omitted optional input is ignored).
pub fn create_kernel(ctx: &GpuContext, node: &Node, opset: i64, input_shapes: &[Vec<usize>]) -> Result<Box<dyn GpuKernel>, GpuError> {
    create_kernel_with_values(ctx, node, opset, input_shapes, &[])
}

/// [`create_kernel`] with the values of constant inputs (positional, `None`
/// where unknown): Reshape's target shape, Squeeze's and Unsqueeze's axes
/// from opset 13, and Clip's bounds from opset 11 are read here when given;
/// the first three must be, Clip binds non-constant bounds as buffers.
pub fn create_kernel_with_values(ctx: &GpuContext, node: &Node, opset: i64, input_shapes: &[Vec<usize>], values: &[Option<&Tensor>]) -> Result<Box<dyn GpuKernel>, GpuError> {
    create_typed_kernel(ctx, node, opset, input_shapes, &[], values)
}

/// Whether tensors of `dtype` can live on the GPU: float32, and bool as
/// `u32`s.
pub fn on_gpu(dtype: DataType) -> bool {
    matches!(dtype, DataType::F32 | DataType::Bool)
}

/// [`create_kernel_with_values`] with the inputs' element types
/// (positional; float32 where not given). Bound inputs of a type the
/// kernel does not read are refused by name.
pub fn create_typed_kernel(ctx: &GpuContext, node: &Node, opset: i64, input_shapes: &[Vec<usize>], dtypes: &[DataType], values: &[Option<&Tensor>]) -> Result<Box<dyn GpuKernel>, GpuError> {
    if !layout::known_domain(node) {
        return Err(GpuError::Unsupported { op: format!("{}.{}", node.domain, node.op_type), opset });
    }
    let build = builder(&node.op_type).ok_or_else(|| GpuError::Unsupported { op: node.op_type.clone(), opset })?;
    let present = |i: usize| node.inputs.get(i).is_some_and(|n| !n.is_empty());
    let mut spec = KernelSpec { node, opset, shapes: Vec::new(), values: Vec::new(), dtypes };
    for (i, name) in node.inputs.iter().enumerate() {
        if present(i) && input_shapes.get(i).is_none() {
            return Err(spec.error(format!("no shape given for input {i} ({name:?})")));
        }
    }
    spec.shapes = (0..node.inputs.len()).map(|i| if present(i) { input_shapes.get(i).map(Vec::as_slice) } else { None }).collect();
    spec.values = (0..node.inputs.len()).map(|i| if present(i) { values.get(i).copied().flatten() } else { None }).collect();
    let kernel = build(ctx, &spec)?;
    if !kernel.any_type {
        if let Some(&(i, _)) = kernel.inputs.iter().find(|(i, _)| spec.dtype(*i) != DataType::F32) {
            return Err(spec.error(format!("input {i} is {}; the GPU kernel reads float32", spec.dtype(i))));
        }
    }
    Ok(Box::new(kernel))
}

type Build = fn(&GpuContext, &KernelSpec<'_>) -> Result<Kernel, GpuError>;

fn builder(op: &str) -> Option<Build> {
    Some(match op {
        "Abs" | "Neg" | "Floor" | "Ceil" | "Reciprocal" | "Sqrt" | "Exp" | "Log" | "Erf" | "Sigmoid" | "Sin" | "Cos" | "Tan" | "Asin" | "Acos" | "Atan" | "Sinh" | "Cosh" | "Asinh" | "Acosh"
        | "Atanh" | "Tanh" | "Relu" | "LeakyRelu" | "Elu" | "HardSigmoid" | "ThresholdedRelu" | "Clip" | "Gelu" => unary::build,
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Sum" => binary::build,
        "MatMul" | "Gemm" => matmul::build,
        "Conv" => conv::build,
        "ConvTranspose" => conv_transpose::build,
        "MaxPool" | "AveragePool" | "GlobalMaxPool" | "GlobalAveragePool" => pool::build,
        "Transpose" => shape::transpose,
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Identity" | "Dropout" => shape::view,
        "Concat" => shape::concat,
        "Slice" => slice::build,
        "Pad" => pad::build,
        "Expand" => expand::expand,
        "Tile" => expand::tile,
        "Split" => split::build,
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1" | "ReduceL2" | "ReduceSumSquare" | "ReduceLogSum" | "ReduceLogSumExp" => reduce::build,
        "LayerNormalization" | "RMSNormalization" => layer_norm::build,
        "Resize" | "Upsample" => resize::build,
        "Softmax" => softmax::build,
        "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" => logic::compare,
        "Not" | "And" | "Or" | "Xor" => logic::logical,
        "Where" => logic::select,
        "Attention" => attention::build,
        "Cast" => logic::cast,
        "BatchNormalization" => norm::batch_norm,
        _ => return None,
    })
}

/// What a family builder gets: the node, its opset, and the shapes (and
/// values, for constants) of the inputs that are present.
pub(crate) struct KernelSpec<'a> {
    pub node: &'a Node,
    pub opset: i64,
    pub shapes: Vec<Option<&'a [usize]>>,
    pub values: Vec<Option<&'a Tensor>>,
    dtypes: &'a [DataType],
}

impl<'a> KernelSpec<'a> {
    pub fn error(&self, what: impl Into<String>) -> GpuError {
        GpuError::Kernel { node: self.node.name.clone(), op: self.node.op_type.clone(), what: what.into() }
    }

    /// An attribute error from byob-tensor's accessors, naming the node.
    pub fn attr<T>(&self, value: Result<T, OpError>) -> Result<T, GpuError> {
        value.map_err(|e| self.error(e.to_string()))
    }

    pub fn attrs(&self) -> Attrs<'a> {
        Attrs(self.node)
    }

    /// The shape of input `i`, which the op requires.
    pub fn input(&self, i: usize) -> Result<&'a [usize], GpuError> {
        self.shapes.get(i).copied().flatten().ok_or_else(|| self.error(format!("input {i} is missing")))
    }

    pub fn optional(&self, i: usize) -> Option<&'a [usize]> {
        self.shapes.get(i).copied().flatten()
    }

    /// The element type of input `i` (float32 unless told otherwise).
    pub fn dtype(&self, i: usize) -> DataType {
        self.dtypes.get(i).copied().unwrap_or(DataType::F32)
    }

    /// The value of input `i` when it is a known constant.
    pub fn value(&self, i: usize) -> Option<&'a Tensor> {
        self.values.get(i).copied().flatten()
    }

    /// A kernel that only moves input 0's 32-bit words (bits unchanged):
    /// its outputs have input 0's type, float32 or bool.
    pub fn moving_kernel(&self, output_shapes: Vec<Vec<usize>>) -> Result<Kernel, GpuError> {
        let dtype = self.dtype(0);
        if !on_gpu(dtype) {
            return Err(self.error(format!("input 0 is {dtype}, which the GPU does not hold")));
        }
        let outputs = output_shapes.len();
        Ok(self.kernel(output_shapes).typed(vec![dtype; outputs]))
    }

    /// A kernel with these outputs and no dispatches yet.
    pub fn kernel(&self, output_shapes: Vec<Vec<usize>>) -> Kernel {
        let inputs = self.shapes.iter().enumerate().filter_map(|(i, s)| s.map(|s| (i, bytes(s)))).collect();
        let output_dtypes = vec![DataType::F32; output_shapes.len()];
        Kernel { node: self.node.name.clone(), op: self.node.op_type.clone(), inputs, outputs: output_shapes.iter().map(|s| bytes(s)).collect(), output_shapes, output_dtypes, any_type: false, steps: Vec::new(), alias: None }
    }
}

/// Bytes of an f32 tensor, checked: a shape whose size overflows gives
/// `u64::MAX`, which no device limit admits.
pub(crate) fn bytes(shape: &[usize]) -> u64 {
    byob_tensor::tensor::element_count(shape, byob_tensor::DataType::F32).map_or(u64::MAX, |n| 4 * n as u64)
}

/// Refuses inputs, or `outputs`, with more elements than a u32 index
/// reaches (larger than any binding anyway), checked without overflowing,
/// so that kernels may index with u32 and count elements with [`numel`].
pub(crate) fn indexable(spec: &KernelSpec<'_>, outputs: &[&[usize]]) -> Result<(), GpuError> {
    match spec.shapes.iter().flatten().chain(outputs).find(|s| bytes(s) / 4 > u64::from(u32::MAX)) {
        Some(s) => Err(spec.error(format!("{s:?} holds more elements than 32-bit indexing reaches"))),
        None => Ok(()),
    }
}

pub(crate) fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// What a dispatch binds, in binding order.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Bind {
    Input(usize),
    Output(usize),
}

/// How many workgroups a dispatch runs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Grid {
    /// One invocation per item, in workgroups of `size`, folded to the limit.
    Flat { invocations: u64, size: u32 },
    /// Exactly these workgroups.
    Groups([u32; 3]),
}

#[derive(Debug)]
struct Step {
    program: Arc<Program>,
    uniform: wgpu::Buffer,
    binds: Vec<Bind>,
    grid: Grid,
}

/// A built kernel: its dispatches with their parameter blocks.
#[derive(Debug)]
pub(crate) struct Kernel {
    node: String,
    op: String,
    /// Present inputs and their bytes.
    inputs: Vec<(usize, u64)>,
    outputs: Vec<u64>,
    output_shapes: Vec<Vec<usize>>,
    output_dtypes: Vec<DataType>,
    /// Whether the builder checked its inputs' types itself (it reads
    /// bools, or only moves 32-bit words); otherwise every bound input
    /// must be float32.
    any_type: bool,
    steps: Vec<Step>,
    alias: Option<usize>,
}

impl Kernel {
    pub fn step(&mut self, program: Arc<Program>, uniform: wgpu::Buffer, binds: Vec<Bind>, grid: Grid) {
        self.steps.push(Step { program, uniform, binds, grid });
    }

    /// Only these inputs are bound; the others were read when building.
    pub fn bind_only(&mut self, inputs: &[usize]) {
        self.inputs.retain(|(i, _)| inputs.contains(i));
    }

    /// Outputs of these types, the builder having checked its inputs'.
    pub fn typed(mut self, dtypes: Vec<DataType>) -> Self {
        self.output_dtypes = dtypes;
        self.any_type = true;
        self
    }

    pub fn aliasing(mut self, input: usize) -> Self {
        self.alias = Some(input);
        self
    }

    fn mismatch(&self, what: String, expected: u64, actual: u64) -> GpuError {
        GpuError::SizeMismatch { what: format!("node {:?} ({}): {what}", self.node, self.op), expected, actual }
    }
}

impl GpuKernel for Kernel {
    fn output_shapes(&self) -> &[Vec<usize>] {
        &self.output_shapes
    }

    fn output_dtypes(&self) -> &[DataType] {
        &self.output_dtypes
    }

    fn aliases(&self) -> Option<usize> {
        self.alias
    }

    fn bind(&self, ctx: &GpuContext, inputs: &[Option<GpuSlice<'_>>], outputs: &[GpuSlice<'_>]) -> Result<BoundKernel, GpuError> {
        let mut bound_inputs: Vec<Option<GpuSlice>> = vec![None; inputs.len()];
        for &(i, bytes) in &self.inputs {
            let slice = inputs.get(i).copied().flatten().ok_or_else(|| GpuError::Kernel { node: self.node.clone(), op: self.op.clone(), what: format!("input {i} was not given") })?;
            if slice.size < bytes {
                return Err(self.mismatch(format!("input {i}"), bytes, slice.size));
            }
            bound_inputs[i] = Some(slice.first(bytes));
        }
        if outputs.len() < self.outputs.len() {
            return Err(GpuError::Kernel { node: self.node.clone(), op: self.op.clone(), what: format!("{} outputs expected, {} given", self.outputs.len(), outputs.len()) });
        }
        for (o, (slice, &bytes)) in outputs.iter().zip(&self.outputs).enumerate() {
            if slice.size < bytes {
                return Err(self.mismatch(format!("output {o}"), bytes, slice.size));
            }
        }
        let mut dispatches = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let slices: Vec<GpuSlice> = step
                .binds
                .iter()
                .map(|b| match *b {
                    Bind::Input(i) => bound_inputs[i].expect("bound inputs are present"),
                    Bind::Output(o) => outputs[o].first(self.outputs[o]),
                })
                .collect();
            let group = step.program.bind(ctx, &slices, &step.uniform);
            let groups = match step.grid {
                Grid::Flat { invocations, size } => fold_groups(invocations.div_ceil(u64::from(size)), ctx.limits().max_compute_workgroups_per_dimension)?,
                Grid::Groups(groups) => groups,
            };
            dispatches.push((Arc::clone(&step.program), group, groups));
        }
        Ok(BoundKernel { dispatches })
    }
}

#[cfg(test)]
mod tests {
    /// A crafted shape whose size wraps counts as larger than any device
    /// limit, never as the few bytes it wraps to.
    #[test]
    fn sizes_that_overflow_saturate() {
        assert_eq!(super::bytes(&[2, 3]), 24);
        assert_eq!(super::bytes(&[(1 << 62) + 1, 4]), u64::MAX);
        assert_eq!(super::bytes(&[]), 4);
    }
}
