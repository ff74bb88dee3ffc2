//! AudioBufferSourceNode: plays an in-memory AudioBuffer, following the
//! spec's "Playback of AudioBuffer Contents" algorithm.
//!
//! The playhead is kept in buffer sample frames rather than in buffer
//! seconds: positions that land on whole frames then stay exact, which is
//! what lets the common case (rate 1, buffer at the context's rate) copy
//! samples instead of interpolating.

use super::{param_state, AudioNode, AudioProcessor, AudioScheduledSourceNode, RenderScope, Schedule, ScheduleCall};
use crate::block::{AudioBlock, MAX_CHANNELS};
use crate::buffer::AudioBuffer;
use crate::graph::{AudioGraph, AudioParamId, NodeDescription, NodeError, NodeId};
use crate::mixing::ChannelConfig;
use crate::param::{AutomationRate, ParamBuffer, MOST_POSITIVE_SINGLE_FLOAT};
use std::any::Any;
use std::ops::Range;
use std::sync::Arc;

/// The spec's AudioBufferSourceOptions.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioBufferSourceOptions {
    pub buffer: Option<Arc<AudioBuffer>>,
    pub detune: f32,
    pub loop_: bool,
    pub loop_start: f64,
    pub loop_end: f64,
    pub playback_rate: f32,
}

impl Default for AudioBufferSourceOptions {
    fn default() -> Self {
        Self { buffer: None, detune: 0.0, loop_: false, loop_start: 0.0, loop_end: 0.0, playback_rate: 1.0 }
    }
}

pub struct AudioBufferSourceNode {
    id: NodeId,
}

impl AudioNode for AudioBufferSourceNode {
    fn id(&self) -> NodeId {
        self.id
    }
}

impl AudioScheduledSourceNode for AudioBufferSourceNode {}

impl AudioBufferSourceNode {
    pub fn new(graph: &mut AudioGraph, options: AudioBufferSourceOptions) -> Result<Self, NodeError> {
        let max = MOST_POSITIVE_SINGLE_FLOAT as f64;
        NodeError::check_range("playbackRate", options.playback_rate as f64, -max, max)?;
        NodeError::check_range("detune", options.detune as f64, -max, max)?;
        NodeError::check_range("loopStart", options.loop_start, f64::MIN, f64::MAX)?;
        NodeError::check_range("loopEnd", options.loop_end, f64::MIN, f64::MAX)?;
        if let Some(buffer) = &options.buffer {
            // The output block can carry no more channels than this.
            if buffer.number_of_channels() > MAX_CHANNELS {
                return Err(NodeError::ChannelCount(buffer.number_of_channels()));
            }
        }
        let mut playback_rate = param_state(
            "playbackRate",
            1.0,
            -MOST_POSITIVE_SINGLE_FLOAT,
            MOST_POSITIVE_SINGLE_FLOAT,
            AutomationRate::KRate,
            options.playback_rate,
        );
        let mut detune = param_state(
            "detune",
            0.0,
            -MOST_POSITIVE_SINGLE_FLOAT,
            MOST_POSITIVE_SINGLE_FLOAT,
            AutomationRate::KRate,
            options.detune,
        );
        // The spec fixes both at k-rate (InvalidStateError on change).
        playback_rate.rate_is_fixed = true;
        detune.rate_is_fixed = true;
        let id = graph.add_node(NodeDescription {
            type_name: "AudioBufferSourceNode",
            number_of_inputs: 0,
            number_of_outputs: 1,
            channel_config: ChannelConfig::default(),
            params: vec![playback_rate, detune],
            processor: Box::new(BufferSourceRenderer::new(&options)),
            breaks_cycles: false,
        });
        Ok(Self { id })
    }

    /// The spec's `start(when, offset, duration)`; `offset` defaults to 0 and
    /// `duration` to the rest of the buffer (forever when looping).
    pub fn start_with(
        &self,
        graph: &mut AudioGraph,
        when: f64,
        offset: Option<f64>,
        duration: Option<f64>,
    ) -> Result<(), NodeError> {
        graph.schedule(self.id, ScheduleCall::Start { when, offset, duration })
    }

    pub fn playback_rate(&self) -> AudioParamId {
        AudioParamId { node: self.id, index: 0 }
    }

    pub fn detune(&self) -> AudioParamId {
        AudioParamId { node: self.id, index: 1 }
    }
}

/// What the control side fixed before rendering, in seconds as given.
#[derive(Clone, Copy, Debug)]
struct Playback {
    loop_: bool,
    loop_start: f64,
    loop_end: f64,
    offset: f64,
    duration: f64,
}

impl Playback {
    /// The spec's actualLoopStart and actualLoopEnd, in buffer frames.
    fn loop_region(&self, length: f64, buffer_rate: f64) -> (f64, f64) {
        if self.loop_ && self.loop_start >= 0.0 && self.loop_end > 0.0 && self.loop_start < self.loop_end {
            let start = snap(self.loop_start * buffer_rate);
            let end = snap(self.loop_end * buffer_rate).min(length);
            // A loopStart past the buffer's end leaves an empty or inverted
            // region, on which the spec's wrapping loops never terminate.
            if start < end {
                return (start, end);
            }
        }
        (0.0, length)
    }
}

/// The spec's playback state variables, positions in buffer frames.
#[derive(Clone, Copy, Debug, Default)]
struct PlayState {
    started: bool,
    entered_loop: bool,
    /// The offset actually used once clamped, which the loop-entry test reads.
    offset: f64,
    position: f64,
    elapsed: f64,
    /// Ended for good: past the buffer's end without looping, or `duration` done.
    done: bool,
}

struct BufferSourceRenderer {
    schedule: Schedule,
    buffer: Option<Arc<AudioBuffer>>,
    playback: Playback,
    state: PlayState,
}

impl BufferSourceRenderer {
    fn new(options: &AudioBufferSourceOptions) -> Self {
        Self {
            schedule: Schedule::default(),
            buffer: options.buffer.clone(),
            playback: Playback {
                loop_: options.loop_,
                loop_start: options.loop_start,
                loop_end: options.loop_end,
                offset: 0.0,
                duration: f64::INFINITY,
            },
            state: PlayState::default(),
        }
    }
}

/// Rounds `x` to a whole frame when it is within floating-point noise of
/// one: times such as `n / sampleRate` rarely multiply back to exactly `n`,
/// and a 1e-12 frame residue would cost the copying fast path (and an
/// extra frame at a `duration` boundary) for no audible difference.
fn snap(x: f64) -> f64 {
    let r = x.round();
    if (x - r).abs() < 1e-6 {
        r
    } else {
        x
    }
}

/// Brings `t` into `[start, end)` as the spec's `while` loops do, without
/// iterating when a huge rate has carried it many loop lengths away.
fn wrap(t: f64, start: f64, end: f64) -> f64 {
    let length = end - start;
    let mut t = t;
    if t >= end {
        t -= length;
        if t >= end {
            t = start + (t - start).rem_euclid(length);
        }
    } else if t < start {
        t += length;
        if t < start {
            t = start + (t - start).rem_euclid(length);
        }
    }
    // rem_euclid can round up to exactly `length`.
    if t >= end {
        start
    } else {
        t
    }
}

impl PlayState {
    /// Renders the frames of `range` into `out` (already silent, with the
    /// buffer's channel count) and says whether any of them was playing.
    #[allow(clippy::too_many_arguments)]
    fn render(
        &mut self,
        p: &Playback,
        buffer: &AudioBuffer,
        out: &mut AudioBlock,
        range: Range<usize>,
        increment: f64,
        first_frame: u64,
        sample_rate: f64,
        when: f64,
    ) -> bool {
        let length = buffer.length() as f64;
        let buffer_rate = buffer.sample_rate() as f64;
        let (loop_start, loop_end) = p.loop_region(length, buffer_rate);
        let duration = snap(p.duration * buffer_rate);
        let mut active = false;
        let mut i = range.start;
        while i < range.end {
            if !self.started {
                let mut offset = snap(p.offset * buffer_rate).clamp(0.0, length);
                if p.loop_ && increment >= 0.0 && offset >= loop_end {
                    offset = loop_end;
                }
                if p.loop_ && increment < 0.0 && offset < loop_start {
                    offset = loop_start;
                }
                // The spec's playhead sits at `offset` at time `when` exactly;
                // the first frame comes up to one frame later.
                let late = snap((first_frame + i as u64) as f64 - when * sample_rate);
                self.offset = offset;
                self.position = offset + late * increment;
                self.elapsed = late * increment;
                self.started = true;
            }
            if self.elapsed >= duration {
                self.done = true;
                break;
            }
            if p.loop_ {
                if !self.entered_loop
                    && ((self.offset < loop_end && self.position >= loop_start)
                        || (self.offset >= loop_end && self.position < loop_end))
                {
                    self.entered_loop = true;
                }
                if self.entered_loop {
                    self.position = wrap(self.position, loop_start, loop_end);
                }
            }
            let position = self.position;
            if !(position >= 0.0 && position < length) {
                if !p.loop_ {
                    self.done = true;
                    break;
                }
                // A loop not (yet) entered may leave the playhead outside the
                // buffer: silent, but still playing.
                active = true;
                self.position += increment;
                self.elapsed += increment;
                i += 1;
                continue;
            }
            active = true;
            if increment == 1.0 && position.fract() == 0.0 {
                // Copy up to the next point where the playhead jumps or stops.
                let wraps = p.loop_ && (self.entered_loop || self.offset < loop_end);
                let limit = if wraps { loop_end.ceil() } else { length };
                let n = (limit - position).min((duration - self.elapsed).ceil()).min((range.end - i) as f64) as usize;
                let from = position as usize;
                for (c, channel) in out.channels_mut().iter_mut().enumerate() {
                    channel[i..i + n].copy_from_slice(&buffer.channel_data(c)[from..from + n]);
                }
                self.position += n as f64;
                self.elapsed += n as f64;
                i += n;
                continue;
            }
            let floor = position.floor();
            let fraction = position - floor;
            let k0 = floor as usize;
            let next = floor + 1.0;
            // Past the loop's last frame the signal continues at loopStart;
            // past the buffer's last frame (not looping) it is silence.
            let k1 = if self.entered_loop && next >= loop_end {
                Some((loop_start.ceil() as usize).min(buffer.length() - 1))
            } else if next < length {
                Some(next as usize)
            } else {
                None
            };
            for (c, channel) in out.channels_mut().iter_mut().enumerate() {
                let data = buffer.channel_data(c);
                let s0 = data[k0] as f64;
                channel[i] = if fraction == 0.0 {
                    s0 as f32
                } else {
                    let s1 = k1.map_or(0.0, |k| data[k] as f64);
                    (s0 + (s1 - s0) * fraction) as f32
                };
            }
            self.position += increment;
            self.elapsed += increment;
            i += 1;
        }
        active
    }
}

impl AudioProcessor for BufferSourceRenderer {
    fn schedule(&mut self, call: &ScheduleCall) {
        if let ScheduleCall::Start { offset, duration, .. } = *call {
            self.playback.offset = offset.unwrap_or(0.0);
            self.playback.duration = duration.unwrap_or(f64::INFINITY);
        }
        self.schedule.apply(call);
    }

    fn process(&mut self, _: &[AudioBlock], outputs: &mut [AudioBlock], params: &[ParamBuffer], scope: &RenderScope) -> bool {
        let (range, schedule_done) = self.schedule.advance(scope.current_frame, scope.sample_rate);
        let out = &mut outputs[0];
        let Some(buffer) = self.buffer.as_deref() else {
            out.make_silent(1);
            // The spec forces stop = currentTime with no buffer: once the
            // start time is reached, the source has ended.
            if !range.is_empty() {
                self.state.done = true;
            }
            return !(schedule_done || self.state.done);
        };
        if range.is_empty() || self.state.done {
            out.make_silent(1);
            return !(schedule_done || self.state.done);
        }
        // Both parameters are k-rate: one value per quantum.
        let rate = params[0].at(0) as f64 * (params[1].at(0) as f64 / 1200.0).exp2();
        // Keeps the playhead finite (and the loop wrapping bounded) whatever
        // the detune, within the parameters' own nominal range.
        let max = MOST_POSITIVE_SINGLE_FLOAT as f64;
        let rate = if rate.is_nan() { 0.0 } else { rate.clamp(-max, max) };
        let sample_rate = scope.sample_rate as f64;
        let increment = rate * buffer.sample_rate() as f64 / sample_rate;
        let when = self.schedule.start_time().unwrap_or(0.0);
        out.make_silent(buffer.number_of_channels());
        let active = self.state.render(&self.playback, buffer, out, range, increment, scope.current_frame, sample_rate, when);
        if !active {
            out.make_silent(1);
        }
        !(schedule_done || self.state.done)
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::RENDER_QUANTUM_SIZE;
    use crate::context::OfflineAudioContext;
    use crate::node::gain::{GainNode, GainOptions};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const SR: f32 = 48000.0;

    fn signal(length: usize) -> Vec<f32> {
        (0..length).map(|k| ((k as f64 * 0.37).sin() * 0.8 + (k as f64 * 0.011).cos() * 0.1) as f32).collect()
    }

    /// Linear interpolation of `data` at `x`, silence past the last frame.
    fn lerp(data: &[f32], x: f64) -> f64 {
        let k = x.floor() as usize;
        let f = x - x.floor();
        let s0 = data[k] as f64;
        let s1 = data.get(k + 1).map_or(0.0, |&s| s as f64);
        s0 + (s1 - s0) * f
    }

    /// Linear interpolation inside a loop `[ls, le)` of whole frames, where
    /// frame `le` is frame `ls` again.
    fn loop_lerp(data: &[f32], x: f64, ls: usize, le: usize) -> f64 {
        let k = x.floor() as usize;
        let f = x - x.floor();
        let next = if k + 1 >= le { ls } else { k + 1 };
        let s0 = data[k] as f64;
        s0 + (data[next] as f64 - s0) * f
    }

    fn assert_close(actual: &[f32], expected: &[f64], what: &str) {
        assert_eq!(actual.len(), expected.len(), "{what}: length");
        for (n, (&a, &e)) in actual.iter().zip(expected).enumerate() {
            assert!((a as f64 - e).abs() < 1e-6, "{what}: frame {n}: got {a}, expected {e}");
        }
    }

    /// Renders `length` frames of one source into a mono context.
    fn render(
        length: usize,
        sample_rate: f32,
        options: AudioBufferSourceOptions,
        setup: impl FnOnce(&mut AudioGraph, &AudioBufferSourceNode) -> Result<(), Box<dyn std::error::Error>>,
    ) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
        let mut ctx = OfflineAudioContext::new(1, length, sample_rate)?;
        let graph = ctx.graph();
        let node = AudioBufferSourceNode::new(graph, options)?;
        let destination = graph.destination();
        graph.connect(node.id(), 0, destination, 0)?;
        setup(graph, &node)?;
        let rendered = ctx.start_rendering()?;
        Ok(rendered.channel_data(0).to_vec())
    }

    fn mono(data: &[f32], sample_rate: f32) -> Option<Arc<AudioBuffer>> {
        Some(Arc::new(AudioBuffer::new(sample_rate, vec![data.to_vec()]).unwrap()))
    }

    fn with_buffer(data: &[f32]) -> AudioBufferSourceOptions {
        AudioBufferSourceOptions { buffer: mono(data, SR), ..Default::default() }
    }

    #[test]
    fn plays_the_buffer_then_silence() -> TestResult {
        let data = signal(300);
        let out = render(512, SR, with_buffer(&data), |g, n| Ok(n.start(g, 0.0)?))?;
        let expected: Vec<f64> = (0..512).map(|n| data.get(n).map_or(0.0, |&s| s as f64)).collect();
        assert_close(&out, &expected, "plain");
        assert_eq!(&out[..300], &data[..], "rate 1 copies samples exactly");
        Ok(())
    }

    #[test]
    fn sub_sample_start_interpolates() -> TestResult {
        let data = signal(200);
        let when = 10.25 / SR as f64;
        let out = render(384, SR, with_buffer(&data), |g, n| Ok(n.start(g, when)?))?;
        let expected: Vec<f64> = (0..384)
            .map(|n| {
                let x = n as f64 - 10.25;
                if !(0.0..200.0).contains(&x) {
                    0.0
                } else {
                    lerp(&data, x)
                }
            })
            .collect();
        assert_close(&out, &expected, "start at 10.25 frames");
        assert_eq!(out[10], 0.0);
        assert!(out[210] != 0.0, "the last partial frame interpolates towards silence");
        Ok(())
    }

    #[test]
    fn offset_and_duration() -> TestResult {
        let data = signal(400);
        let sr = SR as f64;
        let out = render(512, SR, with_buffer(&data), |g, n| Ok(n.start_with(g, 0.0, Some(100.0 / sr), None)?))?;
        let expected: Vec<f64> = (0..512).map(|n| data.get(n + 100).map_or(0.0, |&s| s as f64)).collect();
        assert_close(&out, &expected, "offset");

        let out =
            render(512, SR, with_buffer(&data), |g, n| Ok(n.start_with(g, 20.0 / sr, Some(100.0 / sr), Some(50.0 / sr))?))?;
        let expected: Vec<f64> = (0..512).map(|n| if (20..70).contains(&n) { data[n - 20 + 100] as f64 } else { 0.0 }).collect();
        assert_close(&out, &expected, "duration");
        Ok(())
    }

    #[test]
    fn duration_counts_buffer_time_at_half_rate() -> TestResult {
        let data = signal(400);
        let options = AudioBufferSourceOptions { playback_rate: 0.5, ..with_buffer(&data) };
        let out = render(256, SR, options, |g, n| Ok(n.start_with(g, 0.0, None, Some(40.0 / SR as f64))?))?;
        // 40 buffer frames at half speed last 80 output frames.
        let expected: Vec<f64> = (0..256).map(|n| if n < 80 { lerp(&data, n as f64 * 0.5) } else { 0.0 }).collect();
        assert_close(&out, &expected, "duration at rate 0.5");
        Ok(())
    }

    #[test]
    fn stop_silences_from_the_next_frame() -> TestResult {
        let data = signal(400);
        let out = render(256, SR, with_buffer(&data), |g, n| {
            n.start(g, 0.0)?;
            Ok(n.stop(g, 100.5 / SR as f64)?)
        })?;
        let expected: Vec<f64> = (0..256).map(|n| if n <= 100 { data[n] as f64 } else { 0.0 }).collect();
        assert_close(&out, &expected, "stop");
        Ok(())
    }

    #[test]
    fn loops_between_loop_points() -> TestResult {
        let data = signal(100);
        let sr = SR as f64;
        let options = AudioBufferSourceOptions { loop_: true, loop_start: 20.0 / sr, loop_end: 60.0 / sr, ..with_buffer(&data) };
        let out = render(500, SR, options, |g, n| Ok(n.start(g, 0.0)?))?;
        let expected: Vec<f64> = (0..500).map(|n| data[if n < 60 { n } else { 20 + (n - 20) % 40 }] as f64).collect();
        assert_close(&out, &expected, "loop 20..60");
        Ok(())
    }

    #[test]
    fn loop_end_zero_loops_the_whole_buffer() -> TestResult {
        let data = signal(100);
        let options = AudioBufferSourceOptions { loop_: true, ..with_buffer(&data) };
        let out = render(450, SR, options, |g, n| Ok(n.start(g, 0.0)?))?;
        let expected: Vec<f64> = (0..450).map(|n| data[n % 100] as f64).collect();
        assert_close(&out, &expected, "whole-buffer loop");
        Ok(())
    }

    #[test]
    fn loop_end_past_the_buffer_is_clamped() -> TestResult {
        let data = signal(100);
        let sr = SR as f64;
        let options = AudioBufferSourceOptions { loop_: true, loop_start: 20.0 / sr, loop_end: 10.0, ..with_buffer(&data) };
        let out = render(450, SR, options, |g, n| Ok(n.start(g, 0.0)?))?;
        let expected: Vec<f64> = (0..450).map(|n| data[if n < 100 { n } else { 20 + (n - 20) % 80 }] as f64).collect();
        assert_close(&out, &expected, "loopEnd beyond duration");
        Ok(())
    }

    #[test]
    fn half_and_double_rate() -> TestResult {
        let data = signal(100);
        let options = AudioBufferSourceOptions { playback_rate: 0.5, ..with_buffer(&data) };
        let out = render(256, SR, options, |g, n| Ok(n.start(g, 0.0)?))?;
        let expected: Vec<f64> = (0..256).map(|n| if n < 200 { lerp(&data, n as f64 * 0.5) } else { 0.0 }).collect();
        assert_close(&out, &expected, "rate 0.5");

        let options = AudioBufferSourceOptions { playback_rate: 2.0, ..with_buffer(&data) };
        let out = render(256, SR, options, |g, n| Ok(n.start(g, 0.0)?))?;
        let expected: Vec<f64> = (0..256).map(|n| data.get(2 * n).map_or(0.0, |&s| s as f64)).collect();
        assert_close(&out, &expected, "rate 2");
        Ok(())
    }

    #[test]
    fn negative_rate_loops_backwards() -> TestResult {
        let data = signal(80);
        let sr = SR as f64;
        let options = AudioBufferSourceOptions {
            loop_: true,
            loop_start: 10.0 / sr,
            loop_end: 50.0 / sr,
            playback_rate: -1.5,
            ..with_buffer(&data)
        };
        let out = render(400, SR, options, |g, n| Ok(n.start_with(g, 0.0, Some(30.0 / sr), None)?))?;
        let expected: Vec<f64> = (0..400)
            .map(|n| {
                let x = 10.0 + (30.0 - 1.5 * n as f64 - 10.0).rem_euclid(40.0);
                loop_lerp(&data, x, 10, 50)
            })
            .collect();
        assert_close(&out, &expected, "rate -1.5 in loop 10..50");
        Ok(())
    }

    #[test]
    fn fractional_loop_wraps_the_interpolation_neighbour() -> TestResult {
        let data = signal(64);
        let options = AudioBufferSourceOptions { loop_: true, playback_rate: 0.75, ..with_buffer(&data) };
        let out = render(300, SR, options, |g, n| Ok(n.start(g, 0.0)?))?;
        let expected: Vec<f64> = (0..300).map(|n| loop_lerp(&data, (0.75 * n as f64) % 64.0, 0, 64)).collect();
        assert_close(&out, &expected, "rate 0.75 whole-buffer loop");
        Ok(())
    }

    #[test]
    fn detune_1200_is_double_rate() -> TestResult {
        let data = signal(300);
        let detuned = AudioBufferSourceOptions { detune: 1200.0, ..with_buffer(&data) };
        let a = render(256, SR, detuned, |g, n| Ok(n.start(g, 0.0)?))?;
        let doubled = AudioBufferSourceOptions { playback_rate: 2.0, ..with_buffer(&data) };
        let b = render(256, SR, doubled, |g, n| Ok(n.start(g, 0.0)?))?;
        assert_eq!(a, b);
        let expected: Vec<f64> = (0..256).map(|n| data.get(2 * n).map_or(0.0, |&s| s as f64)).collect();
        assert_close(&a, &expected, "detune 1200");
        Ok(())
    }

    #[test]
    fn buffer_at_half_the_context_rate_plays_at_half_speed() -> TestResult {
        let data = signal(100);
        let options = AudioBufferSourceOptions { buffer: mono(&data, 24000.0), ..Default::default() };
        let out = render(256, 48000.0, options, |g, n| Ok(n.start(g, 0.0)?))?;
        let expected: Vec<f64> = (0..256).map(|n| if n < 200 { lerp(&data, n as f64 * 0.5) } else { 0.0 }).collect();
        assert_close(&out, &expected, "24 kHz buffer in a 48 kHz context");
        Ok(())
    }

    #[test]
    fn playback_rate_automation_is_k_rate() -> TestResult {
        let data = signal(1000);
        let t = 200.0 / SR as f64;
        let out = render(512, SR, with_buffer(&data), |g, n| {
            g.param(n.playback_rate()).timeline().set_value_at_time(2.0, t)?;
            Ok(n.start(g, 0.0)?)
        })?;
        // The event at frame 200 takes effect at the next quantum, frame 256.
        let expected: Vec<f64> = (0..512)
            .map(|n| {
                let x = if n < 256 { n } else { 256 + 2 * (n - 256) };
                data.get(x).map_or(0.0, |&s| s as f64)
            })
            .collect();
        assert_close(&out, &expected, "k-rate playbackRate");
        Ok(())
    }

    #[test]
    fn stereo_source_feeds_stereo_until_it_ends() -> TestResult {
        let mut ctx = OfflineAudioContext::new(1, 512, SR)?;
        let graph = ctx.graph();
        let buffer = AudioBuffer::new(SR, vec![vec![1.0; 200], vec![3.0; 200]])?;
        let source =
            AudioBufferSourceNode::new(graph, AudioBufferSourceOptions { buffer: Some(Arc::new(buffer)), ..Default::default() })?;
        let gain = GainNode::new(graph, GainOptions::default())?;
        let destination = graph.destination();
        graph.connect(source.id(), 0, gain.id(), 0)?;
        graph.connect(gain.id(), 0, destination, 0)?;
        source.start(graph, 0.0)?;
        let out = ctx.start_rendering()?;
        // A stereo signal down-mixed to mono: (L + R) / 2.
        for (n, &s) in out.channel_data(0).iter().enumerate() {
            let expected = if n < 200 { 2.0 } else { 0.0 };
            assert_eq!(s, expected, "frame {n}");
        }
        Ok(())
    }

    #[test]
    fn output_channel_count_follows_playing_state() {
        let buffer = AudioBuffer::new(SR, vec![vec![0.5; 200], vec![-0.5; 200]]).unwrap();
        let options = AudioBufferSourceOptions { buffer: Some(Arc::new(buffer)), ..Default::default() };
        let mut renderer = BufferSourceRenderer::new(&options);
        renderer.schedule(&ScheduleCall::Start { when: 130.0 / SR as f64, offset: None, duration: None });
        let mut outputs = vec![AudioBlock::new()];
        let mut params = vec![ParamBuffer::default(), ParamBuffer::default()];
        params[0].set_constant(1.0);
        params[1].set_constant(0.0);
        let mut run = |quantum: u64| {
            let scope = RenderScope { current_frame: quantum * RENDER_QUANTUM_SIZE as u64, sample_rate: SR };
            let alive = renderer.process(&[], &mut outputs, &params, &scope);
            (alive, outputs[0].number_of_channels(), outputs[0].channel(0)[0], outputs[0].channel(0)[2])
        };
        assert_eq!(run(0), (true, 1, 0.0, 0.0), "before start");
        assert_eq!(run(1), (true, 2, 0.0, 0.5), "starts at frame 130");
        assert_eq!(run(2), (false, 2, 0.5, 0.5), "frames 256..330 play, then the end");
        assert_eq!(run(3), (false, 1, 0.0, 0.0), "ended");
    }

    #[test]
    fn start_validation() -> TestResult {
        let mut ctx = OfflineAudioContext::new(1, 128, SR)?;
        let graph = ctx.graph();
        let node = AudioBufferSourceNode::new(graph, with_buffer(&signal(10)))?;
        assert!(matches!(node.start_with(graph, 0.0, Some(-1.0), None), Err(NodeError::Range { .. })));
        assert!(matches!(node.start_with(graph, 0.0, None, Some(-0.5)), Err(NodeError::Range { .. })));
        assert!(node.start_with(graph, 0.0, None, Some(f64::NAN)).is_err());
        assert!(node.start_with(graph, 0.0, Some(f64::INFINITY), None).is_err());
        node.start_with(graph, 0.0, Some(0.0), Some(1.0))?;
        assert!(matches!(node.start(graph, 0.0), Err(NodeError::InvalidState { .. })));
        assert!(matches!(node.start_with(graph, 0.0, None, None), Err(NodeError::InvalidState { .. })));
        Ok(())
    }

    #[test]
    fn no_buffer_is_silent() -> TestResult {
        let out = render(256, SR, AudioBufferSourceOptions::default(), |g, n| Ok(n.start(g, 0.0)?))?;
        assert!(out.iter().all(|&s| s == 0.0));
        Ok(())
    }
}
