//! An "onnx" node in mode "render" runs its model inside the render
//! quantum: rendering must not touch the heap, as for every other node.

use assert_no_alloc::{assert_no_alloc, AllocDisabler};
use byob_audio::*;
use byob_neural::{create_node, Clock, Mode, NeuralNodes, NeuralStatus, OnnxOptions};
use byob_tensor::Tensor;
use std::path::Path;
use std::sync::Arc;

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

/// Three seconds of speech through a Silero VAD node gating the voice;
/// every quantum rendered with the heap forbidden.
fn render_gated_speech(mode: Mode, nodes: &NeuralNodes, on_another_thread: bool) -> Arc<NeuralStatus> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let speech = AudioBuffer::from_wav(&root.join("examples/graphs/speech.wav")).unwrap();
    let mut options = OnnxOptions::new(root.join("crates/byob-tensor/tests/data/real-models/models/silero_vad.onnx"), 512);
    options.context = 64;
    options.constants.push(("sr".into(), Tensor::i64(vec![], vec![16000]).unwrap()));
    options.state.push(("stateN".into(), "state".into()));
    options.output = Some("output".into());
    options.mode = mode;
    let mut graph = AudioGraph::new(16000.0, 1).unwrap();
    let g = &mut graph;
    let (vad, status) = create_node(g, nodes, options, AudioWorkletNodeOptions::default()).unwrap();
    let player = AudioBufferSourceNode::new(g, AudioBufferSourceOptions { buffer: Some(Arc::new(speech)), ..Default::default() }).unwrap();
    player.start_with(g, 0.0, None, None).unwrap();
    let gate = GainNode::new(g, GainOptions { gain: 0.0, ..Default::default() }).unwrap();
    g.connect(player.id(), 0, vad.id(), 0).unwrap();
    g.connect(player.id(), 0, gate.id(), 0).unwrap();
    g.connect_param(vad.id(), 0, gate.gain()).unwrap();
    let destination = g.destination();
    g.connect(gate.id(), 0, destination, 0).unwrap();
    let mut render = graph.compile().unwrap();
    let mut play = move || {
        for _ in 0..375 {
            let block = assert_no_alloc(|| render.render_quantum());
            std::hint::black_box(block);
        }
    };
    if on_another_thread {
        std::thread::spawn(play).join().unwrap();
    } else {
        play();
    }
    status
}

#[test]
fn a_silero_vad_node_renders_without_allocating() {
    // Three seconds: speech and silence, 93 inferences.
    let status = render_gated_speech(Mode::Render, &NeuralNodes::default(), false);
    assert_eq!(status.inferences(), 93);
    assert_eq!(status.error(), None);
}

/// As `byob play` does: the node is made (and its model first run) on the
/// control thread, and renders on another, the device's. The kernels'
/// working arrays travel with the node's run handle.
#[test]
fn a_silero_vad_node_renders_without_allocating_on_another_thread() {
    let status = render_gated_speech(Mode::Render, &NeuralNodes::default(), true);
    assert_eq!(status.inferences(), 93);
}

/// Mode "worker" in real time: the render thread only moves jobs through
/// the queues (the inference thread may allocate; it is not the render
/// thread), and never waits for them.
#[test]
fn a_worker_mode_node_renders_without_allocating() {
    let status = render_gated_speech(Mode::Worker, &NeuralNodes::new(Clock::RealTime), false);
    assert_eq!(status.error(), None);
}

/// An audio output on the zero-copy path: each quantum the node lends the
/// engine 128 samples of the model's output tensor, without allocating.
#[test]
fn an_audio_output_lent_to_the_engine_renders_without_allocating() {
    let mut options = OnnxOptions::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/window.onnx"), 256);
    options.context = 64;
    let mut graph = AudioGraph::new(16000.0, 1).unwrap();
    let g = &mut graph;
    let (node, status) = create_node(g, &NeuralNodes::default(), options, AudioWorkletNodeOptions::default()).unwrap();
    let source = OscillatorNode::new(g, OscillatorOptions::default()).unwrap();
    source.start(g, 0.0).unwrap();
    g.connect(source.id(), 0, node.id(), 0).unwrap();
    let destination = g.destination();
    g.connect(node.id(), 0, destination, 0).unwrap();
    let mut render = graph.compile().unwrap();
    for _ in 0..100 {
        let block = assert_no_alloc(|| render.render_quantum());
        std::hint::black_box(block);
    }
    assert_eq!((status.inferences(), status.bytes_copied_out()), (50, 0));
}
