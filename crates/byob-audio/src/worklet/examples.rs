//! Example processors, registered by [`ProcessorRegistry::with_examples`]
//! and usable from graph files (`"processor": "gain"`, ...).

use crate::lent::{ByobMemory, CHANNEL_BYTES};
use super::processor::{ProcessIo, ProcessorInit, RegisterBuffers, Registrar, TopologyChange, TopologyResponse, WorkletProcessor};
use super::registration::BufferKind;
use super::registry::ProcessorRegistry;
use crate::block::RENDER_QUANTUM_SIZE;
use crate::param::{AudioParamDescriptor, AutomationRate};

const N: usize = RENDER_QUANTUM_SIZE;

pub(crate) fn register_all(registry: &mut ProcessorRegistry) {
    let gain = AudioParamDescriptor::new("gain", 1.0, f32::MIN, f32::MAX, AutomationRate::ARate);
    registry.register("gain", vec![gain], |init| Ok(Box::new(Gain::new(init)?))).expect("unique example names");
    let feedback = AudioParamDescriptor::new("feedback", 0.5, 0.0, 0.99, AutomationRate::ARate);
    registry.register("ping-pong", vec![feedback], |init| Ok(Box::new(PingPong::new(init)?))).expect("unique example names");
    registry.register("channel-follower", Vec::new(), |init| Ok(Box::new(ChannelFollower::new(init)?))).expect("unique example names");
}

/// A whole-number option of at most `max` (each sizes memory the
/// processor sets aside).
fn option_usize(init: &ProcessorInit<'_>, key: &str, default: usize, max: usize) -> Result<usize, String> {
    match init.processor_options.get(key) {
        None => Ok(default),
        Some(v) => match v.as_u64() {
            Some(v) if v <= max as u64 => Ok(v as usize),
            _ => Err(format!("processorOptions.{key} must be a whole number from 0 to {max}")),
        },
    }
}

/// The longest ping-pong delay: 65,536 quanta (about 175 s at 48 kHz,
/// 64 MiB of slots).
const MAX_DELAY_QUANTA: usize = 1 << 16;

fn option_bool(init: &ProcessorInit<'_>, key: &str, default: bool) -> Result<bool, String> {
    match init.processor_options.get(key) {
        None => Ok(default),
        Some(v) => v.as_bool().ok_or_else(|| format!("processorOptions.{key} must be true or false")),
    }
}

/// Multiplies every input channel by the `gain` parameter.
///
/// processorOptions: `byob` (default true) lends regions for the input and
/// the output, over-allocated for `maxChannels` (default 8) so channel-count
/// growth needs no new memory; `inPlace` (default false) lends one region
/// for both. With `byob: false` it runs on the engine's copied arrays.
///
/// Port messages: `{"inPlace": true}` or `{"inPlace": false}` (JSON, as a
/// score sends them) switch between one region and two at the next quantum,
/// re-registering from the control side's request.
pub struct Gain {
    /// Held so the lent regions stay this processor's memory: room for an
    /// input and an output region, used as one in place.
    memory: Option<ByobMemory>,
    region: usize,
}

impl Gain {
    pub fn new(init: &mut ProcessorInit<'_>) -> Result<Self, String> {
        if init.number_of_inputs != 1 || init.number_of_outputs != 1 {
            return Err("gain needs exactly one input and one output".into());
        }
        if !option_bool(init, "byob", true)? {
            return Ok(Self { memory: None, region: 0 });
        }
        let region = option_usize(init, "maxChannels", 8, crate::MAX_CHANNELS)?.max(1) * CHANNEL_BYTES;
        let gain = Self { memory: Some(ByobMemory::new(2 * region)), region };
        gain.register(init, option_bool(init, "inPlace", false)?).map_err(|e| e.to_string())?;
        Ok(gain)
    }

    /// Lends one region for input and output, or one each.
    fn register(&self, registrar: &mut impl RegisterBuffers, in_place: bool) -> Result<(), crate::worklet::RegistrationError> {
        let Some(memory) = &self.memory else { return Ok(()) };
        if in_place {
            return registrar.register_buffers(memory, 0, self.region, BufferKind::InPlace, 0);
        }
        registrar.register_buffers(memory, 0, self.region, BufferKind::Input, 0)?;
        registrar.register_buffers(memory, self.region, self.region, BufferKind::Output, 0)
    }
}

impl WorkletProcessor for Gain {
    fn on_message(&mut self, message: &mut crate::node::PortMessage, registrar: &mut Registrar<'_>) {
        let in_place = message.downcast_ref::<serde_json::Value>().and_then(|m| m.get("inPlace")).and_then(serde_json::Value::as_bool);
        if let Some(in_place) = in_place {
            // A refused registration leaves the previous one in force.
            let _ = self.register(registrar, in_place);
        }
    }

    fn process(&mut self, io: &mut ProcessIo<'_>) -> bool {
        let gain = io.param(0);
        let (input, output) = io.input_and_output(0, 0);
        // In place, the input is already in the output region.
        let in_place = input.is_empty();
        match gain {
            [g] => {
                if in_place {
                    output.iter_mut().for_each(|s| *s *= g);
                } else {
                    output.iter_mut().zip(input).for_each(|(o, x)| *o = x * g);
                }
            }
            gains => {
                for (c, out) in output.chunks_exact_mut(N).enumerate() {
                    if in_place {
                        out.iter_mut().zip(gains).for_each(|(s, g)| *s *= g);
                    } else {
                        out.iter_mut().zip(&input[c * N..(c + 1) * N]).zip(gains).for_each(|((o, x), g)| *o = x * g);
                    }
                }
            }
        }
        true
    }
}

/// A stereo ping-pong delay whose delay line *is* its pool of output
/// buffers: each quantum it hands the engine the output it prepared
/// `delayQuanta` quanta earlier (a zero-copy hand-over with
/// `register_buffers` inside `process`), then prepares a future one.
///
/// Left echo = input (mixed to mono) + feedback × right echo; right echo =
/// feedback × left echo, each one delay apart. Output: the echoes only.
/// processorOptions: `delayQuanta` (default 94, about 0.25 s at 48 kHz).
pub struct PingPong {
    memory: ByobMemory,
    delay: usize,
    slots: usize,
    quantum: usize,
}

const STEREO_BYTES: usize = 2 * CHANNEL_BYTES;

impl PingPong {
    pub fn new(init: &mut ProcessorInit<'_>) -> Result<Self, String> {
        if init.number_of_inputs != 1 || init.number_of_outputs != 1 {
            return Err("ping-pong needs exactly one input and one output".into());
        }
        let delay = option_usize(init, "delayQuanta", 94, MAX_DELAY_QUANTA)?;
        if delay == 0 {
            return Err("processorOptions.delayQuanta must be at least 1".into());
        }
        // One input region, then delay + 2 stereo output slots: the one
        // playing now, the one replaced this quantum (the engine may still
        // use it until the call ends) and `delay` prepared ones.
        let slots = delay + 2;
        let memory = ByobMemory::new(STEREO_BYTES * (1 + slots));
        init.register_buffers(&memory, 0, STEREO_BYTES, BufferKind::Input, 0).map_err(|e| e.to_string())?;
        Ok(Self { memory, delay, slots, quantum: 0 })
    }

    fn slot_offset(&self, quantum: usize) -> usize {
        STEREO_BYTES * (1 + quantum % self.slots)
    }
}

impl WorkletProcessor for PingPong {
    fn process(&mut self, io: &mut ProcessIo<'_>) -> bool {
        // The output for this quantum was prepared `delay` quanta ago.
        let now = self.slot_offset(self.quantum);
        if io.output_channels(0) != 2 || io.register_buffers(&self.memory, now, STEREO_BYTES, BufferKind::Output, 0).is_err() {
            // Not stereo: nothing to hand over; output silence.
            io.output(0).fill(0.0);
            self.quantum += 1;
            return true;
        }
        let feedback = io.param(0);
        let fb = |i: usize| feedback[if feedback.len() == 1 { 0 } else { i }];
        let channels = io.input_channels(0);
        let (input, output) = io.input_and_output(0, 0);
        let mut next = [0.0f32; 2 * N];
        for i in 0..N {
            let dry = if channels >= 2 { 0.5 * (input[i] + input[N + i]) } else { input[i] };
            let (left, right) = (output[i], output[N + i]);
            next[i] = dry + fb(i) * right;
            next[N + i] = fb(i) * left;
        }
        let future = self.slot_offset(self.quantum + self.delay);
        if let Ok(slot) = io.memory(&self.memory, future, 2 * N) {
            slot.copy_from_slice(&next);
        }
        self.quantum += 1;
        true
    }
}

/// Passes its input through in place, following the input's channel count
/// up to `maxChannels` (processorOptions, default 2). It starts with a region
/// for one channel and, when more channels arrive, re-registers a larger
/// region from memory it set aside and accepts; beyond `maxChannels` it
/// rejects, so the engine down-mixes to the channels it already has.
pub struct ChannelFollower {
    memory: ByobMemory,
    max_channels: usize,
}

impl ChannelFollower {
    pub fn new(init: &mut ProcessorInit<'_>) -> Result<Self, String> {
        if init.number_of_inputs != 1 || init.number_of_outputs != 1 {
            return Err("channel-follower needs exactly one input and one output".into());
        }
        let max_channels = option_usize(init, "maxChannels", 2, crate::MAX_CHANNELS)?.max(1);
        let memory = ByobMemory::new(max_channels * CHANNEL_BYTES);
        init.register_buffers(&memory, 0, CHANNEL_BYTES, BufferKind::InPlace, 0).map_err(|e| e.to_string())?;
        Ok(Self { memory, max_channels })
    }
}

impl WorkletProcessor for ChannelFollower {
    fn process(&mut self, _io: &mut ProcessIo<'_>) -> bool {
        // In place: the engine mixed the input into the output region.
        true
    }

    fn channel_topology_change(&mut self, change: TopologyChange, registrar: &mut Registrar<'_>) -> TopologyResponse {
        if change.new_channels > self.max_channels {
            return TopologyResponse::Reject;
        }
        match registrar.register_buffers(&self.memory, 0, change.bytes_needed.max(CHANNEL_BYTES), BufferKind::InPlace, change.port) {
            Ok(()) => TopologyResponse::Accept,
            Err(_) => TopologyResponse::Reject,
        }
    }
}
