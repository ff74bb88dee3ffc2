use super::{Kernel, KernelSpec};
use crate::context::GpuContext;
use crate::error::GpuError;
pub(crate) fn build(_ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> { Err(spec.error("todo")) }
pub(crate) fn transpose(_ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> { Err(spec.error("todo")) }
pub(crate) fn view(_ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> { Err(spec.error("todo")) }
pub(crate) fn concat(_ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> { Err(spec.error("todo")) }
pub(crate) fn batch_norm(_ctx: &GpuContext, spec: &KernelSpec<'_>) -> Result<Kernel, GpuError> { Err(spec.error("todo")) }
