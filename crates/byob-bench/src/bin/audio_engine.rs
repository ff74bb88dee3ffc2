//! Offline render speed of byob versus the `web-audio-api` crate on four
//! graphs, in one run: real-time factor of each and their ratio.
//!
//! `cargo run --release -p byob-bench --bin audio_engine` (add `-- --quick`
//! for fewer repetitions). Writes its table into BENCHMARKS.md.

use byob_audio as byob;
use byob_audio::{AudioNode as _, AudioScheduledSourceNode as _};
use std::sync::Arc;
use web_audio_api::context::{BaseAudioContext, OfflineAudioContext as PeerContext};
use web_audio_api::node::{AudioNode as _, AudioScheduledSourceNode as _};

const SAMPLE_RATE: f32 = 48000.0;
const SECONDS: f64 = 10.0;
const FRAMES: usize = (SAMPLE_RATE as f64 * SECONDS) as usize;

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

fn byob_graph(case: usize) -> byob::OfflineAudioContext {
    let mut ctx = byob::OfflineAudioContext::new(2, FRAMES, SAMPLE_RATE).unwrap();
    let g = ctx.graph();
    let destination = g.destination();
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
            let buffer = Arc::new(byob::AudioBuffer::new(SAMPLE_RATE, vec![byob_bench::noise(FRAMES, 1)]).unwrap());
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
            let buffer = Arc::new(byob::AudioBuffer::new(SAMPLE_RATE, vec![byob_bench::noise(48000, 2), byob_bench::noise(48000, 3)]).unwrap());
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
            let buffer = Arc::new(byob::AudioBuffer::new(SAMPLE_RATE, vec![byob_bench::noise(FRAMES, 4), byob_bench::noise(FRAMES, 5)]).unwrap());
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
    ctx
}

fn peer_graph(case: usize) -> PeerContext {
    let ctx = PeerContext::new(2, FRAMES, SAMPLE_RATE);
    let destination = ctx.destination();
    match case {
        0 => {
            for i in 0..100 {
                let mut osc = ctx.create_oscillator();
                osc.frequency().set_value(110.0 + 7.0 * i as f32);
                let gain = ctx.create_gain();
                gain.gain().set_value(0.01);
                osc.start();
                osc.connect(&gain);
                gain.connect(&destination);
            }
        }
        1 => {
            let buffer = web_audio_api::AudioBuffer::from(vec![byob_bench::noise(FRAMES, 1)], SAMPLE_RATE);
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
            filters[7].connect(&destination);
        }
        2 => {
            let buffer = web_audio_api::AudioBuffer::from(vec![byob_bench::noise(48000, 2), byob_bench::noise(48000, 3)], SAMPLE_RATE);
            for i in 0..50 {
                let mut src = ctx.create_buffer_source();
                src.set_buffer(buffer.clone());
                src.set_loop(true);
                src.playback_rate().set_value_at_time(0.5 + i as f32 * 0.01, 0.0);
                src.playback_rate().linear_ramp_to_value_at_time(1.5, SECONDS);
                src.start();
                src.connect(&destination);
            }
        }
        _ => {
            let buffer = web_audio_api::AudioBuffer::from(vec![byob_bench::noise(FRAMES, 4), byob_bench::noise(FRAMES, 5)], SAMPLE_RATE);
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
            src.connect(&destination);
            delay.connect(&destination);
        }
    }
    ctx
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 3 } else { 7 };
    let names = [
        "(a) 100 sine oscillators -> gain -> destination",
        "(b) white noise -> 8 chained biquads (all types)",
        "(c) 50 looping buffer sources, playbackRate ramp",
        "(d) stereo feedback delay with lowpass in the loop",
    ];
    // `--only N`: time one graph without writing the table (for profiling).
    let only: Option<usize> = std::env::args().skip_while(|a| a != "--only").nth(1).and_then(|n| n.parse().ok());
    let mut rows = Vec::new();
    for (case, name) in names.iter().enumerate() {
        if only.is_some_and(|o| o != case) {
            continue;
        }
        // Both engines in turns, so a slow spell of the machine hits both.
        enum Ctx {
            Ours(byob::OfflineAudioContext),
            Peer(PeerContext),
        }
        let t = byob_bench::interleaved_medians(
            runs,
            2,
            |engine| if engine == 0 { Ctx::Ours(byob_graph(case)) } else { Ctx::Peer(peer_graph(case)) },
            |_, ctx| match ctx {
                Ctx::Ours(ctx) => {
                    std::hint::black_box(ctx.start_rendering().unwrap());
                }
                Ctx::Peer(mut ctx) => {
                    std::hint::black_box(ctx.start_rendering_sync());
                }
            },
        );
        let (ours, peer) = (t[0], t[1]);
        let (rtf_ours, rtf_peer) = (SECONDS / ours, SECONDS / peer);
        println!("{name}: byob {rtf_ours:.1}x real time, web-audio-api {rtf_peer:.1}x, ratio {:.2}", rtf_ours / rtf_peer);
        rows.push(format!("| {name} | {rtf_ours:.1}x | {rtf_peer:.1}x | **{:.2}** |", rtf_ours / rtf_peer));
    }
    if only.is_some() {
        return;
    }
    let body = format!(
        "## Audio engine: offline render speed, byob vs web-audio-api {}\n\n\
         `cargo run --release -p byob-bench --bin audio_engine` — {SECONDS} s of stereo at {SAMPLE_RATE} Hz per graph, \
         median of {runs} renders taken in turns (timing starts at startRendering for both; building the graph and its buffers is not timed), same run, same machine: {}.\n\
         Real-time factor = seconds of audio / seconds of wall time; ratio = byob / web-audio-api (goal: at least 1.5).\n\n\
         | graph | byob | web-audio-api | ratio |\n|---|---|---|---|\n{}",
        "1.7",
        byob_bench::machine(),
        rows.join("\n")
    );
    byob_bench::write_section("audio_engine", &body).expect("BENCHMARKS.md is writable");
}
