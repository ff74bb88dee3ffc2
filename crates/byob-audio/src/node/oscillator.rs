//! OscillatorNode: band-limited periodic waveforms.

use super::periodic_wave::{BasicWaveform, PeriodicWave, TableChoice, WaveTables};
use super::{param_state, AudioNode, AudioProcessor, AudioScheduledSourceNode, RenderScope, Schedule};
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

impl AudioScheduledSourceNode for OscillatorNode {
    fn schedule_mut<'a>(&self, graph: &'a mut AudioGraph) -> &'a mut Schedule {
        &mut graph.processor_mut::<OscillatorRenderer>(self.id).schedule
    }
}

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
            processor: Box::new(OscillatorRenderer { schedule: Schedule::default(), tables: wave.tables, sine, phase: 0.0, started: false }),
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
    /// Phase in cycles, in [0, 1).
    phase: f64,
    started: bool,
}

impl OscillatorRenderer {
    fn computed_frequency(frequency: f32, detune: f32, nyquist: f32) -> f32 {
        let f = if detune == 0.0 { frequency } else { frequency * (detune / 1200.0).exp2() };
        f.clamp(-nyquist, nyquist)
    }

    fn read(&self, choice: Option<TableChoice<'_>>) -> f32 {
        let position = self.phase * self.tables.size as f64;
        // Rounding can leave the phase a hair below 1.0; stay inside the table.
        let index = (position as usize).min(self.tables.size - 1);
        let frac = (position - index as f64) as f32;
        let read = |table: &[f32]| table[index] + (table[index + 1] - table[index]) * frac;
        match choice {
            None => read(self.tables.full_band()),
            Some(c) if c.weight == 0.0 => read(c.more_partials),
            Some(c) => {
                let more = read(c.more_partials);
                more + (read(c.fewer_partials) - more) * c.weight
            }
        }
    }

    fn advance(&mut self, increment: f64) {
        // |increment| <= 0.5 (the frequency is clamped to Nyquist).
        self.phase += increment;
        if self.phase >= 1.0 {
            self.phase -= 1.0;
        } else if self.phase < 0.0 {
            self.phase += 1.0;
        }
    }
}

impl AudioProcessor for OscillatorRenderer {
    fn process(&mut self, _: &[AudioBlock], outputs: &mut [AudioBlock], params: &[ParamBuffer], scope: &RenderScope) -> bool {
        let (playing, finished) = self.schedule.playing_range(scope.current_frame, scope.sample_rate);
        let out = &mut outputs[0];
        out.make_silent(1);
        if playing.is_empty() {
            return !finished;
        }
        let sr = scope.sample_rate;
        let nyquist = sr / 2.0;
        let (frequency, detune) = (&params[0], &params[1]);
        if !self.started {
            // Phase is zero at the exact start time; the first frame lies up
            // to one frame later (sub-sample accurate start).
            self.started = true;
            let start = self.schedule.start_time().unwrap_or(0.0);
            let first = (scope.current_frame + playing.start as u64) as f64 / sr as f64;
            let f = Self::computed_frequency(frequency.at(playing.start), detune.at(playing.start), nyquist);
            self.phase = ((first - start) * f as f64).rem_euclid(1.0);
        }
        let channel: &mut Channel = out.channel_mut(0);
        let tables = self.tables.clone();
        if frequency.is_constant() && detune.is_constant() {
            let f = Self::computed_frequency(frequency.at(0), detune.at(0), nyquist);
            let choice = (!self.sine).then(|| tables.choose(f));
            for sample in &mut channel[playing.clone()] {
                *sample = self.read(choice);
                self.advance(f as f64 / sr as f64);
            }
        } else {
            for i in playing.clone() {
                let f = Self::computed_frequency(frequency.at(i), detune.at(i), nyquist);
                channel[i] = self.read((!self.sine).then(|| tables.choose(f)));
                self.advance(f as f64 / sr as f64);
            }
        }
        !finished
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
