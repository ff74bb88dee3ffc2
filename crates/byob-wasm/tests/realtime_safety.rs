//! The host side of a call into a WebAssembly module allocates nothing: a
//! graph with byob-ABI, copy-ABI and Faust modules renders under an
//! allocation-denying global allocator.

use assert_no_alloc::{assert_no_alloc, AllocDisabler};
use byob_audio::worklet::AudioWorkletNodeOptions;
use byob_audio::*;
use byob_wasm::{Abi, Limits, WasmHost};
use std::path::Path;

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

fn module(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/modules").join(name)
}

#[test]
fn calls_into_modules_allocate_nothing() {
    let host = WasmHost::new(Limits::default()).unwrap();
    let gain = AudioParamDescriptor::new("gain", 0.5, 0.0, 1.0, AutomationRate::ARate);
    let byob = host.load(&module("gain.wat"), Abi::Byob, Some(vec![gain.clone()])).unwrap();
    let copy = host.load(&module("gain-copy.wat"), Abi::Copy, Some(vec![gain])).unwrap();
    let faust = host.load(&module("tremolo.wasm"), Abi::Faust, None).unwrap();
    let mut graph = AudioGraph::new(48000.0, 2).unwrap();
    let g = &mut graph;
    let destination = g.destination();
    let osc = OscillatorNode::new(g, OscillatorOptions::default()).unwrap();
    osc.start(g, 0.0).unwrap();
    let mut previous = osc.id();
    for (definition, name) in [(&byob, "byob"), (&copy, "copy")] {
        let node = AudioWorkletNode::from_definition(g, definition, name, AudioWorkletNodeOptions::default()).unwrap();
        g.connect(previous, 0, node.id(), 0).unwrap();
        g.param(node.parameter("gain").unwrap()).linear_ramp_to_value_at_time(1.0, 0.05).unwrap();
        previous = node.id();
    }
    let tremolo = AudioWorkletNode::from_definition(g, &faust, "tremolo", AudioWorkletNodeOptions::default()).unwrap();
    g.connect(previous, 0, tremolo.id(), 0).unwrap();
    g.param(tremolo.parameter("/tremolo/rate").unwrap()).linear_ramp_to_value_at_time(12.0, 0.05).unwrap();
    g.connect(tremolo.id(), 0, destination, 0).unwrap();
    let mut render = graph.compile().unwrap();
    let mut energy = 0.0f64;
    for _ in 0..30 {
        let block = assert_no_alloc(|| render.render_quantum());
        energy += block.channels().iter().flatten().map(|&s| (s as f64).powi(2)).sum::<f64>();
    }
    assert!(energy > 0.0, "the modules should pass the tone through");
}
