//! The audio graph: nodes and connections built on the control side
//! ([`AudioGraph`], here), put in render order ([`order`]), and compiled
//! into the allocation-free render side ([`RenderGraph`], in [`render`]).

mod order;
mod render;

pub use render::RenderGraph;

use crate::block::MAX_CHANNELS;
use crate::mixing::{ChannelConfig, ChannelCountMode, ChannelInterpretation};
use crate::node::AudioProcessor;
use crate::param::{AudioParamDescriptor, AutomationError, ParamState};
use crate::worklet::WorkletStatus;
use crate::number::Shown;
use std::any::Any;
use std::sync::Arc;

/// The `processorerror` events of a graph's worklet nodes.
#[derive(Clone, Debug, Default)]
pub struct ProcessorErrors {
    watched: Vec<(String, Arc<WorkletStatus>)>,
}

impl ProcessorErrors {
    /// The errors raised so far, one per failed node.
    pub fn events(&self) -> Vec<ProcessorErrorEvent> {
        self.watched
            .iter()
            .filter_map(|(node, status)| status.error().map(|m| ProcessorErrorEvent { node: node.clone(), message: m.to_string() }))
            .collect()
    }
}

/// A node in an [`AudioGraph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub(crate) usize);

/// A parameter of a node in an [`AudioGraph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AudioParamId {
    pub(crate) node: NodeId,
    pub(crate) index: usize,
}

/// Why a connection was refused; the graph is left unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    #[error("{node} has {count} output(s); output {index} does not exist (IndexSizeError)")]
    NoSuchOutput { node: String, index: usize, count: usize },
    #[error("{node} has {count} input(s); input {index} does not exist (IndexSizeError)")]
    NoSuchInput { node: String, index: usize, count: usize },
    #[error("{node} has no AudioParam named {param:?} (it has: {known})")]
    NoSuchParam { node: String, param: String, known: String },
}

/// Why a graph could not be prepared for rendering.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    #[error("cycle without a DelayNode through: {0}")]
    CycleWithoutDelay(String),
}

/// The spec's AudioNodeOptions, every member optional.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AudioNodeOptions {
    pub channel_count: Option<usize>,
    pub channel_count_mode: Option<ChannelCountMode>,
    pub channel_interpretation: Option<ChannelInterpretation>,
}

/// Why a node could not be created with the given options.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error("channelCount {0} is out of range 1..={MAX_CHANNELS} (NotSupportedError)")]
    ChannelCount(usize),
    #[error("{what} (NotSupportedError)")]
    NotSupported { what: String },
    #[error("{what} (InvalidStateError)")]
    InvalidState { what: String },
    #[error("{name} = {} is outside {}..={} (RangeError)", Shown(*value), Shown(*min), Shown(*max))]
    Range { name: &'static str, value: f64, min: f64, max: f64 },
    #[error("{name} must be finite, got {}", Shown(*value))]
    NotFinite { name: &'static str, value: f64 },
    #[error("{what} (IndexSizeError)")]
    IndexSize { what: String },
    /// The system refused the memory a node needs (the spec leaves this to
    /// the implementation; browsers throw).
    #[error("out of memory: {what} needs {bytes} bytes")]
    OutOfMemory { what: String, bytes: usize },
    /// Past [`AudioGraph::set_memory_limit`].
    #[error("{what} needs {bytes} bytes, past the memory limit of {limit} bytes ({used} already taken; `byob render --max-memory-mib` raises it)")]
    MemoryLimit { what: String, bytes: usize, used: usize, limit: usize },
}

impl NodeError {
    pub(crate) fn check_range(name: &'static str, value: f64, min: f64, max: f64) -> Result<(), NodeError> {
        if !value.is_finite() {
            return Err(NodeError::NotFinite { name, value });
        }
        if value < min || value > max {
            return Err(NodeError::Range { name, value, min, max });
        }
        Ok(())
    }
}

impl AudioNodeOptions {
    /// Applies these options over a node's defaults.
    pub fn resolve(&self, defaults: ChannelConfig) -> Result<ChannelConfig, NodeError> {
        let count = self.channel_count.unwrap_or(defaults.count);
        if !(1..=MAX_CHANNELS).contains(&count) {
            return Err(NodeError::ChannelCount(count));
        }
        Ok(ChannelConfig {
            count,
            mode: self.channel_count_mode.unwrap_or(defaults.mode),
            interpretation: self.channel_interpretation.unwrap_or(defaults.interpretation),
        })
    }
}

/// Everything the graph needs to know about a node when it is created.
pub struct NodeDescription {
    pub type_name: &'static str,
    pub number_of_inputs: usize,
    pub number_of_outputs: usize,
    pub channel_config: ChannelConfig,
    pub params: Vec<ParamState>,
    pub processor: Box<dyn AudioProcessor>,
    /// DelayNode: may sit inside a cycle, delaying by at least one quantum.
    pub breaks_cycles: bool,
}

struct NodeEntry {
    label: String,
    description: NodeDescription,
}

/// A worklet node's shared status, with its label, for error reports.
#[derive(Clone, Debug)]
pub struct ProcessorErrorEvent {
    pub node: String,
    pub message: String,
}

/// Where a connection ends: a node's input, or one of its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Input(usize),
    Param(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Edge {
    from: NodeId,
    output: usize,
    to: NodeId,
    target: Target,
}

/// A graph of audio nodes under construction.
///
/// Nodes are added by the node constructors (`OscillatorNode::new(&mut graph,
/// options)`, ...), wired with [`connect`](Self::connect), then compiled into
/// a [`RenderGraph`] by a context.
pub struct AudioGraph {
    sample_rate: f32,
    nodes: Vec<NodeEntry>,
    edges: Vec<Edge>,
    worklets: Vec<(NodeId, Arc<WorkletStatus>)>,
    /// Bytes of sample memory that nodes sized by their options (delay
    /// lines) and an offline render's result may take in all.
    memory_limit: usize,
    memory_used: usize,
}

/// The default of [`AudioGraph::set_memory_limit`]: 4 GiB, as much as a
/// WAV file holds, and 20 times a 180-second 5.1 delay line at 48 kHz.
pub const DEFAULT_MEMORY_LIMIT: usize = 4 << 30;

impl AudioGraph {
    /// A graph whose destination has `channels` channels.
    pub fn new(sample_rate: f32, channels: usize) -> Result<Self, NodeError> {
        if !(1..=MAX_CHANNELS).contains(&channels) {
            return Err(NodeError::ChannelCount(channels));
        }
        let mut graph = Self { sample_rate, nodes: Vec::new(), edges: Vec::new(), worklets: Vec::new(), memory_limit: DEFAULT_MEMORY_LIMIT, memory_used: 0 };
        graph.add_node(NodeDescription {
            type_name: "AudioDestinationNode",
            number_of_inputs: 1,
            number_of_outputs: 0,
            channel_config: ChannelConfig {
                count: channels,
                mode: ChannelCountMode::Explicit,
                interpretation: ChannelInterpretation::Speakers,
            },
            params: Vec::new(),
            processor: Box::new(crate::node::Destination),
            breaks_cycles: false,
        });
        Ok(graph)
    }

    pub fn sample_rate(&self) -> f32 {
        self.sample_rate
    }

    /// Bounds the sample memory that nodes sized by their options (a
    /// DelayNode's line: `maxDelayTime` × sample rate × channels) and an
    /// offline render's result may take in all. A node or render past it
    /// fails with [`NodeError::MemoryLimit`] before allocating.
    pub fn set_memory_limit(&mut self, bytes: usize) {
        self.memory_limit = bytes;
    }

    pub fn memory_limit(&self) -> usize {
        self.memory_limit
    }

    /// Takes `bytes` of the memory limit for `what`.
    pub(crate) fn reserve_memory(&mut self, bytes: usize, what: impl FnOnce() -> String) -> Result<(), NodeError> {
        match self.memory_used.checked_add(bytes) {
            Some(total) if total <= self.memory_limit => {
                self.memory_used = total;
                Ok(())
            }
            _ => Err(NodeError::MemoryLimit { what: what(), bytes, used: self.memory_used, limit: self.memory_limit }),
        }
    }

    /// The destination node: its single input is what gets rendered.
    pub fn destination(&self) -> NodeId {
        NodeId(0)
    }

    pub fn number_of_channels(&self) -> usize {
        self.nodes[0].description.channel_config.count
    }

    /// Adds a node; called by the node constructors.
    pub fn add_node(&mut self, description: NodeDescription) -> NodeId {
        let id = NodeId(self.nodes.len());
        let label = format!("{}#{}", description.type_name, id.0);
        self.nodes.push(NodeEntry { label, description });
        id
    }

    pub(crate) fn add_worklet_status(&mut self, node: NodeId, status: Arc<WorkletStatus>) {
        self.worklets.push((node, status));
    }

    /// Watches every worklet node's `processorerror` (usable after the
    /// graph has been compiled and rendered).
    pub fn processor_errors(&self) -> ProcessorErrors {
        ProcessorErrors { watched: self.worklets.iter().map(|(id, s)| (self.label(*id).to_string(), s.clone())).collect() }
    }

    /// Names a node in error messages (the graph file's `id`, say).
    pub fn set_label(&mut self, node: NodeId, label: &str) {
        self.nodes[node.0].label = label.to_string();
    }

    pub fn label(&self, node: NodeId) -> &str {
        &self.nodes[node.0].label
    }

    pub fn type_name(&self, node: NodeId) -> &'static str {
        self.nodes[node.0].description.type_name
    }

    /// Connects `output` of `from` to `input` of `to`. Connecting the same
    /// pair twice is a no-op, as in the spec.
    pub fn connect(&mut self, from: NodeId, output: usize, to: NodeId, input: usize) -> Result<(), ConnectError> {
        self.check_output(from, output)?;
        let inputs = self.nodes[to.0].description.number_of_inputs;
        if input >= inputs {
            return Err(ConnectError::NoSuchInput { node: self.label(to).to_string(), index: input, count: inputs });
        }
        self.add_edge(Edge { from, output, to, target: Target::Input(input) });
        Ok(())
    }

    /// Connects `output` of `from` to an AudioParam: its audio is mixed to
    /// mono and added to the parameter's intrinsic value.
    pub fn connect_param(&mut self, from: NodeId, output: usize, param: AudioParamId) -> Result<(), ConnectError> {
        self.check_output(from, output)?;
        self.add_edge(Edge { from, output, to: param.node, target: Target::Param(param.index) });
        Ok(())
    }

    fn check_output(&self, from: NodeId, output: usize) -> Result<(), ConnectError> {
        let outputs = self.nodes[from.0].description.number_of_outputs;
        if output >= outputs {
            return Err(ConnectError::NoSuchOutput { node: self.label(from).to_string(), index: output, count: outputs });
        }
        Ok(())
    }

    fn add_edge(&mut self, edge: Edge) {
        if !self.edges.contains(&edge) {
            self.edges.push(edge);
        }
    }

    /// Looks a parameter up by its spec name (`"frequency"`, `"gain"`, ...).
    pub fn param_by_name(&self, node: NodeId, name: &str) -> Result<AudioParamId, ConnectError> {
        let params = &self.nodes[node.0].description.params;
        match params.iter().position(|p| p.descriptor.name == name) {
            Some(index) => Ok(AudioParamId { node, index }),
            None => Err(ConnectError::NoSuchParam {
                node: self.label(node).to_string(),
                param: name.to_string(),
                known: params.iter().map(|p| p.descriptor.name.as_str()).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// The parameter, for automation before rendering starts.
    pub fn param(&mut self, id: AudioParamId) -> AudioParam<'_> {
        AudioParam { state: &mut self.nodes[id.node.0].description.params[id.index] }
    }

    /// The node's render-side processor, for its handle to configure before
    /// rendering starts.
    pub(crate) fn processor_mut<T: AudioProcessor + 'static>(&mut self, node: NodeId) -> &mut T {
        let processor: &mut dyn Any = self.nodes[node.0].description.processor.as_any_mut();
        processor.downcast_mut::<T>().expect("node handle and processor type agree")
    }

    /// Orders the nodes and allocates every buffer rendering will need.
    pub fn compile(self) -> Result<RenderGraph, CompileError> {
        let mut dependencies: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        for e in &self.edges {
            dependencies[e.to.0].push(e.from.0);
        }
        let breaks_cycles: Vec<bool> = self.nodes.iter().map(|e| e.description.breaks_cycles).collect();
        let order = order::RenderOrder::new(&dependencies, &breaks_cycles).map_err(|cycle| {
            let names: Vec<&str> = cycle.iter().map(|&i| self.nodes[i].label.as_str()).collect();
            CompileError::CycleWithoutDelay(names.join(" -> "))
        })?;
        let descriptions = self.nodes.into_iter().map(|e| e.description).collect();
        Ok(RenderGraph::new(self.sample_rate, descriptions, &self.edges, order))
    }
}

/// A parameter of a graph under construction, for scheduling automation
/// before rendering starts (the context's current time is 0 then).
pub struct AudioParam<'a> {
    state: &'a mut ParamState,
}

impl AudioParam<'_> {
    pub fn descriptor(&self) -> &AudioParamDescriptor {
        &self.state.descriptor
    }

    /// The `value` attribute: the intrinsic value before any automation event.
    pub fn value(&self) -> f32 {
        self.state.timeline.initial_value()
    }

    /// Sets the `value` attribute, clamped to the nominal range as the spec's
    /// setter does.
    pub fn set_value(&mut self, value: f32) -> Result<(), AutomationError> {
        if !value.is_finite() {
            return Err(AutomationError::NotFinite { what: "value", value: value as f64 });
        }
        let d = &self.state.descriptor;
        self.state.timeline.set_initial_value(value.clamp(d.min_value, d.max_value));
        Ok(())
    }

    /// Sets `automationRate`; parameters whose rate the spec fixes refuse
    /// a change (InvalidStateError).
    pub fn set_automation_rate(&mut self, rate: crate::param::AutomationRate) -> Result<(), NodeError> {
        if self.state.rate_is_fixed && rate != self.state.descriptor.automation_rate {
            return Err(NodeError::InvalidState {
                what: format!("the automationRate of {} cannot be changed", self.state.descriptor.name),
            });
        }
        self.state.descriptor.automation_rate = rate;
        Ok(())
    }

    /// The timeline itself, for calls that need an explicit current time.
    pub fn timeline(&mut self) -> &mut crate::param::Timeline {
        &mut self.state.timeline
    }

    pub fn set_value_at_time(&mut self, value: f32, start_time: f64) -> Result<&mut Self, AutomationError> {
        self.state.timeline.set_value_at_time(value, start_time)?;
        Ok(self)
    }

    pub fn linear_ramp_to_value_at_time(&mut self, value: f32, end_time: f64) -> Result<&mut Self, AutomationError> {
        self.state.timeline.linear_ramp_to_value_at_time(value, end_time, 0.0)?;
        Ok(self)
    }

    pub fn exponential_ramp_to_value_at_time(&mut self, value: f32, end_time: f64) -> Result<&mut Self, AutomationError> {
        self.state.timeline.exponential_ramp_to_value_at_time(value, end_time, 0.0)?;
        Ok(self)
    }

    pub fn set_target_at_time(&mut self, target: f32, start_time: f64, time_constant: f64) -> Result<&mut Self, AutomationError> {
        self.state.timeline.set_target_at_time(target, start_time, time_constant)?;
        Ok(self)
    }

    pub fn set_value_curve_at_time(&mut self, values: &[f32], start_time: f64, duration: f64) -> Result<&mut Self, AutomationError> {
        self.state.timeline.set_value_curve_at_time(values, start_time, duration)?;
        Ok(self)
    }

    pub fn cancel_scheduled_values(&mut self, cancel_time: f64) -> Result<&mut Self, AutomationError> {
        self.state.timeline.cancel_scheduled_values(cancel_time)?;
        Ok(self)
    }

    pub fn cancel_and_hold_at_time(&mut self, cancel_time: f64) -> Result<&mut Self, AutomationError> {
        self.state.timeline.cancel_and_hold_at_time(cancel_time)?;
        Ok(self)
    }
}
