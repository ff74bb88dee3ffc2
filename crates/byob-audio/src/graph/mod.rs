//! The audio graph: nodes and connections built on the control side
//! ([`AudioGraph`], here, with its disconnections in [`disconnect`]), put in
//! render order ([`order`]), committed as batches of [`Changes`] ([`commit`])
//! and rendered by the allocation-free render side ([`RenderGraph`], in
//! [`render`]). The same path serves an offline render (one batch before
//! the first quantum, more at a score's times) and a live context (a batch
//! per change, sent through a queue).

mod changes;
mod commit;
mod disconnect;
mod order;
mod param_handle;
mod render;

pub use changes::{Changes, NodeEvent, NodeEventKind};
pub use param_handle::AudioParam;
pub use render::RenderGraph;

use crate::block::MAX_CHANNELS;
use crate::mixing::{ChannelConfig, ChannelCountMode, ChannelInterpretation};
use crate::node::AudioProcessor;
use crate::node::{Schedule, ScheduleCall};
use crate::param::ParamState;
use crate::worklet::WorkletStatus;
use crate::number::Shown;
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
    #[error("{what} (InvalidAccessError)")]
    NotConnected { what: String },
    /// On a playing graph: the connection would close a cycle without a
    /// DelayNode, which byob refuses rather than mute.
    #[error(transparent)]
    Cycle(#[from] CompileError),
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
    type_name: &'static str,
    number_of_inputs: usize,
    number_of_outputs: usize,
    channel_config: ChannelConfig,
    breaks_cycles: bool,
    /// The control side's copy: automation is validated and applied here,
    /// then the changed parameter is sent whole.
    params: Vec<ParamState>,
    /// Until the node's first commit; then it lives on the render side.
    processor: Option<Box<dyn AudioProcessor>>,
    /// start()/stop() as called, to refuse what the spec refuses.
    schedule: Schedule,
    /// The source has reported `ended`.
    ended: bool,
    /// The handle was dropped ([`AudioGraph::release`]).
    unreferenced: bool,
    /// Its render state was freed: it outputs silence for good.
    released: bool,
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

/// A graph of audio nodes.
///
/// Nodes are added by the node constructors (`OscillatorNode::new(&mut graph,
/// options)`, ...), wired with [`connect`](Self::connect), then rendered by a
/// context. The graph stays the control side while it plays: whatever
/// changes after a [`commit`](Self::commit) goes to the render side in the
/// next one.
pub struct AudioGraph {
    sample_rate: f32,
    nodes: Vec<NodeEntry>,
    edges: Vec<Edge>,
    worklets: Vec<(NodeId, Arc<WorkletStatus>)>,
    /// Bytes of sample memory that nodes sized by their options (delay
    /// lines) and an offline render's result may take in all.
    memory_limit: usize,
    memory_used: usize,
    /// The context time at which changes are being made.
    now: f64,
    pending: commit::Pending,
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
        let mut graph = Self {
            sample_rate,
            nodes: Vec::new(),
            edges: Vec::new(),
            worklets: Vec::new(),
            memory_limit: DEFAULT_MEMORY_LIMIT,
            memory_used: 0,
            now: 0.0,
            pending: commit::Pending::default(),
        };
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

    /// The context time at which the following changes are made: a ramp
    /// with no earlier event starts here. Contexts set it; 0 before
    /// rendering.
    pub fn set_current_time(&mut self, now: f64) {
        self.now = now;
    }

    pub fn current_time(&self) -> f64 {
        self.now
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
        self.nodes[0].channel_config.count
    }

    /// Adds a node; called by the node constructors.
    pub fn add_node(&mut self, description: NodeDescription) -> NodeId {
        let id = NodeId(self.nodes.len());
        let NodeDescription { type_name, number_of_inputs, number_of_outputs, channel_config, params, processor, breaks_cycles } = description;
        self.nodes.push(NodeEntry {
            label: format!("{type_name}#{}", id.0),
            type_name,
            number_of_inputs,
            number_of_outputs,
            channel_config,
            breaks_cycles,
            params,
            processor: Some(processor),
            schedule: Schedule::default(),
            ended: false,
            unreferenced: false,
            released: false,
        });
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
        self.nodes[node.0].type_name
    }

    /// Connects `output` of `from` to `input` of `to`. Connecting the same
    /// pair twice is a no-op, as in the spec.
    pub fn connect(&mut self, from: NodeId, output: usize, to: NodeId, input: usize) -> Result<(), ConnectError> {
        self.check_output(from, output)?;
        let inputs = self.nodes[to.0].number_of_inputs;
        if input >= inputs {
            return Err(ConnectError::NoSuchInput { node: self.label(to).to_string(), index: input, count: inputs });
        }
        self.add_edge(Edge { from, output, to, target: Target::Input(input) })
    }

    /// Connects `output` of `from` to an AudioParam: its audio is mixed to
    /// mono and added to the parameter's intrinsic value.
    pub fn connect_param(&mut self, from: NodeId, output: usize, param: AudioParamId) -> Result<(), ConnectError> {
        self.check_output(from, output)?;
        self.add_edge(Edge { from, output, to: param.node, target: Target::Param(param.index) })
    }

    fn check_output(&self, from: NodeId, output: usize) -> Result<(), ConnectError> {
        let outputs = self.nodes[from.0].number_of_outputs;
        if output >= outputs {
            return Err(ConnectError::NoSuchOutput { node: self.label(from).to_string(), index: output, count: outputs });
        }
        Ok(())
    }

    fn add_edge(&mut self, edge: Edge) -> Result<(), ConnectError> {
        if self.edges.contains(&edge) {
            return Ok(());
        }
        // A playing graph cannot refuse at commit time, so it refuses here.
        if self.pending.committed > 0 {
            if let Some(cycle) = self.cycle_closed_by(&edge) {
                let names: Vec<&str> = cycle.iter().map(|&n| self.label(n)).collect();
                return Err(CompileError::CycleWithoutDelay(names.join(" -> ")).into());
            }
        }
        self.edges.push(edge);
        self.pending.rewire = true;
        Ok(())
    }

    /// The nodes of a cycle without a DelayNode that `edge` would close:
    /// a path from its target back to its source through no DelayNode
    /// (a cycle through one is allowed: the delay reads its input a quantum
    /// late). Only the nodes reachable from the target are visited.
    fn cycle_closed_by(&self, edge: &Edge) -> Option<Vec<NodeId>> {
        let breaks = |n: NodeId| self.nodes[n.0].breaks_cycles;
        if breaks(edge.from) || breaks(edge.to) {
            return None;
        }
        // The common cases, without building anything: a source, or a node
        // that feeds nothing yet, closes no cycle.
        if edge.from != edge.to && (!self.edges.iter().any(|e| e.to == edge.from) || !self.edges.iter().any(|e| e.from == edge.to)) {
            return None;
        }
        let mut consumers: Vec<Vec<NodeId>> = vec![Vec::new(); self.nodes.len()];
        for e in &self.edges {
            consumers[e.from.0].push(e.to);
        }
        // Breadth first from the target; `came_from` leads back to it.
        let mut came_from: Vec<Option<NodeId>> = vec![None; self.nodes.len()];
        came_from[edge.to.0] = Some(edge.to);
        let mut queue = std::collections::VecDeque::from([edge.to]);
        while let Some(node) = queue.pop_front() {
            if node == edge.from {
                let mut path = vec![node];
                while *path.last()? != edge.to {
                    path.push(came_from[path.last()?.0]?);
                }
                path.reverse();
                path.push(edge.to);
                return Some(path);
            }
            for &next in &consumers[node.0] {
                if !breaks(next) && !self.nodes[next.0].released && came_from[next.0].is_none() {
                    came_from[next.0] = Some(node);
                    queue.push_back(next);
                }
            }
        }
        None
    }

    /// Looks a parameter up by its spec name (`"frequency"`, `"gain"`, ...).
    pub fn param_by_name(&self, node: NodeId, name: &str) -> Result<AudioParamId, ConnectError> {
        let params = &self.nodes[node.0].params;
        match params.iter().position(|p| p.descriptor.name == name) {
            Some(index) => Ok(AudioParamId { node, index }),
            None => Err(ConnectError::NoSuchParam {
                node: self.label(node).to_string(),
                param: name.to_string(),
                known: params.iter().map(|p| p.descriptor.name.as_str()).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// The parameter, for its value and automation.
    pub fn param(&mut self, id: AudioParamId) -> AudioParam<'_> {
        if self.nodes[id.node.0].processor.is_none() && !self.pending.params.contains(&(id.node, id.index)) {
            self.pending.params.push((id.node, id.index));
        }
        AudioParam { state: &mut self.nodes[id.node.0].params[id.index], now: self.now }
    }

    /// A scheduled source's `start` or `stop`, checked as the spec checks
    /// it, then applied by its processor.
    pub fn schedule(&mut self, node: NodeId, call: ScheduleCall) -> Result<(), NodeError> {
        let entry = &mut self.nodes[node.0];
        if !crate::node::SCHEDULED_SOURCES.contains(&entry.type_name) {
            return Err(NodeError::InvalidState { what: format!("{} is not a scheduled source (start/stop)", entry.label) });
        }
        if matches!(call, ScheduleCall::Start { offset: Some(_), .. } | ScheduleCall::Start { duration: Some(_), .. }) && entry.type_name != "AudioBufferSourceNode" {
            return Err(NodeError::NotSupported { what: format!("start(when, offset, duration) is AudioBufferSourceNode's; {} takes start(when)", entry.label) });
        }
        entry.schedule.check(&call)?;
        entry.schedule.apply(&call);
        match &mut entry.processor {
            Some(processor) => processor.schedule(&call),
            None => self.pending.schedules.push((node, call)),
        }
        Ok(())
    }

    /// Posts `message` to `node`'s port (a worklet processor's
    /// `on_message`): delivered with the next batch of changes, before its
    /// quantum. Nodes without a port ignore it.
    pub fn post_message(&mut self, node: NodeId, message: crate::node::PortMessage) {
        self.pending.messages.push((node, message));
    }

    /// Says that nothing will use `node`'s handle again (Rust's stand-in for
    /// the spec's "no references"): once it has no connection out to a
    /// node still playing, it is released and its render state freed.
    /// Scheduled sources need not be released: they are freed once `ended`.
    pub fn release(&mut self, node: NodeId) {
        if node != self.destination() {
            self.nodes[node.0].unreferenced = true;
            self.pending.check_releases = true;
        }
    }

    /// Orders the nodes and allocates every buffer rendering will need.
    pub fn compile(mut self) -> Result<RenderGraph, CompileError> {
        let mut render = RenderGraph::new(self.sample_rate);
        if let Some(mut changes) = self.commit()? {
            render.apply(&mut changes);
        }
        Ok(render)
    }
}
