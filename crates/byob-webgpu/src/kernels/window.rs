//! Sliding-window geometry for Conv and the pools: byob-tensor's `Window`
//! (pads from `pads` or `auto_pad`, output sizes with or without
//! `ceil_mode`), so both providers resolve windows the same way.

use super::KernelSpec;
use crate::error::GpuError;
use byob_tensor::ops::window::Window;

pub(crate) use byob_tensor::kernels::window::Axis;

/// The axes of a window of `kernel` over `input` (spatial sizes), from the
/// node's `auto_pad`, `strides`, `dilations`, `pads` and, for pools,
/// `ceil_mode`.
pub(crate) fn axes(spec: &KernelSpec<'_>, input: &[usize], kernel: &[usize], with_ceil_mode: bool) -> Result<Vec<Axis>, GpuError> {
    let window = spec.attr(Window::from_attrs(&spec.attrs(), with_ceil_mode))?;
    spec.attr(window.geometry(input, kernel).map(|axes| axes.into_vec()))
}
