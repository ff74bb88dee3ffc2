//! Pad through the shared gather: output coordinate o of an axis reads
//! input coordinate o - begin, brought back into the axis by the mode
//! (constant, edge, reflect, wrap); negative pads crop. The pads (and
//! value) are attributes before opset 11, constant inputs from 11 (with
//! opset 18's axes), read when building; byob-tensor's CPU Pad resolves
//! them, so both providers agree on shapes and refusals.

use super::gather::{gather, AxisMap, Mode};
use super::shape::ints_input;
use super::{Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;
use byob_tensor::ops::extend::{pad_axes, Mode as PadMode};
use byob_tensor::{Data, DataType};

pub(crate) fn build(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let x = spec.input(0)?;
    let (pads, axes, value) = if spec.opset < 11 {
        (None, None, spec.attr(spec.attrs().float("value", 0.0))?)
    } else {
        let pads = ints_input(spec, 1, "pads")?.ok_or_else(|| spec.error("the pads are missing"))?;
        let value = match spec.optional(2) {
            None => 0.0,
            Some(_) => {
                let tensor = spec.value(2).ok_or_else(|| spec.error("input 2 (constant_value) must be a constant known when the kernel is built"))?;
                match tensor.data() {
                    Data::F32(v) if v.len() == 1 => v[0],
                    Data::Bool(v) if v.len() == 1 => f32::from(u8::from(v[0])),
                    _ => return Err(spec.error("input 2 (constant_value) must hold one float32 or bool")),
                }
            }
        };
        (Some(pads), ints_input(spec, 3, "axes")?, value)
    };
    let (mode, per_axis) = spec.attr(pad_axes(spec.node, spec.opset, x, pads.as_deref(), axes.as_deref()))?;
    let maps: Vec<AxisMap> = per_axis.iter().map(|&(begin, out)| AxisMap { out, start: -begin, step: 1 }).collect();
    let mode = match mode {
        // Booleans are words 0 and 1, not the float's bits.
        PadMode::Constant if spec.dtype(0) == DataType::Bool => Mode::Constant(u32::from(value != 0.0)),
        PadMode::Constant => Mode::Constant(value.to_bits()),
        PadMode::Edge => Mode::Edge,
        PadMode::Reflect => Mode::Reflect,
        PadMode::Wrap => Mode::Wrap,
    };
    let mut kernel = spec.moving_kernel(vec![maps.iter().map(|m| m.out).collect()])?;
    kernel.bind_only(&[0]);
    gather(ctx, spec, &mut kernel, x, &maps, mode, 0)?;
    Ok(kernel)
}
