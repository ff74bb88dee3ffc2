//! Mode "worker" under a real-time clock, without a device: this test's
//! thread paces render quanta as a device would (one every 8 ms at
//! 16 kHz). The model is far slower than the frames it is given; the render
//! thread must never wait for it, and the deadlines it misses are counted.

use byob_audio::*;
use byob_neural::{create_node, Clock, Mode, NeuralModel, NeuralNodes, OnnxOptions};
use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn a_slow_model_never_delays_a_quantum_and_its_missed_deadlines_are_counted() {
    let rate = 16000.0;
    let mut options = OnnxOptions::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/slow.onnx"), RENDER_QUANTUM_SIZE);
    // What one inference costs here: the yardstick for "waited".
    let mut model = NeuralModel::load(&options).unwrap();
    let inference = (0..3).map(|_| model.worst_inference(1).unwrap()).min().unwrap();
    let period = Duration::from_secs_f64(RENDER_QUANTUM_SIZE as f64 / rate as f64);
    assert!(inference > period, "slow.onnx should be slower than a quantum here; it takes {inference:?}");

    options.mode = Mode::Worker;
    options.deadline = Some(period.as_secs_f64());
    let nodes = NeuralNodes::new(Clock::RealTime);
    let mut graph = AudioGraph::new(rate, 1).unwrap();
    let g = &mut graph;
    let (node, status) = create_node(g, &nodes, options, AudioWorkletNodeOptions::default()).unwrap();
    let source = ConstantSourceNode::new(g, ConstantSourceOptions { offset: 0.25 }).unwrap();
    source.start(g, 0.0).unwrap();
    g.connect(source.id(), 0, node.id(), 0).unwrap();
    let destination = g.destination();
    g.connect(node.id(), 0, destination, 0).unwrap();
    let mut render = graph.compile().unwrap();

    let quanta = 125; // one second
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut last = 0.0;
    for q in 0..quanta {
        if let Some(wait) = (start + period * q).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let began = Instant::now();
        let block = render.render_quantum();
        slowest = slowest.max(began.elapsed());
        last = block.channel(0)[RENDER_QUANTUM_SIZE - 1];
    }
    assert!(slowest < inference / 2, "a quantum took {slowest:?}: it waited for an inference ({inference:?})");
    assert_eq!(status.error(), None);
    let (inferences, missed) = (status.inferences(), status.deadlines_missed());
    eprintln!("one inference {inference:?}; slowest quantum {slowest:?}; {inferences} inferences and {missed} deadlines missed for {quanta} frames");
    assert!(inferences < quanta as u64, "the model cannot keep up: {inferences} inferences for {quanta} frames");
    assert!(missed > 0, "deadlines missed are counted");
    // Every frame due by the end was either in time or missed.
    assert!(missed <= quanta as u64);
    // A missed deadline repeats the last result: the output is the model's
    // value (about 0.002), not silence, once a first result came.
    if inferences > 1 {
        assert!(last > 0.0, "the last result is held");
    }
}
