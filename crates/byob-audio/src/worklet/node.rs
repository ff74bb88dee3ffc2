//! AudioWorkletNode: hosts a [`WorkletProcessor`], on engine-owned arrays
//! (the copying baseline) or on regions the processor registered (BYOB).

use super::processor::{install, PortKind, ProcessIo, ProcessorInit, Registrar, TopologyChange, TopologyResponse, WorkletProcessor};
use super::registration::Registrations;
use super::registry::{PortLayout, ProcessorDefinition, ProcessorRegistry};
use crate::block::{AudioBlock, MAX_CHANNELS};
use crate::graph::{AudioGraph, AudioNodeOptions, AudioParamId, NodeDescription, NodeError, NodeEventKind, NodeId};
use crate::mixing::{ChannelConfig, ChannelCountMode};
use crate::node::{AudioNode, AudioProcessor, RenderScope};
use crate::param::{ParamBuffer, ParamState};
use crate::lent::CHANNEL_BYTES;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// The spec's AudioWorkletNodeOptions.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioWorkletNodeOptions {
    pub number_of_inputs: usize,
    pub number_of_outputs: usize,
    /// One count per output; without it a node with one input and one output
    /// follows its input's channel count and other nodes output mono.
    pub output_channel_count: Option<Vec<usize>>,
    /// Initial parameter values by name.
    pub parameter_data: Vec<(String, f32)>,
    pub processor_options: serde_json::Value,
    pub node: AudioNodeOptions,
}

impl Default for AudioWorkletNodeOptions {
    fn default() -> Self {
        Self {
            number_of_inputs: 1,
            number_of_outputs: 1,
            output_channel_count: None,
            parameter_data: Vec::new(),
            processor_options: serde_json::Value::Null,
            node: AudioNodeOptions::default(),
        }
    }
}

/// What a node's renderer shares with its handle and the context.
#[derive(Debug, Default)]
pub struct WorkletStatus {
    bytes_copied: AtomicU64,
    quanta: AtomicU64,
    topology_changes: AtomicU64,
    error: OnceLock<String>,
}

impl WorkletStatus {
    /// Bytes the worklet path copied between engine and processor arrays.
    pub fn bytes_copied(&self) -> u64 {
        self.bytes_copied.load(Ordering::Relaxed)
    }

    /// Render quanta the node has rendered.
    pub fn quanta(&self) -> u64 {
        self.quanta.load(Ordering::Relaxed)
    }

    /// `channel_topology_change` calls made.
    pub fn topology_changes(&self) -> u64 {
        self.topology_changes.load(Ordering::Relaxed)
    }

    /// The `processorerror` message, once the processor has failed.
    pub fn error(&self) -> Option<&str> {
        self.error.get().map(String::as_str)
    }
}

pub struct AudioWorkletNode {
    id: NodeId,
    status: Arc<WorkletStatus>,
    parameter_names: Vec<String>,
}

impl AudioNode for AudioWorkletNode {
    fn id(&self) -> NodeId {
        self.id
    }
}

impl AudioWorkletNode {
    /// Creates a node running the processor registered as `name`.
    pub fn new(graph: &mut AudioGraph, registry: &ProcessorRegistry, name: &str, options: AudioWorkletNodeOptions) -> Result<Self, NodeError> {
        let Some(definition) = registry.get(name) else {
            let known: Vec<&str> = registry.names().collect();
            return Err(NodeError::InvalidState {
                what: format!("no processor named {name:?} is registered (known: {})", known.join(", ")),
            });
        };
        Self::from_definition(graph, definition, name, options)
    }

    /// Creates a node running a processor that is not in a registry (one
    /// loaded from a WebAssembly module, say); `name` is for error messages.
    pub fn from_definition(
        graph: &mut AudioGraph,
        definition: &ProcessorDefinition,
        name: &str,
        options: AudioWorkletNodeOptions,
    ) -> Result<Self, NodeError> {
        let options = match &definition.port_layout {
            Some(layout) => with_layout(options, layout, name)?,
            None => options,
        };
        let (n_in, n_out) = (options.number_of_inputs, options.number_of_outputs);
        if n_in == 0 && n_out == 0 {
            return Err(NodeError::NotSupported { what: "numberOfInputs and numberOfOutputs cannot both be 0".into() });
        }
        if n_in > MAX_CHANNELS || n_out > MAX_CHANNELS {
            return Err(NodeError::NotSupported { what: format!("at most {MAX_CHANNELS} inputs and outputs") });
        }
        if let Some(counts) = &options.output_channel_count {
            if let Some(&bad) = counts.iter().find(|&&c| c == 0 || c > MAX_CHANNELS) {
                return Err(NodeError::NotSupported { what: format!("outputChannelCount {bad} is out of range 1..={MAX_CHANNELS}") });
            }
            if counts.len() != n_out {
                return Err(NodeError::IndexSize {
                    what: format!("outputChannelCount has {} entries but numberOfOutputs is {n_out}", counts.len()),
                });
            }
        }
        let config = options.node.resolve(ChannelConfig::default())?;
        let mut params: Vec<ParamState> = definition.parameter_descriptors.iter().cloned().map(ParamState::new).collect();
        for (name, value) in &options.parameter_data {
            let Some(param) = params.iter_mut().find(|p| &p.descriptor.name == name) else {
                return Err(NodeError::NotSupported { what: format!("parameterData names {name:?}, which the processor does not declare") });
            };
            NodeError::check_range("parameterData value", *value as f64, f64::MIN, f64::MAX)?;
            param.timeline.set_initial_value(*value);
        }
        let input_channels = vec![if config.mode == ChannelCountMode::Explicit { config.count } else { 1 }; n_in];
        let output_channels = options.output_channel_count.clone().unwrap_or_else(|| vec![1; n_out]);
        let (offered_inputs, offered_outputs) = (input_channels.clone(), output_channels.clone());
        let mut registrations = Registrations::new(input_channels, output_channels);
        let processor = {
            let mut init = ProcessorInit {
                sample_rate: graph.sample_rate(),
                number_of_inputs: n_in,
                number_of_outputs: n_out,
                processor_options: &options.processor_options,
                registrar: Registrar { registrations: &mut registrations },
            };
            (definition.factory)(&mut init).map_err(|e| NodeError::InvalidState { what: format!("processor {name:?} failed to construct: {e}") })?
        };
        let status = Arc::new(WorkletStatus::default());
        let follows_input = options.output_channel_count.is_none() && n_in == 1 && n_out == 1;
        let renderer = WorkletRenderer {
            processor,
            registrations,
            copied_inputs: vec![AudioBlock::new(); n_in],
            copied_outputs: vec![AudioBlock::new(); n_out],
            parked_inputs: vec![None; n_in],
            parked_outputs: vec![None; n_out],
            explicit_outputs: options.output_channel_count.clone(),
            follows_input,
            active_source: true,
            failed: false,
            status: status.clone(),
            offered_inputs,
            offered_outputs,
            quanta: 0,
            bytes_copied: 0,
            events: Vec::with_capacity(2 * (n_in + n_out) + 1),
        };
        let id = graph.add_node(NodeDescription {
            type_name: "AudioWorkletNode",
            number_of_inputs: n_in,
            number_of_outputs: n_out,
            channel_config: config,
            params,
            processor: Box::new(renderer),
            breaks_cycles: false,
        });
        graph.add_worklet_status(id, status.clone());
        Ok(Self { id, status, parameter_names: definition.parameter_descriptors.iter().map(|d| d.name.clone()).collect() })
    }

    /// Counters and the processor error, shared with the render side.
    pub fn status(&self) -> &Arc<WorkletStatus> {
        &self.status
    }

    /// Posts `message` to the processor's port: it arrives with the graph's
    /// next batch of changes, at a quantum boundary (see
    /// [`WorkletProcessor::on_message`]).
    pub fn post_message(&self, graph: &mut AudioGraph, message: crate::node::PortMessage) {
        graph.post_message(self.id, message);
    }

    /// A parameter by its descriptor's name.
    pub fn parameter(&self, name: &str) -> Option<AudioParamId> {
        self.parameter_names.iter().position(|n| n == name).map(|index| AudioParamId { node: self.id, index })
    }
}

/// Fills in the ports a processor fixes itself; options that contradict
/// them are errors.
fn with_layout(mut options: AudioWorkletNodeOptions, layout: &PortLayout, name: &str) -> Result<AudioWorkletNodeOptions, NodeError> {
    let defaults = AudioWorkletNodeOptions::default();
    let (n_in, n_out) = (layout.input_channels.len(), layout.output_channels.len());
    let conflict = |what: String| NodeError::NotSupported { what: format!("{name} fixes its ports: {what}") };
    for (given, fixed, default, what) in [
        (options.number_of_inputs, n_in, defaults.number_of_inputs, "numberOfInputs"),
        (options.number_of_outputs, n_out, defaults.number_of_outputs, "numberOfOutputs"),
    ] {
        if given != fixed && given != default {
            return Err(conflict(format!("{what} must be {fixed}, got {given}")));
        }
    }
    options.number_of_inputs = n_in;
    options.number_of_outputs = n_out;
    match &options.output_channel_count {
        Some(given) if *given != layout.output_channels => {
            return Err(conflict(format!("outputChannelCount must be {:?}, got {given:?}", layout.output_channels)));
        }
        _ => options.output_channel_count = Some(layout.output_channels.clone()),
    }
    if let Some(&channels) = layout.input_channels.first() {
        match options.node.channel_count {
            Some(given) if given != channels => return Err(conflict(format!("channelCount must be {channels}, got {given}"))),
            _ => options.node.channel_count = Some(channels),
        }
        options.node.channel_count_mode.get_or_insert(ChannelCountMode::Explicit);
    }
    Ok(options)
}

struct WorkletRenderer {
    processor: Box<dyn WorkletProcessor>,
    registrations: Registrations,
    copied_inputs: Vec<AudioBlock>,
    copied_outputs: Vec<AudioBlock>,
    parked_inputs: Vec<Option<AudioBlock>>,
    parked_outputs: Vec<Option<AudioBlock>>,
    explicit_outputs: Option<Vec<usize>>,
    follows_input: bool,
    /// The spec's [[active source]] flag: what `process` last returned.
    active_source: bool,
    failed: bool,
    status: Arc<WorkletStatus>,
    /// The channel count last offered to the processor per port: a change
    /// is offered once, not again every quantum after a rejection.
    offered_inputs: Vec<usize>,
    offered_outputs: Vec<usize>,
    /// Render-thread copies of the counters, published with plain stores
    /// (a read-modify-write per quantum would cost more than the rest).
    quanta: u64,
    bytes_copied: u64,
    /// Events of the current quantum, taken by the graph after `process`:
    /// at most one topology offer per port and one error, which the
    /// capacity reserved at construction holds.
    events: Vec<NodeEventKind>,
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the processor panicked".into())
}

/// One channel of silence on every output: a failed or finished processor.
fn silence(outputs: &mut [AudioBlock]) -> bool {
    for out in outputs.iter_mut() {
        out.make_silent(1);
    }
    false
}

/// Makes `block` view `region` (with `channels`), unless it already does.
fn point_at(block: &mut AudioBlock, region: &crate::lent::LentRegion, channels: usize, parked: &mut Option<AudioBlock>) {
    let same = block.region().is_some_and(|r| r.memory_id() == region.memory_id() && r.range() == region.range());
    if !same {
        install(block, AudioBlock::lent(region.clone(), channels.min(region.capacity_channels())), parked);
    }
}

impl WorkletRenderer {
    fn fail(&mut self, message: String) {
        self.failed = true;
        self.push_event(NodeEventKind::ProcessorError);
        // Only the first error is kept; a second cannot happen (the
        // processor is never called again).
        let _ = self.status.error.set(message);
    }

    /// Offers a channel-count change of a port to the processor.
    fn negotiate(&mut self, kind: PortKind, port: usize, new_channels: usize) {
        let old_channels = match kind {
            PortKind::Input => self.registrations.input_channels[port],
            PortKind::Output => self.registrations.output_channels[port],
        };
        let change = TopologyChange { kind, port, old_channels, new_channels, bytes_needed: new_channels * CHANNEL_BYTES };
        self.status.topology_changes.fetch_add(1, Ordering::Relaxed);
        let processor = &mut self.processor;
        let registrations = &mut self.registrations;
        let response = catch_unwind(AssertUnwindSafe(|| processor.channel_topology_change(change, &mut Registrar { registrations })));
        let response = match response {
            Ok(r) => r,
            Err(payload) => return self.fail(format!("channel_topology_change panicked: {}", panic_message(payload.as_ref()))),
        };
        let region = match kind {
            PortKind::Input => self.registrations.inputs[port].as_ref(),
            PortKind::Output => self.registrations.outputs[port].as_ref(),
        };
        let capacity = region.map_or(MAX_CHANNELS, |r| r.region.capacity_channels());
        let fits = new_channels <= capacity;
        let accept = match response {
            TopologyResponse::Accept if !fits => {
                return self.fail(format!(
                    "accepted {new_channels} channel(s) on {kind:?} port {port} with a region of {} bytes ({} needed)",
                    capacity * CHANNEL_BYTES,
                    new_channels * CHANNEL_BYTES
                ));
            }
            TopologyResponse::Accept => true,
            TopologyResponse::AcceptIfFits => fits,
            TopologyResponse::Reject => false,
        };
        if accept {
            match kind {
                PortKind::Input => self.registrations.input_channels[port] = new_channels,
                PortKind::Output => self.registrations.output_channels[port] = new_channels,
            }
        }
        self.push_event(NodeEventKind::TopologyChange { kind, port, old_channels, new_channels, accepted: accept });
    }

    fn push_event(&mut self, event: NodeEventKind) {
        // Never grows on the render thread: past the reserved room (which
        // the per-quantum bound above never reaches) an event is dropped.
        if self.events.len() < self.events.capacity() {
            self.events.push(event);
        }
    }

    fn desired_output_channels(&self, port: usize) -> usize {
        match &self.explicit_outputs {
            Some(counts) => counts[port],
            None if self.follows_input => self.registrations.input_channels[0],
            None => 1,
        }
    }
}

impl AudioProcessor for WorkletRenderer {
    fn port_message(&mut self, message: &mut crate::node::PortMessage) {
        if self.failed {
            return;
        }
        let processor = &mut self.processor;
        let registrations = &mut self.registrations;
        let delivered = catch_unwind(AssertUnwindSafe(|| processor.on_message(message, &mut Registrar { registrations })));
        if let Err(payload) = delivered {
            self.fail(format!("on_message panicked: {}", panic_message(payload.as_ref())));
        }
    }

    fn take_event(&mut self) -> Option<NodeEventKind> {
        // In the order raised; a shift of a few elements, no allocation.
        (!self.events.is_empty()).then(|| self.events.remove(0))
    }

    fn input_channels(&mut self, input: usize, computed: usize, block: &mut AudioBlock) -> usize {
        if self.failed {
            return computed.min(block.capacity());
        }
        self.registrations.apply_pending_input(input);
        let offer = computed != self.offered_inputs[input] && computed != self.registrations.input_channels[input];
        self.offered_inputs[input] = computed;
        if offer {
            self.negotiate(PortKind::Input, input, computed);
            if self.failed {
                return computed.min(block.capacity());
            }
        }
        let channels = self.registrations.input_channels[input];
        if let Some(r) = &self.registrations.inputs[input] {
            point_at(block, &r.region, channels, &mut self.parked_inputs[input]);
        }
        channels
    }

    fn process(&mut self, inputs: &[AudioBlock], outputs: &mut [AudioBlock], params: &[ParamBuffer], scope: &RenderScope) -> bool {
        self.quanta += 1;
        self.status.quanta.store(self.quanta, Ordering::Relaxed);
        let silent_inputs = || inputs.iter().all(AudioBlock::is_silent);
        if self.failed || (!self.active_source && silent_inputs()) {
            return silence(outputs);
        }
        for port in 0..outputs.len() {
            let desired = self.desired_output_channels(port);
            let offer = desired != self.offered_outputs[port] && desired != self.registrations.output_channels[port];
            self.offered_outputs[port] = desired;
            if offer {
                self.negotiate(PortKind::Output, port, desired);
                if self.failed {
                    return silence(outputs);
                }
            }
        }
        let mut copied = 0u64;
        for (port, out) in outputs.iter_mut().enumerate() {
            let channels = self.registrations.output_channels[port];
            match &self.registrations.outputs[port] {
                Some(r) => {
                    point_at(out, &r.region, channels, &mut self.parked_outputs[port]);
                    out.set_number_of_channels(channels);
                }
                None => {
                    // A fresh zeroed array each quantum, as the spec's outputs.
                    self.copied_outputs[port].make_silent(channels);
                }
            }
        }
        for (port, input) in inputs.iter().enumerate() {
            if self.registrations.inputs[port].is_none() {
                self.copied_inputs[port].copy_from(input);
                copied += (input.number_of_channels() * CHANNEL_BYTES) as u64;
            }
        }
        self.registrations.in_process = true;
        let mut io = ProcessIo {
            graph_inputs: inputs,
            graph_outputs: outputs,
            copied_inputs: &self.copied_inputs,
            copied_outputs: &mut self.copied_outputs,
            parked_outputs: &mut self.parked_outputs,
            params,
            registrations: &mut self.registrations,
            scope: *scope,
            failure: None,
            host_copied: 0,
        };
        let processor = &mut self.processor;
        let result = catch_unwind(AssertUnwindSafe(|| processor.process(&mut io)));
        let (failure, host_copied) = (io.failure.take(), io.host_copied);
        self.registrations.finish_process();
        copied += host_copied;
        if let Some(message) = failure {
            self.fail(message);
            return silence(outputs);
        }
        match result {
            Ok(keep_alive) => self.active_source = keep_alive,
            Err(payload) => {
                self.fail(format!("process panicked: {}", panic_message(payload.as_ref())));
                return silence(outputs);
            }
        }
        for (port, out) in outputs.iter_mut().enumerate() {
            if self.registrations.outputs[port].is_none() {
                out.copy_from(&self.copied_outputs[port]);
                copied += (out.number_of_channels() * CHANNEL_BYTES) as u64;
            }
        }
        if copied > 0 {
            self.bytes_copied += copied;
            self.status.bytes_copied.store(self.bytes_copied, Ordering::Relaxed);
        }
        true
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
