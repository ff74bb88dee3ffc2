//! Expand and Tile through the shared gather. Expand reads each axis the
//! input broadcasts along at coordinate 0 (a step of 0), the input's shape
//! padded with leading ones to the output's rank; Tile wraps each output
//! coordinate into the input's axis. The target shape and the repeats are
//! constant inputs, read when building.

use super::binary::broadcast;
use super::gather::{gather, AxisMap, Mode};
use super::shape::ints_input;
use super::{Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;

pub(crate) fn expand(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let x = spec.input(0)?;
    let target = ints_input(spec, 1, "shape")?.ok_or_else(|| spec.error("the shape (input 1) is missing"))?;
    let target: Vec<usize> = target.iter().map(|&d| usize::try_from(d)).collect::<Result<_, _>>().map_err(|_| spec.error(format!("shape {target:?} has a negative dimension")))?;
    let out = broadcast(&[x, &target]).map_err(|e| spec.error(e))?;
    let mut padded = vec![1; out.len() - x.len()];
    padded.extend_from_slice(x);
    let maps: Vec<AxisMap> = padded.iter().zip(&out).map(|(&d, &o)| AxisMap { out: o, start: 0, step: i64::from(d != 1) }).collect();
    let mut kernel = spec.moving_kernel(vec![out])?;
    kernel.bind_only(&[0]);
    gather(ctx, spec, &mut kernel, &padded, &maps, Mode::Inside, 0)?;
    Ok(kernel)
}

pub(crate) fn tile(ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> {
    let x = spec.input(0)?;
    let repeats = ints_input(spec, 1, "repeats")?.ok_or_else(|| spec.error("the repeats (input 1) are missing"))?;
    let maps: Option<Vec<AxisMap>> = (repeats.len() == x.len())
        .then(|| x.iter().zip(&repeats).map(|(&d, &r)| usize::try_from(r).ok().and_then(|r| d.checked_mul(r)).map(|out| AxisMap { out, start: 0, step: 1 })).collect())
        .flatten();
    let maps = maps.ok_or_else(|| spec.error(format!("repeats {repeats:?} must hold one count of at least 0 per axis of {x:?}")))?;
    let mut kernel = spec.moving_kernel(vec![maps.iter().map(|m| m.out).collect()])?;
    kernel.bind_only(&[0]);
    gather(ctx, spec, &mut kernel, x, &maps, Mode::Wrap, 0)?;
    Ok(kernel)
}
