//! OscillatorNode: band-limited periodic waveforms.

use super::periodic_wave::{BasicWaveform, PeriodicWave, WaveTables};
use super::{param_state, AudioNode, AudioProcessor, AudioScheduledSourceNode, RenderScope, Schedule, ScheduleCall};
use crate::block::{AudioBlock, Channel};
use crate::graph::{AudioGraph, AudioNodeOptions, AudioParamId, NodeDescription, NodeError, NodeId};
use crate::mixing::ChannelConfig;
use crate::param::{AutomationRate, ParamBuffer};
use std::any::Any;

/// The spec's OscillatorType.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OscillatorType {
    #[default]
    Sine,
    Square,
    Sawtooth,
    Triangle,
    Custom,
}

impl OscillatorType {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sine" => Some(Self::Sine),
            "square" => Some(Self::Square),
            "sawtooth" => Some(Self::Sawtooth),
            "triangle" => Some(Self::Triangle),
            "custom" => Some(Self::Custom),
            _ => None,
        }
    }
}

/// The spec's OscillatorOptions.
#[derive(Clone, Debug, PartialEq)]
pub struct OscillatorOptions {
    pub type_: OscillatorType,
    pub frequency: f32,
    pub detune: f32,
    pub periodic_wave: Option<PeriodicWave>,
    pub node: AudioNodeOptions,
}

impl Default for OscillatorOptions {
    fn default() -> Self {
        Self {
            type_: OscillatorType::Sine,
            frequency: 440.0,
            detune: 0.0,
            periodic_wave: None,
            node: AudioNodeOptions::default(),
        }
    }
}

/// 1200 * log2(FLT_MAX): the detune range that keeps 2^(detune/1200) finite.
pub(crate) const MAX_DETUNE: f32 = 153_600.0;

pub struct OscillatorNode {
    id: NodeId,
}

impl AudioNode for OscillatorNode {
    fn id(&self) -> NodeId {
        self.id
    }
}

impl AudioScheduledSourceNode for OscillatorNode {}

impl OscillatorNode {
    pub fn new(graph: &mut AudioGraph, options: OscillatorOptions) -> Result<Self, NodeError> {
        let sample_rate = graph.sample_rate();
        let (wave, sine) = match (options.type_, options.periodic_wave) {
            // A given periodicWave makes the type "custom", as in the spec.
            (_, Some(wave)) => (wave, false),
            (OscillatorType::Custom, None) => {
                return Err(NodeError::InvalidState { what: "type \"custom\" needs a periodicWave".into() });
            }
            (t, None) => {
                let basic = match t {
                    OscillatorType::Sine => BasicWaveform::Sine,
                    OscillatorType::Square => BasicWaveform::Square,
                    OscillatorType::Sawtooth => BasicWaveform::Sawtooth,
                    OscillatorType::Triangle => BasicWaveform::Triangle,
                    OscillatorType::Custom => unreachable!("handled above"),
                };
                (PeriodicWave::basic(basic, sample_rate), t == OscillatorType::Sine)
            }
        };
        let nyquist = sample_rate / 2.0;
        let frequency = param_state("frequency", 440.0, -nyquist, nyquist, AutomationRate::ARate, options.frequency);
        let detune = param_state("detune", 0.0, -MAX_DETUNE, MAX_DETUNE, AutomationRate::ARate, options.detune);
        let id = graph.add_node(NodeDescription {
            type_name: "OscillatorNode",
            number_of_inputs: 0,
            number_of_outputs: 1,
            channel_config: options.node.resolve(ChannelConfig::default())?,
            params: vec![frequency, detune],
            processor: Box::new(OscillatorRenderer { schedule: Schedule::default(), tables: wave.tables, sine, position: 0.0, started: false }),
            breaks_cycles: false,
        });
        Ok(Self { id })
    }

    pub fn frequency(&self) -> AudioParamId {
        AudioParamId { node: self.id, index: 0 }
    }

    pub fn detune(&self) -> AudioParamId {
        AudioParamId { node: self.id, index: 1 }
    }
}

struct OscillatorRenderer {
    schedule: Schedule,
    tables: std::sync::Arc<WaveTables>,
    /// A sine has a single partial and never aliases below Nyquist, so it
    /// reads the full-band table at every frequency.
    sine: bool,
    /// Phase as a position in the tables, in [0, size).
    position: f64,
    started: bool,
}

/// Linear interpolation between `table[index]` and `table[index + 1]`
/// (tables repeat their first sample at the end).
#[inline(always)]
fn read(table: &[f32], index: usize, frac: f32) -> f32 {
    table[index] + (table[index + 1] - table[index]) * frac
}

impl OscillatorRenderer {
    fn computed_frequency(frequency: f32, detune: f32, nyquist: f32) -> f32 {
        let f = if detune == 0.0 { frequency } else { frequency * (detune / 1200.0).exp2() };
        f.clamp(-nyquist, nyquist)
    }

    /// The table index and fraction of the current position, then a step on.
    #[inline(always)]
    fn step(&mut self, increment: f64) -> (usize, f32) {
        let size = self.tables.size;
        // Rounding can leave the position a hair below `size`: stay inside.
        let index = (self.position as usize).min(size - 1);
        let frac = (self.position - index as f64) as f32;
        // |increment| <= size / 2: the frequency is clamped to Nyquist.
        self.position += increment;
        if self.position >= size as f64 {
            self.position -= size as f64;
        } else if self.position < 0.0 {
            self.position += size as f64;
        }
        (index, frac)
    }
}

impl AudioProcessor for OscillatorRenderer {
    fn schedule(&mut self, call: &ScheduleCall) {
        self.schedule.apply(call);
    }

    fn process(&mut self, _: &[AudioBlock], outputs: &mut [AudioBlock], params: &[ParamBuffer], scope: &RenderScope) -> bool {
        let (playing, finished) = self.schedule.advance(scope.current_frame, scope.sample_rate);
        let out = &mut outputs[0];
        out.make_silent(1);
        if playing.is_empty() {
            return !finished;
        }
        let sr = scope.sample_rate;
        let nyquist = sr / 2.0;
        let size = self.tables.size as f64;
        let (frequency, detune) = (&params[0], &params[1]);
        if !self.started {
            // Phase is zero at the exact start time; the first frame lies up
            // to one frame later (sub-sample accurate start).
            self.started = true;
            let start = self.schedule.start_time().unwrap_or(0.0);
            let first = (scope.current_frame + playing.start as u64) as f64 / sr as f64;
            let f = Self::computed_frequency(frequency.at(playing.start), detune.at(playing.start), nyquist);
            self.position = ((first - start) * f as f64).rem_euclid(1.0) * size;
        }
        let channel: &mut Channel = out.channel_mut(0);
        let tables = self.tables.clone();
        let samples_per_hz = size / sr as f64;
        if frequency.is_constant() && detune.is_constant() {
            let f = Self::computed_frequency(frequency.at(0), detune.at(0), nyquist);
            let increment = f as f64 * samples_per_hz;
            let choice = tables.choose(f);
            if self.sine || choice.weight == 0.0 {
                let table = if self.sine { tables.full_band() } else { choice.more_partials };
                for sample in &mut channel[playing.clone()] {
                    let (index, frac) = self.step(increment);
                    *sample = read(table, index, frac);
                }
            } else {
                for sample in &mut channel[playing.clone()] {
                    let (index, frac) = self.step(increment);
                    let more = read(choice.more_partials, index, frac);
                    *sample = more + (read(choice.fewer_partials, index, frac) - more) * choice.weight;
                }
            }
        } else {
            for i in playing.clone() {
                let f = Self::computed_frequency(frequency.at(i), detune.at(i), nyquist);
                let (index, frac) = self.step(f as f64 * samples_per_hz);
                channel[i] = if self.sine {
                    read(tables.full_band(), index, frac)
                } else {
                    let choice = tables.choose(f);
                    let more = read(choice.more_partials, index, frac);
                    more + (read(choice.fewer_partials, index, frac) - more) * choice.weight
                };
            }
        }
        !finished
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
