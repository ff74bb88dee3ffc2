//! # byob-fuzz
//!
//! What each fuzz target does with its input, in one place for the two
//! drivers: `fuzz/` (cargo-fuzz and libFuzzer, for long coverage-guided
//! runs during development) and `tests/replay.rs` (the committed corpus
//! and a fixed number of seeded mutations of it, in the test command).
//!
//! Every target feeds bytes to a public entry point the way a user's file
//! would reach it, then uses what loaded for a few quanta or one run. A
//! target never fails on its own: errors are the expected outcome of most
//! inputs. A panic, an abort, a hang or an allocation past the limits set
//! here is the bug the fuzzer looks for.

#![forbid(unsafe_code)]

use byob_audio::worklet::{AudioWorkletNode, AudioWorkletNodeOptions, ProcessorRegistry};
use byob_audio::{AudioBuffer, AudioNode, OfflineAudioContext, RENDER_QUANTUM_SIZE};
use byob_tensor::{DataType, SessionBuilder, Tensor};
use byob_wasm::{Abi, Limits, WasmHost};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// Memory one fuzz input may make byob take: far below libFuzzer's 2 GB
/// RSS limit, so that an input that gets past a limit is reported as the
/// bug it is rather than as a memory exhaustion of the fuzzer's own.
const MEMORY: usize = 256 << 20;

/// Quanta rendered per input: enough to run every node's first blocks.
const QUANTA: usize = 4;

/// A target: its name (the corpus folder) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, by name.
pub const TARGETS: &[Target] = &[("graph_json", graph_json), ("wav", wav), ("npy", npy), ("wasm_module", wasm_module), ("onnx_model", onnx_model)];

/// A graph file: parsed, built with the example processors under a memory
/// limit, and rendered for a few quanta.
pub fn graph_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(file) = byob_audio::graph_file::GraphFile::parse(text, Path::new("/nonexistent/fuzz.json")) else { return };
    let length = file.length().min(QUANTA * RENDER_QUANTUM_SIZE);
    let registry = ProcessorRegistry::with_examples();
    // The score too: its entries change the graph between quanta.
    if let Ok((ctx, mut score)) = file.offline_score_context(None, Some(length), &registry, MEMORY) {
        let _ = ctx.render_changing(|_| {}, |graph, frame| score.apply_due(graph, frame).map_err(|e| e.to_string()));
    }
}

/// WAV bytes, as an AudioBufferSourceNode's file.
pub fn wav(data: &[u8]) {
    let _ = AudioBuffer::read_wav(data, data.len() as u64, Path::new("fuzz.wav"));
}

/// `.npy` bytes, as `byob run --input`.
pub fn npy(data: &[u8]) {
    let _ = byob_tensor::npy::read_bytes(data, Path::new("fuzz.npy"));
}

fn wasm_host() -> &'static WasmHost {
    static HOST: OnceLock<WasmHost> = OnceLock::new();
    HOST.get_or_init(|| {
        let limits = Limits { max_time_per_call: Duration::from_millis(5), max_memory_bytes: 64 << 20, ..Limits::default() };
        WasmHost::new(limits).expect("wasmtime starts")
    })
}

/// A WebAssembly module (binary or text), loaded under each ABI; what
/// loads is run as a mono node for a few quanta.
pub fn wasm_module(data: &[u8]) {
    for abi in [Abi::Byob, Abi::Copy, Abi::Faust] {
        let Ok(definition) = wasm_host().load_bytes("fuzz.wasm", data, abi, None) else { continue };
        let Ok(mut ctx) = OfflineAudioContext::new(1, QUANTA * RENDER_QUANTUM_SIZE, 48000.0) else { continue };
        let graph = ctx.graph();
        let Ok(node) = AudioWorkletNode::from_definition(graph, &definition, "fuzz", AudioWorkletNodeOptions::default()) else { continue };
        let destination = graph.destination();
        if graph.connect(node.id(), 0, destination, 0).is_ok() {
            let _ = ctx.render(|_| {});
        }
    }
}

/// An ONNX model: a session under tensor and run limits, run once on
/// zeros (unknown dimensions as 2, inputs of at most 4,096 elements).
pub fn onnx_model(data: &[u8]) {
    let builder = SessionBuilder::new().with_intra_op_threads(1).with_max_tensor_bytes(MEMORY / 4).with_max_run_bytes(MEMORY);
    let Ok(session) = builder.commit_from_memory(data) else { return };
    let mut feeds = Vec::new();
    for input in session.inputs() {
        let dtype = input.dtype.unwrap_or(DataType::F32);
        let shape: Vec<usize> = input.shape.iter().flatten().map(|d| if let byob_tensor::Dim::Known(n) = d { *n } else { 2 }).collect();
        if shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).is_none_or(|n| n > 4096) {
            return;
        }
        let Ok(tensor) = Tensor::zeros(dtype, &shape) else { return };
        feeds.push((input.name.clone(), tensor));
    }
    let _ = session.run(feeds);
}
