//! ChannelSplitterNode: one mono output per input channel.

use super::{AudioNode, AudioProcessor, RenderScope};
use crate::block::{AudioBlock, MAX_CHANNELS};
use crate::graph::{AudioGraph, AudioNodeOptions, NodeDescription, NodeError, NodeId};
use crate::mixing::{ChannelConfig, ChannelCountMode, ChannelInterpretation};
use crate::param::ParamBuffer;
use std::any::Any;

/// The spec's ChannelSplitterOptions.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelSplitterOptions {
    pub number_of_outputs: usize,
    pub node: AudioNodeOptions,
}

impl Default for ChannelSplitterOptions {
    fn default() -> Self {
        Self { number_of_outputs: 6, node: AudioNodeOptions::default() }
    }
}

pub struct ChannelSplitterNode {
    id: NodeId,
}

impl AudioNode for ChannelSplitterNode {
    fn id(&self) -> NodeId {
        self.id
    }
}

impl ChannelSplitterNode {
    pub fn new(graph: &mut AudioGraph, options: ChannelSplitterOptions) -> Result<Self, NodeError> {
        let n = options.number_of_outputs;
        if !(1..=MAX_CHANNELS).contains(&n) {
            return Err(NodeError::IndexSize { what: format!("numberOfOutputs {n} is out of range 1..={MAX_CHANNELS}") });
        }
        // channelCount, channelCountMode and channelInterpretation are fixed.
        let fixed = ChannelConfig { count: n, mode: ChannelCountMode::Explicit, interpretation: ChannelInterpretation::Discrete };
        if options.node.resolve(fixed)? != fixed {
            return Err(NodeError::InvalidState {
                what: format!(
                    "ChannelSplitterNode has channelCount {n} (= numberOfOutputs), channelCountMode \"explicit\" and channelInterpretation \"discrete\"; they cannot be changed"
                ),
            });
        }
        let id = graph.add_node(NodeDescription {
            type_name: "ChannelSplitterNode",
            number_of_inputs: 1,
            number_of_outputs: n,
            channel_config: fixed,
            params: Vec::new(),
            processor: Box::new(ChannelSplitterRenderer),
            breaks_cycles: false,
        });
        Ok(Self { id })
    }
}

struct ChannelSplitterRenderer;

impl AudioProcessor for ChannelSplitterRenderer {
    fn process(&mut self, inputs: &[AudioBlock], outputs: &mut [AudioBlock], _: &[ParamBuffer], _: &RenderScope) -> bool {
        // The input is already mixed (discretely) to one channel per output.
        for (channel, out) in inputs[0].channels().iter().zip(outputs.iter_mut()) {
            out.set_number_of_channels(1);
            out.channel_mut(0).copy_from_slice(channel);
        }
        true
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
