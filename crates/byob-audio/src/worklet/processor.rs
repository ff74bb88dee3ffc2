//! The processor contract: what a worklet processor implements and what the
//! engine hands it.

use crate::lent::ByobMemory;
use super::registration::{BufferKind, RegistrationError, Registrations};
use crate::block::{AudioBlock, RENDER_QUANTUM_SIZE};
use crate::node::RenderScope;
use crate::param::ParamBuffer;

/// A processor, modelled on AudioWorkletProcessor.
///
/// Contract:
/// * The constructor (a [`ProcessorFactory`](super::ProcessorFactory)) runs
///   on the control thread and may allocate, including the processor's own
///   [`ByobMemory`], and register regions of it with
///   [`ProcessorInit::register_buffers`].
/// * [`process`](Self::process) runs on the render thread once per render
///   quantum. It must not allocate, lock or make system calls. Input
///   channels arrive planar (`io.input(k)`: channel `c` is
///   `[c * 128 .. (c + 1) * 128]`), already mixed to the port's channel
///   count; it writes `io.output(k)` the same way. For a registered port
///   these slices lie in the processor's own regions: the engine mixed the
///   input straight into them and downstream nodes read the output straight
///   out of them. Without registration they are engine-owned arrays that the
///   engine copies in and out, as browsers do.
/// * It returns the spec's active-source flag: `false` lets the node stop
///   once its inputs are silent.
/// * A panic inside it is caught: the node reports a `processorerror`,
///   outputs silence from then on and is not called again.
pub trait WorkletProcessor: Send + 'static {
    fn process(&mut self, io: &mut ProcessIo<'_>) -> bool;

    /// Called before `process` when a port's channel count changes. The
    /// processor may register a larger region with `registrar`, then accept,
    /// or reject: the engine then keeps the previous channel count and
    /// up/down-mixes to it. The default accepts when the port's region
    /// (or engine-owned storage) fits the new count and rejects otherwise.
    /// Accepting with a region that is too small is a processor error.
    fn channel_topology_change(&mut self, change: TopologyChange, registrar: &mut Registrar<'_>) -> TopologyResponse {
        let _ = (change, registrar);
        TopologyResponse::AcceptIfFits
    }

    /// A message from the control side through the node's port
    /// ([`AudioWorkletNode::post_message`](super::AudioWorkletNode::post_message)),
    /// delivered at a quantum boundary, before that quantum's `process`. The
    /// processor may take what it needs out of `message` (its contents are
    /// moved, never copied or freed here: what is left is freed off the
    /// render thread) and register regions with `registrar`, which take
    /// effect in that quantum. Runs on the render thread: no allocation.
    fn on_message(&mut self, message: &mut crate::node::PortMessage, registrar: &mut Registrar<'_>) {
        let _ = (message, registrar);
    }
}

/// Which side of the node a port is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortKind {
    Input,
    Output,
}

/// A change of a port's channel count, offered to the processor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopologyChange {
    pub kind: PortKind,
    pub port: usize,
    pub old_channels: usize,
    pub new_channels: usize,
    /// `new_channels * 512`: the region size the new count needs.
    pub bytes_needed: usize,
}

/// The processor's answer to a [`TopologyChange`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologyResponse {
    /// Take the new channel count; the port's region must fit it.
    Accept,
    /// Keep the previous count: the engine up/down-mixes to it.
    Reject,
    /// Accept when the region fits, reject otherwise (the default).
    AcceptIfFits,
}

/// Anything a processor registers regions through: [`ProcessorInit`],
/// [`Registrar`] and [`ProcessIo`]. Hosts that forward registration calls
/// (a WebAssembly import, say) work with all three through this trait.
pub trait RegisterBuffers {
    /// See [`Registrar::register_buffers`].
    fn register_buffers(
        &mut self,
        memory: &ByobMemory,
        offset: usize,
        max_len: usize,
        kind: BufferKind,
        port: usize,
    ) -> Result<(), RegistrationError>;

    /// The current channel count of a port.
    fn channel_count(&self, kind: super::PortKind, port: usize) -> Option<usize>;
}

fn channel_count(registrations: &Registrations, kind: PortKind, port: usize) -> Option<usize> {
    match kind {
        PortKind::Input => registrations.input_channels.get(port).copied(),
        PortKind::Output => registrations.output_channels.get(port).copied(),
    }
}

impl RegisterBuffers for Registrar<'_> {
    fn register_buffers(&mut self, memory: &ByobMemory, offset: usize, max_len: usize, kind: BufferKind, port: usize) -> Result<(), RegistrationError> {
        Registrar::register_buffers(self, memory, offset, max_len, kind, port)
    }

    fn channel_count(&self, kind: PortKind, port: usize) -> Option<usize> {
        channel_count(self.registrations, kind, port)
    }
}

impl RegisterBuffers for ProcessorInit<'_> {
    fn register_buffers(&mut self, memory: &ByobMemory, offset: usize, max_len: usize, kind: BufferKind, port: usize) -> Result<(), RegistrationError> {
        self.registrar.register_buffers(memory, offset, max_len, kind, port)
    }

    fn channel_count(&self, kind: PortKind, port: usize) -> Option<usize> {
        channel_count(self.registrar.registrations, kind, port)
    }
}

impl RegisterBuffers for ProcessIo<'_> {
    fn register_buffers(&mut self, memory: &ByobMemory, offset: usize, max_len: usize, kind: BufferKind, port: usize) -> Result<(), RegistrationError> {
        ProcessIo::register_buffers(self, memory, offset, max_len, kind, port)
    }

    fn channel_count(&self, kind: PortKind, port: usize) -> Option<usize> {
        channel_count(self.registrations, kind, port)
    }
}

/// Registers regions of a processor's memory: in the constructor, in
/// `channel_topology_change` and (through [`ProcessIo`]) in `process`.
pub struct Registrar<'a> {
    pub(crate) registrations: &'a mut Registrations,
}

impl Registrar<'_> {
    /// Lends `max_len` bytes of `memory` at `offset` to the engine for
    /// `kind` on `port`. Layout: planar f32, channel `c` at
    /// `offset + c * 512`; `max_len` may exceed what the current channel
    /// count needs (over-allocation). On error the previous registration
    /// stays in force.
    pub fn register_buffers(
        &mut self,
        memory: &ByobMemory,
        offset: usize,
        max_len: usize,
        kind: BufferKind,
        port: usize,
    ) -> Result<(), RegistrationError> {
        self.registrations.register(memory, offset, max_len, kind, port)
    }

    /// The current channel count of an input port.
    pub fn input_channels(&self, port: usize) -> usize {
        self.registrations.input_channels[port]
    }

    /// The current channel count of an output port.
    pub fn output_channels(&self, port: usize) -> usize {
        self.registrations.output_channels[port]
    }
}

/// What a processor's constructor receives (AudioWorkletNodeOptions and the
/// means to register its memory).
pub struct ProcessorInit<'a> {
    pub sample_rate: f32,
    pub number_of_inputs: usize,
    pub number_of_outputs: usize,
    /// The node's `processorOptions` (JSON `null` when absent).
    pub processor_options: &'a serde_json::Value,
    pub registrar: Registrar<'a>,
}

impl ProcessorInit<'_> {
    /// See [`Registrar::register_buffers`].
    pub fn register_buffers(
        &mut self,
        memory: &ByobMemory,
        offset: usize,
        max_len: usize,
        kind: BufferKind,
        port: usize,
    ) -> Result<(), RegistrationError> {
        self.registrar.register_buffers(memory, offset, max_len, kind, port)
    }

    /// `len` floats of the processor's memory at byte `offset`, to
    /// initialise; fails if any part of the range is already lent.
    pub fn memory<'m>(&'m mut self, memory: &'m ByobMemory, offset: usize, len: usize) -> Result<&'m mut [f32], RegistrationError> {
        memory.unlent_floats(self.registrar.registrations, offset, len).ok_or(RegistrationError::NotAvailable { offset, len })
    }

    /// The initial channel count of an input port.
    pub fn input_channels(&self, port: usize) -> usize {
        self.registrar.input_channels(port)
    }

    /// The initial channel count of an output port.
    pub fn output_channels(&self, port: usize) -> usize {
        self.registrar.output_channels(port)
    }
}

/// Everything a `process` call works with.
pub struct ProcessIo<'a> {
    /// The graph's blocks: lent regions for registered ports.
    pub(crate) graph_inputs: &'a [AudioBlock],
    pub(crate) graph_outputs: &'a mut [AudioBlock],
    /// The engine-owned arrays that unregistered ports are copied through.
    pub(crate) copied_inputs: &'a [AudioBlock],
    pub(crate) copied_outputs: &'a mut [AudioBlock],
    /// Where the graph's own output blocks wait while a region replaces
    /// them (moved, never dropped, on the render thread).
    pub(crate) parked_outputs: &'a mut [Option<AudioBlock>],
    pub(crate) params: &'a [ParamBuffer],
    pub(crate) registrations: &'a mut Registrations,
    pub(crate) scope: RenderScope,
    /// Set by [`fail`](Self::fail): the node reports a processorerror.
    pub(crate) failure: Option<String>,
    /// Bytes the processor's host copied itself (a copying ABI).
    pub(crate) host_copied: u64,
}

/// Puts `new` in `slot`. The block it displaces is parked if it is the
/// engine's own (so its storage is not freed on the render thread); a
/// displaced region view is dropped, which only releases a reference.
pub(crate) fn install(slot: &mut AudioBlock, new: AudioBlock, parked: &mut Option<AudioBlock>) {
    let old = std::mem::replace(slot, new);
    if old.region().is_none() {
        *parked = Some(old);
    }
}

fn planar(block: &AudioBlock) -> &[f32] {
    // (Both the graph's and the copied input blocks outlive the call.)
    block.channels().as_flattened()
}

impl<'a> ProcessIo<'a> {
    pub fn number_of_inputs(&self) -> usize {
        self.graph_inputs.len()
    }

    pub fn number_of_outputs(&self) -> usize {
        self.graph_outputs.len()
    }

    /// Input `port`, planar (`channels * 128` samples). Empty for an
    /// in-place port: its input is already in [`output`](Self::output).
    /// Inputs stay readable for the whole call, beside the outputs.
    pub fn input(&self, port: usize) -> &'a [f32] {
        match &self.registrations.inputs[port] {
            Some(r) if r.in_place => &[],
            Some(_) => planar(&self.graph_inputs[port]),
            None => planar(&self.copied_inputs[port]),
        }
    }

    pub fn input_channels(&self, port: usize) -> usize {
        self.registrations.input_channels[port]
    }

    /// Output `port`, planar (`channels * 128` samples), to fill.
    pub fn output(&mut self, port: usize) -> &mut [f32] {
        let block = if self.registrations.outputs[port].is_some() {
            &mut self.graph_outputs[port]
        } else {
            &mut self.copied_outputs[port]
        };
        block.channels_mut().as_flattened_mut()
    }

    pub fn output_channels(&self, port: usize) -> usize {
        self.registrations.output_channels[port]
    }

    /// Input `input` and output `output` at once (they never overlap: an
    /// in-place port's input is empty here).
    pub fn input_and_output(&mut self, input: usize, output: usize) -> (&[f32], &mut [f32]) {
        let input_slice: &[f32] = match &self.registrations.inputs[input] {
            Some(r) if r.in_place => &[],
            Some(_) => planar(&self.graph_inputs[input]),
            None => planar(&self.copied_inputs[input]),
        };
        let block = if self.registrations.outputs[output].is_some() {
            &mut self.graph_outputs[output]
        } else {
            &mut self.copied_outputs[output]
        };
        (input_slice, block.channels_mut().as_flattened_mut())
    }

    /// Parameter `index` for this quantum: 1 value when constant, 128 otherwise.
    pub fn param(&self, index: usize) -> &'a [f32] {
        self.params[index].values()
    }

    pub fn sample_rate(&self) -> f32 {
        self.scope.sample_rate
    }

    pub fn current_frame(&self) -> u64 {
        self.scope.current_frame
    }

    pub fn current_time(&self) -> f64 {
        self.scope.current_time()
    }

    pub fn frames(&self) -> usize {
        RENDER_QUANTUM_SIZE
    }

    /// Registers a region from inside `process`. An OUTPUT registration
    /// takes effect now: the region (already filled) is this quantum's
    /// output, and the region it replaces is the processor's again from the
    /// next call. An INPUT registration receives the next quantum's input.
    /// Never allocates.
    pub fn register_buffers(
        &mut self,
        memory: &ByobMemory,
        offset: usize,
        max_len: usize,
        kind: BufferKind,
        port: usize,
    ) -> Result<(), RegistrationError> {
        self.registrations.register(memory, offset, max_len, kind, port)?;
        if kind != BufferKind::Input {
            let region = self.registrations.outputs[port].as_ref().expect("just registered").region.clone();
            let channels = self.registrations.output_channels[port];
            install(&mut self.graph_outputs[port], AudioBlock::lent(region, channels), &mut self.parked_outputs[port]);
        }
        Ok(())
    }

    /// Ends this processor: after `process` returns, the node reports a
    /// `processorerror` with `message`, outputs silence and is not called
    /// again (what a panic does, without unwinding). Hosts of other code —
    /// a WebAssembly module that trapped — use it.
    pub fn fail(&mut self, message: impl Into<String>) {
        self.failure = Some(message.into());
    }

    /// Counts bytes that the processor's host copied between the engine's
    /// arrays and its own memory (a copying ABI), so the node's counter
    /// tells the whole story.
    pub fn count_copied_bytes(&mut self, bytes: usize) {
        self.host_copied += bytes as u64;
    }

    /// `len` floats of the processor's memory at byte `offset`, for work
    /// outside the lent regions (preparing outputs ahead, state, ...).
    /// Fails if any part of the range is lent to the engine right now.
    pub fn memory<'m>(&'m mut self, memory: &'m ByobMemory, offset: usize, len: usize) -> Result<&'m mut [f32], RegistrationError> {
        memory.unlent_floats(self.registrations, offset, len).ok_or(RegistrationError::NotAvailable { offset, len })
    }
}
