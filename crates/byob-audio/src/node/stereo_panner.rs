//! StereoPannerNode: equal-power panning of a mono or stereo input.

use super::{param_state, AudioNode, AudioProcessor, RenderScope};
use crate::block::AudioBlock;
use crate::graph::{AudioGraph, AudioNodeOptions, AudioParamId, NodeDescription, NodeError, NodeId};
use crate::mixing::{ChannelConfig, ChannelCountMode, ChannelInterpretation};
use crate::param::{AutomationRate, ParamBuffer};
use std::any::Any;
use std::f32::consts::FRAC_PI_2;

/// The spec's StereoPannerOptions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StereoPannerOptions {
    pub pan: f32,
    pub node: AudioNodeOptions,
}

pub struct StereoPannerNode {
    id: NodeId,
}

impl AudioNode for StereoPannerNode {
    fn id(&self) -> NodeId {
        self.id
    }
}

impl StereoPannerNode {
    pub fn new(graph: &mut AudioGraph, options: StereoPannerOptions) -> Result<Self, NodeError> {
        let defaults = ChannelConfig {
            count: 2,
            mode: ChannelCountMode::ClampedMax,
            interpretation: ChannelInterpretation::Speakers,
        };
        let config = options.node.resolve(defaults)?;
        if config.count > 2 {
            return Err(NodeError::NotSupported {
                what: format!("StereoPannerNode channelCount must be 1 or 2, got {}", config.count),
            });
        }
        if config.mode == ChannelCountMode::Max {
            return Err(NodeError::NotSupported { what: "StereoPannerNode channelCountMode cannot be \"max\"".into() });
        }
        let pan = param_state("pan", 0.0, -1.0, 1.0, AutomationRate::ARate, options.pan);
        let id = graph.add_node(NodeDescription {
            type_name: "StereoPannerNode",
            number_of_inputs: 1,
            number_of_outputs: 1,
            channel_config: config,
            params: vec![pan],
            processor: Box::new(StereoPannerRenderer),
            breaks_cycles: false,
        });
        Ok(Self { id })
    }

    pub fn pan(&self) -> AudioParamId {
        AudioParamId { node: self.id, index: 0 }
    }
}

struct StereoPannerRenderer;

impl AudioProcessor for StereoPannerRenderer {
    fn process(&mut self, inputs: &[AudioBlock], outputs: &mut [AudioBlock], params: &[ParamBuffer], _: &RenderScope) -> bool {
        let input = &inputs[0];
        let out = &mut outputs[0];
        out.set_number_of_channels(2);
        let pan = &params[0];
        let [left, right] = out.channels_mut() else { unreachable!("two channels were just set") };
        if input.number_of_channels() == 1 {
            let mono = input.channel(0);
            for i in 0..mono.len() {
                let x = (pan.at(i) + 1.0) * 0.5 * FRAC_PI_2;
                left[i] = mono[i] * x.cos();
                right[i] = mono[i] * x.sin();
            }
        } else {
            let (in_l, in_r) = (input.channel(0), input.channel(1));
            for i in 0..in_l.len() {
                let p = pan.at(i);
                let x = if p <= 0.0 { p + 1.0 } else { p } * FRAC_PI_2;
                let (gain_l, gain_r) = (x.cos(), x.sin());
                if p <= 0.0 {
                    left[i] = in_l[i] + in_r[i] * gain_l;
                    right[i] = in_r[i] * gain_r;
                } else {
                    left[i] = in_l[i] * gain_l;
                    right[i] = in_r[i] + in_l[i] * gain_r;
                }
            }
        }
        true
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
