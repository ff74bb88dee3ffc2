//! Rendering a quantum must not touch the heap: every node type and every
//! automation method renders under an allocation-denying global allocator.

use assert_no_alloc::{assert_no_alloc, AllocDisabler};
use byob_audio::*;
use std::sync::Arc;

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

/// A graph that uses every node type, every automation method, a param
/// driven by audio, a cycle through a delay and a channel-count change.
fn every_node_graph() -> Result<RenderGraph, Box<dyn std::error::Error>> {
    let sample_rate = 48000.0;
    let mut graph = AudioGraph::new(sample_rate, 2)?;
    let g = &mut graph;
    let destination = g.destination();

    let oscillators: Vec<OscillatorNode> = [OscillatorType::Sine, OscillatorType::Square, OscillatorType::Sawtooth, OscillatorType::Triangle]
        .into_iter()
        .map(|type_| OscillatorNode::new(g, OscillatorOptions { type_, frequency: 220.0, ..Default::default() }))
        .collect::<Result<_, _>>()?;
    let wave = PeriodicWave::new(sample_rate, PeriodicWaveOptions { real: Some(vec![0.0, 0.3, 0.1]), imag: Some(vec![0.0, 1.0, 0.5]), disable_normalization: false })?;
    let custom = OscillatorNode::new(g, OscillatorOptions { periodic_wave: Some(wave), ..Default::default() })?;
    let mix = GainNode::new(g, GainOptions { gain: 0.1, ..Default::default() })?;
    for (i, osc) in oscillators.iter().chain([&custom]).enumerate() {
        osc.start(g, i as f64 * 0.001 + 0.0003)?;
        osc.stop(g, 0.05 + i as f64 * 0.01)?;
        g.connect(osc.id(), 0, mix.id(), 0)?;
    }
    // Frequency modulation: a-rate input into a parameter.
    let lfo = OscillatorNode::new(g, OscillatorOptions { frequency: 3.0, ..Default::default() })?;
    let depth = GainNode::new(g, GainOptions { gain: 30.0, ..Default::default() })?;
    lfo.start(g, 0.0)?;
    g.connect(lfo.id(), 0, depth.id(), 0)?;
    g.connect_param(depth.id(), 0, oscillators[0].frequency())?;

    let frequency = oscillators[1].frequency();
    g.param(frequency)
        .set_value_at_time(220.0, 0.0)?
        .linear_ramp_to_value_at_time(440.0, 0.02)?
        .exponential_ramp_to_value_at_time(880.0, 0.04)?
        .set_target_at_time(300.0, 0.05, 0.01)?
        .set_value_curve_at_time(&[300.0, 600.0, 200.0], 0.07, 0.02)?
        .linear_ramp_to_value_at_time(100.0, 0.1)?
        .cancel_and_hold_at_time(0.095)?
        .cancel_scheduled_values(0.2)?;
    g.param(oscillators[2].detune()).set_automation_rate(AutomationRate::KRate)?;

    let filters: Vec<BiquadFilterNode> = BiquadFilterType::ALL
        .into_iter()
    .map(|type_| BiquadFilterNode::new(g, BiquadFilterOptions { type_, frequency: 1200.0, gain: 3.0, ..Default::default() }))
    .collect::<Result<_, _>>()?;
    let mut previous = mix.id();
    for filter in &filters {
        g.connect(previous, 0, filter.id(), 0)?;
        previous = filter.id();
    }
    g.param(filters[0].frequency()).linear_ramp_to_value_at_time(4000.0, 0.05)?;

    // A stereo buffer, looped with automated rate, widens the mix mid-render.
    let buffer = Arc::new(AudioBuffer::new(sample_rate, vec![(0..999).map(|i| (i as f32 * 0.01).sin()).collect(), vec![0.25; 999]])?);
    let source = AudioBufferSourceNode::new(g, AudioBufferSourceOptions { buffer: Some(buffer), loop_: true, loop_start: 0.001, loop_end: 0.015, ..Default::default() })?;
    source.start_with(g, 0.0301, Some(0.002), Some(0.04))?;
    g.param(source.playback_rate()).linear_ramp_to_value_at_time(1.7, 0.06)?;

    let constant = ConstantSourceNode::new(g, ConstantSourceOptions { offset: 0.1 })?;
    constant.start(g, 0.0)?;
    let panner = StereoPannerNode::new(g, StereoPannerOptions::default())?;
    g.connect_param(constant.id(), 0, panner.pan())?;
    g.connect(previous, 0, panner.id(), 0)?;
    g.connect(source.id(), 0, panner.id(), 0)?;

    // Feedback through a delay (a cycle) plus a plain delay.
    let delay = DelayNode::new(g, DelayOptions { max_delay_time: 0.1, delay_time: 0.0105, ..Default::default() })?;
    let feedback = GainNode::new(g, GainOptions { gain: 0.5, ..Default::default() })?;
    g.connect(panner.id(), 0, delay.id(), 0)?;
    g.connect(delay.id(), 0, feedback.id(), 0)?;
    g.connect(feedback.id(), 0, delay.id(), 0)?;
    g.param(delay.delay_time()).set_value_at_time(0.02, 0.03)?;
    let plain_delay = DelayNode::new(g, DelayOptions { delay_time: 0.00001, ..Default::default() })?;
    g.connect(panner.id(), 0, plain_delay.id(), 0)?;

    let splitter = ChannelSplitterNode::new(g, ChannelSplitterOptions { number_of_outputs: 2, ..Default::default() })?;
    let merger = ChannelMergerNode::new(g, ChannelMergerOptions { number_of_inputs: 2, ..Default::default() })?;
    g.connect(delay.id(), 0, splitter.id(), 0)?;
    g.connect(splitter.id(), 0, merger.id(), 1)?;
    g.connect(splitter.id(), 1, merger.id(), 0)?;
    g.connect(merger.id(), 0, destination, 0)?;
    g.connect(plain_delay.id(), 0, destination, 0)?;
    Ok(graph.compile()?)
}

#[test]
fn rendering_every_node_type_allocates_nothing() {
    let mut render = every_node_graph().expect("graph builds");
    let mut energy = 0.0f64;
    // 0.15 s: every start, stop, ramp, curve and cancellation happens inside.
    for _ in 0..60 {
        let block = assert_no_alloc(|| render.render_quantum());
        energy += block.channels().iter().flatten().map(|&s| (s as f64).powi(2)).sum::<f64>();
    }
    assert!(energy > 0.0, "the graph should make sound");
}

/// The render capacity a device callback measures: the meter and the cell
/// the control side reads it from, across several update intervals.
#[test]
fn measuring_render_capacity_allocates_nothing() {
    let cell = byob_audio::context::CapacityCell::default();
    let mut meter = byob_audio::context::RenderCapacityMeter::new(0.01);
    let mut reports = 0;
    for k in 0..100 {
        assert_no_alloc(|| {
            if let Some(report) = meter.record(k as f64 * 1e-5, 128.0 / 48000.0) {
                cell.store(&report);
                reports += 1;
            }
        });
    }
    assert!(reports >= 20 && cell.load().callbacks > 0);
}

/// BYOB processors: registered regions, registration inside `process`
/// (ping-pong's hand-over), topology changes negotiated mid-render
/// (channel-follower re-registers a larger region) and the copying baseline.
fn worklet_graph() -> Result<RenderGraph, Box<dyn std::error::Error>> {
    let sample_rate = 48000.0;
    let mut graph = AudioGraph::new(sample_rate, 2)?;
    let g = &mut graph;
    let destination = g.destination();
    let registry = ProcessorRegistry::with_examples();
    let mono = ConstantSourceNode::new(g, ConstantSourceOptions { offset: 0.25 })?;
    mono.start(g, 0.0)?;
    // A stereo source that starts later widens the mix: a topology change.
    let buffer = Arc::new(AudioBuffer::new(sample_rate, vec![vec![0.5; 4800], vec![-0.5; 4800]])?);
    let stereo = AudioBufferSourceNode::new(g, AudioBufferSourceOptions { buffer: Some(buffer), ..Default::default() })?;
    stereo.start(g, 0.01)?;
    let worklet = |g: &mut AudioGraph, name: &str, processor_options: serde_json::Value, output_channel_count: Option<Vec<usize>>| {
        let options = AudioWorkletNodeOptions { processor_options, output_channel_count, ..Default::default() };
        AudioWorkletNode::new(g, &registry, name, options)
    };
    let gains = [
        worklet(g, "gain", serde_json::json!({"byob": true}), None)?,
        worklet(g, "gain", serde_json::json!({"byob": false}), None)?,
        worklet(g, "gain", serde_json::json!({"inPlace": true}), None)?,
    ];
    let follower = worklet(g, "channel-follower", serde_json::json!({"maxChannels": 2}), None)?;
    let echo = worklet(g, "ping-pong", serde_json::json!({"delayQuanta": 3}), Some(vec![2]))?;
    let mut previous = None;
    for node in gains.iter().chain([&follower, &echo]) {
        match previous {
            None => {
                g.connect(mono.id(), 0, node.id(), 0)?;
                g.connect(stereo.id(), 0, node.id(), 0)?;
            }
            Some(p) => g.connect(p, 0, node.id(), 0)?,
        }
        previous = Some(node.id());
    }
    g.connect(echo.id(), 0, destination, 0)?;
    g.connect(follower.id(), 0, destination, 0)?;
    Ok(graph.compile()?)
}

#[test]
fn rendering_byob_processors_allocates_nothing() {
    let mut render = worklet_graph().expect("graph builds");
    let mut energy = 0.0f64;
    for _ in 0..40 {
        let block = assert_no_alloc(|| render.render_quantum());
        energy += block.channels().iter().flatten().map(|&s| (s as f64).powi(2)).sum::<f64>();
    }
    assert!(energy > 0.0, "the graph should make sound");
}

/// A live context's render side, driven from a thread that denies itself
/// allocation, while the control side changes the graph as fast as it can:
/// sources created, connected, started and stopped, automation sent,
/// connections removed, BYOB worklets offered wider inputs or asked through
/// their port to re-register, ended sources released. What the render side replaces is freed on the free thread.
#[test]
fn a_live_graph_changing_under_the_render_thread_allocates_nothing_there() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let options = AudioContextOptions { sample_rate: Some(48000.0), ..Default::default() };
    let (mut ctx, mut driver) = AudioContext::with_driver(options).expect("a driven context");
    let stop = Arc::new(AtomicBool::new(false));
    let rendered = Arc::new(AtomicU64::new(0));
    let render = {
        let (stop, rendered) = (stop.clone(), rendered.clone());
        std::thread::spawn(move || {
            let mut buffer = vec![0.0f32; 2 * 300];
            let mut energy = 0.0f64;
            while !stop.load(Ordering::Acquire) {
                assert_no_alloc(|| driver.fill(&mut buffer));
                energy += buffer.iter().map(|&s| (s as f64).powi(2)).sum::<f64>();
                rendered.fetch_add(300, Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            energy
        })
    };
    let registry = ProcessorRegistry::with_examples();
    let follower = {
        let mut g = ctx.graph();
        let options = AudioWorkletNodeOptions { processor_options: serde_json::json!({"maxChannels": 6}), ..Default::default() };
        let follower = AudioWorkletNode::new(&mut g, &registry, "channel-follower", options).unwrap();
        let gain = AudioWorkletNode::new(&mut g, &registry, "gain", AudioWorkletNodeOptions::default()).unwrap();
        let destination = g.destination();
        g.connect(follower.id(), 0, gain.id(), 0).unwrap();
        g.connect(gain.id(), 0, destination, 0).unwrap();
        (follower, gain)
    };
    let (follower, byob_gain) = follower;
    for i in 0..400 {
        let mut g = ctx.graph();
        let now = g.current_time();
        let osc = OscillatorNode::new(&mut g, OscillatorOptions { frequency: 100.0 + i as f32, ..Default::default() }).unwrap();
        let gain = GainNode::new(&mut g, GainOptions { gain: 0.1, ..Default::default() }).unwrap();
        g.connect(osc.id(), 0, gain.id(), 0).unwrap();
        g.connect(gain.id(), 0, follower.id(), 0).unwrap();
        if i % 5 == 0 {
            // Re-registration asked through the port: one region, or two.
            byob_gain.post_message(&mut g, Box::new(serde_json::json!({"inPlace": i % 10 == 0})));
        }
        if i % 7 == 0 {
            // Six channels into the follower: a topology change.
            let merger = ChannelMergerNode::new(&mut g, ChannelMergerOptions { number_of_inputs: 6, ..Default::default() }).unwrap();
            g.connect(gain.id(), 0, merger.id(), 5).unwrap();
            g.connect(merger.id(), 0, follower.id(), 0).unwrap();
            g.release(merger.id());
            g.disconnect_all(merger.id());
        }
        g.param(gain.gain()).linear_ramp_to_value_at_time(0.0, now + 0.02).unwrap();
        osc.start(&mut g, now).unwrap();
        osc.stop(&mut g, now + 0.01).unwrap();
        g.release(gain.id());
        drop(g);
        std::thread::sleep(std::time::Duration::from_micros(300));
    }
    while rendered.load(Ordering::Relaxed) < 48000 / 2 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    ctx.poll_events();
    ctx.close().expect("every change applied");
    stop.store(true, Ordering::Release);
    let energy = render.join().expect("the render thread allocated nothing");
    assert!(energy > 0.0, "the graph should make sound");
    let freed = ctx.freed();
    assert!(freed.batches >= 400 && freed.nodes > 0, "{freed:?}");
}
