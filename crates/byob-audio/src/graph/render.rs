//! The render side: the nodes' processors and buffers in slots, the wiring
//! that says who reads whom and in what order, and the quantum loop.
//! Rendering a quantum and applying a [`Changes`] allocate nothing, take no
//! lock and make no system call: whatever a change replaces is moved into
//! the change itself, which goes back to the control side to be freed.

use super::changes::{Changes, NodeEvent, NodeEventKind, Wiring};
use super::NodeId;
use crate::block::{AudioBlock, Channel, RENDER_QUANTUM_SIZE};
use crate::mixing::{mix_input, widest, ChannelConfig, ChannelInterpretation};
use crate::node::{AudioProcessor, RenderScope};
use crate::param::{ParamBuffer, ParamState};

/// A node on the render side: its processor, the blocks its inputs are
/// mixed into and its parameters. Built on the control side.
pub(crate) struct RenderNode {
    pub processor: Box<dyn AudioProcessor>,
    pub inputs: Vec<AudioBlock>,
    pub params: Vec<ParamState>,
    pub param_values: Vec<ParamBuffer>,
    pub config: ChannelConfig,
    /// Whether its input arrives one quantum late (a DelayNode in a cycle).
    pub deferred_input: bool,
    /// A started scheduled source reports `ended` once `process` says it
    /// is done.
    pub reports_ended: bool,
    pub active: bool,
}

/// A graph on the render side: renders one quantum at a time and applies
/// changes between quanta, without allocating, locking or making system
/// calls.
pub struct RenderGraph {
    sample_rate: f32,
    frame: u64,
    /// Indexed by [`NodeId`]; a slot is empty before its node arrives and
    /// after it was released.
    nodes: Vec<Option<Box<RenderNode>>>,
    outputs: Vec<Box<[AudioBlock]>>,
    wiring: Wiring,
    param_mix: AudioBlock,
}

impl RenderGraph {
    /// An empty graph; its nodes arrive through [`apply`](Self::apply).
    pub(crate) fn new(sample_rate: f32) -> Self {
        Self { sample_rate, frame: 0, nodes: Vec::new(), outputs: Vec::new(), wiring: Wiring::default(), param_mix: AudioBlock::new() }
    }

    pub fn sample_rate(&self) -> f32 {
        self.sample_rate
    }

    /// The frame at which the next quantum starts.
    pub fn current_frame(&self) -> u64 {
        self.frame
    }

    pub fn number_of_channels(&self) -> usize {
        self.nodes[0].as_ref().map_or(1, |d| d.config.count)
    }

    /// Applies a batch of changes made on the control side, all at once,
    /// before the next quantum. What the batch replaced is left in it, for
    /// the caller to free off the render thread.
    pub fn apply(&mut self, changes: &mut Changes) {
        if let Some((nodes, outputs)) = &mut changes.slots {
            // The new slot vectors are at least as long as the old ones.
            for (new, old) in nodes.iter_mut().zip(self.nodes.iter_mut()) {
                std::mem::swap(new, old);
            }
            for (new, old) in outputs.iter_mut().zip(self.outputs.iter_mut()) {
                std::mem::swap(new, old);
            }
            std::mem::swap(nodes, &mut self.nodes);
            std::mem::swap(outputs, &mut self.outputs);
        }
        for added in changes.added.iter_mut() {
            std::mem::swap(&mut self.nodes[added.node.0], &mut added.render);
            std::mem::swap(&mut self.outputs[added.node.0], &mut added.outputs);
        }
        for (node, call) in changes.schedules.iter() {
            if let Some(n) = self.nodes[node.0].as_deref_mut() {
                n.processor.schedule(call);
                n.reports_ended = true;
            }
        }
        for update in changes.params.iter_mut() {
            if let Some(n) = self.nodes[update.node.0].as_deref_mut() {
                std::mem::swap(&mut n.params[update.index], &mut update.state);
            }
        }
        for (node, message) in changes.messages.iter_mut() {
            if let Some(n) = self.nodes[node.0].as_deref_mut() {
                n.processor.port_message(message);
            }
        }
        if let Some(wiring) = &mut changes.wiring {
            std::mem::swap(wiring, &mut self.wiring);
            for (i, &deferred) in self.wiring.is_deferred.iter().enumerate() {
                if let Some(n) = self.nodes[i].as_deref_mut() {
                    if n.deferred_input != deferred {
                        n.deferred_input = deferred;
                        n.processor.set_input_delayed_by_one_quantum(deferred);
                    }
                }
            }
        }
        for removed in changes.removed.iter_mut() {
            std::mem::swap(&mut self.nodes[removed.node.0], &mut removed.render);
            std::mem::swap(&mut self.outputs[removed.node.0], &mut removed.outputs);
        }
    }

    /// Renders one quantum and returns what reached the destination.
    pub fn render_quantum(&mut self) -> &AudioBlock {
        self.render_quantum_with(|_| {})
    }

    /// Renders one quantum, handing each node event (`ended`, a processor's
    /// error, a topology change) to `on_event`.
    pub fn render_quantum_with(&mut self, mut on_event: impl FnMut(NodeEvent)) -> &AudioBlock {
        let scope = RenderScope { current_frame: self.frame, sample_rate: self.sample_rate };
        let Self { wiring, nodes, outputs, param_mix, .. } = self;
        for &i in wiring.order.iter() {
            let Some(node) = nodes[i].as_deref_mut() else { continue };
            if !node.deferred_input {
                mix_inputs(node, wiring, i, outputs);
            }
            for (k, param) in node.params.iter_mut().enumerate() {
                let sources = wiring.param_sources(i, k);
                let input: Option<&Channel> = if sources.is_empty() {
                    None
                } else {
                    mix_input(param_mix, sources.iter().map(|&(n, o)| &outputs[n][o]), 1, ChannelInterpretation::Speakers);
                    Some(param_mix.channel(0))
                };
                param.compute(scope.current_frame, scope.sample_rate as f64, input, &mut node.param_values[k]);
            }
            let active = node.processor.process(&node.inputs, &mut outputs[i], &node.param_values, &scope);
            if node.active && !active && node.reports_ended {
                on_event(NodeEvent { node: NodeId(i), kind: NodeEventKind::Ended });
            }
            node.active = active;
            while let Some(kind) = node.processor.take_event() {
                on_event(NodeEvent { node: NodeId(i), kind });
            }
        }
        for &i in wiring.deferred.iter() {
            if let Some(node) = nodes[i].as_deref_mut() {
                mix_inputs(node, wiring, i, outputs);
            }
        }
        self.frame += RENDER_QUANTUM_SIZE as u64;
        match &self.nodes[0] {
            Some(destination) => &destination.inputs[0],
            None => &self.param_mix,
        }
    }
}

fn mix_inputs(node: &mut RenderNode, wiring: &Wiring, index: usize, outputs: &[Box<[AudioBlock]>]) {
    for (k, block) in node.inputs.iter_mut().enumerate() {
        let sources = wiring.input_sources(index, k);
        let blocks = || sources.iter().map(|&(n, o)| &outputs[n][o]);
        let computed = node.config.computed_number_of_channels(widest(blocks()));
        // The processor may keep another count (a BYOB processor that
        // rejected a topology change) and may point the block at its memory.
        let channels = node.processor.input_channels(k, computed, block);
        mix_input(block, blocks(), channels, node.config.interpretation);
    }
}
