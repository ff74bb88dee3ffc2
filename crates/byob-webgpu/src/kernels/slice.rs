//! Slice through the shared gather: each axis keeps the coordinates
//! `first + k · step` for k below its count. Starts, ends, axes and steps
//! (attributes before opset 10, constant inputs from 10, read when
//! building) are clamped by byob-tensor's own Slice rules, so that both
//! providers keep the same elements.

use super::gather::{gather, AxisMap, Mode};
use super::shape::ints_input;
use super::{Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;
use byob_tensor::ops::slice::kept_axes;

pub(crate) fn build(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let x = spec.input(0)?;
    let starts = ints_input(spec, 1, "starts")?.ok_or_else(|| spec.error("the starts are missing"))?;
    let ends = ints_input(spec, 2, "ends")?.ok_or_else(|| spec.error("the ends are missing"))?;
    let (axes, steps) = (ints_input(spec, 3, "axes")?, ints_input(spec, 4, "steps")?);
    let kept = spec.attr(kept_axes(x, &starts, &ends, axes.as_deref(), steps.as_deref()))?;
    let maps: Vec<AxisMap> = kept.iter().map(|&(first, step, count)| AxisMap { out: count, start: first as i64, step: step as i64 }).collect();
    let mut kernel = spec.moving_kernel(vec![maps.iter().map(|m| m.out).collect()])?;
    kernel.bind_only(&[0]);
    gather(ctx, spec, &mut kernel, x, &maps, Mode::Inside, 0)?;
    Ok(kernel)
}
