//! The four graphs of the audio-engine benchmarks, built the same way in
//! byob and in the `web-audio-api` crate: offline (`audio_engine`) and live
//! (`live_context`).

use byob_audio as byob;
use byob_audio::{AudioNode as _, AudioScheduledSourceNode as _};
use std::sync::Arc;
use web_audio_api::context::BaseAudioContext;
use web_audio_api::node::{AudioNode as _, AudioScheduledSourceNode as _};

pub const SAMPLE_RATE: f32 = 48000.0;
/// Seconds of audio the graphs' buffers hold and their ramps span.
pub const SECONDS: f64 = 10.0;
pub const FRAMES: usize = (SAMPLE_RATE as f64 * SECONDS) as usize;

/// What each graph is, for the tables.
pub const NAMES: [&str; 4] = [
    "(a) 100 sine oscillators -> gain -> destination",
    "(b) white noise -> 8 chained biquads (all types)",
    "(c) 50 looping buffer sources, playbackRate ramp",
    "(d) stereo feedback delay with lowpass in the loop",
];

const FILTERS: [(byob::BiquadFilterType, web_audio_api::node::BiquadFilterType, f32); 8] = {
    use byob::BiquadFilterType as B;
    use web_audio_api::node::BiquadFilterType as W;
    [
        (B::Lowpass, W::Lowpass, 8000.0),
        (B::Highpass, W::Highpass, 80.0),
        (B::Bandpass, W::Bandpass, 1000.0),
        (B::Lowshelf, W::Lowshelf, 200.0),
        (B::Highshelf, W::Highshelf, 5000.0),
        (B::Peaking, W::Peaking, 2500.0),
        (B::Notch, W::Notch, 60.0),
        (B::Allpass, W::Allpass, 700.0),
    ]
};

/// Builds graph `case` (0..4) of the audio-engine benchmark in byob; what
/// it plays goes into `destination` (the graph's, or a node before it).
pub fn byob_graph(g: &mut byob::AudioGraph, case: usize, destination: byob::NodeId) {
    match case {
        0 => {
            for i in 0..100 {
                let osc = byob::OscillatorNode::new(g, byob::OscillatorOptions { frequency: 110.0 + 7.0 * i as f32, ..Default::default() }).unwrap();
                let gain = byob::GainNode::new(g, byob::GainOptions { gain: 0.01, ..Default::default() }).unwrap();
                osc.start(g, 0.0).unwrap();
                g.connect(osc.id(), 0, gain.id(), 0).unwrap();
                g.connect(gain.id(), 0, destination, 0).unwrap();
            }
        }
        1 => {
            let buffer = Arc::new(byob::AudioBuffer::new(SAMPLE_RATE, vec![crate::noise(FRAMES, 1)]).unwrap());
            let src = byob::AudioBufferSourceNode::new(g, byob::AudioBufferSourceOptions { buffer: Some(buffer), ..Default::default() }).unwrap();
            src.start(g, 0.0).unwrap();
            let mut previous = src.id();
            for (type_, _, frequency) in FILTERS {
                let f = byob::BiquadFilterNode::new(g, byob::BiquadFilterOptions { type_, frequency, gain: 3.0, ..Default::default() }).unwrap();
                g.connect(previous, 0, f.id(), 0).unwrap();
                previous = f.id();
            }
            g.connect(previous, 0, destination, 0).unwrap();
        }
        2 => {
            let buffer = Arc::new(byob::AudioBuffer::new(SAMPLE_RATE, vec![crate::noise(48000, 2), crate::noise(48000, 3)]).unwrap());
            for i in 0..50 {
                let src = byob::AudioBufferSourceNode::new(g, byob::AudioBufferSourceOptions { buffer: Some(buffer.clone()), loop_: true, ..Default::default() }).unwrap();
                src.start(g, 0.0).unwrap();
                g.param(src.playback_rate())
                    .set_value_at_time(0.5 + i as f32 * 0.01, 0.0)
                    .unwrap()
                    .linear_ramp_to_value_at_time(1.5, SECONDS)
                    .unwrap();
                g.connect(src.id(), 0, destination, 0).unwrap();
            }
        }
        _ => {
            let buffer = Arc::new(byob::AudioBuffer::new(SAMPLE_RATE, vec![crate::noise(FRAMES, 4), crate::noise(FRAMES, 5)]).unwrap());
            let src = byob::AudioBufferSourceNode::new(g, byob::AudioBufferSourceOptions { buffer: Some(buffer), ..Default::default() }).unwrap();
            src.start(g, 0.0).unwrap();
            let delay = byob::DelayNode::new(g, byob::DelayOptions { max_delay_time: 1.0, delay_time: 0.25, ..Default::default() }).unwrap();
            let lowpass = byob::BiquadFilterNode::new(g, byob::BiquadFilterOptions { frequency: 3000.0, ..Default::default() }).unwrap();
            let feedback = byob::GainNode::new(g, byob::GainOptions { gain: 0.6, ..Default::default() }).unwrap();
            g.connect(src.id(), 0, delay.id(), 0).unwrap();
            g.connect(delay.id(), 0, lowpass.id(), 0).unwrap();
            g.connect(lowpass.id(), 0, feedback.id(), 0).unwrap();
            g.connect(feedback.id(), 0, delay.id(), 0).unwrap();
            g.connect(src.id(), 0, destination, 0).unwrap();
            g.connect(delay.id(), 0, destination, 0).unwrap();
        }
    }
}

/// Builds the same graph in the `web-audio-api` crate, offline or live.
pub fn peer_graph(ctx: &impl BaseAudioContext, case: usize, destination: &dyn web_audio_api::node::AudioNode) {
    match case {
        0 => {
            for i in 0..100 {
                let mut osc = ctx.create_oscillator();
                osc.frequency().set_value(110.0 + 7.0 * i as f32);
                let gain = ctx.create_gain();
                gain.gain().set_value(0.01);
                osc.start();
                osc.connect(&gain);
                gain.connect(destination);
            }
        }
        1 => {
            let buffer = web_audio_api::AudioBuffer::from(vec![crate::noise(FRAMES, 1)], SAMPLE_RATE);
            let mut src = ctx.create_buffer_source();
            src.set_buffer(buffer);
            src.start();
            let mut filters = Vec::new();
            for (_, type_, frequency) in FILTERS {
                let mut f = ctx.create_biquad_filter();
                f.set_type(type_);
                f.frequency().set_value(frequency);
                f.gain().set_value(3.0);
                filters.push(f);
            }
            src.connect(&filters[0]);
            for pair in filters.windows(2) {
                pair[0].connect(&pair[1]);
            }
            filters[7].connect(destination);
        }
        2 => {
            let buffer = web_audio_api::AudioBuffer::from(vec![crate::noise(48000, 2), crate::noise(48000, 3)], SAMPLE_RATE);
            for i in 0..50 {
                let mut src = ctx.create_buffer_source();
                src.set_buffer(buffer.clone());
                src.set_loop(true);
                src.playback_rate().set_value_at_time(0.5 + i as f32 * 0.01, 0.0);
                src.playback_rate().linear_ramp_to_value_at_time(1.5, SECONDS);
                src.start();
                src.connect(destination);
            }
        }
        _ => {
            let buffer = web_audio_api::AudioBuffer::from(vec![crate::noise(FRAMES, 4), crate::noise(FRAMES, 5)], SAMPLE_RATE);
            let mut src = ctx.create_buffer_source();
            src.set_buffer(buffer);
            src.start();
            let delay = ctx.create_delay(1.0);
            delay.delay_time().set_value(0.25);
            let lowpass = ctx.create_biquad_filter();
            lowpass.frequency().set_value(3000.0);
            let feedback = ctx.create_gain();
            feedback.gain().set_value(0.6);
            src.connect(&delay);
            delay.connect(&lowpass);
            lowpass.connect(&feedback);
            feedback.connect(&delay);
            src.connect(destination);
            delay.connect(destination);
        }
    }
}

