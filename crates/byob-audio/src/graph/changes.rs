//! What crosses between the control side and the render side: a batch of
//! [`Changes`] built ready to use on the control side, and the
//! [`NodeEvent`]s the render side reports back.

use super::render::RenderNode;
use super::NodeId;
use crate::block::AudioBlock;
use crate::node::ScheduleCall;
use crate::param::ParamState;
use crate::worklet::PortKind;

/// Who reads whom, and in what order: rebuilt on the control side whenever
/// a connection or a node comes or goes, and swapped in whole. Flat
/// arrays, so that building one takes a few allocations, not a few per
/// node.
#[derive(Default)]
pub(crate) struct Wiring {
    /// Live nodes, each after the nodes it depends on.
    pub order: Vec<usize>,
    /// DelayNodes inside cycles: their inputs are mixed after the quantum.
    pub deferred: Vec<usize>,
    /// Per node: whether it is deferred.
    pub is_deferred: Vec<bool>,
    /// Per node: the index of its first input in `input_ranges`, and of
    /// its first parameter in `param_ranges`.
    pub first_input: Vec<usize>,
    pub first_param: Vec<usize>,
    /// Per input (per parameter): its sources' range in `sources`.
    pub input_ranges: Vec<std::ops::Range<usize>>,
    pub param_ranges: Vec<std::ops::Range<usize>>,
    /// (node, output) pairs.
    pub sources: Vec<(usize, usize)>,
}

impl Wiring {
    /// Where input `k` of `node` reads from.
    pub fn input_sources(&self, node: usize, k: usize) -> &[(usize, usize)] {
        &self.sources[self.input_ranges[self.first_input[node] + k].clone()]
    }

    /// Where parameter `k` of `node` reads from.
    pub fn param_sources(&self, node: usize, k: usize) -> &[(usize, usize)] {
        &self.sources[self.param_ranges[self.first_param[node] + k].clone()]
    }
}

/// A node entering or leaving the render side with its output blocks.
pub(crate) struct NodeSlot {
    pub node: NodeId,
    pub render: Option<Box<RenderNode>>,
    pub outputs: Box<[AudioBlock]>,
}

/// A parameter whose timeline (or rate) changed on the control side.
pub(crate) struct ParamUpdate {
    pub node: NodeId,
    pub index: usize,
    pub state: ParamState,
}

/// Slot vectors for more nodes: the render side moves its nodes over.
pub(crate) type Slots = (Vec<Option<Box<RenderNode>>>, Vec<Box<[AudioBlock]>>);

/// A batch of changes to a playing graph, applied at one quantum boundary
/// by [`RenderGraph::apply`](super::RenderGraph::apply). After it is
/// applied it holds what it replaced (old wiring, removed nodes, old
/// timelines), to be dropped on the control side.
#[derive(Default)]
pub struct Changes {
    /// The first frame at which the batch may be applied (a score's time);
    /// `None`: at the next quantum.
    pub(crate) at_frame: Option<u64>,
    pub(crate) slots: Option<Slots>,
    pub(crate) added: Vec<NodeSlot>,
    pub(crate) schedules: Vec<(NodeId, ScheduleCall)>,
    pub(crate) params: Vec<ParamUpdate>,
    /// Port messages, delivered after the timelines and schedules; what
    /// the receivers leave in them stays here, to be freed.
    pub(crate) messages: Vec<(NodeId, crate::node::PortMessage)>,
    pub(crate) wiring: Option<Wiring>,
    pub(crate) removed: Vec<NodeSlot>,
}

impl Changes {
    /// The first frame at which the batch may be applied.
    pub fn at_frame(&self) -> Option<u64> {
        self.at_frame
    }

    /// Nodes this batch released (after it was applied: whose render state
    /// it now holds).
    pub fn released(&self) -> usize {
        self.removed.len()
    }
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes")
            .field("at_frame", &self.at_frame)
            .field("added", &self.added.len())
            .field("schedules", &self.schedules.len())
            .field("params", &self.params.len())
            .field("messages", &self.messages.len())
            .field("rewired", &self.wiring.is_some())
            .field("removed", &self.removed.len())
            .finish()
    }
}

/// Something a node reported while rendering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeEvent {
    pub node: NodeId,
    pub kind: NodeEventKind,
}

/// What a node reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEventKind {
    /// A scheduled source finished playing (the spec's `ended`).
    Ended,
    /// A worklet processor failed and went silent (the spec's
    /// `processorerror`; the message is in its [`WorkletStatus`](crate::worklet::WorkletStatus)).
    ProcessorError,
    /// A BYOB processor was offered a new channel count for a port.
    TopologyChange { kind: PortKind, port: usize, old_channels: usize, new_channels: usize, accepted: bool },
}
