//! Per-quantum overhead of one worklet node running a trivial gain, with 1,
//! 2 and 8 channels: byob with registered buffers (BYOB), byob on
//! engine-owned copied arrays (the baseline every browser implements), and
//! the `web-audio-api` crate's AudioWorkletNode, in one run.
//!
//! Overhead = (render time with a chain of 16 worklet nodes − render time of
//! the same graph without them) / (16 × quanta), each engine against its own
//! graph without the nodes; the chain lifts the difference above the noise.
//! `cargo run --release -p byob-bench --bin worklet [-- --quick]`.

use byob_audio as byob;
use byob_audio::{AudioNode as _, AudioScheduledSourceNode as _};
use std::sync::Arc;
use web_audio_api::context::{BaseAudioContext, OfflineAudioContext as PeerContext};
use web_audio_api::node::{AudioNode as _, AudioScheduledSourceNode as _};
use web_audio_api::worklet::{AudioParamValues, AudioWorkletGlobalScope, AudioWorkletNode, AudioWorkletNodeOptions, AudioWorkletProcessor};

const SAMPLE_RATE: f32 = 48000.0;
const SECONDS: f64 = 30.0;
const FRAMES: usize = (SAMPLE_RATE as f64 * SECONDS) as usize;
const QUANTA: f64 = (FRAMES / 128) as f64;
const CHAIN: usize = 16;

fn signal(channels: usize) -> Vec<Vec<f32>> {
    (0..channels).map(|c| (0..48000).map(|i| ((i * (c + 3)) as f32 * 0.001).sin()).collect()).collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    None,
    Byob,
    ByobInPlace,
    Baseline,
}

fn byob_graph(channels: usize, mode: Mode) -> (byob::OfflineAudioContext, Option<Arc<byob::worklet::WorkletStatus>>) {
    let mut ctx = byob::OfflineAudioContext::new(channels, FRAMES, SAMPLE_RATE).unwrap();
    let g = ctx.graph();
    let destination = g.destination();
    let buffer = Arc::new(byob::AudioBuffer::new(SAMPLE_RATE, signal(channels)).unwrap());
    let src = byob::AudioBufferSourceNode::new(g, byob::AudioBufferSourceOptions { buffer: Some(buffer), loop_: true, ..Default::default() }).unwrap();
    src.start(g, 0.0).unwrap();
    if mode == Mode::None {
        g.connect(src.id(), 0, destination, 0).unwrap();
        return (ctx, None);
    }
    let registry = byob::ProcessorRegistry::with_examples();
    let options = byob::AudioWorkletNodeOptions {
        parameter_data: vec![("gain".into(), 0.5)],
        processor_options: serde_json::json!({"byob": mode != Mode::Baseline, "inPlace": mode == Mode::ByobInPlace, "maxChannels": 8}),
        ..Default::default()
    };
    let mut previous = src.id();
    let mut status = None;
    for _ in 0..CHAIN {
        let node = byob::AudioWorkletNode::new(g, &registry, "gain", options.clone()).unwrap();
        g.connect(previous, 0, node.id(), 0).unwrap();
        previous = node.id();
        status = Some(node.status().clone());
    }
    g.connect(previous, 0, destination, 0).unwrap();
    (ctx, status)
}

struct PeerGain;

impl AudioWorkletProcessor for PeerGain {
    type ProcessorOptions = ();

    fn constructor(_: ()) -> Self {
        Self
    }

    fn parameter_descriptors() -> Vec<web_audio_api::AudioParamDescriptor> {
        vec![web_audio_api::AudioParamDescriptor {
            name: "gain".into(),
            min_value: f32::MIN,
            max_value: f32::MAX,
            default_value: 1.0,
            automation_rate: web_audio_api::AutomationRate::A,
        }]
    }

    fn process<'a, 'b>(
        &mut self,
        inputs: &'b [&'a [&'a [f32]]],
        outputs: &'b mut [&'a mut [&'a mut [f32]]],
        params: AudioParamValues<'b>,
        _: &'b AudioWorkletGlobalScope,
    ) -> bool {
        let gain = params.get("gain");
        for (input, output) in inputs[0].iter().zip(outputs[0].iter_mut()) {
            for (i, (o, x)) in output.iter_mut().zip(input.iter()).enumerate() {
                *o = x * gain[if gain.len() == 1 { 0 } else { i }];
            }
        }
        true
    }
}

fn peer_graph(channels: usize, with_worklet: bool) -> PeerContext {
    let ctx = PeerContext::new(channels, FRAMES, SAMPLE_RATE);
    let buffer = web_audio_api::AudioBuffer::from(signal(channels), SAMPLE_RATE);
    let mut src = ctx.create_buffer_source();
    src.set_buffer(buffer);
    src.set_loop(true);
    src.start();
    if !with_worklet {
        src.connect(&ctx.destination());
        return ctx;
    }
    let nodes: Vec<AudioWorkletNode> = (0..CHAIN)
        .map(|_| {
            let mut options = AudioWorkletNodeOptions::default();
            options.parameter_data.insert("gain".into(), 0.5);
            AudioWorkletNode::new::<PeerGain>(&ctx, options)
        })
        .collect();
    src.connect(&nodes[0]);
    for pair in nodes.windows(2) {
        pair[0].connect(&pair[1]);
    }
    nodes[CHAIN - 1].connect(&ctx.destination());
    ctx
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 3 } else { 9 };
    let mut rows = Vec::new();
    for channels in [1usize, 2, 8] {
        // All five configurations in turns, so a slow spell hits each alike.
        enum Ctx {
            Ours(byob::OfflineAudioContext),
            Peer(PeerContext),
        }
        let modes = [Mode::None, Mode::Byob, Mode::ByobInPlace, Mode::Baseline];
        let t = byob_bench::interleaved_medians(
            runs,
            6,
            |case| match case {
                0..=3 => Ctx::Ours(byob_graph(channels, modes[case]).0),
                4 => Ctx::Peer(peer_graph(channels, false)),
                _ => Ctx::Peer(peer_graph(channels, true)),
            },
            |_, ctx| match ctx {
                Ctx::Ours(ctx) => {
                    std::hint::black_box(ctx.start_rendering().unwrap());
                }
                Ctx::Peer(mut ctx) => {
                    std::hint::black_box(ctx.start_rendering_sync());
                }
            },
        );
        let (ours_none, ours_byob, ours_in_place, ours_base, peer_none, peer_with) = (t[0], t[1], t[2], t[3], t[4], t[5]);
        let ns = |with: f64, without: f64| ((with - without) / (QUANTA * CHAIN as f64) * 1e9).max(0.0);
        let (byob_ns, base_ns, peer_ns) = (ns(ours_byob, ours_none), ns(ours_base, ours_none), ns(peer_with, peer_none));
        let in_place_ns = ns(ours_in_place, ours_none);
        // Bytes copied per quantum, from the node's own counter.
        let copied = |mode| {
            let (ctx, status) = byob_graph(channels, mode);
            ctx.start_rendering().unwrap();
            let status = status.expect("a worklet node");
            status.bytes_copied() / status.quanta()
        };
        let (copied_byob, copied_base) = (copied(Mode::Byob) + copied(Mode::ByobInPlace), copied(Mode::Baseline));
        println!(
            "{channels} ch: BYOB {byob_ns:.0} ns/quantum, BYOB in place {in_place_ns:.0}, baseline {base_ns:.0}, web-audio-api {peer_ns:.0}; BYOB/baseline {:.2} (in place {:.2}), BYOB/web-audio-api {:.2}",
            byob_ns / base_ns,
            in_place_ns / base_ns,
            byob_ns / peer_ns
        );
        rows.push(format!(
            "| {channels} | {byob_ns:.0} | {in_place_ns:.0} | {base_ns:.0} | {peer_ns:.0} | **{:.2}** | **{:.2}** | **{:.2}** | {copied_byob} | {copied_base} |",
            byob_ns / base_ns,
            in_place_ns / base_ns,
            byob_ns.max(in_place_ns) / peer_ns,
        ));
    }
    let body = format!(
        "## Worklet overhead: BYOB vs copying baseline vs web-audio-api AudioWorkletNode\n\n\
         `cargo run --release -p byob-bench --bin worklet` — a chain of {CHAIN} worklet nodes, each a trivial gain, on a \
         looping buffer source, {SECONDS} s at {SAMPLE_RATE} Hz, median of {runs} renders taken in turns; overhead per node per quantum = \
         (render with the chain − the same graph without it) / ({CHAIN} × quanta), each engine against its own graph. \
         Same run, same machine: {}.\n\
         Goals: BYOB/baseline at most 0.5 at 8 channels; BYOB below web-audio-api at every count; 0 bytes copied.\n\n\
         BYOB uses separate input and output regions; BYOB in place one INPUT|OUTPUT region.\n\n\
         | channels | BYOB ns/quantum | BYOB in place ns/quantum | baseline ns/quantum | web-audio-api ns/quantum | BYOB/baseline | in place/baseline | BYOB (worse of the two)/web-audio-api | bytes copied per quantum, BYOB | bytes copied per quantum, baseline |\n\
         |---|---|---|---|---|---|---|---|---|---|\n{}",
        byob_bench::machine(),
        rows.join("\n")
    );
    byob_bench::write_section("worklet", &body).expect("BENCHMARKS.md is writable");
}
