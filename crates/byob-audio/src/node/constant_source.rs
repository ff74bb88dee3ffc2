//! ConstantSourceNode: outputs its `offset` parameter while playing.

use super::{param_state, AudioNode, AudioProcessor, AudioScheduledSourceNode, RenderScope, Schedule, ScheduleCall};
use crate::block::AudioBlock;
use crate::graph::{AudioGraph, AudioParamId, NodeDescription, NodeError, NodeId};
use crate::mixing::ChannelConfig;
use crate::param::{AutomationRate, ParamBuffer, MOST_POSITIVE_SINGLE_FLOAT};
use std::any::Any;

/// The spec's ConstantSourceOptions.
#[derive(Clone, Debug, PartialEq)]
pub struct ConstantSourceOptions {
    pub offset: f32,
}

impl Default for ConstantSourceOptions {
    fn default() -> Self {
        Self { offset: 1.0 }
    }
}

pub struct ConstantSourceNode {
    id: NodeId,
}

impl AudioNode for ConstantSourceNode {
    fn id(&self) -> NodeId {
        self.id
    }
}

impl AudioScheduledSourceNode for ConstantSourceNode {}

impl ConstantSourceNode {
    pub fn new(graph: &mut AudioGraph, options: ConstantSourceOptions) -> Result<Self, NodeError> {
        let offset = param_state(
            "offset",
            1.0,
            -MOST_POSITIVE_SINGLE_FLOAT,
            MOST_POSITIVE_SINGLE_FLOAT,
            AutomationRate::ARate,
            options.offset,
        );
        let id = graph.add_node(NodeDescription {
            type_name: "ConstantSourceNode",
            number_of_inputs: 0,
            number_of_outputs: 1,
            channel_config: ChannelConfig::default(),
            params: vec![offset],
            processor: Box::new(ConstantSourceRenderer { schedule: Schedule::default() }),
            breaks_cycles: false,
        });
        Ok(Self { id })
    }

    pub fn offset(&self) -> AudioParamId {
        AudioParamId { node: self.id, index: 0 }
    }
}

struct ConstantSourceRenderer {
    schedule: Schedule,
}

impl AudioProcessor for ConstantSourceRenderer {
    fn schedule(&mut self, call: &ScheduleCall) {
        self.schedule.apply(call);
    }

    fn process(&mut self, _: &[AudioBlock], outputs: &mut [AudioBlock], params: &[ParamBuffer], scope: &RenderScope) -> bool {
        let (playing, finished) = self.schedule.advance(scope.current_frame, scope.sample_rate);
        let out = &mut outputs[0];
        out.make_silent(1);
        let channel = out.channel_mut(0);
        for i in playing {
            channel[i] = params[0].at(i);
        }
        !finished
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
