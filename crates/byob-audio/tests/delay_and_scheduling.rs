//! DelayNode, cycles, start/stop scheduling and graph-file errors, checked
//! against expectations computed here in f64 from the Web Audio spec.
//!
//! Most delay tests run at 32768 Hz so that frame times and delays in
//! frames are exact binary fractions.

use byob_audio::graph::CompileError;
use byob_audio::graph_file::GraphFile;
use byob_audio::{
    AudioBuffer, AudioBufferSourceNode, AudioBufferSourceOptions, AudioGraph, AudioNode, AudioScheduledSourceNode,
    ConstantSourceNode, ConstantSourceOptions, ContextError, DelayNode, DelayOptions, GainNode, GainOptions,
    NodeError, NodeId, OfflineAudioContext,
};
use std::path::Path;
use std::sync::Arc;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SR: f64 = 32768.0;

/// An AudioBufferSourceNode playing `samples` from time 0.
fn buffer_source(graph: &mut AudioGraph, samples: Vec<f32>) -> Result<NodeId, Box<dyn std::error::Error>> {
    let buffer = Arc::new(AudioBuffer::new(graph.sample_rate(), vec![samples])?);
    let source = AudioBufferSourceNode::new(graph, AudioBufferSourceOptions { buffer: Some(buffer), ..Default::default() })?;
    source.start(graph, 0.0)?;
    Ok(source.id())
}

/// `x` at fractional position `pos`, linearly interpolated, 0 outside.
fn interpolate(x: &[f64], pos: f64) -> f64 {
    let at = |i: f64| if i < 0.0 || i >= x.len() as f64 { 0.0 } else { x[i as usize] };
    let whole = pos.floor();
    let frac = pos - whole;
    (1.0 - frac) * at(whole) + frac * at(whole + 1.0)
}

fn assert_close(actual: &[f32], expected: &[f64], tolerance: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (n, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a as f64 - e).abs() <= tolerance,
            "{what}: frame {n}: got {a}, expected {e} (tolerance {tolerance:e})"
        );
    }
}

/// source(samples) -> DelayNode(delay_frames) -> destination, mono.
fn render_delay(
    samples: Vec<f32>,
    delay_frames: f64,
    frames: usize,
    automate: impl FnOnce(&mut AudioGraph, &DelayNode) -> TestResult,
) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let mut ctx = OfflineAudioContext::new(1, frames, SR as f32)?;
    let graph = ctx.graph();
    let source = buffer_source(graph, samples)?;
    let delay =
        DelayNode::new(graph, DelayOptions { max_delay_time: 1.0, delay_time: (delay_frames / SR) as f32, ..Default::default() })?;
    graph.connect(source, 0, delay.id(), 0)?;
    let dest = graph.destination();
    graph.connect(delay.id(), 0, dest, 0)?;
    automate(graph, &delay)?;
    Ok(ctx.start_rendering()?.channel_data(0).to_vec())
}

fn no_automation(_: &mut AudioGraph, _: &DelayNode) -> TestResult {
    Ok(())
}

// ------------------------------------------------------------------ delay

#[test]
fn fractional_delay_interpolates_linearly() -> TestResult {
    let out = render_delay(vec![1.0], 10.25, 256, no_automation)?;
    // y[n] = x(n - 10.25): frame 10 reads x(-0.25) = 0.75 x[0] + 0.25 x[-1];
    // frame 11 reads x(0.75) = 0.25 x[0] + 0.75 x[1].
    let mut expected = vec![0.0; 256];
    expected[10] = 0.75;
    expected[11] = 0.25;
    assert_close(&out, &expected, 1e-7, "impulse delayed by 10.25 frames");
    Ok(())
}

#[test]
fn integer_delays_are_exact() -> TestResult {
    for d in [1usize, 7, 127, 128, 129, 300, 1000] {
        let out = render_delay(vec![1.0], d as f64, 1280, no_automation)?;
        for (n, &v) in out.iter().enumerate() {
            assert_eq!(v, if n == d { 1.0 } else { 0.0 }, "delay {d}: frame {n}");
        }
    }
    Ok(())
}

#[test]
fn zero_delay_passes_through() -> TestResult {
    let input: Vec<f32> = (0..300).map(|n| ((n as f32) * 0.1).sin()).collect();
    let out = render_delay(input.clone(), 0.0, 512, no_automation)?;
    for (n, &v) in out.iter().enumerate() {
        assert_eq!(v, input.get(n).copied().unwrap_or(0.0), "frame {n}");
    }
    Ok(())
}

/// delayTime is a-rate: each frame reads at its own delay.
#[test]
fn delay_time_ramp_moves_the_read_position_every_frame() -> TestResult {
    let frames = 1024;
    let input: Vec<f32> = (0..frames).map(|n| n as f32).collect();
    let out = render_delay(input.clone(), 0.0, frames, |graph, delay| {
        let mut p = graph.param(delay.delay_time());
        p.timeline().set_value_at_time(0.0, 0.0)?;
        p.timeline().linear_ramp_to_value_at_time((64.0 / SR) as f32, 256.0 / SR, 0.0)?;
        Ok(())
    })?;
    let x: Vec<f64> = input.iter().map(|&v| v as f64).collect();
    // Spec ramp: d(t) = 64/SR * t / (256/SR) seconds until 256/SR, then 64/SR.
    let expected: Vec<f64> = (0..frames)
        .map(|n| {
            let t = n as f64 / SR;
            let d_seconds = if t < 256.0 / SR { (64.0 / SR) * t / (256.0 / SR) } else { 64.0 / SR };
            interpolate(&x, n as f64 - d_seconds * SR)
        })
        .collect();
    // The input ramp x[n] = n makes y[n] = n - d[n]: 0.75 n, then n - 64.
    assert!((expected[200] - 150.0).abs() < 1e-9 && (expected[500] - 436.0).abs() < 1e-9);
    assert_close(&out, &expected, 1e-3, "delayTime ramp 0 -> 64 frames");
    Ok(())
}

#[test]
fn delay_time_step_takes_effect_at_its_frame() -> TestResult {
    let frames = 1024;
    let input: Vec<f32> = (0..frames).map(|n| (0.05 * n as f32).sin()).collect();
    let out = render_delay(input.clone(), 5.0, frames, |graph, delay| {
        graph.param(delay.delay_time()).timeline().set_value_at_time((20.5 / SR) as f32, 200.0 / SR)?;
        Ok(())
    })?;
    let x: Vec<f64> = input.iter().map(|&v| v as f64).collect();
    let expected: Vec<f64> = (0..frames).map(|n| interpolate(&x, n as f64 - if n < 200 { 5.0 } else { 20.5 })).collect();
    assert_close(&out, &expected, 1e-6, "delayTime 5 -> 20.5 frames at frame 200");
    Ok(())
}

// ------------------------------------------------------------------ cycles

/// impulse -> gain(1) -> delay(D) -> destination, with delay -> gain(0.5) ->
/// delay closing a feedback loop.
fn render_feedback(delay_frames: f64, frames: usize) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let mut ctx = OfflineAudioContext::new(1, frames, SR as f32)?;
    let graph = ctx.graph();
    let source = buffer_source(graph, vec![1.0])?;
    let input = GainNode::new(graph, GainOptions { gain: 1.0, ..Default::default() })?;
    let delay =
        DelayNode::new(graph, DelayOptions { max_delay_time: 1.0, delay_time: (delay_frames / SR) as f32, ..Default::default() })?;
    let feedback = GainNode::new(graph, GainOptions { gain: 0.5, ..Default::default() })?;
    let dest = graph.destination();
    graph.connect(source, 0, input.id(), 0)?;
    graph.connect(input.id(), 0, delay.id(), 0)?;
    graph.connect(delay.id(), 0, feedback.id(), 0)?;
    graph.connect(feedback.id(), 0, delay.id(), 0)?;
    graph.connect(delay.id(), 0, dest, 0)?;
    Ok(ctx.start_rendering()?.channel_data(0).to_vec())
}

/// The f64 recursion: the delay's input is u[n] = x[n] + 0.5 y[n] and its
/// output y[n] = u(n - D), linearly interpolated; D >= 1 so u(n - D) only
/// needs values already computed. Integer D gives y[n] = x[n-D] + 0.5 y[n-D].
fn feedback_truth(x: &[f64], d: f64, frames: usize) -> Vec<f64> {
    assert!(d >= 1.0);
    let mut u: Vec<f64> = Vec::with_capacity(frames);
    let mut y = Vec::with_capacity(frames);
    for n in 0..frames {
        let yn = interpolate(&u, n as f64 - d);
        y.push(yn);
        u.push(x.get(n).copied().unwrap_or(0.0) + 0.5 * yn);
    }
    y
}

#[test]
fn feedback_loop_with_long_delay_follows_the_recursion() -> TestResult {
    let frames = 2048;
    for d in [128.0, 200.0, 300.5, 129.75] {
        let out = render_feedback(d, frames)?;
        let expected = feedback_truth(&[1.0], d, frames);
        assert_close(&out, &expected, 1e-6, &format!("feedback loop, delay {d} frames"));
    }
    // Integer D: echoes of 1, 0.5, 0.25, ... every D frames.
    let out = render_feedback(200.0, frames)?;
    for k in 1..10 {
        assert_eq!(out[200 * k], 0.5f32.powi(k as i32 - 1), "echo {k}");
    }
    Ok(())
}

/// Spec: a DelayNode in a cycle has its delayTime clamped to a minimum of
/// one render quantum (128 frames).
#[test]
fn feedback_loop_with_short_delay_is_clamped_to_one_quantum() -> TestResult {
    let frames = 2048;
    for d in [0.0, 10.0, 100.5, 127.0] {
        let out = render_feedback(d, frames)?;
        let expected = feedback_truth(&[1.0], 128.0, frames);
        assert_close(&out, &expected, 1e-6, &format!("feedback loop, delay {d} frames (clamped to 128)"));
    }
    Ok(())
}

#[test]
fn cycle_without_delay_is_refused_naming_its_nodes() -> TestResult {
    let mut ctx = OfflineAudioContext::new(1, 256, SR as f32)?;
    let graph = ctx.graph();
    let source = ConstantSourceNode::new(graph, ConstantSourceOptions::default())?;
    source.start(graph, 0.0)?;
    let g1 = GainNode::new(graph, GainOptions::default())?;
    let g2 = GainNode::new(graph, GainOptions::default())?;
    graph.set_label(g1.id(), "loop-a");
    graph.set_label(g2.id(), "loop-b");
    let dest = graph.destination();
    graph.connect(source.id(), 0, g1.id(), 0)?;
    graph.connect(g1.id(), 0, g2.id(), 0)?;
    graph.connect(g2.id(), 0, g1.id(), 0)?;
    graph.connect(g2.id(), 0, dest, 0)?;
    match ctx.start_rendering() {
        Err(ContextError::Compile(CompileError::CycleWithoutDelay(names))) => {
            assert!(names.contains("loop-a") && names.contains("loop-b"), "{names}");
            assert!(!names.contains("ConstantSource"), "only the cycle's nodes are named: {names}");
        }
        Err(other) => panic!("expected CycleWithoutDelay, got {other}"),
        Ok(_) => panic!("a cycle without a DelayNode must not render"),
    }
    Ok(())
}

#[test]
fn self_loop_without_delay_is_refused() -> TestResult {
    let mut ctx = OfflineAudioContext::new(1, 256, SR as f32)?;
    let graph = ctx.graph();
    let g = GainNode::new(graph, GainOptions::default())?;
    graph.set_label(g.id(), "self");
    graph.connect(g.id(), 0, g.id(), 0)?;
    let dest = graph.destination();
    graph.connect(g.id(), 0, dest, 0)?;
    let err = ctx.start_rendering().expect_err("a self-loop without a delay must not render");
    assert!(matches!(err, ContextError::Compile(CompileError::CycleWithoutDelay(_))), "{err}");
    assert!(err.to_string().contains("self"), "{err}");
    Ok(())
}

// -------------------------------------------------------------- scheduling

/// A ConstantSourceNode (offset 1) with the given start/stop, rendered mono.
fn render_constant(sr: f64, frames: usize, start: f64, stop: Option<f64>) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let mut ctx = OfflineAudioContext::new(1, frames, sr as f32)?;
    let graph = ctx.graph();
    let source = ConstantSourceNode::new(graph, ConstantSourceOptions { offset: 1.0 })?;
    source.start(graph, start)?;
    if let Some(stop) = stop {
        source.stop(graph, stop)?;
    }
    let dest = graph.destination();
    graph.connect(source.id(), 0, dest, 0)?;
    Ok(ctx.start_rendering()?.channel_data(0).to_vec())
}

/// Asserts `out` is 1 exactly on frames `first..last` and 0 elsewhere.
fn assert_plays(out: &[f32], first: usize, last: usize, what: &str) {
    for (n, &v) in out.iter().enumerate() {
        let expected = if (first..last).contains(&n) { 1.0 } else { 0.0 };
        assert_eq!(v, expected, "{what}: frame {n}");
    }
}

#[test]
fn start_and_stop_at_fractional_frame_times() -> TestResult {
    let sr = 48000.0;
    // First audible frame: ceil(start * sr); first silent frame: ceil(stop * sr).
    let out = render_constant(sr, 512, 100.3 / sr, Some(200.7 / sr))?;
    assert_plays(&out, 101, 201, "start 100.3, stop 200.7");
    let out = render_constant(sr, 1024, 300.5 / sr, None)?;
    assert_plays(&out, 301, 1024, "start 300.5 (third quantum)");
    let out = render_constant(sr, 1024, 127.01 / sr, Some(383.99 / sr))?;
    assert_plays(&out, 128, 384, "start 127.01, stop 383.99 (quantum boundaries)");
    Ok(())
}

#[test]
fn start_and_stop_on_exact_frame_times() -> TestResult {
    // At 32768 Hz, k / 32768 is exact: frame k is the first at or after it.
    let out = render_constant(SR, 1024, 64.0 / SR, Some(1000.0 / SR))?;
    assert_plays(&out, 64, 1000, "start 64, stop 1000");
    let out = render_constant(SR, 1024, 128.0 / SR, Some(256.0 / SR))?;
    assert_plays(&out, 128, 256, "one whole quantum");
    let out = render_constant(SR, 512, 0.0, None)?;
    assert_plays(&out, 0, 512, "start 0");
    Ok(())
}

#[test]
fn stop_before_start_never_plays() -> TestResult {
    let sr = 48000.0;
    let out = render_constant(sr, 1024, 0.01, Some(0.005))?;
    assert!(out.iter().all(|&v| v == 0.0), "stop before start must be silent");
    let out = render_constant(sr, 1024, 300.5 / sr, Some(300.6 / sr))?;
    assert!(out.iter().all(|&v| v == 0.0), "start and stop inside the same frame gap play nothing");
    Ok(())
}

#[test]
fn scheduling_errors() -> TestResult {
    let mut ctx = OfflineAudioContext::new(1, 128, 48000.0)?;
    let graph = ctx.graph();

    let twice = ConstantSourceNode::new(graph, ConstantSourceOptions::default())?;
    twice.start(graph, 0.0)?;
    assert!(matches!(twice.start(graph, 1.0), Err(NodeError::InvalidState { .. })), "start twice");

    let unstarted = ConstantSourceNode::new(graph, ConstantSourceOptions::default())?;
    assert!(matches!(unstarted.stop(graph, 1.0), Err(NodeError::InvalidState { .. })), "stop before start()");

    let negative = ConstantSourceNode::new(graph, ConstantSourceOptions::default())?;
    assert!(negative.start(graph, -1.0).is_err(), "start(-1)");
    assert!(negative.start(graph, f64::NAN).is_err(), "start(NaN)");
    negative.start(graph, 0.5)?; // the failed calls left it unstarted
    assert!(negative.stop(graph, -0.25).is_err(), "stop(-0.25)");
    negative.stop(graph, 0.75)?;

    // The same rules for AudioBufferSourceNode.
    let buffer = Arc::new(AudioBuffer::new(48000.0, vec![vec![1.0; 4]])?);
    let source = AudioBufferSourceNode::new(graph, AudioBufferSourceOptions { buffer: Some(buffer), ..Default::default() })?;
    assert!(source.stop(graph, 0.0).is_err(), "buffer source stop before start()");
    assert!(source.start(graph, -0.1).is_err(), "buffer source start(-0.1)");
    source.start(graph, 0.0)?;
    assert!(source.start(graph, 0.0).is_err(), "buffer source start twice");
    Ok(())
}

// ------------------------------------------------------------- graph files

fn graph_file_error(json: &str) -> String {
    let result = GraphFile::parse(json, Path::new("/tmp/x.json")).and_then(|file| file.offline_context(None, None));
    match result {
        Err(e) => e.to_string(),
        Ok(_) => panic!("expected an error for {json}"),
    }
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "error {message:?} should mention {part:?}");
    }
}

#[test]
fn graph_file_valid_baseline_builds() -> TestResult {
    // The error cases below each break one thing in files like this one.
    let json = r#"{
        "sampleRate": 32768, "length": 256, "numberOfChannels": 1,
        "nodes": [
            {"id": "src", "type": "ConstantSourceNode", "start": 0},
            {"id": "d", "type": "DelayNode", "options": {"maxDelayTime": 0.5, "delayTime": 0.25}},
            {"id": "osc", "type": "OscillatorNode", "params": {"frequency": [["exponentialRampToValueAtTime", 880, 1]]}}
        ],
        "connections": [{"from": "src", "to": "d"}, {"from": "d", "to": "destination"}, {"from": "osc", "to": "destination", "output": 0}]
    }"#;
    let ctx = GraphFile::parse(json, Path::new("/tmp/x.json"))?.offline_context(None, None)?;
    assert_eq!(ctx.length(), 256);
    Ok(())
}

#[test]
fn graph_file_malformed_json_reports_line_and_column() {
    let message = graph_file_error("{\n  \"length\": 10,\n  \"nodes\": [,]\n}");
    assert_mentions(&message, &["/tmp/x.json:3:", "malformed JSON"]);
}

#[test]
fn graph_file_unknown_node_type() {
    let message = graph_file_error(r#"{"length": 128, "nodes": [{"id": "mystery", "type": "FooNode"}]}"#);
    assert_mentions(&message, &["mystery", "FooNode", "type"]);
}

#[test]
fn graph_file_unknown_option_key() {
    let message =
        graph_file_error(r#"{"length": 128, "nodes": [{"id": "osc1", "type": "OscillatorNode", "options": {"frequncy": 440}}]}"#);
    assert_mentions(&message, &["osc1", "options", "frequncy"]);
}

#[test]
fn graph_file_unknown_top_level_key() {
    let message = graph_file_error(r#"{"length": 128, "nodez": []}"#);
    assert_mentions(&message, &["nodez"]);
}

#[test]
fn graph_file_unknown_param_name() {
    let message = graph_file_error(
        r#"{"length": 128, "nodes": [{"id": "amp", "type": "GainNode", "params": {"gian": [["setValueAtTime", 1, 0]]}}]}"#,
    );
    assert_mentions(&message, &["amp", "params", "gian"]);
}

#[test]
fn graph_file_output_index_out_of_range() {
    let message = graph_file_error(
        r#"{"length": 128, "nodes": [{"id": "osc", "type": "OscillatorNode"}],
            "connections": [{"from": "osc", "to": "destination", "output": 1}]}"#,
    );
    assert_mentions(&message, &["connections[0]", "osc", "output 1"]);
}

#[test]
fn graph_file_connection_to_missing_node() {
    let message = graph_file_error(
        r#"{"length": 128, "nodes": [{"id": "osc", "type": "OscillatorNode"}],
            "connections": [{"from": "osc", "to": "destination"}, {"from": "osc", "to": "nowhere"}]}"#,
    );
    assert_mentions(&message, &["connections[1]", "to", "nowhere"]);
}

#[test]
fn graph_file_exponential_ramp_to_zero() {
    let message = graph_file_error(
        r#"{"length": 128, "nodes": [{"id": "osc7", "type": "OscillatorNode",
            "params": {"frequency": [["setValueAtTime", 440, 0], ["exponentialRampToValueAtTime", 0, 1]]}}]}"#,
    );
    assert_mentions(&message, &["osc7", "frequency", "exponentialRampToValueAtTime"]);
}

#[test]
fn graph_file_delay_time_above_max_delay_time() {
    let message = graph_file_error(
        r#"{"length": 128, "nodes": [{"id": "echo", "type": "DelayNode", "options": {"maxDelayTime": 0.5, "delayTime": 1}}]}"#,
    );
    assert_mentions(&message, &["echo", "delayTime"]);
}

#[test]
fn graph_file_negative_length() {
    let message = graph_file_error(r#"{"length": -5}"#);
    assert_mentions(&message, &["length", "-5"]);
}

#[test]
fn graph_file_missing_wav_file() {
    let message = graph_file_error(
        r#"{"length": 128, "nodes": [{"id": "sample", "type": "AudioBufferSourceNode",
            "options": {"buffer": {"file": "byob-test-definitely-missing.wav"}}}]}"#,
    );
    assert_mentions(&message, &["sample", "buffer", "byob-test-definitely-missing.wav"]);
}

/// Spec (AudioScheduledSourceNode.stop): a source that has stopped stays
/// stopped; a later `stop` with a later time does not restart it.
#[test]
fn a_stopped_source_is_not_restarted_by_a_later_stop() {
    let ctx = OfflineAudioContext::new(1, 2400, 48000.0).unwrap();
    let mut ctx = ctx;
    let g = ctx.graph();
    let source = ConstantSourceNode::new(g, ConstantSourceOptions { offset: 1.0 }).unwrap();
    let destination = g.destination();
    g.connect(source.id(), 0, destination, 0).unwrap();
    source.start(g, 0.0).unwrap();
    source.stop(g, 256.0 / 48000.0).unwrap();
    let rendered = ctx
        .render_changing(|_| {}, |graph, frame| {
            if frame == 1024 {
                source.stop(graph, 2000.0 / 48000.0).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .unwrap();
    let out = rendered.buffer.channel_data(0);
    assert!(out[..256].iter().all(|&s| s == 1.0));
    assert!(out[256..].iter().all(|&s| s == 0.0), "restarted at frame {:?}", out[256..].iter().position(|&s| s != 0.0));
}
