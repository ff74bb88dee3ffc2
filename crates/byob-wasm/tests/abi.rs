//! The WebAssembly host's ABIs, end to end: modules (inline WAT, the
//! example files, a C source built with clang) run inside AudioWorkletNodes
//! of offline renders.
//!
//! Expected audio is computed here from the sources' known values, the gain
//! each module applies and the Web Audio spec's mixing equations; expected
//! copy counts from the ABI's rules (byob: only PARAM regions are written,
//! 512 bytes each per quantum; copy: every channel in and out, twice).
//!
//! The sample rate is a power of two so that times of whole frames are exact.

use byob_audio::context::Rendered;
use byob_audio::graph_file::GraphFile;
use byob_audio::worklet::{AudioWorkletNode, AudioWorkletNodeOptions, ModuleLoader, ProcessorDefinition, ProcessorRegistry, WorkletStatus};
use byob_audio::{
    AudioBuffer, AudioBufferSourceNode, AudioBufferSourceOptions, AudioGraph, AudioNode, AudioNodeOptions, AudioParamDescriptor,
    AudioScheduledSourceNode, AutomationRate, ChannelCountMode, ConstantSourceNode, ConstantSourceOptions, NodeId, OfflineAudioContext,
};
use byob_wasm::{Abi, Limits, LoadError, WasmHost};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

type TestResult = Result<(), Box<dyn std::error::Error>>;
type Res<T> = Result<T, Box<dyn std::error::Error>>;

const SR: f32 = 32768.0;
/// Frames per render quantum.
const N: usize = 128;
/// Bytes of one channel of one quantum: 128 f32.
const CH: u64 = 512;
const H: f64 = std::f64::consts::FRAC_1_SQRT_2;
const TOLERANCE: f64 = 1e-6;
/// The worklet node's label in processor errors.
const LABEL: &str = "wasm-node";

// ---------------------------------------------------------------- helpers

fn host() -> WasmHost {
    WasmHost::new(Limits::default()).expect("setting up wasmtime")
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/modules")
}

fn gain_param() -> AudioParamDescriptor {
    AudioParamDescriptor::new("gain", 1.0, -100.0, 100.0, AutomationRate::ARate)
}

fn load(host: &WasmHost, name: &str, wat: &str, abi: Abi, params: Option<Vec<AudioParamDescriptor>>) -> ProcessorDefinition {
    match host.load_bytes(name, wat.as_bytes(), abi, params) {
        Ok(d) => d,
        Err(e) => panic!("{name} should load: {e}"),
    }
}

fn load_error(host: &WasmHost, name: &str, bytes: &[u8], abi: Abi) -> LoadError {
    match host.load_bytes(name, bytes, abi, None) {
        Ok(_) => panic!("{name} loaded, but it should not"),
        Err(e) => e,
    }
}

/// A varying signal, distinct per channel.
fn wave(c: usize, n: usize) -> f32 {
    (0.1 * (c + 1) as f64 + 0.0003 * n as f64 * (1.0 + 0.5 * c as f64) - 0.2) as f32
}

fn signal(channels: usize, frames: usize) -> Vec<Vec<f32>> {
    (0..channels).map(|c| (0..frames).map(|n| wave(c, n)).collect()).collect()
}

/// Constant per-channel levels.
fn level(c: usize) -> f32 {
    [0.11f32, -0.23, 0.37, 0.05, -0.41, 0.29, 0.13, -0.07][c]
}

fn buffer_source(graph: &mut AudioGraph, channels: Vec<Vec<f32>>, start_frame: usize) -> Res<NodeId> {
    let sample_rate = graph.sample_rate();
    let buffer = Arc::new(AudioBuffer::new(sample_rate, channels)?);
    let src = AudioBufferSourceNode::new(graph, AudioBufferSourceOptions { buffer: Some(buffer), ..Default::default() })?;
    src.start(graph, start_frame as f64 / sample_rate as f64)?;
    Ok(src.id())
}

fn constant(graph: &mut AudioGraph, offset: f32) -> Res<NodeId> {
    let src = ConstantSourceNode::new(graph, ConstantSourceOptions { offset })?;
    src.start(graph, 0.0)?;
    Ok(src.id())
}

fn explicit(channels: usize) -> AudioNodeOptions {
    AudioNodeOptions { channel_count: Some(channels), channel_count_mode: Some(ChannelCountMode::Explicit), channel_interpretation: None }
}

fn assert_audio(out: &AudioBuffer, channels: usize, expected: impl Fn(usize, usize) -> f64, what: &str) {
    assert_eq!(out.number_of_channels(), channels, "{what}: channel count");
    for c in 0..channels {
        for (n, &a) in out.channel_data(c).iter().enumerate() {
            let (a, e) = (a as f64, expected(c, n));
            assert!((a - e).abs() <= TOLERANCE * e.abs().max(1.0), "{what}: channel {c}, frame {n}: got {a}, expected {e}");
        }
    }
}

/// Renders `quanta` quanta of a graph with one worklet node running
/// `definition` (labelled [`LABEL`]) connected to the destination; `wire`
/// adds its sources and automation.
fn render(
    definition: &ProcessorDefinition,
    options: AudioWorkletNodeOptions,
    destination_channels: usize,
    quanta: usize,
    sample_rate: f32,
    wire: impl FnOnce(&mut AudioGraph, &AudioWorkletNode) -> Res<()>,
) -> Res<(Rendered, Arc<WorkletStatus>)> {
    let mut ctx = OfflineAudioContext::new(destination_channels, quanta * N, sample_rate)?;
    let graph = ctx.graph();
    let node = AudioWorkletNode::from_definition(graph, definition, LABEL, options)?;
    graph.set_label(node.id(), LABEL);
    wire(graph, &node)?;
    let dest = graph.destination();
    graph.connect(node.id(), 0, dest, 0)?;
    let rendered = ctx.render(|_| {})?;
    Ok((rendered, node.status().clone()))
}

fn no_errors(rendered: &Rendered, what: &str) {
    assert!(rendered.processor_errors.is_empty(), "{what}: {:?}", rendered.processor_errors);
}

#[derive(Clone, Copy, Debug)]
enum Gain {
    /// parameterData: constant over the render.
    Constant(f32),
    /// A linear ramp from 0 at frame 0 to 2 at the end of the render.
    Ramp,
}

impl Gain {
    fn at(self, n: usize, frames: usize) -> f64 {
        match self {
            Gain::Constant(g) => g as f64,
            Gain::Ramp => 2.0 * n as f64 / frames as f64,
        }
    }

    /// Bytes of parameter values per quantum in the copy ABI: one value when
    /// the parameter is constant over the quantum, 128 otherwise.
    fn copy_abi_param_bytes(self) -> u64 {
        match self {
            Gain::Constant(_) => 4,
            Gain::Ramp => CH,
        }
    }
}

/// Varying `channels`-channel source -> gain module (explicit channelCount)
/// -> `channels`-channel destination.
fn render_gain(definition: &ProcessorDefinition, channels: usize, gain: Gain, quanta: usize) -> Res<(Rendered, Arc<WorkletStatus>)> {
    let frames = quanta * N;
    let parameter_data = match gain {
        Gain::Constant(g) => vec![("gain".to_string(), g)],
        Gain::Ramp => Vec::new(),
    };
    let options = AudioWorkletNodeOptions { parameter_data, node: explicit(channels), ..Default::default() };
    render(definition, options, channels, quanta, SR, |graph, node| {
        let src = buffer_source(graph, signal(channels, frames), 0)?;
        graph.connect(src, 0, node.id(), 0)?;
        if let Gain::Ramp = gain {
            let id = node.parameter("gain").expect("the module declares gain");
            graph.param(id).set_value_at_time(0.0, 0.0)?.linear_ramp_to_value_at_time(2.0, frames as f64 / SR as f64)?;
        }
        Ok(())
    })
}

fn assert_gain_output(out: &AudioBuffer, channels: usize, gain: Gain, frames: usize, what: &str) {
    assert_audio(out, channels, |c, n| wave(c, n) as f64 * gain.at(n, frames), what);
}

/// `register_buffer` and `channel_count` import declarations.
const IMPORTS: &str = r#"
  (import "byob" "register_buffer" (func $register (param i32 i32 i32 i32) (result i32)))
  (import "byob" "channel_count" (func $channels (param i32 i32) (result i32)))"#;

// ------------------------------------------------------ 1: byob ABI gain

#[test]
fn byob_gain_example_multiplies_by_the_param_region_and_copies_only_it() -> TestResult {
    const QUANTA: usize = 4;
    let host = host();
    let definition = host.load(&examples_dir().join("gain.wat"), Abi::Byob, Some(vec![gain_param()]))?;
    for channels in [1, 2, 8] {
        for gain in [Gain::Constant(0.5), Gain::Ramp] {
            let what = format!("gain.wat, {channels} channel(s), {gain:?}");
            let (rendered, status) = render_gain(&definition, channels, gain, QUANTA)?;
            no_errors(&rendered, &what);
            assert_gain_output(&rendered.buffer, channels, gain, QUANTA * N, &what);
            assert_eq!(status.quanta(), QUANTA as u64, "{what}");
            // Inputs and outputs are lent: only the PARAM region is written.
            assert_eq!(status.bytes_copied(), QUANTA as u64 * CH, "{what}: one PARAM region per quantum");
        }
    }
    Ok(())
}

/// The same gain with the gain fixed in the code: no PARAM region.
const CONSTANT_GAIN: &str = r#"
(module
  IMPORTS
  (memory (export "memory") 1)
  ;; 0..4096: input (8 channels), 4096..8192: output (8 channels)
  (func (export "byob_init") (param f32 i32) (result i32)
    (local $r i32)
    (local.set $r (call $register (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 4096)))
    (if (local.get $r) (then (return (local.get $r))))
    (call $register (i32.const 2) (i32.const 0) (i32.const 4096) (i32.const 4096)))
  (func (export "byob_process") (param $frames i32) (result i32)
    (local $n i32) (local $i i32)
    (local.set $n (i32.mul (call $channels (i32.const 1) (i32.const 0)) (local.get $frames)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (f32.store offset=4096 (i32.shl (local.get $i) (i32.const 2))
          (f32.mul (f32.load (i32.shl (local.get $i) (i32.const 2))) (f32.const 0.25)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1)))
"#;

#[test]
fn byob_gain_without_a_param_region_copies_nothing() -> TestResult {
    const QUANTA: usize = 5;
    let host = host();
    let definition = load(&host, "constant-gain", &CONSTANT_GAIN.replace("IMPORTS", IMPORTS), Abi::Byob, None);
    for channels in [1, 2, 8] {
        let what = format!("constant gain, {channels} channel(s)");
        let options = AudioWorkletNodeOptions { node: explicit(channels), ..Default::default() };
        let (rendered, status) = render(&definition, options, channels, QUANTA, SR, |graph, node| {
            let src = buffer_source(graph, signal(channels, QUANTA * N), 0)?;
            graph.connect(src, 0, node.id(), 0)?;
            Ok(())
        })?;
        no_errors(&rendered, &what);
        assert_gain_output(&rendered.buffer, channels, Gain::Constant(0.25), QUANTA * N, &what);
        assert_eq!(status.quanta(), QUANTA as u64, "{what}");
        assert_eq!(status.bytes_copied(), 0, "{what}: a whole render without a single copy");
    }
    Ok(())
}

// ------------------------- 2: in place, hand-over, topology, imports

const IN_PLACE: &str = r#"
(module
  IMPORTS
  (memory (export "memory") 1)
  ;; 0..4096: one INPUT|OUTPUT region of 8 channels
  (func (export "byob_init") (param f32 i32) (result i32)
    (call $register (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 4096)))
  (func (export "byob_process") (param $frames i32) (result i32)
    (local $n i32) (local $i i32)
    (local.set $n (i32.mul (call $channels (i32.const 1) (i32.const 0)) (local.get $frames)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (f32.store (i32.shl (local.get $i) (i32.const 2))
          (f32.mul (f32.load (i32.shl (local.get $i) (i32.const 2))) (f32.const -0.75)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1)))
"#;

#[test]
fn in_place_region_is_processed_where_the_input_was_mixed() -> TestResult {
    const QUANTA: usize = 4;
    let host = host();
    let definition = load(&host, "in-place", &IN_PLACE.replace("IMPORTS", IMPORTS), Abi::Byob, None);
    for channels in [1, 2, 6] {
        let what = format!("in place, {channels} channel(s)");
        let options = AudioWorkletNodeOptions { node: explicit(channels), ..Default::default() };
        let (rendered, status) = render(&definition, options, channels, QUANTA, SR, |graph, node| {
            let src = buffer_source(graph, signal(channels, QUANTA * N), 0)?;
            graph.connect(src, 0, node.id(), 0)?;
            Ok(())
        })?;
        no_errors(&rendered, &what);
        assert_gain_output(&rendered.buffer, channels, Gain::Constant(-0.75), QUANTA * N, &what);
        assert_eq!(status.bytes_copied(), 0, "{what}");
    }
    Ok(())
}

/// No inputs; two output buffers A (0..512) and B (512..1024). byob_init
/// fills A with 9 and lends it; call k (1-based) fills the buffer the engine
/// is not using with k/8 and hands it over as the OUTPUT: B on odd calls, A
/// on even ones.
const HAND_OVER: &str = r#"
(module
  (import "byob" "register_buffer" (func $register (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $calls (mut i32) (i32.const 0))
  (func $fill (param $at i32) (param $v f32)
    (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (i32.const 128)))
        (f32.store (i32.add (local.get $at) (i32.shl (local.get $i) (i32.const 2))) (local.get $v))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next))))
  (func (export "byob_init") (param f32 i32) (result i32)
    (call $fill (i32.const 0) (f32.const 9))
    (call $fill (i32.const 512) (f32.const 9))
    (call $register (i32.const 2) (i32.const 0) (i32.const 0) (i32.const 512)))
  (func (export "byob_process") (param i32) (result i32)
    (local $target i32)
    (local.set $target (select (i32.const 512) (i32.const 0) (i32.eqz (i32.and (global.get $calls) (i32.const 1)))))
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (call $fill (local.get $target) (f32.mul (f32.convert_i32_u (global.get $calls)) (f32.const 0.125)))
    (if (call $register (i32.const 2) (i32.const 0) (local.get $target) (i32.const 512)) (then unreachable))
    (i32.const 1)))
"#;

#[test]
fn output_registered_in_byob_process_is_that_quantums_output() -> TestResult {
    const QUANTA: usize = 6;
    let host = host();
    let definition = load(&host, "hand-over", HAND_OVER, Abi::Byob, None);
    let options = AudioWorkletNodeOptions { number_of_inputs: 0, output_channel_count: Some(vec![1]), ..Default::default() };
    let (rendered, status) = render(&definition, options, 1, QUANTA, SR, |_, _| Ok(()))?;
    no_errors(&rendered, "hand-over");
    // Quantum q is call q + 1: (q + 1) / 8, never the 9 that A held before.
    assert_audio(&rendered.buffer, 1, |_, n| (n / N + 1) as f64 * 0.125, "alternating hand-over");
    assert_eq!(status.bytes_copied(), 0);
    Ok(())
}

/// Input region of exactly the current channel count; every input change
/// moves it to a new region of the new size (8192 or 16384) and accepts;
/// output changes are accepted (the 8-channel output region at 4096 fits).
/// byob_process copies the input to the output.
const TOPOLOGY_ACCEPT: &str = r#"
(module
  IMPORTS
  (memory (export "memory") 1)
  (global $in (mut i32) (i32.const 0))
  (func (export "byob_init") (param f32 i32) (result i32)
    (local $r i32)
    (local.set $r (call $register (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 512)))
    (if (local.get $r) (then (return (local.get $r))))
    (call $register (i32.const 2) (i32.const 0) (i32.const 4096) (i32.const 4096)))
  (func (export "byob_topology_change") (param $kind i32) (param $port i32) (param $channels i32) (result i32)
    (if (i32.eq (local.get $kind) (i32.const 2)) (then (return (i32.const 1))))
    (global.set $in (select (i32.const 16384) (i32.const 8192) (i32.eq (global.get $in) (i32.const 8192))))
    (if (call $register (i32.const 1) (local.get $port) (global.get $in) (i32.mul (local.get $channels) (i32.const 512)))
      (then unreachable))
    (i32.const 1))
  (func (export "byob_process") (param $frames i32) (result i32)
    (local $n i32) (local $i i32)
    (local.set $n (i32.mul (call $channels (i32.const 1) (i32.const 0)) (local.get $frames)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (f32.store offset=4096 (i32.shl (local.get $i) (i32.const 2))
          (f32.load (i32.add (global.get $in) (i32.shl (local.get $i) (i32.const 2)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1)))
"#;

#[test]
fn topology_change_accepted_with_a_bigger_region() -> TestResult {
    const QUANTA: usize = 4;
    let host = host();
    let definition = load(&host, "grower", &TOPOLOGY_ACCEPT.replace("IMPORTS", IMPORTS), Abi::Byob, None);
    // Stereo from frame 0, 5.1 from quantum 2, into a node in "max" mode
    // (1 -> 2 -> 6 channels), out to a 5.1 destination.
    let (rendered, status) = render(&definition, Default::default(), 6, QUANTA, SR, |graph, node| {
        let stereo = buffer_source(graph, signal(2, QUANTA * N), 0)?;
        let surround = buffer_source(graph, (0..6).map(|c| vec![level(c); QUANTA * N]).collect(), 2 * N)?;
        graph.connect(stereo, 0, node.id(), 0)?;
        graph.connect(surround, 0, node.id(), 0)?;
        Ok(())
    })?;
    no_errors(&rendered, "accepting grower");
    // Stereo up-mixed to 5.1 (speakers) is L, R and silence elsewhere.
    let expected = |c: usize, n: usize| {
        let stereo = if c < 2 { wave(c, n) as f64 } else { 0.0 };
        stereo + if n >= 2 * N { level(c) as f64 } else { 0.0 }
    };
    assert_audio(&rendered.buffer, 6, expected, "5.1 through the re-registered input region");
    // Input 1 -> 2 and 2 -> 6, output 1 -> 2 and 2 -> 6.
    assert_eq!(status.topology_changes(), 4);
    assert_eq!(status.bytes_copied(), 0);
    Ok(())
}

/// Input region of 6 channels at 0, output region of 8 at 4096; input
/// changes above MAX channels are rejected, output changes accepted.
const TOPOLOGY_REJECT: &str = r#"
(module
  IMPORTS
  (memory (export "memory") 1)
  (func (export "byob_init") (param f32 i32) (result i32)
    (local $r i32)
    (local.set $r (call $register (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 3072)))
    (if (local.get $r) (then (return (local.get $r))))
    (call $register (i32.const 2) (i32.const 0) (i32.const 4096) (i32.const 4096)))
  (func (export "byob_topology_change") (param $kind i32) (param $port i32) (param $channels i32) (result i32)
    (if (i32.eq (local.get $kind) (i32.const 2)) (then (return (i32.const 1))))
    (i32.le_s (local.get $channels) (i32.const MAX)))
  (func (export "byob_process") (param $frames i32) (result i32)
    (local $n i32) (local $i i32)
    (local.set $n (i32.mul (call $channels (i32.const 1) (i32.const 0)) (local.get $frames)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (f32.store offset=4096 (i32.shl (local.get $i) (i32.const 2)) (f32.load (i32.shl (local.get $i) (i32.const 2))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1)))
"#;

fn rejecter(max: usize) -> String {
    TOPOLOGY_REJECT.replace("IMPORTS", IMPORTS).replace("MAX", &max.to_string())
}

#[test]
fn topology_change_rejected_keeps_mono_and_the_engine_down_mixes_stereo() -> TestResult {
    const QUANTA: usize = 3;
    let host = host();
    let definition = load(&host, "mono-rejecter", &rejecter(1), Abi::Byob, None);
    let (rendered, status) = render(&definition, Default::default(), 1, QUANTA, SR, |graph, node| {
        let stereo = buffer_source(graph, signal(2, QUANTA * N), 0)?;
        graph.connect(stereo, 0, node.id(), 0)?;
        Ok(())
    })?;
    no_errors(&rendered, "mono rejecter");
    // The spec's speakers down-mix, stereo -> mono: 0.5 (L + R).
    assert_audio(&rendered.buffer, 1, |_, n| 0.5 * (wave(0, n) as f64 + wave(1, n) as f64), "stereo down-mixed to mono");
    // The engine offers 1 -> 2 (again each quantum while the input stays
    // stereo: a rejection holds for the quantum it answers).
    assert!(status.topology_changes() >= 1, "the change was offered");
    assert_eq!(status.bytes_copied(), 0);
    Ok(())
}

#[test]
fn topology_change_rejected_keeps_stereo_and_the_engine_down_mixes_5_1() -> TestResult {
    const QUANTA: usize = 4;
    let host = host();
    let definition = load(&host, "stereo-rejecter", &rejecter(2), Abi::Byob, None);
    let (rendered, status) = render(&definition, Default::default(), 2, QUANTA, SR, |graph, node| {
        let stereo = buffer_source(graph, signal(2, QUANTA * N), 0)?;
        let surround = buffer_source(graph, (0..6).map(|c| vec![level(c); QUANTA * N]).collect(), 2 * N)?;
        graph.connect(stereo, 0, node.id(), 0)?;
        graph.connect(surround, 0, node.id(), 0)?;
        Ok(())
    })?;
    no_errors(&rendered, "stereo rejecter");
    // The spec's speakers down-mix, 5.1 -> stereo:
    // L = L + sqrt(1/2) (C + SL), R = R + sqrt(1/2) (C + SR).
    let x: [f64; 6] = std::array::from_fn(|k| level(k) as f64);
    let down = [x[0] + H * (x[2] + x[4]), x[1] + H * (x[2] + x[5])];
    let expected = |c: usize, n: usize| wave(c, n) as f64 + if n >= 2 * N { down[c] } else { 0.0 };
    assert_audio(&rendered.buffer, 2, expected, "5.1 down-mixed to the stereo the module kept");
    assert_eq!(status.bytes_copied(), 0);
    Ok(())
}

/// Records what the imports return in byob_init and byob_process, and
/// writes it (as f32) to the start of output channel 0.
const IMPORT_VALUES: &str = r#"
(module
  IMPORTS
  (import "byob" "sample_rate" (func $rate (result f32)))
  (memory (export "memory") 1)
  (func $count (param $at i32) (param $kind i32) (param $port i32)
    (f32.store (local.get $at) (f32.convert_i32_s (call $channels (local.get $kind) (local.get $port)))))
  (func (export "byob_init") (param $sr f32) (param $frames i32) (result i32)
    (f32.store (i32.const 0) (call $rate))
    (f32.store (i32.const 4) (local.get $sr))
    (f32.store (i32.const 8) (f32.convert_i32_s (local.get $frames)))
    (call $count (i32.const 12) (i32.const 1) (i32.const 0))
    (call $count (i32.const 16) (i32.const 2) (i32.const 0))
    (call $register (i32.const 2) (i32.const 0) (i32.const 4096) (i32.const 4096)))
  (func (export "byob_process") (param $frames i32) (result i32)
    (f32.store (i32.const 20) (call $rate))
    (f32.store (i32.const 24) (f32.convert_i32_s (local.get $frames)))
    (call $count (i32.const 28) (i32.const 1) (i32.const 0))
    (call $count (i32.const 32) (i32.const 2) (i32.const 0))
    (call $count (i32.const 36) (i32.const 1) (i32.const 1))
    (call $count (i32.const 40) (i32.const 2) (i32.const 7))
    (call $count (i32.const 44) (i32.const 3) (i32.const 0))
    (call $count (i32.const 48) (i32.const 0) (i32.const 0))
    (call $count (i32.const 52) (i32.const 1) (i32.const -1))
    (memory.copy (i32.const 4096) (i32.const 0) (i32.const 56))
    (i32.const 1)))
"#;

#[test]
fn channel_count_and_sample_rate_imports_return_the_nodes_values() -> TestResult {
    const QUANTA: usize = 2;
    let sample_rate = 44100.0;
    let host = host();
    let definition = load(&host, "imports", &IMPORT_VALUES.replace("IMPORTS", IMPORTS), Abi::Byob, None);
    let options = AudioWorkletNodeOptions { output_channel_count: Some(vec![2]), node: explicit(3), ..Default::default() };
    let (rendered, _) = render(&definition, options, 2, QUANTA, sample_rate, |graph, node| {
        let src = constant(graph, 0.5)?;
        graph.connect(src, 0, node.id(), 0)?;
        Ok(())
    })?;
    no_errors(&rendered, "imports");
    let recorded = [
        sample_rate as f64, // sample_rate() in byob_init
        sample_rate as f64, // byob_init's sample_rate argument
        128.0,              // byob_init's max_frames
        3.0,                // channel_count(INPUT, 0) in byob_init: explicit channelCount 3
        2.0,                // channel_count(OUTPUT, 0) in byob_init: outputChannelCount [2]
        sample_rate as f64, // sample_rate() in byob_process
        128.0,              // byob_process's frames
        3.0,                // channel_count(INPUT, 0)
        2.0,                // channel_count(OUTPUT, 0)
        -1.0,               // channel_count(INPUT, 1): no such port
        -1.0,               // channel_count(OUTPUT, 7): no such port
        -7.0,               // channel_count(3, 0): bad kind
        -7.0,               // channel_count(0, 0): bad kind
        -9.0,               // channel_count(INPUT, -1): negative
    ];
    let expected = |c: usize, n: usize| if c == 0 { recorded.get(n % N).copied().unwrap_or(0.0) } else { 0.0 };
    assert_audio(&rendered.buffer, 2, expected, "import values");
    Ok(())
}

// -------------------------------------------- 3: registration error codes

/// (what, kind, port, offset, max_bytes, expected code) for byob_init, on a
/// node with 1 input, 1 output (1 channel each) and 1 parameter, in a
/// memory of one 64 KiB page.
const INIT_ATTEMPTS: &[(&str, i32, i32, i32, i32, i32)] = &[
    ("valid INPUT at 0", 1, 0, 0, 1024, 0),
    ("valid OUTPUT at 4096", 2, 0, 4096, 1024, 0),
    ("INPUT port 1 of 1", 1, 1, 8192, 512, -1),
    ("OUTPUT port 1 of 1", 2, 1, 8192, 512, -1),
    ("INPUT|OUTPUT port 1 of 1", 3, 1, 8192, 512, -1),
    ("PARAM 1 of 1", 4, 1, 8192, 512, -1),
    ("OUTPUT past the end of memory", 2, 0, 65280, 512, -2),
    ("PARAM past the end of memory", 4, 0, 65280, 512, -2),
    ("OUTPUT misaligned", 2, 0, 8200, 512, -3),
    ("PARAM misaligned", 4, 0, 8196, 512, -3),
    ("OUTPUT of 511 bytes", 2, 0, 8192, 511, -4),
    ("PARAM of 100 bytes", 4, 0, 8192, 100, -4),
    ("OUTPUT over the INPUT", 2, 0, 512, 1024, -5),
    ("INPUT over the OUTPUT", 1, 0, 4608, 512, -5),
    ("kind 0", 0, 0, 8192, 512, -7),
    ("kind 5", 5, 0, 8192, 512, -7),
    ("kind -1", -1, 0, 8192, 512, -7),
    ("negative port", 1, -1, 8192, 512, -9),
    ("negative offset", 1, 0, -16, 512, -9),
    ("negative max_bytes", 2, 0, 8192, -512, -9),
    ("PARAM over the OUTPUT", 4, 0, 4096, 512, -5),
    ("PARAM over the INPUT", 4, 0, 1008, 512, -5),
    ("valid PARAM at 12288", 4, 0, 12288, 512, 0),
    ("OUTPUT over the PARAM", 2, 0, 12288, 512, -5),
];

/// The same, in the first byob_process call.
const PROCESS_ATTEMPTS: &[(&str, i32, i32, i32, i32, i32)] = &[
    ("OUTPUT over the INPUT the engine uses this quantum", 2, 0, 0, 1024, -6),
    ("INPUT over the OUTPUT the engine uses this quantum", 1, 0, 4096, 512, -6),
    ("OUTPUT port 1 in process", 2, 1, 8192, 512, -1),
    ("misaligned in process", 2, 0, 8208 + 4, 512, -3),
];

/// Codes are stored from 16384 on; every byob_process writes them (as f32)
/// to the output region, followed by the PARAM region's first value and the
/// INPUT region's first value.
fn registration_errors_module() -> String {
    let attempt = |i: usize, a: &(&str, i32, i32, i32, i32, i32)| {
        format!(
            "(i32.store (i32.const {}) (call $register (i32.const {}) (i32.const {}) (i32.const {}) (i32.const {})))\n",
            16384 + 4 * i,
            a.1,
            a.2,
            a.3,
            a.4
        )
    };
    let init: String = INIT_ATTEMPTS.iter().enumerate().map(|(i, a)| attempt(i, a)).collect();
    let process: String = PROCESS_ATTEMPTS.iter().enumerate().map(|(i, a)| attempt(INIT_ATTEMPTS.len() + i, a)).collect();
    let total = INIT_ATTEMPTS.len() + PROCESS_ATTEMPTS.len();
    format!(
        r#"
(module
  (import "byob" "register_buffer" (func $register (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $called (mut i32) (i32.const 0))
  (func (export "byob_init") (param f32 i32) (result i32)
    {init}
    (i32.const 0))
  (func (export "byob_process") (param i32) (result i32)
    (local $i i32)
    (if (i32.eqz (global.get $called))
      (then
        (global.set $called (i32.const 1))
        {process}))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (i32.const {total})))
        (f32.store offset=4096 (i32.shl (local.get $i) (i32.const 2))
          (f32.convert_i32_s (i32.load offset=16384 (i32.shl (local.get $i) (i32.const 2)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (f32.store (i32.const {param_at}) (f32.load (i32.const 12288)))
    (f32.store (i32.const {input_at}) (f32.load (i32.const 0)))
    (i32.const 1)))
"#,
        param_at = 4096 + 4 * total,
        input_at = 4096 + 4 * total + 4,
    )
}

#[test]
fn every_registration_error_code_reaches_the_module_and_changes_nothing() -> TestResult {
    const QUANTA: usize = 3;
    let host = host();
    let definition = load(&host, "bad-registrations", &registration_errors_module(), Abi::Byob, Some(vec![gain_param()]));
    let options = AudioWorkletNodeOptions { parameter_data: vec![("gain".into(), 0.75)], ..Default::default() };
    let (rendered, status) = render(&definition, options, 1, QUANTA, SR, |graph, node| {
        let src = constant(graph, 0.5)?;
        graph.connect(src, 0, node.id(), 0)?;
        Ok(())
    })?;
    no_errors(&rendered, "bad registrations");
    let out = rendered.buffer.channel_data(0);
    let attempts: Vec<_> = INIT_ATTEMPTS.iter().map(|a| ("byob_init", a)).chain(PROCESS_ATTEMPTS.iter().map(|a| ("byob_process", a))).collect();
    for q in 0..QUANTA {
        let frame = |i: usize| out[q * N + i];
        for (i, (during, a)) in attempts.iter().enumerate() {
            assert_eq!(frame(i), a.5 as f32, "quantum {q}: {during}: {} (register_buffer({}, {}, {}, {}))", a.0, a.1, a.2, a.3, a.4);
        }
        // The failed attempts moved nothing: the output is still read from
        // 4096, the PARAM region at 12288 gets the gain, the input at 0 the
        // constant source.
        assert_eq!(frame(attempts.len()), 0.75, "quantum {q}: PARAM region value");
        assert_eq!(frame(attempts.len() + 1), 0.5, "quantum {q}: INPUT region value");
        for i in attempts.len() + 2..N {
            assert_eq!(frame(i), 0.0, "quantum {q}, frame {i}");
        }
    }
    assert_eq!(status.bytes_copied(), QUANTA as u64 * CH, "only the PARAM region is written");
    Ok(())
}

/// A `start` function runs during instantiation, outside byob_init,
/// byob_process and byob_topology_change: registration is not possible then.
const REGISTERS_TOO_EARLY: &str = r#"
(module
  (import "byob" "register_buffer" (func $register (param i32 i32 i32 i32) (result i32)))
  (import "byob" "channel_count" (func $channels (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $start
    (i32.store (i32.const 0) (call $register (i32.const 1) (i32.const 0) (i32.const 8192) (i32.const 512)))
    (i32.store (i32.const 4) (call $register (i32.const 4) (i32.const 0) (i32.const 12288) (i32.const 512)))
    (i32.store (i32.const 8) (call $channels (i32.const 1) (i32.const 0))))
  (start $start)
  (func (export "byob_init") (param f32 i32) (result i32)
    (call $register (i32.const 2) (i32.const 0) (i32.const 4096) (i32.const 512)))
  (func (export "byob_process") (param i32) (result i32)
    (f32.store (i32.const 4096) (f32.convert_i32_s (i32.load (i32.const 0))))
    (f32.store (i32.const 4100) (f32.convert_i32_s (i32.load (i32.const 4))))
    (f32.store (i32.const 4104) (f32.convert_i32_s (i32.load (i32.const 8))))
    (i32.const 1)))
"#;

#[test]
fn registering_during_instantiation_is_not_now() -> TestResult {
    let host = host();
    let definition = load(&host, "too-early", REGISTERS_TOO_EARLY, Abi::Byob, Some(vec![gain_param()]));
    let options = AudioWorkletNodeOptions { number_of_inputs: 0, output_channel_count: Some(vec![1]), ..Default::default() };
    let (rendered, status) = render(&definition, options, 1, 2, SR, |_, _| Ok(()))?;
    no_errors(&rendered, "too early");
    // INPUT, PARAM and channel_count from the start function: -8 each.
    let reported = [-8.0, -8.0, -8.0];
    assert_audio(&rendered.buffer, 1, |_, n| reported.get(n % N).copied().unwrap_or(0.0), "start-function codes");
    // The PARAM registration did not happen: nothing is copied.
    assert_eq!(status.bytes_copied(), 0);
    Ok(())
}

#[test]
fn byob_init_failing_fails_node_creation_with_its_code() -> TestResult {
    let host = host();
    for (wat, mentions) in [
        (r#"(module (memory (export "memory") 1)
              (func (export "byob_init") (param f32 i32) (result i32) (i32.const 42))
              (func (export "byob_process") (param i32) (result i32) (i32.const 1)))"#, "byob_init returned 42"),
        (r#"(module (memory (export "memory") 1)
              (func (export "byob_init") (param f32 i32) (result i32) (i32.const -3))
              (func (export "byob_process") (param i32) (result i32) (i32.const 1)))"#, "byob_init returned -3"),
        (r#"(module (memory (export "memory") 1)
              (func (export "byob_init") (param f32 i32) (result i32) unreachable)
              (func (export "byob_process") (param i32) (result i32) (i32.const 1)))"#, "byob_init trapped"),
    ] {
        // Loading checks the exports only; byob_init runs when a node is made.
        let definition = load(&host, "failing-init", wat, Abi::Byob, None);
        let mut ctx = OfflineAudioContext::new(1, N, SR)?;
        match AudioWorkletNode::from_definition(ctx.graph(), &definition, "failing-init", Default::default()) {
            Ok(_) => panic!("a node was created although {mentions}"),
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains(mentions), "{text}");
                assert!(text.contains("failing-init"), "{text}");
            }
        }
    }
    Ok(())
}

// ----------------------------------------------------------- 4: copy ABI

#[test]
fn copy_abi_gain_matches_the_byob_abi_and_counts_every_copy() -> TestResult {
    const QUANTA: usize = 4;
    let host = host();
    let byob = host.load(&examples_dir().join("gain.wat"), Abi::Byob, Some(vec![gain_param()]))?;
    let copy = host.load(&examples_dir().join("gain-copy.wat"), Abi::Copy, Some(vec![gain_param()]))?;
    for channels in [1, 2, 8] {
        for gain in [Gain::Constant(0.5), Gain::Ramp] {
            let what = format!("gain-copy.wat, {channels} channel(s), {gain:?}");
            let (rendered, status) = render_gain(&copy, channels, gain, QUANTA)?;
            no_errors(&rendered, &what);
            assert_gain_output(&rendered.buffer, channels, gain, QUANTA * N, &what);
            let (byob_rendered, _) = render_gain(&byob, channels, gain, QUANTA)?;
            for c in 0..channels {
                assert_eq!(rendered.buffer.channel_data(c), byob_rendered.buffer.channel_data(c), "{what}: channel {c} differs from the byob ABI");
            }
            let c = channels as u64;
            // The engine copies each input channel into its own array and
            // each output channel out of its own array (the spec's baseline);
            // the host copies each input channel into the module, the
            // parameter's values (1 when constant, 128 otherwise), and each
            // output channel out of the module.
            let engine = c * CH + c * CH;
            let host_copies = c * CH + gain.copy_abi_param_bytes() + c * CH;
            assert_eq!(status.bytes_copied(), QUANTA as u64 * (engine + host_copies), "{what}");
        }
    }
    Ok(())
}

/// A copy-ABI module that reports what `process` receives: userData from
/// `init`, the sample rate `init` got, the counts and the frames' fields.
const COPY_PROBE: &str = r#"
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (global $sr (mut f32) (f32.const 0))
  (func (export "malloc") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (if (i32.eq (memory.grow (i32.add (i32.shr_u (local.get $size) (i32.const 16)) (i32.const 1))) (i32.const -1))
          (then unreachable))))
    (local.get $p))
  (func (export "init") (param $sr f32) (result i32)
    (global.set $sr (local.get $sr))
    (i32.const 4242))
  (func (export "process") (param $ni i32) (param $in i32) (param $no i32) (param $out i32) (param $np i32) (param $p i32) (param $ud i32) (result i32)
    (local $o i32)
    (local.set $o (i32.load offset=8 (local.get $out)))
    (f32.store offset=0 (local.get $o) (f32.convert_i32_s (local.get $ud)))
    (f32.store offset=4 (local.get $o) (global.get $sr))
    (f32.store offset=8 (local.get $o) (f32.convert_i32_s (local.get $ni)))
    (f32.store offset=12 (local.get $o) (f32.convert_i32_s (local.get $no)))
    (f32.store offset=16 (local.get $o) (f32.convert_i32_s (local.get $np)))
    (f32.store offset=20 (local.get $o) (f32.convert_i32_s (i32.load (local.get $in))))
    (f32.store offset=24 (local.get $o) (f32.convert_i32_s (i32.load offset=4 (local.get $in))))
    (f32.store offset=28 (local.get $o) (f32.convert_i32_s (i32.load (local.get $out))))
    (f32.store offset=32 (local.get $o) (f32.convert_i32_s (i32.load offset=4 (local.get $out))))
    (f32.store offset=36 (local.get $o) (f32.convert_i32_s (i32.load (local.get $p))))
    (f32.store offset=40 (local.get $o) (f32.load (i32.load offset=4 (local.get $p))))
    (f32.store offset=44 (local.get $o) (f32.load (i32.load offset=8 (local.get $in))))
    (i32.const 1)))
"#;

#[test]
fn copy_abi_passes_init_user_data_and_frames_to_process() -> TestResult {
    const QUANTA: usize = 2;
    let host = host();
    let definition = load(&host, "copy-probe", COPY_PROBE, Abi::Copy, Some(vec![gain_param()]));
    let options = AudioWorkletNodeOptions { parameter_data: vec![("gain".into(), 0.75)], ..Default::default() };
    let (rendered, _) = render(&definition, options, 1, QUANTA, SR, |graph, node| {
        let src = constant(graph, 0.5)?;
        graph.connect(src, 0, node.id(), 0)?;
        Ok(())
    })?;
    no_errors(&rendered, "copy probe");
    let reported = [
        4242.0,    // userData: what init returned
        SR as f64, // init's sample rate
        1.0,       // numInputs
        1.0,       // numOutputs
        1.0,       // numParams
        1.0,       // inputs[0].numberOfChannels
        128.0,     // inputs[0].samplesPerChannel
        1.0,       // outputs[0].numberOfChannels
        128.0,     // outputs[0].samplesPerChannel
        1.0,       // params[0].length: constant gain
        0.75,      // params[0].data[0]
        0.5,       // inputs[0].data[0]
    ];
    assert_audio(&rendered.buffer, 1, |_, n| reported.get(n % N).copied().unwrap_or(0.0), "copy probe");
    Ok(())
}

// --------------------------------------------------------------- 5: faults

/// In-place pass-through (one 8-channel region) that runs FAULT on its
/// third byob_process call.
const FAULTY: &str = r#"
(module
  (import "byob" "register_buffer" (func $register (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $calls (mut i32) (i32.const 0))
  (func $recurse (param $depth i32) (result i32)
    (i32.add (call $recurse (i32.add (local.get $depth) (i32.const 1))) (i32.const 1)))
  (func (export "byob_init") (param f32 i32) (result i32)
    (call $register (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 4096)))
  (func (export "byob_process") (param i32) (result i32)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (if (i32.eq (global.get $calls) (i32.const 3))
      (then FAULT))
    (i32.const 1)))
"#;

/// Renders constant 0.5 -> module -> destination beside constant 0.25 ->
/// destination (mono), and checks the module's audio stops at `fails_at`
/// (a quantum) while the parallel path keeps rendering, and that one
/// processor error names the node and mentions each of `mentions`.
fn assert_isolated_fault(definition: &ProcessorDefinition, fails_at: usize, mentions: &[&str], wire_extra: Option<usize>) -> TestResult {
    const QUANTA: usize = 5;
    let (rendered, status) = render(definition, Default::default(), 1, QUANTA, SR, |graph, node| {
        let feed = constant(graph, 0.5)?;
        graph.connect(feed, 0, node.id(), 0)?;
        let parallel = constant(graph, 0.25)?;
        let dest = graph.destination();
        graph.connect(parallel, 0, dest, 0)?;
        if let Some(start_quantum) = wire_extra {
            // A stereo source from `start_quantum` on changes the input's
            // channel count: silence, so the module's audio is unchanged.
            let stereo = buffer_source(graph, vec![vec![0.0; QUANTA * N]; 2], start_quantum * N)?;
            graph.connect(stereo, 0, node.id(), 0)?;
        }
        Ok(())
    })?;
    assert_eq!(rendered.processor_errors.len(), 1, "{:?}", rendered.processor_errors);
    let event = &rendered.processor_errors[0];
    assert_eq!(event.node, LABEL);
    let message = event.message.to_lowercase();
    for m in mentions {
        assert!(message.contains(&m.to_lowercase()), "{:?} does not mention {m:?}", event.message);
    }
    assert_eq!(status.error(), Some(event.message.as_str()));
    assert_audio(&rendered.buffer, 1, |_, n| 0.25 + if n / N < fails_at { 0.5 } else { 0.0 }, "the rest of the graph after the fault");
    assert_eq!(status.quanta(), QUANTA as u64);
    Ok(())
}

fn faulty(fault: &str) -> String {
    FAULTY.replace("FAULT", fault)
}

#[test]
fn fault_unreachable_in_byob_process() -> TestResult {
    let definition = load(&host(), "unreachable", &faulty("unreachable"), Abi::Byob, None);
    assert_isolated_fault(&definition, 2, &["byob_process", "unreachable"], None)
}

#[test]
fn fault_out_of_bounds_memory_access() -> TestResult {
    let definition = load(&host(), "out-of-bounds", &faulty("(i32.store (i32.const 1000000) (i32.const 1))"), Abi::Byob, None);
    assert_isolated_fault(&definition, 2, &["byob_process", "out of bounds"], None)
}

#[test]
fn fault_integer_division_by_zero() -> TestResult {
    let fault = "(drop (i32.div_u (i32.const 1) (i32.sub (global.get $calls) (i32.const 3))))";
    let definition = load(&host(), "divide", &faulty(fault), Abi::Byob, None);
    assert_isolated_fault(&definition, 2, &["byob_process", "divide by zero"], None)
}

#[test]
fn fault_stack_overflow() -> TestResult {
    let definition = load(&host(), "recursion", &faulty("(drop (call $recurse (i32.const 0)))"), Abi::Byob, None);
    assert_isolated_fault(&definition, 2, &["byob_process", "stack"], None)
}

#[test]
fn fault_infinite_loop_is_interrupted_by_the_time_limit() -> TestResult {
    let host = WasmHost::new(Limits { max_time_per_call: Duration::from_millis(2), ..Limits::default() })?;
    let definition = load(&host, "endless", &faulty("(loop $forever (br $forever))"), Abi::Byob, None);
    let started = std::time::Instant::now();
    assert_isolated_fault(&definition, 2, &["byob_process", "interrupt"], None)?;
    assert!(started.elapsed() < Duration::from_secs(30), "the render took {:?}", started.elapsed());
    Ok(())
}

/// In place at first; call 3 grows the memory by 1000 pages and touches
/// its last byte; call 4 hands the output over to a region in the new
/// pages (32 MiB in), which it writes from then on. Output = 0.5 x input.
const GROWER: &str = r#"
(module
  IMPORTS
  (memory (export "memory") 1)
  (global $calls (mut i32) (i32.const 0))
  (global $out (mut i32) (i32.const 0))
  (func (export "byob_init") (param f32 i32) (result i32)
    (call $register (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 4096)))
  (func (export "byob_process") (param $frames i32) (result i32)
    (local $n i32) (local $i i32)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (if (i32.eq (global.get $calls) (i32.const 3))
      (then
        (if (i32.ne (memory.grow (i32.const 1000)) (i32.const 1)) (then unreachable))
        (i32.store8 (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 1)) (i32.const 7))))
    (if (i32.eq (global.get $calls) (i32.const 4))
      (then
        (global.set $out (i32.const 0x2000000))
        (if (call $register (i32.const 2) (i32.const 0) (global.get $out) (i32.const 4096)) (then unreachable))))
    (local.set $n (i32.mul (call $channels (i32.const 1) (i32.const 0)) (local.get $frames)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (f32.store (i32.add (global.get $out) (i32.shl (local.get $i) (i32.const 2)))
          (f32.mul (f32.load (i32.shl (local.get $i) (i32.const 2))) (f32.const 0.5)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1)))
"#;

#[test]
fn memory_growth_after_registering_keeps_working() -> TestResult {
    const QUANTA: usize = 7;
    let definition = load(&host(), "grower", &GROWER.replace("IMPORTS", IMPORTS), Abi::Byob, None);
    let (rendered, status) = render(&definition, Default::default(), 2, QUANTA, SR, |graph, node| {
        let src = buffer_source(graph, signal(2, QUANTA * N), 0)?;
        graph.connect(src, 0, node.id(), 0)?;
        Ok(())
    })?;
    no_errors(&rendered, "memory growth");
    // Before the growth (quanta 0-1), after it in the old region (2), and in
    // the region inside the grown pages (3-6).
    assert_gain_output(&rendered.buffer, 2, Gain::Constant(0.5), QUANTA * N, "across memory growth");
    assert_eq!(status.bytes_copied(), 0);
    assert_eq!(status.quanta(), QUANTA as u64);
    Ok(())
}

/// In-place pass-through whose byob_topology_change runs HANDLER.
const TOPOLOGY_FAULT: &str = r#"
(module
  (import "byob" "register_buffer" (func $register (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "byob_init") (param f32 i32) (result i32)
    (call $register (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 4096)))
  (func (export "byob_topology_change") (param i32 i32 i32) (result i32)
    HANDLER)
  (func (export "byob_process") (param i32) (result i32)
    (i32.const 1)))
"#;

#[test]
fn fault_trap_inside_byob_topology_change() -> TestResult {
    for (handler, mentions) in [
        ("unreachable", ["byob_topology_change", "unreachable"]),
        ("(i32.const 7)", ["byob_topology_change", "returned 7"]),
    ] {
        let definition = load(&host(), "bad-topology", &TOPOLOGY_FAULT.replace("HANDLER", handler), Abi::Byob, None);
        // A stereo source joins the mono feed at quantum 2: the change is
        // offered there, and the node fails from that quantum on.
        assert_isolated_fault(&definition, 2, &mentions, Some(2))?;
    }
    Ok(())
}

// ----------------------------------------------------------- 6: load errors

fn assert_load_error(error: &LoadError, mentions: &[&str]) {
    let text = error.to_string();
    for m in mentions {
        assert!(text.contains(m), "{text:?} does not mention {m:?}");
    }
}

const PROCESS_OK: &str = r#"(func (export "byob_process") (param i32) (result i32) (i32.const 1))"#;
const INIT_OK: &str = r#"(func (export "byob_init") (param f32 i32) (result i32) (i32.const 0))"#;

#[test]
fn load_errors_name_what_is_wrong() -> TestResult {
    let host = host();
    let byob = |body: &str| format!("(module {body})");

    let e = load_error(&host, "no-memory.wat", byob(&format!("{INIT_OK} {PROCESS_OK}")).as_bytes(), Abi::Byob);
    assert!(matches!(e, LoadError::MissingExport { .. }), "{e:?}");
    assert_load_error(&e, &["no-memory.wat", "\"memory\"", "byob"]);

    let e = load_error(&host, "no-process.wat", byob(&format!(r#"(memory (export "memory") 1) {INIT_OK}"#)).as_bytes(), Abi::Byob);
    assert!(matches!(e, LoadError::MissingExport { .. }), "{e:?}");
    assert_load_error(&e, &["no-process.wat", "\"byob_process\"", "(i32) -> (i32)"]);

    let wrong = r#"(memory (export "memory") 1) (func (export "byob_init") (param f32 i32) (result i32) (i32.const 0))
                   (func (export "byob_process") (param f32) (result i32) (i32.const 1))"#;
    let e = load_error(&host, "wrong-process.wat", byob(wrong).as_bytes(), Abi::Byob);
    assert!(matches!(e, LoadError::WrongExportType { .. }), "{e:?}");
    assert_load_error(&e, &["wrong-process.wat", "\"byob_process\"", "wrong type", "(i32) -> (i32)", "(f32) -> (i32)"]);

    let not_a_function = r#"(memory (export "memory") 1) (func (export "byob_init") (param f32 i32) (result i32) (i32.const 0))
                            (global (export "byob_process") i32 (i32.const 0))"#;
    let e = load_error(&host, "global-process.wat", byob(not_a_function).as_bytes(), Abi::Byob);
    assert_load_error(&e, &["\"byob_process\"", "a global"]);

    let env_import = format!(r#"(import "env" "foo" (func (param i32))) (memory (export "memory") 1) {INIT_OK} {PROCESS_OK}"#);
    let e = load_error(&host, "env-import.wat", byob(&env_import).as_bytes(), Abi::Byob);
    assert!(matches!(e, LoadError::UnsupportedImport { .. }), "{e:?}");
    assert_load_error(&e, &["env-import.wat", "env.foo", "byob"]);

    let wrong_import = format!(r#"(import "byob" "sample_rate" (func (result i32))) (memory (export "memory") 1) {INIT_OK} {PROCESS_OK}"#);
    let e = load_error(&host, "wrong-import.wat", byob(&wrong_import).as_bytes(), Abi::Byob);
    assert!(matches!(e, LoadError::WrongImportType { .. }), "{e:?}");
    assert_load_error(&e, &["wrong-import.wat", "byob.sample_rate", "wrong type", "() -> (f32)", "() -> (i32)"]);

    let imported_memory = format!(r#"(import "byob" "memory" (memory 1)) (export "memory" (memory 0)) {INIT_OK} {PROCESS_OK}"#);
    let e = load_error(&host, "imported-memory.wat", byob(&imported_memory).as_bytes(), Abi::Byob);
    assert_load_error(&e, &["imported-memory.wat", "byob.memory"]);

    // Pseudo-random bytes, and a binary header followed by garbage.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let random: Vec<u8> = (0..256)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    for (name, bytes) in [("random.wasm", random), ("garbage.wasm", b"\0asm\x01\0\0\0\xff\xff\xff\xff".to_vec())] {
        let e = load_error(&host, name, &bytes, Abi::Byob);
        assert!(matches!(e, LoadError::Compile { .. }), "{e:?}");
        assert_load_error(&e, &[name, "not a valid WebAssembly module"]);
    }

    let no_malloc = r#"(module (memory (export "memory") 1)
        (func (export "process") (param i32 i32 i32 i32 i32 i32 i32) (result i32) (i32.const 1)))"#;
    let e = load_error(&host, "no-malloc.wat", no_malloc.as_bytes(), Abi::Copy);
    assert!(matches!(e, LoadError::MissingExport { .. }), "{e:?}");
    assert_load_error(&e, &["no-malloc.wat", "\"malloc\"", "copy"]);

    let e = match host.load(Path::new("/nonexistent/byob/missing.wasm"), Abi::Byob, None) {
        Ok(_) => panic!("a missing file loaded"),
        Err(e) => e,
    };
    assert!(matches!(e, LoadError::Io { .. }), "{e:?}");
    assert_load_error(&e, &["/nonexistent/byob/missing.wasm"]);
    Ok(())
}

#[test]
fn unknown_abi_through_the_module_loader() {
    let host = host();
    let path = examples_dir().join("gain.wat");
    match ModuleLoader::load(&host, &path, "nope", None) {
        Ok(_) => panic!("ABI \"nope\" was accepted"),
        Err(e) => {
            assert!(e.contains("nope"), "{e}");
            assert!(e.contains("ABI"), "{e}");
        }
    }
    // The known names go through.
    assert!(ModuleLoader::load(&host, &path, "byob", Some(vec![gain_param()])).is_ok());
    assert!(ModuleLoader::load(&host, &examples_dir().join("gain-copy.wat"), "copy", Some(vec![gain_param()])).is_ok());
}

// ------------------------------------------------------ 7: a module in C

#[test]
fn c_gain_built_with_clang() -> TestResult {
    const QUANTA: usize = 4;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/modules/gain.c");
    let dir = tempfile::tempdir()?;
    let wasm = dir.path().join("gain.wasm");
    let output = std::process::Command::new("clang")
        .args(["--target=wasm32", "-O2", "-nostdlib", "-Wl,--no-entry", "-Wl,--export-dynamic", "-Wl,--allow-undefined", "-o"])
        .arg(&wasm)
        .arg(&source)
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => panic!(
            "could not run clang ({e}): this test needs clang with the wasm32 target and wasm-ld (lld) on PATH \
             (Debian/Ubuntu: apt-get install clang lld)"
        ),
    };
    assert!(
        output.status.success(),
        "clang --target=wasm32 failed ({}); is wasm-ld (lld) installed?\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let host = host();
    let definition = host.load(&wasm, Abi::Byob, Some(vec![gain_param()]))?;
    for channels in [1, 2, 8] {
        for gain in [Gain::Constant(0.5), Gain::Ramp] {
            let what = format!("gain.c, {channels} channel(s), {gain:?}");
            let (rendered, status) = render_gain(&definition, channels, gain, QUANTA)?;
            no_errors(&rendered, &what);
            assert_gain_output(&rendered.buffer, channels, gain, QUANTA * N, &what);
            assert_eq!(status.bytes_copied(), QUANTA as u64 * CH, "{what}: only the PARAM region");
        }
    }
    Ok(())
}

// ------------------------------------------------------ 8: graph files

fn graph_json(worklet: &str) -> String {
    format!(
        r#"{{"sampleRate": 32768, "length": 512, "numberOfChannels": 1,
            "nodes": [
              {{"id": "src", "type": "ConstantSourceNode", "options": {{"offset": 0.8}}, "start": 0}},
              {worklet}
            ],
            "connections": [{{"from": "src", "to": "my-worklet"}}, {{"from": "my-worklet", "to": "destination"}}]}}"#
    )
}

fn module_node(module: &str, abi: &str) -> String {
    format!(
        r#"{{"id": "my-worklet", "type": "AudioWorkletNode", "module": {module}, "abi": {abi},
             "parameterDescriptors": [{{"name": "gain", "defaultValue": 1, "minValue": -10, "maxValue": 10}}],
             "options": {{"parameterData": {{"gain": 0.5}}}}}}"#,
        module = serde_json::to_string(module).unwrap(),
        abi = serde_json::to_string(abi).unwrap(),
    )
}

fn wasm_registry() -> ProcessorRegistry {
    let mut registry = ProcessorRegistry::new();
    registry.set_module_loader(Arc::new(host()));
    registry
}

#[test]
fn graph_file_module_node_renders() -> TestResult {
    let registry = wasm_registry();
    let gain = std::fs::canonicalize(examples_dir().join("gain.wat"))?;
    let copy = std::fs::canonicalize(examples_dir().join("gain-copy.wat"))?;
    let cases = [
        // An absolute path, from a graph file anywhere.
        (module_node(gain.to_str().unwrap(), "byob"), PathBuf::from("/tmp/graph.json")),
        (module_node(copy.to_str().unwrap(), "copy"), PathBuf::from("/tmp/graph.json")),
        // A path relative to the graph file.
        (module_node("gain.wat", "byob"), examples_dir().join("graph.json")),
    ];
    for (node, path) in cases {
        let file = GraphFile::parse(&graph_json(&node), &path)?;
        let ctx = file.offline_context_with(None, None, &registry)?;
        let rendered = ctx.render(|_| {})?;
        no_errors(&rendered, &node);
        assert_audio(&rendered.buffer, 1, |_, _| 0.8f32 as f64 * 0.5, &node);
    }
    Ok(())
}

#[test]
fn graph_file_module_errors_name_the_node() -> TestResult {
    let registry = wasm_registry();
    let gain = std::fs::canonicalize(examples_dir().join("gain.wat"))?;
    let gain = gain.to_str().unwrap();
    let dir = tempfile::tempdir()?;
    let broken = dir.path().join("no-process.wat");
    std::fs::write(&broken, format!(r#"(module (memory (export "memory") 1) {INIT_OK})"#))?;
    let cases = [
        (module_node(gain, "nope"), vec!["nope"]),
        (module_node("/nonexistent/byob/missing.wat", "byob"), vec!["missing.wat"]),
        (module_node(broken.to_str().unwrap(), "byob"), vec!["no-process.wat", "byob_process"]),
        (
            format!(r#"{{"id": "my-worklet", "type": "AudioWorkletNode", "module": {}}}"#, serde_json::to_string(gain)?),
            vec!["abi"],
        ),
    ];
    for (node, mentions) in cases {
        let file = GraphFile::parse(&graph_json(&node), Path::new("/tmp/graph.json"))?;
        match file.offline_context_with(None, None, &registry) {
            Ok(_) => panic!("accepted {node}"),
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains("my-worklet"), "{text}");
                for m in mentions {
                    assert!(text.contains(m), "{text} does not mention {m:?}");
                }
            }
        }
    }
    // Without a module loader, the file says this build cannot load modules.
    let file = GraphFile::parse(&graph_json(&module_node(gain, "byob")), Path::new("/tmp/graph.json"))?;
    match file.offline_context_with(None, None, &ProcessorRegistry::new()) {
        Ok(_) => panic!("a module node was built without a module loader"),
        Err(e) => assert!(e.to_string().contains("my-worklet"), "{e}"),
    }
    Ok(())
}

// ------------------------------------------------------------------ limits

/// Past `max_memory_bytes`, `memory.grow` returns -1 (the module here
/// traps on it); within it, it succeeds.
#[test]
fn memory_growth_past_the_limit_fails() -> TestResult {
    let host = WasmHost::new(Limits { max_memory_bytes: 16 << 20, ..Limits::default() })?;
    let grow = |pages: i32| faulty(&format!("(if (i32.eq (memory.grow (i32.const {pages})) (i32.const -1)) (then unreachable))"));
    let definition = load(&host, "greedy", &grow(1000), Abi::Byob, None);
    assert_isolated_fault(&definition, 2, &["byob_process", "unreachable"], None)?;
    // 255 more pages of 64 KiB stay within 16 MiB: no fault.
    let definition = load(&host, "modest", &grow(255), Abi::Byob, None);
    let (rendered, _) = render(&definition, Default::default(), 1, 5, SR, |graph, node| {
        let feed = constant(graph, 0.5)?;
        graph.connect(feed, 0, node.id(), 0)?;
        Ok(())
    })?;
    no_errors(&rendered, "growth within the limit");
    Ok(())
}

/// A module that declares more memory than the limit fails when its node
/// is created, with a reason.
#[test]
fn initial_memory_past_the_limit_is_refused() -> TestResult {
    let host = WasmHost::new(Limits { max_memory_bytes: 1 << 20, ..Limits::default() })?;
    let definition = load(&host, "big", &FAULTY.replace("(memory (export \"memory\") 1)", "(memory (export \"memory\") 17)").replace("FAULT", "nop"), Abi::Byob, None);
    let Err(error) = render(&definition, Default::default(), 1, 1, SR, |_, _| Ok(())) else { panic!("the node should not start") };
    assert!(error.to_string().contains("instantiation"), "{error}");
    Ok(())
}

/// Modules too costly to compile are refused before the compiler runs,
/// and an empty file is named as such.
#[test]
fn modules_past_the_compile_limits_are_refused() {
    let host = WasmHost::new(Limits { max_functions: 100, max_function_bytes: 4096, ..Limits::default() }).unwrap();
    let error = |name: &str, bytes: &[u8]| host.load_bytes(name, bytes, Abi::Byob, None).err().expect("refused").to_string();
    let many = format!("(module {})", "(func)".repeat(101));
    assert!(error("many.wat", many.as_bytes()).ends_with("many.wat: 101 functions, more than the 100 allowed (byob_wasm::Limits::max_functions; byob render --wasm-max-functions)"));
    let long = format!("(module (func {}))", "(drop (i32.const 1))".repeat(2000));
    let message = error("long.wat", long.as_bytes());
    assert!(message.contains("a function body of") && message.contains("more than the 4096 allowed"), "{message}");
    assert_eq!(error("empty.wasm", b""), "empty.wasm: not a valid WebAssembly module: the file is empty");
}
