//! GainNode: multiplies its input by the `gain` parameter.

use super::{apply_gain, param_state, AudioNode, AudioProcessor, RenderScope};
use crate::block::AudioBlock;
use crate::graph::{AudioGraph, AudioNodeOptions, AudioParamId, NodeDescription, NodeError, NodeId};
use crate::mixing::ChannelConfig;
use crate::param::{AutomationRate, ParamBuffer, MOST_POSITIVE_SINGLE_FLOAT};
use std::any::Any;

/// The spec's GainOptions.
#[derive(Clone, Debug, PartialEq)]
pub struct GainOptions {
    pub gain: f32,
    pub node: AudioNodeOptions,
}

impl Default for GainOptions {
    fn default() -> Self {
        Self { gain: 1.0, node: AudioNodeOptions::default() }
    }
}

pub struct GainNode {
    id: NodeId,
}

impl AudioNode for GainNode {
    fn id(&self) -> NodeId {
        self.id
    }
}

impl GainNode {
    pub fn new(graph: &mut AudioGraph, options: GainOptions) -> Result<Self, NodeError> {
        let gain = param_state(
            "gain",
            1.0,
            -MOST_POSITIVE_SINGLE_FLOAT,
            MOST_POSITIVE_SINGLE_FLOAT,
            AutomationRate::ARate,
            options.gain,
        );
        let id = graph.add_node(NodeDescription {
            type_name: "GainNode",
            number_of_inputs: 1,
            number_of_outputs: 1,
            channel_config: options.node.resolve(ChannelConfig::default())?,
            params: vec![gain],
            processor: Box::new(GainRenderer),
            breaks_cycles: false,
        });
        Ok(Self { id })
    }

    pub fn gain(&self) -> AudioParamId {
        AudioParamId { node: self.id, index: 0 }
    }
}

struct GainRenderer;

impl AudioProcessor for GainRenderer {
    fn process(&mut self, inputs: &[AudioBlock], outputs: &mut [AudioBlock], params: &[ParamBuffer], _: &RenderScope) -> bool {
        apply_gain(&inputs[0], &mut outputs[0], &params[0]);
        true
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
