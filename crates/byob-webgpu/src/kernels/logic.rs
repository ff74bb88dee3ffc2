//! Comparisons, the logical ops, Where and Cast: what turns float data
//! into booleans and back, so that a mask (a transformer's attention mask,
//! a model's "is this padding" test) stays on the GPU with the values it
//! selects. Booleans are `u32`s, 0 or 1; every op broadcasts like Add,
//! through the same machinery.

use super::binary::{elementwise, Scalar};
use super::{Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;
use byob_tensor::model::Node;
use byob_tensor::ops::Attrs;
use byob_tensor::DataType;

pub(crate) fn compare(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let test = match spec.node.op_type.as_str() {
        "Equal" => "==",
        "Less" => "<",
        "LessOrEqual" => "<=",
        "Greater" => ">",
        "GreaterOrEqual" => ">=",
        other => return Err(spec.error(format!("{other} is not a comparison"))),
    };
    // Only Equal is defined on booleans.
    let t = if test == "==" { Scalar::of(spec.dtype(0)) } else { Scalar::F32 };
    elementwise(ctx, spec, &[t, t], Scalar::U32, &format!("select(O(0u), O(1u), a0 {test} a1)"))
}

pub(crate) fn logical(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let (types, expression): (&[Scalar], &str) = match spec.node.op_type.as_str() {
        "Not" => (&[Scalar::U32], "O(1u) - a0"),
        "And" => (&[Scalar::U32; 2], "a0 & a1"),
        "Or" => (&[Scalar::U32; 2], "a0 | a1"),
        "Xor" => (&[Scalar::U32; 2], "a0 ^ a1"),
        other => return Err(spec.error(format!("{other} is not a logical op"))),
    };
    elementwise(ctx, spec, types, Scalar::U32, expression)
}

pub(crate) fn select(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let t = Scalar::of(spec.dtype(1));
    elementwise(ctx, spec, &[Scalar::U32, t, t], t, "select(a2, a1, a0 != I0(0u))")
}

/// The type a Cast node casts to, when the GPU holds it.
fn cast_target(node: &Node) -> Option<DataType> {
    let to = Attrs(node).int("to", 0).ok()?;
    DataType::from_onnx(i32::try_from(to).ok()?).filter(|&d| super::on_gpu(d))
}

/// Whether a Cast node's target type lives on the GPU: known before any
/// shape is, so that a Cast to int64 is never placed there.
pub(crate) fn casts_on_gpu(node: &Node) -> bool {
    cast_target(node).is_some()
}

pub(crate) fn cast(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let target = cast_target(spec.node).ok_or_else(|| spec.error("casting to a type other than float32 or bool has no GPU kernel"))?;
    let from = Scalar::of(spec.dtype(0));
    let expression = match (from, Scalar::of(target)) {
        (Scalar::F32, Scalar::U32) => "select(O(0u), O(1u), a0 != I0(0.0))",
        (Scalar::U32, Scalar::F32) => "O(a0)",
        _ => "a0",
    };
    elementwise(ctx, spec, &[from], Scalar::of(target), expression)
}
