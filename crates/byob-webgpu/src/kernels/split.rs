//! Split through the shared gather, one dispatch per output: output k
//! reads the input from its offset along the split axis. The sizes
//! (attribute before opset 13, constant input from 13, opset 18's
//! `num_outputs`) are resolved by byob-tensor's CPU Split.

use super::gather::{gather, AxisMap, Mode};
use super::shape::ints_input;
use super::{Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;
use byob_tensor::ops::slice::split_sizes;

pub(crate) fn build(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let x = spec.input(0)?;
    let given = if spec.optional(1).is_some() { ints_input(spec, 1, "split")? } else { None };
    let (axis, sizes) = spec.attr(split_sizes(spec.node, spec.opset, x, given.as_deref()))?;
    let shapes: Vec<Vec<usize>> = sizes
        .iter()
        .map(|&s| {
            let mut shape = x.to_vec();
            shape[axis] = s;
            shape
        })
        .collect();
    let mut kernel = spec.moving_kernel(shapes.clone())?;
    kernel.bind_only(&[0]);
    let mut offset = 0;
    for (k, shape) in shapes.iter().enumerate() {
        let maps: Vec<AxisMap> = shape.iter().enumerate().map(|(d, &out)| AxisMap { out, start: if d == axis { offset as i64 } else { 0 }, step: 1 }).collect();
        gather(ctx, spec, &mut kernel, x, &maps, Mode::Inside, k)?;
        offset += sizes[k];
    }
    Ok(kernel)
}
