//! AudioParam: descriptors, the automation timeline and per-quantum values.

mod timeline;

pub use timeline::{AutomationError, Timeline};

use crate::block::{Channel, RENDER_QUANTUM_SIZE};

/// How often a parameter's value is computed (spec `AutomationRate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AutomationRate {
    /// One value per sample frame.
    #[default]
    ARate,
    /// One value per render quantum, taken at its first frame.
    KRate,
}

impl AutomationRate {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "a-rate" => Some(Self::ARate),
            "k-rate" => Some(Self::KRate),
            _ => None,
        }
    }
}

/// The fixed properties of a parameter (spec `AudioParamDescriptor`).
#[derive(Clone, Debug, PartialEq)]
pub struct AudioParamDescriptor {
    pub name: String,
    pub default_value: f32,
    pub min_value: f32,
    pub max_value: f32,
    pub automation_rate: AutomationRate,
}

/// The largest single-precision float: the default nominal range bound.
pub const MOST_POSITIVE_SINGLE_FLOAT: f32 = f32::MAX;

impl AudioParamDescriptor {
    pub fn new(name: &str, default_value: f32, min_value: f32, max_value: f32, automation_rate: AutomationRate) -> Self {
        Self { name: name.to_string(), default_value, min_value, max_value, automation_rate }
    }
}

/// A parameter's values for one render quantum: one value when it is
/// constant over the quantum, [`RENDER_QUANTUM_SIZE`] otherwise.
#[derive(Clone)]
pub struct ParamBuffer {
    values: Channel,
    len: usize,
}

impl Default for ParamBuffer {
    fn default() -> Self {
        Self { values: [0.0; RENDER_QUANTUM_SIZE], len: 1 }
    }
}

impl ParamBuffer {
    /// The values: a slice of length 1 (constant) or 128.
    pub fn values(&self) -> &[f32] {
        &self.values[..self.len]
    }

    /// The value at frame `i` of the quantum, constant or not.
    #[inline]
    pub fn at(&self, i: usize) -> f32 {
        if self.len == 1 {
            self.values[0]
        } else {
            self.values[i]
        }
    }

    pub fn is_constant(&self) -> bool {
        self.len == 1
    }

    pub fn set_constant(&mut self, value: f32) {
        self.values[0] = value;
        self.len = 1;
    }

    pub fn set_varying(&mut self) -> &mut Channel {
        self.len = RENDER_QUANTUM_SIZE;
        &mut self.values
    }
}

/// A parameter on the render side: its timeline, a cursor into it, and the
/// values of the current quantum.
#[derive(Clone, Debug)]
pub struct ParamState {
    pub descriptor: AudioParamDescriptor,
    pub timeline: Timeline,
    /// Some parameters (AudioBufferSourceNode's) must stay k-rate.
    pub rate_is_fixed: bool,
    cursor: usize,
}

impl ParamState {
    /// A copy to send to the render side: the cursor restarts, since the
    /// timeline's events may have moved.
    pub(crate) fn restarted(&self) -> Self {
        Self { cursor: 0, ..self.clone() }
    }

    pub fn new(descriptor: AudioParamDescriptor) -> Self {
        let timeline = Timeline::new(descriptor.default_value);
        Self { descriptor, timeline, rate_is_fixed: false, cursor: 0 }
    }

    /// Computes the quantum starting at `first_frame` into `out`.
    ///
    /// `input` is the audio-rate input, already mixed down to mono, if any
    /// node is connected to the parameter. The computed value is the
    /// intrinsic value plus the input, clamped to the nominal range.
    pub fn compute(&mut self, first_frame: u64, sample_rate: f64, input: Option<&Channel>, out: &mut ParamBuffer) {
        let (min, max) = (self.descriptor.min_value, self.descriptor.max_value);
        let default = self.descriptor.default_value;
        // The spec turns a NaN computed value into the default, then clamps.
        let finish = move |v: f32| if v.is_nan() { default } else { v.clamp(min, max) };
        let t0 = first_frame as f64 / sample_rate;
        self.cursor = self.timeline.advance(self.cursor, t0);
        let k_rate = self.descriptor.automation_rate == AutomationRate::KRate;
        let t_last = (first_frame + RENDER_QUANTUM_SIZE as u64 - 1) as f64 / sample_rate;
        if k_rate || self.timeline.is_constant_between(self.cursor, t0, t_last) {
            let intrinsic = self.timeline.value_in_segment(self.cursor, t0);
            match input {
                Some(input) if !k_rate => {
                    let values = out.set_varying();
                    for (v, x) in values.iter_mut().zip(input) {
                        *v = finish(intrinsic + x);
                    }
                }
                Some(input) => out.set_constant(finish(intrinsic + input[0])),
                None => out.set_constant(finish(intrinsic)),
            }
            return;
        }
        let values = out.set_varying();
        let mut cursor = self.cursor;
        for (i, v) in values.iter_mut().enumerate() {
            let t = (first_frame + i as u64) as f64 / sample_rate;
            cursor = self.timeline.advance(cursor, t);
            let x = input.map_or(0.0, |input| input[i]);
            *v = finish(self.timeline.value_in_segment(cursor, t) + x);
        }
    }
}
