//! IO binding: bring your own tensors. The caller binds input tensors and
//! output buffers by name; a run reads the inputs where they are and has
//! the kernel that computes each output write straight into the bound
//! buffer (no copy afterwards). Outputs left unbound get a buffer on the
//! first run, which stays bound, so later runs with the same shapes
//! allocate nothing at all.
//!
//! ```no_run
//! use byob_tensor::{IoBinding, SessionBuilder, Tensor};
//! let session = SessionBuilder::new().commit_from_file("model.onnx")?;
//! let mut binding = IoBinding::new();
//! binding.bind_input("x", Tensor::f32(vec![1, 4], vec![0.5; 4])?);
//! binding.bind_output("y", Tensor::f32(vec![1, 2], vec![0.0; 2])?);
//! for step in 0..10 {
//!     // Write the next input in place, run, read the output in place.
//!     binding.input_mut("x").and_then(|x| x.as_f32_mut()).unwrap().fill(step as f32);
//!     session.run_with_binding(&mut binding)?;
//!     println!("{:?}", binding.output("y").and_then(|y| y.as_f32()));
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Inputs and outputs may also live on a device ([`DeviceTensor`]s, such
//! as a caller's GPU buffer wrapped by its provider): a step of that
//! provider reads and writes them where they are, so that a model fed by
//! the caller's own GPU work, or two models chained on the GPU, never
//! round-trip through host memory. A step of another provider that reads
//! a device input gets a host copy ([`RunStats::device_transfers`] counts
//! them).
//!
//! [`RunStats::device_transfers`]: crate::RunStats::device_transfers

use crate::device::{Device, DeviceOutput, DeviceTensor};
use crate::tensor::{DataType, Tensor};
use std::sync::Arc;

/// Tensors bound to a session's inputs and outputs by name.
#[derive(Debug, Default)]
pub struct IoBinding {
    pub(super) inputs: Vec<(String, Tensor)>,
    pub(super) outputs: Vec<(String, Tensor)>,
    pub(super) device_inputs: Vec<(String, DeviceTensor)>,
    pub(super) device_outputs: Vec<(String, DeviceOutput)>,
}

fn unbind<T>(list: &mut Vec<(String, T)>, name: &str) {
    list.retain(|(n, _)| n != name);
}

fn entry<'a, T>(list: &'a [(String, T)], name: &str) -> Option<&'a T> {
    list.iter().find(|(n, _)| n == name).map(|(_, t)| t)
}

fn slot<'a, T>(list: &'a mut [(String, T)], name: &str) -> Option<&'a mut T> {
    list.iter_mut().find(|(n, _)| n == name).map(|(_, t)| t)
}

fn bind<T>(list: &mut Vec<(String, T)>, name: String, value: T) {
    match slot(list, &name) {
        Some(t) => *t = value,
        None => list.push((name, value)),
    }
}

impl IoBinding {
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds (or rebinds) input `name`.
    pub fn bind_input(&mut self, name: impl Into<String>, tensor: Tensor) {
        let name = name.into();
        unbind(&mut self.device_inputs, &name);
        bind(&mut self.inputs, name, tensor);
    }

    /// Binds (or rebinds) input `name` to a tensor on a device: the
    /// caller's buffer, or an output another session left on the device.
    /// Runs read it where it is; the caller must not write it while a run
    /// is in flight.
    pub fn bind_input_on_device(&mut self, name: impl Into<String>, tensor: DeviceTensor) {
        let name = name.into();
        unbind(&mut self.inputs, &name);
        bind(&mut self.device_inputs, name, tensor);
    }

    /// Binds output `name` to the caller's device buffer: runs write the
    /// output into it (its shape is then the output's), and fail if it
    /// does not fit.
    pub fn bind_output_on_device(&mut self, name: impl Into<String>, tensor: DeviceTensor) {
        self.bind_device_output(name.into(), DeviceOutput::Caller(tensor));
    }

    /// Leaves output `name` on `device`, in a buffer of the device's that
    /// the first run allocates and later runs reuse while the output fits:
    /// read it with [`output_on_device`](Self::output_on_device), or bind
    /// it as another session's input to chain the two on the device.
    pub fn keep_output_on_device(&mut self, name: impl Into<String>, device: Arc<dyn Device>) {
        self.bind_device_output(name.into(), DeviceOutput::Owned { device, tensor: None });
    }

    fn bind_device_output(&mut self, name: String, output: DeviceOutput) {
        unbind(&mut self.outputs, &name);
        bind(&mut self.device_outputs, name, output);
    }

    /// Output `name` as the last run left it on the device.
    pub fn output_on_device(&self, name: &str) -> Option<&DeviceTensor> {
        entry(&self.device_outputs, name).and_then(DeviceOutput::tensor)
    }

    /// A bound device input.
    pub fn input_on_device(&self, name: &str) -> Option<&DeviceTensor> {
        entry(&self.device_inputs, name)
    }

    /// The names bound on a device, inputs and outputs.
    pub(super) fn on_device(&self) -> impl Iterator<Item = &str> {
        self.device_inputs.iter().map(|(n, _)| n.as_str()).chain(self.device_outputs.iter().map(|(n, _)| n.as_str()))
    }

    /// The type and shape of input `name`, on the host or on a device.
    pub(super) fn input_type(&self, name: &str) -> Option<(DataType, &[usize])> {
        match self.input(name) {
            Some(t) => Some((t.dtype(), t.shape())),
            None => self.input_on_device(name).map(|t| (t.dtype(), t.shape())),
        }
    }

    /// Binds output `name` to `buffer`: runs write the output into it,
    /// reusing its storage when it is large enough (its shape and contents
    /// are replaced).
    pub fn bind_output(&mut self, name: impl Into<String>, buffer: Tensor) {
        let name = name.into();
        unbind(&mut self.device_outputs, &name);
        bind(&mut self.outputs, name, buffer);
    }

    /// Binds output `name` to `tensor`, allocating only for a name not
    /// bound before (runs hand their outputs back through this).
    pub(super) fn put_output(&mut self, name: &str, tensor: Tensor) {
        match slot(&mut self.outputs, name) {
            Some(t) => *t = tensor,
            None => self.outputs.push((name.to_string(), tensor)),
        }
    }

    /// Output `name`, to swap with an input (a recurrent model's state
    /// handed from one run to the next without a copy).
    pub fn output_mut(&mut self, name: &str) -> Option<&mut Tensor> {
        slot(&mut self.outputs, name)
    }

    /// A bound input.
    pub fn input(&self, name: &str) -> Option<&Tensor> {
        entry(&self.inputs, name)
    }

    /// A bound input, to write the next run's values in place.
    pub fn input_mut(&mut self, name: &str) -> Option<&mut Tensor> {
        slot(&mut self.inputs, name)
    }

    /// Output `name` as the last run left it.
    pub fn output(&self, name: &str) -> Option<&Tensor> {
        entry(&self.outputs, name)
    }

    /// Unbinds output `name` and returns its tensor.
    pub fn take_output(&mut self, name: &str) -> Option<Tensor> {
        let at = self.outputs.iter().position(|(n, _)| n == name)?;
        Some(self.outputs.swap_remove(at).1)
    }

    /// The bound outputs, in binding order.
    pub fn outputs(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.outputs.iter().map(|(n, t)| (n.as_str(), t))
    }
}
