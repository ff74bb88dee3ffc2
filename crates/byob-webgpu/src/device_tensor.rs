//! GPU buffers as byob-tensor's device tensors: a byte range of a
//! `wgpu::Buffer` (the caller's, or one the provider allocated for an
//! output left on the GPU), with the context whose device holds it. The
//! session hands them to the provider's subgraphs, which copy between
//! them and their arenas on the GPU.

use crate::context::GpuContext;
use crate::error::GpuError;
use crate::executable::read_f32;
use crate::kernels::GpuSlice;
use crate::sync::Signal;
use byob_tensor::device::DeviceFuture;
use byob_tensor::{DataType, Device, DeviceBuffer, DeviceError, DeviceTensor, Tensor};
use std::any::Any;
use std::sync::Arc;

/// The provider's name, which its device tensors carry.
pub(crate) const WEBGPU: &str = "webgpu";

/// A byte range of a GPU buffer on a context's device.
#[derive(Debug)]
pub(crate) struct GpuBuffer {
    ctx: Arc<GpuContext>,
    buffer: wgpu::Buffer,
    offset: u64,
    size: u64,
}

impl GpuBuffer {
    pub fn slice(&self) -> GpuSlice<'_> {
        GpuSlice { buffer: &self.buffer, offset: self.offset, size: self.size }
    }

    /// Whether it was wrapped or allocated by a provider on `ctx` (clones
    /// of a provider share it). Not the devices' equality: wgpu compares
    /// devices by an id that two instances may both hand out.
    pub fn is_on(&self, ctx: &Arc<GpuContext>) -> bool {
        Arc::ptr_eq(&self.ctx, ctx)
    }
}

fn float32_only(dtype: DataType) -> String {
    format!("the webgpu provider's GPU tensors are float32, not {dtype}")
}

fn device_error(error: GpuError) -> DeviceError {
    if error.is_fatal() {
        DeviceError::Device(error.to_string())
    } else {
        DeviceError::Validation(error.to_string())
    }
}

impl DeviceBuffer for GpuBuffer {
    fn device(&self) -> &'static str {
        WEBGPU
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn download<'a>(&'a self, dtype: DataType, shape: &'a [usize], into: &'a mut Tensor) -> DeviceFuture<'a> {
        Box::pin(async move { self.read(dtype, shape, into).await.map_err(device_error) })
    }

    fn upload(&self, from: &Tensor) -> Result<(), DeviceError> {
        let values = from.as_f32().ok_or_else(|| DeviceError::Validation(float32_only(from.dtype())))?;
        let bytes: &[u8] = bytemuck::cast_slice(values);
        if bytes.len() as u64 > self.size {
            return Err(DeviceError::Validation(format!("{} bytes do not fit the {}-byte GPU buffer", bytes.len(), self.size)));
        }
        self.ctx.scoped("writing a device tensor", || self.ctx.queue().write_buffer(&self.buffer, self.offset, bytes)).map_err(device_error)
    }
}

impl GpuBuffer {
    /// Copies the first elements through a mappable buffer made for this
    /// read: downloads are the caller's explicit reads, or the session's
    /// fallback when a CPU step reads a GPU input.
    async fn read(&self, dtype: DataType, shape: &[usize], into: &mut Tensor) -> Result<(), GpuError> {
        let what = "reading a device tensor back";
        if dtype != DataType::F32 {
            return Err(GpuError::Validation { what: what.into(), message: float32_only(dtype) });
        }
        let values = into.reset_f32(shape).map_err(|e| GpuError::Internal { what: what.into(), message: e.to_string() })?;
        let bytes = 4 * values.len() as u64;
        if bytes > self.size {
            return Err(GpuError::SizeMismatch { what: what.into(), expected: bytes, actual: self.size });
        }
        if bytes == 0 {
            return Ok(());
        }
        let ctx = &self.ctx;
        let staging = ctx.scoped(what, || {
            let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
            let staging = ctx.create_buffer(&wgpu::BufferDescriptor { label: Some("byob-webgpu device tensor read"), size: bytes, usage, mapped_at_creation: false });
            let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("byob-webgpu device tensor read") });
            encoder.copy_buffer_to_buffer(&self.buffer, self.offset, &staging, 0, bytes);
            ctx.queue().submit([encoder.finish()]);
            staging
        })?;
        let signal = Arc::new(Signal::default());
        let mapped = Arc::clone(&signal);
        ctx.map_read(&staging, bytes, move |result| mapped.set(result.map_err(|e| e.to_string())));
        if let Err(message) = signal.wait().await {
            ctx.check()?;
            return Err(GpuError::Internal { what: what.into(), message });
        }
        let view = staging.get_mapped_range(..).map_err(|e| GpuError::Internal { what: what.into(), message: e.to_string() })?;
        read_f32(values, &view);
        Ok(())
    }
}

/// Wraps `size` bytes of `buffer` from `offset` as a device buffer, checking
/// what the subgraphs' copies need: copy-aligned offset and size, in range.
pub(crate) fn wrap(ctx: &Arc<GpuContext>, buffer: &wgpu::Buffer, offset: u64, size: u64) -> Result<GpuBuffer, GpuError> {
    let what = "binding a caller's GPU buffer";
    let invalid = |message: String| GpuError::Validation { what: what.into(), message };
    if !offset.is_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT) || !size.is_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT) {
        return Err(invalid(format!("offset {offset} and size {size} must be multiples of {}", wgpu::COPY_BUFFER_ALIGNMENT)));
    }
    if offset.checked_add(size).is_none_or(|end| end > buffer.size()) {
        return Err(invalid(format!("bytes {offset}..{offset}+{size} are past the buffer's {} bytes", buffer.size())));
    }
    let needed = wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    if !buffer.usage().contains(needed) {
        return Err(invalid(format!("the buffer's usage {:?} lacks COPY_SRC | COPY_DST, which the provider copies through", buffer.usage())));
    }
    Ok(GpuBuffer { ctx: Arc::clone(ctx), buffer: buffer.clone(), offset, size })
}

/// The GPU buffer of a device tensor of this provider's, if it is one.
pub(crate) fn gpu_buffer(tensor: &DeviceTensor) -> Option<&GpuBuffer> {
    tensor.buffer().as_any().downcast_ref::<GpuBuffer>()
}

/// The provider's device, as outputs left on the GPU see it: it allocates
/// their buffers.
#[derive(Debug)]
pub(crate) struct WebGpuDevice {
    pub ctx: Arc<GpuContext>,
}

impl Device for WebGpuDevice {
    fn name(&self) -> &'static str {
        WEBGPU
    }

    fn allocate(&self, bytes: u64) -> Result<Arc<dyn DeviceBuffer>, DeviceError> {
        let ctx = &self.ctx;
        let size = bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT).max(wgpu::COPY_BUFFER_ALIGNMENT);
        let limit = ctx.limits().max_buffer_size;
        if size > limit {
            return Err(DeviceError::Validation(format!("an output of {bytes} bytes is larger than the GPU's largest buffer ({limit} bytes)")));
        }
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let buffer = ctx
            .scoped("allocating a GPU output", || ctx.create_buffer(&wgpu::BufferDescriptor { label: Some("byob-webgpu output"), size, usage, mapped_at_creation: false }))
            .map_err(device_error)?;
        Ok(Arc::new(GpuBuffer { ctx: Arc::clone(ctx), buffer, offset: 0, size }))
    }
}
