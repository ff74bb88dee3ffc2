//! ChannelMergerNode: each mono input becomes one channel of the output.

use super::{AudioNode, AudioProcessor, RenderScope};
use crate::block::{AudioBlock, MAX_CHANNELS};
use crate::graph::{AudioGraph, AudioNodeOptions, NodeDescription, NodeError, NodeId};
use crate::mixing::{ChannelConfig, ChannelCountMode, ChannelInterpretation};
use crate::param::ParamBuffer;
use std::any::Any;

/// The spec's ChannelMergerOptions.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelMergerOptions {
    pub number_of_inputs: usize,
    pub node: AudioNodeOptions,
}

impl Default for ChannelMergerOptions {
    fn default() -> Self {
        Self { number_of_inputs: 6, node: AudioNodeOptions::default() }
    }
}

pub struct ChannelMergerNode {
    id: NodeId,
}

impl AudioNode for ChannelMergerNode {
    fn id(&self) -> NodeId {
        self.id
    }
}

impl ChannelMergerNode {
    pub fn new(graph: &mut AudioGraph, options: ChannelMergerOptions) -> Result<Self, NodeError> {
        let n = options.number_of_inputs;
        if !(1..=MAX_CHANNELS).contains(&n) {
            return Err(NodeError::IndexSize { what: format!("numberOfInputs {n} is out of range 1..={MAX_CHANNELS}") });
        }
        let defaults = ChannelConfig { count: 1, mode: ChannelCountMode::Explicit, interpretation: ChannelInterpretation::Speakers };
        let config = options.node.resolve(defaults)?;
        if config.count != 1 {
            return Err(NodeError::InvalidState { what: "ChannelMergerNode channelCount must be 1".into() });
        }
        if config.mode != ChannelCountMode::Explicit {
            return Err(NodeError::InvalidState { what: "ChannelMergerNode channelCountMode must be \"explicit\"".into() });
        }
        let id = graph.add_node(NodeDescription {
            type_name: "ChannelMergerNode",
            number_of_inputs: n,
            number_of_outputs: 1,
            channel_config: config,
            params: Vec::new(),
            processor: Box::new(ChannelMergerRenderer),
            breaks_cycles: false,
        });
        Ok(Self { id })
    }
}

struct ChannelMergerRenderer;

impl AudioProcessor for ChannelMergerRenderer {
    fn process(&mut self, inputs: &[AudioBlock], outputs: &mut [AudioBlock], _: &[ParamBuffer], _: &RenderScope) -> bool {
        let out = &mut outputs[0];
        out.set_number_of_channels(inputs.len());
        for (channel, input) in out.channels_mut().iter_mut().zip(inputs) {
            channel.copy_from_slice(input.channel(0));
        }
        true
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
