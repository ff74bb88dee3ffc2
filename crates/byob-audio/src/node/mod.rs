//! Audio nodes: one file per node type, each holding its options, its
//! public handle and its private render-side processor.

use crate::block::AudioBlock;
use crate::param::ParamBuffer;
use std::any::Any;

pub mod biquad_filter;
pub mod buffer_source;
pub mod channel_merger;
pub mod channel_splitter;
pub mod constant_source;
pub mod delay;
pub mod gain;
pub mod oscillator;
pub mod periodic_wave;
mod scheduling;
pub mod stereo_panner;

pub use scheduling::{AudioScheduledSourceNode, Schedule, ScheduleCall, SCHEDULED_SOURCES};

/// A message posted to a node's port from the control side
/// ([`AudioGraph::post_message`](crate::AudioGraph::post_message)): any
/// value; a JSON value when it comes from a graph file's score. Whatever
/// the receiver leaves in it is freed off the render thread.
pub type PortMessage = Box<dyn Any + Send>;

/// Where a render quantum sits in time.
#[derive(Clone, Copy, Debug)]
pub struct RenderScope {
    /// The first frame of the quantum.
    pub current_frame: u64,
    pub sample_rate: f32,
}

impl RenderScope {
    /// The time of the first frame of the quantum, in seconds.
    pub fn current_time(&self) -> f64 {
        self.current_frame as f64 / self.sample_rate as f64
    }
}

/// The render-side half of a node.
///
/// Contract: `process` is called once per render quantum on the render
/// thread, after the node's inputs have been mixed (each `inputs[k]` carries
/// the computed channel count of input `k`) and its parameters computed
/// (`params[k]` in the order of the node's descriptors). It must set the
/// channel count of every output and fill it; it must not allocate, lock or
/// make system calls. It returns whether the node is still actively
/// processing (a source that has stopped returns `false`).
pub trait AudioProcessor: Send + Any {
    fn process(
        &mut self,
        inputs: &[AudioBlock],
        outputs: &mut [AudioBlock],
        params: &[ParamBuffer],
        scope: &RenderScope,
    ) -> bool;

    /// Called before input `input` is mixed, with the channel count the
    /// spec's mixing rules computed; returns the count to mix to. BYOB
    /// processors negotiate topology changes here and may point `block` at
    /// a region of their memory.
    fn input_channels(&mut self, input: usize, computed: usize, block: &mut AudioBlock) -> usize {
        let _ = (input, block);
        computed
    }

    /// Called when this node enters (`true`) or leaves a cycle: while in
    /// one, its input arrives one render quantum late (only DelayNode
    /// accepts this; the graph refuses other cycles).
    fn set_input_delayed_by_one_quantum(&mut self, delayed: bool) {
        let _ = delayed;
    }

    /// A message posted to the node's port, delivered before the quantum
    /// whose batch carried it. Nodes without a port ignore it.
    fn port_message(&mut self, message: &mut PortMessage) {
        let _ = message;
    }

    /// A scheduled source's `start` or `stop`, already checked.
    fn schedule(&mut self, call: &ScheduleCall) {
        let _ = call;
    }

    /// Events raised during the last `process` (a worklet's error or
    /// topology change), one per call until `None`. `ended` is reported by
    /// the graph itself.
    fn take_event(&mut self) -> Option<crate::graph::NodeEventKind> {
        None
    }

    /// For a node's handle to reach its processor before rendering starts.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// The destination's processor: the graph reads its mixed input directly.
pub(crate) struct Destination;

impl AudioProcessor for Destination {
    fn process(&mut self, _: &[AudioBlock], _: &mut [AudioBlock], _: &[ParamBuffer], _: &RenderScope) -> bool {
        true
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A node handle: anything that names a node of an [`AudioGraph`](crate::AudioGraph).
pub trait AudioNode {
    fn id(&self) -> crate::graph::NodeId;
}

/// A parameter starting at `value`.
pub(crate) fn param_state(
    name: &str,
    default_value: f32,
    min: f32,
    max: f32,
    rate: crate::param::AutomationRate,
    value: f32,
) -> crate::param::ParamState {
    let mut state = crate::param::ParamState::new(crate::param::AudioParamDescriptor::new(name, default_value, min, max, rate));
    state.timeline.set_initial_value(value);
    state
}

/// Multiplies `input` by a parameter into `output`, channel by channel.
pub(crate) fn apply_gain(input: &AudioBlock, output: &mut AudioBlock, gain: &ParamBuffer) {
    output.set_number_of_channels(input.number_of_channels());
    for (o, i) in output.channels_mut().iter_mut().zip(input.channels()) {
        if gain.is_constant() {
            let g = gain.at(0);
            for (o, i) in o.iter_mut().zip(i) {
                *o = i * g;
            }
        } else {
            for ((o, i), g) in o.iter_mut().zip(i).zip(gain.values()) {
                *o = i * g;
            }
        }
    }
}
