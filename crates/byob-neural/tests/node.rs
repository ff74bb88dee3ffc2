//! The neural node against independent truth: Silero VAD's probabilities
//! from ONNX Runtime (scripts/make-neural-node-tests.py), and small models
//! whose output is the input delayed by a known amount.

use byob_audio::*;
use byob_neural::{create_node, Layout, Mode, NeuralNodes, NeuralStatus, OnnxOptions};
use byob_tensor::Tensor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn silero(frame: usize) -> OnnxOptions {
    let mut options = OnnxOptions::new(repo("crates/byob-tensor/tests/data/real-models/models/silero_vad.onnx"), frame);
    options.context = 64;
    options.sample_rate = Some(16000.0);
    options.input = Some("input".into());
    options.constants.push(("sr".into(), Tensor::i64(vec![], vec![16000]).unwrap()));
    options.state.push(("stateN".into(), "state".into()));
    options.output = Some("output".into());
    options
}

fn reference_probabilities() -> Vec<f32> {
    let bytes = std::fs::read(data("silero_16k_probs.npy")).unwrap();
    npyz::NpyFile::new(&bytes[..]).unwrap().into_vec::<f32>().unwrap()
}

/// Renders `source` through a node made from `options` at `rate`; returns
/// the node's output, its status and the processor errors.
fn render(source: AudioBuffer, rate: f32, options: OnnxOptions, worklet: AudioWorkletNodeOptions) -> (Vec<f32>, Arc<NeuralStatus>, Vec<String>, u64) {
    let length = (source.duration() * rate as f64).round() as usize;
    let mut ctx = OfflineAudioContext::new(1, length, rate).unwrap();
    let g = ctx.graph();
    let (node, status) = create_node(g, &NeuralNodes::default(), options, worklet).unwrap();
    let player = AudioBufferSourceNode::new(g, AudioBufferSourceOptions { buffer: Some(Arc::new(source)), ..Default::default() }).unwrap();
    player.start_with(g, 0.0, None, None).unwrap();
    g.connect(player.id(), 0, node.id(), 0).unwrap();
    let destination = g.destination();
    g.connect(node.id(), 0, destination, 0).unwrap();
    let worklet_status = node.status().clone();
    let rendered = ctx.render(|_| {}).unwrap();
    let errors = rendered.processor_errors.iter().map(|e| e.message.clone()).collect();
    (rendered.buffer.channel_data(0).to_vec(), status, errors, worklet_status.bytes_copied())
}

fn speech() -> AudioBuffer {
    AudioBuffer::from_wav(&repo("examples/graphs/speech.wav")).unwrap()
}

#[test]
fn silero_at_16k_matches_onnx_runtime_one_frame_late_with_no_copy() {
    let probabilities = reference_probabilities();
    let (out, status, errors, engine_copied) = render(speech(), 16000.0, silero(512), AudioWorkletNodeOptions::default());
    assert!(errors.is_empty(), "{errors:?}");
    assert!(out[..512].iter().all(|&v| v == 0.0), "nothing before the first frame completes");
    for (k, &p) in probabilities.iter().enumerate() {
        let held = &out[(k + 1) * 512..((k + 2) * 512).min(out.len())];
        for &v in held {
            assert!((v - p).abs() <= 1e-4, "frame {k}: {v} against ONNX Runtime's {p}");
        }
    }
    assert_eq!(status.inferences(), probabilities.len() as u64);
    assert!(status.zero_copy());
    assert_eq!(status.bytes_copied_in(), 0, "the engine mixes into the model's input");
    assert_eq!(engine_copied, 0, "the engine copies nothing in or out of the node");
    assert_eq!(status.context_bytes_moved(), probabilities.len() as u64 * 64 * 4);
    assert_eq!(status.latency_seconds(), 512.0 / 16000.0);
}

#[test]
fn silero_at_48k_decides_as_at_16k() {
    let probabilities = reference_probabilities();
    let (out, status, errors, _) = render(speech(), 48000.0, silero(512), AudioWorkletNodeOptions::default());
    assert!(errors.is_empty(), "{errors:?}");
    assert!(!status.zero_copy());
    // Frame k's decision, read mid-way through the span it is held for.
    let latency = status.latency_seconds();
    let frame_seconds = 512.0 / 16000.0;
    let mut agree = 0;
    for (k, &p) in probabilities.iter().enumerate() {
        let t = k as f64 * frame_seconds + latency + frame_seconds / 2.0;
        let Some(&v) = out.get((t * 48000.0) as usize) else { continue };
        agree += usize::from((v > 0.5) == (p > 0.5));
    }
    let share = agree as f64 / probabilities.len() as f64;
    assert!(share >= 0.95, "{:.1}% of the decisions agree", share * 100.0);
}

/// window.onnx outputs the first `frame` samples of its `64 + frame`
/// input: the node's output is its input delayed by `frame + 64`.
fn delayed_by_frame_and_context(frame: usize) {
    let rate = 16000.0;
    let input: Vec<f32> = (0..4000).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let mut options = OnnxOptions::new(data("window.onnx"), frame);
    options.context = 64;
    let (out, status, errors, _) = render(AudioBuffer::new(rate, vec![input.clone()]).unwrap(), rate, options, AudioWorkletNodeOptions::default());
    assert!(errors.is_empty(), "{errors:?}");
    for (t, &v) in out.iter().enumerate() {
        let expected = t.checked_sub(frame + 64).map_or(0.0, |s| input[s]);
        // Before the first inference the node plays silence, not the zeros
        // of a window (the same here).
        assert_eq!(v, if t < frame { 0.0 } else { expected }, "sample {t}, frame {frame}");
    }
    // The render runs whole quanta, past the context's length.
    assert_eq!(status.inferences(), (out.len().div_ceil(128) * 128 / frame) as u64);
    // Where quanta land whole in frames, the engine reads the output where
    // the model wrote it; otherwise each quantum is copied out.
    let quanta = out.len().div_ceil(128) as u64;
    assert_eq!(status.bytes_copied_out(), if frame.is_multiple_of(128) { 0 } else { quanta * 512 }, "frame {frame}");
}

#[test]
fn an_audio_output_is_the_frame_played_one_frame_late() {
    // A multiple of 128: the engine mixes into the model's input.
    delayed_by_frame_and_context(256);
    // Quanta straddle frames: the node copies.
    delayed_by_frame_and_context(200);
}

/// A stereo input reaches a [1, 2, N] or [1, N, 2] tensor channel by
/// channel: the models output the mean of channel 1 over the window.
#[test]
fn multichannel_layouts_put_each_channel_where_the_model_reads_it() {
    let rate = 16000.0;
    let (frame, context) = (200, 40);
    let left: Vec<f32> = (0..3000).map(|i| (i as f32 * 0.01).sin()).collect();
    let right: Vec<f32> = (0..3000).map(|i| (i % 300) as f32 / 300.0).collect();
    for (layout, model) in [(Layout::ChannelsFirst, "second_channel_mean_first.onnx"), (Layout::ChannelsLast, "second_channel_mean_last.onnx")] {
        let mut options = OnnxOptions::new(data(model), frame);
        options.context = context;
        options.layout = layout;
        options.channels = 2;
        let source = AudioBuffer::new(rate, vec![left.clone(), right.clone()]).unwrap();
        let (out, status, errors, _) = render(source, rate, options, AudioWorkletNodeOptions::default());
        assert!(errors.is_empty(), "{errors:?}");
        assert!(status.inferences() >= 14);
        for k in 0..14 {
            // The window of frame k: samples kF - C .. (k+1)F, zeros before 0.
            let sum: f64 = (0..frame + context).map(|j| (k * frame + j).checked_sub(context).map_or(0.0, |s| right[s] as f64)).sum();
            let mean = sum / (frame + context) as f64;
            let held = out[(k + 1) * frame];
            assert!((held as f64 - mean).abs() < 1e-5, "{layout:?}, frame {k}: {held} against {mean}");
        }
    }
}

#[test]
fn a_model_that_fails_while_rendering_silences_its_node() {
    let options = OnnxOptions::new(data("fails_when_loud.onnx"), 128);
    let rate = 16000.0;
    let mut input = vec![0.0; 2000];
    input[1000] = 0.5;
    let (out, status, errors, _) = render(AudioBuffer::new(rate, vec![input]).unwrap(), rate, options, AudioWorkletNodeOptions::default());
    assert_eq!(errors.len(), 1, "one processorerror");
    assert!(errors[0].contains("Gather"), "{}", errors[0]);
    assert!(status.error().is_some());
    // Before the loud frame (896..1024): the table's first value, one
    // frame late; the quantum whose inference failed is silent, as every
    // one after it.
    let wrong = out[128..896].iter().position(|&v| v != 0.1).map(|i| (i + 128, out[i + 128]));
    assert_eq!(wrong, None, "the table's first value until the failure");
    assert!(out[896..].iter().all(|&v| v == 0.0), "silence from the failure on");
}

fn construction_error(options: OnnxOptions) -> String {
    let mut graph = AudioGraph::new(16000.0, 1).unwrap();
    match create_node(&mut graph, &NeuralNodes::default(), options, AudioWorkletNodeOptions::default()) {
        Ok(_) => panic!("the node was made"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_options_name_the_key() {
    let cases: Vec<(OnnxOptions, &str)> = vec![
        (OnnxOptions::new(data("missing.onnx"), 512), "processorOptions.model"),
        ({ let mut o = silero(512); o.input = Some("audio".into()); o }, "processorOptions.input: the model has no input \"audio\""),
        ({ let mut o = silero(512); o.output = Some("probability".into()); o }, "processorOptions.output: the model has no output"),
        ({ let mut o = silero(512); o.state = vec![("stateM".into(), "state".into())]; o }, "processorOptions.state.stateM"),
        ({ let mut o = silero(512); o.state = vec![("output".into(), "state".into())]; o.output = Some("stateN".into()); o }, "processorOptions.state.output"),
        ({ let mut o = silero(512); o.constants.clear(); o }, "processorOptions.constants: the model's input \"sr\" is fed by nothing"),
        ({ let mut o = silero(512); o.constants.push(("rate".into(), Tensor::i64(vec![], vec![1]).unwrap())); o }, "processorOptions.constants.rate"),
        (OnnxOptions::new(data("fixed_320.onnx"), 512), "processorOptions.frame: input \"x\" takes 320"),
        ({ let mut o = OnnxOptions::new(data("window.onnx"), 512); o.ep = byob_neural::Ep::WebGpu; o }, "processorOptions.ep"),
        ({ let mut o = OnnxOptions::new(data("window.onnx"), 512); o.deadline = Some(0.01); o }, "processorOptions.deadline"),
        ({ let mut o = silero(512); o.input = Some("state".into()); o }, "processorOptions.input: input \"state\" is already fed"),
        ({ let mut o = silero(512); o.input = Some("sr".into()); o }, "processorOptions.input: input \"sr\" is already fed"),
        ({ let mut o = silero(512); o.output = Some("stateN".into()); o }, "processorOptions.output: output \"stateN\" is a state"),
        ({ let mut o = worker(OnnxOptions::new(data("window.onnx"), 8)); o.context = 64; o.deadline = Some(30.0); o }, "processorOptions.deadline"),
    ];
    for (options, expected) in cases {
        let message = construction_error(options);
        assert!(message.contains(expected), "{message:?} should contain {expected:?}");
    }
}

fn worker(mut options: OnnxOptions) -> OnnxOptions {
    options.mode = Mode::Worker;
    options
}

/// Mode "worker" plays what mode "render" plays, later by the reported
/// latency's difference (whole quanta): the same samples, every one.
fn worker_is_render_delayed(source: AudioBuffer, rate: f32, options: OnnxOptions) -> (Vec<f32>, Arc<NeuralStatus>) {
    let (rendered, render_status, errors, _) = render(source.clone(), rate, options.clone(), AudioWorkletNodeOptions::default());
    assert!(errors.is_empty(), "{errors:?}");
    let (delayed, status, errors, _) = render(source, rate, worker(options), AudioWorkletNodeOptions::default());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(status.mode(), Mode::Worker);
    let delay = ((status.latency_seconds() - render_status.latency_seconds()) * rate as f64).round() as usize;
    assert!(delay >= 128 && delay.is_multiple_of(128), "the worker's delay is whole quanta: {delay}");
    assert!(delayed[..delay].iter().all(|&v| v == 0.0), "nothing before the first result is due");
    assert_eq!(&delayed[delay..], &rendered[..rendered.len() - delay], "mode worker is mode render delayed by {delay} samples");
    assert_eq!(status.deadlines_missed(), 0, "offline, every result is waited for");
    (delayed, status)
}

#[test]
fn silero_in_worker_mode_is_render_mode_delayed_by_its_latency() {
    let (first, status) = worker_is_render_delayed(speech(), 16000.0, silero(512));
    assert!(status.zero_copy());
    assert_eq!(status.bytes_copied_in(), 0, "the engine mixes into each job's input tensor");
    // Offline, mode "worker" is deterministic: a second render is the same.
    let (second, _, _, _) = render(speech(), 16000.0, worker(silero(512)), AudioWorkletNodeOptions::default());
    assert_eq!(first, second);
}

#[test]
fn worker_mode_keeps_render_mode_timing_on_every_path() {
    let input: Vec<f32> = (0..4000).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    for frame in [256, 200] {
        let mut options = OnnxOptions::new(data("window.onnx"), frame);
        options.context = 64;
        let (_, status) = worker_is_render_delayed(AudioBuffer::new(16000.0, vec![input.clone()]).unwrap(), 16000.0, options);
        assert_eq!(status.zero_copy(), frame == 256);
    }
    // Resampled: Silero at 16 kHz inside a 48 kHz context.
    let (_, status) = worker_is_render_delayed(speech(), 48000.0, silero(512));
    assert!(!status.zero_copy());
}

#[test]
fn a_model_that_fails_on_the_inference_thread_silences_its_node() {
    let mut input = vec![0.0; 4000];
    input[1000] = 0.5;
    let (out, status, errors, _) = render(AudioBuffer::new(16000.0, vec![input]).unwrap(), 16000.0, worker(OnnxOptions::new(data("fails_when_loud.onnx"), 128)), AudioWorkletNodeOptions::default());
    assert_eq!(errors.len(), 1, "one processorerror");
    assert!(errors[0].contains("Gather"), "{}", errors[0]);
    assert!(status.error().is_some());
    assert!(out[out.len() - 128..].iter().all(|&v| v == 0.0), "silence after the failure");
}

/// ep "webgpu" (mode "worker" only): the WebGPU provider (a software
/// adapter where there is no GPU) gives Silero VAD's probabilities as the
/// CPU does, at the same times.
#[test]
fn silero_on_webgpu_matches_the_cpu_in_worker_mode() {
    let mut options = worker(silero(512));
    options.deadline = Some(0.05);
    let (cpu, _, errors, _) = render(speech(), 16000.0, options.clone(), AudioWorkletNodeOptions::default());
    assert!(errors.is_empty(), "{errors:?}");
    options.ep = byob_neural::Ep::WebGpu;
    let (gpu, status, errors, _) = render(speech(), 16000.0, options, AudioWorkletNodeOptions::default());
    assert!(errors.is_empty(), "{errors:?}");
    let (on_gpu, steps) = status.gpu_steps().expect("ep webgpu");
    eprintln!("{on_gpu} of {steps} steps on the GPU");
    assert!(on_gpu > 0, "some of Silero VAD's steps run on the GPU");
    let worst = cpu.iter().zip(&gpu).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(worst <= 1e-4, "the GPU's probabilities differ from the CPU's by {worst}");
    assert_eq!(status.inferences(), (cpu.len() / 512) as u64);
}
