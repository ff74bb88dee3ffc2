//! Turning what changed on the control side into a batch of [`Changes`]
//! for the render side, and taking the render side's events back.

use super::changes::{Changes, NodeEvent, NodeEventKind, NodeSlot, ParamUpdate, Wiring};
use super::order::RenderOrder;
use super::render::RenderNode;
use super::{AudioGraph, CompileError, NodeId, Target};
use crate::block::AudioBlock;
use crate::node::ScheduleCall;
use crate::param::ParamBuffer;

/// Where connections from released nodes read: the destination's slot
/// holds one silent mono block that nothing writes.
const SILENCE: (usize, usize) = (0, 0);

/// Nodes that output exactly what a released node reads (mono silence) as
/// soon as nothing feeds them: no delay line, no filter state, and no
/// fixed channel count (a panner's stereo or a merger's six channels would
/// change how the nodes after it mix).
const SILENT_WHEN_UNFED: [&str; 2] = ["GainNode", "ChannelSplitterNode"];

/// What changed since the last commit, besides new nodes.
#[derive(Default)]
pub(super) struct Pending {
    /// Nodes before this index are on the render side (or released).
    pub committed: usize,
    /// Length of the render side's slot vectors.
    pub slots: usize,
    pub rewire: bool,
    pub check_releases: bool,
    pub schedules: Vec<(NodeId, ScheduleCall)>,
    pub messages: Vec<(NodeId, crate::node::PortMessage)>,
    /// (node, parameter index), each once.
    pub params: Vec<(NodeId, usize)>,
}

impl AudioGraph {
    /// Collects everything that changed since the last commit (new nodes
    /// with their buffers, start/stop calls, automation, a new wiring,
    /// released nodes) into one batch for [`RenderGraph::apply`](super::RenderGraph::apply).
    /// `None` when nothing changed. Only the first commit can meet a cycle
    /// without a DelayNode (`Err`): once committed, `connect` refuses the
    /// connections that would close one.
    pub fn commit(&mut self) -> Result<Option<Changes>, CompileError> {
        let mut changes = Changes::default();
        let n = self.nodes.len();
        if self.pending.check_releases {
            self.pending.check_releases = false;
            changes.removed = self.releasable();
        }
        let rewire = self.pending.rewire || n > self.pending.committed || !changes.removed.is_empty();
        if rewire {
            changes.wiring = Some(self.wiring()?);
            self.pending.rewire = false;
        }
        if n > self.pending.slots {
            let len = n.next_power_of_two().max(16);
            changes.slots = Some(((0..len).map(|_| None).collect(), (0..len).map(|_| Box::default()).collect()));
            self.pending.slots = len;
        }
        for i in self.pending.committed..n {
            let entry = &mut self.nodes[i];
            let processor = entry.processor.take().expect("a node is committed once");
            let render = RenderNode {
                processor,
                inputs: vec![AudioBlock::new(); entry.number_of_inputs],
                params: entry.params.clone(),
                param_values: vec![ParamBuffer::default(); entry.params.len()],
                config: entry.channel_config,
                deferred_input: false,
                reports_ended: entry.schedule.start_time().is_some(),
                active: true,
            };
            // The destination has no outputs; its slot holds the silent
            // block that released nodes' connections read.
            let outputs = vec![AudioBlock::new(); if i == 0 { 1 } else { entry.number_of_outputs }].into_boxed_slice();
            changes.added.push(NodeSlot { node: NodeId(i), render: Some(Box::new(render)), outputs });
        }
        self.pending.committed = n;
        changes.schedules = std::mem::take(&mut self.pending.schedules);
        changes.messages = std::mem::take(&mut self.pending.messages);
        changes.params = std::mem::take(&mut self.pending.params)
            .into_iter()
            .map(|(node, index)| ParamUpdate { node, index, state: self.nodes[node.0].params[index].restarted() })
            .collect();
        let empty = changes.slots.is_none()
            && changes.added.is_empty()
            && changes.schedules.is_empty()
            && changes.messages.is_empty()
            && changes.params.is_empty()
            && changes.wiring.is_none()
            && changes.removed.is_empty();
        Ok(if empty { None } else { Some(changes) })
    }

    /// Takes a node event from the render side: an ended source is
    /// released, which may release the nodes it alone fed.
    pub fn handle_event(&mut self, event: &NodeEvent) {
        if event.kind == NodeEventKind::Ended {
            self.nodes[event.node.0].ended = true;
            self.pending.check_releases = true;
        }
    }

    /// Marks the nodes that can go and returns their (empty) slots: ended
    /// sources; unreferenced nodes whose outputs reach no live node; and
    /// unreferenced gains and splitters whose inputs are all gone, which
    /// can only output mono silence from then on (the spec's lifetime rule
    /// for nodes without a tail). Either way the node's output is
    /// silent or unheard, so releasing it changes no sample.
    fn releasable(&mut self) -> Vec<NodeSlot> {
        let mut released = Vec::new();
        loop {
            // Which nodes feed a live node, and which a live node feeds:
            // one pass over the connections per round.
            let n = self.nodes.len();
            let (mut heard, mut fed) = (vec![false; n], vec![false; n]);
            for e in &self.edges {
                if !self.nodes[e.to.0].released {
                    heard[e.from.0] = true;
                }
                if matches!(e.target, Target::Input(_)) && !self.nodes[e.from.0].released {
                    fed[e.to.0] = true;
                }
            }
            let before = released.len();
            for i in 1..self.pending.committed {
                let entry = &self.nodes[i];
                if entry.released {
                    continue;
                }
                let mono = entry.channel_config.computed_number_of_channels(1) == 1 || entry.type_name == "ChannelSplitterNode";
                let silent = SILENT_WHEN_UNFED.contains(&entry.type_name) && mono && !fed[i];
                if entry.ended || (entry.unreferenced && (!heard[i] || silent)) {
                    self.nodes[i].released = true;
                    released.push(NodeSlot { node: NodeId(i), render: None, outputs: Box::default() });
                }
            }
            if released.len() == before {
                return released;
            }
        }
    }

    /// The render order and every live node's sources, for all slots.
    fn wiring(&self) -> Result<Wiring, CompileError> {
        let n = self.nodes.len();
        let live = |i: usize| !self.nodes[i].released;
        let (mut first_input, mut first_param) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut inputs, mut params) = (0, 0);
        for e in &self.nodes {
            first_input.push(inputs);
            first_param.push(params);
            inputs += e.number_of_inputs;
            params += e.params.len();
        }
        // Each connection into a live node lands in one input's (or
        // parameter's) run of `sources`: count, then place.
        let slot = |e: &super::Edge| match e.target {
            Target::Input(k) => first_input[e.to.0] + k,
            Target::Param(k) => inputs + first_param[e.to.0] + k,
        };
        let into_live = || self.edges.iter().filter(|e| live(e.to.0));
        let mut start = vec![0usize; inputs + params + 1];
        for e in into_live() {
            start[slot(e) + 1] += 1;
        }
        for i in 0..inputs + params {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut sources = vec![SILENCE; start[inputs + params]];
        let mut pairs = Vec::with_capacity(sources.len());
        for e in into_live() {
            // A released node's output is mono silence, as it was since it
            // ended (or unheard): it reads the destination's silent block,
            // so that releasing it changes nothing downstream, not even
            // whether a parameter has an input.
            if live(e.from.0) {
                sources[fill[slot(e)]] = (e.from.0, e.output);
                pairs.push((e.to.0, e.from.0));
            }
            fill[slot(e)] += 1;
        }
        let breaks_cycles: Vec<bool> = self.nodes.iter().map(|e| e.breaks_cycles).collect();
        let RenderOrder { order, deferred } = RenderOrder::new(&pairs, &breaks_cycles).map_err(|cycle| {
            let names: Vec<&str> = cycle.iter().map(|&i| self.nodes[i].label.as_str()).collect();
            CompileError::CycleWithoutDelay(names.join(" -> "))
        })?;
        let ranges = |from: usize, count: usize| (from..from + count).map(|i| start[i]..start[i + 1]).collect::<Vec<_>>();
        Ok(Wiring {
            order: order.into_iter().filter(|&i| live(i)).collect(),
            deferred: (0..n).filter(|&i| deferred[i] && live(i)).collect(),
            is_deferred: deferred,
            input_ranges: ranges(0, inputs),
            param_ranges: ranges(inputs, params),
            first_input,
            first_param,
            sources,
        })
    }
}
