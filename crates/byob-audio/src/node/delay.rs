//! DelayNode: a fractional delay line, the only node allowed inside a cycle.

use super::{param_state, AudioNode, AudioProcessor, RenderScope};
use crate::block::{AudioBlock, MAX_CHANNELS, RENDER_QUANTUM_SIZE};
use crate::buffer::zeroed_channels;
use crate::graph::{AudioGraph, AudioNodeOptions, AudioParamId, NodeDescription, NodeError, NodeId};
use crate::mixing::{mix_add, ChannelConfig, ChannelCountMode, ChannelInterpretation};
use crate::param::{AutomationRate, ParamBuffer};
use std::any::Any;

/// The spec's DelayOptions.
#[derive(Clone, Debug, PartialEq)]
pub struct DelayOptions {
    pub max_delay_time: f64,
    pub delay_time: f32,
    pub node: AudioNodeOptions,
}

impl Default for DelayOptions {
    fn default() -> Self {
        Self { max_delay_time: 1.0, delay_time: 0.0, node: AudioNodeOptions::default() }
    }
}

pub struct DelayNode {
    id: NodeId,
}

impl AudioNode for DelayNode {
    fn id(&self) -> NodeId {
        self.id
    }
}

impl DelayNode {
    pub fn new(graph: &mut AudioGraph, options: DelayOptions) -> Result<Self, NodeError> {
        let max = options.max_delay_time;
        if !(max.is_finite() && max > 0.0 && max < 180.0) {
            return Err(NodeError::NotSupported { what: format!("maxDelayTime must be greater than 0 and less than 180 seconds, got {max}") });
        }
        NodeError::check_range("delayTime", options.delay_time as f64, 0.0, max)?;
        let config = options.node.resolve(ChannelConfig::default())?;
        let sample_rate = graph.sample_rate() as f64;
        // Room for the longest delay, the quantum being written, one quantum
        // of lateness inside a cycle and the interpolation neighbour.
        let length = (max * sample_rate).ceil() as usize + 2 * RENDER_QUANTUM_SIZE + 2;
        // The ring keeps as many channels as the input can carry: the
        // channelCount when it bounds the input, 6 (5.1) otherwise.
        let ring_channels = match config.mode {
            ChannelCountMode::Max => config.count.max(6),
            _ => config.count,
        }
        .min(MAX_CHANNELS);
        let what = || format!("a DelayNode of maxDelayTime {max} s at {sample_rate} Hz over {ring_channels} channels");
        let bytes = ring_channels * length * std::mem::size_of::<f32>();
        graph.reserve_memory(bytes, what)?;
        // Asked fallibly: 180 s at 768 kHz over 32 channels is 17.7 GB.
        let ring = zeroed_channels(ring_channels, length).ok_or_else(|| NodeError::OutOfMemory { what: what(), bytes })?;
        let ring = ring.into_iter().map(Vec::into_boxed_slice).collect();
        let delay_time = param_state("delayTime", 0.0, 0.0, max as f32, AutomationRate::ARate, options.delay_time);
        let id = graph.add_node(NodeDescription {
            type_name: "DelayNode",
            number_of_inputs: 1,
            number_of_outputs: 1,
            channel_config: config,
            params: vec![delay_time],
            processor: Box::new(DelayRenderer {
                ring,
                write: 0,
                in_cycle: false,
                channels: 1,
                wide_until: 0,
                interpretation: config.interpretation,
                mixed: AudioBlock::new(),
            }),
            breaks_cycles: true,
        });
        Ok(Self { id })
    }

    pub fn delay_time(&self) -> AudioParamId {
        AudioParamId { node: self.id, index: 0 }
    }
}

struct DelayRenderer {
    ring: Vec<Box<[f32]>>,
    /// Where the next quantum of input goes.
    write: usize,
    in_cycle: bool,
    /// Channels of the output: the widest input still inside the delay line.
    channels: usize,
    /// The frame until which wider input than the current one can still come out.
    wide_until: u64,
    interpretation: ChannelInterpretation,
    mixed: AudioBlock,
}

impl AudioProcessor for DelayRenderer {
    fn process(&mut self, inputs: &[AudioBlock], outputs: &mut [AudioBlock], params: &[ParamBuffer], scope: &RenderScope) -> bool {
        let input = &inputs[0];
        let len = self.ring[0].len();
        let input_channels = input.number_of_channels().min(self.ring.len());
        // The output widens as soon as wider input arrives, and narrows only
        // once that input has left the delay line (spec: DelayNode channels).
        if input_channels >= self.channels || scope.current_frame >= self.wide_until {
            self.channels = input_channels;
            self.wide_until = scope.current_frame + len as u64;
        }
        self.mixed.make_silent(self.channels);
        mix_add(&mut self.mixed, input, self.interpretation);
        for (ring, samples) in self.ring.iter_mut().zip(self.mixed.channels()) {
            let first = len - self.write;
            if first >= RENDER_QUANTUM_SIZE {
                ring[self.write..self.write + RENDER_QUANTUM_SIZE].copy_from_slice(samples);
            } else {
                ring[self.write..].copy_from_slice(&samples[..first]);
                ring[..RENDER_QUANTUM_SIZE - first].copy_from_slice(&samples[first..]);
            }
        }
        let sample_rate = scope.sample_rate as f64;
        // Inside a cycle the input arrives one quantum late and the delay is
        // at least one quantum: read that much closer to the write position.
        let lateness = if self.in_cycle { RENDER_QUANTUM_SIZE as f64 } else { 0.0 };
        let delay_time = &params[0];
        let out = &mut outputs[0];
        out.set_number_of_channels(self.channels);
        let read_position = |i: usize, seconds: f32| {
            let delay = (seconds as f64 * sample_rate).max(lateness) - lateness;
            let position = (self.write + i + len) as f64 - delay;
            let whole = position.floor();
            (whole as usize % len, (position - whole) as f32)
        };
        for (c, channel) in out.channels_mut().iter_mut().enumerate() {
            let ring = &self.ring[c];
            if delay_time.is_constant() {
                // One read position for the quantum, stepped without division.
                let (mut a, frac) = read_position(0, delay_time.at(0));
                if frac == 0.0 {
                    // A whole number of frames: a copy, split where the ring wraps.
                    let first = (len - a).min(RENDER_QUANTUM_SIZE);
                    channel[..first].copy_from_slice(&ring[a..a + first]);
                    channel[first..].copy_from_slice(&ring[..RENDER_QUANTUM_SIZE - first]);
                    continue;
                }
                for sample in channel.iter_mut() {
                    let b = if a + 1 == len { 0 } else { a + 1 };
                    *sample = ring[a] + (ring[b] - ring[a]) * frac;
                    a = b;
                }
            } else {
                for (i, sample) in channel.iter_mut().enumerate() {
                    let (a, frac) = read_position(i, delay_time.at(i));
                    let b = if a + 1 == len { 0 } else { a + 1 };
                    *sample = ring[a] + (ring[b] - ring[a]) * frac;
                }
            }
        }
        self.write = (self.write + RENDER_QUANTUM_SIZE) % len;
        true
    }

    fn set_input_delayed_by_one_quantum(&mut self, delayed: bool) {
        self.in_cycle = delayed;
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
