//! Tensors that live on a device: the session-side view of a GPU buffer,
//! brought by the caller or owned by a provider, so that IO binding can hand
//! a model device memory and get device memory back without a round trip
//! through the host.
//!
//! This crate knows no GPU API: a provider implements [`DeviceBuffer`] for
//! its buffers and [`Device`] for allocating them; the session only routes
//! [`DeviceTensor`]s to the steps of that provider ([`Op::device`]) and,
//! where a step of another provider reads one, copies it to the host
//! (counted in [`RunStats::device_transfers`]).
//!
//! [`Op::device`]: crate::ops::Op::device
//! [`RunStats::device_transfers`]: crate::RunStats::device_transfers

use crate::tensor::{element_count, DataType, Tensor};
use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Why a device tensor could not be made, read or written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The request does not fit the buffer or the device: a buffer too
    /// small, of another device, without the usage a copy needs.
    #[error("{0}")]
    Validation(String),
    /// The device failed (lost, out of memory).
    #[error("device error: {0}")]
    Device(String),
}

/// The future of a device transfer.
pub type DeviceFuture<'a> = Pin<Box<dyn Future<Output = Result<(), DeviceError>> + Send + 'a>>;

/// A byte range of device memory that a provider can read and write.
pub trait DeviceBuffer: Send + Sync + fmt::Debug + 'static {
    /// The name of the provider whose device holds it (`"webgpu"`).
    fn device(&self) -> &'static str;

    /// Its size in bytes.
    fn size(&self) -> u64;

    /// For the provider to get its own type back.
    fn as_any(&self) -> &dyn Any;

    /// Copies the first elements to the host as a `dtype` tensor of
    /// `shape`, into `into` (its storage reused when large enough).
    fn download<'a>(&'a self, dtype: DataType, shape: &'a [usize], into: &'a mut Tensor) -> DeviceFuture<'a>;

    /// Writes `from`'s elements at the start of the buffer.
    fn upload(&self, from: &Tensor) -> Result<(), DeviceError>;
}

/// A device that allocates buffers: what an output left on the device is
/// kept in.
pub trait Device: Send + Sync + fmt::Debug {
    /// The name of its provider, as [`DeviceBuffer::device`] gives it.
    fn name(&self) -> &'static str;

    fn allocate(&self, bytes: u64) -> Result<Arc<dyn DeviceBuffer>, DeviceError>;
}

/// A tensor on a device: type, shape and the buffer holding its elements
/// (row-major, each element in its host representation). Cloning shares
/// the buffer.
#[derive(Clone, Debug)]
pub struct DeviceTensor {
    dtype: DataType,
    shape: Vec<usize>,
    buffer: Arc<dyn DeviceBuffer>,
}

/// Bytes of a `dtype` tensor of `shape`, refused when it cannot exist.
fn bytes_of(dtype: DataType, shape: &[usize]) -> Result<u64, DeviceError> {
    let count = element_count(shape, dtype).map_err(|e| DeviceError::Validation(e.to_string()))?;
    Ok((count * dtype.size()) as u64)
}

impl DeviceTensor {
    /// A `dtype` tensor of `shape` in `buffer`, which must hold it.
    pub fn new(dtype: DataType, shape: Vec<usize>, buffer: Arc<dyn DeviceBuffer>) -> Result<Self, DeviceError> {
        let bytes = bytes_of(dtype, &shape)?;
        if bytes > buffer.size() {
            return Err(DeviceError::Validation(format!("a {dtype} tensor of shape {shape:?} needs {bytes} bytes; the {} buffer holds {}", buffer.device(), buffer.size())));
        }
        Ok(Self { dtype, shape, buffer })
    }

    pub fn dtype(&self) -> DataType {
        self.dtype
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The bytes its elements take (its buffer may be larger).
    pub fn bytes(&self) -> u64 {
        (self.shape.iter().product::<usize>() * self.dtype.size()) as u64
    }

    pub fn buffer(&self) -> &Arc<dyn DeviceBuffer> {
        &self.buffer
    }

    /// The name of the provider whose device holds it.
    pub fn device(&self) -> &'static str {
        self.buffer.device()
    }

    /// Copies it to the host into `into`.
    pub async fn download_into(&self, into: &mut Tensor) -> Result<(), DeviceError> {
        self.buffer.download(self.dtype, &self.shape, into).await
    }

    /// Copies it to a new host tensor.
    pub async fn to_host(&self) -> Result<Tensor, DeviceError> {
        let mut tensor = Tensor::default();
        self.download_into(&mut tensor).await?;
        Ok(tensor)
    }
}

/// Where a run leaves an output bound on a device.
#[derive(Clone, Debug)]
pub enum DeviceOutput {
    /// The caller's buffer: the output must fit in it.
    Caller(DeviceTensor),
    /// A buffer of `device`'s, allocated by the first run and reused by
    /// every later run whose output fits in it.
    Owned { device: Arc<dyn Device>, tensor: Option<DeviceTensor> },
}

impl DeviceOutput {
    /// The tensor as the last run left it.
    pub fn tensor(&self) -> Option<&DeviceTensor> {
        match self {
            Self::Caller(tensor) => Some(tensor),
            Self::Owned { tensor, .. } => tensor.as_ref(),
        }
    }

    /// The name of the provider whose device it is on.
    pub fn device(&self) -> &'static str {
        match self {
            Self::Caller(tensor) => tensor.device(),
            Self::Owned { device, .. } => device.name(),
        }
    }

    /// The tensor to write a `dtype` output of `shape` into: the caller's
    /// buffer (which must hold it), or the owned one, allocated when there
    /// is none or it is too small.
    pub fn prepare(&mut self, dtype: DataType, shape: &[usize]) -> Result<&DeviceTensor, DeviceError> {
        match self {
            Self::Caller(tensor) => {
                *tensor = DeviceTensor::new(dtype, shape.to_vec(), Arc::clone(&tensor.buffer))?;
                Ok(tensor)
            }
            Self::Owned { device, tensor } => {
                let bytes = bytes_of(dtype, shape)?;
                let buffer = match tensor.as_ref().filter(|t| t.buffer.size() >= bytes) {
                    Some(t) => Arc::clone(&t.buffer),
                    None => device.allocate(bytes)?,
                };
                Ok(tensor.insert(DeviceTensor::new(dtype, shape.to_vec(), buffer)?))
            }
        }
    }
}

/// An input of a step that reads device tensors: on the host or on the
/// step's device.
#[derive(Clone, Copy, Debug)]
pub enum ValueRef<'a> {
    Host(&'a Tensor),
    Device(&'a DeviceTensor),
}

impl<'a> ValueRef<'a> {
    pub fn dtype(&self) -> DataType {
        match self {
            Self::Host(t) => t.dtype(),
            Self::Device(t) => t.dtype(),
        }
    }

    pub fn shape(&self) -> &'a [usize] {
        match self {
            Self::Host(t) => t.shape(),
            Self::Device(t) => t.shape(),
        }
    }
}

/// An output of a step that writes device tensors: a host buffer the
/// session lends, or an output bound on the step's device.
#[derive(Debug)]
pub enum ValueMut<'a> {
    Host(&'a mut Tensor),
    Device(&'a mut DeviceOutput),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Host memory posing as a device, to test the bookkeeping.
    #[derive(Debug)]
    struct Fake(Mutex<Vec<u8>>);

    impl DeviceBuffer for Fake {
        fn device(&self) -> &'static str {
            "fake"
        }
        fn size(&self) -> u64 {
            self.0.lock().unwrap().len() as u64
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
        fn download<'a>(&'a self, _: DataType, shape: &'a [usize], into: &'a mut Tensor) -> DeviceFuture<'a> {
            let bytes = self.0.lock().unwrap().clone();
            let result = into.reset_f32(shape).map(|v| v.iter_mut().zip(bytes.chunks_exact(4)).for_each(|(v, b)| *v = f32::from_ne_bytes([b[0], b[1], b[2], b[3]])));
            Box::pin(std::future::ready(result.map_err(|e| DeviceError::Validation(e.to_string()))))
        }
        fn upload(&self, from: &Tensor) -> Result<(), DeviceError> {
            let values = from.as_f32().ok_or_else(|| DeviceError::Validation("f32 only".into()))?;
            let mut bytes = self.0.lock().unwrap();
            values.iter().flat_map(|v| v.to_ne_bytes()).enumerate().for_each(|(i, b)| bytes[i] = b);
            Ok(())
        }
    }

    #[derive(Debug, Default)]
    struct FakeDevice;

    impl Device for FakeDevice {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn allocate(&self, bytes: u64) -> Result<Arc<dyn DeviceBuffer>, DeviceError> {
            Ok(Arc::new(Fake(Mutex::new(vec![0; bytes as usize]))))
        }
    }

    #[test]
    fn a_tensor_must_fit_its_buffer() {
        let buffer: Arc<dyn DeviceBuffer> = Arc::new(Fake(Mutex::new(vec![0; 16])));
        assert!(DeviceTensor::new(DataType::F32, vec![2, 2], Arc::clone(&buffer)).is_ok());
        let error = DeviceTensor::new(DataType::F32, vec![5], buffer).unwrap_err();
        assert!(error.to_string().contains("needs 20 bytes; the fake buffer holds 16"), "{error}");
    }

    /// Whether preparing `output` for `shape` put it in another buffer.
    fn allocates(output: &mut DeviceOutput, shape: &[usize]) -> bool {
        let before = output.tensor().map(|t| Arc::clone(t.buffer()));
        let after = output.prepare(DataType::F32, shape).unwrap().buffer();
        before.is_none_or(|b| !Arc::ptr_eq(&b, after))
    }

    #[test]
    fn owned_outputs_allocate_once_and_grow_when_too_small() {
        let mut output = DeviceOutput::Owned { device: Arc::new(FakeDevice), tensor: None };
        assert!(allocates(&mut output, &[4]));
        assert!(!allocates(&mut output, &[2, 2]));
        assert!(!allocates(&mut output, &[3]));
        assert_eq!(output.tensor().unwrap().shape(), [3]);
        assert!(allocates(&mut output, &[5]));
    }

    #[test]
    fn a_callers_buffer_takes_what_fits_and_refuses_the_rest() {
        let buffer: Arc<dyn DeviceBuffer> = Arc::new(Fake(Mutex::new(vec![0; 16])));
        let mut output = DeviceOutput::Caller(DeviceTensor::new(DataType::F32, vec![4], buffer).unwrap());
        assert!(!allocates(&mut output, &[1, 3]));
        assert_eq!(output.tensor().unwrap().shape(), [1, 3]);
        let error = output.prepare(DataType::F32, &[8]).unwrap_err();
        assert!(error.to_string().contains("holds 16"), "{error}");
    }

    #[test]
    fn round_trip_through_the_host() {
        let mut output = DeviceOutput::Owned { device: Arc::new(FakeDevice), tensor: None };
        let tensor = output.prepare(DataType::F32, &[3]).unwrap();
        tensor.buffer().upload(&Tensor::f32(vec![3], vec![1.0, 2.0, 3.0]).unwrap()).unwrap();
        let host = pollster::block_on(tensor.to_host()).unwrap();
        assert_eq!(host.as_f32().unwrap(), [1.0, 2.0, 3.0]);
    }
}
