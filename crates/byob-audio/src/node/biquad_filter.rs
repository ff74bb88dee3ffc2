//! BiquadFilterNode: the spec's second-order filters (Audio EQ Cookbook).

use super::{param_state, AudioNode, AudioProcessor, RenderScope};
use crate::block::{AudioBlock, MAX_CHANNELS, RENDER_QUANTUM_SIZE};
use crate::graph::{AudioGraph, AudioNodeOptions, AudioParamId, NodeDescription, NodeError, NodeId};
use crate::mixing::ChannelConfig;
use crate::param::{AutomationRate, ParamBuffer, MOST_POSITIVE_SINGLE_FLOAT};
use std::any::Any;
use std::f64::consts::PI;

/// The spec's BiquadFilterType.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BiquadFilterType {
    #[default]
    Lowpass,
    Highpass,
    Bandpass,
    Lowshelf,
    Highshelf,
    Peaking,
    Notch,
    Allpass,
}

impl BiquadFilterType {
    /// Every type, in the spec's order.
    pub const ALL: [Self; 8] =
        [Self::Lowpass, Self::Highpass, Self::Bandpass, Self::Lowshelf, Self::Highshelf, Self::Peaking, Self::Notch, Self::Allpass];

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "lowpass" => Some(Self::Lowpass),
            "highpass" => Some(Self::Highpass),
            "bandpass" => Some(Self::Bandpass),
            "lowshelf" => Some(Self::Lowshelf),
            "highshelf" => Some(Self::Highshelf),
            "peaking" => Some(Self::Peaking),
            "notch" => Some(Self::Notch),
            "allpass" => Some(Self::Allpass),
            _ => None,
        }
    }
}

/// The spec's BiquadFilterOptions.
#[derive(Clone, Debug, PartialEq)]
pub struct BiquadFilterOptions {
    pub type_: BiquadFilterType,
    pub q: f32,
    pub detune: f32,
    pub frequency: f32,
    pub gain: f32,
    pub node: AudioNodeOptions,
}

impl Default for BiquadFilterOptions {
    fn default() -> Self {
        Self {
            type_: BiquadFilterType::Lowpass,
            q: 1.0,
            detune: 0.0,
            frequency: 350.0,
            gain: 0.0,
            node: AudioNodeOptions::default(),
        }
    }
}

pub struct BiquadFilterNode {
    id: NodeId,
}

impl AudioNode for BiquadFilterNode {
    fn id(&self) -> NodeId {
        self.id
    }
}

impl BiquadFilterNode {
    pub fn new(graph: &mut AudioGraph, options: BiquadFilterOptions) -> Result<Self, NodeError> {
        // WebIDL `float` members reject non-finite values before any range check.
        for (name, value) in [
            ("Q", options.q),
            ("detune", options.detune),
            ("frequency", options.frequency),
            ("gain", options.gain),
        ] {
            if !value.is_finite() {
                return Err(NodeError::NotFinite { name, value: value as f64 });
            }
        }
        let config = options.node.resolve(ChannelConfig::default())?;
        let nyquist = graph.sample_rate() / 2.0;
        // The spec's bounds: beyond them 2^(detune/1200) and 10^(gain/40)
        // would overflow a float.
        let detune_max = 1200.0 * MOST_POSITIVE_SINGLE_FLOAT.log2();
        let gain_max = 40.0 * MOST_POSITIVE_SINGLE_FLOAT.log10();
        let params = vec![
            param_state("frequency", 350.0, 0.0, nyquist, AutomationRate::ARate, options.frequency),
            param_state("detune", 0.0, -detune_max, detune_max, AutomationRate::ARate, options.detune),
            param_state(
                "Q",
                1.0,
                -MOST_POSITIVE_SINGLE_FLOAT,
                MOST_POSITIVE_SINGLE_FLOAT,
                AutomationRate::ARate,
                options.q,
            ),
            param_state("gain", 0.0, -MOST_POSITIVE_SINGLE_FLOAT, gain_max, AutomationRate::ARate, options.gain),
        ];
        let id = graph.add_node(NodeDescription {
            type_name: "BiquadFilterNode",
            number_of_inputs: 1,
            number_of_outputs: 1,
            channel_config: config,
            params,
            processor: Box::new(BiquadFilterRenderer::new(options.type_)),
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

    pub fn q(&self) -> AudioParamId {
        AudioParamId { node: self.id, index: 2 }
    }

    pub fn gain(&self) -> AudioParamId {
        AudioParamId { node: self.id, index: 3 }
    }
}

/// 10^`exponent`, kept within 10^±150. The parameters' nominal ranges
/// reach 10^(±FLT_MAX/20), where the formulas would meet 0·∞ or ∞/∞ (NaN
/// coefficients, a NaN output); within these bounds every coefficient is
/// finite and already equals its limit to double precision (a Q of
/// -3e38 dB on a lowpass is the limit of ever lower resonance, not NaN).
fn linear(exponent: f64) -> f64 {
    10f64.powf(exponent).clamp(1e-150, 1e150)
}

/// Normalised coefficients `[b0/a0, b1/a0, b2/a0, a1/a0, a2/a0]` of the
/// filter for the given parameter values (`frequency` in Hz before detune,
/// `detune` in cents, `gain_db` in dB).
///
/// Where the spec's formulas degenerate (frequency at 0 or Nyquist, Q <= 0
/// for the Q-as-bandwidth types) the result is the limit Chrome uses.
pub fn coefficients(
    type_: BiquadFilterType,
    sample_rate: f64,
    frequency: f64,
    q: f64,
    gain_db: f64,
    detune: f64,
) -> [f64; 5] {
    let nyquist = sample_rate / 2.0;
    let computed = frequency * (detune / 1200.0).exp2();
    // Written so that NaN (0 Hz times an infinite detune factor) lands on 0.
    let normalized = if computed > 0.0 { (computed / nyquist).min(1.0) } else { 0.0 };
    let a = linear(gain_db / 40.0);
    let pass = [1.0, 0.0, 0.0, 0.0, 0.0];
    let gain_only = |g: f64| [g, 0.0, 0.0, 0.0, 0.0];
    let interior = normalized > 0.0 && normalized < 1.0;
    let w0 = PI * normalized;
    let (sin, cos) = w0.sin_cos();
    let normalize = |b0: f64, b1: f64, b2: f64, a0: f64, a1: f64, a2: f64| [b0 / a0, b1 / a0, b2 / a0, a1 / a0, a2 / a0];
    match type_ {
        BiquadFilterType::Lowpass | BiquadFilterType::Highpass => {
            let lowpass = type_ == BiquadFilterType::Lowpass;
            if !interior {
                // At Nyquist the lowpass passes everything and the highpass
                // nothing; at 0 Hz the other way round.
                return gain_only(if (normalized >= 1.0) == lowpass { 1.0 } else { 0.0 });
            }
            let alpha = sin / (2.0 * linear(q / 20.0));
            let (b0, b1) = if lowpass { ((1.0 - cos) / 2.0, 1.0 - cos) } else { ((1.0 + cos) / 2.0, -(1.0 + cos)) };
            normalize(b0, b1, b0, 1.0 + alpha, -2.0 * cos, 1.0 - alpha)
        }
        BiquadFilterType::Lowshelf | BiquadFilterType::Highshelf => {
            let low = type_ == BiquadFilterType::Lowshelf;
            if !interior {
                // A lowshelf at Nyquist shelves the whole band; at 0 Hz none of it.
                return gain_only(if (normalized >= 1.0) == low { a * a } else { 1.0 });
            }
            let s = 1.0;
            let alpha_s = sin / 2.0 * ((a + 1.0 / a) * (1.0 / s - 1.0) + 2.0).sqrt();
            let k = 2.0 * alpha_s * a.sqrt();
            let (ap, am) = (a + 1.0, a - 1.0);
            if low {
                normalize(
                    a * (ap - am * cos + k),
                    2.0 * a * (am - ap * cos),
                    a * (ap - am * cos - k),
                    ap + am * cos + k,
                    -2.0 * (am + ap * cos),
                    ap + am * cos - k,
                )
            } else {
                normalize(
                    a * (ap + am * cos + k),
                    -2.0 * a * (am + ap * cos),
                    a * (ap + am * cos - k),
                    ap - am * cos + k,
                    2.0 * (am - ap * cos),
                    ap - am * cos - k,
                )
            }
        }
        BiquadFilterType::Bandpass | BiquadFilterType::Notch | BiquadFilterType::Allpass | BiquadFilterType::Peaking => {
            if !interior {
                // The band collapses onto an edge of the spectrum: only the
                // bandpass keeps it (and so lets nothing through).
                return if type_ == BiquadFilterType::Bandpass { gain_only(0.0) } else { pass };
            }
            if q <= 0.0 {
                // An infinitely wide band.
                return gain_only(match type_ {
                    BiquadFilterType::Bandpass => 1.0,
                    BiquadFilterType::Notch => 0.0,
                    BiquadFilterType::Allpass => -1.0,
                    _ => a * a,
                });
            }
            let alpha = sin / (2.0 * q);
            let a1 = -2.0 * cos;
            match type_ {
                BiquadFilterType::Bandpass => normalize(alpha, 0.0, -alpha, 1.0 + alpha, a1, 1.0 - alpha),
                BiquadFilterType::Notch => normalize(1.0, a1, 1.0, 1.0 + alpha, a1, 1.0 - alpha),
                BiquadFilterType::Allpass => normalize(1.0 - alpha, a1, 1.0 + alpha, 1.0 + alpha, a1, 1.0 - alpha),
                _ => normalize(1.0 + alpha * a, a1, 1.0 - alpha * a, 1.0 + alpha / a, a1, 1.0 - alpha / a),
            }
        }
    }
}

/// Below this, state values are flushed to zero: a decaying tail would
/// otherwise reach subnormals, which are very slow on some CPUs.
const DENORMAL_THRESHOLD: f64 = 1e-30;

/// Samples per step of [`BlockFilter`].
const BLOCK: usize = 4;

/// A biquad with fixed coefficients, stepped four samples at a time.
///
/// In state-space form (transposed direct form II: state s = [s1, s2],
/// s' = A s + B x, y = C s + D x) four samples follow from the state at the
/// start of the block in one step. With fixed coefficients this is the same
/// filter as direct form I, whose memory it converts from and back to. The recursion then waits on one
/// multiply-add per four samples instead of one per sample, which is what
/// bounds a plain biquad loop; the extra arithmetic runs in parallel.
struct BlockFilter {
    coefficients: [f64; 5],
    /// Row k: C A^k, the state's contribution to output k.
    from_state: [[f64; 2]; BLOCK],
    /// Impulse response h[0..BLOCK]: D, C B, C A B, C A^2 B.
    impulse: [f64; BLOCK],
    /// A^BLOCK, the state carried over a block.
    carry: [[f64; 2]; 2],
    /// Column j: A^(BLOCK-1-j) B, input j's contribution to the next state.
    from_input: [[f64; 2]; BLOCK],
}

impl BlockFilter {
    fn new([b0, b1, b2, a1, a2]: [f64; 5]) -> Self {
        let a = [[-a1, 1.0], [-a2, 0.0]];
        let b = [b1 - a1 * b0, b2 - a2 * b0];
        let mat_vec = |m: [[f64; 2]; 2], v: [f64; 2]| [m[0][0] * v[0] + m[0][1] * v[1], m[1][0] * v[0] + m[1][1] * v[1]];
        let row_mat = |r: [f64; 2], m: [[f64; 2]; 2]| [r[0] * m[0][0] + r[1] * m[1][0], r[0] * m[0][1] + r[1] * m[1][1]];
        let mut from_state = [[0.0; 2]; BLOCK];
        let mut row = [1.0, 0.0];
        for r in &mut from_state {
            *r = row;
            row = row_mat(row, a);
        }
        let mut impulse = [b0, 0.0, 0.0, 0.0];
        for (k, h) in impulse.iter_mut().enumerate().skip(1) {
            let r = from_state[k - 1];
            *h = r[0] * b[0] + r[1] * b[1];
        }
        let mut from_input = [[0.0; 2]; BLOCK];
        let mut column = b;
        for j in (0..BLOCK).rev() {
            from_input[j] = column;
            column = mat_vec(a, column);
        }
        let a2m = [row_mat(a[0], a), row_mat(a[1], a)];
        let carry = [row_mat(a2m[0], a2m), row_mat(a2m[1], a2m)];
        Self { coefficients: [b0, b1, b2, a1, a2], from_state, impulse, carry, from_input }
    }

    /// Filters `input` (a whole number of blocks) into `output`; `memory` is
    /// direct form I memory, in and out.
    fn run(&self, input: &[f32], output: &mut [f32], memory: &mut [f64; 4]) {
        let [_, b1, b2, a1, a2] = self.coefficients;
        let [x1, x2, y1, y2] = *memory;
        let mut s = [b1 * x1 - a1 * y1 + b2 * x2 - a2 * y2, b2 * x1 - a2 * y1];
        let h = self.impulse;
        let mut last = [0.0; BLOCK];
        for (x, y) in input.chunks_exact(BLOCK).zip(output.chunks_exact_mut(BLOCK)) {
            let x = [x[0] as f64, x[1] as f64, x[2] as f64, x[3] as f64];
            for k in 0..BLOCK {
                let mut v = self.from_state[k][0] * s[0] + self.from_state[k][1] * s[1];
                for j in 0..=k {
                    v += h[k - j] * x[j];
                }
                last[k] = v;
                y[k] = v as f32;
            }
            let mut next = [self.carry[0][0] * s[0] + self.carry[0][1] * s[1], self.carry[1][0] * s[0] + self.carry[1][1] * s[1]];
            for (j, g) in self.from_input.iter().enumerate() {
                next[0] += g[0] * x[j];
                next[1] += g[1] * x[j];
            }
            s = next;
        }
        let n = input.len();
        *memory = [input[n - 1] as f64, input[n - 2] as f64, last[BLOCK - 1], last[BLOCK - 2]];
    }
}

struct BiquadFilterRenderer {
    type_: BiquadFilterType,
    /// Direct form I memory per channel: x[n-1], x[n-2], y[n-1], y[n-2]
    /// (the form browsers use, which matters when coefficients move).
    state: [[f64; 4]; MAX_CHANNELS],
    /// Channels processed in the previous quantum.
    channels: usize,
    /// Per-frame coefficients when a parameter varies within the quantum.
    coefs: [[f64; 5]; RENDER_QUANTUM_SIZE],
    /// The constant parameters (frequency, detune, Q, gain) the cached block
    /// filter was made for: recomputing sin, cos and pow every quantum for
    /// unchanged values would cost more than the filtering.
    cached: Option<([f32; 4], BlockFilter)>,
}

impl BiquadFilterRenderer {
    fn new(type_: BiquadFilterType) -> Self {
        Self {
            type_,
            state: [[0.0; 4]; MAX_CHANNELS],
            channels: 0,
            coefs: [[0.0; 5]; RENDER_QUANTUM_SIZE],
            cached: None,
        }
    }
}

impl AudioProcessor for BiquadFilterRenderer {
    fn process(&mut self, inputs: &[AudioBlock], outputs: &mut [AudioBlock], params: &[ParamBuffer], scope: &RenderScope) -> bool {
        let input = &inputs[0];
        let channels = input.number_of_channels();
        // Channels that reappear after a narrower stretch start from rest,
        // not from the memory they had when they went away.
        for state in self.state.iter_mut().take(channels).skip(self.channels) {
            *state = [0.0; 4];
        }
        self.channels = channels;

        let sample_rate = scope.sample_rate as f64;
        let type_ = self.type_;
        let [frequency, detune, q, gain] = params else { unreachable!("a BiquadFilterNode has four parameters") };
        let coefs_at = |i: usize| {
            coefficients(
                type_,
                sample_rate,
                frequency.at(i) as f64,
                q.at(i) as f64,
                gain.at(i) as f64,
                detune.at(i) as f64,
            )
        };
        let constant = params.iter().all(ParamBuffer::is_constant);
        if constant {
            let values = [frequency.at(0), detune.at(0), q.at(0), gain.at(0)];
            if self.cached.as_ref().is_none_or(|(v, _)| v.map(f32::to_bits) != values.map(f32::to_bits)) {
                self.cached = Some((values, BlockFilter::new(coefs_at(0))));
            }
        } else {
            for (i, c) in self.coefs.iter_mut().enumerate() {
                *c = coefs_at(i);
            }
        }

        let out = &mut outputs[0];
        out.set_number_of_channels(channels);
        let block = if constant { self.cached.as_ref().map(|(_, b)| b) } else { None };
        for ((out, input), state) in out.channels_mut().iter_mut().zip(input.channels()).zip(&mut self.state) {
            match block {
                Some(block) => block.run(input, out, state),
                None => {
                    let [mut x1, mut x2, mut y1, mut y2] = *state;
                    for ((o, &x), &[b0, b1, b2, a1, a2]) in out.iter_mut().zip(input.iter()).zip(&self.coefs) {
                        let x = x as f64;
                        let y = b0 * x + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2;
                        (x2, x1, y2, y1) = (x1, x, y1, y);
                        *o = y as f32;
                    }
                    *state = [x1, x2, y1, y2];
                }
            }
            *state = state.map(|v| if v.abs() < DENORMAL_THRESHOLD { 0.0 } else { v });
        }
        true
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Q and gain at the ends of their nominal ranges (±FLT_MAX dB, gain
    /// up to 1541 dB) give finite coefficients, the formulas' limits: a
    /// lowpass with no resonance left passes nothing and keeps a2 = -1; a
    /// peak or shelf cut without bound removes its band.
    #[test]
    fn extreme_q_and_gain_give_the_formulas_limits() {
        use BiquadFilterType::*;
        let big = f32::MAX as f64;
        for type_ in [Lowpass, Highpass, Bandpass, Lowshelf, Highshelf, Peaking, Notch, Allpass] {
            for q in [-big, -1e4, 1e4, big] {
                for gain in [-big, -1e4, 0.0, 1541.27] {
                    let c = coefficients(type_, 48000.0, 1000.0, q, gain, 0.0);
                    assert!(c.iter().all(|v| v.is_finite()), "{type_:?}, Q {q}, gain {gain}: {c:?}");
                }
            }
        }
        let c = coefficients(Lowpass, 48000.0, 1000.0, -big, 0.0, 0.0);
        assert!(c[..4].iter().all(|v| v.abs() < 1e-100) && (c[4] + 1.0).abs() < 1e-12, "{c:?}");
        let c = coefficients(Peaking, 48000.0, 1000.0, 1.0, -big, 0.0);
        assert!(c[0].abs() < 1e-100 && (c[4] + 1.0).abs() < 1e-12, "{c:?}");
    }
    use crate::context::OfflineAudioContext;
    use crate::node::constant_source::{ConstantSourceNode, ConstantSourceOptions};
    use crate::node::AudioScheduledSourceNode;

    const ALL: [BiquadFilterType; 8] = BiquadFilterType::ALL;

    /// Unnormalised `([b0, b1, b2], [a0, a1, a2])` straight from the spec's
    /// formulas, for frequencies strictly inside (0, nyquist) and Q > 0.
    fn spec_ba(t: BiquadFilterType, fs: f64, f0: f64, q: f64, g: f64) -> ([f64; 3], [f64; 3]) {
        let a = 10f64.powf(g / 40.0);
        let w0 = 2.0 * std::f64::consts::PI * f0 / fs;
        let c = w0.cos();
        let alpha_q = w0.sin() / (2.0 * q);
        let alpha_q_db = w0.sin() / (2.0 * 10f64.powf(q / 20.0));
        let s = 1.0;
        let alpha_s = w0.sin() / 2.0 * ((a + 1.0 / a) * (1.0 / s - 1.0) + 2.0).sqrt();
        let sa = 2.0 * alpha_s * a.sqrt();
        use BiquadFilterType::*;
        match t {
            Lowpass => ([(1.0 - c) / 2.0, 1.0 - c, (1.0 - c) / 2.0], [1.0 + alpha_q_db, -2.0 * c, 1.0 - alpha_q_db]),
            Highpass => ([(1.0 + c) / 2.0, -(1.0 + c), (1.0 + c) / 2.0], [1.0 + alpha_q_db, -2.0 * c, 1.0 - alpha_q_db]),
            Bandpass => ([alpha_q, 0.0, -alpha_q], [1.0 + alpha_q, -2.0 * c, 1.0 - alpha_q]),
            Notch => ([1.0, -2.0 * c, 1.0], [1.0 + alpha_q, -2.0 * c, 1.0 - alpha_q]),
            Allpass => ([1.0 - alpha_q, -2.0 * c, 1.0 + alpha_q], [1.0 + alpha_q, -2.0 * c, 1.0 - alpha_q]),
            Peaking => ([1.0 + alpha_q * a, -2.0 * c, 1.0 - alpha_q * a], [1.0 + alpha_q / a, -2.0 * c, 1.0 - alpha_q / a]),
            Lowshelf => (
                [
                    a * ((a + 1.0) - (a - 1.0) * c + sa),
                    2.0 * a * ((a - 1.0) - (a + 1.0) * c),
                    a * ((a + 1.0) - (a - 1.0) * c - sa),
                ],
                [(a + 1.0) + (a - 1.0) * c + sa, -2.0 * ((a - 1.0) + (a + 1.0) * c), (a + 1.0) + (a - 1.0) * c - sa],
            ),
            Highshelf => (
                [
                    a * ((a + 1.0) + (a - 1.0) * c + sa),
                    -2.0 * a * ((a - 1.0) + (a + 1.0) * c),
                    a * ((a + 1.0) + (a - 1.0) * c - sa),
                ],
                [(a + 1.0) - (a - 1.0) * c + sa, 2.0 * ((a - 1.0) - (a + 1.0) * c), (a + 1.0) - (a - 1.0) * c - sa],
            ),
        }
    }

    /// The test's own normalisation of [`spec_ba`], for the reference filter.
    fn spec_normalized(t: BiquadFilterType, fs: f64, f0: f64, q: f64, g: f64) -> [f64; 5] {
        let (b, a) = spec_ba(t, fs, f0, q, g);
        [b[0] / a[0], b[1] / a[0], b[2] / a[0], a[1] / a[0], a[2] / a[0]]
    }

    fn cmul(x: (f64, f64), y: (f64, f64)) -> (f64, f64) {
        (x.0 * y.0 - x.1 * y.1, x.0 * y.1 + x.1 * y.0)
    }

    fn cdiv(x: (f64, f64), y: (f64, f64)) -> (f64, f64) {
        let d = y.0 * y.0 + y.1 * y.1;
        ((x.0 * y.0 + x.1 * y.1) / d, (x.1 * y.0 - x.0 * y.1) / d)
    }

    /// H(e^{jw}) = (b0 + b1 z^-1 + b2 z^-2) / (a0 + a1 z^-1 + a2 z^-2).
    fn response(b: [f64; 3], a: [f64; 3], w: f64) -> (f64, f64) {
        let z1 = (w.cos(), -w.sin());
        let z2 = cmul(z1, z1);
        let poly = |c: [f64; 3]| {
            let t1 = cmul((c[1], 0.0), z1);
            let t2 = cmul((c[2], 0.0), z2);
            (c[0] + t1.0 + t2.0, t1.1 + t2.1)
        };
        cdiv(poly(b), poly(a))
    }

    fn magnitude(c: [f64; 5], w: f64) -> f64 {
        let h = response([c[0], c[1], c[2]], [1.0, c[3], c[4]], w);
        h.0.hypot(h.1)
    }

    fn close(actual: f64, expected: f64, tolerance: f64, what: &str) {
        assert!((actual - expected).abs() <= tolerance, "{what}: got {actual}, expected {expected}");
    }

    #[test]
    fn type_names() {
        let names = ["lowpass", "highpass", "bandpass", "lowshelf", "highshelf", "peaking", "notch", "allpass"];
        for (name, t) in names.iter().zip(ALL) {
            assert_eq!(BiquadFilterType::from_name(name), Some(t));
        }
        assert_eq!(BiquadFilterType::from_name("Lowpass"), None);
        assert_eq!(BiquadFilterType::default(), BiquadFilterType::Lowpass);
    }

    #[test]
    fn magnitude_response_matches_spec_formulas() {
        let fs = 48000.0;
        let pi = std::f64::consts::PI;
        for t in ALL {
            for &(f0, q, g) in &[(350.0, 1.0, 0.0), (1000.0, 3.0, 6.0), (5000.0, 0.5, -9.0), (20000.0, 10.0, 15.0)] {
                let ours = coefficients(t, fs, f0, q, g, 0.0);
                let (b, a) = spec_ba(t, fs, f0, q, g);
                for k in 0..=16 {
                    let w = pi * k as f64 / 16.0;
                    let expected = {
                        let h = response(b, a, w);
                        h.0.hypot(h.1)
                    };
                    close(magnitude(ours, w), expected, 1e-9, &format!("{t:?} f0={f0} q={q} g={g} w={w}"));
                }
            }
        }
    }

    #[test]
    fn magnitude_response_physical_checks() {
        let fs = 44100.0;
        let pi = std::f64::consts::PI;
        let (f0, g) = (2000.0, 12.0);
        let w0 = 2.0 * pi * f0 / fs;
        let a2 = 10f64.powf(g / 20.0);
        let c = |t| coefficients(t, fs, f0, 2.0, g, 0.0);
        use BiquadFilterType::*;
        close(magnitude(c(Lowpass), 0.0), 1.0, 1e-9, "lowpass DC");
        close(magnitude(c(Lowpass), pi), 0.0, 1e-9, "lowpass nyquist");
        close(magnitude(c(Highpass), 0.0), 0.0, 1e-9, "highpass DC");
        close(magnitude(c(Highpass), pi), 1.0, 1e-9, "highpass nyquist");
        close(magnitude(c(Peaking), w0), a2, 1e-9, "peaking at f0");
        close(magnitude(c(Peaking), 0.0), 1.0, 1e-9, "peaking DC");
        close(magnitude(c(Notch), w0), 0.0, 1e-9, "notch at f0");
        close(magnitude(c(Bandpass), w0), 1.0, 1e-9, "bandpass at f0");
        for k in 0..=32 {
            close(magnitude(c(Allpass), pi * k as f64 / 32.0), 1.0, 1e-9, "allpass");
        }
        close(magnitude(c(Lowshelf), 0.0), a2, 1e-9, "lowshelf DC");
        close(magnitude(c(Lowshelf), pi), 1.0, 1e-9, "lowshelf nyquist");
        close(magnitude(c(Highshelf), pi), a2, 1e-9, "highshelf nyquist");
        close(magnitude(c(Highshelf), 0.0), 1.0, 1e-9, "highshelf DC");
    }

    /// A deterministic, broadband test signal: pseudo-random steps, then a
    /// DC step whose response rings across several quanta.
    fn add_source(graph: &mut AudioGraph) -> ConstantSourceNode {
        let source = ConstantSourceNode::new(graph, ConstantSourceOptions { offset: 0.0 }).unwrap();
        let sr = graph.sample_rate() as f64;
        let mut seed = 0x2545_f491_u32;
        let mut offset = graph.param(source.offset());
        let timeline = offset.timeline();
        for n in 0..300 {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let v = (seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0;
            timeline.set_value_at_time(v, (2 * n) as f64 / sr).unwrap();
        }
        timeline.set_value_at_time(0.5, 700.0 / sr).unwrap();
        source.start(graph, 0.0).unwrap();
        source
    }

    const LENGTH: usize = 1280;
    const SR: f32 = 44100.0;

    fn render_source() -> Vec<f32> {
        let mut ctx = OfflineAudioContext::new(1, LENGTH, SR).unwrap();
        let graph = ctx.graph();
        let source = add_source(graph);
        let destination = graph.destination();
        graph.connect(source.id(), 0, destination, 0).unwrap();
        ctx.start_rendering().unwrap().channel_data(0).to_vec()
    }

    fn render_filtered(options: BiquadFilterOptions, automate: impl FnOnce(&mut AudioGraph, &BiquadFilterNode)) -> Vec<f32> {
        let mut ctx = OfflineAudioContext::new(1, LENGTH, SR).unwrap();
        let graph = ctx.graph();
        let source = add_source(graph);
        let filter = BiquadFilterNode::new(graph, options).unwrap();
        automate(graph, &filter);
        let destination = graph.destination();
        graph.connect(source.id(), 0, filter.id(), 0).unwrap();
        graph.connect(filter.id(), 0, destination, 0).unwrap();
        ctx.start_rendering().unwrap().channel_data(0).to_vec()
    }

    /// Direct form I in f64 with coefficients chosen per frame.
    fn reference_filter(input: &[f32], coefs: impl Fn(usize) -> [f64; 5]) -> Vec<f64> {
        let (mut x1, mut x2, mut y1, mut y2) = (0.0, 0.0, 0.0, 0.0);
        input
            .iter()
            .enumerate()
            .map(|(n, &x)| {
                let [b0, b1, b2, a1, a2] = coefs(n);
                let x = x as f64;
                let y = b0 * x + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2;
                (x2, x1, y2, y1) = (x1, x, y1, y);
                y
            })
            .collect()
    }

    fn assert_matches(actual: &[f32], expected: &[f64], tolerance: f64, what: &str) {
        assert_eq!(actual.len(), expected.len());
        for (n, (&a, &e)) in actual.iter().zip(expected).enumerate() {
            assert!((a as f64 - e).abs() <= tolerance, "{what}: frame {n}: got {a}, expected {e}");
        }
    }

    #[test]
    fn render_matches_reference_for_every_type() {
        let input = render_source();
        assert!(input.iter().any(|&x| x != 0.0));
        for t in ALL {
            let options = BiquadFilterOptions { type_: t, frequency: 1500.0, q: 2.0, gain: 6.0, ..Default::default() };
            let output = render_filtered(options, |_, _| {});
            let c = spec_normalized(t, SR as f64, 1500.0, 2.0, 6.0);
            let expected = reference_filter(&input, |_| c);
            assert_matches(&output, &expected, 1e-5, &format!("{t:?}"));
        }
    }

    #[test]
    fn detune_shifts_the_frequency() {
        for t in ALL {
            let detuned = coefficients(t, 48000.0, 1000.0, 1.5, 3.0, 1200.0);
            let plain = coefficients(t, 48000.0, 2000.0, 1.5, 3.0, 0.0);
            for (d, p) in detuned.iter().zip(plain) {
                close(*d, p, 1e-12, &format!("{t:?}"));
            }
        }
        let base = BiquadFilterOptions { type_: BiquadFilterType::Peaking, q: 1.5, gain: 3.0, ..Default::default() };
        let detuned = render_filtered(BiquadFilterOptions { frequency: 1000.0, detune: 1200.0, ..base.clone() }, |_, _| {});
        let plain = render_filtered(BiquadFilterOptions { frequency: 2000.0, ..base }, |_, _| {});
        let plain: Vec<f64> = plain.iter().map(|&x| x as f64).collect();
        assert_matches(&detuned, &plain, 1e-6, "detune 1200 cents");
    }

    #[test]
    fn frequency_automation_is_applied_per_sample() {
        let input = render_source();
        let (v0, v1) = (200.0f32, 8000.0f32);
        let end = 1000.0 / SR as f64;
        let options = BiquadFilterOptions { type_: BiquadFilterType::Lowpass, frequency: v0, q: 3.0, ..Default::default() };
        let output = render_filtered(options, |graph, filter| {
            graph.param(filter.frequency()).timeline().linear_ramp_to_value_at_time(v1, end, 0.0).unwrap();
        });
        // The spec's linear ramp, from (0 s, v0) to (end, v1), evaluated in f64
        // and stored as a float.
        let frequency_at = |n: usize| {
            let t = n as f64 / SR as f64;
            if t >= end {
                v1
            } else {
                (v0 as f64 + (v1 as f64 - v0 as f64) * (t / end)) as f32
            }
        };
        let coefs = |n: usize| spec_normalized(BiquadFilterType::Lowpass, SR as f64, frequency_at(n) as f64, 3.0, 0.0);
        let expected = reference_filter(&input, coefs);
        assert_matches(&output, &expected, 1e-5, "ramped lowpass");
        // Coefficients held over each quantum give a clearly different result.
        let per_quantum = reference_filter(&input, |n| coefs(n - n % RENDER_QUANTUM_SIZE));
        let worst = output.iter().zip(&per_quantum).map(|(&a, &e)| (a as f64 - e).abs()).fold(0.0, f64::max);
        assert!(worst > 1e-3, "per-quantum coefficients differ by only {worst}");
    }

    #[test]
    fn degenerate_frequencies_and_q() {
        use BiquadFilterType::*;
        let fs = 48000.0;
        let nyquist = fs / 2.0;
        let g = 6.0;
        let a2 = 10f64.powf(g / 20.0);
        let gain = |k: f64| [k, 0.0, 0.0, 0.0, 0.0];
        let check = |t, f: f64, q: f64, expected: [f64; 5]| {
            let c = coefficients(t, fs, f, q, g, 0.0);
            for (x, e) in c.iter().zip(expected) {
                close(*x, e, 1e-12, &format!("{t:?} f={f} q={q}"));
            }
        };
        check(Lowpass, nyquist, 1.0, gain(1.0));
        check(Lowpass, 0.0, 1.0, gain(0.0));
        check(Highpass, 0.0, 1.0, gain(1.0));
        check(Highpass, nyquist, 1.0, gain(0.0));
        check(Lowshelf, nyquist, 1.0, gain(a2));
        check(Lowshelf, 0.0, 1.0, gain(1.0));
        check(Highshelf, 0.0, 1.0, gain(a2));
        check(Highshelf, nyquist, 1.0, gain(1.0));
        for f in [0.0, nyquist] {
            check(Peaking, f, 1.0, gain(1.0));
            check(Notch, f, 1.0, gain(1.0));
            check(Allpass, f, 1.0, gain(1.0));
            check(Bandpass, f, 1.0, gain(0.0));
        }
        for q in [0.0, -1.0] {
            check(Peaking, 1000.0, q, gain(a2));
            check(Allpass, 1000.0, q, gain(-1.0));
            check(Notch, 1000.0, q, gain(0.0));
            check(Bandpass, 1000.0, q, gain(1.0));
        }
        // Above Nyquist (directly or through detune) clamps to Nyquist.
        check(Lowpass, 3.0 * nyquist, 1.0, gain(1.0));
        assert_eq!(coefficients(Highpass, fs, 1000.0, 1.0, 0.0, 153600.0), gain(0.0));
        assert_eq!(coefficients(Lowpass, fs, 0.0, 1.0, 0.0, f64::INFINITY), gain(0.0));
    }

    #[test]
    fn degenerate_lowpass_renders_its_input() {
        let input = render_source();
        let options = BiquadFilterOptions { frequency: SR / 2.0, ..Default::default() };
        assert_eq!(render_filtered(options, |_, _| {}), input);
        let options = BiquadFilterOptions { frequency: 0.0, ..Default::default() };
        assert!(render_filtered(options, |_, _| {}).iter().all(|&x| x == 0.0));
    }

    #[test]
    fn params_and_defaults() {
        let mut graph = AudioGraph::new(48000.0, 2).unwrap();
        let filter = BiquadFilterNode::new(&mut graph, BiquadFilterOptions::default()).unwrap();
        let expect = |graph: &mut AudioGraph, id: AudioParamId, name: &str, default: f32, min: f32, max: f32| {
            assert_eq!(graph.param_by_name(filter.id(), name).unwrap(), id);
            let d = graph.param(id).descriptor().clone();
            assert_eq!((d.default_value, d.automation_rate), (default, AutomationRate::ARate), "{name}");
            assert!((d.min_value - min).abs() <= min.abs() * 1e-5, "{name} min {}", d.min_value);
            assert!((d.max_value - max).abs() <= max.abs() * 1e-5, "{name} max {}", d.max_value);
        };
        expect(&mut graph, filter.frequency(), "frequency", 350.0, 0.0, 24000.0);
        expect(&mut graph, filter.detune(), "detune", 0.0, -153600.0, 153600.0);
        expect(&mut graph, filter.q(), "Q", 1.0, -f32::MAX, f32::MAX);
        expect(&mut graph, filter.gain(), "gain", 0.0, -f32::MAX, 1541.27);
        let bad = BiquadFilterOptions { q: f32::NAN, ..Default::default() };
        assert!(matches!(BiquadFilterNode::new(&mut graph, bad), Err(NodeError::NotFinite { name: "Q", .. })));
    }

    #[test]
    fn state_follows_the_input_channel_count() {
        let mut renderer = BiquadFilterRenderer::new(BiquadFilterType::Lowpass);
        let mut params: Vec<ParamBuffer> = vec![ParamBuffer::default(); 4];
        for (p, v) in params.iter_mut().zip([1000.0, 0.0, 1.0, 0.0]) {
            p.set_constant(v);
        }
        let scope = |quantum: u64| RenderScope { current_frame: quantum * RENDER_QUANTUM_SIZE as u64, sample_rate: 48000.0 };
        let mut outputs = [AudioBlock::new()];
        let mut input = AudioBlock::new();
        let run = |renderer: &mut BiquadFilterRenderer, input: &AudioBlock, outputs: &mut [AudioBlock], q| {
            renderer.process(std::slice::from_ref(input), outputs, &params, &scope(q));
        };
        input.set_number_of_channels(2);
        for c in input.channels_mut() {
            c.fill(1.0);
        }
        run(&mut renderer, &input, &mut outputs, 0);
        assert_eq!(outputs[0].number_of_channels(), 2);
        let stereo_tail = outputs[0].channel(0)[127];
        // Mono: channel 0 carries on from its memory.
        input.set_number_of_channels(1);
        run(&mut renderer, &input, &mut outputs, 1);
        assert_eq!(outputs[0].number_of_channels(), 1);
        assert!((outputs[0].channel(0)[0] - stereo_tail).abs() < 0.05, "channel 0 restarted");
        // Channel 1 comes back from rest, as a fresh filter would.
        input.set_number_of_channels(2);
        run(&mut renderer, &input, &mut outputs, 2);
        let mut fresh = BiquadFilterRenderer::new(BiquadFilterType::Lowpass);
        let mut fresh_out = [AudioBlock::new()];
        input.set_number_of_channels(1);
        run(&mut fresh, &input, &mut fresh_out, 0);
        assert_eq!(outputs[0].channel(1), fresh_out[0].channel(0));
        assert_ne!(outputs[0].channel(0), fresh_out[0].channel(0));
    }
}
