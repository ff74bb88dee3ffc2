//! A live AudioContext on the null sink, byob against the `web-audio-api`
//! crate's AudioContext with its `none` sink, in one run: the time from an
//! API call to the first sample it affects, and the render thread's load
//! (render capacity), for the four graphs of the audio-engine benchmark.
//!
//! `cargo run --release -p byob-bench --bin live_context` (add `-- --quick`
//! for one round). Writes its table into BENCHMARKS.md.
//!
//! The latency probe: a worklet processor in both engines, through which
//! the whole graph reaches the destination (so it renders last, when the
//! quantum is complete), stamps the time at which it first sees a sample
//! above 100; the control thread stamps the time before it creates a
//! ConstantSourceNode of offset 1000, connects it to the probe and starts
//! it. Both engines render
//! in 128-frame callbacks (web-audio-api's `none` sink has no other size;
//! byob's is set to match).

use byob_audio as byob;
use byob_audio::{AudioNode as _, AudioScheduledSourceNode as _};
use byob_bench::engine_graphs::{byob_graph, peer_graph, NAMES, SAMPLE_RATE};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use web_audio_api::context::{AudioContext as PeerContext, AudioContextLatencyCategory, AudioContextOptions as PeerOptions, BaseAudioContext};
use web_audio_api::node::{AudioNode as _, AudioScheduledSourceNode as _};
use web_audio_api::worklet::{AudioParamValues, AudioWorkletGlobalScope, AudioWorkletNode, AudioWorkletNodeOptions, AudioWorkletProcessor};
use web_audio_api::{AudioRenderCapacityEvent, AudioRenderCapacityOptions};

const THRESHOLD: f32 = 100.0;
const TRIALS: usize = 100;
/// Seconds each graph plays before its load is read (the last full
/// one-second interval is reported).
const PLAY: f64 = 3.2;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Shared by a probe processor and the control thread.
#[derive(Default)]
struct Probe {
    armed: AtomicBool,
    seen_at: AtomicU64,
}

impl Probe {
    fn check(&self, samples: &[f32]) {
        if self.armed.load(Ordering::Relaxed) && samples.iter().any(|&s| s > THRESHOLD) {
            self.seen_at.store(now_ns(), Ordering::Release);
            self.armed.store(false, Ordering::Relaxed);
        }
    }

    /// Arms the probe, runs `call` (the API call, stamped just before),
    /// and waits for the render thread to see its first sample. Returns
    /// that latency and how long the call itself took, in seconds.
    fn measure(&self, call: impl FnOnce()) -> Option<(f64, f64)> {
        self.seen_at.store(0, Ordering::Relaxed);
        self.armed.store(true, Ordering::Release);
        let called = now_ns();
        call();
        let returned = now_ns();
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            let seen = self.seen_at.load(Ordering::Acquire);
            if seen != 0 {
                return Some((seen.saturating_sub(called) as f64 / 1e9, (returned - called) as f64 / 1e9));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        None
    }
}

struct ByobProbe(Arc<Probe>);

impl byob::WorkletProcessor for ByobProbe {
    fn process(&mut self, io: &mut byob::ProcessIo<'_>) -> bool {
        let (input, output) = io.input_and_output(0, 0);
        self.0.check(input);
        output.copy_from_slice(input);
        true
    }
}

struct PeerProbe(Arc<Probe>);

impl AudioWorkletProcessor for PeerProbe {
    type ProcessorOptions = Arc<Probe>;

    fn constructor(probe: Arc<Probe>) -> Self {
        Self(probe)
    }

    fn process<'a, 'b>(&mut self, inputs: &'b [&'a [&'a [f32]]], outputs: &'b mut [&'a mut [&'a mut [f32]]], _: AudioParamValues<'b>, _: &'b AudioWorkletGlobalScope) -> bool {
        if let Some(channel) = inputs[0].first() {
            self.0.check(channel);
        }
        for (output, input) in outputs[0].iter_mut().zip(inputs[0].iter()) {
            output.copy_from_slice(input);
        }
        true
    }
}

/// What one engine measured on one graph.
struct Measured {
    latencies: Vec<f64>,
    calls: Vec<f64>,
    load: (f64, f64),
}

fn byob_run(case: usize) -> Measured {
    let probe = Arc::new(Probe::default());
    let mut registry = byob::ProcessorRegistry::new();
    let shared = probe.clone();
    registry.register("probe", Vec::new(), move |_| Ok(Box::new(ByobProbe(shared.clone())))).unwrap();
    let options = byob::AudioContextOptions {
        sample_rate: Some(SAMPLE_RATE),
        sink_id: byob::SinkId::None,
        latency_hint: byob::LatencyHint::Seconds(128.0 / SAMPLE_RATE as f64),
        ..Default::default()
    };
    let mut ctx = byob::AudioContext::new(options).unwrap();
    let detector = {
        let mut g = ctx.graph();
        // Stereo in, stereo out, like the destination it stands before.
        let options = byob::AudioWorkletNodeOptions {
            output_channel_count: Some(vec![2]),
            node: byob::AudioNodeOptions { channel_count: Some(2), channel_count_mode: Some(byob::ChannelCountMode::Explicit), ..Default::default() },
            ..Default::default()
        };
        let detector = byob::AudioWorkletNode::new(&mut g, &registry, "probe", options).unwrap();
        byob_graph(&mut g, case, detector.id());
        let destination = g.destination();
        g.connect(detector.id(), 0, destination, 0).unwrap();
        detector.id()
    };
    std::thread::sleep(Duration::from_millis(300));
    let (mut latencies, mut calls) = (Vec::new(), Vec::new());
    for trial in 0..TRIALS {
        let mut marker = None;
        let latency = probe.measure(|| {
            let mut g = ctx.graph();
            let now = g.current_time();
            let source = byob::ConstantSourceNode::new(&mut g, byob::ConstantSourceOptions { offset: 1000.0 }).unwrap();
            g.connect(source.id(), 0, detector, 0).unwrap();
            source.start(&mut g, now).unwrap();
            marker = Some(source);
        });
        if let Some((latency, call)) = latency {
            latencies.push(latency);
            calls.push(call);
        }
        let source = marker.expect("made in the call");
        let mut g = ctx.graph();
        let now = g.current_time();
        source.stop(&mut g, now).unwrap();
        g.disconnect_all(source.id());
        drop(g);
        pause(trial);
    }
    while ctx.current_time() < PLAY {
        std::thread::sleep(Duration::from_millis(20));
        ctx.poll_events();
    }
    let load = ctx.render_capacity();
    ctx.close().unwrap();
    Measured { latencies, calls, load: (load.average_load, load.peak_load) }
}

fn peer_run(case: usize) -> Measured {
    let probe = Arc::new(Probe::default());
    let options = PeerOptions {
        sample_rate: Some(SAMPLE_RATE),
        sink_id: "none".into(),
        latency_hint: AudioContextLatencyCategory::Interactive,
        ..Default::default()
    };
    let ctx = PeerContext::new(options);
    let last: Arc<Mutex<Option<AudioRenderCapacityEvent>>> = Arc::default();
    let capacity = ctx.render_capacity();
    let store = last.clone();
    capacity.set_onupdate(move |event| *store.lock().unwrap() = Some(event));
    capacity.start(AudioRenderCapacityOptions { update_interval: 1.0 });
    let options = AudioWorkletNodeOptions {
        processor_options: probe.clone(),
        output_channel_count: vec![2],
        audio_node_options: web_audio_api::node::AudioNodeOptions {
            channel_count: 2,
            channel_count_mode: web_audio_api::node::ChannelCountMode::Explicit,
            channel_interpretation: web_audio_api::node::ChannelInterpretation::Speakers,
        },
        ..Default::default()
    };
    let detector = AudioWorkletNode::new::<PeerProbe>(&ctx, options);
    peer_graph(&ctx, case, &detector);
    detector.connect(&ctx.destination());
    std::thread::sleep(Duration::from_millis(300));
    let (mut latencies, mut calls) = (Vec::new(), Vec::new());
    for trial in 0..TRIALS {
        let mut marker = None;
        let latency = probe.measure(|| {
            let source = ctx.create_constant_source();
            source.offset().set_value(1000.0);
            source.connect(&detector);
            let mut source = source;
            source.start();
            marker = Some(source);
        });
        if let Some((latency, call)) = latency {
            latencies.push(latency);
            calls.push(call);
        }
        let mut source = marker.expect("made in the call");
        source.stop();
        source.disconnect();
        pause(trial);
    }
    while ctx.current_time() < PLAY {
        std::thread::sleep(Duration::from_millis(20));
    }
    let load = last.lock().unwrap().as_ref().map_or((f64::NAN, f64::NAN), |e| (e.average_load, e.peak_load));
    ctx.close_sync();
    Measured { latencies, calls, load }
}

/// 5 ms and a part of a callback period that differs from trial to trial
/// (the same sequence for both engines), so that calls land at every
/// phase of the render thread's cycle.
fn pause(trial: usize) {
    let period = 128.0 / SAMPLE_RATE as f64;
    let phase = (trial as f64 * 0.618_034).fract();
    std::thread::sleep(Duration::from_secs_f64(0.005 + phase * period));
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds = if std::env::args().any(|a| a == "--quick") { 1 } else { 3 };
    let _ = epoch();
    let mut rows = Vec::new();
    for (case, name) in NAMES.iter().enumerate() {
        let (mut ours, mut peers) = (Vec::new(), Vec::new());
        // In turns, so a slow spell of the machine hits both.
        for _ in 0..rounds {
            ours.push(byob_run(case));
            peers.push(peer_run(case));
        }
        let latency = |runs: &[Measured]| median(runs.iter().flat_map(|m| m.latencies.iter().copied()).collect()) * 1000.0;
        let worst = |runs: &[Measured]| runs.iter().flat_map(|m| m.latencies.iter().copied()).fold(0.0, f64::max) * 1000.0;
        let load = |runs: &[Measured]| median(runs.iter().map(|m| m.load.0).collect()) * 100.0;
        let peak = |runs: &[Measured]| median(runs.iter().map(|m| m.load.1).collect()) * 100.0;
        let trials = |runs: &[Measured]| runs.iter().map(|m| m.latencies.len()).sum::<usize>();
        let call = |runs: &[Measured]| median(runs.iter().flat_map(|m| m.calls.iter().copied()).collect()) * 1e6;
        println!(
            "{name}: call byob {:.0} us vs {:.0} us; latency byob {:.2} ms (max {:.2}, {} trials) vs {:.2} ms (max {:.2}, {} trials); load byob {:.1}% (peak {:.1}%) vs {:.1}% (peak {:.1}%)",
            call(&ours),
            call(&peers),
            latency(&ours),
            worst(&ours),
            trials(&ours),
            latency(&peers),
            worst(&peers),
            trials(&peers),
            load(&ours),
            peak(&ours),
            load(&peers),
            peak(&peers)
        );
        rows.push(format!(
            "| {name} | {:.0} µs | {:.0} µs | {:.2} ms | {:.2} ms | **{:.2}** | {:.1}% ({:.1}%) | {:.1}% ({:.1}%) | **{:.2}** |",
            call(&ours),
            call(&peers),
            latency(&ours),
            latency(&peers),
            latency(&peers) / latency(&ours),
            load(&ours),
            peak(&ours),
            load(&peers),
            peak(&peers),
            load(&peers) / load(&ours),
        ));
    }
    let body = format!(
        "## Live context: change latency and render load, byob vs web-audio-api 1.7 (null sink)\n\n\
         `cargo run --release -p byob-bench --bin live_context` — each graph plays live on the null sink at {SAMPLE_RATE} Hz in 128-frame callbacks, \
         both engines in turns ({rounds} round(s)), same run, same machine: {}.\n\
         Latency: from just before the API call (create a ConstantSourceNode, connect it, start it) to the render thread's first sample of it, \
         as seen by a pass-through worklet that the whole graph reaches the destination through (so it renders when the quantum is complete); \
         median of {TRIALS} calls per round, the calls spread over every phase of the callback cycle. Load: the spec's render capacity \
         (render time / audio time per callback) over the last full 1-second interval, average (peak), median over rounds; web-audio-api \
         reports it rounded to whole percents, so its small loads are coarse. Ratios: web-audio-api / byob (above 1: byob is faster or lighter; \
         goal: above 1 on every graph).\n\n\
         The API call's own cost (control thread) is shown apart; the rest of the latency is the wait for the next callback (one every 2.67 ms), \
         which bounds both engines alike.\n\n\
         | graph | byob call | web-audio-api call | byob latency | web-audio-api latency | ratio | byob load (peak) | web-audio-api load (peak) | ratio |\n|---|---|---|---|---|---|---|---|---|\n{}",
        byob_bench::machine(),
        rows.join("\n")
    );
    byob_bench::write_section("live_context", &body).expect("BENCHMARKS.md is writable");
}
