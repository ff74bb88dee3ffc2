//! The render side: a compiled graph that renders one quantum at a time
//! without allocating, locking or making system calls.

use super::order::RenderOrder;
use super::{Edge, NodeDescription, Target};
use crate::block::{AudioBlock, Channel, RENDER_QUANTUM_SIZE};
use crate::mixing::{mix_input, widest, ChannelConfig, ChannelInterpretation};
use crate::node::{AudioProcessor, RenderScope};
use crate::param::{ParamBuffer, ParamState};

struct RenderNode {
    processor: Box<dyn AudioProcessor>,
    inputs: Vec<AudioBlock>,
    input_sources: Vec<Vec<usize>>,
    params: Vec<ParamState>,
    param_values: Vec<ParamBuffer>,
    param_sources: Vec<Vec<usize>>,
    config: ChannelConfig,
    outputs: std::ops::Range<usize>,
    deferred_input: bool,
}

/// A compiled graph: renders one quantum at a time without allocating,
/// locking or making system calls.
pub struct RenderGraph {
    sample_rate: f32,
    frame: u64,
    order: Vec<usize>,
    deferred: Vec<usize>,
    nodes: Vec<RenderNode>,
    outputs: Vec<AudioBlock>,
    param_mix: AudioBlock,
}

impl RenderGraph {
    /// Allocates every buffer rendering will need, for nodes in `order`.
    pub(super) fn new(sample_rate: f32, descriptions: Vec<NodeDescription>, edges: &[Edge], order: RenderOrder) -> Self {
        let RenderOrder { order, deferred } = order;
        let mut output_base = Vec::with_capacity(descriptions.len());
        let mut total_outputs = 0;
        for d in &descriptions {
            output_base.push(total_outputs);
            total_outputs += d.number_of_outputs;
        }
        let mut nodes: Vec<RenderNode> = descriptions
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                let mut processor = d.processor;
                if deferred[i] {
                    processor.input_delayed_by_one_quantum();
                }
                RenderNode {
                    processor,
                    inputs: vec![AudioBlock::new(); d.number_of_inputs],
                    input_sources: vec![Vec::new(); d.number_of_inputs],
                    param_values: vec![ParamBuffer::default(); d.params.len()],
                    param_sources: vec![Vec::new(); d.params.len()],
                    params: d.params,
                    config: d.channel_config,
                    outputs: output_base[i]..output_base[i] + d.number_of_outputs,
                    deferred_input: deferred[i],
                }
            })
            .collect();
        for e in edges {
            let source = output_base[e.from.0] + e.output;
            let node = &mut nodes[e.to.0];
            match e.target {
                Target::Input(k) => node.input_sources[k].push(source),
                Target::Param(k) => node.param_sources[k].push(source),
            }
        }
        Self {
            sample_rate,
            frame: 0,
            deferred: (0..nodes.len()).filter(|&i| deferred[i]).collect(),
            order,
            nodes,
            outputs: vec![AudioBlock::new(); total_outputs],
            param_mix: AudioBlock::new(),
        }
    }

    pub fn sample_rate(&self) -> f32 {
        self.sample_rate
    }

    /// The frame at which the next quantum starts.
    pub fn current_frame(&self) -> u64 {
        self.frame
    }

    pub fn number_of_channels(&self) -> usize {
        self.nodes[0].config.count
    }

    /// Renders one quantum and returns what reached the destination.
    pub fn render_quantum(&mut self) -> &AudioBlock {
        let scope = RenderScope { current_frame: self.frame, sample_rate: self.sample_rate };
        let Self { order, nodes, outputs, param_mix, deferred, .. } = self;
        for &i in order.iter() {
            let node = &mut nodes[i];
            if !node.deferred_input {
                mix_inputs(node, outputs);
            }
            for (k, param) in node.params.iter_mut().enumerate() {
                let sources = &node.param_sources[k];
                let input: Option<&Channel> = if sources.is_empty() {
                    None
                } else {
                    mix_input(param_mix, sources.iter().map(|&s| &outputs[s]), 1, ChannelInterpretation::Speakers);
                    Some(param_mix.channel(0))
                };
                param.compute(scope.current_frame, scope.sample_rate as f64, input, &mut node.param_values[k]);
            }
            let outs = &mut outputs[node.outputs.clone()];
            node.processor.process(&node.inputs, outs, &node.param_values, &scope);
        }
        for &i in deferred.iter() {
            mix_inputs(&mut nodes[i], outputs);
        }
        self.frame += RENDER_QUANTUM_SIZE as u64;
        &self.nodes[0].inputs[0]
    }
}

fn mix_inputs(node: &mut RenderNode, outputs: &[AudioBlock]) {
    for (k, (block, sources)) in node.inputs.iter_mut().zip(&node.input_sources).enumerate() {
        let computed = node.config.computed_number_of_channels(widest(sources.iter().map(|&s| &outputs[s])));
        // The processor may keep another count (a BYOB processor that
        // rejected a topology change) and may point the block at its memory.
        let channels = node.processor.input_channels(k, computed, block);
        mix_input(block, sources.iter().map(|&s| &outputs[s]), channels, node.config.interpretation);
    }
}
