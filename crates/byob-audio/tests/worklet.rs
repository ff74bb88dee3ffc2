//! AudioWorkletNode with processors that bring their own buffers (BYOB).
//!
//! Test processors are registered in a fresh `ProcessorRegistry` per test and
//! report what the engine handed them (slice addresses, channel counts,
//! registration results) through shared state. Expected audio is computed
//! here from the sources' known values and the Web Audio spec's mixing
//! equations, never from engine code.
//!
//! The sample rate is a power of two so that sources started at a quantum
//! boundary (`frames / SR`) start exactly on that frame.

use byob_audio::graph_file::GraphFile;
use byob_audio::worklet::{
    AudioWorkletNode, AudioWorkletNodeOptions, BufferKind, ByobMemory, PortKind, ProcessIo, ProcessorInit, ProcessorRegistry,
    Registrar, RegistrationError, TopologyChange, TopologyResponse, WorkletProcessor, WorkletStatus, CHANNEL_BYTES,
};
use byob_audio::{
    AudioBuffer, AudioBufferSourceNode, AudioBufferSourceOptions, AudioGraph, AudioNode, AudioNodeOptions,
    AudioParamDescriptor, AudioScheduledSourceNode, AutomationRate, ChannelCountMode, ConstantSourceNode,
    ConstantSourceOptions, NodeId, OfflineAudioContext,
};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

type TestResult = Result<(), Box<dyn std::error::Error>>;
type Res<T> = Result<T, Box<dyn std::error::Error>>;

const SR: f32 = 32768.0;
/// Frames per render quantum.
const N: usize = 128;
/// Bytes of one channel of one quantum: 128 f32.
const CH: usize = 512;
const H: f64 = std::f64::consts::FRAC_1_SQRT_2;
const TOLERANCE: f64 = 1e-6;

// ---------------------------------------------------------------- helpers

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A varying signal, distinct per channel and per `seed`.
fn wave(seed: f64, c: usize, n: usize) -> f32 {
    (seed + 0.1 * (c + 1) as f64 + 0.0003 * n as f64 * (1.0 + 0.5 * c as f64)) as f32
}

fn signal(seed: f64, channels: usize, frames: usize) -> Vec<Vec<f32>> {
    (0..channels).map(|c| (0..frames).map(|n| wave(seed, c, n)).collect()).collect()
}

/// Constant per-channel levels (used for sources starting after frame 0).
fn level(c: usize) -> f32 {
    [0.11f32, -0.23, 0.37, 0.05, -0.41, 0.29, 0.13, -0.07][c]
}

fn levels(channels: usize, frames: usize) -> Vec<Vec<f32>> {
    (0..channels).map(|c| vec![level(c); frames]).collect()
}

fn buffer_source(graph: &mut AudioGraph, channels: Vec<Vec<f32>>, start_frame: usize) -> Res<NodeId> {
    let buffer = Arc::new(AudioBuffer::new(SR, channels)?);
    let src = AudioBufferSourceNode::new(graph, AudioBufferSourceOptions { buffer: Some(buffer), ..Default::default() })?;
    src.start(graph, start_frame as f64 / SR as f64)?;
    Ok(src.id())
}

fn constant(graph: &mut AudioGraph, offset: f32, start_frame: usize) -> Res<NodeId> {
    let src = ConstantSourceNode::new(graph, ConstantSourceOptions { offset })?;
    src.start(graph, start_frame as f64 / SR as f64)?;
    Ok(src.id())
}

fn assert_audio(out: &AudioBuffer, channels: usize, expected: impl Fn(usize, usize) -> f64, what: &str) {
    assert_eq!(out.number_of_channels(), channels, "{what}: channel count");
    for c in 0..channels {
        let data = out.channel_data(c);
        for (n, &a) in data.iter().enumerate() {
            let (a, e) = (a as f64, expected(c, n));
            assert!((a - e).abs() <= TOLERANCE * e.abs().max(1.0), "{what}: channel {c}, frame {n}: got {a}, expected {e}");
        }
    }
}

/// Whether `floats` f32 at address `ptr` lie inside bytes
/// `start..start + bytes` of the memory whose first byte is at `base`.
fn inside(ptr: usize, floats: usize, base: usize, start: usize, bytes: usize) -> bool {
    ptr >= base + start && ptr + floats * 4 <= base + start + bytes
}

/// The spec's 5.1 -> stereo speakers down-mix of one frame.
fn down_51_to_stereo(x: &[f64; 6]) -> [f64; 2] {
    [x[0] + H * (x[2] + x[4]), x[1] + H * (x[2] + x[5])]
}

fn gain_param() -> AudioParamDescriptor {
    AudioParamDescriptor::new("gain", 1.0, -100.0, 100.0, AutomationRate::ARate)
}

fn options() -> AudioWorkletNodeOptions {
    AudioWorkletNodeOptions::default()
}

fn explicit(channels: usize) -> AudioNodeOptions {
    AudioNodeOptions { channel_count: Some(channels), channel_count_mode: Some(ChannelCountMode::Explicit), channel_interpretation: None }
}

// ------------------------------------------------------- the probe processor

/// What one `process` call saw.
#[derive(Clone, Copy, Debug)]
struct Call {
    frame: u64,
    in_ptr: usize,
    in_len: usize,
    out_ptr: usize,
    out_len: usize,
    in_ch: usize,
    out_ch: usize,
}

#[derive(Default)]
struct Log {
    /// Address of the processor memory's first byte.
    base: usize,
    calls: Vec<Call>,
    changes: Vec<(TopologyChange, TopologyResponse)>,
}

type Shared = Arc<Mutex<Log>>;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Topology {
    /// The processor does not implement `channel_topology_change`.
    NoHandler,
    /// Rejects any count above this one, accepts-if-fits otherwise.
    RejectAbove(usize),
    /// On an input change, registers a region of `bytes_needed` at this
    /// offset and accepts.
    GrowInputAt(usize),
    /// Always accepts, whatever the region.
    AcceptAlways,
}

#[derive(Clone, Debug)]
struct ProbeConfig {
    memory_bytes: usize,
    /// (offset, max_len) regions registered in the constructor.
    input: Option<(usize, usize)>,
    output: Option<(usize, usize)>,
    in_place: Option<(usize, usize)>,
    topology: Topology,
    /// Panics on this (1-based) call, after writing its output.
    panic_on_call: Option<usize>,
    /// Writes this value instead of gain x input.
    constant_output: Option<f32>,
    /// What `process` returns.
    keep_alive: bool,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 4096,
            input: None,
            output: None,
            in_place: None,
            topology: Topology::NoHandler,
            panic_on_call: None,
            constant_output: None,
            keep_alive: true,
        }
    }
}

/// Output = `gain` parameter x input (channels the input lacks are silent),
/// recording the slices it was given.
struct Probe {
    memory: ByobMemory,
    cfg: ProbeConfig,
    log: Shared,
    calls: usize,
}

impl Probe {
    fn run(&mut self, io: &mut ProcessIo<'_>) -> bool {
        self.calls += 1;
        let gain = io.param(0);
        let g = |i: usize| if gain.len() == 1 { gain[0] } else { gain[i] };
        let frame = io.current_frame();
        let (in_ch, out_ch) = (io.input_channels(0), io.output_channels(0));
        let input = io.input(0);
        let output = io.output(0);
        lock(&self.log).calls.push(Call {
            frame,
            in_ptr: input.as_ptr() as usize,
            in_len: input.len(),
            out_ptr: output.as_ptr() as usize,
            out_len: output.len(),
            in_ch,
            out_ch,
        });
        if let Some(v) = self.cfg.constant_output {
            output.fill(v);
        } else if input.is_empty() {
            // In place: the input is already in the output.
            for (i, s) in output.iter_mut().enumerate() {
                *s *= g(i % N);
            }
        } else {
            for c in 0..out_ch {
                for i in 0..N {
                    output[c * N + i] = if c < in_ch { g(i) * input[c * N + i] } else { 0.0 };
                }
            }
        }
        if Some(self.calls) == self.cfg.panic_on_call {
            panic!("kaboom on call {}", self.calls);
        }
        self.cfg.keep_alive
    }
}

/// The probe without a topology handler (the trait's default).
struct PlainProbe(Probe);

impl WorkletProcessor for PlainProbe {
    fn process(&mut self, io: &mut ProcessIo<'_>) -> bool {
        self.0.run(io)
    }
}

/// The probe with one of the topology handlers above.
struct HandlerProbe(Probe);

impl WorkletProcessor for HandlerProbe {
    fn process(&mut self, io: &mut ProcessIo<'_>) -> bool {
        self.0.run(io)
    }

    fn channel_topology_change(&mut self, change: TopologyChange, registrar: &mut Registrar<'_>) -> TopologyResponse {
        let p = &mut self.0;
        let response = match p.cfg.topology {
            Topology::NoHandler => unreachable!("PlainProbe has no handler"),
            Topology::RejectAbove(max) if change.new_channels > max => TopologyResponse::Reject,
            Topology::RejectAbove(_) => TopologyResponse::AcceptIfFits,
            Topology::GrowInputAt(offset) if change.kind == PortKind::Input => {
                match registrar.register_buffers(&p.memory, offset, change.bytes_needed, BufferKind::Input, change.port) {
                    Ok(()) => TopologyResponse::Accept,
                    Err(_) => TopologyResponse::Reject,
                }
            }
            Topology::GrowInputAt(_) => TopologyResponse::AcceptIfFits,
            Topology::AcceptAlways => TopologyResponse::Accept,
        };
        lock(&p.log).changes.push((change, response));
        response
    }
}

fn probe_registry(cfg: ProbeConfig, log: Shared) -> ProcessorRegistry {
    let mut registry = ProcessorRegistry::new();
    registry
        .register("probe", vec![gain_param()], move |init: &mut ProcessorInit<'_>| {
            let memory = ByobMemory::new(cfg.memory_bytes);
            // The base address, read before anything is lent.
            let base = init.memory(&memory, 0, cfg.memory_bytes / 4).map_err(|e| e.to_string())?.as_ptr() as usize;
            lock(&log).base = base;
            let regions = [(cfg.input, BufferKind::Input), (cfg.output, BufferKind::Output), (cfg.in_place, BufferKind::InPlace)];
            for (region, kind) in regions {
                if let Some((offset, len)) = region {
                    init.register_buffers(&memory, offset, len, kind, 0).map_err(|e| e.to_string())?;
                }
            }
            let probe = Probe { memory, cfg: cfg.clone(), log: log.clone(), calls: 0 };
            let boxed: Box<dyn WorkletProcessor> =
                if cfg.topology == Topology::NoHandler { Box::new(PlainProbe(probe)) } else { Box::new(HandlerProbe(probe)) };
            Ok(boxed)
        })
        .expect("fresh registry");
    registry
}

fn probe_options(gain: f32) -> AudioWorkletNodeOptions {
    AudioWorkletNodeOptions { parameter_data: vec![("gain".into(), gain)], ..options() }
}

// --------------------------------------------- 1 and 2: zero copies vs copies

const GAIN_QUANTA: usize = 4;

/// Stereo varying source -> probe (gain 0.5) -> stereo destination.
fn render_stereo_probe(cfg: ProbeConfig, log: Shared) -> Res<(AudioBuffer, Arc<WorkletStatus>)> {
    let frames = GAIN_QUANTA * N;
    let mut ctx = OfflineAudioContext::new(2, frames, SR)?;
    let graph = ctx.graph();
    let src = buffer_source(graph, signal(0.0, 2, frames), 0)?;
    let node = AudioWorkletNode::new(graph, &probe_registry(cfg, log), "probe", probe_options(0.5))?;
    let dest = graph.destination();
    graph.connect(src, 0, node.id(), 0)?;
    graph.connect(node.id(), 0, dest, 0)?;
    let rendered = ctx.render(|_| {})?;
    assert!(rendered.processor_errors.is_empty(), "{:?}", rendered.processor_errors);
    Ok((rendered.buffer, node.status().clone()))
}

fn expect_half_of_input(out: &AudioBuffer, what: &str) {
    assert_audio(out, 2, |c, n| 0.5 * wave(0.0, c, n) as f64, what);
}

#[test]
fn channel_bytes_is_one_quantum_of_f32() {
    assert_eq!(CHANNEL_BYTES, N * 4);
    assert_eq!(CHANNEL_BYTES, CH);
}

#[test]
fn constructor_registration_processes_inside_the_regions_without_copies() -> TestResult {
    let log = Shared::default();
    let cfg = ProbeConfig { memory_bytes: 4 * CH, input: Some((0, 2 * CH)), output: Some((2 * CH, 2 * CH)), ..Default::default() };
    let (out, status) = render_stereo_probe(cfg, log.clone())?;
    expect_half_of_input(&out, "byob gain");
    let log = lock(&log);
    assert_ne!(log.base, 0);
    assert_eq!(log.calls.len(), GAIN_QUANTA);
    for call in &log.calls {
        assert_eq!((call.in_ch, call.out_ch), (2, 2), "{call:?}");
        assert_eq!((call.in_len, call.out_len), (2 * N, 2 * N), "{call:?}");
        assert!(inside(call.in_ptr, call.in_len, log.base, 0, 2 * CH), "input outside its region: {call:?} base {:#x}", log.base);
        assert!(inside(call.out_ptr, call.out_len, log.base, 2 * CH, 2 * CH), "output outside its region: {call:?} base {:#x}", log.base);
    }
    assert_eq!(status.bytes_copied(), 0);
    assert_eq!(status.quanta(), GAIN_QUANTA as u64);
    Ok(())
}

#[test]
fn unregistered_baseline_copies_every_channel_of_every_port() -> TestResult {
    let byob_log = Shared::default();
    let byob_cfg = ProbeConfig { memory_bytes: 4 * CH, input: Some((0, 2 * CH)), output: Some((2 * CH, 2 * CH)), ..Default::default() };
    let (byob_out, _) = render_stereo_probe(byob_cfg, byob_log)?;

    let log = Shared::default();
    let (out, status) = render_stereo_probe(ProbeConfig { memory_bytes: 4 * CH, ..Default::default() }, log.clone())?;
    expect_half_of_input(&out, "baseline gain");
    for c in 0..2 {
        assert_eq!(out.channel_data(c), byob_out.channel_data(c), "baseline and byob differ on channel {c}");
    }
    let quanta = GAIN_QUANTA as u64;
    assert_eq!(status.quanta(), quanta);
    // Per quantum: 2 input channels copied in, 2 output channels copied out.
    assert_eq!(status.bytes_copied(), quanta * (2 + 2) * CH as u64);
    let log = lock(&log);
    for call in &log.calls {
        assert_eq!((call.in_ch, call.out_ch), (2, 2), "{call:?}");
        // Engine-owned arrays, not the processor's memory.
        assert!(!inside(call.in_ptr, 1, log.base, 0, 4 * CH) && !inside(call.out_ptr, 1, log.base, 0, 4 * CH), "{call:?}");
    }
    Ok(())
}

// ------------------------------------ 3: registration inside process (hand-over)

const SLOT_A: usize = 0;
const SLOT_B: usize = CH;
const VALUE_A: f32 = 0.25;
const VALUE_B: f32 = -0.5;

#[derive(Debug, Default)]
struct HandOverCall {
    quantum: usize,
    /// Reading the slot about to be registered, before registering it.
    target_before: Option<Result<f32, RegistrationError>>,
    registered: Option<Result<(), RegistrationError>>,
    /// Reading the slot this call's registration replaced.
    replaced_now: Option<Result<f32, RegistrationError>>,
    out_ptr: usize,
}

#[derive(Default)]
struct HandOverLog {
    base: usize,
    calls: Vec<HandOverCall>,
}

/// Two mono output slots prepared in the constructor (A = 0.25, B = -0.5);
/// A is registered first and the slots alternate from quantum 1 on.
struct HandOver {
    memory: ByobMemory,
    log: Arc<Mutex<HandOverLog>>,
    calls: usize,
}

impl WorkletProcessor for HandOver {
    fn process(&mut self, io: &mut ProcessIo<'_>) -> bool {
        let q = self.calls;
        self.calls += 1;
        let (target, previous) = if q.is_multiple_of(2) { (SLOT_A, SLOT_B) } else { (SLOT_B, SLOT_A) };
        let mut entry = HandOverCall { quantum: q, ..Default::default() };
        if q >= 1 {
            entry.target_before = Some(io.memory(&self.memory, target, N).map(|s| s[0]));
            entry.registered = Some(io.register_buffers(&self.memory, target, CH, BufferKind::Output, 0));
            entry.replaced_now = Some(io.memory(&self.memory, previous, N).map(|s| s[0]));
        }
        entry.out_ptr = io.output(0).as_ptr() as usize;
        lock(&self.log).calls.push(entry);
        true
    }
}

#[test]
fn output_registered_inside_process_is_handed_over_that_quantum() -> TestResult {
    const QUANTA: usize = 6;
    let log = Arc::new(Mutex::new(HandOverLog::default()));
    let mut registry = ProcessorRegistry::new();
    let shared = log.clone();
    registry.register("hand-over", Vec::new(), move |init| {
        let memory = ByobMemory::new(3 * CH);
        let base = init.memory(&memory, 0, 3 * N).map_err(|e| e.to_string())?.as_ptr() as usize;
        lock(&shared).base = base;
        // The (unconnected) input gets the third slot, so nothing is copied.
        init.register_buffers(&memory, 2 * CH, CH, BufferKind::Input, 0).map_err(|e| e.to_string())?;
        init.memory(&memory, SLOT_A, N).map_err(|e| e.to_string())?.fill(VALUE_A);
        init.memory(&memory, SLOT_B, N).map_err(|e| e.to_string())?.fill(VALUE_B);
        init.register_buffers(&memory, SLOT_A, CH, BufferKind::Output, 0).map_err(|e| e.to_string())?;
        // Lent now: the processor cannot touch it.
        if init.memory(&memory, SLOT_A, N).is_ok() {
            return Err("slot A is lent but still available".into());
        }
        Ok(Box::new(HandOver { memory, log: shared.clone(), calls: 0 }))
    })?;
    let mut ctx = OfflineAudioContext::new(1, QUANTA * N, SR)?;
    let graph = ctx.graph();
    let node = AudioWorkletNode::new(
        graph,
        &registry,
        "hand-over",
        AudioWorkletNodeOptions { output_channel_count: Some(vec![1]), ..options() },
    )?;
    let dest = graph.destination();
    graph.connect(node.id(), 0, dest, 0)?;
    let rendered = ctx.render(|_| {})?;
    assert!(rendered.processor_errors.is_empty(), "{:?}", rendered.processor_errors);
    let value = |q: usize| if q.is_multiple_of(2) { VALUE_A } else { VALUE_B };
    assert_audio(&rendered.buffer, 1, |_, n| value(n / N) as f64, "alternating hand-over");

    let log = lock(&log);
    assert_eq!(log.calls.len(), QUANTA);
    for call in &log.calls {
        let q = call.quantum;
        let (target, previous) = if q % 2 == 0 { (SLOT_A, SLOT_B) } else { (SLOT_B, SLOT_A) };
        assert_eq!(call.out_ptr, log.base + target, "quantum {q}: output is not the slot registered for it");
        if q == 0 {
            continue;
        }
        // The slot replaced in the previous call is the processor's again
        // (for q = 1, slot B was never lent), untouched.
        assert_eq!(call.target_before, Some(Ok(value(q))), "quantum {q}");
        assert_eq!(call.registered, Some(Ok(())), "quantum {q}");
        // The slot replaced in this very call is not available yet.
        assert_eq!(call.replaced_now, Some(Err(RegistrationError::NotAvailable { offset: previous, len: N })), "quantum {q}");
    }
    assert_eq!(node.status().bytes_copied(), 0);
    Ok(())
}

#[test]
fn output_registration_on_a_node_without_inputs() -> TestResult {
    let mut registry = ProcessorRegistry::new();
    registry.register("source", Vec::new(), |init| {
        let memory = ByobMemory::new(CH);
        init.memory(&memory, 0, N).map_err(|e| e.to_string())?.fill(VALUE_A);
        init.register_buffers(&memory, 0, CH, BufferKind::Output, 0).map_err(|e| e.to_string())?;
        Ok(Box::new(HandOver { memory, log: Default::default(), calls: 0 }) as Box<dyn WorkletProcessor>)
    })?;
    let mut ctx = OfflineAudioContext::new(1, N, SR)?;
    let graph = ctx.graph();
    let node = AudioWorkletNode::new(
        graph,
        &registry,
        "source",
        AudioWorkletNodeOptions { number_of_inputs: 0, output_channel_count: Some(vec![1]), ..options() },
    )?;
    let dest = graph.destination();
    graph.connect(node.id(), 0, dest, 0)?;
    let rendered = ctx.render(|_| {})?;
    assert!(rendered.processor_errors.is_empty(), "{:?}", rendered.processor_errors);
    assert_audio(&rendered.buffer, 1, |_, _| VALUE_A as f64, "output region of a node without inputs");
    Ok(())
}

// ----------------------------------------------------- 4: over-allocation

#[test]
fn over_allocated_region_absorbs_growth_to_5_1_without_a_handler() -> TestResult {
    const QUANTA: usize = 4;
    let log = Shared::default();
    let cfg = ProbeConfig { memory_bytes: 6 * CH, input: Some((0, 6 * CH)), ..Default::default() };
    let mut ctx = OfflineAudioContext::new(6, QUANTA * N, SR)?;
    let graph = ctx.graph();
    // Mono silence for quanta 0 and 1, 5.1 from quantum 2 on.
    let src = buffer_source(graph, levels(6, QUANTA * N), 2 * N)?;
    let node = AudioWorkletNode::new(graph, &probe_registry(cfg, log.clone()), "probe", probe_options(1.0))?;
    let dest = graph.destination();
    graph.connect(src, 0, node.id(), 0)?;
    graph.connect(node.id(), 0, dest, 0)?;
    let rendered = ctx.render(|_| {})?;
    assert!(rendered.processor_errors.is_empty(), "{:?}", rendered.processor_errors);
    assert_eq!(node.status().error(), None);
    assert_audio(&rendered.buffer, 6, |c, n| if n >= 2 * N { level(c) as f64 } else { 0.0 }, "5.1 through the over-allocated region");
    let log = lock(&log);
    assert_eq!(log.calls.len(), QUANTA);
    for (q, call) in log.calls.iter().enumerate() {
        let channels = if q < 2 { 1 } else { 6 };
        assert_eq!(call.in_ch, channels, "quantum {q}");
        assert_eq!(call.in_len, channels * N, "quantum {q}");
        assert!(inside(call.in_ptr, call.in_len, log.base, 0, 6 * CH), "quantum {q}: input outside the original region: {call:?}");
    }
    // Input 1 -> 6, then the output (following the input) 1 -> 6.
    assert_eq!(node.status().topology_changes(), 2);
    Ok(())
}

// -------------------------------------------------------- 5: topology

#[test]
fn topology_handler_registers_a_larger_region_and_accepts() -> TestResult {
    const QUANTA: usize = 4;
    const NEW: usize = 2 * CH;
    let log = Shared::default();
    let cfg = ProbeConfig {
        memory_bytes: NEW + 6 * CH,
        input: Some((0, CH)),
        topology: Topology::GrowInputAt(NEW),
        ..Default::default()
    };
    let mut ctx = OfflineAudioContext::new(6, QUANTA * N, SR)?;
    let graph = ctx.graph();
    let src = buffer_source(graph, levels(6, QUANTA * N), 2 * N)?;
    let node = AudioWorkletNode::new(graph, &probe_registry(cfg, log.clone()), "probe", probe_options(1.0))?;
    let dest = graph.destination();
    graph.connect(src, 0, node.id(), 0)?;
    graph.connect(node.id(), 0, dest, 0)?;
    let rendered = ctx.render(|_| {})?;
    assert!(rendered.processor_errors.is_empty(), "{:?}", rendered.processor_errors);
    assert_audio(&rendered.buffer, 6, |c, n| if n >= 2 * N { level(c) as f64 } else { 0.0 }, "5.1 after re-registration");
    let log = lock(&log);
    let offered = log.changes.iter().find(|(c, _)| c.kind == PortKind::Input).expect("input change offered");
    assert_eq!(offered.0, TopologyChange { kind: PortKind::Input, port: 0, old_channels: 1, new_channels: 6, bytes_needed: 6 * CH });
    assert_eq!(offered.1, TopologyResponse::Accept);
    for (q, call) in log.calls.iter().enumerate() {
        if q < 2 {
            assert_eq!(call.in_ch, 1, "quantum {q}");
            assert!(inside(call.in_ptr, call.in_len, log.base, 0, CH), "quantum {q}: {call:?}");
        } else {
            assert_eq!((call.in_ch, call.out_ch), (6, 6), "quantum {q}");
            assert!(inside(call.in_ptr, call.in_len, log.base, NEW, 6 * CH), "quantum {q}: not in the new region: {call:?}");
        }
    }
    Ok(())
}

/// Stereo (varying) from frame 0 plus 5.1 (constant levels) from quantum 2
/// into the probe -> stereo destination, beside an optional constant source
/// straight into the destination.
fn render_stereo_then_5_1(cfg: ProbeConfig, log: Shared, label: &str, parallel: Option<f32>) -> Res<(byob_audio::context::Rendered, Arc<WorkletStatus>)> {
    let frames = 4 * N;
    let mut ctx = OfflineAudioContext::new(2, frames, SR)?;
    let graph = ctx.graph();
    let stereo = buffer_source(graph, signal(0.2, 2, frames), 0)?;
    let surround = buffer_source(graph, levels(6, frames), 2 * N)?;
    let node = AudioWorkletNode::new(graph, &probe_registry(cfg, log), "probe", probe_options(1.0))?;
    graph.set_label(node.id(), label);
    let dest = graph.destination();
    graph.connect(stereo, 0, node.id(), 0)?;
    graph.connect(surround, 0, node.id(), 0)?;
    graph.connect(node.id(), 0, dest, 0)?;
    if let Some(offset) = parallel {
        let c = constant(graph, offset, 0)?;
        graph.connect(c, 0, dest, 0)?;
    }
    let rendered = ctx.render(|_| {})?;
    Ok((rendered, node.status().clone()))
}

/// What a worklet that keeps 2 channels receives: stereo + 5.1 down-mixed.
fn kept_stereo(c: usize, n: usize) -> f64 {
    let stereo = wave(0.2, c, n) as f64;
    if n < 2 * N {
        return stereo;
    }
    let x: [f64; 6] = std::array::from_fn(|k| level(k) as f64);
    stereo + down_51_to_stereo(&x)[c]
}

fn assert_kept_stereo(log: &Shared, out: &AudioBuffer, what: &str) {
    assert_audio(out, 2, kept_stereo, what);
    let log = lock(log);
    assert_eq!(log.calls.len(), 4, "{what}");
    for call in &log.calls {
        assert_eq!((call.in_ch, call.in_len), (2, 2 * N), "{what}: {call:?}");
    }
}

#[test]
fn topology_handler_rejects_growth_and_the_engine_down_mixes() -> TestResult {
    let log = Shared::default();
    // The region would fit 5.1: the rejection alone keeps stereo.
    let cfg = ProbeConfig { input: Some((0, 6 * CH)), topology: Topology::RejectAbove(2), ..Default::default() };
    let (rendered, status) = render_stereo_then_5_1(cfg, log.clone(), "rejecter", None)?;
    assert!(rendered.processor_errors.is_empty(), "{:?}", rendered.processor_errors);
    assert_kept_stereo(&log, &rendered.buffer, "explicit reject");
    let base = lock(&log).base;
    for call in &lock(&log).calls {
        assert!(inside(call.in_ptr, call.in_len, base, 0, 6 * CH), "{call:?}");
    }
    let change = TopologyChange { kind: PortKind::Input, port: 0, old_channels: 2, new_channels: 6, bytes_needed: 6 * CH };
    assert!(lock(&log).changes.contains(&(change, TopologyResponse::Reject)), "{:?}", lock(&log).changes);
    assert_eq!(status.error(), None);
    Ok(())
}

#[test]
fn default_topology_handler_rejects_growth_beyond_a_small_region() -> TestResult {
    let log = Shared::default();
    let cfg = ProbeConfig { input: Some((0, 2 * CH)), ..Default::default() };
    let (rendered, status) = render_stereo_then_5_1(cfg, log.clone(), "default", None)?;
    assert!(rendered.processor_errors.is_empty(), "{:?}", rendered.processor_errors);
    assert_kept_stereo(&log, &rendered.buffer, "default handler, 2-channel region");
    let base = lock(&log).base;
    for call in &lock(&log).calls {
        assert!(inside(call.in_ptr, call.in_len, base, 0, 2 * CH), "{call:?}");
    }
    assert_eq!(status.error(), None);
    Ok(())
}

#[test]
fn accepting_growth_with_a_too_small_region_is_a_processor_error() -> TestResult {
    let log = Shared::default();
    let cfg = ProbeConfig { input: Some((0, 2 * CH)), topology: Topology::AcceptAlways, ..Default::default() };
    let (rendered, status) = render_stereo_then_5_1(cfg, log.clone(), "acceptor", Some(0.125))?;
    assert_eq!(rendered.processor_errors.len(), 1, "{:?}", rendered.processor_errors);
    assert_eq!(rendered.processor_errors[0].node, "acceptor");
    assert!(status.error().is_some());
    // The worklet's audio until quantum 2, silence after; the parallel
    // constant source renders throughout.
    assert_audio(
        &rendered.buffer,
        2,
        |c, n| 0.125 + if n < 2 * N { wave(0.2, c, n) as f64 } else { 0.0 },
        "after the processor error",
    );
    // process is never called again.
    assert_eq!(lock(&log).calls.len(), 2);
    Ok(())
}

// ------------------------------------------------ 6: bad registrations

const CTOR: usize = usize::MAX;

#[derive(Default)]
struct PickyLog {
    base: usize,
    /// (call index or CTOR, what, result)
    attempts: Vec<(usize, &'static str, Result<(), RegistrationError>)>,
    calls: Vec<Call>,
}

/// Stereo in, stereo out. Strict mode: INPUT at 0..1024, OUTPUT at
/// 1024..2048, then a series of bad registrations; in process, more bad ones,
/// then (call 3) the input moves to 2048..3072 and (call 4) the output to
/// 0..1024. In-place mode: INPUT at 0..1024, OUTPUT over it (refused), then
/// INPUT|OUTPUT over it (accepted).
struct Picky {
    memory: ByobMemory,
    log: Arc<Mutex<PickyLog>>,
    calls: usize,
    in_place: bool,
}

impl WorkletProcessor for Picky {
    fn process(&mut self, io: &mut ProcessIo<'_>) -> bool {
        let q = self.calls;
        self.calls += 1;
        let mut attempts = Vec::new();
        let m = &self.memory;
        match if self.in_place { usize::MAX } else { q } {
            1 => {
                attempts.push(("in use: output over the input", io.register_buffers(m, 0, 2 * CH, BufferKind::Output, 0)));
                attempts.push(("in use: input over the output", io.register_buffers(m, 2 * CH, 2 * CH, BufferKind::Input, 0)));
                attempts.push(("misaligned in process", io.register_buffers(m, 4 * CH + 8, 2 * CH, BufferKind::Output, 0)));
                attempts.push(("out of bounds in process", io.register_buffers(m, 7 * CH, 2 * CH, BufferKind::Output, 0)));
                attempts.push(("too small in process", io.register_buffers(m, 4 * CH, 1000, BufferKind::Output, 0)));
                attempts.push(("no such port in process", io.register_buffers(m, 4 * CH, 2 * CH, BufferKind::Input, 1)));
            }
            3 => {
                attempts.push(("move the input", io.register_buffers(m, 4 * CH, 2 * CH, BufferKind::Input, 0)));
                attempts.push(("in use: output over the input being moved", io.register_buffers(m, 0, 2 * CH, BufferKind::Output, 0)));
            }
            4 => {
                attempts.push(("output onto the freed old input", io.register_buffers(m, 0, 2 * CH, BufferKind::Output, 0)));
            }
            _ => {}
        }
        let input = io.input(0);
        let in_ch = io.input_channels(0);
        let out_ch = io.output_channels(0);
        let frame = io.current_frame();
        let output = io.output(0);
        let call = Call {
            frame,
            in_ptr: input.as_ptr() as usize,
            in_len: input.len(),
            out_ptr: output.as_ptr() as usize,
            out_len: output.len(),
            in_ch,
            out_ch,
        };
        if !input.is_empty() {
            output.copy_from_slice(input);
        }
        let mut log = lock(&self.log);
        log.calls.push(call);
        log.attempts.extend(attempts.into_iter().map(|(what, r)| (q, what, r)));
        true
    }
}

fn picky_registry(log: Arc<Mutex<PickyLog>>) -> ProcessorRegistry {
    let mut registry = ProcessorRegistry::new();
    registry
        .register("picky", Vec::new(), move |init| {
            let memory = ByobMemory::new(8 * CH);
            let base = init.memory(&memory, 0, 8 * N).map_err(|e| e.to_string())?.as_ptr() as usize;
            let in_place = init.processor_options.get("inPlace").and_then(|v| v.as_bool()).unwrap_or(false);
            let m = &memory;
            let mut attempts = Vec::new();
            let mut attempt = |what, r| attempts.push((CTOR, what, r));
            if in_place {
                attempt("input", init.register_buffers(m, 0, 2 * CH, BufferKind::Input, 0));
                attempt("output over the input", init.register_buffers(m, 0, 2 * CH, BufferKind::Output, 0));
                attempt("the same overlap in place", init.register_buffers(m, 0, 2 * CH, BufferKind::InPlace, 0));
            } else {
                attempt("input", init.register_buffers(m, 0, 2 * CH, BufferKind::Input, 0));
                attempt("output", init.register_buffers(m, 2 * CH, 2 * CH, BufferKind::Output, 0));
                attempt("out of bounds", init.register_buffers(m, 6 * CH, 4 * CH, BufferKind::Input, 0));
                attempt("misaligned", init.register_buffers(m, 8, 2 * CH, BufferKind::Input, 0));
                attempt("too small", init.register_buffers(m, 4 * CH, CH, BufferKind::Input, 0));
                attempt("input over the output", init.register_buffers(m, 2 * CH, 2 * CH, BufferKind::Input, 0));
                attempt("output over the input", init.register_buffers(m, CH, 2 * CH, BufferKind::Output, 0));
                attempt("no input port 1", init.register_buffers(m, 4 * CH, 2 * CH, BufferKind::Input, 1));
                attempt("no output port 1", init.register_buffers(m, 4 * CH, 2 * CH, BufferKind::Output, 1));
                attempt("no in-place port 1", init.register_buffers(m, 4 * CH, 2 * CH, BufferKind::InPlace, 1));
            }
            let mut shared = lock(&log);
            shared.base = base;
            shared.attempts.extend(attempts);
            drop(shared);
            Ok(Box::new(Picky { memory, log: log.clone(), calls: 0, in_place }))
        })
        .expect("fresh registry");
    registry
}

fn render_picky(in_place: bool, log: Arc<Mutex<PickyLog>>, quanta: usize) -> Res<AudioBuffer> {
    let frames = quanta * N;
    let mut ctx = OfflineAudioContext::new(2, frames, SR)?;
    let graph = ctx.graph();
    let src = buffer_source(graph, signal(0.4, 2, frames), 0)?;
    let node = AudioWorkletNode::new(
        graph,
        &picky_registry(log),
        "picky",
        AudioWorkletNodeOptions {
            output_channel_count: Some(vec![2]),
            processor_options: serde_json::json!({ "inPlace": in_place }),
            node: explicit(2),
            ..options()
        },
    )?;
    let dest = graph.destination();
    graph.connect(src, 0, node.id(), 0)?;
    graph.connect(node.id(), 0, dest, 0)?;
    let rendered = ctx.render(|_| {})?;
    assert!(rendered.processor_errors.is_empty(), "{:?}", rendered.processor_errors);
    assert_eq!(node.status().bytes_copied(), 0);
    Ok(rendered.buffer)
}

#[test]
fn bad_registrations_fail_precisely_and_leave_the_previous_ones_in_force() -> TestResult {
    const QUANTA: usize = 6;
    let log = Arc::new(Mutex::new(PickyLog::default()));
    let out = render_picky(false, log.clone(), QUANTA)?;
    assert_audio(&out, 2, |c, n| wave(0.4, c, n) as f64, "pass-through");
    let log = lock(&log);
    let expected: Vec<(usize, &str, Result<(), RegistrationError>)> = vec![
        (CTOR, "input", Ok(())),
        (CTOR, "output", Ok(())),
        (CTOR, "out of bounds", Err(RegistrationError::OutOfBounds { offset: 6 * CH, max_len: 4 * CH, memory_len: 8 * CH })),
        (CTOR, "misaligned", Err(RegistrationError::Misaligned { offset: 8 })),
        (CTOR, "too small", Err(RegistrationError::TooSmall { max_len: CH, channels: 2, needed: 2 * CH })),
        (CTOR, "input over the output", Err(RegistrationError::Overlap { other: "output", port: 0 })),
        (CTOR, "output over the input", Err(RegistrationError::Overlap { other: "input", port: 0 })),
        (CTOR, "no input port 1", Err(RegistrationError::NoSuchPort { kind: "INPUT", port: 1, count: 1, side: "input" })),
        (CTOR, "no output port 1", Err(RegistrationError::NoSuchPort { kind: "OUTPUT", port: 1, count: 1, side: "output" })),
        (CTOR, "no in-place port 1", Err(RegistrationError::NoSuchPort { kind: "INPUT|OUTPUT", port: 1, count: 1, side: "input" })),
        (1, "in use: output over the input", Err(RegistrationError::InUse { other: "input", port: 0 })),
        (1, "in use: input over the output", Err(RegistrationError::InUse { other: "output", port: 0 })),
        (1, "misaligned in process", Err(RegistrationError::Misaligned { offset: 4 * CH + 8 })),
        (1, "out of bounds in process", Err(RegistrationError::OutOfBounds { offset: 7 * CH, max_len: 2 * CH, memory_len: 8 * CH })),
        (1, "too small in process", Err(RegistrationError::TooSmall { max_len: 1000, channels: 2, needed: 2 * CH })),
        (1, "no such port in process", Err(RegistrationError::NoSuchPort { kind: "INPUT", port: 1, count: 1, side: "input" })),
        (3, "move the input", Ok(())),
        (3, "in use: output over the input being moved", Err(RegistrationError::InUse { other: "input", port: 0 })),
        (4, "output onto the freed old input", Ok(())),
    ];
    assert_eq!(log.attempts.len(), expected.len(), "{:#?}", log.attempts);
    for (got, want) in log.attempts.iter().zip(&expected) {
        assert_eq!((got.0, got.1, &got.2), (want.0, want.1, &want.2));
        if let Err(e) = &got.2 {
            assert!(!e.to_string().is_empty());
        }
    }
    // Where the engine kept the audio, quantum by quantum.
    assert_eq!(log.calls.len(), QUANTA);
    for (q, call) in log.calls.iter().enumerate() {
        assert_eq!((call.in_ch, call.out_ch, call.in_len, call.out_len), (2, 2, 2 * N, 2 * N), "quantum {q}");
        // Input: 0..1024 until the move made in call 3 takes effect (next quantum).
        let input = if q <= 3 { 0 } else { 4 * CH };
        // Output: 1024..2048 until call 4 registers 0..1024 (effective at once).
        let output = if q <= 3 { 2 * CH } else { 0 };
        assert!(inside(call.in_ptr, call.in_len, log.base, input, 2 * CH), "quantum {q}: input not at {input}: {call:?}");
        assert!(inside(call.out_ptr, call.out_len, log.base, output, 2 * CH), "quantum {q}: output not at {output}: {call:?}");
    }
    Ok(())
}

#[test]
fn overlapping_input_and_output_is_accepted_as_in_place() -> TestResult {
    const QUANTA: usize = 3;
    let log = Arc::new(Mutex::new(PickyLog::default()));
    let out = render_picky(true, log.clone(), QUANTA)?;
    assert_audio(&out, 2, |c, n| wave(0.4, c, n) as f64, "in-place pass-through");
    let log = lock(&log);
    let results: Vec<_> = log.attempts.iter().map(|(_, what, r)| (*what, r.clone())).collect();
    assert_eq!(
        results,
        vec![
            ("input", Ok(())),
            ("output over the input", Err(RegistrationError::Overlap { other: "input", port: 0 })),
            ("the same overlap in place", Ok(())),
        ]
    );
    for call in &log.calls {
        assert_eq!(call.in_len, 0, "in place: the input is in the output");
        assert!(inside(call.out_ptr, call.out_len, log.base, 0, 2 * CH), "{call:?}");
    }
    Ok(())
}

// ---------------------------------------------------- 7: panic isolation

#[test]
fn a_panicking_processor_is_isolated() -> TestResult {
    const QUANTA: usize = 5;
    let log = Shared::default();
    let cfg = ProbeConfig { panic_on_call: Some(3), ..Default::default() };
    let mut ctx = OfflineAudioContext::new(1, QUANTA * N, SR)?;
    let graph = ctx.graph();
    let feed = constant(graph, 0.5, 0)?;
    let node = AudioWorkletNode::new(graph, &probe_registry(cfg, log.clone()), "probe", probe_options(1.0))?;
    graph.set_label(node.id(), "boom");
    let parallel = constant(graph, 0.25, 0)?;
    let dest = graph.destination();
    graph.connect(feed, 0, node.id(), 0)?;
    graph.connect(node.id(), 0, dest, 0)?;
    graph.connect(parallel, 0, dest, 0)?;
    let rendered = ctx.render(|_| {})?;
    assert_eq!(rendered.processor_errors.len(), 1, "{:?}", rendered.processor_errors);
    let event = &rendered.processor_errors[0];
    assert_eq!(event.node, "boom");
    assert!(event.message.contains("kaboom on call 3"), "{}", event.message);
    // The output written before the panic in call 3 does not leak.
    assert_audio(&rendered.buffer, 1, |_, n| 0.25 + if n < 2 * N { 0.5 } else { 0.0 }, "after the panic");
    assert_eq!(lock(&log).calls.len(), 3, "process is never called again");
    Ok(())
}

#[test]
fn quanta_count_each_quantum_once_after_a_panic() -> TestResult {
    const QUANTA: usize = 5;
    let cfg = ProbeConfig { panic_on_call: Some(3), ..Default::default() };
    let mut ctx = OfflineAudioContext::new(1, QUANTA * N, SR)?;
    let graph = ctx.graph();
    let node = AudioWorkletNode::new(graph, &probe_registry(cfg, Shared::default()), "probe", probe_options(1.0))?;
    let dest = graph.destination();
    graph.connect(node.id(), 0, dest, 0)?;
    let rendered = ctx.render(|_| {})?;
    assert_eq!(rendered.processor_errors.len(), 1);
    assert_eq!(node.status().quanta(), QUANTA as u64);
    Ok(())
}

// ------------------------------------------- 8: the active-source flag

#[test]
fn returning_false_with_silent_inputs_stops_processing() -> TestResult {
    const QUANTA: usize = 6;
    for late_input in [false, true] {
        let log = Shared::default();
        let cfg = ProbeConfig { constant_output: Some(0.75), keep_alive: false, ..Default::default() };
        let mut ctx = OfflineAudioContext::new(1, QUANTA * N, SR)?;
        let graph = ctx.graph();
        let node = AudioWorkletNode::new(graph, &probe_registry(cfg, log.clone()), "probe", probe_options(1.0))?;
        if late_input {
            // Silent until quantum 3.
            let src = constant(graph, 0.5, 3 * N)?;
            graph.connect(src, 0, node.id(), 0)?;
        }
        let dest = graph.destination();
        graph.connect(node.id(), 0, dest, 0)?;
        let rendered = ctx.render(|_| {})?;
        assert!(rendered.processor_errors.is_empty());
        let processed = |q: usize| q == 0 || (late_input && q >= 3);
        assert_audio(&rendered.buffer, 1, |_, n| if processed(n / N) { 0.75 } else { 0.0 }, &format!("late input {late_input}"));
        let frames: Vec<u64> = lock(&log).calls.iter().map(|c| c.frame).collect();
        let expected: Vec<u64> = (0..QUANTA).filter(|&q| processed(q)).map(|q| (q * N) as u64).collect();
        assert_eq!(frames, expected, "late input {late_input}");
        assert_eq!(node.status().quanta(), QUANTA as u64);
    }
    Ok(())
}

// ------------------------------------------------- 9: example processors

#[test]
fn example_gain_is_identical_with_and_without_byob() -> TestResult {
    const QUANTA: usize = 4;
    let registry = ProcessorRegistry::with_examples();
    let mut outputs = Vec::new();
    for (what, processor_options, copies) in [
        ("byob", serde_json::json!({ "byob": true }), false),
        ("baseline", serde_json::json!({ "byob": false }), true),
        ("in place", serde_json::json!({ "inPlace": true }), false),
    ] {
        let frames = QUANTA * N;
        let mut ctx = OfflineAudioContext::new(2, frames, SR)?;
        let graph = ctx.graph();
        let src = buffer_source(graph, signal(0.6, 2, frames), 0)?;
        let node = AudioWorkletNode::new(
            graph,
            &registry,
            "gain",
            AudioWorkletNodeOptions { parameter_data: vec![("gain".into(), 0.5)], processor_options, ..options() },
        )?;
        let dest = graph.destination();
        graph.connect(src, 0, node.id(), 0)?;
        graph.connect(node.id(), 0, dest, 0)?;
        let rendered = ctx.render(|_| {})?;
        assert!(rendered.processor_errors.is_empty(), "{what}: {:?}", rendered.processor_errors);
        assert_audio(&rendered.buffer, 2, |c, n| 0.5 * wave(0.6, c, n) as f64, what);
        let status = node.status();
        assert_eq!(status.quanta(), QUANTA as u64, "{what}");
        // Baseline: 2 input + 2 output channels copied per quantum.
        let expected = if copies { (QUANTA * (2 + 2) * CH) as u64 } else { 0 };
        assert_eq!(status.bytes_copied(), expected, "{what}");
        outputs.push(rendered.buffer);
    }
    for other in &outputs[1..] {
        for c in 0..2 {
            assert_eq!(other.channel_data(c), outputs[0].channel_data(c));
        }
    }
    Ok(())
}

#[test]
fn example_ping_pong_bounces_an_impulse() -> TestResult {
    const QUANTA: usize = 12;
    let feedback = 0.6f32;
    let mut ctx = OfflineAudioContext::new(2, QUANTA * N, SR)?;
    let graph = ctx.graph();
    let mut impulse = vec![0.0f32; N];
    impulse[0] = 1.0;
    let src = buffer_source(graph, vec![impulse], 0)?;
    let node = AudioWorkletNode::new(
        graph,
        &ProcessorRegistry::with_examples(),
        "ping-pong",
        AudioWorkletNodeOptions {
            output_channel_count: Some(vec![2]),
            parameter_data: vec![("feedback".into(), feedback)],
            processor_options: serde_json::json!({ "delayQuanta": 3 }),
            node: explicit(2),
            ..options()
        },
    )?;
    let dest = graph.destination();
    graph.connect(src, 0, node.id(), 0)?;
    graph.connect(node.id(), 0, dest, 0)?;
    let rendered = ctx.render(|_| {})?;
    assert!(rendered.processor_errors.is_empty(), "{:?}", rendered.processor_errors);
    // The mono impulse, up-mixed to stereo and mixed back to mono (1), is
    // heard on the left after 3 quanta; its echo on the right 3 quanta later
    // (x feedback), and back on the left 3 more later (x feedback^2).
    let fb = feedback as f64;
    assert_audio(
        &rendered.buffer,
        2,
        |c, n| match (c, n) {
            (0, 384) => 1.0,
            (1, 768) => fb,
            (0, 1152) => fb * fb,
            _ => 0.0,
        },
        "ping-pong",
    );
    assert_eq!(node.status().bytes_copied(), 0);
    Ok(())
}

#[test]
fn example_channel_follower_grows_to_stereo_and_rejects_5_1() -> TestResult {
    const QUANTA: usize = 6;
    let frames = QUANTA * N;
    let mono_level = 0.3f32;
    // A 5.1 destination shows the follower's channel count: mono lands in
    // the centre channel, stereo in L and R.
    let mut ctx = OfflineAudioContext::new(6, frames, SR)?;
    let graph = ctx.graph();
    let mono = constant(graph, mono_level, 0)?;
    let stereo = buffer_source(graph, signal(0.1, 2, frames), 2 * N)?;
    let surround = buffer_source(graph, levels(6, frames), 4 * N)?;
    let node = AudioWorkletNode::new(graph, &ProcessorRegistry::with_examples(), "channel-follower", options())?;
    let dest = graph.destination();
    for src in [mono, stereo, surround] {
        graph.connect(src, 0, node.id(), 0)?;
    }
    graph.connect(node.id(), 0, dest, 0)?;
    let rendered = ctx.render(|_| {})?;
    assert!(rendered.processor_errors.is_empty(), "{:?}", rendered.processor_errors);
    let m = mono_level as f64;
    let x: [f64; 6] = std::array::from_fn(|k| level(k) as f64);
    let expected = |c: usize, n: usize| -> f64 {
        let q = n / N;
        if q < 2 {
            return if c == 2 { m } else { 0.0 };
        }
        if c >= 2 {
            return 0.0;
        }
        // Mono up-mixed to stereo plus the stereo source (started at
        // quantum 2, so its frame k plays at n = 256 + k)...
        let mut v = m + wave(0.1, c, n - 2 * N) as f64;
        // ...plus 5.1 down-mixed to the stereo the follower keeps.
        if q >= 4 {
            v += down_51_to_stereo(&x)[c];
        }
        v
    };
    assert_audio(&rendered.buffer, 6, expected, "channel-follower");
    assert_eq!(node.status().bytes_copied(), 0);
    Ok(())
}

// ------------------------------------------------------ 10: graph files

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

#[test]
fn graph_file_worklet_node_renders() -> TestResult {
    let json = graph_json(
        r#"{"id": "my-worklet", "type": "AudioWorkletNode", "processor": "gain", "options": {"parameterData": {"gain": 0.5}}}"#,
    );
    let ctx = GraphFile::parse(&json, Path::new("/tmp/x.json"))?.offline_context(None, None)?;
    let rendered = ctx.render(|_| {})?;
    assert!(rendered.processor_errors.is_empty());
    assert_audio(&rendered.buffer, 1, |_, _| 0.8f32 as f64 * 0.5, "graph file gain");
    Ok(())
}

#[test]
fn graph_file_worklet_errors_name_the_node() -> TestResult {
    let cases = [
        (r#"{"id": "my-worklet", "type": "AudioWorkletNode", "processor": "no-such-processor"}"#, "no-such-processor"),
        (
            r#"{"id": "my-worklet", "type": "AudioWorkletNode", "processor": "gain", "options": {"parameterData": {"volume": 1}}}"#,
            "volume",
        ),
        (
            r#"{"id": "my-worklet", "type": "AudioWorkletNode", "processor": "gain", "options": {"outputChannelCount": [1, 2]}}"#,
            "outputChannelCount",
        ),
    ];
    for (node, mentions) in cases {
        let file = GraphFile::parse(&graph_json(node), Path::new("/tmp/x.json"))?;
        match file.offline_context(None, None) {
            Ok(_) => panic!("accepted {node}"),
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains("my-worklet"), "{text}");
                assert!(text.contains(mentions), "{text}");
            }
        }
    }
    Ok(())
}

/// Two prepared output regions; a message through the port switches the
/// node's output from one to the other at the quantum boundary it arrives
/// at, with the processor writing nothing: what plays is whichever region
/// is registered. A message of a type the processor does not know is left
/// alone.
struct PortSwitched {
    memory: ByobMemory,
}

impl WorkletProcessor for PortSwitched {
    fn process(&mut self, _: &mut ProcessIo<'_>) -> bool {
        true
    }

    fn on_message(&mut self, message: &mut byob_audio::worklet::PortMessage, registrar: &mut Registrar<'_>) {
        if let Some(&region) = message.downcast_ref::<usize>() {
            registrar.register_buffers(&self.memory, region * CHANNEL_BYTES, CHANNEL_BYTES, BufferKind::Output, 0).unwrap();
        }
    }
}

#[test]
fn registrations_asked_through_the_port_take_effect_at_the_next_quantum() -> TestResult {
    let mut registry = ProcessorRegistry::new();
    registry.register("switched", Vec::new(), |init: &mut ProcessorInit<'_>| {
        let memory = ByobMemory::new(2 * CHANNEL_BYTES);
        let fail = |e: RegistrationError| e.to_string();
        init.memory(&memory, 0, N).map_err(fail)?.fill(0.25);
        init.memory(&memory, CHANNEL_BYTES, N).map_err(fail)?.fill(0.5);
        init.register_buffers(&memory, 0, CHANNEL_BYTES, BufferKind::Output, 0).map_err(fail)?;
        Ok(Box::new(PortSwitched { memory }) as Box<dyn WorkletProcessor>)
    })?;
    let mut ctx = OfflineAudioContext::new(1, 8 * N, SR)?;
    let graph = ctx.graph();
    let options = AudioWorkletNodeOptions { number_of_inputs: 0, output_channel_count: Some(vec![1]), ..Default::default() };
    let node = AudioWorkletNode::new(graph, &registry, "switched", options)?;
    let destination = graph.destination();
    graph.connect(node.id(), 0, destination, 0)?;
    let rendered = ctx
        .render_changing(|_| {}, |graph, frame| {
            match frame {
                f if f == 3 * N as u64 => node.post_message(graph, Box::new(1usize)),
                f if f == 5 * N as u64 => node.post_message(graph, Box::new("ignored")),
                f if f == 6 * N as u64 => node.post_message(graph, Box::new(0usize)),
                _ => {}
            }
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    let out = rendered.buffer.channel_data(0);
    let quantum = |q: usize| &out[q * N..(q + 1) * N];
    for (q, expected) in [0.25, 0.25, 0.25, 0.5, 0.5, 0.5, 0.25, 0.25].into_iter().enumerate() {
        assert!(quantum(q).iter().all(|&s| s == expected), "quantum {q}: {} instead of {expected}", quantum(q)[0]);
    }
    Ok(())
}
